//! Sinks: where a query's batches go (`CREATE SINK … WITH (connector = …)`
//! and `INSERT INTO sink SELECT …`). A sink is opened once per query that
//! writes to it; its writer is called once per batch time that has output,
//! empty batches included.

pub mod console;
pub mod files;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use arrow::array::RecordBatch;

pub use console::{ConsoleFormat, ConsoleOptions, ConsoleSink};
pub use files::FilesSink;

use crate::connector::Options;
use crate::error::{Error, Result};
use crate::time::BatchTime;

/// A declared output.
pub trait Sink: Send + Sync + Debug {
    /// The connector's name.
    fn connector(&self) -> &'static str;
    /// A one-line description, for `\d`.
    fn describe(&self) -> String;
    /// A writer for one query.
    fn open(&self) -> Result<Box<dyn SinkWriter>>;
}

/// Writes one query's batches.
pub trait SinkWriter: Send {
    /// Writes the output of batch `time`.
    fn write(&mut self, time: BatchTime, batch: &RecordBatch) -> Result<()>;
}

/// The sink connectors, with what each takes (for help texts and errors).
pub const CONNECTORS: &[(&str, &str)] = &[
    ("console", "format = 'table' | 'csv' | 'json'"),
    ("files", "path, format = 'csv' | 'json'"),
];

/// Builds the sink a `CREATE SINK` statement declares.
pub(crate) fn create(
    name: &str,
    options: BTreeMap<String, String>,
    console: &ConsoleOptions,
) -> Result<Arc<dyn Sink>> {
    let mut options = Options::new("sink", name, options)?;
    let sink: Arc<dyn Sink> = match options.connector() {
        "console" | "stdout" | "print" => {
            Arc::new(ConsoleSink::from_options(&mut options, console)?)
        }
        "files" | "file" | "filesystem" => Arc::new(FilesSink::from_options(&mut options)?),
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

/// How rows are written as bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFormat {
    /// CSV with a header line.
    Csv,
    /// One JSON object per line.
    Json,
}

impl RowFormat {
    /// The format with this name (`csv`, `json`).
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "csv" => Ok(RowFormat::Csv),
            "json" | "ndjson" => Ok(RowFormat::Json),
            other => Err(Error::Config(format!(
                "unknown format '{other}'; valid formats: csv, json"
            ))),
        }
    }

    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            RowFormat::Csv => "csv",
            RowFormat::Json => "json",
        }
    }
}

/// `batch`'s rows in `format`.
pub(crate) fn encode(batch: &RecordBatch, format: RowFormat) -> Result<Vec<u8>> {
    Ok(match format {
        RowFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(Vec::new());
            writer.write(batch)?;
            writer.into_inner()
        }
        RowFormat::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
            writer.write(batch)?;
            writer.finish()?;
            writer.into_inner()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry that help texts list is the set `create` accepts.
    #[test]
    fn every_listed_connector_is_known() {
        for (connector, _) in CONNECTORS {
            let options = [("connector".to_string(), connector.to_string())].into();
            if let Err(e) = create("s", options, &ConsoleOptions::default()) {
                assert!(!e.to_string().contains("unknown connector"), "{e}");
            }
        }
    }
}
