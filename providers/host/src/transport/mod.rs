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

/// Each file written (or its attributes set) by its own call, in order.
pub async fn one_by_one<T: Transport + ?Sized>(t: &T, files: &[FileWrite]) -> Vec<Result<(), TransportError>> {
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        out.push(match &f.content {
            Some(c) => t.write_file(&f.path, c, &f.attrs).await,
            None => t.set_attrs(&f.path, &f.attrs).await,
        });
    }
    out
}

/// One file of [`Transport::write_files`].
#[derive(Clone)]
pub struct FileWrite {
    /// Absolute path on the host.
    pub path: String,
    /// New content; `None` when only the attributes change.
    pub content: Option<zeroize::Zeroizing<Vec<u8>>>,
    /// Mode, owner, group.
    pub attrs: FileAttrs,
}

impl std::fmt::Debug for FileWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWrite").field("path", &self.path).field("bytes", &self.content.as_ref().map(|c| c.len())).finish_non_exhaustive()
    }
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

/// The most of a command's stdout (and of its stderr) kept: it is shown in errors and parsed by
/// probes (a package list), never stored whole.
pub(crate) const MAX_COMMAND_OUTPUT: usize = 16 << 20;

/// Where the lines a command prints go as it prints them: `(stream, line)` with `stream`
/// `stdout` or `stderr` and the line without its newline.
pub type OutputSink<'a> = dyn Fn(&'static str, &str) + Send + Sync + 'a;

/// The most of one line given to an [`OutputSink`]: a longer run without a newline is given in
/// pieces of this size.
const LONGEST_LINE: usize = 8 << 10;

/// One output stream of a command as it arrives: each complete line goes to the sink, and at
/// most `cap` bytes are kept (what goes past it is read and dropped, so a command that prints
/// without end cannot fill tend's memory).
pub(crate) struct Lines<'a> {
    stream: &'static str,
    sink: Option<&'a OutputSink<'a>>,
    pending: Vec<u8>,
    kept: Vec<u8>,
    cap: usize,
}

impl<'a> Lines<'a> {
    pub(crate) fn new(stream: &'static str, sink: Option<&'a OutputSink<'a>>, cap: usize) -> Self {
        Self { stream, sink, pending: Vec::new(), kept: Vec::new(), cap }
    }

    /// Take the next piece of output.
    pub(crate) fn push(&mut self, data: &[u8]) {
        self.kept.extend_from_slice(&data[..data.len().min(self.cap.saturating_sub(self.kept.len()))]);
        let Some(sink) = self.sink else { return };
        for mut piece in data.split_inclusive(|b| *b == b'\n') {
            while !piece.is_empty() {
                let take = piece.len().min(LONGEST_LINE - self.pending.len());
                self.pending.extend_from_slice(&piece[..take]);
                piece = &piece[take..];
                if self.pending.ends_with(b"\n") || self.pending.len() >= LONGEST_LINE {
                    let line = String::from_utf8_lossy(&self.pending);
                    sink(self.stream, line.strip_suffix('\n').unwrap_or(&line));
                    self.pending.clear();
                }
            }
        }
    }

    /// What was kept, once the stream ended (a last line without a newline goes to the sink).
    pub(crate) fn finish(self) -> String {
        if let (Some(sink), false) = (self.sink, self.pending.is_empty()) {
            sink(self.stream, &String::from_utf8_lossy(&self.pending));
        }
        String::from_utf8_lossy(&self.kept).into_owned()
    }
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
    /// How many paths one [`Transport::observe`] call should take at most. A transport whose
    /// calls cost a round trip takes them all at once (the default); one whose calls cost
    /// nothing (the local host) takes them in batches, so that a read of many paths does not
    /// hold all their stats at once.
    fn observe_batch(&self) -> usize {
        usize::MAX
    }
    /// Read a file; `None` when it does not exist.
    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, TransportError>;
    /// Write a file atomically with the given attributes.
    async fn write_file(&self, path: &str, content: &[u8], attrs: &FileAttrs) -> Result<(), TransportError>;
    /// Set mode / owner / group of an existing path.
    async fn set_attrs(&self, path: &str, attrs: &FileAttrs) -> Result<(), TransportError>;
    /// Write several files, each as [`Transport::write_file`] does (or, without content, set
    /// its attributes as [`Transport::set_attrs`] does), in as few round trips as the transport
    /// can; one result per file, in order. The default writes them one by one.
    async fn write_files(&self, files: &[FileWrite]) -> Vec<Result<(), TransportError>> {
        one_by_one(self, files).await
    }
    /// Create a directory (and missing parents) with the given attributes on the leaf.
    async fn create_dir(&self, path: &str, attrs: &FileAttrs) -> Result<(), TransportError>;
    /// Remove a file.
    async fn remove_file(&self, path: &str) -> Result<(), TransportError>;
    /// Remove an empty directory.
    async fn remove_dir(&self, path: &str) -> Result<(), TransportError>;
    /// Run `command` with `sh` in `cwd`. The command travels on the shell's stdin (read whole,
    /// then evaluated), never on a command line, so what it holds (a secret) is not visible in
    /// the host's process list; the command itself gets an empty stdin.
    async fn exec(&self, command: &str, cwd: Option<&str>) -> Result<ExecOutput, TransportError> {
        self.exec_streamed(command, cwd, None).await
    }
    /// [`Transport::exec`], giving each line the command prints to `sink` as it is printed.
    async fn exec_streamed(&self, command: &str, cwd: Option<&str>, sink: Option<&OutputSink<'_>>) -> Result<ExecOutput, TransportError>;
    /// The host key accepted when connecting (`ssh-ed25519 AAAA…`), for transports that have one.
    fn host_key(&self) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn output_goes_to_the_sink_line_by_line_however_it_is_cut_and_is_kept_up_to_the_cap() {
        let got = Mutex::new(Vec::new());
        let sink = |stream: &'static str, line: &str| got.lock().unwrap().push(format!("{stream}:{line}"));
        let mut lines = Lines::new("stdout", Some(&sink), 12);
        for piece in [&b"one\ntw"[..], b"o\n", b"", b"thr", b"ee\nlast"] {
            lines.push(piece);
        }
        assert_eq!(*got.lock().unwrap(), ["stdout:one", "stdout:two", "stdout:three"], "complete lines only, as they complete");
        assert_eq!(lines.finish(), "one\ntwo\nthre", "at most the cap kept");
        assert_eq!(got.lock().unwrap().last().map(String::as_str), Some("stdout:last"), "the last line without a newline at the end");
        // A run without newlines is given in bounded pieces.
        got.lock().unwrap().clear();
        let mut long = Lines::new("stderr", Some(&sink), 0);
        long.push(&vec![b'x'; LONGEST_LINE * 2 + 5]);
        assert_eq!(long.finish(), "");
        let sizes: Vec<usize> = got.lock().unwrap().iter().map(|l| l.len() - "stderr:".len()).collect();
        assert_eq!(sizes, [LONGEST_LINE, LONGEST_LINE, 5]);
    }
}
