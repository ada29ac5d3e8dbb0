//! `/metrics`: the engine's figures in Prometheus' text exposition format
//! (version 0.0.4).
//!
//! Names follow Prometheus' conventions: the `brooklet_` prefix, base
//! units in the name (`_seconds`, `_bytes`), `_total` on counters, and one
//! time series per `query`, `source` (and malformed `kind`) label. Counters
//! count from the process's start: a restarted job starts them at zero,
//! which Prometheus' `rate()` reads as a reset. Gauges are the last batch's
//! figures. Processing time is also a histogram, so that quantiles over
//! any range can be computed on the server.
//!
//! The format is written here rather than through a client library: every
//! value is read from a [`Snapshot`] at scrape time (no metric objects to
//! register and keep in step), and the format is a few lines of text.

use std::fmt::Write as _;

use super::snapshot::{QueryReport, Snapshot, watermark, watermark_lag};
use crate::metrics::PROCESSING_BUCKETS;

/// A counter family: its name, its help, and how it reads a value of `T`.
type Counter<T> = (&'static str, &'static str, fn(&T) -> u64);

/// One metric family being written: its `# HELP` and `# TYPE` once, then
/// its samples.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out, name }
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        self.sample_named(self.name, labels, value);
    }

    fn sample_named(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let _ = write!(self.out, "{name}");
        if !labels.is_empty() {
            let list: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(self.out, "{{{}}}", list.join(","));
        }
        let _ = writeln!(self.out, " {}", number(value));
    }
}

/// A label value as the format wants it: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value: integers without a fraction, `+Inf` for infinity.
fn number(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// A per-query gauge of the last batch's figure, for the queries that ran
/// a batch.
fn last_batch_gauge(
    out: &mut String,
    snapshot: &Snapshot,
    name: &'static str,
    help: &str,
    value: impl Fn(&QueryReport) -> Option<f64>,
) {
    let mut family = Family::new(out, name, "gauge", help);
    for query in &snapshot.queries {
        if let Some(v) = value(query) {
            family.sample(&[("query", &query.name)], v);
        }
    }
}

/// The text of `/metrics`.
pub(crate) fn render(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    Family::new(
        &mut out,
        "brooklet_batch_interval_seconds",
        "gauge",
        "The batch interval.",
    )
    .sample(&[], snapshot.interval.as_secs_f64());

    let mut info = Family::new(
        &mut out,
        "brooklet_query_info",
        "gauge",
        "Each query, with its state and where its batches go (always 1).",
    );
    for q in &snapshot.queries {
        info.sample(
            &[
                ("query", &q.name),
                ("state", q.state()),
                ("destination", &q.destination),
            ],
            1.0,
        );
    }
    let mut up = Family::new(
        &mut out,
        "brooklet_query_running",
        "gauge",
        "1 while the query runs batches, 0 once it ended.",
    );
    for q in &snapshot.queries {
        up.sample(
            &[("query", &q.name)],
            f64::from(u8::from(!q.status.is_terminal())),
        );
    }
    let counters: [Counter<QueryReport>; 4] = [
        (
            "brooklet_query_batches_total",
            "Batches the query ran.",
            |q| q.totals.batches,
        ),
        (
            "brooklet_query_input_rows_total",
            "Rows the query's sources handed to its batches.",
            |q| q.totals.input_rows,
        ),
        (
            "brooklet_query_output_rows_total",
            "Rows the query emitted.",
            |q| q.totals.output_rows,
        ),
        (
            "brooklet_query_late_rows_total",
            "Rows the query dropped as late (behind its watermark).",
            |q| q.totals.late_rows,
        ),
    ];
    for (name, help, value) in counters {
        let mut family = Family::new(&mut out, name, "counter", help);
        for q in &snapshot.queries {
            family.sample(&[("query", &q.name)], value(q) as f64);
        }
    }
    last_batch_gauge(
        &mut out,
        snapshot,
        "brooklet_query_last_batch_time_seconds",
        "The time of the query's last batch (seconds since the epoch).",
        |q| q.last().map(|b| b.batch_time.millis() as f64 / 1000.0),
    );
    last_batch_gauge(
        &mut out,
        snapshot,
        "brooklet_query_scheduling_delay_seconds",
        "How late the query's last batch started after its time.",
        |q| q.last().map(|b| b.scheduling_delay.as_secs_f64()),
    );
    last_batch_gauge(
        &mut out,
        snapshot,
        "brooklet_query_processing_time_seconds",
        "How long the query's last batch took.",
        |q| q.last().map(|b| b.processing_time.as_secs_f64()),
    );
    last_batch_gauge(
        &mut out,
        snapshot,
        "brooklet_query_total_delay_seconds",
        "Scheduling delay plus processing time of the last batch; above the batch interval, the query falls behind.",
        |q| {
            q.last()
                .map(|b| (b.scheduling_delay + b.processing_time).as_secs_f64())
        },
    );
    last_batch_gauge(
        &mut out,
        snapshot,
        "brooklet_query_state_bytes",
        "Bytes of operator state the query holds after its last batch.",
        |q| q.last().map(|b| b.state_bytes as f64),
    );
    last_batch_gauge(
        &mut out,
        snapshot,
        "brooklet_query_watermark_seconds",
        "The query's event-time watermark (seconds since the epoch).",
        |q| watermark(q.last()?).map(|w| w as f64 / 1000.0),
    );
    last_batch_gauge(
        &mut out,
        snapshot,
        "brooklet_query_watermark_lag_seconds",
        "How far the watermark trails the last batch's time.",
        |q| watermark_lag(q.last()?).map(|lag| lag as f64 / 1000.0),
    );
    last_batch_gauge(
        &mut out,
        snapshot,
        "brooklet_query_checkpoint_bytes",
        "Bytes of the state checkpoint written after the last batch (0: none).",
        |q| q.last().map(|b| b.checkpoint_bytes as f64),
    );
    let mut histogram = Family::new(
        &mut out,
        "brooklet_query_processing_seconds",
        "histogram",
        "How long each batch of the query took.",
    );
    for q in &snapshot.queries {
        for (bound, count) in PROCESSING_BUCKETS
            .iter()
            .chain(std::iter::once(&f64::INFINITY))
            .zip(q.totals.processing_buckets)
        {
            histogram.sample_named(
                "brooklet_query_processing_seconds_bucket",
                &[("query", &q.name), ("le", &number(*bound))],
                count as f64,
            );
        }
        histogram.sample_named(
            "brooklet_query_processing_seconds_sum",
            &[("query", &q.name)],
            q.totals.processing_seconds,
        );
        histogram.sample_named(
            "brooklet_query_processing_seconds_count",
            &[("query", &q.name)],
            q.totals.batches as f64,
        );
    }
    render_sources(&mut out, snapshot);
    let storage = &snapshot.storage;
    Family::new(
        &mut out,
        "brooklet_object_store_retries_total",
        "counter",
        "Object-store requests that failed and were tried again.",
    )
    .sample(&[], storage.retries as f64);
    Family::new(
        &mut out,
        "brooklet_object_store_failures_total",
        "counter",
        "Object-store requests that still failed when their retry time was spent.",
    )
    .sample(&[], storage.failures as f64);
    out
}

fn render_sources(out: &mut String, snapshot: &Snapshot) {
    let mut info = Family::new(
        out,
        "brooklet_source_info",
        "gauge",
        "Each source, with its connector (always 1).",
    );
    for s in &snapshot.sources {
        info.sample(&[("source", &s.name), ("connector", &s.connector)], 1.0);
    }
    let counters: [Counter<crate::SourceMetricsSnapshot>; 5] = [
        (
            "brooklet_source_records_total",
            "Records decoded and handed to batches.",
            |m| m.records,
        ),
        (
            "brooklet_source_late_rows_total",
            "Rows of the source dropped as late by event-time operators.",
            |m| m.late,
        ),
        (
            "brooklet_source_reconnects_total",
            "Times the source reconnected (sockets) or its brokers answered again (Kafka).",
            |m| m.reconnects,
        ),
        (
            "brooklet_source_cut_lines_total",
            "Lines cut short by a dropped connection.",
            |m| m.cut_lines,
        ),
        (
            "brooklet_source_malformed_records_total",
            "Records that did not decode, all kinds.",
            |m| m.malformed,
        ),
    ];
    for (name, help, value) in counters {
        let mut family = Family::new(out, name, "counter", help);
        for s in &snapshot.sources {
            family.sample(&[("source", &s.name)], value(&s.metrics) as f64);
        }
    }
    let mut by_kind = Family::new(
        out,
        "brooklet_source_malformed_records_by_kind_total",
        "counter",
        "Records that did not decode, by kind (too_long, utf8, field_count, value, json, other).",
    );
    for s in &snapshot.sources {
        for (kind, n) in &s.metrics.malformed_by_kind {
            by_kind.sample(&[("source", &s.name), ("kind", kind)], *n as f64);
        }
    }
    let mut lag = Family::new(
        out,
        "brooklet_source_lag_records",
        "gauge",
        "Records the brokers hold past a Kafka source's position.",
    );
    for s in snapshot.sources.iter().filter(|s| s.connector == "kafka") {
        lag.sample(&[("source", &s.name)], s.metrics.lag as f64);
    }
    let mut up = Family::new(
        out,
        "brooklet_source_up",
        "gauge",
        "0 while the source is in trouble (its brokers do not answer), else 1.",
    );
    for s in &snapshot.sources {
        up.sample(
            &[("source", &s.name)],
            f64::from(u8::from(s.metrics.status.is_none())),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_numbers_follow_the_format() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::INFINITY), "+Inf");
        let mut out = String::new();
        Family::new(&mut out, "brooklet_x_total", "counter", "X.")
            .sample(&[("query", "q\"1")], 2.0);
        assert_eq!(
            out,
            "# HELP brooklet_x_total X.\n# TYPE brooklet_x_total counter\nbrooklet_x_total{query=\"q\\\"1\"} 2\n"
        );
    }
}
