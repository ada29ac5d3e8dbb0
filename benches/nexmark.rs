//! Nexmark: the queries in `benches/nexmark/q*.sql` over the built-in
//! generator (`connector = 'nexmark'`, declared by `benches/nexmark/ddl.sql`),
//! each result sent to a blackhole that counts rows.
//!
//! ```text
//! cargo bench --bench nexmark -- --query q5 --events 10000000
//! cargo bench --bench nexmark -- --query all [--rate 100000] [--seed 42]
//! cargo bench --bench nexmark -- --query q5 --ui
//! cargo bench --bench nexmark -- --query q5 --parallelism 1,2
//! ```
//!
//! `--parallelism 1,2` measures each query at each parallelism in turn
//! (`SET parallelism`), on a runtime of as many workers as tasks.
//!
//! `--ui` measures each query a second time (line `qN+ui`) with the status
//! server on and a page open on it: a thread of the process loads `/` and
//! scrapes `/metrics` every 250 ms (eight times the page's own refresh
//! rate), so that line's CPU includes rendering the page and the metrics —
//! and reading them, an upper bound of the cost.
//!
//! For each query (after a warm-up run over a tenth of the events) it
//! prints one line:
//!
//! ```text
//! nexmark q5 parallelism=1 events=… cpu_s=… events_per_cpu_s=… events_per_s=… peak_rss_mb=… output_rows=… ratio_to_generator=…
//! ```
//!
//! `cpu_s` is the process's user + system CPU time (`getrusage`) over the
//! run; `events_per_cpu_s` is Nexmark's per-core throughput (all events
//! counted, people and auctions included, as Nexmark does);
//! `events_per_s` is the throughput in wall-clock time, which parallelism
//! raises;
//! `ratio_to_generator` divides it by that of a generator → blackhole run
//! (the bid stream, no query) made first in the same process, so the
//! machine's speed cancels out (drift during a long run does not).
//! `peak_rss_mb` is the process's peak resident set during the run (reset
//! before it through `/proc/self/clear_refs`, to the resident set at the
//! start, which a `#` line before shows: the allocator keeps memory from
//! earlier runs).
//!
//! Event time follows `--rate` (events per second of event time, default
//! 100 000): 10 M events are 100 s of event time, so the 10-second windows
//! fire ten times (q7) and fifty times (q5) rather than once. Batches are
//! one second of processing time on a manual clock that the harness moves
//! as fast as the query goes, each with `rate` events.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use brooklet::prelude::*;

mod common;

/// What the command line asks for.
struct Args {
    queries: Vec<String>,
    events: u64,
    rate: u64,
    seed: u64,
    ui: bool,
    parallelism: Vec<usize>,
}

impl Args {
    fn parse() -> Args {
        let mut args = Args {
            queries: vec!["all".into()],
            events: 10_000_000,
            rate: 100_000,
            seed: 42,
            ui: false,
            parallelism: vec![1],
        };
        let mut given = std::env::args().skip(1);
        while let Some(arg) = given.next() {
            let mut value = |name: &str| {
                given
                    .next()
                    .unwrap_or_else(|| usage(&format!("{name} needs a value")))
            };
            let number = |name: &str, text: String| {
                text.replace('_', "")
                    .parse()
                    .unwrap_or_else(|_| usage(&format!("{name} takes a number, not '{text}'")))
            };
            match arg.as_str() {
                "--query" => args.queries = vec![value("--query")],
                "--events" => args.events = number("--events", value("--events")),
                "--rate" => args.rate = number("--rate", value("--rate")),
                "--seed" => args.seed = number("--seed", value("--seed")),
                "--ui" => args.ui = true,
                "--parallelism" => {
                    args.parallelism = value("--parallelism")
                        .split(',')
                        .map(|n| number("--parallelism", n.trim().to_string()) as usize)
                        .collect()
                }
                // What cargo bench passes to every bench target.
                "--bench" => {}
                other => usage(&format!("unknown argument '{other}'")),
            }
        }
        if args.queries == ["all"] {
            args.queries = all_queries();
        }
        args
    }
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "{problem}\nusage: cargo bench --bench nexmark -- [--query qN|all] [--events N] [--rate EVENTS_PER_SECOND] [--seed N] [--ui] [--parallelism 1,2]"
    );
    std::process::exit(2)
}

fn queries_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/nexmark")
}

/// The query names in `benches/nexmark`, by number.
fn all_queries() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(queries_dir())
        .expect("benches/nexmark")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with('q') && n.ends_with(".sql"))
        .map(|n| n.trim_end_matches(".sql").to_string())
        .collect();
    names.sort_by_key(|n| n[1..].parse::<u32>().unwrap_or(u32::MAX));
    names
}

/// The sources, declared for `events` events at `rate`.
fn ddl(events: u64, rate: u64, seed: u64) -> String {
    std::fs::read_to_string(queries_dir().join("ddl.sql"))
        .expect("benches/nexmark/ddl.sql")
        .replace("${EVENTS_PER_SECOND}", &rate.to_string())
        .replace("${EVENTS}", &events.to_string())
        .replace("${SEED}", &seed.to_string())
}

/// What one run measured.
struct Run {
    cpu: Duration,
    wall: Duration,
    peak_rss_mb: f64,
    /// The resident set when the run started (the allocator keeps memory
    /// from earlier runs), if the peak could be reset.
    rss_at_start_mb: Option<f64>,
    output_rows: u64,
}

/// Starts a new peak-RSS measurement (Linux: resets VmHWM to the current
/// RSS, which includes what the allocator kept from earlier runs); whether
/// it could.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The peak resident set since the last reset, in MiB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// A page open on the status server at `address`: loads `/` and scrapes
/// `/metrics` every 250 ms until `open` is cleared.
fn open_page(address: std::net::SocketAddr, open: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    use std::io::{Read, Write};
    std::thread::spawn(move || {
        let mut loads = 0;
        while open.load(Ordering::Relaxed) {
            for path in ["/", "/metrics"] {
                let Ok(mut stream) = std::net::TcpStream::connect(address) else {
                    continue;
                };
                let _ = write!(stream, "GET {path} HTTP/1.0\r\n\r\n");
                let mut body = Vec::new();
                let _ = stream.read_to_end(&mut body);
                loads += 1;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        loads
    })
}

/// Runs `query` (`None`: the bid stream itself) over `events` events to its
/// end, counting what it emits; with `ui`, with a page open on the status
/// server.
fn run(
    runtime: &tokio::runtime::Runtime,
    args: &Args,
    query: Option<&str>,
    events: u64,
    (ui, parallelism): (bool, usize),
) -> Run {
    runtime.block_on(async {
        let (ctx, clock) = common::manual_context();
        ctx.execute(&format!("SET parallelism = {parallelism}"))
            .await
            .unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let page = ui.then(|| {
            let address = ctx.serve_ui("127.0.0.1:0").unwrap();
            open_page(address, Arc::clone(&open))
        });
        ctx.execute(&ddl(events, args.rate, args.seed))
            .await
            .unwrap_or_else(|e| panic!("benches/nexmark/ddl.sql: {e}"));
        let stream = match query {
            Some(text) => ctx.sql(text).await.unwrap_or_else(|e| panic!("{e}")),
            None => ctx.source("bid").unwrap(),
        };
        let rows = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&rows);
        let handle = stream
            .foreach_batch(move |_, batch| {
                counted.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                Ok(())
            })
            .unwrap();
        let reset = reset_peak_rss();
        let rss_at_start = peak_rss_mb();
        let (cpu, started) = (common::cpu_time(), Instant::now());
        ctx.start().await.unwrap();
        // One batch per second of the manual clock, each `rate` events. The
        // query finishes with the batch that takes the last events (a
        // processing-time window still open then is not emitted, as when a
        // DStream stops); the clock may run past it.
        let batches = events.div_ceil(args.rate) as i64 + 1;
        clock.set(batches * 1000);
        handle.await_termination().await.unwrap();
        open.store(false, Ordering::Relaxed);
        if let Some(page) = page {
            let loads = page.join().unwrap();
            println!("# the page and the metrics were loaded {loads} times during the run");
        }
        let run = Run {
            cpu: common::cpu_time() - cpu,
            wall: started.elapsed(),
            // Without a reset, the peak of the whole process would show.
            peak_rss_mb: if reset { peak_rss_mb() } else { f64::NAN },
            rss_at_start_mb: reset.then_some(rss_at_start),
            output_rows: rows.load(Ordering::Relaxed),
        };
        ctx.stop(StopMode::Immediate).await.ok();
        run
    })
}

/// Warms up over a tenth of the events, then measures; at `parallelism`,
/// on a runtime of as many workers.
fn measure(args: &Args, query: Option<&str>, ui: bool, parallelism: usize) -> Run {
    let runtime = common::runtime_with(parallelism);
    let how = (ui, parallelism);
    run(&runtime, args, query, (args.events / 10).max(10_000), how);
    run(&runtime, args, query, args.events, how)
}

fn report(name: &str, parallelism: usize, events: u64, run: &Run, generator_rate: f64) -> f64 {
    let per_cpu_s = events as f64 / run.cpu.as_secs_f64();
    match run.rss_at_start_mb {
        Some(start) => println!("# {name}: resident {start:.1} MiB when the run started"),
        None => println!("# {name}: the peak RSS could not be reset; peak_rss_mb is not measured"),
    }
    println!(
        "nexmark {name} parallelism={parallelism} events={events} cpu_s={:.3} events_per_cpu_s={:.0} events_per_s={:.0} \
         peak_rss_mb={:.1} output_rows={} ratio_to_generator={:.3}",
        run.cpu.as_secs_f64(),
        per_cpu_s,
        events as f64 / run.wall.as_secs_f64(),
        run.peak_rss_mb,
        run.output_rows,
        per_cpu_s / generator_rate,
    );
    per_cpu_s
}

fn main() {
    let args = Args::parse();
    println!(
        "# {} events, {} s of event time at {} events/s, {} events per 1-second batch, seed {}",
        args.events,
        args.events / args.rate.max(1),
        args.rate,
        args.rate,
        args.seed
    );
    let generator = measure(&args, None, false, 1);
    let generator_rate = args.events as f64 / generator.cpu.as_secs_f64();
    report("generator", 1, args.events, &generator, generator_rate);
    for name in &args.queries {
        let path = queries_dir().join(format!("{name}.sql"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| usage(&format!("{}: {e}", path.display())));
        let mut first_wall = None;
        for &parallelism in &args.parallelism {
            let run = measure(&args, Some(&text), false, parallelism);
            let plain = report(name, parallelism, args.events, &run, generator_rate);
            let wall = run.wall.as_secs_f64();
            match first_wall {
                None => first_wall = Some((parallelism, wall)),
                Some((first, before)) => println!(
                    "# {name}: wall-clock throughput at parallelism {parallelism} / {first}: {:.2}",
                    before / wall
                ),
            }
            if args.ui {
                let run = measure(&args, Some(&text), true, parallelism);
                let with_ui = report(
                    &format!("{name}+ui"),
                    parallelism,
                    args.events,
                    &run,
                    generator_rate,
                );
                println!(
                    "# {name}: CPU per event with the status page open / without: {:.3}",
                    plain / with_ui
                );
            }
        }
    }
}
