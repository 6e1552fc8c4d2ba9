//! The human plan: `+` create, `~` update, `-/+` replace, `-` destroy, and a summary line.

use std::fmt::Write;

use tend_provider::{Action, Attributes, Value};

use super::{Change, ChangeReason, Plan};

/// How the text plan is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextOptions {
    /// Show what changes inside content as unified diffs.
    pub diff: bool,
    /// Lines of context around each change in a diff.
    pub context: usize,
    /// Colour `+` green, `~` yellow, `-` red (ANSI escapes).
    pub color: bool,
}

impl Default for TextOptions {
    fn default() -> Self {
        Self { diff: true, context: 3, color: false }
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Unknown => "(known after apply)".into(),
        // A SHA-256 is shown by its first 12 digits, as Git shortens commit ids.
        Value::String(s) if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => format!("\"{}…\"", &s[..12]),
        other => other.to_string(),
    }
}

/// What changes inside content: a unified diff per field (every line `+` for content that is
/// new), or the provider's summary (binary, too large, secret).
fn content(out: &mut String, c: &Change, opts: &TextOptions) {
    if !opts.diff {
        return;
    }
    for cc in &c.content {
        if let Some(summary) = &cc.summary {
            let _ = writeln!(out, "        {}: {summary}", cc.field);
            continue;
        }
        let (before, after) = (cc.before.as_deref().unwrap_or(""), cc.after.as_deref().unwrap_or(""));
        let _ = writeln!(out, "        {}:", cc.field);
        let diff = similar::TextDiff::from_lines(before, after);
        for hunk in diff.unified_diff().context_radius(opts.context).iter_hunks() {
            let _ = writeln!(out, "          {}", hunk.header());
            for change in hunk.iter_changes() {
                let sign = match change.tag() {
                    similar::ChangeTag::Delete => '-',
                    similar::ChangeTag::Insert => '+',
                    similar::ChangeTag::Equal => ' ',
                };
                let line = change.value();
                let _ = writeln!(out, "          {sign}{}", line.strip_suffix('\n').unwrap_or(line));
                if change.missing_newline() {
                    let _ = writeln!(out, "          \\ No newline at end of file");
                }
            }
        }
    }
}

/// ANSI colours by the sign a line starts with: `+` green, `-` red, `~` yellow, `-/+` both,
/// `@@` cyan.
fn colour(text: &str) -> String {
    const GREEN: &str = "\x1b[32m";
    const RED: &str = "\x1b[31m";
    const YELLOW: &str = "\x1b[33m";
    const CYAN: &str = "\x1b[36m";
    const RESET: &str = "\x1b[0m";
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for line in text.split_inclusive('\n') {
        let body = line.trim_start();
        let code = if body.starts_with("-/+") {
            YELLOW
        } else if body.starts_with('+') {
            GREEN
        } else if body.starts_with('-') {
            RED
        } else if body.starts_with('~') {
            YELLOW
        } else if body.starts_with("@@") {
            CYAN
        } else {
            out.push_str(line);
            continue;
        };
        let (content, newline) = line.strip_suffix('\n').map_or((line, ""), |l| (l, "\n"));
        let _ = write!(out, "{code}{content}{RESET}{newline}");
    }
    out
}

fn header(c: &Change) -> String {
    let why = match c.reason {
        ChangeReason::Drift if c.action == Action::Create => " (it was deleted outside tend)",
        ChangeReason::Drift => " (changed outside tend)",
        ChangeReason::Tainted => " (its last apply failed)",
        ChangeReason::Removed => " (no longer in config)",
        ChangeReason::Requested => " (asked for with --replace)",
        _ => "",
    };
    match c.action {
        Action::Create if c.runs => format!("will run{why}"),
        Action::Update if c.runs && c.triggered_by.is_empty() => format!("will run again: it changed{why}"),
        Action::Create => format!("will be created{why}"),
        Action::Update if !c.triggered_by.is_empty() => {
            let by: Vec<String> = c.triggered_by.iter().map(ToString::to_string).collect();
            format!("will run again: {} changed", by.join(", "))
        }
        Action::Update => format!("will be updated in place{why}"),
        Action::Replace { create_first } => {
            let forced = if c.requires_replace.is_empty() { String::new() } else { format!("; {} forces replacement", c.requires_replace.join(", ")) };
            let order = if create_first { "create the replacement, then destroy" } else { "destroy, then create the replacement" };
            format!("must be replaced ({order}{forced}){why}")
        }
        Action::Delete => format!("will be destroyed{why}"),
        Action::NoOp => "is unchanged".into(),
    }
}

fn symbol(a: Action) -> &'static str {
    match a {
        Action::Create => "  +",
        Action::Update => "  ~",
        Action::Replace { .. } => "-/+",
        Action::Delete => "  -",
        Action::NoOp => "   ",
    }
}

fn attributes(out: &mut String, c: &Change) {
    attribute_lines(out, c.action, c.before.as_deref(), c.after.as_deref(), &c.requires_replace);
}

/// The attributes that change from `before` to `after`, and how many did not.
fn attribute_lines(out: &mut String, action: Action, before: Option<&Attributes>, after: Option<&Attributes>, requires_replace: &[String]) {
    let empty = Attributes::new();
    let before = before.unwrap_or(&empty);
    let after = after.unwrap_or(&empty);
    let mut keys: Vec<&tend_provider::Key> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    let shown = |k: &str| match (action, before.get(k), after.get(k)) {
        (Action::Delete, Some(_), _) | (_, None, Some(_)) => true,
        (_, Some(b), Some(a)) => b != a,
        _ => false,
    };
    let width = keys.iter().filter(|k| shown(k)).map(|k| k.len()).max().unwrap_or(0);
    let mut hidden = 0;
    for k in keys {
        let (b, a) = (before.get(k), after.get(k));
        // Sensitive on either side hides both: an observed hash of a secret file is as telling
        // as the planned one.
        let hidden_value = Value::Redacted;
        let sensitive = b.is_some_and(Value::is_sensitive) || a.is_some_and(Value::is_sensitive);
        let (b, a) = if sensitive { (b.map(|_| &hidden_value), a.map(|_| &hidden_value)) } else { (b, a) };
        let changed = before.get(k) != after.get(k);
        let forces = if requires_replace.iter().any(|r| r == k) { " # forces replacement" } else { "" };
        let line = match (action, b, a) {
            (Action::Delete, Some(b), _) => {
                whole(out, 6, '-', &format!("{k:width$} = "), b);
                continue;
            }
            (_, None, Some(a)) => {
                whole(out, 6, '+', &format!("{k:width$} = "), a);
                continue;
            }
            // Tables and lists that changed inside: only what changed, as Terraform shows it.
            (_, Some(b @ (Value::Map(_) | Value::List(_))), Some(a)) if changed && std::mem::discriminant(b) == std::mem::discriminant(a) => {
                nested(out, 6, &format!("{k:width$} = "), b, a, forces, None);
                continue;
            }
            (_, Some(b), Some(a)) if changed => format!("      ~ {k:width$} = {} -> {}{forces}", show(b), show(a)),
            (_, Some(_), None) if action != Action::Delete => continue,
            _ => {
                hidden += 1;
                continue;
            }
        };
        let _ = writeln!(out, "{line}");
    }
    if hidden > 0 && action != Action::Create {
        let _ = writeln!(out, "        ({hidden} unchanged attribute{} hidden)", if hidden == 1 { "" } else { "s" });
    }
}

/// A value added or removed whole, at `pad` spaces: a table or list one entry per line (tables
/// with their keys aligned), as Terraform shows a new nested block; anything else on one line.
fn whole(out: &mut String, pad: usize, sign: char, lead: &str, v: &Value) {
    let inner = pad + 4;
    match v {
        Value::Map(m) if !m.is_empty() => {
            let _ = writeln!(out, "{:pad$}{sign} {lead}{{", "");
            let keys: Vec<String> = m.keys().map(|k| map_key(k)).collect();
            let width = keys.iter().map(|k| k.chars().count()).max().unwrap_or(0);
            for (k, val) in keys.iter().zip(m.values()) {
                whole(out, inner, sign, &format!("{k:width$} = "), val);
            }
            let _ = writeln!(out, "{:pad$}  }}", "");
        }
        Value::List(l) if !l.is_empty() => {
            let _ = writeln!(out, "{:pad$}{sign} {lead}[", "");
            for val in l {
                whole(out, inner, sign, "", val);
            }
            let _ = writeln!(out, "{:pad$}  ]", "");
        }
        other => {
            let _ = writeln!(out, "{:pad$}{sign} {lead}{}", "", show(other));
        }
    }
}

/// A table key as written in a plan: bare when it is a word, else quoted (`"tend.dev/set"`).
fn map_key(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') { k.to_string() } else { format!("{k:?}") }
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} unchanged {what}{}", if n == 1 { "" } else { "s" })
}

/// A table or list that changed inside, at `pad` spaces: its changed entries (recursively), the
/// number of unchanged ones, and for a list element the key that identifies it.
fn nested(out: &mut String, pad: usize, lead: &str, b: &Value, a: &Value, forces: &str, identity: Option<&str>) {
    let inner = pad + 4;
    match (b, a) {
        (Value::Map(bm), Value::Map(am)) => {
            let _ = writeln!(out, "{:pad$}~ {lead}{{{forces}", "");
            let mut keys: Vec<&tend_provider::Key> = bm.keys().chain(am.keys()).collect();
            keys.sort();
            keys.dedup();
            let shown = |k: &&tend_provider::Key| bm.get(k) != am.get(k) || Some(k.as_str()) == identity;
            let width = keys.iter().filter(|k| shown(k)).map(|k| k.len()).max().unwrap_or(0);
            let mut hidden = 0;
            for k in keys {
                match (bm.get(k), am.get(k)) {
                    (Some(x), Some(_)) if Some(k.as_str()) == identity => {
                        let _ = writeln!(out, "{:inner$}  {k:width$} = {}", "", show(x));
                    }
                    (x, y) => hidden += usize::from(entry(out, inner, &format!("{k:width$} = "), x, y, None)),
                }
            }
            if hidden > 0 {
                let _ = writeln!(out, "{:inner$}  # ({} hidden)", "", plural(hidden, "attribute"));
            }
            let _ = writeln!(out, "{:pad$}  }}", "");
        }
        (Value::List(bl), Value::List(al)) => {
            let _ = writeln!(out, "{:pad$}~ {lead}[{forces}", "");
            let mut hidden = 0;
            for (segment, x, y) in tend_provider::pair_elements(bl, al) {
                let id = match &segment {
                    tend_provider::Segment::Keyed { key, .. } => Some(key.as_str()),
                    _ => None,
                };
                hidden += usize::from(entry(out, inner, "", x, y, id));
            }
            if hidden > 0 {
                let _ = writeln!(out, "{:inner$}  # ({} hidden)", "", plural(hidden, "element"));
            }
            let _ = writeln!(out, "{:pad$}  ]", "");
        }
        _ => {
            let _ = writeln!(out, "{:pad$}~ {lead}{} -> {}{forces}", "", show(b), show(a));
        }
    }
}

/// One entry of a table (`lead` = `KEY = `) or element of a list (`lead` empty) at `pad`
/// spaces: added, removed, changed, or a table or list that changed inside. Returns whether it
/// is unchanged (to be counted, not shown).
fn entry(out: &mut String, pad: usize, lead: &str, b: Option<&Value>, a: Option<&Value>, identity: Option<&str>) -> bool {
    match (b, a) {
        (Some(x), Some(y)) if x == y => return true,
        (Some(x @ (Value::Map(_) | Value::List(_))), Some(y)) if std::mem::discriminant(x) == std::mem::discriminant(y) => {
            nested(out, pad, lead, x, y, "", identity);
        }
        (Some(x), Some(y)) => {
            let _ = writeln!(out, "{:pad$}~ {lead}{} -> {}", "", show(x), show(y));
        }
        (None, Some(y)) => whole(out, pad, '+', lead, y),
        (Some(x), None) => whole(out, pad, '-', lead, x),
        (None, None) => {}
    }
    false
}

/// Render a plan for people, with diffs of content and no colour. Deterministic: no
/// timestamps, changes in dependency order.
pub fn render_text(plan: &Plan) -> String {
    render_text_with(plan, &TextOptions::default())
}

/// Render a plan for people as `opts` says.
pub fn render_text_with(plan: &Plan, opts: &TextOptions) -> String {
    let out = render(plan, opts);
    if opts.color { colour(&out) } else { out }
}

fn render(plan: &Plan, opts: &TextOptions) -> String {
    if plan.refresh_only {
        return render_refresh(plan);
    }
    let mut out = String::new();
    let changes: Vec<&Change> = plan.changes.iter().filter(|c| c.is_change()).collect();
    if !changes.is_empty() {
        let _ = writeln!(out, "tend will perform these actions:\n");
        for c in &changes {
            let _ = writeln!(out, "  # {} {}", c.addr, header(c));
            if let Some(note) = &c.note {
                let _ = writeln!(out, "  # ({note})");
            }
            let _ = writeln!(out, "{} {}", symbol(c.action), c.addr);
            attributes(&mut out, c);
            content(&mut out, c, opts);
            out.push('\n');
        }
    }
    // Targets whose staged changes take effect together, in their provider's words.
    for (t, note) in &plan.commits {
        let _ = writeln!(out, "  # {t} {note}\n");
    }
    let held: Vec<&Change> = plan.changes.iter().filter(|c| c.held_back.is_some()).collect();
    if !held.is_empty() {
        let _ = writeln!(out, "Held back by suspend = true:\n");
        for c in held {
            let action = c.held_back.unwrap_or(Action::NoOp);
            let _ = writeln!(out, "{} {}", symbol(action), c.addr);
            attributes(&mut out, &Change { action, ..(*c).clone() });
        }
        out.push('\n');
    }
    let reported: Vec<&Change> = plan.changes.iter().filter(|c| c.drift_reported).collect();
    if !reported.is_empty() {
        let _ = writeln!(out, "Drift detected and left alone (drift = \"report\"):\n");
        for c in reported {
            let _ = writeln!(out, "  ~ {}", c.addr);
            attributes(&mut out, &Change { action: Action::Update, ..(*c).clone() });
        }
        out.push('\n');
    }
    left_out(&mut out, plan.left_out);
    let held_count = plan.changes.iter().filter(|c| c.held_back.is_some()).count();
    if !plan.errors.is_empty() {
        // Never "No changes" beside errors: nothing can be applied until they are fixed.
        let n = plan.errors.len();
        let _ = writeln!(out, "The plan cannot be applied: {n} error{} (below).", if n == 1 { "" } else { "s" });
    } else if changes.is_empty() && held_count > 0 {
        let _ = writeln!(out, "No changes to apply: {held_count} held back by suspend = true.");
    } else if changes.is_empty() {
        let _ = writeln!(out, "No changes. The targets match the configuration.");
    } else {
        let _ = writeln!(out, "Plan: {}.", plan.summary());
    }
    out
}

fn left_out(out: &mut String, n: usize) {
    if n > 0 {
        let _ = writeln!(
            out,
            "Only what --target / --limit selects is planned: {n} other change{} left out. The configuration is not fully applied\nuntil a plan without them shows no changes.\n",
            if n == 1 { " is" } else { "s are" }
        );
    }
}

/// A refresh-only plan: what changed or went away outside tend, as state will record it.
fn render_refresh(plan: &Plan) -> String {
    let mut out = String::new();
    if !plan.refreshed.is_empty() {
        let _ = writeln!(out, "Objects changed outside tend since they were last applied:\n");
    }
    for r in &plan.refreshed {
        match &r.after {
            None => {
                let _ = writeln!(out, "  # {} was deleted outside tend\n  # (tend forgets it; nothing is deleted)\n  - {}\n", r.addr, r.addr);
            }
            Some(after) => {
                let _ = writeln!(out, "  # {} changed outside tend\n  ~ {}", r.addr, r.addr);
                if r.before_id != r.after_id {
                    let id = |v: &Option<String>| v.as_deref().map_or_else(|| "(none)".to_string(), |s| format!("{s:?}"));
                    let _ = writeln!(out, "      ~ (id) {} -> {}", id(&r.before_id), id(&r.after_id));
                }
                attribute_lines(&mut out, Action::Update, Some(&r.before), Some(after), &[]);
                out.push('\n');
            }
        }
    }
    left_out(&mut out, plan.left_out);
    if !plan.errors.is_empty() {
        let n = plan.errors.len();
        let _ = writeln!(out, "The plan cannot be applied: {n} error{} (below).", if n == 1 { "" } else { "s" });
    } else if plan.refreshed.is_empty() {
        let _ = writeln!(out, "No changes. State matches what the targets hold.");
    } else {
        let forget = plan.refreshed.iter().filter(|r| r.after.is_none()).count();
        let _ = writeln!(
            out,
            "This is a refresh-only plan: applying it records these in state and changes nothing on the targets; the next plan\nconverges them to the configuration again unless the configuration is changed to match.\nRefresh: {} to update in state, {forget} to forget.",
            plan.refreshed.len() - forget
        );
    }
    out
}
