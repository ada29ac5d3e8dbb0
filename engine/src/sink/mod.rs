//! Sinks: where a query's batches go. A sink is declared by name with its
//! connector options, and queries write to it; it is opened once per query
//! that writes to it, and its writer is called once per batch time that has
//! output, empty batches included.
//!
//! What a sink is is in `api.rs`, how rows become bytes in `row_format.rs`
//! (both re-exported here); each connector has a file of its own. This file
//! declares them and holds their registry: [`CONNECTORS`] and `create`,
//! which builds a sink from its options.

mod api;
pub mod console;
mod csv_text;
pub mod files;
pub mod kafka;
mod row_format;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use api::{Sink, SinkWriter};
pub use console::{ConsoleControl, ConsoleFormat, ConsoleOptions, ConsoleSink};
pub use files::FilesSink;
pub use kafka::{Delivery, KafkaSink};
pub use row_format::RowFormat;

use crate::connector::Options;
use crate::error::{Error, Result};

/// The sink connectors, with what each takes (for help texts and errors).
pub const CONNECTORS: &[(&str, &str)] = &[
    ("console", "format = 'table' | 'csv' | 'json'"),
    (
        "files",
        "path (a directory or s3://bucket/prefix/), format = 'csv' | 'json' | 'parquet', endpoint, allow_http, region, s3.*",
    ),
    (
        "kafka",
        "bootstrap.servers, topic, format = 'json' | 'csv', key, delivery = 'exactly-once' | 'at-least-once', transactional.id, timeout, properties.*",
    ),
];

/// Builds the sink `name` from its options: the `connector` option picks
/// the connector, which takes the options it knows; any other is an error.
pub(crate) fn create(
    name: &str,
    options: BTreeMap<String, String>,
    console: &ConsoleOptions,
    storage: &crate::storage::StorageOptions,
) -> Result<Arc<dyn Sink>> {
    let mut options = Options::new("sink", name, options)?.with_storage_defaults(storage);
    let sink: Arc<dyn Sink> = match options.connector() {
        "console" | "stdout" | "print" => {
            Arc::new(ConsoleSink::from_options(&mut options, console)?)
        }
        "files" | "file" | "filesystem" => Arc::new(FilesSink::from_options(&mut options)?),
        "kafka" => Arc::new(KafkaSink::from_options(name, &mut options)?),
        other => {
            return Err(Error::Config(format!(
                "unknown connector '{other}' for sink '{name}'; valid connectors: {}",
                crate::connector::connector_names(CONNECTORS)
            )));
        }
    };
    options.finish()?;
    Ok(sink)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry that help texts list is the set `create` accepts.
    #[test]
    fn every_listed_connector_is_known() {
        for (connector, _) in CONNECTORS {
            let options = [("connector".to_string(), connector.to_string())].into();
            if let Err(e) = create(
                "s",
                options,
                &ConsoleOptions::default(),
                &Default::default(),
            ) {
                assert!(!e.to_string().contains("unknown connector"), "{e}");
            }
        }
    }
}
