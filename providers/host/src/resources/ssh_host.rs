//! `host.ssh`: a host reached over SSH.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use tend_provider::{Action, Attributes, FieldError, FieldSchema, FieldType, KindSchema, Observed, PlanRequest, PlannedChange, Value};

use super::get_str;
use crate::transport::SshTarget;

/// Schema of `host.ssh`.
pub fn schema() -> KindSchema {
    KindSchema {
        kind: "ssh",
        doc: "a host reached over SSH",
        target: true,
        timeout: None,
        runs: false,
        fields: vec![
            FieldSchema::input("address", FieldType::String, "DNS name or IP address; may be a reference, e.g. ${ec2.instance.web.private_ip}").required(),
            FieldSchema::input("port", FieldType::Int, "SSH port, default 22"),
            FieldSchema::input("user", FieldType::String, "login user, default $USER"),
            FieldSchema::input("identity", FieldType::String, "private key file; default: ssh-agent, then ~/.ssh/id_ed25519, id_rsa"),
            FieldSchema::input("known_hosts", FieldType::String, "known_hosts file, default ~/.ssh/known_hosts"),
            FieldSchema::input("host_key", FieldType::String, "pinned host key, e.g. \"ssh-ed25519 AAAA…\""),
            FieldSchema::input("trust_on_first_use", FieldType::Bool, "accept an unknown host key once and record it in state"),
            FieldSchema::input("connect_timeout", FieldType::Int, "seconds, default 10"),
            FieldSchema::input(
                "operation_timeout",
                FieldType::Int,
                "seconds one of tend's own operations (observe, write, chmod, …) may take before the host is declared down for the run, default 300",
            ),
            FieldSchema::input(
                "command_timeout",
                FieldType::Int,
                "seconds a command (host.command, package, service, health) may run before it is stopped, default 3600",
            ),
            FieldSchema::input("jump", FieldType::String, "tunnel through this host: [user@]host[:port] (like ProxyJump)"),
            FieldSchema::input("ssh_config", FieldType::String, "ssh_config file to honour, default ~/.ssh/config"),
            FieldSchema::input("labels", FieldType::Map(Box::new(FieldType::String)), "labels for `on = { key = value }` selectors"),
            FieldSchema::input("vars", FieldType::Map(Box::new(FieldType::Any)), "host variables for templates"),
            FieldSchema::input(
                "generations",
                FieldType::Any,
                "keep the host's files as switchable generations: true, or { path = \"/var/lib/tend\", keep = 5 }",
            ),
            FieldSchema::input("health", FieldType::String, "command run after a generation switch; failing switches back"),
            FieldSchema::output("trusted_key", FieldType::String, "the host key accepted on first use"),
            FieldSchema::output("generation", FieldType::String, "the generation of files in use"),
            FieldSchema::output("kept_generations", FieldType::List(Box::new(FieldType::String)), "generations on the host, newest first"),
        ],
    }
}

/// Checks of literal config.
pub fn validate(literal: &Attributes) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(p) = literal.get("port").and_then(Value::as_i64)
        && !(1..=65535).contains(&p)
    {
        errors.push(FieldError::field("port", format!("{p} is not a TCP port")));
    }
    if let Some(k) = get_str(literal, "host_key")
        && (k.split_whitespace().count() < 2 || !k.starts_with("ssh-") && !k.starts_with("ecdsa-"))
    {
        errors.push(
            FieldError::field("host_key", "not an OpenSSH public key")
                .with_hint("copy the line from the host's /etc/ssh/ssh_host_ed25519_key.pub, e.g. host_key = \"ssh-ed25519 AAAA…\""),
        );
    }
    for k in ["connect_timeout", "operation_timeout", "command_timeout"] {
        if let Some(t) = literal.get(k).and_then(Value::as_i64)
            && t < 1
        {
            errors.push(FieldError::field(k, format!("{t} is not a number of seconds (at least 1)")));
        }
    }
    crate::generation::validate(literal, &mut errors);
    errors
}

fn expand_home(p: &str) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME").map_or_else(|| PathBuf::from(p), |h| PathBuf::from(h).join(rest)),
        None => PathBuf::from(p),
    }
}

/// Connection settings from the host's attributes (config plus recorded outputs), completed
/// from the `ssh_config` Host entry matching `address`: tend's own fields win, then the file's.
pub fn target(name: &str, a: &Attributes) -> Result<SshTarget, String> {
    let alias = get_str(a, "address").ok_or("its address is not known yet")?.to_string();
    let config_file = expand_home(get_str(a, "ssh_config").unwrap_or("~/.ssh/config"));
    let found = crate::transport::ssh_config::lookup(&config_file, &alias);
    let port = a.get("port").and_then(Value::as_i64).and_then(|p| u16::try_from(p).ok()).or(found.port).unwrap_or(22);
    let user = get_str(a, "user").map(str::to_string).or(found.user.clone()).unwrap_or_else(|| std::env::var("USER").unwrap_or_else(|_| "root".into()));
    let identity = get_str(a, "identity").map(str::to_string).or(found.identity_file.clone()).map(|p| expand_home(&p));
    let known_hosts = expand_home(get_str(a, "known_hosts").map(str::to_string).or(found.known_hosts.clone()).as_deref().unwrap_or("~/.ssh/known_hosts"));
    let secs = |k: &str, default: u64| Duration::from_secs(a.get(k).and_then(Value::as_i64).and_then(|t| u64::try_from(t).ok()).unwrap_or(default));
    let timeout = secs("connect_timeout", 10);
    let (operation_timeout, command_timeout) = (secs("operation_timeout", 300), secs("command_timeout", 3600));
    let jump = match get_str(a, "jump").map(str::to_string).or(found.proxy_jump.clone()) {
        None => None,
        Some(spec) => {
            let (user_part, rest) = spec.rsplit_once('@').map_or((None, spec.as_str()), |(u, r)| (Some(u.to_string()), r));
            let (host, port_part) = rest.rsplit_once(':').map_or((rest, None), |(h, p)| (h, p.parse::<u16>().ok()));
            let jf = crate::transport::ssh_config::lookup(&config_file, host);
            Some(Box::new(SshTarget {
                name: format!("{name} (jump host {host})"),
                address: jf.hostname.clone().unwrap_or_else(|| host.to_string()),
                port: port_part.or(jf.port).unwrap_or(22),
                user: user_part.or(jf.user.clone()).unwrap_or_else(|| user.clone()),
                identity: jf.identity_file.as_deref().map(expand_home).or_else(|| identity.clone()),
                known_hosts: jf.known_hosts.as_deref().map_or_else(|| known_hosts.clone(), expand_home),
                host_key: None,
                trust_on_first_use: false,
                recorded_key: None,
                timeout,
                operation_timeout,
                command_timeout,
                jump: None,
            }))
        }
    };
    Ok(SshTarget {
        name: name.to_string(),
        address: found.hostname.clone().unwrap_or(alias),
        port,
        user,
        identity,
        known_hosts,
        host_key: get_str(a, "host_key").map(str::to_string),
        trust_on_first_use: a.get("trust_on_first_use").and_then(Value::as_bool).unwrap_or(false),
        // The key trusted on first use binds only while trust on first use is on: a host moved
        // to `known_hosts` (or `host_key`) is checked against that in the same run.
        recorded_key: a.get("trust_on_first_use").and_then(Value::as_bool).unwrap_or(false).then(|| get_str(a, "trusted_key").map(str::to_string)).flatten(),
        timeout,
        operation_timeout,
        command_timeout,
        jump,
    })
}

fn shown(config: &Attributes) -> Attributes {
    config
        .iter()
        .filter(|(k, _)| k.as_str() != "trusted_key" && !crate::generation::RECORDED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Plan: a host is "created" when tend starts managing it; it connects at apply.
pub fn plan(req: &PlanRequest) -> PlannedChange {
    let prior = req.prior.as_ref().map(|p| shown(&p.attributes));
    let Some(config) = &req.config else {
        let mut c = PlannedChange::new(Action::Delete);
        c.before = prior.unwrap_or_default();
        c.note = Some("tend stops managing this host; nothing on it is touched by this step".into());
        return c;
    };
    let after = shown(config);
    let action = match &prior {
        None => Action::Create,
        Some(_) if req.inputs_changed => Action::Update,
        Some(_) => Action::NoOp,
    };
    PlannedChange { before: prior.unwrap_or_default(), after, ..PlannedChange::new(action) }
}

/// What is recorded after connecting.
pub fn observed(config: &Attributes, trusted_key: Option<String>) -> Observed {
    let mut attributes = shown(config);
    if let Some(k) = trusted_key {
        attributes.insert("trusted_key".into(), Value::from(k));
    }
    Observed { id: None, attributes }
}

/// `host.ssh`.
pub struct Ssh;

#[async_trait]
impl super::HostKind for Ssh {
    fn name(&self) -> &'static str {
        "ssh"
    }
    fn schema(&self) -> KindSchema {
        schema()
    }
    fn is_host(&self) -> bool {
        true
    }
    fn validate(&self, literal: &Attributes, _cx: super::Cx<'_>) -> Vec<FieldError> {
        validate(literal)
    }
    fn plan(&self, req: &PlanRequest, _cx: super::Cx<'_>) -> Result<PlannedChange, tend_provider::ProviderError> {
        Ok(plan(req))
    }
    /// Managing a host starts with reaching it: `t` is the connection to it (its key verified).
    async fn apply(
        &self,
        t: &dyn crate::transport::Transport,
        req: &tend_provider::ApplyRequest,
        _cx: super::Cx<'_>,
    ) -> Result<Option<Observed>, tend_provider::ProviderError> {
        let Some(config) = &req.config else { return Ok(None) };
        let tofu = config.get("trust_on_first_use").and_then(Value::as_bool).unwrap_or(false);
        let trusted = if tofu { t.host_key() } else { None };
        Ok(Some(observed(config, trusted)))
    }
}
