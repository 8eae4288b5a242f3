//! A three-node Leasehold cluster on a private L2 segment, with real processes and real clients
//! (DESIGN.md rules 1, 2 and 5; README "Running a cluster").
//!
//! Every test builds its own segment (`scripts/netns.sh up NAME 3 3`: server namespaces with eth0 =
//! 10.77.0.1/.2/.3, three client namespaces) and starts `leasehold serve` in each server namespace with
//! its own data directory (fsync on), `--node-id N`, the same three `--peer`s, `--cluster-listen
//! 10.77.0.N:6768` and one shared secret file (the helper that does it, with the leader, convergence and
//! double-binding checks, is netns_support/cluster.rs, shared with tests/relay.rs). Then:
//!
//! 1. `real_clients_get_leases_from_a_three_node_cluster`: ISC dhclient, busybox udhcpc and dhcpcd each
//!    get a lease from the cluster (the leader's server identifier); each lease appears, bound to the
//!    client's MAC, in all three nodes' `GET /v1/leases`.
//! 2. `leader_killed_new_client_served_existing_client_rebinds_restarted_node_rejoins`: SIGKILL of the
//!    leader (by PID). A new client gets a lease within `FAILOVER_LIMIT` of the kill (the gap is measured
//!    and printed); a client bound before the kill REBINDs (broadcast REQUEST with ciaddr, RFC 2131
//!    §4.4.5) and the new leader ACKs the same address; udhcpc gets a lease too; no address is held by two
//!    clients on the survivors; the killed node restarted on its data directory rejoins (its /healthz
//!    names the new leader) and its lease table converges to the survivors' (sets of (ip, mac, state)).
//! 3. `partitioned_leader_stops_binding_majority_serves_and_tables_converge_after_healing`: iptables DROP
//!    (inside the node namespaces only) between the leader and the two others; clients still reach every
//!    node. The majority elects a new leader and serves a new client; the old leader steps down (503 "no
//!    quorum"), every OFFER to a broadcast DISCOVER carries the new leader's server identifier, a
//!    SELECTING REQUEST naming the old leader gets no ACK, and a RENEW unicast to the old leader is ACKed
//!    for at most the time remaining on the committed lease (DESIGN rule 5), without a new binding. After
//!    healing: one leader, the tables converge, no address is held by two clients.
//! 4. `exactly_one_node_answers_each_broadcast_discover`: every broadcast DISCOVER and SELECTING REQUEST
//!    is answered by exactly one node, the leader (replies collected for a while, server ids counted).
//! 5. `real_clients_rebind_to_the_new_leader_after_the_leader_is_killed`: with a 20 s lease, udhcpc and
//!    dhclient bound by the leader; the leader is killed; at T1 their unicast RENEW goes to a dead server,
//!    so they rebind by broadcast (RFC 2131 §4.4.5) and the new leader extends the same addresses.
//!
//! The tests of this file run one at a time (a lock): each runs three servers on a 2-core machine, and
//! failover times measured next to another cluster's elections would mean little. Every wait is on an
//! event (a process exit, a client's hook, a reply) or polls the admin API with a deadline; every loop is
//! bounded. Processes are killed by PID only; the segment (and the iptables rules in its namespaces) is
//! removed when the test ends, also on failure.

mod netns_support;

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use leasehold_tests::{
    format_mac, test_mac, ClientConfig, ClientMessage, ClientOptions, HarnessError, Lease as ClientLease, MessageType,
    ReplyView, RequestState, RetryPolicy, Target, TestClient,
};
use netns_support::cluster::*;
use netns_support::*;

const POOL_START: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
const POOL_END: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 200);
const LEASE_SECS: u64 = CLUSTER_LEASE_SECS;
/// A new client must get a lease within this long after the leader is killed (one election timeout
/// is 1–2 s with the default 100 ms ticks × 10).
const FAILOVER_LIMIT: Duration = Duration::from_secs(5);
/// How long a cluster may take to elect a leader, a restarted node to rejoin, tables to converge.
const SETTLE_LIMIT: Duration = Duration::from_secs(20);
/// An address outside the pool for a client namespace that sends unicast.
const CLIENT_STATIC_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 50);

static SERIAL: Mutex<()> = Mutex::new(());

/// One test at a time (see the module documentation); a failed test does not block the others.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn in_pool(ip: Ipv4Addr) -> bool {
    (u32::from(POOL_START)..=u32::from(POOL_END)).contains(&u32::from(ip))
}

// ---------------------------------------------------------------------------------------------------------
// Clients

fn test_client(ns: &str) -> TestClient {
    TestClient::bind(ClientConfig::in_namespace(ns, "eth0"))
        .unwrap_or_else(|e| panic!("open the test client's socket in {ns}: {e}"))
}

/// Configures `ip/24` on the client namespace's eth0, as a real client does once bound: replies to a
/// RENEWING or REBINDING REQUEST go to ciaddr (RFC 2131 §4.1), so the address must be there.
fn add_client_address(ns: &str, ip: Ipv4Addr) {
    let out = Command::new("ip").args(["-n", ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"]).output();
    let out = out.expect("run ip addr add");
    assert!(out.status.success(), "ip -n {ns} addr add {ip}/24: {}", String::from_utf8_lossy(&out.stderr));
}

/// Every reply that arrives within `window`, by xid (bounded: the window ends the loop).
fn collect_all(client: &mut TestClient, window: Duration) -> HashMap<u32, Vec<ReplyView>> {
    let deadline = Instant::now() + window;
    let mut by_xid: HashMap<u32, Vec<ReplyView>> = HashMap::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
        match client.recv_any(left) {
            Ok(reply) => by_xid.entry(reply.xid).or_default().push(reply),
            Err(HarnessError::Timeout { .. }) => break,
            Err(e) => panic!("the test client's socket failed: {e}"),
        }
    }
    by_xid
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy::fixed(100, Duration::from_millis(200))
}

/// `udhcpc -n -q`: one lease, then exit (bounded by -t/-T and by `limit`). Returns (address, server id).
fn udhcpc_once(ns: &str, dir: &Path, limit: Duration) -> (Ipv4Addr, Ipv4Addr, Duration) {
    let udhcpc = require_tool("udhcpc");
    let mut events = Events::new(dir);
    let hook = udhcpc_hook(dir, &events);
    let mut cmd = in_ns(ns, udhcpc);
    cmd.args(["-i", "eth0", "-n", "-q", "-f", "-t", "10", "-T", "1", "-s"]).arg(&hook);
    let log = dir.join("udhcpc.log");
    let started = Instant::now();
    let mut proc = Proc::spawn("udhcpc -n -q", cmd, &log);
    let bound = events.expect(&["bound"], limit, "udhcpc");
    let took = started.elapsed();
    proc.expect_success(Duration::from_secs(10));
    let ip = event_ip(&bound, "udhcpc");
    let server: Ipv4Addr = bound.get(2).and_then(|s| s.parse().ok()).unwrap_or(Ipv4Addr::UNSPECIFIED);
    (ip, server, took)
}

// ---------------------------------------------------------------------------------------------------------
// 1. Real clients

#[test]
fn real_clients_get_leases_from_a_three_node_cluster() {
    let _serial = serial();
    let dhcpcd = require_tool("dhcpcd");
    let segment = Segment::up(NODES, 3, 24);
    let dir = scratch_dir("cluster-clients");
    let started = Instant::now();
    let cluster = Cluster::start(&segment, dir.path());
    let (leader, _) = cluster.wait_for_leader(&[1, 2, 3], SETTLE_LIMIT, "start");
    println!("cluster: 3 nodes healthy, leader node {leader}, after {:?}", started.elapsed());
    let leader_ip = node_ip(leader);

    // ISC dhclient in client namespace 1.
    let mut dhclient = Dhclient::new(&segment.client(1), &subdir(dir.path(), "dhclient"));

    // dhcpcd in client namespace 3, in a private mount namespace (FIELD-NOTES: /run and /var/lib are shared).
    let dhcpcd_dir = subdir(dir.path(), "dhcpcd");
    let mut dhcpcd_events = Events::new(&dhcpcd_dir);
    let dhcpcd_hook = dhcpcd_dir.join("hook.sh");
    write_script(
        &dhcpcd_hook,
        &format!(
            "#!/bin/sh\ncase \"$reason\" in\nBOUND|RENEW|REBIND|REBOOT) echo \"$reason $new_ip_address \
             $new_dhcp_server_identifier\" > {fifo} ;;\n*) echo \"$reason ${{old_ip_address:--}}\" > {fifo} ;;\nesac\n",
            fifo = dhcpcd_events.path.display()
        ),
    );
    let dhcpcd_conf = dhcpcd_dir.join("dhcpcd.conf");
    std::fs::write(
        &dhcpcd_conf,
        format!(
            "ipv4only\nnoipv4ll\nnohook resolv.conf, hostname, ntp.conf, timesyncd, yp.conf, wpa_supplicant, mtu\n\
             script {}\n",
            dhcpcd_hook.display()
        ),
    )
    .expect("write dhcpcd.conf");
    let mut dhcpcd_cmd = in_ns(&segment.client(3), "unshare");
    dhcpcd_cmd.args(["-m", "--propagation", "private", "sh", "-c"]).arg(format!(
        "mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/lib/dhcpcd && exec {} -f {} -4 -B -t 30 eth0",
        dhcpcd.display(),
        dhcpcd_conf.display()
    ));

    // All three at once (dhcpcd spends seconds probing the address with ARP).
    let clients_started = Instant::now();
    let mut dhcpcd_proc = Proc::spawn("dhcpcd", dhcpcd_cmd, &dhcpcd_dir.join("dhcpcd.log"));
    let udhcpc_dir = subdir(dir.path(), "udhcpc");
    let (udhcpc_ip, udhcpc_server, udhcpc_took) = thread::scope(|scope| {
        let udhcpc = scope.spawn(|| udhcpc_once(&segment.client(2), &udhcpc_dir, Duration::from_secs(30)));
        dhclient.run("-1", Duration::from_secs(45));
        udhcpc.join().expect("udhcpc thread")
    });
    let dhclient_bound = dhclient.events.expect(&["BOUND"], Duration::from_secs(5), "dhclient");
    let dhclient_took = clients_started.elapsed();
    let dhcpcd_bound = dhcpcd_events.expect(&["BOUND"], Duration::from_secs(40), "dhcpcd");
    let dhcpcd_took = clients_started.elapsed();
    println!(
        "leases: dhclient {} ({dhclient_took:?}), udhcpc {udhcpc_ip} ({udhcpc_took:?}), dhcpcd {} ({dhcpcd_took:?})",
        dhclient_bound[1], dhcpcd_bound[1]
    );

    let bound = [
        ("dhclient", segment.client(1), event_ip(&dhclient_bound, "dhclient"), dhclient_bound.get(2).cloned()),
        ("udhcpc", segment.client(2), udhcpc_ip, Some(udhcpc_server.to_string())),
        ("dhcpcd", segment.client(3), event_ip(&dhcpcd_bound, "dhcpcd"), dhcpcd_bound.get(2).cloned()),
    ];
    for (name, ns, ip, server_id) in &bound {
        assert!(in_pool(*ip), "{name} got {ip}, outside the pool {POOL_START}–{POOL_END}");
        assert_eq!(
            server_id.as_deref(),
            Some(leader_ip.to_string().as_str()),
            "{name}'s lease names server {server_id:?}; the leader (node {leader}, {leader_ip}) answers broadcast traffic"
        );
        let mac = mac_of(ns, "eth0");
        cluster.wait_bound_everywhere(&[1, 2, 3], *ip, &mac, name);
    }
    let ips: BTreeSet<Ipv4Addr> = bound.iter().map(|b| b.2).collect();
    assert_eq!(ips.len(), 3, "three clients, three distinct addresses: {bound:?}");
    assert_no_double_binding(&cluster, &[1, 2, 3], "after the three clients");
    let (set, took) = cluster.wait_converged(&[1, 2, 3], Duration::from_secs(10), "after the three clients");
    println!("tables: the same {} leases on all 3 nodes (converged after {took:?})", set.len());

    // GET /v1/cluster on the leader: every member's own term, commit and applied index (the followers
    // report theirs on their responses) catch up with the leader's commit.
    let deadline = Instant::now() + Duration::from_secs(5);
    let view = loop {
        let (code, body) = http_get(cluster.ns(leader), ADMIN_PORT, "/v1/cluster").expect("GET /v1/cluster");
        assert_eq!(code, 200, "GET /v1/cluster answered HTTP {code}: {body}");
        let view: serde_json::Value = serde_json::from_str(&body).expect("/v1/cluster is JSON");
        let members = view["members"].as_array().cloned().unwrap_or_default();
        let caught_up = members.len() == 3
            && members.iter().all(|m| {
                m["term"] == view["term"]
                    && m["commit_index"] == view["commit_index"]
                    && m["applied_index"] == view["commit_index"]
                    && m["applied_behind_entries"] == 0
            });
        if caught_up || Instant::now() > deadline {
            assert!(caught_up, "members of the leader's /v1/cluster did not report the leader's commit: {view:#}");
            break view;
        }
        thread::sleep(Duration::from_millis(100));
    };
    println!(
        "cluster view on the leader: term {}, commit {}, every member applied it",
        view["term"], view["commit_index"]
    );

    dhclient.run("-x", Duration::from_secs(15));
    dhcpcd_proc.stop(Duration::from_secs(5));
}

// ---------------------------------------------------------------------------------------------------------
// 2. Kill -9 the leader

#[test]
fn leader_killed_new_client_served_existing_client_rebinds_restarted_node_rejoins() {
    let _serial = serial();
    let segment = Segment::up(NODES, 2, 24);
    let dir = scratch_dir("cluster-kill");
    let mut cluster = Cluster::start(&segment, dir.path());
    let (leader, _) = cluster.wait_for_leader(&[1, 2, 3], SETTLE_LIMIT, "start");
    println!("cluster: leader node {leader}");

    // Existing clients, bound by the leader and replicated to every node before the kill.
    let client_ns = segment.client(1);
    let mut client = test_client(&client_ns);
    let mut existing: Vec<ClientLease> = Vec::new();
    for i in 0..3 {
        let lease = client.dora(test_mac(100 + i), Duration::from_secs(10)).expect("DORA before the kill");
        assert_eq!(lease.server_id, node_ip(leader), "the leader answers broadcast DORA");
        cluster.wait_bound_everywhere(&[1, 2, 3], lease.address, &format_mac(lease.mac), "before the kill");
        existing.push(lease);
    }
    // The first existing client configures its address, so that a REBINDING ACK (to ciaddr) reaches it.
    add_client_address(&client_ns, existing[0].address);
    let before = cluster.server(1).lease_of(existing[0].address).expect("the existing lease");
    let survivors: Vec<u32> = (1..=NODES).filter(|&id| id != leader).collect();

    // Kill -9 the leader; a new client asks at once, retransmitting every 200 ms, while the survivors'
    // /healthz is watched for the new leader.
    wait_for_next_second();
    let killed_at = cluster.kill(leader);
    let (new_lease, (new_leader, elected_at)) = thread::scope(|scope| {
        let nodes = &cluster.nodes;
        let watcher = scope.spawn(|| nodes.wait_for_leader(&survivors, SETTLE_LIMIT, "after the kill"));
        let lease = client.dora_with(test_mac(200), &ClientOptions::default(), &fast_retry(), Duration::from_secs(15));
        (lease, watcher.join().expect("the health watcher panicked"))
    });
    let new_lease = new_lease.unwrap_or_else(|e| panic!("a new client after the kill: {e}\n{}", cluster.logs()));
    let gap = killed_at.elapsed();
    let election = elected_at.duration_since(killed_at);
    println!(
        "failover: node {leader} killed; node {new_leader} leader after {election:?}; a new client's DORA ACKed \
         {} after {gap:?} from the kill ({:?} of DORA)",
        new_lease.address, new_lease.elapsed
    );
    assert_eq!(new_lease.server_id, node_ip(new_leader), "the new leader answers the new client");
    assert!(
        gap <= FAILOVER_LIMIT,
        "a new client waited {gap:?} after the leader's kill; the limit is {FAILOVER_LIMIT:?}"
    );
    assert!(
        existing.iter().all(|l| l.address != new_lease.address),
        "the new client got {}, an address held by a client bound before the kill",
        new_lease.address
    );

    // The existing client rebinds (RFC 2131 §4.4.5: T2 passed, the old server is gone): the new leader ACKs
    // the same address and extends it.
    let rebound = client
        .extend(&existing[0], true, &ClientOptions::default(), &fast_retry(), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("REBINDING after the kill: {e}\n{}", cluster.logs()));
    println!("rebind: {} kept {} (ACK from {:?})", format_mac(existing[0].mac), rebound.yiaddr, rebound.server_id);
    assert_eq!(rebound.yiaddr, existing[0].address, "a rebinding client keeps its address");
    assert_eq!(rebound.server_id, Some(node_ip(new_leader)), "the new leader answers the broadcast REBINDING REQUEST");
    for &id in &survivors {
        cluster.server(id).wait_lease(existing[0].address, Duration::from_secs(5), "extended by the rebind", |l| {
            l.state == "bound" && l.expires_at > before.expires_at && l.mac.eq_ignore_ascii_case(&before.mac)
        });
    }

    // A real client too.
    let (udhcpc_ip, udhcpc_server, took) =
        udhcpc_once(&segment.client(2), &subdir(dir.path(), "udhcpc"), Duration::from_secs(20));
    println!("udhcpc after the kill: {udhcpc_ip} from {udhcpc_server} in {took:?}");
    assert_eq!(udhcpc_server, node_ip(new_leader), "udhcpc's lease comes from the new leader");
    cluster.wait_bound_everywhere(&survivors, udhcpc_ip, &mac_of(&segment.client(2), "eth0"), "udhcpc after the kill");
    let bound = assert_no_double_binding(&cluster, &survivors, "survivors after the kill");
    assert!(bound >= 5, "3 existing + 1 new + udhcpc = 5 bound leases expected on the survivors, found {bound}");

    // Restart the killed node on its data directory: it rejoins under the new leader and catches up.
    let restarted = Instant::now();
    cluster.restart(leader);
    let (h, _) = cluster.wait_health(
        leader,
        SETTLE_LIMIT,
        "led by the new leader",
        |h| matches!(h, Health::Led { leader_id, .. } if *leader_id == u64::from(new_leader)),
    );
    let (set, converged) = cluster.wait_converged(&[1, 2, 3], SETTLE_LIMIT, "after the restart");
    println!(
        "restart: node {leader} healthy after {:?} ({h:?}); tables of all 3 nodes equal ({} leases) {converged:?} later",
        restarted.elapsed(),
        set.len()
    );
    assert!(set.contains(&(new_lease.address, format_mac(new_lease.mac), "bound".to_owned())));
    assert_no_double_binding(&cluster, &[1, 2, 3], "after the restart");
}

/// Lease time for the real clients' rebind: T1 = 10 s, T2 = 17.5 s.
const SHORT_LEASE_SECS: u64 = 20;

#[test]
fn real_clients_rebind_to_the_new_leader_after_the_leader_is_killed() {
    let _serial = serial();
    let udhcpc = require_tool("udhcpc");
    let segment = Segment::up(NODES, 2, 24);
    let dir = scratch_dir("cluster-rebind");
    let mut cluster = Cluster::start_with(&segment, dir.path(), SHORT_LEASE_SECS);
    let (leader, _) = cluster.wait_for_leader(&[1, 2, 3], SETTLE_LIMIT, "start");
    let leader_ip = node_ip(leader).to_string();

    // udhcpc, long-running, in client namespace 1; dhclient's daemon in client namespace 2.
    let udhcpc_dir = subdir(dir.path(), "udhcpc");
    let mut udhcpc_events = Events::new(&udhcpc_dir);
    let hook = udhcpc_hook(&udhcpc_dir, &udhcpc_events);
    let mut cmd = in_ns(&segment.client(1), udhcpc);
    cmd.args(["-i", "eth0", "-f", "-t", "10", "-T", "1", "-s"]).arg(&hook);
    let mut udhcpc_proc = Proc::spawn("udhcpc", cmd, &udhcpc_dir.join("udhcpc.log"));
    let mut dhclient = Dhclient::new(&segment.client(2), &subdir(dir.path(), "dhclient"));
    dhclient.run("-1", Duration::from_secs(45));
    let udhcpc_bound = udhcpc_events.expect(&["bound"], Duration::from_secs(20), "udhcpc bind");
    let dhclient_bound = dhclient.events.expect(&["BOUND"], Duration::from_secs(5), "dhclient bind");
    for (name, bound, ns) in
        [("udhcpc", &udhcpc_bound, segment.client(1)), ("dhclient", &dhclient_bound, segment.client(2))]
    {
        assert_eq!(bound.get(2), Some(&leader_ip), "{name} was bound by {bound:?}; the leader is {leader_ip}");
        cluster.wait_bound_everywhere(&[1, 2, 3], event_ip(bound, name), &mac_of(&ns, "eth0"), name);
    }

    // Kill -9 the leader. At T1 both renew by unicast to the dead leader, hear nothing, and rebind by
    // broadcast (udhcpc once its lease is nearly out, dhclient after T2): the new leader must ACK the
    // addresses they hold.
    let killed_at = cluster.kill(leader);
    let survivors: Vec<u32> = (1..=NODES).filter(|&id| id != leader).collect();
    let limit = Duration::from_secs(SHORT_LEASE_SECS + 10);
    let udhcpc_renewed = udhcpc_events.expect(&["renew", "deconfig", "leasefail", "nak"], limit, "udhcpc rebind");
    let udhcpc_after = killed_at.elapsed();
    let dhclient_renewed = dhclient.events.expect(&["REBIND", "RENEW", "EXPIRE", "FAIL", "BOUND"], limit, "dhclient");
    let dhclient_after = killed_at.elapsed();
    let (new_leader, _) = cluster.wait_for_leader(&survivors, SETTLE_LIMIT, "after the kill");
    println!(
        "rebind: node {leader} killed; udhcpc {udhcpc_renewed:?} after {udhcpc_after:?}, dhclient {dhclient_renewed:?} \
         after {dhclient_after:?}; new leader node {new_leader}"
    );
    let new_ip = node_ip(new_leader).to_string();
    assert_eq!(
        (udhcpc_renewed[0].as_str(), &udhcpc_renewed[1], udhcpc_renewed.get(2)),
        ("renew", &udhcpc_bound[1], Some(&new_ip)),
        "udhcpc must keep {} through the leader's death, ACKed by the new leader {new_ip}\n{}",
        udhcpc_bound[1],
        cluster.logs()
    );
    // ISC dhclient stays in its RENEWING state after T2 and only switches the REQUEST to broadcast (its
    // `send_request`), so its hook says RENEW, not REBIND; the new server identifier shows who answered.
    assert!(
        ["REBIND", "RENEW"].contains(&dhclient_renewed[0].as_str())
            && dhclient_renewed[1] == dhclient_bound[1]
            && dhclient_renewed.get(2) == Some(&new_ip),
        "dhclient must keep {} through the leader's death, extended by the new leader {new_ip} (RFC 2131 §4.4.5); \
         got {dhclient_renewed:?}\n{}",
        dhclient_bound[1],
        cluster.logs()
    );
    assert_no_double_binding(&cluster, &survivors, "after the rebinds");
    for (name, bound, ns) in
        [("udhcpc", &udhcpc_bound, segment.client(1)), ("dhclient", &dhclient_bound, segment.client(2))]
    {
        let ip = event_ip(bound, name);
        let mac = mac_of(&ns, "eth0");
        for &id in &survivors {
            let lease = cluster.server(id).lease_of(ip);
            assert!(
                lease.as_ref().is_some_and(|l| l.state == "bound" && l.mac.eq_ignore_ascii_case(&mac)),
                "{name}'s {ip} must be bound to {mac} on node {id} after its rebind: {lease:?}"
            );
        }
    }
    dhclient.run("-x", Duration::from_secs(15));
    udhcpc_proc.stop(Duration::from_secs(5));
}

// ---------------------------------------------------------------------------------------------------------
// 3. Partition the leader

/// iptables DROP rules between `isolated` and `others`, inside the node namespaces only (both directions,
/// all IP traffic between the node addresses: Raft's port 6768 and anything else). Clients' traffic (other
/// source addresses, broadcasts) still flows. Removed by `heal` (and with the namespaces anyway).
struct Partition<'a> {
    cluster: &'a Cluster,
    rules: Vec<(u32, Vec<String>)>,
    log: PathBuf,
}

impl<'a> Partition<'a> {
    fn cut(cluster: &'a Cluster, isolated: u32, others: &[u32], log: &Path) -> Partition<'a> {
        let mut rules = Vec::new();
        for &other in others {
            for (ns_id, peer) in [(isolated, other), (other, isolated)] {
                let peer = node_ip(peer).to_string();
                rules
                    .push((ns_id, vec!["INPUT".to_owned(), "-s".to_owned(), peer.clone(), "-j".into(), "DROP".into()]));
                rules.push((ns_id, vec!["OUTPUT".to_owned(), "-d".to_owned(), peer, "-j".into(), "DROP".into()]));
            }
        }
        let partition = Partition { cluster, rules, log: log.to_owned() };
        for (id, rule) in &partition.rules {
            partition.iptables(*id, "-I", rule);
        }
        partition
    }

    fn iptables(&self, id: u32, action: &str, rule: &[String]) {
        let mut cmd = in_ns(self.cluster.ns(id), "iptables");
        cmd.arg("-w").arg(action).args(rule);
        run_ok(&format!("iptables {action} {rule:?} in node {id}"), cmd, &self.log, Duration::from_secs(10));
    }

    fn heal(self) {
        for (id, rule) in &self.rules {
            self.iptables(*id, "-D", rule);
        }
    }
}

#[test]
fn partitioned_leader_stops_binding_majority_serves_and_tables_converge_after_healing() {
    let _serial = serial();
    let segment = Segment::up(NODES, 1, 24);
    let dir = scratch_dir("cluster-partition");
    let cluster = Cluster::start(&segment, dir.path());
    let (old, _) = cluster.wait_for_leader(&[1, 2, 3], SETTLE_LIMIT, "start");
    let majority: Vec<u32> = (1..=NODES).filter(|&id| id != old).collect();
    println!("cluster: leader node {old}; cutting it off from nodes {majority:?}");

    let client_ns = segment.client(1);
    add_client_address(&client_ns, CLIENT_STATIC_IP);
    let mut client = test_client(&client_ns);
    let held = client.dora(test_mac(300), Duration::from_secs(10)).expect("DORA before the partition");
    assert_eq!(held.server_id, node_ip(old));
    cluster.wait_bound_everywhere(&[1, 2, 3], held.address, &format_mac(held.mac), "before the partition");
    // Its address on the client's eth0: the ACK to a RENEWING REQUEST goes to ciaddr.
    add_client_address(&client_ns, held.address);
    let committed = cluster.server(old).lease_of(held.address).expect("the held lease");

    let cut_at = Instant::now();
    let partition = Partition::cut(&cluster, old, &majority, &dir.path().join("iptables.log"));
    // Both watched at once: the old leader stepping down, the majority electing. Meanwhile a DISCOVER (a
    // fresh MAC each time) goes out every ~150 ms and the server ids of its OFFERs are counted: the old
    // leader still receives the broadcasts, but its leader lease runs out before the majority can elect
    // (DESIGN rule 2), so no DISCOVER gets OFFERs from two servers.
    let mut answered_by: HashMap<Vec<Ipv4Addr>, u32> = HashMap::new();
    let ((minority_view, stepped_down_at), (new, elected_at)) = thread::scope(|scope| {
        let nodes = &cluster.nodes;
        let old_side = scope
            .spawn(|| nodes.wait_health(old, SETTLE_LIMIT, "503 no quorum", |h| matches!(h, Health::NoQuorum { .. })));
        let new_side = scope.spawn(|| nodes.wait_for_leader(&majority, SETTLE_LIMIT, "majority after the partition"));
        let options = ClientOptions::default();
        for i in 0..200 {
            if old_side.is_finished() && new_side.is_finished() {
                break;
            }
            let xid = client.send_discover(test_mac(1_000 + i), &options).expect("send a DISCOVER");
            let replies = client.collect_replies(xid, Duration::from_millis(150)).expect("collect OFFERs");
            let servers: BTreeSet<Ipv4Addr> =
                replies.iter().filter(|r| r.is(MessageType::Offer)).filter_map(|r| r.server_id).collect();
            *answered_by.entry(servers.into_iter().collect()).or_default() += 1;
        }
        (old_side.join().expect("the old leader's watcher"), new_side.join().expect("the majority's watcher"))
    });
    let overlap = stepped_down_at.saturating_duration_since(elected_at);
    println!(
        "partition: old leader node {old} answered 503 no quorum after {:?} ({minority_view:?}); node {new} \
         elected by the majority after {:?}; two nodes claimed leadership for up to {overlap:?}",
        stepped_down_at.duration_since(cut_at),
        elected_at.duration_since(cut_at)
    );
    let mut tally: Vec<_> = answered_by.into_iter().collect();
    tally.sort();
    println!("partition: DISCOVERs sent meanwhile, by the set of servers that OFFERed: {tally:?}");
    assert!(
        tally.iter().all(|(servers, _)| servers.len() <= 1),
        "rule 2: a DISCOVER during the leader change got OFFERs from two servers: {tally:?}"
    );

    // The majority serves a new client.
    let fresh = client
        .dora_with(test_mac(301), &ClientOptions::default(), &fast_retry(), Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("a new client during the partition: {e}\n{}", cluster.logs()));
    println!("partition: new client ACKed {} by {} in {:?}", fresh.address, fresh.server_id, fresh.elapsed);
    assert_eq!(fresh.server_id, node_ip(new), "the majority's leader serves new clients");
    cluster.wait_bound_everywhere(&majority, fresh.address, &format_mac(fresh.mac), "majority during the partition");

    // Every OFFER to a broadcast DISCOVER comes from the new leader: the old one (which still receives it)
    // makes no offer.
    let options = ClientOptions::default();
    let probe_mac = test_mac(302);
    for round in 0..5 {
        let xid = client.send_discover(probe_mac, &options).expect("send a DISCOVER");
        let replies = client.collect_replies(xid, Duration::from_millis(700)).expect("collect replies");
        let servers: Vec<Option<Ipv4Addr>> = replies.iter().map(|r| r.server_id).collect();
        assert!(
            replies.iter().any(|r| r.is(MessageType::Offer)),
            "DISCOVER {round} during the partition got no OFFER (replies from {servers:?})"
        );
        assert!(
            servers.iter().all(|s| *s == Some(node_ip(new))),
            "DISCOVER {round} during the partition: every reply must come from the new leader {}; got {servers:?}",
            node_ip(new)
        );
    }
    // A SELECTING REQUEST naming the old leader: it binds nothing (no ACK from anyone).
    let xid = client.next_xid();
    let stale = ClientMessage::Request(RequestState::Selecting { requested_ip: POOL_END, server_id: node_ip(old) });
    client.send(probe_mac, xid, &stale, &options, Target::Broadcast).expect("send a REQUEST");
    let replies = client.collect_replies(xid, Duration::from_secs(1)).expect("collect replies");
    assert!(
        !replies.iter().any(|r| r.is(MessageType::Ack)),
        "a REQUEST for {POOL_END} naming the partitioned old leader was ACKed: {replies:?}"
    );
    assert!(cluster.server(old).lease_of(POOL_END).is_none(), "the old leader recorded a binding for {POOL_END}");

    // RENEWING, unicast to the old leader's server identifier: confirmed, but only for what remains of the
    // committed lease (DESIGN rule 5), and nothing new is written.
    wait_for_next_second();
    let sent_at = unix_now();
    let renewed = client
        .extend(&held, false, &options, &fast_retry(), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("RENEWING to the partitioned old leader: {e}\n{}", cluster.logs()));
    let granted = renewed.lease_time_secs.expect("option 51 in the ACK");
    let remaining = committed.expires_at.saturating_sub(sent_at);
    println!(
        "partition: RENEW unicast to the old leader {} ACKed by {:?} with {granted} s (committed lease: {remaining} s \
         left of {LEASE_SECS} s)",
        node_ip(old),
        renewed.server_id
    );
    assert_eq!(renewed.server_id, Some(node_ip(old)), "the node a RENEW is addressed to answers it");
    assert_eq!(renewed.yiaddr, held.address);
    assert!(
        u64::from(granted) <= remaining + 1 && u64::from(granted) < LEASE_SECS,
        "the minority confirmed {granted} s; the committed lease has {remaining} s left: never beyond (DESIGN rule 5)"
    );
    let after = cluster.server(old).lease_of(held.address).expect("the held lease, after the renewal");
    assert_eq!(after.expires_at, committed.expires_at, "the minority wrote a new expiry for {}", held.address);
    assert!(matches!(health(cluster.ns(old)), Health::NoQuorum { .. }), "the old leader must still be without quorum");

    // Heal: one leader for all three, equal tables, no address held twice.
    let healed_at = Instant::now();
    partition.heal();
    let (leader, agreed_at) = cluster.wait_for_leader(&[1, 2, 3], SETTLE_LIMIT, "after healing");
    let (set, converged) = cluster.wait_converged(&[1, 2, 3], SETTLE_LIMIT, "after healing");
    println!(
        "healed: all 3 nodes follow node {leader} after {:?}; tables equal ({} leases) {converged:?} later",
        agreed_at.duration_since(healed_at),
        set.len()
    );
    assert_no_double_binding(&cluster, &[1, 2, 3], "after healing");
    for lease in [&held, &fresh] {
        assert!(
            set.contains(&(lease.address, format_mac(lease.mac), "bound".to_owned())),
            "{} for {} must be bound on every node after healing: {set:?}",
            lease.address,
            format_mac(lease.mac)
        );
    }
}

// ---------------------------------------------------------------------------------------------------------
// 4. Exactly one node answers

#[test]
fn exactly_one_node_answers_each_broadcast_discover() {
    let _serial = serial();
    let segment = Segment::up(NODES, 1, 24);
    let dir = scratch_dir("cluster-one-answer");
    let cluster = Cluster::start(&segment, dir.path());
    let (leader, _) = cluster.wait_for_leader(&[1, 2, 3], SETTLE_LIMIT, "start");
    let mut client = test_client(&segment.client(1));
    let options = ClientOptions::default();
    const ROUNDS: u32 = 20;
    // All DISCOVERs at once, then every reply that arrives within the window, by xid.
    let window = Duration::from_secs(1);
    let macs: Vec<_> = (0..ROUNDS).map(|i| test_mac(400 + i)).collect();
    let xids: Vec<u32> =
        macs.iter().map(|&mac| client.send_discover(mac, &options).expect("send a DISCOVER")).collect();
    let offers = collect_all(&mut client, window);
    let mut requests = Vec::new();
    for (i, (&mac, xid)) in macs.iter().zip(&xids).enumerate() {
        let replies = offers.get(xid).map(Vec::as_slice).unwrap_or_default();
        let servers: Vec<Option<Ipv4Addr>> = replies.iter().map(|r| r.server_id).collect();
        assert!(
            replies.len() == 1 && replies[0].is(MessageType::Offer) && servers[0] == Some(node_ip(leader)),
            "DISCOVER {i}: expected exactly one OFFER, from the leader {}; got {} replies from {servers:?}",
            node_ip(leader),
            replies.len()
        );
        let offered = replies[0].yiaddr;
        let request =
            ClientMessage::Request(RequestState::Selecting { requested_ip: offered, server_id: node_ip(leader) });
        client.send(mac, *xid, &request, &options, Target::Broadcast).expect("send a REQUEST");
        requests.push((*xid, offered));
    }
    let acks = collect_all(&mut client, window);
    for (i, (xid, offered)) in requests.iter().enumerate() {
        let replies = acks.get(xid).map(Vec::as_slice).unwrap_or_default();
        let servers: Vec<Option<Ipv4Addr>> = replies.iter().map(|r| r.server_id).collect();
        assert!(
            replies.len() == 1 && replies[0].is(MessageType::Ack) && replies[0].yiaddr == *offered,
            "REQUEST {i}: expected exactly one ACK for {offered}, got {} replies from {servers:?}: {replies:?}",
            replies.len()
        );
    }
    // Followers saw every DISCOVER and said nothing.
    for id in (1..=NODES).filter(|&id| id != leader) {
        let metrics = cluster.server(id).metrics();
        let silent = metric(&metrics, "leasehold_silent_total", "reason=\"not_leader\"").unwrap_or(0.0);
        assert!(silent >= f64::from(2 * ROUNDS), "follower node {id} counted {silent} not_leader silences");
        let sent: f64 = ["offer", "ack", "nak"]
            .iter()
            .filter_map(|t| metric(&metrics, "leasehold_packets_sent_total", &format!("type=\"{t}\"")))
            .sum();
        assert_eq!(sent, 0.0, "follower node {id} sent {sent} replies");
    }
    println!("one answer: {ROUNDS} DISCOVERs and {ROUNDS} REQUESTs, each answered once, by the leader node {leader}");
}
