//! One process at a time on a query's checkpoint.
//!
//! **Locally**, the `lock` file is held with `flock` (exclusive) and names
//! its holder (pid, host, since when). The kernel releases it when the
//! process ends, `kill -9` included, so a stale `lock` file never blocks a
//! restart.
//!
//! **On an object store** there is no lock to hold, so the `commit` object
//! is a lease as well as the commit (as Delta Lake and Iceberg commit with
//! conditional writes): it names its holder and when the holder last
//! renewed it, and it is only ever replaced by a conditional write of the
//! version its writer read (`If-Match`) or created where there was none
//! (`If-None-Match: *`). So:
//!
//! - a process starting on the checkpoint reads `commit`. A holder that is
//!   alive keeps it: on the same host, a process of that pid and start time
//!   exists (another context in this same process counts); on another
//!   host, it renewed the lease less than `lease` ago (10 s, or three batch
//!   intervals if longer; the hosts' clocks are assumed to agree to well
//!   within that). The newcomer then fails with an error naming the holder.
//!   A holder that is gone (killed, its machine lost) is replaced by a
//!   conditional write; of two newcomers racing, one wins and the other
//!   gets the same error;
//! - every commit of a batch rewrites the object conditionally with the
//!   version the holder wrote last, which renews the lease. If another
//!   process took over meanwhile (the holder was paused past its lease),
//!   the write fails and the old holder stops with an error instead of
//!   committing: two processes never both commit;
//! - a graceful stop writes it once more without a holder.

use std::fs;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::storage::{Conflict, Dir, Expect, ObjectDir, Version};

/// The name of the commit (and lease) object or file.
pub(super) const COMMIT: &str = "commit";

/// The shortest lease on an object-store checkpoint.
const MIN_LEASE: Duration = Duration::from_secs(10);

/// This process's hold on a query's checkpoint, while it runs.
#[derive(Debug)]
pub(crate) enum CheckpointLock {
    /// A local `lock` file held with `flock` (released when dropped).
    Local {
        /// The open file the lock is on.
        _held: fs::File,
    },
    /// The lease in an object store's `commit` object.
    Lease(Box<Lease>),
}

/// The holder's side of an object-store lease (see the module docs).
#[derive(Debug)]
pub(crate) struct Lease {
    dir: ObjectDir,
    holder: Value,
    lease: Duration,
    /// The version of `commit` this holder wrote last, and the batch it
    /// names.
    written: Mutex<(Version, Value)>,
}

/// This machine's name.
pub(super) fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "an unknown host".into())
}

/// When process `pid` started (clock ticks after boot), if it runs here.
fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields resume after its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Who this process is, as a lock names it.
fn this_holder() -> Value {
    let pid = std::process::id();
    let host = host_name();
    json!({
        "pid": pid,
        "host": host,
        "process_start": process_start(pid),
        "description": format!("pid {pid} on {host} (since {} ms after the epoch)", now_ms()),
    })
}

fn in_use(dir: &str, holder: &str) -> Error {
    Error::Checkpoint(format!(
        "the checkpoint in {dir} is in use by {holder}; one process at a time runs a \
         query from a checkpoint directory (stop that one, or use another directory)"
    ))
}

/// Takes the checkpoint in `dir` for this process, or says who holds it;
/// `interval` is the batch interval (the lease covers three).
pub(super) fn lock(dir: &Dir, interval: Duration) -> Result<CheckpointLock> {
    match dir {
        Dir::Local(path) => lock_file(path),
        Dir::Object(objects) => Ok(CheckpointLock::Lease(Box::new(Lease::take(
            objects,
            MIN_LEASE.max(interval * 3),
        )?))),
    }
}

fn lock_file(dir: &std::path::Path) -> Result<CheckpointLock> {
    use std::io::{Read, Seek, Write};
    let io = |what: &str, path: &std::path::Path, e: std::io::Error| {
        Error::Checkpoint(format!("cannot {what} {}: {e}", path.display()))
    };
    fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
    let path = dir.join("lock");
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io("open", &path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(in_use(
                &dir.display().to_string(),
                if holder.is_empty() {
                    "another process"
                } else {
                    holder
                },
            ));
        }
        Err(fs::TryLockError::Error(e)) => return Err(io("lock", &path, e)),
    }
    let holder = format!("{}\n", this_holder()["description"].as_str().unwrap_or(""));
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(holder.as_bytes()))
        .map_err(|e| io("write", &path, e))?;
    Ok(CheckpointLock::Local { _held: file })
}

/// The batch a `commit` file or object names: a local one holds the
/// batch time as text, an object-store one JSON with the lease.
pub(super) fn committed_batch(text: &[u8]) -> Option<Option<i64>> {
    let text = std::str::from_utf8(text).ok()?.trim();
    if let Ok(time) = text.parse() {
        return Some(Some(time));
    }
    let value: Value = serde_json::from_str(text).ok()?;
    Some(value["committed"].as_i64())
}

impl Lease {
    fn take(dir: &ObjectDir, lease: Duration) -> Result<Lease> {
        let holder = this_holder();
        let found = dir.read(COMMIT)?;
        let (expect, committed) = match found {
            None => (Expect::Absent, Value::Null),
            Some((bytes, version)) => {
                let current: Value = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::Checkpoint(format!("{}{COMMIT} is damaged: {e}", dir.display()))
                })?;
                if let Some(reason) = alive(&current) {
                    return Err(in_use(&dir.display(), &reason));
                }
                (Expect::Version(version), current["committed"].clone())
            }
        };
        let body = Self::body(&holder, &committed, lease);
        match write_if(dir, body, expect)? {
            Ok(version) => Ok(Lease {
                dir: dir.clone(),
                holder,
                lease,
                written: Mutex::new((version, committed)),
            }),
            Err(Conflict::Lost) => {
                let winner = dir
                    .read(COMMIT)?
                    .and_then(|(bytes, _)| serde_json::from_slice::<Value>(&bytes).ok())
                    .and_then(|v| v["holder"]["description"].as_str().map(str::to_string))
                    .unwrap_or_else(|| "another process".into());
                Err(in_use(&dir.display(), &winner))
            }
        }
    }

    fn body(holder: &Value, committed: &Value, lease: Duration) -> bytes::Bytes {
        let value = json!({
            "committed": committed,
            "holder": holder,
            "renewed_ms": now_ms() as u64,
            "lease_ms": lease.as_millis() as u64,
        });
        bytes::Bytes::from(serde_json::to_vec_pretty(&value).unwrap_or_default())
    }

    /// Commits batch `time` and renews the lease, or fails when another
    /// process took the checkpoint over.
    pub(super) fn commit(&self, time: i64) -> Result<()> {
        self.write(&self.holder, json!(time))
    }

    fn write(&self, holder: &Value, committed: Value) -> Result<()> {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let body = Self::body(holder, &committed, self.lease);
        match write_if(&self.dir, body, Expect::Version(written.0.clone()))? {
            Ok(version) => {
                *written = (version, committed);
                Ok(())
            }
            Err(Conflict::Lost) => {
                let now = self
                    .dir
                    .read(COMMIT)?
                    .and_then(|(bytes, _)| serde_json::from_slice::<Value>(&bytes).ok())
                    .and_then(|v| v["holder"]["description"].as_str().map(str::to_string))
                    .unwrap_or_else(|| "another process".into());
                Err(Error::Checkpoint(format!(
                    "the checkpoint in {} was taken over by {now} (this run was not heard \
                     from for longer than its lease of {} s); this run stops without committing",
                    self.dir.display(),
                    self.lease.as_secs()
                )))
            }
        }
    }
}

impl Drop for Lease {
    /// A graceful end gives the lease up, so a restart on another host
    /// need not wait for it to expire.
    fn drop(&mut self) {
        let committed = self
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone();
        let _ = self.write(&Value::Null, committed);
    }
}

/// Writes `body` as the `commit` object if it is as `expect` says. A
/// conflict after a write whose answer was lost (the request timed out
/// after the store applied it, and its retry found the new version) is
/// recognised by the object holding exactly `body` (which names this
/// process and the moment): that write is ours.
fn write_if(
    dir: &ObjectDir,
    body: bytes::Bytes,
    expect: Expect,
) -> Result<std::result::Result<Version, Conflict>> {
    match dir.write_if(COMMIT, body.clone(), expect)? {
        Ok(version) => Ok(Ok(version)),
        Err(Conflict::Lost) => match dir.read(COMMIT)? {
            Some((found, version)) if found == body => Ok(Ok(version)),
            _ => Ok(Err(Conflict::Lost)),
        },
    }
}

/// Why the holder a `commit` object names still holds it, or `None` when
/// it is gone (see the module docs).
fn alive(current: &Value) -> Option<String> {
    let holder = &current["holder"];
    if holder.is_null() {
        return None;
    }
    let description = holder["description"]
        .as_str()
        .unwrap_or("another process")
        .to_string();
    let pid = holder["pid"].as_u64().unwrap_or(0) as u32;
    if holder["host"].as_str() == Some(host_name().as_str()) {
        let same_process = pid == std::process::id();
        let running =
            process_start(pid).is_some() && process_start(pid) == holder["process_start"].as_u64();
        return (same_process || running).then_some(description);
    }
    let renewed = current["renewed_ms"].as_u64().unwrap_or(0) as u128;
    let lease = current["lease_ms"].as_u64().unwrap_or(0) as u128;
    let age = now_ms().saturating_sub(renewed);
    (age < lease).then(|| {
        format!(
            "{description}, whose lease was renewed {:.1} s ago (if that process is gone, \
             the lease expires in {:.1} s)",
            age as f64 / 1000.0,
            (lease - age) as f64 / 1000.0
        )
    })
}
