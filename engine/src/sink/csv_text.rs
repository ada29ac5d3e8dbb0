//! CSV text of record batches, byte for byte what arrow-csv's writer
//! writes with its defaults: `,` between fields, `\n` after each record, a
//! field quoted (its `"` doubled) when it holds `,`, `"`, `\r` or `\n`, a
//! null as an empty field, a record of one empty field as `""`, and a
//! header line of the field names. The console and the `files` sink write
//! it.
//!
//! Why not arrow's writer alone: it formats every value through
//! `fmt::Write` into a `String`, copies that into a `csv` record, then
//! scans it for bytes to quote. In a pass-through printed as CSV that was
//! about 40 % of the whole process's CPU (BENCHMARKS.md, issue 20). Here
//! the columns sinks print most are written straight into one buffer:
//! integers (with `itoa`, the formatter serde_json uses), strings,
//! booleans, and timestamps without a zone and dates in years 0 to 9999.
//! Every other value (floats, decimals, zoned timestamps, years outside
//! that range) is formatted by arrow's own `ArrayFormatter` with the
//! writer's options, so its text is arrow's by construction. A nested
//! value, which arrow's writer refuses (as Spark's does), is written as
//! the table format shows it — `{start: 1970-01-01T00:00:00, end: …}`,
//! `[1, 2]` — quoted, as DuckDB writes one: a `window()` column or an
//! `array_agg` printed as CSV is text, not a failed query. The tests
//! compare the text with arrow's writer on random batches.

use arrow::array::{
    Array, AsArray, BooleanArray, GenericStringArray, OffsetSizeTrait, PrimitiveArray, RecordBatch,
    StringViewArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Int8Type, Int16Type, Int32Type, Int64Type, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::error::Result;

/// Appends `batch` as CSV to `out`, with a header line when `header`.
pub(crate) fn write_csv(batch: &RecordBatch, header: bool, out: &mut Vec<u8>) -> Result<()> {
    let columns = batch.columns();
    if columns.is_empty() {
        return arrow_csv(batch, header, out);
    }
    let start = out.len();
    let alone = columns.len() == 1;
    if header {
        for (i, field) in batch.schema().fields().iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_field(out, field.name().as_bytes(), alone);
        }
        out.push(b'\n');
    }
    let options = FormatOptions::default().with_null("");
    let columns = columns
        .iter()
        .map(|array| Column::new(array.as_ref(), &options))
        .collect::<Result<Vec<_>>>()?;
    let mut scratch = String::new();
    for row in 0..batch.num_rows() {
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if column.write(row, alone, out, &mut scratch).is_err() {
                // A value arrow cannot format: its writer says which.
                out.truncate(start);
                return arrow_csv(batch, header, out);
            }
        }
        out.push(b'\n');
    }
    Ok(())
}

/// [`write_csv`] by arrow's writer.
fn arrow_csv(batch: &RecordBatch, header: bool, out: &mut Vec<u8>) -> Result<()> {
    let mut writer = arrow::csv::WriterBuilder::new()
        .with_header(header)
        .build(Vec::new());
    writer.write(batch)?;
    out.extend_from_slice(&writer.into_inner());
    Ok(())
}

/// Appends one field, quoted when it must be; `alone` when it is its
/// record's only field (then an empty one is written `""`, so that the
/// record is not read as a blank line).
fn write_field(out: &mut Vec<u8>, field: &[u8], alone: bool) {
    if field.is_empty() {
        if alone {
            out.extend_from_slice(b"\"\"");
        }
        return;
    }
    if !field
        .iter()
        .any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    {
        out.extend_from_slice(field);
        return;
    }
    out.push(b'"');
    for part in field.split_inclusive(|&b| b == b'"') {
        out.extend_from_slice(part);
        if part.last() == Some(&b'"') {
            out.push(b'"');
        }
    }
    out.push(b'"');
}

/// One column of a batch on its way into text.
struct Column<'a> {
    nulls: Option<&'a NullBuffer>,
    /// Writes a valid value straight into the buffer, when the type has
    /// such a writer; `false` sends that value to `formatter`.
    direct: Option<Box<dyn Direct + 'a>>,
    /// Arrow's text of any value.
    formatter: ArrayFormatter<'a>,
}

impl<'a> Column<'a> {
    fn new(array: &'a dyn Array, options: &FormatOptions<'a>) -> Result<Self> {
        Ok(Column {
            nulls: array.nulls(),
            direct: direct(array),
            formatter: ArrayFormatter::try_new(array, options)?,
        })
    }

    /// Appends the value at `row`; `Err` when arrow cannot format it.
    fn write(
        &self,
        row: usize,
        alone: bool,
        out: &mut Vec<u8>,
        scratch: &mut String,
    ) -> std::result::Result<(), std::fmt::Error> {
        if self.nulls.is_some_and(|n| n.is_null(row)) {
            write_field(out, b"", alone);
            return Ok(());
        }
        if let Some(direct) = &self.direct
            && direct.write(row, alone, out)
        {
            return Ok(());
        }
        scratch.clear();
        self.formatter
            .value(row)
            .write(scratch)
            .map_err(|_| std::fmt::Error)?;
        write_field(out, scratch.as_bytes(), alone);
        Ok(())
    }
}

/// A column whose valid values are written without `fmt`.
trait Direct {
    /// Appends the value at `row`; `false` when it leaves it to arrow.
    fn write(&self, row: usize, alone: bool, out: &mut Vec<u8>) -> bool;
}

/// The direct writer of `array`'s type, if it has one.
fn direct<'a>(array: &'a dyn Array) -> Option<Box<dyn Direct + 'a>> {
    Some(match array.data_type() {
        DataType::Int8 => Box::new(Integers(array.as_primitive::<Int8Type>())),
        DataType::Int16 => Box::new(Integers(array.as_primitive::<Int16Type>())),
        DataType::Int32 => Box::new(Integers(array.as_primitive::<Int32Type>())),
        DataType::Int64 => Box::new(Integers(array.as_primitive::<Int64Type>())),
        DataType::UInt8 => Box::new(Integers(array.as_primitive::<UInt8Type>())),
        DataType::UInt16 => Box::new(Integers(array.as_primitive::<UInt16Type>())),
        DataType::UInt32 => Box::new(Integers(array.as_primitive::<UInt32Type>())),
        DataType::UInt64 => Box::new(Integers(array.as_primitive::<UInt64Type>())),
        DataType::Utf8 => Box::new(Strings(array.as_string::<i32>())),
        DataType::LargeUtf8 => Box::new(Strings(array.as_string::<i64>())),
        DataType::Utf8View => Box::new(StringViews(array.as_string_view())),
        DataType::Boolean => Box::new(Booleans(array.as_boolean())),
        DataType::Date32 => Box::new(Dates(array.as_primitive::<Date32Type>().values())),
        DataType::Timestamp(unit, None) => {
            let (values, per_second) = match unit {
                TimeUnit::Second => (array.as_primitive::<TimestampSecondType>().values(), 1),
                TimeUnit::Millisecond => (
                    array.as_primitive::<TimestampMillisecondType>().values(),
                    1_000,
                ),
                TimeUnit::Microsecond => (
                    array.as_primitive::<TimestampMicrosecondType>().values(),
                    1_000_000,
                ),
                TimeUnit::Nanosecond => (
                    array.as_primitive::<TimestampNanosecondType>().values(),
                    1_000_000_000,
                ),
            };
            Box::new(Timestamps { values, per_second })
        }
        _ => return None,
    })
}

struct Integers<'a, T: ArrowPrimitiveType>(&'a PrimitiveArray<T>);

impl<T: ArrowPrimitiveType> Direct for Integers<'_, T>
where
    T::Native: itoa::Integer,
{
    fn write(&self, row: usize, _alone: bool, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(itoa::Buffer::new().format(self.0.value(row)).as_bytes());
        true
    }
}

struct Strings<'a, O: OffsetSizeTrait>(&'a GenericStringArray<O>);

impl<O: OffsetSizeTrait> Direct for Strings<'_, O> {
    fn write(&self, row: usize, alone: bool, out: &mut Vec<u8>) -> bool {
        write_field(out, self.0.value(row).as_bytes(), alone);
        true
    }
}

struct StringViews<'a>(&'a StringViewArray);

impl Direct for StringViews<'_> {
    fn write(&self, row: usize, alone: bool, out: &mut Vec<u8>) -> bool {
        write_field(out, self.0.value(row).as_bytes(), alone);
        true
    }
}

struct Booleans<'a>(&'a BooleanArray);

impl Direct for Booleans<'_> {
    fn write(&self, row: usize, _alone: bool, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(if self.0.value(row) { b"true" } else { b"false" });
        true
    }
}

/// Days since the epoch, written `YYYY-MM-DD` (chrono's `NaiveDate`
/// debug text, which arrow writes) for years 0 to 9999.
struct Dates<'a>(&'a [i32]);

impl Direct for Dates<'_> {
    fn write(&self, row: usize, _alone: bool, out: &mut Vec<u8>) -> bool {
        write_date(i64::from(self.0[row]), out)
    }
}

/// Timestamps without a zone, written `YYYY-MM-DDTHH:MM:SS` and, when the
/// second has a fraction, `.` and 3, 6 or 9 digits, the fewest that hold
/// it (chrono's `NaiveDateTime` debug text, which arrow writes).
struct Timestamps<'a> {
    values: &'a [i64],
    /// Units in a second.
    per_second: i64,
}

impl Direct for Timestamps<'_> {
    fn write(&self, row: usize, _alone: bool, out: &mut Vec<u8>) -> bool {
        let value = self.values[row];
        let seconds = value.div_euclid(self.per_second);
        let nanos = value.rem_euclid(self.per_second) * (1_000_000_000 / self.per_second);
        let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
        if !write_date(days, out) {
            return false;
        }
        out.push(b'T');
        two_digits(out, second_of_day / 3_600);
        out.push(b':');
        two_digits(out, second_of_day / 60 % 60);
        out.push(b':');
        two_digits(out, second_of_day % 60);
        let (fraction, digits) = if nanos == 0 {
            return true;
        } else if nanos % 1_000_000 == 0 {
            (nanos / 1_000_000, 3)
        } else if nanos % 1_000 == 0 {
            (nanos / 1_000, 6)
        } else {
            (nanos, 9)
        };
        out.push(b'.');
        let mut buffer = itoa::Buffer::new();
        let text = buffer.format(fraction).as_bytes();
        out.extend(std::iter::repeat_n(b'0', digits - text.len()));
        out.extend_from_slice(text);
        true
    }
}

/// Appends the civil date `days` after 1970-01-01 as `YYYY-MM-DD` when
/// its year is 0 to 9999; `false` (nothing written) otherwise.
fn write_date(days: i64, out: &mut Vec<u8>) -> bool {
    // Howard Hinnant's `civil_from_days`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return false;
    }
    two_digits(out, year / 100);
    two_digits(out, year % 100);
    out.push(b'-');
    two_digits(out, month);
    out.push(b'-');
    two_digits(out, day);
    true
}

/// Appends `n` (0 to 99) as two digits.
fn two_digits(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array,
        LargeStringArray, ListArray, StringArray, StringViewArray, TimestampMicrosecondArray,
        TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray, UInt8Array,
    };
    use arrow::datatypes::Int32Type;

    use super::*;
    use crate::test_random::Random;

    fn arrow_text(batch: &RecordBatch, header: bool) -> std::result::Result<String, String> {
        let mut writer = arrow::csv::WriterBuilder::new()
            .with_header(header)
            .build(Vec::new());
        writer.write(batch).map_err(|e| e.to_string())?;
        Ok(String::from_utf8(writer.into_inner()).unwrap())
    }

    fn our_text(batch: &RecordBatch, header: bool) -> std::result::Result<String, String> {
        let mut out = Vec::new();
        write_csv(batch, header, &mut out).map_err(|e| e.to_string())?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter_with_nullable(
            columns.into_iter().map(|(name, array)| (name, array, true)),
        )
        .unwrap()
    }

    fn assert_same(batch: &RecordBatch) {
        for header in [true, false] {
            assert_eq!(
                our_text(batch, header),
                arrow_text(batch, header),
                "{batch:?}"
            );
        }
    }

    /// A value near a boundary often, anywhere sometimes.
    fn int(random: &mut Random) -> i64 {
        match random.next() % 4 {
            0 => random.pick(&[0, 1, -1, i64::MAX, i64::MIN, 999, -1000]),
            1 => random.next() as i64 % 1_000_000_000_000_000_000,
            2 => random.next() as i64 % 100_000_000_000_000,
            _ => random.next() as i64,
        }
    }

    /// Up to three pieces of text, among them every byte that needs quotes.
    fn text(random: &mut Random) -> String {
        let pieces = ["a", "", ",", "\"", "\n", "\r", " ", "é", "x\"y", "1,5", "#"];
        (0..random.next() % 4)
            .map(|_| random.pick(&pieces))
            .collect()
    }

    /// Every type with a direct writer, with nulls, special characters,
    /// fractions of every length and dates outside 0–9999, in one, two and
    /// three columns: the same text as arrow's writer.
    #[test]
    fn random_batches_have_arrows_text() {
        let mut random = Random(0x2545_f491_4f6c_dd1d);
        for case in 0..300 {
            let rows = (random.next() % 6) as usize;
            let width = 1 + (random.next() % 3) as usize;
            let mut columns: Vec<(String, ArrayRef)> = Vec::new();
            for c in 0..width {
                let valid: Vec<bool> = (0..rows)
                    .map(|_| !random.next().is_multiple_of(5))
                    .collect();
                let ints: Vec<Option<i64>> =
                    valid.iter().map(|&v| v.then(|| int(&mut random))).collect();
                let texts: Vec<Option<String>> = valid
                    .iter()
                    .map(|&v| v.then(|| text(&mut random)))
                    .collect();
                let array: ArrayRef = match random.next() % 13 {
                    0 => Arc::new(Int64Array::from(ints)),
                    1 => Arc::new(Int32Array::from_iter(
                        ints.iter().map(|v| v.map(|v| v as i32)),
                    )),
                    2 => Arc::new(UInt8Array::from_iter(
                        ints.iter().map(|v| v.map(|v| v as u8)),
                    )),
                    3 => Arc::new(StringArray::from(texts)),
                    4 => Arc::new(LargeStringArray::from(texts)),
                    5 => Arc::new(StringViewArray::from(texts)),
                    6 => Arc::new(BooleanArray::from_iter(
                        ints.iter().map(|v| v.map(|v| v % 2 == 0)),
                    )),
                    7 => Arc::new(TimestampNanosecondArray::from(ints)),
                    8 => Arc::new(TimestampMicrosecondArray::from(ints)),
                    9 => Arc::new(TimestampMillisecondArray::from_iter(
                        ints.iter().map(|v| v.map(|v| v % 400_000_000_000_000)),
                    )),
                    10 => Arc::new(TimestampSecondArray::from_iter(
                        ints.iter().map(|v| v.map(|v| v % 400_000_000_000)),
                    )),
                    11 => Arc::new(Date32Array::from_iter(
                        ints.iter().map(|v| v.map(|v| v as i32)),
                    )),
                    _ => Arc::new(Float64Array::from_iter(
                        ints.iter().map(|v| v.map(|v| v as f64 / 7.0)),
                    )),
                };
                let name = if case % 7 == 0 {
                    text(&mut random)
                } else {
                    format!("c{c}")
                };
                columns.push((name, array));
            }
            let batch = batch(
                columns
                    .iter()
                    .map(|(n, a)| (n.as_str(), a.clone()))
                    .collect(),
            );
            assert_same(&batch);
        }
    }

    /// Timestamps at each length of fraction, and around the epoch.
    #[test]
    fn fractions_take_the_fewest_of_three_six_or_nine_digits() {
        let values = vec![
            0,
            -1,
            1_000_000_000,
            1_500_000_000,
            1_000_120_000,
            1_000_000_007,
            -86_400_000_000_001,
        ];
        let batch = batch(vec![(
            "ts",
            Arc::new(TimestampNanosecondArray::from(values)),
        )]);
        assert_eq!(
            our_text(&batch, false).unwrap(),
            "1970-01-01T00:00:00\n1969-12-31T23:59:59.999999999\n1970-01-01T00:00:01\n\
             1970-01-01T00:00:01.500\n1970-01-01T00:00:01.000120\n1970-01-01T00:00:01.000000007\n\
             1969-12-30T23:59:59.999999999\n"
        );
        assert_same(&batch);
    }

    /// A nested value is written as the table format shows it, quoted.
    #[test]
    fn nested_values_are_written_as_text() {
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            None,
            Some(vec![]),
        ]);
        let batch = batch(vec![("l", Arc::new(list) as ArrayRef)]);
        assert_eq!(our_text(&batch, true).unwrap(), "l\n\"[1, 2]\"\n\"\"\n[]\n");
    }
}
