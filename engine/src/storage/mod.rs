//! Where files live: a local directory or a prefix in an object store.
//!
//! Checkpoints, the `files` source and the `files` sink read and write a
//! [`Dir`]. A path is local (`/data/in`, `out/`) unless it is a URL with
//! a scheme: `s3://bucket/prefix/` (S3 and S3-compatible servers such as
//! MinIO or Ceph) is built in, `gs://` and `az://` come with the engine's
//! `gcp` and `azure` features. How an object store finds its credentials
//! and endpoint, and which options it takes, is in `object.rs`; the
//! retries of a failing request and where they are reported, in
//! `retry.rs`.
//!
//! What a `Dir` gives is the same on both, so the code above it is the
//! same:
//!
//! - **write** replaces a file as a whole, atomically: locally a hidden
//!   temporary file, fsynced and renamed (`durable.rs`); on an object
//!   store one PUT, which is atomic there (no store renames atomically,
//!   none needs to);
//! - **read** gives the whole file, or nothing when there is none;
//! - **list** visits the files directly in the directory with their
//!   modification times (an object store's `LastModified`, whole seconds
//!   on S3) and sizes;
//! - **remove** removes one.
//!
//! Conditional writes (create only if absent, replace only a known
//! version) exist on object stores only (`ObjectDir::write_if`); a
//! checkpoint uses them there where it uses a lock file locally.
//!
//! HDFS would plug in the same way: `object_store` has an HDFS
//! implementation (the `hdfs-native-object-store` crate); a `hdfs://`
//! arm in `ObjectDir::open` building it is all it takes. It is not built
//! in, and not tested.

mod blocking;
mod object;
mod profile;
mod retry;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use bytes::Bytes;

use crate::durable::{replace_with_crash_points, write_with_crash_points};
use crate::error::{Error, Result};

pub use object::ObjectDir;
pub(crate) use object::{Conflict, Expect, Version};
pub use retry::{StorageHealth, storage_health};

/// Options of a location: `endpoint`, `allow_http`, `region`, credentials,
/// `timeout`, `retry_timeout` (see `object.rs`); ignored for local paths.
pub type StorageOptions = BTreeMap<String, String>;

/// A file in a [`Dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its name in the directory.
    pub name: String,
    /// When it was last written, in ms after the epoch (whole seconds on
    /// S3).
    pub modified_ms: i64,
    /// Its size in bytes.
    pub size: u64,
}

/// A directory on the local disk or in an object store.
#[derive(Debug, Clone)]
pub enum Dir {
    /// A local directory.
    Local(PathBuf),
    /// A prefix in an object store.
    Object(ObjectDir),
}

/// Whether `location` names an object store (a URL with a scheme) rather
/// than a local path.
pub fn is_url(location: &str) -> bool {
    location.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric())
    })
}

impl Dir {
    /// The directory `location` names: a URL is an object store's (with
    /// `options` over the environment's settings), anything else a local
    /// path.
    pub fn parse(location: &str, options: &StorageOptions) -> Result<Dir> {
        if let Some(path) = location.strip_prefix("file://") {
            return Ok(Dir::Local(PathBuf::from(path)));
        }
        if is_url(location) {
            return Ok(Dir::Object(ObjectDir::open(location, options)?));
        }
        Ok(Dir::Local(PathBuf::from(location)))
    }

    /// The subdirectory `name` (which may have several `/`-separated parts).
    pub fn join(&self, name: &str) -> Dir {
        match self {
            Dir::Local(path) => Dir::Local(path.join(name)),
            Dir::Object(dir) => Dir::Object(dir.join(name)),
        }
    }

    /// The local path, for what only a local disk can hold.
    pub fn local_path(&self) -> Option<&Path> {
        match self {
            Dir::Local(path) => Some(path),
            Dir::Object(_) => None,
        }
    }

    /// Where it is, for messages: a path or a URL.
    pub fn display(&self) -> String {
        match self {
            Dir::Local(path) => path.display().to_string(),
            Dir::Object(dir) => dir.display(),
        }
    }

    /// The place of file `name`, for messages.
    pub fn display_file(&self, name: &str) -> String {
        match self {
            Dir::Local(path) => path.join(name).display().to_string(),
            Dir::Object(dir) => format!("{}{name}", dir.display()),
        }
    }

    /// Makes sure it exists (locally; object-store prefixes need no
    /// creating).
    pub fn create(&self) -> Result<()> {
        match self {
            Dir::Local(path) => fs::create_dir_all(path)
                .map_err(|e| Error::Config(format!("cannot create {}: {e}", path.display()))),
            Dir::Object(_) => Ok(()),
        }
    }

    /// The whole file `name`, or `None` when there is none.
    pub fn read(&self, name: &str) -> Result<Option<Bytes>> {
        match self {
            Dir::Local(path) => {
                let path = path.join(name);
                match fs::read(&path) {
                    Ok(bytes) => Ok(Some(Bytes::from(bytes))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(Error::io(format!("cannot read {}", path.display()), e)),
                }
            }
            Dir::Object(dir) => Ok(dir.read(name)?.map(|(bytes, _)| bytes)),
        }
    }

    /// Replaces file `name` by `bytes`, atomically (see the module docs).
    pub fn write(&self, name: &str, bytes: impl Into<Bytes>) -> Result<()> {
        self.write_with_crash_points(name, bytes.into(), None, None)
    }

    /// [`Dir::write`], passing the test-only crash points `mid_write` and
    /// `written` (`crash.rs`). On an object store, where one PUT has no
    /// middle, `mid_write` is passed before the PUT and `written` after.
    pub(crate) fn write_with_crash_points(
        &self,
        name: &str,
        bytes: Bytes,
        mid_write: Option<&str>,
        written: Option<&str>,
    ) -> Result<()> {
        match self {
            Dir::Local(path) => {
                write_with_crash_points(&path.join(name), &bytes, mid_write, written)
            }
            Dir::Object(dir) => {
                if let Some(point) = mid_write {
                    crate::crash::point(point);
                }
                dir.write(name, bytes)?;
                if let Some(point) = written {
                    crate::crash::point(point);
                }
                Ok(())
            }
        }
    }

    /// [`Dir::write_with_crash_points`] for a file that a later write in
    /// this directory makes count (a state file, then its commit): on a
    /// local disk the directory is not synced for it, the later write's
    /// sync makes its name durable too (one fsync fewer); a crash before
    /// leaves the old content or none. On an object store, the same PUT.
    pub(crate) fn write_before_next(
        &self,
        name: &str,
        bytes: Bytes,
        written: Option<&str>,
    ) -> Result<()> {
        match self {
            Dir::Local(path) => replace_with_crash_points(&path.join(name), &bytes, None, written),
            Dir::Object(_) => self.write_with_crash_points(name, bytes, None, written),
        }
    }

    /// Removes file `name` (nothing if it is not there).
    pub fn remove(&self, name: &str) -> Result<()> {
        match self {
            Dir::Local(path) => {
                let path = path.join(name);
                match fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(Error::io(format!("cannot remove {}", path.display()), e)),
                }
            }
            Dir::Object(dir) => dir.remove(name),
        }
    }

    /// Calls `visit` with each file directly in the directory (regular
    /// files locally, not subdirectories), in no particular order; a
    /// missing local directory has none.
    pub fn for_each(&self, mut visit: impl FnMut(Entry)) -> Result<()> {
        match self {
            Dir::Local(path) => {
                let entries = match fs::read_dir(path) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(Error::io(format!("cannot list {}", path.display()), e)),
                };
                for entry in entries {
                    let entry = entry
                        .map_err(|e| Error::io(format!("cannot list {}", path.display()), e))?;
                    // A file may vanish between the listing and here: skip it.
                    let Ok(metadata) = entry.metadata() else {
                        continue;
                    };
                    if !metadata.is_file() {
                        continue;
                    }
                    let modified_ms = metadata
                        .modified()
                        .ok()
                        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_millis() as i64);
                    visit(Entry {
                        name: entry.file_name().to_string_lossy().into_owned(),
                        modified_ms,
                        size: metadata.len(),
                    });
                }
                Ok(())
            }
            Dir::Object(dir) => dir.for_each(visit),
        }
    }

    /// The files directly in the directory (see [`Dir::for_each`]).
    pub fn list(&self) -> Result<Vec<Entry>> {
        let mut found = Vec::new();
        self.for_each(|entry| found.push(entry))?;
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_object_stores_and_everything_else_is_a_path() {
        assert!(is_url("s3://bucket/jobs/"));
        assert!(!is_url("/tmp/out"));
        assert!(!is_url("out/s3://x"));
        assert!(matches!(
            Dir::parse("file:///tmp/x", &StorageOptions::new()).unwrap(),
            Dir::Local(p) if p == Path::new("/tmp/x")
        ));
        let e = Dir::parse("ftp://host/x", &StorageOptions::new()).unwrap_err();
        assert!(
            e.to_string().contains("unknown storage scheme 'ftp://'"),
            "{e}"
        );
    }

    #[test]
    fn a_local_dir_writes_atomically_lists_and_removes() {
        let temporary = tempfile::tempdir().unwrap();
        let dir = Dir::parse(temporary.path().to_str().unwrap(), &StorageOptions::new())
            .unwrap()
            .join("sub");
        dir.create().unwrap();
        assert_eq!(dir.read("a").unwrap(), None);
        dir.write("a", b"one".to_vec()).unwrap();
        dir.write("a", b"two".to_vec()).unwrap();
        assert_eq!(dir.read("a").unwrap().unwrap().as_ref(), b"two");
        let names: Vec<String> = dir.list().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["a"]);
        dir.remove("a").unwrap();
        dir.remove("a").unwrap();
        assert!(dir.list().unwrap().is_empty());
    }
}
