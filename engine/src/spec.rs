//! What a stateful operator is asked to do: the length and slide of a
//! window ([`WindowSpec`], with its rules), and how a running aggregate
//! emits and expires keys ([`RunningSpec`]). The operator graph holds these;
//! the operators in `window` and `running` carry them out.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::time::format_duration;

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

    /// Checks the rules, with errors that name the values: both positive,
    /// both multiples of the batch interval, the slide no longer than the
    /// length, and the length a multiple of the slide.
    pub fn validate(&self, interval: Duration) -> Result<()> {
        let (l, s, i) = (
            self.length.as_millis(),
            self.slide.as_millis(),
            interval.as_millis(),
        );
        let (fl, fs, fi) = (
            format_duration(self.length),
            format_duration(self.slide),
            format_duration(interval),
        );
        if l == 0 || s == 0 {
            return Err(Error::Plan(format!(
                "window size ({fl}) and slide ({fs}) must be positive"
            )));
        }
        if l % i != 0 {
            return Err(Error::Plan(format!(
                "window size {fl} is not a multiple of the batch interval {fi}"
            )));
        }
        if s % i != 0 {
            return Err(Error::Plan(format!(
                "window slide {fs} is not a multiple of the batch interval {fi}"
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
