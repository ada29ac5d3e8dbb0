//! When batches run: on the clock (Spark Streaming's and Structured
//! Streaming's default processing-time trigger), or back to back until the
//! input available now is read (Structured Streaming's `AvailableNow`).
//!
//! Under [`Trigger::AvailableNow`] batch `k` still has its proper time,
//! `zero + k·I` from the engine's start (as the down-time batches of a
//! restart do), and every operator sees the same batches it would on the
//! clock; only the waiting between them is gone. Each source stops at what
//! it can read when it opens: stdin and memory sources at their end, a
//! files source at the files present when it opens, a Kafka source at the
//! end offsets of its partitions then, a `sequence` or `nexmark` generator
//! at its `rows` / `events`. A source with no end (a socket, an unbounded
//! generator) is refused when the engine starts. When every query has
//! read its input and emitted what its windows hold, the engine ends.

use std::fmt;

use crate::error::{Error, Result};

/// When batches run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Trigger {
    /// Batch `k` runs when the clock reaches `zero + k·I`.
    #[default]
    ProcessingTime,
    /// Batches run back to back, each at its own batch time, until every
    /// source has handed over what was available when it opened; then the
    /// queries end.
    AvailableNow,
}

impl Trigger {
    /// `processing-time` or `available-now` (also with underscores).
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "processing-time" | "processingtime" | "default" => Ok(Trigger::ProcessingTime),
            "available-now" | "availablenow" => Ok(Trigger::AvailableNow),
            other => Err(Error::Config(format!(
                "unknown trigger '{other}'; valid triggers: processing-time, available-now"
            ))),
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trigger::ProcessingTime => "processing-time",
            Trigger::AvailableNow => "available-now",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Trigger;

    #[test]
    fn triggers_parse_by_name() {
        assert_eq!(
            Trigger::parse("available-now").unwrap(),
            Trigger::AvailableNow
        );
        assert_eq!(
            Trigger::parse("AVAILABLE_NOW").unwrap(),
            Trigger::AvailableNow
        );
        assert_eq!(
            Trigger::parse("processing-time").unwrap(),
            Trigger::ProcessingTime
        );
        assert!(
            Trigger::parse("once")
                .unwrap_err()
                .to_string()
                .contains("available-now")
        );
        assert_eq!(Trigger::AvailableNow.to_string(), "available-now");
    }
}
