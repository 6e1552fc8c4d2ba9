//! `tend-bench kube`: the Flux benchmark's shape on the fake Kubernetes API server.
//!
//! N sets of manifests, each {`Deployment` (0 replicas), `ServiceAccount`, `Service`, `Ingress`} in one
//! file and one `kube.manifests` set per file (the default N = 1,000 makes 4,000 objects), all in
//! namespace `bench`. Measured, each with time, peak RSS and the API calls the server counted:
//!
//! - first converge: `tend apply` from empty, against `kubectl apply --server-side -R -f` of the
//!   same files, each on a fresh server (`tests/testbed/fake_kube_apiserver.py`, workloads ready
//!   at once: `FAKE_KUBE_READY_SECONDS=0`). tend waits for every object to be ready; kubectl
//!   does not wait;
//! - no-op plan: `tend plan` against `kubectl diff --server-side -R -f` on what each applied;
//! - one object changed (a Deployment's image): the same two commands.
//!
//! Figures: min and median of `--runs` runs, and the ratio of kubectl's to tend's.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::{Sample, run_measured, stats};

/// One fake API server, stopped (by its PID) when dropped.
struct Server {
    child: Child,
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/testbed/fake_kube_apiserver.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(dir.path())
            .env("FAKE_KUBE_READY_SECONDS", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", script.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("its stdout")?).read_line(&mut line)?;
        let server = Self { child, kubeconfig: dir.path().join("kubeconfig"), dir };
        if !line.starts_with("ready ") {
            bail!("the fake API server did not start: {line:?}");
        }
        let ns = server.dir.path().join("namespace.yaml");
        fs_err::write(&ns, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bench\n")?;
        server.kubectl(&["apply", "--server-side", "-f", &ns.to_string_lossy()])?;
        Ok(server)
    }

    fn kubectl(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("kubectl").arg("--kubeconfig").arg(&self.kubeconfig).args(args).output().context("running kubectl")?;
        if !out.status.success() {
            bail!("kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Requests served so far, by `VERB /path` (the server does not count its own controls).
    fn calls(&self) -> Result<BTreeMap<String, u64>> {
        Ok(serde_json::from_str(&self.kubectl(&["get", "--raw", "/fake/calls"])?)?)
    }

    /// Runs `cmd` measured and returns it with the API calls it made.
    fn measured(&self, cmd: &[&str]) -> Result<(Sample, u64)> {
        let before: u64 = self.calls()?.values().sum();
        let sample = run_measured(cmd)?;
        let after: u64 = self.calls()?.values().sum();
        Ok((sample, after - before))
    }
}

fn object(i: usize, image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{i}
  namespace: bench
spec:
  replicas: 0
  selector:
    matchLabels: {{app: app-{i}}}
  template:
    metadata:
      labels: {{app: app-{i}}}
    spec:
      serviceAccountName: app-{i}
      containers:
      - name: app
        image: {image}
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: app-{i}
  namespace: bench
---
apiVersion: v1
kind: Service
metadata:
  name: app-{i}
  namespace: bench
spec:
  selector: {{app: app-{i}}}
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: app-{i}
  namespace: bench
spec:
  rules:
  - host: app-{i}.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: app-{i}
            port:
              number: 80
"
    )
}

/// The config: one cluster (the server's kubeconfig) and one set per file of `k8s/`.
fn generate(root: &Path, sets: usize, kubeconfig: &Path) -> Result<()> {
    fs_err::create_dir_all(root.join("k8s"))?;
    let mut toml = format!("[project]\nname = \"kube-bench\"\n\n[kube.cluster.bench]\nkubeconfig = \"{}\"\n\n", kubeconfig.display());
    for i in 0..sets {
        let _ = write!(toml, "[kube.manifests.s{i:04}]\npath = \"k8s/s{i:04}.yaml\"\n\n");
        fs_err::write(root.join(format!("k8s/s{i:04}.yaml")), object(i, "nginx:1.27"))?;
    }
    fs_err::write(root.join("tend.toml"), toml)?;
    Ok(())
}

/// The runs of one scenario: time and RSS, and API calls.
#[derive(Default)]
struct Runs {
    samples: Vec<Sample>,
    calls: Vec<u64>,
}

impl Runs {
    fn push(&mut self, (sample, calls): (Sample, u64)) {
        self.samples.push(sample);
        self.calls.push(calls);
    }

    fn row(&self, name: &str) -> String {
        let (tmin, tmed, rmin, rmed) = stats(&self.samples);
        let mut c = self.calls.clone();
        c.sort_unstable();
        format!("| {name} | {tmin:.2} | {tmed:.2} | {rmin:.0} | {rmed:.0} | {} |", c[c.len() / 2])
    }

    /// How many times longer `self` took than `other`: min and median.
    fn over(&self, other: &Self) -> String {
        let (smin, smed, _, _) = stats(&self.samples);
        let (omin, omed, _, _) = stats(&other.samples);
        format!("{:.1}× (min) / {:.1}× (median)", smin / omin, smed / omed)
    }
}

/// Run the benchmark.
#[allow(clippy::print_stdout, clippy::print_stderr)]
pub fn run(tend: &Path, sets: usize, runs: usize) -> Result<()> {
    let runs = runs.max(1);
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("cfg");
    let state = dir.path().join("state.db");
    let (root_s, state_s, tend_s) = (root.to_string_lossy().into_owned(), state.to_string_lossy().into_owned(), tend.to_string_lossy().into_owned());
    let k8s = root.join("k8s").to_string_lossy().into_owned();
    println!(
        "tend: {tend_s}; {sets} sets = {} objects; {runs} runs per scenario; {} cores",
        sets * 4,
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!();

    // First converge, each run on a fresh server: tend, then kubectl.
    let (mut tend_first, mut kubectl_first) = (Runs::default(), Runs::default());
    let mut servers = None;
    for run in 0..runs {
        let (for_tend, for_kubectl) = (Server::start()?, Server::start()?);
        generate(&root, sets, &for_tend.kubeconfig)?;
        for suffix in ["", "-wal", "-shm"] {
            let _ = fs_err::remove_file(format!("{state_s}{suffix}"));
        }
        tend_first.push(for_tend.measured(&[&tend_s, "-C", &root_s, "--state", &state_s, "apply", "--auto-approve"])?);
        let kc = for_kubectl.kubeconfig.to_string_lossy().into_owned();
        kubectl_first.push(for_kubectl.measured(&["kubectl", "--kubeconfig", &kc, "apply", "--server-side", "--field-manager", "bench", "-R", "-f", &k8s])?);
        eprintln!("first converge, run {}/{runs} done", run + 1);
        if run + 1 == runs {
            servers = Some((for_tend, for_kubectl));
        }
    }
    let (for_tend, for_kubectl) = servers.expect("one run at least");
    let kc = for_kubectl.kubeconfig.to_string_lossy().into_owned();
    // kubectl diff exits 1 when it finds a difference.
    let diff = format!("kubectl --kubeconfig '{kc}' diff --server-side --field-manager bench -R -f '{k8s}'; test $? -le 1");
    let plan = [tend_s.as_str(), "-C", &root_s, "--state", &state_s, "plan"];
    let both = |label: &str| -> Result<[Runs; 2]> {
        let (mut by_tend, mut by_kubectl) = (Runs::default(), Runs::default());
        for _ in 0..runs {
            by_tend.push(for_tend.measured(&plan)?);
            by_kubectl.push(for_kubectl.measured(&["sh", "-c", &diff])?);
        }
        eprintln!("{label} done");
        Ok([by_tend, by_kubectl])
    };
    let [tend_noop, kubectl_noop] = both("no-op plans")?;
    fs_err::write(root.join("k8s/s0000.yaml"), object(0, "nginx:1.28"))?;
    let [tend_one, kubectl_one] = both("one-changed plans")?;

    println!("| scenario | min s | median s | peak RSS min MB | peak RSS median MB | API calls (median) |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!("{}", tend_first.row("tend apply, first converge (waits for readiness)"));
    println!("{}", kubectl_first.row("kubectl apply --server-side, first converge (no wait)"));
    println!("{}", tend_noop.row("tend plan, nothing changed"));
    println!("{}", kubectl_noop.row("kubectl diff --server-side, nothing changed"));
    println!("{}", tend_one.row("tend plan, one object changed"));
    println!("{}", kubectl_one.row("kubectl diff --server-side, one object changed"));
    println!();
    println!(
        "kubectl ÷ tend: first converge {}; no-op plan {}; one changed {}",
        kubectl_first.over(&tend_first),
        kubectl_noop.over(&tend_noop),
        kubectl_one.over(&tend_one)
    );
    Ok(())
}
