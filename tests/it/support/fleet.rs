//! A fleet of real OpenSSH hosts (tests/testbed/fleet.sh), one per test, always torn down.

use std::path::PathBuf;
use std::process::Command;

use super::need::{Need, need};
use super::repo;

/// A running fleet; dropped → `fleet.sh down` and its network slot released.
pub struct Fleet {
    pub work: PathBuf,
    pub id: String,
    pub net: String,
    slot: PathBuf,
    rootfs: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

fn script() -> PathBuf {
    repo().join("tests/testbed/fleet.sh")
}

impl Fleet {
    /// Start `n` hosts h1..hn; the test must be listed as needing `sshd` (see [`need`]).
    pub fn up(n: usize) -> Self {
        need(&[Need::Sshd]);
        Self::start(n, None)
    }

    /// Start `n` hosts whose sessions each run in their own overlay of the Debian root
    /// filesystem (tests/testbed/rootfs.sh): they install packages and create accounts for real
    /// without touching this machine. The test must be listed as needing `rootfs`.
    pub fn up_rootfs(n: usize) -> Self {
        need(&[Need::Rootfs]);
        Self::start(n, Some(super::need::rootfs()))
    }

    fn start(n: usize, rootfs: Option<PathBuf>) -> Self {
        // A network slot no other test process holds: an atomically created directory.
        let slots = std::env::temp_dir().join("tend-test-fleet-slots");
        fs_err::create_dir_all(&slots).expect("slots dir");
        let x = (100..250).find(|x| std::fs::create_dir(slots.join(x.to_string())).is_ok()).expect("a free fleet slot");
        let dir = tempfile::tempdir().expect("temp dir");
        let fleet =
            Self { work: dir.path().join("fleet"), id: format!("t{x}"), net: format!("10.214.{x}"), slot: slots.join(x.to_string()), rootfs, _dir: dir };
        fleet.sh(&["down"]); // whatever a crashed earlier run left behind under this id
        let out = fleet.sh(&["up", &n.to_string()]);
        assert!(out.status.success(), "fleet up failed: {}", String::from_utf8_lossy(&out.stderr));
        fleet
    }

    fn sh(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new("bash");
        cmd.arg(script()).args(args).env("FLEET_ID", &self.id).env("FLEET_WORK", &self.work).env("FLEET_NET", &self.net);
        if let Some(root) = &self.rootfs {
            cmd.env("FLEET_ROOTFS", root);
        }
        cmd.output().expect("fleet.sh runs")
    }

    /// Run `command` on host `name` with the machine's ssh client; its output, whatever the status.
    pub fn ssh(&self, name: &str, command: &str) -> std::process::Output {
        Command::new("ssh").arg("-F").arg(self.work.join("ssh_config")).args([name, command]).stdin(std::process::Stdio::null()).output().expect("ssh runs")
    }

    /// What host `name` changed in its root filesystem (the upper layer of its overlay).
    pub fn changed_root(&self, name: &str) -> PathBuf {
        self.work.join("hosts").join(name).join("upper")
    }

    /// Address of host hK.
    pub fn address(&self, k: usize) -> String {
        format!("{}.{}", self.net, 10 + k)
    }

    /// An address in the fleet's network where nothing listens.
    pub fn unused_address(&self) -> String {
        format!("{}.250", self.net)
    }

    /// The client key that every host authorizes.
    pub fn key(&self) -> PathBuf {
        self.work.join("keys/id_ed25519")
    }

    /// The `known_hosts` file with every host's key.
    pub fn known_hosts(&self) -> PathBuf {
        self.work.join("known_hosts")
    }

    /// What host `name` holds under /srv, seen from the test.
    pub fn srv(&self, name: &str) -> PathBuf {
        self.work.join("hosts").join(name).join("srv")
    }

    /// The public host key of `name` (`ssh-ed25519 AAAA…`).
    pub fn host_key(&self, name: &str) -> String {
        let text = fs_err::read_to_string(self.work.join("hosts").join(name).join("ssh_host_ed25519_key.pub")).expect("host key");
        text.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    }

    /// Give host hK a new host key (a reinstalled machine), restarting it.
    pub fn rekey_host(&self, k: usize) {
        let name = format!("h{k}");
        assert!(self.sh(&["remove", &name]).status.success());
        let key = self.work.join("hosts").join(&name).join("ssh_host_ed25519_key");
        let _ = fs_err::remove_file(&key);
        let _ = fs_err::remove_file(key.with_extension("pub"));
        let out = self.sh(&["add", &self.address(k), &name]);
        assert!(out.status.success(), "re-add failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A host block for tend.toml.
    pub fn host_toml(&self, k: usize, extra: &str) -> String {
        format!(
            "[host.ssh.h{k}]\naddress = \"{}\"\nuser = \"root\"\nidentity = \"{}\"\nknown_hosts = \"{}\"\n{extra}\n",
            self.address(k),
            self.key().display(),
            self.known_hosts().display()
        )
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.sh(&["down"]);
        let _ = std::fs::remove_dir(&self.slot);
    }
}
