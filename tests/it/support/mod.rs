//! Shared helpers: load a config directory with the fake provider registered, plan, apply;
//! real SSH hosts in [`fleet`].

pub mod fleet;
pub mod git;
pub mod kube;
pub mod moto;
pub mod need;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tend::apply::{ApplyOptions, ApplyOutcome, apply};
use tend::config::LoadOptions;
use tend::plan::Plan;
use tend::provider::ResourceAddr;
use tend::registry::Registry;
use tend::report::Reporter;
use tend::state::{SqliteStore, StateStore};
use tend::workspace::{Workspace, WorkspaceError};
use tend_provider_testing::FakeFactory;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A test workspace: a temp dir for state and outputs plus a fake cloud.
pub struct Bench {
    pub dir: tempfile::TempDir,
    pub fake: FakeFactory,
    /// What applies reported as progress (`ADDR: waiting for`), in order.
    pub progress: Arc<Progress>,
}

/// A reporter that keeps readiness progress.
#[derive(Default)]
pub struct Progress(std::sync::Mutex<Vec<String>>);

impl Progress {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().expect("progress lock").clone()
    }
}

impl Reporter for Progress {
    fn on_progress(&self, addr: &ResourceAddr, waiting_for: &str, _elapsed: std::time::Duration) {
        self.0.lock().expect("progress lock").push(format!("{addr}: {waiting_for}"));
    }
}

impl Bench {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir"), fake: FakeFactory::new(), progress: Arc::default() }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }

    pub fn load(&self, root: &Path) -> Result<Workspace, WorkspaceError> {
        let opts = LoadOptions { root: root.to_path_buf(), ..LoadOptions::default() };
        Workspace::load(Registry::builtin().with(self.fake.clone()), &opts, Some(self.state()))
    }

    /// What loading and building the graph of `root` refuses (the test expects a refusal).
    pub async fn graph_error(&self, root: &Path) -> WorkspaceError {
        match self.load(root) {
            Err(e) => e,
            Ok(ws) => ws.graph(&tend::state::Snapshot::default()).await.expect_err("refused"),
        }
    }

    pub async fn plan(&self, root: &Path) -> Plan {
        let mut ws = self.load(root).unwrap_or_else(|e| panic!("{} does not load: {e:?}", root.display()));
        let state = ws.read_state().await.expect("state reads");
        ws.plan(&state).await.expect("plan builds")
    }

    pub async fn plan_with(&self, root: &Path, options: &tend::plan::PlanOptions) -> Plan {
        let mut ws = self.load(root).unwrap_or_else(|e| panic!("{} does not load: {e:?}", root.display()));
        let state = ws.read_state().await.expect("state reads");
        ws.plan_with(&state, options).await.expect("plan builds")
    }

    pub async fn apply(&self, root: &Path) -> ApplyOutcome {
        let plan = self.plan(root).await;
        assert!(plan.is_applyable(), "plan has errors: {:?}", plan.errors);
        self.apply_plan(root, &plan).await
    }

    pub async fn apply_plan(&self, root: &Path, plan: &Plan) -> ApplyOutcome {
        let mut ws = self.load(root).expect("loads");
        ws.configure_all().expect("providers configure");
        let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&self.state()).expect("state opens"));
        let opts = ApplyOptions { parallelism: 4, who: "test@host".into(), cancel: Arc::new(AtomicBool::new(false)), secrets: ws.secrets.clone() };
        apply(Arc::new(plan.clone()), &ws.providers, store, self.progress.clone(), opts).await.expect("apply runs")
    }

    pub async fn records(&self) -> Vec<String> {
        SqliteStore::open(&self.state()).expect("opens").load().await.expect("loads").records.keys().map(ToString::to_string).collect()
    }
}

/// Write files (relative path, content) under a directory.
pub fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (rel, content) in files {
        let p = root.join(rel);
        fs_err::create_dir_all(p.parent().expect("has parent")).expect("mkdir");
        fs_err::write(p, content).expect("write");
    }
}

/// Run `cmd` (a tend apply with -v of a command that prints `first-line`, then waits for
/// `marker` to exist before printing `last-line` and exiting): asserts `first-line` is logged
/// while the command still runs — it cannot finish before the marker is made, which happens
/// only once the line was seen — and that the apply then completes with `last-line` logged.
pub fn assert_streams(mut cmd: std::process::Command, marker: &Path) {
    use std::io::BufRead;
    let mut child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().expect("tend starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let first = loop {
        match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(line) if line.contains("first-line") => break Some(line),
            Ok(line) => seen.push(line),
            Err(_) => break None,
        }
    };
    fs_err::write(marker, "").expect("marker");
    let status = child.wait().expect("tend exits");
    reader.join().expect("reader");
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(first.is_some(), "the first line was not logged while the command ran:\n{}\n{}", seen.join("\n"), rest.join("\n"));
    assert!(status.success(), "{}", rest.join("\n"));
    assert!(rest.iter().any(|l| l.contains("last-line") && l.contains("stderr")), "{}", rest.join("\n"));
}

/// A command for [`assert_streams`]: waits for `marker` (at most a minute, so that it ends
/// even when the test fails).
pub fn streaming_command(marker: &str) -> String {
    format!("echo first-line; i=0; while [ ! -e {marker} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; echo last-line >&2")
}
