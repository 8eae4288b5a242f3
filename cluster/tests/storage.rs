//! The durable Raft log: what is written survives a reopen, conflicting suffixes are replaced, and
//! snapshots move the log's first index (raft-rs `Storage` contract, modelled on `MemStorage`).

use leasehold_cluster::storage::{CatchUpMark, DurableLog, LogStore, MemLog, ReadyWrite};
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, Storage, StorageError};

fn entry(index: u64, term: u64) -> Entry {
    Entry { index, term, data: format!("entry {index} of term {term}").into_bytes().into(), ..Entry::default() }
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|i| entry(i, term)).collect()
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState { term, vote, commit, ..HardState::default() }
}

fn voters(ids: &[u64]) -> ConfState {
    ConfState { voters: ids.to_vec(), ..ConfState::default() }
}

fn append(log: &mut impl DurableLog, new: &[Entry], hs: Option<&HardState>) {
    log.write_ready(ReadyWrite { snapshot: None, entries: new, hard_state: hs, must_sync: true }).expect("write");
}

fn read(log: &impl Storage, low: u64, high: u64) -> raft::Result<Vec<Entry>> {
    log.entries(low, high, None, GetEntriesContext::empty(false))
}

fn is_compacted<T: std::fmt::Debug>(result: raft::Result<T>) -> bool {
    matches!(result, Err(raft::Error::Store(StorageError::Compacted)))
}

fn is_unavailable<T: std::fmt::Debug>(result: raft::Result<T>) -> bool {
    matches!(result, Err(raft::Error::Store(StorageError::Unavailable)))
}

/// The same checks for both implementations: the simulation must see what the disk sees.
fn check_append_and_conflict(log: &mut impl DurableLog) {
    assert_eq!((log.first_index().unwrap(), log.last_index().unwrap()), (1, 0), "an empty log starts at 1");
    append(log, &entries(1..=10, 1), Some(&hard_state(1, 1, 5)));
    assert_eq!((log.first_index().unwrap(), log.last_index().unwrap()), (1, 10));
    assert_eq!(read(log, 3, 6).unwrap(), entries(3..=5, 1));
    assert_eq!(log.term(0).unwrap(), 0, "term of index 0 (the empty snapshot) is 0");
    assert!(is_unavailable(log.term(11)), "term past the last entry is Unavailable");
    assert!(is_unavailable(read(log, 5, 12)), "entries past the last are Unavailable");

    // A new leader at term 2 overwrites 8..: entries 8..=10 of term 1 must be gone, not just 8.
    append(log, &entries(8..=8, 2), Some(&hard_state(2, 2, 5)));
    assert_eq!(log.last_index().unwrap(), 8, "the stale suffix 9..=10 must be truncated");
    assert_eq!(log.term(8).unwrap(), 2);
    assert_eq!(log.term(7).unwrap(), 1);
    assert_eq!(read(log, 7, 9).unwrap(), vec![entry(7, 1), entry(8, 2)]);

    // max_size: at least one entry, then stop before exceeding it.
    let one = u64::from(protobuf::Message::compute_size(&entry(1, 1)));
    let limited = log.entries(1, 9, Some(one * 2 + 1), GetEntriesContext::empty(false)).unwrap();
    assert_eq!(limited.len(), 2, "max_size of two entries returns two");
    let at_least_one = log.entries(1, 9, Some(0), GetEntriesContext::empty(false)).unwrap();
    assert_eq!(at_least_one.len(), 1, "max_size 0 still returns one entry");

    // A hole is refused rather than written.
    let hole = log.write_ready(ReadyWrite { entries: &entries(20..=21, 2), must_sync: true, ..ReadyWrite::default() });
    assert!(hole.is_err(), "appending after a hole must fail");
    assert_eq!(log.last_index().unwrap(), 8, "a refused write changes nothing");
}

fn check_snapshot_and_compaction(log: &mut impl DurableLog) {
    append(log, &entries(1..=100, 1), Some(&hard_state(1, 1, 100)));
    log.set_conf_state(0, voters(&[1])).unwrap();
    // keep_entries is 10 for these logs: a snapshot at 60 keeps 51..=100.
    log.save_snapshot(60, 1, voters(&[1]), b"table at 60".to_vec()).unwrap();
    assert_eq!(log.first_index().unwrap(), 51);
    assert_eq!(log.last_index().unwrap(), 100);
    assert!(is_compacted(read(log, 50, 52)), "entries before the first are Compacted");
    assert!(is_compacted(log.term(49)));
    assert_eq!(log.term(60).unwrap(), 1);
    let snapshot = log.snapshot(0, 2).unwrap();
    assert_eq!(snapshot.get_metadata().index, 60);
    assert_eq!(&snapshot.data[..], b"table at 60");
    assert!(
        matches!(log.snapshot(61, 2), Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable))),
        "no snapshot at or after 61 yet"
    );
    // An older snapshot is ignored.
    log.save_snapshot(55, 1, voters(&[1]), b"older".to_vec()).unwrap();
    assert_eq!(log.snapshot_index(), 60);
}

fn check_restore(log: &mut impl DurableLog) {
    append(log, &entries(1..=50, 1), Some(&hard_state(1, 1, 20)));
    // The leader sends a snapshot at 30 of term 3: our log from 21 on conflicts and is replaced.
    let mut snapshot = Snapshot { data: b"table at 30".to_vec().into(), ..Snapshot::default() };
    snapshot.mut_metadata().index = 30;
    snapshot.mut_metadata().term = 3;
    snapshot.mut_metadata().set_conf_state(voters(&[1, 2, 3]));
    let hs = hard_state(3, 0, 30);
    log.write_ready(ReadyWrite { snapshot: Some(&snapshot), entries: &[], hard_state: Some(&hs), must_sync: true })
        .unwrap();
    assert_eq!((log.first_index().unwrap(), log.last_index().unwrap()), (31, 30), "the whole log is replaced");
    assert_eq!(log.term(30).unwrap(), 3, "term at the snapshot index is the snapshot's");
    assert!(is_compacted(log.term(29)));
    assert!(is_unavailable(log.term(31)));
    let state = log.initial_state().unwrap();
    assert_eq!(state.conf_state.voters, vec![1, 2, 3]);
    assert_eq!(state.hard_state.commit, 30);
    assert_eq!(log.conf_index(), 30);
    append(log, &entries(31..=32, 3), None);
    assert_eq!((log.first_index().unwrap(), log.last_index().unwrap()), (31, 32));
    assert_eq!(read(log, 31, 33).unwrap(), entries(31..=32, 3));
}

#[test]
fn log_store_appends_and_truncates_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogStore::open(dir.path(), true).unwrap();
    check_append_and_conflict(&mut log);
}

#[test]
fn mem_log_appends_and_truncates_conflicts() {
    check_append_and_conflict(&mut MemLog::new());
}

#[test]
fn log_store_reopens_with_everything() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = LogStore::open(dir.path(), true).unwrap();
        log.set_conf_state(0, voters(&[1, 2, 3])).unwrap();
        append(&mut log, &entries(1..=10, 1), Some(&hard_state(1, 1, 4)));
        append(&mut log, &entries(7..=9, 2), Some(&hard_state(2, 2, 6)));
        log.note_commit(8);
        // The noted commit rides along with the next write.
        append(&mut log, &entries(10..=12, 2), None);
        assert_eq!(log.stats().writes, 4);
        assert_eq!(log.stats().entries, 16);
    }
    let log = LogStore::open(dir.path(), true).unwrap();
    assert_eq!((log.first_index().unwrap(), log.last_index().unwrap()), (1, 12));
    let mut expected = entries(1..=6, 1);
    expected.extend(entries(7..=12, 2));
    assert_eq!(read(&log, 1, 13).unwrap(), expected, "entries after reopen, stale term-1 suffix gone");
    let state = log.initial_state().unwrap();
    assert_eq!(state.hard_state, hard_state(2, 2, 8));
    assert_eq!(state.conf_state.voters, vec![1, 2, 3]);
    assert!(log.latest_snapshot().unwrap().is_none());
}

#[test]
fn log_store_snapshot_compacts_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = LogStore::open(dir.path(), true).unwrap().with_keep_entries(10);
        check_snapshot_and_compaction(&mut log);
    }
    let log = LogStore::open(dir.path(), true).unwrap();
    assert_eq!((log.first_index().unwrap(), log.last_index().unwrap()), (51, 100), "compaction survives reopen");
    assert_eq!(log.term(60).unwrap(), 1);
    let snapshot = log.latest_snapshot().unwrap().expect("snapshot after reopen");
    assert_eq!(snapshot.get_metadata().index, 60);
    assert_eq!(snapshot.get_metadata().get_conf_state().voters, vec![1]);
    assert_eq!(&snapshot.data[..], b"table at 60");
}

#[test]
fn log_store_compacts_everything_without_kept_entries() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = LogStore::open(dir.path(), true).unwrap().with_keep_entries(0);
        append(&mut log, &entries(1..=20, 1), Some(&hard_state(1, 1, 20)));
        log.save_snapshot(20, 1, voters(&[1]), vec![7; 3 * 1024 * 1024]).unwrap();
        assert_eq!((log.first_index().unwrap(), log.last_index().unwrap()), (21, 20));
        assert_eq!(log.term(20).unwrap(), 1, "term at the boundary comes from the snapshot");
        assert!(is_compacted(log.term(19)));
        append(&mut log, &entries(21..=22, 1), None);
    }
    let log = LogStore::open(dir.path(), true).unwrap();
    assert_eq!((log.first_index().unwrap(), log.last_index().unwrap()), (21, 22));
    assert_eq!(log.latest_snapshot().unwrap().unwrap().data.len(), 3 * 1024 * 1024, "a multi-MiB snapshot");
}

#[test]
fn mem_log_snapshot_compacts() {
    check_snapshot_and_compaction(&mut MemLog::with_keep_entries(10));
}

#[test]
fn log_store_restores_a_leader_snapshot_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = LogStore::open(dir.path(), true).unwrap();
        check_restore(&mut log);
    }
    let log = LogStore::open(dir.path(), true).unwrap();
    assert_eq!((log.first_index().unwrap(), log.last_index().unwrap()), (31, 32));
    assert_eq!(log.term(30).unwrap(), 3);
    assert_eq!(log.conf_index(), 30);
    assert_eq!(log.initial_state().unwrap().hard_state, hard_state(3, 0, 30));
    assert_eq!(&log.latest_snapshot().unwrap().unwrap().data[..], b"table at 30");
}

#[test]
fn mem_log_restores_a_leader_snapshot() {
    check_restore(&mut MemLog::new());
}

#[test]
fn mem_log_clones_share_the_durable_state() {
    let mut log = MemLog::new();
    let kept = log.clone();
    append(&mut log, &entries(1..=3, 1), Some(&hard_state(1, 1, 3)));
    drop(log);
    assert_eq!(kept.last_index().unwrap(), 3, "a simulated crash keeps what was written");
    assert_eq!(kept.initial_state().unwrap().hard_state.commit, 3);
}

/// The catch-up mark of a log that started empty (DESIGN rule 6) survives a restart: a node that
/// crashes again half-way still does not vote with a partial log.
#[test]
fn log_store_keeps_the_catch_up_mark_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    for mark in [CatchUpMark::Fresh, CatchUpMark::Behind, CatchUpMark::Done] {
        {
            let mut log = LogStore::open(dir.path(), true).unwrap();
            log.set_catch_up(mark).unwrap();
        }
        let log = LogStore::open(dir.path(), true).unwrap();
        assert_eq!(log.catch_up(), mark);
    }
}

fn snapshot_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The snapshot lives in a file of its own (not resident in raft-engine): one file per data
/// directory, the one the log's metadata names; a newer file whose record never reached the log (a
/// crash between the two writes) is removed at open and the snapshot in force stays.
#[test]
fn log_store_keeps_one_snapshot_file_and_drops_one_the_log_never_recorded() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = LogStore::open(dir.path(), true).unwrap().with_keep_entries(5);
        append(&mut log, &entries(1..=40, 1), Some(&hard_state(1, 1, 40)));
        for index in [10, 20, 30] {
            log.save_snapshot(index, 1, voters(&[1]), format!("table at {index}").into_bytes()).unwrap();
            assert_eq!(snapshot_files(dir.path()).len(), 1, "only the latest file after the snapshot at {index}");
        }
    }
    let in_force = snapshot_files(dir.path());
    assert!(in_force[0].contains(&format!("{:020}", 30)), "{in_force:?}");
    // A crash after writing the file of a snapshot at 40 but before the log recorded it.
    let orphan = dir.path().join("snapshots").join(format!("snapshot-{:020}-{:020}.snap", 40, 1));
    std::fs::copy(dir.path().join("snapshots").join(&in_force[0]), &orphan).unwrap();
    std::fs::write(dir.path().join("snapshots").join("snapshot-x.tmp"), b"half written").unwrap();
    let log = LogStore::open(dir.path(), true).unwrap();
    assert_eq!(snapshot_files(dir.path()), in_force, "the unrecorded file and the temporary one are gone");
    assert_eq!(&log.latest_snapshot().unwrap().unwrap().data[..], b"table at 30");
}

/// A damaged or missing snapshot file stops the open with an error that names the file, rather than
/// serving from a table that is not the log's.
#[test]
fn log_store_refuses_a_damaged_or_missing_snapshot_file() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = LogStore::open(dir.path(), true).unwrap();
        append(&mut log, &entries(1..=20, 1), Some(&hard_state(1, 1, 20)));
        log.save_snapshot(20, 1, voters(&[1]), vec![9; 4096]).unwrap();
    }
    let file = dir.path().join("snapshots").join(&snapshot_files(dir.path())[0]);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let err = LogStore::open(dir.path(), true).unwrap().latest_snapshot().unwrap_err().to_string();
    assert!(err.contains("checksum mismatch") && err.contains(&*file.to_string_lossy()), "{err}");

    std::fs::remove_file(&file).unwrap();
    let err = LogStore::open(dir.path(), true).unwrap_err().to_string();
    assert!(err.contains("is missing") && err.contains("snapshot-"), "{err}");
}
