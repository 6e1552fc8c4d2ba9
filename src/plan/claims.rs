//! Claims: two instances on one target may not claim the same thing (two resources writing one
//! host path would undo each other on every apply). Checked by `tend plan` on planned values and
//! by `tend validate` on what is known without touching a target.

use std::collections::BTreeMap;

use tend_provider::{Attributes, Claim, ResourceAddr, Value};

use super::PlanError;
use crate::config::Config;
use crate::registry::Providers;

/// Every group of instances (target, address, values) that claims one thing with at least one
/// exclusive claim, as an error naming each member and where it is declared.
pub fn conflicts<'a>(
    config: &Config,
    providers: &Providers,
    instances: impl Iterator<Item = (Option<&'a ResourceAddr>, &'a ResourceAddr, &'a Attributes)>,
) -> Vec<PlanError> {
    // (target, normalised value) → who claims it, and how.
    type Claimants<'b> = Vec<(&'b ResourceAddr, Claim)>;
    let mut claims: BTreeMap<(Option<&ResourceAddr>, String), Claimants<'_>> = BTreeMap::new();
    for (target, addr, values) in instances {
        let Some(provider) = providers.get(&*addr.provider) else { continue };
        let Some(schema) = provider.kinds().iter().find(|k| k.kind == &*addr.kind) else { continue };
        for f in schema.fields.iter().filter(|f| f.claim.is_some()) {
            if let (Some(v), Some(claim)) = (values.get(f.name).filter(|v| v.is_known()).and_then(Value::as_str), f.claim) {
                claims.entry((target, tend_provider::normalise_path(v))).or_default().push((addr, claim));
            }
        }
    }
    let mut errors = Vec::new();
    for ((target, path), who) in claims {
        if who.len() < 2 || who.iter().all(|(_, c)| *c == Claim::Shared) {
            continue;
        }
        let named: Vec<String> = who
            .iter()
            .map(|(a, _)| match config.resources.get(&a.base()) {
                Some(r) => format!("`{a}` ({})", config.sources.location(r.span)),
                None => format!("`{a}`"),
            })
            .collect();
        errors.push(PlanError {
            kind: tend_provider::ErrorKind::Conflict,
            addr: Some(who[0].0.clone()),
            message: format!(
                "{} all manage {path}{}: each apply would undo the other",
                named.join(" and "),
                target.map(|t| format!(" on `{t}`")).unwrap_or_default()
            ),
            hint: Some("keep one resource per path: merge them, or give one another path".into()),
        });
    }
    errors
}
