//! Brooklet's integration tests, in one binary so that DataFusion links once
//! for all of them (the spec files have the only other one,
//! `tests/specs.rs`, which makes a test case of each file):
//!
//! - `api`: the Rust API (`foreach_batch`, `into_stream`, `print`, the
//!   operator-level API, lifecycle);
//! - `window`: window aggregates through the operator-level API;
//! - `bad_input`: 100 000 lines with 1 % malformed under each error policy;
//! - `bursts`: `max.records.per.batch` and a flaky server, through sockets;
//! - `files`: the files source and sink on real directories;
//! - `join_props`: a property test of event-time window joins and interval
//!   joins against a batch join of all rows;
//! - `joins`: static tables on real files re-read when they change, the
//!   joins that are refused, and the DStream join methods;
//! - `kafka`: the Kafka source and sink against a real broker
//!   (`kafka_broker`: Tansu started per test, and a reader of the
//!   committed records);
//! - `nexmark`: the Nexmark generator, and q5's windows against a batch query;
//! - `storage`: files and checkpoints on a real S3 API server
//!   (`s3_server`: moto started per test), Parquet both ways;
//! - `checkpoint`: resuming from a checkpoint through the Rust API;
//! - `event_time`: event-time windows through the Rust API, late rows,
//!   planning errors;
//! - `trigger`: the available-now trigger against the same batches on a
//!   manual clock;
//! - `ui`: the status server's endpoints over a real socket, and its page
//!   in headless Chromium;
//! - `parallelism_props`: a property test of every keyed operator's
//!   per-batch output at parallelism 1 to 4;
//! - `window_props`: a property test of pane folding against brute force;
//! - `event_time_props`: a property test of event-time windows against a
//!   batch `GROUP BY` over all events.

mod api;
mod bad_input;
mod bursts;
mod checkpoint;
mod event_time;
mod event_time_props;
mod files;
mod join_props;
mod joins;
mod kafka;
#[path = "kafka_broker/mod.rs"]
mod kafka_broker;
mod nexmark;
mod parallelism_props;
#[path = "s3_server/mod.rs"]
mod s3_server;
mod storage;
mod support;
mod trigger;
mod ui;
mod window;
mod window_props;
