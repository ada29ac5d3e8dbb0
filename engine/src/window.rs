//! Processing-time windows that fold partial aggregates (DStream `window`,
//! `reduceByKeyAndWindow`, `countByWindow`).
//!
//! With batch interval `I`, window length `L` and slide `S` (both multiples
//! of `I`, `L` a multiple of `S`), a window is emitted at each batch time `t`
//! with `t − zero` a multiple of `S`; it covers the batches with times in
//! `(t − L, t]` that come after `zero`. The first windows after the start
//! are therefore partial, as in Spark. `zero` is the batch time before the
//! query's first batch rounded down to a multiple of `S` — Spark's rule
//! with windows aligned to the epoch, as Flink's processing-time windows
//! are: windows end at the same times whenever the query started, so two
//! runs (or a run and its restart) cut the same windows. Each output row carries `window_start = t − L` and
//! `window_end = t`. At other batch times the operator emits nothing.
//!
//! The stream is cut into panes of `P = gcd(L, S)`: pane `k ≥ 1` holds the
//! batches with times in `(zero + (k−1)·P, zero + k·P]`. Each batch's rows
//! are folded into the accumulators of its pane (DataFusion's
//! `GroupsAccumulator::update_batch`); a closed pane keeps only their
//! partial states (`state()`), and a window's result merges partial states
//! (`merge_batch`, then `evaluate`). Raw rows are never kept, and a pane is
//! dropped as soon as no later window needs it, so the state is sized by
//! keys × live panes. Panes are kept in two stacks ([`PaneQueue`]), so a
//! window costs a constant number of merges whatever `L / S` is. A window
//! over raw rows (DStream `window()`, no aggregate) keeps the batches
//! themselves in its panes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};

use crate::aggregate::{Aggregation, Builder, Evaluated, KeyIndex, Partial};
use crate::checkpoint::{StateReader, StateWriter};
use crate::error::Result;
use crate::graph::NodeId;
pub use crate::spec::WindowSpec;
use crate::time::BatchTime;

/// The output schema of a window aggregate: `window_start`, `window_end`,
/// then the aggregate's columns.
pub(crate) fn output_schema(aggregate: &Schema) -> SchemaRef {
    let fields = bound_fields()
        .into_iter()
        .chain(aggregate.fields().iter().cloned());
    Arc::new(Schema::new(fields.collect::<Vec<_>>()))
}

/// `schema` with `window_start` and `window_end` appended.
pub(crate) fn with_bounds(schema: &Schema) -> SchemaRef {
    let fields = schema.fields().iter().cloned().chain(bound_fields());
    Arc::new(Schema::new(fields.collect::<Vec<_>>()))
}

/// The fields `window_start` and `window_end`.
fn bound_fields() -> [FieldRef; 2] {
    let time = DataType::Timestamp(TimeUnit::Millisecond, None);
    [
        Arc::new(Field::new("window_start", time.clone(), false)),
        Arc::new(Field::new("window_end", time, false)),
    ]
}

/// The bounds of the window ending at `time`, `rows` times each.
fn bounds(time: BatchTime, length: Duration, rows: usize) -> [ArrayRef; 2] {
    let end = time.millis();
    let start = end - length.as_millis() as i64;
    [
        Arc::new(TimestampMillisecondArray::from(vec![start; rows])),
        Arc::new(TimestampMillisecondArray::from(vec![end; rows])),
    ]
}

/// `zero` rounded down to a multiple of the slide (see the module docs).
fn aligned(zero: BatchTime, spec: &WindowSpec) -> BatchTime {
    let slide = spec.slide.as_millis().max(1) as i64;
    BatchTime::from_millis(zero.millis().div_euclid(slide) * slide)
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

/// A window aggregate. Each pane's rows are folded into accumulators as
/// they arrive; when the pane closes its partial states are kept in a
/// [`PaneQueue`]. A window's result merges at most two partials, whatever
/// its length (see [`PaneQueue`]). A tumbling window (one pane per window)
/// evaluates its pane's accumulators directly.
pub(crate) struct WindowOperator {
    input: NodeId,
    aggregation: Aggregation,
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
    pub(crate) fn new(
        spec: WindowSpec,
        zero: BatchTime,
        input: NodeId,
        aggregation: Aggregation,
        schema: SchemaRef,
    ) -> Result<Self> {
        Ok(WindowOperator {
            input,
            index: aggregation.key_index()?,
            aggregation,
            schema,
            spec,
            zero: aligned(zero, &spec),
            pane: None,
            panes: PaneQueue::default(),
            last_rows: None,
        })
    }

    /// Bytes of state held: the keys and the partial states of live panes.
    pub(crate) fn state_bytes(&self) -> usize {
        self.index.bytes() + self.panes.bytes()
    }

    /// At the end of input (the batch of `time` was the last with rows):
    /// the last batch time at which a window that holds rows is emitted,
    /// if one is still to come. The scheduler runs the batches up to it at
    /// once, so no window with rows is lost.
    pub(crate) fn drain_until(&self, time: BatchTime) -> Option<BatchTime> {
        let end = self.spec.last_window_end(self.zero, self.last_rows?);
        (end > time).then_some(end)
    }

    /// Saves the keys, the open pane and the closed panes.
    pub(crate) fn save(&mut self, state: &mut StateWriter) -> Result<()> {
        self.index.save(state, "keys")?;
        if let Some(time) = self.last_rows {
            state.value("last_rows", serde_json::json!(time.millis()));
        }
        if let Some(pane) = self.pane.take() {
            let partial = pane.finish()?;
            self.aggregation.save_partial(&partial, state, "pane")?;
            self.pane = Some(self.aggregation.builder_from(&partial)?);
        }
        let queue = &self.panes;
        let mut save_list = |name: &str, list: &[(i64, Partial)]| -> Result<()> {
            state.value(
                name,
                serde_json::json!(list.iter().map(|(n, _)| n).collect::<Vec<_>>()),
            );
            for (i, (_, partial)) in list.iter().enumerate() {
                self.aggregation
                    .save_partial(partial, state, &format!("{name}.{i}"))?;
            }
            Ok(())
        };
        save_list("front", &queue.front)?;
        save_list("back", &queue.back)?;
        if let Some(total) = &queue.back_total {
            self.aggregation.save_partial(total, state, "back_total")?;
        }
        Ok(())
    }

    /// Restores what [`WindowOperator::save`] saved.
    pub(crate) fn load(&mut self, state: &StateReader) -> Result<()> {
        self.index.load(state, "keys")?;
        if state.has("last_rows") {
            self.last_rows = Some(BatchTime::from_millis(state.i64("last_rows")?));
        }
        if state.has("pane") {
            let partial = self.aggregation.load_partial(state, "pane")?;
            self.pane = Some(self.aggregation.builder_from(&partial)?);
        }
        let load_list = |name: &str| -> Result<Vec<(i64, Partial)>> {
            state
                .i64s(name)?
                .into_iter()
                .enumerate()
                .map(|(i, n)| {
                    Ok((
                        n,
                        self.aggregation
                            .load_partial(state, &format!("{name}.{i}"))?,
                    ))
                })
                .collect()
        };
        self.panes = PaneQueue {
            front: load_list("front")?,
            back: load_list("back")?,
            back_total: if state.has("back_total") {
                Some(self.aggregation.load_partial(state, "back_total")?)
            } else {
                None
            },
        };
        Ok(())
    }

    /// Takes the batch of `time`; returns the window ending at `time` if a
    /// window ends there.
    pub(crate) async fn on_batch(
        &mut self,
        time: BatchTime,
        batch: RecordBatch,
    ) -> Result<Option<RecordBatch>> {
        let input = self.input;
        let rows = self
            .aggregation
            .rows(&mut self.index, |id| (id == input).then(|| batch.clone()))
            .await?;
        if !rows.groups().is_empty() {
            self.last_rows = Some(time);
        }
        let pane = match self.pane.as_mut() {
            Some(pane) => pane,
            None => self.pane.insert(self.aggregation.builder()?),
        };
        pane.update(&rows)?;
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
        let evaluated = self.panes.evaluate(&self.aggregation, self.index.len())?;
        let batch = self.output(time, &evaluated)?;
        // The next window covers panes after (since_zero + slide − length).
        let keep_from = (since_zero + slide - length).div_euclid(pane_length) + 1;
        self.panes
            .pop_before(keep_from, &self.aggregation, &mut self.index)?;
        Ok(Some(batch))
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

/// The closed panes a window still needs, as a FIFO queue that answers
/// "all panes combined" with at most two partials (the two-stacks sliding
/// aggregation): new panes go on the back, with a running combination of
/// the back; the front holds suffix combinations, so the oldest pane leaves
/// by dropping one. When the front runs empty, the back is turned into
/// suffix combinations, one merge per pane. So each pane costs three merges
/// over its groups, amortized, whatever the window's length, and the
/// window's result one more: the cost is nearly flat in `L / S`.
///
/// Memory: each front entry holds the keys of its panes together, at most
/// the window's live keys, so the queue holds at most keys × live panes
/// state rows; about that when keys repeat across panes (the usual case),
/// more than the panes alone would when every pane brings new keys.
///
/// That turn is also when the key index may be compacted: when most keys
/// have no rows in any pane still needed, they are dropped, so state stays
/// sized by the keys of live panes.
#[derive(Default)]
struct PaneQueue {
    /// `(pane number, combination of this pane and every newer front pane)`,
    /// newest first: the oldest is last.
    front: Vec<(i64, Partial)>,
    /// `(pane number, its partial)`, oldest first.
    back: Vec<(i64, Partial)>,
    back_total: Option<Partial>,
}

impl PaneQueue {
    fn push(&mut self, number: i64, pane: Partial, aggregation: &Aggregation) -> Result<()> {
        self.back_total = Some(match self.back_total.take() {
            None => pane.clone(),
            Some(total) => aggregation.combine(&[&total, &pane])?,
        });
        self.back.push((number, pane));
        Ok(())
    }

    /// The final values of every pane combined.
    fn evaluate(&self, aggregation: &Aggregation, groups: usize) -> Result<Evaluated> {
        let parts: Vec<&Partial> = self
            .front
            .last()
            .map(|(_, p)| p)
            .into_iter()
            .chain(self.back_total.as_ref())
            .collect();
        aggregation.evaluate(&parts, groups)
    }

    fn oldest(&self) -> Option<i64> {
        self.front
            .last()
            .or_else(|| self.back.first())
            .map(|(n, _)| *n)
    }

    /// Drops the panes numbered below `keep_from`.
    fn pop_before(
        &mut self,
        keep_from: i64,
        aggregation: &Aggregation,
        index: &mut KeyIndex,
    ) -> Result<()> {
        while self.oldest().is_some_and(|n| n < keep_from) {
            if self.front.is_empty() {
                self.turn(aggregation, index)?;
            }
            self.front.pop();
        }
        Ok(())
    }

    /// Moves the back to the front as suffix combinations, dropping the
    /// keys that no pane has rows for.
    fn turn(&mut self, aggregation: &Aggregation, index: &mut KeyIndex) -> Result<()> {
        let mut live = vec![false; index.len()];
        for (_, pane) in &self.back {
            for (g, n) in pane.rows() {
                live[g] |= n > 0;
            }
        }
        if let Some(live) = index.compact_if_sparse(&live)? {
            for (_, pane) in &mut self.back {
                *pane = pane.compact(&live)?;
            }
        }
        for (number, pane) in std::mem::take(&mut self.back).into_iter().rev() {
            let combined = match self.front.last() {
                None => pane,
                Some((_, newer)) => aggregation.combine(&[&pane, newer])?,
            };
            self.front.push((number, combined));
        }
        self.back_total = None;
        Ok(())
    }

    fn bytes(&self) -> usize {
        self.front
            .iter()
            .chain(&self.back)
            .map(|(_, p)| p.bytes())
            .sum::<usize>()
            + self.back_total.as_ref().map_or(0, Partial::bytes)
    }
}

/// DStream `window()`: every slide, all rows of the window (with the
/// window's bounds appended when asked). Panes hold the raw batches, as the
/// result needs them.
pub(crate) struct RawWindowOperator {
    input_schema: SchemaRef,
    with_bounds: Option<SchemaRef>,
    panes: Panes,
}

impl RawWindowOperator {
    pub(crate) fn new(
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

    /// Bytes of state held (the rows of the live panes).
    pub(crate) fn state_bytes(&self) -> usize {
        self.panes.bytes()
    }

    /// As [`WindowOperator::drain_until`]: the last batch time at which a
    /// window with rows is still to be emitted after `time`. Panes hold
    /// only batches with rows, so the newest pane decides.
    pub(crate) fn drain_until(&self, time: BatchTime) -> Option<BatchTime> {
        let (&newest, _) = self.panes.panes.last_key_value()?;
        let last = BatchTime::from_millis(
            self.panes.zero.millis() + newest * self.panes.spec.pane_millis(),
        );
        let end = self.panes.spec.last_window_end(self.panes.zero, last);
        (end > time).then_some(end)
    }

    /// Saves the live panes' rows.
    pub(crate) fn save(&self, state: &mut StateWriter) -> Result<()> {
        let numbers: Vec<i64> = self.panes.panes.keys().copied().collect();
        state.value("panes", serde_json::json!(numbers));
        for (number, batches) in &self.panes.panes {
            let rows = arrow::compute::concat_batches(&self.input_schema, batches)?;
            state.batch(format!("pane.{number}"), rows);
        }
        Ok(())
    }

    /// Restores what [`RawWindowOperator::save`] saved.
    pub(crate) fn load(&mut self, state: &StateReader) -> Result<()> {
        for number in state.i64s("panes")? {
            let rows = state.batch(&format!("pane.{number}"))?.clone();
            self.panes.panes.insert(number, vec![rows]);
        }
        Ok(())
    }

    /// Takes the batch of `time`; returns the window's rows at a slide boundary.
    pub(crate) fn on_batch(
        &mut self,
        time: BatchTime,
        batch: RecordBatch,
    ) -> Result<Option<RecordBatch>> {
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
