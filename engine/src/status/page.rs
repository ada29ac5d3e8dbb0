//! `/`: the status page, in the manner of Spark's Streaming tab. One
//! table lists the queries with their state; then, per query, its
//! figures and timelines of its last batches — input rate, scheduling
//! delay, processing time and total delay (with the batch interval drawn
//! across, so that falling behind is seen), state, and watermark lag —
//! with histograms of processing time and total delay, its operator graph,
//! and the sources and sinks with their counters. The page refreshes
//! itself (`?refresh=N` seconds, `0` for never) and needs nothing from the
//! network.

use std::fmt::Write as _;
use std::time::Duration;

use super::chart::{Chart, Reference, Unit, histogram, timeline};
use super::snapshot::{QueryReport, Snapshot, millis, time_of_day, watermark_lag};
use crate::explain::format_bytes;
use crate::time::format_duration;

const STYLE: &str = "
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0 24px 24px;color:#222;background:#fafafa}
header{border-bottom:3px solid #3f6fb5;padding:10px 0;margin-bottom:12px}
h1{font-size:22px;margin:4px 0}h2{font-size:18px;margin:24px 0 6px}h3{font-size:15px;margin:14px 0 6px}
.meta{color:#666;font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:6px 0;background:#fff}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left}th{background:#eef2f8}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.state{font-weight:600}.state-running{color:#1b7a2f}.state-failed{color:#b3261e}.state-finished,.state-stopped{color:#555}
.behind{color:#b3261e;font-weight:600}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(530px,1fr));gap:8px}
svg.chart{background:#fff;border:1px solid #ddd}
svg .title{font-size:12px;font-weight:600;fill:#333}svg .label{font-size:10px;fill:#666}
svg .axis{stroke:#999;stroke-width:1}svg .series{fill:none;stroke:#3f6fb5;stroke-width:1.5}
svg .point{fill:#3f6fb5}svg .bar{fill:#7fa3d6}
svg .reference{stroke:#d9534f;stroke-width:1.5;stroke-dasharray:5 3}svg .reference-label{font-size:10px;fill:#d9534f}
pre{background:#fff;border:1px solid #ddd;padding:8px;font-size:12px;overflow-x:auto}
";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The average of `values`, 0 for none.
fn average(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// The page; `refresh` is how often it reloads itself (never for zero).
pub(crate) fn render(snapshot: &Snapshot, refresh: Duration) -> String {
    let mut out = String::new();
    let interval = format_duration(snapshot.interval);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">{}\
         <title>Brooklet — streaming status</title><style>{STYLE}</style></head><body>\
         <header><h1>Brooklet streaming status</h1><div class=\"meta\">batch interval {interval} · \
         {} queries · read at {} UTC{}</div></header>",
        if refresh.is_zero() {
            String::new()
        } else {
            format!(
                "<meta http-equiv=\"refresh\" content=\"{}\">",
                refresh.as_secs().max(1)
            )
        },
        snapshot.queries.len(),
        time_of_day(snapshot.taken_ms),
        if refresh.is_zero() {
            String::new()
        } else {
            format!(" · refreshes every {}", format_duration(refresh))
        }
    );
    queries_table(&mut out, snapshot);
    for query in &snapshot.queries {
        query_section(&mut out, snapshot, query);
    }
    sources_table(&mut out, snapshot);
    out.push_str("</body></html>\n");
    out
}

fn queries_table(out: &mut String, snapshot: &Snapshot) {
    out.push_str(
        "<h2>Queries</h2><table id=\"queries\"><tr><th>Query</th><th>State</th><th>Reads</th>\
         <th>Writes to</th><th>Batches</th><th>Input rate (avg)</th><th>Scheduling delay (avg)</th>\
         <th>Processing time (avg)</th><th>State now</th><th>Last batch</th></tr>",
    );
    if snapshot.queries.is_empty() {
        out.push_str("<tr><td colspan=\"10\">no queries yet</td></tr>");
    }
    let seconds = snapshot.interval.as_secs_f64().max(1e-3);
    for q in &snapshot.queries {
        let behind = if q.falling_behind(snapshot.interval) {
            " <span class=\"behind\">falling behind</span>"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr class=\"query-row\" data-query=\"{name}\"><td><a href=\"#query-{name}\">{name}</a></td>\
             <td><span class=\"state state-{state}\">{state}</span>{behind}</td><td>{reads}</td><td>{dest}</td>\
             <td class=\"n\">{batches}</td><td class=\"n\">{rate}</td><td class=\"n\">{sched}</td>\
             <td class=\"n\">{proc}</td><td class=\"n\">{bytes}</td><td>{last}</td></tr>",
            name = escape(&q.name),
            state = q.state(),
            reads = escape(&q.sources.join(", ")),
            dest = escape(&q.destination),
            batches = q.totals.batches,
            rate = Unit::RowsPerSecond.show(average(
                q.history.iter().map(|b| b.input_rows as f64 / seconds)
            )),
            sched = Unit::Millis.show(average(
                q.history.iter().map(|b| millis(b.scheduling_delay))
            )),
            proc = Unit::Millis.show(average(q.history.iter().map(|b| millis(b.processing_time)))),
            bytes = q.last().map_or("-".into(), |b| format_bytes(b.state_bytes)),
            last = q.last().map_or("-".into(), |b| format!(
                "{} UTC ({} ms)",
                time_of_day(b.batch_time.millis()),
                b.batch_time.millis()
            )),
        );
    }
    out.push_str("</table>");
}

fn query_section(out: &mut String, snapshot: &Snapshot, q: &QueryReport) {
    let name = escape(&q.name);
    let _ = write!(
        out,
        "<section class=\"query\" id=\"query-{name}\" data-query=\"{name}\" data-batches=\"{}\" \
         data-retained=\"{}\"><h2>Query {name} <span class=\"state state-{state}\">{state}</span></h2>",
        q.totals.batches,
        q.history.len(),
        state = q.state()
    );
    if let Some(error) = q.error() {
        let _ = write!(out, "<p class=\"behind\">{}</p>", escape(&error));
    }
    if let Some(text) = &q.description {
        let _ = write!(out, "<pre class=\"sql\">{}</pre>", escape(text));
    }
    let _ = write!(
        out,
        "<p class=\"meta\">{} batches · {} rows in · {} rows out · {} late rows · writes to {}{}</p>",
        q.totals.batches,
        q.totals.input_rows,
        q.totals.output_rows,
        q.totals.late_rows,
        escape(&q.destination),
        if q.history.len() < q.totals.batches as usize {
            format!(" · charts show the last {} batches", q.history.len())
        } else {
            String::new()
        }
    );
    let interval_ms = millis(snapshot.interval);
    let reference = || {
        Some(Reference {
            value: interval_ms,
            label: format!("batch interval {}", format_duration(snapshot.interval)),
        })
    };
    let times: Vec<i64> = q.history.iter().map(|b| b.batch_time.millis()).collect();
    let series =
        |values: Vec<f64>| -> Vec<(i64, f64)> { times.iter().copied().zip(values).collect() };
    let seconds = snapshot.interval.as_secs_f64().max(1e-3);
    let input: Vec<f64> = q
        .history
        .iter()
        .map(|b| b.input_rows as f64 / seconds)
        .collect();
    let scheduling: Vec<f64> = q
        .history
        .iter()
        .map(|b| millis(b.scheduling_delay))
        .collect();
    let processing: Vec<f64> = q
        .history
        .iter()
        .map(|b| millis(b.processing_time))
        .collect();
    let total: Vec<f64> = q
        .history
        .iter()
        .map(|b| millis(b.scheduling_delay + b.processing_time))
        .collect();
    let state: Vec<f64> = q.history.iter().map(|b| b.state_bytes as f64).collect();
    let id = |what: &str| format!("{what}-{}", q.name);
    let chart = |what: &str, title: &'static str, unit: Unit, interval_line: bool| Chart {
        id: id(what),
        title,
        unit,
        reference: if interval_line { reference() } else { None },
    };
    out.push_str("<div class=\"charts\">");
    out.push_str(&timeline(
        &chart("input-rate", "Input rate", Unit::RowsPerSecond, false),
        &series(input),
    ));
    out.push_str(&timeline(
        &chart("scheduling-delay", "Scheduling delay", Unit::Millis, true),
        &series(scheduling),
    ));
    out.push_str(&timeline(
        &chart("processing-time", "Processing time", Unit::Millis, true),
        &series(processing.clone()),
    ));
    out.push_str(&histogram(
        &chart(
            "processing-time-histogram",
            "Processing time (histogram)",
            Unit::Millis,
            true,
        ),
        &processing,
    ));
    out.push_str(&timeline(
        &chart(
            "total-delay",
            "Total delay (scheduling + processing)",
            Unit::Millis,
            true,
        ),
        &series(total.clone()),
    ));
    out.push_str(&histogram(
        &chart(
            "total-delay-histogram",
            "Total delay (histogram)",
            Unit::Millis,
            true,
        ),
        &total,
    ));
    out.push_str(&timeline(
        &chart("state", "State", Unit::Bytes, false),
        &series(state),
    ));
    let lag: Vec<(i64, f64)> = q
        .history
        .iter()
        .filter_map(|b| Some((b.batch_time.millis(), watermark_lag(b)? as f64)))
        .collect();
    if !lag.is_empty() {
        out.push_str(&timeline(
            &chart(
                "watermark-lag",
                "Watermark lag (batch time − watermark)",
                Unit::Millis,
                false,
            ),
            &lag,
        ));
    }
    out.push_str("</div>");
    let _ = write!(
        out,
        "<h3>Operators</h3><pre class=\"graph\">{}</pre></section>",
        escape(&q.graph.to_string())
    );
}

fn sources_table(out: &mut String, snapshot: &Snapshot) {
    out.push_str(
        "<h2>Sources</h2><table id=\"sources\"><tr><th>Source</th><th>Connector</th><th>Reads</th>\
         <th>Records</th><th>Malformed</th><th>Late</th><th>Reconnects</th><th>Cut lines</th>\
         <th>Lag</th><th>Watermark</th><th>Status</th></tr>",
    );
    for s in &snapshot.sources {
        let m = &s.metrics;
        let kinds: Vec<String> = m
            .malformed_by_kind
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        let _ = write!(
            out,
            "<tr class=\"source-row\" data-source=\"{name}\"><td>{name}</td><td>{}</td><td>{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            escape(&s.connector),
            escape(&s.description),
            m.records,
            m.malformed,
            if kinds.is_empty() {
                String::new()
            } else {
                format!(" ({})", kinds.join(", "))
            },
            m.late,
            m.reconnects,
            m.cut_lines,
            if s.connector == "kafka" {
                m.lag.to_string()
            } else {
                "-".into()
            },
            s.watermark.as_ref().map_or("-".into(), |w| escape(&format!(
                "{} - {}",
                w.column,
                format_duration(w.delay)
            ))),
            m.status.as_deref().map_or("ok".into(), escape),
            name = escape(&s.name),
        );
    }
    out.push_str("</table><h2>Sinks</h2><table id=\"sinks\"><tr><th>Sink</th><th>Connector</th><th>Writes</th></tr>");
    for s in &snapshot.sinks {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&s.name),
            escape(&s.connector),
            escape(&s.description)
        );
    }
    out.push_str("</table>");
    let storage = &snapshot.storage;
    if storage.retries > 0 || storage.failures > 0 {
        let _ = write!(
            out,
            "<p class=\"meta\">Object storage: {} retries, {} failures{}{}</p>",
            storage.retries,
            storage.failures,
            if storage.failing {
                " · failing now"
            } else {
                ""
            },
            storage
                .last_error
                .as_deref()
                .map_or(String::new(), |e| format!(" · last: {}", escape(e)))
        );
    }
}
