//! Keyed hashes of evaluated inputs, recorded in state to tell a config change from drift.
//!
//! The hash is an HMAC-SHA256 keyed by the state's own random key, over the canonical JSON of
//! the inputs *including* decrypted secrets: a changed secret changes the hash, and the state
//! holds no plain hash of any secret that could be tested against guesses without the key.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tend_provider::{Attributes, Value};

/// The keyed hash of evaluated config, `hmac-sha256:<hex>`.
pub fn inputs_hash(config: &Attributes, key: &str) -> String {
    let json = zeroize::Zeroizing::new(Value::Map(config.clone()).to_json_revealed().to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(json.as_bytes());
    format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_on_key_and_secret_content_but_shows_neither() {
        let with = |s: &str| -> Attributes { [("content".to_string(), Value::from(s).sensitive())].into() };
        let a = inputs_hash(&with("one"), "k1");
        assert_ne!(a, inputs_hash(&with("two"), "k1"), "a changed secret changes the hash");
        assert_ne!(a, inputs_hash(&with("one"), "k2"), "the hash is keyed");
        assert_eq!(a, inputs_hash(&with("one"), "k1"));
    }
}
