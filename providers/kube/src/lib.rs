//! `tend-kube`: Kubernetes clusters and the objects of sets of manifests.
//!
//! Kinds: `kube.cluster` (a target: how to reach a cluster) and `kube.manifests` (a file or
//! directory of YAML manifests, or a kustomization). Every object of a set is an instance with
//! its own address, `kube.manifests.app[apps/Deployment/web/api]`, and its own kind
//! (`apps/v1/Deployment`); its top-level fields (`metadata`, `spec`, `data`, ...) are its config,
//! so `${...}` references work inside manifests and plans show paths such as
//! `spec.template.spec.containers[name=api].image`.
//!
//! Objects are applied by server-side apply with the field manager `tend`, labelled
//! `tend.dev/project=PROJECT`. Observation is one LIST per kind with that label; a plan compares
//! only the fields tend applies (what the server adds never shows) and asks the server for a
//! dry-run only when they differ. Deleting (pruning) touches only objects that carry the label.

mod cluster;
mod fields;
mod health;
mod manifests;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value as J, json};
use tend_provider::{
    Action, ApplyRequest, Attributes, ExpandRequest, FieldError, FieldSchema, FieldType, Health, HealthRequest, Instance, KindSchema, Observed, PlanRequest,
    PlannedChange, Provider, ProviderConfig, ProviderError, ProviderFactory, ReadItem, ReadRequest, ResourceAddr, RevertRequest, Reverted, RuntimeKind, Target,
    Value, WatchGuard, WatchRequest,
};

use crate::cluster::{Clusters, Conn};

/// The field manager tend applies as.
pub const MANAGER: &str = "tend";
/// The label every object tend applies carries: the project's name.
pub const PROJECT_LABEL: &str = "tend.dev/project";
/// The annotation naming the set an object belongs to.
pub const SET_ANNOTATION: &str = "tend.dev/set";
/// The annotation that keeps an object on the cluster when it leaves the config (`disabled`).
pub const PRUNE_ANNOTATION: &str = "tend.dev/prune";

/// Fields of a `kube.manifests` set; every other field of an instance is its object's.
const SET_FIELDS: &[&str] = &["path", "cluster", "namespace", "kustomize", "prune", "force", "allow_empty", "hash_suffix", "health", "rollback"];

/// Registers the Kubernetes provider.
#[derive(Debug, Default)]
pub struct KubeFactory;

fn cluster_schema() -> KindSchema {
    KindSchema {
        kind: "cluster",
        doc: "a Kubernetes cluster: a kubeconfig context, or a server address with its CA and credentials",
        target: true,
        timeout: None,
        runs: false,
        fields: vec![
            FieldSchema::input("kubeconfig", FieldType::String, "kubeconfig file (default: KUBECONFIG, else ~/.kube/config)"),
            FieldSchema::input("context", FieldType::String, "kubeconfig context (default: its current context)"),
            FieldSchema::input("server", FieldType::String, "API server URL, instead of a kubeconfig (may be a reference)"),
            FieldSchema::input("ca", FieldType::String, "PEM of the CA that signed the server's certificate"),
            FieldSchema::input("token", FieldType::String, "bearer token (use a secret: `${secret.NAME}`)"),
            FieldSchema::input("client_certificate", FieldType::String, "PEM client certificate"),
            FieldSchema::input("client_key", FieldType::String, "PEM client key (use a secret)"),
            FieldSchema::input("insecure", FieldType::Bool, "skip TLS verification of the server (tests only)"),
            FieldSchema::input("in_cluster", FieldType::Bool, "use the service account tend runs as inside a pod"),
            FieldSchema::input("parallelism", FieldType::Int, "most writes (applies, dry-runs, deletes) sent to this cluster at once (default 10)"),
            FieldSchema::output("server_version", FieldType::String, "the server's Kubernetes version"),
        ],
    }
}

fn manifests_schema() -> KindSchema {
    KindSchema {
        kind: "manifests",
        doc: "the objects of a file or directory of Kubernetes manifests, applied by server-side apply",
        target: false,
        timeout: None,
        runs: false,
        fields: vec![
            FieldSchema::input("path", FieldType::String, "a YAML file, or a directory of them, in the repository").required(),
            FieldSchema::input("cluster", FieldType::String, "the `kube.cluster` to apply to (default: the only one)"),
            FieldSchema::input("namespace", FieldType::String, "namespace of objects that name none (default: `default`)"),
            FieldSchema::input("kustomize", FieldType::Bool, "render the directory with `kustomize build` (else `kubectl kustomize`)"),
            FieldSchema::input("prune", FieldType::Bool, "delete objects removed from the set (default true)"),
            FieldSchema::input("force", FieldType::Bool, "take over fields another field manager owns on objects tend did not create"),
            FieldSchema::input("allow_empty", FieldType::Bool, "allow a set with no objects (deleting every object it had)"),
            FieldSchema::input(
                "health",
                FieldType::Map(Box::new(FieldType::Map(Box::new(FieldType::String)))),
                "readiness rules by kind (`Widget` or `example.com/Widget`): `ready = \"PATH=VALUE\"`, optional `failed`",
            ),
            FieldSchema::input("rollback", FieldType::String, "`auto`: an object whose change fails its readiness is put back as it was before the apply"),
            FieldSchema::input(
                "hash_suffix",
                FieldType::Bool,
                "name each ConfigMap and Secret after a hash of its content, rewriting references, so workloads roll on a change",
            ),
        ],
    }
}

impl ProviderFactory for KubeFactory {
    fn name(&self) -> &'static str {
        "kube"
    }

    fn kinds(&self) -> Vec<KindSchema> {
        vec![cluster_schema(), manifests_schema()]
    }

    fn configure(&self, config: ProviderConfig) -> Result<Box<dyn Provider>, ProviderError> {
        if let Some(k) = config.settings.keys().next() {
            return Err(ProviderError::terminal(format!("unknown setting `{k}` in [providers.kube]")).with_hint("settings go on each [kube.cluster.NAME]"));
        }
        Ok(Box::new(KubeProvider {
            kinds: self.kinds(),
            label: label_value(&config.project),
            root: config.config_root,
            clusters: Clusters::default(),
            runtime: Mutex::new(BTreeMap::new()),
            live: Mutex::new(HashMap::new()),
            created_namespaces: Mutex::new(HashMap::new()),
            claimed: Mutex::new(HashMap::new()),
        }))
    }
}

/// The project name as a label value (63 characters of `[A-Za-z0-9._-]`, alphanumeric at both
/// ends); a name that is not one is hashed.
fn label_value(project: &str) -> String {
    let ok = !project.is_empty()
        && project.len() <= 63
        && project.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && project.starts_with(|c: char| c.is_ascii_alphanumeric())
        && project.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        project.to_string()
    } else {
        use sha2::Digest;
        format!("p-{}", &hex::encode(sha2::Sha256::digest(project.as_bytes()))[..40])
    }
}

/// The Kubernetes provider for one run.
pub struct KubeProvider {
    kinds: Vec<KindSchema>,
    label: String,
    root: PathBuf,
    clusters: Clusters,
    /// Every object kind seen while expanding.
    runtime: Mutex<BTreeMap<String, RuntimeKind>>,
    /// Live objects found by `read`, by instance address, for planning them.
    live: Mutex<HashMap<String, Arc<J>>>,
    /// Namespaces each cluster's sets create, by cluster address.
    created_namespaces: Mutex<HashMap<String, Vec<String>>>,
    /// Which set declares each object of a cluster (cluster, object key) → (set, origin): two
    /// sets applying one object would fight over it.
    claimed: Mutex<HashMap<(String, String), (String, String)>>,
}

impl std::fmt::Debug for KubeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeProvider").field("label", &self.label).finish_non_exhaustive()
    }
}

/// What an instance key says: `[GROUP/]KIND/[NAMESPACE/]NAME`.
struct Key {
    namespace: Option<String>,
    name: String,
}

fn parse_key(addr: &ResourceAddr, namespaced: bool) -> Result<Key, ProviderError> {
    let key = addr.key.as_deref().ok_or_else(|| ProviderError::terminal(format!("`{addr}` has no object key")))?;
    let parts: Vec<&str> = key.rsplitn(3, '/').collect();
    match (namespaced, parts.as_slice()) {
        (true, [name, ns, ..]) => Ok(Key { namespace: Some((*ns).to_string()), name: (*name).to_string() }),
        (false, [name, ..]) => Ok(Key { namespace: None, name: (*name).to_string() }),
        _ => Err(ProviderError::terminal(format!("`{addr}`: cannot tell namespace and name from its key"))),
    }
}

/// The object's own fields of a config (the set's left out), secrets revealed.
fn object_of(config: &Attributes) -> J {
    J::Object(config.iter().filter(|(k, _)| !SET_FIELDS.contains(&k.as_str())).map(|(k, v)| (k.to_string(), v.to_json_revealed())).collect())
}

/// Whether a live object says it is not to be deleted (`tend.dev/prune: disabled`).
fn prune_disabled(live: &J) -> bool {
    live.pointer(&format!("/metadata/annotations/{}", PRUNE_ANNOTATION.replace('/', "~1"))).and_then(J::as_str) == Some("disabled")
}

/// The object a config describes, as sent: its own fields (secrets revealed), a Secret's
/// `stringData` folded into `data`, tend's label and annotations added.
fn desired(config: &Attributes, label: &str, set: &str) -> J {
    let mut body = object_of(config);
    if body.get("kind").and_then(J::as_str) == Some("Secret")
        && let Some(J::Object(sd)) = body.as_object_mut().and_then(|b| b.remove("stringData"))
    {
        use base64::Engine;
        let data = body.as_object_mut().expect("an object").entry("data").or_insert_with(|| json!({}));
        for (k, v) in sd {
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            data[k] = J::String(base64::engine::general_purpose::STANDARD.encode(text));
        }
    }
    let meta = body.as_object_mut().expect("an object").entry("metadata").or_insert_with(|| json!({}));
    meta["labels"][PROJECT_LABEL] = J::String(label.to_string());
    meta["annotations"][SET_ANNOTATION] = J::String(set.to_string());
    if config.get("prune").and_then(Value::as_bool) == Some(false) {
        meta["annotations"][PRUNE_ANNOTATION] = J::String("disabled".into());
    }
    body
}

/// Object JSON as attributes: its top-level fields, a Secret's data kept secret.
fn attributes(body: &J) -> Attributes {
    let secret = body.get("kind").and_then(J::as_str) == Some("Secret");
    let mut out = Attributes::new();
    for (k, v) in body.as_object().into_iter().flatten() {
        let v = Value::from_json(v);
        out.insert(k.as_str().into(), if secret && (k == "data" || k == "stringData") { v.sensitive() } else { v });
    }
    out
}

/// The live object as tend sees it: through the fields it applies now and applied last time.
fn seen(live: &J, want: &J, prior: Option<&Attributes>) -> J {
    let template = match prior {
        Some(p) => {
            let before = json_of(p);
            fields::union(want, &before)
        }
        None => want.clone(),
    };
    let mut out = fields::project(&template, live);
    // Identity is the key's, not a field to compare.
    if let Some(o) = out.as_object_mut() {
        o.insert("apiVersion".into(), want.get("apiVersion").cloned().unwrap_or(J::Null));
        o.insert("kind".into(), want.get("kind").cloned().unwrap_or(J::Null));
    }
    out
}

fn set_of(addr: &ResourceAddr) -> String {
    addr.base().to_string()
}

impl KubeProvider {
    fn set_cluster(req: &ExpandRequest<'_>) -> Result<ResourceAddr, FieldError> {
        let clusters: Vec<&ResourceAddr> = req.siblings.iter().map(|s| &s.addr).filter(|a| &*a.kind == "cluster").collect();
        match req.literal.get("cluster") {
            Some(Value::String(name)) => {
                let addr = ResourceAddr::new("kube", "cluster", name.as_str());
                if clusters.contains(&&addr) {
                    Ok(addr)
                } else {
                    let names: Vec<&str> = clusters.iter().map(|a| &*a.name).collect();
                    let hint = match names.iter().copied().min_by(|a, b| strsim::levenshtein(a, name).cmp(&strsim::levenshtein(b, name))) {
                        Some(n) if strsim::levenshtein(n, name) <= 2 => format!("did you mean `{n}`?"),
                        _ => format!("declare [kube.cluster.{name}]"),
                    };
                    Err(FieldError::field("cluster", format!("no cluster `{name}` is declared")).with_hint(hint))
                }
            }
            Some(Value::Unknown) => Err(FieldError::field("cluster", "`cluster` must be a literal name")),
            _ => match clusters.as_slice() {
                [one] => Ok((*one).clone()),
                [] => Err(FieldError::resource("no `kube.cluster` is declared to apply these manifests to")
                    .with_hint("declare [kube.cluster.NAME] with a kubeconfig context or a server")),
                _ => Err(FieldError::field("path", "more than one cluster is declared: say which with `cluster = \"NAME\"`")),
            },
        }
    }

    async fn expand_set(&self, req: &ExpandRequest<'_>) -> Result<Vec<Instance>, FieldError> {
        let target = Self::set_cluster(req)?;
        let Some(Value::String(path)) = req.literal.get("path") else {
            return Err(FieldError::field("path", "`path` must be a literal path in the repository"));
        };
        let dir = tend_provider::resolve_inside(req.config_root, path).map_err(|e| FieldError::field("path", e.to_string()))?;
        let namespace = req.literal.get("namespace").and_then(Value::as_str);
        let mut raw = Vec::new();
        let mut sops_macs: HashMap<String, String> = HashMap::new();
        if req.literal.get("kustomize").and_then(Value::as_bool) == Some(true) {
            let text = manifests::kustomize(&dir, path).await?;
            let shown = format!("{path} (kustomize build)");
            let docs = manifests::parse(&text, &shown)?;
            if docs.iter().any(|(v, _)| manifests::is_sops(v)) {
                return Err(FieldError::field("path", format!("{shown}: holds a SOPS-encrypted object, which tend decrypts only from a set's own files"))
                    .with_hint("keep encrypted Secrets in a set without `kustomize`"));
            }
            raw.extend(docs);
        } else {
            let files = manifests::files(&dir, req.config_root).map_err(|e| FieldError::field("path", format!("cannot read {path}: {e}")))?;
            for f in files {
                let shown = f
                    .strip_prefix(std::fs::canonicalize(req.config_root).unwrap_or_else(|_| req.config_root.to_path_buf()))
                    .unwrap_or(&f)
                    .display()
                    .to_string();
                let text = std::fs::read_to_string(&f).map_err(|e| FieldError::field("path", format!("cannot read {shown}: {e}")))?;
                let mut docs = manifests::parse(&text, &shown)?;
                if docs.iter().any(|(v, _)| manifests::is_sops(v)) {
                    if docs.len() > 1 {
                        return Err(FieldError::field("path", format!("{shown}: a SOPS-encrypted file of manifests must hold one object")));
                    }
                    let (v, origin) = &mut docs[0];
                    let mac = manifests::sops_object(v, &shown, origin, req.secret_files)?;
                    sops_macs.insert(origin.clone(), mac);
                }
                raw.extend(docs);
            }
        }
        if raw.is_empty() && req.literal.get("allow_empty").and_then(Value::as_bool) != Some(true) {
            return Err(FieldError::field("path", format!("{path} holds no objects"))
                .with_hint("a set with no objects would delete every object it had: set `allow_empty = true` if that is meant"));
        }
        let crds = manifests::crds(&raw);
        let mut objects = Vec::with_capacity(raw.len());
        let mut keys: BTreeMap<String, usize> = BTreeMap::new();
        for (v, origin) in raw {
            let mut o = manifests::object(&v, origin, namespace, &crds)?;
            o.sops_mac = sops_macs.remove(&o.origin);
            if let Some(first) = keys.get(&o.key) {
                let first: &manifests::Object = &objects[*first];
                return Err(FieldError::field("path", format!("{} `{}` is declared twice: {} and {}", o.kind, o.name, first.origin, o.origin)));
            }
            if let Some(k) = o.body.as_object().and_then(|b| b.keys().find(|k| SET_FIELDS.contains(&k.as_str()))) {
                return Err(FieldError::field("path", format!("{}: the object has a top-level field `{k}`, which tend does not support", o.origin)));
            }
            keys.insert(o.key.clone(), objects.len());
            objects.push(o);
        }
        if req.literal.get("hash_suffix").and_then(Value::as_bool) == Some(true) {
            manifests::hash_suffix(&mut objects);
            keys = objects.iter().enumerate().map(|(i, o)| (o.key.clone(), i)).collect();
        }
        {
            let mut claimed = self.claimed.lock().expect("not poisoned");
            for o in &objects {
                let here = (req.addr.to_string(), o.origin.clone());
                let first = claimed.entry((target.to_string(), o.key.clone())).or_insert_with(|| here.clone());
                if first.0 != here.0 {
                    return Err(FieldError::field(
                        "path",
                        format!("{} `{}` on {target} is declared by two sets: `{}` ({}) and `{}` ({})", o.kind, o.name, first.0, first.1, here.0, here.1),
                    )
                    .with_hint("keep each object in one set"));
                }
            }
        }
        let mut created = Vec::new();
        let mut kinds = Vec::new();
        let mut out = Vec::with_capacity(objects.len());
        for o in &objects {
            if o.kind == "Namespace" && o.api_version == "v1" {
                created.push(o.name.clone());
            }
            let doc = match crds.iter().find(|c| c.group == o.group() && c.kind == o.kind) {
                Some(c) => format!("custom resource defined in {}", c.origin),
                None => format!("Kubernetes {}", o.kind),
            };
            kinds.push(RuntimeKind { name: o.type_name(), doc, fields: Vec::new(), timeout: None });
            let mut inst = Instance::keyed(o.key.clone(), Some(target.clone()));
            inst.depends_on = manifests::needs(o, &keys, &crds).into_iter().map(|k| req.addr.with_key(Some(k))).collect();
            inst.kind = Some(o.type_name());
            inst.fields = attributes(&o.body);
            inst.origin = Some(o.origin.clone());
            out.push(inst);
        }
        self.created_namespaces.lock().expect("not poisoned").entry(target.to_string()).or_default().extend(created);
        let mut rt = self.runtime.lock().expect("not poisoned");
        for k in kinds {
            rt.entry(k.name.clone()).or_insert(k);
        }
        Ok(out)
    }

    async fn conn(&self, target: Option<&Target>) -> Result<Arc<Conn>, ProviderError> {
        let t = target.ok_or_else(|| ProviderError::terminal("an object without its cluster"))?;
        self.clusters.get(t, &self.root).await
    }

    /// Observe the objects of one cluster: one LIST per kind (all namespaces, tend's label), one
    /// more without the label for objects not seen yet (to adopt what exists already).
    async fn read_cluster(&self, conn: &Conn, items: &[&ReadItem]) -> Vec<Result<Option<Observed>, ProviderError>> {
        let mut out: Vec<Option<Result<Option<Observed>, ProviderError>>> = items.iter().map(|_| None).collect();
        let mut by_kind: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            let Some(kind) = item_kind(item) else {
                out[i] = Some(Err(ProviderError::terminal(format!("`{}`: no apiVersion/kind recorded", item.addr))));
                continue;
            };
            by_kind.entry(kind).or_default().push(i);
        }
        // Kinds defined by CRDs among these items: not served yet is not an error.
        let pending_crds: Vec<(String, String)> = items
            .iter()
            .filter(|i| i.config.is_some() && item_kind(i).is_some_and(|(_, k)| k == "CustomResourceDefinition"))
            .filter_map(|i| {
                let c = i.config.as_ref()?;
                let spec = c.get("spec")?.reveal().as_map()?;
                let group = spec.get("group")?.as_str()?.to_string();
                let kind = spec.get("names")?.as_map()?.get("kind")?.as_str()?.to_string();
                Some((group, kind))
            })
            .collect();
        for ((api_version, kind), idx) in by_kind {
            let resolved = match conn.resolve(&api_version, &kind, false).await {
                Ok(r) => r,
                Err(e) => {
                    for i in idx {
                        out[i] = Some(Err(again(&e)));
                    }
                    continue;
                }
            };
            let Some((res, caps)) = resolved else {
                let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
                let pending = pending_crds.iter().any(|(g, k)| g == group && *k == kind);
                for i in idx {
                    out[i] = Some(if pending || items[i].config.is_none() { Ok(None) } else { Err(self.unserved(conn, &api_version, &kind).await) });
                }
                continue;
            };
            let api: Api<DynamicObject> = Api::all_with(conn.client.clone(), &res);
            let selector = format!("{PROJECT_LABEL}={}", self.label);
            let mut found: HashMap<(Option<String>, String), J> = HashMap::new();
            if let Err(e) = list_into(&api, Some(&selector), &mut found).await {
                let e = conn.error(&e, &format!("listing {kind}"));
                for i in idx {
                    out[i] = Some(Err(again(&e)));
                }
                continue;
            }
            let namespaced = cluster::namespaced(&caps);
            let key_of = |i: usize| parse_key(&items[i].addr, namespaced).map(|k| (k.namespace, k.name));
            let unseen = idx.iter().any(|&i| key_of(i).is_ok_and(|k| !found.contains_key(&k)) && items[i].prior.is_none());
            if unseen && let Err(e) = list_into(&api, None, &mut found).await {
                tracing::debug!(kind, "listing unlabelled objects failed: {e}");
            }
            for i in idx {
                let item = items[i];
                out[i] = Some(key_of(i).map(|k| {
                    found.remove(&k).map(|live| {
                        let want = match (&item.config, &item.prior) {
                            (Some(c), _) => desired(c, &self.label, &set_of(&item.addr)),
                            (None, Some(p)) => json_of(&p.attributes),
                            (None, None) => J::Object(serde_json::Map::new()),
                        };
                        let view = seen(&live, &want, item.prior.as_ref().map(|p| &*p.attributes));
                        let id = live.pointer("/metadata/uid").and_then(J::as_str).map(str::to_string);
                        self.live.lock().expect("not poisoned").insert(item.addr.to_string(), Arc::new(live));
                        Observed { id, attributes: attributes(&view) }
                    })
                }));
            }
        }
        out.into_iter().map(|r| r.unwrap_or(Ok(None))).collect()
    }

    async fn unserved(&self, conn: &Conn, api_version: &str, kind: &str) -> ProviderError {
        let asked = format!("{api_version}/{kind}");
        let served = conn.kinds().await;
        let near = served.iter().min_by_key(|k| strsim::levenshtein(k, &asked)).filter(|k| strsim::levenshtein(k, &asked) <= 4);
        let e = ProviderError::terminal(format!("cluster {} does not serve `{asked}`", conn.shown));
        match near {
            Some(n) => e.with_hint(format!("did you mean `{n}`?")),
            None => e.with_hint("declare its CustomResourceDefinition in the set, or install it on the cluster"),
        }
    }

    /// The API of the object at `addr`, by its kind.
    async fn api_for(&self, conn: &Conn, api_version: &str, kind: &str, addr: &ResourceAddr) -> Result<(Api<DynamicObject>, Key), ProviderError> {
        let mut r = conn.resolve(api_version, kind, false).await?;
        if r.is_none() {
            // Its definition may have been applied since discovery was asked.
            r = conn.resolve(api_version, kind, true).await?;
        }
        let Some((res, caps)) = r else { return Err(self.unserved(conn, api_version, kind).await) };
        let key = parse_key(addr, cluster::namespaced(&caps))?;
        let api = match &key.namespace {
            Some(ns) => Api::namespaced_with(conn.client.clone(), ns, &res),
            None => Api::all_with(conn.client.clone(), &res),
        };
        Ok((api, key))
    }

    async fn server_side_apply(&self, req_addr: &ResourceAddr, body: &J, target: Option<&Target>, force: bool, dry_run: bool) -> Result<J, ProviderError> {
        let conn = self.conn(target).await?;
        let (api_version, kind) = body_kind(body).ok_or_else(|| ProviderError::terminal(format!("`{req_addr}`: the object has no apiVersion/kind")))?;
        let (api, key) = self.api_for(&conn, &api_version, &kind, req_addr).await?;
        let _permit = conn.permit().await;
        let mut pp = PatchParams::apply(MANAGER);
        pp.force = force;
        pp.dry_run = dry_run;
        let what = if dry_run { format!("dry-run of {kind} {}", key.name) } else { format!("applying {kind} {}", key.name) };
        let applied = api.patch(&key.name, &pp, &Patch::Apply(body)).await.map_err(|e| conn.error(&e, &what))?;
        serde_json::to_value(applied).map_err(|e| ProviderError::terminal(format!("{what}: {e}")))
    }

    fn plan_cluster(req: &PlanRequest) -> PlannedChange {
        let Some(config) = &req.config else {
            let mut p = PlannedChange::new(Action::Delete);
            p.before = req.prior.as_ref().map(|p| (*p.attributes).clone()).unwrap_or_default();
            return p;
        };
        let mut after = cluster_record(config);
        after.insert("server_version".into(), req.observed.as_ref().and_then(|o| o.attributes.get("server_version").cloned()).unwrap_or(Value::Unknown));
        let before = req.prior.as_ref().map(|p| (*p.attributes).clone()).unwrap_or_default();
        let action = if req.prior.is_none() {
            Action::Create
        } else if before == after {
            Action::NoOp
        } else {
            Action::Update
        };
        let mut p = PlannedChange::new(action);
        p.before = before;
        p.after = after;
        p
    }

    async fn plan_object(&self, req: PlanRequest) -> Result<PlannedChange, ProviderError> {
        let Some(config) = &req.config else {
            let Some(obs) = req.observed else { return Ok(PlannedChange::new(Action::NoOp)) };
            let mut p = PlannedChange::new(Action::Delete);
            let live = self.live.lock().expect("not poisoned").get(&req.addr.to_string()).cloned();
            if let Some(live) = live {
                if prune_disabled(&live) {
                    p.note = Some("left on the cluster: pruning is disabled for it; tend forgets it".into());
                } else if !self.labelled(&live) {
                    return Err(ProviderError::conflict(format!("`{}` is no longer in the config, but the live object does not carry tend's label {PROJECT_LABEL}={}: not deleting what tend did not create", req.addr, self.label))
                        .with_hint(format!("`tend state rm '{}'` forgets it and leaves it on the cluster", req.addr)));
                }
            }
            p.before = obs.attributes;
            return Ok(p);
        };
        let want = desired(config, &self.label, &set_of(&req.addr));
        let want_attrs = attributes(&want);
        let unknown = !want_attrs.values().all(Value::is_known);
        let Some(obs) = &req.observed else {
            self.check_namespace(&req, &want).await?;
            let mut p = PlannedChange::new(Action::Create);
            p.after = want_attrs;
            return Ok(p);
        };
        let have = json_of(&obs.attributes);
        let mut p = PlannedChange::new(Action::NoOp);
        p.after = want_attrs.clone();
        if have == want {
            p.before = want_attrs;
            return Ok(p);
        }
        if unknown {
            p.action = Action::Update;
            p.before = obs.attributes.clone();
            return Ok(p);
        }
        let force = req.prior.is_some() || config.get("force").and_then(Value::as_bool) == Some(true);
        match self.server_side_apply(&req.addr, &want, req.target.as_ref(), force, true).await {
            Ok(would) => {
                let would = seen(&would, &want, req.prior.as_ref().map(|p| &*p.attributes));
                if would == have {
                    p.before = want_attrs;
                    return Ok(p);
                }
                let before = fields::settle(&have, &would, &want);
                p.action = Action::Update;
                p.before = attributes(&before);
                let live = self.live.lock().expect("not poisoned").get(&req.addr.to_string()).cloned();
                if let Some(live) = live {
                    let mut paths = Vec::new();
                    fields::differing(&have, &would, "", &mut paths);
                    let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
                    for path in paths {
                        if let Some(m) = fields::owner_of(&live, &path, MANAGER) {
                            by.entry(m).or_default().push(path);
                        }
                    }
                    if req.prior.is_some() && !by.is_empty() {
                        let parts: Vec<String> = by.into_iter().map(|(m, ps)| format!("{} by {m}", ps.join(", "))).collect();
                        p.note = Some(format!("changed outside tend: {}", parts.join("; ")));
                    } else if req.prior.is_none() {
                        p.note = Some("exists on the cluster: tend adopts it".into());
                    }
                }
                Ok(p)
            }
            Err(e) if immutable(&e) => {
                p.action = Action::Replace { create_first: false };
                p.before = obs.attributes.clone();
                let field = immutable_field(&e.message).unwrap_or_else(|| "spec".into());
                p.note = Some(format!("the server refuses to change {field} in place (immutable)"));
                p.requires_replace = vec![field];
                Ok(p)
            }
            Err(e) => Err(e),
        }
    }

    /// A namespaced object to create needs its namespace: created by a set on the same cluster,
    /// or there already.
    async fn check_namespace(&self, req: &PlanRequest, want: &J) -> Result<(), ProviderError> {
        let Some(ns) = want.pointer("/metadata/namespace").and_then(J::as_str) else { return Ok(()) };
        let Some(target) = req.target.as_ref().filter(|t| cluster::settled(t)) else { return Ok(()) };
        if self.created_namespaces.lock().expect("not poisoned").get(&target.addr.to_string()).is_some_and(|n| n.iter().any(|n| n == ns)) {
            return Ok(());
        }
        let conn = self.conn(Some(target)).await?;
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(conn.client.clone());
        match cluster::retried(|| api.get_opt(ns)).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => {
                Err(ProviderError::terminal(format!("`{}` lives in namespace `{ns}`, which cluster {} lacks and no set creates", req.addr, conn.shown))
                    .with_hint(format!("add a Namespace `{ns}` to the set, or create it")))
            }
            Err(e) => Err(conn.error(&e, &format!("looking up namespace {ns}"))),
        }
    }

    async fn delete_object(&self, req: &ApplyRequest) -> Result<Option<Observed>, ProviderError> {
        let conn = self.conn(req.target.as_ref()).await?;
        let prior = req.prior.as_ref().map(|p| json_of(&p.attributes));
        let Some((api_version, kind)) = prior.as_ref().and_then(body_kind) else {
            return Err(ProviderError::terminal(format!("`{}`: state does not record its apiVersion/kind", req.addr)));
        };
        let (api, key) = self.api_for(&conn, &api_version, &kind, &req.addr).await?;
        let Some(live) = cluster::retried(|| api.get_opt(&key.name)).await.map_err(|e| conn.error(&e, &format!("reading {kind} {}", key.name)))? else {
            return Ok(None);
        };
        let live = serde_json::to_value(live).unwrap_or_default();
        if prune_disabled(&live) {
            tracing::info!(addr = %req.addr, "left on the cluster: pruning is disabled for it");
            return Ok(None);
        }
        if !self.labelled(&live) {
            return Err(ProviderError::conflict(format!("not deleting {kind} {}: it does not carry tend's label {PROJECT_LABEL}={}", key.name, self.label)));
        }
        let uid = live.pointer("/metadata/uid").and_then(J::as_str).map(str::to_string);
        // StatefulSet pods stay (their volumes hold data); anything else goes with its owner.
        let dp = if kind == "StatefulSet" { DeleteParams::orphan() } else { DeleteParams::background() };
        let dp = DeleteParams { preconditions: uid.clone().map(|u| kube::api::Preconditions { uid: Some(u), resource_version: None }), ..dp };
        let deleted = {
            let _permit = conn.permit().await;
            api.delete(&key.name, &dp).await
        };
        match deleted {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
            Err(e) => return Err(conn.error(&e, &format!("deleting {kind} {}", key.name))),
        }
        // Gone before this step ends (finalizers run first), so that a replacement of the same
        // name can be created.
        let started = std::time::Instant::now();
        let mut delay = std::time::Duration::from_millis(100);
        loop {
            match api.get_opt(&key.name).await {
                Ok(None) => return Ok(None),
                Ok(Some(o)) if o.metadata.uid != uid => return Ok(None),
                Ok(Some(_)) if started.elapsed() > std::time::Duration::from_mins(2) => {
                    return Err(ProviderError::transient(format!("{kind} {} is still being deleted (finalizers?)", key.name)));
                }
                Ok(Some(_)) => {}
                Err(e) => return Err(conn.error(&e, &format!("reading {kind} {}", key.name))),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_secs(2));
        }
    }
}

/// The values of a cluster recorded in state: how to reach it (secrets as secrets).
fn cluster_record(config: &Attributes) -> Attributes {
    let mut out = Attributes::new();
    for k in cluster::CONNECTION {
        if let Some(v) = config.get(k) {
            let v = if matches!(*k, "token" | "client_key") { v.clone().sensitive() } else { v.clone() };
            out.insert((*k).into(), v);
        }
    }
    out
}

/// A kind's readiness rule from config: `{ ready = "PATH=VALUE", failed = "PATH=VALUE" }`.
fn rule_of(v: &Value) -> Result<health::Rule, String> {
    let m = v.as_map().ok_or("a rule is a table: { ready = \"PATH=VALUE\", failed = \"PATH=VALUE\" }")?;
    if let Some(k) = m.keys().find(|k| !matches!(k.as_str(), "ready" | "failed")) {
        return Err(format!("unknown key `{k}` (a rule has `ready` and `failed`)"));
    }
    let test = |k: &str| m.get(k).map(|v| v.as_str().ok_or(format!("`{k}` must be a string")).and_then(health::Test::parse)).transpose();
    Ok(health::Rule { ready: test("ready")?.ok_or("a rule needs `ready`")?, failed: test("failed")? })
}

/// Attributes as one JSON object (secrets revealed: for comparing and sending only).
fn json_of(a: &Attributes) -> J {
    J::Object(a.iter().map(|(k, v)| (k.to_string(), v.to_json_revealed())).collect())
}

/// The same error again, for each of the objects it concerns.
fn again(e: &ProviderError) -> ProviderError {
    ProviderError { kind: e.kind, hint: e.hint.clone(), ..ProviderError::terminal(e.message.clone()) }
}

fn body_kind(body: &J) -> Option<(String, String)> {
    Some((body.get("apiVersion")?.as_str()?.to_string(), body.get("kind")?.as_str()?.to_string()))
}

fn item_kind(item: &ReadItem) -> Option<(String, String)> {
    let attrs = item.config.as_ref().or(item.prior.as_ref().map(|p| &*p.attributes))?;
    Some((attrs.get("apiVersion")?.as_str()?.to_string(), attrs.get("kind")?.as_str()?.to_string()))
}

async fn list_into(api: &Api<DynamicObject>, selector: Option<&str>, found: &mut HashMap<(Option<String>, String), J>) -> Result<(), kube::Error> {
    let mut lp = ListParams::default().limit(500);
    if let Some(s) = selector {
        lp = lp.labels(s);
    }
    loop {
        let page = cluster::retried(|| api.list(&lp)).await?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        for o in page.items {
            let key = (o.metadata.namespace.clone(), o.metadata.name.clone().unwrap_or_default());
            let mut v = serde_json::to_value(&o).unwrap_or_default();
            if let Some(obj) = v.as_object_mut()
                && !obj.contains_key("kind")
            {
                obj.insert("apiVersion".into(), J::String(page.types.api_version.clone()));
                obj.insert("kind".into(), J::String(page.types.kind.trim_end_matches("List").to_string()));
            }
            found.entry(key).or_insert(v);
        }
        match next {
            Some(c) => lp = lp.continue_token(&c),
            None => return Ok(()),
        }
    }
}

fn immutable(e: &ProviderError) -> bool {
    e.kind == tend_provider::ErrorKind::Terminal && (e.message.contains("immutable") || e.message.contains("may not change once set"))
}

/// The field an "is immutable" refusal names (`... is invalid: spec.selector: Invalid value: ...: field is immutable`).
fn immutable_field(message: &str) -> Option<String> {
    let before = &message[..message.find(": Invalid value")?];
    let field = before.rsplit([' ', ',', ';']).next()?.trim_matches('"');
    (!field.is_empty() && field.contains('.')).then(|| field.to_string())
}

#[async_trait]
impl Provider for KubeProvider {
    fn name(&self) -> &'static str {
        "kube"
    }

    fn kinds(&self) -> &[KindSchema] {
        &self.kinds
    }

    async fn expand(&self, req: &ExpandRequest<'_>) -> Result<Vec<Instance>, FieldError> {
        match &*req.addr.kind {
            "manifests" => self.expand_set(req).await,
            _ => Ok(vec![Instance::single()]),
        }
    }

    fn runtime_kinds(&self) -> Vec<RuntimeKind> {
        self.runtime.lock().expect("not poisoned").values().cloned().collect()
    }

    fn validate(&self, addr: &ResourceAddr, literal: &Attributes) -> Vec<FieldError> {
        let mut out = Vec::new();
        if &*addr.kind == "manifests"
            && let Some(rules) = literal.get("health").and_then(Value::as_map)
        {
            for (kind, rule) in rules {
                if let Err(e) = rule_of(rule) {
                    out.push(FieldError::field("health", format!("health.\"{kind}\": {e}")));
                }
            }
        }
        if &*addr.kind == "manifests"
            && let Some(v) = literal.get("rollback")
            && !matches!(v.as_str(), Some("auto" | "none"))
        {
            out.push(
                FieldError::field("rollback", "`rollback` is \"auto\" or \"none\"").with_hint("rollback = \"auto\" puts back an object whose rollout fails"),
            );
        }
        if &*addr.kind == "cluster" {
            let has = |k: &str| literal.get(k).is_some();
            if has("server") && (has("kubeconfig") || has("context")) {
                out.push(FieldError::field("server", "set either `server` or `kubeconfig`/`context`, not both"));
            }
            if let Some(Value::Int(n)) = literal.get("parallelism")
                && *n < 1
            {
                out.push(FieldError::field("parallelism", format!("`parallelism` must be at least 1, not {n}")));
            }
            if let Some(Value::String(s)) = literal.get("server")
                && !(s.starts_with("https://") || s.starts_with("http://"))
            {
                out.push(FieldError::field("server", format!("`{s}` is not an http(s) URL")).with_hint("e.g. https://10.0.0.5:6443"));
            }
        }
        out
    }

    async fn read(&self, req: ReadRequest) -> Vec<Result<Option<Observed>, ProviderError>> {
        let mut out: Vec<Option<Result<Option<Observed>, ProviderError>>> = req.items.iter().map(|_| None).collect();
        let mut per_cluster: BTreeMap<String, (Target, Vec<usize>)> = BTreeMap::new();
        for (i, item) in req.items.iter().enumerate() {
            if &*item.addr.kind == "cluster" {
                out[i] = Some(self.read_cluster_itself(item).await);
                continue;
            }
            match &item.target {
                Some(t) if cluster::settled(t) => per_cluster.entry(t.addr.to_string()).or_insert_with(|| (t.clone(), Vec::new())).1.push(i),
                // The cluster's address is known only after apply: nothing there yet.
                _ => out[i] = Some(Ok(None)),
            }
        }
        for (_, (target, idx)) in per_cluster {
            match self.clusters.get(&target, &self.root).await {
                Ok(conn) => {
                    let items: Vec<&ReadItem> = idx.iter().map(|&i| &req.items[i]).collect();
                    for (i, r) in idx.into_iter().zip(self.read_cluster(&conn, &items).await) {
                        out[i] = Some(r);
                    }
                }
                Err(e) => {
                    for i in idx {
                        out[i] = Some(Err(again(&e)));
                    }
                }
            }
        }
        out.into_iter().map(|r| r.unwrap_or(Ok(None))).collect()
    }

    async fn plan(&self, req: PlanRequest) -> Result<PlannedChange, ProviderError> {
        match &*req.addr.kind {
            "cluster" => Ok(Self::plan_cluster(&req)),
            _ => self.plan_object(req).await,
        }
    }

    async fn apply(&self, req: ApplyRequest) -> Result<Option<Observed>, ProviderError> {
        if &*req.addr.kind == "cluster" {
            let Some(config) = &req.config else { return Ok(None) };
            return self.observe_cluster(&req.addr, config).await.map(Some);
        }
        if req.action == Action::Delete {
            return self.delete_object(&req).await;
        }
        let config = req.config.as_ref().ok_or_else(|| ProviderError::terminal("apply without config"))?;
        let want = desired(config, &self.label, &set_of(&req.addr));
        let force = req.prior.is_some() || config.get("force").and_then(Value::as_bool) == Some(true);
        let applied = self.server_side_apply(&req.addr, &want, req.target.as_ref(), force, false).await?;
        let id = applied.pointer("/metadata/uid").and_then(J::as_str).map(str::to_string);
        self.live.lock().expect("not poisoned").insert(req.addr.to_string(), Arc::new(applied));
        Ok(Some(Observed { id, attributes: attributes(&want) }))
    }

    /// `rollback = "auto"`: an object whose update failed its readiness is applied again as it
    /// was before (what the plan observed of the fields tend applies); the engine records that
    /// and the next plan tries the new content again.
    async fn revert(&self, req: RevertRequest) -> Result<Option<Reverted>, ProviderError> {
        if &*req.addr.kind != "manifests" || req.config.get("rollback").and_then(Value::as_str) != Some("auto") {
            return Ok(None);
        }
        let Some(before) = &req.before else { return Ok(None) };
        let body = json_of(&before.attributes);
        let applied = self.server_side_apply(&req.addr, &body, req.target.as_ref(), true, false).await?;
        let id = applied.pointer("/metadata/uid").and_then(J::as_str).map(str::to_string);
        self.live.lock().expect("not poisoned").insert(req.addr.to_string(), Arc::new(applied));
        Ok(Some(Reverted {
            observed: Observed { id, attributes: attributes(&body) },
            message: "rolled back to what it was before this apply (rollback = \"auto\")".into(),
        }))
    }

    /// One watch per kind and cluster this run reached, with tend's label selector.
    async fn watch(&self, req: WatchRequest, on_drift: tend_provider::OnDrift) -> Result<Option<WatchGuard>, ProviderError> {
        let mut per: BTreeMap<(String, String, String), Vec<(ResourceAddr, J)>> = BTreeMap::new();
        for item in req.items {
            let Some(target) = item.target.as_ref().filter(|_| &*item.addr.kind == "manifests") else { continue };
            let recorded = watch::comparable(&item.recorded);
            let Some((api_version, kind)) = body_kind(&recorded) else { continue };
            per.entry((target.to_string(), api_version, kind)).or_default().push((item.addr, recorded));
        }
        let mut tasks = Vec::new();
        let selector = format!("{PROJECT_LABEL}={}", self.label);
        for ((cluster, api_version, kind), objects) in per {
            let Some(conn) = self.clusters.made(&cluster).await else { continue };
            let Some((res, caps)) = conn.resolve(&api_version, &kind, false).await? else { continue };
            let namespaced = cluster::namespaced(&caps);
            let recorded: watch::Recorded =
                objects.into_iter().filter_map(|(addr, rec)| parse_key(&addr, namespaced).ok().map(|k| ((k.namespace, k.name), (addr, rec)))).collect();
            let api: Api<DynamicObject> = Api::all_with(conn.client.clone(), &res);
            tasks.push(tokio::spawn(watch::kind(api, selector.clone(), recorded, on_drift.clone())));
        }
        Ok(Some(Box::new(watch::Watches(tasks))))
    }

    async fn health(&self, req: HealthRequest) -> Result<Health, ProviderError> {
        if &*req.addr.kind == "cluster" {
            return Ok(Health::Ready);
        }
        let body = object_of(&req.config);
        let Some((api_version, kind)) = body_kind(&body) else { return Ok(Health::Ready) };
        let conn = self.conn(req.target.as_ref()).await?;
        let (api, key) = self.api_for(&conn, &api_version, &kind, &req.addr).await?;
        let live = cluster::retried(|| api.get(&key.name)).await.map_err(|e| conn.error(&e, &format!("reading {kind} {}", key.name)))?;
        let live = serde_json::to_value(live).unwrap_or_default();
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let rules = req.config.get("health").and_then(Value::as_map);
        let rule = rules.and_then(|r| r.get(&format!("{group}/{kind}")).or_else(|| r.get(&kind))).map(rule_of).transpose().map_err(ProviderError::terminal)?;
        Ok(health::of(&kind, &live, rule.as_ref()))
    }
}

impl KubeProvider {
    async fn read_cluster_itself(&self, item: &ReadItem) -> Result<Option<Observed>, ProviderError> {
        let Some(config) = &item.config else { return Ok(None) };
        if !config.values().all(Value::is_known) {
            return Ok(None);
        }
        self.observe_cluster(&item.addr, config).await.map(Some)
    }

    /// A cluster as recorded: how to reach it, and the version it answers with.
    async fn observe_cluster(&self, addr: &ResourceAddr, config: &Attributes) -> Result<Observed, ProviderError> {
        let target = Target { addr: addr.clone(), attributes: Arc::new(config.clone()) };
        let conn = self.clusters.get(&target, &self.root).await?;
        let version = cluster::retried(|| conn.client.apiserver_version()).await.map_err(|e| conn.error(&e, "asking its version"))?;
        let mut attrs = cluster_record(config);
        attrs.insert("server_version".into(), Value::from(version.git_version));
        Ok(Observed { id: None, attributes: attrs })
    }

    /// Whether a live object carries this project's label: only those are deleted.
    fn labelled(&self, live: &J) -> bool {
        live.pointer(&format!("/metadata/labels/{}", PROJECT_LABEL.replace('/', "~1"))).and_then(J::as_str) == Some(self.label.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immutable_refusals_name_their_field() {
        let m = "dry-run of Deployment web on cluster kube.cluster.c: Deployment.apps \"web\" is invalid: spec.selector: Invalid value: {}: field is immutable (422 Invalid)";
        assert_eq!(immutable_field(m).as_deref(), Some("spec.selector"));
    }

    #[test]
    fn project_names_become_label_values() {
        assert_eq!(label_value("shop"), "shop");
        assert!(label_value("my shop!").starts_with("p-"));
    }
}
