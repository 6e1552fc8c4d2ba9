//! Benchmarks of the `tend` binary on generated configs.
//!
//! ```text
//! tend-bench local-files [--sizes 1000,10000] [--runs 5] [--tend PATH]
//! tend-bench agent [--pushes 9] [--idle 60] [--tend PATH]
//! tend-bench ec2 [--instances 1000] [--runs 5] [--tend PATH]
//! tend-bench plan-latency [--sizes 1000] [--latency-ms 20] [--runs 5]
//! tend-bench kube [--sets 1000] [--runs 3] [--tend PATH]
//! ```
//!
//! `kube` is described in [`kube`].
//!
//! `agent` is described in [`agent`].
//!
//! For each size N it generates N `host.file` resources on the local host and measures, with
//! the release binary, over several runs: `validate`, `plan` when nothing changed, `apply`
//! from empty, and `apply` when nothing changed. Each run is timed and its peak RSS taken from
//! `getrusage` of a measuring child process that runs exactly one command. The baseline,
//! measured in the same run, is `sha256sum` over the same N files: the least work that observes
//! their content. "Apply from empty" has its own baseline, run alternately with it under the
//! same conditions: the same N files created by a plain loop (a temporary file written, its mode
//! set, renamed into place, as tend writes a file): the file system's share of that figure
//! varies several-fold from one hour to the next on a shared machine. Figures are reported as
//! min and median, and as ratios to their baseline.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

mod agent;
mod ec2;
mod kube;
mod plan;

#[allow(clippy::print_stdout)]
fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("measure") => measure(&args[1..]),
        Some("create-files") => create_files(&args[1..]),
        Some("local-files") => local_files(&args[1..]),
        Some("plan-latency") => plan::main(&args[1..]),
        Some("ec2") => {
            let rest = &args[1..];
            let tend = built_tend(rest)?;
            ec2::run(&tend, flag(rest, "--instances").unwrap_or("1000").parse()?, flag(rest, "--runs").unwrap_or("5").parse()?)
        }
        Some("kube") => {
            let rest = &args[1..];
            let tend = built_tend(rest)?;
            kube::run(&tend, flag(rest, "--sets").unwrap_or("1000").parse()?, flag(rest, "--runs").unwrap_or("3").parse()?)
        }
        Some("agent") => {
            let rest = &args[1..];
            let tend = built_tend(rest)?;
            agent::run(&tend, flag(rest, "--pushes").unwrap_or("9").parse()?, flag(rest, "--idle").unwrap_or("60").parse()?)
        }
        _ => {
            println!(
                "usage: tend-bench local-files [--sizes 1000,10000] [--runs 5] [--tend PATH]\n       tend-bench agent [--pushes 9] [--idle 60] [--tend PATH]\n       tend-bench ec2 [--instances 1000] [--runs 5] [--tend PATH]\n       tend-bench plan-latency [--sizes 1000] [--latency-ms 20] [--runs 5]\n       tend-bench kube [--sets 1000] [--runs 3] [--tend PATH]"
            );
            Ok(())
        }
    }
}

/// Run one command, then print `SECONDS MAXRSS_KB` of it alone.
#[allow(clippy::print_stdout)]
fn measure(cmd: &[String]) -> Result<()> {
    let (prog, rest) = cmd.split_first().context("measure needs a command")?;
    let start = Instant::now();
    let status = Command::new(prog).args(rest).stdout(std::process::Stdio::null()).status().with_context(|| format!("running {prog}"))?;
    let secs = start.elapsed().as_secs_f64();
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)?;
    if !status.success() {
        bail!("{prog} {rest:?} failed: {status}");
    }
    println!("{secs:.6} {}", usage.max_rss());
    Ok(())
}

/// `create-files ROOT N`: the files `generate` configures, written by a plain loop as a script
/// would write them safely (each to a temporary name, mode set, renamed into place): the create
/// baseline.
fn create_files(args: &[String]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let [root, n] = args else { bail!("usage: tend-bench create-files ROOT N") };
    let root = Path::new(root);
    let n: usize = n.parse()?;
    for d in 0..n.min(100) {
        fs_err::create_dir_all(root.join(format!("out/d{d:03}")))?;
    }
    for i in 0..n {
        let dir = root.join(format!("out/d{:03}", i % 100));
        let tmp = dir.join(format!(".f{i:05}.tmp"));
        let mut f = fs_err::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(format!("setting_{i} = {}\n", i * 7).as_bytes())?;
        f.file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
        drop(f);
        fs_err::rename(&tmp, dir.join(format!("f{i:05}.conf")))?;
    }
    Ok(())
}

struct Sample {
    secs: f64,
    rss_kb: u64,
}

fn run_measured(cmd: &[&str]) -> Result<Sample> {
    let me = std::env::current_exe()?;
    let out = Command::new(me).arg("measure").args(cmd).output()?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8(out.stdout)?;
    let mut parts = text.split_whitespace();
    let secs = parts.next().context("seconds")?.parse()?;
    let rss_kb = parts.next().context("rss")?.parse()?;
    Ok(Sample { secs, rss_kb })
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

/// The tend binary `--tend` names, else the release build beside this one; it must exist.
fn built_tend(args: &[String]) -> Result<PathBuf> {
    let tend = flag(args, "--tend").map_or_else(default_tend, PathBuf::from);
    if !tend.exists() {
        bail!("{} not found; build it with `cargo build --release`", tend.display());
    }
    Ok(tend)
}

fn default_tend() -> PathBuf {
    let me = std::env::current_exe().unwrap_or_default();
    me.with_file_name("tend")
}

fn generate(root: &Path, n: usize) -> Result<Vec<PathBuf>> {
    use std::fmt::Write;
    fs_err::create_dir_all(root)?;
    fs_err::write(root.join("tend.toml"), "[project]\nname = \"bench\"\n\n[host.local.this]\n")?;
    fs_err::write(root.join(".gitignore"), "out/\n")?;
    let mut text = String::with_capacity(n * 120);
    let mut paths = Vec::with_capacity(n);
    for i in 0..n {
        let rel = format!("out/d{:03}/f{i:05}.conf", i % 100);
        let _ = write!(text, "[host.file.f{i:05}]\npath = \"${{path.root}}/{rel}\"\ncontent = \"setting_{i} = {}\\n\"\nmode = \"0644\"\n\n", i * 7);
        paths.push(root.join(rel));
    }
    fs_err::write(root.join("files.toml"), text)?;
    Ok(paths)
}

fn stats(samples: &[Sample]) -> (f64, f64, f64, f64) {
    let mut t: Vec<f64> = samples.iter().map(|s| s.secs).collect();
    #[allow(clippy::cast_precision_loss)] // kilobytes of RSS fit in f64 exactly
    let mut r: Vec<f64> = samples.iter().map(|s| s.rss_kb as f64 / 1024.0).collect();
    t.sort_by(f64::total_cmp);
    r.sort_by(f64::total_cmp);
    let median = |v: &[f64]| if v.len() % 2 == 1 { v[v.len() / 2] } else { f64::midpoint(v[v.len() / 2 - 1], v[v.len() / 2]) };
    (t[0], median(&t), r[0], median(&r))
}

#[allow(clippy::print_stdout)]
fn local_files(args: &[String]) -> Result<()> {
    let sizes: Vec<usize> = flag(args, "--sizes").unwrap_or("1000,10000").split(',').map(str::parse).collect::<Result<_, _>>()?;
    let runs: usize = flag(args, "--runs").unwrap_or("5").parse()?;
    let tend = flag(args, "--tend").map_or_else(default_tend, PathBuf::from);
    if !tend.exists() {
        bail!("{} not found; build it with `cargo build --release`", tend.display());
    }
    let tend = tend.to_string_lossy().into_owned();
    println!("tend: {tend}; {runs} runs per scenario; machine: {} cores", std::thread::available_parallelism().map_or(0, usize::from));
    println!();
    println!("| N | scenario | min s | median s | min ×baseline | median ×baseline | peak RSS min MB | peak RSS median MB |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("cfg");
        let paths = generate(&root, n)?;
        let state = dir.path().join("state.db");
        let (root_s, state_s) = (root.to_string_lossy().into_owned(), state.to_string_lossy().into_owned());
        let base = |cmd: &str| -> Vec<String> { vec![tend.clone(), "-C".into(), root_s.clone(), "--state".into(), state_s.clone(), cmd.into()] };
        // The previous run's files are moved aside, not deleted: deleting 10,000 files just
        // before creating them again makes the file system's own work dominate the figure.
        let trash = dir.path().join("trash");
        fs_err::create_dir_all(&trash)?;
        let moved = std::cell::Cell::new(0usize);
        let reset = || -> Result<()> {
            if root.join("out").exists() {
                moved.set(moved.get() + 1);
                fs_err::rename(root.join("out"), trash.join(format!("out-{}", moved.get())))?;
            }
            for suffix in ["", "-wal", "-shm"] {
                let _ = fs_err::remove_file(format!("{state_s}{suffix}"));
            }
            // The previous run's 10,000 files are still being written back: flush them first,
            // or whichever run comes next pays for them.
            std::process::Command::new("sync").status()?;
            Ok(())
        };
        let mut results: Vec<(&str, Vec<Sample>)> = Vec::new();
        // apply from empty, each run after one of its baseline
        let me = std::env::current_exe()?.to_string_lossy().into_owned();
        let n_s = n.to_string();
        let (mut create, mut apply_empty) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            reset()?;
            create.push(run_measured(&[me.as_str(), "create-files", root_s.as_str(), n_s.as_str()])?);
            reset()?;
            let mut cmd = base("apply");
            cmd.push("--auto-approve".into());
            apply_empty.push(run_measured(&cmd.iter().map(String::as_str).collect::<Vec<_>>())?);
        }
        // Now everything exists: baseline and no-op scenarios.
        // The paths go through xargs: 100,000 of them do not fit one command line.
        let list = dir.path().join("paths.txt");
        fs_err::write(&list, paths.iter().map(|p| p.to_string_lossy() + "\n").collect::<String>())?;
        let baseline_cmd: Vec<String> = ["xargs", "-a", &list.to_string_lossy(), "-d", "\n", "sha256sum"].iter().map(ToString::to_string).collect();
        let baseline: Vec<Sample> = (0..runs).map(|_| run_measured(&baseline_cmd.iter().map(String::as_str).collect::<Vec<_>>())).collect::<Result<_>>()?;
        let validate: Vec<Sample> = (0..runs).map(|_| run_measured(&base("validate").iter().map(String::as_str).collect::<Vec<_>>())).collect::<Result<_>>()?;
        let plan: Vec<Sample> = (0..runs).map(|_| run_measured(&base("plan").iter().map(String::as_str).collect::<Vec<_>>())).collect::<Result<_>>()?;
        let mut noop_apply_cmd = base("apply");
        noop_apply_cmd.push("--auto-approve".into());
        let noop_apply: Vec<Sample> = (0..runs).map(|_| run_measured(&noop_apply_cmd.iter().map(String::as_str).collect::<Vec<_>>())).collect::<Result<_>>()?;
        let (bmin, bmed, _, _) = stats(&baseline);
        results.push(("baseline: sha256sum of the N files (through xargs)", baseline));
        results.push(("tend validate", validate));
        results.push(("tend plan, nothing changed", plan));
        results.push(("tend apply, nothing changed", noop_apply));
        for (name, samples) in &results {
            let (tmin, tmed, rmin, rmed) = stats(samples);
            println!("| {n} | {name} | {tmin:.3} | {tmed:.3} | {:.1} | {:.1} | {rmin:.1} | {rmed:.1} |", tmin / bmin, tmed / bmed);
        }
        let (cmin, cmed, create_rss_min, create_rss_med) = stats(&create);
        println!(
            "| {n} | create baseline: the N files written by a plain loop | {cmin:.3} | {cmed:.3} | 1.0 | 1.0 | {create_rss_min:.1} | {create_rss_med:.1} |"
        );
        let (tmin, tmed, rmin, rmed) = stats(&apply_empty);
        println!(
            "| {n} | tend apply from empty (× the create baseline) | {tmin:.3} | {tmed:.3} | {:.1} | {:.1} | {rmin:.1} | {rmed:.1} |",
            tmin / cmin,
            tmed / cmed
        );
    }
    Ok(())
}
