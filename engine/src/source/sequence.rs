//! The `sequence` source: a generator of rows `(id Int64, ts Timestamp)` at
//! `rows.per.second` (default 10), for demos, tests and benchmarks.
//!
//! Rows are a function of time, not of when the engine happens to run: row
//! `id` (from 0) has `ts = start + (id + 1) / rate` seconds, where `start` is
//! the batch time before the reader's first batch, and each batch takes the
//! rows with `ts` after the previous batch's time and up to its own. With
//! `rows = N` the input ends after N rows. Columns may be declared as any
//! subset of `id` and `ts` (in any order, with any integer or timestamp type).
//!
//! A batch takes at most `max.records.per.batch` rows (default
//! [`DEFAULT_MAX_ROWS_PER_BATCH`]): at a rate the engine cannot keep up
//! with, the generator falls behind (the rest follow in later batches, with
//! the same ids and times) instead of building one batch without bound; the
//! first time it cuts a batch, a notice says so.

use std::any::Any;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::connector::Options;
use crate::error::{Error, Result};
use crate::source::api::{Source, SourceBatch, SourceContext, SourceReader};
use crate::time::BatchTime;

/// The most rows a `sequence` batch takes unless `max.records.per.batch`
/// says otherwise.
pub const DEFAULT_MAX_ROWS_PER_BATCH: u64 = 1_000_000;

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
    max_per_batch: u64,
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
                    "the sequence connector generates `id` (an integer) and `ts` (a timestamp); column `{} {}` is neither",
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
            max_per_batch: DEFAULT_MAX_ROWS_PER_BATCH,
        })
    }

    /// At most `rows` rows per batch (at least 1).
    pub fn with_max_rows_per_batch(self, rows: u64) -> Self {
        SequenceSource {
            max_per_batch: rows.max(1),
            ..self
        }
    }

    pub(crate) fn from_options(schema: SchemaRef, options: &mut Options) -> Result<Self> {
        let rate = options
            .take_parsed(
                &["rows.per.second", "rows-per-second"],
                "a whole number of rows",
            )?
            .unwrap_or(10);
        let rows = options.take_parsed(&["rows", "number-of-rows"], "a whole number of rows")?;
        let max = options
            .take_parsed::<u64>(&["max.records.per.batch"], "a number of records")?
            .unwrap_or(DEFAULT_MAX_ROWS_PER_BATCH);
        if max == 0 {
            return Err(Error::Config(
                "option 'max.records.per.batch' must be at least 1".into(),
            ));
        }
        Ok(SequenceSource::new(schema, rate, rows)?.with_max_rows_per_batch(max))
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
        let cut = Some((ctx.name.clone(), ctx.notices.clone()));
        Ok(Box::new(SequenceReader {
            schema: self.schema.clone(),
            rate: self.rows_per_second,
            limit: self.rows,
            start: ctx.start,
            next_id: 0,
            metrics: ctx.metrics,
            max_per_batch: self.max_per_batch,
            cut,
        }))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn available_now(&self) -> std::result::Result<(), String> {
        match self.rows {
            Some(_) => Ok(()),
            None => Err("it generates rows forever; give it rows = N".into()),
        }
    }
}

struct SequenceReader {
    schema: SchemaRef,
    rate: u64,
    limit: Option<u64>,
    start: BatchTime,
    next_id: u64,
    metrics: Arc<crate::metrics::SourceMetrics>,
    max_per_batch: u64,
    /// Where the notice of the first cut batch goes, until it is given.
    cut: Option<(String, crate::notice::Notices)>,
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
        if end - first > self.max_per_batch {
            if let Some((name, notices)) = self.cut.take() {
                notices.send(format!(
                    "source '{name}': batch {time} would take {} rows; it takes {} \
                     (max.records.per.batch) and the rest follow in later batches, \
                     so the source falls behind its rows.per.second",
                    end - first,
                    self.max_per_batch
                ));
            }
            end = first + self.max_per_batch;
        }
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::notice::Notices;

    #[test]
    fn a_batch_takes_at_most_its_cap_and_the_rest_follows_in_order() {
        let said = Arc::new(Mutex::new(Vec::new()));
        let notices = {
            let said = Arc::clone(&said);
            Notices::new(move |m: &str| said.lock().unwrap().push(m.to_string()))
        };
        let source = SequenceSource::new(default_schema(), 1_000_000_000, None)
            .unwrap()
            .with_max_rows_per_batch(1_000);
        let mut reader = source
            .open(SourceContext {
                name: "s".into(),
                start: BatchTime::from_millis(0),
                interval: Duration::from_secs(1),
                metrics: Arc::default(),
                notices,
                checkpoint_dir: None,
                decode_tasks: 1,
                available_now: false,
            })
            .unwrap();
        let ids = |batch: &RecordBatch| -> Vec<i64> {
            let ids = batch.column(0).as_any().downcast_ref::<Int64Array>();
            ids.unwrap().values().to_vec()
        };
        let first = reader.next_batch(BatchTime::from_millis(1_000)).unwrap();
        let second = reader.next_batch(BatchTime::from_millis(2_000)).unwrap();
        assert_eq!(ids(&first.batch), (0..1_000).collect::<Vec<_>>());
        assert_eq!(ids(&second.batch), (1_000..2_000).collect::<Vec<_>>());
        let said = said.lock().unwrap();
        assert_eq!(said.len(), 1, "one notice: {said:?}");
        assert!(said[0].contains("max.records.per.batch"), "{said:?}");
    }
}
