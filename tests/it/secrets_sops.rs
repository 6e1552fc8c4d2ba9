//! SOPS files: made by the real `sops` binary and read by tend, made by tend and read by
//! `sops`, the Flux fixture unchanged, tampering refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::need::{Need, need};
use crate::support::write_tree;

/// The real `sops`; the test must be listed as needing `sops` in tests/testbed/needs.
fn sops_bin() -> PathBuf {
    need(&[Need::Sops]);
    crate::support::need::sops().expect("checked by need")
}

struct Env {
    dir: tempfile::TempDir,
    key: PathBuf,
    recipient: String,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let id = age::x25519::Identity::generate();
        let key = dir.path().join("key.txt");
        fs_err::write(&key, format!("{}\n", age::secrecy::ExposeSecret::expose_secret(&id.to_string()))).expect("key");
        Self { recipient: id.to_public().to_string(), dir, key }
    }

    fn tend(&self, cfg: &Path, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_tend"))
            .args(["-C", &cfg.to_string_lossy(), "--state", &self.dir.path().join("state.db").to_string_lossy()])
            .args(args)
            .env("NO_COLOR", "1")
            .env("TEND_AGE_KEY_FILE", &self.key)
            .env_remove("SOPS_AGE_KEY")
            .env_remove("SOPS_AGE_KEY_FILE")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("tend runs")
    }

    fn sops(&self, sops: &Path, args: &[&str]) -> Output {
        Command::new(sops).arg("--disable-version-check").args(args).env("SOPS_AGE_KEY_FILE", &self.key).output().expect("sops runs")
    }
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}: {}", o.status.code(), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Files made by other tools' own test suites (the Flux kustomize-controller SOPS fixture and its
/// published test key) are not part of this repository: they are checked from outside it.
/// `TEND_INTEROP_FIXTURES=DIR cargo nextest run --run-ignored only -E 'test(flux_fixture)'` runs
/// this against DIR/flux-sops/{secret.yaml,age-key.txt}.
#[test]
#[ignore = "needs TEND_INTEROP_FIXTURES: files made by other tools, kept outside the repository"]
fn the_flux_fixture_decrypts_unchanged_and_feeds_a_plan() {
    let env = Env::new();
    let dir = std::env::var_os("TEND_INTEROP_FIXTURES").expect("TEND_INTEROP_FIXTURES names the directory of interop fixtures");
    let fixture = PathBuf::from(dir).join("flux-sops");
    assert!(fixture.join("secret.yaml").is_file(), "{} holds no secret.yaml", fixture.display());
    let cfg = env.dir.path().join("cfg");
    fs_err::create_dir_all(cfg.join("secrets")).expect("mkdir");
    fs_err::copy(fixture.join("secret.yaml"), cfg.join("secrets/flux.yaml")).expect("copy fixture");
    write_tree(
        &cfg,
        &[(
            "tend.toml",
            "[secret.flux]\nfile = \"secrets/flux.yaml\"\n\n[host.local.this]\n\n[host.file.out]\npath = \"${path.root}/out/value\"\ncontent = \"${secret.flux.stringData.key}\"\n",
        )],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_tend"))
        .args(["-C", &cfg.to_string_lossy(), "--state", &env.dir.path().join("s.db").to_string_lossy(), "apply", "--auto-approve"])
        .env("SOPS_AGE_KEY_FILE", fixture.join("age-key.txt"))
        .env_remove("TEND_AGE_KEY_FILE")
        .output()
        .expect("tend");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs_err::read_to_string(cfg.join("out/value")).expect("written"), "global-value");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("global-value"));
}

#[test]
fn files_made_by_sops_in_every_format_decrypt_in_tend() {
    let sops = sops_bin();
    let env = Env::new();
    let d = env.dir.path();
    let cases = [
        ("a.yaml", "db:\n  password: pw-yaml\n  port: 5432\n  ratio: 0.25\n  on: true\nitems: [x, 2]\nnote_unencrypted: left as is\n", "password: pw-yaml"),
        ("b.json", "{\"db\": {\"password\": \"pw-json\", \"port\": 5432}, \"list\": [1, \"two\"]}", "\"password\": \"pw-json\""),
        ("c.env", "PASSWORD=pw-env\nPORT=5432\n", "PASSWORD=pw-env"),
        ("d.ini", "[db]\npassword = pw-ini\nport = 5432\n", "password = pw-ini"),
    ];
    for (name, plain, expect) in cases {
        fs_err::write(d.join(name), plain).expect("write");
        let enc = env.sops(&sops, &["--encrypt", "--age", &env.recipient, &d.join(name).to_string_lossy()]);
        let encrypted = stdout(&enc);
        assert!(!encrypted.contains(expect), "{name} is encrypted");
        let file = d.join(format!("enc-{name}"));
        fs_err::write(&file, &encrypted).expect("write");
        let out = stdout(&env.tend(d, &["secrets", "decrypt", &file.to_string_lossy()]));
        assert!(out.contains(expect), "{name}: {out}");
    }
}

#[test]
fn files_tend_encrypts_with_sops_decrypt_with_sops() {
    let sops = sops_bin();
    let env = Env::new();
    let d = env.dir.path();
    write_tree(
        d,
        &[
            ("k8s.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\nstringData:\n  password: pw1-not.base64!\n  port: 5432\n"),
            ("plain.json", "{\"a\": {\"b\": \"pw2\"}, \"n\": 1.5, \"t\": true}"),
            ("app.env", "TOKEN=pw3\nMODE=fast\n"),
        ],
    );
    let enc = |file: &str, extra: &[&str]| {
        let mut args = vec!["secrets", "encrypt", "--sops", "-r", env.recipient.as_str()];
        args.extend_from_slice(extra);
        let path = d.join(file).to_string_lossy().into_owned();
        args.push(&path);
        let o = env.tend(d, &args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    enc("k8s.yaml", &["--encrypted-regex", "^(data|stringData)$"]);
    let k8s = fs_err::read_to_string(d.join("k8s.enc.yaml")).expect("written");
    // The plaintext holds characters base64 never does, so it cannot turn up in ciphertext by chance.
    assert!(k8s.contains("name: app") && !k8s.contains("pw1-not.base64!"), "partial encryption keeps metadata readable:\n{k8s}");
    assert!(stdout(&env.sops(&sops, &["-d", &d.join("k8s.enc.yaml").to_string_lossy()])).contains("password: pw1-not.base64!"));
    enc("plain.json", &[]);
    assert!(stdout(&env.sops(&sops, &["-d", &d.join("plain.enc.json").to_string_lossy()])).contains("\"b\": \"pw2\""));
    enc("app.env", &[]);
    let env_out = stdout(&env.sops(&sops, &["-d", "--input-type", "dotenv", "--output-type", "dotenv", &d.join("app.enc.env").to_string_lossy()]));
    assert_eq!(env_out, "TOKEN=pw3\nMODE=fast\n");
}

/// Change the first character of the base64 `data:` field to another valid one.
fn flip_first_data_char(line: &str) -> String {
    let at = line.find("data:").expect("data field") + 5;
    let c = line.as_bytes()[at];
    let replacement = if c == b'A' { "B" } else { "A" };
    format!("{}{}{}", &line[..at], replacement, &line[at + 1..])
}

#[test]
fn tampered_sops_files_are_refused() {
    let env = Env::new();
    let cfg = env.dir.path().join("cfg");
    write_tree(
        &cfg,
        &[
            ("plain.yaml.txt", "db:\n  password: original\nowner_unencrypted: ops\n"),
            (
                "tend.toml",
                "[secret.db]\nfile = \"secrets/db.yaml\"\n\n[host.local.this]\n\n[host.file.f]\npath = \"${path.root}/out/f\"\ncontent = \"${secret.db.db.password}\"\n",
            ),
        ],
    );
    fs_err::create_dir_all(cfg.join("secrets")).expect("mkdir");
    fs_err::rename(cfg.join("plain.yaml.txt"), cfg.join("secrets/plain.yaml")).expect("mv");
    let o = env.tend(
        &cfg,
        &[
            "secrets",
            "encrypt",
            "--sops",
            "-r",
            &env.recipient,
            "-o",
            &cfg.join("secrets/db.yaml").to_string_lossy(),
            &cfg.join("secrets/plain.yaml").to_string_lossy(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    fs_err::remove_file(cfg.join("secrets/plain.yaml")).expect("rm");
    // The SOPS file sits in the config tree without being taken for config, and plans.
    let ok = env.tend(&cfg, &["plan"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let good = fs_err::read_to_string(cfg.join("secrets/db.yaml")).expect("read");
    let password_line = good.lines().find(|l| l.contains("password:")).expect("password line").to_string();
    let tampers = [
        ("an encrypted value changed", flip_first_data_char(&password_line), "authentication failed"),
        ("a plaintext value changed", "owner_unencrypted: attacker".to_string(), "MAC mismatch"),
    ];
    for (what, line, expect) in tampers {
        let original = if what.starts_with("an encrypted") { password_line.clone() } else { "owner_unencrypted: ops".to_string() };
        assert!(good.contains(&original), "{what}: fixture line present");
        fs_err::write(cfg.join("secrets/db.yaml"), good.replace(&original, &line)).expect("tamper");
        let out = env.tend(&cfg, &["plan"]);
        assert_eq!(out.status.code(), Some(1), "{what}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("secret `db` (secrets/db.yaml) was refused") && err.contains(expect), "{what}: {err}");
        assert!(err.contains("hint: it was modified after it was encrypted"), "{what}: {err}");
    }
    // A MAC replaced by a MAC of other content is refused as well.
    let mac_line = good.lines().find(|l| l.trim_start().starts_with("mac:")).expect("mac").to_string();
    let forged = mac_line.replacen("data:", "data:Zm9v", 1);
    fs_err::write(cfg.join("secrets/db.yaml"), good.replace(&mac_line, &forged)).expect("tamper");
    let out = env.tend(&cfg, &["plan"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("the MAC cannot be read"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn rekey_keeps_a_sops_file_sops_with_its_rules() {
    let sops = sops_bin();
    let env = Env::new();
    let cfg = env.dir.path().join("cfg");
    fs_err::create_dir_all(cfg.join("secrets")).expect("mkdir");
    fs_err::write(env.dir.path().join("k.yaml"), "metadata:\n  name: app\nstringData:\n  password: pw\n").expect("write");
    let made = env.sops(&sops, &["--encrypt", "--age", &env.recipient, "--encrypted-regex", "^stringData$", &env.dir.path().join("k.yaml").to_string_lossy()]);
    fs_err::write(cfg.join("secrets/k.yaml"), stdout(&made)).expect("write");
    let other = age::x25519::Identity::generate();
    let both = format!("\"{}\", \"{}\"", env.recipient, other.to_public());
    write_tree(&cfg, &[("tend.toml", &format!("[secrets]\nrecipients = [{both}]\n\n[secret.k]\nfile = \"secrets/k.yaml\"\n"))]);
    stdout(&env.tend(&cfg, &["secrets", "rekey"]));
    let rekeyed = fs_err::read_to_string(cfg.join("secrets/k.yaml")).expect("read");
    assert!(
        rekeyed.contains("name: app") && rekeyed.contains("encrypted_regex: ^stringData$") || rekeyed.contains("encrypted_regex: \"^stringData$\""),
        "{rekeyed}"
    );
    assert_eq!(rekeyed.matches("recipient: age1").count(), 2, "{rekeyed}");
    assert!(stdout(&env.sops(&sops, &["-d", &cfg.join("secrets/k.yaml").to_string_lossy()])).contains("password: pw"));
}
