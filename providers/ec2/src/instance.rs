//! `ec2.instance`.

use async_trait::async_trait;
use tend_provider::{FieldSchema, FieldType, KindSchema};

use crate::common::{string_list, tags};
use std::time::{Duration, Instant};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{AttributeBooleanValue, AttributeValue, BlockDeviceMapping, EbsBlockDevice, Filter, Instance, InstanceType, ResourceType};
use base64::Engine;
use sha2::{Digest, Sha256};
use tend_provider::{Action, ApplyRequest, Attributes, Health, HealthRequest, Observed, ProviderError, Value};

use crate::Found;
use crate::common::{managed_filter, retag, sdk_err, split_tags, string, strings, tag_spec};

/// Tag that earlier versions of tend put on an instance whose health check failed (left for
/// inspection, removed by the next launch for the same address). Such instances are now
/// recorded in state as deposed and destroyed by the next plan; the tag is still honoured.
pub const CLEANUP: &str = "tend:cleanup";

/// States in which an instance no longer exists for tend.
const GONE: [&str; 2] = ["shutting-down", "terminated"];

fn attributes(i: &Instance) -> (Option<String>, Attributes) {
    let (_, address, tags) = split_tags(i.tags());
    let s = |v: Option<&str>| v.map_or(Value::Null, Value::from);
    let mut a = Attributes::new();
    a.insert("id".into(), s(i.instance_id()));
    a.insert("ami".into(), s(i.image_id()));
    a.insert("instance_type".into(), s(i.instance_type().map(InstanceType::as_str)));
    a.insert("subnet_id".into(), s(i.subnet_id()));
    a.insert("key_name".into(), s(i.key_name()));
    let mut groups: Vec<Value> = i.security_groups().iter().filter_map(|g| g.group_id()).map(Value::from).collect();
    groups.sort_by_key(ToString::to_string);
    a.insert("security_group_ids".into(), Value::List(groups));
    a.insert("tags".into(), tags);
    a.insert("private_ip".into(), s(i.private_ip_address()));
    a.insert("public_ip".into(), s(i.public_ip_address()));
    a.insert("public_dns".into(), s(i.public_dns_name().filter(|d| !d.is_empty())));
    a.insert("state".into(), s(i.state().and_then(|st| st.name()).map(aws_sdk_ec2::types::InstanceStateName::as_str)));
    (address, a)
}

/// Every live instance tagged for the project (`ids` empty), or the instances with these ids.
pub async fn describe(c: &Client, project: &str, ids: &[String]) -> Result<Vec<Found>, ProviderError> {
    let mut req = c.describe_instances();
    if ids.is_empty() {
        req = req.filters(managed_filter(project)).filters(
            Filter::builder()
                .name("instance-state-name")
                .set_values(Some(vec!["pending".into(), "running".into(), "stopping".into(), "stopped".into()]))
                .build(),
        );
    } else {
        req = req.set_instance_ids(Some(ids.to_vec()));
    }
    let mut pages = req.into_paginator().send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| sdk_err("DescribeInstances", &e))?;
        for r in page.reservations() {
            for i in r.instances() {
                let state = i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()).unwrap_or_default();
                if GONE.contains(&state.as_str()) {
                    continue;
                }
                if i.tags().iter().any(|t| t.key() == Some(CLEANUP)) {
                    continue; // a failed replacement left for inspection: not the resource
                }
                let (address, attributes) = attributes(i);
                let order = i.launch_time().map(|t| format!("{:020}.{:09}", t.secs(), t.subsec_nanos())).unwrap_or_default();
                out.push(Found { address, id: i.instance_id().unwrap_or_default().to_string(), attributes, order });
            }
        }
    }
    Ok(out)
}

/// `user_data` is compared and recorded as a digest: the API does not return it cheaply. One
/// that holds a secret is left as it is: the engine records it as a keyed fingerprint and gives
/// it back for comparison only when it matches (a plain digest of a secret could be tested
/// against guesses).
pub fn digest_user_data(config: &mut Attributes) {
    if let Some(v) = config.get("user_data").cloned()
        && v.is_known()
        && !v.is_sensitive()
    {
        let text = v.as_str().unwrap_or_default().to_string();
        config.insert("user_data".into(), Value::from(format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))));
    }
}

async fn wait_for(c: &Client, id: &str, want: &[&str], timeout: Duration) -> Result<Instance, ProviderError> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        let out = c.describe_instances().instance_ids(id).send().await.map_err(|e| sdk_err("DescribeInstances", &e))?;
        let inst = out.reservations().iter().flat_map(aws_sdk_ec2::types::Reservation::instances).next().cloned();
        if let Some(i) = &inst {
            let state = i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()).unwrap_or_default();
            if want.contains(&state.as_str()) {
                return Ok(i.clone());
            }
            if state == "terminated" && !want.contains(&"terminated") {
                return Err(ProviderError::terminal(format!("instance {id} terminated while waiting for it to be {}", want.join(" or "))));
            }
        }
        if started.elapsed() > timeout {
            return Err(ProviderError::terminal(format!("instance {id} was not {} after {} s", want.join(" or "), timeout.as_secs())));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// What is recorded: the observed attributes plus the inputs the API does not report.
fn recorded(i: &Instance, config: &Attributes) -> Observed {
    let (_, mut a) = attributes(i);
    let mut digested = config.clone();
    digest_user_data(&mut digested);
    for f in ["user_data", "root_volume_size", "disable_api_termination", "health"] {
        if let Some(v) = digested.get(f) {
            a.insert(f.into(), v.clone());
        }
    }
    Observed { id: i.instance_id().map(str::to_string), attributes: a }
}

/// The idempotency token of a create: the same address, inputs and predecessor give the same
/// token, so a retried `RunInstances` returns the instance it already made (real EC2).
fn client_token(addr: &str, config: &Attributes, prior_id: Option<&str>) -> String {
    let mut h = Sha256::new();
    h.update(addr.as_bytes());
    h.update([0]);
    h.update(prior_id.unwrap_or_default().as_bytes());
    h.update([0]);
    let mut d = config.clone();
    digest_user_data(&mut d);
    for (k, v) in &d {
        h.update(k.as_bytes());
        h.update(v.reveal().to_string().as_bytes());
    }
    hex::encode(h.finalize())[..48].to_string()
}

async fn create(c: &Client, project: &str, addr: &str, req: &ApplyRequest, config: &Attributes) -> Result<Observed, ProviderError> {
    let ami = string(config, "ami").ok_or_else(|| ProviderError::terminal("`ami` is not set"))?;
    let itype = string(config, "instance_type").ok_or_else(|| ProviderError::terminal("`instance_type` is not set"))?;
    let mut run = c
        .run_instances()
        .image_id(&ami)
        .instance_type(InstanceType::from(itype.as_str()))
        .min_count(1)
        .max_count(1)
        .client_token(client_token(addr, config, req.prior.as_ref().and_then(|p| p.id.as_deref())))
        .tag_specifications(tag_spec(ResourceType::Instance, project, addr, config));
    if let Some(s) = string(config, "subnet_id") {
        run = run.subnet_id(s);
    }
    for g in strings(config, "security_group_ids") {
        run = run.security_group_ids(g);
    }
    if let Some(k) = string(config, "key_name") {
        run = run.key_name(k);
    }
    if let Some(u) = string(config, "user_data") {
        run = run.user_data(base64::engine::general_purpose::STANDARD.encode(u.as_bytes()));
    }
    if let Some(b) = config.get("disable_api_termination").and_then(Value::as_bool) {
        run = run.disable_api_termination(b);
    }
    if let Some(size) = config.get("root_volume_size").and_then(Value::as_i64) {
        let images = c.describe_images().image_ids(&ami).send().await.map_err(|e| sdk_err("DescribeImages", &e))?;
        let device = images.images().first().and_then(|i| i.root_device_name()).unwrap_or("/dev/xvda").to_string();
        let size = i32::try_from(size).map_err(|_| ProviderError::terminal(format!("root_volume_size = {size} is too large")))?;
        run = run.block_device_mappings(
            BlockDeviceMapping::builder().device_name(device).ebs(EbsBlockDevice::builder().volume_size(size).delete_on_termination(true).build()).build(),
        );
    }
    terminate_leftovers(c, project, addr).await?;
    let out = run.send().await.map_err(|e| sdk_err(&format!("RunInstances for {addr}"), &e))?;
    let id = out.instances().first().and_then(|i| i.instance_id()).ok_or_else(|| ProviderError::terminal("RunInstances returned no instance"))?.to_string();
    tracing::info!(%addr, %id, "instance launched");
    let running = wait_for(c, &id, &["running"], Duration::from_mins(10)).await.map_err(|mut e| {
        // The instance exists: record it so the next plan replaces it rather than leaking it.
        e.partial = Some(Box::new(Observed { id: Some(id.clone()), attributes: Attributes::new() }));
        e
    })?;
    Ok(recorded(&running, config))
}

/// Terminate instances of this address left behind by a failed health check.
async fn terminate_leftovers(c: &Client, project: &str, addr: &str) -> Result<(), ProviderError> {
    let out = c
        .describe_instances()
        .filters(managed_filter(project))
        .filters(Filter::builder().name(format!("tag:{}", crate::common::ADDRESS)).values(addr).build())
        .filters(Filter::builder().name("tag-key").values(CLEANUP).build())
        .send()
        .await
        .map_err(|e| sdk_err("DescribeInstances", &e))?;
    let ids: Vec<String> = out
        .reservations()
        .iter()
        .flat_map(aws_sdk_ec2::types::Reservation::instances)
        .filter(|i| !GONE.contains(&i.state().and_then(|s| s.name()).map_or("", aws_sdk_ec2::types::InstanceStateName::as_str)))
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    if !ids.is_empty() {
        tracing::info!(%addr, ids = ?ids, "terminating instances left by a failed health check");
        c.terminate_instances().set_instance_ids(Some(ids)).send().await.map_err(|e| sdk_err("TerminateInstances", &e))?;
    }
    Ok(())
}

/// One probe of an applied instance's `health` check: a TCP port that accepts, and/or a
/// command (run here with `sh -c`, `TEND_INSTANCE_IP` and `TEND_INSTANCE_ID` set) that exits 0.
/// The engine probes again until the resource's `timeout`; `health.timeout`, if set, ends the
/// wait sooner.
pub async fn health(req: &HealthRequest) -> Result<Health, ProviderError> {
    let Some(h) = req.config.get("health").and_then(Value::as_map) else { return Ok(Health::Ready) };
    let attr = |k: &str| req.applied.attributes.get(k).and_then(Value::as_str).map(str::to_string);
    let id = req.applied.id.clone().or_else(|| attr("id")).unwrap_or_default();
    let failed = |message: String| Ok(Health::Failed { message: format!("health check of instance {id} for {}: {message}", req.addr), hint: None });
    let public = h.get("address").and_then(Value::as_str) == Some("public");
    let Some(ip) = attr(if public { "public_ip" } else { "private_ip" }) else { return failed("the instance has no such address".into()) };
    let limit = match h.get("timeout").and_then(Value::as_str).map(parse_duration).transpose() {
        Ok(l) => l,
        Err(e) => return failed(e),
    };
    let port = match h.get("tcp").and_then(Value::as_i64).map(|p| u16::try_from(p).map_err(|_| format!("tcp = {p} is not a port"))).transpose() {
        Ok(p) => p,
        Err(e) => return failed(e),
    };
    let command = h.get("command").and_then(Value::as_str);
    let mut last = None;
    if let Some(p) = port {
        match tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect((ip.as_str(), p))).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => last = Some(format!("{ip}:{p}: {e}")),
            Err(_) => last = Some(format!("{ip}:{p}: no answer within 3 s")),
        }
    }
    if let (None, Some(cmd)) = (&last, command) {
        match tokio::process::Command::new("sh").arg("-c").arg(cmd).env("TEND_INSTANCE_IP", &ip).env("TEND_INSTANCE_ID", &id).output().await {
            Ok(o) if o.status.success() => {}
            Ok(o) => last = Some(format!("`{cmd}` exited {}: {}", o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stderr).trim())),
            Err(e) => last = Some(format!("`{cmd}` could not run: {e}")),
        }
    }
    match (last, limit) {
        (None, _) => Ok(Health::Ready),
        (Some(why), Some(limit)) if req.elapsed >= limit => failed(format!("still failing after {} s: {why}", limit.as_secs())),
        (Some(why), _) => Ok(Health::Progressing { message: format!("health check of instance {id}: {why}") }),
    }
}

/// `30s`, `5m`, `1h`.
fn parse_duration(t: &str) -> Result<Duration, String> {
    let t = t.trim();
    let (n, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = n.parse().map_err(|_| format!("timeout `{t}` is not a duration like 30s, 5m"))?;
    match unit {
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_mins(n)),
        "h" => Ok(Duration::from_hours(n)),
        _ => Err(format!("timeout `{t}` is not a duration like 30s, 5m")),
    }
}

async fn update(c: &Client, req: &ApplyRequest, config: &Attributes) -> Result<Observed, ProviderError> {
    let observed = req.observed.as_ref().ok_or_else(|| ProviderError::terminal("nothing observed to update"))?;
    let id = observed.id.clone().ok_or_else(|| ProviderError::terminal("the instance has no id"))?;
    let have = &observed.attributes;
    retag(c, &id, have, config).await?;
    let mut want_groups = strings(config, "security_group_ids");
    want_groups.sort();
    let have_groups: Vec<String> =
        have.get("security_group_ids").and_then(Value::as_list).unwrap_or_default().iter().filter_map(Value::as_str).map(str::to_string).collect();
    if config.contains_key("security_group_ids") && want_groups != have_groups {
        c.modify_instance_attribute().instance_id(&id).set_groups(Some(want_groups)).send().await.map_err(|e| sdk_err("ModifyInstanceAttribute groups", &e))?;
    }
    if let Some(b) = config.get("disable_api_termination").and_then(Value::as_bool)
        && req.prior.as_ref().and_then(|p| p.attributes.get("disable_api_termination")).and_then(Value::as_bool) != Some(b)
    {
        c.modify_instance_attribute()
            .instance_id(&id)
            .disable_api_termination(AttributeBooleanValue::builder().value(b).build())
            .send()
            .await
            .map_err(|e| sdk_err("ModifyInstanceAttribute disableApiTermination", &e))?;
    }
    let want_type = string(config, "instance_type").unwrap_or_default();
    if have.get("instance_type").and_then(Value::as_str) != Some(want_type.as_str()) {
        // The type of a running instance changes by stop, modify, start.
        let was_running = have.get("state").and_then(Value::as_str) == Some("running");
        if was_running {
            c.stop_instances().instance_ids(&id).send().await.map_err(|e| sdk_err("StopInstances", &e))?;
            wait_for(c, &id, &["stopped"], Duration::from_mins(10)).await?;
        }
        c.modify_instance_attribute()
            .instance_id(&id)
            .instance_type(AttributeValue::builder().value(&want_type).build())
            .send()
            .await
            .map_err(|e| sdk_err("ModifyInstanceAttribute instanceType", &e))?;
        if was_running {
            c.start_instances().instance_ids(&id).send().await.map_err(|e| sdk_err("StartInstances", &e))?;
        }
    }
    let now = wait_for(c, &id, &["running", "stopped"], Duration::from_mins(10)).await?;
    Ok(recorded(&now, config))
}

/// Apply one step.
pub async fn apply(c: &Client, project: &str, addr: &str, req: &ApplyRequest) -> Result<Option<Observed>, ProviderError> {
    match req.action {
        Action::Delete => {
            let Some(id) = req.observed.as_ref().and_then(|o| o.id.clone()) else { return Ok(None) };
            c.terminate_instances().instance_ids(&id).send().await.map_err(|e| sdk_err(&format!("TerminateInstances {id} ({addr})"), &e))?;
            wait_for(c, &id, &["terminated"], Duration::from_mins(10)).await?;
            tracing::info!(%addr, %id, "instance terminated");
            Ok(None)
        }
        Action::Create => {
            let config = req.config.as_ref().ok_or_else(|| ProviderError::terminal("no config to apply"))?;
            match &req.observed {
                // Already there (tagged for this address, not yet recorded): record, converge.
                Some(_) => update(c, req, config).await.map(Some),
                None => create(c, project, addr, req, config).await.map(Some),
            }
        }
        Action::Update => {
            let config = req.config.as_ref().ok_or_else(|| ProviderError::terminal("no config to apply"))?;
            update(c, req, config).await.map(Some)
        }
        Action::NoOp | Action::Replace { .. } => Err(ProviderError::terminal("the engine splits replacements; this is a bug")),
    }
}

/// Schema of `ec2.instance`.
pub fn schema() -> KindSchema {
    KindSchema {
        kind: "instance",
        doc: "a virtual machine",
        target: false,
        timeout: None,
        runs: false,
        fields: vec![
            FieldSchema::input("ami", FieldType::String, "image id").required().forces_replacement(),
            FieldSchema::input("instance_type", FieldType::String, "e.g. t3.micro; changed in place by stop, modify, start").required(),
            FieldSchema::input("subnet_id", FieldType::String, "the subnet").forces_replacement(),
            FieldSchema::input("security_group_ids", string_list(), "security groups, changed in place"),
            FieldSchema::input("key_name", FieldType::String, "key pair name").forces_replacement(),
            FieldSchema::input("user_data", FieldType::String, "cloud-init user data").forces_replacement(),
            FieldSchema::input("root_volume_size", FieldType::Int, "GiB of the root volume").forces_replacement(),
            FieldSchema::input("disable_api_termination", FieldType::Bool, "termination protection, changed in place"),
            FieldSchema::input(
                "health",
                FieldType::Map(Box::new(FieldType::Any)),
                "checked before the instance counts as created: { tcp = 22, command = \"…\", address = \"private\", timeout = \"5m\" }",
            ),
            tags(),
            FieldSchema::output("id", FieldType::String, "i-…"),
            FieldSchema::output("private_ip", FieldType::String, "private IPv4 address"),
            FieldSchema::output("public_ip", FieldType::String, "public IPv4 address, if any"),
            FieldSchema::output("public_dns", FieldType::String, "public DNS name, if any"),
            FieldSchema::output("state", FieldType::String, "running, stopped, …"),
        ],
    }
}

/// `ec2.instance`.
pub struct Vm;

#[async_trait]
impl crate::Ec2Kind for Vm {
    fn name(&self) -> &'static str {
        "instance"
    }
    fn schema(&self) -> KindSchema {
        schema()
    }
    fn recorded_only(&self) -> &'static [&'static str] {
        &["user_data", "root_volume_size", "disable_api_termination", "health"]
    }
    fn plan(&self, schema: &KindSchema, mut req: tend_provider::PlanRequest) -> tend_provider::PlannedChange {
        if let Some(c) = req.config.as_mut() {
            digest_user_data(c);
        }
        let mut planned = crate::common::plan(schema, &req, self.recorded_only());
        // A new type means stop and start: the public address changes with it.
        if planned.action == Action::Update && planned.before.get("instance_type") != planned.after.get("instance_type") {
            for f in ["public_ip", "public_dns"] {
                planned.after.insert(f.into(), Value::Unknown);
            }
        }
        planned
    }
    async fn describe(&self, c: &Client, project: &str, ids: &[String]) -> Result<Vec<Found>, ProviderError> {
        describe(c, project, ids).await
    }
    async fn apply(&self, c: &Client, project: &str, addr: &str, req: &ApplyRequest) -> Result<Option<Observed>, ProviderError> {
        apply(c, project, addr, req).await
    }
    async fn health(&self, req: &HealthRequest) -> Result<Health, ProviderError> {
        health(req).await
    }
}
