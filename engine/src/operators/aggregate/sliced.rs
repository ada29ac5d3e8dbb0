//! [`Slices`]: a global aggregate's batch folded in several slices at
//! once (`SET parallelism = N`): Flink's local/global aggregation and
//! Spark's partial aggregation, inside one batch.
//!
//! An aggregate without keys has one state, so it cannot be divided by key
//! as keyed operators are (`operators/partitioned.rs`). Its rows can: the
//! batch of the one stream it reads is cut into N contiguous slices, and
//! each slice, on a task of its own, runs the input plan (filters,
//! projections), evaluates the arguments and folds its rows into partial
//! states: one per pane for a window, one for a running aggregate. The
//! operator then merges the slices' partials into its one state, in slice
//! order. The state is the same as at parallelism 1, so it saves and
//! restores as one, at any parallelism.
//!
//! Merging partials must give exactly what folding the rows one by one
//! gives, or the output would depend on the parallelism. It does for
//! counts, minimums, maximums, logical and bitwise folds, distinct counts,
//! and sums of integers and decimals. Floating-point sums round
//! differently in another order, and DataFusion averages integers as
//! floating-point numbers. Lists (`array_agg`) would merge exactly in the
//! order of the slices, but a list's state holds every row: merging the
//! slices' lists copies every value again, which costs what folding them
//! did (Nexmark q7 took 1.4× the CPU at parallelism 2, and gained 1.15× in
//! wall time where folding as one gained 1.6×). An aggregate with any other
//! function (or a floating-point sum or average, or a list) folds as one,
//! as does one whose input plan does more than filter and project one
//! stream (a slice of a joined batch is not the join of slices).

use std::sync::Arc;

use arrow::array::RecordBatch;

use super::aggregation::Aggregation;
use super::partial::Partial;
use super::rows::Rows;
use crate::error::{Error, Result};
use crate::graph::NodeId;
use crate::operators::tasks::{self, join_all};

/// The aggregate functions whose partials merge exactly in any grouping of
/// the rows, whatever the argument type.
const EXACT_IN_ANY_TYPE: &[&str] = &[
    "count",
    "min",
    "max",
    "bool_and",
    "bool_or",
    "bit_and",
    "bit_or",
    "bit_xor",
    "approx_distinct",
];

/// The aggregate functions whose partials merge exactly unless an argument
/// is a floating-point number.
const EXACT_UNLESS_FLOAT: &[&str] = &["sum", "avg", "mean"];

/// Copies of a global aggregation, one per slice, each with slots of its
/// own so that all run at once.
#[derive(Clone)]
pub(crate) struct Slices {
    /// The stream whose batch is sliced.
    node: NodeId,
    copies: Vec<Arc<Aggregation>>,
}

impl Slices {
    /// Slices for `aggregation` at `parallelism`, when it has no keys, reads
    /// one stream through filters and projections, merges exactly, and
    /// `parallelism` is above 1.
    pub(crate) fn of(aggregation: &Aggregation, parallelism: usize) -> Result<Option<Slices>> {
        let exact = aggregation
            .functions()
            .all(|(function, types)| merges_exactly(function, types));
        if parallelism < 2 || !aggregation.is_global() || !exact {
            return Ok(None);
        }
        let Some(node) = aggregation.scanned_stream() else {
            return Ok(None);
        };
        let copies = (0..parallelism)
            .map(|_| aggregation.with_own_slots().map(Arc::new))
            .collect::<Result<_>>()?;
        Ok(Some(Slices { node, copies }))
    }

    /// The stream whose batch is sliced.
    pub(crate) fn node(&self) -> NodeId {
        self.node
    }

    /// Folds `input`, the batch of the sliced stream, in slices at once:
    /// each slice's rows go through `fold` on a task of their own. The
    /// results are in slice order (the order of the rows).
    pub(crate) async fn fold<T, F>(&self, input: Option<RecordBatch>, fold: F) -> Result<Vec<T>>
    where
        T: Send + 'static,
        F: Fn(&Aggregation, Rows) -> Result<T> + Clone + Send + 'static,
    {
        let Some(batch) = input else {
            return Err(Error::Internal(format!(
                "no batch for stream {}",
                self.node
            )));
        };
        let rows = batch.num_rows();
        let slices = self.copies.len().min(rows.max(1));
        let handles: Vec<_> = self.copies[..slices]
            .iter()
            .enumerate()
            .map(|(i, copy)| {
                let (start, end) = (rows * i / slices, rows * (i + 1) / slices);
                let part = batch.slice(start, end - start);
                let (copy, fold, node) = (Arc::clone(copy), fold.clone(), self.node);
                tasks::spawn(async move {
                    let mut index = copy.key_index()?;
                    let rows = copy
                        .rows(&mut index, |id| (id == node).then(|| part.clone()))
                        .await?;
                    fold(&copy, rows)
                })
            })
            .collect();
        join_all(handles, "a slice of a global aggregate")
            .await?
            .into_iter()
            .collect()
    }
}

/// A slice's rows folded into one partial (how a processing-time window's
/// pane and a running aggregate take a batch).
pub(crate) fn fold_all(aggregation: &Aggregation, rows: Rows) -> Result<Partial> {
    let mut builder = aggregation.builder()?;
    builder.update(&rows)?;
    builder.finish()
}

/// Whether the partials of an aggregate `function` of arguments of `types`
/// merge exactly in any grouping of the rows, and cheaply (not a list).
fn merges_exactly(function: &str, types: &[arrow::datatypes::DataType]) -> bool {
    let function = function.to_ascii_lowercase();
    let function = function.as_str();
    EXACT_IN_ANY_TYPE.contains(&function)
        || (EXACT_UNLESS_FLOAT.contains(&function) && !types.iter().any(|t| t.is_floating()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::DataType;

    #[test]
    fn floating_point_sums_and_lists_are_not_sliced_but_counts_and_extremes_are() {
        assert!(merges_exactly("sum", &[DataType::Int64]));
        assert!(merges_exactly("avg", &[DataType::Decimal128(10, 2)]));
        assert!(!merges_exactly("sum", &[DataType::Float64]));
        assert!(!merges_exactly("avg", &[DataType::Float32]));
        assert!(merges_exactly("max", &[DataType::Float64]));
        assert!(merges_exactly("count", &[DataType::Float64]));
        assert!(!merges_exactly("array_agg", &[DataType::Int64]));
        assert!(!merges_exactly("first_value", &[DataType::Int64]));
    }
}
