//! Timestamps read from text at the cost of their digits.
//!
//! arrow-csv parses a timestamp through arrow's general parser (any ISO
//! 8601 shape, time zones, chrono's checks), about a tenth of a CSV
//! source's CPU (BENCHMARKS.md, issue 20). Event times are nearly
//! always written one way: `YYYY-MM-DD HH:MM:SS` (or with `T`), then
//! perhaps `.` and 1 to 9 digits, in years 0 to 9999. [`TextTimestamps`]
//! has arrow decode the timestamp columns as text and reads that shape
//! itself, computing the civil date as chrono does. JSON sources read the
//! same shape with [`parse`] in `flat_json.rs`.
//!
//! The rule that keeps this exact: it reads a column only when *every*
//! value is of that shape and valid (month, day of the month, hour, minute,
//! second at most 59, no overflow); then its values are those arrow gives.
//! Anything else — a null, another shape, a zone, a value arrow
//! refuses — and the caller decodes the records again with the
//! declared schema, so arrow's own parser and errors decide, as before.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray, RecordBatch};
use arrow::datatypes::{
    DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};

/// The timestamp columns (without a time zone) of a schema, decoded as text
/// first.
#[derive(Debug)]
pub(super) struct TextTimestamps {
    /// Each such column's index and unit.
    columns: Vec<(usize, TimeUnit)>,
    /// The schema with those columns as `Utf8`.
    text_schema: SchemaRef,
}

impl TextTimestamps {
    /// For `schema`, when it has a timestamp column without a time zone.
    pub(super) fn of(schema: &SchemaRef) -> Option<Self> {
        let columns: Vec<(usize, TimeUnit)> = schema
            .fields()
            .iter()
            .enumerate()
            .filter_map(|(i, field)| match field.data_type() {
                DataType::Timestamp(unit, None) => Some((i, *unit)),
                _ => None,
            })
            .collect();
        if columns.is_empty() {
            return None;
        }
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|field| match field.data_type() {
                DataType::Timestamp(_, None) => {
                    field.as_ref().clone().with_data_type(DataType::Utf8)
                }
                _ => field.as_ref().clone(),
            })
            .collect();
        Some(TextTimestamps {
            columns,
            text_schema: Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
        })
    }

    /// The schema to decode with: the timestamp columns as text.
    pub(super) fn text_schema(&self) -> &SchemaRef {
        &self.text_schema
    }

    /// `batch`, decoded with [`TextTimestamps::text_schema`], as `schema`:
    /// `None` unless every timestamp is of the one shape read here.
    pub(super) fn read(&self, batch: &RecordBatch, schema: &SchemaRef) -> Option<RecordBatch> {
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        for &(index, unit) in &self.columns {
            let text = batch.column(index).as_string_opt::<i32>()?;
            if text.null_count() > 0 {
                return None;
            }
            let values = text
                .iter()
                .map(|value| value.and_then(|v| parse(v.as_bytes(), unit)))
                .collect::<Option<Vec<i64>>>()?;
            columns[index] = match unit {
                TimeUnit::Second => Arc::new(PrimitiveArray::<TimestampSecondType>::from(values)),
                TimeUnit::Millisecond => {
                    Arc::new(PrimitiveArray::<TimestampMillisecondType>::from(values))
                }
                TimeUnit::Microsecond => {
                    Arc::new(PrimitiveArray::<TimestampMicrosecondType>::from(values))
                }
                TimeUnit::Nanosecond => {
                    Arc::new(PrimitiveArray::<TimestampNanosecondType>::from(values))
                }
            };
        }
        RecordBatch::try_new(Arc::clone(schema), columns).ok()
    }
}

/// `YYYY-MM-DD[ T]HH:MM:SS[.f{1,9}]` as a count of `unit` since the epoch,
/// as arrow computes it (the fraction truncated to the unit); `None` for
/// any other text, an invalid date or time, or an overflow.
pub(super) fn parse(text: &[u8], unit: TimeUnit) -> Option<i64> {
    if text.len() < 19
        || text[4] != b'-'
        || text[7] != b'-'
        || !matches!(text[10], b' ' | b'T')
        || text[13] != b':'
        || text[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (
        pair(text, 0)? * 100 + pair(text, 2)?,
        pair(text, 5)?,
        pair(text, 8)?,
    );
    let (hour, minute, second) = (pair(text, 11)?, pair(text, 14)?, pair(text, 17)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let nanos = match &text[19..] {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            let mut n = 0i64;
            for &b in digits {
                let digit = b.wrapping_sub(b'0');
                if digit > 9 {
                    return None;
                }
                n = n * 10 + i64::from(digit);
            }
            n * 10i64.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    match unit {
        TimeUnit::Second => Some(seconds),
        TimeUnit::Millisecond => seconds.checked_mul(1_000)?.checked_add(nanos / 1_000_000),
        TimeUnit::Microsecond => seconds.checked_mul(1_000_000)?.checked_add(nanos / 1_000),
        TimeUnit::Nanosecond => seconds.checked_mul(1_000_000_000)?.checked_add(nanos),
    }
}

/// The two digits at `at` as a number.
#[inline]
fn pair(text: &[u8], at: usize) -> Option<i64> {
    let (tens, ones) = (text[at].wrapping_sub(b'0'), text[at + 1].wrapping_sub(b'0'));
    (tens <= 9 && ones <= 9).then(|| i64::from(tens * 10 + ones))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// arrow's value for `text`, or `None` when arrow refuses it.
    fn arrows(text: &str, unit: TimeUnit) -> Option<i64> {
        let utc: arrow::array::timezone::Tz = "+00:00".parse().unwrap();
        let date = arrow::compute::kernels::cast_utils::string_to_datetime(&utc, text).ok()?;
        match unit {
            TimeUnit::Second => Some(date.timestamp()),
            TimeUnit::Millisecond => Some(date.timestamp_millis()),
            TimeUnit::Microsecond => Some(date.timestamp_micros()),
            TimeUnit::Nanosecond => date.timestamp_nanos_opt(),
        }
    }

    /// Every text read here has arrow's value; what arrow refuses is never
    /// read here (other shapes may be left to arrow).
    #[test]
    fn what_is_read_is_what_arrow_reads() {
        let mut texts = vec![
            "2023-11-14 22:13:20.123".to_string(),
            "2023-11-14T22:13:20".to_string(),
            "1969-12-31 23:59:59.999999999".to_string(),
            "0000-01-01 00:00:00".to_string(),
            "9999-12-31 23:59:59.9".to_string(),
            "2024-02-29 12:00:00.5".to_string(),
            "2023-02-29 12:00:00".to_string(),
            "1900-02-29 12:00:00".to_string(),
            "2000-02-29 00:00:00.000001".to_string(),
            "2023-04-31 00:00:00".to_string(),
            "2023-11-14 24:00:00".to_string(),
            "2023-11-14 23:60:00".to_string(),
            "2023-11-14 23:59:60".to_string(),
            "2023-13-01 00:00:00".to_string(),
            "2023-00-01 00:00:00".to_string(),
            "2023-11-00 00:00:00".to_string(),
            "2023-11-14 22:13:20.".to_string(),
            "2023-11-14 22:13:20.1234567891".to_string(),
            "2023-11-14 22:13:20Z".to_string(),
            "2023-11-14t22:13:20".to_string(),
            "2023-11-14 22:13:20+01:00".to_string(),
            "2023-1-14 22:13:20".to_string(),
            "+2023-11-14 22:13:20".to_string(),
            "2262-04-11 23:47:16.854775807".to_string(),
            "2262-04-11 23:47:16.854775808".to_string(),
            "1677-09-21 00:12:43.145224192".to_string(),
            "1677-09-21 00:12:43.145224191".to_string(),
        ];
        // Every day of four years, at a moment with each length of fraction.
        let first = days_from_civil(1999, 1, 1) as i32;
        for n in 0..(4 * 366) {
            let date = arrow::temporal_conversions::date32_to_datetime(first + n as i32).unwrap();
            let fraction = ["", ".1", ".12", ".123", ".1234", ".123456", ".123456789"][n % 7];
            let time = format!("{:02}:{:02}:{:02}", n % 24, n % 60, (n * 7) % 60);
            texts.push(format!("{} {time}{fraction}", date.format("%Y-%m-%d")));
        }
        let mut read = 0;
        for text in &texts {
            for unit in [
                TimeUnit::Second,
                TimeUnit::Millisecond,
                TimeUnit::Microsecond,
                TimeUnit::Nanosecond,
            ] {
                let ours = parse(text.as_bytes(), unit);
                if ours.is_some() {
                    assert_eq!(ours, arrows(text, unit), "{text} in {unit:?}");
                    read += 1;
                }
            }
        }
        assert!(read > 4 * 4 * 365, "the shape is read: {read}");
        assert_eq!(
            parse(b"2023-11-14 22:13:20.123", TimeUnit::Millisecond),
            Some(1_700_000_000_123)
        );
    }
}
