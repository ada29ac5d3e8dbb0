//! Running aggregates: an unwindowed `GROUP BY` with `EMIT CHANGES` or
//! `EMIT COMPLETE` aggregates over all input so far (with the `state.ttl`
//! set when it was planned), not per batch. Its aggregate is replaced by the
//! engine's running aggregate, as a window's is by its window operator.
//! With `EMIT COMPLETE`, aggregates over it (`avg` of per-key maxima, say)
//! run per batch on the whole table it emits: the current answer.

use brooklet_engine::{DStream, EmitMode, Engine, RunningSpec};
use datafusion::logical_expr::{Aggregate, LogicalPlan};

use super::replace::{InputNames, replace_aggregate};
use crate::error::{Error, Result};

/// `plan`, whose `aggregates` were asked to `EMIT` as `running` and group by
/// no window, with its one aggregate run as a running aggregate.
pub(super) fn plan_running(
    engine: &Engine,
    plan: &LogicalPlan,
    aggregates: &[Aggregate],
    running: RunningSpec,
) -> Result<DStream> {
    let aggregate = match aggregates {
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
        several if running.emit == EmitMode::Complete => {
            // Every batch the innermost aggregate emits its whole current
            // table; the aggregates over it run per batch on that table, so
            // they give the current answer too (Spark's complete mode).
            let mut innermost = several
                .iter()
                .filter(|a| !super::any_node(&a.input, |p| matches!(p, LogicalPlan::Aggregate(_))));
            match (innermost.next(), innermost.next()) {
                (Some(one), None) => one,
                _ => {
                    return Err(Error::plan(
                        "EMIT COMPLETE runs the innermost GROUP BY over all input; this query \
                         has several side by side",
                    ));
                }
            }
        }
        _ => {
            return Err(Error::plan(
                "a running aggregate with EMIT CHANGES may have one GROUP BY; with EMIT COMPLETE \
                 the innermost runs over all input and the ones over it on its whole table",
            ));
        }
    };
    let names = InputNames::of(&aggregate.input);
    let input = names.plan(aggregate.input.as_ref().clone())?;
    let stream = DStream::from_plan(engine, input)?.running_aggregate(
        names.strip_all(&aggregate.group_expr)?,
        names.strip_all(&aggregate.aggr_expr)?,
        running,
    )?;
    let rewritten = replace_aggregate(plan, aggregate, &stream, |_| None, |i| i)?;
    Ok(DStream::from_plan(engine, rewritten)?)
}
