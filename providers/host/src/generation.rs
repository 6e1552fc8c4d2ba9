//! Host generations: on a host with `generations` set, its files (`host.file`, `host.template`)
//! form one content-addressed generation that is switched atomically, health-checked, and kept
//! for rollback.
//!
//! Layout under the generations root `R` (default `/var/lib/tend`):
//! - `R/blobs/<sha256>`: every content staged, written once (0600);
//! - `R/generations/<id>/<path>`: a generation's files with their modes and owners, plus
//!   `.tend-manifest` (`sha256 mode owner group path` per line); `<id>` hashes the manifest;
//! - `R/current`: a symlink to the generation in use, replaced atomically (symlink + rename);
//! - each managed path is a symlink to `R/current<path>`, so one rename switches every file.
//!
//! A file's apply only stages its content as a blob; the engine then commits the host once
//! (after all its staged files, before anything that depends on them): the new generation is
//! materialised aside, `current` is switched, links are made for new paths and removed for paths
//! that left, the host's `health` command runs over a fresh connection, and a failure switches
//! back. The newest `keep` generations stay, and blobs no kept generation uses are removed.

use sha2::{Digest, Sha256};
use tend_provider::{Attributes, FieldError, Observed, ProviderError, ResourceAddr, Value};

use crate::resources::{file, format_mode, get_str};
use crate::transport::{FileType, PathStat, Transport, quote};

/// Attributes a host's commits record on it.
pub const RECORDED: [&str; 2] = ["generation", "kept_generations"];

/// Default generations root.
pub const DEFAULT_ROOT: &str = "/var/lib/tend";
/// Default number of generations kept.
pub const DEFAULT_KEEP: i64 = 5;

/// A host's generation settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Root directory on the host.
    pub root: String,
    /// Generations kept.
    pub keep: i64,
    /// Command run after a switch; failing switches back.
    pub health: Option<String>,
}

/// The settings of a host (its config or recorded attributes), if it keeps generations.
pub fn settings(host: &Attributes) -> Option<Settings> {
    let (root, keep) = match host.get("generations")? {
        Value::Bool(true) => (DEFAULT_ROOT.to_string(), DEFAULT_KEEP),
        Value::Map(m) => (
            m.get("path").and_then(Value::as_str).unwrap_or(DEFAULT_ROOT).trim_end_matches('/').to_string(),
            m.get("keep").and_then(Value::as_i64).unwrap_or(DEFAULT_KEEP).max(2),
        ),
        _ => return None,
    };
    Some(Settings { root, keep, health: get_str(host, "health").map(str::to_string) })
}

/// Checks of a host's literal `generations` and `health`.
pub fn validate(literal: &Attributes, errors: &mut Vec<FieldError>) {
    match literal.get("generations") {
        None | Some(Value::Bool(_)) => {}
        Some(Value::Map(m)) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("path", Value::String(p)) if p.starts_with('/') => {}
                    ("path", _) => errors.push(
                        FieldError::field("generations", "`path` must be an absolute path on the host")
                            .with_hint("e.g. generations = { path = \"/var/lib/tend\" }"),
                    ),
                    ("keep", Value::Int(n)) if *n >= 2 => {}
                    ("keep", _) => errors.push(FieldError::field("generations", "`keep` must be a number of at least 2, so there is something to go back to")),
                    (other, _) => {
                        errors.push(FieldError::field("generations", format!("unknown setting `{other}`")).with_hint("generations takes `path` and `keep`"));
                    }
                }
            }
        }
        Some(other) => errors.push(
            FieldError::field("generations", format!("expected true or a table, found a {}", other.type_name()))
                .with_hint("generations = true, or generations = { path = \"/var/lib/tend\", keep = 5 }"),
        ),
    }
    let on = match literal.get("generations") {
        Some(Value::Bool(b)) => *b,
        Some(Value::Map(_)) => true,
        _ => false,
    };
    if literal.contains_key("health") && !on {
        errors.push(
            FieldError::field("health", "`health` needs `generations`: a failing check switches the host back to its previous generation")
                .with_hint("add generations = true to the host"),
        );
    }
}

/// Where the current generation keeps the file that `path` links to.
pub fn copy_path(s: &Settings, path: &str) -> String {
    format!("{}/current{path}", s.root)
}

/// Where a staged content lives.
pub fn blob_path(s: &Settings, sha256: &str) -> String {
    format!("{}/blobs/{sha256}", s.root)
}

/// Observed attributes of a file on a generations host: `live` is the managed path itself
/// (not followed), `copy` the file in the current generation.
pub fn observed(live: &PathStat, copy: &PathStat) -> Option<Observed> {
    let ft = live.file_type?;
    let mut o = match (ft, copy.file_type) {
        (FileType::Symlink, Some(FileType::File)) => {
            let mut o = file::observed(copy)?;
            o.attributes.insert("path".into(), Value::from(live.path.as_str()));
            o.attributes.insert("in_generation".into(), Value::Bool(true));
            return Some(o);
        }
        // A link whose generation lacks the file (after a rollback): its content is missing.
        (FileType::Symlink, _) => {
            let mut a = Attributes::new();
            a.insert("path".into(), Value::from(live.path.as_str()));
            Observed { id: None, attributes: a }
        }
        _ => file::observed(live)?,
    };
    o.attributes.insert("in_generation".into(), Value::Bool(false));
    Some(o)
}

/// One manifest line of a member, from its attributes; `None` when its content hash is not
/// readable here (a secret's hash, redacted in state): the current manifest has it.
fn manifest_line(attrs: &Attributes) -> Option<(String, String)> {
    let path = get_str(attrs, "path")?.to_string();
    let sha = attrs.get("sha256").map(Value::reveal).and_then(Value::as_str).filter(|s| s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()))?;
    let mode = get_str(attrs, "mode").map_or_else(|| format_mode(0o644), str::to_string);
    let owner = get_str(attrs, "owner").unwrap_or("-");
    let group = get_str(attrs, "group").unwrap_or("-");
    Some((path.clone(), format!("{sha} {mode} {owner} {group} {path}")))
}

fn fail(t: &dyn Transport, what: &str, stderr: &str) -> ProviderError {
    ProviderError::terminal(format!("{what} failed on host `{}`", t.host())).with_hint(stderr.trim().to_string())
}

/// Shell function `switch_to NEW OLD`: point `current` at generation NEW, link every path of
/// NEW's manifest, unlink paths of OLD's manifest that NEW lacks (only links tend made).
const SWITCH_FN: &str = r#"switch_to() {
  ln -sfn "generations/$1" .current.tmp && mv -Tf .current.tmp current
  cut -d' ' -f5- "generations/$1/.tend-manifest" > .paths.tmp
  while IFS= read -r p; do
    l="$R/current$p"
    if [ "$(readlink "$p" 2>/dev/null)" != "$l" ]; then
      mkdir -p "$(dirname "$p")" && ln -sfn "$l" "$p.tend-tmp" && mv -Tf "$p.tend-tmp" "$p"
    fi
  done < .paths.tmp
  if [ -n "$2" ] && [ -f "generations/$2/.tend-manifest" ]; then
    cut -d' ' -f5- "generations/$2/.tend-manifest" | while IFS= read -r p; do
      if ! grep -qxF -- "$p" .paths.tmp && [ "$(readlink "$p" 2>/dev/null)" = "$R/current$p" ]; then rm -f "$p"; fi
    done
  fi
  rm -f .paths.tmp
}
"#;

/// What a host's generations directory holds now: (current, kept newest first).
pub async fn list(t: &dyn Transport, s: &Settings) -> Result<(Option<String>, Vec<String>), ProviderError> {
    let r = quote(&s.root);
    let out = t
        .exec(
            &format!(
                "cur=$(readlink {r}/current 2>/dev/null || true); echo \"current=${{cur##*/}}\"; ls -1t {r}/generations 2>/dev/null | grep -v '\\.tmp$'; exit 0"
            ),
            None,
        )
        .await?;
    let current = out.stdout.lines().find_map(|l| l.strip_prefix("current=")).filter(|c| !c.is_empty()).map(str::to_string);
    let gens = out.stdout.lines().filter(|l| !l.starts_with("current=") && !l.is_empty()).map(str::to_string).collect();
    Ok((current, gens))
}

/// The attributes recorded on the host.
pub fn record(current: Option<&str>, kept: &[String]) -> Attributes {
    let mut a = Attributes::new();
    a.insert("generation".into(), current.map_or(Value::Null, Value::from));
    a.insert("kept_generations".into(), Value::List(kept.iter().map(|g| Value::from(g.as_str())).collect()));
    a
}

/// After a failed health check of generation `id`: switch back to `previous` (what the host's
/// record held before the commit) and remove `id` unless it was kept before. Returns the
/// attributes to record and what was done.
pub async fn revert(t: &dyn Transport, s: &Settings, id: &str, previous: Option<&str>, kept_before: &[String]) -> Result<(Attributes, String), ProviderError> {
    let Some(previous) = previous.filter(|p| *p != id) else {
        let (current, kept) = list(t, s).await?;
        return Ok((record(current.as_deref(), &kept), "there is no earlier generation to switch back to".into()));
    };
    let created = !kept_before.iter().any(|g| g == id);
    let undo = format!(
        "set -e\nR={r}\ncd \"$R\"\n{SWITCH_FN}switch_to {p} {i}\n{rm}",
        r = quote(&s.root),
        p = quote(previous),
        i = quote(id),
        rm = if created { format!("rm -rf generations/{}\n", quote(id)) } else { String::new() }
    );
    let undone = t.exec(&undo, None).await?;
    if undone.status != 0 {
        return Err(fail(t, &format!("switching back to generation {previous}"), &undone.stderr));
    }
    let (current, kept) = list(t, s).await?;
    Ok((record(current.as_deref(), &kept), format!("switched back to generation {previous}")))
}

/// Switch a host to generation `to` by hand (rollback); returns the attributes to record.
pub async fn switch(t: &dyn Transport, s: &Settings, to: &str) -> Result<Attributes, ProviderError> {
    let (current, _) = list(t, s).await?;
    let script = format!(
        "set -e\nR={r}\ncd \"$R\"\n{SWITCH_FN}switch_to {to} {from}\n",
        r = quote(&s.root),
        to = quote(to),
        from = quote(current.as_deref().unwrap_or_default())
    );
    let out = t.exec(&script, None).await?;
    if out.status != 0 {
        return Err(fail(t, &format!("switching to generation {to}"), &out.stderr));
    }
    let (current, kept) = list(t, s).await?;
    Ok(record(current.as_deref(), &kept))
}

/// Commit a host's files as a new generation: materialise, switch, prune (never the generation
/// switched from: a failed health check switches back to it). Returns the attributes to record
/// on the host. The engine then runs [`health`], and [`revert`] if it fails.
pub async fn commit(t: &dyn Transport, s: &Settings, members: &[(ResourceAddr, Attributes)]) -> Result<Attributes, ProviderError> {
    let r = quote(&s.root);
    // Entries whose hash is not readable here come from the current generation's manifest.
    let mut lines: Vec<(String, String)> = Vec::with_capacity(members.len());
    let mut missing = Vec::new();
    for (addr, attrs) in members {
        match manifest_line(attrs) {
            Some(l) => lines.push(l),
            None => missing.push((addr, get_str(attrs, "path").map(str::to_string))),
        }
    }
    if !missing.is_empty() {
        let current = t.read_file(&format!("{}/current/.tend-manifest", s.root)).await?.unwrap_or_default();
        let current = String::from_utf8_lossy(&current);
        for (addr, path) in missing {
            let found = path.as_deref().and_then(|p| current.lines().find(|l| l.splitn(5, ' ').nth(4) == Some(p)));
            let Some(line) = found else {
                return Err(ProviderError::terminal(format!("the content of `{addr}` is not known to build host `{}`'s next generation", t.host()))
                    .with_hint("run `tend apply` again: the file will be staged anew"));
            };
            lines.push((path.unwrap_or_default(), line.to_string()));
        }
    }
    lines.sort();
    let manifest = lines.iter().fold(String::new(), |mut m, (_, l)| {
        m.push_str(l);
        m.push('\n');
        m
    });
    let id = hex::encode(Sha256::digest(manifest.as_bytes()))[..16].to_string();
    if manifest.lines().any(|l| l.contains("TEND_MANIFEST_END")) {
        return Err(ProviderError::terminal("a managed path contains `TEND_MANIFEST_END`, which tend reserves"));
    }
    let script = format!(
        r#"set -e
R={r}; id={id}
mkdir -p "$R/generations" "$R/blobs"
cd "$R"
prev=$(readlink current 2>/dev/null || true); prev=${{prev##*/}}
if [ ! -d "generations/$id" ]; then
  rm -rf "generations/$id.tmp"; mkdir -p "generations/$id.tmp"
  cat > "generations/$id.tmp/.tend-manifest" <<'TEND_MANIFEST_END'
{manifest}TEND_MANIFEST_END
  while IFS=' ' read -r sha mode owner group p; do
    d="generations/$id.tmp$p"
    mkdir -p "$(dirname "$d")"
    cp "blobs/$sha" "$d"
    chmod "$mode" "$d"
    if [ "$owner" != - ]; then chown "$owner" "$d"; fi
    if [ "$group" != - ]; then chgrp "$group" "$d"; fi
  done < "generations/$id.tmp/.tend-manifest"
  mv -T "generations/$id.tmp" "generations/$id"
fi
touch "generations/$id"
{SWITCH_FN}switch_to "$id" "$prev"
echo "prev=$prev"
"#
    );
    let out = t.exec(&script, None).await?;
    if out.status != 0 {
        return Err(fail(t, &format!("building generation {id}"), &out.stderr));
    }
    let prev = out.stdout.lines().find_map(|l| l.strip_prefix("prev=")).filter(|p| !p.is_empty() && *p != id).unwrap_or_default().to_string();
    let prune = format!(
        r#"R={r}; cd "$R/generations" && ls -1t | grep -v '\.tmp$' | tail -n +{skip} | while read -r g; do [ "$g" = {id} ] || [ "$g" = {prev} ] || rm -rf -- "$g"; done
cd "$R" && cat generations/*/.tend-manifest | cut -d' ' -f1 | sort -u > .keep.tmp && ls -1 blobs | grep -vxFf .keep.tmp | while read -r b; do rm -f "blobs/$b"; done; rm -f .keep.tmp; exit 0"#,
        skip = s.keep + 1,
        prev = quote(&prev),
    );
    let _ = t.exec(&prune, None).await?;
    let (current, kept) = list(t, s).await?;
    Ok(record(current.as_deref(), &kept))
}
