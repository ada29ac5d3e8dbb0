//! Event-time windows: tumbling, sliding and session windows over a time
//! column, closed by the watermark (Flink's window aggregates, Spark's
//! `withWatermark` + `window`/`session_window` in append mode).
//!
//! Batch times still drive *when* things are emitted; event time decides
//! *what* belongs to which window. At every batch:
//!
//! 1. each row goes to its windows by event time: the fixed windows
//!    `[k·slide, k·slide + length)` (aligned to the epoch) that contain it,
//!    or, per key, the session it starts, extends or bridges (sessions
//!    `[first event, last event + gap)` that overlap or touch are merged, as
//!    in Flink and Spark);
//! 2. a window whose end the watermark has already reached is *closed*: a
//!    row whose every window is closed is **late** — dropped and counted
//!    (as is a row with a NULL event time, which belongs to no window);
//! 3. the watermark advances ([`crate::watermark`]), and every window whose
//!    end it reaches is emitted once, complete, with `window_start` and
//!    `window_end`, ordered by end, start, then key; its state is freed.
//!
//! With [`WindowEmit::Changes`] every batch also emits the current values of
//! the open windows that got rows in it, and the final value when they
//! close; a trailing `is_final` column tells which is which (`false`: an
//! update that a later row of the same window replaces; `true`: the
//! window's last row). Without it each window's row is final when emitted.
//!
//! State is one partial aggregate (DataFusion accumulator `state()`) per
//! open window and key — a *slot* — never raw rows. A sliding window's row
//! is folded into each of its `length / slide` windows when it arrives (as
//! Flink does), so emitting a window costs one evaluation, whatever its
//! length.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, TimestampMillisecondArray, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::aggregate::{Aggregation, KeyIndex, Partial};
use crate::error::{Error, Result};
use crate::graph::NodeId;
use crate::spec::{Assigner, EventWindow, WindowEmit};
use crate::watermark::{WatermarkStep, event_millis};

/// The output schema of an event-time window aggregate: `window_start`,
/// `window_end`, the aggregate's columns (keys, then values), then
/// `is_final` when the window emits changes. `aggregate` is the plan's
/// schema, whose first column is the time key.
pub(crate) fn output_schema(aggregate: &Schema, emit: WindowEmit) -> SchemaRef {
    let without_time = Schema::new(
        aggregate
            .fields()
            .iter()
            .skip(1)
            .cloned()
            .collect::<Vec<_>>(),
    );
    let with_bounds = crate::window::output_schema(&without_time);
    let mut fields = with_bounds.fields().to_vec();
    if emit == WindowEmit::Changes {
        fields.push(Arc::new(Field::new(IS_FINAL, DataType::Boolean, false)));
    }
    Arc::new(Schema::new(fields))
}

/// The column that tells an update from a window's final row.
pub const IS_FINAL: &str = "is_final";

/// Late rows of one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Late {
    /// How many rows were dropped.
    pub(crate) rows: u64,
    /// The most any of them was behind the watermark, in milliseconds.
    pub(crate) max_behind: i64,
}

impl Late {
    fn add(&mut self, watermark: i64, time: Option<i64>) {
        self.rows += 1;
        if let Some(t) = time {
            self.max_behind = self.max_behind.max(watermark.saturating_sub(t));
        }
    }
}

/// One open window of one key.
#[derive(Debug, Clone, Copy)]
struct Slot {
    key: usize,
    start: i64,
    end: i64,
    /// Merged into another session: its state went there.
    merged: bool,
}

/// The operator.
pub(crate) struct EventWindowOperator {
    input: NodeId,
    aggregation: Aggregation,
    schema: SchemaRef,
    window: EventWindow,
    index: KeyIndex,
    slots: Vec<Slot>,
    /// The partial state of each slot that had rows.
    total: Partial,
    /// Fixed windows: `(key, start)` → slot.
    fixed: HashMap<(usize, i64), usize>,
    /// Sessions: key → its slots, by start.
    sessions: HashMap<usize, Vec<usize>>,
}

impl EventWindowOperator {
    pub(crate) fn new(
        input: NodeId,
        aggregation: Aggregation,
        schema: SchemaRef,
        window: EventWindow,
    ) -> Result<Self> {
        Ok(EventWindowOperator {
            input,
            index: aggregation.key_index()?,
            aggregation,
            schema,
            window,
            slots: Vec::new(),
            total: Partial::default(),
            fixed: HashMap::new(),
            sessions: HashMap::new(),
        })
    }

    /// Bytes of state held: the keys and the open windows' partial states.
    pub(crate) fn state_bytes(&self) -> usize {
        self.index.bytes()
            + self.total.bytes()
            + self.slots.len() * (std::mem::size_of::<Slot>() + 32)
    }

    /// Takes one batch and the watermark step around it; returns what the
    /// batch emits and the rows it dropped as late.
    pub(crate) async fn on_batch(
        &mut self,
        batch: RecordBatch,
        watermark: WatermarkStep,
    ) -> Result<(RecordBatch, Late)> {
        let input = self.input;
        let rows = self
            .aggregation
            .rows(&mut self.index, |id| (id == input).then(|| batch.clone()))
            .await?;
        let times = rows
            .times()
            .ok_or_else(|| Error::Internal("an event-time window without times".into()))?;
        let times = event_millis(times)?;
        let mut late = Late::default();
        let mut touched = Vec::new();
        let assigned = match self.window.assigner {
            Assigner::Fixed(spec) => self.assign_fixed(
                rows.groups(),
                &times,
                spec.length.as_millis() as i64,
                spec.slide.as_millis() as i64,
                watermark.before,
                &mut late,
                &mut touched,
            ),
            Assigner::Session { gap } => self.assign_sessions(
                rows.groups(),
                &times,
                gap.as_millis() as i64,
                watermark.before,
                &mut late,
                &mut touched,
            ),
        };
        let (picks, slots, map) = assigned;
        let delta = if slots.is_empty() {
            Partial::default()
        } else {
            let in_order = picks.len() == rows.groups().len()
                && picks.iter().enumerate().all(|(i, &p)| p as usize == i);
            let rows = rows.regroup((!in_order).then_some(picks.as_slice()), slots)?;
            let mut builder = self.aggregation.builder()?;
            builder.update(&rows)?;
            builder.finish()?
        };
        let count = self.slots.len();
        self.total = match map {
            Some(map) => self
                .aggregation
                .regroup(&[&self.total, &delta], &map, count)?,
            None => self.aggregation.combine(&[&self.total, &delta])?,
        };
        let output = self.emit(watermark.after, &touched)?;
        Ok((output, late))
    }

    /// Assigns rows to fixed windows: `(row picks, their slots, no merges)`.
    #[allow(clippy::too_many_arguments)]
    fn assign_fixed(
        &mut self,
        groups: &[usize],
        times: &TimestampMillisecondArray,
        length: i64,
        slide: i64,
        watermark: i64,
        late: &mut Late,
        touched: &mut Vec<usize>,
    ) -> (Vec<u32>, Vec<usize>, Option<Vec<usize>>) {
        let mut picks = Vec::with_capacity(groups.len());
        let mut slots = Vec::with_capacity(groups.len());
        for (row, &key) in groups.iter().enumerate() {
            if times.is_null(row) {
                late.add(watermark, None);
                continue;
            }
            let t = times.value(row);
            // The windows containing t start at k·slide in (t − length, t].
            let last = t.div_euclid(slide) * slide;
            let mut start = last - (length / slide - 1) * slide;
            let mut kept = false;
            while start <= last {
                let end = start + length;
                if end > watermark {
                    let slot = *self.fixed.entry((key, start)).or_insert_with(|| {
                        self.slots.push(Slot {
                            key,
                            start,
                            end,
                            merged: false,
                        });
                        self.slots.len() - 1
                    });
                    picks.push(row as u32);
                    slots.push(slot);
                    touched.push(slot);
                    kept = true;
                }
                start += slide;
            }
            if !kept {
                late.add(watermark, Some(t));
            }
        }
        (picks, slots, None)
    }

    /// Assigns rows to sessions, merging the sessions a row bridges:
    /// `(row picks, their slots, where each slot's state goes)`.
    fn assign_sessions(
        &mut self,
        groups: &[usize],
        times: &TimestampMillisecondArray,
        gap: i64,
        watermark: i64,
        late: &mut Late,
        touched: &mut Vec<usize>,
    ) -> (Vec<u32>, Vec<usize>, Option<Vec<usize>>) {
        let mut order: Vec<u32> = Vec::with_capacity(groups.len());
        for row in 0..groups.len() {
            if times.is_null(row) {
                late.add(watermark, None);
            } else {
                order.push(row as u32);
            }
        }
        order.sort_by_key(|&r| (groups[r as usize], times.value(r as usize)));
        let mut picks = Vec::with_capacity(order.len());
        let mut slots = Vec::with_capacity(order.len());
        let mut map: Vec<usize> = (0..self.slots.len()).collect();
        let mut merged_any = false;
        for run in order.chunk_by(|a, b| groups[*a as usize] == groups[*b as usize]) {
            let key = groups[run[0] as usize];
            // Existing sessions and new rows as intervals, by start.
            enum Part {
                Session(usize),
                Row(u32),
            }
            let existing = self.sessions.remove(&key).unwrap_or_default();
            let mut parts: Vec<(i64, i64, Part)> = existing
                .iter()
                .map(|&s| (self.slots[s].start, self.slots[s].end, Part::Session(s)))
                .collect();
            parts.extend(run.iter().map(|&r| {
                let t = times.value(r as usize);
                (t, t.saturating_add(gap), Part::Row(r))
            }));
            parts.sort_by_key(|p| p.0);
            let mut kept = Vec::new();
            let mut i = 0;
            while i < parts.len() {
                let (start, mut end) = (parts[i].0, parts[i].1);
                let mut j = i + 1;
                while j < parts.len() && parts[j].0 <= end {
                    end = end.max(parts[j].1);
                    j += 1;
                }
                let cluster = &parts[i..j];
                let sessions: Vec<usize> = cluster
                    .iter()
                    .filter_map(|p| match p.2 {
                        Part::Session(s) => Some(s),
                        Part::Row(_) => None,
                    })
                    .collect();
                let rows = cluster.iter().filter_map(|p| match p.2 {
                    Part::Row(r) => Some(r),
                    Part::Session(_) => None,
                });
                if sessions.is_empty() && end <= watermark {
                    for r in rows {
                        late.add(watermark, Some(times.value(r as usize)));
                    }
                    i = j;
                    continue;
                }
                let target = match sessions.iter().min() {
                    Some(&s) => s,
                    None => {
                        self.slots.push(Slot {
                            key,
                            start,
                            end,
                            merged: false,
                        });
                        map.push(self.slots.len() - 1);
                        self.slots.len() - 1
                    }
                };
                for &s in sessions.iter().filter(|&&s| s != target) {
                    self.slots[s].merged = true;
                    map[s] = target;
                    merged_any = true;
                }
                self.slots[target].start = start;
                self.slots[target].end = end;
                for r in rows {
                    picks.push(r);
                    slots.push(target);
                    touched.push(target);
                }
                kept.push(target);
                i = j;
            }
            self.sessions.insert(key, kept);
        }
        (picks, slots, merged_any.then_some(map))
    }

    /// Emits the windows the watermark closed (and, with changes, the open
    /// windows in `touched`), then frees the closed ones.
    fn emit(&mut self, watermark: i64, touched: &[usize]) -> Result<RecordBatch> {
        let changes = self.window.emit == WindowEmit::Changes;
        let mut emitted: Vec<(usize, bool)> = Vec::new();
        for (s, slot) in self.slots.iter().enumerate() {
            if !slot.merged && slot.end <= watermark {
                emitted.push((s, true));
            }
        }
        if changes {
            let mut updated: Vec<usize> = touched
                .iter()
                .copied()
                .filter(|&s| !self.slots[s].merged && self.slots[s].end > watermark)
                .collect();
            updated.sort_unstable();
            updated.dedup();
            emitted.extend(updated.into_iter().map(|s| (s, false)));
        }
        emitted.sort_by_key(|&(s, _)| {
            let slot = self.slots[s];
            (slot.end, slot.start, slot.key)
        });
        let chosen: Vec<usize> = emitted.iter().map(|&(s, _)| s).collect();
        let picked = self.total.pick(&chosen)?;
        let evaluated = self.aggregation.evaluate(&[&picked], chosen.len())?;
        let key_rows: UInt32Array = chosen.iter().map(|&s| self.slots[s].key as u32).collect();
        let result = self
            .aggregation
            .output_keyed(&mut self.index, &key_rows, &evaluated)?;
        let bound = |f: fn(&Slot) -> i64| -> ArrayRef {
            Arc::new(TimestampMillisecondArray::from(
                chosen
                    .iter()
                    .map(|&s| f(&self.slots[s]))
                    .collect::<Vec<_>>(),
            ))
        };
        let mut columns = vec![bound(|s| s.start), bound(|s| s.end)];
        columns.extend(result.columns().iter().cloned());
        if changes {
            columns.push(Arc::new(BooleanArray::from(
                emitted.iter().map(|&(_, f)| f).collect::<Vec<_>>(),
            )));
        }
        let output = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        if emitted.iter().any(|&(_, f)| f) || self.slots.iter().any(|s| s.merged) {
            self.free(watermark)?;
        }
        Ok(output)
    }

    /// Drops the closed and merged slots, renumbering the rest, and the
    /// keys no open window has when most keys are dead.
    fn free(&mut self, watermark: i64) -> Result<()> {
        let live: UInt32Array = (0..self.slots.len() as u32)
            .filter(|&s| {
                let slot = &self.slots[s as usize];
                !slot.merged && slot.end > watermark
            })
            .collect();
        self.total = self.total.compact(&live)?;
        let mut slots: Vec<Slot> = live
            .values()
            .iter()
            .map(|&s| self.slots[s as usize])
            .collect();
        let mut keys_live = vec![false; self.index.len()];
        for slot in &slots {
            keys_live[slot.key] = true;
        }
        if let Some(live_keys) = self.index.compact_if_sparse(&keys_live)? {
            for slot in &mut slots {
                slot.key = live_keys
                    .values()
                    .binary_search(&(slot.key as u32))
                    .expect("a live slot's key is live");
            }
        }
        self.slots = slots;
        self.fixed.clear();
        self.sessions.clear();
        for (s, slot) in self.slots.iter().enumerate() {
            match self.window.assigner {
                Assigner::Fixed(_) => {
                    self.fixed.insert((slot.key, slot.start), s);
                }
                Assigner::Session { .. } => self.sessions.entry(slot.key).or_default().push(s),
            }
        }
        for sessions in self.sessions.values_mut() {
            sessions.sort_by_key(|&s| self.slots[s].start);
        }
        Ok(())
    }
}
