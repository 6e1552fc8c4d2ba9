//! `tend agent`: keep every target converged to what Git says.
//!
//! A loop: wait for a trigger (a webhook push, the fetch interval, the drift interval, a resume)
//! → fetch → check out the commit read-only → plan → apply (or only report, `plan-only`) →
//! record status and metrics. A failed reconcile backs off exponentially (reset by the next
//! success); a failed fetch keeps the last good commit. SIGTERM/SIGINT stop scheduling new
//! changes, let the running ones finish, release the state lock and exit.

pub mod http;
pub mod listen;
mod status;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tend_provider::{Action, ErrorKind, ResourceAddr};
use tend_state::now_rfc3339;
use tokio::sync::{Mutex, Notify};

pub use status::{ErrorReport, ResourceStatus, Status};

use crate::apply::{ApplyOptions, ProtocolError, apply_plan};
use crate::config::LoadOptions;
use crate::plan::ChangeReason;
use crate::registry::Registry;
use crate::report::{Outcome, Reporter};
use crate::retry::jittered;
use crate::workspace::Workspace;

/// Apply, or only report what would change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Converge.
    Apply,
    /// Plan and report; apply nothing.
    PlanOnly,
}

/// Where the config comes from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A Git repository; `subdir` is the config directory inside it.
    #[cfg(feature = "git")]
    Git {
        /// The source.
        source: crate::source::GitSource,
        /// Directory inside the repository.
        subdir: PathBuf,
    },
    /// A directory read afresh on every reconcile.
    Directory(PathBuf),
}

/// Agent settings.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The config's origin.
    pub origin: Origin,
    /// How to load it (root is set per reconcile).
    pub load: LoadOptions,
    /// `--state`.
    pub state: Option<PathBuf>,
    /// Fetch and reconcile at least this often (else tend.toml `[agent] interval`, else 5m).
    pub interval: Option<Duration>,
    /// Up to this fraction of the interval is added at random (spreads a fleet of agents);
    /// else tend.toml, else 0.1.
    pub jitter: Option<f64>,
    /// Re-observe the last commit's targets this often between fetches (drift); else tend.toml.
    pub drift_interval: Option<Duration>,
    /// Backoff after failures grows from 10 s up to this.
    pub max_backoff: Duration,
    /// Apply or plan-only; else tend.toml, else apply.
    pub mode: Option<Mode>,
    /// Run one reconcile and return.
    pub once: bool,
    /// Changes applied at once.
    pub parallelism: Option<usize>,
    /// Shared secret for webhooks (and for suspend/resume).
    pub webhook_secret: Option<String>,
    /// `user@host` for history.
    pub who: String,
    /// Accept only commits signed by these keys.
    #[cfg(feature = "git")]
    pub signers: Option<crate::source::AllowedSigners>,
}

/// What the loop and the HTTP listener share.
pub struct Shared {
    /// The status served on `/status` and `/metrics`.
    pub status: Mutex<Status>,
    /// Wakes the loop (webhook, resume). One stored permit coalesces bursts.
    pub trigger: Notify,
    /// Webhook secret.
    pub webhook_secret: Option<String>,
    /// Set on SIGTERM/SIGINT: no new changes start.
    pub cancel: Arc<AtomicBool>,
    /// Wakes the loop to stop.
    pub stop: Notify,
    /// `[agent]` of the tend.toml last loaded.
    file_settings: std::sync::Mutex<crate::config::AgentSettings>,
}

/// Settings in force: flags and environment, then tend.toml `[agent]`, then defaults.
#[derive(Debug, Clone, Copy)]
struct Effective {
    interval: Duration,
    jitter: f64,
    drift_interval: Option<Duration>,
    mode: Mode,
}

impl Shared {
    fn effective(&self, opts: &AgentOptions) -> Effective {
        let file = self.file_settings.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        Effective {
            interval: opts.interval.or(file.interval).unwrap_or(Duration::from_mins(5)),
            jitter: opts.jitter.or(file.jitter).unwrap_or(0.1),
            drift_interval: opts.drift_interval.or(file.drift_interval),
            mode: opts.mode.or(file.plan_only.map(|p| if p { Mode::PlanOnly } else { Mode::Apply })).unwrap_or(Mode::Apply),
        }
    }
}

impl Shared {
    /// Shared state for these options.
    pub fn new(opts: &AgentOptions) -> Arc<Self> {
        let (source, reference) = match &opts.origin {
            #[cfg(feature = "git")]
            Origin::Git { source, .. } => (source.display_url(), source.reference().to_string()),
            Origin::Directory(d) => (d.display().to_string(), "local directory".into()),
        };
        let status = Status { source, reference, mode: if opts.mode == Some(Mode::PlanOnly) { "plan-only" } else { "apply" }.into(), ..Status::default() };
        Arc::new(Self {
            status: Mutex::new(status),
            trigger: Notify::new(),
            webhook_secret: opts.webhook_secret.clone(),
            cancel: Arc::new(AtomicBool::new(false)),
            stop: Notify::new(),
            file_settings: std::sync::Mutex::new(crate::config::AgentSettings::default()),
        })
    }

    /// Ask the agent to stop at a safe point.
    pub fn shutdown(&self) {
        self.cancel.store(true, Ordering::SeqCst);
        self.stop.notify_one();
    }
}

/// How a reconcile ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// Everything converged (or, plan-only, was planned).
    Success,
    /// Something failed; the text says what.
    Failed(String),
    /// The newest commit was refused (signature); the last good commit stays.
    Refused(String),
}

/// Why a reconcile runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Start,
    Trigger,
    Interval,
    Drift,
}

/// Run the agent until stopped (or once). Returns the last reconcile's result.
pub async fn run(opts: AgentOptions, shared: Arc<Shared>) -> Reconciled {
    let mut why = Why::Start;
    let mut failures: u32 = 0;
    let mut last_fetch = Instant::now();
    loop {
        let fetch = why != Why::Drift;
        let last = reconcile(&opts, &shared, fetch, why).await;
        if fetch {
            last_fetch = Instant::now();
        }
        if opts.once || shared.cancel.load(Ordering::SeqCst) {
            return last;
        }
        let eff = shared.effective(&opts);
        // A refused commit is not retried faster: the agent carries on with the last good one.
        let healthy = matches!(last, Reconciled::Success | Reconciled::Refused(_));
        let wait = if healthy {
            failures = 0;
            let next_fetch = jittered(eff.interval, eff.jitter).saturating_sub(last_fetch.elapsed());
            eff.drift_interval.map_or(next_fetch, |d| d.min(next_fetch))
        } else {
            failures += 1;
            let backoff = Duration::from_secs(5).saturating_mul(1 << failures.min(10)).min(opts.max_backoff);
            tracing::info!(failures, backoff_s = backoff.as_secs(), "reconcile failed; retrying after backoff");
            backoff
        };
        tokio::select! {
            () = shared.stop.notified() => return last,
            () = shared.trigger.notified() => why = Why::Trigger,
            () = tokio::time::sleep(wait) => {
                why = if healthy && last_fetch.elapsed() + Duration::from_millis(50) < eff.interval { Why::Drift } else { Why::Interval };
            }
        }
    }
}

/// Fetch (or reuse the last commit), load, plan, apply; update status.
async fn reconcile(opts: &AgentOptions, shared: &Arc<Shared>, fetch: bool, why: Why) -> Reconciled {
    let started = Instant::now();
    let span = tracing::info_span!("reconcile", why = ?why, commit = tracing::field::Empty);
    let result = tracing::Instrument::instrument(reconcile_inner(opts, shared, fetch), span).await;
    let mut st = shared.status.lock().await;
    st.last_attempt_at = Some(now_rfc3339());
    let label = match &result {
        Ok(()) => {
            st.last_success_at = Some(now_rfc3339());
            st.metrics.last_success = Some(SystemTime::now());
            st.last_error = None;
            st.consecutive_failures = 0;
            "success"
        }
        Err((label, msg)) => {
            let kind = match *label {
                "fetch-failed" => ErrorKind::Transient,
                "refused" => ErrorKind::Terminal,
                _ => st.resources.values().filter(|r| r.status == "failed").find_map(|r| r.last_error.as_ref()).map_or(ErrorKind::Terminal, |e| e.kind),
            };
            st.last_error = Some(ErrorReport::new(kind, msg.clone()));
            st.consecutive_failures += 1;
            label
        }
    };
    st.last_result = Some(label.to_string());
    st.observe_reconcile(started.elapsed(), label);
    drop(st);
    match result {
        Ok(()) => {
            tracing::info!(duration_ms = started.elapsed().as_millis(), "reconciled");
            Reconciled::Success
        }
        Err(("refused", msg)) => Reconciled::Refused(msg),
        Err((_, msg)) => {
            tracing::warn!(duration_ms = started.elapsed().as_millis(), "reconcile failed: {msg}");
            Reconciled::Failed(msg)
        }
    }
}

type Failure = (&'static str, String);

/// The config directory and revision of this reconcile.
async fn materialise(opts: &AgentOptions, shared: &Arc<Shared>, fetch: bool) -> Result<(PathBuf, Option<String>), Failure> {
    match &opts.origin {
        Origin::Directory(d) => Ok((d.clone(), None)),
        #[cfg(feature = "git")]
        Origin::Git { source, subdir } => {
            let source = source.clone();
            let cancel = shared.cancel.clone();
            let signers = opts.signers.clone();
            // Between fetches, drift is corrected against the last commit applied, never
            // against something fetched but not (yet) accepted.
            let last_good = if fetch { None } else { shared.status.lock().await.last_applied_commit.clone() };
            let fetched = tokio::task::spawn_blocking(move || {
                if let Some(commit) = last_good {
                    let dir = source.checkout(&commit, 5)?;
                    return Ok((crate::source::Resolved { reference: commit.clone(), commit }, dir));
                }
                crate::source::read(&source, fetch, signers.as_ref(), &cancel)
            })
            .await
            .expect("fetch does not panic");
            match fetched {
                Ok((resolved, dir)) => {
                    tracing::Span::current().record("commit", resolved.commit.as_str());
                    let mut st = shared.status.lock().await;
                    if st.source_commit.as_deref() != Some(&resolved.commit) {
                        tracing::info!(commit = %resolved.commit, reference = %resolved.reference, "new commit");
                    }
                    st.source_commit = Some(resolved.commit.clone());
                    st.last_attempted_commit = Some(resolved.commit.clone());
                    Ok((dir.join(subdir), Some(crate::source::revision(&resolved))))
                }
                Err(crate::source::ReadError::Refused(e)) => {
                    let kept = shared.status.lock().await.last_applied_commit.clone();
                    tracing::error!("refused: {e}");
                    Err(("refused", format!("refused: {e}{}", kept.map(|c| format!(" (staying on the last good commit {c})")).unwrap_or_default())))
                }
                Err(crate::source::ReadError::Source(e)) => {
                    let mut msg = e.to_string();
                    let mut cause = std::error::Error::source(&e);
                    while let Some(c) = cause {
                        msg.push_str(&format!(": {c}"));
                        cause = c.source();
                    }
                    let kept = shared.status.lock().await.last_applied_commit.clone();
                    let msg = match kept {
                        Some(c) => format!("{msg} (staying on the last good commit {c})"),
                        None => msg,
                    };
                    Err(("fetch-failed", msg))
                }
            }
        }
    }
}

async fn reconcile_inner(opts: &AgentOptions, shared: &Arc<Shared>, fetch: bool) -> Result<(), Failure> {
    let (root, revision) = materialise(opts, shared, fetch).await?;
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
    shared.status.lock().await.mode = if mode == Mode::Apply { "apply" } else { "plan-only" }.into();
    let commit = revision.as_deref().map_or_else(|| ws.config.revision.clone(), |r| r.trim_start_matches("git:").to_string());
    if revision.is_none() {
        let mut st = shared.status.lock().await;
        st.source_commit = Some(commit.clone());
        st.last_attempted_commit = Some(commit.clone());
    }
    let snapshot = ws.read_state().await.map_err(|e| ("failed", e.to_string()))?;
    let plan = ws.plan(&snapshot).await.map_err(|e| ("failed", e.to_string()))?;
    let suspended = shared.status.lock().await.suspended;
    // Record what the plan says about every resource.
    {
        let mut st = shared.status.lock().await;
        st.resources.clear();
        for c in &plan.changes {
            let status = if c.held_back.is_some() || suspended && c.is_change() {
                "suspended"
            } else if c.drift_reported {
                "drifted"
            } else if c.is_change() {
                "pending"
            } else {
                "ok"
            };
            st.resources.insert(c.addr.to_string(), ResourceStatus { status: status.into(), last_error: None });
        }
        for e in plan.errors.iter().chain(&plan.unplanned) {
            let key = e.addr.as_ref().map_or_else(|| "(plan)".to_string(), ToString::to_string);
            if let Some(a) = &e.addr {
                *st.metrics.errors.entry((a.provider.to_string(), e.kind.name())).or_default() += 1;
            }
            st.resources.insert(key, ResourceStatus { status: "failed".into(), last_error: Some(ErrorReport::new(e.kind, e.message.clone())) });
        }
        let drifted = plan.changes.iter().filter(|c| c.reason == ChangeReason::Drift || c.drift_reported).count();
        st.metrics.drift_detected += drifted as u64;
    }
    for c in plan.changes.iter().filter(|c| c.reason == ChangeReason::Drift || c.drift_reported) {
        let fields: Vec<String> = match (&c.before, &c.after) {
            (Some(b), Some(a)) => a.iter().filter(|(k, v)| b.get(*k) != Some(*v)).map(|(k, _)| k.clone()).collect(),
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
            shared.status.lock().await.last_applied_commit = Some(commit);
        }
        return Ok(());
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
    {
        let mut st = shared.status.lock().await;
        for (addr, action, outcome) in reporter.results.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain(..) {
            // What was destroyed (pruned) is no longer a managed resource.
            if action == Action::Delete && matches!(outcome, Outcome::Applied) {
                st.resources.remove(&addr.to_string());
                continue;
            }
            let entry = match outcome {
                Outcome::Applied => ResourceStatus { status: "ok".into(), last_error: None },
                Outcome::Failed(m, kind) => {
                    *st.metrics.errors.entry((addr.provider.to_string(), kind.name())).or_default() += 1;
                    ResourceStatus { status: "failed".into(), last_error: Some(ErrorReport::new(kind, m)) }
                }
                Outcome::Skipped(cause) => {
                    // The class of what it waited for.
                    let kind = st.resources.get(&cause.to_string()).and_then(|r| r.last_error.as_ref()).map_or(ErrorKind::Terminal, |e| e.kind);
                    ResourceStatus { status: "skipped".into(), last_error: Some(ErrorReport::new(kind, format!("{cause} failed"))) }
                }
            };
            st.resources.insert(addr.to_string(), entry);
        }
        if outcome.failed == 0 {
            st.metrics.drift_corrected += drift_changes;
        }
        if outcome.success() {
            st.last_applied_commit = Some(commit);
        }
    }
    if outcome.success() && unplanned == 0 {
        Ok(())
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
            Outcome::Failed(m, kind) => tracing::warn!(%addr, ?action, %kind, "failed: {m}"),
            Outcome::Skipped(c) => tracing::warn!(%addr, cause = %c, "skipped"),
        }
        self.results.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((addr.clone(), action, outcome.clone()));
    }

    fn on_commit(&self, target: &ResourceAddr, what: &str, elapsed: Duration) {
        tracing::info!(%target, duration_ms = elapsed.as_millis(), "{what}");
    }
}
