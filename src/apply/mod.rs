//! Apply: execute a [`Plan`](crate::plan::Plan) — never the config — with a concurrent
//! dependency walk, recording each resource in state as soon as it is done.
//!
//! [`walker`] schedules (bounded parallelism, dependents of a failure skipped, independent
//! branches continue, deletes ordered before what they depended on, create-before-destroy as two
//! steps); [`executor`] runs one step: evaluate config with the now-known upstream values,
//! re-plan with the provider and check it still matches the plan, apply, check the result,
//! record.

mod executor;
pub(crate) mod walker;

pub use walker::{ApplyOptions, ApplyOutcome, apply};

use std::sync::Arc;

use tend_provider::ResourceAddr;
use tend_state::{HistoryError, HistoryOutcome, Record, Snapshot, StateError, StateStore, now_rfc3339};

use crate::plan::Plan;
use crate::report::Reporter;
use crate::workspace::Workspace;

/// Why [`apply_plan`] applied nothing.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// State moved on since the plan was made: another run applied meanwhile.
    #[error("it was made against state serial {made_at} but state is now at serial {now}{}", if *.other_lineage { " of a different state lineage" } else { "" })]
    Stale {
        /// The serial the plan was made against.
        made_at: u64,
        /// Its lineage.
        made_lineage: String,
        /// The serial now.
        now: u64,
        /// Whether state now is another lineage (recreated, or another state file).
        other_lineage: bool,
    },
    /// Opening, locking or reading state failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Whether state `now` is still what `plan` was made against: same lineage and serial, or a
/// plan made before any state existed and state still empty.
pub fn check_fresh(plan: &Plan, now: &Snapshot) -> Result<(), ProtocolError> {
    let fresh_state = plan.lineage.is_empty() && now.serial == 0 && now.records.is_empty();
    if fresh_state || (now.lineage == plan.lineage && now.serial == plan.serial) {
        return Ok(());
    }
    Err(ProtocolError::Stale {
        made_at: plan.serial,
        made_lineage: plan.lineage.clone(),
        now: now.serial,
        other_lineage: !plan.lineage.is_empty() && now.lineage != plan.lineage,
    })
}

/// The one way a plan is applied, by `tend apply` (fresh or saved plan) and the agent alike:
/// open the workspace's state (its owner checked), take the lock for `operation`, refuse a plan
/// that state has moved past, walk the plan recording each resource as it finishes, and release
/// the lock whatever happened.
pub async fn apply_plan(ws: &Workspace, plan: Plan, operation: &str, reporter: Arc<dyn Reporter>, opts: ApplyOptions) -> Result<ApplyOutcome, ProtocolError> {
    let store = ws.open_state().await?;
    store.lock(operation).await?;
    let result: Result<ApplyOutcome, ProtocolError> = async {
        check_fresh(&plan, &store.load().await?)?;
        Ok(apply(Arc::new(plan), &ws.providers, store.clone(), reporter, opts).await?)
    }
    .await;
    let unlocked = store.unlock().await;
    let outcome = result?;
    unlocked?;
    Ok(outcome)
}

/// Apply a refresh-only plan: the records it names take what was observed (or are forgotten)
/// in one write, with a history row; nothing on the targets changes.
pub(crate) async fn record_refresh(plan: &Plan, store: &dyn StateStore, who: &str) -> Result<ApplyOutcome, StateError> {
    let forgotten: Vec<ResourceAddr> = plan.refreshed.iter().filter(|r| r.after.is_none()).map(|r| r.addr.clone()).collect();
    // The records as they are (the lock is held and the plan was checked fresh), only those
    // that change.
    let mut records: Vec<Record> = Vec::new();
    for r in &plan.refreshed {
        if let (Some(after), Some(recorded)) = (&r.after, store.get(&r.addr).await?) {
            records.push(Record { attributes: Arc::new(after.clone()), remote_id: r.after_id.clone(), updated_at: now_rfc3339().into(), ..recorded });
        }
    }
    let outcome = ApplyOutcome { refreshed: Some((records.len(), forgotten.len())), ..ApplyOutcome::default() };
    let summary = outcome.summary_line();
    let history = store.begin_history(&plan.revision, who, &summary).await?;
    let outcomes: Vec<HistoryOutcome> = plan
        .refreshed
        .iter()
        .map(|r| HistoryOutcome {
            address: r.addr.to_string(),
            action: (if r.after.is_some() { "refresh" } else { "forget" }).into(),
            outcome: "applied".into(),
            message: r.after.is_none().then(|| "deleted outside tend".into()),
        })
        .collect();
    if let Err(e) = store.put_all(&records, &forgotten).await {
        let error = HistoryError { address: String::new(), kind: "terminal".into(), message: e.to_string() };
        store.finish_history(history, "nothing recorded", "failed", &[error], &[]).await?;
        return Err(e);
    }
    store.finish_history(history, &summary, "success", &[], &outcomes).await?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(lineage: &str, serial: u64) -> Plan {
        serde_json::from_value(serde_json::json!({
            "format": crate::plan::PLAN_FORMAT, "revision": "r", "environment": null, "config_root": "/c", "lineage": lineage, "serial": serial,
            "changes": [], "instances": {}, "errors": [], "unplanned": []
        }))
        .expect("a plan")
    }

    fn state(lineage: &str, serial: u64) -> Snapshot {
        Snapshot { lineage: lineage.into(), serial, ..Snapshot::default() }
    }

    #[test]
    fn a_plan_applies_only_to_the_state_it_was_made_against() {
        assert!(check_fresh(&plan("L", 4), &state("L", 4)).is_ok());
        assert!(check_fresh(&plan("", 0), &state("new", 0)).is_ok(), "made before state existed, state still empty");
        let moved = check_fresh(&plan("L", 4), &state("L", 5)).unwrap_err();
        assert!(matches!(moved, ProtocolError::Stale { made_at: 4, now: 5, other_lineage: false, .. }), "{moved:?}");
        assert_eq!(moved.to_string(), "it was made against state serial 4 but state is now at serial 5");
        let other = check_fresh(&plan("L", 4), &state("M", 4)).unwrap_err();
        assert!(other.to_string().ends_with("serial 4 of a different state lineage"), "{other}");
        assert!(check_fresh(&plan("", 0), &state("M", 3)).is_err(), "made before state existed, state written since");
    }
}
