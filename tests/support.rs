//! Helpers shared by the integration tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use brooklet::prelude::*;

/// A context on a manual clock showing `start` ms, with notices silenced.
pub fn manual_context(start: i64, interval: Duration) -> (StreamingContext, ManualClock) {
    let clock = ManualClock::at(start);
    let ctx = StreamingContext::builder(interval)
        .clock(clock.clone())
        .notices(brooklet::Notices::new(|_| {}))
        .build()
        .unwrap();
    (ctx, clock)
}

/// Waits (in real time, briefly) until the query has run batch `millis`.
pub async fn wait_for_batch(handle: &QueryHandle, millis: i64) {
    while handle
        .last_progress()
        .is_none_or(|p| p.batch_time.millis() < millis)
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The rows of a batch as CSV lines, without a header.
pub fn csv_rows(batch: &RecordBatch) -> Vec<String> {
    let mut writer = brooklet::datafusion::arrow::csv::WriterBuilder::new()
        .with_header(false)
        .build(Vec::new());
    writer.write(batch).unwrap();
    String::from_utf8(writer.into_inner())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// What a query emitted: each batch time with its rows as CSV lines.
pub type Outputs = Arc<Mutex<Vec<(i64, Vec<String>)>>>;

/// Runs `stream`, recording what it emits.
pub fn record(stream: DStream) -> (QueryHandle, Outputs) {
    let outputs: Outputs = Arc::default();
    let sink = Arc::clone(&outputs);
    let handle = stream
        .foreach_batch(move |time, batch| {
            sink.lock().unwrap().push((time.millis(), csv_rows(&batch)));
            Ok(())
        })
        .unwrap();
    (handle, outputs)
}
