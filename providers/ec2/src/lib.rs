//! `tend-ec2`: cloud VMs and their network on AWS EC2.
//!
//! Kinds: `ec2.vpc`, `ec2.subnet`, `ec2.security_group`, `ec2.key_pair`, `ec2.instance`.
//!
//! Ownership: everything tend creates carries the tags `tend:managed-by = PROJECT` and
//! `tend:address = ADDRESS`, set atomically at creation (`TagSpecifications`). Observation is
//! one paginated `Describe*` per kind filtered by `tend:managed-by`, indexed by `tend:address`
//! — never one call per resource; objects that were imported (recorded with an id but without
//! tend's tags) are described by id in one more call. An object tagged for an address but not
//! recorded (a crash between create and record) is observed and recorded, never duplicated.
//! Objects without tend's tags are never modified or deleted unless imported.
//!
//! Settings (`[providers.ec2]` in tend.toml): `region`, `profile`, `endpoint`; credentials come
//! from the standard AWS chain (environment, profile, SSO, instance metadata).

mod common;
mod instance;
mod keypair;
mod network;

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_ec2::Client;
use tend_provider::{
    ApplyRequest, Attributes, KindSchema, Observed, PlanRequest, PlannedChange, Provider, ProviderConfig, ProviderError, ProviderFactory, ReadItem,
    ReadRequest, Value,
};

/// Registers the EC2 provider.
#[derive(Debug, Default)]
pub struct Ec2Factory;

impl ProviderFactory for Ec2Factory {
    fn name(&self) -> &'static str {
        "ec2"
    }

    fn kinds(&self) -> Vec<KindSchema> {
        KINDS.iter().map(|k| k.schema()).collect()
    }

    fn settings(&self) -> Vec<tend_provider::FieldSchema> {
        use tend_provider::{FieldSchema, FieldType};
        vec![
            FieldSchema::input("region", FieldType::String, "AWS region (else the AWS configuration)"),
            FieldSchema::input("profile", FieldType::String, "AWS profile of ~/.aws/config"),
            FieldSchema::input("endpoint", FieldType::String, "EC2 endpoint URL (a test server)"),
        ]
    }

    fn configure(&self, config: ProviderConfig) -> Result<Box<dyn Provider>, ProviderError> {
        let s = &config.settings;
        let get = |k: &str| s.get(k).and_then(Value::as_str).map(str::to_string);
        for k in s.keys() {
            if !["region", "profile", "endpoint"].contains(&k.as_str()) {
                return Err(ProviderError::terminal(format!("unknown setting `{k}` in [providers.ec2]")).with_hint("settings: region, profile, endpoint"));
            }
        }
        Ok(Box::new(Ec2Provider {
            kinds: KINDS.iter().map(|k| k.schema()).collect(),
            project: config.project,
            region: get("region"),
            profile: get("profile"),
            endpoint: get("endpoint"),
            client: tokio::sync::OnceCell::new(),
        }))
    }
}

/// One EC2 kind: its schema, how its objects are described (all of the project's, or by id),
/// planned and applied. Adding a kind is its file, a line in [`KINDS`], and its tests.
#[async_trait]
pub(crate) trait Ec2Kind: Send + Sync {
    /// Its name in addresses (`instance` of `ec2.instance`).
    fn name(&self) -> &'static str;
    /// Its schema.
    fn schema(&self) -> KindSchema;
    /// Inputs the API does not report: compared with what was recorded.
    fn recorded_only(&self) -> &'static [&'static str] {
        &[]
    }
    /// Plan one object against its schema.
    fn plan(&self, schema: &KindSchema, req: PlanRequest) -> PlannedChange {
        common::plan(schema, &req, self.recorded_only())
    }
    /// Every live object tagged for the project (`ids` empty), or the objects with these ids.
    async fn describe(&self, c: &Client, project: &str, ids: &[String]) -> Result<Vec<Found>, ProviderError>;
    /// Carry out one step.
    async fn apply(&self, c: &Client, project: &str, addr: &str, req: &ApplyRequest) -> Result<Option<Observed>, ProviderError>;
    /// One probe of an applied object's health. Default: ready.
    async fn health(&self, _req: &tend_provider::HealthRequest) -> Result<tend_provider::Health, ProviderError> {
        Ok(tend_provider::Health::Ready)
    }
}

/// Every EC2 kind.
static KINDS: &[&dyn Ec2Kind] = &[&network::Vpc, &network::Subnet, &network::Group, &keypair::KeyPair, &instance::Vm];

fn kind(name: &str) -> Result<&'static dyn Ec2Kind, ProviderError> {
    KINDS.iter().copied().find(|k| k.name() == name).ok_or_else(|| ProviderError::terminal(format!("unknown kind `ec2.{name}`")))
}

/// The EC2 provider for one run.
pub struct Ec2Provider {
    kinds: Vec<KindSchema>,
    project: String,
    region: Option<String>,
    profile: Option<String>,
    endpoint: Option<String>,
    client: tokio::sync::OnceCell<Client>,
}

impl std::fmt::Debug for Ec2Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ec2Provider").field("project", &self.project).field("region", &self.region).field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

/// One observed object: its address tag (if any), id and attributes.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub address: Option<String>,
    pub id: String,
    pub attributes: Attributes,
    /// For instances: launch order, to prefer the newest of duplicates.
    pub order: String,
}

impl Ec2Provider {
    /// The SDK client, built once per run from the settings and the AWS credential chain.
    pub(crate) async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                let mut loader =
                    aws_config::defaults(aws_config::BehaviorVersion::latest()).retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(6));
                if let Some(r) = &self.region {
                    loader = loader.region(aws_config::Region::new(r.clone()));
                }
                if let Some(p) = &self.profile {
                    loader = loader.profile_name(p);
                }
                if let Some(e) = &self.endpoint {
                    loader = loader.endpoint_url(e);
                }
                Client::new(&loader.load().await)
            })
            .await
    }

    fn schema(&self, kind: &str) -> Result<&KindSchema, ProviderError> {
        self.kinds.iter().find(|k| k.kind == kind).ok_or_else(|| ProviderError::terminal(format!("unknown kind `ec2.{kind}`")))
    }

    async fn describe(&self, kind_name: &str, ids: &[String]) -> Result<Vec<Found>, ProviderError> {
        kind(kind_name)?.describe(self.client().await, &self.project, ids).await
    }
}

/// Pick the object for an item: the recorded id if it is still there, else the newest object
/// tagged with its address.
fn choose<'a>(item: &ReadItem, by_addr: &HashMap<String, Vec<&'a Found>>, by_id: &HashMap<String, &'a Found>) -> Option<&'a Found> {
    if let Some(id) = item.prior.as_ref().and_then(|p| p.id.as_ref())
        && let Some(f) = by_id.get(id)
    {
        return Some(f);
    }
    by_addr.get(&item.addr.to_string()).and_then(|v| v.iter().max_by(|a, b| a.order.cmp(&b.order)).copied())
}

#[async_trait]
impl Provider for Ec2Provider {
    fn name(&self) -> &'static str {
        "ec2"
    }

    fn kinds(&self) -> &[KindSchema] {
        &self.kinds
    }

    async fn read(&self, req: ReadRequest) -> Vec<Result<Option<Observed>, ProviderError>> {
        let mut by_kind: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, item) in req.items.iter().enumerate() {
            by_kind.entry(item.addr.kind.to_string()).or_default().push(i);
        }
        let mut results: Vec<Option<Result<Option<Observed>, ProviderError>>> = req.items.iter().map(|_| None).collect();
        for (kind, indices) in by_kind {
            // One paginated call per kind for everything tagged, one more for imported ids.
            let tagged = self.describe(&kind, &[]).await;
            let mut found = match tagged {
                Ok(f) => f,
                Err(e) => {
                    for i in indices {
                        results[i] = Some(Err(ProviderError { kind: e.kind, hint: e.hint.clone(), ..ProviderError::terminal(e.message.clone()) }));
                    }
                    continue;
                }
            };
            let known: std::collections::HashSet<String> = found.iter().map(|f| f.id.clone()).collect();
            let missing: Vec<String> =
                indices.iter().filter_map(|i| req.items[*i].prior.as_ref().and_then(|p| p.id.clone())).filter(|id| !known.contains(id)).collect();
            if !missing.is_empty() {
                match self.describe(&kind, &missing).await {
                    Ok(more) => found.extend(more.into_iter().filter(|f| !known.contains(&f.id))),
                    Err(e) => tracing::debug!(kind, "describing recorded ids failed: {}", e.message),
                }
            }
            let mut by_addr: HashMap<String, Vec<&Found>> = HashMap::new();
            let mut by_id: HashMap<String, &Found> = HashMap::new();
            for f in &found {
                by_id.insert(f.id.clone(), f);
                if let Some(a) = &f.address {
                    by_addr.entry(a.clone()).or_default().push(f);
                }
            }
            for i in indices {
                let item = &req.items[i];
                results[i] = Some(Ok(choose(item, &by_addr, &by_id).map(|f| Observed { id: Some(f.id.clone()), attributes: f.attributes.clone() })));
            }
        }
        results.into_iter().map(|r| r.expect("every item got a result")).collect()
    }

    async fn plan(&self, req: PlanRequest) -> Result<PlannedChange, ProviderError> {
        let schema = self.schema(&req.addr.kind)?;
        Ok(kind(&req.addr.kind)?.plan(schema, req))
    }

    async fn apply(&self, req: ApplyRequest) -> Result<Option<Observed>, ProviderError> {
        let c = self.client().await;
        kind(&req.addr.kind)?.apply(c, &self.project, &req.addr.to_string(), &req).await
    }

    async fn health(&self, req: tend_provider::HealthRequest) -> Result<tend_provider::Health, ProviderError> {
        kind(&req.addr.kind)?.health(&req).await
    }
}
