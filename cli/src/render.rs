//! How the binary shows errors (with a caret under the token), `\d`
//! (sources, tables, sinks, queries; `\d NAME` one of them), and progress
//! lines.

use std::fmt::Write as _;

use brooklet::{
    BatchInfo, SourceInfo, SourceMetricsSnapshot, StreamingContext, TableInfo, format_duration,
};

/// The error with its whole chain, and, when it has a position in `text`,
/// the line with a `^` under the column (`origin` names the file).
pub fn error(
    err: &(dyn std::error::Error + 'static),
    location: Option<brooklet::Location>,
    text: &str,
    origin: &str,
) -> String {
    let mut out = format!("error: {err}");
    let mut seen = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !seen.contains(&message) {
            let _ = write!(out, "\n  caused by: {message}");
            seen.push_str(&message);
        }
        source = cause.source();
    }
    if let Some(location) = location
        && let Some(line_text) = text.lines().nth((location.line.max(1) - 1) as usize)
    {
        let number = location.line.to_string();
        let pad = " ".repeat(number.len());
        let (line_text, column) = clip(line_text, location.column.max(1) as usize - 1);
        let caret = " ".repeat(column);
        let _ = write!(
            out,
            "\n{pad}--> {origin}:{}:{}\n{pad} |\n{number} | {line_text}\n{pad} | {caret}^",
            location.line, location.column
        );
    }
    out
}

/// At most [`SHOWN_CHARS`] characters of a long line around `column` (in
/// characters), with `…` where it was cut, and the column in what is shown.
fn clip(line: &str, column: usize) -> (String, usize) {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= SHOWN_CHARS {
        return (line.to_string(), column);
    }
    let start = column.saturating_sub(SHOWN_CHARS / 2);
    let end = (start + SHOWN_CHARS).min(chars.len());
    let mut shown: String = chars[start..end].iter().collect();
    let mut column = column - start;
    if start > 0 {
        shown.insert(0, '…');
        column += 1;
    }
    if end < chars.len() {
        shown.push('…');
    }
    (shown, column)
}

/// The most characters of one line an error shows.
const SHOWN_CHARS: usize = 120;

/// What `\d` prints: sources, sinks and queries.
pub fn describe(ctx: &StreamingContext) -> String {
    let mut out = String::new();
    let sources = ctx.sources();
    let _ = writeln!(out, "Sources:");
    if sources.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for s in sources {
        source_lines(&mut out, s);
    }
    let tables = ctx.tables();
    if !tables.is_empty() {
        let _ = writeln!(out, "Tables:");
    }
    for t in tables {
        table_lines(&mut out, t);
    }
    let sinks = ctx.sinks();
    let _ = writeln!(out, "Sinks:");
    if sinks.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for s in sinks {
        let _ = writeln!(out, "  {} ({})  {}", s.name, s.connector, s.description);
    }
    let health = brooklet::storage_health();
    if health != brooklet::StorageHealth::default() {
        let _ = writeln!(
            out,
            "Object storage:\n  retries={} failures={}{}{}",
            health.retries,
            health.failures,
            if health.failing { " (failing now)" } else { "" },
            health
                .last_error
                .as_ref()
                .map(|e| format!("\n  last error: {e}"))
                .unwrap_or_default()
        );
    }
    let queries: Vec<_> = ctx
        .queries()
        .into_iter()
        .filter(|q| !q.status().is_terminal())
        .collect();
    let _ = writeln!(out, "Running queries:");
    if queries.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for q in queries {
        let progress = q
            .last_progress()
            .map(|p| format!("  batches={} last: {}", p.batches, progress_fields(&p)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {} ({})  {}{progress}",
            q.name(),
            q.status(),
            q.description().unwrap_or("").replace('\n', " ")
        );
    }
    out
}

/// One source's lines of `\\d`.
fn source_lines(out: &mut String, s: SourceInfo) {
    let columns: Vec<String> = s
        .schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect();
    let m = s.metrics;
    let watermark = s
        .watermark
        .map(|w| {
            format!(
                "  WATERMARK FOR {} AS {} - {}",
                w.column,
                w.column,
                format_duration(w.delay)
            )
        })
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  {} ({})  {}  [{}]{watermark}\n    records={} malformed={}{} late={} reconnects={} cut_lines={}",
        s.name,
        s.connector,
        s.description,
        columns.join(", "),
        m.records,
        m.malformed,
        if m.malformed_by_kind.is_empty() {
            String::new()
        } else {
            let kinds: Vec<String> = m
                .malformed_by_kind
                .iter()
                .map(|(kind, n)| format!("{kind}={n}"))
                .collect();
            format!(" ({})", kinds.join(", "))
        },
        m.late,
        m.reconnects,
        m.cut_lines
    );
    if s.connector == "kafka" {
        let _ = writeln!(out, "    lag={}", m.lag);
    }
    if let Some(status) = &m.status {
        let _ = writeln!(out, "    status: {status}");
    }
}

/// One table's lines of `\\d`.
fn table_lines(out: &mut String, t: TableInfo) {
    let columns: Vec<String> = t
        .schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect();
    let held = match t.rows {
        Some(rows) if t.reloads_on_change => format!(
            "rows={rows} loads={} (re-read when its files change, checked before each batch)",
            t.loads
        ),
        Some(rows) => format!("rows={rows} loads={}", t.loads),
        None => "scanned every batch".into(),
    };
    let _ = writeln!(
        out,
        "  {}  {}  [{}]\n    {held}",
        t.name,
        t.description,
        columns.join(", ")
    );
    if let Some(failed) = &t.failed {
        let _ = writeln!(out, "    last reload failed: {failed}");
    }
}

/// Every name `\\d NAME` describes: sources, tables, sinks and queries.
pub fn names(ctx: &StreamingContext) -> Vec<String> {
    let mut names: Vec<String> = ctx.sources().into_iter().map(|s| s.name).collect();
    names.extend(ctx.tables().into_iter().map(|t| t.name));
    names.extend(ctx.sinks().into_iter().map(|s| s.name));
    names.extend(ctx.queries().iter().map(|q| q.name().to_string()));
    names.sort();
    names.dedup();
    names
}

/// What `\\d NAME` prints: the source, table, sink or query of that name
/// (a query: its state, figures and operator graph with the state each
/// operator holds now).
pub fn describe_one(ctx: &StreamingContext, name: &str) -> Option<String> {
    let mut out = String::new();
    if let Some(s) = ctx.sources().into_iter().find(|s| s.name == name) {
        let _ = writeln!(out, "Source:");
        source_lines(&mut out, s);
    }
    if let Some(t) = ctx.tables().into_iter().find(|t| t.name == name) {
        let _ = writeln!(out, "Table:");
        table_lines(&mut out, t);
    }
    if let Some(s) = ctx.sinks().into_iter().find(|s| s.name == name) {
        let _ = writeln!(
            out,
            "Sink:\n  {} ({})  {}",
            s.name, s.connector, s.description
        );
    }
    if let Some(q) = ctx.queries().into_iter().rev().find(|q| q.name() == name) {
        let totals = q.totals();
        let _ = writeln!(
            out,
            "Query {} ({}), reads {}, writes to {}\n  {}\n  batches={} rows_in={} rows_out={} late_rows={}",
            q.name(),
            q.status(),
            q.sources().join(", "),
            q.destination(),
            q.description().unwrap_or("").replace('\n', " "),
            totals.batches,
            totals.input_rows,
            totals.output_rows,
            totals.late_rows
        );
        if let Some(p) = q.last_progress() {
            let _ = writeln!(out, "  last: {}", progress_fields(&p));
        }
        let _ = writeln!(out, "Operators:");
        for line in q.explain().to_string().lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    (!out.is_empty()).then_some(out)
}

/// A source's malformed-record counts: `malformed[name]=N(kind=n,…)`.
pub fn malformed_fields(name: &str, metrics: &SourceMetricsSnapshot) -> String {
    let kinds: Vec<String> = metrics
        .malformed_by_kind
        .iter()
        .map(|(kind, n)| format!("{kind}={n}"))
        .collect();
    format!(
        "malformed[{name}]={}({})",
        metrics.malformed,
        kinds.join(",")
    )
}

/// One batch's figures, as `--progress` and `\d` show them.
pub fn progress_fields(info: &BatchInfo) -> String {
    let mut fields = format!(
        "time={} rows_in={} rows_out={} processing_ms={} scheduling_delay_ms={} state_bytes={}",
        info.batch_time.millis(),
        info.input_rows,
        info.output_rows,
        info.processing_time.as_millis(),
        info.scheduling_delay.as_millis(),
        info.state_bytes
    );
    if info.checkpoint_bytes > 0 {
        fields.push_str(&format!(
            " checkpoint_bytes={} checkpoint_ms={}",
            info.checkpoint_bytes,
            info.checkpoint_time.as_millis()
        ));
    }
    if let Some(watermark) = info.watermark {
        let shown = if watermark == i64::MAX {
            "end".to_string()
        } else {
            watermark.to_string()
        };
        fields.push_str(&format!(" watermark={shown}"));
    }
    // Rows with no event time are late before any watermark exists.
    if info.watermark.is_some() || info.late_rows > 0 {
        fields.push_str(&format!(" late_rows={}", info.late_rows));
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_shows_late_rows_before_the_first_watermark() {
        use std::time::Duration;
        let info = |watermark, late_rows| BatchInfo {
            batch_time: brooklet::BatchTime::from_millis(1000),
            input_rows: 3,
            output_rows: 0,
            scheduling_delay: Duration::ZERO,
            processing_time: Duration::ZERO,
            batches: 1,
            state_bytes: 0,
            late_rows,
            watermark,
            checkpoint_bytes: 0,
            checkpoint_time: Duration::ZERO,
        };
        // Rows with NULL event times are late before any watermark.
        let fields = progress_fields(&info(None, 2));
        assert!(fields.ends_with(" late_rows=2"), "{fields}");
        assert!(!fields.contains("watermark="), "{fields}");
        let fields = progress_fields(&info(Some(500), 0));
        assert!(fields.ends_with(" watermark=500 late_rows=0"), "{fields}");
        // A query with no event time says nothing of either.
        let fields = progress_fields(&info(None, 0));
        assert!(!fields.contains("late_rows"), "{fields}");
    }

    /// The error `execute` gives for `text`, which must not parse.
    fn syntax_error(text: &str) -> brooklet::Error {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime
            .block_on(async {
                let ctx = StreamingContext::new(std::time::Duration::from_secs(1));
                ctx.execute(text).await
            })
            .expect_err("a syntax error")
    }

    #[test]
    fn a_caret_points_at_the_column() {
        let text = "SELECT line\nFROM lines WHERE";
        let err = syntax_error(text);
        let shown = error(&err, err.location(), text, "q.sql");
        assert!(
            shown.starts_with("error: syntax error: Expected: an expression"),
            "{shown}"
        );
        assert!(
            shown.ends_with("--> q.sql:2:17\n  |\n2 | FROM lines WHERE\n  |                 ^"),
            "{shown}"
        );
    }
}
