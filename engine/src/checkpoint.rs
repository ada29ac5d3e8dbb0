//! Checkpoints: a query's state and progress in a directory, so that a
//! restarted query resumes where it stopped (Spark Streaming's checkpoint
//! directory).
//!
//! A query's directory (`<checkpoint.dir>/<query name>/`) holds:
//!
//! - `metadata.json`: the query's text and output schema (its
//!   fingerprint), the batch interval and the query's zero time. Restoring
//!   into a different query is an error that shows both;
//! - `offsets/<batch time>.json`: what each source took for the batch (the
//!   files source: the files), written before the batch runs; a batch that
//!   runs again after a restart takes exactly that;
//! - `commit`: the time of the last batch whose output was delivered,
//!   rewritten after every batch;
//! - `state-<batch time>.bin`: every operator's state after that batch, one
//!   file per generation, written every `checkpoint.interval` batches. The
//!   two newest generations are kept: if the newest is damaged, the one
//!   before is used, and the message says so.
//!
//! - `lock`: held (`flock`, exclusive) by the one process running the
//!   query from this directory, and naming it (pid, host, since when). A
//!   second process, or a second context in the same process, that starts
//!   the query on the same directory fails at once with a message naming
//!   the holder, instead of both writing generations, offsets and commits
//!   over each other. The lock goes with the process (the kernel releases
//!   it at exit, `kill -9` included), so a stale `lock` file never blocks
//!   a restart.
//!
//! Every file is written to a temporary name, fsynced and renamed
//! (`crate::durable::write_atomically`), so a crash leaves either the
//! old file or the new one.
//!
//! A state file is `BROOKLET-STATE 2\n`, a little-endian `u64` header
//! length, a `u64` checksum (FNV-1a of header and payload), a JSON header
//! (batch time; per operator, its own metadata and the byte ranges of its
//! parts), then each part as an Arrow IPC stream, and `\nEND\n`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use serde_json::{Value, json};

use crate::durable::{write_atomically, write_with_crash_points};
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

fn damaged(message: String) -> Error {
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

/// What identifies a query across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    /// The query's text (or description).
    pub(crate) query: String,
    /// Its output schema, printed.
    pub(crate) schema: String,
}

impl Fingerprint {
    pub(crate) fn new(query: &str, schema: &SchemaRef) -> Self {
        let fields: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect();
        Fingerprint {
            query: query.trim().to_string(),
            schema: fields.join(", "),
        }
    }
}

/// A query's checkpoint directory.
#[derive(Debug, Clone)]
pub(crate) struct CheckpointDir {
    dir: PathBuf,
}

/// What a checkpoint directory says about a query that ran before.
#[derive(Debug)]
pub(crate) struct Restored {
    /// The query's zero time (the batch time before its first batch).
    pub(crate) zero: BatchTime,
    /// The last batch whose output was delivered.
    pub(crate) committed: Option<BatchTime>,
    /// The operators' states after batch `state_time`, if any was saved.
    pub(crate) state: Option<(BatchTime, Vec<StateReader>)>,
    /// Warnings for the user (a damaged generation that was skipped).
    pub(crate) warnings: Vec<String>,
    /// Bytes of the state file read.
    pub(crate) bytes: usize,
    /// What the sources took in the batches after the state, as logged
    /// before they ran: those batches run again with exactly that input.
    pub(crate) replay: BTreeMap<BatchTime, BTreeMap<String, Value>>,
}

/// The exclusive hold of one process on a query's checkpoint directory
/// (see the module docs); released when dropped.
#[derive(Debug)]
pub(crate) struct CheckpointLock {
    _file: fs::File,
}

/// This machine's name, for the lock file.
fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "an unknown host".into())
}

impl CheckpointDir {
    pub(crate) fn new(dir: impl Into<PathBuf>) -> Self {
        CheckpointDir { dir: dir.into() }
    }

    /// Takes the directory's lock for this process, or says who holds it.
    pub(crate) fn lock(&self) -> Result<CheckpointLock> {
        use std::io::{Read, Seek, Write};
        fs::create_dir_all(&self.dir).map_err(|e| self.io("create", &self.dir, e))?;
        let path = self.dir.join("lock");
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| self.io("open", &path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(Error::Checkpoint(format!(
                    "the checkpoint in {} is in use by {}; one process at a time runs a \
                     query from a checkpoint directory (stop that one, or use another directory)",
                    self.dir.display(),
                    if holder.is_empty() {
                        "another process"
                    } else {
                        holder
                    }
                )));
            }
            Err(fs::TryLockError::Error(e)) => return Err(self.io("lock", &path, e)),
        }
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let holder = format!(
            "pid {} on {} (since {since} ms after the epoch)\n",
            std::process::id(),
            host_name()
        );
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(holder.as_bytes()))
            .map_err(|e| self.io("write", &path, e))?;
        Ok(CheckpointLock { _file: file })
    }

    fn io(&self, what: &str, path: &Path, e: std::io::Error) -> Error {
        Error::Checkpoint(format!("cannot {what} {}: {e}", path.display()))
    }

    /// Opens the directory for `fingerprint`: what an earlier run left
    /// there, or `None` for a new query (whose metadata is then written,
    /// with `zero` and `interval`).
    pub(crate) fn open(
        &self,
        fingerprint: &Fingerprint,
        zero: BatchTime,
        interval_ms: i64,
    ) -> Result<Option<Restored>> {
        fs::create_dir_all(&self.dir).map_err(|e| self.io("create", &self.dir, e))?;
        let metadata = self.dir.join("metadata.json");
        if !metadata.exists() {
            let text = serde_json::to_vec_pretty(&json!({
                "query": fingerprint.query,
                "schema": fingerprint.schema,
                "interval_ms": interval_ms,
                "zero": zero.millis(),
            }))
            .map_err(|e| Error::Internal(format!("cannot encode metadata: {e}")))?;
            write_atomically(&metadata, &text)?;
            return Ok(None);
        }
        let text = fs::read(&metadata).map_err(|e| self.io("read", &metadata, e))?;
        let saved: Value = serde_json::from_slice(&text)
            .map_err(|e| Error::Checkpoint(format!("{} is unreadable: {e}", metadata.display())))?;
        let field = |name: &str| saved[name].as_str().unwrap_or_default().to_string();
        if field("query") != fingerprint.query || field("schema") != fingerprint.schema {
            return Err(Error::Checkpoint(format!(
                "the checkpoint in {} is of another query.\n  checkpointed: {}\n    ({})\n  this query:   {}\n    ({})\nUse another checkpoint directory, or remove this one to start over.",
                self.dir.display(),
                field("query"),
                field("schema"),
                fingerprint.query,
                fingerprint.schema
            )));
        }
        if saved["interval_ms"].as_i64() != Some(interval_ms) {
            return Err(Error::Checkpoint(format!(
                "the checkpoint in {} was taken with batch.interval = {} ms; this run has {interval_ms} ms",
                self.dir.display(),
                saved["interval_ms"]
            )));
        }
        let zero = BatchTime::from_millis(saved["zero"].as_i64().unwrap_or(zero.millis()));
        let committed = self.committed()?;
        let (state, bytes, warnings) = self.newest_state(committed)?;
        let replay = self.logged_offsets(state.as_ref().map_or(zero, |(t, _)| *t))?;
        Ok(Some(Restored {
            zero,
            committed,
            state,
            warnings,
            bytes,
            replay,
        }))
    }

    /// The newest state generation not after the last commit (a newer one
    /// is of a batch whose output was not delivered) that decodes, with its
    /// size, and a warning for each damaged one skipped.
    #[allow(clippy::type_complexity)]
    fn newest_state(
        &self,
        committed: Option<BatchTime>,
    ) -> Result<(Option<(BatchTime, Vec<StateReader>)>, usize, Vec<String>)> {
        let mut warnings = Vec::new();
        let usable: Vec<(BatchTime, PathBuf)> = self
            .generations()?
            .into_iter()
            .rev()
            .filter(|(time, _)| committed.is_some_and(|c| *time <= c))
            .collect();
        for (i, (_, path)) in usable.iter().enumerate() {
            let loaded = fs::read(path)
                .map_err(|e| self.io("read", path, e))
                .and_then(|bytes| Ok((bytes.len(), decode(&bytes)?)));
            match loaded {
                Ok((bytes, loaded)) => return Ok((Some(loaded), bytes, warnings)),
                Err(e) => warnings.push(format!(
                    "checkpoint state {} is damaged ({e}); {}",
                    path.display(),
                    if i + 1 < usable.len() {
                        "using the one before"
                    } else {
                        "there is no older one, so the query resumes without its state"
                    }
                )),
            }
        }
        Ok((None, 0, warnings))
    }

    /// Where a restarted query resumes: after the batch of its newest good
    /// state, or after its zero when it has none; `None` for a new query.
    pub(crate) fn resume_point(&self) -> Result<Option<BatchTime>> {
        let metadata = self.dir.join("metadata.json");
        let Ok(text) = fs::read(&metadata) else {
            return Ok(None);
        };
        let saved: Value = serde_json::from_slice(&text)
            .map_err(|e| Error::Checkpoint(format!("{} is unreadable: {e}", metadata.display())))?;
        let zero = BatchTime::from_millis(saved["zero"].as_i64().unwrap_or_default());
        let (state, _, _) = self.newest_state(self.committed()?)?;
        Ok(Some(state.map_or(zero, |(t, _)| t)))
    }

    /// Logs what each source took for batch `time`, before it runs.
    pub(crate) fn log_offsets(
        &self,
        time: BatchTime,
        offsets: &BTreeMap<String, Value>,
    ) -> Result<()> {
        let dir = self.dir.join("offsets");
        fs::create_dir_all(&dir).map_err(|e| self.io("create", &dir, e))?;
        let text = serde_json::to_vec(offsets)
            .map_err(|e| Error::Internal(format!("cannot encode offsets: {e}")))?;
        write_atomically(&dir.join(format!("{}.json", time.millis())), &text)
    }

    /// The offsets logged for batches after `after`, by batch time.
    fn logged_offsets(
        &self,
        after: BatchTime,
    ) -> Result<BTreeMap<BatchTime, BTreeMap<String, Value>>> {
        let mut logged = BTreeMap::new();
        for (time, path) in self.offset_files()? {
            if time <= after {
                continue;
            }
            let text = fs::read(&path).map_err(|e| self.io("read", &path, e))?;
            // A log entry cut by a crash cannot exist (atomic writes); one that
            // does not parse is damage worth stopping for.
            let offsets: BTreeMap<String, Value> = serde_json::from_slice(&text)
                .map_err(|e| Error::Checkpoint(format!("{} is damaged: {e}", path.display())))?;
            logged.insert(time, offsets);
        }
        Ok(logged)
    }

    /// The offset log's entries, oldest first.
    fn offset_files(&self) -> Result<Vec<(BatchTime, PathBuf)>> {
        let dir = self.dir.join("offsets");
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.io("list", &dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(time) = name
                .strip_suffix(".json")
                .and_then(|t| t.parse::<i64>().ok())
            {
                found.push((BatchTime::from_millis(time), entry.path()));
            }
        }
        found.sort();
        Ok(found)
    }

    /// The last committed batch.
    fn committed(&self) -> Result<Option<BatchTime>> {
        let path = self.dir.join("commit");
        match fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse()
                .map(|t| Some(BatchTime::from_millis(t)))
                .map_err(|_| Error::Checkpoint(format!("{} is damaged", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io("read", &path, e)),
        }
    }

    /// State generations, oldest first.
    fn generations(&self) -> Result<Vec<(BatchTime, PathBuf)>> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| self.io("list", &self.dir, e))? {
            let entry = entry.map_err(|e| self.io("list", &self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(time) = name
                .strip_prefix("state-")
                .and_then(|n| n.strip_suffix(".bin"))
                .and_then(|t| t.parse::<i64>().ok())
            {
                found.push((BatchTime::from_millis(time), entry.path()));
            }
        }
        found.sort();
        Ok(found)
    }

    /// Saves the operators' states after batch `time` (pruned after the
    /// batch commits, see [`CheckpointDir::commit`]).
    pub(crate) fn save_state(&self, time: BatchTime, operators: Vec<StateWriter>) -> Result<usize> {
        let bytes = encode(time, operators)?;
        let path = self.dir.join(format!("state-{}.bin", time.millis()));
        write_with_crash_points(&path, &bytes, None, Some("state-written"))?;
        Ok(bytes.len())
    }

    /// Keeps the two newest committed state generations (and any newer,
    /// not yet committed one), and the offsets after the older of the two:
    /// what a restart can need, even if the newest state is damaged. With
    /// one committed generation nothing is pruned (a restart without state
    /// replays from the start).
    fn prune(&self, committed: BatchTime) -> Result<()> {
        let generations = self.generations()?;
        let kept: Vec<BatchTime> = generations
            .iter()
            .map(|(t, _)| *t)
            .filter(|t| *t <= committed)
            .rev()
            .take(2)
            .collect();
        let [_, oldest] = kept.as_slice() else {
            return Ok(());
        };
        for (time, path) in &generations {
            if time < oldest {
                fs::remove_file(path).map_err(|e| self.io("remove", path, e))?;
            }
        }
        for (time, path) in self.offset_files()? {
            if time <= *oldest {
                fs::remove_file(&path).map_err(|e| self.io("remove", &path, e))?;
            }
        }
        Ok(())
    }

    pub(crate) fn commit(&self, time: BatchTime) -> Result<()> {
        write_atomically(
            &self.dir.join("commit"),
            time.millis().to_string().as_bytes(),
        )?;
        self.prune(time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
    }

    #[test]
    fn one_holder_at_a_time_and_the_second_learns_who() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = CheckpointDir::new(dir.path().join("q1"));
        let held = checkpoint.lock().unwrap();
        let e = checkpoint.lock().unwrap_err().to_string();
        assert!(
            e.contains("is in use by") && e.contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
        drop(held);
        let _again = checkpoint.lock().unwrap();
    }

    #[test]
    fn state_files_round_trip_and_damage_is_detected() {
        let mut one = StateWriter::default();
        one.batch("keys", batch(&[1, 2, 3]));
        one.value("numbers", json!([4, 5]));
        let two = StateWriter::default();
        let bytes = encode(BatchTime::from_millis(7000), vec![one, two]).unwrap();
        let (time, operators) = decode(&bytes).unwrap();
        assert_eq!(time.millis(), 7000);
        assert_eq!(operators.len(), 2);
        assert_eq!(operators[0].batch("keys").unwrap(), &batch(&[1, 2, 3]));
        assert_eq!(operators[0].i64s("numbers").unwrap(), vec![4, 5]);
        assert!(decode(&bytes[..bytes.len() - 3]).is_err());
        let mut flipped = bytes.clone();
        let at = flipped.len() - 20;
        flipped[at] ^= 0xff;
        let e = decode(&flipped).unwrap_err().to_string();
        assert!(e.contains("checksum does not match"), "{e}");
    }

    #[test]
    fn a_different_query_is_refused_and_the_newest_good_generation_is_used() {
        let temporary = tempfile::tempdir().unwrap();
        let dir = temporary.path().to_path_buf();
        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let checkpoint = CheckpointDir::new(&dir);
        let print = Fingerprint::new("SELECT n FROM s", &schema);
        assert!(
            checkpoint
                .open(&print, BatchTime::from_millis(0), 1000)
                .unwrap()
                .is_none()
        );
        for t in [1000, 2000, 3000] {
            let mut state = StateWriter::default();
            state.value("t", json!(t));
            checkpoint
                .save_state(BatchTime::from_millis(t), vec![state])
                .unwrap();
            checkpoint.commit(BatchTime::from_millis(t)).unwrap();
        }
        assert!(!dir.join("state-1000.bin").exists(), "pruned");
        // The newest generation is damaged: the one before is used.
        fs::write(dir.join("state-3000.bin"), b"garbage").unwrap();
        let restored = checkpoint
            .open(&print, BatchTime::from_millis(0), 1000)
            .unwrap()
            .unwrap();
        let (time, state) = restored.state.unwrap();
        assert_eq!(time.millis(), 2000);
        assert_eq!(state[0].i64("t").unwrap(), 2000);
        assert_eq!(restored.warnings.len(), 1);
        assert!(restored.warnings[0].contains("using the one before"));
        // Both are damaged: no older one is claimed.
        fs::write(dir.join("state-2000.bin"), b"garbage").unwrap();
        let restored = checkpoint
            .open(&print, BatchTime::from_millis(0), 1000)
            .unwrap()
            .unwrap();
        assert!(restored.state.is_none());
        assert!(restored.warnings[0].contains("using the one before"));
        assert!(
            restored.warnings[1].contains("there is no older one"),
            "{:?}",
            restored.warnings
        );
        let other = Fingerprint::new("SELECT n + 1 FROM s", &schema);
        let e = checkpoint
            .open(&other, BatchTime::from_millis(0), 1000)
            .unwrap_err();
        assert!(e.to_string().contains("is of another query"), "{e}");
        assert!(e.to_string().contains("SELECT n + 1 FROM s"), "{e}");
    }
}
