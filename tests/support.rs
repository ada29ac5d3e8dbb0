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

/// Waits until the query has run batch `millis`.
pub async fn wait_for_batch(handle: &QueryHandle, millis: i64) {
    handle
        .await_batch(BatchTime::from_millis(millis))
        .await
        .expect("the query ended before the batch");
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

/// Starts `ctx` with `stream` as its query and feeds memory source `source`
/// one item of `batches` per batch (raw records; batch `k` at `k·I`).
/// Returns what the query emitted, each batch's rows sorted, and its handle.
pub async fn run_batches(
    ctx: &StreamingContext,
    clock: &ManualClock,
    stream: DStream,
    source: &str,
    batches: &[&str],
) -> (Vec<(i64, Vec<String>)>, QueryHandle) {
    let (handle, outputs) = record(stream);
    ctx.start().await.unwrap();
    let memory = ctx.memory_source(source).unwrap();
    let interval = ctx.batch_interval().as_millis() as i64;
    for (i, records) in batches.iter().enumerate() {
        memory.push_records(records);
        let time = (i as i64 + 1) * interval;
        clock.set(time);
        wait_for_batch(&handle, time).await;
    }
    let mut outputs = outputs.lock().unwrap().clone();
    for (_, rows) in &mut outputs {
        rows.sort();
    }
    (outputs, handle)
}

/// Waits until source `name` has decoded `n` records. Batches run only when
/// a test advances its ManualClock; what this waits for is a socket's data
/// arriving over the network, in real time (polled, with a deadline).
pub async fn wait_for_records(ctx: &StreamingContext, name: &str, n: u64) {
    let records = || {
        ctx.engine()
            .sources()
            .into_iter()
            .find(|s| s.name == name)
            .map_or(0, |s| s.metrics.records)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while records() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "source '{name}' decoded {} of {n} records",
            records()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Writes `bytes` to `dir/name` with modification time `millis` after the
/// epoch, as a writer renaming a finished file in would.
pub fn put(dir: &std::path::Path, name: &str, bytes: &[u8], millis: u64) {
    let hidden = dir.join(format!(".{name}.part"));
    std::fs::write(&hidden, bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&hidden)
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + Duration::from_millis(millis))
        .unwrap();
    std::fs::rename(&hidden, dir.join(name)).unwrap();
}

/// Runs `future` to its end on a runtime of its own (what a property
/// test's case needs: proptest calls it outside any runtime).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// `items` cut into consecutive batches of the sizes `cuts` (each at most
/// what is left), the rest in a last batch.
pub fn cut_into_batches<T: Clone>(
    items: &[T],
    cuts: impl IntoIterator<Item = usize>,
) -> Vec<Vec<T>> {
    let mut batches = Vec::new();
    let mut rest = items;
    for n in cuts {
        let (batch, tail) = rest.split_at(n.min(rest.len()));
        batches.push(batch.to_vec());
        rest = tail;
    }
    batches.push(rest.to_vec());
    batches
}
