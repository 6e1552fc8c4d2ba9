//! `tend import ADDRESS ID`: start managing an object that exists but that tend did not create.

use std::process::ExitCode;

use tend::provider::{PriorRecord, ReadItem, ReadRequest, ResourceAddr};
use tend::state::{Record, RecordStatus, now_rfc3339};

use super::{Failure, load_workspace};
use crate::cli::Cli;

pub async fn run(cli: &Cli, address: &str, id: &str) -> Result<ExitCode, Failure> {
    let addr: ResourceAddr = address.parse().map_err(|e: tend::provider::AddrError| Failure::user(e, None))?;
    let mut ws = load_workspace(cli)?;
    let snapshot = ws.read_state().await?;
    if snapshot.records.contains_key(&addr) {
        return Err(Failure::user(
            format!("`{addr}` is already in state"),
            Some(format!("`tend state rm {addr}` first to import another object in its place")),
        ));
    }
    let graph = ws.graph(&snapshot).await?;
    let Some(&node) = graph.index.get(&addr) else {
        return Err(Failure::user(
            format!("`{addr}` is not declared in the configuration"),
            Some("declare the resource first (its config is what tend will converge the object to), then import".into()),
        ));
    };
    ws.configure_all()?;
    let provider = ws.providers.get(&*addr.provider).ok_or_else(|| Failure::user(format!("no `{}` provider in this build", addr.provider), None))?;
    let n = &graph.graph[node];
    let item = ReadItem {
        addr: addr.clone(),
        config: None,
        prior: Some(PriorRecord { id: Some(id.to_string()), attributes: std::sync::Arc::default() }),
        target: None,
    };
    let observed = provider.read(ReadRequest { items: vec![item] }).await.into_iter().next().unwrap_or(Ok(None));
    let observed = observed.map_err(|e| Failure::from_error(&e, e.hint.clone()))?;
    let Some(obs) = observed.filter(|o| o.id.as_deref() == Some(id)) else {
        return Err(Failure::user(
            format!("no {} with id `{id}` was found", addr.type_name()),
            Some("check the id and the provider's settings (region, account)".into()),
        ));
    };
    let store = ws.open_state().await?;
    store.lock("import").await?;
    let rec = Record {
        addr: addr.clone(),
        remote_id: Some(id.to_string()),
        status: RecordStatus::Ready,
        // No inputs recorded: the next plan converges the object to the config.
        inputs_hash: tend_state::InputsHash::Empty,
        attributes: std::sync::Arc::new(obs.attributes),
        target: n.target.clone(),
        dependencies: Vec::new(),
        prevent_destroy: false,
        updated_at: now_rfc3339().into(),
    };
    let put = store.put(&rec).await;
    store.unlock().await?;
    put?;
    println!("{addr}: imported {id}; `tend plan` shows what converging it to the config would change");
    Ok(ExitCode::SUCCESS)
}
