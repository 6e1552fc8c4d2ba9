//! Command-line arguments (clap derive types only).
// Doc comments here are the `--help` text users read, not rustdoc.
#![allow(clippy::doc_markdown)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `tend --version`: the release and the commit it was built from.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("TEND_BUILD_COMMIT"), ")");

/// tend: converge hosts (local and over SSH) and cloud VMs (EC2) to the state declared in a Git repository.
#[derive(Debug, Parser)]
#[command(name = "tend", version = VERSION, about, propagate_version = true)]
pub struct Cli {
    /// The config directory (holding tend.toml).
    #[arg(short = 'C', long = "config", global = true, default_value = ".", env = "TEND_CONFIG", value_name = "DIR")]
    pub config: PathBuf,
    /// The state file (default: from tend.toml, else ~/.local/state/tend/PROJECT/state.db).
    #[arg(long, global = true, env = "TEND_STATE", value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Select an environment of tend.toml ([environments.NAME]).
    #[arg(long = "env", global = true, env = "TEND_ENV", value_name = "NAME")]
    pub environment: Option<String>,
    /// Set a variable, overriding tend.toml and the environment (repeatable).
    #[arg(long = "var", global = true, value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// An age identity file or SSH private key for decrypting secrets (repeatable; also
    /// TEND_AGE_KEY_FILE, SOPS_AGE_KEY_FILE, SOPS_AGE_KEY, SOPS_AGE_SSH_PRIVATE_KEY_FILE).
    #[arg(short = 'i', long = "identity", global = true, value_name = "FILE")]
    pub identities: Vec<PathBuf>,
    /// Read the config from this Git repository (https, ssh, git:// or a path) instead of a
    /// directory; `-C` is then a directory inside the repository.
    #[arg(long, global = true, env = "TEND_SOURCE", value_name = "URL")]
    pub source: Option<String>,
    /// With --source: a branch or tag name, a commit id, `branch:NAME`, `tag:NAME`, `commit:ID`
    /// or `semver:RANGE` (highest matching tag). Default: main, else master.
    #[arg(long = "ref", global = true, env = "TEND_REF", value_name = "REF", default_value = "")]
    pub reference: String,
    /// With --source: where fetched repositories and checkouts are kept (default
    /// ~/.cache/tend/sources).
    #[arg(long, global = true, env = "TEND_SOURCE_CACHE", value_name = "DIR")]
    pub source_cache: Option<PathBuf>,
    /// With --source: accept only commits SSH-signed by a key in this allowed_signers file
    /// (the format of git's gpg.ssh.allowedSignersFile); anything else is refused.
    #[arg(long, global = true, env = "TEND_ALLOWED_SIGNERS", value_name = "FILE")]
    pub allowed_signers: Option<PathBuf>,
    /// With an https --source: a file holding the access token (else TEND_GIT_TOKEN).
    #[arg(long, global = true, env = "TEND_GIT_TOKEN_FILE", value_name = "FILE")]
    pub git_token_file: Option<PathBuf>,
    /// Allow a plan that destroys every resource in state and keeps nothing (as `allow_empty =
    /// true` in tend.toml); refused otherwise, because that is what a wrong directory looks like.
    #[arg(long, global = true)]
    pub allow_destroy_all: bool,
    /// Take over state that records another config as its owner (another directory or
    /// repository, e.g. after moving the checkout); refused otherwise, unless --state is given.
    #[arg(long, global = true)]
    pub reassign_state: bool,
    /// More log output on stderr (-v debug, -vv trace); `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Colour plans and applies: `auto` on a terminal unless NO_COLOR is set.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
    /// Never colour (as --color never).
    #[arg(long, global = true)]
    pub no_color: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Shells `tend completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// Bash.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
}

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Which part of the config a plan covers, and what it re-creates (for `plan` and `apply`).
#[derive(Debug, Clone, Args)]
pub struct SelectArgs {
    /// Only this resource (or instance) and what it depends on (repeatable).
    #[arg(long = "target", value_name = "ADDR")]
    pub targets: Vec<String>,
    /// Only what is placed on these hosts, by name or label (`role=web`), and what it depends
    /// on (repeatable).
    #[arg(long = "limit", value_name = "HOST|LABEL=VALUE")]
    pub limit: Vec<String>,
    /// Re-create this resource (or instance) even if nothing changed (repeatable).
    #[arg(long = "replace", value_name = "ADDR")]
    pub replace: Vec<String>,
    /// Record in state what changed or went away outside tend, changing nothing on the
    /// targets (the next plan still converges them to the configuration).
    #[arg(long, conflicts_with = "replace")]
    pub refresh_only: bool,
}

/// How plans show changes inside content (for `plan` and `apply`).
#[derive(Debug, Clone, Args)]
pub struct DiffArgs {
    /// Do not show what changes inside files as diffs.
    #[arg(long)]
    pub no_diff: bool,
    /// Lines of context around each change in a diff.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub diff_context: usize,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Cli {
    /// A config directory given as the argument of `plan`, `apply` or `validate` becomes `-C`;
    /// given both ways and different, it is an error naming both.
    pub fn take_positional_dir(&mut self) -> Result<(), String> {
        let positional = match &mut self.command {
            Command::Plan(a) => a.dir.take(),
            Command::Destroy(a) => a.dir.take(),
            Command::Validate { dir } => dir.take(),
            Command::Apply(a) if a.plan_file.as_ref().is_some_and(|p| p.is_dir()) => a.plan_file.take(),
            _ => None,
        };
        let Some(dir) = positional else { return Ok(()) };
        if self.config != std::path::Path::new(".") && self.config != dir {
            return Err(format!("the config directory is given twice: `{}` and -C `{}`; give it once", dir.display(), self.config.display()));
        }
        self.config = dir;
        Ok(())
    }
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).filter(|(k, _)| !k.is_empty()).ok_or_else(|| format!("`{s}` is not NAME=VALUE"))
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what apply would change.
    Plan(PlanArgs),
    /// Converge the targets: plan and apply, or apply a saved plan.
    Apply(ApplyArgs),
    /// Destroy everything this config's state records (plan, confirm, apply), as `apply` would
    /// after removing every resource from the config.
    Destroy(DestroyArgs),
    /// Show a plan saved with `tend plan --out` (text, or --json).
    Show {
        /// The saved plan.
        #[arg(value_name = "PLAN_FILE")]
        plan_file: PathBuf,
        /// Print the plan as JSON (schema: docs/plan-json.md).
        #[arg(long)]
        json: bool,
    },
    /// Check config, references and the graph without touching any target.
    Validate {
        /// The config directory (as -C DIR).
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Print the dependency graph.
    Graph(GraphArgs),
    /// Inspect or edit state.
    #[command(subcommand)]
    State(StateCommand),
    /// List past applies.
    History(HistoryArgs),
    /// Keep converging: fetch, plan and apply whenever Git changes (webhook or interval), and
    /// correct drift; serve /healthz, /readyz, /metrics and /status.
    Agent(AgentArgs),
    /// Start managing an existing object: record ID under ADDRESS (declared in the config);
    /// tend never touches objects it did not create or import.
    Import {
        /// The resource instance address, e.g. ec2.instance.web.
        address: String,
        /// The object's id, e.g. i-0123456789abcdef0.
        id: String,
    },
    /// Show a running agent's status.
    Status(AgentClientArgs),
    /// Stop a running agent from applying anything until `tend resume`.
    Suspend(AgentClientArgs),
    /// Let a suspended agent apply again (and reconcile now).
    Resume(AgentClientArgs),
    /// Switch a host's files or releases back to an earlier generation (the next apply moves
    /// it forward again to what the config says).
    Rollback {
        /// What to roll back, by name: a host (`host.ssh.NAME` / `host.local.NAME`) rolls back
        /// its generations of files and the releases placed on it.
        #[arg(value_name = "NAME")]
        host: String,
        /// The generation (a prefix is enough); default: the newest one before the current.
        #[arg(long, value_name = "GENERATION")]
        to: Option<String>,
    },
    /// Print a shell completion script (bash: `source <(tend completions bash)`; zsh: put it in
    /// a directory of $fpath as `_tend`; fish: save it as ~/.config/fish/completions/tend.fish).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print tend's man page (roff): `tend man > tend.1; man ./tend.1`.
    Man,
    /// Create, encrypt, edit and check age-encrypted secrets.
    #[command(subcommand)]
    Secrets(SecretsCommand),
}

/// `tend secrets ...`.
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Generate an age identity (private key file, mode 0600) and print its recipient.
    Keygen {
        /// Where to write the identity; without it, it is printed to stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Encrypt a file to the recipients of tend.toml (or --recipient).
    Encrypt {
        /// The plaintext file.
        file: PathBuf,
        /// Recipients (age1… or SSH public keys), instead of tend.toml's [secrets] recipients.
        #[arg(short, long = "recipient", value_name = "RECIPIENT")]
        recipients: Vec<String>,
        /// Where to write (default FILE.age).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Write ASCII armour instead of binary.
        #[arg(short, long)]
        armor: bool,
        /// Replace an existing output file.
        #[arg(long)]
        force: bool,
        /// Write a SOPS file (YAML, JSON or dotenv, by the file name): keys stay readable, each
        /// value is encrypted; `sops` reads it. Default output: NAME.enc.EXT.
        #[arg(long)]
        sops: bool,
        /// With --sops: encrypt only values under keys matching this regex (e.g. '^(data|stringData)$').
        #[arg(long, value_name = "REGEX", requires = "sops", conflicts_with = "unencrypted_suffix")]
        encrypted_regex: Option<String>,
        /// With --sops: leave values under keys ending with this suffix in plaintext (default _unencrypted).
        #[arg(long, value_name = "SUFFIX", requires = "sops")]
        unencrypted_suffix: Option<String>,
    },
    /// Decrypt a file to stdout (never to a file).
    Decrypt {
        /// The encrypted file.
        file: PathBuf,
    },
    /// Edit an encrypted file in $EDITOR; it is re-encrypted and the plaintext removed.
    Edit {
        /// The encrypted file.
        file: PathBuf,
    },
    /// Re-encrypt every declared secret to the current recipients of tend.toml.
    Rekey,
    /// Check that every declared secret decrypts and every referenced key exists.
    Check,
}

/// `tend plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The config directory (as -C DIR).
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print the plan as JSON (schema: docs/plan-json.md).
    #[arg(long)]
    pub json: bool,
    /// Save the plan to FILE for `tend apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Exit 0 when nothing changes, 2 when something would, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    #[command(flatten)]
    pub diff: DiffArgs,
    #[command(flatten)]
    pub select: SelectArgs,
}

/// `tend apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved with `tend plan --out`, applied exactly as saved; or a config directory
    /// (as -C DIR), planned and applied.
    #[arg(value_name = "PLAN_FILE|DIR")]
    pub plan_file: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// How many changes run at once.
    #[arg(long, value_name = "N")]
    pub parallelism: Option<usize>,
    #[command(flatten)]
    pub diff: DiffArgs,
    #[command(flatten)]
    pub select: SelectArgs,
}

/// `tend destroy`.
#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// The config directory (as -C DIR).
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// How many changes run at once.
    #[arg(long, value_name = "N")]
    pub parallelism: Option<usize>,
}

/// `tend graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
}

/// Graph output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT.
    Dot,
    /// JSON.
    Json,
}

/// `tend state ...`.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List the addresses in state.
    List,
    /// Show one resource's record.
    Show {
        /// Resource address, e.g. 'host.file.motd[web]'.
        address: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Forget resources without touching the targets.
    Rm {
        /// Resource addresses.
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// Clear the apply lock left by a run that died.
    Unlock {
        /// Clear it even if its holder may still be running.
        #[arg(long)]
        force: bool,
    },
}

/// `tend history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// One run, by its ID: what happened to each resource.
    #[arg(value_name = "ID")]
    pub id: Option<i64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `tend agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Fetch and reconcile at least this often (e.g. 30s, 5m); default: tend.toml
    /// `[agent] interval`, else 5m.
    #[arg(long, value_parser = humantime::parse_duration, env = "TEND_INTERVAL")]
    pub interval: Option<std::time::Duration>,
    /// Add up to this fraction of the interval at random, so agents do not fetch in step
    /// (default: tend.toml, else 0.1).
    #[arg(long, env = "TEND_JITTER")]
    pub jitter: Option<f64>,
    /// Between fetches, re-observe the targets of the last commit this often and correct drift.
    #[arg(long, value_parser = humantime::parse_duration, env = "TEND_DRIFT_INTERVAL")]
    pub drift_interval: Option<std::time::Duration>,
    /// After failures, retry with backoff growing from 10s up to this.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub max_backoff: std::time::Duration,
    /// `apply` converges; `plan-only` only reports what would change (default: tend.toml,
    /// else apply).
    #[arg(long, value_enum, env = "TEND_MODE")]
    pub mode: Option<AgentMode>,
    /// With --once --mode plan-only: print the plan, and exit 2 when it has changes.
    #[arg(long, requires = "once")]
    pub detailed_exitcode: bool,
    /// Reconcile once and exit (for cron or CI): exit 0 converged, 1 failed.
    #[arg(long)]
    pub once: bool,
    /// Listen here for webhooks and status (`none` to not listen).
    #[arg(long, default_value = "127.0.0.1:9720", env = "TEND_LISTEN", value_name = "ADDR")]
    pub listen: String,
    /// Shared secret of webhooks (and bearer token of suspend/resume).
    #[arg(long, env = "TEND_WEBHOOK_SECRET", hide_env_values = true, value_name = "SECRET")]
    pub webhook_secret: Option<String>,
    /// A file holding the webhook secret.
    #[arg(long, value_name = "FILE", conflicts_with = "webhook_secret")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Changes applied at once (default: tend.toml's parallelism, else 10).
    #[arg(long)]
    pub parallelism: Option<usize>,
}

/// The agent's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AgentMode {
    /// Converge.
    Apply,
    /// Only report.
    PlanOnly,
}

/// Talking to a running agent.
#[derive(Debug, Args)]
pub struct AgentClientArgs {
    /// The agent's listener.
    #[arg(long, default_value = "http://127.0.0.1:9720", env = "TEND_AGENT_URL", value_name = "URL")]
    pub agent: String,
    /// The agent's secret, when it has one (suspend/resume).
    #[arg(long, env = "TEND_WEBHOOK_SECRET", hide_env_values = true, value_name = "SECRET")]
    pub secret: Option<String>,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
    /// `tend status`: print the plan of the agent's current commit instead (what it would
    /// change, in plan-only mode or while suspended).
    #[arg(long)]
    pub plan: bool,
}
