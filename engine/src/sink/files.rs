//! The `files` sink: one file per batch time with rows,
//! `<path>/<batch time in ms>.<csv|json>` (Spark's `saveAsTextFiles`, one
//! file instead of a directory). A batch without rows writes no file.
//!
//! Each file is written atomically (`durable.rs`: a hidden temporary
//! name `.<time>.<ext>.tmp`, fsynced, renamed into place, and the directory
//! fsynced): a reader never sees a partial file, and a batch that runs again
//! (after a restart) rewrites the same name with the same bytes.

use std::fs;
use std::path::PathBuf;

use arrow::array::RecordBatch;

use crate::connector::Options;
use crate::durable::write_with_crash_points;
use crate::error::{Error, Result};
use crate::sink::api::{Sink, SinkWriter};
use crate::sink::row_format::{RowFormat, encode};
use crate::time::BatchTime;

/// Writes each batch's rows to a file of its own.
#[derive(Debug, Clone)]
pub struct FilesSink {
    dir: PathBuf,
    format: RowFormat,
}

impl FilesSink {
    /// A sink writing into `dir` (created if missing) in `format`.
    pub fn new(dir: impl Into<PathBuf>, format: RowFormat) -> Self {
        FilesSink {
            dir: dir.into(),
            format,
        }
    }

    pub(crate) fn from_options(options: &mut Options) -> Result<Self> {
        let dir = options.require(&["path"])?;
        let format = RowFormat::parse(&options.take(&["format"]).unwrap_or("csv".into()))?;
        Ok(FilesSink::new(dir, format))
    }

    /// The file batch `time` is written to.
    pub fn file_of(&self, time: BatchTime) -> PathBuf {
        self.dir
            .join(format!("{}.{}", time.millis(), self.format.extension()))
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
            self.dir.display()
        )
    }

    fn open(&self, _query: &str) -> Result<Box<dyn SinkWriter>> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| Error::Config(format!("cannot create {}: {e}", self.dir.display())))?;
        Ok(Box::new(self.clone()))
    }
}

impl SinkWriter for FilesSink {
    fn write(&mut self, time: BatchTime, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let bytes = encode(batch, self.format)?;
        write_with_crash_points(&self.file_of(time), &bytes, Some("sink-mid-write"), None)
    }
}
