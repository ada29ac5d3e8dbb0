//! Checkpoints from Rust: `StreamingContext::get_or_create` resumes a
//! running aggregate where it stopped, and refuses a changed query; a
//! checkpoint that cannot be written fails its query.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use brooklet::prelude::*;

use crate::support::{record, wait_for_batch};

/// A context on a manual clock at `millis`, counting words from memory
/// source `words` with `query`, checkpointing into `dir`.
async fn counting(
    dir: &std::path::Path,
    millis: i64,
    query: &str,
) -> (StreamingContext, ManualClock, DStream) {
    let clock = ManualClock::at(millis);
    let setup_clock = clock.clone();
    let ctx = StreamingContext::get_or_create(dir, || async move {
        let ctx = StreamingContext::builder(Duration::from_secs(1))
            .clock(setup_clock)
            .notices(brooklet::Notices::new(|_| {}))
            .build()?;
        ctx.execute("CREATE SOURCE words (word TEXT) WITH (connector = 'memory')")
            .await?;
        Ok(ctx)
    })
    .await
    .unwrap();
    ctx.engine().set_checkpoint_interval(10).unwrap();
    let stream = ctx.sql(query).await.unwrap();
    (ctx, clock, stream)
}

const QUERY: &str = "SELECT word, count(*) AS n FROM words GROUP BY word EMIT COMPLETE";

#[tokio::test]
async fn get_or_create_resumes_a_running_aggregate_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, clock, stream) = counting(dir.path(), 0, QUERY).await;
    let (handle, _) = record(stream);
    ctx.start().await.unwrap();
    let words = ctx.memory_source("words").unwrap();
    for (batch, text) in ["a\nb\n", "a\n"].iter().enumerate() {
        words.push_records(text);
        let time = 1000 * (batch as i64 + 1);
        clock.set(time);
        wait_for_batch(&handle, time).await;
    }
    ctx.stop(StopMode::Graceful).await.unwrap();

    // Started again two batches later: no batch runs again (the graceful
    // stop saved the state of batch 2, though state is due every 10
    // batches), and batch 3 (down time) runs first.
    let (ctx, clock, stream) = counting(dir.path(), 4000, QUERY).await;
    let (handle, outputs) = record(stream);
    ctx.start().await.unwrap();
    ctx.memory_source("words").unwrap().push_records("b\nc\n");
    wait_for_batch(&handle, 3000).await;
    clock.set(5000);
    wait_for_batch(&handle, 5000).await;
    let outputs = outputs.lock().unwrap().clone();
    let sorted = |rows: &[&str]| {
        let mut rows: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
        rows.sort();
        rows
    };
    assert_eq!(outputs[0], (3000, sorted(&["a,2", "b,2", "c,1"])));
    assert_eq!(
        outputs.last().unwrap(),
        &(5000, sorted(&["a,2", "b,2", "c,1"]))
    );
    ctx.stop(StopMode::Graceful).await.unwrap();

    // Another query on the same checkpoint is refused, showing both.
    let (ctx, _clock, stream) = counting(dir.path(), 6000, "SELECT word FROM words").await;
    let handle = stream.name("q1").foreach_batch(|_, _| Ok(())).unwrap();
    ctx.start().await.unwrap();
    let error = handle.await_termination().await.unwrap_err().to_string();
    assert!(error.contains("is of another query"), "{error}");
    assert!(
        error.contains(QUERY) && error.contains("SELECT word FROM words"),
        "{error}"
    );
}

#[tokio::test]
async fn a_restart_says_how_much_down_time_is_left_to_replay() {
    let dir = tempfile::tempdir().unwrap();
    let said: Arc<Mutex<Vec<String>>> = Arc::default();
    let start = |millis: i64| {
        let said = Arc::clone(&said);
        let dir = dir.path().to_path_buf();
        async move {
            let clock = ManualClock::at(millis);
            let ctx = StreamingContext::builder(Duration::from_secs(1))
                .clock(clock.clone())
                .notices(brooklet::Notices::new(move |m| {
                    said.lock().unwrap().push(m.to_string())
                }))
                .build()
                .unwrap();
            ctx.checkpoint(dir);
            ctx.execute("CREATE SOURCE words (word TEXT) WITH (connector = 'memory')")
                .await
                .unwrap();
            let (handle, _) = record(ctx.sql(QUERY).await.unwrap());
            ctx.start().await.unwrap();
            (ctx, clock, handle)
        }
    };
    let (ctx, clock, handle) = start(0).await;
    clock.set(1000);
    wait_for_batch(&handle, 1000).await;
    ctx.stop(StopMode::Graceful).await.unwrap();
    assert!(!said.lock().unwrap().iter().any(|m| m.contains("down time")));

    // Started again at 30 s: batches 2 s to 30 s are the down time.
    let (ctx, _clock, handle) = start(30_000).await;
    wait_for_batch(&handle, 30_000).await;
    ctx.stop(StopMode::Graceful).await.unwrap();
    let said = said.lock().unwrap().clone();
    let down: Vec<&String> = said.iter().filter(|m| m.contains("down time")).collect();
    assert!(
        down[0]
            .contains("replaying the down time: batch 2000 ms ran, 1 of 29 batches done, 28 left"),
        "{down:?}"
    );
    assert!(
        down.last()
            .unwrap()
            .starts_with("down time replayed: 29 batches"),
        "{down:?}"
    );
}

/// Checkpoints are written while the next batch runs: one that cannot be
/// written fails its query when the next batch hands its own over, after
/// that batch's output.
#[tokio::test]
async fn a_checkpoint_that_cannot_be_written_fails_its_query_at_the_next_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, clock, stream) = counting(dir.path(), 0, QUERY).await;
    let (handle, outputs) = record(stream.name("counts"));
    ctx.start().await.unwrap();
    ctx.memory_source("words").unwrap().push_records("a\n");
    for time in [1000, 2000] {
        clock.set(time);
        wait_for_batch(&handle, time).await;
    }
    // Batch 1 is committed (batch 2 waited for it); batch 2's checkpoint
    // may be in flight. The checkpoint directory's place is taken by a
    // file: batch 2's commit fails (batch 3 learns it), or, if it was
    // already written, batch 3's (batch 4 learns it).
    let query_dir = dir.path().join("counts");
    assert!(query_dir.join("commit").is_file(), "batch 1 committed");
    std::fs::rename(&query_dir, dir.path().join("moved")).unwrap();
    std::fs::write(&query_dir, "not a directory").unwrap();
    clock.set(4000);
    let error = handle.await_termination().await.unwrap_err().to_string();
    assert!(error.contains("commit"), "{error}");
    assert!(matches!(handle.status(), brooklet::QueryStatus::Failed(_)));
    // Every batch that ran delivered its output; none ran after the one
    // that failed.
    let times: Vec<i64> = outputs.lock().unwrap().iter().map(|(t, _)| *t).collect();
    assert!(
        times == [1000, 2000, 3000] || times == [1000, 2000, 3000, 4000],
        "{times:?}"
    );
}
