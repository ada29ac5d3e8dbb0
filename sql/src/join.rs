//! Joins in SQL: which join a query asks for, and the stateful ones cut out
//! of DataFusion's plan into engine join operators.
//!
//! | the join | what runs | when rows meet |
//! |---|---|---|
//! | a stream with a static table (`CREATE EXTERNAL TABLE`) | the per-batch plan | every batch's rows with the table (inner, left, semi, anti) |
//! | two streams, no window, no time condition | the per-batch plan (DStream `join`) | rows of the same batch |
//! | two streams, the same processing-time window on both sides | the window operators, then the per-batch plan | a window's rows, at its slide (windows close in the same batch) |
//! | two streams, the same event-time window on both sides, `ON` the window bounds | a window join ([`brooklet_engine::join::window`]) | a window's rows, when both sides' watermarks pass its end |
//! | two streams, `ON` a bound on each side's event time (`s.ts BETWEEN o.ts AND o.ts + INTERVAL '4' HOUR`) | an interval join ([`brooklet_engine::join::interval`]) | rows within the bounds, in the batch in which the second arrives |
//!
//! What would silently give wrong rows is refused with the reason: windows
//! that differ between the sides, a window on one side only, a session
//! window, a time condition with one bound only (its state would grow
//! forever), or one written in `WHERE` instead of `ON`, and outer joins that
//! would emit a table's unmatched rows every batch.

use std::sync::Arc;

use brooklet_engine::datafusion::datasource::{provider_as_source, source_as_provider};
use brooklet_engine::join::JoinCondition;
use brooklet_engine::{Assigner, DStream, Engine, IntervalBounds, StreamTable};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, JoinType, ScalarValue, TableReference};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Join, LogicalPlan, LogicalPlanBuilder, Operator};

use crate::error::{Error, Result};
use crate::window::{SideWindow, WindowTable, side_window};

/// `plan` with every join of two streams that keeps rows across batches
/// replaced by a scan of its join operator's stream; joins that run per
/// batch stay in the plan. Refuses joins that would silently be wrong.
pub(crate) fn plan_joins(
    engine: &Engine,
    plan: &LogicalPlan,
    windows: &[WindowTable],
) -> Result<LogicalPlan> {
    let inputs: Vec<LogicalPlan> = plan
        .inputs()
        .into_iter()
        .map(|input| plan_joins(engine, input, windows))
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
        LogicalPlan::Join(join) => Ok(plan_join(engine, join, windows)?.unwrap_or(plan)),
        LogicalPlan::Filter(filter) => {
            if let LogicalPlan::Join(join) = filter.input.as_ref()
                && reads_stream(&join.left)
                && reads_stream(&join.right)
                && !time_bounds(engine, join, &filter.predicate)?.is_empty()
            {
                return Err(Error::plan(
                    "a condition on both streams' times is written in the join's ON clause \
                     (… JOIN s ON o.id = s.order_id AND s.ts BETWEEN o.ts AND o.ts + INTERVAL '1' HOUR), \
                     not in WHERE",
                ));
            }
            Ok(plan)
        }
        _ => Ok(plan),
    }
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

/// The join's whole condition: `USING` keys and `ON`.
fn condition(join: &Join) -> Option<Expr> {
    join.on
        .iter()
        .map(|(l, r)| l.clone().eq(r.clone()))
        .chain(join.filter.clone())
        .reduce(Expr::and)
}

/// The operator for one join, or `None` when it runs per batch.
fn plan_join(engine: &Engine, join: &Join, windows: &[WindowTable]) -> Result<Option<LogicalPlan>> {
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
        (SideWindow::Event(a), SideWindow::Event(b)) if a == b => {
            if matches!(a, Assigner::Session { .. }) {
                return Err(Error::plan(
                    "session windows are not joined: each key's sessions have bounds of their \
                     own; join tumbling or sliding windows",
                ));
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
    if bounds.is_empty() {
        return Ok(None);
    }
    interval_join(engine, join, on, bounds).map(Some)
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

/// A side of a comparison: a time column of one side plus a constant
/// (an interval, or milliseconds for a numeric time column): which side,
/// the column and the constant.
fn time_term(expr: &Expr, join: &Join, times: &TimeColumns) -> Option<(bool, String, i64)> {
    match expr {
        Expr::Column(c) => {
            let on_left = join.left.schema().has_column(c);
            let on_right = join.right.schema().has_column(c);
            let names = if on_left { &times.left } else { &times.right };
            if on_left == on_right || !names.contains(&c.name) {
                return None;
            }
            Some((on_left, c.name.clone(), 0))
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (side, column, offset) = time_term(left, join, times)?;
            let millis = interval_millis(right)?;
            match op {
                Operator::Plus => Some((side, column, offset + millis)),
                Operator::Minus => Some((side, column, offset - millis)),
                _ => None,
            }
        }
        Expr::Cast(cast) => time_term(&cast.expr, join, times),
        _ => None,
    }
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

/// The bounds that `predicate`'s conjuncts put on `right.t - left.t`, for
/// comparisons between a time column of each side.
fn time_bounds(engine: &Engine, join: &Join, predicate: &Expr) -> Result<Vec<TimeBound>> {
    let times = TimeColumns::of(engine, join);
    let mut bounds: Vec<TimeBound> = Vec::new();
    let mut add = |a: &Expr, op: Operator, b: &Expr| {
        let (Some(a), Some(b)) = (time_term(a, join, &times), time_term(b, join, &times)) else {
            return;
        };
        if a.0 == b.0 {
            return;
        }
        // Written as (left + x) op (right + y), that is right.t - left.t op' x - y.
        let (l, r, op) = if a.0 { (a, b, op) } else { (b, a, flip(op)) };
        let d = l.2 - r.2;
        let (lower, upper) = match op {
            Operator::Lt | Operator::LtEq => (Some(d), None),
            Operator::Gt | Operator::GtEq => (None, Some(d)),
            Operator::Eq => (Some(d), Some(d)),
            _ => return,
        };
        let bound = bounds.iter_mut().find(|b| b.left == l.1 && b.right == r.1);
        match bound {
            Some(b) => {
                b.lower = b.lower.max(lower);
                b.upper = match (b.upper, upper) {
                    (Some(x), Some(y)) => Some(x.min(y)),
                    (x, y) => x.or(y),
                };
            }
            None => bounds.push(TimeBound {
                left: l.1,
                right: r.1,
                lower,
                upper,
            }),
        }
    };
    for conjunct in split_conjunction(predicate) {
        match conjunct {
            Expr::Between(between) if !between.negated => {
                add(&between.low, Operator::LtEq, &between.expr);
                add(&between.expr, Operator::LtEq, &between.high);
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => add(left, *op, right),
            _ => {}
        }
    }
    Ok(bounds)
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
    bounds: Vec<TimeBound>,
) -> Result<LogicalPlan> {
    let [bound] = bounds.as_slice() else {
        return Err(Error::plan(
            "an interval join bounds one time column of each side; this condition compares \
             several pairs",
        ));
    };
    let (Some(lower), Some(upper)) = (bound.lower, bound.upper) else {
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
        IntervalBounds { lower, upper },
    )?;
    replacement(&stream, join)
}

fn window_join(
    engine: &Engine,
    join: &Join,
    on: Option<Expr>,
    windows: &[WindowTable],
) -> Result<LogicalPlan> {
    let equates_end = on.as_ref().is_some_and(|on| {
        split_conjunction(on).iter().any(|c| match c {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) => matches!(
                (left.as_ref(), right.as_ref()),
                (Expr::Column(a), Expr::Column(b)) if a.name == "window_end" && b.name == "window_end"
                    && join.left.schema().has_column(a) != join.left.schema().has_column(b)
            ),
            _ => false,
        })
    });
    let Some(on) = on.filter(|_| equates_end) else {
        return Err(Error::plan(
            "a window join is ON the windows' bounds and keys: \
             … ON a.window_start = b.window_start AND a.window_end = b.window_end AND a.k = b.k",
        ));
    };
    let (left, right, condition) = sides(engine, join, on, windows)?;
    let stream = left.window_join(&right, condition, "window_end", "window_end")?;
    replacement(&stream, join)
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
