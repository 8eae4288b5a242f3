//! The sans-IO Raft driver: a raft-rs `RawNode` over a `DurableLog`.
//!
//! Inputs are proposals, ticks and peer messages; `advance` handles at most one `Ready` in the
//! documented order (restore the snapshot, persist entries and hard state in one write, send, hand
//! out committed entries, `advance`, then the `LightReady`) and returns `Actions` for the shell to
//! carry out. Proposals that arrive between two `advance` calls become one log entry, and the `Ready`
//! holding it one write with one fsync: the group commit. Nothing here reads a clock, a random source
//! or the network: the shell calls `tick`, and a simulation pins the election timeout.

use std::collections::BTreeMap;

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, ConfState, Entry, EntryType, Message, MessageType};
use raft::{RawNode, StateRole};
use slog::{debug, info, warn, Logger};

use crate::lease::{decode_entry, encode_entry};
use crate::storage::{CatchUpMark, DurableLog, ReadyWrite};
use crate::{ClusterError, CommittedEntry, Proposal, ProposalTag, RaftStatus};

/// Proposals above this encoded size are split over several log entries.
pub const MAX_ENTRY_BYTES: usize = 1024 * 1024;
/// Proposals buffered between two `advance` calls; more are refused with `Overloaded`.
pub const MAX_BUFFERED_PROPOSALS: usize = 65_536;
/// Bytes of entries per append message to a follower.
const MAX_BYTES_PER_MESSAGE: u64 = 1024 * 1024;
/// Append messages in flight per follower.
const MAX_INFLIGHT_MESSAGES: usize = 256;
/// Bytes of proposed but uncommitted entries a leader accepts; beyond, proposals are dropped.
const MAX_UNCOMMITTED_BYTES: u64 = 64 * 1024 * 1024;
/// Bytes of committed entries handed out per `Ready` (a long replay spreads over several).
const MAX_COMMITTED_BYTES_PER_READY: u64 = 16 * 1024 * 1024;

/// Marks a follower's report of its own term, commit and applied index in the context of its
/// append and heartbeat responses (raft-rs does not read that context; the leader strips it).
const STATUS_REPORT_MAGIC: &[u8; 4] = b"LHsr";
/// Marks this layer's read-index requests that renew the leader lease (context: magic + tick).
const LEASE_READ_MAGIC: &[u8; 4] = b"LHll";

/// What a follower last reported about itself (see `STATUS_REPORT_MAGIC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PeerReport {
    term: u64,
    commit: u64,
    applied: u64,
}

/// One member as the leader sees it (`matched`, `lag` and `state` only on the leader).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemberProgress {
    pub id: u64,
    pub voter: bool,
    pub matched: Option<u64>,
    /// Entries the member is behind the leader's last index.
    pub lag: Option<u64>,
    pub state: Option<String>,
    pub recent_active: Option<bool>,
    /// The member's own term, commit and applied index: this node's own always, a follower's as
    /// it last reported them to the leader (so only on the leader).
    pub term: Option<u64>,
    pub commit: Option<u64>,
    /// Entries handed to the member's state machine.
    pub applied: Option<u64>,
}

/// How to build a `Replica`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// This node's Raft id (not 0).
    pub node_id: u64,
    /// The voters a fresh log is bootstrapped with; empty means `[node_id]`, a cluster of one.
    /// Ignored when the log already holds a configuration.
    pub voters: Vec<u64>,
    /// The state machine's applied index (`LeaseTable::applied_index`): committed entries after it
    /// are handed out again (replay).
    pub applied: u64,
    /// Ticks between leader heartbeats.
    pub heartbeat_ticks: usize,
    /// Ticks without a leader before a follower campaigns (the minimum election timeout).
    pub election_ticks: usize,
    /// Pin the randomized election timeout to exactly this many ticks (at least `election_ticks`),
    /// for a simulation that derives it from its seed. `None`: raft-rs draws it from
    /// `[election_ticks, 2 * election_ticks)` with a thread RNG.
    pub election_timeout_ticks: Option<usize>,
    /// A fresh log joins a running cluster instead of bootstrapping one: it starts with no
    /// configuration and waits for the leader (after `cluster add-node`).
    pub join: bool,
    /// How long a tick is, for the leader lease (`tick` gets the time; ticks drive Raft).
    pub tick_us: u64,
}

impl ReplicaConfig {
    pub fn new(node_id: u64) -> Self {
        ReplicaConfig {
            node_id,
            voters: Vec::new(),
            applied: 0,
            heartbeat_ticks: 2,
            election_ticks: 10,
            election_timeout_ticks: None,
            join: false,
            tick_us: 100_000,
        }
    }

    fn raft_config(&self) -> raft::Config {
        let (min_election_tick, max_election_tick) = match self.election_timeout_ticks {
            Some(ticks) => (ticks, ticks + 1),
            None => (0, 0),
        };
        raft::Config {
            id: self.node_id,
            election_tick: self.election_ticks,
            heartbeat_tick: self.heartbeat_ticks,
            applied: self.applied,
            max_size_per_msg: MAX_BYTES_PER_MESSAGE,
            max_inflight_msgs: MAX_INFLIGHT_MESSAGES,
            check_quorum: true,
            pre_vote: true,
            min_election_tick,
            max_election_tick,
            max_uncommitted_size: MAX_UNCOMMITTED_BYTES,
            max_committed_size_per_ready: MAX_COMMITTED_BYTES_PER_READY,
            ..raft::Config::default()
        }
    }
}

/// What the shell must do after an `advance`, in this order: send `messages`, restore the table from
/// `restore`, apply `committed`, report `status` and `rejected`.
#[derive(Debug, Default)]
pub struct Actions {
    /// Raft messages to peers (each has its `to`).
    pub messages: Vec<Message>,
    /// A snapshot received from the leader: replace the state machine with it (index, table bytes).
    pub restore: Option<(u64, Vec<u8>)>,
    /// Committed entries in log order, one per index, none skipped.
    pub committed: Vec<CommittedEntry>,
    /// This node's role, term, leader or commit index changed.
    pub status: Option<RaftStatus>,
    /// Proposals that will not come back through `committed` from this node.
    pub rejected: Vec<ProposalTag>,
    /// Committed membership changes: (member id, added, the change's context — the new member's
    /// peer address for an addition).
    pub membership: Vec<(u64, bool, Vec<u8>)>,
}

impl Actions {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.restore.is_none()
            && self.committed.is_empty()
            && self.status.is_none()
            && self.rejected.is_empty()
            && self.membership.is_empty()
    }
}

/// A refused `propose`: why, and the proposals given back so their proposers can be told.
#[derive(Debug)]
pub struct Refused {
    pub reason: ClusterError,
    pub proposals: Vec<Proposal>,
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
    /// The log started empty (or half caught up) in this process: everything in it came from this
    /// cluster's leaders since, so a heartbeat claiming more is stale, not a sign of a lost log.
    started_empty: bool,
    /// Messages this layer sends on its own (not raft-rs's), out with the next `advance`.
    outbox: Vec<Message>,
    /// Ticks since start.
    ticks: u64,
    /// The tick at which the leader last asked for a lease round.
    lease_asked_tick: Option<u64>,
    /// The time given to the last `tick`.
    now_us: u64,
    /// The leader lease holds while the time is before this, in `lease_term` only.
    lease_until_us: u64,
    lease_term: u64,
    /// How long a quorum's confirmation holds: less than the election timeout (followers that
    /// confirmed refuse to vote for that long after hearing from the leader).
    lease_us: u64,
    heartbeat_ticks: u64,
    /// The last thing each follower reported about itself (leader only).
    peer_reports: BTreeMap<u64, PeerReport>,
    halted: bool,
    logger: Logger,
}

/// A log that started empty does not know what it acknowledged or whom it voted for before (a wiped
/// data directory looks exactly like a new node), so it must not help elect a leader that lacks
/// entries it once held, nor vote twice in a term (DESIGN rule 6: it catches up from a leader first).
/// While `mark` is `Fresh` no peer has shown that anything was ever committed, and it takes part in
/// elections as any node of a new cluster does. Once a peer reports a commit index above 0 it is
/// `Behind`: it neither votes nor campaigns. It is caught up once its log holds an entry of the term
/// of the first leader it heard from (so all of that leader's log before its term) and has committed
/// what that leader had committed then. What no live peer knows it cannot know (see the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CatchUp {
    mark: CatchUpMark,
    /// The first leader's term and commit index.
    until: Option<(u64, u64)>,
}

impl<L: DurableLog> std::fmt::Debug for Replica<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("status", &self.status())
            .field("buffered", &self.buffered.len())
            .field("in_flight", &self.in_flight.len())
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
        let mark = match log.catch_up() {
            _ if alone => CatchUpMark::Done,
            CatchUpMark::Done if state.initialized() => CatchUpMark::Done,
            CatchUpMark::Done => {
                // `join` says the cluster exists: no need to wait for a peer to show it.
                let mark = if config.join { CatchUpMark::Behind } else { CatchUpMark::Fresh };
                log.set_catch_up(mark)?;
                mark
            }
            mark => mark,
        };
        if mark != CatchUpMark::Done {
            info!(logger, "the log started empty: no part in elections of a cluster with a history until caught up";
                "mark" => ?mark);
        }
        let catch_up = CatchUp { mark, until: None };
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
            started_empty: catch_up.mark != CatchUpMark::Done,
            catch_up,
            outbox: Vec::new(),
            ticks: 0,
            lease_asked_tick: None,
            now_us: 0,
            lease_until_us: 0,
            lease_term: 0,
            lease_us: (config.election_ticks.saturating_sub(config.heartbeat_ticks).max(1) as u64)
                .saturating_mul(config.tick_us),
            heartbeat_ticks: config.heartbeat_ticks.max(1) as u64,
            peer_reports: BTreeMap::new(),
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
        if self.halted {
            return;
        }
        self.node.tick();
        self.ticks += 1;
        self.now_us = now_us;
        if self.ticks.is_multiple_of(self.heartbeat_ticks) || !self.has_lease() {
            self.renew_lease();
        }
    }

    /// Ask a quorum to confirm this leader (raft-rs read index, a heartbeat round). When it does,
    /// the lease holds `lease_us` from now: every follower that confirmed heard from this leader
    /// after now, and refuses votes for an election timeout after that (raft-rs's check_quorum
    /// lease), so no other leader can be elected before the lease ends.
    fn renew_lease(&mut self) {
        // raft-rs drops a read index asked before the leader committed an entry of its term.
        if !self.is_leader() || self.is_sole_voter() || !self.node.raft.commit_to_current_term() {
            return;
        }
        self.lease_asked_tick = Some(self.ticks);
        let mut context = LEASE_READ_MAGIC.to_vec();
        context.extend_from_slice(&self.now_us.to_be_bytes());
        self.node.read_index(context);
    }

    /// See `RaftStatus::lease_until_us`.
    pub fn lease_until_us(&self) -> Option<u64> {
        if !self.is_leader() {
            None
        } else if self.is_sole_voter() {
            Some(u64::MAX)
        } else {
            (self.lease_term == self.node.raft.term && self.lease_until_us > 0).then_some(self.lease_until_us)
        }
    }

    /// The leader lease holds at the time of the last tick.
    pub fn has_lease(&self) -> bool {
        self.lease_until_us().is_some_and(|until| self.now_us < until)
    }

    fn is_sole_voter(&self) -> bool {
        self.conf_history.last().is_some_and(|(_, c)| c.voters == [self.node_id])
    }

    fn note_read_states(&mut self, read_states: Vec<raft::ReadState>) {
        for state in read_states {
            let Some(asked) = state.request_ctx.strip_prefix(LEASE_READ_MAGIC.as_slice()) else { continue };
            let Ok(asked_us) = <[u8; 8]>::try_from(asked).map(u64::from_be_bytes) else { continue };
            if self.lease_term != self.node.raft.term {
                self.lease_term = self.node.raft.term;
                self.lease_until_us = 0;
            }
            self.lease_until_us = self.lease_until_us.max(asked_us.saturating_add(self.lease_us));
        }
    }

    /// Put this node's own term, commit and applied index on its responses to the leader.
    fn stamp_reports(&self, messages: &mut [Message]) {
        let hs = self.node.raft.hard_state();
        let applied = self.node.raft.raft_log.applied;
        for message in messages.iter_mut().filter(|m| {
            matches!(m.get_msg_type(), MessageType::MsgAppendResponse | MessageType::MsgHeartbeatResponse)
                && m.context.is_empty()
        }) {
            let mut context = STATUS_REPORT_MAGIC.to_vec();
            for value in [hs.term, hs.commit, applied] {
                context.extend_from_slice(&value.to_be_bytes());
            }
            message.context = context.into();
        }
    }

    /// Take a follower's report off its response (raft-rs must not see it as a read-index ack).
    fn take_report(&mut self, message: &mut Message) {
        if !matches!(message.get_msg_type(), MessageType::MsgAppendResponse | MessageType::MsgHeartbeatResponse) {
            return;
        }
        let Some(body) = message.context.strip_prefix(STATUS_REPORT_MAGIC.as_slice()) else { return };
        let mut values = body.chunks_exact(8).filter_map(|c| <[u8; 8]>::try_from(c).ok().map(u64::from_be_bytes));
        if let (Some(term), Some(commit), Some(applied)) = (values.next(), values.next(), values.next()) {
            self.peer_reports.insert(message.from, PeerReport { term, commit, applied });
        }
        message.context = Default::default();
    }

    /// Feed a message from a peer.
    pub fn step(&mut self, message: Message) -> Result<(), ClusterError> {
        if self.halted {
            return Err(ClusterError::Halted);
        }
        if message.to != self.node_id {
            return Err(ClusterError::Corrupt(format!("message for {} delivered to {}", message.to, self.node_id)));
        }
        let mut message = message;
        self.take_report(&mut message);
        let last_index = raft::Storage::last_index(self.node.store())?;
        let catching_up = self.catch_up.mark != CatchUpMark::Done;
        if catching_up && self.catch_up.mark == CatchUpMark::Fresh && message.commit > 0 {
            info!(self.logger, "a peer has committed entries: this cluster has a history; no votes until caught up";
                "peer" => message.from, "commit" => message.commit, "msg_type" => ?message.get_msg_type());
            self.node.mut_store().set_catch_up(CatchUpMark::Behind)?;
            self.catch_up.mark = CatchUpMark::Behind;
        }
        match message.get_msg_type() {
            MessageType::MsgHeartbeat if message.commit > last_index => {
                // The leader says entries up to `commit` are on this node's disk (it remembers our
                // acknowledgements), but the log ends before that (raft-rs would panic here).
                if !catching_up && !self.started_empty {
                    // A log that was not known to start empty lost acknowledged entries: it must not
                    // vote or serve. It stops; the operator rejoins it (see the README).
                    self.halted = true;
                    return Err(ClusterError::LogLost { leader: message.from, commit: message.commit, last_index });
                }
                // Started empty: expected (also a heartbeat sent before the leader started over and
                // delivered after we caught up). Tell the leader at once with a rejection of what it
                // thinks we hold (it then starts over, see `forget_lost_progress`); an idle leader
                // would otherwise send nothing until its next entry.
                let mut rejection = Message::default();
                rejection.set_msg_type(MessageType::MsgAppendResponse);
                rejection.to = message.from;
                rejection.from = self.node_id;
                rejection.term = message.term;
                rejection.reject = true;
                rejection.index = last_index;
                rejection.reject_hint = last_index;
                self.outbox.push(rejection);
                message.commit = last_index;
            }
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
                if self.catch_up.mark == CatchUpMark::Behind =>
            {
                debug!(self.logger, "vote request ignored while catching up";
                    "candidate" => message.from, "term" => message.term, "candidate_commit" => message.commit);
                return Ok(());
            }
            MessageType::MsgAppend | MessageType::MsgSnapshot
                if catching_up && self.catch_up.until.is_none() && message.term >= self.node.raft.term =>
            {
                let commit = message.commit.max(message.get_snapshot().get_metadata().index);
                info!(self.logger, "catching up from the leader"; "leader" => message.from, "term" => message.term,
                    "until_commit" => commit);
                self.catch_up.until = Some((message.term, commit));
            }
            MessageType::MsgAppendResponse if message.reject && self.is_leader() => self.forget_lost_progress(&message),
            _ => {}
        }
        self.node.step(message)?;
        Ok(())
    }

    /// A follower that rejects an append below what it acknowledged before has lost its log (a
    /// wiped data directory, or a disk without fsync). raft-rs takes such a rejection for a stale
    /// message and would wait forever; start over from what the follower has, so it gets a snapshot
    /// or the entries again. Lowering `matched` never lowers the commit index.
    fn forget_lost_progress(&mut self, message: &Message) {
        let term = self.node.raft.term;
        let Some(progress) = self.node.raft.mut_prs().get_mut(message.from) else { return };
        if message.term != term || message.reject_hint >= progress.matched {
            return;
        }
        warn!(self.logger, "a follower lost entries it had acknowledged: sending them again";
            "follower" => message.from, "acknowledged" => progress.matched, "has" => message.reject_hint);
        progress.matched = message.reject_hint;
        progress.become_probe();
    }

    /// Leave catch-up once the log holds what the first leader heard from had (called after the
    /// Ready is durable).
    fn check_caught_up(&mut self) -> Result<(), ClusterError> {
        if self.catch_up.mark == CatchUpMark::Done {
            return Ok(());
        }
        let caught_up = if self.is_leader() {
            // Elected: a leader's log holds every committed entry (Raft's leader completeness).
            true
        } else if let Some((term, commit)) = self.catch_up.until {
            let store = self.node.store();
            let last_term = raft::Storage::term(store, raft::Storage::last_index(store)?)?;
            last_term >= term && self.node.raft.raft_log.committed >= commit
        } else {
            false
        };
        if caught_up {
            self.node.mut_store().set_catch_up(CatchUpMark::Done)?;
            self.catch_up = CatchUp { mark: CatchUpMark::Done, until: None };
            info!(self.logger, "caught up from the leader: takes part in elections again");
        }
        Ok(())
    }

    /// While `Behind`, this node's own vote requests stay home: its log may lack entries it once
    /// acknowledged, so it must not lead.
    fn drop_own_vote_requests(&self, messages: &mut Vec<Message>) {
        if self.catch_up.mark == CatchUpMark::Behind {
            messages
                .retain(|m| !matches!(m.get_msg_type(), MessageType::MsgRequestVote | MessageType::MsgRequestPreVote));
        }
    }

    /// True when an `advance` would do something.
    pub fn has_ready(&self) -> bool {
        !self.halted
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

    /// Members and, on the leader, how far each has replicated (for `GET /v1/cluster`).
    pub fn members(&self) -> Vec<MemberProgress> {
        let status = self.node.status();
        let last_index = raft::Storage::last_index(self.node.store()).unwrap_or(0);
        let voters: Vec<u64> = self.conf_history.last().map(|(_, c)| c.voters.clone()).unwrap_or_default();
        let learners: Vec<u64> = self.conf_history.last().map(|(_, c)| c.learners.clone()).unwrap_or_default();
        let mut members: Vec<(u64, bool)> =
            voters.iter().map(|id| (*id, true)).chain(learners.iter().map(|id| (*id, false))).collect();
        members.sort_unstable();
        members
            .into_iter()
            .map(|(id, voter)| {
                let progress = status.progress.and_then(|p| p.get(id));
                let report = if id == self.node_id {
                    Some(PeerReport { term: status.hs.term, commit: status.hs.commit, applied: status.applied })
                } else {
                    self.peer_reports.get(&id).copied().filter(|_| progress.is_some())
                };
                MemberProgress {
                    id,
                    voter,
                    matched: progress.map(|p| p.matched),
                    lag: progress.map(|p| last_index.saturating_sub(p.matched)),
                    state: progress.map(|p| format!("{:?}", p.state)),
                    recent_active: progress.map(|p| p.recent_active),
                    term: report.map(|r| r.term),
                    commit: report.map(|r| r.commit),
                    applied: report.map(|r| r.applied),
                }
            })
            .collect()
    }

    /// Propose adding (`addr` given: as a voter) or removing a member (raft-rs ConfChangeV2). Only the
    /// leader can; the change takes effect when committed. `context` travels with the change (the
    /// new member's address, so every node's transport learns it).
    pub fn propose_membership(&mut self, id: u64, add: bool, context: Vec<u8>) -> Result<(), ClusterError> {
        if self.halted {
            return Err(ClusterError::Halted);
        }
        if !self.is_leader() {
            return Err(ClusterError::NotLeader);
        }
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

    /// Propose what is buffered, then handle at most one `Ready`: one durable write. Call again while
    /// `has_ready`. An `Err` is a storage failure: the replica halts and the node must stop serving.
    pub fn advance(&mut self) -> Result<Actions, ClusterError> {
        if self.halted {
            return Err(ClusterError::Halted);
        }
        let result = self.advance_inner();
        if result.is_err() {
            self.halted = true;
        }
        result
    }

    fn advance_inner(&mut self) -> Result<Actions, ClusterError> {
        let mut actions = Actions::default();
        actions.messages.append(&mut self.outbox);
        self.propose_buffered(&mut actions);
        if self.node.has_ready() {
            self.handle_ready(&mut actions)?;
            self.check_caught_up()?;
            self.drop_own_vote_requests(&mut actions.messages);
            // A new leader asks for its lease as soon as its first entry commits, not a tick later:
            // until it holds the lease it answers no broadcast.
            if !self.has_lease() && self.lease_asked_tick != Some(self.ticks) {
                self.renew_lease();
            }
        }
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

    fn handle_ready(&mut self, actions: &mut Actions) -> Result<(), ClusterError> {
        let mut ready = self.node.ready();
        self.note_read_states(ready.take_read_states());
        // A leader may send before persisting (Raft thesis 10.2.1); its own entry counts once durable.
        actions.messages.extend(ready.take_messages());

        let snapshot = (!ready.snapshot().is_empty()).then(|| ready.snapshot().clone());
        let entries = ready.take_entries();
        self.node.mut_store().write_ready(ReadyWrite {
            snapshot: snapshot.as_ref(),
            entries: &entries,
            hard_state: ready.hs(),
            must_sync: ready.must_sync(),
        })?;

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
                    for single in change.get_changes() {
                        let added = single.get_change_type() != raft::eraftpb::ConfChangeType::RemoveNode;
                        actions.membership.push((single.node_id, added, change.context.to_vec()));
                    }
                    self.apply_conf_change(entry.index, AnyConfChange::V2(change))?;
                    Vec::new()
                }
            };
            actions.committed.push(CommittedEntry { index: entry.index, proposals });
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
        self.conf_history.push((index, conf_state));
        Ok(())
    }

    /// The state machine took a snapshot at `applied_index`: store it and compact the log behind it.
    /// Returns whether it was stored (an older or unusable one is skipped with a log line).
    pub fn take_snapshot(&mut self, applied_index: u64, data: Vec<u8>) -> Result<bool, ClusterError> {
        if self.halted {
            return Err(ClusterError::Halted);
        }
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
