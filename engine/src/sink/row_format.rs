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

/// Each row of `batch` in `format`, alone (csv without a header), for
/// sinks that write a record per row.
pub(crate) fn encode_rows(batch: &RecordBatch, format: RowFormat) -> Result<Vec<Vec<u8>>> {
    let encode_all = |batch: &RecordBatch| -> Result<Vec<u8>> {
        Ok(match format {
            RowFormat::Csv => {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(false)
                    .build(Vec::new());
                writer.write(batch)?;
                writer.into_inner()
            }
            RowFormat::Json => encode(batch, RowFormat::Json)?,
        })
    };
    let bytes = encode_all(batch)?;
    let rows: Vec<Vec<u8>> = bytes
        .split(|b| *b == b'\n')
        .take(batch.num_rows())
        .map(<[u8]>::to_vec)
        .collect();
    if rows.len() == batch.num_rows() && bytes.iter().filter(|b| **b == b'\n').count() == rows.len()
    {
        return Ok(rows);
    }
    // A value with a line break (quoted in csv): one row at a time.
    (0..batch.num_rows())
        .map(|row| {
            let mut bytes = encode_all(&batch.slice(row, 1))?;
            if bytes.last() == Some(&b'\n') {
                bytes.pop();
            }
            Ok(bytes)
        })
        .collect()
}
