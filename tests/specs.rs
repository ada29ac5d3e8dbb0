//! The spec files under `tests/specs/` (and its subfolders), each a test
//! case of its own: `window_end_of_input` checks
//! `tests/specs/window_end_of_input.spec` batch by batch, and, the spec
//! being stateful, `[restarts] window_end_of_input` checks that a restart
//! after any of its batches gives the uninterrupted output. A spec in a
//! subfolder is named by its path (`windows/tumble_basic`). Every case runs
//! even when one fails, and one spec runs alone by a name filter (both its
//! cases; `--skip restarts` leaves out the restarts):
//!
//! ```text
//! cargo test --test specs -- window_end_of_input
//! ```
//!
//! A binary of its own with `libtest-mimic` as its harness (the built-in
//! one makes a test case of each function, not of each file). The format
//! and the runner are in `spec.rs`.

use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Trial};

mod spec;
// The helpers of the integration tests; the runner uses some of them.
#[allow(dead_code)]
mod support;

/// Fewer spec files than this, or fewer stateful ones, means they were not
/// found (or were lost): the `the_spec_files_are_there` case fails.
const SPEC_FILES: usize = 30;
const STATEFUL_SPEC_FILES: usize = 20;

/// A spec is stateful, and so checked across restarts too, when its name
/// or one of its folders starts with one of these.
const STATEFUL: [&str; 4] = ["window", "running", "event", "join"];

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/specs");
    let files = spec_files(&root);
    let found = (
        files.len(),
        files.iter().filter(|(name, _)| is_stateful(name)).count(),
    );
    let mut trials = vec![Trial::test("the_spec_files_are_there", move || {
        let (all, stateful) = found;
        assert!(
            all >= SPEC_FILES && stateful >= STATEFUL_SPEC_FILES,
            "{all} spec files ({stateful} stateful) under {}; expected at least \
             {SPEC_FILES} ({STATEFUL_SPEC_FILES} stateful)",
            root.display()
        );
        Ok(())
    })];
    for (name, path) in &files {
        trials.push(case(name, path, Check::Holds));
        if is_stateful(name) {
            trials.push(case(name, path, Check::Restarts));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

/// What a case checks of its spec file.
#[derive(Clone, Copy)]
enum Check {
    /// Each batch does what the spec says (`spec::holds`).
    Holds,
    /// A restart after any batch gives the uninterrupted output
    /// (`spec::survives_every_restart`).
    Restarts,
}

/// The test case checking `check` of the spec file at `path`.
fn case(name: &str, path: &Path, check: Check) -> Trial {
    let (name, path) = (name.to_string(), path.to_path_buf());
    let trial = Trial::test(name.clone(), move || {
        let spec = spec::Spec::read(&path, &name);
        match check {
            Check::Holds => single_threaded().block_on(spec::holds(&spec)),
            Check::Restarts => multi_threaded().block_on(spec::survives_every_restart(&spec)),
        }
        Ok(())
    });
    match check {
        Check::Holds => trial,
        Check::Restarts => trial.with_kind("restarts"),
    }
}

/// Every `*.spec` file under `root`, recursively, with its name: its path
/// under `root` without the extension, folders joined by `/`; sorted.
fn spec_files(root: &Path) -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", folder.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "spec") {
                let name = path.strip_prefix(root).unwrap().with_extension("");
                let parts: Vec<_> = name.iter().map(|p| p.to_string_lossy()).collect();
                files.push((parts.join("/"), path));
            }
        }
    }
    files.sort();
    files
}

fn is_stateful(name: &str) -> bool {
    name.split('/')
        .any(|part| STATEFUL.iter().any(|prefix| part.starts_with(prefix)))
}

/// The runtime of a `#[tokio::test]`.
fn single_threaded() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The runtime of `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]`.
fn multi_threaded() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
