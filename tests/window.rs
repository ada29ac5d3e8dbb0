//! Processing-time window aggregates through the operator-level API:
//! per-batch expected outputs written from the DStream rules (emit at slide
//! boundaries, cover `(t − L, t]` after zero, partial windows at start), and
//! a brute-force comparison of pane folding against recomputing each window
//! from its raw rows.

use std::time::Duration;

use brooklet::datafusion::arrow::datatypes::DataType;
use brooklet::datafusion::functions_aggregate::expr_fn::{
    avg, count, count_distinct, max, min, sum,
};
use brooklet::datafusion::logical_expr::{Expr, cast};
use brooklet::datafusion::prelude::SessionContext;
use brooklet::engine::{RunningSpec, WindowSpec};
use brooklet::prelude::*;

use crate::support::{csv_rows, manual_context, record, run_batches, wait_for_batch};

/// Runs `batches` (csv records `k,v` per batch, batch k at k seconds) through
/// a window aggregate and returns what it emitted, batch time by batch time.
async fn run_window(
    spec: WindowSpec,
    group: Vec<Expr>,
    aggregates: Vec<Expr>,
    batches: &[&str],
) -> Vec<(i64, Vec<String>)> {
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    ctx.execute(
        "CREATE SOURCE events (k TEXT, v BIGINT) WITH (connector = 'memory', format = 'csv')",
    )
    .await
    .unwrap();
    let names: Vec<String> = group
        .iter()
        .chain(&aggregates)
        .map(|e| e.schema_name().to_string())
        .collect();
    let mut columns = vec![
        cast(col("window_start"), DataType::Int64).alias("start"),
        cast(col("window_end"), DataType::Int64).alias("end"),
    ];
    columns.extend(names.iter().map(|n| col(format!("\"{n}\""))));
    let windowed = ctx
        .source("events")
        .unwrap()
        .window_aggregate(group, aggregates, spec)
        .unwrap()
        .select(columns)
        .unwrap();
    run_batches(&ctx, &clock, windowed, "events", batches)
        .await
        .0
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn rows(rows: &[&str]) -> Vec<String> {
    let mut rows: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn a_tumbling_count_per_key_emits_once_per_window() {
    let out = run_window(
        WindowSpec::tumbling(secs(2)),
        vec![col("k")],
        vec![count(lit(1)).alias("n"), sum(col("v")).alias("total")],
        &["a,1\nb,2", "a,3", "", "b,5\nb,1", "c,7", ""],
    )
    .await;
    assert_eq!(
        out,
        vec![
            (2000, rows(&["0,2000,a,2,4", "0,2000,b,1,2"])),
            (4000, rows(&["2000,4000,b,2,6"])),
            (6000, rows(&["4000,6000,c,1,7"])),
        ]
    );
}

#[tokio::test]
async fn a_sliding_sum_has_partial_windows_at_start_and_empty_windows_later() {
    // L = 3 s, S = 1 s: every batch emits the last three batches (fewer at start).
    let out = run_window(
        WindowSpec::sliding(secs(3), secs(1)),
        vec![col("k")],
        vec![count(lit(1)).alias("n"), sum(col("v")).alias("total")],
        &["a,1", "a,2\nb,10", "", "b,1", "", "", ""],
    )
    .await;
    assert_eq!(
        out,
        vec![
            (1000, rows(&["-2000,1000,a,1,1"])),
            (2000, rows(&["-1000,2000,a,2,3", "-1000,2000,b,1,10"])),
            (3000, rows(&["0,3000,a,2,3", "0,3000,b,1,10"])),
            (4000, rows(&["1000,4000,a,1,2", "1000,4000,b,2,11"])),
            (5000, rows(&["2000,5000,b,1,1"])),
            (6000, rows(&["3000,6000,b,1,1"])),
            (7000, vec![]),
        ]
    );
}

#[tokio::test]
async fn count_by_window_counts_every_window_even_empty_ones() {
    let out = run_window(
        WindowSpec::sliding(secs(2), secs(1)),
        vec![],
        vec![count(lit(1)).alias("n")],
        &["a,1\nb,1", "", "c,1", "", ""],
    )
    .await;
    let expected: Vec<(i64, Vec<String>)> = [
        (1000, "-1000,1000,2"),
        (2000, "0,2000,2"),
        (3000, "1000,3000,1"),
        (4000, "2000,4000,1"),
        (5000, "3000,5000,0"),
    ]
    .into_iter()
    .map(|(t, r)| (t, vec![r.to_string()]))
    .collect();
    assert_eq!(out, expected);
}

/// A small deterministic generator (no test depends on luck).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

#[tokio::test]
async fn pane_folding_equals_recomputing_each_window_from_raw_rows() {
    let mut rng = Lcg(7);
    let session = SessionContext::new();
    for (length, slide) in [
        (1, 1),
        (2, 1),
        (3, 1),
        (4, 2),
        (6, 2),
        (6, 3),
        (6, 6),
        (5, 5),
    ] {
        let batches: Vec<String> = (0..20)
            .map(|_| {
                (0..rng.next(6))
                    .map(|_| {
                        format!(
                            "{},{}",
                            ["a", "b", "c", "d"][rng.next(4) as usize],
                            rng.next(25) as i64 - 5
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect();
        let aggregates = || {
            vec![
                count(lit(1)).alias("n"),
                sum(col("v")).alias("s"),
                min(col("v")).alias("lo"),
                max(col("v")).alias("hi"),
                avg(col("v")).alias("mean"),
                count_distinct(col("v")).alias("distinct_v"),
            ]
        };
        let batch_refs: Vec<&str> = batches.iter().map(String::as_str).collect();
        let folded = run_window(
            WindowSpec::sliding(secs(length), secs(slide)),
            vec![col("k")],
            aggregates(),
            &batch_refs,
        )
        .await;
        // Brute force: at every slide boundary, aggregate the raw rows of the window.
        let mut expected = Vec::new();
        for t in (1..=20i64).filter(|t| t % slide as i64 == 0) {
            let raw: String = ((t - length as i64 + 1).max(1)..=t)
                .map(|j| batches[j as usize - 1].clone())
                .filter(|b| !b.is_empty())
                .collect::<Vec<_>>()
                .join("\n");
            let sql = if raw.is_empty() {
                "SELECT 'x' AS k, 1 AS n WHERE false".to_string()
            } else {
                let values: Vec<String> = raw
                    .lines()
                    .map(|l| {
                        let (k, v) = l.split_once(',').unwrap();
                        format!("('{k}', CAST({v} AS BIGINT))")
                    })
                    .collect();
                format!(
                    "SELECT {start} AS start, {end} AS \"end\", k, count(1) AS n, sum(v) AS s, min(v) AS lo, max(v) AS hi, \
                     avg(v) AS mean, count(DISTINCT v) AS distinct_v FROM (VALUES {}) AS t(k, v) GROUP BY k",
                    values.join(", "),
                    start = (t - length as i64) * 1000,
                    end = t * 1000
                )
            };
            let batches = session.sql(&sql).await.unwrap().collect().await.unwrap();
            let mut rows: Vec<String> = batches.iter().flat_map(csv_rows).collect();
            rows.sort();
            expected.push((t * 1000, rows));
        }
        assert_eq!(folded, expected, "L = {length} s, S = {slide} s");
    }
}

#[tokio::test]
async fn a_raw_window_emits_every_row_of_the_window_at_each_slide() {
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    ctx.execute("CREATE SOURCE lines (line TEXT) WITH (connector = 'memory')")
        .await
        .unwrap();
    let lines = ctx.memory_source("lines").unwrap();
    // DStream window(4 s, 2 s) over 1 s batches: at 2 s, 4 s, 6 s, … the last four batches.
    let windowed = ctx
        .source("lines")
        .unwrap()
        .window(WindowSpec::sliding(secs(4), secs(2)))
        .unwrap();
    let (handle, outputs) = record(windowed);
    ctx.start().await.unwrap();
    for (i, records) in ["a", "b", "", "c", "d\ne", "", ""].iter().enumerate() {
        lines.push_records(records);
        let time = (i as i64 + 1) * 1000;
        clock.set(time);
        wait_for_batch(&handle, time).await;
    }
    let expected: Vec<(i64, Vec<String>)> = vec![
        (2000, vec!["a".into(), "b".into()]),
        (4000, vec!["a".into(), "b".into(), "c".into()]),
        (6000, vec!["c".into(), "d".into(), "e".into()]),
    ];
    assert_eq!(*outputs.lock().unwrap(), expected);
    // Only the panes a later window needs are kept: batches 5–6 (d, e) now.
    let state = handle.last_progress().unwrap().state_bytes;
    assert!(state > 0, "the panes of the next window are kept");
}

#[tokio::test]
async fn a_running_aggregate_from_rust_emits_changed_keys_and_expires_idle_ones() {
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    ctx.execute(
        "CREATE SOURCE events (k TEXT, v BIGINT) WITH (connector = 'memory', format = 'csv')",
    )
    .await
    .unwrap();
    // updateStateByKey with a 2-second TTL, emitting the keys of each batch.
    let running = ctx
        .source("events")
        .unwrap()
        .running_aggregate(
            vec![col("k")],
            vec![count(lit(1)).alias("n"), sum(col("v")).alias("total")],
            RunningSpec::changes().with_ttl(secs(2)),
        )
        .unwrap();
    let batches = ["a,1\nb,2", "a,3", "", "b,5", "a,1", "", "", "b,1"];
    let (outputs, handle) = run_batches(&ctx, &clock, running, "events", &batches).await;
    // b is idle from 1 s: dropped at 3 s, so at 4 s it starts again; a is
    // idle from 2 s: dropped at 4 s, starts again at 5 s; b again at 8 s.
    let expected: Vec<(i64, Vec<String>)> = vec![
        (1000, rows(&["a,1,1", "b,1,2"])),
        (2000, rows(&["a,2,4"])),
        (3000, vec![]),
        (4000, rows(&["b,1,5"])),
        (5000, rows(&["a,1,1"])),
        (6000, vec![]),
        (7000, vec![]),
        (8000, rows(&["b,1,1"])),
    ];
    assert_eq!(outputs, expected);
    assert!(handle.last_progress().unwrap().state_bytes > 0);
}

#[tokio::test]
async fn window_errors_name_the_values() {
    let (ctx, _clock) = manual_context(0, Duration::from_secs(1));
    ctx.execute(
        "CREATE SOURCE events (k TEXT, v BIGINT, ts TIMESTAMP) WITH (connector = 'memory', format = 'csv')",
    )
    .await
    .unwrap();
    let error = |sql: &'static str| {
        let ctx = &ctx;
        async move { ctx.sql(sql).await.unwrap_err().to_string() }
    };
    let cases = [
        (
            "SELECT count(*) FROM events GROUP BY hop(INTERVAL '1500' MILLISECOND, INTERVAL '3' SECOND)",
            "window slide 1500 ms is not a multiple of the batch interval 1 s",
        ),
        (
            "SELECT window_start, count(*) FROM TABLE(HOP(TABLE events, DESCRIPTOR(proctime), INTERVAL '4' SECOND, INTERVAL '2' SECOND)) GROUP BY window_start, window_end",
            "window slide 4 s is longer than its size 2 s",
        ),
        (
            "SELECT count(*) FROM events GROUP BY window('5 seconds', '2 seconds')",
            "window size 5 s is not a multiple of its slide 2 s",
        ),
        (
            "SELECT count(*) FROM events GROUP BY tumble(INTERVAL '0' SECOND)",
            "tumble() needs a positive interval",
        ),
        (
            "SELECT window_start, count(*) FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '2' SECOND)) GROUP BY window_start, window_end",
            "an event-time window over ts needs a watermark on source 'events'",
        ),
        (
            "SELECT * FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(pt), INTERVAL '2' SECOND))",
            "source 'events' has no column 'pt'",
        ),
        (
            "SELECT k, count(*) FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(proctime), INTERVAL '2' SECOND)) GROUP BY k",
            "must GROUP BY window_start, window_end",
        ),
        (
            "SELECT k, count(*) FROM events GROUP BY tumble(INTERVAL '2' SECOND), k EMIT CHANGES",
            "EMIT CHANGES is for an unwindowed GROUP BY or an event-time window",
        ),
        (
            "SELECT k FROM events EMIT COMPLETE",
            "EMIT COMPLETE needs a GROUP BY",
        ),
        (
            "SELECT window_start, count(*) FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(proctime), INTERVAL '2' SECOND)) \
             WHERE window_end > TIMESTAMP '2020-01-01 00:00:00' GROUP BY window_start, window_end",
            "reads window_start or window_end before the window is computed",
        ),
        (
            "SELECT x.window_start, count(*) FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(proctime), INTERVAL '2' SECOND)) x \
             JOIN TABLE(TUMBLE(TABLE events, DESCRIPTOR(proctime), INTERVAL '2' SECOND)) y ON x.k = y.k \
             GROUP BY x.window_start, x.window_end",
            "an aggregate may read one window table function",
        ),
        (
            "SELECT count(*) FROM (SELECT k, count(*) AS n FROM events GROUP BY tumble(INTERVAL '2' SECOND), k) \
             GROUP BY tumble(INTERVAL '4' SECOND)",
            "a window over another window's output is not supported",
        ),
        (
            "SELECT a.k FROM (SELECT k, count(*) AS n FROM events GROUP BY tumble(INTERVAL '2' SECOND), k) a \
             JOIN (SELECT k, max(k) AS m FROM events GROUP BY tumble(INTERVAL '2' SECOND), k) b ON a.k = b.k EMIT CHANGES",
            "EMIT CHANGES may follow one window aggregate; this query has several",
        ),
        (
            "SELECT a.k FROM (SELECT k, count(*) AS n FROM events GROUP BY tumble(INTERVAL '2' SECOND), k) a \
             JOIN (SELECT k, count(*) AS m FROM events GROUP BY tumble(INTERVAL '4' SECOND), k) b ON a.k = b.k",
            "a window join needs the same window on both sides, so that a window closes on both at \
             once; here a processing-time window of 2 s every 2 s and a processing-time window of 4 s \
             every 4 s",
        ),
    ];
    for (sql, expected) in cases {
        let message = error(sql).await;
        assert!(message.contains(expected), "{sql}\n  gave: {message}");
    }
}

/// A user aggregate: the sum of squares, with a one-column state.
#[derive(Debug, Default)]
struct SumOfSquares(i64);

impl brooklet::datafusion::logical_expr::Accumulator for SumOfSquares {
    fn update_batch(
        &mut self,
        values: &[brooklet::datafusion::arrow::array::ArrayRef],
    ) -> brooklet::datafusion::error::Result<()> {
        use brooklet::datafusion::arrow::array::{Array, AsArray};
        use brooklet::datafusion::arrow::datatypes::Int64Type;
        let v = values[0].as_primitive::<Int64Type>();
        self.0 += (0..v.len())
            .filter(|i| v.is_valid(*i))
            .map(|i| v.value(i) * v.value(i))
            .sum::<i64>();
        Ok(())
    }

    fn evaluate(
        &mut self,
    ) -> brooklet::datafusion::error::Result<brooklet::datafusion::common::ScalarValue> {
        Ok(brooklet::datafusion::common::ScalarValue::Int64(Some(
            self.0,
        )))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }

    fn state(
        &mut self,
    ) -> brooklet::datafusion::error::Result<Vec<brooklet::datafusion::common::ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(
        &mut self,
        states: &[brooklet::datafusion::arrow::array::ArrayRef],
    ) -> brooklet::datafusion::error::Result<()> {
        use brooklet::datafusion::arrow::array::AsArray;
        use brooklet::datafusion::arrow::datatypes::Int64Type;
        self.0 += states[0]
            .as_primitive::<Int64Type>()
            .iter()
            .flatten()
            .sum::<i64>();
        Ok(())
    }
}

#[tokio::test]
async fn a_user_aggregate_registered_with_the_context_folds_over_panes() {
    use std::sync::Arc;

    use brooklet::datafusion::logical_expr::{Volatility, create_udaf};
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    ctx.session().register_udaf(create_udaf(
        "sum_of_squares",
        vec![DataType::Int64],
        Arc::new(DataType::Int64),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::new(SumOfSquares::default()))),
        Arc::new(vec![DataType::Int64]),
    ));
    ctx.execute(
        "CREATE SOURCE events (k TEXT, v BIGINT) WITH (connector = 'memory', format = 'csv')",
    )
    .await
    .unwrap();
    let stream = ctx
        .sql(
            "SELECT CAST(window_end AS BIGINT) AS we, k, sum_of_squares(v) AS sq \
             FROM TABLE(HOP(TABLE events, DESCRIPTOR(proctime), INTERVAL '1' SECOND, INTERVAL '3' SECOND)) \
             GROUP BY window_start, window_end, k",
        )
        .await
        .unwrap();
    let batches = ["a,1\nb,2", "a,3", "", "a,2"];
    let (outputs, _) = run_batches(&ctx, &clock, stream, "events", &batches).await;
    let expected: Vec<(i64, Vec<String>)> = vec![
        (1000, rows(&["1000,a,1", "1000,b,4"])),
        (2000, rows(&["2000,a,10", "2000,b,4"])),
        (3000, rows(&["3000,a,10", "3000,b,4"])),
        (4000, rows(&["4000,a,13"])),
    ];
    assert_eq!(outputs, expected);
}

#[tokio::test]
async fn a_running_aggregate_may_group_by_keys_derived_from_other_keys() {
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    ctx.execute(
        "CREATE SOURCE events (k TEXT, v BIGINT) WITH (connector = 'memory', format = 'csv')",
    )
    .await
    .unwrap();
    let stream = ctx
        .sql("SELECT k, upper(k) AS u, count(*) AS n FROM events GROUP BY k, upper(k) EMIT CHANGES")
        .await
        .unwrap();
    let (outputs, _) = run_batches(&ctx, &clock, stream, "events", &["a,1\nb,2", "a,3"]).await;
    let expected: Vec<(i64, Vec<String>)> =
        vec![(1000, rows(&["a,A,1", "b,B,1"])), (2000, rows(&["a,A,2"]))];
    assert_eq!(outputs, expected);
}

#[tokio::test]
async fn window_state_is_bounded_when_keys_never_come_back() {
    // Every batch brings five keys never seen before; a 10 s window sliding
    // every second keeps at most ten batches' keys, so the state after 60
    // batches is the state after 30 (same phase of the pane queue), not twice it.
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    ctx.execute(
        "CREATE SOURCE events (k TEXT, v BIGINT) WITH (connector = 'memory', format = 'csv')",
    )
    .await
    .unwrap();
    let windowed = ctx
        .source("events")
        .unwrap()
        .window_aggregate(
            vec![col("k")],
            vec![count(lit(1)).alias("n")],
            WindowSpec::sliding(secs(10), secs(1)),
        )
        .unwrap();
    let (handle, _outputs) = record(windowed);
    ctx.start().await.unwrap();
    let events = ctx.memory_source("events").unwrap();
    let mut state_at = std::collections::BTreeMap::new();
    for batch in 1..=60i64 {
        let records: String = (0..5).map(|j| format!("k{batch}_{j},1\n")).collect();
        events.push_records(&records);
        clock.set(batch * 1000);
        wait_for_batch(&handle, batch * 1000).await;
        state_at.insert(batch, handle.last_progress().unwrap().state_bytes);
    }
    let (at_30, at_60) = (state_at[&30], state_at[&60]);
    assert!(at_30 > 0);
    assert!(
        at_60 * 2 < at_30 * 3,
        "state grew with history: {at_30} bytes after 30 batches, {at_60} after 60"
    );
}
