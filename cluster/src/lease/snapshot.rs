//! The table's snapshot encoding: written streamed from the table (whole, or a slice at a time by
//! `SnapshotBuilder` while the table goes on applying), compressed as a whole (`compress_snapshot`, off
//! the DHCP thread), and read back in bulk, of this version or an earlier one.
//!
//! Versions: 1 (no mark), 2 (reservations), 3 (parameters from the log), 4 (a version-3 body as one
//! zstd frame), 5 (the cluster's config digest and the members' addresses from the log) and 6 (a version-5 body as one zstd
//! frame). A table writes version 5, which is also what digests are taken of; the node stores and
//! sends version 6: lease records compress about tenfold (sequential addresses, MAC prefixes, nearby
//! times), so a snapshot of two million leases crosses to a follower as about 8 MB, not 84.

use serde::{Deserialize, Serialize};

use super::{Lease, LeaseTable, Parameters, Records, ReservedHost, VERSION_MARK};
use crate::ClusterError;

const SNAPSHOT_MAGIC: [u8; 3] = [VERSION_MARK, b'L', b'S'];
const SNAPSHOT_VERSION: u8 = 5;
/// A `SNAPSHOT_VERSION` body compressed as one zstd frame.
const COMPRESSED_VERSION: u8 = 6;
/// A version-3 body (no config digest) compressed as one zstd frame (still read).
const COMPRESSED_V3: u8 = 4;
/// zstd level for snapshots: level 1 is several hundred MB/s here and already gets most of the gain.
const COMPRESSION_LEVEL: i32 = 1;
/// A compressed snapshot never expands to more than this (a bound on memory for hostile or broken
/// bytes; far above any table `max_leases` allows).
const MAX_DECOMPRESSED_BYTES: usize = 8 << 30;

/// Compress a snapshot written by this build (`to_snapshot`, `continue_snapshot`) for storage and
/// transfer; any other bytes (an older version, or already compressed) come back unchanged. Costs
/// about 0.15 s for two million leases: run it off the DHCP thread.
pub fn compress_snapshot(bytes: Vec<u8>) -> Vec<u8> {
    let Some([SNAPSHOT_VERSION, body @ ..]) = bytes.strip_prefix(&SNAPSHOT_MAGIC[..]) else {
        return bytes;
    };
    let mut out = Vec::with_capacity(body.len() / 8 + 64);
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.push(COMPRESSED_VERSION);
    match zstd::stream::copy_encode(body, &mut out, COMPRESSION_LEVEL) {
        Ok(()) => out,
        // Memory only: cannot fail short of allocation failure; the plain bytes are as good.
        Err(_) => bytes,
    }
}

/// The body inside a compressed snapshot.
fn decompress_body(compressed: &[u8]) -> Result<Vec<u8>, ClusterError> {
    use std::io::Read;
    let decoder = zstd::stream::read::Decoder::new(compressed)
        .map_err(|e| ClusterError::Corrupt(format!("lease snapshot: zstd: {e}")))?;
    let mut body = Vec::with_capacity(compressed.len().saturating_mul(8).min(MAX_DECOMPRESSED_BYTES));
    decoder
        .take(MAX_DECOMPRESSED_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| ClusterError::Corrupt(format!("lease snapshot: zstd: {e}")))?;
    if body.len() > MAX_DECOMPRESSED_BYTES {
        return Err(ClusterError::Corrupt(format!("lease snapshot: expands past {MAX_DECOMPRESSED_BYTES} bytes")));
    }
    Ok(body)
}

/// The encoding half of a snapshot in progress (`LeaseTable::begin_snapshot`): the header and the
/// reservations as they were at the start, and the bytes so far. It owns no part of the table, so it
/// can encode on another thread while the table goes on applying; the table hands it the records as
/// they were at the start (`LeaseTable::snapshot_records`), and `finish` gives exactly the bytes
/// `to_snapshot()` gave at that index.
#[derive(Debug)]
pub struct SnapshotEncoder {
    applied_index: u64,
    out: Vec<u8>,
    /// Records still to be encoded, as counted at the start (checked at the end).
    records_left: usize,
    /// The reservations as they were at the start, encoded: they follow the records.
    tail: Vec<u8>,
}

impl SnapshotEncoder {
    /// The applied index the snapshot is of.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Encode the next records (in the order `snapshot_records` gave them).
    pub fn encode(&mut self, records: &[Lease]) {
        assert!(records.len() <= self.records_left, "a snapshot was given more records than it counted");
        self.records_left -= records.len();
        for lease in records {
            encode_into(lease, &mut self.out);
        }
    }

    /// The snapshot's applied index and bytes (version 5, uncompressed: see `compress_snapshot`).
    pub fn finish(mut self) -> (u64, Vec<u8>) {
        assert_eq!(self.records_left, 0, "a snapshot was given fewer records than it counted");
        self.out.extend_from_slice(&self.tail);
        (self.applied_index, self.out)
    }
}

fn encode_into(value: impl Serialize, out: &mut Vec<u8>) {
    bincode::serde::encode_into_std_write(value, out, bincode::config::standard())
        .expect("table values always serialise to memory");
}

/// A snapshot before encodings carried a version (still read).
#[derive(Serialize, Deserialize)]
struct SnapshotV1 {
    applied_index: u64,
    leases: Vec<Lease>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotV2 {
    applied_index: u64,
    leases: Vec<Lease>,
    reservations: Vec<ReservedHost>,
}

#[derive(Deserialize)]
struct SnapshotV3 {
    applied_index: u64,
    /// `None` until the log set them (the node's own config stands in until then).
    parameters: Option<Parameters>,
    leases: Vec<Lease>,
    reservations: Vec<ReservedHost>,
}

#[derive(Deserialize)]
struct SnapshotV5 {
    applied_index: u64,
    parameters: Option<Parameters>,
    /// The lease-relevant config digest the log last carried (`Command::SetConfigDigest`).
    config_digest: Option<String>,
    /// The peer addresses membership changes carried, by id.
    member_addresses: Vec<(u64, std::net::SocketAddr)>,
    leases: Vec<Lease>,
    reservations: Vec<ReservedHost>,
}

impl From<SnapshotV3> for SnapshotV5 {
    fn from(v3: SnapshotV3) -> Self {
        SnapshotV5 {
            applied_index: v3.applied_index,
            parameters: v3.parameters,
            config_digest: None,
            member_addresses: Vec::new(),
            leases: v3.leases,
            reservations: v3.reservations,
        }
    }
}

/// `SnapshotV5` as written: the same encoding, serialised from borrowed iterators.
#[derive(Serialize)]
struct SnapshotV5Out<'a, M, L, R> {
    applied_index: u64,
    parameters: Option<Parameters>,
    config_digest: Option<&'a str>,
    member_addresses: M,
    leases: L,
    reservations: R,
}

/// A sequence serialised straight from an iterator (bincode writes a length, then the items, as for
/// a `Vec`).
struct Streamed<I>(I);

impl<I> Serialize for Streamed<I>
where
    I: ExactSizeIterator + Clone,
    I::Item: Serialize,
{
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.clone())
    }
}

/// FNV-1a as an `io::Write`, for digests of a streamed snapshot.
struct Fnv1a(u64);

impl std::io::Write for Fnv1a {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for byte in buf {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LeaseTable {
    /// A digest of the whole table (FNV-1a over the snapshot bytes): replicas that applied the same
    /// index must have the same digest.
    pub fn digest(&self) -> u64 {
        let mut hasher = Fnv1a(0xcbf2_9ce4_8422_2325);
        self.write_snapshot(&mut hasher).expect("hashing never fails");
        hasher.0
    }

    /// Serialise the table for a Raft snapshot: the version mark, then the current encoding.
    pub fn to_snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.by_ip.len() * 40);
        self.write_snapshot(&mut out).expect("writing to memory never fails");
        out
    }

    /// `to_snapshot` into `out`, streamed from the table: no copy of the records is made.
    pub fn write_snapshot<W: std::io::Write>(&self, out: &mut W) -> std::io::Result<()> {
        out.write_all(&SNAPSHOT_MAGIC)?;
        out.write_all(&[SNAPSHOT_VERSION])?;
        let repr = SnapshotV5Out {
            applied_index: self.applied_index,
            parameters: self.params_from_log.then_some(self.params),
            config_digest: self.config_digest.as_deref(),
            member_addresses: Streamed(self.member_addresses.iter()),
            leases: Streamed(self.by_ip.values()),
            reservations: Streamed(self.reservations.values()),
        };
        bincode::serde::encode_into_std_write(&repr, out, bincode::config::standard()).map_err(|e| match e {
            bincode::error::EncodeError::Io { inner, .. } => inner,
            other => std::io::Error::other(other.to_string()),
        })?;
        Ok(())
    }

    /// Begin a snapshot of the table as it is now: the encoder for it, to be given the records as
    /// they are now by `snapshot_records` while the table goes on applying (the table keeps the
    /// records it changes as they were until the snapshot has passed them). One already in progress is
    /// abandoned.
    pub fn begin_snapshot(&mut self) -> SnapshotEncoder {
        let records = self.by_ip.freeze();
        let mut out = Vec::with_capacity(64 + records * 40);
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        out.push(SNAPSHOT_VERSION);
        // The fields before the records, then the records' length prefix: what serialising
        // `SnapshotV5Out` writes before its first record.
        let header = (
            self.applied_index,
            self.params_from_log.then_some(self.params),
            self.config_digest.as_deref(),
            Streamed(self.member_addresses.iter()),
            records as u64,
        );
        encode_into(header, &mut out);
        let mut tail = Vec::new();
        encode_into(Streamed(self.reservations.values()), &mut tail);
        SnapshotEncoder { applied_index: self.applied_index, out, records_left: records, tail }
    }

    /// Is a snapshot begun and its records not all handed out yet?
    pub fn snapshot_in_progress(&self) -> bool {
        self.by_ip.is_frozen()
    }

    /// Copies of the next `max_records` addresses' records of the snapshot in progress, as they were
    /// when it began, appended to `out` in address order: about 10 ns a record, so a slice of a large
    /// table costs the applying thread little and the encoding happens wherever the encoder is. True
    /// once every record was handed out (or none is in progress).
    pub fn snapshot_records(&mut self, max_records: usize, out: &mut Vec<Lease>) -> bool {
        let done = self.by_ip.frozen_slice(max_records, |lease| out.push(lease.clone()));
        if done {
            self.by_ip.thaw();
        }
        done
    }

    /// Rebuild a table from `to_snapshot` bytes, of this version or an earlier one.
    pub fn from_snapshot(bytes: &[u8], grace_ms: u64, max_leases: usize) -> Result<Self, ClusterError> {
        let corrupt = |e: bincode::error::DecodeError| ClusterError::Corrupt(format!("lease snapshot: {e}"));
        let decode_v2 = |rest: &[u8]| -> Result<SnapshotV5, ClusterError> {
            let v2 = bincode::serde::decode_from_slice::<SnapshotV2, _>(rest, bincode::config::standard())
                .map_err(corrupt)?
                .0;
            Ok(SnapshotV5 {
                applied_index: v2.applied_index,
                parameters: None,
                config_digest: None,
                member_addresses: Vec::new(),
                leases: v2.leases,
                reservations: v2.reservations,
            })
        };
        let decode_v3 = |rest: &[u8]| -> Result<SnapshotV5, ClusterError> {
            Ok(bincode::serde::decode_from_slice::<SnapshotV3, _>(rest, bincode::config::standard())
                .map_err(corrupt)?
                .0
                .into())
        };
        let decode_v5 = |rest: &[u8]| -> Result<SnapshotV5, ClusterError> {
            Ok(bincode::serde::decode_from_slice::<SnapshotV5, _>(rest, bincode::config::standard())
                .map_err(corrupt)?
                .0)
        };
        let repr = match bytes.strip_prefix(&SNAPSHOT_MAGIC[..]) {
            Some([COMPRESSED_VERSION, rest @ ..]) => decode_v5(&decompress_body(rest)?)?,
            Some([SNAPSHOT_VERSION, rest @ ..]) => decode_v5(rest)?,
            Some([COMPRESSED_V3, rest @ ..]) => decode_v3(&decompress_body(rest)?)?,
            Some([3, rest @ ..]) => decode_v3(rest)?,
            Some([2, rest @ ..]) => decode_v2(rest)?,
            Some(other) => {
                let version = other.first().copied().unwrap_or(0);
                return Err(ClusterError::Corrupt(format!(
                    "lease snapshot of version {version}; this build reads versions 1 to {COMPRESSED_VERSION}"
                )));
            }
            None => {
                let (v1, _): (SnapshotV1, usize) =
                    bincode::serde::decode_from_slice(bytes, bincode::config::standard()).map_err(corrupt)?;
                SnapshotV5 {
                    applied_index: v1.applied_index,
                    parameters: None,
                    config_digest: None,
                    member_addresses: Vec::new(),
                    leases: v1.leases,
                    reservations: Vec::new(),
                }
            }
        };
        let mut table = LeaseTable::new(grace_ms, max_leases);
        table.applied_index = repr.applied_index;
        if let Some(params) = repr.parameters {
            table.params = params;
            table.params_from_log = true;
        }
        table.config_digest = repr.config_digest;
        table.member_addresses = repr.member_addresses.into_iter().collect();
        for host in repr.reservations {
            table.reserved_ips.insert(host.ip, host.mac);
            table.reservations.insert(host.mac, host);
        }
        // Built in bulk, and checked while built: a client in two records, or addresses out of order,
        // mean the bytes are not a table this build wrote. (`check_invariants` would look up every
        // record's client: seconds at a million leases, at every restart.)
        table.by_ip =
            Records::from_sorted(repr.leases).map_err(|e| ClusterError::Corrupt(format!("lease snapshot: {e}")))?;
        if table.reserved_ips.len() != table.reservations.len() {
            return Err(ClusterError::Corrupt("lease snapshot: two reservations of one address".into()));
        }
        debug_assert!(table.check_invariants().is_ok(), "{:?}", table.check_invariants());
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    use crate::lease::{ClientKey, Command, Proposal, ProposalTag};

    /// The streamed snapshot is byte for byte what serialising an owned `SnapshotV5` gave.
    #[test]
    fn streamed_snapshot_encodes_as_the_owned_one() {
        #[derive(Serialize)]
        struct Owned {
            applied_index: u64,
            parameters: Option<Parameters>,
            config_digest: Option<String>,
            member_addresses: Vec<(u64, std::net::SocketAddr)>,
            leases: Vec<Lease>,
            reservations: Vec<ReservedHost>,
        }
        #[derive(Serialize)]
        struct OwnedV3 {
            applied_index: u64,
            parameters: Option<Parameters>,
            leases: Vec<Lease>,
            reservations: Vec<ReservedHost>,
        }
        let mut table = LeaseTable::new(1_000, 100);
        let client = ClientKey::ClientId(Box::from(&b"\x01abc"[..]));
        let bind = Command::Bind {
            client,
            mac: [2, 0, 0, 0, 0, 1],
            client_id: Some(b"\x01abc".to_vec()),
            hostname: Some("pxe-1".into()),
            ip: Ipv4Addr::new(10, 0, 0, 9),
            expires_at_ms: 90_000,
            proposed_at_ms: 1_000,
            decided_at_index: 0,
        };
        let tag = ProposalTag { node_id: 1, incarnation: 1, seq: 1 };
        let reserve = Command::Reserve {
            host: ReservedHost {
                mac: [2, 0, 0, 0, 0, 2],
                ip: Ipv4Addr::new(10, 0, 0, 3),
                hostname: None,
                boot_file: None,
            },
            proposed_at_ms: 1_000,
        };
        table.apply(1, &[Proposal { tag, command: bind }, Proposal { tag, command: reserve }]);
        table.apply(2, &[Proposal { tag, command: Command::SetParameters(Parameters { grace_ms: 5, max_leases: 7 }) }]);
        table.apply(3, &[Proposal { tag, command: Command::SetConfigDigest { digest: "0123456789abcdef".into() } }]);
        let node4: std::net::SocketAddr = "10.0.0.4:6768".parse().unwrap();
        let add = |id, addr| crate::MembershipChange { id, added: true, addr };
        table.apply_membership(4, &[add(4, Some(node4)), add(5, Some(node4))]);
        table.apply_membership(5, &[crate::MembershipChange { id: 5, added: false, addr: None }, add(4, None)]);
        let owned = Owned {
            applied_index: 5,
            parameters: Some(Parameters { grace_ms: 5, max_leases: 7 }),
            config_digest: Some("0123456789abcdef".into()),
            member_addresses: vec![(4, node4)],
            leases: table.iter().cloned().collect(),
            reservations: table.reservations().cloned().collect(),
        };
        let mut expected = SNAPSHOT_MAGIC.to_vec();
        expected.push(SNAPSHOT_VERSION);
        expected.extend(bincode::serde::encode_to_vec(&owned, bincode::config::standard()).unwrap());
        assert_eq!(table.to_snapshot(), expected);
        assert_eq!(LeaseTable::from_snapshot(&expected, 0, 0).unwrap(), table);
        let mut streamed = table.begin_snapshot();
        let mut records = Vec::new();
        assert!(table.snapshot_records(usize::MAX, &mut records));
        streamed.encode(&records);
        assert_eq!(streamed.finish(), (5, expected.clone()), "the encoder writes what to_snapshot writes");

        // Version 3 (before the config digest), as earlier builds wrote it, plain and compressed: the
        // same table with no digest.
        let v3 = OwnedV3 {
            applied_index: owned.applied_index,
            parameters: owned.parameters,
            leases: owned.leases.clone(),
            reservations: owned.reservations.clone(),
        };
        let mut v3_bytes = SNAPSHOT_MAGIC.to_vec();
        v3_bytes.push(3);
        v3_bytes.extend(bincode::serde::encode_to_vec(&v3, bincode::config::standard()).unwrap());
        let from_v3 = LeaseTable::from_snapshot(&v3_bytes, 0, 0).unwrap();
        assert_eq!((from_v3.config_digest(), from_v3.len()), (None, table.len()));
        let mut v4_bytes = SNAPSHOT_MAGIC.to_vec();
        v4_bytes.push(COMPRESSED_V3);
        v4_bytes.extend(zstd::stream::encode_all(&v3_bytes[4..], 1).unwrap());
        assert_eq!(LeaseTable::from_snapshot(&v4_bytes, 0, 0).unwrap(), from_v3);

        // Version 6: the same body as one zstd frame; it reads back as the same table, and compressing
        // it again (or an older version) changes nothing.
        let compressed = compress_snapshot(expected.clone());
        assert_eq!(compressed[..4], [VERSION_MARK, b'L', b'S', COMPRESSED_VERSION]);
        assert_eq!(zstd::stream::decode_all(&compressed[4..]).unwrap(), expected[4..]);
        assert_eq!(LeaseTable::from_snapshot(&compressed, 0, 0).unwrap(), table);
        assert_eq!(compress_snapshot(compressed.clone()), compressed);
        let mut truncated = compressed.clone();
        truncated.truncate(compressed.len() - 3);
        let error = LeaseTable::from_snapshot(&truncated, 0, 0).unwrap_err().to_string();
        assert!(error.contains("zstd"), "{error}");
    }
}
