//! What a test needs from the machine (sshd, moto, sops, …), checked when it starts.
//!
//! `tests/testbed/needs` lists, per test-name prefix, what the tests need; `tests/run` skips the
//! tests whose needs are missing, naming the reason. A test that runs anyway (plain
//! `cargo nextest run`) and lacks something fails with the reason and the fix: a test that
//! cannot run never passes.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The needs table (`tests/testbed/needs`).
const TABLE: &str = include_str!("../../testbed/needs");

/// Something a test needs from the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Root,
    Sshd,
    Moto,
    Sops,
    Age,
    Git,
    Kubectl,
    Rootfs,
}

impl Need {
    /// Every need, for the check of tests/testbed/needs.
    const ALL: [Self; 8] = [Self::Root, Self::Sshd, Self::Moto, Self::Sops, Self::Age, Self::Git, Self::Kubectl, Self::Rootfs];

    fn word(self) -> &'static str {
        match self {
            Self::Root => "root",
            Self::Sshd => "sshd",
            Self::Moto => "moto",
            Self::Sops => "sops",
            Self::Age => "age",
            Self::Git => "git",
            Self::Kubectl => "kubectl",
            Self::Rootfs => "rootfs",
        }
    }

    /// `Err(why)` when this machine lacks it.
    fn check(self) -> Result<(), String> {
        match self {
            Self::Root => is_root().then_some(()).ok_or_else(|| "this test must run as root".to_string()),
            Self::Sshd => {
                Self::Root.check().map_err(|_| "hosts in network namespaces need root".to_string())?;
                for tool in ["sshd", "ssh", "ssh-keygen", "ip", "unshare"] {
                    found(tool)?;
                }
                Ok(())
            }
            Self::Moto => {
                let python = testbed_python();
                if !testbed().join("bin/moto_server").exists() || !python.exists() {
                    return Err(format!("the moto EC2 server is not installed in {}", testbed().display()));
                }
                Ok(())
            }
            Self::Sops => sops().map(drop),
            Self::Age => found("age").and_then(|()| found("age-keygen")),
            Self::Git => found("git").and_then(|()| found("python3")),
            Self::Kubectl => ["kubectl", "openssl", "python3"].into_iter().try_for_each(found),
            Self::Rootfs => {
                Self::Sshd.check()?;
                let root = rootfs();
                if root.join(".tend-rootfs").is_file() {
                    Ok(())
                } else {
                    Err(format!("no Debian root filesystem in {} (tests/testbed/rootfs.sh builds it)", root.display()))
                }
            }
        }
    }
}

fn is_root() -> bool {
    fs_err::read_to_string("/proc/self/status").is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
}

/// `tool` on PATH (or in /usr/sbin, where Debian puts sshd and ip).
fn found(tool: &str) -> Result<(), String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")]);
    if dirs.iter().any(|d| d.join(tool).is_file()) { Ok(()) } else { Err(format!("`{tool}` is not installed")) }
}

/// Where tests/testbed/install.sh puts its venv and bin/ (`TEND_TESTBED`, else ~/.cache/tend-testbed).
pub fn testbed() -> PathBuf {
    if let Some(dir) = std::env::var_os("TEND_TESTBED") {
        return PathBuf::from(dir);
    }
    Path::new(&std::env::var_os("HOME").unwrap_or_default()).join(".cache/tend-testbed")
}

/// The Debian root filesystem tests/testbed/rootfs.sh builds for hosts that install packages.
pub fn rootfs() -> PathBuf {
    testbed().join("rootfs/bookworm")
}

/// The testbed venv's python (with boto3).
pub fn testbed_python() -> PathBuf {
    testbed().join("venv/bin/python")
}

/// The sops binary: the testbed's, else one on PATH.
pub fn sops() -> Result<PathBuf, String> {
    [testbed().join("bin/sops"), PathBuf::from("sops")]
        .into_iter()
        .find(|p| Command::new(p).args(["--version", "--disable-version-check"]).output().is_ok_and(|o| o.status.success()))
        .ok_or_else(|| "sops is not installed".to_string())
}

/// The needs `tests/testbed/needs` gives the test named `name` (`module::function`).
fn listed(name: &str) -> Vec<String> {
    TABLE
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let prefix = words.next()?;
            name.starts_with(prefix).then(|| words.map(str::to_string).collect::<Vec<_>>())
        })
        .flatten()
        .collect()
}

/// Check that this machine has everything in `needs`; panic with the reason and the fix if not.
///
/// The running test must be listed in `tests/testbed/needs` with these needs, so that
/// `tests/run` skips it where they are missing.
pub fn need(needs: &[Need]) {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or_default();
    let listed = listed(name);
    for n in needs {
        assert!(listed.iter().any(|w| w == n.word()), "test `{name}` needs {} but tests/testbed/needs does not say so: add a line for it", n.word());
    }
    for n in needs {
        if let Err(why) = n.check() {
            panic!(
                "cannot run: this test needs {}: {why}.\n`bash tests/run` installs what is missing (root for apt and network namespaces) and skips what it cannot provide; `bash tests/run --self-contained` runs only the tests that need nothing but Rust",
                n.word()
            );
        }
    }
}

#[test]
fn the_needs_table_names_only_known_needs() {
    for line in TABLE.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let mut words = line.split_whitespace();
        let prefix = words.next().expect("a prefix");
        assert!(prefix.contains("::"), "`{prefix}`: a prefix names a test module (`module::`)");
        for w in words {
            assert!(Need::ALL.iter().any(|n| n.word() == w), "unknown need `{w}` in tests/testbed/needs");
        }
    }
}
