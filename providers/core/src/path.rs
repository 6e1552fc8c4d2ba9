//! Paths into nested attributes (`spec.template.spec.containers[name=api].image`) and the
//! differences between two sets of attributes, leaf by leaf.

use std::fmt;

use crate::{Attributes, Value};

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Segment {
    /// A key of a table.
    Field(String),
    /// An element of a list, by position.
    Index(usize),
    /// An element of a list of tables, by the value of its identifying key (`[name=api]`).
    Keyed {
        /// The identifying key (`name`).
        key: String,
        /// Its value.
        value: String,
    },
}

/// Where a value sits inside a resource's attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldPath(pub Vec<Segment>);

impl FieldPath {
    /// The path of a top-level field.
    pub fn field(name: &str) -> Self {
        Self(vec![Segment::Field(name.to_string())])
    }

    /// This path, one step deeper.
    #[must_use]
    pub fn join(&self, s: Segment) -> Self {
        let mut v = self.0.clone();
        v.push(s);
        Self(v)
    }

    /// Whether `self` is `other` or lies inside it.
    pub fn starts_with(&self, other: &Self) -> bool {
        self.0.starts_with(&other.0)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Segment::Field(name) if i == 0 => f.write_str(name)?,
                Segment::Field(name) => write!(f, ".{name}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
                Segment::Keyed { key, value } => write!(f, "[{key}={value}]")?,
            }
        }
        Ok(())
    }
}

/// Why a path does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a field path like spec.containers[name=api].image or ports[0]")]
pub struct PathError(pub String);

impl std::str::FromStr for FieldPath {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PathError(s.to_string());
        let mut out = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').ok_or_else(bad)?;
                let inner = &r[..end];
                out.push(match inner.split_once('=') {
                    Some((k, v)) if !k.is_empty() => Segment::Keyed { key: k.to_string(), value: v.to_string() },
                    _ => Segment::Index(inner.parse().map_err(|_| bad())?),
                });
                rest = &r[end + 1..];
            } else {
                let r = if out.is_empty() { rest } else { rest.strip_prefix('.').ok_or_else(bad)? };
                let end = r.find(['.', '[']).unwrap_or(r.len());
                if end == 0 {
                    return Err(bad());
                }
                out.push(Segment::Field(r[..end].to_string()));
                rest = &r[end..];
            }
        }
        if out.is_empty() {
            return Err(bad());
        }
        Ok(Self(out))
    }
}

/// One leaf that differs: absent before (added), absent after (removed), or changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// Where.
    pub path: FieldPath,
    /// The value before, if there was one.
    pub before: Option<Value>,
    /// The value after, if there is one.
    pub after: Option<Value>,
}

/// The key that identifies the elements of a list of tables, if every element has it: as
/// Kubernetes merges containers, ports and volumes by `name`.
pub fn identity_key(a: &[Value], b: &[Value]) -> Option<&'static str> {
    const KEYS: [&str; 3] = ["name", "key", "id"];
    KEYS.into_iter().find(|k| a.iter().chain(b).all(|v| v.as_map().and_then(|m| m.get(k)).and_then(Value::as_str).is_some()) && !(a.is_empty() && b.is_empty()))
}

/// The elements of two versions of a list, paired as [`diff`] compares them and plans show
/// them: by the identifying key when the elements have one (see [`identity_key`]), in the order
/// they first appear, else by position.
pub fn pair_elements<'a>(before: &'a [Value], after: &'a [Value]) -> Vec<(Segment, Option<&'a Value>, Option<&'a Value>)> {
    match identity_key(before, after) {
        Some(key) => {
            let id = |v: &Value| v.as_map().and_then(|m| m.get(key)).and_then(Value::as_str).unwrap_or_default().to_string();
            let mut seen = std::collections::BTreeSet::new();
            let ids: Vec<String> = before.iter().chain(after).map(id).filter(|i| seen.insert(i.clone())).collect();
            ids.into_iter()
                .map(|i| {
                    let (b, a) = (before.iter().find(|v| id(v) == i), after.iter().find(|v| id(v) == i));
                    (Segment::Keyed { key: key.to_string(), value: i }, b, a)
                })
                .collect()
        }
        None => (0..before.len().max(after.len())).map(|i| (Segment::Index(i), before.get(i), after.get(i))).collect(),
    }
}

/// Every leaf where `after` differs from `before`, in path order. Tables are compared key by
/// key, lists of tables with an identifying key element by element (see [`identity_key`]),
/// other lists by position; a sensitive or unknown value is one leaf.
pub fn diff(before: &Attributes, after: &Attributes) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut keys: Vec<&crate::Key> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        diff_value(&FieldPath::field(k), before.get(k), after.get(k), &mut out);
    }
    out
}

fn diff_value(path: &FieldPath, before: Option<&Value>, after: Option<&Value>, out: &mut Vec<Difference>) {
    match (before, after) {
        (Some(b), Some(a)) if b == a => {}
        (Some(Value::Map(b)), Some(Value::Map(a))) => {
            let mut keys: Vec<&crate::Key> = b.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                diff_value(&path.join(Segment::Field(k.to_string())), b.get(k), a.get(k), out);
            }
        }
        (Some(Value::List(b)), Some(Value::List(a))) => {
            for (segment, bv, av) in pair_elements(b, a) {
                diff_value(&path.join(segment), bv, av, out);
            }
        }
        (None, None) => {}
        (b, a) => out.push(Difference { path: path.clone(), before: b.cloned(), after: a.cloned() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, Value)]) -> Value {
        Value::Map(kv.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect())
    }

    #[test]
    fn paths_print_and_parse_back() {
        for p in ["spec.template.spec.containers[name=api].image", "ports[0]", "metadata.labels.app", "tags"] {
            let parsed: FieldPath = p.parse().expect("parses");
            assert_eq!(parsed.to_string(), p);
        }
        for bad in ["", ".x", "a..b", "a[", "a[x]", "a.[0]"] {
            assert!(bad.parse::<FieldPath>().is_err(), "{bad}");
        }
        let inner: FieldPath = "spec.containers[name=api].image".parse().unwrap();
        assert!(inner.starts_with(&"spec.containers".parse().unwrap()) && !inner.starts_with(&"spec.volumes".parse().unwrap()));
    }

    #[test]
    fn nested_changes_are_leaves_and_named_list_elements_match_by_name() {
        let container = |name: &str, image: &str| map(&[("name", Value::from(name)), ("image", Value::from(image))]);
        let spec = |api: &str, extra: bool| {
            let mut cs = vec![container("sidecar", "envoy:1"), container("api", api)];
            if extra {
                cs.push(container("debug", "busybox"));
            }
            map(&[("replicas", Value::Int(2)), ("containers", Value::List(cs))])
        };
        let before: Attributes = [("spec".to_string(), spec("api:1", false)), ("ports".to_string(), Value::List(vec![Value::Int(80)]))].into();
        let after: Attributes = [("spec".to_string(), spec("api:2", true)), ("ports".to_string(), Value::List(vec![Value::Int(80), Value::Int(443)]))].into();
        let d: Vec<String> = diff(&before, &after).iter().map(|d| format!("{} {:?} -> {:?}", d.path, d.before.is_some(), d.after.is_some())).collect();
        assert_eq!(d, ["ports[1] false -> true", "spec.containers[name=api].image true -> true", "spec.containers[name=debug] false -> true"]);
    }
}
