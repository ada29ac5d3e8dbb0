//! Kafka through the binary, against a real broker (Tansu, started per
//! test, killed by PID): exactly once through `kill -9` and placed crashes
//! (Flink's SemanticsCheckMapper), and two processes splitting a topic.

#[path = "../../tests/kafka_broker/mod.rs"]
mod kafka_broker;
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use kafka_broker::{Broker, committed};
use support::{brooklet, sigint};

/// Keys of the input, and records per key.
const KEYS: u64 = 30;
const RECORDS: u64 = 100_000;

/// Produces `RECORDS` records `{"k": k, "seq": n}` over `partitions`
/// partitions, keyed by k (partition k mod `partitions`), with each key's n
/// counting up from 0.
fn produce_sequences(broker: &Broker, topic: &str, partitions: u64) {
    broker.create_topic(topic, partitions as u32);
    let mut next = vec![0u64; KEYS as usize];
    broker.produce_many(
        topic,
        (0..RECORDS).map(|i| {
            let k = (i * 7919) % KEYS;
            let seq = next[k as usize];
            next[k as usize] += 1;
            (
                (k % partitions) as i32,
                k.to_string(),
                format!(r#"{{"k": {k}, "seq": {seq}}}"#),
            )
        }),
    );
}

/// Checks that window rows `(k, lo, hi, n)` tile each key's sequence
/// exactly: every record counted once, none lost, none twice.
fn assert_exactly_once(rows: &[(u64, u64, u64, u64)], what: &str) {
    let mut by_key: BTreeMap<u64, Vec<(u64, u64, u64)>> = BTreeMap::new();
    for &(k, lo, hi, n) in rows {
        by_key.entry(k).or_default().push((lo, hi, n));
    }
    assert_eq!(by_key.len() as u64, KEYS, "{what}: keys");
    let mut total = 0;
    for (k, mut ranges) in by_key {
        ranges.sort();
        let mut expected = 0;
        for (lo, hi, n) in ranges {
            assert_eq!(
                lo, expected,
                "{what}: key {k} lost or repeated records at {expected}"
            );
            assert_eq!(
                n,
                hi - lo + 1,
                "{what}: key {k} window {lo}..={hi} counted {n}"
            );
            expected = hi + 1;
            total += n;
        }
    }
    assert_eq!(total, RECORDS, "{what}: records counted");
}

/// The job: the topic read twice (one source per output, each with its own
/// position), counted per key in 1 s processing-time windows, into the
/// files sink and the Kafka sink.
fn job(dir: &Path, bootstrap: &str) -> std::path::PathBuf {
    let path = dir.join("job.sql");
    let source = |name: &str| {
        format!(
            "CREATE SOURCE {name} (k BIGINT, seq BIGINT) WITH (connector = 'kafka', \
             bootstrap.servers = '{bootstrap}', topic = 'events', format = 'json', \
             max.records.per.partition.per.batch = 400);\n"
        )
    };
    let query = |source: &str| {
        format!(
            "SELECT k, min(seq) AS lo, max(seq) AS hi, count(*) AS n \
             FROM TABLE(TUMBLE(TABLE {source}, DESCRIPTOR(proctime), INTERVAL '1' SECOND)) \
             GROUP BY window_start, window_end, k"
        )
    };
    let text = format!(
        "SET batch.interval = '200 ms';\n{}{}\
         CREATE SINK files_out WITH (connector = 'files', path = '{}', format = 'csv');\n\
         CREATE SINK kafka_out WITH (connector = 'kafka', bootstrap.servers = '{bootstrap}', \
         topic = 'counts', format = 'json', key = 'k');\n\
         INSERT INTO files_out {};\nINSERT INTO kafka_out {};\n",
        source("for_files"),
        source("for_kafka"),
        dir.join("out").display(),
        query("for_files"),
        query("for_kafka"),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn start(job: &Path, checkpoint: &Path, crash_at: Option<&str>) -> Child {
    let mut command = brooklet();
    if let Some(point) = crash_at {
        command.env("BROOKLET_CRASH_AT", point);
    }
    command
        .args(["run", job.to_str().unwrap(), "--checkpoint"])
        .arg(checkpoint)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The files sink's rows: `k,lo,hi,n` lines of every batch file.
fn file_rows(dir: &Path) -> Vec<(u64, u64, u64, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    for entry in entries {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with('.') {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines().skip(1) {
            let v: Vec<u64> = line.split(',').map(|x| x.parse().unwrap()).collect();
            rows.push((v[0], v[1], v[2], v[3]));
        }
    }
    rows
}

/// The Kafka sink's rows as a `read_committed` consumer sees them, and
/// whether any transaction is still open.
fn kafka_rows(broker: &Broker) -> (Vec<(u64, u64, u64, u64)>, bool) {
    let mut rows = Vec::new();
    let mut open = false;
    for partition in 0..3 {
        let log = committed::read(broker.port(), "counts", partition);
        open |= !log.open.is_empty();
        for (_, value) in log.records {
            let v: serde_json::Value = serde_json::from_slice(&value).unwrap();
            let get = |f: &str| v[f].as_u64().unwrap();
            rows.push((get("k"), get("lo"), get("hi"), get("n")));
        }
    }
    (rows, open)
}

fn counted(rows: &[(u64, u64, u64, u64)]) -> u64 {
    rows.iter().map(|r| r.3).sum()
}

#[test]
fn kill_9_ten_times_leaves_every_key_sequence_exactly_once_in_files_and_kafka() {
    let broker = Broker::start();
    produce_sequences(&broker, "events", 3);
    broker.create_topic("counts", 3);
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path(), &broker.bootstrap());
    let checkpoint = dir.path().join("checkpoint");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    // `KAFKA_KILLS=n` runs fewer rounds while debugging.
    let kills: usize = std::env::var("KAFKA_KILLS").map_or(10, |k| k.parse().unwrap());
    for round in 0..kills {
        // A crash placed where only the commit log can tell that a batch
        // was delivered: its output written, its commit not (the n-th
        // batch commit of either query).
        let point = format!("before-commit:{}", 2 + round);
        let mut crashing = start(&job, &checkpoint, Some(&point));
        let deadline = Instant::now() + Duration::from_secs(60);
        while crashing.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "{point} never fired");
            thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(crashing.wait().unwrap().code(), Some(86), "{point}");
        let mut run = start(&job, &checkpoint, None);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        thread::sleep(Duration::from_millis(600 + seed % 900));
        run.kill().unwrap();
        run.wait().unwrap();
    }
    let mut last = start(&job, &checkpoint, None);
    let out = dir.path().join("out");
    let deadline = Instant::now() + Duration::from_secs(120);
    while counted(&file_rows(&out)) < RECORDS || counted(&kafka_rows(&broker).0) < RECORDS {
        if Instant::now() > deadline || last.try_wait().unwrap().is_some() {
            let _ = last.kill();
            let output = last.wait_with_output().unwrap();
            panic!(
                "files: {} records, kafka: {} of {RECORDS}; the last run: {}",
                counted(&file_rows(&out)),
                counted(&kafka_rows(&broker).0),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        thread::sleep(Duration::from_millis(300));
    }
    // One more window, so that a duplicate written late would show.
    thread::sleep(Duration::from_millis(1500));
    sigint(&last);
    let output = last.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_exactly_once(&file_rows(&out), "files sink");
    let (rows, open) = kafka_rows(&broker);
    assert!(!open, "a transaction was left open");
    assert_exactly_once(&rows, "kafka sink");
}

/// A job of instance `instance` (`'i/N'`, or none: the whole topic)
/// counting each key's records per 1 s window into the files sink `out`.
fn instance_job(
    dir: &Path,
    bootstrap: &str,
    name: &str,
    instance: Option<&str>,
) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.sql"));
    let instance = instance.map_or(String::new(), |i| format!(", instance = '{i}'"));
    let text = format!(
        "SET batch.interval = '200 ms';\n\
         CREATE SOURCE events (k BIGINT, seq BIGINT) WITH (connector = 'kafka', \
         bootstrap.servers = '{bootstrap}', topic = 'events', format = 'json', \
         max.records.per.partition.per.batch = 500{instance});\n\
         CREATE SINK out WITH (connector = 'files', path = '{}', format = 'csv');\n\
         INSERT INTO out SELECT k, min(seq) AS lo, max(seq) AS hi, count(*) AS n \
         FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(proctime), INTERVAL '1' SECOND)) \
         GROUP BY window_start, window_end, k;\n",
        dir.join(format!("out-{name}")).display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Each key's record count.
fn per_key(rows: &[(u64, u64, u64, u64)]) -> BTreeMap<u64, u64> {
    let mut counts = BTreeMap::new();
    for &(k, _, _, n) in rows {
        *counts.entry(k).or_default() += n;
    }
    counts
}

/// Waits until the files sink `out` counted `total` records, or fails
/// with the run's stderr.
fn wait_for_total(out: &Path, total: u64, run: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while counted(&file_rows(out)) < total {
        if Instant::now() > deadline || run.try_wait().unwrap().is_some() {
            let _ = run.kill();
            let mut stderr = String::new();
            if let Some(mut e) = run.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut stderr);
            }
            panic!(
                "{}: {} of {total} records; {stderr}",
                out.display(),
                counted(&file_rows(out))
            );
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Two processes, `instance = '0/2'` and `'1/2'`, each with its own
/// checkpoint, split a 4-partition topic keyed by the grouping key; one of
/// them is killed and restarted meanwhile. Together they count what one
/// process counts: every key's sequence, once.
#[test]
fn two_instances_split_a_topic_and_together_count_what_one_process_counts() {
    let broker = Broker::start();
    produce_sequences(&broker, "events", 4);
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = broker.bootstrap();
    let one = instance_job(dir.path(), &bootstrap, "one", None);
    let first = instance_job(dir.path(), &bootstrap, "first", Some("0/2"));
    let second = instance_job(dir.path(), &bootstrap, "second", Some("1/2"));
    let checkpoint = |name: &str| dir.path().join(format!("checkpoint-{name}"));
    let out = |name: &str| dir.path().join(format!("out-{name}"));
    let mut reference = start(&one, &checkpoint("one"), None);
    let mut zero = start(&first, &checkpoint("first"), None);
    let mut doomed = start(&second, &checkpoint("second"), None);
    thread::sleep(Duration::from_millis(2500));
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    let mut one_again = start(&second, &checkpoint("second"), None);
    wait_for_total(&out("one"), RECORDS, &mut reference);
    let split = counted(&file_rows(&out("first")));
    assert!(split > 0 && split < RECORDS, "instance 0/2 counted {split}");
    wait_for_total(
        &out("first"),
        per_key(&file_rows(&out("one")))
            .iter()
            .filter(|(k, _)| *k % 4 % 2 == 0)
            .map(|(_, n)| n)
            .sum(),
        &mut zero,
    );
    wait_for_total(
        &out("second"),
        RECORDS - counted(&file_rows(&out("first"))),
        &mut one_again,
    );
    thread::sleep(Duration::from_millis(1500));
    for run in [&reference, &zero, &one_again] {
        sigint(run);
    }
    for run in [reference, zero, one_again] {
        let output = run.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut union = file_rows(&out("first"));
    union.extend(file_rows(&out("second")));
    assert_exactly_once(&union, "two instances");
    assert_exactly_once(&file_rows(&out("one")), "one process");
    assert_eq!(per_key(&union), per_key(&file_rows(&out("one"))));
    // Each instance saw only its own partitions' keys.
    assert!(file_rows(&out("first")).iter().all(|r| r.0 % 4 % 2 == 0));
    assert!(file_rows(&out("second")).iter().all(|r| r.0 % 4 % 2 == 1));
}
