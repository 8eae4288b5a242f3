//! The lease records, by address: a dense slab of records and an ordered index from address to slot.
//!
//! A `BTreeMap<Ipv4Addr, Lease>` fills its nodes only about half when addresses arrive in order (as
//! the allocator hands them out), which doubled the cost of every 104-byte record. Here the records
//! sit packed in one `Vec` and the ordered index holds 8-byte (address, slot) pairs. Removal moves the
//! last record into the freed slot, so the slab never has holes.
//!
//! While a snapshot is written a slice at a time (`freeze`, then `frozen_slice` until done), every
//! change to an address the snapshot has not reached yet first keeps the record as it was (copy on
//! write): the slices together are the records as they stood at `freeze`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::Lease;

#[derive(Debug, Clone, Default)]
pub(super) struct Records {
    slots: Vec<Lease>,
    index: BTreeMap<Ipv4Addr, u32>,
    frozen: Option<Frozen>,
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
        Ok(Records { slots: leases, index, frozen: None })
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(super) fn get(&self, ip: &Ipv4Addr) -> Option<&Lease> {
        self.index.get(ip).map(|slot| &self.slots[*slot as usize])
    }

    pub(super) fn get_mut(&mut self, ip: &Ipv4Addr) -> Option<&mut Lease> {
        self.preserve(ip);
        self.index.get(ip).map(|slot| &mut self.slots[*slot as usize])
    }

    /// Insert or replace the record of `lease.ip`.
    pub(super) fn insert(&mut self, lease: Lease) {
        self.preserve(&lease.ip);
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
        self.preserve(ip);
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

    /// Hand `emit` the next records of the snapshot, in address order, as they were at `freeze`:
    /// at most `max_addresses` addresses' worth. True once every record was handed out.
    pub(super) fn frozen_slice(&mut self, max_addresses: usize, mut emit: impl FnMut(&Lease)) -> bool {
        let Records { slots, index, frozen } = self;
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
