//! Hosts over SSH against real sshd hosts in network namespaces.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use crate::support::fleet::Fleet;
use crate::support::write_tree;

pub(crate) struct Run {
    dir: tempfile::TempDir,
}

impl Run {
    pub(crate) fn new(tend_toml: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        write_tree(&dir.path().join("cfg"), &[("tend.toml", tend_toml)]);
        Self { dir }
    }

    pub(crate) fn cfg(&self) -> PathBuf {
        self.dir.path().join("cfg")
    }

    pub(crate) fn write(&self, tend_toml: &str) {
        write_tree(&self.cfg(), &[("tend.toml", tend_toml)]);
    }

    pub(crate) fn tend(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tend"));
        cmd.args(["-C", &self.cfg().to_string_lossy(), "--state", &self.dir.path().join("state.db").to_string_lossy()])
            .args(args)
            .env("NO_COLOR", "1")
            .env("HOME", self.dir.path()) // no ~/.ssh keys of the machine's user
            .env_remove("SSH_AUTH_SOCK")
            .stdin(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("tend runs")
    }
}

pub(crate) fn ok(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stops the process it holds (the ssh-agent a test started), pass or fail.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mtime(p: &Path) -> SystemTime {
    fs_err::metadata(p).expect("stat").modified().expect("mtime")
}

fn site(f: &Fleet, hosts: &[usize], extra_host: &str) -> String {
    let mut t = String::from("[project]\nname = \"ssh-test\"\n\n");
    for k in hosts {
        t.push_str(&f.host_toml(*k, extra_host));
    }
    t.push_str(
        r#"
[host.directory.app]
on = { role = "web" }
path = "/srv/app"

[host.file.motd]
on = { role = "web" }
path = "/srv/app/motd"
content = "managed by tend\n"
mode = "0640"

[host.template.conf]
on = { role = "web" }
path = "/srv/app/app.conf"
source = "app.conf.j2"
vars = { idx = 3 }

[host.line.limit]
on = { role = "web" }
path = "/srv/app/limits.conf"
line = "max_conn=100"
regexp = "^max_conn="

[host.command.stamp]
on = { role = "web" }
run = "date +%s%N > /srv/app/stamp"
on_change = ["host.file.motd", "host.template.conf", "host.line.limit"]
"#,
    );
    t
}

#[test]
fn converges_two_hosts_then_no_op_touches_nothing_and_drift_is_per_host() {
    let f = Fleet::up(2);
    let run = Run::new(&site(&f, &[1, 2], "labels = { role = \"web\" }\nvars = { tier = \"front\" }"));
    write_tree(&run.cfg(), &[("app.conf.j2", "host={{ hostname }} tier={{ tier }} idx={{ idx }}\n")]);
    let first = ok(&run.tend(&["apply", "--auto-approve"], &[]));
    assert!(first.contains("Apply complete: 12 added"), "{first}");
    for h in ["h1", "h2"] {
        assert_eq!(fs_err::read_to_string(f.srv(h).join("app/motd")).expect("motd"), "managed by tend\n");
        assert_eq!(fs_err::read_to_string(f.srv(h).join("app/app.conf")).expect("conf"), format!("host={h} tier=front idx=3\n"));
        assert_eq!(fs_err::read_to_string(f.srv(h).join("app/limits.conf")).expect("limits"), "max_conn=100\n");
        assert!(f.srv(h).join("app/stamp").exists(), "the command ran on {h}");
    }
    let before: Vec<SystemTime> = ["h1", "h2"].iter().flat_map(|h| [mtime(&f.srv(h).join("app/motd")), mtime(&f.srv(h).join("app/stamp"))]).collect();
    // A no-op plan and apply write nothing on any host.
    let noop = run.tend(&["apply", "--auto-approve"], &[]);
    assert_eq!(ok(&noop), "No changes. The targets match the configuration.\n");
    let after: Vec<SystemTime> = ["h1", "h2"].iter().flat_map(|h| [mtime(&f.srv(h).join("app/motd")), mtime(&f.srv(h).join("app/stamp"))]).collect();
    assert_eq!(before, after, "no-op left every mtime unchanged");
    // Drift on one host is seen on that host only.
    fs_err::write(f.srv("h2").join("app/motd"), "edited on h2\n").expect("tamper");
    let drift = run.tend(&["plan", "--detailed-exitcode"], &[]);
    assert_eq!(drift.status.code(), Some(2));
    let text = String::from_utf8_lossy(&drift.stdout);
    assert!(text.contains("host.file.motd[h2] will be updated in place (changed outside tend)"), "{text}");
    assert!(!text.contains("motd[h1]"), "{text}");
    ok(&run.tend(&["apply", "--auto-approve"], &[]));
    assert_eq!(fs_err::read_to_string(f.srv("h2").join("app/motd")).expect("motd"), "managed by tend\n");
    assert_eq!(mtime(&f.srv("h1").join("app/motd")), before[0], "h1 untouched");
}

#[test]
fn an_unreachable_host_fails_its_own_resources_while_the_others_converge() {
    let f = Fleet::up(2);
    let mut toml = site(&f, &[1, 2], "labels = { role = \"web\" }");
    toml.push_str(&format!(
        "[host.ssh.h9]\naddress = \"{}\"\nuser = \"root\"\nidentity = \"{}\"\nknown_hosts = \"{}\"\nconnect_timeout = 2\nlabels = {{ role = \"web\" }}\n",
        f.unused_address(),
        f.key().display(),
        f.known_hosts().display()
    ));
    let run = Run::new(&toml);
    write_tree(&run.cfg(), &[("app.conf.j2", "idx={{ idx }}\n")]);
    let out = run.tend(&["apply", "--auto-approve"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("h9 ({}:22)", f.unused_address())) || err.contains(&format!("{}:22 on host `h9`", f.unused_address())), "{err}");
    assert!(err.contains("could not be planned") || err.contains("failed"), "{err}");
    for h in ["h1", "h2"] {
        assert_eq!(fs_err::read_to_string(f.srv(h).join("app/motd")).expect("motd"), "managed by tend\n", "{h} converged");
    }
    let history = ok(&run.tend(&["history", "--json"], &[]));
    assert!(history.contains("\"result\": \"failed\""), "{history}");
}

#[test]
fn host_keys_are_verified_strictly_pinned_or_trusted_on_first_use() {
    let f = Fleet::up(1);
    let body = "\n[host.file.f]\npath = \"/srv/f\"\ncontent = \"x\"\n";
    // Unknown: an empty known_hosts file.
    let empty = f.work.join("empty_known_hosts");
    fs_err::write(&empty, "").expect("empty");
    let unknown = format!(
        "[host.ssh.h1]\naddress = \"{}\"\nuser = \"root\"\nidentity = \"{}\"\nknown_hosts = \"{}\"\n{body}",
        f.address(1),
        f.key().display(),
        empty.display()
    );
    let run = Run::new(&unknown);
    let out = run.tend(&["plan"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("unknown host key for h1 ({}:22): SHA256:", f.address(1))), "{err}");
    assert!(err.contains("hint: verify the key out of band"), "{err}");
    // Pinned: the same, with host_key from the host's key file.
    run.write(
        &unknown
            .replace(&format!("known_hosts = \"{}\"", empty.display()), &format!("known_hosts = \"{}\"\nhost_key = \"{}\"", empty.display(), f.host_key("h1"))),
    );
    ok(&run.tend(&["apply", "--auto-approve"], &[]));
    assert!(f.srv("h1").join("f").exists());
    // Trust on first use: accepted once, recorded in state, enforced afterwards.
    let tofu = Run::new(
        &unknown.replace(&format!("known_hosts = \"{}\"", empty.display()), &format!("known_hosts = \"{}\"\ntrust_on_first_use = true", empty.display())),
    );
    ok(&tofu.tend(&["apply", "--auto-approve"], &[]));
    let shown = ok(&tofu.tend(&["state", "show", "host.ssh.h1"], &[]));
    assert!(shown.contains(&f.host_key("h1")), "the trusted key is recorded: {shown}");
    // Changed: the host is reinstalled with a new key.
    let old_lines = fs_err::read_to_string(f.known_hosts()).expect("known_hosts");
    f.rekey_host(1);
    // fleet.sh appended the new key after the old line for the same address: as with OpenSSH,
    // any line with the presented key accepts it.
    let both = Run::new(&f.host_toml(1, body));
    let out = both.tend(&["plan"], &[]);
    assert_eq!(out.status.code(), Some(0), "several lines for one host, one of them right: {}", String::from_utf8_lossy(&out.stderr));
    // Only the old line: the key changed.
    fs_err::write(f.known_hosts(), &old_lines).expect("known_hosts");
    let strict = Run::new(&f.host_toml(1, body));
    let out = strict.tend(&["plan"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("host key of h1") && err.contains("changed: it is now SHA256:") && err.contains("line 1 has another key"), "{err}");
    let out = tofu.tend(&["plan"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a different key was trusted on first use and recorded in state"), "{err}");
    // The same host moved to a known_hosts file that has its new key: checked against that file
    // in this run, not against the key trusted on first use.
    fs_err::write(f.known_hosts(), format!("{} {}\n", f.address(1), f.host_key("h1"))).expect("known_hosts");
    tofu.write(&f.host_toml(1, body));
    let out = tofu.tend(&["plan"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn ssh_agent_authenticates_when_no_identity_is_given() {
    let f = Fleet::up(1);
    let sock = f.work.join("agent.sock");
    let agent = Command::new("ssh-agent").args(["-D", "-a"]).arg(&sock).stdout(std::process::Stdio::null()).spawn().expect("ssh-agent");
    let _agent = Kill(agent);
    for _ in 0..50 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let add = Command::new("ssh-add").arg(f.key()).env("SSH_AUTH_SOCK", &sock).output().expect("ssh-add");
    assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
    let toml = format!(
        "[host.ssh.h1]\naddress = \"{}\"\nuser = \"root\"\nknown_hosts = \"{}\"\n\n[host.file.f]\npath = \"/srv/via-agent\"\ncontent = \"agent\"\n",
        f.address(1),
        f.known_hosts().display()
    );
    let run = Run::new(&toml);
    let without = run.tend(&["apply", "--auto-approve"], &[]);
    assert_eq!(without.status.code(), Some(1), "no agent, no key: refused");
    assert!(String::from_utf8_lossy(&without.stderr).contains("log in to root@"), "{}", String::from_utf8_lossy(&without.stderr));
    ok(&run.tend(&["apply", "--auto-approve"], &[("SSH_AUTH_SOCK", &sock.to_string_lossy())]));
    assert_eq!(fs_err::read_to_string(f.srv("h1").join("via-agent")).expect("written"), "agent");
}

#[test]
fn ssh_config_entries_and_jump_hosts_are_honoured() {
    let f = Fleet::up(2);
    let run = Run::new("[host.local.placeholder]\n");
    let ssh_config = run.dir.path().join("ssh_config");
    fs_err::write(
        &ssh_config,
        format!(
            "Host web\n  HostName {}\n  User root\n  IdentityFile {}\n  UserKnownHostsFile {}\n\nHost *\n  Port 22\n",
            f.address(1),
            f.key().display(),
            f.known_hosts().display()
        ),
    )
    .expect("ssh_config");
    // An alias from ssh_config: address, user, key and known_hosts all come from the file.
    run.write(&format!(
        "[host.ssh.web]\naddress = \"web\"\nssh_config = \"{}\"\n\n[host.file.a]\non = [\"web\"]\npath = \"/srv/via-ssh-config\"\ncontent = \"alias\"\n",
        ssh_config.display()
    ));
    ok(&run.tend(&["apply", "--auto-approve"], &[]));
    assert_eq!(fs_err::read_to_string(f.srv("h1").join("via-ssh-config")).expect("written"), "alias");
    // Through a jump host: h2, reached through h1.
    let through =
        Run::new(&format!("{}jump = \"root@{}\"\n\n[host.file.b]\npath = \"/srv/via-jump\"\ncontent = \"jumped\"\n", f.host_toml(2, ""), f.address(1)));
    ok(&through.tend(&["apply", "--auto-approve"], &[]));
    assert_eq!(fs_err::read_to_string(f.srv("h2").join("via-jump")).expect("written"), "jumped");
    // A dead jump host fails the connection, though h2 itself is reachable: the tunnel is used.
    let dead = Run::new(&format!(
        "{}jump = \"root@{}\"\nconnect_timeout = 2\n\n[host.file.c]\npath = \"/srv/never\"\ncontent = \"x\"\n",
        f.host_toml(2, ""),
        f.unused_address()
    ));
    let out = dead.tend(&["plan"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("jump host"), "{err}");
    assert!(!f.srv("h2").join("never").exists());
}

/// Installing packages or managing units on the fleet would change this machine (hosts share
/// its filesystem and have no systemd), so this checks observation and planning only.
#[test]
fn package_and_service_observe_and_plan_only_on_a_real_host() {
    let f = Fleet::up(1);
    let run = Run::new(&format!(
        "{}\n[host.package.base]\nnames = [\"bash\", \"coreutils\"]\n\n[host.package.extra]\nnames = [\"bash\", \"tend-no-such-package\"]\n",
        f.host_toml(1, "")
    ));
    let out = run.tend(&["plan", "--json"], &[]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON plan");
    let change = |name: &str| plan["changes"].as_array().expect("changes").iter().find(|c| c["resource"] == name).cloned().expect(name);
    let base = change("host.package.base");
    assert_eq!(base["before"]["installed"], serde_json::json!(["bash", "coreutils"]));
    assert_eq!(base["before"]["manager"], "apt");
    assert_eq!(base["note"], "already as desired; tend will record it");
    let extra = change("host.package.extra");
    assert_eq!(extra["action"], "create");
    assert_eq!(extra["before"]["installed"], serde_json::json!(["bash"]));
    assert_eq!(extra["after"]["installed"], serde_json::json!(["bash", "tend-no-such-package"]));
    // Accounts: an existing one is adopted, a missing one would be created.
    run.write(&format!(
        "{}\n[host.user.root]\nname = \"root\"\nshell = \"/bin/bash\"\n\n[host.user.app]\nname = \"tend-no-such-user\"\nshell = \"/bin/sh\"\n\n[host.group.root]\nname = \"root\"\ngid = 0\n",
        f.host_toml(1, "")
    ));
    let out = run.tend(&["plan", "--json"], &[]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON plan");
    let change = |name: &str| plan["changes"].as_array().expect("changes").iter().find(|c| c["resource"] == name).cloned().expect(name);
    assert_eq!(change("host.user.root")["before"]["shell"], "/bin/bash");
    assert_eq!(change("host.group.root")["before"]["gid"], 0);
    assert_eq!(change("host.user.app")["action"], "create");
    assert_eq!(change("host.user.app")["before"], serde_json::Value::Null);
    // A service on a host without systemd is a plan error naming the unit.
    run.write(&format!("{}\n[host.service.web]\nname = \"nginx\"\nrunning = true\n", f.host_toml(1, "")));
    let out = run.tend(&["plan"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot manage service `nginx`: the host does not run systemd"), "{err}");
}

#[test]
fn releases_switch_atomically_roll_back_on_failed_health_and_by_hand() {
    let f = Fleet::up(1);
    let run = Run::new(&format!("{}\n[host.release.site]\nsource = \"site\"\npath = \"/srv/app\"\nkeep = 2\nhealth = \"test -f ok\"\n", f.host_toml(1, "")));
    let app = f.srv("h1").join("app");
    let index = || fs_err::read_to_string(app.join("current/index.html")).expect("current/index.html");
    let current = || fs_err::read_link(app.join("current")).expect("current is a symlink").to_string_lossy().into_owned();
    write_tree(&run.cfg(), &[("site/index.html", "v1"), ("site/ok", "")]);
    ok(&run.tend(&["apply", "--auto-approve"], &[]));
    assert_eq!(index(), "v1");
    let g1 = current();
    assert!(g1.starts_with("releases/"), "{g1}");
    write_tree(&run.cfg(), &[("site/index.html", "v2")]);
    ok(&run.tend(&["apply", "--auto-approve"], &[]));
    assert_eq!(index(), "v2");
    let g2 = current();
    // A generation failing its health check is switched away from, automatically.
    fs_err::remove_file(run.cfg().join("site/ok")).expect("rm ok");
    write_tree(&run.cfg(), &[("site/index.html", "v3-broken")]);
    let out = run.tend(&["apply", "--auto-approve"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("health check of generation") && err.contains(&format!("switched back to generation {}", g2.trim_start_matches("releases/"))),
        "{err}"
    );
    assert_eq!(index(), "v2", "the previous generation serves again (current -> {}, g2 = {g2}, stderr: {err})", current());
    // A good generation; keep = 2 prunes the oldest.
    write_tree(&run.cfg(), &[("site/index.html", "v3"), ("site/ok", "")]);
    ok(&run.tend(&["apply", "--auto-approve"], &[]));
    assert_eq!(index(), "v3");
    let kept: Vec<String> = fs_err::read_dir(app.join("releases")).expect("releases").flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(!kept.iter().any(|g| g1.ends_with(g.as_str())), "the oldest generation was pruned: {kept:?}");
    let shown = ok(&run.tend(&["state", "show", "host.release.site[h1]"], &[]));
    assert!(shown.contains("generations"), "{shown}");
    // By hand: back to the previous generation; the next plan moves forward again.
    let back = ok(&run.tend(&["rollback", "h1"], &[]));
    assert!(back.contains("switched from generation"), "{back}");
    // The rollback is in history: who, what, and what each step did.
    let rows: serde_json::Value = serde_json::from_str(&ok(&run.tend(&["history", "--json"], &[]))).expect("history JSON");
    let last = rows.as_array().and_then(|r| r.last()).expect("a row");
    assert_eq!((last["revision"].as_str(), last["result"].as_str()), (Some("rollback"), Some("success")), "{last}");
    assert!(last["summary"].as_str().is_some_and(|s| s.starts_with("rollback h1: 1 switched back")), "{last}");
    assert_eq!(last["outcomes"][0]["address"], "host.release.site[h1]");
    assert!(last["outcomes"][0]["message"].as_str().is_some_and(|m| m.starts_with("switched from generation")), "{last}");
    assert_eq!(index(), "v2");
    let plan = run.tend(&["plan", "--detailed-exitcode"], &[]);
    assert_eq!(plan.status.code(), Some(2), "{}", String::from_utf8_lossy(&plan.stdout));
    let missing = run.tend(&["rollback", "h1", "--to", "ffffffff"], &[]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("generations there, newest first"), "{}", String::from_utf8_lossy(&missing.stderr));
}

/// A path on host `h` as the test sees it, following tend's links (absolute, in the host's
/// namespace) into the host's private /srv.
fn on_host(f: &Fleet, h: &str, path: &str) -> PathBuf {
    let mut p = f.srv(h).join(path.strip_prefix("/srv/").expect("a path under /srv"));
    for _ in 0..8 {
        match fs_err::read_link(&p) {
            Ok(t) if t.is_absolute() => p = f.srv(h).join(t.strip_prefix("/srv/").expect("links stay under /srv")),
            _ => break,
        }
    }
    p
}

fn generations_site(f: &Fleet, motd: &str, conf: &str, with_extra: bool) -> String {
    let mut t = format!(
        "[project]\nname = \"gen-test\"\n\n{}",
        f.host_toml(1, "generations = { path = \"/srv/tend\", keep = 3 }\nhealth = \"grep -q healthy /srv/etc/app.conf\"")
    );
    t.push_str(&format!(
        r#"
[host.file.motd]
path = "/srv/etc/motd"
content = "{motd}\n"

[host.file.conf]
path = "/srv/etc/app.conf"
content = "{conf}\n"
mode = "0600"

[host.command.reload]
run = "cat /srv/etc/motd >> /srv/reloads"
on_change = ["host.file.motd", "host.file.conf"]
"#
    ));
    if with_extra {
        t.push_str("\n[host.file.extra]\npath = \"/srv/etc/extra/x.conf\"\ncontent = \"x\\n\"\n");
    }
    t
}

#[test]
fn host_files_switch_as_one_generation_with_health_check_switch_back_and_rollback() {
    let f = Fleet::up(1);
    let read = |p: &str| fs_err::read_to_string(on_host(&f, "h1", p)).expect("managed file");
    let current = || fs_err::read_link(f.srv("h1").join("tend/current")).expect("current").to_string_lossy().into_owned();
    let run = Run::new(&generations_site(&f, "v1", "healthy v1", true));
    let first = run.tend(&["apply", "--auto-approve"], &[]);
    ok(&first);
    let first = String::from_utf8_lossy(&first.stderr);
    assert!(first.contains("host.ssh.h1: switched to generation"), "{first}");
    // Every managed path is a link into the current generation.
    assert_eq!(fs_err::read_link(f.srv("h1").join("etc/motd")).expect("motd is a link"), PathBuf::from("/srv/tend/current/srv/etc/motd"));
    assert_eq!(read("/srv/etc/motd"), "v1\n");
    assert_eq!(read("/srv/etc/extra/x.conf"), "x\n");
    let copy = fs_err::metadata(on_host(&f, "h1", "/srv/etc/app.conf")).expect("conf");
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&copy.permissions()) & 0o7777, 0o600);
    let g1 = current();
    assert!(g1.starts_with("generations/"), "{g1}");
    assert_eq!(fs_err::read_to_string(f.srv("h1").join("reloads")).expect("reloads"), "v1\n");

    // A no-op writes nothing: not the links, not the generation.
    let stamps = || ["etc/motd", "tend/current", "reloads"].map(|p| fs_err::symlink_metadata(f.srv("h1").join(p)).expect("stat").modified().expect("mtime"));
    let before = stamps();
    assert_eq!(ok(&run.tend(&["apply", "--auto-approve"], &[])), "No changes. The targets match the configuration.\n");
    assert_eq!(stamps(), before);

    // One change: a new generation, switched before the command that watches the file runs;
    // a path that left the config loses its link.
    run.write(&generations_site(&f, "v2", "healthy v2", false));
    let second = run.tend(&["apply", "--auto-approve"], &[]);
    ok(&second);
    let second = String::from_utf8_lossy(&second.stderr);
    let switched = second.find("switched to generation").expect("switched");
    assert!(second.find("host.command.reload[h1]: running").is_some_and(|at| at > switched), "{second}");
    assert_eq!(fs_err::read_to_string(f.srv("h1").join("reloads")).expect("reloads"), "v1\nv2\n", "the command saw the new generation");
    assert!(fs_err::symlink_metadata(f.srv("h1").join("etc/extra/x.conf")).is_err(), "the removed file's link is gone");
    let g2 = current();
    assert_ne!(g1, g2);

    // A generation failing the host's health check is switched away from; dependents skip.
    run.write(&generations_site(&f, "v3", "broken", false));
    let out = run.tend(&["apply", "--auto-approve"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let g2_id = g2.trim_start_matches("generations/");
    assert!(err.contains("health check of generation") && err.contains(&format!("switched back to generation {g2_id}")), "{err}");
    assert_eq!(current(), g2);
    assert_eq!(read("/srv/etc/motd"), "v2\n");
    assert_eq!(read("/srv/etc/app.conf"), "healthy v2\n");
    assert_eq!(fs_err::read_to_string(f.srv("h1").join("reloads")).expect("reloads"), "v1\nv2\n", "the command was skipped");
    let shown = ok(&run.tend(&["state", "show", "host.ssh.h1"], &[]));
    assert!(shown.contains(&format!("generation       = \"{g2_id}\"")) && shown.contains("kept_generations"), "{shown}");
    // The failed generation is not kept; the plan still wants the config's content.
    let failed = err.split("health check of generation ").nth(1).and_then(|r| r.split_whitespace().next()).expect("failed id");
    assert!(!shown.contains(failed) && !f.srv("h1").join("tend/generations").join(failed).exists(), "{failed} in {shown}");
    assert_eq!(run.tend(&["plan", "--detailed-exitcode"], &[]).status.code(), Some(2));

    // By hand: back to the first generation, then forward again with the next apply.
    run.write(&generations_site(&f, "v2", "healthy v2", false));
    let back = ok(&run.tend(&["rollback", "h1", "--to", &g1.trim_start_matches("generations/")[..8]], &[]));
    assert!(back.contains("host.ssh.h1: switched from generation"), "{back}");
    assert_eq!(current(), g1);
    assert_eq!(read("/srv/etc/motd"), "v1\n");
    assert_eq!(read("/srv/etc/extra/x.conf"), "x\n", "the first generation's paths are linked again");
    let plan = run.tend(&["plan", "--detailed-exitcode"], &[]);
    assert_eq!(plan.status.code(), Some(2), "{}", String::from_utf8_lossy(&plan.stdout));
    ok(&run.tend(&["apply", "--auto-approve"], &[]));
    assert_eq!(current(), g2, "content-addressed: the same files are the same generation");
    assert!(fs_err::symlink_metadata(f.srv("h1").join("etc/extra/x.conf")).is_err());

    // keep = 3 prunes the oldest generations.
    for v in ["v4", "v5", "v6"] {
        run.write(&generations_site(&f, v, "healthy", false));
        ok(&run.tend(&["apply", "--auto-approve"], &[]));
    }
    let kept = fs_err::read_dir(f.srv("h1").join("tend/generations")).expect("generations").count();
    assert_eq!(kept, 3);
    assert_eq!(read("/srv/etc/motd"), "v6\n");

    // A file that needs a failing command is skipped: the generation is not switched without
    // it (the commit names it), and the host keeps what it had.
    let g6 = current();
    let mut site = generations_site(&f, "v7", "healthy", false);
    site.push_str("\n[host.command.broken]\nrun = \"exit 3\"\n\n[host.file.late]\npath = \"/srv/etc/late\"\ncontent = \"late\\n\"\ndepends_on = [\"host.command.broken\"]\n");
    run.write(&site);
    let out = run.tend(&["apply", "--auto-approve"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not switched to a new generation: host.file.late[h1] did not apply"), "{err}");
    assert_eq!(current(), g6);
    assert_eq!(read("/srv/etc/motd"), "v6\n");
}

#[test]
fn a_hosts_file_changes_travel_in_one_stream_and_a_refused_one_is_named() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fleet::up(1);
    let files = (0..20).fold(String::new(), |mut out, i| {
        out.push_str(&format!("[host.file.f{i:02}]\npath = \"/srv/many/d{}/f{i:02}\"\ncontent = \"file {i}\\n\"\nmode = \"0640\"\n\n", i % 3));
        out
    });
    // A secret's file is written on its own, from the channel's stdin: never in the stream's
    // script, which a shell may spool to a temporary file.
    let secret =
        "[secret.token]\nfile = \"secrets/token.age\"\n\n[host.file.token]\npath = \"/srv/many/token\"\ncontent = \"${secret.token}\"\nmode = \"0600\"\n";
    let run = Run::new(&format!("[project]\nname = \"stream\"\n\n{}\n{files}{secret}", f.host_toml(1, "")));
    let id = age::x25519::Identity::generate();
    let key = run.cfg().join("../tend.key");
    fs_err::write(&key, format!("{}\n", age::secrecy::ExposeSecret::expose_secret(&id.to_string()))).expect("key");
    let mut sealed = Vec::new();
    let mut w =
        age::Encryptor::with_recipients(std::iter::once(&id.to_public() as &dyn age::Recipient)).expect("recipients").wrap_output(&mut sealed).expect("wrap");
    std::io::Write::write_all(&mut w, b"stream-canary-7d1").expect("write");
    w.finish().expect("finish");
    fs_err::create_dir_all(run.cfg().join("secrets")).expect("mkdir");
    fs_err::write(run.cfg().join("secrets/token.age"), sealed).expect("write");
    let key = key.to_string_lossy().into_owned();
    let env = [("TEND_AGE_KEY_FILE", key.as_str())];
    let plan = ok(&run.tend(&["plan"], &env));
    assert!(plan.contains("will write its 20 changed files in one stream"), "the secret's file is not among them: {plan}");
    let out = run.tend(&["apply", "--auto-approve"], &env);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("host.ssh.h1: wrote 20 files in one stream"), "{text}");
    assert_eq!(fs_err::read_to_string(f.srv("h1").join("many/token")).expect("written"), "stream-canary-7d1");
    for i in 0..20 {
        let p = f.srv("h1").join(format!("many/d{}/f{i:02}", i % 3));
        assert_eq!(fs_err::read_to_string(&p).expect("written"), format!("file {i}\n"));
        assert_eq!(fs_err::metadata(&p).expect("stat").permissions().mode() & 0o777, 0o640);
    }
    assert_eq!(run.tend(&["plan", "--detailed-exitcode"], &env).status.code(), Some(0), "converged");
    // Two files drift; one of them is now a directory nobody may replace: the other is written,
    // the refused one is named, and the next plan shows only it.
    fs_err::write(f.srv("h1").join("many/d0/f00"), "drifted").expect("drift");
    fs_err::remove_file(f.srv("h1").join("many/d1/f01")).expect("rm");
    let saved = run.cfg().join("../plan.json");
    ok(&run.tend(&["plan", "--out", &saved.to_string_lossy()], &env));
    fs_err::create_dir(f.srv("h1").join("many/d1/f01")).expect("a directory in its way");
    let out = run.tend(&["apply", &saved.to_string_lossy()], &env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("/srv/many/d1/f01"), "the refused file is named: {err}");
    assert_eq!(fs_err::read_to_string(f.srv("h1").join("many/d0/f00")).expect("written"), "file 0\n", "the other was written");
}

#[test]
fn directories_made_for_a_file_get_the_hosts_umask() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fleet::up(1);
    let run = Run::new(&format!(
        "[project]\nname = \"umask\"\n\n{}\n[host.file.deep]\npath = \"/srv/deep/er/f\"\ncontent = \"x\"\nmode = \"0600\"\n",
        f.host_toml(1, "")
    ));
    ok(&run.tend(&["apply", "--auto-approve"], &[]));
    for dir in ["deep", "deep/er"] {
        let mode = fs_err::metadata(f.srv("h1").join(dir)).expect("made").permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "/srv/{dir} was made {mode:o}, not with the host's umask");
    }
    let file = fs_err::metadata(f.srv("h1").join("deep/er/f")).expect("written").permissions().mode() & 0o777;
    assert_eq!(file, 0o600);
    // A temporary file a killed run left an hour ago goes with the next write of that file.
    let stale = f.srv("h1").join("deep/er/.f.tend-4242");
    fs_err::write(&stale, "half").expect("stale");
    assert!(Command::new("touch").args(["-d", "1 hour ago"]).arg(&stale).status().expect("touch").success());
    let fresh = f.srv("h1").join("deep/er/.f.tend-4343");
    fs_err::write(&fresh, "a live run's").expect("fresh");
    fs_err::write(f.srv("h1").join("deep/er/f"), "drift").expect("drift");
    ok(&run.tend(&["apply", "--auto-approve"], &[]));
    assert!(!stale.exists(), "the stale temp file is removed");
    assert!(fresh.exists(), "a recent one may be a live run's");
}

#[test]
fn a_symlink_planted_where_a_file_was_observed_is_not_followed_over_ssh() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fleet::up(1);
    let run = Run::new(&format!("[project]\nname = \"race\"\n\n{}\n[host.file.f]\npath = \"/srv/f\"\ncontent = \"x\"\nmode = \"0644\"\n", f.host_toml(1, "")));
    ok(&run.tend(&["apply", "--auto-approve"], &[]));
    fs_err::write(f.srv("h1").join("victim"), "not tend's").expect("victim");
    fs_err::set_permissions(f.srv("h1").join("victim"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    fs_err::set_permissions(f.srv("h1").join("f"), std::fs::Permissions::from_mode(0o600)).expect("drift");
    let saved = run.cfg().join("../plan.json");
    ok(&run.tend(&["plan", "--out", &saved.to_string_lossy()], &[]));
    fs_err::remove_file(f.srv("h1").join("f")).expect("rm");
    std::os::unix::fs::symlink("/srv/victim", f.srv("h1").join("f")).expect("plant");
    let out = run.tend(&["apply", &saved.to_string_lossy()], &[]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("it is a symlink now (not followed)"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs_err::metadata(f.srv("h1").join("victim")).expect("victim").permissions().mode() & 0o777, 0o600);
}

#[test]
fn a_link_planted_above_a_target_by_another_user_is_not_followed_over_ssh() {
    let f = Fleet::up(1);
    let run = Run::new(&format!("[project]\nname = \"above\"\n\n{}\n[host.file.f]\npath = \"/srv/out/sub/f\"\ncontent = \"one\"\n", f.host_toml(1, "")));
    ok(&run.tend(&["apply", "--auto-approve"], &[]));
    fs_err::create_dir_all(f.srv("h1").join("outside")).expect("mkdir");
    fs_err::remove_dir_all(f.srv("h1").join("out/sub")).expect("rm");
    std::os::unix::fs::symlink("/srv/outside", f.srv("h1").join("out/sub")).expect("plant");
    std::os::unix::fs::lchown(f.srv("h1").join("out/sub"), Some(65534), Some(65534)).expect("owned by nobody");
    let out = run.tend(&["apply", "--auto-approve"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("`sub` on the way is a symlink owned by uid 65534 in a directory owned by uid 0: not followed"), "{err}");
    assert!(fs_err::read_dir(f.srv("h1").join("outside")).expect("outside").next().is_none(), "nothing written through the link");
    std::os::unix::fs::lchown(f.srv("h1").join("out/sub"), Some(0), Some(0)).expect("owned by root");
    ok(&run.tend(&["apply", "--auto-approve"], &[]));
    assert_eq!(fs_err::read_to_string(f.srv("h1").join("outside/f")).expect("written"), "one");
}

#[test]
fn two_resources_that_are_one_file_on_the_host_through_a_symlink_are_an_error_over_ssh() {
    let f = Fleet::up(1);
    fs_err::create_dir_all(f.srv("h1").join("app-1.2")).expect("mkdir");
    std::os::unix::fs::symlink("/srv/app-1.2", f.srv("h1").join("app")).expect("link");
    let run = Run::new(&format!(
        "[project]\nname = \"alias\"\n\n{}\n[host.file.a]\npath = \"/srv/app/conf\"\ncontent = \"a\"\n\n[host.file.b]\npath = \"/srv/app-1.2/conf\"\ncontent = \"b\"\n\n[host.file.c]\npath = \"/srv/app/other\"\ncontent = \"c\"\n",
        f.host_toml(1, "")
    ));
    let out = run.tend(&["apply", "--auto-approve"], &[]);
    let err = String::from_utf8_lossy(&out.stderr).replace('│', " ").split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("/srv/app/conf and the path of `host.file.b[h1]` (/srv/app-1.2/conf) are one file on `host.ssh.h1`, /srv/app-1.2/conf, through a symlink"),
        "{err}"
    );
    assert!(err.contains("error: host.file.b[h1]:") && !err.contains("host.file.c"), "{err}");
    assert!(fs_err::read_dir(f.srv("h1").join("app-1.2")).expect("dir").next().is_none(), "nothing written");
}

/// Whether a process with exactly this command line runs on the machine (the fleet's hosts
/// share its process table).
fn running(cmdline: &[&str]) -> bool {
    let want: Vec<u8> = cmdline.iter().flat_map(|a| a.bytes().chain([0])).collect();
    fs_err::read_dir("/proc").expect("proc").flatten().any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want))
}

#[test]
fn a_hung_host_is_declared_down_and_a_command_past_its_timeout_is_stopped() {
    let f = Fleet::up(2);
    let run = Run::new("");
    // h2 accepts the connection and the key, then every command hangs (a stuck NFS mount, a
    // host out of memory): its key is forced to run `sleep 20`.
    let key = run.dir.path().join("stuck_key");
    assert!(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key).status().expect("ssh-keygen").success());
    let public = fs_err::read_to_string(key.with_extension("pub")).expect("pub");
    let mut keys = fs_err::OpenOptions::new().append(true).open(f.work.join("keys/authorized_keys")).expect("authorized_keys");
    std::io::Write::write_all(&mut keys, format!("command=\"sleep 20\" {public}").as_bytes()).expect("append");
    let mut toml = String::from("[project]\nname = \"stuck\"\n\n");
    toml.push_str(&f.host_toml(1, "labels = { role = \"web\" }\ncommand_timeout = 2"));
    toml.push_str(&format!(
        "[host.ssh.h2]\naddress = \"{}\"\nuser = \"root\"\nidentity = \"{}\"\nknown_hosts = \"{}\"\noperation_timeout = 2\nlabels = {{ role = \"web\" }}\n",
        f.address(2),
        key.display(),
        f.known_hosts().display()
    ));
    toml.push_str("\n[host.file.motd]\non = { role = \"web\" }\npath = \"/srv/motd\"\ncontent = \"hi\\n\"\n\n[host.command.slow]\non = { role = \"web\" }\nrun = \"sleep 617 & sleep 618\"\n");
    run.write(&toml);
    let started = std::time::Instant::now();
    let out = run.tend(&["apply", "--auto-approve"], &[]);
    let err = String::from_utf8_lossy(&out.stderr).replace('│', " ").split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(18), "tend waited for the hung host: {:?}", started.elapsed());
    assert!(err.contains("on host `h2` failed: no answer within 2 s (operation_timeout); the host is declared down for the rest of this run"), "{err}");
    assert!(err.contains("did not finish within 2 s and was stopped (command_timeout of `h1`)"), "{err}");
    // h1's file converged; its command and the command's child are gone.
    assert_eq!(fs_err::read_to_string(f.srv("h1").join("motd")).expect("motd"), "hi\n");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!running(&["sleep", "617"]) && !running(&["sleep", "618"]), "the command was stopped with its children");
    let status = ok(&run.tend(&["history", "--json"], &[]));
    assert!(status.contains("\"result\": \"failed\""), "{status}");
}

#[test]
fn a_commands_output_is_logged_with_v_as_it_prints_it_over_ssh() {
    let f = Fleet::up(1);
    let run = Run::new(&format!("{}\n[host.command.wait]\nrun = \"{}\"\n", f.host_toml(1, ""), crate::support::streaming_command("/srv/go")));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tend"));
    cmd.args(["-v", "-C"])
        .arg(run.cfg())
        .arg("--state")
        .arg(run.dir.path().join("state.db"))
        .args(["apply", "--auto-approve"])
        .env("NO_COLOR", "1")
        .env("HOME", run.dir.path())
        .env_remove("SSH_AUTH_SOCK")
        .stdin(std::process::Stdio::null());
    crate::support::assert_streams(cmd, &f.srv("h1").join("go"));
}
