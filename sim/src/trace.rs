//! What happened, step by step: a compact note per event, a ring of the latest notes for failure
//! reports, and a running digest of all of them (two runs of one seed must have the same digest).

use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;

use leasehold_node::wire::{ClientMessageType, ReplyType};
use raft::eraftpb::MessageType;

use crate::client::Destination;

/// Notes kept for a failure report (ticks and sweeps are not kept: they only crowd it).
pub const TRACE_RING: usize = 200;

/// One thing that happened. Nodes are numbered from 1 (their Raft id), clients from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Note {
    Tick {
        node: u64,
    },
    Sweep {
        node: u64,
    },
    Flush {
        node: u64,
        proposals: usize,
    },
    /// A Raft message handed to a node (or dropped: node down, link cut).
    Peer {
        from: u64,
        to: u64,
        kind: MessageType,
        term: u64,
        index: u64,
        delivered: bool,
    },
    /// A client message reaching a node (or not).
    ToNode {
        client: usize,
        node: u64,
        kind: ClientMessageType,
        xid: u32,
        destination: Destination,
        /// Through the relay (giaddr set).
        relayed: bool,
        delivered: bool,
    },
    /// A node's decision about a client message that is not a proposal.
    Decided {
        node: u64,
        client: usize,
        what: &'static str,
    },
    Proposed {
        node: u64,
        client: usize,
        kind: ClientMessageType,
    },
    /// A reply reaching a client (`index`: the log entry an ACK was built from).
    ToClient {
        node: u64,
        client: usize,
        kind: ReplyType,
        ip: Ipv4Addr,
        index: u64,
        delivered: bool,
    },
    Holds {
        client: usize,
        ip: Ipv4Addr,
        until_ms: u64,
    },
    Drops {
        client: usize,
        ip: Ipv4Addr,
        why: &'static str,
    },
    Role {
        node: u64,
        term: u64,
        role: &'static str,
        commit: u64,
    },
    Applied {
        node: u64,
        first: u64,
        last: u64,
    },
    Restored {
        node: u64,
        index: u64,
    },
    SnapshotTaken {
        node: u64,
        index: u64,
    },
    Crash {
        node: u64,
    },
    DiskWiped {
        node: u64,
    },
    /// The leader will crash at its next write of entries, once its appends have left.
    CrashArmed {
        node: u64,
    },
    /// The leader sent its appends of these entries and crashed before its own write of them.
    CrashBeforeWrite {
        node: u64,
        first: u64,
        last: u64,
    },
    Restart {
        node: u64,
        incarnation: u64,
        applied: u64,
        election_timeout_ticks: usize,
    },
    Partition {
        groups: [u8; 5],
    },
    HealPartition,
    ClientLink {
        node: u64,
        up: bool,
    },
    Weather {
        loss_ppm: u32,
        duplicate_ppm: u32,
        max_delay_us: u64,
    },
    Phase {
        name: &'static str,
    },
    /// A leadership transfer's steps (`to`: the voter; 0 when none).
    Transfer {
        node: u64,
        to: u64,
        what: &'static str,
    },
    /// The operator asked `node` to add or remove node `id`; what its raft actor said.
    MembershipChange {
        node: u64,
        id: u64,
        add: bool,
        outcome: &'static str,
    },
    /// A configuration committed at `index` (voters as bits: bit `id - 1`), after the one at `after`.
    Configuration {
        index: u64,
        voters: u8,
        after: u64,
    },
    /// The operator stopped a node whose removal committed.
    Decommissioned {
        node: u64,
    },
    /// The operator's reservation change, proposed on `node`.
    AdminProposed {
        node: u64,
    },
    /// What an admin proposal came to, once applied on the node that proposed it.
    AdminOutcome {
        node: u64,
        done: bool,
    },
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lost = |delivered: bool| if delivered { "" } else { " (lost)" };
        match *self {
            Note::Tick { node } => write!(f, "n{node} tick"),
            Note::Sweep { node } => write!(f, "n{node} sweep"),
            Note::Flush { node, proposals } => write!(f, "n{node} flushes {proposals} proposals to its raft actor"),
            Note::Peer { from, to, kind, term, index, delivered } => {
                write!(f, "n{from} -> n{to} {kind:?} term {term} index {index}{}", lost(delivered))
            }
            Note::ToNode { client, node, kind, xid, destination, relayed, delivered } => {
                let how = match destination {
                    Destination::Broadcast => "broadcast".to_string(),
                    Destination::Unicast(_) if relayed => "via the relay".to_string(),
                    Destination::Unicast(ip) => format!("unicast {ip}"),
                };
                write!(f, "c{client} -> n{node} {kind:?} xid {xid:#010x} {how}{}", lost(delivered))
            }
            Note::Decided { node, client, what } => write!(f, "n{node} about c{client}: {what}"),
            Note::Proposed { node, client, kind } => write!(f, "n{node} proposes for c{client} {kind:?}"),
            Note::ToClient { node, client, kind, ip, index, delivered } => {
                write!(f, "n{node} -> c{client} {kind:?} {ip}")?;
                if index != 0 {
                    write!(f, " (entry {index})")?;
                }
                f.write_str(lost(delivered))
            }
            Note::Holds { client, ip, until_ms } => write!(f, "c{client} holds {ip} until {until_ms} ms"),
            Note::Drops { client, ip, why } => write!(f, "c{client} drops {ip}: {why}"),
            Note::Role { node, term, role, commit } => write!(f, "n{node} {role}, term {term}, commit {commit}"),
            Note::Applied { node, first, last } => write!(f, "n{node} applied {first}..={last}"),
            Note::Restored { node, index } => write!(f, "n{node} restored the leader's snapshot at {index}"),
            Note::SnapshotTaken { node, index } => write!(f, "n{node} snapshot at {index}, log compacted"),
            Note::Crash { node } => write!(f, "n{node} CRASH"),
            Note::DiskWiped { node } => write!(f, "n{node} DISK LOST: restarts with an empty log"),
            Note::CrashArmed { node } => write!(f, "n{node} will crash at its next write, after sending its appends"),
            Note::CrashBeforeWrite { node, first, last } => {
                write!(f, "n{node} CRASH after sending entries {first}..={last}, before writing them itself")
            }
            Note::Restart { node, incarnation, applied, election_timeout_ticks } => write!(
                f,
                "n{node} RESTART incarnation {incarnation}, table applied {applied}, election timeout {election_timeout_ticks} ticks"
            ),
            Note::Partition { groups } => write!(f, "PARTITION groups {groups:?}"),
            Note::HealPartition => write!(f, "HEAL partition"),
            Note::ClientLink { node, up } => write!(f, "n{node} client link {}", if up { "UP" } else { "DOWN" }),
            Note::Weather { loss_ppm, duplicate_ppm, max_delay_us } => write!(
                f,
                "WEATHER loss {}%, duplicates {}%, delay up to {} ms",
                f64::from(loss_ppm) / 10_000.0,
                f64::from(duplicate_ppm) / 10_000.0,
                max_delay_us / 1000
            ),
            Note::Phase { name } => write!(f, "=== {name} ==="),
            Note::Transfer { node, to, what } => write!(f, "n{node} TRANSFER to n{to}: {what}"),
            Note::MembershipChange { node, id, add, outcome } => {
                write!(f, "operator -> n{node}: {} n{id}: {outcome}", if add { "add" } else { "remove" })
            }
            Note::Configuration { index, voters, after } => {
                let ids: Vec<u64> = (1..=8).filter(|id| voters & (1 << (id - 1)) != 0).collect();
                write!(f, "CONFIGURATION at {index}: voters {ids:?} (after the one at {after})")
            }
            Note::Decommissioned { node } => write!(f, "n{node} STOPPED by the operator: removed from the cluster"),
            Note::AdminProposed { node } => write!(f, "operator -> n{node}: reservation change proposed"),
            Note::AdminOutcome { node, done } => {
                write!(f, "n{node}: reservation change {}", if done { "done" } else { "refused" })
            }
        }
    }
}

/// A note with when it happened.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub step: u64,
    pub time_us: u64,
    pub note: Note,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[step {:>7} t={:>9.3}s] {}", self.step, self.time_us as f64 / 1e6, self.note)
    }
}

/// FNV-1a as a `Hasher`: no random state, the same on every run.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

pub struct Trace {
    ring: VecDeque<Entry>,
    digest: Fnv,
    verbose: bool,
    pub notes: u64,
}

impl Trace {
    pub fn new(verbose: bool) -> Self {
        Trace { ring: VecDeque::with_capacity(TRACE_RING), digest: Fnv::default(), verbose, notes: 0 }
    }

    pub fn record(&mut self, step: u64, time_us: u64, note: Note) {
        let entry = Entry { step, time_us, note };
        step.hash(&mut self.digest);
        time_us.hash(&mut self.digest);
        note.hash(&mut self.digest);
        self.notes += 1;
        if matches!(note, Note::Tick { .. } | Note::Sweep { .. }) {
            return;
        }
        if self.verbose {
            println!("{entry}");
        }
        if self.ring.len() == TRACE_RING {
            self.ring.pop_front();
        }
        self.ring.push_back(entry);
    }

    /// Mix a value that is not a note (a table digest) into the run's digest.
    pub fn mix(&mut self, value: u64) {
        value.hash(&mut self.digest);
    }

    pub fn digest(&self) -> u64 {
        self.digest.finish()
    }

    pub fn latest(&self) -> impl Iterator<Item = &Entry> {
        self.ring.iter()
    }
}
