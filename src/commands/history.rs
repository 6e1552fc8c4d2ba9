//! `tend history`.

use std::process::ExitCode;

use super::{Failure, state::state_path};
use crate::cli::{Cli, HistoryArgs};

pub async fn run(cli: &Cli, args: &HistoryArgs) -> Result<ExitCode, Failure> {
    let path = state_path(cli)?;
    let rows = match tend::workspace::open_store_read_only(&path)? {
        Some(store) => store.history().await?,
        None => Vec::new(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows).expect("history serializes to JSON"));
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("No applies recorded in {}.", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let rev_w = rows.iter().map(|r| r.revision.len()).max().unwrap_or(8).max(8);
    println!("{:>4}  {:20}  {:rev_w$}  {:11}  {:<}", "ID", "STARTED", "REVISION", "RESULT", "SUMMARY");
    for r in rows {
        println!("{:>4}  {:20}  {:rev_w$}  {:11}  {} (by {})", r.id, r.started_at, r.revision, r.result, r.summary, r.who);
        for e in &r.errors {
            println!("{:>4}  failed: {} ({}): {}", "", e.address, e.kind, e.message.lines().next().unwrap_or_default());
        }
    }
    Ok(ExitCode::SUCCESS)
}
