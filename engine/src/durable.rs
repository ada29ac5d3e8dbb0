//! Durable file writes: a file either keeps its old content or holds all
//! of the new, whatever the moment a crash comes.
//!
//! [`write_with_crash_points`] writes under a hidden temporary name in the same
//! directory (`.<name>.tmp`), fsyncs it, renames it over the target and
//! fsyncs the directory, so that the rename itself survives a crash.
//! [`replace_with_crash_points`] leaves the directory's fsync to the next
//! durable write in it (a checkpoint's state file, then its commit). The
//! checkpoint files, the `files` source's list of taken files and the
//! `files` sink's output are written so; the receiver log, which appends,
//! uses [`sync_dir`] for the names of its new segments.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` so that `path` holds either its old content or
/// all of `bytes`, durably (see the module docs), passing the test-only crash points `mid_write`
/// (half the bytes written) and `written` (all written, not renamed).
pub(crate) fn write_with_crash_points(
    path: &Path,
    bytes: &[u8],
    mid_write: Option<&str>,
    written: Option<&str>,
) -> Result<()> {
    replace_with_crash_points(path, bytes, mid_write, written)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    sync_dir(dir).map_err(|e| io_error(dir, "sync", e))
}

/// [`write_with_crash_points`] but for the directory's fsync: `path`
/// holds its old content or all of `bytes`, and the new content survives
/// a crash once the directory is synced (by the next durable write in it).
pub(crate) fn replace_with_crash_points(
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
    fs::rename(&temporary, path).map_err(|e| io_error(path, "rename into", e))
}

/// Fsyncs the directory `dir`, so that the names created, renamed or
/// removed in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir).and_then(|d| d.sync_all())
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::Config(format!("cannot {what} {}: {e}", path.display()))
}
