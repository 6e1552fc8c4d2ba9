//! Drift as it happens: one watch per kind and cluster (tend's label selector) over the objects
//! state records, reporting an object whose recorded fields changed or that was deleted.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use kube::api::{Api, DynamicObject, ListParams, WatchEvent, WatchParams};
use serde_json::Value as J;
use tend_provider::{OnDrift, ResourceAddr};

/// The recorded objects of one kind on one cluster, by (namespace, name).
pub(crate) type Recorded = HashMap<(Option<String>, String), (ResourceAddr, J)>;

/// Stops its tasks when dropped.
pub(crate) struct Watches(pub Vec<tokio::task::JoinHandle<()>>);

impl Drop for Watches {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// The live object seen through the fields tend applied.
fn view(recorded: &J, live: &J) -> J {
    crate::seen(live, recorded, None)
}

/// Watch one kind from now on, until aborted. It starts with one LIST (tend's label): each
/// recorded object as it is now, seen through the fields tend applied, is the baseline — the
/// server's own spelling of what tend sent (`500m` for `0.5`) never counts as drift — then
/// takes the events after that list's version. An object whose view changes from its baseline,
/// or that is deleted, is reported (once per change: the baseline moves on). The watch resumes
/// from the last version seen when the server ends it, and starts over (with backoff) when that
/// version is gone or the server cannot be reached.
pub(crate) async fn kind(api: Api<DynamicObject>, selector: String, recorded: Recorded, on_drift: OnDrift) {
    let mut delay = Duration::from_secs(1);
    let mut version: Option<String> = None;
    let mut baseline: HashMap<(Option<String>, String), J> = HashMap::new();
    loop {
        let rv = match version.take() {
            Some(v) => v,
            None => match list(&api, &selector, &recorded).await {
                Ok((rv, seen)) => {
                    baseline = seen;
                    rv
                }
                Err(e) => {
                    back_off(&mut delay, "listing", &e).await;
                    continue;
                }
            },
        };
        let params = WatchParams::default().labels(&selector).timeout(290);
        let stream = match api.watch(&params, &rv).await {
            Ok(s) => s,
            Err(e) => {
                back_off(&mut delay, "watching", &e).await;
                continue;
            }
        };
        let mut stream = Box::pin(stream);
        let mut last = rv;
        let mut gone = false;
        while let Some(event) = stream.next().await {
            delay = Duration::from_secs(1);
            let (object, deleted) = match event {
                Ok(WatchEvent::Added(o) | WatchEvent::Modified(o)) => (o, false),
                Ok(WatchEvent::Deleted(o)) => (o, true),
                Ok(WatchEvent::Bookmark(b)) => {
                    last = b.metadata.resource_version;
                    continue;
                }
                Ok(WatchEvent::Error(e)) => {
                    gone = e.code == 410;
                    break;
                }
                Err(_) => break,
            };
            if let Some(v) = &object.metadata.resource_version {
                last.clone_from(v);
            }
            let key = (object.metadata.namespace.clone(), object.metadata.name.clone().unwrap_or_default());
            let Some((addr, rec)) = recorded.get(&key) else { continue };
            if deleted {
                baseline.remove(&key);
                on_drift(addr);
                continue;
            }
            let now = view(rec, &serde_json::to_value(&object).unwrap_or_default());
            if baseline.get(&key) != Some(&now) {
                baseline.insert(key, now);
                on_drift(addr);
            }
        }
        if !gone {
            version = Some(last);
        }
    }
}

/// Wait `delay` after a failed call, then double it, up to 30 s.
async fn back_off(delay: &mut Duration, what: &str, e: &kube::Error) {
    tracing::debug!("watch: {what} failed: {e}; again in {delay:?}");
    tokio::time::sleep(*delay).await;
    *delay = (*delay * 2).min(Duration::from_secs(30));
}

/// The collection's version and the recorded objects found, each seen through its recorded
/// fields.
async fn list(api: &Api<DynamicObject>, selector: &str, recorded: &Recorded) -> Result<(String, HashMap<(Option<String>, String), J>), kube::Error> {
    let mut params = ListParams::default().labels(selector).limit(500);
    let mut seen = HashMap::new();
    loop {
        let page = api.list(&params).await?;
        for o in &page.items {
            let key = (o.metadata.namespace.clone(), o.metadata.name.clone().unwrap_or_default());
            if let Some((_, rec)) = recorded.get(&key) {
                seen.insert(key, view(rec, &serde_json::to_value(o).unwrap_or_default()));
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => params = params.continue_token(&c),
            None => return Ok((page.metadata.resource_version.unwrap_or_default(), seen)),
        }
    }
}

/// Keep `recorded` free of what state holds only as fingerprints (a Secret's data): it cannot
/// be compared with a live value.
pub(crate) fn comparable(recorded: &tend_provider::Attributes) -> J {
    J::Object(
        recorded
            .iter()
            .filter(|(_, v)| !matches!(v, tend_provider::Value::Fingerprint(_) | tend_provider::Value::Redacted))
            .map(|(k, v)| (k.to_string(), v.to_json_revealed()))
            .collect(),
    )
}
