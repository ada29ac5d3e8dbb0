//! Aggregates whose state outlives a batch (windows, running aggregates),
//! run on DataFusion's accumulators directly.
//!
//! DataFusion plans the aggregate (so every aggregate function works, user
//! aggregates included); [`Aggregation::compile`] takes the plan apart into
//! its input plan, its group expressions and its aggregate expressions.
//! Operators then keep:
//!
//! - a [`KeyIndex`]: each distinct group key gets a dense group index (with
//!   DataFusion's `GroupValues`), and the keys are kept for output;
//! - [`Partial`]s: the partial states (the accumulators' `state()`) of a set
//!   of rows, one state row for each group that had rows, with its group
//!   index and row count. Partials are combined with `merge_batch` by group
//!   index, with no hashing, and evaluated with `evaluate`.
//!
//! Group indices only grow until the operator compacts the index
//! ([`KeyIndex::compact`]), which keeps the live groups in order; a
//! partial is compacted with the same list ([`Partial::compact`]).
//!
//! The files: `aggregation.rs` takes the plan apart and combines the
//! pieces; `rows.rs` holds a batch's rows with their group indices,
//! `builder.rs` the accumulators they feed, `partial.rs` the partial states
//! and final values that come out, `key_index.rs` the group keys;
//! `encoding.rs` saves partials and keys to a checkpoint and loads them
//! back; `sliced.rs` folds a global aggregate's batch in slices at once.

mod aggregation;
mod builder;
mod encoding;
mod key_index;
mod partial;
mod rows;
mod sliced;

pub(crate) use aggregation::Aggregation;
pub(crate) use builder::Builder;
pub(crate) use key_index::KeyIndex;
pub(crate) use partial::{Evaluated, Partial};
pub(crate) use rows::Rows;
pub(crate) use sliced::{Slices, fold_all};
