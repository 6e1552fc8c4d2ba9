//! `tend secrets` through the binary, and interop with the real `age` CLI and SSH keys.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::write_tree;

struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn new(recipients: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let list: Vec<String> = recipients.iter().map(|r| format!("\"{r}\"")).collect();
        write_tree(
            &dir.path().join("cfg"),
            &[(
                "tend.toml",
                &format!(
                    "[secrets]\nrecipients = [{}]\n\n[secret.db]\nfile = \"secrets/db.yaml.age\"\n\n[host.local.this]\n\n[host.file.conf]\npath = \"${{path.root}}/out/conf\"\ncontent = \"${{secret.db.password}}\"\n",
                    list.join(", ")
                ),
            )],
        );
        Self { dir }
    }

    fn cfg(&self) -> PathBuf {
        self.dir.path().join("cfg")
    }

    fn tend(&self, args: &[&str], key: Option<&Path>, editor: Option<&str>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tend"));
        cmd.args(["-C", &self.cfg().to_string_lossy(), "--state", &self.dir.path().join("state.db").to_string_lossy()])
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("SOPS_AGE_KEY")
            .env_remove("SOPS_AGE_KEY_FILE")
            .env_remove("SOPS_AGE_SSH_PRIVATE_KEY_FILE")
            .env_remove("VISUAL")
            .stdin(std::process::Stdio::null());
        match key {
            Some(k) => cmd.env("TEND_AGE_KEY_FILE", k),
            None => cmd.env_remove("TEND_AGE_KEY_FILE"),
        };
        if let Some(e) = editor {
            cmd.env("EDITOR", e);
        }
        cmd.output().expect("tend runs")
    }

    fn keygen(&self, name: &str) -> (PathBuf, String) {
        let path = self.dir.path().join(name);
        let out = self.tend(&["secrets", "keygen", "--output", &path.to_string_lossy()], None, None);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let recipient = stderr.lines().find_map(|l| l.strip_prefix("Public key: ")).expect("public key printed").to_string();
        (path, recipient)
    }
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn keygen_encrypt_decrypt_edit_rekey_check() {
    let bootstrap = Repo::new(&[]);
    let (alice, alice_pub) = bootstrap.keygen("alice.key");
    assert_eq!(fs_err::metadata(&alice).expect("key").permissions().mode() & 0o777, 0o600);
    assert!(alice_pub.starts_with("age1"));
    let repo = Repo::new(&[&alice_pub]);
    fs_err::copy(&alice, repo.dir.path().join("alice.key")).expect("copy key");
    let alice = repo.dir.path().join("alice.key");

    // encrypt (recipients from tend.toml) while the plaintext sits in the config dir, as it does
    // while someone writes it; then the plaintext goes.
    write_tree(&repo.cfg(), &[("secrets/db.yaml", "password: first\n")]);
    ok(&repo.tend(&["secrets", "encrypt", &repo.cfg().join("secrets/db.yaml").to_string_lossy()], None, None));
    fs_err::remove_file(repo.cfg().join("secrets/db.yaml")).expect("rm plaintext");
    let ct = repo.cfg().join("secrets/db.yaml.age");
    assert!(!String::from_utf8_lossy(&fs_err::read(&ct).expect("ct")).contains("first"));
    assert_eq!(ok(&repo.tend(&["secrets", "decrypt", &ct.to_string_lossy()], Some(&alice), None)), "password: first\n");
    assert!(ok(&repo.tend(&["secrets", "check"], Some(&alice), None)).contains("Every secret decrypts"));

    // edit: the editor changes the plaintext; the file is re-encrypted, no plaintext left.
    let before = fs_err::read(&ct).expect("ct");
    ok(&repo.tend(&["secrets", "edit", &ct.to_string_lossy()], Some(&alice), Some("sed -i s/first/second/")));
    assert_ne!(fs_err::read(&ct).expect("ct"), before);
    assert_eq!(ok(&repo.tend(&["secrets", "decrypt", &ct.to_string_lossy()], Some(&alice), None)), "password: second\n");
    let leftovers = fs_err::read_dir("/dev/shm").map_or(0, |d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("tend-edit-")).count());
    assert_eq!(leftovers, 0, "the plaintext temp dir is removed");
    // an edit that changes nothing leaves the file alone
    let same = fs_err::read(&ct).expect("ct");
    ok(&repo.tend(&["secrets", "edit", &ct.to_string_lossy()], Some(&alice), Some("true")));
    assert_eq!(fs_err::read(&ct).expect("ct"), same);

    // rotate: bob replaces alice as recipient; after rekey bob decrypts, alice no longer does.
    let (bob, bob_pub) = repo.keygen("bob.key");
    let toml = fs_err::read_to_string(repo.cfg().join("tend.toml")).expect("toml").replace(&alice_pub, &bob_pub);
    fs_err::write(repo.cfg().join("tend.toml"), toml).expect("write");
    assert!(ok(&repo.tend(&["secrets", "rekey"], Some(&alice), None)).contains("rekeyed secret `db` (secrets/db.yaml.age) to 1 recipient"));
    assert_eq!(ok(&repo.tend(&["secrets", "decrypt", &ct.to_string_lossy()], Some(&bob), None)), "password: second\n");
    let denied = repo.tend(&["secrets", "decrypt", &ct.to_string_lossy()], Some(&alice), None);
    assert_eq!(denied.status.code(), Some(1));

    // check names a referenced key that is missing.
    let toml = fs_err::read_to_string(repo.cfg().join("tend.toml")).expect("toml").replace("secret.db.password", "secret.db.pasword");
    fs_err::write(repo.cfg().join("tend.toml"), toml).expect("write");
    let bad = repo.tend(&["secrets", "check"], Some(&bob), None);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("secret `db` has no key `pasword`"), "{}", String::from_utf8_lossy(&bad.stderr));
}

#[test]
fn encrypt_refuses_without_recipients_and_keygen_never_overwrites() {
    let repo = Repo::new(&[]);
    write_tree(&repo.cfg(), &[("plain.txt", "x")]);
    let out = repo.tend(&["secrets", "encrypt", &repo.cfg().join("plain.txt").to_string_lossy()], None, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no recipients"), "{}", String::from_utf8_lossy(&out.stderr));
    let (key, _) = repo.keygen("k.key");
    let before = fs_err::read(&key).expect("key");
    let again = repo.tend(&["secrets", "keygen", "--output", &key.to_string_lossy()], None, None);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(fs_err::read(&key).expect("key"), before);
}

#[test]
fn files_from_the_age_cli_decrypt_in_tend_and_back() {
    crate::support::need::need(&[crate::support::need::Need::Age]);
    let repo = Repo::new(&[]);
    let key = repo.dir.path().join("cli.key");
    let made = Command::new("age-keygen").arg("-o").arg(&key).output().expect("age-keygen");
    assert!(made.status.success());
    let recipient = String::from_utf8_lossy(&Command::new("age-keygen").arg("-y").arg(&key).output().expect("age-keygen -y").stdout).trim().to_string();
    write_tree(repo.dir.path(), &[("plain.yaml", "password: from-age-cli\n")]);
    for armor in [false, true] {
        let ct = repo.cfg().join("secrets/db.yaml.age");
        fs_err::create_dir_all(ct.parent().expect("parent")).expect("mkdir");
        let mut cmd = Command::new("age");
        cmd.arg("-r").arg(&recipient).arg("-o").arg(&ct);
        if armor {
            cmd.arg("-a");
        }
        assert!(cmd.arg(repo.dir.path().join("plain.yaml")).status().expect("age").success());
        // tend reads it, in a plan and with `secrets decrypt`.
        assert_eq!(ok(&repo.tend(&["secrets", "decrypt", &ct.to_string_lossy()], Some(&key), None)), "password: from-age-cli\n");
        let plan = ok(&repo.tend(&["plan"], Some(&key), None));
        assert!(plan.contains("host.file.conf[this] will be created"), "{plan}");
    }
    // tend encrypts; age decrypts.
    let out = repo.cfg().join("from-tend.age");
    ok(&repo.tend(&["secrets", "encrypt", "-r", &recipient, "-o", &out.to_string_lossy(), &repo.dir.path().join("plain.yaml").to_string_lossy()], None, None));
    let dec = Command::new("age").arg("-d").arg("-i").arg(&key).arg(&out).output().expect("age -d");
    assert_eq!(String::from_utf8_lossy(&dec.stdout), "password: from-age-cli\n");
}

#[test]
fn ssh_ed25519_and_rsa_keys_work_as_identities() {
    crate::support::need::need(&[crate::support::need::Need::Age]);
    let repo = Repo::new(&[]);
    write_tree(&repo.cfg(), &[("plain.txt", "over ssh\n")]);
    for kind in ["ed25519", "rsa"] {
        let key = repo.dir.path().join(format!("id_{kind}"));
        let mut keygen = Command::new("ssh-keygen");
        keygen.args(["-q", "-t", kind, "-N", "", "-f"]).arg(&key);
        if kind == "rsa" {
            keygen.args(["-b", "2048"]);
        }
        assert!(keygen.status().expect("ssh-keygen").success());
        let ct = repo.dir.path().join(format!("{kind}.age"));
        assert!(
            Command::new("age").arg("-R").arg(key.with_extension("pub")).arg("-o").arg(&ct).arg(repo.cfg().join("plain.txt")).status().expect("age").success()
        );
        let out = repo.tend(&["-i", &key.to_string_lossy(), "secrets", "decrypt", &ct.to_string_lossy()], None, None);
        assert_eq!(ok(&out), "over ssh\n", "{kind}");
        // and tend encrypts to the SSH public key
        let pubkey = fs_err::read_to_string(key.with_extension("pub")).expect("pub");
        let ct2 = repo.dir.path().join(format!("{kind}-tend.age"));
        ok(&repo.tend(&["secrets", "encrypt", "-r", pubkey.trim(), "-o", &ct2.to_string_lossy(), &repo.cfg().join("plain.txt").to_string_lossy()], None, None));
        let dec = Command::new("age").arg("-d").arg("-i").arg(&key).arg(&ct2).output().expect("age -d");
        assert_eq!(String::from_utf8_lossy(&dec.stdout), "over ssh\n", "{kind}");
    }
}
