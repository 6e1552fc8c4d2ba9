//! [`Map`]: a small ordered map by string key, as a sorted vector.
//!
//! Attribute maps hold a handful of fields each and there is one (or several) per resource
//! instance: a `BTreeMap` node is sized for eleven entries whatever it holds (about 630 bytes for
//! `Value`s), where a sorted vector takes what the entries take. Iteration, equality and
//! serialization are in key order, exactly as a `BTreeMap`'s, so everything derived from a map
//! (plans, hashes, JSON) stays deterministic.
//!
//! Keys are [`Key`]s: a key of up to 24 bytes (every field name) is stored inline, without an
//! allocation of its own.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A map's key: a string, inline up to 24 bytes. It dereferences to `str`.
pub type Key = compact_str::CompactString;

/// An ordered map from string keys, stored as a vector sorted by key (keys unique).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Map<V> {
    entries: Vec<(Key, V)>,
}

impl<V> Default for Map<V> {
    fn default() -> Self {
        Self { entries: Vec::new() }
    }
}

impl<V> Map<V> {
    /// An empty map.
    pub const fn new() -> Self {
        Self { entries: Vec::new() }
    }

    /// An empty map with room for `n` entries.
    pub fn with_capacity(n: usize) -> Self {
        Self { entries: Vec::with_capacity(n) }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    /// The value of `key`, to change.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.find(key).ok().map(|i| &mut self.entries[i].1)
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Set `key` to `value`; returns the value it replaced.
    pub fn insert(&mut self, key: Key, value: V) -> Option<V> {
        match self.find(key.as_str()) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.insert_at(i, key, value);
                None
            }
        }
    }

    /// A new entry at its place `i`; small maps grow by what they need, not by doubling.
    fn insert_at(&mut self, i: usize, key: Key, value: V) {
        if self.entries.len() < 16 {
            self.entries.reserve_exact(1);
        }
        self.entries.insert(i, (key, value));
    }

    /// Remove `key`; returns its value.
    pub fn remove(&mut self, key: &str) -> Option<V> {
        self.find(key).ok().map(|i| self.entries.remove(i).1)
    }

    /// The entry of `key`, to fill when it has no value.
    pub fn entry(&mut self, key: Key) -> Entry<'_, V> {
        Entry { map: self, key }
    }

    /// Keep the entries `keep` says to.
    pub fn retain(&mut self, mut keep: impl FnMut(&Key, &mut V) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }

    /// Entries in key order.
    pub fn iter(&self) -> Iter<'_, V> {
        Iter(self.entries.iter())
    }

    /// Entries in key order, values changeable.
    pub fn iter_mut(&mut self) -> IterMut<'_, V> {
        IterMut(self.entries.iter_mut())
    }

    /// Keys in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &Key> + ExactSizeIterator + Clone {
        self.entries.iter().map(|(k, _)| k)
    }

    /// Values in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator + Clone {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Values in key order, changeable.
    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut V> + ExactSizeIterator {
        self.entries.iter_mut().map(|(_, v)| v)
    }

    /// Entries sorted and deduplicated: of equal keys the last one wins, as inserting them one
    /// by one into a `BTreeMap` would.
    fn from_vec(mut entries: Vec<(Key, V)>) -> Self {
        if !entries.is_sorted_by(|a, b| a.0 < b.0) {
            // Stable: equal keys keep their order, so the last of them is the one inserted last.
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut out: Vec<(Key, V)> = Vec::with_capacity(entries.len());
            for e in entries {
                match out.last_mut() {
                    Some(last) if last.0 == e.0 => *last = e,
                    _ => out.push(e),
                }
            }
            entries = out;
        }
        Self { entries }
    }
}

impl<V: fmt::Debug> fmt::Debug for Map<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.entries.iter().map(|(k, v)| (k, v))).finish()
    }
}

impl<V> std::ops::Index<&str> for Map<V> {
    type Output = V;

    fn index(&self, key: &str) -> &V {
        self.get(key).expect("no entry found for key")
    }
}

impl<K: Into<Key>, V> FromIterator<(K, V)> for Map<V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut v: Vec<(Key, V)> = iter.into_iter().map(|(k, v)| (k.into(), v)).collect();
        v.shrink_to_fit();
        Self::from_vec(v)
    }
}

impl<K: Into<Key>, V, const N: usize> From<[(K, V); N]> for Map<V> {
    fn from(a: [(K, V); N]) -> Self {
        a.into_iter().collect()
    }
}

impl<K: Into<Key>, V> Extend<(K, V)> for Map<V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        let more: Vec<(Key, V)> = iter.into_iter().map(|(k, v)| (k.into(), v)).collect();
        if more.is_empty() {
            return;
        }
        let mut all = std::mem::take(&mut self.entries);
        all.extend(more);
        *self = Self::from_vec(all);
    }
}

/// The entry of one key ([`Map::entry`]).
pub struct Entry<'a, V> {
    map: &'a mut Map<V>,
    key: Key,
}

impl<'a, V> Entry<'a, V> {
    /// Its value, `make()` inserted when it has none.
    pub fn or_insert_with(self, make: impl FnOnce() -> V) -> &'a mut V {
        let i = match self.map.find(self.key.as_str()) {
            Ok(i) => i,
            Err(i) => {
                self.map.insert_at(i, self.key, make());
                i
            }
        };
        &mut self.map.entries[i].1
    }
}

/// Iterator over `(&key, &value)` in key order.
#[derive(Clone)]
pub struct Iter<'a, V>(std::slice::Iter<'a, (Key, V)>);

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (&'a Key, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (k, v))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<V> DoubleEndedIterator for Iter<'_, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(k, v)| (k, v))
    }
}

impl<V> ExactSizeIterator for Iter<'_, V> {}

/// Iterator over `(&key, &mut value)` in key order.
pub struct IterMut<'a, V>(std::slice::IterMut<'a, (Key, V)>);

impl<'a, V> Iterator for IterMut<'a, V> {
    type Item = (&'a Key, &'a mut V);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (&*k, v))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<V> DoubleEndedIterator for IterMut<'_, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(k, v)| (&*k, v))
    }
}

impl<V> ExactSizeIterator for IterMut<'_, V> {}

impl<'a, V> IntoIterator for &'a Map<V> {
    type Item = (&'a Key, &'a V);
    type IntoIter = Iter<'a, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a, V> IntoIterator for &'a mut Map<V> {
    type Item = (&'a Key, &'a mut V);
    type IntoIter = IterMut<'a, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

impl<V> IntoIterator for Map<V> {
    type Item = (Key, V);
    type IntoIter = std::vec::IntoIter<(Key, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<V: Serialize> Serialize for Map<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.entries.len()))?;
        for (k, v) in &self.entries {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Map<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Visit<V> {
            type Value = Map<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Map<V>, A::Error> {
                let mut entries = Vec::with_capacity(access.size_hint().unwrap_or(0).min(4096));
                while let Some((k, v)) = access.next_entry::<Key, V>()? {
                    entries.push((k, v));
                }
                entries.shrink_to_fit();
                Ok(Map::from_vec(entries))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn behaves_as_a_btreemap_in_order_lookup_replacement_and_removal() {
        let ops: [(&str, Option<i32>); 9] =
            [("m", Some(1)), ("b", Some(2)), ("z", Some(3)), ("b", Some(4)), ("a", None), ("m", None), ("c", Some(5)), ("z", Some(6)), ("q", None)];
        let (mut ours, mut theirs) = (Map::new(), BTreeMap::new());
        for (k, v) in ops {
            match v {
                Some(v) => assert_eq!(ours.insert(k.into(), v), theirs.insert(k.to_string(), v)),
                None => assert_eq!(ours.remove(k), theirs.remove(k)),
            }
            assert_eq!(ours.iter().map(|(k, v)| (k.as_str(), v)).collect::<Vec<_>>(), theirs.iter().map(|(k, v)| (k.as_str(), v)).collect::<Vec<_>>());
        }
        assert_eq!((ours.get("c"), ours.get("nope"), ours["z"], ours.len()), (Some(&5), None, 6, 3));
        let collected: Map<i32> = [("x".to_string(), 1), ("a".to_string(), 2), ("x".to_string(), 3)].into_iter().collect();
        assert_eq!(collected.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>(), [("a", 2), ("x", 3)], "sorted, the last of equal keys wins");
        let mut extended = collected.clone();
        extended.extend([("b".to_string(), 9), ("x".to_string(), 4)]);
        assert_eq!(extended.keys().map(Key::as_str).collect::<Vec<_>>(), ["a", "b", "x"]);
        assert_eq!(extended["x"], 4, "extend replaces, as BTreeMap's does");
        let json = serde_json::to_string(&extended).expect("serializes");
        assert_eq!(json, r#"{"a":2,"b":9,"x":4}"#);
        assert_eq!(serde_json::from_str::<Map<i32>>(r#"{"x":4,"a":2,"b":9}"#).expect("reads"), extended);
    }
}
