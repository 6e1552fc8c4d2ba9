//! The dependency walk.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tend_provider::{Action, ResourceAddr};
use tend_state::{StateError, StateStore};

use super::executor::{Ctx, Step};
use crate::plan::{Plan, Summary};
use crate::registry::Providers;
use crate::report::{Outcome, Reporter};

/// How to apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Steps run at once (at least 1).
    pub parallelism: usize,
    /// `user@host`, for history.
    pub who: String,
    /// Set to stop scheduling new steps (running ones finish).
    pub cancel: Arc<AtomicBool>,
    /// Declared secrets (re-decrypted at apply: plans never hold plaintext).
    pub secrets: Arc<crate::secrets::Secrets>,
}

/// What an apply did.
#[derive(Debug, Clone, Default)]
pub struct ApplyOutcome {
    /// Each attempted or skipped change, in completion order.
    pub results: Vec<(ResourceAddr, Action, Outcome)>,
    /// Counts of changes that succeeded.
    pub applied: Summary,
    /// Changes that failed.
    pub failed: usize,
    /// Changes skipped because something upstream failed or the run was interrupted.
    pub skipped: usize,
    /// Whether the run was interrupted.
    pub interrupted: bool,
    /// Instances the plan could not cover (unreachable hosts), reported as failed.
    pub unplanned: usize,
    /// A refresh-only plan's records: (updated in state, forgotten).
    pub refreshed: Option<(usize, usize)>,
}

impl ApplyOutcome {
    /// Whether everything planned was applied.
    pub fn success(&self) -> bool {
        self.failed == 0 && self.skipped == 0 && !self.interrupted && self.unplanned == 0
    }

    /// `2 added, 1 changed, 0 replaced, 0 destroyed; 1 failed, 2 skipped`.
    pub fn summary_line(&self) -> String {
        if let Some((updated, forgotten)) = self.refreshed {
            return format!("{updated} updated in state, {forgotten} forgotten");
        }
        let a = &self.applied;
        let mut s = format!("{} added, {} changed, {} replaced, {} destroyed", a.add, a.change, a.replace, a.destroy);
        if self.failed + self.skipped > 0 {
            s.push_str(&format!("; {} failed, {} skipped", self.failed, self.skipped));
        }
        if self.unplanned > 0 {
            s.push_str(&format!("; {} not planned (unreachable)", self.unplanned));
        }
        s
    }
}

/// Apply a plan: walk its changes in dependency order with bounded parallelism, record each in
/// state as it finishes, and write one history row.
#[tracing::instrument(skip_all, fields(revision = %plan.revision))]
pub async fn apply(
    plan: Arc<Plan>,
    providers: &Providers,
    store: Arc<dyn StateStore>,
    reporter: Arc<dyn Reporter>,
    opts: ApplyOptions,
) -> Result<ApplyOutcome, StateError> {
    if plan.refresh_only {
        return super::record_refresh(&plan, store.as_ref(), &opts.who).await;
    }
    let hmac_key = store.hmac_key().await?;
    let history = store.begin_history(&plan.revision, &opts.who, &plan.summary().to_string()).await?;
    let unplanned = plan.unplanned.len();
    let mut outcome = walk(plan, providers, store.clone(), reporter, &opts, hmac_key).await;
    outcome.unplanned = unplanned;
    let result = if outcome.interrupted {
        "interrupted"
    } else if outcome.success() {
        "success"
    } else {
        "failed"
    };
    let errors: Vec<tend_state::HistoryError> = outcome
        .results
        .iter()
        .filter_map(|(addr, _, o)| match o {
            Outcome::Failed(f) => Some(tend_state::HistoryError { address: addr.to_string(), kind: f.kind.name().into(), message: f.render() }),
            _ => None,
        })
        .collect();
    let outcomes: Vec<tend_state::HistoryOutcome> = outcome
        .results
        .iter()
        .map(|(addr, action, o)| {
            let (what, message) = match o {
                Outcome::Applied => ("applied", None),
                Outcome::Failed(f) => ("failed", Some(f.render())),
                Outcome::Skipped(cause) if cause == addr => ("skipped", Some("not started: the run was interrupted".to_string())),
                Outcome::Skipped(cause) => ("skipped", Some(format!("{cause} failed"))),
            };
            tend_state::HistoryOutcome { address: addr.to_string(), action: action_word(*action).into(), outcome: what.into(), message }
        })
        .collect();
    store.finish_history(history, &outcome.summary_line(), result, &errors, &outcomes).await?;
    Ok(outcome)
}

/// An action as history and the agent's status name it.
pub(crate) fn action_word(a: Action) -> &'static str {
    match a {
        Action::NoOp => "none",
        Action::Create => "create",
        Action::Update => "update",
        Action::Replace { .. } => "replace",
        Action::Delete => "delete",
    }
}

struct Schedule {
    steps: Vec<Step>,
    waits_on: Vec<BTreeSet<usize>>,
    dependents: Vec<BTreeSet<usize>>,
}

fn schedule(plan: &Plan) -> Schedule {
    let n = plan.changes.len();
    let index: HashMap<&ResourceAddr, usize> = plan.changes.iter().enumerate().map(|(i, c)| (&c.addr, i)).collect();
    let mut steps: Vec<Step> = (0..n).map(Step::Main).collect();
    let mut waits_on: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    for (i, c) in plan.changes.iter().enumerate() {
        for d in c.depends_on.iter() {
            let Some(&j) = index.get(d) else { continue };
            if c.action == Action::Delete && c.target.as_ref() == Some(d) && plan.changes[j].action != Action::Delete {
                // Deleted from a target that stays: its values (how to reach it) are known once
                // its own step has run, and it outlives the deletion either way.
                waits_on[i].insert(j);
            } else if c.action == Action::Delete {
                // What a deleted resource depended on must outlive it (what does not change
                // outlives it anyway).
                if plan.changes[j].action != Action::NoOp {
                    waits_on[j].insert(i);
                }
            } else {
                waits_on[i].insert(j);
            }
        }
    }
    // A deletion waits for the changes that stop depending on it.
    for (k, c) in plan.changes.iter().enumerate().filter(|(_, c)| c.action != Action::Delete) {
        for d in &c.released {
            if let Some(&i) = index.get(d)
                && plan.changes[i].action == Action::Delete
                && !reaches(&waits_on, k, i)
            {
                waits_on[i].insert(k);
            }
        }
    }
    for (i, c) in plan.changes.iter().enumerate() {
        if c.action == (Action::Replace { create_first: true }) {
            let dependents: BTreeSet<usize> = (0..n).filter(|k| waits_on[*k].contains(&i)).collect();
            let mut w = dependents;
            w.insert(i);
            steps.push(Step::Deposed(i));
            waits_on.push(w);
        }
    }
    // Destroy-before-create: the old object goes before its replacement is created, and after
    // the old objects that depend on it and go too (deleted, or replaced the same way).
    let mut destroy_step: HashMap<usize, usize> = HashMap::new();
    for (i, c) in plan.changes.iter().enumerate() {
        if c.action == (Action::Replace { create_first: false }) {
            destroy_step.insert(i, steps.len());
            steps.push(Step::Destroy(i));
            waits_on.push(BTreeSet::new());
        }
    }
    for (&i, &s) in &destroy_step {
        waits_on[i].insert(s);
        for (k, c) in plan.changes.iter().enumerate().filter(|(_, c)| c.depends_on.contains(&plan.changes[i].addr)) {
            if c.action == Action::Delete {
                waits_on[s].insert(k);
            } else if let Some(&dk) = destroy_step.get(&k) {
                waits_on[s].insert(dk);
            }
        }
    }
    add_commits(plan, &index, &destroy_step, &mut steps, &mut waits_on);
    let mut dependents = vec![BTreeSet::new(); steps.len()];
    for (s, w) in waits_on.iter().enumerate() {
        for d in w {
            dependents[*d].insert(s);
        }
    }
    Schedule { steps, waits_on, dependents }
}

/// Whether step `from` waits, directly or not, on step `to`.
fn reaches(waits_on: &[BTreeSet<usize>], from: usize, to: usize) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from];
    while let Some(s) = stack.pop() {
        if s == to {
            return true;
        }
        if seen.insert(s) {
            stack.extend(waits_on[s].iter().copied());
        }
    }
    false
}

/// Staged changes take effect when their target commits: one `Commit` step per target with
/// staged changes, after every staged change on it (and the target itself), and before whatever
/// depends on those changes — unless that would close a cycle, in which case the dependent only
/// waits for the staged change itself.
fn add_commits(
    plan: &Plan,
    index: &HashMap<&ResourceAddr, usize>,
    destroy_step: &HashMap<usize, usize>,
    steps: &mut Vec<Step>,
    waits_on: &mut Vec<BTreeSet<usize>>,
) {
    let mut commits: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, c) in plan.changes.iter().enumerate().filter(|(_, c)| c.staged && c.is_change()) {
        let Some(&t) = c.target.as_ref().and_then(|t| index.get(t)) else { continue };
        if plan.changes[t].action == Action::Delete {
            continue; // the target goes away: nothing to switch
        }
        let s = *commits.entry(t).or_insert_with(|| {
            steps.push(Step::Commit(t));
            waits_on.push(BTreeSet::from([t]));
            steps.len() - 1
        });
        waits_on[s].insert(i);
        if let Some(&d) = destroy_step.get(&i) {
            waits_on[s].insert(d);
        }
    }
    for (&t, &s) in &commits {
        let members: HashSet<usize> =
            plan.changes.iter().enumerate().filter(|(_, c)| c.staged && c.target.as_ref().and_then(|a| index.get(a)) == Some(&t)).map(|(i, _)| i).collect();
        let upstream = ancestors(waits_on, s);
        for (k, c) in plan.changes.iter().enumerate() {
            if members.contains(&k) || c.action == Action::Delete || upstream.contains(&k) {
                continue;
            }
            if c.depends_on.iter().any(|d| index.get(d).is_some_and(|j| members.contains(j))) {
                waits_on[k].insert(s);
            }
        }
    }
}

/// Every step `s` waits on, directly or not.
fn ancestors(waits_on: &[BTreeSet<usize>], s: usize) -> HashSet<usize> {
    let mut seen = HashSet::new();
    let mut stack = vec![s];
    while let Some(x) = stack.pop() {
        for &w in &waits_on[x] {
            if seen.insert(w) {
                stack.push(w);
            }
        }
    }
    seen
}

async fn walk(
    plan: Arc<Plan>,
    providers: &Providers,
    store: Arc<dyn StateStore>,
    reporter: Arc<dyn Reporter>,
    opts: &ApplyOptions,
    hmac_key: String,
) -> ApplyOutcome {
    let sched = schedule(&plan);
    let mut known = HashMap::new();
    for c in plan.changes.iter().filter(|c| c.action == Action::Delete) {
        known.insert(c.addr.clone(), c.prior.clone().unwrap_or_default());
    }
    let ctx = Arc::new(Ctx {
        plan: plan.clone(),
        providers: providers.clone(),
        store,
        known: Mutex::new(known),
        changing: plan.changes.iter().filter(|c| c.is_change()).map(|c| c.addr.clone()).collect(),
        secrets: opts.secrets.clone(),
        hmac_key,
        reporter: reporter.clone(),
        slots: Arc::new(tokio::sync::Semaphore::new(opts.parallelism.max(1))),
    });
    let mut remaining: Vec<usize> = sched.waits_on.iter().map(BTreeSet::len).collect();
    let mut ready: BTreeSet<usize> = (0..sched.steps.len()).filter(|s| remaining[*s] == 0).collect();
    let mut skips = Skips::default();
    let mut done: HashSet<usize> = HashSet::new();
    let mut failed_destroy: HashSet<usize> = HashSet::new();
    let mut out = ApplyOutcome::default();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        // Start what is ready while a slot is free (see `Ctx::slots`: a step waiting for its
        // record to be written holds none).
        while let Some(&s) = ready.first() {
            let step = sched.steps[s];
            let (Step::Main(i) | Step::Deposed(i) | Step::Destroy(i) | Step::Commit(i)) = step;
            let c = &plan.changes[i];
            let cancelled = opts.cancel.load(Ordering::SeqCst);
            if let Some(cause) = skips.cause.get(&s).cloned().or_else(|| cancelled.then(|| c.addr.clone())) {
                if cancelled {
                    out.interrupted = true;
                }
                let commit = matches!(step, Step::Commit(_));
                if commit || c.is_change() && matches!(step, Step::Main(_)) && !failed_destroy.contains(&i) {
                    let action = if commit { Action::Update } else { c.action };
                    let outcome = Outcome::Skipped(cause.clone());
                    reporter.post_apply(&c.addr, action, &outcome, std::time::Duration::ZERO);
                    out.results.push((c.addr.clone(), action, outcome));
                    out.skipped += 1;
                }
                ready.remove(&s);
                finish(s, &sched, &mut remaining, &mut ready, &mut done, Some(&cause), &mut skips, &c.addr);
                continue;
            }
            if !c.is_change() && !matches!(step, Step::Commit(_)) {
                ready.remove(&s);
                ctx.settle_noop(i);
                finish(s, &sched, &mut remaining, &mut ready, &mut done, None, &mut skips, &c.addr);
                continue;
            }
            let Ok(slot) = ctx.slots.clone().try_acquire_owned() else { break };
            ready.remove(&s);
            // A destroy-before-create replacement starts with its Destroy step.
            let starts = match step {
                Step::Main(_) => c.action != (Action::Replace { create_first: false }),
                Step::Destroy(_) => true,
                Step::Deposed(_) | Step::Commit(_) => false,
            };
            if starts {
                reporter.pre_apply(&c.addr, c.action);
            }
            let ctx = ctx.clone();
            let not_applied = skips.not_applied.remove(&s).unwrap_or_default();
            tasks.spawn(async move {
                let started = Instant::now();
                let span = tracing::info_span!("resource", addr = %ctx.plan.changes[i].addr, provider = %ctx.plan.changes[i].addr.provider, action = ?ctx.plan.changes[i].action);
                let result = tracing::Instrument::instrument(ctx.run(step, slot, not_applied), span).await;
                (s, step, result, started.elapsed())
            });
        }
        let joined = tokio::select! {
            joined = tasks.join_next() => joined,
            // A slot came free while steps wait for one: start them.
            free = ctx.slots.acquire(), if !ready.is_empty() => {
                drop(free);
                continue;
            }
        };
        let Some(joined) = joined else { break };
        let (s, step, result, elapsed) = joined.expect("apply steps do not panic");
        let (Step::Main(i) | Step::Deposed(i) | Step::Destroy(i) | Step::Commit(i)) = step;
        let c = &plan.changes[i];
        let failure = match result {
            Ok(done) => {
                if let Some(what) = done {
                    tracing::info!(target_addr = %c.addr, duration_ms = elapsed.as_millis(), "{what}");
                    reporter.on_commit(&c.addr, &what, elapsed);
                } else if matches!(step, Step::Main(_)) {
                    tracing::info!(addr = %c.addr, action = ?c.action, duration_ms = elapsed.as_millis(), "applied");
                    reporter.post_apply(&c.addr, c.action, &Outcome::Applied, elapsed);
                    out.results.push((c.addr.clone(), c.action, Outcome::Applied));
                    out.applied = add(out.applied, c.action);
                }
                None
            }
            Err(e) => {
                tracing::info!(addr = %c.addr, action = ?c.action, duration_ms = elapsed.as_millis(), "failed");
                if matches!(step, Step::Destroy(_)) {
                    // Reported once, as the failure of the replacement whose step it is.
                    failed_destroy.insert(i);
                }
                // A failed commit is the target's failure, counted once.
                let action = if matches!(step, Step::Commit(_)) { Action::Update } else { c.action };
                let mut e = e;
                if matches!(step, Step::Deposed(_)) {
                    e.message = format!("the replacement is in place, but destroying the old object failed: {}", e.message);
                }
                let outcome = Outcome::Failed(e);
                reporter.post_apply(&c.addr, action, &outcome, elapsed);
                out.results.push((c.addr.clone(), action, outcome));
                out.failed += 1;
                Some(c.addr.clone())
            }
        };
        finish(s, &sched, &mut remaining, &mut ready, &mut done, failure.as_ref(), &mut skips, &c.addr);
    }
    // A step whose turn never came (steps waiting on each other) is a failure, never silence.
    for (s, step) in sched.steps.iter().enumerate().filter(|(s, _)| !done.contains(s)) {
        let (Step::Main(i) | Step::Deposed(i) | Step::Destroy(i) | Step::Commit(i)) = *step;
        let c = &plan.changes[i];
        if matches!(step, Step::Main(_)) && c.is_change() {
            let outcome = Outcome::Failed(crate::report::StepFailure::terminal(format!(
                "not applied: its step {s} waits in a cycle of steps (a bug in tend's ordering; please report it)"
            )));
            reporter.post_apply(&c.addr, c.action, &outcome, std::time::Duration::ZERO);
            out.results.push((c.addr.clone(), c.action, outcome));
            out.failed += 1;
        }
    }
    out
}

fn add(mut s: Summary, a: Action) -> Summary {
    match a {
        Action::Create => s.add += 1,
        Action::Update => s.change += 1,
        Action::Replace { .. } => s.replace += 1,
        Action::Delete => s.destroy += 1,
        Action::NoOp => s.noop += 1,
    }
    s
}

/// Why steps are skipped, and what did not apply of each commit's members.
#[derive(Default)]
struct Skips {
    /// A step that will not run, and the failure that stops it.
    cause: HashMap<usize, ResourceAddr>,
    /// Per commit step, its staged members that failed or were skipped: the commit still runs
    /// (what was staged takes effect, or the provider refuses to commit without them).
    not_applied: HashMap<usize, Vec<ResourceAddr>>,
}

/// Mark step `s` (of the change at `addr`) done; release its dependents, passing on a failure as
/// their skip cause — except to a commit of another target's staged changes, which is told
/// which member did not apply.
#[allow(clippy::too_many_arguments)]
fn finish(
    s: usize,
    sched: &Schedule,
    remaining: &mut [usize],
    ready: &mut BTreeSet<usize>,
    done: &mut HashSet<usize>,
    failed: Option<&ResourceAddr>,
    skips: &mut Skips,
    addr: &ResourceAddr,
) {
    done.insert(s);
    let (Step::Main(i) | Step::Deposed(i) | Step::Destroy(i) | Step::Commit(i)) = sched.steps[s];
    for &d in &sched.dependents[s] {
        if let Some(cause) = failed {
            match sched.steps[d] {
                // A member of a commit (not its target) that did not apply.
                Step::Commit(t) if t != i => skips.not_applied.entry(d).or_default().push(addr.clone()),
                _ => {
                    skips.cause.entry(d).or_insert_with(|| cause.clone());
                }
            }
        }
        remaining[d] -= 1;
        if remaining[d] == 0 {
            ready.insert(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Change, ChangeReason, PLAN_FORMAT};

    fn change(addr: &str, action: Action, depends_on: &[&str]) -> Change {
        Change {
            addr: addr.parse().expect("address"),
            action,
            reason: ChangeReason::None,
            before: None,
            after: None,
            requires_replace: thin_vec::ThinVec::new(),
            triggered_by: thin_vec::ThinVec::new(),
            note: None,
            drift_reported: false,
            depends_on: depends_on.iter().map(|d| d.parse().expect("address")).collect(),
            trigger_deps: thin_vec::ThinVec::new(),
            released: thin_vec::ThinVec::new(),
            target: None,
            config: None,
            observed: None,
            observed_id: None,
            prior: None,
            prior_id: None,
            lifecycle: std::sync::Arc::default(),
            staged: false,
            held_back: None,
            kind: None,
            runs: false,
            content: thin_vec::ThinVec::new(),
        }
    }

    fn plan(changes: Vec<Change>) -> Plan {
        Plan {
            format: PLAN_FORMAT.into(),
            revision: "r".into(),
            environment: None,
            config_root: "/c".into(),
            lineage: String::new(),
            serial: 0,
            changes,
            instances: BTreeMap::new(),
            errors: Vec::new(),
            unplanned: Vec::new(),
            commits: BTreeMap::new(),
            left_out: 0,
            refresh_only: false,
            refreshed: Vec::new(),
        }
    }

    /// Each step as `kind:address` with the steps it waits on, the same way.
    fn shape(p: &Plan) -> Vec<(String, Vec<String>)> {
        let s = schedule(p);
        let name = |step: &Step| match step {
            Step::Main(i) => format!("main:{}", p.changes[*i].addr),
            Step::Deposed(i) => format!("deposed:{}", p.changes[*i].addr),
            Step::Destroy(i) => format!("destroy:{}", p.changes[*i].addr),
            Step::Commit(i) => format!("commit:{}", p.changes[*i].addr),
        };
        s.steps.iter().zip(&s.waits_on).map(|(step, w)| (name(step), w.iter().map(|d| name(&s.steps[*d])).collect())).collect()
    }

    #[test]
    fn creates_wait_for_what_they_depend_on_and_deletes_go_first() {
        let p = plan(vec![
            change("fake.thing.vpc", Action::Create, &[]),
            change("fake.thing.subnet", Action::Create, &["fake.thing.vpc"]),
            change("fake.thing.old_dir", Action::Delete, &[]),
            change("fake.thing.old_file", Action::Delete, &["fake.thing.old_dir"]),
        ]);
        assert_eq!(
            shape(&p),
            [
                ("main:fake.thing.vpc".to_string(), vec![]),
                ("main:fake.thing.subnet".to_string(), vec!["main:fake.thing.vpc".to_string()]),
                ("main:fake.thing.old_dir".to_string(), vec!["main:fake.thing.old_file".to_string()]),
                ("main:fake.thing.old_file".to_string(), vec![]),
            ]
        );
    }

    #[test]
    fn a_deletion_waits_for_what_stops_depending_on_it() {
        // A workload moves from the old config to the new one; the old goes after it.
        // Both live in a namespace that does not change (and so need not outlive anything).
        let mut web = change("fake.thing.web", Action::Update, &["fake.thing.cfg_new", "fake.thing.ns"]);
        web.released = vec!["fake.thing.cfg_old".parse().expect("address")].into();
        let p = plan(vec![
            change("fake.thing.ns", Action::NoOp, &[]),
            change("fake.thing.cfg_new", Action::Create, &["fake.thing.ns"]),
            web,
            change("fake.thing.cfg_old", Action::Delete, &["fake.thing.ns"]),
        ]);
        let s = shape(&p);
        assert_eq!(s[0], ("main:fake.thing.ns".to_string(), vec![]));
        assert_eq!(s[3], ("main:fake.thing.cfg_old".to_string(), vec!["main:fake.thing.web".to_string()]));
        // An order that would close a cycle is not added.
        let mut a = change("fake.thing.a", Action::Update, &["fake.thing.b"]);
        a.released = vec!["fake.thing.gone".parse().expect("address")].into();
        let p = plan(vec![a, change("fake.thing.b", Action::Update, &[]), change("fake.thing.gone", Action::Delete, &["fake.thing.b"])]);
        assert_eq!(shape(&p)[2], ("main:fake.thing.gone".to_string(), vec![]), "b must outlive gone, and a waits for b");
    }

    #[test]
    fn replacements_order_the_old_object_by_lifecycle() {
        // Create before destroy: the old object goes after the new one and its dependents.
        let p = plan(vec![change("fake.thing.vm", Action::Replace { create_first: true }, &[]), change("fake.thing.dns", Action::Update, &["fake.thing.vm"])]);
        let s = shape(&p);
        assert_eq!(s[2], ("deposed:fake.thing.vm".to_string(), vec!["main:fake.thing.vm".to_string(), "main:fake.thing.dns".to_string()]));
        // Destroy before create: the old object goes first, the new one waits for that.
        let p = plan(vec![change("fake.thing.vm", Action::Replace { create_first: false }, &[])]);
        assert_eq!(shape(&p), [("main:fake.thing.vm".to_string(), vec!["destroy:fake.thing.vm".to_string()]), ("destroy:fake.thing.vm".to_string(), vec![])]);
    }

    #[test]
    fn a_commit_follows_every_staged_change_on_its_target_and_precedes_their_dependents() {
        let mut f1 = change("fake.thing.f1", Action::Update, &["fake.thing.host"]);
        let mut f2 = change("fake.thing.f2", Action::Create, &["fake.thing.host"]);
        for f in [&mut f1, &mut f2] {
            f.staged = true;
            f.target = Some("fake.thing.host".parse().expect("address"));
        }
        let p = plan(vec![change("fake.thing.host", Action::NoOp, &[]), f1, f2, change("fake.thing.restart", Action::Update, &["fake.thing.f1"])]);
        let s = shape(&p);
        let commit = s.iter().find(|(n, _)| n == "commit:fake.thing.host").expect("a commit step");
        assert_eq!(commit.1, ["main:fake.thing.host", "main:fake.thing.f1", "main:fake.thing.f2"]);
        let restart = s.iter().find(|(n, _)| n == "main:fake.thing.restart").expect("restart");
        assert!(restart.1.contains(&"commit:fake.thing.host".to_string()), "{restart:?}");
    }
}
