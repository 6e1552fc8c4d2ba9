//! `tend graph --format dot|json`.

use petgraph::visit::{EdgeRef, IntoEdgeReferences};
use serde_json::json;

use super::ResourceGraph;

impl ResourceGraph {
    /// Graphviz DOT, nodes and edges sorted; edges point from dependency to dependent.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph tend {\n  rankdir = LR;\n  node [shape = box];\n");
        for (addr, n) in &self.index {
            let style = if self.graph[*n].desired { "" } else { ", style = dashed" };
            out.push_str(&format!("  \"{addr}\" [label = \"{addr}\"{style}];\n"));
        }
        let mut edges: Vec<(String, String, String)> = self
            .graph
            .edge_references()
            .map(|e| {
                let kind = serde_json::to_value(e.weight()).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
                (self.graph[e.source()].addr.to_string(), self.graph[e.target()].addr.to_string(), kind)
            })
            .collect();
        edges.sort();
        for (a, b, kind) in edges {
            out.push_str(&format!("  \"{a}\" -> \"{b}\" [label = \"{kind}\"];\n"));
        }
        out.push_str("}\n");
        out
    }

    /// JSON: `{"nodes": [{address, desired, target, depends_on: [{address, kind}]}]}`, sorted.
    pub fn to_json(&self) -> serde_json::Value {
        let nodes: Vec<serde_json::Value> = self
            .index
            .iter()
            .map(|(addr, n)| {
                let node = &self.graph[*n];
                let deps: Vec<serde_json::Value> = self
                    .dependencies(*n)
                    .into_iter()
                    .flat_map(|(a, kinds)| kinds.into_iter().map(move |k| json!({"address": a.to_string(), "kind": k})))
                    .collect();
                json!({
                    "address": addr.to_string(),
                    "desired": node.desired,
                    "target": node.target.as_ref().map(ToString::to_string),
                    "depends_on": deps,
                })
            })
            .collect();
        json!({ "format_version": "1", "nodes": nodes })
    }
}
