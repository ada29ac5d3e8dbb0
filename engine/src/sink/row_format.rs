//! How a sink's rows are written as bytes: [`RowFormat`] (`csv`, `json`)
//! and the encoder the `console` and `files` sinks share.

use arrow::array::RecordBatch;

use crate::error::{Error, Result};

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
