//! The durable Raft log: entries, hard state, configuration and the latest snapshot.
//!
//! `DurableLog` is what the replica needs from its log beyond raft-rs's read-only `Storage`: make one
//! `Ready` durable in one write (the group commit), record configuration changes, keep a snapshot of
//! the lease table and compact the log behind it. Two implementations:
//!
//! - `LogStore`: raft-engine at `<data_dir>/raft`. Every `Ready` becomes one `LogBatch` and one
//!   `Engine::write` with one fsync; metadata lives in raft-engine's key-value space of the group,
//!   the snapshot itself in a file under `<data_dir>/snapshots` (see `snapshot_file`).
//! - `MemLog`: the same semantics in memory, for the deterministic cluster simulation. It is a shared
//!   handle: a simulated crash drops the replica and keeps a clone of the `MemLog`, whose contents are
//!   what the node had made durable.
//!
//! Both follow raft-rs's `MemStorage` contract around the snapshot boundary: `first_index` is the
//! first entry still held (`snapshot.index + 1` once everything before is gone), `term(snapshot.index)`
//! is the snapshot's term, indexes below the first are `Compacted` and above the last `Unavailable`.
//! A write that fails changes nothing in memory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use raft_engine::{Command as EngineCommand, Engine, LogBatch, ReadableSize};

use crate::ClusterError;

mod snapshot_file;
use snapshot_file::SnapshotFiles;

/// The raft-engine group id of the lease log (one Raft group per process).
pub const RAFT_GROUP_ID: u64 = 1;
/// Entries kept behind a local snapshot, so a briefly lagging follower catches up from the log.
pub const DEFAULT_KEEP_ENTRIES: u64 = 1_000;
/// raft-engine rotates log files at this size.
const ENGINE_TARGET_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// raft-engine rewrites and purges old files once the append queue exceeds this size.
const ENGINE_PURGE_THRESHOLD_BYTES: u64 = 1024 * 1024 * 1024;

const KEY_HARD_STATE: &[u8] = b"hard_state";
const KEY_CONF_STATE: &[u8] = b"conf_state";
const KEY_CONF_INDEX: &[u8] = b"conf_index";
/// Where builds before snapshot files kept the whole snapshot (read once, moved to a file).
const KEY_SNAPSHOT: &[u8] = b"snapshot";
const KEY_SNAPSHOT_META: &[u8] = b"snapshot_meta";
const KEY_CATCHING_UP: &[u8] = b"catching_up";

/// What one `Ready` asks to make durable. Written as one batch, in this order: the snapshot (which
/// replaces the whole log), the entries (which replace any conflicting suffix), the hard state.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadyWrite<'a> {
    pub snapshot: Option<&'a Snapshot>,
    pub entries: &'a [Entry],
    pub hard_state: Option<&'a HardState>,
    /// raft-rs's `Ready::must_sync`: false when only the commit index moved, which needs no fsync.
    pub must_sync: bool,
}

/// Counters of the writes a log made (the group commit shows as `writes` far below proposals).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LogStats {
    /// Batches written (one per persisted `Ready`, snapshot or configuration change).
    pub writes: u64,
    /// Of those, the ones followed by an fsync.
    pub synced_writes: u64,
    /// Log entries appended.
    pub entries: u64,
}

/// Upper bounds of `LOG_SYNC_LATENCY`'s buckets, in microseconds.
pub const SYNC_LATENCY_BUCKETS_US: [u64; 12] =
    [100, 250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 250_000, 1_000_000];

/// How long the log's synced writes took (write + fsync), for `/metrics`: a process holds one node's
/// log, so one histogram per process, bumped without locks by the raft thread.
pub struct SyncLatency {
    pub buckets: [std::sync::atomic::AtomicU64; SYNC_LATENCY_BUCKETS_US.len()],
    pub count: std::sync::atomic::AtomicU64,
    pub sum_us: std::sync::atomic::AtomicU64,
}

impl SyncLatency {
    fn record(&self, us: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(i) = SYNC_LATENCY_BUCKETS_US.iter().position(|bound| us <= *bound) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }
}

pub static LOG_SYNC_LATENCY: SyncLatency = SyncLatency {
    buckets: [const { std::sync::atomic::AtomicU64::new(0) }; SYNC_LATENCY_BUCKETS_US.len()],
    count: std::sync::atomic::AtomicU64::new(0),
    sum_us: std::sync::atomic::AtomicU64::new(0),
};

/// The replica's durable log. Reads go through raft-rs's `Storage`; writes through these methods.
pub trait DurableLog: Storage {
    /// Make one `Ready` durable: one batch, at most one fsync.
    fn write_ready(&mut self, write: ReadyWrite<'_>) -> Result<(), ClusterError>;

    /// Record a commit index learnt after a `Ready` (raft-rs's `LightReady`). It is written with the
    /// next batch, not on its own: a lost commit index is relearnt from the log after a restart.
    fn note_commit(&mut self, commit: u64);

    /// Record the configuration in force after applying the configuration change at `index`.
    fn set_conf_state(&mut self, index: u64, conf_state: ConfState) -> Result<(), ClusterError>;

    /// Index of the configuration change the stored `ConfState` reflects (0: the bootstrap one, or
    /// a snapshot's index after a restore).
    fn conf_index(&self) -> u64;

    /// Store a snapshot of the state machine taken at `index` and compact the log behind it, keeping
    /// the configured number of trailing entries. Ignored when not newer than the stored snapshot.
    fn save_snapshot(
        &mut self,
        index: u64,
        term: u64,
        conf_state: ConfState,
        data: Vec<u8>,
    ) -> Result<(), ClusterError>;

    /// The latest snapshot (metadata and state machine data), if any was stored.
    fn latest_snapshot(&self) -> Result<Option<Snapshot>, ClusterError>;

    /// Index of the latest snapshot (0: none).
    fn snapshot_index(&self) -> u64;

    fn stats(&self) -> LogStats;

    /// Where a log that started empty stands in catching up (see `Replica`). Kept across restarts,
    /// so a node that crashes again half-way still knows its log is not to be trusted for votes.
    fn catch_up(&self) -> CatchUpMark;

    /// Record `catch_up`, durably.
    fn set_catch_up(&mut self, mark: CatchUpMark) -> Result<(), ClusterError>;

    /// The commit index on disk (0 when unreadable): what a restarted node's table must have applied
    /// before it answers anyone.
    fn committed_index(&self) -> u64 {
        self.initial_state().map_or(0, |state| state.hard_state.commit)
    }
}

/// How far a log that started empty has caught up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CatchUpMark {
    /// Not catching up: the log holds everything this node acknowledged.
    #[default]
    Done,
    /// Started empty, and no peer has shown a log with entries: this may be a new cluster, whose
    /// first election only empty logs take part in.
    Fresh,
    /// Started empty in a cluster that has a history: takes no part in elections until a leader
    /// has brought it up to date.
    Behind,
}

impl CatchUpMark {
    fn to_byte(self) -> Option<u8> {
        match self {
            CatchUpMark::Done => None,
            CatchUpMark::Fresh => Some(1),
            CatchUpMark::Behind => Some(2),
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(CatchUpMark::Fresh),
            2 => Some(CatchUpMark::Behind),
            _ => None,
        }
    }
}

/// raft-engine's view of a Raft entry: it needs to know how to read the index.
#[derive(Debug, Clone, Copy)]
pub struct EntryCodec;

impl raft_engine::MessageExt for EntryCodec {
    type Entry = Entry;

    fn index(entry: &Entry) -> u64 {
        entry.index
    }
}

/// Where appended entries must start: not below the first held entry (raft never rewrites what is
/// committed, and everything compacted is committed) and not after a hole.
fn check_append(entries: &[Entry], first_index: u64, last_index: u64) -> Result<(), ClusterError> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Ok(());
    };
    if first.index < first_index || first.index > last_index + 1 {
        return Err(ClusterError::Corrupt(format!(
            "append of entries {}..={} to a log holding {first_index}..={last_index}",
            first.index, last.index
        )));
    }
    if last.index != first.index + entries.len() as u64 - 1 {
        return Err(ClusterError::Corrupt(format!(
            "append of non-contiguous entries {}..={}",
            first.index, last.index
        )));
    }
    Ok(())
}

/// raft::Storage's contract for reading `[low, high)` from a log holding `[first, last]`: below the
/// first held entry is compacted, past the last one is unavailable.
fn check_entries_range(low: u64, high: u64, first: u64, last: u64) -> raft::Result<()> {
    if low < first {
        return Err(raft::Error::Store(StorageError::Compacted));
    }
    if high > last + 1 {
        return Err(raft::Error::Store(StorageError::Unavailable));
    }
    Ok(())
}

/// The hard state after restoring `meta`: the snapshot's term and index are committed.
fn hard_state_after_snapshot(current: &HardState, meta: &SnapshotMetadata) -> HardState {
    let mut hard_state = current.clone();
    if meta.term > hard_state.term {
        hard_state.term = meta.term;
        hard_state.vote = 0;
    }
    hard_state.commit = hard_state.commit.max(meta.index);
    hard_state
}

fn new_snapshot(index: u64, term: u64, conf_state: ConfState, data: Vec<u8>) -> Snapshot {
    let metadata = SnapshotMetadata { index, term, conf_state: Some(conf_state).into(), ..SnapshotMetadata::default() };
    Snapshot { data: data.into(), metadata: Some(metadata).into(), ..Snapshot::default() }
}

fn raft_storage_error(error: raft_engine::Error) -> raft::Error {
    match error {
        raft_engine::Error::EntryCompacted => raft::Error::Store(StorageError::Compacted),
        raft_engine::Error::EntryNotFound => raft::Error::Store(StorageError::Unavailable),
        other => raft::Error::Store(StorageError::Other(Box::new(other))),
    }
}

/// `max_size` as raft-rs passes it (`None` or `NO_LIMIT` mean unlimited).
fn size_limit(max_size: Option<u64>) -> Option<u64> {
    max_size.filter(|&m| m != raft::NO_LIMIT)
}

/// The Raft log on disk, in raft-engine.
pub struct LogStore {
    engine: Engine,
    path: PathBuf,
    snapshots: SnapshotFiles,
    fsync: bool,
    keep_entries: u64,
    // Cached copies of what is on disk (or, for `commit_dirty`, about to be).
    hard_state: HardState,
    commit_dirty: bool,
    conf_state: ConfState,
    conf_index: u64,
    snapshot_meta: SnapshotMetadata,
    catch_up: CatchUpMark,
    stats: LogStats,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("path", &self.path)
            .field("fsync", &self.fsync)
            .field("hard_state", &self.hard_state)
            .field("conf_state", &self.conf_state)
            .field("snapshot_index", &self.snapshot_meta.index)
            .finish_non_exhaustive()
    }
}

impl LogStore {
    /// Open (or create) the log at `<data_dir>/raft`. `fsync` makes every `Ready` durable before its
    /// effects are used; turn it off only for tests and benchmarks.
    pub fn open(data_dir: &Path, fsync: bool) -> Result<Self, ClusterError> {
        let path = data_dir.join("raft");
        let storage_error = |source| ClusterError::Storage { path: path.display().to_string(), source };
        std::fs::create_dir_all(&path).map_err(|e| storage_error(raft_engine::Error::Io(e)))?;
        let config = raft_engine::Config {
            dir: path.display().to_string(),
            target_file_size: ReadableSize(ENGINE_TARGET_FILE_BYTES),
            purge_threshold: ReadableSize(ENGINE_PURGE_THRESHOLD_BYTES),
            ..raft_engine::Config::default()
        };
        let engine = Engine::open(config).map_err(storage_error)?;
        let hard_state: HardState =
            engine.get_message(RAFT_GROUP_ID, KEY_HARD_STATE).map_err(storage_error)?.unwrap_or_default();
        let conf_state: ConfState =
            engine.get_message(RAFT_GROUP_ID, KEY_CONF_STATE).map_err(storage_error)?.unwrap_or_default();
        let conf_index = match engine.get(RAFT_GROUP_ID, KEY_CONF_INDEX) {
            None => 0,
            Some(bytes) => u64::from_be_bytes(
                bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| ClusterError::Corrupt(format!("{}: conf_index", path.display())))?,
            ),
        };
        let snapshot_meta: SnapshotMetadata =
            engine.get_message(RAFT_GROUP_ID, KEY_SNAPSHOT_META).map_err(storage_error)?.unwrap_or_default();
        let catch_up = match engine.get(RAFT_GROUP_ID, KEY_CATCHING_UP) {
            None => CatchUpMark::Done,
            Some(bytes) => match bytes.as_slice() {
                [byte] => CatchUpMark::from_byte(*byte),
                _ => None,
            }
            .ok_or_else(|| ClusterError::Corrupt(format!("{}: catching_up", path.display())))?,
        };
        let snapshots = SnapshotFiles::open(data_dir.join("snapshots"), fsync)?;
        let mut store = LogStore {
            engine,
            path,
            snapshots,
            fsync,
            keep_entries: DEFAULT_KEEP_ENTRIES,
            hard_state,
            commit_dirty: false,
            conf_state,
            conf_index,
            snapshot_meta,
            catch_up,
            stats: LogStats::default(),
        };
        store.check_consistent()?;
        store.open_snapshot()?;
        Ok(store)
    }

    /// Find the file of the snapshot in force (moving one that an earlier build kept in raft-engine
    /// into a file) and remove any other.
    fn open_snapshot(&mut self) -> Result<(), ClusterError> {
        let meta = self.snapshot_meta.clone();
        if meta.index == 0 {
            return self.snapshots.remove_others(None);
        }
        if !self.snapshots.exists(&meta) {
            let legacy: Option<Snapshot> =
                self.engine.get_message(RAFT_GROUP_ID, KEY_SNAPSHOT).map_err(|e| self.storage_error(e))?;
            let Some(legacy) = legacy else {
                return Err(ClusterError::Corrupt(format!(
                    "{}: the log is compacted up to the snapshot at {} but its file {} is missing",
                    self.path.display(),
                    meta.index,
                    self.snapshots.path_of(meta.index, meta.term).display()
                )));
            };
            self.snapshots.write(&meta, &legacy.data)?;
        }
        if self.engine.get(RAFT_GROUP_ID, KEY_SNAPSHOT).is_some() {
            let mut batch = LogBatch::default();
            batch.delete(RAFT_GROUP_ID, KEY_SNAPSHOT.to_vec());
            self.write_batch(&mut batch, self.fsync)?;
        }
        self.snapshots.remove_others(Some(&meta))
    }

    /// Keep `keep_entries` entries behind each local snapshot (default `DEFAULT_KEEP_ENTRIES`).
    pub fn with_keep_entries(mut self, keep_entries: u64) -> Self {
        self.keep_entries = keep_entries;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn storage_error(&self, source: raft_engine::Error) -> ClusterError {
        ClusterError::Storage { path: self.path.display().to_string(), source }
    }

    fn first(&self) -> u64 {
        self.engine.first_index(RAFT_GROUP_ID).unwrap_or(self.snapshot_meta.index + 1)
    }

    fn last(&self) -> u64 {
        self.engine.last_index(RAFT_GROUP_ID).unwrap_or(self.snapshot_meta.index)
    }

    /// What a reopened log must satisfy for raft-rs to accept it.
    fn check_consistent(&self) -> Result<(), ClusterError> {
        let (first, last) = (self.first(), self.last());
        let snapshot_index = self.snapshot_meta.index;
        if first > snapshot_index + 1 || last < snapshot_index {
            return Err(ClusterError::Corrupt(format!(
                "{}: log holds {first}..={last} but the snapshot is at {snapshot_index}",
                self.path.display()
            )));
        }
        if self.hard_state.commit > last {
            return Err(ClusterError::Corrupt(format!(
                "{}: commit index {} beyond the last entry {last}",
                self.path.display(),
                self.hard_state.commit
            )));
        }
        Ok(())
    }

    fn put_message<M: protobuf::Message>(
        &self,
        batch: &mut LogBatch,
        key: &[u8],
        message: &M,
    ) -> Result<(), ClusterError> {
        batch.put_message(RAFT_GROUP_ID, key.to_vec(), message).map_err(|e| self.storage_error(e))
    }

    fn put_conf(&self, batch: &mut LogBatch, index: u64, conf_state: &ConfState) -> Result<(), ClusterError> {
        self.put_message(batch, KEY_CONF_STATE, conf_state)?;
        batch
            .put(RAFT_GROUP_ID, KEY_CONF_INDEX.to_vec(), index.to_be_bytes().to_vec())
            .map_err(|e| self.storage_error(e))
    }

    fn write_batch(&mut self, batch: &mut LogBatch, sync: bool) -> Result<(), ClusterError> {
        let started = std::time::Instant::now();
        self.engine.write(batch, sync).map_err(|e| self.storage_error(e))?;
        self.stats.writes += 1;
        if sync {
            self.stats.synced_writes += 1;
            LOG_SYNC_LATENCY.record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        }
        Ok(())
    }
}

impl Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard_state.clone(), self.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        check_entries_range(low, high, self.first(), self.last())?;
        let mut entries = Vec::with_capacity(high.saturating_sub(low) as usize);
        if low >= high {
            return Ok(entries);
        }
        let max_size = size_limit(max_size.into()).map(|m| usize::try_from(m).unwrap_or(usize::MAX));
        self.engine
            .fetch_entries_to::<EntryCodec>(RAFT_GROUP_ID, low, high, max_size, &mut entries)
            .map_err(raft_storage_error)?;
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        if index == self.snapshot_meta.index {
            return Ok(self.snapshot_meta.term);
        }
        check_entries_range(index, index + 1, self.first(), self.last())?;
        match self.engine.get_entry::<EntryCodec>(RAFT_GROUP_ID, index).map_err(raft_storage_error)? {
            Some(entry) => Ok(entry.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.snapshot_meta.index == 0 || self.snapshot_meta.index < request_index {
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        self.snapshots.read(&self.snapshot_meta).map_err(|e| raft::Error::Store(StorageError::Other(Box::new(e))))
    }
}

impl DurableLog for LogStore {
    fn write_ready(&mut self, write: ReadyWrite<'_>) -> Result<(), ClusterError> {
        let mut batch = LogBatch::default();
        // The state after this batch; committed to `self` only once the write succeeded.
        let mut hard_state = write.hard_state.cloned().unwrap_or_else(|| self.hard_state.clone());
        let mut hard_state_changed = write.hard_state.is_some() || self.commit_dirty;
        hard_state.commit = hard_state.commit.max(self.hard_state.commit);
        let mut snapshot_meta = None;
        let mut new_file = None;
        let (mut first, mut last) = (self.first(), self.last());

        if let Some(snapshot) = write.snapshot {
            let meta = snapshot.get_metadata();
            if meta.index < self.snapshot_meta.index {
                return Err(ClusterError::Corrupt(format!(
                    "restore of snapshot {} older than the stored {}",
                    meta.index, self.snapshot_meta.index
                )));
            }
            // The snapshot replaces the whole log, like MemStorage::apply_snapshot. Its file is
            // durable before the batch that makes it the one in force.
            new_file = Some(self.snapshots.write(meta, &snapshot.data)?);
            batch.add_command(RAFT_GROUP_ID, EngineCommand::Clean);
            self.put_message(&mut batch, KEY_SNAPSHOT_META, meta)?;
            self.put_conf(&mut batch, meta.index, meta.get_conf_state())?;
            hard_state = hard_state_after_snapshot(&hard_state, meta);
            hard_state_changed = true;
            (first, last) = (meta.index + 1, meta.index);
            snapshot_meta = Some(meta.clone());
        }

        let written = (|| {
            check_append(write.entries, first, last)?;
            batch.add_entries::<EntryCodec>(RAFT_GROUP_ID, write.entries).map_err(|e| self.storage_error(e))?;
            if let Some(entry) = write.entries.last() {
                last = entry.index;
            }
            if hard_state.commit > last {
                return Err(ClusterError::Corrupt(format!(
                    "commit index {} beyond the last entry {last}",
                    hard_state.commit
                )));
            }
            if hard_state_changed {
                self.put_message(&mut batch, KEY_HARD_STATE, &hard_state)?;
            }
            if batch.is_empty() {
                return Ok(false);
            }
            let sync = self.fsync && (write.must_sync || write.snapshot.is_some() || !write.entries.is_empty());
            self.write_batch(&mut batch, sync)?;
            Ok(true)
        })();
        match written {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => {
                // Nothing changed: the file of a snapshot that did not come into force goes again.
                if let (Some(meta), Some(_)) = (&snapshot_meta, &new_file) {
                    if *meta != self.snapshot_meta {
                        let _ = self.snapshots.remove_others(Some(&self.snapshot_meta));
                    }
                }
                return Err(e);
            }
        }

        self.stats.entries += write.entries.len() as u64;
        self.hard_state = hard_state;
        self.commit_dirty = false;
        if let Some(meta) = snapshot_meta {
            self.conf_state = meta.get_conf_state().clone();
            self.conf_index = meta.index;
            self.snapshot_meta = meta;
            // Housekeeping: a file left behind is removed at the next open.
            self.snapshots.remove_others(Some(&self.snapshot_meta))?;
        }
        Ok(())
    }

    fn note_commit(&mut self, commit: u64) {
        if commit > self.hard_state.commit {
            self.hard_state.commit = commit;
            self.commit_dirty = true;
        }
    }

    fn set_conf_state(&mut self, index: u64, conf_state: ConfState) -> Result<(), ClusterError> {
        let mut batch = LogBatch::default();
        self.put_conf(&mut batch, index, &conf_state)?;
        self.write_batch(&mut batch, self.fsync)?;
        self.conf_state = conf_state;
        self.conf_index = index;
        Ok(())
    }

    fn conf_index(&self) -> u64 {
        self.conf_index
    }

    fn catch_up(&self) -> CatchUpMark {
        self.catch_up
    }

    fn set_catch_up(&mut self, mark: CatchUpMark) -> Result<(), ClusterError> {
        let mut batch = LogBatch::default();
        match mark.to_byte() {
            Some(byte) => {
                batch.put(RAFT_GROUP_ID, KEY_CATCHING_UP.to_vec(), vec![byte]).map_err(|e| self.storage_error(e))?
            }
            None => batch.delete(RAFT_GROUP_ID, KEY_CATCHING_UP.to_vec()),
        }
        // Always synced: a lost mark would let the node vote with a partial log.
        self.write_batch(&mut batch, true)?;
        self.catch_up = mark;
        Ok(())
    }

    fn save_snapshot(
        &mut self,
        index: u64,
        term: u64,
        conf_state: ConfState,
        data: Vec<u8>,
    ) -> Result<(), ClusterError> {
        if index <= self.snapshot_meta.index {
            return Ok(());
        }
        let last = self.last();
        if index > last {
            return Err(ClusterError::Corrupt(format!("snapshot at {index} beyond the last entry {last}")));
        }
        let snapshot = new_snapshot(index, term, conf_state, data);
        let meta = snapshot.get_metadata().clone();

        self.snapshots.write(&meta, &snapshot.data)?;
        let mut batch = LogBatch::default();
        self.put_message(&mut batch, KEY_SNAPSHOT_META, &meta)?;
        let mut hard_state = self.hard_state.clone();
        hard_state.commit = hard_state.commit.max(index);
        self.put_message(&mut batch, KEY_HARD_STATE, &hard_state)?;
        let compact_before = index.saturating_sub(self.keep_entries) + 1;
        if compact_before > self.first() {
            batch.add_command(RAFT_GROUP_ID, EngineCommand::Compact { index: compact_before });
        }
        if let Err(e) = self.write_batch(&mut batch, self.fsync) {
            let _ = self.snapshots.remove_others(Some(&self.snapshot_meta));
            return Err(e);
        }
        self.hard_state = hard_state;
        self.commit_dirty = false;
        self.snapshot_meta = meta;
        self.snapshots.remove_others(Some(&self.snapshot_meta))?;
        // The snapshot and compaction are durable; reclaiming files is housekeeping that may fail
        // without undoing them.
        self.engine.purge_expired_files().map_err(|e| self.storage_error(e))?;
        Ok(())
    }

    fn latest_snapshot(&self) -> Result<Option<Snapshot>, ClusterError> {
        if self.snapshot_meta.index == 0 {
            return Ok(None);
        }
        self.snapshots.read(&self.snapshot_meta).map(Some)
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot_meta.index
    }

    fn stats(&self) -> LogStats {
        self.stats
    }
}

/// The log in memory, with `LogStore`'s semantics, for simulations. Clones share the same log.
#[derive(Debug, Clone, Default)]
pub struct MemLog {
    core: Arc<Mutex<MemLogCore>>,
}

#[derive(Debug, Default)]
struct MemLogCore {
    /// Contiguous entries; `entries[0].index == first_index()` when not empty.
    entries: Vec<Entry>,
    hard_state: HardState,
    conf_state: ConfState,
    conf_index: u64,
    snapshot: Snapshot,
    keep_entries: u64,
    catch_up: CatchUpMark,
    stats: LogStats,
}

impl MemLogCore {
    fn first(&self) -> u64 {
        self.entries.first().map_or(self.snapshot.get_metadata().index + 1, |e| e.index)
    }

    fn last(&self) -> u64 {
        self.entries.last().map_or(self.snapshot.get_metadata().index, |e| e.index)
    }
}

impl MemLog {
    pub fn new() -> Self {
        MemLog::with_keep_entries(DEFAULT_KEEP_ENTRIES)
    }

    pub fn with_keep_entries(keep_entries: u64) -> Self {
        MemLog { core: Arc::new(Mutex::new(MemLogCore { keep_entries, ..MemLogCore::default() })) }
    }

    fn core(&self) -> MutexGuard<'_, MemLogCore> {
        // A panic while holding the lock cannot leave the core half-updated: every mutation below
        // builds its result first and assigns at the end.
        self.core.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Storage for MemLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let core = self.core();
        Ok(RaftState::new(core.hard_state.clone(), core.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let core = self.core();
        let first = core.first();
        check_entries_range(low, high, first, core.last())?;
        if low >= high {
            return Ok(Vec::new());
        }
        let mut entries = core.entries[(low - first) as usize..(high - first) as usize].to_vec();
        raft::util::limit_size(&mut entries, size_limit(max_size.into()));
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        let core = self.core();
        let meta = core.snapshot.get_metadata();
        if index == meta.index {
            return Ok(meta.term);
        }
        let first = core.first();
        check_entries_range(index, index + 1, first, core.last())?;
        Ok(core.entries[(index - first) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.core().first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.core().last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let core = self.core();
        let index = core.snapshot.get_metadata().index;
        if index == 0 || index < request_index {
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        Ok(core.snapshot.clone())
    }
}

impl DurableLog for MemLog {
    fn write_ready(&mut self, write: ReadyWrite<'_>) -> Result<(), ClusterError> {
        if write.snapshot.is_none() && write.entries.is_empty() && write.hard_state.is_none() {
            return Ok(());
        }
        let mut core = self.core();
        let mut hard_state = write.hard_state.cloned().unwrap_or_else(|| core.hard_state.clone());
        hard_state.commit = hard_state.commit.max(core.hard_state.commit);
        let (mut first, mut last) = (core.first(), core.last());
        if let Some(snapshot) = write.snapshot {
            let meta = snapshot.get_metadata();
            if meta.index < core.snapshot.get_metadata().index {
                return Err(ClusterError::Corrupt(format!(
                    "restore of snapshot {} older than the stored {}",
                    meta.index,
                    core.snapshot.get_metadata().index
                )));
            }
            hard_state = hard_state_after_snapshot(&hard_state, meta);
            (first, last) = (meta.index + 1, meta.index);
        }
        check_append(write.entries, first, last)?;
        if let Some(entry) = write.entries.last() {
            last = entry.index;
        }
        if hard_state.commit > last {
            return Err(ClusterError::Corrupt(format!(
                "commit index {} beyond the last entry {last}",
                hard_state.commit
            )));
        }

        // Checks passed: apply.
        if let Some(snapshot) = write.snapshot {
            core.entries.clear();
            core.conf_state = snapshot.get_metadata().get_conf_state().clone();
            core.conf_index = snapshot.get_metadata().index;
            core.snapshot = snapshot.clone();
        }
        if let Some(entry) = write.entries.first() {
            let keep = (entry.index - first) as usize;
            core.entries.truncate(keep);
            core.entries.extend_from_slice(write.entries);
        }
        core.hard_state = hard_state;
        core.stats.writes += 1;
        if write.must_sync || write.snapshot.is_some() || !write.entries.is_empty() {
            core.stats.synced_writes += 1;
        }
        core.stats.entries += write.entries.len() as u64;
        Ok(())
    }

    fn note_commit(&mut self, commit: u64) {
        // In memory "durable" and "noted" are the same; the commit index is only ever raised.
        let mut core = self.core();
        if commit > core.hard_state.commit && commit <= core.last() {
            core.hard_state.commit = commit;
        }
    }

    fn set_conf_state(&mut self, index: u64, conf_state: ConfState) -> Result<(), ClusterError> {
        let mut core = self.core();
        core.conf_state = conf_state;
        core.conf_index = index;
        core.stats.writes += 1;
        core.stats.synced_writes += 1;
        Ok(())
    }

    fn conf_index(&self) -> u64 {
        self.core().conf_index
    }

    fn catch_up(&self) -> CatchUpMark {
        self.core().catch_up
    }

    fn set_catch_up(&mut self, mark: CatchUpMark) -> Result<(), ClusterError> {
        let mut core = self.core();
        core.catch_up = mark;
        core.stats.writes += 1;
        core.stats.synced_writes += 1;
        Ok(())
    }

    fn save_snapshot(
        &mut self,
        index: u64,
        term: u64,
        conf_state: ConfState,
        data: Vec<u8>,
    ) -> Result<(), ClusterError> {
        let mut core = self.core();
        if index <= core.snapshot.get_metadata().index {
            return Ok(());
        }
        let last = core.last();
        if index > last {
            return Err(ClusterError::Corrupt(format!("snapshot at {index} beyond the last entry {last}")));
        }
        let snapshot = new_snapshot(index, term, conf_state, data);
        let compact_before = index.saturating_sub(core.keep_entries) + 1;
        let first = core.first();
        if compact_before > first {
            let drop = ((compact_before - first) as usize).min(core.entries.len());
            core.entries.drain(..drop);
        }
        core.snapshot = snapshot;
        core.hard_state.commit = core.hard_state.commit.max(index);
        core.stats.writes += 1;
        core.stats.synced_writes += 1;
        Ok(())
    }

    fn latest_snapshot(&self) -> Result<Option<Snapshot>, ClusterError> {
        let core = self.core();
        Ok((core.snapshot.get_metadata().index != 0).then(|| core.snapshot.clone()))
    }

    fn snapshot_index(&self) -> u64 {
        self.core().snapshot.get_metadata().index
    }

    fn stats(&self) -> LogStats {
        self.core().stats
    }
}
