//! tend.toml settings and the one place variables are merged: defaults → environment → `--var`.

use std::collections::BTreeMap;
use std::path::Path;

use tend_provider::{Attributes, Value};

use super::diag::Diagnostic;
use super::model::Project;
use super::node::{Key, Node, NodeKind};
use super::node_value;
use super::suggest::nearest;

/// Settings read from tend.toml plus the final variables.
pub struct Settings {
    pub project: Project,
    pub variables: BTreeMap<String, Value>,
    pub providers: BTreeMap<String, Attributes>,
    pub recipients: Vec<String>,
}

impl Settings {
    /// Settings when there is no tend.toml.
    pub fn defaults(root: &Path, opts: &super::LoadOptions, diags: &mut Vec<Diagnostic>) -> Self {
        let project = Project { name: dir_name(root), ..Project::default() };
        let variables = merge(BTreeMap::new(), None, &opts.vars, diags);
        if let Some(env) = &opts.environment {
            diags
                .push(Diagnostic::global(format!("environment `{env}` is not declared")).with_hint("declare it in tend.toml as [environments.NAME.variables]"));
        }
        Self { project, variables, providers: BTreeMap::new(), recipients: Vec::new() }
    }
}

fn dir_name(root: &Path) -> String {
    root.file_name().map_or_else(|| "tend".into(), |n| n.to_string_lossy().into_owned())
}

fn table<'a>(n: &'a Node, what: &str, diags: &mut Vec<Diagnostic>) -> &'a [(Key, Node)] {
    match &n.kind {
        NodeKind::Map(m) => m,
        other => {
            diags.push(Diagnostic::at(n.span, format!("`{what}` must be a table"), format!("this is a {}", other.type_name())));
            &[]
        }
    }
}

/// Check `[providers.NAME]` tables of tend.toml against the providers' declared settings.
pub fn check_provider_settings(doc: &Node, registry: &crate::registry::Registry, diags: &mut Vec<Diagnostic>) {
    let NodeKind::Map(entries) = &doc.kind else { return };
    for (_, v) in entries.iter().filter(|(k, _)| k.name == "providers") {
        for (pk, pv) in table(v, "providers", diags) {
            let Some(fields) = registry.settings(&pk.name) else {
                let names = registry.provider_names();
                diags.push(Diagnostic::at(pk.span, format!("unknown provider `providers.{}`", pk.name), "no such provider").with_hint(
                    nearest(&pk.name, names.iter().copied()).map_or_else(|| format!("providers: {}", names.join(", ")), |s| format!("did you mean `{s}`?")),
                ));
                continue;
            };
            for (sk, _) in table(pv, &format!("providers.{}", pk.name), diags) {
                if !fields.iter().any(|f| f.name == sk.name) {
                    let hint = if fields.is_empty() {
                        format!("provider `{}` takes no settings", pk.name)
                    } else {
                        nearest(&sk.name, fields.iter().map(|f| f.name)).map_or_else(
                            || format!("settings of {}: {}", pk.name, fields.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")),
                            |s| format!("did you mean `{s}`?"),
                        )
                    };
                    diags.push(Diagnostic::at(sk.span, format!("unknown setting `providers.{}.{}`", pk.name, sk.name), "unknown setting").with_hint(hint));
                }
            }
        }
    }
}

/// Read `[project]`, `[variables]`, `[environments]` and `[providers]` from tend.toml.
pub fn settings(doc: &Node, root: &Path, root_str: &str, opts: &super::LoadOptions, diags: &mut Vec<Diagnostic>) -> Settings {
    let mut project = Project { name: dir_name(root), ..Project::default() };
    let mut defaults = BTreeMap::new();
    let mut envs: BTreeMap<String, (Key, BTreeMap<String, Value>)> = BTreeMap::new();
    let mut providers = BTreeMap::new();
    let mut recipients = Vec::new();
    let NodeKind::Map(entries) = &doc.kind else {
        return Settings { project, variables: BTreeMap::new(), providers, recipients };
    };
    let expand_root = |v: Value| match v {
        Value::String(s) => Value::from(s.replace("${path.root}", root_str).as_str()),
        other => other,
    };
    // [variables] first: environments are checked against it.
    for (_, v) in entries.iter().filter(|(k, _)| k.name == "variables") {
        for (vk, vv) in table(v, "variables", diags) {
            defaults.insert(vk.name.clone(), expand_root(node_value(vv)));
        }
    }
    for (k, v) in entries {
        match k.name.as_str() {
            "project" => {
                for (pk, pv) in table(v, "project", diags) {
                    match (pk.name.as_str(), &pv.kind) {
                        ("name", NodeKind::String(s)) => project.name.clone_from(s),
                        ("state", NodeKind::String(s)) => {
                            let s = s.replace("${path.root}", root_str);
                            project.state = Some(root.join(s));
                        }
                        ("parallelism", NodeKind::Int(i)) if *i > 0 => project.parallelism = usize::try_from(*i).ok(),
                        ("allow_empty", NodeKind::Bool(b)) => project.allow_empty = *b,
                        (name @ ("name" | "state" | "parallelism" | "allow_empty"), other) => diags.push(Diagnostic::at(
                            pv.span,
                            format!("wrong type for `project.{name}`: found {}", other.type_name()),
                            match name {
                                "parallelism" => "expected a positive integer",
                                "allow_empty" => "expected true or false",
                                _ => "expected a string",
                            },
                        )),
                        (name, _) => diags.push(
                            Diagnostic::at(pk.span, format!("unknown field `project.{name}`"), "unknown field").with_hint(
                                nearest(name, ["name", "state", "parallelism", "allow_empty"])
                                    .map_or_else(|| "project fields: name, state, parallelism, allow_empty".into(), |s| format!("did you mean `{s}`?")),
                            ),
                        ),
                    }
                }
            }
            "agent" => {
                const FIELDS: [&str; 4] = ["interval", "drift_interval", "mode", "jitter"];
                for (ak, av) in table(v, "agent", diags) {
                    let duration = |diags: &mut Vec<Diagnostic>| match &av.kind {
                        NodeKind::String(s) => match humantime::parse_duration(s) {
                            Ok(d) if !d.is_zero() => Some(d),
                            _ => {
                                diags.push(Diagnostic::at(av.span, format!("`agent.{}` = \"{s}\" is not a duration", ak.name), "e.g. \"30s\", \"5m\", \"1h\""));
                                None
                            }
                        },
                        other => {
                            diags.push(Diagnostic::at(
                                av.span,
                                format!("wrong type for `agent.{}`: found {}", ak.name, other.type_name()),
                                "expected a duration string, e.g. \"5m\"",
                            ));
                            None
                        }
                    };
                    match (ak.name.as_str(), &av.kind) {
                        ("interval", _) => project.agent.interval = duration(diags),
                        ("drift_interval", _) => project.agent.drift_interval = duration(diags),
                        ("mode", NodeKind::String(m)) if m == "apply" || m == "plan-only" => project.agent.plan_only = Some(m == "plan-only"),
                        ("mode", _) => diags.push(Diagnostic::at(av.span, "`agent.mode` must be \"apply\" or \"plan-only\"", "invalid mode")),
                        ("jitter", NodeKind::Float(f)) if (0.0..=1.0).contains(f) => project.agent.jitter = Some(*f),
                        ("jitter", NodeKind::Int(i)) if *i == 0 || *i == 1 => project.agent.jitter = Some(if *i == 0 { 0.0 } else { 1.0 }),
                        ("jitter", _) => diags.push(Diagnostic::at(av.span, "`agent.jitter` must be a fraction between 0 and 1", "e.g. 0.1")),
                        (name, _) => diags.push(Diagnostic::at(ak.span, format!("unknown field `agent.{name}`"), "unknown field").with_hint(
                            nearest(name, FIELDS).map_or_else(|| format!("agent fields: {}", FIELDS.join(", ")), |s| format!("did you mean `{s}`?")),
                        )),
                    }
                }
            }
            "environments" => {
                for (ek, ev) in table(v, "environments", diags) {
                    let mut vars = BTreeMap::new();
                    for (sk, sv) in table(ev, &format!("environments.{}", ek.name), diags) {
                        if sk.name == "variables" {
                            for (vk, vv) in table(sv, &format!("environments.{}.variables", ek.name), diags) {
                                if !defaults.contains_key(&vk.name) {
                                    diags.push(
                                        Diagnostic::at(
                                            vk.span,
                                            format!("environment `{}` sets undeclared variable `{}`", ek.name, vk.name),
                                            "not in [variables]",
                                        )
                                        .with_hint("declare a default for it in tend.toml [variables]"),
                                    );
                                }
                                vars.insert(vk.name.clone(), expand_root(node_value(vv)));
                            }
                        } else {
                            diags.push(
                                Diagnostic::at(sk.span, format!("unknown field `environments.{}.{}`", ek.name, sk.name), "unknown field")
                                    .with_hint("an environment holds a `variables` table"),
                            );
                        }
                    }
                    envs.insert(ek.name.clone(), (ek.clone(), vars));
                }
            }
            "secrets" => {
                for (sk, sv) in table(v, "secrets", diags) {
                    match (sk.name.as_str(), &sv.kind) {
                        ("recipients", NodeKind::List(items)) => {
                            for item in items {
                                match &item.kind {
                                    NodeKind::String(r) => recipients.push(r.clone()),
                                    other => diags.push(Diagnostic::at(item.span, "recipients must be strings", format!("this is a {}", other.type_name()))),
                                }
                            }
                        }
                        ("recipients_file", NodeKind::String(f)) => {
                            match tend_provider::resolve_inside(root, f).map_err(|e| std::io::Error::other(e.to_string())).and_then(fs_err::read_to_string) {
                                Ok(text) => recipients.extend(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string)),
                                Err(e) => diags.push(Diagnostic::at(sv.span, format!("cannot read recipients file: {e}"), "here")),
                            }
                        }
                        (name, _) => diags.push(
                            Diagnostic::at(sk.span, format!("unknown or mistyped field `secrets.{name}`"), "here")
                                .with_hint("secrets fields: recipients (list of age or SSH public keys), recipients_file (one per line)"),
                        ),
                    }
                }
            }
            "providers" => {
                for (pk, pv) in table(v, "providers", diags) {
                    if let Value::Map(m) = node_value(pv) {
                        providers.insert(pk.name.clone(), m);
                    }
                }
            }
            _ => {}
        }
    }
    let env_vars = match &opts.environment {
        None => None,
        Some(name) => {
            if let Some((_, vars)) = envs.get(name) {
                Some(vars.clone())
            } else {
                let names: Vec<&str> = envs.keys().map(String::as_str).collect();
                diags.push(Diagnostic::global(format!("environment `{name}` is not declared in tend.toml")).with_hint(if names.is_empty() {
                    "declare it as [environments.NAME.variables]".to_string()
                } else {
                    format!("declared environments: {}", names.join(", "))
                }));
                None
            }
        }
    };
    let variables = merge(defaults, env_vars, &opts.vars, diags);
    Settings { project, variables, providers, recipients }
}

/// The one merge of variable values: defaults, then the environment, then `--var`.
fn merge(
    defaults: BTreeMap<String, Value>,
    env: Option<BTreeMap<String, Value>>,
    cli: &[(String, String)],
    diags: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Value> {
    let mut vars = defaults;
    vars.extend(env.unwrap_or_default());
    for (name, raw) in cli {
        let Some(current) = vars.get(name) else {
            let known: Vec<&str> = vars.keys().map(String::as_str).collect();
            diags.push(Diagnostic::global(format!("--var {name}: no variable `{name}` is declared")).with_hint(match nearest(name, known.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "declare it in tend.toml [variables]".into(),
            }));
            continue;
        };
        let value = match current {
            Value::Int(_) => raw.parse().map(Value::Int).ok(),
            Value::Bool(_) => raw.parse().map(Value::Bool).ok(),
            Value::Float(_) => raw.parse().map(Value::Float).ok(),
            _ => Some(Value::from(raw.clone())),
        };
        match value {
            Some(v) => {
                vars.insert(name.clone(), v);
            }
            None => diags.push(Diagnostic::global(format!("--var {name}={raw}: expected {}", current.type_name()))),
        }
    }
    vars
}
