//! The lease records, by address: a dense slab of records and an ordered index from address to slot.
//!
//! A `BTreeMap<Ipv4Addr, Lease>` fills its nodes only about half when addresses arrive in order (as
//! the allocator hands them out), which doubled the cost of every 104-byte record. Here the records
//! sit packed in one `Vec` and the ordered index holds 8-byte (address, slot) pairs. Removal moves the
//! last record into the freed slot, so the slab never has holes.
//!
//! The client index is derived from the records too: every record but a declined one is its
//! client's current or last address, and the table never lets a client have two such records. So it
//! is a hash table of slots, hashed by the record's client key: 4 bytes a bucket where a
//! `BTreeMap<ClientKey, Ipv4Addr>` took about 40 per client, and it follows `insert` and `remove`
//! without the table keeping it by hand.
//!
//! While a snapshot is written a slice at a time (`freeze`, then `frozen_slice` until done), every
//! change to an address the snapshot has not reached yet first keeps the record as it was (copy on
//! write): the slices together are the records as they stood at `freeze`.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::net::Ipv4Addr;

use hashbrown::HashTable;

use super::{ClientKey, Lease, LeaseState};

#[derive(Debug, Clone, Default)]
pub(super) struct Records {
    slots: Vec<Lease>,
    index: BTreeMap<Ipv4Addr, u32>,
    /// Slots of the records that are their client's (all but declined ones), by client key. The
    /// hash is keyed per process (hostile MACs cannot aim at one bucket); nothing depends on order.
    clients: HashTable<u32>,
    hasher: RandomState,
    frozen: Option<Frozen>,
}

/// Is `lease` its client's record (in the client index)?
fn is_clients(lease: &Lease) -> bool {
    !matches!(lease.state, LeaseState::Declined { .. })
}

/// The records as they were at `freeze`, where they changed since, for the addresses not written yet.
#[derive(Debug, Clone, Default)]
struct Frozen {
    /// The first address the snapshot has not reached; `None` once it has written every record.
    next: Option<Ipv4Addr>,
    /// Address -> its record at `freeze` (`None`: it had none).
    before: BTreeMap<Ipv4Addr, Option<Lease>>,
}

impl Records {
    /// The records of `leases`, which must be in strictly ascending address order (as snapshots
    /// hold them). Built in bulk: O(n), with full index nodes.
    pub(super) fn from_sorted(leases: Vec<Lease>) -> Result<Records, String> {
        if let Some(pair) = leases.windows(2).find(|pair| pair[0].ip >= pair[1].ip) {
            return Err(format!("records out of address order: {} before {}", pair[0].ip, pair[1].ip));
        }
        if u32::try_from(leases.len()).is_err() {
            return Err(format!("{} records do not fit u32 slots", leases.len()));
        }
        let index = leases.iter().enumerate().map(|(slot, lease)| (lease.ip, slot as u32)).collect();
        let mut records =
            Records { slots: leases, index, clients: HashTable::new(), hasher: RandomState::new(), frozen: None };
        records.clients.reserve(records.slots.len(), |_| 0);
        for slot in 0..records.slots.len() as u32 {
            let lease = &records.slots[slot as usize];
            if is_clients(lease) {
                if records.client_slot(&lease.client).is_some() {
                    return Err(format!("client {} holds two records", lease.client));
                }
                records.index_client(slot);
            }
        }
        Ok(records)
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    fn hash(&self, client: &ClientKey) -> u64 {
        self.hasher.hash_one(client)
    }

    fn client_slot(&self, client: &ClientKey) -> Option<u32> {
        let slots = &self.slots;
        self.clients.find(self.hash(client), |slot| slots[*slot as usize].client == *client).copied()
    }

    /// The client's current record, or the one it last released (not a declined one).
    pub(super) fn by_client(&self, client: &ClientKey) -> Option<&Lease> {
        self.client_slot(client).map(|slot| &self.slots[slot as usize])
    }

    fn index_client(&mut self, slot: u32) {
        let hash = self.hash(&self.slots[slot as usize].client);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.clients.insert_unique(hash, slot, |slot| hasher.hash_one(&slots[*slot as usize].client));
    }

    /// Take the record at `slot` (of `client`) out of the client index, or point its entry at `to`.
    fn reindex_client(&mut self, client: &ClientKey, slot: u32, to: Option<u32>) {
        let hash = self.hash(client);
        let entry = self.clients.find_entry(hash, |s| *s == slot).expect("a client's record is in the client index");
        match to {
            None => {
                entry.remove();
            }
            Some(to) => *entry.into_mut() = to,
        }
    }

    pub(super) fn get(&self, ip: &Ipv4Addr) -> Option<&Lease> {
        self.index.get(ip).map(|slot| &self.slots[*slot as usize])
    }

    /// Insert or replace the record of `lease.ip`. A client's (not declined) record must be the
    /// client's only one: the table frees the client's other address first.
    pub(super) fn insert(&mut self, lease: Lease) {
        self.preserve(&lease.ip);
        let indexed = is_clients(&lease);
        debug_assert!(
            !indexed || self.client_slot(&lease.client).is_none_or(|slot| self.slots[slot as usize].ip == lease.ip),
            "{} would hold two records",
            lease.client
        );
        let slot = match self.index.get(&lease.ip) {
            Some(slot) => {
                let slot = *slot;
                let old = std::mem::replace(&mut self.slots[slot as usize], lease);
                if is_clients(&old) {
                    self.reindex_client(&old.client, slot, None);
                }
                slot
            }
            None => {
                let slot =
                    u32::try_from(self.slots.len()).expect("lease records fit u32 slots (max_leases is smaller)");
                self.index.insert(lease.ip, slot);
                self.slots.push(lease);
                slot
            }
        };
        if indexed {
            self.index_client(slot);
        }
    }

    pub(super) fn remove(&mut self, ip: &Ipv4Addr) -> Option<Lease> {
        self.preserve(ip);
        let slot = self.index.remove(ip)?;
        if is_clients(&self.slots[slot as usize]) {
            let client = self.slots[slot as usize].client.clone();
            self.reindex_client(&client, slot, None);
        }
        let last = self.slots.len() as u32 - 1;
        let removed = self.slots.swap_remove(slot as usize);
        if slot != last {
            // The last record moved into the freed slot.
            let moved = &self.slots[slot as usize];
            let (moved_ip, moved_client) = (moved.ip, is_clients(moved).then(|| moved.client.clone()));
            self.index.insert(moved_ip, slot);
            if let Some(client) = moved_client {
                self.reindex_client(&client, last, Some(slot));
            }
        }
        Some(removed)
    }

    /// The records in address order.
    pub(super) fn values(&self) -> impl ExactSizeIterator<Item = &Lease> + Clone + '_ {
        self.index.values().map(|slot| &self.slots[*slot as usize])
    }

    /// The records in `[first, last]`, in address order.
    pub(super) fn range(&self, first: Ipv4Addr, last: Ipv4Addr) -> impl Iterator<Item = &Lease> + '_ {
        self.index.range(first..=last).map(|(_, slot)| &self.slots[*slot as usize])
    }

    /// Before `ip` changes: keep its record as it was at `freeze` if the snapshot has yet to write it.
    fn preserve(&mut self, ip: &Ipv4Addr) {
        let Some(frozen) = &mut self.frozen else { return };
        if frozen.next.is_some_and(|next| *ip >= next) && !frozen.before.contains_key(ip) {
            let record = self.index.get(ip).map(|slot| self.slots[*slot as usize].clone());
            frozen.before.insert(*ip, record);
        }
    }

    /// Begin a snapshot of the records as they are now (one in progress is dropped). Returns how
    /// many records it will write.
    pub(super) fn freeze(&mut self) -> usize {
        self.frozen = Some(Frozen { next: Some(Ipv4Addr::UNSPECIFIED), before: BTreeMap::new() });
        self.len()
    }

    pub(super) fn thaw(&mut self) {
        self.frozen = None;
    }

    /// A snapshot is in progress (frozen and not thawed).
    pub(super) fn is_frozen(&self) -> bool {
        self.frozen.is_some()
    }

    /// Hand `emit` the next records of the snapshot, in address order, as they were at `freeze`:
    /// at most `max_addresses` addresses' worth. True once every record was handed out.
    pub(super) fn frozen_slice(&mut self, max_addresses: usize, mut emit: impl FnMut(&Lease)) -> bool {
        let Records { slots, index, frozen, .. } = self;
        let Some(Frozen { next: Some(start), before }) = frozen.as_mut() else { return true };
        let mut current = index.range(*start..).peekable();
        let mut kept = before.range(*start..).peekable();
        let mut last = None;
        for _ in 0..max_addresses {
            let at_current = current.peek().map(|(ip, _)| **ip);
            let at_kept = kept.peek().map(|(ip, _)| **ip);
            let ip = match (at_current, at_kept) {
                (None, None) => break,
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).expect("one of the two"),
            };
            if at_kept == Some(ip) {
                // Changed since `freeze`: the record as it was (or none, if it had none then).
                if let Some((_, Some(record))) = kept.next() {
                    emit(record);
                }
                if at_current == Some(ip) {
                    current.next();
                }
            } else if let Some((_, slot)) = current.next() {
                emit(&slots[*slot as usize]);
            }
            last = Some(ip);
        }
        let done = current.peek().is_none() && kept.peek().is_none();
        let next =
            if done { None } else { last.map_or(Some(*start), |ip| u32::from(ip).checked_add(1).map(Ipv4Addr::from)) };
        // What the snapshot has passed needs no keeping any more.
        *before = match next {
            Some(next) => before.split_off(&next),
            None => BTreeMap::new(),
        };
        frozen.as_mut().expect("frozen above").next = next;
        next.is_none()
    }

    /// Every index entry names a record of its own address, and every record is indexed.
    pub(super) fn check(&self) -> Result<(), String> {
        if self.index.len() != self.slots.len() {
            return Err(format!("{} indexed addresses for {} records", self.index.len(), self.slots.len()));
        }
        for (ip, slot) in &self.index {
            match self.slots.get(*slot as usize) {
                Some(lease) if lease.ip == *ip => {}
                other => return Err(format!("address {ip} indexed to slot {slot} holding {other:?}")),
            }
        }
        let owned = self.slots.iter().filter(|lease| is_clients(lease)).count();
        if owned != self.clients.len() {
            return Err(format!("{owned} clients' records but {} in the client index", self.clients.len()));
        }
        for (slot, lease) in self.slots.iter().enumerate() {
            if is_clients(lease) && self.client_slot(&lease.client) != Some(slot as u32) {
                return Err(format!("{} of {} is not its client's record in the index", lease.ip, lease.client));
            }
        }
        Ok(())
    }
}

impl PartialEq for Records {
    /// The same records, whatever slots they sit in.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.values().eq(other.values())
    }
}

impl Eq for Records {}
