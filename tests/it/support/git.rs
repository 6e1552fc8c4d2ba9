//! A real Git server for tests: a bare repository served by `git daemon` and by
//! smart HTTP (`tests/testbed/git_http.py`), plus a working clone to commit and push from.
//! Both servers are child processes of the test, stopped by PID when it ends, pass or fail.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::need::{Need, need};
use super::repo;

/// A free TCP port on 127.0.0.1 (bound and released; the race is acceptable in tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare repository `cfg.git` with a `main` branch, a working clone, and servers.
pub struct GitServer {
    pub dir: tempfile::TempDir,
    daemon: Option<Child>,
    daemon_port: u16,
    http: Option<Child>,
    http_port: u16,
}

impl GitServer {
    /// Set up the repository (no servers yet); the test must be listed as needing `git`.
    pub fn new() -> Self {
        need(&[Need::Git]);
        let dir = tempfile::tempdir().expect("temp dir");
        let bare = dir.path().join("srv/cfg.git");
        fs_err::create_dir_all(&bare).expect("mkdir");
        git(&bare, &["init", "-q", "--bare"]);
        git(&bare, &["symbolic-ref", "HEAD", "refs/heads/main"]);
        let work = dir.path().join("work");
        fs_err::create_dir_all(&work).expect("mkdir");
        git(&work, &["init", "-q", "-b", "main"]);
        Self { dir, daemon: None, daemon_port: 0, http: None, http_port: 0 }
    }

    /// The bare repository.
    pub fn bare(&self) -> PathBuf {
        self.dir.path().join("srv/cfg.git")
    }

    /// The working clone.
    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Write files, commit them, push to the server; returns the commit id.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        super::write_tree(&self.work(), files);
        git(&self.work(), &["add", "-A"]);
        git(&self.work(), &["commit", "-q", "--allow-empty", "-m", message]);
        git(&self.work(), &["push", "-q", "--force", &self.bare().to_string_lossy(), "main"]);
        git(&self.work(), &["rev-parse", "HEAD"])
    }

    /// Like [`Self::commit`], SSH-signed with `key` (a private key file).
    pub fn commit_signed(&self, files: &[(&str, &str)], message: &str, key: &Path) -> String {
        super::write_tree(&self.work(), files);
        git(&self.work(), &["add", "-A"]);
        let signing = format!("user.signingkey={}", key.display());
        git(&self.work(), &["-c", "gpg.format=ssh", "-c", &signing, "commit", "-q", "-S", "--allow-empty", "-m", message]);
        git(&self.work(), &["push", "-q", "--force", &self.bare().to_string_lossy(), "main"]);
        git(&self.work(), &["rev-parse", "HEAD"])
    }

    /// Run git in the working clone.
    pub fn git(&self, args: &[&str]) -> String {
        git(&self.work(), args)
    }

    /// Push the working clone's `refspec` (e.g. a tag).
    pub fn push(&self, refspec: &str) {
        git(&self.work(), &["push", "-q", "--force", &self.bare().to_string_lossy(), refspec]);
    }

    /// Start `git daemon` (again, on the same port when restarted).
    pub fn start_daemon(&mut self) -> String {
        if self.daemon_port == 0 {
            self.daemon_port = free_port();
        }
        // `git daemon` would run git-daemon as its child and leave it behind when killed: start
        // git-daemon itself, so stopping it by PID stops the server.
        let exec_path = git(self.dir.path(), &["--exec-path"]);
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .args([
                "--reuseaddr",
                "--listen=127.0.0.1",
                &format!("--port={}", self.daemon_port),
                &format!("--base-path={}", self.dir.path().join("srv").display()),
                "--export-all",
                "--enable=receive-pack",
            ])
            .arg(self.dir.path().join("srv"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon starts");
        self.daemon = Some(child);
        let url = format!("git://127.0.0.1:{}/cfg.git", self.daemon_port);
        wait_for_port(self.daemon_port);
        url
    }

    /// Stop `git daemon` (the server goes away).
    pub fn stop_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start the smart-HTTP server; returns the repository URL.
    pub fn start_http(&mut self) -> String {
        let mut child = Command::new("python3")
            .arg(repo().join("tests/testbed/git_http.py"))
            .arg(self.dir.path().join("srv"))
            .arg("0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("git_http.py starts");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().expect("stdout")), &mut line).expect("port");
        self.http_port = line.trim().parse().expect("a port");
        self.http = Some(child);
        format!("http://127.0.0.1:{}/cfg.git", self.http_port)
    }

    /// Install a post-receive hook (a `sh` script body).
    pub fn hook(&self, body: &str) {
        let path = self.bare().join("hooks/post-receive");
        fs_err::write(&path, format!("#!/bin/sh\n{body}\n")).expect("hook");
        fs_err::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    }
}

fn wait_for_port(port: u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("nothing listens on port {port}");
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.stop_daemon();
        if let Some(mut c) = self.http.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
