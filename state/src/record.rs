//! Records, snapshots, history entries and lock holders.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use tend_provider::{Attributes, ResourceAddr};

/// Whether a recorded object can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordStatus {
    /// Applied and healthy.
    Ready,
    /// Partly created or failed its health check: the next plan replaces it.
    Tainted,
}

/// What tend applied for one resource instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Instance address.
    pub addr: ResourceAddr,
    /// Remote id, if any.
    pub remote_id: Option<String>,
    /// Ready or tainted.
    pub status: RecordStatus,
    /// Hash of the evaluated inputs at apply (a keyed HMAC for secret inputs), used to tell a
    /// config change from drift.
    pub inputs_hash: String,
    /// Attributes after apply (outputs); shared with the plan's view of prior state.
    pub attributes: std::sync::Arc<Attributes>,
    /// The target the instance lives on (e.g. its host), with the values used at apply.
    pub target: Option<ResourceAddr>,
    /// Addresses it depended on, so deleting it later is still ordered.
    #[serde(deserialize_with = "exact_vec")]
    pub dependencies: Vec<ResourceAddr>,
    /// `lifecycle.prevent_destroy` at apply.
    pub prevent_destroy: bool,
    /// When it was last applied.
    pub updated_at: String,
}

/// A list read as long as it is: a state holds one per record, and a list grown while reading
/// keeps room for four.
fn exact_vec<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    let mut v = Vec::<T>::deserialize(d)?;
    v.shrink_to_fit();
    Ok(v)
}

/// All records plus the identity of this state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Random id of this state, fixed at creation.
    pub lineage: String,
    /// Bumped on every write.
    pub serial: u64,
    /// Hex key of the keyed HMAC over resource inputs (so a changed secret is detected without
    /// keeping a plain hash of it). Empty before the state file exists.
    pub hmac_key: String,
    /// Records by address.
    pub records: BTreeMap<ResourceAddr, Record>,
    /// What this state belongs to (`project=… environment=… source=…`), recorded by the first
    /// run that writes it; `None` for state written before tend recorded it.
    pub owner: Option<String>,
}

/// One row of `tend history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Sequence number.
    pub id: i64,
    /// The config revision applied.
    pub revision: String,
    /// Start time.
    pub started_at: String,
    /// End time, once finished.
    pub finished_at: Option<String>,
    /// `user@host`.
    pub who: String,
    /// e.g. `2 added, 1 changed, 0 replaced, 0 destroyed`.
    pub summary: String,
    /// `running`, `success`, `failed` or `interrupted`.
    pub result: String,
    /// What failed, each with its error class.
    #[serde(default)]
    pub errors: Vec<HistoryError>,
    /// What happened to each resource (empty for runs recorded before tend kept it).
    #[serde(default)]
    pub outcomes: Vec<HistoryOutcome>,
}

/// What one run did to one resource, as history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryOutcome {
    /// The resource instance.
    pub address: String,
    /// What was to be done: `create`, `update`, `replace`, `delete`, or an operator action
    /// (`rollback`).
    pub action: String,
    /// `applied`, `failed` or `skipped`.
    pub outcome: String,
    /// What happened, in the provider's words, or why it failed or was skipped (secrets
    /// redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One failure of an apply, as history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryError {
    /// The resource.
    pub address: String,
    /// The error class (`transient`, `waiting`, `conflict`, `unauthorized`, `not_found`,
    /// `terminal`).
    pub kind: String,
    /// What went wrong (secrets redacted).
    pub message: String,
}

/// Who holds the apply lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// When it was taken.
    pub started_at: String,
    /// What the holder is doing (`apply`, `agent`).
    pub operation: String,
}

impl fmt::Display for LockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` (pid {} on {}, since {})", self.operation, self.pid, self.host, self.started_at)
    }
}
