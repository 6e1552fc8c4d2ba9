//! `tend-provider`: the interface between tend's engine and its providers.
//!
//! A *provider* (hosts, EC2, Kubernetes) manages one family of resources. The engine decides
//! order, concurrency, state and reporting; a provider handles one resource at a time:
//!
//! ```text
//! expand   one configured resource -> its instances (a host file on three hosts = three instances)
//! validate provider-specific checks on literal config values
//! read     observe the actual state of many instances in one batch
//! plan     desired config + observed state -> PlannedChange (action, before, after, forcing fields)
//! apply    carry out one planned action and return what now exists
//! health   one probe of an applied instance: ready, progressing or failed (the engine waits)
//! revert   put back what an apply changed when its health check failed, where possible
//! ```
//!
//! Main types: [`ResourceAddr`] (identity), [`Value`] (config and attribute values, with
//! [`Value::Unknown`] for "known after apply"), [`KindSchema`] (the fields of a resource kind and
//! whether a change is in place or forces replacement), [`Provider`] and its request/response
//! structs, [`ProviderError`] with its [`ErrorKind`] classification.
//!
//! This crate depends on nothing else in the workspace; provider crates and the state store
//! depend only on it. Start with [`Provider`].

#![deny(missing_docs)]

mod addr;
mod error;
mod jail;
mod map;
mod path;
mod provider;
mod schema;
mod value;

pub use addr::{AddrError, AddrParts, ResourceAddr};
pub use error::{ErrorKind, ProviderError};
pub use jail::{JailError, normalise_path, resolve_inside};
pub use map::{Key, Map};
pub use path::{Difference, FieldPath, PathError, Segment, diff, identity_key, pair_elements};
pub use provider::{
    ActRequest, Acted, Action, ApplyRequest, Attributes, CONTENT_SHOWN_MAX, CommitRequest, Committed, ContentChange, ExpandRequest, FieldError, Health,
    HealthRequest, Instance, Observed, OnDrift, PlanRequest, PlannedChange, PriorRecord, Provider, ProviderConfig, ProviderFactory, ReadItem, ReadRequest,
    RevertRequest, Reverted, RuntimeField, RuntimeKind, Sibling, Target, WatchGuard, WatchItem, WatchRequest,
};
pub use schema::{Claim, DEFAULT_TIMEOUT, FieldSchema, FieldType, KindSchema, Role, UpdateMode};
pub use value::{Sensitive, Value};

/// `value`, or the equal one already in `known` (then `value` is dropped): what many holders
/// have alike — a host's address named by every record on it, a plan's shared lists — is kept
/// once and shared.
pub fn shared<T: Clone + Eq + std::hash::Hash, S: std::hash::BuildHasher>(known: &mut std::collections::HashSet<T, S>, value: T) -> T {
    if let Some(same) = known.get(&value) {
        return same.clone();
    }
    known.insert(value.clone());
    value
}
