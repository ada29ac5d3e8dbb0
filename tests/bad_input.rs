//! Bad input: 100 000 CSV lines, 1 % malformed across the kinds (wrong
//! field count, a non-number, invalid UTF-8, an over-long line, a timestamp
//! out of range), with CRLF endings, blank lines and NUL bytes among the
//! good ones, under each error policy: no panic, counts exact by kind, the
//! dead-letter file lists every bad line with its position, and the good
//! records' output equals that of the clean subset.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::{manual_context, record};

const LINES: usize = 100_000;

/// The input's bytes, the kind of each bad line by line number, and the
/// clean subset's count and sum of `n` per word.
type Input = (
    Vec<u8>,
    BTreeMap<u64, &'static str>,
    BTreeMap<String, (u64, i64)>,
);

/// The input (see [`Input`]).
fn input() -> Input {
    let kinds = ["field_count", "value", "utf8", "too_long", "value"];
    let mut text = Vec::new();
    let mut bad = BTreeMap::new();
    let mut clean: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    let mut line = 0u64;
    for i in 0..LINES {
        line += 1;
        if i % 100 == 37 {
            let kind = kinds[(i / 100) % kinds.len()];
            match (i / 100) % kinds.len() {
                0 => text.extend_from_slice(format!("{i},only two\n").as_bytes()),
                1 => text.extend_from_slice(format!("x{i},w,2020-01-01T00:00:00\n").as_bytes()),
                2 => {
                    text.extend_from_slice(format!("{i},bad ").as_bytes());
                    text.extend_from_slice(&[0xff, 0xfe]);
                    text.extend_from_slice(b",2020-01-01T00:00:00\n");
                }
                3 => text.extend_from_slice(
                    format!("{i},{},2020-01-01T00:00:00\n", "y".repeat(300)).as_bytes(),
                ),
                _ => text.extend_from_slice(format!("{i},w,99999-99-99T00:00:00\n").as_bytes()),
            }
            bad.insert(line, kind);
            continue;
        }
        let word = match i % 3 {
            0 => "plain".to_string(),
            1 => "with\0nul".to_string(),
            _ => "crlf".to_string(),
        };
        let end = if i % 3 == 2 { "\r\n" } else { "\n" };
        text.extend_from_slice(
            format!("{i},{word},2020-01-01T00:00:{:02}{end}", i % 60).as_bytes(),
        );
        let entry = clean.entry(word).or_default();
        entry.0 += 1;
        entry.1 += i as i64;
        if i % 1000 == 999 {
            // A blank line is no record (and no error).
            text.extend_from_slice(b"\n");
            line += 1;
        }
    }
    (text, bad, clean)
}

/// Runs `SELECT word, count(*), sum(n)` over the CSV input under `policy`;
/// returns the rows, or the error.
async fn run(
    policy: &str,
    dead_letter: Option<&std::path::Path>,
) -> (Result<Vec<String>, String>, brooklet::SourceInfo) {
    let (text, _, _) = input_cached();
    run_format(
        "csv",
        "n BIGINT, word TEXT, ts TIMESTAMP",
        "SELECT word, count(*) AS c, sum(n) AS s FROM rows GROUP BY word",
        text,
        policy,
        dead_letter,
    )
    .await
}

/// Runs `query` over `text` in a file of `format` decoded into `columns`.
async fn run_format(
    format: &str,
    columns: &str,
    query: &str,
    text: &[u8],
    policy: &str,
    dead_letter: Option<&std::path::Path>,
) -> (Result<Vec<String>, String>, brooklet::SourceInfo) {
    run_format_at(1, format, columns, query, text, policy, dead_letter).await
}

/// [`run_format`] at `parallelism` (which decodes the file in that many
/// parts).
async fn run_format_at(
    parallelism: usize,
    format: &str,
    columns: &str,
    query: &str,
    text: &[u8],
    policy: &str,
    dead_letter: Option<&std::path::Path>,
) -> (Result<Vec<String>, String>, brooklet::SourceInfo) {
    let input = tempfile::tempdir().unwrap();
    crate::support::put(input.path(), "data.csv", text, 500);
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    ctx.execute(&format!("SET parallelism = {parallelism}"))
        .await
        .unwrap();
    let dead = dead_letter.map_or(String::new(), |p| {
        format!(", dead-letter.path = '{}'", p.display())
    });
    ctx.execute(&format!(
        "CREATE SOURCE rows ({columns}) WITH (connector = 'files', \
         path = '{}', format = '{format}', max.record.bytes = 200, on-error = '{policy}'{dead})",
        input.path().display()
    ))
    .await
    .unwrap();
    let stream = ctx.sql(query).await.unwrap();
    let (handle, outputs) = record(stream);
    ctx.start().await.unwrap();
    clock.set(1000);
    let _ = handle
        .await_batch(brooklet::BatchTime::from_millis(1000))
        .await;
    let result = match handle.status() {
        brooklet::QueryStatus::Failed(e) => Err(e.to_string()),
        _ => {
            let mut rows = outputs.lock().unwrap()[0].1.clone();
            rows.sort();
            Ok(rows)
        }
    };
    let info = ctx.engine().sources().pop().unwrap();
    (result, info)
}

fn input_cached() -> &'static Input {
    static INPUT: std::sync::OnceLock<Input> = std::sync::OnceLock::new();
    INPUT.get_or_init(input)
}

fn clean_rows() -> Vec<String> {
    let (_, _, clean) = input_cached();
    let mut rows: Vec<String> = clean
        .iter()
        .map(|(word, (c, s))| format!("{word},{c},{s}"))
        .collect();
    rows.sort();
    rows
}

fn kinds_expected() -> BTreeMap<String, u64> {
    let (_, bad, _) = input_cached();
    let mut kinds = BTreeMap::new();
    for kind in bad.values() {
        *kinds.entry(kind.to_string()).or_default() += 1;
    }
    kinds
}

#[tokio::test]
async fn skip_counts_every_bad_line_by_kind_and_keeps_every_good_one() {
    let (rows, info) = run("skip", None).await;
    assert_eq!(rows.unwrap(), clean_rows());
    assert_eq!(info.metrics.malformed, 1000);
    assert_eq!(info.metrics.malformed_by_kind, kinds_expected());
}

#[tokio::test]
async fn dead_letter_lists_every_bad_line_with_its_position() {
    let out = tempfile::tempdir().unwrap();
    let dead = out.path().join("dead.jsonl");
    let (rows, info) = run("dead-letter", Some(&dead)).await;
    assert_eq!(rows.unwrap(), clean_rows());
    assert_eq!(info.metrics.malformed_by_kind, kinds_expected());
    let (_, bad, _) = input_cached();
    let letters: Vec<serde_json::Value> = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let listed: BTreeMap<u64, String> = letters
        .iter()
        .map(|l| {
            (
                l["line"].as_u64().unwrap(),
                l["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: BTreeMap<u64, String> = bad.iter().map(|(l, k)| (*l, k.to_string())).collect();
    assert_eq!(
        listed, expected,
        "every bad line, by line number, with its kind"
    );
    let utf8 = letters.iter().find(|l| l["kind"] == "utf8").unwrap();
    assert!(
        utf8["record_hex"].as_str().unwrap().contains("fffe"),
        "{utf8}"
    );
    assert!(
        letters
            .iter()
            .all(|l| l["file"].as_str().unwrap().ends_with("data.csv"))
    );
}

#[tokio::test]
async fn fail_stops_at_the_first_bad_line_with_its_position() {
    let (rows, info) = run("fail", None).await;
    let error = rows.unwrap_err();
    assert!(error.contains("data.csv, line 38 (byte offset"), "{error}");
    assert!(
        error.contains("on-error = 'skip' or 'dead-letter'"),
        "{error}"
    );
    assert_eq!(info.metrics.malformed, 1);
}

/// JSON lines and plain lines, 1 % malformed across the kinds each format
/// can have: counts exact by kind, the good records' output that of the
/// clean subset.
#[tokio::test]
async fn json_and_lines_count_their_bad_records_by_kind() {
    let mut json = Vec::new();
    let mut lines = Vec::new();
    let (mut clean_json, mut clean_lines) = (0i64, 0u64);
    let mut kinds: [BTreeMap<String, u64>; 2] = Default::default();
    for i in 0..20_000i64 {
        if i % 100 == 37 {
            let (json_bad, json_kind): (Vec<u8>, &str) = match (i / 100) % 4 {
                0 => (b"[1, 2]".to_vec(), "json"),
                1 => (format!("{{\"n\": \"x{i}\"}}").into_bytes(), "value"),
                2 => (
                    [b"{\"n\": 1, \"s\": \"".as_slice(), &[0xff], b"\"}"].concat(),
                    "utf8",
                ),
                _ => (
                    format!("{{\"n\": {i}, \"s\": \"{}\"}}", "y".repeat(300)).into_bytes(),
                    "too_long",
                ),
            };
            json.extend_from_slice(&json_bad);
            json.push(b'\n');
            *kinds[0].entry(json_kind.into()).or_default() += 1;
            if i % 200 == 37 {
                lines.extend_from_slice(&[b'a', 0xff, b'\n']);
                *kinds[1].entry("utf8".into()).or_default() += 1;
            } else {
                lines.extend_from_slice(format!("{}\n", "z".repeat(250)).as_bytes());
                *kinds[1].entry("too_long".into()).or_default() += 1;
            }
            continue;
        }
        json.extend_from_slice(format!("{{\"n\": {i}, \"s\": \"ok\"}}\n").as_bytes());
        clean_json += i;
        lines.extend_from_slice(format!("line {i}\r\n").as_bytes());
        clean_lines += 1;
    }
    let (rows, info) = run_format(
        "json",
        "n BIGINT, s TEXT",
        "SELECT sum(n) AS s FROM rows",
        &json,
        "skip",
        None,
    )
    .await;
    assert_eq!(rows.unwrap(), [clean_json.to_string()]);
    assert_eq!(info.metrics.malformed_by_kind, kinds[0]);
    let (rows, info) = run_format(
        "lines",
        "line TEXT",
        "SELECT count(*) AS c FROM rows WHERE line LIKE 'line %'",
        &lines,
        "skip",
        None,
    )
    .await;
    assert_eq!(rows.unwrap(), [clean_lines.to_string()]);
    assert_eq!(info.metrics.malformed_by_kind, kinds[1]);
}

#[tokio::test]
async fn bad_lines_have_the_same_positions_and_counts_at_every_parallelism() {
    // 100 000 lines (4 MB, one file) decoded in four parts at once at
    // parallelism 4: the bad lines are in the first and the last part,
    // which decode in input order; the two parts between decode in
    // parallel.
    const BAD: [usize; 4] = [7, 20, 99_990, 99_991];
    let mut text = Vec::new();
    for i in 0..100_000 {
        let line = match BAD.iter().position(|&b| b == i) {
            Some(0) => format!("{i},only two\n"),
            Some(1) => format!("x{i},w,2020-01-01T00:00:00\n"),
            Some(_) => format!("{i},{},2020-01-01T00:00:00\n", "y".repeat(300)),
            None => format!("{i},w{},2020-01-01T00:00:{:02}\n", i % 7, i % 60),
        };
        text.extend_from_slice(line.as_bytes());
    }
    let out = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for parallelism in [1, 4] {
        let dead = out.path().join(format!("dead-{parallelism}.jsonl"));
        let (rows, info) = run_format_at(
            parallelism,
            "csv",
            "n BIGINT, word TEXT, ts TIMESTAMP",
            "SELECT word, count(*) AS c, sum(n) AS s FROM rows GROUP BY word",
            &text,
            "dead-letter",
            Some(&dead),
        )
        .await;
        // Each run reads its own temporary file: its path is left out.
        let letters: Vec<serde_json::Value> = std::fs::read_to_string(&dead)
            .unwrap()
            .lines()
            .map(|l| {
                let mut letter: serde_json::Value = serde_json::from_str(l).unwrap();
                letter.as_object_mut().unwrap().remove("file");
                letter
            })
            .collect();
        runs.push((rows.unwrap(), info.metrics.malformed_by_kind, letters));
    }
    let lines: Vec<u64> = runs[0]
        .2
        .iter()
        .map(|l| l["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, BAD.map(|i| i as u64 + 1));
    assert_eq!(runs[0], runs[1], "parallelism 1, then 4");
}
