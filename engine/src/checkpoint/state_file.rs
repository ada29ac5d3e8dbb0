//! A state file: every operator's state after one batch, in one file
//! that says when it is damaged.
//!
//! `BROOKLET-STATE 3\n`, a little-endian `u64` header length, a `u64`
//! checksum (xxHash64 of header and payload; FNV-1a in version 2, which
//! was ten times slower than writing the file), a JSON header (batch time;
//! per operator, its own metadata and its parts), then the parts written
//! in this file, each an Arrow IPC stream, and `\nEND\n`.
//!
//! A part is in this file's payload (`start`..`end`), or, when it has not
//! changed since an earlier generation wrote it, in that file's payload
//! (`"in": <its batch time>`): a checkpoint writes only what changed (see
//! [`super::chain`]). Reading a generation reads the files it refers to and
//! checks each one's checksum. Version 2 files (every part inline) read
//! the same way.

use std::collections::BTreeMap;
use std::io::Cursor;

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::time::BatchTime;

const MAGIC: &[u8] = b"BROOKLET-STATE 3\n";
const MAGIC_V2: &[u8] = b"BROOKLET-STATE 2\n";
const TRAILER: &[u8] = b"\nEND\n";

/// One operator's state, being written: named Arrow batches and JSON
/// values.
#[derive(Default)]
pub(crate) struct StateWriter {
    meta: serde_json::Map<String, Value>,
    parts: Vec<(String, Part)>,
    /// The parts an earlier generation holds: name → the identity of what
    /// it holds (see [`StateWriter::batch_once`]).
    written: std::collections::HashMap<String, u64>,
}

/// A part of a state being written.
pub(crate) enum Part {
    /// Written in this file; with an identity when it is immutable.
    New(Option<u64>, RecordBatch),
    /// What an earlier generation wrote under this name and identity.
    Unchanged(u64),
}

impl StateWriter {
    /// A writer for a state whose parts `written` (name → identity) an
    /// earlier generation holds.
    pub(crate) fn continuing(written: std::collections::HashMap<String, u64>) -> Self {
        StateWriter {
            written,
            ..StateWriter::default()
        }
    }

    /// Adds a batch under `name`.
    pub(crate) fn batch(&mut self, name: impl Into<String>, batch: RecordBatch) {
        self.parts.push((name.into(), Part::New(None, batch)));
    }

    /// Adds the immutable batch `id` under `name`: not written again (nor
    /// made) when an earlier generation wrote the same `id` under it. An
    /// `id` names one content for the process's life (see
    /// `Partial`'s ids).
    pub(crate) fn batch_once(
        &mut self,
        name: impl Into<String>,
        id: u64,
        make: impl FnOnce() -> Result<RecordBatch>,
    ) -> Result<()> {
        let name = name.into();
        let part = match self.written.get(&name) {
            Some(&written) if written == id => Part::Unchanged(id),
            _ => Part::New(Some(id), make()?),
        };
        self.parts.push((name, part));
        Ok(())
    }

    /// Adds a JSON value under `name`.
    pub(crate) fn value(&mut self, name: &str, value: Value) {
        self.meta.insert(name.to_string(), value);
    }

    /// A writer for a part of this state saved under `prefix` (one task of
    /// a partitioned operator): it knows what an earlier generation wrote
    /// under that prefix. Put it back with [`StateWriter::adopt`].
    pub(crate) fn child(&self, prefix: &str) -> StateWriter {
        let written = self
            .written
            .iter()
            .filter_map(|(name, &id)| {
                let rest = name.strip_prefix(prefix)?.strip_prefix('/')?;
                Some((rest.to_string(), id))
            })
            .collect();
        StateWriter::continuing(written)
    }

    /// Adds what `child` (from [`StateWriter::child`]) wrote, under
    /// `prefix`: its values as one object, its parts as `prefix/name`.
    pub(crate) fn adopt(&mut self, prefix: &str, child: StateWriter) {
        self.meta
            .insert(prefix.to_string(), Value::Object(child.meta));
        self.parts.extend(
            child
                .parts
                .into_iter()
                .map(|(name, part)| (format!("{prefix}/{name}"), part)),
        );
    }
}

/// One operator's state, being read.
#[derive(Debug)]
pub(crate) struct StateReader {
    meta: serde_json::Map<String, Value>,
    parts: BTreeMap<String, RecordBatch>,
}

impl StateReader {
    /// What [`StateWriter::adopt`] saved under `prefix`.
    pub(crate) fn child(&self, prefix: &str) -> Result<StateReader> {
        let meta = match self.value(prefix)? {
            Value::Object(meta) => meta.clone(),
            _ => {
                return Err(damaged(format!(
                    "the state value '{prefix}' is not an object"
                )));
            }
        };
        let parts = self
            .parts
            .iter()
            .filter_map(|(name, batch)| {
                let rest = name.strip_prefix(prefix)?.strip_prefix('/')?;
                Some((rest.to_string(), batch.clone()))
            })
            .collect();
        Ok(StateReader { meta, parts })
    }

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

/// Where a part's bytes are: a file's batch time and the range in its
/// payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    /// The batch time of the state file holding it.
    pub(crate) file: BatchTime,
    /// Its first byte in that file's payload.
    pub(crate) start: u64,
    /// One past its last byte.
    pub(crate) end: u64,
}

/// What encoding a generation learned: per operator, each immutable part
/// written (name → identity and location), and the payload's size.
pub(crate) struct Encoded {
    /// The file's bytes.
    pub(crate) bytes: Vec<u8>,
    /// Per operator: name → (identity, location) of its immutable parts.
    pub(crate) parts: Vec<std::collections::HashMap<String, (u64, Location)>>,
    /// The payload's size in bytes.
    pub(crate) payload: u64,
}

/// Encodes the operators' states after batch `time` as one state file;
/// `earlier(operator, name)` is where an earlier generation wrote a part
/// that is [`Part::Unchanged`].
pub(crate) fn encode(
    time: BatchTime,
    operators: Vec<StateWriter>,
    earlier: impl Fn(usize, &str) -> Option<(u64, Location)>,
) -> Result<Encoded> {
    let mut payload = Vec::new();
    let mut described = Vec::new();
    let mut immutable = Vec::with_capacity(operators.len());
    for (index, operator) in operators.into_iter().enumerate() {
        let mut parts = Vec::new();
        let mut known = std::collections::HashMap::new();
        for (name, part) in operator.parts {
            match part {
                Part::New(id, batch) => {
                    let start = payload.len();
                    let mut writer = StreamWriter::try_new(&mut payload, &batch.schema())?;
                    writer.write(&batch)?;
                    writer.finish()?;
                    drop(writer);
                    let end = payload.len();
                    parts.push(json!({"name": name, "start": start, "end": end}));
                    if let Some(id) = id {
                        let at = Location {
                            file: time,
                            start: start as u64,
                            end: end as u64,
                        };
                        known.insert(name, (id, at));
                    }
                }
                Part::Unchanged(id) => {
                    let at = match earlier(index, &name) {
                        Some((written, at)) if written == id => at,
                        _ => {
                            return Err(Error::Internal(format!(
                                "state part '{name}' was to be unchanged, but no generation holds it"
                            )));
                        }
                    };
                    parts.push(json!({
                        "name": name, "in": at.file.millis(), "start": at.start, "end": at.end
                    }));
                    known.insert(name, (id, at));
                }
            }
        }
        immutable.push(known);
        described.push(json!({"meta": Value::Object(operator.meta), "parts": parts}));
    }
    let header = serde_json::to_vec(&json!({"time": time.millis(), "operators": described}))
        .map_err(|e| Error::Internal(format!("cannot encode a state header: {e}")))?;
    let mut out = Vec::with_capacity(MAGIC.len() + 16 + header.len() + payload.len() + 5);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&checksum(MAGIC, &[&header, &payload]).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&payload);
    out.extend_from_slice(TRAILER);
    Ok(Encoded {
        bytes: out,
        parts: immutable,
        payload: payload.len() as u64,
    })
}

/// The checksum of `parts` in the file version `magic` names: catches a
/// flipped or lost byte. xxHash64 (version 3), or FNV-1a (version 2).
fn checksum(magic: &[u8], parts: &[&[u8]]) -> u64 {
    use std::hash::Hasher;
    if magic == MAGIC_V2 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &byte in parts.iter().copied().flatten() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        return hash;
    }
    let mut hash = twox_hash::XxHash64::with_seed(0);
    for part in parts {
        hash.write(part);
    }
    hash.finish()
}

/// A state file checked and split: its header and its payload.
pub(crate) struct Checked<'a> {
    /// The JSON header.
    pub(crate) header: Value,
    /// The parts written in it.
    pub(crate) payload: &'a [u8],
}

/// Checks a state file's framing and checksum.
pub(crate) fn check(bytes: &[u8]) -> Result<Checked<'_>> {
    let magic = [MAGIC, MAGIC_V2]
        .into_iter()
        .find(|m| bytes.starts_with(m))
        .ok_or_else(|| damaged("not a Brooklet state file".into()))?;
    let rest = &bytes[magic.len()..];
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
    if checksum(magic, &[header_bytes, payload]) != sum {
        return Err(damaged("its checksum does not match".into()));
    }
    let header: Value = serde_json::from_slice(header_bytes)
        .map_err(|e| damaged(format!("unreadable header: {e}")))?;
    Ok(Checked { header, payload })
}

/// The earlier files a state file's parts are in, by batch time.
pub(crate) fn referenced(header: &Value) -> std::collections::BTreeSet<BatchTime> {
    let operators = header["operators"].as_array().into_iter().flatten();
    let parts = operators.flat_map(|o| o["parts"].as_array().into_iter().flatten());
    parts
        .filter_map(|p| p["in"].as_i64())
        .map(BatchTime::from_millis)
        .collect()
}

/// Decodes a state file: its batch time and each operator's state; parts
/// in earlier files are read from `earlier(batch time)`, the payload of
/// that file, already checked.
pub(crate) fn decode(
    bytes: &[u8],
    earlier: impl Fn(BatchTime) -> Result<bytes::Bytes>,
) -> Result<(BatchTime, Vec<StateReader>)> {
    let Checked { header, payload } = check(bytes)?;
    let time = header["time"]
        .as_i64()
        .ok_or_else(|| damaged("no batch time".into()))?;
    let mut files: BTreeMap<i64, bytes::Bytes> = BTreeMap::new();
    for file in referenced(&header) {
        files.insert(file.millis(), earlier(file)?);
    }
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
            let holder = match part["in"].as_i64() {
                None => payload,
                Some(file) => &files[&file][..],
            };
            let bytes = holder
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
