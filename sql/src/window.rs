//! Windows in SQL, group-by form (processing time): `tumble(size)`,
//! `hop(slide, size)` (Arroyo's order) and Spark's `window(size [, slide])`
//! in `GROUP BY`. Sizes are intervals (`INTERVAL '10' SECOND`) or duration
//! strings (`'10 seconds'`).
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

use brooklet_engine::time::parse_duration;
use brooklet_engine::{DStream, Engine, WindowSpec};
use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::provider_as_source;
use datafusion::functions::core::expr_fn::named_struct;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, LogicalPlanBuilder, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::{col, lit};

use crate::error::{Error, Result};

/// The names of the window functions.
const WINDOW_FUNCTIONS: &[&str] = &["tumble", "hop", "window"];

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

fn duration_of(function: &str, arg: &Expr) -> Result<Duration> {
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
    if millis <= 0 {
        return Err(Error::plan(format!(
            "{function}() needs a positive interval, got {arg}"
        )));
    }
    Ok(Duration::from_millis(millis as u64))
}

/// The window a window function call describes.
fn spec_of(function: &str, args: &[Expr]) -> Result<WindowSpec> {
    if let Some(Expr::Column(c)) = args.first() {
        return Err(Error::plan(format!(
            "{function}() with a time column ({}) is an event-time window, which this version does not run yet; \
             leave the column out for a processing-time window",
            c.name
        )));
    }
    let d = |i: usize| duration_of(function, &args[i]);
    match (function, args.len()) {
        ("tumble", 1) | ("window", 1) => Ok(WindowSpec::tumbling(d(0)?)),
        ("hop", 2) => Ok(WindowSpec::sliding(d(1)?, d(0)?)),
        ("window", 2) => Ok(WindowSpec::sliding(d(0)?, d(1)?)),
        _ => Err(Error::plan(format!(
            "{function}() takes {}, got {} arguments",
            match function {
                "tumble" => "(size)",
                "hop" => "(slide, size)",
                _ => "(size) or (size, slide)",
            },
            args.len()
        ))),
    }
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

/// If `plan` groups by a window, the stream that runs it; `None` otherwise.
pub(crate) fn plan_windowed(engine: &Engine, plan: &LogicalPlan) -> Result<Option<DStream>> {
    let mut windowed = Vec::new();
    plan.apply(|p| {
        if let LogicalPlan::Aggregate(a) = p
            && a.group_expr.iter().any(|e| window_call(e).is_some())
        {
            windowed.push(a.clone());
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let aggregate = match windowed.len() {
        0 => return Ok(None),
        1 => windowed.remove(0),
        _ => return Err(Error::plan("a query may group by a window only once")),
    };
    let calls: Vec<usize> = (0..aggregate.group_expr.len())
        .filter(|i| window_call(&aggregate.group_expr[*i]).is_some())
        .collect();
    if calls.len() > 1 {
        return Err(Error::plan("GROUP BY may name one window"));
    }
    let at = calls[0];
    let (function, args) = window_call(&aggregate.group_expr[at]).expect("found above");
    let spec = spec_of(function, args)?;

    let input = DStream::from_plan(engine, aggregate.input.as_ref().clone())?;
    let group: Vec<Expr> = aggregate
        .group_expr
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != at)
        .map(|(_, e)| strip_qualifiers(e.clone()))
        .collect::<Result<_>>()?;
    let aggregates: Vec<Expr> = aggregate
        .aggr_expr
        .iter()
        .map(|e| strip_qualifiers(e.clone()))
        .collect::<Result<_>>()?;
    let window = input.window_aggregate(group, aggregates, spec)?;

    // The window's output, shaped as the aggregate was: same columns, same names.
    let window_schema = window.schema();
    let mut columns = Vec::with_capacity(aggregate.schema.fields().len());
    for (i, (qualifier, field)) in aggregate.schema.iter().enumerate() {
        let expr = if i == at {
            named_struct(vec![
                lit("start"),
                col("window_start"),
                lit("end"),
                col("window_end"),
            ])
        } else {
            // window_start, window_end, then the other columns in order.
            let position = if i < at { i + 2 } else { i + 1 };
            let name = window_schema.field(position).name();
            let column = Expr::Column(Column::new_unqualified(name));
            if qualifier.is_none() && name == field.name() {
                // Same name: pass it through (an alias would shadow it ambiguously).
                columns.push(column);
                continue;
            }
            column
        };
        columns.push(expr.alias_qualified(qualifier.cloned(), field.name()));
    }
    let replacement = LogicalPlanBuilder::scan("window", provider_as_source(window.table()), None)?
        .project(columns)?
        .build()?;
    let target = LogicalPlan::Aggregate(aggregate);
    let rewritten = plan
        .clone()
        .transform_up(|node| {
            if node == target {
                Ok(Transformed::yes(replacement.clone()))
            } else {
                Ok(Transformed::yes(node.recompute_schema()?))
            }
        })?
        .data;
    Ok(Some(DStream::from_plan(engine, rewritten)?))
}

/// Registers the window functions with the engine's session.
pub(crate) fn register(engine: &Engine) {
    for f in functions() {
        engine.session().register_udf(f);
    }
}
