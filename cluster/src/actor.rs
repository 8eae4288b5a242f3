//! The raft actor: the thin actix shell around a `Replica<LogStore>`.
//!
//! It owns the replica, its tick timer and its disk; the node starts it on an Arbiter of its own so an
//! fsync never blocks the DHCP packet path. Proposals that arrive while a write is running queue in
//! the mailbox; the flush is a notified item, which actix runs only after draining the mailbox, so
//! they all land in one log entry and one fsync (group commit). Everything the replica decides goes
//! out by message: committed entries and snapshots to the state machine owner, the role to the
//! status recipient, Raft messages to the peer transport.
//!
//! Startup (and restart, which is recovery): `open` the log and rebuild the `LeaseTable` from its
//! snapshot, build a `Replica` with `applied = table.applied_index()`, then start the actor. raft-rs
//! hands the committed entries after the snapshot out again; the table applies them in order.
//!
//! What to do with a `Ready` is the `driver`'s, shared with the simulation: this actor gives it the
//! replica and its `Routes` (the recipients), and stops the node when it reports a storage error.
//!
//! A leadership transfer (`TransferLeader`: SIGTERM on the leader, `cluster transfer-leader`) runs
//! the replica's two steps with the state machine owner between them: the replica gives up its
//! leader lease, the status saying so goes to the status recipient by `send`, and only once that is
//! handled (the lease actor answers no broadcast any more) does the replica hand over. The request
//! is answered when this node learns of another leader, or at its deadline.

use std::path::Path;
use std::time::{Duration, Instant};

use actix::prelude::*;
use slog::{crit, debug, info, Logger};

use raft::eraftpb::Message;

use crate::driver::{self, MembershipChange, RaftShell, Received};
use crate::replica::{MemberProgress, Replica, TransferError};
use crate::storage::{DurableLog, LogStore};
use crate::transport::{PeerMessage, SendMessages, SetPeer};
use crate::{ClusterError, LeaseTable, Propose, RaftStatus, SnapshotTaken, ToStateMachine};

/// Mailbox capacity of the raft actor: proposals beyond it are refused by `try_send`.
pub const MAILBOX_CAPACITY: usize = 4_096;

/// Where the raft actor sends messages for peers (the peer transport), once it is started, and where
/// committed membership changes update the peer list.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ConnectPeers(pub Recipient<SendMessages>, pub Recipient<SetPeer>);

/// What `GET /v1/cluster` shows of the Raft group from this node.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterView {
    pub node_id: u64,
    pub term: u64,
    pub leader_id: Option<u64>,
    pub is_leader: bool,
    pub commit_index: u64,
    pub snapshot_index: u64,
    pub members: Vec<MemberProgress>,
    pub addresses: std::collections::BTreeMap<u64, std::net::SocketAddr>,
}

#[derive(Message)]
#[rtype(result = "ClusterView")]
pub struct GetClusterView;

/// Add (with its peer address) or remove a member. Answered once proposed; it takes effect when
/// committed (watch `GET /v1/cluster`). A node added joins as a learner and is promoted to voter by
/// the leader once caught up, unless `as_voter` (the quorum guard then counts it at once).
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct ChangeMembership {
    pub id: u64,
    /// `Some(addr)`: add this node reachable at `addr`; `None`: remove it.
    pub add: Option<std::net::SocketAddr>,
    pub as_voter: bool,
}

/// This node's lease-relevant config digest changed (a reload): its first 8 bytes, which it reports
/// to the leader from now on (`ReplicaConfig::config_digest`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetConfigDigest(pub u64);

impl Handler<SetConfigDigest> for RaftActor {
    type Result = ();

    fn handle(&mut self, SetConfigDigest(digest): SetConfigDigest, _: &mut Context<Self>) {
        self.replica.set_config_digest(digest);
    }
}

/// The files under this node's boot root digest to this now (its first 8 bytes; 0: no root), which
/// it reports to the leader from now on (`Replica::set_boot_root_digest`). Sent by the node's boot
/// root digest thread at start and whenever the files change.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetBootRootDigest(pub u64);

impl Handler<SetBootRootDigest> for RaftActor {
    type Result = ();

    fn handle(&mut self, SetBootRootDigest(digest): SetBootRootDigest, _: &mut Context<Self>) {
        self.replica.set_boot_root_digest(digest);
    }
}

/// Promote learner `id` to voter now (leader only), without waiting for it to be caught up.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct PromoteLearner {
    pub id: u64,
}

/// Hand leadership to voter `to`, or to the reachable voter whose log matches furthest (leader only).
/// Answered with the new leader's id once this node has learned of it, or an error: refused at once
/// (not the leader, not a voter, unreachable), or no new leader within `timeout`.
#[derive(Debug, Message)]
#[rtype(result = "Result<u64, TransferError>")]
pub struct TransferLeader {
    pub to: Option<u64>,
    pub timeout: Duration,
}

/// A `TransferLeader` handed over, waiting for another leader.
struct TransferWaiter {
    to: u64,
    started: Instant,
    deadline: Instant,
    /// The voter was told to campaign (seen at some settle since).
    told: bool,
    reply: tokio::sync::oneshot::Sender<Result<u64, TransferError>>,
}

/// Open the log under `data_dir` and rebuild the lease table from its latest snapshot (an empty
/// table when there is none). Start the replica with `applied = table.applied_index()`.
pub fn open(
    data_dir: &Path,
    fsync: bool,
    grace_ms: u64,
    max_leases: usize,
    logger: &Logger,
) -> Result<(LogStore, LeaseTable), ClusterError> {
    let store = LogStore::open(data_dir, fsync)?;
    let table = driver::open_table(&store, grace_ms, max_leases)?;
    info!(logger, "raft log opened"; "path" => %store.path().display(), "snapshot_index" => store.snapshot_index(),
        "leases" => table.len());
    Ok((store, table))
}

/// Internal: run the replica now (after the mailbox is drained).
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Flush;

pub struct RaftActor {
    replica: Replica<LogStore>,
    routes: Routes,
    tick_interval: Duration,
    flush_scheduled: bool,
    transfers: Vec<TransferWaiter>,
    logger: Logger,
}

/// Where the raft actor sends what the replica decides (the driver's `RaftShell`).
struct Routes {
    node_id: u64,
    state_machine: Recipient<ToStateMachine>,
    status: Recipient<RaftStatus>,
    peers: Option<Recipient<SendMessages>>,
    peer_list: Option<Recipient<SetPeer>>,
    /// Peer addresses: the configured ones, then what membership changes said.
    addresses: std::collections::BTreeMap<u64, std::net::SocketAddr>,
    logger: Logger,
}

impl RaftShell for Routes {
    fn send(&mut self, messages: Vec<Message>) {
        match &self.peers {
            Some(peers) => peers.do_send(SendMessages(messages)),
            None => debug!(self.logger, "no peer transport: raft messages dropped"; "count" => messages.len()),
        }
    }

    // do_send: mail for the state machine and the status is never dropped for a full mailbox; the
    // proposer bounds what is in flight.
    fn to_state_machine(&mut self, mail: ToStateMachine) {
        self.state_machine.do_send(mail);
    }

    fn status(&mut self, status: RaftStatus) {
        self.status.do_send(status);
    }

    fn membership(&mut self, MembershipChange { id, added, addr }: MembershipChange) {
        info!(self.logger, "membership changed"; "id" => id, "added" => added, "addr" => ?addr);
        match (added, addr) {
            (true, Some(addr)) => {
                self.addresses.insert(id, addr);
            }
            (false, _) => {
                self.addresses.remove(&id);
            }
            // A learner promoted to voter (its address came with its addition): the link stays.
            (true, None) => return,
        }
        if id == self.node_id {
            return;
        }
        if let Some(peer_list) = &self.peer_list {
            peer_list.do_send(SetPeer { id, addr: if added { addr } else { None } });
        }
    }
}

impl RaftActor {
    pub fn new(
        replica: Replica<LogStore>,
        state_machine: Recipient<ToStateMachine>,
        status: Recipient<RaftStatus>,
        tick_interval: Duration,
        logger: Logger,
    ) -> Self {
        let routes = Routes {
            node_id: replica.node_id(),
            state_machine,
            status,
            peers: None,
            peer_list: None,
            addresses: std::collections::BTreeMap::new(),
            logger: logger.clone(),
        };
        RaftActor { replica, routes, tick_interval, flush_scheduled: false, transfers: Vec::new(), logger }
    }

    /// The configured peer addresses, for `GET /v1/cluster`.
    pub fn with_addresses(mut self, addresses: std::collections::BTreeMap<u64, std::net::SocketAddr>) -> Self {
        self.routes.addresses = addresses;
        self
    }

    /// Where Raft messages for peers go (the peer transport). Without one they are dropped, which is
    /// right only for a cluster of one.
    pub fn with_peers(mut self, peers: Recipient<SendMessages>) -> Self {
        self.routes.peers = Some(peers);
        self
    }

    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            ctx.notify(Flush);
        }
    }

    /// One `Ready` (its write is this actor's fsync), then the rest after the mailbox.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if let Err(e) = driver::step(&mut self.replica, &mut self.routes) {
            return self.halt(ctx, e);
        }
        if self.replica.has_ready() {
            self.schedule_flush(ctx);
        }
        self.settle_transfers();
    }

    /// Answer the transfers waiting for another leader: it is known, or the deadline passed.
    fn settle_transfers(&mut self) {
        if self.transfers.is_empty() {
            return;
        }
        let status = self.replica.status();
        let new_leader = status.leader_id.filter(|id| !status.is_leader && *id != status.node_id);
        let now = Instant::now();
        let told = self.replica.told_to_campaign();
        for mut waiter in std::mem::take(&mut self.transfers) {
            waiter.told |= told;
            let waited_ms = u64::try_from(now.duration_since(waiter.started).as_millis()).unwrap_or(u64::MAX);
            let result = match new_leader {
                Some(leader) => {
                    info!(self.logger, "leadership handed over"; "to" => leader, "term" => status.term,
                        "took_ms" => waited_ms);
                    Ok(leader)
                }
                None if now >= waiter.deadline => {
                    Err(TransferError::TimedOut { to: waiter.to, waited_ms, told: waiter.told })
                }
                None => {
                    self.transfers.push(waiter);
                    continue;
                }
            };
            let _ = waiter.reply.send(result);
        }
    }

    /// A node that cannot persist must not serve: stop the actor and the system.
    fn halt(&mut self, ctx: &mut Context<Self>, error: ClusterError) {
        crit!(self.logger, "the raft log cannot be written or read, stopping the node"; "error" => %error);
        // The asynchronous logger may not flush before the exit: say it on stderr too.
        eprintln!("leasehold: stopping the node: {error}");
        ctx.stop();
        System::current().stop_with_code(1);
        // The node's main future waits for a signal, not for the system: end the process here so
        // nothing keeps answering clients without a working log.
        std::process::exit(1);
    }
}

impl Actor for RaftActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        ctx.run_interval(self.tick_interval, |actor, ctx| {
            actor.replica.tick(crate::monotonic_us());
            if actor.replica.has_ready() {
                actor.schedule_flush(ctx);
            }
            actor.settle_transfers();
        });
        // A cluster of one campaigned in `Replica::new`: become leader and replay without waiting.
        self.schedule_flush(ctx);
    }
}

impl Handler<Flush> for RaftActor {
    type Result = ();

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) {
        self.flush_scheduled = false;
        self.flush(ctx);
    }
}

impl Handler<Propose> for RaftActor {
    type Result = ();

    fn handle(&mut self, Propose(proposals): Propose, ctx: &mut Context<Self>) {
        let count = proposals.len();
        match driver::propose(&mut self.replica, &mut self.routes, proposals) {
            Ok(()) => self.schedule_flush(ctx),
            Err(reason) => debug!(self.logger, "proposals refused"; "reason" => %reason, "count" => count),
        }
    }
}

impl Handler<ConnectPeers> for RaftActor {
    type Result = ();

    fn handle(&mut self, ConnectPeers(peers, peer_list): ConnectPeers, _: &mut Context<Self>) {
        self.routes.peers = Some(peers);
        self.routes.peer_list = Some(peer_list);
    }
}

impl Handler<GetClusterView> for RaftActor {
    type Result = MessageResult<GetClusterView>;

    fn handle(&mut self, _: GetClusterView, _: &mut Context<Self>) -> Self::Result {
        let status = self.replica.status();
        MessageResult(ClusterView {
            node_id: status.node_id,
            term: status.term,
            leader_id: status.leader_id,
            is_leader: status.is_leader,
            commit_index: status.commit_index,
            snapshot_index: self.replica.log().snapshot_index(),
            members: self.replica.members(),
            addresses: self.routes.addresses.clone(),
        })
    }
}

impl Handler<ChangeMembership> for RaftActor {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: ChangeMembership, ctx: &mut Context<Self>) -> Self::Result {
        let context = msg.add.map(|addr| addr.to_string().into_bytes()).unwrap_or_default();
        let proposed = match (msg.add, msg.as_voter) {
            (Some(_), false) => self.replica.propose_learner(msg.id, context),
            (add, _) => self.replica.propose_membership(msg.id, add.is_some(), context),
        };
        match proposed {
            Ok(()) => {
                info!(self.logger, "membership change proposed"; "id" => msg.id, "add" => ?msg.add,
                    "as_voter" => msg.as_voter);
                self.schedule_flush(ctx);
                Ok(())
            }
            Err(e) => Err(self.membership_refusal(e)),
        }
    }
}

impl Handler<PromoteLearner> for RaftActor {
    type Result = Result<(), String>;

    fn handle(&mut self, PromoteLearner { id }: PromoteLearner, ctx: &mut Context<Self>) -> Self::Result {
        match self.replica.propose_promotion(id) {
            Ok(()) => {
                info!(self.logger, "promotion to voter proposed"; "id" => id);
                self.schedule_flush(ctx);
                Ok(())
            }
            Err(e) => Err(self.membership_refusal(e)),
        }
    }
}

impl RaftActor {
    fn membership_refusal(&self, e: ClusterError) -> String {
        match e {
            ClusterError::NotLeader => match self.replica.status().leader_id {
                Some(leader) => format!("not the leader; ask node {leader}"),
                None => "no leader: the cluster has no quorum".to_string(),
            },
            e => e.to_string(),
        }
    }
}

impl Handler<TransferLeader> for RaftActor {
    type Result = ResponseActFuture<Self, Result<u64, TransferError>>;

    fn handle(&mut self, TransferLeader { to, timeout }: TransferLeader, _: &mut Context<Self>) -> Self::Result {
        let started = Instant::now();
        let to = match self.replica.yield_leadership(to) {
            Ok(to) => to,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        // The status without the lease, by `send`: the lease actor's mailbox is in order, so once it has
        // handled this it answers no broadcast. (A closed mailbox answers nothing either.)
        let confirmed = self.routes.status.send(self.replica.status());
        let (reply, answer) = tokio::sync::oneshot::channel();
        Box::pin(confirmed.into_actor(self).then(move |_, actor, ctx| {
            match actor.replica.hand_over() {
                Ok(to) => {
                    let deadline = started + timeout;
                    actor.transfers.push(TransferWaiter { to, started, deadline, told: false, reply });
                    actor.schedule_flush(ctx);
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
            async move {
                answer
                    .await
                    .unwrap_or_else(|_| Err(TransferError::Abandoned(format!("to node {to}: the raft actor stopped"))))
            }
            .into_actor(actor)
        }))
    }
}

impl Handler<PeerMessage> for RaftActor {
    type Result = ();

    fn handle(&mut self, PeerMessage(message): PeerMessage, ctx: &mut Context<Self>) {
        let from = message.from;
        match driver::receive(&mut self.replica, message) {
            Ok(Received::Stepped) => self.schedule_flush(ctx),
            Ok(Received::Dropped(ClusterError::Halted)) => {}
            Ok(Received::Dropped(e)) => debug!(self.logger, "peer message dropped"; "from" => from, "error" => %e),
            Err(e) => self.halt(ctx, e),
        }
    }
}

impl Handler<SnapshotTaken> for RaftActor {
    type Result = ();

    fn handle(&mut self, SnapshotTaken { applied_index, data }: SnapshotTaken, ctx: &mut Context<Self>) {
        if let Err(e) = self.replica.take_snapshot(applied_index, data) {
            self.halt(ctx, e);
        }
    }
}
