//! Lease stores other than the embedded Raft log. The engine decides a proposal on its table
//! (`Engine::decide`); a store writes the decided changes and delivers every node's changes back in
//! one order (`StoreMail`), which is all the table is made of.

#[cfg(feature = "etcd")]
pub mod etcd;
pub mod etcd_keys;

use actix::prelude::*;
use leasehold_cluster::lease::{Change, LeaseTable, Outcome, Proposal};

/// From a store to the lease actor, in the store's order.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum StoreMail {
    /// Replace the table (the first load, or a reload after the watch fell behind compaction).
    Reset(Box<LeaseTable>),
    /// Changes committed at `revision`, from any node.
    Changes { revision: u64, changes: Vec<Change> },
    /// This node's proposal, decided as `outcome`, is committed and its changes applied (or it
    /// changed nothing): answer it.
    Committed { revision: u64, proposal: Box<Proposal>, outcome: Outcome },
    /// These proposals were not written (a compare failed, or etcd did not answer): never answer.
    Rejected(Vec<leasehold_cluster::ProposalTag>),
}

/// From the lease actor to a store: decided proposals to write, each as one transaction.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Transact(pub Vec<Decided>);

#[derive(Debug)]
pub struct Decided {
    pub proposal: Proposal,
    pub outcome: Outcome,
    pub write: etcd_keys::Write,
}

/// From the reload actor to the etcd store: write the shared part of this node's reloaded file to
/// `<prefix>/config`, so that every node takes it. Answers the revision written.
#[derive(Debug, Message)]
#[rtype(result = "Result<u64, String>")]
pub struct PublishConfig(pub String);

/// From `serve` to the etcd store: where the stored shared config goes (each version once), and
/// what `<prefix>/config` is created with when the pool has none yet (this node's shared part;
/// `None` when its file has no shared table, e.g. a node configured by flags alone).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ConnectConfig {
    pub sink: Recipient<crate::reload::SharedConfig>,
    pub seed: Option<String>,
}

/// What `/v1/cluster` and `/metrics` show of the etcd store.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StoreView {
    pub endpoints: Vec<String>,
    pub prefix: String,
    /// The node holding `/leader`, if any.
    pub elected: Option<u64>,
    /// The revision the table has applied (the watch's position).
    pub watch_revision: u64,
    /// The latest revision of etcd this node has heard of (watch headers, its transactions):
    /// `store_revision - watch_revision` is how far the watch lags.
    pub store_revision: u64,
    /// This node's etcd lease is alive (its last keep-alive is younger than the TTL).
    pub connected: bool,
    pub transactions: u64,
    /// Transactions refused because a key the decision read had changed.
    pub conflicts: u64,
    /// Transactions etcd did not answer, or refused with an error.
    pub failures: u64,
    /// Sum of transaction latencies, microseconds (with `transactions`: the mean).
    pub txn_latency_us_sum: u64,
    /// Loads of the whole pool after the first (a watch that etcd compacted past, or a load that
    /// failed and was tried again).
    pub resyncs: u64,
    /// Watches resumed from the table's revision after they broke (no reload needed).
    pub watch_resumes: u64,
    /// The revision of the shared config (`<prefix>/config`) this node runs (0: none taken yet).
    pub config_revision: u64,
    /// Why the latest stored shared config was not taken (the node runs the one before).
    pub config_error: Option<String>,
    /// Stored shared configs this node refused.
    pub config_rejected: u64,
    /// The live nodes, by their member keys.
    pub members: Vec<etcd_keys::Member>,
}

impl StoreView {
    /// On the elected node with a boot root digest: the members whose digest differs from its own
    /// (a member that says none is not counted). `None` elsewhere, as with the Raft leader.
    pub fn boot_root_mismatches(&self, node_id: u64) -> Option<Vec<u64>> {
        let own = self.elected.filter(|elected| *elected == node_id)?;
        let own = self.members.iter().find(|m| m.id == own)?.boot_root_digest.as_deref()?;
        let differs = |m: &&etcd_keys::Member| m.boot_root_digest.as_deref().is_some_and(|d| d != own);
        Some(self.members.iter().filter(differs).map(|m| m.id).collect())
    }

    /// The elected node's member, if it is live.
    pub fn elected_member(&self) -> Option<&etcd_keys::Member> {
        let elected = self.elected?;
        self.members.iter().find(|m| m.id == elected)
    }
}

impl StoreView {
    /// The etcd store's metrics, in Prometheus text.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let counters = [
            ("leasehold_etcd_transactions_total", "etcd transactions this node sent.", self.transactions),
            (
                "leasehold_etcd_conflicts_total",
                "etcd transactions refused by a compare (decided on a stale view).",
                self.conflicts,
            ),
            ("leasehold_etcd_failures_total", "etcd transactions that failed or got no answer.", self.failures),
            (
                "leasehold_etcd_txn_latency_microseconds_sum",
                "Sum of etcd transaction latencies.",
                self.txn_latency_us_sum,
            ),
            (
                "leasehold_etcd_resyncs_total",
                "Reloads of the whole pool after the watch fell behind compaction (or a load was retried).",
                self.resyncs,
            ),
            (
                "leasehold_etcd_watch_resumes_total",
                "Watches resumed from the table's revision after they broke.",
                self.watch_resumes,
            ),
            (
                "leasehold_etcd_config_rejected_total",
                "Stored shared configs (<prefix>/config) this node refused; it runs the one before.",
                self.config_rejected,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        }
        let gauges = [
            ("leasehold_etcd_watch_revision", "The etcd revision the lease table has applied.", self.watch_revision),
            (
                "leasehold_etcd_watch_lag_revisions",
                "Revisions etcd is known to have that the watch has not delivered yet.",
                self.store_revision.saturating_sub(self.watch_revision),
            ),
            ("leasehold_etcd_connected", "1 while this node's etcd lease is kept alive.", u64::from(self.connected)),
            ("leasehold_etcd_elected_node", "The node holding the election key (0: none).", self.elected.unwrap_or(0)),
            (
                "leasehold_etcd_config_revision",
                "The etcd revision of the shared config this node runs (0: none).",
                self.config_revision,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
    }
}

#[derive(Message)]
#[rtype(result = "StoreView")]
pub struct GetStoreView;

#[cfg(test)]
mod tests {
    use super::etcd_keys::Member;
    use super::StoreView;

    fn member(id: u64, boot_root_digest: Option<&str>) -> Member {
        Member { id, boot_root_digest: boot_root_digest.map(str::to_owned), ..Member::default() }
    }

    #[test]
    fn only_the_elected_node_flags_members_whose_boot_root_differs_from_its_own() {
        let members = vec![member(1, Some("aa")), member(2, Some("bb")), member(3, None), member(4, Some("aa"))];
        let view = StoreView { elected: Some(1), members, ..StoreView::default() };
        assert_eq!(view.boot_root_mismatches(1), Some(vec![2]), "3 says nothing; 4 agrees");
        assert_eq!(view.boot_root_mismatches(2), None, "not elected: nothing to say");
        let rootless = StoreView { elected: Some(3), ..view.clone() };
        assert_eq!(rootless.boot_root_mismatches(3), None, "an elected node without a root cannot compare");
        assert_eq!(view.elected_member().map(|m| m.id), Some(1));
    }
}
