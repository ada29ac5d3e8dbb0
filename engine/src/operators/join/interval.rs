//! The interval join on event time (Flink's interval join): rows of two
//! streams whose times are within bounds of each other,
//! `right.t - left.t ∈ [lower, upper]` (`s.ts BETWEEN o.ts AND o.ts +
//! INTERVAL '4' HOUR` is `[0, 4 h]`), and equal on their keys.
//!
//! At every batch, on each side, after the late rows are dropped (see
//! `mod.rs`):
//!
//! 1. the new left rows are joined with every kept right row and the new
//!    right rows; the new right rows with every kept left row. So an inner
//!    match is emitted **in the batch in which the second of its two rows
//!    arrives**, once;
//! 2. the watermarks advance; a left row of time `t` is kept while
//!    `t + upper` is at or ahead of the right side's watermark (a right row
//!    that is not late could still match it), a right row of time `s`
//!    while `s - lower` is at or ahead of the left side's. State is sized
//!    by what can still match, not by history. When a bound is another
//!    column of a row (`b.ts BETWEEN a.ts AND a.expires`, Nexmark's
//!    auctions), that column's value takes the place of the row's time;
//! 3. with `LEFT JOIN`, a left row that leaves the state without having
//!    matched is emitted once, with NULLs for the right side's columns:
//!    when its interval has passed the right side's watermark, at the
//!    latest at the end of input (where every watermark is +∞).
//!
//! The output of a batch is its matches, then its unmatched left rows.
//! Everything a later batch needs is kept in the checkpoint: both sides'
//! rows, which left rows matched, and both watermarks.

use std::collections::HashSet;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::common::JoinType;

use super::{
    CompiledJoin, JoinCondition, append, bytes, describe_condition, late_rows, numbered, on_time,
    row_numbers, side_clock, split,
};
use crate::checkpoint::{StateReader, StateWriter};
use crate::error::{Error, Result};
use crate::explain::OperatorDescription;
use crate::operator::{BatchContext, CompileContext, KeyedBy, Operator, OperatorDef};
use crate::time::BatchTime;
use crate::watermark::WatermarkTracker;

/// How far apart the two sides' times may be: `right.t - left.t` within
/// `[lower, upper]`, in milliseconds. Used for how long rows are kept; the
/// join condition itself decides what matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntervalBounds {
    /// The smallest `right.t - left.t` that matches.
    pub lower: i64,
    /// The largest `right.t - left.t` that matches; with `upper_column`,
    /// the largest `right.t - left.c`.
    pub upper: i64,
    /// A column of the left side that bounds the right side's time from
    /// above, instead of the left side's time (`b.ts BETWEEN a.ts AND
    /// a.expires`: each left row carries its own end).
    pub upper_column: Option<String>,
    /// A column of the right side that bounds the left side's time from
    /// above (`b.ts BETWEEN a.ts AND a.expires` with the bids on the
    /// left): `left.t <= right.c - lower`.
    pub lower_column: Option<String>,
}

impl IntervalBounds {
    /// `right.t - left.t ∈ [lower, upper]` milliseconds.
    pub fn new(lower: i64, upper: i64) -> Self {
        IntervalBounds {
            lower,
            upper,
            upper_column: None,
            lower_column: None,
        }
    }
}

/// An interval join: the condition, each side's time column and sources,
/// and the bounds.
#[derive(Debug)]
pub(crate) struct IntervalJoin {
    pub(crate) on: JoinCondition,
    pub(crate) left_time: String,
    pub(crate) right_time: String,
    pub(crate) bounds: IntervalBounds,
    pub(crate) left_sources: Vec<String>,
    pub(crate) right_sources: Vec<String>,
}

#[async_trait]
impl OperatorDef for IntervalJoin {
    fn describe(&self) -> OperatorDescription {
        OperatorDescription::stateful(
            "interval join",
            "rows the other side's watermark can still match",
        )
        .detail(describe_condition(&self.on))
        .detail(format!(
            "{}.{} - {}.{} between {} ms and {} ms",
            self.on.right_alias,
            self.right_time,
            self.on.left_alias,
            self.left_time,
            self.bounds.lower,
            self.bounds.upper
        ))
    }

    async fn compile(&self, at: &CompileContext<'_>) -> Result<Box<dyn Operator>> {
        let (left, right) = (&at.inputs[0], &at.inputs[1]);
        let join = CompiledJoin::compile(at, &self.on, JoinType::Inner).await?;
        let empty = |schema: &SchemaRef| numbered(&RecordBatch::new_empty(schema.clone()), 0);
        Ok(Box::new(IntervalJoinOperator {
            left_id: left.id,
            right_id: right.id,
            left_time: self.left_time.clone(),
            right_time: self.right_time.clone(),
            bounds: self.bounds.clone(),
            outer: self.on.join_type == JoinType::Left,
            left_clock: side_clock(at, &self.left_sources, "an interval join")?,
            right_clock: side_clock(at, &self.right_sources, "an interval join")?,
            left_rows: empty(&left.schema)?,
            right_rows: RecordBatch::new_empty(right.schema.clone()),
            matched: HashSet::new(),
            next_row: 0,
            join,
        }))
    }
}

struct IntervalJoinOperator {
    left_id: usize,
    right_id: usize,
    left_time: String,
    right_time: String,
    bounds: IntervalBounds,
    /// `LEFT JOIN`: unmatched left rows are emitted when they leave.
    outer: bool,
    left_clock: WatermarkTracker,
    right_clock: WatermarkTracker,
    /// Kept left rows, numbered.
    left_rows: RecordBatch,
    right_rows: RecordBatch,
    /// The numbers of kept left rows that matched (for `LEFT JOIN`).
    matched: HashSet<u64>,
    next_row: u64,
    join: CompiledJoin,
}

#[async_trait]
impl Operator for IntervalJoinOperator {
    /// By the join's equality conditions (`join/mod.rs`).
    fn keyed_by(&self) -> Option<KeyedBy> {
        self.join.keyed_by()
    }

    async fn on_batch(&mut self, batch: &mut BatchContext<'_>) -> Result<Option<RecordBatch>> {
        let left_step = self.left_clock.advance(batch.time, batch.sources)?;
        let right_step = self.right_clock.advance(batch.time, batch.sources)?;
        let input = |id| {
            batch
                .input_of(id)
                .ok_or_else(|| Error::Internal(format!("no batch for join input {id}")))
        };
        let (left, left_late, left_behind) =
            on_time(input(self.left_id)?, &self.left_time, left_step.before)?;
        let (right, right_late, right_behind) =
            on_time(input(self.right_id)?, &self.right_time, right_step.before)?;
        batch.late.push(late_rows(
            &self.left_clock,
            left_late,
            left_behind,
            left_step.before,
        ));
        batch.late.push(late_rows(
            &self.right_clock,
            right_late,
            right_behind,
            right_step.before,
        ));
        let left = numbered(&left, self.next_row)?;
        self.next_row += left.num_rows() as u64;

        let mut out = Vec::new();
        if left.num_rows() > 0 {
            let right_all = append(&self.right_rows, &right)?;
            if right_all.num_rows() > 0 {
                let (rows, matched) = self.join.run(&left, &right_all).await?;
                out.push(rows);
                if self.outer {
                    self.matched.extend(matched);
                }
            }
        }
        if right.num_rows() > 0 && self.left_rows.num_rows() > 0 {
            let (rows, matched) = self.join.run(&self.left_rows, &right).await?;
            out.push(rows);
            if self.outer {
                self.matched.extend(matched);
            }
        }

        let (lower, upper) = (self.bounds.lower, self.bounds.upper);
        let (right_mark, left_mark) = (right_step.after, left_step.after);
        let until = self.bounds.upper_column.as_ref().unwrap_or(&self.left_time);
        let (kept, gone) = split(&append(&self.left_rows, &left)?, until, |t| {
            t.saturating_add(upper) >= right_mark
        })?;
        self.left_rows = kept;
        let until = self
            .bounds
            .lower_column
            .as_ref()
            .unwrap_or(&self.right_time);
        let (kept, _) = split(&append(&self.right_rows, &right)?, until, |s| {
            s.saturating_sub(lower) >= left_mark
        })?;
        self.right_rows = kept;
        if gone.num_rows() > 0 && self.outer {
            let numbers = row_numbers(&gone)?;
            let unmatched: BooleanArray = numbers
                .iter()
                .map(|n| Some(n.is_some_and(|n| !self.matched.contains(&n))))
                .collect();
            for n in numbers.iter().flatten() {
                self.matched.remove(&n);
            }
            let unmatched = arrow::compute::filter_record_batch(&gone, &unmatched)?;
            if unmatched.num_rows() > 0 {
                out.push(self.join.pad_left(&unmatched)?);
            }
        }
        let schema = self.join.schema.clone();
        Ok(Some(arrow::compute::concat_batches(&schema, &out)?))
    }

    /// At the end of input every watermark is +∞: unmatched left rows are
    /// emitted in that very batch.
    fn drain_until(&self, _time: BatchTime) -> Option<BatchTime> {
        None
    }

    fn state_bytes(&self) -> usize {
        bytes(&self.left_rows) + bytes(&self.right_rows) + self.matched.len() * 8
    }

    fn save(&mut self, state: &mut StateWriter) -> Result<()> {
        state.batch("left", self.left_rows.clone());
        state.batch("right", self.right_rows.clone());
        let mut matched: Vec<u64> = self.matched.iter().copied().collect();
        matched.sort_unstable();
        state.value("matched", serde_json::json!(matched));
        state.value("next_row", serde_json::json!(self.next_row));
        self.left_clock.save(state, "left.");
        self.right_clock.save(state, "right.");
        Ok(())
    }

    fn load(&mut self, state: &StateReader) -> Result<()> {
        self.left_rows = state.batch("left")?.clone();
        self.right_rows = state.batch("right")?.clone();
        self.matched = state
            .i64s("matched")?
            .into_iter()
            .map(|n| n as u64)
            .collect();
        self.next_row = state.i64("next_row")? as u64;
        self.left_clock.load(state, "left.")?;
        self.right_clock.load(state, "right.")
    }

    fn watermark(&self) -> Option<i64> {
        Some(self.left_clock.current().min(self.right_clock.current()))
    }
}
