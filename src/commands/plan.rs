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
            println!("\nSaved the plan to {}. Apply exactly this plan with:\n  tend apply {}", out.display(), out.display());
        }
    }
    Ok(if args.detailed_exitcode && plan.has_changes() { ExitCode::from(2) } else { ExitCode::SUCCESS })
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
