//! `tend apply [PLAN_FILE]`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tend::apply::{ApplyOptions, ApplyOutcome, apply};
use tend::plan::{PLAN_FORMAT, Plan, render_text};
use tend::report::Outcome;
use tend::state::{SqliteStore, StateStore};
use tend::workspace::Workspace;

use super::progress::CliReporter;
use super::{Failure, load_workspace, plan_errors, who};
use crate::cli::{ApplyArgs, Cli};

pub async fn run(cli: &Cli, args: &ApplyArgs) -> Result<ExitCode, Failure> {
    let mut ws = load_workspace(cli)?;
    let parallelism = args.parallelism.or(ws.config.project.parallelism).unwrap_or(10);
    let (plan, store) = if let Some(file) = &args.plan_file {
        let plan = read_plan(file)?;
        ws.configure_all()?;
        let store = ws.open_state().await?;
        store.lock("apply").await?;
        if let Err(f) = check_fresh(&store, &plan, file).await {
            let _ = store.unlock().await;
            return Err(f);
        }
        (plan, store)
    } else {
        let state = ws.read_state().await?;
        let plan = ws.plan(&state).await?;
        print!("{}", render_text(&plan));
        plan_errors(&plan)?;
        if !plan.has_changes() {
            // Nothing to write but the owner, when asked to take the state over.
            if ws.reassign_state {
                ws.open_state().await?;
            }
            return match super::unplanned_report(&plan) {
                Some(text) => Err(Failure { code: 2, text }),
                None => Ok(ExitCode::SUCCESS),
            };
        }
        confirm(args.auto_approve)?;
        let store = ws.open_state().await?;
        store.lock("apply").await?;
        let now = store.load().await;
        let moved = now.as_ref().map(|s| s.serial != state.serial || (!state.lineage.is_empty() && s.lineage != state.lineage));
        if !matches!(moved, Ok(false)) {
            let _ = store.unlock().await;
            return Err(match now {
                Err(e) => e.into(),
                Ok(_) => Failure::user("state changed while this plan was being made", Some("another run applied meanwhile; run `tend apply` again".into())),
            });
        }
        (plan, store)
    };
    let unplanned = super::unplanned_report(&plan);
    let result = run_locked(&ws, plan, &store, parallelism).await;
    let unlocked = store.unlock().await;
    let outcome = result?;
    unlocked?;
    match (report(&outcome), unplanned) {
        (Ok(code), None) => Ok(code),
        (Ok(_), Some(text)) => Err(Failure { code: 2, text }),
        (Err(mut f), Some(text)) => {
            f.text = format!("{text}{}", f.text);
            Err(f)
        }
        (Err(f), None) => Err(f),
    }
}

fn read_plan(file: &std::path::Path) -> Result<Plan, Failure> {
    let bytes = fs_err::read(file).map_err(|e| Failure::from_error(1, &e, None))?;
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

/// Refuse a saved plan whose state has moved on.
async fn check_fresh(store: &SqliteStore, plan: &Plan, file: &std::path::Path) -> Result<(), Failure> {
    let now = store.load().await?;
    let fresh_state = plan.lineage.is_empty() && now.serial == 0 && now.records.is_empty();
    if fresh_state || (now.lineage == plan.lineage && now.serial == plan.serial) {
        return Ok(());
    }
    Err(Failure::user(
        format!(
            "the saved plan {} is stale: it was made against state serial {} but state is now at serial {}{}",
            file.display(),
            plan.serial,
            now.serial,
            if plan.lineage.is_empty() || now.lineage == plan.lineage { "" } else { " of a different state lineage" },
        ),
        Some("something was applied since the plan was made; run `tend plan --out FILE` again and review it".into()),
    ))
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

async fn run_locked(ws: &Workspace, plan: Plan, store: &SqliteStore, parallelism: usize) -> Result<ApplyOutcome, Failure> {
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
    let reporter = Arc::new(CliReporter::new(plan.changes.iter().filter(|c| c.is_change()).count()));
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(store.path())?);
    let opts = ApplyOptions { parallelism, who: who(), cancel, secrets: ws.secrets.clone() };
    let outcome = apply(Arc::new(plan), &ws.providers, store, reporter.clone(), opts).await;
    reporter.finish();
    watcher.abort();
    Ok(outcome?)
}

#[allow(clippy::print_stdout)]
fn report(outcome: &ApplyOutcome) -> Result<ExitCode, Failure> {
    if outcome.success() {
        println!("\nApply complete: {}.", outcome.summary_line());
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = String::new();
    for (addr, _, o) in &outcome.results {
        if let Outcome::Failed(msg, _) = o {
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
    Err(Failure { code: 2, text })
}
