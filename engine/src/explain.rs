//! What `EXPLAIN` shows of a continuous query: its DStream operator graph.
//!
//! Each node is a source, a per-batch step (a DataFusion plan that runs on
//! every batch and keeps nothing) or a stateful operator (a window, a
//! running aggregate, a join), with what its state is sized by. A query
//! that runs adds what each operator holds now ([`QueryHandle::explain`]
//! (crate::QueryHandle::explain)).
//!
//! The text form draws the graph as a tree, the query's output at the top
//! and each node's inputs indented under it, as DataFusion's `EXPLAIN`
//! does for a plan:
//!
//! ```text
//! window aggregate  [stateful: keys × live panes; 12.0 KiB now]
//!     windows of 10s every 2s, on processing time
//!     Aggregate: groupBy=[[page]], aggr=[[count(Int64(1))]]
//!       TableScan: input
//!   source clicks
//!       socket: 127.0.0.1:9999
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::graph::{Node, NodeId, NodeKind};
pub use crate::operator::OperatorDescription;

/// One node of a query's graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphNode {
    /// Its id, unique within the graph.
    pub id: usize,
    /// For a source: its name.
    pub source: Option<String>,
    /// What it does.
    pub description: OperatorDescription,
    /// The nodes it reads, in order.
    pub inputs: Vec<usize>,
    /// Bytes of state it holds after the query's last batch (a running
    /// query's stateful operators).
    pub state_bytes: Option<u64>,
}

impl GraphNode {
    /// Whether it keeps state across batches.
    pub fn is_stateful(&self) -> bool {
        self.description.state.is_some()
    }
}

/// A query's operator graph: its nodes, inputs first, the output last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryGraph {
    /// Every node, each after the nodes it reads.
    pub nodes: Vec<GraphNode>,
}

impl QueryGraph {
    /// The graph of the query whose output is `node`; `describe_source`
    /// says what a source is (connector and where it reads).
    pub(crate) fn of(node: &Arc<Node>, describe_source: impl Fn(&str) -> String) -> Self {
        let nodes = node
            .post_order()
            .iter()
            .map(|n| {
                let (source, description) = match &n.kind {
                    NodeKind::Source { name } => (
                        Some(name.clone()),
                        OperatorDescription {
                            name: format!("source {name}"),
                            details: vec![describe_source(name)],
                            state: None,
                        },
                    ),
                    NodeKind::Operator(def) => (None, def.describe()),
                };
                GraphNode {
                    id: n.id,
                    source,
                    description,
                    inputs: n.inputs.iter().map(|i| i.id).collect(),
                    state_bytes: None,
                }
            })
            .collect();
        QueryGraph { nodes }
    }

    /// The same graph with what each operator holds now.
    pub(crate) fn with_state(mut self, bytes: &BTreeMap<NodeId, u64>) -> Self {
        for node in &mut self.nodes {
            if node.is_stateful() {
                node.state_bytes = bytes.get(&node.id).copied();
            }
        }
        self
    }

    /// The node with `id`.
    pub fn node(&self, id: usize) -> Option<&GraphNode> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The sources the query reads.
    pub fn sources(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .filter_map(|n| n.source.as_deref())
            .collect()
    }

    /// The stateful operators.
    pub fn stateful(&self) -> Vec<&GraphNode> {
        self.nodes.iter().filter(|n| n.is_stateful()).collect()
    }

    fn write_node(&self, f: &mut fmt::Formatter<'_>, id: usize, depth: usize) -> fmt::Result {
        let Some(node) = self.node(id) else {
            return Ok(());
        };
        let indent = "  ".repeat(depth);
        let kind = match (&node.source, &node.description.state) {
            (Some(_), _) => String::new(),
            (None, Some(sized)) => {
                let now = node
                    .state_bytes
                    .map(|b| format!("; {} now", format_bytes(b)))
                    .unwrap_or_default();
                format!("  [stateful: {sized}{now}]")
            }
            (None, None) => "  [per batch]".to_string(),
        };
        writeln!(f, "{indent}{}{kind}", node.description.name)?;
        for line in &node.description.details {
            writeln!(f, "{indent}    {line}")?;
        }
        for input in &node.inputs {
            self.write_node(f, *input, depth + 1)?;
        }
        Ok(())
    }
}

impl fmt::Display for QueryGraph {
    /// The graph as a tree: the output first, each node's inputs under it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.nodes.last() {
            Some(output) => self.write_node(f, output.id, 0),
            None => Ok(()),
        }
    }
}

/// Bytes as people read them: `512 B`, `12.0 KiB`, `3.4 MiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: usize, name: &str, state: Option<&str>, inputs: Vec<usize>) -> GraphNode {
        GraphNode {
            id,
            source: (state.is_none() && inputs.is_empty()).then(|| name.to_string()),
            description: OperatorDescription {
                name: name.to_string(),
                details: vec![format!("detail of {name}")],
                state: state.map(str::to_string),
            },
            inputs,
            state_bytes: None,
        }
    }

    #[test]
    fn the_tree_puts_the_output_first_and_marks_what_keeps_state() {
        let graph = QueryGraph {
            nodes: vec![
                node(0, "clicks", None, vec![]),
                node(1, "per batch", None, vec![0]),
                node(2, "window aggregate", Some("keys × panes"), vec![1]),
            ],
        }
        .with_state(&BTreeMap::from([(2, 2048)]));
        assert_eq!(
            graph.to_string(),
            "window aggregate  [stateful: keys × panes; 2.0 KiB now]\n    detail of window aggregate\n  \
             per batch  [per batch]\n      detail of per batch\n    \
             clicks\n        detail of clicks\n"
        );
        assert_eq!(graph.sources(), vec!["clicks"]);
        assert_eq!(graph.stateful().len(), 1);
    }

    #[test]
    fn bytes_read_as_people_read_them() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(5 << 20), "5.0 MiB");
    }
}
