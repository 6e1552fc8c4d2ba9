//! The agent's settings: flags and environment first, then tend.toml `[agent]` (re-read on
//! every reconcile), then defaults.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{AgentSettings, LoadOptions};

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

/// Settings in force: flags and environment, then tend.toml `[agent]`, then defaults.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Effective {
    pub interval: Duration,
    pub jitter: f64,
    pub drift_interval: Option<Duration>,
    pub mode: Mode,
}

/// The settings in force for `opts` with tend.toml's `[agent]` table `file`.
pub(crate) fn effective(opts: &AgentOptions, file: &AgentSettings) -> Effective {
    Effective {
        interval: opts.interval.or(file.interval).unwrap_or(Duration::from_mins(5)),
        jitter: opts.jitter.or(file.jitter).unwrap_or(0.1),
        drift_interval: opts.drift_interval.or(file.drift_interval),
        mode: opts.mode.or(file.plan_only.map(|p| if p { Mode::PlanOnly } else { Mode::Apply })).unwrap_or(Mode::Apply),
    }
}
