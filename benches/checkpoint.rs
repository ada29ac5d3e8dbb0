//! Checkpoint cost: the same windowed query (a 10-second window sliding
//! every second, count and sum per key over 10 000 keys, 20 000 rows per
//! 1-second batch) without checkpoints, saving its state every 10 batches,
//! and every batch (state file written, fsynced and renamed; the commit
//! every batch in both). One measured iteration is one batch in steady
//! state; the bytes and time of the last state write are printed too.
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
    for (name, every) in [
        ("none", None),
        ("every_10_batches", Some(10)),
        ("every_batch", Some(1)),
    ] {
        let checkpoint = every.map(|n| (dir.path().join(name), n));
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
}

// The macro defines an undocumented function.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::checkpoints);
}
criterion_main!(group::benches);
