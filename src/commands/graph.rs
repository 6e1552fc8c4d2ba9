//! `tend graph`.

use std::process::ExitCode;

use super::{Failure, load_workspace};
use crate::cli::{Cli, GraphArgs, GraphFormat};

pub async fn run(cli: &Cli, args: &GraphArgs) -> Result<ExitCode, Failure> {
    let ws = load_workspace(cli)?;
    let state = ws.read_state().await?;
    let graph = ws.graph(&state).await?;
    match args.format {
        GraphFormat::Dot => print!("{}", graph.to_dot()),
        GraphFormat::Json => println!("{}", serde_json::to_string_pretty(&graph.to_json()).expect("graphs serialize to JSON")),
    }
    Ok(ExitCode::SUCCESS)
}
