//! Property: a query's per-batch output does not depend on its parallelism.
//!
//! Random events on two streams, cut into random batches, go through every
//! kind of keyed stateful operator (event-time tumbling, sliding,
//! cumulating and session windows, a processing-time sliding window, running aggregates
//! emitting changes and complete tables, interval, window and running
//! joins), global aggregates whose batches are folded in slices (event-time
//! tumbling, sliding and cumulating windows, on close and with changes, a
//! processing-time window, a running aggregate) and per-batch plans (an
//! aggregate, a sorted filter) at
//! parallelism 1, 2, 3 and 4, on a runtime with four threads. Each batch's
//! rows, as a multiset, are the same at every parallelism; a sorted
//! query's rows are in the same order.

use std::time::Duration;

use proptest::prelude::*;

use crate::support::{manual_context, record, wait_for_batch};

/// One query of each keyed kind, and of each global kind, over streams `a`
/// and `b`.
const QUERIES: &[&str] = &[
    "SELECT window_start, window_end, k, count(*) AS n, sum(v) AS s \
     FROM TABLE(TUMBLE(TABLE a, DESCRIPTOR(ts), INTERVAL '2' SECOND)) \
     GROUP BY window_start, window_end, k",
    "SELECT window_start, window_end, k, max(v) AS m, count(DISTINCT v) AS d \
     FROM TABLE(HOP(TABLE a, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '3' SECOND)) \
     GROUP BY window_start, window_end, k",
    "SELECT window_start, window_end, k, count(*) AS n, max(v) AS m \
     FROM TABLE(CUMULATE(TABLE a, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '3' SECOND)) \
     GROUP BY window_start, window_end, k",
    "SELECT CAST(s['start'] AS BIGINT) AS ss, CAST(s['end'] AS BIGINT) AS se, k, n, m \
     FROM (SELECT session_window(ts, INTERVAL '700' MILLISECOND) AS s, k, count(*) AS n, min(v) AS m \
           FROM a GROUP BY session_window(ts, INTERVAL '700' MILLISECOND), k)",
    "SELECT k, sum(v) AS s, count(*) AS n FROM a GROUP BY window('3 seconds', '1 second'), k",
    "SELECT k, count(*) AS n, sum(v) AS s FROM a GROUP BY k EMIT CHANGES",
    "SELECT k, v % 3 AS r, count(*) AS n FROM b GROUP BY k, v % 3 EMIT COMPLETE",
    // Accumulators of one group each (DataFusion's adapter), in tasks that
    // often get no rows.
    "SELECT k, first_value(v) AS f, count(DISTINCT CAST(v AS TEXT)) AS d FROM a \
     GROUP BY k EMIT CHANGES",
    "SELECT k, last_value(v) AS l FROM b GROUP BY window('2 seconds', '1 second'), k",
    // -0.0 (a negative v times 0.0) and 0.0 are one key.
    "SELECT v * 0.0 AS z, count(*) AS n FROM a GROUP BY v * 0.0 EMIT CHANGES",
    "SELECT x.k, x.v, x.ts, y.v AS w FROM a x LEFT JOIN b y \
     ON x.k = y.k AND y.ts BETWEEN x.ts AND x.ts + 1000",
    "SELECT x.window_start, x.k, x.n, y.m \
     FROM (SELECT window_start, window_end, k, count(*) AS n \
           FROM TABLE(TUMBLE(TABLE a, DESCRIPTOR(ts), INTERVAL '2' SECOND)) \
           GROUP BY window_start, window_end, k) x \
     JOIN (SELECT window_start, window_end, k, sum(v) AS m \
           FROM TABLE(TUMBLE(TABLE b, DESCRIPTOR(ts), INTERVAL '2' SECOND)) \
           GROUP BY window_start, window_end, k) y \
     ON x.k = y.k AND x.window_start = y.window_start AND x.window_end = y.window_end",
    "SELECT x.k, x.v, y.v AS w FROM a x JOIN b y ON x.k = y.k AND x.v < y.v EMIT CHANGES",
    // Global aggregates: their batches folded in slices, partials merged.
    "SELECT window_start, window_end, count(*) AS n, sum(v) AS s, max(v) AS m \
     FROM TABLE(TUMBLE(TABLE a, DESCRIPTOR(ts), INTERVAL '2' SECOND)) \
     GROUP BY window_start, window_end",
    "SELECT window_start, window_end, min(v) AS m, count(DISTINCT v) AS d \
     FROM TABLE(HOP(TABLE b, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '3' SECOND)) \
     WHERE v > 0 GROUP BY window_start, window_end",
    "SELECT window_start, window_end, count(*) AS n, sum(v) AS s \
     FROM TABLE(HOP(TABLE a, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '2' SECOND)) \
     GROUP BY window_start, window_end EMIT CHANGES",
    "SELECT window_start, window_end, count(*) AS n, sum(v) AS s \
     FROM TABLE(CUMULATE(TABLE b, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '2' SECOND)) \
     GROUP BY window_start, window_end EMIT CHANGES",
    "SELECT count(*) AS n, sum(v) AS s FROM b WHERE v > 0 GROUP BY window('3 seconds', '1 second')",
    "SELECT count(*) AS n, sum(v) AS s, max(v) AS m FROM a EMIT CHANGES",
    // A list is folded as one: merging lists would copy every value again.
    "SELECT count(*) AS n, array_to_string(array_agg(v), ' ') AS vs FROM a EMIT CHANGES",
    // Per batch, on N partitions of the batch.
    "SELECT upper(k) AS k, count(*) AS n, sum(v) AS s FROM a GROUP BY upper(k)",
    "SELECT k, v, ts FROM b WHERE abs(v) > 3 ORDER BY ts, k, v",
];

/// Events of one batch: (stream a?, key, value, event time).
type Batch = Vec<(bool, u8, i64, i64)>;

fn cases() -> impl Strategy<Value = (i64, Vec<Batch>)> {
    (
        0i64..=2000,
        prop::collection::vec(
            (any::<bool>(), 0u8..12, -5i64..20, 0i64..700, 0.0f64..=1.0),
            0..80,
        ),
        prop::collection::vec(0usize..12, 1..12),
    )
        .prop_map(|(delay, events, cuts)| {
            let mut now = 1_000_000i64;
            let events: Vec<(bool, u8, i64, i64)> = events
                .into_iter()
                .map(|(left, k, v, step, behind)| {
                    now += step;
                    // Some rows come later than the delay allows: late rows
                    // are dropped the same way at every parallelism.
                    (left, k, v, now - (behind * (delay + 500) as f64) as i64)
                })
                .collect();
            (delay, crate::support::cut_into_batches(&events, cuts))
        })
}

/// Each query's batches (time, rows sorted) at `parallelism`.
async fn run(parallelism: usize, delay: i64, batches: &[Batch]) -> Vec<Vec<(i64, Vec<String>)>> {
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    ctx.execute(&format!("SET parallelism = {parallelism}"))
        .await
        .unwrap();
    for name in ["a", "b"] {
        ctx.execute(&format!(
            "CREATE SOURCE {name} (k TEXT, v BIGINT, ts BIGINT NOT NULL, \
             WATERMARK FOR ts AS ts - INTERVAL '{delay} milliseconds') \
             WITH (connector = 'memory', format = 'csv')"
        ))
        .await
        .unwrap();
    }
    let mut running = Vec::new();
    for query in QUERIES {
        running.push(record(ctx.sql(query).await.unwrap()));
    }
    ctx.start().await.unwrap();
    let sources = [
        ctx.memory_source("a").unwrap(),
        ctx.memory_source("b").unwrap(),
    ];
    let mut time = 0;
    for batch in batches {
        for (source, left) in sources.iter().zip([true, false]) {
            let records: String = batch
                .iter()
                .filter(|e| e.0 == left)
                .map(|(_, k, v, ts)| format!("key{k},{v},{ts}\n"))
                .collect();
            source.push_records(&records);
        }
        time += 1000;
        clock.set(time);
        for (handle, _) in &running {
            wait_for_batch(handle, time).await;
        }
    }
    sources.iter().for_each(|s| s.finish());
    clock.set(time + 1000);
    let mut per_query = Vec::new();
    for (handle, outputs) in running {
        handle.await_termination().await.unwrap();
        let mut outputs = outputs.lock().unwrap().clone();
        if !query_sorts(per_query.len()) {
            outputs.iter_mut().for_each(|(_, rows)| rows.sort());
        }
        per_query.push(outputs);
    }
    per_query
}

/// Whether query `i` of [`QUERIES`] orders its rows.
fn query_sorts(i: usize) -> bool {
    QUERIES[i].contains("ORDER BY")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn every_batch_is_the_same_at_every_parallelism((delay, batches) in cases()) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap();
        let one = runtime.block_on(run(1, delay, &batches));
        for parallelism in 2..=4 {
            let many = runtime.block_on(run(parallelism, delay, &batches));
            for (query, (one, many)) in QUERIES.iter().zip(one.iter().zip(&many)) {
                prop_assert_eq!(one, many, "parallelism {}: {}", parallelism, query);
            }
        }
    }
}
