//! One keyed operator run as several tasks side by side
//! (`SET parallelism = N`): Flink's keyed parallelism, inside one batch.
//!
//! An operator whose rows and state divide by key ([`Operator::keyed_by`]:
//! the group keys of a window or running aggregate, the equality
//! conditions of a join) is compiled once per task. Every batch:
//!
//! 1. each input row's key is hashed to its key group (`key_groups.rs`);
//!    the task that owns the group gets the row (of an aggregate's input,
//!    only the columns it reads). A large input is hashed in one slice per
//!    task at once, and each task copies its own rows out of the input, so
//!    routing is divided among the tasks too, not done on one core;
//! 2. the tasks run their batch at once, each on tokio's pool, each with
//!    every source's batch (so each follows the same watermark as the
//!    operator run as one: watermarks come from the sources, not from the
//!    rows a task gets);
//! 3. the output is the tasks' outputs one after another, and the late
//!    rows are their sums. The batch ends when every task has.
//!
//! So a batch's output is, as a multiset, the output of the operator run
//! as one: a key's rows all meet its one state. Row order differs; a query
//! that orders its output sorts after this operator.
//!
//! An operator that is not keyed runs as one task. A global aggregate
//! (a window with no `GROUP BY` key) still uses the tasks: it folds its
//! batch in slices at once and merges their partials into its one state
//! (`aggregate/sliced.rs`).
//!
//! # State, and restoring at another parallelism
//!
//! Each task saves its state on its own, under a prefix, beside the range
//! of key groups it owns. A query restored with another parallelism gives
//! each new task the saved states whose ranges overlap its own range: the
//! task runs one instance per overlapping saved state, each restored from
//! it and owning the overlap. An instance whose state came from a wider
//! range may hold keys of other tasks; it still gets only the rows of its
//! own groups and emits only rows of its own groups, so the other keys'
//! state does nothing, and goes when its windows close (a running
//! aggregate keeps it until its `state.ttl`, or forever: at most one copy
//! per task it was split into).
//!
//! At parallelism 1 with a state of one range (or none), the operator runs
//! as itself: no hashing, no tasks, and it saves exactly what it saved
//! before parallelism existed, so such checkpoints load either way.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, NullArray, RecordBatch, UInt32Array};
use arrow::compute::{cast, filter_record_batch, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::physical_expr::PhysicalExpr;
use serde_json::{Value, json};

use crate::checkpoint::{StateReader, StateWriter};
use crate::error::{Error, Result};
use crate::key_groups::{GroupRange, KEY_GROUPS, key_groups, task_range};
use crate::operator::{
    BatchContext, CompileContext, Input, KeyedBy, LateRows, NodeId, Operator, OperatorDef, Polled,
};
use crate::operators::tasks::{self, join_all};
use crate::time::BatchTime;

/// The state value that says a state was saved by several instances.
const LAYOUT: &str = "partitioned";

/// One saved instance: the key groups it owned, whether its state may hold
/// other groups' keys, and the prefix its state is under.
#[derive(Debug, Clone)]
struct SavedInstance {
    first: u16,
    end: u16,
    filtered: bool,
    prefix: String,
}

/// Compiles `def` to run as `parallelism` tasks, or as itself when it is not
/// keyed or one task with a whole state will do. `saved` is the state the
/// query restores for it, if any: the instances follow its layout (load
/// it with [`Operator::load`] after).
pub(crate) async fn compile(
    def: &dyn OperatorDef,
    at: &CompileContext<'_>,
    parallelism: usize,
    saved: Option<&StateReader>,
) -> Result<Box<dyn Operator>> {
    let first = def.compile(at).await?;
    let layout: Option<Vec<SavedInstance>> = match saved {
        Some(state) if state.has_value(LAYOUT) => {
            Some(SavedInstance::layout(state.value(LAYOUT)?)?)
        }
        Some(_) => Some(vec![SavedInstance::entire()]),
        None => None,
    };
    let Some(keyed) = first.keyed_by() else {
        return match layout {
            Some(layout) if layout.len() > 1 => Err(Error::Checkpoint(
                "the state was saved by several tasks of an operator that now runs as one".into(),
            )),
            _ => Ok(first),
        };
    };
    let plan = plan_instances(parallelism, layout.as_deref());
    if plan.len() == 1 && plan[0].1.is_whole() {
        return Ok(first);
    }
    let key_types = key_types(&keyed, &at.inputs)?;
    let mut first = Some(first);
    let mut tasks: Vec<Vec<Instance>> = (0..parallelism).map(|_| Vec::new()).collect();
    for (task, planned) in plan {
        let operator = match first.take() {
            Some(op) => op,
            None => def.compile(at).await?,
        };
        tasks[task].push(Instance {
            operator,
            groups: planned.first..planned.end,
            filtered: planned.filtered,
            restore_from: layout.as_ref().map(|_| planned.prefix.clone()),
        });
    }
    tasks.retain(|t| !t.is_empty());
    let mut owner = vec![(0, 0); KEY_GROUPS as usize];
    for (t, task) in tasks.iter().enumerate() {
        for (i, instance) in task.iter().enumerate() {
            for g in instance.groups.clone() {
                owner[g as usize] = (t, i);
            }
        }
    }
    Ok(Box::new(Partitioned {
        tasks,
        owner: owner.into(),
        keyed,
        key_types,
        schema: at.schema.clone(),
    }))
}

impl SavedInstance {
    /// The one instance of an operator that ran as itself.
    fn entire() -> Self {
        SavedInstance {
            first: 0,
            end: KEY_GROUPS,
            filtered: false,
            prefix: String::new(),
        }
    }

    /// The saved instances a layout value lists.
    fn layout(value: &Value) -> Result<Vec<SavedInstance>> {
        let damaged =
            || Error::Checkpoint(format!("a partitioned state's layout is damaged: {value}"));
        let group = |v: &Value, name: &str| -> Option<u16> {
            v.get(name)?
                .as_u64()
                .filter(|&g| g <= KEY_GROUPS as u64)
                .map(|g| g as u16)
        };
        value
            .as_array()
            .ok_or_else(damaged)?
            .iter()
            .map(|v| {
                let instance = || {
                    Some(SavedInstance {
                        first: group(v, "first")?,
                        end: group(v, "end")?,
                        filtered: v.get("filtered")?.as_bool()?,
                        prefix: v.get("prefix")?.as_str()?.to_string(),
                    })
                };
                instance().ok_or_else(damaged)
            })
            .collect()
    }

    /// This instance as a layout entry.
    fn to_json(&self) -> Value {
        json!({"first": self.first, "end": self.end, "filtered": self.filtered, "prefix": self.prefix})
    }

    /// Whether it owns every key group and holds only its own keys.
    fn is_whole(&self) -> bool {
        self.first == 0 && self.end == KEY_GROUPS && !self.filtered
    }
}

/// The instances of `parallelism` tasks, as (task, what it owns and where
/// it restores from): one per task when fresh; restored, one per overlap
/// of a task's range with a saved instance's.
fn plan_instances(
    parallelism: usize,
    layout: Option<&[SavedInstance]>,
) -> Vec<(usize, SavedInstance)> {
    let fresh = [SavedInstance::entire()];
    let saved = layout.unwrap_or(&fresh);
    let mut plan = Vec::new();
    for task in 0..parallelism {
        let range = task_range(task, parallelism);
        for s in saved {
            let (first, end) = (range.start.max(s.first), range.end.min(s.end));
            if first < end {
                plan.push((
                    task,
                    SavedInstance {
                        first,
                        end,
                        // A fresh instance holds nothing to filter.
                        filtered: layout.is_some()
                            && (s.filtered || first != s.first || end != s.end),
                        prefix: s.prefix.clone(),
                    },
                ));
            }
        }
    }
    plan
}

/// The key's types, as the first input's expressions give them.
fn key_types(keyed: &KeyedBy, inputs: &[Input]) -> Result<Vec<DataType>> {
    let (node, exprs) = &keyed.inputs[0];
    let input = inputs
        .iter()
        .find(|i| i.id == *node)
        .ok_or_else(|| Error::Internal(format!("a keyed operator does not read node {node}")))?;
    Ok(exprs
        .iter()
        .map(|e| e.data_type(&input.schema))
        .collect::<datafusion::error::Result<_>>()?)
}

/// One task's share of a keyed operator.
struct Instance {
    operator: Box<dyn Operator>,
    /// The key groups whose rows it gets and emits.
    groups: GroupRange,
    /// Whether its state may hold keys of other groups (restored from a
    /// wider range): its output is then filtered to its groups.
    filtered: bool,
    /// The saved instance it restores from (`""`: a state saved whole).
    restore_from: Option<String>,
}

/// A keyed operator run as several tasks (see the module docs).
struct Partitioned {
    /// Each task's instances, run one after another within the task.
    tasks: Vec<Vec<Instance>>,
    /// The (task, instance) that owns each key group.
    owner: Arc<[(usize, usize)]>,
    keyed: KeyedBy,
    key_types: Vec<DataType>,
    schema: SchemaRef,
}

/// One instance's batches of the operator's inputs.
type Values = HashMap<NodeId, Option<RecordBatch>>;

/// What one instance did in a batch.
type InstanceRun = (Result<Option<RecordBatch>>, Vec<LateRows>);

/// One instance's rows of one input, before they are taken: the input, and
/// the numbers of the instance's rows in it, as one ascending list per
/// slice they were hashed in. The instance's own task takes them, so the
/// copying is divided among the tasks.
struct Share {
    input: RecordBatch,
    rows: Vec<Vec<u32>>,
}

impl Share {
    /// The instance's rows, in the input's order.
    fn take(self) -> Result<RecordBatch> {
        let rows = match <[Vec<u32>; 1]>::try_from(self.rows) {
            Ok([rows]) => rows,
            Err(lists) => {
                let mut all = Vec::with_capacity(lists.iter().map(Vec::len).sum());
                lists.iter().for_each(|l| all.extend_from_slice(l));
                all
            }
        };
        Ok(take_record_batch(&self.input, &UInt32Array::from(rows))?)
    }
}

/// One instance's shares of every input (`None`: the input has no batch).
type Shares = Vec<(NodeId, Option<Share>)>;

/// Below this many rows an input is hashed in one slice: spawning would
/// cost more than it divides.
const SLICE_MIN_ROWS: usize = 16 * 1024;

/// The rows of `input[offset..offset + len]` each instance owns, as
/// `[task][instance]` lists of row numbers of the whole input.
fn rows_by_instance(
    exprs: &[Arc<dyn PhysicalExpr>],
    input: &RecordBatch,
    offset: usize,
    len: usize,
    owner: &[(usize, usize)],
    shape: &[usize],
) -> Result<Vec<Vec<Vec<u32>>>> {
    let slice = input.slice(offset, len);
    let keys = exprs
        .iter()
        .map(|e| e.evaluate(&slice).and_then(|v| v.into_array(len)))
        .collect::<datafusion::error::Result<Vec<ArrayRef>>>()?;
    // Room for a fair share and a little more, so that pushing rarely
    // grows a list.
    let instances = shape.iter().sum::<usize>();
    let share = len / instances + len / 16 + 16;
    let mut rows: Vec<Vec<Vec<u32>>> = shape
        .iter()
        .map(|&n| (0..n).map(|_| Vec::with_capacity(share)).collect())
        .collect();
    for (row, group) in key_groups(&keys, len)?.enumerate() {
        let (t, i) = owner[group as usize];
        rows[t][i].push((offset + row) as u32);
    }
    Ok(rows)
}

impl Partitioned {
    fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.tasks.iter().flatten()
    }

    /// Each instance's shares of every input: the rows of its key groups.
    /// A large input is hashed in one slice per task, at once (`&mut`:
    /// held across the wait, `self` need only be `Send`).
    async fn route(&mut self, batch: &BatchContext<'_>) -> Result<Vec<Vec<Shares>>> {
        let shape: Vec<usize> = self.tasks.iter().map(Vec::len).collect();
        let mut routed: Vec<Vec<Shares>> = shape
            .iter()
            .map(|&n| (0..n).map(|_| Vec::new()).collect())
            .collect();
        for ((node, exprs), reads) in self.keyed.inputs.iter().zip(&self.keyed.reads) {
            let Some(input) = batch.input_of(*node) else {
                routed
                    .iter_mut()
                    .flatten()
                    .for_each(|s| s.push((*node, None)));
                continue;
            };
            let rows = input.num_rows();
            let slices = if rows >= SLICE_MIN_ROWS {
                shape.len()
            } else {
                1
            };
            let mut by_slice = Vec::with_capacity(slices);
            if slices == 1 {
                by_slice.push(rows_by_instance(
                    exprs,
                    &input,
                    0,
                    rows,
                    &self.owner,
                    &shape,
                )?);
            } else {
                let handles: Vec<_> = (0..slices)
                    .map(|s| {
                        let (offset, end) = (s * rows / slices, (s + 1) * rows / slices);
                        let (exprs, input) = (exprs.clone(), input.clone());
                        let (owner, shape) = (Arc::clone(&self.owner), shape.clone());
                        tasks::spawn(async move {
                            rows_by_instance(&exprs, &input, offset, end - offset, &owner, &shape)
                        })
                    })
                    .collect();
                for rows in join_all(handles, "hashing a slice of a keyed operator's input").await?
                {
                    by_slice.push(rows?);
                }
            }
            let input = match reads {
                Some(reads) => without_unread(&input, reads)?,
                None => input,
            };
            for (t, task) in routed.iter_mut().enumerate() {
                for (i, shares) in task.iter_mut().enumerate() {
                    let rows = by_slice
                        .iter_mut()
                        .map(|slice| std::mem::take(&mut slice[t][i]))
                        .collect();
                    let input = input.clone();
                    shares.push((*node, Some(Share { input, rows })));
                }
            }
        }
        Ok(routed)
    }
    /// `output` of an instance that owns `groups`: the rows of its groups.
    fn own_rows(&self, output: RecordBatch, groups: &GroupRange) -> Result<RecordBatch> {
        let rows = output.num_rows();
        let keys = self
            .keyed
            .output
            .iter()
            .zip(&self.key_types)
            .map(|(e, t)| {
                let column = e.evaluate(&output)?.into_array(rows)?;
                Ok(if column.data_type() == t {
                    column
                } else {
                    cast(&column, t)?
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let keep: arrow::array::BooleanArray = key_groups(&keys, rows)?
            .map(|g| Some(groups.contains(&g)))
            .collect();
        Ok(filter_record_batch(&output, &keep)?)
    }
}

/// `batch` with the columns not in `reads` replaced by columns of type
/// `Null` (no buffers): the tasks' scans project them away, and they are
/// not copied for each task.
fn without_unread(batch: &RecordBatch, reads: &[usize]) -> Result<RecordBatch> {
    let schema = batch.schema();
    let (fields, columns): (Vec<_>, Vec<_>) = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .enumerate()
        .map(|(i, (field, column))| {
            if reads.contains(&i) {
                (Arc::clone(field), Arc::clone(column))
            } else {
                (
                    Arc::new(Field::new(field.name(), DataType::Null, true)),
                    Arc::new(NullArray::new(batch.num_rows())) as ArrayRef,
                )
            }
        })
        .unzip();
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// Runs one task's instances on their shares, one after another, and
/// gives them back with what each did.
async fn run_task(
    mut instances: Vec<Instance>,
    shares: Vec<Shares>,
    time: BatchTime,
    inputs: Arc<[Input]>,
    polled: Arc<Polled>,
) -> (Vec<Instance>, Vec<InstanceRun>) {
    let mut runs = Vec::with_capacity(instances.len());
    for (instance, shares) in instances.iter_mut().zip(shares) {
        let values = shares
            .into_iter()
            .map(|(node, share)| Ok((node, share.map(Share::take).transpose()?)))
            .collect::<Result<Values>>();
        let values = match values {
            Ok(values) => values,
            Err(e) => {
                runs.push((Err(e), Vec::new()));
                continue;
            }
        };
        let mut context = BatchContext::new(time, &inputs, &values, &polled);
        let output = instance.operator.on_batch(&mut context).await;
        runs.push((output, context.late));
    }
    (instances, runs)
}

/// The late rows of several instances as one operator's: summed per set of
/// sources.
fn merge_late(all: impl IntoIterator<Item = LateRows>) -> Vec<LateRows> {
    let mut merged: Vec<LateRows> = Vec::new();
    for late in all {
        match merged.iter_mut().find(|m| m.sources == late.sources) {
            Some(m) => {
                m.rows += late.rows;
                m.max_behind = m.max_behind.max(late.max_behind);
                m.watermark = m.watermark.min(late.watermark);
            }
            None => merged.push(late),
        }
    }
    merged
}

#[async_trait]
impl Operator for Partitioned {
    async fn on_batch(&mut self, batch: &mut BatchContext<'_>) -> Result<Option<RecordBatch>> {
        let routed = self.route(batch).await?;
        let inputs: Arc<[Input]> = batch.inputs().into();
        let polled = Arc::new(batch.sources.clone());
        let tasks = std::mem::take(&mut self.tasks);
        let mut runs = Vec::with_capacity(tasks.len());
        if tasks.len() == 1 {
            for (instances, values) in tasks.into_iter().zip(routed) {
                runs.push(
                    run_task(
                        instances,
                        values,
                        batch.time,
                        inputs.clone(),
                        polled.clone(),
                    )
                    .await,
                );
            }
        } else {
            let handles: Vec<_> = tasks
                .into_iter()
                .zip(routed)
                .map(|(instances, values)| {
                    tasks::spawn(run_task(
                        instances,
                        values,
                        batch.time,
                        inputs.clone(),
                        polled.clone(),
                    ))
                })
                .collect();
            runs = join_all(handles, "a task of a keyed operator").await?;
        }
        let mut outputs = Vec::new();
        let mut late = Vec::new();
        let mut failed = None;
        for (instances, task_runs) in runs {
            for (instance, (output, instance_late)) in instances.iter().zip(task_runs) {
                late.extend(instance_late);
                match output {
                    Ok(Some(output)) if instance.filtered => {
                        outputs.push(self.own_rows(output, &instance.groups)?)
                    }
                    Ok(Some(output)) => outputs.push(output),
                    Ok(None) => {}
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
            self.tasks.push(instances);
        }
        if let Some(e) = failed {
            return Err(e);
        }
        batch.late.extend(merge_late(late));
        if outputs.is_empty() {
            return Ok(None);
        }
        Ok(Some(arrow::compute::concat_batches(
            &self.schema,
            &outputs,
        )?))
    }

    fn drain_until(&self, time: BatchTime) -> Option<BatchTime> {
        self.instances()
            .filter_map(|i| i.operator.drain_until(time))
            .max()
    }

    /// Each instance's state under its own prefix, with the layout.
    fn save(&mut self, state: &mut StateWriter) -> Result<()> {
        let mut layout = Vec::new();
        for (n, instance) in self.tasks.iter_mut().flatten().enumerate() {
            let prefix = format!("k{n}");
            let mut child = state.child(&prefix);
            instance.operator.save(&mut child)?;
            state.adopt(&prefix, child);
            layout.push(
                SavedInstance {
                    first: instance.groups.start,
                    end: instance.groups.end,
                    filtered: instance.filtered,
                    prefix,
                }
                .to_json(),
            );
        }
        state.value(LAYOUT, Value::Array(layout));
        Ok(())
    }

    /// Each instance restores the saved instance it was planned from.
    fn load(&mut self, state: &StateReader) -> Result<()> {
        for instance in self.tasks.iter_mut().flatten() {
            match instance.restore_from.as_deref() {
                None => {}
                Some("") => instance.operator.load(state)?,
                Some(prefix) => instance.operator.load(&state.child(prefix)?)?,
            }
        }
        Ok(())
    }

    fn state_bytes(&self) -> usize {
        self.instances().map(|i| i.operator.state_bytes()).sum()
    }

    fn watermark(&self) -> Option<i64> {
        self.instances()
            .filter_map(|i| i.operator.watermark())
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(plan: &[(usize, SavedInstance)]) -> Vec<(usize, u16, u16, bool, &str)> {
        plan.iter()
            .map(|(t, s)| (*t, s.first, s.end, s.filtered, s.prefix.as_str()))
            .collect()
    }

    #[test]
    fn fresh_tasks_own_equal_ranges() {
        assert_eq!(
            owned(&plan_instances(2, None)),
            vec![(0, 0, 64, false, ""), (1, 64, 128, false, "")]
        );
    }

    #[test]
    fn a_state_saved_by_two_tasks_restores_into_one_task_as_two_instances() {
        let saved = plan_instances(2, None)
            .into_iter()
            .enumerate()
            .map(|(n, (_, s))| SavedInstance {
                prefix: format!("k{n}"),
                ..s
            })
            .collect::<Vec<_>>();
        assert_eq!(
            owned(&plan_instances(1, Some(&saved))),
            vec![(0, 0, 64, false, "k0"), (0, 64, 128, false, "k1")]
        );
    }

    #[test]
    fn a_whole_state_restored_by_three_tasks_is_filtered_in_each() {
        let plan = plan_instances(3, Some(&[SavedInstance::entire()]));
        assert_eq!(
            owned(&plan),
            vec![
                (0, 0, 42, true, ""),
                (1, 42, 85, true, ""),
                (2, 85, 128, true, "")
            ]
        );
    }

    #[test]
    fn rows_hashed_in_slices_are_taken_in_the_order_of_rows_hashed_whole() {
        use arrow::array::{Int64Array, StringArray};
        use datafusion::physical_expr::expressions::Column;
        let rows = 50_000;
        let keys = Int64Array::from_iter_values((0..rows as i64).map(|r| r * 7919 % 1013));
        let names = StringArray::from_iter_values((0..rows).map(|r| format!("row {r}")));
        let input = RecordBatch::try_from_iter([
            ("k", Arc::new(keys) as ArrayRef),
            ("name", Arc::new(names) as ArrayRef),
        ])
        .unwrap();
        // Two tasks, the second with two instances (as restored from three).
        let shape = [1, 2];
        let owner: Vec<(usize, usize)> = (0..KEY_GROUPS)
            .map(|g| match g {
                0..50 => (0, 0),
                50..90 => (1, 0),
                _ => (1, 1),
            })
            .collect();
        let exprs: Vec<Arc<dyn PhysicalExpr>> = vec![Arc::new(Column::new("k", 0))];
        let whole = rows_by_instance(&exprs, &input, 0, rows, &owner, &shape).unwrap();
        let cut = [0, 12_345, 30_000, rows];
        let mut slices: Vec<_> = cut
            .windows(2)
            .map(|w| rows_by_instance(&exprs, &input, w[0], w[1] - w[0], &owner, &shape).unwrap())
            .collect();
        for (t, &instances) in shape.iter().enumerate() {
            for i in 0..instances {
                let take = |rows| {
                    Share {
                        input: input.clone(),
                        rows,
                    }
                    .take()
                    .unwrap()
                };
                let in_slices = slices.iter_mut().map(|s| std::mem::take(&mut s[t][i]));
                let taken = take(in_slices.collect());
                assert!(taken.num_rows() > 1_000, "every instance gets rows");
                assert_eq!(taken, take(vec![whole[t][i].clone()]));
            }
        }
    }
}
