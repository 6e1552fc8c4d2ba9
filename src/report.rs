//! [`Reporter`]: events from the engine to whoever shows progress (CLI, agent).

use std::time::Duration;

use tend_provider::{Action, ResourceAddr};

/// How one resource's apply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Applied,
    /// Failed, as the provider (or the engine) described it.
    Failed(StepFailure),
    /// Not attempted because this upstream resource failed.
    Skipped(ResourceAddr),
}

/// Why a step failed, kept in parts until whoever reports it renders it: the error class, what
/// went wrong, its causes (outermost first) and what to do about it. Secrets are redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    /// The error class.
    pub kind: tend_provider::ErrorKind,
    /// What went wrong.
    pub message: String,
    /// The chain of causes under it.
    pub causes: Vec<String>,
    /// How to fix it, if known.
    pub hint: Option<String>,
}

impl StepFailure {
    /// A failure of the engine's own (no provider involved), `terminal`.
    pub fn terminal(message: impl Into<String>) -> Self {
        Self { kind: tend_provider::ErrorKind::Terminal, message: message.into(), causes: Vec::new(), hint: None }
    }

    /// The message, each cause on its own line (`Caused by: …`), then the hint.
    pub fn render(&self) -> String {
        let mut s = self.message.clone();
        for c in &self.causes {
            s.push_str(&format!("\n  Caused by: {c}"));
        }
        if let Some(h) = &self.hint {
            s.push_str(&format!("\n  hint: {h}"));
        }
        s
    }
}

impl std::fmt::Display for StepFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render())
    }
}

/// Receives engine events. All methods default to doing nothing.
pub trait Reporter: Send + Sync {
    /// Refresh observed `count` instances.
    fn on_refresh(&self, _count: usize) {}
    /// About to apply one change.
    fn pre_apply(&self, _addr: &ResourceAddr, _action: Action) {}
    /// One change finished.
    fn post_apply(&self, _addr: &ResourceAddr, _action: Action, _outcome: &Outcome, _elapsed: Duration) {}
    /// The staged changes on a target took effect together (`what` says how, e.g. which
    /// generation a host switched to).
    fn on_commit(&self, _target: &ResourceAddr, _what: &str, _elapsed: Duration) {}
    /// An applied instance is not ready yet: what it waits for, and how long it has waited.
    fn on_progress(&self, _addr: &ResourceAddr, _waiting_for: &str, _elapsed: Duration) {}
}

/// A reporter that ignores everything.
#[derive(Debug, Default)]
pub struct Silent;

impl Reporter for Silent {}
