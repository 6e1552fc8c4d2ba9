//! `host.local`: the machine tend runs on.

use async_trait::async_trait;
use tend_provider::{Action, Attributes, FieldSchema, FieldType, KindSchema, Observed, PlanRequest, PlannedChange, Value};

/// Schema of `host.local`.
pub fn schema() -> KindSchema {
    KindSchema {
        kind: "local",
        target: true,
        doc: "the machine tend runs on, reached without a network",
        timeout: None,
        runs: false,
        fields: vec![
            FieldSchema::input("labels", FieldType::Map(Box::new(FieldType::String)), "labels for `on = { key = value }` selectors"),
            FieldSchema::input("vars", FieldType::Map(Box::new(FieldType::Any)), "host variables for templates"),
            FieldSchema::input(
                "generations",
                FieldType::Any,
                "keep the host's files as switchable generations: true, or { path = \"/var/lib/tend\", keep = 5 }",
            ),
            FieldSchema::input("health", FieldType::String, "command run after a generation switch; failing switches back"),
            FieldSchema::input(
                "command_timeout",
                FieldType::Int,
                "seconds a command (host.command, package, service, health) may run before it is stopped, default 3600",
            ),
            FieldSchema::output("hostname", FieldType::String, "the machine's host name"),
            FieldSchema::output("generation", FieldType::String, "the generation of files in use"),
            FieldSchema::output("kept_generations", FieldType::List(Box::new(FieldType::String)), "generations on the host, newest first"),
        ],
    }
}

fn hostname() -> String {
    hostname::get().map_or_else(|_| "localhost".into(), |h| h.to_string_lossy().into_owned())
}

/// The attributes a local host has.
pub fn attributes(config: &Attributes) -> Attributes {
    let mut a = Attributes::new();
    a.insert("hostname".into(), Value::from(hostname()));
    a.insert("labels".into(), config.get("labels").cloned().unwrap_or(Value::Map(tend_provider::Map::new())));
    for f in ["vars", "generations", "health", "command_timeout"] {
        if let Some(v) = config.get(f) {
            a.insert(f.into(), v.clone());
        }
    }
    a
}

/// Checks of literal config.
pub fn validate(literal: &Attributes) -> Vec<tend_provider::FieldError> {
    let mut errors = Vec::new();
    if let Some(t) = literal.get("command_timeout").and_then(Value::as_i64)
        && t < 1
    {
        errors.push(tend_provider::FieldError::field("command_timeout", format!("{t} is not a number of seconds (at least 1)")));
    }
    crate::generation::validate(literal, &mut errors);
    errors
}

/// Plan: a host is "created" when tend starts managing it; label changes are in-place.
pub fn plan(req: &PlanRequest) -> PlannedChange {
    let Some(config) = &req.config else {
        let mut c = PlannedChange::new(Action::Delete);
        c.before = req.prior.as_ref().map(|p| (*p.attributes).clone()).unwrap_or_default();
        c.note = Some("tend stops managing this host; nothing on it is touched by this step".into());
        return c;
    };
    let after = attributes(config);
    // What commits recorded (generations) is not config.
    let before = req.prior.as_ref().map(|p| {
        p.attributes.iter().filter(|(k, _)| !crate::generation::RECORDED.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect::<Attributes>()
    });
    let action = match &before {
        None => Action::Create,
        Some(b) if *b == after => Action::NoOp,
        Some(_) => Action::Update,
    };
    PlannedChange { before: before.unwrap_or_default(), after, ..PlannedChange::new(action) }
}

/// Apply: nothing to change on the machine itself.
pub fn apply(config: Option<&Attributes>) -> Option<Observed> {
    config.map(|c| Observed { id: Some(hostname()), attributes: attributes(c) })
}

/// `host.local`.
pub struct Local;

#[async_trait]
impl super::HostKind for Local {
    fn name(&self) -> &'static str {
        "local"
    }
    fn schema(&self) -> KindSchema {
        schema()
    }
    fn is_host(&self) -> bool {
        true
    }
    fn validate(&self, literal: &Attributes, _cx: super::Cx<'_>) -> Vec<tend_provider::FieldError> {
        validate(literal)
    }
    fn plan(&self, req: &PlanRequest, _cx: super::Cx<'_>) -> Result<PlannedChange, tend_provider::ProviderError> {
        Ok(plan(req))
    }
    async fn apply(
        &self,
        _t: &dyn crate::transport::Transport,
        req: &tend_provider::ApplyRequest,
        _cx: super::Cx<'_>,
    ) -> Result<Option<Observed>, tend_provider::ProviderError> {
        Ok(apply(req.config.as_ref()))
    }
}
