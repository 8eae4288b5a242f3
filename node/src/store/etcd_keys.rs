//! The etcd store's key layout and encodings, without I/O: which keys a decided change writes and
//! compares (`plan`), and what a watched key's event changes in the table (`change_of`).
//!
//! Under the prefix (e.g. `/leasehold`):
//! - `/lease/<ip>`: an address's record (JSON, versioned); its `mod_revision` is the record's
//!   `changed_at_index`.
//! - `/client/<key>`: the address that is the client's record. Never read back into the table: it
//!   exists so a transaction can compare the client's revision (no two nodes give one client two
//!   records).
//! - `/reservation/<mac>`: a replicated reservation (JSON), editable with `etcdctl`.
//! - `/parameters`, `/config-digest`: what apply uses and the leader's config digest.
//! - `/config`: the config every node shares (TOML: pools, reservations, options, classes, PXE;
//!   `leasehold_config::shared`), written by a node's reload or with `etcdctl put`.
//! - `/leader`: the elected node (on its etcd lease); `/member/<id>`: each live node (on its lease,
//!   JSON `Member`: its addresses and digests, which every node compares with the elected one's).
//!
//! Every write is one transaction that holds only while every key the decision read is unchanged
//! since the revision the proposer's table had applied (`mod_revision <= decided_at`): two nodes can
//! never both bind one address or one client, whichever of them answered.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use leasehold_cluster::lease::{Change, ClientKey, Lease, LeaseState, LeaseTable, Parameters, ReservedHost};
use serde::{Deserialize, Serialize};

/// The version of the values this build writes; a value of another version is refused.
const VALUE_VERSION: u32 = 1;

/// Keys of one pool's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

/// One operation of a transaction's success branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(Vec<u8>),
    Delete,
}

/// One transaction: every compared key's `mod_revision` at most `decided_at`, then the operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub decided_at: u64,
    pub compares: BTreeSet<String>,
    pub ops: BTreeMap<String, Op>,
}

/// A key's event from the watch (or a key read by a range, as a put).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    Put { key: &'a str, value: &'a [u8] },
    Delete { key: &'a str },
}

/// What a watched key is to this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched {
    /// A change to the table.
    Table(Change),
    /// The elected node (`None`: nobody holds the key).
    Leader(Option<u64>),
    /// The shared config document (`None`: the key was deleted).
    Config(Option<String>),
    /// A live node's member key (`None`: gone, with its etcd lease).
    Member(u64, Option<Member>),
    /// A key the table does not hold (client keys, members).
    Other,
}

/// What a node says of itself in its `/member/<id>` key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// From the key, not the value.
    #[serde(skip)]
    pub id: u64,
    #[serde(default)]
    pub server_ip: Option<String>,
    /// Its admin API (`leasehold reload --all` finds the members through it).
    #[serde(default)]
    pub admin: Option<String>,
    /// Its lease-relevant config digest (`reload::lease_config_digest`).
    #[serde(default)]
    pub config_digest: Option<String>,
    /// Its boot root digest (`boot_digest`), hex; `None` without a root or before the first.
    #[serde(default)]
    pub boot_root_digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("etcd key {key}: {problem}")]
pub struct BadValue {
    pub key: String,
    pub problem: String,
}

#[derive(Serialize, Deserialize)]
struct Versioned<T> {
    v: u32,
    #[serde(flatten)]
    value: T,
}

#[derive(Serialize, Deserialize)]
struct LeaseValue {
    lease: Lease,
}

#[derive(Serialize, Deserialize)]
struct ReservationValue {
    reservation: ReservedHost,
}

#[derive(Serialize, Deserialize)]
struct ParametersValue {
    parameters: Parameters,
}

fn encode<T: Serialize>(value: T) -> Vec<u8> {
    serde_json::to_vec(&Versioned { v: VALUE_VERSION, value }).expect("plain data encodes as JSON")
}

fn decode<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, BadValue> {
    let bad = |problem: String| BadValue { key: key.to_string(), problem };
    let versioned: Versioned<T> = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if versioned.v != VALUE_VERSION {
        return Err(bad(format!("value version {} (this build reads {VALUE_VERSION})", versioned.v)));
    }
    Ok(versioned.value)
}

fn mac_text(mac: &[u8; 6]) -> String {
    ClientKey::Mac(*mac).to_string()
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys { prefix: prefix.trim_end_matches('/').to_string() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Every key of the pool: `[start, end)`.
    pub fn range(&self) -> (String, String) {
        (format!("{}/", self.prefix), format!("{}0", self.prefix))
    }

    pub fn lease(&self, ip: Ipv4Addr) -> String {
        format!("{}/lease/{ip}", self.prefix)
    }

    pub fn client(&self, client: &ClientKey) -> String {
        format!("{}/client/{client}", self.prefix)
    }

    pub fn reservation(&self, mac: &[u8; 6]) -> String {
        format!("{}/reservation/{}", self.prefix, mac_text(mac))
    }

    pub fn parameters(&self) -> String {
        format!("{}/parameters", self.prefix)
    }

    pub fn config_digest(&self) -> String {
        format!("{}/config-digest", self.prefix)
    }

    pub fn config(&self) -> String {
        format!("{}/config", self.prefix)
    }

    pub fn leader(&self) -> String {
        format!("{}/leader", self.prefix)
    }

    pub fn member(&self, node_id: u64) -> String {
        format!("{}/member/{node_id}", self.prefix)
    }

    /// The transaction that writes `changes`, decided on `table` (applied to `decided_at`).
    pub fn plan(&self, table: &LeaseTable, changes: &[Change]) -> Write {
        let mut write = Write { decided_at: table.applied_index(), compares: BTreeSet::new(), ops: BTreeMap::new() };
        // The record a change replaces, as later changes of the same write see it.
        let mut records: BTreeMap<Ipv4Addr, Option<Lease>> = BTreeMap::new();
        let is_clients = |lease: &Lease| !matches!(lease.state, LeaseState::Declined { .. });
        for change in changes {
            match change {
                Change::Put(lease) => {
                    let before = records.entry(lease.ip).or_insert_with(|| table.by_ip(lease.ip).cloned()).take();
                    self.replace(&mut write, lease.ip, before.as_ref(), Some(lease));
                    if is_clients(lease) {
                        // The client's record elsewhere, if any, goes with this one (one per client).
                        if let Some(old) = table.by_client(&lease.client).filter(|old| old.ip != lease.ip) {
                            let old_before = records.entry(old.ip).or_insert_with(|| Some(old.clone())).take();
                            if old_before.is_some() {
                                self.replace(&mut write, old.ip, old_before.as_ref(), None);
                            }
                        }
                    }
                    records.insert(lease.ip, Some(lease.clone()));
                    // The decision read the apply parameters (the grace of an expired record).
                    write.compares.insert(self.parameters());
                }
                Change::Remove(ip) => {
                    let before = records.entry(*ip).or_insert_with(|| table.by_ip(*ip).cloned()).take();
                    self.replace(&mut write, *ip, before.as_ref(), None);
                }
                Change::Reserve(host) => {
                    write.compares.insert(self.reservation(&host.mac));
                    write.compares.insert(self.lease(host.ip));
                    if let Some(other) = table.reserved_for(host.ip).filter(|other| *other != host.mac) {
                        write.compares.insert(self.reservation(&other));
                        write.ops.insert(self.reservation(&other), Op::Delete);
                    }
                    let value = encode(ReservationValue { reservation: host.clone() });
                    write.ops.insert(self.reservation(&host.mac), Op::Put(value));
                }
                Change::Unreserve(mac) => {
                    write.compares.insert(self.reservation(mac));
                    write.ops.insert(self.reservation(mac), Op::Delete);
                }
                Change::Parameters(parameters) => {
                    write.ops.insert(self.parameters(), Op::Put(encode(ParametersValue { parameters: *parameters })));
                }
                Change::ConfigDigest(digest) => {
                    write.ops.insert(self.config_digest(), Op::Put(digest.as_bytes().to_vec()));
                }
            }
        }
        write
    }

    /// The operations and compares that replace the record of `ip` (`before`) with `after`, and
    /// move the client keys with it.
    fn replace(&self, write: &mut Write, ip: Ipv4Addr, before: Option<&Lease>, after: Option<&Lease>) {
        let is_clients = |lease: &Lease| !matches!(lease.state, LeaseState::Declined { .. });
        write.compares.insert(self.lease(ip));
        match after {
            Some(lease) => write.ops.insert(self.lease(ip), Op::Put(encode(LeaseValue { lease: lease.clone() }))),
            None => write.ops.insert(self.lease(ip), Op::Delete),
        };
        if let Some(before) = before.filter(|b| is_clients(b)) {
            let key = self.client(&before.client);
            write.compares.insert(key.clone());
            // Deleted unless the same write puts it again (below, or by a later change).
            write.ops.entry(key).or_insert(Op::Delete);
        }
        if let Some(after) = after.filter(|a| is_clients(a)) {
            let key = self.client(&after.client);
            write.compares.insert(key.clone());
            write.ops.insert(key, Op::Put(ip.to_string().into_bytes()));
        }
    }

    /// What the event of a key under the prefix means to this node.
    pub fn watched(&self, event: Event<'_>) -> Result<Watched, BadValue> {
        let key = match event {
            Event::Put { key, .. } | Event::Delete { key } => key,
        };
        let bad = |problem: &str| BadValue { key: key.to_string(), problem: problem.to_string() };
        let Some(rest) = key.strip_prefix(&self.prefix).and_then(|rest| rest.strip_prefix('/')) else {
            return Ok(Watched::Other);
        };
        let (kind, name) = rest.split_once('/').unwrap_or((rest, ""));
        Ok(match (kind, event) {
            ("lease", Event::Put { value, .. }) => {
                let LeaseValue { lease } = decode(key, value)?;
                if lease.ip.to_string() != name {
                    return Err(bad("the record's address is not the key's"));
                }
                Watched::Table(Change::Put(lease))
            }
            ("lease", Event::Delete { .. }) => {
                Watched::Table(Change::Remove(name.parse().map_err(|_| bad("not an IPv4 address"))?))
            }
            ("reservation", Event::Put { value, .. }) => {
                let ReservationValue { reservation } = decode(key, value)?;
                if mac_text(&reservation.mac) != name.to_ascii_lowercase() {
                    return Err(bad("the reservation's MAC is not the key's"));
                }
                Watched::Table(Change::Reserve(reservation))
            }
            ("reservation", Event::Delete { .. }) => {
                Watched::Table(Change::Unreserve(parse_mac(name).ok_or_else(|| bad("not a MAC address"))?))
            }
            ("parameters", Event::Put { value, .. }) => {
                let ParametersValue { parameters } = decode(key, value)?;
                Watched::Table(Change::Parameters(parameters))
            }
            ("config-digest", Event::Put { value, .. }) => Watched::Table(Change::ConfigDigest(
                std::str::from_utf8(value).map_err(|_| bad("not UTF-8"))?.to_string(),
            )),
            ("leader", Event::Put { value, .. }) => Watched::Leader(Some(
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or_else(|| bad("not a node id"))?,
            )),
            ("leader", Event::Delete { .. }) => Watched::Leader(None),
            ("config", Event::Put { value, .. }) => {
                Watched::Config(Some(std::str::from_utf8(value).map_err(|_| bad("not UTF-8"))?.to_string()))
            }
            ("config", Event::Delete { .. }) => Watched::Config(None),
            ("member", event) => {
                let id = name.parse().map_err(|_| bad("not a node id"))?;
                match event {
                    Event::Put { value, .. } => {
                        let member: Member =
                            serde_json::from_slice(value).map_err(|e| bad(&format!("not a member value: {e}")))?;
                        Watched::Member(id, Some(Member { id, ..member }))
                    }
                    Event::Delete { .. } => Watched::Member(id, None),
                }
            }
            _ => Watched::Other,
        })
    }
}

#[cfg(test)]
mod tests;
