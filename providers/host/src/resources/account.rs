//! `host.user` and `host.group`: accounts observed with `getent`, managed with
//! useradd/usermod/userdel and groupadd/groupmod/groupdel.

use async_trait::async_trait;
use tend_provider::{
    Action, ApplyRequest, Attributes, FieldError, FieldSchema, FieldType, KindSchema, Observed, PlanRequest, PlannedChange, ProviderError, Value,
};

use super::{get_str, required_str};
use crate::transport::{Transport, quote};

/// Schema of `host.user`.
pub fn user_schema() -> KindSchema {
    KindSchema {
        kind: "user",
        doc: "a local user account",
        target: false,
        timeout: None,
        runs: false,
        fields: vec![
            FieldSchema::input("on", FieldType::Any, "host names, or a label selector table"),
            FieldSchema::input("name", FieldType::String, "login name").required().forces_replacement(),
            FieldSchema::input("uid", FieldType::Int, "user id (set at creation)"),
            FieldSchema::input("group", FieldType::String, "primary group"),
            FieldSchema::input("groups", FieldType::List(Box::new(FieldType::String)), "supplementary groups"),
            FieldSchema::input("home", FieldType::String, "home directory"),
            FieldSchema::input("shell", FieldType::String, "login shell"),
            FieldSchema::input("system", FieldType::Bool, "a system account (created with --system)"),
        ],
    }
}

/// Schema of `host.group`.
pub fn group_schema() -> KindSchema {
    KindSchema {
        kind: "group",
        doc: "a local group",
        target: false,
        timeout: None,
        runs: false,
        fields: vec![
            FieldSchema::input("on", FieldType::Any, "host names, or a label selector table"),
            FieldSchema::input("name", FieldType::String, "group name").required().forces_replacement(),
            FieldSchema::input("gid", FieldType::Int, "group id"),
            FieldSchema::input("system", FieldType::Bool, "a system group (created with --system)"),
        ],
    }
}

/// Checks of literal config.
pub fn validate(literal: &Attributes) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(n) = get_str(literal, "name").filter(|n| n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))) {
        errors.push(FieldError::field("name", format!("`{n}` is not a valid account name")));
    }
    errors
}

/// One command printing the account's passwd (or group) entry and, for users, its groups.
pub fn observe_script(is_user: bool, name: &str) -> String {
    let n = quote(name);
    if is_user { format!("getent passwd {n} && echo \"groups=$(id -Gn {n} 2>/dev/null)\"; exit 0") } else { format!("getent group {n}; exit 0") }
}

/// Parse `getent` output into observed attributes (`None` when the account does not exist).
pub fn observed(is_user: bool, stdout: &str) -> Option<Observed> {
    let entry = stdout.lines().next().filter(|l| l.contains(':'))?;
    let f: Vec<&str> = entry.split(':').collect();
    let mut a = Attributes::new();
    a.insert("name".into(), Value::from(f[0]));
    if is_user && f.len() >= 7 {
        a.insert("uid".into(), f[2].parse::<i64>().map_or(Value::Null, Value::Int));
        a.insert("home".into(), Value::from(f[5]));
        a.insert("shell".into(), Value::from(f[6]));
        let groups: Vec<&str> = stdout.lines().find_map(|l| l.strip_prefix("groups=")).unwrap_or_default().split_whitespace().collect();
        if let Some((primary, rest)) = groups.split_first() {
            a.insert("group".into(), Value::from(*primary));
            a.insert("groups".into(), Value::List(rest.iter().map(|g| Value::from(*g)).collect()));
        }
    } else if f.len() >= 3 {
        a.insert("gid".into(), f[2].parse::<i64>().map_or(Value::Null, Value::Int));
    }
    Some(Observed { id: None, attributes: a })
}

/// The account fields config sets, as they are compared and recorded.
fn shown(config: &Attributes) -> Attributes {
    config.iter().filter(|(k, _)| !matches!(k.as_str(), "on" | "system")).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Plan: create what is missing; change the fields config sets that differ.
pub fn plan(req: &PlanRequest) -> PlannedChange {
    let observed = req.observed.as_ref();
    let Some(config) = &req.config else {
        let mut c = PlannedChange::new(Action::Delete);
        c.before = observed.map(|o| o.attributes.clone()).unwrap_or_default();
        c.note = Some("the account is kept; tend stops managing it".into());
        return c;
    };
    let after = shown(config);
    let before = super::before_for(observed, &after);
    let action = super::converge_action(observed.is_some(), req.prior.is_some(), &before, &after);
    let mut c = PlannedChange { before, after, ..PlannedChange::new(action) };
    if action == Action::Create && observed.is_some() && c.before == c.after {
        c.note = Some("already as desired; tend will record it".into());
    }
    c
}

/// Create or modify the account (removal is left to people: it can orphan files).
pub async fn apply(t: &dyn Transport, req: &ApplyRequest, is_user: bool) -> Result<Option<Observed>, ProviderError> {
    if req.action == Action::Delete {
        return Ok(None);
    }
    let config = req.config.as_ref().ok_or_else(|| ProviderError::terminal("no config to apply"))?;
    let name = quote(required_str(config, "name")?);
    let exists = req.observed.is_some();
    let mut args = Vec::new();
    let opt = |flag: &str, v: Option<String>, args: &mut Vec<String>| {
        if let Some(v) = v {
            args.push(format!("{flag} {}", quote(&v)));
        }
    };
    if is_user {
        if !exists {
            opt("--uid", config.get("uid").and_then(Value::as_i64).map(|u| u.to_string()), &mut args);
            if config.get("system").and_then(Value::as_bool) == Some(true) {
                args.push("--system".into());
            }
            if config.contains_key("home") {
                args.push("--create-home".into());
            }
        }
        opt("--gid", get_str(config, "group").map(str::to_string), &mut args);
        opt("--home", get_str(config, "home").map(str::to_string), &mut args);
        opt("--shell", get_str(config, "shell").map(str::to_string), &mut args);
        let groups: Vec<&str> = config.get("groups").and_then(Value::as_list).unwrap_or_default().iter().filter_map(Value::as_str).collect();
        if !groups.is_empty() {
            args.push(format!("--groups {}", quote(&groups.join(","))));
        }
    } else {
        opt("--gid", config.get("gid").and_then(Value::as_i64).map(|g| g.to_string()), &mut args);
        if !exists && config.get("system").and_then(Value::as_bool) == Some(true) {
            args.push("--system".into());
        }
    }
    let tool = match (is_user, exists) {
        (true, false) => "useradd",
        (true, true) => "usermod",
        (false, false) => "groupadd",
        (false, true) => "groupmod",
    };
    if !(exists && args.is_empty()) {
        let out = t.exec(&format!("{tool} {} {name}", args.join(" ")), None).await?;
        if out.status != 0 {
            return Err(
                ProviderError::terminal(format!("{tool} exited with status {} on host `{}`", out.status, t.host())).with_hint(out.stderr.trim().to_string())
            );
        }
    }
    Ok(Some(Observed { id: None, attributes: shown(config) }))
}

/// `host.user` (`user: true`) and `host.group`.
pub struct Account {
    /// A user rather than a group.
    pub user: bool,
}

#[async_trait]
impl super::HostKind for Account {
    fn name(&self) -> &'static str {
        if self.user { "user" } else { "group" }
    }
    fn schema(&self) -> KindSchema {
        if self.user { user_schema() } else { group_schema() }
    }
    fn exclusive(&self) -> bool {
        true
    }
    fn validate(&self, literal: &Attributes, _cx: super::Cx<'_>) -> Vec<FieldError> {
        validate(literal)
    }
    fn observe(&self, item: &tend_provider::ReadItem) -> super::Observe {
        let name = item.config.as_ref().and_then(|c| get_str(c, "name")).or_else(|| item.prior.as_ref().and_then(|p| get_str(&p.attributes, "name")));
        super::Observe { script: name.map(|n| observe_script(self.user, n)), ..super::Observe::default() }
    }
    async fn observed(&self, _item: &tend_provider::ReadItem, seen: super::Seen<'_>, _t: &dyn Transport) -> Result<Option<Observed>, ProviderError> {
        Ok(seen.probed.and_then(|o| observed(self.user, o)))
    }
    fn plan(&self, req: &PlanRequest, _cx: super::Cx<'_>) -> Result<PlannedChange, ProviderError> {
        Ok(plan(req))
    }
    async fn apply(&self, t: &dyn Transport, req: &ApplyRequest, _cx: super::Cx<'_>) -> Result<Option<Observed>, ProviderError> {
        apply(t, req, self.user).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_getent() {
        let o = observed(true, "app:x:1001:1001::/home/app:/bin/bash\ngroups=app docker\n").unwrap();
        assert_eq!(o.attributes["uid"], Value::Int(1001));
        assert_eq!(o.attributes["group"], Value::from("app"));
        assert_eq!(o.attributes["groups"], Value::List(vec![Value::from("docker")]));
        assert!(observed(true, "").is_none());
        assert_eq!(observed(false, "docker:x:998:app\n").unwrap().attributes["gid"], Value::Int(998));
    }
}
