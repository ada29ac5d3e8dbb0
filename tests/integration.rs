//! Brooklet's integration tests: one binary (DataFusion links once).
//!
//! - `spec`: the spec files under `tests/specs/`, run batch by batch on a
//!   manual clock;
//! - `api`: the Rust API (`foreach_batch`, `into_stream`, `print`, the
//!   operator-level API, lifecycle);
//! - `window`: window aggregates through the operator-level API;
//! - `window_props`: a property test of pane folding against brute force.

mod api;
mod spec;
mod support;
mod window;
mod window_props;
