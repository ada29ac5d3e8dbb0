//! The receiver half of receiving sources: a task that reads bytes, cuts
//! them into lines, decodes them and pushes batches into a bounded channel,
//! and the [`SourceReader`] that drains that channel at each batch time.

use arrow::array::RecordBatch;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::format::MalformedKind;
use crate::format::RecordDecoder;
use crate::source::{SourceBatch, SourceReader};
use crate::time::BatchTime;

/// Chunks a receiver may have decoded and not yet handed to a batch. With
/// reads of at most [`READ_BYTES`], this bounds a receiver's buffer.
pub(crate) const CHANNEL_CHUNKS: usize = 64;
/// The most bytes read at once.
pub(crate) const READ_BYTES: usize = 64 * 1024;

/// What a receiver sends to its reader.
#[derive(Debug)]
pub(crate) enum ReceiverEvent {
    /// Decoded rows.
    Rows(RecordBatch),
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

/// Reads `input` until it ends, decoding whole lines and sending them.
/// Applies backpressure: it does not read while the channel is full.
pub(crate) async fn pump_lines<R: AsyncRead + Unpin>(
    mut input: R,
    decoder: &mut RecordDecoder,
    tx: &mpsc::Sender<ReceiverEvent>,
) -> Result<PumpEnd> {
    let mut buffer: Vec<u8> = Vec::with_capacity(READ_BYTES);
    // An over-long line being discarded, if any: where it starts, its
    // length so far, and its first bytes (for the dead-letter file).
    let mut discarding: Option<(crate::format::Position, u64, Vec<u8>)> = None;
    loop {
        let start = buffer.len();
        buffer.resize(start + READ_BYTES, 0);
        let n = input
            .read(&mut buffer[start..])
            .await
            .map_err(|e| Error::io("reading input", e))?;
        buffer.truncate(start + n);
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
            let batch = decoder.decode(&buffer[..complete])?;
            buffer.drain(..complete);
            if batch.num_rows() > 0 && tx.send(ReceiverEvent::Rows(batch)).await.is_err() {
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

/// How much of an over-long record is kept for its dead letter.
pub(crate) const MALFORMED_PREFIX: usize = 1024;

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
    rx: mpsc::Receiver<ReceiverEvent>,
    ended: bool,
    /// `max.records.per.batch`, if set.
    limit: Option<usize>,
    /// Rows received beyond the last batch's limit, taken first next time.
    carried: Option<RecordBatch>,
    _task: AbortOnDrop,
}

impl ReceiverReader {
    pub(crate) fn new(
        schema: arrow::datatypes::SchemaRef,
        rx: mpsc::Receiver<ReceiverEvent>,
        task: JoinHandle<()>,
        limit: Option<usize>,
    ) -> Self {
        ReceiverReader {
            schema,
            rx,
            ended: false,
            limit,
            carried: None,
            _task: AbortOnDrop(task),
        }
    }
}

impl SourceReader for ReceiverReader {
    fn next_batch(&mut self, _time: BatchTime) -> Result<SourceBatch> {
        let limit = self.limit.unwrap_or(usize::MAX);
        let mut batches: Vec<RecordBatch> = self.carried.take().into_iter().collect();
        let mut rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        // Take only what is there now: what arrives later belongs to the
        // next batch; past the limit, the rest waits (and the bounded
        // channel behind it pushes back on the sender).
        for _ in 0..self.rx.len().max(1) {
            if rows >= limit {
                break;
            }
            match self.rx.try_recv() {
                Ok(ReceiverEvent::Rows(batch)) => {
                    rows += batch.num_rows();
                    batches.push(batch);
                }
                Ok(ReceiverEvent::Failed(e)) => return Err(e),
                Ok(ReceiverEvent::End) => {
                    self.ended = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let mut batch = arrow::compute::concat_batches(&self.schema, &batches)?;
        if batch.num_rows() > limit {
            self.carried = Some(batch.slice(limit, batch.num_rows() - limit));
            batch = batch.slice(0, limit);
        }
        Ok(SourceBatch {
            batch,
            end_of_input: self.ended && self.carried.is_none(),
        })
    }
}

/// Creates the bounded channel between a receiver and its reader.
pub(crate) fn channel() -> (mpsc::Sender<ReceiverEvent>, mpsc::Receiver<ReceiverEvent>) {
    mpsc::channel(CHANNEL_CHUNKS)
}
