//! The processing-time window aggregate: folds each batch's rows into the
//! partial aggregates of its pane and emits, at each slide, the window's
//! result merged from its panes' partials (the rules are in the module
//! above).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::logical_expr::LogicalPlan;

use crate::checkpoint::{StateReader, StateWriter};
use crate::error::Result;
use crate::explain::OperatorDescription;
use crate::operator::{BatchContext, CompileContext, KeyedBy, Operator, OperatorDef};
use crate::operators::aggregate::{Aggregation, Builder, Evaluated, KeyIndex, Slices, fold_all};
use crate::operators::window::PaneQueue;
use crate::operators::window::{WindowSpec, aligned, bounds};
use crate::time::BatchTime;

/// A window aggregate of one input stream: `plan` is the aggregate over a
/// scan of the input, run by pane folding.
#[derive(Debug)]
pub(crate) struct WindowAggregate {
    /// The aggregate over a scan of the input.
    pub(crate) plan: LogicalPlan,
    /// Its windows.
    pub(crate) spec: WindowSpec,
}

#[async_trait]
impl OperatorDef for WindowAggregate {
    fn describe(&self) -> OperatorDescription {
        OperatorDescription::stateful("window aggregate", "keys × live panes (partial aggregates)")
            .detail(format!("{}, on processing time", self.spec.describe()))
            .plan(&self.plan)
    }

    async fn compile(&self, at: &CompileContext<'_>) -> Result<Box<dyn Operator>> {
        self.spec.validate(at.interval)?;
        let aggregation = Aggregation::compile(at.session, &self.plan, false).await?;
        Ok(Box::new(WindowOperator::new(
            self.spec,
            at.zero,
            aggregation,
            at.schema.clone(),
            at.parallelism,
        )?))
    }
}

/// A window aggregate. Each pane's rows are folded into accumulators as
/// they arrive; when the pane closes its partial states are kept in a
/// [`PaneQueue`]. A window's result merges at most two partials, whatever
/// its length (see [`PaneQueue`]). A tumbling window (one pane per window)
/// evaluates its pane's accumulators directly.
struct WindowOperator {
    aggregation: Aggregation,
    /// A global aggregate's copies that fold a batch in slices at once.
    slices: Option<Slices>,
    schema: SchemaRef,
    spec: WindowSpec,
    zero: BatchTime,
    index: KeyIndex,
    pane: Option<Builder>,
    panes: PaneQueue,
    /// The last batch time that brought rows (see [`WindowOperator::drain_until`]).
    last_rows: Option<BatchTime>,
}

impl WindowOperator {
    fn new(
        spec: WindowSpec,
        zero: BatchTime,
        aggregation: Aggregation,
        schema: SchemaRef,
        parallelism: usize,
    ) -> Result<Self> {
        Ok(WindowOperator {
            index: aggregation.key_index()?,
            slices: Slices::of(&aggregation, parallelism)?,
            aggregation,
            schema,
            spec,
            zero: aligned(zero, &spec),
            pane: None,
            panes: PaneQueue::default(),
            last_rows: None,
        })
    }

    /// The window's rows: `window_start`, `window_end`, then the keys that
    /// had rows (all of them for a global aggregate) and their values.
    fn output(&mut self, time: BatchTime, evaluated: &Evaluated) -> Result<RecordBatch> {
        let groups = if self.index.is_global() {
            None
        } else {
            evaluated.groups_with_rows()
        };
        let result = self
            .aggregation
            .output(&mut self.index, evaluated, groups.as_ref())?;
        let mut columns = bounds(time, self.spec.length, result.num_rows()).to_vec();
        columns.extend(result.columns().iter().cloned());
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

#[async_trait]
impl Operator for WindowOperator {
    /// By its group keys, after `window_start` and `window_end`.
    fn keyed_by(&self) -> Option<KeyedBy> {
        self.aggregation.keyed_by(2)
    }

    /// Bytes of state held: the keys and the partial states of live panes.
    fn state_bytes(&self) -> usize {
        self.index.bytes() + self.panes.bytes()
    }

    /// At the end of input (the batch of `time` was the last with rows):
    /// the last batch time at which a window that holds rows is emitted,
    /// if one is still to come. The scheduler runs the batches up to it at
    /// once, so no window with rows is lost.
    fn drain_until(&self, time: BatchTime) -> Option<BatchTime> {
        let end = self.spec.last_window_end(self.zero, self.last_rows?);
        (end > time).then_some(end)
    }

    /// Saves the keys, the open pane and the closed panes.
    fn save(&mut self, state: &mut StateWriter) -> Result<()> {
        self.index.save(state, "keys")?;
        if let Some(time) = self.last_rows {
            state.value("last_rows", serde_json::json!(time.millis()));
        }
        if let Some(pane) = self.pane.take() {
            let partial = pane.finish()?;
            self.aggregation.save_partial(&partial, state, "pane")?;
            self.pane = Some(self.aggregation.builder_from(&partial)?);
        }
        self.panes.save(&self.aggregation, state)?;
        Ok(())
    }

    /// Restores what [`Operator::save`] saved.
    fn load(&mut self, state: &StateReader) -> Result<()> {
        self.index.load(state, "keys")?;
        if state.has_value("last_rows") {
            self.last_rows = Some(BatchTime::from_millis(state.i64("last_rows")?));
        }
        if state.has("pane") {
            let partial = self.aggregation.load_partial(state, "pane")?;
            self.pane = Some(self.aggregation.builder_from(&partial)?);
        }
        self.panes = PaneQueue::load(&self.aggregation, state)?;
        Ok(())
    }

    /// Takes the batch of `time`; returns the window ending at `time` if a
    /// window ends there.
    async fn on_batch(&mut self, batch: &mut BatchContext<'_>) -> Result<Option<RecordBatch>> {
        let time = batch.time;
        let pane = match self.pane.as_mut() {
            Some(pane) => pane,
            None => self.pane.insert(self.aggregation.builder()?),
        };
        let had_rows = match &self.slices {
            Some(slices) => {
                let input = batch.input_of(slices.node());
                let parts = slices.fold(input, fold_all).await?;
                for part in &parts {
                    pane.merge(part)?;
                }
                parts.iter().any(|p| p.state_rows() > 0)
            }
            None => {
                let rows = self
                    .aggregation
                    .rows(&mut self.index, |id| batch.input_of(id))
                    .await?;
                pane.update(&rows)?;
                !rows.groups().is_empty()
            }
        };
        if had_rows {
            self.last_rows = Some(time);
        }
        let (length, slide, pane_length) = (
            self.spec.length.as_millis() as i64,
            self.spec.slide.as_millis() as i64,
            self.spec.pane_millis(),
        );
        let since_zero = time.millis() - self.zero.millis();
        if since_zero % pane_length != 0 {
            return Ok(None);
        }
        let pane = self.pane.take().expect("filled above");
        if length == slide {
            // Tumbling: the window is this one pane, and nothing outlives it
            // but the keys (most come back in the next window).
            let evaluated = pane.evaluate(self.index.len())?;
            let batch = self.output(time, &evaluated)?;
            let live: Vec<bool> = evaluated.counts.iter().map(|&n| n > 0).collect();
            self.index.compact_if_sparse(&live)?;
            return Ok(Some(batch));
        }
        self.panes
            .push(since_zero / pane_length, pane.finish()?, &self.aggregation)?;
        if since_zero % slide != 0 {
            return Ok(None);
        }
        let evaluated = self
            .panes
            .evaluate(&self.aggregation, &[], self.index.len())?;
        let batch = self.output(time, &evaluated)?;
        // The next window covers panes after (since_zero + slide − length).
        let keep_from = (since_zero + slide - length).div_euclid(pane_length) + 1;
        self.panes
            .pop_before(keep_from, &self.aggregation, Some(&mut self.index))?;
        Ok(Some(batch))
    }
}
