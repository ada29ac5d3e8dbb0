//! The Nexmark generator as a source: its proportions through SQL, and a
//! windowed Nexmark query (q5's hop count per auction) whose final rows
//! equal a batch DataFusion query over the same generated bids.

use std::time::Duration;

use brooklet::datafusion::datasource::MemTable;
use brooklet::datafusion::prelude::SessionContext;

use crate::support::{csv_rows, manual_context};

const SOURCE: &str = "CREATE SOURCE bid (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND) \
     WITH (connector = 'nexmark', table = 'bid', events = 30000, events.per.batch = 10000, seed = 3)";

/// Runs `query` over the generated bids to the end; every emitted row.
async fn run(query: &str) -> (Vec<String>, Vec<brooklet::RecordBatch>) {
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    ctx.execute(SOURCE).await.unwrap();
    let stream = ctx.sql(query).await.unwrap();
    let batches = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = std::sync::Arc::clone(&batches);
    let handle = stream
        .foreach_batch(move |_, batch| {
            kept.lock().unwrap().push(batch);
            Ok(())
        })
        .unwrap();
    ctx.start().await.unwrap();
    for batch in 1..=5 {
        clock.set(batch * 1000);
    }
    handle.await_termination().await.unwrap();
    let batches = batches.lock().unwrap().clone();
    let mut rows: Vec<String> = batches.iter().flat_map(csv_rows).collect();
    rows.sort();
    (rows, batches)
}

#[tokio::test]
async fn bids_are_92_percent_of_events_with_event_time_at_the_rate() {
    let (rows, _) = run(
        "SELECT count(*) AS n, CAST(max(date_time) AS BIGINT) - CAST(min(date_time) AS BIGINT) AS span FROM bid",
    )
    .await;
    // Three batches of 10 000 events: 9 200 bids each, 1 s of event time
    // apiece (10 000 events/s), the last bid of a batch 0.999 s after its first.
    assert_eq!(rows, ["9200,999", "9200,999", "9200,999"]);
}

#[tokio::test]
async fn q5_hop_counts_equal_a_batch_query_over_the_same_bids() {
    let (all_bids, batches) = run("SELECT auction, date_time FROM bid").await;
    assert_eq!(all_bids.len(), 27_600);
    let (windows, _) = run(
        "SELECT CAST(window_start AS BIGINT) AS ws, auction, count(*) AS n \
         FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) \
         GROUP BY window_start, window_end, auction",
    )
    .await;
    let session = SessionContext::new();
    let schema = batches[0].schema();
    session
        .register_table(
            "bids",
            std::sync::Arc::new(MemTable::try_new(schema, vec![batches]).unwrap()),
        )
        .unwrap();
    let offsets: Vec<String> = (0..5).map(|i| format!("({i})")).collect();
    let expected = session
        .sql(&format!(
            "SELECT ws, auction, count(*) AS n FROM \
             (SELECT CAST(date_time AS BIGINT) / 2000 * 2000 - i * 2000 AS ws, auction FROM bids \
              CROSS JOIN (VALUES {}) AS o(i)) GROUP BY ws, auction",
            offsets.join(", ")
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut expected: Vec<String> = expected.iter().flat_map(csv_rows).collect();
    expected.sort();
    assert!(!windows.is_empty());
    assert_eq!(windows, expected);
}
