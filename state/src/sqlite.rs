//! The embedded default store: one `SQLite` file (WAL), created 0600.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tend_provider::ResourceAddr;

use crate::{HistoryEntry, LockInfo, Record, Snapshot, StateError, StateStore, now_rfc3339};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS resources (addr TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    revision TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT,
    who TEXT NOT NULL, summary TEXT NOT NULL, result TEXT NOT NULL, errors TEXT, outcomes TEXT);
CREATE TABLE IF NOT EXISTS lock (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    host TEXT NOT NULL, pid INTEGER NOT NULL, started_at TEXT NOT NULL, operation TEXT NOT NULL);
";

/// State in one `SQLite` file.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// Writes waiting for the next group commit.
    pending: Mutex<Pending>,
}

/// Record writes that arrived while another was being committed: the next commit takes them all
/// in one transaction (group commit). Each caller still returns only once its write is durable.
#[derive(Default)]
struct Pending {
    writes: Vec<(Write, tokio::sync::oneshot::Sender<Result<u64, StateError>>)>,
    /// A caller is committing; the others wait for its answer.
    committing: bool,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("writes", &self.writes.len()).field("committing", &self.committing).finish()
    }
}

/// The committing caller's duty: when it is dropped (done waiting, or cancelled while it
/// waited), everything queued is committed.
struct Lead<'a>(&'a SqliteStore);

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        self.0.commit_queued();
    }
}

enum Write {
    Put { addr: String, data: String },
    PutAll(Vec<(String, String)>, Vec<String>),
    Remove { addr: String },
}

impl SqliteStore {
    /// Open the state file for writing, creating it (mode 0600, parent directories 0700) if it
    /// does not exist. An existing file that is not a tend state database is an error and is
    /// left untouched.
    ///
    /// Creation is atomic: the database is made complete under a temporary name beside it and
    /// then linked into place, so a run killed at any moment leaves either no state file or a
    /// whole one (and the temporary file of a killed run is removed by the next).
    pub fn open(path: &Path) -> Result<Self, StateError> {
        if !path.exists() {
            create_state_file(path)?;
        }
        Self::open_with(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
    }

    /// Open an existing state file for reading only; `Ok(None)` when there is none yet (or only
    /// the empty file an older tend left when it was killed while creating it).
    pub fn open_read_only(path: &Path) -> Result<Option<Self>, StateError> {
        if !path.exists() || fs_err::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0) {
            return Ok(None);
        }
        Self::open_with(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX).map(Some)
    }

    fn open_with(path: &Path, flags: OpenFlags) -> Result<Self, StateError> {
        let open_err = |e: rusqlite::Error| StateError::Open { path: path.to_path_buf(), source: Box::new(e) };
        if path.is_dir() {
            return Err(StateError::Open {
                path: path.to_path_buf(),
                source: Box::new(std::io::Error::new(std::io::ErrorKind::IsADirectory, "it is a directory")),
            });
        }
        // Opening reads nothing; check readability first so permissions are reported as such.
        if let Err(e) = fs_err::File::open(path) {
            return Err(StateError::Open { path: path.to_path_buf(), source: Box::new(e) });
        }
        let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
        let corrupt = |e: rusqlite::Error| StateError::Corrupt { path: path.to_path_buf(), source: Box::new(e) };
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(open_err)?;
        let empty = fs_err::metadata(path).is_ok_and(|m| m.len() == 0);
        if empty && !flags.contains(OpenFlags::SQLITE_OPEN_READ_ONLY) {
            conn.execute_batch("PRAGMA journal_mode=WAL;").map_err(corrupt)?;
            conn.execute_batch(SCHEMA).map_err(corrupt)?;
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('lineage', ?1), ('serial', '0'), ('format', '1'), ('hmac_key', ?2)",
                params![new_lineage(), random_hex::<32>()],
            )
            .map_err(corrupt)?;
        } else if empty {
            return Err(StateError::Corrupt { path: path.to_path_buf(), source: "the file is empty".into() });
        }
        conn.execute_batch("PRAGMA synchronous=NORMAL;").map_err(corrupt)?;
        let format: Option<String> = conn.query_row("SELECT value FROM meta WHERE key = 'format'", [], |r| r.get(0)).optional().map_err(corrupt)?;
        if format.as_deref() != Some("1") {
            return Err(StateError::Corrupt { path: path.to_path_buf(), source: "the database has no tend state format marker".into() });
        }
        // State written before history kept errors, or outcomes, gets the column on its first
        // write.
        for column in ["errors", "outcomes"] {
            if !flags.contains(OpenFlags::SQLITE_OPEN_READ_ONLY) && !Self::history_has(&conn, column) {
                conn.execute_batch(&format!("ALTER TABLE history ADD COLUMN {column} TEXT;")).map_err(corrupt)?;
            }
        }
        Ok(Self { path: path.to_path_buf(), conn: Mutex::new(conn), pending: Mutex::default() })
    }

    /// The state file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db_err(&self) -> impl Fn(rusqlite::Error) -> StateError + '_ {
        |source| StateError::Database { path: self.path.clone(), source }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A poisoned mutex only means another thread panicked mid-call; SQLite's own
        // transactions keep the file consistent, so carry on with the connection.
        self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queue a write and return once it is committed: the first caller commits every write
    /// queued meanwhile in one transaction, the others wait for it.
    async fn write(&self, w: Write) -> Result<u64, StateError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let lead = {
            let mut p = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            p.writes.push((w, tx));
            !std::mem::replace(&mut p.committing, true)
        };
        if lead {
            let lead = Lead(self);
            // Let the tasks that are ready to run reach their own writes first, so that one
            // transaction takes them all: committing costs about as much for ten records as for
            // one. Were this caller dropped while it waits, its guard commits what is queued.
            tokio::task::yield_now().await;
            drop(lead);
        }
        rx.await.expect("the committing caller answers every write it takes")
    }

    /// Commit what is queued, batch after batch, until nothing is. Synchronous to the end:
    /// nothing can cancel it half-way.
    fn commit_queued(&self) {
        loop {
            let batch = {
                let mut p = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if p.writes.is_empty() {
                    p.committing = false;
                    break;
                }
                std::mem::take(&mut p.writes)
            };
            self.commit_batch(batch);
        }
    }

    /// One transaction for the whole batch, statements prepared once; each write bumps the
    /// serial by one (the counter is moved once, by the batch's count). Should the transaction
    /// fail, each write is tried alone for its own answer.
    fn commit_batch(&self, batch: Vec<(Write, tokio::sync::oneshot::Sender<Result<u64, StateError>>)>) {
        tracing::trace!(writes = batch.len(), "state commit");
        let mut conn = self.conn();
        let together = (|| -> rusqlite::Result<Vec<Result<u64, StateError>>> {
            let tx = conn.transaction()?;
            let mut out = Vec::with_capacity(batch.len());
            {
                let mut put = tx.prepare_cached("INSERT INTO resources (addr, data) VALUES (?1, ?2) ON CONFLICT(addr) DO UPDATE SET data = excluded.data")?;
                let mut remove = tx.prepare_cached("DELETE FROM resources WHERE addr = ?1")?;
                let mut bump =
                    tx.prepare_cached("UPDATE meta SET value = CAST(value AS INTEGER) + ?1 WHERE key = 'serial' RETURNING CAST(value AS INTEGER)")?;
                let mut writes = 0i64;
                for (w, _) in &batch {
                    let done = match w {
                        Write::Put { addr, data } => put.execute(params![addr, data])?,
                        Write::PutAll(records, removes) => {
                            for (addr, data) in records {
                                put.execute(params![addr, data])?;
                            }
                            for addr in removes {
                                remove.execute(params![addr])?;
                            }
                            1
                        }
                        Write::Remove { addr } => remove.execute(params![addr])?,
                    };
                    if done == 0 {
                        let Write::Remove { addr } = w else { unreachable!("an upsert always writes") };
                        out.push(Err(StateError::NoSuchRecord { addr: addr.clone() }));
                        continue;
                    }
                    writes += 1;
                    out.push(Ok(0));
                }
                // Each write has its own serial, in order; the counter moves once.
                if writes > 0 {
                    let last: i64 = bump.query_row([writes], |r| r.get(0))?;
                    let mut serial = last - writes;
                    for r in out.iter_mut().flatten() {
                        serial += 1;
                        *r = u64::try_from(serial).unwrap_or(0);
                    }
                }
            }
            tx.commit()?;
            Ok(out)
        })();
        match together {
            Ok(results) => {
                for ((_, answer), r) in batch.into_iter().zip(results) {
                    let _ = answer.send(r);
                }
            }
            Err(_) if batch.len() > 1 => {
                drop(conn);
                for (w, answer) in batch {
                    let (tx, mut rx) = tokio::sync::oneshot::channel();
                    self.commit_batch(vec![(w, tx)]);
                    let _ = answer.send(rx.try_recv().expect("a batch of one is answered before it returns"));
                }
            }
            Err(e) => {
                if let Some((_, answer)) = batch.into_iter().next() {
                    let _ = answer.send(Err(StateError::Database { path: self.path.clone(), source: e }));
                }
            }
        }
    }

    fn history_has(conn: &Connection, column: &str) -> bool {
        conn.query_row("SELECT COUNT(*) FROM pragma_table_info('history') WHERE name = ?1", [column], |r| r.get::<_, i64>(0)).is_ok_and(|n| n > 0)
    }

    fn read_lock(conn: &Connection) -> rusqlite::Result<Option<LockInfo>> {
        conn.query_row("SELECT host, pid, started_at, operation FROM lock WHERE id = 1", [], |r| {
            Ok(LockInfo { host: r.get(0)?, pid: r.get(1)?, started_at: r.get(2)?, operation: r.get(3)? })
        })
        .optional()
    }
}

/// Create a complete, empty state database at `path` (mode 0600, parent directories 0700):
/// built under a temporary name in the same directory, then hard-linked into place, which fails
/// rather than replace a file another run created meanwhile.
fn create_state_file(path: &Path) -> Result<(), StateError> {
    use fs_err::os::unix::fs::OpenOptionsExt;
    let open = |e: std::io::Error| StateError::Open { path: path.to_path_buf(), source: Box::new(e) };
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.exists() {
        fs_err::create_dir_all(parent).map_err(open)?;
        fs_err::set_permissions(parent, std::os::unix::fs::PermissionsExt::from_mode(0o700)).map_err(open)?;
    }
    let name = path.file_name().map_or_else(|| "state.db".into(), |n| n.to_string_lossy().into_owned());
    remove_dead_temp_files(parent, &name);
    let tmp = parent.join(format!(".{name}.creating-{}", std::process::id()));
    let _ = fs_err::remove_file(&tmp);
    fs_err::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(open)?;
    let made = (|| -> rusqlite::Result<()> {
        let conn = Connection::open(&tmp)?;
        conn.execute_batch("PRAGMA journal_mode=WAL;")?;
        conn.execute_batch(SCHEMA)?;
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('lineage', ?1), ('serial', '0'), ('format', '1'), ('hmac_key', ?2)",
            params![new_lineage(), random_hex::<32>()],
        )?;
        conn.close().map_err(|(_, e)| e)
    })();
    let linked = made.map_err(|e| StateError::Open { path: path.to_path_buf(), source: Box::new(e) }).and_then(|()| match fs_err::hard_link(&tmp, path) {
        Ok(()) => Ok(()),
        // Another run created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(open(e)),
    });
    let _ = fs_err::remove_file(&tmp);
    linked
}

/// Remove `.NAME.creating-PID` files whose process no longer runs (a run killed while creating).
fn remove_dead_temp_files(dir: &Path, name: &str) {
    let prefix = format!(".{name}.creating-");
    let Ok(entries) = fs_err::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file.strip_prefix(&prefix).and_then(|p| p.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !process_alive(pid) {
            tracing::info!(file = %entry.path().display(), "removing the state file a killed run left half-made");
            let _ = fs_err::remove_file(entry.path());
        }
    }
}

fn new_lineage() -> String {
    random_hex::<16>()
}

/// `N` random bytes as hex (from /dev/urandom; time and pid only if that is unavailable).
fn random_hex<const N: usize>() -> String {
    use std::io::Read;
    let mut buf = [0u8; N];
    let random = fs_err::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    if random.is_err() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let seed = (nanos ^ u128::from(std::process::id())).to_le_bytes();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = seed[i % seed.len()];
        }
    }
    buf.iter().fold(String::with_capacity(32), |mut s, b| {
        use std::fmt::Write;
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn this_host() -> String {
    hostname::get().map_or_else(|_| "unknown-host".into(), |h| h.to_string_lossy().into_owned())
}

fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") { Path::new(&format!("/proc/{pid}")).exists() } else { true }
}

#[async_trait]
impl StateStore for SqliteStore {
    async fn load(&self) -> Result<Snapshot, StateError> {
        let conn = self.conn();
        let err = self.db_err();
        let lineage: String = conn.query_row("SELECT value FROM meta WHERE key = 'lineage'", [], |r| r.get(0)).map_err(&err)?;
        let serial: String = conn.query_row("SELECT value FROM meta WHERE key = 'serial'", [], |r| r.get(0)).map_err(&err)?;
        let mut stmt = conn.prepare("SELECT addr, data FROM resources").map_err(&err)?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(&err)?;
        let hmac_key: Option<String> = conn.query_row("SELECT value FROM meta WHERE key = 'hmac_key'", [], |r| r.get(0)).optional().map_err(&err)?;
        let owner: Option<String> = conn.query_row("SELECT value FROM meta WHERE key = 'owner'", [], |r| r.get(0)).optional().map_err(&err)?;
        let mut snapshot = Snapshot {
            lineage,
            serial: serial.parse().unwrap_or(0),
            hmac_key: hmac_key.unwrap_or_default(),
            records: std::collections::BTreeMap::new(),
            owner,
        };
        let mut records = Vec::new();
        // The targets and dependencies records name are a few addresses (hosts) named by many
        // records: each is kept once and shared, not once per record that names it.
        let mut named: std::collections::HashSet<ResourceAddr> = std::collections::HashSet::new();
        for row in rows {
            let (addr, data) = row.map_err(&err)?;
            let mut record: Record =
                serde_json::from_str(&data).map_err(|e| StateError::Corrupt { path: self.path.clone(), source: format!("record `{addr}`: {e}").into() })?;
            record.target = record.target.map(|t| tend_provider::shared(&mut named, t));
            for d in &mut record.dependencies {
                *d = tend_provider::shared(&mut named, d.clone());
            }
            records.push((record.addr.clone(), record));
        }
        // Built at once from the sorted records, the map's nodes are full; inserted one by
        // one, they would be half empty.
        snapshot.records = records.into_iter().collect();
        Ok(snapshot)
    }

    async fn owner(&self) -> Result<Option<String>, StateError> {
        self.conn().query_row("SELECT value FROM meta WHERE key = 'owner'", [], |r| r.get(0)).optional().map_err(self.db_err())
    }

    async fn set_owner(&self, owner: &str) -> Result<(), StateError> {
        self.conn()
            .execute("INSERT INTO meta (key, value) VALUES ('owner', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value", params![owner])
            .map_err(self.db_err())?;
        Ok(())
    }

    async fn get(&self, addr: &ResourceAddr) -> Result<Option<Record>, StateError> {
        let conn = self.conn();
        let data: Option<String> =
            conn.query_row("SELECT data FROM resources WHERE addr = ?1", params![addr.to_string()], |r| r.get(0)).optional().map_err(self.db_err())?;
        data.map(|d| serde_json::from_str(&d).map_err(|e| StateError::Corrupt { path: self.path.clone(), source: format!("record `{addr}`: {e}").into() }))
            .transpose()
    }

    async fn hmac_key(&self) -> Result<String, StateError> {
        let conn = self.conn();
        let key: Option<String> = conn.query_row("SELECT value FROM meta WHERE key = 'hmac_key'", [], |r| r.get(0)).optional().map_err(self.db_err())?;
        if let Some(k) = key {
            return Ok(k);
        }
        // State made before keyed hashes: add a key now (hashes recorded without one read as
        // changed once, then settle).
        let k = random_hex::<32>();
        conn.execute("INSERT INTO meta (key, value) VALUES ('hmac_key', ?1)", params![k]).map_err(self.db_err())?;
        Ok(k)
    }

    async fn lock(&self, operation: &str) -> Result<LockInfo, StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.db_err())?;
        if let Some(holder) = Self::read_lock(&tx).map_err(self.db_err())? {
            if holder.host != this_host() || process_alive(holder.pid) {
                return Err(StateError::Locked { holder, path: self.path.clone() });
            }
            // Left by a run on this host that died (killed, crashed, power loss): take it over.
            tracing::warn!(path = %self.path.display(), %holder, "taking over the state lock left by a run that is no longer running");
            tx.execute("DELETE FROM lock WHERE id = 1", []).map_err(self.db_err())?;
        }
        // Holding the lock, no other run is applying: a history row still `running` is a run
        // that was killed before it could finish it.
        tx.execute("UPDATE history SET result = 'interrupted', finished_at = ?1 WHERE result = 'running'", params![now_rfc3339()]).map_err(self.db_err())?;
        let info = LockInfo { host: this_host(), pid: std::process::id(), started_at: now_rfc3339(), operation: operation.to_string() };
        tx.execute(
            "INSERT INTO lock (id, host, pid, started_at, operation) VALUES (1, ?1, ?2, ?3, ?4)",
            params![info.host, info.pid, info.started_at, info.operation],
        )
        .map_err(self.db_err())?;
        tx.commit().map_err(self.db_err())?;
        Ok(info)
    }

    async fn unlock(&self) -> Result<(), StateError> {
        let n =
            self.conn().execute("DELETE FROM lock WHERE id = 1 AND host = ?1 AND pid = ?2", params![this_host(), std::process::id()]).map_err(self.db_err())?;
        if n == 0 { Err(StateError::NotLocked { path: self.path.clone() }) } else { Ok(()) }
    }

    async fn lock_holder(&self) -> Result<Option<LockInfo>, StateError> {
        Self::read_lock(&self.conn()).map_err(self.db_err())
    }

    async fn force_unlock(&self) -> Result<Option<LockInfo>, StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.db_err())?;
        let holder = Self::read_lock(&tx).map_err(self.db_err())?;
        tx.execute("DELETE FROM lock WHERE id = 1", []).map_err(self.db_err())?;
        tx.commit().map_err(self.db_err())?;
        Ok(holder)
    }

    async fn put(&self, record: &Record) -> Result<u64, StateError> {
        let data = serde_json::to_string(record).expect("a record always serializes to JSON");
        self.write(Write::Put { addr: record.addr.to_string(), data }).await
    }

    async fn put_all(&self, records: &[Record], remove: &[ResourceAddr]) -> Result<u64, StateError> {
        let rows = records.iter().map(|r| (r.addr.to_string(), serde_json::to_string(r).expect("a record always serializes to JSON"))).collect();
        self.write(Write::PutAll(rows, remove.iter().map(ToString::to_string).collect())).await
    }

    async fn remove(&self, addr: &ResourceAddr) -> Result<u64, StateError> {
        self.write(Write::Remove { addr: addr.to_string() }).await
    }

    async fn begin_history(&self, revision: &str, who: &str, summary: &str) -> Result<i64, StateError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO history (revision, started_at, who, summary, result) VALUES (?1, ?2, ?3, ?4, 'running')",
            params![revision, now_rfc3339(), who, summary],
        )
        .map_err(self.db_err())?;
        Ok(conn.last_insert_rowid())
    }

    async fn finish_history(
        &self,
        id: i64,
        summary: &str,
        result: &str,
        errors: &[crate::HistoryError],
        outcomes: &[crate::HistoryOutcome],
    ) -> Result<(), StateError> {
        let errors = (!errors.is_empty()).then(|| serde_json::to_string(errors).expect("history errors serialize"));
        let outcomes = (!outcomes.is_empty()).then(|| serde_json::to_string(outcomes).expect("history outcomes serialize"));
        self.conn()
            .execute(
                "UPDATE history SET finished_at = ?1, summary = ?2, result = ?3, errors = ?4, outcomes = ?5 WHERE id = ?6",
                params![now_rfc3339(), summary, result, errors, outcomes, id],
            )
            .map_err(self.db_err())?;
        Ok(())
    }

    async fn history(&self) -> Result<Vec<HistoryEntry>, StateError> {
        let conn = self.conn();
        // Read-only, a file from before history kept errors or outcomes has no such column.
        let column = |c: &'static str| if Self::history_has(&conn, c) { c } else { "NULL" };
        let (errors, outcomes) = (column("errors"), column("outcomes"));
        let mut stmt = conn
            .prepare(&format!("SELECT id, revision, started_at, finished_at, who, summary, result, {errors}, {outcomes} FROM history ORDER BY id"))
            .map_err(self.db_err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(HistoryEntry {
                    id: r.get(0)?,
                    revision: r.get(1)?,
                    started_at: r.get(2)?,
                    finished_at: r.get(3)?,
                    who: r.get(4)?,
                    summary: r.get(5)?,
                    result: r.get(6)?,
                    errors: r.get::<_, Option<String>>(7)?.and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_default(),
                    outcomes: r.get::<_, Option<String>>(8)?.and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_default(),
                })
            })
            .map_err(self.db_err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.db_err())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use tend_provider::Value;

    use super::*;
    use crate::RecordStatus;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_are_committed_together_each_durable_with_its_own_serial() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = std::sync::Arc::new(SqliteStore::open(&path).unwrap());
        store.put(&record("host.file.keep")).await.unwrap();
        let start = store.load().await.unwrap().serial;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200 {
            let s = store.clone();
            tasks.spawn(async move { s.put(&record(&format!("host.file.f{i:03}"))).await });
        }
        // A remove of something absent among them fails alone.
        let s = store.clone();
        let absent = tokio::spawn(async move { s.remove(&"host.file.nothing".parse().unwrap()).await });
        let mut serials = Vec::new();
        while let Some(r) = tasks.join_next().await {
            serials.push(r.unwrap().unwrap());
        }
        assert!(matches!(absent.await.unwrap(), Err(StateError::NoSuchRecord { .. })));
        serials.sort_unstable();
        serials.dedup();
        assert_eq!(serials.len(), 200, "each write has its own serial");
        assert_eq!((serials[0], serials[199]), (start + 1, start + 200));
        // Durable: another connection sees all of them.
        let again = SqliteStore::open(&path).unwrap().load().await.unwrap();
        assert_eq!((again.records.len(), again.serial), (201, start + 200));
    }

    #[tokio::test]
    async fn a_write_whose_caller_is_dropped_while_it_waits_is_committed_and_the_next_write_goes_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = SqliteStore::open(&path).unwrap();
        // Polled once: the write is queued and its caller waits for others to join; then the
        // caller is dropped.
        {
            let rec = record("host.file.dropped");
            let mut write = std::pin::pin!(store.put(&rec));
            let first = std::future::poll_fn(|cx| std::task::Poll::Ready(write.as_mut().poll(cx))).await;
            assert!(first.is_pending(), "the write was still waiting when its caller went away");
        }
        // What it queued is in state, and the store still commits.
        let next = tokio::time::timeout(std::time::Duration::from_secs(30), store.put(&record("host.file.next"))).await;
        next.expect("the next write is not left waiting for a commit nobody makes").unwrap();
        let again = SqliteStore::open(&path).unwrap().load().await.unwrap();
        assert_eq!(again.records.keys().map(ToString::to_string).collect::<Vec<_>>(), ["host.file.dropped", "host.file.next"]);
    }

    fn record(addr: &str) -> Record {
        Record {
            addr: addr.parse().unwrap(),
            remote_id: None,
            status: RecordStatus::Ready,
            inputs_hash: "h".into(),
            attributes: std::sync::Arc::new([("path".to_string(), Value::from("/x"))].into()),
            target: None,
            dependencies: vec![],
            prevent_destroy: false,
            updated_at: now_rfc3339().into(),
        }
    }

    #[tokio::test]
    async fn creates_private_file_and_bumps_serial_per_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.db");
        let store = SqliteStore::open(&path).unwrap();
        let mode = fs_err::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let s0 = store.load().await.unwrap();
        assert_eq!(s0.serial, 0);
        assert_eq!(s0.lineage.len(), 32);
        assert_eq!(store.put(&record("host.file.a[h]")).await.unwrap(), 1);
        assert_eq!(store.put(&record("host.file.b[h]")).await.unwrap(), 2);
        assert_eq!(store.remove(&"host.file.a[h]".parse().unwrap()).await.unwrap(), 3);
        drop(store);
        let reopened = SqliteStore::open(&path).unwrap().load().await.unwrap();
        assert_eq!(reopened.serial, 3);
        assert_eq!(reopened.lineage, s0.lineage);
        assert_eq!(reopened.records.keys().map(ToString::to_string).collect::<Vec<_>>(), ["host.file.b[h]"]);
    }

    #[tokio::test]
    async fn lock_names_holder_and_detects_dead_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let a = SqliteStore::open(&path).unwrap();
        let b = SqliteStore::open(&path).unwrap();
        a.lock("apply").await.unwrap();
        match b.lock("apply").await {
            Err(StateError::Locked { holder, .. }) => assert_eq!(holder.pid, std::process::id()),
            other => panic!("expected Locked, got {other:?}"),
        }
        a.unlock().await.unwrap();
        // A lock row and a running history row left by a process that no longer exists on
        // this host: the next lock takes over and the run shows as interrupted.
        a.begin_history("git:abc", "me@here", "1 to add").await.unwrap();
        a.conn()
            .execute("INSERT INTO lock (id, host, pid, started_at, operation) VALUES (1, ?1, ?2, 'then', 'apply')", params![this_host(), 999_999_999u32])
            .unwrap();
        let taken = b.lock("apply").await.unwrap();
        assert_eq!(taken.pid, std::process::id());
        assert_eq!(b.history().await.unwrap()[0].result, "interrupted");
        // Held by a process on another host: never taken over.
        b.unlock().await.unwrap();
        a.conn().execute("INSERT INTO lock (id, host, pid, started_at, operation) VALUES (1, 'elsewhere', 1, 'then', 'apply')", []).unwrap();
        match b.lock("apply").await {
            Err(e @ StateError::Locked { .. }) => assert!(e.hint().unwrap().contains("tend state unlock --force"), "{:?}", e.hint()),
            other => panic!("expected Locked, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn creation_is_atomic_and_cleans_up_after_a_killed_creation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s/state.db");
        // What a run killed mid-creation leaves: a temp file of a dead process, or (older tend)
        // an empty state file. Neither stops the next run.
        fs_err::create_dir_all(dir.path().join("s")).unwrap();
        fs_err::write(dir.path().join("s/.state.db.creating-999999999"), b"half").unwrap();
        assert!(SqliteStore::open_read_only(&path).unwrap().is_none());
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.load().await.unwrap().serial, 0);
        let left: Vec<_> = fs_err::read_dir(dir.path().join("s")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(left.iter().all(|f| !f.contains("creating")), "{left:?}");
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&fs_err::metadata(&path).unwrap().permissions()) & 0o777, 0o600);
        let empty = dir.path().join("empty.db");
        fs_err::write(&empty, b"").unwrap();
        assert!(SqliteStore::open_read_only(&empty).unwrap().is_none());
        assert_eq!(SqliteStore::open(&empty).unwrap().load().await.unwrap().serial, 0);
    }

    #[tokio::test]
    async fn refuses_and_keeps_a_file_that_is_not_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        fs_err::write(&path, b"this is not sqlite at all, just some bytes that happen to be here").unwrap();
        let before = fs_err::read(&path).unwrap();
        assert!(matches!(SqliteStore::open(&path), Err(StateError::Corrupt { .. })));
        assert!(matches!(SqliteStore::open_read_only(&path), Err(StateError::Corrupt { .. })));
        assert_eq!(fs_err::read(&path).unwrap(), before, "a corrupt state file must never be overwritten");
    }
}
