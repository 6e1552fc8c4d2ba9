//! One reconcile: config → plan → apply (or report), and what it did recorded in the status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tend_provider::{Action, ResourceAddr};

use super::schedule::Why;
use super::{AgentOptions, Mode, Reconciled, Shared};
use crate::apply::{ApplyOptions, ProtocolError, apply_plan};
use crate::config::LoadOptions;
use crate::plan::ChangeReason;
use crate::registry::Registry;
use crate::report::{Outcome, Reporter};
use crate::workspace::Workspace;

/// Fetch (or reuse the last commit), load, plan, apply; update status.
pub(crate) async fn reconcile(opts: &AgentOptions, shared: &Arc<Shared>, fetch: bool, why: Why) -> Reconciled {
    let started = Instant::now();
    let span = tracing::info_span!("reconcile", why = ?why, commit = tracing::field::Empty);
    // What the last reconcile watched stops: this one's own changes are not drift.
    std::mem::take(&mut *shared.watches.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    let result = tracing::Instrument::instrument(reconcile_inner(opts, shared, fetch), span).await;
    shared.status.lock().await.record_reconcile(started.elapsed(), result.as_ref().map(|_| ()).map_err(|(label, msg)| (*label, msg.as_str())));
    match result {
        Ok(ws) => {
            tracing::info!(duration_ms = started.elapsed().as_millis(), "reconciled");
            if !opts.once {
                watch(&ws, shared).await;
            }
            Reconciled::Success
        }
        Err(("refused", msg)) => Reconciled::Refused(msg),
        Err((_, msg)) => {
            tracing::warn!(duration_ms = started.elapsed().as_millis(), "reconcile failed: {msg}");
            Reconciled::Failed(msg)
        }
    }
}

/// Watch what state now records, waking the loop for a drift run when something changes
/// outside tend.
async fn watch(ws: &Workspace, shared: &Arc<Shared>) {
    let Ok(snapshot) = ws.read_state().await else { return };
    let weak = Arc::downgrade(shared);
    let on_drift: tend_provider::OnDrift = Arc::new(move |addr: &ResourceAddr| {
        tracing::warn!(%addr, "changed outside tend (seen by a watch)");
        if let Some(s) = weak.upgrade() {
            s.drift.notify_one();
        }
    });
    let guards = ws.watch(&snapshot, &on_drift).await;
    *shared.watches.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = guards;
}

/// How a reconcile failed: its result label and message.
pub(crate) type Failure = (&'static str, String);

async fn reconcile_inner(opts: &AgentOptions, shared: &Arc<Shared>, fetch: bool) -> Result<Workspace, Failure> {
    let (root, revision) = super::fetch::materialise(opts, shared, fetch).await?;
    let load = LoadOptions { root, ..opts.load.clone() };
    let state = opts.state.clone();
    let loaded = tokio::task::spawn_blocking(move || Workspace::load(Registry::builtin(), &load, state)).await.expect("load does not panic");
    let mut ws = loaded.map_err(|e| {
        (
            "failed",
            format!(
                "{e}{}",
                match &e {
                    crate::workspace::WorkspaceError::Config(d) => format!(":\n{}", d.render(100, false)),
                    _ => String::new(),
                }
            ),
        )
    })?;
    if let Some(r) = &revision {
        ws.config.revision.clone_from(r);
    }
    *shared.file_settings.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = ws.config.project.agent.clone();
    let mode = shared.effective(opts).mode;
    shared.status.lock().await.record_mode(if mode == Mode::Apply { "apply" } else { "plan-only" });
    let commit = revision.as_deref().map_or_else(|| ws.config.revision.clone(), |r| r.trim_start_matches("git:").to_string());
    if revision.is_none() {
        shared.status.lock().await.record_commit(&commit);
    }
    let snapshot = ws.read_state().await.map_err(|e| ("failed", e.to_string()))?;
    let plan = ws.plan(&snapshot).await.map_err(|e| ("failed", e.to_string()))?;
    let suspended = shared.status.lock().await.suspended;
    shared.status.lock().await.record_plan(&plan, suspended);
    for c in plan.changes.iter().filter(|c| c.reason == ChangeReason::Drift || c.drift_reported) {
        let fields: Vec<String> = match (&c.before, &c.after) {
            (Some(b), Some(a)) => a.iter().filter(|(k, v)| b.get(k) != Some(*v)).map(|(k, _)| k.to_string()).collect(),
            _ => vec!["(absent)".into()],
        };
        tracing::warn!(addr = %c.addr, fields = %fields.join(","), corrected = !c.drift_reported && mode == Mode::Apply && !suspended, "drift detected");
    }
    if !plan.errors.is_empty() {
        let msgs: Vec<String> = plan.errors.iter().map(|e| e.addr.as_ref().map_or_else(|| e.message.clone(), |a| format!("{a}: {}", e.message))).collect();
        return Err(("failed", format!("the plan has errors; nothing was applied: {}", msgs.join("; "))));
    }
    if mode == Mode::PlanOnly || suspended || !plan.has_changes() {
        if !plan.unplanned.is_empty() {
            return Err(("failed", format!("{} resources could not be planned (unreachable hosts)", plan.unplanned.len())));
        }
        if mode == Mode::Apply && !suspended {
            shared.status.lock().await.record_applied(commit);
        }
        return Ok(ws);
    }
    let drift_changes = plan.changes.iter().filter(|c| c.reason == ChangeReason::Drift && c.is_change()).count() as u64;
    let parallelism = opts.parallelism.or(ws.config.project.parallelism).unwrap_or(10);
    let reporter = Arc::new(AgentReporter { results: std::sync::Mutex::new(Vec::new()) });
    let unplanned = plan.unplanned.len();
    let apply_opts = ApplyOptions { parallelism, who: opts.who.clone(), cancel: shared.cancel.clone(), secrets: ws.secrets.clone() };
    let outcome = apply_plan(&ws, plan, "agent", reporter.clone(), apply_opts).await.map_err(|e| match e {
        // Someone ran `tend apply` meanwhile.
        ProtocolError::Stale { .. } => ("failed", format!("state changed while planning ({e}); the next reconcile plans again")),
        ProtocolError::State(e) => ("failed", format!("{e}{}", e.hint().map(|h| format!(" ({h})")).unwrap_or_default())),
    })?;
    let results = std::mem::take(&mut *reporter.results.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    shared.status.lock().await.record_outcomes(results, drift_changes, outcome.failed, outcome.success().then_some(commit));
    if outcome.success() && unplanned == 0 {
        Ok(ws)
    } else {
        Err(("failed", format!("apply {}: {}", if outcome.interrupted { "interrupted" } else { "failed" }, outcome.summary_line())))
    }
}

/// Collects per-resource outcomes and logs them.
struct AgentReporter {
    results: std::sync::Mutex<Vec<(ResourceAddr, Action, Outcome)>>,
}

impl Reporter for AgentReporter {
    fn post_apply(&self, addr: &ResourceAddr, action: Action, outcome: &Outcome, _elapsed: Duration) {
        match outcome {
            Outcome::Applied => {} // the walker logs it
            Outcome::Failed(f) => tracing::warn!(%addr, ?action, kind = %f.kind, "failed: {f}"),
            Outcome::Skipped(c) => tracing::warn!(%addr, cause = %c, "skipped"),
        }
        self.results.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((addr.clone(), action, outcome.clone()));
    }

    fn on_commit(&self, target: &ResourceAddr, what: &str, elapsed: Duration) {
        tracing::info!(%target, duration_ms = elapsed.as_millis(), "{what}");
    }

    fn on_progress(&self, addr: &ResourceAddr, waiting_for: &str, elapsed: Duration) {
        tracing::info!(%addr, elapsed_s = elapsed.as_secs(), "waiting to be ready: {waiting_for}");
    }
}
