//! `brooklet`: the REPL (no arguments), `brooklet run FILE.sql`, and
//! `brooklet -c 'SQL'`. Everything goes through [`brooklet::StreamingContext`].
//!
//! Results go to stdout, notices and errors to stderr. `run` and `-c` run
//! until their bounded sources end or until SIGINT/SIGTERM, which finishes
//! the current batch and exits 0 (a second Ctrl-C exits at once). A closed
//! stdout (`brooklet run q.sql | head`) is a normal end.

/// `eprintln!` for a stderr that may have closed (`2>&1 | head` that has
/// ended): a line that cannot be written is dropped instead of panicking,
/// so the exit code stays the run's own.
macro_rules! stderr_line {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `println!` for a stdout that may have closed (`| head` that has
/// ended, `| true`): the text is dropped instead of panicking, and the run
/// ends as it would have (a closed pipe is a normal end).
macro_rules! stdout_line {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` for a stdout that may have closed (see [`stdout_line`]).
macro_rules! stdout_text {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout();
        let _ = write!(out, $($arg)*);
        let _ = out.flush();
    }};
}

mod foreground;
mod render;
mod repl;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use brooklet::{
    BatchInfo, ConsoleFormat, ConsoleOptions, Executed, StopMode, StreamingContext,
    StreamingListener,
};
use clap::{Parser, Subcommand};

// mimalloc keeps the large buffers of each batch for the next one, where
// glibc's allocator unmaps and faults them in again (docs/decisions.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Continuous SQL over discretized streams.
#[derive(Debug, Parser)]
#[command(name = "brooklet", version, about, long_about = None)]
struct Cli {
    /// Run these statements instead of opening the REPL.
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    command: Option<String>,
    /// How rows are printed under each batch header: table, csv or json.
    #[arg(long, global = true, default_value = "table")]
    format: String,
    /// Rows printed per batch before `...`.
    #[arg(long = "max-rows", global = true, default_value_t = 10)]
    max_rows: usize,
    /// The batch interval (`1 second`, `200 ms`); a `SET batch.interval` in the SQL overrides it.
    #[arg(long = "batch-interval", global = true)]
    batch_interval: Option<String>,
    /// Print each batch's figures (rows in and out, processing time, scheduling delay) on stderr.
    #[arg(long, global = true)]
    progress: bool,
    /// Checkpoint every query into this directory (or object-store prefix,
    /// such as s3://bucket/jobs/), and resume from it: a restarted run goes
    /// on after its last finished batch (`SET checkpoint.dir`).
    #[arg(long, global = true, value_name = "DIR")]
    checkpoint: Option<PathBuf>,
    /// Serve the status page, Prometheus metrics (/metrics) and JSON
    /// (/api/queries) at this address, such as 127.0.0.1:4040 (loopback;
    /// 0.0.0.0:4040 to be seen from other machines; port 0 picks one).
    #[arg(long, global = true, value_name = "ADDRESS")]
    ui: Option<String>,
    /// Run batches back to back, each at its own batch time, until the
    /// input available now is read, then end (a backfill; `SET trigger =
    /// 'available-now'`). Sources must end: stdin, files, Kafka (up to its
    /// end offsets), bounded generators.
    #[arg(long = "available-now", global = true)]
    available_now: bool,
    /// Run each keyed operator (window and running aggregates, joins) as N
    /// tasks side by side, on N cores (`SET parallelism = N`). Each batch
    /// has the same rows at every parallelism (ordered only by ORDER BY).
    #[arg(long, global = true, value_name = "N")]
    parallelism: Option<usize>,
    #[command(subcommand)]
    subcommand: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the statements of a SQL file until its sources end or Ctrl-C.
    Run {
        /// The file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Deep statements recurse once per level when planned and run; with
    // stacks this large, the engine's stack guard never has to move a poll.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(brooklet::RUNTIME_STACK_BYTES)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            stderr_line!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async_main(cli));
    // Receivers may sit in blocking reads (stdin); do not wait for them.
    runtime.shutdown_background();
    code
}

async fn async_main(cli: Cli) -> ExitCode {
    let ctx = match context(&cli) {
        Ok(ctx) => ctx,
        Err(message) => {
            stderr_line!("error: {message}");
            return ExitCode::from(2);
        }
    };
    match (&cli.subcommand, &cli.command) {
        (Some(Command::Run { file }), _) => match read_sql(file) {
            Ok(text) => run(&ctx, &text, &file.display().to_string()).await,
            Err(message) => {
                stderr_line!("error: {message}");
                ExitCode::FAILURE
            }
        },
        (None, Some(sql)) => run(&ctx, sql, "<command>").await,
        (None, None) => repl::run(ctx).await,
    }
}

/// A SQL file's text; a file that is not UTF-8 is refused with the
/// position of its first bad byte.
fn read_sql(file: &std::path::Path) -> Result<String, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        format!(
            "{} is not UTF-8 text: byte 0x{:02x} at line {line} (byte offset {at}) is not valid \
             UTF-8; save the file as UTF-8",
            file.display(),
            bytes[at]
        )
    })
}

fn context(cli: &Cli) -> Result<StreamingContext, String> {
    let format = ConsoleFormat::parse(&cli.format).map_err(|e| e.to_string())?;
    let interval = match &cli.batch_interval {
        Some(text) => brooklet::parse_duration(text).map_err(|e| e.to_string())?,
        None => Duration::from_secs(1),
    };
    let ctx = StreamingContext::builder(interval)
        .console(ConsoleOptions {
            format,
            max_rows: cli.max_rows,
            ..ConsoleOptions::default()
        })
        .parallelism(cli.parallelism.unwrap_or(1))
        .build()
        .map_err(|e| e.to_string())?;
    if let Some(dir) = &cli.checkpoint {
        ctx.checkpoint(dir.clone());
    }
    if cli.available_now {
        ctx.set_trigger(brooklet::Trigger::AvailableNow)
            .map_err(|e| e.to_string())?;
    }
    if let Some(address) = &cli.ui {
        let bound = ctx.serve_ui(address).map_err(|e| e.to_string())?;
        stderr_line!(
            "brooklet: status page at http://{bound}/ (metrics at /metrics, JSON at /api/queries)"
        );
    }
    if cli.progress {
        ctx.add_listener(Arc::new(Progress { ctx: ctx.clone() }));
    }
    Ok(ctx)
}

/// `--progress`: one line per batch on stderr, with the malformed-record
/// counts (by kind) of the sources that have any, and each Kafka source's
/// lag (and whether its brokers answer).
struct Progress {
    ctx: StreamingContext,
}

impl StreamingListener for Progress {
    fn on_batch_completed(&self, query: &str, info: &BatchInfo) {
        let malformed: String = self
            .ctx
            .sources()
            .iter()
            .filter(|s| s.metrics.malformed > 0)
            .map(|s| format!(" {}", render::malformed_fields(&s.name, &s.metrics)))
            .chain(
                self.ctx
                    .sources()
                    .iter()
                    .filter(|s| s.connector == "kafka")
                    .map(|s| {
                        let trouble = if s.metrics.status.is_some() {
                            " (brokers not answering)"
                        } else {
                            ""
                        };
                        format!(" {}.lag={}{trouble}", s.name, s.metrics.lag)
                    }),
            )
            .collect();
        let _ = writeln!(
            std::io::stderr(),
            "progress: query={query} {}{malformed}",
            render::progress_fields(info)
        );
    }
}

/// Runs statements: plans all of them, then starts, then waits for the end
/// of input or a signal.
async fn run(ctx: &StreamingContext, text: &str, origin: &str) -> ExitCode {
    let executed = match ctx.execute(text).await {
        Ok(executed) => executed,
        Err(e) => {
            stderr_line!("{}", render::error(&e, e.location(), text, origin));
            return ExitCode::FAILURE;
        }
    };
    // What a statement asked to see is printed; confirmations are not
    // (they would mix with the rows on stdout).
    for shown in &executed {
        if let Executed::Shown(output) = shown {
            stdout_line!("{output}");
        }
    }
    if !executed
        .iter()
        .any(|e| matches!(e, Executed::Select(_) | Executed::Insert(_)))
    {
        return ExitCode::SUCCESS;
    }
    if let Err(e) = ctx.start().await {
        stderr_line!("error: {e}");
        return ExitCode::FAILURE;
    }
    let signals = signal_watcher();
    let outcome = tokio::select! {
        outcome = ctx.await_termination() => outcome,
        Ok(()) = signals => ctx.stop(StopMode::Graceful).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            let _ = ctx.stop(StopMode::Immediate).await;
            stderr_line!("{}", render::error(&e, None, text, origin));
            ExitCode::FAILURE
        }
    }
}

/// Watches SIGINT and SIGTERM on a thread of its own, so that signals are
/// handled even when a batch keeps every worker of the runtime busy. The
/// first signal resolves the returned receiver (the run stops after the
/// current batch); the second exits at once with status 130.
fn signal_watcher() -> tokio::sync::oneshot::Receiver<()> {
    let (first, received) = tokio::sync::oneshot::channel();
    let watcher = std::thread::Builder::new()
        .name("brooklet-signals".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    stderr_line!("error: cannot watch signals: {e}");
                    return;
                }
            };
            runtime.block_on(async move {
                shutdown_signal().await;
                stderr_line!("stopping after the current batch (again to stop at once)");
                let _ = first.send(());
                shutdown_signal().await;
                std::process::exit(130);
            });
        });
    if let Err(e) = watcher {
        stderr_line!("error: cannot watch signals: {e}");
    }
    received
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
