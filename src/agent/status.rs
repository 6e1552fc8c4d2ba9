//! What the agent knows about itself: served as `/status` (JSON) and `/metrics` (Prometheus).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tend_provider::{Action, ErrorKind, ResourceAddr};
use tend_state::now_rfc3339;

use crate::plan::{ChangeReason, Plan};
use crate::report::Outcome;

/// Reconcile duration histogram buckets, seconds.
const BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// An error as `/status` shows it: its class (`transient`, `waiting`, `conflict`,
/// `unauthorized`, `not_found`, `terminal`) and message.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ErrorReport {
    /// The error class.
    pub kind: tend_provider::ErrorKind,
    /// What went wrong (secrets redacted).
    pub message: String,
}

impl ErrorReport {
    /// An error of class `kind`.
    pub fn new(kind: tend_provider::ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }
}

/// One resource as the agent last saw it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ResourceStatus {
    /// `ok`, `pending` (plan-only: would change), `drifted` (drift reported, not corrected),
    /// `failed`, `skipped`, `suspended`.
    pub status: String,
    /// The last error, if it failed.
    pub last_error: Option<ErrorReport>,
    /// What the last plan would do to it, when it is not `ok`: `create`, `update`, `replace`
    /// or `delete`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// The agent's status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// The source followed (URL without credentials, or the config directory).
    pub source: String,
    /// The reference followed.
    pub reference: String,
    /// `apply` or `plan-only`.
    pub mode: String,
    /// The newest commit fetched (or local revision read).
    pub source_commit: Option<String>,
    /// The commit last applied successfully.
    pub last_applied_commit: Option<String>,
    /// The commit of the last reconcile attempted.
    pub last_attempted_commit: Option<String>,
    /// When the last reconcile succeeded (RFC 3339).
    pub last_success_at: Option<String>,
    /// When the last reconcile ended (RFC 3339).
    pub last_attempt_at: Option<String>,
    /// Result of the last reconcile: `success`, `failed`, `fetch-failed`, `refused`.
    pub last_result: Option<String>,
    /// Why the last reconcile failed; its kind is that of the first resource that failed, or
    /// `transient` when the fetch failed.
    pub last_error: Option<ErrorReport>,
    /// Reconciles failed in a row.
    pub consecutive_failures: u32,
    /// Suspended by `tend suspend`: nothing is applied until `tend resume`.
    pub suspended: bool,
    /// Per resource address.
    pub resources: BTreeMap<String, ResourceStatus>,
    /// The last plan, as `tend plan` shows it (served by `/plan` to an operator).
    #[serde(skip)]
    pub plan_text: Option<String>,
    /// Whether the last plan had changes.
    #[serde(skip)]
    pub plan_has_changes: bool,
    #[serde(skip)]
    pub(crate) metrics: Metrics,
}

/// Counters and the duration histogram.
#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics {
    pub reconciles: BTreeMap<String, u64>,
    pub buckets: [u64; BUCKETS.len()],
    pub duration_count: u64,
    pub duration_sum: f64,
    pub drift_detected: u64,
    pub drift_corrected: u64,
    pub errors: BTreeMap<(String, &'static str), u64>,
    pub last_success: Option<SystemTime>,
    pub webhooks: BTreeMap<(String, String), u64>,
}

impl Status {
    /// A reconcile ended: its result (`Ok`, or the failure's label and message) and duration.
    pub(crate) fn record_reconcile(&mut self, elapsed: Duration, result: Result<(), (&'static str, &str)>) {
        self.last_attempt_at = Some(now_rfc3339());
        let label = match result {
            Ok(()) => {
                self.last_success_at = Some(now_rfc3339());
                self.metrics.last_success = Some(SystemTime::now());
                self.last_error = None;
                self.consecutive_failures = 0;
                "success"
            }
            Err((label, msg)) => {
                let kind = match label {
                    "fetch-failed" => ErrorKind::Transient,
                    "refused" => ErrorKind::Terminal,
                    // The class of the first resource that failed.
                    _ => self.resources.values().filter(|r| r.status == "failed").find_map(|r| r.last_error.as_ref()).map_or(ErrorKind::Terminal, |e| e.kind),
                };
                self.last_error = Some(ErrorReport::new(kind, msg));
                self.consecutive_failures += 1;
                label
            }
        };
        self.last_result = Some(label.to_string());
        self.observe_reconcile(elapsed, label);
    }

    /// The mode in force for this reconcile.
    pub(crate) fn record_mode(&mut self, mode: &str) {
        self.mode = mode.to_string();
    }

    /// The commit (or local revision) this reconcile reads.
    pub(crate) fn record_commit(&mut self, commit: &str) {
        self.source_commit = Some(commit.to_string());
        self.last_attempted_commit = Some(commit.to_string());
    }

    /// This commit is converged.
    pub(crate) fn record_applied(&mut self, commit: String) {
        self.last_applied_commit = Some(commit);
    }

    /// `tend suspend` / `tend resume`.
    pub(crate) fn record_suspended(&mut self, suspended: bool) {
        self.suspended = suspended;
    }

    /// What the plan says of every resource: pending, drifted, suspended, ok, or failed to plan.
    pub(crate) fn record_plan(&mut self, plan: &Plan, suspended: bool) {
        self.resources.clear();
        self.plan_text = Some(crate::plan::render_text(plan));
        self.plan_has_changes = plan.has_changes();
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
            let action = (status != "ok").then(|| match c.held_back.unwrap_or(c.action) {
                // A drift reported and left alone is an update it would make.
                Action::NoOp => "update".to_string(),
                a => crate::apply::walker::action_word(a).to_string(),
            });
            self.resources.insert(c.addr.to_string(), ResourceStatus { status: status.into(), last_error: None, action });
        }
        for e in plan.errors.iter().chain(&plan.unplanned) {
            let key = e.addr.as_ref().map_or_else(|| "(plan)".to_string(), ToString::to_string);
            if let Some(a) = &e.addr {
                *self.metrics.errors.entry((a.provider.to_string(), e.kind.name())).or_default() += 1;
            }
            self.resources.insert(key, ResourceStatus { status: "failed".into(), last_error: Some(ErrorReport::new(e.kind, e.message.clone())), action: None });
        }
        let drifted = plan.changes.iter().filter(|c| c.reason == ChangeReason::Drift || c.drift_reported).count();
        self.metrics.drift_detected += drifted as u64;
    }

    /// What the apply did to each resource; `applied` is the commit when everything converged.
    pub(crate) fn record_outcomes(&mut self, results: Vec<(ResourceAddr, Action, Outcome)>, drift_changes: u64, failed: usize, applied: Option<String>) {
        for (addr, action, outcome) in results {
            // What was destroyed (pruned) is no longer a managed resource.
            if action == Action::Delete && matches!(outcome, Outcome::Applied) {
                self.resources.remove(&addr.to_string());
                continue;
            }
            let entry = match outcome {
                Outcome::Applied => ResourceStatus { status: "ok".into(), last_error: None, action: None },
                Outcome::Failed(f) => {
                    *self.metrics.errors.entry((addr.provider.to_string(), f.kind.name())).or_default() += 1;
                    ResourceStatus { status: "failed".into(), last_error: Some(ErrorReport::new(f.kind, f.render())), action: None }
                }
                Outcome::Skipped(cause) => {
                    // The class of what it waited for.
                    let kind = self.resources.get(&cause.to_string()).and_then(|r| r.last_error.as_ref()).map_or(ErrorKind::Terminal, |e| e.kind);
                    ResourceStatus { status: "skipped".into(), last_error: Some(ErrorReport::new(kind, format!("{cause} failed"))), action: None }
                }
            };
            self.resources.insert(addr.to_string(), entry);
        }
        if failed == 0 {
            self.metrics.drift_corrected += drift_changes;
        }
        if let Some(commit) = applied {
            self.last_applied_commit = Some(commit);
        }
    }

    /// Record a reconcile's duration and result.
    pub fn observe_reconcile(&mut self, elapsed: Duration, result: &str) {
        let s = elapsed.as_secs_f64();
        let m = &mut self.metrics;
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                m.buckets[i] += 1;
            }
        }
        m.duration_count += 1;
        m.duration_sum += s;
        *m.reconciles.entry(result.to_string()).or_default() += 1;
    }

    /// Count a webhook delivery.
    pub fn count_webhook(&mut self, forge: &str, outcome: &str) {
        *self.metrics.webhooks.entry((forge.to_string(), outcome.to_string())).or_default() += 1;
    }

    /// Prometheus text exposition.
    pub fn prometheus(&self) -> String {
        let m = &self.metrics;
        let mut o = String::new();
        let _ = writeln!(o, "# HELP tend_reconcile_duration_seconds Time of one reconcile (fetch, plan, apply).");
        let _ = writeln!(o, "# TYPE tend_reconcile_duration_seconds histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(o, "tend_reconcile_duration_seconds_bucket{{le=\"{b}\"}} {}", m.buckets[i]);
        }
        let _ = writeln!(o, "tend_reconcile_duration_seconds_bucket{{le=\"+Inf\"}} {}", m.duration_count);
        let _ = writeln!(o, "tend_reconcile_duration_seconds_sum {}", m.duration_sum);
        let _ = writeln!(o, "tend_reconcile_duration_seconds_count {}", m.duration_count);
        let _ = writeln!(o, "# HELP tend_reconciles_total Reconciles by result.");
        let _ = writeln!(o, "# TYPE tend_reconciles_total counter");
        for (r, n) in &m.reconciles {
            let _ = writeln!(o, "tend_reconciles_total{{result=\"{r}\"}} {n}");
        }
        let _ = writeln!(o, "# HELP tend_resources Managed resources by status after the last reconcile.");
        let _ = writeln!(o, "# TYPE tend_resources gauge");
        let mut by_status: BTreeMap<&str, u64> = ["ok", "pending", "drifted", "failed", "skipped", "suspended"].iter().map(|s| (*s, 0)).collect();
        for r in self.resources.values() {
            *by_status.entry(r.status.as_str()).or_default() += 1;
        }
        for (s, n) in by_status {
            let _ = writeln!(o, "tend_resources{{status=\"{s}\"}} {n}");
        }
        let _ = writeln!(o, "# HELP tend_drift_detected_total Resources found changed outside tend.");
        let _ = writeln!(o, "# TYPE tend_drift_detected_total counter");
        let _ = writeln!(o, "tend_drift_detected_total {}", m.drift_detected);
        let _ = writeln!(o, "# HELP tend_drift_corrected_total Drifted resources converged back.");
        let _ = writeln!(o, "# TYPE tend_drift_corrected_total counter");
        let _ = writeln!(o, "tend_drift_corrected_total {}", m.drift_corrected);
        let _ = writeln!(o, "# HELP tend_last_successful_reconcile_timestamp_seconds Unix time of the last successful reconcile.");
        let _ = writeln!(o, "# TYPE tend_last_successful_reconcile_timestamp_seconds gauge");
        let ts = m.last_success.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map_or(0.0, |d| d.as_secs_f64());
        let _ = writeln!(o, "tend_last_successful_reconcile_timestamp_seconds {ts}");
        let _ = writeln!(o, "# HELP tend_errors_total Failed resource changes and refreshes by provider and error class.");
        let _ = writeln!(o, "# TYPE tend_errors_total counter");
        for ((p, kind), n) in &m.errors {
            let _ = writeln!(o, "tend_errors_total{{provider=\"{p}\",kind=\"{kind}\"}} {n}");
        }
        let _ = writeln!(o, "# HELP tend_webhooks_total Webhook deliveries by forge and outcome.");
        let _ = writeln!(o, "# TYPE tend_webhooks_total counter");
        for ((forge, outcome), n) in &m.webhooks {
            let _ = writeln!(o, "tend_webhooks_total{{forge=\"{forge}\",outcome=\"{outcome}\"}} {n}");
        }
        let _ = writeln!(o, "# HELP tend_suspended Whether the agent is suspended.");
        let _ = writeln!(o, "# TYPE tend_suspended gauge");
        let _ = writeln!(o, "tend_suspended {}", u8::from(self.suspended));
        o
    }
}
