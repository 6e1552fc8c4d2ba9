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
    pub inputs_hash: InputsHash,
    /// Attributes after apply (outputs); shared with the plan's view of prior state.
    pub attributes: std::sync::Arc<Attributes>,
    /// The target the instance lives on (e.g. its host), with the values used at apply.
    pub target: Option<ResourceAddr>,
    /// Addresses it depended on, so deleting it later is still ordered.
    #[serde(deserialize_with = "exact_vec")]
    pub dependencies: Vec<ResourceAddr>,
    /// `lifecycle.prevent_destroy` at apply.
    pub prevent_destroy: bool,
    /// When it was last applied (RFC 3339, to the second: stored inline, without an allocation
    /// of its own).
    pub updated_at: compact_str::CompactString,
}

/// A record's hash of its evaluated inputs, written `hmac-sha256:<hex>`. A state holds one per
/// record, so the usual form is kept as its 32 bytes rather than as 76 bytes of text; anything
/// else (empty: to be converged again) is kept as written. Reads and writes as the text.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum InputsHash {
    /// None recorded (imported, or rolled back): the next plan sees a change.
    #[default]
    Empty,
    /// `hmac-sha256:` and 64 lowercase hex digits.
    HmacSha256([u8; 32]),
    /// Any other text, as written.
    Other(Box<str>),
}

const HMAC_SHA256: &str = "hmac-sha256:";

impl From<&str> for InputsHash {
    fn from(s: &str) -> Self {
        if s.is_empty() {
            return Self::Empty;
        }
        let digest = s.strip_prefix(HMAC_SHA256).filter(|h| h.len() == 64);
        let mut bytes = [0u8; 32];
        match digest {
            Some(h) if hex_into(h, &mut bytes) => Self::HmacSha256(bytes),
            _ => Self::Other(s.into()),
        }
    }
}

/// Lowercase hex digits into bytes; false if they are not.
fn hex_into(h: &str, out: &mut [u8; 32]) -> bool {
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    for (o, pair) in out.iter_mut().zip(h.as_bytes().chunks_exact(2)) {
        let (Some(hi), Some(lo)) = (digit(pair[0]), digit(pair[1])) else { return false };
        *o = hi << 4 | lo;
    }
    true
}

impl From<String> for InputsHash {
    fn from(s: String) -> Self {
        Self::from(s.as_str())
    }
}

impl PartialEq<String> for InputsHash {
    fn eq(&self, other: &String) -> bool {
        *self == Self::from(other.as_str())
    }
}

impl fmt::Display for InputsHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => Ok(()),
            Self::HmacSha256(bytes) => {
                f.write_str(HMAC_SHA256)?;
                bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
            Self::Other(s) => f.write_str(s),
        }
    }
}

impl fmt::Debug for InputsHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

impl Serialize for InputsHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for InputsHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = InputsHash;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an inputs hash")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<InputsHash, E> {
                Ok(InputsHash::from(s))
            }
        }
        d.deserialize_str(Text)
    }
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

#[cfg(test)]
mod tests {
    use super::InputsHash;

    #[test]
    fn an_inputs_hash_reads_and_writes_as_the_text_it_was_whatever_its_form() {
        let hmac = format!("hmac-sha256:{}", "0123456789abcdef".repeat(4));
        for text in [hmac.as_str(), "", "h", "hmac-sha256:0123", &hmac.to_uppercase(), &format!("{hmac}0")] {
            let json = serde_json::to_string(text).unwrap();
            let read: InputsHash = serde_json::from_str(&json).unwrap();
            assert_eq!(serde_json::to_string(&read).unwrap(), json, "{text:?} round-trips");
            assert_eq!(read.to_string(), text);
            assert!(read == text.to_string(), "{text:?} equals its text");
        }
        assert!(matches!(InputsHash::from(hmac.as_str()), InputsHash::HmacSha256(b) if b[0] == 0x01 && b[31] == 0xef), "kept as its bytes");
        assert!(matches!(InputsHash::from(""), InputsHash::Empty));
        assert_ne!(InputsHash::from(hmac.as_str()), InputsHash::from(hmac.replace("ef", "ee")), "a different hash differs");
    }
}
