//! Loading config: every `*.toml`, `*.yaml`, `*.yml` under the config directory → [`Config`].
//!
//! `raw` parsing keeps spans ([`node`]), [`lower`] validates against provider schemas and
//! collects *all* [`Diagnostic`]s before failing. Files ignored by `.gitignore` or
//! `.tendignore`, and hidden files, are skipped.

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
pub use model::{Config, DriftPolicy, Expr, Field, Lifecycle, Part, Project, Reference, Resource};
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
                vec![Diagnostic::global(format!("config directory {} does not exist", opts.root.display()))
                    .with_hint("pass the directory holding tend.toml with --config DIR")],
            );
        }
    };
    let mut diags = Vec::new();
    let mut docs: Vec<(Node, bool)> = Vec::new();
    let mut digest = Sha256::new();
    for path in config_files(&root) {
        let text = match fs_err::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                diags.push(Diagnostic::global(format!("cannot read {}: {e}", path.display())));
                continue;
            }
        };
        let is_tend_toml = path == root.join("tend.toml");
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_string();
        let id = sources.add(&root, path, text);
        let text = &sources.file(id).text;
        digest.update(sources.file(id).name.as_bytes());
        digest.update([0]);
        digest.update(text.as_bytes());
        digest.update([0]);
        if ext == "toml" {
            match node::parse_toml(id, text) {
                Ok(n) => docs.push((n, is_tend_toml)),
                Err(d) => diags.push(d),
            }
        } else {
            match node::parse_yaml(id, text) {
                Ok(ns) => docs.extend(ns.into_iter().map(|n| (n, false))),
                Err(d) => diags.push(d),
            }
        }
    }
    let root_str = root.to_string_lossy().into_owned();
    let tend_toml = docs.iter().find(|(_, t)| *t).map(|(n, _)| n.clone());
    let settings = match &tend_toml {
        Some(n) => vars::settings(n, &root, &root_str, opts, &mut diags),
        None => vars::Settings::defaults(&root, opts, &mut diags),
    };
    let mut lowerer = lower::Lowerer {
        registry,
        scope: template::Scope { variables: &settings.variables, root: &root_str },
        resources: BTreeMap::new(),
        diags,
    };
    for (doc, is_tend_toml) in &docs {
        lowerer.document(doc, *is_tend_toml);
    }
    let mut diags = lowerer.diags;
    let resources = lowerer.resources;
    if diags.is_empty() {
        diags.extend(lower::check_references(&resources, registry));
    }
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
        revision,
    })
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
pub(crate) fn node_value(n: &Node) -> Value {
    match &n.kind {
        NodeKind::Null => Value::Null,
        NodeKind::Bool(b) => Value::Bool(*b),
        NodeKind::Int(i) => Value::Int(*i),
        NodeKind::Float(f) => Value::Float(*f),
        NodeKind::String(s) => Value::String(s.clone()),
        NodeKind::List(l) => Value::List(l.iter().map(node_value).collect()),
        NodeKind::Map(m) => Value::Map(m.iter().map(|(k, v)| (k.name.clone(), node_value(v))).collect::<Attributes>()),
    }
}
