//! Subcommands. The only place (with main.rs) that prints or decides exit codes.
//!
//! Exit codes: 0 success; 1 any error (bad config or arguments, stale plan, lock held, refused
//! confirmation, a resource that failed, I/O); 2 only when asked for it: `plan
//! --detailed-exitcode` when changes are pending. A CI job never reads an error as drift.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod agent;
mod apply;
mod graph;
mod history;
mod import;
mod plan;
mod progress;
mod rollback;
mod secrets;
mod state;
mod validate;

use std::io::IsTerminal;
use std::process::ExitCode;

use tend::config::LoadOptions;
use tend::registry::Registry;
use tend::state::StateError;
use tend::workspace::{Workspace, WorkspaceError};

use crate::cli::{Cli, Command, LogFormat};

/// A failure, rendered; every failure exits 1.
#[derive(Debug)]
pub struct Failure {
    /// `error: …`, `Caused by:` lines, `hint:` lines.
    pub text: String,
}

impl Failure {
    /// A user error (exit 1).
    pub fn user(message: impl std::fmt::Display, hint: Option<String>) -> Self {
        Self { text: render("error", &message.to_string(), None, hint) }
    }

    /// From any error with its cause chain.
    pub fn from_error(e: &(dyn std::error::Error + 'static), hint: Option<String>) -> Self {
        Self { text: render("error", &e.to_string(), e.source(), hint) }
    }
}

fn render(label: &str, message: &str, mut cause: Option<&(dyn std::error::Error + 'static)>, hint: Option<String>) -> String {
    let mut s = format!("{label}: {message}\n");
    while let Some(c) = cause {
        s.push_str(&format!("  Caused by: {c}\n"));
        cause = c.source();
    }
    if let Some(h) = hint {
        s.push('\n');
        for line in h.lines() {
            s.push_str(&format!("hint: {line}\n"));
        }
    }
    s
}

impl From<StateError> for Failure {
    fn from(e: StateError) -> Self {
        let hint = e.hint();
        Self::from_error(&e, hint)
    }
}

impl From<WorkspaceError> for Failure {
    fn from(e: WorkspaceError) -> Self {
        match e {
            WorkspaceError::Config(d) => {
                let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
                let width = if color { 100 } else { 80 };
                Self {
                    text: format!(
                        "{}error: the configuration is invalid ({} problem{})\n",
                        d.render(width, color),
                        d.items.len(),
                        if d.items.len() == 1 { "" } else { "s" }
                    ),
                }
            }
            WorkspaceError::State(s) => s.into(),
            other @ WorkspaceError::Provider { .. } => Self::from_error(&other, None),
        }
    }
}

/// Wire-level logs of the SDKs and transports under tend: at debug and trace they print
/// request and response bodies and channel data, which carry provider fields (EC2 `user_data` and
/// tags, file contents). Kept at info unless `RUST_LOG` names them explicitly.
const WIRE_QUIET: &str = "aws_smithy_runtime=info,aws_smithy_runtime_api=info,aws_smithy_http_client=info,aws_smithy_types=info,aws_sigv4=info,aws_config=info,aws_sdk_ec2=info,hyper=info,hyper_util=info,h2=info,rustls=info,reqwest=info,russh=info";

/// Set up tracing on stderr: `-v` debug, `-vv` trace (tend's own crates; SDK wire logs stay
/// quiet), `RUST_LOG` overrides.
pub fn init_logging(verbose: u8, format: LogFormat, daemon: bool) {
    let trace = format!("trace,{WIRE_QUIET}");
    // kube-rs logs every failed request as an error of its own; tend reports it, once, with
    // the cluster and what was asked.
    let default = match verbose {
        0 => "warn,kube_client::client::builder=off",
        1 if daemon => "tend=info,tend_host=info,tend_source=info,warn,kube_client::client::builder=off",
        1 => "tend=debug,tend_host=debug,tend_state=debug,tend_source=debug,info,kube_client::client::builder=off",
        _ => trace.as_str(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(tend::secrets::scrub::Scrubbed);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()).try_init(),
    };
}

pub(crate) fn load_workspace(cli: &Cli) -> Result<Workspace, Failure> {
    load_workspace_in(cli, None)
}

/// The workspace a saved plan was made for: its config directory when `-C` and `--source` do
/// not name one, its environment when `--env` does not (and `--env` naming another is refused).
pub(crate) fn load_workspace_in(cli: &Cli, saved: Option<&tend::plan::Plan>) -> Result<Workspace, Failure> {
    let (mut chosen, revision, origin) = config_root(cli)?;
    if let Some(r) = saved.map(|p| p.config_root.clone()).filter(|_| cli.source.is_none() && cli.config == std::path::Path::new(".")) {
        chosen = r;
    }
    let environment = match (&cli.environment, saved.and_then(|p| p.environment.as_ref())) {
        (Some(asked), Some(planned)) if asked != planned => {
            return Err(Failure::user(
                format!("the saved plan was made for environment `{planned}`, not `{asked}`"),
                Some(format!("apply it without --env (it applies to `{planned}`), or make a plan for `{asked}` with `tend --env {asked} plan --out FILE`")),
            ));
        }
        (Some(asked), _) => Some(asked.clone()),
        (None, planned) => planned.cloned(),
    };
    let root = chosen;
    let opts = LoadOptions {
        root,
        environment,
        vars: cli.vars.clone(),
        identities: tend::secrets::IdentitySources::from_env(&cli.identities),
        allow_destroy_all: cli.allow_destroy_all,
        origin,
        reassign_state: cli.reassign_state,
    };
    let mut ws = Workspace::load(Registry::builtin(), &opts, cli.state.clone())?;
    if let Some(r) = revision {
        ws.config.revision = r;
    }
    Ok(ws)
}

/// The config directory: `-C`, or with `--source` the directory `-C` names inside a fresh
/// read-only checkout of the resolved commit (and that commit as the revision).
/// The source `--source` names, and the directory `-C` names inside it (checked before anything
/// is fetched).
#[cfg(feature = "git")]
pub(crate) fn open_source(cli: &Cli, url: &str) -> Result<(tend::source::GitSource, std::path::PathBuf), Failure> {
    let subdir = cli.config.strip_prefix(".").unwrap_or(&cli.config).to_path_buf();
    if subdir.is_absolute() || subdir.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(Failure::user(format!("with --source, -C must be a directory inside the repository, not `{}`", cli.config.display()), None));
    }
    let opts = tend::source::SourceOptions {
        url: url.to_string(),
        reference: cli.reference.clone(),
        cache: cli.source_cache.clone(),
        token_file: cli.git_token_file.clone(),
    };
    Ok((tend::source::open(&opts).map_err(source_failure)?, subdir))
}

/// The config directory: `-C`, or with `--source` the directory `-C` names inside a fresh
/// read-only checkout of the resolved commit (and that commit as the revision).
#[cfg(feature = "git")]
fn config_root(cli: &Cli) -> Result<(std::path::PathBuf, Option<String>, Option<String>), Failure> {
    let Some(url) = &cli.source else { return Ok((cli.config.clone(), None, None)) };
    let (source, subdir) = open_source(cli, url)?;
    let signers = tend::source::signers(cli.allowed_signers.as_deref()).map_err(|e| Failure::user(e, None))?;
    let never = std::sync::atomic::AtomicBool::new(false);
    let (resolved, dir) = tokio::task::block_in_place(|| tend::source::read(&source, true, signers.as_ref(), &never)).map_err(|e| match e {
        tend::source::ReadError::Source(e) => match dubious_ownership(url) {
            Some(hint) => Failure { text: source_failure(e).text.split("\nhint:").next().unwrap_or_default().to_string() + &format!("\nhint: {hint}\n") },
            None => source_failure(e),
        },
        tend::source::ReadError::Refused(e) => Failure::user(
            format!("refusing to use {}: {e}", source.display_url()),
            Some("sign commits with an allowed key (git config gpg.format ssh; commit -S), or add the signer to the allowed signers file".into()),
        ),
    })?;
    eprintln!("Source: {} {} at {}", source.display_url(), resolved.reference, resolved.commit);
    let origin = git_origin(&source, &subdir);
    Ok((dir.join(subdir), Some(tend::source::revision(&resolved)), Some(origin)))
}

/// A local repository owned by another user: git refuses to serve it ("dubious ownership"),
/// and says so only where nobody sees it. The fix, for a repository one trusts.
#[cfg(feature = "git")]
fn dubious_ownership(url: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let path = std::path::Path::new(url.strip_prefix("file://").unwrap_or(url));
    if !path.is_absolute() && !url.starts_with('.') {
        return None;
    }
    let me = fs_err::metadata("/proc/self").ok()?.uid();
    let owner = std::fs::metadata(path).ok()?.uid();
    // git names the `.git` directory of a repository with a work tree.
    let git_dir = if path.join(".git").is_dir() { path.join(".git") } else { path.to_path_buf() };
    (owner != me).then(|| {
        format!(
            "{} is owned by another user (uid {owner}), and git refuses such repositories (\"dubious ownership\"); if you trust it: git config --global --add safe.directory {}",
            path.display(),
            git_dir.display()
        )
    })
}

/// What state records as the source of a Git config: `git:URL#DIR`, the URL without credentials.
#[cfg(feature = "git")]
pub(crate) fn git_origin(source: &tend::source::GitSource, subdir: &std::path::Path) -> String {
    format!("git:{}#{}", source.display_url(), subdir.display())
}

#[cfg(not(feature = "git"))]
fn config_root(cli: &Cli) -> Result<(std::path::PathBuf, Option<String>, Option<String>), Failure> {
    if cli.source.is_some() {
        return Err(Failure::user("this build of tend has no Git support", Some("build with the `git` feature".into())));
    }
    Ok((cli.config.clone(), None, None))
}

#[cfg(feature = "git")]
#[allow(clippy::needless_pass_by_value)] // used as map_err(source_failure)
pub(crate) fn source_failure(e: tend::source::SourceError) -> Failure {
    let hint = e.hint();
    Failure::from_error(&e, hint)
}

/// Run a parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match &cli.command {
        Command::Plan(args) => plan::run(&cli, args).await,
        Command::Apply(args) => apply::run(&cli, args).await,
        Command::Validate { .. } => validate::run(&cli).await,
        Command::Graph(args) => graph::run(&cli, args).await,
        Command::State(cmd) => state::run(&cli, cmd).await,
        Command::History(args) => history::run(&cli, args).await,
        Command::Secrets(cmd) => secrets::run(&cli, cmd),
        Command::Agent(args) => agent::run(&cli, args).await,
        Command::Status(args) => agent::status(args).await,
        Command::Import { address, id } => import::run(&cli, address, id).await,
        Command::Suspend(args) => agent::suspend(args, true).await,
        Command::Resume(args) => agent::suspend(args, false).await,
        Command::Rollback { host, to } => rollback::run(&cli, host, to.as_deref()).await,
        Command::Completions { shell } => completions(*shell),
        Command::Destroy(args) => apply::destroy(&cli, args).await,
        Command::Show { plan_file, json } => show(&cli, plan_file, *json),
        Command::Man => man(),
    };
    match result {
        Ok(code) => code,
        Err(f) => {
            eprint!("{}", f.text);
            ExitCode::FAILURE
        }
    }
}

/// `tend show PLANFILE`: a saved plan, as `tend plan` showed it (without the diffs of file
/// content, which plan files never hold), or its JSON.
fn show(cli: &Cli, file: &std::path::Path, json: bool) -> Result<ExitCode, Failure> {
    let plan = apply::read_plan(file)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&tend::plan::render_json(&plan)).expect("plans serialize to JSON"));
    } else {
        let diff = crate::cli::DiffArgs { no_diff: true, diff_context: 3 };
        print!("{}", tend::plan::render_text_with(&plan, &text_options(cli, &diff)));
        println!("\nMade from {} at revision {}; `tend apply {}` applies exactly this.", plan.config_root.display(), plan.revision, file.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `--target`, `--limit`, `--replace` as plan options; an address that does not parse is an
/// error naming it.
pub(crate) fn plan_options(select: &crate::cli::SelectArgs) -> Result<tend::plan::PlanOptions, Failure> {
    let parse = |flag: &str, list: &[String]| -> Result<Vec<tend::provider::ResourceAddr>, Failure> {
        list.iter()
            .map(|a| {
                a.parse().map_err(|e| Failure::user(format!("{flag} `{a}`: {e}"), Some("addresses look like host.file.motd or 'host.file.motd[web]'".into())))
            })
            .collect()
    };
    Ok(tend::plan::PlanOptions {
        targets: parse("--target", &select.targets)?,
        limit: select.limit.clone(),
        replace: parse("--replace", &select.replace)?,
        destroy: false,
        refresh_only: select.refresh_only,
    })
}

/// `tend completions SHELL`, from the clap definitions.
fn completions(shell: crate::cli::Shell) -> Result<ExitCode, Failure> {
    use clap::CommandFactory;
    let shell = match shell {
        crate::cli::Shell::Bash => clap_complete::Shell::Bash,
        crate::cli::Shell::Zsh => clap_complete::Shell::Zsh,
        crate::cli::Shell::Fish => clap_complete::Shell::Fish,
    };
    // Generated in memory: the generator cannot be told that stdout closed early (`| head`).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "tend", &mut script);
    write_stdout(&script)
}

/// `tend man`: the man page, from the clap definitions.
fn man() -> Result<ExitCode, Failure> {
    use clap::CommandFactory;
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page).map_err(|e| Failure::from_error(&e, None))?;
    write_stdout(&page)
}

/// Write to stdout; a reader that stopped reading (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<ExitCode, Failure> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::from_error(&e, None)),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// How to render a text plan: diffs as asked, colour on a terminal unless `NO_COLOR` is set
/// (<https://no-color.org>) or `--no-color` / `--color never` is given.
pub(crate) fn text_options(cli: &Cli, diff: &crate::cli::DiffArgs) -> tend::plan::TextOptions {
    use std::io::IsTerminal;
    let color = match (cli.no_color, cli.color) {
        (true, _) | (_, crate::cli::ColorChoice::Never) => false,
        (_, crate::cli::ColorChoice::Always) => true,
        (_, crate::cli::ColorChoice::Auto) => std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal(),
    };
    tend::plan::TextOptions { diff: !diff.no_diff, context: diff.diff_context, color }
}

/// Print a plan's errors; returns a failure if there are any.
pub(crate) fn plan_errors(plan: &tend::plan::Plan) -> Result<(), Failure> {
    if plan.errors.is_empty() {
        return Ok(());
    }
    let mut text = String::new();
    for e in &plan.errors {
        let msg = match &e.addr {
            Some(a) if !e.message.contains(&a.to_string()) => format!("{a}: {}", e.message),
            _ => e.message.clone(),
        };
        text.push_str(&render("error", &msg, None, e.hint.clone()));
    }
    text.push_str(&format!("error: the plan has {} error{}; nothing was applied\n", plan.errors.len(), if plan.errors.len() == 1 { "" } else { "s" }));
    Err(Failure { text })
}

/// The instances a plan could not cover (unreachable hosts and their dependents), rendered.
pub(crate) fn unplanned_report(plan: &tend::plan::Plan) -> Option<String> {
    if plan.unplanned.is_empty() {
        return None;
    }
    let mut text = String::new();
    for e in &plan.unplanned {
        let msg = match &e.addr {
            Some(a) => format!("{a}: {}", e.message),
            None => e.message.clone(),
        };
        text.push_str(&render("error", &msg, None, e.hint.clone()));
    }
    text.push_str(&format!(
        "error: {} resource{} could not be planned; everything else was planned\n",
        plan.unplanned.len(),
        if plan.unplanned.len() == 1 { "" } else { "s" },
    ));
    Some(text)
}

/// The name of the user this process runs as (from /etc/passwd), or `uid N`; for when `$USER`
/// is not set (cron, systemd, containers).
fn uid_name() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = fs_err::metadata("/proc/self").ok()?.uid();
    let passwd = fs_err::read_to_string("/etc/passwd").unwrap_or_default();
    let name = passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid.to_string()).then(|| name.to_string())
    });
    Some(name.unwrap_or_else(|| format!("uid {uid}")))
}

pub(crate) fn who() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).ok().filter(|u| !u.is_empty()).or_else(uid_name).unwrap_or_else(|| "unknown".into());
    let host = hostname::get().map_or_else(|_| "unknown-host".into(), |h| h.to_string_lossy().into_owned());
    format!("{user}@{host}")
}
