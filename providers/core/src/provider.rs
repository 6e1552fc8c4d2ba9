//! The [`Provider`] trait and its request/response structs.

use std::collections::BTreeSet;
use std::path::PathBuf;

use async_trait::async_trait;

use crate::{KindSchema, ProviderError, ResourceAddr, Value};

/// Observed attributes or planned values of one instance, by field name.
pub type Attributes = crate::Map<Value>;

/// What `read` found for one instance.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    /// The remote id, if the object has one (instance id, ...).
    pub id: Option<String>,
    /// Attributes as they are now. Referencable as `${ADDRESS.FIELD}`.
    pub attributes: Attributes,
}

/// What tend recorded for an instance at its last apply.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PriorRecord {
    /// Remote id, if any.
    pub id: Option<String>,
    /// Attributes recorded after the last apply (shared with the state snapshot).
    pub attributes: std::sync::Arc<Attributes>,
}

/// The resource an instance lives on (for host resources: the host), with its known values.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Address of the target resource, e.g. `host.local.this`.
    pub addr: ResourceAddr,
    /// Its config and outputs; may hold [`Value::Unknown`] at plan time. Shared: every
    /// instance placed on one target sees the same copy.
    pub attributes: std::sync::Arc<Attributes>,
}

/// Settings handed to [`ProviderFactory::configure`].
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The `[providers.NAME]` table of `tend.toml`, or an empty table.
    pub settings: Attributes,
    /// Root of the config checkout; files referenced by config are resolved inside it.
    pub config_root: PathBuf,
    /// The project name (`[project] name`): providers that tag what they create use it to tell
    /// their objects from other projects' in the same account.
    pub project: String,
}

/// Builds a configured [`Provider`].
pub trait ProviderFactory: Send + Sync {
    /// The provider name used in addresses (`host`, `ec2`, `kube`).
    fn name(&self) -> &'static str;
    /// The kinds this provider offers (available before configuration, for validation).
    fn kinds(&self) -> Vec<KindSchema>;
    /// The settings `[providers.NAME]` of tend.toml may hold; any other key is a config error
    /// (naming `file:line`, with a suggestion) before the provider is configured. Default: none.
    fn settings(&self) -> Vec<crate::FieldSchema> {
        Vec::new()
    }
    /// Configure a provider instance for one run.
    fn configure(&self, config: ProviderConfig) -> Result<Box<dyn Provider>, ProviderError>;
}

/// Another resource of the same provider, as seen by [`Provider::expand`].
#[derive(Debug, Clone)]
pub struct Sibling {
    /// Its address (no key).
    pub addr: ResourceAddr,
    /// Its literal config values; fields that hold references are [`Value::Unknown`].
    pub literal: Attributes,
}

/// Input to [`Provider::expand`].
#[derive(Debug)]
pub struct ExpandRequest<'a> {
    /// The resource being expanded (no key).
    pub addr: &'a ResourceAddr,
    /// Its literal config values; fields that hold references are [`Value::Unknown`].
    pub literal: &'a Attributes,
    /// The resources of this provider whose kind is a placement target (`KindSchema::target`).
    pub siblings: &'a [Sibling],
    /// Root of the config checkout: files an expansion reads (a directory of manifests) are
    /// resolved inside it with [`crate::resolve_inside`].
    pub config_root: &'a std::path::Path,
    /// The declared secrets' files, as `(name, file relative to the config root)`: an encrypted
    /// file an expansion finds (a SOPS-encrypted manifest) is referred to as
    /// `${secret.NAME...}`, decrypted only where it is used.
    pub secret_files: &'a [(String, String)],
}

/// One instance of a configured resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// Instance key (host name for host resources); `None` for single-instance resources.
    pub key: Option<String>,
    /// The resource this instance lives on, if any. It becomes a dependency, and its values
    /// are passed as [`Target`] to `read`, `plan` and `apply`.
    pub target: Option<ResourceAddr>,
    /// What this instance needs to exist first, as the provider knows it (a Namespace before
    /// the objects in it, a CRD before its custom resources): instances of this resource
    /// (`kube.manifests.app[Namespace/web]`) or of others; an address without a key means every
    /// instance of that resource. Cycles are errors naming each member.
    pub depends_on: Vec<ResourceAddr>,
    /// The instance's own kind when it is not its resource's (the objects of a set of
    /// manifests: `apps/v1/Deployment`, or a custom resource's `example.com/v1/Widget`): one of
    /// the provider's kinds or of its [`Provider::runtime_kinds`]; the engine refuses any other.
    pub kind: Option<String>,
    /// The instance's own config values, over its resource's (an object of a set of
    /// manifests: the object as written). Strings may hold `${...}` references and secrets:
    /// the engine parses them as it parses config, adds the edges they imply and evaluates
    /// them like any config value.
    pub fields: Attributes,
    /// Where the instance is written, for messages (`k8s/app/web.yaml:12`), when not in the
    /// resource's own declaration.
    pub origin: Option<String>,
}

impl Instance {
    /// The single, unkeyed instance of a resource that lives nowhere in particular.
    pub fn single() -> Self {
        Self { key: None, target: None, depends_on: Vec::new(), kind: None, fields: Attributes::new(), origin: None }
    }

    /// An instance with this key, placed on `target`.
    pub fn keyed(key: impl Into<String>, target: Option<ResourceAddr>) -> Self {
        Self { key: Some(key.into()), target, depends_on: Vec::new(), kind: None, fields: Attributes::new(), origin: None }
    }
}

/// A kind known only at run time: a custom resource whose definition is in the same set of
/// manifests or was found on the cluster, declared by the provider with its schema.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeKind {
    /// Its name as instances give it in [`Instance::kind`] (`example.com/v1/Widget`).
    pub name: String,
    /// Where it comes from, for messages (`CustomResourceDefinition widgets.example.com in k8s/crds.yaml`).
    pub doc: String,
    /// Its fields by path, as far as the provider knows them (from the definition's schema).
    pub fields: Vec<RuntimeField>,
    /// How long the engine waits for an instance of it to become ready, when the resource
    /// sets no `timeout`.
    pub timeout: Option<std::time::Duration>,
}

/// One field of a [`RuntimeKind`].
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeField {
    /// Where it is (`spec.size`).
    pub path: crate::FieldPath,
    /// Its type.
    pub ty: crate::FieldType,
    /// What a change to it does.
    pub update: crate::UpdateMode,
}

/// A problem with one field (or the whole resource when `field` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field at fault, for pointing at its source location.
    pub field: Option<String>,
    /// What is wrong, lowercase.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl FieldError {
    /// An error about one field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self { field: Some(field.into()), message: message.into(), hint: None }
    }

    /// An error about the whole resource.
    pub fn resource(message: impl Into<String>) -> Self {
        Self { field: None, message: message.into(), hint: None }
    }

    /// Attach a hint.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// One instance to observe.
#[derive(Debug, Clone)]
pub struct ReadItem {
    /// Instance address.
    pub addr: ResourceAddr,
    /// Desired config, evaluated with what is known before planning (may hold unknowns);
    /// `None` for an instance that is in state but no longer in config.
    pub config: Option<Attributes>,
    /// The last recorded state, if any.
    pub prior: Option<PriorRecord>,
    /// Where the instance lives, if anywhere.
    pub target: Option<Target>,
}

/// A batch of instances of one provider to observe together.
#[derive(Debug, Clone, Default)]
pub struct ReadRequest {
    /// The instances; the response has one entry per item, in the same order.
    pub items: Vec<ReadItem>,
}

/// The action planned for one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing to do.
    NoOp,
    /// Create it.
    Create,
    /// Change it in place.
    Update,
    /// Replace it: delete + create, or create first when `create_first`.
    Replace {
        /// Create the replacement before deleting the old object.
        create_first: bool,
    },
    /// Delete it.
    Delete,
}

/// Input to [`Provider::plan`].
#[derive(Debug, Clone)]
pub struct PlanRequest {
    /// Instance address.
    pub addr: ResourceAddr,
    /// Desired config (may hold unknowns), or `None` to plan deletion.
    pub config: Option<Attributes>,
    /// What `read` found; `None` if absent.
    pub observed: Option<Observed>,
    /// The last recorded state, if any.
    pub prior: Option<PriorRecord>,
    /// Where the instance lives.
    pub target: Option<Target>,
    /// Dependencies of this instance (via address-list fields) that change in this plan.
    pub upstream_changes: BTreeSet<ResourceAddr>,
    /// Whether the evaluated inputs differ from those of the last apply (the engine compares
    /// keyed hashes). Resources with nothing to observe (commands) use this to rerun.
    pub inputs_changed: bool,
    /// Whether the plan will be shown: only then is what changes inside content worked out
    /// (`PlannedChange::content`). The check an apply makes before each change does not show it.
    pub show_content: bool,
}

/// What a provider plans for one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedChange {
    /// The action. The provider returns `Replace { create_first: false }`; the engine sets
    /// `create_first` from the resource's lifecycle.
    pub action: Action,
    /// Attributes as they are (empty when absent).
    pub before: Attributes,
    /// Attributes as they will be; [`Value::Unknown`] where only apply can tell.
    pub after: Attributes,
    /// Fields whose change forces replacement.
    pub requires_replace: Vec<String>,
    /// Upstream changes that trigger this change (for commands run on change).
    pub triggered_by: Vec<ResourceAddr>,
    /// A short note for the plan (e.g. why a command is skipped).
    pub note: Option<String>,
    /// The change only prepares; it takes effect when the engine commits the instance's target
    /// (see [`Provider::commit`]). Also set on no-ops that belong to such a target, so the commit
    /// sees every member.
    pub staged: bool,
    /// What changes inside the content of a file (or anything with text content): shown in
    /// plans as a unified diff.
    pub content: Vec<ContentChange>,
}

impl PlannedChange {
    /// A change with the given action and no before/after.
    pub fn new(action: Action) -> Self {
        Self {
            action,
            before: Attributes::new(),
            after: Attributes::new(),
            requires_replace: Vec::new(),
            triggered_by: Vec::new(),
            note: None,
            staged: false,
            content: Vec::new(),
        }
    }
}

/// The text content of one field before and after a change, for the plan to show as a diff.
/// A provider fills it only for content it may show: never for a secret (the engine checks
/// again), and as a `summary` for content that is binary or too large to show.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContentChange {
    /// The field whose content this is (`content`).
    pub field: String,
    /// The text now; `None` when there is none (a file to be created).
    pub before: Option<String>,
    /// The text after the change; `None` when there will be none.
    pub after: Option<String>,
    /// Shown instead of a diff (`binary content, 1.2 KiB -> 1.3 KiB`); the texts are then `None`.
    pub summary: Option<String>,
}

/// Content larger than this is summarised in plans, not shown.
pub const CONTENT_SHOWN_MAX: usize = 64 * 1024;

impl ContentChange {
    /// The change from `before` to `after` bytes of `field`: their texts, or a summary when
    /// either is binary or larger than [`CONTENT_SHOWN_MAX`].
    pub fn of(field: &str, before: Option<&[u8]>, after: Option<&[u8]>) -> Self {
        let summary = |what: &str| Self::summarised(field, what, before.map(<[u8]>::len), after.map(<[u8]>::len));
        if before.into_iter().chain(after).any(|b| b.len() > CONTENT_SHOWN_MAX) {
            return summary("content too large to show");
        }
        let text = |b: Option<&[u8]>| b.map(|b| if b.contains(&0) { Err(()) } else { std::str::from_utf8(b).map(str::to_string).map_err(|_| ()) }).transpose();
        match (text(before), text(after)) {
            (Ok(b), Ok(a)) => Self { field: field.into(), before: b, after: a, summary: None },
            _ => summary("binary content"),
        }
    }

    /// A change of content too large to show, by the sizes of its sides (`None`: absent), for
    /// content not worth reading to say so.
    pub fn too_large(field: &str, before: Option<usize>, after: Option<usize>) -> Self {
        Self::summarised(field, "content too large to show", before, after)
    }

    fn summarised(field: &str, what: &str, before: Option<usize>, after: Option<usize>) -> Self {
        let size = |n: Option<usize>| n.map_or_else(|| "none".to_string(), human_size);
        Self { field: field.into(), before: None, after: None, summary: Some(format!("{what}, {} -> {}", size(before), size(after))) }
    }

    /// A change whose content may not be shown (a secret).
    pub fn sensitive(field: &str) -> Self {
        Self { field: field.into(), before: None, after: None, summary: Some("(sensitive content not shown)".into()) }
    }
}

/// `812 B`, `1.2 KiB`, `3.4 MiB`.
fn human_size(n: usize) -> String {
    #[allow(clippy::cast_precision_loss)] // a size shown with one decimal
    let f = n as f64;
    if n < 1024 {
        format!("{n} B")
    } else if n < 1024 * 1024 {
        format!("{:.1} KiB", f / 1024.0)
    } else {
        format!("{:.1} MiB", f / (1024.0 * 1024.0))
    }
}

/// Input to [`Provider::apply`]: one concrete step.
#[derive(Debug, Clone)]
pub struct ApplyRequest {
    /// Instance address.
    pub addr: ResourceAddr,
    /// `Create`, `Update` or `Delete` (the engine splits a replacement into its two steps).
    pub action: Action,
    /// Fully known desired config (`None` for `Delete`).
    pub config: Option<Attributes>,
    /// The object as observed before (for `Update` and `Delete`).
    pub observed: Option<Observed>,
    /// The last recorded state, if any.
    pub prior: Option<PriorRecord>,
    /// Where the instance lives, fully known.
    pub target: Option<Target>,
}

/// A provider: validates, observes, plans and converges resources of its kinds.
///
/// # Guarantees (the engine's side)
/// - `apply` is only called with fully known config and target.
/// - Calls for one instance are never concurrent; calls for different instances may be.
/// - The engine checks that `apply` returned what `plan` promised and reports a mismatch as a
///   provider bug.
///
/// # Assumptions (the provider's side)
/// - **Idempotent:** every `apply` is safe to repeat after a crash or a cancellation; creating
///   what already exists converges it, deleting what is absent succeeds.
/// - **Cancellation:** a future dropped mid-way must leave the remote object either as it was or
///   as desired (atomic writes, tagged creates), never corrupt.
/// - A remote "not found" during `read` is `Ok(None)`, not an error.
/// - `read` observes many instances in as few remote calls as possible.
///
/// # Caveats
/// - `plan` may be called twice for one instance: at plan time with unknowns, and again at
///   apply time once upstream values are known.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Provider name.
    fn name(&self) -> &'static str;

    /// Schemas of the kinds this provider offers.
    fn kinds(&self) -> &[KindSchema];

    /// Expand one configured resource into its instances, which may depend on each other or
    /// on instances of other resources ([`Instance::depends_on`]). May read files of the config
    /// checkout and ask the remote side (a cluster's discovery). The default is one instance.
    async fn expand(&self, _req: &ExpandRequest<'_>) -> Result<Vec<Instance>, FieldError> {
        Ok(vec![Instance::single()])
    }

    /// Kinds this provider knows only at run time (custom resources), learnt while expanding
    /// (a definition in the same set of manifests) or from the remote side (a cluster's
    /// discovery). Called once every resource is expanded; an instance whose
    /// [`Instance::kind`] is neither one of [`Provider::kinds`] nor one of these is a config
    /// error naming it. The default: none.
    fn runtime_kinds(&self) -> Vec<RuntimeKind> {
        Vec::new()
    }

    /// Provider-specific checks of literal config values (types are already checked).
    fn validate(&self, _addr: &ResourceAddr, _literal: &Attributes) -> Vec<FieldError> {
        Vec::new()
    }

    /// Observe a batch of instances; one result per item, in order. `Ok(None)` says the object
    /// does not exist (a refresh-only plan forgets its record), except for target kinds (hosts),
    /// which are ways to reach a machine and may observe nothing. An object that could not be
    /// looked at is an error, never `Ok(None)`.
    async fn read(&self, req: ReadRequest) -> Vec<Result<Option<Observed>, ProviderError>>;

    /// Plan one instance.
    async fn plan(&self, req: PlanRequest) -> Result<PlannedChange, ProviderError>;

    /// Carry out one step and return what exists afterwards (`None` after a delete).
    async fn apply(&self, req: ApplyRequest) -> Result<Option<Observed>, ProviderError>;

    /// The recorded instances an operator action applies to when an operator names `subject`
    /// (`tend rollback web`: the host `web`'s generations of files and its releases), in the
    /// order to act on them. Empty when this provider has nothing of that name; an error when it
    /// has but the action cannot apply (naming why). The default offers no actions.
    fn act_on(&self, _action: &str, _subject: &str, _recorded: &[(&ResourceAddr, &Attributes)]) -> Result<Vec<ResourceAddr>, ProviderError> {
        Ok(Vec::new())
    }

    /// Run a named operator action outside a plan (e.g. `rollback` of a host release) on one
    /// recorded instance; returns what exists afterwards, to be recorded, and what it did in
    /// the provider's words. The default refuses.
    async fn act(&self, req: ActRequest) -> Result<Acted, ProviderError> {
        Err(ProviderError::terminal(format!("`{}` does not support `{}`", req.addr, req.action)))
    }

    /// Make the staged changes on one target take effect together (e.g. switch a host to a new
    /// generation of its files). Called once per target per apply, after every staged change
    /// placed on it succeeded and before anything that depends on them; returns attributes to
    /// merge into the target's record and what it did, in the provider's words. The default
    /// refuses.
    async fn commit(&self, req: CommitRequest) -> Result<Committed, ProviderError> {
        Err(ProviderError::terminal(format!("`{}` has staged changes but its provider cannot commit them", req.target.addr)))
    }

    /// How a plan announces the commit of `changed` staged changes on `target`, after its
    /// address (`will switch to a new generation of its files (2 changed)`).
    fn commit_note(&self, _target: &ResourceAddr, changed: usize) -> String {
        format!("will make {changed} staged change{} take effect together", if changed == 1 { "" } else { "s" })
    }

    /// How an instance is doing after its apply (or a target after its commit): ready,
    /// progressing (with what it waits for, `2/3 ready`), or failed. The engine asks again with
    /// backoff until the answer is not `Progressing` or the resource's `timeout` passes, and
    /// starts dependents only once it is `Ready`. One probe per call: the engine does the
    /// waiting. An error of a retryable kind counts as progressing. The default: ready at once
    /// (a kind without a status).
    async fn health(&self, _req: HealthRequest) -> Result<Health, ProviderError> {
        Ok(Health::Ready)
    }

    /// Put back what an apply (or a commit) changed, after it failed its health check, where
    /// the provider can (a release or a host's generation switched back to the previous one).
    /// Returns what exists afterwards and what was done; `None` when there is nothing to put
    /// back (the default). Not called for a create-before-destroy replacement: the old object
    /// is still in place and stays current.
    async fn revert(&self, _req: RevertRequest) -> Result<Option<Reverted>, ProviderError> {
        Ok(None)
    }

    /// Watch recorded instances for changes made outside tend (a Kubernetes watch), calling
    /// `on_drift` with the address of each one whose recorded fields changed or that was
    /// deleted, until the returned guard is dropped. The agent calls it after each reconcile,
    /// on the provider of that reconcile (its connections are made), and reconciles again when
    /// told; it drops the guard before the next reconcile, so the provider's own changes are
    /// not reported. The default, `None`: the provider cannot watch, and drift is found by the
    /// agent's periodic plans.
    async fn watch(&self, _req: WatchRequest, _on_drift: OnDrift) -> Result<Option<WatchGuard>, ProviderError> {
        Ok(None)
    }
}

/// Input to [`Provider::watch`]: instances as state recorded them.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    /// The instances to watch.
    pub items: Vec<WatchItem>,
}

/// One instance to watch.
#[derive(Debug, Clone)]
pub struct WatchItem {
    /// Its address.
    pub addr: ResourceAddr,
    /// Its attributes as recorded (sensitive values as fingerprints).
    pub recorded: std::sync::Arc<Attributes>,
    /// Its target's address.
    pub target: Option<ResourceAddr>,
}

/// Told the address of an instance changed outside tend.
pub type OnDrift = std::sync::Arc<dyn Fn(&ResourceAddr) + Send + Sync>;

/// Keeps a provider's watches running; dropping it stops them.
pub type WatchGuard = Box<dyn Send + Sync>;

/// What [`Provider::health`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Ready: dependents may start.
    Ready,
    /// Not yet: what it waits for (`2/3 replicas ready`, `port 22: connection refused`).
    Progressing {
        /// Shown as progress, and in the error if the timeout passes.
        message: String,
    },
    /// It will not become ready without a change (a failed rollout, a failing health command).
    Failed {
        /// Why, naming the condition.
        message: String,
        /// How to find out more (the command's last lines of output).
        hint: Option<String>,
    },
}

/// Input to [`Provider::health`].
#[derive(Debug, Clone)]
pub struct HealthRequest {
    /// The instance (or, for a commit, the target).
    pub addr: ResourceAddr,
    /// Whether this is the health of a target's commit of staged changes (a host's new
    /// generation of files) rather than of the instance's own apply.
    pub commit: bool,
    /// The instance's config as applied (for a commit: the target's attributes).
    pub config: Attributes,
    /// What the apply (or commit) returned.
    pub applied: Observed,
    /// Where the instance lives.
    pub target: Option<Target>,
    /// How long the engine has been waiting.
    pub elapsed: std::time::Duration,
}

/// Input to [`Provider::revert`].
#[derive(Debug, Clone)]
pub struct RevertRequest {
    /// The instance (or, for a commit, the target).
    pub addr: ResourceAddr,
    /// Whether the commit on a target is reverted rather than the instance's own apply.
    pub commit: bool,
    /// The config that was applied (for a commit: the target's attributes).
    pub config: Attributes,
    /// What existed before the apply (for a commit: the target's record before it).
    pub before: Option<Observed>,
    /// What the apply (or commit) returned.
    pub applied: Observed,
    /// Where the instance lives.
    pub target: Option<Target>,
}

/// What [`Provider::revert`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Reverted {
    /// What exists afterwards, to be recorded (for a commit: attributes to merge into the
    /// target's record).
    pub observed: Observed,
    /// What was done, for the operator (`switched back to generation 3f2a…`).
    pub message: String,
}

/// What [`Provider::act`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Acted {
    /// What exists afterwards, to be recorded.
    pub observed: Observed,
    /// What happened, for the operator (`switched from generation 3f2a… to 9c1d…`).
    pub message: String,
    /// The next plan should converge the instance to its config again (the action moved it
    /// away, as a rollback of a release does): its recorded inputs are forgotten.
    pub replan: bool,
}

/// What [`Provider::commit`] did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Committed {
    /// Attributes to merge into the target's record.
    pub attributes: Attributes,
    /// What happened, for the operator (`switched to generation 3f2a… (50 files)`).
    pub message: String,
}

/// Input to [`Provider::commit`].
#[derive(Debug, Clone)]
pub struct CommitRequest {
    /// The target, with its attributes known.
    pub target: Target,
    /// What is recorded of the target.
    pub prior: Option<Attributes>,
    /// Every staged instance placed on the target that exists after this apply (changed or
    /// not), with its attributes as recorded — but those that did not apply.
    pub members: Vec<(ResourceAddr, Attributes)>,
    /// Staged changes on the target that failed or were skipped in this apply (something they
    /// need failed). The commit runs anyway: what was staged may take effect without them, or
    /// the provider refuses (an all-or-nothing switch) naming them.
    pub not_applied: Vec<ResourceAddr>,
}

/// Input to [`Provider::act`].
#[derive(Debug, Clone)]
pub struct ActRequest {
    /// Instance address.
    pub addr: ResourceAddr,
    /// The action's name, e.g. `rollback`.
    pub action: String,
    /// Its arguments, e.g. `to`.
    pub args: Attributes,
    /// The recorded state of the instance.
    pub prior: PriorRecord,
    /// Where the instance lives.
    pub target: Option<Target>,
}
