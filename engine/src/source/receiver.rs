//! The receiver half of receiving sources: a task that reads bytes, cuts
//! them into lines, decodes them and pushes batches into a channel bounded
//! by the bytes it holds, and the [`SourceReader`] that drains that channel
//! at each batch time.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::connector::Decoding;
use crate::error::{Error, Result};
use crate::format::RecordDecoder;
use crate::malformed::{MALFORMED_PREFIX, MalformedKind};
use crate::metrics::SourceMetrics;
use crate::source::api::{SourceBatch, SourceReader};
use crate::source::receiver_log::ReceiverLog;
use crate::sync::lock;
use crate::time::BatchTime;

/// A receiver log shared by the receiver task and the reader.
pub(crate) type SharedLog = Arc<Mutex<ReceiverLog>>;

/// The most memory a receiver's decoded rows not yet handed to a batch may
/// take: past it the receiver stops reading (the sender is pushed back
/// through TCP). A bound in bytes, not in chunks, because chunks are as
/// small as the reads that made them; 64 MiB hold about 800 000 lines of
/// 70 bytes, a second of a fast sender.
pub(crate) const BUFFER_BYTES: usize = 64 << 20;
/// The most bytes read at once from a socket.
pub(crate) const READ_BYTES: usize = 64 * 1024;
/// The most bytes read at once from standard input. Each read of it goes
/// through tokio's blocking pool, a hand-off between threads, and each
/// chunk read is decoded on its own: reads of 1 MiB rather than 64 KiB
/// make 16 times fewer of both (a redirected file of 193 MB was read and
/// decoded 5 to 12 % faster in wall time).
pub(crate) const STDIN_READ_BYTES: usize = 1 << 20;
/// The most bytes gathered from full reads before they are decoded, when
/// several tasks decode (`SET parallelism`).
const GATHER_BYTES: usize = 4 << 20;

/// What a receiver sends to its reader.
#[derive(Debug)]
pub(crate) enum ReceiverEvent {
    /// Decoded rows, and where their lines are in the receiver log.
    Rows(RecordBatch, Option<Range<u64>>),
    /// The source cannot go on.
    Failed(Error),
    /// The input ended.
    End,
}

/// How a pump of one connection ended.
pub(crate) enum PumpEnd {
    /// The input ended; this many bytes of an unfinished last line remained.
    Eof { partial: Vec<u8> },
    /// Nobody reads the batches any more.
    Closed,
}

/// The most reads that wait for the pump while it decodes (see
/// [`ReadAhead`]).
const READS_AHEAD: usize = 4;

/// Reads `input` on a task of its own, ahead of the pump: while the pump
/// decodes what was read, the next reads are made, up to [`READS_AHEAD`]
/// of them. Reading and decoding then overlap: with decoding on two
/// threads, a pump that waited for each read of standard input spent a
/// tenth of its time reading. The task ends when the input does, or when
/// this is dropped.
struct ReadAhead {
    reads: mpsc::Receiver<std::io::Result<Vec<u8>>>,
    _task: AbortOnDrop,
}

impl ReadAhead {
    /// Starts reading `input`, up to `read_bytes` at a time.
    fn start<R: AsyncRead + Unpin + Send + 'static>(mut input: R, read_bytes: usize) -> Self {
        let (tx, reads) = mpsc::channel(READS_AHEAD);
        let task = tokio::spawn(async move {
            loop {
                let mut read = Vec::with_capacity(read_bytes);
                let outcome = input.read_buf(&mut read).await.map(|_| read);
                let last = !matches!(&outcome, Ok(read) if !read.is_empty());
                if tx.send(outcome).await.is_err() || last {
                    return;
                }
            }
        });
        ReadAhead {
            reads,
            _task: AbortOnDrop(task),
        }
    }

    /// Appends the next read to `buffer`; how many bytes it had (0: the
    /// input ended).
    async fn read_into(&mut self, buffer: &mut Vec<u8>) -> Result<usize> {
        match self.reads.recv().await {
            Some(Ok(read)) => {
                buffer.extend_from_slice(&read);
                Ok(read.len())
            }
            Some(Err(e)) => Err(Error::io("reading input", e)),
            None => Ok(0),
        }
    }
}

/// Reads `input` until it ends, up to `read_bytes` at a time (read ahead,
/// [`ReadAhead`]), decoding whole lines and sending them. Applies
/// backpressure: while the channel is full it does not decode, and at most
/// [`READS_AHEAD`] reads wait.
pub(crate) async fn pump_lines<R: AsyncRead + Unpin + Send + 'static>(
    input: R,
    decoder: &mut RecordDecoder,
    tx: &ChunkSender,
    log: Option<&SharedLog>,
    read_bytes: usize,
) -> Result<PumpEnd> {
    let mut input = ReadAhead::start(input, read_bytes);
    let mut buffer: Vec<u8> = Vec::with_capacity(read_bytes);
    // An over-long line being discarded, if any: where it starts, its
    // length so far, and its first bytes (for the dead-letter file).
    let mut discarding: Option<(crate::format::Position, u64, Vec<u8>)> = None;
    loop {
        let n = input.read_into(&mut buffer).await?;
        // A full read means more is waiting: with several decoding tasks,
        // gather up to 4 MiB first, so that each decode is worth cutting
        // into parts.
        if decoder.tasks() > 1
            && n == read_bytes
            && buffer.len() < GATHER_BYTES
            && discarding.is_none()
        {
            continue;
        }
        if n == 0 {
            if let Some((position, len, prefix)) = discarding.take() {
                let reason = too_long(len, decoder.max_record_bytes());
                decoder.malformed(position, MalformedKind::TooLong, &reason, &prefix)?;
                decoder.skip_line(len);
                return Ok(PumpEnd::Eof {
                    partial: Vec::new(),
                });
            }
            return Ok(PumpEnd::Eof {
                partial: std::mem::take(&mut buffer),
            });
        }
        if let Some((position, len, prefix)) = discarding.as_mut() {
            match memchr::memchr(b'\n', &buffer) {
                None => {
                    *len += buffer.len() as u64;
                    buffer.clear();
                    continue;
                }
                Some(i) => {
                    *len += i as u64 + 1;
                    let (position, len, prefix) = (*position, *len, std::mem::take(prefix));
                    discarding = None;
                    let reason = too_long(len - 1, decoder.max_record_bytes());
                    decoder.malformed(position, MalformedKind::TooLong, &reason, &prefix)?;
                    decoder.skip_line(len);
                    buffer.drain(..=i);
                }
            }
        }
        let complete = memchr::memrchr(b'\n', &buffer).map_or(0, |i| i + 1);
        if complete > 0 {
            // Logged (and fsynced) before the lines can enter a batch.
            let range = match log {
                Some(log) => Some(lock(log).append(&buffer[..complete])?),
                None => None,
            };
            let batch = decoder.decode(&buffer[..complete])?;
            buffer.drain(..complete);
            if batch.num_rows() > 0 && tx.send(ReceiverEvent::Rows(batch, range)).await.is_err() {
                return Ok(PumpEnd::Closed);
            }
        }
        if buffer.len() > decoder.max_record_bytes() {
            let prefix = buffer[..buffer.len().min(MALFORMED_PREFIX)].to_vec();
            discarding = Some((decoder.position(), buffer.len() as u64, prefix));
            buffer.clear();
        }
    }
}

fn too_long(len: u64, max: usize) -> String {
    format!("record is {len} bytes long, longer than max.record.bytes = {max}")
}

/// Aborts a task when dropped, so a source that no query reads stops.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Drains a receiver's channel at each batch time.
pub(crate) struct ReceiverReader {
    schema: arrow::datatypes::SchemaRef,
    rx: ChunkReceiver,
    ended: bool,
    /// `max.records.per.batch`, if set.
    limit: Option<usize>,
    /// Rows received beyond the last batch's limit, taken first next time.
    carried: VecDeque<Chunk>,
    /// With `receiver.log`: the log and what replay needs.
    log: Option<LogState>,
    _task: AbortOnDrop,
}

/// Received rows not yet in a batch: `batch` is what is left of an event
/// whose lines are at `range` of the receiver log, after its first `skip`
/// rows.
struct Chunk {
    batch: RecordBatch,
    range: Option<Range<u64>>,
    skip: usize,
}

/// The receiver log's side of a reader: positions are `(offset, rows)`, the
/// rows decoded from the log at `offset` (an event's start) to skip.
pub(crate) struct LogState {
    log: SharedLog,
    decoding: Decoding,
    name: String,
    metrics: Arc<SourceMetrics>,
    /// The log's end when the reader opened: what is before it and after
    /// the restored position was received before a restart.
    end_at_open: u64,
    /// Where the untaken rows start.
    position: (u64, usize),
    /// After a restart, the rows received but never batched are read back
    /// from here up to `end_at_open`.
    recover: Option<(u64, usize)>,
    /// What the last batch took: `(range start, range end, skip, take)`.
    last: (u64, u64, usize, usize),
    /// Positions saved in the latest state files; the log before the
    /// oldest is pruned. The last three cover the two state generations a
    /// restart may use, and a newer one not yet committed.
    saved: Mutex<VecDeque<u64>>,
}

/// How many saved positions the receiver log keeps the bytes after: the
/// two kept generations', the one being written's (its batch's checkpoint
/// is written while the next batch runs), and the one being taken.
const KEPT_POSITIONS: usize = 4;

impl LogState {
    pub(crate) fn new(
        log: SharedLog,
        decoding: Decoding,
        name: &str,
        metrics: Arc<SourceMetrics>,
    ) -> Self {
        let (start, end_at_open) = {
            let log = lock(&log);
            (log.start(), log.end())
        };
        LogState {
            log,
            decoding,
            name: name.to_string(),
            metrics,
            end_at_open,
            position: (end_at_open, 0),
            // Without a checkpointed position (a query that never saved
            // state), everything still in the log was never committed.
            recover: (start < end_at_open).then_some((start, 0)),
            last: (end_at_open, end_at_open, 0, 0),
            saved: Mutex::new(VecDeque::new()),
        }
    }

    /// The rows of log bytes `range`, after the first `skip`, at most `take`.
    fn rows(&self, range: Range<u64>, skip: usize, take: Option<usize>) -> Result<RecordBatch> {
        let bytes = lock(&self.log).read(range)?;
        // Read back, the lines were counted (and dead-lettered) when they
        // were received: decode them quietly.
        let mut decoder = self.decoding.quiet_decoder(&self.name);
        let batch = decoder.decode(&bytes)?;
        let skip = skip.min(batch.num_rows());
        let take = take.unwrap_or(usize::MAX).min(batch.num_rows() - skip);
        Ok(batch.slice(skip, take))
    }
}

impl ReceiverReader {
    pub(crate) fn new(
        schema: arrow::datatypes::SchemaRef,
        rx: ChunkReceiver,
        task: JoinHandle<()>,
        limit: Option<usize>,
    ) -> Self {
        ReceiverReader {
            schema,
            rx,
            ended: false,
            limit,
            carried: VecDeque::new(),
            log: None,
            _task: AbortOnDrop(task),
        }
    }

    /// Keeps the receiver log's positions (`receiver.log = true`).
    pub(crate) fn with_log(mut self, log: LogState) -> Self {
        self.log = Some(log);
        self
    }
}

impl SourceReader for ReceiverReader {
    /// Ready when half of [`BUFFER_BYTES`] is held, rows are carried over
    /// from a limited batch, or the receiver has ended (its sender gone).
    fn ready(
        &mut self,
    ) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>> {
        Some(Box::pin(async move {
            while !(self.ended
                || !self.carried.is_empty()
                || self.rx.held() >= BUFFER_BYTES / 2
                || self.rx.is_closed())
            {
                // Every send, and the receiver's end, wakes this.
                self.rx.sent.notified().await;
            }
        }))
    }

    fn next_batch(&mut self, _time: BatchTime) -> Result<SourceBatch> {
        let limit = self.limit.unwrap_or(usize::MAX);
        if let Some(log) = self.log.as_mut()
            && let Some((offset, skip)) = log.recover.take()
            && offset < log.end_at_open
        {
            let batch = log.rows(offset..log.end_at_open, skip, None)?;
            self.carried.push_front(Chunk {
                batch,
                range: Some(offset..log.end_at_open),
                skip,
            });
        }
        let mut chunks: Vec<Chunk> = self.carried.drain(..).collect();
        let mut rows: usize = chunks.iter().map(|c| c.batch.num_rows()).sum();
        // Take only what is there now: what arrives later belongs to the
        // next batch; past the limit, the rest waits (and the bounded
        // channel behind it pushes back on the sender).
        for _ in 0..self.rx.len().max(1) {
            if rows >= limit {
                break;
            }
            match self.rx.try_recv() {
                Ok(ReceiverEvent::Rows(batch, range)) => {
                    rows += batch.num_rows();
                    chunks.push(Chunk {
                        batch,
                        range,
                        skip: 0,
                    });
                }
                Ok(ReceiverEvent::Failed(e)) => return Err(e),
                Ok(ReceiverEvent::End) => {
                    self.ended = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let mut taken = Vec::new();
        let mut first: Option<(u64, usize)> = None;
        let mut last_end = None;
        let mut remaining = limit;
        for chunk in chunks {
            let n = chunk.batch.num_rows();
            if remaining == 0 {
                self.carried.push_back(chunk);
                continue;
            }
            if let Some(range) = &chunk.range {
                first.get_or_insert((range.start, chunk.skip));
                last_end = Some(range.end);
            }
            if n <= remaining {
                remaining -= n;
                taken.push(chunk.batch);
            } else {
                taken.push(chunk.batch.slice(0, remaining));
                self.carried.push_back(Chunk {
                    batch: chunk.batch.slice(remaining, n - remaining),
                    range: chunk.range,
                    skip: chunk.skip + remaining,
                });
                remaining = 0;
            }
        }
        // A batch cut exactly at the limit with only the end behind it ends
        // the input now, not with an empty batch after it.
        if !self.ended && self.carried.is_empty() && self.rx.next_is_end() {
            let _ = self.rx.try_recv();
            self.ended = true;
        }
        let batch = arrow::compute::concat_batches(&self.schema, &taken)?;
        if let Some(log) = self.log.as_mut() {
            if let (Some((start, skip)), Some(end)) = (first, last_end) {
                log.last = (start, end, skip, batch.num_rows());
            } else {
                log.last = (log.position.0, log.position.0, 0, 0);
            }
            log.position = match self.carried.front() {
                Some(Chunk {
                    range: Some(range),
                    skip,
                    ..
                }) => (range.start, *skip),
                _ => last_end.map_or(log.position, |end| (end, 0)),
            };
        }
        Ok(SourceBatch {
            batch,
            end_of_input: self.ended && self.carried.is_empty(),
        })
    }

    fn offsets(&self) -> Option<serde_json::Value> {
        let log = self.log.as_ref()?;
        let (start, end, skip, take) = log.last;
        Some(serde_json::json!({ "log": [start, end], "skip": skip, "take": take }))
    }

    fn replay(&mut self, time: BatchTime, offsets: &serde_json::Value) -> Result<SourceBatch> {
        let Some(log) = self.log.as_mut() else {
            return self.next_batch(time);
        };
        let number = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
        let (start, end) = (number(&offsets["log"][0]), number(&offsets["log"][1]));
        let (skip, take) = (
            number(&offsets["skip"]) as usize,
            number(&offsets["take"]) as usize,
        );
        let batch = log.rows(start..end, skip, Some(take))?;
        // What was received after this batch is read back from here.
        log.recover = Some((start, skip + take));
        log.position = (start, skip + take);
        log.last = (start, end, skip, take);
        Ok(SourceBatch {
            batch,
            end_of_input: false,
        })
    }

    fn save(&self) -> Option<serde_json::Value> {
        let log = self.log.as_ref()?;
        // Called when a state file is written: the log before the oldest
        // position a kept state may hold is no longer needed.
        let mut saved = lock(&log.saved);
        saved.push_back(log.position.0);
        while saved.len() > KEPT_POSITIONS {
            saved.pop_front();
        }
        if saved.len() == KEPT_POSITIONS
            && let Some(&oldest) = saved.front()
            && let Err(e) = lock(&log.log).prune_before(oldest)
        {
            log.metrics
                .note_skipped(|| format!("the receiver log was not pruned: {e}"));
        }
        Some(serde_json::json!({ "log": log.position.0, "skip": log.position.1 }))
    }

    fn load(&mut self, position: &serde_json::Value) -> Result<()> {
        if let Some(log) = self.log.as_mut()
            && let Some(offset) = position["log"].as_u64()
        {
            let skip = position["skip"].as_u64().unwrap_or(0) as usize;
            log.recover = Some((offset, skip));
            log.position = (offset, skip);
        }
        Ok(())
    }
}

/// Creates the channel between a receiver and its reader, bounded by
/// [`BUFFER_BYTES`].
pub(crate) fn channel() -> (ChunkSender, ChunkReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let budget = Arc::new(Semaphore::new(BUFFER_BYTES));
    let sent = Arc::new(Notify::new());
    (
        ChunkSender {
            tx: Some(tx),
            budget: Arc::clone(&budget),
            sent: Arc::clone(&sent),
        },
        ChunkReceiver {
            rx,
            budget,
            sent,
            peeked: None,
        },
    )
}

/// The memory a chunk of rows counts for against [`BUFFER_BYTES`].
fn weight(event: &ReceiverEvent) -> u32 {
    match event {
        ReceiverEvent::Rows(batch, _) => batch.get_array_memory_size().min(BUFFER_BYTES) as u32,
        ReceiverEvent::Failed(_) | ReceiverEvent::End => 0,
    }
}

/// The receiver's end of the channel: a send waits while the reader holds
/// [`BUFFER_BYTES`] of rows.
#[derive(Debug)]
pub(crate) struct ChunkSender {
    /// `None` only while it is dropped (the channel closes before the
    /// reader is told).
    tx: Option<mpsc::UnboundedSender<ReceiverEvent>>,
    budget: Arc<Semaphore>,
    /// Told of every send and of the sender's end.
    sent: Arc<Notify>,
}

impl Drop for ChunkSender {
    fn drop(&mut self) {
        self.tx = None;
        self.sent.notify_one();
    }
}

/// The reader has gone: nobody takes the rows any more.
#[derive(Debug)]
pub(crate) struct Closed;

impl ChunkSender {
    /// Sends `event` once the buffer has room for it.
    pub(crate) async fn send(&self, event: ReceiverEvent) -> std::result::Result<(), Closed> {
        let weight = weight(&event);
        if weight > 0 {
            // The reader gives the permits back when it takes the rows.
            self.budget
                .acquire_many(weight)
                .await
                .map_err(|_| Closed)?
                .forget();
        }
        let tx = self.tx.as_ref().ok_or(Closed)?;
        tx.send(event).map_err(|_| Closed)?;
        self.sent.notify_one();
        Ok(())
    }

    /// Whether the reader has gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.as_ref().is_none_or(|tx| tx.is_closed())
    }
}

/// The reader's end of the channel.
#[derive(Debug)]
pub(crate) struct ChunkReceiver {
    rx: mpsc::UnboundedReceiver<ReceiverEvent>,
    budget: Arc<Semaphore>,
    /// Woken by every send and by the sender's end.
    sent: Arc<Notify>,
    /// An event looked at by [`ChunkReceiver::next_is_end`], not yet taken.
    peeked: Option<ReceiverEvent>,
}

impl ChunkReceiver {
    /// Events waiting.
    fn len(&self) -> usize {
        self.rx.len() + usize::from(self.peeked.is_some())
    }

    /// Whether the next event waiting is the end of input (an event that
    /// is not stays for the next [`ChunkReceiver::try_recv`]).
    fn next_is_end(&mut self) -> bool {
        if self.peeked.is_none()
            && let Ok(event) = self.rx.try_recv()
        {
            self.budget.add_permits(weight(&event) as usize);
            self.peeked = Some(event);
        }
        matches!(self.peeked, Some(ReceiverEvent::End))
    }

    /// Bytes of rows waiting.
    fn held(&self) -> usize {
        BUFFER_BYTES.saturating_sub(self.budget.available_permits())
    }

    /// Whether the receiver has gone (it sent its last event).
    fn is_closed(&self) -> bool {
        self.rx.is_closed()
    }

    /// The next event, if one is waiting; its rows leave the buffer.
    fn try_recv(&mut self) -> std::result::Result<ReceiverEvent, mpsc::error::TryRecvError> {
        if let Some(event) = self.peeked.take() {
            return Ok(event);
        }
        let event = self.rx.try_recv()?;
        self.budget.add_permits(weight(&event) as usize);
        Ok(event)
    }
}

impl Drop for ChunkReceiver {
    fn drop(&mut self) {
        // A sender waiting for room learns that nobody reads any more.
        self.budget.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;

    fn rows(n: usize) -> ReceiverEvent {
        let text = StringArray::from(vec!["x".repeat(1000); n]);
        let batch = RecordBatch::try_from_iter([("line", Arc::new(text) as _)]).unwrap();
        ReceiverEvent::Rows(batch, None)
    }

    #[tokio::test]
    async fn the_channel_holds_up_to_its_bytes_then_waits_for_the_reader() {
        let (tx, mut rx) = channel();
        let budget = Arc::clone(&tx.budget);
        // Many small chunks fit (a bound in chunks would stop at a few dozen).
        for _ in 0..1000 {
            tx.send(rows(10)).await.unwrap();
        }
        // Then chunks of about 1 MiB each, while they fit.
        let big = weight(&rows(1000)) as usize;
        let mut sent = 0;
        while budget.available_permits() >= big {
            tx.send(rows(1000)).await.unwrap();
            sent += 1;
        }
        assert!(sent > 40, "only {sent} MiB fitted");
        // The next send waits for the reader.
        let waiting = tokio::spawn(async move {
            tx.send(rows(1000)).await.unwrap();
            tx
        });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished(), "sent past the bound");
        let mut taken = 0;
        while rx.try_recv().is_ok() {
            taken += 1;
        }
        assert_eq!(taken, 1000 + sent);
        let tx = waiting.await.unwrap();
        assert!(rx.try_recv().is_ok(), "the waiting chunk arrived");
        // A reader that has gone ends a waiting send.
        drop(rx);
        assert!(tx.send(rows(1000)).await.is_err());
    }
}
