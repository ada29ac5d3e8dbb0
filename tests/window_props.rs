//! Property: for random batches, a random batch interval `I`, window length
//! `L` and slide `S` within the rules, and a random aggregate, the window
//! operator (pane folding over partial states) emits, batch by batch,
//! exactly what a batch DataFusion query computes from the raw rows of each
//! window: at batch times `t` with `t` a multiple of `S`, over the batches
//! with times in `(t − L, t]` after zero.

use std::time::Duration;

use brooklet::datafusion::prelude::SessionContext;
use proptest::prelude::*;

use crate::support::{csv_rows, manual_context, record, wait_for_batch};

/// Aggregates with mergeable states; floating results are rounded, as
/// merging partial states may differ from a one-pass result in the last bits.
const AGGREGATES: &[&str] = &[
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
        let values: Vec<String> = (1..=n)
            .filter(|b| {
                let time = b * case.interval_ms as i64;
                time > t - length && time <= t
            })
            .flat_map(|b| case.batches[b as usize - 1].iter())
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
        let sql = format!(
            "SELECT CAST({t} AS BIGINT) AS we, {key}{agg} AS x FROM {from}{group_by}",
            agg = case.aggregate,
            group_by = if case.global { "" } else { " GROUP BY k" },
        );
        let batches = session.sql(&sql).await.unwrap().collect().await.unwrap();
        let mut rows: Vec<String> = batches.iter().flat_map(csv_rows).collect();
        rows.sort();
        expected.push((t, rows));
    }
    assert_eq!(folded, expected, "{query}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn pane_folding_equals_brute_force_over_raw_rows(case in cases()) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(check(case));
    }
}
