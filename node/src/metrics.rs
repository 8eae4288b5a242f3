//! Counters and the commit latency histogram of one node, rendered as Prometheus text. Plain atomics:
//! the actors bump them on the packet path without locks, the admin API reads them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::engine::{PoolUsage, Silence};
use crate::wire::{ClientMessageType, DropReason, ReplyType};

const MESSAGE_TYPES: [(ClientMessageType, &str); 6] = [
    (ClientMessageType::Discover, "discover"),
    (ClientMessageType::Request, "request"),
    (ClientMessageType::Decline, "decline"),
    (ClientMessageType::Release, "release"),
    (ClientMessageType::Inform, "inform"),
    (ClientMessageType::Bootp, "bootp"),
];
const REPLY_TYPES: [(ReplyType, &str); 4] =
    [(ReplyType::Offer, "offer"), (ReplyType::Ack, "ack"), (ReplyType::Nak, "nak"), (ReplyType::Bootp, "bootreply")];
const SILENCES: [Silence; 16] = [
    Silence::OtherServerChosen,
    Silence::UnknownClient,
    Silence::NotOurs,
    Silence::NotLeader,
    Silence::NoQuorum,
    Silence::PoolExhausted,
    Silence::NothingToDo,
    Silence::BootpNotServed,
    Silence::Replaying,
    Silence::RateLimitedMac,
    Silence::RateLimitedRelay,
    Silence::RateLimitedCircuit,
    Silence::DeclineNotInPool,
    Silence::DeclineNotHeld,
    Silence::DeclineOfferWithdrawn,
    Silence::DeclineRateLimited,
];
/// Upper bounds of the commit latency buckets, in microseconds.
const LATENCY_BUCKETS_US: [u64; 12] =
    [250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 250_000, 500_000, 1_000_000];

pub fn message_type_label(t: ClientMessageType) -> &'static str {
    MESSAGE_TYPES.iter().find(|(m, _)| *m == t).map_or("unknown", |(_, l)| l)
}

pub fn reply_type_label(t: ReplyType) -> &'static str {
    REPLY_TYPES.iter().find(|(m, _)| *m == t).map_or("unknown", |(_, l)| l)
}

/// A counter per option code (arrays this long have no derived `Default`).
#[derive(Debug)]
struct PerCode([AtomicU64; 256]);

impl Default for PerCode {
    fn default() -> Self {
        PerCode(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    datagrams_received: AtomicU64,
    /// Reads of the DHCP sockets that found datagrams: one wake-up of the DHCP thread each.
    socket_reads: AtomicU64,
    received: [AtomicU64; MESSAGE_TYPES.len()],
    sent: [AtomicU64; REPLY_TYPES.len()],
    send_errors: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
    silences: [AtomicU64; SILENCES.len()],
    /// Options left out of replies that they did not fit, by option code.
    options_dropped: PerCode,
    proposals: AtomicU64,
    proposals_expired: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_US.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Metrics {
    pub fn datagram(&self) {
        self.datagrams_received.fetch_add(1, Relaxed);
    }

    pub fn socket_read(&self) {
        self.socket_reads.fetch_add(1, Relaxed);
    }

    pub fn received(&self, t: ClientMessageType) {
        if let Some(i) = MESSAGE_TYPES.iter().position(|(m, _)| *m == t) {
            self.received[i].fetch_add(1, Relaxed);
        }
    }

    pub fn sent(&self, t: ReplyType) {
        if let Some(i) = REPLY_TYPES.iter().position(|(m, _)| *m == t) {
            self.sent[i].fetch_add(1, Relaxed);
        }
    }

    pub fn send_error(&self) {
        self.send_errors.fetch_add(1, Relaxed);
    }

    pub fn dropped(&self, reason: DropReason) {
        self.drops[reason.index()].fetch_add(1, Relaxed);
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()].load(Relaxed)
    }

    pub fn silent(&self, s: Silence) {
        if let Some(i) = SILENCES.iter().position(|x| *x == s) {
            self.silences[i].fetch_add(1, Relaxed);
        }
    }

    /// An option that did not fit a reply (the reply went out without it).
    pub fn option_dropped(&self, code: u8) {
        self.options_dropped.0[usize::from(code)].fetch_add(1, Relaxed);
    }

    pub fn proposed(&self, n: usize) {
        self.proposals.fetch_add(n as u64, Relaxed);
    }

    pub fn proposals_expired(&self, n: usize) {
        self.proposals_expired.fetch_add(n as u64, Relaxed);
    }

    pub fn commit_latency_us(&self, us: u64) {
        if let Some(i) = LATENCY_BUCKETS_US.iter().position(|b| us <= *b) {
            self.latency_buckets[i].fetch_add(1, Relaxed);
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(us, Relaxed);
    }

    /// Prometheus text exposition format (version 0.0.4). `applied`: commands this node applied, by
    /// command and outcome (`Engine::applied_outcomes`); `extra`: gauges (name, help, value).
    pub fn render(
        &self,
        pools: &[PoolUsage<'_>],
        applied: &[(&str, &str, u64)],
        extra: &[(&str, &str, u64)],
    ) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(out, "# HELP leasehold_datagrams_received_total UDP datagrams read from the DHCP socket.");
        let _ = writeln!(out, "# TYPE leasehold_datagrams_received_total counter");
        let _ = writeln!(out, "leasehold_datagrams_received_total {}", self.datagrams_received.load(Relaxed));
        let _ = writeln!(
            out,
            "# HELP leasehold_socket_reads_total Reads of the DHCP sockets that found datagrams, one wake-up each \
             (under load fewer than the datagrams: limits.receive_window_us)."
        );
        let _ = writeln!(out, "# TYPE leasehold_socket_reads_total counter");
        let _ = writeln!(out, "leasehold_socket_reads_total {}", self.socket_reads.load(Relaxed));
        let _ = writeln!(out, "# HELP leasehold_packets_received_total Valid DHCP requests by message type.");
        let _ = writeln!(out, "# TYPE leasehold_packets_received_total counter");
        for (i, (_, label)) in MESSAGE_TYPES.iter().enumerate() {
            let _ = writeln!(
                out,
                "leasehold_packets_received_total{{type=\"{label}\"}} {}",
                self.received[i].load(Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP leasehold_packets_sent_total DHCP replies sent by message type.");
        let _ = writeln!(out, "# TYPE leasehold_packets_sent_total counter");
        for (i, (_, label)) in REPLY_TYPES.iter().enumerate() {
            let _ = writeln!(out, "leasehold_packets_sent_total{{type=\"{label}\"}} {}", self.sent[i].load(Relaxed));
        }
        let _ = writeln!(out, "# HELP leasehold_send_errors_total Replies the socket could not send.");
        let _ = writeln!(out, "# TYPE leasehold_send_errors_total counter");
        let _ = writeln!(out, "leasehold_send_errors_total {}", self.send_errors.load(Relaxed));
        let _ = writeln!(out, "# HELP leasehold_drops_total Datagrams dropped, by reason.");
        let _ = writeln!(out, "# TYPE leasehold_drops_total counter");
        for reason in DropReason::ALL {
            let _ = writeln!(out, "leasehold_drops_total{{reason=\"{}\"}} {}", reason.label(), self.drops(reason));
        }
        let _ =
            writeln!(out, "# HELP leasehold_silent_total Requests deliberately left unanswered (RFC 2131), by reason.");
        let _ = writeln!(out, "# TYPE leasehold_silent_total counter");
        for (i, s) in SILENCES.iter().enumerate() {
            let _ =
                writeln!(out, "leasehold_silent_total{{reason=\"{}\"}} {}", s.label(), self.silences[i].load(Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP leasehold_reply_options_dropped_total Options left out of replies they did not fit, by code."
        );
        let _ = writeln!(out, "# TYPE leasehold_reply_options_dropped_total counter");
        for (code, count) in self.options_dropped.0.iter().enumerate() {
            let count = count.load(Relaxed);
            if count > 0 {
                let _ = writeln!(out, "leasehold_reply_options_dropped_total{{code=\"{code}\"}} {count}");
            }
        }
        let _ = writeln!(out, "# HELP leasehold_proposals_total Lease commands proposed to the Raft log.");
        let _ = writeln!(out, "# TYPE leasehold_proposals_total counter");
        let _ = writeln!(out, "leasehold_proposals_total {}", self.proposals.load(Relaxed));
        let _ = writeln!(
            out,
            "# HELP leasehold_proposals_expired_total Proposals forgotten uncommitted after proposal_timeout_ms."
        );
        let _ = writeln!(out, "# TYPE leasehold_proposals_expired_total counter");
        let _ = writeln!(out, "leasehold_proposals_expired_total {}", self.proposals_expired.load(Relaxed));
        let _ = writeln!(
            out,
            "# HELP leasehold_apply_outcomes_total Committed lease commands applied to this node's table, by \
             command and outcome (every node applies the same log, so every node counts the same); \
             outcome=\"stale\": refused, decided before the record changed."
        );
        let _ = writeln!(out, "# TYPE leasehold_apply_outcomes_total counter");
        for (command, outcome, count) in applied {
            let _ =
                writeln!(out, "leasehold_apply_outcomes_total{{command=\"{command}\",outcome=\"{outcome}\"}} {count}");
        }
        let _ = writeln!(out, "# HELP leasehold_pool_addresses Addresses per pool by state.");
        let _ = writeln!(out, "# TYPE leasehold_pool_addresses gauge");
        for pool in pools {
            let _ = writeln!(out, "leasehold_pool_addresses{{pool=\"{}\",state=\"bound\"}} {}", pool.name, pool.bound);
            let _ = writeln!(
                out,
                "leasehold_pool_addresses{{pool=\"{}\",state=\"free\"}} {}",
                pool.name,
                pool.size.saturating_sub(pool.bound)
            );
        }
        let _ = writeln!(
            out,
            "# HELP leasehold_pool_new_client_offers Offers to new clients a pool holds now (counted against its cap)."
        );
        let _ = writeln!(out, "# TYPE leasehold_pool_new_client_offers gauge");
        for pool in pools {
            let _ =
                writeln!(out, "leasehold_pool_new_client_offers{{pool=\"{}\"}} {}", pool.name, pool.new_client_offers);
        }
        let _ = writeln!(
            out,
            "# HELP leasehold_pool_new_client_offer_cap New clients' offers a pool holds at most (max_offers_per_pool_percent)."
        );
        let _ = writeln!(out, "# TYPE leasehold_pool_new_client_offer_cap gauge");
        for pool in pools {
            let _ = writeln!(
                out,
                "leasehold_pool_new_client_offer_cap{{pool=\"{}\"}} {}",
                pool.name, pool.new_client_offer_cap
            );
        }
        let _ = writeln!(
            out,
            "# HELP leasehold_offers_displaced_total New clients' offers displaced by newer ones at their pool's cap."
        );
        let _ = writeln!(out, "# TYPE leasehold_offers_displaced_total counter");
        for pool in pools {
            let _ =
                writeln!(out, "leasehold_offers_displaced_total{{pool=\"{}\"}} {}", pool.name, pool.offers_displaced);
        }
        let _ = writeln!(
            out,
            "# HELP leasehold_offers_reclaimed_total Displaced offers their client still bound by REQUESTing in time."
        );
        let _ = writeln!(out, "# TYPE leasehold_offers_reclaimed_total counter");
        for pool in pools {
            let _ =
                writeln!(out, "leasehold_offers_reclaimed_total{{pool=\"{}\"}} {}", pool.name, pool.offers_reclaimed);
        }
        let _ = writeln!(
            out,
            "# HELP leasehold_commit_latency_seconds From proposing a lease command to applying it committed."
        );
        let _ = writeln!(out, "# TYPE leasehold_commit_latency_seconds histogram");
        let mut cumulative = 0;
        for (i, bound_us) in LATENCY_BUCKETS_US.iter().enumerate() {
            cumulative += self.latency_buckets[i].load(Relaxed);
            let _ = writeln!(
                out,
                "leasehold_commit_latency_seconds_bucket{{le=\"{}\"}} {cumulative}",
                *bound_us as f64 / 1e6
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(out, "leasehold_commit_latency_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ =
            writeln!(out, "leasehold_commit_latency_seconds_sum {}", self.latency_sum_us.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "leasehold_commit_latency_seconds_count {count}");
        let sync = &leasehold_cluster::storage::LOG_SYNC_LATENCY;
        let _ = writeln!(out, "# HELP leasehold_log_fsync_seconds Raft log writes made durable (write and fsync).");
        let _ = writeln!(out, "# TYPE leasehold_log_fsync_seconds histogram");
        let mut cumulative = 0;
        for (i, bound_us) in leasehold_cluster::storage::SYNC_LATENCY_BUCKETS_US.iter().enumerate() {
            cumulative += sync.buckets[i].load(Relaxed);
            let le = *bound_us as f64 / 1e6;
            let _ = writeln!(out, "leasehold_log_fsync_seconds_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let count = sync.count.load(Relaxed);
        let _ = writeln!(out, "leasehold_log_fsync_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "leasehold_log_fsync_seconds_sum {}", sync.sum_us.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "leasehold_log_fsync_seconds_count {count}");
        for (name, help, value) in extra {
            let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn apply_outcomes_render_as_one_counter_labelled_by_command_and_outcome() {
        let text = Metrics::default().render(&[], &[("bind", "bound", 5), ("release", "stale", 2)], &[]);
        assert!(text.contains("# TYPE leasehold_apply_outcomes_total counter\n"), "{text}");
        assert!(text.contains("leasehold_apply_outcomes_total{command=\"bind\",outcome=\"bound\"} 5\n"), "{text}");
        assert!(text.contains("leasehold_apply_outcomes_total{command=\"release\",outcome=\"stale\"} 2\n"), "{text}");
    }
}
