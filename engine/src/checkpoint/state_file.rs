//! A state file: every operator's state after one batch, in one file
//! that says when it is damaged.
//!
//! `BROOKLET-STATE 2\n`, a little-endian `u64` header length, a `u64`
//! checksum (FNV-1a of header and payload), a JSON header (batch time;
//! per operator, its own metadata and the byte ranges of its parts), then
//! each part as an Arrow IPC stream, and `\nEND\n`.

use std::collections::BTreeMap;
use std::io::Cursor;

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::time::BatchTime;

const MAGIC: &[u8] = b"BROOKLET-STATE 2\n";
const TRAILER: &[u8] = b"\nEND\n";

/// One operator's state, being written: named Arrow batches and JSON
/// values.
#[derive(Default)]
pub(crate) struct StateWriter {
    meta: serde_json::Map<String, Value>,
    parts: Vec<(String, RecordBatch)>,
}

impl StateWriter {
    /// Adds a batch under `name`.
    pub(crate) fn batch(&mut self, name: impl Into<String>, batch: RecordBatch) {
        self.parts.push((name.into(), batch));
    }

    /// Adds a JSON value under `name`.
    pub(crate) fn value(&mut self, name: &str, value: Value) {
        self.meta.insert(name.to_string(), value);
    }
}

/// One operator's state, being read.
#[derive(Debug)]
pub(crate) struct StateReader {
    meta: serde_json::Map<String, Value>,
    parts: BTreeMap<String, RecordBatch>,
}

impl StateReader {
    /// The batch stored under `name`.
    pub(crate) fn batch(&self, name: &str) -> Result<&RecordBatch> {
        self.parts
            .get(name)
            .ok_or_else(|| damaged(format!("the state part '{name}' is missing")))
    }

    /// Whether a batch is stored under `name`.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.parts.contains_key(name)
    }

    /// Whether a value is stored under `name`.
    pub(crate) fn has_value(&self, name: &str) -> bool {
        self.meta.contains_key(name)
    }

    /// The value stored under `name`.
    pub(crate) fn value(&self, name: &str) -> Result<&Value> {
        self.meta
            .get(name)
            .ok_or_else(|| damaged(format!("the state value '{name}' is missing")))
    }

    /// The integer stored under `name`.
    pub(crate) fn i64(&self, name: &str) -> Result<i64> {
        self.value(name)?
            .as_i64()
            .ok_or_else(|| damaged(format!("the state value '{name}' is not an integer")))
    }

    /// The integers stored under `name`.
    pub(crate) fn i64s(&self, name: &str) -> Result<Vec<i64>> {
        self.value(name)?
            .as_array()
            .and_then(|a| a.iter().map(Value::as_i64).collect())
            .ok_or_else(|| {
                damaged(format!(
                    "the state value '{name}' is not a list of integers"
                ))
            })
    }
}

pub(super) fn damaged(message: String) -> Error {
    Error::Checkpoint(format!("damaged state: {message}"))
}

/// Encodes the operators' states after batch `time` as one state file.
pub(crate) fn encode(time: BatchTime, operators: Vec<StateWriter>) -> Result<Vec<u8>> {
    let mut payload = Vec::new();
    let mut described = Vec::new();
    for operator in operators {
        let mut parts = Vec::new();
        for (name, batch) in operator.parts {
            let start = payload.len();
            let mut writer = StreamWriter::try_new(&mut payload, &batch.schema())?;
            writer.write(&batch)?;
            writer.finish()?;
            drop(writer);
            parts.push(json!({"name": name, "start": start, "end": payload.len()}));
        }
        described.push(json!({"meta": Value::Object(operator.meta), "parts": parts}));
    }
    let header = serde_json::to_vec(&json!({"time": time.millis(), "operators": described}))
        .map_err(|e| Error::Internal(format!("cannot encode a state header: {e}")))?;
    let mut out = Vec::with_capacity(MAGIC.len() + 16 + header.len() + payload.len() + 5);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&checksum(&[&header, &payload]).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&payload);
    out.extend_from_slice(TRAILER);
    Ok(out)
}

/// FNV-1a (64 bits) over `parts`: catches a flipped or lost byte.
fn checksum(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &byte in *part {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// Decodes a state file: its batch time and each operator's state.
pub(crate) fn decode(bytes: &[u8]) -> Result<(BatchTime, Vec<StateReader>)> {
    let rest = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| damaged("not a Brooklet state file".into()))?;
    let rest = rest
        .strip_suffix(TRAILER)
        .ok_or_else(|| damaged("the file is cut short".into()))?;
    if rest.len() < 16 {
        return Err(damaged("the file is cut short".into()));
    }
    let header_len = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes")) as usize;
    let sum = u64::from_le_bytes(rest[8..16].try_into().expect("8 bytes"));
    let header_bytes = rest
        .get(16..16usize.saturating_add(header_len))
        .ok_or_else(|| damaged("the header is cut short".into()))?;
    let payload = &rest[16 + header_len..];
    if checksum(&[header_bytes, payload]) != sum {
        return Err(damaged("its checksum does not match".into()));
    }
    let header: Value = serde_json::from_slice(header_bytes)
        .map_err(|e| damaged(format!("unreadable header: {e}")))?;
    let time = header["time"]
        .as_i64()
        .ok_or_else(|| damaged("no batch time".into()))?;
    let mut operators = Vec::new();
    for operator in header["operators"]
        .as_array()
        .ok_or_else(|| damaged("no operators".into()))?
    {
        let meta = operator["meta"].as_object().cloned().unwrap_or_default();
        let mut parts = BTreeMap::new();
        for part in operator["parts"].as_array().into_iter().flatten() {
            let (Some(name), Some(start), Some(end)) = (
                part["name"].as_str(),
                part["start"].as_u64(),
                part["end"].as_u64(),
            ) else {
                return Err(damaged("a part without name or range".into()));
            };
            let bytes = payload
                .get(start as usize..end as usize)
                .ok_or_else(|| damaged(format!("part '{name}' is out of range")))?;
            let mut reader = StreamReader::try_new(Cursor::new(bytes), None)?;
            let batch = match reader.next() {
                Some(batch) => batch?,
                None => RecordBatch::new_empty(reader.schema()),
            };
            parts.insert(name.to_string(), batch);
        }
        operators.push(StateReader { meta, parts });
    }
    Ok((BatchTime::from_millis(time), operators))
}
