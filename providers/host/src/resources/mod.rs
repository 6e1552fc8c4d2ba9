//! The host resource kinds, one file each, each a type implementing [`HostKind`].

pub mod account;
pub mod command;
pub mod directory;
pub mod file;
pub mod line;
pub mod local;
pub mod package;
pub mod release;
pub mod service;
pub mod ssh_host;
pub mod template;

use std::path::Path;

use async_trait::async_trait;
use tend_provider::{
    Action, ApplyRequest, Attributes, ContentChange, ExpandRequest, FieldError, Health, HealthRequest, Instance, KindSchema, Observed, PlanRequest,
    PlannedChange, ProviderError, ReadItem, RevertRequest, Value,
};

use crate::transport::{FileAttrs, PathStat, StatRequest, Transport, TransportError};

/// What the provider hands a kind for one call: the run's settings.
#[derive(Debug, Clone, Copy)]
pub struct Cx<'a> {
    /// Root of the config checkout (`source` files, templates, release trees).
    pub config_root: &'a Path,
    /// The generation settings of the host the instance is on, if it keeps generations.
    pub generations: Option<&'a crate::generation::Settings>,
    /// On a host: where a file's write (or, with generations, its content's upload) waits for
    /// the host's commit, which writes them all at once (one stream over SSH, one batch locally).
    pub stream: Option<Stream<'a>>,
}

/// The writes waiting for each host's commit.
pub type Pending = std::sync::Mutex<std::collections::HashMap<tend_provider::ResourceAddr, Vec<crate::transport::FileWrite>>>;

/// Where the file writes of one host wait for its commit.
#[derive(Clone, Copy)]
pub struct Stream<'a> {
    /// The host.
    pub host: &'a tend_provider::ResourceAddr,
    /// Every host's waiting writes.
    pub pending: &'a Pending,
}

impl Stream<'_> {
    /// Queue a write for the host's commit.
    pub fn push(&self, w: crate::transport::FileWrite) {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(self.host.clone()).or_default().push(w);
    }
}

impl std::fmt::Debug for Stream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("host", &self.host.to_string()).finish_non_exhaustive()
    }
}

/// What a kind observes of one instance in its host's single round trip.
#[derive(Debug, Default)]
pub struct Observe {
    /// The managed path to stat, if any (`hash`: compare content; `content`: read it).
    pub path: Option<StatRequest>,
    /// Whether that path is a claim on the host, checked for symlinked conflicts.
    pub claims: bool,
    /// A read-only shell probe whose output [`HostKind::observed`] interprets.
    pub script: Option<String>,
}

/// What came back for one instance.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// The stat of [`Observe::path`].
    pub stat: Option<&'a PathStat>,
    /// On a host that keeps generations, the stat of the file's copy in the current generation
    /// (for kinds that are [`HostKind::staged`]).
    pub copy: Option<&'a PathStat>,
    /// The output of [`Observe::script`].
    pub probed: Option<&'a str>,
}

/// One host resource kind: its schema, checks, what it observes, how it plans and applies.
/// Adding a kind is its file (a type implementing this), a line in [`KINDS`], and its tests.
#[async_trait]
pub trait HostKind: Send + Sync {
    /// Its name in addresses (`file` of `host.file`).
    fn name(&self) -> &'static str;
    /// Its schema.
    fn schema(&self) -> KindSchema;
    /// Whether resources of this kind are hosts (other resources are placed on them).
    fn is_host(&self) -> bool {
        false
    }
    /// Whether its changes go into a host's generation of files when the host keeps them.
    fn staged(&self) -> bool {
        false
    }
    /// Whether its apply contends with other operations on the host (package managers,
    /// systemctl, account databases, commands, release switches): one at a time per host.
    fn exclusive(&self) -> bool {
        false
    }
    /// Checks of literal config values.
    fn validate(&self, _literal: &Attributes, _cx: Cx<'_>) -> Vec<FieldError> {
        Vec::new()
    }
    /// What to observe in the host's round trip.
    fn observe(&self, _item: &ReadItem) -> Observe {
        Observe::default()
    }
    /// The observed attributes from what came back; `t` for what cannot travel in the round trip
    /// (a command's `unless` check).
    async fn observed(&self, _item: &ReadItem, _seen: Seen<'_>, _t: &dyn Transport) -> Result<Option<Observed>, ProviderError> {
        Ok(None)
    }
    /// Plan one instance.
    fn plan(&self, req: &PlanRequest, cx: Cx<'_>) -> Result<PlannedChange, ProviderError>;
    /// Apply one step on the host `t` (for a host kind: the host itself).
    async fn apply(&self, t: &dyn Transport, req: &ApplyRequest, cx: Cx<'_>) -> Result<Option<Observed>, ProviderError>;
    /// What changes inside its content, for the plan to show; `t` reads what is there now (absent
    /// when the host cannot be reached yet). Default: nothing to show.
    async fn content(&self, _req: &PlanRequest, _change: &PlannedChange, _cx: Cx<'_>, _t: Option<&dyn Transport>) -> Vec<ContentChange> {
        Vec::new()
    }
    /// Checks of the expanded instances that need the config checkout (a template's variables).
    fn check_expanded(&self, _req: &ExpandRequest<'_>, _instances: &[Instance], _cx: Cx<'_>) -> Result<(), FieldError> {
        Ok(())
    }
    /// One probe of an applied instance's health; `fresh` makes a new connection to its host (as
    /// a new login would). Default: ready.
    async fn health(&self, _req: &HealthRequest, _fresh: Fresh<'_>) -> Health {
        Health::Ready
    }
    /// Put back what an apply changed after a failed health check: what exists afterwards and
    /// what was done. Default: nothing to put back.
    async fn revert(&self, _t: &dyn Transport, _req: &RevertRequest) -> Result<Option<(Observed, String)>, ProviderError> {
        Ok(None)
    }
}

/// Makes a new connection to an instance's host, when a kind's health check needs one.
pub type Fresh<'a> = Box<dyn FnOnce() -> futures_util::future::BoxFuture<'a, Result<std::sync::Arc<dyn Transport>, ProviderError>> + Send + 'a>;

/// Every host kind.
pub static KINDS: &[&dyn HostKind] = &[
    &local::Local,
    &ssh_host::Ssh,
    &file::File,
    &template::Template,
    &directory::Directory,
    &line::Line,
    &command::Command,
    &package::Package,
    &service::Service,
    &account::Account { user: true },
    &account::Account { user: false },
    &release::Release,
];

/// The kind of this name.
pub fn kind(name: &str) -> Option<&'static dyn HostKind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

/// Whether resources of the kind of this name are hosts.
pub fn is_host(name: &str) -> bool {
    kind(name).is_some_and(HostKind::is_host)
}

/// All kind schemas of the host provider.
pub fn schemas() -> Vec<KindSchema> {
    KINDS.iter().map(|k| k.schema()).collect()
}

/// The observed attributes that the plan compares: those it also plans.
pub fn before_for(observed: Option<&tend_provider::Observed>, after: &Attributes) -> Attributes {
    observed.map(|o| o.attributes.iter().filter(|(k, _)| after.contains_key(k)).map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
}

/// The action for a resource whose whole state is `after`: create what is missing, update what
/// differs, record (create in state) what is already right but not yet managed, else nothing.
pub fn converge_action(observed: bool, managed: bool, before: &Attributes, after: &Attributes) -> Action {
    if !observed {
        Action::Create
    } else if before != after {
        Action::Update
    } else if managed {
        Action::NoOp
    } else {
        Action::Create
    }
}

/// A string field, if set and known.
pub fn get_str<'a>(attrs: &'a Attributes, name: &str) -> Option<&'a str> {
    attrs.get(name).and_then(Value::as_str)
}

/// A list-of-strings field (empty if unset); non-strings are skipped.
pub fn get_strings(attrs: &Attributes, name: &str) -> Vec<String> {
    attrs.get(name).and_then(Value::as_list).unwrap_or_default().iter().filter_map(Value::as_str).map(str::to_string).collect()
}

/// The last `n` lines of `text`.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().rev().take(n).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// One run of a health `command` (in `cwd`) over `fresh`, a new connection to the host, after
/// generation `id` was switched to: ready when it exits 0, else failed with its last lines of
/// stderr.
pub async fn health_check(fresh: Result<std::sync::Arc<dyn Transport>, ProviderError>, command: &str, cwd: Option<&str>, id: &str, host: &str) -> Health {
    let checked = match fresh {
        Ok(f) => f.exec(command, cwd).await.map_err(ProviderError::from),
        Err(e) => Err(e),
    };
    let (how, stderr) = match checked {
        Ok(o) if o.status == 0 => return Health::Ready,
        Ok(o) => (format!("exit {}", o.status), o.stderr),
        Err(e) => ("could not run".to_string(), e.message),
    };
    Health::Failed {
        message: format!("health check of generation {id} failed on host `{host}` ({how})"),
        hint: Some(last_lines(&stderr, 5)).filter(|h| !h.is_empty()),
    }
}

/// Whether a field is set to an unknown value.
pub fn is_unknown(attrs: &Attributes, name: &str) -> bool {
    matches!(attrs.get(name), Some(Value::Unknown))
}

/// Format permission bits as config writes them: `0644`.
pub fn format_mode(mode: u32) -> String {
    format!("{mode:04o}")
}

/// Parse `0644` / `644` / `"0o644"`.
pub fn parse_mode(s: &str) -> Option<u32> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 5 {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o7777)
}

/// Check the `mode` field of literal config.
pub fn validate_mode(literal: &Attributes, errors: &mut Vec<FieldError>) {
    if let Some(m) = get_str(literal, "mode")
        && parse_mode(m).is_none()
    {
        errors.push(FieldError::field("mode", format!("`{m}` is not an octal file mode")).with_hint("write the mode as an octal string, e.g. mode = \"0644\""));
    }
}

/// Check that `path` is absolute.
pub fn validate_path(literal: &Attributes, field: &str, errors: &mut Vec<FieldError>) {
    if let Some(p) = get_str(literal, field)
        && !p.starts_with('/')
    {
        errors.push(
            FieldError::field(field, format!("`{p}` is not an absolute path"))
                .with_hint("host paths must start with `/`; use ${path.root} for paths inside the config directory"),
        );
    }
}

/// Mode/owner/group requested by config.
pub fn desired_attrs(config: &Attributes) -> FileAttrs {
    FileAttrs {
        mode: get_str(config, "mode").and_then(parse_mode),
        owner: get_str(config, "owner").map(str::to_string),
        group: get_str(config, "group").map(str::to_string),
    }
}

/// A required string field of fully known config.
pub fn required_str<'a>(config: &'a Attributes, name: &str) -> Result<&'a str, ProviderError> {
    get_str(config, name).ok_or_else(|| ProviderError::terminal(format!("`{name}` is not set")))
}

impl From<TransportError> for ProviderError {
    fn from(e: TransportError) -> Self {
        let kind = match e.source.kind() {
            std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::HostUnreachable
            | std::io::ErrorKind::NetworkUnreachable
            | std::io::ErrorKind::BrokenPipe => tend_provider::ErrorKind::Transient,
            std::io::ErrorKind::PermissionDenied if e.op == "log in to" || e.op == "verify host key of" => tend_provider::ErrorKind::Unauthorized,
            _ => tend_provider::ErrorKind::Terminal,
        };
        // The cause is part of the message: it is the part a user acts on ("Connection refused",
        // "unknown host key ..."), and plan errors show messages without cause chains.
        let message = format!("{e}: {}", e.source);
        let hint = match e.source.kind() {
            std::io::ErrorKind::PermissionDenied if message.contains("host key") => Some(
                "verify the key out of band, then add it to known_hosts (ssh-keyscan -t ed25519 HOST >> FILE), pin it with host_key = \"…\", or set trust_on_first_use = true".to_string(),
            ),
            _ => None,
        };
        ProviderError { kind, message, hint, partial: None, source: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_format() {
        assert_eq!(parse_mode("0644"), Some(0o644));
        assert_eq!(parse_mode("755"), Some(0o755));
        assert_eq!(parse_mode("0o600"), Some(0o600));
        assert_eq!(parse_mode("0999"), None);
        assert_eq!(parse_mode("rw-r--r--"), None);
        assert_eq!(format_mode(0o600), "0600");
    }
}
