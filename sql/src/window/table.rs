//! Flink's window table functions: `FROM TABLE(TUMBLE(TABLE s,
//! DESCRIPTOR(proctime), size))`, `HOP(…, slide, size)`, `CUMULATE(TABLE s,
//! DESCRIPTOR(ts), step, size)` and `SESSION(TABLE s [PARTITION BY k, …],
//! DESCRIPTOR(ts), gap)`. Before DataFusion plans the
//! query, each call in a FROM clause is replaced by a table registered
//! under a name of its own ([`WindowTable`]), whose rows are the source's
//! columns with `window_start` and `window_end` appended. An aggregate that
//! reads one is cut out of the plan (`super::cut`); an event-time `HOP`,
//! `CUMULATE` or `SESSION` table read without one is refused (a row's hop
//! or cumulating windows are several; its session's bounds are known only
//! when the session closes).
//!
//! `CUMULATE` is on event time only: its windows are the event-time
//! operator's, panes of the step merged from the start of each period
//! (`brooklet_engine::Assigner::Cumulate`). Over processing time it is
//! refused, with the event-time spelling in the message.
//!
//! A session is per key, as in Flink: `PARTITION BY` names the keys, and
//! the aggregate groups by `window_start, window_end` and those keys (the
//! session operator keeps one set of sessions per group key). A session
//! table without `PARTITION BY` has one set of sessions for all rows.

use brooklet_engine::datafusion::sql::sqlparser::ast;
use brooklet_engine::{Assigner, DStream, Engine, WindowSpec};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Column, ScalarValue};
use datafusion::functions::expr_fn::date_bin;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::prelude::{cast, lit};

use super::functions::{SqlWindow, literal_duration};
use super::replace::any_node;
use crate::error::{Error, Result};

/// A window table function of the query (`TABLE(TUMBLE(TABLE s, …))`),
/// registered under a name of its own while the query is planned.
pub(crate) struct WindowTable {
    name: String,
    pub(super) spec: SqlWindow,
    /// The source's rows of each batch, with placeholder bounds: what an
    /// aggregate over the window reads (the window operator adds the bounds).
    pub(super) per_batch: DStream,
    /// A session table's `PARTITION BY` columns (empty without it); `None`
    /// for fixed windows.
    pub(super) partition_by: Option<Vec<String>>,
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
    if !["tumble", "hop", "cumulate", "session"].contains(&name.as_str()) {
        return Err(Error::plan(format!(
            "TABLE({name}(…)) is not a window table function; use TUMBLE, HOP, CUMULATE or SESSION"
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

/// The arguments of `TUMBLE(TABLE s, DESCRIPTOR(c), size)`, `HOP(TABLE s,
/// DESCRIPTOR(c), slide, size)`, `CUMULATE(TABLE s, DESCRIPTOR(c), step,
/// size)` or `SESSION(TABLE s [PARTITION BY k, …], DESCRIPTOR(c), gap)`,
/// positional or named (`DATA =>`, `TIMECOL =>`, `SLIDE =>`, `STEP =>`,
/// `SIZE =>`, `GAP =>`).
async fn window_table(
    engine: &Engine,
    function: &str,
    call: &ast::Function,
) -> Result<WindowTable> {
    let usage = match function {
        "tumble" => "TUMBLE(TABLE source, DESCRIPTOR(proctime), size)",
        "session" => "SESSION(TABLE source [PARTITION BY key, …], DESCRIPTOR(ts), gap)",
        "cumulate" => "CUMULATE(TABLE source, DESCRIPTOR(ts), step, size)",
        _ => "HOP(TABLE source, DESCRIPTOR(proctime), slide, size)",
    };
    let ast::FunctionArguments::List(list) = &call.args else {
        return Err(Error::plan(format!("window table function: write {usage}")));
    };
    let positions: &[&str] = match function {
        "tumble" => &["data", "timecol", "size"],
        "session" => &["data", "timecol", "gap"],
        "cumulate" => &["data", "timecol", "step", "size"],
        _ => &["data", "timecol", "slide", "size"],
    };
    let (partition_by, arguments) = partition_by(function, &list.args)?;
    let mut args: Vec<Option<&ast::Expr>> = vec![None; positions.len()];
    for (i, arg) in arguments.into_iter().enumerate() {
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
    if function == "session" {
        return session_table(engine, source_stream, time, durations[0], partition_by);
    }
    if function == "cumulate" {
        return cumulate_table(engine, source_stream, time, durations[0], durations[1]);
    }
    let spec = match durations.as_slice() {
        [size] => WindowSpec::tumbling(*size),
        [slide, size] => WindowSpec::sliding(*size, *slide),
        _ => unreachable!("two or three positions"),
    };
    let source_columns = columns_of(&source_stream);
    let per_batch = with_placeholder_bounds(&source_stream)?;
    let (registered, spec) = if event_time {
        spec.validate_event_time()?;
        // Read without an aggregate, each row carries its window's bounds
        // (Flink's window TVF); a hop would repeat rows, which only an
        // aggregate may ask for.
        let registered = if spec.length == spec.slide {
            let millis = DataType::Timestamp(TimeUnit::Millisecond, None);
            // A finer timestamp is binned as it is: casting it to
            // milliseconds first would round a time before 1970 toward
            // zero, up into the next window (the bounds are whole
            // milliseconds, so the start's cast is exact).
            let column = Expr::Column(Column::new_unqualified(&time));
            let finer = matches!(
                source_stream
                    .schema()
                    .field_with_name(&time)
                    .map(|f| f.data_type().clone()),
                Ok(DataType::Timestamp(
                    TimeUnit::Microsecond | TimeUnit::Nanosecond,
                    _
                ))
            );
            let binned = if finer {
                column
            } else {
                cast(column, millis.clone())
            };
            let start = cast(
                date_bin(
                    lit(ScalarValue::new_interval_mdn(
                        0,
                        0,
                        spec.length.as_nanos() as i64,
                    )),
                    binned,
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
    Ok(WindowTable {
        name: register(engine, function, &registered)?,
        spec,
        per_batch,
        partition_by: None,
    })
}

/// The columns of `stream`, as expressions.
fn columns_of(stream: &DStream) -> Vec<Expr> {
    stream
        .schema()
        .fields()
        .iter()
        .map(|f| Expr::Column(Column::new_unqualified(f.name())))
        .collect()
}

/// `source`'s rows with placeholder `window_start` and `window_end`: what
/// an aggregate over a window table reads (its window operator adds the
/// bounds).
fn with_placeholder_bounds(source: &DStream) -> Result<DStream> {
    let bound = |name: &str| lit(ScalarValue::TimestampMillisecond(Some(0), None)).alias(name);
    let mut columns = columns_of(source);
    columns.push(bound("window_start"));
    columns.push(bound("window_end"));
    Ok(source.select(columns)?)
}

/// Registers `table`, made by window table function `function`, in the
/// session under a name of its own; the name.
fn register(engine: &Engine, function: &str, table: &DStream) -> Result<String> {
    let name = format!("__{function}_{}", table.id());
    engine
        .session()
        .register_table(name.as_str(), table.table())?;
    Ok(name)
}

/// A session table's `PARTITION BY` keys (the `__partition_by(…)` argument
/// the parser made of them; empty without it), and its other arguments.
fn partition_by<'a>(
    function: &str,
    args: &'a [ast::FunctionArg],
) -> Result<(Vec<String>, Vec<&'a ast::FunctionArg>)> {
    let mut keys = Vec::new();
    let mut rest = Vec::new();
    for arg in args {
        let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::Function(f))) = arg
        else {
            rest.push(arg);
            continue;
        };
        if !f
            .name
            .to_string()
            .eq_ignore_ascii_case(crate::parser::PARTITION_BY_ARGUMENT)
        {
            rest.push(arg);
            continue;
        }
        if function != "session" {
            return Err(Error::plan(format!(
                "{} takes no PARTITION BY; only SESSION does",
                function.to_uppercase()
            )));
        }
        let ast::FunctionArguments::List(list) = &f.args else {
            return Err(Error::plan("PARTITION BY names columns"));
        };
        for key in &list.args {
            match key {
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::Identifier(
                    ident,
                ))) => keys.push(crate::parser::normalize(ident)),
                other => {
                    return Err(Error::plan(format!(
                        "PARTITION BY {other}: name a column of the source"
                    )));
                }
            }
        }
    }
    Ok((keys, rest))
}

/// `SESSION(TABLE source [PARTITION BY keys], DESCRIPTOR(time), gap)`:
/// event-time sessions, read only by an aggregate (`super::cut` checks that
/// it groups by the keys).
fn session_table(
    engine: &Engine,
    source_stream: DStream,
    time: String,
    gap: std::time::Duration,
    partition_by: Vec<String>,
) -> Result<WindowTable> {
    if time == PROCTIME {
        return Err(Error::plan(
            "SESSION is an event-time window: name the source's event-time column in \
             DESCRIPTOR(…)",
        ));
    }
    let schema = source_stream.schema();
    if let Some(missing) = partition_by
        .iter()
        .find(|k| schema.field_with_name(k).is_err())
    {
        return Err(Error::plan(format!(
            "PARTITION BY {missing}: the source has no such column"
        )));
    }
    brooklet_engine::EventWindow::session(&time, gap).validate()?;
    let per_batch = with_placeholder_bounds(&source_stream)?;
    Ok(WindowTable {
        name: register(engine, "session", &per_batch)?,
        spec: SqlWindow::Event {
            column: time,
            assigner: Assigner::Session { gap },
        },
        per_batch,
        partition_by: Some(partition_by),
    })
}

/// `CUMULATE(TABLE source, DESCRIPTOR(time), step, size)`: event-time
/// cumulating windows, read only by an aggregate.
fn cumulate_table(
    engine: &Engine,
    source_stream: DStream,
    time: String,
    step: std::time::Duration,
    size: std::time::Duration,
) -> Result<WindowTable> {
    if time == PROCTIME {
        return Err(Error::plan(
            "CUMULATE runs on event time: name the source's event-time column in \
             DESCRIPTOR(…) (over processing time, use TUMBLE or HOP)",
        ));
    }
    let window = brooklet_engine::EventWindow::cumulate(&time, step, size);
    window.validate()?;
    let per_batch = with_placeholder_bounds(&source_stream)?;
    Ok(WindowTable {
        name: register(engine, "cumulate", &per_batch)?,
        spec: SqlWindow::Event {
            column: time,
            assigner: window.assigner,
        },
        per_batch,
        partition_by: None,
    })
}

/// An event-time HOP, CUMULATE or SESSION table read other than by a window
/// aggregate (which replaced its scans) would see placeholder bounds:
/// refused.
pub(super) fn refuse_raw_hop_tables(plan: &LogicalPlan, windows: &[WindowTable]) -> Result<()> {
    for table in windows {
        let read = || {
            any_node(
                plan,
                |p| matches!(p, LogicalPlan::TableScan(s) if s.table_name.table() == table.name()),
            )
        };
        match &table.spec {
            SqlWindow::Event {
                assigner: Assigner::Fixed(spec),
                ..
            } if spec.length != spec.slide && read() => {
                return Err(Error::plan(
                    "an event-time HOP table is read by an aggregate grouped by window_start, \
                     window_end; without one, use TUMBLE (each row gets its window's bounds)",
                ));
            }
            SqlWindow::Event {
                assigner: Assigner::Cumulate(_),
                ..
            } if read() => {
                return Err(Error::plan(
                    "a CUMULATE table is read by an aggregate grouped by window_start, \
                     window_end (each row is in several windows)",
                ));
            }
            SqlWindow::Event {
                assigner: Assigner::Session { .. },
                ..
            } if read() => {
                return Err(Error::plan(
                    "a SESSION table is read by an aggregate grouped by window_start, \
                     window_end and its PARTITION BY keys (a session's bounds are known \
                     when it closes)",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}
