//! Windows and running aggregates in SQL.
//!
//! Two spellings of a window, one operator underneath:
//!
//! - group-by functions: `tumble(size)`, `hop(slide, size)` (Arroyo's
//!   order) and Spark's `window(size [, slide])` in `GROUP BY`; the
//!   window's value is a struct `{start, end}`;
//! - Flink's table functions: `FROM TABLE(TUMBLE(TABLE s,
//!   DESCRIPTOR(proctime), size))` and `HOP(…, slide, size)`, whose rows are
//!   the source's columns with `window_start` and `window_end` appended.
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
//! COMPLETE` is a running aggregate (`crate::planner`).
//!
//! The functions are registered with DataFusion as placeholders so that the
//! whole query is planned (and type-checked) by DataFusion; then the
//! aggregate that groups by a window is cut out of the plan:
//!
//! ```text
//! upper plan (projection, HAVING, …)      stateless, per emitted window
//!   Aggregate(group: window, k; aggs)  →  WindowAggregate(k; aggs, spec)
//!     lower plan (FROM, WHERE, …)         stateless, per batch
//! ```
//!
//! The window's value in the upper plan is a struct `{start, end}` (as in
//! Spark), built from the operator's `window_start` and `window_end`.

use std::time::Duration;

use brooklet_engine::time::{format_duration, parse_duration};
use std::sync::Arc;

use brooklet_engine::datafusion::sql::sqlparser::ast;
use brooklet_engine::event_window::IS_FINAL;
use brooklet_engine::{
    Assigner, DStream, EmitMode, Engine, EventWindow, RunningSpec, WindowEmit, WindowSpec,
};
use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::provider_as_source;
use datafusion::functions::core::expr_fn::named_struct;
use datafusion::functions::expr_fn::date_bin;
use datafusion::logical_expr::{
    Aggregate, ColumnarValue, Expr, LogicalPlan, LogicalPlanBuilder, Projection,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::{cast, col, lit};

use crate::error::{Error, Result};

/// The names of the window functions.
const WINDOW_FUNCTIONS: &[&str] = &["tumble", "hop", "window", "session", "session_window"];

/// The type of a window value: `{start, end}` timestamps (milliseconds).
fn window_type() -> DataType {
    let time = DataType::Timestamp(TimeUnit::Millisecond, None);
    DataType::Struct(Fields::from(vec![
        Field::new("start", time.clone(), false),
        Field::new("end", time, false),
    ]))
}

/// A window function as DataFusion sees it: typed, never evaluated.
#[derive(Debug, PartialEq, Eq, Hash)]
struct WindowFunction {
    name: &'static str,
    signature: Signature,
}

impl ScalarUDFImpl for WindowFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(window_type())
    }

    fn invoke_with_args(
        &self,
        _args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        datafusion::common::plan_err!("{}() is a window: use it in GROUP BY", self.name)
    }
}

/// The window functions, to register in the session.
pub(crate) fn functions() -> Vec<ScalarUDF> {
    WINDOW_FUNCTIONS
        .iter()
        .map(|name| {
            ScalarUDF::new_from_impl(WindowFunction {
                name,
                signature: Signature::variadic_any(Volatility::Volatile),
            })
        })
        .collect()
}

fn window_call(expr: &Expr) -> Option<(&str, &[Expr])> {
    match expr {
        Expr::ScalarFunction(f) if WINDOW_FUNCTIONS.contains(&f.func.name()) => {
            Some((f.func.name(), &f.args))
        }
        _ => None,
    }
}

/// The length of interval `arg` given to `function`: positive.
fn duration_of(function: &str, arg: &Expr) -> Result<Duration> {
    let duration = interval_of(function, arg)?;
    if duration.is_zero() {
        return Err(Error::plan(format!(
            "{function}() needs a positive interval, got {arg}"
        )));
    }
    Ok(duration)
}

/// The length of interval `arg` given to `function`: zero or more.
fn interval_of(function: &str, arg: &Expr) -> Result<Duration> {
    let millis = match arg {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) if v.months == 0 => {
            v.days as i64 * 86_400_000 + v.nanoseconds / 1_000_000
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => {
            v.days as i64 * 86_400_000 + v.milliseconds as i64
        }
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => {
            return Ok(parse_duration(s)?);
        }
        other => {
            return Err(Error::plan(format!(
                "{function}() takes intervals such as INTERVAL '10' SECOND or '10 seconds', not {other}"
            )));
        }
    };
    if millis < 0 {
        return Err(Error::plan(format!(
            "{function} needs an interval of zero or more, got {arg}"
        )));
    }
    Ok(Duration::from_millis(millis as u64))
}

/// A window as SQL describes it: over processing time (batch times) or
/// over an event-time column.
#[derive(Debug, Clone, PartialEq)]
enum SqlWindow {
    Processing(WindowSpec),
    Event { column: String, assigner: Assigner },
}

/// The window a window function call describes.
fn spec_of(function: &str, args: &[Expr]) -> Result<SqlWindow> {
    let (column, sizes) = match args.first() {
        Some(Expr::Column(c)) => (Some(c.name.clone()), &args[1..]),
        _ => (None, args),
    };
    let d = |i: usize| duration_of(function, &sizes[i]);
    let usage = |function: &str| match function {
        "tumble" => "([ts,] size)",
        "hop" => "([ts,] slide, size)",
        "session" | "session_window" => "(ts, gap)",
        _ => "([ts,] size) or ([ts,] size, slide)",
    };
    let spec = match (function, sizes.len()) {
        ("tumble", 1) | ("window", 1) => WindowSpec::tumbling(d(0)?),
        ("hop", 2) => WindowSpec::sliding(d(1)?, d(0)?),
        ("window", 2) => WindowSpec::sliding(d(0)?, d(1)?),
        ("session" | "session_window", 1) => {
            let Some(column) = column else {
                return Err(Error::plan(format!(
                    "{function}() is an event-time window: write {function}(ts, gap) with a column \
                     that has a WATERMARK"
                )));
            };
            return Ok(SqlWindow::Event {
                column,
                assigner: Assigner::Session { gap: d(0)? },
            });
        }
        _ => {
            return Err(Error::plan(format!(
                "{function}() takes {}, got {} arguments",
                usage(function),
                args.len()
            )));
        }
    };
    Ok(match column {
        Some(column) => SqlWindow::Event {
            column,
            assigner: Assigner::Fixed(spec),
        },
        None => SqlWindow::Processing(spec),
    })
}

fn strip_qualifiers(expr: Expr) -> Result<Expr> {
    Ok(expr
        .transform(|e| match e {
            Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(Expr::Column(
                Column::new_unqualified(c.name),
            ))),
            other => Ok(Transformed::no(other)),
        })?
        .data)
}

/// A window table function of the query (`TABLE(TUMBLE(TABLE s, …))`),
/// registered under a name of its own while the query is planned.
pub(crate) struct WindowTable {
    name: String,
    spec: SqlWindow,
    /// The source's rows of each batch, with placeholder bounds: what an
    /// aggregate over the window reads (the window operator adds the bounds).
    per_batch: DStream,
}

impl WindowTable {
    /// The name the query's plan knows the table by.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

/// The processing-time column a window table function may name.
pub const PROCTIME: &str = "proctime";

/// Replaces every window table function in `query`'s FROM clauses with a
/// table registered in the session: DStream `window()` over the source,
/// with `window_start` and `window_end` appended. `proctime` (in
/// `DESCRIPTOR(proctime)`) is the processing time, the batch time, which
/// every stream has; a descriptor naming a column of the source asks for
/// event time.
pub(crate) async fn register_window_tables(
    engine: &Engine,
    query: &mut ast::Query,
    tables: &mut Vec<WindowTable>,
) -> Result<()> {
    if let Some(with) = query.with.as_mut() {
        for cte in &mut with.cte_tables {
            Box::pin(register_window_tables(engine, &mut cte.query, tables)).await?;
        }
    }
    Box::pin(rewrite_set_expr(engine, &mut query.body, tables)).await
}

async fn rewrite_set_expr(
    engine: &Engine,
    body: &mut ast::SetExpr,
    tables: &mut Vec<WindowTable>,
) -> Result<()> {
    match body {
        ast::SetExpr::Select(select) => {
            for from in &mut select.from {
                rewrite_factor(engine, &mut from.relation, tables).await?;
                for join in &mut from.joins {
                    rewrite_factor(engine, &mut join.relation, tables).await?;
                }
            }
        }
        ast::SetExpr::Query(q) => Box::pin(register_window_tables(engine, q, tables)).await?,
        ast::SetExpr::SetOperation { left, right, .. } => {
            Box::pin(rewrite_set_expr(engine, left, tables)).await?;
            Box::pin(rewrite_set_expr(engine, right, tables)).await?;
        }
        _ => {}
    }
    Ok(())
}

async fn rewrite_factor(
    engine: &Engine,
    factor: &mut ast::TableFactor,
    tables: &mut Vec<WindowTable>,
) -> Result<()> {
    let (function, alias) = match factor {
        ast::TableFactor::Derived { subquery, .. } => {
            return Box::pin(register_window_tables(engine, subquery, tables)).await;
        }
        ast::TableFactor::NestedJoin {
            table_with_joins, ..
        } => {
            Box::pin(rewrite_factor(
                engine,
                &mut table_with_joins.relation,
                tables,
            ))
            .await?;
            for join in &mut table_with_joins.joins {
                Box::pin(rewrite_factor(engine, &mut join.relation, tables)).await?;
            }
            return Ok(());
        }
        ast::TableFactor::TableFunction {
            expr: ast::Expr::Function(function),
            alias,
        } => (function, alias),
        _ => return Ok(()),
    };
    let name = function.name.to_string().to_ascii_lowercase();
    if !["tumble", "hop"].contains(&name.as_str()) {
        return Err(Error::plan(format!(
            "TABLE({name}(…)) is not a window table function; use TUMBLE or HOP"
        )));
    }
    let table = window_table(engine, &name, function).await?;
    *factor = ast::TableFactor::Table {
        name: ast::ObjectName::from(vec![ast::Ident::new(table.name.clone())]),
        alias: alias.take(),
        args: None,
        with_hints: vec![],
        version: None,
        with_ordinality: false,
        partitions: vec![],
        json_path: None,
        sample: None,
        index_hints: vec![],
    };
    tables.push(table);
    Ok(())
}

/// The arguments of `TUMBLE(TABLE s, DESCRIPTOR(c), size)` or
/// `HOP(TABLE s, DESCRIPTOR(c), slide, size)`, positional or named
/// (`DATA =>`, `TIMECOL =>`, `SLIDE =>`, `SIZE =>`).
async fn window_table(
    engine: &Engine,
    function: &str,
    call: &ast::Function,
) -> Result<WindowTable> {
    let usage = match function {
        "tumble" => "TUMBLE(TABLE source, DESCRIPTOR(proctime), size)",
        _ => "HOP(TABLE source, DESCRIPTOR(proctime), slide, size)",
    };
    let ast::FunctionArguments::List(list) = &call.args else {
        return Err(Error::plan(format!("window table function: write {usage}")));
    };
    let positions: &[&str] = match function {
        "tumble" => &["data", "timecol", "size"],
        _ => &["data", "timecol", "slide", "size"],
    };
    let mut args: Vec<Option<&ast::Expr>> = vec![None; positions.len()];
    for (i, arg) in list.args.iter().enumerate() {
        let (slot, expr) = match arg {
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => (i, e),
            ast::FunctionArg::Named {
                name,
                arg: ast::FunctionArgExpr::Expr(e),
                ..
            } => {
                let key = name.value.to_ascii_lowercase();
                let slot = positions.iter().position(|p| *p == key).ok_or_else(|| {
                    Error::plan(format!(
                        "{} has no argument '{key}'; it takes {}",
                        function.to_uppercase(),
                        positions.join(", ")
                    ))
                })?;
                (slot, e)
            }
            other => return Err(Error::plan(format!("unexpected argument {other}: {usage}"))),
        };
        if slot >= args.len() {
            return Err(Error::plan(format!(
                "{} takes {} arguments: {usage}",
                function.to_uppercase(),
                positions.len()
            )));
        }
        args[slot] = Some(expr);
    }
    let missing = |what: &str| Error::plan(format!("missing {what}: {usage}"));
    let source = match args[0].ok_or_else(|| missing("the table"))? {
        ast::Expr::Identifier(ident) => crate::parser::normalize(ident),
        ast::Expr::CompoundIdentifier(parts) => {
            crate::parser::normalize(parts.last().expect("not empty"))
        }
        other => {
            return Err(Error::plan(format!(
                "the first argument of {} must name a source (TABLE source), not {other}",
                function.to_uppercase()
            )));
        }
    };
    let source_stream = DStream::source(engine, &source)?;
    let time = match args[1].ok_or_else(|| missing("the time column"))? {
        ast::Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("descriptor") => match &f
            .args
        {
            ast::FunctionArguments::List(l) if l.args.len() == 1 => match &l.args[0] {
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::Identifier(
                    ident,
                ))) => crate::parser::normalize(ident),
                other => return Err(Error::plan(format!("DESCRIPTOR({other}): name a column"))),
            },
            _ => return Err(Error::plan("DESCRIPTOR takes one column name")),
        },
        other => {
            return Err(Error::plan(format!(
                "the time column is given as DESCRIPTOR(proctime), not {other}"
            )));
        }
    };
    let event_time = time != PROCTIME;
    if event_time && source_stream.schema().field_with_name(&time).is_err() {
        return Err(Error::plan(format!(
            "source '{source}' has no column '{time}'; name its event-time column, or use \
             DESCRIPTOR(proctime) for a window over processing time (batch time)"
        )));
    }
    let mut durations = Vec::new();
    for (slot, what) in positions.iter().enumerate().skip(2) {
        let expr = args[slot].ok_or_else(|| missing(what))?;
        durations.push(literal_duration(engine, function, expr).await?);
    }
    let spec = match durations.as_slice() {
        [size] => WindowSpec::tumbling(*size),
        [slide, size] => WindowSpec::sliding(*size, *slide),
        _ => unreachable!("two or three positions"),
    };
    let bound = |name: &str| lit(ScalarValue::TimestampMillisecond(Some(0), None)).alias(name);
    let mut columns: Vec<Expr> = source_stream
        .schema()
        .fields()
        .iter()
        .map(|f| Expr::Column(Column::new_unqualified(f.name())))
        .collect();
    let source_columns = columns.clone();
    columns.push(bound("window_start"));
    columns.push(bound("window_end"));
    let per_batch = source_stream.select(columns)?;
    let (registered, spec) = if event_time {
        spec.validate_event_time()?;
        // Read without an aggregate, each row carries its window's bounds
        // (Flink's window TVF); a hop would repeat rows, which only an
        // aggregate may ask for.
        let registered = if spec.length == spec.slide {
            let millis = DataType::Timestamp(TimeUnit::Millisecond, None);
            let start = cast(
                date_bin(
                    lit(ScalarValue::new_interval_mdn(
                        0,
                        0,
                        spec.length.as_nanos() as i64,
                    )),
                    cast(Expr::Column(Column::new_unqualified(&time)), millis.clone()),
                    lit(ScalarValue::TimestampMillisecond(Some(0), None)),
                ),
                millis.clone(),
            );
            let end = cast(
                cast(start.clone(), DataType::Int64) + lit(spec.length.as_millis() as i64),
                millis,
            );
            let mut columns = source_columns;
            columns.push(start.alias("window_start"));
            columns.push(end.alias("window_end"));
            source_stream.select(columns)?
        } else {
            per_batch.clone()
        };
        (
            registered,
            SqlWindow::Event {
                column: time,
                assigner: Assigner::Fixed(spec),
            },
        )
    } else {
        (
            source_stream.window_with_bounds(spec)?,
            SqlWindow::Processing(spec),
        )
    };
    let name = format!("__{function}_{}", registered.id());
    engine
        .session()
        .register_table(name.as_str(), registered.table())?;
    Ok(WindowTable {
        name,
        spec,
        per_batch,
    })
}

/// The value of a constant interval expression, via DataFusion.
pub(crate) async fn literal_duration(
    engine: &Engine,
    function: &str,
    expr: &ast::Expr,
) -> Result<Duration> {
    duration_of(function, &literal_value(engine, expr).await?)
}

/// The value of a constant interval expression that may be zero (a
/// watermark's delay).
pub(crate) async fn literal_interval(
    engine: &Engine,
    function: &str,
    expr: &ast::Expr,
) -> Result<Duration> {
    interval_of(function, &literal_value(engine, expr).await?)
}

/// A constant expression, evaluated by DataFusion's planner.
async fn literal_value(engine: &Engine, expr: &ast::Expr) -> Result<Expr> {
    let plan = engine
        .session()
        .state()
        .create_logical_plan(&format!("SELECT {expr}"))
        .await?;
    let LogicalPlan::Projection(projection) = plan else {
        return Err(Error::plan(format!("{expr} is not an interval")));
    };
    Ok(match &projection.expr[0] {
        Expr::Alias(a) => a.expr.as_ref().clone(),
        other => other.clone(),
    })
}

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

/// Whether any node of `plan` (itself included) is `wanted`.
pub(crate) fn any_node(plan: &LogicalPlan, wanted: impl Fn(&LogicalPlan) -> bool) -> bool {
    let mut found = false;
    let _ = plan.apply(|p| {
        found = wanted(p);
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

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
                    if *one != window || *its_sources != sources || session(one) {
                        return Err(Error::plan(format!(
                            "windows combined in one query must be the same tumbling or sliding \
                             window over the same sources, so that they close in the same batch; \
                             here {} over {} and {} over {}",
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
    let aggregate = match aggregates.as_slice() {
        [one] => one,
        [] => {
            return Err(Error::plan(format!(
                "{} needs a GROUP BY (a running aggregate); without one, remove it",
                match running.emit {
                    EmitMode::Changes => "EMIT CHANGES",
                    EmitMode::Complete => "EMIT COMPLETE",
                }
            )));
        }
        _ => return Err(Error::plan("a running aggregate may have one GROUP BY")),
    };
    let stream = DStream::from_plan(engine, aggregate.input.as_ref().clone())?.running_aggregate(
        aggregate
            .group_expr
            .iter()
            .map(|e| strip_qualifiers(e.clone()))
            .collect::<Result<_>>()?,
        strip_all(&aggregate.aggr_expr)?,
        running,
    )?;
    let rewritten = replace_aggregate(plan, aggregate, &stream, |_| None, |i| i)?;
    Ok(Some(DStream::from_plan(engine, rewritten)?))
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
    let keys = aggregate
        .group_expr
        .iter()
        .enumerate()
        .filter(|(i, _)| !skip.contains(i))
        .map(|(_, e)| strip_qualifiers(e.clone()))
        .collect::<Result<_>>()?;
    let input = DStream::from_plan(engine, input)?;
    let mut sources = input.sources();
    sources.sort();
    let aggregates = strip_all(&aggregate.aggr_expr)?;
    let stream = match spec {
        SqlWindow::Processing(spec) => {
            if running.is_some() {
                return Err(Error::plan(
                    "EMIT CHANGES and EMIT COMPLETE are for an unwindowed GROUP BY or an \
                     event-time window; a processing-time window emits once, when it closes",
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

/// An event-time HOP table read other than by a window aggregate (which
/// replaced its scans) would see placeholder bounds: refused.
fn refuse_raw_hop_tables(plan: &LogicalPlan, windows: &[WindowTable]) -> Result<()> {
    for table in windows {
        if let SqlWindow::Event {
            assigner: Assigner::Fixed(spec),
            ..
        } = &table.spec
            && spec.length != spec.slide
            && any_node(
                plan,
                |p| matches!(p, LogicalPlan::TableScan(s) if s.table_name.table() == table.name()),
            )
        {
            return Err(Error::plan(
                "an event-time HOP table is read by an aggregate grouped by window_start, \
                 window_end; without one, use TUMBLE (each row gets its window's bounds)",
            ));
        }
    }
    Ok(())
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
            assigner: Assigner::Session { gap },
        } => format!("sessions of gap {} on {column}", format_duration(*gap)),
    }
}

fn strip_all(exprs: &[Expr]) -> Result<Vec<Expr>> {
    exprs.iter().map(|e| strip_qualifiers(e.clone())).collect()
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

/// `plan` with `aggregate` replaced by a scan of `stream`, shaped as the
/// aggregate was (same columns, same names): column `i` of the aggregate is
/// `special(i)` or column `position(i)` of the stream.
fn replace_aggregate(
    plan: &LogicalPlan,
    aggregate: &Aggregate,
    stream: &DStream,
    special: impl Fn(usize) -> Option<Expr>,
    position: impl Fn(usize) -> usize,
) -> Result<LogicalPlan> {
    let schema = stream.schema();
    let mut columns = Vec::with_capacity(aggregate.schema.fields().len());
    for (i, (qualifier, field)) in aggregate.schema.iter().enumerate() {
        let expr = match special(i) {
            Some(expr) => expr,
            None => {
                let name = schema.field(position(i)).name();
                let column = Expr::Column(Column::new_unqualified(name));
                if qualifier.is_none() && name == field.name() {
                    // Same name: pass it through (an alias would shadow it ambiguously).
                    columns.push(column);
                    continue;
                }
                column
            }
        };
        columns.push(expr.alias_qualified(qualifier.cloned(), field.name()));
    }
    // An updating window's `is_final` column goes through to the output.
    let updating = schema.field_with_name(IS_FINAL).is_ok();
    if updating && plan.schema().field_with_unqualified_name(IS_FINAL).is_ok() {
        return Err(Error::plan(format!(
            "{IS_FINAL} is the column EMIT CHANGES adds to tell updates from final rows; \
             name the query's column otherwise"
        )));
    }
    if updating {
        columns.push(col(IS_FINAL));
    }
    let replacement =
        LogicalPlanBuilder::scan("stateful", provider_as_source(stream.table()), None)?
            .project(columns)?
            .build()?;
    let target = LogicalPlan::Aggregate(aggregate.clone());
    let mut replaced = false;
    let rewritten = plan
        .clone()
        .transform_up(|node| {
            if node == target {
                replaced = true;
                return Ok(Transformed::yes(replacement.clone()));
            }
            if !updating {
                return Ok(Transformed::yes(node.recompute_schema()?));
            }
            Ok(Transformed::yes(pass_is_final(node)?))
        })?
        .data;
    if !replaced {
        // Never expected: the aggregate comes from this very plan.
        return Err(Error::plan(
            "internal: the window aggregate was not found in the plan",
        ));
    }
    if updating
        && rewritten
            .schema()
            .field_with_unqualified_name(IS_FINAL)
            .is_err()
    {
        return Err(Error::plan(
            "EMIT CHANGES over an event-time window: the output must keep is_final",
        ));
    }
    Ok(rewritten)
}

/// `node` (above an updating window) with the `is_final` column of its
/// input kept: projections pass it on; nodes that would combine rows of
/// different windows' updates are refused.
fn pass_is_final(node: LogicalPlan) -> datafusion::error::Result<LogicalPlan> {
    let found = node.inputs().iter().find_map(|input| {
        input
            .schema()
            .qualified_field_with_unqualified_name(IS_FINAL)
            .ok()
            .map(|(q, _)| Column::new(q.cloned(), IS_FINAL))
    });
    let Some(column) = found else {
        return node.recompute_schema();
    };
    match node {
        LogicalPlan::Projection(p) => {
            if p.schema.field_with_unqualified_name(IS_FINAL).is_ok() {
                return Ok(LogicalPlan::Projection(p));
            }
            let mut exprs = p.expr.clone();
            exprs.push(Expr::Column(column));
            Ok(LogicalPlan::Projection(Projection::try_new(
                exprs,
                Arc::clone(&p.input),
            )?))
        }
        LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::SubqueryAlias(_) => node.recompute_schema(),
        other => datafusion::common::plan_err!(
            "EMIT CHANGES over an event-time window emits updates; {} over them is not \
             supported (aggregate the window's final rows instead, without EMIT CHANGES)",
            other.display()
        ),
    }
}

/// Registers the window functions with the engine's session.
pub(crate) fn register(engine: &Engine) {
    for f in functions() {
        engine.session().register_udf(f);
    }
}
