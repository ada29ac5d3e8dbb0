//! Brooklet's engine: time, sources, DStream operators, sinks, and the
//! scheduler that runs them batch by batch, with an operator-level Rust API
//! for programs that write no SQL.
//!
//! The model is Spark Streaming's *discretized stream*: every batch interval
//! each source hands over what arrived as one Arrow [`RecordBatch`]; each
//! query's operators turn it into an output batch; an output operation sends
//! that somewhere. See [`time`] for batch times, [`source`] for inputs,
//! [`dstream`] for the API and [`engine`] for how batches are scheduled.
//!
//! ```no_run
//! # async fn demo() -> brooklet_engine::Result<()> {
//! use std::time::Duration;
//! use brooklet_engine::{DStream, Engine};
//! use datafusion::prelude::{col, lit};
//!
//! let engine = Engine::new(Duration::from_secs(1))?;
//! engine.create_source("lines", None, [
//!     ("connector".to_string(), "socket".to_string()),
//!     ("port".to_string(), "7777".to_string()),
//! ].into())?;
//! let errors = DStream::source(&engine, "lines")?.filter(col("line").like(lit("%error%")))?;
//! errors.print(10)?;
//! engine.start()?;
//! engine.await_termination().await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod checkpoint;
pub mod connector;
pub mod crash;
pub mod dstream;
mod durable;
pub mod engine;
pub mod error;
pub mod explain;
pub mod format;
mod graph;
mod kafka;
pub mod key_groups;
pub mod malformed;
pub mod metrics;
pub mod notice;
mod operator;
pub mod operators;
mod plan;
mod polled;
pub mod query;
mod runtime;
pub mod sink;
pub mod source;
pub mod stack;
pub mod status;
pub mod storage;
mod stream;
mod sync;
pub mod table;
#[cfg(test)]
mod test_random;
pub mod time;
pub mod trigger;
pub mod watermark;

pub use arrow::array::RecordBatch;
pub use arrow::datatypes::SchemaRef;
pub use dstream::DStream;
pub use engine::{Engine, EngineBuilder, SinkInfo, SourceInfo};
pub use error::{CallbackError, Error, ErrorKind, Result};
pub use metrics::{BatchInfo, SourceMetricsSnapshot};
pub use notice::Notices;
pub use operators::event_window::{Assigner, EventWindow, IS_FINAL, WindowEmit};
pub use operators::join::{IntervalBounds, JoinCondition};
pub use operators::running::{EmitMode, RunningSpec};
pub use operators::window::WindowSpec;
/// The operators' modules, where their semantics are written down.
pub use operators::{event_window, join, running, window};
pub use plan::StreamTable;
pub use query::{QueryHandle, QueryStatus, StopMode, StreamingListener};
pub use storage::{Dir, StorageHealth, storage_health};
pub use stream::BatchStream;
pub use table::TableInfo;
pub use time::{BatchTime, Clock, ManualClock, SystemClock};
pub use trigger::Trigger;
pub use watermark::Watermark;

/// Re-exported so that embedders use the same DataFusion and arrow.
pub use datafusion;
