//! The backend-neutral [`StateStore`] trait.

use async_trait::async_trait;
use tend_provider::ResourceAddr;

use crate::{HistoryEntry, LockInfo, Record, Snapshot, StateError};

/// Where tend keeps what it applied.
///
/// # Guarantees
/// - `put` and `remove` are durable when they return and each bumps `serial` by one.
/// - `lock` fails with `Locked` naming the holder when a live run holds it. A lock left by a
///   process on this host that no longer runs is taken over (logged, naming the old holder),
///   and history rows such a run left `running` become `interrupted`.
///
/// # Assumptions
/// - Writers hold the lock; readers (`plan`) do not need it.
///
/// # Caveats
/// - The embedded `SQLite` backend's lock is for processes sharing one file system; the team
///   backend uses database advisory locks.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Read everything.
    async fn load(&self) -> Result<Snapshot, StateError>;
    /// What this state belongs to, as recorded by [`StateStore::set_owner`].
    async fn owner(&self) -> Result<Option<String>, StateError>;
    /// Record what this state belongs to (the engine's `project=… environment=… source=…`).
    async fn set_owner(&self, owner: &str) -> Result<(), StateError>;
    /// Read one record.
    async fn get(&self, addr: &ResourceAddr) -> Result<Option<Record>, StateError>;
    /// The key of the keyed hash over resource inputs (see [`Snapshot::hmac_key`]).
    async fn hmac_key(&self) -> Result<String, StateError>;
    /// Take the apply lock for `operation`.
    async fn lock(&self, operation: &str) -> Result<LockInfo, StateError>;
    /// Release the lock this process holds.
    async fn unlock(&self) -> Result<(), StateError>;
    /// Who holds the lock, if anyone.
    async fn lock_holder(&self) -> Result<Option<LockInfo>, StateError>;
    /// Clear the lock whoever holds it; returns the holder it cleared.
    async fn force_unlock(&self) -> Result<Option<LockInfo>, StateError>;
    /// Insert or replace one record; returns the new serial.
    async fn put(&self, record: &Record) -> Result<u64, StateError>;
    /// Insert or replace several records and remove others in one atomic write (a crash
    /// leaves all or none; removing an absent record is not an error); bumps `serial` by one;
    /// returns the new serial.
    async fn put_all(&self, records: &[Record], remove: &[ResourceAddr]) -> Result<u64, StateError>;
    /// Remove one record; returns the new serial.
    async fn remove(&self, addr: &ResourceAddr) -> Result<u64, StateError>;
    /// Start a history row; returns its id.
    async fn begin_history(&self, revision: &str, who: &str, summary: &str) -> Result<i64, StateError>;
    /// Finish a history row, with what failed and what happened to each resource.
    async fn finish_history(
        &self,
        id: i64,
        summary: &str,
        result: &str,
        errors: &[crate::HistoryError],
        outcomes: &[crate::HistoryOutcome],
    ) -> Result<(), StateError>;
    /// All history rows, oldest first.
    async fn history(&self) -> Result<Vec<HistoryEntry>, StateError>;
}
