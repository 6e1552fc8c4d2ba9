//! `host.package`: packages present (or absent), installed in one batch per resource with the
//! host's package manager (apt, dnf or apk, detected).

use async_trait::async_trait;
use tend_provider::{
    Action, ApplyRequest, Attributes, FieldError, FieldSchema, FieldType, KindSchema, Observed, PlanRequest, PlannedChange, ProviderError, Value,
};

use super::get_str;
use crate::transport::{Transport, quote};

/// Schema of `host.package`.
pub fn schema() -> KindSchema {
    KindSchema {
        kind: "package",
        doc: "packages installed (or removed) with apt, dnf or apk, in one batch",
        target: false,
        timeout: None,
        runs: false,
        fields: vec![
            FieldSchema::input("on", FieldType::Any, "host names, or a label selector table"),
            FieldSchema::input("names", FieldType::List(Box::new(FieldType::String)), "package names").required(),
            FieldSchema::input("state", FieldType::String, "\"present\" (default) or \"absent\""),
            FieldSchema::output("manager", FieldType::String, "apt, dnf or apk"),
        ],
    }
}

/// Checks of literal config.
pub fn validate(literal: &Attributes) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(s) = get_str(literal, "state").filter(|s| !matches!(*s, "present" | "absent")) {
        errors.push(FieldError::field("state", format!("`{s}` is not a package state")).with_hint("use \"present\" or \"absent\""));
    }
    if let Some(names) = literal.get("names").and_then(Value::as_list) {
        for n in names.iter().filter_map(Value::as_str) {
            if n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || "+-._:".contains(c)) {
                errors.push(FieldError::field("names", format!("`{n}` is not a package name")));
            }
        }
    }
    errors
}

/// One command that names the package manager and lists which of `names` are installed.
pub fn observe_script(names: &[String]) -> String {
    let args: Vec<String> = names.iter().map(|n| quote(n)).collect();
    let args = args.join(" ");
    format!(
        "if command -v dpkg-query >/dev/null 2>&1; then echo manager=apt; dpkg-query -W -f='${{Package}} ${{db:Status-Status}}\\n' {args} 2>/dev/null; \
         elif command -v rpm >/dev/null 2>&1; then echo manager=dnf; rpm -q --qf '%{{NAME}} installed\\n' {args} 2>/dev/null | grep ' installed$'; \
         elif command -v apk >/dev/null 2>&1; then echo manager=apk; for p in {args}; do apk info -e \"$p\" >/dev/null 2>&1 && echo \"$p installed\"; done; \
         else echo manager=none; fi; exit 0"
    )
}

/// Parse the observe command's output into observed attributes.
pub fn observed(stdout: &str, names: &[String]) -> Observed {
    let manager = stdout.lines().find_map(|l| l.strip_prefix("manager=")).unwrap_or("none").to_string();
    let installed: Vec<Value> = names
        .iter()
        .filter(|n| stdout.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == [n.as_str(), "installed"]))
        .map(|n| Value::from(n.as_str()))
        .collect();
    let mut a = Attributes::new();
    a.insert("manager".into(), Value::from(manager));
    a.insert("installed".into(), Value::List(installed));
    Observed { id: None, attributes: a }
}

fn names_of(config: &Attributes) -> Vec<String> {
    super::get_strings(config, "names")
}

/// Plan: which packages are to be installed or removed.
pub fn plan(req: &PlanRequest) -> Result<PlannedChange, ProviderError> {
    let Some(config) = &req.config else {
        let mut c = PlannedChange::new(Action::Delete);
        c.note = Some("the packages stay installed; tend stops managing them".into());
        return Ok(c);
    };
    let observed = req.observed.as_ref().ok_or_else(|| ProviderError::terminal("the host's packages could not be observed"))?;
    let manager = get_str(&observed.attributes, "manager").unwrap_or("none");
    if manager == "none" {
        return Err(ProviderError::terminal("the host has no supported package manager (apt, dnf or apk)"));
    }
    let installed: Vec<String> = super::get_strings(&observed.attributes, "installed");
    let names = names_of(config);
    let absent = get_str(config, "state") == Some("absent");
    let wanted: Vec<Value> = if absent { Vec::new() } else { names.iter().map(|n| Value::from(n.as_str())).collect() };
    let now: Vec<Value> = names.iter().filter(|n| installed.contains(n)).map(|n| Value::from(n.as_str())).collect();
    let mut before = Attributes::new();
    before.insert("installed".into(), Value::List(now.clone()));
    let mut after = Attributes::new();
    after.insert("installed".into(), Value::List(wanted.clone()));
    after.insert("manager".into(), Value::from(manager));
    before.insert("manager".into(), Value::from(manager));
    let action = if now != wanted {
        if req.prior.is_none() { Action::Create } else { Action::Update }
    } else if req.prior.is_none() {
        Action::Create
    } else {
        Action::NoOp
    };
    let mut c = PlannedChange { before, after, ..PlannedChange::new(action) };
    if now == wanted && req.prior.is_none() {
        c.note = Some("already as desired; tend will record it".into());
    }
    Ok(c)
}

/// Install (or remove) what is missing (or present), in one command.
pub async fn apply(t: &dyn Transport, req: &ApplyRequest) -> Result<Option<Observed>, ProviderError> {
    if req.action == Action::Delete {
        return Ok(None);
    }
    let config = req.config.as_ref().ok_or_else(|| ProviderError::terminal("no config to apply"))?;
    let names = names_of(config);
    let observed = req.observed.as_ref();
    let manager = observed.and_then(|o| get_str(&o.attributes, "manager")).unwrap_or("none");
    let installed = observed.map(|o| super::get_strings(&o.attributes, "installed")).unwrap_or_default();
    let absent = get_str(config, "state") == Some("absent");
    let todo: Vec<String> = names.iter().filter(|n| installed.contains(n) == absent).map(|n| quote(n)).collect();
    if !todo.is_empty() {
        let list = todo.join(" ");
        let cmd = match (manager, absent) {
            ("apt", false) => format!("DEBIAN_FRONTEND=noninteractive apt-get install -y -q {list}"),
            ("apt", true) => format!("DEBIAN_FRONTEND=noninteractive apt-get remove -y -q {list}"),
            ("dnf", false) => format!("dnf install -y -q {list}"),
            ("dnf", true) => format!("dnf remove -y -q {list}"),
            ("apk", false) => format!("apk add -q {list}"),
            ("apk", true) => format!("apk del -q {list}"),
            (other, _) => return Err(ProviderError::terminal(format!("no way to install packages with `{other}`"))),
        };
        let out = t.exec(&cmd, None).await?;
        if out.status != 0 {
            return Err(ProviderError::terminal(format!("{manager} exited with status {} on host `{}`", out.status, t.host()))
                .with_hint(super::last_lines(&out.stderr, 10)));
        }
    }
    let mut a = Attributes::new();
    a.insert("installed".into(), Value::List(if absent { Vec::new() } else { names.iter().map(|n| Value::from(n.as_str())).collect() }));
    a.insert("manager".into(), Value::from(manager));
    Ok(Some(Observed { id: None, attributes: a }))
}

/// `host.package`.
pub struct Package;

fn names(item: &tend_provider::ReadItem) -> Vec<String> {
    item.config.as_ref().map(|c| super::get_strings(c, "names")).unwrap_or_default()
}

#[async_trait]
impl super::HostKind for Package {
    fn name(&self) -> &'static str {
        "package"
    }
    fn schema(&self) -> KindSchema {
        schema()
    }
    fn exclusive(&self) -> bool {
        true
    }
    fn validate(&self, literal: &Attributes, _cx: super::Cx<'_>) -> Vec<FieldError> {
        validate(literal)
    }
    fn observe(&self, item: &tend_provider::ReadItem) -> super::Observe {
        super::Observe { script: item.config.as_ref().map(|_| observe_script(&names(item))), ..super::Observe::default() }
    }
    async fn observed(&self, item: &tend_provider::ReadItem, seen: super::Seen<'_>, _t: &dyn Transport) -> Result<Option<Observed>, ProviderError> {
        Ok(seen.probed.map(|o| observed(o, &names(item))))
    }
    fn plan(&self, req: &PlanRequest, _cx: super::Cx<'_>) -> Result<PlannedChange, ProviderError> {
        plan(req)
    }
    async fn apply(&self, t: &dyn Transport, req: &ApplyRequest, _cx: super::Cx<'_>) -> Result<Option<Observed>, ProviderError> {
        apply(t, req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dpkg_output() {
        let names = vec!["bash".to_string(), "nope".to_string()];
        let o = observed("manager=apt\nbash installed\n", &names);
        assert_eq!(o.attributes["manager"], Value::from("apt"));
        assert_eq!(o.attributes["installed"], Value::List(vec![Value::from("bash")]));
    }
}
