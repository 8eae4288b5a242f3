//! The DHCP engine: a sans-IO core (RFC 2131 server behaviour plus PXE policy).
//!
//! It owns the applied lease table, the in-memory offers and the proposals waiting for commit. A
//! validated `Request` and `now_us` go in; an `Action` comes out: a reply to send now (OFFER, NAK,
//! INFORM's ACK), a proposal to replicate, or silence. A binding is ACKed only from a committed,
//! applied outcome (`apply_committed`), never from `handle` (DESIGN rule 1). The engine never reads a
//! clock, a random source or a socket.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Arc;

use leasehold_cluster::lease::SnapshotEncoder;
use leasehold_cluster::{
    ClientKey, Command, CommittedEntry, Lease, LeaseTable, Outcome, Parameters, Proposal, ProposalTag,
};
use leasehold_config::{ClientIdentity, Config, Pool, Reservation};

use crate::wire::{ClientMessageType, Destination, DropReason, Reply, ReplyType, Request};

pub mod allocator;
pub mod boot;
pub mod classes;
pub mod collection;
pub mod import;
pub mod limits;
pub mod machines;
pub mod options;
pub mod relay;
pub mod reload;
pub mod reservations;

pub use relay::{Link, LinkSource};
pub use reservations::{AdminOutcome, ReservationError};
/// After a full scan of a pool finds nothing free, DISCOVERs for that pool are answered with silence
/// for this long without rescanning: an exhausted 64k pool would otherwise cost a full scan per
/// DISCOVER exactly when a flood of them arrives.
const EXHAUSTED_RESCAN_MS: u64 = 100;
/// Smallest option 57 a client may announce (RFC 2132 §9.10), and what every client takes.
const MIN_MAX_MESSAGE_SIZE: u16 = 576;
/// IPv4 and UDP headers, inside the sizes option 57 gives.
const IP_UDP_HEADER_BYTES: usize = 28;
/// A BOOTREPLY with RFC 951's 64-byte vendor area.
const BOOTP_REPLY_BYTES: usize = 300;

/// A reply and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub reply: Reply,
    pub destination: Destination,
    /// The interface to send it from (the request's, an index into `Config::interfaces`).
    pub interface: usize,
    /// Largest datagram the client accepts.
    pub max_bytes: usize,
}

/// This node's part in the Raft group, as far as answering clients goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Answers broadcast and relayed traffic; proposes bindings.
    Leader,
    /// A leader is known: answers only unicast traffic addressed to its own server identifier, and
    /// its proposals are forwarded to the leader.
    Follower,
    /// No leader known (minority side, or an election under way): binds nothing new.
    NoQuorum,
}

impl Role {
    /// From Raft's view at `now_us` (the lease's monotonic clock): a leader answers broadcasts only
    /// while its leader lease lasts, so a deposed leader that has not noticed yet (cut off from the
    /// others, or paused) falls silent before the new leader is elected (DESIGN rule 2); until then
    /// it confirms renewals like a minority node.
    pub fn from_status(status: &leasehold_cluster::RaftStatus, now_us: u64) -> Role {
        let leased = status.lease_until_us.is_some_and(|until| now_us < until);
        match (status.is_leader, leased, status.leader_id) {
            (true, true, _) => Role::Leader,
            (true, false, _) => Role::NoQuorum,
            (false, _, Some(_)) => Role::Follower,
            (false, _, None) => Role::NoQuorum,
        }
    }
}

/// How a request reached this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// The interface it came in on: an index into `Config::interfaces`.
    pub interface: usize,
    /// The unicast address it was sent to; `None` for the broadcast address (or an unknown one).
    pub to: Option<Ipv4Addr>,
}

impl Arrival {
    /// Broadcast on the first interface.
    pub const BROADCAST: Arrival = Arrival { interface: 0, to: None };

    /// Unicast to `ip`, on the first interface.
    pub fn unicast(ip: Ipv4Addr) -> Arrival {
        Arrival { interface: 0, to: Some(ip) }
    }

    /// The same, on interface `interface`.
    pub fn on(self, interface: usize) -> Arrival {
        Arrival { interface, ..self }
    }
}

/// RFC 2131 §4.3.2: a REQUEST in RENEWING or REBINDING state carries `ciaddr` and neither a server
/// identifier nor a requested address.
fn is_renewing(request: &Request) -> bool {
    !request.ciaddr.is_unspecified() && request.server_id.is_none() && request.requested_ip.is_none()
}

/// Why the engine said nothing (RFC 2131 tells the server to stay silent in these cases).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    /// SELECTING with another server's identifier: the client chose someone else (§4.3.2).
    OtherServerChosen,
    /// INIT-REBOOT from a client we have no record of (§4.3.2).
    UnknownClient,
    /// Not addressed to us, or a network we do not serve.
    NotOurs,
    /// This node does not answer this traffic (not the Raft leader, not addressed to it).
    NotLeader,
    /// Without a quorum, and the client has no committed, unexpired lease to confirm.
    NoQuorum,
    /// No free address in the client's pools.
    PoolExhausted,
    /// DECLINE or RELEASE carrying nothing to act on.
    NothingToDo,
    /// A BOOTP request from a client without a reservation, and no `dynamic_bootp` pool on its link.
    BootpNotServed,
    /// The node restarted and its table has not yet applied the log it started with.
    Replaying,
    /// A message that would take an address from the pool found its client MAC's token bucket empty
    /// (`limits.rate.mac_*`).
    RateLimitedMac,
    /// ... its relay agent's (`giaddr`) bucket empty (`limits.rate.relay_*`).
    RateLimitedRelay,
    /// ... its relay circuit's (giaddr, option 82 circuit and remote id) bucket empty
    /// (`limits.rate.circuit_*`).
    RateLimitedCircuit,
    /// A DECLINE for an address in none of the client's pools (RFC 2131 §4.3.3): ignored.
    DeclineNotInPool,
    /// A DECLINE for an address neither bound nor offered to that client: ignored, whoever holds it.
    DeclineNotHeld,
    /// A DECLINE of the address offered (not yet bound) to the client: the offer is withdrawn, and
    /// nothing is written (apply quarantines only bound addresses).
    DeclineOfferWithdrawn,
    /// A DECLINE of the client's own binding, beyond its DECLINE bucket (`limits.rate.decline_*`).
    DeclineRateLimited,
}

impl Silence {
    pub fn label(self) -> &'static str {
        match self {
            Silence::OtherServerChosen => "other_server_chosen",
            Silence::UnknownClient => "unknown_client",
            Silence::NotOurs => "not_ours",
            Silence::NotLeader => "not_leader",
            Silence::NoQuorum => "no_quorum",
            Silence::PoolExhausted => "pool_exhausted",
            Silence::NothingToDo => "nothing_to_do",
            Silence::BootpNotServed => "bootp_not_served",
            Silence::Replaying => "replaying",
            Silence::RateLimitedMac => "rate_limited_mac",
            Silence::RateLimitedRelay => "rate_limited_relay",
            Silence::RateLimitedCircuit => "rate_limited_circuit",
            Silence::DeclineNotInPool => "decline_not_in_pool",
            Silence::DeclineNotHeld => "decline_not_held",
            Silence::DeclineOfferWithdrawn => "decline_offer_withdrawn",
            Silence::DeclineRateLimited => "decline_rate_limited",
        }
    }
}

/// What the engine decided about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this now; no Raft write (OFFER, NAK, INFORM's ACK). Boxed: the common variant is large.
    Send(Box<Outgoing>),
    /// Replicate this; the answer (if any) comes from `apply_committed`.
    Propose(Proposal),
    Silent(Silence),
    Drop(DropReason),
}

/// What applying committed entries produced for the clients waiting on this node.
#[derive(Debug, Default)]
pub struct Answers {
    pub replies: Vec<(Outgoing, Decision)>,
    /// Propose-to-apply latency of each of this node's proposals, in microseconds.
    pub commit_latencies_us: Vec<u64>,
    /// Outcomes of this node's proposals that send nothing (RELEASE, DECLINE, refused binds).
    pub silent: Vec<Decision>,
    /// Outcomes of this node's admin commands (reservations), for the requests waiting on them.
    pub admin: Vec<(ProposalTag, AdminOutcome)>,
}

/// One line of the decision log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub message: ClientMessageType,
    pub xid: u32,
    pub mac: [u8; 6],
    /// The relay the request came through (0.0.0.0: none).
    pub giaddr: Ipv4Addr,
    pub ip: Ipv4Addr,
    pub outcome: &'static str,
}

/// Where a request stands: the link it came from (`relay`) and its client class (`classes`), an
/// index into `Config::classes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scope {
    link: Link,
    class: Option<usize>,
    /// A BOOTP client without a reservation: only `dynamic_bootp` pools serve it.
    bootp_dynamic_only: bool,
}

/// A request waiting for its proposal to be committed and applied.
#[derive(Debug, Clone)]
struct Pending {
    request: Request,
    scope: Scope,
    proposed_at_us: u64,
}

#[derive(Debug, Clone, Copy)]
struct OfferEntry {
    ip: Ipv4Addr,
    until_ms: u64,
    /// The pool whose cap it counts against: a new client's offer (`max_offers_per_pool_percent`).
    capped_pool: Option<usize>,
}

/// One pool's offers to new clients, by when they end (entries that are no longer current are
/// skipped when met), and how many are current.
#[derive(Debug, Default)]
struct CappedOffers {
    order: BTreeSet<(u64, Ipv4Addr)>,
    held: usize,
}

/// Offers held in memory (DESIGN rule 3): address → client, client → offer, bounded by `max_offers`
/// in all and, for new clients' offers, by a cap per pool. The queues are ordered by when offers end,
/// not by when they were made: the two differ when the wall clock steps back, and for a reclaimed
/// offer, which keeps its first end.
#[derive(Debug, Default)]
struct Offers {
    by_ip: HashMap<Ipv4Addr, ClientKey>,
    by_client: HashMap<ClientKey, OfferEntry>,
    queue: BTreeSet<(u64, Ipv4Addr)>,
    /// By pool index, grown on first use.
    capped: Vec<CappedOffers>,
    /// New clients whose offer was displaced at the cap, with that offer: their claim on the address
    /// until the offer would have ended (`reclaim`). At most `max_offers` of them, oldest dropped first.
    displaced: HashMap<ClientKey, OfferEntry>,
    displaced_order: VecDeque<(u64, ClientKey)>,
}

impl Offers {
    fn held_by_other(&self, ip: Ipv4Addr, client: &ClientKey, now_ms: u64) -> bool {
        match self.by_ip.get(&ip) {
            Some(holder) if holder != client => self.by_client.get(holder).is_some_and(|o| o.until_ms > now_ms),
            _ => false,
        }
    }

    fn of(&self, client: &ClientKey, now_ms: u64) -> Option<Ipv4Addr> {
        self.by_client.get(client).filter(|o| o.until_ms > now_ms).map(|o| o.ip)
    }

    /// The offer `(until_ms, ip)` of a queue is still the one held for `ip`.
    fn is_current(&self, until_ms: u64, ip: Ipv4Addr) -> bool {
        self.current(until_ms, ip).is_some()
    }

    /// The offer held for `ip`, if it is the one a queue entry `(until_ms, ip)` was made for.
    fn current(&self, until_ms: u64, ip: Ipv4Addr) -> Option<&OfferEntry> {
        self.by_ip.get(&ip).and_then(|c| self.by_client.get(c)).filter(|o| o.ip == ip && o.until_ms == until_ms)
    }

    /// Hold `ip` for `client` until `until_ms`. Beyond `max_offers` the offer that ends first goes;
    /// a new client's offer (`capped`: its pool and the pool's cap) beyond the cap displaces the
    /// pool's new-client offer that ends first, whose address is returned.
    fn hold(
        &mut self,
        client: ClientKey,
        ip: Ipv4Addr,
        until_ms: u64,
        max_offers: usize,
        capped: Option<(usize, usize)>,
    ) -> Option<Ipv4Addr> {
        self.forget(&client);
        // One client per address: an earlier holder's offer of `ip` has run out (callers check
        // `held_by_other`), but `expire` may not have seen it yet.
        self.remove_ip(ip);
        while self.by_client.len() >= max_offers.max(1) {
            match self.queue.pop_first() {
                Some((old_until_ms, old_ip)) if self.is_current(old_until_ms, old_ip) => self.remove_ip(old_ip),
                Some(_) => {}
                None => break,
            }
        }
        let mut displaced = None;
        if let Some((pool, cap)) = capped {
            while self.capped_of(pool).held >= cap.max(1) {
                let Some((old_until_ms, old_ip)) = self.capped_of(pool).order.pop_first() else {
                    debug_assert!(false, "pool {pool} counts capped offers its queue does not have");
                    break;
                };
                if self.current(old_until_ms, old_ip).is_some_and(|o| o.capped_pool == Some(pool)) {
                    let holder = self.by_ip.get(&old_ip).cloned();
                    let offer = holder.as_ref().and_then(|h| self.by_client.get(h)).copied();
                    self.remove_ip(old_ip);
                    if let (Some(holder), Some(offer)) = (holder, offer) {
                        self.remember_displaced(holder, offer, max_offers);
                    }
                    displaced = Some(old_ip);
                }
            }
            let pool_offers = self.capped_of(pool);
            pool_offers.order.insert((until_ms, ip));
            pool_offers.held += 1;
        }
        self.by_ip.insert(ip, client.clone());
        self.by_client.insert(client, OfferEntry { ip, until_ms, capped_pool: capped.map(|(pool, _)| pool) });
        self.queue.insert((until_ms, ip));
        displaced
    }

    fn capped_of(&mut self, pool: usize) -> &mut CappedOffers {
        if self.capped.len() <= pool {
            self.capped.resize_with(pool + 1, CappedOffers::default);
        }
        &mut self.capped[pool]
    }

    /// The offer ends: uncount it from its pool's cap.
    fn ended(&mut self, offer: OfferEntry) {
        if let Some(pool) = offer.capped_pool {
            let pool_offers = self.capped_of(pool);
            debug_assert!(pool_offers.held > 0, "pool {pool} uncounts an offer it did not count");
            pool_offers.held = pool_offers.held.saturating_sub(1);
        }
    }

    /// Keep the claim of `client`, whose `offer` was displaced.
    /// The address of `client`'s displaced offer, while its claim runs.
    fn displaced_claim(&self, client: &ClientKey, now_ms: u64) -> Option<Ipv4Addr> {
        self.displaced.get(client).filter(|claim| claim.until_ms > now_ms).map(|claim| claim.ip)
    }

    fn remember_displaced(&mut self, client: ClientKey, offer: OfferEntry, max_offers: usize) {
        while self.displaced.len() >= max_offers.max(1) {
            let Some((until_ms, oldest)) = self.displaced_order.pop_front() else { break };
            if self.displaced.get(&oldest).is_some_and(|claim| claim.until_ms == until_ms) {
                self.displaced.remove(&oldest);
            }
        }
        self.displaced_order.push_back((offer.until_ms, client.clone()));
        self.displaced.insert(client, offer);
    }

    /// A SELECTING REQUEST from `client` for `ip` (RFC 2131 §4.3.2) whose offer of `ip` was displaced
    /// at its pool's cap: if the claim still runs and `ip` is free or held only by another new
    /// client's offer (made after, and not yet asked for), `client` gets its offer back and the other
    /// loses its. The first client to REQUEST wins, as it would without a cap; under a flood that is
    /// the real client, whose address may have come round to a spoofed MAC meanwhile. Known clients'
    /// offers are never taken; whether `ip` is free in the table is still checked afterwards.
    fn reclaim(&mut self, client: &ClientKey, ip: Ipv4Addr, now_ms: u64, max_offers: usize, caps: &[usize]) -> bool {
        let Some(claim) = self.displaced.get(client).copied() else { return false };
        if claim.ip != ip || claim.until_ms <= now_ms {
            return false;
        }
        let holder = self.by_ip.get(&ip).and_then(|h| self.by_client.get(h)).filter(|o| o.until_ms > now_ms);
        if holder.is_some_and(|o| o.capped_pool.is_none()) {
            return false;
        }
        self.remove_ip(ip);
        self.displaced.remove(client);
        let capped = claim.capped_pool.map(|pool| (pool, caps.get(pool).copied().unwrap_or(1)));
        self.hold(client.clone(), ip, claim.until_ms, max_offers, capped);
        true
    }

    fn forget(&mut self, client: &ClientKey) {
        self.displaced.remove(client);
        if let Some(offer) = self.by_client.remove(client) {
            if self.by_ip.get(&offer.ip) == Some(client) {
                self.by_ip.remove(&offer.ip);
            }
            self.ended(offer);
        }
    }

    fn remove_ip(&mut self, ip: Ipv4Addr) {
        if let Some(client) = self.by_ip.remove(&ip) {
            if let Some(offer) = self.by_client.get(&client).copied().filter(|o| o.ip == ip) {
                self.by_client.remove(&client);
                self.ended(offer);
            }
        }
    }

    fn expire(&mut self, now_ms: u64) {
        while let Some(&(until_ms, ip)) = self.queue.first() {
            if until_ms > now_ms {
                break;
            }
            self.queue.pop_first();
            // A client re-offered the same address has a later entry further back: keep it.
            let still_current = self
                .by_ip
                .get(&ip)
                .and_then(|c| self.by_client.get(c))
                .is_some_and(|o| o.ip == ip && o.until_ms > now_ms);
            if !still_current {
                self.remove_ip(ip);
            }
        }
        // What the loop above let go, or what went before: the pools' queues are in expiry order too.
        for pool_offers in &mut self.capped {
            while pool_offers.order.first().is_some_and(|(until_ms, _)| *until_ms <= now_ms) {
                pool_offers.order.pop_first();
            }
        }
        // Claims end with the offers they were (displaced ones at most `offer_hold_ms` after they
        // were made, so the order is expiry order to within the hold time; a later one is dropped
        // when met, or at lookup).
        while let Some((until_ms, client)) = self.displaced_order.front().cloned() {
            if until_ms > now_ms {
                break;
            }
            self.displaced_order.pop_front();
            if self.displaced.get(&client).is_some_and(|claim| claim.until_ms == until_ms) {
                self.displaced.remove(&client);
            }
        }
    }

    fn clear(&mut self) {
        *self = Offers::default();
    }

    fn len(&self) -> usize {
        self.by_client.len()
    }

    /// New clients' offers of pool `pool` held now.
    fn capped_held(&self, pool: usize) -> usize {
        self.capped.get(pool).map_or(0, |p| p.held)
    }

    /// The two maps agree (so no address is offered to two clients, nor two addresses to one
    /// client), and each pool's count is its current new-client offers.
    fn check(&self) -> Result<(), String> {
        for (ip, client) in &self.by_ip {
            if self.by_client.get(client).map(|o| o.ip) != Some(*ip) {
                return Err(format!("{ip} is held for {client}, whose offer is {:?}", self.by_client.get(client)));
            }
        }
        if self.by_ip.len() != self.by_client.len() {
            return Err(format!("{} addresses held, {} clients with offers", self.by_ip.len(), self.by_client.len()));
        }
        for (pool, offers) in self.capped.iter().enumerate() {
            let counted = self.by_client.values().filter(|o| o.capped_pool == Some(pool)).count();
            if counted != offers.held {
                return Err(format!("pool {pool} counts {} new-client offers, holds {counted}", offers.held));
            }
        }
        Ok(())
    }
}

/// A full pool scan that found nothing, and what it saw.
#[derive(Debug, Clone, Copy)]
struct Exhausted {
    until_ms: u64,
    applied_index: u64,
    offers: usize,
}

/// Counts the engine keeps for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage<'a> {
    pub name: &'a str,
    pub size: u32,
    pub bound: u32,
    /// Offers to new clients held now, and the most the pool holds (`max_offers_per_pool_percent`).
    pub new_client_offers: u32,
    pub new_client_offer_cap: u32,
    /// New clients' offers displaced by newer ones at the cap, since the node started, and displaced
    /// ones their client reclaimed with its REQUEST.
    pub offers_displaced: u64,
    pub offers_reclaimed: u64,
}

/// Commands since the last snapshot that make one due whatever `snapshot_every_entries` says, when
/// the table has fewer records (see `Engine::snapshot_due`).
const MIN_COMMANDS_FOR_SNAPSHOT: u64 = 100_000;

/// A slice of the table's snapshot (`Engine::snapshot_step`).
#[derive(Debug)]
pub struct SnapshotPart {
    /// The snapshot's encoder, in the slice that began it (the header and the reservations as they
    /// were then are in it already).
    pub begun: Option<SnapshotEncoder>,
    /// The next records, as they were when the snapshot began, in address order.
    pub records: Vec<Lease>,
    /// These are the last: the encoder can finish.
    pub last: bool,
}

/// The DHCP engine of one node.
pub struct Engine {
    config: Arc<Config>,
    table: LeaseTable,
    offers: Offers,
    pending: HashMap<ProposalTag, Pending>,
    /// Pending proposals in proposal order, for timeouts.
    pending_order: VecDeque<(u64, ProposalTag)>,
    node_id: u64,
    incarnation: u64,
    next_seq: u64,
    role: Role,
    /// Per pool: its free addresses (see `allocator`), derived from the table.
    indexes: Vec<allocator::PoolIndex>,
    /// Per pool: the last failed full scan, trusted until `EXHAUSTED_RESCAN_MS` pass, the table
    /// changes or offers are let go.
    exhausted: Vec<Option<Exhausted>>,
    /// Addresses of the config file's reservations.
    config_reserved_ips: HashSet<Ipv4Addr>,
    /// The table's replicated reservations in config form, rebuilt when they change.
    api_reservations: HashMap<[u8; 6], Reservation>,
    /// This node's reservation commands waiting for commit, with when they were proposed.
    pending_admin: HashMap<ProposalTag, u64>,
    applied_since_snapshot: u64,
    /// Commands in those entries: a restart replays them all after the snapshot.
    commands_since_snapshot: u64,
    /// The commit index the log had when this node started: until the table has applied that far
    /// (a restart replays the log after its snapshot), it answers nobody — its table may say an
    /// address is free, or a client's, when a later entry says otherwise.
    replay_until: u64,
    /// Per pool: how many new clients' offers it holds at most (`max_offers_per_pool_percent`).
    offer_caps: Vec<usize>,
    /// Per pool: new clients' offers displaced at the cap, and displaced ones reclaimed by their
    /// client's REQUEST.
    offers_displaced: Vec<u64>,
    offers_reclaimed: Vec<u64>,
    /// Commands applied, by command and outcome label (`Command::label`, `Outcome::label`): a few
    /// dozen keys at most, whatever the load.
    applied_outcomes: BTreeMap<(&'static str, &'static str), u64>,
    /// Token buckets: who may take an address from the pools, who may DECLINE (`limits.rate`).
    admission: limits::Admission,
    /// `reload::lease_config_digest` of `config`.
    config_digest: String,
    /// Arch and class of the boot clients this node answered, for their iPXE scripts.
    boot_clients: machines::BootClients,
}

/// New clients' offers `pool` holds at most: `percent` of its size, rounded up, at least one.
fn offer_cap(pool: &Pool, percent: u32) -> usize {
    let cap = (u64::from(pool.size()) * u64::from(percent)).div_ceil(100).max(1);
    usize::try_from(cap).unwrap_or(usize::MAX)
}

impl Engine {
    /// `incarnation` must differ at every process start (e.g. the start time), so proposal tags
    /// replayed from the log never match a new waiter.
    pub fn new(config: Arc<Config>, table: LeaseTable, node_id: u64, incarnation: u64) -> Self {
        let indexes = config.pools.iter().map(|pool| allocator::PoolIndex::new(pool, &table)).collect();
        let exhausted = vec![None; config.pools.len()];
        let config_reserved_ips = config.reservations.iter().map(|r| r.ip).collect();
        let api_reservations = reservations::reservation_view(&table);
        let percent = config.limits.max_offers_per_pool_percent;
        let offer_caps = config.pools.iter().map(|pool| offer_cap(pool, percent)).collect();
        let offers_displaced = vec![0; config.pools.len()];
        let offers_reclaimed = vec![0; config.pools.len()];
        let admission = limits::Admission::new(&config.limits.rate);
        let config_digest = reload::lease_config_digest(&config);
        Engine {
            config_digest,
            boot_clients: machines::BootClients::default(),
            config,
            table,
            offers: Offers::default(),
            pending: HashMap::new(),
            pending_order: VecDeque::new(),
            node_id,
            incarnation,
            next_seq: 0,
            role: Role::NoQuorum,
            indexes,
            exhausted,
            config_reserved_ips,
            api_reservations,
            pending_admin: HashMap::new(),
            applied_since_snapshot: 0,
            commands_since_snapshot: 0,
            replay_until: 0,
            offer_caps,
            offers_displaced,
            offers_reclaimed,
            applied_outcomes: BTreeMap::new(),
            admission,
        }
    }

    pub fn table(&self) -> &LeaseTable {
        &self.table
    }

    /// How many commands this node has applied, by command and outcome label, in label order.
    pub fn applied_outcomes(&self) -> impl Iterator<Item = (&'static str, &'static str, u64)> + '_ {
        self.applied_outcomes.iter().map(|(&(command, outcome), &count)| (command, outcome, count))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn offers_held(&self) -> usize {
        self.offers.len()
    }

    /// Keys the token buckets remember, per kind: MAC, relay, circuit, DECLINE.
    pub fn rate_limit_keys(&self) -> [usize; 4] {
        self.admission.tracked()
    }

    pub fn proposals_pending(&self) -> usize {
        self.pending.len()
    }

    /// The engine's structural invariants, for the checks of the fuzz targets: the offer
    /// bookkeeping agrees with itself (one client per offered address) and the table's invariants
    /// hold. Walks every offer and record: not for the request path.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        self.offers.check().map_err(|e| format!("offers: {e}"))?;
        self.table.check_invariants().map_err(|e| format!("table: {e}"))
    }

    /// Raft role changes. A new leader starts with an empty offer table: offers held by the old one
    /// are unknown here, and a REQUEST for an address the committed table gives to another client
    /// is NAKed at apply (DESIGN rule 3).
    pub fn set_role(&mut self, role: Role) {
        if role != self.role {
            self.offers.clear();
        }
        self.role = role;
    }

    /// `set_role` for callers that only know leader or not (a non-leader is treated as having no
    /// quorum: it answers nothing that needs a commit).
    pub fn set_leader(&mut self, is_leader: bool) {
        self.set_role(if is_leader { Role::Leader } else { Role::NoQuorum });
    }

    /// Answer nobody until the table has applied up to `index` (the commit index the log had at
    /// start: see `replay_until`).
    pub fn with_replay_until(mut self, index: u64) -> Self {
        self.replay_until = index;
        self
    }

    /// The table is still replaying the log this node started with.
    pub fn is_replaying(&self) -> bool {
        self.table.applied_index() < self.replay_until
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Decide what to do about one request that arrived broadcast (or relayed).
    pub fn handle(&mut self, request: &Request, now_us: u64) -> Action {
        self.handle_from(request, Arrival::BROADCAST, now_us)
    }

    /// Decide what to do about one request. Exactly one node answers each client message (DESIGN
    /// rule 2): the leader answers broadcast and relayed traffic; the node whose server identifier a
    /// unicast RENEW (or RELEASE, DECLINE, INFORM) is addressed to answers that, whatever its role —
    /// a follower's proposal goes to the leader through Raft, and a node without a quorum may only
    /// confirm what the committed table already says (DESIGN rule 5).
    pub fn handle_from(&mut self, request: &Request, arrival: Arrival, now_us: u64) -> Action {
        if self.is_replaying() {
            return Action::Silent(Silence::Replaying);
        }
        let now_ms = now_us / 1000;
        self.offers.expire(now_ms);
        let addressed_to_me =
            arrival.to.is_some_and(|ip| self.config.is_own_address(ip)) && request.giaddr.is_unspecified();
        // A SELECTING REQUEST naming this node (its OFFER, made while it led) is this node's too.
        let chose_me = request.message_type == ClientMessageType::Request
            && request.server_id.is_some_and(|id| self.config.is_own_address(id));
        if self.role != Role::Leader && !addressed_to_me && !(self.role == Role::Follower && chose_me) {
            return Action::Silent(Silence::NotLeader);
        }
        if self.pending.len() >= self.config.limits.max_inflight_proposals {
            self.expire_pending(now_us);
            if self.pending.len() >= self.config.limits.max_inflight_proposals {
                return Action::Drop(DropReason::ProposalBacklog);
            }
        }
        let interface_ip = self.config.interfaces.get(arrival.interface).map_or(self.config.server_ip, |i| i.server_ip);
        let scope = Scope {
            link: Link::of(request, arrival, interface_ip),
            class: classes::classify(&self.config.classes, request),
            bootp_dynamic_only: false,
        };
        if boot::BootClient::of(request) != boot::BootClient::Plain {
            let facts = machines::BootFacts { arch: request.client_arch, class: scope.class };
            self.boot_clients.note(request.chaddr, facts);
        }
        match (self.role, request.message_type) {
            (_, ClientMessageType::Inform) => self.inform(request, &scope),
            (Role::Leader, ClientMessageType::Discover) => self.discover(request, &scope, now_ms),
            (Role::Leader, ClientMessageType::Bootp) => self.bootp(request, &scope, now_us),
            (Role::Leader, ClientMessageType::Request) => self.request(request, &scope, now_us),
            (Role::Follower, ClientMessageType::Request) if is_renewing(request) => {
                self.request(request, &scope, now_us)
            }
            // SELECTING with this node's identifier: the client took the OFFER this node made while
            // it led (RFC 2131 §4.3.2: the server the client chose answers). Only this node is named,
            // so still exactly one answers; its binding goes through the log like a renewal, and apply
            // NAKs it if the new leader bound the address meanwhile. Without this the client repeats
            // its REQUEST to a silent server until it starts over (seconds, issue 12 and 13).
            (Role::Follower, ClientMessageType::Request)
                if request.server_id.is_some_and(|id| self.names_me(id, &scope)) =>
            {
                self.request(request, &scope, now_us)
            }
            (Role::NoQuorum, ClientMessageType::Request) if is_renewing(request) => {
                self.renew_without_quorum(request, &scope, now_ms)
            }
            (Role::Leader | Role::Follower, ClientMessageType::Decline) => self.decline(request, &scope, now_us),
            (Role::Leader | Role::Follower, ClientMessageType::Release) => self.release(request, &scope, now_us),
            _ => Action::Silent(Silence::NotLeader),
        }
    }

    /// Does a client's server identifier (option 54) name this node: one of its own addresses, or
    /// the address a relay told the client to use for us (RFC 5107)?
    fn names_me(&self, server_id: Ipv4Addr, scope: &Scope) -> bool {
        server_id == scope.link.server_id || self.config.is_own_address(server_id)
    }

    /// DESIGN rule 5: without a quorum nothing new is bound, but a client renewing a committed,
    /// unexpired lease is confirmed for the time that remains on it — never beyond.
    fn renew_without_quorum(&mut self, request: &Request, scope: &Scope, now_ms: u64) -> Action {
        let client = self.client_key(request);
        let reserved = self.reservation(request).map(|r| r.ip);
        match self.table.by_client(&client) {
            // Not a lease the reservations now forbid: the leader NAKs that renewal (`bind_or_nak`).
            Some(lease)
                if lease.ip == request.ciaddr
                    && lease.is_active(now_ms)
                    && self.reservations_allow(lease.ip, reserved) =>
            {
                let lease = lease.clone();
                Action::Send(Box::new(self.ack(request, scope, &lease, now_ms)))
            }
            _ => Action::Silent(Silence::NoQuorum),
        }
    }

    /// Who `request` comes from, as the lease table knows clients (`identity`).
    pub fn client_key(&self, request: &Request) -> ClientKey {
        match (self.config.identity, &request.client_id) {
            (ClientIdentity::ClientId, Some(id)) if !id.is_empty() => ClientKey::ClientId(id.as_slice().into()),
            _ => ClientKey::Mac(request.chaddr),
        }
    }

    /// The pools serving the client: on its link (see `relay`), those whose subnet holds the link's
    /// selector, and of those the ones its class (if any) selects and does not forbid.
    fn pools_for(&self, scope: &Scope) -> impl Iterator<Item = (usize, &Pool)> + '_ {
        let selector = scope.link.selector;
        let class = scope.class.and_then(|i| self.config.classes.get(i));
        let dynamic_only = scope.bootp_dynamic_only;
        self.config.pools.iter().enumerate().filter(move |(index, p)| {
            p.subnet.contains(selector)
                && (!dynamic_only || p.dynamic_bootp)
                && class.is_none_or(|c| {
                    c.pools.as_ref().is_none_or(|only| only.contains(index)) && !c.forbid_pools.contains(index)
                })
        })
    }

    fn class(&self, scope: &Scope) -> Option<&leasehold_config::Class> {
        scope.class.and_then(|i| self.config.classes.get(i))
    }

    /// The lease time the client gets from `pool`: its class's, else the pool's; BOOTP bindings the
    /// pool's BOOTP lease time.
    fn lease_secs(&self, request: &Request, scope: &Scope, pool: &Pool) -> u32 {
        if request.message_type == ClientMessageType::Bootp {
            return pool.bootp_lease_time_secs;
        }
        self.class(scope).and_then(|c| c.lease_time_secs).unwrap_or(pool.lease_time_secs)
    }

    fn pool_of(&self, scope: &Scope, ip: Ipv4Addr) -> Option<(usize, &Pool)> {
        self.pools_for(scope).find(|(_, p)| p.subnet.contains(ip))
    }

    fn reservation(&self, request: &Request) -> Option<&Reservation> {
        self.reservation_of(request.chaddr, request.client_id.as_deref())
    }

    /// May `client` be given `ip` now: in a pool or reserved for it, not held by another client in
    /// the committed table, not offered to another client, not reserved for someone else.
    fn usable(&self, ip: Ipv4Addr, client: &ClientKey, reserved_for_client: Option<Ipv4Addr>, now_ms: u64) -> bool {
        if self.config.is_own_address(ip) || !self.reservations_allow(ip, reserved_for_client) {
            return false;
        }
        self.table.is_available_to(ip, client, now_ms) && !self.offers.held_by_other(ip, client, now_ms)
    }

    /// The reservations let a client whose reserved address is `reserved` (if it has one) have
    /// `ip`: its own reserved address, or, without one, an address nobody has reserved.
    fn reservations_allow(&self, ip: Ipv4Addr, reserved: Option<Ipv4Addr>) -> bool {
        match reserved {
            Some(own) => own == ip,
            None => !self.is_reserved(ip),
        }
    }

    /// RFC 2131 §4.3.1: choose an address for a DISCOVER, in order: reservation, the client's
    /// current or previous binding, its current offer, the requested address, then a free one.
    fn choose_address(
        &mut self,
        request: &Request,
        scope: &Scope,
        client: &ClientKey,
        now_ms: u64,
    ) -> Option<(usize, Ipv4Addr)> {
        let reserved = self.reservation(request).map(|r| r.ip);
        if let Some(ip) = reserved {
            // A reserved client gets its address or nothing: any other would be NAKed at its
            // REQUEST (`bind_or_nak`), and the client would be stuck retrying it.
            let usable = self.pool_of(scope, ip).filter(|_| self.usable(ip, client, reserved, now_ms));
            return usable.map(|(index, _)| (index, ip));
        }
        let in_range = |engine: &Engine, ip: Ipv4Addr| -> Option<usize> {
            engine.pools_for(scope).find(|(_, p)| p.contains(ip)).map(|(i, _)| i)
        };
        let known = self.table.by_client(client).map(|l| l.ip).into_iter().chain(self.offers.of(client, now_ms));
        let candidates: Vec<Ipv4Addr> = known.chain(request.requested_ip).collect();
        for ip in candidates {
            if let Some(index) = in_range(self, ip) {
                if self.usable(ip, client, reserved, now_ms) {
                    return Some((index, ip));
                }
            }
        }
        let pool_indexes: Vec<usize> = self.pools_for(scope).map(|(i, _)| i).collect();
        for index in pool_indexes {
            if let Some(ip) = self.scan_free(index, client, now_ms) {
                return Some((index, ip));
            }
        }
        None
    }

    /// A free address of the pool, from its index: first one with no record at all (so returning
    /// clients keep theirs as long as possible), then the one reusable longest. Skips this node's
    /// own addresses, reserved ones and offers held for other clients. Costs the same on a fresh and
    /// on a churned pool: the index, not the range, is searched.
    fn scan_free(&mut self, pool_index: usize, client: &ClientKey, now_ms: u64) -> Option<Ipv4Addr> {
        let state = Exhausted {
            until_ms: now_ms + EXHAUSTED_RESCAN_MS,
            applied_index: self.table.applied_index(),
            offers: self.offers.len(),
        };
        if let Some(seen) = self.exhausted[pool_index] {
            if now_ms < seen.until_ms && seen.applied_index == state.applied_index && state.offers >= seen.offers {
                return None;
            }
        }
        let index = &self.indexes[pool_index];
        let skip = |ip: &Ipv4Addr| {
            self.config.is_own_address(*ip) || self.is_reserved(*ip) || self.offers.held_by_other(*ip, client, now_ms)
        };
        let record_free = index.record_free().find(|ip| !skip(ip));
        if let Some(ip) = record_free {
            self.indexes[pool_index].taken(ip);
            return Some(ip);
        }
        let reusable =
            index.reusable_by(now_ms).find(|ip| !skip(ip) && self.table.is_available_to(*ip, client, now_ms));
        self.exhausted[pool_index] = if reusable.is_none() { Some(state) } else { None };
        reusable
    }

    /// A client the pools know: it has a lease record (bound, expired or released), or a
    /// reservation. Its offers are not counted against a pool's cap, and the relay and circuit
    /// buckets do not apply to it: a flood of new MACs through its relay does not starve it, and
    /// whoever spoofs it is offered its own address.
    fn is_known(&self, request: &Request, client: &ClientKey) -> bool {
        self.table.by_client(client).is_some() || self.reservation(request).is_some()
    }

    /// RFC 2131 §4.3.1. Every DISCOVER spends a token of its client's buckets (`limits.rate`), and a
    /// new client's offer counts against its pool's cap: beyond it, it displaces the pool's oldest
    /// new-client offer, so a flood of spoofed MACs holds at most the cap, and new clients that ask
    /// during it still get offers.
    fn discover(&mut self, request: &Request, scope: &Scope, now_ms: u64) -> Action {
        let client = self.client_key(request);
        if self.pools_for(scope).next().is_none() {
            return Action::Drop(DropReason::NoPool);
        }
        let known = self.is_known(request, &client);
        if let Err(silence) = self.admission.admit(request, known, now_ms) {
            return Action::Silent(silence);
        }
        let Some((pool_index, ip)) = self.choose_address(request, scope, &client, now_ms) else {
            return Action::Silent(Silence::PoolExhausted);
        };
        let until_ms = now_ms.saturating_add(self.config.limits.offer_hold_ms);
        let capped = (!known).then(|| (pool_index, self.offer_caps[pool_index]));
        if self.offers.hold(client, ip, until_ms, self.config.limits.max_offers, capped).is_some() {
            self.offers_displaced[pool_index] += 1;
        }
        let lease_secs = self.lease_secs(request, scope, &self.config.pools[pool_index]);
        let reply = self.reply(request, scope, ReplyType::Offer, pool_index, ip, Some(lease_secs));
        Action::Send(Box::new(self.outgoing(request, scope, reply)))
    }

    /// RFC 951 / RFC 1542: a BOOTREQUEST asks for an address and a boot file in one message. A
    /// reserved client gets its address, others one from a `dynamic_bootp` pool of their link; the
    /// binding is committed before the BOOTREPLY goes out, as an ACK's is (DESIGN rule 1).
    fn bootp(&mut self, request: &Request, scope: &Scope, now_us: u64) -> Action {
        let now_ms = now_us / 1000;
        let client = self.client_key(request);
        let reserved = self.reservation(request).map(|r| r.ip);
        let scope = Scope { bootp_dynamic_only: reserved.is_none(), ..*scope };
        if self.pools_for(&scope).next().is_none() {
            return Action::Silent(Silence::BootpNotServed);
        }
        let Some((pool_index, ip)) = self.choose_address(request, &scope, &client, now_ms) else {
            return Action::Silent(Silence::PoolExhausted);
        };
        if reserved.is_some_and(|r| r != ip) {
            // The reserved address is taken by someone else: no other address for this client.
            return Action::Silent(Silence::PoolExhausted);
        }
        if let Err(silence) = self.admit_binding(request, &client, ip, now_ms) {
            return Action::Silent(silence);
        }
        let lease_ms = u64::from(self.config.pools[pool_index].bootp_lease_time_secs) * 1000;
        let hostname = self.reservation(request).and_then(|r| r.hostname.clone()).or_else(|| request.hostname.clone());
        let command = Command::Bind {
            client,
            mac: request.chaddr,
            client_id: request.client_id.clone(),
            hostname,
            ip,
            expires_at_ms: now_ms.saturating_add(lease_ms),
            proposed_at_ms: now_ms,
            decided_at_index: self.table.applied_index(),
        };
        self.propose(request, &scope, command, now_us)
    }

    /// RFC 2131 §4.3.2: the three kinds of DHCPREQUEST.
    fn request(&mut self, request: &Request, scope: &Scope, now_us: u64) -> Action {
        let client = self.client_key(request);
        let reserved = self.reservation(request).map(|r| r.ip);
        if let Some(server_id) = request.server_id {
            // SELECTING: the client answers an OFFER.
            if !self.names_me(server_id, scope) {
                self.offers.forget(&client);
                return Action::Silent(Silence::OtherServerChosen);
            }
            // Option 50 is required here (§4.3.2), but some clients leave it out: the address is
            // then the one offered to this client, as Kea does.
            let now_ms = now_us / 1000;
            let offered = self.offers.of(&client, now_ms).or_else(|| self.offers.displaced_claim(&client, now_ms));
            let Some(ip) = request.requested_ip.or_else(|| nonzero(request.ciaddr)).or(offered) else {
                return self.nak(request, scope, "no requested address");
            };
            let max_offers = self.config.limits.max_offers;
            if self.offers.reclaim(&client, ip, now_ms, max_offers, &self.offer_caps) {
                if let Some((pool_index, _)) = self.pool_of(scope, ip) {
                    self.offers_reclaimed[pool_index] += 1;
                }
            }
            return self.bind_or_nak(request, scope, client, ip, reserved, now_us);
        }
        if let Some(ip) = request.requested_ip.filter(|_| request.ciaddr == Ipv4Addr::UNSPECIFIED) {
            // INIT-REBOOT: the client checks a remembered address.
            if self.pool_of(scope, ip).is_none() {
                return if self.pools_for(scope).next().is_some() {
                    self.nak(request, scope, "address not on this network")
                } else {
                    Action::Silent(Silence::NotOurs)
                };
            }
            return match self.table.by_client(&client) {
                None => Action::Silent(Silence::UnknownClient),
                Some(lease) if lease.ip != ip => self.nak(request, scope, "address belongs to another binding"),
                Some(_) => self.bind_or_nak(request, scope, client, ip, reserved, now_us),
            };
        }
        if let Some(ip) = nonzero(request.ciaddr) {
            // RENEWING (unicast) or REBINDING (broadcast): extend the binding at ciaddr.
            if self.pool_of(scope, ip).is_none() {
                return Action::Silent(Silence::NotOurs);
            }
            return self.bind_or_nak(request, scope, client, ip, reserved, now_us);
        }
        Action::Silent(Silence::NothingToDo)
    }

    fn bind_or_nak(
        &mut self,
        request: &Request,
        scope: &Scope,
        client: ClientKey,
        ip: Ipv4Addr,
        reserved: Option<Ipv4Addr>,
        now_us: u64,
    ) -> Action {
        let now_ms = now_us / 1000;
        if reserved.is_some_and(|r| r != ip) {
            self.offers.forget(&client);
            return self.nak(request, scope, "client has a reserved address");
        }
        let pool = match self.pools_for(scope).find(|(_, p)| p.contains(ip)) {
            Some((_, pool)) => pool,
            None => match self.pool_of(scope, ip) {
                Some((_, pool)) if reserved == Some(ip) => pool,
                _ => return self.nak(request, scope, "address not in a pool of this network"),
            },
        };
        let lease_ms = u64::from(self.lease_secs(request, scope, pool)) * 1000;
        if !self.usable(ip, &client, reserved, now_ms) {
            // The client starts over (RFC 2131 §4.4.1): what we offered it is no use to it now.
            self.offers.forget(&client);
            return self.nak(request, scope, "address in use");
        }
        if let Err(silence) = self.admit_binding(request, &client, ip, now_ms) {
            return Action::Silent(silence);
        }
        let expires_at_ms = now_ms.saturating_add(lease_ms);
        let hostname = self.reservation(request).and_then(|r| r.hostname.clone()).or_else(|| request.hostname.clone());
        let command = Command::Bind {
            client,
            mac: request.chaddr,
            client_id: request.client_id.clone(),
            hostname,
            ip,
            expires_at_ms,
            proposed_at_ms: now_ms,
            decided_at_index: self.table.applied_index(),
        };
        self.propose(request, scope, command, now_us)
    }

    /// May a REQUEST or BOOTREQUEST that would bind `ip` to `client` go on? Renewing one's own binding
    /// (RENEWING, REBINDING, INIT-REBOOT with the bound address) and taking the address one was
    /// offered (the DISCOVER paid) are free; anything else takes an address from the pool, as a
    /// DISCOVER does, and spends a token of the same buckets.
    fn admit_binding(
        &mut self,
        request: &Request,
        client: &ClientKey,
        ip: Ipv4Addr,
        now_ms: u64,
    ) -> Result<(), Silence> {
        let renewal = self
            .table
            .by_client(client)
            .is_some_and(|lease| lease.ip == ip && matches!(lease.state, leasehold_cluster::LeaseState::Bound { .. }));
        if renewal || self.offers.of(client, now_ms) == Some(ip) {
            return Ok(());
        }
        let known = self.is_known(request, client);
        self.admission.admit(request, known, now_ms)
    }

    /// RFC 2131 §4.3.3: the client found the address it was given in use; quarantine it. Only a
    /// DECLINE for an address in one of the client's pools that is bound to that very client is acted
    /// on (and no faster than its DECLINE bucket allows); for the address offered to it the offer is
    /// withdrawn; anything else is ignored and counted. So a forged DECLINE can neither quarantine a
    /// free address, nor make a record for one outside every pool, nor touch another client's offer or
    /// lease.
    fn decline(&mut self, request: &Request, scope: &Scope, now_us: u64) -> Action {
        let now_ms = now_us / 1000;
        if request.server_id.is_some_and(|s| !self.names_me(s, scope)) {
            return Action::Silent(Silence::NotOurs);
        }
        let Some(ip) = request.requested_ip else {
            return Action::Silent(Silence::NothingToDo);
        };
        let client = self.client_key(request);
        let reserved = self.reservation(request).map(|r| r.ip);
        let in_pool = self.pools_for(scope).any(|(_, pool)| pool.contains(ip))
            || (reserved == Some(ip) && self.pool_of(scope, ip).is_some());
        if !in_pool {
            return Action::Silent(Silence::DeclineNotInPool);
        }
        let bound = self.table.by_ip(ip).is_some_and(|lease| {
            lease.client == client && matches!(lease.state, leasehold_cluster::LeaseState::Bound { .. })
        });
        let offered = self.offers.of(&client, now_ms) == Some(ip);
        if !bound && !offered {
            return Action::Silent(Silence::DeclineNotHeld);
        }
        // The client's own offer, and no one else's.
        self.offers.forget(&client);
        if !bound {
            return Action::Silent(Silence::DeclineOfferWithdrawn);
        }
        if let Err(silence) = self.admission.admit_decline(request.chaddr, now_ms) {
            return Action::Silent(silence);
        }
        let until_ms = now_ms.saturating_add(self.config.limits.decline_probation_secs * 1000);
        let command = Command::Decline {
            client,
            mac: request.chaddr,
            ip,
            until_ms,
            proposed_at_ms: now_ms,
            decided_at_index: self.table.applied_index(),
        };
        self.propose(request, scope, command, now_us)
    }

    /// RFC 2131 §4.3.4: the client gives its address back.
    fn release(&mut self, request: &Request, scope: &Scope, now_us: u64) -> Action {
        if request.server_id.is_some_and(|s| !self.names_me(s, scope)) {
            return Action::Silent(Silence::NotOurs);
        }
        let Some(ip) = nonzero(request.ciaddr) else {
            return Action::Silent(Silence::NothingToDo);
        };
        let client = self.client_key(request);
        self.offers.forget(&client);
        let command = Command::Release {
            client,
            ip,
            proposed_at_ms: now_us / 1000,
            decided_at_index: self.table.applied_index(),
        };
        self.propose(request, scope, command, now_us)
    }

    /// RFC 2131 §4.3.5: configuration only — options, no lease time, no yiaddr; answered at once to
    /// ciaddr.
    fn inform(&mut self, request: &Request, scope: &Scope) -> Action {
        let Some(ciaddr) = nonzero(request.ciaddr) else {
            return Action::Silent(Silence::NothingToDo);
        };
        let Some((pool_index, _)) = self.pool_of(scope, ciaddr) else {
            return Action::Silent(Silence::NotOurs);
        };
        let mut reply = self.reply(request, scope, ReplyType::Ack, pool_index, Ipv4Addr::UNSPECIFIED, None);
        reply.ciaddr = ciaddr;
        Action::Send(Box::new(self.outgoing(request, scope, reply)))
    }

    fn next_tag(&mut self) -> ProposalTag {
        let tag = ProposalTag { node_id: self.node_id, incarnation: self.incarnation, seq: self.next_seq };
        self.next_seq += 1;
        tag
    }

    fn propose(&mut self, request: &Request, scope: &Scope, command: Command, now_us: u64) -> Action {
        let tag = self.next_tag();
        self.pending.insert(tag, Pending { request: request.clone(), scope: *scope, proposed_at_us: now_us });
        self.pending_order.push_back((now_us, tag));
        Action::Propose(Proposal { tag, command })
    }

    /// On the leader: the apply parameters of its config (`expiry_grace_secs`, `max_leases`) as a
    /// command, when the table applies with others (DESIGN rule 4: apply reads the log, not a node's
    /// file). Until one commits, a table applies with its own node's config.
    pub fn propose_parameters(&mut self) -> Option<Proposal> {
        let limits = &self.config.limits;
        let wanted = Parameters {
            grace_ms: limits.expiry_grace_secs.saturating_mul(1000),
            max_leases: limits.max_leases as u64,
        };
        let (current, from_log) = self.table.parameters();
        if self.role != Role::Leader || (from_log && current == wanted) {
            return None;
        }
        Some(Proposal { tag: self.next_tag(), command: Command::SetParameters(wanted) })
    }

    /// What an iPXE script may say about the machine with this MAC (`boot_script`): the address of
    /// its lease (looked up by MAC, or by the client identifier 1 + MAC that firmware sends), else
    /// its reservation's; its lease's or reservation's host name; the arch and class of its last
    /// boot request this node answered; its reservation's boot file, else its class's; and the
    /// script its reservation, else its class, chooses. Index lookups only, never a scan of the
    /// table: anyone on the segment may ask for any MAC, and this runs on the DHCP thread.
    pub fn machine(&self, mac: [u8; 6], server: Ipv4Addr, now_ms: u64) -> crate::boot_script::Machine {
        let mut hardware_id = vec![1];
        hardware_id.extend_from_slice(&mac);
        let lease = [ClientKey::Mac(mac), ClientKey::ClientId(hardware_id.into_boxed_slice())]
            .iter()
            .find_map(|key| self.table.by_client(key))
            .filter(|lease| lease.is_active(now_ms));
        let reservation = self.reservation_of(mac, None);
        let facts = self.boot_clients.get(mac).unwrap_or_default();
        let class = facts.class.and_then(|index| self.config.classes.get(index));
        crate::boot_script::Machine {
            mac,
            ip: lease.map(|lease| lease.ip).or(reservation.map(|r| r.ip)),
            hostname: lease
                .and_then(|lease| lease.hostname().map(str::to_owned))
                .or_else(|| reservation.and_then(|r| r.hostname.clone())),
            server,
            arch: facts.arch,
            class: class.map(|c| c.name.clone()),
            boot_file: reservation
                .and_then(|r| r.boot_file.clone())
                .or_else(|| class.and_then(|c| c.boot_file.clone())),
            script: reservation
                .and_then(|r| r.boot_script.clone())
                .or_else(|| class.and_then(|c| c.boot_script.clone())),
        }
    }

    /// The digest of this node's lease-relevant config (`reload::lease_config_digest`).
    pub fn config_digest(&self) -> &str {
        &self.config_digest
    }

    /// Does this node's config differ from the one the log last carried (the leader's when it
    /// proposed it)? `None` until the log carried one.
    pub fn config_mismatch(&self) -> Option<bool> {
        self.table.config_digest().map(|replicated| replicated != self.config_digest)
    }

    /// On the leader: its config digest as a command, when the log does not carry it yet (a new
    /// leader, or a reload), so every member can compare its own file with the leader's.
    pub fn propose_config_digest(&mut self) -> Option<Proposal> {
        if self.role != Role::Leader || self.table.config_digest() == Some(self.config_digest.as_str()) {
            return None;
        }
        let digest = self.config_digest.clone();
        Some(Proposal { tag: self.next_tag(), command: Command::SetConfigDigest { digest } })
    }

    /// Forget proposals older than `proposal_timeout_ms` (lost in a leader change, or dropped): the
    /// client retransmits and gets a fresh decision.
    pub fn expire_pending(&mut self, now_us: u64) -> usize {
        let timeout_us = self.config.limits.proposal_timeout_ms * 1000;
        let mut expired = 0;
        while let Some(&(at_us, tag)) = self.pending_order.front() {
            if at_us.saturating_add(timeout_us) > now_us {
                break;
            }
            self.pending_order.pop_front();
            if self.pending.remove(&tag).is_some() {
                expired += 1;
            }
        }
        self.pending_admin.retain(|_, at_us| at_us.saturating_add(timeout_us) > now_us);
        self.offers.expire(now_us / 1000);
        expired
    }

    /// Proposals the Raft layer refused (this node is not the leader): forget them.
    pub fn rejected(&mut self, tags: &[ProposalTag]) {
        for tag in tags {
            self.pending.remove(tag);
            self.pending_admin.remove(tag);
        }
    }

    /// Apply committed entries in log order and answer the clients whose proposals they carry.
    pub fn apply_committed(&mut self, entries: &[CommittedEntry], now_us: u64) -> Answers {
        let mut answers = Answers::default();
        for entry in entries {
            if entry.changes_membership {
                // A snapshot after it, for the node it may add (see `CommittedEntry`).
                self.applied_since_snapshot =
                    self.applied_since_snapshot.max(self.config.limits.snapshot_every_entries);
            }
            if entry.proposals.is_empty() {
                if entry.membership.is_empty() {
                    self.table.skip(entry.index);
                } else {
                    self.table.apply_membership(entry.index, &entry.membership);
                }
                continue;
            }
            let mut touched = Vec::new();
            let Some(outcomes) = self.table.apply_touching(entry.index, &entry.proposals, &mut touched) else {
                continue;
            };
            if outcomes.iter().any(|o| matches!(o, Outcome::Reserved | Outcome::Unreserved)) {
                // Before any answer: a binding in the same entry is answered by the reservations
                // the table has after it.
                self.api_reservations = reservations::reservation_view(&self.table);
            }
            if outcomes.contains(&Outcome::ParametersSet) {
                // Another grace moves every record's reusable time: index the pools afresh.
                self.indexes =
                    self.config.pools.iter().map(|pool| allocator::PoolIndex::new(pool, &self.table)).collect();
            } else {
                for ip in touched {
                    for index in &mut self.indexes {
                        index.refresh(ip, &self.table);
                    }
                }
            }
            self.applied_since_snapshot += 1;
            self.commands_since_snapshot += entry.proposals.len() as u64;
            for (proposal, outcome) in entry.proposals.iter().zip(&outcomes) {
                // Every node applies every entry: these counts agree across the cluster.
                *self.applied_outcomes.entry((proposal.command.label(), outcome.label())).or_default() += 1;
                self.answer_applied(proposal, outcome, now_us, &mut answers);
            }
        }
        answers
    }

    /// The outcome of `proposal` is in the table: drop offers it supersedes, answer the client or
    /// admin request waiting on it (if this node proposed it).
    fn answer_applied(&mut self, proposal: &Proposal, outcome: &Outcome, now_us: u64, answers: &mut Answers) {
        let now_ms = now_us / 1000;
        if let Outcome::Bound(lease) | Outcome::Stale { in_force: Some(lease) } = outcome {
            // Another node's binding supersedes any offer we hold for the address.
            if self.offers.held_by_other(lease.ip, &lease.client, now_ms) {
                self.offers.remove_ip(lease.ip);
            }
        }
        if let Some(admin) = self.applied_admin(&proposal.tag, &proposal.command, outcome) {
            answers.admin.push(admin);
            return;
        }
        let Some(pending) = self.pending.remove(&proposal.tag) else { return };
        answers.commit_latencies_us.push(now_us.saturating_sub(pending.proposed_at_us));
        self.answer(&pending.request, &pending.scope, &proposal.command, outcome, now_ms, answers);
    }

    /// A store that writes decided changes (etcd): what `proposal` does on the table as it is now
    /// (`LeaseTable::decide`), its records stamped when they are applied.
    pub fn decide(&self, proposal: &Proposal) -> leasehold_cluster::lease::Decided {
        self.table.decide(self.table.applied_index(), proposal.tag.node_id, &proposal.command)
    }

    /// Changes a store delivered at `revision` (its watch), in order: into the table and the
    /// indexes derived from it.
    pub fn apply_store_changes(&mut self, revision: u64, changes: Vec<leasehold_cluster::lease::Change>, now_us: u64) {
        use leasehold_cluster::lease::Change;
        let now_ms = now_us / 1000;
        let reservations = changes.iter().any(|c| matches!(c, Change::Reserve(_) | Change::Unreserve(_)));
        let parameters = changes.iter().any(|c| matches!(c, Change::Parameters(_)));
        let bound: Vec<(Ipv4Addr, ClientKey)> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Put(lease) => Some((lease.ip, lease.client.clone())),
                _ => None,
            })
            .collect();
        let mut touched = Vec::new();
        self.table.apply_changes(revision, changes, &mut touched);
        if reservations {
            self.api_reservations = reservations::reservation_view(&self.table);
        }
        if parameters {
            self.indexes = self.config.pools.iter().map(|pool| allocator::PoolIndex::new(pool, &self.table)).collect();
        } else {
            for ip in touched {
                for index in &mut self.indexes {
                    index.refresh(ip, &self.table);
                }
            }
        }
        for (ip, client) in bound {
            // Another node's binding supersedes any offer we hold for the address.
            if self.offers.held_by_other(ip, &client, now_ms) {
                self.offers.remove_ip(ip);
            }
        }
    }

    /// A decided proposal is in the table (its changes applied at `revision`, or it changed
    /// nothing): answer whoever waits on it.
    pub fn answer_decided(&mut self, revision: u64, proposal: &Proposal, mut outcome: Outcome, now_us: u64) -> Answers {
        if let Outcome::Bound(lease) = &mut outcome {
            lease.changed_at_index = revision;
        }
        *self.applied_outcomes.entry((proposal.command.label(), outcome.label())).or_default() += 1;
        let mut answers = Answers::default();
        self.answer_applied(proposal, &outcome, now_us, &mut answers);
        answers
    }

    fn answer(
        &mut self,
        request: &Request,
        scope: &Scope,
        command: &Command,
        outcome: &Outcome,
        now_ms: u64,
        answers: &mut Answers,
    ) {
        let decision = |outcome: &'static str, ip: Ipv4Addr| Decision {
            message: request.message_type,
            xid: request.xid,
            mac: request.chaddr,
            giaddr: request.giaddr,
            ip,
            outcome,
        };
        let command_ip = match command {
            Command::Bind { ip, .. }
            | Command::Release { ip, .. }
            | Command::Decline { ip, .. }
            | Command::DeclineUnchecked { ip, .. } => *ip,
            Command::Reserve { host, .. } => host.ip,
            Command::Unreserve { .. }
            | Command::Collect { .. }
            | Command::SetParameters(_)
            | Command::SetConfigDigest { .. } => Ipv4Addr::UNSPECIFIED,
        };
        let bootp = request.message_type == ClientMessageType::Bootp;
        match (command, outcome) {
            (
                Command::Bind { proposed_at_ms, .. },
                Outcome::Bound(lease) | Outcome::Stale { in_force: Some(lease) },
            ) if !lease.is_active(now_ms.max(lease.updated_at_ms).max(*proposed_at_ms)) => {
                // Committed too late to be of use: the lease ran out before it was applied, or
                // before the time the client counts its lease from (later than now when the wall
                // clock stepped back meanwhile). An ACK would promise an address past its binding.
                answers.silent.push(decision("expired_before_commit", lease.ip));
            }
            (Command::Bind { .. }, Outcome::Bound(lease) | Outcome::Stale { in_force: Some(lease) })
                if !self.reservations_allow(lease.ip, self.reservation(request).map(|r| r.ip)) =>
            {
                // A reservation committed after this REQUEST was decided (in the same entry, or one
                // in between): the client is not told to use an address the reservations now give
                // to someone else, or not to it. Back to INIT (RFC 2131 §4.4.1), where it is offered
                // what they allow; its next binding frees this one.
                if bootp {
                    answers.silent.push(decision("bootp_refused", lease.ip));
                } else {
                    let reply = self.nak_reply(request, scope, "reservations changed meanwhile");
                    answers.replies.push((self.outgoing(request, scope, reply), decision("nak_reserved", lease.ip)));
                }
            }
            (
                Command::Bind { proposed_at_ms, .. },
                Outcome::Bound(lease) | Outcome::Stale { in_force: Some(lease) },
            ) => {
                self.offers.forget(&lease.client);
                // Usually this command made the binding. When it was refused as stale because a binding
                // made after it was decided is in force (a retransmission, a late renewal), the client
                // is answered from that binding, and the lease time still counts from this REQUEST: the
                // client counts from when it sent it.
                let from_ms = lease.updated_at_ms.max(*proposed_at_ms);
                let outgoing = self.ack(request, scope, lease, from_ms);
                answers.replies.push((outgoing, decision(if bootp { "bootreply" } else { "ack" }, lease.ip)));
            }
            // BOOTP has no NAK (RFC 951): the client asks again.
            (Command::Bind { .. }, Outcome::Conflict { .. } | Outcome::Stale { .. }) if bootp => {
                answers.silent.push(decision("bootp_refused", command_ip));
            }
            (Command::Bind { .. }, Outcome::Conflict { .. }) => {
                let reply = self.nak_reply(request, scope, "address in use");
                answers.replies.push((self.outgoing(request, scope, reply), decision("nak", command_ip)));
            }
            (_, Outcome::TableFull) => answers.silent.push(decision("table_full", command_ip)),
            (_, Outcome::Released) => answers.silent.push(decision("released", command_ip)),
            (_, Outcome::Declined) => answers.silent.push(decision("declined", command_ip)),
            (_, Outcome::NotHeld) => answers.silent.push(decision("not_held", command_ip)),
            (Command::Bind { .. }, Outcome::Stale { .. }) => {
                // The client's binding changed after this REQUEST was decided (it released or moved
                // meanwhile): a NAK sends it back to INIT, RFC 2131 §4.4.1.
                let reply = self.nak_reply(request, scope, "binding changed meanwhile");
                answers.replies.push((self.outgoing(request, scope, reply), decision("nak_stale", command_ip)));
            }
            (_, Outcome::Stale { .. }) => answers.silent.push(decision("stale", command_ip)),
            (_, other) => {
                debug_assert!(false, "outcome {other:?} for {command:?}");
                answers.silent.push(decision("unexpected", command_ip));
            }
        }
    }

    /// The DHCPACK for a committed, applied binding: the only way an ACK with a lease is built. The
    /// lease time counts from `from_ms`, rounded down, so the client's idea of the expiry (it counts
    /// from when it sent the REQUEST, RFC 2131 §4.4.1) never passes the committed one: for a fresh
    /// binding `from_ms` is the proposer's time, for a confirmation without quorum it is now.
    fn ack(&self, request: &Request, scope: &Scope, lease: &Lease, from_ms: u64) -> Outgoing {
        // Bindings are proposed only inside a pool's subnet; a peer with a different pool list
        // (a misconfigured cluster) still gets an answer, with the first pool's options.
        let pool_index = self.config.pools.iter().position(|p| p.subnet.contains(lease.ip)).unwrap_or(0);
        let remaining_secs = match lease.state {
            leasehold_cluster::LeaseState::Bound { expires_at_ms } => {
                u32::try_from(expires_at_ms.saturating_sub(from_ms) / 1000).unwrap_or(u32::MAX)
            }
            _ => 0,
        };
        let reply_type =
            if request.message_type == ClientMessageType::Bootp { ReplyType::Bootp } else { ReplyType::Ack };
        let mut reply = self.reply(request, scope, reply_type, pool_index, lease.ip, Some(remaining_secs));
        reply.ciaddr = request.ciaddr;
        self.outgoing(request, scope, reply)
    }

    fn nak(&self, request: &Request, scope: &Scope, why: &str) -> Action {
        let reply = self.nak_reply(request, scope, why);
        Action::Send(Box::new(self.outgoing(request, scope, reply)))
    }

    /// RFC 2131 §4.3.2, table 3: a DHCPNAK carries only the server identifier and a message.
    fn nak_reply(&self, request: &Request, scope: &Scope, why: &str) -> Reply {
        Reply {
            broadcast: request.broadcast || request.giaddr != Ipv4Addr::UNSPECIFIED,
            message: Some(why.to_string()),
            ..Reply::answering(request, ReplyType::Nak, scope.link.server_id)
        }
    }

    /// An OFFER or ACK with the pool's options and, for network-boot clients, the boot settings.
    fn reply(
        &self,
        request: &Request,
        scope: &Scope,
        message_type: ReplyType,
        pool_index: usize,
        yiaddr: Ipv4Addr,
        lease_secs: Option<u32>,
    ) -> Reply {
        let pool = &self.config.pools[pool_index];
        let full_secs = self.lease_secs(request, scope, pool);
        let (renewal, rebinding) = match lease_secs {
            _ if message_type == ReplyType::Bootp => (None, None),
            Some(secs) if secs < full_secs => (Some(secs / 2), Some(secs / 8 * 7)),
            Some(_) if full_secs != pool.lease_time_secs => (Some(full_secs / 2), Some(full_secs / 8 * 7)),
            Some(_) => (Some(pool.renewal_time_secs), Some(pool.rebinding_time_secs)),
            None => (None, None),
        };
        let reservation = self.reservation(request);
        let class = self.class(scope);
        let scopes = options::Scopes { config: &self.config, pool, class, reservation };
        let mut reply = Reply {
            yiaddr,
            lease_time_secs: lease_secs.filter(|_| message_type != ReplyType::Bootp),
            renewal_time_secs: renewal,
            rebinding_time_secs: rebinding,
            subnet_mask: Some(pool.subnet.mask()),
            options: options::reply_options(&scopes, request),
            // RFC 3011 §3: a client that chose its subnet with option 118 gets it back.
            subnet_selection: request.subnet_selection.filter(|_| scope.link.source == LinkSource::SubnetSelection),
            ..Reply::answering(request, message_type, scope.link.server_id)
        };
        let pxe = pool.pxe.as_ref().unwrap_or(&self.config.pxe);
        let this_node = self.config.boot.root.is_some().then_some(scope.link.server_id);
        let boot = boot::boot_reply(pxe, class, reservation, request, this_node);
        reply.siaddr = boot.siaddr.unwrap_or(Ipv4Addr::UNSPECIFIED);
        // A configured option 60, 66, 67 or 97 is the operator's word: it replaces what boot policy
        // chose (each code goes out once: a client joins every instance of a code, RFC 3396).
        let configured = |code: u8| reply.option(code).is_some();
        let (own_60, own_66, own_67, own_97) = (configured(60), configured(66), configured(67), configured(97));
        reply.tftp_server_name = boot.tftp_server_name.filter(|_| !own_66);
        // `{server}` in a boot file or URL names the answering node (each node serves the files),
        // `{mac}` the client (as `boot/{mac}.ipxe` takes it: 52-54-00-12-34-56).
        let file = boot.file.map(|file| {
            let mac = request.chaddr.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join("-");
            file.replace("{server}", &scope.link.server_id.to_string()).replace("{mac}", &mac)
        });
        reply.bootfile_name = file.clone().filter(|_| !own_67);
        reply.file = file;
        reply.vendor_class = boot.vendor_class.map(<[u8]>::to_vec).filter(|_| !own_60);
        reply.client_uuid = request.client_uuid.clone().filter(|_| boot.echo_client_uuid && !own_97);
        reply
    }

    fn outgoing(&self, request: &Request, scope: &Scope, reply: Reply) -> Outgoing {
        let destination = Destination::for_reply(request, reply.message_type);
        let limit = self.config.limits.max_frame_bytes;
        // Option 57 counts the IP and UDP headers (as ISC dhcpd reads it); without it, a client
        // need take no more than 576 bytes (RFC 2131 §2), a BOOTP client no more than 300 (RFC 951).
        // (Option 57 is a DHCP option, RFC 2132 §9.10: a BOOTP client's 300 bytes stand.)
        let max_bytes = match request.max_message_size {
            _ if request.message_type == ClientMessageType::Bootp => BOOTP_REPLY_BYTES,
            Some(size) if size >= MIN_MAX_MESSAGE_SIZE => usize::from(size) - IP_UDP_HEADER_BYTES,
            _ => usize::from(MIN_MAX_MESSAGE_SIZE) - IP_UDP_HEADER_BYTES,
        };
        let max_bytes = limit.min(max_bytes);
        Outgoing { reply, destination, interface: scope.link.interface, max_bytes }
    }

    /// A snapshot is due after `snapshot_every_entries` entries, or once the entries since the last
    /// hold more commands than the table has records (and at least `MIN_COMMANDS_FOR_SNAPSHOT`):
    /// from then on a restart would take longer to replay the log than to read a snapshot.
    fn snapshot_due(&self) -> bool {
        self.applied_since_snapshot >= self.config.limits.snapshot_every_entries
            || self.commands_since_snapshot >= (self.table.len() as u64).max(MIN_COMMANDS_FOR_SNAPSHOT)
    }

    /// The next slice of the table's snapshot: after `snapshot_every_entries` applied entries one
    /// begins (the table as it stands: the slice carries its encoder), and each call copies out the
    /// next `max_records` records as they were then, while entries go on applying in between. The
    /// encoding happens wherever the encoder is; `None` when no snapshot is due or in progress.
    pub fn snapshot_step(&mut self, max_records: usize) -> Option<SnapshotPart> {
        let begun = if self.table.snapshot_in_progress() {
            None
        } else if !self.snapshot_due() {
            return None;
        } else {
            self.applied_since_snapshot = 0;
            self.commands_since_snapshot = 0;
            Some(self.table.begin_snapshot())
        };
        let mut records = Vec::with_capacity(max_records.min(self.table.len()));
        let last = self.table.snapshot_records(max_records, &mut records);
        Some(SnapshotPart { begun, records, last })
    }

    /// Replace the table with a snapshot from the leader.
    pub fn restore(&mut self, table: LeaseTable) {
        self.api_reservations = reservations::reservation_view(&table);
        self.indexes = self.config.pools.iter().map(|pool| allocator::PoolIndex::new(pool, &table)).collect();
        self.table = table;
        self.offers.clear();
        self.applied_since_snapshot = 0;
        self.commands_since_snapshot = 0;
    }

    /// Bound (unexpired, to the second) addresses per pool, for metrics: from the pools' indexes, without
    /// a walk of the table.
    pub fn pool_usage(&self, now_ms: u64) -> Vec<PoolUsage<'_>> {
        self.config
            .pools
            .iter()
            .zip(&self.indexes)
            .enumerate()
            .map(|(i, (pool, index))| PoolUsage {
                name: &pool.name,
                size: pool.size(),
                bound: index.bound_at(now_ms),
                new_client_offers: u32::try_from(self.offers.capped_held(i)).unwrap_or(u32::MAX),
                new_client_offer_cap: u32::try_from(self.offer_caps[i]).unwrap_or(u32::MAX),
                offers_displaced: self.offers_displaced[i],
                offers_reclaimed: self.offers_reclaimed[i],
            })
            .collect()
    }
}

fn nonzero(ip: Ipv4Addr) -> Option<Ipv4Addr> {
    (ip != Ipv4Addr::UNSPECIFIED).then_some(ip)
}

#[cfg(test)]
mod tests;
