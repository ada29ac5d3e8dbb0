//! A running query: its compiled operators in graph order, its output and
//! its checkpoint. It starts (compile every operator, open its sources,
//! restore a checkpoint), runs one batch (operators, output, then the
//! checkpoint), and drains at the end of its input.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use futures::FutureExt;

use crate::checkpoint::{
    Chain, CheckpointDir, CheckpointWriter, Fingerprint, StateReader, StateWriter, Written,
};
use crate::error::{Error, Result};
use crate::graph::{Node, NodeId, NodeKind};
use crate::metrics::BatchInfo;
use crate::operator::{BatchContext, CompileContext, Input, LateRows, Operator, Polled};
use crate::operators::partitioned;
use crate::query::{Output, QueryShared, QueryStatus, StreamingListener};
use crate::runtime::readers::{Positions, Readers};
use crate::runtime::shared::{Inner, PendingQuery};
use crate::source::SourceBatch;
use crate::time::BatchTime;
use crate::watermark::NO_WATERMARK;

/// A query the scheduler runs.
pub(super) struct RunningQuery {
    pub(super) shared: Arc<QueryShared>,
    order: Vec<Arc<Node>>,
    operators: HashMap<NodeId, Box<dyn Operator>>,
    /// What each operator reads, worked out once.
    inputs: HashMap<NodeId, Vec<Input>>,
    output: Output,
    batches: u64,
    /// Whether the first late row was already reported.
    pub(super) reported_late: bool,
    /// Where its checkpoints go, and every how many batches state is saved.
    checkpoint: Option<(CheckpointDir, u64)>,
    /// Writes its checkpoints while the next batch runs; it holds this
    /// process's lock on the checkpoint directory and knows where the
    /// parts of the last saved state are (incremental saves).
    writer: Option<CheckpointWriter>,
    /// Batches up to this time ran before a restart: they are not run again.
    resume_after: Option<BatchTime>,
    /// The last batch it ran.
    last_batch: Option<BatchTime>,
    /// What the checkpoint that finished during the last batch wrote.
    last_checkpoint: Written,
    /// Batches to run again after a restart, with what each source took.
    replay: BTreeMap<BatchTime, BTreeMap<String, serde_json::Value>>,
}

/// What a caught panic said.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// What every query's batch reads at one batch time.
#[derive(Clone, Copy)]
pub(super) struct BatchInputs<'a> {
    /// Each source's batch (or the error that failed it).
    pub(super) polled: &'a Polled,
    /// What replayable sources took, for the offset log.
    pub(super) offsets: &'a Positions,
    /// Each source's position after the poll, for a state saved now.
    pub(super) positions: &'a Positions,
}

/// What one batch of a query did.
struct BatchOutcome {
    input_rows: u64,
    output_rows: u64,
    end_of_input: bool,
    consumer_gone: bool,
    /// Late rows each event-time operator dropped.
    late: Vec<LateRows>,
}

impl Inner {
    /// Compiles a query's operators, opens its sources and restores its
    /// checkpoint; a query that cannot start gives back its handle with
    /// the reason.
    pub(super) async fn activate(
        &self,
        pending: PendingQuery,
        start: BatchTime,
        readers: &mut Readers,
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
        self.start_query(Arc::clone(&shared), node, output, start, readers)
            .await
            .map_err(|e| (shared, e))
    }

    async fn start_query(
        &self,
        shared: Arc<QueryShared>,
        node: Arc<Node>,
        output: Output,
        start: BatchTime,
        readers: &mut Readers,
    ) -> Result<RunningQuery> {
        let (settings, interval) = {
            let state = self.state();
            (state.checkpoint.clone(), state.interval)
        };
        // The query's zero: where its processing-time windows start counting.
        let mut zero = start;
        let mut restored = None;
        let mut checkpoint = None;
        let mut lock = None;
        if let Some(settings) = &settings {
            let dir = CheckpointDir::new(settings.query_dir(&shared.name)?);
            lock = Some(dir.lock(interval)?);
            let query = shared
                .description
                .clone()
                .unwrap_or_else(|| shared.name.clone());
            let fingerprint = Fingerprint::new(&query, &node.schema);
            if let Some(found) = dir.open(&fingerprint, start, interval.as_millis() as i64)? {
                for warning in &found.warnings {
                    self.notices
                        .send(format!("query '{}': {warning}", shared.name));
                }
                zero = found.zero;
                restored = Some(found);
            }
            checkpoint = Some((dir, settings.every.max(1)));
        }
        let writer = match (&checkpoint, lock) {
            (Some((dir, _)), Some(lock)) => {
                let chain = Chain::new(settings.as_ref().map_or(1, |s| s.full_every));
                Some(CheckpointWriter::start(
                    &shared.name,
                    dir.clone(),
                    lock,
                    chain,
                )?)
            }
            _ => None,
        };
        let order = node.post_order();
        let saved = restored
            .as_ref()
            .and_then(|found| found.state.as_ref())
            .map(|(_, states)| states.as_slice());
        let operators = self.compile(&order, start, zero, saved).await?;
        let inputs = order
            .iter()
            .map(|node| (node.id, node.inputs.iter().map(|i| i.as_input()).collect()))
            .collect();
        let mut query = RunningQuery {
            shared,
            order,
            operators,
            inputs,
            output,
            batches: 0,
            reported_late: false,
            writer,
            checkpoint,
            resume_after: None,
            last_batch: None,
            last_checkpoint: Written::default(),
            replay: BTreeMap::new(),
        };
        let opened = readers.open(self, &query.shared.sources, start)?;
        if let Some(found) = restored {
            let restoring = Instant::now();
            let state_time = found.state.as_ref().map(|(t, _)| *t);
            if let Some((_, states)) = found.state {
                // A state that decodes but does not fit must not panic the
                // scheduler: it fails the query with a message.
                let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    query.load_states(&states)
                }))
                .unwrap_or_else(|panic| {
                    Err(Error::Checkpoint(format!(
                        "the saved state does not fit the query: {}",
                        panic_message(&*panic)
                    )))
                })
                .and_then(|()| {
                    let sources = &states[query.order.len()..];
                    for (name, state) in query.shared.sources.iter().zip(sources) {
                        if opened.contains(name) {
                            readers.load(name, state.value("position")?)?;
                        }
                    }
                    Ok(())
                });
                if let Err(e) = loaded {
                    readers.release(&query.shared.sources);
                    return Err(e);
                }
            }
            // Batches after the saved state run again, with the input the
            // offset log recorded for them.
            let resume = state_time.unwrap_or(found.zero);
            query.resume_after = Some(resume);
            query.replay = found.replay;
            if let Some(last) = found.committed {
                let replay = query.replay.len();
                self.notices.send(format!(
                    "query '{}': resuming after batch {resume} from its checkpoint (last finished batch {last}; {}, {} bytes, restored in {} ms; {} logged batch{} to run again)",
                    query.shared.name,
                    state_time.map_or("no state".into(), |t| format!("state of batch {t}")),
                    found.bytes,
                    restoring.elapsed().as_millis(),
                    replay,
                    if replay == 1 { "" } else { "es" }
                ));
            }
        }
        query.shared.status.send_replace(QueryStatus::Running);
        Ok(query)
    }

    /// Compiles the operator of every node of `order` but the sources,
    /// keyed ones as `parallelism` tasks laid out to restore `saved` (the
    /// states in graph order) when the query resumes a checkpoint.
    async fn compile(
        &self,
        order: &[Arc<Node>],
        start: BatchTime,
        zero: BatchTime,
        saved: Option<&[StateReader]>,
    ) -> Result<HashMap<NodeId, Box<dyn Operator>>> {
        let (interval, idle_timeout, watermarks, parallelism) = {
            let state = self.state();
            let watermarks = state
                .sources
                .iter()
                .filter_map(|(name, s)| Some((name.clone(), s.watermark.clone()?)))
                .collect();
            (
                state.interval,
                state.idle_timeout,
                watermarks,
                state.parallelism,
            )
        };
        let session = self.session.state();
        let mut operators = HashMap::new();
        for (index, node) in order.iter().enumerate() {
            let NodeKind::Operator(def) = &node.kind else {
                continue;
            };
            let at = CompileContext {
                schema: node.schema.clone(),
                inputs: node.inputs.iter().map(|i| i.as_input()).collect(),
                sources: node.sources(),
                session: &session,
                interval,
                start,
                zero,
                watermarks: &watermarks,
                idle_timeout,
                parallelism,
            };
            let saved = saved.and_then(|states| states.get(index));
            let operator = partitioned::compile(def.as_ref(), &at, parallelism, saved).await?;
            operators.insert(node.id, operator);
        }
        Ok(operators)
    }

    /// Runs batch `time` of one query, reports its figures, and says
    /// whether the query ended (finished, stopped or failed).
    pub(super) async fn run_query_batch(
        &self,
        query: &mut RunningQuery,
        time: BatchTime,
        delay: Duration,
        inputs: BatchInputs<'_>,
        listeners: &[Arc<dyn StreamingListener>],
    ) -> Option<QueryStatus> {
        let started = Instant::now();
        query.last_checkpoint = Written::default();
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
            Ok(outcome) => {
                late_rows = outcome.late.iter().map(|l| l.rows).sum();
                self.report_late(query, time, &outcome.late);
                let status = if outcome.consumer_gone {
                    Some(QueryStatus::Stopped)
                } else if outcome.end_of_input {
                    Some(QueryStatus::Finished)
                } else {
                    None
                };
                (status, outcome.input_rows, outcome.output_rows)
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
        // Each operator is asked once; the query's state is their sum.
        let operator_bytes = query.operator_bytes();
        let info = BatchInfo {
            batch_time: time,
            input_rows,
            output_rows,
            scheduling_delay: delay,
            processing_time: started.elapsed(),
            batches: query.batches,
            state_bytes: operator_bytes.values().sum(),
            late_rows,
            watermark: query.watermark(),
            checkpoint_bytes: query.last_checkpoint.bytes,
            checkpoint_time: query.last_checkpoint.took,
        };
        query.shared.record.add(&info, operator_bytes);
        query.shared.progress.send_replace(Some(info.clone()));
        for listener in listeners {
            listener.on_batch_completed(&query.shared.name, &info);
        }
        status
    }

    /// The input of a query ended with batch `time`. Every operator is asked
    /// which batch emits its last output that holds rows
    /// ([`Operator::drain_until`]); the batches up to it run now, one
    /// after another without waiting for the clock, each at its own batch
    /// time and with empty input, as the batches of a down time run after a
    /// restart. Then the query finishes. Without this, a processing-time
    /// window still open at the end of a bounded input would never be
    /// emitted.
    pub(super) async fn drain(
        &self,
        query: &mut RunningQuery,
        time: BatchTime,
        positions: &Positions,
        listeners: &[Arc<dyn StreamingListener>],
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

impl RunningQuery {
    /// Whether batch `time` ran before a restart (it is not run again).
    pub(super) fn ran_before_restart(&self, time: BatchTime) -> bool {
        self.resume_after.is_some_and(|last| time <= last)
    }

    /// What its sources took for batch `time` before a restart, if it ran
    /// then: that batch runs again on the same input.
    pub(super) fn take_replay(
        &mut self,
        time: BatchTime,
    ) -> Option<BTreeMap<String, serde_json::Value>> {
        self.replay.remove(&time)
    }

    /// Whether it saves checkpoints.
    pub(super) fn checkpoints(&self) -> bool {
        self.checkpoint.is_some()
    }

    /// Bytes of state its operators hold.
    /// What each operator holds, by node.
    fn operator_bytes(&self) -> BTreeMap<NodeId, u64> {
        self.operators
            .iter()
            .map(|(id, op)| (*id, op.state_bytes() as u64))
            .collect()
    }

    /// At the end of its input (the batch of `time` ended every source):
    /// the last batch time at which an operator still emits rows it holds.
    fn drain_until(&self, time: BatchTime) -> Option<BatchTime> {
        self.operators
            .values()
            .filter_map(|op| op.drain_until(time))
            .max()
    }

    /// Empty batches of every source it reads, each at its end of input.
    fn ended_inputs(&self) -> Polled {
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
                NodeKind::Operator(_) => None,
            })
            .collect()
    }

    /// The lowest watermark of its event-time operators, if it has any and
    /// they have one.
    fn watermark(&self) -> Option<i64> {
        self.operators
            .values()
            .filter_map(|op| op.watermark())
            .min()
            .filter(|&w| w != NO_WATERMARK)
    }

    /// Whether the coming batch saves its state (every `checkpoint.interval`).
    pub(super) fn saves_state_now(&self) -> bool {
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

    /// The snapshot of batch `time`: each operator's state in graph order
    /// (a source's is empty), then the position of each source it reads.
    fn snapshot(&mut self, time: BatchTime, positions: &Positions) -> Result<Vec<StateWriter>> {
        let Some(writer) = &self.writer else {
            return Ok(Vec::new());
        };
        let mut chain = writer.chain();
        chain.prepare(time);
        let mut states = Vec::with_capacity(self.order.len() + self.shared.sources.len());
        for (index, node) in self.order.iter().enumerate() {
            let mut state = chain.writer(index);
            if let Some(op) = self.operators.get_mut(&node.id) {
                op.save(&mut state)?;
            }
            states.push(state);
        }
        for name in &self.shared.sources {
            let mut state = chain.writer(states.len());
            let position = positions.get(name).cloned().flatten();
            state.value("position", position.unwrap_or(serde_json::Value::Null));
            states.push(state);
        }
        Ok(states)
    }

    /// Restores each operator's state saved by [`RunningQuery::save_states`].
    fn load_states(&mut self, states: &[StateReader]) -> Result<()> {
        if states.len() < self.order.len() {
            return Err(Error::Checkpoint(format!(
                "the saved state has {} operators, the query has {}",
                states.len(),
                self.order.len()
            )));
        }
        for (node, state) in self.order.iter().zip(states) {
            if let Some(op) = self.operators.get_mut(&node.id) {
                op.load(state)?;
            }
        }
        Ok(())
    }

    /// After batch `time`'s output was delivered: takes the snapshot when
    /// state is due (or when `force`d: a graceful stop), and hands the
    /// checkpoint to the writer, once the one before is written
    /// (`checkpoint/writer.rs`). A forced one is waited for.
    fn checkpoint(&mut self, time: BatchTime, positions: &Positions, force: bool) -> Result<()> {
        let Some(writer) = &mut self.writer else {
            return Ok(());
        };
        // The one before first: the snapshot's writers ask its chain.
        if let Some(written) = writer.settle()? {
            self.last_checkpoint = written;
        }
        let states = if force || self.saves_state_now() {
            Some(self.snapshot(time, positions)?)
        } else {
            None
        };
        let Some(writer) = &mut self.writer else {
            return Ok(());
        };
        writer.hand_over(time, states)?;
        if force {
            self.settle_checkpoint()?;
        }
        Ok(())
    }

    /// Waits for the checkpoint being written, if any (at the query's end).
    pub(super) fn settle_checkpoint(&mut self) -> Result<()> {
        if let Some(writer) = &mut self.writer
            && let Some(written) = writer.settle()?
        {
            self.last_checkpoint = written;
        }
        Ok(())
    }

    /// At a graceful stop: saves the state after its last batch, so that a
    /// restart recomputes nothing.
    pub(super) fn final_checkpoint(&mut self, positions: &Positions) -> Result<()> {
        match self.last_batch {
            Some(last) => self.checkpoint(last, positions, true),
            None => Ok(()),
        }
    }

    /// Runs the operators on this batch and delivers the output.
    async fn run_batch(
        &mut self,
        time: BatchTime,
        polled: &Polled,
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
                NodeKind::Operator(_)
                    if node
                        .inputs
                        .iter()
                        .any(|i| values.get(&i.id).is_none_or(Option::is_none)) =>
                {
                    None
                }
                NodeKind::Operator(_) => {
                    let operator = self
                        .operators
                        .get_mut(&node.id)
                        .ok_or_else(|| Error::Internal("operator not compiled".into()))?;
                    let inputs = self.inputs.get(&node.id).map_or(&[][..], Vec::as_slice);
                    let mut batch = BatchContext::new(time, inputs, &values, polled);
                    let output = operator.on_batch(&mut batch).await?;
                    late.append(&mut batch.late);
                    output
                }
            };
            values.insert(node.id, value);
        }
        let root = self.order.last().map(|n| n.id).unwrap_or_default();
        let mut outcome = BatchOutcome {
            input_rows,
            output_rows: 0,
            end_of_input,
            consumer_gone: false,
            late,
        };
        if let Some(output) = values.remove(&root).flatten() {
            outcome.output_rows = output.num_rows() as u64;
            crate::crash::point("before-sink");
            match &mut self.output {
                Output::Callback(f) => f(time, output).map_err(|source| Error::Callback {
                    time: time.millis(),
                    source,
                })?,
                Output::Channel(tx) => {
                    outcome.consumer_gone = tx.send(Ok((time, output))).await.is_err();
                }
                Output::Sink(writer) => writer.write(time, &output)?,
            }
        }
        self.checkpoint(time, positions, false)?;
        Ok(outcome)
    }
}
