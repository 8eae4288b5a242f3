//! How a `Replica` is built: `ReplicaConfig`, and the limits it sets on raft-rs (bytes and appends in
//! flight per follower, uncommitted bytes, committed bytes per `Ready`), with check-quorum and
//! pre-vote always on.

/// Bytes of entries per append message to a follower.
const MAX_BYTES_PER_MESSAGE: u64 = 1024 * 1024;
/// Append messages in flight per follower.
const MAX_INFLIGHT_MESSAGES: usize = 256;
/// Bytes of proposed but uncommitted entries a leader accepts; beyond, proposals are dropped.
const MAX_UNCOMMITTED_BYTES: u64 = 64 * 1024 * 1024;
/// Bytes of committed entries handed out per `Ready` (a long replay spreads over several).
const MAX_COMMITTED_BYTES_PER_READY: u64 = 16 * 1024 * 1024;

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
    /// This node's lease-relevant config digest (its first 8 bytes; 0: none), reported to the
    /// leader with its progress so `GET /v1/cluster` shows every member's.
    pub config_digest: u64,
    /// Where this node's admin API listens, as other members reach it (`admin_addr_number`; 0: not
    /// known), reported with its progress (and, on the leader, to its followers) so that
    /// `GET /v1/cluster` shows it.
    pub admin_addr: u64,
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
            config_digest: 0,
            admin_addr: 0,
        }
    }

    pub(super) fn raft_config(&self) -> raft::Config {
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
