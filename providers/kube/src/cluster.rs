//! Reaching a cluster: its client, built once per run from the `kube.cluster` resource's values,
//! and what the cluster serves (discovery), asked once and again only for a kind it did not serve.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};
use serde_json::json;
use tend_provider::{Attributes, ErrorKind, ProviderError, Target, Value};
use tokio::sync::Mutex;

/// The fields of a `kube.cluster` that say how to reach it.
pub(crate) const CONNECTION: &[&str] = &["kubeconfig", "context", "server", "ca", "token", "client_certificate", "client_key", "insecure", "in_cluster"];

/// One reachable cluster.
pub(crate) struct Conn {
    pub client: Client,
    /// How messages name it: `kube.cluster.prod (context prod-admin)`.
    pub shown: String,
    discovery: Mutex<Option<Arc<Discovery>>>,
    /// Bounds the writes sent at once (`parallelism`).
    writes: tokio::sync::Semaphore,
}

/// Writes sent to one cluster at once unless its `parallelism` says otherwise.
const PARALLELISM: usize = 10;

/// The clients of one run, by the cluster's connection values.
#[derive(Default)]
pub(crate) struct Clusters {
    conns: Mutex<HashMap<String, Arc<Conn>>>,
    /// The last connection made to each cluster, by its address.
    by_addr: Mutex<HashMap<String, Arc<Conn>>>,
}

fn text<'a>(a: &'a Attributes, k: &str) -> Option<&'a str> {
    a.get(k).map(Value::reveal).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Whether every value that says how to reach the cluster is known (it may come from something
/// not applied yet: a VM's address).
pub(crate) fn settled(target: &Target) -> bool {
    CONNECTION.iter().all(|k| target.attributes.get(k).is_none_or(Value::is_known))
}

impl Clusters {
    /// The connection to the cluster `target` is, made once per run.
    pub async fn get(&self, target: &Target, root: &Path) -> Result<Arc<Conn>, ProviderError> {
        use sha2::Digest;
        let a = &target.attributes;
        let mut h = sha2::Sha256::new();
        h.update(target.addr.to_string());
        for k in CONNECTION {
            h.update([0]);
            h.update(a.get(k).map(|v| v.to_json_revealed().to_string()).unwrap_or_default());
        }
        let id = hex::encode(h.finalize());
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(&id) {
            return Ok(c.clone());
        }
        let c = Arc::new(connect(target, root).await?);
        conns.insert(id, c.clone());
        self.by_addr.lock().await.insert(target.addr.to_string(), c.clone());
        Ok(c)
    }

    /// The connection this run made to the cluster at `addr`, if it made one.
    pub async fn made(&self, addr: &str) -> Option<Arc<Conn>> {
        self.by_addr.lock().await.get(addr).cloned()
    }
}

async fn connect(target: &Target, root: &Path) -> Result<Conn, ProviderError> {
    let a = &target.attributes;
    let context = text(a, "context");
    let shown = match context {
        Some(c) => format!("{} (context {c})", target.addr),
        None => target.addr.to_string(),
    };
    let fail = |what: String| ProviderError::terminal(format!("cluster {shown}: {what}"));
    let mut config = if a.get("in_cluster").and_then(Value::as_bool) == Some(true) {
        kube::Config::incluster().map_err(|e| fail(format!("in-cluster configuration: {e}")))?
    } else if let Some(server) = text(a, "server") {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let mut cluster = json!({ "server": server });
        if let Some(ca) = text(a, "ca") {
            cluster["certificate-authority-data"] = json!(b64(ca));
        }
        if a.get("insecure").and_then(Value::as_bool) == Some(true) {
            cluster["insecure-skip-tls-verify"] = json!(true);
        }
        let mut user = json!({});
        if let Some(t) = text(a, "token") {
            user["token"] = json!(t);
        }
        if let Some(c) = text(a, "client_certificate") {
            user["client-certificate-data"] = json!(b64(c));
        }
        if let Some(k) = text(a, "client_key") {
            user["client-key-data"] = json!(b64(k));
        }
        let kc = json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "tend",
            "clusters": [{ "name": "tend", "cluster": cluster }],
            "users": [{ "name": "tend", "user": user }],
            "contexts": [{ "name": "tend", "context": { "cluster": "tend", "user": "tend" } }],
        });
        let kc: Kubeconfig = serde_json::from_value(kc).map_err(|e| fail(format!("bad connection settings: {e}")))?;
        kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.map_err(|e| fail(e.to_string()))?
    } else {
        let kc = match text(a, "kubeconfig") {
            Some(p) => {
                let path = expand_home(p, root);
                Kubeconfig::read_from(&path).map_err(|e| fail(format!("cannot read kubeconfig {}: {e}", path.display())))?
            }
            None => Kubeconfig::read().map_err(|e| {
                fail(format!("no kubeconfig: {e}")).with_hint("set `kubeconfig` (and `context`), or `server` and `token`, on the cluster, or KUBECONFIG")
            })?,
        };
        if let Some(c) = context
            && !kc.contexts.iter().any(|x| x.name == c)
        {
            let names: Vec<&str> = kc.contexts.iter().map(|x| x.name.as_str()).collect();
            return Err(fail(format!("the kubeconfig has no context `{c}`")).with_hint(format!("contexts: {}", names.join(", "))));
        }
        let opts = KubeConfigOptions { context: context.map(str::to_string), ..KubeConfigOptions::default() };
        kube::Config::from_custom_kubeconfig(kc, &opts).await.map_err(|e| fail(e.to_string()))?
    };
    config.connect_timeout = Some(std::time::Duration::from_secs(10));
    config.read_timeout = Some(std::time::Duration::from_mins(1));
    let client = Client::try_from(config).map_err(|e| fail(format!("cannot make a client: {e}")))?;
    let parallelism = a.get("parallelism").and_then(Value::as_i64).and_then(|n| usize::try_from(n).ok()).filter(|n| *n > 0).unwrap_or(PARALLELISM);
    Ok(Conn { client, shown, discovery: Mutex::new(None), writes: tokio::sync::Semaphore::new(parallelism) })
}

/// `~/x` under the home directory; a relative path under the config root.
fn expand_home(p: &str, root: &Path) -> std::path::PathBuf {
    if let Some(rest) = p.strip_prefix("~/")
        && let Some(home) = std::env::var_os("HOME")
    {
        return Path::new(&home).join(rest);
    }
    root.join(p)
}

impl Conn {
    /// Leave to send one write: at most `parallelism` at once.
    pub async fn permit(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.writes.acquire().await.expect("the semaphore is never closed")
    }

    /// What the cluster serves; asked once, and again when `refresh` (a kind was not found,
    /// perhaps because its definition was applied since).
    pub async fn discovery(&self, refresh: bool) -> Result<Arc<Discovery>, ProviderError> {
        let mut d = self.discovery.lock().await;
        if refresh || d.is_none() {
            let found = retried(|| Discovery::new(self.client.clone()).run()).await.map_err(|e| self.error(&e, "discovery"))?;
            *d = Some(Arc::new(found));
        }
        Ok(d.clone().expect("set above"))
    }

    /// The API resource serving `api_version`/`kind`: `None` when the cluster does not serve it.
    pub async fn resolve(&self, api_version: &str, kind: &str, refresh: bool) -> Result<Option<(ApiResource, ApiCapabilities)>, ProviderError> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        let d = self.discovery(refresh).await?;
        Ok(d.resolve_gvk(&gvk))
    }

    /// The kinds the cluster serves, for did-you-mean.
    pub async fn kinds(&self) -> Vec<String> {
        let Ok(d) = self.discovery(false).await else { return Vec::new() };
        d.groups().flat_map(|g| g.recommended_resources().into_iter().map(|(r, _)| format!("{}/{}", r.api_version, r.kind))).collect()
    }

    /// A client error as the engine classes it, naming the cluster and what was asked.
    pub fn error(&self, e: &kube::Error, what: &str) -> ProviderError {
        error(&self.shown, e, what)
    }
}

/// A read tried again while the API server answers busy (429) or failing (5xx): four more
/// times, 0.5 s doubling (each stretched by up to half), so that a moment of overload does not
/// leave a cluster's objects unplanned for the whole run.
pub(crate) async fn retried<T, F, Fut>(mut call: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut delay = std::time::Duration::from_millis(500);
    for _ in 0..4 {
        match call().await {
            Err(kube::Error::Api(s)) if matches!(s.code, 429 | 500 | 502 | 503 | 504) => {
                tracing::debug!(code = s.code, "the API server is busy or failing; reading again in {delay:?}");
                let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |t| t.subsec_nanos());
                tokio::time::sleep(delay + delay.mul_f64(f64::from(nanos % 1000) / 2000.0)).await;
                delay *= 2;
            }
            other => return other,
        }
    }
    call().await
}

/// Whether objects of `res` live in namespaces.
pub(crate) fn namespaced(caps: &ApiCapabilities) -> bool {
    caps.scope == Scope::Namespaced
}

/// A client error as the engine classes it.
pub(crate) fn error(shown: &str, e: &kube::Error, what: &str) -> ProviderError {
    match e {
        kube::Error::Api(s) => {
            let mut message = format!("{what} on cluster {shown}: {} ({} {})", s.message, s.code, s.reason);
            let causes: Vec<String> = s
                .details
                .iter()
                .flat_map(|d| d.causes.iter())
                .map(|c| if c.field.is_empty() { c.message.clone() } else { format!("{}: {}", c.field, c.message) })
                .collect();
            if !causes.is_empty() && !causes.iter().all(|c| s.message.contains(c.as_str())) {
                message.push_str(&format!("; {}", causes.join("; ")));
            }
            let kind = match s.code {
                401 | 403 => ErrorKind::Unauthorized,
                404 | 410 => ErrorKind::NotFound,
                409 => ErrorKind::Conflict,
                429 | 500 | 502 | 503 | 504 => ErrorKind::Transient,
                _ => ErrorKind::Terminal,
            };
            let mut err = ProviderError::terminal(message).with_kind(kind);
            if matches!(s.code, 401 | 403) {
                err = err.with_hint("check the cluster's credentials (token, client certificate or kubeconfig user) and what its role allows");
            }
            err
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            ProviderError::transient(format!("{what} on cluster {shown}: cannot reach it: {}", source_chain(e)))
                .with_hint("check the cluster's `server` (or kubeconfig) and that it is up")
        }
        other => ProviderError::terminal(format!("{what} on cluster {shown}: {}", source_chain(other))),
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
