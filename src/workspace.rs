//! A loaded workspace: config, configured providers and the state location — what every
//! command starts from.

use std::path::{Path, PathBuf};

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
    /// Declared secrets, decrypted on first use.
    pub secrets: std::sync::Arc<Secrets>,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace").field("root", &self.config.root).field("state_path", &self.state_path).finish_non_exhaustive()
    }
}

/// The default state file of a project: `$XDG_STATE_HOME/tend/NAME/state.db`, else
/// `~/.local/state/tend/NAME/state.db` — outside the config checkout.
pub fn default_state_path(project: &str) -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/var/lib"));
    base.join("tend").join(project).join("state.db")
}

impl Workspace {
    /// Load config and configure providers. `state` overrides the state path (`--state`).
    pub fn load(registry: Registry, opts: &LoadOptions, state: Option<PathBuf>) -> Result<Self, WorkspaceError> {
        let config = config::load(opts, &registry).map_err(WorkspaceError::Config)?;
        let providers = registry.configure(&config).map_err(|(name, source)| WorkspaceError::Provider { name, source })?;
        let state_path = state.or_else(|| config.project.state.clone()).unwrap_or_else(|| default_state_path(&config.project.name));
        let secrets = std::sync::Arc::new(Secrets::new(config.root.clone(), config.secrets.clone(), opts.identities.clone()));
        Ok(Self { registry, config, providers, state_path, secrets })
    }

    /// Configure every registered provider (for deleting resources of providers the config no
    /// longer uses).
    pub fn configure_all(&mut self) -> Result<(), WorkspaceError> {
        self.providers = self.registry.configure_all(&self.config).map_err(|(name, source)| WorkspaceError::Provider { name, source })?;
        Ok(())
    }

    /// Read state without locking or creating anything; empty when there is no state file yet.
    pub async fn read_state(&self) -> Result<Snapshot, StateError> {
        match SqliteStore::open_read_only(&self.state_path)? {
            Some(store) => store.load().await,
            None => Ok(Snapshot::default()),
        }
    }

    /// Open state for writing (created on first use).
    pub fn open_state(&self) -> Result<SqliteStore, StateError> {
        SqliteStore::open(&self.state_path)
    }

    /// Build the graph against a state snapshot.
    pub fn graph(&self, state: &Snapshot) -> Result<ResourceGraph, WorkspaceError> {
        graph::build(&self.config, &self.registry, &self.providers, state).map_err(WorkspaceError::Config)
    }

    /// Build the graph and plan against a state snapshot.
    pub async fn plan(&mut self, state: &Snapshot) -> Result<Plan, WorkspaceError> {
        if state.records.keys().any(|a| !self.providers.contains_key(&*a.provider)) {
            self.configure_all()?;
        }
        let graph = self.graph(state)?;
        Ok(plan::plan(PlanInput { config: &self.config, providers: &self.providers, graph: &graph, state, secrets: &self.secrets }).await)
    }
}
