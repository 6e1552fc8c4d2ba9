//! tend: a pull-based reconciler.
//!
//! One reconcile is a pipeline, each step a module with its own error type:
//!
//! ```text
//! config::load   TOML + YAML → Config (file:line diagnostics, all collected)
//! graph::build   Config + state → ResourceGraph (expanded instances, orphans, edges; cycles named)
//! plan::plan     refresh (batched provider reads) → per-instance Change → Plan
//! apply::apply   Plan → concurrent dependency walk → provider apply → state record per resource
//! ```
//!
//! Providers plug in through [`registry::Registry`]; state through [`tend_state::StateStore`];
//! progress reaches the UI through [`report::Reporter`]. Start with [`plan::plan`].

pub mod agent;
pub mod apply;
pub mod config;
pub mod graph;
pub mod hash;
pub mod plan;
pub mod registry;
pub mod report;
pub mod retry;
pub mod secrets;
#[cfg(feature = "git")]
pub mod source;
pub mod workspace;

pub use tend_provider as provider;
pub use tend_state as state;
