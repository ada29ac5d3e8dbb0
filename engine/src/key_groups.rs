//! Key groups: how a keyed operator's rows and state are split between the
//! tasks that run it side by side (`SET parallelism = N`).
//!
//! Every key belongs to one of [`KEY_GROUPS`] key groups, by a hash of its
//! values; a task owns a contiguous range of key groups. This is Flink's
//! design (its "max parallelism" is our fixed 128): the number of key
//! groups never changes, so state saved by a query at one parallelism is
//! restored at another by handing each task the saved ranges that overlap
//! its own (see `operators/partitioned.rs`).
//!
//! The hash is xxHash64 of each key column's value bytes, chained column
//! by column, and it depends only on the values and their types: never on
//! the process, the machine or the CPU (DataFusion's `create_hashes` uses
//! a random state, and ahash differs with AES instructions). A key saved
//! in one process is routed to the same group in the next.
//!
//! | type | bytes hashed |
//! |---|---|
//! | fixed-width (integers, dates, timestamps, decimals, durations) | the value's little-endian bytes |
//! | floats | the value's little-endian bytes, `-0.0` as `0.0` |
//! | strings and binaries (all encodings) | the bytes of the value |
//! | booleans | one byte, 0 or 1 |
//! | anything else | the value in Arrow's row format |
//!
//! A null hashes as a marker no value of the column has, so `NULL` and
//! `''` are different keys, as they are in `GROUP BY`. `-0.0` and `0.0`
//! are one key in `GROUP BY` and joins (DataFusion hashes them alike), so
//! they are one key here too. (Inside a struct or a list they are hashed
//! in the row format, which tells them apart.)

use std::ops::Range;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Float16Type, Float32Type, Float64Type};
use arrow::row::{RowConverter, SortField};
use twox_hash::XxHash64;

use crate::error::Result;

/// The number of key groups: the most tasks a keyed operator can run on.
pub const KEY_GROUPS: u16 = 128;

/// A range of key groups.
pub(crate) type GroupRange = Range<u16>;

/// The key groups task `task` of `tasks` owns: the `task`-th of `tasks`
/// ranges as equal as can be.
pub(crate) fn task_range(task: usize, tasks: usize) -> GroupRange {
    let groups = KEY_GROUPS as usize;
    (task * groups / tasks) as u16..((task + 1) * groups / tasks) as u16
}

/// The key group of each row whose key is `columns` (one array per key
/// column, all of the same length).
pub(crate) fn key_groups(
    columns: &[ArrayRef],
    rows: usize,
) -> Result<impl ExactSizeIterator<Item = u16>> {
    let mut hashes = vec![0u64; rows];
    for column in columns {
        hash_column(column, &mut hashes)?;
    }
    Ok(hashes.into_iter().map(|h| (h % KEY_GROUPS as u64) as u16))
}

/// The seed a null hashes with: its hash differs from every value's.
const NULL_MARK: &[u8] = b"\xffbrooklet-null";

/// Chains each row's hash with the row's value of `column`.
fn hash_column(column: &ArrayRef, hashes: &mut [u64]) -> Result<()> {
    let valid = |row: usize| column.is_valid(row);
    match column.data_type() {
        DataType::Utf8 => hash_bytes(
            hashes,
            column
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(str::as_bytes)),
        ),
        DataType::LargeUtf8 => hash_bytes(
            hashes,
            column
                .as_string::<i64>()
                .iter()
                .map(|v| v.map(str::as_bytes)),
        ),
        DataType::Utf8View => hash_bytes(
            hashes,
            column.as_string_view().iter().map(|v| v.map(str::as_bytes)),
        ),
        DataType::Binary => hash_bytes(hashes, column.as_binary::<i32>().iter()),
        DataType::LargeBinary => hash_bytes(hashes, column.as_binary::<i64>().iter()),
        DataType::BinaryView => hash_bytes(hashes, column.as_binary_view().iter()),
        DataType::Boolean => {
            let values = column.as_boolean();
            let byte = |v: bool| if v { &[1u8][..] } else { &[0u8][..] };
            hash_bytes(hashes, values.iter().map(|v| v.map(byte)));
        }
        // -0.0 is 0.0 (see the module docs).
        DataType::Float16 => hash_fixed(
            hashes,
            column.as_primitive::<Float16Type>().iter().map(|v| {
                v.map(|v| {
                    let bits = v.to_bits();
                    if bits & 0x7fff == 0 { 0 } else { bits }.to_le_bytes()
                })
            }),
        ),
        DataType::Float32 => hash_fixed(
            hashes,
            column
                .as_primitive::<Float32Type>()
                .iter()
                .map(|v| v.map(|v| if v == 0.0 { 0.0f32 } else { v }.to_le_bytes())),
        ),
        DataType::Float64 => hash_fixed(
            hashes,
            column
                .as_primitive::<Float64Type>()
                .iter()
                .map(|v| v.map(|v| if v == 0.0 { 0.0f64 } else { v }.to_le_bytes())),
        ),
        t if t.is_primitive() => {
            let width = t.primitive_width().unwrap_or(1);
            let data = column.to_data();
            let start = data.offset() * width;
            let values = data.buffers()[0].as_slice()[start..start + column.len() * width]
                .chunks_exact(width);
            match column.nulls() {
                None => hash_bytes(hashes, values.map(Some)),
                Some(nulls) => hash_bytes(
                    hashes,
                    values
                        .zip(nulls.iter())
                        .map(|(value, valid)| valid.then_some(value)),
                ),
            }
        }
        _ => {
            let converter = RowConverter::new(vec![SortField::new(column.data_type().clone())])?;
            let rows = converter.convert_columns(std::slice::from_ref(column))?;
            hash_bytes(
                hashes,
                (0..column.len()).map(|row| valid(row).then(|| rows.row(row).data())),
            );
        }
    }
    Ok(())
}

/// Chains each row's hash with its value's bytes, made for the purpose
/// (`None`: a null).
fn hash_fixed<const N: usize>(hashes: &mut [u64], values: impl Iterator<Item = Option<[u8; N]>>) {
    for (hash, value) in hashes.iter_mut().zip(values) {
        *hash = match value {
            Some(bytes) => XxHash64::oneshot(*hash, &bytes),
            None => XxHash64::oneshot(*hash, NULL_MARK),
        };
    }
}

/// Chains each row's hash with its value's bytes (`None`: a null).
fn hash_bytes<'a>(hashes: &mut [u64], values: impl Iterator<Item = Option<&'a [u8]>>) {
    for (hash, value) in hashes.iter_mut().zip(values) {
        *hash = XxHash64::oneshot(*hash, value.unwrap_or(NULL_MARK));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int32Array, Int64Array, StringArray, StringViewArray};

    use super::*;

    fn groups_of(columns: &[ArrayRef], rows: usize) -> Vec<u16> {
        key_groups(columns, rows).unwrap().collect()
    }

    #[test]
    fn task_ranges_cover_every_key_group_once() {
        for tasks in 1..=KEY_GROUPS as usize {
            let mut next = 0;
            for task in 0..tasks {
                let range = task_range(task, tasks);
                assert_eq!(range.start, next);
                assert!(!range.is_empty());
                next = range.end;
            }
            assert_eq!(next, KEY_GROUPS);
        }
    }

    #[test]
    fn a_key_has_the_same_group_in_every_batch_and_encoding() {
        let a: ArrayRef = Arc::new(StringArray::from(vec![
            Some("x"),
            None,
            Some(""),
            Some("x"),
        ]));
        let b: ArrayRef = Arc::new(StringViewArray::from(vec![
            Some("x"),
            None,
            Some(""),
            Some("x"),
        ]));
        let groups = groups_of(&[a], 4);
        assert_eq!(groups, groups_of(&[b], 4));
        assert_eq!(groups[0], groups[3]);
        let sliced: ArrayRef = Arc::new(Int64Array::from(vec![7, 8, 9, 7]).slice(1, 3));
        let whole: ArrayRef = Arc::new(Int64Array::from(vec![8, 9, 7]));
        assert_eq!(groups_of(&[sliced], 3), groups_of(&[whole], 3));
    }

    #[test]
    fn minus_zero_is_the_key_zero_and_other_floats_hash_their_bytes() {
        use arrow::array::{Float32Array, Float64Array};
        let doubles: ArrayRef = Arc::new(Float64Array::from(vec![0.0, -0.0, 2.5, f64::NAN]));
        let groups = groups_of(&[doubles], 4);
        assert_eq!(groups[0], groups[1]);
        let bits: ArrayRef = Arc::new(Int64Array::from(vec![2.5f64.to_bits() as i64]));
        assert_eq!(groups[2], groups_of(&[bits], 1)[0], "as the value's bytes");
        let floats: ArrayRef = Arc::new(Float32Array::from(vec![Some(-0.0), None, Some(0.0)]));
        let groups = groups_of(&[floats], 3);
        assert_eq!(groups[0], groups[2]);
    }

    #[test]
    fn keys_spread_over_all_groups() {
        let keys: ArrayRef = Arc::new(Int32Array::from_iter_values(0..100_000));
        let mut counts = vec![0usize; KEY_GROUPS as usize];
        for g in groups_of(&[keys], 100_000) {
            counts[g as usize] += 1;
        }
        let (least, most) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*least > 600 && *most < 950, "uneven: {least}..{most}");
    }

    #[test]
    fn the_group_of_a_key_is_fixed_across_processes() {
        // Saved state is routed by these numbers: they must never change.
        let keys: ArrayRef = Arc::new(Int64Array::from(vec![0, 1, 1000]));
        let names: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "c"]));
        let groups = groups_of(&[keys, names], 3);
        let expected: Vec<u16> = {
            let one = |k: i64, s: &str| {
                let h = XxHash64::oneshot(XxHash64::oneshot(0, &k.to_le_bytes()), s.as_bytes());
                (h % 128) as u16
            };
            vec![one(0, "a"), one(1, "b"), one(1000, "c")]
        };
        assert_eq!(groups, expected);
    }
}
