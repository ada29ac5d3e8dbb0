//! Time: batch times, the clock they are read from, and durations.
//!
//! Batch times follow Spark Streaming. When a context starts, its *zero* is
//! `floor(now / I) * I` for batch interval `I`; batch `k ≥ 1` has time
//! `zero + k·I` and holds what the sources received after batch `k − 1` and
//! up to its time. A [`BatchTime`] is epoch milliseconds and prints as Spark
//! prints it (`1357008430000 ms`).
//!
//! Time is read from a [`Clock`]: [`SystemClock`] in production, a
//! [`ManualClock`] in tests, where a batch runs only when the test advances
//! the clock past its time. No test sleeps to make a batch happen.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::error::{Error, Result};

/// The time of a batch: epoch milliseconds, a multiple of the batch interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchTime(i64);

impl BatchTime {
    /// A batch time from epoch milliseconds.
    pub const fn from_millis(millis: i64) -> Self {
        BatchTime(millis)
    }

    /// Epoch milliseconds.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// This time plus a duration.
    pub fn plus(self, d: Duration) -> Self {
        BatchTime(self.0 + d.as_millis() as i64)
    }

    /// This time minus a duration.
    pub fn minus(self, d: Duration) -> Self {
        BatchTime(self.0 - d.as_millis() as i64)
    }

    /// The largest multiple of `interval` that is not after `millis`: the
    /// zero time of a context started at `millis`.
    pub fn aligned_floor(millis: i64, interval: Duration) -> Self {
        let i = interval.as_millis().max(1) as i64;
        BatchTime(millis.div_euclid(i) * i)
    }
}

impl fmt::Display for BatchTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms", self.0)
    }
}

/// Where the engine reads the time from.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, in epoch milliseconds.
    fn now_millis(&self) -> i64;
    /// Resolves once `now_millis() >= millis`.
    fn wait_until(&self, millis: i64) -> BoxFuture<'_, ()>;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }

    fn wait_until(&self, millis: i64) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            loop {
                let now = self.now_millis();
                if now >= millis {
                    return;
                }
                tokio::time::sleep(Duration::from_millis((millis - now) as u64)).await;
            }
        })
    }
}

/// A clock that moves only when told to: batches run exactly when a test
/// advances it past their times, as fast as the CPU allows.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<i64>>,
}

impl ManualClock {
    /// A manual clock showing `millis` (epoch milliseconds).
    pub fn at(millis: i64) -> Self {
        ManualClock {
            now: Arc::new(watch::Sender::new(millis)),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|t| *t += by.as_millis() as i64);
    }

    /// Sets the clock to `millis`; it never goes back.
    pub fn set(&self, millis: i64) {
        self.now.send_modify(|t| *t = (*t).max(millis));
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> i64 {
        *self.now.borrow()
    }

    fn wait_until(&self, millis: i64) -> BoxFuture<'_, ()> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as `self`, so this only ends on time.
            let _ = rx.wait_for(|t| *t >= millis).await;
        })
    }
}

/// Parses a duration as users write it: `1 second`, `200 ms`, `2s`,
/// `1.5 seconds`, `10 minutes`, `500 milliseconds`, `1 hour`.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let bad = || {
        Error::Config(format!(
            "invalid duration '{text}': expected a number and a unit, such as '1 second', '200 ms' or '10 minutes'"
        ))
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let millis_per_unit = match unit.trim().to_ascii_lowercase().as_str() {
        "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1.0,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000.0,
        "h" | "hour" | "hours" => 3_600_000.0,
        "d" | "day" | "days" => 86_400_000.0,
        _ => return Err(bad()),
    };
    let millis = value * millis_per_unit;
    if !millis.is_finite() || millis.fract() != 0.0 || millis > 1e15 {
        return Err(Error::Config(format!(
            "invalid duration '{text}': it must be a whole number of milliseconds"
        )));
    }
    Ok(Duration::from_millis(millis as u64))
}

/// Formats a duration for messages: `200 ms`, `1 s`, `10 min`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms != 0 && ms.is_multiple_of(60_000) {
        format!("{} min", ms / 60_000)
    } else if ms != 0 && ms.is_multiple_of(1_000) {
        format!("{} s", ms / 1_000)
    } else {
        format!("{ms} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_aligned_down_to_the_interval() {
        let i = Duration::from_millis(200);
        assert_eq!(BatchTime::aligned_floor(1_399, i).millis(), 1_200);
        assert_eq!(BatchTime::aligned_floor(1_400, i).millis(), 1_400);
        assert_eq!(BatchTime::aligned_floor(-1, i).millis(), -200);
    }

    #[test]
    fn durations_parse_in_the_usual_spellings() {
        assert_eq!(parse_duration("1 second").unwrap(), Duration::from_secs(1));
        assert_eq!(
            parse_duration("200 ms").unwrap(),
            Duration::from_millis(200)
        );
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(
            parse_duration("1.5 seconds").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            parse_duration("10 minutes").unwrap(),
            Duration::from_secs(600)
        );
        let err = parse_duration("ten seconds").unwrap_err().to_string();
        assert!(err.contains("'ten seconds'"), "{err}");
        assert!(parse_duration("1 fortnight").is_err());
        assert!(parse_duration("0.1 ms").is_err());
    }

    #[test]
    fn batch_times_print_as_spark_does() {
        assert_eq!(
            BatchTime::from_millis(1357008430000).to_string(),
            "1357008430000 ms"
        );
        assert_eq!(format_duration(Duration::from_millis(200)), "200 ms");
        assert_eq!(format_duration(Duration::from_secs(2)), "2 s");
    }

    #[tokio::test]
    async fn a_manual_clock_wakes_waiters_only_when_advanced() {
        let clock = ManualClock::at(1_000);
        let waiter = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.wait_until(2_000).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        clock.advance(Duration::from_millis(999));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        clock.advance(Duration::from_millis(1));
        waiter.await.unwrap();
        assert_eq!(clock.now_millis(), 2_000);
    }
}
