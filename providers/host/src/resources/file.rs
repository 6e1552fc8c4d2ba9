//! `host.file`: a file with given content, mode and ownership, written atomically.

use std::path::Path;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tend_provider::{
    Action, ApplyRequest, Attributes, FieldError, FieldSchema, FieldType, KindSchema, Observed, PlanRequest, PlannedChange, ProviderError, Value,
};

use super::{before_for, desired_attrs, format_mode, get_str, is_unknown, required_str, validate_mode, validate_path};
use crate::transport::{FileAttrs, FileType, PathStat, Transport};

/// Schema of `host.file`.
pub fn schema() -> KindSchema {
    KindSchema {
        kind: "file",
        target: false,
        doc: "a file on a host, written atomically",
        timeout: None,
        runs: false,
        fields: vec![
            FieldSchema::input("on", FieldType::Any, "host names, or a label selector table"),
            FieldSchema::input("path", FieldType::String, "absolute path on the host").required().forces_replacement().claims(tend_provider::Claim::Exclusive),
            FieldSchema::input("content", FieldType::String, "the file's content"),
            FieldSchema::input("source", FieldType::String, "a file in the config repository to copy"),
            FieldSchema::input("mode", FieldType::String, "octal mode, default 0644 for new files"),
            FieldSchema::input("owner", FieldType::String, "owner user name"),
            FieldSchema::input("group", FieldType::String, "owner group name"),
            FieldSchema::output("sha256", FieldType::String, "hex SHA-256 of the content"),
            FieldSchema::output("size", FieldType::Int, "size in bytes"),
        ],
    }
}

/// Checks of literal config.
pub fn validate(literal: &Attributes, config_root: &Path) -> Vec<FieldError> {
    let mut errors = Vec::new();
    validate_path(literal, "path", &mut errors);
    validate_mode(literal, &mut errors);
    let has = |f: &str| literal.contains_key(f);
    match (has("content"), has("source")) {
        (true, true) => errors.push(
            FieldError::field("source", "set either `content` or `source`, not both")
                .with_hint("`content` is the text itself; `source` names a file in the config repository"),
        ),
        (false, false) => {
            errors.push(FieldError::resource("a file needs `content` or `source`").with_hint("e.g. content = \"hello\\n\" or source = \"files/motd\""));
        }
        _ => {}
    }
    if let Some(src) = get_str(literal, "source")
        && let Err(e) = resolve_source(config_root, src)
    {
        errors.push(FieldError::field("source", e.message).with_hint(e.hint.unwrap_or_default()));
    }
    errors
}

/// The path `read` should observe: what was applied last, else what config asks for.
pub fn observe_path(config: Option<&Attributes>, prior: Option<&Attributes>) -> Option<String> {
    prior.and_then(|p| get_str(p, "path")).or_else(|| config.and_then(|c| get_str(c, "path"))).map(str::to_string)
}

/// Turn a stat into observed attributes. Its strings are copied, not taken: a stat is made on
/// a thread of the blocking pool, and what it holds is freed there once its batch is observed,
/// where an observation lives on (until planned) in the memory of the thread that plans.
pub fn observed(stat: &PathStat) -> Option<Observed> {
    let ft = stat.file_type?;
    let mut a = Attributes::with_capacity(if ft == FileType::File { 6 } else { 5 });
    a.insert("path".into(), Value::from(stat.path.as_str()));
    // Modes and names are short: stored inline, without an allocation each.
    a.insert("mode".into(), Value::from(format_mode(stat.mode).as_str()));
    a.insert("owner".into(), Value::from(stat.owner.as_str()));
    a.insert("group".into(), Value::from(stat.group.as_str()));
    if ft == FileType::File {
        a.insert("sha256".into(), stat.sha256.as_deref().map_or(Value::Null, Value::from));
        a.insert("size".into(), Value::Int(i64::try_from(stat.size).unwrap_or(i64::MAX)));
    } else {
        a.insert("type".into(), Value::from(type_name(ft)));
    }
    Some(Observed { id: None, attributes: a })
}

pub(crate) fn type_name(ft: FileType) -> &'static str {
    match ft {
        FileType::File => "file",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::Other => "special file",
    }
}

fn resolve_source(root: &Path, src: &str) -> Result<std::path::PathBuf, ProviderError> {
    Ok(tend_provider::resolve_inside(root, src)?)
}

/// Whether the content comes from a secret.
pub fn is_secret(config: &Attributes) -> bool {
    config.get("content").is_some_and(Value::is_sensitive)
}

/// The desired bytes (wiped when dropped), or `None` when they are only known after apply.
pub fn desired_content(config: &Attributes, root: &Path) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, ProviderError> {
    if is_unknown(config, "content") || is_unknown(config, "source") {
        return Ok(None);
    }
    if let Some(src) = get_str(config, "source") {
        let path = resolve_source(root, src)?;
        return fs_err::read(&path)
            .map(|b| Some(zeroize::Zeroizing::new(b)))
            .map_err(|e| ProviderError::terminal(format!("source file `{src}` cannot be read")).with_source(e));
    }
    Ok(Some(zeroize::Zeroizing::new(get_str(config, "content").unwrap_or_default().as_bytes().to_vec())))
}

/// Mode of a new file when config sets none: 0600 when the content comes from a secret.
fn default_mode(config: &Attributes) -> u32 {
    if is_secret(config) { 0o600 } else { 0o644 }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The attributes config asks for, as they will be observed.
fn desired(config: &Attributes, observed: Option<&Observed>, root: &Path) -> Result<Attributes, ProviderError> {
    let mut a = Attributes::with_capacity(6);
    a.insert("path".into(), config.get("path").cloned().unwrap_or(Value::Null));
    let secret = is_secret(config);
    let mark = |v: Value| if secret { v.sensitive() } else { v };
    if let Some(bytes) = desired_content(config, root)? {
        a.insert("sha256".into(), mark(Value::from(sha256_hex(&bytes))));
        a.insert("size".into(), mark(Value::Int(i64::try_from(bytes.len()).unwrap_or(i64::MAX))));
    } else {
        a.insert("sha256".into(), Value::Unknown);
        a.insert("size".into(), Value::Unknown);
    }
    let mode = match config.get("mode") {
        Some(v) => v.clone(),
        None => observed.and_then(|o| o.attributes.get("mode").cloned()).unwrap_or_else(|| Value::from(format_mode(default_mode(config)))),
    };
    a.insert("mode".into(), mode);
    for f in ["owner", "group"] {
        if let Some(v) = config.get(f) {
            a.insert(f.into(), v.clone());
        }
    }
    Ok(a)
}

/// Whether the file was recorded as part of its host's generation.
pub fn was_in_generation(req_prior: Option<&tend_provider::PriorRecord>) -> bool {
    req_prior.and_then(|p| p.attributes.get("in_generation")).and_then(Value::as_bool).unwrap_or(false)
}

/// Plan one file; `generations` when its host keeps generations, `streamed` when its host takes
/// its files in one stream (the change is then staged: the host's commit makes it take effect).
pub fn plan(req: &PlanRequest, root: &Path, generations: bool, streamed: bool) -> Result<PlannedChange, ProviderError> {
    let observed = req.observed.as_ref();
    let Some(config) = &req.config else {
        let mut c = PlannedChange::new(Action::Delete);
        c.before = observed.map(|o| o.attributes.clone()).unwrap_or_default();
        if observed.is_none() {
            c.note = Some("already absent".into());
        }
        c.staged = was_in_generation(req.prior.as_ref());
        return Ok(c);
    };
    // A link left by a generation on a host that no longer keeps them is replaced by the file.
    let left_link = !generations && was_in_generation(req.prior.as_ref()) && observed.and_then(|o| get_str(&o.attributes, "type")) == Some("symlink");
    if let Some(t) = observed.and_then(|o| get_str(&o.attributes, "type")).filter(|_| !left_link) {
        let path = get_str(config, "path").unwrap_or_default();
        return Err(ProviderError::terminal(format!("{path} exists and is a {t}, not a file"))
            .with_hint("remove it by hand or choose another path; tend does not replace what it did not create"));
    }
    let mut after = desired(config, observed, root)?;
    if generations {
        after.insert("in_generation".into(), Value::Bool(true));
    }
    let before = before_for(observed, &after);
    let prior_path = req.prior.as_ref().and_then(|p| get_str(&p.attributes, "path"));
    let mut change = PlannedChange::new(Action::NoOp);
    if prior_path.is_some_and(|p| Some(&Value::from(p)) != config.get("path")) && observed.is_some() {
        change.action = Action::Replace { create_first: false };
        change.requires_replace = vec!["path".into()];
    } else if observed.is_none() {
        change.action = Action::Create;
    } else if before != after {
        change.action = Action::Update;
    } else if req.prior.is_none() {
        change.action = Action::Create;
        change.note = Some("already as desired; tend will record it".into());
    }
    change.before = before;
    change.after = after;
    // A secret's content stays out of the host's stream (see `apply`).
    change.staged = generations || (streamed && !is_secret(config));
    Ok(change)
}

/// Apply one step. On a host that keeps generations the content is only staged (written as a
/// blob); the host's commit makes it live.
pub async fn apply(
    t: &dyn Transport,
    req: &ApplyRequest,
    root: &Path,
    generations: Option<&crate::generation::Settings>,
    stream: Option<super::Stream<'_>>,
) -> Result<Option<Observed>, ProviderError> {
    if req.action == Action::Delete {
        // A file of a generation leaves with the host's next generation.
        if !was_in_generation(req.prior.as_ref())
            && let Some(path) = observe_path(None, req.observed.as_ref().map(|o| &o.attributes))
        {
            t.remove_file(&path).await?;
        }
        return Ok(None);
    }
    let config = req.config.as_ref().ok_or_else(|| ProviderError::terminal("no config to apply"))?;
    let path = required_str(config, "path")?;
    let content = desired_content(config, root)?.ok_or_else(|| ProviderError::terminal("content is not known"))?;
    if let Some(g) = generations {
        let blob = crate::generation::blob_path(g, &sha256_hex(&content));
        let attrs = FileAttrs { mode: Some(0o600), ..FileAttrs::default() };
        // Uploaded with the host's other blobs in one stream before its commit builds the
        // generation; a secret's content directly, from the channel's stdin.
        match stream.filter(|_| !is_secret(config)) {
            Some(s) => s.push(crate::transport::FileWrite { path: blob, content: Some(content.to_vec().into()), attrs }),
            None => t.write_file(&blob, &content, &attrs).await?,
        }
        let mut after = desired(config, req.observed.as_ref().filter(|o| get_str(&o.attributes, "path") == Some(path)), root)?;
        after.insert("in_generation".into(), Value::Bool(true));
        return Ok(Some(Observed { id: None, attributes: after }));
    }
    let observed = req.observed.as_ref().filter(|o| get_str(&o.attributes, "path") == Some(path));
    let mut attrs = desired_attrs(config);
    if attrs.mode.is_none() && observed.is_none() {
        attrs.mode = Some(default_mode(config));
    }
    let same_content = observed.is_some_and(|o| get_str(&o.attributes, "sha256") == Some(&sha256_hex(&content)));
    // A secret's content is never put in the host's stream: a shell may keep a here-document in
    // a temporary file. It is written directly, from the channel's stdin, as without a stream.
    let stream = stream.filter(|_| !is_secret(config) || same_content);
    match stream {
        // Written by the host's commit, with the host's other files.
        Some(s) => s.push(crate::transport::FileWrite { path: path.to_string(), content: (!same_content).then(|| content.to_vec().into()), attrs }),
        None if same_content => t.set_attrs(path, &attrs).await?,
        None => t.write_file(path, &content, &attrs).await?,
    }
    let after = desired(config, observed, root)?;
    Ok(Some(Observed { id: None, attributes: after }))
}

/// `host.file`.
pub struct File;

#[async_trait]
impl super::HostKind for File {
    fn name(&self) -> &'static str {
        "file"
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
        observe_file(item, true)
    }
    async fn observed(&self, _item: &tend_provider::ReadItem, seen: super::Seen<'_>, _t: &dyn Transport) -> Result<Option<Observed>, ProviderError> {
        Ok(observed_file(seen))
    }
    fn plan(&self, req: &PlanRequest, cx: super::Cx<'_>) -> Result<PlannedChange, ProviderError> {
        plan(req, cx.config_root, cx.generations.is_some(), cx.stream.is_some())
    }
    async fn apply(&self, t: &dyn Transport, req: &ApplyRequest, cx: super::Cx<'_>) -> Result<Option<Observed>, ProviderError> {
        apply(t, req, cx.config_root, cx.generations, cx.stream).await
    }
    async fn content(&self, req: &PlanRequest, change: &PlannedChange, cx: super::Cx<'_>, t: Option<&dyn Transport>) -> Vec<tend_provider::ContentChange> {
        match &req.config {
            Some(config) => content_change(config, req, change, cx.config_root, t).await,
            None => Vec::new(),
        }
    }
}

/// What changes in a file's content, for the plan: the text there now (read from the host, only
/// when it changes) and the text to be; a secret's never, binary or large content summarised.
pub async fn content_change(
    config: &Attributes,
    req: &PlanRequest,
    change: &PlannedChange,
    root: &Path,
    t: Option<&dyn Transport>,
) -> Vec<tend_provider::ContentChange> {
    use tend_provider::ContentChange;
    if !matches!(change.action, Action::Create | Action::Update | Action::Replace { .. }) || change.before.get("sha256") == change.after.get("sha256") {
        return Vec::new();
    }
    // A secret now, or before (its recorded hash is a fingerprint): neither side is shown.
    let was_secret =
        req.prior.as_ref().and_then(|p| p.attributes.get("sha256")).is_some_and(|v| v.is_sensitive() || matches!(v, Value::Fingerprint(_) | Value::Redacted));
    if is_secret(config) || was_secret || change.before.values().chain(change.after.values()).any(Value::is_sensitive) {
        return vec![ContentChange::sensitive("content")];
    }
    let after = match desired_content(config, root) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return vec![ContentChange { field: "content".into(), summary: Some("(known after apply)".into()), ..ContentChange::default() }],
        Err(_) => return Vec::new(),
    };
    let exists = req.observed.is_some() && !matches!(change.action, Action::Create);
    let size = req.observed.as_ref().and_then(|o| o.attributes.get("size")).and_then(Value::as_i64).and_then(|s| usize::try_from(s).ok()).unwrap_or(0);
    let before = match (exists, t, get_str(config, "path")) {
        (false, _, _) => None,
        // Too large to show: not read at all.
        (true, _, _) if size > tend_provider::CONTENT_SHOWN_MAX => return vec![ContentChange::too_large("content", Some(size), Some(after.len()))],
        (true, Some(t), Some(path)) => match t.read_file(path).await {
            Ok(b) => b,
            Err(_) => {
                return vec![ContentChange {
                    field: "content".into(),
                    summary: Some("(the content now could not be read)".into()),
                    ..ContentChange::default()
                }];
            }
        },
        (true, _, _) => return Vec::new(),
    };
    vec![ContentChange::of("content", before.as_deref(), Some(&after))]
}

/// A file-like path to observe: what was applied last, else what config asks for; its content
/// hashed when `hash`.
pub fn observe_file(item: &tend_provider::ReadItem, hash: bool) -> super::Observe {
    let path = observe_path(item.config.as_ref(), item.prior.as_ref().map(|p| &*p.attributes));
    super::Observe { path: path.map(|path| crate::transport::StatRequest { path, hash, content: false }), claims: true, script: None }
}

/// A file as observed: on a host that keeps generations, its link and its copy in `current`.
pub fn observed_file(seen: super::Seen<'_>) -> Option<Observed> {
    match seen.copy {
        Some(copy) => seen.stat.and_then(|live| crate::generation::observed(live, copy)),
        None => seen.stat.and_then(observed),
    }
}
