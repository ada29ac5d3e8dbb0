//! The `socket` source: a TCP client reading lines, as Spark's
//! `socketTextStream`. If the server is not there yet, refuses, or drops the
//! connection, the receiver retries with exponential backoff (100 ms doubling
//! up to `reconnect.backoff.max`, 5 s by default) and says so on the notice
//! channel; it never crashes the query and never spins. A line cut short by a
//! dropped connection is counted (`cut_lines`) and never merged with the next
//! one. Not replayable: what was buffered when the engine stops is lost.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use tokio::net::TcpStream;

use crate::connector::{Decoding, Options};
use crate::error::{Error, Result};
use crate::format::RecordDecoder;
use crate::notice::Notices;
use crate::source::api::{Source, SourceContext, SourceReader};
use crate::source::receiver::{self, LogState, PumpEnd, ReceiverEvent, ReceiverReader, SharedLog};
use crate::source::receiver_log::ReceiverLog;
use crate::time::{format_duration, parse_duration};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Reads lines from a TCP server.
#[derive(Debug)]
pub struct SocketSource {
    name: String,
    host: String,
    port: u16,
    decoding: Decoding,
    max_backoff: Duration,
    /// `receiver.log = true`: received lines are logged before they are
    /// batched (see `receiver_log`).
    receiver_log: bool,
}

impl SocketSource {
    /// A socket source reading from `host:port`.
    pub fn new(name: &str, host: &str, port: u16, decoding: Decoding) -> Self {
        SocketSource {
            name: name.to_string(),
            host: host.to_string(),
            port,
            decoding,
            max_backoff: Duration::from_secs(5),
            receiver_log: false,
        }
    }

    pub(crate) fn from_options(
        name: &str,
        schema: SchemaRef,
        options: &mut Options,
    ) -> Result<Self> {
        let host = options
            .take(&["hostname", "host"])
            .unwrap_or_else(|| "localhost".to_string());
        let port: u16 = options
            .take_parsed(&["port"], "a TCP port number (1-65535)")?
            .ok_or_else(|| {
                Error::Config(format!(
                    "source '{name}' (connector 'socket') needs option 'port'"
                ))
            })?;
        let mut source =
            SocketSource::new(name, &host, port, options.take_decoding(&schema, "lines")?);
        if let Some(max) = options.take(&["reconnect.backoff.max"]) {
            source.max_backoff = parse_duration(&max)?;
        }
        source.receiver_log = options.take_bool(&["receiver.log"])?.unwrap_or(false);
        if source.receiver_log
            && matches!(
                source.decoding.format,
                crate::format::Format::Csv { header: true, .. }
            )
        {
            return Err(Error::Config(format!(
                "source '{name}': receiver.log with csv.header = true is not supported (the \
                 log replays ranges of lines, which a header line would shift)"
            )));
        }
        Ok(source)
    }
}

impl Source for SocketSource {
    fn schema(&self) -> SchemaRef {
        self.decoding.schema.clone()
    }

    fn connector(&self) -> &'static str {
        "socket"
    }

    fn describe(&self) -> String {
        format!(
            "{}:{}, format {}",
            self.host, self.port, self.decoding.format
        )
    }

    fn open(&self, ctx: SourceContext) -> Result<Box<dyn SourceReader>> {
        let log = if self.receiver_log {
            let Some(dir) = &ctx.checkpoint_dir else {
                return Err(Error::Config(format!(
                    "source '{}': receiver.log = true needs the engine's checkpoint directory, \
                     and none is set",
                    self.name
                )));
            };
            let Some(dir) = dir.local_path() else {
                return Err(Error::Config(format!(
                    "source '{}': receiver.log = true needs a local checkpoint.dir; {} is in an \
                     object store, where a log cannot be appended to (use a replayable source \
                     such as files or Kafka there)",
                    self.name,
                    dir.display()
                )));
            };
            let dir = dir.join("receiver-logs").join(&self.name);
            Some(Arc::new(std::sync::Mutex::new(ReceiverLog::open(&dir)?)))
        } else {
            None
        };
        let (tx, rx) = receiver::channel();
        let decoder = self
            .decoding
            .decoder(&self.name, Arc::clone(&ctx.metrics))
            .with_tasks(ctx.decode_tasks);
        let address = format!("{}:{}", self.host, self.port);
        let max_backoff = self.max_backoff;
        let state = log.clone().map(|log| {
            LogState::new(
                log,
                self.decoding.clone(),
                &self.name,
                Arc::clone(&ctx.metrics),
            )
        });
        let task = tokio::spawn(async move {
            if let Err(e) = receive(&address, max_backoff, decoder, &tx, &ctx, log.as_ref()).await {
                let _ = tx.send(ReceiverEvent::Failed(e)).await;
            }
        });
        let reader =
            ReceiverReader::new(self.schema(), rx, task, self.decoding.max_records_per_batch);
        Ok(Box::new(match state {
            Some(state) => reader.with_log(state),
            None => reader,
        }))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Connects, reads, and reconnects until nobody reads the batches.
async fn receive(
    address: &str,
    max_backoff: Duration,
    mut decoder: RecordDecoder,
    tx: &receiver::ChunkSender,
    ctx: &SourceContext,
    log: Option<&SharedLog>,
) -> Result<()> {
    let say = |message: String| {
        ctx.notices
            .send(format!("source '{}': {message}", ctx.name))
    };
    let mut backoff = FIRST_BACKOFF;
    let mut connected_before = false;
    loop {
        if tx.is_closed() {
            return Ok(());
        }
        let stream = match TcpStream::connect(address).await {
            Ok(stream) => stream,
            Err(e) => {
                say(format!(
                    "cannot connect to {address} ({e}); retrying in {}",
                    format_duration(backoff)
                ));
                sleep_backoff(&mut backoff, max_backoff).await;
                continue;
            }
        };
        if connected_before {
            ctx.metrics.add_reconnect();
            say(format!("reconnected to {address}"));
        } else {
            say(format!("connected to {address}"));
        }
        connected_before = true;
        backoff = FIRST_BACKOFF;
        let _ = stream.set_nodelay(true);
        let end =
            receive_connection(stream, &mut decoder, tx, &ctx.notices, &ctx.name, log).await?;
        match end {
            PumpEnd::Closed => return Ok(()),
            PumpEnd::Eof { partial } => {
                if !partial.is_empty() {
                    ctx.metrics.add_cut_line();
                    say(format!(
                        "the connection dropped in the middle of a line at {} ({} bytes); the cut line is dropped and counted",
                        decoder.position(),
                        partial.len()
                    ));
                    decoder.skip_line(partial.len() as u64);
                }
                say(format!(
                    "connection to {address} closed; reconnecting in {}",
                    format_duration(backoff)
                ));
                sleep_backoff(&mut backoff, max_backoff).await;
            }
        }
    }
}

/// Reads one connection; a read error counts as the connection ending.
async fn receive_connection(
    stream: TcpStream,
    decoder: &mut RecordDecoder,
    tx: &receiver::ChunkSender,
    notices: &Notices,
    name: &str,
    log: Option<&SharedLog>,
) -> Result<PumpEnd> {
    match receiver::pump_lines(stream, decoder, tx, log, receiver::READ_BYTES).await {
        Err(Error::Io { source, .. }) => {
            notices.send(format!("source '{name}': read error: {source}"));
            Ok(PumpEnd::Eof {
                partial: Vec::new(),
            })
        }
        other => other,
    }
}

async fn sleep_backoff(backoff: &mut Duration, max: Duration) {
    tokio::time::sleep(*backoff).await;
    *backoff = (*backoff * 2).min(max);
}
