//! The scheduler: runs a batch of every query at every batch time.
//!
//! One scheduler per engine, as Spark's JobGenerator: when the engine
//! starts, `zero = floor(now / I) * I`; batch `k` runs when the clock reaches
//! `zero + k·I`. At each batch time every source that a running query reads
//! is asked once for its batch, and every query runs its operators on it and
//! hands the result to its output, empty batches included. A query added
//! while the engine runs starts at the next batch time. If a batch takes
//! longer than the interval, the next one starts late and the *scheduling
//! delay* (a metric) grows: batches are never skipped.
//!
//! A query ends when it is stopped, when its output's consumer goes away
//! (a dropped [`BatchStream`](crate::stream::BatchStream)), when it fails, or when
//! every source it reads has ended. At the end of input, the batches that
//! its windows still need to emit every row they hold run at once, each at
//! its own batch time (a 10-second window open when stdin ends is emitted
//! at its end time, without waiting 10 seconds), and then the query ends.
//! Every operator answers for the rows it holds (`drain_until`, in the
//! operator contract of `operator.rs`).
//!
//! Under the available-now trigger (`trigger.rs`) the same batches run at
//! the same times, back to back without waiting for the clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use crate::query::QueryStatus;
use crate::runtime::readers::{Positions, Readers};
use crate::runtime::running_query::{BatchInputs, RunningQuery};
use crate::runtime::shared::{Inner, PendingQuery, RunState};
use crate::stack::DeepStack;
use crate::sync::lock;
use crate::time::{BatchTime, Clock};
use crate::trigger::Trigger;

/// The scheduler task. It holds the engine weakly: when every handle to
/// the engine is gone, it ends.
pub(crate) async fn run(weak: Weak<Inner>, clock: Arc<dyn Clock>, wake: Arc<Notify>) {
    let mut running: Vec<RunningQuery> = Vec::new();
    let mut readers = Readers::default();
    loop {
        let next = {
            let Some(inner) = weak.upgrade() else { return };
            inner.reap_stopped(&mut running, &mut readers);
            let state = inner.state();
            if state.run != RunState::Running {
                drop(state);
                // A graceful stop: the last batch finished; save its state so
                // that a restart recomputes nothing.
                inner.final_checkpoints(&mut running, &readers);
                return;
            }
            (state.next_batch, state.trigger, state.pending.is_empty())
        };
        let (next, trigger, nothing_pending) = next;
        if trigger == Trigger::AvailableNow && running.is_empty() && nothing_pending {
            // Nothing to run: wait for a query (or a stop).
            wake.notified().await;
            continue;
        } else if trigger == Trigger::AvailableNow {
            // Back to back: only let a stop request in between batches.
            tokio::task::yield_now().await;
        } else {
            tokio::select! {
                () = clock.wait_until(next.millis()) => {}
                () = wake.notified() => continue,
            }
        }
        let Some(inner) = weak.upgrade() else { return };
        let (pending, interval) = {
            let mut state = inner.state();
            if state.next_batch != next || state.run != RunState::Running {
                continue;
            }
            state.next_batch = next.plus(state.interval);
            (std::mem::take(&mut state.pending), state.interval)
        };
        // Compiling and running plans recurses once per level of their
        // expressions: that work, not the waiting, gets a deep stack.
        for query in pending {
            let activating = inner.activate(query, next.minus(interval), &mut readers);
            match DeepStack::new(activating).await {
                Ok(query) => running.push(query),
                Err((shared, e)) => inner.end_query(&shared, QueryStatus::Failed(Arc::new(e))),
            }
        }
        if trigger == Trigger::AvailableNow {
            // Each batch takes a batch's worth (or what is left); a stop
            // request gets in while it waits.
            tokio::select! {
                () = readers.ready() => {}
                () = wake.notified() => {
                    inner.state().next_batch = next;
                    continue;
                }
            }
        }
        DeepStack::new(inner.run_batch(next, &mut running, &mut readers)).await;
        // A restart's down time says how much of it is left.
        let catch_up = inner.state().catch_up.take();
        if let Some(mut catch_up) = catch_up
            && catch_up.ran(next, &inner.notices)
        {
            inner.state().catch_up = Some(catch_up);
        }
    }
}

impl Inner {
    /// Saves the state of every checkpointed query after its last batch.
    fn final_checkpoints(&self, running: &mut [RunningQuery], readers: &Readers) {
        let positions = readers.positions();
        for query in running.iter_mut() {
            if let Err(e) = query.final_checkpoint(&positions) {
                self.notices.send(format!(
                    "query '{}': the checkpoint at stop failed: {e}",
                    query.shared.name
                ));
            }
        }
    }

    /// Ends queries whose stop was requested, and pending ones too.
    fn reap_stopped(&self, running: &mut Vec<RunningQuery>, readers: &mut Readers) {
        let stopped_pending: Vec<PendingQuery> = {
            let mut state = self.state();
            let (stopped, keep) = std::mem::take(&mut state.pending)
                .into_iter()
                .partition(|q| q.shared.stop_requested.load(Ordering::SeqCst));
            state.pending = keep;
            stopped
        };
        for q in stopped_pending {
            self.end_query(&q.shared, QueryStatus::Stopped);
        }
        let mut i = 0;
        while i < running.len() {
            if running[i].shared.stop_requested.load(Ordering::SeqCst) {
                let mut q = running.remove(i);
                if let Err(e) = q.settle_checkpoint() {
                    self.notices.send(format!(
                        "query '{}': its last checkpoint failed: {e}",
                        q.shared.name
                    ));
                }
                readers.release(&q.shared.sources);
                self.end_query(&q.shared, QueryStatus::Stopped);
            } else {
                i += 1;
            }
        }
    }

    /// Runs batch `time` of every running query.
    async fn run_batch(
        &self,
        time: BatchTime,
        running: &mut Vec<RunningQuery>,
        readers: &mut Readers,
    ) {
        let delay = Duration::from_millis((self.clock.now_millis() - time.millis()).max(0) as u64);
        // Each source is asked once; every query reading it gets the same
        // batch. A batch that ran before a restart takes what it took then
        // (each query logged its own sources). A source is asked only when
        // a query that runs this batch reads it: one that only a query
        // skipping the batch (it ran before a restart) reads must keep its
        // input for that query's next batch.
        let mut replay = BTreeMap::new();
        let mut wanted = BTreeSet::new();
        for query in running.iter_mut() {
            if let Some(logged) = query.take_replay(time) {
                replay.extend(logged);
            }
            if !query.ran_before_restart(time) {
                wanted.extend(query.shared.sources.iter().cloned());
            }
        }
        let polled = readers.poll(self, time, &replay, &wanted);
        // Offsets are logged every batch; positions only go into a state
        // file, so they are read only when some query saves state now.
        let offsets = if running.iter().any(RunningQuery::checkpoints) {
            readers.offsets(&polled)
        } else {
            Positions::new()
        };
        let positions = if running.iter().any(RunningQuery::saves_state_now) {
            readers.positions()
        } else {
            Positions::new()
        };
        let listeners = lock(&self.listeners).clone();
        let mut ended = Vec::new();
        for (index, query) in running.iter_mut().enumerate() {
            // Batches a restored query already ran before it stopped.
            if query.ran_before_restart(time) {
                continue;
            }
            let inputs = BatchInputs {
                polled: &polled,
                offsets: &offsets,
                positions: &positions,
            };
            let mut status = self
                .run_query_batch(query, time, delay, inputs, &listeners)
                .await;
            if matches!(status, Some(QueryStatus::Finished)) {
                // Ended sources do not move: their positions hold for every
                // batch that runs after their end.
                let positions = readers.positions();
                status = self.drain(query, time, &positions, &listeners).await;
            }
            if let Some(status) = status {
                ended.push((index, status));
            }
        }
        for (index, status) in ended.into_iter().rev() {
            let mut query = running.remove(index);
            // It ends once its last checkpoint is written; a failure to
            // write it fails the query.
            let status = match query.settle_checkpoint() {
                Err(e) if !matches!(status, QueryStatus::Failed(_)) => {
                    QueryStatus::Failed(Arc::new(e))
                }
                _ => status,
            };
            readers.release(&query.shared.sources);
            self.end_query(&query.shared, status);
        }
    }
}
