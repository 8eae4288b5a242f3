//! The lease records, by address: a dense slab of records and an ordered index from address to slot.
//!
//! A `BTreeMap<Ipv4Addr, Lease>` fills its nodes only about half when addresses arrive in order (as
//! the allocator hands them out), which doubled the cost of every 104-byte record. Here the records
//! sit packed in one `Vec` and the ordered index holds 8-byte (address, slot) pairs. Removal moves the
//! last record into the freed slot, so the slab never has holes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::Lease;

#[derive(Debug, Clone, Default)]
pub(super) struct Records {
    slots: Vec<Lease>,
    index: BTreeMap<Ipv4Addr, u32>,
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
        Ok(Records { slots: leases, index })
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(super) fn get(&self, ip: &Ipv4Addr) -> Option<&Lease> {
        self.index.get(ip).map(|slot| &self.slots[*slot as usize])
    }

    pub(super) fn get_mut(&mut self, ip: &Ipv4Addr) -> Option<&mut Lease> {
        self.index.get(ip).map(|slot| &mut self.slots[*slot as usize])
    }

    /// Insert or replace the record of `lease.ip`.
    pub(super) fn insert(&mut self, lease: Lease) {
        match self.index.get(&lease.ip) {
            Some(slot) => self.slots[*slot as usize] = lease,
            None => {
                let slot =
                    u32::try_from(self.slots.len()).expect("lease records fit u32 slots (max_leases is smaller)");
                self.index.insert(lease.ip, slot);
                self.slots.push(lease);
            }
        }
    }

    pub(super) fn remove(&mut self, ip: &Ipv4Addr) -> Option<Lease> {
        let slot = self.index.remove(ip)? as usize;
        let removed = self.slots.swap_remove(slot);
        if let Some(moved) = self.slots.get(slot) {
            self.index.insert(moved.ip, slot as u32);
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
