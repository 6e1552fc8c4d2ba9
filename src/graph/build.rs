//! The build steps of [`ResourceGraph`].

use std::collections::{BTreeMap, BTreeSet};

use futures_util::StreamExt;
use petgraph::Direction;
use petgraph::stable_graph::NodeIndex;
use tend_provider::{ExpandRequest, FieldType, ResourceAddr, Sibling, Value};
use tend_state::Snapshot;

use super::{EdgeKind, Node, ResourceGraph};
use crate::config::lower::{undeclared, undeclared_secret};
use crate::config::template::Scope;
use crate::config::{Config, Diagnostic, Diagnostics, Expr};
use crate::registry::{Providers, Registry};

/// How many resources are expanded at the same time.
const EXPANSIONS_AT_ONCE: usize = 32;

/// Build the graph for `config` against the recorded `state`.
pub async fn build(config: &Config, registry: &Registry, providers: &Providers, state: &Snapshot) -> Result<ResourceGraph, Diagnostics> {
    let mut g = ResourceGraph::default();
    // Room for what is usually there (an instance per resource, or per record), one edge each.
    let nodes = config.resources.len().max(state.records.len());
    g.graph = petgraph::stable_graph::StableDiGraph::with_capacity(nodes, nodes);
    let mut diags = Vec::new();
    let needs = add_desired(config, registry, providers, &mut g, &mut diags).await;
    check_instance_kinds(config, registry, providers, &mut g, &mut diags);
    tracing::trace!(step = "add_desired", nodes = g.graph.node_count());
    add_orphans(state, &mut g);
    tracing::trace!(step = "add_orphans", nodes = g.graph.node_count());
    add_edges(config, registry, state, &mut g);
    add_instance_edges(config, &needs, &mut g, &mut diags);
    tracing::trace!(step = "add_edges", edges = g.graph.edge_count());
    if diags.is_empty() {
        diags.extend(check_cycles(config, &g));
    }
    if !diags.is_empty() {
        return Err(Diagnostics { items: diags, sources: config.sources.clone() });
    }
    // Rebuilt at once from sorted entries, the maps' nodes are full (inserted one by one, they
    // are left half empty).
    g.index = std::mem::take(&mut g.index).into_iter().collect();
    g.instances = std::mem::take(&mut g.instances).into_iter().collect();
    Ok(g)
}

/// Add every configured resource's instances, each resource expanded by its provider
/// (concurrently); returns what each instance needs first, as its provider said.
async fn add_desired(
    config: &Config,
    registry: &Registry,
    providers: &Providers,
    g: &mut ResourceGraph,
    diags: &mut Vec<Diagnostic>,
) -> Vec<(ResourceAddr, Vec<ResourceAddr>)> {
    let mut siblings: BTreeMap<&str, Vec<Sibling>> = BTreeMap::new();
    for res in config.resources.values() {
        let entry = siblings.entry(&res.addr.provider).or_default();
        if registry.kind(&res.addr.provider, &res.addr.kind).is_some_and(|k| k.target) {
            entry.push(Sibling { addr: res.addr.clone(), literal: res.literal_fields() });
        }
    }
    let secret_files: Vec<(String, String)> = config.secrets.values().map(|d| (d.name.clone(), d.file.clone())).collect();
    let secret_files = &secret_files;
    // Expanded concurrently (a provider may ask its remote side), a bounded number at a time so
    // that memory stays flat however many resources there are; results come back in order.
    let expanded: Vec<_> = futures_util::stream::iter(config.resources.values())
        .map(|res| {
            let provider = &providers[&*res.addr.provider];
            let siblings = &siblings[&*res.addr.provider];
            async move {
                let literal = res.literal_fields();
                let problems = provider.validate(&res.addr, &literal);
                let req = ExpandRequest { addr: &res.addr, literal: &literal, siblings, config_root: &config.root, secret_files };
                (res, problems, provider.expand(&req).await)
            }
        })
        .buffered(EXPANSIONS_AT_ONCE)
        .collect()
        .await;
    let mut needs = Vec::new();
    for (res, problems, expansion) in expanded {
        let field_span = |field: &Option<String>| field.as_ref().and_then(|f| res.fields.get(f)).map_or(res.span, |f| f.span);
        for e in problems {
            let d = Diagnostic::at(field_span(&e.field), format!("`{}`: {}", res.addr, e.message), "here");
            diags.push(d.with_hint(e.hint.unwrap_or_default()));
        }
        match expansion {
            Ok(instances) => {
                let addrs: Vec<ResourceAddr> = instances.iter().map(|i| res.addr.with_key(i.key.clone())).collect();
                for (inst, addr) in instances.into_iter().zip(&addrs) {
                    let fields = if inst.fields.is_empty() {
                        None
                    } else {
                        match instance_exprs(config, res, addr, &inst) {
                            Ok(f) => Some(std::sync::Arc::new(f)),
                            Err(d) => {
                                diags.extend(d);
                                None
                            }
                        }
                    };
                    let n = g.graph.add_node(Node {
                        addr: addr.clone(),
                        desired: true,
                        target: inst.target,
                        kind: inst.kind.map(Into::into),
                        timeout_secs: None,
                        fields,
                    });
                    g.index.insert(addr.clone(), n);
                    if !inst.depends_on.is_empty() {
                        needs.push((addr.clone(), inst.depends_on));
                    }
                }
                g.instances.insert(res.addr.clone(), addrs);
            }
            Err(e) => {
                let d = Diagnostic::at(field_span(&e.field), format!("`{}`: {}", res.addr, e.message), "here");
                diags.push(d.with_hint(e.hint.unwrap_or_default()));
            }
        }
    }
    needs
}

/// An instance's own fields as expressions: every string parsed as config strings are, its
/// references and secrets checked as the config's are. Problems name the instance and where it
/// is written (`k8s/app/web.yaml:12`), pointing at its resource's declaration.
fn instance_exprs(
    config: &Config,
    res: &crate::config::Resource,
    addr: &ResourceAddr,
    inst: &tend_provider::Instance,
) -> Result<tend_provider::Map<Expr>, Vec<Diagnostic>> {
    let root = config.root.to_string_lossy();
    let scope = Scope { variables: &config.variables, root: &root };
    let whose = match &inst.origin {
        Some(o) => format!("`{addr}` ({o})"),
        None => format!("`{addr}`"),
    };
    let mut diags = Vec::new();
    let mut out = tend_provider::Map::new();
    for (k, v) in &inst.fields {
        match expr_of(v, res.span, &scope) {
            Ok(e) => {
                let what = format!("{whose} refers to");
                diags.extend(
                    e.references()
                        .into_iter()
                        .filter(|r| !config.resources.contains_key(&r.addr.base()))
                        .map(|r| undeclared(&config.resources, &r.addr, res.span, &what)),
                );
                diags.extend(e.secret_refs().into_iter().filter_map(|s| undeclared_secret(&config.secrets, s, &whose, res.span)));
                out.insert(k.clone(), e);
            }
            Err(d) => diags.push(Diagnostic { summary: format!("{whose}: {}", d.summary), ..d }),
        }
    }
    if diags.is_empty() { Ok(out) } else { Err(diags) }
}

/// A value as an expression: strings parsed as templates, tables and lists holding them kept
/// as expressions only where something inside is not literal.
fn expr_of(v: &Value, span: crate::config::Span, scope: &Scope<'_>) -> Result<Expr, Diagnostic> {
    let e = match v {
        Value::String(s) => return crate::config::template::parse(s, span, scope),
        Value::List(items) => Expr::List(items.iter().map(|i| expr_of(i, span, scope)).collect::<Result<_, _>>()?),
        Value::Map(m) => Expr::Map(m.iter().map(|(k, i)| Ok((k.clone(), expr_of(i, span, scope)?))).collect::<Result<_, Diagnostic>>()?),
        // Content the provider marked secret (a Secret's data): its literal parts stay secret.
        Value::Sensitive(s) => {
            let inner = expr_of(s.reveal(), span, scope)?;
            return Ok(inner.literal().map_or(inner, |v| Expr::Literal(v.sensitive())));
        }
        other => return Ok(Expr::Literal(other.clone())),
    };
    Ok(e.literal().map_or(e, Expr::Literal))
}

/// An instance's own kind must be one its provider offers, known before or only at run time
/// (a custom resource whose definition the provider found); its readiness timeout comes with it.
fn check_instance_kinds(config: &Config, registry: &Registry, providers: &Providers, g: &mut ResourceGraph, diags: &mut Vec<Diagnostic>) {
    let mut runtime: BTreeMap<String, Vec<tend_provider::RuntimeKind>> = BTreeMap::new();
    for n in g.graph.node_indices().collect::<Vec<_>>() {
        let node = &g.graph[n];
        let Some(kind) = node.kind.clone() else { continue };
        let provider = node.addr.provider.to_string();
        let timeout = if let Some(k) = registry.kind(&provider, &kind) {
            Ok(k.timeout)
        } else {
            let declared = runtime.entry(provider.clone()).or_insert_with(|| providers[&*provider].runtime_kinds());
            match declared.iter().find(|k| *k.name == *kind) {
                Some(k) => {
                    g.runtime_kinds.entry((provider.clone(), kind.to_string())).or_insert_with(|| k.clone());
                    Ok(k.timeout)
                }
                None => Err(declared.len()),
            }
        };
        match timeout {
            Ok(t) => g.graph[n].timeout_secs = t.map(|d| d.as_secs().max(1)),
            Err(declared) => {
                let span = config.resources.get(&node.addr.base()).map(|r| r.span);
                let message = format!("`{}` is of kind `{kind}`, which provider `{provider}` does not know", node.addr);
                let hint = format!(
                    "a kind that is not built in must be declared in the same configuration or exist on the remote side (provider `{provider}` knows {declared} such kind{})",
                    if declared == 1 { "" } else { "s" }
                );
                diags.push(match span {
                    Some(s) => Diagnostic::at(s, message, "here").with_hint(hint),
                    None => Diagnostic::global(message),
                });
            }
        }
    }
}

/// Edges for what instances need first, as their providers said: an instance address, or a
/// resource address meaning all its instances. One that names nothing in the config is an
/// error naming both.
fn add_instance_edges(config: &Config, needs: &[(ResourceAddr, Vec<ResourceAddr>)], g: &mut ResourceGraph, diags: &mut Vec<Diagnostic>) {
    for (addr, deps) in needs {
        let n = g.index[addr];
        for d in deps {
            let found: Vec<NodeIndex> = match &d.key {
                Some(_) => g.index.get(d).copied().into_iter().collect(),
                None => g.instances.get(d).into_iter().flatten().filter_map(|a| g.index.get(a).copied()).collect(),
            };
            if found.is_empty() {
                let span = config.resources.get(&addr.base()).map(|r| r.span);
                let message = format!("`{addr}` needs `{d}`, which the config does not declare");
                diags.push(match span {
                    Some(s) => Diagnostic::at(s, message, "here"),
                    None => Diagnostic::global(message),
                });
            }
            for m in found {
                if !g.graph.contains_edge(m, n) {
                    g.graph.add_edge(m, n, EdgeKind::Instance);
                }
            }
        }
    }
}

/// Records no longer in config are planned for destruction — except one that names the same
/// remote object as a record the config still wants (a leftover of an interrupted replacement,
/// or a hand edit): destroying it would destroy what the config keeps.
fn add_orphans(state: &Snapshot, g: &mut ResourceGraph) {
    let wanted: std::collections::HashMap<&str, &ResourceAddr> =
        state.records.values().filter(|r| g.index.contains_key(&r.addr)).filter_map(|r| r.remote_id.as_deref().map(|id| (id, &r.addr))).collect();
    let orphans: Vec<_> = state.records.values().filter(|r| !g.index.contains_key(&r.addr)).collect();
    for rec in orphans {
        if let Some(keeper) = rec.remote_id.as_deref().and_then(|id| wanted.get(id)) {
            tracing::warn!(
                addr = %rec.addr,
                "not destroying `{}`: it records the same object as `{keeper}`, which the config keeps; `tend state rm '{}'` forgets it",
                rec.addr,
                rec.addr
            );
            continue;
        }
        let n = g.graph.add_node(Node { addr: rec.addr.clone(), desired: false, target: rec.target.clone(), kind: None, timeout_secs: None, fields: None });
        g.index.insert(rec.addr.clone(), n);
    }
}

fn add_edges(config: &Config, registry: &Registry, state: &Snapshot, g: &mut ResourceGraph) {
    let mut edges: BTreeSet<(NodeIndex, NodeIndex, EdgeKind)> = BTreeSet::new();
    for (addr, &n) in &g.index {
        let node = &g.graph[n];
        let mut add = |deps: Vec<ResourceAddr>, kind: EdgeKind| {
            for d in deps {
                if let Some(&m) = g.index.get(&d) {
                    edges.insert((m, n, kind));
                }
            }
        };
        if let Some(t) = &node.target {
            add(vec![t.clone()], EdgeKind::Target);
        }
        if !node.desired {
            if let Some(rec) = state.records.get(addr) {
                add(rec.dependencies.clone(), EdgeKind::Recorded);
            }
            continue;
        }
        let res = &config.resources[&addr.base()];
        for (dep, _) in &res.depends_on {
            add(g.resolve(addr, dep), EdgeKind::DependsOn);
        }
        if let Some(own) = &node.fields {
            for r in own.values().flat_map(Expr::references) {
                add(g.resolve(addr, &r.addr), EdgeKind::Reference);
            }
        }
        let schema = registry.kind(&res.addr.provider, &res.addr.kind).expect("lowered resources have a schema");
        for (name, field) in &res.fields {
            for r in field.expr.references() {
                add(g.resolve(addr, &r.addr), EdgeKind::Reference);
            }
            if schema.field(name).is_some_and(|f| f.ty == FieldType::AddressList)
                && let Some(Value::List(items)) = field.expr.literal()
            {
                for a in items.iter().filter_map(Value::as_str).filter_map(|s| s.parse::<ResourceAddr>().ok()) {
                    add(g.resolve(addr, &a), EdgeKind::Trigger);
                }
            }
        }
    }
    for (a, b, kind) in edges {
        g.graph.add_edge(a, b, kind);
    }
}

/// A cycle becomes one diagnostic naming each member in order, pointing at each declaration.
fn check_cycles(config: &Config, g: &ResourceGraph) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let mut sccs = petgraph::algo::tarjan_scc(&g.graph);
    sccs.sort_by(|a, b| min_addr(g, a).cmp(&min_addr(g, b)));
    for scc in sccs {
        let self_loop = scc.len() == 1 && g.graph.contains_edge(scc[0], scc[0]);
        if scc.len() < 2 && !self_loop {
            continue;
        }
        let members: BTreeSet<NodeIndex> = scc.iter().copied().collect();
        let start = *scc.iter().min_by_key(|n| &g.graph[**n].addr).expect("non-empty scc");
        // Follow dependencies (incoming edges) inside the component until a node repeats.
        let mut path = vec![start];
        loop {
            let cur = *path.last().expect("path starts non-empty");
            let next = g
                .graph
                .neighbors_directed(cur, Direction::Incoming)
                .filter(|m| members.contains(m))
                .min_by_key(|m| &g.graph[*m].addr)
                .expect("every member of a cycle has a dependency inside it");
            if let Some(pos) = path.iter().position(|p| *p == next) {
                path.drain(..pos);
                path.push(next);
                break;
            }
            path.push(next);
        }
        let names: Vec<String> = path.iter().map(|n| g.graph[*n].addr.to_string()).collect();
        let mut d = Diagnostic::global(format!("dependency cycle: {}", names.join(" → ")))
            .with_hint("break the cycle: remove a reference or a `depends_on` between these resources");
        for (i, n) in path.iter().take(path.len() - 1).enumerate() {
            if let Some(res) = config.resources.get(&g.graph[*n].addr.base()) {
                let next = &g.graph[path[i + 1]].addr;
                d = d.with_label(res.span, format!("{}. depends on {next}", i + 1));
            }
        }
        diags.push(d);
    }
    diags
}

fn min_addr<'a>(g: &'a ResourceGraph, scc: &[NodeIndex]) -> Option<&'a ResourceAddr> {
    scc.iter().map(|n| &g.graph[*n].addr).min()
}
