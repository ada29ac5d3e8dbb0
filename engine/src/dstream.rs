//! The operator-level API: a [`DStream`] is a planned stream of batches, one
//! per batch time, built from sources by transformations, and run by an
//! output operation (Spark's DStream API, in Rust).
//!
//! Transformations are lazy: they build a graph of nodes and run nothing.
//! An output operation ([`DStream::foreach_batch`], [`DStream::into_stream`],
//! [`DStream::print`], [`DStream::write_to`]) turns the graph into a running
//! query, which starts with the engine (or at once, when it already runs).
//! Consecutive stateless transformations fuse into one DataFusion plan.

use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};

use crate::engine::Engine;
use crate::error::{CallbackError, Result};
use crate::explain::QueryGraph;
use crate::graph::{Node, NodeKind};
use crate::operator::OperatorDef;
use crate::operators::event_window::{EventWindow, EventWindowAggregate, IS_FINAL, WindowEmit};
use crate::operators::join::interval::IntervalJoin;
use crate::operators::join::running::RunningJoin;
use crate::operators::join::window::WindowJoin;
use crate::operators::join::{IntervalBounds, JoinCondition, output_schema as join_output_schema};
use crate::operators::running::{RunningAggregate, RunningSpec};
use crate::operators::stateless::Stateless;
use crate::operators::window::aggregate::WindowAggregate;
use crate::operators::window::raw::RawWindow;
use crate::operators::window::{WindowSpec, output_schema, with_bounds};
use crate::plan::{StreamTable, scanned_streams};
use crate::query::{Output, QueryHandle};
use crate::sink::ConsoleOptions;
use crate::sink::Sink;
use crate::sink::console::ConsoleSink;
use crate::stream::BatchStream;
use crate::time::BatchTime;

/// A planned stream: nothing runs until an output operation.
#[derive(Clone)]
pub struct DStream {
    engine: Engine,
    node: Arc<Node>,
    name: Option<String>,
    description: Option<String>,
}

impl fmt::Debug for DStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DStream")
            .field("node", &self.node.id)
            .field("schema", &self.node.schema)
            .finish()
    }
}

impl DStream {
    pub(crate) fn new(engine: Engine, node: Arc<Node>) -> Self {
        DStream {
            engine,
            node,
            name: None,
            description: None,
        }
    }

    /// The source registered under `name`, as a stream to transform.
    pub fn source(engine: &Engine, name: &str) -> Result<Self> {
        let table = engine.stream_table(name)?;
        Ok(DStream::new(engine.clone(), table.node().clone()))
    }

    /// A stream defined by a DataFusion logical plan whose tables are
    /// streams ([`Engine::stream_table`]); the plan runs on every batch.
    pub fn from_plan(engine: &Engine, plan: LogicalPlan) -> Result<Self> {
        let inputs = scanned_streams(&plan);
        if inputs.is_empty() {
            return Err(crate::error::Error::Plan(
                "a continuous query must read at least one stream (a registered source)".into(),
            ));
        }
        // Optimized once now, so that what fails to optimize (a string
        // compared with an integer column, `LIMIT -1`) fails the statement
        // that wrote it, not the query when it starts.
        engine
            .session()
            .state()
            .optimize(&plan)
            .map_err(|e| crate::error::Error::Plan(crate::error::reason(&e)))?;
        let schema = Arc::new(plan.schema().as_arrow().clone());
        let node = engine.new_node(
            schema,
            inputs,
            NodeKind::Operator(Arc::new(Stateless { plan })),
        );
        Ok(DStream::new(engine.clone(), node))
    }

    /// This stream as a table for DataFusion plans: a scan of it reads the
    /// stream's batch (or window) of the current batch time.
    pub fn table(&self) -> Arc<StreamTable> {
        Arc::new(StreamTable::new(self.node.clone()))
    }

    /// A number identifying this stream in its engine.
    pub fn id(&self) -> usize {
        self.node.id
    }

    /// The schema of the stream's batches.
    pub fn schema(&self) -> SchemaRef {
        self.node.schema.clone()
    }

    /// Names the query this stream becomes (in its status, and its checkpoint's folder).
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// Describes the query (its SQL text, say), for its status.
    pub fn describe(mut self, description: &str) -> Self {
        self.description = Some(description.to_string());
        self
    }

    /// The names of the sources the stream reads.
    pub fn sources(&self) -> Vec<String> {
        self.node.sources()
    }

    /// A transformation by a DataFusion plan builder over this stream's
    /// batches; stateless transformations in a row fuse into one plan.
    pub fn transform(
        &self,
        f: impl FnOnce(LogicalPlanBuilder) -> datafusion::error::Result<LogicalPlanBuilder>,
    ) -> Result<Self> {
        let builder = match self.node.stateless_plan() {
            Some(plan) => LogicalPlanBuilder::from(plan.clone()),
            None => self.scan()?,
        };
        let plan = f(builder)?.build()?;
        let mut stream = DStream::from_plan(&self.engine, plan)?;
        stream.name = self.name.clone();
        Ok(stream)
    }

    /// A plan builder scanning this stream's batches.
    fn scan(&self) -> Result<LogicalPlanBuilder> {
        let name = match &self.node.kind {
            NodeKind::Source { name } => name.clone(),
            _ => format!("stream_{}", self.node.id),
        };
        let table = provider_as_source(Arc::new(StreamTable::new(self.node.clone())));
        Ok(LogicalPlanBuilder::scan(name, table, None)?)
    }

    /// Aggregates the rows of each window of `spec` (processing time),
    /// grouped by `group`: DStream `reduceByKeyAndWindow` (and
    /// `countByWindow` without groups). Emits at the window's slide
    /// boundaries only, with `window_start` and `window_end` first; see
    /// [`crate::operators::window`] for the exact semantics and the pane folding.
    pub fn window_aggregate(
        &self,
        group: Vec<Expr>,
        aggregates: Vec<Expr>,
        spec: WindowSpec,
    ) -> Result<Self> {
        spec.validate(self.engine.batch_interval())?;
        self.stateful_aggregate(group, aggregates, |plan| {
            (
                output_schema(plan.schema().as_arrow()),
                Arc::new(WindowAggregate { plan, spec }),
            )
        })
    }

    /// An event-time window aggregate (Flink's window TVF aggregate,
    /// Spark's `groupBy(window(ts, …), k).agg(…)` with a watermark): rows
    /// go to windows by `window.time_column`, and each window is emitted
    /// when the watermark of the sources passes its end, or at end of input
    /// (see [`crate::operators::event_window`]). Every source this stream reads must
    /// declare a watermark on that column ([`Engine::set_watermark`]).
    /// Output: `window_start`, `window_end`, the `group` keys, the
    /// aggregates, and `is_final` with [`WindowEmit::Changes`].
    pub fn event_window_aggregate(
        &self,
        group: Vec<Expr>,
        aggregates: Vec<Expr>,
        window: EventWindow,
    ) -> Result<Self> {
        window.validate()?;
        let time = &window.time_column;
        for source in self.sources() {
            if self.engine.watermark(&source).is_none() {
                return Err(crate::error::Error::Plan(format!(
                    "an event-time window over {time} needs a watermark on source '{source}': \
                     declare a watermark on {time} for that source"
                )));
            }
        }
        // The time column must be a source's watermark column as it arrives
        // (Flink's time attribute): windows close on that source's watermark.
        let origins = column_origins_of(&self.node, time);
        let Some(origins) = origins else {
            return Err(crate::error::Error::Plan(format!(
                "the window's time column {time} is computed in the query; window by a source's \
                 watermark column itself, as the source delivers it"
            )));
        };
        for (source, column) in origins {
            let watermark = self.engine.watermark(&source);
            if watermark.as_ref().is_none_or(|w| w.column != column) {
                return Err(crate::error::Error::Plan(format!(
                    "the window's time column {time} is column {column} of source '{source}', \
                     whose watermark is {}: window by the watermark column",
                    watermark.map_or("not declared".into(), |w| format!("on {}", w.column))
                )));
            }
        }
        let mut keys = vec![Expr::Column(datafusion::common::Column::new_unqualified(
            &window.time_column,
        ))];
        keys.extend(group);
        let names_is_final = |e: &Expr| e.schema_name().to_string() == IS_FINAL;
        if window.emit == WindowEmit::Changes && keys.iter().chain(&aggregates).any(names_is_final)
        {
            return Err(crate::error::Error::Plan(format!(
                "{IS_FINAL} is the column a window emitting changes adds to tell updates from final rows; \
                 name the key or aggregate otherwise"
            )));
        }
        self.stateful_aggregate(keys, aggregates, |plan| {
            (
                crate::operators::event_window::output_schema(
                    plan.schema().as_arrow(),
                    window.emit,
                ),
                Arc::new(EventWindowAggregate { plan, window }),
            )
        })
    }

    /// A running aggregate over every batch so far, grouped by `group`
    /// (DStream `updateStateByKey`): every batch emits the keys that had
    /// rows in it, or every key, as `spec` says; see [`crate::operators::running`].
    pub fn running_aggregate(
        &self,
        group: Vec<Expr>,
        aggregates: Vec<Expr>,
        spec: RunningSpec,
    ) -> Result<Self> {
        self.stateful_aggregate(group, aggregates, |plan| {
            (
                Arc::new(plan.schema().as_arrow().clone()),
                Arc::new(RunningAggregate { plan, spec }),
            )
        })
    }

    /// A node that runs the aggregate of this stream by `group` with state
    /// across batches: `operator` gets the aggregate's plan, and gives the
    /// node's schema and operator.
    fn stateful_aggregate(
        &self,
        group: Vec<Expr>,
        aggregates: Vec<Expr>,
        operator: impl FnOnce(LogicalPlan) -> (SchemaRef, Arc<dyn OperatorDef>),
    ) -> Result<Self> {
        refuse_unsupported_aggregates(&group, &aggregates)?;
        let plan = self.scan()?.aggregate(group, aggregates)?.build()?;
        let (schema, operator) = operator(plan);
        Ok(self.apply(schema, operator))
    }

    /// This stream read by `operator`, whose output has `schema`: how an
    /// operator's file gives the DStream API a method of its own.
    pub(crate) fn apply(&self, schema: SchemaRef, operator: Arc<dyn OperatorDef>) -> Self {
        let node = self.engine.new_node(
            schema,
            vec![self.node.clone()],
            NodeKind::Operator(operator),
        );
        DStream {
            node,
            ..self.clone()
        }
    }

    /// This stream and `right` read by `operator`, whose output has `schema`.
    fn apply_with(
        &self,
        right: &DStream,
        schema: SchemaRef,
        operator: Arc<dyn OperatorDef>,
    ) -> Self {
        let node = self.engine.new_node(
            schema,
            vec![self.node.clone(), right.node.clone()],
            NodeKind::Operator(operator),
        );
        DStream {
            node,
            name: None,
            description: None,
            ..self.clone()
        }
    }

    /// Checks that `column` of this stream is the watermark column of every
    /// source it comes from (Flink's time attribute), for `what`.
    fn check_time_column(&self, column: &str, what: &str) -> Result<()> {
        if self.node.schema.field_with_name(column).is_err() {
            return Err(crate::error::Error::Plan(format!(
                "{what}: no column {column} on its side"
            )));
        }
        let Some(origins) = column_origins_of(&self.node, column) else {
            return Err(crate::error::Error::Plan(format!(
                "{what}: the time column {column} is computed in the query; use a source's \
                 watermark column itself, as the source delivers it"
            )));
        };
        for (source, origin) in origins {
            let watermark = self.engine.watermark(&source);
            if watermark.as_ref().is_none_or(|w| w.column != origin) {
                return Err(crate::error::Error::Plan(format!(
                    "{what}: the time column {column} is column {origin} of source '{source}', \
                     whose watermark is {}: declare WATERMARK FOR {origin} on '{source}'",
                    watermark.map_or("not declared".into(), |w| format!("on {}", w.column))
                )));
            }
        }
        Ok(())
    }

    /// Checks that every source of this stream declares a watermark, for `what`.
    fn check_watermarks(&self, what: &str) -> Result<()> {
        for source in self.sources() {
            if self.engine.watermark(&source).is_none() {
                return Err(crate::error::Error::Plan(format!(
                    "{what} needs a watermark on source '{source}'"
                )));
            }
        }
        Ok(())
    }

    /// Flink's interval join on event time: the rows of this stream (left)
    /// and `right` that satisfy `on`, whose times (`left_time`,
    /// `right_time`: each side's watermark column) are within `bounds` of
    /// each other (`right.t - left.t ∈ [lower, upper]`). Inner, or left
    /// outer (`JoinType::Left`). See [`crate::operators::join::interval`].
    pub fn interval_join(
        &self,
        right: &DStream,
        on: JoinCondition,
        left_time: &str,
        right_time: &str,
        bounds: IntervalBounds,
    ) -> Result<Self> {
        use datafusion::common::JoinType;
        const WHAT: &str = "an interval join";
        if !matches!(on.join_type, JoinType::Inner | JoinType::Left) {
            return Err(crate::error::Error::Plan(format!(
                "an interval join is inner or LEFT; {} is not supported (swap the sides for a \
                 RIGHT join)",
                on.join_type
            )));
        }
        if bounds.upper_column.is_none()
            && bounds.lower_column.is_none()
            && bounds.lower > bounds.upper
        {
            return Err(crate::error::Error::Plan(format!(
                "an interval join's bounds are empty: right.t - left.t from {} ms to {} ms",
                bounds.lower, bounds.upper
            )));
        }
        self.check_time_column(left_time, WHAT)?;
        right.check_time_column(right_time, WHAT)?;
        for (side, column) in [(self, &bounds.upper_column), (right, &bounds.lower_column)] {
            if let Some(column) = column
                && side.node.schema.field_with_name(column).is_err()
            {
                return Err(crate::error::Error::Plan(format!(
                    "{WHAT}: no column {column} on its side"
                )));
            }
        }
        let schema = join_output_schema(&self.node.schema, &right.node.schema, &on);
        let operator = IntervalJoin {
            left_time: left_time.to_string(),
            right_time: right_time.to_string(),
            bounds,
            left_sources: self.sources(),
            right_sources: right.sources(),
            on,
        };
        Ok(self.apply_with(right, schema, Arc::new(operator)))
    }

    /// Flink's window join on event time: rows of this stream (left) and
    /// `right` that carry the same windows (a `window_end` column on each
    /// side: `left_end`, `right_end`), joined by `on` (which equates the
    /// window bounds) when both sides' watermarks have passed the window.
    /// See [`crate::operators::join::window`].
    pub fn window_join(
        &self,
        right: &DStream,
        on: JoinCondition,
        left_end: &str,
        right_end: &str,
    ) -> Result<Self> {
        const WHAT: &str = "a window join on event time";
        self.check_watermarks(WHAT)?;
        right.check_watermarks(WHAT)?;
        for (side, column) in [(self, left_end), (right, right_end)] {
            if side.node.schema.field_with_name(column).is_err() {
                return Err(crate::error::Error::Plan(format!(
                    "{WHAT}: no column {column} on one side; select window_start and \
                     window_end on both sides"
                )));
            }
        }
        let schema = join_output_schema(&self.node.schema, &right.node.schema, &on);
        let operator = WindowJoin {
            left_end: left_end.to_string(),
            right_end: right_end.to_string(),
            left_sources: self.sources(),
            right_sources: right.sources(),
            on,
        };
        Ok(self.apply_with(right, schema, Arc::new(operator)))
    }

    /// Flink's regular join over all input so far (`… JOIN … EMIT
    /// CHANGES`): every row of this stream (left) meets every row of `right`
    /// that satisfies `on`, whenever each arrived; rows are kept for `ttl`
    /// (`None`: forever). Inner only. See [`crate::operators::join::running`].
    pub fn running_join(
        &self,
        right: &DStream,
        on: JoinCondition,
        ttl: Option<std::time::Duration>,
    ) -> Result<Self> {
        if on.join_type != datafusion::common::JoinType::Inner {
            return Err(crate::error::Error::Plan(format!(
                "a running join is an inner join: a {} join's padded rows would have to be \
                 taken back when a match arrives later; use an interval or window join",
                on.join_type
            )));
        }
        let schema = join_output_schema(&self.node.schema, &right.node.schema, &on);
        Ok(self.apply_with(right, schema, Arc::new(RunningJoin { on, ttl })))
    }

    /// DStream `join`: the rows of this stream and `right` in the same
    /// batch that satisfy `on` (an inner join per batch; no state). Columns
    /// are qualified by `left_alias` and `right_alias` in `on`.
    pub fn join(
        &self,
        right: &DStream,
        left_alias: &str,
        right_alias: &str,
        on: Expr,
    ) -> Result<Self> {
        self.per_batch_join(
            right,
            left_alias,
            right_alias,
            on,
            datafusion::common::JoinType::Inner,
        )
    }

    /// DStream `leftOuterJoin`: [`DStream::join`], keeping this stream's
    /// rows that match nothing in the batch (with NULLs).
    pub fn left_join(
        &self,
        right: &DStream,
        left_alias: &str,
        right_alias: &str,
        on: Expr,
    ) -> Result<Self> {
        self.per_batch_join(
            right,
            left_alias,
            right_alias,
            on,
            datafusion::common::JoinType::Left,
        )
    }

    fn per_batch_join(
        &self,
        right: &DStream,
        left_alias: &str,
        right_alias: &str,
        on: Expr,
        join_type: datafusion::common::JoinType,
    ) -> Result<Self> {
        let right_scan = right.scan_as(right_alias)?.build()?;
        let plan = self
            .scan_as(left_alias)?
            .join_on(right_scan, join_type, [on])?
            .build()?;
        DStream::from_plan(&self.engine, unique_names(plan)?)
    }

    /// Joins each batch with the static table `table` (registered with
    /// [`Engine::register_table`] or `CREATE EXTERNAL TABLE`): Spark's
    /// `transform(rdd => rdd.join(table))`. `join_type` is inner, left,
    /// left semi or left anti.
    pub fn join_table(
        &self,
        table: &str,
        on: Expr,
        join_type: datafusion::common::JoinType,
    ) -> Result<Self> {
        use datafusion::common::JoinType;
        if !matches!(
            join_type,
            JoinType::Inner | JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti
        ) {
            return Err(crate::error::Error::Plan(format!(
                "a stream joins a table inner, left, semi or anti; {join_type} would emit the \
                 table's unmatched rows every batch"
            )));
        }
        let provider = self.engine.table_provider(table)?;
        let table_scan =
            LogicalPlanBuilder::scan(table, provider_as_source(provider), None)?.build()?;
        let stream = match &self.node.kind {
            NodeKind::Source { name } => name.clone(),
            _ => format!("stream_{}", self.node.id),
        };
        let plan = self
            .scan_as(&stream)?
            .join_on(table_scan, join_type, [on])?
            .build()?;
        DStream::from_plan(&self.engine, unique_names(plan)?)
    }

    /// A plan builder scanning this stream's batches under `alias`.
    fn scan_as(&self, alias: &str) -> Result<LogicalPlanBuilder> {
        let table = provider_as_source(Arc::new(StreamTable::new(self.node.clone())));
        Ok(LogicalPlanBuilder::scan(alias, table, None)?)
    }

    /// DStream `window()`: at each slide boundary of `spec`, every row of the
    /// window's batches (processing time; see [`crate::operators::window`]). The rows
    /// themselves are kept while a window needs them.
    pub fn window(&self, spec: WindowSpec) -> Result<Self> {
        self.raw_window(spec, false)
    }

    /// [`DStream::window`] with each row's window appended as
    /// `window_start` and `window_end` (the rows of Flink's `TUMBLE` and
    /// `HOP` table functions).
    pub fn window_with_bounds(&self, spec: WindowSpec) -> Result<Self> {
        self.raw_window(spec, true)
    }

    fn raw_window(&self, spec: WindowSpec, bounds: bool) -> Result<Self> {
        spec.validate(self.engine.batch_interval())?;
        let schema = if bounds {
            with_bounds(&self.node.schema)
        } else {
            self.node.schema.clone()
        };
        Ok(self.apply(schema, Arc::new(RawWindow { spec, bounds })))
    }

    /// Keeps the rows for which `predicate` is true.
    pub fn filter(&self, predicate: Expr) -> Result<Self> {
        self.transform(|b| b.filter(predicate))
    }

    /// Computes new columns from each row.
    pub fn select(&self, exprs: Vec<Expr>) -> Result<Self> {
        self.transform(|b| b.project(exprs))
    }

    /// Groups each batch's rows by `group` and aggregates them, batch by
    /// batch (DStream `reduceByKey`: no state across batches).
    pub fn aggregate(&self, group: Vec<Expr>, aggregates: Vec<Expr>) -> Result<Self> {
        self.transform(|b| b.aggregate(group, aggregates))
    }

    /// Calls `f` with every batch and its time, empty batches included
    /// (Spark's `foreachRDD`). An error from `f` fails the query.
    pub fn foreach_batch<F>(self, f: F) -> Result<QueryHandle>
    where
        F: FnMut(BatchTime, RecordBatch) -> std::result::Result<(), CallbackError> + Send + 'static,
    {
        self.run(Output::Callback(Box::new(f)), "callback")
    }

    /// The batches as an async stream. It is fed through a bounded channel,
    /// so a slow consumer slows the scheduler; dropping it stops the query.
    pub fn into_stream(self) -> Result<BatchStream> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let schema = self.schema();
        let handle = self.run(Output::Channel(tx), "stream")?;
        Ok(BatchStream::new(rx, schema, handle))
    }

    /// Prints every batch as Spark's `print()` does, at most `max_rows` rows each.
    pub fn print(self, max_rows: usize) -> Result<QueryHandle> {
        let options = ConsoleOptions {
            max_rows,
            ..self.engine.console_options()
        };
        self.run(
            Output::Sink(ConsoleSink::new(options).open("console")?),
            "console",
        )
    }

    /// Prints every batch to the console with the engine's console settings.
    pub fn print_default(self) -> Result<QueryHandle> {
        let options = self.engine.console_options();
        self.run(
            Output::Sink(ConsoleSink::new(options).open("console")?),
            "console",
        )
    }

    /// Writes every batch to the sink declared under `sink`.
    pub fn write_to(self, sink: &str) -> Result<QueryHandle> {
        let name = self.name.clone().unwrap_or_else(|| sink.to_string());
        let writer = self.engine.sink(sink)?.open(&name)?;
        DStream {
            name: Some(name),
            ..self
        }
        .run(Output::Sink(writer), &format!("sink {sink}"))
    }

    /// The operator graph a query of this stream would run (`EXPLAIN`).
    pub fn explain(&self) -> QueryGraph {
        self.engine.graph_of(&self.node)
    }

    fn run(self, output: Output, destination: &str) -> Result<QueryHandle> {
        self.engine.register_query(
            self.node,
            output,
            self.name,
            self.description,
            destination.to_string(),
        )
    }
}

/// `plan` with a projection that names each column once: a name both
/// sides of a join have is qualified (`o.ts`), as the stateful joins name
/// theirs.
fn unique_names(plan: LogicalPlan) -> Result<LogicalPlan> {
    let schema = plan.schema().clone();
    let fields: Vec<_> = schema.iter().collect();
    let exprs: Vec<Expr> = fields
        .iter()
        .map(|(qualifier, field)| {
            let twice = fields
                .iter()
                .filter(|(_, f)| f.name() == field.name())
                .count()
                > 1;
            let column = Expr::Column(datafusion::common::Column::new(
                qualifier.cloned(),
                field.name(),
            ));
            match (twice, qualifier) {
                (true, Some(q)) => column.alias(format!("{q}.{}", field.name())),
                _ => column,
            }
        })
        .collect();
    Ok(LogicalPlanBuilder::from(plan).project(exprs)?.build()?)
}

/// Where column `column` of `plan`'s output comes from, when it passes
/// through unchanged (renamed or not): each source and source column it is
/// read from. `None` when it is computed, or comes from a stateful stream.
fn column_origins(plan: &LogicalPlan, column: &str) -> Option<Vec<(String, String)>> {
    use datafusion::datasource::source_as_provider;
    match plan {
        LogicalPlan::Projection(p) => {
            let at = p.schema.fields().iter().position(|f| f.name() == column)?;
            let read = match &p.expr[at] {
                Expr::Alias(alias) => alias.expr.as_ref(),
                other => other,
            };
            match read {
                Expr::Column(c) => column_origins(&p.input, &c.name),
                _ => None,
            }
        }
        LogicalPlan::Union(union) => {
            let at = union
                .schema
                .fields()
                .iter()
                .position(|f| f.name() == column)?;
            let mut all = Vec::new();
            for input in &union.inputs {
                all.extend(column_origins(input, input.schema().field(at).name())?);
            }
            Some(all)
        }
        LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Repartition(_) => column_origins(plan.inputs()[0], column),
        LogicalPlan::TableScan(scan) => {
            let provider = source_as_provider(&scan.source).ok()?;
            let table = provider.downcast_ref::<StreamTable>()?;
            column_origins_of(table.node(), column)
        }
        _ => None,
    }
}

/// The sources' columns that column `column` of `node`'s output is, as
/// [`column_origins`] traces them: through stateless plans only.
fn column_origins_of(node: &Node, column: &str) -> Option<Vec<(String, String)>> {
    match (&node.kind, node.stateless_plan()) {
        (NodeKind::Source { name }, _) => Some(vec![(name.clone(), column.to_string())]),
        (_, Some(plan)) => column_origins(plan, column),
        (_, None) => None,
    }
}

/// What a streaming aggregate cannot do, refused when the statement is
/// planned (the operator would refuse it only when the query starts):
/// grouping sets, and aggregates ordered inside (`array_agg(x ORDER BY
/// y)`), whose partial states the operator does not keep in order.
fn refuse_unsupported_aggregates(group: &[Expr], aggregates: &[Expr]) -> Result<()> {
    use datafusion::common::tree_node::TreeNode;
    if group.iter().any(|g| matches!(g, Expr::GroupingSet(_))) {
        return Err(crate::error::Error::Plan(
            "GROUPING SETS, CUBE and ROLLUP are not supported in a streaming aggregate".into(),
        ));
    }
    let ordered = |e: &Expr| {
        e.exists(|e| Ok(matches!(e, Expr::AggregateFunction(f) if !f.params.order_by.is_empty())))
            .unwrap_or(false)
    };
    if let Some(aggregate) = aggregates.iter().find(|a| ordered(a)) {
        return Err(crate::error::Error::Plan(format!(
            "ordered aggregates (… ORDER BY inside an aggregate, here {aggregate}) are not \
             supported in a streaming aggregate"
        )));
    }
    Ok(())
}
