//! The `kafka` sink: each batch's rows as records of a topic, one record
//! per row in `csv` (no header) or `json`, keyed by the `key` column when
//! one is named (records with the same key go to the same partition, by
//! the Java client's murmur2 hash, so other Kafka clients agree; a row
//! whose key is null goes to any partition).
//!
//! **Exactly once** (`delivery = 'exactly-once'`, the default): every
//! batch is one Kafka transaction, and the transaction also commits, as
//! the offset of a consumer group named after the transactional id, the
//! time of the batch it holds (`send_offsets_to_transaction`: Kafka
//! applies the records and that offset together, or neither). A writer that
//! starts (first start or restart) fences every earlier producer with the
//! same `transactional.id` (whose open transaction is aborted) and reads
//! that offset back: a batch at or before it was committed already and is
//! not written again. So, crash point by crash point:
//!
//! - before a batch's transaction commits: it is aborted (fenced) when the
//!   query restarts; the batch runs again and is written once;
//! - after it commits, before Brooklet's own commit log records the batch:
//!   the batch runs again on restart, finds its time committed, and writes
//!   nothing;
//! - after both: the batch does not run again (or, replayed from an older
//!   state, is skipped the same way).
//!
//! A `read_committed` consumer therefore sees every batch's rows exactly
//! once. The `transactional.id` is `brooklet-<sink>-<query>` unless given;
//! it must stay the same across restarts, and differ between processes
//! writing to the same sink (N instances: one per instance).
//!
//! **At least once** (`delivery = 'at-least-once'`): records are sent
//! without a transaction and the batch waits until the brokers have them
//! all; a batch that runs again after a crash may write its rows again.
//!
//! A batch whose records cannot be delivered within `timeout` fails its
//! query (with the reason); a restart writes it again as above.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{Array, RecordBatch};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::connector::Options;
use crate::error::{Error, Result};
use crate::kafka::{KafkaClient, client_error};
use crate::sink::api::{Sink, SinkWriter};
use crate::sink::row_format::{RowFormat, encode_rows};
use crate::sync::lock;
use crate::time::BatchTime;

/// How the sink's records are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// One transaction per batch; a batch that runs again is not written
    /// twice.
    ExactlyOnce,
    /// Sent and acknowledged; a batch that runs again is written again.
    AtLeastOnce,
}

/// Writes each batch's rows to a Kafka topic.
#[derive(Debug, Clone)]
pub struct KafkaSink {
    name: String,
    client: KafkaClient,
    format: RowFormat,
    key: Option<String>,
    delivery: Delivery,
    transactional_id: Option<String>,
}

impl KafkaSink {
    pub(crate) fn from_options(name: &str, options: &mut Options) -> Result<Self> {
        let client = KafkaClient::from_options(options)?;
        let format = RowFormat::parse(&options.take(&["format"]).unwrap_or("json".into()))?;
        let key = options.take(&["key"]);
        let delivery = match options
            .take(&["delivery", "sink.delivery-guarantee"])
            .map(|d| d.to_ascii_lowercase().replace('_', "-"))
            .as_deref()
        {
            None | Some("exactly-once") => Delivery::ExactlyOnce,
            Some("at-least-once") => Delivery::AtLeastOnce,
            Some(other) => {
                return Err(Error::Config(format!(
                    "option 'delivery' of sink '{name}' is '{other}'; valid values: exactly-once, at-least-once"
                )));
            }
        };
        let transactional_id = options.take(&["transactional.id"]);
        Ok(KafkaSink {
            name: name.to_string(),
            client,
            format,
            key,
            delivery,
            transactional_id,
        })
    }

    fn error(&self, message: String) -> Error {
        Error::Config(format!("sink '{}': {message}", self.name))
    }
}

impl Sink for KafkaSink {
    fn connector(&self) -> &'static str {
        "kafka"
    }

    fn describe(&self) -> String {
        let delivery = match self.delivery {
            Delivery::ExactlyOnce => "exactly once",
            Delivery::AtLeastOnce => "at least once",
        };
        format!(
            "kafka topic '{}' at {}, {}, {delivery}",
            self.client.topic,
            self.client.bootstrap,
            self.format.extension()
        )
    }

    fn open(&self, query: &str) -> Result<Box<dyn SinkWriter>> {
        let failures = Arc::new(Mutex::new(None));
        let context = Deliveries {
            failures: Arc::clone(&failures),
        };
        let transactional_id = self
            .transactional_id
            .clone()
            .unwrap_or_else(|| format!("brooklet-{}-{query}", self.name));
        let timeout_ms = self.client.timeout.as_millis().max(1000).to_string();
        let mut settings = vec![
            ("partitioner", "murmur2_random"),
            ("message.timeout.ms", timeout_ms.as_str()),
            ("linger.ms", "5"),
        ];
        if self.delivery == Delivery::ExactlyOnce {
            settings.push(("transactional.id", transactional_id.as_str()));
            settings.push(("enable.idempotence", "true"));
        } else {
            settings.push(("acks", "all"));
        }
        let producer: BaseProducer<Deliveries> = self
            .client
            .config(&settings)
            .create_with_context(context)
            .map_err(|e| self.error(format!("cannot create a Kafka producer: {e}")))?;
        // The client that reads the marker and names its group.
        let group: BaseConsumer = self
            .client
            .config(&[
                ("group.id", transactional_id.as_str()),
                ("enable.auto.commit", "false"),
            ])
            .create()
            .map_err(|e| self.error(format!("cannot create a Kafka client: {e}")))?;
        Ok(Box::new(KafkaWriter {
            sink: self.clone(),
            producer,
            group,
            failures,
            committed: None,
        }))
    }
}

/// Keeps the first delivery failure of a batch.
struct Deliveries {
    failures: Arc<Mutex<Option<String>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            lock(&self.failures).get_or_insert_with(|| e.to_string());
        }
    }
}

struct KafkaWriter {
    sink: KafkaSink,
    producer: BaseProducer<Deliveries>,
    /// A client of the consumer group named after the transactional id:
    /// reads the marker, and names the group the marker is committed to.
    group: BaseConsumer,
    failures: Arc<Mutex<Option<String>>>,
    /// Exactly once, after the first batch: the time of the last batch
    /// committed to Kafka (by this writer or before it).
    committed: Option<Option<i64>>,
}

impl KafkaWriter {
    fn what(&self) -> String {
        format!("sink '{}'", self.sink.name)
    }

    fn timeout(&self) -> Duration {
        self.sink.client.timeout
    }

    /// Fences earlier producers and reads the last batch time committed.
    fn start_transactions(&mut self) -> Result<Option<i64>> {
        let what = self.what();
        self.producer
            .init_transactions(self.timeout())
            .map_err(|e| client_error(&what, "cannot start transactions", e))?;
        let mut list = TopicPartitionList::new();
        list.add_partition(&self.sink.client.topic, 0);
        let committed = self
            .group
            .committed_offsets(list, self.timeout())
            .map_err(|e| client_error(&what, "cannot read the last batch committed", e))?;
        Ok(committed.elements().first().and_then(|e| match e.offset() {
            Offset::Offset(time) => Some(time),
            _ => None,
        }))
    }

    /// Sends every row of `batch` (waiting while the client's queue is
    /// full).
    fn send_rows(&self, batch: &RecordBatch) -> Result<()> {
        let topic = &self.sink.client.topic;
        let values = encode_rows(batch, self.sink.format)?;
        let keys = match &self.sink.key {
            None => None,
            Some(column) => {
                let index = batch.schema().index_of(column).map_err(|_| {
                    self.sink.error(format!(
                        "key column '{column}' is not among the query's columns: {}",
                        crate::error::column_names(&batch.schema())
                    ))
                })?;
                Some(batch.column(index))
            }
        };
        let formatter = match keys {
            Some(array) => Some(ArrayFormatter::try_new(
                array.as_ref(),
                &FormatOptions::default(),
            )?),
            None => None,
        };
        for (row, value) in values.iter().enumerate() {
            let key = match (&formatter, keys) {
                (Some(f), Some(array)) if array.is_valid(row) => Some(f.value(row).to_string()),
                _ => None,
            };
            let mut record: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).payload(value);
            if let Some(key) = &key {
                record = record.key(key.as_str());
            }
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull,
                        ),
                        back,
                    )) => {
                        self.producer.poll(Duration::from_millis(50));
                        record = back;
                    }
                    Err((e, _)) => {
                        return Err(client_error(&self.what(), "cannot send a record", e));
                    }
                }
            }
        }
        Ok(())
    }

    fn take_failure(&self) -> Option<String> {
        lock(&self.failures).take()
    }
}

impl SinkWriter for KafkaWriter {
    fn write(&mut self, time: BatchTime, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let what = self.what();
        match self.sink.delivery {
            Delivery::AtLeastOnce => {
                self.send_rows(batch)?;
                self.producer
                    .flush(self.timeout())
                    .map_err(|e| client_error(&what, "records not delivered", e))?;
                if let Some(failure) = self.take_failure() {
                    return Err(self.sink.error(format!("records not delivered: {failure}")));
                }
            }
            Delivery::ExactlyOnce => {
                let committed = match self.committed {
                    Some(committed) => committed,
                    None => {
                        let committed = self.start_transactions()?;
                        self.committed = Some(committed);
                        committed
                    }
                };
                if committed.is_some_and(|c| time.millis() <= c) {
                    return Ok(());
                }
                self.producer
                    .begin_transaction()
                    .map_err(|e| client_error(&what, "cannot begin a transaction", e))?;
                let outcome = self.send_rows(batch).and_then(|()| self.commit(time));
                if let Err(e) = outcome {
                    let _ = self.producer.abort_transaction(self.timeout());
                    // The next write starts over (fencing what is left).
                    self.committed = None;
                    return Err(e);
                }
                self.committed = Some(Some(time.millis()));
            }
        }
        Ok(())
    }
}

impl KafkaWriter {
    /// Commits the open transaction with the batch time as its marker.
    fn commit(&self, time: BatchTime) -> Result<()> {
        let what = self.what();
        let group = self
            .group
            .group_metadata()
            .ok_or_else(|| self.sink.error("no consumer group metadata".into()))?;
        let mut marker = TopicPartitionList::new();
        marker
            .add_partition_offset(&self.sink.client.topic, 0, Offset::Offset(time.millis()))
            .map_err(|e| client_error(&what, "cannot mark the batch", e))?;
        self.producer
            .send_offsets_to_transaction(&marker, &group, self.timeout())
            .map_err(|e| client_error(&what, "cannot mark the batch in its transaction", e))?;
        self.producer
            .commit_transaction(self.timeout())
            .map_err(|e| client_error(&what, "cannot commit the batch's transaction", e))?;
        if let Some(failure) = self.take_failure() {
            return Err(self.sink.error(format!("records not delivered: {failure}")));
        }
        Ok(())
    }
}
