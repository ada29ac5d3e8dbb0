//! Event-time windows: tumbling, sliding and session windows over a time
//! column, closed by the watermark (Flink's window aggregates, Spark's
//! `withWatermark` + `window`/`session_window` in append mode).
//!
//! Batch times still drive *when* things are emitted; event time decides
//! *what* belongs to which window. At every batch:
//!
//! 1. each row goes to its windows by event time: the fixed windows
//!    `[k·slide, k·slide + length)` (aligned to the epoch) that contain it,
//!    or, per key, the session it starts, extends or bridges (sessions
//!    `[first event, last event + gap)` that overlap or touch are merged, as
//!    in Flink and Spark);
//! 2. a window whose end the watermark has already reached is *closed*: a
//!    row whose every window is closed is **late** — dropped and counted
//!    (as is a row with a NULL event time, or one outside ±2^52 ms, which
//!    belongs to no window);
//! 3. the watermark advances (`watermark.rs`), and every window whose
//!    end it reaches is emitted once, complete, with `window_start` and
//!    `window_end`, ordered by end, start, then key; its state is freed.
//!
//! With [`WindowEmit::Changes`] every batch also emits the current values of
//! the open windows that got rows in it, and the final value when they
//! close; a trailing `is_final` column tells which is which (`false`: an
//! update that a later row of the same window replaces; `true`: the
//! window's last row). Without it each window's row is final when emitted.
//!
//! State is partial aggregates (DataFusion accumulators), never raw rows:
//!
//! - fixed windows are cut into panes of `gcd(length, slide)` aligned to the
//!   epoch; a row is folded into its pane's accumulators (one per key the
//!   pane has seen). A sliding window emitted on close seals its panes
//!   into two stacks when it closes, so it costs a constant number of
//!   merges whatever `length / slide` (with `EMIT CHANGES`, it merges its
//!   panes). A pane is freed when the last window containing it has
//!   closed. A tumbling window is one pane, evaluated directly;
//! - sessions keep, per open session, its partial states by session id in
//!   levels merged as a log-structured merge, so a batch touches only the
//!   sessions its rows reach and those that close (`sessions.rs`).
//!
//! Which windows a row belongs to, and what an open window keeps, is a
//! [`WindowAssigner`]: fixed windows (`fixed.rs`) or sessions
//! (`sessions.rs`); this file holds what they share: the operator, the
//! watermark it follows, late rows and the output.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, TimestampMillisecondArray, UInt32Array,
};
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::logical_expr::LogicalPlan;

use crate::checkpoint::{StateReader, StateWriter};
use crate::error::{Error, Result};
use crate::explain::OperatorDescription;
use crate::operator::{BatchContext, CompileContext, KeyedBy, LateRows, Operator, OperatorDef};
use crate::operators::aggregate::{Aggregation, KeyIndex, Partial, Rows, Slices};
use crate::operators::window::WindowSpec;
use crate::time::{BatchTime, format_duration};
use crate::watermark::{WatermarkTracker, event_millis, in_time_range};

mod emitted;
mod fixed;
mod sessions;

use emitted::Emitted;
use fixed::{FixedWindows, PaneFolder, Shape};
use sessions::Sessions;

/// Which windows an event-time row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assigner {
    /// Windows `[k·slide, k·slide + length)` aligned to the epoch (tumbling
    /// when the slide is the length).
    Fixed(WindowSpec),
    /// Flink's cumulating windows: every `length` (aligned to the epoch) a
    /// period starts, and windows `[period, period + j·slide)` for `j = 1
    /// … length / slide` grow by `slide` until the last covers the period
    /// (`CUMULATE(…, step, size)`: `slide` is the step, `length` the size).
    Cumulate(WindowSpec),
    /// Per key, rows closer than `gap` to each other share a session
    /// `[first event, last event + gap)`.
    Session {
        /// How long a key may be silent before its session ends.
        gap: Duration,
    },
}

/// What an event-time window emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowEmit {
    /// One final row per window and key, at the first batch whose
    /// watermark passes the window's end (Flink's and Spark's append mode).
    OnClose,
    /// Also, every batch, the current values of the open windows that got
    /// rows in it: an updating stream with a trailing `is_final` column.
    Changes,
}

/// An event-time window aggregate: the time column of its input, its
/// windows and what it emits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventWindow {
    /// The input column holding each row's event time (a timestamp, or
    /// milliseconds since the epoch). Every source the window reads must
    /// declare a watermark on it.
    pub time_column: String,
    /// Which windows a row belongs to.
    pub assigner: Assigner,
    /// What the window emits.
    pub emit: WindowEmit,
}

impl EventWindow {
    /// Fixed (tumbling or sliding) windows over `time_column`.
    pub fn fixed(time_column: &str, spec: WindowSpec) -> Self {
        EventWindow {
            time_column: time_column.to_string(),
            assigner: Assigner::Fixed(spec),
            emit: WindowEmit::OnClose,
        }
    }

    /// Cumulating windows over `time_column`: growing by `step` up to
    /// `size` (see [`Assigner::Cumulate`]).
    pub fn cumulate(time_column: &str, step: Duration, size: Duration) -> Self {
        EventWindow {
            time_column: time_column.to_string(),
            assigner: Assigner::Cumulate(WindowSpec::sliding(size, step)),
            emit: WindowEmit::OnClose,
        }
    }

    /// Session windows over `time_column` that end after `gap` of silence.
    pub fn session(time_column: &str, gap: Duration) -> Self {
        EventWindow {
            time_column: time_column.to_string(),
            assigner: Assigner::Session { gap },
            emit: WindowEmit::OnClose,
        }
    }

    /// The same windows, emitting as `emit` says.
    pub fn with_emit(self, emit: WindowEmit) -> Self {
        EventWindow { emit, ..self }
    }

    /// Checks the sizes, with errors that name the values.
    pub fn validate(&self) -> Result<()> {
        // Far beyond any real window; keeps window arithmetic in range.
        const LONGEST: Duration = Duration::from_secs(100 * 365 * 86_400);
        let longest = match self.assigner {
            Assigner::Fixed(spec) | Assigner::Cumulate(spec) => spec.length.max(spec.slide),
            Assigner::Session { gap } => gap,
        };
        if longest > LONGEST {
            return Err(Error::Plan(format!(
                "window size {} is longer than 100 years",
                format_duration(longest)
            )));
        }
        match self.assigner {
            Assigner::Fixed(spec) => spec.validate_event_time(),
            Assigner::Cumulate(spec) => spec.validate_event_time().map_err(|_| {
                Error::Plan(format!(
                    "CUMULATE needs a positive step and a size that is a multiple of it, \
                     got step {} and size {}",
                    format_duration(spec.slide),
                    format_duration(spec.length)
                ))
            }),
            Assigner::Session { gap } if gap.is_zero() => Err(Error::Plan(
                "a session gap must be positive, got 0 ms".into(),
            )),
            Assigner::Session { .. } => Ok(()),
        }
    }
}

/// The output schema of an event-time window aggregate: `window_start`,
/// `window_end`, the aggregate's columns (keys, then values), then
/// `is_final` when the window emits changes. `aggregate` is the plan's
/// schema, whose first column is the time key.
pub(crate) fn output_schema(aggregate: &Schema, emit: WindowEmit) -> SchemaRef {
    let without_time = Schema::new(
        aggregate
            .fields()
            .iter()
            .skip(1)
            .cloned()
            .collect::<Vec<_>>(),
    );
    let with_bounds = crate::operators::window::output_schema(&without_time);
    let mut fields = with_bounds.fields().to_vec();
    if emit == WindowEmit::Changes {
        fields.push(Arc::new(Field::new(IS_FINAL, DataType::Boolean, false)));
    }
    Arc::new(Schema::new(fields))
}

/// The column that tells an update from a window's final row.
pub const IS_FINAL: &str = "is_final";

/// Late rows of one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Late {
    /// How many rows were dropped.
    pub(crate) rows: u64,
    /// The most any of them was behind the watermark, in milliseconds.
    pub(crate) max_behind: i64,
}

impl Late {
    /// Counts `other`'s rows too.
    fn absorb(&mut self, other: Late) {
        self.rows += other.rows;
        self.max_behind = self.max_behind.max(other.max_behind);
    }

    pub(super) fn add(&mut self, watermark: i64, time: Option<i64>) {
        self.rows += 1;
        if let Some(t) = time {
            self.max_behind = self.max_behind.max(watermark.saturating_sub(t));
        }
    }
}

/// The event times of `rows` in milliseconds; a time out of range belongs
/// to no window, and is NULL here (dropped as late, like a NULL).
fn arrival_times(rows: &Rows) -> Result<TimestampMillisecondArray> {
    let times = rows
        .times()
        .ok_or_else(|| Error::Internal("an event-time window without times".into()))?;
    let times = event_millis(times)?;
    let out_of_range = |t: Option<i64>| t.is_some_and(|t| !in_time_range(t));
    if out_of_range(arrow::compute::min(&times)) || out_of_range(arrow::compute::max(&times)) {
        return Ok(times
            .iter()
            .map(|t| t.filter(|&t| in_time_range(t)))
            .collect());
    }
    Ok(times)
}

/// The rows of one batch on their way into windows: their groups, event
/// times, the watermark they are judged against, and the late ones.
pub(super) struct Arrivals<'a> {
    /// The rows, with their key (group index).
    pub(super) rows: &'a Rows,
    times: &'a TimestampMillisecondArray,
    /// Rows whose windows all end at or before it are late.
    pub(super) watermark: i64,
    /// The late rows so far.
    pub(super) late: Late,
}

impl<'a> Arrivals<'a> {
    /// `rows` of event times `times`, judged against `watermark`.
    fn new(rows: &'a Rows, times: &'a TimestampMillisecondArray, watermark: i64) -> Self {
        Arrivals {
            rows,
            times,
            watermark,
            late: Late::default(),
        }
    }

    /// The rows that have an event time, as `(row, time)`; a row without
    /// one belongs to no window and is counted late.
    pub(super) fn timed(&mut self) -> impl Iterator<Item = (u32, i64)> + use<'a> {
        self.late.rows += self.times.null_count() as u64;
        let times = self.times;
        let values = times.values().iter().enumerate();
        values
            .filter(move |(row, _)| times.is_valid(*row))
            .map(|(row, &t)| (row as u32, t))
    }

    /// Counts a row of event time `t` late.
    pub(super) fn late(&mut self, t: i64) {
        self.late.add(self.watermark, Some(t));
    }
}

/// How rows are assigned to event-time windows and what the open windows
/// keep: [`FixedWindows`] or [`Sessions`].
pub(super) trait WindowAssigner: Send + 'static {
    /// Assigns the rows to their windows and folds them in; rows whose
    /// every window has closed are counted late. Remembers which open
    /// windows got rows, for `emit`.
    fn add(&mut self, aggregation: &Aggregation, rows: &mut Arrivals<'_>) -> Result<()>;

    /// Emits the windows that close at `out.watermark` (and, with
    /// `out.changes`, the open ones that got rows since the last `emit`)
    /// into `out`, and frees what closed.
    fn emit(&mut self, aggregation: &Aggregation, out: &mut Emitted) -> Result<()>;

    /// Which of `keys` keys an open window still has.
    fn live_keys(&self, keys: usize) -> Vec<bool>;

    /// Renumbers keys after the index kept only `live` (ascending).
    fn renumber(&mut self, live: &UInt32Array) -> Result<()>;

    /// Bytes of state held.
    fn bytes(&self) -> usize;

    /// Saves the open windows.
    fn save(&mut self, aggregation: &Aggregation, state: &mut StateWriter) -> Result<()>;

    /// Restores what `save` saved, for an index of `keys` keys.
    fn load(&mut self, aggregation: &Aggregation, state: &StateReader, keys: usize) -> Result<()>;

    /// For a global aggregate folded in slices (`aggregate/sliced.rs`):
    /// what folds one slice's rows into partial states by pane, holding
    /// nothing; `None` when these windows cannot take a batch in parts.
    fn pane_folder(&self) -> Option<PaneFolder> {
        None
    }

    /// Adds what a [`PaneFolder`] made of a batch's slices, in slice
    /// order (partial states by pane start, groups numbered by key), as
    /// [`WindowAssigner::add`] adds the batch's rows.
    fn add_panes(&mut self, _aggregation: &Aggregation, _panes: Vec<(i64, Partial)>) -> Result<()> {
        Err(Error::Internal(
            "these windows do not take partial states by pane".into(),
        ))
    }
}

/// An event-time window aggregate of one input stream: `plan` is the
/// aggregate over a scan of the input, grouped first by the time column.
#[derive(Debug)]
pub(crate) struct EventWindowAggregate {
    /// The aggregate over a scan of the input.
    pub(crate) plan: LogicalPlan,
    /// Its windows.
    pub(crate) window: EventWindow,
}

#[async_trait]
impl OperatorDef for EventWindowAggregate {
    fn describe(&self) -> OperatorDescription {
        let (windows, state) = match &self.window.assigner {
            Assigner::Fixed(spec) => (
                spec.describe(),
                "keys × windows the watermark has not closed",
            ),
            Assigner::Cumulate(spec) => (
                format!(
                    "cumulating windows growing by {} up to {}",
                    format_duration(spec.slide),
                    format_duration(spec.length)
                ),
                "keys × steps of the periods the watermark has not closed",
            ),
            Assigner::Session { gap } => (
                format!("sessions with a gap of {}", format_duration(*gap)),
                "open sessions",
            ),
        };
        let emit = match self.window.emit {
            WindowEmit::OnClose => "emits each window once, when the watermark passes its end",
            WindowEmit::Changes => "emits changes of open windows, and each window when it closes",
        };
        OperatorDescription::stateful("event-time window aggregate", state)
            .detail(format!(
                "{windows}, on event time {}",
                self.window.time_column
            ))
            .detail(emit)
            .plan(&self.plan)
    }

    async fn compile(&self, at: &CompileContext<'_>) -> Result<Box<dyn Operator>> {
        let sources = at
            .sources
            .iter()
            .map(|name| {
                let watermark = at.watermarks.get(name).cloned().ok_or_else(|| {
                    Error::Plan(format!(
                        "source '{name}' has no watermark, which an event-time window needs"
                    ))
                })?;
                Ok((name.clone(), watermark))
            })
            .collect::<Result<Vec<_>>>()?;
        let clock = WatermarkTracker::new(sources, at.idle_timeout, at.start);
        let aggregation = Aggregation::compile(at.session, &self.plan, true).await?;
        let schema = at.schema.clone();
        let emit = self.window.emit;
        Ok(match self.window.assigner {
            Assigner::Fixed(spec) | Assigner::Cumulate(spec) => {
                let shape = match self.window.assigner {
                    Assigner::Cumulate(_) => Shape::Cumulative,
                    _ => Shape::Fixed,
                };
                Box::new(EventWindowOperator::new(
                    aggregation,
                    schema,
                    emit,
                    clock,
                    FixedWindows::new(spec, shape, emit),
                    at.parallelism,
                )?)
            }
            Assigner::Session { gap } => Box::new(EventWindowOperator::new(
                aggregation,
                schema,
                emit,
                clock,
                Sessions::new(gap),
                at.parallelism,
            )?),
        })
    }
}

/// The operator: windows of `A`, closed by the watermark of `clock`.
struct EventWindowOperator<A> {
    aggregation: Aggregation,
    /// A global aggregate's copies that fold a batch in slices at once,
    /// when its windows take a batch in parts ([`WindowAssigner::pane_folder`]).
    slices: Option<Slices>,
    schema: SchemaRef,
    emit: WindowEmit,
    index: KeyIndex,
    clock: WatermarkTracker,
    windows: A,
    /// The index size at which to look for keys no open window has.
    next_key_check: usize,
}

impl<A: WindowAssigner> EventWindowOperator<A> {
    fn new(
        aggregation: Aggregation,
        schema: SchemaRef,
        emit: WindowEmit,
        clock: WatermarkTracker,
        windows: A,
        parallelism: usize,
    ) -> Result<Self> {
        let slices = match windows.pane_folder() {
            Some(_) => Slices::of(&aggregation, parallelism)?,
            None => None,
        };
        Ok(EventWindowOperator {
            slices,
            index: aggregation.key_index()?,
            aggregation,
            schema,
            emit,
            clock,
            windows,
            next_key_check: 0,
        })
    }

    /// Takes one batch, judged against the watermark `before`; emits the
    /// windows that close at `after`.
    async fn run(
        &mut self,
        batch: &BatchContext<'_>,
        before: i64,
        after: i64,
    ) -> Result<(RecordBatch, Late)> {
        let late = match (&self.slices, self.windows.pane_folder()) {
            (Some(slices), Some(folder)) => {
                let input = batch.input_of(slices.node());
                let parts = slices
                    .fold(input, move |aggregation, rows| {
                        let times = arrival_times(&rows)?;
                        let mut arrivals = Arrivals::new(&rows, &times, before);
                        let panes = folder.fold(aggregation, &mut arrivals)?;
                        Ok((panes, arrivals.late))
                    })
                    .await?;
                let mut late = Late::default();
                let mut panes = Vec::new();
                for (slice_panes, slice_late) in parts {
                    late.absorb(slice_late);
                    panes.extend(slice_panes);
                }
                self.windows.add_panes(&self.aggregation, panes)?;
                late
            }
            _ => {
                let rows = self
                    .aggregation
                    .rows(&mut self.index, |id| batch.input_of(id))
                    .await?;
                let times = arrival_times(&rows)?;
                let mut arrivals = Arrivals::new(&rows, &times, before);
                self.windows.add(&self.aggregation, &mut arrivals)?;
                arrivals.late
            }
        };
        let mut out = Emitted::new(after, self.emit == WindowEmit::Changes);
        self.windows.emit(&self.aggregation, &mut out)?;
        let output = self.output(out)?;
        // Keys no open window has are dropped when they are most keys;
        // looked for only when the index has doubled since the last look,
        // so the look costs a constant per key, not every open window's
        // keys every batch.
        if self.index.len() >= self.next_key_check {
            let live = self.windows.live_keys(self.index.len());
            if let Some(live) = self.index.compact_if_sparse(&live)? {
                self.windows.renumber(&live)?;
            }
            self.next_key_check = 2 * self.index.len();
        }
        Ok((output, late))
    }

    /// The emitted rows as a batch of the output schema.
    fn output(&mut self, out: Emitted) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampMillisecondArray::from(out.starts)),
            Arc::new(TimestampMillisecondArray::from(out.ends)),
        ];
        if !self.index.is_global() {
            let rows = UInt32Array::from(out.keys);
            for key in self.index.keys()? {
                columns.push(take(key.as_ref(), &rows, None)?);
            }
        }
        let values = self.schema.fields().len()
            - columns.len()
            - usize::from(self.emit == WindowEmit::Changes);
        for v in 0..values {
            let parts: Vec<&dyn Array> = out.values.iter().map(|p| p[v].as_ref()).collect();
            columns.push(if parts.is_empty() {
                arrow::array::new_empty_array(self.schema.field(columns.len()).data_type())
            } else {
                arrow::compute::concat(&parts)?
            });
        }
        if self.emit == WindowEmit::Changes {
            columns.push(Arc::new(BooleanArray::from(out.finals)));
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

#[async_trait]
impl<A: WindowAssigner> Operator for EventWindowOperator<A> {
    /// By its group keys, after `window_start` and `window_end`: a key's windows (or sessions) are its own.
    fn keyed_by(&self) -> Option<KeyedBy> {
        self.aggregation.keyed_by(2)
    }

    async fn on_batch(&mut self, batch: &mut BatchContext<'_>) -> Result<Option<RecordBatch>> {
        let step = self.clock.advance(batch.time, batch.sources)?;
        let (output, late) = self.run(batch, step.before, step.after).await?;
        batch.late.push(LateRows {
            sources: self
                .clock
                .source_names()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            rows: late.rows,
            max_behind: late.max_behind,
            watermark: step.before,
        });
        Ok(Some(output))
    }

    /// The watermark is +∞ at the end of input: event-time windows emit
    /// all they hold in that very batch.
    fn drain_until(&self, _time: BatchTime) -> Option<BatchTime> {
        None
    }

    /// Bytes of state held: the keys and the open windows' partial states.
    fn state_bytes(&self) -> usize {
        self.index.bytes() + self.windows.bytes()
    }

    /// Saves the keys, the open windows' states and the watermark.
    fn save(&mut self, state: &mut StateWriter) -> Result<()> {
        self.index.save(state, "keys")?;
        self.windows.save(&self.aggregation, state)?;
        self.clock.save(state, "");
        Ok(())
    }

    /// Restores what [`Operator::save`] saved.
    fn load(&mut self, state: &StateReader) -> Result<()> {
        self.index.load(state, "keys")?;
        self.windows
            .load(&self.aggregation, state, self.index.len())?;
        self.clock.load(state, "")
    }

    fn watermark(&self) -> Option<i64> {
        Some(self.clock.current())
    }
}
