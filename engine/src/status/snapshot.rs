//! One reading of everything the status endpoints show, taken at once so
//! that a page, a scrape or a JSON answer is consistent within itself.

use std::time::Duration;

use crate::engine::{Engine, SinkInfo, SourceInfo};
use crate::explain::QueryGraph;
use crate::metrics::{BatchInfo, QueryTotals};
use crate::query::QueryStatus;
use crate::storage::{StorageHealth, storage_health};

/// What the status endpoints show, read at one moment.
pub(crate) struct Snapshot {
    /// The batch interval.
    pub(crate) interval: Duration,
    /// When it was taken (the engine's clock, epoch milliseconds).
    pub(crate) taken_ms: i64,
    /// Every source with its counters.
    pub(crate) sources: Vec<SourceInfo>,
    /// Every sink.
    pub(crate) sinks: Vec<SinkInfo>,
    /// Every query, running or ended, in the order they were started.
    pub(crate) queries: Vec<QueryReport>,
    /// What object-store requests went through.
    pub(crate) storage: StorageHealth,
}

/// One query, as the status endpoints show it.
pub(crate) struct QueryReport {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) status: QueryStatus,
    pub(crate) sources: Vec<String>,
    pub(crate) destination: String,
    /// Its retained batches, oldest first.
    pub(crate) history: Vec<BatchInfo>,
    pub(crate) totals: QueryTotals,
    pub(crate) graph: QueryGraph,
}

impl QueryReport {
    /// Its last batch.
    pub(crate) fn last(&self) -> Option<&BatchInfo> {
        self.history.last()
    }

    /// `running`, `finished`, `failed`...
    pub(crate) fn state(&self) -> &'static str {
        match self.status {
            QueryStatus::Pending => "pending",
            QueryStatus::Running => "running",
            QueryStatus::Finished => "finished",
            QueryStatus::Stopped => "stopped",
            QueryStatus::Failed(_) => "failed",
        }
    }

    /// Its error, when it failed.
    pub(crate) fn error(&self) -> Option<String> {
        match &self.status {
            QueryStatus::Failed(e) => Some(e.to_string()),
            _ => None,
        }
    }

    /// Whether it is falling behind: its last batch started later than
    /// one batch interval after its time.
    pub(crate) fn falling_behind(&self, interval: Duration) -> bool {
        !self.status.is_terminal()
            && self
                .last()
                .is_some_and(|b| b.scheduling_delay + b.processing_time > interval)
    }
}

impl Snapshot {
    /// Reads `engine` now. A name used again by a later query shows only
    /// that query.
    pub(crate) fn of(engine: &Engine) -> Self {
        let all = engine.queries();
        let queries = all
            .iter()
            .enumerate()
            .filter(|(i, q)| !all[i + 1..].iter().any(|later| later.name() == q.name()))
            .map(|(_, q)| {
                let (history, totals) = q.shared.record.read();
                QueryReport {
                    name: q.name().to_string(),
                    description: q.description().map(str::to_string),
                    status: q.status(),
                    sources: q.sources().to_vec(),
                    destination: q.destination().to_string(),
                    history,
                    totals,
                    graph: q.explain(),
                }
            })
            .collect();
        Snapshot {
            interval: engine.batch_interval(),
            taken_ms: engine.clock().now_millis(),
            sources: engine.sources(),
            sinks: engine.sinks(),
            queries,
            storage: storage_health(),
        }
    }
}

/// A batch's watermark, if it has one that is a time (not the end of
/// input, which a finished query's last batch carries).
pub(crate) fn watermark(b: &BatchInfo) -> Option<i64> {
    b.watermark.filter(|w| *w != i64::MAX && *w != i64::MIN)
}

/// How far a batch's watermark trails its time, in milliseconds.
pub(crate) fn watermark_lag(b: &BatchInfo) -> Option<i64> {
    watermark(b).map(|w| b.batch_time.millis().saturating_sub(w))
}

/// Milliseconds of a duration, with fractions.
pub(crate) fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The time of day of epoch milliseconds, `HH:MM:SS` (UTC).
pub(crate) fn time_of_day(epoch_ms: i64) -> String {
    let seconds = epoch_ms.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::time_of_day;

    #[test]
    fn times_of_day_are_utc() {
        assert_eq!(time_of_day(0), "00:00:00");
        assert_eq!(time_of_day(1_357_008_430_000), "02:47:10");
        assert_eq!(time_of_day(86_399_999), "23:59:59");
    }
}
