//! Counters a running engine keeps: per source ([`SourceMetrics`], read as a
//! [`SourceMetricsSnapshot`]) and per batch of a query ([`BatchInfo`]).
//!
//! Counters are atomics updated by the receivers and the scheduler; readers
//! take copies.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::malformed::MalformedKind;
use crate::sync::lock;
use crate::time::BatchTime;

/// Live counters of one source.
#[derive(Debug, Default)]
pub struct SourceMetrics {
    records: AtomicU64,
    malformed: AtomicU64,
    reconnects: AtomicU64,
    cut_lines: AtomicU64,
    late: AtomicU64,
    lag: AtomicU64,
    status: Mutex<Option<String>>,
    malformed_by_kind: Mutex<BTreeMap<&'static str, u64>>,
    skipped_in_batch: Mutex<Option<SkipReport>>,
}

/// Malformed records skipped since the last batch, with the first one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipReport {
    /// How many records were skipped.
    pub count: u64,
    /// Where the first one was and why, for the warning.
    pub first: String,
}

/// A copy of a source's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceMetricsSnapshot {
    /// Records decoded and handed to batches.
    pub records: u64,
    /// Records that did not decode (skipped, dead-lettered or failed).
    pub malformed: u64,
    /// The same, by kind (`too_long`, `utf8`, `field_count`, `value`,
    /// `json`, `other`).
    pub malformed_by_kind: BTreeMap<String, u64>,
    /// Times a socket source reconnected, or a Kafka source's brokers
    /// answered again after not answering.
    pub reconnects: u64,
    /// Lines cut short by a dropped connection (never merged with the next).
    pub cut_lines: u64,
    /// Rows dropped by an event-time window because their window had
    /// already closed (behind the watermark).
    pub late: u64,
    /// Records the source has not read yet (a Kafka source: what the
    /// brokers hold past its position, after its last batch).
    pub lag: u64,
    /// Trouble the source is in now (brokers not answering), if any.
    pub status: Option<String>,
}

impl SourceMetrics {
    pub(crate) fn add_records(&self, n: u64) {
        self.records.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_malformed(&self, kind: MalformedKind) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
        *lock(&self.malformed_by_kind)
            .entry(kind.name())
            .or_default() += 1;
    }

    pub(crate) fn add_reconnect(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_late(&self, n: u64) {
        self.late.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set_lag(&self, lag: u64) {
        self.lag.store(lag, Ordering::Relaxed);
    }

    pub(crate) fn set_status(&self, status: Option<String>) {
        *lock(&self.status) = status;
    }

    pub(crate) fn add_cut_line(&self) {
        self.cut_lines.fetch_add(1, Ordering::Relaxed);
    }

    /// Notes a skipped record for this batch's warning.
    pub(crate) fn note_skipped(&self, description: impl FnOnce() -> String) {
        let mut skipped = lock(&self.skipped_in_batch);
        match skipped.as_mut() {
            Some(report) => report.count += 1,
            None => {
                *skipped = Some(SkipReport {
                    count: 1,
                    first: description(),
                })
            }
        }
    }

    /// Takes the skipped records noted since the last call.
    pub(crate) fn take_skipped(&self) -> Option<SkipReport> {
        lock(&self.skipped_in_batch).take()
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> SourceMetricsSnapshot {
        SourceMetricsSnapshot {
            records: self.records.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            malformed_by_kind: lock(&self.malformed_by_kind)
                .iter()
                .map(|(k, n)| (k.to_string(), *n))
                .collect(),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            cut_lines: self.cut_lines.load(Ordering::Relaxed),
            late: self.late.load(Ordering::Relaxed),
            lag: self.lag.load(Ordering::Relaxed),
            status: lock(&self.status).clone(),
        }
    }
}

/// What one batch of one query did (Spark's `BatchInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchInfo {
    /// The batch time.
    pub batch_time: BatchTime,
    /// Rows the query's sources handed to this batch.
    pub input_rows: u64,
    /// Rows the query emitted (0 for an empty batch or no output).
    pub output_rows: u64,
    /// How late the batch started after its time.
    pub scheduling_delay: Duration,
    /// How long the batch took, output included.
    pub processing_time: Duration,
    /// Batches this query has run.
    pub batches: u64,
    /// Bytes of operator state the query holds after this batch (window
    /// panes' partial aggregates): sized by keys × live panes.
    pub state_bytes: u64,
    /// Rows this batch dropped as late (behind the watermark).
    pub late_rows: u64,
    /// The event-time watermark after this batch (epoch milliseconds), for
    /// a query with an event-time window; `None` before any event.
    pub watermark: Option<i64>,
    /// Bytes of the state checkpoint written after this batch (0: none).
    pub checkpoint_bytes: u64,
    /// How long writing that checkpoint (state and commit) took.
    pub checkpoint_time: Duration,
}
