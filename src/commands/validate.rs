//! `tend validate`.

use std::process::ExitCode;

use tend::state::Snapshot;

use super::{Failure, load_workspace};
use crate::cli::Cli;

pub fn run(cli: &Cli) -> Result<ExitCode, Failure> {
    let ws = load_workspace(cli)?;
    let graph = ws.graph(&Snapshot::default())?;
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
