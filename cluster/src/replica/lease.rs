//! The leader lease: how long this leader may answer without asking the others (DESIGN rule 2).
//!
//! Owns the lease's state (`LeaderLease`) and the replica's side of it: `renew_lease` asks a quorum
//! through a raft-rs read index tagged with the time it was asked, `note_read_states` extends the
//! lease when a quorum confirmed, and `lease_until_us` / `has_lease` say how long it holds. The
//! Ready loop calls these on ticks and after each `Ready`; the lease's clock is the time given to
//! `Replica::tick`.

use raft::ReadState;

use super::Replica;
use crate::storage::DurableLog;

/// Marks this layer's read-index requests that renew the leader lease (context: magic + tick).
const LEASE_READ_MAGIC: &[u8; 4] = b"LHll";

/// The leader lease of one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LeaderLease {
    /// The tick at which the leader last asked for a lease round.
    asked_tick: Option<u64>,
    /// The lease holds while the time is before this, in `term` only.
    until_us: u64,
    term: u64,
    /// How long a quorum's confirmation holds: less than the election timeout (followers that
    /// confirmed refuse to vote for that long after hearing from the leader).
    lease_us: u64,
    /// A lease round at least every this many ticks.
    heartbeat_ticks: u64,
}

impl LeaderLease {
    pub(super) fn new(election_ticks: usize, heartbeat_ticks: usize, tick_us: u64) -> Self {
        LeaderLease {
            asked_tick: None,
            until_us: 0,
            term: 0,
            lease_us: (election_ticks.saturating_sub(heartbeat_ticks).max(1) as u64).saturating_mul(tick_us),
            heartbeat_ticks: heartbeat_ticks.max(1) as u64,
        }
    }
}

impl<L: DurableLog> Replica<L> {
    /// After a tick: a leader asks for a lease round every heartbeat, and at once while it has none.
    pub(super) fn tick_lease(&mut self) {
        if self.ticks.is_multiple_of(self.lease.heartbeat_ticks) || !self.has_lease() {
            self.renew_lease();
        }
    }

    /// After a `Ready`: a new leader asks for its lease as soon as its first entry commits, not a
    /// tick later: until it holds the lease it answers no broadcast.
    pub(super) fn renew_lease_if_lost(&mut self) {
        if !self.has_lease() && self.lease.asked_tick != Some(self.ticks) {
            self.renew_lease();
        }
    }

    /// Ask a quorum to confirm this leader (raft-rs read index, a heartbeat round). When it does,
    /// the lease holds `lease_us` from now: every follower that confirmed heard from this leader
    /// after now, and refuses votes for an election timeout after that (raft-rs's check_quorum
    /// lease), so no other leader can be elected before the lease ends.
    fn renew_lease(&mut self) {
        // raft-rs drops a read index asked before the leader committed an entry of its term.
        // A leader handing over has given its lease up for the rest of the term (`transfer`).
        if !self.is_leader() || self.lease_yielded() || self.is_sole_voter() || !self.node.raft.commit_to_current_term()
        {
            return;
        }
        self.lease.asked_tick = Some(self.ticks);
        let mut context = LEASE_READ_MAGIC.to_vec();
        context.extend_from_slice(&self.now_us.to_be_bytes());
        self.node.read_index(context);
    }

    /// See `RaftStatus::lease_until_us`.
    pub fn lease_until_us(&self) -> Option<u64> {
        if !self.is_leader() || self.lease_yielded() {
            None
        } else if self.is_sole_voter() {
            Some(u64::MAX)
        } else {
            (self.lease.term == self.node.raft.term && self.lease.until_us > 0).then_some(self.lease.until_us)
        }
    }

    /// The leader lease holds at the time of the last tick.
    pub fn has_lease(&self) -> bool {
        self.lease_until_us().is_some_and(|until| self.now_us < until)
    }

    fn is_sole_voter(&self) -> bool {
        self.conf_history.last().is_some_and(|(_, c)| c.voters == [self.node_id])
    }

    /// A quorum answered lease rounds: the lease holds `lease_us` from when each was asked.
    pub(super) fn note_read_states(&mut self, read_states: Vec<ReadState>) {
        for state in read_states {
            let Some(asked) = state.request_ctx.strip_prefix(LEASE_READ_MAGIC.as_slice()) else { continue };
            let Ok(asked_us) = <[u8; 8]>::try_from(asked).map(u64::from_be_bytes) else { continue };
            if self.lease.term != self.node.raft.term {
                self.lease.term = self.node.raft.term;
                self.lease.until_us = 0;
            }
            self.lease.until_us = self.lease.until_us.max(asked_us.saturating_add(self.lease.lease_us));
        }
    }
}
