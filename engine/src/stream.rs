//! [`BatchStream`]: a query's batches as an async stream.

use std::pin::Pin;
use std::task::{Context, Poll};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::Stream;
use tokio::sync::mpsc;

use crate::error::Result;
use crate::query::QueryHandle;
use crate::time::BatchTime;

/// The batches of a running query, each with its time, empty ones included.
/// A query error is yielded once, then the stream ends. Dropping the stream
/// stops the query.
#[derive(Debug)]
pub struct BatchStream {
    rx: mpsc::Receiver<Result<(BatchTime, RecordBatch)>>,
    schema: SchemaRef,
    handle: QueryHandle,
}

impl BatchStream {
    pub(crate) fn new(
        rx: mpsc::Receiver<Result<(BatchTime, RecordBatch)>>,
        schema: SchemaRef,
        handle: QueryHandle,
    ) -> Self {
        BatchStream { rx, schema, handle }
    }

    /// The batches' schema.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The query behind the stream.
    pub fn handle(&self) -> &QueryHandle {
        &self.handle
    }
}

impl Stream for BatchStream {
    type Item = Result<(BatchTime, RecordBatch)>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for BatchStream {
    fn drop(&mut self) {
        self.handle.request_stop();
    }
}
