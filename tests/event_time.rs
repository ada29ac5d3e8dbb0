//! Event-time windows through the Rust API: a watermark declared with
//! `Engine::set_watermark`, `DStream::event_window_aggregate`, late rows
//! counted on the source and in `BatchInfo` and warned about once, and the
//! planning errors a user meets.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use brooklet::datafusion::functions_aggregate::expr_fn::count;
use brooklet::prelude::*;

use crate::support::{manual_context, record, wait_for_batch};

#[tokio::test]
async fn late_rows_are_dropped_counted_and_warned_about_once() {
    let notices: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&notices);
    let clock = ManualClock::at(0);
    let ctx = StreamingContext::builder(Duration::from_secs(1))
        .clock(clock.clone())
        .notices(brooklet::Notices::new(move |m| {
            seen.lock().unwrap().push(m.to_string())
        }))
        .build()
        .unwrap();
    ctx.execute(
        "CREATE SOURCE events (k TEXT, ts BIGINT NOT NULL) WITH (connector = 'memory', format = 'csv')",
    )
    .await
    .unwrap();
    ctx.engine()
        .set_watermark("events", Watermark::new("ts", Duration::from_secs(1)))
        .unwrap();
    let window = EventWindow::fixed("ts", WindowSpec::tumbling(Duration::from_secs(5)));
    let counts = ctx
        .source("events")
        .unwrap()
        .event_window_aggregate(vec![col("k")], vec![count(lit(1)).alias("n")], window)
        .unwrap();
    assert_eq!(
        counts
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>(),
        ["window_start", "window_end", "k", "n"]
    );
    let (handle, outputs) = record(counts);
    ctx.start().await.unwrap();
    let events = ctx.memory_source("events").unwrap();
    let batches = [
        "a,1000\na,2000\nb,7000\n", // watermark 6000 closes [0, 5000)
        "a,3000\na,4000\nb,8000\n", // two late rows, 3000 and 2000 ms behind
        "b,3000\n",                 // one more
    ];
    let mut late = Vec::new();
    for (i, records) in batches.iter().enumerate() {
        events.push_records(records);
        let time = 1000 * (i as i64 + 1);
        clock.set(time);
        wait_for_batch(&handle, time).await;
        let progress = handle.last_progress().unwrap();
        late.push((progress.late_rows, progress.watermark));
    }
    assert_eq!(
        late,
        [(0, Some(6000)), (2, Some(7000)), (1, Some(7000))],
        "late rows and watermark per batch"
    );
    let source = &ctx.engine().sources()[0];
    assert_eq!(source.metrics.late, 3);
    let outputs = outputs.lock().unwrap().clone();
    assert_eq!(
        outputs[0],
        (
            1000,
            vec!["1970-01-01T00:00:00,1970-01-01T00:00:05,a,2".to_string()]
        )
    );
    assert!(outputs[1..].iter().all(|(_, rows)| rows.is_empty()));
    let warnings: Vec<String> = notices
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.contains("late"))
        .cloned()
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("dropped 2 late rows from source 'events' in batch 2000 ms")
            && warnings[0].contains("up to 3 s behind the watermark 6000 ms")
            && warnings[0]
                .contains("raise the watermark delay of source 'events' (on ts, now 1 s)"),
        "{}",
        warnings[0]
    );
}

#[tokio::test]
async fn event_time_mistakes_get_errors_that_say_what_to_do() {
    let ctx = StreamingContext::new(Duration::from_secs(1));
    ctx.execute(
        "CREATE SOURCE plain (k TEXT, ts TIMESTAMP) WITH (connector = 'memory', format = 'csv');
         CREATE SOURCE timed (k TEXT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
           WITH (connector = 'memory', format = 'csv')",
    )
    .await
    .unwrap();
    let error = |sql: &'static str| {
        let ctx = &ctx;
        async move { ctx.sql(sql).await.unwrap_err().to_string() }
    };
    let e =
        error("SELECT k, count(*) FROM plain GROUP BY tumble(ts, INTERVAL '5' SECOND), k").await;
    assert!(
        e.contains("needs a watermark on source 'plain'")
            && e.contains("declare a watermark on ts"),
        "{e}"
    );
    let e = error(
        "SELECT k, count(*) FROM timed GROUP BY tumble(ts, INTERVAL '5' SECOND), k EMIT COMPLETE",
    )
    .await;
    assert!(
        e.contains("EMIT COMPLETE is for an unwindowed GROUP BY"),
        "{e}"
    );
    let e = error("SELECT k, count(*) FROM timed GROUP BY session(INTERVAL '5' SECOND), k").await;
    assert!(e.contains("session() is an event-time window"), "{e}");
    // Refused when planned, not when the query starts (found from outside).
    let e = error(
        "SELECT k, array_agg(k ORDER BY k DESC) FROM timed GROUP BY tumble(ts, INTERVAL '5' SECOND), k",
    )
    .await;
    assert!(e.contains("ordered aggregates"), "{e}");
    let e =
        error("SELECT k, count(*) FROM timed GROUP BY tumble(ts, INTERVAL '5' SECOND), ROLLUP(k)")
            .await;
    assert!(e.contains("GROUPING SETS, CUBE and ROLLUP"), "{e}");
    let e =
        error("SELECT k, count(*) FROM timed GROUP BY ROLLUP(tumble(ts, INTERVAL '5' SECOND), k)")
            .await;
    assert!(e.contains("GROUPING SETS, CUBE and ROLLUP"), "{e}");
    for size in ["0", "-5"] {
        let sql = format!(
            "SELECT k, count(*) FROM timed GROUP BY tumble(ts, INTERVAL '{size}' SECOND), k"
        );
        let e = ctx.sql(&sql).await.unwrap_err().to_string();
        assert!(e.contains("needs a positive interval"), "{sql}: {e}");
    }
    let e = error("SELECT * FROM TABLE(HOP(TABLE timed, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '2' SECOND))").await;
    assert!(
        e.contains("event-time HOP table is read by an aggregate"),
        "{e}"
    );
    let e = error(
        "SELECT window_start, count(*) FROM TABLE(SESSION(TABLE timed PARTITION BY k, \
         DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end",
    )
    .await;
    assert!(
        e.contains("exactly its PARTITION BY columns")
            && e.contains("PARTITION BY k, GROUP BY also none"),
        "{e}"
    );
    let e = error(
        "SELECT * FROM TABLE(SESSION(TABLE timed PARTITION BY k, DESCRIPTOR(ts), INTERVAL '1' SECOND))",
    )
    .await;
    assert!(e.contains("a SESSION table is read by an aggregate"), "{e}");
    let e = error(
        "SELECT window_start, count(*) FROM TABLE(SESSION(TABLE timed, DESCRIPTOR(proctime), \
         INTERVAL '1' SECOND)) GROUP BY window_start, window_end",
    )
    .await;
    assert!(e.contains("SESSION is an event-time window"), "{e}");
    let e = error(
        "SELECT * FROM TABLE(CUMULATE(TABLE timed, DESCRIPTOR(ts), INTERVAL '1' SECOND, \
         INTERVAL '3' SECOND))",
    )
    .await;
    assert!(
        e.contains("a CUMULATE table is read by an aggregate"),
        "{e}"
    );
    let e = error(
        "SELECT window_start, count(*) FROM TABLE(CUMULATE(TABLE timed, DESCRIPTOR(proctime), \
         INTERVAL '1' SECOND, INTERVAL '3' SECOND)) GROUP BY window_start, window_end",
    )
    .await;
    assert!(e.contains("CUMULATE runs on event time"), "{e}");
    let e = error(
        "SELECT window_start, count(*) FROM TABLE(CUMULATE(TABLE timed, DESCRIPTOR(ts), \
         INTERVAL '2' SECOND, INTERVAL '3' SECOND)) GROUP BY window_start, window_end",
    )
    .await;
    assert!(
        e.contains("a size that is a multiple of it, got step 2 s and size 3 s"),
        "{e}"
    );
    let e = error("SELECT * FROM TABLE(TUMBLE(TABLE timed, DESCRIPTOR(tss), INTERVAL '1' SECOND))")
        .await;
    assert!(e.contains("source 'timed' has no column 'tss'"), "{e}");
    let e = error(
        "SELECT k, count(*) FROM (SELECT k, ts + INTERVAL '1' HOUR AS ts FROM timed) \
         GROUP BY tumble(ts, INTERVAL '5' SECOND), k",
    )
    .await;
    assert!(
        e.contains("the window's time column ts is computed in the query"),
        "{e}"
    );
    ctx.execute(
        "CREATE SOURCE two (k TEXT, ts TIMESTAMP, created TIMESTAMP, WATERMARK FOR ts) \
         WITH (connector = 'memory', format = 'csv')",
    )
    .await
    .unwrap();
    let e = error(
        "SELECT k, count(*) FROM (SELECT k, created AS ts FROM two) \
         GROUP BY tumble(ts, INTERVAL '5' SECOND), k",
    )
    .await;
    assert!(
        e.contains("is column created of source 'two', whose watermark is on ts"),
        "{e}"
    );
    let e = error(
        "SELECT window_end, k, count(*) > 3 AS is_final \
         FROM TABLE(TUMBLE(TABLE timed, DESCRIPTOR(ts), INTERVAL '5' SECOND)) \
         GROUP BY window_start, window_end, k EMIT CHANGES",
    )
    .await;
    assert!(
        e.contains("is_final is the column EMIT CHANGES adds"),
        "{e}"
    );
    // Passing the column through (renamed by a subquery alias, filtered,
    // unioned) is fine.
    ctx.sql(
        "SELECT k, count(*) FROM (SELECT k, ts FROM timed WHERE k <> 'x' \
         UNION ALL SELECT k, ts FROM two) AS u GROUP BY tumble(u.ts, INTERVAL '5' SECOND), k",
    )
    .await
    .unwrap();
    // No delay, spelled out, is a watermark like no AS at all.
    ctx.execute(
        "CREATE SOURCE exact (ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '0' SECOND) \
         WITH (connector = 'memory', format = 'csv')",
    )
    .await
    .unwrap();
    assert_eq!(
        ctx.engine().watermark("exact"),
        Some(Watermark::new("ts", Duration::ZERO))
    );
    let e = ctx
        .execute("CREATE SOURCE bad (k TEXT, WATERMARK FOR k) WITH (connector = 'memory')")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("WATERMARK FOR k: column k is") && e.contains("which holds no event time"),
        "{e}"
    );
    let e = ctx
        .execute("CREATE SOURCE bad (ts TIMESTAMP, WATERMARK FOR ts AS ts + INTERVAL '1' SECOND) WITH (connector = 'memory')")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("write ts - INTERVAL '5' SECOND"), "{e}");
}

/// Runs `query` over 40 batches of 500 keys never seen before, each batch's
/// rows within its own second: the state after each batch, and how many
/// rows were emitted.
async fn state_under_new_keys_every_batch(query: &str) -> (Vec<u64>, usize) {
    let (ctx, clock) = events_in_milliseconds().await;
    let (handle, outputs) = record(ctx.sql(query).await.unwrap());
    ctx.start().await.unwrap();
    let events = ctx.memory_source("events").unwrap();
    let mut state = Vec::new();
    for b in 1..=40i64 {
        let records: String = (0..500)
            .map(|i| format!("k{b}_{i},{}\n", (b - 1) * 1000 + i))
            .collect();
        events.push_records(&records);
        clock.set(b * 1000);
        wait_for_batch(&handle, b * 1000).await;
        state.push(handle.last_progress().unwrap().state_bytes);
    }
    let emitted = outputs.lock().unwrap().iter().map(|(_, r)| r.len()).sum();
    (state, emitted)
}

#[tokio::test]
async fn event_window_state_is_sized_by_open_windows_not_by_history() {
    let fixed = |table: &str| {
        format!(
            "SELECT window_end, k, count(*) AS n FROM TABLE({table}) \
             GROUP BY window_start, window_end, k"
        )
    };
    let windows = [
        (
            "tumbling",
            fixed("TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND)"),
            39 * 500,
        ),
        (
            "sliding",
            fixed("HOP(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '3' SECOND)"),
            // Each key is in 3 windows; those of the last two seconds stay open.
            37 * 500 * 3 + 500 * 2 + 500,
        ),
        (
            "sessions",
            "SELECT k, count(*) AS n FROM events GROUP BY session(ts, INTERVAL '1' SECOND), k"
                .to_string(),
            // A key's session ends 1 s after its row; the last second's stay open.
            39 * 500,
        ),
    ];
    for (name, query, expected) in windows {
        let (state, emitted) = state_under_new_keys_every_batch(&query).await;
        // Closed windows and sessions are freed, their keys too (the key
        // index is compacted when it has doubled: state cycles, bounded).
        let (first, second) = state.split_at(20);
        let peak = |s: &[u64]| s.iter().copied().max().unwrap();
        assert!(
            peak(second) <= peak(first) * 5 / 4,
            "{name}: state grew with history: {state:?}"
        );
        assert_eq!(
            emitted, expected,
            "{name}: every closed window emitted once"
        );
    }
}

#[tokio::test]
async fn event_times_out_of_range_are_late_not_a_crash() {
    let (ctx, clock) = events_in_milliseconds().await;
    let (handle, outputs, events) = run_on_events(
        &ctx,
        "SELECT CAST(window_start AS BIGINT) AS ws, k, count(*) AS n \
         FROM TABLE(HOP(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '2' SECOND)) \
         GROUP BY window_start, window_end, k",
    )
    .await;
    events.push_records("a,9223372036854775807\nb,-9223372036854775808\nc,1500\n");
    clock.set(1000);
    wait_for_batch(&handle, 1000).await;
    events.finish();
    clock.set(2000);
    handle.await_termination().await.unwrap();
    assert!(matches!(handle.status(), brooklet::QueryStatus::Finished));
    assert_eq!(ctx.engine().sources()[0].metrics.late, 2);
    let mut rows: Vec<String> = outputs
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(_, r)| r.clone())
        .collect();
    rows.sort();
    assert_eq!(rows, ["0,c,1", "1000,c,1"]);
}

#[tokio::test]
async fn the_edge_of_the_time_range_closes_no_window_early_and_prints() {
    // Event times are taken in [-2^52, 2^52) ms; 2^52 itself is late. A
    // row there once moved the watermark to "end of input", closing the
    // window below early and emitting it twice.
    let (ctx, clock) = events_in_milliseconds().await;
    let (handle, outputs, events) = run_on_events(
        &ctx,
        "SELECT CAST(window_start AS BIGINT) AS ws, window_end, k, count(*) AS n \
         FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND)) \
         GROUP BY window_start, window_end, k",
    )
    .await;
    let limit: i64 = 1 << 52;
    for (i, t) in [limit - 2000, limit, limit - 1000].into_iter().enumerate() {
        events.push_records(&format!("a,{t}\n"));
        let time = (i as i64 + 1) * 1000;
        clock.set(time);
        wait_for_batch(&handle, time).await;
    }
    events.finish();
    clock.set(4000);
    handle.await_termination().await.unwrap();
    assert!(matches!(handle.status(), brooklet::QueryStatus::Finished));
    assert_eq!(ctx.engine().sources()[0].metrics.late, 1);
    let rows: Vec<(i64, Vec<String>)> = outputs.lock().unwrap().clone();
    let emitted: Vec<&(i64, Vec<String>)> = rows.iter().filter(|(_, r)| !r.is_empty()).collect();
    let start = (limit - 2000).div_euclid(10_000) * 10_000;
    assert_eq!(emitted.len(), 1, "{rows:?}");
    let (time, window) = emitted[0];
    assert_eq!(*time, 4000, "emitted at the end of input: {rows:?}");
    assert_eq!(window.len(), 1, "{rows:?}");
    assert!(window[0].starts_with(&format!("{start},")), "{rows:?}");
    assert!(window[0].ends_with(",a,2"), "{rows:?}");
}

/// Starts `sql` over `events` on `ctx`: its handle, what it emits, and
/// the source to push records into.
async fn run_on_events(
    ctx: &StreamingContext,
    sql: &str,
) -> (QueryHandle, crate::support::Outputs, brooklet::MemorySource) {
    let (handle, outputs) = record(ctx.sql(sql).await.unwrap());
    ctx.start().await.unwrap();
    (handle, outputs, ctx.memory_source("events").unwrap())
}

/// A context on a manual clock with source `events (k, ts)`, event times
/// in milliseconds, watermark without delay.
async fn events_in_milliseconds() -> (StreamingContext, ManualClock) {
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    ctx.execute(
        "CREATE SOURCE events (k TEXT, ts BIGINT NOT NULL, WATERMARK FOR ts) \
         WITH (connector = 'memory', format = 'csv')",
    )
    .await
    .unwrap();
    (ctx, clock)
}
