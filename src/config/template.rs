//! `${...}` string templates: references, `${var.NAME}` and `${path.root}`.

use std::collections::BTreeMap;

use tend_provider::{ResourceAddr, Value};

use super::diag::Diagnostic;
use super::model::{Expr, Part, Reference, SecretRef};
use super::source::Span;

/// What `var.*` and `path.*` resolve to while lowering.
pub struct Scope<'a> {
    /// Variable values.
    pub variables: &'a BTreeMap<String, Value>,
    /// Absolute config root, for `${path.root}`.
    pub root: &'a str,
}

/// Parse one string into an expression. `$${` writes a literal `${`.
pub fn parse(text: &str, span: Span, scope: &Scope<'_>) -> Result<Expr, Diagnostic> {
    if !text.contains("${") {
        return Ok(Expr::Literal(Value::from(text)));
    }
    let mut parts: Vec<Part> = Vec::new();
    let mut lit = String::new();
    let mut rest = text;
    while let Some(pos) = rest.find("${") {
        if pos > 0 && rest[..pos].ends_with('$') {
            lit.push_str(&rest[..pos - 1]);
            lit.push_str("${");
            rest = &rest[pos + 2..];
            continue;
        }
        lit.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let Some(close) = after.find('}') else {
            return Err(Diagnostic::at(span, "unterminated `${` in string", "no closing `}`").with_hint("write `$${` for a literal `${`"));
        };
        let inner = after[..close].trim();
        match resolve(inner, span, scope)? {
            Resolved::Value(v) => lit.push_str(&v.to_template_string()),
            Resolved::Ref(r) => {
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                parts.push(Part::Ref(r));
            }
            Resolved::Secret(r) => {
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                parts.push(Part::Secret(r));
            }
            Resolved::EachKey => {
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                parts.push(Part::EachKey);
            }
        }
        rest = &after[close + 1..];
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    // A string that is exactly `${var.x}` keeps the variable's type.
    if let Some(inner) = text.strip_prefix("${").and_then(|t| t.strip_suffix('}'))
        && !inner.contains("${")
        && let Resolved::Value(v) = resolve(inner.trim(), span, scope)?
    {
        return Ok(Expr::Literal(v));
    }
    Ok(match parts.as_slice() {
        [] => Expr::Literal(Value::from("")),
        [Part::Lit(s)] => Expr::Literal(Value::from(s.as_str())),
        _ => Expr::Template(parts),
    })
}

enum Resolved {
    Value(Value),
    Ref(Reference),
    Secret(SecretRef),
    EachKey,
}

fn resolve(inner: &str, span: Span, scope: &Scope<'_>) -> Result<Resolved, Diagnostic> {
    if let Some(name) = inner.strip_prefix("var.") {
        return scope.variables.get(name).cloned().map(Resolved::Value).ok_or_else(|| {
            let known: Vec<&str> = scope.variables.keys().map(String::as_str).collect();
            Diagnostic::at(span, format!("undefined variable `{name}`"), "used here").with_hint(match super::suggest::nearest(name, known.iter().copied()) {
                Some(s) => format!("did you mean `var.{s}`? variables are declared in tend.toml [variables]"),
                None => "declare it in tend.toml [variables] or pass --var NAME=VALUE".into(),
            })
        });
    }
    if let Some(rest) = inner.strip_prefix("secret.") {
        let mut segs = rest.split('.').map(str::trim).map(str::to_string);
        let name = segs.next().filter(|n| ResourceAddr::is_valid_part(n)).ok_or_else(|| {
            Diagnostic::at(span, format!("`${{{inner}}}` is not a valid secret reference"), "in this value")
                .with_hint("secret references look like ${secret.NAME} or ${secret.NAME.key.subkey}")
        })?;
        let path: Vec<String> = segs.collect();
        if path.iter().any(String::is_empty) {
            return Err(Diagnostic::at(span, format!("`${{{inner}}}` has an empty key"), "in this value"));
        }
        return Ok(Resolved::Secret(SecretRef { name, path, span }));
    }
    if inner == "each.key" {
        return Ok(Resolved::EachKey);
    }
    if inner == "path.root" {
        return Ok(Resolved::Value(Value::from(scope.root.to_string())));
    }
    parse_reference(inner, span).map(Resolved::Ref)
}

/// Parse `PROVIDER.KIND.NAME[KEY].FIELD.path...`.
pub fn parse_reference(inner: &str, span: Span) -> Result<Reference, Diagnostic> {
    let bad = || {
        Diagnostic::at(span, format!("`${{{inner}}}` is not a valid reference"), "in this value")
            .with_hint("references look like ${PROVIDER.KIND.NAME.FIELD}, ${var.NAME} or ${path.root}")
    };
    let (head, key, tail) = if let Some(open) = inner.find('[') {
        let close = inner[open..].find(']').map(|c| open + c).ok_or_else(bad)?;
        (&inner[..open], Some(inner[open + 1..close].to_string()), inner[close + 1..].strip_prefix('.').ok_or_else(bad)?)
    } else {
        let mut it = inner.splitn(4, '.');
        let (p, k, n) = (it.next().ok_or_else(bad)?, it.next().ok_or_else(bad)?, it.next().ok_or_else(bad)?);
        let rest = it.next().ok_or_else(bad)?;
        let head_len = p.len() + k.len() + n.len() + 2;
        (&inner[..head_len], None, rest)
    };
    let addr: ResourceAddr = head.parse().map_err(|_| bad())?;
    let mut segs = tail.split('.').map(str::to_string);
    let field = segs.next().filter(|f| !f.is_empty()).ok_or_else(bad)?;
    Ok(Reference { addr: addr.with_key(key), field, path: segs.collect(), span })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope_parse(text: &str) -> Result<Expr, Diagnostic> {
        let vars: BTreeMap<String, Value> = [("site".to_string(), Value::from("docs")), ("port".to_string(), Value::Int(8080))].into();
        parse(text, Span::default(), &Scope { variables: &vars, root: "/cfg" })
    }

    #[test]
    fn variables_and_paths_are_substituted() {
        assert_eq!(scope_parse("${path.root}/out/${var.site}").unwrap(), Expr::Literal("/cfg/out/docs".into()));
        assert_eq!(scope_parse("${var.port}").unwrap(), Expr::Literal(Value::Int(8080)));
        assert_eq!(scope_parse("port ${var.port}").unwrap(), Expr::Literal("port 8080".into()));
        assert_eq!(scope_parse("cost $${x}").unwrap(), Expr::Literal("cost ${x}".into()));
    }

    #[test]
    fn references_are_kept_for_later() {
        let Expr::Template(parts) = scope_parse("ip=${ec2.instance.web.private_ip}!").unwrap() else { panic!() };
        assert_eq!(parts.len(), 3);
        let Part::Ref(r) = &parts[1] else { panic!() };
        assert_eq!(r.to_string(), "ec2.instance.web.private_ip");
        let Expr::Template(parts) = scope_parse("${host.file.a[web].sha256}").unwrap() else { panic!() };
        let Part::Ref(r) = &parts[0] else { panic!() };
        assert_eq!(r.addr.key.as_deref(), Some("web"));
    }

    #[test]
    fn secret_references_are_kept_for_decryption() {
        let Expr::Template(parts) = scope_parse("password=${secret.db.users.admin}").unwrap() else { panic!() };
        let Part::Secret(s) = &parts[1] else { panic!() };
        assert_eq!((s.name.as_str(), s.path.join(".")), ("db", "users.admin".to_string()));
        assert!(matches!(scope_parse("${secret.token}").unwrap(), Expr::Template(p) if p.len() == 1));
    }

    #[test]
    fn bad_references_are_errors() {
        assert!(scope_parse("${var.nope}").unwrap_err().summary.contains("undefined variable"));
        assert!(scope_parse("${host.file}").unwrap_err().summary.contains("not a valid reference"));
        assert!(scope_parse("${host.file.a").unwrap_err().summary.contains("unterminated"));
    }
}
