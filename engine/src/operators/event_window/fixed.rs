//! Fixed event-time windows, tumbling or sliding: `[k·slide, k·slide +
//! length)` aligned to the epoch, kept as panes of `gcd(length, slide)`
//! whose partial states a window merges when it closes.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::UInt32Array;
use datafusion::common::HashMap;
use serde_json::json;

use super::{Arrivals, WindowAssigner};
use crate::checkpoint::{StateReader, StateWriter};
use crate::error::{Error, Result};
use crate::operators::aggregate::{Aggregation, Builder, Partial};
use crate::operators::event_window::emitted::Emitted;
use crate::operators::window::WindowSpec;
use crate::watermark::TIME_LIMIT;

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
pub(super) struct FixedWindows {
    length: i64,
    slide: i64,
    pane: i64,
    /// Live panes by start time.
    panes: BTreeMap<i64, Pane>,
    /// Every window ending at or before this has been emitted.
    emitted_through: i64,
    /// The panes the last batch's rows went to, and their keys.
    touched: BTreeMap<i64, Vec<usize>>,
}

impl FixedWindows {
    /// Fixed windows of `spec`, none open yet.
    pub(super) fn new(spec: WindowSpec) -> Self {
        FixedWindows {
            length: spec.length.as_millis() as i64,
            slide: spec.slide.as_millis() as i64,
            pane: spec.pane_millis(),
            panes: BTreeMap::new(),
            emitted_through: i64::MIN,
            touched: BTreeMap::new(),
        }
    }

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
}

impl WindowAssigner for FixedWindows {
    /// Folds the rows into their panes; remembers the panes and keys touched.
    fn add(&mut self, aggregation: &Aggregation, rows: &mut Arrivals<'_>) -> Result<()> {
        let keys = rows.rows.groups();
        // Per pane: the rows and their groups in the pane.
        let mut by_pane: BTreeMap<i64, (Vec<u32>, Vec<usize>)> = BTreeMap::new();
        for (row, t) in rows.timed() {
            if self.newest_end(t) <= rows.watermark {
                rows.late(t);
                continue;
            }
            let key = keys[row as usize];
            let start = t.div_euclid(self.pane) * self.pane;
            let group = self.panes.entry(start).or_default().group_of(key);
            let (picks, groups) = by_pane.entry(start).or_default();
            picks.push(row);
            groups.push(group);
        }
        self.touched.clear();
        for (start, (picks, groups)) in by_pane {
            let pane = self.panes.get_mut(&start).expect("created above");
            let all = picks.len() == keys.len();
            self.touched
                .insert(start, picks.iter().map(|&r| keys[r as usize]).collect());
            let rows = rows
                .rows
                .regroup((!all).then_some(picks.as_slice()), groups)?;
            let building = match pane.building.as_mut() {
                Some(b) => b,
                None => pane.building.insert(aggregation.builder()?),
            };
            building.update(&rows)?;
        }
        Ok(())
    }

    /// Emits the windows that close at the watermark (and with changes the
    /// open windows of the touched panes, for their touched keys), then
    /// frees the panes no open window needs.
    fn emit(&mut self, aggregation: &Aggregation, out: &mut Emitted) -> Result<()> {
        let watermark = out.watermark;
        let closing = self.closing(watermark);
        let mut updated: BTreeMap<i64, BTreeSet<usize>> = BTreeMap::new();
        if out.changes {
            for (&pane, keys) in &std::mem::take(&mut self.touched) {
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

    /// Saves the live panes: their partial states and keys.
    fn save(&mut self, aggregation: &Aggregation, state: &mut StateWriter) -> Result<()> {
        state.value("emitted_through", json!(self.emitted_through));
        state.value("panes", json!(self.panes.keys().collect::<Vec<_>>()));
        for (start, pane) in &mut self.panes {
            let partial = pane.partial(aggregation)?;
            aggregation.save_partial(partial, state, &format!("pane.{start}"))?;
            state.value(&format!("pane.{start}.keys"), json!(pane.keys));
        }
        Ok(())
    }

    fn load(&mut self, aggregation: &Aggregation, state: &StateReader, keys: usize) -> Result<()> {
        self.emitted_through = state.i64("emitted_through")?;
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
