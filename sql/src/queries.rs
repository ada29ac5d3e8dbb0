//! Statements about running queries: `SHOW QUERIES` lists them with their
//! figures, `STOP QUERY name` stops one after its current batch.

use std::fmt::Write as _;

use brooklet_engine::explain::format_bytes;
use brooklet_engine::time::format_duration;
use brooklet_engine::{Engine, QueryHandle};

use crate::error::{Error, Result};

/// The text of `SHOW QUERIES`: one line per query, started first.
pub(crate) fn show(engine: &Engine) -> String {
    let queries = engine.queries();
    if queries.is_empty() {
        return "no queries yet".into();
    }
    let rows: Vec<[String; 7]> = queries
        .iter()
        .map(|q| {
            let totals = q.totals();
            let last = q.last_progress();
            [
                q.name().to_string(),
                q.status().to_string(),
                q.sources().join(", "),
                q.destination().to_string(),
                totals.batches.to_string(),
                last.as_ref().map_or("-".into(), |b| {
                    format!(
                        "{} (delay {})",
                        b.batch_time,
                        format_duration(b.scheduling_delay + b.processing_time)
                    )
                }),
                last.map_or("-".into(), |b| format_bytes(b.state_bytes)),
            ]
        })
        .collect();
    let header = [
        "query",
        "status",
        "reads",
        "writes to",
        "batches",
        "last batch",
        "state",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", padded.join("  ").trim_end());
    };
    line(header.to_vec(), &mut out);
    for row in &rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out.trim_end().to_string()
}

/// The running query named `name`.
fn running(engine: &Engine, name: &str) -> Result<QueryHandle> {
    let queries = engine.queries();
    queries
        .iter()
        .rev()
        .find(|q| q.name() == name && !q.status().is_terminal())
        .cloned()
        .ok_or_else(|| {
            let running: Vec<&str> = queries
                .iter()
                .filter(|q| !q.status().is_terminal())
                .map(|q| q.name())
                .collect();
            Error::plan(format!(
                "no running query is named '{name}'; running: {} (SHOW QUERIES lists them)",
                if running.is_empty() {
                    "none".into()
                } else {
                    running.join(", ")
                }
            ))
        })
}

/// `STOP QUERY name`: stops it after its current batch, and says so.
pub(crate) async fn stop(engine: &Engine, name: &str) -> Result<String> {
    let query = running(engine, name)?;
    if !engine.is_started() {
        // Nothing runs batches yet: the query ends when the context starts.
        query.request_stop();
        return Ok(format!(
            "query '{name}' will not start (it is stopped before its first batch)"
        ));
    }
    query.stop().await?;
    let batches = query.totals().batches;
    Ok(format!(
        "query '{name}' stopped after {batches} batch{}",
        if batches == 1 { "" } else { "es" }
    ))
}
