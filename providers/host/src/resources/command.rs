//! `host.command`: a command run once, when its text changes, or when what it watches changes.

use async_trait::async_trait;
use tend_provider::{Action, ApplyRequest, Attributes, FieldSchema, FieldType, KindSchema, Observed, PlanRequest, PlannedChange, ProviderError, Value};

use super::{get_str, last_lines, required_str};
use crate::transport::Transport;

/// Schema of `host.command`.
pub fn schema() -> KindSchema {
    KindSchema {
        kind: "command",
        target: false,
        doc: "a shell command run on a host (sh -c)",
        timeout: None,
        runs: true,
        fields: vec![
            FieldSchema::input("on", FieldType::Any, "host names, or a label selector table"),
            FieldSchema::input("run", FieldType::String, "the command, run with `sh -c`").required(),
            FieldSchema::input("creates", FieldType::String, "skip when this path exists"),
            FieldSchema::input("unless", FieldType::String, "skip when this command exits 0"),
            FieldSchema::input("cwd", FieldType::String, "working directory"),
            FieldSchema::input("on_change", FieldType::AddressList, "run again when any of these resources change"),
        ],
    }
}

/// Observed attributes of a command: what was last run plus the state of its guards.
pub fn observed(prior: Option<&Attributes>, creates_exists: bool, unless_ok: bool) -> Observed {
    let mut a = prior.cloned().unwrap_or_default();
    a.insert("creates_exists".into(), Value::Bool(creates_exists));
    a.insert("unless_ok".into(), Value::Bool(unless_ok));
    Observed { id: None, attributes: a }
}

fn shown(config: &Attributes) -> Attributes {
    ["run", "cwd"].iter().filter_map(|f| config.get(f).map(|v| ((*f).to_string(), v.clone()))).collect()
}

/// Plan one command.
pub fn plan(req: &PlanRequest, guards: (bool, bool)) -> PlannedChange {
    let prior = req.prior.as_ref().map(|p| shown(&p.attributes));
    let Some(config) = &req.config else {
        let mut c = PlannedChange::new(Action::Delete);
        c.before = prior.unwrap_or_default();
        c.note = Some("nothing to undo; tend forgets the command".into());
        return c;
    };
    let after = shown(config);
    let mut c = PlannedChange { after: after.clone(), before: prior.clone().unwrap_or_default(), ..PlannedChange::new(Action::NoOp) };
    let (creates_exists, unless_ok) = guards;
    if creates_exists {
        c.note = Some(format!("skipped: {} exists", get_str(config, "creates").unwrap_or_default()));
        return c;
    }
    if unless_ok {
        c.note = Some("skipped: `unless` command succeeded".into());
        return c;
    }
    if prior.is_none() {
        c.action = Action::Create;
    } else if req.inputs_changed {
        c.action = Action::Update;
    } else if !req.upstream_changes.is_empty() {
        c.action = Action::Update;
        c.triggered_by = req.upstream_changes.iter().cloned().collect();
    }
    c
}

/// Run the command.
pub async fn apply(t: &dyn Transport, req: &ApplyRequest) -> Result<Option<Observed>, ProviderError> {
    if req.action == Action::Delete {
        return Ok(None);
    }
    let config = req.config.as_ref().ok_or_else(|| ProviderError::terminal("no config to apply"))?;
    let run = required_str(config, "run")?;
    // What it prints is logged line by line as it prints it, in the span naming the resource
    // (shown with -v; the log writer removes secrets).
    let log = |stream: &'static str, line: &str| tracing::info!(stream, "{line}");
    let out = t.exec_streamed(run, get_str(config, "cwd"), Some(&log)).await?;
    if out.status != 0 {
        let mut err = ProviderError::terminal(format!("command exited with status {} on host `{}`", out.status, t.host()));
        let shown: Vec<String> = [("stdout", &out.stdout), ("stderr", &out.stderr)]
            .iter()
            .filter(|(_, text)| !text.trim().is_empty())
            .map(|(name, text)| format!("its last lines of {name}:\n{}", last_lines(text, 10)))
            .collect();
        if !shown.is_empty() {
            err = err.with_hint(shown.join("\n"));
        }
        return Err(err);
    }
    // What it printed is kept with its record, bounded (the engine removes secrets from it).
    let mut attributes = shown(config);
    attributes.insert("exit_status".into(), Value::Int(i64::from(out.status)));
    attributes.insert("stdout".into(), Value::from(tail(&out.stdout, OUTPUT_KEPT)));
    attributes.insert("stderr".into(), Value::from(tail(&out.stderr, OUTPUT_KEPT)));
    Ok(Some(Observed { id: None, attributes }))
}

/// How much of each output stream of a command is kept in state.
const OUTPUT_KEPT: usize = 4096;

/// At most the last `max` bytes of `text`, from a line start when there is one in reach.
fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let cut = &text[start..];
    let from_line = cut.find('\n').map_or(cut, |i| &cut[i + 1..]);
    format!("[… {} bytes before]\n{from_line}", text.len() - from_line.len())
}

/// `host.command`.
pub struct Command;

/// Whether the command's `creates` path exists and its `unless` check passed, as observed.
fn guards(observed: Option<&Observed>) -> (bool, bool) {
    let flag = |k: &str| observed.and_then(|o| o.attributes.get(k)).and_then(Value::as_bool).unwrap_or(false);
    (flag("creates_exists"), flag("unless_ok"))
}

#[async_trait]
impl super::HostKind for Command {
    fn name(&self) -> &'static str {
        "command"
    }
    fn schema(&self) -> KindSchema {
        schema()
    }
    fn exclusive(&self) -> bool {
        true
    }
    fn observe(&self, item: &tend_provider::ReadItem) -> super::Observe {
        let creates = item.config.as_ref().and_then(|c| get_str(c, "creates")).map(str::to_string);
        super::Observe { path: creates.map(|path| crate::transport::StatRequest { path, hash: false, content: false }), claims: false, script: None }
    }
    async fn observed(&self, item: &tend_provider::ReadItem, seen: super::Seen<'_>, t: &dyn Transport) -> Result<Option<Observed>, ProviderError> {
        let creates_exists = seen.stat.is_some_and(|s| s.file_type.is_some());
        let unless_ok = match item.config.as_ref().and_then(|c| get_str(c, "unless")) {
            Some(cmd) if !creates_exists => t.exec(cmd, None).await.map(|o| o.status == 0)?,
            _ => false,
        };
        Ok(Some(observed(item.prior.as_ref().map(|p| &*p.attributes), creates_exists, unless_ok)))
    }
    fn plan(&self, req: &PlanRequest, _cx: super::Cx<'_>) -> Result<PlannedChange, ProviderError> {
        Ok(plan(req, guards(req.observed.as_ref())))
    }
    async fn apply(&self, t: &dyn Transport, req: &ApplyRequest, _cx: super::Cx<'_>) -> Result<Option<Observed>, ProviderError> {
        apply(t, req).await
    }
}
