//! Test-only crash points, for recovery tests of the real binary (Spark's
//! MasterFailureTest, with the crash placed exactly).
//!
//! `BROOKLET_CRASH_AT=<point>[:<n>]` makes the process exit at once, with
//! code 86 and a line on stderr, the `n`-th time (default: the first) it
//! reaches `<point>`. Nothing is cleaned up or flushed, as after `kill -9`.
//! The points:
//!
//! - `state-written`: a state file is written and fsynced under its
//!   temporary name, not yet renamed;
//! - `before-sink`: a batch ran, its output is not yet written;
//! - `sink-mid-write`: the files sink wrote half of a file's bytes to its
//!   temporary name;
//! - `before-commit`: a batch's output is written, its commit is not.
//!
//! Without the variable the points cost one atomic load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The process's exit code at a crash point.
pub const CRASH_EXIT_CODE: i32 = 86;

struct Plan {
    point: String,
    at: u64,
    seen: AtomicU64,
}

fn plan() -> Option<&'static Plan> {
    static PLAN: OnceLock<Option<Plan>> = OnceLock::new();
    PLAN.get_or_init(|| {
        let text = std::env::var("BROOKLET_CRASH_AT").ok()?;
        let (point, at) = match text.split_once(':') {
            Some((point, n)) => (point.to_string(), n.parse().unwrap_or(1)),
            None => (text, 1),
        };
        Some(Plan {
            point,
            at,
            seen: AtomicU64::new(0),
        })
    })
    .as_ref()
}

/// Exits the process if the plan says this is the place and time.
pub(crate) fn point(name: &str) {
    if let Some(plan) = plan()
        && plan.point == name
        && plan.seen.fetch_add(1, Ordering::SeqCst) + 1 == plan.at
    {
        crate::notice::to_stderr(&format!("crash point {name} fired (BROOKLET_CRASH_AT)"));
        std::process::exit(CRASH_EXIT_CODE);
    }
}

/// Whether a crash point is planned at `name` (to prepare what it needs).
pub(crate) fn planned(name: &str) -> bool {
    plan().is_some_and(|p| p.point == name)
}
