//! Property: for random event sequences whose disorder stays within the
//! watermark's delay (so no row is late), however they fall into batches,
//! the final rows of an event-time window — tumbling, sliding, cumulating or
//! session;
//! emitted on close, or with `EMIT CHANGES` its rows with `is_final` —
//! equal a batch DataFusion query over all events: `GROUP BY` the window
//! computed in SQL (integer arithmetic for fixed and cumulating windows; `lag` and a
//! running `sum` for sessions, which start where a key's gap to its
//! previous event exceeds the session gap).
//!
//! And for events far behind the watermark (some late, some reaching a
//! window whose older windows already closed): every batch, a window
//! emitted on close emits exactly the final rows the same window emitting
//! changes marks `is_final` — the two keep their panes differently (a
//! sliding window on close folds sealed panes in two stacks; with changes
//! it merges its panes per window).

use std::time::Duration;

use brooklet::datafusion::prelude::SessionContext;
use proptest::prelude::*;

use crate::support::{csv_rows, manual_context, record, wait_for_batch};

/// The window property's aggregates (all mergeable; floats rounded).
const AGGREGATES: &[&str] = crate::window_props::AGGREGATES;

/// Which windows.
#[derive(Debug, Clone, Copy)]
enum Windows {
    Tumbling { size: i64 },
    Sliding { size: i64, slide: i64 },
    Cumulating { size: i64, step: i64 },
    Session { gap: i64 },
}

#[derive(Debug, Clone)]
struct Case {
    windows: Windows,
    delay: i64,
    aggregate: &'static str,
    /// Which spelling of the window: a table function (Flink's `TUMBLE`,
    /// `HOP`, `SESSION`) or a group-by function (Arroyo's, or Spark's
    /// `window`/`session_window`).
    form: u8,
    /// `EMIT CHANGES` (updates, then each window's final row).
    changes: bool,
    /// Per batch, the events `(key, value, event time ms)`.
    batches: Vec<Vec<(u8, i64, i64)>>,
}

fn windows() -> impl Strategy<Value = Windows> {
    prop_oneof![
        (1i64..=5).prop_map(|s| Windows::Tumbling { size: s * 1000 }),
        (1i64..=3, 1i64..=3).prop_map(|(slide, n)| Windows::Sliding {
            size: slide * n * 1000,
            slide: slide * 1000,
        }),
        (1i64..=3, 1i64..=4).prop_map(|(step, n)| Windows::Cumulating {
            size: step * n * 1000,
            step: step * 1000,
        }),
        (1i64..=4).prop_map(|g| Windows::Session { gap: g * 700 }),
    ]
}

/// Cases whose events are at most the delay behind the newest one so far
/// (`beyond_delay`: up to three delays and three seconds behind).
fn cases(beyond_delay: bool) -> impl Strategy<Value = Case> {
    cases_of(beyond_delay, 0..60)
}

/// Sessions over hundreds of events: enough rows for the session states'
/// levels to merge, and for all of them to merge at once.
fn long_session_cases() -> impl Strategy<Value = Case> {
    (cases_of(false, 300..900), 1i64..=4).prop_map(|(case, g)| Case {
        windows: Windows::Session { gap: g * 700 },
        ..case
    })
}

fn cases_of(beyond_delay: bool, events: std::ops::Range<usize>) -> impl Strategy<Value = Case> {
    (
        windows(),
        0i64..=3000,
        prop::sample::select(AGGREGATES.to_vec()),
        // Events: key, value, how far the time moves on (ms), and how far
        // behind that time this event is (a fraction of the delay).
        prop::collection::vec((0u8..3, -5i64..20, 0i64..1500, 0.0f64..=1.0), events),
        prop::collection::vec(0usize..6, 1..30),
        0u8..3,
        any::<bool>(),
    )
        .prop_map(
            move |(windows, delay, aggregate, events, cuts, form, changes)| {
                let mut now = 1_000_000i64;
                let events: Vec<(u8, i64, i64)> = events
                    .into_iter()
                    .map(|(k, v, step, behind)| {
                        now += step;
                        let spread = match beyond_delay {
                            false => delay,
                            true => 3 * delay + 3000,
                        };
                        (k, v, now - (behind * spread as f64) as i64)
                    })
                    .collect();
                // Cut the events into batches of the given sizes (the rest last).
                let batches = crate::support::cut_into_batches(&events, cuts);
                Case {
                    windows,
                    delay,
                    aggregate,
                    form,
                    changes,
                    batches,
                }
            },
        )
}

fn key(k: u8) -> &'static str {
    ["a", "b", "c"][k as usize]
}

/// A query grouping by the window function call `window`.
fn grouped_by(window: &str, agg: &str) -> String {
    format!(
        "SELECT CAST(w['start'] AS BIGINT) AS ws, CAST(w['end'] AS BIGINT) AS we, k, x FROM \
         (SELECT {window} AS w, k, {agg} AS x FROM events GROUP BY {window}, k)"
    )
}

/// The query under test, and the batch query that must agree with it.
fn queries(case: &Case) -> (String, String) {
    let agg = case.aggregate;
    let table = |function: &str, sizes: &str| {
        format!(
            "SELECT CAST(window_start AS BIGINT) AS ws, CAST(window_end AS BIGINT) AS we, k, {agg} AS x \
             FROM TABLE({function}(TABLE events, DESCRIPTOR(ts), {sizes})) \
             GROUP BY window_start, window_end, k"
        )
    };
    match case.windows {
        Windows::Tumbling { size } => (
            match case.form {
                0 => table("TUMBLE", &format!("'{size} ms'")),
                1 => grouped_by(&format!("tumble(ts, '{size} ms')"), agg),
                _ => grouped_by(&format!("window(ts, '{size} ms')"), agg),
            },
            format!(
                "SELECT ts / {size} * {size} AS ws, ts / {size} * {size} + {size} AS we, k, {agg} AS x \
                 FROM t GROUP BY ts / {size} * {size}, k"
            ),
        ),
        Windows::Sliding { size, slide } => {
            let offsets: Vec<String> = (0..size / slide).map(|i| format!("({i})")).collect();
            (
                match case.form {
                    0 => table("HOP", &format!("'{slide} ms', '{size} ms'")),
                    1 => grouped_by(&format!("hop(ts, '{slide} ms', '{size} ms')"), agg),
                    _ => grouped_by(&format!("window(ts, '{size} ms', '{slide} ms')"), agg),
                },
                format!(
                    "SELECT ws, ws + {size} AS we, k, {agg} AS x FROM \
                     (SELECT ts / {slide} * {slide} - i * {slide} AS ws, k, v FROM t \
                      CROSS JOIN (VALUES {}) AS o(i)) \
                     GROUP BY ws, k",
                    offsets.join(", ")
                ),
            )
        }
        // Flink's only spelling: a table function. A row is in every window
        // of its period that ends after it.
        Windows::Cumulating { size, step } => {
            let offsets: Vec<String> = (0..size / step).map(|i| format!("({i})")).collect();
            (
                table("CUMULATE", &format!("'{step} ms', '{size} ms'")),
                format!(
                    "SELECT ws, we, k, {agg} AS x FROM \
                     (SELECT ts / {size} * {size} AS ws, ts / {step} * {step} + {step} + i * {step} AS we, \
                      k, v FROM t CROSS JOIN (VALUES {}) AS o(i)) \
                     WHERE we <= ws + {size} \
                     GROUP BY ws, we, k",
                    offsets.join(", ")
                ),
            )
        }
        Windows::Session { gap } => (
            match case.form {
                0 => format!(
                    "SELECT CAST(window_start AS BIGINT) AS ws, CAST(window_end AS BIGINT) AS we, \
                     k, {agg} AS x \
                     FROM TABLE(SESSION(TABLE events PARTITION BY k, DESCRIPTOR(ts), '{gap} ms')) \
                     GROUP BY window_start, window_end, k"
                ),
                1 => grouped_by(&format!("session(ts, '{gap} ms')"), agg),
                _ => grouped_by(&format!("session_window(ts, '{gap} ms')"), agg),
            },
            format!(
                "WITH starts AS (SELECT k, v, ts, \
                   CASE WHEN ts - lag(ts) OVER (PARTITION BY k ORDER BY ts) <= {gap} THEN 0 ELSE 1 END AS new \
                   FROM t), \
                 numbered AS (SELECT k, v, ts, sum(new) OVER (PARTITION BY k ORDER BY ts \
                   ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session FROM starts) \
                 SELECT min(ts) AS ws, max(ts) + {gap} AS we, k, {agg} AS x \
                 FROM numbered GROUP BY k, session"
            ),
        ),
    }
}

/// Runs `queries` over the case's events: the context, and each query's
/// rows per batch.
async fn run_batches(
    case: &Case,
    queries: &[String],
) -> (brooklet::StreamingContext, Vec<Vec<Vec<String>>>) {
    let interval = Duration::from_secs(1);
    let (ctx, clock) = manual_context(0, interval);
    ctx.execute(&format!(
        "CREATE SOURCE events (k TEXT, v BIGINT, ts BIGINT NOT NULL, \
         WATERMARK FOR ts AS ts - INTERVAL '{} milliseconds') \
         WITH (connector = 'memory', format = 'csv')",
        case.delay
    ))
    .await
    .unwrap();
    let mut running = Vec::new();
    for query in queries {
        running.push(record(ctx.sql(query).await.unwrap()));
    }
    ctx.start().await.unwrap();
    let events = ctx.memory_source("events").unwrap();
    let mut time = 0;
    for batch in &case.batches {
        let records: String = batch
            .iter()
            .map(|(k, v, ts)| format!("{},{v},{ts}\n", key(*k)))
            .collect();
        events.push_records(&records);
        time += 1000;
        clock.set(time);
        for (handle, _) in &running {
            wait_for_batch(handle, time).await;
        }
    }
    events.finish();
    clock.set(time + 1000);
    let mut per_query = Vec::new();
    for (handle, outputs) in running {
        handle.await_termination().await.unwrap();
        let outputs = outputs.lock().unwrap();
        per_query.push(outputs.iter().map(|(_, rows)| rows.clone()).collect());
    }
    (ctx, per_query)
}

/// Every batch, the windows closing on close equal the final rows of the
/// same windows emitting changes.
async fn check_on_close_equals_final_changes(case: Case) {
    let (query, _) = queries(&case);
    let changes = format!("{query} EMIT CHANGES");
    let (_, outputs) = run_batches(&case, &[query.clone(), changes]).await;
    let on_close = &outputs[0];
    let finals: Vec<Vec<String>> = outputs[1]
        .iter()
        .map(|rows| {
            rows.iter()
                .filter_map(|row| row.strip_suffix(",true").map(str::to_string))
                .collect()
        })
        .collect();
    assert_eq!(on_close.len(), finals.len(), "{query}");
    for (batch, (closed, finals)) in on_close.iter().zip(&finals).enumerate() {
        assert_eq!(closed, finals, "batch {batch} of {query}");
    }
}

async fn check(case: Case) {
    let (mut query, batch_query) = queries(&case);
    if case.changes {
        query.push_str(" EMIT CHANGES");
    }
    let (ctx, outputs) = run_batches(&case, std::slice::from_ref(&query)).await;
    let mut emitted: Vec<String> = outputs[0]
        .iter()
        .flatten()
        .filter_map(|row| match case.changes {
            // Keep the final rows, without the flag.
            true => row.strip_suffix(",true").map(str::to_string),
            false => Some(row.clone()),
        })
        .collect();
    emitted.sort();

    let all: Vec<String> = case
        .batches
        .iter()
        .flatten()
        .map(|(k, v, ts)| format!("('{}', CAST({v} AS BIGINT), CAST({ts} AS BIGINT))", key(*k)))
        .collect();
    let session = SessionContext::new();
    let mut expected = Vec::new();
    if !all.is_empty() {
        session
            .sql(&format!(
                "CREATE VIEW t AS SELECT * FROM (VALUES {}) AS e(k, v, ts)",
                all.join(", ")
            ))
            .await
            .unwrap();
        let batches = session
            .sql(&batch_query)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        expected = batches.iter().flat_map(csv_rows).collect();
        expected.sort();
    }
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
    fn final_window_rows_equal_a_batch_group_by_over_all_events(case in cases(false)) {
        crate::support::block_on(check(case));
    }

    #[test]
    fn sessions_over_hundreds_of_events_equal_a_batch_query(case in long_session_cases()) {
        crate::support::block_on(check(case));
    }

    #[test]
    fn windows_on_close_emit_the_final_rows_of_emit_changes_even_past_the_delay(
        case in cases(true)
    ) {
        crate::support::block_on(check_on_close_equals_final_changes(case));
    }
}
