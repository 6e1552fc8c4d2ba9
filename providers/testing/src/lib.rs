//! `tend-provider-testing`: [`FakeFactory`] / `FakeProvider`, an in-memory test double of a
//! provider whose objects get ids only when created — like a cloud API — so engine tests can
//! plan "known after apply" values, replacements and failures without a server.
//!
//! It is a dev-dependency only; the real providers are tested against real servers.
//!
//! Kind `fake.thing`: `value` (in place), `immutable` (forces replacement), `fail` (apply
//! fails), `partial` (apply fails after creating: recorded tainted), `flaky = N` (apply fails
//! transiently N times, then works), `ready_after = N` (its health is "progressing" for N
//! probes after each apply), `unhealthy = "why"` (its health check fails with that message;
//! an update is reverted to what was there before); outputs `id`, `echo` (= value). Kind
//! `fake.group`: one instance per `members` entry, with the needs its fields name and its
//! `member_kind`; kind `fake.definition`: declares the kind `declares` at run time. Every
//! remote call is appended to [`FakeFactory::calls`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tend_provider::{
    Action, ApplyRequest, Attributes, ExpandRequest, FieldError, FieldSchema, FieldType, Health, HealthRequest, Instance, KindSchema, Observed, PlanRequest,
    PlannedChange, Provider, ProviderConfig, ProviderError, ProviderFactory, ReadRequest, ResourceAddr, RevertRequest, Reverted, RuntimeField, RuntimeKind,
    Value,
};

#[derive(Debug, Default)]
struct Shared {
    /// Objects by id (`fake-N` → N), each with the address it was made for: two objects of one
    /// address exist side by side during a create-before-destroy replacement, as in a cloud.
    objects: Mutex<BTreeMap<u64, (String, Observed)>>,
    calls: Mutex<Vec<String>>,
    next_id: AtomicU64,
    /// Transient failures given so far, by address (for `flaky`).
    flaked: Mutex<BTreeMap<String, i64>>,
    /// How long each `plan` call takes (a remote API's latency).
    plan_latency: Mutex<std::time::Duration>,
    /// Deletes fail (an API refusing to terminate).
    fail_deletes: std::sync::atomic::AtomicBool,
    /// Health probes since the last apply, by address (for `ready_after`).
    probes: Mutex<BTreeMap<String, i64>>,
    /// `plan` calls running now, and the most seen at once.
    planning: AtomicU64,
    most_planning: AtomicU64,
    /// How long each `apply` call takes.
    apply_latency: Mutex<std::time::Duration>,
    /// `apply` calls running now, and the most seen at once.
    applying: AtomicU64,
    most_applying: AtomicU64,
}

/// Registers the fake provider; clones share one in-memory "cloud".
#[derive(Debug, Clone, Default)]
pub struct FakeFactory {
    shared: Arc<Shared>,
}

impl FakeFactory {
    /// A fresh, empty fake cloud.
    pub fn new() -> Self {
        Self::default()
    }

    /// The remote calls made so far, e.g. `create fake.thing.a`.
    pub fn calls(&self) -> Vec<String> {
        self.shared.calls.lock().expect("fake lock").clone()
    }

    /// Objects that exist, by address.
    pub fn objects(&self) -> BTreeMap<String, Observed> {
        // The newest object of an address stands for it.
        self.shared.objects.lock().expect("fake lock").values().map(|(a, o)| (a.clone(), o.clone())).collect()
    }

    /// How many objects exist, old ones of a replacement included.
    pub fn object_count(&self) -> usize {
        self.shared.objects.lock().expect("fake lock").len()
    }

    /// Make every `plan` call take `latency`, as a call to a remote API does.
    #[must_use]
    pub fn with_plan_latency(self, latency: std::time::Duration) -> Self {
        *self.shared.plan_latency.lock().expect("fake lock") = latency;
        self
    }

    /// Make every `apply` call take `latency`.
    #[must_use]
    pub fn with_apply_latency(self, latency: std::time::Duration) -> Self {
        *self.shared.apply_latency.lock().expect("fake lock") = latency;
        self
    }

    /// The most `apply` calls that ran at the same time.
    pub fn most_concurrent_applies(&self) -> u64 {
        self.shared.most_applying.load(Ordering::SeqCst)
    }

    /// Make every delete fail (or work again).
    pub fn fail_deletes(&self, fail: bool) {
        self.shared.fail_deletes.store(fail, Ordering::SeqCst);
    }

    /// The most `plan` calls that ran at the same time.
    pub fn most_concurrent_plans(&self) -> u64 {
        self.shared.most_planning.load(Ordering::SeqCst)
    }

    /// Delete an object behind tend's back.
    pub fn vanish(&self, addr: &str) {
        self.shared.objects.lock().expect("fake lock").retain(|_, (a, _)| a != addr);
    }

    /// Change an object behind tend's back (drift).
    pub fn tamper(&self, addr: &str, field: &str, value: Value) {
        if let Some((_, o)) = self.shared.objects.lock().expect("fake lock").values_mut().rev().find(|(a, _)| a == addr) {
            o.attributes.insert(field.into(), value);
        }
    }
}

fn schema() -> KindSchema {
    KindSchema {
        kind: "thing",
        target: false,
        doc: "an in-memory object with an id assigned at creation",
        timeout: None,
        runs: false,
        fields: vec![
            FieldSchema::input("value", FieldType::String, "changed in place"),
            FieldSchema::input("immutable", FieldType::String, "forces replacement").forces_replacement(),
            FieldSchema::input("spec", FieldType::Any, "a nested table, changed in place"),
            FieldSchema::input("fail", FieldType::Bool, "apply fails"),
            FieldSchema::input("partial", FieldType::Bool, "apply fails after creating"),
            FieldSchema::input("flaky", FieldType::Int, "apply fails transiently this many times, then works"),
            FieldSchema::input("ready_after", FieldType::Int, "health probes that report progress before it is ready"),
            FieldSchema::input("unhealthy", FieldType::String, "its health check fails with this message"),
            FieldSchema::output("id", FieldType::String, "assigned at creation"),
            FieldSchema::output("echo", FieldType::String, "the value, as stored"),
        ],
    }
}

/// `fake.group`: one instance per `members` entry; `chain = true` makes each member need the one
/// before it, `cycle = true` also the first the last, `needs` names instances (or resources) of
/// other resources every member needs.
fn group_schema() -> KindSchema {
    KindSchema {
        kind: "group",
        target: false,
        doc: "instances that depend on each other, as a provider's expansion says",
        timeout: None,
        runs: false,
        fields: vec![
            FieldSchema::input("members", FieldType::List(Box::new(FieldType::String)), "one instance per entry").required(),
            FieldSchema::input("chain", FieldType::Bool, "each member needs the one before it"),
            FieldSchema::input("cycle", FieldType::Bool, "and the first needs the last"),
            FieldSchema::input("needs", FieldType::List(Box::new(FieldType::String)), "addresses every member needs"),
            FieldSchema::input("value", FieldType::String, "changed in place"),
            FieldSchema::input("member_kind", FieldType::String, "the members' own kind (a built-in one, or one a fake.definition declares)"),
            FieldSchema::input("ready_after", FieldType::Int, "health probes that report progress before a member is ready"),
            FieldSchema::output("id", FieldType::String, "assigned at creation"),
            FieldSchema::output("echo", FieldType::String, "the value, as stored"),
        ],
    }
}

/// `fake.definition`: declares a kind at run time (as a Kubernetes custom resource definition does), with
/// the readiness timeout of its instances.
fn definition_schema() -> KindSchema {
    KindSchema {
        kind: "definition",
        target: false,
        doc: "declares a kind known only at run time",
        timeout: None,
        runs: false,
        fields: vec![
            FieldSchema::input("declares", FieldType::String, "the kind's name").required(),
            FieldSchema::input("ready_within", FieldType::Int, "seconds its instances may take to become ready"),
            FieldSchema::input("immutable_fields", FieldType::List(Box::new(FieldType::String)), "paths its schema says cannot change in place"),
            FieldSchema::output("id", FieldType::String, "assigned at creation"),
            FieldSchema::output("echo", FieldType::String, "the value, as stored"),
        ],
    }
}

fn kinds() -> Vec<KindSchema> {
    vec![schema(), group_schema(), definition_schema()]
}

impl ProviderFactory for FakeFactory {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn kinds(&self) -> Vec<KindSchema> {
        kinds()
    }

    fn configure(&self, _config: ProviderConfig) -> Result<Box<dyn Provider>, ProviderError> {
        Ok(Box::new(FakeProvider { shared: self.shared.clone(), kinds: kinds(), declared: Mutex::default() }))
    }
}

/// The configured fake provider.
#[derive(Debug)]
pub struct FakeProvider {
    shared: Arc<Shared>,
    kinds: Vec<KindSchema>,
    /// Kinds the `fake.definition`s expanded so far declare.
    declared: Mutex<Vec<RuntimeKind>>,
}

fn stored(config: &Attributes) -> Attributes {
    let mut a: Attributes = ["value", "immutable", "spec"].iter().filter_map(|k| config.get(k).map(|v| ((*k).to_string(), v.clone()))).collect();
    a.insert("echo".into(), config.get("value").cloned().unwrap_or(Value::Null));
    a
}

/// Counts a call as running until dropped.
struct Running<'a>(&'a AtomicU64);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FakeProvider {
    fn log(&self, s: String) {
        self.shared.calls.lock().expect("fake lock").push(s);
    }

    fn store(&self, addr: String, obs: Observed) {
        let n = obs.id.as_deref().and_then(numeric).expect("fake ids are fake-N");
        self.shared.objects.lock().expect("fake lock").insert(n, (addr, obs));
    }
}

/// `fake-N` → N.
fn numeric(id: &str) -> Option<u64> {
    id.strip_prefix("fake-")?.parse().ok()
}

#[async_trait]
impl Provider for FakeProvider {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn kinds(&self) -> &[KindSchema] {
        &self.kinds
    }

    async fn expand(&self, req: &ExpandRequest<'_>) -> Result<Vec<Instance>, FieldError> {
        if &*req.addr.kind == "definition" {
            let name = req.literal.get("declares").and_then(Value::as_str).unwrap_or_default().to_string();
            let timeout = req.literal.get("ready_within").and_then(Value::as_i64).and_then(|s| u64::try_from(s).ok()).map(std::time::Duration::from_secs);
            let fields = req
                .literal
                .get("immutable_fields")
                .and_then(Value::as_list)
                .unwrap_or_default()
                .iter()
                .filter_map(|v| v.as_str()?.parse().ok())
                .map(|path| RuntimeField { path, ty: FieldType::Any, update: tend_provider::UpdateMode::Replace })
                .collect();
            self.declared.lock().expect("fake lock").push(RuntimeKind { name, doc: format!("declared by {}", req.addr), fields, timeout });
            return Ok(vec![Instance::single()]);
        }
        if &*req.addr.kind != "group" {
            return Ok(vec![Instance::single()]);
        }
        let member_kind = req.literal.get("member_kind").and_then(Value::as_str).map(str::to_string);
        let strings = |k: &str| -> Vec<String> {
            req.literal.get(k).and_then(Value::as_list).unwrap_or_default().iter().filter_map(Value::as_str).map(str::to_string).collect()
        };
        let flag = |k: &str| req.literal.get(k).and_then(Value::as_bool).unwrap_or(false);
        let members = strings("members");
        let needs: Vec<ResourceAddr> =
            strings("needs").iter().map(|s| s.parse().map_err(|e| FieldError::field("needs", format!("`{s}`: {e}")))).collect::<Result<_, _>>()?;
        Ok(members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let mut inst = Instance::keyed(m.clone(), None);
                inst.depends_on.clone_from(&needs);
                inst.kind.clone_from(&member_kind);
                let before = if i > 0 {
                    Some(i - 1)
                } else if flag("cycle") {
                    members.len().checked_sub(1)
                } else {
                    None
                };
                if let Some(j) = before.filter(|_| flag("chain") || flag("cycle")) {
                    inst.depends_on.push(req.addr.with_key(Some(members[j].clone())));
                }
                inst
            })
            .collect())
    }

    fn runtime_kinds(&self) -> Vec<RuntimeKind> {
        self.declared.lock().expect("fake lock").clone()
    }

    async fn read(&self, req: ReadRequest) -> Vec<Result<Option<Observed>, ProviderError>> {
        self.log(format!("read {} items", req.items.len()));
        let objects = self.shared.objects.lock().expect("fake lock");
        // By the recorded id, as a cloud API reads; an object tend has no record of is found by
        // the address it was made for (its tags).
        req.items
            .iter()
            .map(|i| {
                let addr = i.addr.to_string();
                Ok(match i.prior.as_ref().and_then(|p| p.id.as_deref()) {
                    Some(id) => numeric(id).and_then(|n| objects.get(&n)).map(|(_, o)| o.clone()),
                    None => objects.values().rev().find(|(a, _)| *a == addr).map(|(_, o)| o.clone()),
                })
            })
            .collect()
    }

    async fn plan(&self, req: PlanRequest) -> Result<PlannedChange, ProviderError> {
        let now = self.shared.planning.fetch_add(1, Ordering::SeqCst) + 1;
        self.shared.most_planning.fetch_max(now, Ordering::SeqCst);
        let latency = *self.shared.plan_latency.lock().expect("fake lock");
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        self.shared.planning.fetch_sub(1, Ordering::SeqCst);
        let before = req.observed.as_ref().map(|o| {
            let mut a = o.attributes.clone();
            a.insert("id".into(), o.id.clone().map_or(Value::Null, Value::from));
            a
        });
        let Some(config) = &req.config else {
            return Ok(PlannedChange { before: before.unwrap_or_default(), ..PlannedChange::new(Action::Delete) });
        };
        let mut after = stored(config);
        let (action, replace) = match &before {
            None => (Action::Create, vec![]),
            Some(b) if b.get("immutable") != after.get("immutable") => (Action::Replace { create_first: false }, vec!["immutable".to_string()]),
            Some(b) if ["value", "echo", "spec"].iter().any(|k| b.get(k) != after.get(k)) => (Action::Update, vec![]),
            Some(_) => (Action::NoOp, vec![]),
        };
        let keep_id = matches!(action, Action::Update | Action::NoOp);
        let id = before.as_ref().and_then(|b| b.get("id").cloned()).filter(|_| keep_id).unwrap_or(Value::Unknown);
        after.insert("id".into(), id);
        Ok(PlannedChange { action, before: before.unwrap_or_default(), after, requires_replace: replace, ..PlannedChange::new(action) })
    }

    async fn apply(&self, req: ApplyRequest) -> Result<Option<Observed>, ProviderError> {
        let now = self.shared.applying.fetch_add(1, Ordering::SeqCst) + 1;
        let _running = Running(&self.shared.applying);
        self.shared.most_applying.fetch_max(now, Ordering::SeqCst);
        let latency = *self.shared.apply_latency.lock().expect("fake lock");
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let addr = req.addr.to_string();
        let verb = match req.action {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            _ => "other",
        };
        self.log(format!("{verb} {addr}"));
        if req.action == Action::Delete {
            if self.shared.fail_deletes.load(Ordering::SeqCst) {
                return Err(ProviderError::terminal(format!("injected failure deleting {addr}")));
            }
            let id = req.observed.as_ref().and_then(|o| o.id.clone()).or_else(|| req.prior.as_ref().and_then(|p| p.id.clone()));
            let mut objects = self.shared.objects.lock().expect("fake lock");
            match id.as_deref().and_then(numeric) {
                Some(n) => {
                    objects.remove(&n);
                }
                None => objects.retain(|_, (a, _)| *a != addr),
            }
            return Ok(None);
        }
        let config = req.config.clone().unwrap_or_default();
        if let Some(n) = config.get("flaky").and_then(Value::as_i64) {
            let mut flaked = self.shared.flaked.lock().expect("fake lock");
            let given = flaked.entry(addr.clone()).or_default();
            if *given < n {
                *given += 1;
                return Err(ProviderError::transient(format!("injected transient failure {given} of {n} on {addr}")));
            }
        }
        if config.get("fail") == Some(&Value::Bool(true)) {
            return Err(ProviderError::terminal(format!("injected failure creating {addr}")).with_hint("set fail = false"));
        }
        let id = match (&req.action, req.observed.as_ref().and_then(|o| o.id.clone())) {
            (Action::Update, Some(id)) => id,
            _ => format!("fake-{}", self.shared.next_id.fetch_add(1, Ordering::SeqCst) + 1),
        };
        let mut attributes = stored(&config);
        attributes.insert("id".into(), Value::from(id.clone()));
        let obs = Observed { id: Some(id), attributes };
        if config.get("partial") == Some(&Value::Bool(true)) {
            let mut e = ProviderError::terminal(format!("injected failure after creating {addr}"));
            e.partial = Some(Box::new(obs.clone()));
            self.store(addr, obs);
            return Err(e);
        }
        self.shared.probes.lock().expect("fake lock").remove(&addr);
        self.store(addr, obs.clone());
        Ok(Some(obs))
    }

    async fn health(&self, req: HealthRequest) -> Result<Health, ProviderError> {
        let addr = req.addr.to_string();
        self.log(format!("health {addr}"));
        if let Some(why) = req.config.get("unhealthy").and_then(Value::as_str) {
            return Ok(Health::Failed { message: why.to_string(), hint: Some(format!("unset `unhealthy` of {addr}")) });
        }
        let wanted = req.config.get("ready_after").and_then(Value::as_i64).unwrap_or(0);
        let mut probes = self.shared.probes.lock().expect("fake lock");
        let seen = probes.entry(addr).or_default();
        if *seen < wanted {
            *seen += 1;
            return Ok(Health::Progressing { message: format!("{seen}/{wanted} probes") });
        }
        Ok(Health::Ready)
    }

    async fn revert(&self, req: RevertRequest) -> Result<Option<Reverted>, ProviderError> {
        let addr = req.addr.to_string();
        self.log(format!("revert {addr}"));
        let Some(before) = req.before else { return Ok(None) };
        self.store(addr, before.clone());
        Ok(Some(Reverted { observed: before, message: "put back what was there before".into() }))
    }
}
