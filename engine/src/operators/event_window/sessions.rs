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

use std::collections::BTreeSet;
use std::time::Duration;

use arrow::array::UInt32Array;
use datafusion::common::HashMap;
use serde_json::json;

use super::{Arrivals, WindowAssigner};
use crate::checkpoint::{StateReader, StateWriter};
use crate::error::{Error, Result};
use crate::operators::aggregate::{Aggregation, Evaluated, Partial};
use crate::operators::event_window::emitted::Emitted;

/// Level rows beyond twice the open sessions that trigger a merge of all
/// levels.
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

/// Session windows: the open sessions and their partial states by id.
#[derive(Default)]
pub(super) struct Sessions {
    gap: i64,
    next_id: usize,
    open: HashMap<usize, Session>,
    /// Key → its open sessions' ids, by start.
    by_key: HashMap<usize, Vec<usize>>,
    /// `(end, id)` of every open session.
    by_end: BTreeSet<(i64, usize)>,
    /// Absorbed id → the session holding its rows now.
    absorbed: HashMap<usize, usize>,
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

    /// The open session holding the rows of id `id`, if one does.
    fn holder(&self, id: usize) -> Option<usize> {
        let root = self.absorbed.get(&id).copied().unwrap_or(id);
        self.open.contains_key(&root).then_some(root)
    }

    /// Opens a session of `key` over `[start, end)`.
    fn open_session(&mut self, key: usize, start: i64, end: i64) -> usize {
        let id = self.next_id;
        self.next_id += 1;
        self.open.insert(
            id,
            Session {
                key,
                start,
                end,
                members: Vec::new(),
            },
        );
        self.by_end.insert((end, id));
        id
    }

    /// Sets the bounds of open session `id`.
    fn stretch(&mut self, id: usize, start: i64, end: i64) {
        let session = self.open.get_mut(&id).expect("an open session");
        self.by_end.remove(&(session.end, id));
        session.start = start;
        session.end = end;
        self.by_end.insert((end, id));
    }

    /// Session `into` absorbs open session `id`: its rows and its members.
    fn absorb(&mut self, into: usize, id: usize) {
        let session = self.open.remove(&id).expect("an open session");
        self.by_end.remove(&(session.end, id));
        for &member in &session.members {
            self.absorbed.insert(member, into);
        }
        self.absorbed.insert(id, into);
        let target = self.open.get_mut(&into).expect("an open session");
        target.members.extend(session.members);
        target.members.push(id);
    }

    /// Closes open session `id` (its rows are dropped at the next merge).
    fn close(&mut self, id: usize) {
        let session = self.open.remove(&id).expect("an open session");
        self.by_end.remove(&(session.end, id));
        if let Some(ids) = self.by_key.get_mut(&session.key) {
            ids.retain(|&s| s != id);
            if ids.is_empty() {
                self.by_key.remove(&session.key);
            }
        }
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
        let bound = 2 * self.open.len() + SLACK_ROWS;
        if rows > bound || self.absorbed.len() > bound {
            self.merge_all(aggregation, |_, holder| Some(holder))?;
        }
        Ok(())
    }

    /// Merges every level into one, each row under the open session holding
    /// it, renamed by `rename(id, holder)`; forgets members.
    fn merge_all(
        &mut self,
        aggregation: &Aggregation,
        rename: impl Fn(&Self, usize) -> Option<usize>,
    ) -> Result<()> {
        let levels = std::mem::take(&mut self.levels);
        let refs: Vec<&Partial> = levels.iter().collect();
        let merged =
            aggregation.merge_sparse(&refs, |id| self.holder(id).and_then(|h| rename(self, h)))?;
        if merged.state_rows() > 0 {
            self.levels.push(merged);
        }
        self.absorbed.clear();
        for session in self.open.values_mut() {
            session.members.clear();
        }
        Ok(())
    }

    /// Numbers the open sessions `0..` by id (all levels merged into one):
    /// the form a checkpoint holds.
    fn renumber_sessions(&mut self, aggregation: &Aggregation) -> Result<()> {
        let mut ids: Vec<usize> = self.open.keys().copied().collect();
        ids.sort_unstable();
        self.merge_all(aggregation, |me, holder| {
            debug_assert!(me.open.contains_key(&holder));
            ids.binary_search(&holder).ok()
        })?;
        let open = std::mem::take(&mut self.open);
        let mut sessions: Vec<(usize, Session)> = open.into_iter().collect();
        sessions.sort_unstable_by_key(|(id, _)| *id);
        self.open = sessions
            .into_iter()
            .enumerate()
            .map(|(position, (_, session))| (position, session))
            .collect();
        self.next_id = self.open.len();
        self.rebuild();
        Ok(())
    }

    /// Rebuilds the indexes by key and by end from the open sessions.
    fn rebuild(&mut self) {
        self.by_key.clear();
        self.by_end.clear();
        for (&id, session) in &self.open {
            self.by_key.entry(session.key).or_default().push(id);
            self.by_end.insert((session.end, id));
        }
        for ids in self.by_key.values_mut() {
            ids.sort_by_key(|&id| self.open[&id].start);
        }
    }

    /// The final values of sessions `ids`, in that order: each one's rows
    /// (under its own id and its members') gathered from every level.
    fn evaluate(&self, aggregation: &Aggregation, ids: &[usize]) -> Result<Evaluated> {
        let mut picks = Vec::with_capacity(self.levels.len());
        for level in &self.levels {
            let (mut rows, mut groups) = (Vec::new(), Vec::new());
            for (position, id) in ids.iter().enumerate() {
                let members = &self.open[id].members;
                for holder in std::iter::once(id).chain(members) {
                    if let Some(row) = level.row_of(*holder) {
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
                .map(|&id| {
                    let session = &self.open[&id];
                    (session.start, session.end, Part::Session(id))
                })
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
                        Part::Session(id) => Some(id),
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
                    Some(&id) => {
                        self.stretch(id, start, end);
                        id
                    }
                    None => self.open_session(key, start, end),
                };
                for &id in sessions.iter().filter(|&&id| id != target) {
                    self.absorb(target, id);
                }
                for (r, _) in new_rows {
                    picks.push(r);
                    targets.push(target);
                }
                kept.push(target);
            }
            if !kept.is_empty() {
                self.by_key.insert(key, kept);
            }
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
        let mut emitted: Vec<(usize, bool)> = self
            .by_end
            .range(..=(watermark, usize::MAX))
            .map(|&(_, id)| (id, true))
            .collect();
        if out.changes {
            emitted.extend(
                touched
                    .iter()
                    .filter(|&&id| self.open.get(&id).is_some_and(|s| s.end > watermark))
                    .map(|&id| (id, false)),
            );
        }
        if emitted.is_empty() {
            return Ok(());
        }
        emitted.sort_by_key(|&(id, _)| {
            let session = &self.open[&id];
            (session.end, session.start, session.key)
        });
        let ids: Vec<usize> = emitted.iter().map(|&(id, _)| id).collect();
        let evaluated = self.evaluate(aggregation, &ids)?;
        let keys: Vec<u32> = ids.iter().map(|id| self.open[id].key as u32).collect();
        let bounds = |i: usize| {
            let session = &self.open[&ids[i]];
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
        for &key in self.by_key.keys() {
            live[key] = true;
        }
        live
    }

    fn renumber(&mut self, live: &UInt32Array) -> Result<()> {
        for session in self.open.values_mut() {
            session.key = live
                .values()
                .binary_search(&(session.key as u32))
                .expect("a live session's key is live");
        }
        self.rebuild();
        Ok(())
    }

    fn bytes(&self) -> usize {
        let per_session = std::mem::size_of::<Session>() + 64;
        self.levels.iter().map(Partial::bytes).sum::<usize>()
            + self.open.len() * per_session
            + self
                .open
                .values()
                .map(|s| s.members.len() * 8)
                .sum::<usize>()
            + self.absorbed.len() * 16
    }

    /// Saves the open sessions, numbered `0..` by id: their keys, bounds
    /// and partial states.
    fn save(&mut self, aggregation: &Aggregation, state: &mut StateWriter) -> Result<()> {
        self.renumber_sessions(aggregation)?;
        let sessions: Vec<&Session> = (0..self.open.len()).map(|id| &self.open[&id]).collect();
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
        self.open = saved_keys
            .iter()
            .zip(starts.iter().zip(&ends))
            .enumerate()
            .map(|(id, (&key, (&start, &end)))| {
                let session = Session {
                    key: key as usize,
                    start,
                    end,
                    members: Vec::new(),
                };
                (id, session)
            })
            .collect();
        self.next_id = self.open.len();
        let saved = aggregation.load_partial(state, "sessions")?;
        if saved.len() > self.open.len() {
            return Err(Error::Checkpoint("the saved sessions are damaged".into()));
        }
        self.levels = if saved.state_rows() > 0 {
            vec![saved]
        } else {
            Vec::new()
        };
        self.absorbed.clear();
        self.rebuild();
        Ok(())
    }
}
