//! Snapshot files: the latest snapshot of the lease table lives in a file of its own under
//! `<data_dir>/snapshots`, not in raft-engine, whose key-value space keeps every value resident in
//! memory (a second copy of the table, about 32 B per lease) and rewrites it with the log files.
//!
//! A file is named after the snapshot's index and term, so the metadata in raft-engine names the
//! one file in force. It is written to a temporary name, synced, renamed and the directory synced,
//! before raft-engine records it; files not in force (older ones, or a newer one whose record never
//! made it to raft-engine before a crash) are removed.
//!
//! Layout: `LHSNAP01`, metadata length (u32 LE), `SnapshotMetadata` (protobuf), data length (u64 LE),
//! data, CRC-32 (LE) of everything before it.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{Snapshot, SnapshotMetadata};

use crate::ClusterError;

const MAGIC: &[u8; 8] = b"LHSNAP01";
const SUFFIX: &str = ".snap";
const TEMP_SUFFIX: &str = ".tmp";
/// Metadata is a handful of ids; anything longer is not a file this build wrote.
const MAX_METADATA_BYTES: u32 = 1024 * 1024;

fn io_error(path: &Path, error: io::Error) -> ClusterError {
    ClusterError::Storage { path: path.display().to_string(), source: raft_engine::Error::Io(error) }
}

/// The snapshot files of one data directory.
#[derive(Debug, Clone)]
pub struct SnapshotFiles {
    dir: PathBuf,
    fsync: bool,
}

impl SnapshotFiles {
    pub fn open(dir: PathBuf, fsync: bool) -> Result<Self, ClusterError> {
        fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        Ok(SnapshotFiles { dir, fsync })
    }

    pub fn path_of(&self, index: u64, term: u64) -> PathBuf {
        self.dir.join(format!("snapshot-{index:020}-{term:020}{SUFFIX}"))
    }

    pub fn exists(&self, meta: &SnapshotMetadata) -> bool {
        self.path_of(meta.index, meta.term).is_file()
    }

    /// Write `meta` and `data` as the file of (`meta.index`, `meta.term`), durably (with `fsync`).
    pub fn write(&self, meta: &SnapshotMetadata, data: &[u8]) -> Result<PathBuf, ClusterError> {
        let path = self.path_of(meta.index, meta.term);
        let temp = path.with_extension(&TEMP_SUFFIX[1..]);
        let meta_bytes = meta.write_to_bytes().map_err(|e| ClusterError::Corrupt(format!("snapshot metadata: {e}")))?;
        let written = (|| -> io::Result<()> {
            let mut out = CrcWriter { inner: BufWriter::new(File::create(&temp)?), crc: crc32fast::Hasher::new() };
            out.write_all(MAGIC)?;
            out.write_all(&(meta_bytes.len() as u32).to_le_bytes())?;
            out.write_all(&meta_bytes)?;
            out.write_all(&(data.len() as u64).to_le_bytes())?;
            out.write_all(data)?;
            let crc = out.crc.clone().finalize();
            let mut file = out.inner.into_inner().map_err(|e| e.into_error())?;
            file.write_all(&crc.to_le_bytes())?;
            if self.fsync {
                file.sync_all()?;
            }
            Ok(())
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(io_error(&temp, e));
        }
        fs::rename(&temp, &path).map_err(|e| io_error(&path, e))?;
        if self.fsync {
            File::open(&self.dir).and_then(|dir| dir.sync_all()).map_err(|e| io_error(&self.dir, e))?;
        }
        Ok(path)
    }

    /// Read the file of `meta` back, checked against its CRC and against `meta`.
    pub fn read(&self, meta: &SnapshotMetadata) -> Result<Snapshot, ClusterError> {
        let path = self.path_of(meta.index, meta.term);
        let corrupt = |what: &str| ClusterError::Corrupt(format!("{}: {what}", path.display()));
        let mut bytes = Vec::new();
        File::open(&path).and_then(|mut file| file.read_to_end(&mut bytes)).map_err(|e| io_error(&path, e))?;
        let Some((body, crc)) = bytes.split_last_chunk::<4>() else { return Err(corrupt("truncated")) };
        if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
            return Err(corrupt("checksum mismatch"));
        }
        let rest = body.strip_prefix(&MAGIC[..]).ok_or_else(|| corrupt("not a snapshot file"))?;
        let (meta_len, rest) = rest.split_first_chunk::<4>().ok_or_else(|| corrupt("truncated"))?;
        let meta_len = u32::from_le_bytes(*meta_len);
        if meta_len > MAX_METADATA_BYTES || rest.len() < meta_len as usize + 8 {
            return Err(corrupt("metadata length out of range"));
        }
        let (meta_bytes, rest) = rest.split_at(meta_len as usize);
        let stored = SnapshotMetadata::parse_from_bytes(meta_bytes).map_err(|e| corrupt(&format!("metadata: {e}")))?;
        if stored != *meta {
            return Err(corrupt(&format!("holds the snapshot at {}/{}", stored.index, stored.term)));
        }
        let (data_len, rest) = rest.split_first_chunk::<8>().ok_or_else(|| corrupt("truncated"))?;
        if u64::from_le_bytes(*data_len) != rest.len() as u64 {
            return Err(corrupt("data length does not match the file"));
        }
        // The data is the file's tail: cut the frame off in place instead of copying it.
        let data_start = bytes.len() - 4 - rest.len();
        bytes.truncate(bytes.len() - 4);
        bytes.drain(..data_start);
        Ok(Snapshot { data: bytes.into(), metadata: Some(stored).into(), ..Snapshot::default() })
    }

    /// Remove every snapshot file (and leftover temporary file) but the one of `keep`.
    pub fn remove_others(&self, keep: Option<&SnapshotMetadata>) -> Result<(), ClusterError> {
        let keep = keep.map(|meta| self.path_of(meta.index, meta.term));
        for entry in fs::read_dir(&self.dir).map_err(|e| io_error(&self.dir, e))? {
            let path = entry.map_err(|e| io_error(&self.dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let ours = name.starts_with("snapshot-") && (name.ends_with(SUFFIX) || name.ends_with(TEMP_SUFFIX));
            if ours && Some(&path) != keep.as_ref() {
                fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
            }
        }
        Ok(())
    }
}

/// Computes the CRC of what passes through.
struct CrcWriter<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
