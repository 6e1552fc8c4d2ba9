//! One step of an apply: evaluate, re-plan, check, apply, check, record.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tend_provider::{
    Action, ApplyRequest, Attributes, ErrorKind, Health, HealthRequest, Observed, PlanRequest, PriorRecord, ProviderError, ResourceAddr, RevertRequest, Target,
    Value,
};
use tend_state::{Record, RecordStatus, StateError, StateStore, now_rfc3339};

use crate::hash::inputs_hash;
use crate::plan::{Change, Plan, Resolver, eval_fields};
use crate::registry::Providers;
use crate::report::StepFailure;
use crate::secrets::Secrets;

/// One schedulable step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The change itself.
    Main(usize),
    /// Deleting the old object of a create-before-destroy replacement.
    Deposed(usize),
    /// Deleting the old object of a destroy-before-create replacement, ahead of the old objects
    /// it holds up (a directory after the files in it).
    Destroy(usize),
    /// Making the staged changes on this target take effect together (a host's generation
    /// switch), after all of them and before their dependents.
    Commit(usize),
}

/// What every step shares.
pub struct Ctx {
    pub plan: Arc<Plan>,
    pub providers: Providers,
    pub store: Arc<dyn StateStore>,
    /// Known attributes of every instance applied or unchanged so far.
    pub known: Mutex<HashMap<ResourceAddr, Arc<Attributes>>>,
    /// Addresses planned to change.
    pub changing: HashSet<ResourceAddr>,
    /// Declared secrets, decrypted on first use.
    pub secrets: Arc<crate::secrets::Secrets>,
    /// Key of the keyed input hashes recorded in state.
    pub hmac_key: String,
    /// Where readiness progress goes.
    pub reporter: Arc<dyn crate::report::Reporter>,
    /// One permit per change that may run at once (`--parallelism`). A step holds one while it
    /// asks a provider to do something, not while it waits for its record to be written: the
    /// records of the steps that wait meanwhile are written together, in one transaction.
    pub slots: Arc<tokio::sync::Semaphore>,
}

/// A step's permit to run (see [`Ctx::slots`]).
pub type Slot = tokio::sync::OwnedSemaphorePermit;

/// A failed step (see [`StepFailure`]).
pub type StepError = StepFailure;

fn causes(mut cur: Option<&(dyn std::error::Error + 'static)>) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(c) = cur {
        out.push(c.to_string());
        cur = c.source();
    }
    out
}

fn provider_err(e: &ProviderError) -> StepError {
    StepFailure { kind: e.kind, message: e.message.clone(), causes: causes(std::error::Error::source(e)), hint: e.hint.clone() }
}

fn state_err(e: &StateError) -> StepError {
    StepFailure { kind: ErrorKind::Terminal, message: format!("recording in state failed: {e}"), causes: causes(std::error::Error::source(e)), hint: e.hint() }
}

/// Where the old object of a create-before-destroy replacement is recorded until it is
/// destroyed: its resource's address with `deposed-ID` in the key.
pub fn deposed_addr(addr: &ResourceAddr, id: &str) -> ResourceAddr {
    let key = match &addr.key {
        Some(k) => format!("{k} deposed-{id}"),
        None => format!("deposed-{id}"),
    };
    addr.with_key(Some(key))
}

/// The record of an object about to be replaced, moved to its deposed address; `None` for an
/// object without a remote id (nothing to tell it from its replacement by).
fn deposed_record(r: &Record) -> Option<Record> {
    let id = r.remote_id.as_deref()?;
    Some(Record { addr: deposed_addr(&r.addr, id), updated_at: now_rfc3339().into(), ..r.clone() })
}

/// Every part of a failure with the secrets of this run replaced.
fn redacted(mut e: StepError, secrets: &Secrets) -> StepError {
    e.message = secrets.redact(&e.message);
    for c in &mut e.causes {
        *c = secrets.redact(c);
    }
    e.hint = e.hint.as_deref().map(|h| secrets.redact(h));
    e
}

impl Ctx {
    fn known_snapshot(&self) -> std::sync::MutexGuard<'_, HashMap<ResourceAddr, Arc<Attributes>>> {
        self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn target(&self, c: &Change) -> Option<Target> {
        let known = self.known_snapshot();
        c.target.as_ref().map(|t| Target { addr: t.clone(), attributes: known.get(t).cloned().unwrap_or_default() })
    }

    /// What was recorded, with fingerprints of secret fields given back as the desired value
    /// where they match it (see [`crate::hash::reveal_prior`]).
    fn prior(&self, c: &Change, config: Option<&Attributes>) -> Option<PriorRecord> {
        c.prior
            .as_ref()
            .map(|a| PriorRecord { id: c.prior_id.as_deref().map(str::to_string), attributes: crate::hash::reveal_prior(config, a, &self.hmac_key) })
    }

    fn observed(c: &Change) -> Option<Observed> {
        c.observed.as_ref().map(|a| Observed { id: c.observed_id.as_deref().map(str::to_string), attributes: a.clone() })
    }

    /// Evaluate a change's config with every upstream value known.
    fn config(&self, c: &Change) -> Result<Attributes, StepError> {
        let Some(exprs) = &c.config else { return Ok(Attributes::new()) };
        let known = self.known_snapshot();
        let resolver = Resolver { secrets: &self.secrets, instances: &self.plan.instances, known: &known, final_values: true };
        eval_fields(&resolver, &c.addr, exprs).map_err(|e| {
            let hint = match &e {
                crate::plan::EvalError::Secret(s) => s.hint(),
                _ => None,
            };
            StepFailure { hint, ..StepFailure::terminal(e.to_string()) }
        })
    }

    /// A no-op: make its values known to dependents.
    pub fn settle_noop(&self, i: usize) {
        let c = &self.plan.changes[i];
        let mut values = self.config(c).unwrap_or_default();
        values.extend(c.prior.as_deref().cloned().unwrap_or_default());
        // Planned values that were redacted in a saved plan do not replace re-evaluated ones.
        values.extend(c.after.iter().flat_map(|a| a.iter()).filter(|(_, v)| v.is_known() && **v != Value::Redacted).map(|(k, v)| (k.clone(), v.clone())));
        self.known_snapshot().insert(c.addr.clone(), Arc::new(values));
    }

    /// Run one step; its error text never carries a secret's plaintext. A commit returns what
    /// it did, for the report; `not_applied` are its staged members that failed or were skipped.
    pub async fn run(&self, step: Step, slot: Slot, not_applied: Vec<ResourceAddr>) -> Result<Option<String>, StepError> {
        if let Step::Commit(t) = step {
            return self.commit(t, not_applied).await.map(Some).map_err(|e| redacted(e, &self.secrets));
        }
        self.run_unredacted(step, slot).await.map(|()| None).map_err(|e| redacted(e, &self.secrets))
    }

    /// A step's permit to run; waits for one.
    pub async fn slot(&self) -> Slot {
        self.slots.clone().acquire_owned().await.expect("the slots are never closed")
    }

    /// Commit the staged changes on target `t`: every staged instance on it that exists after
    /// this apply is a member (but those in `not_applied`); the provider's result is merged into
    /// the target's record.
    async fn commit(&self, t: usize, not_applied: Vec<ResourceAddr>) -> Result<String, StepError> {
        let host = &self.plan.changes[t];
        let members: Vec<(ResourceAddr, Attributes)> = {
            let known = self.known_snapshot();
            self.plan
                .changes
                .iter()
                .filter(|c| c.staged && c.target.as_ref() == Some(&host.addr) && c.action != Action::Delete && !not_applied.contains(&c.addr))
                .map(|c| {
                    let attrs = if c.is_change() { known.get(&c.addr).map(|a| (**a).clone()) } else { c.prior.as_deref().cloned() };
                    (c.addr.clone(), attrs.unwrap_or_default())
                })
                .collect()
        };
        let target = Target { addr: host.addr.clone(), attributes: self.known_snapshot().get(&host.addr).cloned().unwrap_or_default() };
        let record = self.store.get(&host.addr).await.map_err(|e| state_err(&e))?;
        let before = record.as_ref().map(|r| Observed { id: r.remote_id.clone(), attributes: (*r.attributes).clone() });
        let provider = &self.providers[&*host.addr.provider];
        let req = tend_provider::CommitRequest { target: target.clone(), prior: record.as_ref().map(|r| (*r.attributes).clone()), members, not_applied };
        let result = provider.commit(req).await;
        let (attrs, message, failure) = match result {
            Ok(c) => (c.attributes, c.message, None),
            // A commit that failed after changing something (a switch made and undone) reports
            // where the target was left.
            Err(e) => (e.partial.as_ref().map(|p| p.attributes.clone()).unwrap_or_default(), String::new(), Some(provider_err(&e))),
        };
        self.merge_into_record(&host.addr, record.clone(), &attrs).await?;
        if let Some(e) = failure {
            return Err(e);
        }
        let applied = Observed { id: None, attributes: attrs };
        if let Err(mut e) = self.await_ready(host, true, &target.attributes, &applied).await {
            let req = RevertRequest { addr: host.addr.clone(), commit: true, config: (*target.attributes).clone(), before, applied, target: None };
            match provider.revert(req).await {
                Ok(Some(r)) => {
                    e.message = format!("{}; {}", e.message, r.message);
                    let now = self.store.get(&host.addr).await.map_err(|e| state_err(&e))?;
                    self.merge_into_record(&host.addr, now, &r.observed.attributes).await?;
                }
                Ok(None) => {}
                Err(re) => e.causes.push(format!("and putting back what was there before failed: {}", re.message)),
            }
            return Err(e);
        }
        Ok(message)
    }

    /// Merge attributes a commit (or its revert) reported into the target's record.
    async fn merge_into_record(&self, addr: &ResourceAddr, record: Option<Record>, attrs: &Attributes) -> Result<(), StepError> {
        if let Some(mut rec) = record.filter(|_| !attrs.is_empty()) {
            let mut merged = (*rec.attributes).clone();
            merged.extend(attrs.clone());
            rec.attributes = Arc::new(merged);
            rec.updated_at = now_rfc3339().into();
            self.store.put(&rec).await.map_err(|e| state_err(&e))?;
            Arc::make_mut(self.known_snapshot().entry(addr.clone()).or_default()).extend(attrs.clone());
        }
        Ok(())
    }

    /// Wait until the provider reports `c` (or, for a commit, the target `c`) ready: probes
    /// with backoff until the resource's `timeout` (else its kind's, else the engine's default),
    /// reporting progress as it changes and at least every 10 s.
    async fn await_ready(&self, c: &Change, commit: bool, config: &Attributes, applied: &Observed) -> Result<(), StepError> {
        let provider = &self.providers[&*c.addr.provider];
        let timeout = c
            .lifecycle
            .timeout_secs
            .map(std::time::Duration::from_secs)
            .or_else(|| provider.kinds().iter().find(|k| k.kind == &*c.addr.kind).and_then(|k| k.timeout))
            .unwrap_or(tend_provider::DEFAULT_TIMEOUT);
        let started = tokio::time::Instant::now();
        let mut shown: Option<(String, tokio::time::Instant)> = None;
        for attempt in 0u32.. {
            let req = HealthRequest {
                addr: c.addr.clone(),
                commit,
                config: config.clone(),
                applied: applied.clone(),
                target: if commit { None } else { self.target(c) },
                elapsed: started.elapsed(),
            };
            let waiting_for = match provider.health(req).await {
                Ok(Health::Ready) => return Ok(()),
                Ok(Health::Failed { message, hint }) => return Err(StepFailure { hint, ..StepFailure::terminal(message) }),
                Ok(Health::Progressing { message }) => message,
                Err(e) if e.kind.retryable() => e.message,
                Err(e) => return Err(provider_err(&e)),
            };
            let elapsed = started.elapsed();
            if elapsed >= timeout {
                return Err(StepFailure {
                    hint: Some(format!(
                        "if it needs longer, give `{}` a longer `timeout` (e.g. timeout = \"{}m\")",
                        c.addr.base(),
                        timeout.as_secs() / 60 * 2 + 1
                    )),
                    ..StepFailure::terminal(format!("not ready within {} s: {waiting_for}", timeout.as_secs()))
                });
            }
            let stale = shown.as_ref().is_none_or(|(m, at)| *m != waiting_for || at.elapsed() >= std::time::Duration::from_secs(10));
            if stale {
                self.reporter.on_progress(&c.addr, &self.secrets.redact(&waiting_for), elapsed);
                shown = Some((waiting_for, tokio::time::Instant::now()));
            }
            tokio::time::sleep(crate::retry::ready_delay(attempt, timeout.saturating_sub(elapsed))).await;
        }
        unreachable!("the loop returns")
    }

    async fn run_unredacted(&self, step: Step, slot: Slot) -> Result<(), StepError> {
        match step {
            Step::Commit(_) => unreachable!("run handles commits"),
            Step::Main(i) => self.run_main(i, slot).await,
            Step::Deposed(i) => {
                let c = &self.plan.changes[i];
                self.apply_one(c, Action::Delete, None, Self::observed(c)).await?;
                let Some(id) = &c.prior_id else { return Ok(()) };
                match self.store.remove(&deposed_addr(&c.addr, id)).await {
                    Ok(_) | Err(StateError::NoSuchRecord { .. }) => Ok(()),
                    Err(e) => Err(state_err(&e)),
                }
            }
            Step::Destroy(i) => {
                let c = &self.plan.changes[i];
                self.apply_one(c, Action::Delete, None, Self::observed(c)).await?;
                match self.store.remove(&c.addr).await {
                    Ok(_) | Err(StateError::NoSuchRecord { .. }) => Ok(()),
                    Err(e) => Err(state_err(&e)),
                }
            }
        }
    }

    async fn apply_one(&self, c: &Change, action: Action, config: Option<Attributes>, observed: Option<Observed>) -> Result<Option<Observed>, StepError> {
        let provider = &self.providers[&*c.addr.provider];
        let prior = self.prior(c, config.as_ref());
        let req = ApplyRequest { addr: c.addr.clone(), action, config: config.clone(), observed, prior, target: self.target(c) };
        let mut attempt = 1;
        let result = loop {
            match provider.apply(req.clone()).await {
                // A transient error (or a target not ready yet) is tried again, a bounded number
                // of times; `apply` is idempotent by contract. Not when something was left
                // half-made: that is recorded first.
                Err(e) if e.kind.retryable() && e.partial.is_none() && attempt < crate::retry::APPLY_ATTEMPTS => {
                    let asked = match e.kind {
                        ErrorKind::Waiting { after } => Some(after),
                        _ => None,
                    };
                    let pause = crate::retry::apply_delay(attempt, asked);
                    tracing::info!(addr = %c.addr, attempt, pause_ms = pause.as_millis(), kind = %e.kind, "retrying: {}", self.secrets.redact(&e.message));
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                r => break r,
            }
        };
        match result {
            Ok(o) => Ok(o),
            Err(e) => {
                if let Some(partial) = &e.partial {
                    let rec = self.record(c, partial, "", RecordStatus::Tainted, config.as_ref());
                    if let Err(se) = self.store.put(&rec).await {
                        let mut f = provider_err(&e);
                        f.causes.push(format!("and recording what it left as tainted failed: {se}"));
                        return Err(f);
                    }
                }
                Err(provider_err(&e))
            }
        }
    }

    /// The record of an applied change: fields that derive from a secret are kept as
    /// fingerprints, never as what the provider reported.
    fn record(&self, c: &Change, o: &Observed, hash: &str, status: RecordStatus, config: Option<&Attributes>) -> Record {
        let mut attributes = o.attributes.clone();
        crate::hash::protect_record(config.unwrap_or(&Attributes::new()), &mut attributes, &self.hmac_key);
        // What a provider reports beyond its config (a command's output) may quote a secret.
        for v in attributes.values_mut() {
            crate::secrets::scrub::scrub_value(v);
        }
        Record {
            addr: c.addr.clone(),
            remote_id: o.id.clone(),
            status,
            inputs_hash: hash.into(),
            attributes: Arc::new(attributes),
            target: c.target.clone(),
            dependencies: c.depends_on.to_vec(),
            prevent_destroy: c.lifecycle.prevent_destroy,
            updated_at: now_rfc3339().into(),
        }
    }

    async fn run_main(&self, i: usize, slot: Slot) -> Result<(), StepError> {
        let c = &self.plan.changes[i];
        if c.action == Action::Delete {
            self.apply_one(c, Action::Delete, None, Self::observed(c)).await?;
            return match self.store.remove(&c.addr).await {
                Ok(_) | Err(StateError::NoSuchRecord { .. }) => Ok(()),
                Err(e) => Err(state_err(&e)),
            };
        }
        let config = self.config(c)?;
        if let Some((k, _)) = config.iter().find(|(_, v)| !v.is_known()) {
            return Err(StepError::terminal(format!("`{k}` is still unknown at apply time; this is a bug in the provider of an upstream resource")));
        }
        self.check_still_planned(c, &config).await?;
        let observed = Self::observed(c);
        let result = match c.action {
            Action::Create | Action::Update => self.apply_one(c, c.action, Some(config.clone()), observed).await?,
            // The old object of either kind of replacement is deleted by its own step.
            Action::Replace { .. } => self.apply_one(c, Action::Create, Some(config.clone()), None).await?,
            Action::NoOp | Action::Delete => unreachable!("handled above"),
        };
        let Some(obs) = result else {
            return Err(StepError::terminal(format!("provider `{}` returned nothing after {:?}; this is a provider bug", c.addr.provider, c.action)));
        };
        let rec = self.record(c, &obs, &inputs_hash(&config, &self.hmac_key), RecordStatus::Ready, Some(&config));
        let create_first = c.action == (Action::Replace { create_first: true });
        // Create before destroy: the replacement becomes current only once it is ready. Until
        // then it is recorded aside, under its own deposed address, so a crash or a failed
        // health check leaves the old object current and the new one for the next plan to
        // destroy.
        if let Some(candidate) = deposed_record(&rec).filter(|_| create_first) {
            self.store.put(&candidate).await.map_err(|e| state_err(&e))?;
            Self::check_promised(c, &obs)?;
            if let Err(mut e) = self.await_ready(c, false, &config, &obs).await {
                e.message = format!(
                    "{}; the replacement stays recorded as `{}` for the next plan to destroy, and the object it was to replace keeps serving",
                    e.message, candidate.addr
                );
                return Err(e);
            }
            // The old object stays recorded, under its own address, in the same write that
            // makes its replacement current, until its delete succeeds.
            let puts: Vec<Record> = std::iter::once(rec).chain(self.old_as_deposed(c).await?).collect();
            self.store.put_all(&puts, std::slice::from_ref(&candidate.addr)).await.map_err(|e| state_err(&e))?;
        } else {
            let old = if create_first { self.old_as_deposed(c).await? } else { None };
            let _slot = if let Some(old) = old {
                self.store.put_all(&[rec.clone(), old], &[]).await.map_err(|e| state_err(&e))?;
                slot
            } else {
                // Recorded without holding a slot, so that other steps run meanwhile and their
                // records join this one's transaction; taken again for the health check, which
                // asks the provider.
                drop(slot);
                self.store.put(&rec).await.map_err(|e| state_err(&e))?;
                self.slot().await
            };
            Self::check_promised(c, &obs)?;
            if let Err(e) = self.await_ready(c, false, &config, &obs).await {
                return Err(self.not_ready(c, &config, &obs, rec, e).await);
            }
        }
        let mut values = config;
        values.extend(obs.attributes.clone());
        self.known_snapshot().insert(c.addr.clone(), Arc::new(values));
        Ok(())
    }

    /// The record of the object a replacement is about to retire, moved to its deposed address.
    async fn old_as_deposed(&self, c: &Change) -> Result<Option<Record>, StepError> {
        Ok(self.store.get(&c.addr).await.map_err(|e| state_err(&e))?.and_then(|r| deposed_record(&r)))
    }

    /// An applied instance failed its health check: its provider puts back what was there
    /// where it can (and that is recorded, with its inputs forgotten so the next plan tries
    /// again); a new object it cannot take back is recorded as tainted, for the next plan to
    /// replace.
    async fn not_ready(&self, c: &Change, config: &Attributes, obs: &Observed, mut rec: Record, mut e: StepError) -> StepError {
        let provider = &self.providers[&*c.addr.provider];
        let req = RevertRequest {
            addr: c.addr.clone(),
            commit: false,
            config: config.clone(),
            before: Self::observed(c),
            applied: obs.clone(),
            target: self.target(c),
        };
        let reverted = if c.action == Action::Update { provider.revert(req).await } else { Ok(None) };
        match reverted {
            Ok(Some(r)) => {
                e.message = format!("{}; {}", e.message, r.message);
                rec = self.record(c, &r.observed, "", RecordStatus::Ready, Some(config));
            }
            Ok(None) if c.action == Action::Update => return e,
            Ok(None) => {
                e.message = format!("{}; it is recorded as tainted: the next plan replaces it", e.message);
                rec.status = RecordStatus::Tainted;
            }
            Err(re) => {
                e.causes.push(format!("and putting back what was there before failed: {}", re.message));
                return e;
            }
        }
        if let Err(se) = self.store.put(&rec).await {
            e.causes.push(format!("and recording it failed: {se}"));
        }
        e
    }

    /// Refuse an apply result that differs from a value the plan promised.
    fn check_promised(c: &Change, obs: &Observed) -> Result<(), StepError> {
        if let Some(after) = &c.after {
            for (k, planned) in after.iter().filter(|(_, v)| v.is_known() && **v != Value::Redacted) {
                let got = obs.attributes.get(k);
                if got != Some(planned) {
                    return Err(StepError::terminal(format!(
                        "provider `{}` applied `{k}` = {} but planned {planned}; this is a provider bug (the result is recorded in state)",
                        c.addr.provider,
                        got.map_or_else(|| "nothing".to_string(), ToString::to_string),
                    )));
                }
            }
        }
        Ok(())
    }

    /// Re-plan with final values and refuse if a value known at plan time differs now
    /// (the config's files changed since a saved plan was made).
    async fn check_still_planned(&self, c: &Change, config: &Attributes) -> Result<(), StepError> {
        let provider = &self.providers[&*c.addr.provider];
        let upstream = c.trigger_deps.iter().filter(|a| self.changing.contains(*a)).cloned().collect();
        let replan = provider
            .plan(PlanRequest {
                addr: c.addr.clone(),
                inputs_changed: matches!(c.reason, crate::plan::ChangeReason::ConfigChanged | crate::plan::ChangeReason::New),
                config: Some(config.clone()),
                observed: Self::observed(c),
                prior: self.prior(c, Some(config)),
                target: self.target(c),
                upstream_changes: upstream,
                show_content: false,
            })
            .await
            .map_err(|e| provider_err(&e))?;
        if let Some(after) = &c.after {
            for (k, planned) in after.iter().filter(|(_, v)| v.is_known() && **v != Value::Redacted) {
                match replan.after.get(k) {
                    Some(now) if now.is_known() && now != planned => {
                        return Err(StepError::terminal(format!(
                            "`{k}` was planned as {planned} but is now {now}: the config or the files it uses changed since the plan was made\n  hint: run `tend plan` again"
                        )));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}
