//! State store errors.

use std::path::PathBuf;

use crate::LockInfo;

/// An error from the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another run holds the apply lock.
    #[error("state is locked by {holder}")]
    Locked {
        /// Who holds it.
        holder: LockInfo,
        /// The state file.
        path: PathBuf,
    },
    /// The state belongs to another config (another directory, repository or environment).
    #[error("state at {} belongs to {recorded}, not to {current}", path.display())]
    Foreign {
        /// The state file.
        path: PathBuf,
        /// What it records it belongs to.
        recorded: String,
        /// What this run is.
        current: String,
    },
    /// An environment's state still lives in the project's shared state file.
    #[error("state for environment `{environment}` is now kept at {}, apart from the project's {}", path.display(), legacy.display())]
    EnvironmentMoved {
        /// The environment.
        environment: String,
        /// Where it is kept now.
        path: PathBuf,
        /// The project's state file, written before environments were kept apart.
        legacy: PathBuf,
    },
    /// The file exists but is not a readable tend state database.
    #[error("state file {} is corrupt or not a tend state file", path.display())]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The file cannot be opened (permissions, missing directory).
    #[error("cannot open state file {}", path.display())]
    Open {
        /// The state file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A read or write failed.
    #[error("state database {} failed", path.display())]
    Database {
        /// The state file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// No lock to release, or it is held by someone else.
    #[error("state at {} is not locked", path.display())]
    NotLocked {
        /// The state file.
        path: PathBuf,
    },
    /// No record has that address.
    #[error("no resource `{addr}` in state")]
    NoSuchRecord {
        /// The address asked for.
        addr: String,
    },
}

impl StateError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Locked { holder, .. } => Some(format!(
                "wait for that run to finish; a lock left by a dead run on this host is taken over by the next run, but one held on another host ({}) cannot be checked from here: if you are sure that run is gone, run `tend state unlock --force` (`tend history` shows the run as interrupted afterwards)",
                holder.host
            )),
            Self::Foreign { .. } => Some(
                "nothing was planned against it: planning this config against another one's state would propose to destroy what that one manages. Use -C for the config this state belongs to, or --state FILE for a state of this config's own; if this config really takes it over (its directory moved, its repository changed), pass --reassign-state"
                    .into(),
            ),
            Self::EnvironmentMoved { path, legacy, .. } => Some(format!(
                "each environment has its own state now, so that --env prod never plans against dev's. If {} holds this environment's resources, move it: mkdir -p {} && mv {} {}; or pass --state {} to keep using it",
                legacy.display(),
                path.parent().map(|p| p.display().to_string()).unwrap_or_default(),
                legacy.display(),
                path.display(),
                legacy.display()
            )),
            Self::Corrupt { path, .. } => {
                Some(format!("tend will not overwrite it; restore {} from a backup, or move it aside and run with a new state file", path.display()))
            }
            Self::Open { .. } => Some("check the path and its permissions, or choose another with `--state`".into()),
            Self::NoSuchRecord { .. } => Some("`tend state list` shows the addresses in state".into()),
            _ => None,
        }
    }
}
