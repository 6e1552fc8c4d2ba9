//! The `tend` binary: parse arguments, set up logging, run, map the result to an exit status.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod commands;

fn main() -> ExitCode {
    // A usage error exits 1, never 2: `plan --detailed-exitcode` uses 2 for "changes pending",
    // and a CI job must not read a mistyped flag as drift. --help and --version exit 0.
    let mut cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            #[allow(clippy::print_stderr)]
            {
                eprint!("{}", usage_error(&e));
            }
            return ExitCode::from(1);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    if let Err(message) = cli.take_positional_dir() {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("error: {message}");
        }
        return ExitCode::from(1);
    }
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

/// clap's usage error, with its tips checked: a "similar" subcommand or option is suggested
/// only when it is a near miss (one or two letters: `pln` -> `plan`, never `destroy` ->
/// `history`), and an option that belongs to another subcommand says which.
fn usage_error(e: &clap::Error) -> String {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue};
    let text = e.render().to_string();
    let all = |k: ContextKind| match e.get(k) {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(v)) => v.clone(),
        _ => Vec::new(),
    };
    let typed = all(ContextKind::InvalidSubcommand).into_iter().chain(all(ContextKind::InvalidArg)).next().unwrap_or_default();
    let typed_name = typed.split('=').next().unwrap_or_default().trim_start_matches('-').to_string();
    let near = |suggested: &str| {
        let s = suggested.trim_start_matches('-');
        strsim::damerau_levenshtein(&typed_name, s) <= (typed_name.len().max(s.len()) / 4).max(1)
    };
    let suggestions: Vec<String> = all(ContextKind::SuggestedSubcommand).into_iter().chain(all(ContextKind::SuggestedArg)).collect();
    // Options of other subcommands with the name typed.
    let owners: Vec<String> = if typed.starts_with("--") {
        cli::Cli::command()
            .get_subcommands()
            .filter(|c| c.get_arguments().any(|a| a.get_long() == Some(typed_name.as_str())))
            .map(|c| format!("`tend {}`", c.get_name()))
            .collect()
    } else {
        Vec::new()
    };
    let close: Vec<&String> = suggestions.iter().filter(|s| near(s)).collect();
    let far = !suggestions.is_empty() && close.is_empty();
    let mut out = String::new();
    for line in text.lines() {
        let tip = line.trim_start();
        if ((tip.starts_with("tip: a similar") || tip.starts_with("tip: some similar")) && far) || (tip.starts_with("tip: to pass") && !owners.is_empty()) {
            continue;
        }
        // Of several suggestions, only the near misses.
        if tip.starts_with("tip: some similar") && close.len() < suggestions.len() {
            let what = if tip.contains("subcommand") { "subcommand" } else { "argument" };
            let names: Vec<String> = close.iter().map(|s| format!("'{s}'")).collect();
            let verb = if close.len() == 1 { format!("a similar {what} exists") } else { format!("some similar {what}s exist") };
            out.push_str(&format!("  tip: {verb}: {}\n", names.join(", ")));
            continue;
        }
        // The usage clap shows with a suggestion names the suggested option: the plain usage
        // of the subcommand instead.
        let usage = line.strip_prefix("Usage: tend ").and_then(|rest| rest.split_whitespace().next()).filter(|_| far);
        match usage.and_then(|sub| {
            let mut cmd = cli::Cli::command();
            cmd.build();
            cmd.find_subcommand_mut(sub).map(|c| c.render_usage().to_string())
        }) {
            Some(plain) => out.push_str(&plain),
            None => out.push_str(line),
        }
        out.push('\n');
        if line.starts_with("error:") && !owners.is_empty() {
            out.push_str(&format!("\n  tip: `--{typed_name}` is an option of {}\n", owners.join(" and ")));
        }
    }
    // A near miss clap's similarity measure does not offer (a transposition: `destory`).
    if !typed.is_empty() && close.is_empty() && all(ContextKind::InvalidSubcommand).contains(&typed) {
        let near_names: Vec<String> =
            cli::Cli::command().get_subcommands().map(|c| c.get_name().to_string()).filter(|n| near(n)).map(|n| format!("'{n}'")).collect();
        if !near_names.is_empty() {
            let tip = if near_names.len() == 1 { "a similar subcommand exists" } else { "some similar subcommands exist" };
            out = out.replacen('\n', &format!("\n\n  tip: {tip}: {}\n", near_names.join(", ")), 1);
        }
    }
    // Dropped tips leave their blank lines behind.
    while out.contains("\n\n\n") {
        out = out.replace("\n\n\n", "\n\n");
    }
    out
}
