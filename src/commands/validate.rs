//! `tend validate`.

use std::process::ExitCode;

use tend::state::Snapshot;

use super::{Failure, load_workspace};
use crate::cli::Cli;

pub async fn run(cli: &Cli) -> Result<ExitCode, Failure> {
    let ws = load_workspace(cli)?;
    let graph = ws.graph(&Snapshot::default()).await?;
    let conflicts = ws.check_claims(&graph);
    if !conflicts.is_empty() {
        let mut text = String::new();
        for e in &conflicts {
            text.push_str(&super::render("error", &e.message, None, e.hint.clone()));
        }
        text.push_str(&format!("error: the configuration is invalid ({} problem{})\n", conflicts.len(), if conflicts.len() == 1 { "" } else { "s" }));
        return Err(Failure { text });
    }
    let resources = ws.config.resources.len();
    let instances = graph.index.len();
    println!(
        "The configuration is valid: {resources} resource{}, {instances} instance{}, revision {}.",
        if resources == 1 { "" } else { "s" },
        if instances == 1 { "" } else { "s" },
        ws.config.revision
    );
    Ok(ExitCode::SUCCESS)
}
