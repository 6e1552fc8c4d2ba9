//! The fake Kubernetes API server checked with the real `kubectl`: what tend's Kubernetes
//! provider relies on behaves as kubectl expects of a real API server.

use crate::support::kube::FakeKube;

const APP: &str = r"apiVersion: v1
kind: Namespace
metadata:
  name: app
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: app
  labels: {app: web}
data:
  ip: 10.0.0.5
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: app
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: api
        image: nginx:1.25
        ports:
        - containerPort: 80
";

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&ok(o)).expect("JSON")
}

/// (manager, operation) of each managedFields entry.
fn managers(obj: &serde_json::Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| a.iter().map(|m| (m["manager"].as_str().unwrap_or("").to_string(), m["operation"].as_str().unwrap_or("").to_string())).collect())
        .unwrap_or_default()
}

#[test]
fn kubectl_server_side_apply_owns_fields_conflicts_and_takes_over_when_forced() {
    let k = FakeKube::start();
    let dir = k.dir.path();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        fs_err::write(&p, text).expect("manifest");
        p.to_string_lossy().into_owned()
    };
    let app = write("app.yaml", APP);
    let applied = ok(&k.kubectl(&["apply", "--server-side", "-f", &app]));
    assert_eq!(
        applied.lines().collect::<Vec<_>>(),
        ["namespace/app serverside-applied", "configmap/settings serverside-applied", "deployment.apps/web serverside-applied"]
    );
    let get = |what: &[&str]| json(&k.kubectl(&[&["get", "-n", "app", "-o", "json", "--show-managed-fields"], what].concat()));
    let web = get(&["deployment", "web"]);
    assert_eq!((web["spec"]["replicas"].as_i64(), web["metadata"]["generation"].as_i64()), (Some(2), Some(1)));
    assert!(web["metadata"]["uid"].as_str().is_some_and(|u| u.len() == 36) && web["metadata"]["creationTimestamp"].is_string(), "{web}");
    assert_eq!(managers(&web), [("kubectl".to_string(), "Apply".to_string())]);
    let owned = &web["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"];
    assert!(owned["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"api\"}"]["f:image"].is_object(), "containers are owned by name: {owned}");
    // Its controller (the fake's) reports the rollout within a second or two, each status
    // update a new resourceVersion: wait for it to settle first.
    let settled = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while get(&["deployment", "web"])["status"]["readyReplicas"].as_i64() != Some(2) {
        assert!(std::time::Instant::now() < settled, "the deployment never became ready");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let rv = get(&["deployment", "web"])["metadata"]["resourceVersion"].clone();

    // Applying the same again changes nothing, its resourceVersion included.
    ok(&k.kubectl(&["apply", "--server-side", "-f", &app]));
    assert_eq!(get(&["deployment", "web"])["metadata"]["resourceVersion"], rv);

    // Another manager setting a field to another value conflicts, naming who owns it.
    let more = write("more.yaml", &APP.replace("replicas: 2", "replicas: 3"));
    let conflict = k.kubectl(&["apply", "--server-side", "--field-manager=ops", "-f", &more]);
    assert!(!conflict.status.success());
    let err = String::from_utf8_lossy(&conflict.stderr);
    assert!(err.contains("Apply failed with 1 conflict") && err.contains("conflict with \"kubectl\"") && err.contains(".spec.replicas"), "{err}");
    assert_eq!(get(&["deployment", "web"])["spec"]["replicas"].as_i64(), Some(2), "nothing applied");
    // Forced, it takes the field over; the spec changed, so the generation moves.
    ok(&k.kubectl(&["apply", "--server-side", "--field-manager=ops", "--force-conflicts", "-f", &more]));
    let web = get(&["deployment", "web"]);
    assert_eq!((web["spec"]["replicas"].as_i64(), web["metadata"]["generation"].as_i64()), (Some(3), Some(2)));
    let ops = web["metadata"]["managedFields"].as_array().expect("entries").iter().find(|m| m["manager"] == "ops").expect("ops").clone();
    assert!(ops["fieldsV1"]["f:spec"]["f:replicas"].is_object(), "{ops}");
    let kubectl = web["metadata"]["managedFields"].as_array().expect("entries").iter().find(|m| m["manager"] == "kubectl").expect("kubectl").clone();
    assert!(kubectl["fieldsV1"]["f:spec"].get("f:replicas").is_none(), "taken over: {kubectl}");

    // A write that is not an apply is an Update entry that owns what it changed.
    ok(&k.kubectl(&["patch", "deployment", "web", "-n", "app", "--type", "merge", "-p", r#"{"spec":{"replicas":5}}"#]));
    let web = get(&["deployment", "web"]);
    assert!(managers(&web).contains(&("kubectl-patch".to_string(), "Update".to_string())), "{:?}", managers(&web));

    // A server-side diff is a dry run: it shows what applying would do and changes nothing.
    let diff = k.kubectl(&["diff", "--server-side", "--force-conflicts", "-f", &app]);
    assert_eq!(diff.status.code(), Some(1), "differences found: {}", String::from_utf8_lossy(&diff.stderr));
    let shown = String::from_utf8_lossy(&diff.stdout);
    assert!(shown.contains("-  replicas: 5") && shown.contains("+  replicas: 2"), "{shown}");
    assert_eq!(get(&["deployment", "web"])["spec"]["replicas"].as_i64(), Some(5), "a dry run writes nothing");

    // A field the manager stops applying, and nobody else owns, is removed.
    ok(&k.kubectl(&["apply", "--server-side", "--field-manager=ops", "--force-conflicts", "-f", &app]));
    let fewer = write("fewer.yaml", &APP.replace("  ip: 10.0.0.5", "  port: \"80\""));
    ok(&k.kubectl(&["apply", "--server-side", "-f", &fewer]));
    let settings = get(&["configmap", "settings"]);
    assert_eq!(settings["data"], serde_json::json!({"ip": "10.0.0.5", "port": "80"}), "ops still applies ip");
    let ops_fewer = write("ops-fewer.yaml", &APP.replace("  ip: 10.0.0.5", "  port: \"80\""));
    ok(&k.kubectl(&["apply", "--server-side", "--field-manager=ops", "-f", &ops_fewer]));
    assert_eq!(get(&["configmap", "settings"])["data"], serde_json::json!({"port": "80"}), "nobody applies ip any more");
}

#[test]
fn kubectl_lists_by_label_deletes_and_is_refused_without_the_token() {
    let k = FakeKube::start();
    let app = k.dir.path().join("app.yaml");
    fs_err::write(&app, APP).expect("manifest");
    let app = app.to_string_lossy().into_owned();
    ok(&k.kubectl(&["apply", "--server-side", "-f", &app]));
    assert_eq!(ok(&k.kubectl(&["get", "cm", "-n", "app", "-l", "app=web", "-o", "name"])), "configmap/settings\n");
    assert_eq!(ok(&k.kubectl(&["get", "cm", "-n", "app", "-l", "app=db", "-o", "name"])), "");
    // kubectl finds in the OpenAPI documents that the server validates fields, and asks it to.
    let typo = k.dir.path().join("typo.yaml");
    fs_err::write(&typo, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: typo, namespace: app}\ndatta: {a: \"1\"}\n").expect("manifest");
    let refused = k.kubectl(&["apply", "--server-side", "-f", &typo.to_string_lossy()]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("unknown field \"datta\""), "{refused:?}");
    // Pages (limit and continue) as kubectl asks for them.
    let more = k.dir.path().join("more.yaml");
    let pages = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: page1, namespace: app}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: page2, namespace: app}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: page3, namespace: app}\n";
    fs_err::write(&more, pages).expect("manifest");
    ok(&k.kubectl(&["apply", "--server-side", "-f", &more.to_string_lossy()]));
    assert_eq!(
        ok(&k.kubectl(&["get", "cm", "-n", "app", "--chunk-size=2", "-o", "name"])),
        "configmap/page1\nconfigmap/page2\nconfigmap/page3\nconfigmap/settings\n"
    );
    let calls = json(&k.kubectl(&["get", "--raw", "/fake/calls"]));
    assert!(calls["GET /api/v1/namespaces/app/configmaps"].as_u64() >= Some(4), "two pages of two, besides the label queries: {calls}");
    let in_missing_namespace = k.dir.path().join("lost.yaml");
    fs_err::write(&in_missing_namespace, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: nowhere\n").expect("manifest");
    let lost = k.kubectl(&["apply", "--server-side", "-f", &in_missing_namespace.to_string_lossy()]);
    assert!(!lost.status.success() && String::from_utf8_lossy(&lost.stderr).contains("namespaces \"nowhere\" not found"), "{lost:?}");

    ok(&k.kubectl(&["delete", "deployment", "web", "-n", "app"]));
    let gone = k.kubectl(&["get", "deployment", "web", "-n", "app"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("deployments.apps \"web\" not found"), "{}", String::from_utf8_lossy(&gone.stderr));

    let config = fs_err::read_to_string(k.kubeconfig()).expect("kubeconfig");
    let wrong = config.replace(config.lines().find(|l| l.trim_start().starts_with("token:")).expect("a token"), "    token: wrong");
    let path = k.dir.path().join("wrong-token");
    fs_err::write(&path, wrong).expect("kubeconfig");
    let refused = k.kubectl_with(&path, &["get", "ns"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("Unauthorized") || err.contains("must be logged in"), "{err}");
}

#[test]
fn kubectl_sees_defaults_immutable_fields_and_rollouts_as_from_a_real_server() {
    let k = FakeKube::start();
    let path = k.dir.path().join("all.yaml");
    let service = "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: app\nspec:\n  selector: {app: web}\n  ports:\n  - port: 80\n";
    let broken = "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: broken, namespace: app}\nspec:\n  progressDeadlineSeconds: 2\n  selector: {matchLabels: {app: broken}}\n  template:\n    metadata: {labels: {app: broken}}\n    spec:\n      containers: [{name: c, image: \"example.com/never-ready:1\"}]\n";
    let jobs = "---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: once, namespace: app}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: \"busybox:1\"}]\n---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: bad, namespace: app}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: \"example.com/fails:1\"}]\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data, namespace: app}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n";
    fs_err::write(&path, format!("{APP}{service}{broken}{jobs}")).expect("manifest");
    let all = path.to_string_lossy().into_owned();
    ok(&k.kubectl(&["apply", "--server-side", "-f", &all]));

    // What the API server defaults: a plan comparing manifests with objects must expect these.
    let web = json(&k.kubectl(&["get", "deployment", "web", "-n", "app", "-o", "json"]));
    assert_eq!(web["spec"]["strategy"], serde_json::json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}));
    assert_eq!((web["spec"]["revisionHistoryLimit"].as_i64(), web["spec"]["progressDeadlineSeconds"].as_i64()), (Some(10), Some(600)));
    let container = &web["spec"]["template"]["spec"]["containers"][0];
    assert_eq!((container["imagePullPolicy"].as_str(), container["ports"][0]["protocol"].as_str()), (Some("IfNotPresent"), Some("TCP")));
    let svc = json(&k.kubectl(&["get", "service", "web", "-n", "app", "-o", "json"]));
    assert!(svc["spec"]["clusterIP"].as_str().is_some_and(|ip| ip.starts_with("10.96.")), "{svc}");
    assert_eq!((svc["spec"]["ports"][0]["protocol"].as_str(), svc["spec"]["ports"][0]["targetPort"].as_i64()), (Some("TCP"), Some(80)));

    // Rollouts as kubectl follows them (watches), ready after the simulated delay.
    let rolled = ok(&k.kubectl(&["rollout", "status", "deployment/web", "-n", "app", "--timeout=30s"]));
    assert!(rolled.contains("deployment \"web\" successfully rolled out"), "{rolled}");
    ok(&k.kubectl(&["wait", "--for=condition=Available", "deployment/web", "-n", "app", "--timeout=30s"]));
    let stuck = k.kubectl(&["rollout", "status", "deployment/broken", "-n", "app", "--timeout=30s"]);
    assert!(!stuck.status.success() && String::from_utf8_lossy(&stuck.stderr).contains("exceeded its progress deadline"), "{stuck:?}");
    ok(&k.kubectl(&["wait", "--for=condition=Complete", "job/once", "-n", "app", "--timeout=30s"]));
    ok(&k.kubectl(&["wait", "--for=condition=Failed", "job/bad", "-n", "app", "--timeout=30s"]));
    ok(&k.kubectl(&["wait", "--for=jsonpath={.status.phase}=Bound", "pvc/data", "-n", "app", "--timeout=30s"]));

    // Immutable fields are refused, naming the field.
    let moved = k.dir.path().join("moved.yaml");
    fs_err::write(
        &moved,
        APP.replace("matchLabels: {app: web}", "matchLabels: {app: web2}").replace("labels: {app: web}\n    spec", "labels: {app: web2}\n    spec"),
    )
    .expect("manifest");
    let refused = k.kubectl(&["apply", "--server-side", "-f", &moved.to_string_lossy()]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("spec.selector") && err.contains("field is immutable"), "{err}");
}

#[test]
fn injected_faults_are_what_a_client_retries_or_reports() {
    let k = FakeKube::start();
    let control = |path: &str, body: &str| {
        let file = k.dir.path().join("control.json");
        fs_err::write(&file, body).expect("body");
        ok(&k.kubectl(&["create", "--raw", path, "-f", &file.to_string_lossy()]))
    };
    // 429 with Retry-After twice: kubectl waits and retries, and gets its answer.
    control("/fake/faults", r#"{"code": 429, "match": "GET /api/v1/namespaces/default/configmaps", "times": 2, "retry_after": 1}"#);
    let started = std::time::Instant::now();
    assert_eq!(ok(&k.kubectl(&["get", "configmaps", "-n", "default", "-o", "name"])), "");
    assert!(started.elapsed() >= std::time::Duration::from_secs(2), "it waited as asked");
    let calls = json(&k.kubectl(&["get", "--raw", "/fake/calls"]));
    assert!(calls["GET /api/v1/namespaces/default/configmaps"].as_u64() >= Some(3), "{calls}");
    // A server error is reported as the server put it.
    control("/fake/faults", r#"{"code": 500, "match": "GET /api/v1/namespaces/default/configmaps", "times": 20}"#);
    let failed = k.kubectl(&["get", "configmaps", "-n", "default", "--request-timeout=5s"]);
    assert!(!failed.status.success() && String::from_utf8_lossy(&failed.stderr).contains("injected by the test"), "{failed:?}");
}

#[test]
fn a_crd_serves_its_kind_once_established_and_deletion_honours_finalizers_and_owners() {
    let k = FakeKube::start();
    let file = |name: &str, text: &str| {
        let p = k.dir.path().join(name);
        fs_err::write(&p, text).expect("manifest");
        p.to_string_lossy().into_owned()
    };
    let crd = file(
        "crd.yaml",
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\nspec:\n  group: example.com\n  scope: Namespaced\n  names: {kind: Widget, plural: widgets, singular: widget, shortNames: [wg]}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}\n",
    );
    let widgets = file(
        "widgets.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: good}\nspec: {size: 3}\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: stuck}\nspec: {image: never-ready}\n",
    );
    ok(&k.kubectl(&["apply", "--server-side", "-f", &crd]));
    ok(&k.kubectl(&["wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=30s"]));
    ok(&k.kubectl(&["apply", "--server-side", "-f", &widgets]));
    ok(&k.kubectl(&["wait", "--for=condition=Ready", "widget/good", "--timeout=30s"]));
    ok(&k.kubectl(&["wait", "--for=condition=Stalled", "widget/stuck", "--timeout=30s"]));
    assert_eq!(ok(&k.kubectl(&["get", "wg", "-o", "name"])), "widget.example.com/good\nwidget.example.com/stuck\n");
    // Gone with its definition.
    ok(&k.kubectl(&["delete", "crd", "widgets.example.com"]));
    assert!(!k.kubectl(&["get", "widgets"]).status.success());

    // A finalizer holds an object, marked for deletion, until it is removed.
    let held = file("held.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\ndata: {a: \"1\"}\n");
    ok(&k.kubectl(&["create", "-f", &held]));
    ok(&k.kubectl(&["delete", "configmap", "held", "--wait=false"]));
    assert!(!ok(&k.kubectl(&["get", "configmap", "held", "-o", "jsonpath={.metadata.deletionTimestamp}"])).is_empty(), "marked, still there");
    ok(&k.kubectl(&["patch", "configmap", "held", "--type", "merge", "-p", r#"{"metadata":{"finalizers":null}}"#]));
    assert!(!k.kubectl(&["get", "configmap", "held"]).status.success(), "gone once its finalizer is");

    // What an object owns goes with it, unless orphaned.
    let owner = file(
        "owner.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: owner}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec: {containers: [{name: c, image: \"nginx:1\"}]}\n",
    );
    let apply_owned = |name: &str| {
        let uid = ok(&k.kubectl(&["get", "deployment", "owner", "-o", "jsonpath={.metadata.uid}"]));
        let text = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  ownerReferences: [{{apiVersion: apps/v1, kind: Deployment, name: owner, uid: \"{uid}\"}}]\n"
        );
        ok(&k.kubectl(&["apply", "--server-side", "-f", &file(&format!("{name}.yaml"), &text)]));
    };
    ok(&k.kubectl(&["create", "-f", &owner]));
    apply_owned("orphan");
    ok(&k.kubectl(&["delete", "deployment", "owner", "--cascade=orphan"]));
    assert_eq!(ok(&k.kubectl(&["get", "configmap", "orphan", "-o", "jsonpath={.metadata.ownerReferences}"])), "", "orphaned, kept");
    ok(&k.kubectl(&["create", "-f", &owner]));
    apply_owned("child");
    ok(&k.kubectl(&["delete", "deployment", "owner"]));
    assert!(!k.kubectl(&["get", "configmap", "child"]).status.success(), "deleted with its owner");
}
