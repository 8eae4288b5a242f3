//! Reservations made over the admin API of a three-node cluster, replicated through the Raft log, with
//! real processes and real clients in network namespaces (README "Admin API"; DESIGN.md rules 1, 2, 6).
//!
//! RFC 2131 §1 calls a reservation "manual allocation": "a client's IP address is assigned by the network
//! administrator, and DHCP is used simply to convey the assigned address to the client"; and §4.3.1 has a
//! server offer first "the client's current address as recorded in the client's current binding". So the
//! reserved address is the client's, whichever node answers (the Raft leader, for broadcasts), and it is
//! never offered to anyone else.
//!
//! Every test builds its own segment (`scripts/netns.sh up NAME 3 N`: 3 servers, 1 or 2 clients) and
//! starts the cluster of netns_support/cluster.rs with a config file per node (`Pools::Toml`): one pool
//! 10.77.0.100–10.77.0.200 in 10.77.0.0/24 and one `[[reservation]]` of the config file
//! (02:52:00:00:00:0c → 10.77.0.60). Then:
//!
//! 1. `reservations_over_the_api_replicate_to_every_node_and_conflicts_are_refused`: a PUT on the leader,
//!    `leasehold reservations add` run in the leader's namespace and a PUT on a follower (forwarded through
//!    Raft) are each answered 200 once committed (DESIGN rule 1: nothing is acknowledged before a majority
//!    has it); all three nodes' `GET /v1/reservations` then list exactly the config row and the three API
//!    rows. A reservation of an address leased to another client (a TestClient DORA first) gets 409 naming
//!    the address and its holder, on the leader, on a follower and through the CLI (exit 1, the message
//!    on stderr); an address reserved for another MAC, the config file's address or MAC get 409; an
//!    address outside every pool subnet, a bad MAC and a bad body get 400; none of them is replicated.
//!    DORA of the reserved MACs gets their addresses, host names and boot files; changing one (PUT again)
//!    replaces it; `leasehold reservations remove` and DELETE on a follower remove API rows everywhere;
//!    a second DELETE is 404; the config file's reservation cannot be deleted (409, CLI exit 1).
//! 2. `a_reserved_address_is_served_by_the_new_leader_after_failover_and_survives_a_restart`: the pool's
//!    first address, 10.77.0.100, is reserved on the leader; a DORA from another MAC gets another address.
//!    SIGKILL of the leader (by PID); during the failover another MAC's DORA and a DISCOVER asking for the
//!    reserved address (option 50) get other addresses from the new leader (DESIGN rule 2), and a
//!    SELECTING REQUEST naming the reserved address gets a NAK (DESIGN rule 3); busybox udhcpc, whose eth0
//!    has the reserved MAC, is then bound to exactly 10.77.0.100 by the new leader, with the reservation's
//!    host name (option 12) and boot file, and both survivors' /v1/leases show it bound to that MAC. The
//!    killed node, restarted on its data directory (a snapshot every 2 entries, so it starts from its own
//!    snapshot, taken after the reservation, and catches up from the new leader: DESIGN rule 6), lists the
//!    reservation; DELETE on the current leader removes it from all three; with two nodes killed, a PUT on
//!    the last one is 503 and changes nothing.
//! 3. `a_reservation_names_a_client_address_and_wins_over_an_offer_held_for_another`: a reservation is
//!    refused for the subnet's network and broadcast addresses (not host addresses, RFC 1122 §3.2.1.3,
//!    just as a pool's range may not include them) and for any cluster member's server address, on the
//!    leader and on a follower (each node refuses its own, so a member's address must be refused by all,
//!    or some leader hands a server's address to a client); and an address offered to another client a
//!    moment before it was reserved is, once the reservation is committed, the reserved MAC's at once:
//!    the other client's REQUEST gets a NAK and the reserved MAC's DORA gets the address (RFC 2131 §4.3.1).
//!    Every check is made and the violations are reported together.
//!
//! The tests of this file run one at a time (a lock): each runs three servers on a 2-core machine. Every
//! wait is on an event (a process exit, a client's hook, a reply) or polls the admin API with a deadline
//! where replication gives no event; every loop is bounded. Processes are killed by PID only; all traffic
//! stays in the test's namespaces, which are removed when the test ends, also on failure.

mod netns_support;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use leasehold_tests::{
    format_mac, test_mac, ClientConfig, ClientMessage, ClientOptions, HarnessError, MessageType, RequestState,
    RetryPolicy, Target, TestClient,
};
use netns_support::admin::{admin, reservations, Reservation};
use netns_support::cluster::*;
use netns_support::*;

/// The pool of every node.
const POOL_START: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
const POOL_END: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 200);
/// The config file's reservation (the same in every node's file).
const CONFIG_MAC: &str = "02:52:00:00:00:0c";
const CONFIG_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 60);
const CONFIG_HOSTNAME: &str = "cfg-host";
const CONFIG_BOOT_FILE: &str = "cfg.efi";
/// How long an election, a restart or a replicated change may take to show everywhere.
const SETTLE_LIMIT: Duration = Duration::from_secs(20);
/// A client must be served within this long after the leader is killed (one election is 1–2 s).
const FAILOVER_LIMIT: Duration = Duration::from_secs(8);

static SERIAL: Mutex<()> = Mutex::new(());

/// One test at a time (see the module documentation); a failed test does not block the other.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The `[[pool]]` and `[[reservation]]` tables of every node's config file, plus `extra` TOML.
fn config_toml(extra: &str) -> String {
    format!(
        r#"{extra}
[[pool]]
name = "segment"
subnet = "10.77.0.0/24"
range_start = "{POOL_START}"
range_end = "{POOL_END}"
lease_time_secs = {CLUSTER_LEASE_SECS}

[[reservation]]
mac = "{CONFIG_MAC}"
ip = "{CONFIG_IP}"
hostname = "{CONFIG_HOSTNAME}"
boot_file = "{CONFIG_BOOT_FILE}"
"#
    )
}

fn row(mac: &str, ip: Ipv4Addr, hostname: Option<&str>, boot_file: Option<&str>, source: &str) -> Reservation {
    Reservation {
        mac: mac.to_owned(),
        ip,
        hostname: hostname.map(str::to_owned),
        boot_file: boot_file.map(str::to_owned),
        source: source.to_owned(),
    }
}

fn config_row() -> Reservation {
    row(CONFIG_MAC, CONFIG_IP, Some(CONFIG_HOSTNAME), Some(CONFIG_BOOT_FILE), "config")
}

fn sorted(mut rows: Vec<Reservation>) -> Vec<Reservation> {
    rows.sort();
    rows
}

fn in_pool(ip: Ipv4Addr) -> bool {
    (u32::from(POOL_START)..=u32::from(POOL_END)).contains(&u32::from(ip))
}

fn mac_bytes(text: &str) -> [u8; 6] {
    let octets: Vec<u8> = text.split(':').map(|o| u8::from_str_radix(o, 16).expect("a hex octet")).collect();
    octets.try_into().expect("six octets")
}

// ---------------------------------------------------------------------------------------------------------
// The admin API and the CLI, printed as a transcript

/// `METHOD path [body]` on node `id`'s admin API; prints request and answer.
fn call(cluster: &Cluster, id: u32, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let started = Instant::now();
    let (code, answer) = admin(cluster.ns(id), method, path, body);
    let shown = body.map(|b| format!(" {b}")).unwrap_or_default();
    println!("  node {id}: {method} {path}{shown}\n    → {code} {} ({:?})", answer.trim_end(), started.elapsed());
    (code, answer)
}

fn json(text: &str, what: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: the answer is not JSON ({e}): {text}"))
}

/// The `error` of a `{"error": "..."}` answer.
fn error_of(text: &str, what: &str) -> String {
    let value = json(text, what);
    value["error"].as_str().unwrap_or_else(|| panic!("{what}: no \"error\" string in {value}")).to_owned()
}

/// A PUT that must be refused with `code`; returns the error message (for 409 the `{"error"}` body).
fn put_refused(cluster: &Cluster, id: u32, mac: &str, body: &str, code: u16, why: &str) -> String {
    let (got, answer) = call(cluster, id, "PUT", &format!("/v1/reservations/{mac}"), Some(body));
    assert_eq!(got, code, "PUT {mac} {body} on node {id} ({why}) must be refused with {code}; got {got}: {answer}");
    answer
}

/// What a `leasehold` command printed and how it ended.
#[derive(Debug)]
struct CliRun {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `leasehold ARGS… --admin 127.0.0.1:6767` inside node `id`'s namespace, bounded by `timeout 20`.
fn cli(cluster: &Cluster, id: u32, args: &[&str]) -> CliRun {
    let timeout = require_tool("timeout");
    let started = Instant::now();
    let out = Command::new(timeout)
        .args(["--kill-after=2", "20", "ip", "netns", "exec", cluster.ns(id)])
        .arg(leasehold_bin())
        .args(args)
        .args(["--admin", &format!("127.0.0.1:{ADMIN_PORT}")])
        .output()
        .expect("run leasehold through timeout(1)");
    let run = CliRun {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    println!(
        "  node {id}: $ leasehold {} --admin 127.0.0.1:{ADMIN_PORT}\n    → exit {:?} ({:?}); stdout: {}; stderr: {}",
        args.join(" "),
        run.code,
        started.elapsed(),
        run.stdout.trim_end(),
        run.stderr.trim_end()
    );
    assert_ne!(run.code, Some(124), "leasehold {args:?} did not finish within 20 s");
    run
}

/// Polls (no event to wait on: followers apply asynchronously) until every node in `ids` lists exactly
/// `expected`; returns how long that took.
fn wait_reservations(cluster: &Cluster, ids: &[u32], expected: &[Reservation], step: &str) -> Duration {
    let started = Instant::now();
    let expected = sorted(expected.to_vec());
    for &id in ids {
        let left = SETTLE_LIMIT.saturating_sub(started.elapsed());
        poll_until(
            left,
            || reservations(cluster.ns(id)),
            |rows| *rows == expected,
            |rows| {
                format!(
                    "{step}: node {id}'s GET /v1/reservations did not become {expected:#?} within {SETTLE_LIMIT:?}; \
                     it lists {rows:#?}\n{}",
                    cluster.logs()
                )
            },
        );
    }
    started.elapsed()
}

/// The `snapshot_index` of the `raft log opened` line of a node's log (term format: `key: value, …`).
fn snapshot_index_at_open(log: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains("raft log opened"))?;
    let (_, rest) = line.split_once("snapshot_index: ")?;
    rest.split([',', ' ']).next()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------------------
// Clients

fn test_client(ns: &str) -> TestClient {
    TestClient::bind(ClientConfig::in_namespace(ns, "eth0"))
        .unwrap_or_else(|e| panic!("open the test client's socket in {ns}: {e}"))
}

/// DISCOVER, then a SELECTING REQUEST for what was offered, step by step: the ACKed address (if any) and
/// the exchange as text ("DISCOVER → OFFER a from s; REQUEST → NAK \"why\"").
fn dora_steps(client: &mut TestClient, mac: [u8; 6]) -> (Option<Ipv4Addr>, String) {
    let options = ClientOptions::default();
    let policy = RetryPolicy::fixed(4, Duration::from_millis(500));
    let xid = client.next_xid();
    let discover = ClientMessage::Discover { requested_ip: None };
    let deadline = Instant::now() + Duration::from_secs(2);
    let offer = match client.exchange(
        mac,
        xid,
        &discover,
        &options,
        Target::Broadcast,
        &[MessageType::Offer],
        &policy,
        deadline,
    ) {
        Ok(offer) => offer,
        Err(e) => return (None, format!("DISCOVER → {e}")),
    };
    let Some(server_id) = offer.server_id else {
        return (None, format!("DISCOVER → OFFER {} without option 54", offer.yiaddr));
    };
    let steps = format!("DISCOVER → OFFER {} from {server_id}", offer.yiaddr);
    let request = ClientMessage::Request(RequestState::Selecting { requested_ip: offer.yiaddr, server_id });
    let deadline = Instant::now() + Duration::from_secs(2);
    let expected = [MessageType::Ack, MessageType::Nak];
    match client.exchange(mac, xid, &request, &options, Target::Broadcast, &expected, &policy, deadline) {
        Ok(reply) if reply.is(MessageType::Ack) => {
            (Some(reply.yiaddr), format!("{steps}; REQUEST → ACK {}", reply.yiaddr))
        }
        Ok(reply) => (None, format!("{steps}; REQUEST → NAK {:?}", reply.option_text(56).unwrap_or_default())),
        Err(e) => (None, format!("{steps}; REQUEST → {e}")),
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy::fixed(60, Duration::from_millis(200))
}

/// What busybox udhcpc was bound with.
#[derive(Debug)]
struct Udhcpc {
    ip: Ipv4Addr,
    server_id: String,
    hostname: String,
    boot_file: String,
    took: Duration,
}

/// `udhcpc -n -q` (one lease, then exit) in namespace `ns` whose eth0 is first given `mac`
/// (`ip -n NS link set dev eth0 address MAC`). It asks for option 67 (`-O bootfile`), so the boot file
/// of a reservation comes back; the hook reports "<event> <ip> <server id> <host name> <boot file>".
fn udhcpc_with_mac(ns: &str, mac: &str, dir: &Path, limit: Duration) -> Udhcpc {
    let udhcpc = require_tool("udhcpc");
    let out = Command::new("ip").args(["-n", ns, "link", "set", "dev", "eth0", "address", mac]).output();
    let out = out.expect("run ip link set address");
    assert!(
        out.status.success(),
        "ip -n {ns} link set dev eth0 address {mac}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mac_of(ns, "eth0"), mac, "{ns}'s eth0 must carry the reserved MAC");
    let mut events = Events::new(dir);
    let hook = dir.join("udhcpc-hook.sh");
    write_script(
        &hook,
        &format!(
            r#"#!/bin/sh
# udhcpc hook of the reservation test: configures only $interface and reports
# "<event> <address> <server id> <host name (option 12)> <boot file (option 67)>".
case "$1" in
bound|renew)
    ip -4 addr flush dev "$interface"
    ip -4 addr replace "$ip/$mask" dev "$interface"
    ;;
deconfig)
    ip -4 addr flush dev "$interface"
    ;;
esac
echo "$1 ${{ip:--}} ${{serverid:--}} ${{hostname:--}} ${{bootfile:--}}" > {fifo}
"#,
            fifo = events.path.display()
        ),
    );
    let mut cmd = in_ns(ns, udhcpc);
    cmd.args(["-i", "eth0", "-n", "-q", "-f", "-t", "10", "-T", "1", "-O", "bootfile", "-s"]).arg(&hook);
    let started = Instant::now();
    let mut proc = Proc::spawn("udhcpc -n -q", cmd, &dir.join("udhcpc.log"));
    let bound = events.expect(&["bound"], limit, "udhcpc with the reserved MAC");
    let took = started.elapsed();
    proc.expect_success(Duration::from_secs(10));
    let word = |i: usize| bound.get(i).cloned().unwrap_or_default();
    Udhcpc { ip: event_ip(&bound, "udhcpc"), server_id: word(2), hostname: word(3), boot_file: word(4), took }
}

// ---------------------------------------------------------------------------------------------------------
// 1. Replication, conflicts, removal

#[test]
fn reservations_over_the_api_replicate_to_every_node_and_conflicts_are_refused() {
    let _serial = serial();
    let test_started = Instant::now();
    let segment = Segment::up(NODES, 1, 24);
    let dir = scratch_dir("reservations-api");
    let cluster = Cluster::start_pools(&segment, dir.path(), Pools::Toml(config_toml("")));
    let (leader, _) = cluster.wait_for_leader(&[1, 2, 3], SETTLE_LIMIT, "start");
    let followers: Vec<u32> = (1..=NODES).filter(|&id| id != leader).collect();
    let (f1, f2) = (followers[0], followers[1]);
    println!("cluster: leader node {leader}, followers {followers:?}, after {:?}", test_started.elapsed());

    println!("every node lists the config file's reservation, and nothing else:");
    wait_reservations(&cluster, &[1, 2, 3], &[config_row()], "at start");

    println!("three reservations: PUT on the leader, the CLI on the leader, PUT on a follower:");
    let (code, answer) = call(
        &cluster,
        leader,
        "PUT",
        "/v1/reservations/02:52:00:00:00:a1",
        Some(r#"{"ip": "10.77.0.50", "hostname": "web1", "boot_file": "x.efi"}"#),
    );
    assert_eq!(code, 200, "PUT on the leader: {answer}");
    assert_eq!(
        json(&answer, "PUT a1"),
        serde_json::json!({"mac": "02:52:00:00:00:a1", "ip": "10.77.0.50", "hostname": "web1",
                           "boot_file": "x.efi", "source": "api"}),
        "the PUT answers the reservation it committed"
    );
    let added =
        cli(&cluster, leader, &["reservations", "add", "02:52:00:00:00:A2", "10.77.0.51", "--hostname", "web2"]);
    assert_eq!(added.code, Some(0), "leasehold reservations add on the leader: {added:?}");
    assert_eq!(
        json(&added.stdout, "CLI add a2"),
        serde_json::json!({"mac": "02:52:00:00:00:a2", "ip": "10.77.0.51", "hostname": "web2",
                           "boot_file": null, "source": "api"}),
        "the CLI prints the reservation, its MAC normalised to lower case"
    );
    let (code, answer) =
        call(&cluster, f1, "PUT", "/v1/reservations/02-52-00-00-00-a3", Some(r#"{"ip": "10.77.0.52"}"#));
    assert_eq!(code, 200, "PUT on follower {f1} (forwarded through Raft): {answer}");
    assert_eq!(
        json(&answer, "PUT a3"),
        serde_json::json!({"mac": "02:52:00:00:00:a3", "ip": "10.77.0.52", "hostname": null,
                           "boot_file": null, "source": "api"})
    );
    let mut expected = vec![
        config_row(),
        row("02:52:00:00:00:a1", Ipv4Addr::new(10, 77, 0, 50), Some("web1"), Some("x.efi"), "api"),
        row("02:52:00:00:00:a2", Ipv4Addr::new(10, 77, 0, 51), Some("web2"), None, "api"),
        row("02:52:00:00:00:a3", Ipv4Addr::new(10, 77, 0, 52), None, None, "api"),
    ];
    let took = wait_reservations(&cluster, &[1, 2, 3], &expected, "after three PUTs");
    println!("replicated: all 3 nodes list the same {} reservations ({took:?} after the last PUT)", expected.len());

    println!("one reservation, and the list, read from the followers:");
    let (code, answer) = call(&cluster, f2, "GET", "/v1/reservations/02:52:00:00:00:a1", None);
    assert_eq!(code, 200, "GET one reservation on follower {f2}: {answer}");
    assert_eq!(
        json(&answer, "GET a1"),
        serde_json::json!({"mac": "02:52:00:00:00:a1", "ip": "10.77.0.50", "hostname": "web1",
                           "boot_file": "x.efi", "source": "api"})
    );
    let (code, answer) = call(&cluster, f2, "GET", &format!("/v1/reservations/{CONFIG_MAC}"), None);
    assert_eq!(code, 200, "GET the config file's reservation on follower {f2}: {answer}");
    assert_eq!(
        json(&answer, "GET config"),
        serde_json::json!({"mac": CONFIG_MAC, "ip": CONFIG_IP.to_string(), "hostname": CONFIG_HOSTNAME,
                           "boot_file": CONFIG_BOOT_FILE, "source": "config"})
    );
    let (code, answer) = call(&cluster, f2, "GET", "/v1/reservations/02:52:00:00:00:ff", None);
    assert_eq!(code, 404, "GET of a MAC without a reservation: {answer}");
    let listed = cli(&cluster, f2, &["reservations", "list", "--json"]);
    assert_eq!(listed.code, Some(0), "{listed:?}");
    let rows: Vec<Reservation> =
        serde_json::from_str(&listed.stdout).expect("reservations list --json is a JSON array");
    assert_eq!(sorted(rows), sorted(expected.clone()), "the CLI's list on follower {f2}");
    let table = cli(&cluster, f1, &["reservations", "list"]);
    assert_eq!(table.code, Some(0), "{table:?}");
    assert!(
        table.stdout.contains("4 reservation(s)") && table.stdout.contains("02:52:00:00:00:a3"),
        "the CLI's table on follower {f1}: {}",
        table.stdout
    );

    println!("conflicts: an address leased to another client (a TestClient DORA first):");
    let mut client = test_client(&segment.client(1));
    let holder = test_mac(1);
    let lease =
        client.dora(holder, Duration::from_secs(10)).unwrap_or_else(|e| panic!("DORA: {e}\n{}", cluster.logs()));
    println!("  DORA {} → {} from {}", format_mac(holder), lease.address, lease.server_id);
    assert!(in_pool(lease.address), "{} is outside the pool", lease.address);
    assert_eq!(lease.server_id, node_ip(leader), "the leader answers broadcast DORA (DESIGN rule 2)");
    cluster.wait_bound_everywhere(&[1, 2, 3], lease.address, &format_mac(holder), "the holder's lease");
    let leased_body = format!(r#"{{"ip": "{}"}}"#, lease.address);
    for id in [leader, f1] {
        let answer = put_refused(&cluster, id, "02:52:00:00:00:b1", &leased_body, 409, "the address is leased");
        let why = error_of(&answer, "409 for a leased address");
        assert!(
            why.contains(&lease.address.to_string()) && why.contains("leased") && why.contains(&format_mac(holder)),
            "the 409 must say that {} is leased and to whom ({}): {why:?}",
            lease.address,
            format_mac(holder)
        );
    }
    let refused = cli(&cluster, leader, &["reservations", "add", "02:52:00:00:00:b1", &lease.address.to_string()]);
    assert_eq!(refused.code, Some(1), "the CLI must fail on a 409: {refused:?}");
    assert!(
        refused.stderr.contains("409") && refused.stderr.contains(&format!("{} is leased", lease.address)),
        "the CLI must print the server's reason on stderr: {refused:?}"
    );
    assert_eq!(refused.stdout, "", "nothing on stdout for a refusal");

    println!("conflicts: reserved for another MAC, the config file's address and MAC:");
    let answer = put_refused(&cluster, leader, "02:52:00:00:00:b1", r#"{"ip": "10.77.0.50"}"#, 409, "reserved for a1");
    let why = error_of(&answer, "409 for a reserved address");
    assert!(why.contains("10.77.0.50") && why.contains("02:52:00:00:00:a1"), "must name the holder: {why:?}");
    let body = format!(r#"{{"ip": "{CONFIG_IP}"}}"#);
    let answer = put_refused(&cluster, leader, "02:52:00:00:00:b1", &body, 409, "the config file's address");
    assert!(error_of(&answer, "409 config ip").contains("config file"), "{answer}");
    let answer = put_refused(&cluster, leader, CONFIG_MAC, r#"{"ip": "10.77.0.61"}"#, 409, "the config file's MAC");
    assert!(error_of(&answer, "409 config mac").contains("config file"), "{answer}");

    println!("bad requests: outside every pool subnet, a bad MAC, bad bodies:");
    let answer = put_refused(&cluster, leader, "02:52:00:00:00:b1", r#"{"ip": "10.99.0.5"}"#, 400, "outside the pools");
    assert!(error_of(&answer, "400 outside").contains("10.99.0.5"), "must name the address: {answer}");
    put_refused(&cluster, leader, "not-a-mac", r#"{"ip": "10.77.0.70"}"#, 400, "a bad MAC");
    put_refused(&cluster, f1, "02:52:00:00:00:b1", r#"{"ip": "10.77.0"}"#, 400, "a bad address");
    put_refused(&cluster, leader, "02:52:00:00:00:b1", r#"{"hostname": "x"}"#, 400, "no address");
    put_refused(&cluster, leader, "02:52:00:00:00:b1", r#"{"ip": "10.77.0.70", "colour": "red"}"#, 400, "unknown key");
    for id in 1..=NODES {
        let (code, answer) = call(&cluster, id, "GET", "/v1/reservations/02:52:00:00:00:b1", None);
        assert_eq!(code, 404, "a refused reservation must not exist on node {id}: {answer}");
    }
    assert_eq!(reservations(cluster.ns(leader)), sorted(expected.clone()), "the refusals changed nothing");

    println!("DHCP: the reserved MACs get their addresses (RFC 2131 §4.3.1), the config file's too:");
    for (mac, ip, hostname, file) in [
        ("02:52:00:00:00:a1", Ipv4Addr::new(10, 77, 0, 50), Some("web1"), Some("x.efi")),
        (CONFIG_MAC, CONFIG_IP, Some(CONFIG_HOSTNAME), Some(CONFIG_BOOT_FILE)),
    ] {
        let lease = client.dora(mac_bytes(mac), Duration::from_secs(10)).unwrap_or_else(|e| panic!("DORA {mac}: {e}"));
        println!(
            "  DORA {mac} → {} from {}, host name {:?}, file {:?}",
            lease.address,
            lease.server_id,
            lease.ack.option_text(12),
            lease.ack.file
        );
        assert_eq!(lease.offer.yiaddr, ip, "the OFFER to {mac} is its reserved address");
        assert_eq!(
            (lease.address, lease.server_id, lease.ack.option_text(12).as_deref(), lease.ack.file.as_deref()),
            (ip, node_ip(leader), hostname, file),
            "{mac}'s ACK: the reserved address, from the leader, with the reservation's host name and boot file"
        );
        cluster.wait_bound_everywhere(&[1, 2, 3], ip, mac, "a reserved MAC's lease");
    }

    println!("change a reservation: PUT again for the same MAC replaces it:");
    let (code, answer) =
        call(&cluster, leader, "PUT", "/v1/reservations/02:52:00:00:00:a2", Some(r#"{"ip": "10.77.0.53"}"#));
    assert_eq!(code, 200, "{answer}");
    let changed = expected.iter_mut().find(|r| r.mac == "02:52:00:00:00:a2").expect("a2 is expected");
    changed.ip = Ipv4Addr::new(10, 77, 0, 53);
    changed.hostname = None;
    wait_reservations(&cluster, &[1, 2, 3], &expected, "after the change");

    println!("remove: the CLI on the leader, DELETE on a follower; the config file's cannot be removed:");
    let removed = cli(&cluster, leader, &["reservations", "remove", "02:52:00:00:00:a2"]);
    assert_eq!(removed.code, Some(0), "{removed:?}");
    assert_eq!(json(&removed.stdout, "CLI remove"), serde_json::json!({"status": "removed"}));
    let (code, answer) = call(&cluster, f2, "DELETE", "/v1/reservations/02:52:00:00:00:a3", None);
    assert_eq!((code, json(&answer, "DELETE a3")), (200, serde_json::json!({"status": "removed"})));
    expected.retain(|r| r.mac != "02:52:00:00:00:a2" && r.mac != "02:52:00:00:00:a3");
    let took = wait_reservations(&cluster, &[1, 2, 3], &expected, "after the removals");
    println!("removed everywhere: {} reservations left on all 3 nodes ({took:?})", expected.len());
    let (code, answer) = call(&cluster, leader, "DELETE", "/v1/reservations/02:52:00:00:00:a3", None);
    assert_eq!(code, 404, "a second DELETE finds nothing: {answer}");
    let (code, answer) = call(&cluster, leader, "DELETE", &format!("/v1/reservations/{CONFIG_MAC}"), None);
    assert_eq!(code, 409, "the config file's reservation cannot be deleted over the API: {answer}");
    assert!(error_of(&answer, "DELETE config").contains("config file"), "{answer}");
    let refused = cli(&cluster, f1, &["reservations", "remove", CONFIG_MAC]);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(refused.stderr.contains("409") && refused.stderr.contains("config file"), "{refused:?}");
    wait_reservations(&cluster, &[1, 2, 3], &expected, "after the refused removals");
    assert_no_double_binding(&cluster, &[1, 2, 3], "at the end");
    println!("test took {:?}", test_started.elapsed());
}

// ---------------------------------------------------------------------------------------------------------
// 2. Failover and restart

#[test]
fn a_reserved_address_is_served_by_the_new_leader_after_failover_and_survives_a_restart() {
    let _serial = serial();
    let test_started = Instant::now();
    let segment = Segment::up(NODES, 2, 24);
    let dir = scratch_dir("reservations-failover");
    // A snapshot (and log compaction) every 2 applied entries: the leader snapshots after the reservation
    // and one binding, so when restarted it starts from its own snapshot, then catches up from the new
    // leader.
    let toml = config_toml("[limits]\nsnapshot_every_entries = 2\n");
    let mut cluster = Cluster::start_pools(&segment, dir.path(), Pools::Toml(toml));
    let (leader, _) = cluster.wait_for_leader(&[1, 2, 3], SETTLE_LIMIT, "start");
    println!("cluster: leader node {leader} after {:?}", test_started.elapsed());

    // The pool's first address: a fresh pool hands it to the first client that comes.
    let reserved_mac = "02:52:00:00:00:d1";
    let reserved_ip = POOL_START;
    println!("reserve {reserved_ip} for {reserved_mac} on the leader:");
    let (code, answer) = call(
        &cluster,
        leader,
        "PUT",
        &format!("/v1/reservations/{reserved_mac}"),
        Some(&format!(r#"{{"ip": "{reserved_ip}", "hostname": "web1", "boot_file": "x.efi"}}"#)),
    );
    assert_eq!(code, 200, "{answer}");
    let reserved = row(reserved_mac, reserved_ip, Some("web1"), Some("x.efi"), "api");
    let expected = vec![config_row(), reserved.clone()];
    wait_reservations(&cluster, &[1, 2, 3], &expected, "after the PUT");

    let mut client = test_client(&segment.client(1));
    let before = client.dora(test_mac(10), Duration::from_secs(10)).expect("DORA before the kill");
    println!("  DORA {} → {} from {}", format_mac(test_mac(10)), before.address, before.server_id);
    assert!(in_pool(before.address) && before.address != reserved_ip, "another MAC got {}", before.address);

    // SIGKILL the leader. Another MAC asks at once, retransmitting every 200 ms, while the survivors'
    // /healthz is watched for the new leader.
    let _capture = Capture::start(&segment.client(2), &dir.path().join("client2.pcap.txt"));
    let survivors: Vec<u32> = (1..=NODES).filter(|&id| id != leader).collect();
    let killed_at = cluster.kill(leader);
    println!("node {leader} (the leader) killed with SIGKILL");
    let (other, (new_leader, elected_at)) = thread::scope(|scope| {
        let nodes = &cluster.nodes;
        let watcher = scope.spawn(|| nodes.wait_for_leader(&survivors, SETTLE_LIMIT, "after the kill"));
        let lease = client.dora_with(test_mac(11), &ClientOptions::default(), &fast_retry(), Duration::from_secs(15));
        (lease, watcher.join().expect("the health watcher panicked"))
    });
    let other = other.unwrap_or_else(|e| panic!("another MAC's DORA after the kill: {e}\n{}", cluster.logs()));
    let gap = killed_at.elapsed();
    let new_leader_ip = node_ip(new_leader);
    println!(
        "  node {new_leader} leader {:?} after the kill; DORA {} → {} from {} {gap:?} after the kill",
        elected_at.duration_since(killed_at),
        format_mac(test_mac(11)),
        other.address,
        other.server_id,
    );
    assert!(gap <= FAILOVER_LIMIT, "a client waited {gap:?} after the leader's kill; the limit is {FAILOVER_LIMIT:?}");
    assert_eq!(other.server_id, new_leader_ip, "the new leader answers broadcast DORA (DESIGN rule 2)");
    assert!(in_pool(other.address) && other.address != reserved_ip, "another MAC was given {}", other.address);
    assert_ne!(other.address, before.address, "two clients, two addresses");

    // Another MAC asks for the reserved address by name: a DISCOVER with option 50, then a SELECTING
    // REQUEST naming it and the new leader.
    let intruder = test_mac(12);
    let xid = client.next_xid();
    let deadline = Instant::now() + Duration::from_secs(5);
    let discover = ClientMessage::Discover { requested_ip: Some(reserved_ip) };
    let offer = client
        .exchange(
            intruder,
            xid,
            &discover,
            &ClientOptions::default(),
            Target::Broadcast,
            &[MessageType::Offer],
            &fast_retry(),
            deadline,
        )
        .unwrap_or_else(|e| panic!("DISCOVER asking for {reserved_ip}: {e}\n{}", cluster.logs()));
    println!(
        "  DISCOVER {} asking for {reserved_ip} (option 50) → OFFER {} from {:?}",
        format_mac(intruder),
        offer.yiaddr,
        offer.server_id
    );
    assert!(
        offer.yiaddr != reserved_ip && in_pool(offer.yiaddr),
        "the reserved address was offered to {}",
        format_mac(intruder)
    );
    let request =
        ClientMessage::Request(RequestState::Selecting { requested_ip: reserved_ip, server_id: new_leader_ip });
    let deadline = Instant::now() + Duration::from_secs(3);
    let answer = client.exchange(
        intruder,
        xid,
        &request,
        &ClientOptions::default(),
        Target::Broadcast,
        &[MessageType::Ack, MessageType::Nak],
        &RetryPolicy::fixed(3, Duration::from_millis(500)),
        deadline,
    );
    match &answer {
        Ok(reply) => println!(
            "  REQUEST {} for {reserved_ip} (SELECTING, server {new_leader_ip}) → {:?} {} {:?}",
            format_mac(intruder),
            reply.message_type,
            reply.yiaddr,
            reply.option_text(56)
        ),
        Err(e) => println!("  REQUEST {} for {reserved_ip} → {e}", format_mac(intruder)),
    }
    match answer {
        Ok(reply) if reply.is(MessageType::Nak) => {}
        Ok(reply) => {
            panic!("a SELECTING REQUEST from {} for the reserved {reserved_ip} got {reply:?}", format_mac(intruder))
        }
        Err(HarnessError::Timeout { .. }) => {
            panic!(
                "DESIGN rule 3: a REQUEST for an address the committed state gives to another gets a NAK, not silence"
            )
        }
        Err(e) => panic!("REQUEST for the reserved address: {e}"),
    }

    // The reserved MAC's real client.
    println!("busybox udhcpc with eth0 = {reserved_mac}:");
    let bound =
        udhcpc_with_mac(&segment.client(2), reserved_mac, &subdir(dir.path(), "udhcpc"), Duration::from_secs(20));
    println!(
        "  udhcpc bound {} from {} (host name {}, boot file {}) in {:?}, {:?} after the kill",
        bound.ip,
        bound.server_id,
        bound.hostname,
        bound.boot_file,
        bound.took,
        killed_at.elapsed()
    );
    assert_eq!(
        (bound.ip, bound.server_id.as_str(), bound.hostname.as_str(), bound.boot_file.as_str()),
        (reserved_ip, new_leader_ip.to_string().as_str(), "web1", "x.efi"),
        "RFC 2131 §4.3.1: the reserved address is the client's, from the new leader, with the reservation's host \
         name and boot file"
    );
    cluster.wait_bound_everywhere(&survivors, reserved_ip, reserved_mac, "the reserved MAC's lease");
    for &id in &survivors {
        let lease = cluster.server(id).lease_of(reserved_ip).expect("bound above");
        println!("  node {id}: /v1/leases has {} {} {} {:?}", lease.ip, lease.mac, lease.state, lease.hostname);
        assert_eq!(lease.hostname.as_deref(), Some("web1"), "node {id}'s lease carries the reservation's host name");
    }
    let holders: Vec<(u32, Vec<String>)> = cluster
        .tables(&survivors)
        .into_iter()
        .map(|(id, t)| (id, t.iter().filter(|l| l.ip == reserved_ip).map(|l| l.mac.to_ascii_lowercase()).collect()))
        .collect();
    for (id, macs) in &holders {
        assert_eq!(macs, &[reserved_mac.to_owned()], "node {id} has one record for {reserved_ip}: {reserved_mac}'s");
    }
    assert_no_double_binding(&cluster, &survivors, "after the failover");

    // Restart the killed node on its data directory.
    println!("restart node {leader} on its data directory:");
    let restarted = Instant::now();
    cluster.restart(leader);
    cluster.wait_health(
        leader,
        SETTLE_LIMIT,
        "led by the new leader",
        |h| matches!(h, Health::Led { leader_id, .. } if *leader_id == u64::from(new_leader)),
    );
    let took = wait_reservations(&cluster, &[leader], &expected, "the restarted node");
    println!("  node {leader} healthy after {:?}, lists the reservation {took:?} later", restarted.elapsed());
    let log = std::fs::read_to_string(cluster.log(leader, 2)).expect("the restarted node's log");
    for line in log.lines().filter(|l| l.contains("snapshot")) {
        println!("  node {leader}'s log: {line}");
    }
    let snapshot_index = snapshot_index_at_open(&log);
    assert!(
        snapshot_index.is_some_and(|index| index > 0),
        "DESIGN rule 6: the restarted node must start from its own snapshot (taken every 2 entries, and it applied \
         the reservation and a binding before the kill); its `raft log opened` line says {snapshot_index:?}"
    );
    let (set, converged) = cluster.wait_converged(&[1, 2, 3], SETTLE_LIMIT, "after the restart");
    println!("  lease tables of all 3 nodes equal ({} leases) {converged:?} later", set.len());
    assert!(set.contains(&(reserved_ip, reserved_mac.to_owned(), "bound".to_owned())), "{set:?}");

    // DELETE on the current leader: gone everywhere. The config file's stays.
    let (current, _) = cluster.wait_for_leader(&[1, 2, 3], SETTLE_LIMIT, "after the restart");
    println!("remove it on the current leader, node {current}:");
    let (code, answer) = call(&cluster, current, "DELETE", &format!("/v1/reservations/{reserved_mac}"), None);
    assert_eq!((code, json(&answer, "DELETE")), (200, serde_json::json!({"status": "removed"})));
    let took = wait_reservations(&cluster, &[1, 2, 3], &[config_row()], "after the DELETE");
    println!("  gone from all 3 nodes ({took:?}); only the config file's is left");
    let (code, answer) = call(&cluster, current, "DELETE", &format!("/v1/reservations/{reserved_mac}"), None);
    assert_eq!(code, 404, "{answer}");
    let (code, answer) = call(&cluster, current, "DELETE", &format!("/v1/reservations/{CONFIG_MAC}"), None);
    assert_eq!(code, 409, "the config file's reservation cannot be deleted over the API: {answer}");
    assert!(error_of(&answer, "DELETE config").contains("config file"), "{answer}");

    // No quorum: two nodes down, a PUT on the last one is 503 and leaves nothing behind (DESIGN rule 1).
    let last = (1..=NODES).find(|&id| id != current).expect("another node");
    for id in (1..=NODES).filter(|&id| id != last) {
        cluster.kill(id);
    }
    println!("nodes other than {last} killed; without a quorum:");
    let (code, answer) =
        call(&cluster, last, "PUT", "/v1/reservations/02:52:00:00:00:d2", Some(r#"{"ip": "10.77.0.55"}"#));
    assert_eq!(code, 503, "a PUT without a quorum must be 503: {answer}");
    assert_eq!(reservations(cluster.ns(last)), vec![config_row()], "the refused PUT left nothing behind");
    println!("test took {:?}", test_started.elapsed());
}

// ---------------------------------------------------------------------------------------------------------
// 3. Addresses a reservation may not name, and offers held for others

#[test]
fn a_reservation_names_a_client_address_and_wins_over_an_offer_held_for_another() {
    let _serial = serial();
    let test_started = Instant::now();
    let segment = Segment::up(NODES, 1, 24);
    let dir = scratch_dir("reservations-addresses");
    let cluster = Cluster::start_pools(&segment, dir.path(), Pools::Toml(config_toml("")));
    let (leader, _) = cluster.wait_for_leader(&[1, 2, 3], SETTLE_LIMIT, "start");
    let follower = (1..=NODES).find(|&id| id != leader).expect("a follower");
    println!("cluster: leader node {leader}, follower node {follower}");
    let mut client = test_client(&segment.client(1));
    let mut violations: Vec<String> = Vec::new();

    println!("addresses that are not a client's: network, broadcast, cluster members' server addresses:");
    let network = Ipv4Addr::new(10, 77, 0, 0);
    let broadcast = Ipv4Addr::new(10, 77, 0, 255);
    let cases = [
        ("02:52:00:00:00:e1", network, leader, "the subnet's network address"),
        ("02:52:00:00:00:e2", broadcast, leader, "the subnet's broadcast address"),
        ("02:52:00:00:00:e3", node_ip(leader), leader, "the leader's own server address"),
        ("02:52:00:00:00:e4", node_ip(follower), leader, "a follower's server address, PUT on the leader"),
        ("02:52:00:00:00:e5", node_ip(leader), follower, "the leader's server address, PUT on a follower"),
    ];
    for (mac, ip, on, what) in cases {
        let (code, answer) =
            call(&cluster, on, "PUT", &format!("/v1/reservations/{mac}"), Some(&format!(r#"{{"ip": "{ip}"}}"#)));
        if code == 400 || code == 409 {
            continue;
        }
        // Accepted: what does a client with that MAC get from the leader?
        let (_, offered) = dora_steps(&mut client, mac_bytes(mac));
        println!("    {mac}: {offered}");
        violations.push(format!(
            "PUT {mac} {{\"ip\": \"{ip}\"}} ({what}) on node {on} answered {code} {}, expected 400 or 409; then {mac}: \
             {offered}",
            answer.trim_end()
        ));
    }

    println!("an address offered to another client, then reserved:");
    let other = test_mac(4);
    let xid = client.next_xid();
    let discover = ClientMessage::Discover { requested_ip: None };
    let deadline = Instant::now() + Duration::from_secs(5);
    let offer = client
        .exchange(
            other,
            xid,
            &discover,
            &ClientOptions::default(),
            Target::Broadcast,
            &[MessageType::Offer],
            &fast_retry(),
            deadline,
        )
        .unwrap_or_else(|e| panic!("DISCOVER from {}: {e}\n{}", format_mac(other), cluster.logs()));
    let held = offer.yiaddr;
    println!("  DISCOVER {} → OFFER {held} from {:?} (held for it)", format_mac(other), offer.server_id);
    let reserved_mac = "02:52:00:00:00:e6";
    let (code, answer) = call(
        &cluster,
        leader,
        "PUT",
        &format!("/v1/reservations/{reserved_mac}"),
        Some(&format!(r#"{{"ip": "{held}"}}"#)),
    );
    assert_eq!(code, 200, "{held} is only offered, not leased: the reservation is allowed ({answer})");
    let request = ClientMessage::Request(RequestState::Selecting { requested_ip: held, server_id: node_ip(leader) });
    let deadline = Instant::now() + Duration::from_secs(3);
    let policy = RetryPolicy::fixed(3, Duration::from_millis(500));
    let options = ClientOptions::default();
    let expected = [MessageType::Ack, MessageType::Nak];
    match client.exchange(other, xid, &request, &options, Target::Broadcast, &expected, &policy, deadline) {
        Ok(reply) if reply.is(MessageType::Nak) => {
            println!("  REQUEST {} for {held} → NAK {:?}", format_mac(other), reply.option_text(56));
        }
        other_answer => violations.push(format!(
            "a SELECTING REQUEST from {} for {held}, reserved for {reserved_mac} since, must get a NAK; got \
             {other_answer:?}",
            format_mac(other)
        )),
    }
    let (bound, steps) = dora_steps(&mut client, mac_bytes(reserved_mac));
    println!("  {reserved_mac}: {steps}");
    if bound != Some(held) {
        violations.push(format!(
            "RFC 2131 §4.3.1: {reserved_mac}, right after its reservation of {held} was committed (the address was \
             held as an offer for {}, whose REQUEST was NAKed since), must be bound to {held}; {steps}",
            format_mac(other)
        ));
    }
    assert_no_double_binding(&cluster, &[1, 2, 3], "at the end");
    println!("test took {:?}", test_started.elapsed());
    assert!(
        violations.is_empty(),
        "{} violation(s):\n  {}\n{}",
        violations.len(),
        violations.join("\n  "),
        cluster.logs()
    );
}
