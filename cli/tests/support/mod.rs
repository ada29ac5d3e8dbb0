//! Helpers shared by the process-level tests: the real binary, signals,
//! SQL files, console output parsed into batches, and memory sampling.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_brooklet");

pub fn brooklet() -> Command {
    let mut command = Command::new(BIN);
    command.env("NO_COLOR", "1");
    command
}

/// Sends SIGINT (Ctrl-C) to a child, as a terminal would.
pub fn sigint(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -INT failed");
}

pub fn sql_file(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("q.sql");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the binary with `args`, feeding `input` on stdin, until it exits.
pub fn run_with_input(args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = brooklet()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Dropping stdin after the write ends the input.
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Batch headers and rows of csv-formatted console output.
pub fn blocks(stdout: &str) -> Vec<(i64, Vec<String>)> {
    let mut blocks = Vec::new();
    let mut lines = stdout.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(time) = line.strip_prefix("Time: ") {
            let time: i64 = time.trim_end_matches(" ms").parse().unwrap();
            assert!(lines.next().unwrap().starts_with("-----"));
            let mut rows = Vec::new();
            while let Some(row) = lines.peek() {
                if row.starts_with("-----") {
                    break;
                }
                let row = lines.next().unwrap();
                if !row.is_empty() {
                    rows.push(row.to_string());
                }
            }
            blocks.push((time, rows));
        }
    }
    blocks
}

/// The peak resident memory of process `pid` while `running`, sampled
/// from `/proc/{pid}/status` every 20 ms. A reading may fail once the
/// process has exited, but if none ever succeeded there is no peak to give:
/// the sampler panics (and so the test joining it fails) rather than
/// report 0 bytes, which would pass any memory bound.
pub fn sample_peak_rss(
    pid: u32,
    running: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let mut peak = None;
        while running.load(std::sync::atomic::Ordering::SeqCst) {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            if let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(Some(kb * 1024));
            }
            thread::sleep(Duration::from_millis(20));
        }
        peak.unwrap_or_else(|| panic!("VmRSS of process {pid} could never be read from /proc"))
    })
}

/// Everything a finished child wrote: stdout and stderr.
pub fn read_outputs(child: &mut Child) -> (String, String) {
    use std::io::Read;
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout).unwrap();
    }
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        err.read_to_string(&mut stderr).unwrap();
    }
    (stdout, stderr)
}

/// Waits for `run`, started with `BROOKLET_CRASH_AT` at crash point
/// `name`, to crash there: exit code 86 and the point named on stderr
/// within a minute (a point that never fires fails the test, not hangs it).
pub fn expect_crash(name: &str, mut run: std::process::Child) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while run.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            run.kill().unwrap();
            panic!("crash point {name} never fired");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(86),
        "{name} did not fire: {stderr}"
    );
    assert!(
        stderr.contains(&format!("crash point {name} fired")),
        "{stderr}"
    );
}
