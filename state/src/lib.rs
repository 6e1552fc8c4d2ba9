//! `tend-state`: what tend has applied, and the lock that keeps two applies apart.
//!
//! - [`StateStore`] is the backend-neutral trait: load a [`Snapshot`], take and release the
//!   apply lock, persist one [`Record`] at a time (after *each* resource), and keep the apply
//!   [`HistoryEntry`] log. A `PostgreSQL` backend implements the same trait later.
//! - [`SqliteStore`] is the embedded default: one `SQLite` file in WAL mode, created with mode 0600,
//!   never overwritten when it is unreadable or not a tend state file.
//!
//! Every write bumps the snapshot's `serial`; a saved plan remembers `lineage` + `serial` so
//! applying it after state moved on is refused.

#![deny(missing_docs)]

mod error;
mod record;
mod sqlite;
mod store;
mod time;

pub use error::StateError;
pub use record::{HistoryEntry, HistoryError, HistoryOutcome, InputsHash, LockInfo, Record, RecordStatus, Snapshot};
pub use sqlite::SqliteStore;
pub use store::StateStore;
pub use time::now_rfc3339;
