//! Brooklet's integration tests: one binary (DataFusion links once).
//!
//! - `spec`: the spec files under `tests/specs/`, run batch by batch on a
//!   manual clock;
//! - `api`: the Rust API (`foreach_batch`, `into_stream`, `print`, the
//!   operator-level API, lifecycle).

mod api;
mod spec;
mod support;
mod window;
