//! [`Aggregation`]: an aggregate plan taken apart, and the operations that
//! combine the pieces (rows into builders, partials into partials, values
//! into output rows).

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::execution::{SessionState, SessionStateBuilder, TaskContext};
use datafusion::logical_expr::{GroupsAccumulator, LogicalPlan};
use datafusion::physical_expr::GroupsAccumulatorAdapter;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};

use super::builder::Builder;
use super::key_index::KeyIndex;
use super::partial::{Evaluated, Partial};
use super::rows::Rows;
use crate::error::{Error, Result};
use crate::graph::NodeId;
use crate::operator::KeyedBy;
use crate::plan::{Slot, over_scanned_stream, run_plan, scan_slots, with_own_slots};

/// An aggregate taken apart: its per-batch input plan, its group
/// expressions and its aggregate functions.
pub(crate) struct Aggregation {
    input: Arc<dyn ExecutionPlan>,
    scans: Vec<(NodeId, Slot)>,
    task: Arc<TaskContext>,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    key_schema: SchemaRef,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    schema: SchemaRef,
    /// The types of each aggregate's arguments.
    argument_types: Arc<[Vec<DataType>]>,
    /// The type of each aggregate's value.
    result_types: Arc<[DataType]>,
    /// An event-time window's time expression (the plan's first group key).
    time: Option<Arc<dyn PhysicalExpr>>,
}

impl Aggregation {
    /// Takes apart `plan`, an aggregate over stream scans. Its output schema
    /// (group keys, then aggregates) is the plan's. With `time_key`, the
    /// plan's first group key is an event time: it is evaluated for every
    /// row ([`Rows::times`]) but is not a key, and not in the output.
    pub(crate) async fn compile(
        state: &SessionState,
        plan: &LogicalPlan,
        time_key: bool,
    ) -> Result<Self> {
        // Two rules reshape an aggregate in ways that hold for one batch but
        // not for state kept across batches: `single_distinct_aggregation_to_group_by`
        // turns `count(DISTINCT v)` into a `GROUP BY v` under an outer count
        // (the kept outer states would count a value once per batch), and
        // `eliminate_group_by_constant` moves keys derived from other keys
        // (`GROUP BY k, upper(k)`) into a projection above the aggregate,
        // which taking the aggregate alone would lose.
        let rules = state
            .optimizers()
            .iter()
            .filter(|r| {
                !matches!(
                    r.name(),
                    "single_distinct_aggregation_to_group_by" | "eliminate_group_by_constant"
                )
            })
            .cloned()
            .collect();
        let state = SessionStateBuilder::new_from_existing(state.clone())
            .with_optimizer_rules(rules)
            .build();
        let physical = state.create_physical_plan(plan).await?;
        let mut found: Option<AggregateExec> = None;
        physical.apply(|p| {
            if let Some(aggregate) = p.downcast_ref::<AggregateExec>()
                && matches!(
                    aggregate.mode(),
                    AggregateMode::Partial | AggregateMode::Single
                )
            {
                found = Some(aggregate.clone());
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        let aggregate =
            found.ok_or_else(|| Error::Internal(format!("no aggregate in the plan:\n{plan}")))?;
        let group = aggregate.group_expr();
        if !group.is_single() {
            return Err(Error::Plan(
                "GROUPING SETS, CUBE and ROLLUP are not supported in a streaming aggregate".into(),
            ));
        }
        if aggregate
            .aggr_expr()
            .iter()
            .any(|a| !a.order_bys().is_empty())
        {
            return Err(Error::Plan(
                "ordered aggregates (… ORDER BY inside an aggregate) are not supported in a streaming aggregate"
                    .into(),
            ));
        }
        let input_schema = aggregate.input().schema();
        let mut keys: Vec<Arc<dyn PhysicalExpr>> =
            group.expr().iter().map(|(e, _)| Arc::clone(e)).collect();
        let mut key_names = group.expr().to_vec();
        let mut schema = plan.schema().as_arrow().clone();
        let time = if time_key {
            if keys.is_empty() {
                return Err(Error::Internal(format!(
                    "an event-time aggregate without its time key:\n{plan}"
                )));
            }
            key_names.remove(0);
            let fields = schema.fields().iter().skip(1).cloned().collect::<Vec<_>>();
            schema = Schema::new(fields);
            Some(keys.remove(0))
        } else {
            None
        };
        let key_fields = keys
            .iter()
            .zip(&key_names)
            .map(|(e, (_, name))| {
                Ok(arrow::datatypes::Field::new(
                    name,
                    e.data_type(&input_schema)?,
                    e.nullable(&input_schema)?,
                ))
            })
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let schema = Arc::new(schema);
        if keys.len() + aggregate.aggr_expr().len() != schema.fields().len() {
            return Err(Error::Internal(format!(
                "the physical aggregate ({} keys, {} aggregates) does not match its plan:\n{plan}",
                keys.len(),
                aggregate.aggr_expr().len()
            )));
        }
        let input = Arc::clone(aggregate.input());
        let argument_types = aggregate
            .aggr_expr()
            .iter()
            .map(|a| {
                a.expressions()
                    .iter()
                    .map(|e| e.data_type(&input_schema))
                    .collect::<datafusion::error::Result<Vec<_>>>()
            })
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let result_types: Vec<DataType> = aggregate
            .aggr_expr()
            .iter()
            .map(|a| a.field().data_type().clone())
            .collect();
        Ok(Aggregation {
            argument_types: argument_types.into(),
            result_types: result_types.into(),
            scans: scan_slots(&input)?,
            input,
            task: state.task_ctx(),
            keys,
            key_schema: Arc::new(Schema::new(key_fields)),
            aggregates: aggregate.aggr_expr().to_vec(),
            filters: aggregate.filter_expr().to_vec(),
            schema,
            time,
        })
    }

    /// Whether it has no group keys (its one group is every row).
    pub(super) fn is_global(&self) -> bool {
        self.keys.is_empty()
    }

    /// Each aggregate function's name and its arguments' types.
    pub(super) fn functions(&self) -> impl Iterator<Item = (&str, &[DataType])> + '_ {
        self.aggregates
            .iter()
            .zip(self.argument_types.iter())
            .map(|(a, types)| (a.fun().name(), types.as_slice()))
    }

    /// The one stream its input plan filters and projects, if that is all
    /// the plan does.
    pub(super) fn scanned_stream(&self) -> Option<NodeId> {
        over_scanned_stream(&self.input, &[]).map(|(node, _, _)| node)
    }

    /// A copy whose input plan has slots of its own, so that it runs at the
    /// same time as this one.
    pub(super) fn with_own_slots(&self) -> Result<Aggregation> {
        let input = with_own_slots(&self.input)?;
        Ok(Aggregation {
            scans: scan_slots(&input)?,
            input,
            task: Arc::clone(&self.task),
            keys: self.keys.clone(),
            key_schema: Arc::clone(&self.key_schema),
            aggregates: self.aggregates.clone(),
            filters: self.filters.clone(),
            schema: Arc::clone(&self.schema),
            argument_types: Arc::clone(&self.argument_types),
            result_types: Arc::clone(&self.result_types),
            time: self.time.clone(),
        })
    }

    /// How its rows divide by key, for an operator whose output holds the
    /// keys from column `output_offset` on: `None` for a global aggregate
    /// or an input plan that does more than filter and project one stream.
    pub(crate) fn keyed_by(&self, output_offset: usize) -> Option<KeyedBy> {
        if self.keys.is_empty() {
            return None;
        }
        let (node, keys, reads) = over_scanned_stream(&self.input, &self.keys)?;
        Some(KeyedBy {
            inputs: vec![(node, keys)],
            reads: vec![reads],
            output: (output_offset..output_offset + self.keys.len())
                .map(|i| {
                    Arc::new(datafusion::physical_expr::expressions::Column::new(
                        self.key_schema.field(i - output_offset).name(),
                        i,
                    )) as Arc<dyn PhysicalExpr>
                })
                .collect(),
        })
    }

    /// An empty key index for this aggregate's keys.
    pub(crate) fn key_index(&self) -> Result<KeyIndex> {
        KeyIndex::new(Arc::clone(&self.key_schema))
    }

    /// Runs the input plan on one batch of the input streams, evaluates the
    /// keys (interning them in `index`), the arguments and the filters.
    pub(crate) async fn rows(
        &self,
        index: &mut KeyIndex,
        input: impl Fn(NodeId) -> Option<RecordBatch>,
    ) -> Result<Rows> {
        let batch = run_plan(&self.input, &self.task, &self.scans, input).await?;
        let n = batch.num_rows();
        let keys = self
            .keys
            .iter()
            .map(|e| e.evaluate(&batch).and_then(|v| v.into_array(n)))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let mut groups = Vec::with_capacity(n);
        index.intern(&keys, n, &mut groups)?;
        let arguments = self
            .aggregates
            .iter()
            .map(|a| {
                a.expressions()
                    .iter()
                    .map(|e| e.evaluate(&batch).and_then(|v| v.into_array(n)))
                    .collect::<datafusion::error::Result<Vec<_>>>()
            })
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let filters = self
            .filters
            .iter()
            .map(|f| {
                f.as_ref()
                    .map(|f| {
                        let array = f.evaluate(&batch)?.into_array(n)?;
                        array
                            .as_any()
                            .downcast_ref::<BooleanArray>()
                            .cloned()
                            .ok_or_else(|| {
                                datafusion::error::DataFusionError::Internal(
                                    "an aggregate FILTER is not boolean".into(),
                                )
                            })
                    })
                    .transpose()
            })
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let times = self
            .time
            .as_ref()
            .map(|t| t.evaluate(&batch).and_then(|v| v.into_array(n)))
            .transpose()?;
        Ok(Rows {
            groups,
            arguments,
            filters,
            times,
        })
    }

    fn accumulators(&self) -> Result<Vec<Box<dyn GroupsAccumulator>>> {
        self.aggregates
            .iter()
            .map(|a| {
                Ok(if a.groups_accumulator_supported() {
                    a.create_groups_accumulator()?
                } else {
                    let a = Arc::clone(a);
                    Box::new(GroupsAccumulatorAdapter::new(move || {
                        a.create_accumulator()
                    })) as Box<dyn GroupsAccumulator>
                })
            })
            .collect()
    }

    /// A builder of the partial states of some rows.
    pub(crate) fn builder(&self) -> Result<Builder> {
        Ok(Builder {
            accumulators: self.accumulators()?,
            counts: Vec::new(),
            argument_types: Arc::clone(&self.argument_types),
            result_types: Arc::clone(&self.result_types),
        })
    }

    /// How many state columns each aggregate has.
    pub(super) fn state_widths(&self) -> Result<Vec<usize>> {
        self.aggregates
            .iter()
            .map(|a| Ok(a.state_fields()?.len()))
            .collect()
    }

    /// A builder holding `partial`'s rows, to go on adding to (how an open
    /// pane continues after its state was saved).
    pub(crate) fn builder_from(&self, partial: &Partial) -> Result<Builder> {
        self.merged(&[partial], partial.len())
    }

    /// Merges partials into fresh accumulators, sized to `groups` groups.
    fn merged(&self, parts: &[&Partial], groups: usize) -> Result<Builder> {
        let mut builder = self.builder()?;
        for part in parts {
            builder.merge(part)?;
        }
        builder.fill(groups)?;
        Ok(builder)
    }

    /// The partial states of the rows of all `parts` together.
    pub(crate) fn combine(&self, parts: &[&Partial]) -> Result<Partial> {
        let groups = parts.iter().map(|p| p.len()).max().unwrap_or(0);
        self.merged(parts, groups)?.finish()
    }

    /// The partial states of `parts` together over `groups` groups, each
    /// part's group `g` counted as group `map[g]` of that part's map
    /// (several groups may map to one: how sessions merge and how a window
    /// gathers its panes' keys). Groups left with no rows are dropped.
    pub(crate) fn regroup(&self, parts: &[(&Partial, &[usize])], groups: usize) -> Result<Partial> {
        let mut builder = self.builder()?;
        // Every group exists from the start, so no call raises the total.
        builder.fill(groups)?;
        for (part, map) in parts.iter().filter(|(p, _)| p.len() > 0) {
            let mapped: Vec<usize> = part.groups.iter().map(|&g| map[g]).collect();
            for (accumulator, states) in builder.accumulators.iter_mut().zip(&part.states) {
                accumulator.merge_batch(states, &mapped, groups)?;
            }
            for (&g, &n) in mapped.iter().zip(&part.counts) {
                builder.counts[g] += n;
            }
        }
        builder.finish()
    }

    /// The partial states of `parts` together, numbered sparsely: each
    /// part's group `g` counts as group `rename(g)`, or is dropped when that
    /// is `None`. Unlike [`Aggregation::regroup`], the cost is the parts'
    /// rows, not the highest group number (how session states, numbered by
    /// session id, are merged).
    pub(crate) fn merge_sparse(
        &self,
        parts: &[&Partial],
        rename: impl Fn(usize) -> Option<usize>,
    ) -> Result<Partial> {
        let renamed: Vec<Vec<(u32, usize)>> = parts
            .iter()
            .map(|p| {
                let rows = p.groups.iter().enumerate();
                rows.filter_map(|(r, &g)| rename(g).map(|id| (r as u32, id)))
                    .collect()
            })
            .collect();
        let mut ids: Vec<usize> = renamed.iter().flatten().map(|&(_, id)| id).collect();
        ids.sort_unstable();
        ids.dedup();
        let position = |id: usize| ids.binary_search(&id).expect("gathered above");
        let picks: Vec<(&Partial, Vec<u32>, Vec<usize>)> = parts
            .iter()
            .zip(renamed)
            .map(|(p, rows)| {
                let (rows, positions) = rows.into_iter().map(|(r, id)| (r, position(id))).unzip();
                (*p, rows, positions)
            })
            .collect();
        let mut merged = self.merge_rows(&picks, ids.len())?.finish()?;
        for g in &mut merged.groups {
            *g = ids[*g];
        }
        Ok(merged)
    }

    /// The final values of chosen state rows: for each `(part, rows,
    /// groups)`, the part's state row `rows[i]` counts in group `groups[i]`
    /// of `groups_total` (several rows may count in one group).
    pub(crate) fn evaluate_rows(
        &self,
        picks: &[(&Partial, Vec<u32>, Vec<usize>)],
        groups_total: usize,
    ) -> Result<Evaluated> {
        self.merge_rows(picks, groups_total)?.evaluate(groups_total)
    }

    fn merge_rows(
        &self,
        picks: &[(&Partial, Vec<u32>, Vec<usize>)],
        groups_total: usize,
    ) -> Result<Builder> {
        let mut builder = self.builder()?;
        builder.fill(groups_total)?;
        for (part, rows, groups) in picks.iter().filter(|(_, rows, _)| !rows.is_empty()) {
            let chosen;
            let every_row = rows.len() == part.groups.len()
                && rows.iter().enumerate().all(|(i, &r)| r as usize == i);
            let states = if every_row {
                &part.states
            } else {
                chosen = part.select(rows, Vec::new())?;
                &chosen.states
            };
            for (accumulator, states) in builder.accumulators.iter_mut().zip(states) {
                accumulator.merge_batch(states, groups, groups_total)?;
            }
            for (&r, &g) in rows.iter().zip(groups) {
                builder.counts[g] += part.counts[r as usize];
            }
        }
        Ok(builder)
    }

    /// The final values of `parts` together, over `groups` groups: one
    /// array per aggregate, and the row count of each group.
    pub(crate) fn evaluate(&self, parts: &[&Partial], groups: usize) -> Result<Evaluated> {
        self.merged(parts, groups)?.evaluate(groups)
    }

    /// The output rows of `groups` (ascending group indices) of `values`.
    /// For a global aggregate (no keys) the one group is always output.
    pub(crate) fn output(
        &self,
        index: &mut KeyIndex,
        values: &Evaluated,
        groups: Option<&UInt32Array>,
    ) -> Result<RecordBatch> {
        let pick = |a: &ArrayRef| -> Result<ArrayRef> {
            Ok(match groups {
                Some(g) => take(a.as_ref(), g, None)?,
                None => Arc::clone(a),
            })
        };
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for key in index.keys()? {
            columns.push(pick(&key)?);
        }
        for value in &values.values {
            columns.push(pick(value)?);
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}
