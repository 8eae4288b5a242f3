//! The checker's own record of what the clients were told, independent of the servers' tables: every
//! DHCPACK a chaos client accepted (address, MAC, the ACKing server and the expiry it implies), every
//! RELEASE it sent and every NAK it got. It checks, from the clients' side alone, that no address was
//! ever ACKed to a client while another client held an unexpired, unreleased ACK for it, and it
//! measures the longest stretch without any ACK.
//!
//! Two expiries per ACK: the *claim* counts the lease time from the local receive time (how long the
//! client may go on using the address: the strict view, for duplicates); the *promise* counts it from
//! when the client sent the transaction's first REQUEST, as RFC 2131 §4.4.1 tells a client to record it —
//! what the server committed to, for the check of the tables (counting from the receive time would add
//! the commit latency, seconds under loss, to what the server is held to).
//!
//! Shared between the load thread (which records) and the driver (which pauses, snapshots, reports),
//! behind one mutex.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use leasehold_tests::{format_mac, Mac};

use super::{unix_ms, Violation, ViolationKind};

/// What a client did to get or keep an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exchange {
    /// DISCOVER → OFFER → REQUEST (SELECTING) → ACK, broadcast.
    Dora,
    /// REQUEST (RENEWING) unicast to the server that ACKed last.
    Renew,
    /// REQUEST (REBINDING) broadcast, after a renewal went unanswered.
    Rebind,
}

impl Exchange {
    pub const ALL: [Exchange; 3] = [Exchange::Dora, Exchange::Renew, Exchange::Rebind];

    pub fn label(self) -> &'static str {
        match self {
            Exchange::Dora => "DORA (broadcast)",
            Exchange::Renew => "renew (unicast)",
            Exchange::Rebind => "rebind (broadcast)",
        }
    }
}

/// The current holding of one client (MAC), as its ACKs describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promise {
    pub mac: Mac,
    pub ip: Ipv4Addr,
    /// Option 54 of the latest ACK.
    pub server_id: Ipv4Addr,
    /// How long the client may use the address (Unix ms): the latest receive time + lease time of any
    /// ACK of this holding.
    pub claim_until_unix_ms: u64,
    /// What the latest ACK promised (Unix ms): first send of its REQUEST + its lease time.
    pub promised_until_unix_ms: u64,
    /// The `--clock-offset-ms` of the node that sent the latest ACK, when it sent it (its clock computed
    /// the lease time).
    pub acked_by_offset_ms: i64,
    pub first_ack_unix_ms: u64,
    pub last_ack_unix_ms: u64,
    pub acks: u32,
    /// The client sent a RELEASE (it no longer claims the address).
    pub released: bool,
    /// The client gave the address up after a NAK.
    pub abandoned: bool,
}

impl Promise {
    /// Does the client still claim the address at `now_unix_ms`?
    pub fn live_at(&self, now_unix_ms: u64) -> bool {
        !self.released && !self.abandoned && self.claim_until_unix_ms > now_unix_ms
    }
}

/// Counters for the report.
#[derive(Debug, Clone, Default)]
pub struct LoadStats {
    pub attempted: BTreeMap<Exchange, u64>,
    pub completed: BTreeMap<Exchange, u64>,
    pub releases: u64,
    pub naks: u64,
    /// NAKs to a RENEWING/REBINDING client whose ACKed lease had not expired.
    pub naks_of_live_leases: u64,
    /// Leases that ran out while the client was still trying to extend them.
    pub expired_while_extending: u64,
    /// Replies for transactions the client no longer waits for (late, duplicated, or another client's).
    pub other_replies: u64,
    /// The longest a single DORA took, from its first DISCOVER to its ACK, by which MAC, ending when.
    pub longest_dora: Duration,
    pub longest_dora_of: Option<(Mac, Instant)>,
    /// Client MACs used.
    pub macs: u64,
}

/// The longest interval between two ACKs, not counting time when the load was paused (checkpoints).
#[derive(Debug, Clone, Default)]
pub struct GapTracker {
    last: Option<Instant>,
    pub longest: Duration,
    pub longest_window: Option<(Instant, Instant)>,
}

impl GapTracker {
    fn close(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let gap = now.saturating_duration_since(last);
            if gap > self.longest {
                self.longest = gap;
                self.longest_window = Some((last, now));
            }
        }
    }

    pub fn ack(&mut self, now: Instant) {
        if self.last.is_some() {
            self.close(now);
            self.last = Some(now);
        }
    }

    /// The load stops asking: the stretch so far counts, then nothing until `resume`.
    pub fn pause(&mut self, now: Instant) {
        self.close(now);
        self.last = None;
    }

    pub fn resume(&mut self, now: Instant) {
        self.last = Some(now);
    }
}

#[derive(Debug, Default)]
pub struct Ledger {
    /// The current holding of each MAC that ever got an ACK.
    pub holdings: BTreeMap<Mac, Promise>,
    /// The MAC most recently ACKed each address.
    holder_of: BTreeMap<Ipv4Addr, Mac>,
    pub stats: LoadStats,
    /// Violations seen from the clients' side.
    pub violations: Vec<Violation>,
    /// Server identifiers of nodes cut off from the majority right now: their ACKs (renewals confirmed
    /// for the remaining time) do not count as service from the majority side.
    pub isolated: BTreeSet<Ipv4Addr>,
    /// Gaps between ACKs from the majority side (every DORA and rebind ACK, renewals ACKed by a node
    /// that is not isolated).
    pub majority_gap: GapTracker,
    /// Gaps between any two ACKs.
    pub any_gap: GapTracker,
    pub paused: bool,
    /// When the run began, for the times in violation reports.
    pub started: Option<Instant>,
    /// The current `--clock-offset-ms` of each node, by server identifier (set by the driver).
    pub offsets: BTreeMap<Ipv4Addr, i64>,
}

/// One ACK a client accepted.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    pub mac: Mac,
    pub ip: Ipv4Addr,
    pub server_id: Ipv4Addr,
    /// Option 51.
    pub lease_secs: u32,
    pub kind: Exchange,
    /// When the client first sent the REQUEST this ACK answers (Unix ms).
    pub requested_unix_ms: u64,
}

impl Ledger {
    pub fn new(started: Instant) -> Ledger {
        Ledger { started: Some(started), ..Ledger::default() }
    }

    fn at(&self, now: Instant) -> f64 {
        self.started.map_or(0.0, |s| now.saturating_duration_since(s).as_secs_f64())
    }

    /// Keeps a violation for the report and says it at once.
    fn record(&mut self, violation: Violation) {
        eprintln!(
            "chaos: [{:7.1} s] VIOLATION {} (clients' view): {}",
            violation.at_secs,
            violation.kind.label(),
            violation.detail
        );
        self.violations.push(violation);
    }

    pub fn attempt(&mut self, kind: Exchange) {
        *self.stats.attempted.entry(kind).or_default() += 1;
    }

    /// A client accepted an ACK (for its current transaction).
    pub fn ack(&mut self, ack: Ack, now: Instant) {
        let Ack { mac, ip, server_id, lease_secs, kind, requested_unix_ms } = ack;
        let now_ms = unix_ms();
        *self.stats.completed.entry(kind).or_default() += 1;
        let claim = now_ms + u64::from(lease_secs) * 1000;
        let promised = requested_unix_ms.min(now_ms) + u64::from(lease_secs) * 1000;
        let offset = self.offsets.get(&server_id).copied().unwrap_or(0);
        // Client-side duplicate: another client still holds an unexpired, unreleased ACK for `ip`. (One
        // second of slack for the rounding of the lease time to whole seconds.)
        if let Some(other) = self.holder_of.get(&ip).copied().filter(|other| *other != mac) {
            if let Some(p) = self.holdings.get(&other).filter(|p| p.ip == ip && p.live_at(now_ms + 1000)) {
                let detail = format!(
                    "{ip} ACKed to {} by {server_id} ({kind:?}) while {} held an ACK for it from {} until {} ms from now \
                     (first ACKed {} ms ago)",
                    format_mac(mac),
                    format_mac(other),
                    p.server_id,
                    p.claim_until_unix_ms - now_ms,
                    now_ms.saturating_sub(p.first_ack_unix_ms)
                );
                self.record(Violation::new(ViolationKind::Duplicate, self.at(now), detail));
            }
        }
        match self.holdings.get_mut(&mac) {
            Some(p) if p.ip == ip && !p.released && !p.abandoned => {
                p.claim_until_unix_ms = p.claim_until_unix_ms.max(claim);
                p.promised_until_unix_ms = promised;
                p.acked_by_offset_ms = offset;
                p.server_id = server_id;
                p.last_ack_unix_ms = now_ms;
                p.acks += 1;
            }
            _ => {
                let promise = Promise {
                    mac,
                    ip,
                    server_id,
                    claim_until_unix_ms: claim,
                    promised_until_unix_ms: promised,
                    acked_by_offset_ms: offset,
                    first_ack_unix_ms: now_ms,
                    last_ack_unix_ms: now_ms,
                    acks: 1,
                    released: false,
                    abandoned: false,
                };
                self.holdings.insert(mac, promise);
            }
        }
        self.holder_of.insert(ip, mac);
        if !self.paused {
            self.any_gap.ack(now);
            let minority = kind == Exchange::Renew && self.isolated.contains(&server_id);
            if !minority {
                self.majority_gap.ack(now);
            }
        }
    }

    pub fn release(&mut self, mac: Mac) {
        self.stats.releases += 1;
        if let Some(p) = self.holdings.get_mut(&mac) {
            p.released = true;
        }
    }

    /// A NAK to a client extending `ip`: if its ACKed lease had not run out, the servers took back an
    /// address they had promised (a lost lease from the client's side).
    pub fn nak(&mut self, mac: Mac, ip: Option<Ipv4Addr>, server_id: Option<Ipv4Addr>, message: &str, now: Instant) {
        self.stats.naks += 1;
        let Some(ip) = ip else { return };
        let now_ms = unix_ms();
        if let Some(p) = self.holdings.get_mut(&mac).filter(|p| p.ip == ip && p.live_at(now_ms)) {
            p.abandoned = true;
            let left = p.claim_until_unix_ms - now_ms;
            self.stats.naks_of_live_leases += 1;
            let detail = format!(
                "{} extending {ip} got a NAK from {server_id:?} ({message:?}) with {left} ms left on its ACKed lease \
                 (last ACKed by {})",
                format_mac(mac),
                p.server_id
            );
            let at = self.at(now);
            self.record(Violation::new(ViolationKind::NakOfLiveLease, at, detail));
        }
    }

    pub fn expired(&mut self) {
        self.stats.expired_while_extending += 1;
    }

    pub fn pause(&mut self, now: Instant) {
        self.paused = true;
        self.majority_gap.pause(now);
        self.any_gap.pause(now);
    }

    pub fn resume(&mut self, now: Instant) {
        self.paused = false;
        self.majority_gap.resume(now);
        self.any_gap.resume(now);
    }

    /// Holdings the clients still claim at `now_unix_ms` (ACKed, unexpired, not released or NAKed).
    pub fn live_promises(&self, now_unix_ms: u64) -> Vec<Promise> {
        self.holdings.values().filter(|p| p.live_at(now_unix_ms)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Mac = [2, 0, 0, 0, 0, 1];
    const B: Mac = [2, 0, 0, 0, 0, 2];
    const IP: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 1);
    const S1: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

    fn ack(mac: Mac, ip: Ipv4Addr, lease_secs: u32, kind: Exchange) -> Ack {
        Ack { mac, ip, server_id: S1, lease_secs, kind, requested_unix_ms: unix_ms() }
    }

    #[test]
    fn an_address_acked_to_a_second_client_while_the_first_holds_it_is_a_duplicate() {
        let now = Instant::now();
        let mut ledger = Ledger::new(now);
        ledger.ack(ack(A, IP, 60, Exchange::Dora), now);
        ledger.ack(ack(A, IP, 60, Exchange::Renew), now);
        assert!(ledger.violations.is_empty());
        ledger.ack(ack(B, IP, 60, Exchange::Dora), now);
        assert_eq!(ledger.violations.len(), 1);
        assert_eq!(ledger.violations[0].kind, ViolationKind::Duplicate);
    }

    #[test]
    fn a_released_or_expired_address_may_go_to_another_client() {
        let now = Instant::now();
        let mut ledger = Ledger::new(now);
        ledger.ack(ack(A, IP, 60, Exchange::Dora), now);
        ledger.release(A);
        ledger.ack(ack(B, IP, 60, Exchange::Dora), now);
        // A lease time of 0: expired at once (within the second of rounding slack).
        ledger.ack(ack(A, Ipv4Addr::new(10, 77, 1, 2), 0, Exchange::Dora), now);
        ledger.ack(ack(B, Ipv4Addr::new(10, 77, 1, 2), 60, Exchange::Dora), now);
        assert!(ledger.violations.is_empty(), "{:?}", ledger.violations);
        assert_eq!(ledger.live_promises(unix_ms()).len(), 1);
    }

    #[test]
    fn a_nak_of_a_live_lease_is_reported_and_the_holding_abandoned() {
        let now = Instant::now();
        let mut ledger = Ledger::new(now);
        ledger.ack(ack(A, IP, 60, Exchange::Dora), now);
        ledger.nak(A, Some(IP), Some(S1), "address in use", now);
        assert_eq!(ledger.stats.naks_of_live_leases, 1);
        assert_eq!(ledger.violations[0].kind, ViolationKind::NakOfLiveLease);
        assert!(ledger.live_promises(unix_ms()).is_empty());
    }

    #[test]
    fn gaps_do_not_count_paused_time() {
        let t0 = Instant::now();
        let mut gaps = GapTracker::default();
        gaps.resume(t0);
        gaps.ack(t0 + Duration::from_secs(1));
        gaps.ack(t0 + Duration::from_secs(3));
        gaps.pause(t0 + Duration::from_millis(3500));
        gaps.ack(t0 + Duration::from_secs(10));
        gaps.resume(t0 + Duration::from_secs(20));
        gaps.ack(t0 + Duration::from_millis(20_500));
        assert_eq!(gaps.longest, Duration::from_secs(2));
        assert_eq!(gaps.longest_window, Some((t0 + Duration::from_secs(1), t0 + Duration::from_secs(3))));
    }
}
