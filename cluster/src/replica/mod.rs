//! The sans-IO Raft replica: a raft-rs `RawNode` over a `DurableLog`, and its Ready loop.
//!
//! This module owns the Ready loop: proposals buffered and proposed (`propose`), ticks, peer
//! messages (`step`), and the handling of one `Ready` in two calls, with the shell's write between
//! them, in raft-rs's documented order (persist, send, apply, advance):
//!
//! 1. `advance` proposes what is buffered and takes the next `Ready`. It returns a `Persist`: the
//!    messages that may leave before the write (a leader's, Raft thesis §10.2.1) and the `LogWrite`
//!    (snapshot, entries, hard state, `must_sync`). The replica performs no I/O for it.
//! 2. The shell makes the write durable on the log (`log_mut().write_ready`, one batch, one fsync)
//!    and hands it back to `persisted` — or the error the write failed with, which halts the
//!    replica: a node that cannot persist must not serve.
//! 3. `persisted` finishes the `Ready` (restore the snapshot, hand out committed entries, the
//!    persisted messages, raft-rs's `advance`, then the `LightReady`) and returns the `Actions` for
//!    the shell to carry out.
//!
//! With it: the tracking of this leader's proposals to their index (`in_flight`), configuration
//! changes and snapshots (`take_snapshot`). Proposals that arrive between two `advance` calls become
//! one log entry, and the `Ready` holding it one write with one fsync: the group commit. Nothing
//! here reads a clock, a random source or the network: the shell calls `tick`, and a simulation
//! pins the election timeout.
//!
//! A few writes to the log stay inside the replica, each rare and each needed durable before the
//! replica goes on: the configuration at start (`set_conf_state` for a fresh log) and after a
//! committed configuration change is applied (raft-rs's `apply_conf_change` gives it only then, in
//! the middle of handing out entries); the catch-up mark (`set_catch_up`, which must be on disk
//! before the vote guard relaxes or tightens); and `take_snapshot`'s `save_snapshot`, which the
//! shell asks for itself, outside the Ready loop. The commit index of a `LightReady` is only noted
//! (`note_commit`) and written with the next `LogWrite`.
//!
//! Beside it: `config` (`ReplicaConfig` and the limits it sets on raft-rs) and `actions` (what
//! the replica gives its shell: `Persist`, `LogWrite`, `Actions`, `Refused`). The safety extensions
//! around raft-rs live beside it too, one module each:
//! - `lease`: the leader lease (who may answer broadcasts, and until when).
//! - `catch_up`: the vote guard of a log that started empty, and logs that lost entries.
//! - `reports`: members' reports of their own state, and the leader's view of the members.
//! - `transfer`: leadership transfer, the lease given up before another voter is told to campaign.

use std::collections::BTreeMap;

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, ConfState, Entry, EntryType, Message, MessageType};
use raft::{RawNode, Ready, StateRole};
use slog::{debug, info, warn, Logger};

use crate::lease::{decode_entry, encode_entry};
use crate::storage::DurableLog;
use crate::{ClusterError, CommittedEntry, Proposal, ProposalTag, RaftStatus};

mod actions;
mod catch_up;
mod config;
mod lease;
mod membership;
mod reports;
mod transfer;

pub use actions::{Actions, LogWrite, Persist, Refused};
use catch_up::CatchUp;
pub use config::ReplicaConfig;
use lease::LeaderLease;
use membership::HeardFrom;
pub use membership::{check_membership_change, MembershipChange, PROMOTE_WITHIN_ENTRIES};
use reports::PeerReport;
pub use reports::{admin_addr_from_number, admin_addr_number, MemberProgress};
use transfer::Handover;
pub use transfer::TransferError;

/// Proposals above this encoded size are split over several log entries.
pub const MAX_ENTRY_BYTES: usize = 1024 * 1024;
/// Proposals buffered between two `advance` calls; more are refused with `Overloaded`.
pub const MAX_BUFFERED_PROPOSALS: usize = 65_536;

/// A `Ready` between `advance` and `persisted`, and what `advance` already decided.
struct Pending {
    ready: Option<Ready>,
    actions: Actions,
}

/// One Raft member over the durable log `L`.
pub struct Replica<L: DurableLog> {
    node: RawNode<L>,
    node_id: u64,
    /// Proposals waiting for the next `advance`.
    buffered: Vec<Proposal>,
    /// Entries this leader proposed in this `advance` (data and tags), in order, until their index is
    /// known. Matched by data: entries forwarded by followers interleave with ours.
    proposed: Vec<(Vec<u8>, Vec<ProposalTag>)>,
    /// Our proposed entries not yet committed: index -> (term, tags).
    in_flight: BTreeMap<u64, (u64, Vec<ProposalTag>)>,
    /// Configurations by the index they took effect at, oldest first, to give a snapshot the
    /// configuration in force at its index (the table may lag behind this replica's apply).
    conf_history: Vec<(u64, ConfState)>,
    last_status: Option<RaftStatus>,
    catch_up: CatchUp,
    /// Messages this layer sends on its own (not raft-rs's), out with the next `advance`.
    outbox: Vec<Message>,
    /// Ticks since start.
    ticks: u64,
    /// The time given to the last `tick`.
    now_us: u64,
    lease: LeaderLease,
    /// A leadership transfer this leader began (`transfer`).
    handover: Option<Handover>,
    /// The last thing each follower reported about itself (leader only).
    peer_reports: BTreeMap<u64, PeerReport>,
    /// This node's config digest, as it reports it (`ReplicaConfig::config_digest`).
    config_digest: u64,
    /// This node's boot-root digest, as it reports it (`set_boot_root_digest`; 0: no root, or not
    /// digested yet).
    boot_root_digest: u64,
    /// Where this node's admin API listens, as it reports it (`ReplicaConfig::admin_addr`).
    admin_addr: u64,
    /// The last leader's report of itself (follower only): from whom, and what.
    leader_report: Option<(u64, reports::LeaderReport)>,
    /// When each follower last answered (leader only), for the membership guard.
    heard_from: HeardFrom,
    /// One election timeout (the shortest), on the clock of `tick`.
    election_timeout_us: u64,
    /// Set by `advance`, taken by `persisted`.
    pending: Option<Pending>,
    halted: bool,
    logger: Logger,
}

impl<L: DurableLog> std::fmt::Debug for Replica<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("status", &self.status())
            .field("buffered", &self.buffered.len())
            .field("in_flight", &self.in_flight.len())
            .field("write_pending", &self.pending.is_some())
            .field("halted", &self.halted)
            .finish_non_exhaustive()
    }
}

impl<L: DurableLog> Replica<L> {
    /// Start a member on `log`. A fresh log is bootstrapped with `config.voters`; a member that is
    /// the only voter campaigns at once and is leader after the first `advance`.
    pub fn new(config: &ReplicaConfig, mut log: L, logger: &Logger) -> Result<Self, ClusterError> {
        let logger = logger.new(slog::o!("raft_id" => config.node_id));
        let raft_config = config.raft_config();
        raft_config.validate()?;
        let state = log.initial_state()?;
        let (first_index, last_index) = (log.first_index()?, log.last_index()?);
        let mut conf_state = state.conf_state.clone();
        if !state.initialized() && config.join {
            // Joining a running cluster: start from the cluster's original voters (without this
            // node) and wait for the leader, which replays the log from its start — including the
            // change that adds this node — or sends a snapshot that carries the configuration.
            let voters: Vec<u64> = config.voters.iter().copied().filter(|id| *id != config.node_id).collect();
            conf_state = ConfState { voters, ..ConfState::default() };
            info!(logger, "fresh raft log, joining a running cluster"; "original_voters" => ?conf_state.voters);
            log.set_conf_state(0, conf_state.clone())?;
        } else if !state.initialized() {
            if last_index != 0 || log.snapshot_index() != 0 {
                return Err(ClusterError::Corrupt(format!(
                    "raft log holds entries up to {last_index} but no configuration"
                )));
            }
            let voters = if config.voters.is_empty() { vec![config.node_id] } else { config.voters.clone() };
            conf_state = ConfState { voters, ..ConfState::default() };
            info!(logger, "bootstrapping a fresh raft log"; "voters" => ?conf_state.voters);
            log.set_conf_state(0, conf_state.clone())?;
        }
        // raft-rs requires first_index - 1 <= applied <= commit; outside, the table and the log
        // do not belong together (a missing snapshot, or a table from another data directory).
        if config.applied + 1 < first_index || config.applied > state.hard_state.commit {
            return Err(ClusterError::Corrupt(format!(
                "state machine applied index {} outside the log's {}..={} (commit {})",
                config.applied,
                first_index - 1,
                last_index,
                state.hard_state.commit
            )));
        }
        let conf_history = vec![(log.conf_index(), conf_state.clone())];
        let alone = conf_state.voters == [config.node_id]
            && conf_state.voters_outgoing.is_empty()
            && conf_state.learners.is_empty();
        let catch_up = CatchUp::open(&mut log, alone, state.initialized(), config.join, &logger)?;
        let mut node = RawNode::new(&raft_config, log, &logger)?;
        if alone {
            node.campaign()?;
        }
        info!(logger, "raft replica started";
            "applied" => config.applied, "first_index" => first_index, "last_index" => last_index,
            "commit" => state.hard_state.commit, "term" => state.hard_state.term);
        Ok(Replica {
            node,
            node_id: config.node_id,
            buffered: Vec::new(),
            proposed: Vec::new(),
            in_flight: BTreeMap::new(),
            conf_history,
            last_status: None,
            catch_up,
            outbox: Vec::new(),
            ticks: 0,
            now_us: 0,
            lease: LeaderLease::new(config.election_ticks, config.heartbeat_ticks, config.tick_us),
            handover: None,
            peer_reports: BTreeMap::new(),
            config_digest: config.config_digest,
            boot_root_digest: 0,
            admin_addr: config.admin_addr,
            leader_report: None,
            heard_from: HeardFrom::default(),
            election_timeout_us: (config.election_ticks as u64).saturating_mul(config.tick_us),
            pending: None,
            halted: false,
            logger,
        })
    }

    /// Buffer proposals for the next `advance`. A follower that knows the leader forwards them to it
    /// (raft-rs `MsgPropose`); its waiters are answered when the entry commits and is applied here,
    /// matched by tag. Refused at once when no leader is known (no quorum: the proposer falls back to
    /// the minority-side rules) or too many are buffered.
    pub fn propose(&mut self, proposals: Vec<Proposal>) -> Result<(), Box<Refused>> {
        let reason = if self.halted {
            ClusterError::Halted
        } else if self.status().leader_id.is_none() {
            ClusterError::NotLeader
        } else if self.buffered.len() + proposals.len() > MAX_BUFFERED_PROPOSALS {
            ClusterError::Overloaded { limit: MAX_BUFFERED_PROPOSALS }
        } else {
            self.buffered.extend(proposals);
            return Ok(());
        };
        Err(Box::new(Refused { reason, proposals }))
    }

    /// A snapshot for `to` left this node: raft-rs may move the follower back to probing (a lost
    /// snapshot is then sent again) instead of pausing it until an answer that may never come.
    pub fn report_snapshot_sent(&mut self, to: u64) {
        self.node.report_snapshot(to, raft::SnapshotStatus::Finish);
    }

    /// Advance Raft's logical clock by one tick (heartbeats, election timeouts); `now_us` is a
    /// monotonic clock (`monotonic_us`), read by the caller, for the leader lease.
    pub fn tick(&mut self, now_us: u64) {
        debug_assert!(self.pending.is_none(), "tick between advance and persisted");
        if self.halted {
            return;
        }
        self.node.tick();
        self.ticks += 1;
        self.now_us = now_us;
        self.tick_handover();
        self.tick_lease();
        if let Some(id) = self.promote_caught_up_learners() {
            slog::info!(self.logger, "learner caught up: promotion to voter proposed"; "id" => id);
        }
    }

    /// Feed a message from a peer.
    pub fn step(&mut self, message: Message) -> Result<(), ClusterError> {
        if self.halted {
            return Err(ClusterError::Halted);
        }
        self.no_ready_pending("step between advance and persisted")?;
        if message.to != self.node_id {
            return Err(ClusterError::Corrupt(format!("message for {} delivered to {}", message.to, self.node_id)));
        }
        let mut message = message;
        if matches!(message.get_msg_type(), MessageType::MsgAppendResponse | MessageType::MsgHeartbeatResponse) {
            self.note_heard(message.from);
        }
        self.take_report(&mut message);
        if !self.screen(&mut message)? {
            return Ok(());
        }
        self.node.step(message)?;
        Ok(())
    }

    /// raft-rs takes no input between a `Ready` and its `advance`: nothing but the write may come
    /// between `advance` and `persisted`.
    fn no_ready_pending(&self, what: &'static str) -> Result<(), ClusterError> {
        match self.pending {
            Some(_) => Err(ClusterError::OutOfOrder(what)),
            None => Ok(()),
        }
    }

    /// True when an `advance` would do something (never while a write is pending: `persisted`).
    pub fn has_ready(&self) -> bool {
        !self.halted
            && self.pending.is_none()
            && (!self.buffered.is_empty()
                || !self.outbox.is_empty()
                || self.node.has_ready()
                || self.last_status.is_some_and(|s| s.lease_until_us != self.lease_until_us()))
    }

    pub fn is_leader(&self) -> bool {
        self.node.status().ss.raft_state == StateRole::Leader
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    pub fn status(&self) -> RaftStatus {
        let status = self.node.status();
        RaftStatus {
            node_id: self.node_id,
            term: status.hs.term,
            leader_id: (status.ss.leader_id != raft::INVALID_ID).then_some(status.ss.leader_id),
            is_leader: status.ss.raft_state == StateRole::Leader,
            lease_until_us: self.lease_until_us(),
            commit_index: status.hs.commit,
        }
    }

    /// Propose adding (`addr` given: as a voter) or removing a member (raft-rs ConfChangeV2). Only the
    /// leader can; the change takes effect when committed. `context` travels with the change (the
    /// new member's address, so every node's transport learns it). A change that would leave no
    /// voter, or no reachable quorum, is refused (`membership`).
    pub fn propose_membership(&mut self, id: u64, add: bool, context: Vec<u8>) -> Result<(), ClusterError> {
        if self.halted {
            return Err(ClusterError::Halted);
        }
        self.no_ready_pending("membership change between advance and persisted")?;
        if !self.is_leader() {
            return Err(ClusterError::NotLeader);
        }
        let change = if add { MembershipChange::Add(id) } else { MembershipChange::Remove(id) };
        check_membership_change(&self.voters(), &self.reachable_voters(), change)
            .map_err(ClusterError::MembershipRefused)?;
        let mut single = raft::eraftpb::ConfChangeSingle { node_id: id, ..Default::default() };
        single.set_change_type(if add {
            raft::eraftpb::ConfChangeType::AddNode
        } else {
            raft::eraftpb::ConfChangeType::RemoveNode
        });
        let mut change = ConfChangeV2::default();
        change.set_changes(vec![single].into());
        change.context = context.into();
        self.node.propose_conf_change(Vec::new(), change)?;
        Ok(())
    }

    /// The durable log (read-only: statistics, the latest snapshot).
    pub fn log(&self) -> &L {
        self.node.store()
    }

    /// The durable log, for the shell to make `advance`'s `LogWrite` durable on. Nothing else may
    /// write to it: raft-rs reads it as its `Storage`.
    pub fn log_mut(&mut self) -> &mut L {
        self.node.mut_store()
    }

    /// Propose what is buffered, then begin at most one `Ready`: the messages that may leave before
    /// its write (a leader's, Raft thesis §10.2.1) and the write itself. The shell makes the write
    /// durable on the log (`log_mut().write_ready`) and then calls `persisted`, which finishes the
    /// `Ready`; nothing else may be called on the replica in between. Call again while `has_ready`.
    pub fn advance(&mut self) -> Result<Persist, ClusterError> {
        if self.halted {
            return Err(ClusterError::Halted);
        }
        if self.pending.is_some() {
            self.halted = true;
            return Err(ClusterError::OutOfOrder("advance before the last write was persisted"));
        }
        let mut actions = Actions::default();
        actions.messages.append(&mut self.outbox);
        self.propose_buffered(&mut actions);
        let mut persist = Persist::default();
        let ready = self.node.has_ready().then(|| {
            let mut ready = self.node.ready();
            self.note_read_states(ready.take_read_states());
            // A leader may send before persisting (Raft thesis 10.2.1); its own entry counts once
            // durable. A follower's messages (acknowledgements, votes) wait for the write.
            persist.messages = ready.take_messages();
            self.note_timeout_now(&persist.messages);
            self.drop_own_vote_requests(&mut persist.messages);
            self.stamp_reports(&mut persist.messages);
            persist.write = Some(LogWrite {
                snapshot: (!ready.snapshot().is_empty()).then(|| ready.snapshot().clone()),
                entries: ready.take_entries(),
                hard_state: ready.hs().cloned(),
                must_sync: ready.must_sync(),
                number: ready.number(),
            });
            ready
        });
        self.pending = Some(Pending { ready, actions });
        Ok(persist)
    }

    /// Finish what `advance` began, once its write is durable: `written` is the write it gave back
    /// (`None` when it gave none), or the error writing it failed with. Hands out committed entries,
    /// advances raft-rs and handles the `LightReady`. An `Err` is a storage failure (the one passed
    /// in, or a later one): the replica halts and the node must stop serving.
    pub fn persisted(&mut self, written: Result<Option<LogWrite>, ClusterError>) -> Result<Actions, ClusterError> {
        if self.halted {
            return Err(ClusterError::Halted);
        }
        let result = self.finish(written);
        if result.is_err() {
            self.halted = true;
        }
        result
    }

    fn finish(&mut self, written: Result<Option<LogWrite>, ClusterError>) -> Result<Actions, ClusterError> {
        let write = written?;
        let Some(Pending { ready, mut actions }) = self.pending.take() else {
            return Err(ClusterError::OutOfOrder("persisted without an advance"));
        };
        match (ready, write) {
            (Some(ready), Some(write)) if write.number == ready.number() => {
                self.handle_persisted(ready, write, &mut actions)?;
                self.check_caught_up()?;
                self.drop_own_vote_requests(&mut actions.messages);
                self.renew_lease_if_lost();
            }
            (None, None) => {}
            _ => return Err(ClusterError::OutOfOrder("persisted with another Ready's write")),
        }
        self.note_timeout_now(&actions.messages);
        self.stamp_reports(&mut actions.messages);
        // Tags proposed but not found in the Ready (cannot happen with raft-rs 0.7; never ack them).
        if !self.proposed.is_empty() {
            warn!(self.logger, "proposed entries missing from the ready"; "count" => self.proposed.len());
            actions.rejected.extend(self.proposed.drain(..).flat_map(|(_, tags)| tags));
        }
        let status = self.status();
        if self.last_status != Some(status) {
            self.last_status = Some(status);
            actions.status = Some(status);
        }
        Ok(actions)
    }

    fn propose_buffered(&mut self, actions: &mut Actions) {
        if self.buffered.is_empty() {
            return;
        }
        let proposals = std::mem::take(&mut self.buffered);
        let leader = self.is_leader();
        if !leader && self.status().leader_id.is_none() {
            debug!(self.logger, "no leader with proposals buffered"; "count" => proposals.len());
            actions.rejected.extend(proposals.iter().map(|p| p.tag));
            return;
        }
        let mut chunks = Vec::new();
        encode_chunks(&proposals, &mut chunks);
        for (data, tags) in chunks {
            // Only a leader's own entries are tracked to their index; a forwarded proposal may be lost
            // on the way, and its waiter times out (the client retransmits).
            let tracked = leader.then(|| data.clone());
            match self.node.propose(Vec::new(), data) {
                Ok(()) => {
                    if let Some(data) = tracked {
                        self.proposed.push((data, tags));
                    }
                }
                Err(e) => {
                    warn!(self.logger, "proposal dropped by raft"; "error" => %e, "count" => tags.len());
                    actions.rejected.extend(tags);
                }
            }
        }
    }

    /// The rest of a `Ready` whose write is durable, in raft-rs's order: the snapshot restored,
    /// committed entries handed out, the persisted messages, `advance`, then the `LightReady`.
    fn handle_persisted(
        &mut self,
        mut ready: Ready,
        write: LogWrite,
        actions: &mut Actions,
    ) -> Result<(), ClusterError> {
        let LogWrite { snapshot, entries, .. } = write;
        if let Some(snapshot) = snapshot {
            let meta = snapshot.get_metadata();
            info!(self.logger, "restored a snapshot from the leader"; "index" => meta.index, "term" => meta.term);
            // The log was replaced: none of our uncommitted entries is known to survive.
            actions.rejected.extend(std::mem::take(&mut self.in_flight).into_values().flat_map(|(_, tags)| tags));
            self.conf_history = vec![(meta.index, meta.get_conf_state().clone())];
            actions.restore = Some((meta.index, snapshot.data.to_vec()));
        }
        let term = self.node.status().hs.term;
        self.note_appended(&entries, term, actions);

        self.hand_out(ready.take_committed_entries(), actions)?;
        actions.messages.extend(ready.take_persisted_messages());

        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.node.mut_store().note_commit(commit);
        }
        actions.messages.extend(light.take_messages());
        self.hand_out(light.take_committed_entries(), actions)?;
        self.node.advance_apply();
        Ok(())
    }

    /// Track where our proposals landed, and drop the ones whose entries were just overwritten.
    fn note_appended(&mut self, entries: &[Entry], term: u64, actions: &mut Actions) {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return;
        };
        let overwritten: Vec<u64> = self
            .in_flight
            .range(first.index..)
            .filter(|(&index, (proposed_term, _))| {
                index > last.index || entries[(index - first.index) as usize].term != *proposed_term
            })
            .map(|(&index, _)| index)
            .collect();
        for index in overwritten {
            if let Some((_, tags)) = self.in_flight.remove(&index) {
                actions.rejected.extend(tags);
            }
        }
        // A leader's new entries of its own term with data include what it proposed in this advance,
        // in order, interleaved with entries forwarded by followers: match them by their bytes.
        let mut proposed = std::mem::take(&mut self.proposed).into_iter().peekable();
        for entry in entries {
            let Some((data, _)) = proposed.peek() else { break };
            if entry.term == term && entry.get_entry_type() == EntryType::EntryNormal && entry.data[..] == data[..] {
                if let Some((_, tags)) = proposed.next() {
                    self.in_flight.insert(entry.index, (entry.term, tags));
                }
            }
        }
        self.proposed = proposed.collect();
    }

    /// Turn committed Raft entries into `CommittedEntry`s, applying configuration changes.
    fn hand_out(&mut self, entries: Vec<Entry>, actions: &mut Actions) -> Result<(), ClusterError> {
        for entry in entries {
            self.settle_in_flight(entry.index, entry.term, actions);
            let changes_membership = entry.get_entry_type() != EntryType::EntryNormal;
            let mut membership = Vec::new();
            let proposals = match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => Vec::new(),
                EntryType::EntryNormal => decode_entry(&entry.data)
                    .map_err(|e| ClusterError::Corrupt(format!("committed entry {}: {e}", entry.index)))?,
                EntryType::EntryConfChange => {
                    let change = ConfChange::parse_from_bytes(&entry.data)
                        .map_err(|e| ClusterError::Corrupt(format!("conf change at {}: {e}", entry.index)))?;
                    self.apply_conf_change(entry.index, AnyConfChange::V1(change))?;
                    Vec::new()
                }
                EntryType::EntryConfChangeV2 => {
                    let change = ConfChangeV2::parse_from_bytes(&entry.data)
                        .map_err(|e| ClusterError::Corrupt(format!("conf change at {}: {e}", entry.index)))?;
                    let addr = std::str::from_utf8(&change.context).ok().and_then(|text| text.parse().ok());
                    for single in change.get_changes() {
                        let added = single.get_change_type() != raft::eraftpb::ConfChangeType::RemoveNode;
                        membership.push(crate::MembershipChange {
                            id: single.node_id,
                            added,
                            addr: addr.filter(|_| added),
                        });
                    }
                    actions.membership.extend(membership.iter().cloned());
                    self.apply_conf_change(entry.index, AnyConfChange::V2(change))?;
                    Vec::new()
                }
            };
            actions.committed.push(CommittedEntry { index: entry.index, proposals, changes_membership, membership });
        }
        Ok(())
    }

    /// The entry at `index` with `term` is committed: our proposals at or before it are settled.
    fn settle_in_flight(&mut self, index: u64, term: u64, actions: &mut Actions) {
        while let Some(entry) = self.in_flight.first_entry() {
            if *entry.key() > index {
                break;
            }
            let at = *entry.key();
            let (proposed_term, tags) = entry.remove();
            if at < index || proposed_term != term {
                actions.rejected.extend(tags);
            }
        }
    }

    fn apply_conf_change(&mut self, index: u64, change: AnyConfChange) -> Result<(), ClusterError> {
        if index <= self.node.store().conf_index() {
            // Replayed after a restart: the stored configuration already includes it.
            return Ok(());
        }
        let conf_state = match change {
            AnyConfChange::V1(change) => self.node.apply_conf_change(&change)?,
            AnyConfChange::V2(change) => self.node.apply_conf_change(&change)?,
        };
        info!(self.logger, "configuration changed"; "index" => index, "voters" => ?conf_state.voters,
            "learners" => ?conf_state.learners);
        self.node.mut_store().set_conf_state(index, conf_state.clone())?;
        let removed_leader = self.is_leader() && !conf_state.voters.contains(&self.node_id);
        self.conf_history.push((index, conf_state));
        if removed_leader {
            // raft-rs keeps a leader that applied its own removal leading (`post_conf_change`: "untested
            // at the time of writing"), and its next commit then panics on its own missing progress
            // (`maybe_commit`). Step down, in this term, as etcd's leaders do once their removal is
            // applied (Raft thesis §4.2.2): the remaining voters elect one of their own. Not promotable
            // any more, this node never campaigns.
            warn!(self.logger, "this leader applied its own removal: stepping down"; "index" => index);
            let term = self.node.raft.term;
            self.node.raft.become_follower(term, raft::INVALID_ID);
        }
        Ok(())
    }

    /// The state machine took a snapshot at `applied_index`: store it and compact the log behind it.
    /// Returns whether it was stored (an older or unusable one is skipped with a log line).
    pub fn take_snapshot(&mut self, applied_index: u64, data: Vec<u8>) -> Result<bool, ClusterError> {
        if self.halted {
            return Err(ClusterError::Halted);
        }
        self.no_ready_pending("snapshot between advance and persisted")?;
        let log = self.node.store();
        if applied_index <= log.snapshot_index() {
            return Ok(false);
        }
        let raft_applied = self.node.status().applied;
        if applied_index > raft_applied {
            warn!(self.logger, "snapshot beyond the applied index ignored";
                "index" => applied_index, "applied" => raft_applied);
            return Ok(false);
        }
        let term = match log.term(applied_index) {
            Ok(term) => term,
            Err(e) => {
                warn!(self.logger, "snapshot at an index the log no longer holds ignored";
                    "index" => applied_index, "error" => %e);
                return Ok(false);
            }
        };
        let Some(position) = self.conf_history.iter().rposition(|(index, _)| *index <= applied_index) else {
            warn!(self.logger, "snapshot before the oldest known configuration ignored"; "index" => applied_index);
            return Ok(false);
        };
        let conf_state = self.conf_history[position].1.clone();
        let result = self.node.mut_store().save_snapshot(applied_index, term, conf_state, data);
        if let Err(e) = result {
            self.halted = true;
            return Err(e);
        }
        self.conf_history.drain(..position);
        info!(self.logger, "snapshot stored, log compacted"; "index" => applied_index, "term" => term);
        Ok(true)
    }
}

/// A committed configuration change in either of raft-rs's encodings.
enum AnyConfChange {
    V1(ConfChange),
    V2(ConfChangeV2),
}

/// Encode proposals as entries of at most `MAX_ENTRY_BYTES` (a single larger proposal goes alone).
fn encode_chunks(proposals: &[Proposal], out: &mut Vec<(Vec<u8>, Vec<ProposalTag>)>) {
    let data = encode_entry(proposals);
    if data.len() <= MAX_ENTRY_BYTES || proposals.len() == 1 {
        out.push((data, proposals.iter().map(|p| p.tag).collect()));
    } else {
        let (front, back) = proposals.split_at(proposals.len() / 2);
        encode_chunks(front, out);
        encode_chunks(back, out);
    }
}
