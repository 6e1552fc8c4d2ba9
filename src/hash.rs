//! Keyed hashes of evaluated inputs, recorded in state to tell a config change from drift.
//!
//! The hash is an HMAC-SHA256 keyed by the state's own random key, over the canonical JSON of
//! the inputs *including* decrypted secrets: a changed secret changes the hash, and the state
//! holds no plain hash of any secret that could be tested against guesses without the key.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tend_provider::{Attributes, Key, Value};

/// The keyed hash of evaluated config, `hmac-sha256:<hex>`.
pub fn inputs_hash(config: &Attributes, key: &str) -> String {
    keyed(&Value::Map(config.clone()), key)
}

fn keyed(v: &Value, key: &str) -> String {
    let json = zeroize::Zeroizing::new(v.to_json_revealed().to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(json.as_bytes());
    format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
}

/// What state keeps of a sensitive value: its keyed HMAC ([`Value::Fingerprint`]).
pub fn fingerprint(v: &Value, key: &str) -> Value {
    match v {
        Value::Fingerprint(_) | Value::Redacted => v.clone(),
        other => Value::Fingerprint(keyed(other, key)),
    }
}

/// Whether a field's value, whatever a provider turned it into, derives from a secret: its
/// config value holds one, or the provider marked what it recorded sensitive.
fn secret_field(config: &Attributes, attrs: &Attributes, k: &str) -> bool {
    config.get(k).is_some_and(Value::is_sensitive) || attrs.get(k).is_some_and(Value::is_sensitive)
}

/// The attributes to record: every field that derives from a secret (EC2 tags and `user_data`,
/// a file's content, ...) becomes its fingerprint, whatever the provider reported for it.
pub fn protect_record(config: &Attributes, attrs: &mut Attributes, key: &str) {
    let secret: Vec<Key> = attrs.keys().filter(|k| secret_field(config, attrs, k)).cloned().collect();
    for k in secret {
        let v = attrs.get(&k).map(|v| fingerprint(v, key)).unwrap_or_default();
        attrs.insert(k, v);
    }
}

/// The recorded attributes as a provider should see them when planning against `config`: a
/// fingerprint that matches the desired value of its field is that value (so providers compare
/// like with like, and an unchanged secret plans as no change); any other is
/// [`Value::Redacted`] (different from everything).
pub fn reveal_prior(config: Option<&Attributes>, prior: &std::sync::Arc<Attributes>, key: &str) -> std::sync::Arc<Attributes> {
    // Without fingerprints the record is shared as it is, not copied.
    if !prior.values().any(|v| matches!(v, Value::Fingerprint(_))) {
        return prior.clone();
    }
    let revealed = prior
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Fingerprint(fp) => match config.and_then(|c| c.get(k)) {
                    Some(want) if want.is_known() && keyed(want, key) == *fp => want.clone().sensitive(),
                    _ => Value::Redacted,
                },
                other => other.clone(),
            };
            (k.clone(), v)
        })
        .collect();
    std::sync::Arc::new(revealed)
}

/// Mark sensitive, wherever they appear in a plan, the fields whose config holds a secret:
/// what a provider observed of them (an EC2 tag read back from the API) is as secret as what
/// was configured.
pub fn mark_secret_fields(config: &Attributes, attrs: &mut Attributes) {
    for (k, v) in attrs.iter_mut() {
        if config.get(k).is_some_and(Value::is_sensitive) {
            *v = std::mem::take(v).sensitive();
        }
    }
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

    #[test]
    fn secret_fields_are_recorded_as_fingerprints_and_compare_by_them() {
        let config: Attributes = [
            ("user_data".to_string(), Value::from("password=hunter2").sensitive()),
            ("tags".to_string(), Value::Map([("Token".to_string(), Value::from("hunter2").sensitive())].into())),
            ("ami".to_string(), Value::from("ami-1")),
        ]
        .into();
        // What the provider reported: tags read back in plaintext from the API.
        let mut attrs: Attributes = [
            ("user_data".to_string(), Value::from("password=hunter2").sensitive()),
            ("tags".to_string(), Value::Map([("Token".to_string(), Value::from("hunter2"))].into())),
            ("ami".to_string(), Value::from("ami-1")),
        ]
        .into();
        protect_record(&config, &mut attrs, "k");
        let json = serde_json::to_string(&attrs).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(matches!(attrs["user_data"], Value::Fingerprint(_)) && matches!(attrs["tags"], Value::Fingerprint(_)));
        assert_eq!(attrs["ami"], Value::from("ami-1"));
        // Read back from state, the fingerprint survives and matches the same secret only.
        let back: std::sync::Arc<Attributes> = std::sync::Arc::new(serde_json::from_str(&json).unwrap());
        let seen = reveal_prior(Some(&config), &back, "k");
        assert_eq!(seen["user_data"].reveal(), &Value::from("password=hunter2"));
        let changed: Attributes = [("user_data".to_string(), Value::from("password=other").sensitive())].into();
        assert_eq!(reveal_prior(Some(&changed), &back, "k")["user_data"], Value::Redacted);
        assert_eq!(reveal_prior(Some(&config), &back, "other-key")["user_data"], Value::Redacted, "keyed");
    }
}
