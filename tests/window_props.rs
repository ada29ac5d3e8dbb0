//! Properties, each against a batch DataFusion query over the raw rows:
//!
//! - for random batches, a random batch interval `I`, window length `L` and
//!   slide `S` within the rules, and a random aggregate, the window operator
//!   (pane folding over partial states) emits, batch by batch, what a query
//!   computes from the raw rows of each window: at batch times `t` with `t`
//!   a multiple of `S`, over the batches with times in `(t − L, t]` after
//!   zero;
//! - a running aggregate emits every batch, with `EMIT COMPLETE`, the
//!   aggregate over all rows so far, and with `EMIT CHANGES` the same for
//!   the keys of that batch only.

use std::time::Duration;

use brooklet::datafusion::prelude::SessionContext;
use proptest::prelude::*;

use crate::support::{csv_rows, manual_context, record, run_batches, wait_for_batch};

/// Aggregates with mergeable states; floating results are rounded, as
/// merging partial states may differ from a one-pass result in the last bits.
pub(crate) const AGGREGATES: &[&str] = &[
    "count(*)",
    "sum(v)",
    "min(v)",
    "max(v)",
    "round(avg(v), 6)",
    "count(DISTINCT v)",
    "round(stddev(v), 6)",
    "approx_distinct(v)",
    "sum(v) FILTER (WHERE v > 3)",
];

#[derive(Debug, Clone)]
struct Case {
    interval_ms: u64,
    slide: u64,
    panes_per_window: u64,
    aggregate: &'static str,
    global: bool,
    batches: Vec<Vec<(u8, i64)>>,
}

fn cases() -> impl Strategy<Value = Case> {
    (
        prop::sample::select(vec![200u64, 500, 1000]),
        1u64..=3,
        1u64..=4,
        prop::sample::select(AGGREGATES.to_vec()),
        any::<bool>(),
        prop::collection::vec(prop::collection::vec((0u8..4, -5i64..20), 0..6), 12..24),
    )
        .prop_map(
            |(interval_ms, slide, panes_per_window, aggregate, global, batches)| Case {
                interval_ms,
                slide,
                panes_per_window,
                aggregate,
                global,
                batches,
            },
        )
}

fn csv(rows: &[(u8, i64)]) -> String {
    rows.iter()
        .map(|(k, v)| format!("{},{v}\n", ["a", "b", "c", "d"][*k as usize]))
        .collect()
}

async fn check(case: Case) {
    let interval = Duration::from_millis(case.interval_ms);
    let slide_ms = case.slide * case.interval_ms;
    let length_ms = slide_ms * case.panes_per_window;
    let (ctx, clock) = manual_context(0, interval);
    ctx.execute(
        "CREATE SOURCE events (k TEXT, v BIGINT) WITH (connector = 'memory', format = 'csv')",
    )
    .await
    .unwrap();
    let (key, group) = if case.global {
        ("", "")
    } else {
        ("k, ", ", k")
    };
    let query = format!(
        "SELECT CAST(window_end AS BIGINT) AS we, {key}{agg} AS x \
         FROM TABLE(HOP(TABLE events, DESCRIPTOR(proctime), '{slide_ms} ms', '{length_ms} ms')) \
         GROUP BY window_start, window_end{group}",
        agg = case.aggregate
    );
    let (handle, outputs) = record(ctx.sql(&query).await.unwrap());
    ctx.start().await.unwrap();
    let events = ctx.memory_source("events").unwrap();
    for (i, rows) in case.batches.iter().enumerate() {
        events.push_records(&csv(rows));
        let time = (i as i64 + 1) * case.interval_ms as i64;
        clock.set(time);
        wait_for_batch(&handle, time).await;
    }
    let folded: Vec<(i64, Vec<String>)> = outputs
        .lock()
        .unwrap()
        .iter()
        .map(|(t, rows)| {
            let mut rows = rows.clone();
            rows.sort();
            (*t, rows)
        })
        .collect();

    let session = SessionContext::new();
    let mut expected = Vec::new();
    let n = case.batches.len() as i64;
    let (slide, length) = (slide_ms as i64, length_ms as i64);
    for t in (1..=n)
        .map(|b| b * case.interval_ms as i64)
        .filter(|t| t % slide == 0)
    {
        let rows: Vec<(u8, i64)> = (1..=n)
            .filter(|b| {
                let time = b * case.interval_ms as i64;
                time > t - length && time <= t
            })
            .flat_map(|b| case.batches[b as usize - 1].iter().copied())
            .collect();
        let select = format!(
            "CAST({t} AS BIGINT) AS we, {key}{agg} AS x",
            agg = case.aggregate
        );
        let tail = if case.global { "" } else { " GROUP BY k" };
        let rows = brute_force(&session, &select, &rows, tail).await;
        expected.push((t, rows));
    }
    assert_eq!(folded, expected, "{query}");
}

/// The rows of a batch query over `rows` (csv lines `k,v`), sorted.
async fn brute_force(
    session: &SessionContext,
    select: &str,
    rows: &[(u8, i64)],
    tail: &str,
) -> Vec<String> {
    let values: Vec<String> = rows
        .iter()
        .map(|(k, v)| {
            format!(
                "('{}', CAST({v} AS BIGINT))",
                ["a", "b", "c", "d"][*k as usize]
            )
        })
        .collect();
    let from = if values.is_empty() {
        "(SELECT 'a' AS k, CAST(1 AS BIGINT) AS v WHERE false) AS t".to_string()
    } else {
        format!("(VALUES {}) AS t(k, v)", values.join(", "))
    };
    let batches = session
        .sql(&format!("SELECT {select} FROM {from}{tail}"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut rows: Vec<String> = batches.iter().flat_map(csv_rows).collect();
    rows.sort();
    rows
}

async fn check_running(aggregate: &str, complete: bool, batches: Vec<Vec<(u8, i64)>>) {
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    ctx.execute(
        "CREATE SOURCE events (k TEXT, v BIGINT) WITH (connector = 'memory', format = 'csv')",
    )
    .await
    .unwrap();
    let emit = if complete { "COMPLETE" } else { "CHANGES" };
    let query = format!("SELECT k, {aggregate} AS x FROM events GROUP BY k EMIT {emit}");
    let stream = ctx.sql(&query).await.unwrap();
    let inputs: Vec<String> = batches.iter().map(|b| csv(b)).collect();
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let (running, _) = run_batches(&ctx, &clock, stream, "events", &inputs).await;

    let session = SessionContext::new();
    let mut expected = Vec::new();
    let mut so_far: Vec<(u8, i64)> = Vec::new();
    for (i, batch) in batches.iter().enumerate() {
        so_far.extend(batch);
        let keys: Vec<String> = batch
            .iter()
            .map(|(k, _)| format!("'{}'", ["a", "b", "c", "d"][*k as usize]))
            .collect();
        let tail = if complete {
            " GROUP BY k".to_string()
        } else if keys.is_empty() {
            " WHERE false GROUP BY k".to_string()
        } else {
            format!(" WHERE k IN ({}) GROUP BY k", keys.join(", "))
        };
        let rows = brute_force(&session, &format!("k, {aggregate} AS x"), &so_far, &tail).await;
        expected.push((i as i64 * 1000 + 1000, rows));
    }
    assert_eq!(running, expected, "{query}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn running_aggregates_equal_brute_force_over_all_rows_so_far(
        aggregate in prop::sample::select(AGGREGATES.to_vec()),
        complete in any::<bool>(),
        batches in prop::collection::vec(prop::collection::vec((0u8..4, -5i64..20), 0..6), 4..12),
    ) {
        crate::support::block_on(check_running(aggregate, complete, batches));
    }

    #[test]
    fn pane_folding_equals_brute_force_over_raw_rows(case in cases()) {
        crate::support::block_on(check(case));
    }
}
