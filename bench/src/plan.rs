//! `tend-bench plan-latency`: planning N instances whose provider takes a fixed latency per
//! `plan` call (the in-memory test provider, given 20 ms per call: a cloud API), through the
//! library. The baseline, measured in the same run, is the same plan with no latency: the
//! engine's own work. The goal: 1,000 instances with 20 ms per call plan in under 2 s (one call
//! after another would take 20 s).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tend::config::LoadOptions;
use tend::registry::Registry;
use tend::workspace::Workspace;
use tend_provider_testing::FakeFactory;

async fn plan_once(root: &Path, state: &Path, latency: Duration) -> Result<(f64, usize)> {
    let fake = FakeFactory::new().with_plan_latency(latency);
    let opts = LoadOptions { root: root.to_path_buf(), ..LoadOptions::default() };
    let mut ws = Workspace::load(Registry::builtin().with(fake), &opts, Some(state.to_path_buf())).map_err(|e| anyhow::anyhow!("{e}"))?;
    let snapshot = ws.read_state().await?;
    let start = Instant::now();
    let plan = ws.plan(&snapshot).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((start.elapsed().as_secs_f64(), plan.changes.len()))
}

fn min_median(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let median = if v.len() % 2 == 1 { v[v.len() / 2] } else { f64::midpoint(v[v.len() / 2 - 1], v[v.len() / 2]) };
    (v[0], median)
}

/// Run the benchmark and print a table.
#[allow(clippy::print_stdout)]
pub fn run(sizes: &[usize], latency_ms: u64, runs: usize) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let latency = Duration::from_millis(latency_ms);
    println!("plan with {latency_ms} ms per provider plan call; {runs} runs per scenario; baseline: the same plan with no latency, same run");
    println!();
    println!("| N | scenario | min s | median s | min ×baseline | median ×baseline |");
    println!("|---:|---|---:|---:|---:|---:|");
    for &n in sizes {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("cfg");
        fs_err::create_dir_all(&root)?;
        let mut text = String::with_capacity(n * 48);
        for i in 0..n {
            text.push_str(&format!("[fake.thing.t{i:06}]\nvalue = \"v{i}\"\n\n"));
        }
        fs_err::write(root.join("tend.toml"), text)?;
        let state = dir.path().join("state.db");
        let (mut base, mut slow) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let (b, planned) = rt.block_on(plan_once(&root, &state, Duration::ZERO))?;
            let (s, _) = rt.block_on(plan_once(&root, &state, latency))?;
            anyhow::ensure!(planned == n, "planned {planned} of {n}");
            base.push(b);
            slow.push(s);
        }
        let (bmin, bmed) = min_median(base);
        let (smin, smed) = min_median(slow);
        println!("| {n} | no latency (baseline) | {bmin:.3} | {bmed:.3} | 1.00 | 1.00 |");
        println!("| {n} | {latency_ms} ms per call | {smin:.3} | {smed:.3} | {:.2} | {:.2} |", smin / bmin, smed / bmed);
    }
    Ok(())
}

/// `--sizes 1000 --latency-ms 20 --runs 5`.
pub fn main(args: &[String]) -> Result<()> {
    let sizes: Vec<usize> = super::flag(args, "--sizes").unwrap_or("1000").split(',').map(str::parse).collect::<Result<_, _>>().context("--sizes")?;
    let latency: u64 = super::flag(args, "--latency-ms").unwrap_or("20").parse().context("--latency-ms")?;
    let runs: usize = super::flag(args, "--runs").unwrap_or("5").parse().context("--runs")?;
    run(&sizes, latency, runs)
}
