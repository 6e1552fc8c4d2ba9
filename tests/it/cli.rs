//! The `tend` binary on a copy of examples/quickstart, and the bad-input paths a user meets:
//! locked, stale-locked and corrupt state, stale saved plans, refused confirmation.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::repo;

struct Run {
    dir: tempfile::TempDir,
}

impl Run {
    /// A temp dir holding a copy of the quickstart (without its output).
    fn quickstart() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        copy_dir(&repo().join("examples/quickstart"), &dir.path().join("qs"));
        Self { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("qs")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state/state.db")
    }

    fn site(&self) -> PathBuf {
        self.root().join("out/site")
    }

    fn tend(&self, args: &[&str]) -> Output {
        self.tend_env(args, &[])
    }

    fn tend_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tend"));
        cmd.args(["-C", &self.root().to_string_lossy(), "--state", &self.state().to_string_lossy()])
            .args(args)
            .env("NO_COLOR", "1")
            .env("XDG_STATE_HOME", self.dir.path().join("xdg"))
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("tend runs")
    }

    /// Replace what differs between machines and runs.
    fn clean(&self, s: &[u8]) -> String {
        let host = hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        let mut text = String::from_utf8_lossy(s).replace(&self.dir.path().to_string_lossy().into_owned(), "[TMP]");
        text = mask_sha256(&text);
        if !host.is_empty() {
            text = text.replace(&format!("\"{host}\""), "\"[HOST]\"");
        }
        text
    }
}

/// Replace every 64-digit lowercase hex run with `[SHA256]`.
fn mask_sha256(t: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    for ch in t.chars().chain(std::iter::once('\0')) {
        if ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase() {
            run.push(ch);
            continue;
        }
        out.push_str(if run.len() == 64 { "[SHA256]" } else { &run });
        run.clear();
        if ch != '\0' {
            out.push(ch);
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    fs_err::create_dir_all(to).expect("mkdir");
    for entry in fs_err::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if name == "out" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type().expect("type").is_dir() { copy_dir(&src, &dst) } else { fs_err::copy(&src, &dst).map(|_| ()).expect("copy") }
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn quickstart_lifecycle_apply_noop_drift_correct_delete_history() {
    let run = Run::quickstart();

    let plan = run.tend(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&plan), 2, "changes pending: {}", stderr(&plan));
    insta::assert_snapshot!("quickstart_first_plan", run.clean(&plan.stdout));

    let apply = run.tend(&["apply", "--auto-approve"]);
    assert_eq!(code(&apply), 0, "{}", stderr(&apply));
    assert!(String::from_utf8_lossy(&apply.stdout).contains("Apply complete: 7 added, 0 changed, 0 replaced, 0 destroyed."));
    let index = fs_err::read_to_string(run.site().join("index.html")).expect("index written");
    assert!(index.starts_with("<h1>Hello from the demo site</h1>"), "{index}");
    assert_eq!(fs_err::read_to_string(run.site().join("app.conf")).expect("app.conf"), "listen = 8080\ngreeting = \"Hello\"\n");
    assert_eq!(fs_err::metadata(run.site().join("app.conf")).expect("stat").permissions().mode() & 0o777, 0o600);
    assert!(run.site().join("MANIFEST.sha256").exists(), "the command ran");
    assert_eq!(fs_err::metadata(run.state()).expect("state").permissions().mode() & 0o777, 0o600);

    let noop = run.tend(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&noop), 0, "{}", stderr(&noop));
    assert_eq!(String::from_utf8_lossy(&noop.stdout), "No changes. The targets match the configuration.\n");

    fs_err::write(run.site().join("index.html"), "edited by hand\n").expect("tamper");
    let manifest_before = fs_err::metadata(run.site().join("MANIFEST.sha256")).expect("stat").modified().expect("mtime");
    let drift = run.tend(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&drift), 2);
    insta::assert_snapshot!("quickstart_drift_plan", run.clean(&drift.stdout));

    let fix = run.tend(&["apply", "--auto-approve"]);
    assert_eq!(code(&fix), 0, "{}", stderr(&fix));
    assert_eq!(fs_err::read_to_string(run.site().join("index.html")).expect("index"), index, "drift corrected");
    let manifest_after = fs_err::metadata(run.site().join("MANIFEST.sha256")).expect("stat").modified().expect("mtime");
    assert!(manifest_after >= manifest_before, "the on_change command ran again");

    fs_err::remove_file(run.root().join("app.yaml")).expect("remove resource");
    let delete_plan = run.tend(&["plan"]);
    insta::assert_snapshot!("quickstart_delete_plan", run.clean(&delete_plan.stdout));
    let delete = run.tend(&["apply", "--auto-approve"]);
    assert_eq!(code(&delete), 0, "{}", stderr(&delete));
    assert!(!run.site().join("app.conf").exists(), "removed resource deleted");

    let history = run.tend(&["history", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&history.stdout).expect("history JSON");
    let rows = rows.as_array().expect("array");
    let summary: Vec<(String, String)> =
        rows.iter().map(|r| (r["result"].as_str().unwrap_or("").to_string(), r["summary"].as_str().unwrap_or("").to_string())).collect();
    assert_eq!(
        summary,
        [
            ("success".to_string(), "7 added, 0 changed, 0 replaced, 0 destroyed".to_string()),
            ("success".to_string(), "0 added, 2 changed, 0 replaced, 0 destroyed".to_string()),
            ("success".to_string(), "0 added, 0 changed, 0 replaced, 1 destroyed".to_string()),
        ]
    );
    assert!(rows.iter().all(|r| r["revision"].as_str().is_some_and(|s| s.starts_with("local@sha256:"))));
    let text = run.tend(&["history"]);
    assert_eq!(String::from_utf8_lossy(&text.stdout).lines().count(), 4, "header + three applies");

    let list = run.tend(&["state", "list"]);
    insta::assert_snapshot!("quickstart_state_list", String::from_utf8_lossy(&list.stdout));
    let show = run.tend(&["state", "show", "host.file.index[this]"]);
    assert!(String::from_utf8_lossy(&show.stdout).contains("sha256"), "{}", stderr(&show));
}

#[test]
fn environment_and_var_override_variables() {
    let run = Run::quickstart();
    let out = run.tend(&["--env", "prod", "--var", "port=9090", "apply", "--auto-approve"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fs_err::read_to_string(run.site().join("app.conf")).expect("app.conf"), "listen = 9090\ngreeting = \"Welcome\"\n");
    let bad = run.tend(&["--env", "qa", "plan"]);
    assert_eq!(code(&bad), 1);
    assert!(stderr(&bad).contains("environment `qa` is not declared"), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("declared environments: prod"), "{}", stderr(&bad));
    let typo = run.tend(&["--var", "prot=1", "plan"]);
    assert!(stderr(&typo).contains("did you mean `port`?"), "{}", stderr(&typo));
}

#[test]
fn apply_without_a_terminal_needs_auto_approve() {
    let run = Run::quickstart();
    let out = run.tend(&["apply"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("refusing to apply without confirmation"), "{}", stderr(&out));
    assert!(!run.site().exists(), "nothing applied");
    assert!(!run.state().exists(), "no state written");
}

#[test]
fn saved_plan_applies_exactly_and_is_refused_once_stale() {
    let run = Run::quickstart();
    let planfile = run.dir.path().join("p1.plan");
    let out = run.tend(&["plan", "--out", &planfile.to_string_lossy()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fs_err::metadata(&planfile).expect("plan").permissions().mode() & 0o777, 0o600);
    // A second saved plan, made against the same (empty) state.
    let p2 = run.dir.path().join("p2.plan");
    assert_eq!(code(&run.tend(&["plan", "--out", &p2.to_string_lossy()])), 0);

    let apply = run.tend(&["apply", &planfile.to_string_lossy()]);
    assert_eq!(code(&apply), 0, "{}", stderr(&apply));
    assert!(run.site().join("index.html").exists());

    let stale = run.tend(&["apply", &p2.to_string_lossy()]);
    assert_eq!(code(&stale), 1);
    let msg = run.clean(&stale.stderr);
    insta::assert_snapshot!("stale_saved_plan", msg);
}

#[test]
fn saved_plan_is_refused_when_a_source_file_changed_after_planning() {
    let run = Run::quickstart();
    let planfile = run.dir.path().join("p.plan");
    assert_eq!(code(&run.tend(&["plan", "--out", &planfile.to_string_lossy()])), 0);
    fs_err::write(run.root().join("files/style.css"), "body { color: red }\n").expect("edit source");
    let out = run.tend(&["apply", &planfile.to_string_lossy()]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("host.file.style[this]") && err.contains("changed since the plan was made"), "{err}");
    assert!(!run.site().join("assets/style.css").exists(), "the changed file was not written");
}

#[test]
fn locked_state_names_its_holder() {
    let run = Run::quickstart();
    fs_err::create_dir_all(run.state().parent().expect("parent")).expect("mkdir");
    let store = tend::state::SqliteStore::open(&run.state()).expect("state");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(tend::state::StateStore::lock(&store, "apply")).expect("lock");
    let out = run.tend(&["apply", "--auto-approve"]);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(err.contains(&format!("state is locked by `apply` (pid {} on ", std::process::id())), "{err}");
    assert!(err.contains("hint: wait for that run to finish"), "{err}");
    assert!(!run.site().exists(), "nothing applied while locked");
}

#[test]
fn lock_left_by_a_dead_process_on_this_host_is_taken_over_and_its_run_shows_interrupted() {
    let run = Run::quickstart();
    fs_err::create_dir_all(run.state().parent().expect("parent")).expect("mkdir");
    drop(tend::state::SqliteStore::open(&run.state()).expect("state"));
    let host = hostname::get().expect("hostname").to_string_lossy().into_owned();
    let db = rusqlite::Connection::open(run.state()).expect("sqlite");
    db.execute("INSERT INTO lock (id, host, pid, started_at, operation) VALUES (1, ?1, 999999999, '2026-01-01T00:00:00Z', 'apply')", [&host])
        .expect("insert lock");
    db.execute(
        "INSERT INTO history (revision, started_at, who, summary, result) VALUES ('local@sha256:0', '2026-01-01T00:00:00Z', 'x@y', '1 to add', 'running')",
        [],
    )
    .expect("insert history");
    drop(db);
    let out = run.tend_env(&["apply", "--auto-approve"], &[("RUST_LOG", "tend_state=warn")]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("taking over the state lock left by a run that is no longer running"), "{}", stderr(&out));
    assert!(stderr(&out).contains("pid 999999999"), "the old holder is named: {}", stderr(&out));
    let history = run.tend(&["history"]);
    let shown = String::from_utf8_lossy(&history.stdout);
    assert!(shown.contains("interrupted"), "{shown}");
    // A lock held by a live process elsewhere is not taken: the message says how to unlock.
    let db = rusqlite::Connection::open(run.state()).expect("sqlite");
    db.execute("INSERT INTO lock (id, host, pid, started_at, operation) VALUES (1, 'other-host', 1, '2026-01-01T00:00:00Z', 'apply')", [])
        .expect("insert lock");
    drop(db);
    fs_err::remove_dir_all(run.site()).expect("drift, so that apply has work to do");
    let out = run.tend(&["apply", "--auto-approve"]);
    assert_eq!(code(&out), 1);
    insta::assert_snapshot!("lock_on_another_host", stderr(&out));
    assert_eq!(code(&run.tend(&["state", "unlock", "--force"])), 0);
    assert_eq!(code(&run.tend(&["apply", "--auto-approve"])), 0);
}

#[test]
fn corrupt_state_is_reported_and_never_overwritten() {
    let run = Run::quickstart();
    fs_err::create_dir_all(run.state().parent().expect("parent")).expect("mkdir");
    let garbage = b"definitely not a sqlite database, but someone's notes\n".repeat(20);
    fs_err::write(run.state(), &garbage).expect("write garbage");
    for args in [&["plan"][..], &["apply", "--auto-approve"][..]] {
        let out = run.tend(args);
        assert_eq!(code(&out), 1, "{args:?}");
        let err = run.clean(&out.stderr);
        assert!(err.contains("state file [TMP]/state/state.db is corrupt or not a tend state file"), "{err}");
        assert!(err.contains("tend will not overwrite it"), "{err}");
    }
    assert_eq!(fs_err::read(run.state()).expect("read"), garbage);
}

#[test]
fn json_plan_is_parseable_and_complete() {
    let run = Run::quickstart();
    let out = run.tend(&["plan", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(plan["format_version"], "1");
    assert_eq!(plan["summary"]["add"], 7);
    assert_eq!(plan["applyable"], true);
    let addrs: Vec<&str> = plan["changes"].as_array().expect("changes").iter().filter_map(|c| c["address"].as_str()).collect();
    assert_eq!(addrs.first(), Some(&"host.local.this"), "dependencies come first");
    assert!(addrs.contains(&"host.command.manifest[this]"));
}

#[test]
fn validate_and_graph_do_not_touch_anything() {
    let run = Run::quickstart();
    let v = run.tend(&["validate"]);
    assert_eq!(code(&v), 0, "{}", stderr(&v));
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("The configuration is valid: 7 resources, 7 instances"));
    let dot = run.tend(&["graph"]);
    assert!(String::from_utf8_lossy(&dot.stdout).contains("\"host.directory.site[this]\" -> \"host.file.index[this]\" [label = \"reference\"];"));
    let json = run.tend(&["graph", "--format", "json"]);
    let g: serde_json::Value = serde_json::from_slice(&json.stdout).expect("graph JSON");
    assert_eq!(g["nodes"].as_array().map(Vec::len), Some(7));
    assert!(!run.site().exists() && !run.state().exists());
}

#[test]
fn prevent_destroy_stops_the_plan_and_touches_nothing() {
    let run = Run::quickstart();
    let site = run.root().join("site.toml");
    let text = fs_err::read_to_string(&site).expect("site.toml");
    fs_err::write(&site, text.replace("source = \"files/style.css\"", "source = \"files/style.css\"\nlifecycle = { prevent_destroy = true }")).expect("write");
    assert_eq!(code(&run.tend(&["apply", "--auto-approve"])), 0);
    // Changing the path forces replacement; removing it would destroy it.
    let moved = fs_err::read_to_string(&site).expect("site.toml").replace("/style.css\"\nsource", "/main.css\"\nsource");
    fs_err::write(&site, moved).expect("write");
    let out = run.tend(&["apply", "--auto-approve"]);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(err.contains("`host.file.style[this]` declared at site.toml:17:12 has lifecycle.prevent_destroy set, but this plan would replace it (changing path forces replacement)"), "{err}");
    assert!(err.contains("nothing was applied"), "{err}");
    assert!(run.site().join("assets/style.css").exists() && !run.site().join("assets/main.css").exists());
}

#[test]
fn a_state_path_that_cannot_be_opened_is_named() {
    let run = Run::quickstart();
    fs_err::create_dir_all(run.state()).expect("a directory where the state file should be");
    let out = run.tend(&["apply", "--auto-approve"]);
    assert_eq!(code(&out), 1);
    let err = run.clean(&out.stderr);
    assert!(err.contains("error: cannot open state file [TMP]/state/state.db\n  Caused by: it is a directory"), "{err}");
    assert!(!run.site().exists(), "nothing applied");
}

#[test]
fn usage_errors_exit_1_never_2_which_means_changes_pending() {
    let run = Run::quickstart();
    for args in [&["plan", "--detailed-exitcod"][..], &["deploy"], &["plan", "--no-such-flag"], &["apply", "--detailed-exitcode"]] {
        let out = run.tend(args);
        assert_eq!(code(&out), 1, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("error:"), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(code(&run.tend(&["--help"])), 0);
    assert_eq!(code(&run.tend(&["--version"])), 0);
}

#[test]
fn rollback_names_what_it_cannot_roll_back() {
    let run = Run::quickstart();
    assert_eq!(code(&run.tend(&["apply", "--auto-approve"])), 0);
    // A host that keeps no generations: its provider says why.
    let out = run.tend(&["rollback", "this"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("host `this` has no recorded generations") && stderr(&out).contains("generations = true"), "{}", stderr(&out));
    // A name nothing recorded has.
    let out = run.tend(&["rollback", "nosuch"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing recorded under the name `nosuch` supports `rollback`"), "{}", stderr(&out));
}

#[test]
fn plans_show_what_changes_inside_files_as_diffs_and_colour_only_when_asked() {
    let run = Run::quickstart();
    assert_eq!(code(&run.tend(&["apply", "--auto-approve"])), 0);
    let css = run.root().join("files/style.css");
    fs_err::write(&css, "body { font-family: sans-serif; margin: 2rem; }\nh1 { color: #c33; }\n").expect("edit");
    let plan = run.tend(&["plan"]);
    let text = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert!(
        text.contains("        content:\n          @@ -1,2 +1,2 @@\n           body { font-family: sans-serif; margin: 2rem; }\n          -h1 { color: #2a6; }\n          +h1 { color: #c33; }\n"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no colour without a terminal: {text:?}");
    let no_diff = String::from_utf8_lossy(&run.tend(&["plan", "--no-diff"]).stdout).into_owned();
    assert!(!no_diff.contains("content:") && no_diff.contains("~ host.file.style[this]"), "{no_diff}");
    let tight = String::from_utf8_lossy(&run.tend(&["plan", "--diff-context", "0"]).stdout).into_owned();
    assert!(tight.contains("          @@ -2 +2 @@\n          -h1 { color: #2a6; }\n") && !tight.contains(" body {"), "{tight}");
    let coloured = String::from_utf8_lossy(&run.tend(&["plan", "--color", "always"]).stdout).into_owned();
    assert!(
        coloured.contains("\x1b[31m          -h1 { color: #2a6; }\x1b[0m") && coloured.contains("\x1b[33m  ~ host.file.style[this]\x1b[0m"),
        "{coloured:?}"
    );
    let uncoloured = String::from_utf8_lossy(&run.tend(&["plan", "--color", "always", "--no-color"]).stdout).into_owned();
    assert!(!uncoloured.contains('\x1b'), "{uncoloured:?}");
    // Binary content is summarised, not printed.
    fs_err::write(&css, b"\x00\x01\x02\x03\x04").expect("binary");
    let binary = String::from_utf8_lossy(&run.tend(&["plan"]).stdout).into_owned();
    assert!(binary.contains("content: binary content, 68 B -> 5 B"), "{binary}");
}

#[test]
fn only_pending_changes_exit_2_every_error_exits_1() {
    let run = Run::quickstart();
    // A mistyped flag, a command that does not exist: user mistakes.
    assert_eq!(code(&run.tend(&["plan", "--detailed-exitcod"])), 1);
    assert_eq!(code(&run.tend(&["plna"])), 1);
    assert_eq!(code(&run.tend(&["plan", "--detailed-exitcode"])), 2, "changes pending");
    // A resource that fails: an error, also with --detailed-exitcode.
    fs_err::write(run.root().join("broken.toml"), "[host.command.broken]\non = [\"this\"]\nrun = \"exit 3\"\n").expect("write");
    let failed = run.tend(&["apply", "--auto-approve"]);
    assert_eq!(code(&failed), 1, "{}", stderr(&failed));
    assert!(stderr(&failed).contains("host.command.broken[this]"), "{}", stderr(&failed));
    // A plan that cannot be made (invalid config) is an error, never "changes pending".
    fs_err::write(run.root().join("broken.toml"), "[host.command.broken]\non = [\"this\"]\nrun = 3\n").expect("write");
    assert_eq!(code(&run.tend(&["plan", "--detailed-exitcode"])), 1);
}

#[test]
fn completions_the_man_page_and_the_version_come_from_the_binary() {
    let tend = |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_tend")).args(args).output().expect("tend runs");
    let version = String::from_utf8_lossy(&tend(&["--version"]).stdout).into_owned();
    let head = std::process::Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).current_dir(repo()).output().expect("git");
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    // Built from a checkout: its commit; from a tarball: said so.
    let commit = if head.is_empty() { "unknown".to_string() } else { head };
    assert!(version.starts_with(&format!("tend {} (commit {commit}", env!("CARGO_PKG_VERSION"))), "{version} vs {commit}");
    // Bash: the script parses, and completing `tend pl` offers `plan`.
    let script = tend(&["completions", "bash"]);
    assert!(script.status.success());
    let dir = tempfile::tempdir().expect("temp");
    let file = dir.path().join("tend.bash");
    fs_err::write(&file, &script.stdout).expect("write");
    let completed = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source {}; COMP_WORDS=(tend pl); COMP_CWORD=1; _tend tend pl tend; echo \"${{COMPREPLY[@]}}\"", file.display()))
        .output()
        .expect("bash");
    assert_eq!(String::from_utf8_lossy(&completed.stdout).trim(), "plan", "{}", String::from_utf8_lossy(&completed.stderr));
    assert!(String::from_utf8_lossy(&tend(&["completions", "zsh"]).stdout).starts_with("#compdef tend"));
    assert!(String::from_utf8_lossy(&tend(&["completions", "fish"]).stdout).contains("complete -c tend"));
    // The man page: roff with every subcommand.
    let page = tend(&["man"]);
    let roff = String::from_utf8_lossy(&page.stdout).into_owned();
    assert!(page.status.success() && roff.contains(".TH tend 1") && roff.contains(".SH SUBCOMMANDS"), "{roff}");
    for sub in ["tend\\-plan(1)", "tend\\-apply(1)", "tend\\-completions(1)", "tend\\-rollback(1)"] {
        assert!(roff.contains(sub), "{sub} in {roff}");
    }
}

#[test]
fn a_directory_may_be_given_as_the_argument_and_typo_tips_are_near_misses_only() {
    let run = Run::quickstart();
    let raw = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tend"))
            .args(["--state", &run.state().to_string_lossy()])
            .args(args)
            .current_dir(run.dir.path())
            .env("NO_COLOR", "1")
            .env("XDG_STATE_HOME", run.dir.path().join("xdg"))
            .stdin(std::process::Stdio::null())
            .output()
            .expect("tend runs")
    };
    let root = run.root().to_string_lossy().into_owned();
    let by_arg = raw(&["plan", &root]);
    assert_eq!(code(&by_arg), 0, "{}", stderr(&by_arg));
    assert_eq!(by_arg.stdout, run.tend(&["plan"]).stdout, "`tend plan DIR` is `tend -C DIR plan`");
    assert_eq!(code(&raw(&["validate", &root])), 0);
    let applied = raw(&["apply", &root, "--auto-approve"]);
    assert_eq!(code(&applied), 0, "{}", stderr(&applied));
    assert!(run.site().join("index.html").exists());
    let twice = raw(&["plan", &root, "-C", "/"]);
    assert_eq!(code(&twice), 1);
    assert!(stderr(&twice).contains("the config directory is given twice"), "{}", stderr(&twice));
    // Tips only for near misses, and an option of another command names that command.
    let deploy = raw(&["deploy"]);
    assert_eq!(code(&deploy), 1);
    assert!(stderr(&deploy).contains("unrecognized subcommand 'deploy'") && !stderr(&deploy).contains("similar"), "{}", stderr(&deploy));
    let far = raw(&["plan", "--stat"]);
    assert!(stderr(&far).contains("a similar argument exists: '--state'"), "a near miss keeps its tip: {}", stderr(&far));
    let frob = raw(&["plan", "--frobnicate"]);
    assert!(!stderr(&frob).contains("similar"), "{}", stderr(&frob));
    let misplaced = raw(&["apply", "--detailed-exitcode"]);
    assert!(
        stderr(&misplaced).contains("`--detailed-exitcode` is an option of `tend plan`") && !stderr(&misplaced).contains("as a value"),
        "{}",
        stderr(&misplaced)
    );
    assert!(stderr(&raw(&["pln"])).contains("a similar subcommand exists: 'plan'"));
    let swapped = raw(&["destory"]);
    assert!(stderr(&swapped).contains("a similar subcommand exists: 'destroy'") && !stderr(&swapped).contains("history"), "{}", stderr(&swapped));
    assert!(stderr(&raw(&["plan", "--detailed-exitcod"])).contains("a similar argument exists: '--detailed-exitcode'"));
}

#[test]
fn history_says_who_ran_each_apply_and_what_came_of_each_resource() {
    let run = Run::quickstart();
    fs_err::write(run.root().join("broken.toml"), "[host.command.broken]\non = [\"this\"]\nrun = \"echo nope >&2; exit 3\"\n").expect("write");
    // Without $USER (cron, systemd): the user's name comes from the uid.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tend"));
    cmd.args(["-C", &run.root().to_string_lossy(), "--state", &run.state().to_string_lossy(), "apply", "--auto-approve"])
        .env_remove("USER")
        .env_remove("LOGNAME")
        .env("XDG_STATE_HOME", run.dir.path().join("xdg"))
        .stdin(std::process::Stdio::null());
    let failed = cmd.output().expect("tend runs");
    assert_eq!(code(&failed), 1, "{}", stderr(&failed));
    let me = std::process::Command::new("id").arg("-un").output().expect("id");
    let me = String::from_utf8_lossy(&me.stdout).trim().to_string();
    let rows: serde_json::Value = serde_json::from_slice(&run.tend(&["history", "--json"]).stdout).expect("json");
    assert!(rows[0]["who"].as_str().is_some_and(|w| w.starts_with(&format!("{me}@"))), "{rows}");
    // One run: each resource's action and outcome.
    let one = run.tend(&["history", "1"]);
    assert_eq!(code(&one), 0, "{}", stderr(&one));
    let text = String::from_utf8_lossy(&one.stdout).into_owned();
    assert!(text.starts_with("Run 1: failed by "), "{text}");
    assert!(text.contains("  applied  create  host.file.index[this]\n"), "{text}");
    assert!(text.contains("  failed   create  host.command.broken[this]: command exited with status 3"), "{text}");
    let json: serde_json::Value = serde_json::from_slice(&run.tend(&["history", "1", "--json"]).stdout).expect("json");
    assert!(json["outcomes"].as_array().is_some_and(|o| o.len() == 8), "{json}");
    let missing = run.tend(&["history", "99"]);
    assert_eq!(code(&missing), 1);
    assert!(stderr(&missing).contains("no run 99") && stderr(&missing).contains("the last is 1"), "{}", stderr(&missing));
}

#[test]
fn a_command_is_reported_as_run_and_what_it_printed_is_kept_bounded() {
    let run = Run::quickstart();
    fs_err::write(
        run.root().join("cmd.toml"),
        "[host.command.hello]\non = [\"this\"]\nrun = \"echo hello-out; echo warn-err >&2; i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done\"\n",
    )
    .expect("write");
    let plan = String::from_utf8_lossy(&run.tend(&["plan"]).stdout).into_owned();
    assert!(plan.contains("# host.command.hello[this] will run\n"), "{plan}");
    let applied = run.tend(&["apply", "--auto-approve"]);
    assert_eq!(code(&applied), 0, "{}", stderr(&applied));
    let progress = stderr(&applied);
    assert!(progress.contains("host.command.hello[this]: running...") && progress.contains("host.command.hello[this]: ran ("), "{progress}");
    let shown = String::from_utf8_lossy(&run.tend(&["state", "show", "host.command.hello[this]"]).stdout).into_owned();
    assert!(shown.contains("stderr      = \"warn-err\\n\"") && shown.contains("exit_status = 0"), "{shown}");
    // The last 4 KiB of stdout, from a line start, saying how much came before.
    assert!(shown.contains("line-1999\\n\"") && shown.contains("stdout      = \"[… ") && !shown.contains("stdout      = \"hello-out"), "{shown}");
    // A changed command: "will run again".
    fs_err::write(run.root().join("cmd.toml"), "[host.command.hello]\non = [\"this\"]\nrun = \"echo bye >&2; exit 5\"\n").expect("write");
    let again = String::from_utf8_lossy(&run.tend(&["plan"]).stdout).into_owned();
    assert!(again.contains("# host.command.hello[this] will run again: it changed\n"), "{again}");
    let failed = run.tend(&["apply", "--auto-approve"]);
    assert_eq!(code(&failed), 1);
    assert!(stderr(&failed).contains("command exited with status 5") && stderr(&failed).contains("its last lines of stderr:\nbye"), "{}", stderr(&failed));
}

#[test]
fn mistakes_people_make_get_errors_that_say_how_to_fix_them() {
    let run = Run::quickstart();
    // A mode written as a number.
    fs_err::write(run.root().join("extra.toml"), "[host.file.m]\non = [\"this\"]\npath = \"${path.root}/out/m\"\ncontent = \"x\"\nmode = 644\n")
        .expect("write");
    let mode = run.tend(&["plan"]);
    assert_eq!(code(&mode), 1);
    assert!(stderr(&mode).contains("modes are strings, written in octal: mode = \"0644\"") && stderr(&mode).contains("extra.toml:5"), "{}", stderr(&mode));
    // Plan errors are never shown beside "No changes".
    fs_err::write(run.root().join("extra.toml"), "[host.file.m]\non = [\"this\"]\npath = \"${var.root}/index.html\"\ncontent = \"x\"\n").expect("write");
    assert_eq!(code(&run.tend(&["apply", "--auto-approve"])), 1);
    fs_err::remove_file(run.root().join("extra.toml")).expect("rm");
    assert_eq!(code(&run.tend(&["apply", "--auto-approve"])), 0);
    fs_err::write(run.root().join("extra.toml"), "[host.file.m]\non = [\"this\"]\npath = \"${var.root}/index.html\"\ncontent = \"x\"\n").expect("write");
    let conflict = run.tend(&["plan"]);
    assert_eq!(code(&conflict), 1);
    let out = String::from_utf8_lossy(&conflict.stdout).into_owned();
    assert!(!out.contains("No changes") && out.contains("The plan cannot be applied: 1 error (below)."), "{out}");
    fs_err::remove_file(run.root().join("extra.toml")).expect("rm");
    // `state show` of a resource by its name alone suggests its instances.
    let show = run.tend(&["state", "show", "host.file.index"]);
    assert_eq!(code(&show), 1);
    assert!(stderr(&show).contains("it has instances") && stderr(&show).contains("tend state show 'host.file.index[this]'"), "{}", stderr(&show));
    // keygen into a directory that does not exist makes it, private.
    let key = run.dir.path().join("keys/new/me.key");
    let generated = run.tend(&["secrets", "keygen", "--output", &key.to_string_lossy()]);
    assert_eq!(code(&generated), 0, "{}", stderr(&generated));
    assert_eq!(fs_err::metadata(key.parent().expect("dir")).expect("dir").permissions().mode() & 0o777, 0o700);
    assert_eq!(fs_err::metadata(&key).expect("key").permissions().mode() & 0o777, 0o600);
}

#[test]
fn target_limit_replace_show_and_destroy_work_as_terraform_and_ansible_users_expect() {
    let run = Run::quickstart();
    let out = |args: &[&str]| {
        let o = run.tend(args);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // --target: the resource and what it needs, nothing else.
    let targeted = out(&["plan", "--target", "host.file.style"]);
    assert!(targeted.contains("# host.file.style[this] will be created") && targeted.contains("# host.directory.assets[this] will be created"), "{targeted}");
    assert!(!targeted.contains("host.file.index") && targeted.contains("3 other changes are left out"), "{targeted}");
    out(&["apply", "--target", "host.file.style", "--auto-approve"]);
    assert!(run.site().join("assets/style.css").exists() && !run.site().join("index.html").exists());
    // --limit: by host name or label; nothing on a host that does not match.
    let nothing = out(&["plan", "--limit", "elsewhere"]);
    assert!(nothing.contains("left out") && !nothing.contains("will be created"), "{nothing}");
    let by_label = out(&["plan", "--limit", "role=demo"]);
    assert!(by_label.contains("# host.file.index[this] will be created") && !by_label.contains("left out"), "{by_label}");
    out(&["apply", "--auto-approve"]);
    // --replace: re-created though nothing changed.
    let replaced = out(&["plan", "--replace", "host.file.index[this]"]);
    assert!(replaced.contains("-/+ host.file.index[this]") && replaced.contains("(asked for with --replace)"), "{replaced}");
    // A saved plan: shown, and applied from anywhere (it knows its config).
    let saved = run.dir.path().join("replace.plan");
    out(&["plan", "--replace", "host.file.index", "--out", &saved.to_string_lossy()]);
    let shown = out(&["show", &saved.to_string_lossy()]);
    assert!(shown.contains("-/+ host.file.index[this]") && shown.contains("applies exactly this"), "{shown}");
    let json: serde_json::Value = serde_json::from_str(&out(&["show", &saved.to_string_lossy(), "--json"])).expect("json");
    assert_eq!(json["summary"]["replace"], 1);
    let elsewhere = std::process::Command::new(env!("CARGO_BIN_EXE_tend"))
        .args(["--state", &run.state().to_string_lossy(), "apply", &saved.to_string_lossy()])
        .current_dir("/")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("tend runs");
    assert_eq!(code(&elsewhere), 0, "{}", stderr(&elsewhere));
    assert!(String::from_utf8_lossy(&elsewhere.stdout).contains("1 replaced"), "{}", String::from_utf8_lossy(&elsewhere.stdout));
    // A saved plan is applied as saved: no selection on top.
    assert_eq!(code(&run.tend(&["apply", &saved.to_string_lossy(), "--target", "host.file.style"])), 1);
    // destroy: everything recorded, after a confirmation (here --auto-approve).
    assert_eq!(code(&run.tend(&["destroy"])), 1, "no confirmation without a terminal");
    // What tend did not make (the command's MANIFEST) keeps its directory: nothing is lost.
    let first = run.tend(&["destroy", "--auto-approve"]);
    assert_eq!(code(&first), 1);
    assert!(String::from_utf8_lossy(&first.stdout).contains("# host.directory.site[this] will be destroyed"), "{}", stderr(&first));
    assert!(stderr(&first).contains("the directory holds files tend does not manage") && run.site().join("MANIFEST.sha256").exists(), "{}", stderr(&first));
    assert!(!run.site().join("index.html").exists());
    fs_err::remove_file(run.site().join("MANIFEST.sha256")).expect("rm");
    let gone = out(&["destroy", "--auto-approve"]);
    assert!(gone.contains("2 destroyed"), "{gone}");
    assert!(!run.site().exists());
    assert_eq!(out(&["state", "list"]), "");
}

#[test]
fn refresh_only_records_what_changed_outside_tend_and_touches_nothing() {
    let run = Run::quickstart();
    assert_eq!(code(&run.tend(&["apply", "--auto-approve"])), 0);
    let nothing = run.tend(&["plan", "--refresh-only", "--detailed-exitcode"]);
    assert_eq!((code(&nothing), String::from_utf8_lossy(&nothing.stdout).into_owned()), (0, "No changes. State matches what the targets hold.\n".into()));

    fs_err::write(run.site().join("index.html"), "edited by hand\n").expect("tamper");
    fs_err::set_permissions(run.site().join("assets/style.css"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    fs_err::remove_file(run.site().join("app.conf")).expect("delete");
    let plan = run.tend(&["plan", "--refresh-only", "--detailed-exitcode"]);
    assert_eq!(code(&plan), 2, "{}", stderr(&plan));
    insta::assert_snapshot!("quickstart_refresh_only_plan", run.clean(&plan.stdout));
    let json = run.tend(&["plan", "--refresh-only", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("plan JSON");
    let actions: Vec<(&str, &str)> =
        json["refreshed"].as_array().expect("refreshed").iter().map(|r| (r["address"].as_str().unwrap_or(""), r["action"].as_str().unwrap_or(""))).collect();
    assert_eq!(actions, [("host.file.app_config[this]", "forget"), ("host.file.index[this]", "update-state"), ("host.file.style[this]", "update-state")]);
    assert_eq!((json["refresh_only"].as_bool(), json["summary"]["change"].as_u64()), (Some(true), Some(0)));

    // Saved, shown and applied as any plan.
    let saved = run.dir.path().join("refresh.plan");
    assert_eq!(code(&run.tend(&["plan", "--refresh-only", "--out", &saved.to_string_lossy()])), 0);
    let shown = String::from_utf8_lossy(&run.tend(&["show", &saved.to_string_lossy()]).stdout).into_owned();
    assert!(shown.contains("Refresh: 2 to update in state, 1 to forget."), "{shown}");
    let apply = run.tend(&["apply", &saved.to_string_lossy()]);
    assert_eq!(code(&apply), 0, "{}", stderr(&apply));
    assert!(String::from_utf8_lossy(&apply.stdout).contains("Apply complete: 2 updated in state, 1 forgotten."), "{}", String::from_utf8_lossy(&apply.stdout));
    let reapplied = run.tend(&["apply", &saved.to_string_lossy()]);
    assert_eq!(code(&reapplied), 1, "a refresh plan is refused once state moved on, as any plan");
    // Nothing on the target changed.
    assert_eq!(fs_err::read_to_string(run.site().join("index.html")).expect("index"), "edited by hand\n");
    assert_eq!(fs_err::metadata(run.site().join("assets/style.css")).expect("stat").permissions().mode() & 0o777, 0o600);
    assert!(!run.site().join("app.conf").exists());
    // State did: the mode observed, the deleted file forgotten.
    let style = run.tend(&["state", "show", "host.file.style[this]", "--json"]);
    let style: serde_json::Value = serde_json::from_slice(&style.stdout).expect("record JSON");
    assert_eq!(style["attributes"]["mode"], "0600", "{style}");
    let list = String::from_utf8_lossy(&run.tend(&["state", "list"]).stdout).into_owned();
    assert!(!list.contains("app_config") && list.contains("host.file.index[this]"), "{list}");
    let again = run.tend(&["plan", "--refresh-only", "--detailed-exitcode"]);
    assert_eq!(code(&again), 0, "{}", String::from_utf8_lossy(&again.stdout));
    // Planned and applied in one go.
    fs_err::set_permissions(run.site().join("assets/style.css"), std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let direct = run.tend(&["apply", "--refresh-only", "--auto-approve"]);
    assert!(String::from_utf8_lossy(&direct.stdout).contains("Apply complete: 1 updated in state, 0 forgotten."), "{}", stderr(&direct));
    fs_err::set_permissions(run.site().join("assets/style.css"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert_eq!(code(&run.tend(&["apply", "--refresh-only", "--auto-approve"])), 0);
    // The next plan still converges the targets to the configuration.
    let plan = String::from_utf8_lossy(&run.tend(&["plan"]).stdout).into_owned();
    assert!(plan.contains("host.file.app_config[this] will be created") && plan.contains("Plan: 1 to add, 3 to change"), "{plan}");
    let history = run.tend(&["history", "2"]);
    let history = String::from_utf8_lossy(&history.stdout).into_owned();
    assert!(history.contains("2 updated in state, 1 forgotten") && history.contains("forget") && history.contains("deleted outside tend"), "{history}");
}

#[test]
fn refresh_only_cannot_be_combined_with_replace() {
    let run = Run::quickstart();
    let out = run.tend(&["plan", "--refresh-only", "--replace", "host.file.index"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot be used with"), "{}", stderr(&out));
}

#[test]
fn the_command_plan_out_prints_applies_the_plan_from_anywhere_in_its_environment() {
    let run = Run::quickstart();
    let saved = run.dir.path().join("prod plan.json");
    let out = run.tend(&["--env", "prod", "plan", "--out", &saved.to_string_lossy()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let printed = stdout.lines().last().expect("a command").trim().to_string();
    assert!(printed.starts_with("tend --state ") && printed.contains('\''), "the state file and the quoted plan path: {printed}");
    let wrong = run.tend(&["--env", "dev", "apply", &saved.to_string_lossy()]);
    assert_eq!(code(&wrong), 1);
    assert!(stderr(&wrong).contains("the saved plan was made for environment `prod`, not `dev`"), "{}", stderr(&wrong));
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_tend")).parent().expect("bin dir").to_path_buf();
    let applied = std::process::Command::new("sh")
        .args(["-c", &printed])
        .current_dir("/")
        .env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()))
        .env("NO_COLOR", "1")
        .env("XDG_STATE_HOME", run.dir.path().join("xdg"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("sh runs");
    assert_eq!(code(&applied), 0, "{}", stderr(&applied));
    let index = fs_err::read_to_string(run.site().join("index.html")).expect("applied");
    assert!(index.starts_with("<h1>Welcome from"), "the prod variables: {index}");
}
