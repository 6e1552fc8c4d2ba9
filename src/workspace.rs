//! A loaded workspace: config, configured providers and the state location — what every
//! command starts from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tend_provider::ProviderError;
use tend_state::{Snapshot, SqliteStore, StateError, StateStore};

use crate::config::{self, Config, Diagnostics, LoadOptions};
use crate::graph::{self, ResourceGraph};
use crate::plan::{self, Plan, PlanInput};
use crate::registry::{Providers, Registry};
use crate::secrets::Secrets;

/// Why a workspace could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// The config has errors.
    #[error("the configuration has {} error{}", .0.items.len(), if .0.items.len() == 1 { "" } else { "s" })]
    Config(Diagnostics),
    /// A provider refused its settings.
    #[error("provider `{name}` could not be configured")]
    Provider {
        /// Provider name.
        name: String,
        /// The cause.
        #[source]
        source: ProviderError,
    },
    /// State could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Config + providers + state location.
pub struct Workspace {
    /// The registry used to load.
    pub registry: Registry,
    /// The loaded config.
    pub config: Config,
    /// Providers the config uses, configured.
    pub providers: Providers,
    /// The state file.
    pub state_path: PathBuf,
    /// Whether the state file was chosen (`--state`, `[project] state`) rather than defaulted.
    pub state_explicit: bool,
    /// What this run is, as state records its owner: `project=… environment=… source=…`.
    pub owner: String,
    /// `--reassign-state`: take over state recorded for another config.
    pub reassign_state: bool,
    /// Declared secrets, decrypted on first use.
    pub secrets: std::sync::Arc<Secrets>,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace").field("root", &self.config.root).field("state_path", &self.state_path).finish_non_exhaustive()
    }
}

/// Open the state at `path` for writing, created on first use. The one place that knows which
/// backend state lives in; everything else uses it through [`StateStore`].
pub fn open_store(path: &Path) -> Result<Arc<dyn StateStore>, StateError> {
    Ok(Arc::new(SqliteStore::open(path)?))
}

/// Open the state at `path` for reading only; `None` when there is none yet.
pub fn open_store_read_only(path: &Path) -> Result<Option<Arc<dyn StateStore>>, StateError> {
    Ok(SqliteStore::open_read_only(path)?.map(|s| Arc::new(s) as Arc<dyn StateStore>))
}

/// The default state file of a project: `$XDG_STATE_HOME/tend/NAME/state.db`, else
/// `~/.local/state/tend/NAME/state.db` — outside the config checkout. An environment has its
/// own: `…/tend/NAME/env/ENV/state.db`.
pub fn default_state_path(project: &str, environment: Option<&str>) -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/var/lib"));
    let project = base.join("tend").join(project);
    match environment {
        Some(env) => project.join("env").join(env).join("state.db"),
        None => project.join("state.db"),
    }
}

/// How an ownerless state file with resources (written before tend recorded owners) is named.
const UNRECORDED_OWNER: &str = "a config it does not record (it was written before tend recorded owners)";

impl Workspace {
    /// Load config and configure providers. `state` overrides the state path (`--state`).
    pub fn load(registry: Registry, opts: &LoadOptions, state: Option<PathBuf>) -> Result<Self, WorkspaceError> {
        let config = config::load(opts, &registry).map_err(WorkspaceError::Config)?;
        let providers = registry.configure(&config).map_err(|(name, source)| WorkspaceError::Provider { name, source })?;
        let state_explicit = state.is_some() || config.project.state.is_some();
        let state_path =
            state.or_else(|| config.project.state.clone()).unwrap_or_else(|| default_state_path(&config.project.name, config.environment.as_deref()));
        let source = opts.origin.clone().unwrap_or_else(|| format!("dir:{}", config.root.display()));
        let owner = format!("project={} environment={} source={source}", config.project.name, config.environment.as_deref().unwrap_or("-"));
        let secrets = std::sync::Arc::new(Secrets::new(config.root.clone(), config.secrets.clone(), opts.identities.clone()));
        Ok(Self { registry, config, providers, state_path, state_explicit, owner, reassign_state: opts.reassign_state, secrets })
    }

    /// Configure every registered provider (for deleting resources of providers the config no
    /// longer uses).
    pub fn configure_all(&mut self) -> Result<(), WorkspaceError> {
        self.providers = self.registry.configure_all(&self.config).map_err(|(name, source)| WorkspaceError::Provider { name, source })?;
        Ok(())
    }

    /// Start every provider's watch of what `state` records (see [`tend_provider::Provider::watch`]);
    /// the guards keep them running. A provider that cannot watch, or fails to, is left out
    /// (its drift is found by periodic plans).
    pub async fn watch(&self, state: &Snapshot, on_drift: &tend_provider::OnDrift) -> Vec<tend_provider::WatchGuard> {
        let mut items: BTreeMap<&str, Vec<tend_provider::WatchItem>> = BTreeMap::new();
        for r in state.records.values().filter(|r| r.status == tend_state::RecordStatus::Ready) {
            items.entry(&r.addr.provider).or_default().push(tend_provider::WatchItem {
                addr: r.addr.clone(),
                recorded: r.attributes.clone(),
                target: r.target.clone(),
            });
        }
        let mut guards = Vec::new();
        for (name, items) in items {
            let Some(provider) = self.providers.get(name) else { continue };
            match provider.watch(tend_provider::WatchRequest { items }, on_drift.clone()).await {
                Ok(Some(g)) => guards.push(g),
                Ok(None) => {}
                Err(e) => tracing::warn!(provider = name, "cannot watch for drift: {e}"),
            }
        }
        guards
    }

    /// Read state without locking or creating anything; empty when there is no state file yet.
    /// State recorded as another config's is refused (see [`Workspace::open_state`]).
    pub async fn read_state(&self) -> Result<Snapshot, StateError> {
        self.check_environment_moved().await?;
        let snapshot = match open_store_read_only(&self.state_path)? {
            Some(store) => store.load().await?,
            None => return Ok(Snapshot::default()),
        };
        self.check_owner(snapshot.owner.as_deref(), !snapshot.records.is_empty())?;
        Ok(snapshot)
    }

    /// Open state for writing (created on first use), recording this config as its owner. State
    /// recorded for another config (another directory or repository, another environment) is
    /// refused unless the state file was chosen explicitly (`--state`, `[project] state`) or
    /// `--reassign-state` is given; then it is taken over, with a warning.
    pub async fn open_state(&self) -> Result<Arc<dyn StateStore>, StateError> {
        self.check_environment_moved().await?;
        let store = open_store(&self.state_path)?;
        let recorded = store.owner().await?;
        if recorded.as_deref() != Some(self.owner.as_str()) {
            // Only ownerless state needs its records counted.
            let has_records = recorded.is_none() && !store.load().await?.records.is_empty();
            self.check_owner(recorded.as_deref(), has_records)?;
            if let Some(recorded) = &recorded {
                tracing::warn!(path = %self.state_path.display(), %recorded, owner = %self.owner, "state recorded for another config is taken over");
            }
            store.set_owner(&self.owner).await?;
        }
        Ok(store)
    }

    /// Refuse state recorded for another config unless it may be taken over (`--state`,
    /// `[project] state`, `--reassign-state`). State written before tend recorded owners that
    /// holds something cannot tell whose it is, so it counts as another config's.
    fn check_owner(&self, recorded: Option<&str>, has_records: bool) -> Result<(), StateError> {
        let recorded = match recorded {
            Some(r) => r,
            None if has_records => UNRECORDED_OWNER,
            None => return Ok(()),
        };
        if recorded == self.owner || self.state_explicit || self.reassign_state {
            return Ok(());
        }
        Err(StateError::Foreign { path: self.state_path.clone(), recorded: recorded.to_string(), current: self.owner.clone() })
    }

    /// With `--env` and the default state path: refuse while the environment's state still lives
    /// in the project's shared file (written before environments were kept apart).
    async fn check_environment_moved(&self) -> Result<(), StateError> {
        let Some(env) = self.config.environment.as_deref() else { return Ok(()) };
        if self.state_explicit || self.state_path.exists() {
            return Ok(());
        }
        let legacy = default_state_path(&self.config.project.name, None);
        let Some(store) = open_store_read_only(&legacy)? else { return Ok(()) };
        // State that records its owner says whose it is; older state may be this environment's.
        let unowned = store.owner().await?.is_none() && !store.load().await?.records.is_empty();
        if unowned {
            return Err(StateError::EnvironmentMoved { environment: env.to_string(), path: self.state_path.clone(), legacy });
        }
        Ok(())
    }

    /// Build the graph against a state snapshot.
    pub async fn graph(&self, state: &Snapshot) -> Result<ResourceGraph, WorkspaceError> {
        graph::build(&self.config, &self.registry, &self.providers, state).await.map_err(WorkspaceError::Config)
    }

    /// What `tend validate` can tell of claims without touching a target: instances whose
    /// claimed fields (host paths) evaluate, without any target's values, to the same thing.
    pub fn check_claims(&self, graph: &ResourceGraph) -> Vec<crate::plan::PlanError> {
        let known = std::collections::HashMap::new();
        let resolver = crate::plan::Resolver { secrets: &self.secrets, instances: &graph.instances, known: &known, final_values: false };
        let mut evaluated = Vec::new();
        for node in graph.graph.node_weights().filter(|n| n.desired) {
            let (Some(res), Some(schema)) = (self.config.resources.get(&node.addr.base()), self.registry.kind(&node.addr.provider, &node.addr.kind)) else {
                continue;
            };
            let exprs: tend_provider::Map<crate::config::Expr> =
                res.exprs().into_iter().filter(|(k, _)| schema.field(k).is_some_and(|f| f.claim.is_some())).collect();
            if exprs.is_empty() {
                continue;
            }
            // A claimed field that needs a secret or fails to evaluate is left to `plan`.
            if let Ok(values) = crate::plan::eval_fields(&resolver, &node.addr, &exprs) {
                evaluated.push((node.target.clone(), node.addr.clone(), values));
            }
        }
        crate::plan::claims::conflicts(&self.config, &self.providers, evaluated.iter().map(|(t, a, v)| (t.as_ref(), a, v)))
    }

    /// Build the graph and plan against a state snapshot.
    pub async fn plan(&mut self, state: &Snapshot) -> Result<Plan, WorkspaceError> {
        self.plan_with(state, &plan::PlanOptions::default()).await
    }

    /// Plan with what the run asks beyond the config: part of it (`--target`, `--limit`),
    /// forced replacements, or everything destroyed (`tend destroy`: planned against a config
    /// that declares nothing, the destroy-all guard lifted because that is what was asked).
    pub async fn plan_with(&mut self, state: &Snapshot, options: &plan::PlanOptions) -> Result<Plan, WorkspaceError> {
        if options.destroy || state.records.keys().any(|a| !self.providers.contains_key(&*a.provider)) {
            self.configure_all()?;
        }
        let emptied;
        let config = if options.destroy {
            let mut c = self.config.clone();
            c.resources.clear();
            c.project.allow_empty = true;
            emptied = c;
            &emptied
        } else {
            &self.config
        };
        let graph = graph::build(config, &self.registry, &self.providers, state).await.map_err(WorkspaceError::Config)?;
        Ok(plan::plan(PlanInput { config, providers: &self.providers, graph: &graph, state, secrets: &self.secrets, options }).await)
    }
}
