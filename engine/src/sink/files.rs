//! The `files` sink: one file per batch time with rows,
//! `<path>/<batch time in ms>.<csv|json>` (Spark's `saveAsTextFiles`, one
//! file instead of a directory). A batch without rows writes no file.
//!
//! Each file is written under a hidden temporary name (`.<time>.<ext>.tmp`),
//! fsynced, renamed into place, and the directory fsynced: a reader never
//! sees a partial file, and a batch that runs again (after a restart)
//! rewrites the same name with the same bytes.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;

use crate::connector::Options;
use crate::error::{Error, Result};
use crate::sink::{RowFormat, Sink, SinkWriter, encode};
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

    fn open(&self) -> Result<Box<dyn SinkWriter>> {
        fs::create_dir_all(&self.dir).map_err(|e| io_error(&self.dir, "create", e))?;
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

fn io_error(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::Config(format!("cannot {what} {}: {e}", path.display()))
}

/// Writes `bytes` to `path` so that `path` holds either its old content or
/// all of `bytes`, durably: a hidden temporary file in the same directory,
/// fsynced, renamed over `path`, then the directory fsynced.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with_crash_points(path, bytes, None, None)
}

/// [`write_atomically`], passing the test-only crash points `mid_write`
/// (half the bytes written) and `written` (all written, not renamed).
pub(crate) fn write_with_crash_points(
    path: &Path,
    bytes: &[u8],
    mid_write: Option<&str>,
    written: Option<&str>,
) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{name}.tmp"));
    let mut file = fs::File::create(&temporary).map_err(|e| io_error(&temporary, "create", e))?;
    let half = bytes.len() / 2;
    file.write_all(&bytes[..half])
        .map_err(|e| io_error(&temporary, "write", e))?;
    if let Some(point) = mid_write {
        if crate::crash::planned(point) {
            let _ = file.sync_all();
        }
        crate::crash::point(point);
    }
    file.write_all(&bytes[half..])
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(&temporary, "write", e))?;
    drop(file);
    if let Some(point) = written {
        crate::crash::point(point);
    }
    fs::rename(&temporary, path).map_err(|e| io_error(path, "rename into", e))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, "sync", e))?;
    Ok(())
}
