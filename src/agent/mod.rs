//! `tend agent`: keep every target converged to what Git says.
//!
//! A loop: wait for a trigger (a webhook push, the fetch interval, the drift interval, a resume)
//! → fetch → check out the commit read-only → plan → apply (or only report, `plan-only`) →
//! record status and metrics. A failed reconcile backs off exponentially (reset by the next
//! success); a failed fetch keeps the last good commit. SIGTERM/SIGINT stop scheduling new
//! changes, let the running ones finish, release the state lock and exit.

mod fetch;
pub mod http;
pub mod listen;
mod reconcile;
mod schedule;
mod settings;
mod status;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Mutex, Notify};

pub use schedule::run;
pub use settings::{AgentOptions, Mode, Origin};
pub use status::{ErrorReport, ResourceStatus, Status};

/// What the loop and the HTTP listener share.
pub struct Shared {
    /// The status served on `/status` and `/metrics`.
    pub status: Mutex<Status>,
    /// Wakes the loop (webhook, resume). One stored permit coalesces bursts.
    pub trigger: Notify,
    /// Wakes the loop for a drift run: a provider's watch saw a change made outside tend.
    pub drift: Notify,
    /// The providers' watches started after the last successful reconcile; dropped (stopped)
    /// when the next one starts, so that tend's own changes are not reported as drift.
    watches: std::sync::Mutex<Vec<tend_provider::WatchGuard>>,
    /// Webhook secret.
    pub webhook_secret: Option<String>,
    /// Set on SIGTERM/SIGINT: no new changes start.
    pub cancel: Arc<AtomicBool>,
    /// Wakes the loop to stop.
    pub stop: Notify,
    /// `[agent]` of the tend.toml last loaded.
    file_settings: std::sync::Mutex<crate::config::AgentSettings>,
}

impl Shared {
    fn effective(&self, opts: &AgentOptions) -> settings::Effective {
        settings::effective(opts, &self.file_settings.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
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
            drift: Notify::new(),
            watches: std::sync::Mutex::new(Vec::new()),
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
