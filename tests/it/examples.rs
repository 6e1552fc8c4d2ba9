//! Every `examples/*/` loads, decrypts with the test-only key and plans; the secrets example is
//! applied for real (the quickstart's full lifecycle is in cli.rs).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::support::repo;

fn copy_dir(from: &Path, to: &Path) {
    fs_err::create_dir_all(to).expect("mkdir");
    for entry in fs_err::read_dir(from).expect("read dir").flatten() {
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_name() == "out" {
            continue;
        }
        if src.is_dir() { copy_dir(&src, &dst) } else { fs_err::copy(&src, &dst).map(|_| ()).expect("copy") }
    }
}

fn tend(root: &Path, state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tend"))
        .args(["-C", &root.to_string_lossy(), "--state", &state.to_string_lossy()])
        .args(args)
        .env("NO_COLOR", "1")
        .env("TEND_AGE_KEY_FILE", repo().join("tests/fixtures/keys/TEST-ONLY-examples.age-key.txt"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("tend runs")
}

#[test]
fn every_example_plans() {
    let mut seen = Vec::new();
    for entry in fs_err::read_dir(repo().join("examples")).expect("examples").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "cluster" {
            // It needs a cluster: applied against the fake API server below.
            seen.push(name);
            continue;
        }
        let dir = tempfile::tempdir().expect("temp");
        copy_dir(&entry.path(), &dir.path().join(&name));
        let out = tend(&dir.path().join(&name), &dir.path().join("state.db"), &["plan", "--detailed-exitcode"]);
        assert_eq!(out.status.code(), Some(2), "examples/{name} plans changes:\n{}", String::from_utf8_lossy(&out.stderr));
        seen.push(name);
    }
    seen.sort();
    assert_eq!(seen, ["cluster", "quickstart", "secrets"]);
}

#[test]
fn the_cluster_example_applies_to_a_cluster_then_plans_nothing() {
    let kube = crate::support::kube::FakeKube::start();
    let dir = tempfile::tempdir().expect("temp");
    let root = dir.path().join("cluster");
    copy_dir(&repo().join("examples/cluster"), &root);
    let var = format!("kubeconfig={}", kube.kubeconfig().display());
    let out = tend(&root, &dir.path().join("state.db"), &["apply", "--auto-approve", "--var", &var]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let cm = kube.kubectl(&["get", "configmap", "deployer", "-n", "shop", "-o", "json"]);
    assert!(cm.status.success(), "{}", String::from_utf8_lossy(&cm.stderr));
    let cm: serde_json::Value = serde_json::from_slice(&cm.stdout).expect("JSON");
    let host = hostname::get().expect("hostname").to_string_lossy().into_owned();
    assert_eq!(cm["data"]["host"], host.as_str(), "the host's value reached the cluster");
    assert_eq!(cm["data"]["motd_sha256"].as_str().map(str::len), Some(64));
    let plan = tend(&root, &dir.path().join("state.db"), &["plan", "--detailed-exitcode", "--var", &var]);
    assert_eq!(plan.status.code(), Some(0), "{}{}", String::from_utf8_lossy(&plan.stdout), String::from_utf8_lossy(&plan.stderr));
}

#[test]
fn the_secrets_example_applies_with_its_test_key() {
    let dir = tempfile::tempdir().expect("temp");
    let root = dir.path().join("secrets");
    copy_dir(&repo().join("examples/secrets"), &root);
    let out = tend(&root, &dir.path().join("state.db"), &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let conf = fs_err::read_to_string(root.join("out/db.conf")).expect("written");
    assert!(conf.contains("password = example-password-not-real"), "{conf}");
    assert_eq!(fs_err::read_to_string(root.join("out/api-token")).expect("written"), "example-token-not-real");
    assert_eq!(fs_err::metadata(root.join("out/db.conf")).expect("stat").permissions().mode() & 0o777, 0o600);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("example-password-not-real"));
    let check = tend(&root, &dir.path().join("state.db"), &["secrets", "check"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
}
