//! The EC2 provider against the moto EC2 API server; what the API holds is checked with an
//! independent client (boto3).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::support::moto::Moto;
use crate::support::write_tree;

const AMI: &str = "ami-760aaa0f";
const AMI2: &str = "ami-1e749f67";

struct Run {
    dir: tempfile::TempDir,
}

impl Run {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir") }
    }

    fn cfg(&self) -> PathBuf {
        self.dir.path().join("cfg")
    }

    fn write(&self, body: &str) {
        write_tree(&self.cfg(), &[("tend.toml", &format!("[project]\nname = \"ec2-test\"\n\n[providers.ec2]\nregion = \"us-east-1\"\n\n{body}"))]);
    }

    fn tend(&self, moto: &Moto, args: &[&str]) -> Output {
        self.tend_env(moto, args, &[])
    }

    fn tend_env(&self, moto: &Moto, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tend"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(["-C", &self.cfg().to_string_lossy(), "--state", &self.dir.path().join("state.db").to_string_lossy()])
            .args(args)
            .env("NO_COLOR", "1")
            .env("HOME", self.dir.path())
            .stdin(Stdio::null());
        for (k, v) in moto.env() {
            cmd.env(k, v);
        }
        cmd.output().expect("tend runs")
    }
}

fn text(o: &Output) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn network() -> String {
    r#"
[ec2.vpc.main]
cidr_block = "10.50.0.0/16"
tags = { Name = "main" }

[ec2.subnet.a]
vpc_id = "${ec2.vpc.main.id}"
cidr_block = "10.50.1.0/24"
availability_zone = "us-east-1a"

[ec2.security_group.ssh]
name = "ssh"
description = "ssh from anywhere"
vpc_id = "${ec2.vpc.main.id}"
ingress = [{ protocol = "tcp", from_port = 22, to_port = 22, cidr_blocks = ["0.0.0.0/0"] }]

[ec2.key_pair.ops]
name = "ops"
public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHcKzGkT0mN4d1IYTwmvcbXyMD6IJN7H6H5yMvJ9cRzZ ops"
"#
    .to_string()
}

fn web(ami: &str, itype: &str, extra: &str) -> String {
    format!(
        r##"
[ec2.instance.web]
ami = "{ami}"
instance_type = "{itype}"
subnet_id = "${{ec2.subnet.a.id}}"
security_group_ids = ["${{ec2.security_group.ssh.id}}"]
key_name = "${{ec2.key_pair.ops.name}}"
user_data = "#!/bin/sh\necho hello\n"
tags = {{ Name = "web", team = "ops" }}
{extra}
"##
    )
}

#[test]
fn creates_every_kind_then_plans_nothing_then_updates_in_place_and_replaces_create_before_destroy() {
    let moto = Moto::start();
    let run = Run::new();
    run.write(&format!("{}{}", network(), web(AMI, "t2.micro", "")));
    let plan = ok(&run.tend(&moto, &["plan"]));
    assert!(plan.contains("+ id                 = (known after apply)") || plan.contains("(known after apply)"), "{plan}");
    ok(&run.tend(&moto, &["apply", "--auto-approve"]));
    let live = moto.instances();
    assert_eq!(live.len(), 1, "{live:?}");
    let first = &live[0];
    assert_eq!(first["tags"]["tend:managed-by"], "ec2-test");
    assert_eq!(first["tags"]["tend:address"], "ec2.instance.web");
    assert_eq!(first["tags"]["Name"], "web");
    assert_eq!(first["type"], "t2.micro");
    assert_eq!(first["state"], "running");
    let vpcs = moto.boto("print(json.dumps([{t['Key']: t['Value'] for t in v.get('Tags', [])} for v in ec2.describe_vpcs()['Vpcs'] if v.get('Tags')]))");
    assert!(vpcs.as_array().expect("vpcs").iter().any(|t| t["tend:address"] == "ec2.vpc.main" && t["Name"] == "main"), "{vpcs}");
    let rules = moto.boto("g = ec2.describe_security_groups(Filters=[{'Name': 'group-name', 'Values': ['ssh']}])['SecurityGroups'][0]\nprint(json.dumps([[p.get('FromPort'), [r['CidrIp'] for r in p.get('IpRanges', [])]] for p in g['IpPermissions']]))");
    assert_eq!(rules, serde_json::json!([[22, ["0.0.0.0/0"]]]));

    // Nothing to do: one Describe per kind, no change.
    let noop = run.tend(&moto, &["plan", "--detailed-exitcode"]);
    assert_eq!(noop.status.code(), Some(0), "{}", text(&noop));

    // In place: type (stop, modify, start) and tags keep the instance.
    run.write(&format!("{}{}", network(), web(AMI, "t2.small", "").replace("team = \"ops\"", "team = \"web\"")));
    let plan = ok(&run.tend(&moto, &["plan"]));
    assert!(plan.contains("ec2.instance.web will be updated in place"), "{plan}");
    ok(&run.tend(&moto, &["apply", "--auto-approve"]));
    let live = moto.instances();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0]["id"], first["id"], "same instance");
    assert_eq!(live[0]["type"], "t2.small");
    assert_eq!(live[0]["tags"]["team"], "web");

    // A new image forces replacement; create-before-destroy builds the new one first.
    run.write(&format!("{}{}", network(), web(AMI2, "t2.small", "lifecycle = { create_before_destroy = true }")));
    let plan = ok(&run.tend(&moto, &["plan"]));
    assert!(plan.contains("ec2.instance.web must be replaced") && plan.contains("forces replacement"), "{plan}");
    assert!(plan.contains("ami"), "{plan}");
    let out = run.tend_env(&moto, &["apply", "--auto-approve"], &[("RUST_LOG", "tend_ec2=info")]);
    ok(&out);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let live = moto.instances();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_ne!(live[0]["id"], first["id"]);
    assert_eq!(live[0]["ami"], AMI2);
    // The API calls' order: the new instance was launched (and running) before the old one
    // was terminated.
    let new_id = live[0]["id"].as_str().expect("id");
    let old_id = first["id"].as_str().expect("id");
    let launched =
        log.find(&format!("id={new_id} instance launched")).or_else(|| log.find("instance launched")).unwrap_or_else(|| panic!("no launch in:\n{log}"));
    let terminated = log.find("instance terminated").unwrap_or_else(|| panic!("no termination in:\n{log}"));
    assert!(launched < terminated && log[terminated.saturating_sub(80)..].contains(old_id), "create before destroy:\n{log}");
    let old_state = moto.boto(&format!(
        "print(json.dumps(ec2.describe_instances(InstanceIds=['{}'])['Reservations'][0]['Instances'][0]['State']['Name']))",
        first["id"].as_str().unwrap_or_default()
    ));
    assert_eq!(old_state, "terminated");
}

#[test]
fn drift_is_seen_and_corrected_and_an_instance_terminated_out_of_band_is_recreated() {
    let moto = Moto::start();
    let run = Run::new();
    run.write(&format!("{}{}", network(), web(AMI, "t2.micro", "")));
    ok(&run.tend(&moto, &["apply", "--auto-approve"]));
    let id = moto.instances()[0]["id"].as_str().expect("id").to_string();
    moto.boto(&format!("ec2.create_tags(Resources=['{id}'], Tags=[{{'Key': 'team', 'Value': 'someone-else'}}])\nprint('{{}}')"));
    let plan = ok(&run.tend(&moto, &["plan"]));
    assert!(plan.contains("ec2.instance.web will be updated in place (changed outside tend)"), "{plan}");
    ok(&run.tend(&moto, &["apply", "--auto-approve"]));
    assert_eq!(moto.instances()[0]["tags"]["team"], "ops");
    moto.boto(&format!("ec2.terminate_instances(InstanceIds=['{id}'])\nprint('{{}}')"));
    let plan = ok(&run.tend(&moto, &["plan"]));
    assert!(plan.contains("ec2.instance.web will be created"), "{plan}");
    ok(&run.tend(&moto, &["apply", "--auto-approve"]));
    let live = moto.instances();
    assert_eq!(live.len(), 1);
    assert_ne!(live[0]["id"], id.as_str());
}

#[test]
fn a_tagged_instance_from_a_crash_is_adopted_and_unmanaged_ones_are_left_alone() {
    let moto = Moto::start();
    let run = Run::new();
    // An instance nobody tagged for tend, and one tagged for `ec2.instance.web` as if tend had
    // created it and crashed before recording it.
    moto.boto(&format!("ec2.run_instances(ImageId='{AMI}', InstanceType='t2.micro', MinCount=1, MaxCount=1)\nprint('{{}}')"));
    moto.boto(&format!(
        "ec2.run_instances(ImageId='{AMI}', InstanceType='t2.micro', MinCount=1, MaxCount=1, TagSpecifications=[{{'ResourceType': 'instance', 'Tags': [{{'Key': 'tend:managed-by', 'Value': 'ec2-test'}}, {{'Key': 'tend:address', 'Value': 'ec2.instance.web'}}, {{'Key': 'Name', 'Value': 'web'}}]}}])\nprint('{{}}')"
    ));
    run.write(&format!("[ec2.instance.web]\nami = \"{AMI}\"\ninstance_type = \"t2.micro\"\ntags = {{ Name = \"web\" }}\n"));
    let plan = ok(&run.tend(&moto, &["plan"]));
    assert!(plan.contains("already exists as desired (tagged by tend); tend will record it"), "{plan}");
    ok(&run.tend(&moto, &["apply", "--auto-approve"]));
    assert_eq!(moto.instances().len(), 2, "no duplicate was launched");
    // Removing it from config terminates only tend's instance (every resource goes: asked for).
    run.write("");
    ok(&run.tend(&moto, &["apply", "--auto-approve", "--allow-destroy-all"]));
    let live = moto.instances();
    assert_eq!(live.len(), 1, "{live:?}");
    assert!(live[0]["tags"].get("tend:address").is_none(), "the unmanaged instance is left alone: {live:?}");
    // Imported explicitly, it is managed from then on (found by id: it has no tend tags).
    let legacy = live[0]["id"].as_str().expect("id").to_string();
    run.write(&format!("[ec2.instance.legacy]\nami = \"{AMI}\"\ninstance_type = \"t2.micro\"\n"));
    let missing = run.tend(&moto, &["import", "ec2.instance.legacy", "i-0000000000000dead"]);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no ec2.instance with id `i-0000000000000dead`"), "{}", text(&missing));
    let imported = ok(&run.tend(&moto, &["import", "ec2.instance.legacy", &legacy]));
    assert!(imported.contains(&format!("imported {legacy}")), "{imported}");
    assert_eq!(run.tend(&moto, &["plan", "--detailed-exitcode"]).status.code(), Some(0));
    run.write(&format!("[ec2.instance.legacy]\nami = \"{AMI}\"\ninstance_type = \"t2.small\"\n"));
    ok(&run.tend(&moto, &["apply", "--auto-approve"]));
    let live = moto.instances();
    assert_eq!((live.len(), live[0]["id"].as_str(), live[0]["type"].as_str()), (1, Some(legacy.as_str()), Some("t2.small")));
}

#[test]
fn observation_pages_through_more_than_100_instances_in_a_handful_of_calls() {
    let moto = Moto::start();
    let run = Run::new();
    // 150 instances tagged for tend, as if applied before; the config declares them all.
    moto.boto(&format!(
        "for n in range(150):\n  ec2.run_instances(ImageId='{AMI}', InstanceType='t2.micro', MinCount=1, MaxCount=1, TagSpecifications=[{{'ResourceType': 'instance', 'Tags': [{{'Key': 'tend:managed-by', 'Value': 'ec2-test'}}, {{'Key': 'tend:address', 'Value': 'ec2.instance.n%03d' % n}}]}}])\nprint('{{}}')"
    ));
    let mut body = String::new();
    for n in 0..150 {
        body.push_str(&format!("[ec2.instance.n{n:03}]\nami = \"{AMI}\"\ninstance_type = \"t2.micro\"\n\n"));
    }
    run.write(&body);
    let plan = ok(&run.tend(&moto, &["plan"]));
    assert!(plan.contains("Plan: 150 to add"), "{}", plan.lines().last().unwrap_or_default());
    assert_eq!(plan.matches("tend will record it").count(), 150, "every instance was found, across pages");
    ok(&run.tend(&moto, &["apply", "--auto-approve"]));
    assert_eq!(moto.instances().len(), 150, "nothing was launched");
    let noop = run.tend(&moto, &["plan", "--detailed-exitcode"]);
    assert_eq!(noop.status.code(), Some(0), "{}", text(&noop));
}

#[test]
fn a_failed_health_check_leaves_the_old_instance_serving_and_the_new_one_recorded_for_the_next_plan_to_destroy() {
    let moto = Moto::start();
    let run = Run::new();
    let cbd = "lifecycle = { create_before_destroy = true }";
    run.write(&format!("{}{}", network(), web(AMI, "t2.micro", cbd)));
    ok(&run.tend(&moto, &["apply", "--auto-approve"]));
    let old = moto.instances()[0]["id"].as_str().expect("id").to_string();
    // The replacement never becomes healthy.
    run.write(&format!(
        "{}{}",
        network(),
        web(AMI2, "t2.micro", &format!("{cbd}\nhealth = {{ command = \"test \\\"$TEND_INSTANCE_ID\\\" = never\", timeout = \"2s\" }}"))
    ));
    let out = run.tend(&moto, &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let live = moto.instances();
    assert_eq!(live.len(), 2, "{live:?}");
    let old_now = live.iter().find(|i| i["id"] == old.as_str()).expect("the old instance");
    assert_eq!(old_now["state"], "running", "the old instance keeps serving");
    let failed = live.iter().find(|i| i["id"] != old.as_str()).expect("the new instance");
    let failed_id = failed["id"].as_str().expect("id");
    assert!(
        err.contains(&format!("health check of instance {failed_id} for ec2.instance.web: still failing after 2 s"))
            && err.contains(&format!("recorded as `ec2.instance.web[deposed-{failed_id}]` for the next plan to destroy"))
            && err.contains("keeps serving"),
        "{err}"
    );
    assert!(err.contains(&format!("ec2.instance.web: waiting to be ready: health check of instance {failed_id}: `test")), "progress is shown: {err}");
    let shown = ok(&run.tend(&moto, &["state", "show", "ec2.instance.web"]));
    assert!(shown.contains(&old), "state still records the old instance: {shown}");
    let listed = ok(&run.tend(&moto, &["state", "list"]));
    assert!(listed.contains(&format!("ec2.instance.web[deposed-{failed_id}]")), "the failed one is recorded, not leaked: {listed}");
    // A healthy replacement: the leftover is cleaned up, the old one retired.
    run.write(&format!(
        "{}{}",
        network(),
        web(AMI2, "t2.micro", &format!("{cbd}\nhealth = {{ command = \"test -n \\\"$TEND_INSTANCE_IP\\\"\", timeout = \"10s\" }}"))
    ));
    ok(&run.tend(&moto, &["apply", "--auto-approve"]));
    let live = moto.instances();
    assert_eq!(live.len(), 1, "{live:?}");
    assert!(live[0]["id"] != old.as_str() && live[0]["id"] != failed["id"]);
    assert_eq!(live[0]["ami"], AMI2);
}

/// An ed25519 key pair for the VMs' SSH hosts: its path and public key.
fn vm_key(run: &Run) -> (PathBuf, String) {
    let key = run.dir.path().join("id_ed25519");
    let keygen = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key).output().expect("ssh-keygen");
    assert!(keygen.status.success());
    let public = fs_err::read_to_string(key.with_extension("pub")).expect("pub").trim().to_string();
    (key, public)
}

/// Instances in NET.0/24 boot as real sshd hosts (tests/testbed/vm-boot.py), stopped with the
/// returned guard.
fn boot_vms(moto: &Moto, fleet: &crate::support::fleet::Fleet, extra: &[&str]) -> Term {
    let boot = Command::new(crate::support::need::testbed_python())
        .arg(crate::support::repo().join("tests/testbed/vm-boot.py"))
        .args(["--endpoint", &moto.url, "--fleet-work", &fleet.work.to_string_lossy(), "--fleet-id", &fleet.id, "--net", &fleet.net, "--boot-delay", "0.5"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("vm-boot.py");
    Term(boot)
}

/// A VPC and subnet in NET.0/24, the key pair `ops`, the instance NAME in it whose SSH port
/// answers before it counts as ready, and the SSH host NAME at its address.
fn lab(net: &str, public: &str, name: &str, run: &Run, key: &std::path::Path) -> String {
    let (key, known) = (key.display(), run.dir.path().join("known_hosts"));
    let known = known.display();
    format!(
        r#"
[ec2.vpc.lab]
cidr_block = "{net}.0/24"

[ec2.subnet.lab]
vpc_id = "${{ec2.vpc.lab.id}}"
cidr_block = "{net}.0/24"

# No `name`: the key pair is named after the resource, `ops`.
[ec2.key_pair.ops]
public_key = "{public}"

[ec2.instance.{name}]
ami = "{AMI}"
instance_type = "t2.micro"
subnet_id = "${{ec2.subnet.lab.id}}"
key_name = "${{ec2.key_pair.ops.name}}"
health = {{ tcp = 22, timeout = "60s" }}

[host.ssh.{name}]
address = "${{ec2.instance.{name}.private_ip}}"
user = "root"
identity = "{key}"
known_hosts = "{known}"
trust_on_first_use = true
"#
    )
}

#[test]
fn a_vm_is_created_and_its_address_flows_into_the_ssh_host_that_configures_it() {
    let moto = Moto::start();
    let fleet = crate::support::fleet::Fleet::up(1);
    let run = Run::new();
    let (key, public) = vm_key(&run);
    let _boot = boot_vms(&moto, &fleet, &[]);
    run.write(&format!(
        r#"{lab}
[host.file.motd]
on = ["web"]
path = "/srv/motd"
content = "configured by tend on ${{ec2.instance.web.id}}\n"
"#,
        lab = lab(&fleet.net, &public, "web", &run, &key),
    ));
    let plan = ok(&run.tend(&moto, &["plan"]));
    assert!(plan.contains("+ address") && plan.contains("(known after apply)"), "{plan}");
    let out = run.tend(&moto, &["apply", "--auto-approve"]);
    ok(&out);
    let live = moto.instances();
    assert_eq!(live.len(), 1);
    let ip = live[0]["private_ip"].as_str().expect("ip").to_string();
    assert!(ip.starts_with(&format!("{}.", fleet.net)), "{ip}");
    let host = format!("vm{}", ip.rsplit('.').next().unwrap_or_default());
    let written = fs_err::read_to_string(fleet.work.join("hosts").join(&host).join("srv/motd")).unwrap_or_else(|e| panic!("{e}\n{}", text(&out)));
    assert_eq!(written, format!("configured by tend on {}\n", live[0]["id"].as_str().unwrap_or_default()));
    assert_eq!(run.tend(&moto, &["plan", "--detailed-exitcode"]).status.code(), Some(0), "converged");
    // A new image with create-before-destroy: the new VM boots, its host is configured, and
    // only then is the old VM terminated.
    let cfg = fs_err::read_to_string(run.cfg().join("tend.toml")).expect("config");
    let cfg = cfg.replace(&format!("ami = \"{AMI}\""), &format!("ami = \"{AMI2}\"\nlifecycle = {{ create_before_destroy = true }}"));
    write_tree(&run.cfg(), &[("tend.toml", &cfg)]);
    let out = run.tend(&moto, &["apply", "--auto-approve"]);
    ok(&out);
    let live = moto.instances();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0]["ami"], AMI2);
    let new_ip = live[0]["private_ip"].as_str().expect("ip").to_string();
    assert_ne!(new_ip, ip);
    let new_host = format!("vm{}", new_ip.rsplit('.').next().unwrap_or_default());
    let written = fs_err::read_to_string(fleet.work.join("hosts").join(&new_host).join("srv/motd")).unwrap_or_else(|e| panic!("{e}\n{}", text(&out)));
    assert_eq!(written, format!("configured by tend on {}\n", live[0]["id"].as_str().unwrap_or_default()));
    assert_eq!(run.tend(&moto, &["plan", "--detailed-exitcode"]).status.code(), Some(0), "converged after the replacement");
}

#[test]
fn a_vm_boots_its_ssh_host_is_configured_and_the_cluster_at_its_address_gets_workloads_in_one_apply() {
    crate::support::need::need(&[crate::support::need::Need::Kubectl]);
    let moto = Moto::start();
    let fleet = crate::support::fleet::Fleet::up(1);
    let run = Run::new();
    let (key, public) = vm_key(&run);
    // The cluster's CA is made beforehand (as a k3s install would be given one); its token is a
    // secret of the repository.
    let ca = run.dir.path().join("ca");
    fs_err::create_dir_all(&ca).expect("mkdir");
    let openssl = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=lab-ca",
        ])
        .current_dir(&ca)
        .output()
        .expect("openssl");
    assert!(openssl.status.success(), "{}", String::from_utf8_lossy(&openssl.stderr));
    let token = "k3s-token-4f0c2b9e";
    let id = age::x25519::Identity::generate();
    let age_key = run.dir.path().join("tend.key");
    fs_err::write(&age_key, format!("{}\n", age::secrecy::ExposeSecret::expose_secret(&id.to_string()))).expect("key");
    let mut sealed = Vec::new();
    let mut w =
        age::Encryptor::with_recipients(std::iter::once(&id.to_public() as &dyn age::Recipient)).expect("recipients").wrap_output(&mut sealed).expect("wrap");
    std::io::Write::write_all(&mut w, token.as_bytes()).expect("write");
    w.finish().expect("finish");
    write_tree(&run.cfg(), &[]);
    fs_err::create_dir_all(run.cfg().join("secrets")).expect("mkdir");
    fs_err::write(run.cfg().join("secrets/k3s.age"), sealed).expect("write");
    // Instances in NET.0/24 boot as real sshd hosts, each serving a Kubernetes API (a test
    // double) on its address.
    let kube_work = run.dir.path().join("clusters");
    let _boot = boot_vms(&moto, &fleet, &["--kube-work", &kube_work.to_string_lossy(), "--kube-ca", &ca.to_string_lossy(), "--kube-token", token]);
    let ca_pem = fs_err::read_to_string(ca.join("ca.crt")).expect("ca");
    run.write(&format!(
        r#"{lab}
[host.file.k3s]
on = ["cp"]
path = "/srv/k3s.yaml"
content = "node-ip: ${{ec2.instance.cp.private_ip}}\n"

[secret.k3s]
file = "secrets/k3s.age"

[kube.cluster.cp]
server = "https://${{ec2.instance.cp.private_ip}}:6443"
ca = """{ca_pem}"""
token = "${{secret.k3s}}"
depends_on = ["host.file.k3s"]

[kube.manifests.app]
path = "k8s"
namespace = "app"
"#,
        lab = lab(&fleet.net, &public, "cp", &run, &key),
    ));
    write_tree(
        &run.cfg(),
        &[(
            "k8s/app.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: app\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: node\ndata:\n  ip: ${ec2.instance.cp.private_ip}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n        envFrom:\n        - configMapRef: {name: node}\n",
        )],
    );
    let age_key = age_key.to_string_lossy().into_owned();
    let env = [("TEND_AGE_KEY_FILE", age_key.as_str())];
    let plan = ok(&run.tend_env(&moto, &["plan"], &env));
    assert!(plan.contains("+ kube.manifests.app[apps/Deployment/app/web]") && plan.contains("(known after apply)"), "{plan}");
    // One apply from empty: the VM, its SSH configuration, then the cluster at its address.
    let out = run.tend_env(&moto, &["apply", "--auto-approve"], &env);
    let live = moto.instances();
    let ip = live[0]["private_ip"].as_str().expect("ip").to_string();
    let host = format!("vm{}", ip.rsplit('.').next().unwrap_or_default());
    let server_log = fs_err::read_to_string(kube_work.join(&host).join("server.log")).unwrap_or_default();
    assert!(out.status.success(), "{}\nthe VM's API server said:\n{server_log}", text(&out));
    assert_eq!(fs_err::read_to_string(fleet.work.join("hosts").join(&host).join("srv/k3s.yaml")).expect("configured"), format!("node-ip: {ip}\n"));
    let kubeconfig = kube_work.join(&host).join("kubeconfig");
    let get = |what: &[&str]| -> serde_json::Value {
        let o = Command::new("kubectl").arg("--kubeconfig").arg(&kubeconfig).arg("get").args(what).args(["-o", "json"]).output().expect("kubectl");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).expect("json")
    };
    assert_eq!(get(&["configmap", "node", "-n", "app"])["data"]["ip"], ip.as_str(), "the VM's address reached the cluster it serves");
    assert_eq!(get(&["deployment", "web", "-n", "app"])["status"]["readyReplicas"], 1);
    assert!(!text(&out).contains(token), "the token never shows");
    assert_eq!(run.tend_env(&moto, &["plan", "--detailed-exitcode"], &env).status.code(), Some(0), "converged");
}

/// Stops the process it holds with SIGTERM (vm-boot.py removes its hosts then), pass or fail.
struct Term(std::process::Child);

impl Drop for Term {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

#[test]
fn prevent_destroy_and_termination_protection_keep_an_instance() {
    let moto = Moto::start();
    let run = Run::new();
    let inst = |ami: &str, extra: &str| format!("[ec2.instance.db]\nami = \"{ami}\"\ninstance_type = \"t2.micro\"\n{extra}\n");
    run.write(&inst(AMI, "lifecycle = { prevent_destroy = true }"));
    ok(&run.tend(&moto, &["apply", "--auto-approve"]));
    // A replacement or a removal is refused at plan time, naming the field.
    run.write(&inst(AMI2, "lifecycle = { prevent_destroy = true }"));
    let out = run.tend(&moto, &["plan"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("prevent_destroy") && err.contains("would replace it (changing ami forces replacement)"), "{err}");
    // Termination protection, turned on in place: EC2 itself refuses, and the error says what to do.
    run.write(&inst(AMI, "disable_api_termination = true"));
    ok(&run.tend(&moto, &["apply", "--auto-approve"]));
    let id = moto.instances()[0]["id"].as_str().expect("id").to_string();
    let protected = moto.boto(&format!(
        "print(json.dumps(ec2.describe_instance_attribute(InstanceId='{id}', Attribute='disableApiTermination')['DisableApiTermination']['Value']))"
    ));
    assert_eq!(protected, true);
    // A config that declares nothing would destroy everything: refused unless asked for.
    run.write("");
    let out = run.tend(&moto, &["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("this plan would destroy all 1 resource in state and keep nothing"), "{}", text(&out));
    let out = run.tend(&moto, &["apply", "--auto-approve", "--allow-destroy-all"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TerminateInstances") && err.contains("set disable_api_termination = false"), "{err}");
    assert_eq!(moto.instances().len(), 1, "still running");
    run.write(&inst(AMI, "disable_api_termination = false"));
    ok(&run.tend(&moto, &["apply", "--auto-approve"]));
    run.write("");
    ok(&run.tend(&moto, &["apply", "--auto-approve", "--allow-destroy-all"]));
    assert!(moto.instances().is_empty());
}

/// The secret as it may travel: plain, and base64 at each of the three alignments it can have
/// inside a longer text, plain and percent-encoded.
fn encoded_forms(secret: &str) -> Vec<String> {
    use base64::Engine;
    let mut forms = vec![secret.to_string()];
    for skip in 0..3 {
        let part = &secret.as_bytes()[skip..];
        let whole = &part[..part.len() / 3 * 3];
        let b64 = base64::engine::general_purpose::STANDARD.encode(whole);
        forms.push(b64.replace('+', "%2B").replace('/', "%2F"));
        forms.push(b64);
    }
    forms
}

#[test]
fn a_secret_in_user_data_and_tags_is_never_stored_and_three_applies_replace_nothing() {
    use std::io::Write;
    let moto = Moto::start();
    let run = Run::new();
    let canary = "canary-ec2-5b1d-do-not-store";
    // An age identity and a secret file, made with the age library.
    let id = age::x25519::Identity::generate();
    let key = run.dir.path().join("tend.key");
    fs_err::write(&key, format!("{}\n", age::secrecy::ExposeSecret::expose_secret(&id.to_string()))).expect("key");
    let recipient = id.to_public();
    let encryptor = age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient)).expect("recipient");
    let mut sealed = Vec::new();
    let mut w = encryptor.wrap_output(&mut sealed).expect("encrypt");
    w.write_all(format!("token: {canary}\n").as_bytes()).expect("write");
    w.finish().expect("finish");
    fs_err::create_dir_all(run.cfg().join("secrets")).expect("mkdir");
    fs_err::write(run.cfg().join("secrets/app.yaml.age"), sealed).expect("secret");
    let body = format!(
        "[secret.app]\nfile = \"secrets/app.yaml.age\"\n\n[ec2.instance.web]\nami = \"{AMI}\"\ninstance_type = \"t2.micro\"\nuser_data = \"#!/bin/sh\\nexport TOKEN=${{secret.app.token}}\\n\"\ntags = {{ Name = \"web\", Token = \"${{secret.app.token}}\" }}\n"
    );
    run.write(&body);
    let env = [("TEND_AGE_KEY_FILE", key.to_str().expect("utf-8"))];
    // Every log on, the SDK's wire logs included: what they print is redacted, also the secret
    // encoded as it travels (base64 in user_data, percent-encoded in the query).
    let traced = [("TEND_AGE_KEY_FILE", key.to_str().expect("utf-8")), ("RUST_LOG", "trace")];
    let first = run.tend_env(&moto, &["apply", "--auto-approve"], &traced);
    assert!(first.status.success(), "{}", text(&first));
    let logged = String::from_utf8_lossy(&first.stderr);
    assert!(logged.contains("TRACE") && logged.contains("RunInstances"), "wire logs were on");
    for form in encoded_forms(canary) {
        assert!(!logged.contains(&form), "the secret is in the trace log as {form}");
    }
    let id0 = moto.instances()[0]["id"].as_str().expect("id").to_string();
    for round in 0..3 {
        let plan = run.tend_env(&moto, &["plan", "--detailed-exitcode"], &env);
        assert_eq!(plan.status.code(), Some(0), "round {round}: an unchanged secret plans as no change\n{}", text(&plan));
        let again = run.tend_env(&moto, &["apply", "--auto-approve"], &env);
        assert!(again.status.success(), "{}", text(&again));
        assert!(!text(&plan).contains(canary) && !text(&again).contains(canary), "round {round}: the secret was printed");
    }
    let live = moto.instances();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0]["id"], id0.as_str(), "never replaced");
    assert_eq!(live[0]["tags"]["Token"], canary, "the tag itself carries the secret to EC2");
    // Nothing tend keeps holds it: state (every table), saved plans, JSON plans.
    for entry in fs_err::read_dir(run.dir.path()).expect("dir").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("state.db") {
            let bytes = fs_err::read(entry.path()).expect("state");
            assert!(!String::from_utf8_lossy(&bytes).contains(canary), "the secret is in {name}");
        }
    }
    let json = run.tend_env(&moto, &["plan", "--json"], &env);
    assert!(!String::from_utf8_lossy(&json.stdout).contains(canary));
    let shown = run.tend_env(&moto, &["state", "show", "ec2.instance.web"], &env);
    assert!(shown.status.success() && !text(&shown).contains(canary), "{}", text(&shown));
    assert!(String::from_utf8_lossy(&shown.stdout).contains("(sensitive)"), "{}", text(&shown));
    // A changed secret is a change (user_data forces a replacement), shown without its value.
    let encryptor = age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient)).expect("recipient");
    let mut sealed = Vec::new();
    let mut w = encryptor.wrap_output(&mut sealed).expect("encrypt");
    w.write_all(b"token: rotated-value\n").expect("write");
    w.finish().expect("finish");
    fs_err::write(run.cfg().join("secrets/app.yaml.age"), sealed).expect("secret");
    let plan = run.tend_env(&moto, &["plan", "--detailed-exitcode"], &env);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let out = String::from_utf8_lossy(&plan.stdout);
    assert!(out.contains("user_data") && !out.contains("rotated-value") && !out.contains(canary), "{out}");
}
