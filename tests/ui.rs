//! The status server over a real socket: `/metrics`, `/api/queries` and
//! the page, while a query runs on a manual clock (so that every figure is
//! known), and the page in a real browser — headless Chromium, started by
//! the test and killed by PID — checked for what a user sees.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use brooklet::prelude::*;
use serde_json::Value;

use crate::support::{manual_context, wait_for_batch};

/// The status and body of `GET path` (HTTP/1.0: the server closes).
fn get(address: SocketAddr, path: &str) -> (u16, String) {
    request(address, "GET", path, &address.to_string())
}

/// The status and body of `method path`, naming `host`.
fn request(address: SocketAddr, method: &str, path: &str, host: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// The value of the sample `name{labels}` in a `/metrics` text.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{metrics}"))
        .parse()
        .unwrap()
}

/// A context on a manual clock with a memory source `words` and a query
/// `counts` of a 2-second window of word counts every second.
async fn counting() -> (StreamingContext, ManualClock, QueryHandle) {
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    ctx.execute(
        "CREATE SOURCE words (word TEXT) WITH (connector = 'memory', format = 'csv', on-error = 'skip');",
    )
    .await
    .unwrap();
    let handle = ctx
        .sql(
            "SELECT word, count(*) AS n FROM TABLE(HOP(TABLE words, DESCRIPTOR(proctime), \
             INTERVAL '1' SECOND, INTERVAL '2' SECOND)) GROUP BY window_start, window_end, word",
        )
        .await
        .unwrap()
        .name("counts")
        .foreach_batch(|_, _| Ok(()))
        .unwrap();
    ctx.start().await.unwrap();
    (ctx, clock, handle)
}

/// Runs the batches up to `seconds`, feeding `words` one line per batch.
async fn run_to(ctx: &StreamingContext, clock: &ManualClock, handle: &QueryHandle, seconds: i64) {
    let words = ctx.memory_source("words").unwrap();
    let from = handle
        .last_progress()
        .map_or(1, |p| p.batch_time.millis() / 1000 + 1);
    for s in from..=seconds {
        words.push_records("a\nb\na\nbad,line,here");
        clock.set(s * 1000);
        wait_for_batch(handle, s * 1000).await;
    }
}

#[tokio::test]
async fn metrics_and_json_move_as_batches_run_and_json_matches_what_d_shows() {
    let (ctx, clock, handle) = counting().await;
    let address = ctx.serve_ui("127.0.0.1:0").unwrap();
    assert_eq!(ctx.ui_address(), Some(address));
    run_to(&ctx, &clock, &handle, 3).await;

    let (status, metrics) = get(address, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(
        sample(&metrics, "brooklet_query_batches_total{query=\"counts\"}"),
        3.0
    );
    assert_eq!(
        sample(
            &metrics,
            "brooklet_query_input_rows_total{query=\"counts\"}"
        ),
        9.0
    );
    assert_eq!(
        sample(&metrics, "brooklet_source_records_total{source=\"words\"}"),
        9.0
    );
    assert_eq!(
        sample(
            &metrics,
            "brooklet_source_malformed_records_by_kind_total{source=\"words\",kind=\"field_count\"}"
        ),
        3.0
    );
    assert_eq!(
        sample(&metrics, "brooklet_query_running{query=\"counts\"}"),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            "brooklet_query_processing_seconds_count{query=\"counts\"}"
        ),
        3.0
    );
    assert_eq!(sample(&metrics, "brooklet_batch_interval_seconds"), 1.0);
    assert!(metrics.contains("# TYPE brooklet_query_processing_seconds histogram"));

    run_to(&ctx, &clock, &handle, 5).await;
    let (_, metrics) = get(address, "/metrics");
    assert_eq!(
        sample(&metrics, "brooklet_query_batches_total{query=\"counts\"}"),
        5.0
    );
    assert_eq!(
        sample(&metrics, "brooklet_source_records_total{source=\"words\"}"),
        15.0
    );
    assert_eq!(
        sample(
            &metrics,
            "brooklet_query_last_batch_time_seconds{query=\"counts\"}"
        ),
        5.0
    );

    // The JSON has what `\d` shows (the context's own figures).
    let (status, body) = get(address, "/api/queries?history=1");
    assert_eq!(status, 200);
    let json: Value = serde_json::from_str(&body).unwrap();
    let query = &json["queries"][0];
    assert_eq!(query["name"], "counts");
    assert_eq!(query["status"], "running");
    assert_eq!(query["batches"], 5);
    assert_eq!(query["history"].as_array().unwrap().len(), 5);
    let progress = handle.last_progress().unwrap();
    assert_eq!(
        query["last_batch"]["batch_time_ms"],
        progress.batch_time.millis()
    );
    assert_eq!(query["last_batch"]["state_bytes"], progress.state_bytes);
    // The window is the one operator that keeps state: it holds all of it.
    let stateful: Vec<&Value> = query["operators"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["stateful"] == true)
        .collect();
    assert_eq!(stateful.len(), 1);
    assert_eq!(stateful[0]["name"], "window aggregate");
    assert_eq!(stateful[0]["state_bytes"], progress.state_bytes);
    let source = ctx
        .sources()
        .into_iter()
        .find(|s| s.name == "words")
        .unwrap();
    let shown = &json["sources"][0];
    assert_eq!(shown["name"], "words");
    assert_eq!(shown["records"], source.metrics.records);
    assert_eq!(shown["malformed"], source.metrics.malformed);
    assert_eq!(
        shown["malformed_by_kind"]["field_count"],
        source.metrics.malformed_by_kind["field_count"]
    );
    assert_eq!(json["batch_interval_ms"], 1000);

    // The page, and what is not served.
    let (status, page) = get(address, "/?refresh=0");
    assert_eq!(status, 200);
    assert!(
        page.contains("data-chart=\"total-delay-counts\" data-points=\"5\""),
        "{page}"
    );
    assert!(!page.contains("http-equiv=\"refresh\""));
    assert!(
        get(address, "/")
            .1
            .contains("http-equiv=\"refresh\" content=\"2\"")
    );
    assert_eq!(get(address, "/nothing").0, 404);
    assert_eq!(request(address, "POST", "/metrics", "localhost").0, 405);
    // On loopback, only loopback names are answered (no DNS rebinding).
    assert_eq!(
        request(address, "GET", "/api/queries", "localhost:4040").0,
        200
    );
    assert_eq!(
        request(address, "GET", "/api/queries", "evil.example:4040").0,
        403
    );
    // Served again on the same address: the old server let it go.
    let again = ctx.serve_ui(&address.to_string()).unwrap();
    assert_eq!(again, address);
    assert_eq!(get(address, "/metrics").0, 200);

    // Stopped, the query says so.
    handle.stop().await.unwrap();
    let (_, metrics) = get(address, "/metrics");
    assert_eq!(
        sample(&metrics, "brooklet_query_running{query=\"counts\"}"),
        0.0
    );
    ctx.stop(StopMode::Immediate).await.unwrap();
}

/// Chromium from Debian's package (`.ci/run` installs it).
fn chromium() -> &'static str {
    for path in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(path).exists() {
            return path;
        }
    }
    panic!("Chromium is not installed: apt-get install chromium (.ci/run does)");
}

/// Runs headless Chromium on `url` with `args` and returns its stdout;
/// killed by PID if it does not end within a minute.
fn headless(url: &str, args: &[&str], profile: &std::path::Path) -> String {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-9", &child.id().to_string()])
                .status();
            let _ = child.wait();
            panic!("Chromium did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

/// The values of attribute `name` of the elements that open with `open`
/// inside the element with `data-chart="chart"`.
fn chart_attributes(dom: &str, chart: &str, open: &str, name: &str) -> Vec<f64> {
    let start = dom
        .find(&format!("data-chart=\"{chart}\""))
        .unwrap_or_else(|| panic!("no chart {chart}"));
    let svg = &dom[start..start + dom[start..].find("</svg>").unwrap()];
    svg.split(open)
        .skip(1)
        .filter_map(|element| {
            let at = element.find(&format!(" {name}=\""))? + name.len() + 3;
            element[at..].split('"').next()?.parse().ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_in_a_browser_draws_every_batch_and_a_slow_query_crosses_the_interval_line() {
    let (ctx, clock, handle) = counting().await;
    let address = ctx.serve_ui("127.0.0.1:0").unwrap();
    // Four batches on time, then the clock jumps 8 seconds: the batches of
    // 5 s to 12 s start late, the first of them 7 s late — a query that
    // fell behind, as the delay chart must show.
    run_to(&ctx, &clock, &handle, 4).await;
    ctx.memory_source("words").unwrap().push_records("c");
    clock.set(12_000);
    wait_for_batch(&handle, 12_000).await;
    let batches = handle.totals().batches;
    assert_eq!(batches, 12);

    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{address}/?refresh=0");
    let dom = tokio::task::spawn_blocking({
        let url = url.clone();
        let profile = profile.path().to_path_buf();
        move || headless(&url, &["--dump-dom"], &profile)
    })
    .await
    .unwrap();
    assert!(dom.contains("Brooklet streaming status"), "{dom}");
    assert!(
        dom.contains("data-query=\"counts\"><td><a href=\"#query-counts\">counts</a></td><td><span class=\"state state-running\">running</span>"),
        "{dom}"
    );
    // Every timeline has one point per batch run.
    for chart in [
        "input-rate",
        "scheduling-delay",
        "processing-time",
        "total-delay",
        "state",
    ] {
        let points = chart_attributes(&dom, &format!("{chart}-counts"), "<circle", "cy");
        assert_eq!(points.len(), batches as usize, "{chart}");
    }
    // The delay chart's points rise above the batch-interval line: those
    // whose delay is longer than the interval are drawn higher (a smaller
    // y) than the line, the others lower.
    let chart = "scheduling-delay-counts";
    let ys = chart_attributes(&dom, chart, "<circle", "cy");
    let values = chart_attributes(&dom, chart, "<circle", "data-value");
    let line = chart_attributes(&dom, chart, "<line class=\"reference\"", "y1");
    let interval = chart_attributes(&dom, chart, "<line class=\"reference\"", "data-value");
    assert_eq!((line.len(), interval), (1, vec![1000.0]));
    let above: Vec<bool> = ys.iter().map(|y| *y < line[0]).collect();
    let late: Vec<bool> = values.iter().map(|v| *v > 1000.0).collect();
    assert_eq!(above, late);
    assert!(late.iter().filter(|l| **l).count() >= 5, "{values:?}");
    assert!(!late[0] && late[4], "{values:?}");

    // A screenshot, kept as the test's artifact.
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let screenshot = format!("--screenshot={}", shot.display());
    let profile = profile.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        headless(&url, &[&screenshot, "--window-size=1280,2400"], &profile)
    })
    .await
    .unwrap();
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    eprintln!("status page screenshot: {}", shot.display());
    ctx.stop(StopMode::Immediate).await.unwrap();
}
