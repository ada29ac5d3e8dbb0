//! Session windows over event time: per key, rows closer than the gap to
//! each other share a session `[first event, last event + gap)`; sessions
//! that overlap or touch merge, their partial states too (as in Flink and
//! Spark).
//!
//! A batch touches only the sessions its rows reach and the sessions that
//! close, however many are open:
//!
//! - each open session has an id, never reused, and is found by key (its
//!   key's sessions by start) and by end (the watermark closes those whose
//!   end it reaches);
//! - partial states are kept by session id in *levels*: a batch's rows
//!   become a new level, and the two newest levels merge while the newer
//!   holds at least half the rows of the older, so each state row is merged
//!   a logarithmic number of times rather than once per batch (a
//!   log-structured merge of partial aggregates);
//! - a session that absorbs others (a row bridging them) lists their ids as
//!   its members: their rows in any level are its rows, and a merge of
//!   levels renames them to it;
//! - a closed session's rows are dropped when their level next merges, and
//!   when the levels hold more than twice the rows of the open sessions
//!   (plus a constant), every level merges into one, which also forgets
//!   the members. So memory stays sized by the open sessions.
//!
//! A session's value is its ids' rows gathered from every level (a binary
//! search each), merged only when it is emitted.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use arrow::array::UInt32Array;
use serde_json::json;

use super::{Arrivals, WindowAssigner};
use crate::checkpoint::{StateReader, StateWriter};
use crate::error::{Error, Result};
use crate::operators::aggregate::{Aggregation, Evaluated, Partial};
use crate::operators::event_window::emitted::Emitted;

/// Level rows (and session ids) beyond twice the open sessions that
/// trigger a merge of all levels.
const SLACK_ROWS: usize = 64;

/// One open session of one key.
#[derive(Debug, Clone)]
struct Session {
    key: usize,
    start: i64,
    end: i64,
    /// The ids of the sessions it absorbed, whose rows are its own.
    members: Vec<usize>,
}

/// What a session id names now.
#[derive(Debug, Clone)]
enum Slot {
    Open(Session),
    /// Absorbed by the open session with this id: its rows are that one's.
    Absorbed(usize),
    /// Emitted and closed: its rows are dropped at the next merge.
    Closed,
}

/// Session windows: the open sessions and their partial states by id.
#[derive(Default)]
pub(super) struct Sessions {
    gap: i64,
    /// Every session id given since the last renumbering.
    slots: Vec<Slot>,
    open: usize,
    /// Key (group index) → its open sessions' ids, by start.
    by_key: Vec<Vec<usize>>,
    /// `(end, id)` of open sessions, soonest first; an entry whose session
    /// has since ended later, merged or closed is skipped when it comes up.
    ends: BinaryHeap<Reverse<(i64, usize)>>,
    /// Partial states by session id, oldest (and largest) level first.
    levels: Vec<Partial>,
    /// The sessions the last batch's rows went to.
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

    fn session(&self, id: usize) -> &Session {
        match &self.slots[id] {
            Slot::Open(session) => session,
            _ => unreachable!("session {id} is open"),
        }
    }

    fn session_mut(&mut self, id: usize) -> &mut Session {
        match &mut self.slots[id] {
            Slot::Open(session) => session,
            _ => unreachable!("session {id} is open"),
        }
    }

    /// The open session holding the rows of id `id`, if one does.
    fn holder(&self, id: usize) -> Option<usize> {
        match self.slots.get(id)? {
            Slot::Open(_) => Some(id),
            Slot::Absorbed(root) => matches!(self.slots[*root], Slot::Open(_)).then_some(*root),
            Slot::Closed => None,
        }
    }

    /// Opens a session of `key` over `[start, end)`.
    fn open_session(&mut self, key: usize, start: i64, end: i64) -> usize {
        let id = self.slots.len();
        self.slots.push(Slot::Open(Session {
            key,
            start,
            end,
            members: Vec::new(),
        }));
        self.open += 1;
        self.ends.push(Reverse((end, id)));
        id
    }

    /// Sets the bounds of open session `id`.
    fn stretch(&mut self, id: usize, start: i64, end: i64) {
        let session = self.session_mut(id);
        session.start = start;
        if session.end != end {
            session.end = end;
            self.ends.push(Reverse((end, id)));
        }
    }

    /// Session `into` absorbs open session `id`: its rows and its members.
    fn absorb(&mut self, into: usize, id: usize) {
        let Slot::Open(session) = std::mem::replace(&mut self.slots[id], Slot::Absorbed(into))
        else {
            unreachable!("session {id} is open");
        };
        self.open -= 1;
        for &member in &session.members {
            self.slots[member] = Slot::Absorbed(into);
        }
        let target = self.session_mut(into);
        target.members.extend(session.members);
        target.members.push(id);
    }

    /// Closes open session `id` (its rows are dropped at the next merge).
    fn close(&mut self, id: usize) {
        let Slot::Open(session) = std::mem::replace(&mut self.slots[id], Slot::Closed) else {
            unreachable!("session {id} is open");
        };
        self.open -= 1;
        let ids = &mut self.by_key[session.key];
        ids.retain(|&s| s != id);
    }

    /// Adds a level of new rows and merges levels as the module docs say.
    fn add_level(&mut self, aggregation: &Aggregation, level: Partial) -> Result<()> {
        if level.state_rows() > 0 {
            self.levels.push(level);
        }
        while let [.., older, newer] = self.levels.as_slice() {
            if newer.state_rows() * 2 < older.state_rows() {
                break;
            }
            let newer = self.levels.pop().expect("two levels");
            let older = self.levels.pop().expect("two levels");
            let merged = aggregation.merge_sparse(&[&older, &newer], |id| self.holder(id))?;
            self.levels.push(merged);
        }
        let rows: usize = self.levels.iter().map(Partial::state_rows).sum();
        let bound = 2 * self.open + SLACK_ROWS;
        if rows > bound || self.slots.len() > bound || self.ends.len() > 2 * bound {
            self.renumber_sessions(aggregation)?;
        }
        Ok(())
    }

    /// Numbers the open sessions `0..` in order of id, merging every level
    /// into one under the new numbers; forgets members, closed and absorbed
    /// ids. The form a checkpoint holds.
    fn renumber_sessions(&mut self, aggregation: &Aggregation) -> Result<()> {
        let mut numbers = vec![usize::MAX; self.slots.len()];
        let mut next = 0;
        for (id, slot) in self.slots.iter().enumerate() {
            if let Slot::Open(_) = slot {
                numbers[id] = next;
                next += 1;
            }
        }
        let levels = std::mem::take(&mut self.levels);
        let refs: Vec<&Partial> = levels.iter().collect();
        let merged = aggregation.merge_sparse(&refs, |id| self.holder(id).map(|h| numbers[h]))?;
        let mut touched: Vec<usize> = (self.touched.iter())
            .filter_map(|&id| self.holder(id).map(|h| numbers[h]))
            .collect();
        touched.sort_unstable();
        touched.dedup();
        self.touched = touched;
        if merged.state_rows() > 0 {
            self.levels.push(merged);
        }
        let slots = std::mem::take(&mut self.slots);
        self.slots = slots
            .into_iter()
            .filter_map(|slot| match slot {
                Slot::Open(session) => Some(Slot::Open(Session {
                    members: Vec::new(),
                    ..session
                })),
                _ => None,
            })
            .collect();
        self.rebuild();
        Ok(())
    }

    /// Rebuilds the indexes by key and by end from the open sessions.
    fn rebuild(&mut self) {
        for ids in &mut self.by_key {
            ids.clear();
        }
        self.ends.clear();
        self.open = 0;
        for id in 0..self.slots.len() {
            let Slot::Open(session) = &self.slots[id] else {
                continue;
            };
            let (key, end) = (session.key, session.end);
            if key >= self.by_key.len() {
                self.by_key.resize_with(key + 1, Vec::new);
            }
            self.by_key[key].push(id);
            self.ends.push(Reverse((end, id)));
            self.open += 1;
        }
        let slots = &self.slots;
        let start = |id: &usize| match &slots[*id] {
            Slot::Open(s) => s.start,
            _ => i64::MIN,
        };
        for ids in &mut self.by_key {
            ids.sort_by_key(start);
        }
    }

    /// The final values of sessions `ids`, in that order: each one's rows
    /// (under its own id and its members') gathered from every level.
    fn evaluate(&self, aggregation: &Aggregation, ids: &[usize]) -> Result<Evaluated> {
        let mut picks = Vec::with_capacity(self.levels.len());
        for level in &self.levels {
            let (mut rows, mut groups) = (Vec::new(), Vec::new());
            for (position, &id) in ids.iter().enumerate() {
                let members = &self.session(id).members;
                for &holder in std::iter::once(&id).chain(members) {
                    if let Some(row) = level.row_of(holder) {
                        rows.push(row as u32);
                        groups.push(position);
                    }
                }
            }
            picks.push((level, rows, groups));
        }
        aggregation.evaluate_rows(&picks, ids.len())
    }
}

impl WindowAssigner for Sessions {
    /// Assigns rows to sessions, merging the sessions a row bridges, and
    /// adds their partial states as a new level; remembers the sessions
    /// touched.
    fn add(&mut self, aggregation: &Aggregation, rows: &mut Arrivals<'_>) -> Result<()> {
        let groups = rows.rows.groups();
        let gap = self.gap;
        let watermark = rows.watermark;
        let mut order: Vec<(u32, i64)> = rows.timed().collect();
        order.sort_by_key(|&(r, t)| (groups[r as usize], t));
        let mut picks = Vec::with_capacity(order.len());
        let mut targets = Vec::with_capacity(order.len());
        // Existing sessions and new rows as intervals `(start, end, what)`,
        // `what` a session id, or `NEW | row` for a new row.
        const NEW: usize = 1 << 63;
        let mut parts: Vec<(i64, i64, usize)> = Vec::new();
        let mut bridged: Vec<usize> = Vec::new();
        for run in order.chunk_by(|a, b| groups[a.0 as usize] == groups[b.0 as usize]) {
            let key = groups[run[0].0 as usize];
            if key >= self.by_key.len() {
                self.by_key.resize_with(key + 1, Vec::new);
            }
            let (first, last) = (run[0].1, run[run.len() - 1].1);
            // The usual case: the key's one session takes every row.
            if let [id] = self.by_key[key][..] {
                let session = self.session(id);
                let (start, end) = (session.start, session.end);
                let chained = run.windows(2).all(|w| w[1].1 <= w[0].1.saturating_add(gap));
                if chained && first <= end && last.saturating_add(gap) >= start {
                    let end = end.max(last.saturating_add(gap));
                    self.stretch(id, start.min(first), end);
                    for &(r, _) in run {
                        picks.push(r);
                        targets.push(id);
                    }
                    continue;
                }
            }
            let existing = std::mem::take(&mut self.by_key[key]);
            parts.clear();
            for &id in &existing {
                let session = self.session(id);
                parts.push((session.start, session.end, id));
            }
            parts.extend(
                run.iter()
                    .map(|&(r, t)| (t, t.saturating_add(gap), NEW | r as usize)),
            );
            parts.sort_unstable_by_key(|p| (p.0, p.2));
            let mut kept = existing;
            kept.clear();
            let mut i = 0;
            while i < parts.len() {
                // Intervals that overlap or touch form one session.
                let (start, mut end) = (parts[i].0, parts[i].1);
                let mut j = i + 1;
                while j < parts.len() && parts[j].0 <= end {
                    end = end.max(parts[j].1);
                    j += 1;
                }
                let cluster = i..j;
                i = j;
                bridged.clear();
                bridged.extend(
                    parts[cluster.clone()]
                        .iter()
                        .map(|p| p.2)
                        .filter(|w| w & NEW == 0),
                );
                let new_rows = parts[cluster].iter().filter(|p| p.2 & NEW != 0);
                if bridged.is_empty() && end <= watermark {
                    // It would only start a session that already ended.
                    for &(t, _, _) in new_rows {
                        rows.late(t);
                    }
                    continue;
                }
                let target = match bridged.iter().min() {
                    Some(&id) => {
                        self.stretch(id, start, end);
                        id
                    }
                    None => self.open_session(key, start, end),
                };
                for &id in bridged.iter().filter(|&&id| id != target) {
                    self.absorb(target, id);
                }
                for &(_, _, what) in new_rows {
                    picks.push((what & !NEW) as u32);
                    targets.push(target);
                }
                kept.push(target);
            }
            self.by_key[key] = kept;
        }
        // The new rows' states, numbered by session id.
        let mut touched = targets.clone();
        touched.sort_unstable();
        touched.dedup();
        let local: Vec<usize> = targets
            .iter()
            .map(|id| touched.binary_search(id).expect("gathered above"))
            .collect();
        let level = if picks.is_empty() {
            Partial::default()
        } else {
            let rows = rows.rows.regroup(Some(&picks), local)?;
            let mut builder = aggregation.builder()?;
            builder.update(&rows)?;
            builder.finish()?.renumbered(&touched)?
        };
        self.touched = touched;
        self.add_level(aggregation, level)
    }

    /// Emits the sessions that close at the watermark (and with changes
    /// the touched open ones), by end, start, key; closes the closed ones.
    fn emit(&mut self, aggregation: &Aggregation, out: &mut Emitted) -> Result<()> {
        let (watermark, touched) = (out.watermark, std::mem::take(&mut self.touched));
        let mut emitted: Vec<(usize, bool)> = Vec::new();
        while let Some(&Reverse((end, id))) = self.ends.peek() {
            if end > watermark {
                break;
            }
            self.ends.pop();
            // Skipped: a session that has since ended later, merged or closed.
            if matches!(&self.slots[id], Slot::Open(s) if s.end == end) {
                emitted.push((id, true));
            }
        }
        emitted.sort_unstable();
        emitted.dedup();
        if out.changes {
            emitted.extend(
                touched
                    .iter()
                    .filter(|&&id| matches!(&self.slots[id], Slot::Open(s) if s.end > watermark))
                    .map(|&id| (id, false)),
            );
        }
        if emitted.is_empty() {
            return Ok(());
        }
        emitted.sort_by_key(|&(id, _)| {
            let session = self.session(id);
            (session.end, session.start, session.key)
        });
        let ids: Vec<usize> = emitted.iter().map(|&(id, _)| id).collect();
        let evaluated = self.evaluate(aggregation, &ids)?;
        let keys: Vec<u32> = ids.iter().map(|&id| self.session(id).key as u32).collect();
        let bounds = |i: usize| {
            let session = self.session(ids[i]);
            (session.start, session.end)
        };
        out.push(bounds, &keys, &evaluated, None, |i| emitted[i].1)?;
        for &(id, _) in emitted.iter().filter(|(_, is_final)| *is_final) {
            self.close(id);
        }
        Ok(())
    }

    fn live_keys(&self, keys: usize) -> Vec<bool> {
        let mut live = vec![false; keys];
        for (key, ids) in self.by_key.iter().enumerate() {
            live[key] = !ids.is_empty();
        }
        live
    }

    fn renumber(&mut self, live: &UInt32Array) -> Result<()> {
        for slot in &mut self.slots {
            if let Slot::Open(session) = slot {
                session.key = live
                    .values()
                    .binary_search(&(session.key as u32))
                    .expect("a live session's key is live");
            }
        }
        self.by_key.clear();
        self.rebuild();
        Ok(())
    }

    fn bytes(&self) -> usize {
        let per_slot = std::mem::size_of::<Slot>() + 16;
        let members: usize = self
            .slots
            .iter()
            .map(|slot| match slot {
                Slot::Open(s) => s.members.len() * 8,
                _ => 0,
            })
            .sum();
        self.levels.iter().map(Partial::bytes).sum::<usize>()
            + self.slots.len() * per_slot
            + members
            + self.by_key.len() * 24
            + self.ends.len() * 16
    }

    /// Saves the open sessions, numbered `0..`: their keys, bounds and
    /// partial states.
    fn save(&mut self, aggregation: &Aggregation, state: &mut StateWriter) -> Result<()> {
        self.renumber_sessions(aggregation)?;
        let sessions: Vec<&Session> = (0..self.slots.len()).map(|id| self.session(id)).collect();
        let column =
            |f: fn(&Session) -> i64| json!(sessions.iter().map(|s| f(s)).collect::<Vec<_>>());
        state.value("session.keys", column(|s| s.key as i64));
        state.value("session.starts", column(|s| s.start));
        state.value("session.ends", column(|s| s.end));
        let empty = Partial::default();
        aggregation.save_partial(self.levels.first().unwrap_or(&empty), state, "sessions")
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
            .map(|(&key, (&start, &end))| {
                Slot::Open(Session {
                    key: key as usize,
                    start,
                    end,
                    members: Vec::new(),
                })
            })
            .collect();
        let saved = aggregation.load_partial(state, "sessions")?;
        if saved.len() > self.slots.len() {
            return Err(Error::Checkpoint("the saved sessions are damaged".into()));
        }
        self.levels = if saved.state_rows() > 0 {
            vec![saved]
        } else {
            Vec::new()
        };
        self.rebuild();
        Ok(())
    }
}
