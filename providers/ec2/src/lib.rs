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
mod schema;

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
        schema::schemas()
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
            kinds: schema::schemas(),
            project: config.project,
            region: get("region"),
            profile: get("profile"),
            endpoint: get("endpoint"),
            client: tokio::sync::OnceCell::new(),
        }))
    }
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

    async fn describe(&self, kind: &str, ids: &[String]) -> Result<Vec<Found>, ProviderError> {
        let c = self.client().await;
        match kind {
            "instance" => instance::describe(c, &self.project, ids).await,
            "vpc" => network::describe_vpcs(c, &self.project, ids).await,
            "subnet" => network::describe_subnets(c, &self.project, ids).await,
            "security_group" => network::describe_groups(c, &self.project, ids).await,
            "key_pair" => keypair::describe(c, &self.project, ids).await,
            other => Err(ProviderError::terminal(format!("unknown kind `ec2.{other}`"))),
        }
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
        // What the API does not report is compared with what was recorded.
        let recorded_only: &[&str] = match &*req.addr.kind {
            "instance" => &["user_data", "root_volume_size", "disable_api_termination", "health"],
            "key_pair" => &["public_key"],
            _ => &[],
        };
        let mut req = req;
        if &*req.addr.kind == "instance"
            && let Some(c) = req.config.as_mut()
        {
            instance::digest_user_data(c);
        }
        let mut planned = common::plan(schema, &req, recorded_only);
        // A new type means stop and start: the public address changes with it.
        if &*req.addr.kind == "instance"
            && planned.action == tend_provider::Action::Update
            && planned.before.get("instance_type") != planned.after.get("instance_type")
        {
            for f in ["public_ip", "public_dns"] {
                planned.after.insert(f.into(), Value::Unknown);
            }
        }
        Ok(planned)
    }

    async fn apply(&self, req: ApplyRequest) -> Result<Option<Observed>, ProviderError> {
        let c = self.client().await;
        let addr = req.addr.to_string();
        match &*req.addr.kind {
            "instance" => instance::apply(c, &self.project, &addr, &req).await,
            "vpc" => network::apply_vpc(c, &self.project, &addr, &req).await,
            "subnet" => network::apply_subnet(c, &self.project, &addr, &req).await,
            "security_group" => network::apply_group(c, &self.project, &addr, &req).await,
            "key_pair" => keypair::apply(c, &self.project, &addr, &req).await,
            other => Err(ProviderError::terminal(format!("unknown kind `ec2.{other}`"))),
        }
    }

    async fn health(&self, req: tend_provider::HealthRequest) -> Result<tend_provider::Health, ProviderError> {
        match &*req.addr.kind {
            "instance" => instance::health(&req).await,
            _ => Ok(tend_provider::Health::Ready),
        }
    }
}
