//! `host.release`: a directory of the config repository deployed as an immutable, content-
//! addressed generation: `PATH/releases/<id>` is written aside, `PATH/current` is switched to it
//! atomically (symlink + rename), the optional `health` command runs over a fresh connection,
//! a failing check switches back to the previous generation, and the newest `keep` generations
//! stay on the host for `tend rollback`.

use std::path::Path;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tend_provider::{
    Action, ApplyRequest, Attributes, FieldError, FieldSchema, FieldType, KindSchema, Observed, PlanRequest, PlannedChange, ProviderError, Value,
};

use super::{get_str, required_str, validate_path};
use crate::transport::{FileAttrs, Transport, quote};

/// Schema of `host.release`.
pub fn schema() -> KindSchema {
    KindSchema {
        kind: "release",
        doc: "a directory of the repository deployed as an immutable generation, with health check and rollback",
        target: false,
        timeout: None,
        runs: false,
        fields: vec![
            FieldSchema::input("on", FieldType::Any, "host names, or a label selector table"),
            FieldSchema::input("source", FieldType::String, "a directory in the config repository").required(),
            FieldSchema::input("path", FieldType::String, "base directory on the host (releases/ and current live there)")
                .required()
                .forces_replacement()
                .claims(tend_provider::Claim::Exclusive),
            FieldSchema::input("keep", FieldType::Int, "generations kept on the host, default 5"),
            FieldSchema::input("health", FieldType::String, "command run in PATH/current after the switch; failing switches back"),
            FieldSchema::output("current", FieldType::String, "the generation in use"),
            FieldSchema::output("generations", FieldType::List(Box::new(FieldType::String)), "generations on the host, newest first"),
        ],
    }
}

/// Checks of literal config.
pub fn validate(literal: &Attributes, root: &Path) -> Vec<FieldError> {
    let mut errors = Vec::new();
    validate_path(literal, "path", &mut errors);
    if let Some(src) = get_str(literal, "source") {
        match tend_provider::resolve_inside(root, src) {
            Ok(p) if p.is_dir() => {}
            Ok(_) => errors.push(FieldError::field("source", format!("`{src}` is not a directory of the config repository"))),
            Err(e) => errors.push(FieldError::field("source", format!("release source {e}")).with_hint(e.hint())),
        }
    }
    if let Some(k) = literal.get("keep").and_then(Value::as_i64).filter(|k| *k < 2) {
        errors.push(FieldError::field("keep", format!("keep = {k}: at least 2, so there is something to go back to")));
    }
    errors
}

/// The files of the source directory: (relative path, content), sorted. Symlinks in the tree
/// are refused, never followed: one could lead anywhere on this machine (an age key).
fn files(root: &Path, src: &str) -> Result<Vec<(String, Vec<u8>)>, ProviderError> {
    let base = tend_provider::resolve_inside(root, src)?;
    let mut out = Vec::new();
    let mut stack = vec![base.clone()];
    while let Some(dir) = stack.pop() {
        let entries = fs_err::read_dir(&dir).map_err(|e| ProviderError::terminal(format!("release source `{src}` cannot be read")).with_source(e))?;
        for entry in entries.flatten() {
            let p = entry.path();
            let kind = entry.file_type().map_err(|e| ProviderError::terminal(format!("release source `{src}` cannot be read")).with_source(e))?;
            if kind.is_symlink() {
                let rel = p.strip_prefix(&base).unwrap_or(&p).display().to_string();
                return Err(ProviderError::terminal(format!("release source `{src}` holds a symlink, `{rel}`; releases copy files and directories only"))
                    .with_hint("replace the link by the file it points to (a link could lead outside the config directory)"));
            }
            if kind.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(&base).unwrap_or(&p).to_string_lossy().into_owned();
                let bytes = fs_err::read(&p).map_err(|e| ProviderError::terminal(format!("`{rel}` cannot be read")).with_source(e))?;
                out.push((rel, bytes));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The generation id of the source: a hash over every file's path and content.
pub fn generation(root: &Path, src: &str) -> Result<String, ProviderError> {
    let mut h = Sha256::new();
    for (rel, bytes) in files(root, src)? {
        h.update(rel.as_bytes());
        h.update([0]);
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(hex::encode(h.finalize())[..16].to_string())
}

/// One command reporting the current generation and all generations, newest first.
pub fn observe_script(path: &str) -> String {
    let p = quote(path);
    format!(
        "cur=$(readlink {p}/current 2>/dev/null || true); echo \"current=${{cur##*/}}\"; ls -1t {p}/releases 2>/dev/null | grep -v '\\.tmp$' | sed 's/^/generation_id=/'; exit 0"
    )
}

/// Parse the observe output.
pub fn observed(stdout: &str, path: &str) -> Option<Observed> {
    let current = stdout.lines().find_map(|l| l.strip_prefix("current=")).unwrap_or_default();
    let gens: Vec<Value> = stdout.lines().filter_map(|l| l.strip_prefix("generation_id=")).map(Value::from).collect();
    if current.is_empty() && gens.is_empty() {
        return None;
    }
    let mut a = Attributes::new();
    a.insert("path".into(), Value::from(path));
    a.insert("current".into(), if current.is_empty() { Value::Null } else { Value::from(current) });
    a.insert("generations".into(), Value::List(gens));
    Some(Observed { id: None, attributes: a })
}

/// Plan: the source's generation is to be current.
pub fn plan(req: &PlanRequest, root: &Path) -> Result<PlannedChange, ProviderError> {
    let observed = req.observed.as_ref();
    let Some(config) = &req.config else {
        let mut c = PlannedChange::new(Action::Delete);
        c.note = Some("the releases stay on the host; tend stops managing them".into());
        return Ok(c);
    };
    let generation_id = generation(root, required_str(config, "source")?)?;
    let mut after = Attributes::new();
    after.insert("path".into(), config.get("path").cloned().unwrap_or(Value::Null));
    after.insert("current".into(), Value::from(generation_id));
    let before = super::before_for(observed, &after);
    let action = super::converge_action(observed.is_some(), req.prior.is_some(), &before, &after);
    Ok(PlannedChange { before, after, ..PlannedChange::new(action) })
}

/// Point `current` at `generation_id`, atomically.
pub async fn switch(t: &dyn Transport, path: &str, generation_id: &str) -> Result<(), ProviderError> {
    let p = quote(path);
    let cmd = format!("ln -sfn releases/{g} {p}/.current.tmp && mv -Tf {p}/.current.tmp {p}/current", g = quote(generation_id));
    let out = t.exec(&cmd, None).await?;
    if out.status != 0 {
        return Err(ProviderError::terminal(format!("switching {path}/current to {generation_id} failed on host `{}`", t.host()))
            .with_hint(out.stderr.trim().to_string()));
    }
    Ok(())
}

/// Upload the generation aside (if new), switch, prune (never the generation switched from: a
/// failed health check switches back to it). The engine then runs [`health`], and [`revert`]
/// if it fails.
pub async fn apply(t: &dyn Transport, req: &ApplyRequest, root: &Path) -> Result<Option<Observed>, ProviderError> {
    if req.action == Action::Delete {
        return Ok(None);
    }
    let config = req.config.as_ref().ok_or_else(|| ProviderError::terminal("no config to apply"))?;
    let path = required_str(config, "path")?;
    let src = required_str(config, "source")?;
    let generation_id = generation(root, src)?;
    let previous = req.observed.as_ref().and_then(|o| get_str(&o.attributes, "current")).map(str::to_string);
    let existing = req.observed.as_ref().map(|o| super::get_strings(&o.attributes, "generations")).unwrap_or_default();
    if !existing.contains(&generation_id) {
        let tmp = format!("{path}/releases/{generation_id}.tmp");
        let _ = t.exec(&format!("rm -rf {}", quote(&tmp)), None).await?;
        // The whole tree in one stream (one write per file on a transport without streams).
        let writes: Vec<crate::transport::FileWrite> = files(root, src)?
            .into_iter()
            .map(|(rel, bytes)| crate::transport::FileWrite {
                path: format!("{tmp}/{rel}"),
                content: Some(bytes.into()),
                attrs: FileAttrs { mode: Some(0o644), ..FileAttrs::default() },
            })
            .collect();
        for result in t.write_files(&writes).await {
            result?;
        }
        let out = t.exec(&format!("mv -T {} {}", quote(&tmp), quote(&format!("{path}/releases/{generation_id}"))), None).await?;
        if out.status != 0 {
            return Err(ProviderError::terminal(format!("moving generation {generation_id} into place failed on host `{}`", t.host()))
                .with_hint(out.stderr.trim().to_string()));
        }
    }
    switch(t, path, &generation_id).await?;
    let keep = config.get("keep").and_then(Value::as_i64).unwrap_or(5).max(2);
    let prune = format!(
        "cd {p}/releases && ls -1t | grep -v '\\.tmp$' | tail -n +{} | while read -r g; do [ \"$g\" = {cur} ] || [ \"$g\" = {prev} ] || rm -rf -- \"$g\"; done; ls -1t",
        keep + 1,
        p = quote(path),
        cur = quote(&generation_id),
        prev = quote(previous.as_deref().unwrap_or_default()),
    );
    let out = t.exec(&prune, None).await?;
    // Generation ids are lowercase hex; `.tmp` marks an upload in progress.
    let gens: Vec<Value> = out.stdout.lines().filter(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_hexdigit())).map(Value::from).collect();
    let mut a = Attributes::new();
    a.insert("path".into(), Value::from(path));
    a.insert("current".into(), Value::from(generation_id));
    a.insert("generations".into(), Value::List(gens));
    Ok(Some(Observed { id: None, attributes: a }))
}

/// After a failed health check: switch back to `previous` and remove the failed generation
/// unless it was there before. Returns what exists afterwards and what was done.
pub async fn revert(t: &dyn Transport, applied: &Observed, previous: Option<&str>, existed: &[String]) -> Result<(Observed, String), ProviderError> {
    let path = get_str(&applied.attributes, "path").ok_or_else(|| ProviderError::terminal("no release path recorded"))?;
    let failed = get_str(&applied.attributes, "current").unwrap_or_default();
    let Some(previous) = previous.filter(|p| *p != failed) else {
        return Ok((applied.clone(), "there is no earlier generation to switch back to".into()));
    };
    switch(t, path, previous).await?;
    if !existed.iter().any(|g| g == failed) {
        let _ = t.exec(&format!("rm -rf {}", quote(&format!("{path}/releases/{failed}"))), None).await;
    }
    let out = t.exec(&observe_script(path), None).await?;
    let now = observed(&out.stdout, path).unwrap_or_else(|| applied.clone());
    Ok((now, format!("switched back to generation {previous}")))
}

/// `host.release`.
pub struct Release;

fn release_path(item: &tend_provider::ReadItem) -> Option<String> {
    item.config.as_ref().and_then(|c| get_str(c, "path")).or_else(|| item.prior.as_ref().and_then(|p| get_str(&p.attributes, "path"))).map(str::to_string)
}

#[async_trait]
impl super::HostKind for Release {
    fn name(&self) -> &'static str {
        "release"
    }
    fn schema(&self) -> KindSchema {
        schema()
    }
    fn exclusive(&self) -> bool {
        true
    }
    fn validate(&self, literal: &Attributes, cx: super::Cx<'_>) -> Vec<FieldError> {
        validate(literal, cx.config_root)
    }
    fn observe(&self, item: &tend_provider::ReadItem) -> super::Observe {
        super::Observe { script: release_path(item).map(|p| observe_script(&p)), ..super::Observe::default() }
    }
    async fn observed(&self, item: &tend_provider::ReadItem, seen: super::Seen<'_>, _t: &dyn Transport) -> Result<Option<Observed>, ProviderError> {
        Ok(seen.probed.zip(release_path(item)).and_then(|(o, p)| observed(o, &p)))
    }
    fn plan(&self, req: &PlanRequest, cx: super::Cx<'_>) -> Result<PlannedChange, ProviderError> {
        plan(req, cx.config_root)
    }
    async fn apply(&self, t: &dyn Transport, req: &ApplyRequest, cx: super::Cx<'_>) -> Result<Option<Observed>, ProviderError> {
        apply(t, req, cx.config_root).await
    }
    /// The release's `health` command, run in `PATH/current` over a new connection.
    async fn health(&self, req: &tend_provider::HealthRequest, fresh: super::Fresh<'_>) -> tend_provider::Health {
        let (Some(command), Some(path)) = (get_str(&req.config, "health"), get_str(&req.config, "path")) else { return tend_provider::Health::Ready };
        let id = get_str(&req.applied.attributes, "current").unwrap_or_default();
        let host = req.target.as_ref().map_or("", |t| &*t.addr.name);
        super::health_check(fresh().await, command, Some(&format!("{path}/current")), id, host).await
    }
    async fn revert(&self, t: &dyn Transport, req: &tend_provider::RevertRequest) -> Result<Option<(Observed, String)>, ProviderError> {
        let before = req.before.as_ref().map(|b| &b.attributes);
        let existed: Vec<String> = before.map(|b| super::get_strings(b, "generations")).unwrap_or_default();
        revert(t, &req.applied, before.and_then(|b| get_str(b, "current")), &existed).await.map(Some)
    }
}
