//! Apply behaviour through the library: ordering, failures, tainting, drift, outputs.

use tend::plan::ChangeReason;
use tend::provider::{Action, Value};
use tend::report::Outcome;

use crate::support::{Bench, write_tree};

fn config(bench: &Bench, name: &str, text: &str) -> std::path::PathBuf {
    let root = bench.dir.path().join(name);
    write_tree(&root, &[("tend.toml", text)]);
    root
}

#[tokio::test]
async fn failure_skips_dependents_once_and_independent_branches_go_on() {
    let bench = Bench::new();
    let root = config(
        &bench,
        "cfg",
        r#"
[fake.thing.broken]
value = "x"
fail = true

[fake.thing.child]
value = "${fake.thing.broken.id}"

[fake.thing.grandchild]
value = "${fake.thing.child.id}"

[fake.thing.independent]
value = "fine"
"#,
    );
    let outcome = bench.apply(&root).await;
    let mut lines: Vec<String> = outcome
        .results
        .iter()
        .map(|(a, act, o)| match o {
            Outcome::Applied => format!("{a} {act:?}: applied"),
            Outcome::Failed(m) => format!("{a} {act:?}: failed: {m}"),
            Outcome::Skipped(c) => format!("{a} {act:?}: skipped because {c} failed"),
        })
        .collect();
    lines.sort();
    lines.push(outcome.summary_line());
    insta::assert_snapshot!(lines.join("\n"));
    assert_eq!(outcome.failed, 1);
    assert_eq!(outcome.skipped, 2);
    // The failure keeps its parts until it is rendered.
    let failure = outcome.results.iter().find_map(|(_, _, o)| if let Outcome::Failed(f) = o { Some(f) } else { None }).expect("a failure");
    assert_eq!(
        (failure.message.as_str(), failure.hint.as_deref(), failure.kind),
        ("injected failure creating fake.thing.broken", Some("set fail = false"), tend::provider::ErrorKind::Terminal)
    );
    // State records exactly what was applied.
    assert_eq!(bench.records().await, ["fake.thing.independent"]);
    assert_eq!(bench.fake.objects().keys().collect::<Vec<_>>(), ["fake.thing.independent"]);
}

#[tokio::test]
async fn outputs_flow_into_dependents_at_apply_time() {
    let bench = Bench::new();
    let root = config(&bench, "cfg", "[fake.thing.a]\nvalue = \"one\"\n\n[fake.thing.b]\nvalue = \"a is ${fake.thing.a.id}\"\n");
    assert!(bench.apply(&root).await.success());
    let objects = bench.fake.objects();
    let a_id = objects["fake.thing.a"].id.clone().expect("a has an id");
    assert_eq!(objects["fake.thing.b"].attributes["value"], Value::from(format!("a is {a_id}")));
    // And a second plan is all no-ops.
    assert!(!bench.plan(&root).await.has_changes());
}

#[tokio::test]
async fn create_before_destroy_creates_then_converges_dependents_then_destroys() {
    let bench = Bench::new();
    let v1 = "[fake.thing.a]\nimmutable = \"v1\"\nlifecycle = { create_before_destroy = true }\n\n[fake.thing.b]\nvalue = \"${fake.thing.a.id}\"\n";
    let root = config(&bench, "cfg", v1);
    assert!(bench.apply(&root).await.success());
    write_tree(&root, &[("tend.toml", &v1.replace("v1", "v2"))]);
    let plan = bench.plan(&root).await;
    let a = plan.changes.iter().find(|c| c.addr.to_string() == "fake.thing.a").expect("a planned");
    assert_eq!(a.action, Action::Replace { create_first: true });
    assert_eq!(a.requires_replace, ["immutable"]);
    let before = bench.fake.calls().len();
    assert!(bench.apply_plan(&root, &plan).await.success());
    let calls: Vec<String> = bench.fake.calls()[before..].iter().filter(|c| !c.starts_with("read")).cloned().collect();
    assert_eq!(calls, ["create fake.thing.a", "health fake.thing.a", "update fake.thing.b", "health fake.thing.b", "delete fake.thing.a"]);
    assert_eq!(bench.fake.object_count(), 2, "the old object is the one destroyed");
    assert_eq!(bench.fake.objects()["fake.thing.a"].attributes["immutable"], Value::from("v2"));
}

#[tokio::test]
async fn without_create_before_destroy_the_old_object_goes_first() {
    let bench = Bench::new();
    let root = config(&bench, "cfg", "[fake.thing.a]\nimmutable = \"v1\"\n");
    assert!(bench.apply(&root).await.success());
    write_tree(&root, &[("tend.toml", "[fake.thing.a]\nimmutable = \"v2\"\n")]);
    let before = bench.fake.calls().len();
    assert!(bench.apply(&root).await.success());
    let calls: Vec<String> = bench.fake.calls()[before..].iter().filter(|c| !c.starts_with("read")).cloned().collect();
    assert_eq!(calls, ["delete fake.thing.a", "create fake.thing.a", "health fake.thing.a"]);
}

#[tokio::test]
async fn removed_resources_are_destroyed_dependents_first() {
    let bench = Bench::new();
    let root = config(
        &bench,
        "cfg",
        "[fake.thing.base]\nvalue = \"b\"\n\n[fake.thing.mid]\nvalue = \"${fake.thing.base.id}\"\n\n[fake.thing.top]\nvalue = \"${fake.thing.mid.id}\"\n",
    );
    assert!(bench.apply(&root).await.success());
    // A config declaring nothing would destroy everything: refused unless asked for.
    write_tree(&root, &[("tend.toml", "")]);
    let refused = bench.plan(&root).await;
    assert_eq!(refused.errors.len(), 1, "{:?}", refused.errors);
    assert!(refused.errors[0].message.starts_with("this plan would destroy all 3 resources in state and keep nothing"), "{:?}", refused.errors);
    write_tree(&root, &[("tend.toml", "[project]\nallow_empty = true\n")]);
    let before = bench.fake.calls().len();
    let outcome = bench.apply(&root).await;
    assert!(outcome.success(), "{outcome:?}");
    assert_eq!(outcome.applied.destroy, 3);
    let calls: Vec<String> = bench.fake.calls()[before..].iter().filter(|c| !c.starts_with("read")).cloned().collect();
    assert_eq!(calls, ["delete fake.thing.top", "delete fake.thing.mid", "delete fake.thing.base"]);
    assert!(bench.records().await.is_empty());
}

#[tokio::test]
async fn transient_errors_are_retried_within_the_apply_and_keep_their_class_when_they_persist() {
    let bench = Bench::new();
    let root = config(&bench, "cfg", "[fake.thing.blip]\nvalue = \"x\"\nflaky = 1\n\n[fake.thing.down]\nvalue = \"y\"\nflaky = 99\n");
    let outcome = bench.apply(&root).await;
    let creates = |a: &str| bench.fake.calls().iter().filter(|c| *c == &format!("create {a}")).count();
    assert_eq!(creates("fake.thing.blip"), 2, "one failure, then success: {:?}", bench.fake.calls());
    assert_eq!(creates("fake.thing.down"), 4, "tried a bounded number of times: {:?}", bench.fake.calls());
    let failed: Vec<_> =
        outcome.results.iter().filter_map(|(a, _, o)| if let Outcome::Failed(f) = o { Some((a.to_string(), f.render(), f.kind)) } else { None }).collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "fake.thing.down");
    assert_eq!(failed[0].2, tend::provider::ErrorKind::Transient);
    assert!(failed[0].1.contains("injected transient failure 4 of 99"), "{failed:?}");
    assert_eq!(bench.records().await, ["fake.thing.blip"]);
    // History keeps what failed, with its class.
    let history = tend::state::StateStore::history(&tend::state::SqliteStore::open(&bench.state()).expect("opens")).await.expect("history");
    let errors = &history.last().expect("a row").errors;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!((errors[0].address.as_str(), errors[0].kind.as_str()), ("fake.thing.down", "transient"));
}

#[tokio::test]
async fn a_half_created_resource_is_tainted_and_replaced_next_time() {
    let bench = Bench::new();
    let root = config(&bench, "cfg", "[fake.thing.a]\nvalue = \"x\"\npartial = true\n");
    let outcome = bench.apply(&root).await;
    assert_eq!(outcome.failed, 1);
    assert_eq!(bench.records().await, ["fake.thing.a"], "what was created is recorded");
    write_tree(&root, &[("tend.toml", "[fake.thing.a]\nvalue = \"x\"\n")]);
    let plan = bench.plan(&root).await;
    let a = &plan.changes[0];
    assert_eq!((a.action, a.reason), (Action::Replace { create_first: false }, ChangeReason::Tainted));
}

#[tokio::test]
async fn drift_is_corrected_reported_or_ignored_as_configured() {
    let bench = Bench::new();
    let root = config(
        &bench,
        "cfg",
        "[fake.thing.fix]\nvalue = \"v\"\n\n[fake.thing.tell]\nvalue = \"v\"\ndrift = \"report\"\n\n[fake.thing.quiet]\nvalue = \"v\"\ndrift = \"ignore\"\n",
    );
    assert!(bench.apply(&root).await.success());
    for a in ["fake.thing.fix", "fake.thing.tell", "fake.thing.quiet"] {
        bench.fake.tamper(a, "value", Value::from("changed by hand"));
    }
    let plan = bench.plan(&root).await;
    let by = |n: &str| plan.changes.iter().find(|c| &*c.addr.name == n).expect("planned").clone();
    assert_eq!((by("fix").action, by("fix").reason), (Action::Update, ChangeReason::Drift));
    assert_eq!((by("tell").action, by("tell").drift_reported), (Action::NoOp, true));
    assert_eq!((by("quiet").action, by("quiet").drift_reported), (Action::NoOp, false));
    insta::assert_snapshot!(tend::plan::render_text(&plan));
}

#[tokio::test]
async fn instances_a_provider_says_depend_on_each_other_are_applied_in_that_order() {
    let bench = Bench::new();
    let root = config(
        &bench,
        "cfg",
        "[fake.thing.ns]\nvalue = \"namespace\"\n\n[fake.group.app]\nmembers = [\"crd\", \"cr\", \"use\"]\nchain = true\nneeds = [\"fake.thing.ns\"]\nvalue = \"x\"\n",
    );
    let outcome = bench.apply(&root).await;
    assert!(outcome.success(), "{outcome:?}");
    let creates: Vec<String> = bench.fake.calls().into_iter().filter_map(|c| c.strip_prefix("create ").map(str::to_string)).collect();
    assert_eq!(creates, ["fake.thing.ns", "fake.group.app[crd]", "fake.group.app[cr]", "fake.group.app[use]"]);
}

#[tokio::test]
async fn a_cycle_among_instances_is_named_and_so_is_a_need_nothing_declares() {
    let bench = Bench::new();
    let root = config(&bench, "cfg", "[fake.group.app]\nmembers = [\"a\", \"b\", \"c\"]\ncycle = true\n");
    let tend::workspace::WorkspaceError::Config(d) = bench.graph_error(&root).await else { panic!("expected diagnostics") };
    let text = d.render(200, false);
    assert!(text.contains("dependency cycle: fake.group.app[a] → fake.group.app[c] → fake.group.app[b] → fake.group.app[a]"), "{text}");
    let root = config(&bench, "cfg2", "[fake.group.app]\nmembers = [\"a\"]\nneeds = [\"fake.thing.nope\"]\n");
    let tend::workspace::WorkspaceError::Config(d) = bench.graph_error(&root).await else { panic!("expected diagnostics") };
    let text = d.render(200, false);
    assert!(text.contains("`fake.group.app[a]` needs `fake.thing.nope`, which the config does not declare") && text.contains("tend.toml:1"), "{text}");
}

#[tokio::test]
async fn the_old_object_of_a_create_before_destroy_replacement_stays_recorded_until_it_is_destroyed() {
    let bench = Bench::new();
    let cbd = |v: &str| format!("[fake.thing.a]\nvalue = \"x\"\nimmutable = \"{v}\"\nlifecycle = {{ create_before_destroy = true }}\n");
    let root = config(&bench, "cfg", &cbd("v1"));
    assert!(bench.apply(&root).await.success());
    // The replacement is made; destroying the old object fails (or the run is killed there).
    write_tree(&root, &[("tend.toml", &cbd("v2"))]);
    bench.fake.fail_deletes(true);
    let outcome = bench.apply(&root).await;
    assert_eq!(outcome.failed, 1, "{outcome:?}");
    assert_eq!(bench.records().await, ["fake.thing.a", "fake.thing.a[deposed-fake-1]"], "the old object is still in state");
    // The next plan destroys it, and then it is gone from state.
    bench.fake.fail_deletes(false);
    let plan = bench.plan(&root).await;
    let deposed = plan.changes.iter().find(|c| c.addr.to_string() == "fake.thing.a[deposed-fake-1]").expect("planned");
    assert_eq!(deposed.action, Action::Delete);
    assert!(bench.apply_plan(&root, &plan).await.success());
    assert_eq!(bench.records().await, ["fake.thing.a"]);
    assert!(bench.fake.calls().iter().any(|c| c == "delete fake.thing.a[deposed-fake-1]"), "{:?}", bench.fake.calls());
    // A replacement whose old object goes at once leaves nothing behind.
    write_tree(&root, &[("tend.toml", &cbd("v3"))]);
    assert!(bench.apply(&root).await.success());
    assert_eq!(bench.records().await, ["fake.thing.a"]);
}

fn failure(outcome: &tend::apply::ApplyOutcome, addr: &str) -> String {
    outcome
        .results
        .iter()
        .find_map(|(a, _, o)| match o {
            Outcome::Failed(f) if a.to_string() == addr => Some(f.render()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{addr} did not fail: {outcome:?}"))
}

async fn record(bench: &Bench, addr: &str) -> tend::state::Record {
    use tend::state::StateStore;
    let snapshot = tend::state::SqliteStore::open(&bench.state()).expect("opens").load().await.expect("loads");
    snapshot.records.into_iter().find(|(a, _)| a.to_string() == addr).map_or_else(|| panic!("no record of {addr}"), |(_, r)| r)
}

#[tokio::test]
async fn dependents_start_only_once_an_instance_reports_ready_and_progress_is_shown() {
    let bench = Bench::new();
    let root = config(&bench, "cfg", "[fake.thing.db]\nvalue = \"x\"\nready_after = 3\n\n[fake.thing.app]\nvalue = \"${fake.thing.db.id}\"\n");
    assert!(bench.apply(&root).await.success());
    let calls = bench.fake.calls();
    let probes: Vec<usize> = calls.iter().enumerate().filter(|(_, c)| *c == "health fake.thing.db").map(|(i, _)| i).collect();
    let app = calls.iter().position(|c| c == "create fake.thing.app").expect("app created");
    assert_eq!(probes.len(), 4, "three progressing answers, then ready: {calls:?}");
    assert!(probes.iter().all(|p| *p < app), "the dependent waited for the last probe: {calls:?}");
    assert_eq!(bench.progress.lines(), ["fake.thing.db: 1/3 probes", "fake.thing.db: 2/3 probes", "fake.thing.db: 3/3 probes"]);
    // Nothing changed: nothing to wait for.
    assert!(bench.apply(&root).await.success());
    assert_eq!(bench.fake.calls().iter().filter(|c| c.starts_with("health")).count(), 5, "only app's own probe on the first run was added");
}

#[tokio::test]
async fn a_failed_health_check_fails_the_apply_naming_the_instance_and_taints_what_it_created() {
    let bench = Bench::new();
    let root = config(
        &bench,
        "cfg",
        "[fake.thing.db]\nvalue = \"x\"\nunhealthy = \"rollout stalled: 0/3 available\"\n\n[fake.thing.app]\nvalue = \"${fake.thing.db.id}\"\n",
    );
    let outcome = bench.apply(&root).await;
    assert_eq!((outcome.failed, outcome.skipped), (1, 1), "{outcome:?}");
    let err = failure(&outcome, "fake.thing.db");
    assert!(err.contains("rollout stalled: 0/3 available") && err.contains("recorded as tainted"), "{err}");
    assert!(err.contains("unset `unhealthy` of fake.thing.db"), "the provider's hint is kept: {err}");
    assert_eq!(record(&bench, "fake.thing.db").await.status, tend::state::RecordStatus::Tainted);
    let plan = bench.plan(&root).await;
    let db = plan.changes.iter().find(|c| c.addr.to_string() == "fake.thing.db").expect("planned");
    assert!(matches!(db.action, Action::Replace { .. }), "a tainted object is replaced: {:?}", db.action);
}

#[tokio::test]
async fn an_instance_not_ready_within_its_timeout_fails_and_a_bad_timeout_is_a_config_error() {
    let bench = Bench::new();
    let root = config(&bench, "cfg", "[fake.thing.db]\nvalue = \"x\"\nready_after = 1000\ntimeout = 1\n");
    let started = std::time::Instant::now();
    let outcome = bench.apply(&root).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "the wait was bounded: {:?}", started.elapsed());
    let err = failure(&outcome, "fake.thing.db");
    assert!(err.contains("not ready within 1 s") && err.contains("/1000 probes") && err.contains("longer `timeout`"), "{err}");
    let root = config(&bench, "cfg2", "[fake.thing.db]\nvalue = \"x\"\ntimeout = \"soon\"\n");
    let tend::workspace::WorkspaceError::Config(d) = bench.graph_error(&root).await else { panic!("expected diagnostics") };
    let text = d.render(200, false);
    assert!(text.contains("`timeout` of `fake.thing.db` is not a duration") && text.contains("tend.toml:3"), "{text}");
}

#[tokio::test]
async fn an_update_that_fails_its_health_check_is_put_back_and_tried_again_by_the_next_plan() {
    let bench = Bench::new();
    let root = config(&bench, "cfg", "[fake.thing.app]\nvalue = \"v1\"\n");
    assert!(bench.apply(&root).await.success());
    let root = config(&bench, "cfg2", "[fake.thing.app]\nvalue = \"v2\"\nunhealthy = \"v2 crashes on start\"\n");
    let outcome = bench.apply(&root).await;
    let err = failure(&outcome, "fake.thing.app");
    assert!(err.contains("v2 crashes on start; put back what was there before"), "{err}");
    assert_eq!(bench.fake.objects()["fake.thing.app"].attributes["value"], Value::from("v1"));
    let rec = record(&bench, "fake.thing.app").await;
    assert_eq!((rec.status, rec.attributes["value"].clone()), (tend::state::RecordStatus::Ready, Value::from("v1")), "state records what is there");
    let plan = bench.plan(&root).await;
    assert_eq!(plan.changes[0].action, Action::Update, "the next plan tries v2 again");
}

#[tokio::test]
async fn a_create_before_destroy_replacement_that_never_becomes_ready_leaves_the_old_object_current() {
    let bench = Bench::new();
    let cbd = |v: &str, extra: &str| format!("[fake.thing.a]\nvalue = \"x\"\nimmutable = \"{v}\"\nlifecycle = {{ create_before_destroy = true }}\n{extra}");
    let root = config(&bench, "cfg", &cbd("v1", ""));
    assert!(bench.apply(&root).await.success());
    write_tree(&root, &[("tend.toml", &cbd("v2", "unhealthy = \"port 80: connection refused\"\n"))]);
    let outcome = bench.apply(&root).await;
    let err = failure(&outcome, "fake.thing.a");
    assert!(err.contains("port 80: connection refused") && err.contains("`fake.thing.a[deposed-fake-2]` for the next plan to destroy"), "{err}");
    assert!(!bench.fake.calls().iter().any(|c| c.starts_with("delete")), "the old object was not destroyed: {:?}", bench.fake.calls());
    assert_eq!(bench.records().await, ["fake.thing.a", "fake.thing.a[deposed-fake-2]"]);
    assert_eq!(record(&bench, "fake.thing.a").await.remote_id.as_deref(), Some("fake-1"), "the old object stays current");
    // Healthy now: the failed replacement is destroyed, a new one made, the old one retired.
    write_tree(&root, &[("tend.toml", &cbd("v2", ""))]);
    let plan = bench.plan(&root).await;
    let failed = plan.changes.iter().find(|c| c.addr.to_string() == "fake.thing.a[deposed-fake-2]").expect("planned");
    assert_eq!(failed.action, Action::Delete);
    assert!(bench.apply_plan(&root, &plan).await.success());
    assert_eq!(bench.records().await, ["fake.thing.a"]);
    assert_eq!(record(&bench, "fake.thing.a").await.remote_id.as_deref(), Some("fake-3"));
}

#[tokio::test]
async fn a_record_of_the_same_object_as_one_the_config_keeps_is_never_planned_for_destruction() {
    use tend::state::StateStore;
    let bench = Bench::new();
    let root = config(&bench, "cfg", "[fake.thing.a]\nvalue = \"x\"\n");
    assert!(bench.apply(&root).await.success());
    // A leftover record naming the live object under another address (an interrupted
    // replacement of an older version, a hand edit).
    let store = tend::state::SqliteStore::open(&bench.state()).expect("opens");
    let mut copy = record(&bench, "fake.thing.a").await;
    copy.addr = "fake.thing.a[deposed-fake-1]".parse().expect("address");
    store.put(&copy).await.expect("put");
    let plan = bench.plan(&root).await;
    assert!(plan.changes.iter().all(|c| c.action == Action::NoOp), "{:?}", plan.changes.iter().map(|c| (&c.addr, c.action)).collect::<Vec<_>>());
    assert!(bench.apply(&root).await.success());
    assert_eq!(bench.fake.object_count(), 1, "the live object survived");
}

#[tokio::test]
async fn instances_of_a_kind_declared_at_run_time_are_planned_with_it_and_an_undeclared_kind_is_named() {
    let bench = Bench::new();
    let definition = "[fake.definition.widgets]\ndeclares = \"example.com/v1/Widget\"\nready_within = 1\n\n";
    let group = "[fake.group.w]\nmembers = [\"a\"]\nmember_kind = \"example.com/v1/Widget\"\nready_after = 1000\nneeds = [\"fake.definition.widgets\"]\n";
    let root = config(&bench, "cfg", &format!("{definition}{group}"));
    let plan = bench.plan(&root).await;
    let w = plan.changes.iter().find(|c| c.addr.to_string() == "fake.group.w[a]").expect("planned");
    assert_eq!(w.kind.as_deref(), Some("example.com/v1/Widget"));
    let json = tend::plan::render_json(&plan);
    let shown = json["changes"].as_array().expect("changes").iter().find(|c| c["address"] == "fake.group.w[a]").expect("in JSON").clone();
    assert_eq!(shown["instance_kind"], "example.com/v1/Widget");
    // The declared kind's readiness timeout applies to its instances.
    let outcome = bench.apply_plan(&root, &plan).await;
    let err = failure(&outcome, "fake.group.w[a]");
    assert!(err.contains("not ready within 1 s"), "{err}");
    // A kind nothing declares is named, with the instance and where it is configured.
    let root = config(&bench, "cfg2", &group.replace("Widget", "Gadget").replace("needs = [\"fake.definition.widgets\"]\n", ""));
    let tend::workspace::WorkspaceError::Config(d) = bench.graph_error(&root).await else { panic!("expected diagnostics") };
    let text = d.render(200, false);
    assert!(
        text.contains("`fake.group.w[a]` is of kind `example.com/v1/Gadget`, which provider `fake` does not know") && text.contains("tend.toml:1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_refresh_records_drift_forgets_what_is_gone_and_refuses_to_forget_everything() {
    let bench = Bench::new();
    let root = config(&bench, "cfg", "[fake.thing.a]\nvalue = \"v\"\n\n[fake.thing.b]\nvalue = \"v\"\n\n[fake.thing.c]\nvalue = \"v\"\n");
    assert!(bench.apply(&root).await.success());
    let refresh = tend::plan::PlanOptions { refresh_only: true, ..Default::default() };
    bench.fake.tamper("fake.thing.a", "value", Value::from("changed by hand"));
    bench.fake.vanish("fake.thing.b");
    let targeted = bench.plan_with(&root, &tend::plan::PlanOptions { targets: vec!["fake.thing.a".parse().expect("addr")], ..refresh.clone() }).await;
    assert_eq!((targeted.refreshed.len(), targeted.left_out), (1, 1), "--target selects what is refreshed");
    let plan = bench.plan_with(&root, &refresh).await;
    assert!(plan.changes.is_empty() && plan.is_applyable(), "{plan:?}");
    let seen: Vec<(String, Option<Value>)> = plan.refreshed.iter().map(|r| (r.addr.to_string(), r.after.as_ref().map(|a| a["value"].clone()))).collect();
    assert_eq!(seen, [("fake.thing.a".to_string(), Some(Value::from("changed by hand"))), ("fake.thing.b".to_string(), None)]);
    let calls = bench.fake.calls().len();
    let outcome = bench.apply_plan(&root, &plan).await;
    assert!(outcome.success() && outcome.summary_line() == "1 updated in state, 1 forgotten", "{}", outcome.summary_line());
    assert!(bench.fake.calls()[calls..].iter().all(|c| !c.starts_with("create") && !c.starts_with("update") && !c.starts_with("delete")), "nothing applied");
    assert_eq!(bench.records().await, ["fake.thing.a", "fake.thing.c"]);
    // The next plan converges again: `a` back to its config, `b` created anew.
    let next = bench.plan(&root).await;
    let actions: Vec<(String, Action)> = next.changes.iter().map(|c| (c.addr.to_string(), c.action)).collect();
    assert_eq!(actions, [("fake.thing.a".into(), Action::Update), ("fake.thing.b".into(), Action::Create), ("fake.thing.c".into(), Action::NoOp)]);

    // Every object gone at once (a wrong region or account) is refused, not forgotten.
    bench.fake.vanish("fake.thing.a");
    bench.fake.vanish("fake.thing.c");
    let all = bench.plan_with(&root, &refresh).await;
    assert!(!all.is_applyable(), "{:?}", all.refreshed);
    insta::assert_snapshot!(all.errors[0].message.clone() + "\n" + all.errors[0].hint.as_deref().unwrap_or(""));
}

#[tokio::test]
async fn no_more_changes_run_at_once_than_the_parallelism_and_every_one_is_recorded() {
    let mut bench = Bench::new();
    bench.fake = bench.fake.clone().with_apply_latency(std::time::Duration::from_millis(5));
    let mut text = String::new();
    for i in 0..40 {
        text.push_str(&format!("[fake.thing.t{i:02}]\nvalue = \"v{i}\"\n\n"));
    }
    let root = config(&bench, "many", &text);
    let outcome = bench.apply(&root).await;
    assert!(outcome.success(), "{outcome:?}");
    // The bench applies with a parallelism of 4: steps waiting for their records to be written
    // hold no slot, but no more than 4 provider calls ever run together.
    assert_eq!(bench.fake.most_concurrent_applies(), 4);
    assert_eq!(bench.records().await.len(), 40);
    assert_eq!(outcome.applied.add, 40);
}
