//! `tend rollback HOST [--to GENERATION]`.

use std::process::ExitCode;

use tend::provider::{ActRequest, PriorRecord, Target, Value};
use tend::state::{StateStore, now_rfc3339};

use super::{Failure, load_workspace};
use crate::cli::Cli;

pub async fn run(cli: &Cli, host: &str, to: Option<&str>) -> Result<ExitCode, Failure> {
    let ws = load_workspace(cli)?;
    let store = ws.open_state()?;
    store.lock("rollback").await?;
    let result = rollback(&ws, &store, host, to).await;
    store.unlock().await?;
    result
}

async fn rollback(ws: &tend::workspace::Workspace, store: &tend::state::SqliteStore, host: &str, to: Option<&str>) -> Result<ExitCode, Failure> {
    let snapshot = store.load().await?;
    let releases: Vec<_> = snapshot
        .records
        .values()
        .filter(|r| &*r.addr.provider == "host" && &*r.addr.kind == "release" && r.addr.key.as_deref() == Some(host))
        .collect();
    if releases.is_empty() {
        return Err(Failure::user(format!("host `{host}` has no recorded host.release"), Some("`tend state list` shows what is recorded".into())));
    }
    let provider = ws.providers.get("host").ok_or_else(|| Failure::user("this build has no host provider", None))?;
    for rec in releases {
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
        let from = rec.attributes.get("current").map(ToString::to_string).unwrap_or_default();
        let new = now.attributes.get("current").map(ToString::to_string).unwrap_or_default();
        let mut updated = rec.clone();
        updated.attributes = std::sync::Arc::new(now.attributes);
        updated.inputs_hash = String::new(); // the next plan sees a change and moves forward again
        updated.updated_at = now_rfc3339();
        store.put(&updated).await?;
        #[allow(clippy::print_stdout)]
        {
            println!("{}: switched from generation {from} to {new}", rec.addr);
        }
    }
    Ok(ExitCode::SUCCESS)
}
