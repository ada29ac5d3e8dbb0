//! The `files` source and sink on real directories: which batch takes a
//! file (its modification time, or the first batch after a late one
//! appears), `files.existing`, malformed records named by file and line,
//! and one atomically written file per batch with rows.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use brooklet::StopMode;
use brooklet::datafusion::arrow::array::RecordBatch;

use crate::support::{manual_context, record, wait_for_batch};

/// Writes `text` to `dir/name` with modification time `millis`.
fn put(dir: &Path, name: &str, text: &str, millis: u64) {
    crate::support::put(dir, name, text.as_bytes(), millis);
}

#[tokio::test]
async fn each_batch_takes_the_files_of_its_interval() {
    let input = tempfile::tempdir().unwrap();
    let dir = input.path();
    put(dir, "a.txt", "existing 1\nexisting 2\n", 500);
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    ctx.execute(&format!(
        "CREATE SOURCE logs (line TEXT) WITH (connector = 'files', path = '{}')",
        dir.display()
    ))
    .await
    .unwrap();
    let (handle, outputs) = record(ctx.sql("SELECT line FROM logs").await.unwrap());
    ctx.start().await.unwrap();
    let step = |batch: i64| {
        clock.set(batch * 1000);
        wait_for_batch(&handle, batch * 1000)
    };
    step(1).await;
    put(dir, "b.txt", "second\n", 1500);
    put(dir, "c.txt", "from the future\n", 5000);
    put(dir, ".hidden", "never\n", 1500);
    step(2).await;
    step(3).await;
    // Renamed in late: its time (1.2 s) has passed, so the next batch takes it.
    put(dir, "d.txt", "late\n", 1200);
    step(4).await;
    step(5).await;
    // A taken file that is removed and written again is a new file.
    std::fs::remove_file(dir.join("b.txt")).unwrap();
    step(6).await;
    put(dir, "b.txt", "again\n", 6500);
    step(7).await;
    let outputs = outputs.lock().unwrap().clone();
    let expected: Vec<(i64, Vec<&str>)> = vec![
        (1000, vec!["existing 1", "existing 2"]),
        (2000, vec!["second"]),
        (3000, vec![]),
        (4000, vec!["late"]),
        (5000, vec!["from the future"]),
        (6000, vec![]),
        (7000, vec!["again"]),
    ];
    let expected: Vec<(i64, Vec<String>)> = expected
        .into_iter()
        .map(|(t, rows)| (t, rows.into_iter().map(String::from).collect()))
        .collect();
    assert_eq!(outputs, expected);
}

#[tokio::test]
async fn existing_files_can_be_ignored_and_bad_records_name_their_file() {
    let input = tempfile::tempdir().unwrap();
    let dir = input.path();
    put(dir, "old.csv", "1,old\n", 500);
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    ctx.execute(&format!(
        "CREATE SOURCE rows (n BIGINT, word TEXT) WITH (connector = 'files', path = '{}', \
         format = 'csv', files.existing = 'ignore')",
        dir.display()
    ))
    .await
    .unwrap();
    let (handle, outputs) = record(ctx.sql("SELECT n, word FROM rows").await.unwrap());
    ctx.start().await.unwrap();
    clock.set(1000);
    wait_for_batch(&handle, 1000).await;
    put(dir, "new.csv", "2,new\nthree,bad\n", 1500);
    clock.set(2000);
    let error = handle.await_termination().await.unwrap_err().to_string();
    let path = dir.join("new.csv");
    assert!(
        error.contains(&format!(
            "malformed record at file {}, line 2",
            path.display()
        )),
        "{error}"
    );
    assert_eq!(outputs.lock().unwrap().clone(), vec![(1000, vec![])]);
}

/// A Parquet file as bytes, with one column `k` of `column`'s type.
fn parquet_of(column: brooklet::datafusion::arrow::array::ArrayRef) -> Vec<u8> {
    use brooklet::datafusion::parquet::arrow::ArrowWriter;
    let batch = RecordBatch::try_from_iter([("k", column)]).unwrap();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    bytes
}

#[tokio::test]
async fn a_parquet_file_that_does_not_read_as_declared_is_one_malformed_record() {
    use brooklet::datafusion::arrow::array::{Int64Array, StringArray};
    let input = tempfile::tempdir().unwrap();
    let dir = input.path();
    let good = parquet_of(Arc::new(Int64Array::from(vec![1, 2])));
    // A value that does not cast once became a NULL, silently.
    let bad = parquet_of(Arc::new(StringArray::from(vec!["3", "zz"])));
    crate::support::put(dir, "a-good.parquet", &good, 500);
    crate::support::put(dir, "b-bad.parquet", &bad, 500);
    crate::support::put(dir, "c-broken.parquet", b"not parquet at all", 500);
    let letters = tempfile::tempdir().unwrap();
    let dead = letters.path().join("dead.jsonl");
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    ctx.execute(&format!(
        "CREATE SOURCE t (k BIGINT) WITH (connector = 'files', path = '{}', format = 'parquet', \
         on-error = 'dead-letter', dead-letter.path = '{}')",
        dir.display(),
        dead.display()
    ))
    .await
    .unwrap();
    let (handle, outputs) = record(ctx.sql("SELECT k FROM t").await.unwrap());
    ctx.start().await.unwrap();
    clock.set(1000);
    wait_for_batch(&handle, 1000).await;
    assert_eq!(
        outputs.lock().unwrap().clone(),
        vec![(1000, vec!["1".to_string(), "2".to_string()])]
    );
    let letters: Vec<serde_json::Value> = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 2, "{letters:?}");
    let text = format!("{letters:?}");
    assert!(
        text.contains("b-bad.parquet") && text.contains("cannot be read as Int64"),
        "{text}"
    );
    assert!(
        text.contains("c-broken.parquet") && text.contains("not a readable Parquet file"),
        "{text}"
    );
    ctx.stop(StopMode::Graceful).await.unwrap();
}

#[tokio::test]
async fn the_files_sink_writes_one_complete_file_per_batch_with_rows() {
    let output = tempfile::tempdir().unwrap();
    let out = output.path().join("out");
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    ctx.execute(&format!(
        "CREATE SOURCE words (word TEXT) WITH (connector = 'memory');
         CREATE SINK counts WITH (connector = 'files', path = '{}', format = 'csv')",
        out.display()
    ))
    .await
    .unwrap();
    let executed = ctx
        .execute("INSERT INTO counts SELECT word, count(*) AS n FROM words GROUP BY word")
        .await
        .unwrap();
    let Some(brooklet::Executed::Insert(handle)) = executed.into_iter().next() else {
        panic!("INSERT INTO starts a query");
    };
    ctx.start().await.unwrap();
    let words = ctx.memory_source("words").unwrap();
    for (batch, text) in ["a\nb\na\n", "", "c\n"].iter().enumerate() {
        words.push_records(text);
        let time = 1000 * (batch as i64 + 1);
        clock.set(time);
        wait_for_batch(&handle, time).await;
    }
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["1000.csv", "3000.csv"],
        "no file for the empty batch, no temporary left"
    );
    let first = std::fs::read_to_string(out.join("1000.csv")).unwrap();
    let mut lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.remove(0), "word,n");
    lines.sort();
    assert_eq!(lines, ["a,2", "b,1"]);
    assert_eq!(
        std::fs::read_to_string(out.join("3000.csv")).unwrap(),
        "word,n\nc,1\n"
    );
}

/// With state saved every 3 batches, a restart runs again the batches
/// after the last state; each takes exactly the files the offset log says
/// it took — here a file that appeared late goes again to the batch that
/// took it, not to the first batch that could see it.
#[tokio::test]
async fn a_batch_that_runs_again_takes_the_files_it_took_the_first_time() {
    let input = tempfile::tempdir().unwrap();
    let checkpoint = tempfile::tempdir().unwrap();
    let dir = input.path();
    let start = |millis: i64| {
        let (ctx, clock) = manual_context(millis, Duration::from_secs(1));
        let checkpoint = checkpoint.path().to_path_buf();
        async move {
            ctx.execute(&format!(
                "SET checkpoint.dir = '{}'; SET checkpoint.interval = 3;
                 CREATE SOURCE logs (line TEXT) WITH (connector = 'files', path = '{}')",
                checkpoint.display(),
                dir.display()
            ))
            .await
            .unwrap();
            let (handle, outputs) = record(ctx.sql("SELECT line FROM logs").await.unwrap());
            ctx.start().await.unwrap();
            (ctx, clock, handle, outputs)
        }
    };
    put(dir, "a.txt", "first\n", 500);
    let (ctx, clock, handle, outputs) = start(0).await;
    for batch in 1..=5 {
        if batch == 5 {
            // Appears at batch 5 with a time of batch 4.
            put(dir, "late.txt", "late\n", 3500);
        }
        clock.set(batch * 1000);
        wait_for_batch(&handle, batch * 1000).await;
    }
    assert_eq!(outputs.lock().unwrap()[4], (5000, vec!["late".to_string()]));
    // Killed: no state after batch 3.
    ctx.stop(StopMode::Immediate).await.unwrap();

    let (ctx, clock, handle, outputs) = start(5000).await;
    wait_for_batch(&handle, 5000).await;
    put(dir, "b.txt", "second\n", 5500);
    clock.set(6000);
    wait_for_batch(&handle, 6000).await;
    assert_eq!(
        outputs.lock().unwrap().clone(),
        vec![
            (4000, vec![]),
            (5000, vec!["late".to_string()]),
            (6000, vec!["second".to_string()]),
        ]
    );
    ctx.stop(StopMode::Immediate).await.unwrap();
}
