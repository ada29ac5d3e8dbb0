//! Brooklet: continuous SQL over discretized streams.
//!
//! Spark Streaming's model — every batch interval, each source's new rows
//! become one Arrow batch, and a continuous query runs on it — written in
//! SQL and executed on DataFusion. [`StreamingContext`] is the one way in,
//! used by the REPL, by `brooklet run`, and by programs that embed Brooklet:
//!
//! ```no_run
//! use std::time::Duration;
//! use brooklet::prelude::*;
//!
//! # async fn demo() -> brooklet::Result<()> {
//! let ctx = StreamingContext::new(Duration::from_secs(1));
//! ctx.execute("CREATE SOURCE lines (line TEXT) WITH (connector='socket', hostname='127.0.0.1', port=7777, format='lines')").await?;
//! let errors = ctx.sql("SELECT line FROM lines WHERE line LIKE '%error%'").await?;
//! errors.foreach_batch(|time, batch| {
//!     println!("{time}: {} error lines", batch.num_rows());
//!     Ok(())
//! })?;
//! ctx.start().await?;
//! ctx.await_termination().await?;
//! # Ok(()) }
//! ```
//!
//! Programs that write no SQL use the operator-level API of the engine
//! ([`StreamingContext::source`] gives a [`DStream`] to transform).
//!
//! Everything the `brooklet` binary needs is here, at the root: the context,
//! what it lists ([`StreamingContext::sources`], [`StreamingContext::sinks`]),
//! [`parse_duration`] and [`format_duration`], and
//! [`statement_is_complete`] for the REPL. The inner crates stay re-exported
//! whole ([`engine`], [`sql`]) for embedders who want more of them; the
//! binary never names them (a test in `cli/tests` checks).

#![warn(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

pub use brooklet_engine as engine;
pub use brooklet_engine::datafusion;
pub use brooklet_engine::explain::{GraphNode, OperatorDescription, QueryGraph, format_bytes};
pub use brooklet_engine::metrics::{QueryTotals, RETAINED_BATCHES};
pub use brooklet_engine::sink::CONNECTORS as SINK_CONNECTORS;
pub use brooklet_engine::sink::{ConsoleControl, ConsoleFormat, ConsoleOptions};
pub use brooklet_engine::source::CONNECTORS as SOURCE_CONNECTORS;
pub use brooklet_engine::source::{MemorySource, Source};
pub use brooklet_engine::stack::RUNTIME_STACK_BYTES;
pub use brooklet_engine::time::format_duration;
pub use brooklet_engine::{
    Assigner, BatchInfo, BatchStream, BatchTime, Clock, DStream, EmitMode, EventWindow,
    ManualClock, Notices, QueryHandle, QueryStatus, RecordBatch, RunningSpec, SchemaRef, SinkInfo,
    SourceInfo, SourceMetricsSnapshot, StopMode, StreamingListener, SystemClock, TableInfo,
    Trigger, Watermark, WindowEmit, WindowSpec,
};
pub use brooklet_engine::{IntervalBounds, JoinCondition, StorageHealth, storage_health};
pub use brooklet_sql as sql;
pub use brooklet_sql::complete::{Highlight, highlight};
pub use brooklet_sql::is_complete as statement_is_complete;
pub use brooklet_sql::{Error, Location, Result};

use brooklet_engine::{Engine, EngineBuilder};
use brooklet_sql::{Planned, Planner, parse_statement_text, parse_statements};
use datafusion::prelude::SessionContext;

/// The names most programs need.
pub mod prelude {
    pub use crate::datafusion::prelude::{col, lit};
    pub use crate::{
        BatchStream, BatchTime, DStream, Error, EventWindow, Executed, IntervalBounds,
        JoinCondition, ManualClock, QueryHandle, RecordBatch, Result, RunningSpec, SinkInfo,
        SourceInfo, StopMode, StreamingContext, Trigger, Watermark, WindowEmit, WindowSpec,
        format_duration, parse_duration, statement_is_complete,
    };
}

/// A duration as written in SQL and on the command line: a number and a
/// unit, `1 second`, `200 ms`, `1.5 s`, `10 minutes` (what
/// `SET batch.interval` and `--batch-interval` take). [`format_duration`]
/// writes one back.
pub fn parse_duration(text: &str) -> Result<Duration> {
    Ok(brooklet_engine::time::parse_duration(text)?)
}

/// What a statement given to [`StreamingContext::execute`] did.
#[derive(Debug)]
pub enum Executed {
    /// DDL or `SET`: a short confirmation.
    Done(String),
    /// What an `EXPLAIN` or `SHOW QUERIES` asked to see.
    Shown(String),
    /// A bare `SELECT` became a query printing to the console. It runs once
    /// the context starts.
    Select(QueryHandle),
    /// An `INSERT INTO` became a query writing to its sink. It runs once the
    /// context starts.
    Insert(QueryHandle),
}

/// The streaming context: one engine, one SQL catalog. Cheap to clone
/// (clones share everything), `Send` and `Sync`.
#[derive(Clone, Debug)]
pub struct StreamingContext {
    planner: Planner,
}

/// Builds a [`StreamingContext`].
pub struct StreamingContextBuilder {
    engine: EngineBuilder,
    ui: Option<String>,
    trigger: Trigger,
    parallelism: usize,
}

impl StreamingContextBuilder {
    /// Reads time from `clock`; with a [`ManualClock`], batches run only when
    /// the clock is advanced past their times.
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.engine = self.engine.clock(Arc::new(clock));
        self
    }

    /// Sends notices (warnings, reconnects) to `notices` instead of stderr.
    pub fn notices(mut self, notices: Notices) -> Self {
        self.engine = self.engine.notices(notices);
        self
    }

    /// The console's settings for bare `SELECT`s and `print`.
    pub fn console(mut self, console: ConsoleOptions) -> Self {
        self.engine = self.engine.console(console);
        self
    }

    /// Serves the status page, `/metrics` and `/api/queries` at `address`
    /// (`127.0.0.1:4040`; port 0 picks a free one): see
    /// [`StreamingContext::serve_ui`].
    pub fn ui(mut self, address: &str) -> Self {
        self.ui = Some(address.to_string());
        self
    }

    /// When batches run: on the clock (the default), or
    /// [`Trigger::AvailableNow`]: back to back until the input available
    /// now is read, then the queries end (`SET trigger`, `--available-now`).
    pub fn trigger(mut self, trigger: Trigger) -> Self {
        self.trigger = trigger;
        self
    }

    /// Runs each keyed operator (window and running aggregates by their
    /// group keys, joins by their equality conditions) as `tasks` tasks
    /// side by side (`SET parallelism`, `--parallelism`); 1, the default,
    /// runs each as one. Outputs are the same, per batch, at every
    /// parallelism.
    pub fn parallelism(mut self, tasks: usize) -> Self {
        self.parallelism = tasks;
        self
    }

    /// The context.
    pub fn build(self) -> Result<StreamingContext> {
        let engine = self.engine.build()?;
        engine.set_trigger(self.trigger)?;
        engine.set_parallelism(self.parallelism)?;
        let ctx = StreamingContext {
            planner: Planner::new(engine),
        };
        if let Some(address) = &self.ui {
            ctx.serve_ui(address)?;
        }
        Ok(ctx)
    }
}

impl StreamingContext {
    /// A context with batch interval `batch_interval` on the system clock.
    ///
    /// # Panics
    /// If `batch_interval` is zero.
    pub fn new(batch_interval: Duration) -> Self {
        match StreamingContext::builder(batch_interval).build() {
            Ok(ctx) => ctx,
            Err(e) => panic!("StreamingContext::new: {e}"),
        }
    }

    /// A builder for a context with batch interval `batch_interval`.
    pub fn builder(batch_interval: Duration) -> StreamingContextBuilder {
        StreamingContextBuilder {
            engine: Engine::builder(batch_interval),
            ui: None,
            trigger: Trigger::default(),
            parallelism: 1,
        }
    }

    /// The engine underneath, for the operator-level API.
    pub fn engine(&self) -> &Engine {
        self.planner.engine()
    }

    /// The DataFusion session: register static tables and functions here.
    pub fn session(&self) -> &SessionContext {
        self.engine().session()
    }

    /// The batch interval.
    pub fn batch_interval(&self) -> Duration {
        self.engine().batch_interval()
    }

    /// Checkpoints every query into `dir/<query name>` and resumes each
    /// from there (`SET checkpoint.dir`); see [`StreamingContext::get_or_create`].
    pub fn checkpoint(&self, dir: impl Into<std::path::PathBuf>) {
        self.engine().set_checkpoint_dir(Some(dir.into()));
    }

    /// Spark's `StreamingContext.getOrCreate`: a context whose queries
    /// checkpoint into `dir` and, when `dir` holds an earlier run of them,
    /// resume where it stopped. `setup` builds the context and declares its
    /// sources, sinks and queries (without starting it); it runs every time,
    /// since queries are code, not data: what the checkpoint restores is
    /// their state and progress, and a query that changed is refused with
    /// both versions shown.
    ///
    /// ```no_run
    /// # async fn demo() -> brooklet::Result<()> {
    /// use std::time::Duration;
    /// use brooklet::prelude::*;
    ///
    /// let ctx = StreamingContext::get_or_create("ckpt/", || async {
    ///     let ctx = StreamingContext::new(Duration::from_secs(1));
    ///     ctx.execute("CREATE SOURCE logs (line TEXT) WITH (connector = 'files', path = 'in/');
    ///                  SELECT line, count(*) FROM logs GROUP BY line EMIT CHANGES").await?;
    ///     Ok(ctx)
    /// })
    /// .await?;
    /// ctx.start().await?;
    /// ctx.await_termination().await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_or_create<F, Fut>(
        dir: impl Into<std::path::PathBuf>,
        setup: F,
    ) -> Result<StreamingContext>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<StreamingContext>>,
    {
        let ctx = setup().await?;
        ctx.checkpoint(dir);
        Ok(ctx)
    }

    /// Runs statements separated by `;`, in order: DDL and `SET` take effect
    /// at once; each `SELECT` (to the console) and `INSERT INTO` (to a sink)
    /// becomes a query, which runs once the context has started. Errors
    /// carry the line and column in `sql`.
    pub async fn execute(&self, sql: &str) -> Result<Vec<Executed>> {
        let mut done = Vec::new();
        for statement in parse_statements(sql)? {
            let executed = match self.planner.plan(&statement).await? {
                Planned::Done(message) => Executed::Done(message),
                Planned::Shown(output) => Executed::Shown(output),
                Planned::Query(stream) => {
                    Executed::Select(stream.print_default().map_err(|e| at(e, &statement))?)
                }
                Planned::Insert { sink, stream } => {
                    Executed::Insert(stream.write_to(&sink).map_err(|e| at(e, &statement))?)
                }
            };
            done.push(executed);
        }
        Ok(done)
    }

    /// Plans one continuous query, without running it: consume the stream
    /// with `foreach_batch`, `into_stream`, `print` or `write_to`.
    pub async fn sql(&self, query: &str) -> Result<DStream> {
        let statement = parse_statement_text(query)?;
        match self.planner.plan(&statement).await? {
            Planned::Query(stream) => Ok(stream),
            Planned::Insert { .. } | Planned::Done(_) | Planned::Shown(_) => Err(brooklet_sql::Error::Plan {
                message:
                    "sql() takes one SELECT query; run DDL, SET, EXPLAIN and INSERT INTO with execute()"
                        .into(),
                location: Some(statement.location),
            }),
        }
    }

    /// Every registered source with its schema, counters and watermark,
    /// in name order (what the REPL's `\d` lists).
    pub fn sources(&self) -> Vec<SourceInfo> {
        self.engine().sources()
    }

    /// Every registered sink, in name order.
    pub fn sinks(&self) -> Vec<SinkInfo> {
        self.engine().sinks()
    }

    /// Every static table (`CREATE EXTERNAL TABLE`, [`StreamingContext::register_table`]),
    /// in name order.
    pub fn tables(&self) -> Vec<TableInfo> {
        self.engine().tables()
    }

    /// Registers any DataFusion table under `name`, for queries to join
    /// streams with (as a table from `CREATE EXTERNAL TABLE`); DataFusion
    /// scans it every batch, so a `MemTable` the program updates is seen at
    /// the next batch.
    pub fn register_table(
        &self,
        name: &str,
        table: Arc<dyn datafusion::catalog::TableProvider>,
    ) -> Result<()> {
        Ok(self.engine().register_table(name, table)?)
    }

    /// A registered source as a stream, for the operator-level API.
    pub fn source(&self, name: &str) -> Result<DStream> {
        Ok(DStream::source(self.engine(), name)?)
    }

    /// Registers a source built in Rust, so SQL can read it too.
    pub fn register_source(&self, name: &str, source: Arc<dyn Source>) -> Result<()> {
        self.engine().register_source(name, source)?;
        let table = self.engine().stream_table(name)?;
        self.session().register_table(name, table).map_err(|e| {
            let _ = self.engine().drop_source(name);
            brooklet_sql::Error::from(e)
        })?;
        Ok(())
    }

    /// The memory source `name` (declared with `connector = 'memory'`), to
    /// push batches or raw records into.
    pub fn memory_source(&self, name: &str) -> Result<MemorySource> {
        Ok(self.engine().memory_source(name)?)
    }

    /// Adds a listener for completed batches.
    pub fn add_listener(&self, listener: Arc<dyn StreamingListener>) {
        self.engine().add_listener(listener)
    }

    /// Every query registered, running or ended.
    pub fn queries(&self) -> Vec<QueryHandle> {
        self.engine().queries()
    }

    /// The DStream operator graph a query would run, without running it
    /// (what `EXPLAIN` prints): which steps run per batch, which keep
    /// state and what it is sized by, which sources feed it. A running
    /// query's graph, with what its operators hold now, is
    /// [`QueryHandle::explain`].
    pub async fn explain(&self, query: &str) -> Result<QueryGraph> {
        Ok(self.sql(query).await?.explain())
    }

    /// Stops the running query named `name` after its current batch
    /// (`STOP QUERY name`).
    pub async fn stop_query(&self, name: &str) -> Result<()> {
        let query = self
            .queries()
            .into_iter()
            .rev()
            .find(|q| q.name() == name && !q.status().is_terminal())
            .ok_or_else(|| brooklet_sql::Error::Plan {
                message: format!("no running query is named '{name}'"),
                location: None,
            })?;
        if !self.engine().is_started() {
            // Ended when the context starts, before its first batch.
            query.request_stop();
            return Ok(());
        }
        Ok(query.stop().await?)
    }

    /// Completions of the word that ends at byte `pos` of `line`, from the
    /// names this context knows now (sources, tables, sinks, columns,
    /// connector options, settings, running queries) and SQL keywords:
    /// where the word starts, and the candidates (the REPL's Tab).
    pub fn complete(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        let columns = |schema: &SchemaRef| -> Vec<String> {
            schema.fields().iter().map(|f| f.name().clone()).collect()
        };
        let mut relations: Vec<(String, Vec<String>)> = self
            .sources()
            .iter()
            .map(|s| (s.name.clone(), columns(&s.schema)))
            .collect();
        relations.extend(
            self.tables()
                .iter()
                .map(|t| (t.name.clone(), columns(&t.schema))),
        );
        let connectors = SOURCE_CONNECTORS.iter().chain(SINK_CONNECTORS);
        let catalog = brooklet_sql::complete::Catalog {
            relations,
            sinks: self.sinks().into_iter().map(|s| s.name).collect(),
            queries: self
                .queries()
                .iter()
                .filter(|q| !q.status().is_terminal())
                .map(|q| q.name().to_string())
                .collect(),
            connectors: connectors
                .clone()
                .map(|(name, _)| name.to_string())
                .collect(),
            options: connectors
                .flat_map(|(_, options)| brooklet_sql::complete::option_names(options))
                .collect(),
            settings: brooklet_sql::planner::SETTINGS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        brooklet_sql::complete::complete(line, pos, &catalog)
    }

    /// Serves the status page (`/`), Prometheus metrics (`/metrics`) and
    /// JSON (`/api/queries`) at `address` (`host:port`; port 0 picks a free
    /// one), and returns where it listens (`SET ui.address`, `--ui`).
    /// Bind to loopback (`127.0.0.1`) unless the page is meant to be seen
    /// from other machines.
    pub fn serve_ui(&self, address: &str) -> Result<std::net::SocketAddr> {
        self.planner.serve_status(address)
    }

    /// When batches run ([`Trigger`]); set before the context starts.
    pub fn set_trigger(&self, trigger: Trigger) -> Result<()> {
        Ok(self.engine().set_trigger(trigger)?)
    }

    /// Where the status page is served, if it is.
    pub fn ui_address(&self) -> Option<std::net::SocketAddr> {
        self.planner.status_address()
    }

    /// Pauses, resumes or limits the console output of running queries
    /// without stopping them (the REPL's `\pause`, `\resume`, `\limit`).
    pub fn console_control(&self) -> ConsoleControl {
        self.engine().console_control()
    }

    /// Starts running batches: the first at the next multiple of the batch
    /// interval. Queries registered later start at the next batch time.
    pub async fn start(&self) -> Result<()> {
        Ok(self.engine().start()?)
    }

    /// Stops every query. `Graceful` finishes the running batch first.
    pub async fn stop(&self, mode: StopMode) -> Result<()> {
        Ok(self.engine().stop(mode).await?)
    }

    /// Waits until the context is stopped, a query fails (its error), or all
    /// queries have ended because their input ended.
    pub async fn await_termination(&self) -> Result<()> {
        Ok(self.engine().await_termination().await?)
    }

    /// [`StreamingContext::await_termination`] for at most `timeout`;
    /// `Ok(false)` if still running.
    pub async fn await_termination_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(self.engine().await_termination_timeout(timeout).await?)
    }
}

fn at(e: brooklet_engine::Error, statement: &brooklet_sql::ParsedStatement) -> Error {
    Error::from(e).at(statement.location)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + Clone>() {}

    #[test]
    fn the_context_is_clone_send_and_sync() {
        assert_send_sync::<StreamingContext>();
        assert_send_sync::<QueryHandle>();
        assert_send_sync::<DStream>();
    }
}
