//! The `memory` source: a queue of batches, one taken per batch time (Spark's
//! `queueStream` with `oneAtATime`). A batch time with an empty queue gets an
//! empty batch. Raw text records may be queued too; they are decoded with the
//! source's format when their batch runs, so malformed ones are handled by
//! the source's error policy exactly as on a socket. After
//! [`MemorySource::finish`], the input ends once the queue is empty.
//!
//! This is the driver of the spec tests, and the way to feed a query from
//! Rust without a network.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::connector::{Decoding, Options};
use crate::error::{Error, Result};
use crate::format::{Format, RecordDecoder};
use crate::source::api::{Source, SourceBatch, SourceContext, SourceReader};
use crate::sync::lock;
use crate::time::BatchTime;

#[derive(Debug)]
enum Queued {
    Batch(RecordBatch),
    Records(Vec<u8>),
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Queued>,
    finished: bool,
}

/// A queue of batches; clones share the queue.
#[derive(Debug, Clone)]
pub struct MemorySource {
    name: String,
    decoding: Decoding,
    queue: Arc<Mutex<Queue>>,
}

impl MemorySource {
    /// An empty memory source whose raw records are text lines.
    pub fn new(name: &str, schema: SchemaRef) -> Self {
        MemorySource::with_decoding(name, Decoding::lines(schema))
    }

    /// An empty memory source decoding raw records as `decoding` says.
    pub fn with_decoding(name: &str, decoding: Decoding) -> Self {
        MemorySource {
            name: name.to_string(),
            decoding,
            queue: Arc::default(),
        }
    }

    pub(crate) fn from_options(
        name: &str,
        schema: SchemaRef,
        options: &mut Options,
    ) -> Result<Self> {
        // Raw records are lines for a one-text-column schema, csv otherwise.
        let default_format = match Format::Lines.check_schema(&schema) {
            Ok(()) => "lines",
            Err(_) => "csv",
        };
        Ok(MemorySource::with_decoding(
            name,
            options.take_decoding(&schema, default_format)?,
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        lock(&self.queue)
    }

    /// Queues a batch for one batch time. Its schema must be the source's.
    pub fn push(&self, batch: RecordBatch) -> Result<()> {
        if batch.schema().fields() != self.decoding.schema.fields() {
            return Err(Error::Plan(format!(
                "memory source '{}' has schema {:?}, but the pushed batch has {:?}",
                self.name,
                self.decoding.schema,
                batch.schema()
            )));
        }
        self.lock().items.push_back(Queued::Batch(batch));
        Ok(())
    }

    /// Queues raw records (text lines in the source's format) for one batch time.
    pub fn push_records(&self, text: &str) {
        let mut bytes = text.as_bytes().to_vec();
        if !bytes.is_empty() && !bytes.ends_with(b"\n") {
            bytes.push(b'\n');
        }
        self.lock().items.push_back(Queued::Records(bytes));
    }

    /// Ends the input: once the queue is empty, the source has ended.
    pub fn finish(&self) {
        self.lock().finished = true;
    }

    /// Batches still queued.
    pub fn queued(&self) -> usize {
        self.lock().items.len()
    }
}

impl Source for MemorySource {
    fn schema(&self) -> SchemaRef {
        self.decoding.schema.clone()
    }

    fn connector(&self) -> &'static str {
        "memory"
    }

    fn describe(&self) -> String {
        format!("in-memory queue ({} queued)", self.queued())
    }

    fn open(&self, ctx: SourceContext) -> Result<Box<dyn SourceReader>> {
        Ok(Box::new(MemoryReader {
            source: self.clone(),
            decoder: self.decoding.decoder(&self.name, ctx.metrics),
        }))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    /// A memory source ends when [`MemorySource::finish`] is called.
    fn available_now(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

struct MemoryReader {
    source: MemorySource,
    decoder: RecordDecoder,
}

impl SourceReader for MemoryReader {
    fn next_batch(&mut self, _time: BatchTime) -> Result<SourceBatch> {
        let (item, end_of_input) = {
            let mut queue = self.source.lock();
            let item = queue.items.pop_front();
            (item, queue.finished && queue.items.is_empty())
        };
        let batch = match item {
            None => RecordBatch::new_empty(self.source.schema()),
            Some(Queued::Batch(batch)) => batch,
            Some(Queued::Records(bytes)) => self.decoder.decode(&bytes)?,
        };
        Ok(SourceBatch {
            batch,
            end_of_input,
        })
    }
}
