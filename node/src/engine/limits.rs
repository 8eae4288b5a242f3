//! Token buckets against pool starvation and DECLINE floods: who may make the pool hand out an
//! address, and who may quarantine one. Pure: every call takes `now_ms`, nothing reads a clock, and
//! the buckets are only ever looked up (never iterated), so the same calls give the same answers.
//!
//! Memory is bounded: each kind of bucket remembers at most `max_tracked_keys` keys and forgets the
//! least recently used first. A forgotten key starts again with a full bucket, which is what it would
//! have refilled to anyway unless it was in use — and the least recently used one is the least
//! likely to be.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::Ipv4Addr;

use leasehold_config::{RateLimits, TokenBucket};

use super::relay::{relay_suboption, suboption};
use super::Silence;
use crate::wire::Request;

/// One token in the fixed-point unit the buckets count in (a millionth of a message), so a bucket's
/// arithmetic is exact integers whatever its rate.
const TOKEN: u64 = 1_000_000;
/// The recency queue is compacted when it holds twice as many entries as live keys, or as this many
/// (whichever is more, and never more than the key limit): amortised O(1) per use.
const MIN_COMPACT_KEYS: usize = 1_024;

/// A bucket's rate and size in `TOKEN` units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Spec {
    /// Refill per millisecond (at least 1: a rate of `MIN_MESSAGES_PER_SEC` is one unit a ms).
    refill_per_ms: u64,
    capacity: u64,
}

impl Spec {
    fn of(bucket: &TokenBucket) -> Spec {
        // `per_sec` is checked finite and within 0.001..=1e6 by the config crate, so the product is
        // within 1..=1e9 and the cast is exact enough (a rate is a policy, not a measurement).
        let refill_per_ms = (bucket.per_sec * TOKEN as f64 / 1000.0).round().max(1.0) as u64;
        Spec { refill_per_ms, capacity: u64::from(bucket.burst.max(1)) * TOKEN }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u64,
    updated_ms: u64,
    /// Which entry of the recency queue is this key's latest.
    generation: u64,
}

/// Token buckets of one kind, by key, least recently used forgotten first.
#[derive(Debug)]
pub struct Buckets<K> {
    spec: Spec,
    max_keys: usize,
    buckets: HashMap<K, Bucket>,
    /// Keys in the order they were last used; an entry whose generation is not its key's latest is
    /// stale and skipped (compacted once stale entries outnumber live ones).
    recency: VecDeque<(K, u64)>,
    next_generation: u64,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    pub fn new(bucket: &TokenBucket, max_keys: usize) -> Self {
        Buckets {
            spec: Spec::of(bucket),
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
            recency: VecDeque::new(),
            next_generation: 0,
        }
    }

    /// Keys remembered now.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    /// Does `key`'s bucket hold a whole token at `now_ms`? Refills it (and remembers the key) but
    /// spends nothing.
    pub fn ready(&mut self, key: &K, now_ms: u64) -> bool {
        self.refill(key, now_ms) >= TOKEN
    }

    /// Spend one token of `key`'s bucket (after `ready` said it holds one).
    pub fn spend(&mut self, key: &K, now_ms: u64) {
        self.refill(key, now_ms);
        if let Some(bucket) = self.buckets.get_mut(key) {
            debug_assert!(bucket.tokens >= TOKEN, "spend without a token");
            bucket.tokens = bucket.tokens.saturating_sub(TOKEN);
        }
    }

    /// `ready`, then `spend` if it was: one message through one bucket.
    pub fn take(&mut self, key: &K, now_ms: u64) -> bool {
        let ready = self.ready(key, now_ms);
        if ready {
            self.spend(key, now_ms);
        }
        ready
    }

    /// Refill `key`'s bucket to `now_ms` and mark it most recently used (a new key starts full);
    /// the tokens it holds.
    fn refill(&mut self, key: &K, now_ms: u64) -> u64 {
        let generation = self.next_generation;
        self.next_generation += 1;
        if !self.buckets.contains_key(key) {
            while self.buckets.len() >= self.max_keys {
                self.forget_least_recent();
            }
        }
        let spec = self.spec;
        let bucket =
            self.buckets.entry(key.clone()).or_insert(Bucket { tokens: spec.capacity, updated_ms: now_ms, generation });
        // A clock that steps back refills nothing (and never takes tokens away).
        let elapsed_ms = now_ms.saturating_sub(bucket.updated_ms);
        bucket.tokens = bucket.tokens.saturating_add(elapsed_ms.saturating_mul(spec.refill_per_ms)).min(spec.capacity);
        bucket.updated_ms = bucket.updated_ms.max(now_ms);
        bucket.generation = generation;
        let tokens = bucket.tokens;
        self.recency.push_back((key.clone(), generation));
        if self.recency.len() > 2 * self.buckets.len().max(self.max_keys.min(MIN_COMPACT_KEYS)) {
            self.compact();
        }
        tokens
    }

    fn forget_least_recent(&mut self) {
        while let Some((key, generation)) = self.recency.pop_front() {
            if self.buckets.get(&key).is_some_and(|b| b.generation == generation) {
                self.buckets.remove(&key);
                return;
            }
        }
        // The queue always holds every live key's latest entry; an empty queue means no keys.
        debug_assert!(self.buckets.is_empty(), "a bucket missing from the recency queue");
        self.buckets.clear();
    }

    /// Drop the stale entries of the recency queue, keeping the order of the live ones.
    fn compact(&mut self) {
        let buckets = &self.buckets;
        self.recency.retain(|(key, generation)| buckets.get(key).is_some_and(|b| b.generation == *generation));
    }
}

/// A relay circuit as the relay names it: the relay's address with option 82's circuit id and
/// remote id (RFC 3046 §2.1, §2.2); either may be absent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Circuit {
    pub relay: Ipv4Addr,
    pub circuit_id: Option<Box<[u8]>>,
    pub remote_id: Option<Box<[u8]>>,
}

impl Circuit {
    /// The circuit of a relayed request that carries a circuit or remote id; `None` otherwise.
    pub fn of(request: &Request) -> Option<Circuit> {
        if request.giaddr.is_unspecified() {
            return None;
        }
        let info = request.relay_agent_info.as_deref()?;
        let circuit_id = relay_suboption(info, suboption::CIRCUIT_ID).map(Box::from);
        let remote_id = relay_suboption(info, suboption::REMOTE_ID).map(Box::from);
        (circuit_id.is_some() || remote_id.is_some()).then_some(Circuit {
            relay: request.giaddr,
            circuit_id,
            remote_id,
        })
    }
}

/// The node's buckets: one set per kind.
#[derive(Debug)]
pub struct Admission {
    mac: Buckets<[u8; 6]>,
    relay: Buckets<Ipv4Addr>,
    circuit: Buckets<Circuit>,
    decline: Buckets<[u8; 6]>,
}

impl Admission {
    pub fn new(limits: &RateLimits) -> Self {
        let keys = limits.max_tracked_keys;
        Admission {
            mac: Buckets::new(&limits.mac, keys),
            relay: Buckets::new(&limits.relay, keys),
            circuit: Buckets::new(&limits.circuit, keys),
            decline: Buckets::new(&limits.decline, keys),
        }
    }

    /// May `request` make the pool hand out an address at `now_ms`? It spends a token from its MAC's
    /// bucket and — for a client `known` to the table, never — from its relay's and relay circuit's,
    /// all or none: a message refused by one bucket takes nothing from the others, so a flood through
    /// one circuit does not drain its relay's bucket for the other circuits. The most specific empty
    /// bucket is the reason.
    pub fn admit(&mut self, request: &Request, known: bool, now_ms: u64) -> Result<(), Silence> {
        let mac = request.chaddr;
        if !self.mac.ready(&mac, now_ms) {
            return Err(Silence::RateLimitedMac);
        }
        let circuit = (!known).then(|| Circuit::of(request)).flatten();
        if let Some(circuit) = &circuit {
            if !self.circuit.ready(circuit, now_ms) {
                return Err(Silence::RateLimitedCircuit);
            }
        }
        let relay = Some(request.giaddr).filter(|ip| !known && !ip.is_unspecified());
        if let Some(relay) = relay {
            if !self.relay.take(&relay, now_ms) {
                return Err(Silence::RateLimitedRelay);
            }
        }
        if let Some(circuit) = &circuit {
            self.circuit.spend(circuit, now_ms);
        }
        self.mac.spend(&mac, now_ms);
        Ok(())
    }

    /// May the client `mac` have a DECLINE acted on at `now_ms`? Spends a token if so.
    pub fn admit_decline(&mut self, mac: [u8; 6], now_ms: u64) -> Result<(), Silence> {
        if self.decline.take(&mac, now_ms) {
            Ok(())
        } else {
            Err(Silence::DeclineRateLimited)
        }
    }

    /// Keys remembered, per kind: MAC, relay, circuit, DECLINE.
    pub fn tracked(&self) -> [usize; 4] {
        [self.mac.tracked(), self.relay.tracked(), self.circuit.tracked(), self.decline.tracked()]
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::ClientMessageType;

    const T0_MS: u64 = 1_700_000_000_000;

    fn bucket(per_sec: f64, burst: u32) -> TokenBucket {
        TokenBucket { per_sec, burst }
    }

    #[test]
    fn a_full_bucket_lets_a_burst_through_then_the_rate() {
        let mut buckets = Buckets::new(&bucket(2.0, 5), 16);
        let passed = (0..10).filter(|_| buckets.take(&1u8, T0_MS)).count();
        assert_eq!(passed, 5, "the burst, at one instant");
        assert!(!buckets.take(&1, T0_MS + 499), "2 a second: the next token after 500 ms");
        assert!(buckets.take(&1, T0_MS + 500));
        assert!(!buckets.take(&1, T0_MS + 500));
        // Ten seconds idle refill to the burst, not beyond.
        let passed = (0..10).filter(|_| buckets.take(&1, T0_MS + 10_500)).count();
        assert_eq!(passed, 5);
        assert!(buckets.take(&2, T0_MS), "another key has its own bucket");
    }

    #[test]
    fn a_rate_below_one_a_second_refills_slowly_and_a_clock_step_back_refills_nothing() {
        let mut buckets = Buckets::new(&bucket(0.1, 1), 16);
        assert!(buckets.take(&1u8, T0_MS));
        assert!(!buckets.take(&1, T0_MS + 9_999));
        assert!(!buckets.take(&1, T0_MS - 60_000), "the clock stepped back a minute");
        assert!(buckets.take(&1, T0_MS + 10_000), "one token every 10 s");
    }

    #[test]
    fn memory_is_bounded_and_the_least_recently_used_key_is_forgotten() {
        let mut buckets = Buckets::new(&bucket(1.0, 1), 3);
        for key in 1..=3u32 {
            assert!(buckets.take(&key, T0_MS));
        }
        assert!(!buckets.take(&1, T0_MS), "1 is empty and now the most recently used");
        assert!(buckets.take(&4, T0_MS), "a fourth key evicts 2, the least recently used");
        assert_eq!(buckets.tracked(), 3);
        assert!(!buckets.take(&1, T0_MS), "1 was kept: still empty");
        assert!(buckets.take(&2, T0_MS), "2 was forgotten: it starts full");
        for key in 0..100_000u32 {
            buckets.take(&key, T0_MS);
        }
        assert_eq!(buckets.tracked(), 3);
        assert!(buckets.recency.len() <= 2 * 1_024 + 1, "the recency queue is compacted: {}", buckets.recency.len());
    }

    proptest! {
        /// Over any sequence of uses, no key passes more messages than its burst plus the rate times
        /// the time elapsed (the token bucket's promise), and the memory bound always holds.
        #[test]
        fn no_key_ever_passes_more_than_burst_plus_rate_times_time(
            steps in prop::collection::vec((0u8..6, 0u64..400), 1..400),
            per_ms_tenths in 1u32..40,
            burst in 1u32..8,
            max_keys in 1usize..8,
        ) {
            let per_sec = f64::from(per_ms_tenths) * 100.0; // 0.1..4 a ms
            let mut buckets = Buckets::new(&bucket(per_sec, burst), max_keys);
            let mut now = T0_MS;
            let mut passed = [0u64; 6];
            for (key, advance_ms) in steps {
                now += advance_ms;
                if buckets.take(&key, now) {
                    passed[usize::from(key)] += 1;
                }
                prop_assert!(buckets.tracked() <= max_keys);
            }
            // A forgotten key starts full again, so the bound is per continuous memory; with one key
            // tracked at a time at most it holds for every key over the whole run.
            if max_keys >= 6 {
                let elapsed_ms = now - T0_MS;
                for (key, count) in passed.iter().enumerate() {
                    let allowed = u64::from(burst) + elapsed_ms * u64::from(per_ms_tenths) / 10;
                    prop_assert!(*count <= allowed, "key {} passed {} > {}", key, count, allowed);
                }
            }
        }
    }

    fn relayed(mac: u8, relay: [u8; 4], info: Option<Vec<u8>>) -> Request {
        Request {
            giaddr: Ipv4Addr::from(relay),
            relay_agent_info: info,
            ..Request::new(ClientMessageType::Discover, 1, [2, 0, 0, 0, 0, mac])
        }
    }

    fn limits(mac: TokenBucket, relay: TokenBucket, circuit: TokenBucket) -> RateLimits {
        RateLimits { mac, relay, circuit, decline: bucket(0.1, 1), max_tracked_keys: 1_000 }
    }

    #[test]
    fn rfc3046_a_flooding_circuit_is_limited_without_draining_its_relay() {
        let mut admission = Admission::new(&limits(bucket(1.0, 100), bucket(1.0, 20), bucket(1.0, 5)));
        let circuit = |id: u8| Some(vec![1, 1, id, 2, 3, b'r', b'i', b'd']);
        // Circuit 1 floods with a new MAC per message: 5 pass, the rest stop at the circuit.
        let outcomes: Vec<_> =
            (0..50).map(|m| admission.admit(&relayed(m, [10, 9, 0, 1], circuit(1)), false, T0_MS)).collect();
        assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 5);
        assert!(outcomes[5..].iter().all(|o| *o == Err(Silence::RateLimitedCircuit)));
        // The relay spent 5 of its 20: circuits 2..=4 still get their 5 each.
        for id in 2..=4 {
            let passed =
                (0..5).filter(|m| admission.admit(&relayed(100 + m, [10, 9, 0, 1], circuit(id)), false, T0_MS).is_ok());
            assert_eq!(passed.count(), 5, "circuit {id}");
        }
        assert_eq!(
            admission.admit(&relayed(200, [10, 9, 0, 1], circuit(5)), false, T0_MS),
            Err(Silence::RateLimitedRelay),
            "the relay's 20 are spent"
        );
        assert_eq!(admission.admit(&relayed(201, [10, 9, 0, 2], circuit(5)), false, T0_MS), Ok(()), "another relay");
        // A client the table knows (a returning client) passes the relay and circuit buckets.
        assert_eq!(admission.admit(&relayed(202, [10, 9, 0, 1], circuit(1)), true, T0_MS), Ok(()));
    }

    #[test]
    fn one_mac_is_limited_by_its_own_bucket_and_the_refusal_spends_nothing_else() {
        let mut admission = Admission::new(&limits(bucket(1.0, 2), bucket(1.0, 3), bucket(1.0, 3)));
        let info = Some(vec![1, 1, 7]);
        assert_eq!(admission.admit(&relayed(1, [10, 9, 0, 1], info.clone()), false, T0_MS), Ok(()));
        assert_eq!(admission.admit(&relayed(1, [10, 9, 0, 1], info.clone()), false, T0_MS), Ok(()));
        for _ in 0..10 {
            assert_eq!(
                admission.admit(&relayed(1, [10, 9, 0, 1], info.clone()), false, T0_MS),
                Err(Silence::RateLimitedMac)
            );
        }
        assert_eq!(admission.admit(&relayed(2, [10, 9, 0, 1], info), false, T0_MS), Ok(()), "one token left");
        assert_eq!(admission.tracked(), [2, 1, 1, 0]);
    }

    #[test]
    fn circuit_and_remote_id_name_a_circuit_only_behind_a_relay() {
        let direct = Request {
            relay_agent_info: Some(vec![1, 1, 7]),
            ..Request::new(ClientMessageType::Discover, 1, [2, 0, 0, 0, 0, 1])
        };
        assert_eq!(Circuit::of(&direct), None, "option 82 without giaddr is a client's own, not a relay's");
        assert_eq!(Circuit::of(&relayed(1, [10, 9, 0, 1], None)), None);
        assert_eq!(Circuit::of(&relayed(1, [10, 9, 0, 1], Some(vec![5, 4, 10, 0, 0, 1]))), None, "link selection only");
        let remote = Circuit::of(&relayed(1, [10, 9, 0, 1], Some(vec![2, 2, b'a', b'b']))).expect("a remote id");
        assert_eq!((remote.circuit_id, remote.remote_id.as_deref()), (None, Some(&b"ab"[..])));
    }
}
