//! Directed reproductions of what chaos runs found, step by step on a fresh 3-node cluster, so that a
//! finding can be shown without waiting for a seed to hit it again (`chaos --scenario NAME`):
//!
//! - `stale-release`: a client whose last ACK came from follower F sends its RELEASE to F just after F
//!   is cut off from the others; F forwards the proposal to the leader over its (stalled) TCP link. The
//!   client then gets its address again by DORA from the leader. After healing, the delayed RELEASE is
//!   committed *after* the newer binding and releases it: the client holds an unexpired ACK for an
//!   address the cluster calls released, and a second client that asks for that address gets it.
//! - `stale-release-skew`: the same with the follower's clock 4.5 s ahead of the leader's (within the
//!   skew the expiry grace is there to cover): a RELEASE stamped by a clock ahead looks newer than the
//!   binding the leader made after it.
//! - `stale-renew`: the same with a RENEW (REQUEST, RENEWING) to the cut-off follower, then a REBIND
//!   that the leader ACKs: the delayed renewal, committed later, moves the lease's expiry back.
//! - `wipe-without-join`: a follower's data directory is wiped and it is restarted with the same
//!   `--peer` list and no `--join` (the operator's obvious move). It used to bootstrap a fresh log that
//!   the leader's first heartbeat (commit index beyond its empty log) panicked inside raft-rs, leaving
//!   a process that never replicated again (seed 0x4 with `--wipe plain`); it must catch up instead.
//!
//! Each returns a transcript and whether the problem showed.

use std::net::Ipv4Addr;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use leasehold_tests::{
    format_mac, test_mac, ClientConfig, ClientMessage, ClientOptions, Lease as ClientLease, RetryPolicy, Target,
    TestClient,
};

use super::node::{node_ip, Cluster, Pool, NODES};
use super::unix_ms;
use crate::netns_support::{in_ns, require_root, scratch_dir, Lease, Segment};

pub const NAMES: [&str; 4] = ["stale-release", "stale-release-skew", "stale-renew", "wipe-without-join"];

struct Bed {
    cluster: Cluster,
    client: TestClient,
    transcript: Vec<String>,
    started: Instant,
    _segment: Segment,
}

impl Bed {
    fn say(&mut self, text: String) {
        let line = format!("[{:6.2} s] {text}", self.started.elapsed().as_secs_f64());
        eprintln!("scenario: {line}");
        self.transcript.push(line);
    }

    fn table_entry(&self, id: u32, ip: Ipv4Addr) -> Option<Lease> {
        self.cluster.leases(id).ok()?.into_iter().find(|l| l.ip == ip)
    }

    fn show(&mut self, ip: Ipv4Addr, when: &str) -> Vec<Option<Lease>> {
        let entries: Vec<Option<Lease>> = (1..=NODES).map(|id| self.table_entry(id, ip)).collect();
        for (i, entry) in entries.iter().enumerate() {
            let text = match entry {
                Some(l) => format!("{} {} expires_at {}", l.state, l.mac, l.expires_at),
                None => "no record".into(),
            };
            self.say(format!("{when}: node {} has {ip}: {text}", i + 1));
        }
        entries
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
    cluster.wait_leader(&all, Duration::from_secs(30))?;
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
    run(&["route", "add", "local", "10.77.1.0/24", "dev", "eth0"])?;
    let client = TestClient::bind(ClientConfig::in_namespace(&ns, "eth0")).map_err(|e| e.to_string())?;
    eprintln!("scenario: logs in {}", dir.display());
    Ok(Bed { cluster, client, transcript: Vec::new(), started: Instant::now(), _segment: segment })
}

fn retry() -> RetryPolicy {
    RetryPolicy::fixed(20, Duration::from_millis(250))
}

/// Steps shared by both scenarios: a lease whose last ACK came from a follower. Returns (lease with
/// server_id = the follower, leader, follower).
/// With `follower_offset_ms`, the follower is first restarted with its clock that far ahead
/// (`--clock-offset-ms`, well inside the 30 s expiry grace that is there to cover clock skew).
fn lease_from_a_follower(
    bed: &mut Bed,
    mac_index: u32,
    follower_offset_ms: i64,
) -> Result<(ClientLease, u32, u32), String> {
    let all: Vec<u32> = (1..=NODES).collect();
    let (leader, _) = bed.cluster.wait_leader(&all, Duration::from_secs(30))?;
    let follower = (1..=NODES).find(|&id| id != leader).expect("a follower");
    if follower_offset_ms != 0 {
        bed.cluster.terminate(follower)?;
        bed.cluster.set_offset(follower, follower_offset_ms);
        bed.cluster.start(follower, false);
        let (now_leader, _) = bed.cluster.wait_leader(&all, Duration::from_secs(30))?;
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
        "RENEW unicast to follower node {follower} ACKed by {:?}, lease {:?} s",
        ack.server_id, ack.lease_time_secs
    ));
    Ok((lease, leader, follower))
}

/// See the module documentation. Ok((transcript, reproduced)).
pub fn stale_release() -> Result<(Vec<String>, bool), String> {
    stale_release_with(0)
}

/// `stale-release` with the cut-off follower's clock 4.5 s ahead of the leader's (seed 0x30313233 at
/// 1480 s: the RELEASE's node ran 7.8 s ahead of the leader's): ordering the RELEASE and the newer binding
/// by their proposers' clocks puts the RELEASE last.
pub fn stale_release_skew() -> Result<(Vec<String>, bool), String> {
    stale_release_with(4_500)
}

fn stale_release_with(follower_offset_ms: i64) -> Result<(Vec<String>, bool), String> {
    let mut bed = setup(120)?;
    let (lease, leader, follower) = lease_from_a_follower(&mut bed, 1, follower_offset_ms)?;
    let ip = lease.address;
    bed.iptables_partition(follower, "-I")?;
    bed.say(format!("node {follower} cut off from the others (iptables DROP in the node namespaces)"));
    bed.client.release(&lease, &ClientOptions::default()).map_err(|e| e.to_string())?;
    bed.say(format!("RELEASE of {ip} sent unicast to node {follower} (the client's server)"));
    thread::sleep(Duration::from_secs(1));
    let again = bed
        .client
        .dora_with(lease.mac, &ClientOptions::default(), &retry(), Duration::from_secs(15))
        .map_err(|e| format!("DORA after the release: {e}"))?;
    let promised = unix_ms() + u64::from(again.lease_time_secs.unwrap_or(0)) * 1000;
    bed.say(format!(
        "{} asks again (DORA): ACK for {} from {} with {:?} s (majority leader node {leader})",
        format_mac(lease.mac),
        again.address,
        again.server_id,
        again.lease_time_secs
    ));
    bed.show(ip, "before healing");
    thread::sleep(Duration::from_secs(2));
    bed.iptables_partition(follower, "-D")?;
    bed.say("healed".into());
    let all: Vec<u32> = (1..=NODES).collect();
    bed.cluster.wait_leader(&all, Duration::from_secs(30))?;
    thread::sleep(Duration::from_secs(6));
    let after = bed.show(again.address, "after healing");
    let mac = format_mac(lease.mac);
    let released = after.iter().flatten().any(|l| l.mac.eq_ignore_ascii_case(&mac) && l.state == "released");
    let left = promised.saturating_sub(unix_ms()) / 1000;
    bed.say(format!(
        "the client's ACK for {} has {left} s left; the tables say {}",
        again.address,
        if released { "released" } else { "bound (not reproduced)" }
    ));
    if released {
        // Another client asks for exactly that address (option 50 in its DISCOVER).
        let other = test_mac(2);
        let options = ClientOptions::default();
        let xid = bed.client.next_xid();
        let discover = ClientMessage::Discover { requested_ip: Some(again.address) };
        bed.client.send(other, xid, &discover, &options, Target::Broadcast).map_err(|e| e.to_string())?;
        let offer = bed.client.recv_reply(xid, Duration::from_secs(3)).map_err(|e| e.to_string())?;
        bed.say(format!(
            "another client {} asks for {} and is offered {}",
            format_mac(other),
            again.address,
            offer.yiaddr
        ));
        if offer.yiaddr == again.address {
            let server_id = offer.server_id.unwrap_or(node_ip(leader));
            let request = ClientMessage::Request(leasehold_tests::RequestState::Selecting {
                requested_ip: offer.yiaddr,
                server_id,
            });
            bed.client.send(other, xid, &request, &options, Target::Broadcast).map_err(|e| e.to_string())?;
            let ack = bed.client.recv_reply(xid, Duration::from_secs(3)).map_err(|e| e.to_string())?;
            bed.say(format!(
                "... and gets {:?} for {} from {:?}, while {} still holds it for {left} s: one address, two clients",
                ack.message_type,
                ack.yiaddr,
                ack.server_id,
                format_mac(lease.mac)
            ));
        }
    }
    Ok((bed.transcript, released))
}

/// See the module documentation. Ok((transcript, reproduced)).
pub fn stale_renew() -> Result<(Vec<String>, bool), String> {
    let mut bed = setup(120)?;
    let (lease, leader, follower) = lease_from_a_follower(&mut bed, 3, 0)?;
    let ip = lease.address;
    bed.iptables_partition(follower, "-I")?;
    bed.say(format!("node {follower} cut off from the others"));
    let xid = bed.client.next_xid();
    let renew = ClientMessage::Request(leasehold_tests::RequestState::Renewing { ciaddr: ip });
    bed.client
        .send(lease.mac, xid, &renew, &ClientOptions::default(), Target::Unicast(node_ip(follower)))
        .map_err(|e| e.to_string())?;
    bed.say(format!("RENEW of {ip} sent unicast to node {follower}; no answer expected"));
    thread::sleep(Duration::from_secs(3));
    let rebound = bed
        .client
        .extend(&lease, true, &ClientOptions::default(), &retry(), Duration::from_secs(10))
        .map_err(|e| format!("REBIND: {e}"))?;
    let promised_s = unix_ms() / 1000 + u64::from(rebound.lease_time_secs.unwrap_or(0));
    bed.say(format!(
        "REBIND ACKed by {:?} (leader node {leader}) with {:?} s: the client's lease ends at about {promised_s}",
        rebound.server_id, rebound.lease_time_secs
    ));
    let before = bed.show(ip, "before healing");
    let before_max = before.iter().flatten().map(|l| l.expires_at).max().unwrap_or(0);
    bed.iptables_partition(follower, "-D")?;
    bed.say("healed".into());
    let all: Vec<u32> = (1..=NODES).collect();
    bed.cluster.wait_leader(&all, Duration::from_secs(30))?;
    thread::sleep(Duration::from_secs(6));
    let after = bed.show(ip, "after healing");
    let after_min = after.iter().flatten().map(|l| l.expires_at).min().unwrap_or(0);
    let moved_back = after_min + 1 < before_max;
    bed.say(format!(
        "expires_at before healing {before_max}, after {after_min}: {}",
        if moved_back {
            "moved back (a stale renewal committed after the newer one)"
        } else {
            "not moved back (not reproduced)"
        }
    ));
    Ok((bed.transcript, moved_back))
}

/// See the module documentation. Ok((transcript, reproduced)).
pub fn wipe_without_join() -> Result<(Vec<String>, bool), String> {
    let mut bed = setup(120)?;
    let all: Vec<u32> = (1..=NODES).collect();
    let (leader, _) = bed.cluster.wait_leader(&all, Duration::from_secs(30))?;
    let target = (1..=NODES).find(|&id| id != leader).expect("a follower");
    for index in 0..5 {
        bed.client
            .dora_with(test_mac(10 + index), &ClientOptions::default(), &retry(), Duration::from_secs(10))
            .map_err(|e| format!("DORA: {e}"))?;
    }
    thread::sleep(Duration::from_millis(500));
    let before = bed.cluster.leases(leader)?.len();
    bed.say(format!("5 clients bound; the leader node {leader} lists {before} leases"));
    bed.cluster.kill(target)?;
    bed.cluster.wipe(target)?;
    bed.cluster.start(target, false);
    bed.say(format!("node {target} killed, its data directory wiped, restarted with the same --peer list, no --join"));
    thread::sleep(Duration::from_secs(5));
    let health = bed.cluster.health(target);
    let table = bed.cluster.leases(target).map(|t| t.len());
    let log = std::fs::read_to_string(bed.cluster.log_path(target)).unwrap_or_default();
    let panic_line = log.lines().find(|l| l.contains("panicked at") || l.contains("out of range")).map(str::to_owned);
    bed.say(format!("node {target}: /healthz {health:?}, /v1/leases has {table:?} leases (the leader {before})"));
    bed.say(format!("node {target}'s log: {}", panic_line.clone().unwrap_or_else(|| "no panic".into())));
    let running = bed.cluster.reap_crashes().is_empty();
    bed.say(format!("node {target}'s process {}", if running { "is still running" } else { "has exited" }));
    let stuck = table.as_ref().is_ok_and(|n| *n < before);
    Ok((bed.transcript, panic_line.is_some() || stuck))
}
