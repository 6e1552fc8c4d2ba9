//! Git sources and the agent against a real Git server (git daemon and smart HTTP).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::git::{GitServer, free_port};

fn config(out: &Path, content: &str) -> String {
    format!(
        "[project]\nname = \"agent-test\"\n\n[host.local.me]\n\n[host.file.app]\npath = \"{}\"\ncontent = \"{content}\\n\"\n",
        out.join("app.conf").display()
    )
}

/// A scratch directory for state, cache and what the config writes.
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new() -> Self {
        Self(tempfile::tempdir().expect("temp dir"))
    }

    fn out(&self) -> PathBuf {
        let p = self.0.path().join("out");
        fs_err::create_dir_all(&p).expect("mkdir");
        p
    }

    fn args(&self) -> Vec<String> {
        vec!["--state".into(), self.0.path().join("state.db").display().to_string(), "--source-cache".into(), self.0.path().join("cache").display().to_string()]
    }

    fn tend(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_tend"))
            .args(self.args())
            .args(args)
            .env("NO_COLOR", "1")
            .env("HOME", self.0.path())
            .stdin(Stdio::null())
            .output()
            .expect("tend runs")
    }

    fn app(&self) -> String {
        fs_err::read_to_string(self.out().join("app.conf")).unwrap_or_default()
    }
}

fn text(o: &Output) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A running `tend agent`, stopped (by PID) when dropped.
struct Agent {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Agent {
    fn start(s: &Scratch, extra: &[&str]) -> Self {
        let port = free_port();
        let log = s.0.path().join(format!("agent-{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_tend"))
            .args(s.args())
            .args(["agent", "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("NO_COLOR", "1")
            .env("HOME", s.0.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs_err::File::create(&log).expect("log").into_parts().0)
            .spawn()
            .expect("agent starts");
        let agent = Self { child, port, log };
        wait_until("the agent listens", 10, || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        agent
    }

    fn http(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
        http(self.port, method, path, headers, body)
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.http("GET", "/status", &[], "").1).expect("status is JSON")
    }

    fn log(&self) -> String {
        fs_err::read_to_string(&self.log).unwrap_or_default()
    }

    fn terminate(&self) {
        let ok = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        assert!(ok.success());
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let code = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {secs} s waiting until {what}");
}

/// `sha256=<hex HMAC-SHA256 of body>`, computed the way the forges do, by another program.
fn github_signature(secret: &str, body: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import hashlib,hmac,sys; print('sha256=' + hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha256).hexdigest())",
            secret,
            body,
        ])
        .output()
        .expect("python3");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A post-receive hook posting a GitHub-style push event signed with `secret`.
fn github_hook(port: u16, secret: &str) -> String {
    format!(
        r#"while read -r old new ref; do
python3 - "$new" "$ref" <<'PY'
import hashlib, hmac, json, sys, urllib.request
body = json.dumps({{"ref": sys.argv[2], "after": sys.argv[1]}}).encode()
sig = "sha256=" + hmac.new(b"{secret}", body, hashlib.sha256).hexdigest()
req = urllib.request.Request("http://127.0.0.1:{port}/hooks/github", data=body, method="POST",
    headers={{"X-GitHub-Event": "push", "X-Hub-Signature-256": sig, "Content-Type": "application/json"}})
urllib.request.urlopen(req).read()
PY
done"#
    )
}

#[test]
fn plan_and_apply_read_one_exact_commit_over_git_daemon_and_smart_http() {
    let mut g = GitServer::new();
    let s = Scratch::new();
    let c1 = g.commit(&[("cfg/tend.toml", &config(&s.out(), "v1"))], "v1");
    g.git(&["tag", "v1.0.0"]);
    let c2 = g.commit(&[("cfg/tend.toml", &config(&s.out(), "v2"))], "v2");
    g.git(&["tag", "v1.1.0"]);
    let c3 = g.commit(&[("cfg/tend.toml", &config(&s.out(), "v3"))], "v3");
    g.git(&["tag", "v2.0.0"]);
    g.push("--tags");
    let daemon = g.start_daemon();
    let web = g.start_http();

    // The highest tag in a semver range, over git://.
    let plan = s.tend(&["plan", "--source", &daemon, "--ref", "semver:>=1.0, <2", "-C", "cfg"]);
    assert!(plan.status.success(), "{}", text(&plan));
    assert!(String::from_utf8_lossy(&plan.stderr).contains(&format!("refs/tags/v1.1.0 at {c2}")), "{}", text(&plan));
    assert!(String::from_utf8_lossy(&plan.stdout).contains("+ host.file.app[me]"), "{}", text(&plan));
    // A tag over smart HTTP, applied; history records the commit.
    let apply = s.tend(&["apply", "--source", &web, "--ref", "v1.0.0", "-C", "cfg", "--auto-approve"]);
    assert!(apply.status.success(), "{}", text(&apply));
    assert_eq!(s.app(), "v1\n");
    // A commit id; the default branch.
    assert!(s.tend(&["apply", "--source", &web, "--ref", &c2, "-C", "cfg", "--auto-approve"]).status.success());
    assert_eq!(s.app(), "v2\n");
    assert!(s.tend(&["apply", "--source", &daemon, "-C", "cfg", "--auto-approve"]).status.success());
    assert_eq!(s.app(), "v3\n");
    let history = s.tend(&["history", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&history.stdout).expect("json");
    let revisions: Vec<&str> = rows.as_array().expect("rows").iter().filter_map(|r| r["revision"].as_str()).collect();
    assert_eq!(revisions, [format!("git:{c1}"), format!("git:{c2}"), format!("git:{c3}")]);
    // The checkout is read-only and named by its commit.
    let checkout = walk_find(&s.0.path().join("cache"), &c3).expect("checkout dir");
    let mode = std::os::unix::fs::PermissionsExt::mode(&fs_err::metadata(checkout.join("cfg/tend.toml")).expect("stat").permissions());
    assert_eq!(mode & 0o222, 0, "checked-out files are read-only");
    // A force-push rewrites main: followed.
    g.git(&["reset", "-q", "--hard", &c1]);
    let c4 = g.commit(&[("cfg/tend.toml", &config(&s.out(), "v4"))], "rewritten");
    let forced = s.tend(&["apply", "--source", &daemon, "-C", "cfg", "--auto-approve"]);
    assert!(String::from_utf8_lossy(&forced.stderr).contains(&c4), "{}", text(&forced));
    assert_eq!(s.app(), "v4\n");
    // Refs that do not exist, and a server that is not there.
    let missing = s.tend(&["plan", "--source", &daemon, "--ref", "nope", "-C", "cfg"]);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("has no branch or tag `nope`") && err.contains("branch main") && err.contains("tag v1.1.0"), "{err}");
    let down = s.tend(&["plan", "--source", &format!("git://127.0.0.1:{}/cfg.git", free_port()), "-C", "cfg"]);
    assert_eq!(down.status.code(), Some(1), "{}", text(&down));
    assert!(String::from_utf8_lossy(&down.stderr).contains("fetching git://127.0.0.1:"), "{}", text(&down));
    let bad = s.tend(&["plan", "--source", &daemon, "--ref", "semver:not a range", "-C", "cfg"]);
    assert_eq!(bad.status.code(), Some(1));
    g.stop_daemon();
}

fn walk_find(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in fs_err::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
        if p.is_dir()
            && let Some(found) = walk_find(&p, name)
        {
            return Some(found);
        }
    }
    None
}

/// A repository whose first commit holds `tend.toml` (made from the scratch directory), served
/// by git daemon, and an agent on it with a long interval: only a webhook (secret
/// `hook-secret`) brings the next commit in time.
fn webhook_agent(tend_toml: impl Fn(&Scratch) -> String) -> (GitServer, Scratch, Agent) {
    let mut g = GitServer::new();
    let s = Scratch::new();
    g.commit(&[("cfg/tend.toml", &tend_toml(&s))], "v1");
    let url = g.start_daemon();
    let agent = Agent::start(&s, &["--source", &url, "-C", "cfg", "--interval", "1h", "--webhook-secret", "hook-secret"]);
    (g, s, agent)
}

#[test]
fn a_push_reaches_the_agent_through_a_signed_webhook_and_a_bad_signature_gets_401() {
    let (g, s, agent) = webhook_agent(|s| config(&s.out(), "v1"));
    // Not ready before a reconcile has succeeded; the file is written before the reconcile that
    // wrote it is recorded, so wait for the record, not for the file.
    wait_until("v1 is applied", 20, || s.app() == "v1\n");
    wait_until("/readyz says ready (the reconcile is recorded)", 20, || agent.http("GET", "/readyz", &[], "").0 == 200);
    assert_eq!(agent.http("GET", "/healthz", &[], "").0, 200);

    g.hook(&github_hook(agent.port, "hook-secret"));
    let c2 = g.commit(&[("cfg/tend.toml", &config(&s.out(), "v2"))], "v2");
    wait_until("the push is converged", 20, || s.app() == "v2\n");
    wait_until("status shows the commit", 5, || agent.status()["last_applied_commit"] == c2.as_str());

    // Without a valid signature nothing is triggered.
    fs_err::remove_file(g.bare().join("hooks/post-receive")).expect("rm hook");
    g.commit(&[("cfg/tend.toml", &config(&s.out(), "v3"))], "v3");
    let body = r#"{"ref":"refs/heads/main"}"#;
    let (code, _) = agent.http("POST", "/hooks/github", &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", "sha256=0000")], body);
    assert_eq!(code, 401);
    assert_eq!(agent.http("POST", "/hooks/github", &[("X-GitHub-Event", "push")], body).0, 401);
    assert_eq!(agent.http("POST", "/hooks/gitlab", &[("X-Gitlab-Token", "wrong")], body).0, 401);
    assert_eq!(agent.http("POST", "/hooks/gitea", &[("X-Gitea-Signature", "00")], body).0, 401);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(s.app(), "v2\n", "nothing was applied");
    // The GitLab form with the right token does trigger.
    assert_eq!(agent.http("POST", "/hooks/gitlab", &[("X-Gitlab-Token", "hook-secret"), ("X-Gitlab-Event", "Push Hook")], body).0, 202);
    wait_until("v3 is applied", 20, || s.app() == "v3\n");
    // A burst of pushes coalesces: at most the running reconcile and one more.
    let count = |a: &Agent| -> u64 {
        let m = a.http("GET", "/metrics", &[], "").1;
        m.lines().find_map(|l| l.strip_prefix("tend_reconcile_duration_seconds_count ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    };
    let before = count(&agent);
    let signature = github_signature("hook-secret", body);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| assert_eq!(http(agent.port, "POST", "/hooks/generic", &[("X-Signature-256", &signature)], body).0, 202));
        }
    });
    // Wait for the first reconcile of the burst to be recorded, then long enough for any others.
    wait_until("the burst is reconciled", 20, || count(&agent) > before);
    std::thread::sleep(Duration::from_secs(3));
    let burst = count(&agent) - before;
    assert!((1..=3).contains(&burst), "8 simultaneous webhooks → {burst} reconciles");
    let metrics = agent.http("GET", "/metrics", &[], "").1;
    assert!(metrics.contains("tend_webhooks_total{forge=\"github\",outcome=\"unauthorized\"} 2"), "{metrics}");
    assert!(metrics.contains("tend_webhooks_total{forge=\"github\",outcome=\"accepted\"} 1"), "{metrics}");
    let counted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tend_reconcile_duration_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the reconcile count is exported");
    assert!((before + 1..=before + 3).contains(&counted), "{metrics}");
    let status = Command::new(env!("CARGO_BIN_EXE_tend")).args(["status", "--agent", &format!("http://127.0.0.1:{}", agent.port)]).output().expect("status");
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success() && shown.contains("Resources:     2 ok") && shown.contains("Last result:   success"), "{}\n{}", text(&status), agent.log());
}

#[test]
fn the_agent_keeps_the_last_good_commit_while_git_is_down_and_recovers() {
    let mut g = GitServer::new();
    let s = Scratch::new();
    let c1 = g.commit(&[("cfg/tend.toml", &config(&s.out(), "v1"))], "v1");
    let url = g.start_daemon();
    let agent = Agent::start(&s, &["--source", &url, "-C", "cfg", "--interval", "1s", "--jitter", "0", "--max-backoff", "1s"]);
    wait_until("v1 is applied", 20, || s.app() == "v1\n");
    g.stop_daemon();
    wait_until("the fetch fails", 20, || agent.status()["last_result"] == "fetch-failed");
    let st = agent.status();
    assert!(st["last_error"]["message"].as_str().is_some_and(|e| e.contains(&format!("staying on the last good commit {c1}"))), "{st}");
    assert_eq!(st["last_error"]["kind"], "transient", "{st}");
    assert_eq!(st["last_applied_commit"], c1.as_str());
    assert_eq!(agent.http("GET", "/healthz", &[], "").0, 200, "alive while Git is down");
    assert_eq!(s.app(), "v1\n");
    let c2 = g.commit(&[("cfg/tend.toml", &config(&s.out(), "v2"))], "v2");
    g.start_daemon();
    wait_until("the agent recovers", 20, || s.app() == "v2\n");
    wait_until("status recovers", 5, || agent.status()["last_result"] == "success" && agent.status()["last_applied_commit"] == c2.as_str());
    // History rewritten by a force-push: the agent follows the branch to the new commit.
    g.git(&["reset", "-q", "--hard", &c1]);
    let c3 = g.commit(&[("cfg/tend.toml", &config(&s.out(), "v3"))], "rewritten");
    wait_until("the force-pushed commit is applied", 20, || s.app() == "v3\n");
    wait_until("status follows", 5, || agent.status()["last_applied_commit"] == c3.as_str());
}

#[test]
fn drift_is_corrected_between_commits_and_counted() {
    let mut g = GitServer::new();
    let s = Scratch::new();
    g.commit(&[("cfg/tend.toml", &config(&s.out(), "v1"))], "v1");
    let url = g.start_daemon();
    let agent = Agent::start(&s, &["--source", &url, "-C", "cfg", "--interval", "1h", "--drift-interval", "1s"]);
    wait_until("v1 is applied", 20, || s.app() == "v1\n");
    fs_err::write(s.out().join("app.conf"), "edited by hand\n").expect("tamper");
    wait_until("the drift is corrected", 20, || s.app() == "v1\n");
    // The file is put back during the reconcile; its counts are published when it ends.
    wait_until("the correction is counted", 20, || agent.http("GET", "/metrics", &[], "").1.contains("tend_drift_corrected_total 1"));
    let metrics = agent.http("GET", "/metrics", &[], "").1;
    assert!(metrics.contains("tend_drift_detected_total 1") && metrics.contains("tend_drift_corrected_total 1"), "{metrics}");
    assert!(agent.log().contains("drift detected") && agent.log().contains("host.file.app[me]"), "{}", agent.log());
}

#[test]
fn plan_only_reports_without_applying_and_suspend_holds_changes_until_resume() {
    let mut g = GitServer::new();
    let s = Scratch::new();
    g.commit(&[("cfg/tend.toml", &config(&s.out(), "v1"))], "v1");
    let url = g.start_daemon();
    {
        // plan-only from tend.toml's [agent] table (flags would win over it).
        g.commit(&[("cfg/tend.toml", &format!("[agent]\nmode = \"plan-only\"\ninterval = \"1h\"\n\n{}", config(&s.out(), "v1")))], "plan-only");
        let agent = Agent::start(&s, &["--source", &url, "-C", "cfg"]);
        wait_until("the plan is reported", 20, || agent.status()["last_result"] == "success");
        assert_eq!(agent.status()["resources"]["host.file.app[me]"]["status"], "pending");
        assert!(!s.out().join("app.conf").exists(), "plan-only applies nothing");
        assert_eq!(agent.status()["mode"], "plan-only");
        // It says what it would do: per resource, and the whole plan.
        assert_eq!(agent.status()["resources"]["host.file.app[me]"]["action"], "create");
        let client = |args: &[&str]| {
            Command::new(env!("CARGO_BIN_EXE_tend")).args(args).args(["--agent", &format!("http://127.0.0.1:{}", agent.port)]).output().expect("client")
        };
        let shown = String::from_utf8_lossy(&client(&["status"]).stdout).into_owned();
        assert!(shown.contains("pending   host.file.app[me] (would create)"), "{shown}");
        let plan = client(&["status", "--plan"]);
        let plan = String::from_utf8_lossy(&plan.stdout).into_owned();
        assert!(plan.contains("# host.file.app[me] will be created") && plan.contains("+v1"), "{plan}");
    }
    // Once, plan-only, in CI: the plan on stdout, exit 2 when it would change something.
    let once = s.tend(&["agent", "--once", "--mode", "plan-only", "--detailed-exitcode", "--source", &url, "-C", "cfg"]);
    assert_eq!(once.status.code(), Some(2), "{}", text(&once));
    assert!(String::from_utf8_lossy(&once.stdout).contains("# host.file.app[me] will be created"), "{}", text(&once));
    assert!(!s.out().join("app.conf").exists());
    g.commit(&[("cfg/tend.toml", &config(&s.out(), "v1"))], "apply");
    let agent = Agent::start(&s, &["--source", &url, "-C", "cfg", "--interval", "1h", "--webhook-secret", "k"]);
    wait_until("v1 is applied", 20, || s.app() == "v1\n");
    let client = |cmd: &str, secret: &str| {
        Command::new(env!("CARGO_BIN_EXE_tend"))
            .args([cmd, "--agent", &format!("http://127.0.0.1:{}", agent.port), "--secret", secret])
            .output()
            .expect("client")
    };
    assert_eq!(client("suspend", "wrong").status.code(), Some(1), "suspend needs the secret");
    assert_eq!(agent.http("GET", "/plan", &[], "").0, 401, "the plan (file contents) needs the secret too");
    assert_eq!(agent.http("GET", "/plan", &[("Authorization", "Bearer k")], "").0, 200);
    assert!(client("suspend", "k").status.success());
    g.commit(&[("cfg/tend.toml", &config(&s.out(), "v2"))], "v2");
    let body = r#"{"ref":"refs/heads/main"}"#;
    assert_eq!(agent.http("POST", "/hooks/gitlab", &[("X-Gitlab-Token", "k")], body).0, 202);
    wait_until("the suspended reconcile ran", 20, || agent.status()["resources"]["host.file.app[me]"]["status"] == "suspended");
    assert_eq!(s.app(), "v1\n", "suspended: nothing applied");
    assert!(client("resume", "k").status.success());
    wait_until("resumed and applied", 20, || s.app() == "v2\n");
    // One resource suspended in the config: observed, reported, not changed.
    let held = config(&s.out(), "v3").replace("[host.file.app]\n", "[host.file.app]\nsuspend = true\n");
    g.commit(&[("cfg/tend.toml", &held)], "hold app");
    assert_eq!(agent.http("POST", "/hooks/gitlab", &[("X-Gitlab-Token", "k")], body).0, 202);
    wait_until("the held resource is reported", 20, || agent.status()["resources"]["host.file.app[me]"]["status"] == "suspended");
    assert_eq!(s.app(), "v2\n", "suspend = true: nothing applied");
}

#[test]
fn sigterm_during_an_apply_stops_at_a_safe_point_and_the_next_run_finishes() {
    let mut g = GitServer::new();
    let s = Scratch::new();
    let out = s.out();
    let mut cfg = String::from("[project]\nname = \"agent-test\"\n\n[host.local.me]\n");
    for k in 1..=4 {
        let dep = if k > 1 { format!("depends_on = [\"host.command.step{}\"]\n", k - 1) } else { String::new() };
        cfg.push_str(&format!("\n[host.command.step{k}]\nrun = \"sleep 1; touch {}/step{k}\"\n{dep}", out.display()));
    }
    g.commit(&[("cfg/tend.toml", &cfg)], "slow");
    let url = g.start_daemon();
    let mut agent = Agent::start(&s, &["--source", &url, "-C", "cfg", "--interval", "1h"]);
    wait_until("the first step ran", 20, || out.join("step1").exists());
    agent.terminate();
    let started = Instant::now();
    let code = loop {
        if let Some(st) = agent.child.try_wait().expect("wait") {
            break st.code();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the agent stops at a safe point");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0), "{}", agent.log());
    assert!(!out.join("step4").exists(), "no new change started after SIGTERM");
    // The lock is released and state is consistent: a run finishes the rest.
    let once = s.tend(&["agent", "--once", "--source", &url, "-C", "cfg"]);
    assert!(once.status.success(), "{}", text(&once));
    for k in 1..=4 {
        assert!(out.join(format!("step{k}")).exists(), "step{k}");
    }
    let history = s.tend(&["history", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&history.stdout).expect("json");
    let results: Vec<&str> = rows.as_array().expect("rows").iter().filter_map(|r| r["result"].as_str()).collect();
    assert_eq!(results, ["interrupted", "success"], "{}", text(&history));
}

fn ssh_keygen(path: &Path) -> String {
    let out = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "signer", "-f"]).arg(path).output().expect("ssh-keygen");
    assert!(out.status.success(), "{}", text(&out));
    fs_err::read_to_string(path.with_extension("pub")).expect("public key").trim().to_string()
}

#[test]
fn only_commits_signed_by_an_allowed_ssh_key_are_applied() {
    let mut g = GitServer::new();
    let s = Scratch::new();
    let keys = s.0.path().join("keys");
    fs_err::create_dir_all(&keys).expect("mkdir");
    let allowed_pub = ssh_keygen(&keys.join("allowed"));
    ssh_keygen(&keys.join("stranger"));
    let signers = keys.join("allowed_signers");
    fs_err::write(&signers, format!("# who may sign\ntest@example.com namespaces=\"git\" {allowed_pub}\n")).expect("allowed_signers");
    let signers_arg = signers.display().to_string();
    let c1 = g.commit_signed(&[("cfg/tend.toml", &config(&s.out(), "v1"))], "v1", &keys.join("allowed"));
    let url = g.start_daemon();
    let ok = s.tend(&["apply", "--source", &url, "-C", "cfg", "--allowed-signers", &signers_arg, "--auto-approve"]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert_eq!(s.app(), "v1\n");

    let agent = Agent::start(
        &s,
        &[
            "--source",
            &url,
            "-C",
            "cfg",
            "--allowed-signers",
            &signers_arg,
            "--interval",
            "2s",
            "--drift-interval",
            "1s",
            "--jitter",
            "0",
            "--max-backoff",
            "1s",
        ],
    );
    wait_until("the agent is on c1", 20, || agent.status()["last_applied_commit"] == c1.as_str());
    // Unsigned: refused by the agent and by plan, the last good commit stays.
    let c2 = g.commit(&[("cfg/tend.toml", &config(&s.out(), "v2"))], "unsigned");
    wait_until("the unsigned commit is refused", 20, || agent.status()["last_result"] == "refused");
    let err = agent.status()["last_error"]["message"].as_str().unwrap_or_default().to_string();
    assert!(err.contains(&format!("commit {c2} is not signed")) && err.contains(&format!("staying on the last good commit {c1}")), "{err}");
    assert_eq!(s.app(), "v1\n");
    let plan = s.tend(&["plan", "--source", &url, "-C", "cfg", "--allowed-signers", &signers_arg]);
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan));
    assert!(String::from_utf8_lossy(&plan.stderr).contains(&format!("commit {c2} is not signed")), "{}", text(&plan));
    // While the newest commit is refused, drift is still corrected against the last good one.
    fs_err::write(s.out().join("app.conf"), "tampered\n").expect("tamper");
    wait_until("drift corrected to the last good commit", 20, || s.app() == "v1\n");
    // Signed by a key that is not allowed: refused, naming the key.
    let c3 = g.commit_signed(&[("cfg/tend.toml", &config(&s.out(), "v3"))], "stranger", &keys.join("stranger"));
    wait_until("the stranger's commit is refused", 20, || agent.status()["last_error"]["message"].as_str().is_some_and(|e| e.contains(&c3)));
    let err = agent.status()["last_error"]["message"].as_str().unwrap_or_default().to_string();
    assert!(err.contains("is signed by SHA256:") && err.contains("which is not in"), "{err}");
    assert_eq!(s.app(), "v1\n");
    // Signed by the allowed key again: applied.
    let c4 = g.commit_signed(&[("cfg/tend.toml", &config(&s.out(), "v4"))], "v4", &keys.join("allowed"));
    wait_until("the signed commit is applied", 20, || s.app() == "v4\n");
    wait_until("status", 5, || agent.status()["last_applied_commit"] == c4.as_str());
}

#[test]
fn a_source_over_ssh_uses_the_system_ssh_client_and_its_settings() {
    let g = GitServer::new();
    let f = crate::support::fleet::Fleet::up(1);
    let s = Scratch::new();
    // The repository lives on a real sshd host, in its private /srv.
    let bare = f.srv("h1").join("cfg.git");
    fs_err::create_dir_all(&bare).expect("mkdir");
    assert!(Command::new("git").args(["init", "-q", "--bare"]).current_dir(&bare).status().expect("git").success());
    let c1 = g.commit(&[("cfg/tend.toml", &config(&s.out(), "v1"))], "v1");
    assert!(Command::new("git").args(["push", "-q", &bare.to_string_lossy(), "HEAD:refs/heads/main"]).current_dir(g.work()).status().expect("push").success());
    // Keys and known_hosts come from the ssh configuration, as for `git fetch`.
    let ssh_config = s.0.path().join("ssh_config");
    fs_err::write(
        &ssh_config,
        format!(
            "Host h1\n  HostName {}\n  User root\n  IdentityFile {}\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
            f.address(1),
            f.key().display(),
            f.known_hosts().display()
        ),
    )
    .expect("ssh_config");
    let out = Command::new(env!("CARGO_BIN_EXE_tend"))
        .args(s.args())
        .args(["apply", "--source", "ssh://h1/srv/cfg.git", "-C", "cfg", "--auto-approve"])
        .env("GIT_SSH_COMMAND", format!("ssh -F {}", ssh_config.display()))
        .env("HOME", s.0.path())
        .stdin(Stdio::null())
        .output()
        .expect("tend runs");
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("Source: ssh://h1/srv/cfg.git refs/heads/main at {c1}")), "{}", text(&out));
    assert_eq!(s.app(), "v1\n");
    // A host key that is not the one on record: refused, nothing fetched.
    fs_err::write(f.known_hosts(), "").expect("forget the host key");
    let refused = Command::new(env!("CARGO_BIN_EXE_tend"))
        .args(s.args())
        .args(["plan", "--source", "ssh://h1/srv/cfg.git", "-C", "cfg"])
        .env("GIT_SSH_COMMAND", format!("ssh -F {}", ssh_config.display()))
        .env("HOME", s.0.path())
        .output()
        .expect("tend runs");
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("fetching ssh://h1/srv/cfg.git failed"), "{}", text(&refused));
}

/// Read until the server closes the connection; `Err` if it is still open after `secs`.
fn closed_within(c: &mut std::net::TcpStream, secs: u64) -> Result<Duration, String> {
    let started = Instant::now();
    c.set_read_timeout(Some(Duration::from_secs(secs))).expect("timeout");
    let mut buf = [0u8; 512];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return Ok(started.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(format!("still open after {secs} s"));
            }
            Err(_) => return Ok(started.elapsed()),
        }
    }
}

#[test]
fn slow_and_silent_clients_cannot_hold_the_listener() {
    let (_g, s, agent) = webhook_agent(|s| config(&s.out(), "v1"));
    wait_until("v1 is applied", 20, || s.app() == "v1\n");
    // 100 connections that send half a request and then nothing (slowloris), and one that
    // sends its headers and trickles its body.
    let mut silent: Vec<std::net::TcpStream> = (0..100)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(("127.0.0.1", agent.port)).expect("connect");
            c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").expect("send");
            c
        })
        .collect();
    let mut trickle = std::net::TcpStream::connect(("127.0.0.1", agent.port)).expect("connect");
    trickle.write_all(b"POST /hooks/generic HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{").expect("send");
    // The listener still answers at once, and a valid webhook still gets through.
    let started = Instant::now();
    assert_eq!(agent.http("GET", "/healthz", &[], "").0, 200);
    assert!(started.elapsed() < Duration::from_secs(2), "/healthz took {:?}", started.elapsed());
    let body = r#"{"ref":"refs/heads/main"}"#;
    let signature = github_signature("hook-secret", body);
    assert_eq!(http(agent.port, "POST", "/hooks/generic", &[("X-Signature-256", &signature)], body).0, 202);
    // The agent closes them: headers within 5 s, a whole request within 15 s.
    for c in &mut silent {
        closed_within(c, 10).expect("a silent connection is closed");
    }
    let took = closed_within(&mut trickle, 20).expect("a trickling connection is closed");
    assert!(took < Duration::from_secs(17), "{took:?}");
    assert_eq!(agent.http("GET", "/healthz", &[], "").0, 200);
}

#[test]
fn what_a_prune_destroyed_leaves_status_and_metrics() {
    // One reconcile per push (a long interval, a webhook), so status shows that reconcile's end.
    let (g, s, agent) =
        webhook_agent(|s| format!("{}\n[host.file.extra]\npath = \"{}\"\ncontent = \"x\"\n", config(&s.out(), "v1"), s.out().join("extra").display()));
    wait_until("v1 is applied", 20, || s.app() == "v1\n" && s.out().join("extra").exists());
    wait_until("status lists the extra file", 10, || agent.status()["resources"].get("host.file.extra[me]").is_some());
    g.hook(&github_hook(agent.port, "hook-secret"));
    let c2 = g.commit(&[("cfg/tend.toml", &config(&s.out(), "v2"))], "v2: extra removed");
    wait_until("v2 is applied and extra pruned", 20, || s.app() == "v2\n" && !s.out().join("extra").exists());
    wait_until("status shows the commit", 10, || agent.status()["last_applied_commit"] == c2.as_str());
    let status = agent.status();
    assert!(status["resources"].get("host.file.extra[me]").is_none(), "{status}");
    let metrics = agent.http("GET", "/metrics", &[], "").1;
    let managed: u64 = metrics.lines().filter_map(|l| l.strip_prefix("tend_resources{")).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum();
    assert_eq!(managed, 2, "host.local.me and host.file.app: {metrics}");
}

#[test]
fn errors_keep_their_class_in_status_and_metrics() {
    let (g, s, agent) = webhook_agent(|s| config(&s.out(), "v1"));
    wait_until("v1 is applied", 20, || s.app() == "v1\n");
    g.hook(&github_hook(agent.port, "hook-secret"));
    // Two resources that write one file: a conflict, and nothing of that commit is applied.
    let twin = format!("{}\n[host.file.twin]\npath = \"{}\"\ncontent = \"twin\"\n", config(&s.out(), "v2"), s.out().join("./app.conf").display());
    g.commit(&[("cfg/tend.toml", &twin)], "v2: a twin");
    wait_until("the conflict is reported", 20, || agent.status()["last_error"]["kind"] == "conflict");
    let st = agent.status();
    let failed: Vec<&serde_json::Value> = st["resources"].as_object().expect("resources").values().filter(|r| r["status"] == "failed").collect();
    assert!(!failed.is_empty() && failed.iter().all(|r| r["last_error"]["kind"] == "conflict"), "{st}");
    assert_eq!(s.app(), "v1\n");
    // A command that fails: terminal, counted by provider and class.
    let boom = format!("{}\n[host.command.boom]\nrun = \"echo no >&2; exit 3\"\n", config(&s.out(), "v3"));
    g.commit(&[("cfg/tend.toml", &boom)], "v3: a failing command");
    wait_until("the failure is reported", 20, || agent.status()["resources"]["host.command.boom[me]"]["status"] == "failed");
    let st = agent.status();
    assert_eq!(st["resources"]["host.command.boom[me]"]["last_error"]["kind"], "terminal", "{st}");
    assert_eq!(st["last_error"]["kind"], "terminal", "{st}");
    let metrics = agent.http("GET", "/metrics", &[], "").1;
    assert!(
        metrics.contains("tend_errors_total{provider=\"host\",kind=\"conflict\"}")
            && metrics.contains("tend_errors_total{provider=\"host\",kind=\"terminal\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_local_repository_owned_by_another_user_is_refused_with_how_to_trust_it() {
    crate::support::need::need(&[crate::support::need::Need::Root, crate::support::need::Need::Git]);
    let dir = tempfile::tempdir().expect("temp");
    let repo = dir.path().join("repo");
    let git = |args: &[&str]| {
        let out = Command::new("git").args(args).current_dir(&repo).output().expect("git");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    fs_err::create_dir_all(&repo).expect("mkdir");
    git(&["init", "-q", "-b", "main"]);
    fs_err::write(repo.join("tend.toml"), "[project]\nname = \"dubious\"\n\n[host.local.this]\n").expect("write");
    git(&["add", "."]);
    git(&["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "config"]);
    let nobody = Command::new("chown").args(["-R", "65534:65534"]).arg(&repo).status().expect("chown");
    assert!(nobody.success());
    let plan = || {
        Command::new(env!("CARGO_BIN_EXE_tend"))
            .args(["plan", "--source"])
            .arg(&repo)
            .arg("--source-cache")
            .arg(dir.path().join("cache"))
            .arg("--state")
            .arg(dir.path().join("state.db"))
            .env("HOME", dir.path())
            .output()
            .expect("tend runs")
    };
    let out = plan();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("owned by another user (uid 65534)") && err.contains("\"dubious ownership\""), "{err}");
    assert!(err.contains(&format!("git config --global --add safe.directory {}", repo.join(".git").display())), "{err}");
    // The fix it names works.
    fs_err::write(dir.path().join(".gitconfig"), format!("[safe]\n\tdirectory = {}\n", repo.join(".git").display())).expect("gitconfig");
    let trusted = plan();
    assert!(trusted.status.success(), "{}", String::from_utf8_lossy(&trusted.stderr));
}
