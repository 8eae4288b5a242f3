//! Free-address bookkeeping per pool, so that choosing an address for a new client costs the same
//! whatever the pool's history: a bitmap of the addresses that have no lease record, and the records
//! ordered by when they become reusable to another client (RFC 2131 §4.3.1: prefer addresses never
//! used, then the ones given up longest ago). It is derived from the lease table: built when the
//! table is loaded or replaced, and updated for every address an applied entry touched, so every
//! replica that applied the same log holds the same index.
//!
//! Picking never decides on the index alone: the engine still checks offers, reservations and the
//! table for the candidate it gets (`Engine::usable`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use leasehold_cluster::{Lease, LeaseState, LeaseTable};
use leasehold_config::Pool;

/// `when` of an address without a record.
const NO_RECORD: u64 = u64::MAX;
/// Set in `when` for a bound record (times in milliseconds stay far below 2^63).
const BOUND: u64 = 1 << 63;

/// The second `when_ms` falls in, rounded up: `when_ms <= now_ms` implies
/// `ceil_secs(when_ms) <= ceil_secs(now_ms)`, so the set can be cut at `now`'s second and filtered.
fn ceil_secs(when_ms: u64) -> u64 {
    when_ms.div_ceil(1000).min(u64::from(u32::MAX))
}

/// The key of the record at `offset` reusable from `when_ms`: its second above, the offset below.
fn reusable_key(when_ms: u64, offset: u32) -> u64 {
    ceil_secs(when_ms) << 32 | u64::from(offset)
}

/// One pool's free addresses.
#[derive(Debug, Clone)]
pub struct PoolIndex {
    start: u32,
    len: u32,
    /// Bit `offset` set: the address has no lease record.
    free: Vec<u64>,
    /// Per offset: when the address's record becomes reusable to another client (with `BOUND` for a
    /// bound record), or `NO_RECORD`.
    when: Vec<u64>,
    /// The records by `reusable_key`: the oldest give-ups first, to the second (the exact time is
    /// `when`). One 8-byte key a record: a set of `(u64, u32)` cost twice that.
    reusable: BTreeSet<u64>,
    /// Where the next search for a record-free address starts (round robin through the range).
    cursor: u32,
    /// The grace the reusable times were computed with (a bound lease ends `grace_ms` before).
    grace_ms: u64,
    /// Bound records, and how many end in each second: pool usage without a walk of the table.
    bound: u32,
    bound_by_second: BTreeMap<u64, u32>,
}

impl PoolIndex {
    /// The index of `pool` over `table`: O(pool size + records in the pool).
    pub fn new(pool: &Pool, table: &LeaseTable) -> PoolIndex {
        let start = u32::from(pool.range_start);
        let len = pool.size();
        let words = (len as usize).div_ceil(64);
        let mut free = vec![u64::MAX; words];
        if !len.is_multiple_of(64) {
            // Bits past the end of the range are never free.
            free[words - 1] = (1u64 << (len % 64)) - 1;
        }
        let grace_ms = table.grace_ms();
        let mut index = PoolIndex {
            start,
            len,
            free,
            when: vec![NO_RECORD; len as usize],
            reusable: BTreeSet::new(),
            cursor: 0,
            grace_ms,
            bound: 0,
            bound_by_second: BTreeMap::new(),
        };
        for lease in table.range(pool.range_start, pool.range_end) {
            index.set(u32::from(lease.ip) - start, Self::stored_when(lease, grace_ms));
        }
        index
    }

    /// What `when` holds for `lease`.
    fn stored_when(lease: &Lease, grace_ms: u64) -> u64 {
        let when = lease.reusable_at_ms(grace_ms);
        debug_assert!(when < BOUND, "a reusable time past 2^63 ms");
        match lease.state {
            LeaseState::Bound { .. } => when | BOUND,
            _ => when,
        }
    }

    /// Count a bound record reusable from `when` in or out of the second its lease ends.
    fn count_bound(&mut self, when: u64, counted: bool) {
        // The second by whose start it has ended: `ceil(expires_at_ms / 1000)`.
        let second = when.saturating_sub(self.grace_ms).div_ceil(1000);
        if counted {
            self.bound += 1;
            *self.bound_by_second.entry(second).or_default() += 1;
        } else if let Some(count) = self.bound_by_second.get_mut(&second) {
            self.bound -= 1;
            *count -= 1;
            if *count == 0 {
                self.bound_by_second.remove(&second);
            }
        }
    }

    /// Bound leases not yet expired at the start of `now_ms`'s second (to the second: a lease ending
    /// within it still counts): O(seconds in which expired, still-bound records end), not O(records).
    pub fn bound_at(&self, now_ms: u64) -> u32 {
        let expired: u32 = self.bound_by_second.range(..=now_ms / 1000).map(|(_, count)| count).sum();
        self.bound - expired
    }

    fn offset(&self, ip: Ipv4Addr) -> Option<u32> {
        u32::from(ip).checked_sub(self.start).filter(|offset| *offset < self.len)
    }

    /// Record that the address at `offset` is reusable from `stored` (a `stored_when`; `NO_RECORD`:
    /// it has no record).
    fn set(&mut self, offset: u32, stored: u64) {
        let old = std::mem::replace(&mut self.when[offset as usize], stored);
        if old != NO_RECORD {
            self.reusable.remove(&reusable_key(old & !BOUND, offset));
            if old & BOUND != 0 {
                self.count_bound(old & !BOUND, false);
            }
        }
        let (word, bit) = ((offset / 64) as usize, offset % 64);
        if stored == NO_RECORD {
            self.free[word] |= 1 << bit;
        } else {
            self.free[word] &= !(1 << bit);
            self.reusable.insert(reusable_key(stored & !BOUND, offset));
            if stored & BOUND != 0 {
                self.count_bound(stored & !BOUND, true);
            }
        }
    }

    /// Look again at `ip` (of this pool or not) after the table changed.
    pub fn refresh(&mut self, ip: Ipv4Addr, table: &LeaseTable) {
        if let Some(offset) = self.offset(ip) {
            let stored = table.by_ip(ip).map_or(NO_RECORD, |lease| Self::stored_when(lease, self.grace_ms));
            self.set(offset, stored);
        }
    }

    /// Record-free addresses, from the cursor round the range: a word of the bitmap at a time.
    pub fn record_free(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let words = self.free.len();
        let first_word = (self.cursor / 64) as usize;
        // The cursor's word twice: from the cursor's bit first, and its lower bits at the very end.
        (0..=words)
            .flat_map(move |step| {
                let word = (first_word + step) % words;
                let mut bits = self.free[word];
                let cursor_bit = self.cursor % 64;
                if step == 0 {
                    bits &= u64::MAX << cursor_bit;
                } else if step == words {
                    bits &= !(u64::MAX << cursor_bit);
                }
                std::iter::from_fn(move || {
                    (bits != 0).then(|| {
                        let bit = bits.trailing_zeros();
                        bits &= bits - 1;
                        word as u32 * 64 + bit
                    })
                })
            })
            .map(move |offset| Ipv4Addr::from(self.start + offset))
    }

    /// Addresses whose records are reusable by `now_ms`, the longest reusable first (to the second).
    pub fn reusable_by(&self, now_ms: u64) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let last_second = ceil_secs(now_ms);
        self.reusable
            .iter()
            .take_while(move |key| *key >> 32 <= last_second)
            .map(|key| *key as u32)
            .filter(move |offset| self.when[*offset as usize] & !BOUND <= now_ms)
            .map(|offset| Ipv4Addr::from(self.start + offset))
    }

    /// The next search for a record-free address starts after `ip`.
    pub fn taken(&mut self, ip: Ipv4Addr) {
        if let Some(offset) = self.offset(ip) {
            self.cursor = (offset + 1) % self.len;
        }
    }

    /// Addresses with no record.
    pub fn record_free_count(&self) -> u32 {
        self.free.iter().map(|w| w.count_ones()).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use leasehold_cluster::{ClientKey, Command, Proposal, ProposalTag};
    use leasehold_config::{OptionSet, Subnet};
    use proptest::prelude::*;

    use super::*;

    const GRACE_MS: u64 = 1_000;

    fn pool(first: u8, last: u8) -> Pool {
        Pool {
            name: "p".into(),
            subnet: Subnet { network: Ipv4Addr::new(10, 0, 0, 0), prefix_len: 24 },
            range_start: Ipv4Addr::new(10, 0, 0, first),
            range_end: Ipv4Addr::new(10, 0, 0, last),
            routers: Vec::new(),
            dns_servers: Vec::new(),
            domain_name: None,
            lease_time_secs: 60,
            renewal_time_secs: 30,
            rebinding_time_secs: 52,
            pxe: None,
            dynamic_bootp: false,
            bootp_lease_time_secs: 60,
            options: OptionSet::default(),
        }
    }

    /// Commands: (kind, client, host byte of the address, time).
    fn command(kind: u8, c: u8, a: u8, at: u64) -> Command {
        let client = ClientKey::Mac([2, 0, 0, 0, 0, c]);
        let ip = Ipv4Addr::new(10, 0, 0, a);
        match kind {
            0 => Command::Bind {
                client,
                mac: [2, 0, 0, 0, 0, c],
                client_id: None,
                hostname: None,
                ip,
                expires_at_ms: at + 5_000,
                proposed_at_ms: at,
                decided_at_index: u64::MAX,
            },
            1 => Command::Release { client, ip, proposed_at_ms: at, decided_at_index: u64::MAX },
            _ => Command::Decline {
                client,
                mac: [2, 0, 0, 0, 0, c],
                ip,
                until_ms: at + 3_000,
                proposed_at_ms: at,
                decided_at_index: u64::MAX,
            },
        }
    }

    proptest! {
        /// After any history, updated address by address, the index equals one built afresh, and it
        /// finds a candidate whenever the table has an address another client may take: every
        /// record-free address it lists has no record, every reusable one is reusable, and nothing
        /// reusable or free is missing.
        #[test]
        fn the_index_follows_the_table_and_misses_nothing(
            history in prop::collection::vec((0u8..3, 1u8..6, 10u8..=40, 0u64..20_000), 1..80),
            now in 0u64..30_000,
        ) {
            let pool = pool(10, 40);
            let mut table = LeaseTable::new(GRACE_MS, 1_000);
            let mut index = PoolIndex::new(&pool, &table);
            for (i, (kind, c, a, at)) in history.into_iter().enumerate() {
                let proposal = Proposal { tag: ProposalTag { node_id: 1, incarnation: 1, seq: i as u64 }, command: command(kind, c, a, at) };
                let mut touched = Vec::new();
                table.apply_touching(i as u64 + 1, &[proposal], &mut touched).expect("a new index");
                for ip in touched {
                    index.refresh(ip, &table);
                }
            }
            let fresh = PoolIndex::new(&pool, &table);
            prop_assert_eq!(&index.free, &fresh.free);
            prop_assert_eq!(&index.reusable, &fresh.reusable);
            prop_assert_eq!(&index.bound_by_second, &fresh.bound_by_second);
            // Pool usage, to the second: the leases bound at the start of `now`'s second.
            let second_ms = now / 1000 * 1000;
            let active = table.range(pool.range_start, pool.range_end).filter(|l| l.is_active(second_ms)).count();
            prop_assert_eq!(index.bound_at(now) as usize, active, "bound leases at {}", now);
            let free: Vec<Ipv4Addr> = index.record_free().collect();
            let reusable: Vec<Ipv4Addr> = index.reusable_by(now).collect();
            let mut expected_free = Vec::new();
            let mut expected_reusable: BTreeMap<Ipv4Addr, ()> = BTreeMap::new();
            for a in 10u8..=40 {
                let ip = Ipv4Addr::new(10, 0, 0, a);
                match table.by_ip(ip) {
                    None => expected_free.push(ip),
                    Some(lease) if lease.reusable_at_ms(GRACE_MS) <= now => { expected_reusable.insert(ip, ()); }
                    Some(_) => {}
                }
            }
            let mut sorted_free = free.clone();
            sorted_free.sort();
            prop_assert_eq!(sorted_free, expected_free, "record-free addresses, each once");
            let listed: BTreeMap<Ipv4Addr, ()> = reusable.iter().map(|ip| (*ip, ())).collect();
            prop_assert_eq!(listed.len(), reusable.len(), "no address twice");
            prop_assert_eq!(listed, expected_reusable, "reusable addresses");
        }
    }

    #[test]
    fn record_free_addresses_come_round_from_the_cursor() {
        let table = LeaseTable::new(GRACE_MS, 1_000);
        let mut index = PoolIndex::new(&pool(1, 200), &table);
        assert_eq!(index.record_free_count(), 200);
        index.taken(Ipv4Addr::new(10, 0, 0, 130));
        let order: Vec<u8> = index.record_free().map(|ip| ip.octets()[3]).collect();
        let expected: Vec<u8> = (131..=200).chain(1..=130).collect();
        assert_eq!(order, expected);
    }
}
