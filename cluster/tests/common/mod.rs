//! Helpers shared by the cluster crate's integration tests: proposals, a silent logger, and an
//! applier that checks committed entries arrive one index after another.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::net::Ipv4Addr;

use leasehold_cluster::replica::{Actions, Persist, Replica};
use leasehold_cluster::storage::DurableLog;
use leasehold_cluster::{ClientKey, ClusterError, Command, CommittedEntry, LeaseTable, Proposal, ProposalTag};

pub const GRACE_MS: u64 = 60_000;
pub const MAX_LEASES: usize = 100_000;

pub fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// A binding of a distinct address to a distinct client; `seq` orders the proposals.
pub fn proposal(node_id: u64, seq: u64) -> Proposal {
    proposal_with_hostname(node_id, seq, None)
}

pub fn proposal_with_hostname(node_id: u64, seq: u64, hostname: Option<String>) -> Proposal {
    let n = u32::try_from(seq).expect("test sequence fits in u32");
    let mac = [0x02, 0, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8];
    Proposal {
        tag: ProposalTag { node_id, incarnation: 1, seq },
        command: Command::Bind {
            client: ClientKey::Mac(mac),
            mac,
            client_id: None,
            hostname,
            ip: Ipv4Addr::from(0x0a00_0000 + n + 1),
            expires_at_ms: 1_000_000_000,
            proposed_at_ms: 1_000,
            decided_at_index: 0,
        },
    }
}

pub fn seqs(tags: &[ProposalTag]) -> Vec<u64> {
    tags.iter().map(|t| t.seq).collect()
}

/// One `advance`, its write made durable on the replica's log, and `persisted`: the messages that
/// could leave before the write come first in the actions.
pub fn advance<L: DurableLog>(replica: &mut Replica<L>) -> Result<Actions, ClusterError> {
    let Persist { mut messages, write } = replica.advance()?;
    let written = write.map(|write| replica.log_mut().write_ready(write.as_ready_write()).map(|()| write));
    let mut actions = replica.persisted(written.transpose())?;
    messages.append(&mut actions.messages);
    actions.messages = messages;
    Ok(actions)
}

/// Advance until the replica has nothing left to do, merging the actions.
pub fn drive<L: DurableLog>(replica: &mut Replica<L>) -> Actions {
    let mut all = Actions::default();
    for _ in 0..1_000 {
        if !replica.has_ready() {
            return all;
        }
        let actions = advance(replica).expect("advance");
        all.messages.extend(actions.messages);
        if actions.restore.is_some() {
            all.restore = actions.restore;
        }
        all.committed.extend(actions.committed);
        all.status = actions.status.or(all.status);
        all.rejected.extend(actions.rejected);
    }
    panic!("replica still has a ready after 1000 advances");
}

/// A state machine owner as the node runs it: applies committed entries in order, remembering the
/// tags it applied.
#[derive(Debug)]
pub struct Applier {
    pub table: LeaseTable,
    pub tags: Vec<ProposalTag>,
    pub first_index: Option<u64>,
}

impl Applier {
    pub fn new(table: LeaseTable) -> Self {
        Applier { table, tags: Vec::new(), first_index: None }
    }

    pub fn empty() -> Self {
        Applier::new(LeaseTable::new(GRACE_MS, MAX_LEASES))
    }

    pub fn restore(&mut self, index: u64, data: &[u8]) {
        self.table = LeaseTable::from_snapshot(data, GRACE_MS, MAX_LEASES).expect("snapshot decodes");
        assert_eq!(self.table.applied_index(), index, "restored table is at the snapshot's index");
    }

    pub fn apply(&mut self, committed: &[CommittedEntry]) {
        for entry in committed {
            assert_eq!(
                entry.index,
                self.table.applied_index() + 1,
                "committed entries must come one index after another"
            );
            self.first_index.get_or_insert(entry.index);
            self.table.apply(entry.index, &entry.proposals).expect("a new index applies");
            self.tags.extend(entry.proposals.iter().map(|p| p.tag));
        }
    }

    pub fn take(&mut self, actions: &Actions) {
        if let Some((index, data)) = &actions.restore {
            self.restore(*index, data);
        }
        self.apply(&actions.committed);
    }
}
