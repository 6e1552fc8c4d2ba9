//! The fake Kubernetes API server (`tests/testbed/fake_kube_apiserver.py`), one per test, always
//! stopped.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::need::{Need, need};
use super::repo;

/// A running fake API server; dropped → stopped (by its PID).
pub struct FakeKube {
    child: Child,
    pub dir: tempfile::TempDir,
}

impl FakeKube {
    /// Start it; the test must be listed as needing `kubectl` (see [`need`]).
    pub fn start() -> Self {
        need(&[Need::Kubectl]);
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new("python3")
            .arg(repo().join("tests/testbed/fake_kube_apiserver.py"))
            .arg(dir.path().join("server"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let port: Option<u16> = line.trim().strip_prefix("ready ").and_then(|p| p.parse().ok());
        if port.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the fake API server did not start: {line:?}");
        }
        Self { child, dir }
    }

    /// The kubeconfig it wrote (its CA, its token).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("server/kubeconfig")
    }

    /// `kubectl ARGS` against it, with a discovery cache of its own.
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        self.kubectl_with(&self.kubeconfig(), args)
    }

    /// `kubectl ARGS` with another kubeconfig (another user of the same server).
    pub fn kubectl_with(&self, kubeconfig: &std::path::Path, args: &[&str]) -> std::process::Output {
        Command::new("kubectl")
            .arg("--cache-dir")
            .arg(self.dir.path().join("kubectl-cache"))
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("HTTPS_PROXY")
            .output()
            .expect("kubectl runs")
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
