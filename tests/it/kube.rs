//! The Kubernetes provider against the fake API server: sets of manifests applied by
//! server-side apply, planned without noise, drift by other field managers, immutable fields,
//! readiness, pruning and bad input. What is on the cluster is checked with the real kubectl.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;

use age::secrecy::ExposeSecret;
use base64::Engine;

use crate::support::kube::FakeKube;
use crate::support::write_tree;

const APP: &str = r"apiVersion: v1
kind: Namespace
metadata:
  name: web
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  greeting: hello
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  replicas: 2
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
      - name: api
        image: nginx:1.27
        envFrom:
        - configMapRef: {name: settings}
";

struct Setup {
    kube: FakeKube,
    dir: tempfile::TempDir,
}

impl Setup {
    /// A fake cluster and a config with one cluster and one set (`k8s/`, namespace `web`).
    fn new(manifests: &[(&str, &str)]) -> Self {
        let kube = FakeKube::start();
        let dir = tempfile::tempdir().expect("temp dir");
        let setup = Self { kube, dir };
        let tend_toml = format!(
            "[project]\nname = \"shop\"\n\n[kube.cluster.dev]\nkubeconfig = \"{}\"\n\n[kube.manifests.app]\npath = \"k8s\"\nnamespace = \"web\"\n",
            setup.kube.kubeconfig().display()
        );
        write_tree(&setup.cfg(), &[("tend.toml", &tend_toml)]);
        let files: Vec<(String, &str)> = manifests.iter().map(|(p, t)| (format!("k8s/{p}"), *t)).collect();
        let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), *t)).collect();
        write_tree(&setup.cfg(), &files);
        setup
    }

    fn cfg(&self) -> PathBuf {
        self.dir.path().join("cfg")
    }

    /// tend.toml as it is now.
    fn toml(&self) -> String {
        fs_err::read_to_string(self.cfg().join("tend.toml")).expect("read tend.toml")
    }

    fn write(&self, path: &str, text: &str) {
        write_tree(&self.cfg(), &[(path, text)]);
    }

    fn tend(&self, args: &[&str]) -> Output {
        self.tend_env(args, &[])
    }

    fn tend_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tend"));
        cmd.args(["-C", &self.cfg().to_string_lossy(), "--state", &self.dir.path().join("state/state.db").to_string_lossy()])
            .args(args)
            .env("NO_COLOR", "1")
            .env("XDG_STATE_HOME", self.dir.path().join("xdg"))
            .env("TMPDIR", self.tmp())
            .env_remove("RUST_LOG")
            .env_remove("KUBECONFIG")
            .env_remove("HTTPS_PROXY")
            .stdin(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("tend runs")
    }

    fn tmp(&self) -> PathBuf {
        let t = self.dir.path().join("tmp");
        fs_err::create_dir_all(&t).expect("tmp");
        t
    }

    /// `kubectl get ARGS -o json`, or `None` when it is not there.
    /// Makes the fake API server fail the requests `fault` (its JSON) matches.
    fn fault(&self, fault: &str) {
        let f = self.dir.path().join("fault.json");
        fs_err::write(&f, fault).expect("write");
        ok(&self.kube.kubectl(&["create", "--raw", "/fake/faults", "-f", &f.to_string_lossy()]));
    }

    fn get(&self, args: &[&str]) -> Option<serde_json::Value> {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json", "--show-managed-fields"]);
        let o = self.kube.kubectl(&all);
        if !o.status.success() {
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("NotFound") || err.contains("not found"), "kubectl failed: {err}");
            return None;
        }
        Some(serde_json::from_slice(&o.stdout).expect("JSON"))
    }
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn failed(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn a_set_applies_by_server_side_apply_then_plans_nothing_and_prunes_what_leaves_it() {
    let s = Setup::new(&[("app.yaml", APP)]);
    // What a first plan shows: every object by its address, its fields nested as Terraform shows them.
    let first = ok(&s.tend(&["plan"])).replace(&s.kube.kubeconfig().display().to_string(), "[kubeconfig]");
    insta::assert_snapshot!("kube_first_plan", first);
    let out = ok(&s.tend(&["apply", "--auto-approve"]));
    assert!(out.contains("Apply complete: 4 added"), "{out}");

    let d = s.get(&["deployment", "api", "-n", "web"]).expect("the Deployment exists");
    assert_eq!(d["metadata"]["labels"]["tend.dev/project"], "shop");
    assert_eq!(d["status"]["readyReplicas"], 2, "applied and ready: {d}");
    let managers: Vec<(&str, &str)> = d["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .map(|m| (m["manager"].as_str().unwrap_or(""), m["operation"].as_str().unwrap_or("")))
        .collect();
    assert!(managers.contains(&("tend", "Apply")), "applied by server-side apply as `tend`: {managers:?}");

    // Server-side defaults (strategy, revisionHistoryLimit, imagePullPolicy, ...) are no change.
    let plan = s.tend(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", String::from_utf8_lossy(&plan.stdout));
    assert!(ok(&plan).contains("No changes."));

    // Leaving the set deletes it (in the order its dependents allow), and nothing else.
    s.write(
        "k8s/app.yaml",
        &APP.replace("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  greeting: hello\n", "")
            .replace("        envFrom:\n        - configMapRef: {name: settings}\n", ""),
    );
    let plan = ok(&s.tend(&["plan"]));
    assert!(plan.contains("- kube.manifests.app[ConfigMap/web/settings]"), "{plan}");
    assert!(plan.contains("- envFrom"), "the removed field is shown inside the Deployment: {plan}");
    ok(&s.tend(&["apply", "--auto-approve"]));
    assert!(s.get(&["configmap", "settings", "-n", "web"]).is_none(), "pruned");
    let d = s.get(&["deployment", "api", "-n", "web"]).expect("kept");
    assert!(d["spec"]["template"]["spec"]["containers"][0].get("envFrom").is_none(), "the field tend stopped applying is gone: {d}");
    assert!(ok(&s.tend(&["plan"])).contains("No changes."));
}

#[test]
fn a_change_by_another_field_manager_is_named_and_corrected() {
    let s = Setup::new(&[("app.yaml", APP)]);
    ok(&s.tend(&["apply", "--auto-approve"]));
    let o =
        s.kube.kubectl(&["patch", "deployment", "api", "-n", "web", "--type", "merge", "-p", r#"{"spec":{"replicas":5}}"#, "--field-manager", "kubectl-edit"]);
    ok(&o);
    s.write("k8s/app.yaml", &APP.replace("nginx:1.27", "nginx:1.28"));
    let plan = ok(&s.tend(&["plan"]));
    insta::assert_snapshot!("kube_drift_plan", plan);
    ok(&s.tend(&["apply", "--auto-approve"]));
    let d = s.get(&["deployment", "api", "-n", "web"]).expect("there");
    assert_eq!(d["spec"]["replicas"], 2, "corrected");
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.28");
    assert!(ok(&s.tend(&["plan"])).contains("No changes."));
}

#[test]
fn an_immutable_selector_change_is_planned_as_a_replacement_naming_the_field() {
    let s = Setup::new(&[("app.yaml", APP)]);
    ok(&s.tend(&["apply", "--auto-approve"]));
    let uid = s.get(&["deployment", "api", "-n", "web"]).expect("there")["metadata"]["uid"].clone();
    s.write("k8s/app.yaml", &APP.replace("{app: api}", "{app: api-v2}"));
    let plan = ok(&s.tend(&["plan"]));
    assert!(plan.contains("kube.manifests.app[apps/Deployment/web/api] must be replaced"), "{plan}");
    assert!(plan.contains("spec.selector forces replacement"), "{plan}");
    ok(&s.tend(&["apply", "--auto-approve"]));
    let d = s.get(&["deployment", "api", "-n", "web"]).expect("replaced");
    assert_ne!(d["metadata"]["uid"], uid, "a new object");
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "api-v2");
    assert!(ok(&s.tend(&["plan"])).contains("No changes."));
}

#[test]
fn a_rollout_that_never_becomes_ready_fails_the_apply_naming_the_condition() {
    let broken = APP.replace("nginx:1.27", "nginx:never-ready").replace("  replicas: 2\n", "  replicas: 2\n  progressDeadlineSeconds: 2\n");
    let s = Setup::new(&[("app.yaml", &broken)]);
    let err = failed(&s.tend(&["apply", "--auto-approve"]));
    assert!(err.contains("kube.manifests.app[apps/Deployment/web/api]"), "{err}");
    assert!(err.contains("ProgressDeadlineExceeded"), "{err}");
    // The failed object is replaced by the next apply, once fixed.
    s.write("k8s/app.yaml", APP);
    let plan = ok(&s.tend(&["plan"]));
    assert!(plan.contains("kube.manifests.app[apps/Deployment/web/api] must be replaced"), "{plan}");
    ok(&s.tend(&["apply", "--auto-approve"]));
    assert!(ok(&s.tend(&["plan"])).contains("No changes."));
}

#[test]
fn a_failed_rollout_is_rolled_back_with_rollback_auto_and_tried_again_by_the_next_apply() {
    let s = Setup::new(&[("app.yaml", APP)]);
    let toml = s.toml();
    s.write("tend.toml", &format!("{toml}rollback = \"auto\"\n"));
    ok(&s.tend(&["apply", "--auto-approve"]));
    let image = |s: &Setup| s.get(&["deployment", "api", "-n", "web"]).expect("deployment")["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    assert_eq!(image(&s), "nginx:1.27");

    let broken = APP.replace("nginx:1.27", "nginx:never-ready").replace("  replicas: 2\n", "  replicas: 2\n  progressDeadlineSeconds: 2\n");
    s.write("k8s/app.yaml", &broken);
    let err = failed(&s.tend(&["apply", "--auto-approve"]));
    assert!(err.contains("ProgressDeadlineExceeded") && err.contains("rolled back"), "{err}");
    assert_eq!(image(&s), "nginx:1.27", "the previous revision serves again");
    // The commit still asks for the new image: the next plan tries it again.
    let plan = ok(&s.tend(&["plan"]));
    assert!(plan.contains("~ kube.manifests.app[apps/Deployment/web/api]") && plan.contains("nginx:never-ready"), "{plan}");
    s.write("k8s/app.yaml", &APP.replace("nginx:1.27", "nginx:1.28"));
    ok(&s.tend(&["apply", "--auto-approve"]));
    assert_eq!(image(&s), "nginx:1.28");
    assert!(ok(&s.tend(&["plan"])).contains("No changes."));
}

const CRD: &str = r"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
---
apiVersion: example.com/v1
kind: Widget
metadata:
  name: gear
spec:
  size: 3
";

#[test]
fn a_custom_resource_definition_and_its_resources_apply_in_one_run() {
    let s = Setup::new(&[("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n"), ("crd.yaml", CRD)]);
    let plan = ok(&s.tend(&["plan"]));
    assert!(plan.contains("+ kube.manifests.app[example.com/Widget/web/gear]"), "{plan}");
    ok(&s.tend(&["apply", "--auto-approve"]));
    let w = s.get(&["widgets.example.com", "gear", "-n", "web"]).expect("the Widget exists");
    assert_eq!(w["spec"]["size"], 3);
    assert!(ok(&s.tend(&["plan"])).contains("No changes."));
    s.write("k8s/crd.yaml", &CRD.replace("size: 3", "size: 4"));
    let plan = ok(&s.tend(&["plan"]));
    assert!(plan.contains("~ size = 3 -> 4"), "{plan}");

    // A kind's readiness by the set's rule: this one never holds, and the apply says what it
    // waited for.
    let toml = s.toml();
    s.write("tend.toml", &format!("{toml}timeout = \"2s\"\n\n[kube.manifests.app.health.\"example.com/Widget\"]\nready = \"nope\"\n"));
    let err = failed(&s.tend(&["plan"]));
    assert!(err.contains("health.\"example.com/Widget\": `nope`: no `=`"), "{err}");
    s.write(
        "tend.toml",
        &format!("{toml}timeout = \"2s\"\n\n[kube.manifests.app.health.\"example.com/Widget\"]\nready = \"status.conditions[type=Synced].status=True\"\n"),
    );
    let err = failed(&s.tend(&["apply", "--auto-approve"]));
    assert!(err.contains("kube.manifests.app[example.com/Widget/web/gear]") && err.contains("waiting for status.conditions[type=Synced].status=True"), "{err}");
    s.write("tend.toml", &format!("{toml}\n[kube.manifests.app.health.Widget]\nready = \"spec.size=4\"\nfailed = \"spec.size=0\"\n"));
    ok(&s.tend(&["apply", "--auto-approve"]));
    assert!(ok(&s.tend(&["plan"])).contains("No changes."));
}

#[test]
fn an_object_the_server_rejects_fails_the_apply_with_the_servers_causes_and_the_rest_is_recorded() {
    // The template's labels do not match the selector: the API server refuses it (422).
    let s = Setup::new(&[("app.yaml", &APP.replace("    metadata:\n      labels: {app: api}", "    metadata:\n      labels: {app: web}"))]);
    let err = failed(&s.tend(&["apply", "--auto-approve"]));
    assert!(err.contains("kube.manifests.app[apps/Deployment/web/api]"), "{err}");
    assert!(err.contains("spec.template.metadata.labels") && err.contains("does not match template") && err.contains("422"), "{err}");
    // What was applied is recorded: the next plan only creates the Deployment.
    let plan = ok(&s.tend(&["plan"]));
    assert!(plan.contains("Plan: 1 to add, 0 to change"), "{plan}");
}

#[test]
fn bad_manifests_and_kinds_are_named_by_file_line_or_object() {
    let s = Setup::new(&[(
        "a.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {a: b}\n",
    )]);
    let err = failed(&s.tend(&["plan"]));
    assert!(err.contains("k8s/a.yaml:6: the ConfigMap has no `metadata.name`"), "{err}");

    s.write("k8s/a.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n");
    s.write("k8s/b.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n");
    let err = failed(&s.tend(&["plan"]));
    assert!(err.contains("Namespace `web` is declared twice: k8s/a.yaml:1 and"), "{err}");
    assert!(err.contains("k8s/b.yaml:1"), "{err}");

    s.write("k8s/b.yaml", "apiVersion: apps/v1\nkind: Deploymnet\nmetadata:\n  name: x\n");
    let err = failed(&s.tend(&["plan"]));
    assert!(err.contains("does not serve `apps/v1/Deploymnet`"), "{err}");
    assert!(err.contains("did you mean `apps/v1/Deployment`?"), "{err}");

    s.write("k8s/b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: nowhere\n");
    let err = failed(&s.tend(&["plan"]));
    assert!(err.contains("lives in namespace `nowhere`, which cluster kube.cluster.dev lacks and no set creates"), "{err}");

    // References inside a manifest name what exists.
    s.write("k8s/b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: ${host.file.nope.sha256}\n  b: ${secret.nope}\n");
    let err = failed(&s.tend(&["plan"]));
    assert!(err.contains("(k8s/b.yaml:1) refers to") && err.contains("`host.file.nope`, which is not declared"), "{err}");
    assert!(err.contains("uses secret `nope`,") && err.contains("which is not declared"), "{err}");

    // One object in two sets.
    s.write("k8s/b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n");
    s.write("more/x.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: web\n");
    let toml = s.toml();
    s.write("tend.toml", &format!("{toml}\n[kube.manifests.more]\npath = \"more\"\n"));
    let err = failed(&s.tend(&["plan"]));
    assert!(err.contains("ConfigMap `x` on kube.cluster.dev is declared by") && err.contains("two sets"), "{err}");
    assert!(err.contains("k8s/b.yaml:1") && err.contains("more/x.yaml:1"), "both are named: {err}");
    s.write("tend.toml", &toml);

    // A link out of the repository is refused, never skipped (its objects would be pruned);
    // a link to a file inside it is read.
    s.write("k8s/b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n");
    let outside = s.dir.path().join("outside.yaml");
    fs_err::write(&outside, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\n").expect("write");
    std::os::unix::fs::symlink(&outside, s.cfg().join("k8s/c.yaml")).expect("link");
    let err = failed(&s.tend(&["plan"]));
    assert!(err.contains("c.yaml") && err.contains("outside the repository"), "{err}");
    fs_err::remove_file(s.cfg().join("k8s/c.yaml")).expect("unlink");
    s.write("common/y.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\n");
    std::os::unix::fs::symlink("../common/y.yaml", s.cfg().join("k8s/c.yaml")).expect("link");
    let plan = ok(&s.tend(&["plan"]));
    assert!(plan.contains("+ kube.manifests.app[ConfigMap/web/shared]"), "{plan}");
    // A name YAML reads as another type is named as such.
    s.write("common/y.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\n");
    let err = failed(&s.tend(&["plan"]));
    assert!(err.contains("k8s/c.yaml:1: the ConfigMap's `metadata.name` is") && err.contains("true, not a string: quote it"), "{err}");
    fs_err::remove_file(s.cfg().join("k8s/c.yaml")).expect("unlink");

    s.write("k8s/b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [x\n");
    // Read as config first (a file that is not YAML cannot say it holds manifests).
    let err = failed(&s.tend(&["plan"]));
    assert!(err.contains("invalid YAML") && err.contains("k8s/b.yaml:4"), "{err}");
}

#[test]
fn an_object_another_manager_owns_is_not_taken_over_unless_forced() {
    let s = Setup::new(&[(
        "app.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\ndata:\n  mode: tend\n",
    )]);
    ok(&s.tend(&["apply", "--auto-approve", "--target", "kube.manifests.app[Namespace/web]"]));
    let theirs = s.dir.path().join("theirs.yaml");
    fs_err::write(&theirs, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\n  namespace: web\ndata:\n  mode: helm\n").expect("write");
    ok(&s.kube.kubectl(&["apply", "--server-side", "--field-manager", "helm", "-f", &theirs.to_string_lossy()]));
    let err = failed(&s.tend(&["plan"]));
    assert!(err.contains("kube.manifests.app[ConfigMap/web/shared]"), "{err}");
    assert!(err.contains("helm"), "the other field manager is named: {err}");
    // `force = true` takes it over.
    let toml = s.toml();
    s.write("tend.toml", &toml.replace("namespace = \"web\"\n", "namespace = \"web\"\nforce = true\n"));
    let plan = ok(&s.tend(&["plan"]));
    assert!(plan.contains("tend adopts it"), "{plan}");
    ok(&s.tend(&["apply", "--auto-approve"]));
    assert_eq!(s.get(&["configmap", "shared", "-n", "web"]).expect("there")["data"]["mode"], "tend");
}

#[test]
fn an_unreachable_cluster_leaves_its_objects_unplanned_and_the_rest_converges() {
    let s = Setup::new(&[("app.yaml", APP)]);
    let port = crate::support::git::free_port();
    let toml = format!(
        "[project]\nname = \"shop\"\n\n[kube.cluster.dev]\nserver = \"https://127.0.0.1:{port}\"\n\n[kube.manifests.app]\npath = \"k8s\"\nnamespace = \"web\"\n\n[host.local.this]\n\n[host.file.note]\npath = \"${{path.root}}/out/note.txt\"\ncontent = \"hi\\n\"\n"
    );
    s.write("tend.toml", &toml);
    let out = s.tend(&["apply", "--auto-approve"]);
    let text = failed(&out);
    assert!(text.contains("kube.cluster.dev"), "{text}");
    assert!(text.contains("cannot reach it"), "{text}");
    assert!(text.contains("kube.manifests.app[apps/Deployment/web/api]"), "its objects are named as not planned: {text}");
    assert_eq!(fs_err::read_to_string(s.cfg().join("out/note.txt")).expect("the file converged"), "hi\n");
}

#[test]
fn refused_credentials_name_the_cluster_and_its_context() {
    let s = Setup::new(&[("app.yaml", APP)]);
    // The same kubeconfig with a token the server does not know.
    let kubeconfig = fs_err::read_to_string(s.kube.kubeconfig()).expect("kubeconfig");
    let wrong = s.dir.path().join("wrong-kubeconfig");
    let token = kubeconfig.lines().find_map(|l| l.trim().strip_prefix("token: ")).expect("a token").to_string();
    fs_err::write(&wrong, kubeconfig.replace(&token, "not-the-token")).expect("write");
    let toml = s.toml().replace(&s.kube.kubeconfig().display().to_string(), &wrong.display().to_string());
    s.write("tend.toml", &toml.replace("[kube.cluster.dev]\n", "[kube.cluster.dev]\ncontext = \"fake\"\n"));
    let err = failed(&s.tend(&["plan"]));
    assert!(err.contains("kube.cluster.dev (context fake)") && err.contains("401"), "{err}");
    assert!(err.contains("check the cluster's credentials"), "{err}");
    assert!(!err.contains("not-the-token"), "{err}");
}

const CANARY: &str = "kube-canary-5c1e7a";

#[test]
fn references_and_secrets_inside_manifests_are_evaluated_and_secrets_never_leak() {
    let s = Setup::new(&[(
        "app.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: where\ndata:\n  host: ${host.local.this.hostname}\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: ${secret.db}\n",
    )]);
    let id = age::x25519::Identity::generate();
    let key = s.dir.path().join("tend.key");
    fs_err::write(&key, format!("{}\n", id.to_string().expose_secret())).expect("key");
    fs_err::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let mut enc = Vec::new();
    let mut w =
        age::Encryptor::with_recipients(std::iter::once(&id.to_public() as &dyn age::Recipient)).expect("recipients").wrap_output(&mut enc).expect("wrap");
    w.write_all(CANARY.as_bytes()).expect("write");
    w.finish().expect("finish");
    fs_err::create_dir_all(s.cfg().join("secrets")).expect("mkdir");
    fs_err::write(s.cfg().join("secrets/db.age"), enc).expect("write secret");
    let toml = s.toml();
    s.write("tend.toml", &format!("{toml}\n[host.local.this]\n\n[secret.db]\nfile = \"secrets/db.age\"\n"));
    let key = key.to_string_lossy().into_owned();
    let env = [("TEND_AGE_KEY_FILE", key.as_str())];

    let saved = s.dir.path().join("plan.bin");
    let plan = ok(&s.tend_env(&["plan", "--out", &saved.to_string_lossy()], &env));
    let applied = ok(&s.tend_env(&["apply", "--auto-approve"], &env));
    let host = hostname::get().expect("hostname").to_string_lossy().into_owned();
    assert_eq!(s.get(&["configmap", "where", "-n", "web"]).expect("there")["data"]["host"], host.as_str(), "the reference was evaluated");
    let secret = s.get(&["secret", "db", "-n", "web"]).expect("there");
    let got = base64::engine::general_purpose::STANDARD.decode(secret["data"]["password"].as_str().expect("data")).expect("base64");
    assert_eq!(got, CANARY.as_bytes(), "the secret reached the cluster, and only there");
    let noop = ok(&s.tend_env(&["plan"], &env));
    assert!(noop.contains("No changes."), "{noop}");
    let show = ok(&s.tend_env(&["state", "show", "kube.manifests.app[Secret/web/db]"], &env));
    assert!(saved.exists(), "the saved plan is searched too");

    let mut seen = vec![plan, applied, noop, show];
    let mut files = Vec::new();
    all_files(s.dir.path(), &mut files);
    for f in files.iter().filter(|f| !f.ends_with("tend.key") && !f.starts_with(s.kube.dir.path())) {
        seen.push(String::from_utf8_lossy(&fs_err::read(f).unwrap_or_default()).into_owned());
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(CANARY);
    for text in &seen {
        assert!(!text.contains(CANARY) && !text.contains(&b64), "the secret leaked: {text}");
    }
}

#[test]
fn a_sops_encrypted_secret_manifest_is_decrypted_in_memory_and_never_written() {
    crate::support::need::need(&[crate::support::need::Need::Sops]);
    let sops = crate::support::need::sops().expect("checked by need");
    let s = Setup::new(&[("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n")]);
    let id = age::x25519::Identity::generate();
    let key = s.dir.path().join("tend.key");
    fs_err::write(&key, format!("{}\n", id.to_string().expose_secret())).expect("key");
    fs_err::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // Encrypted the way Flux documents it, by the real sops: only data and stringData.
    let cleartext = s.dir.path().join("db.yaml");
    let encrypt = |text: &str| {
        fs_err::write(&cleartext, text).expect("write");
        let out = std::process::Command::new(&sops)
            .args(["--disable-version-check", "--encrypt", "--age", &id.to_public().to_string(), "--encrypted-regex", "^(data|stringData)$"])
            .arg(&cleartext)
            .output()
            .expect("sops runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        fs_err::remove_file(&cleartext).expect("the plaintext goes");
        s.write("k8s/db.enc.yaml", &String::from_utf8_lossy(&out.stdout));
    };
    encrypt(&format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: {CANARY}\n  tls.crt: cert-{CANARY}\n"));
    let key_env = key.to_string_lossy().into_owned();
    let env = [("TEND_AGE_KEY_FILE", key_env.as_str())];

    // Undeclared: the file is named, with how to declare it.
    let err = failed(&s.tend_env(&["plan"], &env));
    assert!(err.contains("k8s/db.enc.yaml:1: the manifest is encrypted with") && err.contains("no secret declares its file"), "{err}");
    let toml = s.toml();
    s.write("tend.toml", &format!("{toml}hash_suffix = true\n\n[secret.db]\nfile = \"k8s/db.enc.yaml\"\n"));
    let plan = ok(&s.tend_env(&["plan"], &env));
    assert!(plan.contains("+ kube.manifests.app[Secret/web/db-"), "{plan}");
    let applied = ok(&s.tend_env(&["apply", "--auto-approve"], &env));
    let secrets = s.get(&["secrets", "-n", "web"]).expect("list");
    let secret = &secrets["items"][0];
    let name = secret["metadata"]["name"].as_str().expect("name").to_string();
    let decode =
        |v: &serde_json::Value| String::from_utf8(base64::engine::general_purpose::STANDARD.decode(v.as_str().expect("data")).expect("base64")).expect("utf-8");
    assert_eq!(decode(&secret["data"]["password"]), CANARY, "decrypted on the way to the cluster");
    assert_eq!(decode(&secret["data"]["tls.crt"]), format!("cert-{CANARY}"), "keys with dots too");
    let noop = ok(&s.tend_env(&["plan"], &env));
    assert!(noop.contains("No changes."), "{noop}");

    // New content under the same name is a new hashed Secret (the file's MAC changed).
    encrypt(&format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: new-{CANARY}\n  tls.crt: cert-{CANARY}\n"));
    let rotated = ok(&s.tend_env(&["apply", "--auto-approve"], &env));
    assert!(rotated.contains(&format!("- kube.manifests.app[Secret/web/{name}]")), "{rotated}");

    // Its identity must be readable: a fully encrypted manifest is refused, saying how.
    fs_err::write(&cleartext, "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: x\n").expect("write");
    let out = std::process::Command::new(&sops)
        .args(["--disable-version-check", "--encrypt", "--age", &id.to_public().to_string()])
        .arg(&cleartext)
        .output()
        .expect("sops runs");
    s.write("k8s/db.enc.yaml", &String::from_utf8_lossy(&out.stdout));
    let err = failed(&s.tend_env(&["plan"], &env));
    assert!(err.contains("`apiVersion` is encrypted") && err.contains("--encrypted-regex"), "{err}");

    let mut seen = vec![plan, applied, noop, rotated];
    let mut files = Vec::new();
    all_files(s.dir.path(), &mut files);
    for f in files.iter().filter(|f| !f.ends_with("tend.key") && !f.starts_with(s.kube.dir.path())) {
        seen.push(String::from_utf8_lossy(&fs_err::read(f).unwrap_or_default()).into_owned());
    }
    for text in &seen {
        assert!(!text.contains(CANARY), "the secret leaked: {text}");
    }
}

fn all_files(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    for entry in fs_err::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() { all_files(&p, out) } else { out.push(p) }
    }
}

#[test]
fn a_busy_or_failing_api_server_is_retried_within_the_apply() {
    let s = Setup::new(&[(
        "app.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: b\n",
    )]);
    // The next two writes of the ConfigMap are refused: 429 with Retry-After, then a 500.
    s.fault(r#"{"code": 429, "match": "PATCH /api/v1/namespaces/web/configmaps/settings", "times": 1, "retry_after": 1}"#);
    s.fault(r#"{"code": 500, "match": "PATCH /api/v1/namespaces/web/configmaps/settings", "times": 1}"#);
    let out = ok(&s.tend(&["apply", "--auto-approve"]));
    assert!(out.contains("Apply complete: 3 added"), "{out}");
    assert_eq!(s.get(&["configmap", "settings", "-n", "web"]).expect("applied after the retries")["data"]["a"], "b");
    let calls = ok(&s.kube.kubectl(&["get", "--raw", "/fake/calls"]));
    let calls: serde_json::Value = serde_json::from_str(&calls).expect("JSON");
    let patches = calls
        .as_object()
        .expect("counts")
        .iter()
        .filter(|(k, _)| k.starts_with("PATCH") && k.contains("configmaps/settings"))
        .map(|(_, v)| v.as_u64().unwrap_or(0))
        .sum::<u64>();
    assert_eq!(patches, 3, "two refused, the third applied: {calls}");

    // Observation is retried too: a busy moment does not leave the cluster's objects unplanned.
    let lists = |calls: &serde_json::Value| calls["GET /api/v1/configmaps"].as_u64().unwrap_or(0);
    let before = lists(&calls);
    s.fault(r#"{"code": 503, "match": "GET /api/v1/configmaps", "times": 2}"#);
    assert!(ok(&s.tend(&["plan"])).contains("No changes."));
    let calls: serde_json::Value = serde_json::from_str(&ok(&s.kube.kubectl(&["get", "--raw", "/fake/calls"]))).expect("JSON");
    assert_eq!(lists(&calls) - before, 3, "two refused, the third listed: {calls}");
}

#[test]
fn writes_to_a_cluster_are_bounded_by_its_parallelism() {
    let maps: String = (0..8).fold(String::new(), |mut out, i| {
        out.push_str(&format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: m{i}\ndata:\n  n: \"{i}\"\n"));
        out
    });
    let s = Setup::new(&[("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n"), ("maps.yaml", &maps)]);
    let toml = s.toml();
    s.write("tend.toml", &toml.replace("[kube.cluster.dev]\n", "[kube.cluster.dev]\nparallelism = 2\n"));
    // Each request takes 0.3 s: eight writes at once would be seen at once.
    let f = s.dir.path().join("latency.json");
    fs_err::write(&f, r#"{"seconds": 0.3}"#).expect("write");
    ok(&s.kube.kubectl(&["create", "--raw", "/fake/latency", "-f", &f.to_string_lossy()]));
    let out = ok(&s.tend(&["apply", "--auto-approve"]));
    assert!(out.contains("Apply complete: 10 added"), "{out}");
    let most: serde_json::Value = serde_json::from_str(&ok(&s.kube.kubectl(&["get", "--raw", "/fake/concurrency"]))).expect("JSON");
    assert_eq!(most["PATCH"], 2, "at most two writes at once, and two did overlap: {most}");
}

#[test]
fn hash_suffixed_config_rolls_its_workloads_and_the_old_one_goes_after_them() {
    let s = Setup::new(&[("app.yaml", APP)]);
    let toml = s.toml();
    s.write("tend.toml", &format!("{toml}hash_suffix = true\n"));
    ok(&s.tend(&["apply", "--auto-approve"]));
    let maps = |s: &Setup| -> Vec<String> {
        let list = s.get(&["configmaps", "-n", "web"]).expect("list");
        list["items"].as_array().expect("items").iter().map(|m| m["metadata"]["name"].as_str().unwrap_or("").to_string()).collect()
    };
    let first = maps(&s);
    assert!(first.len() == 1 && first[0].starts_with("settings-"), "named after its content: {first:?}");
    let uses = |s: &Setup| {
        s.get(&["deployment", "api", "-n", "web"]).expect("deployment")["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"]
            .clone()
    };
    assert_eq!(uses(&s), first[0].as_str(), "the reference follows the name");
    assert!(ok(&s.tend(&["plan"])).contains("No changes."));

    // New content: a new ConfigMap, the Deployment rolls to it, then the old one goes.
    s.write("k8s/app.yaml", &APP.replace("greeting: hello", "greeting: hi"));
    let plan = ok(&s.tend(&["plan"]));
    assert!(plan.contains(&format!("- kube.manifests.app[ConfigMap/web/{}]", first[0])), "{plan}");
    assert!(plan.contains("~ kube.manifests.app[apps/Deployment/web/api]"), "{plan}");
    let applied = s.tend(&["apply", "--auto-approve"]);
    let out = ok(&applied) + &String::from_utf8_lossy(&applied.stderr);
    let at = |what: &str| out.find(what).unwrap_or_else(|| panic!("`{what}` in {out}"));
    assert!(at(&format!("[ConfigMap/web/{}]: destroying", first[0])) > at("[apps/Deployment/web/api]: updated ("), "the old one goes after the rollout: {out}");
    let second = maps(&s);
    assert!(second.len() == 1 && second[0] != first[0] && second[0].starts_with("settings-"), "{second:?}");
    assert_eq!(uses(&s), second[0].as_str());
    assert!(ok(&s.tend(&["plan"])).contains("No changes."));
}

/// A `tend agent` on the setup's config, stopped (by its PID) when dropped.
struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_agent_watches_the_cluster_and_corrects_a_change_by_someone_else_without_waiting_for_an_interval() {
    let s = Setup::new(&[("app.yaml", APP)]);
    let log = s.dir.path().join("agent.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_tend"))
        .args(["-C", &s.cfg().to_string_lossy(), "--state", &s.dir.path().join("state/state.db").to_string_lossy()])
        // Hours between reconciles: only the watch can bring the next one.
        .args(["agent", "--listen", "none", "--interval", "6h", "--drift-interval", "6h"])
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .env("XDG_STATE_HOME", s.dir.path().join("xdg"))
        .env("TMPDIR", s.tmp())
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(fs_err::File::create(&log).expect("log").into_parts().0)
        .spawn()
        .expect("the agent starts");
    let _agent = Agent(child);
    let replicas = |s: &Setup| s.get(&["deployment", "api", "-n", "web"]).map(|d| d["spec"]["replicas"].clone());
    let wait = |what: &str, cond: &dyn Fn() -> bool| {
        let until = std::time::Instant::now() + std::time::Duration::from_mins(1);
        while !cond() {
            assert!(std::time::Instant::now() < until, "timed out waiting until {what}:\n{}", fs_err::read_to_string(&log).unwrap_or_default());
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    wait("the first reconcile applies the set", &|| {
        replicas(&s) == Some(serde_json::json!(2)) && fs_err::read_to_string(&log).unwrap_or_default().contains("reconciled")
    });
    // Someone scales the Deployment by hand (kubectl patch): the watch sees it and the agent puts it back.
    ok(&s.kube.kubectl(&["patch", "deployment", "api", "-n", "web", "--type", "merge", "-p", r#"{"spec":{"replicas":5}}"#]));
    wait("the change is seen", &|| fs_err::read_to_string(&log).unwrap_or_default().contains("changed outside tend"));
    wait("the agent corrects it", &|| replicas(&s) == Some(serde_json::json!(2)));
    let text = fs_err::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("kube.manifests.app[apps/Deployment/web/api]") && text.contains("drift detected"), "{text}");
    // Its own correction is not drift: the agent settles.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let reconciles = |t: &str| t.matches("reconciled").count();
    let settled = reconciles(&fs_err::read_to_string(&log).unwrap_or_default());
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(reconciles(&fs_err::read_to_string(&log).unwrap_or_default()), settled, "no reconcile without a change");
}
