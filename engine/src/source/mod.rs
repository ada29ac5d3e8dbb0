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
//!
//! What a source is and hands over is in `api.rs` (re-exported here); each
//! connector has a file of its own. This file declares them and holds their
//! registry: [`CONNECTORS`] and `create`, which builds a source from its
//! options.

mod api;
mod files;
mod kafka;
mod memory;
pub mod nexmark;
mod receiver;
mod receiver_log;
mod sequence;
mod socket;
mod stdin;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

pub use api::{METADATA_FIELD_KEY, Source, SourceBatch, SourceContext, SourceReader, metadata_key};
pub use files::FilesSource;
pub use kafka::{Assignment, KafkaSource, StartAt};
pub use memory::MemorySource;
pub use nexmark::NexmarkSource;
pub use sequence::SequenceSource;
pub use socket::SocketSource;
pub use stdin::StdinSource;

use crate::connector::Options;
use crate::error::{Error, Result};

/// The schema a source has when it is declared without columns.
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
    (
        "files",
        "path (a directory or s3://bucket/prefix/), format (lines, csv, json, parquet), files.existing, endpoint, allow_http, region, s3.*",
    ),
    (
        "kafka",
        "bootstrap.servers, topic, format, start, max.records.per.partition.per.batch, instance | partitions, timeout, properties.*",
    ),
    ("sequence", "rows.per.second, rows, max.records.per.batch"),
    ("nexmark", "table, events.per.second, events, seed"),
    ("memory", "format; fed from Rust"),
];

/// Builds the source `name` from its options: the `connector` option picks
/// the connector, which takes the options it knows; any other is an error.
pub(crate) fn create(
    name: &str,
    schema: Option<SchemaRef>,
    options: BTreeMap<String, String>,
    storage: &crate::storage::StorageOptions,
) -> Result<Arc<dyn Source>> {
    let mut options = Options::new("source", name, options)?.with_storage_defaults(storage);
    let connector = options.connector().to_string();
    let declared = schema.clone();
    let schema = schema.unwrap_or_else(|| default_schema(&connector));
    if connector != "kafka"
        && let Some(field) = schema.fields().iter().find(|f| metadata_key(f).is_some())
    {
        return Err(Error::Config(format!(
            "column '{}' of source '{name}' is a METADATA column; only connector 'kafka' has record metadata",
            field.name()
        )));
    }
    let source: Arc<dyn Source> = match connector.as_str() {
        "socket" => Arc::new(SocketSource::from_options(name, schema, &mut options)?),
        "stdin" => Arc::new(StdinSource::from_options(name, schema, &mut options)?),
        "sequence" => Arc::new(SequenceSource::from_options(schema, &mut options)?),
        "memory" => Arc::new(MemorySource::from_options(name, schema, &mut options)?),
        "files" | "file" | "filesystem" => {
            Arc::new(FilesSource::from_options(name, schema, &mut options)?)
        }
        "nexmark" => Arc::new(NexmarkSource::from_options(declared, &mut options)?),
        "kafka" => Arc::new(KafkaSource::from_options(
            name,
            schema.clone(),
            &mut options,
        )?),
        other => {
            return Err(Error::Config(format!(
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
            if let Err(e) = create("s", None, options, &Default::default()) {
                assert!(!e.to_string().contains("unknown connector"), "{e}");
            }
        }
        let options = [("connector".to_string(), "nope".to_string())].into();
        let e = create("s", None, options, &Default::default())
            .unwrap_err()
            .to_string();
        for (connector, _) in CONNECTORS {
            assert!(e.contains(connector), "{e}");
        }
    }
}
