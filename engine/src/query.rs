//! Queries: what an output operation starts, the handle that controls it,
//! and where its batches go.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::array::RecordBatch;
use tokio::sync::{mpsc, watch};

use crate::error::{CallbackError, Error, Result};
use crate::explain::QueryGraph;
use crate::metrics::{BatchInfo, QueryRecord, QueryTotals};
use crate::sink::SinkWriter;
use crate::time::BatchTime;

/// How to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Finish the batch that is running, then stop.
    Graceful,
    /// Stop at once, abandoning a running batch.
    Immediate,
}

/// Where a query's batches go.
pub(crate) enum Output {
    /// A user callback.
    Callback(
        Box<dyn FnMut(BatchTime, RecordBatch) -> std::result::Result<(), CallbackError> + Send>,
    ),
    /// A bounded channel behind a [`BatchStream`](crate::stream::BatchStream).
    Channel(mpsc::Sender<Result<(BatchTime, RecordBatch)>>),
    /// A sink's writer.
    Sink(Box<dyn SinkWriter>),
}

/// Hears about every completed batch (Spark's `StreamingListener`).
pub trait StreamingListener: Send + Sync {
    /// Called after each batch of each query.
    fn on_batch_completed(&self, query: &str, info: &BatchInfo);
}

/// Where a query is in its life.
#[derive(Debug, Clone)]
pub enum QueryStatus {
    /// Waiting for its first batch.
    Pending,
    /// Running batches.
    Running,
    /// Its input ended and its last batch ran.
    Finished,
    /// Stopped by the user or because its consumer went away.
    Stopped,
    /// Stopped by an error.
    Failed(Arc<Error>),
}

impl QueryStatus {
    /// True once the query runs no more batches.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, QueryStatus::Pending | QueryStatus::Running)
    }
}

impl fmt::Display for QueryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryStatus::Pending => write!(f, "pending"),
            QueryStatus::Running => write!(f, "running"),
            QueryStatus::Finished => write!(f, "finished"),
            QueryStatus::Stopped => write!(f, "stopped"),
            QueryStatus::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

pub(crate) struct QueryShared {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) sources: Vec<String>,
    /// Where its batches go: `console`, `sink out`, `callback`, `stream`.
    pub(crate) destination: String,
    /// Its operator graph, as planned.
    pub(crate) graph: QueryGraph,
    /// Its last batches and totals.
    pub(crate) record: QueryRecord,
    pub(crate) status: watch::Sender<QueryStatus>,
    pub(crate) stop_requested: AtomicBool,
    pub(crate) progress: watch::Sender<Option<BatchInfo>>,
}

/// A running (or finished) query. Clones refer to the same query; dropping
/// a handle does not stop the query.
#[derive(Clone)]
pub struct QueryHandle {
    pub(crate) shared: Arc<QueryShared>,
    pub(crate) wake: Arc<tokio::sync::Notify>,
}

impl fmt::Debug for QueryHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryHandle")
            .field("name", &self.shared.name)
            .finish()
    }
}

impl QueryHandle {
    /// The query's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The query's text, when it came from SQL.
    pub fn description(&self) -> Option<&str> {
        self.shared.description.as_deref()
    }

    /// The sources it reads.
    pub fn sources(&self) -> &[String] {
        &self.shared.sources
    }

    /// Where the query is in its life.
    pub fn status(&self) -> QueryStatus {
        self.shared.status.borrow().clone()
    }

    /// Where its batches go: `console`, `sink <name>`, `callback` or
    /// `stream`.
    pub fn destination(&self) -> &str {
        &self.shared.destination
    }

    /// Its last batches (at most [`RETAINED_BATCHES`](crate::metrics::RETAINED_BATCHES)),
    /// oldest first.
    pub fn history(&self) -> Vec<BatchInfo> {
        self.shared.record.history()
    }

    /// What it did since it started.
    pub fn totals(&self) -> QueryTotals {
        self.shared.record.totals()
    }

    /// Its DStream operator graph, with what each stateful operator holds
    /// after the last batch.
    pub fn explain(&self) -> QueryGraph {
        self.shared
            .graph
            .clone()
            .with_state(&self.shared.record.operator_bytes())
    }

    /// What its last batch did.
    pub fn last_progress(&self) -> Option<BatchInfo> {
        self.shared.progress.borrow().clone()
    }

    /// Waits until the query has run the batch of `time` (or a later one),
    /// and returns what that batch did; `None` if the query ended first.
    /// With a [`ManualClock`](crate::time::ManualClock), this is how a test knows
    /// that the batch it advanced the clock for is done.
    pub async fn await_batch(&self, time: BatchTime) -> Option<BatchInfo> {
        let mut progress = self.shared.progress.subscribe();
        let mut status = self.shared.status.subscribe();
        loop {
            if let Some(info) = progress
                .borrow_and_update()
                .clone()
                .filter(|p| p.batch_time >= time)
            {
                return Some(info);
            }
            if status.borrow_and_update().is_terminal() {
                return None;
            }
            tokio::select! {
                changed = progress.changed() => if changed.is_err() { return None },
                changed = status.changed() => if changed.is_err() { return None },
            }
        }
    }

    /// Asks the query to stop before its next batch, without waiting.
    pub fn request_stop(&self) {
        self.shared.stop_requested.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Stops the query (the batch that is running finishes) and waits.
    pub async fn stop(&self) -> Result<()> {
        self.request_stop();
        let mut rx = self.shared.status.subscribe();
        let _ = rx.wait_for(|s| s.is_terminal()).await;
        Ok(())
    }

    /// Waits until the query ends; its error if it failed.
    pub async fn await_termination(&self) -> Result<()> {
        let mut rx = self.shared.status.subscribe();
        let status = rx
            .wait_for(|s| s.is_terminal())
            .await
            .map(|s| s.clone())
            .unwrap_or(QueryStatus::Stopped);
        match status {
            QueryStatus::Failed(cause) => Err(Error::Query {
                query: self.shared.name.clone(),
                cause,
            }),
            _ => Ok(()),
        }
    }
}
