//! One replica on its own (a cluster of one, DESIGN rule 7): it leads at once, group-commits bursts of
//! proposals, and after a restart replays exactly the committed entries its table has not applied.

mod common;

use std::path::Path;

use common::{drive, logger, proposal, proposal_with_hostname, seqs, Applier, GRACE_MS, MAX_LEASES};
use leasehold_cluster::actor;
use leasehold_cluster::replica::{Replica, ReplicaConfig, MAX_ENTRY_BYTES};
use leasehold_cluster::storage::{DurableLog, LogStore, MemLog};
use leasehold_cluster::ClusterError;
use raft::{GetEntriesContext, Storage};

fn start(log: LogStore, applied: u64) -> Replica<LogStore> {
    let config = ReplicaConfig { applied, ..ReplicaConfig::new(1) };
    Replica::new(&config, log, &logger()).expect("replica starts")
}

fn open(dir: &Path, keep_entries: u64) -> LogStore {
    LogStore::open(dir, true).expect("log opens").with_keep_entries(keep_entries)
}

#[test]
fn a_fresh_single_node_is_leader_after_the_first_advance() {
    let dir = tempfile::tempdir().unwrap();
    let mut replica = start(open(dir.path(), 1_000), 0);
    let actions = common::advance(&mut replica).unwrap();
    let status = actions.status.expect("the first advance reports a status");
    assert!(status.is_leader, "a cluster of one leads at once: {status:?}");
    assert_eq!(status.leader_id, Some(1));
    assert_eq!(status.term, 1);
    assert_eq!(status.commit_index, 1, "the election's empty entry commits in the same advance");
    assert_eq!(actions.committed.len(), 1);
    assert_eq!(actions.committed[0].index, 1);
    assert!(actions.committed[0].proposals.is_empty());
    assert!(actions.messages.is_empty(), "nobody to talk to");
    assert!(!replica.has_ready());
}

#[test]
fn bursts_are_group_committed_and_replayed_after_restarts() {
    let dir = tempfile::tempdir().unwrap();
    const BURSTS: u64 = 20;
    const PER_BURST: u64 = 50;

    // 1,000 proposals, each its own `propose` call (as separate Propose messages arrive), in bursts
    // between advances: each burst must become one entry and one write.
    let mut replica = start(open(dir.path(), 5), 0);
    let mut applier = Applier::empty();
    applier.take(&drive(&mut replica));
    let writes_before = replica.log().stats().writes;
    for burst in 0..BURSTS {
        for i in 0..PER_BURST {
            replica.propose(vec![proposal(1, burst * PER_BURST + i)]).expect("the leader accepts");
        }
        let actions = drive(&mut replica);
        assert!(actions.rejected.is_empty());
        applier.take(&actions);
    }
    assert_eq!(seqs(&applier.tags), (0..BURSTS * PER_BURST).collect::<Vec<_>>(), "all proposals, in order");
    let stats = replica.log().stats();
    assert_eq!(stats.writes - writes_before, BURSTS, "one write per burst: {stats:?}");
    assert!(stats.entries <= BURSTS + 1, "one entry per burst plus the election's: {stats:?}");
    assert_eq!(applier.table.len(), (BURSTS * PER_BURST) as usize);
    let digest = applier.table.digest();
    let applied = applier.table.applied_index();
    drop(replica);

    // Restart with an empty table: everything committed comes back, in order.
    let mut replica = start(open(dir.path(), 5), 0);
    let mut replayed = Applier::empty();
    let committed = drive(&mut replica).committed;
    let (before, after): (Vec<_>, Vec<_>) = committed.into_iter().partition(|e| e.index <= applied);
    replayed.apply(&before);
    assert_eq!(replayed.first_index, Some(1));
    assert_eq!(seqs(&replayed.tags), seqs(&applier.tags), "the replay holds every proposal in order");
    assert_eq!(replayed.table.digest(), digest, "the replayed table is the table before the restart");
    assert_eq!(after.len(), 1, "then the new term's empty entry");
    assert!(after[0].proposals.is_empty());
    replayed.apply(&after);

    // Snapshot the table, commit 100 more, restart from the snapshot.
    let snapshot_index = replayed.table.applied_index();
    assert!(replica.take_snapshot(snapshot_index, replayed.table.to_snapshot()).unwrap());
    assert_eq!(replica.log().first_index().unwrap(), snapshot_index - 4, "compacted, keeping 5 entries");
    for seq in 1_000..1_100 {
        replica.propose(vec![proposal(1, seq)]).unwrap();
    }
    replayed.take(&drive(&mut replica));
    let digest = replayed.table.digest();
    let applied = replayed.table.applied_index();
    drop(replica);

    let (log, table) = actor::open(dir.path(), true, GRACE_MS, MAX_LEASES, &logger()).unwrap();
    assert_eq!(table.applied_index(), snapshot_index, "the table comes back from the snapshot");
    assert_eq!(table.len(), 1_000);
    let mut replica = start(log.with_keep_entries(5), table.applied_index());
    let mut restarted = Applier::new(table);
    let committed = drive(&mut replica).committed;
    let (before, after): (Vec<_>, Vec<_>) = committed.into_iter().partition(|e| e.index <= applied);
    restarted.apply(&before);
    assert_eq!(restarted.first_index, Some(snapshot_index + 1), "only entries after the snapshot are replayed");
    assert_eq!(seqs(&restarted.tags), (1_000..1_100).collect::<Vec<_>>());
    assert_eq!(restarted.table.digest(), digest, "snapshot + replay is the table before the restart");
    assert_eq!(after.len(), 1, "then the new term's empty entry");
}

#[test]
fn a_table_behind_the_compacted_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut replica = start(open(dir.path(), 0), 0);
    let mut applier = Applier::empty();
    applier.take(&drive(&mut replica));
    replica.propose((0..10).map(|seq| proposal(1, seq)).collect()).unwrap();
    applier.take(&drive(&mut replica));
    assert!(replica.take_snapshot(applier.table.applied_index(), applier.table.to_snapshot()).unwrap());
    drop(replica);

    // Entries 1..=snapshot are gone: a table at 0 cannot be brought up to date from the log.
    let config = ReplicaConfig { applied: 0, ..ReplicaConfig::new(1) };
    let result = Replica::new(&config, open(dir.path(), 0), &logger());
    assert!(matches!(result, Err(ClusterError::Corrupt(_))), "got {:?}", result.map(|_| ()));
}

#[test]
fn a_burst_over_the_entry_limit_is_split_in_order() {
    let log = MemLog::new();
    let mut replica = Replica::new(&ReplicaConfig::new(1), log.clone(), &logger()).unwrap();
    let mut applier = Applier::empty();
    applier.take(&drive(&mut replica));
    let synced_before = log.stats().synced_writes;
    let hostname = "h".repeat(200);
    let burst: Vec<_> = (0..20_000).map(|seq| proposal_with_hostname(1, seq, Some(hostname.clone()))).collect();
    replica.propose(burst).unwrap();
    let actions = drive(&mut replica);
    applier.take(&actions);
    assert_eq!(seqs(&applier.tags), (0..20_000).collect::<Vec<_>>());
    let with_proposals: Vec<_> = actions.committed.iter().filter(|e| !e.proposals.is_empty()).collect();
    assert!(with_proposals.len() >= 4, "about 4.5 MiB must take several entries, got {}", with_proposals.len());
    for entry in with_proposals {
        let stored = log.entries(entry.index, entry.index + 1, None, GetEntriesContext::empty(false)).unwrap();
        assert!(stored[0].data.len() <= MAX_ENTRY_BYTES, "entry {} holds {} bytes", entry.index, stored[0].data.len());
    }
    assert_eq!(log.stats().synced_writes - synced_before, 1, "the whole burst in one write");
}

#[test]
fn a_follower_refuses_proposals_at_once() {
    let config = ReplicaConfig { voters: vec![1, 2, 3], ..ReplicaConfig::new(1) };
    let mut replica = Replica::new(&config, MemLog::new(), &logger()).unwrap();
    drive(&mut replica);
    assert!(!replica.is_leader());
    let refused = replica.propose(vec![proposal(1, 7)]).expect_err("a follower refuses");
    assert!(matches!(refused.reason, ClusterError::NotLeader));
    assert_eq!(seqs(&refused.proposals.iter().map(|p| p.tag).collect::<Vec<_>>()), vec![7]);
}

#[test]
fn the_replica_leaves_its_write_to_the_shell() {
    let log = MemLog::new();
    let mut replica = Replica::new(&ReplicaConfig::new(1), log.clone(), &logger()).unwrap();
    drive(&mut replica);
    replica.propose(vec![proposal(1, 1)]).unwrap();
    let writes_before = log.stats().writes;
    let persist = replica.advance().unwrap();
    let write = persist.write.expect("the proposal's entry is to be written");
    assert_eq!(write.entries.len(), 1);
    assert!(write.must_sync);
    assert_eq!(log.stats().writes, writes_before, "advance left the write to the shell");
    replica.log_mut().write_ready(write.as_ready_write()).unwrap();
    let actions = replica.persisted(Ok(Some(write))).unwrap();
    assert_eq!(log.stats().writes, writes_before + 1);
    let bound: Vec<_> = actions.committed.iter().filter(|e| !e.proposals.is_empty()).collect();
    assert_eq!(bound.len(), 1, "a sole voter commits its entry once it is durable");
}

#[test]
fn a_failed_write_halts_the_replica() {
    let mut replica = Replica::new(&ReplicaConfig::new(1), MemLog::new(), &logger()).unwrap();
    drive(&mut replica);
    replica.propose(vec![proposal(1, 1)]).unwrap();
    let persist = replica.advance().unwrap();
    assert!(persist.write.is_some());
    let failed = replica.persisted(Err(ClusterError::Corrupt("disk gone".into())));
    assert!(matches!(failed, Err(ClusterError::Corrupt(_))), "the write's error comes back: {failed:?}");
    assert!(!replica.has_ready(), "a halted replica has nothing to do");
    assert!(matches!(replica.advance(), Err(ClusterError::Halted)));
    assert!(
        matches!(replica.propose(vec![proposal(1, 2)]), Err(refused) if matches!(refused.reason, ClusterError::Halted))
    );
}

#[test]
fn nothing_but_the_write_comes_between_advance_and_persisted() {
    let mut replica = Replica::new(&ReplicaConfig::new(1), MemLog::new(), &logger()).unwrap();
    let persist = replica.advance().unwrap();
    assert!(persist.write.is_some(), "the first election's Ready");
    assert!(!replica.has_ready(), "nothing to advance while the write is pending");
    let message = raft::eraftpb::Message { to: 1, ..Default::default() };
    assert!(matches!(replica.step(message), Err(ClusterError::OutOfOrder(_))), "raft-rs takes no input now");
    assert!(matches!(replica.advance(), Err(ClusterError::OutOfOrder(_))));
    assert!(matches!(replica.persisted(Ok(None)), Err(ClusterError::Halted)), "and the replica halts");
}
