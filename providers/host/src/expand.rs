//! Expansion: a resource placed `on` hosts becomes one instance per host.

use tend_provider::{ExpandRequest, FieldError, Instance, ResourceAddr, Sibling, Value};

/// Instances of a host resource.
pub fn expand(req: &ExpandRequest<'_>) -> Result<Vec<Instance>, FieldError> {
    if crate::resources::is_host(&req.addr.kind) {
        return Ok(vec![Instance::single()]);
    }
    let hosts: Vec<&Sibling> = req.siblings.iter().filter(|s| crate::resources::is_host(&s.addr.kind)).collect();
    let chosen: Vec<&Sibling> = match req.literal.get("on") {
        None => match hosts.as_slice() {
            [one] => vec![*one],
            [] => {
                return Err(
                    FieldError::resource("no host is declared to place this on").with_hint("declare the machine tend runs on with a [host.local.NAME] table")
                );
            }
            _ => {
                return Err(FieldError::field("on", "`on` is required when several hosts are declared")
                    .with_hint(format!("e.g. on = [\"{}\"] or on = {{ role = \"web\" }}", hosts[0].addr.name)));
            }
        },
        Some(Value::List(names)) => {
            let mut out = Vec::new();
            for n in names {
                let Some(name) = n.as_str() else {
                    return Err(FieldError::field("on", format!("expected host names, found a {}", n.type_name())));
                };
                let Some(h) = hosts.iter().find(|h| &*h.addr.name == name) else {
                    let known: Vec<&str> = hosts.iter().map(|h| &*h.addr.name).collect();
                    return Err(FieldError::field("on", format!("no host named `{name}`")).with_hint(format!("declared hosts: {}", known.join(", "))));
                };
                out.push(*h);
            }
            out
        }
        Some(Value::String(name)) => {
            return Err(FieldError::field("on", "`on` must be a list of host names or a label selector table").with_hint(format!("write on = [\"{name}\"]")));
        }
        Some(Value::Map(selector)) => hosts
            .iter()
            .filter(|h| {
                let labels = h.literal.get("labels").and_then(Value::as_map);
                selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
            })
            .copied()
            .collect(),
        Some(Value::Unknown) => {
            return Err(FieldError::field("on", "`on` must be written out, not computed from a reference")
                .with_hint("hosts are chosen before anything is applied; list their names or a label selector"));
        }
        Some(other) => {
            return Err(FieldError::field("on", format!("`on` must be a list of host names or a label selector table, found a {}", other.type_name())));
        }
    };
    Ok(chosen.into_iter().map(|h| Instance::keyed(h.addr.name.to_string(), Some(ResourceAddr::clone(&h.addr)))).collect())
}
