//! The `local` transport: the machine tend runs on, through the file system and `sh`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{ExecOutput, FileAttrs, FileType, FileWrite, Lines, MAX_COMMAND_OUTPUT, OutputSink, PathStat, StatRequest, Transport, TransportError};
use crate::users::Users;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The local machine.
#[derive(Debug, Clone)]
pub struct LocalTransport {
    host: String,
    users: Arc<OnceLock<Users>>,
    /// Directory of an observed path → where it resolved when it was observed.
    resolved: Arc<std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, std::path::PathBuf>>>,
    /// How long a command may run before its process group is stopped.
    command_timeout: std::time::Duration,
}

impl LocalTransport {
    /// A transport for the local machine, named `host` in messages.
    pub fn new(host: impl Into<String>) -> Self {
        Self { host: host.into(), users: Arc::new(OnceLock::new()), resolved: Arc::default(), command_timeout: std::time::Duration::from_hours(1) }
    }

    /// Stop commands that run longer than `limit` (TERM to their process group, KILL 10 s later).
    #[must_use]
    pub fn with_command_timeout(mut self, limit: std::time::Duration) -> Self {
        self.command_timeout = limit;
        self
    }

    /// Remember where the directory of an observed path resolves now (once per directory).
    fn note_parent(&self, path: &str) {
        let Some(parent) = Path::new(path).parent() else { return };
        let mut seen = self.resolved.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !seen.contains_key(parent)
            && let Ok(real) = std::fs::canonicalize(parent)
        {
            seen.insert(parent.to_path_buf(), real);
        }
    }

    fn users(&self) -> &Users {
        self.users.get_or_init(Users::load_local)
    }

    fn err(&self, op: &'static str, path: &str) -> impl FnOnce(std::io::Error) -> TransportError + '_ {
        let path = path.to_string();
        move |source| TransportError { host: self.host.clone(), op, path, source }
    }

    fn stat_one(&self, req: &StatRequest) -> Result<PathStat, TransportError> {
        self.note_parent(&req.path);
        let absent = PathStat::absent(&req.path);
        let meta = match std::fs::symlink_metadata(&req.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(absent),
            Err(e) if e.raw_os_error() == Some(20) => return Ok(absent), // ENOTDIR: a parent is a file
            Err(e) => return Err(self.err("stat", &req.path)(e)),
        };
        let ft = meta.file_type();
        let file_type = if ft.is_file() {
            FileType::File
        } else if ft.is_dir() {
            FileType::Directory
        } else if ft.is_symlink() {
            FileType::Symlink
        } else {
            FileType::Other
        };
        let sha256 = if req.hash && file_type == FileType::File { Some(self.hash_file(&req.path)?) } else { None };
        Ok(PathStat {
            path: req.path.clone(),
            file_type: Some(file_type),
            mode: meta.mode() & 0o7777,
            owner: self.users().user_name(meta.uid()),
            group: self.users().group_name(meta.gid()),
            size: meta.len(),
            sha256,
            content: if req.content && file_type == FileType::File { Some(fs_err::read(&req.path).map_err(self.err("read", &req.path))?) } else { None },
            real_dir: None,
        })
    }

    fn hash_file(&self, path: &str) -> Result<String, TransportError> {
        thread_local! {
            // One read buffer per observing thread, not a fresh zeroed 64 KiB per file.
            static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 64 * 1024]);
        }
        let mut file = fs_err::File::open(path).map_err(self.err("read", path))?;
        let mut hasher = Sha256::new();
        BUF.with_borrow_mut(|buf| -> Result<(), TransportError> {
            loop {
                let n = file.read(buf).map_err(self.err("read", path))?;
                if n == 0 {
                    return Ok(());
                }
                hasher.update(&buf[..n]);
            }
        })?;
        Ok(hex::encode(hasher.finalize()))
    }

    /// Set mode and ownership on an existing path without following a symlink there: the path is
    /// opened with `O_NOFOLLOW` and changed through that descriptor (a link planted in its place
    /// since it was observed makes this fail, rather than chmod what the link points at).
    fn apply_attrs(&self, path: &Path, attrs: &FileAttrs) -> Result<(), TransportError> {
        use std::os::unix::fs::OpenOptionsExt;
        if attrs.mode.is_none() && attrs.owner.is_none() && attrs.group.is_none() {
            return Ok(());
        }
        let p = path.to_string_lossy();
        #[allow(clippy::disallowed_types)] // the descriptor is only for fchmod/fchown; errors name the path
        let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY).open(path).map_err(|e| {
            let e = if e.raw_os_error() == Some(libc::ELOOP) {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "it is a symlink now (not followed)")
            } else {
                e
            };
            self.err("open", &p)(e)
        })?;
        self.apply_attrs_fd(&file, &p, attrs)
    }

    /// Set mode and ownership through an open descriptor.
    #[allow(clippy::disallowed_types)]
    fn apply_attrs_fd(&self, file: &std::fs::File, p: &str, attrs: &FileAttrs) -> Result<(), TransportError> {
        if let Some(mode) = attrs.mode {
            file.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(self.err("chmod", p))?;
        }
        if attrs.owner.is_some() || attrs.group.is_some() {
            let lookup_err =
                |what: &str, name: &str| self.err("chown", p)(std::io::Error::new(std::io::ErrorKind::NotFound, format!("no {what} named `{name}`")));
            let uid = match &attrs.owner {
                Some(o) => Some(self.users().uid(o).ok_or_else(|| lookup_err("user", o))?),
                None => None,
            };
            let gid = match &attrs.group {
                Some(g) => Some(self.users().gid(g).ok_or_else(|| lookup_err("group", g))?),
                None => None,
            };
            std::os::unix::fs::fchown(file, uid, gid).map_err(self.err("chown", p))?;
        }
        Ok(())
    }

    /// Write atomically without following a link planted at or above the target: the directory
    /// must resolve where it did when observed (in this run), and is opened component by
    /// component following only safe links (see [`open_dir_nofollow`]); the temporary file is
    /// created in that descriptor (`O_EXCL`), its mode and owner set on its own descriptor, and
    /// renamed into place within it.
    fn write_blocking(&self, path: &str, content: &[u8], attrs: &FileAttrs) -> Result<(), TransportError> {
        let parent = Path::new(path).parent().unwrap_or(Path::new("/"));
        let dir = self.open_parent(path)?;
        let result = self.write_in(&dir, path, content, attrs);
        remove_dead_temp_files(parent);
        result
    }

    /// The directory `path` is written in, made where missing, resolved where it was when
    /// observed, and opened following only safe links.
    fn open_parent(&self, path: &str) -> Result<rustix::fd::OwnedFd, TransportError> {
        let parent = Path::new(path).parent().unwrap_or(Path::new("/"));
        if !parent.exists() {
            fs_err::create_dir_all(parent).map_err(self.err("create directory", &parent.to_string_lossy()))?;
        }
        let real = std::fs::canonicalize(parent).map_err(self.err("resolve directory", &parent.to_string_lossy()))?;
        let observed = self.resolved.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(parent).cloned();
        if let Some(was) = observed.filter(|was| *was != real) {
            return Err(self.err("write", path)(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{} led to {} when observed and leads to {} now (a link changed on the way; not followed)",
                    parent.display(),
                    was.display(),
                    real.display()
                ),
            )));
        }
        open_dir_nofollow(parent).map_err(self.err("open directory", &parent.to_string_lossy()))
    }

    /// Write `path` atomically in its open directory `dir`: a private temporary made afresh
    /// (`O_EXCL`, never through a link), mode and owner set on its descriptor, renamed into place.
    fn write_in(&self, dir: &rustix::fd::OwnedFd, path: &str, content: &[u8], attrs: &FileAttrs) -> Result<(), TransportError> {
        use rustix::fs::{Mode, OFlags};
        let name = Path::new(path).file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
        let temp = format!(".{name}.tend-{}-{}", std::process::id(), TEMP_COUNTER.fetch_add(1, Ordering::Relaxed));
        let result = (|| {
            let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = rustix::fs::openat(dir, temp.as_str(), flags, Mode::from_raw_mode(0o600)).map_err(|e| self.err("write", path)(e.into()))?;
            #[allow(clippy::disallowed_types)] // a descriptor from openat; errors name the path
            let mut file = std::fs::File::from(fd);
            file.write_all(content).map_err(self.err("write", path))?;
            // Mode and owner through the descriptor, not the name, which could be swapped.
            self.apply_attrs_fd(&file, path, &FileAttrs { mode: Some(attrs.mode.unwrap_or(0o644)), ..attrs.clone() })?;
            drop(file);
            // renameat replaces whatever is at the target, a link included; it never follows one.
            rustix::fs::renameat(dir, temp.as_str(), dir, name.as_str()).map_err(|e| self.err("rename into place", path)(e.into()))
        })();
        if result.is_err() {
            let _ = rustix::fs::unlinkat(dir, temp.as_str(), rustix::fs::AtFlags::empty());
        }
        result
    }

    /// Every file of a batch in one blocking task, each directory resolved and opened once.
    fn write_files_blocking(&self, files: &[FileWrite]) -> Vec<Result<(), TransportError>> {
        let mut dirs: HashMap<&Path, rustix::fd::OwnedFd> = HashMap::new();
        files
            .iter()
            .map(|f| {
                let Some(content) = &f.content else { return self.apply_attrs(Path::new(&f.path), &f.attrs) };
                let parent = Path::new(&f.path).parent().unwrap_or(Path::new("/"));
                if !dirs.contains_key(parent) {
                    let dir = self.open_parent(&f.path)?;
                    remove_dead_temp_files(parent);
                    dirs.insert(parent, dir);
                }
                self.write_in(&dirs[parent], &f.path, content, &f.attrs)
            })
            .collect()
    }
}

/// Open the directory `path` walking it component by component without following links,
/// except links that are safe to follow: owned by root, or by the owner of a directory that only
/// that owner may write to (as systemd's `chase` with `CHASE_SAFE`). A link planted by someone
/// else — an unprivileged user with write access somewhere on the way — fails the open.
fn open_dir_nofollow(path: &Path) -> std::io::Result<rustix::fd::OwnedFd> {
    use std::os::unix::ffi::OsStrExt;

    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
    let root = rustix::fs::open("/", flags, Mode::empty())?;
    let mut stack = vec![root];
    let mut todo: std::collections::VecDeque<std::ffi::OsString> = path
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.to_os_string()),
            std::path::Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let here = stack.last().expect("the root stays on the stack");
        match rustix::fs::openat(here, name.as_os_str(), flags, Mode::empty()) {
            Ok(fd) => stack.push(fd),
            Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
                let link = rustix::fs::statat(here, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)?;
                if FileType::from_raw_mode(link.st_mode) != FileType::Symlink {
                    return Err(rustix::io::Errno::NOTDIR.into());
                }
                let dir = rustix::fs::fstat(here)?;
                let safe = link.st_uid == 0 || (link.st_uid == dir.st_uid && dir.st_mode & 0o022 == 0);
                if !safe {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::PermissionDenied,
                        format!(
                            "`{}` on the way is a symlink owned by uid {} in a directory owned by uid {}{}: not followed",
                            name.to_string_lossy(),
                            link.st_uid,
                            dir.st_uid,
                            if dir.st_mode & 0o022 == 0 { "" } else { " that others may write to" }
                        ),
                    ));
                }
                links += 1;
                if links > 40 {
                    return Err(rustix::io::Errno::LOOP.into());
                }
                let target = rustix::fs::readlinkat(here, name.as_os_str(), Vec::new())?;
                let target = Path::new(std::ffi::OsStr::from_bytes(target.as_bytes()));
                if target.is_absolute() {
                    stack.truncate(1);
                }
                for part in target.components().rev() {
                    match part {
                        std::path::Component::Normal(n) => todo.push_front(n.to_os_string()),
                        std::path::Component::ParentDir => todo.push_front("..".into()),
                        _ => {}
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(stack.pop().expect("the root stays on the stack"))
}

/// Remove the `.NAME.tend-PID-N` temporary files a killed run of tend left in `dir` (their
/// process is gone). Each directory is looked at once per run.
fn remove_dead_temp_files(dir: &Path) {
    static SEEN: std::sync::Mutex<Option<std::collections::HashSet<std::path::PathBuf>>> = std::sync::Mutex::new(None);
    if !SEEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_or_insert_with(Default::default).insert(dir.to_path_buf()) {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(pid) = file
            .to_str()
            .filter(|f| f.starts_with('.'))
            .and_then(|f| f.rsplit_once(".tend-"))
            .and_then(|(_, r)| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// `realpath -m`: the deepest existing ancestor resolved through symlinks, with the rest as
/// written.
fn resolve_missing(dir: &Path) -> Option<String> {
    let mut base = dir;
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(base) {
            let mut out = real;
            out.extend(rest.iter().rev());
            return out.to_str().map(str::to_string);
        }
        rest.push(base.file_name()?);
        base = base.parent()?;
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, TransportError> + Send + 'static) -> Result<T, TransportError> {
    tokio::task::spawn_blocking(f).await.expect("transport tasks do not panic")
}

/// Paths observed per call: calls cost nothing here, and a read of 100,000 files then holds
/// the stats of a thousand at a time, not all of them.
const OBSERVE_BATCH: usize = 1024;

#[async_trait]
impl Transport for LocalTransport {
    fn host(&self) -> &str {
        &self.host
    }

    fn observe_batch(&self) -> usize {
        OBSERVE_BATCH
    }

    async fn stat_many(&self, reqs: &[StatRequest]) -> Result<Vec<PathStat>, TransportError> {
        let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get).min(8);
        let chunk = reqs.len().div_ceil(threads).max(64);
        let mut tasks = Vec::new();
        for part in reqs.chunks(chunk) {
            let part = part.to_vec();
            let me = self.clone();
            tasks.push(tokio::task::spawn_blocking(move || part.iter().map(|r| me.stat_one(r)).collect::<Result<Vec<_>, _>>()));
        }
        let mut out = Vec::with_capacity(reqs.len());
        for t in tasks {
            out.extend(t.await.expect("stat tasks do not panic")?);
        }
        // Where each directory resolves, once per directory: what observing it noted (existing
        // directories), else resolved as far as it exists.
        let noted = self.resolved.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut real: std::collections::HashMap<&Path, Option<String>> = std::collections::HashMap::new();
        for st in &mut out {
            if let Some(parent) = Path::new(&st.path).parent() {
                let resolved =
                    real.entry(parent).or_insert_with(|| noted.get(parent).map_or_else(|| resolve_missing(parent), |r| r.to_str().map(str::to_string)));
                st.real_dir.clone_from(resolved);
            }
        }
        Ok(out)
    }

    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, TransportError> {
        let (me, path) = (self.clone(), path.to_string());
        blocking(move || match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(me.err("read", &path)(e)),
        })
        .await
    }

    async fn write_file(&self, path: &str, content: &[u8], attrs: &FileAttrs) -> Result<(), TransportError> {
        let (me, path, content, attrs) = (self.clone(), path.to_string(), zeroize::Zeroizing::new(content.to_vec()), attrs.clone());
        blocking(move || me.write_blocking(&path, &content, &attrs)).await
    }

    /// All in one blocking task (not one hand-off to the blocking pool per file), each
    /// directory resolved and opened once; every file written as [`Transport::write_file`] does.
    async fn write_files(&self, files: &[FileWrite]) -> Vec<Result<(), TransportError>> {
        let (me, files) = (self.clone(), files.to_vec());
        tokio::task::spawn_blocking(move || me.write_files_blocking(&files)).await.expect("transport tasks do not panic")
    }

    async fn set_attrs(&self, path: &str, attrs: &FileAttrs) -> Result<(), TransportError> {
        let (me, path, attrs) = (self.clone(), path.to_string(), attrs.clone());
        blocking(move || me.apply_attrs(Path::new(&path), &attrs)).await
    }

    async fn create_dir(&self, path: &str, attrs: &FileAttrs) -> Result<(), TransportError> {
        let (me, path, attrs) = (self.clone(), path.to_string(), attrs.clone());
        blocking(move || {
            fs_err::create_dir_all(&path).map_err(me.err("create directory", &path))?;
            me.apply_attrs(Path::new(&path), &attrs)
        })
        .await
    }

    async fn remove_file(&self, path: &str) -> Result<(), TransportError> {
        let (me, path) = (self.clone(), path.to_string());
        blocking(move || match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(me.err("remove", &path)(e)),
            _ => Ok(()),
        })
        .await
    }

    async fn remove_dir(&self, path: &str) -> Result<(), TransportError> {
        let (me, path) = (self.clone(), path.to_string());
        blocking(move || match std::fs::remove_dir(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(me.err("remove directory", &path)(e)),
            _ => Ok(()),
        })
        .await
    }

    async fn exec_streamed(&self, command: &str, cwd: Option<&str>, sink: Option<&OutputSink<'_>>) -> Result<ExecOutput, TransportError> {
        use tokio::io::AsyncWriteExt;
        let mut cmd = tokio::process::Command::new("sh");
        // The script on stdin, not in argv (visible to every user in /proc). Its own process
        // group: Ctrl-C at the terminal stops tend scheduling, not the command already running,
        // which finishes as the interrupt message promises.
        cmd.args(["-c", "eval \"$(cat)\""])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(self.err("run", command))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(command.as_bytes()).await.map_err(self.err("run", command))?;
        }
        let group = child.id().and_then(|p| i32::try_from(p).ok()).and_then(rustix::process::Pid::from_raw);
        let stop = |signal: rustix::process::Signal| {
            if let Some(g) = group {
                let _ = rustix::process::kill_process_group(g, signal);
            }
        };
        // Both streams read as they come, each line to the sink as it is printed.
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let waiting = async {
            let (out, err) =
                tokio::join!(drain(stdout, Lines::new("stdout", sink, MAX_COMMAND_OUTPUT)), drain(stderr, Lines::new("stderr", sink, MAX_COMMAND_OUTPUT)));
            let status = child.wait().await?;
            Ok::<_, std::io::Error>((status, out?, err?))
        };
        tokio::pin!(waiting);
        let Ok(out) = tokio::time::timeout(self.command_timeout, &mut waiting).await else {
            stop(rustix::process::Signal::TERM);
            if tokio::time::timeout(std::time::Duration::from_secs(10), &mut waiting).await.is_err() {
                stop(rustix::process::Signal::KILL);
                // A process that left the group (setsid) may hold the output pipes open for
                // ever: tend stops waiting for them soon after the kill.
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), &mut waiting).await;
            }
            return Err(self.err("run", command)(std::io::Error::other(format!(
                "did not finish within {} s and was stopped (command_timeout of `{}`)",
                self.command_timeout.as_secs(),
                self.host
            ))));
        };
        let (status, stdout, stderr) = out.map_err(self.err("run", command))?;
        Ok(ExecOutput { status: status.code().unwrap_or(-1), stdout, stderr })
    }
}

/// Read a command's output stream to its end through `lines`.
async fn drain<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>, mut lines: Lines<'_>) -> std::io::Result<String> {
    use tokio::io::AsyncReadExt;
    if let Some(mut pipe) = pipe {
        let mut buf = vec![0u8; 8 << 10];
        loop {
            let n = pipe.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            lines.push(&buf[..n]);
        }
    }
    Ok(lines.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn temp_files_of_killed_runs_are_removed_by_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join(".a.txt.tend-999999999-0");
        let ours = dir.path().join(format!(".b.txt.tend-{}-7", std::process::id()));
        let other = dir.path().join(".notes.tend-backup");
        for p in [&dead, &ours, &other] {
            std::fs::write(p, "half").unwrap();
        }
        let t = LocalTransport::new("local");
        t.write_file(&dir.path().join("a.txt").to_string_lossy(), b"x", &FileAttrs::default()).await.unwrap();
        assert!(!dead.exists(), "a killed run's temp file is removed");
        assert!(ours.exists() && other.exists(), "a live run's and files that are not tend's stay");
    }

    #[tokio::test]
    async fn writes_atomically_and_observes_in_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let t = LocalTransport::new("local");
        let a = dir.path().join("deep/a.txt").to_string_lossy().into_owned();
        let missing = dir.path().join("missing").to_string_lossy().into_owned();
        t.write_file(&a, b"hello\n", &FileAttrs { mode: Some(0o640), ..Default::default() }).await.unwrap();
        let stats = t
            .stat_many(&[StatRequest { path: a.clone(), hash: true, content: true }, StatRequest { path: missing, hash: true, content: false }])
            .await
            .unwrap();
        assert_eq!(stats[0].file_type, Some(FileType::File));
        assert_eq!(stats[0].mode, 0o640);
        assert_eq!(stats[0].size, 6);
        assert_eq!(stats[0].sha256.as_deref(), Some("5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"));
        assert_eq!(stats[0].content.as_deref(), Some(&b"hello\n"[..]));
        assert_eq!(stats[1].file_type, None);
        let leftovers: Vec<_> = fs_err::read_dir(dir.path().join("deep")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file is left behind");
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_stopped_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let t = LocalTransport::new("local").with_command_timeout(std::time::Duration::from_secs(1));
        let started = std::time::Instant::now();
        // A child in the background that would outlive a kill of `sh` alone.
        let marker = dir.path().join("still-running");
        let cmd = format!("(sleep 3; touch {}) & sleep 30", marker.display());
        let err = t.exec(&cmd, None).await.unwrap_err();
        assert!(err.source.to_string().contains("did not finish within 1 s and was stopped (command_timeout of `local`)"), "{err}: {}", err.source);
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        assert!(!marker.exists(), "the command's background child was stopped too");
    }

    #[tokio::test]
    async fn a_command_whose_escaped_child_holds_its_output_open_does_not_hang_tend() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let t = LocalTransport::new("local").with_command_timeout(std::time::Duration::from_secs(1));
        // The child leaves the process group (so the stop signals miss it) with our stdout.
        let cmd = format!("setsid sleep 60 & echo $! > {}; exit 0", pidfile.display());
        let started = std::time::Instant::now();
        let result = t.exec(&cmd, None).await;
        let elapsed = started.elapsed();
        if let Some(pid) = fs_err::read_to_string(&pidfile).ok().and_then(|p| p.trim().parse::<i32>().ok()).and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        let err = format!("{:?}", result.unwrap_err());
        assert!(err.contains("did not finish within 1 s"), "{err}");
        assert!(elapsed < std::time::Duration::from_secs(30), "gave up waiting for the pipe: {elapsed:?}");
    }

    #[tokio::test]
    async fn exec_reports_status_and_output() {
        let t = LocalTransport::new("local");
        let out = t.exec("echo out; echo err >&2; exit 3", None).await.unwrap();
        assert_eq!((out.status, out.stdout.as_str(), out.stderr.as_str()), (3, "out\n", "err\n"));
    }
}
