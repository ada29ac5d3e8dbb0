//! Session windows over event time: per key, rows closer than the gap to
//! each other share a session `[first event, last event + gap)`; sessions
//! that overlap or touch merge, their partial states too (as in Flink and
//! Spark). Each open session of a key is a *slot* with one partial state.

use std::time::Duration;

use arrow::array::UInt32Array;
use datafusion::common::HashMap;
use serde_json::json;

use super::{Arrivals, WindowAssigner};
use crate::checkpoint::{StateReader, StateWriter};
use crate::error::{Error, Result};
use crate::operators::aggregate::{Aggregation, Partial};
use crate::operators::event_window::emitted::Emitted;

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
pub(super) struct Sessions {
    gap: i64,
    slots: Vec<Session>,
    /// The partial state of each slot.
    total: Partial,
    /// Key → its slots, by start.
    by_key: HashMap<usize, Vec<usize>>,
    /// The slots the last batch's rows went to.
    touched: Vec<usize>,
}

impl Sessions {
    /// Sessions that end after `gap` of silence, none open yet.
    pub(super) fn new(gap: Duration) -> Self {
        Sessions {
            gap: gap.as_millis() as i64,
            ..Sessions::default()
        }
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
}

impl WindowAssigner for Sessions {
    /// Assigns rows to sessions, merging the sessions a row bridges, and
    /// folds them in; remembers the slots touched.
    fn add(&mut self, aggregation: &Aggregation, rows: &mut Arrivals<'_>) -> Result<()> {
        let groups = rows.rows.groups();
        let gap = self.gap;
        let watermark = rows.watermark;
        let mut order: Vec<(u32, i64)> = rows.timed().collect();
        order.sort_by_key(|&(r, t)| (groups[r as usize], t));
        let mut picks = Vec::with_capacity(order.len());
        let mut slots = Vec::with_capacity(order.len());
        let mut map: Vec<usize> = (0..self.slots.len()).collect();
        // Existing sessions and new rows as intervals.
        enum Part {
            Session(usize),
            Row(u32, i64),
        }
        for run in order.chunk_by(|a, b| groups[a.0 as usize] == groups[b.0 as usize]) {
            let key = groups[run[0].0 as usize];
            let existing = self.by_key.remove(&key).unwrap_or_default();
            let mut parts: Vec<(i64, i64, Part)> = existing
                .iter()
                .map(|&s| (self.slots[s].start, self.slots[s].end, Part::Session(s)))
                .collect();
            parts.extend(
                run.iter()
                    .map(|&(r, t)| (t, t.saturating_add(gap), Part::Row(r, t))),
            );
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
                        Part::Row(..) => None,
                    })
                    .collect();
                let new_rows = cluster.iter().filter_map(|p| match p.2 {
                    Part::Row(r, t) => Some((r, t)),
                    Part::Session(_) => None,
                });
                if sessions.is_empty() && end <= watermark {
                    // It would only start a session that already ended.
                    for (_, t) in new_rows {
                        rows.late(t);
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
                for (r, _) in new_rows {
                    picks.push(r);
                    slots.push(target);
                }
                kept.push(target);
            }
            self.by_key.insert(key, kept);
        }
        self.touched = slots.clone();
        self.touched.sort_unstable();
        self.touched.dedup();
        let delta = if slots.is_empty() {
            Partial::default()
        } else {
            let rows = rows.rows.regroup(Some(&picks), slots)?;
            let mut builder = aggregation.builder()?;
            builder.update(&rows)?;
            builder.finish()?
        };
        let count = self.slots.len();
        self.total = aggregation.regroup(&[(&self.total, &map), (&delta, &map)], count)?;
        Ok(())
    }

    /// Emits the sessions that close at the watermark (and with changes
    /// the touched open ones), by end, start, key; frees the closed ones.
    fn emit(&mut self, aggregation: &Aggregation, out: &mut Emitted) -> Result<()> {
        let (watermark, touched) = (out.watermark, std::mem::take(&mut self.touched));
        let mut emitted: Vec<(usize, bool)> = Vec::new();
        for (s, slot) in self.slots.iter().enumerate() {
            if !slot.merged && slot.end <= watermark {
                emitted.push((s, true));
            }
        }
        if out.changes {
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

    fn live_keys(&self, keys: usize) -> Vec<bool> {
        let mut live = vec![false; keys];
        for slot in &self.slots {
            live[slot.key] = true;
        }
        live
    }

    fn renumber(&mut self, live: &UInt32Array) -> Result<()> {
        for slot in &mut self.slots {
            slot.key = live
                .values()
                .binary_search(&(slot.key as u32))
                .expect("a live slot's key is live");
        }
        self.rebuild();
        Ok(())
    }

    fn bytes(&self) -> usize {
        self.total.bytes() + self.slots.len() * (std::mem::size_of::<Session>() + 32)
    }

    /// Saves the open sessions: their keys, bounds and partial states.
    fn save(&mut self, aggregation: &Aggregation, state: &mut StateWriter) -> Result<()> {
        let column = |f: fn(&Session) -> i64| json!(self.slots.iter().map(f).collect::<Vec<_>>());
        state.value("session.keys", column(|s| s.key as i64));
        state.value("session.starts", column(|s| s.start));
        state.value("session.ends", column(|s| s.end));
        aggregation.save_partial(&self.total, state, "sessions")
    }

    fn load(&mut self, aggregation: &Aggregation, state: &StateReader, keys: usize) -> Result<()> {
        let saved_keys = state.i64s("session.keys")?;
        let starts = state.i64s("session.starts")?;
        let ends = state.i64s("session.ends")?;
        let fits = saved_keys.len() == starts.len()
            && saved_keys.len() == ends.len()
            && saved_keys.iter().all(|&k| k >= 0 && (k as usize) < keys);
        if !fits {
            return Err(Error::Checkpoint("the saved sessions are damaged".into()));
        }
        self.slots = saved_keys
            .iter()
            .zip(starts.iter().zip(&ends))
            .map(|(&key, (&start, &end))| Session {
                key: key as usize,
                start,
                end,
                merged: false,
            })
            .collect();
        self.total = aggregation.load_partial(state, "sessions")?;
        if self.total.len() > self.slots.len() {
            return Err(Error::Checkpoint("the saved sessions are damaged".into()));
        }
        self.rebuild();
        Ok(())
    }
}
