//! The `kafka` source and sink against a real broker (Tansu, started per
//! test on a free port, killed by PID): records produced before a batch
//! come out in that batch; metadata columns; a restart resumes from the
//! checkpoint's offsets; malformed records named by partition and offset;
//! brokers absent at start and stalled mid-run; instances splitting a
//! topic; the sink's records, exactly once.

use std::time::Duration;

use brooklet::StopMode;
use brooklet::prelude::*;

use crate::kafka_broker::{Broker, committed};
use crate::support::{record, wait_for_batch};

/// A context on a manual clock at 0 with 1 s batches, whose notices are
/// collected.
fn context() -> (
    StreamingContext,
    ManualClock,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let clock = ManualClock::at(0);
    let notices: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let sink = notices.clone();
    let ctx = StreamingContext::builder(Duration::from_secs(1))
        .clock(clock.clone())
        .notices(brooklet::Notices::new(move |n| {
            sink.lock().unwrap().push(n.to_string())
        }))
        .build()
        .unwrap();
    (ctx, clock, notices)
}

/// Source `name`'s counters now.
fn metrics_of(ctx: &StreamingContext, name: &str) -> brooklet::SourceMetricsSnapshot {
    ctx.engine()
        .sources()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap()
        .metrics
}

fn sorted(rows: &[&str]) -> Vec<String> {
    let mut rows: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    rows.sort();
    rows
}

/// The rows of batch `millis`, sorted.
fn batch_rows(outputs: &crate::support::Outputs, millis: i64) -> Vec<String> {
    let outputs = outputs.lock().unwrap();
    let mut rows = outputs
        .iter()
        .find(|(t, _)| *t == millis)
        .map(|(_, rows)| rows.clone())
        .unwrap_or_default();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_produced_before_a_batch_come_out_in_that_batch_with_their_metadata() {
    let broker = Broker::start();
    broker.create_topic("clicks", 2);
    let (ctx, clock, _) = context();
    ctx.execute(&format!(
        "CREATE SOURCE clicks (user_id BIGINT, url TEXT,
            part INT METADATA FROM 'partition', off BIGINT METADATA FROM 'offset',
            key TEXT METADATA VIRTUAL)
         WITH (connector = 'kafka', bootstrap.servers = '{}', topic = 'clicks', format = 'json')",
        broker.bootstrap()
    ))
    .await
    .unwrap();
    let (handle, outputs) = record(
        ctx.sql("SELECT user_id, url, part, off, key FROM clicks")
            .await
            .unwrap(),
    );
    ctx.start().await.unwrap();
    broker.produce(
        "clicks",
        &[
            (0, Some("u1"), r#"{"user_id": 1, "url": "/a"}"#),
            (1, Some("u2"), r#"{"user_id": 2, "url": "/b"}"#),
            (0, None, r#"{"user_id": 1, "url": "/c"}"#),
        ],
    );
    clock.set(1000);
    wait_for_batch(&handle, 1000).await;
    clock.set(2000);
    wait_for_batch(&handle, 2000).await;
    broker.produce(
        "clicks",
        &[(1, Some("u3"), r#"{"user_id": 3, "url": "/d"}"#)],
    );
    clock.set(3000);
    wait_for_batch(&handle, 3000).await;
    assert_eq!(
        batch_rows(&outputs, 1000),
        sorted(&["1,/a,0,0,u1", "1,/c,0,1,", "2,/b,1,0,u2"])
    );
    assert_eq!(batch_rows(&outputs, 2000), Vec::<String>::new());
    assert_eq!(batch_rows(&outputs, 3000), sorted(&["3,/d,1,1,u3"]));
    ctx.stop(StopMode::Graceful).await.unwrap();
}

/// Runs `SELECT line FROM t` over topic `t` with checkpoints in `dir`,
/// for batches `from..=to` (seconds), producing `records[k]` before batch k.
async fn lines_with_checkpoint(
    broker: &Broker,
    dir: &std::path::Path,
    seconds: std::ops::RangeInclusive<i64>,
    produce: &dyn Fn(i64),
) -> Vec<(i64, Vec<String>)> {
    let clock = ManualClock::at(seconds.start() * 1000 - 1000);
    let setup_clock = clock.clone();
    let bootstrap = broker.bootstrap();
    let ctx = StreamingContext::get_or_create(dir, || async move {
        let ctx = StreamingContext::builder(Duration::from_secs(1))
            .clock(setup_clock)
            .notices(brooklet::Notices::new(|_| {}))
            .build()?;
        ctx.execute(&format!(
            "CREATE SOURCE t (line TEXT) WITH (connector = 'kafka', bootstrap.servers = '{bootstrap}', topic = 't', max.records.per.partition.per.batch = 2)"
        ))
        .await?;
        Ok(ctx)
    })
    .await
    .unwrap();
    let (handle, outputs) = record(ctx.sql("SELECT line FROM t").await.unwrap().name("lines"));
    ctx.start().await.unwrap();
    for second in seconds {
        produce(second);
        clock.set(second * 1000);
        wait_for_batch(&handle, second * 1000).await;
    }
    ctx.stop(StopMode::Graceful).await.unwrap();
    outputs.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_checkpoint_offsets_taking_nothing_twice() {
    let broker = Broker::start();
    broker.create_topic("t", 1);
    let dir = tempfile::tempdir().unwrap();
    let produce = |second: i64| {
        let a = format!("{second}a");
        let b = format!("{second}b");
        let c = format!("{second}c");
        broker.produce("t", &[(0, None, &a), (0, None, &b), (0, None, &c)]);
    };
    // Three records a second, two a batch: one is left over each batch.
    let first = lines_with_checkpoint(&broker, dir.path(), 1..=2, &produce).await;
    assert_eq!(first[0], (1000, sorted(&["1a", "1b"])));
    assert_eq!(first[1], (2000, sorted(&["1c", "2a"])));
    // Stopped for two batches; records arrive meanwhile.
    produce(3);
    let second = lines_with_checkpoint(&broker, dir.path(), 5..=7, &|_| {}).await;
    let taken: Vec<String> = first
        .iter()
        .chain(second.iter())
        .flat_map(|(_, rows)| rows.clone())
        .collect();
    assert_eq!(
        taken,
        ["1a", "1b", "1c", "2a", "2b", "2c", "3a", "3b", "3c"],
        "{second:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_record_is_named_by_its_partition_and_offset() {
    let broker = Broker::start();
    broker.create_topic("nums", 2);
    let (ctx, clock, notices) = context();
    let dead = tempfile::tempdir().unwrap();
    let dead_letters = dead.path().join("dead.jsonl");
    ctx.execute(&format!(
        "CREATE SOURCE skip (n BIGINT) WITH (connector = 'kafka', bootstrap.servers = '{b}', topic = 'nums', format = 'csv', on-error = 'skip');
         CREATE SOURCE fail (n BIGINT) WITH (connector = 'kafka', bootstrap.servers = '{b}', topic = 'nums', format = 'csv');
         CREATE SOURCE dead (n BIGINT) WITH (connector = 'kafka', bootstrap.servers = '{b}', topic = 'nums', format = 'csv', on-error = 'dead-letter', dead-letter.path = '{}')",
        dead_letters.display(),
        b = broker.bootstrap()
    ))
    .await
    .unwrap();
    let (_dead, dead_rows) = record(ctx.sql("SELECT n FROM dead").await.unwrap());
    let (skipping, outputs) = record(ctx.sql("SELECT n FROM skip").await.unwrap());
    let failing = ctx
        .sql("SELECT n FROM fail")
        .await
        .unwrap()
        .foreach_batch(|_, _| Ok(()))
        .unwrap();
    ctx.start().await.unwrap();
    broker.produce(
        "nums",
        &[
            (0, None, "1"),
            (1, None, "2"),
            (1, None, "two"),
            (1, None, "3"),
        ],
    );
    clock.set(1000);
    wait_for_batch(&skipping, 1000).await;
    assert_eq!(batch_rows(&outputs, 1000), sorted(&["1", "2", "3"]));
    let error = failing.await_termination().await.unwrap_err().to_string();
    assert!(
        error.contains("topic 'nums' partition 1 offset 1"),
        "{error}"
    );
    let notices = notices.lock().unwrap().join("\n");
    assert!(
        notices.contains("topic 'nums' partition 1 offset 1"),
        "{notices}"
    );
    let metrics = metrics_of(&ctx, "skip");
    assert_eq!((metrics.records, metrics.malformed), (3, 1));
    assert_eq!(batch_rows(&dead_rows, 1000), sorted(&["1", "2", "3"]));
    let letter: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&dead_letters).unwrap().trim()).unwrap();
    assert_eq!(letter["at"], "topic 'nums' partition 1");
    assert_eq!(letter["offset"], 1);
    assert_eq!(letter["record"], "two");
    ctx.stop(StopMode::Graceful).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_meet_the_policy_in_order_empty_ones_included() {
    let broker = Broker::start();
    broker.create_topic("seqs", 1);
    let (ctx, clock, notices) = context();
    ctx.execute(&format!(
        "CREATE SOURCE fail (seq BIGINT) WITH (connector = 'kafka', bootstrap.servers = '{b}', topic = 'seqs', format = 'json');
         CREATE SOURCE skip (seq BIGINT) WITH (connector = 'kafka', bootstrap.servers = '{b}', topic = 'seqs', format = 'json', on-error = 'skip')",
        b = broker.bootstrap()
    ))
    .await
    .unwrap();
    let failing = ctx
        .sql("SELECT seq FROM fail")
        .await
        .unwrap()
        .foreach_batch(|_, _| Ok(()))
        .unwrap();
    let (skipping, outputs) = record(ctx.sql("SELECT seq FROM skip").await.unwrap());
    ctx.start().await.unwrap();
    // A truncated record at offset 1, an empty one at offset 2.
    broker.produce(
        "seqs",
        &[
            (0, None, "{\"seq\":0}"),
            (0, None, "{\"seq\":"),
            (0, None, ""),
            (0, None, "{\"seq\":3}"),
        ],
    );
    clock.set(1000);
    wait_for_batch(&skipping, 1000).await;
    assert_eq!(batch_rows(&outputs, 1000), sorted(&["0", "3"]));
    // The first malformed record is the truncated one (empty ones were
    // reported before every other).
    let error = failing.await_termination().await.unwrap_err().to_string();
    assert!(
        error.contains("topic 'seqs' partition 0 offset 1"),
        "{error}"
    );
    let notices = notices.lock().unwrap().join("\n");
    assert!(
        notices.contains("first at topic 'seqs' partition 0 offset 1"),
        "{notices}"
    );
    assert_eq!(metrics_of(&ctx, "skip").malformed, 2);
    ctx.stop(StopMode::Graceful).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_latest_skips_what_the_topic_held_before_the_first_batch() {
    let broker = Broker::start();
    broker.create_topic("t", 1);
    broker.produce("t", &[(0, None, "old 1"), (0, None, "old 2")]);
    let (ctx, clock, _) = context();
    ctx.execute(&format!(
        "CREATE SOURCE t (line TEXT) WITH (connector = 'kafka', bootstrap.servers = '{}', topic = 't', start = 'latest')",
        broker.bootstrap()
    ))
    .await
    .unwrap();
    let (handle, outputs) = record(ctx.sql("SELECT line FROM t").await.unwrap());
    ctx.start().await.unwrap();
    clock.set(1000);
    wait_for_batch(&handle, 1000).await;
    broker.produce("t", &[(0, None, "new")]);
    clock.set(2000);
    wait_for_batch(&handle, 2000).await;
    assert_eq!(batch_rows(&outputs, 1000), Vec::<String>::new());
    assert_eq!(batch_rows(&outputs, 2000), sorted(&["new"]));
    ctx.stop(StopMode::Graceful).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_absent_at_start_or_stalled_lose_nothing() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (ctx, clock, notices) = context();
    ctx.execute(&format!(
        "CREATE SOURCE t (line TEXT) WITH (connector = 'kafka', bootstrap.servers = '127.0.0.1:{port}', topic = 't', timeout = '3s')"
    ))
    .await
    .unwrap();
    let (handle, outputs) = record(ctx.sql("SELECT line FROM t").await.unwrap());
    ctx.start().await.unwrap();
    clock.set(1000);
    wait_for_batch(&handle, 1000).await;
    let status = |ctx: &StreamingContext| metrics_of(ctx, "t").status;
    assert!(status(&ctx).is_some_and(|s| s.contains("do not answer")));
    assert!(
        notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.contains("do not answer"))
    );

    // The broker comes up: reading starts at the beginning.
    let broker = Broker::start_on(port);
    broker.create_topic("t", 1);
    broker.produce("t", &[(0, None, "a"), (0, None, "b")]);
    clock.set(2000);
    wait_for_batch(&handle, 2000).await;
    let mut second = 2000;
    while batch_rows(&outputs, second).is_empty() && second < 10_000 {
        second += 1000;
        clock.set(second);
        wait_for_batch(&handle, second).await;
    }
    assert_eq!(batch_rows(&outputs, second), sorted(&["a", "b"]));
    assert_eq!(status(&ctx), None);

    // Stalled (kill -STOP): batches go on empty; resumed, nothing is lost.
    broker.produce("t", &[(0, None, "c")]);
    broker.pause();
    second += 1000;
    clock.set(second);
    wait_for_batch(&handle, second).await;
    assert_eq!(batch_rows(&outputs, second), Vec::<String>::new());
    assert!(status(&ctx).is_some());
    // Once known not to answer, batches do not wait the 3 s timeout each
    // (they held every other query of the engine): four take well under 3 s.
    let started = std::time::Instant::now();
    for _ in 0..4 {
        second += 1000;
        clock.set(second);
        wait_for_batch(&handle, second).await;
        assert_eq!(batch_rows(&outputs, second), Vec::<String>::new());
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    broker.resume();
    let stalled = second;
    while batch_rows(&outputs, second).is_empty() && second < stalled + 10_000 {
        second += 1000;
        clock.set(second);
        wait_for_batch(&handle, second).await;
    }
    assert_eq!(batch_rows(&outputs, second), sorted(&["c"]));
    ctx.stop(StopMode::Graceful).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_and_partition_lists_split_the_topic() {
    // (Partitions added while running are listed at every batch; this
    // broker cannot add partitions: CreatePartitions is unsupported.)
    let broker = Broker::start();
    broker.create_topic("t", 3);
    let (ctx, clock, _) = context();
    let b = broker.bootstrap();
    ctx.execute(&format!(
        "CREATE SOURCE all_parts (line TEXT) WITH (connector = 'kafka', bootstrap.servers = '{b}', topic = 't');
         CREATE SOURCE even (line TEXT) WITH (connector = 'kafka', bootstrap.servers = '{b}', topic = 't', instance = '0/2');
         CREATE SOURCE named (line TEXT) WITH (connector = 'kafka', bootstrap.servers = '{b}', topic = 't', partitions = '1')"
    ))
    .await
    .unwrap();
    let (all, all_rows) = record(ctx.sql("SELECT line FROM all_parts").await.unwrap());
    let (_even, even_rows) = record(ctx.sql("SELECT line FROM even").await.unwrap());
    let (_named, named_rows) = record(ctx.sql("SELECT line FROM named").await.unwrap());
    ctx.start().await.unwrap();
    broker.produce("t", &[(0, None, "p0"), (1, None, "p1")]);
    clock.set(1000);
    wait_for_batch(&all, 1000).await;
    broker.produce("t", &[(2, None, "p2")]);
    clock.set(2000);
    wait_for_batch(&all, 2000).await;
    ctx.stop(StopMode::Graceful).await.unwrap();
    let rows = |o: &crate::support::Outputs| -> Vec<String> {
        let mut rows: Vec<String> = o
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, r)| r.clone())
            .collect();
        rows.sort();
        rows
    };
    assert_eq!(batch_rows(&all_rows, 2000), sorted(&["p2"]));
    assert_eq!(rows(&all_rows), sorted(&["p0", "p1", "p2"]));
    assert_eq!(rows(&even_rows), sorted(&["p0", "p2"]));
    assert_eq!(rows(&named_rows), sorted(&["p1"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_writes_each_batch_once_in_a_transaction_keyed_by_its_column() {
    let broker = Broker::start();
    broker.create_topic("out", 2);
    let (ctx, clock, _) = context();
    ctx.execute(&format!(
        "CREATE SOURCE words (word TEXT) WITH (connector = 'memory');
         CREATE SINK out WITH (connector = 'kafka', bootstrap.servers = '{}', topic = 'out', format = 'json', key = 'word')",
        broker.bootstrap()
    ))
    .await
    .unwrap();
    let handle = ctx
        .sql("SELECT word, count(*) AS n FROM words GROUP BY word")
        .await
        .unwrap()
        .write_to("out")
        .unwrap();
    ctx.start().await.unwrap();
    let words = ctx.memory_source("words").unwrap();
    for (second, text) in [(1, "a\nb\na\n"), (2, ""), (3, "b\n")] {
        words.push_records(text);
        clock.set(second * 1000);
        wait_for_batch(&handle, second * 1000).await;
    }
    ctx.stop(StopMode::Graceful).await.unwrap();
    let mut seen = Vec::new();
    for partition in 0..2 {
        let log = committed::read(broker.port(), "out", partition);
        assert!(log.open.is_empty(), "open transactions: {:?}", log.open);
        assert_eq!(log.aborted, 0);
        for (key, value) in log.records {
            let key = String::from_utf8(key.unwrap()).unwrap();
            seen.push(format!(
                "{partition}:{key}:{}",
                String::from_utf8(value).unwrap()
            ));
        }
    }
    seen.sort();
    // Each key's records are in one partition.
    let a: Vec<&String> = seen.iter().filter(|s| s.contains(":a:")).collect();
    let b: Vec<&String> = seen.iter().filter(|s| s.contains(":b:")).collect();
    assert_eq!(a.len(), 1, "{seen:?}");
    assert_eq!(b.len(), 2, "{seen:?}");
    assert!(a[0].ends_with(r#"{"word":"a","n":2}"#), "{seen:?}");
    assert_eq!(b[0][..2], b[1][..2], "one partition per key: {seen:?}");
}

/// (A deleted topic fails the query too, by the topic's metadata error;
/// against this broker it cannot be tried: its metadata answer after a
/// delete crashes librdkafka, see docs/decisions.md.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_partition_fails_the_query_saying_so() {
    let broker = Broker::start();
    broker.create_topic("t", 2);
    let (ctx, clock, _) = context();
    ctx.execute(&format!(
        "CREATE SOURCE missing (line TEXT) WITH (connector = 'kafka', bootstrap.servers = '{}', topic = 't', partitions = '0,7')",
        broker.bootstrap()
    ))
    .await
    .unwrap();
    let missing = ctx
        .sql("SELECT line FROM missing")
        .await
        .unwrap()
        .foreach_batch(|_, _| Ok(()))
        .unwrap();
    ctx.start().await.unwrap();
    clock.set(1000);
    let error = missing.await_termination().await.unwrap_err().to_string();
    assert!(
        error.contains("topic 't' has no partition 7 (it has 2)"),
        "{error}"
    );
    ctx.stop(StopMode::Graceful).await.unwrap();
}

/// Kafka's record timestamp as the event time: a `METADATA FROM
/// 'timestamp'` column with a watermark drives an event-time window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_timestamp_can_be_the_event_time() {
    let broker = Broker::start();
    broker.create_topic("t", 1);
    let (ctx, clock, _) = context();
    ctx.execute(&format!(
        "CREATE SOURCE t (line TEXT, ts TIMESTAMP METADATA FROM 'timestamp', WATERMARK FOR ts)
         WITH (connector = 'kafka', bootstrap.servers = '{}', topic = 't')",
        broker.bootstrap()
    ))
    .await
    .unwrap();
    let (handle, outputs) = record(
        ctx.sql(
            "SELECT window_end, count(*) AS n
             FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND))
             GROUP BY window_start, window_end",
        )
        .await
        .unwrap(),
    );
    ctx.start().await.unwrap();
    broker.produce_at("t", &[("a", 1_000), ("b", 9_999)]);
    clock.set(1000);
    wait_for_batch(&handle, 1000).await;
    broker.produce_at("t", &[("c", 12_000)]);
    clock.set(2000);
    wait_for_batch(&handle, 2000).await;
    assert_eq!(batch_rows(&outputs, 1000), Vec::<String>::new());
    assert_eq!(
        batch_rows(&outputs, 2000),
        sorted(&["1970-01-01T00:00:10,2"])
    );
    ctx.stop(StopMode::Graceful).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn available_now_reads_a_topic_up_to_its_ends_then_the_query_ends() {
    let broker = Broker::start();
    broker.create_topic("t", 2);
    let records: Vec<(i32, Option<&str>, String)> =
        (0..40).map(|i| (i % 2, None, format!("r{i}"))).collect();
    let records: Vec<(i32, Option<&str>, &str)> = records
        .iter()
        .map(|(p, k, v)| (*p, *k, v.as_str()))
        .collect();
    broker.produce("t", &records);
    let (ctx, _clock, _) = context();
    ctx.set_trigger(Trigger::AvailableNow).unwrap();
    // At most 8 records per partition and batch: the topic takes batches.
    ctx.execute(&format!(
        "CREATE SOURCE t (line TEXT) WITH (connector = 'kafka', bootstrap.servers = '{}', topic = 't', \
         max.records.per.partition.per.batch = 8)",
        broker.bootstrap()
    ))
    .await
    .unwrap();
    let (handle, outputs) = record(ctx.sql("SELECT line FROM t").await.unwrap());
    ctx.start().await.unwrap();
    // The clock never moves: the batches run back to back and end.
    ctx.await_termination().await.unwrap();
    assert!(matches!(handle.status(), brooklet::QueryStatus::Finished));
    let outputs = outputs.lock().unwrap().clone();
    let mut lines: Vec<String> = outputs.iter().flat_map(|(_, rows)| rows.clone()).collect();
    lines.sort();
    let mut expected: Vec<String> = (0..40).map(|i| format!("r{i}")).collect();
    expected.sort();
    assert_eq!(lines, expected);
    // 20 records per partition, 8 per batch: three batches, at 1 s, 2 s, 3 s.
    let times: Vec<i64> = outputs.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, vec![1000, 2000, 3000]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_whose_brokers_do_not_answer_fails_instead_of_waiting_forever() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (ctx, _clock, _) = context();
    ctx.set_trigger(Trigger::AvailableNow).unwrap();
    ctx.execute(&format!(
        "CREATE SOURCE t (line TEXT) WITH (connector = 'kafka', bootstrap.servers = '127.0.0.1:{port}', \
         topic = 't', timeout = '1s')"
    ))
    .await
    .unwrap();
    let (_handle, _outputs) = record(ctx.sql("SELECT line FROM t").await.unwrap());
    ctx.start().await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(60), ctx.await_termination()).await;
    let error = ended.expect("the backfill waited").unwrap_err().to_string();
    assert!(error.contains("have not answered"), "{error}");
}

/// Records the client sent in batches (one request for many): the broker
/// lists a partition's end as less than what it holds, and available-now
/// still reads every record, batch by batch, before it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn available_now_reads_records_sent_in_batches_to_the_end_of_each_partition() {
    let broker = Broker::start();
    broker.create_topic("t", 1);
    broker.produce_many("t", (0..300).map(|i| (0, format!("k{i}"), format!("{i}"))));
    let (ctx, _clock, _) = context();
    ctx.set_trigger(Trigger::AvailableNow).unwrap();
    ctx.execute(&format!(
        "CREATE SOURCE t (n BIGINT) WITH (connector = 'kafka', bootstrap.servers = '{}', topic = 't', \
         format = 'csv', max.records.per.partition.per.batch = 50)",
        broker.bootstrap()
    ))
    .await
    .unwrap();
    let (handle, outputs) = record(ctx.sql("SELECT n FROM t").await.unwrap());
    ctx.start().await.unwrap();
    ctx.await_termination().await.unwrap();
    assert!(matches!(handle.status(), brooklet::QueryStatus::Finished));
    let outputs = outputs.lock().unwrap().clone();
    let mut numbers: Vec<i64> = outputs
        .iter()
        .flat_map(|(_, rows)| rows.iter().map(|r| r.parse::<i64>().unwrap()))
        .collect();
    numbers.sort();
    assert_eq!(numbers, (0..300).collect::<Vec<_>>());
}
