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
    if let Some(id) = args.id {
        let Some(row) = rows.iter().find(|r| r.id == id) else {
            let last = rows.last().map_or_else(|| "none is recorded".to_string(), |r| format!("the last is {}", r.id));
            return Err(Failure::user(format!("no run {id} in the history of {}", path.display()), Some(format!("`tend history` lists them; {last}"))));
        };
        if args.json {
            println!("{}", serde_json::to_string_pretty(row).expect("history serializes to JSON"));
        } else {
            print!("{}", one_run(row));
        }
        return Ok(ExitCode::SUCCESS);
    }
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

/// `tend history ID`: the run, then one line per resource: what was to be done and what came of
/// it.
fn one_run(r: &tend::state::HistoryEntry) -> String {
    use std::fmt::Write;
    let mut out = format!("Run {}: {} by {}, revision {}\n", r.id, r.result, r.who, r.revision);
    let _ = writeln!(out, "  started {}, finished {}", r.started_at, r.finished_at.as_deref().unwrap_or("(not finished)"));
    let _ = writeln!(out, "  {}\n", r.summary);
    if r.outcomes.is_empty() {
        let _ = writeln!(out, "  (no per-resource outcomes recorded for this run)");
    }
    let action_w = r.outcomes.iter().map(|o| o.action.len()).max().unwrap_or(0);
    for o in &r.outcomes {
        let message = o.message.as_deref().map(|m| format!(": {}", m.lines().next().unwrap_or_default())).unwrap_or_default();
        let _ = writeln!(out, "  {:8} {:action_w$}  {}{message}", o.outcome, o.action, o.address);
    }
    out
}
