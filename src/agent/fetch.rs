//! Where a reconcile's config comes from: a fresh fetch of the Git source (verified, checked
//! out read-only), the last commit applied (drift between fetches), or a local directory.

use std::path::PathBuf;
use std::sync::Arc;

use super::reconcile::Failure;
use super::{AgentOptions, Origin, Shared};

/// The config directory and revision of this reconcile.
#[cfg_attr(not(feature = "git"), allow(unused_variables))]
pub(crate) async fn materialise(opts: &AgentOptions, shared: &Arc<Shared>, fetch: bool) -> Result<(PathBuf, Option<String>), Failure> {
    match &opts.origin {
        Origin::Directory(d) => Ok((d.clone(), None)),
        #[cfg(feature = "git")]
        Origin::Git { source, subdir } => {
            let source = source.clone();
            let cancel = shared.cancel.clone();
            let signers = opts.signers.clone();
            // Between fetches, drift is corrected against the last commit applied, never
            // against something fetched but not (yet) accepted.
            let last_good = if fetch { None } else { shared.status.lock().await.last_applied_commit.clone() };
            let fetched = tokio::task::spawn_blocking(move || {
                if let Some(commit) = last_good {
                    let dir = source.checkout(&commit, 5)?;
                    return Ok((crate::source::Resolved { reference: commit.clone(), commit }, dir));
                }
                crate::source::read(&source, fetch, signers.as_ref(), &cancel)
            })
            .await
            .expect("fetch does not panic");
            match fetched {
                Ok((resolved, dir)) => {
                    tracing::Span::current().record("commit", resolved.commit.as_str());
                    let mut st = shared.status.lock().await;
                    if st.source_commit.as_deref() != Some(&resolved.commit) {
                        tracing::info!(commit = %resolved.commit, reference = %resolved.reference, "new commit");
                    }
                    st.record_commit(&resolved.commit);
                    Ok((dir.join(subdir), Some(crate::source::revision(&resolved))))
                }
                Err(crate::source::ReadError::Refused(e)) => {
                    let kept = shared.status.lock().await.last_applied_commit.clone();
                    tracing::error!("refused: {e}");
                    Err(("refused", format!("refused: {e}{}", kept.map(|c| format!(" (staying on the last good commit {c})")).unwrap_or_default())))
                }
                Err(crate::source::ReadError::Source(e)) => {
                    let mut msg = e.to_string();
                    let mut cause = std::error::Error::source(&e);
                    while let Some(c) = cause {
                        msg.push_str(&format!(": {c}"));
                        cause = c.source();
                    }
                    let kept = shared.status.lock().await.last_applied_commit.clone();
                    let msg = match kept {
                        Some(c) => format!("{msg} (staying on the last good commit {c})"),
                        None => msg,
                    };
                    Err(("fetch-failed", msg))
                }
            }
        }
    }
}
