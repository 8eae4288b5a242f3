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
//! replica, the engine and the mail in flight and keeps the `MemLog` (what was made durable) — also
//! a leader's crash between its appends and its own write, which the driver's two halves make
//! possible to place; a restart rebuilds the table from the log's latest snapshot
//! (`driver::open_table`), with a new incarnation.
//!
//! A run has three phases. Chaos: `steps` events with crashes, partitions, cut client links, lossy
//! weather, forced snapshots, membership changes and reservations, clients releasing, rebooting and
//! powering off. Settle: everything healed and every member restarted (nodes the operator removed
//! stay out), clients only trying to get and keep an address; at the end every client must hold
//! one. Quiet: clients stop sending; at the end every member must have applied the same index to the
//! same table.
//!
//! This file owns the `World`, the event queue, the run's phases and the handling of each event;
//! beside it, one concern each: `plan` (the run's config and what its seed draws), `nodes` (start,
//! crash and restart, the mail between a node's actors, the driver and state-machine calls),
//! `network` (peer and client datagrams), `clients` (client effects), `faults` (the fault
//! schedule), `operator` (membership changes and reservations through the admin API's paths),
//! `checks` (the world's checks and the end-of-phase ones) and `report`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

use leasehold_cluster::storage::MemLog;
use leasehold_node::wire::Request;
use raft::eraftpb::Message;
use slog::Logger;

use crate::check::Checker;
use crate::client::{Client, Destination, Mode, State as ClientState};
use crate::net::{Network, Weather};
use crate::rng::Rng;
use crate::trace::{Note, Trace};

mod checks;
mod clients;
mod faults;
mod network;
mod nodes;
mod operator;
mod plan;
mod report;

use nodes::{no_status, EngineMail, RaftMail, Seat, SimNode};
pub use plan::{default_nodes, SimConfig};
use plan::{server_ip, Plan, Segment};
pub use report::{Failure, Report};

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
/// The subnet every node and the directly attached clients are on; servers at .0.1–.0.5, the pool
/// from .1.0, reservations outside the range at .200.x (config file) and .220.x (admin API).
const NETWORK: [u8; 2] = [10, 77];
/// The relay's subnet (a /16 the nodes reach only through the relay): the relay at .0.1, its pool
/// from .1.0.
const RELAY_NETWORK: [u8; 2] = [10, 78];

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
    /// The operator stops a node whose removal committed (it stays out until added again).
    Decommission(usize),
    /// The operator asks a node to add (or remove) a member, through the admin API.
    ChangeMembership {
        id: u64,
        add: bool,
    },
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
    /// Every committed configuration of the Raft group, by the index of the change that made it
    /// (index 0: the members at the start), as the nodes applied them (`nodes::note_conf_changes`).
    configs: BTreeMap<u64, Vec<u64>>,
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
        let nodes = (0..plan.slots)
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
                    slice_scheduled: false,
                    crash_before_write: false,
                    engine_mail_at_us: 0,
                    raft_mail_at_us: 0,
                    restart_scheduled: false,
                    status: no_status(id),
                    seat: if i < config.nodes { Seat::Member } else { Seat::Out },
                    join: false,
                    ticking: false,
                    leaving: false,
                }
            })
            .collect();
        let slice_rng = rng.fork();
        let clients = (0..plan.clients)
            .map(|i| Client::new(i, plan.mac(i), i < plan.departing, plan.range_of(i), rng.fork()))
            .collect();
        let checker = Checker::new(plan.clients, plan.grace_ms * 1000, EPOCH_US);
        let report = Report {
            seed: config.seed,
            nodes: config.nodes,
            clients: plan.clients,
            relayed_clients: plan.segments.iter().filter(|s| **s != Segment::Direct).count() as u64,
            config_reservations: plan.reservations.len() as u64,
            ..Report::default()
        };
        World {
            trace: Trace::new(config.verbose),
            net: Network::new(plan.slots),
            configs: BTreeMap::from([(0, (1..=config.nodes as u64).collect())]),
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
                "seed {}: {} nodes ({} slots), {} clients ({} behind the relay), pools {} and {}, reservations {:?}, \
                 lease {} s, grace {} ms, clock offsets {:?} ms, keep {} entries, snapshot every {} entries, \
                 election timeouts {:?} ticks",
                self.config.seed,
                self.config.nodes,
                self.plan.slots,
                self.plan.clients,
                self.plan.segments.iter().filter(|s| **s != Segment::Direct).count(),
                self.plan.pool_size,
                self.plan.relay_pool_size,
                self.plan.reservations,
                self.plan.lease_secs,
                self.plan.grace_ms,
                self.nodes.iter().map(|n| n.offset_us / 1000).collect::<Vec<_>>(),
                self.plan.keep_entries,
                self.plan.snapshot_every_entries,
                self.nodes.iter().map(|n| n.election_timeout_ticks).collect::<Vec<_>>(),
            );
        }
        self.note(Note::Phase { name: "chaos" });
        for n in 0..self.config.nodes {
            self.start_node(n)?;
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
        for node in &mut self.nodes {
            node.crash_before_write = false;
        }
        for n in 0..self.nodes.len() {
            // Nodes the operator took out after their removal stay out.
            if self.nodes[n].live.is_none() && self.nodes[n].seat == Seat::Member {
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
                    let proposals = [live.engine.propose_parameters(), live.engine.propose_config_digest(), collection];
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
                if self.nodes[n].live.is_none() && self.nodes[n].seat == Seat::Member {
                    self.restart_node(n)?;
                }
            }
            Event::Decommission(n) => self.decommission(n),
            Event::ChangeMembership { id, add } => self.ask_membership_change(id, add),
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
}
