//! The host provider on the local machine: guards, ownership, directories, failures.

use std::os::unix::fs::MetadataExt;

use tend::provider::Action;
use tend::report::Outcome;
use tend::workspace::WorkspaceError;

use crate::support::{Bench, write_tree};

fn cfg(bench: &Bench, body: &str) -> std::path::PathBuf {
    let root = bench.dir.path().join("cfg");
    write_tree(&root, &[("tend.toml", &format!("[host.local.this]\n\n{body}"))]);
    root
}

#[tokio::test]
async fn command_guards_creates_and_unless_skip_the_command() {
    let bench = Bench::new();
    let root = cfg(
        &bench,
        r#"
[host.command.made]
run = "echo ran > ${path.root}/made.log"
creates = "${path.root}/tend.toml"

[host.command.unless_true]
run = "echo ran > ${path.root}/unless_true.log"
unless = "true"

[host.command.unless_false]
run = "echo ran > ${path.root}/unless_false.log"
unless = "false"
"#,
    );
    let plan = bench.plan(&root).await;
    let action = |n: &str| plan.changes.iter().find(|c| &*c.addr.name == n).map(|c| (c.action, c.note.clone())).expect("planned");
    assert_eq!(action("made").0, Action::NoOp);
    assert!(action("made").1.unwrap_or_default().contains("skipped"), "{:?}", action("made"));
    assert_eq!(action("unless_true").0, Action::NoOp);
    assert_eq!(action("unless_false").0, Action::Create);
    assert!(bench.apply_plan(&root, &plan).await.success());
    assert!(!root.join("made.log").exists() && !root.join("unless_true.log").exists());
    assert_eq!(fs_err::read_to_string(root.join("unless_false.log")).expect("ran"), "ran\n");
}

#[tokio::test]
async fn a_failing_command_reports_status_and_stderr_and_skips_its_dependents() {
    let bench = Bench::new();
    let root = cfg(
        &bench,
        r#"
[host.command.broken]
run = "echo 'no such service: web' >&2; exit 3"

[host.file.after]
path = "${path.root}/out/after.txt"
content = "x"
depends_on = ["host.command.broken"]

[host.file.independent]
path = "${path.root}/out/independent.txt"
content = "y"
"#,
    );
    let outcome = bench.apply(&root).await;
    let failed: Vec<String> = outcome
        .results
        .iter()
        .filter_map(|(a, _, o)| match o {
            Outcome::Failed(m) => Some(format!("{a}: {m}")),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].contains("command exited with status 3 on host `this`"), "{}", failed[0]);
    assert!(failed[0].contains("no such service: web"), "{}", failed[0]);
    assert!(outcome.results.iter().any(|(a, _, o)| &*a.name == "after" && matches!(o, Outcome::Skipped(_))));
    assert!(root.join("out/independent.txt").exists() && !root.join("out/after.txt").exists());
}

#[tokio::test]
async fn owner_group_and_mode_are_applied_and_drift_in_them_is_seen() {
    crate::support::need::need(&[crate::support::need::Need::Root]);
    let bench = Bench::new();
    let root =
        cfg(&bench, "[host.file.owned]\npath = \"${path.root}/out/owned.txt\"\ncontent = \"o\"\nowner = \"nobody\"\ngroup = \"nogroup\"\nmode = \"0640\"\n");
    assert!(bench.apply(&root).await.success());
    let meta = fs_err::metadata(root.join("out/owned.txt")).expect("written");
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (65534, 65534, 0o640));
    std::os::unix::fs::chown(root.join("out/owned.txt"), Some(0), None).expect("chown back");
    let plan = bench.plan(&root).await;
    let c = &plan.changes.iter().find(|c| &*c.addr.name == "owned").expect("planned");
    assert_eq!(c.action, Action::Update);
    assert_eq!(c.before.as_ref().and_then(|b| b.get("owner")).and_then(|v| v.as_str()), Some("root"));
    assert!(bench.apply_plan(&root, &plan).await.success());
    assert_eq!(fs_err::metadata(root.join("out/owned.txt")).expect("stat").uid(), 65534);
}

#[tokio::test]
async fn source_must_stay_inside_the_config_directory() {
    let bench = Bench::new();
    write_tree(bench.dir.path(), &[("outside.txt", "not config")]);
    let root = cfg(&bench, "[host.file.leak]\npath = \"${path.root}/out/leak\"\nsource = \"../outside.txt\"\n");
    let err = bench.graph_error(&root).await;
    let WorkspaceError::Config(d) = err else { panic!("expected diagnostics") };
    assert!(d.items[0].summary.contains("`../outside.txt` resolves to") && d.items[0].summary.contains("outside the config directory"), "{d}");
}

#[tokio::test]
async fn a_directory_with_unmanaged_files_is_not_deleted() {
    let bench = Bench::new();
    let root = cfg(&bench, "[host.directory.d]\npath = \"${path.root}/out/d\"\n");
    assert!(bench.apply(&root).await.success());
    fs_err::write(root.join("out/d/someone-elses.txt"), "keep me").expect("write");
    write_tree(&root, &[("tend.toml", "[host.local.this]\n")]);
    let outcome = bench.apply(&root).await;
    assert_eq!(outcome.failed, 1);
    let (_, _, Outcome::Failed(failure)) = &outcome.results[0] else { panic!("expected a failure: {outcome:?}") };
    let msg = failure.render();
    assert!(msg.contains("remove directory") && msg.contains("tend does not manage"), "{msg}");
    assert!(root.join("out/d/someone-elses.txt").exists());
    assert!(bench.records().await.iter().any(|a| a.starts_with("host.directory.d")), "still recorded");
}

#[tokio::test]
async fn a_file_where_a_directory_stands_is_a_plan_error() {
    let bench = Bench::new();
    let root = cfg(&bench, "[host.file.f]\npath = \"${path.root}/out/taken\"\ncontent = \"x\"\n");
    fs_err::create_dir_all(root.join("out/taken")).expect("mkdir");
    let plan = bench.plan(&root).await;
    assert!(!plan.is_applyable());
    assert!(plan.errors[0].message.contains("out/taken exists and is a directory, not a file"), "{:?}", plan.errors);
}

#[tokio::test]
async fn templates_lines_and_each_key_render_per_host() {
    let bench = Bench::new();
    let root = bench.dir.path().join("cfg");
    write_tree(
        &root,
        &[
            ("templates/app.conf.j2", "# {{ hostname }}\nrole = {{ role }}\nport = {{ 8000 + idx }}\n"),
            (
                "tend.toml",
                r#"
[host.local.this]
vars = { role = "web", max_conn = 105 }

[host.template.app]
path = "${path.root}/out/${each.key}/app.conf"
source = "templates/app.conf.j2"
vars = { idx = 7 }

[host.line.limit]
path = "${path.root}/out/${each.key}/limits.conf"
line = "max_conn={{ max_conn }}"
regexp = "^max_conn="
"#,
            ),
            ("out/this/limits.conf", "# keep me\nmax_conn=1\nother=2\n"),
        ],
    );
    let outcome = bench.apply(&root).await;
    assert!(outcome.success(), "{outcome:?}");
    assert_eq!(fs_err::read_to_string(root.join("out/this/app.conf")).expect("rendered"), "# this\nrole = web\nport = 8007\n");
    assert_eq!(fs_err::read_to_string(root.join("out/this/limits.conf")).expect("edited"), "# keep me\nmax_conn=105\nother=2\n");
    assert!(!bench.plan(&root).await.has_changes(), "converged");
    fs_err::write(root.join("out/this/limits.conf"), "max_conn=3\n").expect("drift");
    let plan = bench.plan(&root).await;
    let line = plan.changes.iter().find(|c| &*c.addr.name == "limit").expect("planned");
    assert_eq!(line.action, Action::Update);
    assert_eq!(line.before.as_ref().and_then(|b| b.get("line")).and_then(|v| v.as_str()), Some("max_conn=3"));
}

#[tokio::test]
async fn an_undefined_template_variable_is_named() {
    let bench = Bench::new();
    let root = bench.dir.path().join("cfg");
    write_tree(
        &root,
        &[("t.j2", "x = {{ missing_var }}\n"), ("tend.toml", "[host.local.this]\n\n[host.template.t]\npath = \"${path.root}/out/t\"\nsource = \"t.j2\"\n")],
    );
    // Found before anything is observed, as `tend validate` does.
    let err = bench.graph_error(&root).await;
    let WorkspaceError::Config(d) = err else { panic!("expected diagnostics") };
    assert!(d.items[0].summary.contains("template `t.j2` uses `missing_var` that host `this` does not define"), "{d}");
}

#[tokio::test]
async fn commands_on_one_host_never_overlap() {
    let bench = Bench::new();
    let mut toml = String::from("[host.local.this]\n");
    for i in 0..4 {
        // Each takes a mkdir lock for a moment: running two at once on the host would fail one.
        toml.push_str(&format!("\n[host.command.c{i}]\nrun = \"mkdir ${{path.root}}/lock && sleep 0.2 && rmdir ${{path.root}}/lock\"\n"));
    }
    let root = bench.dir.path().join("cfg");
    write_tree(&root, &[("tend.toml", &toml)]);
    let outcome = bench.apply(&root).await;
    assert!(outcome.success(), "{outcome:?}");
    assert_eq!(outcome.applied.add, 5);
}

#[tokio::test]
async fn moving_a_directory_with_its_files_destroys_the_old_files_before_the_old_directory() {
    let bench = Bench::new();
    let body = |base: &str| {
        format!(
            r#"
[host.directory.site]
path = "${{path.root}}/{base}"

[host.file.index]
path = "${{path.root}}/{base}/index.html"
content = "hi"
depends_on = ["host.directory.site"]
"#
        )
    };
    let root = cfg(&bench, &body("old"));
    assert!(bench.apply(&root).await.success());
    assert!(root.join("old/index.html").exists());
    write_tree(&root, &[("tend.toml", &format!("[host.local.this]\n\n{}", body("new")))]);
    let outcome = bench.apply(&root).await;
    assert!(outcome.success(), "{:?}", outcome.results);
    let replaced = outcome.results.iter().filter(|(_, a, o)| matches!(a, Action::Replace { .. }) && matches!(o, Outcome::Applied)).count();
    assert_eq!((replaced, outcome.results.len()), (2, 2), "{:?}", outcome.results);
    assert!(!root.join("old").exists(), "the old directory is gone");
    assert_eq!(fs_err::read_to_string(root.join("new/index.html")).expect("moved"), "hi");
    assert!(bench.plan(&root).await.changes.iter().all(|c| c.action == Action::NoOp));
}

#[tokio::test]
async fn a_line_change_is_shown_as_a_diff_of_its_file() {
    let bench = Bench::new();
    let root = cfg(&bench, "[host.line.port]\npath = \"${path.root}/out/app.conf\"\nregexp = \"^port\"\nline = \"port = 8080\"\n");
    write_tree(&root, &[("out/app.conf", "name = app\nport = 80\nlog = info\n")]);
    let plan = bench.plan(&root).await;
    let text = tend::plan::render_text(&plan);
    assert!(
        text.contains("        file:\n          @@ -1,3 +1,3 @@\n           name = app\n          -port = 80\n          +port = 8080\n           log = info\n"),
        "{text}"
    );
    assert!(bench.apply_plan(&root, &plan).await.success());
    assert_eq!(fs_err::read_to_string(root.join("out/app.conf")).expect("read"), "name = app\nport = 8080\nlog = info\n");
}

#[test]
fn a_commands_output_is_logged_with_v_as_it_prints_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let marker = dir.path().join("go");
    let run = crate::support::streaming_command(&marker.to_string_lossy());
    crate::support::write_tree(
        &dir.path().join("cfg"),
        &[("tend.toml", &format!("[project]\nname = \"stream\"\n\n[host.local.this]\n\n[host.command.wait]\nrun = \"{run}\"\n"))],
    );
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tend"));
    cmd.args(["-v", "-C"]).arg(dir.path().join("cfg")).arg("--state").arg(dir.path().join("state.db")).args(["apply", "--auto-approve"]).env("NO_COLOR", "1");
    crate::support::assert_streams(cmd, &marker);
}
