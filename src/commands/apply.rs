//! `tend apply [PLAN_FILE]`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tend::apply::{ApplyOptions, ApplyOutcome, ProtocolError, apply_plan};
use tend::plan::{PLAN_FORMAT, Plan, PlanOptions, render_text_with};
use tend::report::Outcome;
use tend::workspace::Workspace;

use super::progress::CliReporter;
use super::{Failure, load_workspace, plan_errors, who};
use crate::cli::{ApplyArgs, Cli};

pub async fn run(cli: &Cli, args: &ApplyArgs) -> Result<ExitCode, Failure> {
    let options = super::plan_options(&args.select)?;
    let saved = match &args.plan_file {
        Some(file) if options != PlanOptions::default() => {
            return Err(Failure::user(
                format!("{} is applied exactly as saved; --target, --limit and --replace belong to `tend plan --out`", file.display()),
                None,
            ));
        }
        Some(file) => Some(read_plan(file)?),
        None => None,
    };
    // A saved plan is applied to the config it was made from, wherever this runs.
    let mut ws = super::load_workspace_in(cli, saved.as_ref())?;
    let parallelism = args.parallelism.or(ws.config.project.parallelism).unwrap_or(10);
    apply_or_plan(cli, &mut ws, saved, &options, args.auto_approve, &args.diff, parallelism, args.plan_file.as_deref()).await
}

/// `tend destroy`: everything the state records for this config, planned, confirmed, applied.
pub async fn destroy(cli: &Cli, args: &crate::cli::DestroyArgs) -> Result<ExitCode, Failure> {
    let mut ws = load_workspace(cli)?;
    let parallelism = args.parallelism.or(ws.config.project.parallelism).unwrap_or(10);
    let options = PlanOptions { destroy: true, ..PlanOptions::default() };
    let diff = crate::cli::DiffArgs { no_diff: false, diff_context: 3 };
    apply_or_plan(cli, &mut ws, None, &options, args.auto_approve, &diff, parallelism, None).await
}

#[allow(clippy::too_many_arguments)]
async fn apply_or_plan(
    cli: &Cli,
    ws: &mut Workspace,
    saved: Option<Plan>,
    options: &PlanOptions,
    auto_approve: bool,
    diff: &crate::cli::DiffArgs,
    parallelism: usize,
    plan_file: Option<&std::path::Path>,
) -> Result<ExitCode, Failure> {
    let plan = if let Some(plan) = saved {
        ws.configure_all()?;
        plan
    } else {
        let state = ws.read_state().await?;
        let plan = ws.plan_with(&state, options).await?;
        print!("{}", render_text_with(&plan, &super::text_options(cli, diff)));
        plan_errors(&plan)?;
        if !plan.has_changes() {
            // Nothing to write but the owner, when asked to take the state over.
            if ws.reassign_state {
                ws.open_state().await?;
            }
            return match super::unplanned_report(&plan) {
                Some(text) => Err(Failure { text }),
                None => Ok(ExitCode::SUCCESS),
            };
        }
        confirm(auto_approve)?;
        plan
    };
    let unplanned = super::unplanned_report(&plan);
    let outcome = run_locked(ws, plan, parallelism).await.map_err(|e| match (e, plan_file) {
        (e @ ProtocolError::Stale { .. }, Some(file)) => Failure::user(
            format!("the saved plan {} is stale: {e}", file.display()),
            Some("something was applied since the plan was made; run `tend plan --out FILE` again and review it".into()),
        ),
        (ProtocolError::Stale { .. }, None) => {
            Failure::user("state changed while this plan was being made", Some("another run applied meanwhile; run `tend apply` again".into()))
        }
        (ProtocolError::State(e), _) => e.into(),
    })?;
    match (report(&outcome), unplanned) {
        (Ok(code), None) => Ok(code),
        (Ok(_), Some(text)) => Err(Failure { text }),
        (Err(mut f), Some(text)) => {
            f.text = format!("{text}{}", f.text);
            Err(f)
        }
        (Err(f), None) => Err(f),
    }
}

pub(crate) fn read_plan(file: &std::path::Path) -> Result<Plan, Failure> {
    let bytes = fs_err::read(file).map_err(|e| Failure::from_error(&e, None))?;
    let plan: Plan = serde_json::from_slice(&bytes)
        .map_err(|e| Failure::user(format!("{} is not a saved tend plan: {e}", file.display()), Some("make one with `tend plan --out FILE`".into())))?;
    if plan.format != PLAN_FORMAT {
        return Err(Failure::user(
            format!("{} has plan format `{}`, this tend reads `{PLAN_FORMAT}`", file.display(), plan.format),
            Some("make a new plan with this version of tend".into()),
        ));
    }
    Ok(plan)
}

fn confirm(auto_approve: bool) -> Result<(), Failure> {
    if auto_approve {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::user(
            "refusing to apply without confirmation: standard input is not a terminal",
            Some("review the plan above and pass --auto-approve, or apply a saved plan with `tend apply FILE`".into()),
        ));
    }
    eprint!("\nApply these changes? Only 'yes' is accepted: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if answer.trim() == "yes" { Ok(()) } else { Err(Failure::user("apply cancelled", None)) }
}

async fn run_locked(ws: &Workspace, plan: Plan, parallelism: usize) -> Result<ApplyOutcome, ProtocolError> {
    let cancel = Arc::new(AtomicBool::new(false));
    let watcher = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                #[allow(clippy::print_stderr)]
                {
                    eprintln!("\ninterrupted: finishing the changes in progress, starting no new ones");
                }
                cancel.store(true, Ordering::SeqCst);
            }
        })
    };
    let runs = plan.changes.iter().filter(|c| c.runs).map(|c| c.addr.clone()).collect();
    let reporter = Arc::new(CliReporter::new(plan.changes.iter().filter(|c| c.is_change()).count(), runs));
    let opts = ApplyOptions { parallelism, who: who(), cancel, secrets: ws.secrets.clone() };
    let outcome = apply_plan(ws, plan, "apply", reporter.clone(), opts).await;
    reporter.finish();
    watcher.abort();
    outcome
}

#[allow(clippy::print_stdout)]
fn report(outcome: &ApplyOutcome) -> Result<ExitCode, Failure> {
    if outcome.success() {
        println!("\nApply complete: {}.", outcome.summary_line());
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = String::new();
    for (addr, _, o) in &outcome.results {
        if let Outcome::Failed(msg) = o {
            text.push_str(&format!("error: {addr}: {msg}\n"));
        }
    }
    let skipped: Vec<String> = outcome.results.iter().filter(|&(_a, _, o)| matches!(o, Outcome::Skipped(_))).map(|(a, _, _o)| a.to_string()).collect();
    if !skipped.is_empty() {
        let why = if outcome.interrupted { "interrupted before they started" } else { "skipped because something they depend on failed" };
        text.push_str(&format!("{why}: {}\n", skipped.join(", ")));
    }
    text.push_str(&format!(
        "error: apply {}: {}; state records exactly what was applied\n",
        if outcome.interrupted { "interrupted" } else { "failed" },
        outcome.summary_line()
    ));
    Err(Failure { text })
}
