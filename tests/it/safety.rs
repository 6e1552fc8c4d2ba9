//! Guards against destroying or leaking by mistake: a directory that is not a tend config, a
//! config that declares nothing, files reached through symlinks or `..` out of the config.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::write_tree;

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir") }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `tend -C DIR --state STATE ARGS` with a fresh HOME.
    fn tend(&self, dir: &Path, args: &[&str]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_tend"))
            .args(["-C", &dir.to_string_lossy(), "--state", &self.path("state.db").to_string_lossy()])
            .args(args)
            .env("NO_COLOR", "1")
            .env("HOME", self.dir.path())
            .env("TEND_AGE_KEY_FILE", self.path("age.key"))
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("tend runs")
    }
}

fn text(o: &Output) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// stderr with the renderer's line wrapping undone.
fn unwrapped(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).replace('│', " ").split_whitespace().collect::<Vec<_>>().join(" ")
}

const ONE_FILE: &str = "[project]\nname = \"guarded\"\n\n[host.local.this]\n\n[host.file.a]\npath = \"${path.root}/out/a\"\ncontent = \"kept\"\n";

#[test]
fn a_directory_without_tend_toml_is_refused_by_every_command_and_nothing_is_destroyed() {
    let s = Scratch::new();
    write_tree(&s.path("cfg"), &[("tend.toml", ONE_FILE)]);
    let applied = s.tend(&s.path("cfg"), &["apply", "--auto-approve"]);
    assert!(applied.status.success(), "{}", text(&applied));
    // The wrong directory: other TOML, no tend.toml (a home directory, another project).
    write_tree(&s.path("elsewhere"), &[("notes.toml", "[misc]\nx = 1\n")]);
    for args in [&["plan"][..], &["apply", "--auto-approve"], &["validate"], &["graph"]] {
        let out = s.tend(&s.path("elsewhere"), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        let err = unwrapped(&out);
        assert!(err.contains("holds no tend.toml: it is not a tend config directory") && err.contains("-C DIR"), "{args:?}: {err}");
    }
    assert_eq!(fs_err::read_to_string(s.path("cfg/out/a")).expect("still there"), "kept");
    // A symlinked tend.toml is not taken for a config either.
    symlink(s.path("cfg/tend.toml"), s.path("elsewhere/tend.toml")).expect("symlink");
    let out = s.tend(&s.path("elsewhere"), &["plan"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(unwrapped(&out).contains("tend.toml is a symlink"), "{}", text(&out));
}

#[test]
fn a_config_that_declares_nothing_destroys_only_when_asked() {
    let s = Scratch::new();
    write_tree(&s.path("cfg"), &[("tend.toml", ONE_FILE)]);
    assert!(s.tend(&s.path("cfg"), &["apply", "--auto-approve"]).status.success());
    // A commit that deleted every resource, or an emptied tend.toml.
    write_tree(&s.path("cfg"), &[("tend.toml", "[project]\nname = \"guarded\"\n")]);
    for args in [&["plan"][..], &["apply", "--auto-approve"]] {
        let out = s.tend(&s.path("cfg"), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("this plan would destroy all 2 resources in state and keep nothing"), "{err}");
        assert!(err.contains("allow_empty = true") && err.contains("--allow-destroy-all"), "{err}");
    }
    assert!(s.path("cfg/out/a").exists(), "nothing destroyed");
    let out = s.tend(&s.path("cfg"), &["apply", "--auto-approve", "--allow-destroy-all"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!s.path("cfg/out/a").exists());
    // allow_empty in tend.toml says the same for good.
    write_tree(&s.path("cfg"), &[("tend.toml", ONE_FILE)]);
    assert!(s.tend(&s.path("cfg"), &["apply", "--auto-approve"]).status.success());
    write_tree(&s.path("cfg"), &[("tend.toml", "[project]\nname = \"guarded\"\nallow_empty = true\n")]);
    assert!(s.tend(&s.path("cfg"), &["apply", "--auto-approve"]).status.success());
    assert!(!s.path("cfg/out/a").exists());
}

#[test]
fn files_reached_through_symlinks_or_dotdot_outside_the_config_are_never_read() {
    let s = Scratch::new();
    let canary = "CANARY-4f1c-outside-the-config";
    // What lives beside the checkout on an agent's machine: its own age key, say.
    write_tree(&s.path("outside"), &[("agent.key", canary), ("rel/x", canary)]);
    write_tree(
        &s.path("cfg"),
        &[
            (
                "tend.toml",
                r#"[project]
name = "jail"

[host.local.this]

[host.file.linked]
path = "${path.root}/out/linked"
source = "files/link"

[host.file.dotdot]
path = "${path.root}/out/dotdot"
source = "../outside/agent.key"

[host.template.linked]
path = "${path.root}/out/template"
source = "templates/link.j2"

[host.release.linked]
path = "${path.root}/out/release"
source = "rel"

[host.release.dir_link]
path = "${path.root}/out/release2"
source = "rel_link"
"#,
            ),
            ("rel/index.html", "ok"),
        ],
    );
    fs_err::create_dir_all(s.path("cfg/files")).expect("mkdir");
    fs_err::create_dir_all(s.path("cfg/templates")).expect("mkdir");
    symlink(s.path("outside/agent.key"), s.path("cfg/files/link")).expect("symlink");
    symlink("../../outside/agent.key", s.path("cfg/templates/link.j2")).expect("symlink");
    symlink(s.path("outside/agent.key"), s.path("cfg/rel/key")).expect("symlink");
    symlink(s.path("outside/rel"), s.path("cfg/rel_link")).expect("symlink");
    for args in [&["validate"][..], &["plan"], &["apply", "--auto-approve"]] {
        let out = s.tend(&s.path("cfg"), args);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {all}");
        assert!(!all.contains(canary), "{args:?}: the file outside leaked into the output: {all}");
        for refused in ["files/link", "../outside/agent.key", "templates/link.j2", "rel_link"] {
            assert!(all.contains(&format!("`{refused}` resolves to")) && all.contains("outside the config directory"), "{args:?} {refused}: {all}");
        }
    }
    // The symlink inside a release tree is found when the release is read (plan).
    write_tree(
        &s.path("cfg"),
        &[("tend.toml", "[project]\nname = \"jail\"\n\n[host.local.this]\n\n[host.release.linked]\npath = \"${path.root}/out/release\"\nsource = \"rel\"\n")],
    );
    let out = s.tend(&s.path("cfg"), &["apply", "--auto-approve"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("holds a symlink, `key`"), "{}", text(&out));
    assert!(!text(&out).contains(canary));
    assert!(!s.path("cfg/out").exists(), "nothing written");
}

#[test]
fn a_secret_file_that_is_a_symlink_out_of_the_config_is_refused() {
    let s = Scratch::new();
    let keygen = s.tend(s.dir.path(), &["secrets", "keygen", "--output", &s.path("age.key").to_string_lossy()]);
    assert!(keygen.status.success(), "{}", text(&keygen));
    write_tree(
        &s.path("cfg"),
        &[(
            "tend.toml",
            "[project]\nname = \"jail\"\n\n[secret.db]\nfile = \"secrets/db.age\"\n\n[host.local.this]\n\n[host.file.a]\npath = \"${path.root}/out/a\"\ncontent = \"${secret.db}\"\n",
        )],
    );
    write_tree(&s.path("outside"), &[("db.age", "not even encrypted")]);
    fs_err::create_dir_all(s.path("cfg/secrets")).expect("mkdir");
    symlink(s.path("outside/db.age"), s.path("cfg/secrets/db.age")).expect("symlink");
    let out = s.tend(&s.path("cfg"), &["plan"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("`secrets/db.age` resolves to") && text(&out).contains("outside the config directory"), "{}", text(&out));
}

#[test]
fn a_yaml_alias_bomb_is_refused_within_a_time_and_memory_limit() {
    let fixture = crate::support::repo().join("tests/fixtures/invalid/yaml_alias_bomb");
    let started = std::time::Instant::now();
    // 1 GiB of address space at most: the expanded document would need far more.
    let out = std::process::Command::new("sh")
        .args(["-c", "ulimit -v 1048576; exec \"$0\" validate -C \"$1\"", env!("CARGO_BIN_EXE_tend"), &fixture.to_string_lossy()])
        .env("NO_COLOR", "1")
        .output()
        .expect("tend runs");
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    let err = unwrapped(&out);
    assert!(err.contains("YAML expands to more than") && err.contains("hosts.yaml:11:16"), "{err}");
}

/// `tend -C DIR ARGS` with the default state path under a private `XDG_STATE_HOME`.
fn tend_default_state(s: &Scratch, dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tend"))
        .args(["-C", &dir.to_string_lossy()])
        .args(args)
        .env("NO_COLOR", "1")
        .env("HOME", s.dir.path())
        .env("XDG_STATE_HOME", s.path("xdg"))
        .env_remove("TEND_STATE")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("tend runs")
}

const ENVS: &str =
    "[project]\nname = \"shared\"\n\n[environments.prod.variables]\n\n[host.local.this]\n\n[host.file.a]\npath = \"${path.root}/out/a\"\ncontent = \"kept\"\n";

#[test]
fn state_belongs_to_one_config_and_one_environment() {
    let s = Scratch::new();
    // Two checkouts of different configs that happen to share a project name.
    write_tree(&s.path("one"), &[("tend.toml", ENVS)]);
    write_tree(
        &s.path("two"),
        &[("tend.toml", "[project]\nname = \"shared\"\n\n[host.local.this]\n\n[host.file.b]\npath = \"${path.root}/out/b\"\ncontent = \"other\"\n")],
    );
    let first = tend_default_state(&s, &s.path("one"), &["apply", "--auto-approve"]);
    assert!(first.status.success(), "{}", text(&first));
    for args in [&["plan"][..], &["apply", "--auto-approve"]] {
        let out = tend_default_state(&s, &s.path("two"), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("belongs to project=shared environment=- source=dir:") && err.contains("/one"), "{err}");
        assert!(err.contains("--reassign-state"), "{err}");
    }
    assert_eq!(fs_err::read_to_string(s.path("one/out/a")).expect("untouched"), "kept");
    // --env prod has its own state: it plans its own resources, never against the default's.
    let prod = tend_default_state(&s, &s.path("one"), &["plan", "--env", "prod", "--detailed-exitcode"]);
    assert_eq!(prod.status.code(), Some(2), "{}", text(&prod));
    let shown = String::from_utf8_lossy(&prod.stdout);
    assert!(shown.contains("1 to add") || shown.contains("2 to add"), "{shown}");
    assert!(!shown.contains("destroy") || shown.contains("0 to destroy"), "{shown}");
    assert!(s.path("xdg/tend/shared/state.db").exists());
    // Moving a checkout changes its source: refused until taken over on purpose.
    fs_err::rename(s.path("one"), s.path("moved")).expect("move");
    let out = tend_default_state(&s, &s.path("moved"), &["plan"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = tend_default_state(&s, &s.path("moved"), &["apply", "--auto-approve", "--reassign-state"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = tend_default_state(&s, &s.path("moved"), &["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "taken over, then planned as its own: {}", text(&out));
}

#[test]
fn an_environment_whose_state_predates_owners_is_told_where_it_lives_now() {
    let s = Scratch::new();
    write_tree(&s.path("cfg"), &[("tend.toml", ENVS)]);
    // What an older tend left: one state file for every environment, without an owner.
    let applied = tend_default_state(&s, &s.path("cfg"), &["apply", "--auto-approve"]);
    assert!(applied.status.success(), "{}", text(&applied));
    let legacy = s.path("xdg/tend/shared/state.db");
    let db = rusqlite::Connection::open(&legacy).expect("sqlite");
    db.execute("DELETE FROM meta WHERE key = 'owner'", []).expect("forget the owner");
    drop(db);
    let out = tend_default_state(&s, &s.path("cfg"), &["plan", "--env", "prod"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("state for environment `prod` is now kept at") && err.contains("tend/shared/env/prod/state.db"), "{err}");
    assert!(err.contains("mv ") && err.contains("--state"), "{err}");
    // Moved as the hint says: prod plans against it.
    fs_err::create_dir_all(s.path("xdg/tend/shared/env/prod")).expect("mkdir");
    fs_err::rename(&legacy, s.path("xdg/tend/shared/env/prod/state.db")).expect("mv");
    // Ownerless state with resources: whose it is cannot be told, so it is taken over once, on purpose.
    let out = tend_default_state(&s, &s.path("cfg"), &["plan", "--env", "prod", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("written before tend recorded owners"), "{}", text(&out));
    let out = tend_default_state(&s, &s.path("cfg"), &["apply", "--env", "prod", "--auto-approve", "--reassign-state"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = tend_default_state(&s, &s.path("cfg"), &["plan", "--env", "prod", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn two_resources_writing_one_path_are_an_error_naming_both() {
    let s = Scratch::new();
    write_tree(
        &s.path("cfg"),
        &[(
            "tend.toml",
            "[project]\nname = \"fight\"\n\n[host.local.this]\n\n[host.file.a]\npath = \"${path.root}/out/conf\"\ncontent = \"a\"\n\n[host.file.b]\npath = \"${path.root}/out/./x/../conf\"\ncontent = \"b\"\n\n[host.line.c]\npath = \"${path.root}//out/conf\"\nline = \"c=1\"\n\n[host.line.d1]\npath = \"${path.root}/out/lines\"\nline = \"d=1\"\n\n[host.line.d2]\npath = \"${path.root}/out/lines\"\nline = \"d=2\"\n",
        )],
    );
    // validate finds it without touching the host, plan too.
    for args in [&["validate"][..], &["plan"]] {
        let out = s.tend(&s.path("cfg"), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("`host.file.a[this]` (tend.toml:")
                && err.contains("`host.file.b[this]` (tend.toml:")
                && err.contains("`host.line.c[this]` (tend.toml:")
                && err.contains("/out/conf on `host.local.this`: each apply would undo the other"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("host.line.d1"), "lines may share a file: {err}");
    }
    assert!(!s.path("cfg/out").exists());
}

#[test]
fn two_resources_that_are_one_file_through_a_symlinked_directory_are_an_error_naming_both() {
    let s = Scratch::new();
    write_tree(
        &s.path("cfg"),
        &[(
            "tend.toml",
            "[project]\nname = \"alias\"\n\n[host.local.this]\n\n[host.file.a]\npath = \"${path.root}/out/real/conf\"\ncontent = \"a\"\n\n[host.file.b]\npath = \"${path.root}/out/link/conf\"\ncontent = \"b\"\n\n[host.file.c]\npath = \"${path.root}/out/real/other\"\ncontent = \"c\"\n",
        )],
    );
    fs_err::create_dir_all(s.path("cfg/out/real")).expect("mkdir");
    symlink("real", s.path("cfg/out/link")).expect("symlink");
    let out = s.tend(&s.path("cfg"), &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = unwrapped(&out);
    let real = fs_err::canonicalize(s.path("cfg/out/real")).expect("real").join("conf");
    assert!(
        err.contains("/out/link/conf and the path of `host.file.a[this]` (")
            && err.contains(&format!("are one file on `host.local.this`, {}, through a symlink", real.display())),
        "{err}"
    );
    assert!(err.contains("`host.file.a[this]`") && err.contains("`host.file.b[this]` ("), "both named: {err}");
    assert!(!err.contains("host.file.c"), "an unrelated file is not part of it: {err}");
    // Nothing applied, not even the unrelated file: the plan has an error.
    assert!(!s.path("cfg/out/real/conf").exists() && !s.path("cfg/out/real/other").exists());
}

#[test]
fn a_symlink_planted_where_a_file_was_observed_is_not_followed_by_chmod() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    write_tree(&s.path("outside"), &[("victim", "not tend's")]);
    fs_err::set_permissions(s.path("outside/victim"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    write_tree(
        &s.path("cfg"),
        &[("tend.toml", "[project]\nname = \"race\"\n\n[host.local.this]\n\n[host.file.f]\npath = \"${path.root}/out/f\"\ncontent = \"x\"\nmode = \"0644\"\n")],
    );
    assert!(s.tend(&s.path("cfg"), &["apply", "--auto-approve"]).status.success());
    // Mode drift, planned and saved; then, before the apply, the file becomes a link.
    fs_err::set_permissions(s.path("cfg/out/f"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let saved = s.path("plan.json");
    let plan = s.tend(&s.path("cfg"), &["plan", "--out", &saved.to_string_lossy()]);
    assert!(plan.status.success(), "{}", text(&plan));
    assert!(String::from_utf8_lossy(&plan.stdout).contains("mode"), "{}", text(&plan));
    fs_err::remove_file(s.path("cfg/out/f")).expect("rm");
    symlink(s.path("outside/victim"), s.path("cfg/out/f")).expect("plant");
    let out = s.tend(&s.path("cfg"), &["apply", &saved.to_string_lossy()]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("it is a symlink now (not followed)"), "{}", text(&out));
    let mode = fs_err::metadata(s.path("outside/victim")).expect("victim").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the link was followed: {}", text(&out));
    assert_eq!(fs_err::read_to_string(s.path("outside/victim")).expect("victim"), "not tend's");
}

#[test]
fn a_template_variable_nothing_defines_is_named() {
    let s = Scratch::new();
    write_tree(
        &s.path("cfg"),
        &[
            (
                "tend.toml",
                "[project]\nname = \"tpl\"\n\n[host.local.this]\nvars = { port = 80 }\n\n[host.template.t]\npath = \"${path.root}/out/t\"\nsource = \"t.j2\"\n",
            ),
            ("t.j2", "listen {{ port }}\nserver {{ sever_name }}\n"),
        ],
    );
    // Found without touching the host: validate and plan alike.
    for args in [&["validate"][..], &["plan"]] {
        let out = s.tend(&s.path("cfg"), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(unwrapped(&out).contains("template `t.j2` uses `sever_name` that host `this` does not define"), "{args:?}: {}", unwrapped(&out));
        assert!(!String::from_utf8_lossy(&out.stdout).contains("No changes"), "{}", text(&out));
    }
}

#[test]
fn a_link_planted_above_a_target_by_another_user_is_not_followed() {
    crate::support::need::need(&[crate::support::need::Need::Root]);
    let s = Scratch::new();
    fs_err::create_dir_all(s.path("outside")).expect("mkdir");
    write_tree(
        &s.path("cfg"),
        &[("tend.toml", "[project]\nname = \"above\"\n\n[host.local.this]\n\n[host.file.f]\npath = \"${path.root}/out/sub/f\"\ncontent = \"one\"\n")],
    );
    assert!(s.tend(&s.path("cfg"), &["apply", "--auto-approve"]).status.success());
    // Another user swaps a directory on the way for a link to somewhere else.
    fs_err::remove_dir_all(s.path("cfg/out/sub")).expect("rm");
    symlink(s.path("outside"), s.path("cfg/out/sub")).expect("plant");
    std::os::unix::fs::lchown(s.path("cfg/out/sub"), Some(65534), Some(65534)).expect("owned by nobody");
    let out = s.tend(&s.path("cfg"), &["apply", "--auto-approve"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("`sub` on the way is a symlink owned by uid 65534 in a directory owned by uid 0: not followed"), "{}", text(&out));
    assert!(fs_err::read_dir(s.path("outside")).expect("outside").next().is_none(), "nothing was written through the link");
    // A link root made (as /var/run -> /run) is followed.
    std::os::unix::fs::lchown(s.path("cfg/out/sub"), Some(0), Some(0)).expect("owned by root");
    let out = s.tend(&s.path("cfg"), &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fs_err::read_to_string(s.path("outside/f")).expect("written"), "one");
}
