//! Checkpoints: a query's state and progress in a directory, so that a
//! restarted query resumes where it stopped (Spark Streaming's checkpoint
//! directory). The directory is local or in an object store
//! (`s3://bucket/jobs/`, see [`crate::storage`]); the same files are in
//! both.
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
//!   rewritten after every batch (on an object store, also the lease that
//!   keeps a second process out: `lock.rs`);
//! - `state-<batch time>.bin`: every operator's state after that batch, one
//!   file per generation (`state_file.rs`), written every
//!   `checkpoint.interval` batches. A generation writes only the parts
//!   that changed and refers to earlier files for the rest (`chain.rs`).
//!   The two newest generations are kept, with the files they refer to:
//!   if the newest is damaged, the one before is used, and the message
//!   says so;
//! - `lock` (local only): held by the one process running the query
//!   (`lock.rs`).
//!
//! Every file is written whole and atomically ([`Dir::write`]: locally a
//! temporary file, fsynced and renamed, then the directory fsynced — for a
//! state file, by the commit's write that follows it; on an object store
//! one PUT), so a crash leaves either the old file or the new one. No step needs a
//! rename across files.
//!
//! **Crash by crash** (the order of one batch, then what a restart does):
//!
//! 1. the offsets are logged (`offsets/<t>.json`) — a crash before leaves
//!    no trace of the batch, which runs afresh after the restart; a crash
//!    after replays it with exactly the logged input;
//! 2. the batch runs and its output is written (the files sink: one file
//!    per batch time, rewritten with the same bytes when the batch runs
//!    again) — a crash here re-runs the batch from the log;
//! 3. the state is saved (`state-<t>.bin`, when due) — a state newer than
//!    the last commit is never used (its batch's output was not
//!    committed), so a crash here also re-runs the batch. Steps 3 to 5 run
//!    on the query's checkpoint writer while batch `t + 1` runs
//!    (`writer.rs`): the snapshot is taken on the batch's path, the disk
//!    is waited for off it;
//! 4. `commit` names `t` (on an object store: a conditional write of the
//!    version this process wrote before, which fails if another process
//!    took over) — after it, the batch is done;
//! 5. when a state was saved, generations and offsets older than the two
//!    newest committed states are removed, but for the files those two
//!    refer to — a crash leaves extra files, removed next time.
//!
//! A restart loads the newest state not after the commit, re-runs the
//! logged batches after it with their logged input, then the batches whose
//! times passed while it was down.

mod chain;
mod lock;
mod state_file;
mod writer;

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::storage::Dir;
use crate::time::BatchTime;

pub(crate) use chain::Chain;
pub(crate) use lock::CheckpointLock;
pub(crate) use state_file::{StateReader, StateWriter};
use state_file::{check, decode, encode, referenced};
pub(crate) use writer::{CheckpointWriter, Written};

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
    dir: Dir,
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

/// The newest usable state generation, its size, and the warnings about
/// damaged ones skipped.
type NewestState = (Option<(BatchTime, Vec<StateReader>)>, usize, Vec<String>);

const METADATA: &str = "metadata.json";

impl CheckpointDir {
    pub(crate) fn new(dir: Dir) -> Self {
        CheckpointDir { dir }
    }

    /// Takes the directory for this process, or says who holds it;
    /// `interval` is the batch interval (an object store's lease lasts
    /// three).
    pub(crate) fn lock(&self, interval: Duration) -> Result<CheckpointLock> {
        lock::lock(&self.dir, interval)
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
        self.dir.create()?;
        let Some(saved) = self.metadata()? else {
            let text = serde_json::to_vec_pretty(&json!({
                "query": fingerprint.query,
                "schema": fingerprint.schema,
                "interval_ms": interval_ms,
                "zero": zero.millis(),
            }))
            .map_err(|e| Error::Internal(format!("cannot encode metadata: {e}")))?;
            self.dir.write(METADATA, text)?;
            return Ok(None);
        };
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
    fn newest_state(&self, committed: Option<BatchTime>) -> Result<NewestState> {
        let mut warnings = Vec::new();
        let usable: Vec<(BatchTime, String)> = self
            .generations()?
            .into_iter()
            .rev()
            .filter(|(time, _)| committed.is_some_and(|c| *time <= c))
            .collect();
        for (i, (_, name)) in usable.iter().enumerate() {
            let read = std::cell::Cell::new(0);
            let loaded = self.read_state(name).and_then(|bytes| {
                read.set(bytes.len());
                let decoded = decode(&bytes, |file| {
                    let (all, payload) = self.payload(file)?;
                    read.set(read.get() + all);
                    Ok(payload)
                })?;
                Ok((read.get(), decoded))
            });
            match loaded {
                Ok((bytes, loaded)) => return Ok((Some(loaded), bytes, warnings)),
                Err(e) => warnings.push(format!(
                    "checkpoint state {} is damaged ({e}); {}",
                    self.dir.display_file(name),
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

    /// The bytes of state file `name`.
    fn read_state(&self, name: &str) -> Result<bytes::Bytes> {
        self.dir
            .read(name)?
            .ok_or_else(|| Error::Checkpoint("it is gone".into()))
    }

    /// The checked payload of generation `time`'s file (which a later one
    /// refers to), and the file's size.
    fn payload(&self, time: BatchTime) -> Result<(usize, bytes::Bytes)> {
        let name = state_file_name(time);
        let bytes = self.read_state(&name).map_err(|e| {
            Error::Checkpoint(format!("{} is needed: {e}", self.dir.display_file(&name)))
        })?;
        let payload = check(&bytes)?.payload;
        let start = payload.as_ptr() as usize - bytes.as_ptr() as usize;
        let range = start..start + payload.len();
        Ok((bytes.len(), bytes.slice(range)))
    }

    /// Where a restarted query resumes: after the batch of its newest good
    /// state, or after its zero when it has none; `None` for a new query.
    pub(crate) fn resume_point(&self) -> Result<Option<BatchTime>> {
        let Some(saved) = self.metadata()? else {
            return Ok(None);
        };
        let zero = BatchTime::from_millis(saved["zero"].as_i64().unwrap_or_default());
        let (state, _, _) = self.newest_state(self.committed()?)?;
        Ok(Some(state.map_or(zero, |(t, _)| t)))
    }

    /// What `metadata.json` says, if it is there.
    fn metadata(&self) -> Result<Option<Value>> {
        let Some(text) = self.dir.read(METADATA)? else {
            return Ok(None);
        };
        serde_json::from_slice(&text).map(Some).map_err(|e| {
            Error::Checkpoint(format!(
                "{} is unreadable: {e}",
                self.dir.display_file(METADATA)
            ))
        })
    }

    fn offsets_dir(&self) -> Dir {
        self.dir.join("offsets")
    }

    /// Logs what each source took for batch `time`, before it runs.
    pub(crate) fn log_offsets(
        &self,
        time: BatchTime,
        offsets: &BTreeMap<String, Value>,
    ) -> Result<()> {
        let dir = self.offsets_dir();
        dir.create()?;
        let text = serde_json::to_vec(offsets)
            .map_err(|e| Error::Internal(format!("cannot encode offsets: {e}")))?;
        dir.write(&format!("{}.json", time.millis()), text)
    }

    /// The offsets logged for batches after `after`, by batch time.
    fn logged_offsets(
        &self,
        after: BatchTime,
    ) -> Result<BTreeMap<BatchTime, BTreeMap<String, Value>>> {
        let dir = self.offsets_dir();
        let mut logged = BTreeMap::new();
        for (time, name) in self.offset_files()? {
            if time <= after {
                continue;
            }
            // A log entry cut by a crash cannot exist (atomic writes); one
            // that is missing or does not parse is damage worth stopping for.
            let damaged = |why: String| {
                Error::Checkpoint(format!("{} is damaged: {why}", dir.display_file(&name)))
            };
            let text = dir
                .read(&name)?
                .ok_or_else(|| damaged("it is gone".into()))?;
            let offsets: BTreeMap<String, Value> =
                serde_json::from_slice(&text).map_err(|e| damaged(e.to_string()))?;
            logged.insert(time, offsets);
        }
        Ok(logged)
    }

    /// The offset log's entries (batch time, file name), oldest first.
    fn offset_files(&self) -> Result<Vec<(BatchTime, String)>> {
        numbered(&self.offsets_dir(), "", ".json")
    }

    /// The last committed batch.
    fn committed(&self) -> Result<Option<BatchTime>> {
        match self.dir.read(lock::COMMIT)? {
            None => Ok(None),
            Some(text) => lock::committed_batch(&text)
                .map(|t| t.map(BatchTime::from_millis))
                .ok_or_else(|| {
                    Error::Checkpoint(format!(
                        "{} is damaged",
                        self.dir.display_file(lock::COMMIT)
                    ))
                }),
        }
    }

    /// State generations (batch time, file name), oldest first.
    fn generations(&self) -> Result<Vec<(BatchTime, String)>> {
        numbered(&self.dir, "state-", ".bin")
    }

    /// Saves the operators' states after batch `time`, written by the
    /// writers `chain` gave, only what changed (see `chain.rs`); `chain`
    /// learns where the parts are. Pruned after the batch commits
    /// ([`CheckpointDir::prune`]).
    pub(crate) fn save_state(
        &self,
        time: BatchTime,
        operators: Vec<StateWriter>,
        chain: &mut Chain,
    ) -> Result<usize> {
        let mut encoded = encode(time, operators, |operator, name| {
            chain.location(operator, name)
        })?;
        let bytes = std::mem::take(&mut encoded.bytes);
        let size = bytes.len();
        // Its commit, in the same directory, syncs the directory after it.
        self.dir
            .write_before_next(&state_file_name(time), bytes.into(), Some("state-written"))?;
        chain.record(time, &encoded);
        Ok(size)
    }

    /// After a state was saved and committed at `committed`: keeps the two
    /// newest committed state generations (and any newer, not yet
    /// committed one) with the files they refer to, and the offsets after
    /// the older of the two: what a restart can need, even if the newest
    /// state is damaged. With one committed generation nothing is pruned (a
    /// restart without state replays from the start). What a generation
    /// refers to comes from `chain` when this process wrote it, else from
    /// its file's header.
    pub(crate) fn prune(&self, committed: BatchTime, chain: &Chain) -> Result<()> {
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
        let mut needed = std::collections::BTreeSet::new();
        for time in &kept {
            match chain.reads(*time) {
                Some(reads) => needed.extend(reads),
                // A damaged file refers to nothing a restart can use.
                None => {
                    if let Ok(bytes) = self.read_state(&state_file_name(*time))
                        && let Ok(checked) = check(&bytes)
                    {
                        needed.extend(referenced(&checked.header));
                    }
                }
            }
        }
        for (time, name) in &generations {
            if time < oldest && !needed.contains(time) {
                self.dir.remove(name)?;
            }
        }
        let offsets = self.offsets_dir();
        for (time, name) in self.offset_files()? {
            if time <= *oldest {
                offsets.remove(&name)?;
            }
        }
        Ok(())
    }

    /// Records that batch `time`'s output was delivered (with `lock`, the
    /// hold of this process).
    pub(crate) fn commit(&self, lock: &CheckpointLock, time: BatchTime) -> Result<()> {
        match lock {
            CheckpointLock::Local { .. } => self
                .dir
                .write(lock::COMMIT, time.millis().to_string().into_bytes()),
            CheckpointLock::Lease(lease) => lease.commit(time.millis()),
        }
    }
}

/// The state file of generation `time`.
fn state_file_name(time: BatchTime) -> String {
    format!("state-{}.bin", time.millis())
}

/// The files `<prefix><batch time><suffix>` in `dir`, oldest first.
fn numbered(dir: &Dir, prefix: &str, suffix: &str) -> Result<Vec<(BatchTime, String)>> {
    let mut found = Vec::new();
    dir.for_each(|entry| {
        if let Some(time) = entry
            .name
            .strip_prefix(prefix)
            .and_then(|n| n.strip_suffix(suffix))
            .and_then(|t| t.parse::<i64>().ok())
        {
            found.push((BatchTime::from_millis(time), entry.name));
        }
    })?;
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::fs;
    use std::sync::Arc;

    fn batch(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
    }

    #[test]
    fn one_holder_at_a_time_and_the_second_learns_who() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = CheckpointDir::new(Dir::Local(dir.path().join("q1")));
        let held = checkpoint.lock(Duration::from_secs(1)).unwrap();
        let e = checkpoint
            .lock(Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is in use by") && e.contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
        drop(held);
        let _again = checkpoint.lock(Duration::from_secs(1)).unwrap();
    }

    #[test]
    fn state_files_round_trip_and_damage_is_detected() {
        let mut one = StateWriter::default();
        one.batch("keys", batch(&[1, 2, 3]));
        one.value("numbers", json!([4, 5]));
        let two = StateWriter::default();
        let bytes = encode(BatchTime::from_millis(7000), vec![one, two], |_, _| None)
            .unwrap()
            .bytes;
        let (time, operators) = decode(&bytes, |_| unreachable!("all inline")).unwrap();
        assert_eq!(time.millis(), 7000);
        assert_eq!(operators.len(), 2);
        assert_eq!(operators[0].batch("keys").unwrap(), &batch(&[1, 2, 3]));
        assert_eq!(operators[0].i64s("numbers").unwrap(), vec![4, 5]);
        assert!(decode(&bytes[..bytes.len() - 3], |_| unreachable!()).is_err());
        let mut flipped = bytes.clone();
        let at = flipped.len() - 20;
        flipped[at] ^= 0xff;
        let e = decode(&flipped, |_| unreachable!())
            .unwrap_err()
            .to_string();
        assert!(e.contains("checksum does not match"), "{e}");
    }

    #[test]
    fn a_different_query_is_refused_and_the_newest_good_generation_is_used() {
        let temporary = tempfile::tempdir().unwrap();
        let dir = temporary.path().to_path_buf();
        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let checkpoint = CheckpointDir::new(Dir::Local(dir.clone()));
        let print = Fingerprint::new("SELECT n FROM s", &schema);
        assert!(
            checkpoint
                .open(&print, BatchTime::from_millis(0), 1000)
                .unwrap()
                .is_none()
        );
        let lock = checkpoint.lock(Duration::from_secs(1)).unwrap();
        let mut chain = Chain::new(10);
        for t in [1000, 2000, 3000] {
            let mut state = chain.writer(0);
            state.value("t", json!(t));
            let time = BatchTime::from_millis(t);
            checkpoint
                .save_state(time, vec![state], &mut chain)
                .unwrap();
            checkpoint.commit(&lock, time).unwrap();
            checkpoint.prune(time, &chain).unwrap();
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

    /// A new query's checkpoint directory, opened: the directory, its
    /// checkpoint and the query's fingerprint.
    fn opened() -> (tempfile::TempDir, CheckpointDir, Fingerprint) {
        let temporary = tempfile::tempdir().unwrap();
        let checkpoint = CheckpointDir::new(Dir::Local(temporary.path().to_path_buf()));
        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let print = Fingerprint::new("SELECT n FROM s", &schema);
        checkpoint
            .open(&print, BatchTime::from_millis(0), 1000)
            .unwrap();
        (temporary, checkpoint, print)
    }

    #[test]
    fn a_generation_writes_only_what_changed_and_keeps_the_files_it_refers_to() {
        let (temporary, checkpoint, print) = opened();
        let dir = temporary.path().to_path_buf();
        let lock = checkpoint.lock(Duration::from_secs(1)).unwrap();
        let big: Vec<i64> = (0..10_000).collect();
        let mut chain = Chain::new(4);
        let mut sizes = Vec::new();
        // An immutable part (id 1) saved by every generation, and one that
        // changes (id = the generation) beside a value.
        for t in 1..=6i64 {
            let mut state = chain.writer(0);
            state.batch_once("closed", 1, || Ok(batch(&big))).unwrap();
            state
                .batch_once("open", 100 + t as u64, || Ok(batch(&[t])))
                .unwrap();
            state.value("t", json!(t));
            let time = BatchTime::from_millis(t * 1000);
            sizes.push(
                checkpoint
                    .save_state(time, vec![state], &mut chain)
                    .unwrap(),
            );
            checkpoint.commit(&lock, time).unwrap();
            checkpoint.prune(time, &chain).unwrap();
            // Whatever generation a restart reads, every part is there.
            let restored = checkpoint
                .open(&print, BatchTime::from_millis(0), 1000)
                .unwrap()
                .unwrap();
            let (at, state) = restored.state.unwrap();
            assert_eq!(at, time);
            assert_eq!(state[0].batch("closed").unwrap(), &batch(&big));
            assert_eq!(state[0].batch("open").unwrap(), &batch(&[t]));
            assert_eq!(state[0].i64("t").unwrap(), t);
        }
        // Full at 1 and at 5 (every fourth), changes only between.
        assert!(sizes[1] * 20 < sizes[0], "{sizes:?}");
        assert!(sizes[3] * 20 < sizes[0], "{sizes:?}");
        assert!(sizes[4] > sizes[0] / 2, "{sizes:?}");
        assert!(sizes[5] * 20 < sizes[0], "{sizes:?}");
        // Generations 5 and 6 are kept; 6 refers to 5, which is whole: the
        // files of 1 to 4 are gone.
        let mut left: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("state-"))
            .collect();
        left.sort();
        assert_eq!(left, ["state-5000.bin", "state-6000.bin"]);
    }

    #[test]
    fn an_older_file_a_kept_generation_refers_to_is_not_pruned() {
        let temporary = tempfile::tempdir().unwrap();
        let dir = temporary.path().to_path_buf();
        let checkpoint = CheckpointDir::new(Dir::Local(dir.clone()));
        let lock = checkpoint.lock(Duration::from_secs(1)).unwrap();
        let mut chain = Chain::new(100);
        for t in 1..=4i64 {
            let mut state = chain.writer(0);
            state.batch_once("closed", 1, || Ok(batch(&[7]))).unwrap();
            let time = BatchTime::from_millis(t * 1000);
            checkpoint
                .save_state(time, vec![state], &mut chain)
                .unwrap();
            checkpoint.commit(&lock, time).unwrap();
            checkpoint.prune(time, &chain).unwrap();
        }
        assert!(dir.join("state-1000.bin").exists(), "3 and 4 read it");
        assert!(!dir.join("state-2000.bin").exists());
        // A new process, its chain empty, learns what 3 and 4 read from
        // their headers.
        let mut fresh = Chain::new(100);
        let mut state = fresh.writer(0);
        state.batch_once("closed", 1, || Ok(batch(&[7]))).unwrap();
        let time = BatchTime::from_millis(5000);
        checkpoint
            .save_state(time, vec![state], &mut fresh)
            .unwrap();
        checkpoint.commit(&lock, time).unwrap();
        checkpoint.prune(time, &fresh).unwrap();
        assert!(dir.join("state-1000.bin").exists(), "4 reads it");
        let time = BatchTime::from_millis(6000);
        let mut state = fresh.writer(0);
        state.batch_once("closed", 1, || Ok(batch(&[7]))).unwrap();
        checkpoint
            .save_state(time, vec![state], &mut fresh)
            .unwrap();
        checkpoint.commit(&lock, time).unwrap();
        checkpoint.prune(time, &fresh).unwrap();
        assert!(!dir.join("state-1000.bin").exists(), "5 and 6 do not");
        assert!(!dir.join("state-4000.bin").exists());
    }

    #[test]
    fn compaction_rewrites_the_parts_of_a_few_files_not_the_whole_state() {
        let (_temporary, checkpoint, print) = opened();
        let lock = checkpoint.lock(Duration::from_secs(1)).unwrap();
        // At most 3 files read; every generation adds an immutable part of
        // 1 000 rows and keeps all the earlier ones (a long window's panes).
        let mut chain = Chain::with_limits(0, 0, 3);
        let part = |i: i64| batch(&vec![i; 1000]);
        for t in 1..=12i64 {
            let mut state = chain.writer(0);
            for i in 1..=t {
                state
                    .batch_once(format!("pane.{i}"), i as u64, || Ok(part(i)))
                    .unwrap();
            }
            let time = BatchTime::from_millis(t * 1000);
            let size = checkpoint
                .save_state(time, vec![state], &mut chain)
                .unwrap();
            checkpoint.commit(&lock, time).unwrap();
            checkpoint.prune(time, &chain).unwrap();
            let reads = chain.reads(time).unwrap().len();
            assert!(reads <= 4, "generation {t} reads {reads} files");
            if t > 1 {
                // A new pane and what compaction picked, never all of them.
                let one = 8_000;
                assert!(
                    size < one * (t as usize) * 3 / 4,
                    "generation {t}: {size} bytes"
                );
            }
            let restored = checkpoint
                .open(&print, BatchTime::from_millis(0), 1000)
                .unwrap()
                .unwrap();
            let (_, state) = restored.state.unwrap();
            for i in 1..=t {
                assert_eq!(state[0].batch(&format!("pane.{i}")).unwrap(), &part(i));
            }
        }
    }
}
