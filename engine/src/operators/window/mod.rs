//! Processing-time windows (DStream `window`, `reduceByKeyAndWindow`,
//! `countByWindow`): their length and slide ([`WindowSpec`]) with the rules
//! they obey, and what both window operators share. The aggregate folding
//! partial aggregates is in `aggregate.rs`, DStream `window()` over raw rows
//! in `raw.rs`.
//!
//! With batch interval `I`, window length `L` and slide `S` (both multiples
//! of `I`, `L` a multiple of `S`), a window is emitted at each batch time `t`
//! with `t − zero` a multiple of `S`; it covers the batches with times in
//! `(t − L, t]` that come after `zero`. The first windows after the start
//! are therefore partial, as in Spark. `zero` is the batch time before the
//! query's first batch rounded down to a multiple of `S` — Spark's rule
//! with windows aligned to the epoch, as Flink's processing-time windows
//! are: windows end at the same times whenever the query started, so two
//! runs (or a run and its restart) cut the same windows. Each output row carries `window_start = t − L` and
//! `window_end = t`. At other batch times the operator emits nothing.
//!
//! The stream is cut into panes of `P = gcd(L, S)`: pane `k ≥ 1` holds the
//! batches with times in `(zero + (k−1)·P, zero + k·P]`. Each batch's rows
//! are folded into the accumulators of its pane (DataFusion's
//! `GroupsAccumulator::update_batch`); a closed pane keeps only their
//! partial states (`state()`), and a window's result merges partial states
//! (`merge_batch`, then `evaluate`). Raw rows are never kept, and a pane is
//! dropped as soon as no later window needs it, so the state is sized by
//! keys × live panes. Panes are kept in two stacks ([`PaneQueue`]), so a
//! window costs a constant number of merges whatever `L / S` is. A window
//! over raw rows (DStream `window()`, no aggregate) keeps the batches
//! themselves in its panes.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};

use crate::error::{Error, Result};
use crate::time::{BatchTime, format_duration};

pub(crate) mod aggregate;
mod pane_queue;

pub(crate) use pane_queue::PaneQueue;
pub(crate) mod raw;

/// The length and slide of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    /// How much time a window covers.
    pub length: Duration,
    /// How often a window is emitted.
    pub slide: Duration,
}

fn gcd(a: u128, b: u128) -> u128 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl WindowSpec {
    /// `windows of 10 s every 2 s` (or `tumbling windows of 10 s`), for
    /// `EXPLAIN`.
    pub fn describe(&self) -> String {
        use crate::time::format_duration;
        if self.length == self.slide {
            format!("tumbling windows of {}", format_duration(self.length))
        } else {
            format!(
                "windows of {} every {}",
                format_duration(self.length),
                format_duration(self.slide)
            )
        }
    }

    /// Windows of `size` that do not overlap.
    pub fn tumbling(size: Duration) -> Self {
        WindowSpec {
            length: size,
            slide: size,
        }
    }

    /// Windows of `length` emitted every `slide`.
    pub fn sliding(length: Duration, slide: Duration) -> Self {
        WindowSpec { length, slide }
    }

    /// Checks the rules, with errors that name the values: those of
    /// [`WindowSpec::validate_event_time`], and both multiples of the batch
    /// interval.
    pub fn validate(&self, interval: Duration) -> Result<()> {
        self.validate_event_time()?;
        let i = interval.as_millis();
        let fi = format_duration(interval);
        for (what, value) in [("size", self.length), ("slide", self.slide)] {
            if value.as_millis() % i != 0 {
                return Err(Error::Plan(format!(
                    "window {what} {} is not a multiple of the batch interval {fi}",
                    format_duration(value)
                )));
            }
        }
        Ok(())
    }

    /// Checks the rules of an event-time window: both positive, the slide
    /// no longer than the length, and the length a multiple of the slide
    /// (there is no batch interval to divide).
    pub fn validate_event_time(&self) -> Result<()> {
        let (l, s) = (self.length.as_millis(), self.slide.as_millis());
        let (fl, fs) = (format_duration(self.length), format_duration(self.slide));
        if l == 0 || s == 0 {
            return Err(Error::Plan(format!(
                "window size ({fl}) and slide ({fs}) must be positive"
            )));
        }
        if s > l {
            return Err(Error::Plan(format!(
                "window slide {fs} is longer than its size {fl}"
            )));
        }
        if l % s != 0 {
            return Err(Error::Plan(format!(
                "window size {fl} is not a multiple of its slide {fs}"
            )));
        }
        Ok(())
    }

    /// The pane length: `gcd(length, slide)`, in milliseconds.
    pub(crate) fn pane_millis(&self) -> i64 {
        gcd(self.length.as_millis(), self.slide.as_millis()) as i64
    }

    /// The end of the last window, of those ending at `zero + k·slide`
    /// and covering `(end − length, end]`, that covers batch time `time`:
    /// the last batch at which rows of that batch are emitted.
    pub(crate) fn last_window_end(&self, zero: BatchTime, time: BatchTime) -> BatchTime {
        let (length, slide) = (
            self.length.as_millis() as i64,
            self.slide.as_millis().max(1) as i64,
        );
        // The largest end ≡ zero (mod slide) with end < time + length.
        let ends = (time.millis() - zero.millis() + length - 1).div_euclid(slide);
        BatchTime::from_millis(zero.millis() + ends * slide)
    }
}

/// The output schema of a window aggregate: `window_start`, `window_end`,
/// then the aggregate's columns.
pub(crate) fn output_schema(aggregate: &Schema) -> SchemaRef {
    let fields = bound_fields()
        .into_iter()
        .chain(aggregate.fields().iter().cloned());
    Arc::new(Schema::new(fields.collect::<Vec<_>>()))
}

/// `schema` with `window_start` and `window_end` appended.
pub(crate) fn with_bounds(schema: &Schema) -> SchemaRef {
    let fields = schema.fields().iter().cloned().chain(bound_fields());
    Arc::new(Schema::new(fields.collect::<Vec<_>>()))
}

/// The fields `window_start` and `window_end`.
fn bound_fields() -> [FieldRef; 2] {
    let time = DataType::Timestamp(TimeUnit::Millisecond, None);
    [
        Arc::new(Field::new("window_start", time.clone(), false)),
        Arc::new(Field::new("window_end", time, false)),
    ]
}

/// The bounds of the window ending at `time`, `rows` times each.
pub(crate) fn bounds(time: BatchTime, length: Duration, rows: usize) -> [ArrayRef; 2] {
    let end = time.millis();
    let start = end - length.as_millis() as i64;
    [
        Arc::new(TimestampMillisecondArray::from(vec![start; rows])),
        Arc::new(TimestampMillisecondArray::from(vec![end; rows])),
    ]
}

/// `zero` rounded down to a multiple of the slide (see the module docs).
pub(crate) fn aligned(zero: BatchTime, spec: &WindowSpec) -> BatchTime {
    let slide = spec.slide.as_millis().max(1) as i64;
    BatchTime::from_millis(zero.millis().div_euclid(slide) * slide)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_window_of_a_batch_ends_at_the_last_slide_boundary_covering_it() {
        let at = BatchTime::from_millis;
        let secs = Duration::from_secs;
        let tumble = WindowSpec::tumbling(secs(10));
        // Windows (0, 10 s], (10 s, 20 s]: batch 10 s is the last of the first.
        assert_eq!(tumble.last_window_end(at(0), at(1_000)), at(10_000));
        assert_eq!(tumble.last_window_end(at(0), at(10_000)), at(10_000));
        assert_eq!(tumble.last_window_end(at(0), at(10_001)), at(20_000));
        // 6 s windows every 2 s: batch 3 s is in the windows ending 4, 6 and 8 s.
        let hop = WindowSpec::sliding(secs(6), secs(2));
        assert_eq!(hop.last_window_end(at(0), at(3_000)), at(8_000));
        assert_eq!(hop.last_window_end(at(0), at(4_000)), at(8_000));
        // Aligned to zero, which may be negative of the batch.
        assert_eq!(tumble.last_window_end(at(5_000), at(6_000)), at(15_000));
    }

    #[test]
    fn window_rules_name_the_values() {
        let i = Duration::from_secs(1);
        let s = |l: u64, sl: u64| {
            WindowSpec::sliding(Duration::from_millis(l), Duration::from_millis(sl))
        };
        assert!(s(3000, 1000).validate(i).is_ok());
        assert!(s(6000, 2000).validate(i).is_ok());
        let err = |spec: WindowSpec| spec.validate(i).unwrap_err().to_string();
        assert_eq!(
            err(s(2500, 500)),
            "window size 2500 ms is not a multiple of the batch interval 1 s"
        );
        assert_eq!(
            err(s(3000, 1500)),
            "window slide 1500 ms is not a multiple of the batch interval 1 s"
        );
        assert_eq!(
            err(s(2000, 3000)),
            "window slide 3 s is longer than its size 2 s"
        );
        assert_eq!(
            err(s(5000, 2000)),
            "window size 5 s is not a multiple of its slide 2 s"
        );
        assert_eq!(
            err(s(0, 1000)),
            "window size (0 ms) and slide (1 s) must be positive"
        );
        assert_eq!(s(6000, 2000).pane_millis(), 2000);
    }
}
