//! `ec2.key_pair`: an imported public key.

use async_trait::async_trait;
use tend_provider::{FieldSchema, FieldType, KindSchema};

use crate::common::tags;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::ResourceType;
use tend_provider::{Action, ApplyRequest, Attributes, Observed, ProviderError, Value};

use crate::Found;
use crate::common::{managed_filter, retag, sdk_err, split_tags, string, tag_spec};

/// Key pairs tagged for the project, or these ids.
pub async fn describe(c: &Client, project: &str, ids: &[String]) -> Result<Vec<Found>, ProviderError> {
    let mut req = c.describe_key_pairs();
    req = if ids.is_empty() { req.filters(managed_filter(project)) } else { req.set_key_pair_ids(Some(ids.to_vec())) };
    let out = req.send().await.map_err(|e| sdk_err("DescribeKeyPairs", &e))?;
    Ok(out
        .key_pairs()
        .iter()
        .map(|k| {
            let (_, address, tags) = split_tags(k.tags());
            let s = |v: Option<&str>| v.map_or(Value::Null, Value::from);
            let mut a = Attributes::new();
            a.insert("id".into(), s(k.key_pair_id()));
            a.insert("name".into(), s(k.key_name()));
            a.insert("fingerprint".into(), s(k.key_fingerprint()));
            a.insert("tags".into(), tags);
            Found { address, id: k.key_pair_id().unwrap_or_default().to_string(), attributes: a, order: String::new() }
        })
        .collect())
}

/// Apply one step.
pub async fn apply(c: &Client, project: &str, addr: &str, req: &ApplyRequest) -> Result<Option<Observed>, ProviderError> {
    let observed = req.observed.as_ref();
    if req.action == Action::Delete {
        if let Some(id) = observed.and_then(|o| o.id.clone()) {
            c.delete_key_pair().key_pair_id(&id).send().await.map_err(|e| sdk_err(&format!("DeleteKeyPair {id} ({addr})"), &e))?;
        }
        return Ok(None);
    }
    let config = req.config.as_ref().ok_or_else(|| ProviderError::terminal("no config to apply"))?;
    let mut a = config.clone();
    a.entry("tags".into()).or_insert_with(|| Value::Map(tend_provider::Map::new()));
    if let Some(o) = observed {
        let id = o.id.clone().unwrap_or_default();
        retag(c, &id, &o.attributes, config).await?;
        a.insert("id".into(), Value::from(id.as_str()));
        a.insert("fingerprint".into(), o.attributes.get("fingerprint").cloned().unwrap_or(Value::Null));
        return Ok(Some(Observed { id: Some(id), attributes: a }));
    }
    let name = string(config, "name").ok_or_else(|| ProviderError::terminal("`name` is not set"))?;
    let key = string(config, "public_key").ok_or_else(|| ProviderError::terminal("`public_key` is not set"))?;
    let out = c
        .import_key_pair()
        .key_name(&name)
        .public_key_material(Blob::new(key.trim().as_bytes()))
        .tag_specifications(tag_spec(ResourceType::KeyPair, project, addr, config))
        .send()
        .await
        .map_err(|e| sdk_err(&format!("ImportKeyPair {name} ({addr})"), &e))?;
    let id = out.key_pair_id().unwrap_or_default().to_string();
    a.insert("id".into(), Value::from(id.as_str()));
    a.insert("fingerprint".into(), out.key_fingerprint().map_or(Value::Null, Value::from));
    Ok(Some(Observed { id: Some(id), attributes: a }))
}

/// Schema of `ec2.key_pair`.
pub fn schema() -> KindSchema {
    KindSchema {
        kind: "key_pair",
        doc: "an imported public key",
        target: false,
        timeout: None,
        runs: false,
        fields: vec![
            FieldSchema::input("name", FieldType::String, "key pair name (default: the resource's name)").forces_replacement(),
            FieldSchema::input("public_key", FieldType::String, "OpenSSH public key, e.g. \"ssh-ed25519 AAAA…\"").required().forces_replacement(),
            tags(),
            FieldSchema::output("id", FieldType::String, "key-…"),
            FieldSchema::output("fingerprint", FieldType::String, "the key's fingerprint as EC2 reports it"),
        ],
    }
}

/// `ec2.key_pair`.
pub struct KeyPair;

#[async_trait]
impl crate::Ec2Kind for KeyPair {
    fn name(&self) -> &'static str {
        "key_pair"
    }
    fn schema(&self) -> KindSchema {
        schema()
    }
    fn recorded_only(&self) -> &'static [&'static str] {
        &["public_key"]
    }
    /// Without a `name`, the key pair is named after the resource (`ec2.key_pair.ops`: `ops`).
    fn plan(&self, schema: &KindSchema, mut req: tend_provider::PlanRequest) -> tend_provider::PlannedChange {
        if let Some(c) = req.config.as_mut() {
            c.entry("name".into()).or_insert_with(|| tend_provider::Value::from(&*req.addr.name));
        }
        crate::common::plan(schema, &req, self.recorded_only())
    }
    async fn describe(&self, c: &Client, project: &str, ids: &[String]) -> Result<Vec<Found>, ProviderError> {
        describe(c, project, ids).await
    }
    async fn apply(&self, c: &Client, project: &str, addr: &str, req: &ApplyRequest) -> Result<Option<Observed>, ProviderError> {
        let mut req = req.clone();
        if let Some(c) = req.config.as_mut() {
            c.entry("name".into()).or_insert_with(|| tend_provider::Value::from(&*req.addr.name));
        }
        apply(c, project, addr, &req).await
    }
}
