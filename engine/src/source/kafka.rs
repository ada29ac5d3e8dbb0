//! The `kafka` source: Spark's *direct stream*. There is no receiver and
//! no consumer group: each batch reads, per partition, the records from
//! where the previous batch stopped up to the end of the partition as the
//! brokers report it at batch time, and says exactly which offsets it took
//! ([`SourceReader::offsets`], written to the offset log before the batch
//! runs). A batch that runs again after a crash reads the same offset
//! ranges, so a restarted query sees the same records in the same batches.
//! Where each partition stands is the source's position in a checkpoint;
//! Kafka's committed offsets play no part.
//!
//! **Which partitions.** All of the topic's by default; `partitions =
//! '0,2'` names some; `instance = 'i/N'` takes those whose number modulo
//! N is i, so N processes (each with its own checkpoint directory) split a
//! topic with no other coordination. The topic's partitions are listed at
//! every batch: a partition added while the query runs is read from its
//! beginning from the next batch on. A topic that disappears, or a
//! partition named in `partitions` that does not exist, fails the query
//! with that reason.
//!
//! **Where a first start begins.** `start = 'earliest'` (the default:
//! every record the topic holds) or `'latest'` (only records written after
//! the first batch). A restart always resumes where the checkpoint says.
//!
//! **How much a batch takes.** Everything up to the end, but at most
//! `max.records.per.partition.per.batch` records of each partition
//! (default 100 000, so that memory stays bounded after a long stop; `0`:
//! no cap); the rest waits for the next batches, as with Spark's
//! `maxRatePerPartition` × interval.
//!
//! **Records.** Each record's value is one record of the source's format
//! (`lines`, `csv`, `json`) under its error policy; a malformed record is
//! reported by topic, partition and offset. A record without a value (a
//! tombstone), or, in csv and json, a blank one, is malformed (kind
//! `empty`), never dropped silently. Line breaks inside a value become
//! spaces, so a value is always one record.
//!
//! **Metadata columns.** A column declared `METADATA FROM 'key'` (in SQL;
//! from Rust, a field whose metadata maps `brooklet.metadata` to the key)
//! is filled from the record instead of its value: `key` (text or bytes),
//! `partition`, `offset`, `timestamp` (the record's timestamp, so event
//! time can be Kafka's), `topic`. Without `FROM`, the column's name is the
//! key.
//!
//! **Brokers in trouble.** A request that gets no answer within `timeout`
//! (default 5 s) ends the batch with what was read so far; while the
//! brokers do not answer, batches go on empty — each asks them again for
//! 250 ms at most, so they keep their pace — and the source says so once
//! on the notices (stderr) and in its status (`\d`), and again when they
//! answer; reading then resumes exactly where it stopped, so nothing is
//! lost or read twice.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, BinaryBuilder, Int32Array, Int64Array, RecordBatch, StringBuilder,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;

use crate::connector::{Decoding, Options};
use crate::error::{Error, Result};
use crate::format::{Format, RecordDecoder, SharedPartThreads};
use crate::kafka::KafkaClient;
use crate::malformed::MalformedKind;
use crate::metrics::SourceMetrics;
use crate::notice::Notices;
use crate::source::api::{Source, SourceBatch, SourceContext, SourceReader, metadata_key};
use crate::time::BatchTime;

/// The default cap on the records one batch takes from one partition, so
/// that a batch after a long stop holds a bounded backlog.
pub const DEFAULT_MAX_PER_PARTITION: usize = 100_000;

/// Where a first start begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Every record the topic holds.
    Earliest,
    /// Only records written after the first batch.
    Latest,
}

/// Which of the topic's partitions this source reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    /// All of them.
    All,
    /// Those whose number modulo `of` is `index` (`instance = 'index/of'`).
    Instance {
        /// This process's number, from 0.
        index: i32,
        /// How many processes share the topic.
        of: i32,
    },
    /// These.
    Partitions(Vec<i32>),
}

impl Assignment {
    fn parse_instance(text: &str) -> Option<Self> {
        let (index, of) = text.trim().split_once('/')?;
        let (index, of) = (index.trim().parse().ok()?, of.trim().parse().ok()?);
        (of > 0 && (0..of).contains(&index)).then_some(Assignment::Instance { index, of })
    }

    fn parse_partitions(text: &str) -> Option<Self> {
        let mut partitions = text
            .split(',')
            .map(|p| p.trim().parse::<i32>().ok().filter(|p| *p >= 0))
            .collect::<Option<Vec<i32>>>()?;
        partitions.sort_unstable();
        partitions.dedup();
        (!partitions.is_empty()).then_some(Assignment::Partitions(partitions))
    }

    fn takes(&self, partition: i32) -> bool {
        match self {
            Assignment::All => true,
            Assignment::Instance { index, of } => partition % of == *index,
            Assignment::Partitions(list) => list.contains(&partition),
        }
    }
}

/// What a metadata column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetadataKind {
    Key,
    Partition,
    Offset,
    Timestamp,
    Topic,
}

impl MetadataKind {
    const NAMES: &str = "key, partition, offset, timestamp, topic";

    fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "key" => MetadataKind::Key,
            "partition" => MetadataKind::Partition,
            "offset" => MetadataKind::Offset,
            "timestamp" => MetadataKind::Timestamp,
            "topic" => MetadataKind::Topic,
            _ => return None,
        })
    }
}

/// One column of the declared schema: from the value, or from the record.
#[derive(Debug, Clone)]
enum Column {
    /// Column `i` of the decoded value.
    Value(usize),
    /// Filled from the record.
    Metadata(MetadataKind, Arc<Field>),
}

/// Reads a Kafka topic, batch by batch, with offsets in our checkpoint.
#[derive(Debug, Clone)]
pub struct KafkaSource {
    name: String,
    client: KafkaClient,
    schema: SchemaRef,
    decoding: Decoding,
    columns: Vec<Column>,
    start: StartAt,
    assignment: Assignment,
    max_per_partition: Option<usize>,
}

impl KafkaSource {
    pub(crate) fn from_options(
        name: &str,
        schema: SchemaRef,
        options: &mut Options,
    ) -> Result<Self> {
        let client = KafkaClient::from_options(options)?;
        let start = match options
            .take(&["start", "scan.startup.mode", "startingoffsets"])
            .map(|s| s.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("earliest") | Some("earliest-offset") => StartAt::Earliest,
            Some("latest") | Some("latest-offset") => StartAt::Latest,
            Some(other) => {
                return Err(Error::Config(format!(
                    "option 'start' of source '{name}' is '{other}'; valid values: earliest, latest"
                )));
            }
        };
        let instance = options.take(&["instance"]);
        let partitions = options.take(&["partitions"]);
        let assignment = match (instance, partitions) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(format!(
                    "source '{name}' takes 'instance' or 'partitions', not both"
                )));
            }
            (Some(text), None) => Assignment::parse_instance(&text).ok_or_else(|| {
                Error::Config(format!(
                    "option 'instance' of source '{name}' is '{text}'; expected 'i/N' with 0 <= i < N (process i of N)"
                ))
            })?,
            (None, Some(text)) => Assignment::parse_partitions(&text).ok_or_else(|| {
                Error::Config(format!(
                    "option 'partitions' of source '{name}' is '{text}'; expected partition numbers, such as '0,2'"
                ))
            })?,
            (None, None) => Assignment::All,
        };
        let max_per_partition = match options.take_parsed::<usize>(
            &["max.records.per.partition.per.batch"],
            "a number of records",
        )? {
            None => Some(DEFAULT_MAX_PER_PARTITION),
            Some(0) => None,
            Some(n) => Some(n),
        };
        let (value_schema, columns) = split_schema(name, &schema)?;
        let decoding = options.take_decoding(&value_schema, "lines")?;
        if matches!(decoding.format, Format::Csv { header: true, .. }) {
            return Err(Error::Config(format!(
                "source '{name}': 'csv.header' does not apply to Kafka, whose records are rows"
            )));
        }
        if decoding.max_records_per_batch.is_some() {
            return Err(Error::Config(format!(
                "source '{name}': a Kafka source limits batches per partition: use 'max.records.per.partition.per.batch'"
            )));
        }
        Ok(KafkaSource {
            name: name.to_string(),
            client,
            schema,
            decoding,
            columns,
            start,
            assignment,
            max_per_partition,
        })
    }
}

/// The schema a value decodes into (the declared one without metadata
/// columns), and where each declared column comes from.
fn split_schema(name: &str, schema: &SchemaRef) -> Result<(SchemaRef, Vec<Column>)> {
    let mut value_fields = Vec::new();
    let mut columns = Vec::new();
    for field in schema.fields() {
        match metadata_key(field) {
            Some(key) => {
                let kind = MetadataKind::parse(key).ok_or_else(|| {
                    Error::Config(format!(
                        "column '{}' of source '{name}' is METADATA FROM '{key}'; a Kafka record has: {}",
                        field.name(),
                        MetadataKind::NAMES
                    ))
                })?;
                columns.push(Column::Metadata(kind, Arc::clone(field)));
            }
            None => {
                columns.push(Column::Value(value_fields.len()));
                value_fields.push(Arc::clone(field));
            }
        }
    }
    if value_fields.is_empty() {
        return Err(Error::Config(format!(
            "source '{name}' declares only METADATA columns; declare the value's columns too"
        )));
    }
    Ok((Arc::new(Schema::new(value_fields)), columns))
}

impl Source for KafkaSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn connector(&self) -> &'static str {
        "kafka"
    }

    fn describe(&self) -> String {
        let which = match &self.assignment {
            Assignment::All => String::new(),
            Assignment::Instance { index, of } => format!(", instance {index}/{of}"),
            Assignment::Partitions(list) => format!(", partitions {list:?}"),
        };
        format!(
            "kafka topic '{}' at {}{which}, format {}",
            self.client.topic, self.client.bootstrap, self.decoding.format
        )
    }

    fn open(&self, ctx: SourceContext) -> Result<Box<dyn SourceReader>> {
        // Listing partitions and their ends goes over a client of its own:
        // on the reading client's connection it would wait behind a fetch.
        let control: BaseConsumer = self
            .client
            .config(&[("group.id", &format!("brooklet-{}", self.name))])
            .create()
            .map_err(|e| self.error(format!("cannot create a Kafka client: {e}")))?;
        let consumer: BaseConsumer = self
            .client
            .config(&[
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("enable.partition.eof", "true"),
                // A fetch at the end waits at most this long for records.
                ("fetch.wait.max.ms", "50"),
                // An offset that is gone (retention) is an error, not a jump.
                ("auto.offset.reset", "error"),
                // Assigned partitions only: no group membership.
                ("group.id", &format!("brooklet-{}", self.name)),
            ])
            .create()
            .map_err(|e| self.error(format!("cannot create a Kafka client: {e}")))?;
        Ok(Box::new(KafkaReader {
            source: self.clone(),
            consumer,
            control,
            metrics: ctx.metrics,
            notices: ctx.notices,
            next: BTreeMap::new(),
            first_start: true,
            assigned: false,
            at_end: BTreeSet::new(),
            last: BTreeMap::new(),
            unreachable_since: None,
            available_now: ctx.available_now,
            stop_at: None,
            decode_tasks: ctx.decode_tasks,
            part_threads: SharedPartThreads::default(),
        }))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    /// It stops at the end offsets its partitions have when it first reads.
    fn available_now(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

impl KafkaSource {
    fn error(&self, message: String) -> Error {
        Error::Source {
            source_name: self.name.clone(),
            message,
        }
    }
}

/// The records one batch took from one partition.
#[derive(Default)]
struct Taken {
    /// The values, one per line.
    values: Vec<u8>,
    /// Per record: offset, timestamp (ms), key, whether the value is
    /// missing or blank.
    offsets: Vec<i64>,
    timestamps: Vec<Option<i64>>,
    keys: Vec<Option<Vec<u8>>>,
    empty: Vec<bool>,
}

impl Taken {
    fn len(&self) -> usize {
        self.offsets.len()
    }

    fn push(&mut self, message: &impl Message, blank_is_empty: bool, keep_keys: bool) {
        let value = message.payload();
        let empty = match value {
            None => true,
            Some(v) => blank_is_empty && v.iter().all(u8::is_ascii_whitespace),
        };
        if let Some(v) = value.filter(|_| !empty) {
            let start = self.values.len();
            self.values.extend_from_slice(v);
            if memchr::memchr2(b'\n', b'\r', v).is_some() {
                for b in &mut self.values[start..] {
                    if *b == b'\n' || *b == b'\r' {
                        *b = b' ';
                    }
                }
            }
        }
        self.values.push(b'\n');
        self.offsets.push(message.offset());
        self.timestamps.push(message.timestamp().to_millis());
        self.keys.push(
            keep_keys
                .then(|| message.key().map(<[u8]>::to_vec))
                .flatten(),
        );
        self.empty.push(empty);
    }
}

struct KafkaReader {
    /// How many threads may decode one partition's records of a batch
    /// (`SET parallelism`).
    decode_tasks: usize,
    /// The threads its partitions' decoders share
    /// (`format/part_threads.rs`).
    part_threads: SharedPartThreads,
    source: KafkaSource,
    /// Reads the records of the assigned partitions.
    consumer: BaseConsumer,
    /// Lists the partitions and asks where they begin and end.
    control: BaseConsumer,
    metrics: Arc<SourceMetrics>,
    notices: Notices,
    /// The next offset to read, per partition read so far.
    next: BTreeMap<i32, i64>,
    /// No batch ran and no position was loaded: `start` decides where the
    /// partitions found now begin (partitions found later begin at their
    /// beginning).
    first_start: bool,
    /// The client's assignment matches `next`.
    assigned: bool,
    /// Partitions the client has read to their end since their last record.
    at_end: BTreeSet<i32>,
    /// What the last batch took: partition → [from, to).
    last: BTreeMap<i32, (i64, i64)>,
    /// Since when the brokers have not answered.
    unreachable_since: Option<Instant>,
    /// Under the available-now trigger: stop at the ends the first batch
    /// sees ...
    available_now: bool,
    /// ... which are these, per partition.
    stop_at: Option<BTreeMap<i32, i64>>,
}

impl KafkaReader {
    fn error(&self, message: String) -> Error {
        self.source.error(message)
    }

    fn topic(&self) -> &str {
        &self.source.client.topic
    }

    /// How long a request of a batch waits: `timeout`, or while the
    /// brokers are known not to answer, [`PROBE_TIMEOUT`] at most, so that
    /// batches go on (empty) at their pace rather than one per `timeout`,
    /// holding every other query of the engine with them.
    fn timeout(&self) -> Duration {
        match self.unreachable_since {
            Some(_) => self.source.client.timeout.min(PROBE_TIMEOUT),
            None => self.source.client.timeout,
        }
    }

    /// The topic's partitions this source reads, now.
    fn partitions(&self) -> std::result::Result<Vec<i32>, Trouble> {
        let metadata = self
            .control
            .fetch_metadata(Some(self.topic()), self.timeout())
            .map_err(Trouble::Unreachable)?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.topic())
            .ok_or_else(|| Trouble::Fatal(format!("topic '{}' is not listed", self.topic())))?;
        if let Some(e) = topic.error() {
            return Err(Trouble::Fatal(format!(
                "topic '{}' cannot be read ({e:?}); was it deleted?",
                self.topic()
            )));
        }
        let all: BTreeSet<i32> = topic.partitions().iter().map(|p| p.id()).collect();
        if let Assignment::Partitions(list) = &self.source.assignment
            && let Some(missing) = list.iter().find(|p| !all.contains(p))
        {
            return Err(Trouble::Fatal(format!(
                "topic '{}' has no partition {missing} (it has {})",
                self.topic(),
                all.len()
            )));
        }
        Ok(all
            .into_iter()
            .filter(|p| self.source.assignment.takes(*p))
            .collect())
    }

    /// Where `partitions` begin (`Offset::Beginning`) or end
    /// (`Offset::End`) as the brokers report it now, in one request.
    fn bounds(
        &self,
        partitions: impl Iterator<Item = i32>,
        at: Offset,
    ) -> std::result::Result<BTreeMap<i32, i64>, Trouble> {
        let mut list = TopicPartitionList::new();
        for partition in partitions {
            list.add_partition_offset(self.topic(), partition, at)
                .map_err(|e| Trouble::Fatal(e.to_string()))?;
        }
        if list.count() == 0 {
            return Ok(BTreeMap::new());
        }
        let found = self
            .control
            .offsets_for_times(list, self.timeout())
            .map_err(Trouble::Unreachable)?;
        let mut bounds = BTreeMap::new();
        for element in found.elements() {
            if let Err(e) = element.error() {
                return Err(Trouble::Unreachable(e));
            }
            let offset = match element.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            };
            bounds.insert(element.partition(), offset);
        }
        Ok(bounds)
    }

    /// Points the client at `next`, for every partition in it.
    fn assign(&mut self) -> Result<()> {
        let mut list = TopicPartitionList::new();
        for (&partition, &offset) in &self.next {
            list.add_partition_offset(self.topic(), partition, Offset::Offset(offset))
                .map_err(|e| self.error(format!("cannot assign partition {partition}: {e}")))?;
        }
        self.consumer
            .assign(&list)
            .map_err(|e| self.error(format!("cannot assign partitions: {e}")))?;
        self.at_end.clear();
        self.assigned = true;
        Ok(())
    }

    /// Finds the partitions to read and where new ones begin.
    fn discover(&mut self) -> std::result::Result<(), Trouble> {
        let partitions = self.partitions()?;
        let new: Vec<i32> = partitions
            .into_iter()
            .filter(|p| !self.next.contains_key(p))
            .collect();
        let at = match (self.first_start, self.source.start) {
            (true, StartAt::Latest) => Offset::End,
            _ => Offset::Beginning,
        };
        for (partition, begin) in self.bounds(new.into_iter(), at)? {
            self.next.insert(partition, begin);
            self.assigned = false;
        }
        self.first_start = false;
        Ok(())
    }

    /// Reads, per partition of `until`, from `next` up to `until`: in
    /// [`Reading::ToEnd`], to at least `until` and on to the end the
    /// client has seen, at most `limit` records each; in
    /// [`Reading::Exactly`], precisely up to `until`. Gives up at
    /// `deadline` (brokers not answering), keeping what it read, and says
    /// whether it finished.
    fn read(
        &mut self,
        until: &BTreeMap<i32, i64>,
        reading: Reading,
        deadline: Instant,
    ) -> Result<(BTreeMap<i32, Taken>, bool)> {
        if !self.assigned {
            self.assign()?;
        }
        let blank_is_empty = self.source.decoding.format != Format::Lines;
        let keep_keys = self
            .source
            .columns
            .iter()
            .any(|c| matches!(c, Column::Metadata(MetadataKind::Key, _)));
        let mut taken: BTreeMap<i32, Taken> =
            until.keys().map(|&p| (p, Taken::default())).collect();
        loop {
            let finished = until.iter().all(|(p, &end)| {
                let next = self.next[p];
                match reading {
                    Reading::Exactly => next >= end,
                    Reading::ToEnd { limit } => {
                        limit.is_some_and(|l| taken[p].len() >= l)
                            || (next >= end && self.at_end.contains(p))
                    }
                }
            });
            if finished {
                return Ok((taken, true));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok((taken, false));
            }
            match self.consumer.poll(deadline - now) {
                None => {}
                Some(Ok(message)) => {
                    let partition = message.partition();
                    let Some(records) = taken.get_mut(&partition) else {
                        continue;
                    };
                    // A record before `next` is one the client had queued
                    // before a reassignment; one past what this batch takes
                    // is read again from `next` by the next batch.
                    if message.offset() < self.next[&partition] {
                        continue;
                    }
                    let full = match reading {
                        Reading::Exactly => message.offset() >= until[&partition],
                        Reading::ToEnd { limit } => limit.is_some_and(|l| records.len() >= l),
                    };
                    if full {
                        self.assigned = false;
                        continue;
                    }
                    self.at_end.remove(&partition);
                    records.push(&message, blank_is_empty, keep_keys);
                    self.next.insert(partition, message.offset() + 1);
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    self.at_end.insert(partition);
                }
                Some(Err(e)) if is_fatal(&e) => {
                    return Err(self.error(format!("reading topic '{}': {e}", self.topic())));
                }
                Some(Err(_)) => {
                    // A connection dropped: librdkafka retries; the deadline
                    // decides how long this batch waits for it.
                }
            }
        }
    }

    /// The records taken as the declared columns, partition after
    /// partition; malformed records go through the error policy once
    /// (`replaying`: the batch ran before and they were reported then).
    fn decode(&self, taken: BTreeMap<i32, Taken>, replaying: bool) -> Result<RecordBatch> {
        let mut batches = Vec::with_capacity(taken.len());
        for (partition, records) in taken {
            if records.len() > 0 {
                batches.push(self.decode_partition(partition, records, replaying)?);
            }
        }
        Ok(arrow::compute::concat_batches(
            &self.source.schema,
            &batches,
        )?)
    }

    fn decode_partition(
        &self,
        partition: i32,
        records: Taken,
        replaying: bool,
    ) -> Result<RecordBatch> {
        let decoding = &self.source.decoding;
        let name = &self.source.name;
        let label = format!("topic '{}' partition {partition}", self.topic());
        let decoder = if replaying {
            decoding.quiet_decoder(name)
        } else {
            decoding.decoder(name, Arc::clone(&self.metrics))
        };
        let mut decoder = decoder
            .with_tasks(self.decode_tasks)
            .with_part_threads(&self.part_threads)
            .with_record_offsets(label, records.offsets.clone());
        let decoded = if records.empty.contains(&true) {
            decode_around_empty(&mut decoder, &records)?
        } else {
            decoder.decode(&records.values)?
        };
        let present = records.empty.iter().filter(|e| !**e).count();
        let kept: Vec<bool> = if decoded.num_rows() == present {
            records.empty.iter().map(|e| !e).collect()
        } else {
            self.rows_of(&records)?
        };
        self.with_metadata(partition, decoded, &records, &kept)
    }

    /// Which records gave a row, found record by record (after some were
    /// malformed): a record gives a row when it decodes alone.
    fn rows_of(&self, records: &Taken) -> Result<Vec<bool>> {
        let mut start = 0;
        let mut kept = Vec::with_capacity(records.len());
        for &empty in &records.empty {
            let end = start
                + memchr::memchr(b'\n', &records.values[start..]).expect("one line per record");
            let line = &records.values[start..=end];
            start = end + 1;
            // The record was reported once already: decode it quietly.
            let mut decoder = self.source.decoding.quiet_decoder(&self.source.name);
            kept.push(!empty && decoder.decode(line)?.num_rows() == 1);
        }
        Ok(kept)
    }

    /// The declared columns: the decoded value's, and the metadata of the
    /// records that gave rows (`kept`).
    fn with_metadata(
        &self,
        partition: i32,
        decoded: RecordBatch,
        records: &Taken,
        kept: &[bool],
    ) -> Result<RecordBatch> {
        if self.source.columns.len() == decoded.num_columns() {
            return Ok(RecordBatch::try_new(
                self.source.schema.clone(),
                decoded.columns().to_vec(),
            )?);
        }
        let rows: Vec<usize> = (0..kept.len()).filter(|&i| kept[i]).collect();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.source.columns.len());
        for column in &self.source.columns {
            let array: ArrayRef = match column {
                Column::Value(i) => Arc::clone(decoded.column(*i)),
                Column::Metadata(kind, field) => {
                    let raw: ArrayRef = match kind {
                        MetadataKind::Partition => {
                            Arc::new(Int32Array::from(vec![partition; rows.len()]))
                        }
                        MetadataKind::Offset => Arc::new(Int64Array::from_iter_values(
                            rows.iter().map(|&i| records.offsets[i]),
                        )),
                        MetadataKind::Timestamp => Arc::new(TimestampMillisecondArray::from_iter(
                            rows.iter().map(|&i| records.timestamps[i]),
                        )),
                        MetadataKind::Topic => {
                            let mut b = StringBuilder::new();
                            for _ in &rows {
                                b.append_value(self.topic());
                            }
                            Arc::new(b.finish())
                        }
                        MetadataKind::Key if field.data_type() == &DataType::Utf8 => {
                            let mut b = StringBuilder::new();
                            for &i in &rows {
                                match &records.keys[i] {
                                    Some(k) => b.append_value(String::from_utf8_lossy(k)),
                                    None => b.append_null(),
                                }
                            }
                            Arc::new(b.finish())
                        }
                        MetadataKind::Key => {
                            let mut b = BinaryBuilder::new();
                            for &i in &rows {
                                b.append_option(records.keys[i].as_deref());
                            }
                            Arc::new(b.finish())
                        }
                    };
                    arrow::compute::cast(&raw, field.data_type())?
                }
            };
            columns.push(array);
        }
        Ok(RecordBatch::try_new(self.source.schema.clone(), columns)?)
    }

    /// Notes that the brokers did not answer (said once per outage).
    fn unreachable(&mut self, e: &KafkaError) {
        if self.unreachable_since.is_none() {
            self.unreachable_since = Some(Instant::now());
            let status = format!(
                "brokers at {} do not answer ({e}); batches go on empty, reading resumes where it stopped",
                self.source.client.bootstrap
            );
            self.notices
                .send(format!("source '{}': {status}", self.source.name));
            self.metrics.set_status(Some(status));
        }
    }

    /// A backfill (available-now) ends when it has read to the ends it
    /// sees; brokers that do not answer for [`BACKFILL_PATIENCE`] request
    /// timeouts fail it, where it would otherwise wait, empty, forever.
    fn backfill_patience(&self) -> Result<()> {
        let patience = self.source.client.timeout * BACKFILL_PATIENCE;
        match self.unreachable_since {
            Some(since) if self.available_now && since.elapsed() >= patience => {
                Err(self.error(format!(
                    "brokers at {} have not answered for {:.0} s; a backfill (available-now) \
                     reads to the ends it sees and cannot see them",
                    self.source.client.bootstrap,
                    since.elapsed().as_secs_f64()
                )))
            }
            _ => Ok(()),
        }
    }

    /// Notes that the brokers answer (again).
    fn reachable(&mut self) {
        if let Some(since) = self.unreachable_since.take() {
            self.notices.send(format!(
                "source '{}': brokers answer again after {:.1} s; reading resumes where it stopped",
                self.source.name,
                since.elapsed().as_secs_f64()
            ));
            self.metrics.add_reconnect();
            self.metrics.set_status(None);
        }
    }

    fn empty(&self) -> SourceBatch {
        SourceBatch {
            batch: RecordBatch::new_empty(self.source.schema.clone()),
            end_of_input: false,
        }
    }
}

/// The records' values decoded in input order, each record without a
/// value (a tombstone, or blank) reported as malformed where it is: so the
/// policy meets malformed records in order and `fail` names the first,
/// empty or not, and no empty record becomes a row (in `lines` a blank
/// one would).
fn decode_around_empty(decoder: &mut RecordDecoder, records: &Taken) -> Result<RecordBatch> {
    let reason = "the record has no value (a tombstone, or blank)";
    let mut parts = Vec::new();
    let (mut start, mut segment) = (0, 0);
    for &empty in &records.empty {
        let end =
            start + memchr::memchr(b'\n', &records.values[start..]).expect("one line per record");
        if empty {
            if segment < start {
                parts.push(decoder.decode(&records.values[segment..start])?);
            }
            decoder.malformed(decoder.position(), MalformedKind::Empty, reason, b"")?;
            decoder.skip_line((end + 1 - start) as u64);
            segment = end + 1;
        }
        start = end + 1;
    }
    if segment < records.values.len() {
        parts.push(decoder.decode(&records.values[segment..])?);
    }
    Ok(arrow::compute::concat_batches(decoder.schema(), &parts)?)
}

/// How far [`KafkaReader::read`] reads.
#[derive(Clone, Copy)]
enum Reading {
    /// To the end seen at batch time, at most `limit` records a partition.
    ToEnd { limit: Option<usize> },
    /// Exactly the logged ranges (a batch that runs again).
    Exactly,
}

/// How many request timeouts a batch that runs again waits for its
/// records before the query fails.
const REPLAY_PATIENCE: u32 = 12;

/// How many request timeouts a backfill waits for brokers that do not
/// answer before it fails.
const BACKFILL_PATIENCE: u32 = 3;

/// How long a batch asks brokers that did not answer the last time
/// before it goes on empty (they answer a local request in milliseconds
/// once they are back).
const PROBE_TIMEOUT: Duration = Duration::from_millis(250);

/// Why a batch could not read.
enum Trouble {
    /// The brokers did not answer: the batch goes on empty.
    Unreachable(KafkaError),
    /// The topic or a partition is gone: the query fails.
    Fatal(String),
}

/// Errors that no retry mends.
fn is_fatal(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        e.rdkafka_error_code(),
        Some(
            Code::UnknownTopicOrPartition
                | Code::UnknownTopic
                | Code::UnknownPartition
                | Code::OffsetOutOfRange
                | Code::AutoOffsetReset
                | Code::TopicAuthorizationFailed
        )
    )
}

impl SourceReader for KafkaReader {
    fn next_batch(&mut self, _time: BatchTime) -> Result<SourceBatch> {
        self.last.clear();
        let ends = self
            .discover()
            .and_then(|()| self.bounds(self.next.keys().copied(), Offset::End));
        let ends = match ends {
            Ok(ends) => ends,
            Err(Trouble::Unreachable(e)) => {
                self.unreachable(&e);
                self.backfill_patience()?;
                return Ok(self.empty());
            }
            Err(Trouble::Fatal(message)) => return Err(self.error(message)),
        };
        // Available now: the ends the first batch sees are where it stops;
        // a partition found later is not read.
        let ends = match &self.stop_at {
            _ if !self.available_now => ends,
            None => {
                self.stop_at = Some(ends.clone());
                ends
            }
            Some(stop) => ends
                .into_iter()
                .map(|(p, end)| (p, end.min(stop.get(&p).copied().unwrap_or(self.next[&p]))))
                .collect(),
        };
        let from = self.next.clone();
        let limit = self.source.max_per_partition;
        let deadline = Instant::now() + self.timeout();
        let (taken, complete) = self.read(&ends, Reading::ToEnd { limit }, deadline)?;
        if complete {
            self.reachable();
        } else {
            self.unreachable(&KafkaError::Canceled);
            self.backfill_patience()?;
        }
        let lag: i64 = ends
            .iter()
            .map(|(p, end)| (end - self.next[p]).max(0))
            .sum();
        self.metrics.set_lag(lag as u64);
        self.last = from
            .into_iter()
            .map(|(p, from)| (p, (from, self.next[&p])))
            .filter(|(_, (from, to))| to > from)
            .collect();
        // A partition that filled its share of the batch may hold more than
        // its listed end says: a broker may list the end of a batch of
        // records as the offset after its first (Tansu does), and only
        // reading to the end the client sees finds the rest.
        let filled = limit.is_some_and(|l| taken.values().any(|t| t.len() >= l));
        let end_of_input = self.available_now
            && complete
            && !filled
            && ends.iter().all(|(p, end)| self.next[p] >= *end);
        Ok(SourceBatch {
            batch: self.decode(taken, false)?,
            end_of_input,
        })
    }

    fn save(&self) -> Option<serde_json::Value> {
        let next: BTreeMap<String, i64> =
            self.next.iter().map(|(p, o)| (p.to_string(), *o)).collect();
        Some(serde_json::json!({ "topic": self.topic(), "next": next }))
    }

    fn load(&mut self, position: &serde_json::Value) -> Result<()> {
        if let Some(topic) = position["topic"].as_str()
            && topic != self.topic()
        {
            return Err(self.error(format!(
                "the checkpoint read topic '{topic}', this source reads '{}'",
                self.topic()
            )));
        }
        if let Some(next) = position["next"].as_object() {
            self.next = next
                .iter()
                .filter_map(|(p, o)| Some((p.parse().ok()?, o.as_i64()?)))
                .filter(|(p, _)| self.source.assignment.takes(*p))
                .collect();
            self.first_start = false;
            self.assigned = false;
        }
        Ok(())
    }

    fn offsets(&self) -> Option<serde_json::Value> {
        let ranges: BTreeMap<String, [i64; 2]> = self
            .last
            .iter()
            .map(|(p, (from, to))| (p.to_string(), [*from, *to]))
            .collect();
        Some(serde_json::json!({ "ranges": ranges }))
    }

    fn replay(&mut self, _time: BatchTime, offsets: &serde_json::Value) -> Result<SourceBatch> {
        let ranges: BTreeMap<i32, (i64, i64)> = offsets["ranges"]
            .as_object()
            .map(|ranges| {
                ranges
                    .iter()
                    .filter_map(|(p, r)| Some((p.parse().ok()?, (r[0].as_i64()?, r[1].as_i64()?))))
                    .collect()
            })
            .unwrap_or_default();
        self.first_start = false;
        // Only the logged partitions, each from its logged start to its
        // logged end; the others keep their place.
        let others = std::mem::take(&mut self.next);
        self.next = ranges.iter().map(|(p, (from, _))| (*p, *from)).collect();
        self.assigned = false;
        let until: BTreeMap<i32, i64> = ranges.iter().map(|(p, (_, to))| (*p, *to)).collect();
        let deadline = Instant::now() + self.source.client.timeout * REPLAY_PATIENCE;
        let (taken, complete) = self.read(&until, Reading::Exactly, deadline)?;
        if !complete {
            return Err(self.error(format!(
                "cannot read back the logged offsets {ranges:?} of topic '{}' within {:?} (brokers unreachable, or the records are gone)",
                self.topic(),
                self.source.client.timeout * REPLAY_PATIENCE
            )));
        }
        let mut next = others;
        next.extend(until);
        self.next = next;
        self.assigned = false;
        self.last = ranges;
        Ok(SourceBatch {
            batch: self.decode(taken, true)?,
            end_of_input: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn source(options: &[(&str, &str)]) -> Result<KafkaSource> {
        let mut all: BTreeMap<String, String> = [
            ("connector", "kafka"),
            ("bootstrap.servers", "127.0.0.1:9"),
            ("topic", "t"),
        ]
        .iter()
        .chain(options)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        all.retain(|_, v| !v.is_empty());
        let mut options = Options::new("source", "s", all)?;
        let schema = Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, true)]));
        let source = KafkaSource::from_options("s", schema, &mut options)?;
        options.finish()?;
        Ok(source)
    }

    /// `instance = 'i/N'` takes the partitions p with p mod N = i.
    #[test]
    fn instances_take_every_nth_partition() {
        let assignment = source(&[("instance", "1/3")]).unwrap().assignment;
        let taken: Vec<i32> = (0..8).filter(|p| assignment.takes(*p)).collect();
        assert_eq!(taken, [1, 4, 7]);
        let listed = source(&[("partitions", "2, 0,2")]).unwrap().assignment;
        assert_eq!(listed, Assignment::Partitions(vec![0, 2]));
        for (key, bad) in [("instance", "3/3"), ("instance", "1"), ("partitions", "x")] {
            let e = source(&[(key, bad)]).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(bad), "{e}");
        }
        let e = source(&[("instance", "0/2"), ("partitions", "1")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not both"), "{e}");
    }

    /// Batches are capped per partition by default; `0` lifts the cap.
    #[test]
    fn the_per_partition_cap_defaults_to_a_bound() {
        let capped = source(&[]).unwrap().max_per_partition;
        assert_eq!(capped, Some(DEFAULT_MAX_PER_PARTITION));
        let uncapped = source(&[("max.records.per.partition.per.batch", "0")]).unwrap();
        assert_eq!(uncapped.max_per_partition, None);
        let e = source(&[("max.records.per.batch", "5")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("max.records.per.partition.per.batch"), "{e}");
    }
}
