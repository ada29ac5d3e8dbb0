//! Checkpoint cost: the same windowed query (a 10-second window sliding
//! every second, count and sum per key over 10 000 keys, 20 000 rows per
//! 1-second batch: 10 000 keys × 10 panes) without checkpoints, saving its
//! state every 10 batches, and every batch (state file written, fsynced and
//! renamed; the commit every batch in both). A state save writes only what
//! changed since the one before (the new pane, new keys; see
//! `engine/src/checkpoint/chain.rs`). One measured iteration is one batch in
//! steady state; the bytes and time of the last state write are printed
//! too.
//!
//! Then restore: a 300-second window sliding every second (about 90 MiB of
//! state) is stopped, which saves its state, and started again from that
//! checkpoint; the time from the start to the query running is printed, in
//! which the state is read, checked and loaded.
//!
//! `cargo bench --bench checkpoint`

mod common;

use std::time::Duration;

use brooklet::engine::WindowSpec;
use brooklet::prelude::*;
use common::Fixture;
use criterion::{Criterion, criterion_main};

fn checkpoints(c: &mut Criterion) {
    let runtime = common::runtime();
    let mut group = common::group(c, "checkpoint_per_batch");
    let spec = WindowSpec::sliding(Duration::from_secs(10), Duration::from_secs(1));
    let dir = tempfile::tempdir().unwrap();
    // The same every-batch checkpoints in memory (tmpfs, where fsync costs
    // nothing): what the engine itself spends, apart from the disk.
    let memory = tempfile::tempdir_in("/dev/shm").ok();
    for (name, every) in [
        ("none", None),
        ("every_10_batches", Some(10)),
        ("every_batch", Some(1)),
        ("every_batch_tmpfs", Some(1)),
    ] {
        let root = match (name, &memory) {
            ("every_batch_tmpfs", Some(memory)) => memory.path(),
            ("every_batch_tmpfs", None) => continue,
            _ => dir.path(),
        };
        let checkpoint = every.map(|n| (root.join(name), n));
        let mut fixture = Fixture::with_checkpoint(
            &runtime,
            move |s: DStream, k, a| s.window_aggregate(k, a, spec).unwrap(),
            checkpoint,
        );
        for _ in 0..10 {
            fixture.step(&runtime);
        }
        common::measure(&mut group, name, &mut fixture, &runtime);
        if let Some(progress) = fixture.handle.last_progress() {
            println!(
                "{name}: state {:.1} MiB, last checkpoint {} bytes in {} ms",
                progress.state_bytes as f64 / (1 << 20) as f64,
                progress.checkpoint_bytes,
                progress.checkpoint_time.as_millis()
            );
        }
    }
    group.finish();
    restore(&runtime, dir.path());
}

/// Times starting a query again from a checkpoint of about 90 MiB.
fn restore(runtime: &tokio::runtime::Runtime, dir: &std::path::Path) {
    let spec = WindowSpec::sliding(Duration::from_secs(300), Duration::from_secs(1));
    let window = move |s: DStream, k, a| s.window_aggregate(k, a, spec).unwrap();
    // State saved once, after the last batch (the 301st).
    let checkpoint = Some((dir.join("restore"), 301));
    let mut fixture = Fixture::with_checkpoint(runtime, window, checkpoint.clone());
    for _ in 0..301 {
        fixture.step(runtime);
    }
    let progress = fixture.handle.last_progress().unwrap();
    runtime.block_on(fixture.handle.stop()).unwrap();
    let started = std::time::Instant::now();
    let restored = Fixture::with_checkpoint(runtime, window, checkpoint);
    let took = started.elapsed();
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    println!(
        "restore: state {:.1} MiB in memory, saved as {:.1} MiB in {} ms, started again in {} ms",
        mib(progress.state_bytes),
        mib(progress.checkpoint_bytes),
        progress.checkpoint_time.as_millis(),
        took.as_millis()
    );
    drop(restored);
}

// The macro defines an undocumented function.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::checkpoints);
}
criterion_main!(group::benches);
