//! [`Value`]: config values and observed attributes, with an explicit "unknown" for values that
//! only exist after apply.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A config value or an observed attribute.
///
/// Maps are ordered by key ([`crate::Map`]) so that everything derived from values (plans, hashes, JSON) is
/// deterministic. [`Value::Unknown`] marks a value that is only known after apply (an instance's
/// IP before it exists); it never reaches a provider's `apply` and never reaches state.
///
/// [`Value::Sensitive`] holds a decrypted secret (or anything derived from one) in memory. Its
/// `Debug`, `Display` and JSON forms never show the content; what is written to disk reads back
/// as [`Value::Redacted`]. Accessors (`as_str`, ...) and equality look through it, so providers
/// can use the plaintext and diffs still compare.
#[derive(Debug, Clone, Default)]
pub enum Value {
    /// Absent / null.
    #[default]
    Null,
    /// Boolean.
    Bool(bool),
    /// Integer.
    Int(i64),
    /// Float.
    Float(f64),
    /// String: up to 24 bytes stored inline. Built from a `String`, it keeps that buffer (see
    /// `From<String>`).
    String(compact_str::CompactString),
    /// List.
    List(Vec<Value>),
    /// Table.
    Map(crate::Map<Value>),
    /// Known only after apply.
    Unknown,
    /// A secret, or a value derived from one: usable, never shown or saved.
    Sensitive(Sensitive),
    /// A sensitive value read back from a plan file or state: the content is not available.
    Redacted,
    /// What state keeps of a sensitive value: a keyed HMAC of its plaintext
    /// (`hmac-sha256:<hex>`, keyed with the state's own key), never the plaintext. Equal only to
    /// the same fingerprint; shown as `(sensitive)`. The engine makes and checks them.
    Fingerprint(String),
}

/// The plaintext of a [`Value::Sensitive`]: redacted in `Debug`, zeroized on drop. Its strings
/// are kept in heap buffers of their own, never inline (see [`heap_copy`]).
#[derive(PartialEq)]
pub struct Sensitive(Box<Value>);

impl Clone for Sensitive {
    fn clone(&self) -> Self {
        Self(Box::new(heap_copy(&self.0)))
    }
}

/// A copy of `v` whose strings are copied from buffer to buffer: a short string is not
/// stored inline, so a secret's text is not carried through the stack on its way.
fn heap_copy(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(compact_str::CompactString::from_string_buffer(s.as_str().to_owned())),
        Value::List(l) => Value::List(l.iter().map(heap_copy).collect()),
        Value::Map(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), heap_copy(v))).collect()),
        other => other.clone(),
    }
}

impl Sensitive {
    /// The plaintext value.
    pub fn reveal(&self) -> &Value {
        &self.0
    }
}

impl std::fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sensitive(..)")
    }
}

fn wipe(v: &mut Value) {
    use zeroize::Zeroize;
    match v {
        Value::String(s) => s.zeroize(),
        Value::List(l) => l.iter_mut().for_each(wipe),
        Value::Map(m) => {
            for v in m.values_mut() {
                wipe(v);
            }
        }
        Value::Int(i) => i.zeroize(),
        _ => {}
    }
}

impl Drop for Sensitive {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl PartialEq for Value {
    /// Structural equality that looks through [`Value::Sensitive`]; [`Value::Redacted`] only
    /// equals itself.
    fn eq(&self, other: &Self) -> bool {
        match (self.reveal(), other.reveal()) {
            (Self::Null, Self::Null) | (Self::Unknown, Self::Unknown) | (Self::Redacted, Self::Redacted) => true,
            (Self::Bool(a), Self::Bool(b)) => a == b,
            (Self::Int(a), Self::Int(b)) => a == b,
            (Self::Float(a), Self::Float(b)) => a == b,
            (Self::String(a), Self::String(b)) => a == b,
            (Self::Fingerprint(a), Self::Fingerprint(b)) => a == b,
            (Self::List(a), Self::List(b)) => a == b,
            (Self::Map(a), Self::Map(b)) => a == b,
            _ => false,
        }
    }
}

impl Value {
    /// Mark as sensitive (idempotent).
    #[must_use]
    pub fn sensitive(self) -> Self {
        match self {
            Self::Sensitive(_) | Self::Redacted | Self::Unknown | Self::Fingerprint(_) => self,
            mut other => {
                // Its strings move to buffers of their own, and what held them is wiped.
                let secret = Sensitive(Box::new(heap_copy(&other)));
                wipe(&mut other);
                Self::Sensitive(secret)
            }
        }
    }

    /// The plaintext behind [`Value::Sensitive`]; any other value as it is.
    pub fn reveal(&self) -> &Value {
        match self {
            Self::Sensitive(s) => s.reveal(),
            other => other,
        }
    }

    /// Whether this value or anything inside it is sensitive or redacted.
    pub fn is_sensitive(&self) -> bool {
        match self {
            Self::Sensitive(_) | Self::Redacted | Self::Fingerprint(_) => true,
            Self::List(l) => l.iter().any(Value::is_sensitive),
            Self::Map(m) => m.values().any(Value::is_sensitive),
            _ => false,
        }
    }

    /// The JSON of the plaintext, for keyed hashing only (never for output).
    pub fn to_json_revealed(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self.reveal() {
            Self::List(l) => J::Array(l.iter().map(Value::to_json_revealed).collect()),
            Self::Map(m) => J::Object(m.iter().map(|(k, v)| (k.to_string(), v.to_json_revealed())).collect()),
            other => other.to_json(),
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self.reveal() {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self.reveal() {
            Self::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self.reveal() {
            Self::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The list, if this is one.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self.reveal() {
            Self::List(l) => Some(l),
            _ => None,
        }
    }

    /// The table, if this is one.
    pub fn as_map(&self) -> Option<&crate::Map<Value>> {
        match self.reveal() {
            Self::Map(m) => Some(m),
            _ => None,
        }
    }

    /// True unless this value or anything inside it is [`Value::Unknown`].
    pub fn is_known(&self) -> bool {
        match self.reveal() {
            Self::Unknown => false,
            Self::List(l) => l.iter().all(Value::is_known),
            Self::Map(m) => m.values().all(Value::is_known),
            _ => true,
        }
    }

    /// Follow a path of table keys / list indices. Anything found inside a sensitive value is
    /// sensitive.
    pub fn get_path(&self, path: &[String]) -> Option<Value> {
        let mut cur = self.reveal();
        for seg in path {
            cur = match cur {
                Self::Map(m) => m.get(seg)?,
                Self::List(l) => l.get(seg.parse::<usize>().ok()?)?,
                Self::Unknown => return Some(Value::Unknown),
                Self::Redacted => return Some(Value::Redacted),
                _ => return None,
            }
            .reveal();
        }
        Some(if self.is_sensitive() { cur.clone().sensitive() } else { cur.clone() })
    }

    /// A short type name for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "boolean",
            Self::Int(_) => "integer",
            Self::Float(_) => "float",
            Self::String(_) => "string",
            Self::List(_) => "list",
            Self::Map(_) => "table",
            Self::Unknown => "unknown",
            Self::Sensitive(s) => s.reveal().type_name(),
            Self::Redacted | Self::Fingerprint(_) => "sensitive value",
        }
    }

    /// The text a value takes when interpolated into a string template.
    pub fn to_template_string(&self) -> String {
        match self {
            Self::String(s) => s.to_string(),
            Self::Null => String::new(),
            Self::Bool(b) => b.to_string(),
            Self::Int(i) => i.to_string(),
            Self::Float(f) => f.to_string(),
            Self::Unknown => "(known after apply)".into(),
            Self::Sensitive(_) | Self::Redacted | Self::Fingerprint(_) => "(sensitive)".into(),
            other => other.to_json().to_string(),
        }
    }

    /// Convert to JSON; unknown becomes `{"$unknown": true}` (only in saved plans), sensitive and
    /// redacted values `{"$sensitive": true}` — never their content; a fingerprint
    /// `{"$sensitive": "hmac-sha256:<hex>"}`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Self::Null => J::Null,
            Self::Bool(b) => J::Bool(*b),
            Self::Int(i) => J::from(*i),
            Self::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Self::String(s) => J::String(s.to_string()),
            Self::List(l) => J::Array(l.iter().map(Value::to_json).collect()),
            Self::Map(m) => J::Object(m.iter().map(|(k, v)| (k.to_string(), v.to_json())).collect()),
            Self::Unknown => serde_json::json!({ "$unknown": true }),
            Self::Sensitive(_) | Self::Redacted => serde_json::json!({ "$sensitive": true }),
            Self::Fingerprint(f) => serde_json::json!({ "$sensitive": f }),
        }
    }

    /// Convert from JSON (inverse of [`Value::to_json`]).
    pub fn from_json(j: &serde_json::Value) -> Self {
        use serde_json::Value as J;
        match j {
            J::Null => Self::Null,
            J::Bool(b) => Self::Bool(*b),
            J::Number(n) => n.as_i64().map_or_else(|| Self::Float(n.as_f64().unwrap_or(0.0)), Self::Int),
            J::String(s) => Self::String(s.as_str().into()),
            J::Array(a) => Self::List(a.iter().map(Value::from_json).collect()),
            J::Object(o) if o.len() == 1 && o.get("$unknown") == Some(&J::Bool(true)) => Self::Unknown,
            J::Object(o) if o.len() == 1 && o.get("$sensitive") == Some(&J::Bool(true)) => Self::Redacted,
            J::Object(o) if o.len() == 1 && o.get("$sensitive").and_then(J::as_str).is_some_and(|f| f.starts_with("hmac-sha256:")) => {
                Self::Fingerprint(o["$sensitive"].as_str().unwrap_or_default().to_string())
            }
            J::Object(o) => Self::Map(o.iter().map(|(k, v)| (k.clone(), Value::from_json(v))).collect()),
        }
    }
}

/// A copy of `s`: inline when it is short.
impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Self::String(s.into())
    }
}

/// `s` itself, its buffer kept even when it is short: the text may be a secret's, and copying it
/// inline would free that buffer unwiped.
impl From<String> for Value {
    fn from(s: String) -> Self {
        Self::String(compact_str::CompactString::from_string_buffer(s))
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Self::Int(i)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown => f.write_str("(known after apply)"),
            Self::Sensitive(_) | Self::Redacted | Self::Fingerprint(_) => f.write_str("(sensitive)"),
            other => write!(f, "{}", other.to_json()),
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(|j| Value::from_json(&j))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_strings_are_inline_but_a_secrets_are_kept_in_buffers_of_their_own() {
        let heap = |v: &Value| match v.reveal() {
            Value::String(s) => s.is_heap_allocated(),
            other => panic!("not a string: {other:?}"),
        };
        assert!(!heap(&Value::from("0644")), "a short copied string is inline");
        assert!(heap(&Value::from(String::from("0644"))), "a String keeps its buffer");
        let secret = Value::from("hunter2").sensitive();
        assert!(heap(&secret), "made sensitive, a short string moves to a buffer");
        assert!(heap(&secret.clone()), "and its copies too");
        let nested = Value::List(vec![Value::from("pw")]).sensitive();
        let Value::Sensitive(inner) = &nested else { panic!("sensitive") };
        assert!(matches!(inner.reveal(), Value::List(l) if heap(&l[0])), "inside lists too");
        assert_eq!(secret, Value::from("hunter2"), "the same content");
    }

    #[test]
    fn sensitive_values_compare_by_content_and_never_show_it() {
        let s = Value::from("hunter2").sensitive();
        assert_eq!(s, Value::from("hunter2"));
        assert_eq!(s.as_str(), Some("hunter2"));
        for shown in [format!("{s}"), format!("{s:?}"), s.to_json().to_string(), s.to_template_string()] {
            assert!(!shown.contains("hunter2"), "{shown}");
        }
        let read_back = Value::from_json(&s.to_json());
        assert_eq!(read_back, Value::Redacted);
        let doc = Value::from_json(&serde_json::json!({"db": {"password": "p"}})).sensitive();
        let inner = doc.get_path(&["db".into(), "password".into()]).unwrap();
        assert!(inner.is_sensitive());
        assert_eq!(inner.as_str(), Some("p"));
    }

    #[test]
    fn json_round_trip_keeps_unknown() {
        let mut m = crate::Map::new();
        m.insert("ip".into(), Value::Unknown);
        m.insert("n".into(), Value::Int(3));
        m.insert("l".into(), Value::List(vec![Value::from("a"), Value::Bool(true)]));
        let v = Value::Map(m);
        assert!(!v.is_known());
        assert_eq!(Value::from_json(&v.to_json()), v);
    }

    #[test]
    fn get_path_walks_maps_and_lists() {
        let v = Value::from_json(&serde_json::json!({"a": {"b": [10, 20]}}));
        let p = |s: &[&str]| s.iter().map(|x| (*x).to_string()).collect::<Vec<_>>();
        assert_eq!(v.get_path(&p(&["a", "b", "1"])), Some(Value::Int(20)));
        assert_eq!(v.get_path(&p(&["a", "c"])), None);
    }
}
