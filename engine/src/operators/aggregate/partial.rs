//! [`Partial`]: the partial states of a set of rows, by group index; and
//! [`Evaluated`]: the final values of some groups.

use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, ArrayRef, UInt32Array};
use arrow::compute::take;

use crate::error::Result;

/// The partial states of a set of rows: for each group that had rows, its
/// group index, its state row (per aggregate, its state columns) and its row
/// count. Only groups with rows are kept, so a pane's state is sized by the
/// keys it saw, not by every key of the window.
///
/// A partial is immutable once made, and has an id naming its content for
/// the life of the process (a clone keeps it): a checkpoint writes a
/// partial it already wrote only once (`checkpoint/chain.rs`).
#[derive(Clone, Default)]
pub(crate) struct Partial {
    pub(super) groups: Vec<usize>,
    pub(super) states: Vec<Vec<ArrayRef>>,
    pub(super) counts: Vec<u64>,
    /// Names this content; 0 for the empty default.
    pub(super) id: u64,
}

/// The next id of immutable state (partials, chunks of keys).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// An id no immutable state had before in this process.
pub(super) fn fresh_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

impl Partial {
    /// A partial of these rows, with an id of its own.
    pub(super) fn new(groups: Vec<usize>, states: Vec<Vec<ArrayRef>>, counts: Vec<u64>) -> Self {
        Partial {
            groups,
            states,
            counts,
            id: fresh_id(),
        }
    }

    /// One more than the highest group index it holds (0 when empty).
    pub(crate) fn len(&self) -> usize {
        self.groups.last().map_or(0, |g| g + 1)
    }

    /// How many state rows it holds (one per group with rows).
    pub(crate) fn state_rows(&self) -> usize {
        self.groups.len()
    }

    /// The state row of group `group`, if it holds one.
    pub(crate) fn row_of(&self, group: usize) -> Option<usize> {
        self.groups.binary_search(&group).ok()
    }

    /// Whether it holds every group index below [`Partial::len`].
    pub(super) fn is_dense(&self) -> bool {
        self.groups.len() == self.len()
    }

    /// Each group it holds (ascending) with its row count.
    pub(crate) fn rows(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.groups.iter().copied().zip(self.counts.iter().copied())
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.states
            .iter()
            .flatten()
            .map(|a| a.get_array_memory_size())
            .sum::<usize>()
            + self.counts.len() * 16
    }

    /// The state rows at `rows` (ascending positions), renumbered `groups`.
    pub(super) fn select(&self, rows: &[u32], groups: Vec<usize>) -> Result<Partial> {
        let rows = UInt32Array::from(rows.to_vec());
        let states = self
            .states
            .iter()
            .map(|columns| {
                columns
                    .iter()
                    .map(|c| Ok(take(c.as_ref(), &rows, None)?))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let counts = rows
            .values()
            .iter()
            .map(|&r| self.counts[r as usize])
            .collect();
        Ok(Partial::new(groups, states, counts))
    }

    /// The same states with group `g` renamed `map[g]` (no two alike): a
    /// partial numbered by its own groups moved to the key index's numbers.
    pub(crate) fn renumbered(&self, map: &[usize]) -> Result<Partial> {
        let mut order: Vec<(usize, u32)> = self
            .groups
            .iter()
            .enumerate()
            .map(|(row, &g)| (map[g], row as u32))
            .collect();
        order.sort_unstable();
        let (groups, rows): (Vec<usize>, Vec<u32>) = order.into_iter().unzip();
        self.select(&rows, groups)
    }

    /// Keeps the groups `live` (ascending), renumbered by their position in
    /// `live`: the partial after [`KeyIndex::compact`] with the same `live`.
    ///
    /// [`KeyIndex::compact`]: super::KeyIndex::compact
    pub(crate) fn compact(&self, live: &UInt32Array) -> Result<Partial> {
        let mut rows = Vec::new();
        let mut groups = Vec::new();
        for (row, &g) in self.groups.iter().enumerate() {
            if let Ok(position) = live.values().binary_search(&(g as u32)) {
                rows.push(row as u32);
                groups.push(position);
            }
        }
        self.select(&rows, groups)
    }
}

/// Final values of some groups: one array per aggregate, and how many rows
/// each group had.
pub(crate) struct Evaluated {
    pub(crate) values: Vec<ArrayRef>,
    pub(crate) counts: Vec<u64>,
}

impl Evaluated {
    /// The groups that had rows, ascending; `None` when all of them had.
    pub(crate) fn groups_with_rows(&self) -> Option<UInt32Array> {
        if self.counts.iter().all(|&n| n > 0) {
            return None;
        }
        Some(
            self.counts
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(g, _)| g as u32)
                .collect(),
        )
    }
}
