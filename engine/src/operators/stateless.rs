//! The stateless operator: a DataFusion plan, planned once when the query
//! starts and run again on every batch of its input streams (DStream
//! `map`, `filter`, `transform`, and per-batch joins of streams). It keeps
//! nothing from one batch to the next; how a plan reads the batch of each
//! stream is in `plan.rs`. Before each batch it checks the static tables it
//! joins with for changes (`table.rs`).

use std::sync::Arc;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use datafusion::execution::{SessionState, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;

use crate::error::Result;
use crate::explain::OperatorDescription;
use crate::operator::{BatchContext, CompileContext, NodeId, Operator, OperatorDef};
use crate::plan::{Slot, run_plan, scan_slots};
use crate::table::{StaticTable, static_tables};
use crate::time::BatchTime;

/// A plan run on each batch of the streams it scans.
#[derive(Debug)]
pub(crate) struct Stateless {
    /// The plan; its stream scans are its inputs.
    pub(crate) plan: LogicalPlan,
}

#[async_trait]
impl OperatorDef for Stateless {
    fn stateless_plan(&self) -> Option<&LogicalPlan> {
        Some(&self.plan)
    }

    fn describe(&self) -> OperatorDescription {
        OperatorDescription {
            name: "per batch".into(),
            details: Vec::new(),
            state: None,
        }
        .plan(&self.plan)
    }

    /// At parallelism N, a plan with work to share is made for N
    /// partitions: each scan of a stream hands out its batch in N slices,
    /// and DataFusion runs the partitions side by side (repartitioning
    /// where the plan needs it). A plan that only picks columns and
    /// compares values stays whole: its partitions' outputs would be
    /// copied into one batch, which costs more than it saves.
    async fn compile(&self, at: &CompileContext<'_>) -> Result<Box<dyn Operator>> {
        let physical = if at.parallelism > 1 && has_work_to_share(&self.plan) {
            let config = at
                .session
                .config()
                .clone()
                .with_target_partitions(at.parallelism);
            datafusion::execution::SessionStateBuilder::new_from_existing(at.session.clone())
                .with_config(config)
                .build()
                .create_physical_plan(&self.plan)
                .await?
        } else {
            at.session.create_physical_plan(&self.plan).await?
        };
        Ok(Box::new(StatelessOperator {
            scans: scan_slots(&physical)?,
            tables: static_tables(&physical)?,
            session: at.session.clone(),
            plan: physical,
            task: at.session.task_ctx(),
        }))
    }
}

/// Whether `plan` aggregates, joins, sorts, computes window functions or
/// calls functions: work that N partitions share.
fn has_work_to_share(plan: &LogicalPlan) -> bool {
    use datafusion::common::tree_node::TreeNode;
    use datafusion::logical_expr::Expr;
    plan.exists(|p| {
        Ok(matches!(
            p,
            LogicalPlan::Aggregate(_)
                | LogicalPlan::Join(_)
                | LogicalPlan::Sort(_)
                | LogicalPlan::Window(_)
                | LogicalPlan::Distinct(_)
        ) || p.expressions().iter().any(|e| {
            e.exists(|e| Ok(matches!(e, Expr::ScalarFunction(_))))
                .unwrap_or(false)
        }))
    })
    .unwrap_or(false)
}

/// A compiled per-batch plan.
struct StatelessOperator {
    plan: Arc<dyn ExecutionPlan>,
    scans: Vec<(NodeId, Slot)>,
    /// The static tables it joins with, checked for changes every batch.
    tables: Vec<Arc<StaticTable>>,
    session: SessionState,
    task: Arc<TaskContext>,
}

#[async_trait]
impl Operator for StatelessOperator {
    async fn on_batch(&mut self, batch: &mut BatchContext<'_>) -> Result<Option<RecordBatch>> {
        for table in &self.tables {
            table.refresh(&self.session).await;
        }
        let output = run_plan(&self.plan, &self.task, &self.scans, |id| batch.input_of(id)).await?;
        Ok(Some(output))
    }

    /// It holds nothing.
    fn drain_until(&self, _time: BatchTime) -> Option<BatchTime> {
        None
    }
}
