//! Checkpoint cost: the same windowed query (a 10-second window sliding
//! every second, count and sum per key over 10 000 keys, 20 000 rows per
//! 1-second batch: 10 000 keys × 10 panes) without checkpoints, saving its
//! state every 10 batches, and every batch (state file written, fsynced and
//! renamed; the commit every batch in both). A state save writes only what
//! changed since the one before (the new pane, new keys; see
//! `engine/src/checkpoint/chain.rs`), on the query's checkpoint writer while
//! the next batch runs (`engine/src/checkpoint/writer.rs`).
//!
//! Two figures per configuration:
//!
//! - **back to back** (criterion): one iteration is one batch in steady
//!   state, the next fed as soon as one is done. With checkpoints, a batch
//!   waits for the checkpoint before its own: this is the throughput when
//!   the disk is the bottleneck (a backfill);
//! - **paced**: 100 batches, each 20 ms after the one before (more than a
//!   checkpoint takes here; a real interval is 1 s): the median of the
//!   batch's own time (its processing time, from its start to its
//!   checkpoint handed over) and the process's CPU per batch, the writer's
//!   included. This is what decides whether a query keeps up with its
//!   interval.
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
    let mut paced = Vec::new();
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
                "{name}: state {:.1} MiB, last checkpoint {} bytes in {:.2} ms",
                progress.state_bytes as f64 / (1 << 20) as f64,
                progress.checkpoint_bytes,
                progress.checkpoint_time.as_secs_f64() * 1e3
            );
        }
        paced.push((name, pace(&mut fixture, &runtime)));
    }
    group.finish();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    if let Some((_, (none_batch, none_cpu))) = paced.first().copied() {
        for (name, (batch, cpu)) in paced {
            println!(
                "paced {name}: batch {:.3} ms ({:.2}x none), CPU {:.3} ms per batch ({:.2}x none)",
                ms(batch),
                batch.as_secs_f64() / none_batch.as_secs_f64(),
                ms(cpu),
                cpu.as_secs_f64() / none_cpu.as_secs_f64(),
            );
        }
    }
    restore(&runtime, dir.path());
}

/// Runs 100 batches 20 ms apart: the median batch processing time, and the
/// process's CPU time per batch.
fn pace(fixture: &mut Fixture, runtime: &tokio::runtime::Runtime) -> (Duration, Duration) {
    const BATCHES: u32 = 100;
    let mut times = Vec::with_capacity(BATCHES as usize);
    let mut checkpoints = Vec::with_capacity(BATCHES as usize);
    let cpu = common::cpu_time();
    for _ in 0..BATCHES {
        fixture.step(runtime);
        let progress = fixture.handle.last_progress().expect("a batch ran");
        times.push(progress.processing_time);
        checkpoints.push(progress.checkpoint_time);
        // Real time, not the manual clock's: the disk's fsyncs take it.
        std::thread::sleep(Duration::from_millis(20));
    }
    let cpu = (common::cpu_time() - cpu) / BATCHES;
    times.sort();
    checkpoints.sort();
    let at = |d: &[Duration], q: usize| d[(d.len() - 1) * q / 100].as_secs_f64() * 1e3;
    println!(
        "  batch p10/p50/p90 {:.3}/{:.3}/{:.3} ms; checkpoint written in p50/p90/max {:.2}/{:.2}/{:.2} ms",
        at(&times, 10),
        at(&times, 50),
        at(&times, 90),
        at(&checkpoints, 50),
        at(&checkpoints, 90),
        at(&checkpoints, 100)
    );
    (times[times.len() / 2], cpu)
}

/// Times starting a query again from a checkpoint of about 90 MiB (the
/// state of its 301st batch). The query is restored when its first batch
/// comes (the 302nd, run again): the time from the start to that batch's
/// end, less the batch's own processing time, is the restore's (read,
/// check, decode, load).
fn restore(runtime: &tokio::runtime::Runtime, dir: &std::path::Path) {
    let spec = WindowSpec::sliding(Duration::from_secs(300), Duration::from_secs(1));
    let window = move |s: DStream, k, a| s.window_aggregate(k, a, spec).unwrap();
    // State saved once, after the 301st batch; the 302nd batch's figures
    // tell what that save wrote (it is written while the 302nd runs).
    let checkpoint = Some((dir.join("restore"), 301));
    let mut fixture = Fixture::with_checkpoint(runtime, window, checkpoint.clone());
    for _ in 0..302 {
        fixture.step(runtime);
    }
    let progress = fixture.handle.last_progress().unwrap();
    runtime.block_on(fixture.handle.stop()).unwrap();
    let started = std::time::Instant::now();
    let mut restored = Fixture::with_checkpoint(runtime, window, checkpoint);
    restored.time = 301_000;
    restored.step(runtime);
    let took = started.elapsed();
    let batch = restored.handle.last_progress().unwrap().processing_time;
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    println!(
        "restore: state {:.1} MiB in memory, saved as {:.1} MiB in {} ms; started again and restored in {} ms ({} ms to the end of its first batch, which took {} ms)",
        mib(progress.state_bytes),
        mib(progress.checkpoint_bytes),
        progress.checkpoint_time.as_millis(),
        (took - batch).as_millis(),
        took.as_millis(),
        batch.as_millis()
    );
    drop(restored);
}

// The macro defines an undocumented function.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::checkpoints);
}
criterion_main!(group::benches);
