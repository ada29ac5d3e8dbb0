//! Checkpoints, the files source and the files sink on a real S3 API
//! server (moto, started per test, killed by PID): `kill -9` at random
//! moments and at each crash point leaves the output an uninterrupted run
//! writes; two processes on one checkpoint: one runs, the other is told
//! who holds it; a stalled server is retried and reported, and nothing is
//! lost.

#[path = "../../tests/s3_server/mod.rs"]
mod s3_server;
mod support;

use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use s3_server::S3Server;
use support::{brooklet, expect_crash, sigint};

/// One test at a time: each runs up to five processes against one moto
/// server, which is as much as two cores keep up with.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn epoch_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A files-to-files job whose input, checkpoint and output are all in the
/// bucket, and its input: `FILES` objects put one every 250 ms from a
/// thread, the first a little after the next whole second.
struct Job {
    server: S3Server,
    dir: tempfile::TempDir,
    /// Statements before the job's.
    settings: String,
    uploader: Option<thread::JoinHandle<()>>,
    /// When the last object's windows have closed (epoch ms).
    end: u64,
}

const FILES: u64 = 16;

impl Job {
    fn new(settings: &str) -> Job {
        let server = S3Server::start();
        let first = (epoch_millis() / 1000 + 3) * 1000;
        let input = server.dir("in");
        let uploader = thread::spawn(move || {
            for i in 0..FILES {
                let at = first + i * 250;
                if let Some(wait) = at.checked_sub(epoch_millis()) {
                    thread::sleep(Duration::from_millis(wait));
                }
                let text: String = (0..=i % 4)
                    .map(|j| {
                        format!(
                            "{} event {i}.{j}\n",
                            ["ERROR", "INFO", "WARN"][(i + j) as usize % 3]
                        )
                    })
                    .collect();
                input
                    .write(&format!("{i:03}.log"), text.into_bytes())
                    .unwrap();
            }
        });
        Job {
            server,
            dir: tempfile::tempdir().unwrap(),
            settings: settings.to_string(),
            uploader: Some(uploader),
            end: first + FILES * 250 + 7000,
        }
    }

    /// Starts run `name` of the job (again), with `env` set.
    fn start(&self, name: &str, env: &[(&str, &str)]) -> Child {
        let path = self.dir.path().join(format!("{name}.sql"));
        std::fs::write(
            &path,
            format!(
                "SET batch.interval = '500 ms';\n{}\n\
                 CREATE SOURCE logs (line TEXT) WITH (connector = 'files', path = '{}', format = 'lines');\n\
                 CREATE SINK counts WITH (connector = 'files', path = '{}', format = 'csv');\n\
                 INSERT INTO counts\n\
                 SELECT split_part(line, ' ', 1) AS level, count(*) AS n\n\
                 FROM logs GROUP BY hop(INTERVAL '1' SECOND, INTERVAL '2' SECOND), level;\n",
                self.settings,
                self.server.url("in/"),
                self.server.url(&format!("out-{name}/"))
            ),
        )
        .unwrap();
        brooklet()
            .args(["run", path.to_str().unwrap(), "--checkpoint"])
            .arg(self.server.url(&format!("checkpoint-{name}/")))
            .envs(self.server.env())
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Waits until every window has closed, then stops the runs with
    /// Ctrl-C; each must end well.
    fn finish(&mut self, runs: Vec<Child>) {
        self.uploader.take().unwrap().join().unwrap();
        while epoch_millis() < self.end {
            thread::sleep(Duration::from_millis(100));
        }
        for run in &runs {
            sigint(run);
        }
        for run in runs {
            let output = run.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }

    /// Run `name`'s output objects and their contents, by name.
    fn output(&self, name: &str) -> Vec<(String, String)> {
        let dir = self.server.dir(&format!("out-{name}"));
        let mut files: Vec<(String, String)> = dir
            .list()
            .unwrap()
            .into_iter()
            .map(|e| {
                let text = dir.read(&e.name).unwrap().unwrap();
                (e.name, String::from_utf8(text.to_vec()).unwrap())
            })
            .collect();
        files.sort();
        files
    }
}

/// Spark's MasterFailureTest on S3: the job is killed (`kill -9`) at ten
/// pseudo-random moments while its input arrives and started again each
/// time with the same command; its output prefix ends up object for
/// object, byte for byte, what an uninterrupted run writes.
#[test]
fn kill_9_at_random_moments_on_s3_leaves_the_same_output() {
    let _serial = serial();
    let mut job = Job::new("");
    let reference = job.start("reference", &[]);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..10 {
        let mut run = job.start("crashing", &[]);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        thread::sleep(Duration::from_millis(300 + seed % 500));
        run.kill().unwrap();
        run.wait().unwrap();
    }
    let last = job.start("crashing", &[]);
    job.finish(vec![reference, last]);
    let expected = job.output("reference");
    assert!(expected.len() >= 5, "{expected:?}");
    assert_eq!(job.output("crashing"), expected);
}

/// Crashes placed exactly (`BROOKLET_CRASH_AT`) with everything on S3:
/// after a state object is put, after a batch ran but before its output,
/// before an output object is put, after the output but before the commit.
/// Each fires (exit code 86); the run started again afterwards ends with
/// the uninterrupted run's output.
#[test]
fn crashes_at_each_crash_point_on_s3_leave_the_same_output() {
    let _serial = serial();
    let mut job = Job::new("");
    let reference = job.start("reference", &[]);
    let points = [
        ("state-written", "state-written:8"),
        ("before-sink", "before-sink:3"),
        ("sink-mid-write", "sink-mid-write:2"),
        ("before-commit", "before-commit:8"),
    ];
    let crashing: Vec<(&str, Child)> = points
        .iter()
        .map(|(name, plan)| (*name, job.start(name, &[("BROOKLET_CRASH_AT", plan)])))
        .collect();
    let mut restarted = Vec::new();
    for (name, run) in crashing {
        expect_crash(name, run);
        restarted.push(job.start(name, &[]));
    }
    restarted.push(reference);
    job.finish(restarted);
    let expected = job.output("reference");
    assert!(expected.len() >= 5, "{expected:?}");
    for (name, _) in points {
        assert_eq!(job.output(name), expected, "after a crash at {name}");
    }
}

/// Two processes started with one checkpoint in the bucket: the second
/// fails within seconds with an error that names the checkpoint and the
/// first (its lease in the `commit` object), and the first runs on.
#[test]
fn a_second_process_on_one_checkpoint_is_refused_and_the_first_runs_on() {
    let _serial = serial();
    let mut job = Job::new("");
    let first = job.start("shared", &[]);
    // Once it has written output, it holds the checkpoint.
    let out = job.server.dir("out-shared");
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.list().unwrap().is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    let started = Instant::now();
    let second = job.start("shared", &[]);
    let output = second.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the second run must fail: {stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(20), "{stderr}");
    assert!(
        stderr.contains("checkpoint-shared") && stderr.contains("is in use by pid"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("pid {} ", first.id())),
        "names the first: {stderr}"
    );
    job.finish(vec![first]);
    assert!(!job.output("shared").is_empty());
}

/// The server stops answering for 4 seconds (SIGSTOP) while a job reads
/// from and writes to it, with a request timeout of 1 s: the requests are
/// retried with backoff and reported on stderr, and every input line is
/// in the output exactly once.
#[test]
fn a_stalled_server_is_retried_reported_and_nothing_is_lost() {
    let _serial = serial();
    let server = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let input = server.dir("in");
    let path = dir.path().join("copy.sql");
    std::fs::write(
        &path,
        format!(
            "SET batch.interval = '200 ms';\nSET s3.timeout = '1s';\n\
             CREATE SOURCE logs (line TEXT) WITH (connector = 'files', path = '{}', format = 'lines');\n\
             CREATE SINK copy WITH (connector = 'files', path = '{}', format = 'csv');\n\
             INSERT INTO copy SELECT line FROM logs;\n",
            server.url("in/"),
            server.url("out/")
        ),
    )
    .unwrap();
    let run = brooklet()
        .args(["run", path.to_str().unwrap(), "--checkpoint"])
        .arg(server.url("checkpoint/"))
        .envs(server.env())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut expected = Vec::new();
    let mut put = |from: u32| {
        for i in from..from + 5 {
            let lines: String = (0..3).map(|j| format!("line {i}.{j}\n")).collect();
            expected.extend(lines.lines().map(str::to_string));
            input
                .write(&format!("{i:03}.log"), lines.into_bytes())
                .unwrap();
            thread::sleep(Duration::from_millis(150));
        }
    };
    put(0);
    thread::sleep(Duration::from_millis(1000));
    server.stall(Duration::from_secs(4));
    put(5);
    thread::sleep(Duration::from_secs(4));
    sigint(&run);
    let output = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("retrying in"),
        "retries are reported: {stderr}"
    );
    assert!(stderr.contains("succeeded after"), "{stderr}");
    let out = server.dir("out");
    let mut got: Vec<String> = Vec::new();
    for entry in out.list().unwrap() {
        let text = out.read(&entry.name).unwrap().unwrap();
        got.extend(
            String::from_utf8(text.to_vec())
                .unwrap()
                .lines()
                .filter(|l| *l != "line")
                .map(str::to_string),
        );
    }
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
}
