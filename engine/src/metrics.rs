//! Counters a running engine keeps: per source ([`SourceMetrics`], read as a
//! [`SourceMetricsSnapshot`]), per batch of a query ([`BatchInfo`]), and
//! per query (its last [`RETAINED_BATCHES`] batches and its
//! [`QueryTotals`]).
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
    /// Bytes of the state file of the last checkpoint that finished
    /// while this batch ran (0: none, or only a commit). A checkpoint is
    /// written while the batch after it runs, so this is usually the
    /// previous batch's.
    pub checkpoint_bytes: u64,
    /// How long that checkpoint took, from its hand-over to the writer to
    /// its commit.
    pub checkpoint_time: Duration,
}

/// How many of a query's last batches it keeps for the status page and
/// [`QueryHandle::history`](crate::QueryHandle::history) (Spark's
/// `spark.streaming.ui.retainedBatches`).
pub const RETAINED_BATCHES: usize = 1000;

/// The upper bounds, in seconds, of the processing-time histogram's
/// buckets (Prometheus' `le`); one more bucket counts everything above.
pub const PROCESSING_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// What a query did since it started: sums over every batch, however many
/// [`RETAINED_BATCHES`] keeps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryTotals {
    /// Batches run.
    pub batches: u64,
    /// Rows its sources handed to its batches.
    pub input_rows: u64,
    /// Rows it emitted.
    pub output_rows: u64,
    /// Rows dropped as late.
    pub late_rows: u64,
    /// Batches whose processing time was at most each bound of
    /// [`PROCESSING_BUCKETS`], then all batches (cumulative, as Prometheus'
    /// histograms).
    pub processing_buckets: [u64; PROCESSING_BUCKETS.len() + 1],
    /// The processing times added up, in seconds.
    pub processing_seconds: f64,
}

impl QueryTotals {
    fn add(&mut self, info: &BatchInfo) {
        self.batches += 1;
        self.input_rows += info.input_rows;
        self.output_rows += info.output_rows;
        self.late_rows += info.late_rows;
        let seconds = info.processing_time.as_secs_f64();
        self.processing_seconds += seconds;
        for (bound, count) in PROCESSING_BUCKETS
            .iter()
            .chain(std::iter::once(&f64::INFINITY))
            .zip(self.processing_buckets.iter_mut())
        {
            if seconds <= *bound {
                *count += 1;
            }
        }
    }
}

/// A query's record: its last batches, its totals, and what each of its
/// operators holds. The scheduler adds each batch; readers take copies.
#[derive(Debug, Default)]
pub(crate) struct QueryRecord {
    /// The retained batches and the totals, changed together.
    batches: Mutex<(std::collections::VecDeque<BatchInfo>, QueryTotals)>,
    operator_bytes: Mutex<BTreeMap<usize, u64>>,
}

impl QueryRecord {
    /// Adds a batch, with the state each operator holds after it.
    pub(crate) fn add(&self, info: &BatchInfo, operator_bytes: BTreeMap<usize, u64>) {
        {
            let mut batches = lock(&self.batches);
            let (history, totals) = &mut *batches;
            if history.len() == RETAINED_BATCHES {
                history.pop_front();
            }
            history.push_back(info.clone());
            totals.add(info);
        }
        *lock(&self.operator_bytes) = operator_bytes;
    }

    /// The retained batches (oldest first) and the totals, read together.
    pub(crate) fn read(&self) -> (Vec<BatchInfo>, QueryTotals) {
        let batches = lock(&self.batches);
        (batches.0.iter().cloned().collect(), batches.1.clone())
    }

    /// The retained batches, oldest first.
    pub(crate) fn history(&self) -> Vec<BatchInfo> {
        self.read().0
    }

    /// The totals.
    pub(crate) fn totals(&self) -> QueryTotals {
        lock(&self.batches).1.clone()
    }

    /// State bytes by operator node, after the last batch.
    pub(crate) fn operator_bytes(&self) -> BTreeMap<usize, u64> {
        lock(&self.operator_bytes).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: u64, processing_ms: u64) -> BatchInfo {
        BatchInfo {
            batch_time: BatchTime::from_millis(n as i64 * 1000),
            input_rows: n,
            output_rows: 1,
            scheduling_delay: Duration::ZERO,
            processing_time: Duration::from_millis(processing_ms),
            batches: n,
            state_bytes: 0,
            late_rows: 0,
            watermark: None,
            checkpoint_bytes: 0,
            checkpoint_time: Duration::ZERO,
        }
    }

    #[test]
    fn a_record_keeps_the_last_batches_and_totals_over_all() {
        let record = QueryRecord::default();
        for n in 1..=(RETAINED_BATCHES as u64 + 5) {
            record.add(&batch(n, 3), BTreeMap::new());
        }
        let history = record.history();
        assert_eq!(history.len(), RETAINED_BATCHES);
        assert_eq!(history[0].batches, 6);
        let totals = record.totals();
        assert_eq!(totals.batches, RETAINED_BATCHES as u64 + 5);
        assert_eq!(totals.output_rows, totals.batches);
        // 3 ms: above the 2.5 ms bound, within 5 ms and every bound after.
        assert_eq!(totals.processing_buckets[1], 0);
        assert_eq!(totals.processing_buckets[2], totals.batches);
        assert_eq!(*totals.processing_buckets.last().unwrap(), totals.batches);
    }
}
