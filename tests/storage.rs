//! Object storage through the Rust API, on a real S3 API server (moto,
//! started per test, killed by PID): CSV objects in, Parquet objects out
//! (one per batch), read back by a second query as a Parquet files source,
//! with the checkpoint in the bucket too, and as a static table
//! (`CREATE EXTERNAL TABLE … LOCATION 's3://…'`).

use std::time::Duration;

use crate::s3_server::S3Server;
use crate::support::{manual_context, record, wait_for_batch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_objects_become_parquet_objects_that_a_second_query_reads_back() {
    let server = S3Server::start();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Object times are the server's clock, in whole seconds: the manual
    // clock starts at the current second so that batches meet them.
    let start = now / 1000 * 1000;
    let (ctx, clock) = manual_context(start, Duration::from_secs(1));
    for (key, value) in server.options() {
        ctx.execute(&format!("SET s3.{key} = '{value}'"))
            .await
            .unwrap();
    }
    ctx.checkpoint(server.url("checkpoint/"));
    server
        .dir("in")
        .write("a.csv", b"1,one\n2,two\n".to_vec())
        .unwrap();
    ctx.execute(&format!(
        "CREATE SOURCE words (n BIGINT, word TEXT) WITH (connector = 'files', path = '{}', format = 'csv');
         CREATE SINK tens WITH (connector = 'files', path = '{}', format = 'parquet');
         INSERT INTO tens SELECT n * 10 AS n, upper(word) AS word FROM words;
         CREATE SOURCE back (word TEXT, n BIGINT) WITH (connector = 'files', path = '{}', format = 'parquet');",
        server.url("in/"),
        server.url("tens/"),
        server.url("tens/"),
    ))
    .await
    .unwrap();
    let (handle, outputs) = record(ctx.sql("SELECT word, n FROM back").await.unwrap());
    ctx.start().await.unwrap();
    for batch in 1..=4 {
        clock.set(start + batch * 1000);
        wait_for_batch(&handle, start + batch * 1000).await;
    }
    // The batch that took a.csv wrote one Parquet object, named by its time.
    let written = server.dir("tens").list().unwrap();
    assert_eq!(written.len(), 1, "{written:?}");
    assert!(written[0].name.ends_with(".parquet"), "{written:?}");
    let mut rows: Vec<String> = outputs
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(_, rows)| rows.clone())
        .collect();
    rows.sort();
    assert_eq!(rows, ["ONE,10", "TWO,20"]);
    // The checkpoint went to the bucket, one directory per query.
    let checkpoint = server.dir("checkpoint");
    let queries: Vec<String> = ctx.queries().iter().map(|q| q.name().to_string()).collect();
    for query in queries {
        let commit = checkpoint.join(&query).read("commit").unwrap();
        let commit = String::from_utf8(commit.expect("a commit object").to_vec()).unwrap();
        assert!(commit.contains("\"committed\""), "{commit}");
    }
    // A static table over the same objects, in DataFusion's own syntax.
    ctx.execute(&format!(
        "CREATE EXTERNAL TABLE tens_table STORED AS PARQUET LOCATION '{}'",
        server.url("tens/")
    ))
    .await
    .unwrap();
    let table = ctx
        .tables()
        .into_iter()
        .find(|t| t.name == "tens_table")
        .unwrap();
    assert_eq!(table.rows, Some(2));
    ctx.stop(brooklet::StopMode::Graceful).await.unwrap();
}
