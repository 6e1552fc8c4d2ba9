//! The machine-readable plan; its schema is documented in docs/plan-json.md and is stable.

use serde_json::{Value as J, json};
use tend_provider::{Action, Attributes, Value};

use super::{Change, Plan};

/// Format version of the JSON plan.
pub const JSON_FORMAT_VERSION: &str = "1";

fn action_name(a: Action) -> &'static str {
    match a {
        Action::NoOp => "no-op",
        Action::Create => "create",
        Action::Update => "update",
        Action::Replace { create_first: true } => "create-before-destroy",
        Action::Replace { create_first: false } => "destroy-before-create",
        Action::Delete => "delete",
    }
}

/// Values as JSON with unknown and sensitive ones `null`, the names of the unknown ones, and
/// the names of the sensitive ones (`hide` adds names to treat as sensitive).
fn split(attrs: &Attributes, hide: &[&str]) -> (J, Vec<String>, Vec<String>) {
    let mut unknown = Vec::new();
    let mut sensitive = Vec::new();
    let mut obj = serde_json::Map::new();
    for (k, v) in attrs {
        if v.is_sensitive() || hide.contains(&k.as_str()) {
            sensitive.push(k.to_string());
            obj.insert(k.to_string(), J::Null);
        } else if v.is_known() {
            obj.insert(k.to_string(), v.to_json());
        } else {
            unknown.push(k.to_string());
            obj.insert(k.to_string(), if matches!(v, Value::Unknown) { J::Null } else { v.to_json() });
        }
    }
    (J::Object(obj), unknown, sensitive)
}

/// The leaves that change in an update or replacement, by path; sensitive and unknown values
/// are `null` and flagged.
fn diff_json(action: Action, before: Option<&Attributes>, after: Option<&Attributes>) -> J {
    let (Some(b), Some(a)) = (before, after) else { return J::Array(Vec::new()) };
    if !matches!(action, Action::Update | Action::Replace { .. }) {
        return J::Array(Vec::new());
    }
    let value = |v: &Option<Value>| match v {
        Some(v) if v.is_sensitive() || !v.is_known() => J::Null,
        Some(v) => v.to_json(),
        None => J::Null,
    };
    let flagged = |v: &Option<Value>| v.as_ref().is_some_and(Value::is_sensitive);
    J::Array(
        tend_provider::diff(b, a)
            .iter()
            // A field observed but not planned (absent after) is no change, as in the text plan;
            // inside a field it is.
            .filter(|d| d.after.is_some() || d.path.0.len() > 1)
            .map(|d| {
                json!({
                    "path": d.path.to_string(),
                    "before": value(&d.before),
                    "after": value(&d.after),
                    "sensitive": flagged(&d.before) || flagged(&d.after),
                    "after_unknown": d.after.as_ref().is_some_and(|v| matches!(v, Value::Unknown)),
                })
            })
            .collect(),
    )
}

fn change_json(c: &Change) -> J {
    let (after, after_unknown, after_sensitive) = match &c.after {
        Some(a) => split(a, &[]),
        None => (J::Null, Vec::new(), Vec::new()),
    };
    let hide: Vec<&str> = after_sensitive.iter().map(String::as_str).collect();
    let (before, _, before_sensitive) = match &c.before {
        Some(b) => split(b, &hide),
        None => (J::Null, Vec::new(), Vec::new()),
    };
    json!({
        "address": c.addr.to_string(),
        "resource": c.addr.base().to_string(),
        "provider": &*c.addr.provider,
        "kind": &*c.addr.kind,
        "instance": c.addr.key.as_deref(),
        "instance_kind": c.kind,
        "action": action_name(c.action),
        "reason": c.reason,
        "before": before,
        "before_sensitive": before_sensitive,
        "after": after,
        "after_unknown": after_unknown,
        "after_sensitive": after_sensitive,
        "requires_replace": c.requires_replace,
        "diff": diff_json(c.action, c.before.as_deref(), c.after.as_deref()),
        "triggered_by": c.triggered_by.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "drift_reported": c.drift_reported,
        "note": c.note,
        "staged": c.staged,
        "held_back": c.held_back.map(action_name),
        "depends_on": c.depends_on.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

/// One record a refresh-only plan updates (`after` null: forgotten).
fn refreshed_json(r: &super::Refreshed) -> J {
    let (before, _, before_sensitive) = split(&r.before, &[]);
    let (after, _, after_sensitive) = r.after.as_ref().map_or((J::Null, Vec::new(), Vec::new()), |a| split(a, &[]));
    json!({
        "address": r.addr.to_string(),
        "action": if r.after.is_some() { "update-state" } else { "forget" },
        "before": before,
        "before_sensitive": before_sensitive,
        "after": after,
        "after_sensitive": after_sensitive,
        "before_id": r.before_id,
        "after_id": r.after_id,
        "diff": diff_json(Action::Update, Some(&r.before), r.after.as_ref()),
    })
}

fn problem(e: &super::PlanError) -> J {
    json!({
        "address": e.addr.as_ref().map(ToString::to_string),
        "kind": e.kind.name(),
        "message": e.message,
        "hint": e.hint,
    })
}

/// Render a plan as JSON.
pub fn render_json(plan: &Plan) -> J {
    let s = plan.summary();
    json!({
        "format_version": JSON_FORMAT_VERSION,
        "revision": plan.revision,
        "environment": plan.environment,
        "applyable": plan.is_applyable(),
        "summary": { "add": s.add, "change": s.change, "replace": s.replace, "destroy": s.destroy, "noop": s.noop },
        "changes": plan.changes.iter().map(change_json).collect::<Vec<_>>(),
        "errors": plan.errors.iter().map(problem).collect::<Vec<_>>(),
        "unplanned": plan.unplanned.iter().map(problem).collect::<Vec<_>>(),
        "left_out": plan.left_out,
        "refresh_only": plan.refresh_only,
        "refreshed": plan.refreshed.iter().map(refreshed_json).collect::<Vec<_>>(),
    })
}
