//! Malformed records: the kinds they are counted by ([`MalformedKind`])
//! and how much of an over-long one is kept for its dead letter
//! (`MALFORMED_PREFIX`).
//!
//! The words that the decoders (`format`), the receivers (`source`) and
//! the counters (`metrics`) share, so that none of them imports another
//! for them. Which kind a decoder's reason is, is the decoder's business
//! ([`Format::malformed_kind`](crate::format::Format::malformed_kind)).

/// How much of an over-long record is kept for its dead letter: the rest
/// is never buffered.
pub(crate) const MALFORMED_PREFIX: usize = 1024;

/// Why a record is malformed, as counted in the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MalformedKind {
    /// Longer than `max.record.bytes`.
    TooLong,
    /// Not valid UTF-8.
    Utf8,
    /// A CSV record with the wrong number of fields.
    FieldCount,
    /// A value that does not fit its column's type (a number, a timestamp
    /// out of range, …).
    Value,
    /// Not a JSON object (a syntax error, a truncated record).
    Json,
    /// A record without a value (a Kafka tombstone, a blank value).
    Empty,
}

impl MalformedKind {
    /// Its name in metrics and dead-letter lines.
    pub fn name(self) -> &'static str {
        match self {
            MalformedKind::TooLong => "too_long",
            MalformedKind::Utf8 => "utf8",
            MalformedKind::FieldCount => "field_count",
            MalformedKind::Value => "value",
            MalformedKind::Json => "json",
            MalformedKind::Empty => "empty",
        }
    }
}
