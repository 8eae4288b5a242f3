//! Leadership transfer (Raft thesis §3.10): the leader hands leadership to a voter on purpose, before
//! a restart or when an operator asks, so the cluster does not wait an election timeout for it.
//!
//! Owns the handover's state (`Handover`), its errors (`TransferError`) and the replica's side of it,
//! in two steps with the shell between them:
//!
//! 1. `yield_leadership` checks the request, picks the voter (the one asked for, or the reachable
//!    voter whose log matches the leader's furthest) and gives up the leader lease at once:
//!    `lease_until_us` is `None` from now on in this term, and no lease round is asked for. The
//!    status the shell sends next says so.
//! 2. Once the shell knows its state machine owner has taken that status in (it answers no broadcast
//!    any more), it calls `hand_over`: raft-rs brings the voter's log up to date and sends it
//!    `MsgTimeoutNow` (`RawNode::transfer_leader`).
//!
//! Why the lease must go first: the voter that gets `MsgTimeoutNow` campaigns at once in a forced
//! election, without pre-vote, and voters grant a forced vote even within an election timeout of
//! hearing from the leader — the stickiness the leader lease relies on does not hold against it. So a
//! leader that let `MsgTimeoutNow` leave must not answer as leader again in that term: the voter may
//! win whenever the message arrives. In exchange the new leader needs no wait: it takes its lease
//! with its first commit and answers at once, and never two nodes answer the same datagram.
//!
//! When raft-rs gives a transfer up (an election timeout without a new leader): if `MsgTimeoutNow`
//! never left, the leader takes its lease back as usual; if it did, the leader hands over again, to
//! the best voter it can reach then, every time until another leader takes over (it may not answer
//! in this term any more, and the others hear from it, so none of them would campaign on its own).

use raft::eraftpb::{Message, MessageType};
use slog::{info, warn};

use super::Replica;
use crate::storage::DurableLog;

/// Why a leadership transfer was refused or did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("{}", not_leader(*leader))]
    NotLeader { leader: Option<u64> },
    #[error("node {id} is not a member of the cluster (members: {members:?})")]
    UnknownNode { id: u64, members: Vec<u64> },
    #[error("node {0} is a learner, not a voter: only a voter can become leader")]
    NotVoter(u64),
    #[error("node {0} is already the leader")]
    AlreadyLeader(u64),
    #[error("node {0} has not answered the leader within an election timeout: it cannot take over now")]
    Unreachable(u64),
    #[error("no other voter answers the leader: there is nobody to hand leadership to")]
    NoVoterReachable,
    #[error("no new leader within {waited_ms} ms (node {to} was asked to take over); {}", after_timeout(*told))]
    TimedOut { to: u64, waited_ms: u64, told: bool },
    #[error("the leadership transfer was abandoned: {0}")]
    Abandoned(String),
    #[error("the replica halted after an earlier storage error")]
    Halted,
}

fn not_leader(leader: Option<u64>) -> String {
    match leader {
        Some(leader) => format!("this node is not the leader; node {leader} is (ask it)"),
        None => "this node is not the leader, and no leader is known (no quorum?)".to_string(),
    }
}

fn after_timeout(told: bool) -> &'static str {
    if told {
        "it was told to campaign and may still win, so this node answers no broadcast in this term and keeps handing \
         over until another leader takes over"
    } else {
        "it was never told to campaign (its log did not catch up); this node stays leader"
    }
}

/// A handover in progress in `term` (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Handover {
    term: u64,
    to: u64,
    stage: Stage,
    /// The tick the stage began at.
    since_tick: u64,
    /// A `MsgTimeoutNow` left in `term`: no lease again in this term.
    told_to_campaign: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The lease is given up; waiting for the shell's `hand_over`.
    Yielded,
    /// raft-rs is transferring to `to`.
    Transferring,
}

impl<L: DurableLog> Replica<L> {
    /// Step 1: give up the leader lease to hand leadership to `to`, or to the reachable voter whose
    /// log matches furthest. Returns the voter; call `hand_over` once the state machine owner has the
    /// status without the lease. Asked again during a handover: the new voter replaces the old one.
    pub fn yield_leadership(&mut self, to: Option<u64>) -> Result<u64, TransferError> {
        self.may_transfer()?;
        if !self.is_leader() {
            return Err(TransferError::NotLeader { leader: self.status().leader_id });
        }
        let to = match to {
            Some(id) => self.check_transferee(id)?,
            None => self.best_transferee().ok_or(TransferError::NoVoterReachable)?,
        };
        let term = self.node.raft.term;
        let told_to_campaign = self.handover.is_some_and(|h| h.term == term && h.told_to_campaign);
        match self.handover {
            // Already past step 2 in this term: no need to wait for the shell again.
            Some(h) if h.term == term && h.stage == Stage::Transferring => {
                self.node.transfer_leader(to);
                self.handover = Some(Handover { to, since_tick: self.ticks, ..h });
            }
            _ => {
                self.handover =
                    Some(Handover { term, to, stage: Stage::Yielded, since_tick: self.ticks, told_to_campaign });
            }
        }
        info!(self.logger, "leader lease given up to hand leadership over"; "to" => to, "term" => term);
        Ok(to)
    }

    /// Step 2: the state machine owner answers no broadcast any more; let raft-rs transfer. Returns
    /// the voter, or why there is nothing to hand over (no longer leader, or the handover was
    /// abandoned meanwhile).
    pub fn hand_over(&mut self) -> Result<u64, TransferError> {
        self.may_transfer()?;
        if !self.is_leader() {
            return Err(TransferError::NotLeader { leader: self.status().leader_id });
        }
        let term = self.node.raft.term;
        let Some(handover) = self.handover.filter(|h| h.term == term) else {
            return Err(TransferError::Abandoned(
                "not confirmed by the state machine within an election timeout; the leader lease was taken back".into(),
            ));
        };
        if handover.stage == Stage::Yielded {
            info!(self.logger, "handing leadership over"; "to" => handover.to, "term" => term);
            self.node.transfer_leader(handover.to);
            self.handover = Some(Handover { stage: Stage::Transferring, since_tick: self.ticks, ..handover });
        }
        Ok(handover.to)
    }

    /// raft-rs takes no input between a `Ready` and its `advance`, nor does a halted replica.
    fn may_transfer(&self) -> Result<(), TransferError> {
        if self.halted {
            return Err(TransferError::Halted);
        }
        if self.pending.is_some() {
            return Err(TransferError::Abandoned("asked between advance and persisted".into()));
        }
        Ok(())
    }

    /// This node gave up its lease in the current term (`lease_until_us` is `None`).
    pub(super) fn lease_yielded(&self) -> bool {
        self.handover.is_some_and(|h| h.term == self.node.raft.term)
    }

    /// Whether a handover of this term told a voter to campaign (for the shell's answer).
    pub fn told_to_campaign(&self) -> bool {
        self.handover.is_some_and(|h| h.term == self.node.raft.term && h.told_to_campaign)
    }

    /// Messages about to leave: a `MsgTimeoutNow` means no lease again in this term.
    pub(super) fn note_timeout_now(&mut self, messages: &[Message]) {
        let Some(message) = messages.iter().find(|m| m.get_msg_type() == MessageType::MsgTimeoutNow) else {
            return;
        };
        let term = self.node.raft.term;
        match &mut self.handover {
            Some(h) if h.term == term => h.told_to_campaign = true,
            _ => {
                // Only `hand_over` starts a transfer; should raft-rs send one anyway, the rule holds.
                warn!(self.logger, "MsgTimeoutNow without a handover: leader lease given up"; "to" => message.to);
                self.handover = Some(Handover {
                    term,
                    to: message.to,
                    stage: Stage::Transferring,
                    since_tick: self.ticks,
                    told_to_campaign: true,
                });
            }
        }
    }

    /// After a tick: forget a handover of an earlier term; take the lease back from one abandoned
    /// before any voter was told to campaign; hand over again when raft-rs gave up after one was.
    pub(super) fn tick_handover(&mut self) {
        let Some(handover) = self.handover else { return };
        let term = self.node.raft.term;
        if handover.term != term || !self.is_leader() {
            self.handover = None;
            return;
        }
        let timeout_ticks = self.node.raft.election_timeout() as u64;
        let transferring = self.node.raft.lead_transferee.is_some();
        match handover.stage {
            // The shell never confirmed (it should within a mailbox round trip): nobody was told.
            Stage::Yielded if self.ticks.saturating_sub(handover.since_tick) >= timeout_ticks => {
                warn!(self.logger, "handover not confirmed within an election timeout: leader lease taken back";
                    "to" => handover.to);
                self.handover = None;
            }
            Stage::Transferring if !transferring && !handover.told_to_campaign => {
                info!(self.logger, "leadership transfer given up before the voter was told: leader lease taken back";
                    "to" => handover.to);
                self.handover = None;
            }
            // raft-rs gave up (or the last try found nobody): once per election timeout, try again.
            Stage::Transferring if !transferring && self.ticks.saturating_sub(handover.since_tick) >= timeout_ticks => {
                let to = self.best_transferee();
                match to {
                    Some(to) => {
                        info!(self.logger, "no new leader yet: handing leadership over again"; "to" => to,
                            "term" => term);
                        self.node.transfer_leader(to);
                    }
                    None => warn!(self.logger, "no voter reachable to hand leadership over to; trying again"),
                }
                let to = to.unwrap_or(handover.to);
                self.handover = Some(Handover { to, since_tick: self.ticks, ..handover });
            }
            _ => {}
        }
    }

    /// `to` can take over: a voter other than this node that answered within an election timeout.
    fn check_transferee(&self, to: u64) -> Result<u64, TransferError> {
        let conf = self.conf_history.last().map(|(_, c)| c.clone()).unwrap_or_default();
        if to == self.node_id {
            return Err(TransferError::AlreadyLeader(to));
        }
        if conf.learners.contains(&to) {
            return Err(TransferError::NotVoter(to));
        }
        if !conf.voters.contains(&to) {
            let mut members: Vec<u64> = conf.voters.iter().chain(&conf.learners).copied().collect();
            members.sort_unstable();
            return Err(TransferError::UnknownNode { id: to, members });
        }
        if !self.reachable_voters().contains(&to) {
            return Err(TransferError::Unreachable(to));
        }
        Ok(to)
    }

    /// The reachable voter (not this node) whose log matches the leader's furthest; the lowest id
    /// among equals.
    fn best_transferee(&self) -> Option<u64> {
        let status = self.node.status();
        let progress = status.progress?;
        self.reachable_voters()
            .into_iter()
            .filter(|id| *id != self.node_id)
            .filter_map(|id| progress.get(id).map(|p| (p.matched, id)))
            .max_by(|(a_matched, a_id), (b_matched, b_id)| a_matched.cmp(b_matched).then(b_id.cmp(a_id)))
            .map(|(_, id)| id)
    }
}
