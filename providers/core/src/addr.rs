//! Resource addresses: `provider.kind.name` with an optional instance key, `host.file.motd[web]`.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

/// The stable identity of a resource instance: `PROVIDER.KIND.NAME` and, for resources that
/// expand into several instances (a file on several hosts), an instance key: `host.file.motd[web]`.
///
/// Ordered by provider, kind, name, then key, so sorted output is deterministic. An address is one
/// pointer to its shared [`AddrParts`] (read them as fields: `addr.name`): addresses are cloned
/// into graphs, plans and records, a dozen times per instance, and a clone allocates nothing and
/// takes 8 bytes where four string slices would take 64.
#[derive(Clone, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct ResourceAddr(Arc<AddrParts>);

/// The parts of a [`ResourceAddr`]. Provider, kind and key are interned: every address shares one
/// copy of each.
#[derive(Debug, Eq)]
pub struct AddrParts {
    /// Provider name, e.g. `host`.
    pub provider: Arc<str>,
    /// Resource kind within the provider, e.g. `file`.
    pub kind: Arc<str>,
    /// The name given in config, e.g. `motd`.
    pub name: Arc<str>,
    /// Instance key, e.g. the host name for host resources.
    pub key: Option<Arc<str>>,
}

impl std::ops::Deref for ResourceAddr {
    type Target = AddrParts;

    fn deref(&self) -> &AddrParts {
        &self.0
    }
}

impl fmt::Debug for ResourceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceAddr").field("provider", &self.provider).field("kind", &self.kind).field("name", &self.name).field("key", &self.key).finish()
    }
}

/// Two parts in order; the same shared string (an interned provider, kind or key) is equal
/// without comparing its bytes. Addresses are the keys of every map of a plan, so this is most
/// of the comparisons a plan makes.
fn part_cmp(a: &Arc<str>, b: &Arc<str>) -> std::cmp::Ordering {
    if Arc::ptr_eq(a, b) { std::cmp::Ordering::Equal } else { a.cmp(b) }
}

fn part_eq(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

impl PartialEq for AddrParts {
    fn eq(&self, other: &Self) -> bool {
        part_eq(&self.name, &other.name)
            && part_eq(&self.kind, &other.kind)
            && part_eq(&self.provider, &other.provider)
            && match (&self.key, &other.key) {
                (Some(a), Some(b)) => part_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}

impl PartialEq for ResourceAddr {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

/// Hashed as its parts' strings, as equality compares them.
impl std::hash::Hash for ResourceAddr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.provider.hash(state);
        self.kind.hash(state);
        self.name.hash(state);
        self.key.hash(state);
    }
}

/// By provider, kind, name, then key (no key first), as the parts' strings compare.
impl Ord for ResourceAddr {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.0, &other.0) {
            return std::cmp::Ordering::Equal;
        }
        part_cmp(&self.provider, &other.provider).then_with(|| part_cmp(&self.kind, &other.kind)).then_with(|| part_cmp(&self.name, &other.name)).then_with(
            || match (&self.key, &other.key) {
                (Some(a), Some(b)) => part_cmp(a, b),
                (a, b) => a.is_some().cmp(&b.is_some()),
            },
        )
    }
}

impl PartialOrd for ResourceAddr {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Why a string is not a valid resource address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// Not three dot-separated parts.
    #[error("`{0}` is not a resource address: expected PROVIDER.KIND.NAME, e.g. host.file.motd")]
    Shape(String),
    /// A part holds a character outside `[A-Za-z0-9_-]`.
    #[error("`{addr}`: `{part}` may only contain letters, digits, `_` and `-`")]
    BadPart {
        /// The whole input.
        addr: String,
        /// The offending part.
        part: String,
    },
}

/// Provider names, kinds and instance keys (host names) repeat across thousands of addresses;
/// they are interned so every address shares one copy. Names are unique and are not.
fn intern(s: &str) -> Arc<str> {
    static TABLE: OnceLock<Mutex<HashSet<Arc<str>>>> = OnceLock::new();
    let mut table = TABLE.get_or_init(Mutex::default).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(found) = table.get(s) {
        return found.clone();
    }
    let new: Arc<str> = Arc::from(s);
    table.insert(new.clone());
    new
}

impl ResourceAddr {
    /// An address without an instance key.
    pub fn new(provider: &str, kind: &str, name: impl Into<Arc<str>>) -> Self {
        Self(Arc::new(AddrParts { provider: intern(provider), kind: intern(kind), name: name.into(), key: None }))
    }

    /// The same resource with the given instance key.
    #[must_use]
    pub fn with_key<K: AsRef<str>>(&self, key: Option<K>) -> Self {
        let key = key.map(|k| intern(k.as_ref()));
        if key.is_none() && self.key.is_none() {
            return self.clone();
        }
        Self(Arc::new(AddrParts { provider: self.provider.clone(), kind: self.kind.clone(), name: self.name.clone(), key }))
    }

    /// The resource this instance belongs to (the address without its key).
    #[must_use]
    pub fn base(&self) -> Self {
        self.with_key(None::<&str>)
    }

    /// `provider.kind`, the resource type.
    pub fn type_name(&self) -> String {
        format!("{}.{}", self.provider, self.kind)
    }

    /// Whether `s` is a valid name part.
    pub fn is_valid_part(s: &str) -> bool {
        !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }
}

impl fmt::Display for ResourceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.provider, self.kind, self.name)?;
        if let Some(key) = &self.key {
            write!(f, "[{key}]")?;
        }
        Ok(())
    }
}

impl FromStr for ResourceAddr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (body, key) = match s.find('[') {
            Some(open) if s.ends_with(']') && open + 1 < s.len() - 1 => (&s[..open], Some(&s[open + 1..s.len() - 1])),
            Some(_) => return Err(AddrError::Shape(s.to_string())),
            None => (s, None),
        };
        let parts: Vec<&str> = body.split('.').collect();
        let [provider, kind, name] = parts.as_slice() else {
            return Err(AddrError::Shape(s.to_string()));
        };
        for part in [provider, kind, name] {
            if !Self::is_valid_part(part) {
                return Err(AddrError::BadPart { addr: s.to_string(), part: (*part).to_string() });
            }
        }
        Ok(Self::new(provider, kind, *name).with_key(key))
    }
}

impl From<ResourceAddr> for String {
    fn from(a: ResourceAddr) -> Self {
        a.to_string()
    }
}

impl TryFrom<String> for ResourceAddr {
    type Error = AddrError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_and_without_key() {
        for s in ["host.file.motd", "host.file.motd[web-1]", "ec2.instance.a_b"] {
            let a: ResourceAddr = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
        }
        let a: ResourceAddr = "host.file.motd[web]".parse().unwrap();
        assert_eq!(a.key.as_deref(), Some("web"));
        assert_eq!(a.base().to_string(), "host.file.motd");
    }

    #[test]
    fn orders_as_its_parts_do_whether_or_not_they_are_shared() {
        let mut addrs: Vec<ResourceAddr> = ["host.file.b[web]", "host.file.b", "ec2.instance.z", "host.file.a[web]", "host.file.b[db]", "host.dir.c"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        // The same address built apart (a name is never shared) and cloned (all parts shared).
        let built: ResourceAddr = "host.file.b[web]".parse().unwrap();
        assert_eq!((&built, built.cmp(&addrs[0])), (&addrs[0], std::cmp::Ordering::Equal));
        assert_eq!(built.clone(), built);
        addrs.sort();
        let sorted: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        assert_eq!(sorted, ["ec2.instance.z", "host.dir.c", "host.file.a[web]", "host.file.b", "host.file.b[db]", "host.file.b[web]"]);
        let keyed: ResourceAddr = "host.file.b[web]".parse().unwrap();
        assert_ne!(keyed, keyed.base(), "a key makes another address");
    }

    #[test]
    fn an_address_is_one_pointer_and_its_clones_share_their_parts() {
        assert_eq!(std::mem::size_of::<ResourceAddr>(), std::mem::size_of::<usize>());
        let a: ResourceAddr = "host.file.motd[web]".parse().unwrap();
        let b = a.clone();
        assert!(Arc::ptr_eq(&a.name, &b.name));
        let c: ResourceAddr = "host.file.motd[db]".parse().unwrap();
        assert!(Arc::ptr_eq(&a.provider, &c.provider) && Arc::ptr_eq(&a.kind, &c.kind), "provider and kind are interned");
        assert_eq!(format!("{a:?}"), r#"ResourceAddr { provider: "host", kind: "file", name: "motd", key: Some("web") }"#);
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(matches!("host.file".parse::<ResourceAddr>(), Err(AddrError::Shape(_))));
        assert!(matches!("host.file.a.b".parse::<ResourceAddr>(), Err(AddrError::Shape(_))));
        assert!(matches!("host.fi le.a".parse::<ResourceAddr>(), Err(AddrError::BadPart { .. })));
        assert!(matches!("host.file.a[]".parse::<ResourceAddr>(), Err(AddrError::Shape(_))));
    }
}
