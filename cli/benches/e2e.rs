//! End to end: the `brooklet` binary against DuckDB on the same questions
//! over the same file, each engine's whole process measured (issue 20).
//!
//! ```text
//! cargo bench -p brooklet-cli --bench e2e -- [--rows 5000000] [--format csv|json|both] [--parallelism 1,2] [--repeat 3]
//! ```
//!
//! It writes a bid file (`auction,bidder,price,ts`; 1 000 auctions, one
//! bid per millisecond of event time, up to 1.5 s out of order) under the
//! target directory, then asks three questions of it:
//!
//! - `pass`: every bid, printed (Brooklet: `--format csv`, every row);
//! - `hop`: bids per auction in 10-second windows sliding every 2 seconds;
//! - `tumble`: the top price of each 10-second window.
//!
//! Brooklet reads the file on stdin (`brooklet run q.sql < bids.csv`, a
//! watermark of 4 s) once on the clock (1-second batches) and once with
//! `--available-now`; DuckDB (from PyPI, in `~/.cache/brooklet/duckdb-venv`,
//! installed by this bench if missing; never by the tests) answers the same
//! question in batch with `COPY (…) TO '/dev/null'`. Output goes to
//! `/dev/null` for both. One line per question and format:
//!
//! ```text
//! e2e csv hop rows=… brooklet_cpu_s=… brooklet_wall_s=… available_now_cpu_s=… available_now_wall_s=… available_now_wall_over_cpu=… duckdb_cpu_s=… cpu_ratio_to_duckdb=…
//! ```
//!
//! With `--parallelism 1,2`, each question also runs available-now at each
//! parallelism other than 1 (`--parallelism N`), one more line each:
//!
//! ```text
//! e2e csv hop parallelism=2 cpu_s=… wall_s=… wall_speedup=…
//! ```
//!
//! `wall_speedup` is the available-now wall time at parallelism 1 over that
//! at N, in the same run. The available-now runs at every parallelism take
//! turns, `--repeat` rounds of them (default 3), before DuckDB runs, and
//! each figure is the median of its rounds: this machine's kernel time
//! (zeroing fresh pages) moves by a factor of several between two runs in
//! a row, and after DuckDB's run more than before it.
//!
//! CPU is user + system time of the child process (`getrusage` of the
//! children), so each engine's start-up is included, as when it is run.

// getrusage is the one call that needs it.
#![allow(unsafe_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_brooklet");
const DUCKDB_VERSION: &str = "2.0.1";

/// Children's user + system CPU so far.
fn children_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr());
        usage.assume_init()
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// The CPU and wall time of `command` run to its end (it must succeed).
fn measure(mut command: Command) -> (Duration, Duration) {
    let cpu = children_cpu();
    let started = Instant::now();
    let output = command.stderr(Stdio::piped()).output().unwrap();
    let wall = started.elapsed();
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (children_cpu() - cpu, wall)
}

/// The median CPU and the median wall time of `runs` (each on its own).
fn medians(mut runs: Vec<(Duration, Duration)>) -> (Duration, Duration) {
    let middle = runs.len() / 2;
    runs.sort_by_key(|r| r.0);
    let cpu = runs[middle].0;
    runs.sort_by_key(|r| r.1);
    (cpu, runs[middle].1)
}

/// The bid file of `rows` rows in `format`, written once.
fn bids(dir: &Path, rows: u64, format: &str) -> PathBuf {
    let path = dir.join(format!("bids-{rows}.{format}"));
    if path.exists() {
        return path;
    }
    let partial = dir.join(format!(".bids-{rows}.{format}.part"));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&partial).unwrap());
    let start_ms: i64 = 1_700_000_000_000;
    for i in 0..rows as i64 {
        let auction = (i * 7_919) % 1_000;
        let bidder = (i * 104_729) % 100_000;
        let price = 100 + (i * 31) % 10_000;
        // One bid per millisecond, up to 1.5 s out of order.
        let ms = start_ms + i + (i * 7_919) % 3_000 - 1_500;
        let ts = timestamp(ms);
        match format {
            "csv" => writeln!(out, "{auction},{bidder},{price},{ts}").unwrap(),
            _ => writeln!(
                out,
                "{{\"auction\":{auction},\"bidder\":{bidder},\"price\":{price},\"ts\":\"{ts}\"}}"
            )
            .unwrap(),
        }
    }
    out.flush().unwrap();
    drop(out);
    std::fs::rename(&partial, &path).unwrap();
    path
}

/// `2023-11-14 22:13:20.123` for epoch milliseconds.
fn timestamp(ms: i64) -> String {
    brooklet::datafusion::arrow::temporal_conversions::timestamp_ms_to_datetime(ms)
        .expect("a time in chrono's range")
        .format("%Y-%m-%d %H:%M:%S%.3f")
        .to_string()
}

/// The questions: name, Brooklet's query, DuckDB's over `{input}`.
const QUESTIONS: [(&str, &str, &str); 3] = [
    (
        "pass",
        "SELECT auction, bidder, price, ts FROM bids;",
        "SELECT auction, bidder, price, ts FROM {input}",
    ),
    (
        "hop",
        "SELECT window_start, auction, count(*) AS n FROM TABLE(HOP(TABLE bids, DESCRIPTOR(ts), \
         INTERVAL '2' SECOND, INTERVAL '10' SECOND)) GROUP BY window_start, window_end, auction;",
        "SELECT w, auction, count(*) AS n FROM (SELECT auction, \
         time_bucket(INTERVAL 2 SECOND, ts) - to_seconds(2 * k) AS w FROM {input}, range(5) r(k)) \
         GROUP BY w, auction",
    ),
    (
        "tumble",
        "SELECT window_start, max(price) AS top FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), \
         INTERVAL '10' SECOND)) GROUP BY window_start, window_end;",
        "SELECT time_bucket(INTERVAL 10 SECOND, ts) AS w, max(price) AS top FROM {input} GROUP BY w",
    ),
];

/// DuckDB's Python, installed into a virtual environment on first use.
fn duckdb_python() -> PathBuf {
    let venv = dirs_home().join(".cache/brooklet/duckdb-venv");
    let python = venv.join("bin/python");
    let installed = Command::new(&python)
        .args(["-c", "import duckdb"])
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        eprintln!(
            "# installing duckdb=={DUCKDB_VERSION} into {}",
            venv.display()
        );
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(made.success(), "python3 -m venv failed");
        let pip = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", &format!("duckdb=={DUCKDB_VERSION}")])
            .status()
            .unwrap();
        assert!(pip.success(), "pip install duckdb failed");
    }
    python
}

fn dirs_home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").expect("HOME"))
}

fn main() {
    let mut rows: u64 = 5_000_000;
    let mut formats = vec!["csv", "json"];
    let mut parallelism: Vec<usize> = vec![1];
    let mut repeat: usize = 3;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rows" => rows = args.next().and_then(|r| r.parse().ok()).expect("--rows N"),
            "--format" => {
                formats = match args.next().as_deref() {
                    Some("csv") => vec!["csv"],
                    Some("json") => vec!["json"],
                    _ => vec!["csv", "json"],
                }
            }
            "--parallelism" => {
                parallelism = args
                    .next()
                    .expect("--parallelism 1,2")
                    .split(',')
                    .map(|n| n.trim().parse().expect("--parallelism takes numbers"))
                    .collect()
            }
            "--repeat" => {
                repeat = args
                    .next()
                    .and_then(|r| r.parse().ok())
                    .filter(|&r| r > 0)
                    .expect("--repeat N (1 or more)")
            }
            "--bench" => {}
            other => {
                panic!(
                    "unknown argument {other}; usage: -- [--rows N] [--format csv|json|both] [--parallelism 1,2] [--repeat N]"
                )
            }
        }
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e");
    std::fs::create_dir_all(&dir).unwrap();
    let python = duckdb_python();
    for format in formats {
        let input = bids(&dir, rows, format);
        let megabytes = std::fs::metadata(&input).unwrap().len() as f64 / 1e6;
        println!(
            "# {format}: {rows} bids, {megabytes:.0} MB ({})",
            input.display()
        );
        for (name, query, duck) in QUESTIONS {
            let sql = dir.join(format!("{name}-{format}.sql"));
            std::fs::write(
                &sql,
                format!(
                    "CREATE SOURCE bids (auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP NOT NULL, \
                     WATERMARK FOR ts AS ts - INTERVAL '4' SECOND) WITH (connector = 'stdin', format = '{format}');\n{query}\n"
                ),
            )
            .unwrap();
            let brooklet_at = |available_now: bool, tasks: usize| {
                let mut command = Command::new(BIN);
                command.args(["--format", "csv", "--max-rows", "1000000000"]);
                if available_now {
                    command.arg("--available-now");
                }
                command.args(["--parallelism", &tasks.to_string()]);
                command
                    .arg("run")
                    .arg(&sql)
                    .stdin(std::fs::File::open(&input).unwrap())
                    .stdout(Stdio::null());
                measure(command)
            };
            let (cpu, wall) = brooklet_at(false, 1);
            let mut tasks_list = vec![1];
            tasks_list.extend(parallelism.iter().copied().filter(|&p| p != 1));
            let mut rounds: Vec<Vec<(Duration, Duration)>> = vec![Vec::new(); tasks_list.len()];
            for _ in 0..repeat {
                for (runs, &tasks) in rounds.iter_mut().zip(&tasks_list) {
                    runs.push(brooklet_at(true, tasks));
                }
            }
            let medians: Vec<(Duration, Duration)> = rounds.into_iter().map(medians).collect();
            let (now_cpu, now_wall) = medians[0];
            let reader = match format {
                "csv" => format!(
                    "read_csv('{}', header = false, columns = {{'auction': 'BIGINT', 'bidder': 'BIGINT', 'price': 'BIGINT', 'ts': 'TIMESTAMP'}})",
                    input.display()
                ),
                _ => format!(
                    "read_json('{}', format = 'newline_delimited', columns = {{'auction': 'BIGINT', 'bidder': 'BIGINT', 'price': 'BIGINT', 'ts': 'TIMESTAMP'}})",
                    input.display()
                ),
            };
            let statement = format!(
                "COPY ({}) TO '/dev/null' (FORMAT csv)",
                duck.replace("{input}", &reader)
            );
            let mut command = Command::new(&python);
            command
                .args([
                    "-c",
                    "import duckdb, sys; duckdb.connect().execute(sys.argv[1])",
                    &statement,
                ])
                .stdout(Stdio::null());
            let (duck_cpu, _) = measure(command);
            println!(
                "e2e {format} {name} rows={rows} brooklet_cpu_s={:.2} brooklet_wall_s={:.2} \
                 available_now_cpu_s={:.2} available_now_wall_s={:.2} available_now_wall_over_cpu={:.2} \
                 duckdb_cpu_s={:.2} cpu_ratio_to_duckdb={:.2}",
                cpu.as_secs_f64(),
                wall.as_secs_f64(),
                now_cpu.as_secs_f64(),
                now_wall.as_secs_f64(),
                now_wall.as_secs_f64() / now_cpu.as_secs_f64(),
                duck_cpu.as_secs_f64(),
                now_cpu.as_secs_f64() / duck_cpu.as_secs_f64(),
            );
            for (&tasks, &(cpu, wall)) in tasks_list.iter().zip(&medians).skip(1) {
                println!(
                    "e2e {format} {name} parallelism={tasks} cpu_s={:.2} wall_s={:.2} wall_speedup={:.2}",
                    cpu.as_secs_f64(),
                    wall.as_secs_f64(),
                    now_wall.as_secs_f64() / wall.as_secs_f64(),
                );
            }
        }
    }
}
