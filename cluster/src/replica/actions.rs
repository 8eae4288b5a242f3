//! What a `Replica` gives its shell: `Persist` from `advance` (the messages that may leave before
//! the write, and the `LogWrite` to make durable), `Actions` from `persisted` (messages, the
//! snapshot to restore, committed entries, status, rejected proposals, membership changes), and
//! `Refused` from `propose`.

use raft::eraftpb::{Entry, HardState, Message, Snapshot};

use crate::storage::ReadyWrite;
use crate::{ClusterError, CommittedEntry, Proposal, ProposalTag, RaftStatus};

/// What the shell must do after `persisted`, in this order: send `messages`, restore the table from
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
    /// Committed membership changes, with the new member's peer address for an addition.
    pub membership: Vec<crate::MembershipChange>,
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

/// One `Ready`'s write, for the shell to make durable on the replica's log (`DurableLog::write_ready`
/// of `as_ready_write`: one batch, at most one fsync) before it hands it back to `persisted`.
#[derive(Debug)]
pub struct LogWrite {
    /// A snapshot from the leader: it replaces the whole log.
    pub snapshot: Option<Snapshot>,
    /// Entries to append, replacing any conflicting suffix.
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    /// raft-rs's `Ready::must_sync`: false when only the commit index moved, which needs no fsync.
    pub must_sync: bool,
    /// The `Ready` it belongs to (raft-rs's `Ready::number`).
    pub(super) number: u64,
}

impl LogWrite {
    /// The write as `DurableLog::write_ready` takes it.
    pub fn as_ready_write(&self) -> ReadyWrite<'_> {
        ReadyWrite {
            snapshot: self.snapshot.as_ref(),
            entries: &self.entries,
            hard_state: self.hard_state.as_ref(),
            must_sync: self.must_sync,
        }
    }
}

/// What `advance` gives the shell: raft messages that may leave before the write, and the write to
/// make durable before calling `persisted` (`None`: no `Ready`, nothing to write).
#[derive(Debug, Default)]
pub struct Persist {
    /// A leader's messages (appends, heartbeats, snapshots): sent while it persists its own entries,
    /// which count towards the commit only once durable (Raft thesis §10.2.1).
    pub messages: Vec<Message>,
    pub write: Option<LogWrite>,
}

/// A refused `propose`: why, and the proposals given back so their proposers can be told.
#[derive(Debug)]
pub struct Refused {
    pub reason: ClusterError,
    pub proposals: Vec<Proposal>,
}
