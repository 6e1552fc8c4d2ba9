//! `host.template`: a file rendered from a Jinja-style template in the config repository.
//!
//! The template sees the host's `vars` (from its `host.ssh`/`host.local` table), then the
//! resource's own `vars`, and `hostname` (the host's name in config). Undefined variables are
//! errors. Rendered, it is a `host.file` in every other respect.

use std::path::Path;

use async_trait::async_trait;
use tend_provider::{Attributes, FieldError, FieldSchema, FieldType, KindSchema, ProviderError, Target, Value};

use super::{get_str, validate_mode, validate_path};

/// Schema of `host.template`.
pub fn schema() -> KindSchema {
    KindSchema {
        kind: "template",
        doc: "a file rendered from a template in the config repository, per host",
        target: false,
        timeout: None,
        runs: false,
        fields: vec![
            FieldSchema::input("on", FieldType::Any, "host names, or a label selector table"),
            FieldSchema::input("path", FieldType::String, "absolute path on the host").required().forces_replacement().claims(tend_provider::Claim::Exclusive),
            FieldSchema::input("source", FieldType::String, "the template (Jinja syntax), relative to the config directory").required(),
            FieldSchema::input("vars", FieldType::Map(Box::new(FieldType::Any)), "variables for this template (over the host's vars)"),
            FieldSchema::input("mode", FieldType::String, "octal mode, default 0644 for new files"),
            FieldSchema::input("owner", FieldType::String, "owner user name"),
            FieldSchema::input("group", FieldType::String, "owner group name"),
            FieldSchema::output("sha256", FieldType::String, "hex SHA-256 of the rendered content"),
            FieldSchema::output("size", FieldType::Int, "size in bytes"),
        ],
    }
}

/// Checks of literal config.
pub fn validate(literal: &Attributes, root: &Path) -> Vec<FieldError> {
    let mut errors = Vec::new();
    validate_path(literal, "path", &mut errors);
    validate_mode(literal, &mut errors);
    if let Some(src) = get_str(literal, "source") {
        match tend_provider::resolve_inside(root, src) {
            Ok(p) if p.is_file() => {}
            Ok(_) => {
                errors.push(FieldError::field("source", format!("template `{src}` is not a file")).with_hint("`source` is relative to the config directory"));
            }
            Err(e) => errors.push(FieldError::field("source", format!("template {e}")).with_hint(e.hint())),
        }
    }
    errors
}

/// Before anything is observed (`tend validate` too): each host a template is placed on must
/// define every variable the template uses (`hostname`, the host's `vars`, the resource's
/// `vars`); a variable computed from a reference is not checked here.
pub fn check_variables(req: &tend_provider::ExpandRequest<'_>, instances: &[tend_provider::Instance], root: &Path) -> Result<(), FieldError> {
    let Some(src) = get_str(req.literal, "source") else { return Ok(()) };
    let Ok(path) = tend_provider::resolve_inside(root, src) else { return Ok(()) }; // validate reports it
    let Ok(text) = fs_err::read_to_string(path) else { return Ok(()) };
    let env = minijinja::Environment::new();
    let Ok(template) = env.template_from_str(&text) else { return Ok(()) }; // rendering reports it
    let globals: Vec<&str> = env.globals().map(|(name, _)| name).collect();
    let keys = |v: Option<&Value>| -> Option<Vec<String>> {
        match v {
            None => Some(Vec::new()),
            Some(Value::Map(m)) => Some(m.keys().map(ToString::to_string).collect()),
            Some(_) => None,
        }
    };
    let Some(own) = keys(req.literal.get("vars")) else { return Ok(()) };
    let used = template.undeclared_variables(false);
    for inst in instances {
        let Some(host) = inst.target.as_ref().and_then(|t| req.siblings.iter().find(|s| s.addr == *t)) else { continue };
        let Some(host_vars) = keys(host.literal.get("vars")) else { continue };
        let mut missing: Vec<&String> =
            used.iter().filter(|v| *v != "hostname" && !globals.contains(&v.as_str()) && !own.contains(v) && !host_vars.contains(v)).collect();
        if !missing.is_empty() {
            missing.sort();
            let names: Vec<String> = missing.iter().map(|v| format!("`{v}`")).collect();
            return Err(FieldError::field("source", format!("template `{src}` uses {} that host `{}` does not define", names.join(", "), host.addr.name))
                .with_hint("variables come from the host's `vars`, the resource's `vars`, and `hostname`"));
        }
    }
    Ok(())
}

/// Template variables: `hostname`, the host's `vars`, then `vars` of the resource; and whether any
/// is sensitive or still unknown.
pub struct Context {
    vars: serde_json::Map<String, serde_json::Value>,
    /// A variable comes from a secret.
    pub sensitive: bool,
    /// A variable is only known after apply.
    pub unknown: bool,
}

impl Context {
    /// The variables a resource on `target` sees.
    pub fn new(config: &Attributes, target: Option<&Target>) -> Self {
        let mut c = Self { vars: serde_json::Map::new(), sensitive: false, unknown: false };
        if let Some(t) = target {
            c.vars.insert("hostname".into(), serde_json::Value::String(t.addr.name.to_string()));
            c.add(t.attributes.get("vars"));
        }
        c.add(config.get("vars"));
        c
    }

    fn add(&mut self, vars: Option<&Value>) {
        if let Some(m) = vars.and_then(Value::as_map) {
            for (k, v) in m {
                self.sensitive |= v.is_sensitive();
                self.unknown |= !v.is_known();
                self.vars.insert(k.to_string(), v.to_json_revealed());
            }
        }
    }

    /// Render `text` (named `what` in errors); strict about undefined variables.
    pub fn render(&self, text: &str, what: &str) -> Result<String, ProviderError> {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.render_str(text, serde_json::Value::Object(self.vars.clone())).map_err(|e| {
            let line = e.line().map(|l| format!(" line {l}")).unwrap_or_default();
            // Name the variables the template uses that nothing defines.
            let missing: Vec<String> = env
                .template_from_str(text)
                .map(|t| t.undeclared_variables(false).into_iter().filter(|v| !self.vars.contains_key(v)).collect::<std::collections::BTreeSet<_>>())
                .unwrap_or_default()
                .into_iter()
                .map(|v| format!("`{v}`"))
                .collect();
            let detail = if e.kind() == minijinja::ErrorKind::UndefinedError && !missing.is_empty() {
                format!("undefined variable{} {}", if missing.len() == 1 { "" } else { "s" }, missing.join(", "))
            } else {
                e.detail().unwrap_or("cannot be rendered").to_string()
            };
            let defined: Vec<&str> = self.vars.keys().map(String::as_str).collect();
            ProviderError::terminal(format!("{what}{line}: {detail}"))
                .with_hint(format!("variables come from the host's `vars`, the resource's `vars`, and `hostname`; defined here: {}", defined.join(", ")))
        })
    }
}

/// The config of the file this template renders to: `content` = the rendering (sensitive when a
/// variable is), `source` and `vars` removed. Unknown content while a variable is only known
/// after apply.
pub fn as_file(config: &Attributes, target: Option<&Target>, root: &Path) -> Result<Option<Attributes>, ProviderError> {
    let src = get_str(config, "source").ok_or_else(|| ProviderError::terminal("`source` is not set"))?;
    let ctx = Context::new(config, target);
    let mut file = config.clone();
    file.remove("source");
    file.remove("vars");
    if ctx.unknown {
        file.insert("content".into(), Value::Unknown);
        return Ok(Some(file));
    }
    let text = fs_err::read_to_string(tend_provider::resolve_inside(root, src)?)
        .map_err(|e| ProviderError::terminal(format!("template `{src}` cannot be read")).with_source(e))?;
    let content = Value::from(ctx.render(&text, &format!("template `{src}`"))?);
    file.insert("content".into(), if ctx.sensitive { content.sensitive() } else { content });
    Ok(Some(file))
}

/// `host.template`: rendered, a `host.file` in every other respect.
pub struct Template;

#[async_trait]
impl super::HostKind for Template {
    fn name(&self) -> &'static str {
        "template"
    }
    fn schema(&self) -> KindSchema {
        schema()
    }
    fn staged(&self) -> bool {
        true
    }
    fn validate(&self, literal: &Attributes, cx: super::Cx<'_>) -> Vec<FieldError> {
        validate(literal, cx.config_root)
    }
    fn observe(&self, item: &tend_provider::ReadItem) -> super::Observe {
        super::file::observe_file(item, true)
    }
    async fn observed(
        &self,
        _item: &tend_provider::ReadItem,
        seen: super::Seen<'_>,
        _t: &dyn crate::transport::Transport,
    ) -> Result<Option<tend_provider::Observed>, ProviderError> {
        Ok(super::file::observed_file(seen))
    }
    /// What `plan` would find when rendering, found at expansion: variables nothing defines.
    fn check_expanded(&self, req: &tend_provider::ExpandRequest<'_>, instances: &[tend_provider::Instance], cx: super::Cx<'_>) -> Result<(), FieldError> {
        check_variables(req, instances, cx.config_root)
    }
    fn plan(&self, req: &tend_provider::PlanRequest, cx: super::Cx<'_>) -> Result<tend_provider::PlannedChange, ProviderError> {
        let config = match &req.config {
            Some(c) => as_file(c, req.target.as_ref(), cx.config_root)?,
            None => None,
        };
        super::file::plan(&tend_provider::PlanRequest { config, ..req.clone() }, cx.config_root, cx.generations.is_some(), cx.stream.is_some())
    }
    async fn apply(
        &self,
        t: &dyn crate::transport::Transport,
        req: &tend_provider::ApplyRequest,
        cx: super::Cx<'_>,
    ) -> Result<Option<tend_provider::Observed>, ProviderError> {
        let config = match &req.config {
            Some(c) => as_file(c, req.target.as_ref(), cx.config_root)?,
            None => None,
        };
        super::file::apply(t, &tend_provider::ApplyRequest { config, ..req.clone() }, cx.config_root, cx.generations, cx.stream).await
    }
    /// The rendered result's change.
    async fn content(
        &self,
        req: &tend_provider::PlanRequest,
        change: &tend_provider::PlannedChange,
        cx: super::Cx<'_>,
        t: Option<&dyn crate::transport::Transport>,
    ) -> Vec<tend_provider::ContentChange> {
        match req.config.as_ref().map(|c| as_file(c, req.target.as_ref(), cx.config_root)) {
            Some(Ok(Some(config))) => super::file::content_change(&config, req, change, cx.config_root, t).await,
            _ => Vec::new(),
        }
    }
}
