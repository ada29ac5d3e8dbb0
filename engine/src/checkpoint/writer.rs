//! The checkpoint writer: a query's checkpoints written on a thread of
//! their own, while its next batch runs (Flink's asynchronous snapshots).
//!
//! **What stays on the batch's path.** After batch `t`'s output was
//! delivered, the query takes its snapshot: each operator's state as Arrow
//! batches (shared with the operator, not copied: a closed pane's partials
//! are immutable) and JSON values, and each source's position. That is
//! all the batch waits for.
//!
//! **What the writer does**, in this order, for batch `t`: encodes the
//! snapshot and writes `state-<t>.bin` (when state is due), commits `t`,
//! and prunes what no restart can need (see the order of a batch in
//! [`super`]). Batch `t + 1` runs meanwhile.
//!
//! **One checkpoint at a time.** The checkpoint of batch `t + 1` is handed
//! over only once `t`'s is written: the next generation's writers must
//! know where the last one put its parts ([`Chain`]), and a disk slower
//! than the batches holds the batches back instead of piling snapshots up
//! in memory. So every due checkpoint is written, in batch order; on a
//! disk that keeps up, a batch never waits.
//!
//! **After a crash** the commit of the last batch (or two) whose output was
//! delivered may be missing, as after a crash between a batch's output and
//! its commit: the restart resumes from the state before and runs those
//! batches again from the offset log. The files sink rewrites the same
//! bytes, the Kafka sink skips the batches its transactions committed, the
//! console prints them again.
//!
//! **The writer takes what CPU is left** (`SCHED_IDLE` on Linux, as
//! RocksDB lowers its compaction threads): woken by a hand-over, a thread
//! of normal priority would preempt the batch's thread on its own core and
//! charge the encoding to the batch's time, while the other core idles.
//! But when a batch has to wait for the writer (its checkpoint is due and
//! the one before is not written), the writer is raised to normal priority
//! until that checkpoint is written: on a machine whose cores other work
//! keeps busy, an idle-priority writer would hardly ever run, and the
//! query with it. Each checkpoint starts at idle priority again. Raising a
//! thread takes a privilege (root, `CAP_SYS_NICE`, or an `RLIMIT_NICE`
//! that allows nice 0): a process without it cannot raise a writer it
//! lowered, so its writer is never lowered and runs at normal priority.
//!
//! **Failures** are the next checkpoint's: a write that failed is reported
//! when the query next waits for the writer (its next checkpoint, or its
//! end), and fails the query there.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Chain, CheckpointDir, CheckpointLock, StateWriter};
use crate::error::{Error, Result};
use crate::sync::lock;
use crate::time::BatchTime;

/// What one checkpoint wrote.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Written {
    /// Bytes of the state file (0 when only the commit was written).
    pub(crate) bytes: u64,
    /// From the hand-over to the commit's end (the wait for the disk
    /// included).
    pub(crate) took: Duration,
}

/// A checkpoint handed to the writer.
struct Job {
    time: BatchTime,
    /// The snapshot, when state is saved with this batch.
    states: Option<Vec<StateWriter>>,
    handed_over: Instant,
}

/// A query's checkpoint writer (module docs).
pub(crate) struct CheckpointWriter {
    chain: Arc<Mutex<Chain>>,
    jobs: Option<SyncSender<Job>>,
    written: Receiver<Result<Written>>,
    /// Whether a checkpoint is being written.
    in_flight: bool,
    thread: Option<JoinHandle<()>>,
    /// The writer thread's kernel id (0 until it runs), to raise it.
    thread_id: Arc<AtomicI32>,
}

impl CheckpointWriter {
    /// Starts the writer of a query's checkpoints into `dir`, holding
    /// `hold` (released when the writer ends, after its last commit).
    pub(crate) fn start(
        query: &str,
        dir: CheckpointDir,
        hold: CheckpointLock,
        chain: Chain,
    ) -> Result<Self> {
        let chain = Arc::new(Mutex::new(chain));
        let (jobs, queue) = sync_channel::<Job>(1);
        let (report, written) = sync_channel(1);
        let shared = Arc::clone(&chain);
        let thread_id = Arc::new(AtomicI32::new(0));
        let this_thread = Arc::clone(&thread_id);
        let thread = std::thread::Builder::new()
            .name(format!("brooklet-checkpoint-{query}"))
            .spawn(move || {
                this_thread.store(priority::this_thread(), Ordering::SeqCst);
                let idle = priority::can_lower_and_raise();
                for job in queue {
                    if idle {
                        priority::lower();
                    }
                    if report.send(write(&dir, &hold, &shared, job)).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the checkpoint writer: {e}")))?;
        Ok(CheckpointWriter {
            chain,
            jobs: Some(jobs),
            written,
            in_flight: false,
            thread: Some(thread),
            thread_id,
        })
    }

    /// Waits for the checkpoint being written, if one is: what it wrote,
    /// or why it failed.
    pub(crate) fn settle(&mut self) -> Result<Option<Written>> {
        if !std::mem::take(&mut self.in_flight) {
            return Ok(None);
        }
        let gone = || Error::Internal("the checkpoint writer is gone".into());
        let written = match self.written.try_recv() {
            Ok(written) => written,
            Err(TryRecvError::Empty) => {
                // A batch waits for it: it runs at normal priority now.
                priority::raise(self.thread_id.load(Ordering::SeqCst));
                self.written.recv().map_err(|_| gone())?
            }
            Err(TryRecvError::Disconnected) => return Err(gone()),
        };
        written.map(Some)
    }

    /// Where the last generation put its parts, for the next generation's
    /// writers. Call after [`CheckpointWriter::settle`].
    pub(crate) fn chain(&self) -> MutexGuard<'_, Chain> {
        lock(&self.chain)
    }

    /// Hands over the checkpoint of batch `time` (with `states` when its
    /// state is saved), after the one before is written: what that one
    /// wrote, or why it failed.
    pub(crate) fn hand_over(
        &mut self,
        time: BatchTime,
        states: Option<Vec<StateWriter>>,
    ) -> Result<Option<Written>> {
        let before = self.settle()?;
        let job = Job {
            time,
            states,
            handed_over: Instant::now(),
        };
        self.jobs
            .as_ref()
            .and_then(|jobs| jobs.send(job).ok())
            .ok_or_else(|| Error::Internal("the checkpoint writer is gone".into()))?;
        self.in_flight = true;
        Ok(before)
    }
}

impl Drop for CheckpointWriter {
    /// Lets the checkpoint being written finish (and the lock go after it).
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer's priority (module docs). Where the kernel refuses a
/// change, the thread keeps the priority it has.
mod priority {
    /// The calling thread's kernel id.
    pub(super) fn this_thread() -> i32 {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: gettid has no arguments and cannot fail.
            #[allow(unsafe_code)]
            unsafe {
                libc::gettid()
            }
        }
        #[cfg(not(target_os = "linux"))]
        0
    }

    /// Whether the calling thread may be lowered and raised again (it is
    /// left at normal priority).
    pub(super) fn can_lower_and_raise() -> bool {
        #[cfg(target_os = "linux")]
        {
            set(0, libc::SCHED_IDLE) && set(0, libc::SCHED_OTHER)
        }
        #[cfg(not(target_os = "linux"))]
        false
    }

    /// Makes the calling thread run only on CPU no other thread wants.
    pub(super) fn lower() {
        #[cfg(target_os = "linux")]
        set(0, libc::SCHED_IDLE);
    }

    /// Gives thread `id` (0: unknown, nothing is done) a normal priority.
    pub(super) fn raise(id: i32) {
        #[cfg(target_os = "linux")]
        if id != 0 {
            set(id, libc::SCHED_OTHER);
        }
        let _ = id;
    }

    /// Sets thread `id`'s (0: the calling thread's) policy; whether the
    /// kernel did.
    #[cfg(target_os = "linux")]
    fn set(id: i32, policy: libc::c_int) -> bool {
        let parameters = libc::sched_param { sched_priority: 0 };
        // SAFETY: `id` is a thread of this process (0: the calling one);
        // the parameters live across the call, which only reads them.
        #[allow(unsafe_code)]
        unsafe {
            libc::sched_setscheduler(id, policy, &parameters) == 0
        }
    }
}

/// Writes one checkpoint: the state (when due), the commit, then pruning.
fn write(
    dir: &CheckpointDir,
    hold: &CheckpointLock,
    chain: &Mutex<Chain>,
    job: Job,
) -> Result<Written> {
    let mut bytes = 0;
    let saved = job.states.is_some();
    if let Some(states) = job.states {
        bytes = dir.save_state(job.time, states, &mut lock(chain))? as u64;
    }
    crate::crash::point("before-commit");
    dir.commit(hold, job.time)?;
    if saved {
        dir.prune(job.time, &lock(chain))?;
    }
    Ok(Written {
        bytes,
        took: job.handed_over.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Dir;

    #[test]
    fn a_failed_write_is_reported_at_the_next_wait_and_the_lock_goes_with_the_writer() {
        let temporary = tempfile::tempdir().unwrap();
        let path = temporary.path().to_path_buf();
        let checkpoint = CheckpointDir::new(Dir::Local(path.clone()));
        let hold = checkpoint.lock(Duration::from_secs(1)).unwrap();
        let mut writer =
            CheckpointWriter::start("q", checkpoint.clone(), hold, Chain::new(0)).unwrap();
        let at = BatchTime::from_millis;
        assert!(writer.hand_over(at(1000), None).unwrap().is_none());
        let mut states = writer.chain().writer(0);
        states.value("n", serde_json::json!(1));
        // The commit of 1000 is waited for before 2000 is handed over.
        assert!(
            writer
                .hand_over(at(2000), Some(vec![states]))
                .unwrap()
                .is_some()
        );
        let written = writer.settle().unwrap().expect("2000 was being written");
        assert!(written.bytes > 0);
        assert!(path.join("state-2000.bin").exists());
        assert_eq!(
            std::fs::read_to_string(path.join("commit")).unwrap(),
            "2000"
        );
        // A commit that cannot be written: its error comes at the next wait.
        std::fs::remove_file(path.join("commit")).unwrap();
        std::fs::create_dir(path.join("commit")).unwrap();
        writer.hand_over(at(3000), None).unwrap();
        let e = writer.settle().unwrap_err().to_string();
        assert!(e.contains("commit"), "{e}");
        assert!(
            writer.settle().unwrap().is_none(),
            "nothing is being written"
        );
        // The lock is the writer's until it ends.
        assert!(checkpoint.lock(Duration::from_secs(1)).is_err());
        drop(writer);
        checkpoint.lock(Duration::from_secs(1)).unwrap();
    }

    /// A thread's scheduling policy, from `/proc` (field 41 of its `stat`).
    #[cfg(target_os = "linux")]
    fn policy(thread: i32) -> i64 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{thread}/stat")).unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 1..];
        after_name
            .split_whitespace()
            .nth(38)
            .unwrap()
            .parse()
            .unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_lowered_thread_is_idle_until_another_raises_it() {
        let (lowered, ready) = std::sync::mpsc::channel();
        let (raised, done) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let allowed = priority::can_lower_and_raise();
            if allowed {
                priority::lower();
            }
            lowered.send((priority::this_thread(), allowed)).unwrap();
            done.recv().unwrap();
        });
        let (id, allowed) = ready.recv().unwrap();
        if allowed {
            assert_eq!(policy(id), libc::SCHED_IDLE as i64);
            priority::raise(id);
        }
        assert_eq!(policy(id), libc::SCHED_OTHER as i64);
        raised.send(()).unwrap();
        thread.join().unwrap();
    }
}
