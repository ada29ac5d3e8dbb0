//! What a stateful operator is asked to do: the length and slide of a
//! window ([`WindowSpec`], with its rules), an event-time window
//! ([`EventWindow`]: its time column, its windows and what it emits), and
//! how a running aggregate emits and expires keys ([`RunningSpec`]). The
//! operator graph holds these; the operators in `window`, `event_window` and
//! `running` carry them out.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::time::{BatchTime, format_duration};

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

/// Which windows an event-time row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assigner {
    /// Windows `[k·slide, k·slide + length)` aligned to the epoch (tumbling
    /// when the slide is the length).
    Fixed(WindowSpec),
    /// Per key, rows closer than `gap` to each other share a session
    /// `[first event, last event + gap)`.
    Session {
        /// How long a key may be silent before its session ends.
        gap: Duration,
    },
}

/// What an event-time window emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowEmit {
    /// One final row per window and key, at the first batch whose
    /// watermark passes the window's end (Flink's and Spark's append mode).
    OnClose,
    /// Also, every batch, the current values of the open windows that got
    /// rows in it: an updating stream with a trailing `is_final` column.
    Changes,
}

/// An event-time window aggregate: the time column of its input, its
/// windows and what it emits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventWindow {
    /// The input column holding each row's event time (a timestamp, or
    /// milliseconds since the epoch). Every source the window reads must
    /// declare a watermark on it.
    pub time_column: String,
    /// Which windows a row belongs to.
    pub assigner: Assigner,
    /// What the window emits.
    pub emit: WindowEmit,
}

impl EventWindow {
    /// Fixed (tumbling or sliding) windows over `time_column`.
    pub fn fixed(time_column: &str, spec: WindowSpec) -> Self {
        EventWindow {
            time_column: time_column.to_string(),
            assigner: Assigner::Fixed(spec),
            emit: WindowEmit::OnClose,
        }
    }

    /// Session windows over `time_column` that end after `gap` of silence.
    pub fn session(time_column: &str, gap: Duration) -> Self {
        EventWindow {
            time_column: time_column.to_string(),
            assigner: Assigner::Session { gap },
            emit: WindowEmit::OnClose,
        }
    }

    /// The same windows, emitting as `emit` says.
    pub fn with_emit(self, emit: WindowEmit) -> Self {
        EventWindow { emit, ..self }
    }

    /// Checks the sizes, with errors that name the values.
    pub fn validate(&self) -> Result<()> {
        // Far beyond any real window; keeps window arithmetic in range.
        const LONGEST: Duration = Duration::from_secs(100 * 365 * 86_400);
        let longest = match self.assigner {
            Assigner::Fixed(spec) => spec.length.max(spec.slide),
            Assigner::Session { gap } => gap,
        };
        if longest > LONGEST {
            return Err(Error::Plan(format!(
                "window size {} is longer than 100 years",
                format_duration(longest)
            )));
        }
        match self.assigner {
            Assigner::Fixed(spec) => spec.validate_event_time(),
            Assigner::Session { gap } if gap.is_zero() => Err(Error::Plan(
                "a session gap must be positive, got 0 ms".into(),
            )),
            Assigner::Session { .. } => Ok(()),
        }
    }
}

/// What a running aggregate emits every batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitMode {
    /// The keys that had rows in the batch, with their current values.
    Changes,
    /// Every key with its current value.
    Complete,
}

/// How a running aggregate emits and how long it keeps idle keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunningSpec {
    /// What every batch emits.
    pub emit: EmitMode,
    /// Drop a key after this long without rows (`None`: keep every key).
    pub ttl: Option<Duration>,
}

impl RunningSpec {
    /// Emits the keys that changed, keeps keys forever.
    pub fn changes() -> Self {
        RunningSpec {
            emit: EmitMode::Changes,
            ttl: None,
        }
    }

    /// Emits every key every batch, keeps keys forever.
    pub fn complete() -> Self {
        RunningSpec {
            emit: EmitMode::Complete,
            ttl: None,
        }
    }

    /// Drops keys idle for `ttl` (zero: keep every key).
    pub fn with_ttl(self, ttl: Duration) -> Self {
        RunningSpec {
            ttl: Some(ttl).filter(|t| !t.is_zero()),
            ..self
        }
    }
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
