//! The validated config model that the graph and the planner work on.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tend_provider::{Attributes, ResourceAddr, Value};

use super::source::{SourceMap, Span};

/// A reference `${ADDRESS.FIELD.path...}` to another resource's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// The resource, with an instance key if one was written.
    pub addr: ResourceAddr,
    /// The field.
    pub field: String,
    /// Keys / indices into the field's value.
    pub path: Vec<String>,
    /// Where the reference is written (not saved in plan files).
    #[serde(skip)]
    pub span: Span,
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.addr, self.field)?;
        for p in &self.path {
            write!(f, ".{p}")?;
        }
        Ok(())
    }
}

/// A reference `${secret.NAME.path...}` to a decrypted secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretRef {
    /// The secret's name (`[secret.NAME]`).
    pub name: String,
    /// Keys into a secret document; empty for the whole value.
    pub path: Vec<String>,
    /// Where the reference is written (not saved in plan files).
    #[serde(skip)]
    pub span: Span,
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "secret.{}", self.name)?;
        for p in &self.path {
            write!(f, ".{p}")?;
        }
        Ok(())
    }
}

/// One piece of a string template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// Literal text.
    Lit(String),
    /// An interpolated reference.
    Ref(Reference),
    /// An interpolated secret.
    Secret(SecretRef),
    /// `${each.key}`: the instance's key (the host a placed resource is on).
    EachKey,
}

/// A config value that may contain references, evaluated at plan and again at apply time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expr {
    /// A plain value.
    Literal(Value),
    /// A string with `${...}` parts; a template of exactly one reference keeps its type.
    Template(Vec<Part>),
    /// A list holding expressions.
    List(Vec<Expr>),
    /// A table holding expressions.
    Map(tend_provider::Map<Expr>),
}

impl Expr {
    /// Every secret reference inside.
    pub fn secret_refs(&self) -> Vec<&SecretRef> {
        match self {
            Self::Literal(_) => Vec::new(),
            Self::Template(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    Part::Secret(s) => Some(s),
                    _ => None,
                })
                .collect(),
            Self::List(l) => l.iter().flat_map(Expr::secret_refs).collect(),
            Self::Map(m) => m.values().flat_map(Expr::secret_refs).collect(),
        }
    }

    /// Every reference inside.
    pub fn references(&self) -> Vec<&Reference> {
        let mut out = Vec::new();
        self.collect_refs(&mut out);
        out
    }

    fn collect_refs<'a>(&'a self, out: &mut Vec<&'a Reference>) {
        match self {
            Self::Literal(_) => {}
            Self::Template(parts) => out.extend(parts.iter().filter_map(|p| match p {
                Part::Ref(r) => Some(r),
                Part::Lit(_) | Part::Secret(_) | Part::EachKey => None,
            })),
            Self::List(l) => l.iter().for_each(|e| e.collect_refs(out)),
            Self::Map(m) => m.values().for_each(|e| e.collect_refs(out)),
        }
    }

    /// The value if it holds no reference.
    pub fn literal(&self) -> Option<Value> {
        match self {
            Self::Literal(v) => Some(v.clone()),
            Self::Template(_) => None,
            Self::List(l) => l.iter().map(Expr::literal).collect::<Option<Vec<_>>>().map(Value::List),
            Self::Map(m) => m.iter().map(|(k, e)| e.literal().map(|v| (k.clone(), v))).collect::<Option<tend_provider::Map<_>>>().map(Value::Map),
        }
    }
}

/// A config field: its expression and where it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The value.
    pub expr: Expr,
    /// Span of the key.
    pub key_span: Span,
    /// Span of the value.
    pub span: Span,
}

/// `lifecycle = { ... }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lifecycle {
    /// Build the replacement before deleting the old object.
    pub create_before_destroy: bool,
    /// Refuse any plan that deletes or replaces this resource.
    pub prevent_destroy: bool,
    /// Fields whose differences are ignored.
    pub ignore_changes: Vec<String>,
    /// `timeout = "10m"` (a meta field beside `lifecycle`): how long an apply waits for the
    /// instance to become ready, in seconds; `None`: its kind's default.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// `drift = "..."`: what to do when the target changed outside tend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftPolicy {
    /// Put it back (default).
    #[default]
    Correct,
    /// Show it in plans but leave it.
    Report,
    /// Neither show nor correct it.
    Ignore,
}

/// One configured resource (before expansion into instances).
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// `PROVIDER.KIND.NAME`.
    pub addr: ResourceAddr,
    /// Span of the resource's name key.
    pub span: Span,
    /// Provider fields.
    pub fields: tend_provider::Map<Field>,
    /// `depends_on`, each with its span.
    pub depends_on: Vec<(ResourceAddr, Span)>,
    /// `lifecycle`.
    pub lifecycle: Lifecycle,
    /// `drift`.
    pub drift: DriftPolicy,
    /// `suspend = true`: observed and planned, never changed (held back until set false).
    pub suspend: bool,
}

impl Resource {
    /// Field values as far as they are known without evaluating references (what `expand` and
    /// `validate` see): a field holding a reference is [`Value::Unknown`].
    pub fn literal_fields(&self) -> Attributes {
        self.fields.iter().map(|(k, f)| (k.clone(), f.expr.literal().unwrap_or(Value::Unknown))).collect()
    }

    /// Field expressions by name.
    pub fn exprs(&self) -> tend_provider::Map<Expr> {
        self.fields.iter().map(|(k, f)| (k.clone(), f.expr.clone())).collect()
    }
}

/// `[secret.NAME]`: where a secret's encrypted file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretDecl {
    /// The name used in `${secret.NAME}`.
    pub name: String,
    /// The encrypted file, relative to the config directory.
    pub file: String,
    /// What the decrypted content is: `raw`, `yaml`, `json`, `toml` or `dotenv`; `None`
    /// guesses from the file name (`db.yaml.age` is YAML, `x.age` a single value).
    pub document: Option<String>,
    /// Where it is declared.
    pub span: Span,
}

/// `[project]` settings of tend.toml.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Project {
    /// Project name (default: the config directory's name).
    pub name: String,
    /// State file, resolved against the config directory.
    pub state: Option<PathBuf>,
    /// Default apply parallelism.
    pub parallelism: Option<usize>,
    /// `allow_empty = true` (or `--allow-destroy-all`): a plan may delete every resource in
    /// state. Off by default, as Argo CD's `allowEmpty`: an empty config or a commit that
    /// deletes every file is far more often a mistake than an intent.
    pub allow_empty: bool,
    /// `[agent]` settings (flags and environment win over them).
    pub agent: AgentSettings,
}

/// `[agent]` of tend.toml: how `tend agent` runs this repository.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentSettings {
    /// `interval = "5m"`.
    pub interval: Option<std::time::Duration>,
    /// `drift_interval = "10m"`.
    pub drift_interval: Option<std::time::Duration>,
    /// `mode = "apply"` or `"plan-only"`.
    pub plan_only: Option<bool>,
    /// `jitter = 0.1`.
    pub jitter: Option<f64>,
}

/// A loaded, validated config directory.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config directory (absolute).
    pub root: PathBuf,
    /// Every loaded file.
    pub sources: SourceMap,
    /// `[project]`.
    pub project: Project,
    /// The selected environment, if any.
    pub environment: Option<String>,
    /// Final variable values.
    pub variables: BTreeMap<String, Value>,
    /// `[providers.NAME]` tables.
    pub provider_settings: BTreeMap<String, Attributes>,
    /// Resources by address.
    pub resources: BTreeMap<ResourceAddr, Resource>,
    /// Declared secrets by name.
    pub secrets: BTreeMap<String, SecretDecl>,
    /// Who secrets are encrypted to (`[secrets] recipients` / `recipients_file`).
    pub recipients: Vec<String>,
    /// Identifies the config content: `local@sha256:<hex>` for a plain directory.
    pub revision: String,
}
