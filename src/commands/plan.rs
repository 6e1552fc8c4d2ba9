//! `tend plan`.

use std::process::ExitCode;

use tend::plan::{render_json, render_text_with};

use super::{Failure, load_workspace, plan_errors};
use crate::cli::{Cli, PlanArgs};

pub async fn run(cli: &Cli, args: &PlanArgs) -> Result<ExitCode, Failure> {
    let mut ws = load_workspace(cli)?;
    let state = ws.read_state().await?;
    let plan = ws.plan_with(&state, &super::plan_options(&args.select)?).await?;
    if args.json {
        let text = serde_json::to_string_pretty(&render_json(&plan)).expect("plans serialize to JSON");
        println!("{text}");
    } else {
        print!("{}", render_text_with(&plan, &super::text_options(cli, &args.diff)));
    }
    plan_errors(&plan)?;
    if let Some(report) = super::unplanned_report(&plan) {
        if let Some(out) = &args.out {
            save(out, &plan)?;
        }
        return Err(Failure { text: report });
    }
    if let Some(out) = &args.out {
        save(out, &plan)?;
        if !args.json {
            // The state file, when named, is not part of the plan: the command names it too.
            let state = cli.state.as_ref().map(|s| format!("--state {} ", shell_word(&s.to_string_lossy()))).unwrap_or_default();
            println!("\nSaved the plan to {}. Apply exactly this plan with:\n  tend {state}apply {}", out.display(), shell_word(&out.to_string_lossy()));
        }
    }
    Ok(if args.detailed_exitcode && plan.has_changes() { ExitCode::from(2) } else { ExitCode::SUCCESS })
}

/// A word as a shell reads it back: as it is when it has nothing special, else single-quoted.
fn shell_word(w: &str) -> String {
    if !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+=:@,".contains(&b)) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

fn save(path: &std::path::Path, plan: &tend::plan::Plan) -> Result<(), Failure> {
    use std::io::Write;

    use fs_err::os::unix::fs::OpenOptionsExt;
    let json = serde_json::to_vec_pretty(plan).expect("plans serialize to JSON");
    let write = || -> std::io::Result<()> {
        let mut f = fs_err::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
        f.write_all(&json)
    };
    write().map_err(|e| Failure::from_error(&e, None))
}
