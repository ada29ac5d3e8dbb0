//! [`Rows`]: one batch's aggregate arguments and filters, each row with
//! its group index.

use arrow::array::{Array, ArrayRef, BooleanArray, UInt32Array};
use arrow::compute::take;

use crate::error::Result;

/// One batch's rows, ready to aggregate.
pub(crate) struct Rows {
    pub(super) groups: Vec<usize>,
    pub(super) arguments: Vec<Vec<ArrayRef>>,
    pub(super) filters: Vec<Option<BooleanArray>>,
    pub(super) times: Option<ArrayRef>,
}

impl Rows {
    /// The group index of each row.
    pub(crate) fn groups(&self) -> &[usize] {
        &self.groups
    }

    /// Each row's event time, when the aggregation has a time key.
    pub(crate) fn times(&self) -> Option<&ArrayRef> {
        self.times.as_ref()
    }

    /// The rows at `picks` (a row may be picked more than once), in group
    /// `groups[i]` each: how one row joins several windows. `None` keeps
    /// every row in order.
    pub(crate) fn regroup(&self, picks: Option<&[u32]>, groups: Vec<usize>) -> Result<Rows> {
        let Some(picks) = picks else {
            return Ok(Rows {
                groups,
                arguments: self.arguments.clone(),
                filters: self.filters.clone(),
                times: None,
            });
        };
        let picks = UInt32Array::from(picks.to_vec());
        let take_all = |arrays: &[ArrayRef]| -> Result<Vec<ArrayRef>> {
            arrays
                .iter()
                .map(|a| Ok(take(a.as_ref(), &picks, None)?))
                .collect()
        };
        Ok(Rows {
            groups,
            arguments: self
                .arguments
                .iter()
                .map(|a| take_all(a))
                .collect::<Result<_>>()?,
            filters: self
                .filters
                .iter()
                .map(|f| {
                    f.as_ref()
                        .map(|f| {
                            let taken = take(f, &picks, None)?;
                            Ok(taken
                                .as_any()
                                .downcast_ref::<BooleanArray>()
                                .expect("take keeps the type")
                                .clone())
                        })
                        .transpose()
                })
                .collect::<Result<_>>()?,
            times: None,
        })
    }
}
