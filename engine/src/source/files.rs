//! The `files` source: a directory watched batch by batch (Spark's
//! `textFileStream` / `FileInputDStream`), on the local disk or under an
//! object-store prefix (`path = 's3://bucket/incoming/'`, see
//! [`crate::storage`]).
//!
//! Files are expected to be written elsewhere and renamed in (so a file is
//! complete when it appears; an object is complete when its PUT ends);
//! hidden files (`.name`) are never read. The batch of time `t` takes
//! every file not taken before whose modification time is at most `t`, in
//! order of modification time, then name: a file goes to the batch whose
//! interval holds its modification time when it is renamed in promptly,
//! whether or not the engine was running then (which makes batches
//! reproducible after a restart), and a file that appears late goes to the
//! first batch after it appears. A file with a modification time in the
//! future waits for its batch.
//!
//! An object store's modification time (`LastModified`) has whole seconds
//! (S3 truncates it), so an object written at 12.7 s says 12 s. Its time
//! is taken as the end of that second (12.999 s), the latest it can have
//! been written: it goes to the first batch at or after that, the batch a
//! running query would list it in, and a restarted one too, whatever the
//! batch interval. Many objects in one second are ordered by name. The
//! server's clock, not the engine's, stamps them.
//!
//! `files.existing = 'include'` (the default) puts the files already there
//! when the source is opened (its query's first batch) in the first batch;
//! `'ignore'` skips them. Each file is decoded with the source's format
//! (`lines`, `csv`, `json`, or `parquet`, whose columns are taken by name
//! and cast to the declared types) and error policy; messages name the
//! file and the line. A Parquet file that cannot be read fails the source
//! (`on-error = 'fail'`) or is skipped with a warning naming it. The source
//! never ends by itself.
//!
//! What it remembers is the names of the files taken that are still in the
//! directory: removing processed files keeps both the listing and the
//! memory small. That set is its position in a checkpoint, so a restarted
//! query takes no file twice. The listing itself is read as it comes: only
//! the files that are due and new are held.

use std::any::Any;
use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;

use crate::connector::{Decoding, Options};
use crate::error::{Error, Result};
use crate::format::{ErrorPolicy, Position, SharedPartThreads};
use crate::malformed::MalformedKind;
use crate::metrics::SourceMetrics;
use crate::source::api::{Source, SourceBatch, SourceContext, SourceReader};
use crate::storage::{Dir, Entry, StorageOptions};
use crate::time::BatchTime;

/// How the files are read: records of a text format, or Parquet.
#[derive(Debug, Clone)]
enum FileFormat {
    /// Lines, CSV or JSON lines, decoded record by record.
    Records,
    /// Parquet files, whose columns are taken by name.
    Parquet,
}

/// Reads the files that appear in a directory.
#[derive(Debug)]
pub struct FilesSource {
    name: String,
    location: String,
    storage: StorageOptions,
    decoding: Decoding,
    file_format: FileFormat,
    include_existing: bool,
}

impl FilesSource {
    /// A source over directory `dir` (a local path), decoding files as
    /// `decoding` says; files there at the first start are read when
    /// `include_existing`.
    pub fn new(
        name: &str,
        dir: impl Into<std::path::PathBuf>,
        decoding: Decoding,
        include_existing: bool,
    ) -> Self {
        FilesSource {
            name: name.to_string(),
            location: dir.into().to_string_lossy().into_owned(),
            storage: StorageOptions::new(),
            decoding,
            file_format: FileFormat::Records,
            include_existing,
        }
    }

    pub(crate) fn from_options(
        name: &str,
        schema: SchemaRef,
        options: &mut Options,
    ) -> Result<Self> {
        let location = options.require(&["path"])?;
        let storage = options.take_storage();
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
        let parquet = options
            .peek("format")
            .is_some_and(|f| f.eq_ignore_ascii_case("parquet"));
        let (decoding, file_format) = if parquet {
            options.take(&["format"]);
            (options.take_decoding(&schema, "json")?, FileFormat::Parquet)
        } else {
            (
                options.take_decoding(&schema, "lines")?,
                FileFormat::Records,
            )
        };
        // Built now, so that a bad URL or option fails the declaration.
        Dir::parse(&location, &storage)?;
        Ok(FilesSource {
            name: name.to_string(),
            location,
            storage,
            decoding,
            file_format,
            include_existing,
        })
    }

    fn format_name(&self) -> String {
        match self.file_format {
            FileFormat::Records => self.decoding.format.to_string(),
            FileFormat::Parquet => "parquet".into(),
        }
    }

    /// The files that were there at the first start, to skip. With
    /// checkpoints, the first start's list is kept in the checkpoint
    /// directory, so a restart skips the same files, not those present
    /// when it restarts.
    fn existing(&self, reader: &FilesReader, checkpoint: Option<&Dir>) -> Result<HashSet<String>> {
        let listed = || -> Result<HashSet<String>> {
            let mut names = HashSet::new();
            reader.dir.for_each(|entry| {
                names.insert(entry.name);
            })?;
            Ok(names)
        };
        let Some(dir) = checkpoint else {
            return listed();
        };
        let dir = dir.join("files-existing");
        let file = format!("{}.json", self.name);
        if let Some(text) = dir.read(&file)? {
            let names: Vec<String> = serde_json::from_slice(&text).map_err(|e| {
                reader.error(format!("{} is damaged: {e}", dir.display_file(&file)))
            })?;
            return Ok(names.into_iter().collect());
        }
        let names = listed()?;
        let mut sorted: Vec<&String> = names.iter().collect();
        sorted.sort();
        let text = serde_json::to_vec(&sorted)
            .map_err(|e| Error::Internal(format!("cannot encode file names: {e}")))?;
        dir.create()?;
        dir.write(&file, text)?;
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
            self.location,
            self.format_name()
        )
    }

    fn open(&self, ctx: SourceContext) -> Result<Box<dyn SourceReader>> {
        let dir = Dir::parse(&self.location, &self.storage)?;
        if let Some(path) = dir.local_path()
            && !path.is_dir()
        {
            let why = if path.exists() {
                "is not a directory"
            } else {
                "does not exist (create the directory, or fix the path)"
            };
            return Err(Error::Source {
                source_name: self.name.clone(),
                message: format!("{} {why}", path.display()),
            });
        }
        let mut reader = FilesReader {
            name: self.name.clone(),
            whole_seconds: dir.local_path().is_none(),
            dir,
            decoding: self.decoding.clone(),
            file_format: self.file_format.clone(),
            metrics: ctx.metrics,
            decode_tasks: ctx.decode_tasks,
            part_threads: SharedPartThreads::default(),
            taken: HashSet::new(),
            last: Vec::new(),
            available: None,
        };
        if !self.include_existing {
            reader.taken = self.existing(&reader, ctx.checkpoint_dir.as_ref())?;
        }
        if ctx.available_now {
            let mut present = HashSet::new();
            reader.dir.for_each(|entry| {
                if !entry.name.starts_with('.') {
                    present.insert(entry.name);
                }
            })?;
            reader.available = Some(present);
        }
        Ok(Box::new(reader))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    /// It stops at the files present when it opens.
    fn available_now(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

struct FilesReader {
    name: String,
    dir: Dir,
    /// The store's modification times have whole seconds (object stores).
    whole_seconds: bool,
    decoding: Decoding,
    file_format: FileFormat,
    metrics: Arc<SourceMetrics>,
    /// How many threads may decode one file.
    decode_tasks: usize,
    /// The threads its files' decoders share (`format/part_threads.rs`).
    part_threads: SharedPartThreads,
    /// Files taken (or skipped as existing) that are still in the directory.
    taken: HashSet<String>,
    /// The files the last batch took, in order.
    last: Vec<String>,
    /// Under the available-now trigger: the files present when it opened,
    /// the only ones it reads; it ends when each is taken or gone.
    available: Option<HashSet<String>>,
}

impl FilesReader {
    fn error(&self, message: String) -> Error {
        Error::Source {
            source_name: self.name.clone(),
            message,
        }
    }

    /// The batch time from which `entry` is due (module docs).
    fn due_at(&self, entry: &Entry) -> i64 {
        if self.whole_seconds && entry.modified_ms.rem_euclid(1000) == 0 {
            entry.modified_ms + 999
        } else {
            entry.modified_ms
        }
    }

    /// Reads the files `names`, in order, as one batch, and notes them
    /// taken; with a `limit` of records, stops after the file that reaches
    /// it (a file is never split), leaving the others for the next batch.
    fn take(
        &mut self,
        names: Vec<String>,
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
            let Some(bytes) = self.dir.read(&name)? else {
                if replaying {
                    // Removed after its batch committed: its rows cannot
                    // come back; say so rather than fail every restart.
                    let place = self.dir.display_file(&name);
                    self.metrics.note_skipped(|| {
                        format!("{place} was removed; its batch runs again without it")
                    });
                }
                continue;
            };
            if let Some(batch) = self.decode(&name, bytes, replaying)? {
                rows += batch.num_rows();
                batches.push(batch);
            }
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
    /// were counted and dead-lettered the first time). `None`: a Parquet
    /// file skipped by the error policy.
    fn decode(&self, name: &str, bytes: Bytes, again: bool) -> Result<Option<RecordBatch>> {
        let place = self.dir.display_file(name);
        match self.file_format {
            FileFormat::Records => {
                let decoder = if again {
                    self.decoding.quiet_decoder(&self.name)
                } else {
                    self.decoding.decoder(&self.name, Arc::clone(&self.metrics))
                };
                decoder
                    .with_tasks(self.decode_tasks)
                    .with_part_threads(&self.part_threads)
                    .with_file(std::path::Path::new(&place))
                    .decode(&bytes)
                    .map(Some)
            }
            FileFormat::Parquet => {
                match crate::format::parquet::decode(bytes, &self.decoding.schema) {
                    Ok(batch) => {
                        if !again {
                            self.metrics.add_records(batch.num_rows() as u64);
                        }
                        Ok(Some(batch))
                    }
                    Err(why) if self.decoding.policy == ErrorPolicy::Fail => {
                        Err(self.error(format!("{place}: {why}")))
                    }
                    // The file is the record: skipped, or sent to the
                    // dead letters (its name and why; not its bytes).
                    Err(_) if again => Ok(None),
                    Err(why) => {
                        let decoder = self
                            .decoding
                            .decoder(&self.name, Arc::clone(&self.metrics))
                            .with_file(std::path::Path::new(&place));
                        let whole_file = Position { line: 1, byte: 0 };
                        let reason = format!("the file was skipped: {why}");
                        decoder.malformed(whole_file, MalformedKind::Value, &reason, b"")?;
                        Ok(None)
                    }
                }
            }
        }
    }
}

impl SourceReader for FilesReader {
    fn next_batch(&mut self, time: BatchTime) -> Result<SourceBatch> {
        // The listing streams by: what is held is the files present (to
        // forget taken files that are gone) and the due, new ones.
        let mut present = HashSet::with_capacity(self.taken.len());
        let mut due: Vec<(i64, String)> = Vec::new();
        let mut waiting = false;
        let dir = self.dir.clone();
        dir.for_each(|entry| {
            if entry.name.starts_with('.') {
                return;
            }
            let wanted = self
                .available
                .as_ref()
                .is_none_or(|available| available.contains(&entry.name));
            if self.taken.contains(&entry.name) {
                present.insert(entry.name);
            } else if wanted && self.due_at(&entry) <= time.millis() {
                due.push((self.due_at(&entry), entry.name));
            } else if wanted {
                waiting = true;
            }
        })?;
        // Forget files that are gone: memory is bounded by the directory.
        self.taken.retain(|name| present.contains(name));
        due.sort();
        let names: Vec<String> = due.into_iter().map(|(_, name)| name).collect();
        let due = names.len();
        let mut batch = self.take(names, self.decoding.max_records_per_batch, false)?;
        // Available now: done when nothing it opened with is left to take.
        batch.end_of_input = self.available.is_some() && !waiting && self.last.len() == due;
        Ok(batch)
    }

    fn offsets(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "files": self.last }))
    }

    fn replay(&mut self, _time: BatchTime, offsets: &serde_json::Value) -> Result<SourceBatch> {
        let names = offsets["files"]
            .as_array()
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        self.take(names, None, true)
    }

    /// The names of the files taken that are still there.
    fn save(&self) -> Option<serde_json::Value> {
        let mut names: Vec<&String> = self.taken.iter().collect();
        names.sort();
        Some(serde_json::json!({ "taken": names }))
    }

    fn load(&mut self, position: &serde_json::Value) -> Result<()> {
        if let Some(names) = position["taken"].as_array() {
            self.taken = names
                .iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect();
        }
        Ok(())
    }
}
