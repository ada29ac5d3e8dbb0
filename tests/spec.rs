//! The spec-file format and its runner (the `specs` test binary, in
//! `tests/specs.rs`, makes one test case of each file). A spec file reads
//! like a specification:
//!
//! ```text
//! # comment
//! SET batch.interval = '1 second';
//! CREATE SOURCE lines (line TEXT) WITH (connector = 'memory');
//! SELECT line FROM lines WHERE line LIKE '%error%';
//!
//! == batch 1
//! > lines
//! no trouble
//! an error here
//! <
//! an error here
//! == batch 2
//! <
//! ```
//!
//! The statements before the first `==` run in order; the last one is the
//! query under test. Then, for batch `k` (time `k·I` on a manual clock
//! starting at 0): `> source` queues the raw records that follow into that
//! memory source (in its format); `end source` ends its input; the clock
//! advances to the batch's time and the runner checks what the query did:
//! `<` (rows as CSV, compared as a multiset) or `<ordered` (in order) gives
//! the exact output, and a batch without `<` must output no rows; `< none`
//! says the query must emit nothing at all at this batch; `>> name` writes
//! the lines that follow into file `name` of the spec's own folder before
//! the batch runs (or, before the first batch, before the statements run;
//! the statements name that folder `${DIR}`), as a writer replacing a
//! file would; `! text` says the
//! query fails with an error containing `text`; `malformed source n` checks
//! a source's malformed-record count, `late source n` its count of rows
//! dropped behind the watermark; `finished` says the query has ended.
//!
//! [`holds`] runs a spec batch by batch and checks each batch;
//! [`survives_every_restart`] checks that a restart from the checkpoint
//! after any batch emits what the uninterrupted run emits.

use std::path::Path;
use std::time::Duration;

use brooklet::prelude::*;
use brooklet::{BatchStream, QueryStatus};
use futures::{FutureExt, StreamExt};

use crate::support::{csv_rows, manual_context};

#[derive(Debug, Default)]
struct Batch {
    number: i64,
    inputs: Vec<(String, String)>,
    files: Vec<(String, String)>,
    ends: Vec<String>,
    expected: Option<Expected>,
    error: Option<String>,
    malformed: Vec<(String, u64)>,
    late: Vec<(String, u64)>,
    finished: bool,
}

#[derive(Debug)]
enum Expected {
    Rows { rows: Vec<String>, ordered: bool },
    Nothing,
}

/// A parsed spec file.
pub struct Spec {
    /// What failures name: the file's path under `tests/specs/`.
    name: String,
    statements: String,
    /// Files written before the statements run.
    files: Vec<(String, String)>,
    batches: Vec<Batch>,
}

impl Spec {
    /// Reads and parses the spec file at `path`, naming it `name`.
    pub fn read(path: &Path, name: &str) -> Spec {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{name}: cannot read {}: {e}", path.display()));
        parse(name, &text)
    }
}

fn parse(name: &str, text: &str) -> Spec {
    let mut statements = String::new();
    let mut files: Vec<(String, String)> = Vec::new();
    let mut batches: Vec<Batch> = Vec::new();
    // Where following plain lines go: an input of a source, a file, or the
    // expected rows.
    enum Into {
        Statements,
        Input,
        File,
        Expected,
        Nothing,
    }
    let mut into = Into::Statements;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(file) = line.strip_prefix(">> ") {
            let file = (file.trim().to_string(), String::new());
            match batches.last_mut() {
                Some(batch) => batch.files.push(file),
                None => files.push(file),
            }
            into = Into::File;
            continue;
        }
        if let (Into::File, None) = (&into, batches.last()) {
            if line.trim().is_empty() {
                into = Into::Statements;
            } else {
                let file = &mut files.last_mut().expect("a file").1;
                file.push_str(line);
                file.push('\n');
                continue;
            }
        }
        if let Some(rest) = line.strip_prefix("== batch ") {
            batches.push(Batch {
                number: rest
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: not a batch number: {line}")),
                ..Batch::default()
            });
            into = Into::Nothing;
            continue;
        }
        let Some(batch) = batches.last_mut() else {
            statements.push_str(line);
            statements.push('\n');
            continue;
        };
        if let Some(source) = line.strip_prefix("> ") {
            batch
                .inputs
                .push((source.trim().to_string(), String::new()));
            into = Into::Input;
        } else if let Some(source) = line.strip_prefix("end ") {
            batch.ends.push(source.trim().to_string());
        } else if line.trim() == "< none" {
            batch.expected = Some(Expected::Nothing);
            into = Into::Nothing;
        } else if line.trim() == "<" || line.trim() == "<ordered" {
            batch.expected = Some(Expected::Rows {
                rows: Vec::new(),
                ordered: line.trim() == "<ordered",
            });
            into = Into::Expected;
        } else if let Some(error) = line.strip_prefix("! ") {
            batch.error = Some(error.trim().to_string());
        } else if let Some((kind, rest)) = line
            .strip_prefix("malformed ")
            .map(|r| ("malformed", r))
            .or_else(|| {
                // `late <source> <count>` (a data line may start with "late").
                let rest = line.strip_prefix("late ")?;
                let (_, n) = rest.trim().split_once(' ')?;
                n.trim().parse::<u64>().ok().map(|_| ("late", rest))
            })
        {
            let (source, n) = rest
                .trim()
                .split_once(' ')
                .unwrap_or_else(|| panic!("{name}: <malformed|late> <source> <count>: {line}"));
            let counts = if kind == "late" {
                &mut batch.late
            } else {
                &mut batch.malformed
            };
            let n = n
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}: not a count: {line}"));
            counts.push((source.to_string(), n));
        } else if line.trim() == "finished" {
            batch.finished = true;
        } else {
            match into {
                Into::Input => {
                    let input = &mut batch.inputs.last_mut().expect("an input").1;
                    input.push_str(line);
                    input.push('\n');
                }
                Into::File => {
                    let file = &mut batch.files.last_mut().expect("a file").1;
                    file.push_str(line);
                    file.push('\n');
                }
                Into::Expected => {
                    if let Some(Expected::Rows { rows, .. }) = &mut batch.expected
                        && !line.trim().is_empty()
                    {
                        rows.push(line.to_string());
                    }
                }
                Into::Statements | Into::Nothing => {
                    assert!(
                        line.trim().is_empty(),
                        "{name}: unexpected line in batch {}: {line}",
                        batch.number
                    )
                }
            }
        }
    }
    Spec {
        name: name.to_string(),
        statements,
        files,
        batches,
    }
}

/// Writes `files` into `dir`, each with a modification time of its own
/// (`stamp` seconds after the epoch), as a writer renaming a finished file
/// in would.
fn write_files(dir: &Path, files: &[(String, String)], stamp: i64) {
    for (name, text) in files {
        let path = dir.join(name);
        let hidden = dir.join(format!(".{name}.part"));
        std::fs::write(&hidden, text).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&hidden)
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_000 + stamp as u64))
            .unwrap();
        std::fs::rename(&hidden, path).unwrap();
    }
}

impl Spec {
    /// The statements, with `${DIR}` naming `dir`, where the files go.
    fn statements_in(&self, dir: &Path) -> Vec<brooklet::sql::parser::ParsedStatement> {
        write_files(dir, &self.files, 0);
        let text = self
            .statements
            .replace("${DIR}", &dir.display().to_string());
        brooklet::sql::parse_statements(&text).unwrap()
    }
}

/// A query's outputs, read batch by batch. The batches that run at once
/// at the end of input (to emit the windows still open) may already be in
/// the channel when an earlier batch is asked for: an output of a later
/// batch is held back until its batch is asked for.
struct Outputs {
    stream: BatchStream,
    ahead: Option<(BatchTime, RecordBatch)>,
}

impl Outputs {
    fn new(stream: BatchStream) -> Self {
        Outputs {
            stream,
            ahead: None,
        }
    }

    fn handle(&self) -> &QueryHandle {
        self.stream.handle()
    }

    /// The output of the query for batch `time`, or `None` if the batch ran
    /// without output.
    async fn next(
        &mut self,
        time: BatchTime,
    ) -> Option<brooklet::engine::Result<(BatchTime, RecordBatch)>> {
        if let Some((t, _)) = &self.ahead {
            return if *t == time {
                self.ahead.take().map(Ok)
            } else {
                None
            };
        }
        let handle = self.stream.handle().clone();
        let stream = &mut self.stream;
        let output = async {
            tokio::select! {
                biased;
                item = stream.next() => item,
                // The batch ran: anything it sent is in the channel already.
                _ = handle.await_batch(time) => stream.next().now_or_never().flatten(),
            }
        };
        let output = tokio::time::timeout(Duration::from_secs(20), output)
            .await
            .unwrap_or_else(|_| panic!("batch {time} never ran"));
        match output {
            Some(Ok((t, batch))) if t > time => {
                self.ahead = Some((t, batch));
                None
            }
            other => other,
        }
    }
}

/// Runs `spec` batch by batch on a manual clock and checks what each batch
/// did; panics naming the spec and the batch at the first difference.
pub async fn holds(spec: &Spec) {
    let name = &spec.name;
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    let files = tempfile::tempdir().unwrap();
    let statements = spec.statements_in(files.path());
    let (query, setup) = statements.split_last().expect("a spec needs a query");
    for statement in setup {
        ctx.execute(&statement.text)
            .await
            .unwrap_or_else(|e| panic!("{name}: {}: {e}", statement.text));
    }
    let mut stream = Outputs::new(
        ctx.sql(&query.text)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .into_stream()
            .unwrap(),
    );
    ctx.start().await.unwrap();
    let interval = ctx.batch_interval();
    let mut previous = 0;
    for batch in &spec.batches {
        assert_eq!(
            batch.number,
            previous + 1,
            "{name}: batches are numbered 1, 2, …"
        );
        previous = batch.number;
        write_files(files.path(), &batch.files, batch.number);
        for (source, records) in &batch.inputs {
            ctx.memory_source(source).unwrap().push_records(records);
        }
        for source in &batch.ends {
            ctx.memory_source(source).unwrap().finish();
        }
        let time = BatchTime::from_millis(batch.number * interval.as_millis() as i64);
        clock.set(time.millis());
        let output = stream.next(time).await;
        let at = format!("{name}, batch {} ({time})", batch.number);
        match (&batch.error, output) {
            (Some(expected), Some(Err(e))) => {
                assert!(
                    e.to_string().contains(expected),
                    "{at}: error '{e}' does not contain '{expected}'"
                )
            }
            (Some(expected), other) => panic!("{at}: expected error '{expected}', got {other:?}"),
            (None, Some(Err(e))) => panic!("{at}: unexpected error: {e}"),
            (None, None) => assert!(
                matches!(batch.expected, Some(Expected::Nothing)),
                "{at}: the query emitted nothing"
            ),
            (None, Some(Ok((t, out)))) => {
                assert_eq!(t, time, "{at}: output carries the wrong batch time");
                let mut rows = csv_rows(&out);
                match &batch.expected {
                    Some(Expected::Nothing) => panic!("{at}: expected no output, got {rows:?}"),
                    None => assert!(
                        rows.is_empty(),
                        "{at}: expected an empty batch, got {rows:?}"
                    ),
                    Some(Expected::Rows {
                        rows: expected,
                        ordered,
                    }) => {
                        let mut expected = expected.clone();
                        if !ordered {
                            rows.sort();
                            expected.sort();
                        }
                        assert_eq!(rows, expected, "{at}: wrong rows");
                    }
                }
            }
        }
        let counts = batch.malformed.iter().map(|c| ("malformed", c));
        for (kind, (source, count)) in counts.chain(batch.late.iter().map(|c| ("late", c))) {
            let info = ctx
                .engine()
                .sources()
                .into_iter()
                .find(|s| &s.name == source)
                .expect("source");
            let actual = if kind == "late" {
                info.metrics.late
            } else {
                info.metrics.malformed
            };
            assert_eq!(actual, *count, "{at}: {kind} records of '{source}'");
        }
        if batch.finished {
            stream.handle().await_termination().await.unwrap();
            assert!(
                matches!(stream.handle().status(), QueryStatus::Finished),
                "{at}: not finished"
            );
        }
    }
}

/// What a run of batches emitted: per batch, its rows (sorted), `None` when
/// it emitted nothing, or the error.
type Emitted = Vec<(i64, Result<Option<Vec<String>>, String>)>;

/// Runs batches `from..=to` of `spec` on a fresh context that checkpoints
/// into `dir` (restoring what an earlier run left there), with the clock
/// at the batch before `from`, its keyed operators as `parallelism` tasks.
/// Stops at the end of the query.
async fn run_range(spec: &Spec, dir: &Path, from: usize, to: usize, parallelism: usize) -> Emitted {
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    ctx.execute(&format!("SET parallelism = {parallelism}"))
        .await
        .unwrap();
    ctx.execute(&format!("SET checkpoint.dir = '{}'", dir.display()))
        .await
        .unwrap();
    // Incremental state saves, and a full one every third: restarts read
    // chains of changes and full saves alike.
    ctx.execute("SET checkpoint.full_every = 3").await.unwrap();
    // The files as they were when batch `from` starts.
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let statements = spec.statements_in(&files);
    for batch in &spec.batches[..from - 1] {
        write_files(&files, &batch.files, batch.number);
    }
    let (query, setup) = statements.split_last().expect("a query");
    for statement in setup {
        ctx.execute(&statement.text).await.unwrap();
    }
    let mut stream = Outputs::new(ctx.sql(&query.text).await.unwrap().into_stream().unwrap());
    let interval = ctx.batch_interval().as_millis() as i64;
    clock.set((from as i64 - 1) * interval);
    ctx.start().await.unwrap();
    let mut emitted = Vec::new();
    for batch in &spec.batches[from - 1..to] {
        write_files(&files, &batch.files, batch.number);
        for (source, records) in &batch.inputs {
            ctx.memory_source(source).unwrap().push_records(records);
        }
        for source in &batch.ends {
            ctx.memory_source(source).unwrap().finish();
        }
        let time = BatchTime::from_millis(batch.number * interval);
        clock.set(time.millis());
        let output = match stream.next(time).await {
            None => Ok(None),
            Some(Ok((_, rows))) => {
                let mut rows = csv_rows(&rows);
                rows.sort();
                Ok(Some(rows))
            }
            Some(Err(e)) => Err(e.to_string()),
        };
        // Batches after the end of input may already have run (the windows
        // still open are emitted at once); the spec says where it finishes.
        let ended = output.is_err() || batch.finished;
        emitted.push((time.millis(), output));
        if ended {
            break;
        }
    }
    ctx.stop(StopMode::Immediate).await.unwrap();
    emitted
}

/// Spark's CheckpointSuite: for every batch `k` of a stateful spec
/// (windows, running aggregates, event time), running batches `1..=k`,
/// dropping the context, and finishing from the checkpoint directory alone
/// emits batch for batch what the uninterrupted run emits. State is saved
/// every batch, incrementally, whole every third save (`run_range`).
///
/// The uninterrupted run has one task per operator; the restarted runs
/// split keyed operators into tasks, and restore at another parallelism
/// than the one that saved the state (Flink's rescaling from a savepoint):
/// 2 then 1, 1 then 3, 3 then 2, in turn.
pub async fn survives_every_restart(spec: &Spec) {
    const PARALLELISMS: [(usize, usize); 3] = [(2, 1), (1, 3), (3, 2)];
    let n = spec.batches.len();
    let whole_dir = tempfile::tempdir().unwrap();
    let whole = run_range(spec, whole_dir.path(), 1, n, 1).await;
    // A restart point after the end of input means nothing here: a memory
    // source starts anew in the restarted context, unended (and the batches
    // after the end already ran, at once, in the first run).
    let restart_points = spec
        .batches
        .iter()
        .position(|b| !b.ends.is_empty())
        .map_or(whole.len(), |end| end + 1)
        .min(whole.len());
    for k in 1..restart_points {
        let checkpoint = tempfile::tempdir().unwrap();
        let (before, after) = PARALLELISMS[k % PARALLELISMS.len()];
        let mut restarted = run_range(spec, checkpoint.path(), 1, k, before).await;
        restarted.extend(run_range(spec, checkpoint.path(), k + 1, n, after).await);
        assert_eq!(
            restarted, whole,
            "{}: restarted after batch {k} (parallelism {before}, then {after})",
            spec.name
        );
    }
}
