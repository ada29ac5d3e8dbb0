//! The Rust API, as an embedder uses it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use brooklet::datafusion::arrow::array::{Int64Array, StringArray};
use brooklet::datafusion::arrow::datatypes::{DataType, Field, Schema};
use brooklet::prelude::*;
use brooklet::{ConsoleOptions, MemorySource, QueryStatus};
use futures::StreamExt;

use crate::support::{self, csv_rows, wait_for_batch};

fn manual_context() -> (StreamingContext, ManualClock) {
    support::manual_context(10_500, Duration::from_millis(500))
}

async fn lines_source(ctx: &StreamingContext) -> MemorySource {
    ctx.execute("CREATE SOURCE lines (line TEXT) WITH (connector = 'memory')")
        .await
        .unwrap();
    ctx.memory_source("lines").unwrap()
}

#[tokio::test]
async fn foreach_batch_sees_every_batch_time_with_its_rows() {
    let (ctx, clock) = manual_context();
    let lines = lines_source(&ctx).await;
    type Seen = Vec<(i64, Vec<String>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let sink = Arc::clone(&seen);
    let errors = ctx
        .sql("SELECT line FROM lines WHERE line LIKE '%error%'")
        .await
        .unwrap();
    let handle = errors
        .foreach_batch(move |time, batch| {
            sink.lock().unwrap().push((time.millis(), csv_rows(&batch)));
            Ok(())
        })
        .unwrap();
    ctx.start().await.unwrap();
    lines.push_records("ok\nan error\n");
    lines.push_records("");
    lines.push_records("error 2");
    // Nothing runs until the clock moves: zero is 10 500, batches every 500 ms.
    tokio::task::yield_now().await;
    assert!(seen.lock().unwrap().is_empty());
    clock.advance(Duration::from_millis(1_500));
    wait_for_batch(&handle, 12_000).await;
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (11_000, vec!["an error".to_string()]),
            (11_500, vec![]),
            (12_000, vec!["error 2".to_string()]),
        ]
    );
    handle.stop().await.unwrap();
    assert!(matches!(handle.status(), QueryStatus::Stopped));
}

#[tokio::test]
async fn a_failing_callback_fails_its_query_with_the_batch_time() {
    let (ctx, clock) = manual_context();
    lines_source(&ctx).await;
    let handle = ctx
        .sql("SELECT line FROM lines")
        .await
        .unwrap()
        .foreach_batch(|_, _| Err("the database is down".into()))
        .unwrap();
    ctx.start().await.unwrap();
    clock.advance(Duration::from_millis(500));
    let err = handle.await_termination().await.unwrap_err().to_string();
    assert!(
        err.contains("output callback failed in batch 11000 ms: the database is down"),
        "{err}"
    );
    let err = ctx.await_termination().await.unwrap_err().to_string();
    assert!(err.contains("the database is down"), "{err}");
}

#[tokio::test]
async fn into_stream_yields_batches_and_dropping_it_stops_the_query() {
    let (ctx, clock) = manual_context();
    let lines = lines_source(&ctx).await;
    let mut stream = ctx
        .sql("SELECT upper(line) AS l FROM lines")
        .await
        .unwrap()
        .into_stream()
        .unwrap();
    assert_eq!(stream.schema().field(0).name(), "l");
    let handle = stream.handle().clone();
    ctx.start().await.unwrap();
    lines.push_records("a\nb");
    clock.advance(Duration::from_millis(500));
    let (time, batch) = stream.next().await.unwrap().unwrap();
    assert_eq!(time, BatchTime::from_millis(11_000));
    assert_eq!(csv_rows(&batch), ["A", "B"]);
    clock.advance(Duration::from_millis(500));
    let (time, batch) = stream.next().await.unwrap().unwrap();
    assert_eq!((time.millis(), batch.num_rows()), (11_500, 0));
    drop(stream);
    handle.await_termination().await.unwrap();
    assert!(matches!(handle.status(), QueryStatus::Stopped));
    // With its only query gone, the context has nothing left to run.
    ctx.await_termination().await.unwrap();
}

#[tokio::test]
async fn print_writes_sparks_blocks_with_a_row_limit() {
    let buffer: Arc<Mutex<Vec<u8>>> = Arc::default();
    let clock = ManualClock::at(0);
    let ctx = StreamingContext::builder(Duration::from_secs(1))
        .clock(clock.clone())
        .console(ConsoleOptions {
            target: brooklet::engine::sink::console::ConsoleTarget::Buffer(Arc::clone(&buffer)),
            ..ConsoleOptions::default()
        })
        .build()
        .unwrap();
    let lines = lines_source(&ctx).await;
    let handle = ctx
        .sql("SELECT line FROM lines")
        .await
        .unwrap()
        .print(2)
        .unwrap();
    ctx.start().await.unwrap();
    lines.push_records("one\ntwo\nthree");
    clock.advance(Duration::from_secs(2));
    wait_for_batch(&handle, 2_000).await;
    let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
    let dashes = "-------------------------------------------";
    let expected = format!(
        "{dashes}\nTime: 1000 ms\n{dashes}\n+------+\n| line |\n+------+\n| one  |\n| two  |\n+------+\n...\n\n{dashes}\nTime: 2000 ms\n{dashes}\n\n"
    );
    assert_eq!(text, expected);
}

#[tokio::test]
async fn the_operator_api_runs_without_sql() {
    let (ctx, clock) = manual_context();
    let schema = Arc::new(Schema::new(vec![
        Field::new("word", DataType::Utf8, false),
        Field::new("n", DataType::Int64, false),
    ]));
    let words = MemorySource::new("words", schema.clone());
    ctx.register_source("words", Arc::new(words.clone()))
        .unwrap();
    let counts = ctx
        .source("words")
        .unwrap()
        .filter(col("n").gt(lit(0)))
        .unwrap()
        .aggregate(
            vec![col("word")],
            vec![brooklet::datafusion::functions_aggregate::expr_fn::sum(col("n")).alias("total")],
        )
        .unwrap();
    let mut stream = counts.into_stream().unwrap();
    ctx.start().await.unwrap();
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["a", "b", "a", "c"])),
            Arc::new(Int64Array::from(vec![1, 2, 3, 0])),
        ],
    )
    .unwrap();
    words.push(batch).unwrap();
    clock.advance(Duration::from_millis(500));
    let (_, out) = stream.next().await.unwrap().unwrap();
    let mut rows = csv_rows(&out);
    rows.sort();
    assert_eq!(rows, ["a,4", "b,2"]);
    // The same source is readable from SQL too.
    let mut sql = ctx
        .sql("SELECT count(*) AS n FROM words")
        .await
        .unwrap()
        .into_stream()
        .unwrap();
    clock.advance(Duration::from_millis(500));
    let (time, _) = stream.next().await.unwrap().unwrap();
    let (sql_time, out) = sql.next().await.unwrap().unwrap();
    assert_eq!(
        (time, sql_time),
        (
            BatchTime::from_millis(11_500),
            BatchTime::from_millis(11_500)
        )
    );
    assert_eq!(csv_rows(&out), ["0"]);
}

#[tokio::test]
async fn bad_statements_say_where_and_what() {
    let (ctx, _clock) = manual_context();
    let err = ctx
        .execute("CREATE SOURCE s (line TEXT) WITH (connector = 'socket', port = 1, prot = 2)")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown option 'prot' for connector 'socket'"),
        "{err}"
    );
    assert!(err.contains("valid options: "), "{err}");
    assert!(
        err.contains("hostname") && err.contains("on-error"),
        "{err}"
    );
    let err = ctx
        .execute("CREATE SOURCE s WITH (connector = 'kafkaa')")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown connector 'kafkaa'")
            && err.contains("socket, stdin, files, kafka, sequence, nexmark, memory"),
        "{err}"
    );
    lines_source(&ctx).await;
    let err = ctx.sql("SELECT nope FROM lines").await.unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    assert_eq!(
        err.location().map(|l| (l.line, l.column)),
        Some((1, 8)),
        "{err}"
    );
    let err = ctx
        .execute("SET batch.interval = 'soon'")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid duration 'soon'"), "{err}");
    let err = ctx
        .execute("SET batch.intervall = '1 s'")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown setting 'batch.intervall'; valid settings: batch.interval"),
        "{err}"
    );
    // Window rules name the values (the batch interval here is 500 ms).
    let window_error = |group: &'static str| {
        let ctx = ctx.clone();
        async move {
            let sql = format!("SELECT count(*) FROM lines GROUP BY {group}");
            ctx.sql(&sql).await.unwrap_err().to_string()
        }
    };
    let err = window_error("hop(INTERVAL '3' SECOND, INTERVAL '2' SECOND)").await;
    assert!(
        err.contains("window slide 3 s is longer than its size 2 s"),
        "{err}"
    );
    let err = window_error("tumble(INTERVAL '750' MILLISECOND)").await;
    assert!(
        err.contains("window size 750 ms is not a multiple of the batch interval 500 ms"),
        "{err}"
    );
    let err = window_error("window('5 seconds', '2 seconds')").await;
    assert!(
        err.contains("window size 5 s is not a multiple of its slide 2 s"),
        "{err}"
    );
    let err = window_error("tumble(line, INTERVAL '1' SECOND)").await;
    assert!(err.contains("event-time window"), "{err}");
    let err = ctx.sql("SELECT 1").await.unwrap_err().to_string();
    assert!(err.contains("must read at least one stream"), "{err}");
}

#[tokio::test]
async fn queries_added_after_start_begin_at_the_next_batch() {
    let (ctx, clock) = manual_context();
    let lines = lines_source(&ctx).await;
    let first = ctx
        .sql("SELECT line FROM lines")
        .await
        .unwrap()
        .foreach_batch(|_, _| Ok(()))
        .unwrap();
    ctx.start().await.unwrap();
    clock.advance(Duration::from_millis(1_000));
    wait_for_batch(&first, 11_500).await;
    let mut stream = ctx
        .sql("SELECT line FROM lines")
        .await
        .unwrap()
        .into_stream()
        .unwrap();
    lines.push_records("now");
    clock.advance(Duration::from_millis(500));
    let (time, batch) = stream.next().await.unwrap().unwrap();
    assert_eq!(time, BatchTime::from_millis(12_000));
    assert_eq!(csv_rows(&batch), ["now"]);
}

#[tokio::test]
async fn a_socket_source_waits_for_an_absent_server_and_reconnects() {
    // Find a free port, and leave nothing listening on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let notices: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&notices);
    let refused = Arc::new(tokio::sync::Notify::new());
    let said_refused = Arc::clone(&refused);
    let ctx = StreamingContext::builder(Duration::from_millis(100))
        .notices(brooklet::Notices::new(move |m| {
            if m.contains("cannot connect") {
                said_refused.notify_one();
            }
            seen.lock().unwrap().push(m.to_string())
        }))
        .build()
        .unwrap();
    ctx.execute(&format!(
        "CREATE SOURCE lines (line TEXT) WITH (connector = 'socket', host = '127.0.0.1', port = {port})"
    ))
    .await
    .unwrap();
    let mut stream = ctx
        .sql("SELECT line FROM lines")
        .await
        .unwrap()
        .into_stream()
        .unwrap();
    ctx.start().await.unwrap();
    // Only once the source has found nobody listening does the server start.
    refused.notified().await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let mut received = Vec::new();
    // The server sends one line and drops the connection; the source reconnects.
    let (mut socket, _) = listener.accept().await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut socket, b"first\n")
        .await
        .unwrap();
    drop(socket);
    // The second connection stays open, so exactly one reconnect happens.
    let (mut socket, _) = listener.accept().await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut socket, b"second\n")
        .await
        .unwrap();
    while received.len() < 2 {
        let (_, batch) = stream.next().await.unwrap().unwrap();
        received.extend(csv_rows(&batch));
    }
    assert_eq!(received, ["first", "second"]);
    let info = ctx.engine().sources().remove(0);
    assert_eq!(info.metrics.reconnects, 1);
    let notices = notices.lock().unwrap().join("\n");
    assert!(
        notices.contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{notices}"
    );
    assert!(notices.contains("reconnected"), "{notices}");
}

/// A panic in a batch (here in a user callback) fails that query with an
/// error; the engine and the other queries go on.
#[tokio::test]
async fn a_panicking_callback_stops_its_query_not_the_engine() {
    let (ctx, clock) = crate::support::manual_context(0, Duration::from_secs(1));
    ctx.execute("CREATE SOURCE words (word TEXT) WITH (connector = 'memory')")
        .await
        .unwrap();
    let panicking = ctx
        .sql("SELECT word FROM words")
        .await
        .unwrap()
        .foreach_batch(|time, _| {
            if time.millis() == 2000 {
                panic!("boom at {time}");
            }
            Ok(())
        })
        .unwrap();
    let (healthy, outputs) =
        crate::support::record(ctx.sql("SELECT word FROM words").await.unwrap());
    ctx.start().await.unwrap();
    for batch in 1..=3 {
        ctx.memory_source("words").unwrap().push_records("w\n");
        clock.set(batch * 1000);
        crate::support::wait_for_batch(&healthy, batch * 1000).await;
    }
    let error = panicking.await_termination().await.unwrap_err().to_string();
    assert!(
        error.contains("the batch panicked: boom at 2000 ms"),
        "{error}"
    );
    assert_eq!(outputs.lock().unwrap().len(), 3, "the other query went on");
}

/// At parallelism 2 on an embedder's runtime (2 MiB worker stacks), a
/// 1 000-term chain is evaluated away from the batch's own poll: by a keyed
/// aggregate's tasks, and by the partitions DataFusion spawns for a
/// per-batch aggregate. Both run on deep stacks too, and give the output
/// of parallelism 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_expressions_run_in_tasks_and_partitions_on_an_ordinary_runtime() {
    let (ctx, clock) = support::manual_context(0, Duration::from_secs(1));
    ctx.execute(
        "SET parallelism = 2;
         CREATE SOURCE nums (n BIGINT) WITH (connector = 'memory', format = 'csv')",
    )
    .await
    .unwrap();
    let depth = 1_000;
    let chain = vec!["n"; depth].join(" + ");
    let query = format!("SELECT {chain} AS total, count(*) AS n FROM nums GROUP BY {chain}");
    let (running, running_rows) =
        support::record(ctx.sql(&format!("{query} EMIT CHANGES")).await.unwrap());
    let (per_batch, per_batch_rows) = support::record(ctx.sql(&query).await.unwrap());
    ctx.start().await.unwrap();
    ctx.memory_source("nums").unwrap().push_records("1\n2\n1\n");
    clock.set(1_000);
    support::wait_for_batch(&running, 1_000).await;
    support::wait_for_batch(&per_batch, 1_000).await;
    let expected = vec![format!("{depth},2"), format!("{},1", 2 * depth)];
    for rows in [running_rows, per_batch_rows] {
        let mut rows = rows.lock().unwrap()[0].1.clone();
        rows.sort();
        assert_eq!(rows, expected);
    }
}

/// An embedder's runtime has 2 MiB worker stacks: a 300-term chain (which
/// overflowed a worker's stack before) is planned and run on a deep stack
/// of the engine's own, and the output is exact; past the nesting limit
/// the statement is an error that names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_expressions_plan_and_run_on_an_ordinary_runtime() {
    let (ctx, clock) = support::manual_context(0, Duration::from_secs(1));
    ctx.execute("CREATE SOURCE nums (n BIGINT) WITH (connector = 'memory', format = 'csv')")
        .await
        .unwrap();
    let chain = vec!["n"; 300].join(" + ");
    let stream = ctx
        .sql(&format!("SELECT {chain} AS total FROM nums"))
        .await
        .unwrap();
    let (outputs, _) = support::run_batches(&ctx, &clock, stream, "nums", &["1\n2\n"]).await;
    assert_eq!(
        outputs,
        [(1_000, vec!["300".to_string(), "600".to_string()])]
    );
    let too_deep = vec!["n"; 1_001].join(" + ");
    let e = ctx
        .sql(&format!("SELECT {too_deep} FROM nums"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("the limit"), "{e}");
}
