//! Plans: what tend will do, as a value that can be printed, saved and applied later.
//!
//! [`plan`] refreshes (batched provider reads), then asks each provider to plan each instance in
//! dependency order, and applies the engine's policies (drift, lifecycle, reasons). The
//! [`Plan`] carries the state lineage + serial it was made against, so a saved plan is refused
//! once state moves on.

pub mod claims;
mod eval;
mod planner;
mod render_json;
mod render_text;

use std::collections::BTreeMap;
use std::path::PathBuf;
use thin_vec::ThinVec;

pub use eval::{EvalError, Resolver, eval_fields};
pub use planner::{PlanInput, plan};
pub use render_json::render_json;
pub use render_text::{TextOptions, render_text, render_text_with};
use serde::{Deserialize, Serialize};
use tend_provider::{Action, Attributes, ErrorKind, ResourceAddr};

use crate::config::{Expr, Lifecycle};

/// Saved plan files start with this format marker.
pub const PLAN_FORMAT: &str = "tend-plan/1";

/// Why a resource changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeReason {
    /// Nothing changes.
    None,
    /// Not applied before.
    New,
    /// Its config changed since the last apply.
    ConfigChanged,
    /// It was changed or deleted outside tend.
    Drift,
    /// It is in state but no longer in config.
    Removed,
    /// Its last apply failed halfway.
    Tainted,
    /// A resource it watches (`on_change`) changes.
    Triggered,
    /// Asked for: `--replace ADDR`.
    Requested,
}

/// What a run asks of a plan beyond the config: parts of it, forced replacements, everything
/// destroyed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// `--target ADDR`: only these (an address without a key: all its instances) and what they
    /// depend on.
    pub targets: Vec<ResourceAddr>,
    /// `--limit HOST|LABEL=VALUE`: only what is placed on matching hosts, the hosts, and what
    /// those depend on.
    pub limit: Vec<String>,
    /// `--replace ADDR`: re-create these even if nothing changed.
    pub replace: Vec<ResourceAddr>,
    /// `tend destroy`: every resource in state is destroyed.
    pub destroy: bool,
    /// `--refresh-only`: state is brought up to date with what the targets hold now; nothing
    /// on them changes.
    pub refresh_only: bool,
}

/// What a refresh-only plan records for one instance whose object changed or went away outside
/// tend. Attributes are as state keeps them: fields that derive from a secret as fingerprints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refreshed {
    /// Instance address.
    pub addr: ResourceAddr,
    /// The attributes recorded now.
    pub before: Attributes,
    /// The attributes state will record; `None`: the object is gone and its record is forgotten.
    pub after: Option<Attributes>,
    /// The remote id recorded now.
    pub before_id: Option<String>,
    /// The remote id observed.
    pub after_id: Option<String>,
}

/// The planned change of one resource instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Instance address.
    pub addr: ResourceAddr,
    /// What will happen.
    pub action: Action,
    /// Why.
    pub reason: ChangeReason,
    /// Attributes now (`None` when absent). Shared: a no-op's `before` and `after` are one map,
    /// the one its record holds.
    pub before: Option<std::sync::Arc<Attributes>>,
    /// Attributes after apply (`None` when deleted); unknown values are known after apply.
    pub after: Option<std::sync::Arc<Attributes>>,
    /// Fields forcing replacement.
    pub requires_replace: ThinVec<String>,
    /// Upstream changes that trigger this one.
    pub triggered_by: ThinVec<ResourceAddr>,
    /// A note from the provider or the engine.
    pub note: Option<Box<str>>,
    /// Drift found and left alone because of `drift = "report"`.
    pub drift_reported: bool,
    /// Direct dependencies (instance addresses). Shared: the changes of a plan name a few
    /// lists many times over (every file on one host depends on that host).
    pub depends_on: std::sync::Arc<[ResourceAddr]>,
    /// Dependencies through address-list fields (`on_change`).
    pub trigger_deps: ThinVec<ResourceAddr>,
    /// What it depended on at its last apply and no longer does: a deletion of one of them
    /// waits for this change (a workload moves to a new config map before the old one goes).
    #[serde(default, skip_serializing_if = "ThinVec::is_empty")]
    pub released: ThinVec<ResourceAddr>,
    /// The target the instance lives on.
    pub target: Option<ResourceAddr>,
    /// Config expressions, evaluated again at apply (`None` for removed resources, and for
    /// no-ops that nothing references).
    pub config: Option<tend_provider::Map<Expr>>,
    /// What refresh observed (`None` for no-ops).
    pub observed: Option<Attributes>,
    /// Remote id observed.
    pub observed_id: Option<Box<str>>,
    /// Attributes recorded at the last apply (shared with the state snapshot).
    pub prior: Option<std::sync::Arc<Attributes>>,
    /// Remote id recorded at the last apply.
    pub prior_id: Option<Box<str>>,
    /// Lifecycle settings (shared: most changes of a plan have the same).
    pub lifecycle: std::sync::Arc<Lifecycle>,
    /// Takes effect when its target commits (a host's next generation of files).
    #[serde(default)]
    pub staged: bool,
    /// The change `suspend = true` held back (the action is then no-op).
    #[serde(default)]
    pub held_back: Option<Action>,
    /// The instance's own kind, when its provider gave it one (a manifest's object, a custom
    /// resource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Applying it runs something (its kind `runs`: a command): plans say "will run".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub runs: bool,
    /// What changes inside content (a file's), for the text plan's diffs. Never saved with a
    /// plan file.
    #[serde(skip)]
    pub content: ThinVec<tend_provider::ContentChange>,
}

impl Change {
    /// Whether applying this change does anything.
    pub fn is_change(&self) -> bool {
        self.action != Action::NoOp
    }
}

fn terminal() -> ErrorKind {
    ErrorKind::Terminal
}

/// A problem that makes a plan unapplyable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanError {
    /// Its class: the provider's for what a provider found, `conflict` for resources that claim
    /// one thing, `terminal` for config errors.
    #[serde(default = "terminal")]
    pub kind: ErrorKind,
    /// The resource concerned, if any.
    pub addr: Option<ResourceAddr>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

/// Counts of planned actions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Creates.
    pub add: usize,
    /// In-place updates.
    pub change: usize,
    /// Replacements.
    pub replace: usize,
    /// Deletes.
    pub destroy: usize,
    /// No-ops.
    pub noop: usize,
}

impl Summary {
    /// Count the actions of a list of changes.
    pub fn of<'a>(actions: impl IntoIterator<Item = &'a Action>) -> Self {
        let mut s = Self::default();
        for a in actions {
            match a {
                Action::NoOp => s.noop += 1,
                Action::Create => s.add += 1,
                Action::Update => s.change += 1,
                Action::Replace { .. } => s.replace += 1,
                Action::Delete => s.destroy += 1,
            }
        }
        s
    }

    /// Whether anything changes.
    pub fn any(&self) -> bool {
        self.add + self.change + self.replace + self.destroy > 0
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} to add, {} to change, {} to replace, {} to destroy", self.add, self.change, self.replace, self.destroy)
    }
}

/// A plan: every instance's change, in dependency order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// [`PLAN_FORMAT`].
    pub format: String,
    /// The config revision planned.
    pub revision: String,
    /// The environment selected, if any.
    pub environment: Option<String>,
    /// The config directory.
    pub config_root: PathBuf,
    /// State lineage the plan was made against (empty for no state yet).
    pub lineage: String,
    /// State serial the plan was made against.
    pub serial: u64,
    /// Changes in dependency order, including no-ops.
    pub changes: Vec<Change>,
    /// Instances of each configured resource (for resolving references at apply).
    pub instances: BTreeMap<ResourceAddr, Vec<ResourceAddr>>,
    /// Problems; a plan with errors is not applyable.
    pub errors: Vec<PlanError>,
    /// Instances that could not be planned because their target could not be observed (an
    /// unreachable host), and their dependents. The rest of the plan still applies; the run
    /// reports these and fails.
    #[serde(default)]
    pub unplanned: Vec<PlanError>,
    /// Targets whose staged changes take effect together, with how their provider announces it
    /// (`will switch to a new generation of its files (2 changed)`).
    #[serde(default)]
    pub commits: BTreeMap<String, String>,
    /// Changes left out because `--target` or `--limit` did not select them.
    #[serde(default)]
    pub left_out: usize,
    /// A refresh-only plan: `changes` is empty, applying it writes `refreshed` to state.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refresh_only: bool,
    /// What a refresh-only plan records: objects changed or deleted outside tend.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refreshed: Vec<Refreshed>,
}

impl Plan {
    /// Counts of planned actions.
    pub fn summary(&self) -> Summary {
        Summary::of(self.changes.iter().map(|c| &c.action))
    }

    /// Whether the plan has no errors.
    pub fn is_applyable(&self) -> bool {
        self.errors.is_empty()
    }

    /// Whether anything would change (for a refresh-only plan: in state).
    pub fn has_changes(&self) -> bool {
        self.summary().any() || !self.refreshed.is_empty()
    }
}
