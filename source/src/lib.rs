//! `tend-source`: the desired state comes from Git.
//!
//! A [`GitSource`] keeps one bare repository per URL in a cache directory and fetches into it
//! incrementally (only new objects travel). A reference — branch, tag, commit or a semver range
//! over tags ([`RefSpec`]) — resolves to one exact commit, which is checked out into its own
//! read-only directory named by the commit (`checkouts/<commit>`): every reconcile reads one
//! immutable tree, never a working copy that moves underneath it.
//!
//! Transports are gix's: https in process (a token from [`Credentials`] is offered as the
//! password), `ssh://` and `user@host:path` through the system `ssh` client (keys, agent,
//! `~/.ssh/config`, `known_hosts`), `git://`, and local paths. Credentials never appear in
//! errors or logs: URLs are shown without their user-info part.
//!
//! Everything here blocks; call it from `spawn_blocking` in async code.

mod checkout;
mod refspec;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

pub use refspec::RefSpec;
use sha2::{Digest, Sha256};

/// Why a source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The reference is malformed.
    #[error("`{0}` is not a reference tend understands")]
    BadRef(String),
    /// Fetching failed (network, authentication, repository missing).
    #[error("fetching {url} failed")]
    Fetch {
        /// The URL, without credentials.
        url: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The reference does not exist in the repository.
    #[error("{url} has no {what}")]
    NotFound {
        /// The URL, without credentials.
        url: String,
        /// What was looked for, e.g. "branch `main`".
        what: String,
        /// What it does have, for the hint.
        available: Vec<String>,
    },
    /// The local cache could not be used.
    #[error("the source cache {} could not be used", path.display())]
    Cache {
        /// The cache path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl SourceError {
    /// A hint for people, if there is one.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::BadRef(_) => Some("use a branch or tag name, a full 40-hex commit id, `branch:NAME`, `tag:NAME`, `commit:ID` or `semver:RANGE` (e.g. `semver:>=1.2, <2`)".into()),
            Self::NotFound { available, .. } if !available.is_empty() => Some(format!("it has: {}", available.join(", "))),
            Self::Fetch { .. } => Some("check the URL and that this machine can reach it; https tokens come from TEND_GIT_TOKEN or --git-token-file, ssh keys from ssh-agent and ~/.ssh".into()),
            _ => None,
        }
    }
}

/// Credentials for https remotes.
#[derive(Clone, Default)]
pub struct Credentials {
    /// A token (GitHub, GitLab, Gitea personal access or deploy token), sent as the password.
    pub token: Option<String>,
    /// The user name sent with it (default `git`; GitLab wants `oauth2` for OAuth tokens).
    pub username: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("token", &self.token.as_ref().map(|_| "(redacted)")).field("username", &self.username).finish()
    }
}

/// What a fetch resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The exact commit, 40 hex.
    pub commit: String,
    /// The full reference it came from (`refs/heads/main`, `refs/tags/v1.2.0`), or the commit.
    pub reference: String,
}

/// One Git repository read through a local cache.
#[derive(Debug, Clone)]
pub struct GitSource {
    url: String,
    reference: RefSpec,
    dir: PathBuf,
    credentials: Credentials,
}

/// The URL without a `user:password@` part.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            match authority.rsplit_once('@') {
                Some((userinfo, host)) if userinfo.contains(':') => format!("{scheme}://{}:***@{host}/{path}", userinfo.split(':').next().unwrap_or_default()),
                _ => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

impl GitSource {
    /// A source for `url` at `reference`, cached under `cache_root` (one directory per URL).
    pub fn new(url: &str, reference: RefSpec, cache_root: &Path, credentials: Credentials) -> Self {
        let key = hex::encode(Sha256::digest(url.as_bytes()));
        Self { url: url.to_string(), reference, dir: cache_root.join(&key[..16]), credentials }
    }

    /// The URL as it may be shown.
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }

    /// The reference followed.
    pub fn reference(&self) -> &RefSpec {
        &self.reference
    }

    fn cache_err(&self, e: impl std::error::Error + Send + Sync + 'static) -> SourceError {
        SourceError::Cache { path: self.dir.clone(), source: Box::new(e) }
    }

    fn fetch_err(&self, e: impl std::error::Error + Send + Sync + 'static) -> SourceError {
        SourceError::Fetch { url: self.display_url(), source: Box::new(e) }
    }

    fn repo(&self) -> Result<gix::Repository, SourceError> {
        let path = self.dir.join("repo.git");
        // Not isolated: git's own configuration and environment apply as they would to `git
        // fetch` (GIT_SSH_COMMAND / core.sshCommand, url.<base>.insteadOf, http.proxy).
        let opts = gix::open::Options::default();
        if path.join("HEAD").exists() {
            return gix::open_opts(&path, opts).map_err(|e| self.cache_err(e));
        }
        fs_err::create_dir_all(&self.dir).map_err(|e| self.cache_err(e))?;
        gix::init_bare(&path).map_err(|e| self.cache_err(e))?;
        gix::open_opts(&path, opts).map_err(|e| self.cache_err(e))
    }

    /// Fetch what is new (branches into `refs/remotes/origin/*`, tags into `refs/tags/*`, both
    /// forced so a force-push is followed) and resolve the reference to one commit.
    pub fn fetch(&self, interrupt: &AtomicBool) -> Result<Resolved, SourceError> {
        let repo = self.repo()?;
        let remote = repo
            .remote_at(self.url.as_str())
            .map_err(|e| self.fetch_err(e))?
            .with_refspecs(["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"], gix::remote::Direction::Fetch)
            .map_err(|e| self.fetch_err(e))?;
        let connection = remote.connect(gix::remote::Direction::Fetch).map_err(|e| self.fetch_err(e))?;
        let creds = self.credentials.clone();
        let connection = connection.with_credentials(move |action| {
            use gix::credentials::helper::Action;
            match action {
                Action::Get(ctx) => {
                    let Some(token) = creds.token.clone() else { return Ok(None) };
                    Ok(Some(gix::credentials::protocol::Outcome {
                        identity: gix::sec::identity::Account {
                            username: creds.username.clone().unwrap_or_else(|| "git".into()),
                            password: token,
                            oauth_refresh_token: None,
                        },
                        next: gix::credentials::helper::NextAction::from(ctx),
                    }))
                }
                Action::Store(_) | Action::Erase(_) => Ok(None),
            }
        });
        let started = std::time::Instant::now();
        let outcome = connection
            .prepare_fetch(gix::progress::Discard, gix::remote::ref_map::Options::default())
            .map_err(|e| self.fetch_err(e))?
            .receive(gix::progress::Discard, interrupt)
            .map_err(|e| self.fetch_err(e))?;
        tracing::debug!(url = %self.display_url(), duration_ms = started.elapsed().as_millis(), status = ?std::mem::discriminant(&outcome.status), "fetched");
        self.resolve(&repo)
    }

    /// Resolve the reference against what was fetched last (no network).
    pub fn resolve_cached(&self) -> Result<Resolved, SourceError> {
        let repo = self.repo()?;
        self.resolve(&repo)
    }

    fn resolve(&self, repo: &gix::Repository) -> Result<Resolved, SourceError> {
        refspec::resolve(repo, &self.reference, &self.display_url())
    }

    /// Check `commit` out into `checkouts/<commit>` (once; read-only afterwards) and return the
    /// directory. Older checkouts beyond the newest `keep` are removed.
    pub fn checkout(&self, commit: &str, keep: usize) -> Result<PathBuf, SourceError> {
        let repo = self.repo()?;
        checkout::checkout(&repo, &self.dir.join("checkouts"), commit, keep).map_err(|source| SourceError::Cache { path: self.dir.clone(), source })
    }

    /// Verify `commit`'s SSH signature against `signers`; returns who signed it.
    pub fn verify(&self, commit: &str, signers: &verify::AllowedSigners) -> Result<(String, String), verify::VerifyError> {
        let raw = self.commit_object(commit).map_err(|e| verify::VerifyError::BadSignature { commit: commit.to_string(), why: e.to_string() })?;
        signers.verify_commit(commit, &raw)
    }

    /// The raw commit object (headers, signature, message) of `commit`, for verification.
    pub fn commit_object(&self, commit: &str) -> Result<Vec<u8>, SourceError> {
        let repo = self.repo()?;
        let id = gix::ObjectId::from_hex(commit.as_bytes()).map_err(|e| self.cache_err(e))?;
        let object = repo.find_object(id).map_err(|e| self.cache_err(e))?;
        Ok(object.data.clone())
    }
}
