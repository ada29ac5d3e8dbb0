//! Plan surgery shared by windows and running aggregates: an aggregate of
//! the DataFusion plan replaced by a scan of the engine stream that computes
//! it, shaped as the aggregate was, with an updating window's `is_final`
//! column passed up to the output.

use std::sync::Arc;

use brooklet_engine::DStream;
use brooklet_engine::event_window::IS_FINAL;
use datafusion::common::Column;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, LogicalPlanBuilder, Projection};
use datafusion::prelude::col;

use crate::error::{Error, Result};

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

pub(super) fn strip_qualifiers(expr: Expr) -> Result<Expr> {
    Ok(expr
        .transform(|e| match e {
            Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(Expr::Column(
                Column::new_unqualified(c.name),
            ))),
            other => Ok(Transformed::no(other)),
        })?
        .data)
}

pub(super) fn strip_all(exprs: &[Expr]) -> Result<Vec<Expr>> {
    exprs.iter().map(|e| strip_qualifiers(e.clone())).collect()
}

/// `plan` with `aggregate` replaced by a scan of `stream`, shaped as the
/// aggregate was (same columns, same names): column `i` of the aggregate is
/// `special(i)` or column `position(i)` of the stream.
pub(super) fn replace_aggregate(
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
