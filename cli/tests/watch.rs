//! Watching a job from outside the process: the REPL through a
//! pseudo-terminal (completion, `EXPLAIN`, `SHOW QUERIES`, `STOP QUERY`,
//! `\d NAME`, pausing a query's output), and `--ui` serving metrics while
//! `brooklet -c` runs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

mod support;

use support::{brooklet, sigint};

/// A REPL in a pseudo-terminal, with its history in a scratch home.
fn repl(home: &tempfile::TempDir) -> rexpect::session::PtySession {
    let mut command = brooklet();
    command
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", home.path().join("data"));
    let mut repl = rexpect::session::spawn_command(command, Some(20_000)).unwrap();
    repl.exp_string("brooklet> ").unwrap();
    repl
}

#[test]
fn the_repl_completes_explains_lists_and_stops_queries() {
    let home = tempfile::tempdir().unwrap();
    let mut repl = repl(&home);
    repl.send_line(
        "CREATE SOURCE clicks (id BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
         WITH (connector = 'sequence', rows.per.second = 20);",
    )
    .unwrap();
    repl.exp_string("source 'clicks' created").unwrap();
    repl.send_line("SET batch.interval = '200 ms';").unwrap();
    repl.exp_string("batch.interval = 200 ms").unwrap();
    repl.send_line("SET ui.address = '127.0.0.1:0';").unwrap();
    repl.exp_string("status page at http://127.0.0.1:").unwrap();

    // Tab completes a source's name after FROM; Ctrl-C drops the line.
    // (The terminal's writer is line-buffered: a line without Enter is flushed.)
    repl.send("SELECT id FROM cli").unwrap();
    repl.send("\t").unwrap();
    repl.flush().unwrap();
    repl.exp_string("clicks").unwrap();
    repl.send_control('c').unwrap();
    repl.exp_string("brooklet> ").unwrap();

    // ... and a connector's option inside WITH (…).
    repl.send("CREATE SINK out WITH (connector = 'console', for")
        .unwrap();
    repl.send("\t").unwrap();
    repl.flush().unwrap();
    repl.exp_string("format").unwrap();
    repl.send_line(" = 'csv');").unwrap();
    repl.exp_string("sink 'out' created").unwrap();

    // EXPLAIN shows the operators without running anything.
    repl.send_line(
        "EXPLAIN SELECT window_start, count(*) AS n FROM TABLE(TUMBLE(TABLE clicks, \
         DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end;",
    )
    .unwrap();
    // (The terminal session reads bytes one by one: expect ASCII.)
    repl.exp_string("event-time window aggregate  [stateful: keys")
        .unwrap();
    repl.exp_string("windows the watermark has not closed]")
        .unwrap();
    repl.exp_string("tumbling windows of 1 s, on event time ts")
        .unwrap();
    repl.exp_string("source clicks").unwrap();
    repl.exp_string("sequence").unwrap();
    repl.exp_string("brooklet> ").unwrap();

    // A background query, listed, described and stopped.
    repl.send_line("INSERT INTO out SELECT id FROM clicks WHERE id < 0;")
        .unwrap();
    repl.exp_string("query 'out' started in the background")
        .unwrap();
    repl.send_line("SHOW QUERIES;").unwrap();
    repl.exp_string("writes to").unwrap();
    // Pending until its first batch, then running.
    repl.exp_regex(r"out\s+(pending|running)\s+clicks\s+sink out")
        .unwrap();
    repl.send_line("\\d out").unwrap();
    repl.exp_string("Sink:").unwrap();
    repl.exp_regex(r"Query out \((pending|running)\), reads clicks, writes to sink out")
        .unwrap();
    repl.exp_string("Operators:").unwrap();
    repl.send_line("STOP QUERY out;").unwrap();
    repl.exp_string("query 'out' stopped after").unwrap();
    repl.send_line("SHOW QUERIES;").unwrap();
    repl.exp_regex(r"out\s+stopped").unwrap();
    repl.send_line("STOP QUERY out;").unwrap();
    repl.exp_string("no running query is named 'out'").unwrap();
    repl.exp_string("brooklet> ").unwrap();

    // A foreground query's output is paused and resumed while it runs.
    repl.send_line("SELECT id FROM clicks;").unwrap();
    repl.exp_string("Time: ").unwrap();
    repl.send_line("p").unwrap();
    repl.exp_string("output paused; the query goes on").unwrap();
    repl.send_line("r").unwrap();
    repl.exp_string("console output resumed").unwrap();
    repl.exp_string("Time: ").unwrap();
    repl.send_line("l 1").unwrap();
    repl.exp_string("printing at most 1 row per batch").unwrap();
    repl.send_line("s").unwrap();
    repl.exp_string("query stopped").unwrap();
    repl.exp_string("brooklet> ").unwrap();
    repl.send_control('d').unwrap();
    repl.exp_eof().unwrap();
}

/// `GET path` on `address`: the body.
fn get(address: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(address.parse::<SocketAddr>().unwrap()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"));
    response.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// The batches query `q1` ran (0 before it is registered).
fn batches_total(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("brooklet_query_batches_total{query=\"q1\"} "))
        .map_or(0, |n| n.parse().unwrap())
}

#[test]
fn ui_serves_metrics_that_move_while_a_run_goes_on() {
    let mut child = brooklet()
        .args([
            "--ui",
            "127.0.0.1:0",
            "--batch-interval",
            "100 ms",
            "-c",
            "CREATE SOURCE s WITH (connector = 'sequence', rows.per.second = 100); SELECT id FROM s;",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let address = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line}"))
        .to_string();
    // Batches run in real time (100 ms each); the count is polled.
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let n = batches_total(&get(&address, "/metrics"));
        if n >= 2 {
            break n;
        }
        assert!(Instant::now() < deadline, "no batches ran");
        std::thread::sleep(Duration::from_millis(50));
    };
    loop {
        let n = batches_total(&get(&address, "/metrics"));
        if n > first {
            break;
        }
        assert!(Instant::now() < deadline, "the batch count stays at {n}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let json: serde_json::Value = serde_json::from_str(&get(&address, "/api/queries")).unwrap();
    assert_eq!(json["queries"][0]["destination"], "console");
    assert_eq!(json["sources"][0]["connector"], "sequence");
    assert!(get(&address, "/").contains("Brooklet streaming status"));
    sigint(&child);
    assert!(child.wait().unwrap().success());
}
