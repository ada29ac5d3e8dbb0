//! What every sink is: the [`Sink`] trait (a declared output) and the
//! [`SinkWriter`] it opens for each query that writes to it. The
//! connectors in `sink/` implement these; the scheduler writes through
//! them.

use std::fmt::Debug;

use arrow::array::RecordBatch;

use crate::error::Result;
use crate::time::BatchTime;

/// A declared output.
pub trait Sink: Send + Sync + Debug {
    /// The connector's name.
    fn connector(&self) -> &'static str;
    /// A one-line description of where it writes
    /// ([`SinkInfo::description`](crate::SinkInfo::description)).
    fn describe(&self) -> String;
    /// A writer for the query named `query`.
    fn open(&self, query: &str) -> Result<Box<dyn SinkWriter>>;
}

/// Writes one query's batches.
pub trait SinkWriter: Send {
    /// Writes the output of batch `time`.
    fn write(&mut self, time: BatchTime, batch: &RecordBatch) -> Result<()>;
}
