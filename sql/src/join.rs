//! Joins in SQL: which join a query asks for, and the stateful ones cut out
//! of DataFusion's plan into engine join operators.
//!
//! | the join | what runs | when rows meet |
//! |---|---|---|
//! | a stream with a static table (`CREATE EXTERNAL TABLE`) | the per-batch plan | every batch's rows with the table (inner, left, semi, anti) |
//! | two streams, no window, no time condition | the per-batch plan (DStream `join`) | rows of the same batch |
//! | two streams, the same processing-time window on both sides | the window operators, then the per-batch plan | a window's rows, at its slide (windows close in the same batch) |
//! | two streams, the same event-time window on both sides, `ON` the window bounds | a window join ([`brooklet_engine::join::window`]) | a window's rows, when both sides' watermarks pass its end |
//! | two streams, `ON` a bound on each side's event time (`s.ts BETWEEN o.ts AND o.ts + INTERVAL '4' HOUR`, or `… AND a.expires`) | an interval join ([`brooklet_engine::join::interval`]) | rows within the bounds, in the batch in which the second arrives |
//! | two streams, no window, no time bounds, `EMIT CHANGES` | a running join ([`brooklet_engine::join::running`]) | any two rows, in the batch in which the second arrives (kept for `state.ttl`) |
//!
//! Conditions on both sides written in `WHERE` over an inner join (`FROM a,
//! b WHERE …`) count as its `ON`, as DataFusion's optimizer would move
//! them.
//!
//! What would silently give wrong rows is refused with the reason: windows
//! that differ between the sides, a window on one side only, a session
//! window, a time condition with one bound only (its state would grow
//! forever), or one in the `WHERE` of an outer join, a comparison of the
//! two sides' event times that is not a bound (`NOT (b.ts < a.ts OR …)`:
//! it would join per batch), and outer joins that would emit a table's
//! unmatched rows every batch.
//!
//! A bound is a comparison (`<`, `<=`, `>`, `>=`, `=`, `BETWEEN`) between
//! a time column of each side, each plus or minus a constant (an interval,
//! or milliseconds for an integer column; constant expressions are
//! folded), or between the difference of the two and a constant
//! (`b.ts - a.ts BETWEEN 0 AND 1000`).

use std::sync::Arc;

use brooklet_engine::datafusion::datasource::{provider_as_source, source_as_provider};
use brooklet_engine::join::JoinCondition;
use brooklet_engine::{Assigner, DStream, Engine, IntervalBounds, RunningSpec, StreamTable};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, JoinType, ScalarValue, TableReference};
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Join, LogicalPlan, LogicalPlanBuilder, Operator};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;

use crate::error::{Error, Result};
use crate::window::{SideWindow, WindowTable, side_window};

/// How the query asks its joins to run.
pub(crate) struct JoinPlanning<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) windows: &'a [WindowTable],
    /// `EMIT CHANGES | COMPLETE`: a join of two streams with no window and
    /// no time bounds is a running join, with this TTL.
    pub(crate) running: Option<RunningSpec>,
    /// Set when a running join was planned.
    pub(crate) planned_running: bool,
}

/// `plan` with every join of two streams that keeps rows across batches
/// replaced by a scan of its join operator's stream; joins that run per
/// batch stay in the plan. Refuses joins that would silently be wrong.
pub(crate) fn plan_joins(at: &mut JoinPlanning<'_>, plan: &LogicalPlan) -> Result<LogicalPlan> {
    if let Some(merged) = where_into_on(plan)? {
        return plan_joins(at, &merged);
    }
    let inputs: Vec<LogicalPlan> = plan
        .inputs()
        .into_iter()
        .map(|input| plan_joins(at, input))
        .collect::<Result<_>>()?;
    let changed = inputs
        .iter()
        .zip(plan.inputs())
        .any(|(new, old)| new != old);
    let plan = if changed {
        plan.with_new_exprs(plan.expressions(), inputs)?
    } else {
        plan.clone()
    };
    match &plan {
        LogicalPlan::Join(join) => Ok(plan_join(at, join)?.unwrap_or(plan)),
        LogicalPlan::Filter(filter) => {
            if let LogicalPlan::Join(join) = filter.input.as_ref()
                && reads_stream(&join.left)
                && reads_stream(&join.right)
                && !time_bounds(at.engine, join, &filter.predicate)?
                    .bounds
                    .is_empty()
            {
                return Err(Error::plan(
                    "a condition on both streams' times of an outer join is written in the \
                     join's ON clause (… LEFT JOIN s ON o.id = s.order_id AND s.ts BETWEEN o.ts \
                     AND o.ts + INTERVAL '1' HOUR), not in WHERE",
                ));
            }
            Ok(plan)
        }
        _ => Ok(plan),
    }
}

/// `FROM a, b WHERE …` (or an inner `JOIN` with more conditions in
/// `WHERE`) over two streams, as DataFusion's optimizer would rewrite it:
/// the conditions on both sides move into the join's `ON`, so that the join
/// sees its keys and time bounds, and those on one side into that side,
/// so that a join that keeps rows keeps only the rows that can match.
/// `None` when there is nothing to move.
fn where_into_on(plan: &LogicalPlan) -> Result<Option<LogicalPlan>> {
    let LogicalPlan::Filter(filter) = plan else {
        return Ok(None);
    };
    let LogicalPlan::Join(join) = filter.input.as_ref() else {
        return Ok(None);
    };
    if join.join_type != JoinType::Inner || !reads_stream(&join.left) || !reads_stream(&join.right)
    {
        return Ok(None);
    }
    let reads =
        |side: &LogicalPlan, e: &Expr| e.column_refs().iter().any(|c| side.schema().has_column(c));
    let (mut both, mut left, mut right, mut rest) = (vec![], vec![], vec![], vec![]);
    for conjunct in split_conjunction(&filter.predicate) {
        let movable = !conjunct.is_volatile() && !conjunct.contains_outer();
        match (reads(&join.left, conjunct), reads(&join.right, conjunct)) {
            (true, true) if movable => both.push(conjunct.clone()),
            (true, false) if movable => left.push(conjunct.clone()),
            (false, true) if movable => right.push(conjunct.clone()),
            _ => rest.push(conjunct.clone()),
        }
    }
    if both.is_empty() && left.is_empty() && right.is_empty() {
        return Ok(None);
    }
    let filtered = |side: &Arc<LogicalPlan>, conditions: Vec<Expr>| -> Result<Arc<LogicalPlan>> {
        Ok(match conditions.into_iter().reduce(Expr::and) {
            None => Arc::clone(side),
            Some(predicate) => Arc::new(LogicalPlan::Filter(
                datafusion::logical_expr::Filter::try_new(predicate, Arc::clone(side))?,
            )),
        })
    };
    let merged = LogicalPlan::Join(Join {
        filter: join.filter.iter().cloned().chain(both).reduce(Expr::and),
        left: filtered(&join.left, left)?,
        right: filtered(&join.right, right)?,
        ..join.clone()
    });
    Ok(Some(match rest.into_iter().reduce(Expr::and) {
        None => merged,
        Some(predicate) => LogicalPlan::Filter(datafusion::logical_expr::Filter::try_new(
            predicate,
            Arc::new(merged),
        )?),
    }))
}

/// Whether `plan` reads a stream (a source, directly or through a window).
fn reads_stream(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply(|p| {
        if let LogicalPlan::TableScan(scan) = p
            && let Ok(provider) = source_as_provider(&scan.source)
            && provider.downcast_ref::<StreamTable>().is_some()
        {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// The sources `plan` reads, sorted.
fn stream_sources(plan: &LogicalPlan) -> Vec<String> {
    let mut names = Vec::new();
    let _ = plan.apply(|p| {
        if let LogicalPlan::TableScan(scan) = p
            && let Ok(provider) = source_as_provider(&scan.source)
            && let Some(table) = provider.downcast_ref::<StreamTable>()
        {
            names.extend(table.sources());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    names.sort();
    names.dedup();
    names
}

/// The join's whole condition: `USING` keys and `ON`.
fn condition(join: &Join) -> Option<Expr> {
    join.on
        .iter()
        .map(|(l, r)| l.clone().eq(r.clone()))
        .chain(join.filter.clone())
        .reduce(Expr::and)
}

/// The operator for one join, or `None` when it runs per batch.
fn plan_join(at: &mut JoinPlanning<'_>, join: &Join) -> Result<Option<LogicalPlan>> {
    let (engine, windows) = (at.engine, at.windows);
    let (left_stream, right_stream) = (reads_stream(&join.left), reads_stream(&join.right));
    if !left_stream || !right_stream {
        check_table_join(join, left_stream, right_stream)?;
        return Ok(None);
    }
    let on = condition(join);
    let left_window = side_window(&join.left, windows)?;
    let right_window = side_window(&join.right, windows)?;
    match (&left_window, &right_window) {
        (SideWindow::None, SideWindow::None) => {}
        (SideWindow::Processing(a), SideWindow::Processing(b)) if a == b => return Ok(None),
        (
            SideWindow::Event {
                assigner: a,
                aggregated: left_aggregated,
            },
            SideWindow::Event {
                assigner: b,
                aggregated: right_aggregated,
            },
        ) if a == b => {
            if matches!(a, Assigner::Session { .. }) {
                return Err(Error::plan(
                    "session windows are not joined: each key's sessions have bounds of their \
                     own; join tumbling or sliding windows",
                ));
            }
            // Aggregates of the same window over the same sources close in
            // the same batch: their rows meet per batch (Nexmark q5).
            if *left_aggregated
                && *right_aggregated
                && stream_sources(&join.left) == stream_sources(&join.right)
            {
                return Ok(None);
            }
            return window_join(engine, join, on, windows).map(Some);
        }
        (SideWindow::None, _) | (_, SideWindow::None) => {
            return Err(Error::plan(format!(
                "a window join needs the same window on both sides; here {} and {}",
                left_window.describe(),
                right_window.describe()
            )));
        }
        _ => {
            return Err(Error::plan(format!(
                "a window join needs the same window on both sides, so that a window closes on \
                 both at once; here {} and {}",
                left_window.describe(),
                right_window.describe()
            )));
        }
    }
    let Some(on) = on else {
        return Ok(None);
    };
    let bounds = time_bounds(engine, join, &on)?;
    if !bounds.bounds.is_empty() {
        return interval_join(engine, join, on, bounds).map(Some);
    }
    match (at.running, bounds.unread.first()) {
        (Some(running), _) => {
            at.planned_running = true;
            running_join(engine, join, on, running.ttl).map(Some)
        }
        (None, Some(unread)) => Err(Error::plan(format!(
            "the join compares the two sides' event times in a form not read as interval \
             bounds ({unread}), so only rows of the same batch would meet; bound one side's \
             time column by the other's, such as b.ts BETWEEN a.ts AND a.ts + INTERVAL '1' \
             HOUR, or with >= and <= and constant offsets"
        ))),
        (None, None) => Ok(None),
    }
}

fn running_join(
    engine: &Engine,
    join: &Join,
    on: Expr,
    ttl: Option<std::time::Duration>,
) -> Result<LogicalPlan> {
    let (left, right, condition) = sides(engine, join, on, &[])?;
    let stream = left.running_join(&right, condition, ttl)?;
    if ttl.is_none() {
        engine.notices().send(
            "a running join (EMIT CHANGES) keeps every row of both streams: SET state.ttl = \
             '1 hour' (say) before the query to keep rows only that long",
        );
    }
    replacement(&stream, join)
}

/// A stream joined with a static table: the table's side may not be
/// preserved by an outer join (its unmatched rows would come out every
/// batch).
fn check_table_join(join: &Join, left_stream: bool, right_stream: bool) -> Result<()> {
    let refused = match (left_stream, right_stream) {
        (true, false) => !matches!(
            join.join_type,
            JoinType::Inner | JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti
        ),
        (false, true) => !matches!(
            join.join_type,
            JoinType::Inner | JoinType::Right | JoinType::RightSemi | JoinType::RightAnti
        ),
        _ => false,
    };
    if refused {
        return Err(Error::plan(format!(
            "a stream joins a table inner, left (the stream's side), semi or anti; a {} join \
             would emit the table's unmatched rows with every batch",
            join.join_type
        )));
    }
    Ok(())
}

/// A time condition between the two sides: `right.t - left.t` at least
/// (`Lower`) or at most (`Upper`) some milliseconds.
#[derive(Debug, Clone, PartialEq)]
struct TimeBound {
    left: String,
    right: String,
    lower: Option<i64>,
    upper: Option<i64>,
}

/// The event-time columns of each side: the watermark columns of the
/// sources it reads (Flink's time attributes).
struct TimeColumns {
    left: Vec<String>,
    right: Vec<String>,
}

impl TimeColumns {
    fn of(engine: &Engine, join: &Join) -> Self {
        let columns = |side: &LogicalPlan| {
            let mut names = Vec::new();
            let _ = side.apply(|p| {
                if let LogicalPlan::TableScan(scan) = p
                    && let Ok(provider) = source_as_provider(&scan.source)
                    && let Some(table) = provider.downcast_ref::<StreamTable>()
                {
                    names.extend(
                        table
                            .sources()
                            .iter()
                            .filter_map(|s| engine.watermark(s).map(|w| w.column)),
                    );
                }
                Ok(TreeNodeRecursion::Continue)
            });
            names
        };
        TimeColumns {
            left: columns(&join.left),
            right: columns(&join.right),
        }
    }
}

/// A side of a comparison: a column of one side plus a constant (an
/// interval, or milliseconds for a numeric column).
#[derive(Debug, Clone)]
struct Term {
    /// On the left side (else the right).
    left: bool,
    column: String,
    offset: i64,
    /// The column is its side's event time (a watermark column).
    time: bool,
}

/// `expr` as a [`Term`], when it is a time-like column of one side plus a constant.
fn time_term(expr: &Expr, join: &Join, times: &TimeColumns) -> Option<Term> {
    match expr {
        Expr::Column(c) => {
            let on_left = join.left.schema().has_column(c);
            let on_right = join.right.schema().has_column(c);
            if on_left == on_right {
                return None;
            }
            let names = if on_left { &times.left } else { &times.right };
            let schema = if on_left {
                join.left.schema()
            } else {
                join.right.schema()
            };
            let data_type = schema
                .field_with_name(c.relation.as_ref(), &c.name)
                .ok()?
                .data_type();
            let time = names.contains(&c.name);
            if !(time || data_type.is_temporal() || data_type.is_integer()) {
                return None;
            }
            Some(Term {
                left: on_left,
                column: c.name.clone(),
                offset: 0,
                time,
            })
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            if let Some(term) = time_term(left, join, times) {
                let millis = constant_millis(right)?;
                let offset = match op {
                    Operator::Plus => term.offset.checked_add(millis)?,
                    Operator::Minus => term.offset.checked_sub(millis)?,
                    _ => return None,
                };
                return Some(Term { offset, ..term });
            }
            // `INTERVAL '1' HOUR + a.ts`
            if *op != Operator::Plus {
                return None;
            }
            let term = time_term(right, join, times)?;
            let offset = term.offset.checked_add(constant_millis(left)?)?;
            Some(Term { offset, ..term })
        }
        Expr::Cast(cast) => time_term(&cast.expr, join, times),
        _ => None,
    }
}

/// `expr` as the difference of two [`Term`]s (`b.ts - a.ts`).
fn difference(expr: &Expr, join: &Join, times: &TimeColumns) -> Option<(Term, Term)> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Minus,
            right,
        }) => Some((
            time_term(left, join, times)?,
            time_term(right, join, times)?,
        )),
        Expr::Cast(cast) => difference(&cast.expr, join, times),
        _ => None,
    }
}

/// The milliseconds of a constant: an interval or integer literal, or an
/// expression of them (`2 * 500`, `CAST(1000 AS BIGINT)`), folded.
fn constant_millis(expr: &Expr) -> Option<i64> {
    if let Some(millis) = interval_millis(expr) {
        return Some(millis);
    }
    if !expr.column_refs().is_empty() {
        return None;
    }
    let folded = ExprSimplifier::new(SimplifyContext::default())
        .simplify(expr.clone())
        .ok()?;
    interval_millis(&folded)
}

/// The milliseconds of an interval literal.
fn interval_millis(expr: &Expr) -> Option<i64> {
    match expr {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) if v.months == 0 => {
            Some(v.days as i64 * 86_400_000 + v.nanoseconds / 1_000_000)
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => {
            Some(v.days as i64 * 86_400_000 + v.milliseconds as i64)
        }
        Expr::Literal(ScalarValue::DurationSecond(Some(v)), _) => v.checked_mul(1000),
        Expr::Literal(ScalarValue::DurationMillisecond(Some(v)), _) => Some(*v),
        Expr::Literal(ScalarValue::DurationMicrosecond(Some(v)), _) => Some(v / 1000),
        Expr::Literal(ScalarValue::DurationNanosecond(Some(v)), _) => Some(v / 1_000_000),
        Expr::Literal(value, _) if value.data_type().is_integer() => value
            .cast_to(&datafusion::arrow::datatypes::DataType::Int64)
            .ok()
            .and_then(|v| match v {
                ScalarValue::Int64(v) => v,
                _ => None,
            }),
        _ => None,
    }
}

/// What a join condition says about the two sides' times.
#[derive(Debug, Default)]
struct TimeConditions {
    /// Bounds between a time column of each side.
    bounds: Vec<TimeBound>,
    /// Upper bounds of a right time column by another column of the left
    /// side (`b.ts <= a.expires`): the right column, the left one, and the
    /// constant added to the left one.
    column_uppers: Vec<(String, String, i64)>,
    /// Upper bounds of a left time column by another column of the right
    /// side (`b.ts <= a.expires` with the bids on the left): the left
    /// column, the right one, and `lower` as in `left.t <= right.c - lower`.
    column_lowers: Vec<(String, String, i64)>,
    /// Conjuncts that compare a time column of each side in a form not
    /// read as a bound (`NOT (b.ts < a.ts OR …)`).
    unread: Vec<Expr>,
}

/// The bounds that `predicate`'s conjuncts put on `right.t - left.t`, for
/// comparisons between a time column of each side.
fn time_bounds(engine: &Engine, join: &Join, predicate: &Expr) -> Result<TimeConditions> {
    let times = TimeColumns::of(engine, join);
    let mut found = TimeConditions::default();
    // `a op b` as two terms of different sides: each a column plus a
    // constant, or a difference of columns compared with a constant
    // (`b.ts - a.ts <= c` is `b.ts <= a.ts + c`).
    let terms = |a: &Expr, b: &Expr| -> Option<(Term, Term)> {
        if let (Some(a), Some(b)) = (time_term(a, join, &times), time_term(b, join, &times)) {
            return Some((a, b));
        }
        if let (Some((x, y)), Some(c)) = (difference(a, join, &times), constant_millis(b)) {
            let offset = y.offset.checked_add(c)?.checked_sub(x.offset)?;
            return Some((Term { offset: 0, ..x }, Term { offset, ..y }));
        }
        let ((x, y), c) = (difference(b, join, &times)?, constant_millis(a)?);
        let offset = y.offset.checked_add(c)?.checked_sub(x.offset)?;
        Some((Term { offset, ..y }, Term { offset: 0, ..x }))
    };
    // Whether `a op b` is read as a bound.
    let mut add = |a: &Expr, op: Operator, b: &Expr| -> bool {
        let Some((a, b)) = terms(a, b) else {
            return false;
        };
        if a.left == b.left || (!a.time && !b.time) {
            return false;
        }
        // Written as (left + x) op (right + y), that is right.t - left.t op' x - y.
        let (l, r, op) = if a.left { (a, b, op) } else { (b, a, flip(op)) };
        let d = l.offset - r.offset;
        if !l.time || !r.time {
            // right.t <= left.c + d, or left.t <= right.c - d: a row that
            // carries its own end.
            let upper = matches!(op, Operator::Gt | Operator::GtEq);
            let lower = matches!(op, Operator::Lt | Operator::LtEq);
            if r.time && upper {
                found.column_uppers.push((r.column, l.column, d));
            } else if l.time && lower {
                found.column_lowers.push((l.column, r.column, d));
            } else {
                return false;
            }
            return true;
        }
        let (lower, upper) = match op {
            Operator::Lt | Operator::LtEq => (Some(d), None),
            Operator::Gt | Operator::GtEq => (None, Some(d)),
            Operator::Eq => (Some(d), Some(d)),
            _ => return false,
        };
        let bound = found
            .bounds
            .iter_mut()
            .find(|b| b.left == l.column && b.right == r.column);
        match bound {
            Some(b) => {
                b.lower = b.lower.max(lower);
                b.upper = match (b.upper, upper) {
                    (Some(x), Some(y)) => Some(x.min(y)),
                    (x, y) => x.or(y),
                };
            }
            None => found.bounds.push(TimeBound {
                left: l.column,
                right: r.column,
                lower,
                upper,
            }),
        }
        true
    };
    let mut unread = Vec::new();
    for conjunct in split_conjunction(predicate) {
        let read = match conjunct {
            Expr::Between(between) if !between.negated => {
                let low = add(&between.low, Operator::LtEq, &between.expr);
                add(&between.expr, Operator::LtEq, &between.high) || low
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => add(left, *op, right),
            _ => false,
        };
        let compares_times = |side: &LogicalPlan, names: &[String]| {
            conjunct
                .column_refs()
                .iter()
                .any(|c| names.contains(&c.name) && side.schema().has_column(c))
        };
        if !read
            && compares_times(&join.left, &times.left)
            && compares_times(&join.right, &times.right)
        {
            unread.push(conjunct.clone());
        }
    }
    found.unread = unread;
    Ok(found)
}

/// `a op b` is `b flip(op) a`.
fn flip(op: Operator) -> Operator {
    match op {
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        other => other,
    }
}

/// The name a side's columns have in the join's condition.
fn alias_of(side: &LogicalPlan) -> Result<String> {
    let mut qualifiers = side.schema().iter().map(|(q, _)| q);
    let first = qualifiers.next().flatten().cloned();
    match first {
        Some(q) if qualifiers.all(|other| other == Some(&q)) => Ok(q.table().to_string()),
        _ => Err(Error::plan(
            "a stateful join reads two streams, each a source or a subquery with an alias; \
             join a third stream in an outer query",
        )),
    }
}

/// A side of a join as a stream: its windows cut out (a window aggregate),
/// or its per-batch plan.
fn side_stream(engine: &Engine, side: &LogicalPlan, windows: &[WindowTable]) -> Result<DStream> {
    match crate::window::plan_stateful(engine, side, windows, None)? {
        Some(stream) => Ok(stream),
        None => Ok(DStream::from_plan(engine, side.clone())?),
    }
}

/// The two sides, their aliases and the condition.
fn sides(
    engine: &Engine,
    join: &Join,
    on: Expr,
    windows: &[WindowTable],
) -> Result<(DStream, DStream, JoinCondition)> {
    let condition = JoinCondition {
        join_type: join.join_type,
        left_alias: alias_of(&join.left)?,
        right_alias: alias_of(&join.right)?,
        on,
    };
    Ok((
        side_stream(engine, &join.left, windows)?,
        side_stream(engine, &join.right, windows)?,
        condition,
    ))
}

fn interval_join(
    engine: &Engine,
    join: &Join,
    on: Expr,
    conditions: TimeConditions,
) -> Result<LogicalPlan> {
    let [bound] = conditions.bounds.as_slice() else {
        return Err(Error::plan(
            "an interval join bounds one time column of each side; this condition compares \
             several pairs",
        ));
    };
    let by_column = conditions
        .column_uppers
        .iter()
        .find(|(right, ..)| *right == bound.right);
    let upper = match (bound.upper, by_column) {
        (Some(upper), _) => Some((upper, None)),
        (None, Some((_, column, offset))) => Some((*offset, Some(column.clone()))),
        (None, None) => None,
    };
    let by_column = conditions
        .column_lowers
        .iter()
        .find(|(left, ..)| *left == bound.left);
    let lower = match (bound.lower, by_column) {
        (Some(lower), _) => Some((lower, None)),
        (None, Some((_, column, offset))) => Some((*offset, Some(column.clone()))),
        (None, None) => None,
    };
    let (Some((lower, lower_column)), Some((upper, upper_column))) = (lower, upper) else {
        return Err(Error::plan(format!(
            "an interval join needs a lower and an upper bound on {} against {} (such as \
             BETWEEN … AND …), or the rows of one side would be kept forever",
            bound.right, bound.left
        )));
    };
    let (left, right, condition) = sides(engine, join, on, &[])?;
    let stream = left.interval_join(
        &right,
        condition,
        &bound.left,
        &bound.right,
        IntervalBounds {
            lower,
            upper,
            upper_column,
            lower_column,
        },
    )?;
    replacement(&stream, join)
}

fn window_join(
    engine: &Engine,
    join: &Join,
    on: Option<Expr>,
    windows: &[WindowTable],
) -> Result<LogicalPlan> {
    let refuse = || {
        Error::plan(
            "a window join is ON the windows' bounds and keys: \
             … ON a.window_start = b.window_start AND a.window_end = b.window_end AND a.k = b.k",
        )
    };
    let ends = |side: &LogicalPlan| -> Vec<String> {
        side.schema()
            .fields()
            .iter()
            .filter(|f| traced_name(side, f.name()) == "window_end")
            .map(|f| f.name().clone())
            .collect()
    };
    let (left_ends, right_ends) = (ends(&join.left), ends(&join.right));
    let Some(on) = on else {
        return Err(refuse());
    };
    let ends = split_conjunction(&on).iter().find_map(|c| match c {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => match (left.as_ref(), right.as_ref()) {
            (Expr::Column(a), Expr::Column(b)) => {
                let on_left = |c: &Column| join.left.schema().has_column(c);
                let (l, r) = if on_left(a) { (a, b) } else { (b, a) };
                (on_left(l)
                    && !on_left(r)
                    && left_ends.contains(&l.name)
                    && right_ends.contains(&r.name))
                .then(|| (l.name.clone(), r.name.clone()))
            }
            _ => None,
        },
        _ => None,
    });
    let Some((left_end, right_end)) = ends else {
        return Err(refuse());
    };
    let (left, right, condition) = sides(engine, join, on, windows)?;
    let stream = left.window_join(&right, condition, &left_end, &right_end)?;
    replacement(&stream, join)
}

/// The name column `name` of `plan`'s output has where it is computed:
/// followed down through renames (`window_end AS endtime`), subquery
/// aliases and filters.
fn traced_name(plan: &LogicalPlan, name: &str) -> String {
    match plan {
        LogicalPlan::Projection(p) => {
            let Some(at) = p.schema.fields().iter().position(|f| f.name() == name) else {
                return name.to_string();
            };
            let read = match &p.expr[at] {
                Expr::Alias(alias) => alias.expr.as_ref(),
                other => other,
            };
            match read {
                Expr::Column(c) => traced_name(&p.input, &c.name),
                _ => String::new(),
            }
        }
        LogicalPlan::Aggregate(a) => {
            // A key passes through an aggregate that groups by it.
            let at = a.schema.fields().iter().position(|f| f.name() == name);
            match at.and_then(|i| a.group_expr.get(i)) {
                Some(Expr::Column(c)) => traced_name(&a.input, &c.name),
                _ => name.to_string(),
            }
        }
        LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_) => traced_name(plan.inputs()[0], name),
        _ => name.to_string(),
    }
}

/// A scan of the join operator's stream, its columns named as the join's
/// (with the sides' qualifiers), to put in the join's place.
fn replacement(stream: &DStream, join: &Join) -> Result<LogicalPlan> {
    let schema = stream.schema();
    let columns: Vec<Expr> = schema
        .fields()
        .iter()
        .zip(join.schema.iter())
        .map(|(field, (qualifier, original))| {
            Expr::Column(Column::new_unqualified(field.name()))
                .alias_qualified(qualifier.cloned(), original.name())
        })
        .collect();
    let name = TableReference::bare(format!("__join_{}", stream.id()));
    Ok(
        LogicalPlanBuilder::scan(name, provider_as_source(stream.table() as Arc<_>), None)?
            .project(columns)?
            .build()?,
    )
}
