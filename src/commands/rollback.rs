//! `tend rollback NAME [--to GENERATION]`: an operator action a provider offers, on what it
//! recorded under that name (for the host provider: a host's generations of files and the
//! releases on it).

use std::process::ExitCode;
use std::sync::Arc;

use tend::provider::{ActRequest, Attributes, PriorRecord, ResourceAddr, Target, Value};
use tend::state::{StateStore, now_rfc3339};

use super::{Failure, load_workspace};
use crate::cli::Cli;

pub async fn run(cli: &Cli, subject: &str, to: Option<&str>) -> Result<ExitCode, Failure> {
    let mut ws = load_workspace(cli)?;
    ws.configure_all()?;
    let store = ws.open_state().await?;
    store.lock("rollback").await?;
    // Recorded in history like an apply: who rolled what back, and what each step did.
    let history = store.begin_history("rollback", &super::who(), &format!("rollback {subject}")).await?;
    let mut outcomes = Vec::new();
    let result = act(&ws, &store, "rollback", subject, to, &mut outcomes).await;
    let (summary, status) = match &result {
        Ok(_) => (format!("rollback {subject}: {} switched back", outcomes.len()), "success"),
        Err(f) => (format!("rollback {subject}: {}", f.text.lines().next().unwrap_or_default().trim_start_matches("error: ")), "failed"),
    };
    let finished = store.finish_history(history, &summary, status, &[], &outcomes).await;
    store.unlock().await?;
    finished?;
    result
}

async fn act(
    ws: &tend::workspace::Workspace,
    store: &Arc<dyn StateStore>,
    action: &str,
    subject: &str,
    to: Option<&str>,
    outcomes: &mut Vec<tend::state::HistoryOutcome>,
) -> Result<ExitCode, Failure> {
    let snapshot = store.load().await?;
    // Each provider picks, among what it recorded, what the action applies to.
    let mut chosen: Vec<ResourceAddr> = Vec::new();
    for (name, provider) in &ws.providers {
        let recorded: Vec<(&ResourceAddr, &Attributes)> =
            snapshot.records.values().filter(|r| &*r.addr.provider == name.as_str()).map(|r| (&r.addr, &*r.attributes)).collect();
        chosen.extend(provider.act_on(action, subject, &recorded).map_err(|e| Failure::user(e.message.clone(), e.hint.clone()))?);
    }
    if chosen.is_empty() {
        return Err(Failure::user(
            format!("nothing recorded under the name `{subject}` supports `{action}`"),
            Some("`tend state list` shows what is recorded; `tend rollback` takes a host's name (its generations of files, its releases)".into()),
        ));
    }
    for addr in chosen {
        let rec = &snapshot.records[&addr];
        let provider = &ws.providers[&*addr.provider];
        let target = rec.target.as_ref().and_then(|t| snapshot.records.get(t)).map(|h| Target { addr: h.addr.clone(), attributes: h.attributes.clone() });
        let mut args = Attributes::new();
        if let Some(g) = to {
            args.insert("to".into(), Value::from(g));
        }
        let req = ActRequest {
            addr: addr.clone(),
            action: action.into(),
            args,
            prior: PriorRecord { id: rec.remote_id.clone(), attributes: rec.attributes.clone() },
            target,
        };
        let acted = match provider.act(req).await {
            Ok(a) => a,
            Err(e) => {
                outcomes.push(tend::state::HistoryOutcome {
                    address: addr.to_string(),
                    action: action.into(),
                    outcome: "failed".into(),
                    message: Some(e.message.clone()),
                });
                return Err(Failure::from_error(&e, e.hint.clone()));
            }
        };
        outcomes.push(tend::state::HistoryOutcome {
            address: addr.to_string(),
            action: action.into(),
            outcome: "applied".into(),
            message: Some(acted.message.clone()),
        });
        let mut updated = rec.clone();
        updated.attributes = Arc::new(acted.observed.attributes);
        if acted.replan {
            updated.inputs_hash = tend_state::InputsHash::Empty; // the next plan sees a change and converges it again
        }
        updated.updated_at = now_rfc3339().into();
        store.put(&updated).await?;
        #[allow(clippy::print_stdout)]
        {
            println!("{addr}: {}", acted.message);
        }
    }
    Ok(ExitCode::SUCCESS)
}
