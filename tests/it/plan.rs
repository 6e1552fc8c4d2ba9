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

cases!(create, noop, update, nested, replace, replace_create_before_destroy, delete, known_after_apply, prevent_destroy, ignore_changes, generation, suspended);

#[tokio::test]
async fn instances_are_planned_concurrently_and_the_plan_comes_out_in_the_same_order() {
    let mut bench = Bench::new();
    bench.fake = bench.fake.clone().with_plan_latency(std::time::Duration::from_millis(20));
    let mut text = String::new();
    for i in 0..100 {
        text.push_str(&format!("[fake.thing.t{i:03}]\nvalue = \"v{i}\"\n\n"));
    }
    // A chain too: its links wait for each other.
    text.push_str("[fake.thing.first]\nvalue = \"a\"\n\n[fake.thing.second]\nvalue = \"${fake.thing.first.value}\"\n");
    let root = bench.dir.path().join("cfg");
    crate::support::write_tree(&root, &[("tend.toml", &text)]);
    let first = bench.plan(&root).await;
    let most = bench.fake.most_concurrent_plans();
    assert!(most > 1 && most <= 32, "plan calls ran {most} at a time");
    let again = bench.plan(&root).await;
    let addrs = |p: &tend::plan::Plan| p.changes.iter().map(|c| c.addr.to_string()).collect::<Vec<_>>();
    assert_eq!(addrs(&first), addrs(&again));
    let order = addrs(&first);
    assert!(order.iter().position(|a| a == "fake.thing.first") < order.iter().position(|a| a == "fake.thing.second"), "{order:?}");
    assert_eq!(first.changes.len(), 102);
}
