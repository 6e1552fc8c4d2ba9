//! `tend-bench ec2`: a plan that refreshes N managed EC2 instances, against the same refresh done
//! one API call per resource.
//!
//! The moto EC2 server (tests/testbed/moto.sh) gets N instances tagged for tend's project;
//! `tend apply` records them (no launches). Then, per run: `tend plan` (which observes all of them)
//! and, as the baseline in the same run, N `DescribeInstances(InstanceIds=[id])` calls made with
//! the same SDK, one after another and 16 at a time. API calls are counted from moto's request
//! log. Figures: min and median seconds, calls, and ratios.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

struct Moto {
    dir: tempfile::TempDir,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(testbed().join("moto.sh")).arg("stop").arg(self.dir.path()).output();
    }
}

/// The repository's test servers (tests/testbed).
fn testbed() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/testbed")
}

fn requests(m: &Moto) -> usize {
    fs_err::read_to_string(m.dir.path().join("moto.log")).map_or(0, |l| l.lines().filter(|l| l.contains("\"POST ")).count())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.len() % 2 == 1 { v[v.len() / 2] } else { f64::midpoint(v[v.len() / 2 - 1], v[v.len() / 2]) }
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Run the benchmark.
#[allow(clippy::print_stdout, clippy::too_many_lines)]
pub fn run(tend: &Path, n: usize, runs: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = Command::new("bash").arg(testbed().join("moto.sh")).arg("start").arg(dir.path()).output()?;
    if !out.status.success() {
        bail!("moto did not start (tests/testbed/install.sh installs it): {}", String::from_utf8_lossy(&out.stderr));
    }
    let moto = Moto { url: String::from_utf8_lossy(&out.stdout).trim().to_string(), dir };
    let root = String::from_utf8_lossy(&Command::new("bash").arg(testbed().join("install.sh")).arg("--print").output()?.stdout).trim().to_string();
    let python = Path::new(&root).join("venv/bin/python");
    let setup = format!(
        "import boto3\nec2 = boto3.client('ec2', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\nfor n in range({n}):\n  ec2.run_instances(ImageId='ami-760aaa0f', InstanceType='t2.micro', MinCount=1, MaxCount=1, TagSpecifications=[{{'ResourceType': 'instance', 'Tags': [{{'Key': 'tend:managed-by', 'Value': 'ec2-bench'}}, {{'Key': 'tend:address', 'Value': 'ec2.instance.n%05d' % n}}]}}])\n",
        moto.url
    );
    let started = Instant::now();
    let made = Command::new(&python).arg("-c").arg(setup).status()?;
    if !made.success() {
        bail!("creating {n} instances on moto failed");
    }
    println!("setup: {n} tagged instances on moto in {:.1} s", started.elapsed().as_secs_f64());
    let cfg = tempfile::tempdir()?;
    let mut text = String::from("[project]\nname = \"ec2-bench\"\nparallelism = 32\n\n[providers.ec2]\nregion = \"us-east-1\"\n\n");
    for i in 0..n {
        text.push_str(&format!("[ec2.instance.n{i:05}]\nami = \"ami-760aaa0f\"\ninstance_type = \"t2.micro\"\n\n"));
    }
    fs_err::write(cfg.path().join("tend.toml"), text)?;
    let state = cfg.path().join("state.db");
    let tend_cmd = |args: &[&str]| -> Result<std::process::Output> {
        Ok(Command::new(tend)
            .args(["-C", &cfg.path().to_string_lossy(), "--state", &state.to_string_lossy()])
            .args(args)
            .env("AWS_ENDPOINT_URL", &moto.url)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()?)
    };
    let started = Instant::now();
    let rec = tend_cmd(&["apply", "--auto-approve"])?;
    if !rec.status.success() {
        bail!("recording failed: {}", String::from_utf8_lossy(&rec.stderr));
    }
    println!("setup: tend recorded them in {:.1} s", started.elapsed().as_secs_f64());
    let ids: Vec<String> = {
        let list = Command::new(&python)
            .arg("-c")
            .arg(format!("import boto3\nec2 = boto3.client('ec2', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\nfor p in ec2.get_paginator('describe_instances').paginate():\n  for r in p['Reservations']:\n    for i in r['Instances']: print(i['InstanceId'])", moto.url))
            .output()?;
        String::from_utf8_lossy(&list.stdout).lines().map(str::to_string).collect()
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let client = rt.block_on(async {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&moto.url)
            .credentials_provider(aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "bench"))
            .load()
            .await;
        aws_sdk_ec2::Client::new(&conf)
    });
    let (mut plan_t, mut seq_t, mut par_t) = (Vec::new(), Vec::new(), Vec::new());
    let (mut plan_calls, mut seq_calls, mut par_calls) = (0, 0, 0);
    for _ in 0..runs {
        let before = requests(&moto);
        let t = Instant::now();
        let p = tend_cmd(&["plan", "--detailed-exitcode"])?;
        plan_t.push(t.elapsed().as_secs_f64());
        if p.status.code() != Some(0) {
            bail!("the plan is not a no-op: {}", String::from_utf8_lossy(&p.stdout).lines().last().unwrap_or_default());
        }
        plan_calls = requests(&moto) - before;

        let before = requests(&moto);
        let t = Instant::now();
        rt.block_on(async {
            for id in &ids {
                client.describe_instances().instance_ids(id).send().await.context("describe")?;
            }
            anyhow::Ok(())
        })?;
        seq_t.push(t.elapsed().as_secs_f64());
        seq_calls = requests(&moto) - before;

        let before = requests(&moto);
        let t = Instant::now();
        rt.block_on(async {
            let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
            let mut tasks = tokio::task::JoinSet::new();
            for id in ids.clone() {
                let (c, sem) = (client.clone(), sem.clone());
                tasks.spawn(async move {
                    let _p = sem.acquire().await;
                    c.describe_instances().instance_ids(id).send().await.map(|_| ())
                });
            }
            while let Some(r) = tasks.join_next().await {
                r.context("join")?.context("describe")?;
            }
            anyhow::Ok(())
        })?;
        par_t.push(t.elapsed().as_secs_f64());
        par_calls = requests(&moto) - before;
    }
    println!("\nrefresh of {n} managed instances ({runs} runs; API calls counted in moto's request log):\n");
    println!("| what | API calls | min s | median s | vs tend plan (median) |");
    println!("|---|---:|---:|---:|---:|");
    let pm = median(&mut plan_t.clone());
    println!("| `tend plan` (one paginated DescribeInstances, filtered by tend's tag) | {plan_calls} | {:.3} | {pm:.3} | 1.00 |", min(&plan_t));
    let sm = median(&mut seq_t.clone());
    println!("| one DescribeInstances per instance, one after another | {seq_calls} | {:.3} | {sm:.3} | {:.1}× slower |", min(&seq_t), sm / pm);
    let qm = median(&mut par_t.clone());
    println!("| one DescribeInstances per instance, 16 at a time | {par_calls} | {:.3} | {qm:.3} | {:.1}× slower |", min(&par_t), qm / pm);
    println!("\n(`tend plan` includes process start, config load, state read and planning; the baselines only the calls.)");
    Ok(())
}
