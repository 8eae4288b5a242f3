//! The chaos driver: a 3-node Leasehold cluster in network namespaces under continuous DHCP load, with
//! faults injected on a schedule drawn from `--seed`, and a checker that trusts only what the clients
//! were told (see `ledger`) when it reads the nodes' tables (see `checker`).
//!
//! A run: the segment (`scripts/netns.sh up`: 3 server namespaces 10.77.0.1–3/16, 2 client namespaces),
//! the nodes (`leasehold serve` in cluster mode, own data directory each, fsync on), the clients (one
//! `TestClient` with many MACs in client namespace 1, optionally perfdhcp in client namespace 2), then
//! rounds until the time is up: inject one fault, hold it (reading every live node's table each second
//! for duplicates), heal, wait for all three nodes to agree on a leader, then a checkpoint — the load
//! pauses, the tables must converge, and every table is checked for duplicates and for every lease a
//! client still holds. At the end a last checkpoint and the report (`report`).
//!
//! Etcd mode (`Options::store = Store::Etcd`): three etcd members first, one in each server namespace
//! (`etcd`), then the nodes with `--store etcd` beside them (no peer links); the same load, checker and
//! zero targets, the fault kinds valid there (`faults`: the etcd-side ones added, the Raft-only ones
//! left out), and after each fault every etcd member must be healthy before the recovery is timed.
//!
//! Safety: all traffic stays in the namespaces the run creates; iptables rules and NFQUEUE delayers
//! live only inside the node namespaces; processes are signalled by PID; every loop is bounded by a
//! count or a deadline; the segment is removed when the run ends (Drop), also on a panic.

pub mod checker;
pub mod etcd;
pub mod faults;
pub mod ledger;
pub mod load;
pub mod nfqueue;
pub mod node;
pub mod report;
pub mod rng;
pub mod scenario;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::netns_support::{leasehold_bin, require_root, scratch_dir, signal, tail_of, Proc, Segment};
use faults::{FaultKind, FaultRecord};
use ledger::Ledger;
use node::{Cluster, Pool, NODES};
use report::Report;
use rng::Rng;

/// How long a healed cluster may take to agree on a leader again.
pub const RECOVERY_LIMIT: Duration = Duration::from_secs(30);
/// How long the tables may take to converge once the load is paused.
pub const CONVERGENCE_LIMIT: Duration = Duration::from_secs(20);
/// After the load pauses, in-flight exchanges get at most this long to finish (no proposal pending on
/// any node, every node applied as far) before the snapshot.
const SETTLE_LIMIT: Duration = Duration::from_secs(5);
/// How often a wait looks again at state that has no event to wait on.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// A round (fault, recovery, checkpoint) is not begun with less than this left.
const MIN_ROUND: Duration = Duration::from_secs(15);

/// Polls `probe` (every `POLL_INTERVAL`) until it returns `Ok`, for at most `limit`: its value and how
/// long that took, or `Err` with what the last probe saw. Every wait of the driver and of the scenarios
/// on something that happens (a leader, a lease in a table, a counter) is bounded this way; the only
/// fixed waits left are those whose length is the test itself (a fault held, calm between faults).
pub fn wait_for<T>(limit: Duration, mut probe: impl FnMut() -> Result<T, String>) -> Result<(T, Duration), String> {
    let started = Instant::now();
    loop {
        match probe() {
            Ok(value) => return Ok((value, started.elapsed())),
            Err(seen) if started.elapsed() >= limit => return Err(format!("not within {limit:?}: {seen}")),
            Err(_) => thread::sleep(POLL_INTERVAL),
        }
    }
}

/// Seconds since the Unix epoch, in ms (the host's clock: the driver never changes it).
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What went wrong, by kind: any violation fails the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ViolationKind {
    /// An address bound to two clients (in the tables, or ACKed to two clients at once).
    Duplicate,
    /// A lease a client holds (ACKed, unexpired, unreleased) missing, shortened or given away.
    LostLease,
    /// A renewal or rebind of a live lease NAKed: the client had to give up an address it was promised.
    NakOfLiveLease,
    /// The tables did not converge within `CONVERGENCE_LIMIT` after healing.
    NoConvergence,
    /// The nodes did not agree on a leader within `RECOVERY_LIMIT` after healing.
    NoRecovery,
    /// A node process ended without being told to.
    NodeExited,
    /// A node's log shows a panic (a panicked actor thread can leave a live process that no longer
    /// replicates).
    NodePanicked,
    /// A fault could not be injected or healed as planned (e.g. a membership change refused).
    FaultFailed,
}

impl ViolationKind {
    pub fn label(self) -> &'static str {
        match self {
            ViolationKind::Duplicate => "duplicate address",
            ViolationKind::LostLease => "lost ACKed lease",
            ViolationKind::NakOfLiveLease => "NAK of a live lease",
            ViolationKind::NoConvergence => "tables did not converge",
            ViolationKind::NoRecovery => "no leader after healing",
            ViolationKind::NodeExited => "node exited by itself",
            ViolationKind::NodePanicked => "panic in a node's log",
            ViolationKind::FaultFailed => "fault could not be applied",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub kind: ViolationKind,
    /// Seconds into the run.
    pub at_secs: f64,
    pub detail: String,
}

impl Violation {
    pub fn new(kind: ViolationKind, at_secs: f64, detail: String) -> Violation {
        Violation { kind, at_secs, detail }
    }
}

/// How a wiped node comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WipeMode {
    /// README "Adding a node": remove it on the leader, wipe, start with `--join`, add it again.
    Rejoin,
    /// Restart with an empty data directory and the same `--peer` list, as if nothing happened: the
    /// node has forgotten its votes and entries, and must catch up from the leader before it votes.
    Plain,
}

/// Where the nodes keep the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// Their own Raft log (cluster mode: `--peer`s, peer links on TCP 6768).
    Raft,
    /// Three etcd members, one in each server namespace beside its node (`--store etcd`; see `etcd`).
    Etcd,
}

impl Store {
    pub fn label(self) -> &'static str {
        match self {
            Store::Raft => "raft",
            Store::Etcd => "etcd",
        }
    }

    pub fn parse(text: &str) -> Option<Store> {
        [Store::Raft, Store::Etcd].into_iter().find(|s| s.label() == text)
    }
}

/// The etcd store's election TTL in etcd-mode runs (the default of `[store] election_ttl_secs`).
pub const ETCD_ELECTION_TTL_SECS: u32 = 2;

#[derive(Debug, Clone)]
pub struct Options {
    pub duration: Duration,
    pub seed: u64,
    pub store: Store,
    /// Long-lived client machines.
    pub clients: usize,
    /// Machines that release soon after each ACK and return with a new MAC.
    pub churn: usize,
    pub lease_secs: u32,
    /// New perfdhcp exchanges a second (0: no perfdhcp).
    pub perfdhcp_rate: u32,
    pub wipe_mode: WipeMode,
    /// Fault kinds to draw from (all that are valid with `store` by default).
    pub kinds: Vec<FaultKind>,
    pub log_level: String,
    /// Keep the run's directory (logs, data) even when the run passes.
    pub keep: bool,
}

impl Options {
    pub fn new(duration: Duration, seed: u64) -> Options {
        Options {
            duration,
            seed,
            store: Store::Raft,
            clients: 24,
            churn: 3,
            lease_secs: 20,
            perfdhcp_rate: 5,
            wipe_mode: WipeMode::Rejoin,
            kinds: FaultKind::for_store(Store::Raft),
            log_level: "info".into(),
            keep: false,
        }
    }

    /// The pool kept by `store`, drawing from every fault kind valid there.
    pub fn with_store(self, store: Store) -> Options {
        Options { store, kinds: FaultKind::for_store(store), ..self }
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// SIGINT/SIGTERM end the run early but cleanly (report, then namespaces removed).
pub fn install_interrupt_handler() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_interrupt as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_interrupt as *const () as libc::sighandler_t);
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Everything a run holds; faults are methods on it (see `faults`).
pub struct Run {
    pub options: Options,
    pub started: Instant,
    pub cluster: Cluster,
    pub ledger: Arc<Mutex<Ledger>>,
    pub load: Option<load::LoadHandle>,
    pub perfdhcp: Option<Proc>,
    pub rng: Rng,
    pub faults: Vec<FaultRecord>,
    pub violations: Vec<Violation>,
    seen: BTreeSet<(ViolationKind, String)>,
    pub checkpoints: u32,
    pub slowest_convergence: Duration,
    pub slowest_recovery: Duration,
    pub notes: Vec<String>,
    /// The etcd members in etcd mode (stopped after the nodes, before the namespaces go).
    pub etcd: Option<etcd::EtcdCluster>,
    /// Kept last: the namespaces go after the processes in them.
    pub segment: Segment,
}

impl Run {
    pub fn at(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a violation once per `key` (the same lost lease is not counted at every checkpoint).
    pub fn violation(&mut self, kind: ViolationKind, key: &str, detail: String) {
        if self.seen.insert((kind, key.to_owned())) {
            eprintln!("chaos: [{:7.1} s] VIOLATION {}: {detail}", self.at(), kind.label());
            self.violations.push(Violation::new(kind, self.at(), detail));
        }
    }

    pub fn log(&self, text: &str) {
        eprintln!("chaos: [{:7.1} s] {text}", self.at());
    }

    /// Nodes that died by themselves: a violation each, then started again on their data directory.
    pub fn reap(&mut self) {
        if interrupted() {
            // Ctrl-C reaches the whole process group, the nodes included: their exits are not crashes.
            return;
        }
        for id in self.cluster.reap_crashes() {
            let (_, status, log) = self.cluster.crashes.last().cloned().unwrap_or_default();
            self.violation(
                ViolationKind::NodeExited,
                &format!("{id}-{}", self.cluster.node(id).starts),
                format!("node {id} exited with {status}\n{log}"),
            );
            self.cluster.start(id, false);
        }
        // An etcd member that ends by itself is not Leasehold's doing: noted, and started again.
        let crashed = self.etcd.as_mut().map(etcd::EtcdCluster::reap_crashes).unwrap_or_default();
        for id in crashed {
            let status = self.etcd.as_ref().and_then(|e| e.crashes.last().map(|c| c.1.clone())).unwrap_or_default();
            let note = format!("etcd member e{id} exited by itself ({status}) at {:.1} s; started again", self.at());
            self.log(&note);
            self.notes.push(note);
            if let Some(etcd) = self.etcd.as_mut() {
                etcd.start(id);
            }
        }
    }

    /// Every node log written so far that shows a panic: a violation each (with the panic's lines).
    pub fn check_panics(&mut self) {
        for id in 1..=NODES {
            for start in 1..=self.cluster.node(id).starts {
                let path = self.cluster.dir.join(format!("node{id}-run{start}.log"));
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if let Some(at) = text.find("panicked at") {
                    let from = text[..at].rfind('\n').map_or(0, |i| i + 1);
                    let lines: Vec<&str> = text[from..].lines().take(3).collect();
                    let key = path.display().to_string();
                    self.violation(
                        ViolationKind::NodePanicked,
                        &key,
                        format!("{}: {}", path.display(), lines.join(" | ")),
                    );
                }
            }
        }
    }

    /// Reads every live node's table and checks for duplicates (during faults: lagging or cut-off
    /// nodes included, since an address must never be bound to two clients anywhere).
    pub fn scan(&mut self) {
        self.reap();
        let tables: Vec<(u32, Vec<crate::netns_support::Lease>)> = self
            .cluster
            .live_ids()
            .into_iter()
            .filter_map(|id| self.cluster.leases(id).ok().map(|t| (id, t)))
            .collect();
        self.check_duplicates(&tables);
    }

    /// `checker::duplicates` with the clients' ledger saying which of its MACs still claim what.
    fn check_duplicates(&mut self, tables: &checker::Tables) {
        let claims: BTreeMap<String, Ipv4Addr> = self
            .ledger()
            .live_promises(unix_ms())
            .into_iter()
            .map(|p| (leasehold_tests::format_mac(p.mac), p.ip))
            .collect();
        let ours = leasehold_tests::format_mac(leasehold_tests::test_mac(0));
        let prefix = &ours[..6];
        let problems = checker::duplicates(tables, |mac, ip| !mac.starts_with(prefix) || claims.get(mac) == Some(&ip));
        for problem in problems {
            self.violation(ViolationKind::Duplicate, &problem.clone(), problem);
        }
    }

    /// Holds the current fault for `hold`, scanning about once a second. The sleep is the point: how
    /// long the cluster lives with the fault (or, between faults, in calm) is what is under test.
    pub fn hold(&mut self, hold: Duration) {
        let until = Instant::now() + hold;
        for _ in 0..1000 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || interrupted() {
                break;
            }
            thread::sleep(left.min(Duration::from_secs(1)));
            self.scan();
        }
    }

    fn pause_load(&mut self, paused: bool) {
        if let Some(load) = &self.load {
            load.set_paused(paused);
        }
        if let Some(perfdhcp) = &self.perfdhcp {
            signal(perfdhcp.pid, if paused { libc::SIGSTOP } else { libc::SIGCONT });
        }
        let now = Instant::now();
        if paused {
            self.ledger().pause(now);
        } else {
            self.ledger().resume(now);
        }
    }

    /// Waits until the in-flight exchanges have finished: no node has a proposal pending and every node
    /// has applied the same index (`GET /v1/status`). In etcd mode the index compared is the revision
    /// each node's watch has reached (`commit_index`): the table's own index moves only with revisions
    /// that change a lease, and a node that loaded the pool holds the load's revision.
    fn settle(&self) -> Result<Duration, String> {
        let index = if self.cluster.is_etcd() { "commit_index" } else { "applied_index" };
        let quiet = wait_for(SETTLE_LIMIT, || {
            let mut seen = Vec::new();
            for id in 1..=NODES {
                let status = self.cluster.status(id)?;
                seen.push((id, status[index].as_u64(), status["proposals_pending"].as_u64()));
            }
            let applied = seen[0].1;
            if applied.is_some() && seen.iter().all(|&(_, a, pending)| a == applied && pending == Some(0)) {
                Ok(())
            } else {
                Err(format!("(node, applied index, proposals pending): {seen:?}"))
            }
        });
        quiet.map(|((), took)| took)
    }

    /// The load pauses; the tables must converge; every table is checked for duplicates and for every
    /// lease the clients hold. Returns how long convergence took.
    pub fn checkpoint(&mut self, label: &str) -> Option<Duration> {
        self.pause_load(true);
        if let Err(e) = self.settle() {
            // The convergence check below is the assertion; this only says why it may take longer.
            self.log(&format!("checkpoint {label}: in-flight exchanges did not settle: {e}"));
        }
        let snapshot_ms = unix_ms();
        let promises = self.ledger().live_promises(snapshot_ms);
        let started = Instant::now();
        let mut last_problem = String::new();
        let mut converged = None;
        let mut tables = Vec::new();
        for _ in 0..1000 {
            self.reap();
            let read: Result<Vec<_>, String> =
                (1..=NODES).map(|id| self.cluster.leases(id).map(|table| (id, table))).collect();
            match read {
                Ok(read) => {
                    tables = read;
                    match checker::divergence(&tables) {
                        None => {
                            converged = Some(started.elapsed());
                            break;
                        }
                        Some(problem) => last_problem = problem,
                    }
                }
                Err(e) => last_problem = e,
            }
            if started.elapsed() >= CONVERGENCE_LIMIT || interrupted() {
                break;
            }
            thread::sleep(Duration::from_millis(200));
        }
        let read_ms = unix_ms();
        self.checkpoints += 1;
        self.check_panics();
        match converged {
            Some(took) => self.slowest_convergence = self.slowest_convergence.max(took),
            None => self.violation(
                ViolationKind::NoConvergence,
                label,
                format!("{label}: the tables did not converge within {CONVERGENCE_LIMIT:?}: {last_problem}"),
            ),
        }
        self.check_duplicates(&tables);
        let lost: Vec<(String, String)> =
            tables.iter().flat_map(|(id, table)| checker::lost(&promises, *id, table, read_ms)).collect();
        for (key, problem) in lost {
            // One violation per client and address, whichever node and checkpoint saw it first.
            self.violation(ViolationKind::LostLease, &key, format!("{label}: {problem}"));
        }
        self.log(&format!(
            "checkpoint {label}: {} leases, {} held by clients, converged {}",
            tables.first().map_or(0, |(_, t)| t.len()),
            promises.len(),
            converged.map_or("NO".to_owned(), |d| format!("after {:.2} s", d.as_secs_f64()))
        ));
        self.pause_load(false);
        converged
    }
}

/// Adds `ip/16` to eth0 of namespace `ns` (clients send unicast RENEWs from it).
fn add_address(ns: &str, ip: Ipv4Addr) -> Result<(), String> {
    let out = Command::new("ip").args(["-n", ns, "addr", "add", &format!("{ip}/16"), "dev", "eth0"]).output();
    match out {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!("ip -n {ns} addr add {ip}/16: {}", String::from_utf8_lossy(&out.stderr))),
        Err(e) => Err(format!("ip: {e}")),
    }
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir: PathBuf| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// perfdhcp in client namespace 2 at `rate` new exchanges a second from 200 simulated clients.
fn start_perfdhcp(ns: &str, rate: u32, duration: Duration, dir: &Path) -> Result<Proc, String> {
    let perfdhcp = find_tool("perfdhcp").ok_or("perfdhcp is not installed (package kea-admin)")?;
    add_address(ns, Ipv4Addr::new(10, 77, 0, 251))?;
    let mut cmd = crate::netns_support::in_ns(ns, perfdhcp);
    cmd.args(["-4", "-l", "eth0", "-g", "single", "-R", "200", "-r", &rate.to_string()]);
    cmd.args(["-p", &duration.as_secs().max(1).to_string()]);
    Ok(Proc::spawn("perfdhcp", cmd, &dir.join("perfdhcp.out")))
}

/// One chaos run; see the module documentation. Panics only when the test bed cannot be built.
pub fn run(options: &Options) -> Report {
    require_root();
    let bin = leasehold_bin();
    assert!(bin.is_file(), "{} does not exist: cargo build --bin leasehold (or set LEASEHOLD_BIN)", bin.display());
    assert!(!options.kinds.is_empty(), "no fault kinds to draw from");
    let invalid: Vec<&str> = options.kinds.iter().filter(|k| !k.valid_in(options.store)).map(|k| k.label()).collect();
    assert!(invalid.is_empty(), "fault kinds {invalid:?} mean nothing with the {} store", options.store.label());
    let started = Instant::now();
    let dir = scratch_dir("chaos");
    let segment = Segment::up(NODES, 2, 16);
    eprintln!(
        "chaos: seed {} ({}), {:?}, segment {}, logs in {}",
        options.seed,
        format_seed(options.seed),
        options.duration,
        segment.name,
        dir.path().display()
    );
    let pool = Pool {
        start: Ipv4Addr::new(10, 77, 1, 0),
        end: Ipv4Addr::new(10, 77, 3, 255),
        mask: Ipv4Addr::new(255, 255, 0, 0),
        lease_secs: options.lease_secs,
    };
    let mut cluster = Cluster::new(&segment, dir.path(), pool, &options.log_level);
    let etcd = (options.store == Store::Etcd).then(|| {
        let mut etcd = etcd::EtcdCluster::new(&segment, dir.path());
        for id in 1..=NODES {
            etcd.start(id);
        }
        if let Err(e) = etcd.wait_healthy(etcd::HEALTH_LIMIT) {
            panic!("etcd did not come up: {e}\n{}", tail_of(&etcd.log_path(1)));
        }
        // A prefix of its own (the members are new, but a rerun against other members would not mix).
        cluster.use_etcd(&format!("/leasehold-chaos-{:x}", options.seed), ETCD_ELECTION_TTL_SECS);
        etcd
    });
    for id in 1..=NODES {
        cluster.start(id, false);
    }
    let ledger = Arc::new(Mutex::new(Ledger::new(started)));
    let mut run = Run {
        options: options.clone(),
        started,
        cluster,
        ledger: ledger.clone(),
        load: None,
        perfdhcp: None,
        rng: Rng::split(options.seed, "faults"),
        faults: Vec::new(),
        violations: Vec::new(),
        seen: BTreeSet::new(),
        checkpoints: 0,
        slowest_convergence: Duration::ZERO,
        slowest_recovery: Duration::ZERO,
        notes: Vec::new(),
        etcd,
        segment,
    };
    let all: Vec<u32> = (1..=NODES).collect();
    match run.cluster.wait_leader(&all, RECOVERY_LIMIT) {
        Ok((leader, took)) => run.log(&format!("cluster up: leader node {leader} after {:.1} s", took.as_secs_f64())),
        Err(e) => {
            let logs: Vec<String> = all.iter().map(|&id| tail_of(&run.cluster.log_path(id))).collect();
            panic!("the cluster did not come up: {e}\n{}", logs.join("\n"));
        }
    }

    let client_ns = run.segment.client(1);
    add_address(&client_ns, Ipv4Addr::new(10, 77, 0, 250)).expect("an address for the clients' unicast");
    // The ACK to a RENEWING or REBINDING REQUEST goes to ciaddr whatever the broadcast flag says (RFC 2131
    // §4.1): the clients' namespace takes the whole pool as local addresses (AnyIP), so it answers ARP for
    // them and its socket on port 68 receives those ACKs, whichever machine they are for.
    for range in ["10.77.1.0/24", "10.77.2.0/23"] {
        let out = Command::new("ip").args(["-n", &client_ns, "route", "add", "local", range, "dev", "eth0"]).output();
        assert!(out.is_ok_and(|o| o.status.success()), "ip -n {client_ns} route add local {range} dev eth0 failed");
    }
    let deadline = started + options.duration;
    let load_config = load::LoadConfig {
        namespace: client_ns,
        clients: options.clients,
        churn: options.churn,
        lease_secs: options.lease_secs,
        seed: options.seed,
        deadline: deadline + Duration::from_secs(120),
        events: dir.path().join("clients.log"),
    };
    run.ledger().resume(Instant::now());
    run.load = Some(load::start(load_config, ledger).expect("start the chaos clients"));
    if options.perfdhcp_rate > 0 {
        let ns = run.segment.client(2);
        let planned = deadline.saturating_duration_since(Instant::now());
        match start_perfdhcp(&ns, options.perfdhcp_rate, planned, dir.path()) {
            Ok(proc) => run.perfdhcp = Some(proc),
            Err(e) => run.notes.push(format!("perfdhcp not run: {e}")),
        }
    }
    // The load runs unharmed for a while first (pacing, not a wait for an event).
    run.hold(Duration::from_secs(5));

    let mut schedule: Vec<FaultKind> = Vec::new();
    for round in 0..10_000u32 {
        if interrupted() || deadline.saturating_duration_since(Instant::now()) < MIN_ROUND {
            break;
        }
        if schedule.is_empty() {
            // Every kind once per cycle, in a seeded order; in etcd mode the etcd-side kinds first, so
            // that a short run has each of them.
            schedule = options.kinds.clone();
            run.rng.shuffle(&mut schedule);
            schedule.sort_by_key(|kind| !FaultKind::ETCD_SIDE.contains(kind));
            schedule.reverse();
        }
        let kind = schedule.pop().expect("a scheduled fault");
        let mut record = run.inject(kind, round);
        // In etcd mode the recovery begins with etcd: every member healthy again.
        if let Some(healthy) = run.etcd.as_ref().map(|etcd| etcd.wait_healthy(etcd::HEALTH_LIMIT)) {
            match healthy {
                Ok(took) if took > Duration::from_millis(500) => {
                    let sep = if record.note.is_empty() { "" } else { "; " };
                    record.note.push_str(&format!("{sep}etcd healthy after {:.1} s", took.as_secs_f64()));
                }
                Ok(_) => {}
                Err(e) => {
                    let detail = format!("after {} (round {round}): {e}", record.describe());
                    run.violation(ViolationKind::FaultFailed, &format!("etcd round {round}"), detail);
                }
            }
        }
        match run.cluster.wait_leader(&all, RECOVERY_LIMIT) {
            Ok((leader, took)) => {
                record.recovered_after = Some(took);
                run.slowest_recovery = run.slowest_recovery.max(took);
                let sep = if record.note.is_empty() { "" } else { "; " };
                record.note.push_str(&format!("{sep}leader node {leader}"));
            }
            Err(e) => {
                let detail = format!("after {} (round {round}): {e}", record.describe());
                run.violation(ViolationKind::NoRecovery, &format!("round {round}"), detail);
            }
        }
        record.converged_after = run.checkpoint(&format!("after round {round} ({})", kind.label()));
        run.log(&format!("round {round}: {} — {}", record.describe(), record.note));
        let failed = record.recovered_after.is_none();
        run.faults.push(record);
        if failed {
            run.notes.push("fault injection stopped early: the cluster did not recover".into());
            break;
        }
        // Some calm between faults.
        let calm = Duration::from_millis(run.rng.range(1500, 3500));
        run.hold(calm);
    }

    // The end: clients stop, perfdhcp ends, a last checkpoint over the quiet cluster.
    if let Some(load) = run.load.take() {
        load.stop();
    }
    let perfdhcp_report = run.perfdhcp.take().map(|mut proc| {
        signal(proc.pid, libc::SIGCONT);
        if proc.wait_exit(Duration::from_secs(1)).is_none() {
            signal(proc.pid, libc::SIGINT);
            proc.wait_exit(Duration::from_secs(5));
        }
        std::fs::read_to_string(&proc.log).unwrap_or_default()
    });
    run.ledger().pause(Instant::now());
    if interrupted() {
        run.notes.push("interrupted by a signal: no final checkpoint; the report covers the run until then".into());
    } else {
        let _ = run.cluster.wait_leader(&all, RECOVERY_LIMIT);
        run.checkpoint("at the end");
    }
    let report = Report::build(&run, perfdhcp_report.as_deref(), dir.path());
    // Keep the logs when something was found (or when asked).
    if !report.violations.is_empty() || options.keep {
        let kept = dir.keep();
        eprintln!("chaos: logs and data kept in {}", kept.display());
    }
    drop(run);
    report
}

/// A seed as the run scripts take it back.
pub fn format_seed(seed: u64) -> String {
    format!("{seed:#x}")
}

/// Parses a seed given as decimal or 0x-hex.
pub fn parse_seed(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Fault counts by kind, for the report.
pub fn count_by_kind(records: &[FaultRecord]) -> BTreeMap<FaultKind, u32> {
    let mut counts = BTreeMap::new();
    for record in records {
        *counts.entry(record.kind).or_default() += 1;
    }
    counts
}
