//! The `files` sink: one file per batch time with rows,
//! `<path>/<batch time in ms>.<csv|json|parquet>` (Spark's
//! `saveAsTextFiles`, one file instead of a directory), in a local
//! directory or under an object-store prefix (`path =
//! 's3://bucket/counts/'`, see [`crate::storage`]). A batch without rows
//! writes no file.
//!
//! Each file is written once and whole ([`Dir::write`]: locally a hidden
//! temporary name `.<time>.<ext>.tmp`, fsynced, renamed into place and the
//! directory fsynced; on an object store one PUT): a reader never sees a
//! partial file, and a batch that runs again (after a restart) rewrites
//! the same name with the same bytes (Parquet included: the writer adds
//! nothing that changes from run to run).

use bytes::Bytes;

use crate::connector::Options;
use crate::error::{Error, Result};
use crate::sink::api::{Sink, SinkWriter};
use crate::sink::row_format::{RowFormat, encode};
use crate::storage::{Dir, StorageOptions};
use crate::time::BatchTime;
use arrow::array::RecordBatch;

/// What the files hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileFormat {
    /// Rows as text.
    Rows(RowFormat),
    /// One Parquet file per batch.
    Parquet,
}

impl FileFormat {
    fn extension(self) -> &'static str {
        match self {
            FileFormat::Rows(format) => format.extension(),
            FileFormat::Parquet => "parquet",
        }
    }
}

/// Writes each batch's rows to a file of its own.
#[derive(Debug, Clone)]
pub struct FilesSink {
    location: String,
    storage: StorageOptions,
    format: FileFormat,
}

impl FilesSink {
    /// A sink writing into local directory `dir` (created if missing) in
    /// `format`.
    pub fn new(dir: impl Into<std::path::PathBuf>, format: RowFormat) -> Self {
        FilesSink {
            location: dir.into().to_string_lossy().into_owned(),
            storage: StorageOptions::new(),
            format: FileFormat::Rows(format),
        }
    }

    pub(crate) fn from_options(options: &mut Options) -> Result<Self> {
        let location = options.require(&["path"])?;
        let storage = options.take_storage();
        let format = match options.take(&["format"]).unwrap_or("csv".into()) {
            name if name.eq_ignore_ascii_case("parquet") => FileFormat::Parquet,
            name => FileFormat::Rows(RowFormat::parse(&name).map_err(|_| {
                Error::Config(format!(
                    "unknown format '{name}' for a files sink; valid formats: csv, json, parquet"
                ))
            })?),
        };
        Dir::parse(&location, &storage)?;
        Ok(FilesSink {
            location,
            storage,
            format,
        })
    }

    /// The name of the file batch `time` is written to.
    pub fn file_name(&self, time: BatchTime) -> String {
        format!("{}.{}", time.millis(), self.format.extension())
    }
}

impl Sink for FilesSink {
    fn connector(&self) -> &'static str {
        "files"
    }

    fn describe(&self) -> String {
        format!(
            "a {} file per batch in {}",
            self.format.extension(),
            self.location
        )
    }

    fn open(&self, _query: &str) -> Result<Box<dyn SinkWriter>> {
        let dir = Dir::parse(&self.location, &self.storage)?;
        dir.create()?;
        Ok(Box::new(FilesWriter {
            sink: self.clone(),
            dir,
        }))
    }
}

/// One query's writer into the sink's directory.
struct FilesWriter {
    sink: FilesSink,
    dir: Dir,
}

impl SinkWriter for FilesWriter {
    fn write(&mut self, time: BatchTime, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let bytes = match self.sink.format {
            FileFormat::Rows(format) => encode(batch, format)?,
            FileFormat::Parquet => crate::format::parquet::encode(batch)?,
        };
        self.dir.write_with_crash_points(
            &self.sink.file_name(time),
            Bytes::from(bytes),
            Some("sink-mid-write"),
            None,
        )
    }
}
