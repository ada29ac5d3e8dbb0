//! Fixed event-time windows, tumbling or sliding: `[k·slide, k·slide +
//! length)` aligned to the epoch, kept as panes of `gcd(length, slide)`
//! whose partial states a window merges when it closes.
//!
//! Cumulating windows (Flink's `CUMULATE`, [`Shape::Cumulative`]) are kept
//! the same way, in panes of the step: a period `[k·size, (k+1)·size)` has
//! the windows `[k·size, k·size + j·step)`, all starting at the period's
//! start, and the window ending at `e` merges the period's panes before
//! `e`. A row belongs to every window of its period that ends after it, so
//! it is late only when its period has closed; a row behind windows that
//! have already closed (but not its period) goes to the later ones only.
//! Their panes are freed when the period closes.
//!
//! A sliding window emitted on close does not merge its `length / pane`
//! panes one by one: when a window closes, the panes it covers are
//! *sealed* into a [`PaneQueue`] (two stacks: a constant number of merges
//! per window whatever `length / slide`), and windows close in order of
//! start, so each pops the panes before it. A sealed pane may still get
//! rows: a row is late only when *every* window containing it has closed
//! (as in Flink and Spark), and the pane's newer windows are still open.
//! Such rows are kept beside the queue, in the pane itself, and added to
//! each window that covers it, so the cost of a window is two merges plus
//! one per sealed pane that got rows after it was sealed. Windows that
//! emit changes merge their panes per window (an update needs panes the
//! queue has already combined).

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::UInt32Array;
use datafusion::common::HashMap;
use serde_json::json;

use super::{Arrivals, WindowAssigner, WindowEmit};
use crate::checkpoint::{StateReader, StateWriter};
use crate::error::{Error, Result};
use crate::operators::aggregate::{Aggregation, Builder, Partial};
use crate::operators::event_window::emitted::Emitted;
use crate::operators::window::{PaneQueue, WindowSpec};
use crate::watermark::TIME_LIMIT;

/// One pane of fixed windows: the keys it has seen and their accumulators
/// (once sealed into the queue, only those of the rows that came after).
#[derive(Default)]
struct Pane {
    /// Its rows until sealing are in the queue.
    sealed: bool,
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
            self.frozen = match self.frozen.state_rows() {
                0 => part,
                _ => aggregation.combine(&[&self.frozen, &part])?,
            };
        }
        Ok(&self.frozen)
    }

    /// Whether it holds rows.
    fn has_rows(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Its partial states numbered by key (group index), to merge with
    /// other panes'.
    fn by_key(&mut self, aggregation: &Aggregation) -> Result<Partial> {
        let keys = std::mem::take(&mut self.keys);
        let renumbered = self.partial(aggregation)?.renumbered(&keys);
        self.keys = keys;
        renumbered
    }

    fn bytes(&self) -> usize {
        self.keys.len() * 24
            + self.frozen.bytes()
            + self.building.as_ref().map_or(0, Builder::bytes)
    }
}

/// A window's bounds, `[start, end)` in milliseconds.
type Window = (i64, i64);

/// How windows lie over the panes (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `[k·slide, k·slide + length)`: tumbling or sliding.
    Fixed,
    /// `[k·length, k·length + j·slide)` for `j = 1 … length / slide`:
    /// cumulating by `slide` (the step) up to `length` (the size).
    Cumulative,
}

/// What folds a slice of a global aggregate's batch into partial states by
/// pane: the windows' geometry, holding nothing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PaneFolder {
    spec: WindowSpec,
    shape: Shape,
    emit: WindowEmit,
}

impl PaneFolder {
    /// Folds `rows` into windows of their own, as [`FixedWindows::add`]
    /// folds a batch (late rows counted the same), and gives each pane's
    /// partial states, numbered by key.
    pub(super) fn fold(
        &self,
        aggregation: &Aggregation,
        rows: &mut Arrivals<'_>,
    ) -> Result<Vec<(i64, Partial)>> {
        let mut windows = FixedWindows::new(self.spec, self.shape, self.emit);
        windows.add(aggregation, rows)?;
        windows
            .panes
            .into_iter()
            .map(|(start, mut pane)| Ok((start, pane.by_key(aggregation)?)))
            .collect()
    }
}

/// Tumbling, sliding and cumulating windows over event time, by panes.
pub(super) struct FixedWindows {
    /// Their geometry, for slices of a batch.
    folder: PaneFolder,
    shape: Shape,
    length: i64,
    slide: i64,
    pane: i64,
    /// Live panes by start time.
    panes: BTreeMap<i64, Pane>,
    /// Every window ending at or before this has been emitted.
    emitted_through: i64,
    /// The panes the last batch's rows went to, and their keys.
    touched: BTreeMap<i64, Vec<usize>>,
    /// Sliding windows emitted on close: the sealed panes.
    fold: Option<Fold>,
}

/// The panes that closing windows have sealed, combined in two stacks.
struct Fold {
    /// Panes starting before this are sealed (or freed).
    sealed_through: i64,
    queue: PaneQueue,
}

impl FixedWindows {
    /// Windows of `spec` and `shape` emitting as `emit` says, none open yet.
    pub(super) fn new(spec: WindowSpec, shape: Shape, emit: WindowEmit) -> Self {
        let sliding = spec.length != spec.slide && shape == Shape::Fixed;
        FixedWindows {
            folder: PaneFolder { spec, shape, emit },
            shape,
            fold: (sliding && emit == WindowEmit::OnClose).then(|| Fold {
                sealed_through: i64::MIN,
                queue: PaneQueue::default(),
            }),
            length: spec.length.as_millis() as i64,
            slide: spec.slide.as_millis() as i64,
            pane: spec.pane_millis(),
            panes: BTreeMap::new(),
            emitted_through: i64::MIN,
            touched: BTreeMap::new(),
        }
    }

    /// The pane starting at `start`, created when new (sealed when behind
    /// the sealed ones: its rows go beside the queue).
    fn pane_at(&mut self, start: i64) -> &mut Pane {
        let sealed = self.fold.as_ref().is_some_and(|f| start < f.sealed_through);
        self.panes.entry(start).or_insert_with(|| Pane {
            sealed,
            ..Pane::default()
        })
    }

    /// Panes starting before `keep_from` have no open window left at
    /// `watermark`: each pane's newest window has ended.
    fn keep_from(&self, watermark: i64) -> i64 {
        if watermark >= TIME_LIMIT {
            return i64::MAX;
        }
        let (slide, length) = (self.slide, self.length);
        match self.shape {
            Shape::Fixed => (watermark.saturating_sub(length).div_euclid(slide) + 1)
                .checked_mul(slide)
                .unwrap_or(i64::MAX),
            // The periods that end after the watermark.
            Shape::Cumulative => watermark
                .div_euclid(length)
                .checked_mul(length)
                .unwrap_or(i64::MIN),
        }
    }

    /// Emits the window starting at `start` from the queue: seals the
    /// panes up to its end, drops those before its start, and adds the
    /// rows that reached sealed panes after they were sealed.
    fn emit_folded(
        &mut self,
        aggregation: &Aggregation,
        start: i64,
        out: &mut Emitted,
    ) -> Result<()> {
        let end = start + self.length;
        let fold = self.fold.as_mut().expect("called with a fold");
        let unsealed = fold.sealed_through.max(start).min(end)..end;
        for (&pane_start, pane) in self.panes.range_mut(unsealed) {
            if pane.sealed {
                continue;
            }
            let partial = pane.by_key(aggregation)?;
            fold.queue.push(pane_start, partial, aggregation)?;
            *pane = Pane {
                sealed: true,
                ..Pane::default()
            };
        }
        fold.sealed_through = fold.sealed_through.max(end);
        fold.queue.pop_before(start, aggregation, None)?;
        let mut extra = Vec::new();
        for (_, pane) in self.panes.range_mut(start..end) {
            if pane.sealed && pane.has_rows() {
                extra.push(pane.by_key(aggregation)?);
            }
        }
        let fold = self.fold.as_ref().expect("called with a fold");
        let extra: Vec<&Partial> = extra.iter().collect();
        let evaluated = fold.queue.evaluate(aggregation, &extra, 0)?;
        let rows: UInt32Array = evaluated
            .counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(g, _)| g as u32)
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        let keys: Vec<u32> = (0..evaluated.counts.len() as u32).collect();
        out.push(
            move |_| (start, end),
            &keys,
            &evaluated,
            Some(&rows),
            |_| true,
        )
    }

    /// The end of the newest window containing time `t`.
    fn newest_end(&self, t: i64) -> i64 {
        match self.shape {
            Shape::Fixed => t.div_euclid(self.slide) * self.slide + self.length,
            Shape::Cumulative => t.div_euclid(self.length) * self.length + self.length,
        }
    }

    /// The windows containing the pane starting at `pane`, as (start, end).
    fn windows_of(&self, pane: i64) -> Vec<Window> {
        let (slide, length, width) = (self.slide, self.length, self.pane);
        match self.shape {
            Shape::Fixed => {
                let first = (pane + width - length).div_euclid(slide)
                    + i64::from((pane + width - length).rem_euclid(slide) != 0);
                let last = pane.div_euclid(slide);
                (first..=last)
                    .map(|k| (k * slide, k * slide + length))
                    .collect()
            }
            Shape::Cumulative => {
                // The pane is one step wide: its windows end from its own
                // end to its period's.
                let period = pane.div_euclid(length) * length;
                let steps = (period + length - pane) / slide;
                (1..=steps).map(|j| (period, pane + j * slide)).collect()
            }
        }
    }

    /// The cumulating windows that close at `watermark` and hold rows: of
    /// each period with live panes, the windows ending in
    /// `(emitted_through, watermark]` after its first pane.
    fn closing_cumulative(&self, watermark: i64) -> BTreeSet<Window> {
        let (step, size) = (self.slide, self.length);
        let mut closing = BTreeSet::new();
        let mut period_seen = None;
        for &pane in self.panes.keys() {
            let period = pane.div_euclid(size) * size;
            if period_seen == Some(period) {
                continue;
            }
            period_seen = Some(period);
            // Panes are one step wide and aligned, so ends are steps.
            let mut end = pane + step;
            if (-TIME_LIMIT..TIME_LIMIT).contains(&self.emitted_through) {
                let after = self.emitted_through.div_euclid(step) * step + step;
                end = end.max(after);
            }
            let mut last = period + size;
            if watermark < TIME_LIMIT {
                last = last.min(watermark.div_euclid(step) * step);
            }
            while end <= last {
                closing.insert((period, end));
                end += step;
            }
        }
        closing
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
        debug_assert_eq!(self.shape, Shape::Fixed);
        let slide = self.slide;
        let ceil =
            |x: i64| x.div_euclid(slide) * slide + if x.rem_euclid(slide) == 0 { 0 } else { slide };
        let floor = |x: i64| x.div_euclid(slide) * slide;
        // Pane and window times are within ±2^53 (see `TIME_LIMIT`).
        let mut from = ceil(first + self.pane - self.length);
        if (-TIME_LIMIT..TIME_LIMIT).contains(&self.emitted_through) {
            from = from.max(ceil(self.emitted_through - self.length + 1));
        }
        let mut to = floor(last);
        if watermark < TIME_LIMIT {
            to = to.min(floor(watermark.saturating_sub(self.length)));
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
                .map(|(start, _)| start)
                .filter(|&start| start >= from && start <= to)
                .collect()
        }
    }

    /// Emits the window `[start, end)`: final, or an update of the keys
    /// `only`.
    fn emit_window(
        &mut self,
        aggregation: &Aggregation,
        (start, end): Window,
        only: Option<&BTreeSet<usize>>,
        out: &mut Emitted,
    ) -> Result<()> {
        let bounds = move |_| (start, end);
        // (Not a cumulating window of one pane: the period's later windows
        // need the pane.)
        if self.shape == Shape::Fixed && self.length == self.slide && only.is_none() {
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
}

/// The rows of one batch that fall into one pane.
struct PaneRows {
    start: i64,
    picks: Vec<u32>,
}

impl WindowAssigner for FixedWindows {
    /// Folds the rows into their panes; remembers the panes and keys touched.
    fn add(&mut self, aggregation: &Aggregation, rows: &mut Arrivals<'_>) -> Result<()> {
        let keys = rows.rows.groups();
        // Per pane: its rows. Rows come mostly in time order, so the pane
        // of the row before is looked at first: most rows then cost no map
        // lookup.
        let mut by_pane: Vec<PaneRows> = Vec::new();
        let mut index: HashMap<i64, usize> = HashMap::new();
        let mut last: Option<usize> = None;
        for (row, t) in rows.timed() {
            if self.newest_end(t) <= rows.watermark {
                rows.late(t);
                continue;
            }
            let start = t.div_euclid(self.pane) * self.pane;
            let at = match last {
                Some(at) if by_pane[at].start == start => at,
                _ => {
                    let at = *index.entry(start).or_insert_with(|| {
                        by_pane.push(PaneRows {
                            start,
                            picks: Vec::new(),
                        });
                        by_pane.len() - 1
                    });
                    last = Some(at);
                    at
                }
            };
            by_pane[at].picks.push(row);
        }
        by_pane.sort_unstable_by_key(|p| p.start);
        self.touched.clear();
        for PaneRows { start, picks } in by_pane {
            // Each row's group in the pane; a run of one key is looked up once.
            let pane = self.pane_at(start);
            let mut last_key: Option<(usize, usize)> = None;
            let groups: Vec<usize> = picks
                .iter()
                .map(|&r| {
                    let key = keys[r as usize];
                    match last_key {
                        Some((k, g)) if k == key => g,
                        _ => {
                            let g = pane.group_of(key);
                            last_key = Some((key, g));
                            g
                        }
                    }
                })
                .collect();
            let all = picks.len() == keys.len();
            let rows = rows
                .rows
                .regroup((!all).then_some(picks.as_slice()), groups)?;
            let building = match pane.building.as_mut() {
                Some(b) => b,
                None => pane.building.insert(aggregation.builder()?),
            };
            building.update(&rows)?;
            self.touched
                .insert(start, picks.iter().map(|&r| keys[r as usize]).collect());
        }
        Ok(())
    }

    /// Emits the windows that close at the watermark (and with changes the
    /// open windows of the touched panes, for their touched keys), then
    /// frees the panes no open window needs.
    fn emit(&mut self, aggregation: &Aggregation, out: &mut Emitted) -> Result<()> {
        let watermark = out.watermark;
        let closing: BTreeSet<Window> = match self.shape {
            Shape::Fixed => self
                .closing(watermark)
                .into_iter()
                .map(|start| (start, start + self.length))
                .collect(),
            Shape::Cumulative => self.closing_cumulative(watermark),
        };
        let mut updated: BTreeMap<Window, BTreeSet<usize>> = BTreeMap::new();
        if out.changes {
            for (&pane, keys) in &std::mem::take(&mut self.touched) {
                for window in self.windows_of(pane) {
                    if window.1 > watermark {
                        updated.entry(window).or_default().extend(keys);
                    }
                }
            }
        }
        let windows = closing
            .iter()
            .map(|&w| (w, None))
            .chain(updated.iter().map(|(&w, keys)| (w, Some(keys))));
        let mut ordered: Vec<(Window, Option<&BTreeSet<usize>>)> = windows.collect();
        ordered.sort_by_key(|(w, _)| *w);
        for (window, only) in ordered {
            match (&self.fold, only) {
                (Some(_), None) => self.emit_folded(aggregation, window.0, out)?,
                _ => self.emit_window(aggregation, window, only, out)?,
            }
        }
        self.emitted_through = self.emitted_through.max(watermark);
        let keep_from = self.keep_from(watermark);
        self.panes.retain(|&start, _| start >= keep_from);
        if let Some(fold) = &mut self.fold {
            fold.queue.pop_before(keep_from, aggregation, None)?;
        }
        Ok(())
    }

    fn pane_folder(&self) -> Option<PaneFolder> {
        Some(self.folder)
    }

    /// Merges each pane's partial into the pane's accumulators, keys
    /// mapped to the pane's groups; remembers the panes and keys touched.
    fn add_panes(&mut self, aggregation: &Aggregation, panes: Vec<(i64, Partial)>) -> Result<()> {
        self.touched.clear();
        for (start, part) in panes {
            let keys: Vec<usize> = part.rows().map(|(key, _)| key).collect();
            if keys.is_empty() {
                continue;
            }
            let pane = self.pane_at(start);
            let mut to_group = vec![0; part.len()];
            for &key in &keys {
                to_group[key] = pane.group_of(key);
            }
            let regrouped = aggregation.regroup(&[(&part, &to_group)], pane.keys.len())?;
            let building = match pane.building.as_mut() {
                Some(b) => b,
                None => pane.building.insert(aggregation.builder()?),
            };
            building.merge(&regrouped)?;
            self.touched.entry(start).or_default().extend(keys);
        }
        Ok(())
    }

    /// The keys any live pane has.
    fn live_keys(&self, keys: usize) -> Vec<bool> {
        let mut live = vec![false; keys];
        for pane in self.panes.values() {
            for &k in &pane.keys {
                live[k] = true;
            }
        }
        if let Some(fold) = &self.fold {
            fold.queue.mark_live(&mut live);
        }
        live
    }

    fn renumber(&mut self, live: &UInt32Array) -> Result<()> {
        for pane in self.panes.values_mut() {
            for k in &mut pane.keys {
                *k = live
                    .values()
                    .binary_search(&(*k as u32))
                    .expect("a live pane's key is live");
            }
            pane.local = pane.keys.iter().enumerate().map(|(g, &k)| (k, g)).collect();
        }
        if let Some(fold) = &mut self.fold {
            fold.queue.compact(live)?;
        }
        Ok(())
    }

    fn bytes(&self) -> usize {
        self.panes.values().map(Pane::bytes).sum::<usize>()
            + self.fold.as_ref().map_or(0, |f| f.queue.bytes())
    }

    /// Saves the live panes (their partial states and keys) and the queue
    /// of sealed ones.
    fn save(&mut self, aggregation: &Aggregation, state: &mut StateWriter) -> Result<()> {
        state.value("emitted_through", json!(self.emitted_through));
        state.value("panes", json!(self.panes.keys().collect::<Vec<_>>()));
        if let Some(fold) = &self.fold {
            state.value("sealed_through", json!(fold.sealed_through));
            fold.queue.save(aggregation, state)?;
        }
        for (start, pane) in &mut self.panes {
            let partial = pane.partial(aggregation)?;
            aggregation.save_partial(partial, state, &format!("pane.{start}"))?;
            state.value(&format!("pane.{start}.keys"), json!(pane.keys));
        }
        Ok(())
    }

    fn load(&mut self, aggregation: &Aggregation, state: &StateReader, keys: usize) -> Result<()> {
        self.emitted_through = state.i64("emitted_through")?;
        if self.emitted_through >= TIME_LIMIT {
            // The run that saved it ended its input and emitted every window
            // with rows; the next run's rows open windows again (their
            // watermark starts from the rows', `WatermarkTracker::load`).
            self.emitted_through = i64::MIN;
        }
        // A checkpoint from before sealing has every pane unsealed.
        let mut sealed_through = i64::MIN;
        if let Some(fold) = &mut self.fold
            && state.has_value("sealed_through")
        {
            sealed_through = state.i64("sealed_through")?;
            fold.sealed_through = sealed_through;
            fold.queue = PaneQueue::load(aggregation, state)?;
            if fold.queue.groups() > keys {
                return Err(Error::Checkpoint(
                    "the saved sealed panes do not fit their keys".into(),
                ));
            }
        }
        for start in state.i64s("panes")? {
            let pane_keys: Vec<usize> = state
                .i64s(&format!("pane.{start}.keys"))?
                .into_iter()
                .map(|k| k as usize)
                .collect();
            let frozen = aggregation.load_partial(state, &format!("pane.{start}"))?;
            if pane_keys.iter().any(|&k| k >= keys) || frozen.len() > pane_keys.len() {
                return Err(Error::Checkpoint(format!(
                    "the saved pane {start} does not fit its keys"
                )));
            }
            let pane = Pane {
                sealed: start < sealed_through,
                local: pane_keys.iter().enumerate().map(|(g, &k)| (k, g)).collect(),
                keys: pane_keys,
                building: None,
                frozen,
            };
            self.panes.insert(start, pane);
        }
        Ok(())
    }
}
