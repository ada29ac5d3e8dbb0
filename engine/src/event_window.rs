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
//!    (as is a row with a NULL event time, or one beyond ±2^60 ms, which
//!    belongs to no window);
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
//! State is partial aggregates (DataFusion accumulators), never raw rows:
//!
//! - fixed windows are cut into panes of `gcd(length, slide)` aligned to the
//!   epoch; a row is folded into its pane's accumulators (one per key the
//!   pane has seen), and a window, when it closes, merges the partial
//!   states of its `length / pane` panes. A pane is freed when the last
//!   window containing it has closed. A tumbling window is one pane,
//!   evaluated directly;
//! - sessions keep one partial state per open session of each key (a
//!   *slot*); merged sessions merge their states.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, TimestampMillisecondArray, UInt32Array,
};
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::HashMap;

use crate::aggregate::{Aggregation, Builder, Evaluated, KeyIndex, Partial, Rows};
use crate::checkpoint::{StateReader, StateWriter};
use crate::error::{Error, Result};
use crate::graph::NodeId;
use crate::spec::{Assigner, EventWindow, WindowEmit};
use crate::watermark::{TIME_LIMIT, WatermarkStep, event_millis, in_time_range};

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

/// Output rows of windows: per row its bounds, its key (group index) and
/// whether it is final; the values in the same order.
struct Emitted {
    starts: Vec<i64>,
    ends: Vec<i64>,
    keys: Vec<u32>,
    finals: Vec<bool>,
    values: Vec<Vec<ArrayRef>>,
}

impl Emitted {
    fn new() -> Self {
        Emitted {
            starts: Vec::new(),
            ends: Vec::new(),
            keys: Vec::new(),
            finals: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Adds the rows `rows` of `evaluated` (all when `None`); row `i` of
    /// `evaluated` is for key `keys[i]`, with bounds `bounds(i)`, final when
    /// `is_final(i)`.
    fn push(
        &mut self,
        bounds: impl Fn(usize) -> (i64, i64),
        keys: &[u32],
        evaluated: &Evaluated,
        rows: Option<&UInt32Array>,
        is_final: impl Fn(usize) -> bool,
    ) -> Result<()> {
        let picked: Vec<usize> = match rows {
            Some(r) => r.values().iter().map(|&i| i as usize).collect(),
            None => (0..keys.len()).collect(),
        };
        for &i in &picked {
            let (start, end) = bounds(i);
            self.starts.push(start);
            self.ends.push(end);
            self.keys.push(keys[i]);
            self.finals.push(is_final(i));
        }
        self.values.push(match rows {
            Some(r) => evaluated
                .values
                .iter()
                .map(|v| Ok(take(v.as_ref(), r, None)?))
                .collect::<Result<_>>()?,
            None => evaluated.values.clone(),
        });
        Ok(())
    }
}

/// One pane of fixed windows: the keys it has seen and their accumulators.
#[derive(Default)]
struct Pane {
    /// The key (group index) of each of the pane's own groups.
    keys: Vec<usize>,
    /// Key → the pane's group.
    local: HashMap<usize, usize>,
    /// Rows not yet folded into `frozen`.
    building: Option<Builder>,
    /// Partial states of the rows before.
    frozen: Partial,
}

impl Pane {
    fn group_of(&mut self, key: usize) -> usize {
        *self.local.entry(key).or_insert_with(|| {
            self.keys.push(key);
            self.keys.len() - 1
        })
    }

    /// The partial states of all its rows.
    fn partial(&mut self, aggregation: &Aggregation) -> Result<&Partial> {
        if let Some(building) = self.building.take() {
            let part = building.finish()?;
            self.frozen = aggregation.combine(&[&self.frozen, &part])?;
        }
        Ok(&self.frozen)
    }

    fn bytes(&self) -> usize {
        self.keys.len() * 24
            + self.frozen.bytes()
            + self.building.as_ref().map_or(0, Builder::bytes)
    }
}

/// Tumbling and sliding windows over event time, by panes.
struct FixedWindows {
    length: i64,
    slide: i64,
    pane: i64,
    /// Live panes by start time.
    panes: BTreeMap<i64, Pane>,
    /// Every window ending at or before this has been emitted.
    emitted_through: i64,
}

impl FixedWindows {
    /// The end of the newest window containing time `t`.
    fn newest_end(&self, t: i64) -> i64 {
        t.div_euclid(self.slide) * self.slide + self.length
    }

    /// The starts of the windows containing the pane starting at `pane`.
    fn windows_of(&self, pane: i64) -> impl Iterator<Item = i64> + use<> {
        let (slide, length, width) = (self.slide, self.length, self.pane);
        let first = (pane + width - length).div_euclid(slide)
            + i64::from((pane + width - length).rem_euclid(slide) != 0);
        let last = pane.div_euclid(slide);
        (first..=last).map(move |k| k * slide)
    }

    /// The starts of the windows that close at `watermark` and hold rows:
    /// ends in `(emitted_through, watermark]`. Found by stepping through
    /// those ends, or through the live panes' windows when there are fewer
    /// of those (end of input, or panes far apart).
    fn closing(&self, watermark: i64) -> BTreeSet<i64> {
        let (Some(&first), Some(&last)) = (self.panes.keys().next(), self.panes.keys().last())
        else {
            return BTreeSet::new();
        };
        let slide = self.slide;
        let ceil =
            |x: i64| x.div_euclid(slide) * slide + if x.rem_euclid(slide) == 0 { 0 } else { slide };
        let floor = |x: i64| x.div_euclid(slide) * slide;
        // Pane and window times are within ±2^61 (see `TIME_LIMIT`).
        let mut from = ceil(first + self.pane - self.length);
        if self.emitted_through > -TIME_LIMIT {
            from = from.max(ceil(self.emitted_through - self.length + 1));
        }
        let mut to = floor(last);
        if watermark < TIME_LIMIT {
            to = to.min(floor(watermark - self.length));
        }
        if to < from {
            return BTreeSet::new();
        }
        let steps = (to - from) / slide + 1;
        let per_pane = self.panes.len() as i64 * (self.length / slide);
        if steps <= per_pane {
            (0..steps)
                .map(|i| from + i * slide)
                .filter(|&start| {
                    self.panes
                        .range(start..start + self.length)
                        .next()
                        .is_some()
                })
                .collect()
        } else {
            self.panes
                .keys()
                .flat_map(|&pane| self.windows_of(pane))
                .filter(|&start| start >= from && start <= to)
                .collect()
        }
    }

    /// Folds the rows into their panes; returns the panes and keys touched.
    fn add(
        &mut self,
        aggregation: &Aggregation,
        rows: &Rows,
        times: &TimestampMillisecondArray,
        watermark: i64,
        late: &mut Late,
    ) -> Result<BTreeMap<i64, Vec<usize>>> {
        let keys = rows.groups();
        // Per pane: the rows and their groups in the pane.
        let mut by_pane: BTreeMap<i64, (Vec<u32>, Vec<usize>)> = BTreeMap::new();
        for (row, &key) in keys.iter().enumerate() {
            if times.is_null(row) {
                late.add(watermark, None);
                continue;
            }
            let t = times.value(row);
            if self.newest_end(t) <= watermark {
                late.add(watermark, Some(t));
                continue;
            }
            let start = t.div_euclid(self.pane) * self.pane;
            let group = self.panes.entry(start).or_default().group_of(key);
            let (picks, groups) = by_pane.entry(start).or_default();
            picks.push(row as u32);
            groups.push(group);
        }
        let mut touched = BTreeMap::new();
        for (start, (picks, groups)) in by_pane {
            let pane = self.panes.get_mut(&start).expect("created above");
            let all = picks.len() == keys.len();
            touched.insert(start, picks.iter().map(|&r| keys[r as usize]).collect());
            let rows = rows.regroup((!all).then_some(picks.as_slice()), groups)?;
            let building = match pane.building.as_mut() {
                Some(b) => b,
                None => pane.building.insert(aggregation.builder()?),
            };
            building.update(&rows)?;
        }
        Ok(touched)
    }

    /// Emits the windows that close at `watermark` (and with `changes` the
    /// open windows of the touched panes, for their touched keys), then
    /// frees the panes no open window needs.
    fn emit(
        &mut self,
        aggregation: &Aggregation,
        watermark: i64,
        touched: &BTreeMap<i64, Vec<usize>>,
        changes: bool,
        out: &mut Emitted,
    ) -> Result<()> {
        let closing = self.closing(watermark);
        let mut updated: BTreeMap<i64, BTreeSet<usize>> = BTreeMap::new();
        if changes {
            for (&pane, keys) in touched {
                for start in self.windows_of(pane) {
                    if start + self.length > watermark {
                        updated.entry(start).or_default().extend(keys);
                    }
                }
            }
        }
        let windows = closing
            .iter()
            .map(|&s| (s, None))
            .chain(updated.iter().map(|(&s, keys)| (s, Some(keys))));
        let mut ordered: Vec<(i64, Option<&BTreeSet<usize>>)> = windows.collect();
        ordered.sort_by_key(|(s, _)| *s);
        for (start, only) in ordered {
            self.emit_window(aggregation, start, only, out)?;
        }
        self.emitted_through = self.emitted_through.max(watermark);
        let (slide, length) = (self.slide, self.length);
        self.panes
            .retain(|&start, _| start.div_euclid(slide) * slide + length > watermark);
        Ok(())
    }

    /// Emits the window starting at `start`: final, or an update of the
    /// keys `only`.
    fn emit_window(
        &mut self,
        aggregation: &Aggregation,
        start: i64,
        only: Option<&BTreeSet<usize>>,
        out: &mut Emitted,
    ) -> Result<()> {
        let end = start + self.length;
        let bounds = move |_| (start, end);
        if self.length == self.slide && only.is_none() {
            // Tumbling: the window is its one pane, freed after this.
            let Some(pane) = self.panes.get_mut(&start) else {
                return Ok(());
            };
            let groups = pane.keys.len();
            let evaluated = match pane.building.take() {
                Some(b) if pane.frozen.len() == 0 => b.evaluate(groups)?,
                building => {
                    pane.building = building;
                    let partial = pane.partial(aggregation)?.clone();
                    aggregation.evaluate(&[&partial], groups)?
                }
            };
            // Rows in key order (first seen first).
            let mut order: Vec<u32> = (0..groups as u32).collect();
            order.sort_by_key(|&g| pane.keys[g as usize]);
            let keys: Vec<u32> = pane.keys.iter().map(|&k| k as u32).collect();
            let order = UInt32Array::from(order);
            return out.push(bounds, &keys, &evaluated, Some(&order), |_| true);
        }
        let mut keys: Vec<usize> = Vec::new();
        let mut parts: Vec<(Partial, Vec<usize>)> = Vec::new();
        for (_, pane) in self.panes.range_mut(start..end) {
            let partial = pane.partial(aggregation)?.clone();
            keys.extend(&pane.keys);
            parts.push((partial, pane.keys.clone()));
        }
        keys.sort_unstable();
        keys.dedup();
        if keys.is_empty() {
            return Ok(());
        }
        let position = |k: &usize| keys.binary_search(k).expect("gathered above");
        let maps: Vec<Vec<usize>> = parts
            .iter()
            .map(|(_, pane_keys)| pane_keys.iter().map(position).collect())
            .collect();
        let refs: Vec<(&Partial, &[usize])> = parts
            .iter()
            .zip(&maps)
            .map(|((p, _), m)| (p, m.as_slice()))
            .collect();
        let combined = aggregation.regroup(&refs, keys.len())?;
        let evaluated = aggregation.evaluate(&[&combined], keys.len())?;
        let rows = only.map(|only| {
            only.iter()
                .filter_map(|k| keys.binary_search(k).ok().map(|p| p as u32))
                .collect::<UInt32Array>()
        });
        let keys: Vec<u32> = keys.iter().map(|&k| k as u32).collect();
        let is_final = only.is_none();
        out.push(bounds, &keys, &evaluated, rows.as_ref(), |_| is_final)
    }

    /// The keys any live pane has.
    fn live_keys(&self, keys: usize) -> Vec<bool> {
        let mut live = vec![false; keys];
        for pane in self.panes.values() {
            for &k in &pane.keys {
                live[k] = true;
            }
        }
        live
    }

    /// Renumbers keys after the index kept only `live` (ascending).
    fn renumber(&mut self, live: &UInt32Array) {
        for pane in self.panes.values_mut() {
            for k in &mut pane.keys {
                *k = live
                    .values()
                    .binary_search(&(*k as u32))
                    .expect("a live pane's key is live");
            }
            pane.local = pane.keys.iter().enumerate().map(|(g, &k)| (k, g)).collect();
        }
    }

    fn bytes(&self) -> usize {
        self.panes.values().map(Pane::bytes).sum()
    }
}

/// One open session of one key.
#[derive(Debug, Clone, Copy)]
struct Session {
    key: usize,
    start: i64,
    end: i64,
    /// Merged into another session: its state went there.
    merged: bool,
}

/// Session windows: one slot (partial state) per open session.
#[derive(Default)]
struct Sessions {
    gap: i64,
    slots: Vec<Session>,
    /// The partial state of each slot.
    total: Partial,
    /// Key → its slots, by start.
    by_key: HashMap<usize, Vec<usize>>,
}

impl Sessions {
    /// Assigns rows to sessions, merging the sessions a row bridges, and
    /// folds them in; returns the slots touched.
    fn add(
        &mut self,
        aggregation: &Aggregation,
        rows: &Rows,
        times: &TimestampMillisecondArray,
        watermark: i64,
        late: &mut Late,
    ) -> Result<Vec<usize>> {
        let groups = rows.groups();
        let gap = self.gap;
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
        // Existing sessions and new rows as intervals.
        enum Part {
            Session(usize),
            Row(u32),
        }
        for run in order.chunk_by(|a, b| groups[*a as usize] == groups[*b as usize]) {
            let key = groups[run[0] as usize];
            let existing = self.by_key.remove(&key).unwrap_or_default();
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
                // Intervals that overlap or touch form one session.
                let (start, mut end) = (parts[i].0, parts[i].1);
                let mut j = i + 1;
                while j < parts.len() && parts[j].0 <= end {
                    end = end.max(parts[j].1);
                    j += 1;
                }
                let cluster = &parts[i..j];
                i = j;
                let sessions: Vec<usize> = cluster
                    .iter()
                    .filter_map(|p| match p.2 {
                        Part::Session(s) => Some(s),
                        Part::Row(_) => None,
                    })
                    .collect();
                let new_rows = cluster.iter().filter_map(|p| match p.2 {
                    Part::Row(r) => Some(r),
                    Part::Session(_) => None,
                });
                if sessions.is_empty() && end <= watermark {
                    // It would only start a session that already ended.
                    for r in new_rows {
                        late.add(watermark, Some(times.value(r as usize)));
                    }
                    continue;
                }
                let target = match sessions.iter().min() {
                    Some(&s) => s,
                    None => {
                        self.slots.push(Session {
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
                }
                self.slots[target].start = start;
                self.slots[target].end = end;
                for r in new_rows {
                    picks.push(r);
                    slots.push(target);
                }
                kept.push(target);
            }
            self.by_key.insert(key, kept);
        }
        let mut touched = slots.clone();
        touched.sort_unstable();
        touched.dedup();
        let delta = if slots.is_empty() {
            Partial::default()
        } else {
            let rows = rows.regroup(Some(&picks), slots)?;
            let mut builder = aggregation.builder()?;
            builder.update(&rows)?;
            builder.finish()?
        };
        let count = self.slots.len();
        self.total = aggregation.regroup(&[(&self.total, &map), (&delta, &map)], count)?;
        Ok(touched)
    }

    /// Emits the sessions that close at `watermark` (and with `changes`
    /// the touched open ones), by end, start, key; frees the closed ones.
    fn emit(
        &mut self,
        aggregation: &Aggregation,
        watermark: i64,
        touched: &[usize],
        changes: bool,
        out: &mut Emitted,
    ) -> Result<()> {
        let mut emitted: Vec<(usize, bool)> = Vec::new();
        for (s, slot) in self.slots.iter().enumerate() {
            if !slot.merged && slot.end <= watermark {
                emitted.push((s, true));
            }
        }
        if changes {
            emitted.extend(
                touched
                    .iter()
                    .filter(|&&s| !self.slots[s].merged && self.slots[s].end > watermark)
                    .map(|&s| (s, false)),
            );
        }
        emitted.sort_by_key(|&(s, _)| {
            let slot = self.slots[s];
            (slot.end, slot.start, slot.key)
        });
        if !emitted.is_empty() {
            let chosen: Vec<usize> = emitted.iter().map(|&(s, _)| s).collect();
            let picked = self.total.pick(&chosen)?;
            let evaluated = aggregation.evaluate(&[&picked], chosen.len())?;
            let keys: Vec<u32> = chosen.iter().map(|&s| self.slots[s].key as u32).collect();
            let slots = &self.slots;
            let bounds = |i: usize| (slots[chosen[i]].start, slots[chosen[i]].end);
            out.push(bounds, &keys, &evaluated, None, |i| emitted[i].1)?;
        }
        if emitted.iter().any(|&(_, f)| f) || self.slots.iter().any(|s| s.merged) {
            self.free(watermark)?;
        }
        Ok(())
    }

    /// Drops the closed and merged slots, renumbering the rest.
    fn free(&mut self, watermark: i64) -> Result<()> {
        let live: UInt32Array = (0..self.slots.len() as u32)
            .filter(|&s| {
                let slot = &self.slots[s as usize];
                !slot.merged && slot.end > watermark
            })
            .collect();
        self.total = self.total.compact(&live)?;
        self.slots = live
            .values()
            .iter()
            .map(|&s| self.slots[s as usize])
            .collect();
        self.rebuild();
        Ok(())
    }

    fn rebuild(&mut self) {
        self.by_key.clear();
        for (s, slot) in self.slots.iter().enumerate() {
            self.by_key.entry(slot.key).or_default().push(s);
        }
        for sessions in self.by_key.values_mut() {
            sessions.sort_by_key(|&s| self.slots[s].start);
        }
    }

    fn live_keys(&self, keys: usize) -> Vec<bool> {
        let mut live = vec![false; keys];
        for slot in &self.slots {
            live[slot.key] = true;
        }
        live
    }

    fn renumber(&mut self, live: &UInt32Array) {
        for slot in &mut self.slots {
            slot.key = live
                .values()
                .binary_search(&(slot.key as u32))
                .expect("a live slot's key is live");
        }
        self.rebuild();
    }

    fn bytes(&self) -> usize {
        self.total.bytes() + self.slots.len() * (std::mem::size_of::<Session>() + 32)
    }
}

/// The windows' state.
enum State {
    Fixed(FixedWindows),
    Sessions(Sessions),
}

/// The operator.
pub(crate) struct EventWindowOperator {
    input: NodeId,
    aggregation: Aggregation,
    schema: SchemaRef,
    emit: WindowEmit,
    index: KeyIndex,
    state: State,
}

impl EventWindowOperator {
    pub(crate) fn new(
        input: NodeId,
        aggregation: Aggregation,
        schema: SchemaRef,
        window: EventWindow,
    ) -> Result<Self> {
        let state = match window.assigner {
            Assigner::Fixed(spec) => State::Fixed(FixedWindows {
                length: spec.length.as_millis() as i64,
                slide: spec.slide.as_millis() as i64,
                pane: spec.pane_millis(),
                panes: BTreeMap::new(),
                emitted_through: i64::MIN,
            }),
            Assigner::Session { gap } => State::Sessions(Sessions {
                gap: gap.as_millis() as i64,
                ..Sessions::default()
            }),
        };
        Ok(EventWindowOperator {
            input,
            index: aggregation.key_index()?,
            aggregation,
            schema,
            emit: window.emit,
            state,
        })
    }

    /// Bytes of state held: the keys and the open windows' partial states.
    pub(crate) fn state_bytes(&self) -> usize {
        self.index.bytes()
            + match &self.state {
                State::Fixed(f) => f.bytes(),
                State::Sessions(s) => s.bytes(),
            }
    }

    /// Saves the keys and the open windows' states.
    pub(crate) fn save(&mut self, state: &mut StateWriter) -> Result<()> {
        use serde_json::json;
        self.index.save(state, "keys")?;
        let aggregation = &self.aggregation;
        match &mut self.state {
            State::Fixed(fixed) => {
                state.value("emitted_through", json!(fixed.emitted_through));
                state.value("panes", json!(fixed.panes.keys().collect::<Vec<_>>()));
                for (start, pane) in &mut fixed.panes {
                    let partial = pane.partial(aggregation)?;
                    aggregation.save_partial(partial, state, &format!("pane.{start}"))?;
                    state.value(&format!("pane.{start}.keys"), json!(pane.keys));
                }
            }
            State::Sessions(sessions) => {
                let column = |f: fn(&Session) -> i64| {
                    json!(sessions.slots.iter().map(f).collect::<Vec<_>>())
                };
                state.value("session.keys", column(|s| s.key as i64));
                state.value("session.starts", column(|s| s.start));
                state.value("session.ends", column(|s| s.end));
                aggregation.save_partial(&sessions.total, state, "sessions")?;
            }
        }
        Ok(())
    }

    /// Restores what [`EventWindowOperator::save`] saved.
    pub(crate) fn load(&mut self, state: &StateReader) -> Result<()> {
        self.index.load(state, "keys")?;
        let aggregation = &self.aggregation;
        match &mut self.state {
            State::Fixed(fixed) => {
                fixed.emitted_through = state.i64("emitted_through")?;
                for start in state.i64s("panes")? {
                    let keys: Vec<usize> = state
                        .i64s(&format!("pane.{start}.keys"))?
                        .into_iter()
                        .map(|k| k as usize)
                        .collect();
                    let frozen = aggregation.load_partial(state, &format!("pane.{start}"))?;
                    if keys.iter().any(|&k| k >= self.index.len()) || frozen.len() > keys.len() {
                        return Err(Error::Checkpoint(format!(
                            "the saved pane {start} does not fit its keys"
                        )));
                    }
                    let pane = Pane {
                        local: keys.iter().enumerate().map(|(g, &k)| (k, g)).collect(),
                        keys,
                        building: None,
                        frozen,
                    };
                    fixed.panes.insert(start, pane);
                }
            }
            State::Sessions(sessions) => {
                let keys = state.i64s("session.keys")?;
                let starts = state.i64s("session.starts")?;
                let ends = state.i64s("session.ends")?;
                let fits = keys.len() == starts.len()
                    && keys.len() == ends.len()
                    && keys
                        .iter()
                        .all(|&k| k >= 0 && (k as usize) < self.index.len());
                if !fits {
                    return Err(Error::Checkpoint("the saved sessions are damaged".into()));
                }
                sessions.slots = keys
                    .iter()
                    .zip(starts.iter().zip(&ends))
                    .map(|(&key, (&start, &end))| Session {
                        key: key as usize,
                        start,
                        end,
                        merged: false,
                    })
                    .collect();
                sessions.total = aggregation.load_partial(state, "sessions")?;
                if sessions.total.len() > sessions.slots.len() {
                    return Err(Error::Checkpoint("the saved sessions are damaged".into()));
                }
                sessions.rebuild();
            }
        }
        Ok(())
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
        let mut times = event_millis(times)?;
        // Times out of range belong to no window: dropped as late, like NULLs.
        let out_of_range = |t: Option<i64>| t.is_some_and(|t| !in_time_range(t));
        if out_of_range(arrow::compute::min(&times)) || out_of_range(arrow::compute::max(&times)) {
            times = times
                .iter()
                .map(|t| t.filter(|&t| in_time_range(t)))
                .collect();
        }
        let mut late = Late::default();
        let mut out = Emitted::new();
        let changes = self.emit == WindowEmit::Changes;
        let aggregation = &self.aggregation;
        let live = match &mut self.state {
            State::Fixed(fixed) => {
                let touched = fixed.add(aggregation, &rows, &times, watermark.before, &mut late)?;
                fixed.emit(aggregation, watermark.after, &touched, changes, &mut out)?;
                fixed.live_keys(self.index.len())
            }
            State::Sessions(sessions) => {
                let touched =
                    sessions.add(aggregation, &rows, &times, watermark.before, &mut late)?;
                sessions.emit(aggregation, watermark.after, &touched, changes, &mut out)?;
                sessions.live_keys(self.index.len())
            }
        };
        let output = self.output(out)?;
        // Keys no open window has are dropped when they are most keys.
        if let Some(live) = self.index.compact_if_sparse(&live)? {
            match &mut self.state {
                State::Fixed(fixed) => fixed.renumber(&live),
                State::Sessions(sessions) => sessions.renumber(&live),
            }
        }
        Ok((output, late))
    }

    /// The emitted rows as a batch of the output schema.
    fn output(&mut self, out: Emitted) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampMillisecondArray::from(out.starts)),
            Arc::new(TimestampMillisecondArray::from(out.ends)),
        ];
        if !self.index.is_global() {
            let rows = UInt32Array::from(out.keys);
            for key in self.index.keys()? {
                columns.push(take(key.as_ref(), &rows, None)?);
            }
        }
        let values = self.schema.fields().len()
            - columns.len()
            - usize::from(self.emit == WindowEmit::Changes);
        for v in 0..values {
            let parts: Vec<&dyn Array> = out.values.iter().map(|p| p[v].as_ref()).collect();
            columns.push(if parts.is_empty() {
                arrow::array::new_empty_array(self.schema.field(columns.len()).data_type())
            } else {
                arrow::compute::concat(&parts)?
            });
        }
        if self.emit == WindowEmit::Changes {
            columns.push(Arc::new(BooleanArray::from(out.finals)));
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}
