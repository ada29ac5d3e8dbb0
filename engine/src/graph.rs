//! The operator graph: nodes that sources and transformations create and
//! that a running query turns into operators.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::logical_expr::LogicalPlan;

use crate::spec::{EventWindow, RunningSpec, WindowSpec};

/// Identifies a node of the operator graph.
pub(crate) type NodeId = usize;

/// One operator of the graph.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) id: NodeId,
    pub(crate) schema: SchemaRef,
    pub(crate) kind: NodeKind,
}

/// What an operator does.
#[derive(Debug)]
pub(crate) enum NodeKind {
    /// A source's batches.
    Source { name: String },
    /// A DataFusion plan run on each batch of its input streams.
    Stateless {
        plan: LogicalPlan,
        inputs: Vec<Arc<Node>>,
    },
    /// DStream `window()`: every slide, the rows of the window, with
    /// `window_start` and `window_end` appended when `bounds`.
    Window {
        input: Arc<Node>,
        spec: WindowSpec,
        bounds: bool,
    },
    /// A processing-time window aggregate of its input stream: `plan` is
    /// the aggregate over a scan of `input`, run by pane folding.
    WindowAggregate {
        plan: LogicalPlan,
        input: Arc<Node>,
        spec: WindowSpec,
    },
    /// An event-time window aggregate of its input stream: `plan` is the
    /// aggregate over a scan of `input`, grouped first by the time column.
    EventWindowAggregate {
        plan: LogicalPlan,
        input: Arc<Node>,
        window: EventWindow,
    },
    /// A running aggregate of its input stream over all batches so far:
    /// `plan` is the aggregate over a scan of `input`.
    RunningAggregate {
        plan: LogicalPlan,
        input: Arc<Node>,
        spec: RunningSpec,
    },
}

impl Node {
    /// The nodes this one reads directly.
    pub(crate) fn inputs(&self) -> Vec<&Arc<Node>> {
        match &self.kind {
            NodeKind::Source { .. } => Vec::new(),
            NodeKind::Stateless { inputs, .. } => inputs.iter().collect(),
            NodeKind::WindowAggregate { input, .. }
            | NodeKind::EventWindowAggregate { input, .. }
            | NodeKind::Window { input, .. }
            | NodeKind::RunningAggregate { input, .. } => vec![input],
        }
    }

    /// Every node this one reads, this one last (each once).
    pub(crate) fn post_order(self: &Arc<Self>) -> Vec<Arc<Node>> {
        fn visit(node: &Arc<Node>, out: &mut Vec<Arc<Node>>) {
            if out.iter().any(|n| n.id == node.id) {
                return;
            }
            for input in node.inputs() {
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
