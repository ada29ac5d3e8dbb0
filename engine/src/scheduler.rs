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
//! (a dropped [`BatchStream`](crate::BatchStream)), when it fails, or when
//! every source it reads has ended. At the end of input, the batches that
//! its windows still need to emit every row they hold run at once, each at
//! its own batch time (a 10-second window open when stdin ends is emitted
//! at its end time, without waiting 10 seconds), and then the query ends.
//! Every operator answers for the rows it holds (`drain_until`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use futures::FutureExt;
use tokio::sync::Notify;

use crate::aggregate::Aggregation;
use crate::checkpoint::{CheckpointDir, CheckpointLock, Fingerprint, StateReader, StateWriter};
use crate::engine::{Engine, Inner, PendingQuery, RunState};
use crate::error::{Error, Result};
use crate::event_window::{EventWindowOperator, Late};
use crate::graph::{Node, NodeId, NodeKind};
use crate::metrics::BatchInfo;
use crate::plan::StatelessOperator;
use crate::query::{Output, QueryShared, QueryStatus};
use crate::running::RunningAggregateOperator;
use crate::source::{SourceBatch, SourceContext, SourceReader};
use crate::stack::DeepStack;
use crate::sync::lock;
use crate::time::{BatchTime, Clock};
use crate::watermark::{NO_WATERMARK, WatermarkTracker, format_lateness, format_watermark};
use crate::window::{RawWindowOperator, WindowOperator};

/// A query the scheduler runs.
struct RunningQuery {
    shared: Arc<QueryShared>,
    order: Vec<Arc<Node>>,
    operators: HashMap<NodeId, Operator>,
    output: Output,
    batches: u64,
    /// Whether the first late row was already reported.
    reported_late: bool,
    /// Where its checkpoints go, and every how many batches state is saved.
    checkpoint: Option<(CheckpointDir, u64)>,
    /// This process's hold on the checkpoint directory, while it runs.
    _lock: Option<CheckpointLock>,
    /// Batches up to this time ran before a restart: they are not run again.
    resume_after: Option<BatchTime>,
    /// The last batch it ran.
    last_batch: Option<BatchTime>,
    /// The bytes and time of the checkpoint after the last batch.
    last_checkpoint: (u64, Duration),
    /// Batches to run again after a restart, with what each source took.
    replay: BTreeMap<BatchTime, BTreeMap<String, serde_json::Value>>,
}

/// Restores each operator's state saved by [`RunningQuery::save_states`].
fn load_states(
    order: &[Arc<Node>],
    operators: &mut HashMap<NodeId, Operator>,
    states: &[StateReader],
) -> Result<()> {
    if states.len() < order.len() {
        return Err(Error::Checkpoint(format!(
            "the saved state has {} operators, the query has {}",
            states.len(),
            order.len()
        )));
    }
    for (node, state) in order.iter().zip(states) {
        match operators.get_mut(&node.id) {
            Some(Operator::Window(op)) => op.load(state)?,
            Some(Operator::RawWindow(op)) => op.load(state)?,
            Some(Operator::Running(op)) => op.load(state)?,
            Some(Operator::EventWindow(op, clock)) => {
                op.load(state)?;
                clock.load(state)?;
            }
            Some(Operator::Stateless(_)) | None => {}
        }
    }
    Ok(())
}

/// The batch a single-input node reads at this batch time.
fn input_batch(node: &Node, values: &HashMap<NodeId, Option<RecordBatch>>) -> RecordBatch {
    let input = node.inputs()[0];
    values
        .get(&input.id)
        .cloned()
        .flatten()
        .unwrap_or_else(|| RecordBatch::new_empty(input.schema.clone()))
}

/// A compiled operator of a running query.
enum Operator {
    Stateless(StatelessOperator),
    Window(WindowOperator),
    EventWindow(EventWindowOperator, WatermarkTracker),
    RawWindow(RawWindowOperator),
    Running(RunningAggregateOperator),
}

/// What a caught panic said.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Each source's position after this batch's poll, for checkpoints.
type Positions = BTreeMap<String, Option<serde_json::Value>>;

/// An open source and how many running queries read it.
struct ActiveReader {
    reader: Box<dyn SourceReader>,
    users: usize,
}

/// The scheduler task. It holds the engine weakly: when every handle to
/// the engine is gone, it ends.
pub(crate) async fn run(weak: Weak<Inner>, clock: Arc<dyn Clock>, wake: Arc<Notify>) {
    let mut running: Vec<RunningQuery> = Vec::new();
    let mut readers: BTreeMap<String, ActiveReader> = BTreeMap::new();
    loop {
        let next = {
            let Some(inner) = weak.upgrade() else { return };
            let engine = Engine { inner };
            engine.reap_stopped(&mut running, &mut readers);
            let state = engine.state();
            if state.run != RunState::Running {
                drop(state);
                // A graceful stop: the last batch finished; save its state so
                // that a restart recomputes nothing.
                engine.final_checkpoints(&mut running, &readers);
                return;
            }
            state.next_batch
        };
        tokio::select! {
            () = clock.wait_until(next.millis()) => {}
            () = wake.notified() => continue,
        }
        let Some(inner) = weak.upgrade() else { return };
        let engine = Engine { inner };
        let (pending, interval) = {
            let mut state = engine.state();
            if state.next_batch != next || state.run != RunState::Running {
                continue;
            }
            state.next_batch = next.plus(state.interval);
            (std::mem::take(&mut state.pending), state.interval)
        };
        // Compiling and running plans recurses once per level of their
        // expressions: that work, not the waiting, gets a deep stack.
        for query in pending {
            let activating = engine.activate(query, next.minus(interval), interval, &mut readers);
            match DeepStack::new(activating).await {
                Ok(query) => running.push(query),
                Err((shared, e)) => engine.end_query(&shared, QueryStatus::Failed(Arc::new(e))),
            }
        }
        DeepStack::new(engine.run_batch(next, &mut running, &mut readers)).await;
    }
}

impl Engine {
    /// Compiles a query's operators and opens its sources.
    async fn activate(
        &self,
        pending: PendingQuery,
        start: BatchTime,
        interval: Duration,
        readers: &mut BTreeMap<String, ActiveReader>,
    ) -> std::result::Result<RunningQuery, (Arc<QueryShared>, Error)> {
        let PendingQuery {
            shared,
            node,
            output,
        } = pending;
        if shared.stop_requested.load(Ordering::SeqCst) {
            self.end_query(&shared, QueryStatus::Stopped);
            return Err((shared, Error::Internal("stopped before start".into())));
        }
        let order = node.post_order();
        let checkpoint = self.state().checkpoint.clone();
        // The query's zero: where its processing-time windows start counting.
        let mut zero = start;
        let mut restored = None;
        let mut checkpoint_dir = None;
        let mut lock = None;
        if let Some(settings) = &checkpoint {
            let dir = CheckpointDir::new(settings.dir.join(&shared.name));
            match dir.lock() {
                Ok(held) => lock = Some(held),
                Err(e) => return Err((shared, e)),
            }
            let query = shared
                .description
                .clone()
                .unwrap_or_else(|| shared.name.clone());
            let fingerprint = Fingerprint::new(&query, &node.schema);
            match dir.open(&fingerprint, start, interval.as_millis() as i64) {
                Ok(Some(found)) => {
                    for warning in &found.warnings {
                        self.inner
                            .notices
                            .send(format!("query '{}': {warning}", shared.name));
                    }
                    zero = found.zero;
                    restored = Some(found);
                }
                Ok(None) => {}
                Err(e) => return Err((shared, e)),
            }
            checkpoint_dir = Some((dir, settings.every.max(1)));
        }
        let mut operators = HashMap::new();
        let session = self.inner.session.state();
        for node in &order {
            let operator = match &node.kind {
                NodeKind::Source { .. } => continue,
                NodeKind::Stateless { plan, .. } => StatelessOperator::compile(&session, plan)
                    .await
                    .map(Operator::Stateless),
                NodeKind::WindowAggregate { plan, input, spec } => match spec.validate(interval) {
                    Ok(()) => match Aggregation::compile(&session, plan, false).await {
                        Ok(aggregation) => WindowOperator::new(
                            *spec,
                            zero,
                            input.id,
                            aggregation,
                            node.schema.clone(),
                        )
                        .map(Operator::Window),
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                },
                NodeKind::EventWindowAggregate {
                    plan,
                    input,
                    window,
                } => match self.watermark_tracker(node, start) {
                    Ok(tracker) => match Aggregation::compile(&session, plan, true).await {
                        Ok(aggregation) => EventWindowOperator::new(
                            input.id,
                            aggregation,
                            node.schema.clone(),
                            window.clone(),
                        )
                        .map(|op| Operator::EventWindow(op, tracker)),
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                },
                NodeKind::RunningAggregate { plan, input, spec } => {
                    match Aggregation::compile(&session, plan, false).await {
                        Ok(aggregation) => {
                            RunningAggregateOperator::new(input.id, aggregation, *spec)
                                .map(Operator::Running)
                        }
                        Err(e) => Err(e),
                    }
                }
                NodeKind::Window {
                    input,
                    spec,
                    bounds,
                } => spec.validate(interval).map(|()| {
                    Operator::RawWindow(RawWindowOperator::new(
                        *spec,
                        zero,
                        input.schema.clone(),
                        bounds.then(|| node.schema.clone()),
                    ))
                }),
            };
            match operator {
                Ok(operator) => {
                    operators.insert(node.id, operator);
                }
                Err(e) => return Err((shared, e)),
            }
        }
        // The sources this query opened (a source another query already
        // reads keeps that query's position).
        let mut opened = Vec::new();
        for name in &shared.sources {
            if let Some(active) = readers.get_mut(name) {
                active.users += 1;
                continue;
            }
            opened.push(name.clone());
            let (source, metrics) = {
                let state = self.state();
                match state.sources.get(name) {
                    Some(s) => (Arc::clone(&s.source), Arc::clone(&s.metrics)),
                    None => {
                        drop(state);
                        let e = Error::Config(format!("source '{name}' was dropped"));
                        self.release_sources(&shared.sources, readers);
                        return Err((shared, e));
                    }
                }
            };
            let ctx = SourceContext {
                name: name.clone(),
                start,
                interval,
                metrics,
                notices: self.inner.notices.clone(),
                checkpoint_dir: checkpoint.as_ref().map(|c| c.dir.clone()),
            };
            match source.open(ctx) {
                Ok(reader) => {
                    readers.insert(name.clone(), ActiveReader { reader, users: 1 });
                }
                Err(e) => {
                    self.release_sources(&shared.sources, readers);
                    return Err((shared, e));
                }
            }
        }
        let mut resume_after = None;
        let mut replay = BTreeMap::new();
        if let Some(found) = restored {
            let restoring = Instant::now();
            let state_time = found.state.as_ref().map(|(t, _)| *t);
            if let Some((_, states)) = found.state {
                // A state that decodes but does not fit must not panic the
                // scheduler: it fails the query with a message.
                let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    load_states(&order, &mut operators, &states)
                }))
                .unwrap_or_else(|panic| {
                    Err(Error::Checkpoint(format!(
                        "the saved state does not fit the query: {}",
                        panic_message(&*panic)
                    )))
                })
                .and_then(|()| {
                    let sources = &states[order.len()..];
                    for (name, state) in shared.sources.iter().zip(sources) {
                        if let (true, Some(active)) = (opened.contains(name), readers.get_mut(name))
                        {
                            active.reader.load(state.value("position")?)?;
                        }
                    }
                    Ok(())
                });
                if let Err(e) = loaded {
                    self.release_sources(&shared.sources, readers);
                    return Err((shared, e));
                }
            }
            // Batches after the saved state run again, with the input the
            // offset log recorded for them.
            let resume = state_time.unwrap_or(found.zero);
            resume_after = Some(resume);
            replay = found.replay;
            if let Some(last) = found.committed {
                self.inner.notices.send(format!(
                    "query '{}': resuming after batch {resume} from its checkpoint (last finished batch {last}; {}, {} bytes, restored in {} ms; {} logged batch{} to run again)",
                    shared.name,
                    state_time.map_or("no state".into(), |t| format!("state of batch {t}")),
                    found.bytes,
                    restoring.elapsed().as_millis(),
                    replay.len(),
                    if replay.len() == 1 { "" } else { "es" }
                ));
            }
        }
        shared.status.send_replace(QueryStatus::Running);
        Ok(RunningQuery {
            shared,
            order,
            operators,
            output,
            batches: 0,
            reported_late: false,
            checkpoint: checkpoint_dir,
            _lock: lock,
            resume_after,
            last_batch: None,
            last_checkpoint: (0, Duration::ZERO),
            replay,
        })
    }

    /// The watermark of an event-time node: over the sources it reads,
    /// with their declared watermarks.
    fn watermark_tracker(&self, node: &Arc<Node>, start: BatchTime) -> Result<WatermarkTracker> {
        let state = self.state();
        let sources = node
            .sources()
            .into_iter()
            .map(|name| {
                let watermark = state
                    .sources
                    .get(&name)
                    .and_then(|s| s.watermark.clone())
                    .ok_or_else(|| {
                        Error::Plan(format!(
                            "source '{name}' has no watermark, which an event-time window needs"
                        ))
                    })?;
                Ok((name, watermark))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(WatermarkTracker::new(sources, state.idle_timeout, start))
    }

    /// Counts late rows on their source and warns the first time a query
    /// drops any.
    fn report_late(
        &self,
        query: &mut RunningQuery,
        time: BatchTime,
        late: &[(Vec<String>, Late, i64)],
    ) {
        for (sources, late, watermark) in late.iter().filter(|(_, l, _)| l.rows > 0) {
            if let [only] = sources.as_slice()
                && let Some(s) = self.state().sources.get(only)
            {
                s.metrics.add_late(late.rows);
            }
            if query.reported_late {
                continue;
            }
            query.reported_late = true;
            let from = match sources.as_slice() {
                [one] => format!("source '{one}'"),
                many => format!("sources {}", many.join(", ")),
            };
            let declared: Vec<String> = sources
                .iter()
                .filter_map(|name| {
                    let w = self.state().sources.get(name)?.watermark.clone()?;
                    Some(format!(
                        "WATERMARK FOR {} AS {} - INTERVAL '{} milliseconds'",
                        w.column,
                        w.column,
                        w.delay.as_millis()
                    ))
                })
                .collect();
            self.inner.notices.send(format!(
                "query '{}': dropped {} late row{} from {from} in batch {time} (up to {} behind the \
                 watermark {}; their windows had closed). Later drops are only counted (\\d, \
                 --progress); to keep such rows, raise the delay in {}",
                query.shared.name,
                late.rows,
                if late.rows == 1 { "" } else { "s" },
                format_lateness(late.max_behind),
                format_watermark(*watermark),
                declared.join(" and ")
            ));
        }
    }

    /// Releases one query's hold on its sources; a source nobody reads is closed.
    fn release_sources(&self, sources: &[String], readers: &mut BTreeMap<String, ActiveReader>) {
        for name in sources {
            if let Some(active) = readers.get_mut(name) {
                active.users -= 1;
                if active.users == 0 {
                    readers.remove(name);
                }
            }
        }
    }

    /// Saves the state of every checkpointed query after its last batch.
    fn final_checkpoints(
        &self,
        running: &mut [RunningQuery],
        readers: &BTreeMap<String, ActiveReader>,
    ) {
        let positions: Positions = readers
            .iter()
            .map(|(name, active)| (name.clone(), active.reader.save()))
            .collect();
        for query in running.iter_mut() {
            if let Some(last) = query.last_batch
                && let Err(e) = query.checkpoint(last, &positions, true)
            {
                self.inner.notices.send(format!(
                    "query '{}': the checkpoint at stop failed: {e}",
                    query.shared.name
                ));
            }
        }
    }

    /// Ends queries whose stop was requested, and pending ones too.
    fn reap_stopped(
        &self,
        running: &mut Vec<RunningQuery>,
        readers: &mut BTreeMap<String, ActiveReader>,
    ) {
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
                let q = running.remove(i);
                self.release_sources(&q.shared.sources, readers);
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
        readers: &mut BTreeMap<String, ActiveReader>,
    ) {
        let delay =
            Duration::from_millis((self.inner.clock.now_millis() - time.millis()).max(0) as u64);
        // Each source is asked once; every query reading it gets the same batch.
        let mut polled: BTreeMap<String, std::result::Result<SourceBatch, Arc<Error>>> =
            BTreeMap::new();
        // A batch that ran before a restart takes what it took then.
        let replay: BTreeMap<String, serde_json::Value> = running
            .iter_mut()
            .find_map(|q| q.replay.remove(&time))
            .unwrap_or_default();
        for (name, active) in readers.iter_mut() {
            let batch = match replay.get(name) {
                Some(offsets) => active.reader.replay(time, offsets),
                None => active.reader.next_batch(time),
            };
            polled.insert(name.clone(), batch.map_err(Arc::new));
            let skipped = self
                .state()
                .sources
                .get(name)
                .and_then(|s| s.metrics.take_skipped());
            if let Some(report) = skipped {
                self.inner.notices.send(format!(
                    "source '{name}': skipped {} malformed record{} in batch {time}; first at {}",
                    report.count,
                    if report.count == 1 { "" } else { "s" },
                    report.first
                ));
            }
        }
        // Offsets are logged every batch; positions only go into a state
        // file, so they are read only when some query saves state now.
        let (offsets, positions) = {
            let read = |f: fn(&dyn SourceReader) -> Option<serde_json::Value>| -> Positions {
                readers
                    .iter()
                    .map(|(name, active)| (name.clone(), f(active.reader.as_ref())))
                    .collect()
            };
            let checkpointing = running.iter().any(|q| q.checkpoint.is_some());
            let saving = running.iter().any(RunningQuery::saves_state_now);
            (
                if checkpointing {
                    read(|r| r.offsets())
                } else {
                    Positions::new()
                },
                if saving {
                    read(|r| r.save())
                } else {
                    Positions::new()
                },
            )
        };
        let listeners = lock(&self.inner.listeners).clone();
        let mut ended = Vec::new();
        for (index, query) in running.iter_mut().enumerate() {
            // Batches a restored query already ran before it stopped.
            if query.resume_after.is_some_and(|last| time <= last) {
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
                let positions: Positions = readers
                    .iter()
                    .map(|(name, active)| (name.clone(), active.reader.save()))
                    .collect();
                status = self.drain(query, time, &positions, &listeners).await;
            }
            if let Some(status) = status {
                ended.push((index, status));
            }
        }
        for (index, status) in ended.into_iter().rev() {
            let query = running.remove(index);
            self.release_sources(&query.shared.sources, readers);
            self.end_query(&query.shared, status);
        }
    }

    /// Runs batch `time` of one query, reports its figures, and says
    /// whether the query ended (finished, stopped or failed).
    async fn run_query_batch(
        &self,
        query: &mut RunningQuery,
        time: BatchTime,
        delay: Duration,
        inputs: BatchInputs<'_>,
        listeners: &[Arc<dyn crate::StreamingListener>],
    ) -> Option<QueryStatus> {
        let started = Instant::now();
        query.last_checkpoint = (0, Duration::ZERO);
        let outcome = match query.log_offsets(time, inputs.offsets) {
            // A panic in a batch (an operator, a user callback) fails that
            // query with an error; the engine and other queries go on.
            Ok(()) => {
                std::panic::AssertUnwindSafe(query.run_batch(time, inputs.polled, inputs.positions))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| Err(Error::Panic(panic_message(&*panic))))
            }
            Err(e) => Err(e),
        };
        query.last_batch = Some(time);
        let mut late_rows = 0;
        let (status, input_rows, output_rows) = match outcome {
            Ok(BatchOutcome {
                input_rows,
                output_rows,
                end_of_input,
                consumer_gone,
                late,
            }) => {
                late_rows = late.iter().map(|(_, l, _)| l.rows).sum();
                self.report_late(query, time, &late);
                let status = if consumer_gone {
                    Some(QueryStatus::Stopped)
                } else if end_of_input {
                    Some(QueryStatus::Finished)
                } else {
                    None
                };
                (status, input_rows, output_rows)
            }
            Err(e) => {
                let e = Arc::new(e);
                if let Output::Channel(tx) = &query.output {
                    let _ = tx
                        .send(Err(Error::Query {
                            query: query.shared.name.clone(),
                            cause: Arc::clone(&e),
                        }))
                        .await;
                }
                (Some(QueryStatus::Failed(e)), 0, 0)
            }
        };
        query.batches += 1;
        let info = BatchInfo {
            batch_time: time,
            input_rows,
            output_rows,
            scheduling_delay: delay,
            processing_time: started.elapsed(),
            batches: query.batches,
            state_bytes: query.state_bytes(),
            late_rows,
            watermark: query.watermark(),
            checkpoint_bytes: query.last_checkpoint.0,
            checkpoint_time: query.last_checkpoint.1,
        };
        query.shared.progress.send_replace(Some(info.clone()));
        for listener in listeners {
            listener.on_batch_completed(&query.shared.name, &info);
        }
        status
    }

    /// The input of a query ended with batch `time`. Every operator is asked
    /// which batch emits its last output that holds rows
    /// ([`RunningQuery::drain_until`]); the batches up to it run now, one
    /// after another without waiting for the clock, each at its own batch
    /// time and with empty input, as the batches of a down time run after a
    /// restart. Then the query finishes. Without this, a processing-time
    /// window still open at the end of a bounded input would never be
    /// emitted.
    async fn drain(
        &self,
        query: &mut RunningQuery,
        time: BatchTime,
        positions: &Positions,
        listeners: &[Arc<dyn crate::StreamingListener>],
    ) -> Option<QueryStatus> {
        let Some(until) = query.drain_until(time) else {
            return Some(QueryStatus::Finished);
        };
        let interval = self.state().interval;
        let polled = query.ended_inputs();
        let mut next = time;
        while next < until {
            next = next.plus(interval);
            let inputs = BatchInputs {
                polled: &polled,
                offsets: &Positions::new(),
                positions,
            };
            let status = self
                .run_query_batch(query, next, Duration::ZERO, inputs, listeners)
                .await;
            if !matches!(status, Some(QueryStatus::Finished)) {
                return status;
            }
        }
        Some(QueryStatus::Finished)
    }
}

/// What every query's batch reads at one batch time.
#[derive(Clone, Copy)]
struct BatchInputs<'a> {
    /// Each source's batch (or the error that failed it).
    polled: &'a BTreeMap<String, std::result::Result<SourceBatch, Arc<Error>>>,
    /// What replayable sources took, for the offset log.
    offsets: &'a Positions,
    /// Each source's position after the poll, for a state saved now.
    positions: &'a Positions,
}

struct BatchOutcome {
    input_rows: u64,
    output_rows: u64,
    end_of_input: bool,
    consumer_gone: bool,
    /// Late rows of each event-time window: its sources, the rows, and the
    /// watermark they were behind.
    late: Vec<(Vec<String>, Late, i64)>,
}

impl RunningQuery {
    /// Bytes of state its operators hold.
    fn state_bytes(&self) -> u64 {
        self.operators
            .values()
            .map(|op| match op {
                Operator::Window(w) => w.state_bytes() as u64,
                Operator::EventWindow(w, _) => w.state_bytes() as u64,
                Operator::RawWindow(w) => w.state_bytes() as u64,
                Operator::Running(r) => r.state_bytes() as u64,
                Operator::Stateless(_) => 0,
            })
            .sum()
    }

    /// At the end of its input (the batch of `time` ended every source):
    /// the last batch time at which an operator still emits rows it holds.
    /// This is part of every operator's contract: an operator that keeps
    /// rows for a later batch must say until when, or they are lost at the
    /// end of a bounded input.
    fn drain_until(&self, time: BatchTime) -> Option<BatchTime> {
        self.operators
            .values()
            .filter_map(|op| match op {
                Operator::Window(w) => w.drain_until(time),
                Operator::RawWindow(w) => w.drain_until(time),
                // The watermark is +∞ at the end of input: event-time
                // windows emit all they hold in that very batch.
                Operator::EventWindow(..) => None,
                // A running aggregate emits each batch what it updated.
                Operator::Running(_) | Operator::Stateless(_) => None,
            })
            .max()
    }

    /// Empty batches of every source it reads, each at its end of input.
    fn ended_inputs(&self) -> BTreeMap<String, std::result::Result<SourceBatch, Arc<Error>>> {
        self.order
            .iter()
            .filter_map(|node| match &node.kind {
                NodeKind::Source { name } => Some((
                    name.clone(),
                    Ok(SourceBatch {
                        batch: RecordBatch::new_empty(node.schema.clone()),
                        end_of_input: true,
                    }),
                )),
                _ => None,
            })
            .collect()
    }

    /// The lowest watermark of its event-time windows, if it has any and
    /// they have one.
    fn watermark(&self) -> Option<i64> {
        self.operators
            .values()
            .filter_map(|op| match op {
                Operator::EventWindow(_, clock) => Some(clock.current()),
                _ => None,
            })
            .min()
            .filter(|&w| w != NO_WATERMARK)
    }

    /// Whether the coming batch saves its state (every `checkpoint.interval`).
    fn saves_state_now(&self) -> bool {
        self.checkpoint
            .as_ref()
            .is_some_and(|(_, every)| (self.batches + 1).is_multiple_of(*every))
    }

    /// Logs what its replayable sources took for batch `time`, before it
    /// runs (nothing when no source can replay).
    fn log_offsets(&self, time: BatchTime, offsets: &Positions) -> Result<()> {
        let Some((dir, _)) = &self.checkpoint else {
            return Ok(());
        };
        let logged: BTreeMap<String, serde_json::Value> = self
            .shared
            .sources
            .iter()
            .filter_map(|name| Some((name.clone(), offsets.get(name)?.clone()?)))
            .collect();
        if logged.is_empty() {
            return Ok(());
        }
        dir.log_offsets(time, &logged)
    }

    /// Each operator's state, in graph order.
    fn save_states(&mut self) -> Result<Vec<StateWriter>> {
        let mut states = Vec::with_capacity(self.order.len());
        for node in &self.order {
            let mut state = StateWriter::default();
            match self.operators.get_mut(&node.id) {
                Some(Operator::Window(op)) => op.save(&mut state)?,
                Some(Operator::RawWindow(op)) => op.save(&mut state)?,
                Some(Operator::Running(op)) => op.save(&mut state)?,
                Some(Operator::EventWindow(op, clock)) => {
                    op.save(&mut state)?;
                    clock.save(&mut state);
                }
                Some(Operator::Stateless(_)) | None => {}
            }
            states.push(state);
        }
        Ok(states)
    }

    /// After batch `time`'s output was delivered: saves state when due (or
    /// when `force`d: a graceful stop), then commits the batch. The state
    /// holds every operator's, then the position of each source it reads.
    fn checkpoint(&mut self, time: BatchTime, positions: &Positions, force: bool) -> Result<()> {
        let Some((dir, _)) = self.checkpoint.clone() else {
            return Ok(());
        };
        let started = Instant::now();
        let mut bytes = 0;
        if force || self.saves_state_now() {
            let mut states = self.save_states()?;
            for name in &self.shared.sources {
                let mut state = StateWriter::default();
                let position = positions.get(name).cloned().flatten();
                state.value("position", position.unwrap_or(serde_json::Value::Null));
                states.push(state);
            }
            bytes = dir.save_state(time, states)?;
        }
        crate::crash::point("before-commit");
        dir.commit(time)?;
        self.last_checkpoint = (bytes as u64, started.elapsed());
        Ok(())
    }

    /// Runs the operators on this batch and delivers the output.
    async fn run_batch(
        &mut self,
        time: BatchTime,
        polled: &BTreeMap<String, std::result::Result<SourceBatch, Arc<Error>>>,
        positions: &Positions,
    ) -> Result<BatchOutcome> {
        // A node's value is `None` at batch times where it emits nothing
        // (a window between its slides); what reads it emits nothing too.
        let mut values: HashMap<NodeId, Option<RecordBatch>> = HashMap::new();
        let mut input_rows = 0;
        let mut end_of_input = true;
        let mut late = Vec::new();
        for node in &self.order {
            let value = match &node.kind {
                NodeKind::Source { name } => match polled.get(name) {
                    Some(Ok(b)) => {
                        input_rows += b.batch.num_rows() as u64;
                        end_of_input &= b.end_of_input;
                        Some(b.batch.clone())
                    }
                    Some(Err(e)) => return Err(Error::Shared(Arc::clone(e))),
                    None => return Err(Error::Internal(format!("source '{name}' was not polled"))),
                },
                _ if node
                    .inputs()
                    .iter()
                    .any(|i| values.get(&i.id).is_none_or(Option::is_none)) =>
                {
                    None
                }
                _ => {
                    let operator = self
                        .operators
                        .get_mut(&node.id)
                        .ok_or_else(|| Error::Internal("operator not compiled".into()))?;
                    match operator {
                        Operator::Stateless(op) => {
                            Some(op.run(|id| values.get(&id).cloned().flatten()).await?)
                        }
                        Operator::Window(op) => {
                            op.on_batch(time, input_batch(node, &values)).await?
                        }
                        Operator::RawWindow(op) => op.on_batch(time, input_batch(node, &values))?,
                        Operator::EventWindow(op, clock) => {
                            let step = clock.advance(time, polled)?;
                            let (output, dropped) =
                                op.on_batch(input_batch(node, &values), step).await?;
                            let sources = clock.source_names();
                            let sources = sources.iter().map(|s| s.to_string()).collect();
                            late.push((sources, dropped, step.before));
                            Some(output)
                        }
                        Operator::Running(op) => {
                            Some(op.on_batch(time, input_batch(node, &values)).await?)
                        }
                    }
                }
            };
            values.insert(node.id, value);
        }
        let root = self.order.last().map(|n| n.id).unwrap_or_default();
        let Some(output) = values.remove(&root).flatten() else {
            self.checkpoint(time, positions, false)?;
            return Ok(BatchOutcome {
                input_rows,
                output_rows: 0,
                end_of_input,
                consumer_gone: false,
                late,
            });
        };
        let output_rows = output.num_rows() as u64;
        let mut consumer_gone = false;
        crate::crash::point("before-sink");
        match &mut self.output {
            Output::Callback(f) => f(time, output).map_err(|source| Error::Callback {
                time: time.millis(),
                source,
            })?,
            Output::Channel(tx) => consumer_gone = tx.send(Ok((time, output))).await.is_err(),
            Output::Sink(writer) => writer.write(time, &output)?,
        }
        self.checkpoint(time, positions, false)?;
        Ok(BatchOutcome {
            input_rows,
            output_rows,
            end_of_input,
            consumer_gone,
            late,
        })
    }
}
