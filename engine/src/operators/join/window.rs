//! The window join on event time (Flink's window join, DStream
//! `a.window(w).join(b.window(w))`): two streams whose rows carry the same
//! windows (`window_start`, `window_end`: a window aggregate's output, or a
//! `TUMBLE` table's rows), joined on the window bounds and keys.
//!
//! At every batch:
//!
//! 1. each side's new rows are kept with their window; a row whose window
//!    has already closed on its side (its end at or behind that side's
//!    watermark at the start of the batch) is late: dropped and counted. A
//!    window aggregate emits a window when it closes, so its rows are never
//!    late here;
//! 2. the watermarks advance; every window whose end **both** sides'
//!    watermarks have reached is joined — inner, left, right or full, as
//!    written — and emitted in this batch, once, and its rows are freed.
//!    At the end of input every watermark is +∞: every window is emitted.
//!
//! State is the rows of windows not yet closed on both sides.

use arrow::array::RecordBatch;
use async_trait::async_trait;

use super::{
    CompiledJoin, JoinCondition, append, bytes, describe_condition, late_rows, numbered,
    side_clock, split, times_of,
};
use crate::checkpoint::{StateReader, StateWriter};
use crate::error::{Error, Result};
use crate::explain::OperatorDescription;
use crate::operator::{BatchContext, CompileContext, KeyedBy, Operator, OperatorDef};
use crate::time::BatchTime;
use crate::watermark::WatermarkTracker;

/// A window join: the condition, each side's `window_end` column and
/// sources.
#[derive(Debug)]
pub(crate) struct WindowJoin {
    pub(crate) on: JoinCondition,
    pub(crate) left_end: String,
    pub(crate) right_end: String,
    pub(crate) left_sources: Vec<String>,
    pub(crate) right_sources: Vec<String>,
}

#[async_trait]
impl OperatorDef for WindowJoin {
    fn describe(&self) -> OperatorDescription {
        OperatorDescription::stateful("window join", "rows of windows not yet joined")
            .detail(describe_condition(&self.on))
            .detail(format!(
                "each window joined when both watermarks pass its end ({}.{}, {}.{})",
                self.on.left_alias, self.left_end, self.on.right_alias, self.right_end
            ))
    }

    async fn compile(&self, at: &CompileContext<'_>) -> Result<Box<dyn Operator>> {
        let (left, right) = (&at.inputs[0], &at.inputs[1]);
        let join = CompiledJoin::compile(at, &self.on, self.on.join_type).await?;
        Ok(Box::new(WindowJoinOperator {
            left_id: left.id,
            right_id: right.id,
            left_end: self.left_end.clone(),
            right_end: self.right_end.clone(),
            left_clock: side_clock(at, &self.left_sources, "a window join")?,
            right_clock: side_clock(at, &self.right_sources, "a window join")?,
            left_rows: RecordBatch::new_empty(left.schema.clone()),
            right_rows: RecordBatch::new_empty(right.schema.clone()),
            join,
        }))
    }
}

struct WindowJoinOperator {
    left_id: usize,
    right_id: usize,
    left_end: String,
    right_end: String,
    left_clock: WatermarkTracker,
    right_clock: WatermarkTracker,
    left_rows: RecordBatch,
    right_rows: RecordBatch,
    join: CompiledJoin,
}

#[async_trait]
impl Operator for WindowJoinOperator {
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
        let inputs = [input(self.left_id)?, input(self.right_id)?];
        for (rows, end, step, clock, kept) in [
            (
                &inputs[0],
                &self.left_end,
                left_step,
                &self.left_clock,
                &mut self.left_rows,
            ),
            (
                &inputs[1],
                &self.right_end,
                right_step,
                &self.right_clock,
                &mut self.right_rows,
            ),
        ] {
            let (on_time, late) = split(rows, end, |e| e > step.before)?;
            let behind = times_of(&late, end)?
                .into_iter()
                .flatten()
                .map(|e| step.before.saturating_sub(e))
                .max()
                .unwrap_or(0);
            batch.late.push(late_rows(
                clock,
                late.num_rows() as u64,
                behind,
                step.before,
            ));
            *kept = append(kept, &on_time)?;
        }
        let closed = left_step.after.min(right_step.after);
        let (left, left_open) = split(&self.left_rows, &self.left_end, |e| e <= closed)?;
        let (right, right_open) = split(&self.right_rows, &self.right_end, |e| e <= closed)?;
        self.left_rows = left_open;
        self.right_rows = right_open;
        if left.num_rows() == 0 && right.num_rows() == 0 {
            return Ok(Some(RecordBatch::new_empty(self.join.schema.clone())));
        }
        let (rows, _) = self.join.run(&numbered(&left, 0)?, &right).await?;
        Ok(Some(rows))
    }

    /// At the end of input every watermark is +∞: every window is joined
    /// in that very batch.
    fn drain_until(&self, _time: BatchTime) -> Option<BatchTime> {
        None
    }

    fn state_bytes(&self) -> usize {
        bytes(&self.left_rows) + bytes(&self.right_rows)
    }

    fn save(&mut self, state: &mut StateWriter) -> Result<()> {
        state.batch("left", self.left_rows.clone());
        state.batch("right", self.right_rows.clone());
        self.left_clock.save(state, "left.");
        self.right_clock.save(state, "right.");
        Ok(())
    }

    fn load(&mut self, state: &StateReader) -> Result<()> {
        self.left_rows = state.batch("left")?.clone();
        self.right_rows = state.batch("right")?.clone();
        self.left_clock.load(state, "left.")?;
        self.right_clock.load(state, "right.")
    }

    fn watermark(&self) -> Option<i64> {
        Some(self.left_clock.current().min(self.right_clock.current()))
    }
}
