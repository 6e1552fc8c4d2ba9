//! A spanned value tree shared by TOML and YAML, so lowering and its errors are the same for both.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};
use toml::de::{DeTable, DeValue};

use super::diag::Diagnostic;
use super::source::Span;

/// A key of a table, with its location.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// The key text.
    pub name: String,
    /// Where it is written.
    pub span: Span,
}

/// A value with its location.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the value is written.
    pub span: Span,
    /// The value.
    pub kind: NodeKind,
}

/// The shape of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// `null` / `~` (YAML only).
    Null,
    /// Boolean.
    Bool(bool),
    /// Integer.
    Int(i64),
    /// Float.
    Float(f64),
    /// String (also TOML datetimes, as written).
    String(String),
    /// List.
    List(Vec<Node>),
    /// Table, in source order.
    Map(Vec<(Key, Node)>),
}

impl NodeKind {
    /// A short type name for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "boolean",
            Self::Int(_) => "integer",
            Self::Float(_) => "float",
            Self::String(_) => "string",
            Self::List(_) => "list",
            Self::Map(_) => "table",
        }
    }
}

/// Parse a TOML file.
pub fn parse_toml(file: u32, text: &str) -> Result<Node, Diagnostic> {
    let doc = DeTable::parse(text).map_err(|e| {
        let span = Span::new(file, e.span().unwrap_or(0..0));
        Diagnostic::at(span, "invalid TOML", e.message().trim().to_string())
    })?;
    let span = Span::new(file, 0..text.len());
    Ok(Node { span, kind: toml_table(file, doc.get_ref()) })
}

fn toml_table(file: u32, t: &DeTable<'_>) -> NodeKind {
    NodeKind::Map(t.iter().map(|(k, v)| (Key { name: k.get_ref().to_string(), span: Span::new(file, k.span()) }, toml_value(file, v))).collect())
}

fn toml_value(file: u32, v: &toml::Spanned<DeValue<'_>>) -> Node {
    let span = Span::new(file, v.span());
    let kind = match v.get_ref() {
        DeValue::String(s) => NodeKind::String(s.to_string()),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            let digits = digits.trim_start_matches("0x").trim_start_matches("0o").trim_start_matches("0b");
            i64::from_str_radix(digits, i.radix()).map_or_else(|_| NodeKind::String(i.as_str().into()), NodeKind::Int)
        }
        DeValue::Float(f) => {
            let s = f.as_str().replace('_', "");
            let parsed = match s.as_str() {
                "inf" | "+inf" => Some(f64::INFINITY),
                "-inf" => Some(f64::NEG_INFINITY),
                "nan" | "+nan" | "-nan" => Some(f64::NAN),
                other => other.parse().ok(),
            };
            parsed.map_or_else(|| NodeKind::String(s.clone()), NodeKind::Float)
        }
        DeValue::Boolean(b) => NodeKind::Bool(*b),
        DeValue::Datetime(d) => NodeKind::String(d.to_string()),
        DeValue::Array(a) => NodeKind::List(a.iter().map(|x| toml_value(file, x)).collect()),
        DeValue::Table(t) => toml_table(file, t),
    };
    Node { span, kind }
}

/// At most this many nodes per file, counting every node an alias repeats (the "billion laughs"
/// class: a few hundred bytes of nested aliases would otherwise expand to gigabytes).
pub const MAX_NODES: usize = 1_000_000;
/// At most this many bytes of scalar text per file, counting what aliases repeat.
pub const MAX_EXPANDED_BYTES: usize = 64 << 20;
/// At most this deep a nesting of lists and tables.
pub const MAX_DEPTH: usize = 64;

/// Nodes and scalar bytes in a tree.
fn weight(n: &Node) -> (usize, usize) {
    match &n.kind {
        NodeKind::String(s) => (1, s.len()),
        NodeKind::List(items) => items.iter().map(weight).fold((1, 0), |(a, b), (c, d)| (a + c, b + d)),
        NodeKind::Map(entries) => entries
            .iter()
            .map(|(k, v)| {
                let (n, b) = weight(v);
                (n, b + k.name.len())
            })
            .fold((1, 0), |(a, b), (c, d)| (a + c, b + d)),
        _ => (1, 0),
    }
}

/// Parse a YAML file: each document must be a mapping; documents are returned in order.
pub fn parse_yaml(file: u32, text: &str) -> Result<Vec<Node>, Diagnostic> {
    // saphyr reports character indices; map them to byte offsets for spans.
    let offsets: Vec<usize> = text.char_indices().map(|(b, _)| b).chain(std::iter::once(text.len())).collect();
    let byte = |ch: usize| offsets.get(ch).copied().unwrap_or(text.len());
    let mut builder = YamlBuilder { file, stack: Vec::new(), docs: Vec::new(), anchors: HashMap::new(), nodes: 0, bytes: 0 };
    for ev in Parser::new_from_str(text) {
        let (event, span) = ev.map_err(|e| {
            let at = byte(e.marker().index()).min(text.len());
            Diagnostic::at(Span::new(file, at..at), format!("invalid YAML: {}", e.info()), "here")
        })?;
        let span = Span::new(file, byte(span.start.index())..byte(span.end.index()));
        builder.event(event, span)?;
    }
    Ok(builder.docs)
}

enum Frame {
    List(Span, usize, Vec<Node>),
    Map(Span, usize, Vec<(Key, Node)>, Option<Key>),
}

struct YamlBuilder {
    file: u32,
    stack: Vec<Frame>,
    docs: Vec<Node>,
    /// Anchored nodes with their weight (nodes, scalar bytes).
    anchors: HashMap<usize, (Node, (usize, usize))>,
    /// Nodes and scalar bytes so far, aliases expanded.
    nodes: usize,
    bytes: usize,
}

impl YamlBuilder {
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), Diagnostic> {
        match event {
            Event::Scalar(value, style, anchor, _tag) => {
                self.count(span, 1, value.len())?;
                let kind = if style == ScalarStyle::Plain { plain_scalar(&value) } else { NodeKind::String(value.into_owned()) };
                self.value(Node { span, kind }, anchor)?;
            }
            Event::SequenceStart(anchor, _) => {
                self.nest(span)?;
                self.stack.push(Frame::List(span, anchor, Vec::new()));
            }
            Event::MappingStart(anchor, _) => {
                self.nest(span)?;
                self.stack.push(Frame::Map(span, anchor, Vec::new(), None));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop() {
                    Some(Frame::List(start, anchor, items)) => (Node { span: join(start, span), kind: NodeKind::List(items) }, anchor),
                    Some(Frame::Map(start, anchor, entries, _)) => (Node { span: join(start, span), kind: NodeKind::Map(entries) }, anchor),
                    None => return Ok(()),
                };
                self.value(node.0, node.1)?;
            }
            Event::Alias(id) => {
                let (node, (nodes, bytes)) =
                    self.anchors.get(&id).cloned().ok_or_else(|| Diagnostic::at(span, "invalid YAML", "alias to an unknown anchor"))?;
                self.count(span, nodes, bytes)?;
                self.value(Node { span, ..node }, 0)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Count what a scalar or an alias adds; refuse past the limits.
    fn count(&mut self, span: Span, nodes: usize, bytes: usize) -> Result<(), Diagnostic> {
        self.nodes = self.nodes.saturating_add(nodes);
        self.bytes = self.bytes.saturating_add(bytes);
        if self.nodes > MAX_NODES || self.bytes > MAX_EXPANDED_BYTES {
            return Err(Diagnostic::at(
                span,
                format!("YAML expands to more than {MAX_NODES} values or {} MiB of text", MAX_EXPANDED_BYTES >> 20),
                "expanding here goes past the limit",
            )
            .with_hint("aliases (*name) repeat what their anchor (&name) holds; nested aliases multiply it. Write the values out, or split the file"));
        }
        Ok(())
    }

    fn nest(&self, span: Span) -> Result<(), Diagnostic> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(Diagnostic::at(span, format!("YAML nests deeper than {MAX_DEPTH} levels"), "too deep here"));
        }
        Ok(())
    }

    fn value(&mut self, node: Node, anchor: usize) -> Result<(), Diagnostic> {
        if anchor > 0 {
            let w = weight(&node);
            self.anchors.insert(anchor, (node.clone(), w));
        }
        match self.stack.last_mut() {
            None => {
                if !matches!(node.kind, NodeKind::Map(_) | NodeKind::Null) {
                    return Err(Diagnostic::at(node.span, "a config document must be a mapping", format!("this is a {}", node.kind.type_name())));
                }
                self.docs.push(node);
            }
            Some(Frame::List(_, _, items)) => items.push(node),
            Some(Frame::Map(_, _, entries, pending)) => match pending.take() {
                None => {
                    let NodeKind::String(name) = scalar_text(&node.kind) else {
                        return Err(Diagnostic::at(node.span, "mapping keys must be scalars", "this key is a collection"));
                    };
                    *pending = Some(Key { name, span: node.span });
                }
                Some(key) => {
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == key.name) {
                        return Err(Diagnostic::at(key.span, format!("duplicate key `{}`", key.name), "defined again here")
                            .with_label(first.span, "first defined here"));
                    }
                    entries.push((key, node));
                }
            },
        }
        let _ = self.file;
        Ok(())
    }
}

fn join(a: Span, b: Span) -> Span {
    Span { file: a.file, start: a.start, end: b.end.max(a.end) }
}

fn scalar_text(kind: &NodeKind) -> NodeKind {
    match kind {
        NodeKind::String(s) => NodeKind::String(s.clone()),
        NodeKind::Null => NodeKind::String("null".into()),
        NodeKind::Bool(b) => NodeKind::String(b.to_string()),
        NodeKind::Int(i) => NodeKind::String(i.to_string()),
        NodeKind::Float(f) => NodeKind::String(f.to_string()),
        other => other.clone(),
    }
}

/// How a plain (unquoted) YAML scalar resolves: null, bool, int, float or string.
pub fn plain_scalar_kind(s: &str) -> NodeKind {
    plain_scalar(s)
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn plain_scalar(s: &str) -> NodeKind {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return NodeKind::Null,
        "true" | "True" | "TRUE" => return NodeKind::Bool(true),
        "false" | "False" | "FALSE" => return NodeKind::Bool(false),
        _ => {}
    }
    if let Some(hex) = s.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return NodeKind::Int(i);
    }
    if let Some(oct) = s.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return NodeKind::Int(i);
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'-' || b == b'+')
        && let Ok(i) = s.parse::<i64>()
    {
        return NodeKind::Int(i);
    }
    if s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
        && let Ok(f) = s.parse::<f64>()
    {
        return NodeKind::Float(f);
    }
    match s {
        ".inf" | ".Inf" | ".INF" | "+.inf" => NodeKind::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => NodeKind::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => NodeKind::Float(f64::NAN),
        _ => NodeKind::String(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alias_bomb_is_refused_quickly_naming_where() {
        let mut bomb = String::from("a: &a [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n");
        for (i, prev) in ('b'..='i').zip('a'..='h') {
            bomb.push_str(&format!("{i}: &{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        assert!(bomb.len() < 600, "a few hundred bytes");
        let started = std::time::Instant::now();
        let err = parse_yaml(0, &bomb).expect_err("refused");
        // A guard against expanding it (hundreds of millions of nodes), not a speed goal.
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "took {:?}", started.elapsed());
        assert!(err.summary.contains("YAML expands to more than"), "{}", err.summary);
        let line = bomb[..err.labels[0].span.start as usize].lines().count();
        assert!((6..=9).contains(&line), "points at the alias that goes past the limit, line {line}");
        // Aliases used within the limits still work.
        let ok = parse_yaml(0, "base: &b {x: 1}\none: *b\ntwo: *b\n").expect("parses");
        assert_eq!(keys(&ok[0]), ["base", "one", "two"]);
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("a: {}1{}\n", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let err = parse_yaml(0, &deep).expect_err("refused");
        assert!(err.summary.contains("nests deeper than"), "{}", err.summary);
    }

    fn keys(n: &Node) -> Vec<String> {
        match &n.kind {
            NodeKind::Map(e) => e.iter().map(|(k, _)| k.name.clone()).collect(),
            _ => vec![],
        }
    }

    #[test]
    fn toml_keeps_spans_of_keys_and_values() {
        let text = "[host.file.a]\npath = \"/x\"\nmode = 420\n";
        let root = parse_toml(0, text).unwrap();
        assert_eq!(keys(&root), ["host"]);
        let NodeKind::Map(host) = &root.kind else { panic!() };
        let NodeKind::Map(file) = &host[0].1.kind else { panic!() };
        let NodeKind::Map(named) = &file[0].1.kind else { panic!() };
        let NodeKind::Map(a) = &named[0].1.kind else { panic!() };
        let (k, v) = &a[0];
        assert_eq!(&text[k.span.start as usize..k.span.end as usize], "path");
        assert_eq!(&text[v.span.start as usize..v.span.end as usize], "\"/x\"");
        assert_eq!(a[1].1.kind, NodeKind::Int(420));
    }

    #[test]
    fn yaml_resolves_plain_scalars_and_spans_in_bytes() {
        let text = "host:\n  file:\n    é:\n      path: /x\n      n: 3\n      b: true\n      s: '3'\n";
        let docs = parse_yaml(0, text).unwrap();
        let NodeKind::Map(host) = &docs[0].kind else { panic!() };
        let NodeKind::Map(file) = &host[0].1.kind else { panic!() };
        let NodeKind::Map(named) = &file[0].1.kind else { panic!() };
        assert_eq!(named[0].0.name, "é");
        let NodeKind::Map(e) = &named[0].1.kind else { panic!() };
        let fields: Vec<_> = e.iter().map(|(k, v)| (k.name.as_str(), v.kind.clone())).collect();
        assert_eq!(fields[0], ("path", NodeKind::String("/x".into())));
        assert_eq!(fields[1], ("n", NodeKind::Int(3)));
        assert_eq!(fields[2], ("b", NodeKind::Bool(true)));
        assert_eq!(fields[3], ("s", NodeKind::String("3".into())));
        let (k, _) = &e[0];
        assert_eq!(&text[k.span.start as usize..k.span.end as usize], "path");
    }

    #[test]
    fn yaml_duplicate_keys_are_errors() {
        let err = parse_yaml(0, "a: 1\na: 2\n").unwrap_err();
        assert_eq!(err.summary, "duplicate key `a`");
    }
}
