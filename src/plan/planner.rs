//! Refresh then plan, in dependency order.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use futures_util::StreamExt;
use petgraph::Direction;
use petgraph::stable_graph::NodeIndex;
use tend_provider::{
    Action, Attributes, ErrorKind, Observed, PlanRequest, PlannedChange, PriorRecord, Provider, ProviderError, ReadItem, ReadRequest, ResourceAddr, Target,
    Value,
};
use tend_state::{Record, RecordStatus, Snapshot};
use thin_vec::ThinVec;

use super::eval::{Resolver, eval_fields};
use super::{Change, ChangeReason, PLAN_FORMAT, Plan, PlanError};
use crate::config::{Config, DriftPolicy, Lifecycle};
use crate::graph::{Dependencies, EdgeKind, ResourceGraph};
use crate::hash::inputs_hash;
use crate::registry::Providers;
use crate::secrets::Secrets;

/// What [`plan`] works on.
pub struct PlanInput<'a> {
    /// The loaded config.
    pub config: &'a Config,
    /// Configured providers.
    pub providers: &'a Providers,
    /// The graph built from config and state.
    pub graph: &'a ResourceGraph,
    /// The recorded state.
    pub state: &'a Snapshot,
    /// Declared secrets, decrypted on first use.
    pub secrets: &'a Secrets,
    /// What the run asks beyond the config (`--target`, `--limit`, `--replace`).
    pub options: &'a super::PlanOptions,
}

/// What the refresh found of one instance (the error boxed: most reads succeed, and there is one per instance).
type ReadResult = Result<Option<Observed>, Box<ProviderError>>;

/// How many `plan` calls of one provider run at the same time.
const PLAN_CALLS_PER_PROVIDER: usize = 32;

/// How many instances are being planned at once, across providers.
const PLANS_IN_FLIGHT: usize = 64;

/// The nodes of `order` in waves: each node comes in the wave after the last of its
/// dependencies, so the nodes of one wave do not depend on each other. Each node keeps its
/// position in `order`.
fn waves(graph: &ResourceGraph, order: &[NodeIndex]) -> Vec<Vec<(usize, NodeIndex)>> {
    let mut level: HashMap<NodeIndex, usize> = HashMap::with_capacity(order.len());
    let mut out: Vec<Vec<(usize, NodeIndex)>> = Vec::new();
    for (pos, &n) in order.iter().enumerate() {
        let l = graph.graph.neighbors_directed(n, Direction::Incoming).filter_map(|d| level.get(&d)).map(|l| l + 1).max().unwrap_or(0);
        level.insert(n, l);
        if out.len() <= l {
            out.resize_with(l + 1, Vec::new);
        }
        out[l].push((pos, n));
    }
    out
}

/// Refresh every instance (one batched read per provider), then plan each in dependency order.
#[tracing::instrument(skip_all, fields(revision = %input.config.revision))]
pub async fn plan(input: PlanInput<'_>) -> Plan {
    if input.options.refresh_only {
        return plan_refresh(&input).await;
    }
    let order = input.graph.order();
    let mut errors = Vec::new();
    let refresh_errors_before = errors.len();
    let (mut observed, _) = refresh(&input, &order, &mut errors).await;
    // Instances whose config could not even be evaluated for refresh are reported once, there.
    let mut blocked: BTreeSet<ResourceAddr> = errors[refresh_errors_before..].iter().filter_map(|e| e.addr.clone()).collect();
    // What later instances read of earlier ones: only instances something depends on are kept
    // (most have no dependents), so neither map is sized for every instance.
    let mut known: HashMap<ResourceAddr, Arc<Attributes>> = HashMap::new();
    let mut actions: HashMap<ResourceAddr, Action> = HashMap::new();
    // Each result is kept with its place in `order` and sorted by it at the end, so output is
    // the same however planning interleaves. Pushed as planned: the list's memory is touched
    // as the observations it replaces are freed, not all at once before them.
    let mut changes: Vec<(usize, Change)> = Vec::with_capacity(order.len());
    let mut planned_errors: Vec<(usize, PlanError)> = Vec::new();
    let mut unplanned: Vec<(usize, PlanError)> = Vec::new();
    let mut unobservable: BTreeSet<ResourceAddr> = BTreeSet::new();
    // Lists and settings many changes hold alike, each kept once.
    let mut dependency_lists: HashSet<Arc<[ResourceAddr]>> = HashSet::new();
    let mut lifecycles: HashSet<Arc<Lifecycle>> = HashSet::new();
    // At most this many plan calls of one provider at a time.
    let limits: HashMap<&str, tokio::sync::Semaphore> =
        input.providers.keys().map(|name| (name.as_str(), tokio::sync::Semaphore::new(PLAN_CALLS_PER_PROVIDER))).collect();
    for wave in waves(input.graph, &order) {
        // What can be planned in this wave: everything it depends on was planned in earlier ones.
        let mut ready = Vec::with_capacity(wave.len());
        for (pos, n) in wave {
            let node = &input.graph.graph[n];
            let addr = &node.addr;
            if blocked.contains(addr) {
                continue;
            }
            let upstream =
                input.graph.graph.neighbors_directed(n, Direction::Incoming).map(|d| &input.graph.graph[d].addr).filter(|d| blocked.contains(*d)).min();
            if let Some(up) = upstream {
                tracing::debug!(%addr, upstream = %up, "not planned: upstream failed to plan");
                if unobservable.contains(up) {
                    unobservable.insert(addr.clone());
                    let message = format!("not planned: it depends on {up}, which could not be observed");
                    unplanned.push((pos, PlanError { kind: ErrorKind::Terminal, addr: Some(addr.clone()), message, hint: None }));
                }
                blocked.insert(addr.clone());
                continue;
            }
            match &observed[pos] {
                // The target shows the config contradicting itself (two resources that are one
                // object there): an error of the plan, as a conflict found in the config is.
                Some(Err(e)) if e.kind == ErrorKind::Conflict => {
                    planned_errors.push((pos, provider_error(addr, e, e.message.clone())));
                    blocked.insert(addr.clone());
                    continue;
                }
                Some(Err(e)) => {
                    // One host that cannot be observed does not stop the others.
                    unplanned.push((pos, provider_error(addr, e, format!("cannot observe it: {e}"))));
                    unobservable.insert(addr.clone());
                    blocked.insert(addr.clone());
                    continue;
                }
                _ => {}
            }
            ready.push((pos, n));
        }
        // Plan the wave concurrently, bounded per provider, and a bounded number of instances in
        // flight so that memory stays flat; results come back in order.
        let (known_now, actions_now) = (&known, &actions);
        let mut planned = futures_util::stream::iter(ready)
            .map(|(pos, n)| {
                // Taken as it is planned: each observation is used once, and freed as planning
                // goes on.
                let obs = observed[pos].take().and_then(Result::ok).flatten();
                let input = &input;
                let limits = &limits;
                async move {
                    let node = &input.graph.graph[n];
                    let _permit = match limits.get(&*node.addr.provider) {
                        Some(l) => Some(l.acquire().await.expect("the semaphore is never closed")),
                        None => None,
                    };
                    let record = input.state.records.get(&node.addr);
                    let deps = input.graph.dependencies(n);
                    let result = if node.desired {
                        plan_desired(input, n, &deps, record, obs, known_now, actions_now).await
                    } else {
                        plan_orphan(input, n, &deps, record, obs).await
                    };
                    // Values are kept only where something downstream reads them: freed here, not
                    // when the whole wave is done.
                    let result = result.map(|(change, values)| (change, has_dependents(input.graph, n).then_some(values)));
                    (pos, n, result)
                }
            })
            .buffered(PLANS_IN_FLIGHT);
        // Taken as they finish (the wave's planning reads `known` and `actions`, so what this
        // wave adds to them is applied once it is done).
        let mut learned = Vec::new();
        while let Some((pos, n, result)) = planned.next().await {
            let addr = &input.graph.graph[n].addr;
            match result {
                Ok((mut change, values)) => {
                    change.depends_on = tend_provider::shared(&mut dependency_lists, change.depends_on);
                    change.lifecycle = tend_provider::shared(&mut lifecycles, change.lifecycle);
                    // Only what something downstream reads (most instances: nothing).
                    if let Some(values) = values {
                        learned.push((addr, change.action, values));
                    }
                    changes.push((pos, change));
                }
                Err(e) => {
                    planned_errors.push((pos, e));
                    blocked.insert(addr.clone());
                }
            }
        }
        drop(planned);
        for (addr, action, values) in learned {
            // Values are kept exactly where something depends on the instance: that is also
            // where its action is read (a target being replaced, a trigger).
            known.insert(addr.clone(), Arc::new(values));
            actions.insert(addr.clone(), action);
        }
    }
    changes.sort_unstable_by_key(|(pos, _)| *pos);
    let mut changes: Vec<Change> = changes.into_iter().map(|(_, c)| c).collect();
    let left_out = select(&input, &mut changes);
    guard_content(&mut changes, input.secrets);
    planned_errors.sort_by_key(|(pos, _)| *pos);
    errors.extend(planned_errors.into_iter().map(|(_, e)| e));
    unplanned.sort_by_key(|(pos, _)| *pos);
    let mut unplanned: Vec<PlanError> = unplanned.into_iter().map(|(_, e)| e).collect();
    check_prevent_destroy(input.config, &changes, &mut errors);
    check_destroy_all(input.config, &changes, &mut errors);
    errors.extend(super::claims::conflicts(
        input.config,
        input.providers,
        changes.iter().filter(|c| c.action != Action::Delete).filter_map(|c| Some((c.target.as_ref(), &c.addr, c.after.as_deref()?))),
    ));
    redact_errors(input.secrets, errors.iter_mut().chain(unplanned.iter_mut()));
    // Targets whose staged changes take effect together, announced in their provider's words.
    let mut staged: BTreeMap<&ResourceAddr, usize> = BTreeMap::new();
    for c in changes.iter().filter(|c| c.staged && c.is_change()) {
        if let Some(t) = &c.target {
            *staged.entry(t).or_default() += 1;
        }
    }
    let commits = staged.into_iter().filter_map(|(t, n)| Some((t.to_string(), input.providers.get(&*t.provider)?.commit_note(t, n)))).collect();
    Plan { changes, errors, unplanned, commits, left_out, ..plan_of(&input) }
}

/// A plan of this input that changes nothing yet.
fn plan_of(input: &PlanInput<'_>) -> Plan {
    Plan {
        format: PLAN_FORMAT.into(),
        revision: input.config.revision.clone(),
        environment: input.config.environment.clone(),
        config_root: input.config.root.clone(),
        lineage: input.state.lineage.clone(),
        serial: input.state.serial,
        changes: Vec::new(),
        instances: input.graph.instances.clone(),
        errors: Vec::new(),
        unplanned: Vec::new(),
        commits: BTreeMap::new(),
        left_out: 0,
        refresh_only: false,
        refreshed: Vec::new(),
    }
}

/// Whether `--target` names this instance (an address without a key: all its instances).
fn targeted(targets: &[ResourceAddr], addr: &ResourceAddr) -> bool {
    targets.is_empty() || targets.iter().any(|t| t == addr || (t.key.is_none() && *t == addr.base()))
}

/// Whether `--limit` names this host, by name or by one of its labels (`role=web`).
fn limit_matches(limit: &[String], host: &ResourceAddr, labels: Option<&Attributes>) -> bool {
    limit.iter().any(|l| match l.split_once('=') {
        Some((k, v)) => labels.and_then(|m| m.get(k)).and_then(Value::as_str) == Some(v),
        None => *host.name == **l,
    })
}

/// `--target` / `--limit`: the changes they select, and what those depend on, stay; the others
/// become no-ops. Returns how many changes were left out.
fn select(input: &PlanInput<'_>, changes: &mut [Change]) -> usize {
    let opts = input.options;
    if opts.targets.is_empty() && opts.limit.is_empty() {
        return 0;
    }
    let by_addr: HashMap<&ResourceAddr, &Change> = changes.iter().map(|c| (&c.addr, c)).collect();
    // A host matches a limit by its name or a label (`role=web`).
    let host_matches = |host: &ResourceAddr| {
        let labels = by_addr.get(host).and_then(|h| h.after.as_ref().or(h.before.as_ref())).and_then(|a| a.get("labels")).and_then(Value::as_map);
        limit_matches(&opts.limit, host, labels)
    };
    let chosen = |c: &Change| {
        let limited = opts.limit.is_empty() || c.target.as_ref().map_or_else(|| host_matches(&c.addr), host_matches);
        targeted(&opts.targets, &c.addr) && limited
    };
    // What the chosen ones need comes along (a directory before its files) — never as a
    // deletion: destroying what something depends on is not how it converges.
    let mut keep: HashSet<ResourceAddr> = changes.iter().filter(|c| chosen(c)).map(|c| c.addr.clone()).collect();
    let needs = |c: &Change| if c.action == Action::Delete { Vec::new() } else { c.depends_on.iter().chain(c.target.iter()).cloned().collect() };
    let mut stack: Vec<ResourceAddr> = changes.iter().filter(|c| keep.contains(&c.addr)).flat_map(needs).collect();
    while let Some(a) = stack.pop() {
        let Some(c) = by_addr.get(&a).filter(|c| c.action != Action::Delete) else { continue };
        if keep.insert(a) {
            stack.extend(needs(c));
        }
    }
    drop(by_addr);
    let mut left_out = 0;
    for c in changes.iter_mut().filter(|c| !keep.contains(&c.addr)) {
        if c.is_change() {
            left_out += 1;
            c.action = Action::NoOp;
            c.content.clear();
        }
    }
    left_out
}

/// How much changed content a plan keeps for its diffs, in all.
const CONTENT_KEPT_MAX: usize = 8 * 1024 * 1024;

/// Content a plan may show: none of a field that is secret on either side (whatever the
/// provider sent), every secret value of this run redacted from what is shown, and at most
/// [`CONTENT_KEPT_MAX`] bytes of it in all (the rest summarised).
fn guard_content(changes: &mut [Change], secrets: &Secrets) {
    let mut kept = 0usize;
    for c in changes.iter_mut().filter(|c| !c.content.is_empty()) {
        let secret_here = |field: &str| {
            let sensitive =
                |a: &Option<Arc<Attributes>>| a.as_ref().is_some_and(|a| a.get(field).is_some_and(|v| v.is_sensitive() || matches!(v, Value::Redacted)));
            sensitive(&c.before) || sensitive(&c.after) || c.after.iter().chain(&c.before).any(|a| a.values().any(Value::is_sensitive))
        };
        let secret: Vec<bool> = c.content.iter().map(|cc| secret_here(&cc.field)).collect();
        for (cc, secret) in c.content.iter_mut().zip(secret) {
            if secret {
                *cc = tend_provider::ContentChange::sensitive(&cc.field);
                continue;
            }
            let size = cc.before.as_ref().map_or(0, String::len) + cc.after.as_ref().map_or(0, String::len);
            if kept + size > CONTENT_KEPT_MAX {
                cc.before = None;
                cc.after = None;
                cc.summary = Some(format!("(not shown: this plan shows at most {} MiB of changed content)", CONTENT_KEPT_MAX >> 20));
                continue;
            }
            kept += size;
            for text in [&mut cc.before, &mut cc.after].into_iter().flatten() {
                *text = secrets.redact(text);
            }
        }
    }
}

/// A provider's error about one instance as a plan error: its class and hint kept, `message`
/// in the plan's words.
fn provider_error(addr: &ResourceAddr, e: &ProviderError, message: String) -> PlanError {
    PlanError { kind: e.kind, addr: Some(addr.clone()), message, hint: e.hint.clone() }
}

fn eval_error(addr: &ResourceAddr, e: &super::EvalError) -> PlanError {
    let hint = match e {
        super::EvalError::Secret(s) => s.hint(),
        _ => None,
    };
    PlanError { kind: ErrorKind::Terminal, addr: Some(addr.clone()), message: e.to_string(), hint }
}

/// Whether anything depends on this node (only then are its values kept for references).
fn has_dependents(graph: &ResourceGraph, n: NodeIndex) -> bool {
    graph.graph.neighbors_directed(n, Direction::Outgoing).next().is_some()
}

/// The record as a provider sees it: fingerprints of secret fields that match the desired value
/// are that value, others are redacted (see [`crate::hash::reveal_prior`]).
fn prior_of(record: Option<&Record>, config: Option<&Attributes>, key: &str) -> Option<PriorRecord> {
    record.map(|r| PriorRecord { id: r.remote_id.clone(), attributes: crate::hash::reveal_prior(config, &r.attributes, key) })
}

/// What refresh learned beside the observations, for a refresh-only plan.
#[derive(Default)]
struct ReadContext {
    /// The config fields of each instance that hold a secret (refresh-only plans only).
    secret_fields: HashMap<ResourceAddr, Vec<String>>,
    /// Instances read on a target whose values are not all known yet (its address comes from
    /// something not applied): what was not found there says nothing about them.
    unsettled: HashSet<ResourceAddr>,
}

/// Observe every instance, one batched `read` per provider, providers in parallel.
async fn refresh(input: &PlanInput<'_>, order: &[NodeIndex], errors: &mut Vec<PlanError>) -> (Vec<Option<ReadResult>>, ReadContext) {
    let mut cx = ReadContext::default();
    // What is known before planning: config evaluated against recorded attributes.
    // (Only instances something depends on are kept: not sized for every instance.)
    let mut prior_known: HashMap<ResourceAddr, Arc<Attributes>> = HashMap::new();
    // Per provider: its items, and each item's place in `order`.
    let mut batches: BTreeMap<String, (ReadRequest, Vec<usize>)> = BTreeMap::new();
    let mut per_provider: HashMap<&str, usize> = HashMap::new();
    for &n in order {
        *per_provider.entry(&*input.graph.graph[n].addr.provider).or_default() += 1;
    }
    for (pos, &n) in order.iter().enumerate() {
        let node = &input.graph.graph[n];
        let record = input.state.records.get(&node.addr);
        let config = if node.desired {
            let res = &input.config.resources[&node.addr.base()];
            let resolver = Resolver { secrets: input.secrets, instances: &input.graph.instances, known: &prior_known, final_values: false };
            match eval_fields(&resolver, &node.addr, &node.exprs(res)) {
                Ok(c) => Some(c),
                Err(e) => {
                    errors.push(eval_error(&node.addr, &e));
                    continue;
                }
            }
        } else {
            None
        };
        if has_dependents(input.graph, n) {
            // The config as it is now, plus the outputs recorded at the last apply: a setting
            // changed or removed since (a host's known_hosts, trust_on_first_use) takes effect
            // in this run, never the recorded value of it.
            let mut values = config.clone().unwrap_or_default();
            if let Some(r) = record {
                let schema = kind_schema(input.providers, &node.addr);
                let output = |k: &str| schema.is_none_or(|s| s.field(k).is_none_or(|f| f.role == tend_provider::Role::Output));
                for (k, v) in r.attributes.iter() {
                    if output(k) || (config.is_none() && !values.contains_key(k)) {
                        values.insert(k.clone(), v.clone());
                    }
                }
            }
            prior_known.insert(node.addr.clone(), Arc::new(values));
        }
        let target = node.target.as_ref().map(|t| Target { addr: t.clone(), attributes: prior_known.get(t).cloned().unwrap_or_default() });
        if target.as_ref().is_some_and(|t| !t.attributes.values().all(Value::is_known)) {
            cx.unsettled.insert(node.addr.clone());
        }
        if input.options.refresh_only
            && let Some(c) = &config
        {
            cx.secret_fields.insert(node.addr.clone(), c.iter().filter(|(_, v)| v.is_sensitive()).map(|(k, _)| k.to_string()).collect());
        }
        let (batch, places) = batches.entry(node.addr.provider.to_string()).or_insert_with(|| {
            let n = per_provider[&*node.addr.provider];
            (ReadRequest { items: Vec::with_capacity(n) }, Vec::with_capacity(n))
        });
        places.push(pos);
        batch.items.push(ReadItem { addr: node.addr.clone(), prior: prior_of(record, config.as_ref(), &input.state.hmac_key), config, target });
    }
    // The providers' reads run concurrently in this task, not spawned onto other threads: what
    // they observe is then held in the memory of the thread that plans, which frees each
    // observation once its instance is planned and reuses that memory for the plan.
    let mut reads = Vec::with_capacity(batches.len());
    for (name, (req, places)) in batches {
        let Some(provider) = input.providers.get(&name).cloned() else {
            errors.push(PlanError {
                kind: ErrorKind::Terminal,
                addr: None,
                message: format!("state holds `{name}` resources but this build has no `{name}` provider"),
                hint: Some(format!("use a tend build with the `{name}` feature, or forget them with `tend state rm`")),
            });
            continue;
        };
        reads.push(async move {
            let started = std::time::Instant::now();
            let results = provider.read(req).await;
            tracing::debug!(provider = %name, items = places.len(), duration_ms = started.elapsed().as_millis(), "refreshed");
            (places, results)
        });
    }
    let mut out: Vec<Option<ReadResult>> = std::iter::repeat_with(|| None).take(order.len()).collect();
    for (places, results) in futures_util::future::join_all(reads).await {
        for (pos, result) in places.into_iter().zip(results) {
            out[pos] = Some(result.map_err(Box::new));
        }
    }
    (out, cx)
}

/// `--refresh-only`: observe everything state records and plan to record what changed outside
/// tend (or forget what is gone), changing nothing on the targets.
async fn plan_refresh(input: &PlanInput<'_>) -> Plan {
    let order = input.graph.order();
    let mut errors = Vec::new();
    let (mut observed, cx) = refresh(input, &order, &mut errors).await;
    let opts = input.options;
    let host_matches = |host: &ResourceAddr| {
        let labels = input.state.records.get(host).and_then(|r| r.attributes.get("labels")).and_then(Value::as_map);
        limit_matches(&opts.limit, host, labels)
    };
    let mut refreshed = Vec::new();
    let mut unplanned = Vec::new();
    let mut left_out = 0;
    for (pos, &n) in order.iter().enumerate() {
        let node = &input.graph.graph[n];
        let addr = &node.addr;
        let (Some(record), Some(result)) = (input.state.records.get(addr), observed[pos].take()) else { continue };
        let after = match result {
            Err(e) if e.kind == ErrorKind::Conflict => {
                errors.push(provider_error(addr, &e, e.message.clone()));
                continue;
            }
            Err(e) => {
                unplanned.push(provider_error(addr, &e, format!("cannot observe it: {e}")));
                continue;
            }
            // Not found where the target's address is not known yet: the record stays. A target
            // (a host) is a way to reach a machine, not an object its read finds or not.
            Ok(None) if cx.unsettled.contains(addr) || is_target_kind(input, addr) => continue,
            Ok(None) => None,
            Ok(Some(o)) => {
                let secret = cx.secret_fields.get(addr).map_or(&[][..], Vec::as_slice);
                let attributes = refreshed_attributes(&record.attributes, &o.attributes, secret, &input.state.hmac_key);
                let id = o.id.or_else(|| record.remote_id.clone());
                if attributes == *record.attributes && id == record.remote_id {
                    continue;
                }
                Some((attributes, id))
            }
        };
        let limited = opts.limit.is_empty() || node.target.as_ref().map_or_else(|| host_matches(addr), host_matches);
        if !(targeted(&opts.targets, addr) && limited) {
            left_out += 1;
            continue;
        }
        let (after, after_id) = after.map_or((None, None), |(a, id)| (Some(a), id));
        refreshed.push(super::Refreshed { addr: addr.clone(), before: (*record.attributes).clone(), after, before_id: record.remote_id.clone(), after_id });
    }
    check_forget_all(input, &refreshed, &mut errors);
    redact_errors(input.secrets, errors.iter_mut().chain(unplanned.iter_mut()));
    Plan { errors, unplanned, left_out, refresh_only: true, refreshed, ..plan_of(input) }
}

/// Every secret value of this run removed from what the plan's problems say.
fn redact_errors<'a>(secrets: &Secrets, errors: impl Iterator<Item = &'a mut PlanError>) {
    for e in errors {
        e.message = secrets.redact(&e.message);
        e.hint = e.hint.as_deref().map(|h| secrets.redact(h));
    }
}

/// The schema of an instance's kind, as its provider declares it.
fn kind_schema<'a>(providers: &'a Providers, addr: &ResourceAddr) -> Option<&'a tend_provider::KindSchema> {
    providers.get(&*addr.provider).and_then(|p| p.kinds().iter().find(|k| k.kind == &*addr.kind))
}

fn is_target_kind(input: &PlanInput<'_>, addr: &ResourceAddr) -> bool {
    kind_schema(input.providers, addr).is_some_and(|k| k.target)
}

/// The attributes to record after a refresh: each recorded field takes the value observed now
/// (a field the read does not report keeps its own). A field that derives from a secret — by
/// its config, by what the provider reported, or because state keeps it as a fingerprint — is
/// recorded as the fingerprint of what was observed, never as the value.
fn refreshed_attributes(recorded: &Attributes, observed: &Attributes, secret: &[String], key: &str) -> Attributes {
    recorded
        .iter()
        .map(|(k, was)| {
            let now = match observed.get(k) {
                None | Some(Value::Unknown | Value::Redacted) => was.clone(),
                Some(v) if was.is_sensitive() || v.is_sensitive() || secret.iter().any(|s| s == k) => crate::hash::fingerprint(v, key),
                Some(v) => {
                    let mut v = v.clone();
                    crate::secrets::scrub::scrub_value(&mut v);
                    v
                }
            };
            (k.clone(), now)
        })
        .collect()
}

/// A refresh that would forget every record in state is refused unless asked for: it is what
/// a wrong region, account or inventory looks like, and forgotten objects are never managed
/// (or destroyed) by tend again.
fn check_forget_all(input: &PlanInput<'_>, refreshed: &[super::Refreshed], errors: &mut Vec<PlanError>) {
    let forgotten = refreshed.iter().filter(|r| r.after.is_none()).count();
    if input.config.project.allow_empty || forgotten < 2 || forgotten < input.state.records.len() {
        return;
    }
    errors.push(PlanError {
        kind: ErrorKind::Terminal,
        addr: None,
        message: format!("this refresh would forget all {forgotten} resources in state: none of their objects was found"),
        hint: Some(
            "check the providers' settings (region, account, hosts) and that -C names the right config; to forget them on purpose, pass --allow-destroy-all"
                .into(),
        ),
    });
}

fn provider_for(input: &PlanInput<'_>, addr: &ResourceAddr) -> Result<Arc<dyn Provider>, PlanError> {
    input.providers.get(&*addr.provider).cloned().ok_or_else(|| PlanError {
        kind: ErrorKind::Terminal,
        addr: Some(addr.clone()),
        message: format!("no `{}` provider in this build", addr.provider),
        hint: None,
    })
}

async fn plan_desired(
    input: &PlanInput<'_>,
    n: NodeIndex,
    deps: &Dependencies,
    record: Option<&Record>,
    observed: Option<Observed>,
    known: &HashMap<ResourceAddr, Arc<Attributes>>,
    actions: &HashMap<ResourceAddr, Action>,
) -> Result<(Change, Attributes), PlanError> {
    let node = &input.graph.graph[n];
    let addr = &node.addr;
    let res = &input.config.resources[&addr.base()];
    let resolver = Resolver { secrets: input.secrets, instances: &input.graph.instances, known, final_values: false };
    let exprs = node.exprs(res);
    let config = eval_fields(&resolver, addr, &exprs).map_err(|e| eval_error(addr, &e))?;
    // What was observed on a target that is being replaced, or whose values (its address) are
    // only known after apply, is not what the resource will meet: plan it as absent.
    let target_unsettled = node
        .target
        .as_ref()
        .is_some_and(|t| matches!(actions.get(t), Some(Action::Replace { .. })) || known.get(t).is_some_and(|a| a.values().any(|v| !v.is_known())));
    let observed = if target_unsettled { None } else { observed };
    let target = node.target.as_ref().map(|t| Target { addr: t.clone(), attributes: known.get(t).cloned().unwrap_or_default() });
    let trigger_deps: Vec<ResourceAddr> = deps.iter().filter(|(_, k)| k.contains(&EdgeKind::Trigger)).map(|(a, _)| a.clone()).collect();
    let upstream_changes = trigger_deps.iter().filter(|a| actions.get(*a).is_some_and(|x| *x != Action::NoOp)).cloned().collect();
    let provider = provider_for(input, addr)?;
    let inputs_changed = record.is_none_or(|r| !config.values().all(Value::is_known) || r.inputs_hash != inputs_hash(&config, &input.state.hmac_key));
    let planned = provider
        .plan(PlanRequest {
            addr: addr.clone(),
            inputs_changed,
            config: Some(config.clone()),
            observed: observed.clone(),
            prior: prior_of(record, Some(&config), &input.state.hmac_key),
            target,
            upstream_changes,
            show_content: true,
        })
        .await
        .map_err(|e| provider_error(addr, &e, e.to_string()))?;
    let mut planned = planned;
    if let Some(kind) = node.kind.as_deref().and_then(|k| input.graph.runtime_kinds.get(&(addr.provider.to_string(), k.to_string()))) {
        force_replacement(&mut planned, kind);
    }
    let mut decided = decide(planned, inputs_changed, record, observed.as_ref(), &res.lifecycle, res.drift);
    // `--replace ADDR`: what exists is re-created, whatever the plan said.
    let asked = input.options.replace.iter().any(|r| r == addr || (r.key.is_none() && r == &addr.base()));
    if asked && observed.is_some() && matches!(decided.action, Action::NoOp | Action::Update) {
        decided.action = Action::Replace { create_first: res.lifecycle.create_before_destroy };
        decided.reason = ChangeReason::Requested;
    }
    // What a provider observed of a secret field (an EC2 tag read back) is as secret as the config.
    crate::hash::mark_secret_fields(&config, &mut decided.before);
    crate::hash::mark_secret_fields(&config, &mut decided.after);
    let observed = observed.map(|mut o| {
        crate::hash::mark_secret_fields(&config, &mut o.attributes);
        o
    });
    // `suspend = true`: observed and planned, but nothing changes until it is lifted.
    let held_back = (res.suspend && decided.action != Action::NoOp).then_some(decided.action);
    if held_back.is_some() {
        decided.action = Action::NoOp;
    }
    tracing::trace!(%addr, action = ?decided.action, reason = ?decided.reason, "planned");
    let mut values = config;
    values.extend(decided.after.clone());
    // A no-op needs no copies for apply unless something downstream reads its values.
    let keep = decided.action != Action::NoOp || has_dependents(input.graph, n);
    // A staged no-op is still a member of its target's next commit: keep what it recorded.
    let keep_prior = keep || decided.staged;
    // One map where they are the same — the record's, a plan's `before` and `after` of a no-op —
    // and nothing in it is secret (a secret's plaintext equals what an older record kept in
    // plain, but is shown redacted).
    let plain = |a: &Attributes| !a.values().any(Value::is_sensitive);
    let after = Arc::new(decided.after);
    let after = match record {
        Some(r) if plain(&after) && *r.attributes == *after => r.attributes.clone(),
        _ => after,
    };
    let before = decided.before;
    let before = observed.as_ref().map(|_| if plain(&before) && before == *after { after.clone() } else { Arc::new(before) });
    let change = Change {
        addr: addr.clone(),
        action: decided.action,
        reason: decided.reason,
        before,
        after: Some(after),
        requires_replace: decided.requires_replace.into(),
        triggered_by: decided.triggered_by.into(),
        note: decided.note.map(String::into_boxed_str),
        drift_reported: decided.drift_reported,
        released: record
            .filter(|_| decided.action != Action::NoOp)
            .map(|r| r.dependencies.iter().filter(|d| !deps.iter().any(|(a, _)| a == *d)).cloned().collect())
            .unwrap_or_default(),
        depends_on: deps.iter().map(|(a, _)| a.clone()).collect(),
        trigger_deps: trigger_deps.into(),
        target: node.target.clone(),
        config: keep.then_some(exprs),
        observed: observed.as_ref().filter(|_| decided.action != Action::NoOp).map(|o| o.attributes.clone()),
        observed_id: observed.and_then(|o| o.id).map(String::into_boxed_str),
        prior: record.filter(|_| keep_prior).map(|r| r.attributes.clone()),
        prior_id: record.and_then(|r| r.remote_id.as_deref()).map(Box::from),
        // The resource's `timeout`, else what the instance's own kind says.
        lifecycle: Arc::new(Lifecycle { timeout_secs: res.lifecycle.timeout_secs.or(node.timeout_secs), ..res.lifecycle.clone() }),
        staged: decided.staged,
        held_back,
        kind: node.kind.as_deref().map(str::to_string),
        runs: kind_schema(input.providers, addr).is_some_and(|k| k.runs),
        content: if decided.action == Action::NoOp && held_back.is_none() { ThinVec::new() } else { decided.content.into() },
    };
    Ok((change, values))
}

/// An update that changes a field its runtime kind's schema says cannot change in place (a
/// custom resource's immutable field) is a replacement naming that field.
fn force_replacement(p: &mut PlannedChange, kind: &tend_provider::RuntimeKind) {
    if p.action != Action::Update {
        return;
    }
    let fixed: Vec<&tend_provider::RuntimeField> = kind.fields.iter().filter(|f| f.update == tend_provider::UpdateMode::Replace).collect();
    for d in tend_provider::diff(&p.before, &p.after) {
        if let Some(f) = fixed.iter().find(|f| d.path.starts_with(&f.path)) {
            let name = f.path.to_string();
            if !p.requires_replace.contains(&name) {
                p.requires_replace.push(name);
            }
            p.action = Action::Replace { create_first: false };
        }
    }
}

struct Decided {
    action: Action,
    reason: ChangeReason,
    before: Attributes,
    after: Attributes,
    requires_replace: Vec<String>,
    triggered_by: Vec<ResourceAddr>,
    note: Option<String>,
    drift_reported: bool,
    staged: bool,
    content: Vec<tend_provider::ContentChange>,
}

/// The engine's policies on top of what the provider planned.
fn decide(p: PlannedChange, inputs_changed: bool, record: Option<&Record>, observed: Option<&Observed>, lifecycle: &Lifecycle, drift: DriftPolicy) -> Decided {
    let mut d = Decided {
        action: p.action,
        reason: ChangeReason::None,
        before: p.before,
        after: p.after,
        requires_replace: p.requires_replace,
        triggered_by: p.triggered_by,
        note: p.note,
        drift_reported: false,
        staged: p.staged,
        content: p.content,
    };
    // ignore_changes: differences only in ignored fields (or paths inside them, as
    // `metadata.annotations`) are no change.
    if !lifecycle.ignore_changes.is_empty() && matches!(d.action, Action::Update | Action::Replace { .. }) {
        let ignore_paths: Vec<tend_provider::FieldPath> = lifecycle.ignore_changes.iter().filter_map(|i| i.parse().ok()).collect();
        let ignored = |p: &tend_provider::FieldPath| ignore_paths.iter().any(|i| p.starts_with(i));
        d.requires_replace.retain(|k| !k.parse().is_ok_and(|p| ignored(&p)));
        // A field observed but not planned (absent after) is no change; inside a field it is.
        let changed = tend_provider::diff(&d.before, &d.after).into_iter().filter(|x| x.after.is_some() || x.path.0.len() > 1);
        if changed.map(|x| x.path).all(|p| ignored(&p)) && d.triggered_by.is_empty() {
            d.action = Action::NoOp;
        } else if matches!(d.action, Action::Replace { .. }) && d.requires_replace.is_empty() {
            d.action = Action::Update;
        }
    }
    match record {
        Some(r) if r.status == RecordStatus::Tainted => {
            d.reason = ChangeReason::Tainted;
            d.action = if observed.is_some() { Action::Replace { create_first: false } } else { Action::Create };
        }
        None => {
            if d.action != Action::NoOp {
                d.reason = ChangeReason::New;
            }
        }
        Some(_) if d.action == Action::NoOp => {}
        Some(_) if !d.triggered_by.is_empty() => d.reason = ChangeReason::Triggered,
        Some(_) if inputs_changed => d.reason = ChangeReason::ConfigChanged,
        Some(_) => {
            d.reason = ChangeReason::Drift;
            match drift {
                DriftPolicy::Correct => {}
                DriftPolicy::Report => {
                    d.drift_reported = true;
                    d.action = Action::NoOp;
                }
                DriftPolicy::Ignore => {
                    d.action = Action::NoOp;
                    d.reason = ChangeReason::None;
                }
            }
        }
    }
    if let Action::Replace { .. } = d.action {
        d.action = Action::Replace { create_first: lifecycle.create_before_destroy };
    }
    d
}

async fn plan_orphan(
    input: &PlanInput<'_>,
    n: NodeIndex,
    deps: &Dependencies,
    record: Option<&Record>,
    observed: Option<Observed>,
) -> Result<(Change, Attributes), PlanError> {
    let node = &input.graph.graph[n];
    let addr = &node.addr;
    let record = record.expect("orphans come from state");
    let provider = provider_for(input, addr)?;
    let planned = provider
        .plan(PlanRequest {
            addr: addr.clone(),
            inputs_changed: true,
            config: None,
            observed: observed.clone(),
            prior: prior_of(Some(record), None, &input.state.hmac_key),
            target: None,
            upstream_changes: BTreeSet::new(),
            show_content: true,
        })
        .await
        .map_err(|e| provider_error(addr, &e, e.to_string()))?;
    let change = Change {
        addr: addr.clone(),
        action: Action::Delete,
        reason: ChangeReason::Removed,
        before: Some(if planned.before.is_empty() { record.attributes.clone() } else { Arc::new(planned.before) }),
        after: None,
        requires_replace: ThinVec::new(),
        triggered_by: ThinVec::new(),
        note: planned.note.map(String::into_boxed_str),
        drift_reported: false,
        depends_on: deps.iter().map(|(a, _)| a.clone()).collect(),
        trigger_deps: ThinVec::new(),
        released: ThinVec::new(),
        target: node.target.clone(),
        config: None,
        observed: observed.as_ref().map(|o| o.attributes.clone()),
        observed_id: observed.and_then(|o| o.id).map(String::into_boxed_str),
        prior: Some(record.attributes.clone()),
        prior_id: record.remote_id.as_deref().map(Box::from),
        lifecycle: Arc::new(Lifecycle { prevent_destroy: record.prevent_destroy, ..Lifecycle::default() }),
        staged: planned.staged,
        held_back: None,
        kind: None,
        runs: false,
        content: ThinVec::new(),
    };
    Ok((change, (*record.attributes).clone()))
}

/// A plan that deletes everything state holds and keeps nothing is refused unless asked for
/// (`allow_empty = true` in `[project]`, or `--allow-destroy-all`): it is what an empty or wrong
/// config directory, or a commit that deleted every file, looks like.
fn check_destroy_all(config: &Config, changes: &[Change], errors: &mut Vec<PlanError>) {
    let destroyed = changes.iter().filter(|c| c.action == Action::Delete).count();
    if config.project.allow_empty || destroyed == 0 || changes.iter().any(|c| c.action != Action::Delete) {
        return;
    }
    errors.push(PlanError {
        kind: ErrorKind::Terminal,
        addr: None,
        message: format!(
            "this plan would destroy all {destroyed} resource{} in state and keep nothing: {} declares no resource",
            if destroyed == 1 { "" } else { "s" },
            config.root.display()
        ),
        hint: Some(
            "check that -C names the right config directory and commit; to destroy everything on purpose, set allow_empty = true in [project] of tend.toml or pass --allow-destroy-all"
                .into(),
        ),
    });
}

fn check_prevent_destroy(config: &Config, changes: &[Change], errors: &mut Vec<PlanError>) {
    for c in changes.iter().filter(|c| c.lifecycle.prevent_destroy) {
        let verb = match c.action {
            Action::Delete => "destroy",
            Action::Replace { .. } => "replace",
            _ => continue,
        };
        let why = if c.requires_replace.is_empty() { String::new() } else { format!(" (changing {} forces replacement)", c.requires_replace.join(", ")) };
        let location = config.resources.get(&c.addr.base()).map(|r| format!(" declared at {}", config.sources.location(r.span))).unwrap_or_default();
        errors.push(PlanError {
            kind: ErrorKind::Terminal,
            addr: Some(c.addr.clone()),
            message: format!("`{}`{location} has lifecycle.prevent_destroy set, but this plan would {verb} it{why}", c.addr),
            hint: Some(if c.action == Action::Delete && c.config.is_none() {
                "put it back in the config, or set prevent_destroy = false and apply before removing it; `tend state rm` forgets it without touching the target"
                    .into()
            } else {
                "revert the change that forces replacement, or set lifecycle.prevent_destroy = false if replacing it is intended".into()
            }),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: RecordStatus) -> Record {
        Record {
            addr: "fake.thing.a".parse().expect("address"),
            remote_id: Some("id-1".into()),
            status,
            inputs_hash: "h".into(),
            attributes: Arc::new(Attributes::new()),
            target: None,
            dependencies: Vec::new(),
            prevent_destroy: false,
            updated_at: "".into(),
        }
    }

    fn planned(action: Action, before: &[(&str, &str)], after: &[(&str, &str)], replace: &[&str]) -> PlannedChange {
        let attrs = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| ((*k).to_string(), Value::from(*v))).collect();
        PlannedChange {
            before: attrs(before),
            after: attrs(after),
            requires_replace: replace.iter().map(ToString::to_string).collect(),
            ..PlannedChange::new(action)
        }
    }

    fn observed() -> Observed {
        Observed { id: Some("id-1".into()), attributes: Attributes::new() }
    }

    #[test]
    fn a_new_instance_is_new_and_a_config_change_is_a_config_change() {
        let d = decide(planned(Action::Create, &[], &[("v", "1")], &[]), true, None, None, &Lifecycle::default(), DriftPolicy::Correct);
        assert_eq!((d.action, d.reason), (Action::Create, ChangeReason::New));
        let rec = record(RecordStatus::Ready);
        let d = decide(
            planned(Action::Update, &[("v", "1")], &[("v", "2")], &[]),
            true,
            Some(&rec),
            Some(&observed()),
            &Lifecycle::default(),
            DriftPolicy::Correct,
        );
        assert_eq!((d.action, d.reason), (Action::Update, ChangeReason::ConfigChanged));
        let d =
            decide(planned(Action::NoOp, &[("v", "1")], &[("v", "1")], &[]), false, Some(&rec), Some(&observed()), &Lifecycle::default(), DriftPolicy::Correct);
        assert_eq!((d.action, d.reason), (Action::NoOp, ChangeReason::None));
    }

    #[test]
    fn drift_is_corrected_reported_or_ignored_by_policy() {
        let rec = record(RecordStatus::Ready);
        let drifted = || planned(Action::Update, &[("v", "edited")], &[("v", "1")], &[]);
        let correct = decide(drifted(), false, Some(&rec), Some(&observed()), &Lifecycle::default(), DriftPolicy::Correct);
        assert_eq!((correct.action, correct.reason, correct.drift_reported), (Action::Update, ChangeReason::Drift, false));
        let report = decide(drifted(), false, Some(&rec), Some(&observed()), &Lifecycle::default(), DriftPolicy::Report);
        assert_eq!((report.action, report.reason, report.drift_reported), (Action::NoOp, ChangeReason::Drift, true));
        let ignore = decide(drifted(), false, Some(&rec), Some(&observed()), &Lifecycle::default(), DriftPolicy::Ignore);
        assert_eq!((ignore.action, ignore.reason, ignore.drift_reported), (Action::NoOp, ChangeReason::None, false));
        // A change an upstream triggered is neither drift nor config.
        let mut triggered = planned(Action::Update, &[], &[], &[]);
        triggered.triggered_by = vec!["fake.thing.up".parse().expect("address")];
        let d = decide(triggered, false, Some(&rec), Some(&observed()), &Lifecycle::default(), DriftPolicy::Report);
        assert_eq!((d.action, d.reason), (Action::Update, ChangeReason::Triggered));
    }

    #[test]
    fn ignored_fields_make_no_change_and_a_replacement_they_forced_an_update() {
        let rec = record(RecordStatus::Ready);
        let lifecycle = Lifecycle { ignore_changes: vec!["tags".into()], ..Lifecycle::default() };
        let only_ignored = planned(Action::Update, &[("tags", "a"), ("v", "1")], &[("tags", "b"), ("v", "1")], &[]);
        let d = decide(only_ignored, true, Some(&rec), Some(&observed()), &lifecycle, DriftPolicy::Correct);
        assert_eq!(d.action, Action::NoOp);
        let lifecycle = Lifecycle { ignore_changes: vec!["ami".into()], ..Lifecycle::default() };
        let replace = planned(Action::Replace { create_first: false }, &[("ami", "a"), ("v", "1")], &[("ami", "b"), ("v", "2")], &["ami"]);
        let d = decide(replace, true, Some(&rec), Some(&observed()), &lifecycle, DriftPolicy::Correct);
        assert_eq!((d.action, d.requires_replace.len()), (Action::Update, 0));
        // A path inside a field: only what lies under it is ignored.
        let spec = |tier: &str, replicas: i64| {
            Value::Map(
                [("labels".to_string(), Value::Map([("tier".to_string(), Value::from(tier))].into())), ("replicas".to_string(), Value::Int(replicas))].into(),
            )
        };
        let nested = |b: Value, a: Value| PlannedChange {
            before: [("spec".to_string(), b)].into(),
            after: [("spec".to_string(), a)].into(),
            ..PlannedChange::new(Action::Update)
        };
        let lifecycle = Lifecycle { ignore_changes: vec!["spec.labels".into()], ..Lifecycle::default() };
        let d = decide(nested(spec("front", 2), spec("back", 2)), true, Some(&rec), Some(&observed()), &lifecycle, DriftPolicy::Correct);
        assert_eq!(d.action, Action::NoOp, "only an ignored label changed");
        let d = decide(nested(spec("front", 2), spec("back", 3)), true, Some(&rec), Some(&observed()), &lifecycle, DriftPolicy::Correct);
        assert_eq!(d.action, Action::Update, "replicas is not ignored");
    }

    #[test]
    fn tainted_records_are_replaced_or_created_and_lifecycle_orders_replacements() {
        let tainted = record(RecordStatus::Tainted);
        let noop = || planned(Action::NoOp, &[("v", "1")], &[("v", "1")], &[]);
        let d = decide(noop(), false, Some(&tainted), Some(&observed()), &Lifecycle::default(), DriftPolicy::Correct);
        assert_eq!((d.action, d.reason), (Action::Replace { create_first: false }, ChangeReason::Tainted));
        let d = decide(noop(), false, Some(&tainted), None, &Lifecycle::default(), DriftPolicy::Correct);
        assert_eq!((d.action, d.reason), (Action::Create, ChangeReason::Tainted), "gone: created again");
        let cbd = Lifecycle { create_before_destroy: true, ..Lifecycle::default() };
        let rec = record(RecordStatus::Ready);
        let d = decide(
            planned(Action::Replace { create_first: false }, &[("ami", "a")], &[("ami", "b")], &["ami"]),
            true,
            Some(&rec),
            Some(&observed()),
            &cbd,
            DriftPolicy::Correct,
        );
        assert_eq!(d.action, Action::Replace { create_first: true });
    }

    #[test]
    fn a_refresh_records_what_was_observed_and_secrets_only_as_fingerprints() {
        let attrs = |pairs: &[(&str, Value)]| -> Attributes { pairs.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect() };
        let recorded = attrs(&[
            ("mode", Value::from("0644")),
            ("kept", Value::from("as recorded")),
            ("token", crate::hash::fingerprint(&Value::from("old"), "k")),
            ("tag", Value::from("plain")),
        ]);
        let observed =
            attrs(&[("mode", Value::from("0600")), ("token", Value::from("new-secret")), ("tag", Value::from("new-secret")), ("extra", Value::from("x"))]);
        let after = refreshed_attributes(&recorded, &observed, &["tag".to_string()], "k");
        assert_eq!(after["mode"], Value::from("0600"), "observed");
        assert_eq!(after["kept"], Value::from("as recorded"), "not reported by the read: kept");
        assert_eq!(after["token"], crate::hash::fingerprint(&Value::from("new-secret"), "k"), "recorded as a fingerprint: stays one");
        assert_eq!(after["tag"], crate::hash::fingerprint(&Value::from("new-secret"), "k"), "secret by its config");
        assert!(!after.contains_key("extra"), "only what state records");
        assert!(!serde_json::to_string(&after).expect("json").contains("new-secret"));
    }

    #[test]
    fn waves_put_each_instance_after_everything_it_depends_on() {
        use crate::graph::{EdgeKind, Node};
        let mut g = ResourceGraph::default();
        let node = |a: &str| Node { addr: a.parse().expect("address"), desired: true, target: None, kind: None, timeout_secs: None, fields: None };
        let (a, b, c, _d) = (
            g.graph.add_node(node("fake.thing.a")),
            g.graph.add_node(node("fake.thing.b")),
            g.graph.add_node(node("fake.thing.c")),
            g.graph.add_node(node("fake.thing.d")),
        );
        g.graph.add_edge(a, b, EdgeKind::Reference);
        g.graph.add_edge(b, c, EdgeKind::Reference);
        g.graph.add_edge(a, c, EdgeKind::Reference);
        let order = g.order();
        let shape: Vec<Vec<String>> = waves(&g, &order).iter().map(|w| w.iter().map(|(_, n)| g.graph[*n].addr.to_string()).collect()).collect();
        assert_eq!(shape, [vec!["fake.thing.a", "fake.thing.d"], vec!["fake.thing.b"], vec!["fake.thing.c"]]);
    }
}
