//! The rows event-time windows emit in one batch, gathered before they
//! become the output batch, and what the batch asks them to emit.

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::take;

use crate::error::Result;
use crate::operators::aggregate::Evaluated;

/// Output rows of windows: per row its bounds, its key (group index) and
/// whether it is final; the values in the same order.
pub(crate) struct Emitted {
    /// Windows whose end it reaches close and are emitted.
    pub(super) watermark: i64,
    /// Whether open windows that got rows emit their current values too.
    pub(super) changes: bool,
    pub(super) starts: Vec<i64>,
    pub(super) ends: Vec<i64>,
    pub(super) keys: Vec<u32>,
    pub(super) finals: Vec<bool>,
    pub(super) values: Vec<Vec<ArrayRef>>,
}

impl Emitted {
    /// Nothing emitted yet, in a batch that ends at `watermark`.
    pub(super) fn new(watermark: i64, changes: bool) -> Self {
        Emitted {
            watermark,
            changes,
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
    pub(super) fn push(
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
