//! [`Value`]: config values and observed attributes, with an explicit "unknown" for values that
//! only exist after apply.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A config value or an observed attribute.
///
/// Maps are `BTreeMap`s so that everything derived from values (plans, hashes, JSON) is
/// deterministic. [`Value::Unknown`] marks a value that is only known after apply (an instance's
/// IP before it exists); it never reaches a provider's `apply` and never reaches state.
#[derive(Debug, Clone, PartialEq, Default)]
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
    /// String.
    String(String),
    /// List.
    List(Vec<Value>),
    /// Table.
    Map(BTreeMap<String, Value>),
    /// Known only after apply.
    Unknown,
}

impl Value {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The list, if this is one.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Self::List(l) => Some(l),
            _ => None,
        }
    }

    /// The table, if this is one.
    pub fn as_map(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Self::Map(m) => Some(m),
            _ => None,
        }
    }

    /// True unless this value or anything inside it is [`Value::Unknown`].
    pub fn is_known(&self) -> bool {
        match self {
            Self::Unknown => false,
            Self::List(l) => l.iter().all(Value::is_known),
            Self::Map(m) => m.values().all(Value::is_known),
            _ => true,
        }
    }

    /// Follow a path of table keys / list indices.
    pub fn get_path(&self, path: &[String]) -> Option<&Value> {
        let mut cur = self;
        for seg in path {
            cur = match cur {
                Self::Map(m) => m.get(seg)?,
                Self::List(l) => l.get(seg.parse::<usize>().ok()?)?,
                Self::Unknown => return Some(&Value::Unknown),
                _ => return None,
            };
        }
        Some(cur)
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
        }
    }

    /// The text a value takes when interpolated into a string template.
    pub fn to_template_string(&self) -> String {
        match self {
            Self::String(s) => s.clone(),
            Self::Null => String::new(),
            Self::Bool(b) => b.to_string(),
            Self::Int(i) => i.to_string(),
            Self::Float(f) => f.to_string(),
            Self::Unknown => "(known after apply)".into(),
            other => other.to_json().to_string(),
        }
    }

    /// Convert to JSON; unknown becomes `{"$unknown": true}` (only in saved plans).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Self::Null => J::Null,
            Self::Bool(b) => J::Bool(*b),
            Self::Int(i) => J::from(*i),
            Self::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Self::String(s) => J::String(s.clone()),
            Self::List(l) => J::Array(l.iter().map(Value::to_json).collect()),
            Self::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
            Self::Unknown => serde_json::json!({ "$unknown": true }),
        }
    }

    /// Convert from JSON (inverse of [`Value::to_json`]).
    pub fn from_json(j: &serde_json::Value) -> Self {
        use serde_json::Value as J;
        match j {
            J::Null => Self::Null,
            J::Bool(b) => Self::Bool(*b),
            J::Number(n) => n.as_i64().map_or_else(|| Self::Float(n.as_f64().unwrap_or(0.0)), Self::Int),
            J::String(s) => Self::String(s.clone()),
            J::Array(a) => Self::List(a.iter().map(Value::from_json).collect()),
            J::Object(o) if o.len() == 1 && o.get("$unknown") == Some(&J::Bool(true)) => Self::Unknown,
            J::Object(o) => Self::Map(o.iter().map(|(k, v)| (k.clone(), Value::from_json(v))).collect()),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Self::String(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Self::String(s)
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
    fn json_round_trip_keeps_unknown() {
        let mut m = BTreeMap::new();
        m.insert("ip".to_string(), Value::Unknown);
        m.insert("n".to_string(), Value::Int(3));
        m.insert("l".to_string(), Value::List(vec![Value::from("a"), Value::Bool(true)]));
        let v = Value::Map(m);
        assert!(!v.is_known());
        assert_eq!(Value::from_json(&v.to_json()), v);
    }

    #[test]
    fn get_path_walks_maps_and_lists() {
        let v = Value::from_json(&serde_json::json!({"a": {"b": [10, 20]}}));
        let p = |s: &[&str]| s.iter().map(|x| (*x).to_string()).collect::<Vec<_>>();
        assert_eq!(v.get_path(&p(&["a", "b", "1"])), Some(&Value::Int(20)));
        assert_eq!(v.get_path(&p(&["a", "c"])), None);
    }
}
