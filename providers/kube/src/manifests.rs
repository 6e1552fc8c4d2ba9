//! Reading a set of manifests: files of multi-document YAML (or a kustomization rendered by
//! `kustomize build`), each object checked and given its address key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value as J;
use tend_provider::FieldError;

/// One object of a set, as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Object {
    /// Its instance key: `[GROUP/]KIND/[NAMESPACE/]NAME` (`apps/Deployment/web/api`).
    pub key: String,
    /// `apps/v1`.
    pub api_version: String,
    /// `Deployment`.
    pub kind: String,
    /// Its namespace (the set's `namespace`, else `default`, for a namespaced object without one).
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
    /// The whole object.
    pub body: J,
    /// `k8s/app/web.yaml:12`.
    pub origin: String,
    /// The MAC of the SOPS file it was encrypted in: what its content hash covers, since its
    /// fields are references to the decrypted file.
    pub sops_mac: Option<String>,
}

impl Object {
    /// The API group (`""` for the core group).
    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(g, _)| g)
    }

    /// The instance kind the engine knows it by: `apps/v1/Deployment`, `v1/ConfigMap`.
    pub fn type_name(&self) -> String {
        format!("{}/{}", self.api_version, self.kind)
    }
}

/// Kinds served cluster-wide (no namespace), of the built-in API groups.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "RuntimeClass",
    "CSIDriver",
    "CSINode",
    "VolumeAttachment",
    "APIService",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "CertificateSigningRequest",
    "FlowSchema",
    "PriorityLevelConfiguration",
];

/// Whether objects of `kind` have no namespace: a built-in cluster-wide kind, or a custom kind
/// whose definition in the same set says `scope: Cluster`.
pub(crate) fn cluster_scoped(group: &str, kind: &str, crds: &[Crd]) -> bool {
    if let Some(c) = crds.iter().find(|c| c.group == group && c.kind == kind) {
        return c.cluster_scoped;
    }
    CLUSTER_SCOPED.contains(&kind) && (group.is_empty() || group.ends_with("k8s.io"))
}

/// A `CustomResourceDefinition` found in a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Crd {
    pub group: String,
    pub kind: String,
    pub plural: String,
    pub versions: Vec<String>,
    pub cluster_scoped: bool,
    /// The definition's own instance key.
    pub key: String,
    pub origin: String,
}

/// The files of a set: the file `path` names, or every `.yaml`, `.yml` and `.json` file under the
/// directory, in path order (hidden files and `kustomization.yaml` left out). A symbolic link to
/// a file inside the repository (`root`) is read; any other link is an error, never skipped: a
/// skipped file's objects would be pruned.
pub(crate) fn files(dir: &Path, root: &Path) -> std::io::Result<Vec<PathBuf>> {
    if dir.is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let mut ty = e.file_type()?;
            if ty.is_symlink() {
                let shown = e.path().strip_prefix(root).unwrap_or(&e.path()).display().to_string();
                let to =
                    std::fs::canonicalize(e.path()).map_err(|err| std::io::Error::other(format!("{shown} is a symbolic link that leads nowhere ({err})")))?;
                let root = std::fs::canonicalize(root)?;
                if !to.starts_with(&root) {
                    return Err(std::io::Error::other(format!("{shown} is a symbolic link to {}, outside the repository", to.display())));
                }
                ty = std::fs::metadata(&to)?.file_type();
                if ty.is_dir() {
                    return Err(std::io::Error::other(format!("{shown} is a symbolic link to a directory, which tend does not follow")));
                }
            }
            if ty.is_dir() {
                stack.push(e.path());
            } else if ty.is_file()
                && ["yaml", "yml", "json"].iter().any(|x| name.ends_with(&format!(".{x}")))
                && !matches!(&*name, "kustomization.yaml" | "kustomization.yml" | "Kustomization")
            {
                out.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Split YAML text into its documents, each with the line it starts on (1-based).
pub(crate) fn documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut cur = String::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        if line == "---" || line.starts_with("--- ") || line == "..." {
            docs.push((start, std::mem::take(&mut cur)));
            start = i + 2;
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
    }
    docs.push((start, cur));
    docs.into_iter().filter(|(_, d)| d.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))).collect()
}

/// Parse one file's objects. `shown` is how messages name the file.
pub(crate) fn parse(text: &str, shown: &str) -> Result<Vec<(J, String)>, FieldError> {
    let mut out = Vec::new();
    for (line, doc) in documents(text) {
        let v: J = serde_saphyr::from_str(&doc).map_err(|e| {
            let at = e.location().map_or(line, |l| line + usize::try_from(l.line()).unwrap_or(1) - 1);
            let msg = e.to_string();
            let msg = msg.lines().next().unwrap_or("").to_string();
            FieldError::field("path", format!("{shown}:{at}: malformed YAML: {msg}"))
        })?;
        let origin = format!("{shown}:{line}");
        match v {
            J::Null => {}
            // A `List` (what `kubectl get -o yaml` writes) holds its objects in `items`.
            J::Object(ref o) if o.get("kind").and_then(J::as_str).is_some_and(|k| k.ends_with("List")) && o.get("items").is_some_and(J::is_array) => {
                for item in o["items"].as_array().into_iter().flatten() {
                    out.push((item.clone(), origin.clone()));
                }
            }
            v => out.push((v, origin)),
        }
    }
    Ok(out)
}

/// Whether a value holds a value SOPS encrypted (`ENC[AES256_GCM,...]`).
fn encrypted(v: &J) -> bool {
    match v {
        J::String(s) => s.starts_with("ENC["),
        J::Array(a) => a.iter().any(encrypted),
        J::Object(m) => m.values().any(encrypted),
        _ => false,
    }
}

/// Whether a parsed document is encrypted with SOPS (it has the `sops` metadata).
pub(crate) fn is_sops(v: &J) -> bool {
    v.get("sops").and_then(|m| m.get("mac")).is_some()
}

/// A SOPS-encrypted manifest (Flux style: `sops --encrypt --encrypted-regex
/// '^(data|stringData)$'`), the only document of `file`: each top-level field holding encrypted
/// values becomes a reference to that field of the secret declaring the file
/// (`data = "${secret.db.data}"`), so it is decrypted in memory where it is used and never
/// written anywhere; its identity must be in the clear. Returns the file's MAC.
pub(crate) fn sops_object(v: &mut J, file: &str, origin: &str, secret_files: &[(String, String)]) -> Result<String, FieldError> {
    let bad = |what: String| FieldError::field("path", format!("{origin}: {what}"));
    let same = |a: &str| Path::new(a.trim_start_matches("./")) == Path::new(file);
    let Some((name, _)) = secret_files.iter().find(|(_, f)| same(f)) else {
        return Err(bad("the manifest is encrypted with SOPS, and no secret declares its file".into())
            .with_hint(format!("declare it, and tend decrypts it in memory where it is used: [secret.NAME]\nfile = \"{file}\"")));
    };
    let mac = v.pointer("/sops/mac").and_then(J::as_str).unwrap_or_default().to_string();
    let Some(o) = v.as_object_mut() else { return Err(bad("a manifest must be a table".into())) };
    o.remove("sops");
    for identity in ["apiVersion", "kind", "metadata"] {
        if o.get(identity).is_some_and(encrypted) {
            return Err(bad(format!("`{identity}` is encrypted: tend needs the object's identity in the clear"))
                .with_hint("encrypt only the data: sops --encrypt --encrypted-regex '^(data|stringData)$'"));
        }
    }
    for (field, value) in o.iter_mut() {
        if encrypted(value) {
            *value = J::String(format!("${{secret.{name}.{field}}}"));
        }
    }
    Ok(mac)
}

/// Check one object and give it its key; `namespace` is the set's default.
pub(crate) fn object(v: &J, origin: String, namespace: Option<&str>, crds: &[Crd]) -> Result<Object, FieldError> {
    let bad = |what: &str| FieldError::field("path", format!("{origin}: {what}"));
    let J::Object(o) = v else {
        return Err(bad("a manifest must be a table with apiVersion, kind and metadata.name"));
    };
    let api_version = o.get("apiVersion").and_then(J::as_str).filter(|s| !s.is_empty()).ok_or_else(|| bad("the object has no `apiVersion`"))?.to_string();
    let kind = o.get("kind").and_then(J::as_str).filter(|s| !s.is_empty()).ok_or_else(|| bad("the object has no `kind`"))?.to_string();
    let meta = o.get("metadata").and_then(J::as_object).ok_or_else(|| bad(&format!("the {kind} has no `metadata`")))?;
    if meta.contains_key("generateName") && !meta.contains_key("name") {
        return Err(bad(&format!("the {kind} has `metadata.generateName` but no `metadata.name`: tend tracks objects by name")));
    }
    if let Some(n) = meta.get("name").filter(|n| !n.is_string() && !n.is_null()) {
        return Err(bad(&format!("the {kind}'s `metadata.name` is {n}, not a string: quote it (YAML reads y, no, on, 1.0 as other types)")));
    }
    let name = meta.get("name").and_then(J::as_str).filter(|s| !s.is_empty()).ok_or_else(|| bad(&format!("the {kind} has no `metadata.name`")))?.to_string();
    if name.contains('/') || name.contains('[') || name.contains(']') {
        return Err(bad(&format!("`{name}` is not a valid object name")));
    }
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g).to_string();
    let mut body = v.clone();
    let namespace = if cluster_scoped(&group, &kind, crds) {
        if let Some(ns) = meta.get("namespace").and_then(J::as_str) {
            return Err(bad(&format!("the {kind} `{name}` is cluster-wide but names namespace `{ns}`")));
        }
        None
    } else {
        let ns = meta.get("namespace").and_then(J::as_str).map(str::to_string).or_else(|| namespace.map(str::to_string)).unwrap_or_else(|| "default".into());
        body["metadata"]["namespace"] = J::String(ns.clone());
        Some(ns)
    };
    let mut key = String::new();
    if !group.is_empty() {
        key.push_str(&group);
        key.push('/');
    }
    key.push_str(&kind);
    key.push('/');
    if let Some(ns) = &namespace {
        key.push_str(ns);
        key.push('/');
    }
    key.push_str(&name);
    Ok(Object { key, api_version, kind, namespace, name, body, origin, sops_mac: None })
}

/// The definitions of custom kinds among raw objects.
pub(crate) fn crds(raw: &[(J, String)]) -> Vec<Crd> {
    raw.iter()
        .filter(|(v, _)| v.get("kind").and_then(J::as_str) == Some("CustomResourceDefinition"))
        .filter_map(|(v, origin)| {
            let spec = v.get("spec")?;
            let names = spec.get("names")?;
            let name = v.pointer("/metadata/name")?.as_str()?;
            Some(Crd {
                group: spec.get("group")?.as_str()?.to_string(),
                kind: names.get("kind")?.as_str()?.to_string(),
                plural: names.get("plural")?.as_str()?.to_string(),
                versions: spec
                    .get("versions")
                    .and_then(J::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x.get("name")?.as_str().map(str::to_string))
                    .collect(),
                cluster_scoped: spec.get("scope").and_then(J::as_str) == Some("Cluster"),
                key: format!("apiextensions.k8s.io/CustomResourceDefinition/{name}"),
                origin: origin.clone(),
            })
        })
        .collect()
}

/// Render a kustomization directory with the `kustomize` binary, else `kubectl kustomize`.
pub(crate) async fn kustomize(dir: &Path, shown: &str) -> Result<String, FieldError> {
    let candidates: [(&str, &[&str]); 2] = [("kustomize", &["build"]), ("kubectl", &["kustomize"])];
    let mut missing = Vec::new();
    for (bin, args) in candidates {
        let out = tokio::process::Command::new(bin).args(args).arg(dir).kill_on_drop(true).output().await;
        match out {
            Ok(o) if o.status.success() => {
                return String::from_utf8(o.stdout).map_err(|_| FieldError::field("path", format!("{shown}: `{bin}` wrote output that is not UTF-8")));
            }
            Ok(o) => {
                let err = String::from_utf8_lossy(&o.stderr);
                return Err(FieldError::field("path", format!("{shown}: `{bin} {}` failed: {}", args.join(" "), err.trim())));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing.push(bin),
            Err(e) => return Err(FieldError::field("path", format!("{shown}: cannot run `{bin}`: {e}"))),
        }
    }
    Err(FieldError::field("path", format!("{shown}: `kustomize = true` needs `kustomize` or `kubectl` on PATH; neither was found"))
        .with_hint("install kustomize (or kubectl, which embeds it), or render the manifests into the repository"))
}

/// What each object needs first inside its set: the Namespace it lives in, the definition of
/// its custom kind, and the objects a workload names (its service account, config maps, secrets
/// and claims). Keys of the same set.
pub(crate) fn needs(obj: &Object, keys: &BTreeMap<String, usize>, crds: &[Crd]) -> Vec<String> {
    let mut out = Vec::new();
    let mut want = |key: String| {
        if key != obj.key && keys.contains_key(&key) && !out.contains(&key) {
            out.push(key);
        }
    };
    if let Some(ns) = &obj.namespace {
        want(format!("Namespace/{ns}"));
    }
    if let Some(c) = crds.iter().find(|c| c.group == obj.group() && c.kind == obj.kind) {
        want(c.key.clone());
    }
    // A binding after the role it grants and the service accounts it grants it to.
    if obj.group() == "rbac.authorization.k8s.io" && matches!(obj.kind.as_str(), "RoleBinding" | "ClusterRoleBinding") {
        let role = |k: &str| obj.body.pointer(&format!("/roleRef/{k}")).and_then(J::as_str);
        match (role("kind"), role("name"), &obj.namespace) {
            (Some("ClusterRole"), Some(n), _) => want(format!("rbac.authorization.k8s.io/ClusterRole/{n}")),
            (Some("Role"), Some(n), Some(ns)) => want(format!("rbac.authorization.k8s.io/Role/{ns}/{n}")),
            _ => {}
        }
        for subject in obj.body.get("subjects").and_then(J::as_array).into_iter().flatten() {
            let field = |k: &str| subject.get(k).and_then(J::as_str);
            if let (Some("ServiceAccount"), Some(n)) = (field("kind"), field("name"))
                && let Some(ns) = field("namespace").or(obj.namespace.as_deref())
            {
                want(format!("ServiceAccount/{ns}/{n}"));
            }
        }
    }
    let Some(ns) = &obj.namespace else { return out };
    for (kind, at) in references(&obj.kind, &obj.body) {
        if let Some(n) = obj.body.pointer(&at).and_then(J::as_str) {
            want(format!("{kind}/{ns}/{n}"));
        }
    }
    out
}

/// Where an object names other objects of its namespace: the kind named and a JSON pointer to
/// the name — in a workload's pod template its service account, config maps and secrets in
/// volumes, projected volumes, `envFrom` and `env`, image pull secrets and claims; an Ingress's
/// TLS secrets; a `ServiceAccount`'s secrets.
pub(crate) fn references(kind: &str, body: &J) -> Vec<(&'static str, String)> {
    let count = |at: &str| body.pointer(at).and_then(J::as_array).map_or(0, Vec::len);
    let named = |at: String| body.pointer(&at).is_some_and(J::is_string).then_some(("Secret", at));
    // Outside pod templates: an Ingress's TLS secrets, a ServiceAccount's secrets.
    let others: Vec<(&'static str, String)> = match kind {
        "Ingress" => (0..count("/spec/tls")).filter_map(|i| named(format!("/spec/tls/{i}/secretName"))).collect(),
        "ServiceAccount" => (0..count("/imagePullSecrets"))
            .filter_map(|i| named(format!("/imagePullSecrets/{i}/name")))
            .chain((0..count("/secrets")).filter_map(|i| named(format!("/secrets/{i}/name"))))
            .collect(),
        _ => Vec::new(),
    };
    let pod_at = match kind {
        "Pod" => "/spec",
        "CronJob" => "/spec/jobTemplate/spec/template/spec",
        _ => "/spec/template/spec",
    };
    let Some(pod) = body.pointer(pod_at) else { return others };
    let mut out = Vec::new();
    let mut at = |kind: &'static str, v: &J, path: String| {
        if v.pointer(&path).is_some_and(J::is_string) {
            out.push((kind, path));
        }
    };
    at("ServiceAccount", pod, "/serviceAccountName".into());
    let items = |v: &J, key: &str| v.get(key).and_then(J::as_array).map_or(0, Vec::len);
    for i in 0..items(pod, "imagePullSecrets") {
        at("Secret", pod, format!("/imagePullSecrets/{i}/name"));
    }
    for i in 0..items(pod, "volumes") {
        at("ConfigMap", pod, format!("/volumes/{i}/configMap/name"));
        at("Secret", pod, format!("/volumes/{i}/secret/secretName"));
        at("PersistentVolumeClaim", pod, format!("/volumes/{i}/persistentVolumeClaim/claimName"));
        let projected = pod.pointer(&format!("/volumes/{i}/projected")).map_or(0, |p| items(p, "sources"));
        for j in 0..projected {
            at("ConfigMap", pod, format!("/volumes/{i}/projected/sources/{j}/configMap/name"));
            at("Secret", pod, format!("/volumes/{i}/projected/sources/{j}/secret/name"));
        }
    }
    for list in ["containers", "initContainers"] {
        for c in 0..items(pod, list) {
            let container = &pod[list][c];
            for e in 0..items(container, "envFrom") {
                at("ConfigMap", pod, format!("/{list}/{c}/envFrom/{e}/configMapRef/name"));
                at("Secret", pod, format!("/{list}/{c}/envFrom/{e}/secretRef/name"));
            }
            for e in 0..items(container, "env") {
                at("ConfigMap", pod, format!("/{list}/{c}/env/{e}/valueFrom/configMapKeyRef/name"));
                at("Secret", pod, format!("/{list}/{c}/env/{e}/valueFrom/secretKeyRef/name"));
            }
        }
    }
    others.into_iter().chain(out.into_iter().map(|(k, p)| (k, format!("{pod_at}{p}")))).collect()
}

/// `hash_suffix = true`: every `ConfigMap` and `Secret` of the set is named `NAME-HASH`, the hash of
/// its content as written, and every reference to it in the set's pod templates is rewritten.
/// A change of content is then a new object: the workloads roll to it, and the old one is
/// pruned after them.
pub(crate) fn hash_suffix(objects: &mut [Object]) {
    use sha2::Digest;
    let mut renamed: BTreeMap<(&'static str, String, String), String> = BTreeMap::new();
    for o in objects.iter_mut() {
        let kind: &'static str = match (o.api_version.as_str(), o.kind.as_str()) {
            ("v1", "ConfigMap") => "ConfigMap",
            ("v1", "Secret") => "Secret",
            _ => continue,
        };
        let content: serde_json::Map<String, J> =
            ["data", "binaryData", "stringData", "type", "immutable"].iter().filter_map(|k| Some(((*k).to_string(), canonical(o.body.get(*k)?)))).collect();
        let digest = sha2::Sha256::digest(format!("{kind}\n{}\n{}\n{}", o.name, J::Object(content), o.sops_mac.as_deref().unwrap_or("")).as_bytes());
        let new = format!("{}-{}", o.name, &hex::encode(digest)[..10]);
        let ns = o.namespace.clone().unwrap_or_default();
        renamed.insert((kind, ns, o.name.clone()), new.clone());
        o.body["metadata"]["name"] = J::String(new.clone());
        o.key = format!("{}{new}", o.key.strip_suffix(o.name.as_str()).unwrap_or_default());
        o.name = new;
    }
    if renamed.is_empty() {
        return;
    }
    for o in objects.iter_mut() {
        let Some(ns) = o.namespace.clone() else { continue };
        for (kind, at) in references(&o.kind, &o.body) {
            if let Some(v) = o.body.pointer_mut(&at)
                && let Some(new) = v.as_str().and_then(|n| renamed.get(&(kind, ns.clone(), n.to_string())))
            {
                *v = J::String(new.clone());
            }
        }
    }
}

/// A JSON value with the keys of every object in order, for hashing.
fn canonical(v: &J) -> J {
    match v {
        J::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            J::Object(keys.into_iter().map(|k| (k.clone(), canonical(&m[k]))).collect())
        }
        J::Array(a) => J::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_their_first_line() {
        let text = "a: 1\n---\n# comment only\n---\nb: 2\nc: 3\n";
        let docs = documents(text);
        assert_eq!(docs.iter().map(|(l, _)| *l).collect::<Vec<_>>(), vec![1, 5]);
    }

    #[test]
    fn objects_get_keys_and_namespaces() {
        let raw = parse(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n",
            "k8s/a.yaml",
        )
        .unwrap();
        let objs: Vec<Object> = raw.into_iter().map(|(v, o)| object(&v, o, Some("web"), &[]).unwrap()).collect();
        assert_eq!(objs[0].key, "apps/Deployment/web/api");
        assert_eq!(objs[0].body["metadata"]["namespace"], "web");
        assert_eq!(objs[1].key, "Namespace/web");
        assert_eq!(objs[1].origin, "k8s/a.yaml:6");
    }

    #[test]
    fn hash_suffixes_rename_config_and_secrets_and_every_reference_to_them() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: b}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: pw}\nstringData: {p: q}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api}\nspec:\n  template:\n    spec:\n      volumes:\n      - {name: c, configMap: {name: cfg}}\n      - {name: o, configMap: {name: other}}\n      containers:\n      - name: api\n        envFrom:\n        - secretRef: {name: pw}\n        env:\n        - name: X\n          valueFrom: {configMapKeyRef: {name: cfg, key: a}}\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec:\n  tls:\n  - {hosts: [a.example], secretName: pw}\n";
        let build = |text: &str| {
            let mut objs: Vec<Object> = parse(text, "k8s/a.yaml").unwrap().into_iter().map(|(v, o)| object(&v, o, Some("web"), &[]).unwrap()).collect();
            hash_suffix(&mut objs);
            objs
        };
        let objs = build(text);
        let cfg = &objs[0].name;
        assert!(cfg.starts_with("cfg-") && cfg.len() == 14, "{cfg}");
        assert_eq!(objs[0].key, format!("ConfigMap/web/{cfg}"));
        assert_eq!(objs[0].body["metadata"]["name"], J::String(cfg.clone()));
        let pod = &objs[2].body["spec"]["template"]["spec"];
        assert_eq!(pod["volumes"][0]["configMap"]["name"], J::String(cfg.clone()));
        assert_eq!(pod["volumes"][1]["configMap"]["name"], "other", "not of the set: left alone");
        assert_eq!(pod["containers"][0]["envFrom"][0]["secretRef"]["name"], J::String(objs[1].name.clone()));
        assert_eq!(pod["containers"][0]["env"][0]["valueFrom"]["configMapKeyRef"]["name"], J::String(cfg.clone()));
        assert_eq!(objs[3].body["spec"]["tls"][0]["secretName"], J::String(objs[1].name.clone()), "an Ingress's TLS secret too");
        assert_eq!(objs[2].name, "api");
        // The same content keeps its name; new content gets a new one.
        assert_eq!(build(text)[0].name, *cfg);
        assert_ne!(build(&text.replace("{a: b}", "{a: c}"))[0].name, *cfg);
    }

    #[test]
    fn bindings_come_after_their_roles_and_service_accounts() {
        let text = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: reader}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: bot}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: bot-reads}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}\nsubjects:\n- {kind: ServiceAccount, name: bot, namespace: web}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: edit}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: bot-edits}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: edit}\nsubjects:\n- {kind: ServiceAccount, name: bot}\n";
        let objs: Vec<Object> = parse(text, "k8s/rbac.yaml").unwrap().into_iter().map(|(v, o)| object(&v, o, Some("web"), &[]).unwrap()).collect();
        let keys: BTreeMap<String, usize> = objs.iter().enumerate().map(|(i, o)| (o.key.clone(), i)).collect();
        assert_eq!(needs(&objs[2], &keys, &[]), ["rbac.authorization.k8s.io/ClusterRole/reader", "ServiceAccount/web/bot"]);
        assert_eq!(needs(&objs[4], &keys, &[]), ["rbac.authorization.k8s.io/Role/web/edit", "ServiceAccount/web/bot"]);
    }

    #[test]
    fn bad_objects_are_named_by_file_and_line() {
        let raw = parse("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", "k8s/a.yaml").unwrap();
        let e = object(&raw[0].0, raw[0].1.clone(), None, &[]).unwrap_err();
        assert_eq!(e.message, "k8s/a.yaml:1: the ConfigMap has no `metadata.name`");
        let e = parse("a: 1\n---\nb: [1,\n", "k8s/b.yaml").unwrap_err();
        assert!(e.message.starts_with("k8s/b.yaml:3: malformed YAML"), "{}", e.message);
    }
}
