//! The faults, each injected, held and healed by one method of `Run`:
//!
//! | kind | what | held |
//! |---|---|---|
//! | kill | kill -9 of a node (the leader half of the time), restarted on its data directory | 1–5 s down |
//! | freeze | SIGSTOP of a node (the leader half of the time), then SIGCONT | 1–5 s |
//! | partition-node | iptables DROP between a follower and the two others, in the node namespaces | 3–8 s |
//! | partition-leader | the same for the leader | 3–8 s |
//! | peer-delay-loss | 10–30% loss and 50–200 ms delay on Raft traffic (TCP 6768) of one node or of all, by NFQUEUE (see `nfqueue`: no netem in this kernel); DHCP traffic untouched | 5–10 s |
//! | wipe | a node's data directory wiped; it comes back per `WipeMode` (default: remove-node on the leader, start with `--join`, add-node) | until caught up |
//! | clock-step | a node restarted (SIGTERM) with `--clock-offset-ms` ±1–5 s (or back to 0), well inside the 30 s expiry grace | — |
//! | crash-majority | kill -9 of two nodes or all three at once (no quorum), all restarted on their data directories: every ACKed lease must survive | 1–3 s |
//!
//! In etcd mode (`Store::Etcd`: the nodes keep the pool in three etcd members, one in each server
//! namespace beside its node) the node faults above that make sense stay: kill, freeze, clock-step,
//! crash-majority (the nodes keep nothing: every ACKed lease must come back from etcd), and the two
//! partitions, which there cut off a whole server — the node *and* the etcd member beside it, since
//! both use the namespace's address — so the node can reach only a member without a majority. The
//! Raft-only ones are left out: peer-delay-loss acts on the Raft peer links (TCP 6768), which etcd-mode
//! nodes do not have; wipe removes the Raft log and rejoins by membership change, and an etcd-mode
//! node has neither (its data directory holds no lease). Added, on the etcd side:
//!
//! | kind | what | held |
//! |---|---|---|
//! | etcd-kill | kill -9 of one etcd member, restarted on its data directory | 1–5 s down |
//! | etcd-partition | iptables DROP of etcd peer traffic (TCP 2380) between one member and the two others, in that member's namespace only | 3–8 s |
//! | node-etcd-partition | iptables DROP of a node's etcd client traffic (TCP 2379, to every member, its own included), in its namespace (the elected node half the time) | 3–8 s |
//! | etcd-no-majority | kill -9 of two etcd members (all three 30% of the time): no majority, so no binding anywhere, renewals for the time that remains; restarted on their data directories | 2–5 s |
//!
//! After an etcd-side fault the members must all be healthy again (`etcdctl endpoint health`) before
//! the recovery and the checkpoint. The targets and durations come from the run's seeded generator;
//! which node is the leader (the elected node, in etcd mode) at the time comes from the cluster.

use std::path::Path;
use std::time::{Duration, Instant};

use super::etcd::{EtcdCluster, CLIENT_PORT as ETCD_CLIENT_PORT, PEER_PORT as ETCD_PEER_PORT};
use super::nfqueue::{Delayer, DelayerStats};
use super::node::{node_ip, NODES, PEER_PORT};
use super::{interrupted, Run, Store, ViolationKind, WipeMode};
use crate::netns_support::{in_ns, tail_of, Proc};

/// The NFQUEUE number used in every node namespace.
const QUEUE: u16 = 6768;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    Kill,
    Freeze,
    PartitionNode,
    PartitionLeader,
    PeerDelayLoss,
    Wipe,
    ClockStep,
    CrashMajority,
    EtcdKill,
    EtcdPartition,
    NodeEtcdPartition,
    EtcdNoMajority,
}

impl FaultKind {
    pub const ALL: [FaultKind; 12] = [
        FaultKind::Kill,
        FaultKind::Freeze,
        FaultKind::PartitionNode,
        FaultKind::PartitionLeader,
        FaultKind::PeerDelayLoss,
        FaultKind::Wipe,
        FaultKind::ClockStep,
        FaultKind::CrashMajority,
        FaultKind::EtcdKill,
        FaultKind::EtcdPartition,
        FaultKind::NodeEtcdPartition,
        FaultKind::EtcdNoMajority,
    ];

    /// The kinds that act on etcd: only in etcd mode.
    pub const ETCD_SIDE: [FaultKind; 4] =
        [FaultKind::EtcdKill, FaultKind::EtcdPartition, FaultKind::NodeEtcdPartition, FaultKind::EtcdNoMajority];

    /// Whether the kind means something with `store` (see the module documentation for why).
    pub fn valid_in(self, store: Store) -> bool {
        match self {
            // The Raft peer links and the Raft log: an etcd-mode node has neither.
            FaultKind::PeerDelayLoss | FaultKind::Wipe => store == Store::Raft,
            FaultKind::EtcdKill
            | FaultKind::EtcdPartition
            | FaultKind::NodeEtcdPartition
            | FaultKind::EtcdNoMajority => store == Store::Etcd,
            _ => true,
        }
    }

    /// Every kind valid with `store`, in `ALL`'s order: what a run draws from by default.
    pub fn for_store(store: Store) -> Vec<FaultKind> {
        FaultKind::ALL.into_iter().filter(|k| k.valid_in(store)).collect()
    }

    pub fn label(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Freeze => "freeze",
            FaultKind::PartitionNode => "partition-node",
            FaultKind::PartitionLeader => "partition-leader",
            FaultKind::PeerDelayLoss => "peer-delay-loss",
            FaultKind::Wipe => "wipe",
            FaultKind::ClockStep => "clock-step",
            FaultKind::CrashMajority => "crash-majority",
            FaultKind::EtcdKill => "etcd-kill",
            FaultKind::EtcdPartition => "etcd-partition",
            FaultKind::NodeEtcdPartition => "node-etcd-partition",
            FaultKind::EtcdNoMajority => "etcd-no-majority",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill -9 + restart",
            FaultKind::Freeze => "SIGSTOP/SIGCONT",
            FaultKind::PartitionNode => "partition a follower",
            FaultKind::PartitionLeader => "partition the leader",
            FaultKind::PeerDelayLoss => "peer link loss + delay",
            FaultKind::Wipe => "wipe data dir + rejoin",
            FaultKind::ClockStep => "clock step restart",
            FaultKind::CrashMajority => "kill -9 of 2 or 3 nodes",
            FaultKind::EtcdKill => "kill -9 of an etcd member",
            FaultKind::EtcdPartition => "partition an etcd member",
            FaultKind::NodeEtcdPartition => "partition a node from etcd",
            FaultKind::EtcdNoMajority => "kill -9 of 2 or 3 etcd members",
        }
    }

    pub fn parse(text: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.label() == text)
    }
}

/// One injected fault, for the report and for attributing the longest ACK gap.
#[derive(Debug, Clone)]
pub struct FaultRecord {
    pub kind: FaultKind,
    pub round: u32,
    pub target: String,
    pub injected: Instant,
    pub healed: Option<Instant>,
    pub held: Duration,
    pub recovered_after: Option<Duration>,
    pub converged_after: Option<Duration>,
    pub note: String,
}

impl FaultRecord {
    pub fn describe(&self) -> String {
        format!("{} of {} for {:.1} s", self.kind.label(), self.target, self.held.as_secs_f64())
    }
}

/// Runs a short command to completion within `limit`; its output goes to `log`.
fn run_cmd(what: &str, cmd: std::process::Command, log: &Path, limit: Duration) -> Result<(), String> {
    let mut proc = Proc::spawn(what, cmd, log);
    match proc.wait_exit(limit) {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(format!("{what}: {status}\n{}", tail_of(log))),
        None => Err(format!("{what}: did not finish within {limit:?}")),
    }
}

impl Run {
    fn pick_node(&mut self) -> u32 {
        self.rng.range(1, u64::from(NODES)) as u32
    }

    /// The leader all nodes agree on (they do between faults), else a random node.
    fn leader_or_random(&mut self) -> u32 {
        let all: Vec<u32> = (1..=NODES).collect();
        match self.cluster.agreed_leader(&all) {
            Some(leader) => leader,
            None => self.pick_node(),
        }
    }

    fn pick_follower(&mut self) -> u32 {
        let leader = self.leader_or_random();
        let followers: Vec<u32> = (1..=NODES).filter(|&id| id != leader).collect();
        followers[self.rng.below(followers.len() as u64) as usize]
    }

    /// iptables in server namespace `id` (the node's and, in etcd mode, the etcd member's).
    fn iptables(&self, id: u32, action: &str, rule: &[String]) -> Result<(), String> {
        let mut cmd = in_ns(&self.cluster.node(id).ns, "iptables");
        cmd.args(["-w", "5", action]).args(rule);
        let log = self.cluster.dir.join("iptables.log");
        run_cmd(&format!("iptables {action} {rule:?} in node {id}"), cmd, &log, Duration::from_secs(15))
    }

    fn fault_failed(&mut self, what: &str, error: String) {
        let key = format!("{what} at {:.0}", self.at());
        self.violation(ViolationKind::FaultFailed, &key, format!("{what}: {error}"));
    }

    /// Injects, holds and heals one fault of `kind`.
    pub fn inject(&mut self, kind: FaultKind, round: u32) -> FaultRecord {
        let injected = Instant::now();
        let mut record = FaultRecord {
            kind,
            round,
            target: String::new(),
            injected,
            healed: None,
            held: Duration::ZERO,
            recovered_after: None,
            converged_after: None,
            note: String::new(),
        };
        match kind {
            FaultKind::Kill => self.kill_restart(&mut record),
            FaultKind::Freeze => self.freeze(&mut record),
            FaultKind::PartitionNode => {
                let target = self.pick_follower();
                self.partition(&mut record, target);
            }
            FaultKind::PartitionLeader => {
                let target = self.leader_or_random();
                self.partition(&mut record, target);
            }
            FaultKind::PeerDelayLoss => self.delay_loss(&mut record),
            FaultKind::Wipe => self.wipe(&mut record),
            FaultKind::ClockStep => self.clock_step(&mut record),
            FaultKind::CrashMajority => self.crash_majority(&mut record),
            FaultKind::EtcdKill => self.etcd_kill(&mut record),
            FaultKind::EtcdPartition => self.etcd_partition(&mut record),
            FaultKind::NodeEtcdPartition => self.node_etcd_partition(&mut record),
            FaultKind::EtcdNoMajority => self.etcd_no_majority(&mut record),
        }
        record.healed = Some(Instant::now());
        record.held = record.healed.unwrap_or(injected) - injected;
        record
    }

    fn kill_restart(&mut self, record: &mut FaultRecord) {
        let target = if self.rng.chance(0.5) { self.leader_or_random() } else { self.pick_node() };
        let down = Duration::from_millis(self.rng.range(1000, 5000));
        record.target = format!("node {target}");
        self.log(&format!("kill -9 node {target}, down {:.1} s", down.as_secs_f64()));
        if let Err(e) = self.cluster.kill(target) {
            self.fault_failed("kill", e);
        }
        self.hold(down);
        self.cluster.start(target, false);
    }

    /// Two nodes, or all three, killed together: no quorum until they are back, and then every lease a
    /// client was ACKed must still be there (DESIGN rule 1: ACK only after a majority fsynced it).
    fn crash_majority(&mut self, record: &mut FaultRecord) {
        let spared = if self.rng.chance(0.5) { Some(self.pick_node()) } else { None };
        let down = Duration::from_millis(self.rng.range(1000, 3000));
        let victims: Vec<u32> = (1..=NODES).filter(|&id| Some(id) != spared).collect();
        record.target = format!("nodes {victims:?}");
        self.log(&format!("kill -9 nodes {victims:?} together, down {:.1} s", down.as_secs_f64()));
        for &id in &victims {
            if let Err(e) = self.cluster.kill(id) {
                self.fault_failed("kill", e);
            }
        }
        self.hold(down);
        for &id in &victims {
            self.cluster.start(id, false);
        }
    }

    fn freeze(&mut self, record: &mut FaultRecord) {
        let target = if self.rng.chance(0.5) { self.leader_or_random() } else { self.pick_node() };
        let frozen = Duration::from_millis(self.rng.range(1000, 5000));
        record.target = format!("node {target}");
        self.log(&format!("SIGSTOP node {target} for {:.1} s", frozen.as_secs_f64()));
        if let Err(e) = self.cluster.freeze(target) {
            self.fault_failed("freeze", e);
        }
        self.hold(frozen);
        self.cluster.thaw(target);
    }

    /// iptables DROP, both ways, between `target` and the other nodes' addresses, in the node namespaces.
    fn partition(&mut self, record: &mut FaultRecord, target: u32) {
        let hold = Duration::from_millis(self.rng.range(3000, 8000));
        record.target = format!("node {target}");
        self.log(&format!("partition node {target} from the others for {:.1} s", hold.as_secs_f64()));
        let mut rules: Vec<(u32, Vec<String>)> = Vec::new();
        for other in (1..=NODES).filter(|&id| id != target) {
            for (ns_id, peer) in [(target, other), (other, target)] {
                let peer = node_ip(peer).to_string();
                rules.push((ns_id, ["INPUT", "-s", &peer, "-j", "DROP"].map(str::to_owned).to_vec()));
                rules.push((ns_id, ["OUTPUT", "-d", &peer, "-j", "DROP"].map(str::to_owned).to_vec()));
            }
        }
        let mut applied = Vec::new();
        for (id, rule) in rules {
            match self.iptables(id, "-I", &rule) {
                Ok(()) => applied.push((id, rule)),
                Err(e) => self.fault_failed("partition", e),
            }
        }
        self.ledger().isolated.insert(node_ip(target));
        self.hold(hold);
        for (id, rule) in applied {
            if let Err(e) = self.iptables(id, "-D", &rule) {
                self.fault_failed("heal partition", e);
            }
        }
        self.ledger().isolated.remove(&node_ip(target));
    }

    /// Loss and delay on Raft traffic: NFQUEUE rules + a delayer in one node's namespace (both
    /// directions of its links: OUTPUT and INPUT) or in every node's (OUTPUT only, so each packet is
    /// held once).
    fn delay_loss(&mut self, record: &mut FaultRecord) {
        let one = if self.rng.chance(0.5) { Some(self.pick_node()) } else { None };
        let loss_pct = self.rng.range(10, 30);
        let delay = Duration::from_millis(self.rng.range(50, 200));
        let hold = Duration::from_millis(self.rng.range(5000, 10000));
        let targets: Vec<u32> = match one {
            Some(id) => vec![id],
            None => (1..=NODES).collect(),
        };
        record.target = match one {
            Some(id) => format!("node {id}'s peer links"),
            None => "all peer links".to_owned(),
        };
        self.log(&format!(
            "{loss_pct}% loss + {} ms delay on {} for {:.1} s",
            delay.as_millis(),
            record.target,
            hold.as_secs_f64()
        ));
        let port = PEER_PORT.to_string();
        let queue = QUEUE.to_string();
        let mut applied = Vec::new();
        let mut delayers = Vec::new();
        for &id in &targets {
            let seed = self.rng.next_u64();
            match Delayer::start(&self.cluster.node(id).ns, QUEUE, delay, loss_pct as f64 / 100.0, seed) {
                Ok(delayer) => delayers.push(delayer),
                Err(e) => {
                    self.fault_failed("start the NFQUEUE delayer", e.to_string());
                    continue;
                }
            }
            let chains: &[&str] = if one.is_some() { &["OUTPUT", "INPUT"] } else { &["OUTPUT"] };
            for chain in chains {
                for side in ["--dport", "--sport"] {
                    let rule: Vec<String> =
                        [chain, "-p", "tcp", side, &port, "-j", "NFQUEUE", "--queue-num", &queue, "--queue-bypass"]
                            .map(|s| s.to_string())
                            .to_vec();
                    match self.iptables(id, "-I", &rule) {
                        Ok(()) => applied.push((id, rule)),
                        Err(e) => self.fault_failed("peer delay/loss", e),
                    }
                }
            }
        }
        self.hold(hold);
        for (id, rule) in applied {
            if let Err(e) = self.iptables(id, "-D", &rule) {
                self.fault_failed("heal peer delay/loss", e);
            }
        }
        let mut total = DelayerStats::default();
        for delayer in delayers {
            let stats = delayer.stop();
            total.queued += stats.queued;
            total.dropped += stats.dropped;
            total.accepted += stats.accepted;
        }
        record.note = format!(
            "{loss_pct}% loss, {} ms delay: {} packets queued, {} dropped",
            delay.as_millis(),
            total.queued,
            total.dropped
        );
    }

    /// A node loses its data directory. Rejoin mode follows the README: kill it, remove it on the
    /// leader of the two others, wipe, start it with `--join`, add it back on the leader.
    fn wipe(&mut self, record: &mut FaultRecord) {
        let target = self.pick_node();
        record.target = format!("node {target}");
        let mode = self.options.wipe_mode;
        self.log(&format!("wipe node {target} ({mode:?})"));
        if let Err(e) = self.cluster.kill(target) {
            self.fault_failed("kill before the wipe", e);
        }
        if mode == WipeMode::Plain {
            if let Err(e) = self.cluster.wipe(target) {
                self.fault_failed("wipe", e);
            }
            self.hold(Duration::from_secs(1));
            self.cluster.start(target, false);
            record.note = "restarted with an empty data directory and the same --peer list".into();
            return;
        }
        let others: Vec<u32> = (1..=NODES).filter(|&id| id != target).collect();
        let leader = match self.cluster.wait_leader(&others, super::RECOVERY_LIMIT) {
            Ok((leader, _)) => leader,
            Err(e) => {
                self.fault_failed("a leader for remove-node", e);
                self.cluster.start(target, false);
                return;
            }
        };
        let id = target.to_string();
        if let Err(e) = self.membership(leader, &["remove-node", &id], target, false) {
            self.fault_failed("remove-node", e);
            self.cluster.start(target, false);
            return;
        }
        if let Err(e) = self.cluster.wipe(target) {
            self.fault_failed("wipe", e);
        }
        self.cluster.start(target, true);
        let address = format!("{}:{PEER_PORT}", node_ip(target));
        // The leader may have changed meanwhile: ask whoever leads the two others now.
        let leader = self.cluster.wait_leader(&others, super::RECOVERY_LIMIT).map(|(l, _)| l).unwrap_or(leader);
        if let Err(e) = self.membership(leader, &["add-node", &id, &address], target, true) {
            self.fault_failed("add-node", e);
        }
        record.note = format!("removed on node {leader}, wiped, started with --join, added back");
    }

    /// `leasehold cluster ARGS` on `leader`, then waits (≤ 20 s) until its member list has (or lacks)
    /// `id`. A refusal (leadership moved, a change in progress) is retried a few times.
    fn membership(&mut self, leader: u32, args: &[&str], id: u32, present: bool) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 0..5 {
            if interrupted() {
                break;
            }
            let leader = if attempt == 0 {
                leader
            } else {
                let others: Vec<u32> = (1..=NODES).filter(|&n| n != id || present).collect();
                let live: Vec<u32> = others.into_iter().filter(|&n| self.cluster.is_live(n)).collect();
                self.cluster.agreed_leader(&live).unwrap_or(leader)
            };
            match self.cluster.ctl(leader, args) {
                Ok(_) => {
                    let deadline = Instant::now() + Duration::from_secs(20);
                    while Instant::now() < deadline {
                        if self.cluster.members(leader).is_ok_and(|m| m.contains(&id) == present) {
                            return Ok(());
                        }
                        self.hold(Duration::from_millis(200));
                    }
                    last = format!("node {leader}'s /v1/cluster never showed the change {args:?}");
                }
                Err(e) => last = e,
            }
            self.hold(Duration::from_secs(1));
        }
        Err(last)
    }

    /// Restart a node with a shifted clock (SIGTERM: the graceful path, for once).
    fn clock_step(&mut self, record: &mut FaultRecord) {
        let target = self.pick_node();
        let current = self.cluster.node(target).offset_ms;
        let offset = if current != 0 && self.rng.chance(0.3) {
            0
        } else {
            let magnitude = self.rng.range(1000, 5000) as i64;
            if self.rng.chance(0.5) {
                magnitude
            } else {
                -magnitude
            }
        };
        record.target = format!("node {target}");
        record.note = format!("clock offset {current} ms -> {offset} ms");
        self.log(&format!("restart node {target} with --clock-offset-ms {offset} (was {current})"));
        if let Err(e) = self.cluster.terminate(target) {
            self.fault_failed("terminate for the clock step", e);
        }
        self.cluster.set_offset(target, offset);
        self.ledger().offsets.insert(node_ip(target), offset);
        self.cluster.start(target, false);
    }

    /// Inserts `rules` (server namespace, rule), holds for `hold`, deletes those that went in.
    fn with_rules(&mut self, what: &str, rules: Vec<(u32, Vec<String>)>, hold: Duration) {
        let mut applied = Vec::new();
        for (id, rule) in rules {
            match self.iptables(id, "-I", &rule) {
                Ok(()) => applied.push((id, rule)),
                Err(e) => self.fault_failed(what, e),
            }
        }
        self.hold(hold);
        for (id, rule) in applied {
            if let Err(e) = self.iptables(id, "-D", &rule) {
                self.fault_failed(&format!("heal {what}"), e);
            }
        }
    }

    fn etcd_mut(&mut self) -> &mut EtcdCluster {
        self.etcd.as_mut().expect("an etcd-side fault in etcd mode")
    }

    /// kill -9 of one etcd member; started again on its data directory after 1–5 s. Only one member is
    /// down: etcd keeps its majority and the nodes must go on binding.
    fn etcd_kill(&mut self, record: &mut FaultRecord) {
        let target = self.pick_node();
        let down = Duration::from_millis(self.rng.range(1000, 5000));
        record.target = format!("etcd member e{target}");
        self.log(&format!("kill -9 etcd member e{target}, down {:.1} s", down.as_secs_f64()));
        if let Err(e) = self.etcd_mut().kill(target) {
            self.fault_failed("kill an etcd member", e);
        }
        self.hold(down);
        self.etcd_mut().start(target);
    }

    /// One member cut off from the two others on the peer port (2380), by rules in its own namespace
    /// only: it loses the majority, and whatever a node asks of it waits or fails; the nodes' requests
    /// to the two others (client port 2379) are untouched.
    fn etcd_partition(&mut self, record: &mut FaultRecord) {
        let target = self.pick_node();
        let hold = Duration::from_millis(self.rng.range(3000, 8000));
        record.target = format!("etcd member e{target}");
        self.log(&format!(
            "partition etcd member e{target} from the others (TCP {ETCD_PEER_PORT}) for {:.1} s",
            hold.as_secs_f64()
        ));
        let port = ETCD_PEER_PORT.to_string();
        let mut rules = Vec::new();
        for other in (1..=NODES).filter(|&id| id != target) {
            let peer = node_ip(other).to_string();
            for side in ["--dport", "--sport"] {
                rules.push((
                    target,
                    ["INPUT", "-s", &peer, "-p", "tcp", side, &port, "-j", "DROP"].map(str::to_owned).to_vec(),
                ));
                rules.push((
                    target,
                    ["OUTPUT", "-d", &peer, "-p", "tcp", side, &port, "-j", "DROP"].map(str::to_owned).to_vec(),
                ));
            }
        }
        self.with_rules("etcd partition", rules, hold);
    }

    /// A node cut off from etcd: its traffic to the client port (2379) of every member — the one beside
    /// it included — dropped in its namespace. Its keep-alive fails, so it falls to the minority rules
    /// before its election key can expire; another node is elected.
    fn node_etcd_partition(&mut self, record: &mut FaultRecord) {
        let target = if self.rng.chance(0.5) { self.leader_or_random() } else { self.pick_node() };
        let hold = Duration::from_millis(self.rng.range(3000, 8000));
        record.target = format!("node {target}");
        self.log(&format!(
            "partition node {target} from etcd (TCP {ETCD_CLIENT_PORT}) for {:.1} s",
            hold.as_secs_f64()
        ));
        let port = ETCD_CLIENT_PORT.to_string();
        let rules = vec![
            (target, ["OUTPUT", "-p", "tcp", "--dport", &port, "-j", "DROP"].map(str::to_owned).to_vec()),
            (target, ["INPUT", "-p", "tcp", "--sport", &port, "-j", "DROP"].map(str::to_owned).to_vec()),
        ];
        self.ledger().isolated.insert(node_ip(target));
        self.with_rules("node-etcd partition", rules, hold);
        self.ledger().isolated.remove(&node_ip(target));
    }

    /// Two etcd members (or all three) killed together: no majority, so no node may bind anything
    /// until they are back; then every ACKed lease must be there (etcd acknowledged it from a majority's
    /// fsynced WAL).
    fn etcd_no_majority(&mut self, record: &mut FaultRecord) {
        let spared = if self.rng.chance(0.7) { Some(self.pick_node()) } else { None };
        let down = Duration::from_millis(self.rng.range(2000, 5000));
        let victims: Vec<u32> = (1..=NODES).filter(|&id| Some(id) != spared).collect();
        record.target = format!("etcd members {victims:?}");
        self.log(&format!("kill -9 etcd members {victims:?} together, down {:.1} s", down.as_secs_f64()));
        for &id in &victims {
            if let Err(e) = self.etcd_mut().kill(id) {
                self.fault_failed("kill an etcd member", e);
            }
        }
        // No node is on the majority side now.
        for id in 1..=NODES {
            self.ledger().isolated.insert(node_ip(id));
        }
        self.hold(down);
        for &id in &victims {
            self.etcd_mut().start(id);
        }
        // The nodes are on the minority side until etcd has a majority again.
        let healthy = self.etcd.as_ref().map(|etcd| etcd.wait_healthy(super::etcd::HEALTH_LIMIT));
        if let Some(Ok(took)) = healthy {
            record.note = format!("etcd healthy {:.1} s after the restart", took.as_secs_f64());
        }
        for id in 1..=NODES {
            self.ledger().isolated.remove(&node_ip(id));
        }
    }
}
