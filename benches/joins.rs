//! Join cost and state over time: two streams `a` and `b`, each with the
//! shared input (10 000 keys, 20 000 rows per 1-second batch, event times
//! inside the batch's second, watermarks without delay), joined
//!
//! - `window_join_10s_by_1s`: per-key counts and sums of each stream in
//!   10-second windows sliding every second (event time), joined on the
//!   window and the key (a window join: every batch closes one window on
//!   both sides, 10 000 keys each);
//! - `interval_join_1s`: every pair of rows with the same key whose times
//!   are at most 1 second apart (`b.ts BETWEEN a.ts - 1000 AND a.ts +
//!   1000`: about 80 000 matches per batch);
//! - `interval_join_60s`: the same within 60 seconds, on the key and a
//!   value (`x.v = y.v + 1`), so that each side keeps 60 batches of rows
//!   (1.2 M) while a batch has few matches: what a batch costs against
//!   what the join keeps.
//!
//! For each it runs 120 batches and prints the mean time per batch over
//! the last 100, and the state after 20, 60 and 120 batches: it must stay
//! flat (sized by what can still match, not by history).
//!
//! `cargo bench --bench joins`

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use brooklet::datafusion::arrow::datatypes::{DataType, Field, Schema};
use brooklet::engine::Watermark;
use brooklet::prelude::*;
use brooklet::{MemorySource, QueryHandle};

const BATCHES: i64 = 120;
const WARM_UP: i64 = 20;

const CASES: &[(&str, &str)] = &[
    (
        "window_join_10s_by_1s",
        "SELECT x.window_start, x.k, x.n, y.total
         FROM (SELECT window_start, window_end, k, count(*) AS n
               FROM TABLE(HOP(TABLE a, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '10' SECOND))
               GROUP BY window_start, window_end, k) x
         JOIN (SELECT window_start, window_end, k, sum(v) AS total
               FROM TABLE(HOP(TABLE b, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '10' SECOND))
               GROUP BY window_start, window_end, k) y
           ON x.k = y.k AND x.window_start = y.window_start AND x.window_end = y.window_end",
    ),
    (
        "interval_join_1s",
        "SELECT x.k, x.ts, y.v, y.ts AS yts FROM a x JOIN b y
           ON x.k = y.k AND y.ts BETWEEN x.ts - 1000 AND x.ts + 1000",
    ),
    (
        "interval_join_60s",
        "SELECT x.k, x.ts, y.v, y.ts AS yts FROM a x JOIN b y
           ON x.k = y.k AND x.v = y.v + 1 AND y.ts BETWEEN x.ts - 60000 AND x.ts + 60000",
    ),
];

fn main() {
    let runtime = common::runtime();
    for (name, sql) in CASES {
        runtime.block_on(run(name, sql));
    }
}

async fn run(name: &str, sql: &str) {
    let (ctx, clock) = common::manual_context();
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
        Field::new("ts", DataType::Int64, false),
    ]));
    let mut sources = Vec::new();
    for side in ["a", "b"] {
        let source = MemorySource::new(side, schema.clone());
        ctx.register_source(side, Arc::new(source.clone())).unwrap();
        ctx.engine()
            .set_watermark(side, Watermark::new("ts", Duration::ZERO))
            .unwrap();
        sources.push(source);
    }
    let rows = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = Arc::clone(&rows);
    let handle: QueryHandle = ctx
        .sql(sql)
        .await
        .unwrap()
        .foreach_batch(move |_, batch| {
            counted.fetch_add(
                batch.num_rows() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            Ok(())
        })
        .unwrap();
    ctx.start().await.unwrap();
    let mut states = Vec::new();
    let mut measured = Duration::ZERO;
    for n in 1..=BATCHES {
        for source in &sources {
            source.push(common::batch(&schema, n)).unwrap();
        }
        let started = Instant::now();
        clock.set(n * 1000);
        handle
            .await_batch(BatchTime::from_millis(n * 1000))
            .await
            .unwrap();
        if n > WARM_UP {
            measured += started.elapsed();
        }
        if [20, 60, 120].contains(&n) {
            states.push(handle.last_progress().map_or(0, |p| p.state_bytes));
        }
    }
    let per_batch = measured / (BATCHES - WARM_UP) as u32;
    let mib = |b: &u64| format!("{:.1}", *b as f64 / (1 << 20) as f64);
    println!(
        "{name}: {:.1} ms per batch (mean of batches {}..{BATCHES}), state MiB after 20/60/120 batches: {}, output rows per batch {}",
        per_batch.as_secs_f64() * 1000.0,
        WARM_UP + 1,
        states.iter().map(mib).collect::<Vec<_>>().join(" / "),
        rows.load(std::sync::atomic::Ordering::Relaxed) / BATCHES as u64
    );
    ctx.stop(StopMode::Immediate).await.unwrap();
}
