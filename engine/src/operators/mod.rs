//! DStream operators: what a query's graph runs at every batch time, one
//! operator per file, all behind one trait.
//!
//! A node of the operator graph (`graph.rs`) that is not a source holds an
//! operator's definition: what the operator is asked to do (its plan, its
//! window, its emit mode), as the DStream API or the SQL planner built it.
//! When a query starts, every definition is compiled once into an operator,
//! which the scheduler then drives:
//!
//! | file | operator | state |
//! |---|---|---|
//! | `stateless.rs` | a DataFusion plan run on each batch | none |
//! | `window/aggregate.rs` | processing-time window aggregate (pane folding) | partial aggregates of live panes |
//! | `window/raw.rs` | DStream `window()`: the window's rows | rows of live panes |
//! | `event_window/mod.rs` | event-time windows, fixed or sessions, closed by the watermark | partial aggregates of open windows |
//! | `running.rs` | running aggregate (`updateStateByKey`) | one partial aggregate per key |
//! | `join/interval.rs` | interval join on event time | both sides' rows that can still match |
//! | `join/window.rs` | window join on event time | both sides' rows of windows still open on a side |
//!
//! `partitioned.rs` is not an operator of its own either: it runs a keyed
//! operator as several tasks (`SET parallelism`); `tasks.rs` waits for the
//! tasks an operator spawns within a batch.
//!
//! `aggregate/` is not an operator: it is how the stateful ones keep
//! DataFusion's accumulators across batches.
//!
//! What an operator may assume and must answer is the contract in
//! `operator.rs`.
//!
//! # Adding an operator
//!
//! One new file here with the definition and the operator (implementing
//! the two traits of `operator.rs`), and one `mod` line below; the DStream
//! API (or the planner) creates nodes with the new definition. Nothing in
//! the scheduler changes.

pub(crate) mod aggregate;
pub mod event_window;
pub mod join;
pub(crate) mod partitioned;
pub mod running;
pub(crate) mod stateless;
mod tasks;
pub mod window;
