//! Loading config: every `*.toml`, `*.yaml`, `*.yml` under the config directory → [`Config`].
//!
//! `raw` parsing keeps spans ([`node`]), [`lower`] validates against provider schemas and
//! collects *all* [`Diagnostic`]s before failing. Files ignored by `.gitignore` or
//! `.tendignore`, hidden files, SOPS-encrypted files and Kubernetes manifests (YAML whose first
//! document has top-level `apiVersion` and `kind`, read by `kube.manifests`) are skipped.

pub mod diag;
pub mod lower;
pub mod model;
pub mod node;
pub mod source;
pub mod suggest;
pub mod template;
mod vars;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use diag::{Diagnostic, Diagnostics};
pub use model::{AgentSettings, Config, DriftPolicy, Expr, Field, Lifecycle, Part, Project, Reference, Resource, SecretDecl, SecretRef};
use node::{Node, NodeKind};
use sha2::{Digest, Sha256};
pub use source::{SourceMap, Span};
use tend_provider::{Attributes, Value};

use crate::registry::Registry;

/// What to load and how.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The config directory.
    pub root: PathBuf,
    /// `--env NAME`.
    pub environment: Option<String>,
    /// `--var NAME=VALUE`, in order.
    pub vars: Vec<(String, String)>,
    /// Where age identities for secrets come from.
    pub identities: crate::secrets::IdentitySources,
    /// `--allow-destroy-all`: a plan may delete every resource in state (as `allow_empty`).
    pub allow_destroy_all: bool,
    /// Where the config comes from when it is not the directory itself: `git:URL#DIR` (URL
    /// without credentials). Recorded in state as part of its owner.
    pub origin: Option<String>,
    /// `--reassign-state`: take over state recorded for another config.
    pub reassign_state: bool,
}

/// Load, parse and validate a config directory.
pub fn load(opts: &LoadOptions, registry: &Registry) -> Result<Config, Diagnostics> {
    let mut sources = SourceMap::default();
    let fail = |sources: SourceMap, items: Vec<Diagnostic>| Err(Diagnostics { items, sources });
    let root = match fs_err::canonicalize(&opts.root) {
        Ok(r) if r.is_dir() => r,
        Ok(r) => return fail(sources, vec![Diagnostic::global(format!("{} is not a directory", r.display()))]),
        Err(_) => {
            return fail(
                sources,
                vec![
                    Diagnostic::global(format!("config directory {} does not exist", opts.root.display()))
                        .with_hint("pass the directory holding tend.toml with --config DIR"),
                ],
            );
        }
    };
    let mut diags = Vec::new();
    let mut digest = Sha256::new();
    let files = config_files(&root);
    let tend_toml_path = root.join("tend.toml");
    // tend.toml first: it defines the variables every other file may use.
    if !files.contains(&tend_toml_path) {
        // Without it this may be any directory (a home directory, a checkout of something
        // else): planning it would propose to destroy everything state holds.
        let why = match fs_err::symlink_metadata(&tend_toml_path) {
            Ok(m) if m.file_type().is_symlink() => {
                format!("{} is a symlink; tend.toml must be a regular file inside the config directory", tend_toml_path.display())
            }
            Ok(_) => format!("{} is ignored (.gitignore or .tendignore) or not a regular file", tend_toml_path.display()),
            Err(_) => format!("{} holds no tend.toml: it is not a tend config directory", root.display()),
        };
        return fail(sources, vec![Diagnostic::global(why).with_hint("pass the directory that holds tend.toml with -C DIR (or TEND_CONFIG=DIR)")]);
    }
    let tend_toml = read_and_parse(&root, &tend_toml_path, &mut sources, &mut digest, &mut diags);
    let root_str = root.to_string_lossy().into_owned();
    let mut settings = match tend_toml.as_ref().and_then(|(_, d)| d.first()) {
        Some(n) => {
            vars::check_provider_settings(n, registry, &mut diags);
            vars::settings(n, &root, &root_str, opts, &mut diags)
        }
        None => vars::Settings::defaults(&root, opts, &mut diags),
    };
    settings.project.allow_empty |= opts.allow_destroy_all;
    let mut lowerer = lower::Lowerer {
        registry,
        scope: template::Scope { variables: &settings.variables, root: &root_str },
        resources: BTreeMap::new(),
        secrets: BTreeMap::new(),
        diags,
        unknown: std::collections::BTreeSet::new(),
    };
    if let Some((_, docs)) = &tend_toml {
        for doc in docs {
            lowerer.document(doc, true);
        }
    }
    drop(tend_toml);
    // Every other file: parse, lower, and drop its tree before reading the next.
    for path in files.iter().filter(|p| **p != tend_toml_path) {
        if let Some((_, docs)) = read_and_parse(&root, path, &mut sources, &mut digest, &mut lowerer.diags) {
            for doc in &docs {
                lowerer.document(doc, false);
            }
        }
    }
    let mut diags = lowerer.diags;
    // Rebuilt at once from sorted entries: full nodes, where inserting one by one leaves them
    // half empty (a tenth of a no-op plan's memory at 10,000 resources).
    let resources: BTreeMap<_, _> = lowerer.resources.into_iter().collect();
    let secrets = lowerer.secrets;
    // Checked whatever else is wrong, so that one run lists every problem.
    diags.extend(lower::check_references(&resources, &secrets, registry, &lowerer.unknown));
    if !diags.is_empty() {
        return fail(sources, diags);
    }
    let revision = format!("local@sha256:{}", &hex::encode(digest.finalize())[..12]);
    Ok(Config {
        root,
        sources,
        project: settings.project,
        environment: opts.environment.clone(),
        variables: settings.variables,
        provider_settings: settings.providers,
        resources,
        secrets,
        recipients: settings.recipients,
        revision,
    })
}

/// The recipients declared in `tend.toml` (`[secrets] recipients` / `recipients_file`), reading
/// nothing else of the config.
pub fn load_recipients(opts: &LoadOptions) -> Result<Vec<String>, Diagnostics> {
    let mut sources = SourceMap::default();
    let mut diags = Vec::new();
    let root = fs_err::canonicalize(&opts.root).unwrap_or_else(|_| opts.root.clone());
    let path = root.join("tend.toml");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut digest = Sha256::new();
    let docs = read_and_parse(&root, &path, &mut sources, &mut digest, &mut diags);
    let root_str = root.to_string_lossy().into_owned();
    let settings = docs.as_ref().and_then(|(_, d)| d.first()).map(|n| vars::settings(n, &root, &root_str, opts, &mut diags));
    if diags.is_empty() { Ok(settings.map(|s| s.recipients).unwrap_or_default()) } else { Err(Diagnostics { items: diags, sources }) }
}

/// The largest config file read.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// Read one file into the source map and parse it into document trees.
fn read_and_parse(root: &Path, path: &Path, sources: &mut SourceMap, digest: &mut Sha256, diags: &mut Vec<Diagnostic>) -> Option<(u32, Vec<Node>)> {
    if let Ok(m) = fs_err::metadata(path)
        && m.len() > MAX_FILE_BYTES
    {
        diags.push(
            Diagnostic::global(format!("{} is {} MiB: config files may be at most {} MiB", path.display(), m.len() >> 20, MAX_FILE_BYTES >> 20))
                .with_hint("list data files that are not config in .tendignore"),
        );
        return None;
    }
    let text = match fs_err::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            diags.push(Diagnostic::global(format!("cannot read {}: {e}", path.display())));
            return None;
        }
    };
    let is_toml = path.extension().and_then(|e| e.to_str()) == Some("toml");
    let id = sources.add(root, path.to_path_buf(), text);
    let file = sources.file(id);
    digest.update(file.name.as_bytes());
    digest.update([0]);
    digest.update(file.text.as_bytes());
    digest.update([0]);
    let parsed = if is_toml { node::parse_toml(id, &file.text).map(|n| vec![n]) } else { node::parse_yaml(id, &file.text) };
    match parsed {
        // An encrypted SOPS file lives beside the config; it is read as a secret, not as config.
        Ok(docs) if docs.first().is_some_and(crate::secrets::sops::is_sops_document) => None,
        // Kubernetes manifests (and kustomizations) live in the same repository; a set of them
        // (`kube.manifests`) reads them as objects, never as config.
        Ok(docs) if docs.first().is_some_and(is_kube_object) => None,
        Ok(docs) => Some((id, docs)),
        Err(d) => {
            diags.push(d);
            None
        }
    }
}

/// Whether a YAML document is a Kubernetes object (top-level `apiVersion` and `kind`), not config.
fn is_kube_object(doc: &Node) -> bool {
    matches!(&doc.kind, node::NodeKind::Map(entries) if ["apiVersion", "kind"].iter().all(|k| entries.iter().any(|(key, _)| key.name == *k)))
}

/// Config files under `root`, sorted, honouring `.gitignore` and `.tendignore`.
fn config_files(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ignore::WalkBuilder::new(root)
        .hidden(true)
        .git_ignore(true)
        .git_global(false)
        .git_exclude(false)
        .require_git(false)
        .add_custom_ignore_filename(".tendignore")
        .build()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_some_and(|t| t.is_file()))
        .map(ignore::DirEntry::into_path)
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("toml" | "yaml" | "yml")))
        .collect();
    files.sort();
    files
}

/// Convert a literal node (no templates) to a value.
pub fn node_value(n: &Node) -> Value {
    match &n.kind {
        NodeKind::Null => Value::Null,
        NodeKind::Bool(b) => Value::Bool(*b),
        NodeKind::Int(i) => Value::Int(*i),
        NodeKind::Float(f) => Value::Float(*f),
        NodeKind::String(s) => Value::from(s.as_str()),
        NodeKind::List(l) => Value::List(l.iter().map(node_value).collect()),
        NodeKind::Map(m) => Value::Map(m.iter().map(|(k, v)| (k.name.clone(), node_value(v))).collect::<Attributes>()),
    }
}
