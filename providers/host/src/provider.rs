//! [`HostProvider`]: dispatch to the kinds, batching observation per host.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tend_provider::{
    Acted, ApplyRequest, Attributes, CommitRequest, Committed, ExpandRequest, FieldError, Health, HealthRequest, Instance, KindSchema, Observed, PlanRequest,
    PlannedChange, Provider, ProviderConfig, ProviderError, ProviderFactory, ReadItem, ReadRequest, ResourceAddr, RevertRequest, Reverted, Target, Value,
};

use crate::generation;
use crate::resources::{self, Cx, HostKind, Seen, get_str, ssh_host};
use crate::transport::{LocalTransport, SshTransport, StatRequest, Transport};

/// A connection attempt's outcome, shared by every resource on that host for the run.
type Connected = Result<Arc<dyn Transport>, (tend_provider::ErrorKind, String, Option<String>)>;

/// One host's connection for the run, made on first use.
type ConnectionCell = Arc<tokio::sync::OnceCell<Connected>>;

/// Where one item's observation lands: its stat, its copy's stat, its probe's output (indices),
/// and whether its path is a claim.
type Slots = (Option<usize>, Option<usize>, Option<usize>, bool);

/// How many hosts are connected to and observed at the same time: every host of the run, so
/// that a slow or dead one holds up nobody but itself, up to a quarter of the process's limit of
/// open files (each connection is a socket; the rest is left to files, state and logs).
fn hosts_at_once(hosts: usize) -> usize {
    let open_files = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(1024);
    hosts_within(hosts, open_files)
}

fn hosts_within(hosts: usize, open_files: u64) -> usize {
    let budget = usize::try_from(open_files / 4).unwrap_or(usize::MAX).max(16);
    hosts.clamp(1, budget)
}

/// Registers the host provider.
#[derive(Debug, Default)]
pub struct HostFactory;

impl ProviderFactory for HostFactory {
    fn name(&self) -> &'static str {
        "host"
    }

    fn kinds(&self) -> Vec<KindSchema> {
        resources::schemas()
    }

    fn configure(&self, config: ProviderConfig) -> Result<Box<dyn Provider>, ProviderError> {
        Ok(Box::new(HostProvider::new(config.config_root)))
    }
}

/// The host provider for one run.
pub struct HostProvider {
    kinds: Vec<KindSchema>,
    config_root: PathBuf,
    /// Keyed by host and the settings that decide where a connection goes: a host whose
    /// address changes within a run (a replaced VM) gets a new connection.
    transports: Mutex<HashMap<(ResourceAddr, String), ConnectionCell>>,
    /// Per host: operations that contend on the host (package managers, systemctl, account
    /// databases, commands, release switches) run one at a time; file writes do not wait.
    exclusive: Mutex<HashMap<ResourceAddr, Arc<tokio::sync::Mutex<()>>>>,
    /// The file writes waiting for each streamed host's commit.
    pending: resources::Pending,
    /// Hosts seen keeping generations (their commit switches one; the others' writes a stream).
    generation_hosts: Mutex<std::collections::HashSet<ResourceAddr>>,
}

impl std::fmt::Debug for HostProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostProvider").field("config_root", &self.config_root).finish_non_exhaustive()
    }
}

impl HostProvider {
    /// A provider resolving `source` files inside `config_root`.
    pub fn new(config_root: PathBuf) -> Self {
        Self {
            kinds: resources::schemas(),
            config_root,
            transports: Mutex::new(HashMap::new()),
            exclusive: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            generation_hosts: Mutex::new(std::collections::HashSet::new()),
        }
    }

    fn kind(addr: &ResourceAddr) -> Result<&'static dyn HostKind, ProviderError> {
        resources::kind(&addr.kind).ok_or_else(|| ProviderError::terminal(format!("unknown kind `host.{}`", addr.kind)))
    }

    /// What a kind is handed for an instance on `target`.
    fn cx<'a>(&'a self, generations: Option<&'a generation::Settings>) -> Cx<'a> {
        Cx { config_root: &self.config_root, generations, stream: None }
    }

    /// The settings for an instance on `target`: its generations, and the stream (over SSH) or
    /// batch (locally) its file writes (or, with generations, its blob uploads) wait in for the
    /// host's commit.
    fn cx_on<'a>(&'a self, target: Option<&'a Target>, generations: Option<&'a generation::Settings>) -> Cx<'a> {
        let stream = target.filter(|t| resources::is_host(&t.addr.kind)).map(|t| resources::Stream { host: &t.addr, pending: &self.pending });
        Cx { config_root: &self.config_root, generations, stream }
    }

    /// The transport for a host: one connection per host per run, reused for every operation
    /// on it; a failed connection is remembered so the host's other resources fail fast.
    async fn transport(&self, target: Option<&Target>) -> Result<Arc<dyn Transport>, ProviderError> {
        let target = target.ok_or_else(|| ProviderError::terminal("resource is not placed on a host"))?;
        let settings: String = ["address", "port", "user", "identity", "jump", "known_hosts", "host_key", "ssh_config"]
            .iter()
            .map(|k| target.attributes.get(k).map(ToString::to_string).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("|");
        let cell = {
            let mut cache = self.transports.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // Without its settings (a delete that runs before its host settles), a host's
            // connection of this run is the one to use.
            let reuse =
                if target.attributes.contains_key("address") { None } else { cache.iter().find(|((a, _), _)| *a == target.addr).map(|(_, c)| c.clone()) };
            match reuse {
                Some(c) => c,
                None => cache.entry((target.addr.clone(), settings)).or_default().clone(),
            }
        };
        let connected = cell.get_or_init(|| async { Self::connect(target).await.map_err(|e| (e.kind, e.message, e.hint)) }).await;
        connected.clone().map_err(|(kind, message, hint)| ProviderError { kind, message, hint, partial: None, source: None })
    }

    async fn connect(target: &Target) -> Result<Arc<dyn Transport>, ProviderError> {
        match &*target.addr.kind {
            "local" => {
                let limit = target.attributes.get("command_timeout").and_then(Value::as_i64).and_then(|t| u64::try_from(t).ok()).unwrap_or(3600);
                Ok(Arc::new(LocalTransport::new(&*target.addr.name).with_command_timeout(std::time::Duration::from_secs(limit))))
            }
            "ssh" => {
                let settings = ssh_host::target(&target.addr.name, &target.attributes)
                    .map_err(|e| ProviderError::terminal(format!("cannot reach host `{}`: {e}", target.addr.name)))?;
                // Transient failures (refused, timed out) are retried with backoff.
                let mut delay = std::time::Duration::from_millis(300);
                let mut attempt = 1;
                loop {
                    match SshTransport::connect(settings.clone()).await {
                        Ok(t) => return Ok(Arc::new(t)),
                        Err(e) => {
                            let err = ProviderError::from(e);
                            if err.kind != tend_provider::ErrorKind::Transient || attempt == 3 {
                                return Err(err);
                            }
                            tracing::debug!(host = %target.addr.name, attempt, "connect failed, retrying: {}", err.message);
                            tokio::time::sleep(delay).await;
                            delay *= 3;
                            attempt += 1;
                        }
                    }
                }
            }
            _ => Err(ProviderError::terminal(format!("`{}` is not a host", target.addr))),
        }
    }

    /// The generation settings of the host an instance is on, if it keeps generations.
    fn generations(target: Option<&Target>) -> Option<generation::Settings> {
        target.and_then(|t| generation::settings(&t.attributes))
    }

    /// The commit of a host without generations: every file write of this apply waiting for it,
    /// in one stream ([`Transport::write_files`]).
    async fn write_stream(&self, target: &Target) -> Result<Committed, ProviderError> {
        if self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&target.addr).is_none_or(Vec::is_empty) {
            return Ok(Committed { attributes: Attributes::new(), message: "no file to write".into() });
        }
        let t = self.transport(Some(target)).await?;
        let n = self.write_pending(&target.addr, t.as_ref()).await?;
        Ok(Committed { attributes: Attributes::new(), message: format!("wrote {n} file{} {}", if n == 1 { "" } else { "s" }, together(&target.addr)) })
    }

    /// Write every file waiting for `host`'s commit in one [`Transport::write_files`]; what was
    /// not written waits for the commit to be tried again (a transient failure). How many were
    /// written.
    async fn write_pending(&self, host: &ResourceAddr, t: &dyn Transport) -> Result<usize, ProviderError> {
        let writes = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(host).unwrap_or_default();
        let n = writes.len();
        if n == 0 {
            return Ok(0);
        }
        let results = t.write_files(&writes).await;
        let mut failed: Vec<ProviderError> = Vec::new();
        let mut again = Vec::new();
        for (w, r) in writes.into_iter().zip(results) {
            if let Err(e) = r {
                failed.push(e.into());
                again.push(w);
            }
        }
        if failed.is_empty() {
            return Ok(n);
        }
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(host.clone()).or_default().extend(again);
        if failed.len() == 1 {
            return Err(failed.remove(0));
        }
        let kind = if failed.iter().all(|e| e.kind.retryable()) { tend_provider::ErrorKind::Transient } else { tend_provider::ErrorKind::Terminal };
        let messages: Vec<String> = failed.iter().map(|e| e.message.clone()).collect();
        Err(ProviderError::terminal(format!("{} of {n} files not written: {}", failed.len(), messages.join("; "))).with_kind(kind))
    }

    fn host_lock(&self, host: &ResourceAddr) -> Arc<tokio::sync::Mutex<()>> {
        self.exclusive.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(host.clone()).or_default().clone()
    }

    /// `tend rollback HOST`: switch the host's files to an earlier generation.
    async fn rollback_host(&self, req: &tend_provider::ActRequest) -> Result<Observed, ProviderError> {
        let me = Target { addr: req.addr.clone(), attributes: req.prior.attributes.clone() };
        let settings = generation::settings(&me.attributes).ok_or_else(|| ProviderError::terminal(format!("host `{}` keeps no generations", req.addr.name)))?;
        let t = self.transport(Some(&me)).await?;
        let (current, gens) = generation::list(t.as_ref(), &settings).await?;
        let to = rollback_target(t.host(), &gens, &current.unwrap_or_default(), get_str(&req.args, "to"))?;
        let recorded = generation::switch(t.as_ref(), &settings, &to).await?;
        let mut a = (*req.prior.attributes).clone();
        a.extend(recorded);
        Ok(Observed { id: req.prior.id.clone(), attributes: a })
    }

    async fn read_host_bounded(
        &self,
        limit: &tokio::sync::Semaphore,
        mut items: Vec<&mut ReadItem>,
    ) -> Result<Vec<Result<Option<Observed>, ProviderError>>, ProviderError> {
        let _permit = limit.acquire().await.expect("the semaphore is never closed");
        self.read_host(&mut items).await
    }

    /// Observe every item placed on one host: one `observe` call (one round trip) for all of
    /// them, or on a transport where calls cost nothing (the local host) one per batch, so that
    /// the stats of a large read are not all held at once. What an item's observation no longer
    /// needs (its evaluated config, its record) is dropped as soon as it is made.
    async fn read_host(&self, items: &mut [&mut ReadItem]) -> Result<Vec<Result<Option<Observed>, ProviderError>>, ProviderError> {
        // A host whose address is only known after apply holds nothing we could observe yet.
        if items[0].target.as_ref().is_some_and(|t| t.attributes.values().any(|v| !v.is_known())) {
            return Ok(items.iter().map(|_| Ok(None)).collect());
        }
        let transport = self.transport(items[0].target.as_ref()).await?;
        let generations = items[0].target.as_ref().and_then(|t| generation::settings(&t.attributes));
        let mut out = Vec::with_capacity(items.len());
        let mut claims = Claims::default();
        let size = transport.observe_batch().max(1);
        for (n, batch) in items.chunks_mut(size).enumerate() {
            self.read_batch(batch, n * size, transport.as_ref(), generations.as_ref(), &mut out, &mut claims).await?;
        }
        self.symlinked_conflicts(items, &claims, &mut out);
        Ok(out)
    }

    /// Observe `items` (the items of a read from `first` on) with one `observe` call, appending
    /// their observations to `out` and where their claimed paths land to `claims`.
    async fn read_batch(
        &self,
        items: &mut [&mut ReadItem],
        first: usize,
        transport: &dyn crate::transport::Transport,
        generations: Option<&generation::Settings>,
        out: &mut Vec<Result<Option<Observed>, ProviderError>>,
        claims: &mut Claims,
    ) -> Result<(), ProviderError> {
        let mut stats_wanted = Vec::with_capacity(items.len());
        let mut probe_scripts = Vec::new();
        // Per item: its stat, its copy's stat (a staged file on a host that keeps generations:
        // its link and the copy in `current`), its probe's output, whether its path is a claim.
        let mut slots: Vec<Slots> = Vec::with_capacity(items.len());
        for item in items.iter() {
            let kind = Self::kind(&item.addr)?;
            let mut want = kind.observe(item);
            let copy = match (generations, &mut want.path) {
                (Some(g), Some(path)) if kind.staged() => {
                    stats_wanted.push(StatRequest { path: generation::copy_path(g, &path.path), hash: true, content: false });
                    path.hash = false;
                    Some(stats_wanted.len() - 1)
                }
                _ => None,
            };
            let stat = want.path.map(|p| {
                stats_wanted.push(p);
                stats_wanted.len() - 1
            });
            // Probes for what is not a path (packages, services, accounts, releases) travel in
            // the same remote command as the stats: one round trip per host.
            let probe = want.script.map(|script| {
                probe_scripts.push(script);
                probe_scripts.len() - 1
            });
            slots.push((stat, copy, probe, want.claims && item.config.is_some()));
        }
        let (stats, probe_out) = transport.observe(&stats_wanted, &probe_scripts).await?;
        drop(stats_wanted);
        for (i, &(stat, _, _, claimed)) in slots.iter().enumerate() {
            if let Some(stat) = stat.filter(|_| claimed) {
                claims.note(&stats[stat], first + i);
            }
        }
        for (item, &(stat, copy, probe, _)) in items.iter_mut().zip(&slots) {
            let seen = Seen { stat: stat.map(|i| &stats[i]), copy: copy.map(|i| &stats[i]), probed: probe.map(|i| probe_out[i].as_str()) };
            out.push(Self::kind(&item.addr)?.observed(item, seen, transport).await);
            item.config = None;
            item.prior = None;
        }
        Ok(())
    }

    /// Two resources whose paths differ in config but are one file on the host (a directory on
    /// the way is a symlink) would undo each other on every apply: each is a conflict naming
    /// the other. Paths equal in config are the engine's to report.
    fn symlinked_conflicts(&self, items: &[&mut ReadItem], claims: &Claims, out: &mut [Result<Option<Observed>, ProviderError>]) {
        // Without a symlink on the way every claimed path lands where it says: distinct paths
        // are distinct files (and equal ones are the engine's to report).
        if claims.linked.is_empty() {
            return;
        }
        // Each file reached through a link, with every item that lands on it and the path that
        // item gives: a linked item its own; any other item whose path is that file, that path
        // (its configured path is gone by now; the hash of it was kept).
        let mut by_real: BTreeMap<&str, Vec<(usize, &str)>> = BTreeMap::new();
        for l in &claims.linked {
            by_real.entry(l.real.as_str()).or_default().push((l.item, l.lexical.as_str()));
        }
        let reals: HashMap<u64, &str> = claims.linked.iter().map(|l| (path_hash(&l.real), l.real.as_str())).collect();
        let linked: HashSet<usize> = claims.linked.iter().map(|l| l.item).collect();
        for &(i, h) in &claims.claimed {
            if let Some(real) = reals.get(&h)
                && !linked.contains(&i)
            {
                by_real.entry(real).or_default().push((i, real));
            }
        }
        let claim = |i: usize| {
            self.kinds.iter().find(|k| k.kind == &*items[i].addr.kind).and_then(|k| k.fields.iter().find(|f| f.name == "path")).and_then(|f| f.claim)
        };
        for (real, mut who) in by_real {
            who.sort_unstable();
            if who.len() < 2 || who.iter().all(|&(_, p)| p == who[0].1) || who.iter().all(|&(i, _)| claim(i) != Some(tend_provider::Claim::Exclusive)) {
                continue;
            }
            for &(i, lexical) in &who {
                let others: Vec<String> = who.iter().filter(|&&(j, _)| j != i).map(|&(j, p)| format!("`{}` ({p})", items[j].addr)).collect();
                let host = items[i].target.as_ref().map(|t| t.addr.to_string()).unwrap_or_default();
                out[i] = Err(ProviderError::conflict(format!(
                    "{lexical} and the path of {} are one file on `{host}`, {real}, through a symlink: each apply would undo the other",
                    others.join(" and ")
                ))
                .with_hint("keep one resource per file: merge them, or point them at different files"));
            }
        }
    }
}

/// Which items of a read claim their path, and where those whose directory is reached through
/// a symlink land on the host.
#[derive(Default)]
struct Claims {
    /// The items (places in the read) whose claimed path was observed with its directory
    /// resolved, each with a hash of that path (normalised): all a plan without symlinks keeps.
    claimed: Vec<(usize, u64)>,
    /// Of those, the ones that land elsewhere than they say.
    linked: Vec<Linked>,
}

/// A claimed path reached through a symlink.
struct Linked {
    /// The item's place in the read.
    item: usize,
    /// Its path as written (normalised).
    lexical: String,
    /// Where it lands.
    real: String,
}

/// A hash of a path, to find which claimed path is the file a link leads to (a collision could
/// only report a conflict that is not there, never miss one).
fn path_hash(path: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(path)
}

impl Claims {
    /// Note where `stat`'s path, claimed by the item at `item`, lands.
    fn note(&mut self, stat: &crate::transport::PathStat, item: usize) {
        let Some(name) = std::path::Path::new(&stat.path).file_name().and_then(|n| n.to_str()) else { return };
        let Some(real_dir) = stat.real_dir.as_deref() else { return };
        let lexical = tend_provider::normalise_path(&stat.path);
        self.claimed.push((item, path_hash(&lexical)));
        let real = tend_provider::normalise_path(&format!("{real_dir}/{name}"));
        if real != lexical {
            self.linked.push(Linked { item, lexical, real });
        }
    }
}

/// The generation `tend rollback` goes to: the one `to` names (a prefix of its id is enough), or
/// the newest one that is not current.
fn rollback_target(host: &str, gens: &[String], current: &str, to: Option<&str>) -> Result<String, ProviderError> {
    match to {
        Some(g) => gens.iter().find(|x| x.starts_with(g)).cloned().ok_or_else(|| {
            ProviderError::terminal(format!("no generation `{g}` on host `{host}`")).with_hint(format!("generations there, newest first: {}", gens.join(", ")))
        }),
        None => gens.iter().find(|g| *g != current).cloned().ok_or_else(|| ProviderError::terminal(format!("host `{host}` has no earlier generation"))),
    }
}

#[async_trait]
impl Provider for HostProvider {
    fn name(&self) -> &'static str {
        "host"
    }

    fn kinds(&self) -> &[KindSchema] {
        &self.kinds
    }

    async fn expand(&self, req: &ExpandRequest<'_>) -> Result<Vec<Instance>, FieldError> {
        let instances = crate::expand::expand(req)?;
        if let Some(kind) = resources::kind(&req.addr.kind) {
            kind.check_expanded(req, &instances, self.cx(None))?;
        }
        Ok(instances)
    }

    fn validate(&self, addr: &ResourceAddr, literal: &Attributes) -> Vec<FieldError> {
        resources::kind(&addr.kind).map(|k| k.validate(literal, self.cx(None))).unwrap_or_default()
    }

    async fn read(&self, mut req: ReadRequest) -> Vec<Result<Option<Observed>, ProviderError>> {
        let mut results: Vec<Option<Result<Option<Observed>, ProviderError>>> = req.items.iter().map(|_| None).collect();
        // Per host: the places of its items in the read, and the items (each host's reader
        // drops what an item no longer needs once it is observed).
        let mut by_host: BTreeMap<ResourceAddr, (Vec<usize>, Vec<&mut ReadItem>)> = BTreeMap::new();
        for (i, item) in req.items.iter_mut().enumerate() {
            match (item.target.as_ref().map(|t| t.addr.clone()), Self::kind(&item.addr)) {
                (Some(t), Ok(k)) if !k.is_host() => {
                    let (places, items) = by_host.entry(t).or_default();
                    places.push(i);
                    items.push(item);
                }
                (_, Ok(_)) => results[i] = Some(Ok(None)),
                (_, Err(e)) => results[i] = Some(Err(e)),
            }
        }
        // Hosts are observed concurrently (see `hosts_at_once`); each host is one connection
        // and one command.
        let limit = tokio::sync::Semaphore::new(hosts_at_once(by_host.len()));
        let mut pending = Vec::with_capacity(by_host.len());
        let mut places = Vec::with_capacity(by_host.len());
        for (indices, items) in by_host.into_values() {
            places.push(indices);
            pending.push(self.read_host_bounded(&limit, items));
        }
        let observed = futures_util::future::join_all(pending).await;
        for (indices, result) in places.iter().zip(observed) {
            match result {
                Ok(found) => {
                    for (i, r) in indices.iter().zip(found) {
                        results[*i] = Some(r);
                    }
                }
                Err(e) => {
                    for i in indices {
                        results[*i] = Some(Err(ProviderError { kind: e.kind, hint: e.hint.clone(), ..ProviderError::terminal(e.message.clone()) }));
                    }
                }
            }
        }
        results.into_iter().map(|r| r.expect("every item got a result")).collect()
    }

    async fn plan(&self, req: PlanRequest) -> Result<PlannedChange, ProviderError> {
        let generations = Self::generations(req.target.as_ref());
        let kind = Self::kind(&req.addr)?;
        if let (Some(_), Some(t)) = (&generations, &req.target) {
            self.generation_hosts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(t.addr.clone());
        }
        let mut change = kind.plan(&req, self.cx_on(req.target.as_ref(), generations.as_ref()))?;
        if req.show_content && change.action != tend_provider::Action::NoOp && change.action != tend_provider::Action::Delete {
            // What is there now is read only for a change to something that exists, on a host
            // whose address is known.
            let reachable = req.target.as_ref().is_some_and(|t| t.attributes.values().all(Value::is_known));
            let t = if reachable && req.observed.is_some() { self.transport(req.target.as_ref()).await.ok() } else { None };
            change.content = kind.content(&req, &change, self.cx(generations.as_ref()), t.as_deref()).await;
        }
        Ok(change)
    }

    fn commit_note(&self, target: &ResourceAddr, changed: usize) -> String {
        if self.generation_hosts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(target) {
            format!("will switch to a new generation of its files ({changed} changed)")
        } else {
            format!("will write its {changed} changed file{} {}", if changed == 1 { "" } else { "s" }, together(target))
        }
    }

    /// `tend rollback HOST`: the host's own generations of files (a host recorded with
    /// generations kept), then the releases placed on it.
    fn act_on(&self, action: &str, subject: &str, recorded: &[(&ResourceAddr, &Attributes)]) -> Result<Vec<ResourceAddr>, ProviderError> {
        if action != "rollback" {
            return Ok(Vec::new());
        }
        let is_host = |a: &ResourceAddr| resources::is_host(&a.kind) && &*a.name == subject;
        let generations = recorded.iter().filter(|(a, attrs)| is_host(a) && attrs.contains_key("kept_generations"));
        let releases = recorded.iter().filter(|(a, _)| &*a.kind == "release" && a.key.as_deref() == Some(subject));
        let chosen: Vec<ResourceAddr> = generations.chain(releases).map(|(a, _)| (*a).clone()).collect();
        if chosen.is_empty() && recorded.iter().any(|(a, _)| is_host(a)) {
            return Err(ProviderError::terminal(format!("host `{subject}` has no recorded generations: neither generations of its files nor a host.release"))
                .with_hint("`tend state list` shows what is recorded; a host keeps generations of its files with `generations = true`"));
        }
        Ok(chosen)
    }

    async fn commit(&self, req: CommitRequest) -> Result<Committed, ProviderError> {
        let Some(settings) = generation::settings(&req.target.attributes) else { return self.write_stream(&req.target).await };
        if !req.not_applied.is_empty() {
            // A generation is all of the host's files: none is switched to without all of them.
            let names: Vec<String> = req.not_applied.iter().map(ToString::to_string).collect();
            return Err(ProviderError::terminal(format!(
                "not switched to a new generation: {} did not apply; the host keeps its current generation",
                names.join(", ")
            )));
        }
        let t = self.transport(Some(&req.target)).await?;
        let lock = self.host_lock(&req.target.addr);
        let _serial = lock.lock().await;
        // The staged contents first, all in one stream.
        if let Err(mut e) = self.write_pending(&req.target.addr, t.as_ref()).await {
            e.message = format!("not switched to a new generation: uploading its contents failed: {}", e.message);
            return Err(e);
        }
        let count = req.members.len();
        let attributes = generation::commit(t.as_ref(), &settings, &req.members).await?;
        let message = match get_str(&attributes, "generation") {
            Some(g) => format!("switched to generation {g} ({count} file{})", if count == 1 { "" } else { "s" }),
            None => format!("{count} staged changes took effect"),
        };
        Ok(Committed { attributes, message })
    }

    /// A host's `health` after a commit of its files; a release's `health` after its switch.
    /// Both run once, over a fresh connection, as a new login would.
    async fn health(&self, req: HealthRequest) -> Result<Health, ProviderError> {
        let kind = Self::kind(&req.addr)?;
        if req.commit && kind.is_host() {
            let Some(command) = generation::settings(&req.config).and_then(|s| s.health) else { return Ok(Health::Ready) };
            let id = get_str(&req.applied.attributes, "generation").unwrap_or_default();
            let target = Target { addr: req.addr.clone(), attributes: Arc::new(req.config.clone()) };
            return Ok(resources::health_check(Self::connect(&target).await, &command, None, id, &req.addr.name).await);
        }
        let Some(target) = req.target.clone() else { return Ok(Health::Ready) };
        let fresh: resources::Fresh<'_> = Box::new(move || Box::pin(async move { Self::connect(&target).await }));
        Ok(kind.health(&req, fresh).await)
    }

    /// Switch a host or a release back to the generation it had before a failed health check.
    async fn revert(&self, req: RevertRequest) -> Result<Option<Reverted>, ProviderError> {
        let kind = Self::kind(&req.addr)?;
        if req.commit && kind.is_host() {
            let before = req.before.as_ref().map(|b| &b.attributes);
            let kept_before: Vec<String> = before.map(|a| resources::get_strings(a, "kept_generations")).unwrap_or_default();
            let Some(settings) = generation::settings(&req.config) else { return Ok(None) };
            let target = Target { addr: req.addr.clone(), attributes: Arc::new(req.config.clone()) };
            let t = self.transport(Some(&target)).await?;
            let _serial = self.host_lock(&req.addr).lock_owned().await;
            let id = get_str(&req.applied.attributes, "generation").unwrap_or_default();
            let previous = before.and_then(|b| get_str(b, "generation"));
            let (attributes, message) = generation::revert(t.as_ref(), &settings, id, previous, &kept_before).await?;
            return Ok(Some(Reverted { observed: Observed { id: None, attributes }, message }));
        }
        let t = self.transport(req.target.as_ref()).await?;
        let _serial = match (kind.exclusive(), &req.target) {
            (true, Some(target)) => Some(self.host_lock(&target.addr).lock_owned().await),
            _ => None,
        };
        Ok(kind.revert(t.as_ref(), &req).await?.map(|(observed, message)| Reverted { observed, message }))
    }

    async fn act(&self, req: tend_provider::ActRequest) -> Result<Acted, ProviderError> {
        let switched = |field: &str, observed: Observed, replan: bool| {
            let from = req.prior.attributes.get(field).map(ToString::to_string).unwrap_or_default();
            let to = observed.attributes.get(field).map(ToString::to_string).unwrap_or_default();
            Acted { observed, message: format!("switched from generation {from} to {to}"), replan }
        };
        if Self::kind(&req.addr)?.is_host() && req.action == "rollback" {
            // The next plan keeps what the host was switched back to until its files change.
            return Ok(switched("generation", self.rollback_host(&req).await?, false));
        }
        if &*req.addr.kind != "release" || req.action != "rollback" {
            return Err(ProviderError::terminal(format!("`{}` does not support `{}`", req.addr, req.action)));
        }
        let t = self.transport(req.target.as_ref()).await?;
        let path = get_str(&req.prior.attributes, "path").ok_or_else(|| ProviderError::terminal("no release path recorded"))?;
        let out = t.exec(&resources::release::observe_script(path), None).await?;
        let now = resources::release::observed(&out.stdout, path)
            .ok_or_else(|| ProviderError::terminal(format!("no releases under {path} on host `{}`", t.host())))?;
        let current = get_str(&now.attributes, "current").unwrap_or_default().to_string();
        let gens: Vec<String> = resources::get_strings(&now.attributes, "generations");
        let to = rollback_target(t.host(), &gens, &current, get_str(&req.args, "to"))?;
        resources::release::switch(t.as_ref(), path, &to).await?;
        let mut a = now.attributes.clone();
        a.insert("current".into(), Value::from(to));
        // The next plan sees a change and moves the release forward again.
        Ok(switched("current", Observed { id: None, attributes: a }, true))
    }

    async fn apply(&self, req: ApplyRequest) -> Result<Option<Observed>, ProviderError> {
        let kind = Self::kind(&req.addr)?;
        if kind.is_host() {
            let Some(config) = &req.config else { return Ok(None) };
            // Managing a host starts with reaching it: connect (verifying its key) now.
            let me = Target { addr: req.addr.clone(), attributes: Arc::new(config.clone()) };
            let t = self.transport(Some(&me)).await?;
            let mut observed = kind.apply(t.as_ref(), &req, self.cx(None)).await?;
            // What a host's commits recorded (its generations) stays on its record.
            if let (Some(o), Some(p)) = (&mut observed, &req.prior) {
                o.attributes.extend(p.attributes.iter().filter(|(k, _)| generation::RECORDED.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())));
            }
            return Ok(observed);
        }
        let t = self.transport(req.target.as_ref()).await?;
        let _serial = match (kind.exclusive(), &req.target) {
            (true, Some(target)) => Some(self.host_lock(&target.addr).lock_owned().await),
            _ => None,
        };
        let generations = Self::generations(req.target.as_ref());
        kind.apply(t.as_ref(), &req, self.cx_on(req.target.as_ref(), generations.as_ref())).await
    }
}

/// How a host's file writes travel together: one stream over SSH, one batch on this machine.
fn together(host: &ResourceAddr) -> &'static str {
    if &*host.kind == "ssh" { "in one stream" } else { "in one batch" }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_host_is_observed_at_once_within_the_open_file_limit() {
        assert_eq!(super::hosts_within(100, 1024), 100, "100 hosts: all at once");
        assert_eq!(super::hosts_within(1000, 1024), 256, "a quarter of the open-file limit");
        assert_eq!(super::hosts_within(1000, 20), 16, "never fewer than 16");
        assert_eq!(super::hosts_within(0, 1024), 1);
    }
}
