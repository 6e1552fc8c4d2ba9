//! `host.directory`: a directory with given mode and ownership.

use async_trait::async_trait;
use tend_provider::{
    Action, ApplyRequest, Attributes, FieldError, FieldSchema, FieldType, KindSchema, Observed, PlanRequest, PlannedChange, ProviderError, Value,
};

use super::{before_for, converge_action, desired_attrs, format_mode, get_str, required_str, validate_mode, validate_path};
use crate::transport::{FileType, PathStat, Transport};

/// Schema of `host.directory`.
pub fn schema() -> KindSchema {
    KindSchema {
        kind: "directory",
        target: false,
        doc: "a directory on a host",
        timeout: None,
        runs: false,
        fields: vec![
            FieldSchema::input("on", FieldType::Any, "host names, or a label selector table"),
            FieldSchema::input("path", FieldType::String, "absolute path on the host").required().forces_replacement().claims(tend_provider::Claim::Exclusive),
            FieldSchema::input("mode", FieldType::String, "octal mode, default 0755 for new directories"),
            FieldSchema::input("owner", FieldType::String, "owner user name"),
            FieldSchema::input("group", FieldType::String, "owner group name"),
        ],
    }
}

/// Checks of literal config.
pub fn validate(literal: &Attributes) -> Vec<FieldError> {
    let mut errors = Vec::new();
    validate_path(literal, "path", &mut errors);
    validate_mode(literal, &mut errors);
    errors
}

/// Turn a stat into observed attributes.
pub fn observed(stat: &PathStat) -> Option<Observed> {
    let ft = stat.file_type?;
    let mut a = Attributes::new();
    a.insert("path".into(), Value::from(stat.path.as_str()));
    a.insert("mode".into(), Value::from(format_mode(stat.mode).as_str()));
    a.insert("owner".into(), Value::from(stat.owner.as_str()));
    a.insert("group".into(), Value::from(stat.group.as_str()));
    if ft != FileType::Directory {
        a.insert("type".into(), Value::from(super::file::type_name(ft)));
    }
    Some(Observed { id: None, attributes: a })
}

fn desired(config: &Attributes, observed: Option<&Observed>) -> Attributes {
    let mut a = Attributes::new();
    a.insert("path".into(), config.get("path").cloned().unwrap_or(Value::Null));
    let mode = match config.get("mode") {
        Some(v) => v.clone(),
        None => observed.and_then(|o| o.attributes.get("mode").cloned()).unwrap_or_else(|| Value::from("0755")),
    };
    a.insert("mode".into(), mode);
    for f in ["owner", "group"] {
        if let Some(v) = config.get(f) {
            a.insert(f.into(), v.clone());
        }
    }
    a
}

/// Plan one directory.
pub fn plan(req: &PlanRequest) -> Result<PlannedChange, ProviderError> {
    let observed = req.observed.as_ref();
    let Some(config) = &req.config else {
        let mut c = PlannedChange::new(Action::Delete);
        c.before = observed.map(|o| o.attributes.clone()).unwrap_or_default();
        return Ok(c);
    };
    if let Some(t) = observed.and_then(|o| get_str(&o.attributes, "type")) {
        let path = get_str(config, "path").unwrap_or_default();
        return Err(ProviderError::terminal(format!("{path} exists and is a {t}, not a directory")).with_hint("remove it by hand or choose another path"));
    }
    let after = desired(config, observed);
    let before = before_for(observed, &after);
    let prior_path = req.prior.as_ref().and_then(|p| get_str(&p.attributes, "path"));
    let action = if prior_path.is_some_and(|p| Some(&Value::from(p)) != config.get("path")) && observed.is_some() {
        Action::Replace { create_first: false }
    } else {
        converge_action(observed.is_some(), req.prior.is_some(), &before, &after)
    };
    let mut c = PlannedChange { before, after, ..PlannedChange::new(action) };
    if matches!(action, Action::Replace { .. }) {
        c.requires_replace = vec!["path".into()];
    }
    if action == Action::Create && observed.is_some() {
        c.note = Some("already as desired; tend will record it".into());
    }
    Ok(c)
}

/// Apply one step.
pub async fn apply(t: &dyn Transport, req: &ApplyRequest) -> Result<Option<Observed>, ProviderError> {
    if req.action == Action::Delete {
        if let Some(path) = req.observed.as_ref().and_then(|o| get_str(&o.attributes, "path")) {
            t.remove_dir(path).await.map_err(|e| {
                let not_empty = e.source.raw_os_error() == Some(39);
                let err = ProviderError::from(e);
                if not_empty {
                    err.with_hint("the directory holds files tend does not manage; remove them, or forget the directory with `tend state rm`")
                } else {
                    err
                }
            })?;
        }
        return Ok(None);
    }
    let config = req.config.as_ref().ok_or_else(|| ProviderError::terminal("no config to apply"))?;
    let path = required_str(config, "path")?;
    let mut attrs = desired_attrs(config);
    if attrs.mode.is_none() && req.observed.is_none() {
        attrs.mode = Some(0o755);
    }
    t.create_dir(path, &attrs).await?;
    Ok(Some(Observed { id: None, attributes: desired(config, req.observed.as_ref()) }))
}

/// `host.directory`.
pub struct Directory;

#[async_trait]
impl super::HostKind for Directory {
    fn name(&self) -> &'static str {
        "directory"
    }
    fn schema(&self) -> KindSchema {
        schema()
    }
    fn validate(&self, literal: &Attributes, _cx: super::Cx<'_>) -> Vec<FieldError> {
        validate(literal)
    }
    fn observe(&self, item: &tend_provider::ReadItem) -> super::Observe {
        super::file::observe_file(item, false)
    }
    async fn observed(&self, _item: &tend_provider::ReadItem, seen: super::Seen<'_>, _t: &dyn Transport) -> Result<Option<Observed>, ProviderError> {
        Ok(seen.stat.and_then(observed))
    }
    fn plan(&self, req: &PlanRequest, _cx: super::Cx<'_>) -> Result<PlannedChange, ProviderError> {
        plan(req)
    }
    async fn apply(&self, t: &dyn Transport, req: &ApplyRequest, _cx: super::Cx<'_>) -> Result<Option<Observed>, ProviderError> {
        apply(t, req).await
    }
}
