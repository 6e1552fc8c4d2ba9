//! The agent's HTTP listener: webhooks, health, readiness, metrics, status, suspend/resume.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Shared;

/// Which forge's signature scheme a webhook path expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    /// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
    GitHub,
    /// `X-Gitlab-Token: <the secret>`.
    GitLab,
    /// `X-Gitea-Signature` / `X-Forgejo-Signature`: `<hex HMAC-SHA256 of the body>`.
    Gitea,
    /// `X-Signature-256: sha256=<hex>` (or `X-Hub-Signature-256`).
    Generic,
}

impl Forge {
    fn name(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::GitLab => "gitlab",
            Self::Gitea => "gitea",
            Self::Generic => "generic",
        }
    }
}

fn hmac_ok(secret: &[u8], body: &[u8], hex_sig: &str) -> bool {
    let Ok(sig) = hex::decode(hex_sig.trim()) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return false };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a delivery carries a valid signature for `secret`.
pub fn verify(forge: Forge, secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match forge {
        Forge::GitHub => h("x-hub-signature-256").and_then(|s| s.strip_prefix("sha256=")).is_some_and(|s| hmac_ok(secret.as_bytes(), body, s)),
        Forge::GitLab => h("x-gitlab-token").is_some_and(|t| constant_time_eq(t.as_bytes(), secret.as_bytes())),
        Forge::Gitea => h("x-gitea-signature").or_else(|| h("x-forgejo-signature")).is_some_and(|s| hmac_ok(secret.as_bytes(), body, s)),
        Forge::Generic => h("x-signature-256")
            .or_else(|| h("x-hub-signature-256"))
            .and_then(|s| s.strip_prefix("sha256="))
            .is_some_and(|s| hmac_ok(secret.as_bytes(), body, s)),
    }
}

/// Whether a verified delivery is a push (pings and other events trigger nothing).
fn is_push(forge: Forge, headers: &HeaderMap) -> bool {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match forge {
        Forge::GitHub => h("x-github-event").is_none_or(|e| e == "push"),
        Forge::GitLab => h("x-gitlab-event").is_none_or(|e| e == "Push Hook" || e == "Tag Push Hook"),
        Forge::Gitea => h("x-gitea-event").or_else(|| h("x-forgejo-event")).is_none_or(|e| e == "push" || e == "create"),
        Forge::Generic => true,
    }
}

async fn hook(shared: &Shared, forge: Forge, headers: &HeaderMap, body: &[u8]) -> Response {
    let Some(secret) = shared.webhook_secret.as_deref() else {
        shared.status.lock().await.count_webhook(forge.name(), "no-secret");
        return (StatusCode::UNAUTHORIZED, "webhooks need a shared secret: start the agent with --webhook-secret or TEND_WEBHOOK_SECRET\n").into_response();
    };
    if !verify(forge, secret, headers, body) {
        tracing::warn!(forge = forge.name(), "webhook refused: missing or wrong signature");
        shared.status.lock().await.count_webhook(forge.name(), "unauthorized");
        return (StatusCode::UNAUTHORIZED, "missing or wrong signature\n").into_response();
    }
    if !is_push(forge, headers) {
        shared.status.lock().await.count_webhook(forge.name(), "ignored");
        return (StatusCode::OK, "not a push; nothing to do\n").into_response();
    }
    tracing::info!(forge = forge.name(), "webhook: push received, reconciling");
    shared.status.lock().await.count_webhook(forge.name(), "accepted");
    // One stored permit: a burst of pushes becomes one reconcile of the newest commit.
    shared.trigger.notify_one();
    (StatusCode::ACCEPTED, "reconcile requested\n").into_response()
}

async fn github(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    hook(&s, Forge::GitHub, &headers, &body).await
}
async fn gitlab(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    hook(&s, Forge::GitLab, &headers, &body).await
}
async fn gitea(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    hook(&s, Forge::Gitea, &headers, &body).await
}
async fn generic(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    hook(&s, Forge::Generic, &headers, &body).await
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready once a reconcile has succeeded and the last one did not fail to fetch.
async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    let st = s.status.lock().await;
    if st.last_success_at.is_some() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", st.last_error.as_ref().map_or("no successful reconcile yet", |e| e.message.as_str())))
            .into_response()
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let text = s.status.lock().await.prometheus();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn status(State(s): State<Arc<Shared>>) -> Response {
    let st = s.status.lock().await.clone();
    axum::Json(st).into_response()
}

/// The last plan as `tend plan` shows it: what the agent would change (in plan-only mode, or
/// while suspended). It may show what changes inside files, so it is for operators: the
/// agent's secret as a bearer token when one is set.
async fn plan(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !operator_ok(&s, &headers) {
        return (StatusCode::UNAUTHORIZED, "the plan needs the agent's secret as a bearer token\n").into_response();
    }
    match s.status.lock().await.plan_text.clone() {
        Some(text) => (StatusCode::OK, text).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no plan yet: the first reconcile has not planned\n").into_response(),
    }
}

/// Suspend and resume are operator actions: they need the webhook secret as a bearer token
/// when one is set (the listener may face the network for webhooks).
fn operator_ok(shared: &Shared, headers: &HeaderMap) -> bool {
    match shared.webhook_secret.as_deref() {
        None => true,
        Some(secret) => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| constant_time_eq(t.as_bytes(), secret.as_bytes())),
    }
}

async fn suspend(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !operator_ok(&s, &headers) {
        return (StatusCode::UNAUTHORIZED, "suspend needs the agent's secret as a bearer token\n").into_response();
    }
    s.status.lock().await.record_suspended(true);
    tracing::info!("suspended: nothing is applied until resumed");
    (StatusCode::OK, "suspended\n").into_response()
}

async fn resume(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !operator_ok(&s, &headers) {
        return (StatusCode::UNAUTHORIZED, "resume needs the agent's secret as a bearer token\n").into_response();
    }
    s.status.lock().await.record_suspended(false);
    tracing::info!("resumed");
    s.trigger.notify_one();
    (StatusCode::OK, "resumed\n").into_response()
}

/// The routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/hooks/github", post(github))
        .route("/hooks/gitlab", post(gitlab))
        .route("/hooks/gitea", post(gitea))
        .route("/hooks/generic", post(generic))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/plan", get(plan))
        .route("/suspend", post(suspend))
        .route("/resume", post(resume))
        .with_state(shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn signatures_are_checked_per_forge() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let mut h = HeaderMap::new();
        h.insert("x-hub-signature-256", format!("sha256={}", sign("s3cret", body)).parse().expect("header"));
        assert!(verify(Forge::GitHub, "s3cret", &h, body));
        assert!(verify(Forge::Generic, "s3cret", &h, body));
        assert!(!verify(Forge::GitHub, "other", &h, body));
        assert!(!verify(Forge::GitHub, "s3cret", &h, b"tampered"));
        assert!(!verify(Forge::Gitea, "s3cret", &h, body), "gitea reads its own header");
        let mut g = HeaderMap::new();
        g.insert("x-gitea-signature", sign("s3cret", body).parse().expect("header"));
        assert!(verify(Forge::Gitea, "s3cret", &g, body));
        let mut l = HeaderMap::new();
        l.insert("x-gitlab-token", "s3cret".parse().expect("header"));
        assert!(verify(Forge::GitLab, "s3cret", &l, body));
        assert!(!verify(Forge::GitLab, "s3cre", &l, body));
        assert!(!verify(Forge::GitHub, "s3cret", &HeaderMap::new(), body));
    }
}
