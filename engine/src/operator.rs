//! The operator contract: what every DStream operator (`operators/`)
//! implements, and what the scheduler guarantees it.
//!
//! An [`OperatorDef`] is what an operator is asked to do, as the graph
//! holds it; when a query starts it is compiled into an [`Operator`], which
//! runs every batch.
//!
//! What the scheduler guarantees an operator, and what it must answer:
//!
//! - **Batch order.** [`Operator::on_batch`] is called at most once per
//!   batch time, in increasing order, from the query's first batch on
//!   (after a restart: from the first batch after the restored state, down
//!   time included), at every batch time its inputs emitted something.
//!   Empty batches are batches: an operator sees every one.
//! - **Inputs.** An operator runs only at batch times where every input
//!   emitted something; when an input emits nothing (a window between its
//!   slides) the operator is skipped for that batch, and so is everything
//!   that reads it.
//! - **Output.** `Some(batch)` (possibly empty) is this batch time's output;
//!   `None` says "nothing at this batch time" and skips what reads it.
//! - **State.** [`Operator::save`] writes everything needed to go on as if
//!   never stopped; [`Operator::load`] is called at most once, on a freshly
//!   compiled operator, before its first batch, with what `save` wrote
//!   (written by the same query: the checkpoint's fingerprint guards that).
//!   [`Operator::state_bytes`] is what the operator holds, for metrics.
//! - **End of input.** When every source of the query has ended, the
//!   scheduler asks [`Operator::drain_until`] which later batch emits the
//!   last rows the operator holds, and runs the batches up to it at once
//!   with empty input. An operator that holds rows for a later batch must
//!   say so, or they are lost at the end of a bounded input.
//! - **Watermarks.** An operator on event time follows the watermark of its
//!   sources itself: [`BatchContext::sources`] is what each delivered this
//!   batch; it reports the rows it dropped as late ([`BatchContext::late`])
//!   and its watermark ([`Operator::watermark`]).
//!

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::execution::SessionState;

use crate::checkpoint::{StateReader, StateWriter};
use crate::error::Result;
use crate::time::BatchTime;
use crate::watermark::Watermark;

/// How one operator describes itself, for `EXPLAIN` and the status page
/// ([`OperatorDef::describe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorDescription {
    /// What it is: `window aggregate`, `interval join`, `per batch`.
    pub name: String,
    /// Its parameters, one line each (windows, conditions, plans).
    pub details: Vec<String>,
    /// What its state is sized by, when it keeps state across batches.
    pub state: Option<String>,
}

impl OperatorDescription {
    /// An operator that keeps state sized by `state`.
    pub(crate) fn stateful(name: &str, state: &str) -> Self {
        OperatorDescription {
            name: name.to_string(),
            details: Vec::new(),
            state: Some(state.to_string()),
        }
    }

    /// Adds a line of detail.
    pub(crate) fn detail(mut self, line: impl Into<String>) -> Self {
        self.details.push(line.into());
        self
    }

    /// Adds the lines of a plan's indented display.
    pub(crate) fn plan(mut self, plan: &datafusion::logical_expr::LogicalPlan) -> Self {
        self.details.extend(
            plan.display_indent()
                .to_string()
                .lines()
                .map(str::to_string),
        );
        self
    }
}

/// Identifies a node of the operator graph.
pub(crate) type NodeId = usize;

/// An input of an operator: the node it reads, and that node's schema.
#[derive(Debug, Clone)]
pub(crate) struct Input {
    /// The node.
    pub(crate) id: NodeId,
    /// Its batches' schema.
    pub(crate) schema: SchemaRef,
}

pub(crate) use crate::polled::Polled;

/// What an operator is asked to do, as the graph holds it; compiled into an
/// [`Operator`] when a query starts.
#[async_trait]
pub(crate) trait OperatorDef: fmt::Debug + Send + Sync {
    /// The DataFusion plan run on each batch, when the operator is exactly
    /// that: stateless transformations that follow it fuse into its plan.
    fn stateless_plan(&self) -> Option<&datafusion::logical_expr::LogicalPlan> {
        None
    }

    /// What it is, for `EXPLAIN` and the status page.
    fn describe(&self) -> OperatorDescription;

    /// Compiles the operator for a query that starts.
    async fn compile(&self, at: &CompileContext<'_>) -> Result<Box<dyn Operator>>;
}

/// An operator of a running query (see the module docs for the contract).
#[async_trait]
pub(crate) trait Operator: Send {
    /// Runs batch `batch.time`: `Some` output, or `None` when the operator
    /// emits nothing at this batch time.
    async fn on_batch(&mut self, batch: &mut BatchContext<'_>) -> Result<Option<RecordBatch>>;

    /// At the end of input, after the batch of `time` ended every source:
    /// the last batch time at which the operator still emits rows it holds,
    /// if that is later than `time`.
    fn drain_until(&self, time: BatchTime) -> Option<BatchTime>;

    /// Writes its state.
    fn save(&mut self, _state: &mut StateWriter) -> Result<()> {
        Ok(())
    }

    /// Restores what [`Operator::save`] wrote.
    fn load(&mut self, _state: &StateReader) -> Result<()> {
        Ok(())
    }

    /// Bytes of state it holds.
    fn state_bytes(&self) -> usize {
        0
    }

    /// Its watermark, if it follows one and has one.
    fn watermark(&self) -> Option<i64> {
        None
    }

    /// How its rows and state divide by key, when they do: then it can run
    /// as several tasks, each on the rows and state of its key groups
    /// (`operators/partitioned.rs`). `None` (the default): it runs as one.
    fn keyed_by(&self) -> Option<KeyedBy> {
        None
    }
}

/// How an operator's rows and state divide by key: every input row's key,
/// and where the key is in every output row. Two rows with equal keys
/// (across inputs too) meet the same state; an output row's key is the
/// key of the state that made it.
#[derive(Debug, Clone)]
pub(crate) struct KeyedBy {
    /// Per input, in the operator's input order: the node it reads and the
    /// key's expressions over that node's batches.
    pub(crate) inputs: Vec<(
        NodeId,
        Vec<Arc<dyn datafusion::physical_expr::PhysicalExpr>>,
    )>,
    /// Per input, the columns the operator reads, when it reads only some
    /// (`None`: all): the others need not be handed to its tasks.
    pub(crate) reads: Vec<Option<Vec<usize>>>,
    /// The key's expressions over the operator's output, in the same order.
    pub(crate) output: Vec<Arc<dyn datafusion::physical_expr::PhysicalExpr>>,
}

/// What a definition is compiled with.
pub(crate) struct CompileContext<'a> {
    /// The schema of the operator's output.
    pub(crate) schema: SchemaRef,
    /// What it reads.
    pub(crate) inputs: Vec<Input>,
    /// The sources it reads, directly or through other operators.
    pub(crate) sources: Vec<String>,
    /// The session whose planner compiles plans.
    pub(crate) session: &'a SessionState,
    /// The engine's batch interval.
    pub(crate) interval: Duration,
    /// The batch time before the query's first batch.
    pub(crate) start: BatchTime,
    /// Where processing-time windows count from: `start`, or the zero of
    /// the checkpoint the query resumes.
    pub(crate) zero: BatchTime,
    /// The watermark each source declares.
    pub(crate) watermarks: &'a BTreeMap<String, Watermark>,
    /// How long a source may deliver nothing before it stops holding back
    /// the watermark of an operator that reads other sources too.
    pub(crate) idle_timeout: Option<Duration>,
    /// How many tasks run the operator (`SET parallelism`): a per-batch
    /// plan runs on that many partitions of its batch.
    pub(crate) parallelism: usize,
}

impl CompileContext<'_> {
    /// The operator's one input.
    pub(crate) fn input(&self) -> &Input {
        &self.inputs[0]
    }
}

/// Rows an event-time operator dropped as late in one batch.
#[derive(Debug, Clone)]
pub(crate) struct LateRows {
    /// The sources the operator reads.
    pub(crate) sources: Vec<String>,
    /// How many rows were dropped.
    pub(crate) rows: u64,
    /// The most any of them was behind the watermark, in milliseconds.
    pub(crate) max_behind: i64,
    /// The watermark they were judged against.
    pub(crate) watermark: i64,
}

/// What an operator gets at one batch time.
pub(crate) struct BatchContext<'a> {
    /// The batch time.
    pub(crate) time: BatchTime,
    inputs: &'a [Input],
    values: &'a HashMap<NodeId, Option<RecordBatch>>,
    /// What each source delivered in this batch.
    pub(crate) sources: &'a Polled,
    /// Late rows dropped in this batch, reported by event-time operators.
    pub(crate) late: Vec<LateRows>,
}

impl<'a> BatchContext<'a> {
    /// The context at `time` of an operator reading `inputs`, whose
    /// outputs are in `values`.
    pub(crate) fn new(
        time: BatchTime,
        inputs: &'a [Input],
        values: &'a HashMap<NodeId, Option<RecordBatch>>,
        sources: &'a Polled,
    ) -> Self {
        BatchContext {
            time,
            inputs,
            values,
            sources,
            late: Vec::new(),
        }
    }

    /// What the operator reads.
    pub(crate) fn inputs(&self) -> &'a [Input] {
        self.inputs
    }

    /// The output of input node `id` at this batch time.
    pub(crate) fn input_of(&self, id: NodeId) -> Option<RecordBatch> {
        self.values.get(&id).cloned().flatten()
    }

    /// The batch of the operator's one input (empty when it has none).
    pub(crate) fn input(&self) -> RecordBatch {
        let input = &self.inputs[0];
        self.input_of(input.id)
            .unwrap_or_else(|| RecordBatch::new_empty(input.schema.clone()))
    }
}
