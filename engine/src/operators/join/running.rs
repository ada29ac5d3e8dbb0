//! The running join (Flink's regular join, `… JOIN … EMIT CHANGES`): every
//! row of either stream meets every row of the other that arrived before
//! it or in the same batch, across batches.
//!
//! At every batch the new left rows are joined with all kept right rows
//! and the new right rows, and the kept left rows with the new right rows:
//! each match is emitted **once, in the batch in which its second row
//! arrives** (an append-only stream of matches, as an inner join's is).
//! Only inner joins: an outer join's padded rows would have to be taken
//! back when a match arrives later.
//!
//! State is every row of both sides. With a TTL (`SET state.ttl`), the rows
//! that arrived at batch time `u` are dropped at the first batch at or after
//! `u + ttl` (processing time, as running aggregates drop idle keys): they
//! meet no later row. Without one the state grows with the input, and the
//! planner says so when the query starts.

use std::collections::VecDeque;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::common::JoinType;

use super::{CompiledJoin, JoinCondition, bytes, describe_condition, numbered};
use crate::checkpoint::{StateReader, StateWriter};
use crate::error::{Error, Result};
use crate::explain::OperatorDescription;
use crate::operator::{BatchContext, CompileContext, KeyedBy, Operator, OperatorDef};
use crate::time::BatchTime;

/// A running join: the condition and how long rows are kept.
#[derive(Debug)]
pub(crate) struct RunningJoin {
    pub(crate) on: JoinCondition,
    pub(crate) ttl: Option<Duration>,
}

#[async_trait]
impl OperatorDef for RunningJoin {
    fn describe(&self) -> OperatorDescription {
        let ttl = self.ttl.map_or("rows kept forever".to_string(), |ttl| {
            format!(
                "rows dropped after {} of processing time",
                crate::time::format_duration(ttl)
            )
        });
        OperatorDescription::stateful("running join", "every row of both sides within the TTL")
            .detail(describe_condition(&self.on))
            .detail(ttl)
    }

    async fn compile(&self, at: &CompileContext<'_>) -> Result<Box<dyn Operator>> {
        let (left, right) = (&at.inputs[0], &at.inputs[1]);
        let join = CompiledJoin::compile(at, &self.on, JoinType::Inner).await?;
        Ok(Box::new(RunningJoinOperator {
            left: Kept::new(left.id, left.schema.clone()),
            right: Kept::new(right.id, right.schema.clone()),
            ttl: self.ttl,
            join,
        }))
    }
}

/// One side's rows, by the batch time they arrived at.
struct Kept {
    input: usize,
    schema: SchemaRef,
    rows: VecDeque<(BatchTime, RecordBatch)>,
}

impl Kept {
    fn new(input: usize, schema: SchemaRef) -> Self {
        Kept {
            input,
            schema,
            rows: VecDeque::new(),
        }
    }

    /// Every kept row, then `more`.
    fn all_with(&self, more: &RecordBatch) -> Result<RecordBatch> {
        let parts: Vec<&RecordBatch> = self.rows.iter().map(|(_, b)| b).chain([more]).collect();
        Ok(arrow::compute::concat_batches(&self.schema, parts)?)
    }

    /// Drops the rows that arrived at or before `oldest_kept`'s cutoff.
    fn expire(&mut self, time: BatchTime, ttl: Option<Duration>) {
        let Some(ttl) = ttl else { return };
        let ttl = ttl.as_millis() as i64;
        while let Some((arrived, _)) = self.rows.front() {
            if time.millis() >= arrived.millis().saturating_add(ttl) {
                self.rows.pop_front();
            } else {
                break;
            }
        }
    }

    fn save(&self, state: &mut StateWriter, side: &str) {
        let times: Vec<i64> = self.rows.iter().map(|(t, _)| t.millis()).collect();
        state.value(&format!("{side}.times"), serde_json::json!(times));
        for (i, (_, rows)) in self.rows.iter().enumerate() {
            state.batch(format!("{side}.{i}"), rows.clone());
        }
    }

    fn load(&mut self, state: &StateReader, side: &str) -> Result<()> {
        for (i, time) in state
            .i64s(&format!("{side}.times"))?
            .into_iter()
            .enumerate()
        {
            let rows = state.batch(&format!("{side}.{i}"))?.clone();
            self.rows.push_back((BatchTime::from_millis(time), rows));
        }
        Ok(())
    }

    fn bytes(&self) -> usize {
        self.rows.iter().map(|(_, b)| bytes(b)).sum()
    }
}

struct RunningJoinOperator {
    left: Kept,
    right: Kept,
    ttl: Option<Duration>,
    join: CompiledJoin,
}

#[async_trait]
impl Operator for RunningJoinOperator {
    /// By the join's equality conditions (`join/mod.rs`).
    fn keyed_by(&self) -> Option<KeyedBy> {
        self.join.keyed_by()
    }

    async fn on_batch(&mut self, batch: &mut BatchContext<'_>) -> Result<Option<RecordBatch>> {
        let input = |id| {
            batch
                .input_of(id)
                .ok_or_else(|| Error::Internal(format!("no batch for join input {id}")))
        };
        let (left, right) = (input(self.left.input)?, input(self.right.input)?);
        self.left.expire(batch.time, self.ttl);
        self.right.expire(batch.time, self.ttl);
        let mut out = Vec::new();
        if left.num_rows() > 0 {
            let right_all = self.right.all_with(&right)?;
            if right_all.num_rows() > 0 {
                out.push(self.join.run(&numbered(&left, 0)?, &right_all).await?.0);
            }
        }
        if right.num_rows() > 0 && !self.left.rows.is_empty() {
            let left_kept = self.left.all_with(&RecordBatch::new_empty(left.schema()))?;
            out.push(self.join.run(&numbered(&left_kept, 0)?, &right).await?.0);
        }
        for (kept, rows) in [(&mut self.left, left), (&mut self.right, right)] {
            if rows.num_rows() > 0 {
                kept.rows.push_back((batch.time, rows));
            }
        }
        Ok(Some(arrow::compute::concat_batches(
            &self.join.schema,
            &out,
        )?))
    }

    /// It emits only when rows arrive.
    fn drain_until(&self, _time: BatchTime) -> Option<BatchTime> {
        None
    }

    fn state_bytes(&self) -> usize {
        self.left.bytes() + self.right.bytes()
    }

    fn save(&mut self, state: &mut StateWriter) -> Result<()> {
        self.left.save(state, "left");
        self.right.save(state, "right");
        Ok(())
    }

    fn load(&mut self, state: &StateReader) -> Result<()> {
        self.left.load(state, "left")?;
        self.right.load(state, "right")
    }
}
