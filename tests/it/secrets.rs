//! Secrets end to end through the binary: decrypted in memory, never at rest or in output.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use age::secrecy::ExposeSecret;

use crate::support::write_tree;

const CANARY: &str = "canary-7f3a9c1e-do-not-leak";

fn encrypt(recipient: &age::x25519::Recipient, plaintext: &[u8], armor: bool) -> Vec<u8> {
    let encryptor = age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient)).expect("one recipient");
    let mut out = Vec::new();
    let format = if armor { age::armor::Format::AsciiArmor } else { age::armor::Format::Binary };
    let armored = age::armor::ArmoredWriter::wrap_output(&mut out, format).expect("armor");
    let mut w = encryptor.wrap_output(armored).expect("encrypt");
    w.write_all(plaintext).expect("write");
    w.finish().and_then(age::armor::ArmoredWriter::finish).expect("finish");
    out
}

struct Setup {
    dir: tempfile::TempDir,
    key: PathBuf,
    recipient: age::x25519::Recipient,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let id = age::x25519::Identity::generate();
        let key = dir.path().join("keys/tend.key");
        fs_err::create_dir_all(key.parent().expect("parent")).expect("mkdir");
        fs_err::write(&key, format!("# test identity\n{}\n", id.to_string().expose_secret())).expect("key");
        fs_err::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        fs_err::create_dir_all(dir.path().join("tmp")).expect("tmp");
        let setup = Self { dir, key, recipient: id.to_public() };
        let cfg = setup.cfg();
        write_tree(
            &cfg,
            &[
                ("tend.toml", "[project]\nname = \"secrets\"\n\n[host.local.this]\n"),
                (
                    "app.toml",
                    r#"
[secret.db]
file = "secrets/db.yaml.age"

[secret.token]
file = "secrets/token.age"

[host.file.dbconf]
path = "${path.root}/out/db.conf"
content = "user = app\npassword = ${secret.db.password}\n"

[host.file.plain]
path = "${path.root}/out/plain.txt"
content = "nothing secret\n"

[host.command.use_token]
run = "test -n '${secret.token}' && touch ${path.root}/out/token-used"
on_change = ["host.file.dbconf"]
"#,
                ),
            ],
        );
        setup.write_secret("db.yaml.age", &format!("password: {CANARY}\nport: 5432\n"), false);
        setup.write_secret("token.age", &format!("{CANARY}-token\n"), true);
        setup
    }

    fn cfg(&self) -> PathBuf {
        self.dir.path().join("cfg")
    }

    fn write_secret(&self, name: &str, plaintext: &str, armor: bool) {
        write_tree(&self.cfg(), &[]);
        let path = self.cfg().join("secrets").join(name);
        fs_err::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs_err::write(path, encrypt(&self.recipient, plaintext.as_bytes(), armor)).expect("write secret");
    }

    fn tend(&self, args: &[&str], key: Option<&Path>) -> Output {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tend"));
        cmd.args(["-C", &self.cfg().to_string_lossy(), "--state", &self.dir.path().join("state/state.db").to_string_lossy()])
            .args(args)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "trace")
            .env("TMPDIR", self.dir.path().join("tmp"))
            .env_remove("SOPS_AGE_KEY")
            .env_remove("SOPS_AGE_KEY_FILE")
            .env_remove("SOPS_AGE_SSH_PRIVATE_KEY_FILE")
            .stdin(std::process::Stdio::null());
        match key {
            Some(k) => cmd.env("TEND_AGE_KEY_FILE", k),
            None => cmd.env_remove("TEND_AGE_KEY_FILE"),
        };
        cmd.output().expect("tend runs")
    }
}

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs_err::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() { all_files(&p, out) } else { out.push(p) }
    }
}

fn assert_clean(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    assert!(!text.contains(CANARY), "the secret leaked into {what}:\n{text}");
}

#[test]
fn canary_secret_never_reaches_state_plans_logs_or_temp_files() {
    let s = Setup::new();
    let key = s.key.clone();
    let saved = s.dir.path().join("saved.plan");
    let mut outputs: Vec<(String, Output)> = Vec::new();
    for args in [
        &["plan"][..],
        &["plan", "--json"][..],
        &["plan", "--out", &saved.to_string_lossy()][..],
        &["--log-format", "json", "apply", &saved.to_string_lossy()][..],
        &["plan", "--detailed-exitcode"][..],
        &["apply", "--auto-approve"][..],
        &["state", "show", "host.file.dbconf[this]", "--json"][..],
        &["state", "list"][..],
        &["history", "--json"][..],
        &["graph", "--format", "json"][..],
    ] {
        let out = s.tend(args, Some(&key));
        assert!(out.status.success() || args == ["plan", "--detailed-exitcode"], "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        outputs.push((format!("{args:?}"), out));
    }
    // It was applied, for real.
    let conf = s.cfg().join("out/db.conf");
    assert_eq!(fs_err::read_to_string(&conf).expect("written"), format!("user = app\npassword = {CANARY}\n"));
    assert_eq!(fs_err::metadata(&conf).expect("stat").permissions().mode() & 0o777, 0o600, "secret files default to 0600");
    assert_eq!(fs_err::metadata(s.cfg().join("out/plain.txt")).expect("stat").permissions().mode() & 0o777, 0o644);
    assert!(s.cfg().join("out/token-used").exists(), "the command got the token");
    // The second plan saw no changes: the keyed hash of the secret inputs matched.
    assert_eq!(outputs[4].1.status.code(), Some(0), "{}", String::from_utf8_lossy(&outputs[4].1.stdout));
    // Plans show the secret-derived values as sensitive.
    let first_plan = String::from_utf8_lossy(&outputs[0].1.stdout).into_owned();
    assert!(first_plan.contains("+ sha256 = (sensitive)") && first_plan.contains("+ run = (sensitive)"), "{first_plan}");
    let json: serde_json::Value = serde_json::from_slice(&outputs[1].1.stdout).expect("json");
    let dbconf = json["changes"].as_array().expect("changes").iter().find(|c| c["resource"] == "host.file.dbconf").expect("dbconf");
    assert_eq!(dbconf["after_sensitive"], serde_json::json!(["sha256", "size"]));
    // Nowhere else.
    for (what, out) in &outputs {
        assert_clean(&format!("stdout of {what}"), &out.stdout);
        assert_clean(&format!("stderr of {what}"), &out.stderr);
    }
    assert!(outputs.iter().any(|(_, o)| String::from_utf8_lossy(&o.stderr).contains("TRACE")), "trace logging was on");
    let mut files = Vec::new();
    all_files(&s.dir.path().join("state"), &mut files);
    all_files(&s.dir.path().join("tmp"), &mut files);
    files.push(saved);
    assert!(files.iter().any(|f| f.ends_with("state.db")));
    for f in files {
        assert_clean(&f.display().to_string(), &fs_err::read(&f).expect("read"));
    }
    // The same search does find the secret where it belongs: on the target.
    let mut targets = Vec::new();
    all_files(&s.cfg().join("out"), &mut targets);
    assert!(targets.iter().any(|f| String::from_utf8_lossy(&fs_err::read(f).expect("read")).contains(CANARY)));
}

#[test]
fn a_failing_command_that_prints_its_secret_does_not_leak_it() {
    let s = Setup::new();
    let app = s.cfg().join("app.toml");
    let text = fs_err::read_to_string(&app)
        .expect("read")
        .replace("run = \"test -n '${secret.token}' && touch ${path.root}/out/token-used\"", "run = \"echo 'bad token: ${secret.token}' >&2; exit 4\"");
    fs_err::write(&app, text).expect("write");
    let out = s.tend(&["apply", "--auto-approve"], Some(&s.key));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("command exited with status 4"), "{err}");
    assert!(err.contains("bad token: (sensitive)"), "{err}");
    assert_clean("stderr of a failed apply", &out.stderr);
    assert_clean("stdout of a failed apply", &out.stdout);
    let mut files = Vec::new();
    all_files(&s.dir.path().join("state"), &mut files);
    for f in files {
        assert_clean(&f.display().to_string(), &fs_err::read(&f).expect("read"));
    }
}

#[test]
fn a_changed_secret_is_detected_and_shown_only_as_sensitive() {
    let s = Setup::new();
    assert!(s.tend(&["apply", "--auto-approve"], Some(&s.key)).status.success());
    s.write_secret("db.yaml.age", "password: rotated-value\nport: 5432\n", false);
    let plan = s.tend(&["plan", "--detailed-exitcode"], Some(&s.key));
    assert_eq!(plan.status.code(), Some(2));
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains("# host.file.dbconf[this] will be updated in place\n"), "{text}");
    assert!(text.contains("~ sha256 = (sensitive) -> (sensitive)"), "{text}");
    assert!(text.contains("host.command.use_token[this] will run again: host.file.dbconf[this] changed"), "{text}");
    assert!(text.contains("        content: (sensitive content not shown)\n"), "no diff of a secret file: {text}");
    assert!(!text.contains("rotated-value"));
    assert_clean("a plan of a rotated secret", &plan.stdout);
}

#[test]
fn a_command_that_prints_its_secret_on_success_keeps_its_output_without_it() {
    let s = Setup::new();
    let app = s.cfg().join("app.toml");
    let text = fs_err::read_to_string(&app)
        .expect("read")
        .replace("run = \"test -n '${secret.token}' && touch ${path.root}/out/token-used\"", "run = \"echo 'using token ${secret.token}'\"");
    fs_err::write(&app, text).expect("write");
    let out = s.tend(&["apply", "--auto-approve"], Some(&s.key));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = s.tend(&["state", "show", "host.command.use_token[this]"], Some(&s.key));
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("stdout      = \"using token (sensitive)\\n\""), "{text}");
    assert_clean("state show", &shown.stdout);
    assert_clean("the apply's output", &out.stdout);
    assert_clean("the apply's log", &out.stderr);
    let mut files = Vec::new();
    all_files(&s.dir.path().join("state"), &mut files);
    for f in files {
        assert_clean(&f.display().to_string(), &fs_err::read(&f).expect("read"));
    }
}

#[test]
fn a_file_that_held_a_secret_never_shows_it_in_a_diff_once_its_content_is_plain() {
    let s = Setup::new();
    assert!(s.tend(&["apply", "--auto-approve"], Some(&s.key)).status.success());
    let app = s.cfg().join("app.toml");
    let text =
        fs_err::read_to_string(&app).expect("read").replace("content = \"user = app\\npassword = ${secret.db.password}\\n\"", "content = \"user = app\\n\"");
    assert!(!text.contains("secret.db.password"), "{text}");
    fs_err::write(&app, text).expect("write");
    for args in [&["plan"][..], &["plan", "--diff-context", "100", "--color", "always"][..], &["plan", "--json"][..]] {
        let plan = s.tend(args, Some(&s.key));
        assert!(plan.status.success(), "{}", String::from_utf8_lossy(&plan.stderr));
        assert_clean(&format!("stdout of {args:?}"), &plan.stdout);
        assert_clean(&format!("stderr of {args:?}"), &plan.stderr);
        if args == ["plan"] {
            let shown = String::from_utf8_lossy(&plan.stdout);
            assert!(shown.contains("# host.file.dbconf[this] will be updated in place") && shown.contains("content: (sensitive content not shown)"), "{shown}");
        }
    }
}

#[test]
fn a_file_written_in_plain_then_from_a_secret_with_the_same_content_is_planned_as_sensitive() {
    let s = Setup::new();
    let app = s.cfg().join("app.toml");
    let with_secret = format!(
        "{}\n[host.file.token_file]\npath = \"${{path.root}}/out/token\"\ncontent = \"${{secret.token}}\"\n",
        fs_err::read_to_string(&app).expect("read")
    );
    // First the content is written into the config itself, then it comes from the secret: the
    // same bytes, so nothing changes on the host, but what the plan shows of it is now secret.
    fs_err::write(&app, with_secret.replace("${secret.token}", &format!("{CANARY}-token"))).expect("write");
    let first = s.tend(&["apply", "--auto-approve"], Some(&s.key));
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    fs_err::write(&app, &with_secret).expect("write");
    let plan = s.tend(&["plan", "--json"], Some(&s.key));
    assert!(plan.status.success(), "{}", String::from_utf8_lossy(&plan.stderr));
    assert_clean("the JSON plan", &plan.stdout);
    let json: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("JSON plan");
    let change = json["changes"].as_array().expect("changes").iter().find(|c| c["address"] == "host.file.token_file[this]").expect("the file is planned");
    assert_eq!(change["action"], "no-op", "{change}");
    assert!(change["after_sensitive"].as_array().expect("list").iter().any(|f| f == "sha256"), "the hash of secret content is sensitive: {change}");
    assert!(change["after"]["sha256"].is_null(), "{change}");
}

#[test]
fn a_secret_that_cannot_be_decrypted_fails_the_plan_naming_it() {
    let s = Setup::new();
    let none = s.tend(&["apply", "--auto-approve"], None);
    assert_eq!(none.status.code(), Some(1));
    let err = String::from_utf8_lossy(&none.stderr);
    assert!(err.contains("no age identity to decrypt secret `db` (secrets/db.yaml.age)"), "{err}");
    assert!(err.contains("hint: pass --identity FILE, or set TEND_AGE_KEY_FILE"), "{err}");

    let other = age::x25519::Identity::generate();
    let wrong = s.dir.path().join("keys/other.key");
    fs_err::write(&wrong, format!("{}\n", other.to_string().expose_secret())).expect("key");
    let out = s.tend(&["apply", "--auto-approve"], Some(&wrong));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot decrypt secret `db` (secrets/db.yaml.age)"), "{err}");
    assert!(err.contains("hint: the file was made for: an X25519 recipient"), "{err}");
    assert!(err.contains(&format!("identities tried: {}", other.to_public())), "{err}");
    assert!(err.contains("nothing was applied"), "{err}");
    assert!(!s.cfg().join("out").exists(), "nothing applied, not even the files without secrets");
    assert!(!s.dir.path().join("state/state.db").exists());
}

#[test]
fn a_missing_key_in_a_secret_document_is_named_with_the_keys_there() {
    let s = Setup::new();
    let app = s.cfg().join("app.toml");
    let text = fs_err::read_to_string(&app).expect("read").replace("${secret.db.password}", "${secret.db.passwrd}");
    fs_err::write(&app, text).expect("write");
    let out = s.tend(&["plan"], Some(&s.key));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("secret `db` has no key `passwrd`"), "{err}");
    assert!(err.contains("hint: keys there: password, port"), "{err}");
    assert_clean("stderr", &out.stderr);
}

#[test]
fn a_secret_file_in_a_host_generation_is_carried_into_the_next_one_without_its_plaintext_at_rest_here() {
    let s = Setup::new();
    let gen_root = s.dir.path().join("generations");
    write_tree(
        &s.cfg(),
        &[("tend.toml", &format!("[project]\nname = \"secrets\"\n\n[host.local.this]\ngenerations = {{ path = \"{}\" }}\n", gen_root.display()))],
    );
    let first = s.tend(&["apply", "--auto-approve"], Some(&s.key));
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let conf = s.cfg().join("out/db.conf");
    assert!(fs_err::symlink_metadata(&conf).expect("link").file_type().is_symlink());
    assert_eq!(fs_err::read_to_string(&conf).expect("through the link"), format!("user = app\npassword = {CANARY}\n"));
    assert_eq!(fs_err::metadata(&conf).expect("stat").permissions().mode() & 0o777, 0o600, "the generation's copy is 0600");
    // State keeps the secret file's hash redacted; changing another file still builds the
    // next generation with the secret file in it (its entry comes from the host's manifest).
    write_tree(&s.cfg(), &[("app.toml", &fs_err::read_to_string(s.cfg().join("app.toml")).expect("app").replace("nothing secret", "still nothing secret"))]);
    let second = s.tend(&["apply", "--auto-approve"], Some(&s.key));
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    assert!(String::from_utf8_lossy(&second.stderr).contains("host.local.this: switched to generation"));
    assert_eq!(fs_err::read_to_string(&conf).expect("through the link"), format!("user = app\npassword = {CANARY}\n"));
    assert_eq!(fs_err::read_to_string(s.cfg().join("out/plain.txt")).expect("plain"), "still nothing secret\n");
    let blobs: Vec<PathBuf> = fs_err::read_dir(gen_root.join("blobs")).expect("blobs").flatten().map(|e| e.path()).collect();
    assert!(blobs.iter().all(|b| fs_err::metadata(b).expect("stat").permissions().mode() & 0o777 == 0o600), "staged blobs are 0600");
    for out in [&first, &second] {
        assert_clean("output", &out.stdout);
        assert_clean("output", &out.stderr);
    }
    let mut files = Vec::new();
    all_files(&s.dir.path().join("state"), &mut files);
    all_files(&s.dir.path().join("tmp"), &mut files);
    for f in files {
        assert_clean(&f.display().to_string(), &fs_err::read(&f).expect("read"));
    }
}

/// Every process's command line on this machine, as anyone can read it from /proc.
fn all_command_lines() -> String {
    let mut all = String::new();
    for entry in fs_err::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(bytes) = std::fs::read(entry.path().join("cmdline")) {
            all.push_str(&String::from_utf8_lossy(&bytes).replace('\0', " "));
            all.push('\n');
        }
    }
    all
}

#[test]
fn a_secret_in_a_command_never_appears_on_a_command_line() {
    let s = Setup::new();
    write_tree(
        &s.cfg(),
        &[(
            "app.toml",
            "[secret.token]\nfile = \"secrets/token.age\"\n\n[host.command.slow]\nrun = \"sleep 2; test -n '${secret.token}' && touch ${path.root}/out-ran\"\n",
        )],
    );
    let key = s.key.clone();
    let cfg = s.cfg();
    let watcher = std::thread::spawn(move || {
        let until = std::time::Instant::now() + std::time::Duration::from_millis(1800);
        let mut seen_sleep = false;
        while std::time::Instant::now() < until {
            let lines = all_command_lines();
            assert!(
                !lines.contains(CANARY),
                "the secret is on a command line:\n{}",
                lines.lines().filter(|l| l.contains(CANARY)).collect::<Vec<_>>().join("\n")
            );
            seen_sleep |= lines.lines().any(|l| l.starts_with("sleep 2"));
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        seen_sleep
    });
    let out = s.tend(&["apply", "--auto-approve"], Some(&key));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(watcher.join().expect("watcher"), "the command ran while we looked");
    assert!(cfg.join("out-ran").exists(), "the command saw the secret");
}

#[test]
fn a_key_asked_of_a_secret_that_is_one_value_says_how_to_make_it_a_document() {
    let s = Setup::new();
    let app = s.cfg().join("app.toml");
    let text = fs_err::read_to_string(&app).expect("read").replace("test -n '${secret.token}'", "test -n '${secret.token.value}'");
    fs_err::write(&app, text).expect("write");
    let out = s.tend(&["plan"], Some(&s.key));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("secret `token` (secrets/token.age) is one value, not a document with keys"), "{err}");
    assert!(err.contains("name it secrets/token.toml.age") && err.contains("document = \"toml\"") && err.contains("${secret.token}"), "{err}");
    assert_clean("the error", &out.stderr);
}

#[test]
fn a_refresh_of_a_secret_file_changed_outside_tend_records_only_its_fingerprint() {
    let s = Setup::new();
    assert!(s.tend(&["apply", "--auto-approve"], Some(&s.key)).status.success());
    let conf = s.cfg().join("out/db.conf");
    fs_err::write(&conf, format!("user = app\npassword = {CANARY}\nedited = by hand\n")).expect("tamper");
    let mut outputs = Vec::new();
    for args in [
        &["plan", "--refresh-only"][..],
        &["plan", "--refresh-only", "--json"][..],
        &["apply", "--refresh-only", "--auto-approve"][..],
        &["state", "show", "host.file.dbconf[this]", "--json"][..],
    ] {
        let out = s.tend(args, Some(&s.key));
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        outputs.push((format!("{args:?}"), out));
    }
    let plan = String::from_utf8_lossy(&outputs[0].1.stdout).into_owned();
    assert!(plan.contains("~ sha256 = (sensitive) -> (sensitive)") && plan.contains("Refresh: 1 to update in state, 0 to forget."), "{plan}");
    let record: serde_json::Value = serde_json::from_slice(&outputs[3].1.stdout).expect("record JSON");
    let size = record["attributes"]["size"]["$sensitive"].as_str().unwrap_or_default();
    assert!(size.starts_with("hmac-sha256:"), "a secret file's size is kept as a fingerprint: {record}");
    for (what, out) in &outputs {
        assert_clean(&format!("stdout of {what}"), &out.stdout);
        assert_clean(&format!("stderr of {what}"), &out.stderr);
    }
    let mut files = Vec::new();
    all_files(&s.dir.path().join("state"), &mut files);
    all_files(&s.dir.path().join("tmp"), &mut files);
    for f in files {
        assert_clean(&f.display().to_string(), &fs_err::read(&f).expect("read"));
    }
    // What was recorded is the fingerprint of what is there: the next refresh finds nothing new.
    let again = s.tend(&["plan", "--refresh-only", "--detailed-exitcode"], Some(&s.key));
    assert_eq!(again.status.code(), Some(0), "{}", String::from_utf8_lossy(&again.stdout));
}
