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
//!
//! On a three-node cluster: a member whose config differs says so until every node runs the same
//! file; and `leasehold reload --all`, given one member's admin address, finds every member and
//! reloads them followers first, the leader last, stopping at a file that does not check.

mod netns_support;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use leasehold_tests::{
    test_mac, ClientConfig, ClientMessage, ClientOptions, MessageType, RetryPolicy, Target, TestClient,
};
use netns_support::cluster::{node_ip, Cluster, NodeOptions, Pools, NODES};
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

const CLUSTER_TOKEN: &str = "netns-reload-all-token-7fQ2mX9kLp4w";

/// `GET path` of node `ns`'s admin API with the bearer token (the test's nodes protect reads).
fn get_with_token(ns: &str, path: &str) -> serde_json::Value {
    let auth = format!("Bearer {CLUSTER_TOKEN}");
    let to = std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, ADMIN_PORT));
    let (code, _, body) =
        admin::http_request_with(ns, to, "GET", path, None, &[("Authorization", &auth)], Duration::from_secs(15))
            .unwrap_or_else(|e| panic!("GET {path} in {ns}: {e}"));
    assert_eq!(code, 200, "GET {path} in {ns}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path} in {ns} is not JSON ({e}): {body}"))
}

/// The MACs of the config reservations node `ns` serves by.
fn config_reservations(ns: &str) -> Vec<String> {
    let rows = get_with_token(ns, "/v1/reservations");
    let mut macs: Vec<String> = rows
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["source"] == "config")
        .filter_map(|r| r["mac"].as_str().map(str::to_owned))
        .collect();
    macs.sort();
    macs
}

/// Each member's `admin_addr` in node `ns`'s `GET /v1/cluster`, by id.
fn admin_addrs(ns: &str) -> Vec<(u64, Option<String>)> {
    let view = get_with_token(ns, "/v1/cluster");
    view["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| (m["id"].as_u64().unwrap_or(0), m["admin_addr"].as_str().map(str::to_owned)))
        .collect()
}

/// What `leasehold reload --all` (no list) printed and whether it succeeded, run in `ns` against its
/// own node with the token.
struct CliRun {
    success: bool,
    stdout: String,
    stderr: String,
}

fn reload_all(ns: &str, token_file: &Path) -> CliRun {
    let mut cli = in_ns(ns, leasehold_bin());
    cli.args(["reload", "--admin", &format!("127.0.0.1:{ADMIN_PORT}"), "--all", "--admin-token-file"]).arg(token_file);
    let out = cli.output().expect("run leasehold reload --all");
    let run = CliRun {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    println!("leasehold reload --all in {ns}:\n{}{}", run.stdout, run.stderr);
    run
}

/// The node ids of the "node N (...) at ...: reloaded ..." lines, in the order printed.
fn reloaded_in_order(stdout: &str) -> Vec<u32> {
    stdout
        .lines()
        .filter(|line| line.contains(": reloaded "))
        .filter_map(|line| line.strip_prefix("node ")?.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Issue 12: "`leasehold reload --all` reloads every member in order." Three nodes whose admin APIs
/// listen on 0.0.0.0 with a token that reads need too: each reports its admin address (its peer
/// address's IP with the admin port), the leader's `GET /v1/cluster` names all three and a follower's
/// its own and the leader's. Every file gains a reservation; `leasehold reload --admin <a follower>
/// --all` (no list) reloads all three, the leader last, and every node serves the reservation. Then
/// every file gains another, but the second follower in order gets a file that does not check:
/// `reload --all` through the leader reloads the first follower, fails naming the second and why,
/// and neither it nor the leader changes.
#[test]
fn reload_all_finds_every_member_through_one_and_reloads_the_leader_last() {
    let segment = Segment::up(3, 0, 24);
    let dir = scratch_dir("reload-all");
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{CLUSTER_TOKEN}\n")).expect("write the admin token");
    let pool = format!(
        "[admin]\ntoken_file = \"{}\"\nprotect_reads = true\n\n[[pool]]\nname = \"segment\"\n\
         subnet = \"10.77.0.0/24\"\nrange_start = \"10.77.0.100\"\nrange_end = \"10.77.0.200\"\nlease_time_secs = 600\n",
        token_file.display()
    );
    let everywhere = vec!["--admin-listen".to_string(), format!("0.0.0.0:{ADMIN_PORT}")];
    let options =
        NodeOptions { extra_args: (1..=NODES).map(|_| everywhere.clone()).collect(), ..NodeOptions::default() };
    let nodes = [1, 2, 3];
    let cluster = Cluster::start_with_options(&segment, dir.path(), Pools::Toml(pool), options, &nodes);
    let (leader, _) = cluster.wait_for_leader(&nodes, Duration::from_secs(20), "start");
    let followers: Vec<u32> = nodes.into_iter().filter(|&id| id != leader).collect();
    let admin_of = |id: u32| Some(format!("{}:{ADMIN_PORT}", node_ip(id)));

    // Every member's admin address: all three on the leader, its own and the leader's on a follower.
    let everyone: Vec<(u64, Option<String>)> = nodes.iter().map(|&id| (u64::from(id), admin_of(id))).collect();
    poll_until(
        Duration::from_secs(15),
        || admin_addrs(cluster.ns(leader)),
        |seen| *seen == everyone,
        |seen| format!("the leader n{leader} never named every member's admin address: {seen:?}"),
    );
    for &follower in &followers {
        let want: Vec<(u64, Option<String>)> = nodes
            .iter()
            .map(|&id| (u64::from(id), if id == leader || id == follower { admin_of(id) } else { None }))
            .collect();
        poll_until(
            Duration::from_secs(15),
            || admin_addrs(cluster.ns(follower)),
            |seen| *seen == want,
            |seen| format!("n{follower} never named its own and the leader's admin address: {seen:?}"),
        );
    }
    // `cluster status` shows them in its ADMIN column.
    let mut status = in_ns(cluster.ns(leader), leasehold_bin());
    status.args(["cluster", "status", "--admin", &format!("127.0.0.1:{ADMIN_PORT}"), "--admin-token-file"]);
    let out = status.arg(&token_file).output().expect("run leasehold cluster status");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "leasehold cluster status: {}", String::from_utf8_lossy(&out.stderr));
    assert!(table.contains("ADMIN"), "{table}");
    for id in nodes {
        let row = table.lines().find(|l| l.starts_with(&format!("{id} "))).unwrap_or_else(|| panic!("{table}"));
        assert!(row.contains(&format!("{}:{ADMIN_PORT}", node_ip(id))), "n{id}'s admin address:\n{table}");
    }

    // 1. Every file gains a reservation; reload --all through a follower, no list.
    let file = |id: u32| dir.path().join(format!("node{id}.toml"));
    let append = |id: u32, text: &str| {
        let before = std::fs::read_to_string(file(id)).expect("read a node's config");
        write(&file(id), &format!("{before}{text}"));
    };
    let (first_mac, second_mac) = ("02:00:00:00:12:01", "02:00:00:00:12:02");
    for id in nodes {
        append(id, &reservation(first_mac, Ipv4Addr::new(10, 77, 0, 150)));
        assert!(config_reservations(cluster.ns(id)).is_empty(), "n{id} has no config reservation before the reload");
    }
    let run = reload_all(cluster.ns(followers[0]), &token_file);
    assert!(run.success, "leasehold reload --all failed:\n{}{}", run.stdout, run.stderr);
    let order = reloaded_in_order(&run.stdout);
    assert_eq!(order, vec![followers[0], followers[1], leader], "followers by id, the leader last:\n{}", run.stdout);
    for id in nodes {
        assert!(
            run.stdout.contains(&format!("at {}:{ADMIN_PORT}", node_ip(id))) || id == followers[0],
            "{}",
            run.stdout
        );
        assert_eq!(config_reservations(cluster.ns(id)), vec![first_mac.to_string()], "n{id} serves the new file");
    }

    // 2. Another reservation everywhere, but the second follower's file does not check: through the
    // leader, the first follower is reloaded, the second refuses (named, with the reason), and the
    // leader after it is left alone.
    let broken = followers[1];
    for id in nodes {
        append(id, &reservation(second_mac, Ipv4Addr::new(10, 77, 0, 151)));
    }
    append(broken, "\n[[pool]]\nname = \"broken\"\nsubnet = \"10.77.0.0/24\"\nrange_start = \"10.77.0.220\"\nrange_end = \"10.77.0.210\"\n");
    let run = reload_all(cluster.ns(leader), &token_file);
    assert!(!run.success, "a file that does not check fails the run:\n{}{}", run.stdout, run.stderr);
    assert_eq!(reloaded_in_order(&run.stdout), vec![followers[0]], "only the first follower:\n{}", run.stdout);
    assert!(
        run.stderr.contains(&format!("node {broken} (follower) at {}:{ADMIN_PORT} failed", node_ip(broken)))
            && run.stderr.contains(&format!("node{broken}.toml"))
            && run.stderr.contains(&format!("not reloaded: node {leader}")),
        "the failure names the node, its file and what was left alone:\n{}",
        run.stderr
    );
    let both = vec![first_mac.to_string(), second_mac.to_string()];
    assert_eq!(config_reservations(cluster.ns(followers[0])), both, "the first follower took the new file");
    for id in [broken, leader] {
        assert_eq!(config_reservations(cluster.ns(id)), vec![first_mac.to_string()], "n{id} is unchanged");
    }
}
