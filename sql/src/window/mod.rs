//! Windows and running aggregates in SQL.
//!
//! Two spellings of a window, one operator underneath:
//!
//! - group-by functions: `tumble(size)`, `hop(slide, size)` (Arroyo's
//!   order) and Spark's `window(size [, slide])` in `GROUP BY`; the
//!   window's value is a struct `{start, end}`;
//! - Flink's table functions: `FROM TABLE(TUMBLE(TABLE s,
//!   DESCRIPTOR(proctime), size))`, `HOP(…, slide, size)` and, event time
//!   only, `SESSION(TABLE s [PARTITION BY k, …], DESCRIPTOR(ts), gap)`,
//!   whose rows are the source's columns with `window_start` and
//!   `window_end` appended.
//!   `proctime` is the processing time (the batch time) that every stream
//!   has, not a declared column. Grouped `BY window_start, window_end, …`
//!   it is a window aggregate; without an aggregate it is DStream
//!   `window()` (every row of the window at each slide).
//!
//! **Event time**: a time column as the first argument (`tumble(ts, size)`,
//! `hop(ts, slide, size)`, `window(ts, size [, slide])`, `session(ts, gap)`
//! and Spark's `session_window(ts, gap)`), or `DESCRIPTOR(ts)` naming a
//! column of the source, makes an event-time window
//! ([`brooklet_engine::event_window`]): the source must declare
//! `WATERMARK FOR ts`. Windows then emit when the watermark passes their
//! end (`EMIT ON WINDOW CLOSE`, the default), or also every batch while
//! open (`EMIT CHANGES`, with a trailing `is_final` column). An event-time
//! `TUMBLE` table read without an aggregate gives each row its window's
//! bounds, as in Flink.
//!
//! Sizes are intervals (`INTERVAL '10' SECOND`) or duration strings
//! (`'10 seconds'`). An unwindowed `GROUP BY` with `EMIT CHANGES` or `EMIT
//! COMPLETE` is a running aggregate (`crate::planner`, [`running`]).
//!
//! The files, each importing only those listed before it:
//!
//! - [`functions`]: the window functions (DataFusion placeholders), the
//!   window a call describes, sizes and intervals;
//! - [`replace`]: an aggregate of the plan replaced by a scan of the engine
//!   stream that computes it;
//! - [`table`]: the window table functions, rewritten into registered tables
//!   before planning;
//! - [`running`]: an unwindowed `GROUP BY` with `EMIT` as a running
//!   aggregate;
//! - [`cut`]: the aggregates that group by a window cut out of the plan into
//!   window operators, the rest to [`running`].

mod cut;
mod functions;
mod replace;
mod running;
mod table;

pub(crate) use cut::{SideWindow, plan_stateful, side_window};
pub(crate) use functions::{literal_interval, register};
pub(crate) use replace::any_node;
pub(crate) use table::{WindowTable, register_window_tables};
