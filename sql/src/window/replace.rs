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

/// The unqualified names an aggregate's input gets when it becomes a
/// stream of its own (a stream's columns have no qualifiers): each
/// column's own name, or `q.name` for a name that two inputs of a join
/// share (`a.date_time`, `b.date_time`), as the engine's joins name them.
pub(super) struct InputNames {
    shared: Vec<String>,
}

impl InputNames {
    /// The names of `input`'s columns.
    pub(super) fn of(input: &LogicalPlan) -> Self {
        let fields = input.schema().fields();
        let shared = fields
            .iter()
            .filter(|f| fields.iter().filter(|g| g.name() == f.name()).count() > 1)
            .map(|f| f.name().clone())
            .collect();
        InputNames { shared }
    }

    fn name(&self, column: &Column) -> String {
        match &column.relation {
            Some(q) if self.shared.contains(&column.name) => format!("{q}.{}", column.name),
            _ => column.name.clone(),
        }
    }

    /// `input` with its columns so named (a projection when names are shared).
    pub(super) fn plan(&self, input: LogicalPlan) -> Result<LogicalPlan> {
        if self.shared.is_empty() {
            return Ok(input);
        }
        let columns: Vec<Expr> = input
            .schema()
            .iter()
            .map(|(q, f)| {
                let column = Column::new(q.cloned(), f.name());
                Expr::Column(column.clone()).alias(self.name(&column))
            })
            .collect();
        Ok(LogicalPlanBuilder::from(input).project(columns)?.build()?)
    }

    /// `expr` over the input's columns, by their unqualified names.
    pub(super) fn strip(&self, expr: &Expr) -> Result<Expr> {
        Ok(expr
            .clone()
            .transform(|e| match e {
                Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(Expr::Column(
                    Column::new_unqualified(self.name(&c)),
                ))),
                other => Ok(Transformed::no(other)),
            })?
            .data)
    }

    /// [`InputNames::strip`] of every one of `exprs`.
    pub(super) fn strip_all(&self, exprs: &[Expr]) -> Result<Vec<Expr>> {
        exprs.iter().map(|e| self.strip(e)).collect()
    }
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
