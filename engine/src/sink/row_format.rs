//! How a sink's rows are written as bytes: [`RowFormat`] (`csv`, `json`)
//! and the encoder the `console` and `files` sinks share.

use arrow::array::RecordBatch;

use crate::error::{Error, Result};
use crate::sink::csv_text::write_csv;

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

/// `batch`'s rows in `format` (csv with a header line).
pub(crate) fn encode(batch: &RecordBatch, format: RowFormat) -> Result<Vec<u8>> {
    encode_with_header(batch, format, true)
}

fn encode_with_header(batch: &RecordBatch, format: RowFormat, header: bool) -> Result<Vec<u8>> {
    Ok(match format {
        RowFormat::Csv => {
            let mut out = Vec::new();
            write_csv(batch, header, &mut out)?;
            out
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
    let bytes = encode_with_header(batch, format, false)?;
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
            let mut bytes = encode_with_header(&batch.slice(row, 1), format, false)?;
            if bytes.last() == Some(&b'\n') {
                bytes.pop();
            }
            Ok(bytes)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(vec!["x", "y\nz"])),
                Arc::new(Int64Array::from(vec![1, 2])),
            ],
        )
        .unwrap()
    }

    fn text(rows: Vec<Vec<u8>>) -> Vec<String> {
        rows.into_iter()
            .map(|r| String::from_utf8(r).unwrap())
            .collect()
    }

    /// One record per row, even when a csv value holds a line break.
    #[test]
    fn each_row_is_encoded_alone() {
        let csv = text(encode_rows(&batch(), RowFormat::Csv).unwrap());
        assert_eq!(csv, ["x,1", "\"y\nz\",2"]);
        let json = text(encode_rows(&batch(), RowFormat::Json).unwrap());
        assert_eq!(json, [r#"{"a":"x","n":1}"#, r#"{"a":"y\nz","n":2}"#]);
    }
}
