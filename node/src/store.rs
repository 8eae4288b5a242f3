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
/// what `<prefix>/config` is created with when the pool has none yet (this node's shared part).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ConnectConfig {
    pub sink: Recipient<crate::reload::SharedConfig>,
    pub seed: String,
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
    /// Loads of the whole pool after the first (a watch that broke or fell behind compaction).
    pub resyncs: u64,
    /// The revision of the shared config (`<prefix>/config`) this node runs (0: none taken yet).
    pub config_revision: u64,
    /// Why the latest stored shared config was not taken (the node runs the one before).
    pub config_error: Option<String>,
    /// Stored shared configs this node refused.
    pub config_rejected: u64,
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
                "Reloads of the pool after the watch broke or fell behind compaction.",
                self.resyncs,
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
