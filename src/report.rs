//! [`Reporter`]: events from the engine to whoever shows progress (CLI, agent).

use std::time::Duration;

use tend_provider::{Action, ResourceAddr};

/// How one resource's apply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Applied,
    /// Failed with this message, of this class.
    Failed(String, tend_provider::ErrorKind),
    /// Not attempted because this upstream resource failed.
    Skipped(ResourceAddr),
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
}

/// A reporter that ignores everything.
#[derive(Debug, Default)]
pub struct Silent;

impl Reporter for Silent {}
