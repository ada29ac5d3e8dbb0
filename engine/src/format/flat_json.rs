//! JSON lines of flat objects read without arrow-json's tape.
//!
//! arrow-json first copies every record into a tape of tokens, then builds
//! each column from the tape: in a JSON source's profile the tape alone was
//! 28 % of the CPU, and the whole decode about what DuckDB spends on the
//! whole question (BENCHMARKS.md, issue 20). Most event streams are one flat
//! object per line, so [`read`] reads that shape directly into the columns.
//!
//! The rule that keeps this exact: it reads a chunk only when *every* line
//! is an object of the plainest form, and gives up (`None`) at the first
//! thing that is not: a nested value, a backslash in a string, a number
//! with a fraction or exponent for an integer column (or out of its
//! range), a string where a number is declared, a key twice, a missing or
//! null value in a column declared NOT NULL, anything after the object. The
//! caller then decodes the chunk with arrow-json, whose values and errors
//! decide every other case. What it accepts is valid JSON whose values are
//! those arrow-json gives; a test compares the two on random lines, good
//! and broken.
//!
//! Column types read here: signed integers, `Utf8`, `Boolean`, and
//! timestamps without a zone written as text of the common shape
//! (`timestamps.rs`). A schema with any other type is left to arrow-json.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Int8Array, Int16Array, Int32Array, Int64Array, RecordBatch,
    StringBuilder, TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
    TimestampSecondArray,
};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};

use super::timestamps;

/// How one column is read and built.
enum Column {
    Int(DataType, Vec<Option<i64>>),
    Text(StringBuilder),
    Bool(BooleanBuilder),
    Timestamp(TimeUnit, Vec<Option<i64>>),
}

impl Column {
    fn new(data_type: &DataType, rows: usize) -> Option<Self> {
        Some(match data_type {
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                Column::Int(data_type.clone(), Vec::with_capacity(rows))
            }
            DataType::Utf8 => Column::Text(StringBuilder::with_capacity(rows, rows * 8)),
            DataType::Boolean => Column::Bool(BooleanBuilder::with_capacity(rows)),
            DataType::Timestamp(unit, None) => Column::Timestamp(*unit, Vec::with_capacity(rows)),
            _ => return None,
        })
    }

    fn null(&mut self) {
        match self {
            Column::Int(_, values) | Column::Timestamp(_, values) => values.push(None),
            Column::Text(builder) => builder.append_null(),
            Column::Bool(builder) => builder.append_null(),
        }
    }

    /// Reads the value at the start of `text` into the column; the bytes
    /// it took, or `None` when it is not of a form read here.
    fn value(&mut self, text: &[u8]) -> Option<usize> {
        match self {
            Column::Int(data_type, values) => {
                let (value, len) = integer(text)?;
                let fits = match data_type {
                    DataType::Int8 => i8::try_from(value).is_ok(),
                    DataType::Int16 => i16::try_from(value).is_ok(),
                    DataType::Int32 => i32::try_from(value).is_ok(),
                    _ => true,
                };
                fits.then(|| values.push(Some(value)))?;
                Some(len)
            }
            Column::Text(builder) => {
                let (value, len) = string(text)?;
                builder.append_value(std::str::from_utf8(value).ok()?);
                Some(len)
            }
            Column::Bool(builder) => {
                let (value, len) = if text.starts_with(b"true") {
                    (true, 4)
                } else if text.starts_with(b"false") {
                    (false, 5)
                } else {
                    return None;
                };
                builder.append_value(value);
                Some(len)
            }
            Column::Timestamp(unit, values) => {
                let (value, len) = string(text)?;
                values.push(Some(timestamps::parse(value, *unit)?));
                Some(len)
            }
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Column::Int(data_type, values) => match data_type {
                DataType::Int8 => Arc::new(Int8Array::from_iter(
                    values.into_iter().map(|v| v.map(|v| v as i8)),
                )),
                DataType::Int16 => Arc::new(Int16Array::from_iter(
                    values.into_iter().map(|v| v.map(|v| v as i16)),
                )),
                DataType::Int32 => Arc::new(Int32Array::from_iter(
                    values.into_iter().map(|v| v.map(|v| v as i32)),
                )),
                _ => Arc::new(Int64Array::from(values)),
            },
            Column::Text(mut builder) => Arc::new(builder.finish()),
            Column::Bool(mut builder) => Arc::new(builder.finish()),
            Column::Timestamp(unit, values) => match unit {
                TimeUnit::Second => Arc::new(TimestampSecondArray::from(values)),
                TimeUnit::Millisecond => Arc::new(TimestampMillisecondArray::from(values)),
                TimeUnit::Microsecond => Arc::new(TimestampMicrosecondArray::from(values)),
                TimeUnit::Nanosecond => Arc::new(TimestampNanosecondArray::from(values)),
            },
        }
    }
}

/// `chunk`'s `records` lines (each ended by `\n`) as a batch of `schema`,
/// when every line is a flat object read here (module docs); `None`
/// otherwise.
pub(super) fn read(chunk: &[u8], records: usize, schema: &SchemaRef) -> Option<RecordBatch> {
    let fields = schema.fields();
    if fields.len() > 64 {
        return None;
    }
    let mut columns: Vec<Column> = fields
        .iter()
        .map(|f| Column::new(f.data_type(), records))
        .collect::<Option<_>>()?;
    let names: Vec<&[u8]> = fields.iter().map(|f| f.name().as_bytes()).collect();
    let required: u64 = fields
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.is_nullable())
        .fold(0, |mask, (i, _)| mask | 1 << i);
    std::str::from_utf8(chunk).ok()?;
    let mut rows = 0;
    let mut at = 0;
    while at < chunk.len() {
        let end = at + memchr::memchr(b'\n', &chunk[at..])?;
        let (given, valued) = object(&chunk[at..end], &names, &mut columns)?;
        if valued & required != required {
            return None;
        }
        for (i, column) in columns.iter_mut().enumerate() {
            if given & (1 << i) == 0 {
                column.null();
            }
        }
        rows += 1;
        at = end + 1;
    }
    if rows != records {
        return None;
    }
    let arrays = columns.into_iter().map(Column::finish).collect();
    RecordBatch::try_new(Arc::clone(schema), arrays).ok()
}

/// Reads one line's object into the columns: the masks of the columns it
/// names and of those it gives a value (not `null`). The caller appends a
/// null to the columns it does not name.
fn object(line: &[u8], names: &[&[u8]], columns: &mut [Column]) -> Option<(u64, u64)> {
    let mut at = skip_space(line, 0);
    (line.get(at) == Some(&b'{')).then_some(())?;
    at = skip_space(line, at + 1);
    // The columns the line names, and those it gives a value (not null).
    let (mut given, mut valued) = (0u64, 0u64);
    if line.get(at) == Some(&b'}') {
        return (skip_space(line, at + 1) == line.len()).then_some((0, 0));
    }
    loop {
        let (key, len) = string(&line[at..])?;
        at = skip_space(line, at + len);
        (line.get(at) == Some(&b':')).then_some(())?;
        at = skip_space(line, at + 1);
        let rest = &line[at..];
        match names.iter().position(|name| *name == key) {
            Some(i) => {
                (given & (1 << i) == 0).then_some(())?;
                given |= 1 << i;
                if rest.starts_with(b"null") {
                    columns[i].null();
                    at += 4;
                } else {
                    at += columns[i].value(rest)?;
                    valued |= 1 << i;
                }
            }
            None => at += plain_value(rest)?,
        }
        at = skip_space(line, at);
        match line.get(at) {
            Some(b',') => at = skip_space(line, at + 1),
            Some(b'}') => break,
            _ => return None,
        }
    }
    (skip_space(line, at + 1) == line.len()).then_some((given, valued))
}

fn skip_space(text: &[u8], mut at: usize) -> usize {
    while matches!(text.get(at), Some(b' ' | b'\t')) {
        at += 1;
    }
    at
}

/// A JSON string without escapes or control characters at the start of
/// `text`: its content and the bytes it took.
fn string(text: &[u8]) -> Option<(&[u8], usize)> {
    (text.first() == Some(&b'"')).then_some(())?;
    let end = 1 + memchr::memchr2(b'"', b'\\', &text[1..])?;
    (text[end] == b'"').then_some(())?;
    let content = &text[1..end];
    content
        .iter()
        .all(|&b| b >= 0x20)
        .then_some((content, end + 1))
}

/// A JSON integer (`-?(0|[1-9][0-9]*)`, no fraction or exponent) at the
/// start of `text`, within `i64`: its value and the bytes it took.
fn integer(text: &[u8]) -> Option<(i64, usize)> {
    let negative = text.first() == Some(&b'-');
    let digits = &text[usize::from(negative)..];
    let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    if len == 0 || (len > 1 && digits[0] == b'0') {
        return None;
    }
    if matches!(digits.get(len), Some(b'.' | b'e' | b'E')) {
        return None;
    }
    let mut value: i64 = 0;
    for &b in &digits[..len] {
        let digit = i64::from(b - b'0');
        value = value.checked_mul(10)?;
        value = if negative {
            value.checked_sub(digit)?
        } else {
            value.checked_add(digit)?
        };
    }
    Some((value, usize::from(negative) + len))
}

/// The length of a value of a key the schema does not have, when it is a
/// plain one: an integer, a string without escapes, `true`, `false`,
/// `null`.
fn plain_value(text: &[u8]) -> Option<usize> {
    match text.first()? {
        b'"' => string(text).map(|(_, len)| len),
        b't' if text.starts_with(b"true") => Some(4),
        b'f' if text.starts_with(b"false") => Some(5),
        b'n' if text.starts_with(b"null") => Some(4),
        _ => integer(text).map(|(_, len)| len),
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::test_random::Random;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("n", DataType::Int32, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("ok", DataType::Boolean, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]))
    }

    /// arrow-json's batch of `chunk`, or `None` when it refuses it.
    fn arrows(chunk: &[u8], schema: &SchemaRef) -> Option<RecordBatch> {
        let mut decoder = arrow::json::ReaderBuilder::new(Arc::clone(schema))
            .build_decoder()
            .ok()?;
        crate::format::feed(chunk, |bytes| decoder.decode(bytes)).ok()?;
        decoder.flush().ok()?
    }

    /// Random lines of good and broken shapes: whatever is read here is
    /// what arrow-json reads, and the plain lines are read here.
    #[test]
    fn what_is_read_is_what_arrow_json_reads() {
        let values: [(&str, &[&str]); 6] = [
            (
                "id",
                &[
                    "1",
                    "-0",
                    "0",
                    "9223372036854775807",
                    "-9223372036854775808",
                    "9223372036854775808",
                    "01",
                    "1.5",
                    "1e3",
                    "\"7\"",
                    "null",
                    "true",
                ],
            ),
            (
                "n",
                &["5", "-2147483648", "2147483648", "null", "\"x\"", "[1]"],
            ),
            (
                "name",
                &[
                    "\"a\"",
                    "\"\"",
                    "\"é,\\\"x\"",
                    "\"a\\nb\"",
                    "3",
                    "null",
                    "{\"k\":1}",
                ],
            ),
            ("ok", &["true", "false", "null", "1", "\"true\"", "truex"]),
            (
                "ts",
                &[
                    "\"2023-11-14 22:13:20.123\"",
                    "\"2023-11-14T22:13:20\"",
                    "\"2023-02-30 00:00:00\"",
                    "1700000000000",
                    "null",
                    "\"2023-11-14 22:13:20Z\"",
                ],
            ),
            (
                "other",
                &["1", "\"x\"", "[1, 2]", "{}", "null", "-", "\"\\u0041\""],
            ),
        ];
        let schema = schema();
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        let (mut read, mut left) = (0, 0);
        for case in 0..2000u32 {
            let lines = 1 + random.next() % 3;
            let mut chunk = String::new();
            for _ in 0..lines {
                let plain = case.is_multiple_of(2);
                let mut fields = Vec::new();
                for (key, choices) in &values {
                    if random.next().is_multiple_of(6) && !(plain && *key == "id") {
                        continue;
                    }
                    let value = if plain {
                        choices[0]
                    } else {
                        random.pick(choices)
                    };
                    fields.push(format!("\"{key}\":{value}"));
                }
                if !plain && random.next().is_multiple_of(8) {
                    fields.push(format!("\"id\":{}", random.pick(values[0].1)));
                }
                let space = if random.next().is_multiple_of(4) {
                    " "
                } else {
                    ""
                };
                let tail = if !plain && random.next().is_multiple_of(10) {
                    random.pick(&["x", ",", " {}", "]"])
                } else {
                    ""
                };
                chunk.push_str(&format!(
                    "{space}{{{space}{}{space}}}{tail}\n",
                    fields.join(&format!(",{space}"))
                ));
            }
            let ours = read_chunk(chunk.as_bytes(), lines as usize, &schema);
            match &ours {
                Some(batch) => {
                    read += 1;
                    assert_eq!(
                        Some(batch),
                        arrows(chunk.as_bytes(), &schema).as_ref(),
                        "{chunk}"
                    );
                }
                None => left += 1,
            }
            if case.is_multiple_of(2) {
                assert!(ours.is_some(), "a plain chunk is read here: {chunk}");
            }
        }
        assert!(read > 1000 && left > 300, "read {read}, left {left}");
    }

    fn read_chunk(chunk: &[u8], records: usize, schema: &SchemaRef) -> Option<RecordBatch> {
        read(chunk, records, schema)
    }
}
