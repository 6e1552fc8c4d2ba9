//! `tend-host`: hosts and what is on them.
//!
//! Kinds: `host.local` (the machine tend runs on; `host.ssh` arrives with the SSH transport),
//! and the resources placed on hosts: `host.file`, `host.directory`, `host.command`.
//!
//! Data flow: the engine expands each on-host resource into one instance per selected host
//! (`on = ["web"]` or `on = { role = "web" }`), keyed by host name, with the host resource as its
//! target. `read` groups a batch by host and observes every managed path of a host with one
//! [`Transport::stat_many`] call; `plan` compares hashes and attributes; `apply` writes files
//! atomically (temp file + rename) and runs commands with `sh -c`.
//!
//! Resource code only talks to the [`Transport`] trait, so the SSH transport drops in beside
//! [`LocalTransport`]. Start with [`HostProvider`].

mod expand;
mod generation;
mod provider;
mod resources;
mod transport;
mod users;

pub use provider::{HostFactory, HostProvider};
pub use transport::{ExecOutput, FileAttrs, FileType, LocalTransport, PathStat, StatRequest, Transport, TransportError};
