//! `tend-bench agent`: how fast a push reaches the targets through the webhook, and what an idle
//! agent costs.
//!
//! A real Git server (`git-daemon`) serves a bare repository whose `post-receive` hook posts a
//! signed GitHub push event to the agent (the way a forge would). Each push changes one file of
//! a 20-file config. Measured per push: push start → the changed file has its new content on
//! disk ("converged"), the agent's own reconcile time for it (fetch + plan + apply, from the
//! delta of `tend_reconcile_duration_seconds_sum` on /metrics), and their difference: the
//! notification latency the goal is about (push, hook, webhook, wake-up). Baseline in the same
//! run: the `git push` alone (hook included). Then the agent idles for `--idle` seconds with
//! `--interval 30s --drift-interval 30s` (two fetches and plans a minute): CPU seconds from
//! /proc/PID/stat and RSS (current and peak) from /proc/PID/status.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()?;
    if !out.status.success() {
        bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_port(port: u16) -> Result<()> {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    bail!("nothing listens on {port}")
}

fn get(port: u16, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    Ok(resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

fn reconcile_seconds(port: u16) -> Result<f64> {
    let m = get(port, "/metrics")?;
    let line = m.lines().find(|l| l.starts_with("tend_reconcile_duration_seconds_sum ")).context("metrics")?;
    Ok(line.rsplit(' ').next().context("value")?.parse()?)
}

fn config(out: &Path, version: usize) -> String {
    use std::fmt::Write;
    let mut t = String::from("[project]\nname = \"agent-bench\"\n\n[host.local.me]\n");
    for i in 0..20 {
        let content = if i == 0 { format!("version = {version}") } else { format!("setting_{i} = {}", i * 7) };
        let _ = write!(t, "\n[host.file.f{i:02}]\npath = \"{}/f{i:02}.conf\"\ncontent = \"{content}\\n\"\n", out.display());
    }
    t
}

fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = fs_err::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    Ok(ticks / 100.0) // USER_HZ is 100 on Linux
}

fn rss_mb(pid: u32, field: &str) -> Result<f64> {
    let status = fs_err::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)).context("rss")?.parse()?;
    Ok(kb / 1024.0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.len() % 2 == 1 { v[v.len() / 2] } else { f64::midpoint(v[v.len() / 2 - 1], v[v.len() / 2]) }
}

/// Run the benchmark.
#[allow(clippy::print_stdout, clippy::too_many_lines)]
pub fn run(tend: &Path, pushes: usize, idle: u64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let (srv, work, out) = (d.join("srv"), d.join("work"), d.join("out"));
    for p in [&srv, &work, &out] {
        fs_err::create_dir_all(p)?;
    }
    let bare = srv.join("cfg.git");
    fs_err::create_dir_all(&bare)?;
    git(&bare, &["init", "-q", "--bare"])?;
    git(&bare, &["symbolic-ref", "HEAD", "refs/heads/main"])?;
    git(&work, &["init", "-q", "-b", "main"])?;
    let commit = |version: usize| -> Result<()> {
        fs_err::create_dir_all(work.join("cfg"))?;
        fs_err::write(work.join("cfg/tend.toml"), config(&out, version))?;
        git(&work, &["add", "-A"])?;
        git(&work, &["commit", "-q", "-m", &format!("v{version}")])?;
        Ok(())
    };
    commit(0)?;
    git(&work, &["push", "-q", &bare.to_string_lossy(), "main"])?;

    let exec_path = git(d, &["--exec-path"])?;
    let gport = free_port()?;
    let _daemon = Kill(
        Command::new(Path::new(&exec_path).join("git-daemon"))
            .args(["--reuseaddr", "--listen=127.0.0.1", &format!("--port={gport}"), &format!("--base-path={}", srv.display()), "--export-all"])
            .arg(&srv)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("git-daemon")?,
    );
    wait_port(gport)?;
    let url = format!("git://127.0.0.1:{gport}/cfg.git");
    let aport = free_port()?;
    let agent = |port: u16, extra: &[&str]| -> Result<Kill> {
        let child = Command::new(tend)
            .args(["--state", &d.join(format!("state-{port}.db")).to_string_lossy(), "--source-cache", &d.join("cache").to_string_lossy()])
            .args(["agent", "--source", &url, "-C", "cfg", "--listen", &format!("127.0.0.1:{port}"), "--webhook-secret", "bench-secret"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        wait_port(port)?;
        Ok(Kill(child))
    };
    let hook = format!(
        "#!/bin/sh\nwhile read -r old new ref; do\npython3 - \"$new\" \"$ref\" <<'PY'\nimport hashlib, hmac, json, sys, urllib.request\nbody = json.dumps({{\"ref\": sys.argv[2], \"after\": sys.argv[1]}}).encode()\nsig = \"sha256=\" + hmac.new(b\"bench-secret\", body, hashlib.sha256).hexdigest()\nreq = urllib.request.Request(\"http://127.0.0.1:{aport}/hooks/github\", data=body, method=\"POST\", headers={{\"X-GitHub-Event\": \"push\", \"X-Hub-Signature-256\": sig}})\nurllib.request.urlopen(req).read()\nPY\ndone\n"
    );
    let hook_path = bare.join("hooks/post-receive");
    fs_err::write(&hook_path, hook)?;
    fs_err::set_permissions(&hook_path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;

    // Latency: only the webhook can bring a push in (interval 1 h).
    let latency_agent = agent(aport, &["--interval", "1h"])?;
    let target = out.join("f00.conf");
    let until = Instant::now() + Duration::from_mins(1);
    while fs_err::read_to_string(&target).unwrap_or_default() != "version = 0\n" {
        if Instant::now() > until {
            bail!("the agent did not converge the first commit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (mut total, mut own, mut notify, mut push_only) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for version in 1..=pushes {
        commit(version)?;
        let before = reconcile_seconds(aport)?;
        let want = format!("version = {version}\n");
        let started = Instant::now();
        git(&work, &["push", "-q", &bare.to_string_lossy(), "main"])?;
        push_only.push(started.elapsed().as_secs_f64());
        while fs_err::read_to_string(&target).unwrap_or_default() != want {
            if started.elapsed() > Duration::from_mins(1) {
                bail!("push {version} did not converge within 60 s");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let t = started.elapsed().as_secs_f64();
        // The reconcile's own time, recorded once it has finished.
        std::thread::sleep(Duration::from_millis(200));
        let r = reconcile_seconds(aport)? - before;
        total.push(t);
        own.push(r);
        notify.push((t - r).max(0.0));
    }
    drop(latency_agent);
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    println!("push → converged through the webhook ({pushes} pushes, one file of 20 changed each):\n");
    println!("| measure | min s | median s |");
    println!("|---|---:|---:|");
    println!("| git push alone (baseline: hook and webhook call included) | {:.3} | {:.3} |", min(&push_only), median(&mut push_only.clone()));
    println!("| push → file converged | {:.3} | {:.3} |", min(&total), median(&mut total.clone()));
    println!("| the reconcile itself (fetch + plan + apply) | {:.3} | {:.3} |", min(&own), median(&mut own.clone()));
    println!("| **latency excluding the reconcile** | {:.3} | {:.3} |", min(&notify), median(&mut notify.clone()));
    println!(
        "\nratio push→converged / git push: min {:.2}, median {:.2}",
        min(&total) / min(&push_only),
        median(&mut total.clone()) / median(&mut push_only.clone())
    );

    // Idle: nothing changes; the agent still fetches and plans twice a minute.
    let iport = free_port()?;
    let idle_agent = agent(iport, &["--interval", "30s", "--drift-interval", "30s"])?;
    let pid = idle_agent.0.id();
    std::thread::sleep(Duration::from_secs(3)); // first reconcile (a no-op: already converged)
    let cpu0 = cpu_seconds(pid)?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(idle));
    let cpu = cpu_seconds(pid)? - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    let (rss, hwm) = (rss_mb(pid, "VmRSS:")?, rss_mb(pid, "VmHWM:")?);
    let reconciles = get(iport, "/metrics")?
        .lines()
        .find(|l| l.starts_with("tend_reconcile_duration_seconds_count "))
        .and_then(|l| l.rsplit(' ').next().map(str::to_string))
        .unwrap_or_default();
    println!("\nidle agent over {wall:.0} s (--interval 30s --drift-interval 30s, {reconciles} reconciles in all):\n");
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| CPU | {:.3} s = {:.2} % of one core |", cpu, cpu / wall * 100.0);
    println!("| RSS now / peak | {rss:.1} MB / {hwm:.1} MB |");
    drop(idle_agent);
    Ok(())
}
