//! What every kind shares: tags, error mapping, the generic plan.

use std::collections::BTreeMap;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use tend_provider::{Action, Attributes, KindSchema, PlanRequest, PlannedChange, ProviderError, UpdateMode, Value};

/// Tag naming the project that created an object.
pub const MANAGED_BY: &str = "tend:managed-by";
/// Tag naming the instance address an object belongs to.
pub const ADDRESS: &str = "tend:address";

/// `tag:tend:managed-by = project`.
pub fn managed_filter(project: &str) -> Filter {
    Filter::builder().name(format!("tag:{MANAGED_BY}")).values(project).build()
}

/// The user's tags plus tend's ownership tags, for creation.
pub fn tag_spec(kind: ResourceType, project: &str, addr: &str, config: &Attributes) -> TagSpecification {
    let mut b = TagSpecification::builder().resource_type(kind);
    for (k, v) in user_tags(config) {
        b = b.tags(Tag::builder().key(k).value(v).build());
    }
    b.tags(Tag::builder().key(MANAGED_BY).value(project).build()).tags(Tag::builder().key(ADDRESS).value(addr).build()).build()
}

/// The `tags` field of config as strings.
pub fn user_tags(config: &Attributes) -> BTreeMap<String, String> {
    config
        .get("tags")
        .and_then(Value::as_map)
        .map(|m| m.iter().map(|(k, v)| (k.to_string(), v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect())
        .unwrap_or_default()
}

/// Observed tags: tend's own split from the user's.
pub fn split_tags(tags: &[Tag]) -> (Option<String>, Option<String>, Value) {
    let mut user = tend_provider::Map::new();
    let (mut managed, mut addr) = (None, None);
    for t in tags {
        let (Some(k), v) = (t.key(), t.value().unwrap_or_default()) else { continue };
        match k {
            MANAGED_BY => managed = Some(v.to_string()),
            ADDRESS => addr = Some(v.to_string()),
            _ => {
                user.insert(k.into(), Value::from(v));
            }
        }
    }
    (managed, addr, Value::Map(user))
}

/// An SDK error as a provider error naming what failed.
pub fn sdk_err<E>(what: &str, e: &aws_sdk_ec2::error::SdkError<E>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let code = e.code().unwrap_or_default().to_string();
    let msg = e.message().map_or_else(|| aws_sdk_ec2::error::DisplayErrorContext(e).to_string(), str::to_string);
    let transient = matches!(e, aws_sdk_ec2::error::SdkError::TimeoutError(_) | aws_sdk_ec2::error::SdkError::DispatchFailure(_))
        || code.contains("Throttl")
        || code == "RequestLimitExceeded";
    let text = if code.is_empty() { format!("{what} failed: {msg}") } else { format!("{what} failed: {code}: {msg}") };
    let err = if transient {
        ProviderError::transient(text)
    } else if matches!(code.as_str(), "AuthFailure" | "UnrecognizedClientException" | "InvalidClientTokenId" | "UnauthorizedOperation") {
        ProviderError::unauthorized(text)
    } else if code.ends_with(".NotFound") {
        ProviderError::not_found(text)
    } else {
        ProviderError::terminal(text)
    };
    match code.as_str() {
        "AuthFailure" | "UnrecognizedClientException" | "InvalidClientTokenId" => {
            err.with_hint("check the AWS credentials: environment, [providers.ec2] profile, ~/.aws/credentials, SSO or instance metadata")
        }
        "InvalidAMIID.NotFound" | "InvalidAMIID.Malformed" => err.with_hint("the ami does not exist in this region"),
        "OperationNotPermitted" if msg.to_lowercase().contains("termination") => {
            err.with_hint("termination protection is on: set disable_api_termination = false and apply before destroying it")
        }
        _ => err,
    }
}

/// Lists of strings compare as sets.
fn normalised(v: &Value) -> Value {
    match v {
        Value::List(items) if items.iter().all(|i| matches!(i, Value::String(_))) => {
            let mut sorted = items.clone();
            sorted.sort_by_key(ToString::to_string);
            Value::List(sorted)
        }
        Value::List(items) => {
            let mut sorted: Vec<Value> = items.iter().map(normalised).collect();
            sorted.sort_by_key(ToString::to_string);
            Value::List(sorted)
        }
        Value::Map(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), normalised(v))).collect()),
        Value::Sensitive(s) => normalised(s.reveal()),
        other => other.clone(),
    }
}

/// The generic plan: every input field of config against what was observed (or, for fields
/// the API does not report, what was recorded); a differing replace-field replaces.
pub fn plan(schema: &KindSchema, req: &PlanRequest, recorded_only: &[&str]) -> PlannedChange {
    let observed = req.observed.as_ref();
    let Some(config) = &req.config else {
        let mut c = PlannedChange::new(Action::Delete);
        c.before = observed.map(|o| o.attributes.clone()).or_else(|| req.prior.as_ref().map(|p| (*p.attributes).clone())).unwrap_or_default();
        if observed.is_none() {
            c.note = Some("already gone".into());
        }
        return c;
    };
    let mut after = Attributes::new();
    for f in schema.fields.iter().filter(|f| f.role == tend_provider::Role::Input) {
        if let Some(v) = config.get(f.name) {
            after.insert(f.name.into(), v.clone());
        }
    }
    if !after.contains_key("tags") {
        after.insert("tags".into(), Value::Map(tend_provider::Map::new()));
    }
    let Some(observed) = observed else {
        for f in schema.fields.iter().filter(|f| f.role == tend_provider::Role::Output) {
            after.insert(f.name.into(), Value::Unknown);
        }
        return PlannedChange { after, ..PlannedChange::new(Action::Create) };
    };
    let now = |name: &str| -> Option<Value> {
        if recorded_only.contains(&name) { req.prior.as_ref().and_then(|p| p.attributes.get(name).cloned()) } else { observed.attributes.get(name).cloned() }
    };
    let mut changed = Vec::new();
    let mut replace = Vec::new();
    for (name, want) in &after {
        let have = now(name);
        // Recorded-only fields of an object adopted without a record cannot be compared.
        if have.is_none() && recorded_only.contains(&name.as_str()) && req.prior.is_none() {
            continue;
        }
        let differs = !want.is_known() || have.as_ref().map(normalised) != Some(normalised(want));
        if differs {
            changed.push(name.clone());
            if schema.field(name).is_some_and(|f| f.update == UpdateMode::Replace) {
                replace.push(name.to_string());
            }
        }
    }
    let action = if !replace.is_empty() {
        Action::Replace { create_first: false }
    } else if !changed.is_empty() {
        Action::Update
    } else if req.prior.is_none() {
        Action::Create
    } else {
        Action::NoOp
    };
    let mut before = Attributes::new();
    for name in after.keys() {
        if let Some(v) = now(name) {
            before.insert(name.clone(), v);
        }
    }
    for f in schema.fields.iter().filter(|f| f.role == tend_provider::Role::Output) {
        let v = if replace.is_empty() { observed.attributes.get(f.name).cloned().unwrap_or(Value::Null) } else { Value::Unknown };
        after.insert(f.name.into(), v);
        if let Some(o) = observed.attributes.get(f.name) {
            before.insert(f.name.into(), o.clone());
        }
    }
    let note = (action == Action::Create).then(|| "already exists as desired (tagged by tend); tend will record it".to_string());
    PlannedChange { before, after, requires_replace: replace, note, ..PlannedChange::new(action) }
}

/// A string field of fully known config.
pub fn string(config: &Attributes, name: &str) -> Option<String> {
    config.get(name).map(Value::reveal).and_then(Value::as_str).map(str::to_string)
}

/// A list-of-strings field.
pub fn strings(config: &Attributes, name: &str) -> Vec<String> {
    config.get(name).and_then(Value::as_list).unwrap_or_default().iter().filter_map(Value::as_str).map(str::to_string).collect()
}

/// Tags to add and keys to remove so that `have` becomes `want` (user tags only).
pub fn tag_diff(have: &Value, want: &BTreeMap<String, String>) -> (Vec<Tag>, Vec<Tag>) {
    let have: BTreeMap<String, String> =
        have.as_map().map(|m| m.iter().map(|(k, v)| (k.to_string(), v.as_str().unwrap_or_default().to_string())).collect()).unwrap_or_default();
    let add = want.iter().filter(|(k, v)| have.get(*k) != Some(*v)).map(|(k, v)| Tag::builder().key(k).value(v).build()).collect();
    let remove = have.keys().filter(|k| !want.contains_key(*k)).map(|k| Tag::builder().key(k).build()).collect();
    (add, remove)
}

/// Make an object's user tags equal config's (tend's own tags are left as they are).
pub async fn retag(c: &aws_sdk_ec2::Client, id: &str, have: &Attributes, config: &Attributes) -> Result<(), ProviderError> {
    let (add, remove) = tag_diff(have.get("tags").unwrap_or(&Value::Null), &user_tags(config));
    if !add.is_empty() {
        c.create_tags().resources(id).set_tags(Some(add)).send().await.map_err(|e| sdk_err("CreateTags", &e))?;
    }
    if !remove.is_empty() {
        c.delete_tags().resources(id).set_tags(Some(remove)).send().await.map_err(|e| sdk_err("DeleteTags", &e))?;
    }
    Ok(())
}

/// The `tags` field every kind has.
pub fn tags() -> tend_provider::FieldSchema {
    tend_provider::FieldSchema::input(
        "tags",
        tend_provider::FieldType::Map(Box::new(tend_provider::FieldType::String)),
        "tags (tend adds tend:managed-by and tend:address)",
    )
}

/// The type of a list of strings.
pub fn string_list() -> tend_provider::FieldType {
    tend_provider::FieldType::List(Box::new(tend_provider::FieldType::String))
}
