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
            Self::Corrupt { path, .. } => {
                Some(format!("tend will not overwrite it; restore {} from a backup, or move it aside and run with a new state file", path.display()))
            }
            Self::Open { .. } => Some("check the path and its permissions, or choose another with `--state`".into()),
            Self::NoSuchRecord { .. } => Some("`tend state list` shows the addresses in state".into()),
            _ => None,
        }
    }
}
