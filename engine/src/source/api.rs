//! What every source is and hands over: the [`Source`] trait (a declared
//! input with a schema), the [`SourceContext`] it is opened with, the
//! [`SourceReader`] an opened source is, and the [`SourceBatch`] the reader
//! gives at each batch time. The connectors in `source/` implement these;
//! the scheduler reads through them.

use std::any::Any;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::error::Result;
use crate::metrics::SourceMetrics;
use crate::notice::Notices;
use crate::time::BatchTime;

/// The field-metadata key that marks a column filled from the record's
/// metadata rather than its value (SQL: `column TYPE METADATA FROM 'key'`),
/// with the metadata's name as its value. Only connectors that have such
/// metadata (`kafka`) accept these columns.
pub const METADATA_FIELD_KEY: &str = "brooklet.metadata";

/// The metadata a column is filled from, if it is a metadata column.
pub fn metadata_key(field: &arrow::datatypes::Field) -> Option<&str> {
    field.metadata().get(METADATA_FIELD_KEY).map(String::as_str)
}

/// A declared input stream.
pub trait Source: Send + Sync + Debug + Any {
    /// The rows' schema.
    fn schema(&self) -> SchemaRef;
    /// The connector's name (`socket`, `stdin`, …).
    fn connector(&self) -> &'static str;
    /// A one-line description of where it reads from
    /// ([`SourceInfo::description`](crate::SourceInfo::description)).
    fn describe(&self) -> String;
    /// Starts reading. Called once per activation; the reader is dropped
    /// (and its receiver stopped) when no running query reads the source.
    fn open(&self, ctx: SourceContext) -> Result<Box<dyn SourceReader>>;
    /// For downcasting to the concrete source (`MemorySource`).
    fn as_any(&self) -> &dyn Any;
    /// Whether it can run under the available-now trigger: its input ends,
    /// or it stops at what is available when it opens with
    /// [`SourceContext::available_now`]. `Err` says why not.
    fn available_now(&self) -> std::result::Result<(), String> {
        Err("its input has no end".into())
    }
}

/// What a source gets when it is opened.
#[derive(Debug, Clone)]
pub struct SourceContext {
    /// The source's name, for messages.
    pub name: String,
    /// The batch time before the first batch this reader serves.
    pub start: BatchTime,
    /// The batch interval.
    pub interval: Duration,
    /// The source's counters (shared across activations).
    pub metrics: Arc<SourceMetrics>,
    /// Where warnings go.
    pub notices: Notices,
    /// The engine's checkpoint directory, if queries checkpoint (where a
    /// receiver log goes).
    pub checkpoint_dir: Option<crate::storage::Dir>,
    /// Under the available-now trigger ([`crate::Trigger`]): read what is
    /// available now, then end.
    pub available_now: bool,
    /// How many threads may decode one large chunk of records
    /// (`SET parallelism`; see [`crate::format::RecordDecoder::decode`]).
    pub decode_tasks: usize,
}

/// Hands out one batch per batch time.
pub trait SourceReader: Send {
    /// The batch for `time`: what arrived after the previous batch, up to
    /// `time`. An error fails every query reading the source.
    fn next_batch(&mut self, time: BatchTime) -> Result<SourceBatch>;

    /// Under the available-now trigger, before each batch: waits until the
    /// reader has a batch's worth to hand over, or its input has ended (a
    /// receiver: until its buffer is half full). Batches then stay large
    /// instead of taking the few rows that arrived since the last one.
    /// Ready at once by default (readers that hand over what is stored).
    fn ready(
        &mut self,
    ) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>> {
        None
    }

    /// Where the reader is, for a checkpoint (`None`: a source that cannot
    /// resume, such as a socket).
    fn save(&self) -> Option<serde_json::Value> {
        None
    }

    /// Resumes from a position [`SourceReader::save`] gave (`null` when it
    /// gave none).
    fn load(&mut self, _position: &serde_json::Value) -> Result<()> {
        Ok(())
    }

    /// What the last batch took, for the offset log (`None`: a source that
    /// cannot replay).
    fn offsets(&self) -> Option<serde_json::Value> {
        None
    }

    /// The batch of `time` again, with exactly what the offset log says it
    /// took. Only called with offsets this reader gave.
    fn replay(&mut self, time: BatchTime, _offsets: &serde_json::Value) -> Result<SourceBatch> {
        self.next_batch(time)
    }
}

/// One source's contribution to a batch.
#[derive(Debug, Clone)]
pub struct SourceBatch {
    /// The rows.
    pub batch: RecordBatch,
    /// The input has ended: no batch after this one will have rows.
    pub end_of_input: bool,
}
