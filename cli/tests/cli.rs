//! Process-level tests of the real `brooklet` binary: a socket server on
//! 127.0.0.1:0, stdin, signals, pipes, and the REPL through a pseudo-terminal.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

mod support;

use support::{blocks, brooklet, expect_crash, run_with_input, sample_peak_rss, sigint, sql_file};

#[test]
fn run_prints_every_error_line_once_per_batch_and_stops_on_sigint() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let file = sql_file(
        &dir,
        &format!(
            "SET batch.interval = '200 ms';\n\
             CREATE SOURCE lines (line TEXT)\n  WITH (connector = 'socket', hostname = '127.0.0.1', port = {port}, format = 'lines');\n\
             SELECT line FROM lines WHERE line LIKE '%error%';\n"
        ),
    );
    let mut child = brooklet()
        .args(["run", file.to_str().unwrap(), "--format", "csv"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut connection, _) = listener.accept().unwrap();
    let mut sent_errors = Vec::new();
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(2) {
        let ok = format!("request {i} ok\n");
        let bad = format!("request {i} error: timeout\n");
        connection.write_all(ok.as_bytes()).unwrap();
        connection.write_all(bad.as_bytes()).unwrap();
        sent_errors.push(bad.trim().to_string());
        i += 1;
        thread::sleep(Duration::from_millis(30));
    }
    // Let the last lines reach a batch, then stop.
    thread::sleep(Duration::from_millis(700));
    sigint(&child);
    let status = child.wait().unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(status.success(), "exit status {status}");
    let blocks = blocks(&stdout);
    assert!(
        blocks.len() >= 10,
        "expected a batch every 200 ms, got {}",
        blocks.len()
    );
    for pair in blocks.windows(2) {
        assert_eq!(pair[1].0 - pair[0].0, 200, "batches are 200 ms apart");
    }
    let mut printed = Vec::new();
    for (time, rows) in &blocks {
        assert_eq!(time % 200, 0, "batch time {time} is not a multiple of 200");
        for row in rows {
            if row != "line" {
                printed.push(row.clone());
            }
        }
    }
    assert_eq!(
        printed, sent_errors,
        "every error line exactly once, in order, and nothing else"
    );
}

#[test]
fn stdin_input_ends_the_run_after_its_last_batch() {
    let dir = tempfile::tempdir().unwrap();
    let file = sql_file(
        &dir,
        "SET batch.interval = '100 ms';\n\
         CREATE SOURCE bids (auction BIGINT, price BIGINT) WITH (connector = 'stdin', format = 'csv');\n\
         SELECT auction, price * 2 AS doubled FROM bids WHERE price > 10;\n",
    );
    let output = run_with_input(
        &["run", file.to_str().unwrap(), "--format", "csv"],
        b"1,50\n2,5\n3,70",
    );
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let rows: Vec<String> = blocks(&stdout)
        .into_iter()
        .flat_map(|(_, rows)| rows)
        .filter(|r| r != "auction,doubled")
        .collect();
    assert_eq!(rows, ["1,100", "3,140"]);
}

/// The event-time example of the README (`examples/bids.sql` fed
/// `examples/bids.csv`): each 10-second window of each auction once,
/// complete; at end of input the open windows are emitted and the run exits
/// 0. However stdin falls into batches, rows are at most 2 s out of order,
/// so none is late and the rows are the same.
#[test]
fn event_time_windows_from_stdin_are_emitted_once_and_flushed_at_the_end() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let file = examples.join("bids.sql");
    let input = std::fs::read_to_string(examples.join("bids.csv")).unwrap();
    let output = run_with_input(
        &["run", file.to_str().unwrap(), "--format", "csv"],
        input.as_bytes(),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let rows: Vec<String> = blocks(&stdout)
        .into_iter()
        .flat_map(|(_, rows)| rows)
        .filter(|r| !r.starts_with("window_start"))
        .collect();
    let mut sorted = rows.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "2026-11-25T10:00:00,2026-11-25T10:00:10,1,3,30",
            "2026-11-25T10:00:00,2026-11-25T10:00:10,2,1,20",
            "2026-11-25T10:00:10,2026-11-25T10:00:20,1,1,5",
            "2026-11-25T10:00:10,2026-11-25T10:00:20,2,2,45",
            "2026-11-25T10:00:10,2026-11-25T10:00:20,3,1,1",
            "2026-11-25T10:00:30,2026-11-25T10:00:40,3,1,2",
        ],
        "{stdout}"
    );
    assert!(!stderr.contains("late"), "{stderr}");
}

#[test]
fn emit_complete_keeps_a_running_count_over_all_input() {
    let dir = tempfile::tempdir().unwrap();
    let file = sql_file(
        &dir,
        "SET batch.interval = '100 ms';\n\
         CREATE SOURCE words (word TEXT) WITH (connector = 'stdin', format = 'lines');\n\
         SELECT word, count(*) AS n FROM words GROUP BY word EMIT COMPLETE;\n",
    );
    let output = run_with_input(
        &["run", file.to_str().unwrap(), "--format", "csv"],
        b"spark\nflink\nspark\nbrooklet\nspark\n",
    );
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    // However the lines fell into batches, the last batch holds every
    // word's count over all input (updateStateByKey's output).
    let last = blocks(&stdout).pop().expect("at least one batch");
    let mut rows: Vec<String> = last.1.into_iter().filter(|r| r != "word,n").collect();
    rows.sort();
    assert_eq!(rows, ["brooklet,1", "flink,1", "spark,3"], "{stdout}");
}

#[test]
fn a_syntax_error_shows_the_line_and_a_caret() {
    let dir = tempfile::tempdir().unwrap();
    let file = sql_file(
        &dir,
        "CREATE SOURCE lines (line TEXT) WITH (connector = 'stdin');\nSELECT line\nFROM lines WHERE line LIKE;\n",
    );
    let output = brooklet()
        .args(["run", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("error: syntax error: Expected: an expression, found: ;"),
        "{stderr}"
    );
    assert!(stderr.contains("q.sql:3:27"), "{stderr}");
    assert!(
        stderr.contains("3 | FROM lines WHERE line LIKE;\n  |                           ^"),
        "{stderr}"
    );
    let output = brooklet()
        .args([
            "-c",
            "CREATE SOURCE s WITH (connector = 'socket', port = 1, hots = 'x')",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("unknown option 'hots'") && stderr.contains("valid options:"),
        "{stderr}"
    );
}

/// `-c` and `run` print what a statement asked to see (`EXPLAIN`), not
/// the confirmations of DDL (they would mix with a query's rows).
#[test]
fn explain_prints_the_operators_from_a_command() {
    let output = brooklet()
        .args([
            "-c",
            "CREATE SOURCE bids (auction BIGINT, ts TIMESTAMP NOT NULL, \
               WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) \
               WITH (connector = 'memory', format = 'csv'); \
             EXPLAIN SELECT window_start, window_end, auction, count(*) AS n \
               FROM TABLE(CUMULATE(TABLE bids, DESCRIPTOR(ts), INTERVAL '5' SECOND, \
                 INTERVAL '15' SECOND)) \
               GROUP BY window_start, window_end, auction;",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("event-time window aggregate")
            && stdout.contains("cumulating windows growing by 5 s up to 15 s, on event time ts"),
        "{stdout}"
    );
    assert!(!stdout.contains("source 'bids' created"), "{stdout}");
}

#[test]
fn a_closed_pipe_is_a_normal_end() {
    let mut child = brooklet()
        .args([
            "--batch-interval",
            "100 ms",
            "-c",
            "CREATE SOURCE s WITH (connector = 'sequence', rows.per.second = 1000); SELECT id FROM s;",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("-----"), "{first}");
    drop(stdout);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn stdin_cut_exactly_at_the_batch_limit_ends_with_its_last_full_batch() {
    // 4 lines, 2 per batch: two batches. The end used to be seen one batch
    // later, whose empty window printed a trailing `0`.
    let output = run_with_input(
        &[
            "--available-now",
            "--format",
            "csv",
            "-c",
            "CREATE SOURCE s (k TEXT) WITH (connector = 'stdin', format = 'csv', \
             max.records.per.batch = 2); \
             SELECT count(*) AS n FROM s GROUP BY tumble(INTERVAL '1' SECOND);",
        ],
        b"a\nb\nc\nd\n",
    );
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let counts: Vec<Vec<String>> = blocks(&stdout).into_iter().map(|(_, rows)| rows).collect();
    assert_eq!(counts, [vec!["n", "2"], vec!["n", "2"]], "{stdout}");
}

#[test]
fn a_closed_stdout_ends_explain_and_show_queries_normally() {
    // `brooklet -c 'EXPLAIN …' | true`: what the statements show goes to a
    // pipe nobody reads, which ends the run as `| head` does (it panicked).
    for shown in [
        "EXPLAIN SELECT id FROM s;",
        "SELECT id FROM s; SHOW QUERIES;",
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = brooklet()
            .args([
                "-c",
                &format!("CREATE SOURCE s WITH (connector = 'sequence', rows = 3); {shown}"),
            ])
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{shown}: {}: {stderr}",
            output.status
        );
        assert!(!stderr.contains("panicked"), "{shown}: {stderr}");
    }
}

#[test]
fn a_closed_stderr_leaves_the_exit_code_to_the_run() {
    // `brooklet -c '<bad SQL>' 2>&1 | head -1` that has ended: stderr is a
    // pipe nobody reads. The error exits 1 (a panic on writing it was 101).
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let status = brooklet()
        .args(["-c", "SELECT nope FROM nowhere;"])
        .stdout(Stdio::null())
        .stderr(writer)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1), "{status}");
}

#[test]
fn the_repl_runs_statements_stops_queries_on_ctrl_c_and_shows_errors() {
    let home = tempfile::tempdir().unwrap();
    let mut command = brooklet();
    command
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", home.path().join("data"));
    let mut repl = rexpect::session::spawn_command(command, Some(20_000)).unwrap();
    repl.exp_string("brooklet> ").unwrap();
    // A statement over two lines.
    repl.send_line(
        "CREATE SOURCE seq (id BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)",
    )
    .unwrap();
    repl.send_line("  WITH (connector = 'sequence', rows.per.second = 5);")
        .unwrap();
    repl.exp_string("source 'seq' created").unwrap();
    repl.exp_string("brooklet> ").unwrap();
    repl.send_line("SET batch.interval = '200 ms';").unwrap();
    repl.exp_string("batch.interval = 200 ms").unwrap();
    repl.send_line("\\d").unwrap();
    repl.exp_string("seq (sequence)").unwrap();
    repl.exp_string("WATERMARK FOR ts AS ts - 2 s").unwrap();
    repl.exp_string("late=0").unwrap();
    repl.exp_string("Running queries:").unwrap();
    repl.exp_string("brooklet> ").unwrap();
    // A running query prints batch after batch until Ctrl-C.
    repl.send_line("SELECT id FROM seq;").unwrap();
    repl.exp_string("Time: ").unwrap();
    repl.exp_string("Time: ").unwrap();
    repl.send_control('c').unwrap();
    repl.exp_string("query stopped").unwrap();
    repl.exp_string("brooklet> ").unwrap();
    // A syntax error, with its caret.
    repl.send_line("SELECT id FROM seq WHERE;").unwrap();
    repl.exp_string("Expected: an expression, found: ;")
        .unwrap();
    repl.exp_string("^").unwrap();
    repl.exp_string("brooklet> ").unwrap();
    // The help lists every connector of the engine's registry.
    repl.send_line("\\?").unwrap();
    let registry = brooklet::SOURCE_CONNECTORS
        .iter()
        .chain(brooklet::SINK_CONNECTORS);
    for (connector, _) in registry {
        repl.exp_string(connector).unwrap();
    }
    repl.exp_string("\\q").unwrap();
    repl.send_control('d').unwrap();
    repl.exp_eof().unwrap();
    let history = std::fs::read_to_string(home.path().join("data/brooklet/history.txt")).unwrap();
    assert!(history.contains("SELECT id FROM seq;"), "{history}");
}

#[test]
fn insert_into_a_console_sink_uses_the_sinks_format() {
    let output = run_with_input(
        &[
            "--batch-interval",
            "100 ms",
            "-c",
            "CREATE SOURCE words (word TEXT) WITH (connector = 'stdin');\n\
             CREATE SINK out WITH (connector = 'console', format = 'json');\n\
             INSERT INTO out SELECT word, count(*) AS n FROM words GROUP BY word;",
        ],
        b"spark\nflink\nspark\n",
    );
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let mut rows: Vec<String> = blocks(&stdout)
        .into_iter()
        .flat_map(|(_, rows)| rows)
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [r#"{"word":"flink","n":1}"#, r#"{"word":"spark","n":2}"#]
    );
    // The first per-batch GROUP BY says so, and how to aggregate across batches.
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("computed per batch")
            && stderr.contains("EMIT CHANGES")
            && stderr.contains("tumble("),
        "{stderr}"
    );
}

#[test]
fn progress_reports_each_batch_on_stderr() {
    let output = run_with_input(
        &[
            "--progress",
            "--batch-interval",
            "100 ms",
            "-c",
            "CREATE SOURCE s (line TEXT) WITH (connector = 'stdin'); SELECT line FROM s;",
        ],
        b"a\nb\n",
    );
    assert!(output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("progress: "))
        .collect();
    assert!(!lines.is_empty(), "{stderr}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("query=q1") && l.contains("scheduling_delay_ms=")),
        "{stderr}"
    );
    let rows_in: u64 = lines
        .iter()
        .map(|l| {
            l.split("rows_in=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(rows_in, 2, "{stderr}");
}

#[test]
fn a_tumbling_window_over_a_socket_emits_at_slide_boundaries_and_counts_every_line() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let file = sql_file(
        &dir,
        &format!(
            "SET batch.interval = '200 ms';\n\
             CREATE SOURCE lines (line TEXT) WITH (connector = 'socket', host = '127.0.0.1', port = {port});\n\
             SELECT split_part(line, ' ', 1) AS level, count(*) AS n\n\
             FROM lines GROUP BY tumble(INTERVAL '600' MILLISECOND), split_part(line, ' ', 1);\n"
        ),
    );
    let mut child = brooklet()
        .args(["run", file.to_str().unwrap(), "--format", "csv"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut connection, _) = listener.accept().unwrap();
    let levels = ["INFO", "WARN", "ERROR"];
    let mut sent = [0u64; 3];
    for i in 0..60 {
        let level = (i * 7) % 3;
        connection
            .write_all(format!("{} request {i}\n", levels[level]).as_bytes())
            .unwrap();
        sent[level] += 1;
        thread::sleep(Duration::from_millis(25));
    }
    // Two more windows, so the last lines' window has closed.
    thread::sleep(Duration::from_millis(1_500));
    sigint(&child);
    assert!(child.wait().unwrap().success());
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let blocks = blocks(&stdout);
    assert!(blocks.len() >= 3, "{stdout}");
    for pair in blocks.windows(2) {
        assert_eq!(
            pair[1].0 - pair[0].0,
            600,
            "windows are emitted every 600 ms only:\n{stdout}"
        );
    }
    let mut counted = [0u64; 3];
    for (_, rows) in &blocks {
        for row in rows.iter().filter(|r| *r != "level,n") {
            let (level, n) = row.split_once(',').unwrap();
            counted[levels.iter().position(|l| *l == level).unwrap()] += n.parse::<u64>().unwrap();
        }
    }
    assert_eq!(
        counted, sent,
        "the tumbling counts add up to the lines sent"
    );
}

/// The issue's files-to-files job: a directory of log files in, one CSV
/// file per window with rows out, written atomically.
#[test]
fn a_files_source_feeds_a_windowed_query_into_a_files_sink() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let output = dir.path().join("out");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("a.log"), "ERROR disk\nINFO up\nERROR net\n").unwrap();
    let file = sql_file(
        &dir,
        &format!(
            "SET batch.interval = '200 ms';\n\
             CREATE SOURCE logs (line TEXT) WITH (connector = 'files', path = '{}', format = 'lines');\n\
             CREATE SINK counts WITH (connector = 'files', path = '{}', format = 'csv');\n\
             INSERT INTO counts\n\
             SELECT split_part(line, ' ', 1) AS level, count(*) AS n\n\
             FROM logs GROUP BY hop(INTERVAL '1' SECOND, INTERVAL '2' SECOND), level;\n",
            input.display(),
            output.display()
        ),
    );
    let child = brooklet()
        .args(["run", file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        let mut files: Vec<_> = std::fs::read_dir(&output)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    // A file being written is hidden until it is renamed.
                    .filter(|name| !name.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        if let Some(first) = files.first() {
            break first.clone();
        }
        assert!(Instant::now() < deadline, "no output file");
        thread::sleep(Duration::from_millis(50));
    };
    sigint(&child);
    let result = child.wait_with_output().unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let stem = first.strip_suffix(".csv").expect("a .csv file");
    assert_eq!(
        stem.parse::<i64>().unwrap() % 200,
        0,
        "named after its batch time"
    );
    let text = std::fs::read_to_string(output.join(&first)).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.remove(0), "level,n");
    lines.sort();
    assert_eq!(lines, ["ERROR,2", "INFO,1"]);
}

/// A files-to-files job for recovery tests: an input directory of 20
/// files, one per 200 ms batch, with modification times from 2 s ahead, so
/// each file belongs to the batch its time falls in whenever a run (or a
/// restart) reads it; each run writes its own output and checkpoint.
struct Recovery {
    dir: tempfile::TempDir,
    input: std::path::PathBuf,
    /// Statements before the job's (settings).
    settings: String,
    /// When every file's windows have closed (epoch ms).
    end: u64,
}

fn epoch_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

impl Recovery {
    fn new(settings: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in");
        std::fs::create_dir(&input).unwrap();
        let first = (epoch_millis() / 2000 + 2) * 2000;
        let files = 20u64;
        for i in 0..files {
            let text: String = (0..=i % 4)
                .map(|j| {
                    format!(
                        "{} event {i}.{j}\n",
                        ["ERROR", "INFO", "WARN"][(i + j) as usize % 3]
                    )
                })
                .collect();
            let hidden = input.join(format!(".{i:03}.log"));
            std::fs::write(&hidden, text).unwrap();
            std::fs::File::options()
                .write(true)
                .open(&hidden)
                .unwrap()
                .set_modified(std::time::UNIX_EPOCH + Duration::from_millis(first + i * 200 + 50))
                .unwrap();
            std::fs::rename(&hidden, input.join(format!("{i:03}.log"))).unwrap();
        }
        Recovery {
            dir,
            input,
            settings: settings.to_string(),
            end: first + files * 200 + 3000,
        }
    }

    /// Starts run `name` of the job (again), with `env` set.
    fn start(&self, name: &str, env: &[(&str, &str)]) -> Child {
        let path = self.dir.path().join(format!("{name}.sql"));
        std::fs::write(
            &path,
            format!(
                "SET batch.interval = '200 ms';\n{}\n\
                 CREATE SOURCE logs (line TEXT) WITH (connector = 'files', path = '{}', format = 'lines');\n\
                 CREATE SINK counts WITH (connector = 'files', path = '{}', format = 'csv');\n\
                 INSERT INTO counts\n\
                 SELECT split_part(line, ' ', 1) AS level, count(*) AS n\n\
                 FROM logs GROUP BY hop(INTERVAL '1' SECOND, INTERVAL '2' SECOND), level;\n",
                self.settings,
                self.input.display(),
                self.dir.path().join(format!("out-{name}")).display()
            ),
        )
        .unwrap();
        brooklet()
            .args(["run", path.to_str().unwrap(), "--checkpoint"])
            .arg(self.dir.path().join(format!("checkpoint-{name}")))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Waits until every window has closed, then stops the runs with Ctrl-C.
    fn finish(&self, runs: Vec<Child>) {
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

    /// Run `name`'s output files (every file, hidden ones too) and contents.
    fn output(&self, name: &str) -> Vec<(String, String)> {
        let mut files: Vec<(String, String)> =
            std::fs::read_dir(self.dir.path().join(format!("out-{name}")))
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    let text = std::fs::read_to_string(e.path()).unwrap();
                    (e.file_name().to_string_lossy().into_owned(), text)
                })
                .collect();
        files.sort();
        files
    }
}

/// Spark's MasterFailureTest, with `kill -9`: the files-to-files job is
/// killed at ten pseudo-random moments while its input arrives and started
/// again each time with the same command; its output directory ends up
/// byte for byte what an uninterrupted run of the same job writes.
#[test]
fn kill_9_at_random_moments_leaves_the_same_output_as_an_uninterrupted_run() {
    kill_9_ten_times("");
}

/// The same with state saved every 5 batches: after each kill the batches
/// since the last state run again, each with the files the offset log
/// recorded for it.
#[test]
fn kill_9_with_state_every_5_batches_replays_the_logged_batches() {
    kill_9_ten_times("SET checkpoint.interval = 5;");
}

fn kill_9_ten_times(settings: &str) {
    let recovery = Recovery::new(settings);
    let reference = recovery.start("reference", &[]);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..10 {
        let mut run = recovery.start("crashing", &[]);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        thread::sleep(Duration::from_millis(300 + seed % 500));
        run.kill().unwrap();
        run.wait().unwrap();
    }
    let last = recovery.start("crashing", &[]);
    recovery.finish(vec![reference, last]);
    let expected = recovery.output("reference");
    assert!(expected.len() >= 5, "{expected:?}");
    assert_eq!(recovery.output("crashing"), expected);
}

/// Crashes placed exactly (`BROOKLET_CRASH_AT`): after a state file is
/// written but before its rename, after a batch ran but before its output,
/// in the middle of an output file, and after the output but before the
/// commit. Each must fire (exit code 86); the run started again afterwards
/// ends with the uninterrupted run's output, no file missing, partial or
/// left over.
#[test]
fn crashes_at_each_crash_point_leave_the_same_output() {
    let recovery = Recovery::new("");
    let reference = recovery.start("reference", &[]);
    let points = [
        ("state-written", "state-written:18"),
        ("before-sink", "before-sink:4"),
        ("sink-mid-write", "sink-mid-write:2"),
        ("before-commit", "before-commit:18"),
    ];
    let crashing: Vec<(&str, Child)> = points
        .iter()
        .map(|(name, plan)| (*name, recovery.start(name, &[("BROOKLET_CRASH_AT", plan)])))
        .collect();
    let mut restarted = Vec::new();
    for (name, run) in crashing {
        expect_crash(name, run);
        restarted.push(recovery.start(name, &[]));
    }
    restarted.push(reference);
    recovery.finish(restarted);
    let expected = recovery.output("reference");
    assert!(expected.len() >= 5, "{expected:?}");
    for (name, _) in points {
        assert_eq!(recovery.output(name), expected, "after a crash at {name}");
    }
}

/// A crash inside the last batch of a backfill, after its output and before
/// its commit: the batch runs again after the restart and ends the input
/// again, so the windows its end flushed are flushed in that same batch,
/// and the sink's files are those of the uninterrupted run (before, the
/// flush moved to one batch later: the last file was rewritten with fewer
/// lines and one more file appeared).
#[test]
fn a_crash_in_a_backfills_last_batch_writes_the_same_files_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for (name, rows) in [
        ("a.csv", "x,1,1000\ny,2,1500\n"),
        ("b.csv", "x,3,3500\n"),
        ("c.csv", "y,4,4200\nx,5,4300\n"),
    ] {
        std::fs::write(input.join(name), rows).unwrap();
    }
    let run = |out: &str, crash: Option<&str>| {
        let sql = format!(
            "SET batch.interval = '1 hour';
             CREATE SOURCE s (k TEXT, v BIGINT, ts BIGINT, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH (connector = 'files', path = '{}', format = 'csv', max.records.per.batch = '1');
             CREATE SINK o WITH (connector = 'files', path = '{}', format = 'csv');
             INSERT INTO o SELECT window_start, window_end, k, sum(v) AS total
               FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), INTERVAL '2' SECOND))
               GROUP BY window_start, window_end, k;",
            input.display(),
            dir.path().join(out).display()
        );
        let checkpoint = dir.path().join(format!("{out}.ck"));
        let mut command = brooklet();
        command
            .args([
                "--available-now",
                "--checkpoint",
                checkpoint.to_str().unwrap(),
            ])
            .args(["-c", &sql])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(plan) = crash {
            command.env("BROOKLET_CRASH_AT", plan);
        }
        command.spawn().unwrap()
    };
    let files = |out: &str| -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir.path().join(out))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    };
    assert!(run("whole", None).wait().unwrap().success());
    // Three files, one per batch: the second closes [0 s, 2 s), the
    // third is the last and flushes the rest.
    expect_crash("before-commit", run("crashed", Some("before-commit:3")));
    assert!(run("crashed", None).wait().unwrap().success());
    let whole = files("whole");
    assert_eq!(whole.len(), 2, "{whole:?}");
    assert_eq!(files("crashed"), whole);
}

/// A burst through a socket: 2 s at 10 000 lines/s, 2 s at ten times that,
/// 2 s at 10 000 again. The receiver's bounded channel and
/// `max.records.per.batch` keep memory bounded (TCP pushes back on the
/// sender), and the backlog drains: every line is counted once, soon after
/// the sender is done.
#[test]
fn a_ten_times_burst_keeps_memory_bounded_and_drains() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent_all = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender_done = std::sync::Arc::clone(&sent_all);
    let phases: [(u64, u64); 3] = [(1_000, 20), (10_000, 20), (1_000, 20)];
    let total: u64 = phases
        .iter()
        .map(|(per_tick, ticks)| per_tick * ticks)
        .sum();
    let server = thread::spawn(move || {
        let (mut peer, _) = listener.accept().unwrap();
        let mut n = 0u64;
        for (per_tick, ticks) in phases {
            for _ in 0..ticks {
                let tick = Instant::now();
                let chunk: String = (0..per_tick)
                    .map(|_| {
                        n += 1;
                        format!("{n},a payload of some fifty bytes to make lines real\n")
                    })
                    .collect();
                peer.write_all(chunk.as_bytes()).unwrap();
                thread::sleep(Duration::from_millis(100).saturating_sub(tick.elapsed()));
            }
        }
        sender_done.store(true, std::sync::atomic::Ordering::SeqCst);
        // Stay connected until the test ends.
        let mut rest = Vec::new();
        let _ = peer.read_to_end(&mut rest);
    });
    let mut child = brooklet()
        .args([
            "-c",
            &format!(
                "SET batch.interval = '200 ms'; \
                 CREATE SOURCE s (n BIGINT, payload TEXT) WITH (connector = 'socket', host = '127.0.0.1', \
                 port = {port}, format = 'csv', max.records.per.batch = 20000); \
                 SELECT count(*) AS c FROM s;"
            ),
            "--format",
            "csv",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = sample_peak_rss(child.id(), std::sync::Arc::clone(&running));
    let started = Instant::now();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut counted = 0u64;
    let mut drained_at = None;
    let mut line = String::new();
    while drained_at.is_none() {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the run ended early"
        );
        if let Ok(c) = line.trim().parse::<u64>() {
            counted += c;
        }
        if counted >= total {
            drained_at = Some(started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the backlog never drained: {counted} of {total}"
        );
    }
    let sender_finished = sent_all.load(std::sync::atomic::Ordering::SeqCst);
    running.store(false, std::sync::atomic::Ordering::SeqCst);
    let peak = sampler.join().unwrap();
    sigint(&child);
    drop(stdout);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    drop(server);
    assert_eq!(counted, total, "every line counted once");
    eprintln!(
        "burst: {total} lines, drained {:.1} s after the start (sender done: {sender_finished}), peak RSS {:.1} MiB",
        drained_at.unwrap().as_secs_f64(),
        peak as f64 / (1 << 20) as f64
    );
    assert!(peak < 400 << 20, "peak RSS {peak} bytes");
}

/// `receiver.log = true` makes a socket replayable: lines the process had
/// received (logged and fsynced) are not lost when it is killed before they
/// were batched, and with the files sink every line comes out once.
#[test]
fn the_receiver_log_loses_no_received_line_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let server = thread::spawn(move || {
        // First connection: lines 1..=300; after the restart: 301..=400.
        for range in [1..=300u32, 301..=400] {
            let (mut peer, _) = listener.accept().unwrap();
            let lines: String = range.map(|n| format!("{n}\n")).collect();
            peer.write_all(lines.as_bytes()).unwrap();
            if range_end_is(&lines, 400) {
                let _ = finished.recv_timeout(Duration::from_secs(60));
            } else {
                // Hold the connection until the process is killed.
                let mut rest = Vec::new();
                let _ = peer.read_to_end(&mut rest);
            }
        }
    });
    let out = dir.path().join("out");
    let job = sql_file(
        &dir,
        &format!(
            "SET batch.interval = '3 seconds';\n\
             CREATE SOURCE s (n BIGINT) WITH (connector = 'socket', host = '127.0.0.1', port = {port}, \
             format = 'csv', receiver.log = true);\n\
             CREATE SINK lines WITH (connector = 'files', path = '{}', format = 'csv');\n\
             INSERT INTO lines SELECT n FROM s;\n",
            out.display()
        ),
    );
    let checkpoint = dir.path().join("checkpoint");
    let start = || {
        brooklet()
            .args(["run", job.to_str().unwrap(), "--checkpoint"])
            .arg(&checkpoint)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = start();
    // Kill as soon as every line is in the receiver log.
    let log = checkpoint.join("receiver-logs/s/0.log");
    let logged_bytes: u64 = (1..=300u32).map(|n| n.to_string().len() as u64 + 1).sum();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(&log).map_or(0, |m| m.len()) < logged_bytes {
        assert!(
            Instant::now() < deadline,
            "the lines never reached the receiver log"
        );
        thread::sleep(Duration::from_millis(5));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let batched_before_kill = std::fs::read_dir(&out).map_or(0, |d| d.count());
    let second = start();
    let rows = || -> Vec<u32> {
        let mut rows: Vec<u32> = std::fs::read_dir(&out)
            .map(|d| {
                d.map(|e| e.unwrap().path())
                    .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
                    .flat_map(|p| {
                        std::fs::read_to_string(p)
                            .unwrap()
                            .lines()
                            .skip(1)
                            .map(|l| l.parse().unwrap())
                            .collect::<Vec<u32>>()
                    })
                    .collect()
            })
            .unwrap_or_default();
        rows.sort_unstable();
        rows
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while rows().len() < 400 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    sigint(&second);
    let output = second.wait_with_output().unwrap();
    done.send(()).unwrap();
    server.join().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("receiver log: {batched_before_kill} output files before the kill");
    assert_eq!(rows(), (1..=400).collect::<Vec<u32>>(), "every line once");
}

fn range_end_is(lines: &str, n: u32) -> bool {
    lines.ends_with(&format!("\n{n}\n"))
}

/// The console output's rows (csv, each batch's header line left out),
/// all batches together, sorted.
fn all_rows(stdout: &str) -> Vec<String> {
    let mut rows: Vec<String> = blocks(stdout)
        .into_iter()
        .flat_map(|(_, rows)| rows.into_iter().skip(1))
        .collect();
    rows.sort();
    rows
}

#[test]
fn available_now_cuts_stdin_into_full_batches_not_into_reads() {
    // 300 000 lines (about 3 MB) arrive in dozens of reads; each batch
    // waits for a full buffer or the end, so one batch takes them all.
    let input: String = (0..300_000).map(|i| format!("{i}\n")).collect();
    let output = run_with_input(
        &[
            "--format",
            "csv",
            "--available-now",
            "-c",
            "CREATE SOURCE s (n BIGINT) WITH (connector = 'stdin', format = 'csv'); \
             SELECT count(*) AS rows FROM s;",
        ],
        input.as_bytes(),
    );
    assert!(output.status.success(), "{output:?}");
    let counts: Vec<u64> = all_rows(&String::from_utf8(output.stdout).unwrap())
        .iter()
        .filter_map(|r| r.parse().ok())
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), 300_000);
    let with_rows = counts.iter().filter(|&&n| n > 0).count();
    assert_eq!(with_rows, 1, "batches of {counts:?}");
}

#[test]
fn available_now_reads_stdin_and_a_files_directory_then_ends() {
    let dir = tempfile::tempdir().unwrap();
    let input: String = (0..3000)
        .map(|i| format!("k{},{}\n", i % 7, 1_000 + i * 10))
        .collect();
    let query = "CREATE SOURCE bids (k TEXT, ts BIGINT, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
                 WITH (connector = 'stdin', format = 'csv');\n\
                 SELECT window_start, k, count(*) AS n FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), \
                 INTERVAL '5' SECOND)) GROUP BY window_start, window_end, k;";
    let file = sql_file(&dir, query);
    let run = |extra: &[&str]| {
        let mut args = vec!["--format", "csv", "--max-rows", "1000"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["run", file.to_str().unwrap()]);
        let output = run_with_input(&args, input.as_bytes());
        assert!(output.status.success(), "{output:?}");
        all_rows(&String::from_utf8(output.stdout).unwrap())
    };
    // The same windows as on the clock: every row of the input counted.
    let on_clock = run(&[]);
    let available_now = run(&["--available-now"]);
    assert_eq!(available_now, on_clock);
    let counted: u64 = available_now
        .iter()
        .map(|r| r.rsplit(',').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(counted, 3000);

    // A files source reads the files present and ends (on the clock it
    // would watch the directory forever).
    let files = dir.path().join("in");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("a.csv"), "x,1\ny,2\n").unwrap();
    std::fs::write(files.join("b.csv"), "z,3\n").unwrap();
    let sql = format!(
        "CREATE SOURCE f (word TEXT, n BIGINT) WITH (connector = 'files', path = '{}', format = 'csv'); \
         SELECT word, n FROM f;",
        files.display()
    );
    let output = run_with_input(&["--format", "csv", "--available-now", "-c", &sql], b"");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(all_rows(&stdout), vec!["x,1", "y,2", "z,3"]);

    // A source with no end is refused, saying which and why.
    let output = run_with_input(
        &[
            "--available-now",
            "-c",
            "CREATE SOURCE s WITH (connector = 'sequence'); SELECT id FROM s;",
        ],
        b"",
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("'s' (sequence): it generates rows forever"),
        "{stderr}"
    );
}

/// A backfill ends by emitting its open windows (the watermark is +∞ at
/// the end of input). The next run of the same query from the same
/// checkpoint, here at another parallelism, reads the new file's rows from
/// the watermark the first run's rows gave, not as late rows.
#[test]
fn a_backfill_restarted_on_new_files_goes_on_from_its_rows_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("in");
    std::fs::create_dir(&files).unwrap();
    let checkpoint = dir.path().join("ck");
    let sql = format!(
        "CREATE SOURCE s (k TEXT, v BIGINT, ts BIGINT, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
           WITH (connector = 'files', path = '{}', format = 'csv'); \
         SELECT window_start, window_end, k, sum(v) AS total \
           FROM TABLE(CUMULATE(TABLE s, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '4' SECOND)) \
           GROUP BY window_start, window_end, k;",
        files.display()
    );
    let run = |parallelism: &str| {
        let output = run_with_input(
            &[
                "--format",
                "csv",
                "--available-now",
                "--parallelism",
                parallelism,
                "--checkpoint",
                checkpoint.to_str().unwrap(),
                "-c",
                &sql,
            ],
            b"",
        );
        assert!(output.status.success(), "{output:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(!stderr.contains("late"), "{stderr}");
        all_rows(&String::from_utf8(output.stdout).unwrap())
    };
    std::fs::write(
        files.join("a.csv"),
        "a,1,1000
",
    )
    .unwrap();
    assert_eq!(
        run("1"),
        [
            "1970-01-01T00:00:00,1970-01-01T00:00:02,a,1",
            "1970-01-01T00:00:00,1970-01-01T00:00:04,a,1"
        ]
    );
    std::fs::write(
        files.join("b.csv"),
        "a,2,25000
",
    )
    .unwrap();
    assert_eq!(
        run("3"),
        [
            "1970-01-01T00:00:24,1970-01-01T00:00:26,a,2",
            "1970-01-01T00:00:24,1970-01-01T00:00:28,a,2"
        ]
    );
}

#[test]
fn parallelism_gives_the_same_rows_from_the_flag_and_from_set() {
    let input: String = (0..20_000)
        .map(|i| format!("k{},{},{}\n", i % 97, i % 13, 1_000 + i * 7))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let query = |set: &str| {
        format!(
            "{set}CREATE SOURCE bids (k TEXT, v BIGINT, ts BIGINT, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
             WITH (connector = 'stdin', format = 'csv');\n\
             SELECT window_start, k, count(*) AS n, sum(v) AS s FROM TABLE(HOP(TABLE bids, DESCRIPTOR(ts), \
             INTERVAL '5' SECOND, INTERVAL '15' SECOND)) GROUP BY window_start, window_end, k;"
        )
    };
    let run = |extra: &[&str], set: &str| {
        let file = sql_file(&dir, &query(set));
        let mut args = vec!["--format", "csv", "--max-rows", "100000", "--available-now"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["run", file.to_str().unwrap()]);
        let output = run_with_input(&args, input.as_bytes());
        assert!(output.status.success(), "{output:?}");
        all_rows(&String::from_utf8(output.stdout).unwrap())
    };
    let one = run(&[], "");
    assert!(one.len() > 2000, "{} rows", one.len());
    assert_eq!(run(&["--parallelism", "3"], ""), one);
    assert_eq!(run(&[], "SET parallelism = 2;\n"), one);

    let output = run_with_input(&["--parallelism", "0", "-c", "SELECT 1;"], b"");
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("parallelism is a number of tasks from 1 to 128"),
        "{stderr}"
    );
}
