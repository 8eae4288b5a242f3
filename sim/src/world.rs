//! The simulated world: nodes, clients, the network and the fault schedule on one virtual clock.
//!
//! Everything happens as an event in a queue ordered by (virtual time, sequence number); delivering
//! one event is one step, and the checkers run after every step. Each node is a `Replica<MemLog>`
//! (the raft actor's part) plus an `Engine` (the lease actor's), wired the way the node wires them,
//! with mail between the two that arrives in order a little later, as actix mailboxes do. A client
//! datagram goes to `Engine::handle_from` with how it arrived (broadcast, or unicast to a server
//! identifier); proposals gather until a flush and go to the replica through the raft actor's
//! `driver::propose` (a refusal comes back as `Rejected` mail). The replica is run by the raft
//! actor's own `driver` while it `has_ready` — the messages that may leave before the write, the
//! write to the `MemLog`, then the `Actions` routed to this world (`RaftOutputs`): messages onto the
//! network, and mail to the lease actor, which the lease actor's own `state_machine` carries out
//! (restore, apply the committed entries, forget rejected proposals, the role from the status).
//! The world only observes around those calls: checks after each applied entry and on each ACK,
//! notes and counts. The engine's snapshots go back to `Replica::take_snapshot`. A crash drops the
//! replica, the engine and the mail in flight and keeps the `MemLog` (what was made durable); a
//! restart rebuilds the table from the log's latest snapshot (`driver::open_table`), with a new
//! incarnation.
//!
//! A run has three phases. Chaos: `steps` events with crashes, partitions, cut client links, lossy
//! weather and forced snapshots, clients releasing, rebooting and powering off. Settle: everything
//! healed and restarted, clients only trying to get and keep an address; at the end every client
//! must hold one. Quiet: clients stop sending; at the end every node must have applied the same
//! index to the same table.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use leasehold_cluster::driver::{self, MembershipChange, RaftShell};
use leasehold_cluster::replica::{Replica, ReplicaConfig};
use leasehold_cluster::storage::{CatchUpMark, DurableLog, MemLog};
use leasehold_cluster::{ClientKey, LeaseTable, Proposal, RaftStatus, ToStateMachine};
use leasehold_config::{ClientIdentity, Cluster, Config, Interface, Limits, LogFormat, LogLevel, Pool, Pxe, Subnet};
use leasehold_node::actors::state_machine::{self, SnapshotSlice};
use leasehold_node::engine::{Action, Arrival, Engine, Role};
use leasehold_node::wire::{ReplyType, Request};
use raft::eraftpb::Message;
use raft::Storage;
use slog::Logger;

use crate::check::{Belief, Checker};
use crate::client::{Client, Destination, Effect, Mode, State as ClientState};
use crate::net::{Network, Weather};
use crate::rng::Rng;
use crate::trace::{Note, Trace};

/// Events in the chaos phase when not told otherwise.
pub const DEFAULT_STEPS: u64 = 20_000;
/// Clients per run when not told otherwise: `MIN_CLIENTS..=DEFAULT_MAX_CLIENTS`, from the seed.
pub const MIN_CLIENTS: usize = 20;
pub const DEFAULT_MAX_CLIENTS: usize = 200;
/// Raft tick interval of every node, in virtual time (the node's default `tick_ms`).
const TICK_US: u64 = 100_000;
const ELECTION_TICKS: usize = 10;
const HEARTBEAT_TICKS: usize = 2;
/// How often a node sweeps stale proposals and offers (the lease actor's `SWEEP_INTERVAL`).
const SWEEP_US: u64 = 500_000;
/// Lease records are forgotten this long after they became reusable (the production default is a day).
const RECORD_RETENTION_SECS: u64 = 20;
/// The settle phase ends when every client holds an address, checked this often, or fails after
/// `SETTLE_US` plus a lease time and the grace (the leases of clients that left must run out
/// first): long enough for an election, a client's full retry cycle and a fresh DORA.
const SETTLE_CHECK_US: u64 = 500_000;
const SETTLE_US: u64 = 60_000_000;
/// The quiet phase: commit indexes reach every follower with the next heartbeats.
const QUIET_US: u64 = 5_000_000;
/// After the quiet phase, how long the nodes may take to apply an entry proposed at its very end (a
/// leader's own record collection or parameters): followers learn its commit with the next heartbeat.
const QUIET_CATCH_UP_US: u64 = 2_000_000;
/// Virtual time starts here (so negative clock offsets stay positive).
const EPOCH_US: u64 = 1_000_000_000_000;
/// The subnet every node and client is on; servers at .0.1–.0.5, the pool from .1.0.
const NETWORK: [u8; 2] = [10, 77];

/// One simulation run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    pub seed: u64,
    /// Cluster size, 1 to 5.
    pub nodes: usize,
    /// DHCP clients; `None` draws `MIN_CLIENTS..=max_clients` from the seed.
    pub clients: Option<usize>,
    pub max_clients: usize,
    /// Events delivered in the chaos phase.
    pub steps: u64,
    /// Print every event as it happens.
    pub verbose: bool,
    /// Also re-check everything from scratch after every step (slow; cross-checks the checkers).
    pub full_check: bool,
    /// Some crashes also lose the node's disk; it restarts with an empty log (DESIGN rule 6).
    pub wipe_disks: bool,
}

impl SimConfig {
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            nodes: default_nodes(seed),
            clients: None,
            max_clients: DEFAULT_MAX_CLIENTS,
            steps: DEFAULT_STEPS,
            verbose: false,
            full_check: false,
            wipe_disks: false,
        }
    }

    /// The command line that replays this run.
    pub fn replay_command(&self) -> String {
        let mut command =
            format!("cargo run -p leasehold-sim -- --seed {} --nodes {} --steps {}", self.seed, self.nodes, self.steps);
        if let Some(clients) = self.clients {
            command.push_str(&format!(" --clients {clients}"));
        } else if self.max_clients != DEFAULT_MAX_CLIENTS {
            command.push_str(&format!(" --max-clients {}", self.max_clients));
        }
        if self.wipe_disks {
            command.push_str(" --wipe-disks");
        }
        command
    }
}

/// Odd seeds run five nodes, even seeds three.
pub fn default_nodes(seed: u64) -> usize {
    if seed % 2 == 1 {
        5
    } else {
        3
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub seed: u64,
    pub nodes: usize,
    pub clients: usize,
    /// Events delivered, all phases.
    pub steps: u64,
    pub virtual_us: u64,
    /// ACKs sent, both kinds: from a committed entry, and renewals confirmed from the table.
    pub acks: u64,
    /// ACKs confirming a committed lease without a proposal (DESIGN rule 5).
    pub confirmations: u64,
    /// ACKs from a committed entry sent by a node that is not the leader (a renewal addressed to
    /// it, proposed through the leader; or a leader that lost its role before the commit).
    pub follower_acks: u64,
    pub naks: u64,
    pub offers: u64,
    pub proposals: u64,
    pub refused_proposals: u64,
    pub leader_elections: u64,
    pub crashes: u64,
    pub disks_wiped: u64,
    pub partitions: u64,
    pub client_link_cuts: u64,
    pub weather_changes: u64,
    pub snapshots_taken: u64,
    pub snapshots_restored: u64,
    pub peer_messages: u64,
    pub client_messages: u64,
    pub digests_compared: u64,
    pub beliefs_checked: u64,
    pub final_applied_index: u64,
    /// Addresses a client got that another client had before.
    pub reassigned: u64,
    /// Lease-record collections the leaders proposed (`Command::Collect`).
    pub collections: u64,
    /// Client datagrams that two nodes answered (DESIGN rule 2 wants one).
    pub answered_twice: u64,
    /// How long after everything healed every client held an address.
    pub settle_us: u64,
    /// Digest of the whole event trace: equal for two runs of the same seed.
    pub trace_digest: u64,
}

impl Report {
    pub fn faults(&self) -> u64 {
        self.crashes + self.partitions + self.client_link_cuts + self.weather_changes
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} ({} nodes, {} clients): {} steps, {:.1}s virtual, {} ACKs ({} confirmed without a commit, {} from followers), {} NAKs, \
             {} offers, {} proposals \
             ({} refused), {} elections, faults: {} crashes ({} losing the disk), {} partitions, {} client-link cuts, {} weather \
             changes; {} snapshots taken, {} restored; all clients bound {:.1}s after healing; applied index {}; \
             {} addresses passed between clients; {} record collections; {} datagrams answered by two nodes; \
             {} digests and {} beliefs checked; \
             trace digest {:#018x}",
            self.seed,
            self.nodes,
            self.clients,
            self.steps,
            self.virtual_us as f64 / 1e6,
            self.acks,
            self.confirmations,
            self.follower_acks,
            self.naks,
            self.offers,
            self.proposals,
            self.refused_proposals,
            self.leader_elections,
            self.crashes,
            self.disks_wiped,
            self.partitions,
            self.client_link_cuts,
            self.weather_changes,
            self.snapshots_taken,
            self.snapshots_restored,
            self.settle_us as f64 / 1e6,
            self.final_applied_index,
            self.reassigned,
            self.collections,
            self.answered_twice,
            self.digests_compared,
            self.beliefs_checked,
            self.trace_digest
        )
    }
}

/// A checker violation (or a broken liveness promise), with what led to it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub config: SimConfig,
    pub step: u64,
    pub time_us: u64,
    pub message: String,
    pub trace: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} ({} nodes) FAILED at step {} (t={:.3}s): {}",
            self.config.seed,
            self.config.nodes,
            self.step,
            self.time_us as f64 / 1e6,
            self.message
        )?;
        writeln!(f, "replay: {}", self.config.replay_command())?;
        writeln!(f, "last events:")?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// Run one simulation.
pub fn run(config: &SimConfig) -> Result<Report, Box<Failure>> {
    assert!((1..=5).contains(&config.nodes), "1 to 5 nodes");
    let mut world = World::new(config.clone());
    match world.run() {
        Ok(()) => Ok(world.report()),
        Err(message) => Err(Box::new(Failure {
            config: config.clone(),
            step: world.step,
            time_us: world.now_us - EPOCH_US,
            message,
            trace: world.trace.latest().map(|e| e.to_string()).collect(),
        })),
    }
}

/// What the seed decides about a run besides the events.
#[derive(Debug, Clone)]
struct Plan {
    clients: usize,
    /// Clients that leave for good during the run (the first ones).
    departing: usize,
    pool_size: u32,
    lease_secs: u32,
    grace_ms: u64,
    max_leases: usize,
    /// Entries a log keeps behind its snapshot (small, so followers fall behind the log).
    keep_entries: u64,
    snapshot_every_entries: u64,
    /// How long proposals gather before a flush (the lease actor's mailbox drain).
    flush_delay_us: u64,
    /// How long mail between a node's raft actor and lease actor takes.
    hop_us: u64,
    /// Largest clock offset of a node from virtual time (well inside the grace).
    max_skew_us: u64,
}

impl Plan {
    fn draw(config: &SimConfig, rng: &mut Rng) -> Plan {
        let max_clients = config.max_clients.max(MIN_CLIENTS) as u64;
        let clients = config.clients.unwrap_or_else(|| rng.between(MIN_CLIENTS as u64, max_clients) as usize);
        // Half the runs have barely more addresses than clients, so addresses pass from client to
        // client (after a release, or an expiry plus the grace) and check 1 has something to check.
        // A third of the clients leave for good at some point, and a quarter join late: the pool is
        // sized for the ones that stay, so the late ones need the leavers' addresses.
        let departing = (clients as u64 * rng.between(0, 333)) / 1000;
        let spare = if rng.chance(500_000) { rng.between(1, 3) } else { rng.between(2, 4 + clients as u64 / 4) };
        let pool_size = (clients as u64 - departing + spare) as u32;
        let grace_ms = rng.between(3, 8) * 1000;
        // An ACK's lease is rounded up to whole seconds: skew on both sides plus that second must
        // fit in the grace, or the checker finds (rightly) an address given away too early.
        let max_skew_us = rng.below((grace_ms - 1000) * 1000 / 2 - 100_000);
        Plan {
            clients,
            departing: departing as usize,
            pool_size,
            lease_secs: rng.between(20, 90) as u32,
            grace_ms,
            max_leases: 1_000_000,
            keep_entries: rng.between(1, 20),
            snapshot_every_entries: rng.between(5, 60),
            flush_delay_us: rng.below(3_000),
            hop_us: rng.below(2_000),
            max_skew_us,
        }
    }

    fn engine_config(&self, node_id: u64, nodes: usize) -> Config {
        let [a, b] = NETWORK;
        let pool_start = u32::from(pool_start());
        let pool = Pool {
            name: "sim".into(),
            subnet: Subnet { network: Ipv4Addr::new(a, b, 0, 0), prefix_len: 16 },
            range_start: Ipv4Addr::from(pool_start),
            range_end: Ipv4Addr::from(pool_start + self.pool_size - 1),
            routers: vec![Ipv4Addr::new(a, b, 0, 254)],
            dns_servers: vec![Ipv4Addr::new(a, b, 0, 254)],
            domain_name: None,
            lease_time_secs: self.lease_secs,
            renewal_time_secs: self.lease_secs / 2,
            rebinding_time_secs: self.lease_secs / 8 * 7,
            pxe: None,
            dynamic_bootp: false,
            bootp_lease_time_secs: self.lease_secs,
            options: Default::default(),
        };
        let peers = (1..=nodes as u64).map(|id| (id, SocketAddr::from(([127, 0, 0, 1], 7000 + id as u16)))).collect();
        Config {
            interfaces: vec![Interface { name: None, server_ip: server_ip(node_id) }],
            server_ip: server_ip(node_id),
            server_port: 67,
            client_port: 68,
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 6767)),
            data_dir: PathBuf::from("/nonexistent/leasehold-sim"),
            fsync: true,
            log_format: LogFormat::Term,
            log_level: LogLevel::Info,
            identity: ClientIdentity::Mac,
            pools: vec![pool],
            pxe: Pxe::default(),
            reservations: Vec::new(),
            options: Default::default(),
            classes: Vec::new(),
            limits: Limits {
                offer_hold_ms: 10_000,
                decline_probation_secs: 20,
                expiry_grace_secs: self.grace_ms / 1000,
                proposal_timeout_ms: 5_000,
                max_leases: self.max_leases,
                snapshot_every_entries: self.snapshot_every_entries,
                // Short, so that records are collected within a run (and clients come back to
                // addresses whose records are gone).
                record_retention_secs: RECORD_RETENTION_SECS,
                ..Limits::default()
            },
            cluster: Cluster {
                node_id,
                peers,
                listen: None,
                tick_ms: TICK_US / 1000,
                election_ticks: ELECTION_TICKS,
                heartbeat_ticks: HEARTBEAT_TICKS,
                ..Cluster::default()
            },
        }
    }
}

/// The first address of the pool.
fn pool_start() -> Ipv4Addr {
    let [a, b] = NETWORK;
    Ipv4Addr::new(a, b, 1, 0)
}

/// A node's server identifier (option 54).
pub fn server_ip(node_id: u64) -> Ipv4Addr {
    let [a, b] = NETWORK;
    Ipv4Addr::new(a, b, 0, node_id as u8)
}

/// A running node: what a crash loses. The replica is the raft actor's, the engine (and the
/// proposals it gathers for the next flush) the lease actor's; they talk through mail (`Event::
/// EngineMail`, `Event::RaftMail`) that takes `Plan::hop_us` to arrive, in order, as actix mailboxes
/// do — so the engine acts on a role the replica may already have left, as in the real node.
struct Live {
    replica: Replica<MemLog>,
    engine: Engine,
    batch: Vec<Proposal>,
}

/// From the raft actor to the lease actor (`ToStateMachine` and `RaftStatus` in the node).
#[derive(Debug)]
enum EngineMail {
    /// With the term of each committed entry it carries, read from the log when it was handed out:
    /// (index, term).
    StateMachine {
        mail: ToStateMachine,
        terms: Vec<(u64, Option<u64>)>,
    },
    Status(RaftStatus),
    /// The lease actor's own `SnapshotSlice`: write more of the snapshot in progress.
    SnapshotSlice,
}

/// What the driver routes for one node (the simulation's `RaftShell`), in order; the world carries
/// it out after each driver call: messages onto the network, mail to the lease actor.
#[derive(Debug, Default)]
struct RaftOutputs(Vec<RaftOutput>);

#[derive(Debug)]
enum RaftOutput {
    Send(Vec<Message>),
    Mail(ToStateMachine),
    Status(RaftStatus),
    Membership(MembershipChange),
}

impl RaftShell for RaftOutputs {
    fn send(&mut self, messages: Vec<Message>) {
        self.0.push(RaftOutput::Send(messages));
    }

    fn to_state_machine(&mut self, mail: ToStateMachine) {
        self.0.push(RaftOutput::Mail(mail));
    }

    fn status(&mut self, status: RaftStatus) {
        self.0.push(RaftOutput::Status(status));
    }

    fn membership(&mut self, change: MembershipChange) {
        self.0.push(RaftOutput::Membership(change));
    }
}

/// From the lease actor to the raft actor (`Propose` and `SnapshotTaken` in the node).
#[derive(Debug)]
enum RaftMail {
    Propose(Vec<Proposal>),
    SnapshotTaken { index: u64, data: Vec<u8> },
}

struct SimNode {
    id: u64,
    server_ip: Ipv4Addr,
    config: Arc<Config>,
    /// The durable log: survives crashes.
    log: MemLog,
    /// The log this node had before its disk was lost (`--wipe-disks`): what it acknowledged then
    /// still counts for rule 1 (an entry was committed when a majority held it).
    lost_log: Option<MemLog>,
    live: Option<Live>,
    incarnation: u64,
    /// This node's clock reads virtual time plus this.
    offset_us: i64,
    election_timeout_ticks: usize,
    /// The lease actor's `FlushProposals` is scheduled.
    flush_scheduled: bool,
    /// When the last mail to each actor arrives (mail is delivered in order).
    engine_mail_at_us: u64,
    raft_mail_at_us: u64,
    restart_scheduled: bool,
    /// The last Raft status the lease actor got (the role also depends on the time: the leader lease).
    status: RaftStatus,
}

#[derive(Debug)]
enum Event {
    Tick(usize),
    Sweep(usize),
    /// The lease actor sends the proposals gathered since the last flush.
    FlushProposals {
        node: usize,
        incarnation: u64,
    },
    EngineMail {
        node: usize,
        incarnation: u64,
        mail: Box<EngineMail>,
    },
    RaftMail {
        node: usize,
        incarnation: u64,
        mail: Box<RaftMail>,
    },
    Peer {
        from: usize,
        to: usize,
        message: Box<Message>,
    },
    ToNode {
        client: usize,
        node: usize,
        request: Box<Request>,
        destination: Destination,
        /// Which client datagram this is a copy of (DESIGN rule 2 is about datagrams).
        datagram: u64,
    },
    ToClient {
        node: usize,
        client: usize,
        reply: Box<leasehold_node::wire::Reply>,
        index: u64,
    },
    ClientTimer {
        client: usize,
        generation: u64,
    },
    /// The fault schedule's next decision.
    Fault,
    Restart(usize),
    HealPartition {
        generation: u64,
    },
    ClientLinkUp(usize),
    /// In the settle phase: does every client hold an address yet?
    SettleCheck,
    CalmWeather {
        generation: u64,
    },
}

struct Scheduled {
    at_us: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at_us, self.seq) == (other.at_us, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest event must come out first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at_us, other.seq).cmp(&(self.at_us, self.seq))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Chaos,
    Settle,
    Quiet,
}

struct World {
    config: SimConfig,
    plan: Plan,
    now_us: u64,
    step: u64,
    seq: u64,
    queue: BinaryHeap<Scheduled>,
    phase: Phase,
    /// Network fates.
    net_rng: Rng,
    /// The fault schedule.
    fault_rng: Rng,
    /// Sizes of snapshot slices.
    slice_rng: Rng,
    nodes: Vec<SimNode>,
    clients: Vec<Client>,
    net: Network,
    weather_generation: u64,
    /// Every client holds an address (the settle phase is over).
    settled: bool,
    /// Client datagrams a node answered (or proposed for): the first node, and whether another did too.
    answered: BTreeMap<u64, (usize, bool)>,
    /// When the last datagram from a client to a node arrives: one sender's frames to one receiver on
    /// a segment are not reordered (they share the path), whatever their delays.
    client_path_at_us: BTreeMap<(usize, usize), u64>,
    checker: Checker,
    trace: Trace,
    report: Report,
    logger: Logger,
}

impl World {
    fn new(config: SimConfig) -> World {
        let mut rng = Rng::new(config.seed);
        let plan = Plan::draw(&config, &mut rng);
        let net_rng = rng.fork();
        let fault_rng = rng.fork();
        let mut timeouts: Vec<usize> = (ELECTION_TICKS..2 * ELECTION_TICKS).collect();
        rng.shuffle(&mut timeouts);
        let nodes = (0..config.nodes)
            .map(|i| {
                let id = i as u64 + 1;
                let skew = plan.max_skew_us as i64;
                SimNode {
                    id,
                    server_ip: server_ip(id),
                    config: Arc::new(plan.engine_config(id, config.nodes)),
                    log: MemLog::with_keep_entries(plan.keep_entries),
                    lost_log: None,
                    live: None,
                    incarnation: 0,
                    offset_us: rng.between(0, 2 * skew as u64) as i64 - skew,
                    election_timeout_ticks: timeouts[i],
                    flush_scheduled: false,
                    engine_mail_at_us: 0,
                    raft_mail_at_us: 0,
                    restart_scheduled: false,
                    status: no_status(id),
                }
            })
            .collect();
        let mac_prefix = rng.next_u64().to_be_bytes();
        let slice_rng = rng.fork();
        let clients = (0..plan.clients)
            .map(|i| {
                let [hi, lo] = (i as u16).to_be_bytes();
                let mac = [0x02, mac_prefix[0], mac_prefix[1], mac_prefix[2], hi, lo];
                Client::new(i, mac, i < plan.departing, (pool_start(), plan.pool_size), rng.fork())
            })
            .collect();
        let checker = Checker::new(plan.clients, plan.grace_ms * 1000, EPOCH_US);
        let report = Report { seed: config.seed, nodes: config.nodes, clients: plan.clients, ..Report::default() };
        World {
            trace: Trace::new(config.verbose),
            net: Network::new(config.nodes),
            config,
            plan,
            now_us: EPOCH_US,
            step: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            phase: Phase::Chaos,
            net_rng,
            fault_rng,
            slice_rng,
            nodes,
            clients,
            weather_generation: 0,
            settled: false,
            answered: BTreeMap::new(),
            client_path_at_us: BTreeMap::new(),
            checker,
            report,
            logger: Logger::root(slog::Discard, slog::o!()),
        }
    }

    fn report(&self) -> Report {
        let mut report = self.report.clone();
        report.steps = self.step;
        report.virtual_us = self.now_us - EPOCH_US;
        report.digests_compared = self.checker.digests_compared;
        report.beliefs_checked = self.checker.beliefs_checked;
        report.reassigned = self.checker.reassigned;
        report.trace_digest = self.trace.digest();
        report
    }

    fn schedule(&mut self, at_us: u64, event: Event) {
        debug_assert!(at_us >= self.now_us, "event scheduled in the past");
        self.seq += 1;
        self.queue.push(Scheduled { at_us, seq: self.seq, event });
    }

    fn note(&mut self, note: Note) {
        self.trace.record(self.step, self.now_us - EPOCH_US, note);
    }

    /// The node's clock (virtual time plus its offset), as the engine sees it.
    fn node_now_us(&self, n: usize) -> u64 {
        (self.now_us as i64 + self.nodes[n].offset_us) as u64
    }

    fn run(&mut self) -> Result<(), String> {
        if self.config.verbose {
            println!(
                "seed {}: {} nodes, {} clients, pool {}, lease {} s, grace {} ms, clock offsets {:?} ms, \
                 keep {} entries, snapshot every {} entries, election timeouts {:?} ticks",
                self.config.seed,
                self.config.nodes,
                self.plan.clients,
                self.plan.pool_size,
                self.plan.lease_secs,
                self.plan.grace_ms,
                self.nodes.iter().map(|n| n.offset_us / 1000).collect::<Vec<_>>(),
                self.plan.keep_entries,
                self.plan.snapshot_every_entries,
                self.nodes.iter().map(|n| n.election_timeout_ticks).collect::<Vec<_>>(),
            );
        }
        self.note(Note::Phase { name: "chaos" });
        for n in 0..self.nodes.len() {
            self.start_node(n)?;
            let phase_us = self.net_rng.below(TICK_US);
            self.schedule(self.now_us + phase_us, Event::Tick(n));
            self.schedule(self.now_us + phase_us + SWEEP_US, Event::Sweep(n));
        }
        let mut effects = Vec::new();
        for c in 0..self.clients.len() {
            // Most clients power on in the first seconds; a quarter trickle in over two minutes.
            let spread_us = if self.net_rng.chance(250_000) { 120_000_000 } else { 5_000_000 };
            self.clients[c].start(self.now_us, spread_us, &mut effects);
            self.client_effects(c, &mut effects, None)?;
        }
        self.schedule(self.now_us + 1_000_000, Event::Fault);

        let chaos_steps = self.config.steps;
        self.run_while(|w| w.step < chaos_steps)?;

        self.phase = Phase::Settle;
        self.note(Note::Phase { name: "settle: everything healed, clients keep trying" });
        self.net.heal_all();
        self.note(Note::HealPartition);
        for n in 0..self.nodes.len() {
            if self.nodes[n].live.is_none() {
                self.restart_node(n)?;
            }
        }
        for c in 0..self.clients.len() {
            self.clients[c].set_mode(Mode::Settle, self.now_us, &mut effects);
            self.client_effects(c, &mut effects, None)?;
        }
        let settle_limit_us = SETTLE_US + u64::from(self.plan.lease_secs) * 1_000_000 + self.plan.grace_ms * 1000;
        let (settle_start_us, settle_end_us) = (self.now_us, self.now_us + settle_limit_us);
        self.schedule(self.now_us, Event::SettleCheck);
        self.run_while(|w| !w.settled && w.next_at_us() <= settle_end_us)?;
        if !self.settled {
            self.now_us = settle_end_us;
        }
        self.report.settle_us = self.now_us - settle_start_us;
        self.check_every_client_holds()?;

        self.phase = Phase::Quiet;
        self.note(Note::Phase { name: "quiet: clients stop sending" });
        for c in 0..self.clients.len() {
            self.clients[c].set_mode(Mode::Quiet, self.now_us, &mut effects);
            self.client_effects(c, &mut effects, None)?;
        }
        let quiet_end_us = self.now_us + QUIET_US;
        self.run_while(|w| w.next_at_us() <= quiet_end_us)?;
        self.now_us = quiet_end_us;
        self.run_while(|w| !w.applied_alike() && w.next_at_us() <= quiet_end_us + QUIET_CATCH_UP_US)?;
        self.check_converged()?;
        // Every client still on the network holds an address (checked above), so each had an ACK;
        // a run where that is all that happened did too little.
        let staying = self.clients.iter().filter(|c| c.state() != ClientState::Gone).count() as u64;
        if self.report.acks < staying.max(1) {
            return Err(format!(
                "only {} ACKs for {staying} clients that stayed: the run did too little",
                self.report.acks
            ));
        }
        Ok(())
    }

    fn next_at_us(&self) -> u64 {
        self.queue.peek().map_or(u64::MAX, |s| s.at_us)
    }

    fn run_while(&mut self, go_on: impl Fn(&World) -> bool) -> Result<(), String> {
        while go_on(self) {
            let Some(Scheduled { at_us, event, .. }) = self.queue.pop() else { break };
            self.now_us = at_us;
            self.step += 1;
            self.handle(event)?;
            if self.config.full_check {
                self.full_check()?;
            }
        }
        Ok(())
    }

    fn full_check(&mut self) -> Result<(), String> {
        let now_us = self.now_us;
        let tables: Vec<(u64, &LeaseTable, i64)> =
            self.nodes.iter().filter_map(|n| n.live.as_ref().map(|l| (n.id, l.engine.table(), n.offset_us))).collect();
        self.checker.full_check(&tables, now_us)
    }

    fn handle(&mut self, event: Event) -> Result<(), String> {
        match event {
            Event::Tick(n) => {
                self.schedule(self.now_us + TICK_US, Event::Tick(n));
                self.note(Note::Tick { node: self.nodes[n].id });
                if let Some(live) = self.nodes[n].live.as_mut() {
                    live.replica.tick(self.now_us);
                    self.drive(n)?;
                }
            }
            Event::Sweep(n) => {
                self.schedule(self.now_us + SWEEP_US, Event::Sweep(n));
                self.note(Note::Sweep { node: self.nodes[n].id });
                let now_us = self.node_now_us(n);
                self.refresh_role(n);
                if let Some(live) = self.nodes[n].live.as_mut() {
                    live.engine.expire_pending(now_us);
                    // The leader's parameters and record collection, as the lease actor proposes them.
                    let collection = live.engine.propose_collection(now_us);
                    self.report.collections += u64::from(collection.is_some());
                    let proposals = [live.engine.propose_parameters(), collection];
                    let mut any = false;
                    for proposal in proposals.into_iter().flatten() {
                        live.batch.push(proposal);
                        any = true;
                    }
                    if any {
                        self.schedule_flush(n);
                    }
                }
            }
            Event::FlushProposals { node: n, incarnation } => {
                let node = &mut self.nodes[n];
                node.flush_scheduled = false;
                let Some(live) = node.live.as_mut().filter(|_| node.incarnation == incarnation) else {
                    return Ok(());
                };
                let batch = std::mem::take(&mut live.batch);
                self.note(Note::Flush { node: n as u64 + 1, proposals: batch.len() });
                if !batch.is_empty() {
                    self.mail_raft(n, RaftMail::Propose(batch));
                }
            }
            Event::EngineMail { node: n, incarnation, mail } => {
                if self.nodes[n].incarnation == incarnation && self.nodes[n].live.is_some() {
                    self.engine_mail(n, *mail)?;
                }
            }
            Event::RaftMail { node: n, incarnation, mail } => {
                if self.nodes[n].incarnation == incarnation && self.nodes[n].live.is_some() {
                    self.raft_mail(n, *mail)?;
                }
            }
            Event::Peer { from, to, message } => self.deliver_peer(from, to, *message)?,
            Event::ToNode { client, node, request, destination, datagram } => {
                self.deliver_request(client, node, &request, destination, datagram)?
            }
            Event::ToClient { node, client, reply, index } => self.deliver_reply(node, client, &reply, index)?,
            Event::ClientTimer { client, generation } => {
                if self.clients[client].timer_generation == generation {
                    let mut effects = Vec::new();
                    self.clients[client].on_timer(self.now_us, &mut effects);
                    self.client_effects(client, &mut effects, None)?;
                }
            }
            Event::Fault => self.fault()?,
            Event::SettleCheck => {
                self.settled = self.clients_without_address().is_empty();
                if !self.settled {
                    self.schedule(self.now_us + SETTLE_CHECK_US, Event::SettleCheck);
                }
            }
            Event::Restart(n) => {
                self.nodes[n].restart_scheduled = false;
                if self.nodes[n].live.is_none() {
                    self.restart_node(n)?;
                }
            }
            Event::HealPartition { generation } => {
                if self.net.partition_generation == generation {
                    self.net.heal_partition();
                    self.note(Note::HealPartition);
                }
            }
            Event::ClientLinkUp(n) => {
                if !self.net.client_link(n) {
                    self.net.set_client_link(n, true);
                    self.note(Note::ClientLink { node: self.nodes[n].id, up: true });
                }
            }
            Event::CalmWeather { generation } => {
                if self.weather_generation == generation {
                    self.set_weather(Weather::CALM);
                }
            }
        }
        Ok(())
    }

    // ---- nodes ----

    fn start_node(&mut self, n: usize) -> Result<(), String> {
        self.nodes[n].incarnation += 1;
        let node = &self.nodes[n];
        let limits = &node.config.limits;
        let grace_ms = limits.expiry_grace_secs * 1000;
        let table = driver::open_table(&node.log, grace_ms, limits.max_leases)
            .map_err(|e| format!("n{}: the table from its own log: {e}", node.id))?;
        let replica_config = ReplicaConfig {
            voters: (1..=self.nodes.len() as u64).collect(),
            applied: table.applied_index(),
            heartbeat_ticks: HEARTBEAT_TICKS,
            election_ticks: ELECTION_TICKS,
            election_timeout_ticks: Some(node.election_timeout_ticks),
            tick_us: TICK_US,
            ..ReplicaConfig::new(node.id)
        };
        let replica = Replica::new(&replica_config, node.log.clone(), &self.logger)
            .map_err(|e| format!("n{}: restart failed: {e}", node.id))?;
        let applied = table.applied_index();
        let digest = table.digest();
        let engine = Engine::new(node.config.clone(), table, node.id, node.incarnation);
        let (id, incarnation, timeout) = (node.id, node.incarnation, node.election_timeout_ticks);
        let node = &mut self.nodes[n];
        node.live = Some(Live { replica, engine, batch: Vec::new() });
        node.flush_scheduled = false;
        node.status = no_status(id);
        self.note(Note::Restart { node: id, incarnation, applied, election_timeout_ticks: timeout });
        if applied > 0 {
            self.checker.applied(id, applied, digest)?;
            self.check_table(n)?;
        }
        self.drive(n)
    }

    fn restart_node(&mut self, n: usize) -> Result<(), String> {
        // A new election timeout, different from every other node's, drawn from the seed.
        let taken: Vec<usize> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != n)
            .map(|(_, node)| node.election_timeout_ticks)
            .collect();
        let free: Vec<usize> = (ELECTION_TICKS..2 * ELECTION_TICKS).filter(|t| !taken.contains(t)).collect();
        self.nodes[n].election_timeout_ticks = free[self.fault_rng.index(free.len())];
        self.start_node(n)
    }

    /// Drop the replica, the engine and every mail in flight between them; keep the log.
    fn crash(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        if node.live.take().is_some() {
            node.status = no_status(node.id);
            node.flush_scheduled = false;
            self.report.crashes += 1;
            let id = node.id;
            self.note(Note::Crash { node: id });
        }
    }

    fn mail_engine(&mut self, n: usize, mail: EngineMail) {
        let node = &mut self.nodes[n];
        let at_us = (self.now_us + self.plan.hop_us).max(node.engine_mail_at_us);
        node.engine_mail_at_us = at_us;
        let incarnation = node.incarnation;
        self.schedule(at_us, Event::EngineMail { node: n, incarnation, mail: Box::new(mail) });
    }

    fn mail_raft(&mut self, n: usize, mail: RaftMail) {
        let node = &mut self.nodes[n];
        let at_us = (self.now_us + self.plan.hop_us).max(node.raft_mail_at_us);
        node.raft_mail_at_us = at_us;
        let incarnation = node.incarnation;
        self.schedule(at_us, Event::RaftMail { node: n, incarnation, mail: Box::new(mail) });
    }

    /// The raft actor's side: proposals from the lease actor, and its snapshots.
    fn raft_mail(&mut self, n: usize, mail: RaftMail) -> Result<(), String> {
        let Some(live) = self.nodes[n].live.as_mut() else { return Ok(()) };
        match mail {
            RaftMail::Propose(proposals) => {
                let count = proposals.len() as u64;
                let mut outputs = RaftOutputs::default();
                if driver::propose(&mut live.replica, &mut outputs, proposals).is_err() {
                    self.report.refused_proposals += count;
                }
                self.carry_out(n, outputs)?;
                self.drive(n)
            }
            RaftMail::SnapshotTaken { index, data } => {
                let stored = live
                    .replica
                    .take_snapshot(index, data)
                    .map_err(|e| format!("n{}: snapshot at {index}: {e}", n + 1))?;
                if stored {
                    self.report.snapshots_taken += 1;
                    self.note(Note::SnapshotTaken { node: n as u64 + 1, index });
                }
                Ok(())
            }
        }
    }

    /// Run the replica while it has a `Ready`, through the raft actor's driver: what may leave
    /// before the write goes first, then the write to the `MemLog`, then the rest.
    fn drive(&mut self, n: usize) -> Result<(), String> {
        let halted = |e| format!("n{}: replica halted: {e}", n + 1);
        loop {
            let Some(live) = self.nodes[n].live.as_mut() else { return Ok(()) };
            if !live.replica.has_ready() {
                return Ok(());
            }
            let mut outputs = RaftOutputs::default();
            let begun = driver::begin(&mut live.replica, &mut outputs).map_err(halted)?;
            self.carry_out(n, outputs)?;
            let Some(live) = self.nodes[n].live.as_mut() else { return Ok(()) };
            let mut outputs = RaftOutputs::default();
            driver::finish(&mut live.replica, &mut outputs, begun).map_err(halted)?;
            self.carry_out(n, outputs)?;
        }
    }

    /// Carry out what the driver routed, in order: messages onto the network, mail to the lease
    /// actor (committed entries with their terms as the log has them now, for check 5).
    fn carry_out(&mut self, n: usize, outputs: RaftOutputs) -> Result<(), String> {
        for output in outputs.0 {
            match output {
                RaftOutput::Send(messages) => {
                    for message in messages {
                        self.send_peer(n, message);
                    }
                }
                RaftOutput::Mail(mail) => {
                    let terms = match &mail {
                        ToStateMachine::Entries(entries) => {
                            let log = &self.nodes[n].log;
                            entries.iter().map(|entry| (entry.index, log.term(entry.index).ok())).collect()
                        }
                        _ => Vec::new(),
                    };
                    self.mail_engine(n, EngineMail::StateMachine { mail, terms });
                }
                RaftOutput::Status(status) => self.mail_engine(n, EngineMail::Status(status)),
                // The simulated membership is fixed: no node proposes a membership change.
                RaftOutput::Membership(change) => {
                    return Err(format!(
                        "n{}: a membership change committed, but nobody proposed one: {change:?}",
                        n + 1
                    ))
                }
            }
        }
        Ok(())
    }

    /// The lease actor's `snapshot_slice`: a few records of the snapshot (a seeded number, so entries
    /// and packets apply while it is half-written), the rest by mail to itself.
    fn snapshot_slice(&mut self, n: usize) {
        let records = self.slice_rng.between(1, 8) as usize;
        let Some(live) = self.nodes[n].live.as_mut() else { return };
        match state_machine::snapshot_slice(&mut live.engine, records) {
            SnapshotSlice::Taken { applied_index, data } => {
                self.mail_raft(n, RaftMail::SnapshotTaken { index: applied_index, data })
            }
            SnapshotSlice::More => {
                // A notified item, as in actix: it runs once the mailbox is drained, so it never holds
                // up the mail behind it (it does not advance `engine_mail_at_us`).
                let incarnation = self.nodes[n].incarnation;
                let at_us = self.now_us + self.plan.hop_us;
                let mail = Box::new(EngineMail::SnapshotSlice);
                self.schedule(at_us, Event::EngineMail { node: n, incarnation, mail });
            }
            SnapshotSlice::Idle => {}
        }
    }

    /// The lease actor's side of the raft actor's mail.
    fn engine_mail(&mut self, n: usize, mail: EngineMail) -> Result<(), String> {
        match mail {
            EngineMail::StateMachine { mail, terms } => self.state_machine_mail(n, mail, &terms),
            EngineMail::SnapshotSlice => {
                self.snapshot_slice(n);
                Ok(())
            }
            EngineMail::Status(status) => {
                let now_us = self.now_us;
                let node = &mut self.nodes[n];
                let Some(live) = node.live.as_mut() else { return Ok(()) };
                let change = state_machine::on_status(&mut live.engine, &mut node.status, status, now_us);
                self.report.leader_elections += u64::from(change.elected);
                if let Some(role) = change.role {
                    self.note_role(n, role);
                }
                Ok(())
            }
        }
    }

    /// The lease actor's role from its last status at this moment: the leader lease runs out with
    /// time, so it is checked again before every request.
    fn refresh_role(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        let Some(live) = node.live.as_mut() else { return };
        if let Some(role) = state_machine::refresh_role(&mut live.engine, &node.status, self.now_us) {
            self.note_role(n, role);
        }
    }

    fn note_role(&mut self, n: usize, role: Role) {
        let node = &self.nodes[n];
        let (id, term, commit) = (node.id, node.status.term, node.status.commit_index);
        self.note(Note::Role { node: id, term, role: role_name(role), commit });
    }

    /// The role the node's engine answers in (no quorum when down).
    fn role(&self, n: usize) -> Role {
        self.nodes[n].live.as_ref().map_or(Role::NoQuorum, |live| live.engine.role())
    }

    /// The lease actor's handling of `ToStateMachine`, with the checks after every applied entry
    /// and restored snapshot, and on every ACK (`terms`: the entries' terms when handed out).
    fn state_machine_mail(
        &mut self,
        n: usize,
        mail: ToStateMachine,
        terms: &[(u64, Option<u64>)],
    ) -> Result<(), String> {
        let id = self.nodes[n].id;
        let now_us = self.node_now_us(n);
        if let ToStateMachine::Entries(entries) = &mail {
            let (first, last) = (entries[0].index, entries[entries.len() - 1].index);
            self.note(Note::Applied { node: id, first, last });
        }
        let (offset_us, world_now_us) = (self.nodes[n].offset_us, self.now_us);
        let Some(live) = self.nodes[n].live.as_mut() else { return Ok(()) };
        // After each entry that moved the table: the same index gives the same digest on every node
        // (check 3), and a table that bound something keeps its invariants (check 4).
        let checker = &mut self.checker;
        let mut applied_index = live.engine.table().applied_index();
        let mut failure = None;
        let applied = state_machine::on_raft_mail(&mut live.engine, mail, now_us, |entry, engine| {
            let table = engine.table();
            if failure.is_some() || table.applied_index() == applied_index {
                return;
            }
            applied_index = table.applied_index();
            let checked = if applied_index != entry.index {
                Err(format!("n{id}: applied entry {} but the table says {applied_index}", entry.index))
            } else {
                checker.applied(id, entry.index, table.digest()).and_then(|()| {
                    if entry.proposals.is_empty() {
                        Ok(())
                    } else {
                        checker.table(id, table, offset_us, world_now_us)
                    }
                })
            };
            failure = checked.err();
        });
        // An unusable snapshot stops a real node; here it fails the seed.
        let applied = applied.map_err(|e| format!("n{id}: {e}"))?;
        if let Some(failure) = failure {
            return Err(failure);
        }
        if let Some((index, _)) = applied.restored {
            self.report.snapshots_restored += 1;
            self.note(Note::Restored { node: id, index });
            let digest = self.nodes[n].live.as_ref().map_or(0, |live| live.engine.table().digest());
            self.checker.applied(id, index, digest)?;
            self.check_table(n)?;
        }
        for reply in applied.replies {
            let (index, reply) = (reply.index, reply.outgoing.reply);
            if reply.message_type == ReplyType::Ack {
                let term = terms.iter().find(|(at, _)| *at == index).and_then(|(_, term)| *term);
                self.check_durable(n, index, term)?;
                self.report.acks += 1;
                if self.role(n) != Role::Leader {
                    self.report.follower_acks += 1;
                }
            } else if reply.message_type == ReplyType::Nak {
                self.report.naks += 1;
            }
            self.send_reply(n, reply, index);
        }
        if applied.snapshot_due {
            self.snapshot_slice(n);
        }
        Ok(())
    }

    /// Raft survives the loss of a minority's disks, not more: node `n` may lose its disk only while
    /// the nodes still catching up after an earlier loss, with `n`, stay a minority.
    fn may_lose_a_disk(&self, n: usize) -> bool {
        let behind = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, node)| {
                let wiped_not_restarted = node.lost_log.is_some() && node.log.last_index().unwrap_or(0) == 0;
                *i != n && (node.log.catch_up() != CatchUpMark::Done || wiped_not_restarted)
            })
            .count();
        (behind + 1) * 2 < self.nodes.len()
    }

    /// DESIGN rule 1: the entry an ACK is built from is durable on a majority — in their logs with
    /// the same term, or behind their snapshots. `term`: the entry's term when it was handed out.
    fn check_durable(&self, n: usize, index: u64, term: Option<u64>) -> Result<(), String> {
        let holds = |log: &MemLog| match (log.term(index), term) {
            (Ok(theirs), Some(ours)) => theirs == ours,
            _ => log.snapshot_index() >= index,
        };
        let holders =
            self.nodes.iter().filter(|node| holds(&node.log) || node.lost_log.as_ref().is_some_and(holds)).count();
        if holders * 2 <= self.nodes.len() {
            return Err(format!(
                "rule 1 (ACK only after commit): n{} ACKs from entry {index} (term {term:?}), which only {holders} of {} \
                 logs hold",
                n + 1,
                self.nodes.len()
            ));
        }
        Ok(())
    }

    /// An ACK straight from a request (no proposal): only a renewal confirmed from the committed
    /// table, for no longer than the committed lease has left (DESIGN rule 5). Returns the applied
    /// index the confirmation was read at (every node past it must have the binding).
    fn check_confirmation(&self, n: usize, client: usize, reply: &leasehold_node::wire::Reply) -> Result<u64, String> {
        let node = &self.nodes[n];
        let now_ms = self.node_now_us(n) / 1000;
        let Some(live) = node.live.as_ref() else { return Ok(0) };
        let table = live.engine.table();
        let broken = |why: String| {
            Err(format!(
                "rules 1 and 5 (an ACK without a commit only confirms a committed lease, for its remaining time): \
                 n{} ({}) ACKs {} to c{client} for {:?} s at index {}, but {why}",
                node.id,
                role_name(self.role(n)),
                reply.yiaddr,
                reply.lease_time_secs,
                table.applied_index()
            ))
        };
        let Some(lease) = table.by_ip(reply.yiaddr) else { return broken("its table has no such lease".into()) };
        if lease.client != ClientKey::Mac(reply.chaddr) {
            return broken(format!("its table binds the address to {}", lease.client));
        }
        let leasehold_cluster::LeaseState::Bound { expires_at_ms } = lease.state else {
            return broken(format!("its table has it {:?}", lease.state));
        };
        if expires_at_ms <= now_ms {
            return broken(format!("the committed lease expired at {expires_at_ms} ms (now {now_ms} ms)"));
        }
        let remaining_secs = (expires_at_ms - now_ms).div_ceil(1000);
        if reply.lease_time_secs.is_none_or(|secs| u64::from(secs) > remaining_secs) {
            return broken(format!("only {remaining_secs} s remain on the committed lease"));
        }
        Ok(table.applied_index())
    }

    fn check_table(&mut self, n: usize) -> Result<(), String> {
        let node = &self.nodes[n];
        let Some(live) = node.live.as_ref() else { return Ok(()) };
        self.checker.table(node.id, live.engine.table(), node.offset_us, self.now_us)
    }

    fn schedule_flush(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        if !node.flush_scheduled {
            node.flush_scheduled = true;
            let incarnation = node.incarnation;
            self.schedule(self.now_us + self.plan.flush_delay_us, Event::FlushProposals { node: n, incarnation });
        }
    }

    // ---- the network ----

    fn send_peer(&mut self, from: usize, message: Message) {
        self.report.peer_messages += 1;
        let to = message.to as usize - 1;
        if !self.net.peers_connected(from, to) {
            let note = peer_note(&message, false);
            self.note(note);
            return;
        }
        let fates = self.net.fates(&mut self.net_rng);
        let delays = fates.delays_us();
        if delays.is_empty() {
            let note = peer_note(&message, false);
            self.note(note);
        }
        let Some((&first, duplicates)) = delays.split_first() else { return };
        for &delay in duplicates {
            self.schedule(self.now_us + delay, Event::Peer { from, to, message: Box::new(message.clone()) });
        }
        self.schedule(self.now_us + first, Event::Peer { from, to, message: Box::new(message) });
    }

    fn deliver_peer(&mut self, from: usize, to: usize, message: Message) -> Result<(), String> {
        let delivered = self.net.peers_connected(from, to) && self.nodes[to].live.is_some();
        let note = peer_note(&message, delivered);
        self.note(note);
        if !delivered {
            return Ok(());
        }
        let Some(live) = self.nodes[to].live.as_mut() else { return Ok(()) };
        // A stale or unexpected message is dropped, as the raft actor does; Raft retries what matters.
        // A log that lost acknowledged entries stops a real node: here it fails the seed.
        driver::receive(&mut live.replica, message).map_err(|e| format!("n{}: stopped: {e}", to + 1))?;
        self.drive(to)
    }

    fn send_request(&mut self, client: usize, request: Box<Request>, destination: Destination) {
        self.report.client_messages += 1;
        let datagram = self.report.client_messages;
        let targets: Vec<usize> = match destination {
            Destination::Broadcast => (0..self.nodes.len()).collect(),
            Destination::Unicast(ip) => self.nodes.iter().position(|node| node.server_ip == ip).into_iter().collect(),
        };
        for node in targets {
            let fates = self.net.fates(&mut self.net_rng);
            for &delay in fates.delays_us() {
                let path = self.client_path_at_us.entry((client, node)).or_insert(0);
                let at_us = (self.now_us + delay).max(*path);
                *path = at_us;
                self.schedule(at_us, Event::ToNode { client, node, request: request.clone(), destination, datagram });
            }
        }
    }

    fn deliver_request(
        &mut self,
        client: usize,
        n: usize,
        request: &Request,
        destination: Destination,
        datagram: u64,
    ) -> Result<(), String> {
        let delivered = self.net.client_link(n) && self.nodes[n].live.is_some();
        let id = self.nodes[n].id;
        self.note(Note::ToNode {
            client,
            node: id,
            kind: request.message_type,
            xid: request.xid,
            destination,
            delivered,
        });
        if !delivered {
            return Ok(());
        }
        self.refresh_role(n);
        let now_us = self.node_now_us(n);
        let Some(live) = self.nodes[n].live.as_mut() else { return Ok(()) };
        let arrival = match destination {
            Destination::Broadcast => Arrival::BROADCAST,
            Destination::Unicast(ip) => Arrival::unicast(ip),
        };
        let action = live.engine.handle_from(request, arrival, now_us);
        if matches!(action, Action::Send(_) | Action::Propose(_)) {
            self.note_answer(datagram, n)?;
        }
        let Some(live) = self.nodes[n].live.as_mut() else { return Ok(()) };
        match action {
            Action::Send(outgoing) => {
                let reply = outgoing.reply;
                let index = match reply.message_type {
                    ReplyType::Ack if reply.yiaddr != Ipv4Addr::UNSPECIFIED => {
                        let index = self.check_confirmation(n, client, &reply)?;
                        self.report.acks += 1;
                        self.report.confirmations += 1;
                        index
                    }
                    ReplyType::Offer => {
                        self.report.offers += 1;
                        0
                    }
                    ReplyType::Nak => {
                        self.report.naks += 1;
                        0
                    }
                    // The simulated clients send no BOOTP.
                    ReplyType::Ack | ReplyType::Bootp => 0,
                };
                self.send_reply(n, reply, index);
            }
            Action::Propose(proposal) => {
                self.report.proposals += 1;
                live.batch.push(proposal);
                self.note(Note::Proposed { node: id, client, kind: request.message_type });
                self.schedule_flush(n);
            }
            Action::Silent(silence) => self.note(Note::Decided { node: id, client, what: silence.label() }),
            Action::Drop(reason) => self.note(Note::Decided { node: id, client, what: reason.label() }),
        }
        Ok(())
    }

    /// DESIGN rule 2: exactly one node answers each client message (a reply, or a proposal that will
    /// be one). The leader lease makes a deposed leader fall silent before a new one is elected.
    fn note_answer(&mut self, datagram: u64, n: usize) -> Result<(), String> {
        match self.answered.get(&datagram).copied() {
            None => {
                self.answered.insert(datagram, (n, false));
                Ok(())
            }
            Some((first, false)) if first != n => {
                self.answered.insert(datagram, (first, true));
                self.report.answered_twice += 1;
                Err(format!(
                    "rule 2 (exactly one node answers): n{} and n{} both answered datagram {datagram}",
                    self.nodes[first].id, self.nodes[n].id
                ))
            }
            Some(_) => Ok(()),
        }
    }

    fn send_reply(&mut self, n: usize, reply: leasehold_node::wire::Reply, index: u64) {
        let [.., hi, lo] = reply.chaddr;
        let client = usize::from(u16::from_be_bytes([hi, lo]));
        if self.clients.get(client).is_none_or(|c| c.mac != reply.chaddr) {
            return;
        }
        let fates = self.net.fates(&mut self.net_rng);
        if fates.delays_us().is_empty() {
            let note = Note::ToClient {
                node: self.nodes[n].id,
                client,
                kind: reply.message_type,
                ip: reply.yiaddr,
                index,
                delivered: false,
            };
            self.note(note);
        }
        let reply = Box::new(reply);
        for &delay in fates.delays_us() {
            self.schedule(self.now_us + delay, Event::ToClient { node: n, client, reply: reply.clone(), index });
        }
    }

    fn deliver_reply(
        &mut self,
        n: usize,
        client: usize,
        reply: &leasehold_node::wire::Reply,
        index: u64,
    ) -> Result<(), String> {
        let delivered = self.net.client_link(n);
        let id = self.nodes[n].id;
        self.note(Note::ToClient { node: id, client, kind: reply.message_type, ip: reply.yiaddr, index, delivered });
        if !delivered {
            return Ok(());
        }
        let mut effects = Vec::new();
        self.clients[client]
            .on_reply(reply, self.now_us, &mut effects)
            .map_err(|e| format!("c{client} from n{id}: {e}"))?;
        self.client_effects(client, &mut effects, Some((id, index)))
    }

    /// Carry out a client's effects. `ack`: the node and log entry of the ACK being handled.
    fn client_effects(&mut self, c: usize, effects: &mut Vec<Effect>, ack: Option<(u64, u64)>) -> Result<(), String> {
        for effect in effects.drain(..) {
            match effect {
                Effect::Send { request, destination } => self.send_request(c, request, destination),
                Effect::Timer { at_us, generation } => {
                    self.schedule(at_us.max(self.now_us), Event::ClientTimer { client: c, generation })
                }
                Effect::Holds { ip, end_us } => {
                    let Some((node, index)) = ack else {
                        return Err(format!("c{c} holds {ip} without an ACK"));
                    };
                    self.note(Note::Holds { client: c, ip, until_ms: (end_us - EPOCH_US) / 1000 });
                    let belief = Belief {
                        ip,
                        client: ClientKey::Mac(self.clients[c].mac),
                        end_us,
                        index,
                        node,
                        since_us: self.now_us,
                    };
                    let now_us = self.now_us;
                    let tables: Vec<(u64, &LeaseTable, i64)> = self
                        .nodes
                        .iter()
                        .filter_map(|n| n.live.as_ref().map(|l| (n.id, l.engine.table(), n.offset_us)))
                        .collect();
                    self.checker.holds(c, belief, now_us, &tables)?;
                }
                Effect::Drops { ip, why } => {
                    self.note(Note::Drops { client: c, ip, why });
                    self.checker.drops(c);
                }
            }
        }
        Ok(())
    }

    // ---- faults ----

    fn set_weather(&mut self, weather: Weather) {
        self.net.weather = weather;
        self.note(Note::Weather {
            loss_ppm: weather.loss_ppm,
            duplicate_ppm: weather.duplicate_ppm,
            max_delay_us: weather.max_delay_us,
        });
    }

    fn leader(&self) -> Option<usize> {
        (0..self.nodes.len()).find(|&n| self.role(n) == Role::Leader)
    }

    fn note_partition(&mut self) {
        let mut groups = [0u8; 5];
        groups[..self.nodes.len()].copy_from_slice(self.net.groups());
        self.note(Note::Partition { groups });
        self.report.partitions += 1;
    }

    /// The fault schedule: one random decision every 0.5–5 s of the chaos phase.
    fn fault(&mut self) -> Result<(), String> {
        if self.phase != Phase::Chaos {
            return Ok(());
        }
        let next_us = self.now_us + self.fault_rng.between(500_000, 5_000_000);
        self.schedule(next_us, Event::Fault);
        let count = self.nodes.len();
        let random_node = self.fault_rng.index(count);
        match self.fault_rng.below(12) {
            // Crash a node (the leader half the time), restart it later.
            0..=2 => {
                let n = match self.leader() {
                    Some(leader) if self.fault_rng.chance(500_000) => leader,
                    _ => random_node,
                };
                if self.nodes[n].live.is_some() {
                    self.crash(n);
                    if self.config.wipe_disks && self.fault_rng.chance(250_000) && self.may_lose_a_disk(n) {
                        // DESIGN rule 6: "a node with an empty directory catches up from a leader
                        // snapshot" — the same id, the same peers, a fresh log.
                        let lost = std::mem::replace(
                            &mut self.nodes[n].log,
                            MemLog::with_keep_entries(self.plan.keep_entries),
                        );
                        self.nodes[n].lost_log = Some(lost);
                        self.report.disks_wiped += 1;
                        self.note(Note::DiskWiped { node: n as u64 + 1 });
                    }
                    if !self.nodes[n].restart_scheduled {
                        self.nodes[n].restart_scheduled = true;
                        let at_us = self.now_us + self.fault_rng.between(200_000, 20_000_000);
                        self.schedule(at_us, Event::Restart(n));
                    }
                }
            }
            // Cut one node off from its peers (the leader half the time), or a minority, or all.
            3..=5 => {
                let isolated: Vec<usize> = match self.fault_rng.below(4) {
                    0 => self.leader().into_iter().collect(),
                    1 => {
                        let mut all: Vec<usize> = (0..count).collect();
                        self.fault_rng.shuffle(&mut all);
                        let size = self.fault_rng.between(1, (count as u64 / 2).max(1)) as usize;
                        all.truncate(size);
                        all
                    }
                    _ => vec![random_node],
                };
                let generation = if self.fault_rng.chance(100_000) {
                    self.net.scatter()
                } else if isolated.is_empty() {
                    return Ok(());
                } else {
                    self.net.partition(&isolated)
                };
                self.note_partition();
                let at_us = self.now_us + self.fault_rng.between(1_000_000, 15_000_000);
                self.schedule(at_us, Event::HealPartition { generation });
            }
            // Take a node off the clients' segment for a while.
            6 => {
                let n = if self.fault_rng.chance(300_000) { self.leader().unwrap_or(random_node) } else { random_node };
                if self.net.client_link(n) {
                    self.net.set_client_link(n, false);
                    self.report.client_link_cuts += 1;
                    self.note(Note::ClientLink { node: self.nodes[n].id, up: false });
                    let at_us = self.now_us + self.fault_rng.between(1_000_000, 10_000_000);
                    self.schedule(at_us, Event::ClientLinkUp(n));
                }
            }
            // Bad weather: loss, duplicates, long delays (reordering) for a while.
            7 | 8 => {
                let loss_ppm = [0, 10_000, 50_000, 200_000][self.fault_rng.index(4)];
                let duplicate_ppm = [0, 10_000, 100_000][self.fault_rng.index(3)];
                let max_delay_us = [2_000, 20_000, 200_000][self.fault_rng.index(3)];
                self.weather_generation += 1;
                self.report.weather_changes += 1;
                self.set_weather(Weather { loss_ppm, duplicate_ppm, min_delay_us: 100, max_delay_us });
                let at_us = self.now_us + self.fault_rng.between(2_000_000, 20_000_000);
                self.schedule(at_us, Event::CalmWeather { generation: self.weather_generation });
            }
            // A snapshot now, whatever `snapshot_every_entries` says.
            9 => {
                if let Some(live) = self.nodes[random_node].live.as_ref() {
                    let table = live.engine.table();
                    let (index, data) = (table.applied_index(), table.to_snapshot());
                    self.mail_raft(random_node, RaftMail::SnapshotTaken { index, data });
                }
            }
            _ => {}
        }
        Ok(())
    }

    // ---- the end ----

    fn clients_without_address(&self) -> Vec<String> {
        self.clients
            .iter()
            .filter(|c| c.state() != ClientState::Gone)
            .filter(|c| self.checker.belief(c.index).is_none_or(|b| !b.active(self.now_us)))
            .map(|c| format!("c{} ({:?})", c.index, c.state()))
            .collect()
    }

    fn check_every_client_holds(&mut self) -> Result<(), String> {
        let without = self.clients_without_address();
        if without.is_empty() {
            return Ok(());
        }
        let leaders: Vec<u64> =
            (0..self.nodes.len()).filter(|&n| self.role(n) == Role::Leader).map(|n| self.nodes[n].id).collect();
        Err(format!(
            "liveness: {} of {} clients have no address {:.1}s after everything healed (leaders {leaders:?}): {}",
            without.len(),
            self.clients.len(),
            self.report.settle_us as f64 / 1e6,
            without.join(", ")
        ))
    }

    /// Every live node has applied the same index.
    fn applied_alike(&self) -> bool {
        let mut applied = self.nodes.iter().filter_map(|n| n.live.as_ref()).map(|l| l.engine.table().applied_index());
        let first = applied.next();
        applied.all(|index| Some(index) == first)
    }

    fn check_converged(&mut self) -> Result<(), String> {
        let mut states: BTreeMap<(u64, u64), Vec<u64>> = BTreeMap::new();
        for node in &self.nodes {
            let Some(live) = node.live.as_ref() else {
                return Err(format!("n{} is down at the end", node.id));
            };
            let table = live.engine.table();
            states.entry((table.applied_index(), table.digest())).or_default().push(node.id);
        }
        if states.len() != 1 {
            let states: Vec<String> = states
                .iter()
                .map(|((index, digest), nodes)| format!("{nodes:?} at index {index} digest {digest:#018x}"))
                .collect();
            return Err(format!("convergence: the nodes did not end with the same table: {}", states.join("; ")));
        }
        let (&(index, digest), _) = states.iter().next().expect("one state");
        self.report.final_applied_index = index;
        self.trace.mix(digest);
        Ok(())
    }
}

/// What the lease actor knows of Raft before the first status (as `LeaseActor::new` starts).
fn no_status(node_id: u64) -> RaftStatus {
    RaftStatus { node_id, term: 0, leader_id: None, is_leader: false, lease_until_us: None, commit_index: 0 }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::NoQuorum => "no quorum",
    }
}

fn peer_note(message: &Message, delivered: bool) -> Note {
    Note::Peer {
        from: message.from,
        to: message.to,
        kind: message.get_msg_type(),
        term: message.term,
        index: message.index,
        delivered,
    }
}
