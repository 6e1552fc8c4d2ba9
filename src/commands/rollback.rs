//! `tend rollback HOST [--to GENERATION]`.

use std::process::ExitCode;

use tend::provider::{ActRequest, PriorRecord, Target, Value};
use tend::state::{StateStore, now_rfc3339};

use super::{Failure, load_workspace};
use crate::cli::Cli;

pub async fn run(cli: &Cli, host: &str, to: Option<&str>) -> Result<ExitCode, Failure> {
    let ws = load_workspace(cli)?;
    let store = ws.open_state().await?;
    store.lock("rollback").await?;
    let result = rollback(&ws, &store, host, to).await;
    store.unlock().await?;
    result
}

async fn rollback(ws: &tend::workspace::Workspace, store: &std::sync::Arc<dyn StateStore>, host: &str, to: Option<&str>) -> Result<ExitCode, Failure> {
    let snapshot = store.load().await?;
    // The host's own generations of files (a host record with generations kept), then the
    // releases placed on it.
    let generations = snapshot.records.values().filter(|r| {
        &*r.addr.provider == "host" && matches!(&*r.addr.kind, "ssh" | "local") && &*r.addr.name == host && r.attributes.get("kept_generations").is_some()
    });
    let releases = snapshot.records.values().filter(|r| &*r.addr.provider == "host" && &*r.addr.kind == "release" && r.addr.key.as_deref() == Some(host));
    let chosen: Vec<_> = generations.chain(releases).collect();
    if chosen.is_empty() {
        return Err(Failure::user(
            format!("host `{host}` has no recorded generations: neither generations of its files nor a host.release"),
            Some("`tend state list` shows what is recorded; a host keeps generations of its files with `generations = true`".into()),
        ));
    }
    let provider = ws.providers.get("host").ok_or_else(|| Failure::user("this build has no host provider", None))?;
    for rec in chosen {
        let current_field = if &*rec.addr.kind == "release" { "current" } else { "generation" };
        let target = rec.target.as_ref().and_then(|t| snapshot.records.get(t)).map(|h| Target { addr: h.addr.clone(), attributes: (*h.attributes).clone() });
        let mut args = tend::provider::Attributes::new();
        if let Some(g) = to {
            args.insert("to".into(), Value::from(g));
        }
        let req = ActRequest {
            addr: rec.addr.clone(),
            action: "rollback".into(),
            args,
            prior: PriorRecord { id: rec.remote_id.clone(), attributes: rec.attributes.clone() },
            target,
        };
        let now = provider.act(req).await.map_err(|e| Failure::from_error(2, &e, e.hint.clone()))?;
        let from = rec.attributes.get(current_field).map(ToString::to_string).unwrap_or_default();
        let new = now.attributes.get(current_field).map(ToString::to_string).unwrap_or_default();
        let mut updated = rec.clone();
        updated.attributes = std::sync::Arc::new(now.attributes);
        if &*rec.addr.kind == "release" {
            updated.inputs_hash = String::new(); // the next plan sees a change and moves forward again
        }
        updated.updated_at = now_rfc3339();
        store.put(&updated).await?;
        #[allow(clippy::print_stdout)]
        {
            println!("{}: switched from generation {from} to {new}", rec.addr);
        }
    }
    Ok(ExitCode::SUCCESS)
}
