//! The available-now trigger: the same batches, at the same times, as on
//! the clock — only without the waiting — and the end of the queries once
//! the input available now is read.

use std::time::Duration;

use brooklet::prelude::*;

use crate::support::{Outputs, record};

/// What a query emits (each batch's rows sorted) over the same memory
/// input, one push per batch, then the end of input.
const BATCHES: [&str; 6] = [
    "a,1000\nb,1500",
    "a,2100",
    "",
    "c,3500\na,3900",
    "b,4200",
    "a,6100",
];

/// The queries compared: a processing-time window, an event-time window
/// and a running aggregate.
const QUERIES: [&str; 3] = [
    "SELECT word, count(*) AS n FROM TABLE(HOP(TABLE words, DESCRIPTOR(proctime), \
     INTERVAL '1' SECOND, INTERVAL '3' SECOND)) GROUP BY window_start, window_end, word",
    "SELECT window_start, word, count(*) AS n FROM TABLE(TUMBLE(TABLE words, DESCRIPTOR(ts), \
     INTERVAL '2' SECOND)) GROUP BY window_start, window_end, word",
    "SELECT word, count(*) AS n FROM words GROUP BY word EMIT CHANGES",
];

async fn context(trigger: Trigger) -> (StreamingContext, ManualClock) {
    let clock = ManualClock::at(0);
    let ctx = StreamingContext::builder(Duration::from_secs(1))
        .clock(clock.clone())
        .notices(brooklet::Notices::new(|_| {}))
        .trigger(trigger)
        .build()
        .unwrap();
    ctx.execute(
        "CREATE SOURCE words (word TEXT, ts BIGINT, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
         WITH (connector = 'memory', format = 'csv')",
    )
    .await
    .unwrap();
    let words = ctx.memory_source("words").unwrap();
    for batch in BATCHES {
        words.push_records(batch);
    }
    words.finish();
    (ctx, clock)
}

fn sorted(outputs: &Outputs) -> Vec<(i64, Vec<String>)> {
    let mut outputs = outputs.lock().unwrap().clone();
    for (_, rows) in &mut outputs {
        rows.sort();
    }
    outputs
}

#[tokio::test]
async fn available_now_runs_the_batches_a_manual_clock_runs_one_by_one() {
    for query in QUERIES {
        // On the clock: batch k runs when the test moves the clock to k s.
        let (ctx, clock) = context(Trigger::ProcessingTime).await;
        let (handle, on_clock) = record(ctx.sql(query).await.unwrap());
        ctx.start().await.unwrap();
        for second in 1.. {
            clock.set(second * 1000);
            let ran = handle
                .await_batch(BatchTime::from_millis(second * 1000))
                .await;
            if ran.is_none() || handle.status().is_terminal() {
                break;
            }
        }
        handle.await_termination().await.unwrap();

        // Available now: the clock never moves; the batches run anyway.
        let (ctx, _clock) = context(Trigger::AvailableNow).await;
        let (handle, available_now) = record(ctx.sql(query).await.unwrap());
        ctx.start().await.unwrap();
        ctx.await_termination().await.unwrap();
        assert!(
            matches!(handle.status(), brooklet::QueryStatus::Finished),
            "{query}"
        );

        let expected = sorted(&on_clock);
        assert!(expected.len() >= BATCHES.len(), "{query}: {expected:?}");
        assert_eq!(sorted(&available_now), expected, "{query}");
    }
}

#[tokio::test]
async fn available_now_refuses_sources_that_never_end() {
    let ctx = StreamingContext::builder(Duration::from_secs(1))
        .trigger(Trigger::AvailableNow)
        .build()
        .unwrap();
    ctx.execute(
        "CREATE SOURCE s WITH (connector = 'sequence', rows.per.second = 10); SELECT id FROM s;",
    )
    .await
    .unwrap();
    let error = ctx.start().await.unwrap_err().to_string();
    assert!(
        error.contains("'s' (sequence): it generates rows forever; give it rows = N"),
        "{error}"
    );
}
