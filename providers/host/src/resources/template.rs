//! `host.template`: a file rendered from a Jinja-style template in the config repository.
//!
//! The template sees the host's `vars` (from its `host.ssh`/`host.local` table), then the
//! resource's own `vars`, and `hostname` (the host's name in config). Undefined variables are
//! errors. Rendered, it is a `host.file` in every other respect.

use std::path::Path;

use tend_provider::{Attributes, FieldError, FieldSchema, FieldType, KindSchema, ProviderError, Target, Value};

use super::{get_str, validate_mode, validate_path};

/// Schema of `host.template`.
pub fn schema() -> KindSchema {
    KindSchema {
        kind: "template",
        doc: "a file rendered from a template in the config repository, per host",
        target: false,
        fields: vec![
            FieldSchema::input("on", FieldType::Any, "host names, or a label selector table"),
            FieldSchema::input("path", FieldType::String, "absolute path on the host").required().forces_replacement(),
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
    if let Some(src) = get_str(literal, "source")
        && !root.join(src).is_file() {
            errors.push(FieldError::field("source", format!("template `{src}` does not exist")).with_hint("`source` is relative to the config directory"));
        }
    errors
}

/// The config of the file this template renders to: `content` = the rendering (sensitive when a
/// variable is), `source` and `vars` removed. `None` while a variable is only known after apply.
pub fn as_file(config: &Attributes, target: Option<&Target>, root: &Path) -> Result<Option<Attributes>, ProviderError> {
    let src = get_str(config, "source").ok_or_else(|| ProviderError::terminal("`source` is not set"))?;
    let mut ctx = serde_json::Map::new();
    let mut sensitive = false;
    let mut unknown = false;
    let mut add = |vars: Option<&Value>, ctx: &mut serde_json::Map<String, serde_json::Value>| {
        if let Some(m) = vars.and_then(Value::as_map) {
            for (k, v) in m {
                sensitive |= v.is_sensitive();
                unknown |= !v.is_known();
                ctx.insert(k.clone(), v.to_json_revealed());
            }
        }
    };
    if let Some(t) = target {
        ctx.insert("hostname".into(), serde_json::Value::String(t.addr.name.to_string()));
        add(t.attributes.get("vars"), &mut ctx);
    }
    add(config.get("vars"), &mut ctx);
    let mut file = config.clone();
    file.remove("source");
    file.remove("vars");
    if unknown {
        file.insert("content".into(), Value::Unknown);
        return Ok(Some(file));
    }
    let path = root.join(src);
    let text = fs_err::read_to_string(&path)
        .map_err(|e| ProviderError::terminal(format!("template `{src}` cannot be read")).with_source(e))?;
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    let rendered = env.render_str(&text, serde_json::Value::Object(ctx)).map_err(|e| {
        let line = e.line().map(|l| format!(" line {l}")).unwrap_or_default();
        ProviderError::terminal(format!("template `{src}`{line}: {}", e.detail().unwrap_or("cannot be rendered")))
            .with_hint("variables come from the host's `vars`, the resource's `vars`, and `hostname`")
    })?;
    let content = Value::String(rendered);
    file.insert("content".into(), if sensitive { content.sensitive() } else { content });
    Ok(Some(file))
}
