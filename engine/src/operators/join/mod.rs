//! Joins of two streams that keep rows across batches. A join of two
//! streams without any of these is per batch (DStream `join`): the rows of
//! one batch meet, and that needs no state (a stateless plan).
//!
//! | file | join | rows kept | emitted |
//! |---|---|---|---|
//! | `interval.rs` | interval join on event time (Flink's) | each side's rows while the other side's watermark can still match them | a match in the batch in which its second row arrives; an unmatched left row (LEFT JOIN) when its interval has passed the watermark |
//! | `window.rs` | window join on event time (Flink's) | each side's rows of windows not yet closed on both sides | a window's matches at the first batch at whose end both sides' watermarks have reached its end |
//! | `running.rs` | running join (Flink's regular join, `EMIT CHANGES`) | every row, or those younger than `state.ttl` | a match in the batch in which its second row arrives |
//!
//! What they share (this file): the join itself is DataFusion's. The
//! condition written in SQL (keys, time bounds, anything else) is planned
//! once, when the query starts, over two tables whose scans read rows the
//! operator puts there ([`crate::plan::SlotTable`]); each batch the operator
//! runs that plan over the rows that can meet. So every condition DataFusion
//! can join on works, and the operators only decide *which* rows meet and
//! *when* the result is emitted.
//!
//! Each side follows the watermark of its own sources. A row is **late**
//! when its event time is behind its side's watermark at the start of the
//! batch (for a window join: when its window has closed on its side): it is
//! dropped and counted, as event-time windows count theirs. Rows with no
//! event time are late too.
//!
//! The output's columns are the left side's, then the right side's; a
//! column name both sides have is qualified (`o.ts`, `s.ts`).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::JoinType;
use datafusion::datasource::provider_as_source;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::ExecutionPlan;

use crate::error::{Error, Result};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::joins::HashJoinExec;

use crate::operator::{CompileContext, KeyedBy, LateRows, NodeId};
use crate::plan::{Slot, SlotTable, over_scanned_stream, run_plan, scan_slots};
use crate::watermark::{Watermark, WatermarkTracker, event_millis};

pub mod interval;
pub mod running;
pub mod window;

pub use interval::IntervalBounds;

/// The column the left side's rows are numbered by, inside the operator.
const ROW: &str = "__brooklet_row";
/// The slot numbers of the two sides in the operator's plan.
const LEFT: NodeId = 0;
const RIGHT: NodeId = 1;

/// A join of two streams as SQL writes it: the join type, what each side
/// is called in the condition, and the condition.
#[derive(Debug, Clone)]
pub struct JoinCondition {
    /// Inner, left, right or full.
    pub join_type: JoinType,
    /// The name the condition gives the left side's columns (`o` in `o.id`).
    pub left_alias: String,
    /// The name the condition gives the right side's columns.
    pub right_alias: String,
    /// The condition (`ON …`), over columns qualified by the aliases.
    pub on: Expr,
}

/// `inner join on o.id = p.order_id`, for `EXPLAIN`.
pub(crate) fn describe_condition(on: &JoinCondition) -> String {
    format!(
        "{} join of {} and {} on {}",
        format!("{:?}", on.join_type).to_lowercase(),
        on.left_alias,
        on.right_alias,
        on.on
    )
}

/// The schema of a join's output: the left side's columns, then the right
/// side's, made nullable on the side an outer join pads; names both sides
/// have are qualified by the side's alias.
pub(crate) fn output_schema(left: &Schema, right: &Schema, on: &JoinCondition) -> SchemaRef {
    let (pad_left, pad_right) = match on.join_type {
        JoinType::Left => (false, true),
        JoinType::Right => (true, false),
        JoinType::Full => (true, true),
        _ => (false, false),
    };
    let both = |name: &str| {
        left.fields().iter().any(|f| f.name() == name)
            && right.fields().iter().any(|f| f.name() == name)
    };
    let side = |schema: &Schema, alias: &str, pad: bool| -> Vec<Field> {
        schema
            .fields()
            .iter()
            .map(|f| {
                let name = if both(f.name()) {
                    format!("{alias}.{}", f.name())
                } else {
                    f.name().clone()
                };
                Field::new(name, f.data_type().clone(), f.is_nullable() || pad)
                    .with_metadata(f.metadata().clone())
            })
            .collect()
    };
    let mut fields = side(left, &on.left_alias, pad_left);
    fields.extend(side(right, &on.right_alias, pad_right));
    Arc::new(Schema::new(fields))
}

/// The join planned over two slot tables: the left side's rows (numbered
/// by [`ROW`]) and the right side's.
fn join_plan(
    left: &Schema,
    right: &Schema,
    on: &JoinCondition,
    join_type: JoinType,
) -> Result<LogicalPlan> {
    let mut numbered = left.fields().to_vec();
    numbered.push(Arc::new(Field::new(ROW, DataType::UInt64, false)));
    let scan = |alias: &str, id: NodeId, schema: Schema| {
        LogicalPlanBuilder::scan(
            alias,
            provider_as_source(Arc::new(SlotTable {
                id,
                schema: Arc::new(schema),
            })),
            None,
        )
    };
    let right_scan = scan(&on.right_alias, RIGHT, right.clone())?.build()?;
    Ok(scan(&on.left_alias, LEFT, Schema::new(numbered))?
        .join_on(right_scan, join_type, [on.on.clone()])?
        .build()?)
}

/// Splits `rows` by `test` on the milliseconds of their column `column`:
/// (those that pass, the others). Rows with no value fail.
pub(crate) fn split(
    rows: &RecordBatch,
    column: &str,
    test: impl Fn(i64) -> bool,
) -> Result<(RecordBatch, RecordBatch)> {
    let pass: arrow::array::BooleanArray = times_of(rows, column)?
        .into_iter()
        .map(|t| Some(t.is_some_and(&test)))
        .collect();
    let fail = arrow::compute::not(&pass)?;
    Ok((
        arrow::compute::filter_record_batch(rows, &pass)?,
        arrow::compute::filter_record_batch(rows, &fail)?,
    ))
}

/// The join compiled for a running query.
pub(crate) struct CompiledJoin {
    plan: Arc<dyn ExecutionPlan>,
    scans: Vec<(NodeId, Slot)>,
    task: Arc<TaskContext>,
    /// The operator's output schema.
    schema: SchemaRef,
    /// Where [`ROW`] is in the plan's output.
    row_column: usize,
    /// The nodes of the two sides.
    inputs: [NodeId; 2],
    /// The join type written in SQL (the plan's may be inner, the
    /// operator padding unmatched rows itself).
    written: JoinType,
}

impl CompiledJoin {
    /// Plans `on` over the operator's two inputs, as `join_type`.
    pub(crate) async fn compile(
        at: &CompileContext<'_>,
        on: &JoinCondition,
        join_type: JoinType,
    ) -> Result<Self> {
        let (left, right) = (&at.inputs[0].schema, &at.inputs[1].schema);
        let logical = join_plan(left, right, on, join_type)?;
        let plan = at.session.create_physical_plan(&logical).await?;
        Ok(CompiledJoin {
            scans: scan_slots(&plan)?,
            task: at.session.task_ctx(),
            schema: at.schema.clone(),
            row_column: left.fields().len(),
            inputs: [at.inputs[0].id, at.inputs[1].id],
            written: on.join_type,
            plan,
        })
    }

    /// How the join's rows divide by key: by its equality conditions (all
    /// of them, window bounds included), when DataFusion joins on some and
    /// each side's are over the side's columns. Rows that can meet are
    /// equal on them, so they meet in one task; an unmatched left row of a
    /// `LEFT JOIN` is emitted by the task that holds it. The output's key
    /// is its left columns' (an inner or left join's output starts with
    /// the left side's columns); other outer joins are not keyed.
    pub(crate) fn keyed_by(&self) -> Option<KeyedBy> {
        if !matches!(self.written, JoinType::Inner | JoinType::Left) {
            return None;
        }
        let mut found = None;
        self.plan
            .apply(|p| {
                if let Some(join) = p.downcast_ref::<HashJoinExec>() {
                    found = Some((
                        Arc::clone(join.left()),
                        Arc::clone(join.right()),
                        join.on().to_vec(),
                    ));
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
            .ok()?;
        let (left, right, on) = found?;
        if on.is_empty() {
            return None;
        }
        let (build, probe): (Vec<_>, Vec<_>) = on.into_iter().unzip();
        let mut sides = [
            over_scanned_stream(&left, &build)?,
            over_scanned_stream(&right, &probe)?,
        ];
        // The planner may have swapped the sides: slot LEFT is the left.
        sides.sort_by_key(|(slot, _, _)| *slot);
        let [(LEFT, left_keys, _), (RIGHT, right_keys, _)] = sides else {
            return None;
        };
        let reads_row_number = left_keys.iter().any(|k| {
            let mut uses = false;
            let _ = k.apply(|e| {
                if let Some(c) = e.downcast_ref::<Column>() {
                    uses |= c.index() >= self.row_column;
                }
                Ok(TreeNodeRecursion::Continue)
            });
            uses
        });
        if reads_row_number {
            return None;
        }
        Some(KeyedBy {
            output: left_keys.clone(),
            inputs: vec![(self.inputs[0], left_keys), (self.inputs[1], right_keys)],
            // A join keeps whole rows.
            reads: vec![None, None],
        })
    }

    /// Joins `left` (with its row numbers) and `right`: the output rows, and
    /// the numbers of the left rows that matched.
    pub(crate) async fn run(
        &self,
        left: &RecordBatch,
        right: &RecordBatch,
    ) -> Result<(RecordBatch, Vec<u64>)> {
        let joined = run_plan(&self.plan, &self.task, &self.scans, |id| {
            Some(if id == LEFT {
                left.clone()
            } else {
                right.clone()
            })
        })
        .await?;
        let rows = joined
            .column(self.row_column)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .ok_or_else(|| Error::Internal("a join's row numbers are not u64".into()))?;
        let matched = rows.iter().flatten().collect();
        let mut columns: Vec<ArrayRef> = joined.columns().to_vec();
        columns.remove(self.row_column);
        Ok((
            RecordBatch::try_new(Arc::clone(&self.schema), columns)?,
            matched,
        ))
    }

    /// Left rows with no match: their columns, and NULLs for the right side's.
    pub(crate) fn pad_left(&self, left: &RecordBatch) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = left.columns()[..self.row_column].to_vec();
        for field in self.schema.fields().iter().skip(self.row_column) {
            columns.push(arrow::array::new_null_array(
                field.data_type(),
                left.num_rows(),
            ));
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

/// The watermark of one side: a tracker over the sources it reads.
pub(crate) fn side_clock(
    at: &CompileContext<'_>,
    sources: &[String],
    what: &str,
) -> Result<WatermarkTracker> {
    let sources = sources
        .iter()
        .map(|name| {
            let watermark: Watermark = at.watermarks.get(name).cloned().ok_or_else(|| {
                Error::Plan(format!(
                    "source '{name}' has no watermark, which {what} on event time needs"
                ))
            })?;
            Ok((name.clone(), watermark))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(WatermarkTracker::new(sources, at.idle_timeout, at.start))
}

/// A side's rows of one batch with their event times (milliseconds), the
/// late ones (behind `watermark`, or with no time) dropped and counted.
pub(crate) fn on_time(
    rows: RecordBatch,
    time_column: &str,
    watermark: i64,
) -> Result<(RecordBatch, u64, i64)> {
    if rows.num_rows() == 0 {
        return Ok((rows, 0, 0));
    }
    let times = event_millis(rows.column_by_name(time_column).ok_or_else(|| {
        Error::Internal(format!("a join side without its time column {time_column}"))
    })?)?;
    let keep: arrow::array::BooleanArray = times
        .iter()
        .map(|t| Some(t.is_some_and(|t| t >= watermark)))
        .collect();
    let late = (rows.num_rows() - keep.true_count()) as u64;
    if late == 0 {
        return Ok((rows, 0, 0));
    }
    let max_behind = times
        .iter()
        .flatten()
        .filter(|t| *t < watermark)
        .map(|t| watermark.saturating_sub(t))
        .max()
        .unwrap_or(0);
    Ok((
        arrow::compute::filter_record_batch(&rows, &keep)?,
        late,
        max_behind,
    ))
}

/// The late rows of one side, for the batch's report.
pub(crate) fn late_rows(
    clock: &WatermarkTracker,
    rows: u64,
    max_behind: i64,
    watermark: i64,
) -> LateRows {
    LateRows {
        sources: clock.source_names().iter().map(|s| s.to_string()).collect(),
        rows,
        max_behind,
        watermark,
    }
}

/// `rows` followed by `more` (same schema).
pub(crate) fn append(rows: &RecordBatch, more: &RecordBatch) -> Result<RecordBatch> {
    if rows.num_rows() == 0 {
        return Ok(more.clone());
    }
    if more.num_rows() == 0 {
        return Ok(rows.clone());
    }
    Ok(arrow::compute::concat_batches(
        &rows.schema(),
        [rows, more],
    )?)
}

/// The event times of `rows`' column `column`, in milliseconds.
pub(crate) fn times_of(rows: &RecordBatch, column: &str) -> Result<Vec<Option<i64>>> {
    let array = rows
        .column_by_name(column)
        .ok_or_else(|| Error::Internal(format!("no time column {column} in join state")))?;
    Ok(event_millis(array)?.iter().collect())
}

/// `rows` numbered from `first` in a trailing [`ROW`] column.
pub(crate) fn numbered(rows: &RecordBatch, first: u64) -> Result<RecordBatch> {
    let mut fields = rows.schema().fields().to_vec();
    fields.push(Arc::new(Field::new(ROW, DataType::UInt64, false)));
    let mut columns = rows.columns().to_vec();
    columns.push(Arc::new(UInt64Array::from_iter_values(
        first..first + rows.num_rows() as u64,
    )));
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// The row numbers of numbered rows.
pub(crate) fn row_numbers(rows: &RecordBatch) -> Result<&UInt64Array> {
    rows.column(rows.num_columns() - 1)
        .as_any()
        .downcast_ref::<UInt64Array>()
        .ok_or_else(|| Error::Internal("join state without row numbers".into()))
}

/// Bytes held by a batch of kept rows.
pub(crate) fn bytes(rows: &RecordBatch) -> usize {
    rows.columns()
        .iter()
        .map(|c| c.get_array_memory_size())
        .sum()
}
