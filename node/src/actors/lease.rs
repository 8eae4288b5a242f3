//! The lease actor: owns the DHCP engine (and through it the applied lease table). Requests come in
//! from the parser; proposals go to the raft actor, batched per mailbox drain and group commit window; committed entries come
//! back in log order and become ACKs/NAKs. Replies go to the parser to be encoded and sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use actix::prelude::*;
use leasehold_cluster::lease::SnapshotEncoder;
use leasehold_cluster::{
    LeaseState, Proposal, ProposalTag, Propose, RaftStatus, ReservedHost, SnapshotTaken, ToStateMachine,
};
use serde::Serialize;
use slog::{debug, error, info, Logger};

use super::parser::{Encode, ParserActor};
use super::state_machine;
use super::Clock;
use crate::engine::{Action, Arrival, Decision, Engine, Outgoing, ReservationError, Role};
use crate::metrics::{message_type_label, reply_type_label, Metrics};
use crate::wire::Request;

/// How often stale offers and proposals are swept.
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);
/// How often the leader looks for lease records past their retention (see `Engine::propose_collection`).
const COLLECT_INTERVAL: Duration = Duration::from_secs(10);

/// A validated request from the parser, and how it arrived.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Incoming(pub Request, pub Arrival);

/// Flush the proposals gathered during one mailbox drain as one `Propose`.
#[derive(Message)]
#[rtype(result = "()")]
struct FlushProposals;

/// One row of `GET /v1/leases`.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseView {
    pub ip: String,
    pub mac: String,
    pub client_id: Option<String>,
    pub hostname: Option<String>,
    pub state: &'static str,
    /// Unix seconds: end of the binding, of the probation (declined), or the release time.
    pub expires_at: u64,
    /// The pool whose range holds the address, if one does.
    pub pool: Option<String>,
}

/// Rows `GET /v1/leases` gives when it is not asked for a number.
pub const LEASES_PAGE_DEFAULT: usize = 1_000;
/// The most rows one `GET /v1/leases` gives: a page costs the DHCP thread at most this many records.
pub const LEASES_PAGE_MAX: usize = 10_000;

/// One page of `GET /v1/leases`: up to `limit` records with addresses above `after`, in address order.
#[derive(Message)]
#[rtype(result = "LeasePage")]
pub struct GetLeases {
    pub after: Option<std::net::Ipv4Addr>,
    pub limit: usize,
}

#[derive(Debug, Clone)]
pub struct LeasePage {
    pub rows: Vec<LeaseView>,
    /// The last address of the page when more records follow it (the next page's `after`).
    pub next_after: Option<std::net::Ipv4Addr>,
    pub applied_index: u64,
}

/// What the admin API shows of the node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub node_id: u64,
    pub is_leader: bool,
    /// The Raft leader, holding its leader lease: it answers broadcasts.
    pub answers_as_leader: bool,
    pub leader_id: Option<u64>,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    /// Restarted, and still replaying the log it started with: it answers nobody yet.
    pub replaying: bool,
    pub leases: usize,
    pub offers_held: usize,
    pub proposals_pending: usize,
    /// The digest of this node's lease-relevant config (`reload::lease_config_digest`).
    pub config_digest: String,
    /// The digest the Raft log last carried: the config of the leader that proposed it.
    pub cluster_config_digest: Option<String>,
    /// This node's config differs from the cluster's (`None` until the log carried a digest).
    pub config_mismatch: Option<bool>,
}

#[derive(Message)]
#[rtype(result = "NodeStatus")]
pub struct GetStatus;

/// What the iPXE script of the machine with this MAC may say about it (`Engine::machine`), served
/// by this node at the given address.
#[derive(Message)]
#[rtype(result = "crate::boot_script::Machine")]
pub struct GetMachine {
    pub mac: [u8; 6],
    pub server: std::net::Ipv4Addr,
}

impl Handler<GetMachine> for LeaseActor {
    type Result = MessageResult<GetMachine>;

    fn handle(&mut self, GetMachine { mac, server }: GetMachine, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.engine.machine(mac, server, self.clock.now_us() / 1000))
    }
}

/// One reservation as `GET /v1/reservations` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ReservationView {
    pub mac: String,
    pub ip: String,
    pub hostname: Option<String>,
    pub boot_file: Option<String>,
    /// `config` (this node's config file) or `api` (replicated through the log).
    pub source: &'static str,
}

#[derive(Message)]
#[rtype(result = "Vec<ReservationView>")]
pub struct GetReservations;

/// Why an admin change did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminError {
    Refused(ReservationError),
    /// The Raft layer refused the proposal (no leader known), or it did not commit in time.
    Unavailable(String),
}

/// `PUT /v1/reservations/{mac}`: reserve, answered once committed and applied.
#[derive(Message)]
#[rtype(result = "Result<(), AdminError>")]
pub struct PutReservation(pub ReservedHost);

/// `DELETE /v1/reservations/{mac}`.
#[derive(Message)]
#[rtype(result = "Result<(), AdminError>")]
pub struct DeleteReservation(pub [u8; 6]);

/// Pool usage and Prometheus text, rendered here where the table lives.
#[derive(Message)]
#[rtype(result = "String")]
pub struct RenderMetrics;

/// Where the lease actor's proposals go.
pub enum Replication {
    /// To the raft actor, as commands; committed entries come back (`ToStateMachine`), and
    /// snapshots of the table go to it.
    Raft { propose: Recipient<Propose>, snapshot: Recipient<SnapshotTaken> },
    /// To a store that writes the changes this node decided (etcd, `store::etcd`); every node's
    /// changes come back as `StoreMail`.
    Store(Recipient<crate::store::Transact>),
}

pub struct LeaseActor {
    engine: Engine,
    parser: Option<Addr<ParserActor>>,
    replication: Replication,
    /// The etcd store's key layout (`[store] prefix`), for the writes this node decides.
    store_keys: crate::store::etcd_keys::Keys,
    batch: Vec<Proposal>,
    /// A `FlushProposals` is in the mailbox or on a timer.
    flush_scheduled: bool,
    /// When the batch last went to the raft actor (`group_commit_window_us` counts from it).
    last_flush: Option<Instant>,
    group_commit_window: Duration,
    /// Admin requests waiting for their reservation command to commit.
    admin_waiters: HashMap<ProposalTag, tokio::sync::oneshot::Sender<Result<(), AdminError>>>,
    status: RaftStatus,
    clock: Clock,
    mailbox_capacity: usize,
    metrics: Arc<Metrics>,
    /// A `SnapshotSlice` is in the mailbox.
    slice_scheduled: bool,
    /// Where the slices of the snapshot in progress go (its thread), if one is.
    snapshot_writer: Option<std::sync::mpsc::Sender<(Vec<leasehold_cluster::Lease>, bool)>>,
    /// Terms this node moved through (each an election) and leaders it came to know, since start.
    terms_seen: u64,
    leader_changes: u64,
    log: Logger,
}

/// Records a snapshot slice copies out: about 0.2 ms, the longest the DHCP thread is held up by it.
const SNAPSHOT_SLICE_RECORDS: usize = 20_000;

/// The thread encoding one snapshot: the slices come down `parts` in address order (`true` with the
/// last); it encodes them, compresses the whole and hands it to the raft actor, which stores it and
/// sends it to followers that need it. A closed channel before the last slice means the snapshot was
/// abandoned (the table was replaced by the leader's): nothing is stored.
fn run_snapshot_writer(
    mut encoder: SnapshotEncoder,
    parts: std::sync::mpsc::Receiver<(Vec<leasehold_cluster::Lease>, bool)>,
    raft_snapshot: Recipient<SnapshotTaken>,
    log: Logger,
) {
    while let Ok((records, last)) = parts.recv() {
        encoder.encode(&records);
        if last {
            let (applied_index, written, data) = state_machine::finish_snapshot(encoder);
            info!(log, "snapshot written"; "index" => applied_index, "bytes" => written, "compressed" => data.len());
            raft_snapshot.do_send(SnapshotTaken { applied_index, data });
            return;
        }
    }
    debug!(log, "snapshot abandoned"; "index" => encoder.applied_index());
}

impl LeaseActor {
    /// Copy out a slice of the snapshot that is due or in progress for its thread to encode; the
    /// rest after the packets waiting in the mailbox, so a large table is written out without
    /// holding them up.
    fn snapshot_slice(&mut self, ctx: &mut Context<Self>) {
        let Some(part) = state_machine::snapshot_slice(&mut self.engine, SNAPSHOT_SLICE_RECORDS) else { return };
        if let Some(encoder) = part.begun {
            let (sender, parts) = std::sync::mpsc::channel();
            let Replication::Raft { snapshot, .. } = &self.replication else { return };
            let (raft_snapshot, log) = (snapshot.clone(), self.log.clone());
            let writer = move || run_snapshot_writer(encoder, parts, raft_snapshot, log);
            self.snapshot_writer = match std::thread::Builder::new().name("snapshot".into()).spawn(writer) {
                Ok(_) => Some(sender),
                Err(e) => {
                    // No thread: this snapshot is not stored; the next is due after as many entries.
                    error!(self.log, "snapshot not stored: no thread to encode it"; "error" => %e);
                    None
                }
            };
        }
        if let Some(writer) = &self.snapshot_writer {
            if writer.send((part.records, part.last)).is_err() {
                self.snapshot_writer = None;
            }
        }
        if part.last {
            self.snapshot_writer = None;
        } else if !self.slice_scheduled {
            self.slice_scheduled = true;
            ctx.notify(SnapshotSlice);
        }
    }

    /// Add a proposal to the batch for the raft actor. The batch goes once the mailbox is drained
    /// (everything that arrived meanwhile in one message, one log entry, one fsync), and at most once
    /// per group commit window: under load, later proposals wait for the window's end and share a
    /// write with whatever arrives until then; after a quiet spell the first goes at once.
    fn queue_proposal(&mut self, proposal: Proposal, ctx: &mut Context<Self>) {
        self.batch.push(proposal);
        if self.flush_scheduled {
            return;
        }
        self.flush_scheduled = true;
        let wait =
            self.last_flush.map_or(Duration::ZERO, |last| self.group_commit_window.saturating_sub(last.elapsed()));
        if wait.is_zero() {
            ctx.notify(FlushProposals);
        } else {
            ctx.notify_later(FlushProposals, wait);
        }
    }

    /// The engine's role from the last Raft status and the lease's clock now.
    fn refresh_role(&mut self) {
        if let Some(role) =
            state_machine::refresh_role(&mut self.engine, &self.status, leasehold_cluster::monotonic_us())
        {
            self.log_role(role);
        }
    }

    fn log_role(&self, role: Role) {
        info!(self.log, "answering role"; "role" => ?role, "term" => self.status.term,
            "leader_lease" => self.status.lease_until_us.is_some());
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        engine: Engine,
        replication: Replication,
        node_id: u64,
        clock: Clock,
        mailbox_capacity: usize,
        metrics: Arc<Metrics>,
        log: Logger,
    ) -> Self {
        let status =
            RaftStatus { node_id, term: 0, leader_id: None, is_leader: false, lease_until_us: None, commit_index: 0 };
        let group_commit_window = Duration::from_micros(engine.config().limits.group_commit_window_us);
        let store_keys = crate::store::etcd_keys::Keys::new(match &engine.config().store {
            leasehold_config::Store::Etcd(etcd) => &etcd.prefix,
            leasehold_config::Store::Raft => leasehold_config::DEFAULT_STORE_PREFIX,
        });
        LeaseActor {
            engine,
            parser: None,
            store_keys,
            replication,
            batch: Vec::new(),
            flush_scheduled: false,
            last_flush: None,
            group_commit_window,
            admin_waiters: HashMap::new(),
            status,
            clock,
            mailbox_capacity,
            metrics,
            slice_scheduled: false,
            snapshot_writer: None,
            terms_seen: 0,
            leader_changes: 0,
            log,
        }
    }

    /// Log and send the replies, log the silent decisions and answer the admin requests of `applied`.
    fn send_answers(&mut self, applied: state_machine::Applied) {
        for us in &applied.commit_latencies_us {
            self.metrics.commit_latency_us(*us);
        }
        for decision in &applied.silent {
            self.log_decision(decision, None);
        }
        for reply in applied.replies {
            self.log_decision(&reply.decision, reply.outgoing.reply.message.as_deref());
            self.send(reply.outgoing);
        }
        for (tag, result) in applied.admin {
            if let Some(waiter) = self.admin_waiters.remove(&tag) {
                let _ = waiter.send(result);
            }
        }
    }

    fn send(&self, outgoing: Outgoing) {
        if let Some(parser) = &self.parser {
            parser.do_send(Encode(outgoing));
        }
    }

    /// One line per decision: the request (type, xid, client, relay), what it got, and for a NAK why
    /// (the option 56 text it carries).
    fn log_decision(&self, decision: &Decision, why: Option<&str>) {
        info!(self.log, "dhcp";
            "msg" => message_type_label(decision.message),
            "xid" => format_args!("{:#010x}", decision.xid),
            "mac" => %leasehold_cluster::ClientKey::Mac(decision.mac),
            "giaddr" => %decision.giaddr,
            "ip" => %decision.ip,
            "outcome" => decision.outcome,
            "reason" => why.unwrap_or(""));
    }
}

/// Connects the lease actor to the parser (started after it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ConnectParser(pub Addr<ParserActor>);

impl Actor for LeaseActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
        ctx.run_interval(SWEEP_INTERVAL, |act, _| {
            let expired = act.engine.expire_pending(act.clock.now_us());
            act.metrics.proposals_expired(expired);
            // Requests that gave up waiting (their HTTP handler timed out) have closed receivers.
            act.admin_waiters.retain(|_, waiter| !waiter.is_closed());
        });
        ctx.run_interval(COLLECT_INTERVAL, |act, ctx| {
            act.refresh_role();
            let now_us = act.clock.now_us();
            let proposals = [
                act.engine.propose_parameters(),
                act.engine.propose_config_digest(),
                act.engine.propose_collection(now_us),
            ];
            for proposal in proposals.into_iter().flatten() {
                act.queue_proposal(proposal, ctx);
            }
        });
    }
}

impl Handler<ConnectParser> for LeaseActor {
    type Result = ();

    fn handle(&mut self, msg: ConnectParser, _: &mut Self::Context) {
        self.parser = Some(msg.0);
    }
}

impl Handler<Incoming> for LeaseActor {
    type Result = ();

    fn handle(&mut self, msg: Incoming, ctx: &mut Self::Context) {
        let Incoming(request, arrival) = msg;
        // The leader lease runs out with time, not with a message: check it for every request.
        self.refresh_role();
        match self.engine.handle_from(&request, arrival, self.clock.now_us()) {
            Action::Send(outgoing) => {
                self.log_decision(
                    &Decision {
                        message: request.message_type,
                        xid: request.xid,
                        mac: request.chaddr,
                        giaddr: request.giaddr,
                        ip: outgoing.reply.yiaddr,
                        outcome: reply_type_label(outgoing.reply.message_type),
                    },
                    outgoing.reply.message.as_deref(),
                );
                self.send(*outgoing);
            }
            Action::Propose(proposal) => self.queue_proposal(proposal, ctx),
            Action::Silent(silence) => {
                self.metrics.silent(silence);
                debug!(self.log, "dhcp"; "msg" => message_type_label(request.message_type),
                    "xid" => format_args!("{:#010x}", request.xid),
                    "mac" => %leasehold_cluster::ClientKey::Mac(request.chaddr), "giaddr" => %request.giaddr,
                    "outcome" => silence.label());
            }
            Action::Drop(reason) => {
                self.metrics.dropped(reason);
                debug!(self.log, "dhcp dropped"; "xid" => format_args!("{:#010x}", request.xid),
                    "mac" => %leasehold_cluster::ClientKey::Mac(request.chaddr), "reason" => reason.label());
            }
        }
    }
}

impl Handler<FlushProposals> for LeaseActor {
    type Result = ();

    fn handle(&mut self, _: FlushProposals, _: &mut Self::Context) {
        self.flush_scheduled = false;
        if self.batch.is_empty() {
            return;
        }
        self.last_flush = Some(Instant::now());
        let batch = std::mem::take(&mut self.batch);
        self.metrics.proposed(batch.len());
        match &self.replication {
            // Unbounded on purpose: the engine bounds proposals in flight (max_inflight_proposals).
            Replication::Raft { propose, .. } => propose.do_send(Propose(batch)),
            Replication::Store(store) => {
                let store = store.clone();
                // Decided here, on the table as the store last delivered it; what changes nothing
                // is answered at once, the rest written (one transaction each).
                let now_us = self.clock.now_us();
                let mut writes = Vec::new();
                for proposal in batch {
                    let decided = self.engine.decide(&proposal);
                    if decided.changes.is_empty() {
                        let revision = self.engine.table().applied_index();
                        let answers = self.engine.answer_decided(revision, &proposal, decided.outcome, now_us);
                        self.send_answers(state_machine::applied_of(answers, revision));
                    } else {
                        let write = self.store_keys.plan(self.engine.table(), &decided.changes);
                        writes.push(crate::store::Decided { proposal, outcome: decided.outcome, write });
                    }
                }
                if !writes.is_empty() {
                    store.do_send(crate::store::Transact(writes));
                }
            }
        }
    }
}

impl Handler<crate::store::StoreMail> for LeaseActor {
    type Result = ();

    fn handle(&mut self, mail: crate::store::StoreMail, _: &mut Self::Context) {
        use crate::store::StoreMail;
        let now_us = self.clock.now_us();
        match mail {
            StoreMail::Reset(table) => {
                info!(self.log, "lease table loaded from the store"; "revision" => table.applied_index(),
                    "leases" => table.len());
                self.engine.restore(*table);
            }
            StoreMail::Changes { revision, changes } => self.engine.apply_store_changes(revision, changes, now_us),
            StoreMail::Committed { revision, proposal, outcome } => {
                let answers = self.engine.answer_decided(revision, &proposal, outcome, now_us);
                self.send_answers(state_machine::applied_of(answers, revision));
            }
            StoreMail::Rejected(tags) => {
                let applied = state_machine::on_raft_mail(
                    &mut self.engine,
                    leasehold_cluster::ToStateMachine::Rejected(tags),
                    now_us,
                    |_, _| {},
                );
                if let Ok(applied) = applied {
                    self.send_answers(applied);
                }
            }
        }
    }
}

/// Internal: write the next slice of the snapshot in progress (after the mailbox is drained).
#[derive(Message)]
#[rtype(result = "()")]
struct SnapshotSlice;

impl Handler<SnapshotSlice> for LeaseActor {
    type Result = ();

    fn handle(&mut self, _: SnapshotSlice, ctx: &mut Self::Context) {
        self.slice_scheduled = false;
        self.snapshot_slice(ctx);
    }
}

impl Handler<ToStateMachine> for LeaseActor {
    type Result = ();

    fn handle(&mut self, msg: ToStateMachine, ctx: &mut Self::Context) {
        let applied = match state_machine::on_raft_mail(&mut self.engine, msg, self.clock.now_us(), |_, _| {}) {
            Ok(applied) => applied,
            Err(unusable) => {
                error!(self.log, "snapshot from the leader is unusable, stopping the node";
                    "index" => unusable.index, "error" => %unusable.reason);
                eprintln!("leasehold: stopping the node: {unusable}");
                System::current().stop_with_code(1);
                std::process::exit(1);
            }
        };
        let (restored, snapshot_due) = (applied.restored, applied.snapshot_due);
        self.send_answers(applied);
        if let Some((index, leases)) = restored {
            info!(self.log, "restored lease table from snapshot"; "index" => index, "leases" => leases);
            // The table our own snapshot was of is gone: its thread ends without storing it.
            self.snapshot_writer = None;
        }
        if snapshot_due {
            self.snapshot_slice(ctx);
        }
    }
}

impl Handler<RaftStatus> for LeaseActor {
    type Result = ();

    fn handle(&mut self, status: RaftStatus, _: &mut Self::Context) {
        let now_us = leasehold_cluster::monotonic_us();
        // On-call counters: a new term is an election somebody started; a new known leader a change.
        if status.term > self.status.term && self.status.term > 0 {
            self.terms_seen += status.term - self.status.term;
        }
        if status.leader_id.is_some() && status.leader_id != self.status.leader_id {
            self.leader_changes += 1;
        }
        let change = state_machine::on_status(&mut self.engine, &mut self.status, status, now_us);
        if change.raft_role_changed {
            info!(self.log, "raft role"; "leader" => status.is_leader, "term" => status.term,
                "leader_id" => ?status.leader_id);
        }
        if let Some(role) = change.role {
            self.log_role(role);
        }
    }
}

impl Handler<GetLeases> for LeaseActor {
    type Result = MessageResult<GetLeases>;

    fn handle(&mut self, GetLeases { after, limit }: GetLeases, _: &mut Self::Context) -> Self::Result {
        let now_ms = self.clock.now_us() / 1000;
        let limit = limit.clamp(1, LEASES_PAGE_MAX);
        let table = self.engine.table();
        let first = match after {
            None => Some(std::net::Ipv4Addr::UNSPECIFIED),
            Some(ip) => u32::from(ip).checked_add(1).map(std::net::Ipv4Addr::from),
        };
        let mut records: Vec<&leasehold_cluster::Lease> = match first {
            Some(first) => table.range(first, std::net::Ipv4Addr::BROADCAST).take(limit + 1).collect(),
            None => Vec::new(),
        };
        let more = records.len() > limit;
        records.truncate(limit);
        let rows: Vec<LeaseView> = records
            .iter()
            .map(|lease| {
                let (state, until_ms) = match lease.state {
                    LeaseState::Bound { expires_at_ms } if expires_at_ms <= now_ms => ("expired", expires_at_ms),
                    LeaseState::Bound { expires_at_ms } => ("bound", expires_at_ms),
                    LeaseState::Released { at_ms } => ("released", at_ms),
                    LeaseState::Declined { until_ms } => ("declined", until_ms),
                };
                LeaseView {
                    ip: lease.ip.to_string(),
                    mac: leasehold_cluster::ClientKey::Mac(lease.mac).to_string(),
                    client_id: lease
                        .client_id()
                        .map(|id| id.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")),
                    hostname: lease.hostname().map(str::to_string),
                    state,
                    expires_at: until_ms / 1000,
                    pool: self.engine.config().pools.iter().find(|p| p.contains(lease.ip)).map(|p| p.name.clone()),
                }
            })
            .collect();
        let next_after = if more { records.last().map(|lease| lease.ip) } else { None };
        MessageResult(LeasePage { rows, next_after, applied_index: table.applied_index() })
    }
}

impl Handler<GetStatus> for LeaseActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Self::Context) -> Self::Result {
        self.refresh_role();
        MessageResult(NodeStatus {
            node_id: self.status.node_id,
            is_leader: self.status.is_leader,
            answers_as_leader: self.engine.role() == Role::Leader,
            leader_id: self.status.leader_id,
            term: self.status.term,
            commit_index: self.status.commit_index,
            applied_index: self.engine.table().applied_index(),
            replaying: self.engine.is_replaying(),
            leases: self.engine.table().len(),
            offers_held: self.engine.offers_held(),
            proposals_pending: self.engine.proposals_pending(),
            config_digest: self.engine.config_digest().to_owned(),
            cluster_config_digest: self.engine.table().config_digest().map(str::to_owned),
            config_mismatch: self.engine.config_mismatch(),
        })
    }
}

impl Handler<RenderMetrics> for LeaseActor {
    type Result = String;

    fn handle(&mut self, _: RenderMetrics, _: &mut Self::Context) -> String {
        let now_ms = self.clock.now_us() / 1000;
        let usage = self.engine.pool_usage(now_ms);
        let keys = self.engine.rate_limit_keys();
        let extra = [
            ("leasehold_leases", "Lease records in the table (any state).", self.engine.table().len() as u64),
            ("leasehold_offers_held", "Offers held in memory.", self.engine.offers_held() as u64),
            (
                "leasehold_reservations",
                "Reservations: the config file's and the replicated ones.",
                (self.engine.config().reservations.len() + self.engine.table().reservations().count()) as u64,
            ),
            ("leasehold_proposals_pending", "Proposals waiting for commit.", self.engine.proposals_pending() as u64),
            ("leasehold_rate_limit_keys_mac", "Client MACs the token buckets track.", keys[0] as u64),
            ("leasehold_rate_limit_keys_relay", "Relay agents (giaddr) the token buckets track.", keys[1] as u64),
            (
                "leasehold_rate_limit_keys_circuit",
                "Relay circuits (option 82) the token buckets track.",
                keys[2] as u64,
            ),
            ("leasehold_rate_limit_keys_decline", "Client MACs the DECLINE buckets track.", keys[3] as u64),
            ("leasehold_raft_term", "Current Raft term.", self.status.term),
            (
                "leasehold_raft_elections_total",
                "Raft terms this node moved through since it started (each is an election someone began).",
                self.terms_seen,
            ),
            (
                "leasehold_raft_leader_changes_total",
                "Times this node came to know a new leader since it started.",
                self.leader_changes,
            ),
            ("leasehold_raft_is_leader", "1 when this node is the Raft leader.", u64::from(self.status.is_leader)),
            (
                "leasehold_applied_index",
                "Highest Raft log index applied to the lease table.",
                self.engine.table().applied_index(),
            ),
        ];
        let applied: Vec<(&str, &str, u64)> = self.engine.applied_outcomes().collect();
        let mut text = self.metrics.render(&usage, &applied, &extra);
        // The config in force, as a label: nodes of one cluster must show the same digest.
        text.push_str("# HELP leasehold_config_info The digest of the lease-relevant config in force (reload::lease_config_digest).\n");
        text.push_str("# TYPE leasehold_config_info gauge\n");
        text.push_str(&format!("leasehold_config_info{{digest=\"{}\"}} 1\n", self.engine.config_digest()));
        text.push_str("# HELP leasehold_config_mismatch 1 when this node's lease-relevant config differs from the one the Raft log last carried (the leader's).\n");
        text.push_str("# TYPE leasehold_config_mismatch gauge\n");
        let mismatch = u8::from(self.engine.config_mismatch() == Some(true));
        text.push_str(&format!("leasehold_config_mismatch {mismatch}\n"));
        text
    }
}

impl LeaseActor {
    /// Propose an admin command and answer once it is applied (or the proposal timeout passes).
    fn propose_admin(
        &mut self,
        proposal: Result<Proposal, ReservationError>,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Result<(), AdminError>> {
        let proposal = match proposal {
            Ok(proposal) => proposal,
            Err(refused) => return Box::pin(async move { Err(AdminError::Refused(refused)) }),
        };
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.admin_waiters.insert(proposal.tag, sender);
        self.queue_proposal(proposal, ctx);
        let timeout = Duration::from_millis(self.engine.config().limits.proposal_timeout_ms);
        Box::pin(async move {
            match tokio::time::timeout(timeout, receiver).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(AdminError::Unavailable("the node is shutting down".into())),
                Err(_) => Err(AdminError::Unavailable(format!("not committed within {timeout:?} (no quorum?)"))),
            }
        })
    }
}

impl Handler<PutReservation> for LeaseActor {
    type Result = ResponseFuture<Result<(), AdminError>>;

    fn handle(&mut self, msg: PutReservation, ctx: &mut Self::Context) -> Self::Result {
        let proposal = self.engine.propose_reservation(msg.0, self.clock.now_us());
        self.propose_admin(proposal, ctx)
    }
}

impl Handler<DeleteReservation> for LeaseActor {
    type Result = ResponseFuture<Result<(), AdminError>>;

    fn handle(&mut self, msg: DeleteReservation, ctx: &mut Self::Context) -> Self::Result {
        let proposal = self.engine.propose_unreservation(msg.0, self.clock.now_us());
        self.propose_admin(proposal, ctx)
    }
}

impl Handler<GetReservations> for LeaseActor {
    type Result = MessageResult<GetReservations>;

    fn handle(&mut self, _: GetReservations, _: &mut Self::Context) -> Self::Result {
        let mac_text = |mac: [u8; 6]| leasehold_cluster::ClientKey::Mac(mac).to_string();
        let id_text = |id: &[u8]| id.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        let from_config = self.engine.config().reservations.iter().map(|r| ReservationView {
            mac: r
                .mac
                .map(mac_text)
                .unwrap_or_else(|| format!("id:{}", id_text(r.client_id.as_deref().unwrap_or(&[])))),
            ip: r.ip.to_string(),
            hostname: r.hostname.clone(),
            boot_file: r.boot_file.clone(),
            source: "config",
        });
        let from_log = self.engine.table().reservations().map(|host| ReservationView {
            mac: mac_text(host.mac),
            ip: host.ip.to_string(),
            hostname: host.hostname.clone(),
            boot_file: host.boot_file.clone(),
            source: "api",
        });
        MessageResult(from_config.chain(from_log).collect())
    }
}

/// Serve by a new config (already checked, with no restart-only key changed: see
/// `engine::reload`).
#[derive(Message)]
#[rtype(result = "crate::engine::reload::Reconfigured")]
pub struct Reconfigure(pub Arc<leasehold_config::Config>);

impl Handler<Reconfigure> for LeaseActor {
    type Result = MessageResult<Reconfigure>;

    fn handle(&mut self, msg: Reconfigure, ctx: &mut Self::Context) -> Self::Result {
        let done = self.engine.reconfigure(msg.0, self.clock.now_us());
        info!(self.log, "config reloaded"; "pools" => done.pools, "classes" => done.classes,
            "reservations" => done.config_reservations, "offers_kept" => done.offers_kept,
            "offers_dropped" => done.offers_dropped);
        // New apply parameters (expiry grace, max leases) and the new digest go through the log now,
        // not at the next sweep.
        self.refresh_role();
        for proposal in [self.engine.propose_parameters(), self.engine.propose_config_digest()].into_iter().flatten() {
            self.queue_proposal(proposal, ctx);
        }
        MessageResult(done)
    }
}

/// `POST /v1/leases/import`: bind leases brought over from another server, each through the log.
#[derive(Message)]
#[rtype(result = "ImportReport")]
pub struct ImportLeases(pub Vec<crate::engine::import::ImportedLease>);

/// What an import did: leases bound (committed and applied), and each one refused with why.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub imported: usize,
    pub refused: Vec<crate::engine::import::ImportRefusal>,
}

impl Handler<ImportLeases> for LeaseActor {
    type Result = ResponseFuture<ImportReport>;

    fn handle(&mut self, msg: ImportLeases, ctx: &mut Self::Context) -> Self::Result {
        let (proposals, mut refused) = self.engine.propose_import(&msg.0, self.clock.now_us());
        let mut waiting = Vec::with_capacity(proposals.len());
        for proposal in proposals {
            let leased = match &proposal.command {
                leasehold_cluster::Command::Bind { ip, mac, .. } => (*ip, leasehold_cluster::ClientKey::Mac(*mac)),
                _ => continue,
            };
            let (sender, receiver) = tokio::sync::oneshot::channel();
            self.admin_waiters.insert(proposal.tag, sender);
            self.queue_proposal(proposal, ctx);
            waiting.push((leased, receiver));
        }
        info!(self.log, "importing leases"; "proposed" => waiting.len(), "refused" => refused.len());
        let timeout = Duration::from_millis(self.engine.config().limits.proposal_timeout_ms);
        Box::pin(async move {
            let mut imported = 0;
            for ((ip, mac), receiver) in waiting {
                let reason = match tokio::time::timeout(timeout, receiver).await {
                    Ok(Ok(Ok(()))) => {
                        imported += 1;
                        continue;
                    }
                    Ok(Ok(Err(AdminError::Refused(why)))) => why.to_string(),
                    Ok(Ok(Err(AdminError::Unavailable(why)))) => why,
                    Ok(Err(_)) => "the node is shutting down".to_string(),
                    Err(_) => format!("not committed within {timeout:?} (no quorum?)"),
                };
                refused.push(crate::engine::import::ImportRefusal { ip, mac: mac.to_string(), reason });
            }
            ImportReport { imported, refused }
        })
    }
}
