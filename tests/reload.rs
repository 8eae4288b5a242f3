//! Reloading the config of a running node (issue 12, "Reload without restart"), on a namespace
//! segment with real clients, one `leasehold serve` process throughout:
//!
//! 1. the node starts with a pool of two addresses, both bound: a new client gets no OFFER;
//! 2. a file that does not check (`POST /v1/config/reload` → 400, naming file and key) and a file that
//!    changes a key only a restart can take (409, naming the key) change nothing: the digest in
//!    `/healthz` stays, and the pool is still full;
//! 3. `leasehold reload` takes a file with a second pool and a reservation for dhclient's MAC: ISC
//!    dhclient gets its reserved address and a new client gets one from the new pool;
//! 4. SIGHUP takes a file with a reservation for udhcpc's MAC: busybox udhcpc gets it.

mod netns_support;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use leasehold_tests::{
    test_mac, ClientConfig, ClientMessage, ClientOptions, MessageType, RetryPolicy, Target, TestClient,
};
use netns_support::cluster::{Cluster, Pools};
use netns_support::*;

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const DHCLIENT_RESERVED: Ipv4Addr = Ipv4Addr::new(10, 77, 9, 9);
const UDHCPC_RESERVED: Ipv4Addr = Ipv4Addr::new(10, 77, 9, 10);

fn config(extra: &str) -> String {
    format!(
        r#"# Written by tests/reload.rs.
[server]
server_ip = "{SERVER_IP}"

[[pool]]
name = "small"
subnet = "10.77.0.0/16"
range_start = "10.77.0.100"
range_end = "10.77.0.101"
lease_time_secs = 600
{extra}"#
    )
}

const EXTRA_POOL: &str = r#"
[[pool]]
name = "extra"
subnet = "10.77.0.0/16"
range_start = "10.77.5.10"
range_end = "10.77.5.20"
lease_time_secs = 600
"#;

fn reservation(mac: &str, ip: Ipv4Addr) -> String {
    format!("\n[[reservation]]\nmac = \"{mac}\"\nip = \"{ip}\"\n")
}

fn digest(ns: &str) -> String {
    let (code, body) = admin::admin(ns, "GET", "/healthz", None);
    assert_eq!(code, 200, "GET /healthz: {body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("/healthz is JSON");
    health["config_digest"].as_str().unwrap_or_else(|| panic!("/healthz has no config_digest: {body}")).to_string()
}

/// DISCOVER from `mac`: the OFFER's address, or `None` when no OFFER comes within `limit`.
fn offer(client: &mut TestClient, mac: [u8; 6], limit: Duration) -> Option<Ipv4Addr> {
    let xid = client.next_xid();
    let policy = RetryPolicy::default();
    let discover = ClientMessage::Discover { requested_ip: None };
    let options = ClientOptions::default();
    client
        .exchange(
            mac,
            xid,
            &discover,
            &options,
            Target::Broadcast,
            &[MessageType::Offer],
            &policy,
            Instant::now() + limit,
        )
        .ok()
        .map(|reply| reply.yiaddr)
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write the config file");
}

#[test]
fn reload_adds_a_pool_and_reservations_live_and_a_bad_file_changes_nothing() {
    let segment = Segment::up(1, 3, 16);
    let dir = scratch_dir("reload");
    let file = dir.path().join("leasehold.toml");
    write(&file, &config(""));
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("create the data dir");
    let file_arg = file.to_str().expect("UTF-8 path");
    let mut server =
        Server::start(&segment.server(1), &data, &dir.path().join("leasehold.log"), &["--config", file_arg]);
    let ns = server.ns.clone();
    let pid = server.proc.pid;
    let first_digest = digest(&ns);

    // 1. Both addresses of the pool bound: a third client is offered nothing.
    let mut client =
        TestClient::bind(ClientConfig::in_namespace(&segment.client(3), "eth0")).expect("open the test client");
    let policy = RetryPolicy::default();
    for n in 1..=2 {
        let lease = client.dora_with(test_mac(n), &ClientOptions::default(), &policy, Duration::from_secs(10));
        lease.unwrap_or_else(|e| panic!("client {n}: a DORA in the small pool: {e:?}"));
    }
    assert_eq!(offer(&mut client, test_mac(3), Duration::from_secs(2)), None, "the small pool is full");

    // 2a. A file that does not check: 400, every problem with file and key; nothing changes.
    write(&file, &config("[[pool]]\nname = \"broken\"\nsubnet = \"10.77.0.0/16\"\nrange_start = \"10.77.6.20\"\nrange_end = \"10.77.6.10\"\n"));
    let (code, body) = admin::admin(&ns, "POST", "/v1/config/reload", None);
    assert_eq!(code, 400, "a file that does not check is refused: {body}");
    assert!(body.contains("leasehold.toml") && body.contains("pool"), "the refusal names file and key: {body}");
    // 2b. A key only a restart can take: 409 naming it; nothing changes.
    write(&file, &format!("{}\n[limits]\nmax_frame_bytes = 2048\n", config(EXTRA_POOL)));
    let (code, body) = admin::admin(&ns, "POST", "/v1/config/reload", None);
    assert_eq!(code, 409, "a restart-only key is refused: {body}");
    assert!(body.contains("limits.max_frame_bytes"), "the refusal names the key: {body}");
    assert_eq!(digest(&ns), first_digest, "refused reloads leave the config as it was");
    assert_eq!(offer(&mut client, test_mac(3), Duration::from_secs(2)), None, "still only the small pool");

    // 3. `leasehold reload`: a second pool and dhclient's reservation.
    let dhclient_ns = segment.client(1);
    let dhclient_mac = mac_of(&dhclient_ns, "eth0");
    write(&file, &format!("{}{}", config(EXTRA_POOL), reservation(&dhclient_mac, DHCLIENT_RESERVED)));
    let mut cli = in_ns(&ns, leasehold_bin());
    cli.args(["reload", "--admin", &format!("127.0.0.1:{ADMIN_PORT}")]);
    run_ok("leasehold reload", cli, &dir.path().join("reload.log"), Duration::from_secs(20));
    let second_digest = digest(&ns);
    assert_ne!(second_digest, first_digest, "the reload changed the digest");
    let from_new_pool = offer(&mut client, test_mac(3), Duration::from_secs(5)).expect("an OFFER after the reload");
    assert!(
        (Ipv4Addr::new(10, 77, 5, 10)..=Ipv4Addr::new(10, 77, 5, 20)).contains(&from_new_pool),
        "the new client is offered an address of the new pool, got {from_new_pool}"
    );
    let dhclient_dir = subdir(dir.path(), "dhclient");
    let mut dhclient = Dhclient::new(&dhclient_ns, &dhclient_dir);
    dhclient.run("-1", Duration::from_secs(40));
    let bound = dhclient.events.expect(&["BOUND"], Duration::from_secs(10), "dhclient after the reload");
    assert_eq!(event_ip(&bound, "dhclient"), DHCLIENT_RESERVED, "dhclient gets the reservation added by reload");
    dhclient.run("-x", Duration::from_secs(20));

    // 4. SIGHUP: udhcpc's reservation.
    let udhcpc_ns = segment.client(2);
    let udhcpc_mac = mac_of(&udhcpc_ns, "eth0");
    write(
        &file,
        &format!(
            "{}{}{}",
            config(EXTRA_POOL),
            reservation(&dhclient_mac, DHCLIENT_RESERVED),
            reservation(&udhcpc_mac, UDHCPC_RESERVED)
        ),
    );
    signal(pid, libc::SIGHUP);
    poll_until(
        Duration::from_secs(10),
        || digest(&ns),
        |now| *now != second_digest,
        |now| format!("SIGHUP did not change the digest within 10 s (still {now})"),
    );
    let udhcpc_dir = subdir(dir.path(), "udhcpc");
    let mut events = Events::new(&udhcpc_dir);
    let hook = udhcpc_hook(&udhcpc_dir, &events);
    let mut cmd = in_ns(&udhcpc_ns, require_tool("udhcpc"));
    cmd.args(["-i", "eth0", "-f", "-q", "-n", "-t", "5", "-T", "2", "-s"]).arg(&hook);
    let mut udhcpc = Proc::spawn("udhcpc", cmd, &udhcpc_dir.join("udhcpc.log"));
    let bound = events.expect(&["bound"], Duration::from_secs(30), "udhcpc after SIGHUP");
    assert_eq!(event_ip(&bound, "udhcpc"), UDHCPC_RESERVED, "udhcpc gets the reservation added by SIGHUP");
    udhcpc.expect_success(Duration::from_secs(10));

    // One process throughout, and every lease of the small pool kept.
    assert!(server.proc.try_status().is_none(), "the node never restarted");
    assert_eq!(server.proc.pid, pid);
    for ip in [Ipv4Addr::new(10, 77, 0, 100), Ipv4Addr::new(10, 77, 0, 101)] {
        let lease = server.lease_of(ip).unwrap_or_else(|| panic!("{ip} lost across reloads"));
        assert_eq!(lease.state, "bound", "{ip} stays bound across reloads");
    }
}

/// `/healthz`, as JSON, of the node in `ns`.
fn healthz(ns: &str) -> serde_json::Value {
    let (code, body) = admin::admin(ns, "GET", "/healthz", None);
    assert_eq!(code, 200, "GET /healthz: {body}");
    serde_json::from_str(&body).expect("/healthz is JSON")
}

/// `leasehold reload` against the node in `ns`; it must succeed.
fn cli_reload(ns: &str, log: &Path) {
    let mut cli = in_ns(ns, leasehold_bin());
    cli.args(["reload", "--admin", &format!("127.0.0.1:{ADMIN_PORT}")]);
    run_ok("leasehold reload", cli, log, Duration::from_secs(20));
}

/// Issue 12, "every node must run the same lease-relevant config": the leader puts the digest of its
/// config in the Raft log; a member whose file digests otherwise says so in `/healthz`
/// (`config_mismatch`), in `/metrics` (`leasehold_config_mismatch 1`) and, on the leader, in
/// `GET /v1/cluster` (its `config_digest`, flagged) and `leasehold cluster status`; reloading the same
/// file everywhere clears it, and the log then carries the new digest.
#[test]
fn a_member_whose_config_differs_says_so_until_every_node_runs_the_same_file() {
    let segment = Segment::up(3, 0, 24);
    let dir = scratch_dir("reload-cluster");
    let pool = "[[pool]]\nname = \"segment\"\nsubnet = \"10.77.0.0/24\"\nrange_start = \"10.77.0.100\"\n\
                range_end = \"10.77.0.200\"\nlease_time_secs = 600\n";
    let cluster = Cluster::start_pools(&segment, dir.path(), Pools::Toml(pool.to_owned()));
    let nodes = [1, 2, 3];
    let (leader, _) = cluster.wait_for_leader(&nodes, Duration::from_secs(20), "start");
    let odd = if leader == 3 { 2 } else { 3 };

    // At start every file is the same: the leader's digest reaches the log and nobody differs.
    let same = |step: &str| -> String {
        let views = poll_until(
            Duration::from_secs(15),
            || nodes.iter().map(|&id| healthz(cluster.ns(id))).collect::<Vec<_>>(),
            |views| {
                views.iter().all(|v| {
                    v["config_mismatch"] == serde_json::json!(false)
                        && v["cluster_config_digest"] == views[0]["config_digest"]
                })
            },
            |views| format!("{step}: the nodes' /healthz never agreed: {views:?}"),
        );
        views[0]["config_digest"].as_str().expect("a digest").to_owned()
    };
    let first = same("every node runs the file the log names");

    // One follower's file gains a reservation, and only that node reloads it.
    let reserved = "\n[[reservation]]\nmac = \"02:00:00:00:12:01\"\nip = \"10.77.0.150\"\n";
    let file = |id: u32| dir.path().join(format!("node{id}.toml"));
    let with_reservation = |id: u32| {
        let text = std::fs::read_to_string(file(id)).expect("read a node's config");
        write(&file(id), &format!("{text}{reserved}"));
    };
    with_reservation(odd);
    cli_reload(cluster.ns(odd), &dir.path().join("reload-odd.log"));
    let odd_view = poll_until(
        Duration::from_secs(15),
        || healthz(cluster.ns(odd)),
        |view| view["config_mismatch"] == serde_json::json!(true),
        |view| format!("n{odd} never reported its config differs: {view}"),
    );
    let odd_digest = odd_view["config_digest"].as_str().expect("a digest").to_owned();
    assert_ne!(odd_digest, first, "the reservation is lease-relevant: {odd_view}");
    assert_eq!(odd_view["cluster_config_digest"].as_str(), Some(first.as_str()), "the log still names the leader's");
    let metrics = cluster.server(odd).metrics();
    assert_eq!(metric(&metrics, "leasehold_config_mismatch", ""), Some(1.0), "n{odd}'s leasehold_config_mismatch");
    let others_metrics = cluster.server(leader).metrics();
    assert_eq!(metric(&others_metrics, "leasehold_config_mismatch", ""), Some(0.0), "the leader's own is 0");

    // The leader names the odd member in its view, and the table of `cluster status` marks it.
    let want: Vec<(u64, bool)> = nodes.iter().map(|&id| (u64::from(id), id == odd)).collect();
    let flagged = poll_until(
        Duration::from_secs(15),
        || {
            let (code, body) = admin::admin(cluster.ns(leader), "GET", "/v1/cluster", None);
            assert_eq!(code, 200, "GET /v1/cluster: {body}");
            let view: serde_json::Value = serde_json::from_str(&body).expect("/v1/cluster is JSON");
            view["members"].as_array().cloned().unwrap_or_default()
        },
        |members| {
            let flags: Vec<(u64, bool)> = members
                .iter()
                .map(|m| (m["id"].as_u64().unwrap_or(0), m["config_mismatch"].as_bool().unwrap_or(false)))
                .collect();
            flags == want
        },
        |members| format!("the leader's view never flagged only n{odd}: {members:?}"),
    );
    let odd_member = flagged.iter().find(|m| m["id"].as_u64() == Some(u64::from(odd))).expect("the odd member");
    assert_eq!(odd_member["config_digest"].as_str(), Some(odd_digest.as_str()), "{odd_member}");
    let mut status = in_ns(cluster.ns(leader), leasehold_bin());
    status.args(["cluster", "status", "--admin", &format!("127.0.0.1:{ADMIN_PORT}")]);
    let out = status.output().expect("run leasehold cluster status");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "leasehold cluster status failed: {}", String::from_utf8_lossy(&out.stderr));
    let odd_row = table.lines().find(|l| l.starts_with(&format!("{odd} "))).unwrap_or_else(|| panic!("{table}"));
    assert!(odd_row.contains(&format!("{odd_digest} !")), "n{odd}'s row is not marked:\n{table}");

    // The same file on the other two nodes, reloaded: the leader's new digest goes into the log and
    // every node agrees again.
    for id in nodes.into_iter().filter(|&id| id != odd) {
        with_reservation(id);
        cli_reload(cluster.ns(id), &dir.path().join(format!("reload-{id}.log")));
    }
    let last = same("every node runs the new file");
    assert_eq!(last, odd_digest, "the log names the new config");
}
