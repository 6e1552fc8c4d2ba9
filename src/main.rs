//! The `tend` binary: parse arguments, set up logging, run, map the result to an exit status.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod commands;

fn main() -> ExitCode {
    // A usage error exits 1, never 2: `plan --detailed-exitcode` uses 2 for "changes pending",
    // and a CI job must not read a mistyped flag as drift. --help and --version exit 0.
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(1) } else { ExitCode::SUCCESS };
        }
    };
    // The agent is a daemon: its reconciles are logged at info by default.
    let daemon = matches!(cli.command, cli::Command::Agent(_));
    commands::init_logging(cli.verbose + u8::from(daemon && cli.verbose == 0), cli.log_format, daemon);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: cannot start the async runtime: {e}");
            }
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(commands::run(cli))
}
