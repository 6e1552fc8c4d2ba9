//! Claims: two instances on one target may not claim the same thing (two resources writing one
//! host path would undo each other on every apply). Checked by `tend plan` on planned values and
//! by `tend validate` on what is known without touching a target.

use std::borrow::Cow;

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
    // (target, normalised value, who claims it, how), grouped by sorting: a plan of many
    // instances makes one list, and its values are the planned ones wherever they are already
    // normal (not a map with an entry and a copy of the path for each).
    let mut claims: Vec<(Option<&ResourceAddr>, Cow<'_, str>, &ResourceAddr, Claim)> = Vec::new();
    for (target, addr, values) in instances {
        let Some(provider) = providers.get(&*addr.provider) else { continue };
        let Some(schema) = provider.kinds().iter().find(|k| k.kind == &*addr.kind) else { continue };
        for f in schema.fields.iter().filter(|f| f.claim.is_some()) {
            if let (Some(v), Some(claim)) = (values.get(f.name).filter(|v| v.is_known()).and_then(Value::as_str), f.claim) {
                let normal = tend_provider::normalise_path(v);
                claims.push((target, if normal == v { Cow::Borrowed(v) } else { Cow::Owned(normal) }, addr, claim));
            }
        }
    }
    // Stable: within a group, claimants stay in the order they came.
    claims.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut errors = Vec::new();
    for who in claims.chunk_by(|a, b| a.0 == b.0 && a.1 == b.1) {
        let (target, path) = (who[0].0, &who[0].1);
        if who.len() < 2 || who.iter().all(|(_, _, _, c)| *c == Claim::Shared) {
            continue;
        }
        let named: Vec<String> = who
            .iter()
            .map(|(_, _, a, _)| match config.resources.get(&a.base()) {
                Some(r) => format!("`{a}` ({})", config.sources.location(r.span)),
                None => format!("`{a}`"),
            })
            .collect();
        errors.push(PlanError {
            kind: tend_provider::ErrorKind::Conflict,
            addr: Some(who[0].2.clone()),
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
