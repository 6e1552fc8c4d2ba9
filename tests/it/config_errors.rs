//! Bad config: every case in `tests/fixtures/invalid/` fails with diagnostics naming the file,
//! line and column, snapshotted as rendered (no colour, 80 columns).

use tend::config::Diagnostics;
use tend::state::Snapshot;
use tend::workspace::WorkspaceError;

use crate::support::{Bench, repo};

fn diagnostics(name: &str) -> Diagnostics {
    let root = repo().join("tests/fixtures/invalid").join(name);
    let bench = Bench::new();
    match bench.load(&root) {
        Err(WorkspaceError::Config(d)) => d,
        Err(other) => panic!("{name}: expected config diagnostics, got {other:?}"),
        Ok(ws) => match tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(ws.graph(&Snapshot::default())) {
            Err(WorkspaceError::Config(d)) => d,
            other => panic!("{name}: expected an error, got {other:?}"),
        },
    }
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => { $(
        #[test]
        fn $name() {
            let d = diagnostics(stringify!($name));
            insta::assert_snapshot!(stringify!($name), d.render(80, false));
        }
    )* };
}

cases!(
    malformed_toml,
    malformed_yaml,
    unknown_field,
    wrong_type,
    duplicate_address,
    missing_reference,
    missing_field_reference,
    cycle,
    unknown_provider,
    unknown_kind,
    undefined_variable,
    missing_required,
    unknown_host,
    relative_path,
    unknown_depends_on,
    bad_generations,
    bad_agent_settings,
    yaml_alias_bomb,
    unknown_provider_setting,
    reference_past_a_value,
);

#[test]
fn every_problem_is_reported_at_once() {
    let root = tempfile::tempdir().expect("temp dir");
    crate::support::write_tree(
        root.path(),
        &[
            ("tend.toml", "[host.local.this]\n"),
            ("a.toml", "[host.file.x]\npath = \"/x\"\ncontnet = \"a\"\n"),
            ("b.yaml", "host:\n  file:\n    y:\n      path: /y\n      content: b\n      mode: 1\n"),
            (
                "c.toml",
                "[host.file.z]\npath = \"/z\"\ncontent = \"${host.file.nope.path}\"\nowner = \"${var.undefined}\"\ndepends_on = [\"host.flie.x\"]\n\n[hots.file.w]\npath = \"/w\"\n\n[host.file.v]\npath = \"/v\"\ncontent = \"${hots.file.w.path}\"\n",
            ),
        ],
    );
    let err = Bench::new().load(root.path()).expect_err("invalid");
    let WorkspaceError::Config(d) = err else { panic!("expected diagnostics") };
    let mut found: Vec<String> = d.items.iter().map(|i| format!("{} {}", d.sources.location(i.labels[0].span), i.summary)).collect();
    found.sort();
    // Every problem of every file in one run: fields, types, references, variables, providers;
    // no second report for a reference to a resource whose provider is already unknown.
    let expected = [
        "a.toml:3:1 unknown field `contnet` in `host.file.x`",
        "b.yaml:6:13 wrong type for `mode`: expected string, found integer",
        "c.toml:4:9 undefined variable `undefined`",
        "c.toml:7:2 unknown provider `hots`",
    ];
    for e in expected {
        assert!(found.iter().any(|f| f == e), "missing {e:?} in {found:#?}");
    }
    assert!(found.iter().any(|f| f.starts_with("c.toml:3:") && f.contains("refers to `host.file.nope`, which is not declared")), "{found:#?}");
    assert!(found.iter().any(|f| f.starts_with("c.toml:5:") && f.contains("depends on `host.flie.x`, which is not declared")), "{found:#?}");
    assert!(!found.iter().any(|f| f.contains("hots.file.w`, which is not declared")), "{found:#?}");
}
