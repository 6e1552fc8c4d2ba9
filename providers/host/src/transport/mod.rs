//! The [`Transport`] trait: everything host resources need from a host.

mod local;
mod ssh;
pub mod ssh_config;

use async_trait::async_trait;
pub use local::LocalTransport;
pub use ssh::{SshTarget, SshTransport, quote};

/// What kind of object a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// Regular file.
    File,
    /// Directory.
    Directory,
    /// Symbolic link (not followed).
    Symlink,
    /// Anything else.
    Other,
}

/// One path to observe.
#[derive(Debug, Clone)]
pub struct StatRequest {
    /// Absolute path.
    pub path: String,
    /// Whether to hash the content if it is a regular file.
    pub hash: bool,
    /// Whether to return the content of a regular file (small config files edited in place).
    pub content: bool,
}

/// What a path is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStat {
    /// The path asked for.
    pub path: String,
    /// `None` when absent.
    pub file_type: Option<FileType>,
    /// Permission bits (`0o7777` mask).
    pub mode: u32,
    /// Owner user name (or numeric id if it has no name).
    pub owner: String,
    /// Owner group name (or numeric id).
    pub group: String,
    /// Size in bytes.
    pub size: u64,
    /// Hex SHA-256 of the content, for regular files when asked.
    pub sha256: Option<String>,
    /// The content, for regular files when asked.
    pub content: Option<Vec<u8>>,
    /// Where the path's directory resolves through symlinks (as `realpath -m`), when known:
    /// two paths that differ in config but land in one place are found by it.
    pub real_dir: Option<String>,
}

impl PathStat {
    /// A path that does not exist.
    pub fn absent(path: &str) -> Self {
        Self {
            path: path.to_string(),
            file_type: None,
            mode: 0,
            owner: String::new(),
            group: String::new(),
            size: 0,
            sha256: None,
            content: None,
            real_dir: None,
        }
    }
}

/// Attributes to set on a written file or directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileAttrs {
    /// Permission bits.
    pub mode: Option<u32>,
    /// Owner user name.
    pub owner: Option<String>,
    /// Owner group name.
    pub group: Option<String>,
}

/// Result of running a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit status (`-1` if killed by a signal).
    pub status: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// A transport failure, naming the host, the operation and the path.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path} on host `{host}` failed")]
pub struct TransportError {
    /// Host name.
    pub host: String,
    /// Operation, e.g. `write`.
    pub op: &'static str,
    /// The path or command concerned.
    pub path: String,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

/// How host resources reach a host.
///
/// # Guarantees expected of implementations
/// - `stat_many` observes all paths in as few round trips as the transport allows (one for SSH).
/// - `write_file` is atomic: readers see the old or the new content, never a mix; missing
///   parent directories are created.
/// - Removing what is absent succeeds.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Host name, for messages.
    fn host(&self) -> &str;
    /// Observe many paths at once.
    async fn stat_many(&self, reqs: &[StatRequest]) -> Result<Vec<PathStat>, TransportError>;
    /// Observe paths and run read-only probe scripts, in as few round trips as the transport
    /// allows (one for SSH); returns the stats and each probe's stdout, in order.
    async fn observe(&self, stats: &[StatRequest], probes: &[String]) -> Result<(Vec<PathStat>, Vec<String>), TransportError> {
        let found = self.stat_many(stats).await?;
        let mut outputs = Vec::with_capacity(probes.len());
        for p in probes {
            outputs.push(self.exec(p, None).await?.stdout);
        }
        Ok((found, outputs))
    }
    /// Read a file; `None` when it does not exist.
    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, TransportError>;
    /// Write a file atomically with the given attributes.
    async fn write_file(&self, path: &str, content: &[u8], attrs: &FileAttrs) -> Result<(), TransportError>;
    /// Set mode / owner / group of an existing path.
    async fn set_attrs(&self, path: &str, attrs: &FileAttrs) -> Result<(), TransportError>;
    /// Create a directory (and missing parents) with the given attributes on the leaf.
    async fn create_dir(&self, path: &str, attrs: &FileAttrs) -> Result<(), TransportError>;
    /// Remove a file.
    async fn remove_file(&self, path: &str) -> Result<(), TransportError>;
    /// Remove an empty directory.
    async fn remove_dir(&self, path: &str) -> Result<(), TransportError>;
    /// Run `command` with `sh` in `cwd`. The command travels on the shell's stdin (read whole,
    /// then evaluated), never on a command line, so what it holds (a secret) is not visible in
    /// the host's process list; the command itself gets an empty stdin.
    async fn exec(&self, command: &str, cwd: Option<&str>) -> Result<ExecOutput, TransportError>;
    /// The host key accepted when connecting (`ssh-ed25519 AAAA…`), for transports that have one.
    fn host_key(&self) -> Option<String> {
        None
    }
}
