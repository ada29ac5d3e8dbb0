//! Running aggregates: an unwindowed `GROUP BY` over all input since the
//! query started (DStream `updateStateByKey`, Flink's and Arroyo's updating
//! aggregates), in two output modes:
//!
//! - [`EmitMode::Changes`]: every batch emits the current value of each key
//!   that had rows in that batch (an empty batch when none had), as
//!   Spark's `mapWithState` does;
//! - [`EmitMode::Complete`]: every batch emits every key's current value,
//!   exactly what `updateStateByKey` outputs.
//!
//! State is one partial state per key ([`Partial`]), never raw rows. With
//! a TTL, a key whose last row arrived at batch time `u` is dropped at the
//! first batch `t ≥ u + ttl` in which it has no rows: nothing is emitted for
//! it, and if it comes back it starts again from nothing. Without a TTL
//! state grows with the number of distinct keys.
//!
//! Each batch costs a merge over all keys (the new rows' partial states
//! into the running ones) and an evaluation; `Complete` output is that big
//! anyway.

use std::time::Duration;

use arrow::array::{RecordBatch, UInt32Array};
use async_trait::async_trait;
use datafusion::logical_expr::LogicalPlan;

use crate::checkpoint::{StateReader, StateWriter};
use crate::error::Result;
use crate::explain::OperatorDescription;
use crate::operator::{BatchContext, CompileContext, KeyedBy, Operator, OperatorDef};
use crate::operators::aggregate::{Aggregation, KeyIndex, Partial, Slices, fold_all};
use crate::time::{BatchTime, format_duration};

/// What a running aggregate emits every batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitMode {
    /// The keys that had rows in the batch, with their current values.
    Changes,
    /// Every key with its current value.
    Complete,
}

/// How a running aggregate emits and how long it keeps idle keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunningSpec {
    /// What every batch emits.
    pub emit: EmitMode,
    /// Drop a key after this long without rows (`None`: keep every key).
    pub ttl: Option<Duration>,
}

impl RunningSpec {
    /// Emits the keys that changed, keeps keys forever.
    pub fn changes() -> Self {
        RunningSpec {
            emit: EmitMode::Changes,
            ttl: None,
        }
    }

    /// Emits every key every batch, keeps keys forever.
    pub fn complete() -> Self {
        RunningSpec {
            emit: EmitMode::Complete,
            ttl: None,
        }
    }

    /// Drops keys idle for `ttl` (zero: keep every key).
    pub fn with_ttl(self, ttl: Duration) -> Self {
        RunningSpec {
            ttl: Some(ttl).filter(|t| !t.is_zero()),
            ..self
        }
    }
}

/// A running aggregate of one input stream over all batches so far.
#[derive(Debug)]
pub(crate) struct RunningAggregate {
    /// The aggregate over a scan of the input.
    pub(crate) plan: LogicalPlan,
    /// What it emits and how long it keeps idle keys.
    pub(crate) spec: RunningSpec,
}

#[async_trait]
impl OperatorDef for RunningAggregate {
    fn describe(&self) -> OperatorDescription {
        let emit = match self.spec.emit {
            EmitMode::Changes => "emits the keys that changed",
            EmitMode::Complete => "emits every key",
        };
        let ttl = self
            .spec
            .ttl
            .map_or("keys kept forever".to_string(), |ttl| {
                format!("keys dropped after {} without rows", format_duration(ttl))
            });
        OperatorDescription::stateful("running aggregate", "keys (one accumulator each)")
            .detail(format!("{emit}; {ttl}"))
            .plan(&self.plan)
    }

    async fn compile(&self, at: &CompileContext<'_>) -> Result<Box<dyn Operator>> {
        let aggregation = Aggregation::compile(at.session, &self.plan, false).await?;
        Ok(Box::new(RunningAggregateOperator::new(
            aggregation,
            self.spec,
            at.parallelism,
        )?))
    }
}

/// The operator of a running aggregate.
struct RunningAggregateOperator {
    aggregation: Aggregation,
    /// A global aggregate's copies that fold a batch in slices at once.
    slices: Option<Slices>,
    spec: RunningSpec,
    index: KeyIndex,
    total: Partial,
    /// The batch time of each key's last row.
    last_rows: Vec<i64>,
}

impl RunningAggregateOperator {
    fn new(aggregation: Aggregation, spec: RunningSpec, parallelism: usize) -> Result<Self> {
        Ok(RunningAggregateOperator {
            index: aggregation.key_index()?,
            slices: Slices::of(&aggregation, parallelism)?,
            aggregation,
            spec,
            total: Partial::default(),
            last_rows: Vec::new(),
        })
    }
}

#[async_trait]
impl Operator for RunningAggregateOperator {
    /// By its group keys, its first columns.
    fn keyed_by(&self) -> Option<KeyedBy> {
        self.aggregation.keyed_by(0)
    }

    /// Bytes of state held.
    fn state_bytes(&self) -> usize {
        self.index.bytes() + self.total.bytes() + self.last_rows.len() * 8
    }

    /// Saves the keys, their states and their last batch times.
    fn save(&mut self, state: &mut StateWriter) -> Result<()> {
        self.index.save(state, "keys")?;
        self.aggregation.save_partial(&self.total, state, "total")?;
        state.value("last_rows", serde_json::json!(self.last_rows));
        Ok(())
    }

    /// Restores what [`RunningAggregateOperator::save`] saved.
    fn load(&mut self, state: &StateReader) -> Result<()> {
        self.index.load(state, "keys")?;
        self.total = self.aggregation.load_partial(state, "total")?;
        self.last_rows = state.i64s("last_rows")?;
        Ok(())
    }

    /// A running aggregate emits each batch what it updated: it holds
    /// nothing back for a later batch.
    fn drain_until(&self, _time: BatchTime) -> Option<BatchTime> {
        None
    }

    /// Folds the batch of `time` into the state and returns what it emits.
    async fn on_batch(&mut self, batch: &mut BatchContext<'_>) -> Result<Option<RecordBatch>> {
        let time = batch.time;
        let mut delta = match &self.slices {
            Some(slices) => {
                let input = batch.input_of(slices.node());
                let parts = slices.fold(input, fold_all).await?;
                self.aggregation
                    .combine(&parts.iter().collect::<Vec<_>>())?
            }
            None => {
                let rows = self
                    .aggregation
                    .rows(&mut self.index, |id| batch.input_of(id))
                    .await?;
                fold_all(&self.aggregation, rows)?
            }
        };
        self.total = self.aggregation.combine(&[&self.total, &delta])?;
        self.last_rows.resize(self.index.len(), time.millis());
        for (g, _) in delta.rows() {
            self.last_rows[g] = time.millis();
        }
        if let Some(ttl) = self.spec.ttl.filter(|t| !t.is_zero()) {
            let ttl = ttl.as_millis() as i64;
            let expired = |last: i64| time.millis() - last >= ttl;
            if self.last_rows.iter().any(|&last| expired(last)) {
                if self.index.is_global() {
                    self.total = Partial::default();
                    self.last_rows.clear();
                } else {
                    let live: UInt32Array = (0..self.last_rows.len() as u32)
                        .filter(|&g| !expired(self.last_rows[g as usize]))
                        .collect();
                    self.index.compact(&live)?;
                    self.total = self.total.compact(&live)?;
                    delta = delta.compact(&live)?;
                    self.last_rows = live
                        .values()
                        .iter()
                        .map(|&g| self.last_rows[g as usize])
                        .collect();
                }
            }
        }
        let groups = self.index.len();
        let evaluated = self.aggregation.evaluate(&[&self.total], groups)?;
        let picked: Option<UInt32Array> = match self.spec.emit {
            EmitMode::Complete if self.index.is_global() => None,
            EmitMode::Complete => evaluated.groups_with_rows(),
            EmitMode::Changes => Some(delta.rows().map(|(g, _)| g as u32).collect()),
        };
        let output = self
            .aggregation
            .output(&mut self.index, &evaluated, picked.as_ref())?;
        Ok(Some(output))
    }
}
