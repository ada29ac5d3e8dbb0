//! `/api/queries`: what `\d` shows, as JSON for scripts — every query with
//! its totals, last batch and retained batches, every source with its
//! counters, every sink, and object-store health. Durations are in
//! milliseconds (`_ms`), times in epoch milliseconds.

use serde_json::{Value, json};

use super::snapshot::{QueryReport, Snapshot, millis, watermark};
use crate::metrics::BatchInfo;

/// One batch's figures.
pub(crate) fn batch(b: &BatchInfo) -> Value {
    json!({
        "batch_time_ms": b.batch_time.millis(),
        "input_rows": b.input_rows,
        "output_rows": b.output_rows,
        "scheduling_delay_ms": millis(b.scheduling_delay),
        "processing_time_ms": millis(b.processing_time),
        "total_delay_ms": millis(b.scheduling_delay + b.processing_time),
        "state_bytes": b.state_bytes,
        "late_rows": b.late_rows,
        "watermark_ms": watermark(b),
        "end_of_input": b.watermark == Some(i64::MAX),
        "checkpoint_bytes": b.checkpoint_bytes,
        "checkpoint_time_ms": millis(b.checkpoint_time),
    })
}

fn query(q: &QueryReport, with_history: bool) -> Value {
    let operators: Vec<Value> = q
        .graph
        .nodes
        .iter()
        .filter(|n| n.source.is_none())
        .map(|n| {
            json!({
                "name": n.description.name,
                "stateful": n.is_stateful(),
                "state_sized_by": n.description.state,
                "state_bytes": n.state_bytes,
            })
        })
        .collect();
    let mut value = json!({
        "name": q.name,
        "status": q.state(),
        "error": q.error(),
        "description": q.description,
        "sources": q.sources,
        "destination": q.destination,
        "batches": q.totals.batches,
        "input_rows": q.totals.input_rows,
        "output_rows": q.totals.output_rows,
        "late_rows": q.totals.late_rows,
        "last_batch": q.last().map(batch),
        "operators": operators,
    });
    if with_history {
        value["history"] = q.history.iter().map(batch).collect();
    }
    value
}

/// The document of `/api/queries`; `with_history` adds each query's
/// retained batches.
pub(crate) fn render(snapshot: &Snapshot, with_history: bool) -> Value {
    let sources: Vec<Value> = snapshot
        .sources
        .iter()
        .map(|s| {
            let m = &s.metrics;
            json!({
                "name": s.name,
                "connector": s.connector,
                "description": s.description,
                "records": m.records,
                "malformed": m.malformed,
                "malformed_by_kind": m.malformed_by_kind,
                "late": m.late,
                "reconnects": m.reconnects,
                "cut_lines": m.cut_lines,
                "lag": m.lag,
                "status": m.status,
                "watermark": s.watermark.as_ref().map(|w| json!({
                    "column": w.column,
                    "delay_ms": w.delay.as_millis() as u64,
                })),
            })
        })
        .collect();
    let sinks: Vec<Value> = snapshot
        .sinks
        .iter()
        .map(|s| json!({"name": s.name, "connector": s.connector, "description": s.description}))
        .collect();
    let storage = &snapshot.storage;
    json!({
        "batch_interval_ms": snapshot.interval.as_millis() as u64,
        "taken_ms": snapshot.taken_ms,
        "queries": snapshot.queries.iter().map(|q| query(q, with_history)).collect::<Vec<_>>(),
        "sources": sources,
        "sinks": sinks,
        "object_storage": {
            "retries": storage.retries,
            "failures": storage.failures,
            "failing": storage.failing,
            "last_error": storage.last_error,
        },
    })
}
