//! The `ssh` transport: one russh connection per host, every operation a `sh` command on it.
//!
//! Observation is one remote command per host: a POSIX `sh` script that `stat`s every managed
//! path and hashes the regular files with `sha256sum`, both in one invocation each. Writes go to
//! a temporary file beside the target and are renamed into place. No interpreter but `sh` runs
//! on the host.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use russh::ChannelMsg;
use russh::client::{self, Handle};
use russh::keys::PublicKeyOrCertificate;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey};

use super::{ExecOutput, FileAttrs, FileType, FileWrite, Lines, MAX_COMMAND_OUTPUT, OutputSink, PathStat, StatRequest, Transport, TransportError};

/// How to reach and trust one host.
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// The host's name in config (`host.ssh.NAME`).
    pub name: String,
    /// DNS name or IP address.
    pub address: String,
    /// TCP port.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// Private key file; `None` uses ssh-agent, then ~/.`ssh/id_ed25519` and `id_rsa`.
    pub identity: Option<PathBuf>,
    /// `known_hosts` file to verify the host key against.
    pub known_hosts: PathBuf,
    /// A pinned host key (`ssh-ed25519 AAAA…`), checked instead of `known_hosts`.
    pub host_key: Option<String>,
    /// Accept an unknown key (trust on first use); a key recorded earlier must still match.
    pub trust_on_first_use: bool,
    /// A host key recorded in state by an earlier trust-on-first-use connection.
    pub recorded_key: Option<String>,
    /// Connect timeout.
    pub timeout: Duration,
    /// How long one of tend's own operations (observe, write, chmod, …) may take before the
    /// host is declared down for the rest of the run.
    pub operation_timeout: Duration,
    /// How long a command (`host.command`, package and service changes, health checks) may run
    /// before it is stopped.
    pub command_timeout: Duration,
    /// A host to tunnel through (`ProxyJump`).
    pub jump: Option<Box<SshTarget>>,
}

impl SshTarget {
    fn shown(&self) -> String {
        format!("{} ({}:{})", self.name, self.address, self.port)
    }
}

/// What the host-key check decided, kept for the error message.
#[derive(Debug, Default)]
struct Verdict {
    problem: Option<String>,
    accepted_key: Option<String>,
}

struct Client {
    target: SshTarget,
    verdict: Arc<Mutex<Verdict>>,
}

fn openssh(key: &PublicKey) -> String {
    key.to_openssh().unwrap_or_default().split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, server: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = server else {
            self.set_problem("the host presented a certificate; certificate host keys are not supported".into());
            return Ok(false);
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let presented = openssh(key);
        let same = |expected: &str| expected.split_whitespace().take(2).collect::<Vec<_>>().join(" ") == presented;
        if let Some(pinned) = &self.target.host_key {
            if same(pinned) {
                return Ok(self.accept(presented));
            }
            self.set_problem(format!("host key of {} is {fingerprint}, not the host_key pinned in config", self.target.shown()));
            return Ok(false);
        }
        if let Some(recorded) = &self.target.recorded_key {
            if same(recorded) {
                return Ok(self.accept(presented));
            }
            self.set_problem(format!(
                "host key of {} changed: it is now {fingerprint}, but a different key was trusted on first use and recorded in state",
                self.target.shown()
            ));
            return Ok(false);
        }
        // As OpenSSH: any line for the host with the presented key accepts it; only when none
        // does and one holds another key of the same type has the key changed.
        let recorded = russh::keys::known_hosts::known_host_keys_path(&self.target.address, self.target.port, &self.target.known_hosts);
        match recorded {
            Ok(keys) if keys.iter().any(|(_, k)| k == key) => Ok(self.accept(presented)),
            Ok(keys) if !keys.iter().any(|(_, k)| k.algorithm() == key.algorithm()) => {
                if self.target.trust_on_first_use {
                    return Ok(self.accept(presented));
                }
                self.set_problem(format!("unknown host key for {}: {fingerprint} is not in {}", self.target.shown(), self.target.known_hosts.display()));
                Ok(false)
            }
            Ok(keys) => {
                let lines: Vec<String> = keys.iter().filter(|(_, k)| k.algorithm() == key.algorithm()).map(|(l, _)| l.to_string()).collect();
                self.set_problem(format!(
                    "host key of {} changed: it is now {fingerprint}, but {} line {} has another key (a reinstalled host, or someone in the middle)",
                    self.target.shown(),
                    self.target.known_hosts.display(),
                    lines.join(", ")
                ));
                Ok(false)
            }
            Err(e) => {
                self.set_problem(format!("cannot read {}: {e}", self.target.known_hosts.display()));
                Ok(false)
            }
        }
    }
}

impl Client {
    fn set_problem(&self, p: String) {
        self.verdict.lock().unwrap_or_else(std::sync::PoisonError::into_inner).problem = Some(p);
    }

    fn accept(&self, key: String) -> bool {
        self.verdict.lock().unwrap_or_else(std::sync::PoisonError::into_inner).accepted_key = Some(key);
        true
    }
}

/// A connected host.
pub struct SshTransport {
    target: SshTarget,
    handle: Handle<Client>,
    host_key: String,
    /// The jump host's connection, kept open while the tunnel through it is used.
    _jump: Option<Box<SshTransport>>,
    /// Why the host was declared down in this run, if it was: its later operations fail at
    /// once instead of each waiting for its own timeout.
    down: Mutex<Option<String>>,
}

impl std::fmt::Debug for SshTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshTransport").field("host", &self.target.shown()).finish_non_exhaustive()
    }
}

fn io(kind: std::io::ErrorKind, msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(kind, msg.into())
}

/// The most of the stdout (and of the stderr) of one of tend's own operations kept; observing
/// 100,000 paths prints about 10 MiB.
const MAX_OBSERVE_OUTPUT: usize = 256 << 20;

/// Quote for `sh`: `'…'` with embedded quotes escaped.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl SshTransport {
    /// Connect, verify the host key, authenticate.
    pub async fn connect(target: SshTarget) -> Result<Self, TransportError> {
        let err = |op: &'static str, source: std::io::Error| TransportError {
            host: target.name.clone(),
            op,
            path: format!("{}:{}", target.address, target.port),
            source,
        };
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(Duration::from_mins(10)),
            // A host that stops answering mid-operation (powered off, partitioned) is declared
            // down after three unanswered keepalives, ~30 s: its operations fail and free their
            // slots instead of holding them until the inactivity timeout.
            keepalive_interval: Some(Duration::from_secs(10)),
            keepalive_max: 3,
            nodelay: true,
            ..client::Config::default()
        });
        let verdict = Arc::new(Mutex::new(Verdict::default()));
        let handler = Client { target: target.clone(), verdict: verdict.clone() };
        let jump = match &target.jump {
            Some(j) => Some(Box::new(Box::pin(Self::connect((**j).clone())).await?)),
            None => None,
        };
        let connecting = async {
            match &jump {
                Some(j) => {
                    let ch = j
                        .handle
                        .channel_open_direct_tcpip(target.address.clone(), u32::from(target.port), "127.0.0.1", 0)
                        .await
                        .map_err(|e| russh::Error::IO(io(std::io::ErrorKind::ConnectionRefused, format!("through jump host {}: {e}", j.target.shown()))))?;
                    client::connect_stream(config, ch.into_stream(), handler).await
                }
                None => client::connect(config, (target.address.clone(), target.port), handler).await,
            }
        };
        let handle = match tokio::time::timeout(target.timeout, connecting).await {
            Err(_) => return Err(err("connect to", io(std::io::ErrorKind::TimedOut, format!("no answer within {} s", target.timeout.as_secs())))),
            Ok(Err(e)) => {
                let problem = verdict.lock().unwrap_or_else(std::sync::PoisonError::into_inner).problem.take();
                return Err(match problem {
                    Some(p) => err("verify host key of", io(std::io::ErrorKind::PermissionDenied, p)),
                    None => err("connect to", io(connect_kind(&e), e.to_string())),
                });
            }
            Ok(Ok(h)) => h,
        };
        let mut transport = Self {
            host_key: verdict.lock().unwrap_or_else(std::sync::PoisonError::into_inner).accepted_key.clone().unwrap_or_default(),
            target,
            handle,
            _jump: jump,
            down: Mutex::new(None),
        };
        transport.authenticate().await?;
        Ok(transport)
    }

    async fn authenticate(&mut self) -> Result<(), TransportError> {
        let user = self.target.user.clone();
        let fail = |msg: String| TransportError {
            host: self.target.name.clone(),
            op: "log in to",
            path: format!("{}@{}:{}", user, self.target.address, self.target.port),
            source: io(std::io::ErrorKind::PermissionDenied, msg),
        };
        let rsa_hash = self.handle.best_supported_rsa_hash().await.ok().flatten().flatten();
        let mut tried = Vec::new();
        let files: Vec<PathBuf> = match &self.target.identity {
            Some(p) => vec![p.clone()],
            None => Vec::new(),
        };
        for file in &files {
            let key = russh::keys::load_secret_key(file, None).map_err(|e| fail(format!("cannot load identity {}: {e}", file.display())))?;
            let ok = self.handle.authenticate_publickey(&user, PrivateKeyWithHashAlg::new(Arc::new(key), rsa_hash)).await.map_err(|e| fail(e.to_string()))?;
            if ok.success() {
                return Ok(());
            }
            tried.push(format!("key {}", file.display()));
        }
        if self.target.identity.is_none() {
            if let Ok(mut agent) = russh::keys::agent::client::AgentClient::connect_env().await {
                let keys = agent.request_identities().await.unwrap_or_default();
                for identity in keys {
                    let key = identity.public_key().into_owned();
                    let shown = key.fingerprint(HashAlg::Sha256).to_string();
                    let hash = if key.algorithm().is_rsa() { rsa_hash } else { None };
                    if let Ok(r) = self.handle.authenticate_publickey_with(&user, key, hash, &mut agent).await
                        && r.success()
                    {
                        return Ok(());
                    }
                    tried.push(format!("agent key {shown}"));
                }
            }
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
            for name in ["id_ed25519", "id_rsa", "id_ecdsa"] {
                let file = home.join(".ssh").join(name);
                if let Ok(key) = russh::keys::load_secret_key(&file, None) {
                    let ok = self
                        .handle
                        .authenticate_publickey(&user, PrivateKeyWithHashAlg::new(Arc::new(key), rsa_hash))
                        .await
                        .map_err(|e| fail(e.to_string()))?;
                    if ok.success() {
                        return Ok(());
                    }
                    tried.push(format!("key {}", file.display()));
                }
            }
        }
        Err(fail(if tried.is_empty() {
            "no key to offer: set `identity`, or load a key into ssh-agent (SSH_AUTH_SOCK)".to_string()
        } else {
            format!("the server refused {}", tried.join(", "))
        }))
    }

    /// Run one command, bounded by `limit`: a host that does not finish it in time is declared
    /// down (its later operations in this run fail at once, naming why), and so is a host whose
    /// connection was lost.
    #[allow(clippy::too_many_arguments)]
    async fn run_bounded(
        &self,
        command: &str,
        stdin: &[u8],
        limit: Duration,
        what: &str,
        setting: &str,
        cap: usize,
        sink: Option<&OutputSink<'_>>,
    ) -> Result<ExecOutput, std::io::Error> {
        if let Some(why) = self.down.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone() {
            return Err(io(std::io::ErrorKind::NotConnected, format!("the host was declared down earlier in this run: {why}")));
        }
        let declare_down = |why: String| {
            tracing::warn!(host = %self.target.name, "declared down for the rest of the run: {why}");
            self.down.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_or_insert(why);
        };
        match tokio::time::timeout(limit, self.run(command, stdin, cap, sink)).await {
            Err(_) => {
                declare_down(format!("{what} got no answer within {} s ({setting})", limit.as_secs()));
                Err(io(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {} s ({setting}); the host is declared down for the rest of this run", limit.as_secs()),
                ))
            }
            Ok(Err(e)) if self.handle.is_closed() => {
                declare_down(format!("the connection was lost ({e})"));
                Err(e)
            }
            Ok(r) => r,
        }
    }

    /// Run one command on its own channel, feeding `stdin`; what it prints goes to `sink` line
    /// by line as it arrives.
    async fn run(&self, command: &str, stdin: &[u8], cap: usize, sink: Option<&OutputSink<'_>>) -> Result<ExecOutput, std::io::Error> {
        let ch = self.handle.channel_open_session().await.map_err(|e| io(std::io::ErrorKind::BrokenPipe, e.to_string()))?;
        ch.exec(true, command).await.map_err(|e| io(std::io::ErrorKind::BrokenPipe, e.to_string()))?;
        if !stdin.is_empty() {
            ch.data(stdin).await.map_err(|e| io(std::io::ErrorKind::BrokenPipe, e.to_string()))?;
        }
        ch.eof().await.map_err(|e| io(std::io::ErrorKind::BrokenPipe, e.to_string()))?;
        let mut ch = ch;
        let (mut out, mut err, mut status) = (Lines::new("stdout", sink, cap), Lines::new("stderr", sink, cap), None);
        while let Some(msg) = ch.wait().await {
            match msg {
                ChannelMsg::Data { data } => out.push(&data),
                ChannelMsg::ExtendedData { data, ext: 1 } => err.push(&data),
                ChannelMsg::ExitStatus { exit_status } => status = Some(i32::try_from(exit_status).unwrap_or(-1)),
                ChannelMsg::ExitSignal { .. } => status = Some(-1),
                _ => {}
            }
        }
        Ok(ExecOutput { status: status.unwrap_or(-1), stdout: out.finish(), stderr: err.finish() })
    }

    /// Stats, hashes, contents and probe outputs in one remote command.
    async fn observe_all(&self, reqs: &[StatRequest], probes: &[String]) -> Result<(Vec<PathStat>, Vec<String>), TransportError> {
        if let Some(bad) = reqs.iter().find(|r| r.path.contains('\n')) {
            return Err(self.err("stat", &bad.path, io(std::io::ErrorKind::InvalidInput, "paths with newlines are not supported")));
        }
        let mut stdin = String::new();
        for r in reqs {
            stdin.push(match (r.hash, r.content) {
                (false, false) => 'S',
                (true, false) => 'H',
                (false, true) => 'C',
                (true, true) => 'B',
            });
            stdin.push_str(&r.path);
            stdin.push('\n');
        }
        let mut script = String::from(STAT_SCRIPT);
        script.push_str("printf 'PROBES\\0'\n");
        for (i, p) in probes.iter().enumerate() {
            script.push_str(&format!("printf 'PROBE{i}\\0'\n( {p}\n)\n"));
        }
        script.push_str("exit 0\n");
        let out = self.run_ok("observe", "(all managed state)", &format!("sh -c {}", quote(&script)), stdin.as_bytes()).await?;
        let (main, probe_text) = out.stdout.split_once("PROBES\0").unwrap_or((out.stdout.as_str(), ""));
        // Each probe's output runs from its marker to the next one.
        let outputs: Vec<String> = (0..probes.len())
            .map(|i| {
                let marker = format!("PROBE{i}\0");
                let Some(at) = probe_text.find(&marker) else { return String::new() };
                let body = &probe_text[at + marker.len()..];
                body.find(&format!("PROBE{}\0", i + 1)).map_or(body, |end| &body[..end]).to_string()
            })
            .collect();
        let (stats, rest) = main.split_once("HASHES\0").unwrap_or((main, ""));
        let (stats, real) = stats.split_once("REAL\0").unwrap_or((stats, ""));
        // One line per path, in order; a host without GNU `realpath -m` prints none.
        let real: Vec<&str> = real.lines().collect();
        let real = (real.len() == reqs.len()).then_some(real);

        let (hashes, contents) = rest.split_once("CONTENTS\0").unwrap_or((rest, ""));
        let mut bodies = std::collections::HashMap::new();
        let parts: Vec<&str> = contents.split('\0').collect();
        for pair in parts.chunks(2).filter(|c| c.len() == 2 && !c[0].is_empty()) {
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(pair[1].trim()) {
                bodies.insert(pair[0].to_string(), bytes);
            }
        }
        let mut found = std::collections::HashMap::new();
        let fields: Vec<&str> = stats.split('\0').collect();
        for rec in fields.chunks(6).filter(|c| c.len() == 6) {
            found.insert(rec[0].to_string(), rec);
        }
        let mut sums = std::collections::HashMap::new();
        for line in hashes.lines() {
            if let Some((sum, path)) = line.split_once("  ") {
                sums.insert(path.to_string(), sum.to_string());
            }
        }
        let stats_out: Vec<PathStat> = reqs
            .iter()
            .enumerate()
            .map(|(i, r)| match found.get(&r.path) {
                None => PathStat { real_dir: real.as_ref().map(|x| x[i].to_string()), ..PathStat::absent(&r.path) },
                Some(rec) => {
                    let ft = file_type(rec[1]);
                    PathStat {
                        path: r.path.clone(),
                        file_type: Some(ft),
                        mode: u32::from_str_radix(rec[2], 8).unwrap_or(0),
                        owner: rec[3].to_string(),
                        group: rec[4].to_string(),
                        size: rec[5].parse().unwrap_or(0),
                        sha256: if r.hash && ft == FileType::File { sums.get(&r.path).cloned() } else { None },
                        content: if r.content && ft == FileType::File { Some(bodies.remove(&r.path).unwrap_or_default()) } else { None },
                        real_dir: real.as_ref().map(|x| x[i].to_string()),
                    }
                }
            })
            .collect();
        Ok((stats_out, outputs))
    }

    async fn run_ok(&self, op: &'static str, path: &str, command: &str, stdin: &[u8]) -> Result<ExecOutput, TransportError> {
        let out = self
            .run_bounded(command, stdin, self.target.operation_timeout, &format!("{op} {path}"), "operation_timeout", MAX_OBSERVE_OUTPUT, None)
            .await
            .map_err(|source| self.err(op, path, source))?;
        if out.status != 0 {
            let msg = out.stderr.trim().to_string();
            let kind = if msg.contains("Directory not empty") { std::io::ErrorKind::DirectoryNotEmpty } else { std::io::ErrorKind::Other };
            return Err(self.err(op, path, io(kind, if msg.is_empty() { format!("exit status {}", out.status) } else { msg })));
        }
        Ok(out)
    }

    fn err(&self, op: &'static str, path: &str, source: std::io::Error) -> TransportError {
        TransportError { host: self.target.name.clone(), op, path: path.to_string(), source }
    }
}

fn connect_kind(e: &russh::Error) -> std::io::ErrorKind {
    match e {
        russh::Error::IO(io) => io.kind(),
        _ => std::io::ErrorKind::ConnectionAborted,
    }
}

/// `stat` every path, hash the regular files asked for, and print the contents asked for
/// (base64), in one remote command. Input lines: a flag (`S` stat, `H` hash, `C` content,
/// `B` both) and the path.
const STAT_SCRIPT: &str = r#"set -f
IFS='
'
s=''; h=''; c=''; d=''
while IFS= read -r l; do
  p=${l#?}
  s="$s$p
"
  q=${p%/*}
  d="$d${q:-/}
"
  case $l in H*|B*) h="$h$p
";; esac
  case $l in C*|B*) c="$c$p
";; esac
done
if [ -n "$s" ]; then stat --printf '%n\0%f\0%a\0%U\0%G\0%s\0' -- $s 2>/dev/null; fi
printf 'REAL\0'
if [ -n "$d" ]; then realpath -m -- $d 2>/dev/null; fi
printf 'HASHES\0'
r=''
for p in $h; do if [ -f "$p" ] && [ ! -L "$p" ]; then r="$r$p
"; fi; done
if [ -n "$r" ]; then sha256sum -- $r 2>/dev/null; fi
printf 'CONTENTS\0'
for p in $c; do
  if [ -f "$p" ]; then printf '%s\0' "$p"; base64 -w0 < "$p"; printf '\0'; fi
done
"#;

fn file_type(raw_hex: &str) -> FileType {
    let mode = u32::from_str_radix(raw_hex, 16).unwrap_or(0);
    match mode & 0o170_000 {
        0o100_000 => FileType::File,
        0o040_000 => FileType::Directory,
        0o120_000 => FileType::Symlink,
        _ => FileType::Other,
    }
}

fn chown_arg(attrs: &FileAttrs) -> Option<String> {
    match (&attrs.owner, &attrs.group) {
        (None, None) => None,
        (Some(o), None) => Some(o.clone()),
        (None, Some(g)) => Some(format!(":{g}")),
        (Some(o), Some(g)) => Some(format!("{o}:{g}")),
    }
}

/// Where a file is written: its directory (as given) and name, and — quoted, relative to the
/// directory once it is entered, so no name is resolved through links again — its temporary and
/// itself.
struct Placed {
    dir: String,
    name: String,
    tmp: String,
    file: String,
}

fn placed(path: &str) -> Placed {
    let dir = std::path::Path::new(path).parent().map_or_else(|| "/".into(), |d| d.to_string_lossy().into_owned());
    let name = std::path::Path::new(path).file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = quote(&format!("./.{name}.tend-{}", std::process::id()));
    let file = quote(&format!("./{name}"));
    Placed { dir, name, tmp, file }
}

/// What a refused write says: `mv` onto a directory (or a link to one) would move the file into
/// it.
fn directory_in_the_way(name: &str) -> String {
    format!("{}' is a directory (or a link to one) now, not a file: not replaced'", quote(name))
}

/// What a refused change of mode or owner says: chmod and chown follow links.
const LINK_IN_THE_WAY: &str = "'it is a symlink now (not followed)'";

/// The shell command that writes `path` atomically from its stdin.
fn write_command(path: &str, attrs: &FileAttrs) -> String {
    let Placed { dir, name, tmp, file: p } = placed(path);
    let dir = quote(&dir);
    let attrs = FileAttrs { mode: Some(attrs.mode.unwrap_or(0o644)), ..attrs.clone() };
    // Parent directories get the host's umask (0755), as local ones do. The directory is
    // checked for links that are not safe to follow (as locally), then entered once, and
    // everything after is relative to it; the temporary file is private, and made afresh (a
    // link planted under its name is removed, never followed).
    format!(
        "mkdir -p {dir} && {SAFE_DIR} {dir} && cd -P {dir} && {stale} && umask 077 && rm -f {tmp} && set -C && cat > {tmp}{} && {{ if [ -d {p} ]; then echo {refused} >&2; false; else mv -f {tmp} {p}; fi; }} || {{ rc=$?; rm -f {tmp}; exit $rc; }}",
        attr_commands(&tmp, &attrs),
        stale = stale_temp_cleanup(&name),
        refused = directory_in_the_way(&name),
    )
}

/// The shell command that sets the attributes of `path`, refusing a path that has become a link
/// since it was observed.
fn attrs_command(path: &str, attrs: &FileAttrs) -> String {
    format!("if [ -L {p} ]; then echo {LINK_IN_THE_WAY} >&2; exit 1; fi{}", attr_commands(&quote(path), attrs), p = quote(path))
}

/// A mode and a chown argument, shared by files whose temporaries are set at once.
type AttrGroup = (u32, Option<String>);

/// One script writing every file, as `write_file` and `set_attrs` do, with the work done once per
/// directory where it can be: per directory one subshell that makes, checks and enters it (and
/// clears stale temporaries), writes every temporary into a private directory beside the files
/// (content as an argument of the shell's `printf`, or base64-encoded in a here-document when
/// large), sets mode and owner once per mode and owner, then renames them all into place with one
/// `mv`. Everything it prints goes to stdout in order: `tend-dir` or `tend-file` starts a part,
/// what a command printed follows, and `tend-wrote INDEX STATUS` ends each file.
fn write_script(files: &[FileWrite]) -> String {
    use base64::Engine;
    use std::fmt::Write as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut s = String::from("exec 2>&1\n");
    let at: Vec<Placed> = files.iter().map(|f| placed(&f.path)).collect();
    let mut dirs: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, _) in files.iter().enumerate().filter(|(_, f)| f.content.is_some()) {
        match dirs.iter_mut().find(|(d, _)| *d == at[i].dir) {
            Some((_, idx)) => idx.push(i),
            None => dirs.push((&at[i].dir, vec![i])),
        }
    }
    for (dir, idx) in &dirs {
        let qd = quote(dir);
        let stale: Vec<String> = idx.iter().map(|&i| stale_temp_cleanup(&at[i].name)).collect();
        // The directory is made, checked and entered once; the temporaries go into a private
        // directory beside the files (mode 0700: nothing can be planted in it), named as the
        // files, so that one `mv` renames them all into place, each atomically.
        let _ = writeln!(
            s,
            "echo tend-dir; ( if mkdir -p {qd} && {SAFE_DIR} {qd} && cd -P {qd} && {} && {STALE_STREAM_CLEANUP} && t=$(mktemp -d ./.tend-stream.XXXXXX); then umask 077; set -C",
            stale.join(" && ")
        );
        // The temporaries, each with its content: small ones with the shell's own printf (no
        // process per file), large ones through base64.
        for &i in idx {
            let tmp = format!("\"$t\"/{}", quote(&at[i].name));
            let content = files[i].content.as_deref().map_or(&[][..], Vec::as_slice);
            if content.len() <= PRINTF_MAX {
                let _ = writeln!(s, "echo tend-file; if printf %b {} > {tmp}; then w{i}=1; else echo \"tend-wrote {i} $?\"; fi", printf_arg(content));
            } else {
                let _ = writeln!(s, "echo tend-file; if base64 -d > {tmp} <<'TEND_CONTENT'; then w{i}=1; else echo \"tend-wrote {i} $?\"; fi");
                for chunk in b64.encode(content).as_bytes().chunks(76) {
                    s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
                    s.push('\n');
                }
                s.push_str("TEND_CONTENT\n");
            }
        }
        // Their mode and owner, once per mode and owner: a temporary whose attributes could not
        // be set is removed (and its file reported below).
        let mut groups: Vec<(AttrGroup, Vec<usize>)> = Vec::new();
        for &i in idx {
            let key = (files[i].attrs.mode.unwrap_or(0o644), chown_arg(&files[i].attrs));
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(i),
                None => groups.push((key, vec![i])),
            }
        }
        for ((mode, owner), members) in &groups {
            s.push_str("echo tend-dir; set --;");
            for &i in members {
                let _ = write!(s, " [ \"${{w{i}:-}}\" = 1 ] && set -- \"$@\" \"$t\"/{};", quote(&at[i].name));
            }
            let chown = owner.as_ref().map(|o| format!(" && chown {} \"$@\"", quote(o))).unwrap_or_default();
            let _ = writeln!(s, " if [ $# -gt 0 ] && ! {{ chmod {mode:o} \"$@\"{chown}; }}; then rm -f \"$@\"; fi");
        }
        // A directory (or a link to one) where a file goes is refused: `mv` would move the file
        // into it. The rest are renamed into place by one `mv`.
        s.push_str("echo tend-dir; set --;");
        for &i in idx {
            let name = quote(&at[i].name);
            let _ = write!(
                s,
                " if [ \"${{w{i}:-}}\" = 1 ]; then if [ ! -f \"$t\"/{name} ]; then w{i}=attrs; elif [ -d {p} ]; then w{i}=dir; rm -f \"$t\"/{name}; else set -- \"$@\" \"$t\"/{name}; fi; fi;",
                p = at[i].file
            );
        }
        s.push_str(" moved=; if [ $# -gt 0 ]; then moved=$(mv -f -- \"$@\" . 2>&1); fi\n");
        for &i in idx {
            let name = quote(&at[i].name);
            let _ = writeln!(
                s,
                "echo tend-file; case \"${{w{i}:-}}\" in attrs) echo 'its mode or owner could not be set'; echo 'tend-wrote {i} 1' ;; dir) echo {refused}; echo 'tend-wrote {i} 1' ;; 1) if [ -e \"$t\"/{name} ]; then echo \"$moved\"; echo 'tend-wrote {i} 1'; else echo 'tend-wrote {i} 0'; fi ;; esac",
                refused = directory_in_the_way(&at[i].name),
            );
        }
        s.push_str("rm -rf \"$t\"; else rc=$?;");
        for &i in idx {
            let _ = write!(s, " echo \"tend-wrote {i} $rc\";");
        }
        s.push_str(" fi )\n");
    }
    for (i, f) in files.iter().enumerate().filter(|(_, f)| f.content.is_none()) {
        let p = quote(&f.path);
        let _ = writeln!(
            s,
            "echo tend-file; if [ -L {p} ]; then echo {LINK_IN_THE_WAY}; echo 'tend-wrote {i} 1'; elif true{}; then echo 'tend-wrote {i} 0'; else echo \"tend-wrote {i} $?\"; fi",
            attr_commands(&p, &f.attrs)
        );
    }
    s
}

fn attr_commands(path: &str, attrs: &FileAttrs) -> String {
    let mut cmd = String::new();
    if let Some(m) = attrs.mode {
        cmd.push_str(&format!(" && chmod {m:o} {path}"));
    }
    if let Some(c) = chown_arg(attrs) {
        cmd.push_str(&format!(" && chown {} {path}", quote(&c)));
    }
    cmd
}

#[async_trait]
impl Transport for SshTransport {
    fn host(&self) -> &str {
        &self.target.name
    }

    fn host_key(&self) -> Option<String> {
        Some(self.host_key.clone())
    }

    async fn stat_many(&self, reqs: &[StatRequest]) -> Result<Vec<PathStat>, TransportError> {
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.observe_all(reqs, &[]).await?.0)
    }

    async fn observe(&self, stats: &[StatRequest], probes: &[String]) -> Result<(Vec<PathStat>, Vec<String>), TransportError> {
        self.observe_all(stats, probes).await
    }

    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, TransportError> {
        let cmd = format!("if [ -e {p} ]; then echo present; base64 -w0 < {p}; fi", p = quote(path));
        let out = self.run_ok("read", path, &cmd, b"").await?;
        let Some(body) = out.stdout.strip_prefix("present\n") else { return Ok(None) };
        base64::engine::general_purpose::STANDARD
            .decode(body.trim())
            .map(Some)
            .map_err(|e| self.err("read", path, io(std::io::ErrorKind::InvalidData, e.to_string())))
    }

    async fn write_file(&self, path: &str, content: &[u8], attrs: &FileAttrs) -> Result<(), TransportError> {
        self.run_ok("write", path, &write_command(path, attrs), content).await.map(|_| ())
    }

    async fn set_attrs(&self, path: &str, attrs: &FileAttrs) -> Result<(), TransportError> {
        self.run_ok("chmod/chown", path, &attrs_command(path, attrs), b"").await.map(|_| ())
    }

    /// Every file in one shell script on one channel ([`write_script`]): the contents travel in
    /// the script on stdin (never on argv), each file is written atomically and symlink-safely as
    /// `write_file` writes one, and reports its own exit status and error.
    async fn write_files(&self, files: &[FileWrite]) -> Vec<Result<(), TransportError>> {
        if files.len() < 2 {
            return super::one_by_one(self, files).await;
        }
        let script = write_script(files);
        let limit = self.target.operation_timeout.saturating_mul(u32::try_from(files.len().min(1000)).unwrap_or(1000).div_ceil(50).max(1));
        let out = match self
            .run_bounded("sh -s", script.as_bytes(), limit, &format!("write {} files", files.len()), "operation_timeout", MAX_OBSERVE_OUTPUT, None)
            .await
        {
            Ok(out) => out,
            Err(e) => return files.iter().map(|f| Err(self.err("write", &f.path, io(e.kind(), e.to_string())))).collect(),
        };
        let mut results: Vec<Option<Result<(), TransportError>>> = files.iter().map(|_| None).collect();
        // What commands printed since the last part began: the cause of the next failure.
        let mut said: Vec<&str> = Vec::new();
        for line in out.stdout.lines() {
            if line == "tend-dir" || line == "tend-file" {
                said.clear();
                continue;
            }
            let mut parts = line.splitn(3, ' ');
            let (Some("tend-wrote"), Some(i), Some(rc)) = (parts.next(), parts.next(), parts.next()) else {
                said.push(line);
                continue;
            };
            let (Ok(i), Ok(rc)) = (i.parse::<usize>(), rc.parse::<i32>()) else { continue };
            let Some(slot) = results.get_mut(i) else { continue };
            *slot = Some(if rc == 0 {
                Ok(())
            } else {
                let msg = said.join("; ");
                let op = if files[i].content.is_some() { "write" } else { "chmod/chown" };
                Err(self.err(op, &files[i].path, io(std::io::ErrorKind::Other, if msg.is_empty() { format!("exit status {rc}") } else { msg })))
            });
        }
        let stopped = out.stderr.trim().to_string();
        results
            .into_iter()
            .zip(files)
            .map(|(r, f)| {
                r.unwrap_or_else(|| {
                    Err(self.err(
                        "write",
                        &f.path,
                        io(std::io::ErrorKind::Other, format!("the host's shell stopped before this file (exit status {}): {stopped}", out.status)),
                    ))
                })
            })
            .collect()
    }

    async fn create_dir(&self, path: &str, attrs: &FileAttrs) -> Result<(), TransportError> {
        let cmd = format!("mkdir -p {}{}", quote(path), attr_commands(&quote(path), attrs));
        self.run_ok("create directory", path, &cmd, b"").await.map(|_| ())
    }

    async fn remove_file(&self, path: &str) -> Result<(), TransportError> {
        self.run_ok("remove", path, &format!("rm -f {}", quote(path)), b"").await.map(|_| ())
    }

    async fn remove_dir(&self, path: &str) -> Result<(), TransportError> {
        let cmd = format!("[ ! -e {p} ] || rmdir {p}", p = quote(path));
        self.run_ok("remove directory", path, &cmd, b"").await.map(|_| ())
    }

    async fn exec_streamed(&self, command: &str, cwd: Option<&str>, sink: Option<&OutputSink<'_>>) -> Result<ExecOutput, TransportError> {
        // The host stops the command (its whole process group, TERM then KILL 10 s later) when
        // it runs past the limit; tend waits a little longer than that for the host to say so.
        let limit = self.target.command_timeout.as_secs().max(1);
        let bounded = format!("if command -v timeout >/dev/null 2>&1; then exec timeout -k 10 {limit} {EVAL_STDIN}; else exec {EVAL_STDIN}; fi");
        let cmd = match cwd {
            Some(d) => format!("cd {} && {bounded}", quote(d)),
            None => bounded,
        };
        let started = std::time::Instant::now();
        let out = self
            .run_bounded(&cmd, command.as_bytes(), Duration::from_secs(limit + 30), "a command", "command_timeout + 30 s", MAX_COMMAND_OUTPUT, sink)
            .await
            .map_err(|source| self.err("run", command, source))?;
        if matches!(out.status, 124 | 137) && started.elapsed() >= Duration::from_secs(limit) {
            return Err(self.err(
                "run",
                command,
                io(std::io::ErrorKind::Other, format!("did not finish within {limit} s and was stopped (command_timeout of `{}`)", self.target.name)),
            ));
        }
        Ok(out)
    }
}

/// `safe_dir DIR` (a shell function, defined inline): fails, naming it, when a directory on the
/// way to DIR is a symlink that is not safe to follow — owned neither by root nor by the owner
/// of a directory only that owner may write to (as systemd's `CHASE_SAFE`). Only links cost a
/// `stat`; everything else is shell built-ins.
const SAFE_DIR: &str = r#"safe_dir() { p=; r=${1#/}; while [ -n "$r" ]; do c=${r%%/*}; case $r in */*) r=${r#*/} ;; *) r= ;; esac; [ -z "$c" ] && continue; n="$p/$c"; if [ -L "$n" ]; then lu=$(stat -c %u -- "$n") && set -- "$1" $(stat -L -c '%u %a' -- "${p:-/}") && if [ "$lu" != 0 ] && { [ "$lu" != "$2" ] || [ $((0$3 & 022)) != 0 ]; }; then echo "\`$c\` on the way is a symlink owned by uid $lu in a directory owned by uid $2: not followed" >&2; return 1; fi; fi; p=$n; done; }; safe_dir"#;

/// Shell that removes temporary files of this name that a killed run left (older than ten
/// minutes; `find` runs only when there is one).
fn stale_temp_cleanup(name: &str) -> String {
    let glob = format!("./.{}.tend-", name.replace(['*', '?', '[', '\\'], "?"));
    format!("for t in {}*; do if [ -f \"$t\" ] && [ -n \"$(find \"$t\" -maxdepth 0 -mmin +10 2>/dev/null)\" ]; then rm -f \"$t\"; fi; done", quote(&glob))
}

/// Files up to this size travel as an argument of the host shell's built-in `printf` (no process
/// per file); larger ones through `base64 -d`.
const PRINTF_MAX: usize = 64 * 1024;

/// `content` as one single-quoted shell word that `printf %b` prints back byte for byte: printable
/// ASCII as itself (a quote closed, escaped and reopened), every other byte and the backslash as a
/// `\0ooo` octal escape (always three digits, so a digit after it is never read as part of it).
fn printf_arg(content: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut w = String::with_capacity(content.len() + 2);
    w.push('\'');
    for &b in content {
        match b {
            b'\'' => w.push_str("'\\''"),
            b'\\' => w.push_str("\\0134"),
            b'\n' | b'\t' | 0x20..=0x7e => w.push(char::from(b)),
            _ => {
                let _ = write!(w, "\\0{b:03o}");
            }
        }
    }
    w.push('\'');
    w
}

/// Shell that removes the private temporary directories of a stream that a killed run left
/// (older than ten minutes; `find` runs only when there is one).
const STALE_STREAM_CLEANUP: &str =
    r#"for t in ./.tend-stream.*; do if [ -d "$t" ] && [ ! -L "$t" ] && [ -n "$(find "$t" -maxdepth 0 -mmin +10 2>/dev/null)" ]; then rm -rf "$t"; fi; done"#;

/// A shell that reads its script from stdin, then runs it with stdin at end of file.
pub(crate) const EVAL_STDIN: &str = "sh -c 'eval \"$(cat)\"'";

#[cfg(test)]
mod tests {
    use super::{FileAttrs, FileWrite, write_script};

    #[test]
    fn quotes_for_sh() {
        assert_eq!(super::quote("/srv/a b"), "'/srv/a b'");
        assert_eq!(super::quote("it's"), "'it'\\''s'");
    }

    /// The stream's script, run by each shell found here (dash, bash, busybox ash): every byte
    /// of small (printf) and large (base64) content, names that need quoting, attributes, and a
    /// refusal with its reason.
    #[test]
    fn one_script_writes_every_file_and_reports_each() {
        let shells: Vec<Vec<&str>> = [vec!["sh"], vec!["dash"], vec!["bash"], vec!["busybox", "sh"]]
            .into_iter()
            .filter(|c| std::process::Command::new(c[0]).args(&c[1..]).arg("-c").arg("true").output().is_ok_and(|o| o.status.success()))
            .collect();
        assert!(!shells.is_empty(), "no shell found");
        for shell in shells {
            writes_every_file_with(&shell);
        }
    }

    fn writes_every_file_with(shell: &[&str]) {
        let dir = tempfile::tempdir().expect("tmp");
        let at = |p: &str| dir.path().join(p).to_string_lossy().into_owned();
        std::fs::create_dir_all(dir.path().join("b/dir")).expect("mkdir");
        std::fs::write(dir.path().join("b/keep"), "same").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("b/link")).expect("link");
        let binary: Vec<u8> = (0..=255).chain(b"7\\0101'%b%s\n".iter().copied()).collect();
        let large: Vec<u8> = (0..200_000u32).map(|i| u8::try_from(i % 251).unwrap_or(0)).collect();
        let files = vec![
            FileWrite {
                path: at("a/one.txt"),
                content: Some(b"hello\nTEND_CONTENT\n".to_vec().into()),
                attrs: FileAttrs { mode: Some(0o600), ..FileAttrs::default() },
            },
            FileWrite { path: at("b/bin"), content: Some(binary.clone().into()), attrs: FileAttrs::default() },
            FileWrite { path: at("b/empty"), content: Some(Vec::new().into()), attrs: FileAttrs::default() },
            FileWrite { path: at("b/link"), content: None, attrs: FileAttrs { mode: Some(0o600), ..FileAttrs::default() } },
            FileWrite { path: at("b/keep"), content: None, attrs: FileAttrs { mode: Some(0o640), ..FileAttrs::default() } },
            FileWrite { path: at("b/it's large"), content: Some(large.clone().into()), attrs: FileAttrs::default() },
            FileWrite { path: at("b/dir"), content: Some(b"x".to_vec().into()), attrs: FileAttrs::default() },
        ];
        let out = std::process::Command::new(shell[0])
            .args(&shell[1..])
            .arg("-s")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().expect("stdin").write_all(write_script(&files).as_bytes())?;
                c.wait_with_output()
            })
            .expect("sh runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut status: Vec<(usize, &str)> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("tend-wrote "))
            .filter_map(|l| l.split_once(' '))
            .map(|(i, rc)| (i.parse().unwrap_or(99), rc))
            .collect();
        status.sort_unstable();
        assert_eq!(status, [(0, "0"), (1, "0"), (2, "0"), (3, "1"), (4, "0"), (5, "0"), (6, "1")], "{shell:?}: {stdout}");
        assert_eq!(std::fs::read(dir.path().join("a/one.txt")).expect("read"), b"hello\nTEND_CONTENT\n");
        assert_eq!(std::fs::read(dir.path().join("b/bin")).expect("read"), binary, "{shell:?}");
        assert_eq!(std::fs::read(dir.path().join("b/empty")).expect("read"), b"");
        assert_eq!(std::fs::read(dir.path().join("b/it's large")).expect("read"), large);
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.path().join("a/one.txt")).expect("stat").permissions()) & 0o777, 0o600);
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.path().join("b/bin")).expect("stat").permissions()) & 0o777, 0o644);
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.path().join("b/keep")).expect("stat").permissions()) & 0o777, 0o640);
        assert!(stdout.contains("it is a symlink now (not followed)\ntend-wrote 3 1"), "the refusal says why: {stdout}");
        assert!(stdout.contains("is a directory (or a link to one) now, not a file: not replaced\ntend-wrote 6 1"), "{stdout}");
        assert!(
            dir.path().join("b/dir").is_dir() && std::fs::read_dir(dir.path().join("b/dir")).expect("ls").next().is_none(),
            "nothing moved into the directory"
        );
        let mut left: Vec<String> = ["a", "b"]
            .iter()
            .flat_map(|d| std::fs::read_dir(dir.path().join(d)).expect("ls"))
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["bin", "dir", "empty", "it's large", "keep", "link", "one.txt"], "no temporaries left");
    }
}
