//! Streams inside DataFusion plans, and running a plan on one batch.
//!
//! A stream appears in a DataFusion logical plan as a [`StreamTable`]. When a
//! query starts, its plan is turned into a physical plan **once**; each
//! [`StreamTable`] scan becomes a [`StreamScanExec`] leaf with a slot. Every
//! batch, the scheduler puts the stream's batch into the slots, resets the
//! plan's run state (`reset_plan_states`, which keeps the plan and clears
//! what an execution left behind, such as a hash join's build side) and
//! executes it. Nothing is parsed, optimized or planned per batch.

use std::fmt;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::{TableType, source_as_provider};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType, reset_plan_states};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};

use crate::error::{Error, Result};
use crate::graph::{Node, NodeId};
use crate::sync::lock;

/// A stream, as a table in a DataFusion plan: a scan of it reads the
/// stream's rows of the current batch.
#[derive(Debug)]
pub struct StreamTable {
    node: Arc<Node>,
}

impl StreamTable {
    pub(crate) fn new(node: Arc<Node>) -> Self {
        StreamTable { node }
    }

    pub(crate) fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The names of the sources the stream reads.
    pub fn sources(&self) -> Vec<String> {
        self.node.sources()
    }
}

#[async_trait]
impl TableProvider for StreamTable {
    fn schema(&self) -> SchemaRef {
        self.node.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// A scan in as many partitions as the planning session's target (a
    /// per-batch plan at `SET parallelism = N`); each partition hands out
    /// a slice of the batch.
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(StreamScanExec::new(
            self.node.id,
            self.node.schema.clone(),
            projection.cloned(),
            state.config().target_partitions(),
        )?))
    }
}

/// A table whose scans read whatever an operator puts into the slot of
/// `id` (a number of the operator's own choosing, not a graph node): how a
/// stateful operator runs a DataFusion plan over rows it keeps (a join
/// over both sides' stored rows, say).
#[derive(Debug)]
pub(crate) struct SlotTable {
    /// The slot's number in the operator's plan.
    pub(crate) id: NodeId,
    /// The rows' schema.
    pub(crate) schema: SchemaRef,
}

#[async_trait]
impl TableProvider for SlotTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        // An operator's own rows: one partition (its plans are made at
        // one; the operator's tasks are its parallelism).
        Ok(Arc::new(StreamScanExec::new(
            self.id,
            self.schema.clone(),
            projection.cloned(),
            1,
        )?))
    }
}

/// The streams a logical plan scans, in the order first met.
pub(crate) fn scanned_streams(plan: &LogicalPlan) -> Vec<Arc<Node>> {
    let mut found: Vec<Arc<Node>> = Vec::new();
    let _ = plan.apply_with_subqueries(|p| {
        if let LogicalPlan::TableScan(scan) = p
            && let Ok(provider) = source_as_provider(&scan.source)
            && let Some(table) = provider.downcast_ref::<StreamTable>()
            && !found.iter().any(|n| n.id == table.node.id)
        {
            found.push(table.node.clone());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// Where a per-batch plan's leaf finds its batch.
pub(crate) type Slot = Arc<Mutex<Option<RecordBatch>>>;

/// The leaf of a per-batch plan: hands out the batch put into its slot.
#[derive(Debug)]
pub(crate) struct StreamScanExec {
    node: NodeId,
    slot: Slot,
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl StreamScanExec {
    /// A scan of node (or slot) `node` in `partitions` partitions, each a
    /// slice of the batch.
    fn new(
        node: NodeId,
        schema: SchemaRef,
        projection: Option<Vec<usize>>,
        partitions: usize,
    ) -> datafusion::error::Result<Self> {
        let projected = match &projection {
            Some(p) => Arc::new(schema.project(p)?),
            None => schema,
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(projected),
            Partitioning::UnknownPartitioning(partitions.max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(StreamScanExec {
            node,
            slot: Arc::default(),
            projection,
            properties: Arc::new(properties),
        })
    }
}

impl DisplayAs for StreamScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StreamScanExec: stream={}", self.node)
    }
}

impl ExecutionPlan for StreamScanExec {
    fn name(&self) -> &str {
        "StreamScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> datafusion::error::Result<TreeNodeRecursion>,
    ) -> datafusion::error::Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> datafusion::error::Result<SendableRecordBatchStream> {
        let partitions = self.properties.partitioning.partition_count();
        let batch = lock(&self.slot).clone().map(|batch| {
            if partitions == 1 {
                return batch;
            }
            let rows = batch.num_rows();
            let (start, end) = (
                rows * partition / partitions,
                rows * (partition + 1) / partitions,
            );
            batch.slice(start, end - start)
        });
        let schema = self.properties.eq_properties.schema().clone();
        let batches = match batch {
            Some(batch) => vec![match &self.projection {
                Some(p) => batch.project(p)?,
                None => batch,
            }],
            None => vec![],
        };
        Ok(Box::pin(MemoryStream::try_new(batches, schema, None)?))
    }
}

/// The slots of every stream scan in `plan`.
pub(crate) fn scan_slots(plan: &Arc<dyn ExecutionPlan>) -> Result<Vec<(NodeId, Slot)>> {
    let mut scans = Vec::new();
    plan.apply(|p| {
        if let Some(scan) = p.downcast_ref::<StreamScanExec>() {
            scans.push((scan.node, scan.slot.clone()));
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(scans)
}

/// A copy of `plan` whose scans have slots of their own: it runs at the
/// same time as `plan`, on other batches (how a global aggregate folds
/// slices of a batch at once, `operators/aggregate/sliced.rs`).
pub(crate) fn with_own_slots(plan: &Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    use datafusion::common::tree_node::Transformed;
    let copy = Arc::clone(plan).transform_up(|p| {
        Ok(match p.downcast_ref::<StreamScanExec>() {
            Some(scan) => Transformed::yes(Arc::new(StreamScanExec {
                node: scan.node,
                slot: Arc::default(),
                projection: scan.projection.clone(),
                properties: Arc::clone(&scan.properties),
            }) as Arc<dyn ExecutionPlan>),
            None => Transformed::no(p),
        })
    })?;
    Ok(copy.data)
}

/// `exprs`, expressions over the output of `plan`, rewritten over the batch
/// of the one stream `plan` scans, when `plan` only filters and projects
/// that stream: the stream's node, the expressions, and the columns of the
/// stream the plan reads (`None`: all). `None` when `plan` does anything
/// else (a join, an unnest, a union) or an expression needs a column
/// computed on the way.
pub(crate) fn over_scanned_stream(
    plan: &Arc<dyn ExecutionPlan>,
    exprs: &[Arc<dyn PhysicalExpr>],
) -> Option<ScannedKeys> {
    use datafusion::physical_expr::projection::update_expr;
    use datafusion::physical_plan::coop::CooperativeExec;
    use datafusion::physical_plan::filter::FilterExec;
    use datafusion::physical_plan::projection::ProjectionExec;

    let mut exprs = exprs.to_vec();
    let mut plan = Arc::clone(plan);
    loop {
        let next = if let Some(p) = plan.downcast_ref::<ProjectionExec>() {
            exprs = exprs
                .iter()
                .map(|e| update_expr(e, p.expr(), true).ok().flatten())
                .collect::<Option<_>>()?;
            Arc::clone(p.input())
        } else if let Some(f) = plan.downcast_ref::<FilterExec>() {
            if let Some(projection) = f.projection() {
                exprs = remap_columns(&exprs, projection)?;
            }
            Arc::clone(f.input())
        } else if let Some(c) = plan.downcast_ref::<CooperativeExec>() {
            Arc::clone(c.input())
        } else if let Some(scan) = plan.downcast_ref::<StreamScanExec>() {
            if let Some(projection) = &scan.projection {
                exprs = remap_columns(&exprs, projection)?;
            }
            return Some((scan.node, exprs, scan.projection.clone()));
        } else {
            return None;
        };
        plan = next;
    }
}

/// What [`over_scanned_stream`] finds: the stream's node, the expressions
/// over its batches, and the columns read (`None`: all).
pub(crate) type ScannedKeys = (NodeId, Vec<Arc<dyn PhysicalExpr>>, Option<Vec<usize>>);

/// `exprs` over a projection's output (column `i` is input column
/// `projection[i]`), rewritten over its input.
fn remap_columns(
    exprs: &[Arc<dyn PhysicalExpr>],
    projection: &[usize],
) -> Option<Vec<Arc<dyn PhysicalExpr>>> {
    use datafusion::common::tree_node::Transformed;
    use datafusion::physical_expr::expressions::Column;

    exprs
        .iter()
        .map(|e| {
            Arc::clone(e)
                .transform(|e| {
                    Ok(match e.downcast_ref::<Column>() {
                        Some(c) => match projection.get(c.index()) {
                            Some(&i) => Transformed::yes(
                                Arc::new(Column::new(c.name(), i)) as Arc<dyn PhysicalExpr>
                            ),
                            None => {
                                return Err(datafusion::error::DataFusionError::Internal(
                                    "a column outside its projection".into(),
                                ));
                            }
                        },
                        None => Transformed::no(e),
                    })
                })
                .ok()
                .map(|t| t.data)
        })
        .collect()
}

/// Whether any node of `plan` has several partitions: DataFusion then
/// runs them as tasks of their own.
fn runs_partitions(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.properties().output_partitioning().partition_count() > 1
        || plan.children().into_iter().any(runs_partitions)
}

/// Runs a compiled physical plan once, on batches put into its slots.
pub(crate) async fn run_plan(
    plan: &Arc<dyn ExecutionPlan>,
    task: &Arc<TaskContext>,
    scans: &[(NodeId, Slot)],
    input: impl Fn(NodeId) -> Option<RecordBatch>,
) -> Result<RecordBatch> {
    for (node, slot) in scans {
        let batch =
            input(*node).ok_or_else(|| Error::Internal(format!("no batch for stream {node}")))?;
        *lock(slot) = Some(batch);
    }
    let (plan_now, task) = (reset_plan_states(Arc::clone(plan))?, Arc::clone(task));
    // The thread-local first: the plan is walked only on small stacks.
    let batches = if crate::stack::moved() && runs_partitions(plan) {
        crate::stack::on_deep_workers(datafusion::physical_plan::collect(plan_now, task)).await?
    } else {
        datafusion::physical_plan::collect(plan_now, task).await
    };
    for (_, slot) in scans {
        lock(slot).take();
    }
    Ok(arrow::compute::concat_batches(&plan.schema(), &batches?)?)
}
