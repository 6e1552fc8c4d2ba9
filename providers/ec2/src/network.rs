//! `ec2.vpc`, `ec2.subnet`, `ec2.security_group`.

use async_trait::async_trait;
use tend_provider::{FieldSchema, FieldType, KindSchema};

use crate::common::tags;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{IpPermission, IpRange, ResourceType, SecurityGroup};
use tend_provider::{Action, ApplyRequest, Attributes, Observed, ProviderError, Value};

use crate::Found;
use crate::common::{managed_filter, retag, sdk_err, split_tags, string, tag_spec};

fn s(v: Option<&str>) -> Value {
    v.map_or(Value::Null, Value::from)
}

/// VPCs tagged for the project, or these ids.
pub async fn describe_vpcs(c: &Client, project: &str, ids: &[String]) -> Result<Vec<Found>, ProviderError> {
    let mut req = c.describe_vpcs();
    req = if ids.is_empty() { req.filters(managed_filter(project)) } else { req.set_vpc_ids(Some(ids.to_vec())) };
    let mut pages = req.into_paginator().send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        for v in page.map_err(|e| sdk_err("DescribeVpcs", &e))?.vpcs() {
            let (_, address, tags) = split_tags(v.tags());
            let mut a = Attributes::new();
            a.insert("id".into(), s(v.vpc_id()));
            a.insert("cidr_block".into(), s(v.cidr_block()));
            a.insert("tags".into(), tags);
            out.push(Found { address, id: v.vpc_id().unwrap_or_default().into(), attributes: a, order: String::new() });
        }
    }
    Ok(out)
}

/// Subnets tagged for the project, or these ids.
pub async fn describe_subnets(c: &Client, project: &str, ids: &[String]) -> Result<Vec<Found>, ProviderError> {
    let mut req = c.describe_subnets();
    req = if ids.is_empty() { req.filters(managed_filter(project)) } else { req.set_subnet_ids(Some(ids.to_vec())) };
    let mut pages = req.into_paginator().send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        for n in page.map_err(|e| sdk_err("DescribeSubnets", &e))?.subnets() {
            let (_, address, tags) = split_tags(n.tags());
            let mut a = Attributes::new();
            a.insert("id".into(), s(n.subnet_id()));
            a.insert("vpc_id".into(), s(n.vpc_id()));
            a.insert("cidr_block".into(), s(n.cidr_block()));
            a.insert("availability_zone".into(), s(n.availability_zone()));
            a.insert("tags".into(), tags);
            out.push(Found { address, id: n.subnet_id().unwrap_or_default().into(), attributes: a, order: String::new() });
        }
    }
    Ok(out)
}

/// A rule as config writes it: `{ protocol, from_port, to_port, cidr_blocks }`.
fn rules(perms: &[IpPermission]) -> Value {
    let mut out = Vec::new();
    for p in perms {
        let mut cidrs: Vec<Value> = p.ip_ranges().iter().filter_map(|r| r.cidr_ip()).map(Value::from).collect();
        cidrs.sort_by_key(ToString::to_string);
        if cidrs.is_empty() {
            continue; // rules naming other groups are not managed here
        }
        let mut m = tend_provider::Map::new();
        m.insert("protocol".into(), Value::from(p.ip_protocol().unwrap_or("-1")));
        m.insert("from_port".into(), Value::Int(i64::from(p.from_port().unwrap_or(0))));
        m.insert("to_port".into(), Value::Int(i64::from(p.to_port().unwrap_or(0))));
        m.insert("cidr_blocks".into(), Value::List(cidrs));
        out.push(Value::Map(m));
    }
    out.sort_by_key(ToString::to_string);
    Value::List(out)
}

fn group_attributes(g: &SecurityGroup) -> (Option<String>, Attributes) {
    let (_, address, tags) = split_tags(g.tags());
    let mut a = Attributes::new();
    a.insert("id".into(), s(g.group_id()));
    a.insert("name".into(), s(g.group_name()));
    a.insert("description".into(), s(g.description()));
    a.insert("vpc_id".into(), s(g.vpc_id()));
    a.insert("ingress".into(), rules(g.ip_permissions()));
    a.insert("egress".into(), rules(g.ip_permissions_egress()));
    a.insert("tags".into(), tags);
    (address, a)
}

/// Security groups tagged for the project, or these ids.
pub async fn describe_groups(c: &Client, project: &str, ids: &[String]) -> Result<Vec<Found>, ProviderError> {
    let mut req = c.describe_security_groups();
    req = if ids.is_empty() { req.filters(managed_filter(project)) } else { req.set_group_ids(Some(ids.to_vec())) };
    let mut pages = req.into_paginator().send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        for g in page.map_err(|e| sdk_err("DescribeSecurityGroups", &e))?.security_groups() {
            let (address, attributes) = group_attributes(g);
            out.push(Found { address, id: g.group_id().unwrap_or_default().into(), attributes, order: String::new() });
        }
    }
    Ok(out)
}

fn id_of(req: &ApplyRequest) -> Option<String> {
    req.observed.as_ref().and_then(|o| o.id.clone())
}

fn merged(id: &str, config: &Attributes, extra: &[(&str, Value)]) -> Observed {
    let mut a = config.clone();
    a.insert("id".into(), Value::from(id));
    a.entry("tags".into()).or_insert_with(|| Value::Map(tend_provider::Map::new()));
    for (k, v) in extra {
        a.insert((*k).into(), v.clone());
    }
    Observed { id: Some(id.to_string()), attributes: a }
}

/// Apply a VPC step.
pub async fn apply_vpc(c: &Client, project: &str, addr: &str, req: &ApplyRequest) -> Result<Option<Observed>, ProviderError> {
    if req.action == Action::Delete {
        if let Some(id) = id_of(req) {
            c.delete_vpc().vpc_id(&id).send().await.map_err(|e| sdk_err(&format!("DeleteVpc {id} ({addr})"), &e))?;
        }
        return Ok(None);
    }
    let config = req.config.as_ref().ok_or_else(|| ProviderError::terminal("no config to apply"))?;
    if let (Some(id), Some(o)) = (id_of(req), &req.observed) {
        retag(c, &id, &o.attributes, config).await?;
        return Ok(Some(merged(&id, config, &[])));
    }
    let cidr = string(config, "cidr_block").ok_or_else(|| ProviderError::terminal("`cidr_block` is not set"))?;
    let out = c
        .create_vpc()
        .cidr_block(cidr)
        .tag_specifications(tag_spec(ResourceType::Vpc, project, addr, config))
        .send()
        .await
        .map_err(|e| sdk_err(&format!("CreateVpc for {addr}"), &e))?;
    let id = out.vpc().and_then(|v| v.vpc_id()).ok_or_else(|| ProviderError::terminal("CreateVpc returned no id"))?;
    Ok(Some(merged(id, config, &[])))
}

/// Apply a subnet step.
pub async fn apply_subnet(c: &Client, project: &str, addr: &str, req: &ApplyRequest) -> Result<Option<Observed>, ProviderError> {
    if req.action == Action::Delete {
        if let Some(id) = id_of(req) {
            c.delete_subnet().subnet_id(&id).send().await.map_err(|e| sdk_err(&format!("DeleteSubnet {id} ({addr})"), &e))?;
        }
        return Ok(None);
    }
    let config = req.config.as_ref().ok_or_else(|| ProviderError::terminal("no config to apply"))?;
    if let (Some(id), Some(o)) = (id_of(req), &req.observed) {
        retag(c, &id, &o.attributes, config).await?;
        let az = o.attributes.get("availability_zone").cloned().unwrap_or(Value::Null);
        return Ok(Some(merged(&id, config, &[("availability_zone", az)])));
    }
    let mut create = c
        .create_subnet()
        .vpc_id(string(config, "vpc_id").ok_or_else(|| ProviderError::terminal("`vpc_id` is not set"))?)
        .cidr_block(string(config, "cidr_block").ok_or_else(|| ProviderError::terminal("`cidr_block` is not set"))?)
        .tag_specifications(tag_spec(ResourceType::Subnet, project, addr, config));
    if let Some(az) = string(config, "availability_zone") {
        create = create.availability_zone(az);
    }
    let out = create.send().await.map_err(|e| sdk_err(&format!("CreateSubnet for {addr}"), &e))?;
    let subnet = out.subnet().ok_or_else(|| ProviderError::terminal("CreateSubnet returned no subnet"))?;
    let id = subnet.subnet_id().unwrap_or_default();
    Ok(Some(merged(id, config, &[("availability_zone", s(subnet.availability_zone()))])))
}

fn permissions(v: Option<&Value>) -> Result<Vec<IpPermission>, ProviderError> {
    let mut out = Vec::new();
    for rule in v.and_then(Value::as_list).unwrap_or_default() {
        let m = rule.as_map().ok_or_else(|| ProviderError::terminal("a rule must be a table { protocol, from_port, to_port, cidr_blocks }"))?;
        let port = |k: &str| m.get(k).and_then(Value::as_i64).and_then(|p| i32::try_from(p).ok());
        let mut p = IpPermission::builder().ip_protocol(m.get("protocol").and_then(Value::as_str).unwrap_or("tcp"));
        if let Some(f) = port("from_port") {
            p = p.from_port(f);
        }
        if let Some(t) = port("to_port") {
            p = p.to_port(t);
        }
        for cidr in m.get("cidr_blocks").and_then(Value::as_list).unwrap_or_default().iter().filter_map(Value::as_str) {
            p = p.ip_ranges(IpRange::builder().cidr_ip(cidr).build());
        }
        out.push(p.build());
    }
    Ok(out)
}

/// Make the group's rules of one direction equal config: revoke what went, authorize what came.
async fn sync_rules(c: &Client, id: &str, ingress: bool, have: Option<&Value>, want: Option<&Value>) -> Result<(), ProviderError> {
    let canon = |v: Option<&Value>| -> Vec<String> {
        let mut l: Vec<String> = v.and_then(Value::as_list).unwrap_or_default().iter().map(ToString::to_string).collect();
        l.sort();
        l
    };
    let (have_s, want_s) = (canon(have), canon(want));
    let pick = |v: Option<&Value>, keep: &dyn Fn(&String) -> bool| -> Vec<Value> {
        v.and_then(Value::as_list).unwrap_or_default().iter().filter(|r| keep(&r.to_string())).cloned().collect()
    };
    let revoke = pick(have, &|r| !want_s.contains(r));
    let grant = pick(want, &|r| !have_s.contains(r));
    if !revoke.is_empty() {
        let perms = permissions(Some(&Value::List(revoke)))?;
        if ingress {
            c.revoke_security_group_ingress()
                .group_id(id)
                .set_ip_permissions(Some(perms))
                .send()
                .await
                .map_err(|e| sdk_err("RevokeSecurityGroupIngress", &e))?;
        } else {
            c.revoke_security_group_egress().group_id(id).set_ip_permissions(Some(perms)).send().await.map_err(|e| sdk_err("RevokeSecurityGroupEgress", &e))?;
        }
    }
    if !grant.is_empty() {
        let perms = permissions(Some(&Value::List(grant)))?;
        if ingress {
            c.authorize_security_group_ingress()
                .group_id(id)
                .set_ip_permissions(Some(perms))
                .send()
                .await
                .map_err(|e| sdk_err("AuthorizeSecurityGroupIngress", &e))?;
        } else {
            c.authorize_security_group_egress()
                .group_id(id)
                .set_ip_permissions(Some(perms))
                .send()
                .await
                .map_err(|e| sdk_err("AuthorizeSecurityGroupEgress", &e))?;
        }
    }
    Ok(())
}

/// Apply a security group step.
pub async fn apply_group(c: &Client, project: &str, addr: &str, req: &ApplyRequest) -> Result<Option<Observed>, ProviderError> {
    if req.action == Action::Delete {
        if let Some(id) = id_of(req) {
            c.delete_security_group().group_id(&id).send().await.map_err(|e| sdk_err(&format!("DeleteSecurityGroup {id} ({addr})"), &e))?;
        }
        return Ok(None);
    }
    let config = req.config.as_ref().ok_or_else(|| ProviderError::terminal("no config to apply"))?;
    let (id, have) = if let (Some(id), Some(o)) = (id_of(req), &req.observed) {
        retag(c, &id, &o.attributes, config).await?;
        (id, o.attributes.clone())
    } else {
        let name = string(config, "name").ok_or_else(|| ProviderError::terminal("`name` is not set"))?;
        let mut create = c
            .create_security_group()
            .group_name(&name)
            .description(string(config, "description").unwrap_or_else(|| format!("{name}, managed by tend")))
            .tag_specifications(tag_spec(ResourceType::SecurityGroup, project, addr, config));
        if let Some(v) = string(config, "vpc_id") {
            create = create.vpc_id(v);
        }
        let out = create.send().await.map_err(|e| sdk_err(&format!("CreateSecurityGroup for {addr}"), &e))?;
        let id = out.group_id().ok_or_else(|| ProviderError::terminal("CreateSecurityGroup returned no id"))?.to_string();
        // A new group starts with EC2's default rules: read them to converge from there.
        let now = c.describe_security_groups().group_ids(&id).send().await.map_err(|e| sdk_err("DescribeSecurityGroups", &e))?;
        let have = now.security_groups().first().map(|g| group_attributes(g).1).unwrap_or_default();
        (id, have)
    };
    if config.contains_key("ingress") {
        sync_rules(c, &id, true, have.get("ingress"), config.get("ingress")).await?;
    }
    if config.contains_key("egress") {
        sync_rules(c, &id, false, have.get("egress"), config.get("egress")).await?;
    }
    let after = c.describe_security_groups().group_ids(&id).send().await.map_err(|e| sdk_err("DescribeSecurityGroups", &e))?;
    let (_, mut a) = after.security_groups().first().map(group_attributes).unwrap_or_default();
    // Directions config leaves out stay as EC2 has them and are not compared.
    for dir in ["ingress", "egress"] {
        if !config.contains_key(dir) {
            a.remove(dir);
        }
    }
    Ok(Some(Observed { id: Some(id), attributes: a }))
}

/// Schema of `ec2.vpc`.
pub fn vpc_schema() -> KindSchema {
    KindSchema {
        kind: "vpc",
        doc: "a VPC",
        target: false,
        timeout: None,
        runs: false,
        fields: vec![
            FieldSchema::input("cidr_block", FieldType::String, "IPv4 CIDR, e.g. 10.0.0.0/16").required().forces_replacement(),
            tags(),
            FieldSchema::output("id", FieldType::String, "vpc-…"),
        ],
    }
}

/// Schema of `ec2.subnet`.
pub fn subnet_schema() -> KindSchema {
    KindSchema {
        kind: "subnet",
        doc: "a subnet of a VPC",
        target: false,
        timeout: None,
        runs: false,
        fields: vec![
            FieldSchema::input("vpc_id", FieldType::String, "the VPC").required().forces_replacement(),
            FieldSchema::input("cidr_block", FieldType::String, "IPv4 CIDR inside the VPC's").required().forces_replacement(),
            FieldSchema::input("availability_zone", FieldType::String, "e.g. us-east-1a").forces_replacement(),
            tags(),
            FieldSchema::output("id", FieldType::String, "subnet-…"),
        ],
    }
}

/// Schema of `ec2.security_group`.
pub fn security_group_schema() -> KindSchema {
    KindSchema {
        kind: "security_group",
        doc: "a security group with its ingress and egress rules",
        target: false,
        timeout: None,
        runs: false,
        fields: vec![
            FieldSchema::input("name", FieldType::String, "group name").required().forces_replacement(),
            FieldSchema::input("description", FieldType::String, "description").forces_replacement(),
            FieldSchema::input("vpc_id", FieldType::String, "the VPC").forces_replacement(),
            FieldSchema::input(
                "ingress",
                FieldType::List(Box::new(FieldType::Any)),
                "rules: { protocol = \"tcp\", from_port = 22, to_port = 22, cidr_blocks = [\"0.0.0.0/0\"] }",
            ),
            FieldSchema::input("egress", FieldType::List(Box::new(FieldType::Any)), "rules, as for ingress"),
            tags(),
            FieldSchema::output("id", FieldType::String, "sg-…"),
        ],
    }
}

/// `ec2.vpc`.
pub struct Vpc;

#[async_trait]
impl crate::Ec2Kind for Vpc {
    fn name(&self) -> &'static str {
        "vpc"
    }
    fn schema(&self) -> KindSchema {
        vpc_schema()
    }
    async fn describe(&self, c: &Client, project: &str, ids: &[String]) -> Result<Vec<Found>, ProviderError> {
        describe_vpcs(c, project, ids).await
    }
    async fn apply(&self, c: &Client, project: &str, addr: &str, req: &ApplyRequest) -> Result<Option<Observed>, ProviderError> {
        apply_vpc(c, project, addr, req).await
    }
}

/// `ec2.subnet`.
pub struct Subnet;

#[async_trait]
impl crate::Ec2Kind for Subnet {
    fn name(&self) -> &'static str {
        "subnet"
    }
    fn schema(&self) -> KindSchema {
        subnet_schema()
    }
    async fn describe(&self, c: &Client, project: &str, ids: &[String]) -> Result<Vec<Found>, ProviderError> {
        describe_subnets(c, project, ids).await
    }
    async fn apply(&self, c: &Client, project: &str, addr: &str, req: &ApplyRequest) -> Result<Option<Observed>, ProviderError> {
        apply_subnet(c, project, addr, req).await
    }
}

/// `ec2.security_group`.
pub struct Group;

#[async_trait]
impl crate::Ec2Kind for Group {
    fn name(&self) -> &'static str {
        "security_group"
    }
    fn schema(&self) -> KindSchema {
        security_group_schema()
    }
    async fn describe(&self, c: &Client, project: &str, ids: &[String]) -> Result<Vec<Found>, ProviderError> {
        describe_groups(c, project, ids).await
    }
    async fn apply(&self, c: &Client, project: &str, addr: &str, req: &ApplyRequest) -> Result<Option<Observed>, ProviderError> {
        apply_group(c, project, addr, req).await
    }
}
