//! `host.service`: a systemd unit enabled and/or running; restarted when what it watches changes.

use async_trait::async_trait;
use tend_provider::{Action, ApplyRequest, Attributes, FieldSchema, FieldType, KindSchema, Observed, PlanRequest, PlannedChange, ProviderError, Value};

use super::{get_str, required_str};
use crate::transport::{Transport, quote};

/// Schema of `host.service`.
pub fn schema() -> KindSchema {
    KindSchema {
        kind: "service",
        doc: "a systemd unit: enabled, running, restarted on change",
        target: false,
        timeout: None,
        runs: false,
        fields: vec![
            FieldSchema::input("on", FieldType::Any, "host names, or a label selector table"),
            FieldSchema::input("name", FieldType::String, "unit name, e.g. nginx or nginx.service").required(),
            FieldSchema::input("enabled", FieldType::Bool, "started at boot"),
            FieldSchema::input("running", FieldType::Bool, "active now"),
            FieldSchema::input("restart_on", FieldType::AddressList, "restart when any of these resources change"),
        ],
    }
}

/// One command reporting `systemctl is-enabled` and `is-active` for the unit.
pub fn observe_script(name: &str) -> String {
    let n = quote(name);
    format!(
        "if ! command -v systemctl >/dev/null 2>&1 || [ ! -d /run/systemd/system ]; then echo systemd=none; exit 0; fi; \
         echo enabled=$(systemctl is-enabled {n} 2>/dev/null || true); echo active=$(systemctl is-active {n} 2>/dev/null || true); exit 0"
    )
}

/// Parse the observe command's output.
pub fn observed(stdout: &str) -> Observed {
    let get = |k: &str| stdout.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).unwrap_or_default().trim().to_string();
    let mut a = Attributes::new();
    if stdout.contains("systemd=none") {
        a.insert("systemd".into(), Value::Bool(false));
    } else {
        a.insert("enabled".into(), Value::Bool(get("enabled") == "enabled"));
        a.insert("running".into(), Value::Bool(get("active") == "active"));
    }
    Observed { id: None, attributes: a }
}

/// Plan the unit's state; a watched change restarts it.
pub fn plan(req: &PlanRequest) -> Result<PlannedChange, ProviderError> {
    let Some(config) = &req.config else {
        let mut c = PlannedChange::new(Action::Delete);
        c.note = Some("the service is left as it is; tend stops managing it".into());
        return Ok(c);
    };
    let observed = req.observed.as_ref().ok_or_else(|| ProviderError::terminal("the service could not be observed"))?;
    if observed.attributes.get("systemd") == Some(&Value::Bool(false)) {
        return Err(ProviderError::terminal(format!("cannot manage service `{}`: the host does not run systemd", get_str(config, "name").unwrap_or_default())));
    }
    let mut after = Attributes::new();
    let mut before = Attributes::new();
    for f in ["enabled", "running"] {
        if let Some(v) = config.get(f) {
            after.insert(f.into(), v.clone());
            before.insert(f.into(), observed.attributes.get(f).cloned().unwrap_or(Value::Null));
        }
    }
    let mut c = PlannedChange { before: before.clone(), after: after.clone(), ..PlannedChange::new(Action::NoOp) };
    if before != after {
        c.action = if req.prior.is_none() { Action::Create } else { Action::Update };
    } else if !req.upstream_changes.is_empty() {
        c.action = Action::Update;
        c.triggered_by = req.upstream_changes.iter().cloned().collect();
        c.note = Some("restart".into());
    } else if req.prior.is_none() {
        c.action = Action::Create;
    }
    Ok(c)
}

/// Enable/disable, start/stop, or restart.
pub async fn apply(t: &dyn Transport, req: &ApplyRequest, restart: bool) -> Result<Option<Observed>, ProviderError> {
    if req.action == Action::Delete {
        return Ok(None);
    }
    let config = req.config.as_ref().ok_or_else(|| ProviderError::terminal("no config to apply"))?;
    let n = quote(required_str(config, "name")?);
    let mut steps = Vec::new();
    match config.get("enabled").and_then(Value::as_bool) {
        Some(true) => steps.push(format!("systemctl enable {n}")),
        Some(false) => steps.push(format!("systemctl disable {n}")),
        None => {}
    }
    match (config.get("running").and_then(Value::as_bool), restart) {
        (Some(false), _) => steps.push(format!("systemctl stop {n}")),
        (_, true) => steps.push(format!("systemctl restart {n}")),
        (Some(true), false) => steps.push(format!("systemctl start {n}")),
        (None, false) => {}
    }
    if !steps.is_empty() {
        let out = t.exec(&steps.join(" && "), None).await?;
        if out.status != 0 {
            return Err(
                ProviderError::terminal(format!("systemctl exited with status {} on host `{}`", out.status, t.host())).with_hint(out.stderr.trim().to_string())
            );
        }
    }
    let mut a = Attributes::new();
    for f in ["enabled", "running"] {
        if let Some(v) = config.get(f) {
            a.insert(f.into(), v.clone());
        }
    }
    Ok(Some(Observed { id: None, attributes: a }))
}

/// `host.service`.
pub struct Service;

#[async_trait]
impl super::HostKind for Service {
    fn name(&self) -> &'static str {
        "service"
    }
    fn schema(&self) -> KindSchema {
        schema()
    }
    fn exclusive(&self) -> bool {
        true
    }
    fn observe(&self, item: &tend_provider::ReadItem) -> super::Observe {
        super::Observe { script: item.config.as_ref().and_then(|c| get_str(c, "name")).map(observe_script), ..super::Observe::default() }
    }
    async fn observed(&self, _item: &tend_provider::ReadItem, seen: super::Seen<'_>, _t: &dyn Transport) -> Result<Option<Observed>, ProviderError> {
        Ok(seen.probed.map(observed))
    }
    fn plan(&self, req: &PlanRequest, _cx: super::Cx<'_>) -> Result<PlannedChange, ProviderError> {
        plan(req)
    }
    async fn apply(&self, t: &dyn Transport, req: &ApplyRequest, _cx: super::Cx<'_>) -> Result<Option<Observed>, ProviderError> {
        // An update whose enabled/running already match is a restart on change.
        let matches = req.config.as_ref().is_some_and(|c| {
            ["enabled", "running"].iter().all(|f| c.get(f).is_none_or(|v| req.observed.as_ref().and_then(|o| o.attributes.get(f)) == Some(v)))
        });
        apply(t, req, req.action == Action::Update && matches).await
    }
}
