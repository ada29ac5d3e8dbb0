//! The `sequence` source: a generator of rows `(id BIGINT, ts TIMESTAMP)` at
//! `rows.per.second` (default 10), for demos, tests and benchmarks.
//!
//! Rows are a function of time, not of when the engine happens to run: row
//! `id` (from 0) has `ts = start + (id + 1) / rate` seconds, where `start` is
//! the batch time before the reader's first batch, and each batch takes the
//! rows with `ts` after the previous batch's time and up to its own. With
//! `rows = N` the input ends after N rows. Columns may be declared as any
//! subset of `id` and `ts` (in any order, with any integer or timestamp type).

use std::any::Any;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::connector::Options;
use crate::error::{Error, Result};
use crate::source::{Source, SourceBatch, SourceContext, SourceReader};
use crate::time::BatchTime;

/// The schema of a `sequence` source declared without columns.
pub(crate) fn default_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
    ]))
}

/// Generates rows at a fixed rate of (batch) time.
#[derive(Debug)]
pub struct SequenceSource {
    schema: SchemaRef,
    rows_per_second: u64,
    rows: Option<u64>,
}

impl SequenceSource {
    /// A generator of `rows_per_second`, ending after `rows` rows if given.
    pub fn new(schema: SchemaRef, rows_per_second: u64, rows: Option<u64>) -> Result<Self> {
        for field in schema.fields() {
            let fits = match field.name().as_str() {
                "id" => field.data_type().is_integer(),
                "ts" => matches!(field.data_type(), DataType::Timestamp(_, _)),
                _ => false,
            };
            if !fits {
                return Err(Error::Config(format!(
                    "the sequence connector generates `id BIGINT` and `ts TIMESTAMP`; column `{} {}` is neither",
                    field.name(),
                    field.data_type()
                )));
            }
        }
        if rows_per_second == 0 {
            return Err(Error::Config(
                "option 'rows.per.second' must be at least 1".into(),
            ));
        }
        Ok(SequenceSource {
            schema,
            rows_per_second,
            rows,
        })
    }

    pub(crate) fn from_options(schema: SchemaRef, options: &mut Options) -> Result<Self> {
        let rate = options
            .take_parsed(
                &["rows.per.second", "rows-per-second"],
                "a whole number of rows",
            )?
            .unwrap_or(10);
        let rows = options.take_parsed(&["rows", "number-of-rows"], "a whole number of rows")?;
        SequenceSource::new(schema, rate, rows)
    }
}

impl Source for SequenceSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn connector(&self) -> &'static str {
        "sequence"
    }

    fn describe(&self) -> String {
        match self.rows {
            Some(n) => format!("{} rows per second, {n} rows", self.rows_per_second),
            None => format!("{} rows per second", self.rows_per_second),
        }
    }

    fn open(&self, ctx: SourceContext) -> Result<Box<dyn SourceReader>> {
        Ok(Box::new(SequenceReader {
            schema: self.schema.clone(),
            rate: self.rows_per_second,
            limit: self.rows,
            start: ctx.start,
            next_id: 0,
            metrics: ctx.metrics,
        }))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct SequenceReader {
    schema: SchemaRef,
    rate: u64,
    limit: Option<u64>,
    start: BatchTime,
    next_id: u64,
    metrics: Arc<crate::metrics::SourceMetrics>,
}

impl SequenceReader {
    /// The time of row `id`, in milliseconds after `start`.
    fn offset_millis(&self, id: u64) -> i64 {
        ((id as u128 + 1) * 1000 / self.rate as u128) as i64
    }
}

impl SourceReader for SequenceReader {
    fn next_batch(&mut self, time: BatchTime) -> Result<SourceBatch> {
        let elapsed = (time.millis() - self.start.millis()).max(0) as u128;
        // Rows with (id + 1) * 1000 / rate <= elapsed, i.e. id < elapsed * rate / 1000.
        let mut end = (elapsed * self.rate as u128 / 1000) as u64;
        while end > 0 && self.offset_millis(end - 1) > elapsed as i64 {
            end -= 1;
        }
        if let Some(limit) = self.limit {
            end = end.min(limit);
        }
        let first = self.next_id.min(end);
        let ids: Vec<i64> = (first..end).map(|id| id as i64).collect();
        let times: Vec<i64> = (first..end)
            .map(|id| self.start.millis() + self.offset_millis(id))
            .collect();
        self.next_id = end;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for field in self.schema.fields() {
            let column: ArrayRef = match field.name().as_str() {
                "id" => Arc::new(Int64Array::from(ids.clone())),
                _ => Arc::new(TimestampMillisecondArray::from(times.clone())),
            };
            columns.push(arrow::compute::cast(&column, field.data_type())?);
        }
        self.metrics.add_records(ids.len() as u64);
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        let end_of_input = self.limit.is_some_and(|limit| self.next_id >= limit);
        Ok(SourceBatch {
            batch,
            end_of_input,
        })
    }
}
