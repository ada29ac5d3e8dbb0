//! Property: for random rows on two streams whose disorder stays within
//! the watermarks' delay (so no row is late), however they fall into
//! batches, what a join of the two streams emits over the whole run equals
//! a batch DataFusion join of all their rows: an event-time window join of
//! raw rows (`TUMBLE`, inner or left; each window's rows joined), of window
//! aggregates (`HOP`; each window's counts and sums joined), and an
//! interval join (inner or left; every pair within the bounds, and each
//! unmatched left row once).

use std::time::Duration;

use brooklet::datafusion::prelude::SessionContext;
use proptest::prelude::*;

use crate::support::{csv_rows, manual_context, record, wait_for_batch};

/// Which join.
#[derive(Debug, Clone, Copy)]
enum Join {
    /// The rows of two `TUMBLE` tables in the same window.
    WindowRows { size: i64 },
    /// Per-key aggregates of two `HOP` tables in the same window.
    WindowAggregates { size: i64, slide: i64 },
    /// Rows with `b.ts - a.ts` in `[lower, upper]`.
    Interval { lower: i64, upper: i64 },
}

#[derive(Debug, Clone)]
struct Case {
    join: Join,
    left: bool,
    delay: i64,
    /// Per batch, the rows `(side b?, key, value, event time ms)`.
    batches: Vec<Vec<(bool, u8, i64, i64)>>,
}

fn joins() -> impl Strategy<Value = Join> {
    prop_oneof![
        (1i64..=4).prop_map(|s| Join::WindowRows { size: s * 1000 }),
        (1i64..=3, 1i64..=3).prop_map(|(slide, n)| Join::WindowAggregates {
            size: slide * n * 1000,
            slide: slide * 1000,
        }),
        (-2000i64..=1000, 0i64..=3000).prop_map(|(lower, width)| Join::Interval {
            lower,
            upper: lower + width,
        }),
    ]
}

fn cases() -> impl Strategy<Value = Case> {
    (
        joins(),
        any::<bool>(),
        0i64..=2500,
        // Rows: which side, key, value, how far the time moves on (ms), and
        // how far behind that time this row is (a fraction of the delay).
        prop::collection::vec(
            (any::<bool>(), 0u8..3, 0i64..10, 0i64..1200, 0.0f64..=1.0),
            0..50,
        ),
        prop::collection::vec(0usize..6, 1..25),
    )
        .prop_map(|(join, left, delay, rows, cuts)| {
            let mut now = 1_000_000i64;
            let rows: Vec<(bool, u8, i64, i64)> = rows
                .into_iter()
                .map(|(b, k, v, step, behind)| {
                    now += step;
                    (b, k, v, now - (behind * delay as f64) as i64)
                })
                .collect();
            let batches = crate::support::cut_into_batches(&rows, cuts);
            Case {
                join,
                // Window aggregates are joined inner (a count of an absent
                // side is not a row).
                left: left && !matches!(join, Join::WindowAggregates { .. }),
                delay,
                batches,
            }
        })
}

fn key(k: u8) -> &'static str {
    ["x", "y", "z"][k as usize]
}

/// The streaming query, and the batch query over tables `a` and `b` that
/// must give the same rows.
fn queries(case: &Case) -> (String, String) {
    let join = if case.left { "LEFT JOIN" } else { "JOIN" };
    match case.join {
        Join::WindowRows { size } => {
            let tumble = |s: &str| format!("TABLE(TUMBLE(TABLE {s}, DESCRIPTOR(ts), '{size} ms'))");
            (
                format!(
                    "SELECT CAST(x.window_start AS BIGINT) AS ws, x.k, x.ts, y.v, y.ts AS yts \
                     FROM {} x {join} {} y ON x.k = y.k AND x.window_start = y.window_start \
                     AND x.window_end = y.window_end",
                    tumble("a"),
                    tumble("b")
                ),
                format!(
                    "SELECT x.ts / {size} * {size} AS ws, x.k, x.ts, y.v, y.ts AS yts \
                     FROM a x {join} b y ON x.k = y.k AND x.ts / {size} = y.ts / {size}"
                ),
            )
        }
        Join::WindowAggregates { size, slide } => {
            let hop = |s: &str, agg: &str| {
                format!(
                    "(SELECT window_start, window_end, k, {agg} AS n \
                     FROM TABLE(HOP(TABLE {s}, DESCRIPTOR(ts), '{slide} ms', '{size} ms')) \
                     GROUP BY window_start, window_end, k)"
                )
            };
            let offsets: Vec<String> = (0..size / slide).map(|i| format!("({i})")).collect();
            let batch = |s: &str, agg: &str| {
                format!(
                    "(SELECT ws, k, {agg} AS n FROM \
                     (SELECT ts / {slide} * {slide} - i * {slide} AS ws, * FROM {s} \
                      CROSS JOIN (VALUES {}) AS o(i)) GROUP BY ws, k)",
                    offsets.join(", ")
                )
            };
            (
                format!(
                    "SELECT CAST(x.window_start AS BIGINT) AS ws, x.k, x.n, y.n AS m \
                     FROM {} x JOIN {} y ON x.k = y.k AND x.window_start = y.window_start \
                     AND x.window_end = y.window_end",
                    hop("a", "count(*)"),
                    hop("b", "sum(v)")
                ),
                format!(
                    "SELECT x.ws, x.k, x.n, y.n AS m FROM {} x JOIN {} y \
                     ON x.k = y.k AND x.ws = y.ws",
                    batch("a", "count(*)"),
                    batch("b", "sum(v)")
                ),
            )
        }
        Join::Interval { lower, upper } => {
            let query = format!(
                "SELECT x.k, x.ts, y.v, y.ts AS yts FROM a x {join} b y \
                 ON x.k = y.k AND y.ts BETWEEN x.ts + {lower} AND x.ts + {upper}"
            );
            (query.clone(), query)
        }
    }
}

async fn check(case: Case) {
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    for (name, columns) in [("a", "k TEXT"), ("b", "k TEXT, v BIGINT")] {
        ctx.execute(&format!(
            "CREATE SOURCE {name} ({columns}, ts BIGINT NOT NULL, \
             WATERMARK FOR ts AS ts - INTERVAL '{} milliseconds') \
             WITH (connector = 'memory', format = 'csv')",
            case.delay
        ))
        .await
        .unwrap();
    }
    let (query, batch_query) = queries(&case);
    let (handle, outputs) = record(ctx.sql(&query).await.unwrap());
    ctx.start().await.unwrap();
    let (a, b) = (
        ctx.memory_source("a").unwrap(),
        ctx.memory_source("b").unwrap(),
    );
    let mut time = 0;
    for batch in &case.batches {
        // One push per source and batch: a memory source delivers one push per batch.
        let (mut to_a, mut to_b) = (String::new(), String::new());
        for (on_b, k, v, ts) in batch {
            match on_b {
                false => to_a.push_str(&format!("{},{ts}\n", key(*k))),
                true => to_b.push_str(&format!("{},{v},{ts}\n", key(*k))),
            }
        }
        a.push_records(&to_a);
        b.push_records(&to_b);
        time += 1000;
        clock.set(time);
        wait_for_batch(&handle, time).await;
    }
    a.finish();
    b.finish();
    clock.set(time + 1000);
    handle.await_termination().await.unwrap();
    let mut emitted: Vec<String> = outputs
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(_, rows)| rows.clone())
        .collect();
    emitted.sort();

    let session = SessionContext::new();
    let rows = |side_b: bool| -> Vec<String> {
        case.batches
            .iter()
            .flatten()
            .filter(|r| r.0 == side_b)
            .map(|(_, k, v, ts)| match side_b {
                false => format!("('{}', CAST({ts} AS BIGINT))", key(*k)),
                true => format!("('{}', CAST({v} AS BIGINT), CAST({ts} AS BIGINT))", key(*k)),
            })
            .collect()
    };
    for (name, columns, side_b) in [("a", "k, ts", false), ("b", "k, v, ts", true)] {
        let values = rows(side_b);
        let view = if values.is_empty() {
            match side_b {
                false => "SELECT CAST(NULL AS TEXT) AS k, CAST(NULL AS BIGINT) AS ts WHERE false"
                    .to_string(),
                true => "SELECT CAST(NULL AS TEXT) AS k, CAST(NULL AS BIGINT) AS v, \
                         CAST(NULL AS BIGINT) AS ts WHERE false"
                    .to_string(),
            }
        } else {
            format!(
                "SELECT * FROM (VALUES {}) AS e({columns})",
                values.join(", ")
            )
        };
        session
            .sql(&format!("CREATE VIEW {name} AS {view}"))
            .await
            .unwrap();
    }
    let batches = session
        .sql(&batch_query)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut expected: Vec<String> = batches.iter().flat_map(csv_rows).collect();
    expected.sort();
    assert_eq!(emitted, expected, "{query}\nvs {batch_query}");
    let late: u64 = ctx.engine().sources().iter().map(|s| s.metrics.late).sum();
    assert_eq!(
        late, 0,
        "no row is late when disorder stays within the delay"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_join_of_two_streams_equals_a_batch_join_of_all_their_rows(case in cases()) {
        crate::support::block_on(async {
                // A query that never finishes is a failure, not a hang.
                tokio::time::timeout(Duration::from_secs(30), check(case))
                    .await
                    .expect("the query finished within 30 s")
            });
    }
}
