//! A data directory written before log entries and snapshots carried a version (plain bincode), and
//! before snapshots had files of their own (the whole snapshot a value in raft-engine), opens with
//! this build, and every lease in it survives: the snapshot moves to a file and is read as version 1,
//! the entries after it replay (issue 10: "a data directory written before this change opens after
//! it").

mod common;

use std::net::Ipv4Addr;

use common::{drive, logger, proposal, Applier, GRACE_MS, MAX_LEASES};
use leasehold_cluster::replica::{Replica, ReplicaConfig};
use leasehold_cluster::storage::{DurableLog, EntryCodec, RAFT_GROUP_ID};
use leasehold_cluster::{actor, Lease, LeaseTable, Proposal};
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};

/// The snapshot layout before versions: applied index and the leases, bincode, no mark.
#[derive(serde::Serialize)]
struct SnapshotV1 {
    applied_index: u64,
    leases: Vec<Lease>,
}

fn unversioned_entry(index: u64, proposals: &[Proposal]) -> Entry {
    let data = bincode::serde::encode_to_vec(proposals, bincode::config::standard()).expect("encode");
    Entry { index, term: 1, data: data.into(), ..Entry::default() }
}

#[test]
fn an_unversioned_data_directory_opens_and_keeps_every_lease() {
    let dir = tempfile::tempdir().unwrap();
    // What the previous build wrote: 100 bindings applied into a snapshot at index 2, then three
    // entries of 10 bindings each after it, all committed, all in the old encodings.
    let mut old = LeaseTable::new(GRACE_MS, MAX_LEASES);
    old.apply(1, &[]).unwrap();
    old.apply(2, &(0..100).map(|seq| proposal(1, seq)).collect::<Vec<_>>()).unwrap();
    let v1 = SnapshotV1 { applied_index: 2, leases: old.iter().cloned().collect() };
    let mut snapshot = Snapshot {
        data: bincode::serde::encode_to_vec(&v1, bincode::config::standard()).unwrap().into(),
        ..Snapshot::default()
    };
    snapshot.mut_metadata().index = 2;
    snapshot.mut_metadata().term = 1;
    snapshot.mut_metadata().set_conf_state(ConfState { voters: vec![1], ..ConfState::default() });
    let later: Vec<Vec<Proposal>> = (0..3).map(|e| (0..10).map(|i| proposal(1, 100 + e * 10 + i)).collect()).collect();
    let entries: Vec<Entry> = later.iter().enumerate().map(|(i, p)| unversioned_entry(3 + i as u64, p)).collect();
    {
        // The previous layout, key by key, in raft-engine at <data_dir>/raft.
        let config = raft_engine::Config { dir: dir.path().join("raft").display().to_string(), ..Default::default() };
        let engine = raft_engine::Engine::open(config).expect("raft-engine opens a new directory");
        let hard_state = HardState { term: 1, vote: 1, commit: 5, ..HardState::default() };
        let mut batch = raft_engine::LogBatch::default();
        batch.put_message(RAFT_GROUP_ID, b"snapshot".to_vec(), &snapshot).unwrap();
        batch.put_message(RAFT_GROUP_ID, b"snapshot_meta".to_vec(), snapshot.get_metadata()).unwrap();
        batch.put_message(RAFT_GROUP_ID, b"conf_state".to_vec(), snapshot.get_metadata().get_conf_state()).unwrap();
        batch.put(RAFT_GROUP_ID, b"conf_index".to_vec(), 2u64.to_be_bytes().to_vec()).unwrap();
        batch.put_message(RAFT_GROUP_ID, b"hard_state".to_vec(), &hard_state).unwrap();
        batch.add_entries::<EntryCodec>(RAFT_GROUP_ID, &entries).unwrap();
        engine.write(&mut batch, true).expect("write the old layout");
    }

    // This build: the table from the unversioned snapshot, then the unversioned entries replayed.
    let (log, table) = actor::open(dir.path(), true, GRACE_MS, MAX_LEASES, &logger()).expect("the old directory opens");
    assert_eq!((table.applied_index(), table.len()), (2, 100), "the version-1 snapshot's table");
    let files: Vec<_> =
        std::fs::read_dir(dir.path().join("snapshots")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files.len(), 1, "the snapshot moved to a file: {files:?}");
    assert_eq!(log.latest_snapshot().unwrap().map(|s| s.data.len()), Some(snapshot.data.len()));
    let config = ReplicaConfig { applied: table.applied_index(), ..ReplicaConfig::new(1) };
    let mut replica = Replica::new(&config, log, &logger()).expect("the replica starts on the old log");
    let mut applier = Applier::new(table);
    let actions = drive(&mut replica);
    let replayed: Vec<u64> = actions.committed.iter().filter(|e| e.index <= 5).map(|e| e.index).collect();
    assert_eq!(replayed, vec![3, 4, 5], "the unversioned entries after the snapshot replay");
    applier.take(&actions);
    assert_eq!(applier.table.len(), 130, "every lease survives: 100 from the snapshot, 30 from the entries");
    for seq in 0..130u32 {
        let ip = Ipv4Addr::from(0x0a00_0000 + seq + 1);
        assert!(applier.table.by_ip(ip).is_some_and(|l| l.is_active(1_000)), "lease {ip} lost");
    }
    // And what this build writes from here on is versioned: a snapshot of the upgraded table.
    assert_eq!(applier.table.to_snapshot()[0], 0xff);

    // Opened again, the directory no longer needs the old key: the file is the snapshot.
    drop((replica, applier));
    {
        let config = raft_engine::Config { dir: dir.path().join("raft").display().to_string(), ..Default::default() };
        let engine = raft_engine::Engine::open(config).expect("raft-engine reopens");
        assert!(engine.get(RAFT_GROUP_ID, b"snapshot").is_none(), "the old copy is gone from raft-engine");
    }
    let (_, again) = actor::open(dir.path(), true, GRACE_MS, MAX_LEASES, &logger()).expect("reopens");
    assert_eq!((again.applied_index(), again.len()), (2, 100));
}

/// A committed entry this build cannot decode (here: written by a later version) stops the replica
/// with the entry's index and the reason; it is never skipped, as a table that skipped it would
/// serve from state the log has moved past.
#[test]
fn a_committed_entry_of_a_later_version_stops_the_replica_with_its_index() {
    use leasehold_cluster::storage::{LogStore, ReadyWrite};
    use leasehold_cluster::ClusterError;
    use raft::Storage;

    let dir = tempfile::tempdir().unwrap();
    let start = |applied: u64| {
        let log = LogStore::open(dir.path(), true).expect("the log opens");
        let config = ReplicaConfig { applied, ..ReplicaConfig::new(1) };
        Replica::new(&config, log, &logger()).expect("the replica starts")
    };
    let mut replica = start(0);
    drive(&mut replica);
    replica.propose(vec![proposal(1, 1)]).expect("the leader takes a proposal");
    let committed = drive(&mut replica).committed;
    let last = committed.last().expect("the proposal commits").index;
    drop(replica);

    // What a later build would have appended and committed: version 9 of the entry encoding.
    let mut log = LogStore::open(dir.path(), true).expect("the log opens");
    let mut hard_state = log.initial_state().expect("the stored state").hard_state;
    let bad = Entry {
        index: last + 1,
        term: hard_state.term,
        data: vec![0xff, b'L', b'E', 9, 1, 2, 3].into(),
        ..Entry::default()
    };
    hard_state.commit = last + 1;
    let write = ReadyWrite { snapshot: None, entries: &[bad], hard_state: Some(&hard_state), must_sync: true };
    log.write_ready(write).expect("write the later entry");
    drop(log);

    let mut replica = start(last);
    let error = (0..10)
        .find_map(|_| common::advance(&mut replica).err())
        .expect("the replica stops at the entry it cannot decode");
    let text = error.to_string();
    assert!(matches!(error, ClusterError::Corrupt(_)), "{text}");
    assert!(text.contains(&format!("committed entry {}", last + 1)) && text.contains("version 9"), "{text}");
}
