//! The dependency graph of one reconcile: expanded resource instances plus orphans from state.
//!
//! [`build`] runs named steps in order — add desired instances (provider `expand`), add orphans
//! from state, add edges (`depends_on`, references, address-list fields, targets, recorded
//! dependencies of orphans), check for cycles. Edges point from a dependency to its dependent,
//! so [`ResourceGraph::order`] lists dependencies first, ties broken by address.

mod build;
mod render;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

pub use build::build;
use petgraph::Direction;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use tend_provider::ResourceAddr;

/// A node's direct dependencies: each address once, in order, with the kinds of its edges.
pub type Dependencies = Vec<(ResourceAddr, Vec<EdgeKind>)>;

/// Why an edge exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// `depends_on`.
    DependsOn,
    /// A `${...}` reference.
    Reference,
    /// An address-list field such as `on_change`.
    Trigger,
    /// The instance lives on this target (its host).
    Target,
    /// A dependency recorded in state for a resource no longer in config.
    Recorded,
    /// The provider's expansion said this instance needs that one first.
    Instance,
}

/// One resource instance in the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Instance address.
    pub addr: ResourceAddr,
    /// `false` for an orphan: in state, no longer in config.
    pub desired: bool,
    /// The instance's target (its host), if any.
    pub target: Option<ResourceAddr>,
    /// The instance's own kind, when its provider gave it one (a manifest's object).
    pub kind: Option<std::sync::Arc<str>>,
    /// How long to wait for it to become ready, as its own kind says (seconds).
    pub timeout_secs: Option<u64>,
    /// Its own config expressions over its resource's, as its provider expanded them (the
    /// object of a manifest).
    pub fields: Option<std::sync::Arc<tend_provider::Map<crate::config::Expr>>>,
}

impl Node {
    /// The config expressions of this instance: its resource's, with its own over them.
    pub fn exprs(&self, res: &crate::config::Resource) -> tend_provider::Map<crate::config::Expr> {
        let mut exprs = res.exprs();
        if let Some(own) = &self.fields {
            for (k, e) in own.iter() {
                exprs.insert(k.clone(), e.clone());
            }
        }
        exprs
    }
}

/// Resource instances and their dependencies.
#[derive(Debug, Default)]
pub struct ResourceGraph {
    /// The graph; edges point from dependency to dependent.
    pub graph: StableDiGraph<Node, EdgeKind>,
    /// Node by instance address.
    pub index: BTreeMap<ResourceAddr, NodeIndex>,
    /// Instance addresses of each configured resource.
    pub instances: BTreeMap<ResourceAddr, Vec<ResourceAddr>>,
    /// The kinds instances have that their providers declared at run time, by provider and name.
    pub runtime_kinds: BTreeMap<(String, String), tend_provider::RuntimeKind>,
}

impl ResourceGraph {
    /// Instances a reference from `referrer` to `target` means: an explicit key picks one; else
    /// the instance with the referrer's own key (the same host), else every instance.
    pub fn resolve(&self, referrer: &ResourceAddr, target: &ResourceAddr) -> Vec<ResourceAddr> {
        if target.key.is_some() {
            return self.index.contains_key(target).then(|| target.clone()).into_iter().collect();
        }
        let all = self.instances.get(&target.base()).cloned().unwrap_or_default();
        if let Some(same) = all.iter().find(|a| a.key.is_some() && a.key == referrer.key) {
            return vec![same.clone()];
        }
        all
    }

    /// Node indices in dependency order (dependencies first), ties broken by address.
    pub fn order(&self) -> Vec<NodeIndex> {
        let mut indegree: BTreeMap<NodeIndex, usize> =
            self.graph.node_indices().map(|n| (n, self.graph.neighbors_directed(n, Direction::Incoming).count())).collect();
        let mut ready: BinaryHeap<Reverse<(ResourceAddr, NodeIndex)>> =
            indegree.iter().filter(|(_, d)| **d == 0).map(|(n, _)| Reverse((self.graph[*n].addr.clone(), *n))).collect();
        let mut out = Vec::with_capacity(indegree.len());
        while let Some(Reverse((_, n))) = ready.pop() {
            out.push(n);
            for m in self.graph.neighbors_directed(n, Direction::Outgoing) {
                let d = indegree.get_mut(&m).expect("every node has an indegree");
                *d -= 1;
                if *d == 0 {
                    ready.push(Reverse((self.graph[m].addr.clone(), m)));
                }
            }
        }
        out
    }

    /// Direct dependencies of a node, sorted by address, each once with its edge kinds.
    pub fn dependencies(&self, n: NodeIndex) -> Dependencies {
        use petgraph::visit::EdgeRef;
        let mut edges: Vec<(ResourceAddr, EdgeKind)> =
            self.graph.edges_directed(n, Direction::Incoming).map(|e| (self.graph[e.source()].addr.clone(), *e.weight())).collect();
        edges.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Dependencies = Vec::new();
        for (addr, kind) in edges {
            match out.last_mut() {
                Some((last, kinds)) if *last == addr => kinds.push(kind),
                _ => out.push((addr, vec![kind])),
            }
        }
        out.shrink_to_fit();
        out
    }
}
