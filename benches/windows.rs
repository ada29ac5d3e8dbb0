//! Window cost: a 1-second tumbling count per key against sliding windows of
//! 10 s, 60 s and 300 s that slide every second, on the same input (10 000
//! keys, 20 000 rows per 1-second batch). Each measured iteration is one
//! batch in steady state (the window already full). Pane folding keeps the
//! per-batch cost of a long sliding window close to the tumbling one; the
//! state is reported too (keys × live panes, never raw rows).
//!
//! Event-time windows run on the same rows, each with an event time inside
//! its batch's second and a watermark without delay: a tumbling 1-second
//! window (closes every batch), windows of 10, 60 and 300 seconds sliding by
//! 1 second (a row is folded into its pane; a closing window seals its
//! panes into two stacks), and sessions with a 2-second gap (every key
//! comes back every batch: sessions stay open), and sessions with a
//! 60-second gap where each batch's rows have a tenth of the keys (the next
//! tenth each batch: 10 000 sessions open, 1 000 touched per batch).
//!
//! `cargo bench --bench windows`

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use brooklet::datafusion::logical_expr::Expr;
use brooklet::engine::{EventWindow, WindowSpec};
use brooklet::prelude::*;
use common::Fixture;
use criterion::{Criterion, criterion_main};

fn windows(c: &mut Criterion) {
    let runtime = common::runtime();
    let mut group = common::group(c, "window_per_batch");
    let secs = Duration::from_secs;
    let processing =
        |spec: WindowSpec| move |s: DStream, k, a| s.window_aggregate(k, a, spec).unwrap();
    let event = |window: EventWindow| {
        move |s: DStream, k, a| s.event_window_aggregate(k, a, window).unwrap()
    };
    type Case = (
        &'static str,
        u64,
        Box<dyn FnOnce(DStream, Vec<Expr>, Vec<Expr>) -> DStream>,
    );
    // Keys of each batch: all of them, or a tenth (the next tenth each batch).
    let active = |name: &str| match name {
        "event_session_gap_60s_tenth_of_keys_active" => common::KEYS / 10,
        _ => common::KEYS,
    };
    let cases: Vec<Case> = vec![
        (
            "tumbling_1s",
            1,
            Box::new(processing(WindowSpec::tumbling(secs(1)))),
        ),
        (
            "sliding_10s_by_1s",
            10,
            Box::new(processing(WindowSpec::sliding(secs(10), secs(1)))),
        ),
        (
            "sliding_60s_by_1s",
            60,
            Box::new(processing(WindowSpec::sliding(secs(60), secs(1)))),
        ),
        (
            "sliding_300s_by_1s",
            300,
            Box::new(processing(WindowSpec::sliding(secs(300), secs(1)))),
        ),
        (
            "event_tumbling_1s",
            2,
            Box::new(event(EventWindow::fixed(
                "ts",
                WindowSpec::tumbling(secs(1)),
            ))),
        ),
        (
            "event_sliding_10s_by_1s",
            11,
            Box::new(event(EventWindow::fixed(
                "ts",
                WindowSpec::sliding(secs(10), secs(1)),
            ))),
        ),
        (
            "event_sliding_60s_by_1s",
            61,
            Box::new(event(EventWindow::fixed(
                "ts",
                WindowSpec::sliding(secs(60), secs(1)),
            ))),
        ),
        (
            "event_sliding_300s_by_1s",
            301,
            Box::new(event(EventWindow::fixed(
                "ts",
                WindowSpec::sliding(secs(300), secs(1)),
            ))),
        ),
        (
            "event_session_gap_2s",
            3,
            Box::new(event(EventWindow::session("ts", secs(2)))),
        ),
        (
            "event_session_gap_60s_tenth_of_keys_active",
            21,
            Box::new(event(EventWindow::session("ts", secs(60)))),
        ),
    ];
    for (name, warm_up, window) in cases {
        let mut fixture = Fixture::new(&runtime, window);
        fixture.active_keys = active(name);
        // Fill the window first: steady state is what costs.
        for _ in 0..warm_up {
            fixture.step(&runtime);
        }
        common::measure(&mut group, name, &mut fixture, &runtime);
        let state = fixture.handle.last_progress().map_or(0, |p| p.state_bytes);
        println!(
            "{name}: state {:.1} MiB after {} batches ({} windows emitted)",
            state as f64 / (1 << 20) as f64,
            fixture.time / 1000,
            fixture.batches.load(Ordering::Relaxed)
        );
    }
    group.finish();
}

// The macro defines an undocumented function.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::windows);
}
criterion_main!(group::benches);
