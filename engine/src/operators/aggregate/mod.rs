//! Aggregates whose state outlives a batch (windows, running aggregates),
//! run on DataFusion's accumulators directly.
//!
//! DataFusion plans the aggregate (so every aggregate function works, user
//! aggregates included); [`Aggregation::compile`] takes the plan apart into
//! its input plan, its group expressions and its aggregate expressions.
//! Operators then keep:
//!
//! - a [`KeyIndex`]: each distinct group key gets a dense group index (with
//!   DataFusion's `GroupValues`), and the keys are kept for output;
//! - [`Partial`]s: the partial states (the accumulators' `state()`) of a set
//!   of rows, one state row for each group that had rows, with its group
//!   index and row count. Partials are combined with `merge_batch` by group
//!   index, with no hashing, and evaluated with `evaluate`.
//!
//! Group indices only grow until the operator compacts the index
//! ([`KeyIndex::compact`]), which keeps the live groups in order; a
//! partial is compacted with the same list ([`Partial::compact`]).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array, new_null_array};
use arrow::compute::{concat, take};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::execution::{SessionState, SessionStateBuilder, TaskContext};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator, LogicalPlan};
use datafusion::physical_expr::GroupsAccumulatorAdapter;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};

use crate::checkpoint::{StateReader, StateWriter};
use crate::error::{Error, Result};
use crate::graph::NodeId;
use crate::plan::{Slot, run_plan, scan_slots};

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
    /// An event-time window's time expression (the plan's first group key).
    time: Option<Arc<dyn PhysicalExpr>>,
}

/// One batch's rows, ready to aggregate.
pub(crate) struct Rows {
    groups: Vec<usize>,
    arguments: Vec<Vec<ArrayRef>>,
    filters: Vec<Option<BooleanArray>>,
    times: Option<ArrayRef>,
}

impl Rows {
    /// The group index of each row.
    pub(crate) fn groups(&self) -> &[usize] {
        &self.groups
    }

    /// Each row's event time, when the aggregation has a time key.
    pub(crate) fn times(&self) -> Option<&ArrayRef> {
        self.times.as_ref()
    }

    /// The rows at `picks` (a row may be picked more than once), in group
    /// `groups[i]` each: how one row joins several windows. `None` keeps
    /// every row in order.
    pub(crate) fn regroup(&self, picks: Option<&[u32]>, groups: Vec<usize>) -> Result<Rows> {
        let Some(picks) = picks else {
            return Ok(Rows {
                groups,
                arguments: self.arguments.clone(),
                filters: self.filters.clone(),
                times: None,
            });
        };
        let picks = UInt32Array::from(picks.to_vec());
        let take_all = |arrays: &[ArrayRef]| -> Result<Vec<ArrayRef>> {
            arrays
                .iter()
                .map(|a| Ok(take(a.as_ref(), &picks, None)?))
                .collect()
        };
        Ok(Rows {
            groups,
            arguments: self
                .arguments
                .iter()
                .map(|a| take_all(a))
                .collect::<Result<_>>()?,
            filters: self
                .filters
                .iter()
                .map(|f| {
                    f.as_ref()
                        .map(|f| {
                            let taken = take(f, &picks, None)?;
                            Ok(taken
                                .as_any()
                                .downcast_ref::<BooleanArray>()
                                .expect("take keeps the type")
                                .clone())
                        })
                        .transpose()
                })
                .collect::<Result<_>>()?,
            times: None,
        })
    }
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
        Ok(Aggregation {
            argument_types: argument_types.into(),
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
        })
    }

    /// How many state columns each aggregate has.
    fn state_widths(&self) -> Result<Vec<usize>> {
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

    /// Saves `partial` under `name`.
    pub(crate) fn save_partial(
        &self,
        partial: &Partial,
        state: &mut StateWriter,
        name: &str,
    ) -> Result<()> {
        use arrow::array::UInt64Array;
        use arrow::datatypes::Field;
        let mut fields = vec![
            Field::new("group", DataType::UInt64, false),
            Field::new("rows", DataType::UInt64, false),
        ];
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(
                partial.groups.iter().map(|&g| g as u64),
            )),
            Arc::new(UInt64Array::from(partial.counts.clone())),
        ];
        for (a, states) in partial.states.iter().enumerate() {
            for (c, column) in states.iter().enumerate() {
                fields.push(Field::new(
                    format!("s{a}_{c}"),
                    column.data_type().clone(),
                    true,
                ));
                columns.push(Arc::clone(column));
            }
        }
        state.batch(
            name,
            RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?,
        );
        Ok(())
    }

    /// The partial saved under `name`.
    pub(crate) fn load_partial(&self, state: &StateReader, name: &str) -> Result<Partial> {
        use arrow::array::{AsArray, UInt64Array};
        let batch = state.batch(name)?;
        if batch.num_rows() == 0 {
            return Ok(Partial::default());
        }
        let widths = self.state_widths()?;
        if batch.num_columns() != 2 + widths.iter().sum::<usize>() {
            return Err(Error::Checkpoint(format!(
                "the saved state '{name}' does not fit the query's aggregates"
            )));
        }
        let u64s = |i: usize| -> Result<&UInt64Array> {
            batch
                .column(i)
                .as_primitive_opt()
                .ok_or_else(|| Error::Checkpoint(format!("the saved state '{name}' is damaged")))
        };
        let groups: Vec<usize> = u64s(0)?.values().iter().map(|&g| g as usize).collect();
        let counts = u64s(1)?.values().to_vec();
        if groups.windows(2).any(|w| w[0] >= w[1]) || counts.contains(&0) {
            return Err(Error::Checkpoint(format!(
                "the saved state '{name}' is damaged (groups out of order or empty)"
            )));
        }
        let mut states = Vec::with_capacity(widths.len());
        let mut at = 2;
        for width in widths {
            states.push(batch.columns()[at..at + width].to_vec());
            at += width;
        }
        Ok(Partial {
            groups,
            states,
            counts,
        })
    }

    /// Merges partials into fresh accumulators, sized to `groups` groups.
    fn merged(&self, parts: &[&Partial], groups: usize) -> Result<Builder> {
        let mut builder = self.builder()?;
        for part in parts.iter().filter(|p| p.len() > 0) {
            // Every index below the new total is in this call (see `Builder`).
            if !part.is_dense() {
                builder.fill(part.len())?;
            }
            let total = builder.counts.len().max(part.len());
            for (accumulator, states) in builder.accumulators.iter_mut().zip(&part.states) {
                accumulator.merge_batch(states, &part.groups, total)?;
            }
            builder.counts.resize(total, 0);
            for (g, n) in part.rows() {
                builder.counts[g] += n;
            }
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

/// Final values of some groups: one array per aggregate, and how many rows
/// each group had.
pub(crate) struct Evaluated {
    pub(crate) values: Vec<ArrayRef>,
    pub(crate) counts: Vec<u64>,
}

impl Evaluated {
    /// The groups that had rows, ascending; `None` when all of them had.
    pub(crate) fn groups_with_rows(&self) -> Option<UInt32Array> {
        if self.counts.iter().all(|&n| n > 0) {
            return None;
        }
        Some(
            self.counts
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(g, _)| g as u32)
                .collect(),
        )
    }
}

/// Accumulators being fed rows.
///
/// DataFusion's accumulators assume that when a call raises the number of
/// groups, every new group index is in that call (their hash aggregate
/// numbers groups as it meets them); some mark all groups up to the new
/// total as having seen a value. Group indices here come from a key index
/// shared across batches, so a builder never raises its total past the
/// groups of the call, and first adds groups a call skips as rows that are
/// filtered out ([`Builder::fill`]): they exist, with no value.
pub(crate) struct Builder {
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    counts: Vec<u64>,
    argument_types: Arc<[Vec<DataType>]>,
}

impl Builder {
    /// Adds `rows`.
    pub(crate) fn update(&mut self, rows: &Rows) -> Result<()> {
        let before = self.counts.len();
        let needed = rows
            .groups
            .iter()
            .max()
            .map_or(before, |g| before.max(g + 1));
        if needed > before {
            let mut present = vec![false; needed - before];
            for &g in rows.groups.iter().filter(|&&g| g >= before) {
                present[g - before] = true;
            }
            if present.iter().any(|p| !p) {
                self.fill(needed)?;
            }
        }
        for ((accumulator, arguments), filter) in self
            .accumulators
            .iter_mut()
            .zip(&rows.arguments)
            .zip(&rows.filters)
        {
            accumulator.update_batch(arguments, &rows.groups, filter.as_ref(), needed)?;
        }
        self.counts.resize(needed, 0);
        for &g in &rows.groups {
            self.counts[g] += 1;
        }
        Ok(())
    }

    /// Raises the number of groups to `groups`, the new ones empty.
    fn fill(&mut self, groups: usize) -> Result<()> {
        let from = self.counts.len();
        if groups <= from {
            return Ok(());
        }
        let n = groups - from;
        let indices: Vec<usize> = (from..groups).collect();
        let filter = BooleanArray::from(vec![false; n]);
        for (accumulator, types) in self.accumulators.iter_mut().zip(self.argument_types.iter()) {
            let arguments: Vec<ArrayRef> = types.iter().map(|t| new_null_array(t, n)).collect();
            accumulator.update_batch(&arguments, &indices, Some(&filter), groups)?;
        }
        self.counts.resize(groups, 0);
        Ok(())
    }

    /// The partial states of what was added, for the groups that had rows.
    pub(crate) fn finish(mut self) -> Result<Partial> {
        if self.counts.iter().all(|&n| n == 0) {
            return Ok(Partial::default());
        }
        let states = self
            .accumulators
            .iter_mut()
            .map(|a| a.state(EmitTo::All))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let dense = Partial {
            groups: (0..self.counts.len()).collect(),
            states,
            counts: self.counts,
        };
        if dense.counts.iter().all(|&n| n > 0) {
            return Ok(dense);
        }
        let (rows, groups): (Vec<u32>, Vec<usize>) = dense
            .rows()
            .filter(|(_, n)| *n > 0)
            .map(|(g, _)| (g as u32, g))
            .unzip();
        dense.select(&rows, groups)
    }

    /// Bytes held by the accumulators.
    pub(crate) fn bytes(&self) -> usize {
        self.accumulators.iter().map(|a| a.size()).sum::<usize>() + self.counts.len() * 8
    }

    /// The final values of what was added, for `groups` groups.
    pub(crate) fn evaluate(mut self, groups: usize) -> Result<Evaluated> {
        self.fill(groups)?;
        let values = self
            .accumulators
            .iter_mut()
            .map(|a| a.evaluate(EmitTo::All))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        Ok(Evaluated {
            values,
            counts: self.counts,
        })
    }
}

/// The partial states of a set of rows: for each group that had rows, its
/// group index, its state row (per aggregate, its state columns) and its row
/// count. Only groups with rows are kept, so a pane's state is sized by the
/// keys it saw, not by every key of the window.
#[derive(Clone, Default)]
pub(crate) struct Partial {
    groups: Vec<usize>,
    states: Vec<Vec<ArrayRef>>,
    counts: Vec<u64>,
}

impl Partial {
    /// One more than the highest group index it holds (0 when empty).
    pub(crate) fn len(&self) -> usize {
        self.groups.last().map_or(0, |g| g + 1)
    }

    /// Whether it holds every group index below [`Partial::len`].
    fn is_dense(&self) -> bool {
        self.groups.len() == self.len()
    }

    /// Each group it holds (ascending) with its row count.
    pub(crate) fn rows(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.groups.iter().copied().zip(self.counts.iter().copied())
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.states
            .iter()
            .flatten()
            .map(|a| a.get_array_memory_size())
            .sum::<usize>()
            + self.counts.len() * 16
    }

    /// The state rows at `rows` (ascending positions), renumbered `groups`.
    fn select(&self, rows: &[u32], groups: Vec<usize>) -> Result<Partial> {
        let rows = UInt32Array::from(rows.to_vec());
        let states = self
            .states
            .iter()
            .map(|columns| {
                columns
                    .iter()
                    .map(|c| Ok(take(c.as_ref(), &rows, None)?))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let counts = rows
            .values()
            .iter()
            .map(|&r| self.counts[r as usize])
            .collect();
        Ok(Partial {
            groups,
            states,
            counts,
        })
    }

    /// The states of `groups` (each held), renumbered `0..` in that order:
    /// a dense partial to evaluate just those groups.
    pub(crate) fn pick(&self, groups: &[usize]) -> Result<Partial> {
        let rows = groups
            .iter()
            .map(|g| {
                self.groups
                    .binary_search(g)
                    .map(|r| r as u32)
                    .map_err(|_| Error::Internal(format!("group {g} has no state")))
            })
            .collect::<Result<Vec<_>>>()?;
        self.select(&rows, (0..groups.len()).collect())
    }

    /// Keeps the groups `live` (ascending), renumbered by their position in
    /// `live`: the partial after [`KeyIndex::compact`] with the same `live`.
    pub(crate) fn compact(&self, live: &UInt32Array) -> Result<Partial> {
        let mut rows = Vec::new();
        let mut groups = Vec::new();
        for (row, &g) in self.groups.iter().enumerate() {
            if let Ok(position) = live.values().binary_search(&(g as u32)) {
                rows.push(row as u32);
                groups.push(position);
            }
        }
        self.select(&rows, groups)
    }
}

/// Group keys to dense group indices (in order of first appearance), with
/// the keys kept for output. A global aggregate (no keys) has one group.
pub(crate) struct KeyIndex {
    values: Option<Box<dyn GroupValues>>,
    schema: SchemaRef,
    keys: Vec<Vec<ArrayRef>>,
    len: usize,
}

impl KeyIndex {
    fn new(schema: SchemaRef) -> Result<Self> {
        let global = schema.fields().is_empty();
        Ok(KeyIndex {
            values: if global {
                None
            } else {
                Some(new_group_values(Arc::clone(&schema), &GroupOrdering::None)?)
            },
            schema,
            keys: Vec::new(),
            len: usize::from(global),
        })
    }

    /// Whether this is the one group of an aggregate without keys.
    pub(crate) fn is_global(&self) -> bool {
        self.values.is_none()
    }

    /// How many groups there are.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes held by the index and its keys.
    pub(crate) fn bytes(&self) -> usize {
        self.values.as_ref().map_or(0, |v| v.size())
            + self
                .keys
                .iter()
                .flatten()
                .map(|a| a.get_array_memory_size())
                .sum::<usize>()
    }

    /// The group index of each of the `n` rows of key columns `keys`.
    fn intern(&mut self, keys: &[ArrayRef], n: usize, groups: &mut Vec<usize>) -> Result<()> {
        let Some(values) = self.values.as_mut() else {
            groups.clear();
            groups.resize(n, 0);
            return Ok(());
        };
        if n == 0 {
            groups.clear();
            return Ok(());
        }
        values.intern(keys, groups)?;
        let before = self.len;
        let after = values.len();
        if after > before {
            // The first row of each new group, by group index.
            let mut first_rows: Vec<Option<u32>> = vec![None; after - before];
            for (row, &g) in groups.iter().enumerate() {
                if g >= before && first_rows[g - before].is_none() {
                    first_rows[g - before] = Some(row as u32);
                }
            }
            let rows = first_rows
                .into_iter()
                .collect::<Option<Vec<u32>>>()
                .map(UInt32Array::from)
                .ok_or_else(|| Error::Internal("a new group without a row".into()))?;
            self.keys.push(
                keys.iter()
                    .map(|k| Ok(take(k.as_ref(), &rows, None)?))
                    .collect::<Result<Vec<_>>>()?,
            );
            self.len = after;
        }
        Ok(())
    }

    /// The key columns, one row per group index. The keys of new groups
    /// arrive in chunks; they are joined here once, and kept joined.
    pub(crate) fn keys(&mut self) -> Result<Vec<ArrayRef>> {
        if self.keys.len() > 1 {
            let joined = (0..self.schema.fields().len())
                .map(|c| {
                    let parts: Vec<&dyn Array> = self.keys.iter().map(|k| k[c].as_ref()).collect();
                    Ok(concat(&parts)?)
                })
                .collect::<Result<Vec<_>>>()?;
            self.keys = vec![joined];
        }
        Ok(match self.keys.first() {
            Some(keys) => keys.clone(),
            None => self
                .schema
                .fields()
                .iter()
                .map(|f| arrow::array::new_empty_array(f.data_type()))
                .collect(),
        })
    }

    /// When most groups are dead (`live[g]` false), keeps only the live
    /// ones, renumbered `0..` in order, and returns them (to compact the
    /// partials kept with the same list). Compacting only then keeps the
    /// index at most twice the live keys, at an amortized constant cost.
    pub(crate) fn compact_if_sparse(&mut self, live: &[bool]) -> Result<Option<UInt32Array>> {
        let alive = live.iter().filter(|l| **l).count();
        if self.is_global() || alive * 2 >= live.len().max(1) {
            return Ok(None);
        }
        let live: UInt32Array = (0..live.len() as u32)
            .filter(|&g| live[g as usize])
            .collect();
        self.compact(&live)?;
        Ok(Some(live))
    }

    /// Saves the keys under `name`.
    pub(crate) fn save(&mut self, state: &mut StateWriter, name: &str) -> Result<()> {
        let keys = self.keys()?;
        state.batch(
            name,
            RecordBatch::try_new_with_options(
                Arc::clone(&self.schema),
                keys,
                &arrow::array::RecordBatchOptions::new()
                    .with_row_count(Some(if self.is_global() { 0 } else { self.len })),
            )?,
        );
        Ok(())
    }

    /// Restores the keys saved under `name`: group `g` is the saved row `g`.
    pub(crate) fn load(&mut self, state: &StateReader, name: &str) -> Result<()> {
        if self.is_global() {
            return Ok(());
        }
        let batch = state.batch(name)?;
        let live: UInt32Array = (0..batch.num_rows() as u32).collect();
        self.keys = vec![batch.columns().to_vec()];
        self.len = batch.num_rows();
        self.compact(&live)
    }

    /// Keeps only the groups `live` (ascending), renumbered `0..` in order.
    pub(crate) fn compact(&mut self, live: &UInt32Array) -> Result<()> {
        if self.values.is_none() {
            return Ok(());
        }
        let keys = self
            .keys()?
            .iter()
            .map(|k| Ok(take(k.as_ref(), live, None)?))
            .collect::<Result<Vec<_>>>()?;
        let mut fresh = new_group_values(Arc::clone(&self.schema), &GroupOrdering::None)?;
        let mut groups = Vec::new();
        if !live.is_empty() {
            fresh.intern(&keys, &mut groups)?;
        }
        self.values = Some(fresh);
        self.len = live.len();
        self.keys = if live.is_empty() {
            Vec::new()
        } else {
            vec![keys]
        };
        Ok(())
    }
}
