//! Event time: a source's watermark declaration ([`Watermark`]) and the
//! watermark an event-time operator follows ([`WatermarkTracker`]).
//!
//! Semantics (Structured Streaming's, with Flink's idle sources):
//!
//! - a source's watermark is the largest event time it has delivered minus
//!   its delay, and is advanced at the end of each batch: rows of a batch
//!   are judged against the watermark of the batch before, and windows close
//!   on the watermark after it;
//! - an operator reading several sources follows the minimum of their
//!   watermarks; a source that delivered nothing for the engine's idle
//!   timeout (`watermark.idle.timeout`, off by default as in Flink) stops
//!   holding the others back, until it delivers again;
//! - a source that has ended (bounded input) has a watermark of +∞, so when
//!   every source has ended every open window closes;
//! - the watermark never goes back.
//!
//! Event times are milliseconds since the epoch: a column of any timestamp
//! type (its UTC instant), or an integer (taken as milliseconds).

use std::time::Duration;

use arrow::array::{Array, ArrayRef, RecordBatch, TimestampMillisecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Schema, TimeUnit};

use crate::checkpoint::{StateReader, StateWriter};
use crate::error::{Error, Result};
use crate::polled::Polled;
use crate::time::{BatchTime, format_duration};

/// A source's event-time column and how far out of order its rows may be:
/// its watermark is the largest event time seen minus the delay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermark {
    /// The column holding each row's event time.
    pub column: String,
    /// How far behind the largest event time seen rows may still arrive.
    pub delay: Duration,
}

impl Watermark {
    /// A watermark on `column` with `delay` of allowed disorder.
    pub fn new(column: &str, delay: Duration) -> Self {
        Watermark {
            column: column.to_string(),
            delay,
        }
    }

    /// Checks that `schema` (the source's) has the column, with a type that
    /// holds an event time.
    pub(crate) fn check(&self, source: &str, schema: &Schema) -> Result<()> {
        let field = schema.field_with_name(&self.column).map_err(|_| {
            Error::Plan(format!(
                "source '{source}' has no column {} (columns: {})",
                self.column,
                crate::error::column_names(schema)
            ))
        })?;
        if !is_event_time_type(field.data_type()) {
            return Err(Error::Plan(format!(
                "column {} is {}, which holds no event time (a timestamp does, or an integer \
                 of milliseconds)",
                self.column,
                field.data_type()
            )));
        }
        Ok(())
    }
}

/// Whether a column of `data_type` can hold event times.
pub(crate) fn is_event_time_type(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Timestamp(_, _) | DataType::Int64 | DataType::Int32 | DataType::Date64
    )
}

/// `array`'s values as milliseconds since the epoch (nulls stay null).
/// Finer timestamps are floored (a time just before the epoch stays before
/// it), as window assignment needs.
pub(crate) fn event_millis(array: &ArrayRef) -> Result<TimestampMillisecondArray> {
    use arrow::array::AsArray;
    use arrow::datatypes::{TimestampMicrosecondType, TimestampNanosecondType};
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Nanosecond, _) => Ok(array
            .as_primitive::<TimestampNanosecondType>()
            .unary(|v| v.div_euclid(1_000_000))),
        DataType::Timestamp(TimeUnit::Microsecond, _) => Ok(array
            .as_primitive::<TimestampMicrosecondType>()
            .unary(|v| v.div_euclid(1_000))),
        _ => {
            let millis = cast(array, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
            Ok(millis
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .ok_or_else(|| {
                    Error::Internal("an event time did not cast to milliseconds".into())
                })?
                .clone())
        }
    }
}

/// Event times outside `[-2^52, 2^52)` ms (about 142 000 years either
/// side of 1970) belong to no window and do not move the watermark: window
/// arithmetic never overflows, every window's bounds are timestamps that
/// print (Arrow's formatting ends near year 262 000), and a watermark at or
/// beyond the limit means only the end of input.
pub(crate) const TIME_LIMIT: i64 = 1 << 52;

/// Whether `t` is an event time windows take.
pub(crate) fn in_time_range(t: i64) -> bool {
    (-TIME_LIMIT..TIME_LIMIT).contains(&t)
}

/// The largest event time in `column` of `batch`, if it has any (nulls and
/// times out of range left out).
fn max_event_time(batch: &RecordBatch, column: &str) -> Result<Option<i64>> {
    let Some(array) = batch.column_by_name(column) else {
        return Err(Error::Internal(format!(
            "the watermark column '{column}' is missing from a batch"
        )));
    };
    let times = event_millis(array)?;
    Ok(match arrow::compute::max(&times) {
        Some(max) if in_time_range(max) => Some(max),
        Some(_) => times.iter().flatten().filter(|&t| in_time_range(t)).max(),
        None => None,
    })
}

/// Watermark "not yet": before any row, nothing is late and nothing closes.
pub(crate) const NO_WATERMARK: i64 = i64::MIN;
/// Watermark at end of input: everything closes.
pub(crate) const END_OF_TIME: i64 = i64::MAX;

/// What one source contributes to a watermark.
#[derive(Debug)]
struct SourceClock {
    name: String,
    watermark: Watermark,
    max_event: Option<i64>,
    last_rows: BatchTime,
    ended: bool,
}

impl SourceClock {
    /// Its own watermark, while it has not ended.
    fn watermark(&self) -> i64 {
        self.max_event.map_or(NO_WATERMARK, |max| {
            max.saturating_sub(self.watermark.delay.as_millis() as i64)
        })
    }
}

/// The watermark before and after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WatermarkStep {
    /// What rows of the batch are judged against.
    pub(crate) before: i64,
    /// What windows close on at the end of the batch.
    pub(crate) after: i64,
}

/// The watermark of an operator reading some sources.
#[derive(Debug)]
pub(crate) struct WatermarkTracker {
    sources: Vec<SourceClock>,
    idle_timeout: Option<Duration>,
    current: i64,
}

impl WatermarkTracker {
    /// A tracker over `sources` (name and watermark), from batch time `start`.
    pub(crate) fn new(
        sources: Vec<(String, Watermark)>,
        idle_timeout: Option<Duration>,
        start: BatchTime,
    ) -> Self {
        WatermarkTracker {
            sources: sources
                .into_iter()
                .map(|(name, watermark)| SourceClock {
                    name,
                    watermark,
                    max_event: None,
                    last_rows: start,
                    ended: false,
                })
                .collect(),
            idle_timeout,
            current: NO_WATERMARK,
        }
    }

    /// The names of the sources it follows.
    pub(crate) fn source_names(&self) -> Vec<&str> {
        self.sources.iter().map(|s| s.name.as_str()).collect()
    }

    /// The watermark now.
    pub(crate) fn current(&self) -> i64 {
        self.current
    }

    /// Saves each source's progress and the watermark, under names that
    /// start with `prefix` (an operator with two clocks saves both).
    pub(crate) fn save(&self, state: &mut StateWriter, prefix: &str) {
        use serde_json::json;
        state.value(&format!("{prefix}watermark"), json!(self.current));
        for source in &self.sources {
            state.value(
                &format!("{prefix}source.{}", source.name),
                json!([source.max_event, source.last_rows.millis(), source.ended]),
            );
        }
    }

    /// Restores what [`WatermarkTracker::save`] saved, for a new run: its
    /// sources have not ended (they end again when their input does). A
    /// run that had reached the end of its input saved the watermark +∞;
    /// the next run, which reads new input (a backfill, then the same query
    /// on the clock), starts from the watermark its sources' rows gave
    /// instead, or every new row would be late. Its windows were emitted
    /// at that end; a new row of one of them makes it emit again.
    pub(crate) fn load(&mut self, state: &StateReader, prefix: &str) -> Result<()> {
        self.current = state.i64(&format!("{prefix}watermark"))?;
        for source in &mut self.sources {
            let saved = state.value(&format!("{prefix}source.{}", source.name))?;
            source.max_event = saved[0].as_i64();
            source.last_rows = BatchTime::from_millis(saved[1].as_i64().unwrap_or(0));
            source.ended = false;
        }
        if self.current == END_OF_TIME {
            self.current = self
                .sources
                .iter()
                .map(SourceClock::watermark)
                .min()
                .unwrap_or(NO_WATERMARK);
        }
        Ok(())
    }

    /// Folds in the sources' batches of `time`; returns the watermark
    /// before and after them.
    pub(crate) fn advance(&mut self, time: BatchTime, polled: &Polled) -> Result<WatermarkStep> {
        let before = self.current;
        for source in &mut self.sources {
            let Some(Ok(batch)) = polled.get(&source.name) else {
                continue;
            };
            if batch.batch.num_rows() > 0 {
                source.last_rows = time;
                let largest = polled.largest_event_time(
                    &source.name,
                    &source.watermark.column,
                    max_event_time,
                )?;
                if let Some(max) = largest {
                    source.max_event = Some(source.max_event.map_or(max, |m| m.max(max)));
                }
            }
            source.ended |= batch.end_of_input;
        }
        let idle = |s: &SourceClock| {
            self.idle_timeout
                .is_some_and(|t| time.millis() - s.last_rows.millis() >= t.as_millis() as i64)
        };
        // Sources that ended no longer hold anything back; idle ones neither.
        // When every source has ended, everything closes; when every one
        // left is idle, the watermark stays.
        let live: Vec<&SourceClock> = self.sources.iter().filter(|s| !s.ended).collect();
        if live.is_empty() {
            self.current = END_OF_TIME;
        } else if let Some(min) = live
            .iter()
            .filter(|s| !idle(s))
            .map(|s| s.watermark())
            .min()
        {
            self.current = self.current.max(min);
        }
        Ok(WatermarkStep {
            before,
            after: self.current,
        })
    }
}

/// How a watermark reads in messages.
pub(crate) fn format_watermark(millis: i64) -> String {
    match millis {
        NO_WATERMARK => "none yet".into(),
        END_OF_TIME => "end of input".into(),
        m => format!("{m} ms"),
    }
}

/// How late a row was, for the warning.
pub(crate) fn format_lateness(millis: i64) -> String {
    format_duration(Duration::from_millis(millis.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceBatch;
    use arrow::array::Int64Array;
    use arrow::datatypes::Field;
    use std::sync::Arc;

    fn polled(name: &str, times: &[i64], end: bool) -> Polled {
        let schema = Arc::new(Schema::new(vec![Field::new("ts", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(times.to_vec()))]).unwrap();
        [(
            name.to_string(),
            Ok(SourceBatch {
                batch,
                end_of_input: end,
            }),
        )]
        .into_iter()
        .collect()
    }

    #[test]
    fn minimum_of_sources_idle_ones_excluded_and_never_back() {
        let wm = |s: &str| {
            (
                s.to_string(),
                Watermark::new("ts", Duration::from_millis(100)),
            )
        };
        let mut tracker = WatermarkTracker::new(
            vec![wm("a"), wm("b")],
            Some(Duration::from_secs(3)),
            BatchTime::from_millis(0),
        );
        let t = BatchTime::from_millis;
        let step = tracker
            .advance(t(1000), &polled("a", &[500, 900], false))
            .unwrap();
        // b has no rows yet: it holds the watermark back.
        assert_eq!((step.before, step.after), (NO_WATERMARK, NO_WATERMARK));
        let step = tracker
            .advance(t(2000), &polled("b", &[300], false))
            .unwrap();
        assert_eq!(step.after, 200);
        // b idle since 2000: at 5000 it no longer holds a back.
        tracker
            .advance(t(4000), &polled("a", &[2000], false))
            .unwrap();
        assert_eq!(tracker.current(), 200);
        let step = tracker
            .advance(t(5000), &polled("a", &[2500], false))
            .unwrap();
        assert_eq!(step.after, 2400);
        // b comes back with old rows: the watermark does not go back.
        let step = tracker
            .advance(t(6000), &polled("b", &[1000], false))
            .unwrap();
        assert_eq!(step.after, 2400);
        let step = tracker.advance(t(7000), &polled("b", &[], true)).unwrap();
        assert_eq!(step.after, 2400, "a still holds it");
        let step = tracker.advance(t(8000), &polled("a", &[], true)).unwrap();
        assert_eq!(step.after, END_OF_TIME);
    }

    #[test]
    fn an_ended_source_and_an_idle_one_do_not_close_everything() {
        let wm = |s: &str| (s.to_string(), Watermark::new("ts", Duration::ZERO));
        let mut tracker = WatermarkTracker::new(
            vec![wm("a"), wm("b")],
            Some(Duration::from_secs(2)),
            BatchTime::from_millis(0),
        );
        let t = BatchTime::from_millis;
        tracker
            .advance(t(1000), &polled("a", &[100], false))
            .unwrap();
        tracker
            .advance(t(1000), &polled("b", &[500], false))
            .unwrap();
        assert_eq!(tracker.current(), 100);
        let step = tracker.advance(t(2000), &polled("a", &[], true)).unwrap();
        assert_eq!(step.after, 500, "a ended: b alone");
        // b idle: the watermark stays, it does not jump to the end.
        let step = tracker.advance(t(5000), &polled("b", &[], false)).unwrap();
        assert_eq!(step.after, 500);
        let step = tracker.advance(t(6000), &polled("b", &[], true)).unwrap();
        assert_eq!(step.after, END_OF_TIME);
    }

    #[test]
    fn times_before_the_epoch_are_floored_to_milliseconds() {
        use arrow::array::TimestampNanosecondArray;
        let nanos: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![-500_000, 1_500_000]));
        let millis = event_millis(&nanos).unwrap();
        assert_eq!(millis.values().to_vec(), vec![-1, 1]);
    }
}
