//! `tend state list|show|rm|unlock`.

use std::path::PathBuf;
use std::process::ExitCode;

use tend::provider::ResourceAddr;
use tend::state::StateError;
use tend::workspace::{open_store, open_store_read_only};

use super::{Failure, load_workspace};
use crate::cli::{Cli, StateCommand};

/// The state file: `--state`, else from the config.
pub fn state_path(cli: &Cli) -> Result<PathBuf, Failure> {
    match &cli.state {
        Some(p) => Ok(p.clone()),
        None => Ok(load_workspace(cli)?.state_path),
    }
}

fn parse_addr(s: &str) -> Result<ResourceAddr, Failure> {
    s.parse().map_err(|e: tend::provider::AddrError| Failure::user(e, None))
}

pub async fn run(cli: &Cli, cmd: &StateCommand) -> Result<ExitCode, Failure> {
    let path = state_path(cli)?;
    match cmd {
        StateCommand::List => {
            if let Some(store) = open_store_read_only(&path)? {
                for addr in store.load().await?.records.keys() {
                    println!("{addr}");
                }
            }
        }
        StateCommand::Show { address, json } => {
            let addr = parse_addr(address)?;
            let store = open_store_read_only(&path)?.ok_or(StateError::NoSuchRecord { addr: address.clone() })?;
            let snapshot = store.load().await?;
            let Some(rec) = snapshot.records.get(&addr) else {
                // An address without its instance key: the instances that are recorded.
                let keyed: Vec<String> = snapshot.records.keys().filter(|a| a.key.is_some() && a.base() == addr).map(|a| format!("'{a}'")).collect();
                if addr.key.is_none() && !keyed.is_empty() {
                    return Err(Failure::user(
                        format!("no resource `{address}` in state: it has instances, each recorded under its key"),
                        Some(format!("tend state show {}", keyed.join("\n  or: tend state show "))),
                    ));
                }
                return Err(StateError::NoSuchRecord { addr: address.clone() }.into());
            };
            if *json {
                println!("{}", serde_json::to_string_pretty(rec).expect("records serialize to JSON"));
            } else {
                println!("{}", rec.addr);
                println!("  status:       {:?}", rec.status);
                if let Some(id) = &rec.remote_id {
                    println!("  remote id:    {id}");
                }
                if let Some(t) = &rec.target {
                    println!("  on:           {t}");
                }
                println!("  updated at:   {}", rec.updated_at);
                println!("  inputs hash:  {}", rec.inputs_hash);
                if !rec.dependencies.is_empty() {
                    let deps: Vec<String> = rec.dependencies.iter().map(ToString::to_string).collect();
                    println!("  depends on:   {}", deps.join(", "));
                }
                if rec.prevent_destroy {
                    println!("  prevent_destroy: true");
                }
                println!("  attributes:");
                let w = rec.attributes.keys().map(tend_provider::Key::len).max().unwrap_or(0);
                for (k, v) in rec.attributes.iter() {
                    println!("    {k:w$} = {v}");
                }
            }
        }
        StateCommand::Rm { addresses } => {
            let store = open_store_read_only(&path)?.ok_or(StateError::NoSuchRecord { addr: addresses[0].clone() })?;
            drop(store);
            let store = open_store(&path)?;
            store.lock("state rm").await?;
            let mut result = Ok(());
            for a in addresses {
                match parse_addr(a) {
                    Ok(addr) => match store.remove(&addr).await {
                        Ok(_) => println!("Forgot {addr} (the target was not touched)."),
                        Err(e) => {
                            result = Err(Failure::from(e));
                            break;
                        }
                    },
                    Err(f) => {
                        result = Err(f);
                        break;
                    }
                }
            }
            store.unlock().await?;
            result?;
        }
        StateCommand::Unlock { force } => {
            let store = open_store(&path)?;
            let before = store.lock_holder().await?;
            match store.lock("state unlock").await {
                Ok(_) => {
                    store.unlock().await?;
                    match before {
                        Some(holder) => println!("Cleared the lock left by {holder}, which is no longer running."),
                        None => println!("State at {} was not locked.", path.display()),
                    }
                }
                Err(StateError::Locked { holder, .. }) if *force => {
                    store.force_unlock().await?;
                    println!("Cleared the lock held by {holder}.");
                }
                Err(e @ StateError::Locked { .. }) => {
                    return Err(Failure::from_error(&e, Some("its holder may still be running; pass --force only if you are sure it is not".into())));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
