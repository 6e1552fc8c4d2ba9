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
    // (The fake serves no OpenAPI documents: client-side validation is off.)
    let applied = ok(&k.kubectl(&["apply", "--server-side", "--validate=false", "-f", &app]));
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
    let rv = web["metadata"]["resourceVersion"].clone();

    // Applying the same again changes nothing, its resourceVersion included.
    ok(&k.kubectl(&["apply", "--server-side", "--validate=false", "-f", &app]));
    assert_eq!(get(&["deployment", "web"])["metadata"]["resourceVersion"], rv);

    // Another manager setting a field to another value conflicts, naming who owns it.
    let more = write("more.yaml", &APP.replace("replicas: 2", "replicas: 3"));
    let conflict = k.kubectl(&["apply", "--server-side", "--validate=false", "--field-manager=ops", "-f", &more]);
    assert!(!conflict.status.success());
    let err = String::from_utf8_lossy(&conflict.stderr);
    assert!(err.contains("Apply failed with 1 conflict") && err.contains("conflict with \"kubectl\"") && err.contains(".spec.replicas"), "{err}");
    assert_eq!(get(&["deployment", "web"])["spec"]["replicas"].as_i64(), Some(2), "nothing applied");
    // Forced, it takes the field over; the spec changed, so the generation moves.
    ok(&k.kubectl(&["apply", "--server-side", "--validate=false", "--field-manager=ops", "--force-conflicts", "-f", &more]));
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
    ok(&k.kubectl(&["apply", "--server-side", "--validate=false", "--field-manager=ops", "--force-conflicts", "-f", &app]));
    let fewer = write("fewer.yaml", &APP.replace("  ip: 10.0.0.5", "  port: \"80\""));
    ok(&k.kubectl(&["apply", "--server-side", "--validate=false", "-f", &fewer]));
    let settings = get(&["configmap", "settings"]);
    assert_eq!(settings["data"], serde_json::json!({"ip": "10.0.0.5", "port": "80"}), "ops still applies ip");
    let ops_fewer = write("ops-fewer.yaml", &APP.replace("  ip: 10.0.0.5", "  port: \"80\""));
    ok(&k.kubectl(&["apply", "--server-side", "--validate=false", "--field-manager=ops", "-f", &ops_fewer]));
    assert_eq!(get(&["configmap", "settings"])["data"], serde_json::json!({"port": "80"}), "nobody applies ip any more");
}

#[test]
fn kubectl_lists_by_label_deletes_and_is_refused_without_the_token() {
    let k = FakeKube::start();
    let app = k.dir.path().join("app.yaml");
    fs_err::write(&app, APP).expect("manifest");
    let app = app.to_string_lossy().into_owned();
    ok(&k.kubectl(&["apply", "--server-side", "--validate=false", "-f", &app]));
    assert_eq!(ok(&k.kubectl(&["get", "cm", "-n", "app", "-l", "app=web", "-o", "name"])), "configmap/settings\n");
    assert_eq!(ok(&k.kubectl(&["get", "cm", "-n", "app", "-l", "app=db", "-o", "name"])), "");
    let in_missing_namespace = k.dir.path().join("lost.yaml");
    fs_err::write(&in_missing_namespace, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: nowhere\n").expect("manifest");
    let lost = k.kubectl(&["apply", "--server-side", "--validate=false", "-f", &in_missing_namespace.to_string_lossy()]);
    assert!(!lost.status.success() && String::from_utf8_lossy(&lost.stderr).contains("namespaces \"nowhere\" not found"), "{lost:?}");

    ok(&k.kubectl(&["delete", "deployment", "web", "-n", "app"]));
    let gone = k.kubectl(&["get", "deployment", "web", "-n", "app"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("deployments.apps \"web\" not found"), "{}", String::from_utf8_lossy(&gone.stderr));

    let config = fs_err::read_to_string(k.kubeconfig()).expect("kubeconfig");
    let wrong = config.replace(config.lines().find(|l| l.trim_start().starts_with("token:")).expect("a token"), "    token: wrong");
    let path = k.dir.path().join("wrong-token");
    fs_err::write(&path, wrong).expect("kubeconfig");
    let refused = std::process::Command::new("kubectl")
        .arg("--cache-dir")
        .arg(k.dir.path().join("kubectl-cache-wrong"))
        .args(["get", "ns"])
        .env("KUBECONFIG", &path)
        .output()
        .expect("kubectl runs");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("Unauthorized") || err.contains("must be logged in"), "{err}");
}
