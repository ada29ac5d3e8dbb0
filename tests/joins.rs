//! Joins through SQL and the Rust API, beyond the spec files: static tables
//! on real files (csv, json, parquet) re-read when they change, the joins
//! that are refused and why, and the DStream join methods.

use std::sync::Arc;
use std::time::Duration;

use brooklet::datafusion::arrow::array::{Int64Array, StringArray};
use brooklet::datafusion::arrow::datatypes::{DataType, Field, Schema};
use brooklet::datafusion::common::JoinType;
use brooklet::datafusion::datasource::MemTable;
use brooklet::prelude::*;

use crate::support::{manual_context, record, run_batches, wait_for_batch};

/// Replaces `path` with `text`, with a modification time that differs from
/// the file's before (as a writer replacing the file would).
fn rewrite(path: &std::path::Path, text: &str, seconds: u64) {
    let hidden = path.with_extension("part");
    std::fs::write(&hidden, text).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&hidden)
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(seconds))
        .unwrap();
    std::fs::rename(&hidden, path).unwrap();
}

async fn clicks(ctx: &StreamingContext) {
    ctx.execute(
        "CREATE SOURCE clicks (user_id BIGINT, url TEXT) WITH (connector = 'memory', format = 'csv')",
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_stream_joins_a_csv_table_and_sees_the_file_change() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.csv");
    rewrite(&users, "user_id,country\n1,FR\n2,DE\n", 1_000);
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    clicks(&ctx).await;
    let created = ctx
        .execute(&format!(
            "CREATE EXTERNAL TABLE users (user_id BIGINT, country TEXT) STORED AS CSV \
             LOCATION '{}' OPTIONS ('format.has_header' 'true')",
            users.display()
        ))
        .await
        .unwrap();
    assert!(format!("{created:?}").contains("2 rows"), "{created:?}");
    let query = ctx
        .sql("SELECT c.url, u.country FROM clicks c JOIN users u ON c.user_id = u.user_id")
        .await
        .unwrap();
    let (handle, outputs) = record(query);
    ctx.start().await.unwrap();
    let memory = ctx.memory_source("clicks").unwrap();
    memory.push_records("1,/a\n2,/b\n3,/c\n");
    clock.set(1000);
    wait_for_batch(&handle, 1000).await;
    // The file changes between batches: the next batch joins the new rows.
    rewrite(&users, "user_id,country\n1,IT\n3,ES\n", 2_000);
    memory.push_records("1,/d\n2,/e\n3,/f\n");
    clock.set(2000);
    wait_for_batch(&handle, 2000).await;
    // A half-written file does not parse: the rows read before stay.
    rewrite(&users, "user_id,country\nnot a number,IT\n", 3_000);
    memory.push_records("3,/g\n");
    clock.set(3000);
    wait_for_batch(&handle, 3000).await;
    let mut outputs = outputs.lock().unwrap().clone();
    for (_, rows) in &mut outputs {
        rows.sort();
    }
    assert_eq!(
        outputs,
        [
            (1000, vec!["/a,FR".to_string(), "/b,DE".to_string()]),
            (2000, vec!["/d,IT".to_string(), "/f,ES".to_string()]),
            (3000, vec!["/g,ES".to_string()]),
        ]
    );
    let table = &ctx.tables()[0];
    assert_eq!(
        (table.name.as_str(), table.rows, table.loads),
        ("users", Some(2), 2)
    );
    assert!(table.reloads_on_change);
    assert!(
        table
            .failed
            .as_deref()
            .unwrap_or("")
            .contains("not a number"),
        "{:?}",
        table.failed
    );
}

#[tokio::test]
async fn left_semi_and_anti_joins_with_a_json_table() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.json");
    std::fs::write(
        &users,
        "{\"user_id\": 1, \"country\": \"FR\"}\n{\"user_id\": 2, \"country\": \"DE\"}\n",
    )
    .unwrap();
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    clicks(&ctx).await;
    ctx.execute(&format!(
        "CREATE EXTERNAL TABLE users (user_id BIGINT, country TEXT) STORED AS JSON LOCATION '{}'",
        users.display()
    ))
    .await
    .unwrap();
    let queries = [
        "SELECT c.url, u.country FROM clicks c LEFT JOIN users u ON c.user_id = u.user_id",
        "SELECT c.url FROM clicks c LEFT SEMI JOIN users u ON c.user_id = u.user_id",
        "SELECT c.url FROM clicks c LEFT ANTI JOIN users u ON c.user_id = u.user_id",
        "SELECT url FROM clicks WHERE user_id NOT IN (SELECT user_id FROM users)",
    ];
    let mut recorded = Vec::new();
    for sql in queries {
        recorded.push(record(ctx.sql(sql).await.unwrap()));
    }
    ctx.start().await.unwrap();
    ctx.memory_source("clicks")
        .unwrap()
        .push_records("1,/a\n3,/c\n");
    clock.set(1000);
    for (handle, _) in &recorded {
        wait_for_batch(handle, 1000).await;
    }
    let rows: Vec<Vec<String>> = recorded
        .iter()
        .map(|(_, outputs)| {
            let mut rows = outputs.lock().unwrap()[0].1.clone();
            rows.sort();
            rows
        })
        .collect();
    assert_eq!(
        rows,
        [
            vec!["/a,FR".to_string(), "/c,".to_string()],
            vec!["/a".to_string()],
            vec!["/c".to_string()],
            vec!["/c".to_string()],
        ]
    );
}

#[tokio::test]
async fn a_parquet_table() {
    use brooklet::datafusion::parquet::arrow::ArrowWriter;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Int64, false),
        Field::new("country", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(StringArray::from(vec!["FR", "DE"])),
        ],
    )
    .unwrap();
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    clicks(&ctx).await;
    ctx.execute(&format!(
        "CREATE EXTERNAL TABLE users STORED AS PARQUET LOCATION '{}'",
        path.display()
    ))
    .await
    .unwrap();
    let query = ctx
        .sql("SELECT c.url, u.country FROM clicks c JOIN users u ON c.user_id = u.user_id")
        .await
        .unwrap();
    let (outputs, _) = run_batches(&ctx, &clock, query, "clicks", &["2,/b\n5,/x\n"]).await;
    assert_eq!(outputs, [(1000, vec!["/b,DE".to_string()])]);
}

/// The error a query gets at planning time.
/// Memory sources `names` of csv records with `columns`, each with a
/// watermark on its `ts`.
async fn memory_sources(ctx: &StreamingContext, names: &[&str], columns: &str) {
    for source in names {
        ctx.execute(&format!(
            "CREATE SOURCE {source} ({columns}, WATERMARK FOR ts) \
             WITH (connector = 'memory', format = 'csv')"
        ))
        .await
        .unwrap();
    }
}

async fn refused(ctx: &StreamingContext, sql: &str) -> String {
    match ctx.sql(sql).await {
        Ok(_) => panic!("accepted: {sql}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn joins_that_would_be_silently_wrong_are_refused_with_the_reason() {
    let (ctx, _clock) = manual_context(0, Duration::from_secs(1));
    memory_sources(&ctx, &["a", "b"], "k TEXT, ts TIMESTAMP NOT NULL").await;
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.csv");
    std::fs::write(&table, "k\nx\n").unwrap();
    ctx.execute(&format!(
        "CREATE EXTERNAL TABLE t (k TEXT) STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
        table.display()
    ))
    .await
    .unwrap();
    let tumble = |s: &str, size: u32| {
        format!("TABLE(TUMBLE(TABLE {s}, DESCRIPTOR(ts), INTERVAL '{size}' SECOND))")
    };
    let cases = [
        (
            "SELECT a.k FROM a JOIN b ON a.k = b.k AND b.ts >= a.ts".to_string(),
            "needs a lower and an upper bound",
        ),
        (
            "SELECT a.k FROM a, b WHERE a.k = b.k AND b.ts >= a.ts".to_string(),
            "needs a lower and an upper bound",
        ),
        (
            "SELECT a.k FROM a LEFT JOIN b ON a.k = b.k WHERE b.ts BETWEEN a.ts AND a.ts + INTERVAL '1' SECOND"
                .to_string(),
            "in the join's ON clause",
        ),
        (
            "SELECT a.k FROM a FULL JOIN b ON a.k = b.k AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '1' SECOND"
                .to_string(),
            "inner or LEFT",
        ),
        (
            "SELECT a.k FROM a LEFT JOIN b ON a.k = b.k EMIT CHANGES".to_string(),
            "a running join is an inner join",
        ),
        (
            format!(
                "SELECT x.k FROM {} x JOIN {} y ON x.k = y.k AND x.window_start = y.window_start \
                 AND x.window_end = y.window_end",
                tumble("a", 10),
                tumble("b", 5)
            ),
            "the same window on both sides",
        ),
        (
            format!("SELECT x.k FROM {} x JOIN b ON x.k = b.k", tumble("a", 10)),
            "the same window on both sides",
        ),
        (
            format!(
                "SELECT x.k FROM {} x JOIN {} y ON x.k = y.k",
                tumble("a", 10),
                tumble("b", 10)
            ),
            "ON the windows' bounds",
        ),
        (
            "SELECT x.k FROM (SELECT k, count(*) AS n FROM a GROUP BY session(ts, INTERVAL '5' SECOND), k) x \
             JOIN (SELECT k, count(*) AS n FROM b GROUP BY session(ts, INTERVAL '5' SECOND), k) y ON x.k = y.k"
                .to_string(),
            "session windows are not joined",
        ),
        (
            "SELECT a.k FROM a JOIN b ON a.k = b.k \
             AND NOT (b.ts < a.ts OR b.ts > a.ts + INTERVAL '1' SECOND)"
                .to_string(),
            "not read as interval bounds",
        ),
        (
            "SELECT a.k FROM a JOIN b ON a.k = b.k AND b.ts <> a.ts".to_string(),
            "not read as interval bounds",
        ),
        (
            "SELECT a.k FROM a RIGHT JOIN t ON a.k = t.k".to_string(),
            "unmatched rows with every batch",
        ),
        (
            "SELECT a.k FROM a FULL JOIN t ON a.k = t.k".to_string(),
            "unmatched rows with every batch",
        ),
    ];
    for (sql, reason) in cases {
        let error = refused(&ctx, &sql).await;
        assert!(error.contains(reason), "{sql}\n  gave: {error}");
    }
}

#[tokio::test]
async fn every_spelling_of_the_same_time_bounds_plans_the_same_interval_join() {
    let (ctx, _clock) = manual_context(0, Duration::from_secs(1));
    memory_sources(&ctx, &["a", "b"], "k BIGINT, ts BIGINT NOT NULL").await;
    memory_sources(&ctx, &["c", "d"], "k BIGINT, ts TIMESTAMP NOT NULL").await;
    let spellings = [
        "b.ts BETWEEN a.ts AND a.ts + 1000",
        "b.ts BETWEEN a.ts AND 1000 + a.ts",
        "b.ts BETWEEN a.ts AND a.ts + 2 * 500",
        "b.ts BETWEEN a.ts AND a.ts + CAST(1000 AS BIGINT)",
        "a.ts <= b.ts AND 1000 + a.ts >= b.ts",
        "b.ts - a.ts BETWEEN 0 AND 1000",
        "b.ts - a.ts >= 0 AND b.ts - a.ts <= 1000",
        "0 <= b.ts - a.ts AND 1000 >= b.ts - a.ts",
        "a.ts - b.ts BETWEEN -1000 AND 0",
        "(b.ts + 500) - a.ts BETWEEN 500 AND 1500",
        "d.ts BETWEEN c.ts AND INTERVAL '1' SECOND + c.ts",
        "d.ts - c.ts BETWEEN INTERVAL '0' SECOND AND INTERVAL '1' SECOND",
    ];
    for condition in spellings {
        let (a, b) = if condition.starts_with('d') {
            ("c", "d")
        } else {
            ("a", "b")
        };
        let sql =
            format!("EXPLAIN SELECT {a}.k FROM {a} JOIN {b} ON {a}.k = {b}.k AND {condition}");
        let shown = match ctx.execute(&sql).await {
            Ok(executed) => match executed.as_slice() {
                [Executed::Shown(text)] => text.clone(),
                other => panic!("{condition}: {other:?}"),
            },
            Err(e) => panic!("{condition}: {e}"),
        };
        assert!(
            shown.contains("interval join")
                && shown.contains(&format!("{b}.ts - {a}.ts between 0 ms and 1000 ms")),
            "{condition}:\n{shown}"
        );
    }
}

#[tokio::test]
async fn the_rust_api_joins_streams_and_tables() {
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    for (name, columns) in [
        ("orders", "id BIGINT, ts BIGINT NOT NULL"),
        ("payments", "order_id BIGINT, ts BIGINT NOT NULL"),
    ] {
        ctx.execute(&format!(
            "CREATE SOURCE {name} ({columns}) WITH (connector = 'memory', format = 'csv')"
        ))
        .await
        .unwrap();
        ctx.engine()
            .set_watermark(name, Watermark::new("ts", Duration::ZERO))
            .unwrap();
    }
    let names = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
    ]));
    let table = MemTable::try_new(
        names.clone(),
        vec![vec![
            RecordBatch::try_new(
                names,
                vec![
                    Arc::new(Int64Array::from(vec![1, 2])),
                    Arc::new(StringArray::from(vec!["one", "two"])),
                ],
            )
            .unwrap(),
        ]],
    )
    .unwrap();
    ctx.register_table("names", Arc::new(table)).unwrap();
    let orders = ctx.source("orders").unwrap();
    let payments = ctx.source("payments").unwrap();
    let on = col("o.id").eq(col("p.order_id"));
    let condition = |join_type| JoinCondition {
        join_type,
        left_alias: "o".into(),
        right_alias: "p".into(),
        on: on.clone(),
    };
    let per_batch = orders.join(&payments, "o", "p", on.clone()).unwrap();
    let left = orders.left_join(&payments, "o", "p", on.clone()).unwrap();
    let interval = orders
        .interval_join(
            &payments,
            condition(JoinType::Inner),
            "ts",
            "ts",
            IntervalBounds::new(0, 5000),
        )
        .unwrap();
    let named = orders
        .join_table(
            "names",
            col("orders.id").eq(col("names.id")),
            JoinType::Inner,
        )
        .unwrap();
    assert_eq!(
        interval
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>(),
        ["id", "o.ts", "order_id", "p.ts"]
    );
    let recorded: Vec<_> = [per_batch, left, interval, named]
        .into_iter()
        .map(record)
        .collect();
    ctx.start().await.unwrap();
    let feed = [("1,1000\n2,1000\n", "1,1500\n"), ("", "2,3000\n")];
    for (i, (o, p)) in feed.iter().enumerate() {
        ctx.memory_source("orders").unwrap().push_records(o);
        ctx.memory_source("payments").unwrap().push_records(p);
        let time = 1000 * (i as i64 + 1);
        clock.set(time);
        for (handle, _) in &recorded {
            wait_for_batch(handle, time).await;
        }
    }
    let rows: Vec<Vec<(i64, Vec<String>)>> = recorded
        .iter()
        .map(|(_, outputs)| {
            let mut outputs = outputs.lock().unwrap().clone();
            for (_, rows) in &mut outputs {
                rows.sort();
            }
            outputs
        })
        .collect();
    let batch = |time: i64, rows: &[&str]| (time, rows.iter().map(|r| r.to_string()).collect());
    assert_eq!(
        rows[0],
        [batch(1000, &["1,1000,1,1500"]), batch(2000, &[])],
        "per batch"
    );
    assert_eq!(
        rows[1],
        [
            batch(1000, &["1,1000,1,1500", "2,1000,,"]),
            batch(2000, &[])
        ],
        "left, per batch"
    );
    assert_eq!(
        rows[2],
        [
            batch(1000, &["1,1000,1,1500"]),
            batch(2000, &["2,1000,2,3000"])
        ],
        "interval"
    );
    assert_eq!(
        rows[3],
        [
            batch(1000, &["1,1000,1,one", "2,1000,2,two"]),
            batch(2000, &[])
        ],
        "table"
    );
}
