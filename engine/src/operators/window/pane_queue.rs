//! The closed panes of a sliding window aggregate, as a queue that
//! combines them with a constant number of merges per window. Both window
//! aggregates use it: processing-time windows for every closed pane, and
//! event-time windows for the panes a closing window has sealed.

use crate::checkpoint::{StateReader, StateWriter};
use crate::error::Result;
use crate::operators::aggregate::{Aggregation, Evaluated, KeyIndex, Partial};

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
pub(crate) struct PaneQueue {
    /// `(pane number, combination of this pane and every newer front pane)`,
    /// newest first: the oldest is last.
    front: Vec<(i64, Partial)>,
    /// `(pane number, its partial)`, oldest first.
    back: Vec<(i64, Partial)>,
    back_total: Option<Partial>,
}

impl PaneQueue {
    pub(crate) fn push(
        &mut self,
        number: i64,
        pane: Partial,
        aggregation: &Aggregation,
    ) -> Result<()> {
        self.back_total = Some(match self.back_total.take() {
            None => pane.clone(),
            Some(total) => aggregation.combine(&[&total, &pane])?,
        });
        self.back.push((number, pane));
        Ok(())
    }

    /// The final values of every pane combined, with `extra` partials (rows
    /// that reached queued panes after they were queued).
    pub(crate) fn evaluate(
        &self,
        aggregation: &Aggregation,
        extra: &[&Partial],
        groups: usize,
    ) -> Result<Evaluated> {
        let parts: Vec<&Partial> = self
            .front
            .last()
            .map(|(_, p)| p)
            .into_iter()
            .chain(self.back_total.as_ref())
            .chain(extra.iter().copied())
            .collect();
        aggregation.evaluate(&parts, groups)
    }

    fn oldest(&self) -> Option<i64> {
        self.front
            .last()
            .or_else(|| self.back.first())
            .map(|(n, _)| *n)
    }

    /// Drops the panes numbered below `keep_from`. With `index`, a turn of
    /// the stacks also compacts the key index when most keys have no rows
    /// left in the queue (the caller owning the index may instead compact
    /// it itself with [`PaneQueue::mark_live`] and [`PaneQueue::compact`]).
    pub(crate) fn pop_before(
        &mut self,
        keep_from: i64,
        aggregation: &Aggregation,
        mut index: Option<&mut KeyIndex>,
    ) -> Result<()> {
        while self.oldest().is_some_and(|n| n < keep_from) {
            if self.front.is_empty() {
                self.turn(aggregation, index.as_deref_mut())?;
            }
            self.front.pop();
        }
        Ok(())
    }

    /// One more than the highest group a queued pane holds.
    pub(crate) fn groups(&self) -> usize {
        let lists = self.front.iter().chain(&self.back);
        let parts = lists.map(|(_, p)| p).chain(self.back_total.as_ref());
        parts.map(Partial::len).max().unwrap_or(0)
    }

    /// Marks `live[g]` for every group that has rows in a queued pane.
    pub(crate) fn mark_live(&self, live: &mut [bool]) {
        for (_, pane) in self.front.iter().chain(&self.back) {
            for (g, n) in pane.rows() {
                live[g] |= n > 0;
            }
        }
    }

    /// Keeps only the groups `live` (ascending), renumbered by position, as
    /// [`KeyIndex::compact`] does with the same list.
    pub(crate) fn compact(&mut self, live: &arrow::array::UInt32Array) -> Result<()> {
        for (_, pane) in self.front.iter_mut().chain(&mut self.back) {
            *pane = pane.compact(live)?;
        }
        if let Some(total) = &mut self.back_total {
            *total = total.compact(live)?;
        }
        Ok(())
    }

    /// Moves the back to the front as suffix combinations; with `index`,
    /// first drops the keys that no pane has rows for.
    fn turn(&mut self, aggregation: &Aggregation, index: Option<&mut KeyIndex>) -> Result<()> {
        if let Some(index) = index {
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

    pub(crate) fn bytes(&self) -> usize {
        self.front
            .iter()
            .chain(&self.back)
            .map(|(_, p)| p.bytes())
            .sum::<usize>()
            + self.back_total.as_ref().map_or(0, Partial::bytes)
    }

    /// Saves both stacks (each partial is written once while it lives).
    pub(crate) fn save(&self, aggregation: &Aggregation, state: &mut StateWriter) -> Result<()> {
        let mut save_list = |name: &str, list: &[(i64, Partial)]| -> Result<()> {
            state.value(
                name,
                serde_json::json!(list.iter().map(|(n, _)| n).collect::<Vec<_>>()),
            );
            for (i, (_, partial)) in list.iter().enumerate() {
                aggregation.save_partial(partial, state, &format!("{name}.{i}"))?;
            }
            Ok(())
        };
        save_list("front", &self.front)?;
        save_list("back", &self.back)?;
        // The back's running combination is not saved: it changes with
        // every pane, and loading makes it again from the back's panes.
        Ok(())
    }

    /// Restores what [`PaneQueue::save`] saved.
    pub(crate) fn load(aggregation: &Aggregation, state: &StateReader) -> Result<Self> {
        let load_list = |name: &str| -> Result<Vec<(i64, Partial)>> {
            state
                .i64s(name)?
                .into_iter()
                .enumerate()
                .map(|(i, n)| Ok((n, aggregation.load_partial(state, &format!("{name}.{i}"))?)))
                .collect()
        };
        let back = load_list("back")?;
        let back_total = match back.as_slice() {
            [] => None,
            panes => {
                let parts: Vec<&Partial> = panes.iter().map(|(_, p)| p).collect();
                Some(aggregation.combine(&parts)?)
            }
        };
        Ok(PaneQueue {
            front: load_list("front")?,
            back,
            back_total,
        })
    }
}
