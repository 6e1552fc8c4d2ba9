//! The plan catalog: each `tests/fixtures/plan/CASE/` has an optional `before/` config that is
//! applied first, and an `after/` config that is planned; text and JSON plans are snapshotted.

use tend::plan::{render_json, render_text};

use crate::support::{Bench, repo};

async fn case(name: &str) {
    let dir = repo().join("tests/fixtures/plan").join(name);
    let bench = Bench::new();
    if dir.join("before").exists() {
        let outcome = bench.apply(&dir.join("before")).await;
        assert!(outcome.success(), "{name}: before/ applies cleanly: {outcome:?}");
    }
    let plan = bench.plan(&dir.join("after")).await;
    let mut text = render_text(&plan);
    for e in &plan.errors {
        text.push_str(&format!("error: {}\nhint: {}\n", e.message, e.hint.clone().unwrap_or_default()));
    }
    // The machine's name differs from machine to machine.
    let host = hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    let text = text.replace(&format!("\"{host}\""), "\"[HOST]\"");
    insta::assert_snapshot!(format!("{name}_text"), text);
    insta::assert_json_snapshot!(format!("{name}_json"), render_json(&plan), {
        ".revision" => "[revision]",
        ".changes[].after.hostname" => "[HOST]",
    });
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => { $(
        #[tokio::test]
        async fn $name() { case(stringify!($name)).await; }
    )* };
}

cases!(create, noop, update, replace, replace_create_before_destroy, delete, known_after_apply, prevent_destroy, ignore_changes, generation, suspended);
