//! `host.line`: one line in a file, like Ansible's `lineinfile`.
//!
//! With `regexp`, the last line matching it is replaced by `line` (appended when none matches);
//! without, `line` is appended unless the file already has it. Other lines are left alone.

use async_trait::async_trait;
use tend_provider::{
    Action, ApplyRequest, Attributes, FieldError, FieldSchema, FieldType, KindSchema, Observed, PlanRequest, PlannedChange, ProviderError, Value,
};

use super::{desired_attrs, format_mode, get_str, required_str, validate_mode, validate_path};
use crate::transport::{FileType, PathStat, Transport};

/// Schema of `host.line`.
pub fn schema() -> KindSchema {
    KindSchema {
        kind: "line",
        doc: "ensure one line in a file (like lineinfile)",
        target: false,
        timeout: None,
        runs: false,
        fields: vec![
            FieldSchema::input("on", FieldType::Any, "host names, or a label selector table"),
            FieldSchema::input("path", FieldType::String, "absolute path of the file").required().forces_replacement().claims(tend_provider::Claim::Shared),
            FieldSchema::input("line", FieldType::String, "the line, without newline; may use {{ var }} host variables").required(),
            FieldSchema::input("regexp", FieldType::String, "replace the last line matching this regex instead of appending"),
            FieldSchema::input("vars", FieldType::Map(Box::new(FieldType::Any)), "variables for `line` (over the host's vars)"),
            FieldSchema::input("create", FieldType::Bool, "create the file when missing (default true)"),
            FieldSchema::input("mode", FieldType::String, "octal mode for a created file, default 0644"),
            FieldSchema::input("owner", FieldType::String, "owner of a created file"),
            FieldSchema::input("group", FieldType::String, "group of a created file"),
        ],
    }
}

/// The config with `line` and `regexp` rendered (they may use `{{ var }}` host variables).
pub fn rendered(config: &Attributes, target: Option<&tend_provider::Target>) -> Result<Attributes, ProviderError> {
    let mut out = config.clone();
    let ctx = super::template::Context::new(config, target);
    for field in ["line", "regexp"] {
        if let Some(text) = get_str(config, field).filter(|t| t.contains("{{") || t.contains("{%")) {
            if ctx.unknown {
                out.insert(field.into(), Value::Unknown);
            } else {
                out.insert(field.into(), Value::from(ctx.render(text, &format!("`{field}`"))?));
            }
        }
    }
    Ok(out)
}

/// Checks of literal config.
pub fn validate(literal: &Attributes) -> Vec<FieldError> {
    let mut errors = Vec::new();
    validate_path(literal, "path", &mut errors);
    validate_mode(literal, &mut errors);
    if let Some(r) = get_str(literal, "regexp").filter(|r| !r.contains("{{"))
        && let Err(e) = regex::Regex::new(r)
    {
        errors.push(FieldError::field("regexp", format!("not a valid regex: {e}")));
    }
    if get_str(literal, "line").is_some_and(|l| l.contains('\n')) {
        errors.push(FieldError::field("line", "`line` must be a single line").with_hint("use host.file for whole contents"));
    }
    errors
}

/// Observed: the path and the line that matters now (the matching line, or `line` if present).
pub fn observed(stat: &PathStat, config: Option<&Attributes>) -> Option<Observed> {
    stat.file_type?;
    let mut a = Attributes::new();
    a.insert("path".into(), Value::from(stat.path.as_str()));
    if stat.file_type != Some(FileType::File) {
        a.insert("type".into(), Value::from(super::file::type_name(stat.file_type.unwrap_or(FileType::Other))));
        return Some(Observed { id: None, attributes: a });
    }
    let text = String::from_utf8_lossy(stat.content.as_deref().unwrap_or_default()).into_owned();
    let current = config.and_then(|c| current_line(&text, c));
    a.insert("line".into(), current.map_or(Value::Null, Value::from));
    a.insert("mode".into(), Value::from(format_mode(stat.mode).as_str()));
    Some(Observed { id: None, attributes: a })
}

/// The line `config` is about, as the file has it now.
fn current_line(text: &str, config: &Attributes) -> Option<String> {
    let line = get_str(config, "line")?;
    match get_str(config, "regexp").and_then(|r| regex::Regex::new(r).ok()) {
        Some(re) => text.lines().rfind(|l| re.is_match(l)).map(str::to_string),
        None => text.lines().find(|l| *l == line).map(str::to_string),
    }
}

/// The file's new content.
pub fn edit(text: &str, config: &Attributes) -> String {
    let line = get_str(config, "line").unwrap_or_default();
    let re = get_str(config, "regexp").and_then(|r| regex::Regex::new(r).ok());
    let mut lines: Vec<&str> = text.lines().collect();
    let target = match &re {
        Some(re) => lines.iter().rposition(|l| re.is_match(l)),
        None => lines.iter().position(|l| *l == line),
    };
    match target {
        Some(i) => lines[i] = line,
        None => lines.push(line),
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Plan one line.
pub fn plan(req: &PlanRequest) -> Result<PlannedChange, ProviderError> {
    let observed = req.observed.as_ref();
    let Some(config) = &req.config else {
        let mut c = PlannedChange::new(Action::Delete);
        c.before = observed.map(|o| o.attributes.clone()).unwrap_or_default();
        c.note = Some("the line stays in the file; tend stops managing it".into());
        return Ok(c);
    };
    if let Some(t) = observed.and_then(|o| get_str(&o.attributes, "type")) {
        return Err(ProviderError::terminal(format!("{} exists and is a {t}, not a file", get_str(config, "path").unwrap_or_default())));
    }
    let create = config.get("create").and_then(Value::as_bool).unwrap_or(true);
    if observed.is_none() && !create {
        return Err(ProviderError::terminal(format!("{} does not exist and `create` is false", get_str(config, "path").unwrap_or_default())));
    }
    let mut after = Attributes::new();
    after.insert("path".into(), config.get("path").cloned().unwrap_or(Value::Null));
    after.insert("line".into(), config.get("line").cloned().unwrap_or(Value::Null));
    let before = super::before_for(observed, &after);
    let action = if observed.is_none() {
        Action::Create
    } else if before.get("line") != after.get("line") {
        Action::Update
    } else if req.prior.is_none() {
        Action::Create
    } else {
        Action::NoOp
    };
    Ok(PlannedChange { before, after, ..PlannedChange::new(action) })
}

/// Apply: read, edit, write back atomically (keeping the file's mode when it exists).
pub async fn apply(t: &dyn Transport, req: &ApplyRequest) -> Result<Option<Observed>, ProviderError> {
    if req.action == Action::Delete {
        return Ok(None);
    }
    let config = req.config.as_ref().ok_or_else(|| ProviderError::terminal("no config to apply"))?;
    let path = required_str(config, "path")?;
    let existing = t.read_file(path).await?;
    let text = String::from_utf8_lossy(existing.as_deref().unwrap_or_default()).into_owned();
    let new = edit(&text, config);
    if existing.is_none() || new != text {
        let mut attrs = desired_attrs(config);
        if existing.is_some() {
            attrs.mode = req.observed.as_ref().and_then(|o| get_str(&o.attributes, "mode")).and_then(super::parse_mode).or(attrs.mode);
        }
        t.write_file(path, new.as_bytes(), &attrs).await?;
    }
    let mut a = Attributes::new();
    a.insert("path".into(), Value::from(path));
    a.insert("line".into(), config.get("line").cloned().unwrap_or(Value::Null));
    Ok(Some(Observed { id: None, attributes: a }))
}

/// `host.line`.
pub struct Line;

#[async_trait]
impl super::HostKind for Line {
    fn name(&self) -> &'static str {
        "line"
    }
    fn schema(&self) -> KindSchema {
        schema()
    }
    fn validate(&self, literal: &Attributes, _cx: super::Cx<'_>) -> Vec<FieldError> {
        validate(literal)
    }
    fn observe(&self, item: &tend_provider::ReadItem) -> super::Observe {
        let path = super::file::observe_path(item.config.as_ref(), item.prior.as_ref().map(|p| &*p.attributes));
        super::Observe { path: path.map(|path| crate::transport::StatRequest { path, hash: false, content: true }), claims: true, script: None }
    }
    async fn observed(&self, item: &tend_provider::ReadItem, seen: super::Seen<'_>, _t: &dyn Transport) -> Result<Option<Observed>, ProviderError> {
        let config = item.config.as_ref().map(|c| rendered(c, item.target.as_ref())).transpose()?;
        Ok(seen.stat.and_then(|s| observed(s, config.as_ref())))
    }
    fn plan(&self, req: &PlanRequest, _cx: super::Cx<'_>) -> Result<PlannedChange, ProviderError> {
        let config = req.config.as_ref().map(|c| rendered(c, req.target.as_ref())).transpose()?;
        plan(&PlanRequest { config, ..req.clone() })
    }
    async fn apply(&self, t: &dyn Transport, req: &ApplyRequest, _cx: super::Cx<'_>) -> Result<Option<Observed>, ProviderError> {
        let config = req.config.as_ref().map(|c| rendered(c, req.target.as_ref())).transpose()?;
        apply(t, &ApplyRequest { config, ..req.clone() }).await
    }
    /// The whole file before and after the edit (its other lines as context).
    async fn content(&self, req: &PlanRequest, change: &PlannedChange, _cx: super::Cx<'_>, t: Option<&dyn Transport>) -> Vec<tend_provider::ContentChange> {
        if !matches!(change.action, Action::Create | Action::Update) {
            return Vec::new();
        }
        let Some(Ok(config)) = req.config.as_ref().map(|c| rendered(c, req.target.as_ref())) else { return Vec::new() };
        if config.values().chain(change.before.values()).chain(change.after.values()).any(Value::is_sensitive) {
            return vec![tend_provider::ContentChange::sensitive("file")];
        }
        if config.values().any(|v| !v.is_known()) {
            return vec![tend_provider::ContentChange { field: "file".into(), summary: Some("(known after apply)".into()), ..Default::default() }];
        }
        let Some(path) = get_str(&config, "path") else { return Vec::new() };
        let before = match (req.observed.is_some(), t) {
            (true, Some(t)) => t.read_file(path).await.ok().flatten(),
            _ => None,
        };
        let after = edit(&String::from_utf8_lossy(before.as_deref().unwrap_or_default()), &config);
        vec![tend_provider::ContentChange::of("file", before.as_deref(), Some(after.as_bytes()))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(line: &str, regexp: Option<&str>) -> Attributes {
        let mut a = Attributes::new();
        a.insert("line".into(), Value::from(line));
        if let Some(r) = regexp {
            a.insert("regexp".into(), Value::from(r));
        }
        a
    }

    #[test]
    fn replaces_the_last_match_or_appends() {
        let c = cfg("max_conn=105", Some("^max_conn="));
        assert_eq!(edit("a=1\nmax_conn=1\nb=2\nmax_conn=2\n", &c), "a=1\nmax_conn=1\nb=2\nmax_conn=105\n");
        assert_eq!(edit("a=1", &c), "a=1\nmax_conn=105\n");
        assert_eq!(edit("", &c), "max_conn=105\n");
        let plain = cfg("x", None);
        assert_eq!(edit("x\ny\n", &plain), "x\ny\n");
        assert_eq!(current_line("a\nmax_conn=7\n", &c).as_deref(), Some("max_conn=7"));
    }
}
