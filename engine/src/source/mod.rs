//! Sources: where batches come from.
//!
//! A [`Source`] is a declared input with a schema. When a query that reads it
//! starts, the engine opens it once and shares the resulting
//! [`SourceReader`] among all queries reading that source; at every batch
//! time the scheduler asks the reader for the batch (what arrived after the
//! previous batch and up to this time).
//!
//! Receiving sources (socket, stdin) run a *receiver*: a task that reads,
//! decodes with the source's [`Format`](crate::format::Format) and pushes
//! batches into a **bounded** channel; when the channel is full the receiver
//! stops reading, so TCP pushes back on the sender. Generating sources
//! (sequence, memory) produce a batch as a function of the batch time.

mod files;
mod memory;
pub mod nexmark;
mod receiver;
mod receiver_log;
mod sequence;
mod socket;
mod stdin;

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

pub use files::FilesSource;
pub use memory::MemorySource;
pub use nexmark::NexmarkSource;
pub(crate) use receiver::MALFORMED_PREFIX;
pub use sequence::SequenceSource;
pub use socket::SocketSource;
pub use stdin::StdinSource;

use crate::connector::Options;
use crate::error::Result;
use crate::metrics::SourceMetrics;
use crate::notice::Notices;
use crate::time::BatchTime;

/// A declared input stream.
pub trait Source: Send + Sync + Debug + Any {
    /// The rows' schema.
    fn schema(&self) -> SchemaRef;
    /// The connector's name (`socket`, `stdin`, …).
    fn connector(&self) -> &'static str;
    /// A one-line description of where it reads from, for `\d`.
    fn describe(&self) -> String;
    /// Starts reading. Called once per activation; the reader is dropped
    /// (and its receiver stopped) when no running query reads the source.
    fn open(&self, ctx: SourceContext) -> Result<Box<dyn SourceReader>>;
    /// For downcasting to the concrete source (`MemorySource`).
    fn as_any(&self) -> &dyn Any;
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
    pub checkpoint_dir: Option<std::path::PathBuf>,
}

/// Hands out one batch per batch time.
pub trait SourceReader: Send {
    /// The batch for `time`: what arrived after the previous batch, up to
    /// `time`. An error fails every query reading the source.
    fn next_batch(&mut self, time: BatchTime) -> Result<SourceBatch>;

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

/// The schema a source has when its statement declares no columns.
pub(crate) fn default_schema(connector: &str) -> SchemaRef {
    match connector {
        "sequence" => sequence::default_schema(),
        _ => Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, true)])),
    }
}

/// The source connectors, with what each takes (for help texts and errors).
pub const CONNECTORS: &[(&str, &str)] = &[
    ("socket", "hostname, port, format"),
    ("stdin", "format"),
    ("files", "path, format, files.existing"),
    ("sequence", "rows.per.second, rows, max.records.per.batch"),
    ("nexmark", "table, events.per.second, events, seed"),
    ("memory", "format; fed from Rust"),
];

/// Builds the source a `CREATE SOURCE` statement declares.
pub(crate) fn create(
    name: &str,
    schema: Option<SchemaRef>,
    options: BTreeMap<String, String>,
) -> Result<Arc<dyn Source>> {
    let mut options = Options::new("source", name, options)?;
    let connector = options.connector().to_string();
    let declared = schema.clone();
    let schema = schema.unwrap_or_else(|| default_schema(&connector));
    let source: Arc<dyn Source> = match connector.as_str() {
        "socket" => Arc::new(SocketSource::from_options(name, schema, &mut options)?),
        "stdin" => Arc::new(StdinSource::from_options(name, schema, &mut options)?),
        "sequence" => Arc::new(SequenceSource::from_options(schema, &mut options)?),
        "memory" => Arc::new(MemorySource::from_options(name, schema, &mut options)?),
        "files" | "file" | "filesystem" => {
            Arc::new(FilesSource::from_options(name, schema, &mut options)?)
        }
        "nexmark" => Arc::new(NexmarkSource::from_options(declared, &mut options)?),
        other => {
            return Err(crate::Error::Config(format!(
                "unknown connector '{other}' for source '{name}'; valid connectors: {}",
                crate::connector::connector_names(CONNECTORS)
            )));
        }
    };
    options.finish()?;
    Ok(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry that help texts list is the set `create` accepts.
    #[test]
    fn every_listed_connector_is_known() {
        for (connector, _) in CONNECTORS {
            let options = [("connector".to_string(), connector.to_string())].into();
            if let Err(e) = create("s", None, options) {
                assert!(!e.to_string().contains("unknown connector"), "{e}");
            }
        }
        let options = [("connector".to_string(), "nope".to_string())].into();
        let e = create("s", None, options).unwrap_err().to_string();
        for (connector, _) in CONNECTORS {
            assert!(e.contains(connector), "{e}");
        }
    }
}
