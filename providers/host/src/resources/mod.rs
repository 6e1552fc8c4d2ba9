//! The host resource kinds, one file each, dispatched from [`Kind`].

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

use tend_provider::{Action, Attributes, FieldError, KindSchema, ProviderError, Value};

use crate::transport::{FileAttrs, TransportError};

/// A host resource kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `host.local`: the machine tend runs on.
    Local,
    /// `host.ssh`: a host reached over SSH.
    Ssh,
    /// `host.file`.
    File,
    /// `host.directory`.
    Directory,
    /// `host.command`.
    Command,
    /// `host.line`.
    Line,
    /// `host.template`.
    Template,
    /// `host.package`.
    Package,
    /// `host.service`.
    Service,
    /// `host.user`.
    User,
    /// `host.group`.
    Group,
    /// `host.release`.
    Release,
}

impl Kind {
    /// Parse a kind name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "local" => Self::Local,
            "ssh" => Self::Ssh,
            "file" => Self::File,
            "directory" => Self::Directory,
            "command" => Self::Command,
            "line" => Self::Line,
            "template" => Self::Template,
            "package" => Self::Package,
            "service" => Self::Service,
            "user" => Self::User,
            "group" => Self::Group,
            "release" => Self::Release,
            _ => return None,
        })
    }

    /// Whether resources of this kind are hosts (rather than things placed on hosts).
    pub fn is_host(self) -> bool {
        matches!(self, Self::Local | Self::Ssh)
    }
}

/// All kind schemas of the host provider.
pub fn schemas() -> Vec<KindSchema> {
    vec![
        local::schema(),
        ssh_host::schema(),
        file::schema(),
        template::schema(),
        directory::schema(),
        line::schema(),
        command::schema(),
        package::schema(),
        service::schema(),
        account::user_schema(),
        account::group_schema(),
        release::schema(),
    ]
}

/// The observed attributes that the plan compares: those it also plans.
pub fn before_for(observed: Option<&tend_provider::Observed>, after: &Attributes) -> Attributes {
    observed.map(|o| o.attributes.iter().filter(|(k, _)| after.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
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
