//! The state an engine and its runtime share: registered sources and
//! sinks, settings, queries waiting to start, and how the engine ends.
//! The public API (`engine.rs`) changes it; the scheduler reads it at each
//! batch time.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use datafusion::prelude::SessionContext;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::error::Result;
use crate::graph::Node;
use crate::metrics::SourceMetrics;
use crate::notice::Notices;
use crate::query::{Output, QueryShared, QueryStatus, StreamingListener};
use crate::sink::{ConsoleOptions, Sink};
use crate::source::Source;
use crate::storage::{Dir, StorageOptions};
use crate::sync::lock;
use crate::time::{BatchTime, Clock};
use crate::watermark::Watermark;

pub(crate) struct RegisteredSource {
    pub(crate) source: Arc<dyn Source>,
    pub(crate) metrics: Arc<SourceMetrics>,
    pub(crate) watermark: Option<Watermark>,
}

/// Where queries save checkpoints and how often they save state.
#[derive(Debug, Clone)]
pub(crate) struct CheckpointSettings {
    /// Each query checkpoints into `<dir>/<query name>`.
    pub(crate) dir: PathBuf,
    /// State is saved every this many batches (progress every batch).
    pub(crate) every: u64,
    /// Every this many state generations, one is written whole (the ones
    /// between write only what changed).
    pub(crate) full_every: u64,
    /// How an object store under `dir` is reached (`SET s3.…`).
    pub(crate) storage: StorageOptions,
}

impl CheckpointSettings {
    /// The checkpoint directory.
    pub(crate) fn root(&self) -> Result<Dir> {
        Dir::parse(&self.dir.to_string_lossy(), &self.storage)
    }

    /// The directory of the query `name`.
    pub(crate) fn query_dir(&self, name: &str) -> Result<Dir> {
        Ok(self.root()?.join(name))
    }
}

pub(crate) struct PendingQuery {
    pub(crate) shared: Arc<QueryShared>,
    pub(crate) node: Arc<Node>,
    pub(crate) output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunState {
    NotStarted,
    Running,
    Stopping,
    Stopped,
}

/// A static table of the engine.
pub(crate) enum RegisteredTable {
    /// Read from files, held, and re-read when they change.
    Files(Arc<crate::table::StaticTable>),
    /// A provider registered from Rust, scanned by every batch.
    Provider(Arc<dyn datafusion::catalog::TableProvider>),
}

pub(crate) struct State {
    pub(crate) interval: Duration,
    /// When batches run.
    pub(crate) trigger: crate::trigger::Trigger,
    pub(crate) console: ConsoleOptions,
    /// How long a source may deliver nothing before it stops holding back
    /// the watermark of operators reading it with other sources.
    pub(crate) idle_timeout: Option<Duration>,
    /// How many tasks run each keyed operator (`SET parallelism`).
    pub(crate) parallelism: usize,
    /// Where queries checkpoint, if they do.
    pub(crate) checkpoint: Option<CheckpointSettings>,
    /// Object-store options (`SET s3.endpoint = …`) for the checkpoint
    /// directory and every files source and sink created after.
    pub(crate) storage: StorageOptions,
    pub(crate) sources: BTreeMap<String, RegisteredSource>,
    pub(crate) sinks: BTreeMap<String, Arc<dyn Sink>>,
    /// Static tables, by name: read from files and held, or any provider.
    pub(crate) tables: BTreeMap<String, RegisteredTable>,
    pub(crate) queries: Vec<Arc<QueryShared>>,
    pub(crate) pending: Vec<PendingQuery>,
    pub(crate) run: RunState,
    pub(crate) next_batch: BatchTime,
    /// The down time a restarted query replays, while it does.
    pub(crate) catch_up: Option<crate::runtime::catch_up::CatchUp>,
    pub(crate) scheduler: Option<JoinHandle<()>>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Termination {
    pub(crate) stopped: bool,
    pub(crate) failure: Option<(String, Arc<Error>)>,
    pub(crate) live: usize,
    pub(crate) ever: usize,
}

impl Termination {
    pub(crate) fn done(&self) -> bool {
        self.stopped || self.failure.is_some() || (self.ever > 0 && self.live == 0)
    }
}

pub(crate) struct Inner {
    pub(crate) session: SessionContext,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) notices: Notices,
    pub(crate) next_id: AtomicUsize,
    pub(crate) state: Mutex<State>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) termination: watch::Sender<Termination>,
    pub(crate) listeners: Mutex<Vec<Arc<dyn StreamingListener>>>,
}

impl Inner {
    /// The state, locked.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Ends a query with `status` (once: a query that ended stays ended),
    /// and counts it out of the live ones.
    pub(crate) fn end_query(&self, query: &QueryShared, status: QueryStatus) {
        if query.status.borrow().is_terminal() {
            return;
        }
        let failure = match &status {
            QueryStatus::Failed(e) => Some((query.name.clone(), Arc::clone(e))),
            _ => None,
        };
        query.status.send_replace(status);
        self.termination.send_modify(|t| {
            t.live = t.live.saturating_sub(1);
            if t.failure.is_none() {
                t.failure = failure;
            }
        });
    }
}
