//! Lowering: spanned nodes → the validated [`Config`] model, collecting every diagnostic.

use std::collections::BTreeMap;

use tend_provider::{FieldType, KindSchema, ResourceAddr, Role, Value};

use super::diag::Diagnostic;
use super::model::{DriftPolicy, Expr, Field, Lifecycle, Resource, SecretDecl, SecretRef};
use super::node::{Key, Node, NodeKind};
use super::source::Span;
use super::suggest::{nearest, nearest_addr};
use super::template::{self, Scope};
use crate::registry::Registry;

/// Top-level keys that only tend.toml may hold.
pub const RESERVED: &[&str] = &["project", "variables", "environments", "providers", "secrets", "agent"];
/// Meta fields every resource accepts.
pub const META: &[&str] = &["depends_on", "lifecycle", "drift", "suspend", "timeout"];

/// Lowers resource tables of one or more files.
pub struct Lowerer<'a> {
    /// Provider schemas.
    pub registry: &'a Registry,
    /// Variables and paths.
    pub scope: Scope<'a>,
    /// Resources found so far.
    pub resources: BTreeMap<ResourceAddr, Resource>,
    /// Secrets declared so far.
    pub secrets: BTreeMap<String, SecretDecl>,
    /// Problems found so far.
    pub diags: Vec<Diagnostic>,
    /// Providers and `provider.kind`s declared but unknown (already reported): references to
    /// their resources are not reported again as undeclared.
    pub unknown: std::collections::BTreeSet<String>,
}

impl Lowerer<'_> {
    /// Lower every `[PROVIDER.KIND.NAME]` table under a document root.
    pub fn document(&mut self, root: &Node, is_tend_toml: bool) {
        let NodeKind::Map(entries) = &root.kind else { return };
        for (pkey, pnode) in entries {
            if pkey.name == "secret" {
                self.secrets_table(pnode);
                continue;
            }
            if RESERVED.contains(&pkey.name.as_str()) {
                if !is_tend_toml {
                    self.diags.push(
                        Diagnostic::at(pkey.span, format!("`{}` belongs in tend.toml", pkey.name), "not a provider")
                            .with_hint("project settings, variables, environments and providers are read from tend.toml at the config root"),
                    );
                }
                continue;
            }
            if !self.registry.has_provider(&pkey.name) {
                let names = self.registry.provider_names();
                let hint = match nearest(&pkey.name, names.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("known providers: {}", names.join(", ")),
                };
                self.diags.push(Diagnostic::at(pkey.span, format!("unknown provider `{}`", pkey.name), "not a provider").with_hint(hint));
                self.unknown.insert(pkey.name.clone());
                continue;
            }
            let Some(kinds) = self.expect_map(pnode, &format!("`{}` must be a table of resource kinds", pkey.name)) else { continue };
            for (kkey, knode) in kinds {
                let Some(schema) = self.registry.kind(&pkey.name, &kkey.name) else {
                    let names = self.registry.kind_names(&pkey.name);
                    let hint = match nearest(&kkey.name, names.iter().copied()) {
                        Some(s) => format!("did you mean `{}.{s}`?", pkey.name),
                        None => format!("kinds of `{}`: {}", pkey.name, names.join(", ")),
                    };
                    self.diags.push(Diagnostic::at(kkey.span, format!("unknown resource kind `{}.{}`", pkey.name, kkey.name), "unknown kind").with_hint(hint));
                    self.unknown.insert(format!("{}.{}", pkey.name, kkey.name));
                    continue;
                };
                let Some(named) = self.expect_map(knode, &format!("`{}.{}` must be a table of named resources", pkey.name, kkey.name)) else { continue };
                for (nkey, body) in named {
                    self.resource(&pkey.name, schema, nkey, body);
                }
            }
        }
    }

    fn secrets_table(&mut self, node: &Node) {
        let Some(named) = self.expect_map(node, "`secret` must be a table of named secrets") else { return };
        for (key, body) in named {
            if !ResourceAddr::is_valid_part(&key.name) {
                self.diags.push(
                    Diagnostic::at(key.span, format!("`{}` is not a valid secret name", key.name), "invalid name")
                        .with_hint("names may contain letters, digits, `_` and `-`"),
                );
                continue;
            }
            if let Some(first) = self.secrets.get(&key.name) {
                self.diags.push(
                    Diagnostic::at(key.span, format!("duplicate secret `{}`", key.name), "declared again here").with_label(first.span, "first declared here"),
                );
                continue;
            }
            let Some(fields) = self.expect_map(body, &format!("secret `{}` must be a table", key.name)) else { continue };
            let mut decl = SecretDecl { name: key.name.clone(), file: String::new(), document: None, span: key.span };
            for (fk, fv) in fields {
                match (fk.name.as_str(), &fv.kind) {
                    ("file", NodeKind::String(s)) => decl.file.clone_from(s),
                    ("document", NodeKind::String(s)) if ["raw", "yaml", "json", "toml", "dotenv"].contains(&s.as_str()) => {
                        decl.document = Some(s.clone());
                    }
                    ("document", _) => self.diags.push(
                        Diagnostic::at(fv.span, "`document` must be one of raw, yaml, json, toml, dotenv", "unknown document type")
                            .with_hint("leave it out to guess from the file name (db.yaml.age is YAML)"),
                    ),
                    ("file", other) => self.diags.push(Diagnostic::at(
                        fv.span,
                        format!("wrong type for `file`: expected string, found {}", other.type_name()),
                        "expected a path",
                    )),
                    (name, _) => {
                        self.diags.push(Diagnostic::at(fk.span, format!("unknown field `{name}` in secret `{}`", key.name), "unknown field").with_hint(
                            nearest(name, ["file", "document"]).map_or_else(|| "secret fields: file, document".into(), |s| format!("did you mean `{s}`?")),
                        ));
                    }
                }
            }
            if decl.file.is_empty() {
                self.diags.push(
                    Diagnostic::at(key.span, format!("secret `{}` is missing required field `file`", key.name), "declared here")
                        .with_hint("file: the encrypted file, relative to the config directory, e.g. file = \"secrets/db.yaml.age\""),
                );
                continue;
            }
            self.secrets.insert(key.name.clone(), decl);
        }
    }

    fn expect_map<'n>(&mut self, node: &'n Node, summary: &str) -> Option<&'n Vec<(Key, Node)>> {
        if let NodeKind::Map(m) = &node.kind {
            Some(m)
        } else {
            self.diags.push(Diagnostic::at(node.span, summary.to_string(), format!("this is a {}", node.kind.type_name())));
            None
        }
    }

    fn resource(&mut self, provider: &str, schema: &KindSchema, key: &Key, body: &Node) {
        if !ResourceAddr::is_valid_part(&key.name) {
            self.diags.push(
                Diagnostic::at(key.span, format!("`{}` is not a valid resource name", key.name), "invalid name")
                    .with_hint("names may contain letters, digits, `_` and `-`"),
            );
            return;
        }
        let addr = ResourceAddr::new(provider, schema.kind, key.name.clone());
        if let Some(first) = self.resources.get(&addr) {
            self.diags.push(
                Diagnostic::at(key.span, format!("duplicate resource `{addr}`"), "declared again here")
                    .with_label(first.span, "first declared here")
                    .with_hint("each address may be declared once across all config files; rename one of them"),
            );
            return;
        }
        let Some(entries) = self.expect_map(body, &format!("resource `{addr}` must be a table")) else { return };
        let mut res = Resource {
            addr: addr.clone(),
            span: key.span,
            fields: tend_provider::Map::new(),
            depends_on: Vec::new(),
            lifecycle: Lifecycle::default(),
            drift: DriftPolicy::default(),
            suspend: false,
        };
        for (fkey, fnode) in entries {
            match fkey.name.as_str() {
                "depends_on" => res.depends_on = self.depends_on(fnode),
                "lifecycle" => res.lifecycle = Lifecycle { timeout_secs: res.lifecycle.timeout_secs, ..self.lifecycle(fnode, schema) },
                "drift" => res.drift = self.drift(fnode),
                "timeout" => res.lifecycle.timeout_secs = self.timeout(fnode, &addr),
                "suspend" => match &fnode.kind {
                    NodeKind::Bool(b) => res.suspend = *b,
                    _ => self.diags.push(Diagnostic::at(fnode.span, format!("`suspend` of `{addr}` must be true or false"), "not a boolean")),
                },
                name => match schema.field(name) {
                    None => {
                        let candidates = schema.input_names().chain(META.iter().copied());
                        let hint = match nearest(name, candidates) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!("fields of {}: {}", addr.type_name(), schema.input_names().collect::<Vec<_>>().join(", ")),
                        };
                        self.diags.push(Diagnostic::at(fkey.span, format!("unknown field `{name}` in `{addr}`"), "unknown field").with_hint(hint));
                    }
                    Some(f) if f.role == Role::Output => {
                        self.diags.push(
                            Diagnostic::at(fkey.span, format!("`{name}` is an output of {} and cannot be set", addr.type_name()), "output field")
                                .with_hint(format!("read it elsewhere as ${{{addr}.{name}}}")),
                        );
                    }
                    Some(f) => {
                        if let Some(expr) = self.expr(fnode) {
                            if let Err(d) = check_type(&expr, &f.ty, fnode.span, name) {
                                self.diags.push(d);
                            } else {
                                res.fields.insert(name.into(), Field { expr, key_span: fkey.span, span: fnode.span });
                            }
                        }
                    }
                },
            }
        }
        for f in schema.fields.iter().filter(|f| f.required && f.role == Role::Input) {
            if !res.fields.contains_key(f.name) && !entries.iter().any(|(k, _)| k.name == f.name) {
                self.diags.push(
                    Diagnostic::at(key.span, format!("`{addr}` is missing required field `{}`", f.name), "declared here")
                        .with_hint(format!("{}: {}", f.name, f.doc)),
                );
            }
        }
        self.resources.insert(addr, res);
    }

    /// Convert a node into an expression, parsing templates in strings.
    pub fn expr(&mut self, node: &Node) -> Option<Expr> {
        Some(match &node.kind {
            NodeKind::Null => Expr::Literal(Value::Null),
            NodeKind::Bool(b) => Expr::Literal(Value::Bool(*b)),
            NodeKind::Int(i) => Expr::Literal(Value::Int(*i)),
            NodeKind::Float(f) => Expr::Literal(Value::Float(*f)),
            NodeKind::String(s) => match template::parse(s, node.span, &self.scope) {
                Ok(e) => e,
                Err(d) => {
                    self.diags.push(d);
                    return None;
                }
            },
            NodeKind::List(items) => Expr::List(items.iter().map(|n| self.expr(n)).collect::<Option<Vec<_>>>()?),
            NodeKind::Map(entries) => {
                Expr::Map(entries.iter().map(|(k, n)| self.expr(n).map(|e| (k.name.clone(), e))).collect::<Option<tend_provider::Map<_>>>()?)
            }
        })
    }

    fn depends_on(&mut self, node: &Node) -> Vec<(ResourceAddr, Span)> {
        let NodeKind::List(items) = &node.kind else {
            self.diags.push(
                Diagnostic::at(node.span, "`depends_on` must be a list of resource addresses", format!("this is a {}", node.kind.type_name()))
                    .with_hint("e.g. depends_on = [\"host.directory.site\"]"),
            );
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|n| match &n.kind {
                NodeKind::String(s) => match s.parse::<ResourceAddr>() {
                    Ok(a) => Some((a, n.span)),
                    Err(e) => {
                        self.diags.push(Diagnostic::at(n.span, e.to_string(), "not an address"));
                        None
                    }
                },
                other => {
                    self.diags.push(Diagnostic::at(n.span, "`depends_on` entries must be strings", format!("this is a {}", other.type_name())));
                    None
                }
            })
            .collect()
    }

    fn lifecycle(&mut self, node: &Node, schema: &KindSchema) -> Lifecycle {
        let mut lc = Lifecycle::default();
        let Some(entries) = self.expect_map(node, "`lifecycle` must be a table") else { return lc };
        for (k, v) in entries {
            match (k.name.as_str(), &v.kind) {
                ("create_before_destroy", NodeKind::Bool(b)) => lc.create_before_destroy = *b,
                ("prevent_destroy", NodeKind::Bool(b)) => lc.prevent_destroy = *b,
                ("ignore_changes", NodeKind::List(items)) => {
                    for item in items {
                        match &item.kind {
                            NodeKind::String(f) if schema.field(f).is_some() => lc.ignore_changes.push(f.clone()),
                            NodeKind::String(f) => self.diags.push(
                                Diagnostic::at(item.span, format!("`ignore_changes` names unknown field `{f}`"), "unknown field")
                                    .with_hint(nearest(f, schema.fields.iter().map(|x| x.name)).map_or_else(String::new, |s| format!("did you mean `{s}`?"))),
                            ),
                            other => self.diags.push(Diagnostic::at(
                                item.span,
                                "`ignore_changes` entries must be field names",
                                format!("this is a {}", other.type_name()),
                            )),
                        }
                    }
                }
                (name @ ("create_before_destroy" | "prevent_destroy"), other) => self.diags.push(Diagnostic::at(
                    v.span,
                    format!("wrong type for `lifecycle.{name}`: expected boolean, found {}", other.type_name()),
                    "expected true or false",
                )),
                ("ignore_changes", other) => self.diags.push(Diagnostic::at(
                    v.span,
                    format!("wrong type for `lifecycle.ignore_changes`: expected list of field names, found {}", other.type_name()),
                    "expected a list",
                )),
                (name, _) => {
                    let hint = nearest(name, ["create_before_destroy", "prevent_destroy", "ignore_changes"]).map_or_else(
                        || "lifecycle fields: create_before_destroy, prevent_destroy, ignore_changes".to_string(),
                        |s| format!("did you mean `{s}`?"),
                    );
                    self.diags.push(Diagnostic::at(k.span, format!("unknown field `lifecycle.{name}`"), "unknown field").with_hint(hint));
                }
            }
        }
        lc
    }

    /// `timeout = "90s"` / `"10m"` / `"1h"`, or whole seconds.
    fn timeout(&mut self, node: &Node, addr: &ResourceAddr) -> Option<u64> {
        let secs = match &node.kind {
            NodeKind::Int(i) => u64::try_from(*i).ok().filter(|s| *s > 0),
            NodeKind::String(s) => parse_duration_secs(s),
            _ => None,
        };
        if secs.is_none() {
            self.diags.push(
                Diagnostic::at(node.span, format!("`timeout` of `{addr}` is not a duration"), "not a duration")
                    .with_hint("write a positive number of seconds or minutes/hours: timeout = \"90s\", \"10m\", \"1h\""),
            );
        }
        secs
    }

    fn drift(&mut self, node: &Node) -> DriftPolicy {
        match &node.kind {
            NodeKind::String(s) if s == "correct" => DriftPolicy::Correct,
            NodeKind::String(s) if s == "report" => DriftPolicy::Report,
            NodeKind::String(s) if s == "ignore" => DriftPolicy::Ignore,
            _ => {
                self.diags.push(Diagnostic::at(node.span, "`drift` must be \"correct\", \"report\" or \"ignore\"", "invalid drift policy"));
                DriftPolicy::default()
            }
        }
    }
}

/// `90s`, `10m`, `1h`, `30` (seconds) as whole seconds; `None` for anything else or zero.
pub fn parse_duration_secs(t: &str) -> Option<u64> {
    let t = t.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    (secs > 0).then_some(secs)
}

/// Check an expression against a field type (references are checked when evaluated).
fn check_type(expr: &Expr, ty: &FieldType, span: Span, name: &str) -> Result<(), Diagnostic> {
    let mismatch = |found: &str| {
        Diagnostic::at(span, format!("wrong type for `{name}`: expected {}, found {found}", ty.describe()), format!("expected {}", ty.describe()))
    };
    match (ty, expr) {
        (_, Expr::Template(parts)) if !matches!(ty, FieldType::String | FieldType::Any) && parts.len() > 1 => Err(mismatch("string")),
        (FieldType::Any, _)
        | (_, Expr::Template(_))
        | (FieldType::String, Expr::Literal(Value::String(_)))
        | (FieldType::Int, Expr::Literal(Value::Int(_)))
        | (FieldType::Bool, Expr::Literal(Value::Bool(_))) => Ok(()),
        (FieldType::List(inner), Expr::List(items)) => items.iter().try_for_each(|e| check_type(e, inner, span, name)),
        (FieldType::Map(inner), Expr::Map(items)) => items.values().try_for_each(|e| check_type(e, inner, span, name)),
        (FieldType::AddressList, Expr::List(items)) => items.iter().try_for_each(|e| match e {
            Expr::Literal(Value::String(s)) => s.parse::<ResourceAddr>().map(|_| ()).map_err(|e| Diagnostic::at(span, e.to_string(), "not an address")),
            _ => Err(mismatch("a list holding something other than address strings")),
        }),
        // A file mode written as a number (TOML reads `0o644` as 420, and `644` as decimal).
        (FieldType::String, Expr::Literal(Value::Int(_))) if name == "mode" => {
            Err(mismatch("integer").with_hint("modes are strings, written in octal: mode = \"0644\""))
        }
        (FieldType::String, Expr::Literal(v @ (Value::Int(_) | Value::Bool(_) | Value::Float(_)))) => {
            Err(mismatch(v.type_name()).with_hint(format!("quote it: {name} = \"{v}\"")))
        }
        (_, Expr::Literal(v)) => Err(mismatch(v.type_name())),
        (_, Expr::List(_)) => Err(mismatch("list")),
        (_, Expr::Map(_)) => Err(mismatch("table")),
    }
}

/// `WHO uses secret NAME, which is not declared` (with the nearest declared name), or `None`
/// when it is declared.
pub fn undeclared_secret(secrets: &BTreeMap<String, SecretDecl>, s: &SecretRef, who: &str, span: Span) -> Option<Diagnostic> {
    if secrets.contains_key(&s.name) {
        return None;
    }
    let hint = match nearest(&s.name, secrets.keys().map(String::as_str)) {
        Some(n) => format!("did you mean `secret.{n}`?"),
        None => format!("declare it: [secret.{}] file = \"secrets/{}.age\"", s.name, s.name),
    };
    Some(Diagnostic::at(span, format!("{who} uses secret `{}`, which is not declared", s.name), "no such secret").with_hint(hint))
}

/// `WHAT ADDRESS, which is not declared`, with the nearest declared address.
pub fn undeclared(resources: &BTreeMap<ResourceAddr, Resource>, addr: &ResourceAddr, span: Span, what: &str) -> Diagnostic {
    let addrs: Vec<String> = resources.keys().map(ToString::to_string).collect();
    let hint = match nearest_addr(&addr.base().to_string(), addrs.iter().map(String::as_str)) {
        Some(s) => format!("did you mean `{s}`?"),
        None => "declare it, or fix the address".to_string(),
    };
    Diagnostic::at(span, format!("{what} `{}`, which is not declared", addr.base()), "no such resource").with_hint(hint)
}

/// Check every reference, `depends_on` and address-list target exists, that referenced
/// fields exist in the target's schema, and that referenced secrets are declared.
pub fn check_references(
    resources: &BTreeMap<ResourceAddr, Resource>,
    secrets: &BTreeMap<String, SecretDecl>,
    registry: &Registry,
    unknown: &std::collections::BTreeSet<String>,
) -> Vec<Diagnostic> {
    let reported = |a: &ResourceAddr| unknown.contains(&*a.provider) || unknown.contains(&format!("{}.{}", a.provider, a.kind));
    let mut diags = Vec::new();
    for res in resources.values() {
        for field in res.fields.values() {
            diags.extend(field.expr.secret_refs().into_iter().filter_map(|s| undeclared_secret(secrets, s, &format!("`{}`", res.addr), s.span)));
        }
    }
    let missing = |addr: &ResourceAddr, span: Span, what: &str| undeclared(resources, addr, span, what);
    for res in resources.values() {
        for (dep, span) in &res.depends_on {
            if !resources.contains_key(&dep.base()) && !reported(dep) {
                diags.push(missing(dep, *span, &format!("`{}` depends on", res.addr)));
            }
        }
        let schema = registry.kind(&res.addr.provider, &res.addr.kind).expect("lowered resources have a schema");
        for (name, field) in &res.fields {
            if schema.field(name).is_some_and(|f| f.ty == FieldType::AddressList)
                && let Some(Value::List(items)) = field.expr.literal()
            {
                for a in items.iter().filter_map(Value::as_str).filter_map(|s| s.parse::<ResourceAddr>().ok()) {
                    if !resources.contains_key(&a.base()) && !reported(&a) {
                        diags.push(missing(&a, field.span, &format!("`{}.{name}` names", res.addr)));
                    }
                }
            }
            for r in field.expr.references() {
                let Some(target) = resources.get(&r.addr.base()) else {
                    if !reported(&r.addr) {
                        diags.push(missing(&r.addr, r.span, &format!("`{}` refers to", res.addr)));
                    }
                    continue;
                };
                let tschema = registry.kind(&target.addr.provider, &target.addr.kind).expect("lowered resources have a schema");
                if tschema.field(&r.field).is_none() {
                    let hint = nearest(&r.field, tschema.fields.iter().map(|f| f.name)).map_or_else(
                        || format!("fields of {}: {}", target.addr.type_name(), tschema.fields.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")),
                        |s| format!("did you mean `{s}`?"),
                    );
                    diags.push(
                        Diagnostic::at(
                            r.span,
                            format!("`{}` refers to `{r}`, but {} has no field `{}`", res.addr, target.addr.type_name(), r.field),
                            "no such field",
                        )
                        .with_hint(hint),
                    );
                } else if !r.path.is_empty()
                    && let Some(value) = target.fields.get(&r.field).and_then(|f| f.expr.literal())
                    && let Some(d) = missing_path(&value, r, &res.addr)
                {
                    diags.push(d);
                }
            }
        }
    }
    diags
}

/// A reference past what a literal value holds (`${host.local.this.labels.missing}`): an error
/// now, rather than an empty string at apply.
fn missing_path(value: &Value, r: &super::Reference, referrer: &ResourceAddr) -> Option<Diagnostic> {
    let mut cur = value.clone();
    for (i, seg) in r.path.iter().enumerate() {
        let next = match &cur {
            Value::Map(m) => m.get(seg).cloned(),
            Value::List(l) => seg.parse::<usize>().ok().and_then(|n| l.get(n).cloned()),
            Value::Unknown | Value::Redacted => return None,
            _ => None,
        };
        let Some(next) = next else {
            let so_far = std::iter::once(r.field.as_str()).chain(r.path[..i].iter().map(String::as_str)).collect::<Vec<_>>().join(".");
            let hint = match &cur {
                Value::Map(m) => match nearest(seg, m.keys().map(tend_provider::Key::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("`{so_far}` has keys: {}", m.keys().map(tend_provider::Key::as_str).collect::<Vec<_>>().join(", ")),
                },
                Value::List(l) => format!("`{so_far}` is a list of {} items", l.len()),
                other => format!("`{so_far}` is a {}, not a table", other.type_name()),
            };
            return Some(Diagnostic::at(r.span, format!("`{referrer}` refers to `{r}`, but `{so_far}` has no `{seg}`"), "no such key").with_hint(hint));
        };
        cur = next;
    }
    None
}
