//! Comparing what tend applies with what a cluster holds: the live object seen only through
//! the fields tend writes, so that what the server adds (defaults, status, other managers'
//! fields) never shows as a change.

use serde_json::{Map, Value as J};

/// Keys that identify an element of a list of tables, as the Kubernetes API merges them
/// (containers and volumes by `name`, ports by `containerPort`, mounts by `mountPath`).
const LIST_KEYS: &[&str] = &["name", "containerPort", "port", "mountPath", "devicePath", "ip", "topologyKey"];

/// The key every element of both lists has, uniquely, if any.
fn list_key(template: &[J]) -> Option<&'static str> {
    LIST_KEYS.iter().copied().find(|k| {
        let vals: Vec<&J> = template.iter().filter_map(|e| e.get(*k)).collect();
        vals.len() == template.len() && !vals.is_empty() && vals.iter().enumerate().all(|(i, v)| !vals[..i].contains(v))
    })
}

/// `live` seen through the shape of `template`: the keys of tables the template has, the
/// elements of lists it has (matched by their key, else by position). `None` when `live` has
/// nothing there.
pub(crate) fn project(template: &J, live: &J) -> J {
    match (template, live) {
        (J::Object(t), J::Object(l)) => {
            let mut out = Map::new();
            for (k, tv) in t {
                if let Some(lv) = l.get(k) {
                    out.insert(k.clone(), project(tv, lv));
                }
            }
            J::Object(out)
        }
        (J::Array(t), J::Array(l)) => {
            if let Some(key) = list_key(t) {
                let mut out = Vec::new();
                for te in t {
                    if let Some(le) = l.iter().find(|le| le.get(key) == te.get(key)) {
                        out.push(project(te, le));
                    }
                }
                // What the list holds beyond the template's elements is someone else's.
                J::Array(out)
            } else if t.len() == l.len() {
                J::Array(t.iter().zip(l).map(|(te, le)| project(te, le)).collect())
            } else {
                live.clone()
            }
        }
        _ => live.clone(),
    }
}

/// Two templates in one: every path of either (for the fields tend applied last time and no
/// longer does, which the server removes).
pub(crate) fn union(first: &J, second: &J) -> J {
    match (first, second) {
        (J::Object(x), J::Object(y)) => {
            let mut out = x.clone();
            for (k, v) in y {
                let merged = match x.get(k) {
                    Some(xv) => union(xv, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            J::Object(out)
        }
        (J::Array(x), J::Array(y)) => match list_key(x) {
            Some(k) if y.iter().all(|e| e.get(k).is_some()) => {
                let mut out: Vec<J> = x.iter().map(|xe| y.iter().find(|ye| ye.get(k) == xe.get(k)).map_or_else(|| xe.clone(), |ye| union(xe, ye))).collect();
                out.extend(y.iter().filter(|ye| !x.iter().any(|xe| xe.get(k) == ye.get(k))).cloned());
                J::Array(out)
            }
            _ if x.len() == y.len() => J::Array(x.iter().zip(y).map(|(xe, ye)| union(xe, ye)).collect()),
            _ => first.clone(),
        },
        _ => first.clone(),
    }
}

/// What a plan shows as "before": the live value (`have`), except where the server would make
/// of the desired value (`would`, from a dry-run) exactly what is there already — there it is
/// the desired value (`want`), so that a quantity written `0.5` and served as `500m` is no change.
pub(crate) fn settle(have: &J, would: &J, want: &J) -> J {
    if have == would {
        return want.clone();
    }
    match (have, would, want) {
        (J::Object(h), J::Object(w), J::Object(d)) => {
            let mut out = Map::new();
            for (k, hv) in h {
                let v = match (w.get(k), d.get(k)) {
                    (Some(wv), Some(dv)) => settle(hv, wv, dv),
                    _ => hv.clone(),
                };
                out.insert(k.clone(), v);
            }
            J::Object(out)
        }
        (J::Array(h), J::Array(w), J::Array(d)) if h.len() == w.len() && w.len() == d.len() => {
            J::Array(h.iter().zip(w).zip(d).map(|((hv, wv), dv)| settle(hv, wv, dv)).collect())
        }
        _ => have.clone(),
    }
}

/// The paths (`spec.replicas`, `spec.template.spec.containers[name=api].image`) where `a` and
/// `b` differ, leaves only.
pub(crate) fn differing(left: &J, right: &J, at: &str, out: &mut Vec<String>) {
    match (left, right) {
        (J::Object(x), J::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let p = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                differing(x.get(k).unwrap_or(&J::Null), y.get(k).unwrap_or(&J::Null), &p, out);
            }
        }
        (J::Array(x), J::Array(y)) if x.len() == y.len() => {
            let key = list_key(x);
            for (i, (xe, ye)) in x.iter().zip(y).enumerate() {
                let seg = match key.and_then(|k| xe.get(k)) {
                    Some(v) => format!("[{}={}]", key.unwrap_or_default(), v.as_str().map_or_else(|| v.to_string(), str::to_string)),
                    None => format!("[{i}]"),
                };
                differing(xe, ye, &format!("{at}{seg}"), out);
            }
        }
        _ if left != right => out.push(at.to_string()),
        _ => {}
    }
}

/// The field manager that owns `path` (dotted, as [`differing`] writes it) in the live
/// object's managedFields, other than `except`: who changed a field tend manages.
pub(crate) fn owner_of(live: &J, path: &str, except: &str) -> Option<String> {
    let entries = live.pointer("/metadata/managedFields")?.as_array()?;
    let segs = fieldsv1_path(path);
    entries.iter().filter(|e| e.get("manager").and_then(J::as_str) != Some(except)).find_map(|e| {
        let mut cur = e.get("fieldsV1")?;
        for s in &segs {
            cur = match s {
                Seg::Field(f) => cur.get(format!("f:{f}"))?,
                Seg::Keyed(k, v) => {
                    let obj = cur.as_object()?;
                    obj.iter()
                        .find(|(name, _)| {
                            name.starts_with("k:")
                                && serde_json::from_str::<J>(&name[2..])
                                    .is_ok_and(|j| j.get(k).is_some_and(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string) == *v))
                        })?
                        .1
                }
                Seg::Index => return None,
            };
        }
        let m = e.get("manager")?.as_str()?;
        Some(match e.get("operation").and_then(J::as_str) {
            Some("Update") | None => m.to_string(),
            Some(op) => format!("{m} ({op})"),
        })
    })
}

enum Seg {
    Field(String),
    Keyed(String, String),
    Index,
}

fn fieldsv1_path(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, rest) = part.split_once('[').map_or((part, None), |(n, r)| (n, Some(r)));
        if !name.is_empty() {
            out.push(Seg::Field(name.to_string()));
        }
        if let Some(r) = rest {
            for sel in r.split('[') {
                let sel = sel.trim_end_matches(']');
                match sel.split_once('=') {
                    Some((k, v)) => out.push(Seg::Keyed(k.to_string(), v.to_string())),
                    None => out.push(Seg::Index),
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn projection_drops_what_the_server_added() {
        let want = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "api", "image": "a:1"}]}}}});
        let live = json!({"spec": {"replicas": 2, "strategy": {"type": "RollingUpdate"}, "template": {"spec": {"containers": [
            {"name": "side", "image": "s"}, {"name": "api", "image": "a:1", "imagePullPolicy": "IfNotPresent"}]}}}, "status": {}});
        assert_eq!(project(&want, &live), want);
    }

    #[test]
    fn union_keeps_fields_removed_inside_list_elements() {
        let want = json!({"containers": [{"name": "api", "image": "a:2"}]});
        let before = json!({"containers": [{"name": "api", "image": "a:1", "envFrom": [{"configMapRef": {"name": "s"}}]}, {"name": "gone"}]});
        assert_eq!(
            union(&want, &before),
            json!({"containers": [{"name": "api", "image": "a:2", "envFrom": [{"configMapRef": {"name": "s"}}]}, {"name": "gone"}]})
        );
    }

    #[test]
    fn differing_paths_name_list_elements_by_key() {
        let a = json!({"spec": {"containers": [{"name": "api", "image": "a:1"}]}});
        let b = json!({"spec": {"containers": [{"name": "api", "image": "a:2"}]}});
        let mut out = Vec::new();
        differing(&a, &b, "", &mut out);
        assert_eq!(out, vec!["spec.containers[name=api].image"]);
    }

    #[test]
    fn settled_values_show_as_desired() {
        let have = json!({"cpu": "500m", "replicas": 1});
        let would = json!({"cpu": "500m", "replicas": 3});
        let want = json!({"cpu": 0.5, "replicas": 3});
        assert_eq!(settle(&have, &would, &want), json!({"cpu": 0.5, "replicas": 1}));
    }

    #[test]
    fn owners_are_found_through_fieldsv1() {
        let live = json!({"metadata": {"managedFields": [
            {"manager": "tend", "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"api\"}": {"f:image": {}}}}}}}}
        ]}});
        assert_eq!(owner_of(&live, "spec.template.spec.containers[name=api].image", "tend").as_deref(), Some("kubectl-edit"));
        assert_eq!(owner_of(&live, "spec.replicas", "tend"), None);
    }
}
