//! Running aggregates: an unwindowed `GROUP BY` with `EMIT CHANGES` or
//! `EMIT COMPLETE` aggregates over all input so far (with the `state.ttl`
//! set when it was planned), not per batch. Its aggregate is replaced by the
//! engine's running aggregate, as a window's is by its window operator.

use brooklet_engine::{DStream, EmitMode, Engine, RunningSpec};
use datafusion::logical_expr::{Aggregate, LogicalPlan};

use super::replace::{replace_aggregate, strip_all, strip_qualifiers};
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
    Ok(DStream::from_plan(engine, rewritten)?)
}
