//! Config from Git: `--source URL [--ref REF]` resolves to one commit, checked out read-only,
//! and the workspace is loaded from that checkout (see `tend-source`).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

pub use tend_source::verify::{AllowedSigners, VerifyError};
pub use tend_source::{Credentials, GitSource, RefSpec, Resolved, SourceError, redact_url};

/// How to reach a source.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// Repository URL or path.
    pub url: String,
    /// `--ref`.
    pub reference: String,
    /// Cache directory (default [`default_cache_dir`]).
    pub cache: Option<PathBuf>,
    /// A file holding an https token (else `TEND_GIT_TOKEN`).
    pub token_file: Option<PathBuf>,
}

/// Load `--allowed-signers`, if given.
pub fn signers(file: Option<&Path>) -> Result<Option<AllowedSigners>, VerifyError> {
    file.map(AllowedSigners::load).transpose()
}

/// `$XDG_CACHE_HOME/tend/sources`, else `~/.cache/tend/sources`.
pub fn default_cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"))
        .join("tend/sources")
}

/// Open a source: parse the reference and gather credentials.
pub fn open(opts: &SourceOptions) -> Result<GitSource, SourceError> {
    let reference = RefSpec::parse(&opts.reference)?;
    let token = match &opts.token_file {
        Some(f) => Some(fs_err::read_to_string(f).map_err(|e| SourceError::Cache { path: f.clone(), source: Box::new(e) })?.trim().to_string()),
        None => std::env::var("TEND_GIT_TOKEN").ok().filter(|t| !t.is_empty()),
    };
    let url = if Path::new(&opts.url).is_dir() {
        // A local path: absolute, so the cache key does not depend on the working directory.
        fs_err::canonicalize(&opts.url).map_or_else(|_| opts.url.clone(), |p| p.to_string_lossy().into_owned())
    } else {
        opts.url.clone()
    };
    let cache = opts.cache.clone().unwrap_or_else(default_cache_dir);
    Ok(GitSource::new(&url, reference, &cache, Credentials { token, username: std::env::var("TEND_GIT_USERNAME").ok() }))
}

/// Why a source could not be used for a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Fetching or checking out failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The commit is not signed by an allowed signer: refused.
    #[error(transparent)]
    Refused(#[from] VerifyError),
}

/// Fetch (or, with `fetch = false`, use what was fetched last), verify the commit when
/// `signers` is given, and check it out: the commit and the directory holding its tree.
pub fn read(source: &GitSource, fetch: bool, signers: Option<&AllowedSigners>, interrupt: &AtomicBool) -> Result<(Resolved, PathBuf), ReadError> {
    let resolved = if fetch { source.fetch(interrupt)? } else { source.resolve_cached()? };
    if let Some(s) = signers {
        let (who, key) = source.verify(&resolved.commit, s)?;
        tracing::info!(commit = %resolved.commit, signer = %who, key = %key, "commit signature verified");
    }
    let dir = source.checkout(&resolved.commit, 5)?;
    Ok((resolved, dir))
}

/// The revision recorded in plans and history for a commit.
pub fn revision(resolved: &Resolved) -> String {
    format!("git:{}", resolved.commit)
}
