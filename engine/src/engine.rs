//! The engine's public API: its sources, sinks and queries, its settings,
//! and its lifecycle (start, stop, await termination). Batches are run by
//! the runtime (`runtime/`), which shares the engine's state
//! (`runtime/shared.rs`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use tokio::sync::{Notify, watch};

use crate::checkpoint::CheckpointDir;
use crate::error::{Error, Result};
use crate::explain::QueryGraph;
use crate::graph::{Node, NodeKind};
use crate::metrics::{QueryRecord, SourceMetricsSnapshot};
use crate::notice::Notices;
use crate::plan::StreamTable;
use crate::query::{Output, QueryHandle, QueryShared, QueryStatus, StopMode, StreamingListener};
use crate::runtime::shared::{
    CheckpointSettings, Inner, PendingQuery, RegisteredSource, RegisteredTable, RunState, State,
    Termination,
};
use crate::sink::{ConsoleOptions, Sink};
use crate::source::{MemorySource, Source};
use crate::storage::StorageOptions;
use crate::sync::lock;
use crate::table::{StaticTable, StaticTableProvider, TableInfo};
use crate::time::{BatchTime, Clock, SystemClock, format_duration};
use crate::trigger::Trigger;
use crate::watermark::Watermark;

/// Whole state generations come every this many by default (0: only the
/// parts compaction picks are written again; see `checkpoint/chain.rs`).
const DEFAULT_FULL_EVERY: u64 = 0;

/// Builds an [`Engine`].
pub struct EngineBuilder {
    interval: Duration,
    clock: Arc<dyn Clock>,
    notices: Notices,
    console: ConsoleOptions,
    config: SessionConfig,
}

impl EngineBuilder {
    /// Reads time from `clock` (a [`ManualClock`](crate::time::ManualClock) in tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sends notices (warnings, reconnects) to `notices`.
    pub fn notices(mut self, notices: Notices) -> Self {
        self.notices = notices;
        self
    }

    /// The console's default settings (`print`, and queries printed to it).
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
        let session = SessionContext::new_with_state(state);
        // These rules push struct field access (`window['start']`) towards
        // file scans for column pruning; per-batch plans read in-memory
        // batches, and over a window's output the rules build a schema with
        // a name both qualified and unqualified, which DataFusion rejects.
        for rule in ["extract_leaf_expressions", "push_down_leaf_projections"] {
            session.remove_optimizer_rule(rule);
        }
        Ok(Engine {
            inner: Arc::new(Inner {
                session,
                clock: self.clock,
                notices: self.notices,
                next_id: AtomicUsize::new(1),
                state: Mutex::new(State {
                    interval: self.interval,
                    console: self.console,
                    idle_timeout: None,
                    parallelism: 1,
                    checkpoint: None,
                    storage: StorageOptions::new(),
                    sources: BTreeMap::new(),
                    sinks: BTreeMap::new(),
                    tables: BTreeMap::new(),
                    queries: Vec::new(),
                    pending: Vec::new(),
                    run: RunState::NotStarted,
                    next_batch: BatchTime::from_millis(0),
                    catch_up: None,
                    trigger: Trigger::default(),
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
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("interval", &self.batch_interval())
            .finish()
    }
}

/// A registered source, as the engine describes it.
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
    /// Its watermark declaration, if it has event time.
    pub watermark: Option<Watermark>,
}

/// A registered sink, as the engine describes it.
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

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state()
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

    /// When batches run ([`Trigger`]); set before the engine starts.
    pub fn set_trigger(&self, trigger: Trigger) -> Result<()> {
        let mut state = self.state();
        if state.run != RunState::NotStarted {
            return Err(Error::Config(
                "the trigger is set before the context starts".into(),
            ));
        }
        state.trigger = trigger;
        Ok(())
    }

    /// When batches run.
    pub fn trigger(&self) -> Trigger {
        self.state().trigger
    }

    /// The switches of every console sink of this engine: pause, resume
    /// and limit their output without stopping their queries.
    pub fn console_control(&self) -> crate::sink::ConsoleControl {
        self.state().console.control.clone()
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
                watermark: None,
            },
        );
        Ok(())
    }

    /// Registers a static table read from files: `provider` (DataFusion's
    /// listing table for `location`, say) is read now and held; it is read
    /// again when the files at `location` change (see [`crate::table`]).
    pub async fn register_file_table(
        &self,
        name: &str,
        provider: Arc<dyn TableProvider>,
        location: &str,
        format: &str,
    ) -> Result<()> {
        self.check_table_name(name)?;
        let local = match location.strip_prefix("file://") {
            Some(path) => Some(PathBuf::from(path)),
            None if location.contains("://") => None,
            None => Some(PathBuf::from(location)),
        };
        let table = StaticTable::load(
            name,
            format!("{} {location}", format.to_ascii_lowercase()),
            provider,
            local,
            self.notices().clone(),
            &self.session().state(),
        )
        .await?;
        self.session()
            .register_table(name, Arc::new(StaticTableProvider(Arc::clone(&table))))?;
        self.state()
            .tables
            .insert(name.to_string(), RegisteredTable::Files(table));
        Ok(())
    }

    /// Makes the object store of `location` (`s3://bucket/…`) known to
    /// DataFusion, built from the environment and the engine's `SET s3.…`
    /// options, so that `CREATE EXTERNAL TABLE … LOCATION 's3://…'` can
    /// read it; nothing for a local path.
    pub fn register_object_store_of(&self, location: &str) -> Result<()> {
        if !crate::storage::is_url(location) {
            return Ok(());
        }
        let dir = crate::storage::ObjectDir::open(location, &self.storage_options())?;
        let (root, store) = dir.store();
        let url = datafusion::execution::object_store::ObjectStoreUrl::parse(&root)?;
        self.session()
            .runtime_env()
            .register_object_store(url.as_ref(), store);
        Ok(())
    }

    /// Registers any DataFusion table under `name`, for queries to join
    /// with; DataFusion scans it on every batch (see [`crate::table`]).
    pub fn register_table(&self, name: &str, provider: Arc<dyn TableProvider>) -> Result<()> {
        self.check_table_name(name)?;
        self.session().register_table(name, Arc::clone(&provider))?;
        self.state()
            .tables
            .insert(name.to_string(), RegisteredTable::Provider(provider));
        Ok(())
    }

    fn check_table_name(&self, name: &str) -> Result<()> {
        let state = self.state();
        if state.sources.contains_key(name) {
            return Err(Error::Config(format!(
                "a source named '{name}' already exists"
            )));
        }
        if state.tables.contains_key(name) {
            return Err(Error::Config(format!(
                "a table named '{name}' already exists"
            )));
        }
        Ok(())
    }

    /// Removes a static table (queries already running keep reading it).
    pub fn drop_table(&self, name: &str) -> Result<()> {
        self.state()
            .tables
            .remove(name)
            .ok_or_else(|| Error::Config(format!("no table named '{name}'")))?;
        self.session().deregister_table(name)?;
        Ok(())
    }

    /// The static table `name`, as queries scan it.
    pub(crate) fn table_provider(&self, name: &str) -> Result<Arc<dyn TableProvider>> {
        match self.state().tables.get(name) {
            Some(RegisteredTable::Files(table)) => {
                Ok(Arc::new(StaticTableProvider(Arc::clone(table))))
            }
            Some(RegisteredTable::Provider(provider)) => Ok(Arc::clone(provider)),
            None => Err(Error::Config(format!("no table named '{name}'"))),
        }
    }

    /// The static tables.
    pub fn tables(&self) -> Vec<TableInfo> {
        self.state()
            .tables
            .iter()
            .map(|(name, table)| match table {
                RegisteredTable::Files(table) => table.info(),
                RegisteredTable::Provider(provider) => TableInfo {
                    name: name.clone(),
                    description: "a DataFusion table, scanned every batch".into(),
                    schema: provider.schema(),
                    rows: None,
                    loads: 0,
                    reloads_on_change: false,
                    failed: None,
                },
            })
            .collect()
    }

    /// Declares `name`'s event-time column and allowed disorder
    /// (a [`Watermark`]: the column and its delay): what event-time
    /// windows over the source close on.
    pub fn set_watermark(&self, name: &str, watermark: Watermark) -> Result<()> {
        let mut state = self.state();
        let source = state
            .sources
            .get_mut(name)
            .ok_or_else(|| Error::Config(format!("no source named '{name}'")))?;
        watermark.check(name, &source.source.schema())?;
        source.watermark = Some(watermark);
        Ok(())
    }

    /// The watermark declared on source `name`, if any.
    pub fn watermark(&self, name: &str) -> Option<Watermark> {
        self.state()
            .sources
            .get(name)
            .and_then(|s| s.watermark.clone())
    }

    /// Sets `watermark.idle.timeout`: a source that delivers no rows for
    /// this long stops holding back the watermark of an operator that reads
    /// other sources too (zero: never, the default, as in Flink). Applies to
    /// queries started later.
    pub fn set_watermark_idle_timeout(&self, timeout: Duration) {
        self.state().idle_timeout = Some(timeout).filter(|t| !t.is_zero());
    }

    /// Sets `checkpoint.dir`: queries started later save their state and
    /// progress in `<dir>/<query name>`, and resume from there when the
    /// directory holds an earlier run of the same query (see
    /// [`crate::checkpoint`]). `None` turns checkpoints off.
    pub fn set_checkpoint_dir(&self, dir: Option<PathBuf>) {
        let mut state = self.state();
        let every = state.checkpoint.as_ref().map_or(1, |c| c.every);
        let full_every = state
            .checkpoint
            .as_ref()
            .map_or(DEFAULT_FULL_EVERY, |c| c.full_every);
        let storage = state.storage.clone();
        state.checkpoint = dir.map(|dir| CheckpointSettings {
            dir,
            every,
            full_every,
            storage,
        });
    }

    /// Sets `checkpoint.full_every`: every `generations` state saves, one
    /// writes the whole state; the others write only what changed since the
    /// one before and what compaction picks (default 0: never whole; 1:
    /// every one whole). See `checkpoint/chain.rs`.
    pub fn set_checkpoint_full_every(&self, generations: u64) -> Result<()> {
        let mut state = self.state();
        match state.checkpoint.as_mut() {
            Some(c) => c.full_every = generations,
            None => {
                return Err(Error::Config(
                    "set checkpoint.dir before checkpoint.full_every".into(),
                ));
            }
        }
        Ok(())
    }

    /// Sets `checkpoint.interval`: state is saved every `batches` batches
    /// (default 1, every batch; progress is recorded every batch). Between
    /// two saves, a restart resumes from the older state.
    pub fn set_checkpoint_interval(&self, batches: u64) -> Result<()> {
        if batches == 0 {
            return Err(Error::Config(
                "checkpoint.interval must be at least 1 batch".into(),
            ));
        }
        let mut state = self.state();
        match state.checkpoint.as_mut() {
            Some(c) => c.every = batches,
            None => {
                return Err(Error::Config(
                    "set checkpoint.dir before checkpoint.interval".into(),
                ));
            }
        }
        Ok(())
    }

    /// Sets an object-store option (`SET s3.endpoint = …`; the key without
    /// its `s3.` prefix is any `object_store` knows, see
    /// [`crate::storage`]) for the checkpoint directory and the files
    /// sources and sinks created after; a source's or sink's own options
    /// win over these.
    pub fn set_storage_option(&self, key: &str, value: &str) {
        let mut state = self.state();
        state.storage.insert(key.to_string(), value.to_string());
        let storage = state.storage.clone();
        if let Some(checkpoint) = state.checkpoint.as_mut() {
            checkpoint.storage = storage;
        }
    }

    /// The object-store options set with [`Engine::set_storage_option`].
    pub fn storage_options(&self) -> StorageOptions {
        self.state().storage.clone()
    }

    /// The current `checkpoint.dir`.
    pub fn checkpoint_dir(&self) -> Option<PathBuf> {
        self.state().checkpoint.as_ref().map(|c| c.dir.clone())
    }

    /// Sets `parallelism`: how many tasks run each keyed operator (window
    /// and running aggregates by their group keys) of queries started
    /// later, side by side on the runtime's threads. 1 (the default) runs
    /// every operator as one. At most [`crate::key_groups::KEY_GROUPS`]; a
    /// query restored from a checkpoint may use another parallelism than
    /// the one that wrote it (see `operators/partitioned.rs`).
    pub fn set_parallelism(&self, tasks: usize) -> Result<()> {
        if !(1..=crate::key_groups::KEY_GROUPS as usize).contains(&tasks) {
            return Err(Error::Plan(format!(
                "parallelism is a number of tasks from 1 to {}, not {tasks}",
                crate::key_groups::KEY_GROUPS
            )));
        }
        self.state().parallelism = tasks;
        Ok(())
    }

    /// The current `parallelism`.
    pub fn parallelism(&self) -> usize {
        self.state().parallelism
    }

    /// The current `watermark.idle.timeout`.
    pub fn watermark_idle_timeout(&self) -> Option<Duration> {
        self.state().idle_timeout
    }

    /// Creates and registers a source from its connector options; `schema`
    /// is the declared column list, if any.
    pub fn create_source(
        &self,
        name: &str,
        schema: Option<SchemaRef>,
        options: BTreeMap<String, String>,
    ) -> Result<()> {
        let storage = self.storage_options();
        let source = crate::source::create(name, schema, options, &storage)?;
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

    /// Creates and registers a sink from its connector options.
    pub fn create_sink(&self, name: &str, options: BTreeMap<String, String>) -> Result<()> {
        let console = self.console_options();
        let storage = self.storage_options();
        let sink = crate::sink::create(name, options, &console, &storage)?;
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

    /// A new node of the operator graph, reading `inputs`.
    pub(crate) fn new_node(
        &self,
        schema: SchemaRef,
        inputs: Vec<Arc<Node>>,
        kind: NodeKind,
    ) -> Arc<Node> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        Arc::new(Node {
            id,
            schema,
            inputs,
            kind,
        })
    }

    /// The source `name` as a table for DataFusion plans: a scan of it reads
    /// the source's rows of the current batch.
    pub fn stream_table(&self, name: &str) -> Result<Arc<StreamTable>> {
        let schema = self.source_by_name(name)?.schema();
        let node = self.new_node(
            schema,
            Vec::new(),
            NodeKind::Source {
                name: name.to_string(),
            },
        );
        Ok(Arc::new(StreamTable::new(node)))
    }

    pub(crate) fn register_query(
        &self,
        node: Arc<Node>,
        output: Output,
        name: Option<String>,
        description: Option<String>,
        destination: String,
    ) -> Result<QueryHandle> {
        let sources = node.sources();
        let graph = self.graph_of(&node);
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
            destination,
            graph,
            record: QueryRecord::default(),
            status: watch::Sender::new(QueryStatus::Pending),
            stop_requested: AtomicBool::new(false),
            progress: watch::Sender::new(None),
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
            wake: Arc::clone(&self.inner.wake),
        })
    }

    /// The operator graph of the query whose output is `node`.
    pub(crate) fn graph_of(&self, node: &Arc<Node>) -> QueryGraph {
        let state = self.state();
        QueryGraph::of(node, |name| match state.sources.get(name) {
            Some(s) => format!("{}: {}", s.source.connector(), s.source.describe()),
            None => "(not registered)".into(),
        })
    }

    /// Every query registered, running or ended.
    pub fn queries(&self) -> Vec<QueryHandle> {
        self.state()
            .queries
            .iter()
            .map(|q| QueryHandle {
                shared: Arc::clone(q),
                wake: Arc::clone(&self.inner.wake),
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
                watermark: s.watermark.clone(),
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
        if state.trigger == Trigger::AvailableNow {
            let endless: Vec<String> = state
                .pending
                .iter()
                .flat_map(|q| q.shared.sources.iter())
                .filter_map(|name| {
                    let source = &state.sources.get(name)?.source;
                    source
                        .available_now()
                        .err()
                        .map(|why| format!("'{name}' ({}): {why}", source.connector()))
                })
                .collect();
            if !endless.is_empty() {
                return Err(Error::Config(format!(
                    "trigger 'available-now' reads what is available and ends, but {} never end{}: {}",
                    if endless.len() == 1 {
                        "a source"
                    } else {
                        "sources"
                    },
                    if endless.len() == 1 { "s" } else { "" },
                    endless.join("; ")
                )));
            }
        }
        let zero = BatchTime::aligned_floor(self.inner.clock.now_millis(), state.interval);
        state.next_batch = zero.plus(state.interval);
        // A checkpointed query resumes after the batch of its saved state:
        // batches after it run again (with the logged input) and the batches
        // whose times passed while it was down run first.
        if let Some(settings) = state.checkpoint.clone() {
            let names: Vec<String> = state
                .pending
                .iter()
                .map(|q| q.shared.name.clone())
                .collect();
            for name in names {
                if let Some(last) = CheckpointDir::new(settings.query_dir(&name)?).resume_point()? {
                    state.next_batch = state.next_batch.min(last.plus(state.interval));
                }
            }
            // The down time: from the first batch after the checkpoint to
            // the last batch time that passed before this start.
            state.catch_up =
                crate::runtime::catch_up::CatchUp::new(state.next_batch, zero, state.interval);
        }
        state.run = RunState::Running;
        let task = tokio::spawn(crate::runtime::scheduler::run(
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

    pub(crate) fn end_query(&self, query: &QueryShared, status: QueryStatus) {
        self.inner.end_query(query, status);
    }
}

pub(crate) fn list_or_none<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}
