//! DStream `window()`: at each slide, every row of the window's batches
//! (processing time; the rules are in the module above), with the window's
//! bounds appended when asked (the rows of Flink's `TUMBLE` and `HOP` table
//! functions). The rows themselves are kept while a window needs them.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;

use crate::checkpoint::{StateReader, StateWriter};
use crate::error::Result;
use crate::explain::OperatorDescription;
use crate::operator::{BatchContext, CompileContext, Operator, OperatorDef};
use crate::operators::window::{WindowSpec, aligned, bounds};
use crate::time::BatchTime;

/// The rows of each window of one input stream.
#[derive(Debug)]
pub(crate) struct RawWindow {
    /// Its windows.
    pub(crate) spec: WindowSpec,
    /// Whether `window_start` and `window_end` are appended to each row.
    pub(crate) bounds: bool,
}

#[async_trait]
impl OperatorDef for RawWindow {
    fn describe(&self) -> OperatorDescription {
        OperatorDescription::stateful("window", "the rows of the last window length")
            .detail(format!("{}, on processing time", self.spec.describe()))
    }

    async fn compile(&self, at: &CompileContext<'_>) -> Result<Box<dyn Operator>> {
        self.spec.validate(at.interval)?;
        Ok(Box::new(RawWindowOperator::new(
            self.spec,
            at.zero,
            at.input().schema.clone(),
            self.bounds.then(|| at.schema.clone()),
        )))
    }
}

/// Batches kept by pane, and the window arithmetic over batch times.
struct Panes {
    spec: WindowSpec,
    zero: BatchTime,
    panes: BTreeMap<i64, Vec<RecordBatch>>,
}

impl Panes {
    fn new(spec: WindowSpec, zero: BatchTime) -> Self {
        Panes {
            spec,
            zero: aligned(zero, &spec),
            panes: BTreeMap::new(),
        }
    }

    fn since_zero(&self, time: BatchTime) -> i64 {
        time.millis() - self.zero.millis()
    }

    /// Keeps `batch` in the pane of batch time `time`.
    fn insert(&mut self, time: BatchTime, batch: RecordBatch) {
        let pane = self.spec.pane_millis();
        let number = (self.since_zero(time) + pane - 1).div_euclid(pane);
        self.panes.entry(number).or_default().push(batch);
    }

    /// At a slide boundary, the batches of the window ending at `time`; the
    /// panes no later window needs are dropped. `None` between boundaries.
    fn take_window(&mut self, time: BatchTime) -> Option<Vec<RecordBatch>> {
        let (pane, length, slide) = (
            self.spec.pane_millis(),
            self.spec.length.as_millis() as i64,
            self.spec.slide.as_millis() as i64,
        );
        let since_zero = self.since_zero(time);
        if since_zero % slide != 0 {
            return None;
        }
        let first = (since_zero - length).div_euclid(pane) + 1;
        let last = since_zero.div_euclid(pane);
        let batches = self
            .panes
            .range(first..=last)
            .flat_map(|(_, b)| b.iter().cloned())
            .collect();
        // The next window starts after (since_zero + slide − length).
        let keep_from = (since_zero + slide - length).div_euclid(pane) + 1;
        self.panes = self.panes.split_off(&keep_from);
        Some(batches)
    }

    fn bytes(&self) -> usize {
        self.panes
            .values()
            .flatten()
            .map(RecordBatch::get_array_memory_size)
            .sum()
    }
}

/// DStream `window()`: every slide, all rows of the window (with the
/// window's bounds appended when asked). Panes hold the raw batches, as the
/// result needs them.
struct RawWindowOperator {
    input_schema: SchemaRef,
    with_bounds: Option<SchemaRef>,
    panes: Panes,
}

impl RawWindowOperator {
    fn new(
        spec: WindowSpec,
        zero: BatchTime,
        input_schema: SchemaRef,
        with_bounds: Option<SchemaRef>,
    ) -> Self {
        RawWindowOperator {
            input_schema,
            with_bounds,
            panes: Panes::new(spec, zero),
        }
    }
}

#[async_trait]
impl Operator for RawWindowOperator {
    /// Bytes of state held (the rows of the live panes).
    fn state_bytes(&self) -> usize {
        self.panes.bytes()
    }

    /// As [`WindowOperator::drain_until`]: the last batch time at which a
    /// window with rows is still to be emitted after `time`. Panes hold
    /// only batches with rows, so the newest pane decides.
    fn drain_until(&self, time: BatchTime) -> Option<BatchTime> {
        let (&newest, _) = self.panes.panes.last_key_value()?;
        let last = BatchTime::from_millis(
            self.panes.zero.millis() + newest * self.panes.spec.pane_millis(),
        );
        let end = self.panes.spec.last_window_end(self.panes.zero, last);
        (end > time).then_some(end)
    }

    /// Saves the live panes' rows.
    fn save(&mut self, state: &mut StateWriter) -> Result<()> {
        let numbers: Vec<i64> = self.panes.panes.keys().copied().collect();
        state.value("panes", serde_json::json!(numbers));
        for (number, batches) in &self.panes.panes {
            let rows = arrow::compute::concat_batches(&self.input_schema, batches)?;
            state.batch(format!("pane.{number}"), rows);
        }
        Ok(())
    }

    /// Restores what [`RawWindowOperator::save`] saved.
    fn load(&mut self, state: &StateReader) -> Result<()> {
        for number in state.i64s("panes")? {
            let rows = state.batch(&format!("pane.{number}"))?.clone();
            self.panes.panes.insert(number, vec![rows]);
        }
        Ok(())
    }

    /// Takes the batch of `time`; returns the window's rows at a slide boundary.
    async fn on_batch(&mut self, batch: &mut BatchContext<'_>) -> Result<Option<RecordBatch>> {
        let (time, batch) = (batch.time, batch.input());
        if batch.num_rows() > 0 {
            self.panes.insert(time, batch);
        }
        let Some(batches) = self.panes.take_window(time) else {
            return Ok(None);
        };
        let rows = arrow::compute::concat_batches(&self.input_schema, &batches)?;
        let Some(schema) = &self.with_bounds else {
            return Ok(Some(rows));
        };
        let mut columns = rows.columns().to_vec();
        columns.extend(bounds(time, self.panes.spec.length, rows.num_rows()));
        Ok(Some(RecordBatch::try_new(Arc::clone(schema), columns)?))
    }
}
