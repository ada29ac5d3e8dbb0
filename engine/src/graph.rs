//! The operator graph: nodes that sources and transformations create and
//! that a running query turns into operators.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::logical_expr::LogicalPlan;

pub(crate) use crate::operator::NodeId;
use crate::operator::{Input, OperatorDef};

/// One operator of the graph.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) id: NodeId,
    pub(crate) schema: SchemaRef,
    /// The nodes it reads, in the order its operator reads them.
    pub(crate) inputs: Vec<Arc<Node>>,
    pub(crate) kind: NodeKind,
}

/// What a node is.
#[derive(Debug)]
pub(crate) enum NodeKind {
    /// A source's batches.
    Source { name: String },
    /// An operator on its inputs' batches.
    Operator(Arc<dyn OperatorDef>),
}

impl Node {
    /// This node as an operator's input.
    pub(crate) fn as_input(&self) -> Input {
        Input {
            id: self.id,
            schema: self.schema.clone(),
        }
    }

    /// The plan this node runs on each batch, when it is a stateless one.
    pub(crate) fn stateless_plan(&self) -> Option<&LogicalPlan> {
        match &self.kind {
            NodeKind::Operator(def) => def.stateless_plan(),
            NodeKind::Source { .. } => None,
        }
    }

    /// Every node this one reads, this one last (each once).
    pub(crate) fn post_order(self: &Arc<Self>) -> Vec<Arc<Node>> {
        fn visit(node: &Arc<Node>, out: &mut Vec<Arc<Node>>) {
            if out.iter().any(|n| n.id == node.id) {
                return;
            }
            for input in &node.inputs {
                visit(input, out);
            }
            out.push(node.clone());
        }
        let mut out = Vec::new();
        visit(self, &mut out);
        out
    }

    /// The names of the sources this node reads.
    pub(crate) fn sources(self: &Arc<Self>) -> Vec<String> {
        let mut names: Vec<String> = self
            .post_order()
            .iter()
            .filter_map(|n| match &n.kind {
                NodeKind::Source { name } => Some(name.clone()),
                _ => None,
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }
}
