//! Hashes of evaluated inputs, recorded in state to tell a config change from drift.

use sha2::{Digest, Sha256};
use tend_provider::{Attributes, Value};

/// A stable hash of evaluated config (maps are ordered, so the JSON is canonical).
pub fn inputs_hash(config: &Attributes) -> String {
    let json = Value::Map(config.clone()).to_json().to_string();
    format!("sha256:{}", hex::encode(Sha256::digest(json.as_bytes())))
}
