//! The `stdin` source: lines of the process's standard input. When the input
//! ends, the batch that takes the last lines is the source's last, and
//! queries reading only ended sources finish (a file redirected into the
//! process gives a bounded input).

use std::any::Any;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;

use crate::connector::{Decoding, Options};
use crate::error::Result;
use crate::source::api::{Source, SourceContext, SourceReader};
use crate::source::receiver::{self, PumpEnd, ReceiverEvent, ReceiverReader};

/// Reads lines from standard input.
#[derive(Debug)]
pub struct StdinSource {
    name: String,
    decoding: Decoding,
}

impl StdinSource {
    /// A stdin source decoding lines into `schema` as `decoding` says.
    pub fn new(name: &str, decoding: Decoding) -> Self {
        StdinSource {
            name: name.to_string(),
            decoding,
        }
    }

    pub(crate) fn from_options(
        name: &str,
        schema: SchemaRef,
        options: &mut Options,
    ) -> Result<Self> {
        Ok(StdinSource::new(
            name,
            options.take_decoding(&schema, "lines")?,
        ))
    }
}

impl Source for StdinSource {
    fn schema(&self) -> SchemaRef {
        self.decoding.schema.clone()
    }

    fn connector(&self) -> &'static str {
        "stdin"
    }

    fn describe(&self) -> String {
        format!("standard input, format {}", self.decoding.format)
    }

    fn open(&self, ctx: SourceContext) -> Result<Box<dyn SourceReader>> {
        let (tx, rx) = receiver::channel();
        let mut decoder = self
            .decoding
            .decoder(&self.name, Arc::clone(&ctx.metrics))
            .with_tasks(ctx.decode_tasks);
        let task = tokio::spawn(async move {
            let outcome = async {
                match receiver::pump_lines(
                    tokio::io::stdin(),
                    &mut decoder,
                    &tx,
                    None,
                    receiver::STDIN_READ_BYTES,
                )
                .await?
                {
                    PumpEnd::Closed => Ok(None),
                    // A last line without a newline is still a record.
                    PumpEnd::Eof { partial } if !partial.is_empty() => {
                        Ok(Some(decoder.decode(&partial)?))
                    }
                    PumpEnd::Eof { .. } => Ok(Some(arrow::array::RecordBatch::new_empty(
                        decoder.schema().clone(),
                    ))),
                }
            }
            .await;
            let _ = match outcome {
                Ok(None) => return,
                Ok(Some(last)) => {
                    if last.num_rows() > 0 {
                        let _ = tx.send(ReceiverEvent::Rows(last, None)).await;
                    }
                    tx.send(ReceiverEvent::End).await
                }
                Err(e) => tx.send(ReceiverEvent::Failed(e)).await,
            };
        });
        Ok(Box::new(ReceiverReader::new(
            self.schema(),
            rx,
            task,
            self.decoding.max_records_per_batch,
        )))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    /// Standard input ends at end of file (a pipe or a redirected file; at
    /// a terminal, Ctrl-D).
    fn available_now(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}
