//! Flink's window table functions: `FROM TABLE(TUMBLE(TABLE s,
//! DESCRIPTOR(proctime), size))` and `HOP(…, slide, size)`. Before DataFusion
//! plans the query, each call in a FROM clause is replaced by a table
//! registered under a name of its own ([`WindowTable`]), whose rows are the
//! source's columns with `window_start` and `window_end` appended. An
//! aggregate that reads one is cut out of the plan (`super::cut`); an
//! event-time `HOP` table read without one is refused.

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

/// An event-time HOP table read other than by a window aggregate (which
/// replaced its scans) would see placeholder bounds: refused.
pub(super) fn refuse_raw_hop_tables(plan: &LogicalPlan, windows: &[WindowTable]) -> Result<()> {
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
