//! Formats: how raw records (lines of bytes) become Arrow rows.
//!
//! `lines` gives one `line` text column per line; `csv` and `json`
//! (newline-delimited) decode into the declared schema with arrow-csv and
//! arrow-json. A chunk of records is decoded at once; when that fails, the
//! chunk is decoded again in halves until the bad ones are alone, so a malformed
//! record is always reported with its position (line number and byte offset
//! in the source's input) and handled by the source's [`ErrorPolicy`]:
//! `fail` stops the query with the position and reason, `skip` counts it and
//! warns once per batch, `dead-letter` also appends it, with its position,
//! kind and reason, to a file of JSON lines ([`DeadLetter`]). It is never
//! dropped silently, and it is counted by kind ([`MalformedKind`]).
//!
//! Two readers go before arrow's, each only when a whole chunk has the one
//! shape it reads, and leave every other chunk to arrow, whose values and
//! errors therefore decide: flat JSON objects (`flat_json.rs`) and
//! zone-less timestamps of the common shape (`timestamps.rs`).
//!
//! A line is one record: a line that decodes into two (`{"a":1}{"a":2}`)
//! is malformed.
//!
//! Decisions: a trailing `\r` is removed (CRLF input); blank lines carry no
//! record in `csv` and `json` and are passed over, while in `lines` a blank
//! line is an empty string, as Spark's `socketTextStream` gives it.

mod flat_json;
pub(crate) mod parquet;
mod part_threads;
mod timestamps;

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::{Error, Result};
use crate::malformed::{MALFORMED_PREFIX, MalformedKind};
use crate::metrics::SourceMetrics;
use part_threads::PartThreads;
pub(crate) use part_threads::SharedPartThreads;
use timestamps::TextTimestamps;

/// The default limit on one record's length (`max.record.bytes`): 1 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;

/// How a source's records are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// One text column per line.
    Lines,
    /// Comma-separated values, without a header unless `header` is set.
    Csv {
        /// The first line of the input is a header and is skipped.
        header: bool,
        /// The field delimiter.
        delimiter: u8,
    },
    /// One JSON object per line.
    Json,
}

impl Format {
    /// The format named by a `format` option and its `csv.*` options.
    pub fn parse(name: &str, csv_header: bool, csv_delimiter: u8) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "lines" | "text" | "raw_string" => Ok(Format::Lines),
            "csv" => Ok(Format::Csv {
                header: csv_header,
                delimiter: csv_delimiter,
            }),
            "json" | "ndjson" => Ok(Format::Json),
            other => Err(Error::Config(format!(
                "unknown format '{other}'; valid formats: lines, csv, json"
            ))),
        }
    }

    /// Checks that a schema fits the format: `lines` needs one text column.
    pub fn check_schema(&self, schema: &SchemaRef) -> Result<()> {
        if *self == Format::Lines
            && (schema.fields().len() != 1
                || !matches!(
                    schema.field(0).data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ))
        {
            return Err(Error::Config(format!(
                "format 'lines' needs exactly one text column (such as `line` of type Utf8), but the source declares ({})",
                schema
                    .fields()
                    .iter()
                    .map(|f| format!("{} {}", f.name(), f.data_type()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(())
    }

    /// The kind of a decoder's reason for a record of this format: what no
    /// rule names is a JSON error in JSON and a value error in CSV, so every
    /// record falls in one of the documented kinds.
    pub fn malformed_kind(&self, reason: &str) -> MalformedKind {
        let lower = reason.to_ascii_lowercase();
        if lower.contains("utf-8") || lower.contains("utf8") {
            MalformedKind::Utf8
        } else if lower.contains("number of fields") || lower.contains("expected one record") {
            MalformedKind::FieldCount
        } else if lower.contains("encountered unexpected")
            || lower.contains("truncated record")
            || lower.contains("surrogate")
        {
            // arrow-json's syntax errors ("Encountered unexpected 'x'
            // whilst parsing value"), before "pars" makes them values.
            MalformedKind::Json
        } else if lower.contains("pars") || lower.contains("cast") || lower.contains("overflow") {
            MalformedKind::Value
        } else if *self == Format::Json
            || lower.contains("json")
            || lower.contains("expected")
            || lower.contains("eof")
        {
            MalformedKind::Json
        } else {
            MalformedKind::Value
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Format::Lines => write!(f, "lines"),
            Format::Csv { .. } => write!(f, "csv"),
            Format::Json => write!(f, "json"),
        }
    }
}

/// What a source does with a record that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorPolicy {
    /// Stop the query with an error naming the source, position and reason.
    #[default]
    Fail,
    /// Count the record, warn once per batch with the first position, go on.
    Skip,
    /// As `Skip`, and append the record to the source's dead-letter file.
    DeadLetter,
}

impl ErrorPolicy {
    /// The policy named by an `on-error` option.
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "fail" => Ok(ErrorPolicy::Fail),
            "skip" => Ok(ErrorPolicy::Skip),
            "dead-letter" | "dead_letter" | "deadletter" => Ok(ErrorPolicy::DeadLetter),
            other => Err(Error::Config(format!(
                "unknown on-error policy '{other}'; valid policies: fail, skip, dead-letter"
            ))),
        }
    }
}

/// A dead-letter file: one JSON line per malformed record, appended —
/// `{"source", "file"?, "line", "byte", "kind", "reason", "record"}`, with
/// `record_hex` too when the record is not valid UTF-8 (so nothing of it is
/// lost). Clones share the file.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    path: PathBuf,
    file: Arc<Mutex<std::fs::File>>,
}

impl DeadLetter {
    /// Opens (creating it if needed) the file at `path` for appending.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| {
                Error::Config(format!(
                    "cannot open the dead-letter file {}: {e}",
                    path.display()
                ))
            })?;
        Ok(DeadLetter {
            path,
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    #[allow(clippy::too_many_arguments)]
    fn append(
        &self,
        source: &str,
        file: Option<&str>,
        record_at: Option<(&str, i64)>,
        position: Position,
        kind: MalformedKind,
        reason: &str,
        raw: &[u8],
    ) -> Result<()> {
        let mut line = serde_json::json!({
            "source": source,
            "line": position.line,
            "byte": position.byte,
            "kind": kind.name(),
            "reason": reason,
            "record": String::from_utf8_lossy(raw),
        });
        if let Some((at, offset)) = record_at {
            line["at"] = serde_json::json!(at);
            line["offset"] = serde_json::json!(offset);
        }
        if let Some(file) = file {
            line["file"] = serde_json::json!(file);
        }
        if std::str::from_utf8(raw).is_err() {
            let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            line["record_hex"] = serde_json::json!(hex);
        }
        let mut text = line.to_string();
        text.push('\n');
        crate::sync::lock(&self.file)
            .write_all(text.as_bytes())
            .map_err(|e| Error::io(format!("cannot append to {}", self.path.display()), e))
    }
}

/// `chunk` cut after line ends into at most `parts` parts of about equal
/// size (fewer when its lines are long).
fn cut_at_lines(chunk: &[u8], parts: usize) -> Vec<&[u8]> {
    let mut cut = Vec::with_capacity(parts);
    let mut start = 0;
    for i in 1..parts {
        let target = (chunk.len() * i / parts).max(start);
        let Some(end) = memchr::memchr(b'\n', &chunk[target..]).map(|e| target + e + 1) else {
            break;
        };
        if end >= chunk.len() {
            break;
        }
        cut.push(&chunk[start..end]);
        start = end;
    }
    cut.push(&chunk[start..]);
    cut
}

/// Where a record starts in a source's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based line number.
    pub line: u64,
    /// 0-based byte offset of the line's first byte.
    pub byte: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} (byte offset {})", self.line, self.byte)
    }
}

/// The offsets of an input's lines in the log they came from.
#[derive(Debug, Clone)]
struct RecordOffsets {
    label: String,
    offsets: Vec<i64>,
}

/// Turns chunks of complete lines into record batches of a schema, keeping
/// count of positions and applying the error policy.
#[derive(Debug)]
pub struct RecordDecoder {
    source: String,
    schema: SchemaRef,
    format: Format,
    policy: ErrorPolicy,
    metrics: Arc<SourceMetrics>,
    max_record_bytes: usize,
    next: Position,
    /// The file the input comes from, when the source reads files.
    file: Option<String>,
    /// Where each line came from, when every line is a record of a log
    /// with offsets (a Kafka partition).
    offsets: Option<RecordOffsets>,
    dead_letter: Option<DeadLetter>,
    /// How many threads may decode one large chunk (`SET parallelism`).
    tasks: usize,
    /// The schema's timestamp columns, decoded as text and read by
    /// `timestamps.rs` when they are of the common shape.
    text_timestamps: Option<TextTimestamps>,
    /// The threads that decode the other parts of a large chunk, once one
    /// came (`part_threads.rs`); its own unless given a source's.
    part_threads: SharedPartThreads,
}

/// The smallest chunk decoded by more than one thread: below it, starting
/// threads costs more than they save.
const PARALLEL_MIN_BYTES: usize = 256 << 10;

impl RecordDecoder {
    /// A decoder for the named source.
    pub fn new(
        source: impl Into<String>,
        schema: SchemaRef,
        format: Format,
        policy: ErrorPolicy,
        metrics: Arc<SourceMetrics>,
    ) -> Self {
        // JSON reads its timestamps in `flat_json.rs`: a chunk that one
        // leaves to arrow is not of the plain shape, so a second try with
        // text columns would mostly decode it three times.
        let text_timestamps = match format {
            Format::Csv { .. } => TextTimestamps::of(&schema),
            Format::Json | Format::Lines => None,
        };
        RecordDecoder {
            source: source.into(),
            format,
            policy,
            metrics,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            next: Position { line: 1, byte: 0 },
            file: None,
            offsets: None,
            dead_letter: None,
            tasks: 1,
            text_timestamps,
            schema,
            part_threads: SharedPartThreads::default(),
        }
    }

    /// A decoder with the same settings, at the start of its input, that
    /// counts into the same metrics: what a part thread decodes with.
    fn settings_copy(&self) -> RecordDecoder {
        RecordDecoder::new(
            self.source.clone(),
            Arc::clone(&self.schema),
            self.format.clone(),
            self.policy,
            Arc::clone(&self.metrics),
        )
        .with_max_record_bytes(self.max_record_bytes)
    }

    /// Decodes a chunk of at least 256 KiB on up to `tasks` threads (see
    /// [`RecordDecoder::decode`]).
    pub fn with_tasks(mut self, tasks: usize) -> Self {
        self.tasks = tasks.max(1);
        self
    }

    /// Decodes the other parts of large chunks on `threads`, which the
    /// source's other decoders (of the same settings) share.
    pub(crate) fn with_part_threads(mut self, threads: &SharedPartThreads) -> Self {
        self.part_threads = threads.clone();
        self
    }

    /// How many threads may decode one chunk.
    pub fn tasks(&self) -> usize {
        self.tasks
    }

    /// Says that line `n` of the input is the record at `offsets[n - 1]`
    /// of the log `label` (`topic clicks partition 2`): messages and dead
    /// letters name that offset instead of a line.
    pub fn with_record_offsets(mut self, label: String, offsets: Vec<i64>) -> Self {
        self.offsets = Some(RecordOffsets { label, offsets });
        self
    }

    /// Where the record at `position` is, for a message.
    fn locate(&self, position: Position) -> String {
        match self.record_at(position) {
            Some((label, offset)) => format!("{label} offset {offset}"),
            None => format!("{}{position}", self.origin()),
        }
    }

    /// The log and offset of the record at `position`, for offset inputs.
    fn record_at(&self, position: Position) -> Option<(&str, i64)> {
        let offsets = self.offsets.as_ref()?;
        let offset = *offsets
            .offsets
            .get(position.line.checked_sub(1)? as usize)?;
        Some((offsets.label.as_str(), offset))
    }

    /// Names the file positions are in, for messages and dead letters.
    pub fn with_file(mut self, path: &Path) -> Self {
        self.file = Some(path.display().to_string());
        self
    }

    /// Sends malformed records to `dead_letter` under `on-error = 'dead-letter'`.
    pub fn with_dead_letter(mut self, dead_letter: Option<DeadLetter>) -> Self {
        self.dead_letter = dead_letter;
        self
    }

    /// `file <path>, ` before positions in messages, when reading files.
    fn origin(&self) -> String {
        self.file
            .as_ref()
            .map_or(String::new(), |f| format!("file {f}, "))
    }

    /// Sets the longest record accepted, in bytes.
    pub fn with_max_record_bytes(mut self, max: usize) -> Self {
        self.max_record_bytes = max;
        self
    }

    /// The longest record accepted, in bytes.
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }

    /// The schema records decode into.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The position the next record will have.
    pub fn position(&self) -> Position {
        self.next
    }

    /// Decodes a chunk of whole lines, each ending in `\n` (the last may lack
    /// it at the end of input).
    ///
    /// With [`RecordDecoder::with_tasks`] and a large chunk, the chunk is
    /// cut at line ends into one part per task and the parts are decoded
    /// on threads of their own, but only the parts whose every line is a
    /// good record: a part that has anything else (a bad record, a header,
    /// a blank or over-long line) is decoded again here, in input order,
    /// after the parts before it. So malformed records meet the error
    /// policy one by one in input order, with their exact positions, at
    /// any number of tasks.
    pub fn decode(&mut self, chunk: &[u8]) -> Result<RecordBatch> {
        let chunk = self.without_byte_order_mark(chunk);
        if self.tasks > 1 && chunk.len() >= PARALLEL_MIN_BYTES && self.format != Format::Lines {
            return self.decode_in_parts(chunk);
        }
        self.decode_in_order(chunk)
    }

    /// `chunk` without the UTF-8 byte order mark that may open the input
    /// (editors on Windows write one): it is not part of the first record,
    /// in CSV, JSON and lines alike. Its bytes still count in positions.
    fn without_byte_order_mark<'a>(&mut self, chunk: &'a [u8]) -> &'a [u8] {
        const MARK: &[u8] = b"\xEF\xBB\xBF";
        if self.next == (Position { line: 1, byte: 0 }) && chunk.starts_with(MARK) {
            self.next.byte = MARK.len() as u64;
            return &chunk[MARK.len()..];
        }
        chunk
    }

    /// [`RecordDecoder::decode`] on several threads.
    fn decode_in_parts(&mut self, chunk: &[u8]) -> Result<RecordBatch> {
        let shared = self.part_threads.clone();
        // Another decoder of the source has the threads: this chunk
        // decodes here alone.
        let Ok(mut threads) = shared.0.try_lock() else {
            return self.decode_in_order(chunk);
        };
        let threads = threads.get_or_insert_with(|| PartThreads::start(self, self.tasks - 1));
        let parts = cut_at_lines(chunk, threads.len() + 1);
        let header = self.next.line == 1;
        threads.send(&parts[1..]);
        let first = self.decode_clean(parts[0], header);
        let clean: Vec<Option<(u64, RecordBatch)>> = std::iter::once(first)
            .chain(threads.receive(parts.len() - 1))
            .collect();
        let mut batches = Vec::with_capacity(parts.len());
        for (part, clean) in parts.iter().zip(clean) {
            match clean {
                Some((lines, batch)) => {
                    self.next = Position {
                        line: self.next.line + lines,
                        byte: self.next.byte + part.len() as u64,
                    };
                    self.metrics.add_records(batch.num_rows() as u64);
                    batches.push(batch);
                }
                None => batches.push(self.decode_in_order(part)?),
            }
        }
        Ok(arrow::compute::concat_batches(&self.schema, &batches)?)
    }

    /// A part's rows and lines when every line of it is a good record as it
    /// is (ended, no `\r`, not blank, not over-long, not a header when
    /// `header` may be its first line); `None` otherwise. Counts nothing.
    fn decode_clean(&self, part: &[u8], header: bool) -> Option<(u64, RecordBatch)> {
        let csv_header = matches!(self.format, Format::Csv { header: true, .. });
        if (header && csv_header)
            || part.last() != Some(&b'\n')
            || memchr::memchr(b'\r', part).is_some()
        {
            return None;
        }
        let mut lines = 0u64;
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', part) {
            let line = &part[start..end];
            if line.len() > self.max_record_bytes || line.iter().all(u8::is_ascii_whitespace) {
                return None;
            }
            lines += 1;
            start = end + 1;
        }
        let batch = self.decode_bytes(part, lines as usize).ok()?;
        (batch.num_rows() as u64 == lines).then_some((lines, batch))
    }

    /// [`RecordDecoder::decode`] on this thread, line by line in order.
    fn decode_in_order(&mut self, chunk: &[u8]) -> Result<RecordBatch> {
        let mut records: Vec<(Position, &[u8])> = Vec::new();
        // Decoded runs of records, cut where an over-long record is handled,
        // so that bad records meet the policy in input order.
        let mut decoded = Vec::new();
        // Whether the records are the chunk as it is (no line dropped or
        // trimmed, the last one ended): then the chunk is decoded in place.
        let mut as_is = chunk.last() == Some(&b'\n');
        let mut start = 0;
        while start < chunk.len() {
            let end = memchr::memchr(b'\n', &chunk[start..]).map_or(chunk.len(), |i| start + i);
            let consumed = (end + 1).min(chunk.len()) - start;
            let mut record = &chunk[start..end];
            if record.last() == Some(&b'\r') {
                record = &record[..record.len() - 1];
                as_is = false;
            }
            let position = self.next;
            self.next = Position {
                line: position.line + 1,
                byte: position.byte + consumed as u64,
            };
            start = end + 1;
            if record.len() > self.max_record_bytes {
                let reason = format!(
                    "record is {} bytes long, longer than max.record.bytes = {}",
                    record.len(),
                    self.max_record_bytes
                );
                as_is = false;
                decoded.push(self.decode_records(&std::mem::take(&mut records), None)?);
                let record = &record[..record.len().min(MALFORMED_PREFIX)];
                self.malformed(position, MalformedKind::TooLong, &reason, record)?;
                continue;
            }
            let header =
                matches!(self.format, Format::Csv { header: true, .. }) && position.line == 1;
            if header
                || (self.format != Format::Lines && record.iter().all(u8::is_ascii_whitespace))
            {
                as_is = false;
                continue;
            }
            records.push((position, record));
        }
        if decoded.is_empty() {
            return self.decode_records(&records, as_is.then_some(chunk));
        }
        decoded.push(self.decode_records(&records, None)?);
        Ok(arrow::compute::concat_batches(&self.schema, &decoded)?)
    }

    /// Handles a malformed record `raw` at `position` per the policy: counts
    /// it by kind, then fails, or skips it (warning once per batch), or
    /// also appends it to the dead-letter file.
    pub fn malformed(
        &self,
        position: Position,
        kind: MalformedKind,
        reason: &str,
        raw: &[u8],
    ) -> Result<()> {
        self.metrics.add_malformed(kind);
        let at = self.locate(position);
        match self.policy {
            ErrorPolicy::Fail => Err(Error::Source {
                source_name: self.source.clone(),
                message: format!(
                    "malformed record at {at}: {reason} (set on-error = 'skip' or 'dead-letter' to go on without such records)"
                ),
            }),
            ErrorPolicy::Skip => {
                self.metrics.note_skipped(|| format!("{at}: {reason}"));
                Ok(())
            }
            ErrorPolicy::DeadLetter => {
                let dead_letter = self.dead_letter.as_ref().ok_or_else(|| {
                    Error::Internal("on-error = 'dead-letter' without its file".into())
                })?;
                dead_letter.append(
                    &self.source,
                    self.file.as_deref(),
                    self.record_at(position),
                    position,
                    kind,
                    reason,
                    raw,
                )?;
                self.metrics.note_skipped(|| {
                    format!("{at}: {reason} (sent to {})", dead_letter.path().display())
                });
                Ok(())
            }
        }
    }

    /// Advances the position past bytes that were dropped (the rest of an
    /// over-long line, a line cut by a disconnect).
    pub fn skip_line(&mut self, bytes: u64) {
        self.next = Position {
            line: self.next.line + 1,
            byte: self.next.byte + bytes,
        };
    }

    /// Decodes `records`; `as_is` is the chunk they are, each with its
    /// newline, when nothing was dropped from it (decoded without a copy).
    fn decode_records(
        &mut self,
        records: &[(Position, &[u8])],
        as_is: Option<&[u8]>,
    ) -> Result<RecordBatch> {
        if records.is_empty() {
            return Ok(RecordBatch::new_empty(self.schema.clone()));
        }
        if self.format == Format::Lines {
            return self.decode_lines(records);
        }
        // Fast path: the whole chunk at once.
        let joined: std::borrow::Cow<'_, [u8]> = match as_is {
            Some(chunk) => chunk.into(),
            None => {
                let mut joined = Vec::with_capacity(records.iter().map(|(_, r)| r.len() + 1).sum());
                for (_, record) in records {
                    joined.extend_from_slice(record);
                    joined.push(b'\n');
                }
                joined.into()
            }
        };
        if let Ok(batch) = self.decode_bytes(&joined, records.len())
            && batch.num_rows() == records.len()
        {
            self.metrics.add_records(records.len() as u64);
            return Ok(batch);
        }
        // Slow path: halves, to find the bad records and their positions.
        let mut good = Vec::new();
        let (first, second) = records.split_at(records.len() / 2);
        self.decode_halving(first, &mut good)?;
        self.decode_halving(second, &mut good)?;
        let rows = good.iter().map(RecordBatch::num_rows).sum::<usize>();
        self.metrics.add_records(rows as u64);
        Ok(arrow::compute::concat_batches(&self.schema, &good)?)
    }

    /// Decodes `records` into `good` in order, a part that fails in halves
    /// until the bad records are alone, each then handled by the policy: a
    /// few bad records among many cost a few decodes each, not one decode
    /// per record.
    fn decode_halving(
        &mut self,
        records: &[(Position, &[u8])],
        good: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut joined = Vec::with_capacity(records.iter().map(|(_, r)| r.len() + 1).sum());
        for (_, record) in records {
            joined.extend_from_slice(record);
            joined.push(b'\n');
        }
        let decoded = self.decode_bytes(&joined, records.len());
        match (decoded, records) {
            (Ok(batch), _) if batch.num_rows() == records.len() => {
                good.push(batch);
                Ok(())
            }
            (Ok(batch), [(position, record)]) => {
                let reason = format!("expected one record, found {}", batch.num_rows());
                self.malformed(*position, MalformedKind::FieldCount, &reason, record)
            }
            (Err(reason), [(position, record)]) => {
                let kind = self.format.malformed_kind(&reason);
                self.malformed(*position, kind, &reason, record)
            }
            _ => {
                let (first, second) = records.split_at(records.len() / 2);
                self.decode_halving(first, good)?;
                self.decode_halving(second, good)
            }
        }
    }

    fn decode_lines(&mut self, records: &[(Position, &[u8])]) -> Result<RecordBatch> {
        let mut builder =
            StringBuilder::with_capacity(records.len(), records.iter().map(|(_, r)| r.len()).sum());
        let mut rows = 0u64;
        for (position, record) in records {
            match std::str::from_utf8(record) {
                Ok(text) => {
                    builder.append_value(text);
                    rows += 1;
                }
                Err(e) => self.malformed(
                    *position,
                    MalformedKind::Utf8,
                    &format!("invalid UTF-8: {e}"),
                    record,
                )?,
            }
        }
        self.metrics.add_records(rows);
        let column: ArrayRef = Arc::new(builder.finish());
        let column = arrow::compute::cast(&column, self.schema.field(0).data_type())?;
        Ok(RecordBatch::try_new(self.schema.clone(), vec![column])?)
    }

    fn decode_bytes(
        &self,
        bytes: &[u8],
        records: usize,
    ) -> std::result::Result<RecordBatch, String> {
        if self.format == Format::Json
            && let Some(batch) = flat_json::read(bytes, records, &self.schema)
        {
            return Ok(batch);
        }
        if let Some(timestamps) = &self.text_timestamps
            && let Ok(batch) = self.decode_bytes_as(bytes, records, timestamps.text_schema())
            && let Some(batch) = timestamps.read(&batch, &self.schema)
        {
            return Ok(batch);
        }
        self.decode_bytes_as(bytes, records, &self.schema)
    }

    /// Decodes `bytes` into `schema` with arrow.
    fn decode_bytes_as(
        &self,
        bytes: &[u8],
        records: usize,
        schema: &SchemaRef,
    ) -> std::result::Result<RecordBatch, String> {
        let batch_size = records.max(1);
        let batch = match &self.format {
            Format::Csv { delimiter, .. } => {
                if std::str::from_utf8(bytes).is_err() {
                    return Err("invalid UTF-8".to_string());
                }
                let mut decoder = arrow::csv::ReaderBuilder::new(Arc::clone(schema))
                    .with_header(false)
                    .with_delimiter(*delimiter)
                    .with_batch_size(batch_size)
                    .build_decoder();
                feed(bytes, |b| decoder.decode(b))?;
                decoder.flush().map_err(|e| clean(e.to_string()))?
            }
            Format::Json => {
                check_json_integers(bytes, schema)?;
                let mut decoder = arrow::json::ReaderBuilder::new(Arc::clone(schema))
                    .with_batch_size(batch_size)
                    .build_decoder()
                    .map_err(|e| clean(e.to_string()))?;
                feed(bytes, |b| decoder.decode(b))?;
                decoder.flush().map_err(|e| clean(e.to_string()))?
            }
            Format::Lines => unreachable!("lines are decoded without arrow"),
        };
        Ok(batch.unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(schema))))
    }
}

/// Integer columns take integers as JSON writes them, within their type:
/// arrow-json reads `1.5` as 1 and `-9223372036854775809` as the smallest
/// `BIGINT`, silently; here such a value is malformed (kind `value`), as
/// it is in CSV. So is a number for a time column (arrow-json reads it in
/// the column's unit: epoch milliseconds became microseconds). Only lines the fast reader (`flat_json.rs`, which checks
/// this itself) left to arrow-json come here; syntax errors are left to
/// arrow-json, which reports them.
fn check_json_integers(bytes: &[u8], schema: &Schema) -> std::result::Result<(), String> {
    let columns: Vec<&Field> = schema
        .fields()
        .iter()
        .filter(|f| f.data_type().is_integer() || f.data_type().is_temporal())
        .map(|f| f.as_ref())
        .collect();
    if columns.is_empty() {
        return Ok(());
    }
    // Only lines a byte scan finds such a number in are parsed: the rest
    // are not read twice.
    let time_keys: Vec<String> = columns
        .iter()
        .filter(|f| f.data_type().is_temporal())
        .map(|f| format!("\"{}\"", f.name()))
        .collect();
    for line in bytes.split(|&b| b == b'\n') {
        let suspect = has_inexact_number(line)
            || time_keys
                .iter()
                .any(|key| number_after_key(line, key.as_bytes()));
        if !suspect {
            continue;
        }
        let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(line) else {
            continue;
        };
        for field in &columns {
            let Some(serde_json::Value::Number(number)) = object.get(field.name()) else {
                continue;
            };
            if field.data_type().is_temporal() {
                // arrow-json takes it in the column's unit (microseconds
                // for TIMESTAMP), where CSV refuses it: refused here too.
                return Err(format!(
                    "{number} does not parse as {} ({}): write the time as text \
                     (2024-01-02T03:04:05), or declare the column BIGINT for epoch milliseconds",
                    field.name(),
                    field.data_type()
                ));
            }
            let fits = match number.as_i64() {
                Some(v) => integer_fits(i128::from(v), field.data_type()),
                None => number
                    .as_u64()
                    .is_some_and(|v| integer_fits(i128::from(v), field.data_type())),
            };
            if !fits {
                return Err(format!(
                    "{number} does not parse as {} ({}): an integer in its range",
                    field.name(),
                    field.data_type()
                ));
            }
        }
    }
    Ok(())
}

/// Whether a JSON line has, outside its strings, a number with a fraction
/// or an exponent, or of 19 digits or more: the only numbers arrow-json
/// may change in an integer column. A byte scan, so that lines without
/// one are not parsed twice.
fn has_inexact_number(line: &[u8]) -> bool {
    let (mut in_string, mut escaped, mut digits) = (false, false, 0);
    for &b in line {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => (in_string, digits) = (true, 0),
            b'0'..=b'9' => {
                digits += 1;
                if digits >= 19 {
                    return true;
                }
            }
            b'.' | b'e' | b'E' if digits > 0 => return true,
            _ => digits = 0,
        }
    }
    false
}

/// Whether `line` has `key` (quoted) followed by `:` and a number (a digit
/// or `-`). It may also find a key's text inside a string value; that only
/// costs a parse.
fn number_after_key(line: &[u8], key: &[u8]) -> bool {
    memchr::memmem::find_iter(line, key).any(|at| {
        let mut rest = line[at + key.len()..]
            .iter()
            .skip_while(|b| b.is_ascii_whitespace());
        rest.next() == Some(&b':')
            && rest
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|b| b.is_ascii_digit() || *b == b'-')
    })
}

/// Whether `value` is one of `data_type`'s (an integer type).
fn integer_fits(value: i128, data_type: &DataType) -> bool {
    let (min, max): (i128, i128) = match data_type {
        DataType::Int8 => (i8::MIN.into(), i8::MAX.into()),
        DataType::Int16 => (i16::MIN.into(), i16::MAX.into()),
        DataType::Int32 => (i32::MIN.into(), i32::MAX.into()),
        DataType::Int64 => (i64::MIN.into(), i64::MAX.into()),
        DataType::UInt8 => (0, u8::MAX.into()),
        DataType::UInt16 => (0, u16::MAX.into()),
        DataType::UInt32 => (0, u32::MAX.into()),
        _ => (0, u64::MAX.into()),
    };
    (min..=max).contains(&value)
}

/// Feeds all of `bytes` to an arrow decoder (which may take them in parts),
/// made for as many rows as there are records. A decoder that stops with
/// more than blanks left has read that many rows before the end: some line
/// held more than one record (`{"a":1}{"a":2}` in JSON), which is an error,
/// never a row dropped at the end.
fn feed(
    bytes: &[u8],
    mut decode: impl FnMut(&[u8]) -> std::result::Result<usize, arrow::error::ArrowError>,
) -> std::result::Result<(), String> {
    let mut offset = 0;
    while offset < bytes.len() {
        match decode(&bytes[offset..]).map_err(|e| clean(e.to_string()))? {
            0 => break,
            n => offset += n,
        }
    }
    if !bytes[offset..].iter().all(u8::is_ascii_whitespace) {
        return Err("more than one record on a line".to_string());
    }
    Ok(())
}

/// Arrow's messages name the decoder's own line numbers (always 0 or 1 for a
/// single record); drop that part, the caller gives the real position.
fn clean(message: String) -> String {
    let message = message
        .trim_start_matches("Parser error: ")
        .trim_start_matches("Json error: ")
        .trim_start_matches("Csv error: ")
        .to_string();
    let mut message = match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    };
    // "incorrect number of fields for line 1, expected 2 got 1"
    if let Some(i) = message.find(" for line ") {
        let rest = &message[i + " for line ".len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            message = format!("{}{}", &message[..i], &rest[digits..]);
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};
    use arrow::util::display::array_value_to_string;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]))
    }

    fn column(batch: &RecordBatch, i: usize) -> Vec<String> {
        (0..batch.num_rows())
            .map(|r| array_value_to_string(batch.column(i), r).unwrap())
            .collect()
    }

    #[test]
    fn reasons_name_no_line_of_arrows_own_and_every_kind_is_documented() {
        assert_eq!(
            clean("Csv error: incorrect number of fields for line 1, expected 2 got 1".into()),
            "incorrect number of fields, expected 2 got 1"
        );
        let truncated = "Truncated record whilst reading string";
        assert_eq!(Format::Json.malformed_kind(truncated), MalformedKind::Json);
        let not_json = "Encountered unexpected 'x' whilst parsing value";
        assert_eq!(Format::Json.malformed_kind(not_json), MalformedKind::Json);
        let not_a_number = "whilst decoding field 'n': failed to parse \"x\" as Int64";
        assert_eq!(
            Format::Json.malformed_kind(not_a_number),
            MalformedKind::Value
        );
        let csv = Format::parse("csv", false, b',').unwrap();
        assert_eq!(csv.malformed_kind("something new"), MalformedKind::Value);
    }

    #[test]
    fn csv_skips_a_bad_record_and_reports_its_position() {
        let metrics = Arc::new(SourceMetrics::default());
        let mut d = RecordDecoder::new(
            "s",
            schema(),
            Format::parse("csv", false, b',').unwrap(),
            ErrorPolicy::Skip,
            metrics.clone(),
        );
        let batch = d.decode(b"a,1\r\nb,x\nc,3\n").unwrap();
        assert_eq!(column(&batch, 0), ["a", "c"]);
        let snap = metrics.snapshot();
        assert_eq!((snap.records, snap.malformed), (2, 1));
        let report = metrics.take_skipped().unwrap();
        assert_eq!(report.count, 1);
        assert!(
            report.first.starts_with("line 2 (byte offset 5)"),
            "{}",
            report.first
        );
        assert!(metrics.take_skipped().is_none());
    }

    #[test]
    fn a_chunk_decoded_in_parts_gives_the_rows_and_bad_records_of_one_decoder() {
        // 40 000 lines (over 256 KiB), a header, a bad line near the start
        // and one near the end: the parts between decode on threads.
        let mut chunk = b"name,n\n".to_vec();
        for i in 0..40_000 {
            match i {
                3 => chunk.extend_from_slice(b"bad,x\n"),
                39_990 => chunk.extend_from_slice(b"\n"),
                39_995 => chunk.extend_from_slice(b"worse,1,2\n"),
                _ => chunk.extend_from_slice(format!("k{},{i}\n", i % 10).as_bytes()),
            }
        }
        let decode = |tasks: usize| {
            let metrics = Arc::new(SourceMetrics::default());
            let mut d = RecordDecoder::new(
                "s",
                schema(),
                Format::parse("csv", true, b',').unwrap(),
                ErrorPolicy::Skip,
                metrics.clone(),
            )
            .with_tasks(tasks);
            let batch = d.decode(&chunk).unwrap();
            let report = metrics.take_skipped().unwrap();
            let snap = metrics.snapshot();
            (
                batch,
                d.position(),
                snap.records,
                snap.malformed,
                report.count,
                report.first,
            )
        };
        let one = decode(1);
        assert_eq!(one.0.num_rows(), 39_997);
        assert!(one.5.starts_with("line 5 "), "{}", one.5);
        for tasks in [2, 3, 8] {
            assert_eq!(decode(tasks), one, "{tasks} tasks");
        }
        assert_eq!(cut_at_lines(&chunk, 8).concat(), chunk);
        assert_eq!(cut_at_lines(&chunk, 8).len(), 8);
    }

    #[test]
    fn decoders_that_share_part_threads_each_decode_their_own_input() {
        // As a files source decodes file after file (each over 256 KiB):
        // each decoder starts at line 1 of its own file, the threads
        // outlive each of them.
        let file = |n: usize| {
            let mut text = Vec::new();
            for i in 0..60_000 {
                text.extend_from_slice(format!("f{n},{i}\n").as_bytes());
            }
            text
        };
        let decoder = |threads: Option<&SharedPartThreads>| {
            let d = RecordDecoder::new(
                "s",
                schema(),
                Format::parse("csv", false, b',').unwrap(),
                ErrorPolicy::Fail,
                Arc::new(SourceMetrics::default()),
            );
            match threads {
                Some(shared) => d.with_tasks(3).with_part_threads(shared),
                None => d,
            }
        };
        let shared = SharedPartThreads::default();
        for n in 0..3 {
            let mut alone = decoder(None);
            let mut sharing = decoder(Some(&shared));
            let input = file(n);
            assert_eq!(
                sharing.decode(&input).unwrap(),
                alone.decode(&input).unwrap()
            );
            assert_eq!(sharing.position(), alone.position());
        }
        assert!(
            crate::sync::lock(&shared.0).is_some(),
            "the threads were started"
        );
    }

    #[test]
    fn csv_fails_with_position_and_reason_under_fail() {
        let metrics = Arc::new(SourceMetrics::default());
        let mut d = RecordDecoder::new(
            "bids",
            schema(),
            Format::parse("csv", false, b',').unwrap(),
            ErrorPolicy::Fail,
            metrics,
        );
        d.decode(b"a,1\n").unwrap();
        let err = d.decode(b"b,2\nc,3,4\n").unwrap_err().to_string();
        assert!(
            err.starts_with("source 'bids': malformed record at line 3 (byte offset 8)"),
            "{err}"
        );
    }

    /// A JSON decoder that skips malformed records, and its metrics.
    fn skipping_json() -> (RecordDecoder, Arc<SourceMetrics>) {
        let metrics = Arc::new(SourceMetrics::default());
        let decoder = RecordDecoder::new(
            "s",
            schema(),
            Format::Json,
            ErrorPolicy::Skip,
            metrics.clone(),
        );
        (decoder, metrics)
    }

    #[test]
    fn a_json_line_of_two_objects_is_malformed_and_no_other_line_is_lost() {
        let (mut d, metrics) = skipping_json();
        let batch = d
            .decode(b"{\"n\":1}{\"n\":2}\n{\"n\":3}\n{\"name\":\"a\\u0041\",\"n\":4}\n")
            .unwrap();
        assert_eq!(column(&batch, 1), ["3", "4"]);
        let skipped = metrics.take_skipped().unwrap();
        assert_eq!(
            skipped.first,
            "line 1 (byte offset 0): more than one record on a line"
        );
    }

    #[test]
    fn a_json_integer_column_takes_only_integers_in_its_range() {
        // arrow-json alone made 1.5 a 1 and the first a i64::MIN, silently.
        let (mut d, metrics) = skipping_json();
        let batch = d
            .decode(
                b"{\"n\":1.5}\n{\"n\":9223372036854775807}\n{\"n\":-9223372036854775809}\n\
                  {\"n\":7}\n{\"n\":1e3}\n",
            )
            .unwrap();
        assert_eq!(column(&batch, 1), ["9223372036854775807", "7"]);
        let skipped = metrics.take_skipped().unwrap();
        assert_eq!(skipped.count, 3);
        assert_eq!(
            skipped.first,
            "line 1 (byte offset 0): 1.5 does not parse as n (Int64): an integer in its range"
        );
        let kind = Format::Json.malformed_kind("1.5 does not parse as n (Int64): an integer");
        assert_eq!(kind, MalformedKind::Value);
    }

    #[test]
    fn only_numbers_outside_strings_with_a_fraction_or_many_digits_are_inexact() {
        assert!(has_inexact_number(br#"{"n":1.5}"#));
        assert!(has_inexact_number(br#"{"n":1e3,"s":"x"}"#));
        assert!(has_inexact_number(br#"{"n":-9223372036854775809}"#));
        assert!(!has_inexact_number(br#"{"n":12,"b":true,"f":false}"#));
        assert!(!has_inexact_number(
            br#"{"s":"1.5 and 12345678901234567890","n":3}"#
        ));
        assert!(!has_inexact_number(br#"{"s":"a\"1.5","n":3}"#));
        assert!(number_after_key(br#"{"a":1, "ts" : -5}"#, br#""ts""#));
        assert!(!number_after_key(
            br#"{"ts":"2024-01-02T03:04:05","n":5}"#,
            br#""ts""#
        ));
    }

    #[test]
    fn a_json_number_is_not_a_timestamp() {
        // arrow-json read epoch milliseconds as microseconds, silently.
        let metrics = Arc::new(SourceMetrics::default());
        let timed = Arc::new(Schema::new(vec![Field::new(
            "ts",
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
            true,
        )]));
        let mut d =
            RecordDecoder::new("s", timed, Format::Json, ErrorPolicy::Skip, metrics.clone());
        let batch = d
            .decode(b"{\"ts\":1704164645000}\n{\"ts\":\"2024-01-02T03:04:05\"}\n")
            .unwrap();
        assert_eq!(column(&batch, 0), ["2024-01-02T03:04:05"]);
        let skipped = metrics.take_skipped().unwrap();
        assert!(skipped.first.starts_with("line 1 "), "{}", skipped.first);
        assert!(
            skipped.first.contains("write the time as text"),
            "{}",
            skipped.first
        );
    }

    #[test]
    fn json_decodes_and_reports_non_numbers() {
        let (mut d, metrics) = skipping_json();
        let batch = d
            .decode(b"{\"name\":\"a\",\"n\":1}\n\n{\"name\":\"b\",\"n\":\"x\"}\n{\"n\":3}\n")
            .unwrap();
        assert_eq!(column(&batch, 1), ["1", "3"]);
        assert!(metrics.take_skipped().unwrap().first.starts_with("line 3 "));
    }

    #[test]
    fn lines_keep_blank_lines_and_refuse_invalid_utf8() {
        let metrics = Arc::new(SourceMetrics::default());
        let lines = Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, true)]));
        let mut d = RecordDecoder::new(
            "s",
            lines,
            Format::Lines,
            ErrorPolicy::Skip,
            metrics.clone(),
        );
        let batch = d.decode(b"one\r\n\n\xff\xfe\nfour").unwrap();
        assert_eq!(column(&batch, 0), ["one", "", "four"]);
        assert_eq!(metrics.snapshot().malformed, 1);
    }

    #[test]
    fn a_byte_order_mark_opening_the_input_is_not_part_of_the_first_record() {
        let text = Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, true)]));
        let json = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        for (format, schema, input, first) in [
            (
                Format::Lines,
                text,
                &b"\xEF\xBB\xBFhello\nworld\n"[..],
                "hello",
            ),
            (
                Format::Json,
                json,
                &b"\xEF\xBB\xBF{\"a\":1}\n{\"a\":2}\n"[..],
                "1",
            ),
        ] {
            let metrics = Arc::new(SourceMetrics::default());
            let mut d = RecordDecoder::new("s", schema, format, ErrorPolicy::Fail, metrics);
            let batch = d.decode(input).unwrap();
            assert_eq!(batch.num_rows(), 2);
            let shown = arrow::util::display::array_value_to_string(batch.column(0), 0).unwrap();
            assert_eq!(shown, first);
            // Only at the start of the input.
            assert_eq!(d.position().byte, input.len() as u64);
        }
    }

    #[test]
    fn over_long_records_are_malformed() {
        let metrics = Arc::new(SourceMetrics::default());
        let lines = Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, true)]));
        let mut d = RecordDecoder::new(
            "s",
            lines,
            Format::Lines,
            ErrorPolicy::Skip,
            metrics.clone(),
        )
        .with_max_record_bytes(4);
        let batch = d.decode(b"abcd\nabcde\n").unwrap();
        assert_eq!(batch.num_rows(), 1);
        assert!(
            metrics
                .take_skipped()
                .unwrap()
                .first
                .contains("max.record.bytes = 4")
        );
    }
}
