//! The `files` source: a directory watched batch by batch (Spark's
//! `textFileStream` / `FileInputDStream`).
//!
//! Files are expected to be written elsewhere and renamed in (so a file is
//! complete when it appears); hidden files (`.name`) are never read. The
//! batch of time `t` takes every file not taken before whose modification
//! time is at most `t`, in order of modification time, then name: a file
//! goes to the batch whose interval holds its modification time when it is
//! renamed in promptly, whether or not the engine was running then (which
//! makes batches reproducible after a restart), and a file that appears
//! late goes to the first batch after it appears. A file with a
//! modification time in the future waits for its batch.
//!
//! `files.existing = 'include'` (the default) puts the files already there
//! when the source is opened (its query's first batch) in the first batch;
//! `'ignore'` skips them. Each
//! file is decoded with the source's format and error policy; messages name
//! the file and the line. The source never ends by itself.
//!
//! What it remembers is the names of the files taken that are still in the
//! directory: removing processed files keeps both the listing and the
//! memory small. That set is its position in a checkpoint, so a restarted
//! query takes no file twice.

use std::any::Any;
use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::connector::{Decoding, Options};
use crate::durable::write_atomically;
use crate::error::{Error, Result};
use crate::metrics::SourceMetrics;
use crate::source::api::{Source, SourceBatch, SourceContext, SourceReader};
use crate::time::BatchTime;

/// Reads the files that appear in a directory.
#[derive(Debug)]
pub struct FilesSource {
    name: String,
    dir: PathBuf,
    decoding: Decoding,
    include_existing: bool,
}

impl FilesSource {
    /// A source over directory `dir`, decoding files as `decoding` says;
    /// files there at the first start are read when `include_existing`.
    pub fn new(
        name: &str,
        dir: impl Into<PathBuf>,
        decoding: Decoding,
        include_existing: bool,
    ) -> Self {
        FilesSource {
            name: name.to_string(),
            dir: dir.into(),
            decoding,
            include_existing,
        }
    }

    pub(crate) fn from_options(
        name: &str,
        schema: SchemaRef,
        options: &mut Options,
    ) -> Result<Self> {
        let dir = options.require(&["path"])?;
        let include_existing = match options
            .take(&["files.existing"])
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("include") => true,
            Some("ignore") => false,
            Some(other) => {
                return Err(Error::Config(format!(
                    "option 'files.existing' of source '{name}' is '{other}'; valid values: include, ignore"
                )));
            }
        };
        let decoding = options.take_decoding(&schema, "lines")?;
        Ok(FilesSource::new(name, dir, decoding, include_existing))
    }
}

impl FilesSource {
    /// The files that were there at the first start, to skip. With
    /// checkpoints, the first start's list is kept in the checkpoint
    /// directory, so a restart skips the same files, not those present
    /// when it restarts.
    fn existing(
        &self,
        reader: &FilesReader,
        checkpoint: Option<&Path>,
    ) -> Result<HashSet<OsString>> {
        let listed = || -> Result<HashSet<OsString>> {
            Ok(reader
                .list()?
                .into_iter()
                .map(|(_, name, _)| name)
                .collect())
        };
        let Some(dir) = checkpoint else {
            return listed();
        };
        let path = dir
            .join("files-existing")
            .join(format!("{}.json", self.name));
        if let Ok(text) = fs::read(&path) {
            let names: Vec<String> = serde_json::from_slice(&text)
                .map_err(|e| reader.error(format!("{} is damaged: {e}", path.display())))?;
            return Ok(names.into_iter().map(OsString::from).collect());
        }
        let names = listed()?;
        let mut sorted: Vec<String> = names
            .iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        sorted.sort();
        let parent = path.parent().expect("a directory");
        fs::create_dir_all(parent)
            .map_err(|e| reader.error(format!("cannot create {}: {e}", parent.display())))?;
        let text = serde_json::to_vec(&sorted)
            .map_err(|e| Error::Internal(format!("cannot encode file names: {e}")))?;
        write_atomically(&path, &text)?;
        Ok(names)
    }
}

impl Source for FilesSource {
    fn schema(&self) -> SchemaRef {
        self.decoding.schema.clone()
    }

    fn connector(&self) -> &'static str {
        "files"
    }

    fn describe(&self) -> String {
        format!(
            "files appearing in {}, format {}",
            self.dir.display(),
            self.decoding.format
        )
    }

    fn open(&self, ctx: SourceContext) -> Result<Box<dyn SourceReader>> {
        if !self.dir.is_dir() {
            let why = if self.dir.exists() {
                "is not a directory"
            } else {
                "does not exist (create the directory, or fix the path)"
            };
            return Err(Error::Source {
                source_name: self.name.clone(),
                message: format!("{} {why}", self.dir.display()),
            });
        }
        let mut reader = FilesReader {
            name: self.name.clone(),
            dir: self.dir.clone(),
            decoding: self.decoding.clone(),
            metrics: ctx.metrics,
            taken: HashSet::new(),
            last: Vec::new(),
        };
        if !self.include_existing {
            reader.taken = self.existing(&reader, ctx.checkpoint_dir.as_deref())?;
        }
        Ok(Box::new(reader))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct FilesReader {
    name: String,
    dir: PathBuf,
    decoding: Decoding,
    metrics: Arc<SourceMetrics>,
    /// Files taken (or skipped as existing) that are still in the directory.
    taken: HashSet<OsString>,
    /// The files the last batch took, in order.
    last: Vec<OsString>,
}

/// A file in the directory: modification time (epoch ms), name, path.
type Listed = (i64, OsString, PathBuf);

impl FilesReader {
    fn error(&self, message: String) -> Error {
        Error::Source {
            source_name: self.name.clone(),
            message,
        }
    }

    /// The directory's visible regular files.
    fn list(&self) -> Result<Vec<Listed>> {
        let entries = fs::read_dir(&self.dir)
            .map_err(|e| self.error(format!("cannot list {}: {e}", self.dir.display())))?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry
                .map_err(|e| self.error(format!("cannot list {}: {e}", self.dir.display())))?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            // A file may vanish between the listing and here: skip it.
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if !metadata.is_file() {
                continue;
            }
            let modified = metadata
                .modified()
                .ok()
                .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as i64);
            files.push((modified, name, entry.path()));
        }
        Ok(files)
    }

    /// Reads the files `names`, in order, as one batch, and notes them
    /// taken; with a `limit` of records, stops after the file that reaches
    /// it (a file is never split), leaving the others for the next batch.
    fn take(
        &mut self,
        names: Vec<OsString>,
        limit: Option<usize>,
        replaying: bool,
    ) -> Result<SourceBatch> {
        let mut batches: Vec<RecordBatch> = Vec::with_capacity(names.len());
        let mut taken = Vec::with_capacity(names.len());
        let mut rows = 0;
        for name in names {
            if limit.is_some_and(|limit| rows >= limit) {
                break;
            }
            let path = self.dir.join(&name);
            if replaying && !path.exists() {
                // Removed after its batch committed: its rows cannot come
                // back; say so rather than fail every restart.
                self.metrics.note_skipped(|| {
                    format!(
                        "{} was removed; its batch runs again without it",
                        path.display()
                    )
                });
                continue;
            }
            let batch = self.read(&path, replaying)?;
            rows += batch.num_rows();
            batches.push(batch);
            self.taken.insert(name.clone());
            taken.push(name);
        }
        self.last = taken;
        let schema = self.decoding.schema.clone();
        Ok(SourceBatch {
            batch: arrow::compute::concat_batches(&schema, &batches)?,
            end_of_input: false,
        })
    }

    /// A file's rows; `again` for a batch that runs again (malformed records
    /// were counted and dead-lettered the first time).
    fn read(&self, path: &Path, again: bool) -> Result<RecordBatch> {
        let bytes = fs::read(path)
            .map_err(|e| self.error(format!("cannot read {}: {e}", path.display())))?;
        let decoder = if again {
            self.decoding.quiet_decoder(&self.name)
        } else {
            self.decoding.decoder(&self.name, Arc::clone(&self.metrics))
        };
        decoder.with_file(path).decode(&bytes)
    }
}

impl SourceReader for FilesReader {
    fn next_batch(&mut self, time: BatchTime) -> Result<SourceBatch> {
        let listed = self.list()?;
        // Forget files that are gone: memory is bounded by the directory.
        let present: HashSet<&OsString> = listed.iter().map(|(_, name, _)| name).collect();
        self.taken.retain(|name| present.contains(name));
        let mut due: Vec<&Listed> = listed
            .iter()
            .filter(|(modified, name, _)| *modified <= time.millis() && !self.taken.contains(name))
            .collect();
        due.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let names: Vec<OsString> = due.into_iter().map(|(_, name, _)| name.clone()).collect();
        self.take(names, self.decoding.max_records_per_batch, false)
    }

    fn offsets(&self) -> Option<serde_json::Value> {
        let names: Vec<String> = self
            .last
            .iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        Some(serde_json::json!({ "files": names }))
    }

    fn replay(&mut self, _time: BatchTime, offsets: &serde_json::Value) -> Result<SourceBatch> {
        let names = offsets["files"]
            .as_array()
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.as_str().map(OsString::from))
                    .collect()
            })
            .unwrap_or_default();
        self.take(names, None, true)
    }

    /// The names of the files taken that are still there.
    fn save(&self) -> Option<serde_json::Value> {
        let mut names: Vec<String> = self
            .taken
            .iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        names.sort();
        Some(serde_json::json!({ "taken": names }))
    }

    fn load(&mut self, position: &serde_json::Value) -> Result<()> {
        if let Some(names) = position["taken"].as_array() {
            self.taken = names
                .iter()
                .filter_map(|n| n.as_str().map(OsString::from))
                .collect();
        }
        Ok(())
    }
}
