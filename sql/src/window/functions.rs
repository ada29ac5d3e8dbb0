//! The window functions `tumble`, `hop`, `window`, `session` and
//! `session_window`, as DataFusion sees them: placeholders, typed and never
//! evaluated, registered so that the whole query is planned (and
//! type-checked) by DataFusion. Also what a call describes ([`SqlWindow`],
//! read by [`spec_of`]) and the sizes it takes: intervals (`INTERVAL '10'
//! SECOND`) or duration strings (`'10 seconds'`), positive for a window,
//! zero or more for a watermark's delay.

use std::time::Duration;

use brooklet_engine::datafusion::sql::sqlparser::ast;
use brooklet_engine::time::parse_duration;
use brooklet_engine::{Assigner, Engine, WindowSpec};
use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

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

pub(super) fn window_call(expr: &Expr) -> Option<(&str, &[Expr])> {
    match expr {
        Expr::ScalarFunction(f) if WINDOW_FUNCTIONS.contains(&f.func.name()) => {
            Some((f.func.name(), &f.args))
        }
        _ => None,
    }
}

/// The length of interval `arg` given to `function`: positive.
fn duration_of(function: &str, arg: &Expr) -> Result<Duration> {
    match millis_of(function, arg)? {
        millis if millis > 0 => Ok(Duration::from_millis(millis as u64)),
        millis => Err(Error::plan(format!(
            "{function}() needs a positive interval, got {millis} ms"
        ))),
    }
}

/// The length of interval `arg` given to `function`: zero or more.
fn interval_of(function: &str, arg: &Expr) -> Result<Duration> {
    match millis_of(function, arg)? {
        millis if millis >= 0 => Ok(Duration::from_millis(millis as u64)),
        millis => Err(Error::plan(format!(
            "{function} needs an interval of zero or more, got {millis} ms"
        ))),
    }
}

/// The milliseconds of interval `arg` given to `function`, negative ones
/// included (each caller says what it takes).
fn millis_of(function: &str, arg: &Expr) -> Result<i64> {
    match arg {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) if v.months == 0 => {
            Ok(v.days as i64 * 86_400_000 + v.nanoseconds / 1_000_000)
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => {
            Ok(v.days as i64 * 86_400_000 + v.milliseconds as i64)
        }
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => Ok(i64::try_from(parse_duration(s)?.as_millis()).unwrap_or(i64::MAX)),
        other => Err(Error::plan(format!(
            "{function}() takes intervals such as INTERVAL '10' SECOND or '10 seconds', not {other}"
        ))),
    }
}

/// A window as SQL describes it: over processing time (batch times) or
/// over an event-time column.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum SqlWindow {
    Processing(WindowSpec),
    Event { column: String, assigner: Assigner },
}

/// The window a window function call describes.
pub(super) fn spec_of(function: &str, args: &[Expr]) -> Result<SqlWindow> {
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

/// Registers the window functions with the engine's session.
pub(crate) fn register(engine: &Engine) {
    for f in functions() {
        engine.session().register_udf(f);
    }
}
