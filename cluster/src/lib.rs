//! Leasehold's replicated lease store.
//!
//! - `lease`: the pure lease state machine (`LeaseTable::apply`), commands and outcomes.
//! - `storage`: the durable Raft log, hard state and snapshots on disk (raft-engine).
//! - `replica`: a sans-IO wrapper of raft-rs `RawNode`: proposals, ticks and messages in, `Ready`
//!   handled in the documented order (persist, send, apply, advance), actions out — the write to
//!   persist among them: the shell makes it durable and hands it back (`advance`, `persisted`).
//! - `driver`: what to do with a `Ready`, without the actor: advance, write, finish, and route every
//!   output to a `RaftShell` (the raft actor, or the simulation's node).
//! - `actor`: the raft actor, the thin actix shell that owns a `Replica`, its timer and its disk.
//!
//! The apply side (the node's lease actor) owns the `LeaseTable`; the raft actor hands it committed
//! entries in log order through `Recipient<ToStateMachine>` and learns of snapshots it took through
//! `SnapshotTaken`.

pub mod actor;
pub mod driver;
pub mod lease;
pub mod replica;
pub mod storage;
pub mod transport;

use actix::Message;

pub use lease::{
    ClientKey, Command, Lease, LeaseState, LeaseTable, Outcome, Parameters, Proposal, ProposalTag, ReservedHost,
};

/// Operating errors of the replicated store. An `Err` never leaves a state change behind.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("raft log storage at {path}: {source}")]
    Storage { path: String, source: raft_engine::Error },
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("corrupt data: {0}")]
    Corrupt(String),
    #[error(
        "raft log lost: leader {leader} says entries up to {commit} are on this node, but its log ends at \
         {last_index}; remove this node (`leasehold cluster remove-node`) and start it again with an empty \
         data directory and --join"
    )]
    LogLost { leader: u64, commit: u64, last_index: u64 },
    #[error("not the leader")]
    NotLeader,
    /// A TLS file (certificate, key or CA) that cannot be used, or certificates that cannot be made.
    #[error("{path}: {problem}")]
    Tls { path: String, problem: String },
    /// A membership change refused because it would leave no voter or no reachable quorum.
    #[error("{0}")]
    MembershipRefused(String),
    #[error("too many proposals in flight ({limit})")]
    Overloaded { limit: usize },
    #[error("the replica halted after an earlier storage error")]
    Halted,
    /// A shell called the replica out of the order `advance`, write, `persisted` (a bug).
    #[error("replica called out of order: {0}")]
    OutOfOrder(&'static str),
}

/// One committed log entry, in log order. Entries without lease commands (Raft's empty entries after
/// an election, membership changes) arrive with no proposals so the applied index still advances.
#[derive(Debug, Clone)]
pub struct CommittedEntry {
    pub index: u64,
    pub proposals: Vec<Proposal>,
    /// A membership change: the state machine takes a snapshot after it, so that a node it adds can
    /// catch up from one (raft-rs refuses a snapshot whose configuration does not name the receiver,
    /// and every snapshot taken before the change does not).
    pub changes_membership: bool,
    /// The members it adds (with the peer address the change carried) or removes: the table keeps
    /// the addresses (`LeaseTable::member_addresses`), so a restarted node finds the members added
    /// since it was configured without a new `--peer` list.
    pub membership: Vec<MembershipChange>,
}

/// A committed change of the members.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MembershipChange {
    pub id: u64,
    /// Added (as a learner, or a learner promoted to voter), or removed.
    pub added: bool,
    /// For an addition: the peer address the change carried (its context), if it parses (a
    /// promotion carries none).
    pub addr: Option<std::net::SocketAddr>,
}

/// From the raft actor to the state machine owner, in log order.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum ToStateMachine {
    /// Replace the table with a snapshot (received from the leader).
    Restore { index: u64, data: Vec<u8> },
    /// Apply these committed entries.
    Entries(Vec<CommittedEntry>),
    /// These proposals will not come back through `Entries` from this node: it is not (or no longer)
    /// the leader, or their log entry was overwritten by another leader's. Never acknowledge them.
    Rejected(Vec<ProposalTag>),
}

/// From the raft actor to the node: what this node currently is in the Raft group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct RaftStatus {
    pub node_id: u64,
    pub term: u64,
    pub leader_id: Option<u64>,
    pub is_leader: bool,
    /// Until when (on the clock given to `Replica::tick`) this leader holds the leader lease: a
    /// quorum confirmed it recently enough that no other leader can have been elected before then
    /// (see `Replica`). `None` when not leader or not confirmed; `u64::MAX` for a sole voter. Only a
    /// leader whose lease has not run out answers broadcasts; callers compare with their own now,
    /// so a process that was paused does not trust a lease that ran out while it was.
    pub lease_until_us: Option<u64>,
    pub commit_index: u64,
}

/// From the node to the raft actor: lease commands to replicate. Sent with `try_send`; the node
/// bounds how many it has in flight.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Propose(pub Vec<Proposal>);

/// From the state machine owner to the raft actor: a snapshot of the table at `applied_index`, so the
/// log up to there can be compacted.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SnapshotTaken {
    pub applied_index: u64,
    pub data: Vec<u8>,
}

/// Microseconds on a monotonic clock since the first call in this process: the clock of the leader
/// lease (`Replica::tick` and `RaftStatus::lease_until_us`), immune to wall-clock steps.
pub fn monotonic_us() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    u64::try_from(EPOCH.get_or_init(std::time::Instant::now).elapsed().as_micros()).unwrap_or(u64::MAX)
}
