//! [`Builder`]: accumulators being fed rows, until they give their partial
//! states or their final values.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, new_empty_array, new_null_array};
use arrow::datatypes::DataType;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};

use super::partial::{Evaluated, Partial};
use super::rows::Rows;
use crate::error::Result;

/// Accumulators being fed rows.
///
/// DataFusion's accumulators assume that when a call raises the number of
/// groups, every new group index is in that call (their hash aggregate
/// numbers groups as it meets them); some mark all groups up to the new
/// total as having seen a value. Group indices here come from a key index
/// shared across batches, so a builder never raises its total past the
/// groups of the call, and first adds groups a call skips as rows that are
/// filtered out ([`Builder::fill`]): they exist, with no value.
pub(crate) struct Builder {
    pub(super) accumulators: Vec<Box<dyn GroupsAccumulator>>,
    pub(super) counts: Vec<u64>,
    pub(super) argument_types: Arc<[Vec<DataType>]>,
    /// The type of each accumulator's value.
    pub(super) result_types: Arc<[DataType]>,
}

impl Builder {
    /// Adds `rows`.
    pub(crate) fn update(&mut self, rows: &Rows) -> Result<()> {
        let before = self.counts.len();
        let needed = rows
            .groups
            .iter()
            .max()
            .map_or(before, |g| before.max(g + 1));
        if needed > before {
            let mut present = vec![false; needed - before];
            for &g in rows.groups.iter().filter(|&&g| g >= before) {
                present[g - before] = true;
            }
            if present.iter().any(|p| !p) {
                self.fill(needed)?;
            }
        }
        for ((accumulator, arguments), filter) in self
            .accumulators
            .iter_mut()
            .zip(&rows.arguments)
            .zip(&rows.filters)
        {
            accumulator.update_batch(arguments, &rows.groups, filter.as_ref(), needed)?;
        }
        self.counts.resize(needed, 0);
        for &g in &rows.groups {
            self.counts[g] += 1;
        }
        Ok(())
    }

    /// Adds the rows whose partial states `part` holds, group by group.
    pub(crate) fn merge(&mut self, part: &Partial) -> Result<()> {
        if part.len() == 0 {
            return Ok(());
        }
        // Every index below the new total is in this call (see above).
        if !part.is_dense() {
            self.fill(part.len())?;
        }
        let total = self.counts.len().max(part.len());
        for (accumulator, states) in self.accumulators.iter_mut().zip(&part.states) {
            accumulator.merge_batch(states, &part.groups, total)?;
        }
        self.counts.resize(total, 0);
        for (g, n) in part.rows() {
            self.counts[g] += n;
        }
        Ok(())
    }

    /// Raises the number of groups to `groups`, the new ones empty.
    pub(super) fn fill(&mut self, groups: usize) -> Result<()> {
        let from = self.counts.len();
        if groups <= from {
            return Ok(());
        }
        let n = groups - from;
        let indices: Vec<usize> = (from..groups).collect();
        let filter = BooleanArray::from(vec![false; n]);
        for (accumulator, types) in self.accumulators.iter_mut().zip(self.argument_types.iter()) {
            let arguments: Vec<ArrayRef> = types.iter().map(|t| new_null_array(t, n)).collect();
            accumulator.update_batch(&arguments, &indices, Some(&filter), groups)?;
        }
        self.counts.resize(groups, 0);
        Ok(())
    }

    /// The partial states of what was added, for the groups that had rows.
    pub(crate) fn finish(mut self) -> Result<Partial> {
        if self.counts.iter().all(|&n| n == 0) {
            return Ok(Partial::default());
        }
        let states = self
            .accumulators
            .iter_mut()
            .map(|a| a.state(EmitTo::All))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let dense = Partial::new((0..self.counts.len()).collect(), states, self.counts);
        if dense.counts.iter().all(|&n| n > 0) {
            return Ok(dense);
        }
        let (rows, groups): (Vec<u32>, Vec<usize>) = dense
            .rows()
            .filter(|(_, n)| *n > 0)
            .map(|(g, _)| (g as u32, g))
            .unzip();
        dense.select(&rows, groups)
    }

    /// Bytes held by the accumulators.
    pub(crate) fn bytes(&self) -> usize {
        self.accumulators.iter().map(|a| a.size()).sum::<usize>() + self.counts.len() * 8
    }

    /// The final values of what was added, for `groups` groups.
    pub(crate) fn evaluate(mut self, groups: usize) -> Result<Evaluated> {
        self.fill(groups)?;
        if self.counts.is_empty() {
            // No groups (a task that got no rows): DataFusion's adapter for
            // accumulators of one group each cannot make an empty array.
            return Ok(Evaluated {
                values: self.result_types.iter().map(new_empty_array).collect(),
                counts: Vec::new(),
            });
        }
        let values = self
            .accumulators
            .iter_mut()
            .map(|a| a.evaluate(EmitTo::All))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        Ok(Evaluated {
            values,
            counts: self.counts,
        })
    }
}
