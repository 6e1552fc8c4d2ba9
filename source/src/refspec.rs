//! What `--ref` names, and how it resolves to one commit.

use crate::{Resolved, SourceError};

/// A reference to follow.
#[derive(Debug, Clone, PartialEq)]
pub enum RefSpec {
    /// The branch `main`, else `master`.
    Default,
    /// A branch.
    Branch(String),
    /// A tag.
    Tag(String),
    /// A branch, else a tag, of this name.
    Name(String),
    /// One commit (full or abbreviated hex id).
    Commit(String),
    /// The highest tag whose name (without a leading `v`) is a version matching the range.
    Semver(semver::VersionReq),
}

impl std::fmt::Display for RefSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Default => write!(f, "the default branch"),
            Self::Branch(b) => write!(f, "branch `{b}`"),
            Self::Tag(t) => write!(f, "tag `{t}`"),
            Self::Name(n) => write!(f, "branch or tag `{n}`"),
            Self::Commit(c) => write!(f, "commit `{c}`"),
            Self::Semver(r) => write!(f, "tag matching `{r}`"),
        }
    }
}

impl RefSpec {
    /// Parse `--ref`: `main`, `v1.2.0`, a 40-hex commit, or `branch:`/`tag:`/`commit:`/`semver:`
    /// followed by the value.
    pub fn parse(s: &str) -> Result<Self, SourceError> {
        let s = s.trim();
        let bad = || SourceError::BadRef(s.to_string());
        let name_ok = |n: &str| !n.is_empty() && !n.contains("..") && !n.starts_with('-') && !n.contains(char::is_whitespace);
        let hex_ok = |c: &str| c.len() >= 7 && c.len() <= 40 && c.chars().all(|ch| ch.is_ascii_hexdigit());
        if s.is_empty() {
            return Ok(Self::Default);
        }
        if let Some((kind, value)) = s.split_once(':') {
            let value = value.trim();
            return match kind {
                "branch" if name_ok(value) => Ok(Self::Branch(value.to_string())),
                "tag" if name_ok(value) => Ok(Self::Tag(value.to_string())),
                "commit" if hex_ok(value) => Ok(Self::Commit(value.to_lowercase())),
                "semver" => semver::VersionReq::parse(value).map(Self::Semver).map_err(|_| bad()),
                _ => Err(bad()),
            };
        }
        if s.len() == 40 && hex_ok(s) {
            return Ok(Self::Commit(s.to_lowercase()));
        }
        if name_ok(s) { Ok(Self::Name(s.to_string())) } else { Err(bad()) }
    }
}

fn peel(repo: &gix::Repository, name: &str) -> Option<String> {
    let mut r = repo.find_reference(name).ok()?;
    let id = r.peel_to_id().ok()?;
    let commit = repo.find_object(id).ok()?.peel_to_commit().ok()?;
    Some(commit.id.to_string())
}

fn names(repo: &gix::Repository, prefix: &str) -> Vec<String> {
    let Ok(platform) = repo.references() else { return Vec::new() };
    let Ok(iter) = platform.prefixed(prefix) else { return Vec::new() };
    let mut out: Vec<String> = iter.flatten().map(|r| r.name().as_bstr().to_string().trim_start_matches(prefix).to_string()).collect();
    out.sort();
    out
}

/// Resolve against the cached repository.
pub fn resolve(repo: &gix::Repository, spec: &RefSpec, url: &str) -> Result<Resolved, SourceError> {
    let branch = |b: &str| peel(repo, &format!("refs/remotes/origin/{b}")).map(|c| Resolved { commit: c, reference: format!("refs/heads/{b}") });
    let tag = |t: &str| peel(repo, &format!("refs/tags/{t}")).map(|c| Resolved { commit: c, reference: format!("refs/tags/{t}") });
    let not_found = |available: Vec<String>| SourceError::NotFound { url: url.to_string(), what: spec.to_string(), available };
    let branches = || names(repo, "refs/remotes/origin/").into_iter().map(|b| format!("branch {b}")).collect::<Vec<_>>();
    let tags = || names(repo, "refs/tags/").into_iter().map(|t| format!("tag {t}")).collect::<Vec<_>>();
    match spec {
        RefSpec::Default => branch("main").or_else(|| branch("master")).ok_or_else(|| not_found(branches())),
        RefSpec::Branch(b) => branch(b).ok_or_else(|| not_found(branches())),
        RefSpec::Tag(t) => tag(t).ok_or_else(|| not_found(tags())),
        RefSpec::Name(n) => branch(n).or_else(|| tag(n)).ok_or_else(|| not_found([branches(), tags()].concat())),
        RefSpec::Commit(c) => {
            let found = repo
                .rev_parse_single(c.as_str())
                .ok()
                .and_then(|id| repo.find_object(id).ok())
                .and_then(|o| o.peel_to_commit().ok())
                .map(|commit| commit.id.to_string());
            found.map(|commit| Resolved { reference: commit.clone(), commit }).ok_or_else(|| not_found(Vec::new()))
        }
        RefSpec::Semver(req) => {
            let best = names(repo, "refs/tags/")
                .into_iter()
                .filter_map(|t| semver::Version::parse(t.strip_prefix('v').unwrap_or(&t)).ok().map(|v| (v, t)))
                .filter(|(v, _)| req.matches(v))
                .max_by(|a, b| a.0.cmp(&b.0));
            best.and_then(|(_, t)| tag(&t)).ok_or_else(|| not_found(tags()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(RefSpec::parse("").unwrap(), RefSpec::Default);
        assert_eq!(RefSpec::parse("main").unwrap(), RefSpec::Name("main".into()));
        assert_eq!(RefSpec::parse("branch:release/1.x").unwrap(), RefSpec::Branch("release/1.x".into()));
        assert_eq!(RefSpec::parse("tag:v1.2.0").unwrap(), RefSpec::Tag("v1.2.0".into()));
        let c = "0123456789abcdef0123456789ABCDEF01234567";
        assert_eq!(RefSpec::parse(c).unwrap(), RefSpec::Commit(c.to_lowercase()));
        assert_eq!(RefSpec::parse("commit:abc1234").unwrap(), RefSpec::Commit("abc1234".into()));
        assert!(matches!(RefSpec::parse("semver:>=1.2, <2").unwrap(), RefSpec::Semver(_)));
        for bad in ["semver:not a range", "commit:xyz", "branch:", "a..b", "wat:x", "-rf"] {
            assert!(matches!(RefSpec::parse(bad), Err(SourceError::BadRef(_))), "{bad}");
        }
    }
}
