//! What a run tells: the `Report` of a run that passed (counts, the trace digest) and the
//! `Failure` of one that did not (the seed, the step, what was violated, the last events and the
//! command that replays it).

use std::fmt;

use super::SimConfig;

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub seed: u64,
    pub nodes: usize,
    pub clients: usize,
    /// Events delivered, all phases.
    pub steps: u64,
    pub virtual_us: u64,
    /// ACKs sent, both kinds: from a committed entry, and renewals confirmed from the table.
    pub acks: u64,
    /// ACKs confirming a committed lease without a proposal (DESIGN rule 5).
    pub confirmations: u64,
    /// ACKs from a committed entry sent by a node that is not the leader (a renewal addressed to
    /// it, proposed through the leader; or a leader that lost its role before the commit).
    pub follower_acks: u64,
    pub naks: u64,
    pub offers: u64,
    pub proposals: u64,
    pub refused_proposals: u64,
    pub leader_elections: u64,
    pub crashes: u64,
    pub disks_wiped: u64,
    /// Crashes of a leader after it sent its appends and before its own write of them.
    pub crashes_before_write: u64,
    pub partitions: u64,
    pub client_link_cuts: u64,
    pub weather_changes: u64,
    /// Leadership transfers a leader began (its lease given up).
    pub leader_transfers: u64,
    pub snapshots_taken: u64,
    pub snapshots_restored: u64,
    pub peer_messages: u64,
    pub client_messages: u64,
    pub digests_compared: u64,
    pub beliefs_checked: u64,
    pub final_applied_index: u64,
    /// Addresses a client got that another client had before.
    pub reassigned: u64,
    /// Lease-record collections the leaders proposed (`Command::Collect`).
    pub collections: u64,
    /// Client datagrams that two nodes answered (DESIGN rule 2 wants one).
    pub answered_twice: u64,
    /// How long after everything healed every client held an address.
    pub settle_us: u64,
    /// Clients behind the relay, replies the relay forwarded to them, and ACKs to their RENEWING
    /// requests sent straight to a node (giaddr 0).
    pub relayed_clients: u64,
    pub relayed_replies: u64,
    pub relayed_renewals: u64,
    /// Reservations in the config file, and ACKs to clients with a reservation.
    pub config_reservations: u64,
    pub reserved_acks: u64,
    /// The operator's reservation changes: asked for, refused (by the node at once, or at apply),
    /// and made (committed and applied on the node asked).
    pub reservations_asked: u64,
    pub unreservations_asked: u64,
    pub reservations_refused: u64,
    pub admin_done: u64,
    /// The operator's membership changes: asked for (additions, removals), proposed by a leader,
    /// refused by the membership guard (would lose quorum) or by a node that is not the leader.
    pub additions_asked: u64,
    pub removals_asked: u64,
    pub membership_proposed: u64,
    pub membership_refused: u64,
    pub membership_not_leader: u64,
    /// Committed configuration changes, and nodes the operator stopped after their removal.
    pub members_added: u64,
    pub members_removed: u64,
    pub decommissioned: u64,
    /// Nodes started to join with an empty data directory (spares, or removed and wiped), or with
    /// the one they had when removed.
    pub joins_empty: u64,
    pub joins_kept: u64,
    /// Digest of the whole event trace: equal for two runs of the same seed.
    pub trace_digest: u64,
}

impl Report {
    pub fn faults(&self) -> u64 {
        self.crashes + self.partitions + self.client_link_cuts + self.weather_changes + self.leader_transfers
    }

    /// Committed membership changes.
    pub fn membership_changes(&self) -> u64 {
        self.members_added + self.members_removed
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} ({} nodes, {} clients): {} steps, {:.1}s virtual, {} ACKs ({} confirmed without a commit, {} from followers), {} NAKs, \
             {} offers, {} proposals \
             ({} refused), {} elections, faults: {} crashes ({} losing the disk, {} before a leader's own write), {} partitions, {} client-link cuts, {} weather \
             changes, {} leader transfers; {} snapshots taken, {} restored; all clients bound {:.1}s after healing; applied index {}; \
             {} addresses passed between clients; {} record collections; {} datagrams answered by two nodes; \
             {} digests and {} beliefs checked; \
             relay: {} clients, {} replies relayed, {} direct renewals ACKed; \
             reservations: {} in the config, {} ACKs to reserved clients, {} made and {} ended by the operator \
             ({} refused, {} applied); membership: {} additions and {} removals asked ({} proposed, {} refused \
             by the quorum guard, {} by a follower), {} added and {} removed, {} nodes stopped, {} joined \
             empty and {} with their data; \
             trace digest {:#018x}",
            self.seed,
            self.nodes,
            self.clients,
            self.steps,
            self.virtual_us as f64 / 1e6,
            self.acks,
            self.confirmations,
            self.follower_acks,
            self.naks,
            self.offers,
            self.proposals,
            self.refused_proposals,
            self.leader_elections,
            self.crashes,
            self.disks_wiped,
            self.crashes_before_write,
            self.partitions,
            self.client_link_cuts,
            self.weather_changes,
            self.leader_transfers,
            self.snapshots_taken,
            self.snapshots_restored,
            self.settle_us as f64 / 1e6,
            self.final_applied_index,
            self.reassigned,
            self.collections,
            self.answered_twice,
            self.digests_compared,
            self.beliefs_checked,
            self.relayed_clients,
            self.relayed_replies,
            self.relayed_renewals,
            self.config_reservations,
            self.reserved_acks,
            self.reservations_asked,
            self.unreservations_asked,
            self.reservations_refused,
            self.admin_done,
            self.additions_asked,
            self.removals_asked,
            self.membership_proposed,
            self.membership_refused,
            self.membership_not_leader,
            self.members_added,
            self.members_removed,
            self.decommissioned,
            self.joins_empty,
            self.joins_kept,
            self.trace_digest
        )
    }
}

/// A checker violation (or a broken liveness promise), with what led to it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub config: SimConfig,
    pub step: u64,
    pub time_us: u64,
    pub message: String,
    pub trace: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} ({} nodes) FAILED at step {} (t={:.3}s): {}",
            self.config.seed,
            self.config.nodes,
            self.step,
            self.time_us as f64 / 1e6,
            self.message
        )?;
        writeln!(f, "replay: {}", self.config.replay_command())?;
        writeln!(f, "last events:")?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}
