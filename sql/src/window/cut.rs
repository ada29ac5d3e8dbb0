//! The plan cut: an aggregate that groups by a window, taken out of
//! DataFusion's plan and run by an engine window operator.
//!
//! The window functions are registered with DataFusion as placeholders so
//! that the whole query is planned (and type-checked) by DataFusion; then
//! the aggregate that groups by a window is cut out of the plan:
//!
//! ```text
//! upper plan (projection, HAVING, …)      stateless, per emitted window
//!   Aggregate(group: window, k; aggs)  →  WindowAggregate(k; aggs, spec)
//!     lower plan (FROM, WHERE, …)         stateless, per batch
//! ```
//!
//! The window's value in the upper plan is a struct `{start, end}` (as in
//! Spark), built from the operator's `window_start` and `window_end`. A plan
//! without a window that asks to `EMIT` goes to `super::running`.

use std::sync::Arc;

use brooklet_engine::time::format_duration;
use brooklet_engine::{
    Assigner, DStream, EmitMode, Engine, EventWindow, RunningSpec, WindowEmit, WindowSpec,
};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::provider_as_source;
use datafusion::functions::core::expr_fn::named_struct;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan};
use datafusion::prelude::{col, lit};

use super::functions::{SqlWindow, spec_of, window_call};
use super::replace::{InputNames, any_node, replace_aggregate};
use super::running;
use super::table::{WindowTable, refuse_raw_hop_tables};
use crate::error::{Error, Result};

/// How a grouped window shows in the aggregate being replaced.
enum WindowGroup {
    /// A window function call at this group position: a `{start, end}` struct.
    Function(usize),
    /// The `window_start` and `window_end` columns of a window table.
    Bounds { start: usize, end: usize },
}

/// A window aggregate found in a plan: the aggregate, its window, how it
/// names the window, and the window table it reads (if any).
type Windowed<'a> = (
    &'a Aggregate,
    SqlWindow,
    WindowGroup,
    Option<&'a WindowTable>,
);

/// If `plan` groups by a window, or asks for a running aggregate with
/// `emit`, the stream that runs it; `None` for a per-batch plan.
pub(crate) fn plan_stateful(
    engine: &Engine,
    plan: &LogicalPlan,
    windows: &[WindowTable],
    running: Option<RunningSpec>,
) -> Result<Option<DStream>> {
    let mut aggregates = Vec::new();
    plan.apply(|p| {
        if let LogicalPlan::Aggregate(a) = p {
            aggregates.push(a.clone());
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let mut windowed: Vec<Windowed> = Vec::new();
    for aggregate in &aggregates {
        let grouping_set = aggregate
            .group_expr
            .iter()
            .any(|g| matches!(g, Expr::GroupingSet(_)));
        let reads_window = grouping_set
            && (aggregate.group_expr.iter().any(mentions_window)
                || windows.iter().any(|w| scans(&aggregate.input, w.name())));
        if reads_window {
            return Err(Error::plan(
                "GROUPING SETS, CUBE and ROLLUP are not supported with a window; group by the \
                 window and the keys, and roll up in an outer query",
            ));
        }
        let calls: Vec<usize> = (0..aggregate.group_expr.len())
            .filter(|i| window_call(&aggregate.group_expr[*i]).is_some())
            .collect();
        let read: Vec<&WindowTable> = windows
            .iter()
            .filter(|w| scans(&aggregate.input, w.name()))
            .collect();
        if read.len() > 1 {
            return Err(Error::plan(
                "an aggregate may read one window table function; aggregate each window, then join the results",
            ));
        }
        let table = read.first().copied();
        match (calls.as_slice(), table) {
            ([], None) => {}
            ([at], None) => {
                let (function, args) = window_call(&aggregate.group_expr[*at]).expect("found");
                windowed.push((
                    aggregate,
                    spec_of(function, args)?,
                    WindowGroup::Function(*at),
                    None,
                ));
            }
            ([_, _, ..], _) => return Err(Error::plan("GROUP BY may name one window")),
            ([_], Some(_)) => {
                return Err(Error::plan(
                    "a window table function's rows are grouped by window_start, window_end, \
                     not by another window",
                ));
            }
            ([], Some(table)) => {
                let position = |name: &str| {
                    aggregate
                        .group_expr
                        .iter()
                        .position(|e| matches!(e, Expr::Column(c) if c.name == name))
                };
                let (Some(start), Some(end)) = (position("window_start"), position("window_end"))
                else {
                    return Err(Error::plan(
                        "an aggregate over a window table function must GROUP BY window_start, window_end",
                    ));
                };
                check_bounds_only_grouped(aggregate, [start, end])?;
                if let Some(partition_by) = &table.partition_by {
                    check_session_keys(aggregate, [start, end], partition_by)?;
                }
                windowed.push((
                    aggregate,
                    table.spec.clone(),
                    WindowGroup::Bounds { start, end },
                    Some(table),
                ));
            }
        }
    }
    // The same aggregate read twice (a CTE) is one window.
    let mut unique: Vec<Windowed> = Vec::with_capacity(windowed.len());
    for w in windowed {
        if !unique.iter().any(|u| u.0 == w.0) {
            unique.push(w);
        }
    }
    let windowed = unique;
    if windowed.len() > 1 {
        if running.is_some() {
            return Err(Error::plan(
                "EMIT CHANGES may follow one window aggregate; this query has several",
            ));
        }
        for (outer, ..) in &windowed {
            if windowed.iter().any(|(inner, ..)| {
                inner != outer
                    && any_node(
                        &outer.input,
                        |p| matches!(p, LogicalPlan::Aggregate(a) if a == *inner),
                    )
            }) {
                return Err(Error::plan(
                    "a window over another window's output is not supported; \
                     aggregate the inner window's rows per batch instead",
                ));
            }
        }
    }
    if windowed.is_empty() {
        refuse_raw_hop_tables(plan, windows)?;
    }
    if !windowed.is_empty() {
        // Each window is its own operator; the plan above them runs per
        // batch on what they emit. Only the same fixed window over the same
        // sources is sure to close in the same batch, so that their rows
        // meet there: other combinations are refused.
        let mut rewritten = plan.clone();
        let mut first: Option<(SqlWindow, Vec<String>)> = None;
        for (aggregate, spec, group, table) in windowed {
            let window = spec.clone();
            let sources;
            (rewritten, sources) =
                plan_window(engine, &rewritten, aggregate, spec, group, table, running)?;
            match &first {
                None => first = Some((window, sources)),
                Some((one, its_sources)) => {
                    let session = |w: &SqlWindow| {
                        matches!(
                            w,
                            SqlWindow::Event {
                                assigner: Assigner::Session { .. },
                                ..
                            }
                        )
                    };
                    // Processing-time windows close at batch times, whatever
                    // their sources; event-time ones on their sources' watermark.
                    let processing = matches!(one, SqlWindow::Processing(_));
                    if *one != window || (!processing && *its_sources != sources) || session(one) {
                        return Err(Error::plan(format!(
                            "windows combined in one query must be the same tumbling or sliding \
                             window (over the same sources, for event time), so that they close in \
                             the same batch; here {} over {} and {} over {}",
                            describe(one),
                            its_sources.join(", "),
                            describe(&window),
                            sources.join(", ")
                        )));
                    }
                }
            }
        }
        refuse_raw_hop_tables(&rewritten, windows)?;
        return Ok(Some(DStream::from_plan(engine, rewritten)?));
    }
    let Some(running) = running else {
        return Ok(None);
    };
    running::plan_running(engine, plan, &aggregates, running).map(Some)
}

/// The window one side of a join reads: the window of an aggregate grouped
/// by a window (a group-by window function, or a window table function's
/// bounds), or of a window table function read without one.
pub(crate) fn side_window(plan: &LogicalPlan, windows: &[WindowTable]) -> Result<SideWindow> {
    let mut found: Option<(SqlWindow, bool)> = None;
    let mut error = None;
    plan.apply(|p| {
        let window = match p {
            LogicalPlan::Aggregate(a) => match a.group_expr.iter().find_map(window_call) {
                Some((function, args)) => Some(spec_of(function, args)),
                None => windows
                    .iter()
                    .find(|w| scans(&a.input, w.name()))
                    .map(|w| Ok(w.spec.clone())),
            },
            LogicalPlan::TableScan(scan) => windows
                .iter()
                .find(|w| w.name() == scan.table_name.table())
                .map(|w| Ok(w.spec.clone())),
            _ => None,
        };
        let aggregated = matches!(p, LogicalPlan::Aggregate(_));
        Ok(match window {
            Some(Ok(window)) => {
                found = Some((window, aggregated));
                TreeNodeRecursion::Stop
            }
            Some(Err(e)) => {
                error = Some(e);
                TreeNodeRecursion::Stop
            }
            None => TreeNodeRecursion::Continue,
        })
    })?;
    if let Some(e) = error {
        return Err(e);
    }
    Ok(match found {
        None => SideWindow::None,
        Some((SqlWindow::Processing(spec), _)) => SideWindow::Processing(spec),
        Some((SqlWindow::Event { assigner, .. }, aggregated)) => SideWindow::Event {
            assigner,
            aggregated,
        },
    })
}

/// The window a side of a join reads, if any.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SideWindow {
    /// No window: the side's rows of each batch.
    None,
    /// A processing-time window.
    Processing(WindowSpec),
    /// An event-time window: aggregated (each window emitted once, when it
    /// closes), or a window table's rows (emitted as they arrive).
    Event {
        /// The windows.
        assigner: Assigner,
        /// Whether an aggregate groups by it.
        aggregated: bool,
    },
}

impl SideWindow {
    /// The window, for messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            SideWindow::None => "no window".into(),
            SideWindow::Processing(spec) => describe(&SqlWindow::Processing(*spec)),
            SideWindow::Event { assigner, .. } => describe(&SqlWindow::Event {
                column: "its time column".into(),
                assigner: *assigner,
            }),
        }
    }
}

/// `plan` with the window `aggregate` replaced by a scan of its window
/// operator's stream.
fn plan_window(
    engine: &Engine,
    plan: &LogicalPlan,
    aggregate: &Aggregate,
    spec: SqlWindow,
    group: WindowGroup,
    table: Option<&WindowTable>,
    running: Option<RunningSpec>,
) -> Result<(LogicalPlan, Vec<String>)> {
    let mut input = aggregate.input.as_ref().clone();
    if let Some(table) = table {
        // The aggregate reads each batch's rows; the window operator
        // assigns them to windows.
        let per_batch = provider_as_source(table.per_batch.table());
        input = input
            .transform_up(|node| match node {
                LogicalPlan::TableScan(scan) if scan.table_name.table() == table.name() => {
                    Ok(Transformed::yes(LogicalPlan::TableScan(
                        datafusion::logical_expr::TableScan {
                            source: Arc::clone(&per_batch),
                            ..scan
                        },
                    )))
                }
                other => Ok(Transformed::no(other)),
            })?
            .data;
    }
    let skip: Vec<usize> = match group {
        WindowGroup::Function(at) => vec![at],
        WindowGroup::Bounds { start, end } => vec![start, end],
    };
    let names = InputNames::of(&input);
    let keys = aggregate
        .group_expr
        .iter()
        .enumerate()
        .filter(|(i, _)| !skip.contains(i))
        .map(|(_, e)| names.strip(e))
        .collect::<Result<_>>()?;
    let input = DStream::from_plan(engine, names.plan(input)?)?;
    let mut sources = input.sources();
    sources.sort();
    let aggregates = names.strip_all(&aggregate.aggr_expr)?;
    let stream = match spec {
        SqlWindow::Processing(spec) => {
            if running.is_some() {
                return Err(Error::plan(
                    "EMIT CHANGES is for an unwindowed GROUP BY or an event-time window, \
                     EMIT COMPLETE for an unwindowed GROUP BY; a processing-time window emits \
                     once, when it closes",
                ));
            }
            input.window_aggregate(keys, aggregates, spec)?
        }
        SqlWindow::Event { column, assigner } => {
            let emit = match running.map(|r| r.emit) {
                None => WindowEmit::OnClose,
                Some(EmitMode::Changes) => WindowEmit::Changes,
                Some(EmitMode::Complete) => {
                    return Err(Error::plan(
                        "EMIT COMPLETE is for an unwindowed GROUP BY; an event-time window \
                         emits ON WINDOW CLOSE (the default) or CHANGES",
                    ));
                }
            };
            let window = EventWindow {
                time_column: column,
                assigner,
                emit,
            };
            input.event_window_aggregate(keys, aggregates, window)?
        }
    };
    // window_start, window_end, then the other columns in order.
    let column = |i: usize| -> Option<Expr> {
        match group {
            WindowGroup::Function(at) if i == at => Some(named_struct(vec![
                lit("start"),
                col("window_start"),
                lit("end"),
                col("window_end"),
            ])),
            WindowGroup::Bounds { start, .. } if i == start => Some(col("window_start")),
            WindowGroup::Bounds { end, .. } if i == end => Some(col("window_end")),
            _ => None,
        }
    };
    let offset = |i: usize| 2 + i - skip.iter().filter(|s| **s < i).count();
    Ok((
        replace_aggregate(plan, aggregate, &stream, column, offset)?,
        sources,
    ))
}

/// Whether `expr` calls a window function anywhere inside.
fn mentions_window(expr: &Expr) -> bool {
    expr.exists(|e| Ok(window_call(e).is_some()))
        .unwrap_or(false)
}

/// A window, for messages.
fn describe(window: &SqlWindow) -> String {
    let fixed = |spec: &WindowSpec| {
        format!(
            "{} every {}",
            format_duration(spec.length),
            format_duration(spec.slide)
        )
    };
    match window {
        SqlWindow::Processing(spec) => format!("a processing-time window of {}", fixed(spec)),
        SqlWindow::Event {
            column,
            assigner: Assigner::Fixed(spec),
        } => format!("a window of {} on {column}", fixed(spec)),
        SqlWindow::Event {
            column,
            assigner: Assigner::Cumulate(spec),
        } => format!(
            "cumulating windows growing by {} up to {} on {column}",
            format_duration(spec.slide),
            format_duration(spec.length)
        ),
        SqlWindow::Event {
            column,
            assigner: Assigner::Session { gap },
        } => format!("sessions of gap {} on {column}", format_duration(*gap)),
    }
}

/// Whether `plan` scans the table registered as `name`, not counting
/// scans below another aggregate (that one reads it).
fn scans(plan: &LogicalPlan, name: &str) -> bool {
    let mut found = false;
    let _ = plan.apply(|p| {
        Ok(match p {
            LogicalPlan::Aggregate(_) => TreeNodeRecursion::Jump,
            LogicalPlan::TableScan(s) if s.table_name.table() == name => {
                found = true;
                TreeNodeRecursion::Stop
            }
            _ => TreeNodeRecursion::Continue,
        })
    });
    found
}

fn mentions_bounds(expr: &Expr) -> bool {
    expr.column_refs()
        .iter()
        .any(|c| c.name == "window_start" || c.name == "window_end")
}

/// A session table's aggregate groups by `window_start, window_end` and
/// exactly its `PARTITION BY` keys: sessions are kept per group key, so
/// other keys would cut Flink's sessions (per partition key) into sessions
/// per group.
fn check_session_keys(
    aggregate: &Aggregate,
    bounds: [usize; 2],
    partition_by: &[String],
) -> Result<()> {
    let mut grouped: Vec<String> = Vec::new();
    for (i, key) in aggregate.group_expr.iter().enumerate() {
        if bounds.contains(&i) {
            continue;
        }
        match key {
            Expr::Column(c) => grouped.push(c.name.clone()),
            other => {
                return Err(Error::plan(format!(
                    "a SESSION table's aggregate groups by window_start, window_end and its \
                     PARTITION BY columns, not by {other}"
                )));
            }
        }
    }
    let mut keys = partition_by.to_vec();
    grouped.sort();
    keys.sort();
    if grouped != keys {
        let listed = |k: &[String]| match k {
            [] => "none".to_string(),
            k => k.join(", "),
        };
        return Err(Error::plan(format!(
            "a SESSION table's aggregate groups by window_start, window_end and exactly its \
             PARTITION BY columns (sessions are per key): PARTITION BY {}, GROUP BY also {}",
            listed(partition_by),
            listed(&grouped)
        )));
    }
    Ok(())
}

/// An aggregate over a window table function reads each batch's rows, before
/// the window operator assigns them to windows: `window_start` and
/// `window_end` exist below it only as the keys it groups by. Anything else
/// that reads them below the aggregate is refused (it would see no value).
fn check_bounds_only_grouped(aggregate: &Aggregate, grouped: [usize; 2]) -> Result<()> {
    let refuse = |what: String| {
        Err(Error::plan(format!(
            "{what} reads window_start or window_end before the window is computed; \
             use them in HAVING, in the SELECT list, or in an outer query"
        )))
    };
    for (i, key) in aggregate.group_expr.iter().enumerate() {
        if !grouped.contains(&i) && mentions_bounds(key) {
            return refuse(format!("GROUP BY {key}"));
        }
    }
    for value in &aggregate.aggr_expr {
        if mentions_bounds(value) {
            return refuse(format!("the aggregate {value}"));
        }
    }
    let mut found = None;
    aggregate.input.apply(|p| {
        if let LogicalPlan::Aggregate(_) = p {
            return Ok(TreeNodeRecursion::Jump);
        }
        let passes_through = |e: &Expr| matches!(e, Expr::Column(_));
        let reads = match p {
            LogicalPlan::Projection(projection) => projection
                .expr
                .iter()
                .find(|e| !passes_through(e) && mentions_bounds(e))
                .cloned(),
            LogicalPlan::SubqueryAlias(_) | LogicalPlan::TableScan(_) => None,
            other => other.expressions().into_iter().find(mentions_bounds),
        };
        if let Some(expr) = reads {
            found = Some(expr);
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    match found {
        Some(expr) => refuse(format!("{expr}")),
        None => Ok(()),
    }
}
