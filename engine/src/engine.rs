//! The engine: sources, sinks, queries, and the scheduler that runs a batch
//! of every query at every batch time.
//!
//! One scheduler per engine, as Spark's JobGenerator: when the engine
//! starts, `zero = floor(now / I) * I`; batch `k` runs when the clock reaches
//! `zero + k·I`. At each batch time every source that a running query reads
//! is asked once for its batch, and every query runs its operators on it and
//! hands the result to its output, empty batches included. A query added
//! while the engine runs starts at the next batch time. If a batch takes
//! longer than the interval, the next one starts late and the *scheduling
//! delay* (a metric) grows: batches are never skipped.
//!
//! A query ends when it is stopped, when its output's consumer goes away
//! (a dropped [`BatchStream`](crate::BatchStream)), when it fails, or when
//! every source it reads has ended (bounded input, after the batch that took
//! the last rows).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::dstream::{DStream, Node, NodeId, NodeKind};
use crate::error::{CallbackError, Error, Result};
use crate::metrics::{BatchInfo, SourceMetrics, SourceMetricsSnapshot};
use crate::notice::Notices;
use crate::plan::{StatelessOperator, StreamTable};
use crate::sink::{ConsoleOptions, Sink, SinkWriter};
use crate::source::{MemorySource, Source, SourceBatch, SourceContext, SourceReader};
use crate::time::{BatchTime, Clock, SystemClock, format_duration};

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
    /// A bounded channel behind a [`BatchStream`](crate::BatchStream).
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

struct QueryShared {
    name: String,
    description: Option<String>,
    sources: Vec<String>,
    status: watch::Sender<QueryStatus>,
    stop_requested: AtomicBool,
    progress: Mutex<Option<BatchInfo>>,
}

/// A running (or finished) query. Clones refer to the same query; dropping
/// a handle does not stop the query.
#[derive(Clone)]
pub struct QueryHandle {
    shared: Arc<QueryShared>,
    engine: Engine,
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

    /// What its last batch did.
    pub fn last_progress(&self) -> Option<BatchInfo> {
        lock(&self.shared.progress).clone()
    }

    /// Asks the query to stop before its next batch, without waiting.
    pub fn request_stop(&self) {
        self.shared.stop_requested.store(true, Ordering::SeqCst);
        self.engine.inner.wake.notify_one();
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

struct RegisteredSource {
    source: Arc<dyn Source>,
    metrics: Arc<SourceMetrics>,
}

struct PendingQuery {
    shared: Arc<QueryShared>,
    node: Arc<Node>,
    output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    NotStarted,
    Running,
    Stopping,
    Stopped,
}

struct State {
    interval: Duration,
    console: ConsoleOptions,
    sources: BTreeMap<String, RegisteredSource>,
    sinks: BTreeMap<String, Arc<dyn Sink>>,
    queries: Vec<Arc<QueryShared>>,
    pending: Vec<PendingQuery>,
    run: RunState,
    next_batch: BatchTime,
    scheduler: Option<JoinHandle<()>>,
}

#[derive(Debug, Clone, Default)]
struct Termination {
    stopped: bool,
    failure: Option<(String, Arc<Error>)>,
    live: usize,
    ever: usize,
}

impl Termination {
    fn done(&self) -> bool {
        self.stopped || self.failure.is_some() || (self.ever > 0 && self.live == 0)
    }
}

struct Inner {
    session: SessionContext,
    clock: Arc<dyn Clock>,
    notices: Notices,
    next_id: AtomicUsize,
    state: Mutex<State>,
    wake: Arc<Notify>,
    termination: watch::Sender<Termination>,
    listeners: Mutex<Vec<Arc<dyn StreamingListener>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Builds an [`Engine`].
pub struct EngineBuilder {
    interval: Duration,
    clock: Arc<dyn Clock>,
    notices: Notices,
    console: ConsoleOptions,
    config: SessionConfig,
}

impl EngineBuilder {
    /// Reads time from `clock` (a [`ManualClock`](crate::ManualClock) in tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sends notices (warnings, reconnects) to `notices`.
    pub fn notices(mut self, notices: Notices) -> Self {
        self.notices = notices;
        self
    }

    /// The console's default settings (`print`, bare `SELECT`s).
    pub fn console(mut self, console: ConsoleOptions) -> Self {
        self.console = console;
        self
    }

    /// The engine.
    pub fn build(self) -> Result<Engine> {
        if self.interval.is_zero() {
            return Err(Error::Config("the batch interval must be positive".into()));
        }
        let state = SessionStateBuilder::new()
            .with_config(self.config)
            .with_default_features()
            .build();
        Ok(Engine {
            inner: Arc::new(Inner {
                session: SessionContext::new_with_state(state),
                clock: self.clock,
                notices: self.notices,
                next_id: AtomicUsize::new(1),
                state: Mutex::new(State {
                    interval: self.interval,
                    console: self.console,
                    sources: BTreeMap::new(),
                    sinks: BTreeMap::new(),
                    queries: Vec::new(),
                    pending: Vec::new(),
                    run: RunState::NotStarted,
                    next_batch: BatchTime::from_millis(0),
                    scheduler: None,
                }),
                wake: Arc::new(Notify::new()),
                termination: watch::Sender::new(Termination::default()),
                listeners: Mutex::default(),
            }),
        })
    }
}

/// The DataFusion settings for per-batch plans: one partition (a plan is
/// re-executed per batch; parallelism comes from running queries side by
/// side, not from repartitioning small batches) and no dynamic filters
/// (they tie a plan to one execution).
fn session_config() -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_target_partitions(1)
        .with_information_schema(false);
    let options = config.options_mut();
    options.optimizer.enable_dynamic_filter_pushdown = false;
    options.sql_parser.collect_spans = true;
    config
}

/// One engine: its sources, sinks, queries and scheduler. Cheap to clone;
/// clones share everything.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("interval", &self.batch_interval())
            .finish()
    }
}

/// What `\d` shows of a source.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    /// Its name.
    pub name: String,
    /// Its connector.
    pub connector: String,
    /// Where it reads.
    pub description: String,
    /// Its schema.
    pub schema: SchemaRef,
    /// Its counters.
    pub metrics: SourceMetricsSnapshot,
}

/// What `\d` shows of a sink.
#[derive(Debug, Clone)]
pub struct SinkInfo {
    /// Its name.
    pub name: String,
    /// Its connector.
    pub connector: String,
    /// Where it writes.
    pub description: String,
}

impl Engine {
    /// An engine with batch interval `interval`, on the system clock.
    pub fn new(interval: Duration) -> Result<Self> {
        Engine::builder(interval).build()
    }

    /// A builder for an engine with batch interval `interval`.
    pub fn builder(interval: Duration) -> EngineBuilder {
        EngineBuilder {
            interval,
            clock: Arc::new(SystemClock),
            notices: Notices::stderr(),
            console: ConsoleOptions::default(),
            config: session_config(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    /// The DataFusion session that plans and runs batches: register static
    /// tables and functions here.
    pub fn session(&self) -> &SessionContext {
        &self.inner.session
    }

    /// The engine's clock.
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.inner.clock)
    }

    /// Where notices go.
    pub fn notices(&self) -> &Notices {
        &self.inner.notices
    }

    /// The batch interval.
    pub fn batch_interval(&self) -> Duration {
        self.state().interval
    }

    /// Changes the batch interval. Allowed while no query runs; batch times
    /// are then aligned to the new interval.
    pub fn set_batch_interval(&self, interval: Duration) -> Result<()> {
        if interval.is_zero() {
            return Err(Error::Config("batch.interval must be positive".into()));
        }
        let mut state = self.state();
        if interval == state.interval {
            return Ok(());
        }
        if state
            .queries
            .iter()
            .any(|q| !q.status.borrow().is_terminal())
        {
            return Err(Error::Config(format!(
                "batch.interval cannot change while queries run (it is {}); stop them first",
                format_duration(state.interval)
            )));
        }
        state.interval = interval;
        if state.run == RunState::Running {
            let zero = BatchTime::aligned_floor(self.inner.clock.now_millis(), interval);
            state.next_batch = zero.plus(interval);
            self.inner.wake.notify_one();
        }
        Ok(())
    }

    /// The console's default settings.
    pub fn console_options(&self) -> ConsoleOptions {
        self.state().console.clone()
    }

    /// Changes the console's default settings (for queries started later).
    pub fn set_console_options(&self, console: ConsoleOptions) {
        self.state().console = console;
    }

    /// Adds a listener for completed batches.
    pub fn add_listener(&self, listener: Arc<dyn StreamingListener>) {
        lock(&self.inner.listeners).push(listener);
    }

    /// Registers a source under `name`.
    pub fn register_source(&self, name: &str, source: Arc<dyn Source>) -> Result<()> {
        let mut state = self.state();
        if state.sources.contains_key(name) {
            return Err(Error::Config(format!(
                "a source named '{name}' already exists"
            )));
        }
        state.sources.insert(
            name.to_string(),
            RegisteredSource {
                source,
                metrics: Arc::default(),
            },
        );
        Ok(())
    }

    /// Creates and registers a source from `CREATE SOURCE` options; `schema`
    /// is the declared column list, if any.
    pub fn create_source(
        &self,
        name: &str,
        schema: Option<SchemaRef>,
        options: BTreeMap<String, String>,
    ) -> Result<()> {
        let source = crate::source::create(name, schema, options)?;
        self.register_source(name, source)
    }

    /// Removes a source that no running query reads.
    pub fn drop_source(&self, name: &str) -> Result<()> {
        let mut state = self.state();
        if let Some(q) = state
            .queries
            .iter()
            .find(|q| !q.status.borrow().is_terminal() && q.sources.iter().any(|s| s == name))
        {
            return Err(Error::Config(format!(
                "source '{name}' is read by running query '{}'",
                q.name
            )));
        }
        state
            .sources
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| Error::Config(format!("no source named '{name}'")))
    }

    /// Registers a sink under `name`.
    pub fn register_sink(&self, name: &str, sink: Arc<dyn Sink>) -> Result<()> {
        let mut state = self.state();
        if state.sinks.contains_key(name) {
            return Err(Error::Config(format!(
                "a sink named '{name}' already exists"
            )));
        }
        state.sinks.insert(name.to_string(), sink);
        Ok(())
    }

    /// Creates and registers a sink from `CREATE SINK` options.
    pub fn create_sink(&self, name: &str, options: BTreeMap<String, String>) -> Result<()> {
        let console = self.console_options();
        let sink = crate::sink::create(name, options, &console)?;
        self.register_sink(name, sink)
    }

    /// Removes a sink.
    pub fn drop_sink(&self, name: &str) -> Result<()> {
        self.state()
            .sinks
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| Error::Config(format!("no sink named '{name}'")))
    }

    /// The sink registered under `name`.
    pub fn sink(&self, name: &str) -> Result<Arc<dyn Sink>> {
        let state = self.state();
        state.sinks.get(name).cloned().ok_or_else(|| {
            Error::Config(format!(
                "no sink named '{name}'; sinks: {}",
                list_or_none(state.sinks.keys())
            ))
        })
    }

    /// The source registered under `name`.
    pub fn source_by_name(&self, name: &str) -> Result<Arc<dyn Source>> {
        let state = self.state();
        state
            .sources
            .get(name)
            .map(|s| Arc::clone(&s.source))
            .ok_or_else(|| {
                Error::Config(format!(
                    "no source named '{name}'; sources: {}",
                    list_or_none(state.sources.keys())
                ))
            })
    }

    /// The names of the registered sources.
    pub fn source_names(&self) -> Vec<String> {
        self.state().sources.keys().cloned().collect()
    }

    /// The memory source registered under `name`, to push batches into.
    pub fn memory_source(&self, name: &str) -> Result<MemorySource> {
        let source = self.source_by_name(name)?;
        source
            .as_any()
            .downcast_ref::<MemorySource>()
            .cloned()
            .ok_or_else(|| {
                Error::Config(format!(
                    "source '{name}' is a {} source, not a memory source",
                    source.connector()
                ))
            })
    }

    pub(crate) fn new_node(&self, schema: SchemaRef, kind: NodeKind) -> Arc<Node> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        Arc::new(Node { id, schema, kind })
    }

    /// The source `name` as a table for DataFusion plans: a scan of it reads
    /// the source's rows of the current batch.
    pub fn stream_table(&self, name: &str) -> Result<Arc<StreamTable>> {
        let schema = self.source_by_name(name)?.schema();
        let node = self.new_node(
            schema,
            NodeKind::Source {
                name: name.to_string(),
            },
        );
        Ok(Arc::new(StreamTable::new(node)))
    }

    /// The source `name` as a stream, to transform with the operator API.
    pub fn source(&self, name: &str) -> Result<DStream> {
        let table = self.stream_table(name)?;
        Ok(DStream::new(self.clone(), table.node().clone()))
    }

    pub(crate) fn register_query(
        &self,
        node: Arc<Node>,
        output: Output,
        name: Option<String>,
        description: Option<String>,
    ) -> Result<QueryHandle> {
        let sources = node.sources();
        let mut state = self.state();
        if matches!(state.run, RunState::Stopping | RunState::Stopped) {
            return Err(Error::Config(
                "the context is stopped; create a new one to run queries".into(),
            ));
        }
        for source in &sources {
            if !state.sources.contains_key(source) {
                return Err(Error::Config(format!("no source named '{source}'")));
            }
        }
        let name = name.unwrap_or_else(|| format!("q{}", state.queries.len() + 1));
        if state
            .queries
            .iter()
            .any(|q| q.name == name && !q.status.borrow().is_terminal())
        {
            return Err(Error::Config(format!(
                "a running query is already named '{name}'"
            )));
        }
        let shared = Arc::new(QueryShared {
            name,
            description,
            sources,
            status: watch::Sender::new(QueryStatus::Pending),
            stop_requested: AtomicBool::new(false),
            progress: Mutex::default(),
        });
        state.queries.push(Arc::clone(&shared));
        state.pending.push(PendingQuery {
            shared: Arc::clone(&shared),
            node,
            output,
        });
        drop(state);
        self.inner.termination.send_modify(|t| {
            t.ever += 1;
            t.live += 1;
        });
        self.inner.wake.notify_one();
        Ok(QueryHandle {
            shared,
            engine: self.clone(),
        })
    }

    /// Every query registered, running or ended.
    pub fn queries(&self) -> Vec<QueryHandle> {
        self.state()
            .queries
            .iter()
            .map(|q| QueryHandle {
                shared: Arc::clone(q),
                engine: self.clone(),
            })
            .collect()
    }

    /// The registered sources with their counters.
    pub fn sources(&self) -> Vec<SourceInfo> {
        self.state()
            .sources
            .iter()
            .map(|(name, s)| SourceInfo {
                name: name.clone(),
                connector: s.source.connector().to_string(),
                description: s.source.describe(),
                schema: s.source.schema(),
                metrics: s.metrics.snapshot(),
            })
            .collect()
    }

    /// The registered sinks.
    pub fn sinks(&self) -> Vec<SinkInfo> {
        self.state()
            .sinks
            .iter()
            .map(|(name, s)| SinkInfo {
                name: name.clone(),
                connector: s.connector().to_string(),
                description: s.describe(),
            })
            .collect()
    }

    /// True once [`Engine::start`] has run.
    pub fn is_started(&self) -> bool {
        self.state().run != RunState::NotStarted
    }

    /// Starts the scheduler: `zero` is now, aligned down to the interval;
    /// the first batch runs at `zero + I`. Starting twice does nothing.
    pub fn start(&self) -> Result<()> {
        let mut state = self.state();
        match state.run {
            RunState::Running => return Ok(()),
            RunState::Stopping | RunState::Stopped => {
                return Err(Error::Config(
                    "the context was stopped and cannot start again".into(),
                ));
            }
            RunState::NotStarted => {}
        }
        let zero = BatchTime::aligned_floor(self.inner.clock.now_millis(), state.interval);
        state.next_batch = zero.plus(state.interval);
        state.run = RunState::Running;
        let task = tokio::spawn(scheduler(
            Arc::downgrade(&self.inner),
            Arc::clone(&self.inner.clock),
            Arc::clone(&self.inner.wake),
        ));
        state.scheduler = Some(task);
        Ok(())
    }

    /// Stops every query and the scheduler. `Graceful` lets the running batch
    /// finish; `Immediate` abandons it.
    pub async fn stop(&self, mode: StopMode) -> Result<()> {
        let task = {
            let mut state = self.state();
            match state.run {
                RunState::NotStarted | RunState::Stopped => {
                    state.run = RunState::Stopped;
                    let pending: Vec<PendingQuery> = state.pending.drain(..).collect();
                    drop(state);
                    for q in pending {
                        self.end_query(&q.shared, QueryStatus::Stopped);
                    }
                    self.inner.termination.send_modify(|t| t.stopped = true);
                    return Ok(());
                }
                RunState::Running | RunState::Stopping => {
                    state.run = RunState::Stopping;
                    state.scheduler.take()
                }
            }
        };
        self.inner.wake.notify_one();
        if let Some(task) = task {
            if mode == StopMode::Immediate {
                task.abort();
            }
            let _ = task.await;
        }
        // Whatever the scheduler did not get to end is stopped now.
        let queries = {
            let mut state = self.state();
            state.run = RunState::Stopped;
            state.pending.clear();
            state.queries.clone()
        };
        for q in queries {
            if !q.status.borrow().is_terminal() {
                self.end_query(&q, QueryStatus::Stopped);
            }
        }
        self.inner.termination.send_modify(|t| t.stopped = true);
        Ok(())
    }

    /// Waits until the engine is stopped, a query fails (its error), or every
    /// query has ended (bounded input). Without any query, waits for `stop`.
    pub async fn await_termination(&self) -> Result<()> {
        let mut rx = self.inner.termination.subscribe();
        let t = rx
            .wait_for(Termination::done)
            .await
            .map(|t| t.clone())
            .unwrap_or_default();
        match t.failure {
            Some((query, cause)) => Err(Error::Query { query, cause }),
            None => Ok(()),
        }
    }

    /// [`Engine::await_termination`] for at most `timeout`; `Ok(false)` if
    /// it was still running.
    pub async fn await_termination_timeout(&self, timeout: Duration) -> Result<bool> {
        match tokio::time::timeout(timeout, self.await_termination()).await {
            Ok(result) => result.map(|()| true),
            Err(_) => Ok(false),
        }
    }

    fn end_query(&self, query: &QueryShared, status: QueryStatus) {
        if query.status.borrow().is_terminal() {
            return;
        }
        let failure = match &status {
            QueryStatus::Failed(e) => Some((query.name.clone(), Arc::clone(e))),
            _ => None,
        };
        query.status.send_replace(status);
        self.inner.termination.send_modify(|t| {
            t.live = t.live.saturating_sub(1);
            if t.failure.is_none() {
                t.failure = failure;
            }
        });
    }
}

fn list_or_none<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// A query the scheduler runs.
struct RunningQuery {
    shared: Arc<QueryShared>,
    order: Vec<Arc<Node>>,
    operators: HashMap<NodeId, StatelessOperator>,
    output: Output,
    batches: u64,
}

/// An open source and how many running queries read it.
struct ActiveReader {
    reader: Box<dyn SourceReader>,
    users: usize,
}

/// The scheduler task. It holds the engine weakly: when every handle to
/// the engine is gone, it ends.
async fn scheduler(weak: Weak<Inner>, clock: Arc<dyn Clock>, wake: Arc<Notify>) {
    let mut running: Vec<RunningQuery> = Vec::new();
    let mut readers: BTreeMap<String, ActiveReader> = BTreeMap::new();
    loop {
        let next = {
            let Some(inner) = weak.upgrade() else { return };
            let engine = Engine { inner };
            engine.reap_stopped(&mut running, &mut readers);
            let state = engine.state();
            if state.run != RunState::Running {
                return;
            }
            state.next_batch
        };
        tokio::select! {
            () = clock.wait_until(next.millis()) => {}
            () = wake.notified() => continue,
        }
        let Some(inner) = weak.upgrade() else { return };
        let engine = Engine { inner };
        let (pending, interval) = {
            let mut state = engine.state();
            if state.next_batch != next || state.run != RunState::Running {
                continue;
            }
            state.next_batch = next.plus(state.interval);
            (std::mem::take(&mut state.pending), state.interval)
        };
        for query in pending {
            match engine
                .activate(query, next.minus(interval), interval, &mut readers)
                .await
            {
                Ok(query) => running.push(query),
                Err((shared, e)) => engine.end_query(&shared, QueryStatus::Failed(Arc::new(e))),
            }
        }
        engine.run_batch(next, &mut running, &mut readers).await;
    }
}

impl Engine {
    /// Compiles a query's operators and opens its sources.
    async fn activate(
        &self,
        pending: PendingQuery,
        start: BatchTime,
        interval: Duration,
        readers: &mut BTreeMap<String, ActiveReader>,
    ) -> std::result::Result<RunningQuery, (Arc<QueryShared>, Error)> {
        let PendingQuery {
            shared,
            node,
            output,
        } = pending;
        if shared.stop_requested.load(Ordering::SeqCst) {
            self.end_query(&shared, QueryStatus::Stopped);
            return Err((shared, Error::Internal("stopped before start".into())));
        }
        let order = node.post_order();
        let mut operators = HashMap::new();
        let session = self.inner.session.state();
        for node in &order {
            if let NodeKind::Stateless { plan, .. } = &node.kind {
                match StatelessOperator::compile(&session, plan).await {
                    Ok(op) => {
                        operators.insert(node.id, op);
                    }
                    Err(e) => return Err((shared, e)),
                }
            }
        }
        for name in &shared.sources {
            if let Some(active) = readers.get_mut(name) {
                active.users += 1;
                continue;
            }
            let (source, metrics) = {
                let state = self.state();
                match state.sources.get(name) {
                    Some(s) => (Arc::clone(&s.source), Arc::clone(&s.metrics)),
                    None => {
                        drop(state);
                        let e = Error::Config(format!("source '{name}' was dropped"));
                        self.release_sources(&shared.sources, readers);
                        return Err((shared, e));
                    }
                }
            };
            let ctx = SourceContext {
                name: name.clone(),
                start,
                interval,
                metrics,
                notices: self.inner.notices.clone(),
            };
            match source.open(ctx) {
                Ok(reader) => {
                    readers.insert(name.clone(), ActiveReader { reader, users: 1 });
                }
                Err(e) => {
                    self.release_sources(&shared.sources, readers);
                    return Err((shared, e));
                }
            }
        }
        shared.status.send_replace(QueryStatus::Running);
        Ok(RunningQuery {
            shared,
            order,
            operators,
            output,
            batches: 0,
        })
    }

    /// Releases one query's hold on its sources; a source nobody reads is closed.
    fn release_sources(&self, sources: &[String], readers: &mut BTreeMap<String, ActiveReader>) {
        for name in sources {
            if let Some(active) = readers.get_mut(name) {
                active.users -= 1;
                if active.users == 0 {
                    readers.remove(name);
                }
            }
        }
    }

    /// Ends queries whose stop was requested, and pending ones too.
    fn reap_stopped(
        &self,
        running: &mut Vec<RunningQuery>,
        readers: &mut BTreeMap<String, ActiveReader>,
    ) {
        let stopped_pending: Vec<PendingQuery> = {
            let mut state = self.state();
            let (stopped, keep) = std::mem::take(&mut state.pending)
                .into_iter()
                .partition(|q| q.shared.stop_requested.load(Ordering::SeqCst));
            state.pending = keep;
            stopped
        };
        for q in stopped_pending {
            self.end_query(&q.shared, QueryStatus::Stopped);
        }
        let mut i = 0;
        while i < running.len() {
            if running[i].shared.stop_requested.load(Ordering::SeqCst) {
                let q = running.remove(i);
                self.release_sources(&q.shared.sources, readers);
                self.end_query(&q.shared, QueryStatus::Stopped);
            } else {
                i += 1;
            }
        }
    }

    /// Runs batch `time` of every running query.
    async fn run_batch(
        &self,
        time: BatchTime,
        running: &mut Vec<RunningQuery>,
        readers: &mut BTreeMap<String, ActiveReader>,
    ) {
        let delay =
            Duration::from_millis((self.inner.clock.now_millis() - time.millis()).max(0) as u64);
        // Each source is asked once; every query reading it gets the same batch.
        let mut polled: BTreeMap<String, std::result::Result<SourceBatch, Arc<Error>>> =
            BTreeMap::new();
        for (name, active) in readers.iter_mut() {
            polled.insert(
                name.clone(),
                active.reader.next_batch(time).map_err(Arc::new),
            );
            let skipped = self
                .state()
                .sources
                .get(name)
                .and_then(|s| s.metrics.take_skipped());
            if let Some(report) = skipped {
                self.inner.notices.send(format!(
                    "source '{name}': skipped {} malformed record{} in batch {time}; first at {}",
                    report.count,
                    if report.count == 1 { "" } else { "s" },
                    report.first
                ));
            }
        }
        let listeners = lock(&self.inner.listeners).clone();
        let mut ended = Vec::new();
        for (index, query) in running.iter_mut().enumerate() {
            let started = Instant::now();
            let outcome = query.run_batch(time, &polled).await;
            let (status, input_rows, output_rows) = match outcome {
                Ok(BatchOutcome {
                    input_rows,
                    output_rows,
                    end_of_input,
                    consumer_gone,
                }) => {
                    let status = if consumer_gone {
                        Some(QueryStatus::Stopped)
                    } else if end_of_input {
                        Some(QueryStatus::Finished)
                    } else {
                        None
                    };
                    (status, input_rows, output_rows)
                }
                Err(e) => {
                    let e = Arc::new(e);
                    if let Output::Channel(tx) = &query.output {
                        let _ = tx
                            .send(Err(Error::Query {
                                query: query.shared.name.clone(),
                                cause: Arc::clone(&e),
                            }))
                            .await;
                    }
                    (Some(QueryStatus::Failed(e)), 0, 0)
                }
            };
            query.batches += 1;
            let info = BatchInfo {
                batch_time: time,
                input_rows,
                output_rows,
                scheduling_delay: delay,
                processing_time: started.elapsed(),
                batches: query.batches,
            };
            *lock(&query.shared.progress) = Some(info.clone());
            for listener in &listeners {
                listener.on_batch_completed(&query.shared.name, &info);
            }
            if let Some(status) = status {
                ended.push((index, status));
            }
        }
        for (index, status) in ended.into_iter().rev() {
            let query = running.remove(index);
            self.release_sources(&query.shared.sources, readers);
            self.end_query(&query.shared, status);
        }
    }
}

struct BatchOutcome {
    input_rows: u64,
    output_rows: u64,
    end_of_input: bool,
    consumer_gone: bool,
}

impl RunningQuery {
    /// Runs the operators on this batch and delivers the output.
    async fn run_batch(
        &mut self,
        time: BatchTime,
        polled: &BTreeMap<String, std::result::Result<SourceBatch, Arc<Error>>>,
    ) -> Result<BatchOutcome> {
        let mut values: HashMap<NodeId, RecordBatch> = HashMap::new();
        let mut input_rows = 0;
        let mut end_of_input = true;
        for node in &self.order {
            let batch = match &node.kind {
                NodeKind::Source { name } => match polled.get(name) {
                    Some(Ok(b)) => {
                        input_rows += b.batch.num_rows() as u64;
                        end_of_input &= b.end_of_input;
                        b.batch.clone()
                    }
                    Some(Err(e)) => return Err(Error::Shared(Arc::clone(e))),
                    None => return Err(Error::Internal(format!("source '{name}' was not polled"))),
                },
                NodeKind::Stateless { .. } => {
                    let op = self
                        .operators
                        .get_mut(&node.id)
                        .ok_or_else(|| Error::Internal("operator not compiled".into()))?;
                    op.run(|id| values.get(&id).cloned()).await?
                }
            };
            values.insert(node.id, batch);
        }
        let root = self.order.last().map(|n| n.id).unwrap_or_default();
        let output = values
            .remove(&root)
            .ok_or_else(|| Error::Internal("no output".into()))?;
        let output_rows = output.num_rows() as u64;
        let mut consumer_gone = false;
        match &mut self.output {
            Output::Callback(f) => f(time, output).map_err(|source| Error::Callback {
                time: time.millis(),
                source,
            })?,
            Output::Channel(tx) => consumer_gone = tx.send(Ok((time, output))).await.is_err(),
            Output::Sink(writer) => writer.write(time, &output)?,
        }
        Ok(BatchOutcome {
            input_rows,
            output_rows,
            end_of_input,
            consumer_gone,
        })
    }
}
