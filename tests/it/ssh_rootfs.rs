//! Hosts with a root filesystem of their own (Debian, debootstrap): packages, accounts and
//! commands applied for real over SSH, then read back with the machine's ssh client.

use crate::ssh::{Run, ok};
use crate::support::fleet::Fleet;

fn on_host(f: &Fleet, command: &str) -> String {
    let out = f.ssh("h1", command);
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Whether dpkg on h1 has `package` installed (not merely known or with configuration left).
fn installed(f: &Fleet, package: &str) -> bool {
    on_host(f, &format!("dpkg-query -W -f='${{db:Status-Status}}' {package} 2>/dev/null")) == "installed"
}

fn site(f: &Fleet, packages: &str) -> String {
    format!(
        r#"{host}
[host.group.app]
on = ["h1"]
name = "app"
gid = 2001

[host.user.app]
on = ["h1"]
name = "app"
uid = 2001
group = "app"
home = "/home/app"
shell = "/bin/sh"
depends_on = ["host.group.app"]

[host.package.tools]
on = ["h1"]
names = ["hello", "jq"]
{packages}

[host.file.settings]
on = ["h1"]
path = "/srv/app.json"
content = '{{"ok": true, "greeting": "managed by tend"}}'
owner = "app"
group = "app"
mode = "0640"
depends_on = ["host.user.app"]

[host.command.check]
on = ["h1"]
run = "jq -r .greeting /srv/app.json > /srv/checked && hello > /srv/greeting"
on_change = ["host.file.settings"]
depends_on = ["host.package.tools"]
"#,
        host = f.host_toml(1, "")
    )
}

/// Services are left out: no init system runs on these hosts (see
/// `ssh::package_and_service_observe_and_plan_only_on_a_real_host` for their plan).
#[test]
fn packages_accounts_and_commands_apply_for_real_on_a_debian_host_without_services() {
    let f = Fleet::up_rootfs(1);
    assert!(!installed(&f, "hello") && !installed(&f, "jq"), "the root filesystem starts without them");
    let machine_had_hello = std::path::Path::new("/usr/bin/hello").exists();
    let run = Run::new(&site(&f, ""));

    let plan = ok(&run.tend(&["plan"], &[]));
    assert!(plan.contains("host.package.tools") && plan.contains("will be created"), "{plan}");
    let out = ok(&run.tend(&["apply", "--auto-approve"], &[]));
    assert!(out.contains("Apply complete"), "{out}");

    // apt installed the packages (and jq's libraries) into the host's own root.
    let status = on_host(&f, "dpkg-query -W -f='${Package} ${db:Status-Status}\\n' hello jq libjq1");
    assert_eq!(status, "hello installed\njq installed\nlibjq1 installed\n");
    assert_eq!(on_host(&f, "hello"), "Hello, world!\n");
    assert!(f.changed_root("h1").join("usr/bin/hello").is_file(), "the host's own /usr holds it");
    assert_eq!(std::path::Path::new("/usr/bin/hello").exists(), machine_had_hello, "the machine's /usr is untouched");
    // Real accounts, the file owned by them, the command run after its packages.
    assert_eq!(on_host(&f, "id app"), "uid=2001(app) gid=2001(app) groups=2001(app)\n");
    assert_eq!(on_host(&f, "getent passwd app | cut -d: -f6,7"), "/home/app:/bin/sh\n");
    assert_eq!(on_host(&f, "stat -c '%U:%G %a' /srv/app.json /home/app"), "app:app 640\napp:app 755\n");
    assert_eq!(std::fs::read_to_string(f.srv("h1").join("checked")).expect("checked"), "managed by tend\n");
    assert_eq!(std::fs::read_to_string(f.srv("h1").join("greeting")).expect("greeting"), "Hello, world!\n");

    // Converged: the next plan changes nothing.
    let plan = ok(&run.tend(&["plan"], &[]));
    assert!(plan.contains("No changes"), "{plan}");

    // Drift: a package removed by hand is installed again.
    on_host(&f, "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q hello");
    let plan = ok(&run.tend(&["plan"], &[]));
    assert!(plan.contains("host.package.tools") && plan.contains("hello"), "{plan}");
    ok(&run.tend(&["apply", "--auto-approve"], &[]));
    assert_eq!(on_host(&f, "hello"), "Hello, world!\n");

    // Removed with state = "absent": apt removes both, the command depending on them is not
    // asked to run again, and nothing else changes.
    run.write(&site(&f, "state = \"absent\""));
    let out = ok(&run.tend(&["apply", "--auto-approve"], &[]));
    assert!(out.contains("1 changed"), "{out}");
    assert!(!installed(&f, "hello") && !installed(&f, "jq"), "{}", on_host(&f, "dpkg -l hello jq"));
    assert!(installed(&f, "libjq1"), "apt remove leaves what was pulled in, as apt does");
    assert!(ok(&run.tend(&["plan"], &[])).contains("No changes"));

    // A package apt cannot find fails the apply naming the host and apt's reason; apt installs
    // nothing of the batch, and the next plan still wants it.
    run.write(&site(&f, "").replace(r#"names = ["hello", "jq"]"#, r#"names = ["hello", "tend-no-such-package"]"#));
    let out = run.tend(&["apply", "--auto-approve"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("host.package.tools") && err.contains("apt exited with status 100 on host `h1`"), "{err}");
    assert!(err.contains("Unable to locate package tend-no-such-package"), "{err}");
    assert!(!installed(&f, "hello"));
    let plan = ok(&run.tend(&["plan"], &[]));
    assert!(plan.contains("tend-no-such-package"), "{plan}");
}
