//! The console: Spark Streaming's `print()`. Every batch prints a dashed
//! line, `Time: <epoch ms> ms`, a dashed line, then the batch's first rows
//! (10 by default) with `...` when there are more, then a blank line. An
//! empty batch prints its header too. The rows are a table by default, or
//! CSV (with a header line) or JSON (one object per line).
//!
//! A running query's console output can be held back or limited without
//! stopping the query ([`ConsoleControl`], the REPL's `\pause`, `\resume`
//! and `\limit`): while paused, batches run and are counted, not printed.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;

use crate::connector::Options;
use crate::error::{Error, Result};
use crate::sink::api::{Sink, SinkWriter};
use crate::sink::csv_text::write_csv;
use crate::sink::row_format::{RowFormat, encode};
use crate::sync::lock;
use crate::time::BatchTime;

/// How the rows under the header are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsoleFormat {
    /// An ASCII table.
    #[default]
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON object per row.
    Json,
}

impl ConsoleFormat {
    /// The format with this name.
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "table" => Ok(ConsoleFormat::Table),
            "csv" => Ok(ConsoleFormat::Csv),
            "json" | "ndjson" => Ok(ConsoleFormat::Json),
            other => Err(Error::Config(format!(
                "unknown console format '{other}'; valid formats: table, csv, json"
            ))),
        }
    }
}

/// Where console output goes: stdout, or a buffer (for tests).
#[derive(Debug, Clone, Default)]
pub enum ConsoleTarget {
    /// The process's standard output.
    #[default]
    Stdout,
    /// A shared buffer.
    Buffer(Arc<Mutex<Vec<u8>>>),
}

/// The console's settings.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// The body format.
    pub format: ConsoleFormat,
    /// Rows printed per batch before `...`.
    pub max_rows: usize,
    /// Where it goes.
    pub target: ConsoleTarget,
    /// Live control of every console sink made with these options (clones
    /// share it).
    pub control: ConsoleControl,
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        ConsoleOptions {
            format: ConsoleFormat::Table,
            max_rows: 10,
            target: ConsoleTarget::Stdout,
            control: ConsoleControl::default(),
        }
    }
}

/// Pauses, resumes and limits the output of running console queries
/// without stopping them. Clones share the same switches.
#[derive(Debug, Clone, Default)]
pub struct ConsoleControl {
    switches: Arc<Switches>,
}

#[derive(Debug, Default)]
struct Switches {
    paused: AtomicBool,
    held: AtomicU64,
    /// Rows per batch overriding the sinks' own; 0: their own.
    max_rows: AtomicUsize,
}

impl ConsoleControl {
    /// Stops printing: batches go on running, and are counted.
    pub fn pause(&self) {
        self.switches.paused.store(true, Ordering::SeqCst);
    }

    /// Prints again; how many batches were not printed while paused.
    pub fn resume(&self) -> u64 {
        self.switches.paused.store(false, Ordering::SeqCst);
        self.switches.held.swap(0, Ordering::SeqCst)
    }

    /// Whether output is paused.
    pub fn is_paused(&self) -> bool {
        self.switches.paused.load(Ordering::SeqCst)
    }

    /// Prints at most `rows` rows of each batch from now on (`None`: each
    /// sink's own limit again).
    pub fn limit(&self, rows: Option<usize>) {
        let rows = rows.map_or(0, |r| r.max(1));
        self.switches.max_rows.store(rows, Ordering::SeqCst);
    }

    /// The limit set by [`ConsoleControl::limit`], if any.
    pub fn max_rows(&self) -> Option<usize> {
        match self.switches.max_rows.load(Ordering::SeqCst) {
            0 => None,
            rows => Some(rows),
        }
    }

    /// Whether a batch is printed now; one that is not is counted.
    fn admit(&self) -> bool {
        if self.is_paused() {
            self.switches.held.fetch_add(1, Ordering::SeqCst);
            false
        } else {
            true
        }
    }
}

/// A batch's CSV or JSON rows are rendered and handed on this many at a
/// time, through one reused buffer, rather than as one text as large as
/// the batch (which, for a backlog's batch of a million rows, was a fresh
/// allocation of tens of MiB, grown by doubling, every batch).
const PIECE_ROWS: usize = 65_536;

/// Renders one batch as the console prints it.
pub fn render(
    time: BatchTime,
    batch: &RecordBatch,
    format: ConsoleFormat,
    max_rows: usize,
) -> Result<String> {
    let mut text = Vec::new();
    render_in_pieces(
        time,
        batch,
        format,
        max_rows,
        &mut Vec::new(),
        &mut |piece| {
            text.extend_from_slice(piece);
            Ok(())
        },
    )?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// [`render`]'s text as bytes, handed to `emit` in pieces, in order (the
/// pieces together are the batch's text), each rendered into `scratch`:
/// encoded rows are appended as they are, not checked again as UTF-8.
fn render_in_pieces(
    time: BatchTime,
    batch: &RecordBatch,
    format: ConsoleFormat,
    max_rows: usize,
    scratch: &mut Vec<u8>,
    emit: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    scratch.clear();
    scratch.extend_from_slice(b"-------------------------------------------\n");
    scratch.extend_from_slice(format!("Time: {time}\n").as_bytes());
    scratch.extend_from_slice(b"-------------------------------------------\n");
    if batch.num_rows() > 0 {
        let shown = batch.num_rows().min(max_rows);
        match format {
            ConsoleFormat::Table => {
                let table = arrow::util::pretty::pretty_format_batches(&[batch.slice(0, shown)])?
                    .to_string();
                scratch.extend_from_slice(table.as_bytes());
                scratch.push(b'\n');
            }
            ConsoleFormat::Csv | ConsoleFormat::Json => {
                let mut start = 0;
                loop {
                    let piece = batch.slice(start, PIECE_ROWS.min(shown - start));
                    if format == ConsoleFormat::Csv {
                        write_csv(&piece, start == 0, scratch)?;
                    } else {
                        scratch.extend_from_slice(&encode(&piece, RowFormat::Json)?);
                    }
                    start += piece.num_rows();
                    if start >= shown {
                        break;
                    }
                    emit(scratch)?;
                    scratch.clear();
                }
            }
        }
        if batch.num_rows() > max_rows {
            scratch.extend_from_slice(b"...\n");
        }
    }
    scratch.push(b'\n');
    emit(scratch)?;
    scratch.clear();
    Ok(())
}

/// Prints batches as Spark's `print()` does.
#[derive(Debug, Clone, Default)]
pub struct ConsoleSink {
    options: ConsoleOptions,
}

impl ConsoleSink {
    /// A console sink with these settings.
    pub fn new(options: ConsoleOptions) -> Self {
        ConsoleSink { options }
    }

    pub(crate) fn from_options(options: &mut Options, defaults: &ConsoleOptions) -> Result<Self> {
        let mut settings = defaults.clone();
        if let Some(format) = options.take(&["format"]) {
            settings.format = ConsoleFormat::parse(&format)?;
        }
        if let Some(max_rows) =
            options.take_parsed(&["max.rows", "max-rows"], "a number of rows")?
        {
            settings.max_rows = max_rows;
        }
        Ok(ConsoleSink::new(settings))
    }
}

impl Sink for ConsoleSink {
    fn connector(&self) -> &'static str {
        "console"
    }

    fn describe(&self) -> String {
        format!(
            "console, format {:?}, max {} rows",
            self.options.format, self.options.max_rows
        )
        .to_lowercase()
    }

    fn open(&self, _query: &str) -> Result<Box<dyn SinkWriter>> {
        Ok(Box::new(ConsoleWriter {
            options: self.options.clone(),
            scratch: Vec::new(),
        }))
    }
}

/// A query's console output: the settings, and the buffer its batches'
/// text is rendered into, piece by piece.
struct ConsoleWriter {
    options: ConsoleOptions,
    scratch: Vec<u8>,
}

impl SinkWriter for ConsoleWriter {
    /// Prints the batch; its pieces go out under one lock of stdout, so
    /// another query's batch never comes between them.
    fn write(&mut self, time: BatchTime, batch: &RecordBatch) -> Result<()> {
        let control = &self.options.control;
        if !control.admit() {
            return Ok(());
        }
        let max_rows = control.max_rows().unwrap_or(self.options.max_rows);
        let (format, scratch) = (self.options.format, &mut self.scratch);
        match &self.options.target {
            ConsoleTarget::Stdout => {
                let mut stdout = std::io::stdout().lock();
                render_in_pieces(time, batch, format, max_rows, scratch, &mut |piece| {
                    stdout
                        .write_all(piece)
                        .map_err(|e| Error::io("writing to stdout", e))
                })?;
                stdout
                    .flush()
                    .map_err(|e| Error::io("writing to stdout", e))
            }
            ConsoleTarget::Buffer(buffer) => {
                let mut buffer = lock(buffer);
                render_in_pieces(time, batch, format, max_rows, scratch, &mut |piece| {
                    buffer.extend_from_slice(piece);
                    Ok(())
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("word", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ]));
        let words: Vec<String> = (0..n).map(|i| format!("w{i}")).collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(words)),
                Arc::new(Int64Array::from((0..n).collect::<Vec<_>>())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_paused_console_counts_batches_and_a_limit_applies_at_once() {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let options = ConsoleOptions {
            format: ConsoleFormat::Csv,
            target: ConsoleTarget::Buffer(buffer.clone()),
            ..ConsoleOptions::default()
        };
        let control = options.control.clone();
        let mut sink = ConsoleSink::new(options).open("q").unwrap();
        control.pause();
        sink.write(BatchTime::from_millis(1000), &batch(3)).unwrap();
        sink.write(BatchTime::from_millis(2000), &batch(3)).unwrap();
        assert!(lock(&buffer).is_empty());
        assert_eq!(control.resume(), 2);
        control.limit(Some(1));
        sink.write(BatchTime::from_millis(3000), &batch(3)).unwrap();
        let text = String::from_utf8(lock(&buffer).clone()).unwrap();
        assert!(text.contains("Time: 3000 ms"), "{text}");
        assert!(text.ends_with("word,n\nw0,0\n...\n\n"), "{text}");
        assert_eq!(control.resume(), 0);
    }

    #[test]
    fn a_batch_rendered_in_many_pieces_prints_as_one_text() {
        let rows = batch(2 * PIECE_ROWS as i64 + 7);
        let time = BatchTime::from_millis(1000);
        let mut csv = Vec::new();
        write_csv(&rows, true, &mut csv).unwrap();
        let text = render(time, &rows, ConsoleFormat::Csv, usize::MAX).unwrap();
        assert!(text.ends_with(&format!("{}\n", String::from_utf8(csv).unwrap())));
        let json = String::from_utf8(encode(&rows, RowFormat::Json).unwrap()).unwrap();
        let text = render(time, &rows, ConsoleFormat::Json, usize::MAX).unwrap();
        assert!(text.ends_with(&format!("{json}\n")));
        let limited = render(time, &rows, ConsoleFormat::Csv, PIECE_ROWS + 3).unwrap();
        let lines: Vec<&str> = limited.lines().collect();
        // Three header lines, the CSV header, the rows, `...`, a blank line.
        assert_eq!(lines.len(), 3 + 1 + PIECE_ROWS + 3 + 2);
        assert_eq!(
            lines[4 + PIECE_ROWS + 2],
            format!("w{},{}", PIECE_ROWS + 2, PIECE_ROWS + 2)
        );
        assert_eq!(lines[lines.len() - 2], "...");
    }

    #[test]
    fn an_empty_batch_prints_its_header() {
        let text = render(
            BatchTime::from_millis(1357008430000),
            &batch(0),
            ConsoleFormat::Table,
            10,
        )
        .unwrap();
        assert_eq!(
            text,
            "-------------------------------------------\nTime: 1357008430000 ms\n-------------------------------------------\n\n"
        );
    }

    #[test]
    fn rows_beyond_the_limit_become_dots() {
        let text = render(
            BatchTime::from_millis(1000),
            &batch(3),
            ConsoleFormat::Csv,
            2,
        )
        .unwrap();
        assert!(text.ends_with("word,n\nw0,0\nw1,1\n...\n\n"), "{text}");
        let text = render(
            BatchTime::from_millis(1000),
            &batch(2),
            ConsoleFormat::Json,
            10,
        )
        .unwrap();
        assert!(
            text.ends_with("{\"word\":\"w0\",\"n\":0}\n{\"word\":\"w1\",\"n\":1}\n\n"),
            "{text}"
        );
        let text = render(
            BatchTime::from_millis(1000),
            &batch(1),
            ConsoleFormat::Table,
            10,
        )
        .unwrap();
        assert!(text.contains("| w0   | 0 |"), "{text}");
    }
}
