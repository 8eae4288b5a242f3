//! The lease state machine: the lease table as a pure function of the Raft log.
//!
//! `LeaseTable::apply` takes a committed log entry (a batch of proposals) and returns one outcome per
//! proposal. It reads no clock, no random source and no network: every time it needs comes inside the
//! command (the proposer's `proposed_at_ms`), so every replica that applies the same entries ends in the
//! same table (DESIGN rule 4). Everything iterated (records by address, reservations) is ordered, so
//! digests and snapshots are identical on every replica; the client index is a hash table that is
//! only ever looked up (see `records`).
//!
//! Which of two commands about one record came later is decided by the log, never by the proposers'
//! clocks (they may be seconds apart): every command carries the applied index its proposer decided
//! on (`decided_at_index`), every record the index of the entry that last changed it
//! (`changed_at_index`). A command decided before the record last changed was decided on a view that
//! no longer holds, and must not undo what came after it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::ClusterError;

mod collection;
mod records;
mod snapshot;
use records::Records;
pub use snapshot::{compress_snapshot, SnapshotEncoder};

/// The identity a lease is keyed by: the hardware address or the client identifier (option 61).
/// 16 bytes: a boxed slice, not a `Vec`, so a MAC key costs no more than the pointer it shares
/// room with (the table holds one in every record and in the client index).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ClientKey {
    Mac([u8; 6]),
    ClientId(Box<[u8]>),
}

impl std::fmt::Display for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientKey::Mac(m) => {
                write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
            }
            ClientKey::ClientId(id) => {
                f.write_str("id:")?;
                for b in id {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }
    }
}

/// Where an address stands. `Bound` past its expiry is "expired"; that is derived, never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseState {
    Bound {
        expires_at_ms: u64,
    },
    /// Given back by the client (RFC 2131 §4.4.6); the client gets it back first if it returns.
    Released {
        at_ms: u64,
    },
    /// Reported in use by someone else (RFC 2131 §4.4.4); out of the pool until `until_ms`.
    Declined {
        until_ms: u64,
    },
}

/// One address's record: 80 bytes. A client identifier that is type 1 followed by the record's own
/// MAC (RFC 2132 §9.14's hardware form: what Windows, perfdhcp and many firmwares send) is one flag
/// bit in the record's padding; any other one, and a host name, sit behind one pointer. The encoding
/// in snapshots and entries is field by field as it always was (`LeaseRepr`), so old snapshots read
/// unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "LeaseRepr")]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub client: ClientKey,
    pub mac: [u8; 6],
    /// Option 61 (unless `hardware_client_id`) and the host name, when the client sent either.
    details: Option<Box<LeaseDetails>>,
    /// The client identifier is `1` followed by `mac`.
    hardware_client_id: bool,
    pub state: LeaseState,
    /// `proposed_at_ms` of the command that last changed this record.
    pub updated_at_ms: u64,
    /// Log index of the entry that last changed this record.
    pub changed_at_index: u64,
    /// The node that proposed the binding in force: the server whose identifier the client was
    /// given, so the server its RELEASE goes to (RFC 2131 §4.4.6).
    pub bound_by: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct LeaseDetails {
    client_id: Option<Box<[u8]>>,
    hostname: Option<Box<str>>,
}

/// Option 61 type 1: an Ethernet hardware address follows (RFC 2132 §9.14, RFC 1700).
const HARDWARE_TYPE_ETHERNET: u8 = 1;

/// Is `client_id` type 1 followed by `mac`?
fn is_hardware_client_id(client_id: &[u8], mac: &[u8; 6]) -> bool {
    client_id.split_first().is_some_and(|(kind, rest)| *kind == HARDWARE_TYPE_ETHERNET && rest == mac)
}

/// A record's `details` and `hardware_client_id` for what the client sent.
fn details(
    mac: &[u8; 6],
    client_id: Option<Box<[u8]>>,
    hostname: Option<Box<str>>,
) -> (Option<Box<LeaseDetails>>, bool) {
    let hardware = client_id.as_deref().is_some_and(|id| is_hardware_client_id(id, mac));
    let client_id = client_id.filter(|_| !hardware);
    let details = (client_id.is_some() || hostname.is_some()).then(|| Box::new(LeaseDetails { client_id, hostname }));
    (details, hardware)
}

/// A `Lease` as encoded: its fields in this order.
#[derive(Deserialize)]
struct LeaseRepr {
    ip: Ipv4Addr,
    client: ClientKey,
    mac: [u8; 6],
    client_id: Option<Box<[u8]>>,
    hostname: Option<Box<str>>,
    state: LeaseState,
    updated_at_ms: u64,
    changed_at_index: u64,
    bound_by: u64,
}

impl From<LeaseRepr> for Lease {
    fn from(repr: LeaseRepr) -> Self {
        let (details, hardware_client_id) = details(&repr.mac, repr.client_id, repr.hostname);
        Lease {
            ip: repr.ip,
            client: repr.client,
            mac: repr.mac,
            details,
            hardware_client_id,
            state: repr.state,
            updated_at_ms: repr.updated_at_ms,
            changed_at_index: repr.changed_at_index,
            bound_by: repr.bound_by,
        }
    }
}

impl Serialize for Lease {
    /// As `LeaseRepr`, from borrowed fields.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("Lease", 9)?;
        out.serialize_field("ip", &self.ip)?;
        out.serialize_field("client", &self.client)?;
        out.serialize_field("mac", &self.mac)?;
        out.serialize_field("client_id", &self.client_id())?;
        out.serialize_field("hostname", &self.hostname())?;
        out.serialize_field("state", &self.state)?;
        out.serialize_field("updated_at_ms", &self.updated_at_ms)?;
        out.serialize_field("changed_at_index", &self.changed_at_index)?;
        out.serialize_field("bound_by", &self.bound_by)?;
        out.end()
    }
}

/// A record's option 61 bytes: rebuilt from the record's MAC (the hardware form), or stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIdBytes<'a> {
    Hardware([u8; 7]),
    Stored(&'a [u8]),
}

impl std::ops::Deref for ClientIdBytes<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            ClientIdBytes::Hardware(id) => id,
            ClientIdBytes::Stored(id) => id,
        }
    }
}

impl Serialize for ClientIdBytes<'_> {
    /// As the `Box<[u8]>` it stands for.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

impl Lease {
    /// Option 61 as the client sent it.
    pub fn client_id(&self) -> Option<ClientIdBytes<'_>> {
        if self.hardware_client_id {
            let mut id = [HARDWARE_TYPE_ETHERNET; 7];
            id[1..].copy_from_slice(&self.mac);
            return Some(ClientIdBytes::Hardware(id));
        }
        self.details.as_ref().and_then(|d| d.client_id.as_deref()).map(ClientIdBytes::Stored)
    }

    pub fn hostname(&self) -> Option<&str> {
        self.details.as_ref().and_then(|d| d.hostname.as_deref())
    }

    /// Bound and unexpired at `now_ms`.
    pub fn is_active(&self, now_ms: u64) -> bool {
        matches!(self.state, LeaseState::Bound { expires_at_ms } if expires_at_ms > now_ms)
    }

    /// When another client may take this address: a bound lease `grace_ms` after it expires (clock
    /// skew between nodes), a released one at once, a declined one after its probation.
    pub fn reusable_at_ms(&self, grace_ms: u64) -> u64 {
        match self.state {
            LeaseState::Bound { expires_at_ms } => expires_at_ms.saturating_add(grace_ms),
            LeaseState::Released { at_ms } => at_ms,
            LeaseState::Declined { until_ms } => until_ms,
        }
    }

    /// May another client take this address at `now_ms`? A bound lease only `grace_ms` after it
    /// expired (clock skew between nodes), a declined one only after its probation.
    pub fn is_reusable(&self, now_ms: u64, grace_ms: u64) -> bool {
        match self.state {
            LeaseState::Bound { expires_at_ms } => expires_at_ms.saturating_add(grace_ms) <= now_ms,
            LeaseState::Released { .. } => true,
            LeaseState::Declined { until_ms } => until_ms <= now_ms,
        }
    }
}

/// A fixed address for a MAC made through the admin API and replicated with the leases, so every
/// node knows it and it survives restarts and failover. (Reservations in a node's config file are
/// that node's and are not in the log.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservedHost {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub hostname: Option<String>,
    pub boot_file: Option<String>,
}

/// What apply needs besides the commands: the same on every replica because they come from the log
/// (`Command::SetParameters`, proposed by a leader from its config), never from a node's own file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameters {
    /// An expired lease is reusable only this long after its expiry (clock skew between nodes).
    pub grace_ms: u64,
    /// Lease records the table holds at most.
    pub max_leases: u64,
}

/// Reservations the table holds at most (a named limit; the log carries no config).
pub const MAX_RESERVATIONS: usize = 100_000;

/// A change to the table, decided entirely by the proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Bind `ip` to `client` (new binding or renewal) until the absolute `expires_at_ms`.
    Bind {
        client: ClientKey,
        mac: [u8; 6],
        client_id: Option<Vec<u8>>,
        hostname: Option<String>,
        ip: Ipv4Addr,
        expires_at_ms: u64,
        proposed_at_ms: u64,
        decided_at_index: u64,
    },
    /// The client gives `ip` back.
    Release { client: ClientKey, ip: Ipv4Addr, proposed_at_ms: u64, decided_at_index: u64 },
    /// A DECLINE as versions before the DECLINE rules proposed it: it quarantines `ip` unless another
    /// client holds it, whether or not the decliner ever had it (a forged DECLINE could quarantine any
    /// free address, or make a record for one outside every pool). This build never proposes it; it
    /// stays, at its place in the encoding, so that logs written before replay exactly as they were
    /// applied then (DESIGN rule 4): every replica applies an entry alike, whichever version wrote it.
    DeclineUnchecked {
        client: ClientKey,
        mac: [u8; 6],
        ip: Ipv4Addr,
        until_ms: u64,
        proposed_at_ms: u64,
        decided_at_index: u64,
    },
    /// Reserve `host.ip` for `host.mac`, replacing that MAC's reservation if it has one. Refused
    /// while another client holds an unexpired lease on the address at `proposed_at_ms`.
    Reserve { host: ReservedHost, proposed_at_ms: u64 },
    /// End the reservation of `mac`.
    Unreserve { mac: [u8; 6] },
    /// Forget the records of `ips` that have been reusable since `reusable_before_ms` at the latest
    /// and have not changed since the proposer decided (record collection: the table forgets expired,
    /// released and declined records after a retention window, the same ones on every replica).
    Collect { ips: Vec<Ipv4Addr>, reusable_before_ms: u64, decided_at_index: u64 },
    /// From here on, apply with these parameters.
    SetParameters(Parameters),
    /// The client found `ip` in use (RFC 2131 §4.3.3): quarantine it until `until_ms`. Applied only
    /// when `ip` is bound to `client` in the table, as the proposer saw it; anything else changes
    /// nothing (`NotHeld`, `Stale`).
    Decline { client: ClientKey, mac: [u8; 6], ip: Ipv4Addr, until_ms: u64, proposed_at_ms: u64, decided_at_index: u64 },
    /// The lease-relevant config digest of the leader that proposed it: what every member's own
    /// file must digest to (a member whose file differs says so). Changes no lease.
    SetConfigDigest { digest: String },
}

impl Command {
    /// The command's name in metrics (`leasehold_apply_outcomes_total{command=…}`) and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Command::Bind { .. } => "bind",
            Command::Release { .. } => "release",
            Command::DeclineUnchecked { .. } => "decline_unchecked",
            Command::Reserve { .. } => "reserve",
            Command::Unreserve { .. } => "unreserve",
            Command::Collect { .. } => "collect",
            Command::SetParameters(_) => "set_parameters",
            Command::Decline { .. } => "decline",
            Command::SetConfigDigest { .. } => "set_config_digest",
        }
    }
}

/// Who proposed a command, so the proposer can match the committed outcome to the waiting client.
/// `incarnation` changes at every process start, so a tag replayed from the log after a restart never
/// matches a new waiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProposalTag {
    pub node_id: u64,
    pub incarnation: u64,
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub tag: ProposalTag,
    pub command: Command,
}

/// What applying one proposal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The binding is committed and applied: the only thing an ACK may be built from.
    Bound(Lease),
    /// The address is held by another client: the proposer NAKs.
    Conflict {
        holder: ClientKey,
    },
    /// The table is full (`max_leases`): nothing changed.
    TableFull,
    Released,
    Declined,
    /// Release/decline of an address the client does not hold: nothing changed.
    NotHeld,
    /// The command was decided before a later entry changed the client's record (it was held up behind
    /// a partition or a leader change, or is a retransmission): refused, nothing changed. For a
    /// binding, `in_force` is the client's binding of that address when it still holds it, so a late
    /// renewal is answered from the binding in force.
    Stale {
        in_force: Option<Lease>,
    },
    Reserved,
    Unreserved,
    /// The reservation was refused: why, for the operator.
    ReservationRefused(String),
    /// How many records a `Collect` forgot.
    Collected(usize),
    ParametersSet,
    ConfigDigestSet,
}

impl Outcome {
    /// The outcome's name in metrics (`leasehold_apply_outcomes_total{outcome=…}`): `stale` for every
    /// refusal of a command decided before the record changed, whether or not a binding in force
    /// answers the client.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Bound(_) => "bound",
            Outcome::Conflict { .. } => "conflict",
            Outcome::TableFull => "table_full",
            Outcome::Released => "released",
            Outcome::Declined => "declined",
            Outcome::NotHeld => "not_held",
            Outcome::Stale { .. } => "stale",
            Outcome::Reserved => "reserved",
            Outcome::Unreserved => "unreserved",
            Outcome::ReservationRefused(_) => "reservation_refused",
            Outcome::Collected(_) => "collected",
            Outcome::ParametersSet => "parameters_set",
            Outcome::ConfigDigestSet => "config_digest_set",
        }
    }
}

/// One change to the table, as `LeaseTable::decide` decides it and `LeaseTable::apply_change` makes
/// it: a record put (its `changed_at_index` becomes the index it is applied at) or removed, a
/// reservation made or ended, the apply parameters or the config digest set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    Put(Lease),
    Remove(Ipv4Addr),
    Reserve(ReservedHost),
    Unreserve([u8; 6]),
    Parameters(Parameters),
    ConfigDigest(String),
}

/// What one command does: its outcome and the changes that make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub outcome: Outcome,
    pub changes: Vec<Change>,
}

/// The record of an address `client` declined: nobody's address until `until_ms`.
fn declined_record(
    client: &ClientKey,
    mac: &[u8; 6],
    ip: Ipv4Addr,
    until_ms: u64,
    proposed_at_ms: u64,
    index: u64,
    proposer: u64,
) -> Lease {
    Lease {
        ip,
        client: client.clone(),
        mac: *mac,
        details: None,
        hardware_client_id: false,
        state: LeaseState::Declined { until_ms },
        updated_at_ms: proposed_at_ms,
        changed_at_index: index,
        bound_by: proposer,
    }
}

/// The replicated lease table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTable {
    /// The records by address, and by client (each client's current or last released address).
    by_ip: Records,
    /// Reservations made through the admin API, by MAC, and the same by address.
    reservations: BTreeMap<[u8; 6], ReservedHost>,
    reserved_ips: BTreeMap<Ipv4Addr, [u8; 6]>,
    applied_index: u64,
    params: Parameters,
    /// `params` came from a `SetParameters` in the log (else from the node's config, for now).
    params_from_log: bool,
    /// The config digest the log last carried (`Command::SetConfigDigest`).
    config_digest: Option<String>,
    /// Peer addresses of the members added through the log (their membership change carried it),
    /// by id; a removal forgets one. Members a node was configured with at bootstrap are not here.
    member_addresses: BTreeMap<u64, std::net::SocketAddr>,
}

/// Versioned encodings start with 0xFF, which never starts an unversioned one: bincode's varint
/// prefix of a length or index is 0-250 in one byte or 251-254 for wider ones, never 255.
const VERSION_MARK: u8 = 0xff;
const ENTRY_MAGIC: [u8; 3] = [VERSION_MARK, b'L', b'E'];
const ENTRY_VERSION: u8 = 1;

impl LeaseTable {
    /// An empty table, applying with `grace_ms` and `max_leases` until the log sets its parameters.
    pub fn new(grace_ms: u64, max_leases: usize) -> Self {
        LeaseTable {
            by_ip: Records::default(),
            reservations: BTreeMap::new(),
            reserved_ips: BTreeMap::new(),
            applied_index: 0,
            params: Parameters { grace_ms, max_leases: max_leases as u64 },
            params_from_log: false,
            config_digest: None,
            member_addresses: BTreeMap::new(),
        }
    }

    /// Highest log index applied; entries at or below it are skipped (apply is idempotent).
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    pub fn grace_ms(&self) -> u64 {
        self.params.grace_ms
    }

    /// The parameters apply uses, and whether the log set them (else they are the node's own).
    pub fn parameters(&self) -> (Parameters, bool) {
        (self.params, self.params_from_log)
    }

    /// Peer addresses of the members added through the log, by id (see `apply_membership`).
    pub fn member_addresses(&self) -> &BTreeMap<u64, std::net::SocketAddr> {
        &self.member_addresses
    }

    /// Apply a committed membership change at `index`: an added member's address is kept, a
    /// removed one's forgotten (a promotion carries no address and changes nothing).
    pub fn apply_membership(&mut self, index: u64, changes: &[crate::MembershipChange]) {
        if index <= self.applied_index {
            return;
        }
        for change in changes {
            match (change.added, change.addr) {
                (true, Some(addr)) => {
                    self.member_addresses.insert(change.id, addr);
                }
                (true, None) => {}
                (false, _) => {
                    self.member_addresses.remove(&change.id);
                }
            }
        }
        self.applied_index = index;
    }

    /// The lease-relevant config digest the log last carried, if any did.
    pub fn config_digest(&self) -> Option<&str> {
        self.config_digest.as_deref()
    }

    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ip.len() == 0
    }

    pub fn by_ip(&self, ip: Ipv4Addr) -> Option<&Lease> {
        self.by_ip.get(&ip)
    }

    /// The client's current binding, or the address it last released.
    pub fn by_client(&self, client: &ClientKey) -> Option<&Lease> {
        self.by_ip.by_client(client)
    }

    /// May `client` be given `ip` at `now_ms`? True when nobody else holds it.
    pub fn is_available_to(&self, ip: Ipv4Addr, client: &ClientKey, now_ms: u64) -> bool {
        match self.by_ip.get(&ip) {
            None => true,
            Some(lease) if lease.client == *client && !matches!(lease.state, LeaseState::Declined { .. }) => true,
            Some(lease) => lease.is_reusable(now_ms, self.params.grace_ms),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.by_ip.values()
    }

    /// The replicated reservations, by MAC.
    pub fn reservations(&self) -> impl Iterator<Item = &ReservedHost> {
        self.reservations.values()
    }

    pub fn reservation(&self, mac: &[u8; 6]) -> Option<&ReservedHost> {
        self.reservations.get(mac)
    }

    /// The MAC a replicated reservation keeps `ip` for.
    pub fn reserved_for(&self, ip: Ipv4Addr) -> Option<[u8; 6]> {
        self.reserved_ips.get(&ip).copied()
    }

    /// Leases in `[first, last]`, in address order.
    pub fn range(&self, first: Ipv4Addr, last: Ipv4Addr) -> impl Iterator<Item = &Lease> {
        self.by_ip.range(first, last)
    }

    /// Apply the committed entry at `index`. Returns `None` when the entry was applied before.
    pub fn apply(&mut self, index: u64, proposals: &[Proposal]) -> Option<Vec<Outcome>> {
        self.apply_touching(index, proposals, &mut Vec::new())
    }

    /// `apply`, and push to `touched` every address whose record the entry may have changed (more
    /// is harmless): what indexes derived from the table must look at again.
    pub fn apply_touching(
        &mut self,
        index: u64,
        proposals: &[Proposal],
        touched: &mut Vec<Ipv4Addr>,
    ) -> Option<Vec<Outcome>> {
        if index <= self.applied_index {
            return None;
        }
        for proposal in proposals {
            match &proposal.command {
                Command::Bind { client, ip, .. } => {
                    touched.push(*ip);
                    touched.extend(self.by_ip.by_client(client).map(|lease| lease.ip));
                }
                Command::Release { ip, .. } | Command::Decline { ip, .. } | Command::DeclineUnchecked { ip, .. } => {
                    touched.push(*ip)
                }
                Command::Collect { ips, .. } => touched.extend(ips),
                Command::Reserve { .. }
                | Command::Unreserve { .. }
                | Command::SetParameters(_)
                | Command::SetConfigDigest { .. } => {}
            }
        }
        let outcomes = proposals.iter().map(|p| self.apply_command(index, p.tag.node_id, &p.command)).collect();
        self.applied_index = index;
        debug_assert!(self.check_invariants().is_ok(), "{:?}", self.check_invariants());
        Some(outcomes)
    }

    /// Record that `index` was applied without commands (Raft's empty entries, conf changes).
    pub fn skip(&mut self, index: u64) {
        if index > self.applied_index {
            self.applied_index = index;
        }
    }

    /// Has the record at `ip` changed since a proposer decided on the table at `decided_at_index`?
    fn changed_since(&self, ip: &Ipv4Addr, decided_at_index: u64) -> bool {
        self.by_ip.get(ip).is_some_and(|l| l.changed_at_index > decided_at_index)
    }

    /// Apply one command at `index`, proposed by node `proposer`: decide it on the table as it is,
    /// then make the changes it decided.
    fn apply_command(&mut self, index: u64, proposer: u64, command: &Command) -> Outcome {
        let Decided { outcome, changes } = self.decide(index, proposer, command);
        for change in changes {
            self.apply_change(index, change);
        }
        outcome
    }

    /// What `command`, proposed by node `proposer`, does to the table as it is now if it is applied
    /// at `index`: its outcome and the changes to make, without making them. The Raft store applies
    /// them at once (`apply_command`); the etcd store writes them in one transaction that holds only
    /// while the records they were decided on are unchanged, and every node applies them from its
    /// watch (`apply_changes`).
    pub fn decide(&self, index: u64, proposer: u64, command: &Command) -> Decided {
        let unchanged = |outcome| Decided { outcome, changes: Vec::new() };
        match command {
            Command::Bind { client, mac, client_id, hostname, ip, expires_at_ms, proposed_at_ms, decided_at_index } => {
                // The client's own records (the address asked for, and the one it holds now) must be
                // as the proposer saw them: otherwise a late renewal could revive an address the client
                // has since released or left, or free the address it was given afterwards.
                let held_elsewhere = self.by_ip.by_client(client).map(|lease| lease.ip).filter(|held| held != ip);
                let stale = held_elsewhere.is_some_and(|held| self.changed_since(&held, *decided_at_index))
                    || self
                        .by_ip
                        .get(ip)
                        .is_some_and(|l| l.client == *client && l.changed_at_index > *decided_at_index);
                if stale {
                    return unchanged(match self.by_ip.get(ip) {
                        // Decided before the binding now in force (a retransmission, or a renewal
                        // held up): the client is answered from that binding, which stays as it is.
                        Some(current)
                            if current.client == *client
                                && held_elsewhere.is_none()
                                && matches!(current.state, LeaseState::Bound { .. }) =>
                        {
                            Outcome::Stale { in_force: Some(current.clone()) }
                        }
                        _ => Outcome::Stale { in_force: None },
                    });
                }
                if let Some(current) = self.by_ip.get(ip) {
                    let same_client = current.client == *client;
                    if !same_client && !current.is_reusable(*proposed_at_ms, self.params.grace_ms) {
                        return unchanged(Outcome::Conflict { holder: current.client.clone() });
                    }
                    if same_client
                        && matches!(current.state, LeaseState::Declined { until_ms } if until_ms > *proposed_at_ms)
                    {
                        return unchanged(Outcome::Conflict { holder: current.client.clone() });
                    }
                } else if self.by_ip.len() as u64 >= self.params.max_leases && self.by_ip.by_client(client).is_none() {
                    return unchanged(Outcome::TableFull);
                }
                // The address is ours to give. A previous holder loses its claim (its record is
                // replaced), and the client's previous address (if another) is freed: one address
                // per client.
                let mut changes = Vec::with_capacity(2);
                if let Some(old_ip) = held_elsewhere {
                    changes.push(Change::Remove(old_ip));
                }
                let (details, hardware_client_id) =
                    details(mac, client_id.as_deref().map(Box::from), hostname.as_deref().map(Box::from));
                let lease = Lease {
                    ip: *ip,
                    client: client.clone(),
                    mac: *mac,
                    details,
                    hardware_client_id,
                    state: LeaseState::Bound { expires_at_ms: *expires_at_ms },
                    updated_at_ms: *proposed_at_ms,
                    changed_at_index: index,
                    bound_by: proposer,
                };
                changes.push(Change::Put(lease.clone()));
                Decided { outcome: Outcome::Bound(lease), changes }
            }
            Command::Release { client, ip, proposed_at_ms, decided_at_index } => match self.by_ip.get(ip) {
                Some(lease) if lease.client == *client && matches!(lease.state, LeaseState::Bound { .. }) => {
                    if lease.changed_at_index > *decided_at_index || lease.bound_by != proposer {
                        // A RELEASE held up behind a partition must not end a binding the client got
                        // (or renewed) after it let the address go; nor may one that reached the
                        // server of an earlier binding (`dhclient -r; dhclient`: the new DORA through
                        // the leader can commit before the old server's forwarded RELEASE).
                        return unchanged(Outcome::Stale { in_force: None });
                    }
                    let mut released = lease.clone();
                    released.state = LeaseState::Released { at_ms: *proposed_at_ms };
                    released.updated_at_ms = *proposed_at_ms;
                    released.changed_at_index = index;
                    Decided { outcome: Outcome::Released, changes: vec![Change::Put(released)] }
                }
                _ => unchanged(Outcome::NotHeld),
            },
            Command::Decline { client, mac, ip, until_ms, proposed_at_ms, decided_at_index } => {
                // Only the client an address is bound to can report it in use. A DECLINE for a free
                // address, one outside the pools or another client's changes nothing, so forged
                // DECLINEs can neither quarantine free addresses nor fill the table (`max_leases`).
                let Some(current) = self.by_ip.get(ip) else { return unchanged(Outcome::NotHeld) };
                if current.client != *client || !matches!(current.state, LeaseState::Bound { .. }) {
                    return unchanged(Outcome::NotHeld);
                }
                if current.changed_at_index > *decided_at_index {
                    // Decided before the client's current binding of the address.
                    return unchanged(Outcome::Stale { in_force: None });
                }
                // A declined record is nobody's address: the client's claim ends with its binding.
                let declined = declined_record(client, mac, *ip, *until_ms, *proposed_at_ms, index, proposer);
                Decided { outcome: Outcome::Declined, changes: vec![Change::Put(declined)] }
            }
            Command::DeclineUnchecked { client, mac, ip, until_ms, proposed_at_ms, decided_at_index } => {
                let current = self.by_ip.get(ip);
                let held_by_client = current.is_some_and(|l| l.client == *client);
                if held_by_client && self.changed_since(ip, *decided_at_index) {
                    // Decided before the client's current binding of the address.
                    return unchanged(Outcome::Stale { in_force: None });
                }
                let free_for_anyone = current.is_none_or(|l| l.is_reusable(*proposed_at_ms, self.params.grace_ms));
                if !held_by_client && !free_for_anyone {
                    // Someone else holds it: a decline must not take another client's lease away.
                    return unchanged(Outcome::NotHeld);
                }
                if current.is_none() && self.by_ip.len() as u64 >= self.params.max_leases {
                    return unchanged(Outcome::TableFull);
                }
                // A declined record is nobody's address: the previous holder's claim ends with its
                // record, and the decliner's own record elsewhere (if any) stays its own.
                let declined = declined_record(client, mac, *ip, *until_ms, *proposed_at_ms, index, proposer);
                Decided { outcome: Outcome::Declined, changes: vec![Change::Put(declined)] }
            }
            Command::Reserve { host, proposed_at_ms } => {
                if let Some(other) = self.reserved_ips.get(&host.ip).filter(|other| **other != host.mac) {
                    return unchanged(Outcome::ReservationRefused(format!(
                        "{} is already reserved for {}",
                        host.ip,
                        ClientKey::Mac(*other)
                    )));
                }
                if let Some(lease) = self.by_ip.get(&host.ip) {
                    if lease.mac != host.mac && !lease.is_reusable(*proposed_at_ms, self.params.grace_ms) {
                        if let LeaseState::Bound { expires_at_ms } = lease.state {
                            return unchanged(Outcome::ReservationRefused(format!(
                                "{} is leased to {} (its lease ends at {} unix seconds); release it or wait",
                                host.ip,
                                lease.client,
                                expires_at_ms / 1000
                            )));
                        }
                    }
                }
                if !self.reservations.contains_key(&host.mac) && self.reservations.len() >= MAX_RESERVATIONS {
                    return unchanged(Outcome::TableFull);
                }
                Decided { outcome: Outcome::Reserved, changes: vec![Change::Reserve(host.clone())] }
            }
            Command::Collect { ips, reusable_before_ms, decided_at_index } => {
                let changes: Vec<Change> =
                    self.collectable(ips, *reusable_before_ms, *decided_at_index).map(Change::Remove).collect();
                Decided { outcome: Outcome::Collected(changes.len()), changes }
            }
            Command::SetParameters(params) => {
                Decided { outcome: Outcome::ParametersSet, changes: vec![Change::Parameters(*params)] }
            }
            Command::SetConfigDigest { digest } => {
                Decided { outcome: Outcome::ConfigDigestSet, changes: vec![Change::ConfigDigest(digest.clone())] }
            }
            Command::Unreserve { mac } => match self.reservations.get(mac) {
                Some(_) => Decided { outcome: Outcome::Unreserved, changes: vec![Change::Unreserve(*mac)] },
                None => unchanged(Outcome::NotHeld),
            },
        }
    }

    /// Make one change `decide` decided, at `index`. Total: a change is made whatever the table
    /// holds (the etcd store applies whatever its watch delivers, `etcdctl` edits included): a
    /// reservation of an address another MAC had reserved takes it over.
    pub fn apply_change(&mut self, index: u64, change: Change) {
        match change {
            Change::Put(mut lease) => {
                lease.changed_at_index = index;
                if !matches!(lease.state, LeaseState::Declined { .. }) {
                    // One record per client: a record the client had elsewhere goes (the Raft
                    // store's `Bind` removed it already; an etcd watch may deliver it after).
                    if let Some(old_ip) =
                        self.by_ip.by_client(&lease.client).map(|l| l.ip).filter(|old| *old != lease.ip)
                    {
                        self.by_ip.remove(&old_ip);
                    }
                }
                self.by_ip.insert(lease);
            }
            Change::Remove(ip) => {
                self.by_ip.remove(&ip);
            }
            Change::Reserve(host) => {
                if let Some(previous) = self.reservations.remove(&host.mac) {
                    self.reserved_ips.remove(&previous.ip);
                }
                if let Some(other) = self.reserved_ips.remove(&host.ip) {
                    self.reservations.remove(&other);
                }
                self.reserved_ips.insert(host.ip, host.mac);
                self.reservations.insert(host.mac, host);
            }
            Change::Unreserve(mac) => {
                if let Some(previous) = self.reservations.remove(&mac) {
                    self.reserved_ips.remove(&previous.ip);
                }
            }
            Change::Parameters(params) => {
                self.params = params;
                self.params_from_log = true;
            }
            Change::ConfigDigest(digest) => self.config_digest = Some(digest),
        }
    }

    /// Apply changes decided elsewhere (the etcd store's watch) at `index`, pushing to `touched`
    /// every address whose record they change. Changes at or below the applied index were applied
    /// before, except those of `index == applied_index` delivered in parts, which are idempotent.
    pub fn apply_changes(&mut self, index: u64, changes: Vec<Change>, touched: &mut Vec<Ipv4Addr>) {
        if index < self.applied_index {
            return;
        }
        for change in changes {
            match &change {
                Change::Put(lease) => {
                    touched.push(lease.ip);
                    touched.extend(self.by_ip.by_client(&lease.client).map(|l| l.ip));
                }
                Change::Remove(ip) => touched.push(*ip),
                _ => {}
            }
            self.apply_change(index, change);
        }
        self.applied_index = index;
        debug_assert!(self.check_invariants().is_ok(), "{:?}", self.check_invariants());
    }

    /// Structural invariants: the indexes agree with the records, and no client holds two addresses.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.by_ip.check()?;
        if self.reserved_ips.len() != self.reservations.len()
            || self.reservations.values().any(|host| self.reserved_ips.get(&host.ip) != Some(&host.mac))
        {
            return Err("reservations by MAC and by address disagree".into());
        }
        Ok(())
    }
}

/// Encode a batch of proposals as one Raft entry's data: the version mark, then the proposals.
pub fn encode_entry(proposals: &[Proposal]) -> Vec<u8> {
    let mut out = ENTRY_MAGIC.to_vec();
    out.push(ENTRY_VERSION);
    bincode::serde::encode_into_std_write(proposals, &mut out, bincode::config::standard())
        .expect("proposals always serialise");
    out
}

/// Decode a Raft entry's data, of this version or an unversioned (earlier) one. New `Command`
/// variants are only ever appended, so earlier entries decode unchanged.
pub fn decode_entry(data: &[u8]) -> Result<Vec<Proposal>, ClusterError> {
    let body = match data.strip_prefix(&ENTRY_MAGIC[..]) {
        Some([ENTRY_VERSION, rest @ ..]) => rest,
        Some(other) => {
            let version = other.first().copied().unwrap_or(0);
            return Err(ClusterError::Corrupt(format!(
                "log entry of version {version}; this build reads versions up to {ENTRY_VERSION}"
            )));
        }
        None => data,
    };
    bincode::serde::decode_from_slice(body, bincode::config::standard())
        .map(|(p, _)| p)
        .map_err(|e| ClusterError::Corrupt(format!("log entry: {e}")))
}
