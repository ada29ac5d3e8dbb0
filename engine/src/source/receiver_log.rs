//! The receiver log (`receiver.log = true`): Spark's write-ahead log for
//! receivers. Whole lines a socket receives are appended to a log in the
//! checkpoint directory and fsynced before they enter a batch, so:
//!
//! - a batch that runs again after a restart reads its lines back from the
//!   log (its offset-log entry is a byte range of the log);
//! - lines received but not yet in a batch when the process died are read
//!   back after the restart: a crash loses nothing that was received.
//!
//! With the files sink that is exactly-once per batch. Appends are whole
//! lines; a line cut by a crash in the middle of an append is dropped when
//! the log is opened again (it was never in a batch). The log is a series
//! of segment files `<first byte offset>.log` under
//! `<checkpoint.dir>/receiver-logs/<source>/`; a segment is closed at 16 MiB
//! and deleted once no kept checkpoint can need it.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::durable::sync_dir;
use crate::error::{Error, Result};

const SEGMENT_BYTES: u64 = 16 << 20;

/// An append-only log of received bytes, addressed by byte offset.
#[derive(Debug)]
pub(crate) struct ReceiverLog {
    dir: PathBuf,
    /// Segments by first offset, oldest first.
    segments: Vec<u64>,
    /// The open last segment.
    file: Option<File>,
    /// The offset after the last byte.
    end: u64,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Checkpoint(format!(
        "receiver log: cannot {what} {}: {e}",
        path.display()
    ))
}

impl ReceiverLog {
    /// Opens (or starts) the log in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
        let mut segments = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| io("list", dir, e))? {
            let name = entry
                .map_err(|e| io("list", dir, e))?
                .file_name()
                .to_string_lossy()
                .into_owned();
            if let Some(start) = name.strip_suffix(".log").and_then(|n| n.parse().ok()) {
                segments.push(start);
            }
        }
        segments.sort_unstable();
        let end = match segments.last() {
            Some(&last) => {
                // A crash may have cut the last append: keep whole lines only.
                let path = dir.join(format!("{last}.log"));
                let bytes = fs::read(&path).map_err(|e| io("read", &path, e))?;
                let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                if whole < bytes.len() {
                    let file = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| io("open", &path, e))?;
                    file.set_len(whole as u64)
                        .and_then(|()| file.sync_all())
                        .map_err(|e| io("truncate", &path, e))?;
                }
                last + whole as u64
            }
            None => 0,
        };
        Ok(ReceiverLog {
            dir: dir.to_path_buf(),
            segments,
            file: None,
            end,
        })
    }

    /// The offset after the last byte.
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// The offset of the first byte still kept.
    pub(crate) fn start(&self) -> u64 {
        self.segments.first().copied().unwrap_or(self.end)
    }

    fn segment_path(&self, start: u64) -> PathBuf {
        self.dir.join(format!("{start}.log"))
    }

    /// Appends `bytes` durably; returns where they are.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> Result<Range<u64>> {
        let last = self.segments.last().copied();
        let full = last.is_none_or(|start| self.end - start >= SEGMENT_BYTES);
        if full {
            self.segments.push(self.end);
            self.file = None;
        }
        if self.file.is_none() {
            let path = self.segment_path(*self.segments.last().expect("a segment"));
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| io("open", &path, e))?;
            if full {
                // The new segment's name must survive a crash too.
                sync_dir(&self.dir).map_err(|e| io("sync", &self.dir, e))?;
            }
            self.file = Some(file);
        }
        let file = self.file.as_mut().expect("opened above");
        file.write_all(bytes)
            .and_then(|()| file.sync_data())
            .map_err(|e| io("append to", &self.dir, e))?;
        let start = self.end;
        self.end += bytes.len() as u64;
        Ok(start..self.end)
    }

    /// The bytes of `range`.
    pub(crate) fn read(&self, range: Range<u64>) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity((range.end - range.start) as usize);
        let mut at = range.start;
        while at < range.end {
            let index = self.segments.partition_point(|&s| s <= at);
            let Some(&start) = index.checked_sub(1).and_then(|i| self.segments.get(i)) else {
                return Err(Error::Checkpoint(format!(
                    "receiver log: bytes {}..{} are no longer in {}",
                    range.start,
                    range.end,
                    self.dir.display()
                )));
            };
            let segment_end = self.segments.get(index).copied().unwrap_or(self.end);
            let until = range.end.min(segment_end);
            let path = self.segment_path(start);
            let mut file = File::open(&path).map_err(|e| io("open", &path, e))?;
            file.seek(SeekFrom::Start(at - start))
                .map_err(|e| io("read", &path, e))?;
            let mut chunk = vec![0; (until - at) as usize];
            file.read_exact(&mut chunk)
                .map_err(|e| io("read", &path, e))?;
            out.extend_from_slice(&chunk);
            at = until;
        }
        Ok(out)
    }

    /// Deletes the segments that end at or before `offset`.
    pub(crate) fn prune_before(&mut self, offset: u64) -> Result<()> {
        while self.segments.len() > 1 && self.segments[1] <= offset {
            let first = self.segments.remove(0);
            let path = self.segment_path(first);
            fs::remove_file(&path).map_err(|e| io("remove", &path, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_read_back_across_segments_and_survive_reopening() {
        let dir =
            std::env::temp_dir().join(format!("brooklet-receiver-log-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut log = ReceiverLog::open(&dir).unwrap();
        assert_eq!(log.append(b"one\n").unwrap(), 0..4);
        // Force a new segment.
        log.end = SEGMENT_BYTES;
        log.segments = vec![0];
        fs::OpenOptions::new()
            .write(true)
            .open(dir.join("0.log"))
            .unwrap()
            .set_len(SEGMENT_BYTES)
            .unwrap();
        let second = log.append(b"two\n").unwrap();
        assert_eq!(second, SEGMENT_BYTES..SEGMENT_BYTES + 4);
        let log = ReceiverLog::open(&dir).unwrap();
        assert_eq!(log.end(), SEGMENT_BYTES + 4);
        assert_eq!(log.read(0..4).unwrap(), b"one\n");
        assert_eq!(log.read(second.clone()).unwrap(), b"two\n");
        let mut log = log;
        log.prune_before(SEGMENT_BYTES).unwrap();
        assert!(log.read(0..4).is_err());
        assert_eq!(log.read(second).unwrap(), b"two\n");
    }
}
