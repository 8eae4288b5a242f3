//! Directed reproductions of what chaos runs found, step by step on a fresh 3-node cluster, so that a
//! finding can be shown without waiting for a seed to hit it again (`chaos --scenario NAME`):
//!
//! - `stale-release`: a client whose last ACK came from follower F sends its RELEASE to F just after F
//!   is cut off from the others; F forwards the proposal to the leader over its (stalled) TCP link. The
//!   client then gets its address again by DORA from the leader. After healing, the delayed RELEASE
//!   used to be committed *after* the newer binding and release it: the client held an unexpired ACK
//!   for an address the cluster called released, and a second client that asked for it got it.
//! - `stale-release-skew`: the same with the follower's clock 4.5 s ahead of the leader's (within the
//!   skew the expiry grace is there to cover): a RELEASE stamped by a clock ahead looked newer than the
//!   binding the leader made after it.
//! - `stale-renew`: the same with a RENEW (REQUEST, RENEWING) to the cut-off follower, then a REBIND
//!   that the leader ACKs: the delayed renewal, committed later, used to move the lease's expiry back.
//! - `wipe-without-join`: a follower's data directory is wiped and it is restarted with the same
//!   `--peer` list and no `--join` (the operator's obvious move). It used to bootstrap a fresh log that
//!   the leader's first heartbeat (commit index beyond its empty log) panicked inside raft-rs, leaving
//!   a process that never replicated again (seed 0x4 with `--wipe plain`); it must catch up instead.
//!
//! A scenario passes on evidence, never because a problem "did not show". The held-up command is seen
//! arriving at the cut-off follower and proposed there (its `/metrics`: the message counted by type,
//! `leasehold_proposals_total` one up). After healing, every node's
//! `leasehold_apply_outcomes_total{command=…,outcome="stale"}` must rise: the command was committed,
//! so it reached the leader, and every replica refused it at apply because it was decided before the
//! client's record changed. Only then are the tables and the client's lease checked, and another
//! client asks for the address. Every wait on an event polls with a deadline (`wait_for`); the one fixed
//! wait is time that must pass (`stale-renew`: two expiries whole seconds apart).
//!
//! Each returns an `Ending`: the transcript and, when it did not pass, why.

use std::net::Ipv4Addr;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use leasehold_tests::{
    format_mac, test_mac, ClientConfig, ClientMessage, ClientOptions, Lease as ClientLease, MessageType, RequestState,
    RetryPolicy, Target, TestClient,
};

use super::node::{node_ip, Cluster, Health, Pool, NODES};
use super::{unix_ms, wait_for, CONVERGENCE_LIMIT, RECOVERY_LIMIT};
use crate::netns_support::{in_ns, metric, require_root, scratch_dir, Lease, Segment};

pub const NAMES: [&str; 4] = ["stale-release", "stale-release-skew", "stale-renew", "wipe-without-join"];

/// The counter of applied commands by command and outcome (node/src/metrics.rs).
pub const APPLY_OUTCOMES: &str = "leasehold_apply_outcomes_total";
/// How long the cut-off follower may take to count the client's message and propose it.
const ARRIVAL_LIMIT: Duration = Duration::from_secs(10);
/// How long a held-up proposal may take, after healing, to reach the leader and be applied on every
/// node: TCP retransmits on the peer link that was cut back off exponentially, then a commit.
const DELIVERY_LIMIT: Duration = Duration::from_secs(30);
/// How long a restarted node with a wiped data directory may take to catch up (or to give up).
const CATCH_UP_LIMIT: Duration = Duration::from_secs(30);

/// How a scenario ended: what happened, step by step, and why it failed (`None`: it passed).
#[derive(Debug, Clone)]
pub struct Ending {
    pub transcript: Vec<String>,
    pub failure: Option<String>,
}

impl Ending {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// Runs the scenario `name` (one of `NAMES`).
pub fn by_name(name: &str) -> Option<Ending> {
    match name {
        "stale-release" => Some(stale_release()),
        "stale-release-skew" => Some(stale_release_skew()),
        "stale-renew" => Some(stale_renew()),
        "wipe-without-join" => Some(wipe_without_join()),
        _ => None,
    }
}

struct Bed {
    cluster: Cluster,
    client: TestClient,
    transcript: Vec<String>,
    started: Instant,
    _segment: Segment,
}

/// What a node has counted of the client's messages of one type, and of its own proposals.
#[derive(Debug, Clone, Copy)]
struct Arrivals {
    received: u64,
    proposed: u64,
}

impl Bed {
    fn say(&mut self, text: String) {
        let line = format!("[{:6.2} s] {text}", self.started.elapsed().as_secs_f64());
        eprintln!("scenario: {line}");
        self.transcript.push(line);
    }

    fn entry(&self, id: u32, ip: Ipv4Addr) -> Result<Option<Lease>, String> {
        Ok(self.cluster.leases(id)?.into_iter().find(|l| l.ip == ip))
    }

    fn show(&mut self, ip: Ipv4Addr, when: &str) {
        for id in 1..=NODES {
            let text = match self.entry(id, ip) {
                Ok(Some(l)) => format!("{} {} expires_at {}", l.state, l.mac, l.expires_at),
                Ok(None) => "no record".into(),
                Err(e) => format!("unreadable: {e}"),
            };
            self.say(format!("{when}: node {id} has {ip}: {text}"));
        }
    }

    fn iptables_partition(&self, target: u32, action: &str) -> Result<(), String> {
        for other in (1..=NODES).filter(|&id| id != target) {
            for (ns_id, peer) in [(target, other), (other, target)] {
                let peer = node_ip(peer).to_string();
                for rule in [["INPUT", "-s", &peer, "-j", "DROP"], ["OUTPUT", "-d", &peer, "-j", "DROP"]] {
                    let mut cmd: Command = in_ns(&self.cluster.node(ns_id).ns, "iptables");
                    let out = cmd.args(["-w", "5", action]).args(rule).output().map_err(|e| e.to_string())?;
                    if !out.status.success() {
                        return Err(format!("iptables {action} {rule:?}: {}", String::from_utf8_lossy(&out.stderr)));
                    }
                }
            }
        }
        Ok(())
    }

    /// Node `id`'s counts of the client's `message`s (`leasehold_packets_received_total`) and of its
    /// own proposals (`leasehold_proposals_total`).
    fn arrivals(&self, id: u32, message: &str) -> Result<Arrivals, String> {
        let text = self.cluster.metrics(id)?;
        let count = |name: &str, labels: &str| metric(&text, name, labels).map_or(0, |value| value as u64);
        Ok(Arrivals {
            received: count("leasehold_packets_received_total", &format!("type=\"{message}\"")),
            proposed: count("leasehold_proposals_total", ""),
        })
    }

    /// Waits until node `id` has counted one more `message` and one more proposal than `before`: the
    /// message reached it, and it decided to change the table and proposed that through Raft.
    fn await_proposed(&mut self, id: u32, message: &str, before: Arrivals) -> Result<(), String> {
        let seen = wait_for(ARRIVAL_LIMIT, || {
            let now = self.arrivals(id, message)?;
            let text = format!(
                "{message}s received {} → {}, proposals {} → {}",
                before.received, now.received, before.proposed, now.proposed
            );
            if now.received > before.received && now.proposed > before.proposed {
                Ok(text)
            } else {
                Err(text)
            }
        });
        let (text, took) = seen.map_err(|e| {
            let silences = self.cluster.metrics(id).unwrap_or_default();
            let silences: Vec<&str> =
                silences.lines().filter(|l| l.starts_with("leasehold_silent_total") && !l.ends_with(" 0")).collect();
            format!("node {id} did not propose the {message}, so nothing could be held up: {e}; silences {silences:?}")
        })?;
        self.say(format!(
            "node {id} counted the {message} and proposed it after {:.2} s ({text}); the proposal waits on the \
             cut link to the leader",
            took.as_secs_f64()
        ));
        Ok(())
    }

    /// Every node's count of `command`s refused at apply as stale.
    fn stale_refusals(&self, command: &str) -> Result<Vec<u64>, String> {
        let labels = format!("command=\"{command}\",outcome=\"stale\"");
        (1..=NODES).map(|id| self.cluster.counter(id, APPLY_OUTCOMES, &labels)).collect()
    }

    /// After healing: waits until every node's count of stale `command`s is above `before`. Only a
    /// committed entry is applied, so the held-up command reached the leader; every replica applies
    /// the same log, so each must have refused it.
    fn await_refused_everywhere(&mut self, command: &str, before: &[u64]) -> Result<(), String> {
        let seen = wait_for(DELIVERY_LIMIT, || {
            let now = self.stale_refusals(command)?;
            if now.iter().zip(before).all(|(now, before)| now > before) {
                Ok(now)
            } else {
                Err(format!("by node {now:?}"))
            }
        });
        let series = format!("{APPLY_OUTCOMES}{{command=\"{command}\",outcome=\"stale\"}}");
        match seen {
            Ok((now, took)) => {
                self.say(format!(
                    "the held-up {command} reached the leader and every node refused it at apply after {:.2} s: \
                     {series} by node {before:?} → {now:?}",
                    took.as_secs_f64()
                ));
                Ok(())
            }
            Err(e) => Err(format!(
                "the held-up {command} was not refused at apply on every node ({series} by node before healing \
                 {before:?}, then {e}): it never reached the leader, or it was applied"
            )),
        }
    }

    /// Waits until nodes `ids` have applied the same index and none has a proposal pending: nothing in
    /// flight on that side (`GET /v1/status`).
    fn await_quiet(&mut self, ids: &[u32]) -> Result<(), String> {
        let quiet = wait_for(CONVERGENCE_LIMIT, || {
            let mut seen = Vec::new();
            for &id in ids {
                let status = self.cluster.status(id)?;
                seen.push((id, status["applied_index"].as_u64(), status["proposals_pending"].as_u64()));
            }
            let applied = seen[0].1;
            if applied.is_some() && seen.iter().all(|&(_, a, pending)| a == applied && pending == Some(0)) {
                Ok(applied)
            } else {
                Err(format!("(node, applied index, proposals pending): {seen:?}"))
            }
        });
        let (applied, _) = quiet.map_err(|e| format!("nodes {ids:?} did not settle: {e}"))?;
        self.say(format!("nodes {ids:?} settled at applied index {}, no proposal pending", applied.unwrap_or(0)));
        Ok(())
    }

    /// Waits until nodes `ids` all list `ip` bound to `mac` until the same time, at least `at_least_s`
    /// (Unix seconds): that time.
    fn await_bound(
        &mut self,
        ids: &[u32],
        ip: Ipv4Addr,
        mac: &str,
        at_least_s: u64,
        when: &str,
    ) -> Result<u64, String> {
        let seen = wait_for(CONVERGENCE_LIMIT, || {
            let mut views = Vec::new();
            let mut expiries = Vec::new();
            for &id in ids {
                match self.entry(id, ip)? {
                    Some(l) if l.state == "bound" && l.mac.eq_ignore_ascii_case(mac) && l.expires_at >= at_least_s => {
                        expiries.push(l.expires_at);
                    }
                    Some(l) => views.push(format!("node {id}: {} {} expires_at {}", l.state, l.mac, l.expires_at)),
                    None => views.push(format!("node {id}: no record")),
                }
            }
            match expiries.first() {
                Some(&first) if views.is_empty() && expiries.iter().all(|&e| e == first) => Ok(first),
                _ if views.is_empty() => Err(format!("the nodes disagree on the expiry: {expiries:?}")),
                _ => Err(views.join("; ")),
            }
        });
        match seen {
            Ok((expires_at, _)) => {
                self.say(format!(
                    "{when}: nodes {ids:?} list {ip} bound to {mac} until {expires_at} (at least {at_least_s})"
                ));
                Ok(expires_at)
            }
            Err(e) => {
                self.show(ip, when);
                Err(format!("{when}: the tables do not list {ip} bound to {mac} until at least {at_least_s}: {e}"))
            }
        }
    }

    /// RFC 2131 §4.3.1: another client that asks for `ip` (option 50 in its DISCOVER) while `ip` is
    /// bound to `holder` must be offered a different address.
    fn another_client_is_offered_another_address(
        &mut self,
        ip: Ipv4Addr,
        holder: &str,
        index: u32,
    ) -> Result<(), String> {
        let other = test_mac(index);
        let options = ClientOptions::default();
        let xid = self.client.next_xid();
        let discover = ClientMessage::Discover { requested_ip: Some(ip) };
        let deadline = Instant::now() + Duration::from_secs(10);
        let offer = self
            .client
            .exchange(other, xid, &discover, &options, Target::Broadcast, &[MessageType::Offer], &retry(), deadline)
            .map_err(|e| format!("DISCOVER from {}: {e}", format_mac(other)))?;
        self.say(format!(
            "another client {} asks for {ip} (DISCOVER, option 50) and is offered {} by {:?}",
            format_mac(other),
            offer.yiaddr,
            offer.server_id
        ));
        if offer.yiaddr != ip {
            return Ok(());
        }
        // The evidence of what such an offer leads to: the REQUEST for it, and the answer.
        let server_id = offer.server_id.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let request = ClientMessage::Request(RequestState::Selecting { requested_ip: ip, server_id });
        let answer = self
            .client
            .exchange(other, xid, &request, &options, Target::Broadcast, &[MessageType::Ack], &retry(), deadline)
            .map_or_else(|e| e.to_string(), |ack| format!("{:?} for {}", ack.message_type, ack.yiaddr));
        self.say(format!("... its REQUEST for {ip} gets {answer}"));
        Err(format!("{ip} is bound to {holder} and was offered to {}: one address, two clients", format_mac(other)))
    }
}

fn setup(lease_secs: u32) -> Result<Bed, String> {
    require_root();
    let dir = scratch_dir("chaos-scenario").keep();
    let segment = Segment::up(NODES, 1, 16);
    let pool = Pool {
        start: Ipv4Addr::new(10, 77, 1, 0),
        end: Ipv4Addr::new(10, 77, 1, 255),
        mask: Ipv4Addr::new(255, 255, 0, 0),
        lease_secs,
    };
    let mut cluster = Cluster::new(&segment, &dir, pool, "info");
    for id in 1..=NODES {
        cluster.start(id, false);
    }
    let all: Vec<u32> = (1..=NODES).collect();
    cluster.wait_leader(&all, RECOVERY_LIMIT)?;
    let ns = segment.client(1);
    let run = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("ip").arg("-n").arg(&ns).args(args).output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("ip {args:?}: {}", String::from_utf8_lossy(&out.stderr)))
        }
    };
    run(&["addr", "add", "10.77.0.250/16", "dev", "eth0"])?;
    // The ACK to a RENEWING or REBINDING REQUEST goes to ciaddr (RFC 2131 §4.1): the client's
    // namespace takes the pool as local addresses, so its socket on port 68 receives them.
    run(&["route", "add", "local", "10.77.1.0/24", "dev", "eth0"])?;
    let client = TestClient::bind(ClientConfig::in_namespace(&ns, "eth0")).map_err(|e| e.to_string())?;
    eprintln!("scenario: logs in {}", dir.display());
    Ok(Bed { cluster, client, transcript: Vec::new(), started: Instant::now(), _segment: segment })
}

/// Builds the test bed and runs `steps` on it; the cluster and the namespaces go when it returns.
fn run(lease_secs: u32, steps: impl FnOnce(&mut Bed) -> Result<(), String>) -> Ending {
    let mut bed = match setup(lease_secs) {
        Ok(bed) => bed,
        Err(e) => {
            return Ending { transcript: Vec::new(), failure: Some(format!("the test bed did not come up: {e}")) }
        }
    };
    let result = steps(&mut bed);
    if let Err(e) = &result {
        bed.say(format!("FAILED: {e}"));
    }
    Ending { transcript: std::mem::take(&mut bed.transcript), failure: result.err() }
}

fn retry() -> RetryPolicy {
    RetryPolicy::fixed(20, Duration::from_millis(250))
}

fn all_nodes() -> Vec<u32> {
    (1..=NODES).collect()
}

/// Steps shared by the stale scenarios: a lease whose last ACK came from a follower. Returns (lease
/// with server_id = the follower, leader, follower).
/// With `follower_offset_ms`, the follower is first restarted with its clock that far ahead
/// (`--clock-offset-ms`, well inside the 30 s expiry grace that is there to cover clock skew).
fn lease_from_a_follower(
    bed: &mut Bed,
    mac_index: u32,
    follower_offset_ms: i64,
) -> Result<(ClientLease, u32, u32), String> {
    let all = all_nodes();
    let (leader, _) = bed.cluster.wait_leader(&all, RECOVERY_LIMIT)?;
    let follower = (1..=NODES).find(|&id| id != leader).expect("a follower");
    if follower_offset_ms != 0 {
        bed.cluster.terminate(follower)?;
        bed.cluster.set_offset(follower, follower_offset_ms);
        bed.cluster.start(follower, false);
        let (now_leader, _) = bed.cluster.wait_leader(&all, RECOVERY_LIMIT)?;
        if now_leader != leader {
            return Err(format!(
                "leadership moved from node {leader} to node {now_leader} during the restart; run again"
            ));
        }
        bed.say(format!("follower node {follower} restarted with --clock-offset-ms {follower_offset_ms}"));
    }
    let mut lease = bed
        .client
        .dora_with(test_mac(mac_index), &ClientOptions::default(), &retry(), Duration::from_secs(10))
        .map_err(|e| format!("DORA: {e}"))?;
    bed.say(format!("{} got {} from the leader node {leader} (DORA)", format_mac(lease.mac), lease.address));
    // A RENEW unicast to the follower: it proposes through the leader and ACKs; it is the client's server now.
    lease.server_id = node_ip(follower);
    let ack = bed
        .client
        .extend(&lease, false, &ClientOptions::default(), &retry(), Duration::from_secs(10))
        .map_err(|e| format!("RENEW to the follower: {e}"))?;
    bed.say(format!(
        "REQUEST (RENEWING, RFC 2131 §4.3.2) unicast to follower node {follower} ACKed by {:?}, lease {:?} s",
        ack.server_id, ack.lease_time_secs
    ));
    Ok((lease, leader, follower))
}

/// See the module documentation.
pub fn stale_release() -> Ending {
    stale_release_with(0)
}

/// `stale-release` with the cut-off follower's clock 4.5 s ahead of the leader's (seed 0x30313233 at
/// 1480 s: the RELEASE's node ran 7.8 s ahead of the leader's): ordering the RELEASE and the newer binding
/// by their proposers' clocks put the RELEASE last.
pub fn stale_release_skew() -> Ending {
    stale_release_with(4_500)
}

fn stale_release_with(follower_offset_ms: i64) -> Ending {
    run(120, |bed| {
        let (lease, leader, follower) = lease_from_a_follower(bed, 1, follower_offset_ms)?;
        let (ip, mac) = (lease.address, format_mac(lease.mac));
        let majority: Vec<u32> = (1..=NODES).filter(|&id| id != follower).collect();
        let before = bed.arrivals(follower, "release")?;
        bed.iptables_partition(follower, "-I")?;
        bed.say(format!("node {follower} cut off from the others (iptables DROP in the node namespaces)"));
        bed.client.release(&lease, &ClientOptions::default()).map_err(|e| e.to_string())?;
        bed.say(format!("RELEASE of {ip} (RFC 2131 §4.4.6: ciaddr, option 54) sent unicast to node {follower}"));
        bed.await_proposed(follower, "release", before)?;

        // RFC 2131 §4.4.1: the client starts again from INIT; the lease counts from its REQUEST.
        let asked_ms = unix_ms();
        let again = bed
            .client
            .dora_with(lease.mac, &ClientOptions::default(), &retry(), Duration::from_secs(15))
            .map_err(|e| format!("DORA after the release: {e}"))?;
        let promised_s = (asked_ms + u64::from(again.lease_time_secs.unwrap_or(0)) * 1000) / 1000;
        bed.say(format!(
            "{mac} asks again (DORA): ACK for {} from {} with {:?} s (majority leader node {leader}): the client \
             holds it until {promised_s} at least",
            again.address, again.server_id, again.lease_time_secs
        ));
        bed.await_bound(&majority, again.address, &mac, promised_s, "before healing")?;
        bed.await_quiet(&majority)?;
        let refusals = bed.stale_refusals("release")?;

        bed.iptables_partition(follower, "-D")?;
        bed.say("healed".into());
        let (leader, took) = bed.cluster.wait_leader(&all_nodes(), RECOVERY_LIMIT)?;
        bed.say(format!("all nodes agree on leader node {leader} after {:.2} s", took.as_secs_f64()));
        if let Err(e) = bed.await_refused_everywhere("release", &refusals) {
            bed.show(again.address, "after healing");
            return Err(e);
        }
        let expires_at = bed.await_bound(&all_nodes(), again.address, &mac, promised_s, "after healing")?;
        bed.say(format!(
            "the client's ACK for {} runs to {promised_s} or later, the binding every node lists to {expires_at}: \
             the late RELEASE ended nothing",
            again.address
        ));
        bed.another_client_is_offered_another_address(again.address, &mac, 2)
    })
}

/// See the module documentation.
pub fn stale_renew() -> Ending {
    run(120, |bed| {
        let (lease, leader, follower) = lease_from_a_follower(bed, 3, 0)?;
        let (ip, mac) = (lease.address, format_mac(lease.mac));
        let majority: Vec<u32> = (1..=NODES).filter(|&id| id != follower).collect();
        let before = bed.arrivals(follower, "request")?;
        bed.iptables_partition(follower, "-I")?;
        bed.say(format!("node {follower} cut off from the others"));
        let xid = bed.client.next_xid();
        let renew = ClientMessage::Request(RequestState::Renewing { ciaddr: ip });
        bed.client
            .send(lease.mac, xid, &renew, &ClientOptions::default(), Target::Unicast(node_ip(follower)))
            .map_err(|e| e.to_string())?;
        bed.say(format!(
            "REQUEST (RENEWING, RFC 2131 §4.3.2: ciaddr {ip}) sent unicast to node {follower}; no answer expected"
        ));
        bed.await_proposed(follower, "request", before)?;
        // The one fixed wait, and it is the test: time must pass so that the REBIND's expiry lies whole
        // seconds (the unit of the tables' `expires_at`) after the one the held-up renewal asks for,
        // or the tables could not show the expiry moved back.
        // The renewal was proposed by now: it asks for no more than this.
        let proposed_by_ms = unix_ms();
        let held_up_until_s = (proposed_by_ms + u64::from(lease.lease_time_secs.unwrap_or(0)) * 1000) / 1000;
        thread::sleep(Duration::from_millis((proposed_by_ms + 2_000).saturating_sub(unix_ms())));

        // RFC 2131 §4.4.5: no answer by T2, so the client broadcasts (REBINDING); the leader answers.
        let asked_ms = unix_ms();
        let rebound = bed
            .client
            .extend(&lease, true, &ClientOptions::default(), &retry(), Duration::from_secs(10))
            .map_err(|e| format!("REBIND: {e}"))?;
        let promised_s = (asked_ms + u64::from(rebound.lease_time_secs.unwrap_or(0)) * 1000) / 1000;
        bed.say(format!(
            "REQUEST (REBINDING, broadcast) ACKed by {:?} (leader node {leader}) with {:?} s: the client's lease runs \
             to {promised_s} at least",
            rebound.server_id, rebound.lease_time_secs
        ));
        let renewed_until = bed.await_bound(&majority, ip, &mac, promised_s, "before healing")?;
        if renewed_until <= held_up_until_s {
            return Err(format!(
                "the REBIND's expiry {renewed_until} is not after the held-up renewal's {held_up_until_s}: the tables \
                 could not show it moved back"
            ));
        }
        bed.await_quiet(&majority)?;
        let refusals = bed.stale_refusals("bind")?;

        bed.iptables_partition(follower, "-D")?;
        bed.say("healed".into());
        let (leader, took) = bed.cluster.wait_leader(&all_nodes(), RECOVERY_LIMIT)?;
        bed.say(format!("all nodes agree on leader node {leader} after {:.2} s", took.as_secs_f64()));
        if let Err(e) = bed.await_refused_everywhere("bind", &refusals) {
            bed.show(ip, "after healing");
            return Err(e);
        }
        let expires_at = bed.await_bound(&all_nodes(), ip, &mac, renewed_until, "after healing")?;
        bed.say(format!(
            "expires_at {renewed_until} before healing, {expires_at} after: the late renewal (to {held_up_until_s}) \
             did not move it back"
        ));
        Ok(())
    })
}

/// How a node restarted with a wiped data directory came out.
enum Restarted {
    /// Following the leader all nodes agree on (its id), with the leases it lists (how many).
    CaughtUp(u32, usize),
    Refused(String),
    Panicked(String),
}

/// See the module documentation.
pub fn wipe_without_join() -> Ending {
    run(120, |bed| {
        let all = all_nodes();
        let (leader, _) = bed.cluster.wait_leader(&all, RECOVERY_LIMIT)?;
        let target = (1..=NODES).find(|&id| id != leader).expect("a follower");
        let mut bound = Vec::new();
        for index in 0..5 {
            let lease = bed
                .client
                .dora_with(test_mac(10 + index), &ClientOptions::default(), &retry(), Duration::from_secs(10))
                .map_err(|e| format!("DORA: {e}"))?;
            bound.push((lease.address, format_mac(lease.mac)));
        }
        bed.say(format!("5 clients bound through the leader node {leader} (DORA): {bound:?}"));
        let listed = |bed: &Bed, id: u32| -> Result<Vec<(Ipv4Addr, String, String)>, String> {
            let table = bed.cluster.leases(id)?;
            Ok(table.into_iter().map(|l| (l.ip, l.mac.to_ascii_lowercase(), l.state)).collect())
        };
        let (before, _) = wait_for(CONVERGENCE_LIMIT, || {
            let leader_table = listed(bed, leader)?;
            let ours = bound.iter().all(|(ip, mac)| leader_table.iter().any(|(i, m, _)| i == ip && m == mac));
            let others: Result<Vec<_>, String> = all.iter().map(|&id| listed(bed, id)).collect();
            match others? {
                tables if ours && tables.iter().all(|t| *t == leader_table) => Ok(leader_table),
                tables => Err(format!("tables by node: {tables:?}")),
            }
        })
        .map_err(|e| format!("the 5 bindings are not on every node: {e}"))?;
        bed.say(format!("every node lists the same {} leases", before.len()));

        bed.cluster.kill(target)?;
        bed.cluster.wipe(target)?;
        bed.cluster.start(target, false);
        bed.say(format!(
            "node {target} killed, its data directory wiped, restarted with the same --peer list, no --join"
        ));
        // It must catch up (the leader's table, a leader it agrees on) or refuse to start; never live
        // on as a member that does not replicate.
        let log_path = bed.cluster.log_path(target);
        let came_out = wait_for(CATCH_UP_LIMIT, || {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(line) = log.lines().find(|l| l.contains("panicked at") || l.contains("out of range")) {
                return Ok(Restarted::Panicked(line.to_owned()));
            }
            if !bed.cluster.reap_crashes().is_empty() {
                let (_, status, tail) = bed.cluster.crashes.last().cloned().unwrap_or_default();
                return Ok(Restarted::Refused(format!("{status}: {}", tail.lines().last().unwrap_or(""))));
            }
            let health = bed.cluster.health(target);
            let table = listed(bed, target);
            let agreed = bed.cluster.agreed_leader(&all);
            match (&health, &table) {
                (Health::Led { leader_id, .. }, Ok(table)) if agreed == Some(*leader_id) && *table == before => {
                    Ok(Restarted::CaughtUp(*leader_id, table.len()))
                }
                _ => Err(format!("/healthz {health:?}, /v1/leases {:?}", table.map(|t| t.len()))),
            }
        });
        match came_out {
            Ok((Restarted::CaughtUp(leader, leases), took)) => {
                bed.say(format!(
                    "node {target} caught up after {:.2} s: it follows node {leader}, as all do, and lists the same \
                     {leases} leases",
                    took.as_secs_f64()
                ));
                Ok(())
            }
            Ok((Restarted::Refused(why), _)) => {
                bed.say(format!("node {target} refused to start: {why}"));
                Ok(())
            }
            Ok((Restarted::Panicked(line), _)) => Err(format!("node {target}'s log shows a panic: {line}")),
            Err(e) => Err(format!("node {target} neither caught up nor refused to start: {e}")),
        }
    })
}
