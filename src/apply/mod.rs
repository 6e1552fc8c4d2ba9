//! Apply: execute a [`Plan`](crate::plan::Plan) — never the config — with a concurrent
//! dependency walk, recording each resource in state as soon as it is done.
//!
//! [`walker`] schedules (bounded parallelism, dependents of a failure skipped, independent
//! branches continue, deletes ordered before what they depended on, create-before-destroy as two
//! steps); [`executor`] runs one step: evaluate config with the now-known upstream values,
//! re-plan with the provider and check it still matches the plan, apply, check the result,
//! record.

mod executor;
mod walker;

pub use walker::{ApplyOptions, ApplyOutcome, apply};
