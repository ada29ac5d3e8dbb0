//! Parquet files as a whole: decoded into a source's declared columns
//! (taken by name, cast to the declared types), and a batch encoded as one
//! file for the files sink. Parquet is columnar and self-describing, so
//! there are no records to count as malformed: a file reads or it does
//! not — a value that does not cast to its declared type fails the file
//! (it never becomes a NULL), and the file meets the source's error
//! policy as one record.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchReader, new_null_array};
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};

/// The rows of the Parquet file `bytes` as `schema`'s columns: each taken
/// by name (a missing nullable column is all nulls) and cast to its
/// declared type. The error says why the file cannot be read.
pub(crate) fn decode(bytes: Bytes, schema: &SchemaRef) -> std::result::Result<RecordBatch, String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|builder| builder.build())
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let file_schema = reader.schema();
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("a damaged Parquet file: {e}"))?;
    let whole =
        arrow::compute::concat_batches(&file_schema, &batches).map_err(|e| e.to_string())?;
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = match file_schema.index_of(field.name()) {
            // Strict: a value that does not cast fails the file, never
            // becomes a NULL.
            Ok(i) => arrow::compute::cast_with_options(
                whole.column(i),
                field.data_type(),
                &arrow::compute::CastOptions {
                    safe: false,
                    ..Default::default()
                },
            )
            .map_err(|e| {
                format!(
                    "its column '{}' ({}) cannot be read as {}: {e}",
                    field.name(),
                    file_schema.field(i).data_type(),
                    field.data_type()
                )
            })?,
            Err(_) if field.is_nullable() => new_null_array(field.data_type(), whole.num_rows()),
            Err(_) => {
                return Err(format!(
                    "it has no column '{}' (it has {})",
                    field.name(),
                    crate::error::column_names(&file_schema)
                ));
            }
        };
        columns.push(column);
    }
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| e.to_string())
}

/// `batch` as one Parquet file. The same batch gives the same bytes, so a
/// batch that runs again rewrites its file identically.
pub(crate) fn encode(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), None)
        .map_err(|e| Error::Internal(format!("cannot start a Parquet file: {e}")))?;
    writer
        .write(batch)
        .and_then(|()| writer.close().map(|_| ()))
        .map_err(|e| Error::Internal(format!("cannot write a Parquet file: {e}")))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn a_file_round_trips_into_declared_columns_by_name() {
        let written = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("n", DataType::Int32, false),
                Field::new("s", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(Int32Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a"), None])),
            ],
        )
        .unwrap();
        let bytes = Bytes::from(encode(&written).unwrap());
        assert_eq!(encode(&written).unwrap(), bytes.as_ref(), "deterministic");
        let declared = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
            Field::new("missing", DataType::Utf8, true),
        ]));
        let read = decode(bytes.clone(), &declared).unwrap();
        assert_eq!(
            read.column(1)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values(),
            &[1, 2]
        );
        assert_eq!(read.column(2).null_count(), 2);
        let strict = Arc::new(Schema::new(vec![Field::new("x", DataType::Utf8, false)]));
        assert!(
            decode(bytes, &strict)
                .unwrap_err()
                .contains("no column 'x'")
        );
        assert!(decode(Bytes::from_static(b"not parquet"), &strict).is_err());
    }
}
