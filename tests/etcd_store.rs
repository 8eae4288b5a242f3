//! The etcd lease store on the wire (issue 13): three real etcd members (Debian's `etcd-server`),
//! one in each server namespace of a segment, and three `leasehold serve --store etcd` nodes beside
//! them; real clients (ISC dhclient, busybox udhcpc, dhcpcd) in client namespaces.
//!
//! 1. Each node loads the pool from etcd and one is elected; dhclient binds, and every node's table
//!    has the binding (it came back through each node's watch); dhclient releases and binds again
//!    to the same address; busybox udhcpc binds, renews (SIGUSR1) and releases (SIGUSR2); dhcpcd
//!    binds, renews and releases.
//!    The shared config: the first node seeded `<prefix>/config` from its file; `leasehold reload` on
//!    a node that is not elected writes its new lease time there, and the elected node takes it
//!    through its watch (dhcpcd's next renewal gets it). A document put with `etcdctl` that does not
//!    check is refused by every node, by key (and by `check-config`), and changes nothing; a good one
//!    reaches every node the same way. Boot roots: every node lists every member's digest; one byte
//!    changed in a follower's copy is flagged by the elected node until it is put back. A node cut
//!    off from etcd catches up once back by resuming its watch (no reload); cut off while etcd
//!    compacts past its revision, it loads the pool again.
//! 2. kill -9 of the elected node: another is elected once its etcd lease expires, and a new client
//!    (udhcpc) is bound within the election TTL plus its retransmissions.
//! 3. One etcd member killed: a new client is still bound (etcd keeps a majority).
//! 4. A second member killed: no majority. The nodes report no quorum; dhcpcd, bound just before,
//!    renews (`dhcpcd -N`: a REQUEST in RENEWING, unicast to its server, RFC 2131 §4.4.5) and the
//!    capture on its eth0 shows the surviving node that gave the lease ACK it from its own address
//!    with a lease time above 0 and no longer than what remained of the committed lease, which no
//!    node's table then extends; and nothing new is bound.
//! 5. Both members back: service resumes, and the survivors' tables agree with no address bound to
//!    two clients and every ACKed lease present.
//! 6. SIGTERM of the elected node: it resigns, and the last node is elected at once.
//!
//! Needs root, etcd, etcdctl, dhclient, udhcpc and dhcpcd; fails loudly without them.

mod netns_support;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use leasehold_tests::{Mac, MessageType, ReplyView};
use netns_support::capture::epoch_secs;
use netns_support::*;

const NODES: u32 = 3;
const ELECTION_TTL_SECS: u64 = 2;

fn node_ip(i: u32) -> String {
    format!("10.77.0.{i}")
}

fn endpoints() -> String {
    (1..=NODES).map(|i| format!("http://{}:2379", node_ip(i))).collect::<Vec<_>>().join(",")
}

/// One etcd member in server namespace `i`, with its data directory under `dir`.
fn start_etcd(segment: &Segment, dir: &Path, i: u32) -> Proc {
    let etcd = require_tool("etcd");
    let cluster: Vec<String> = (1..=NODES).map(|j| format!("e{j}=http://{}:2380", node_ip(j))).collect();
    let ip = node_ip(i);
    let mut cmd = in_ns(&segment.server(i), etcd);
    cmd.args(["--name", &format!("e{i}")])
        .arg("--data-dir")
        .arg(dir.join(format!("etcd{i}")))
        .args(["--listen-client-urls", &format!("http://{ip}:2379")])
        .args(["--advertise-client-urls", &format!("http://{ip}:2379")])
        .args(["--listen-peer-urls", &format!("http://{ip}:2380")])
        .args(["--initial-advertise-peer-urls", &format!("http://{ip}:2380")])
        .args(["--initial-cluster", &cluster.join(",")])
        .args(["--initial-cluster-state", "new", "--initial-cluster-token", "leasehold-test"]);
    Proc::spawn(&format!("etcd e{i}"), cmd, &dir.join(format!("etcd{i}.log")))
}

/// kill -9, and wait for the exit.
fn kill9(proc: &mut Proc) {
    signal(proc.pid, libc::SIGKILL);
    assert!(proc.wait_exit(Duration::from_secs(5)).is_some(), "{} did not die", proc.what);
}

/// `etcdctl endpoint health` of the members given, from server namespace `ns`.
fn healthy(ns: &str, members: &[u32]) -> bool {
    let list: Vec<String> = members.iter().map(|i| format!("http://{}:2379", node_ip(*i))).collect();
    let mut cmd = in_ns(ns, require_tool("etcdctl"));
    cmd.env("ETCDCTL_API", "3").args(["--endpoints", &list.join(","), "--command-timeout=2s", "endpoint", "health"]);
    cmd.output().is_ok_and(|out| out.status.success())
}

/// The shared config's key (`[store] prefix` + `/config`).
const CONFIG_KEY: &str = "/leasehold-test/config";

/// Write node `i`'s config file, its pool's lease time `lease_time_secs`.
fn write_node_config(dir: &Path, i: u32, lease_time_secs: u32) -> std::path::PathBuf {
    let config = dir.join(format!("node{i}.toml"));
    std::fs::write(
        &config,
        format!(
            "[server]\nserver_ip = \"{ip}\"\n\n\
             [store]\nkind = \"etcd\"\nendpoints = [{}]\nprefix = \"/leasehold-test\"\nelection_ttl_secs = {ELECTION_TTL_SECS}\n\n\
             [[pool]]\nname = \"segment\"\nsubnet = \"10.77.0.0/24\"\nrange_start = \"10.77.0.100\"\n\
             range_end = \"10.77.0.200\"\nlease_time_secs = {lease_time_secs}\n\n\
             [boot]\nroot = \"{root}\"\ndigest_interval_secs = 1\n",
            endpoints().split(',').map(|e| format!("\"{e}\"")).collect::<Vec<_>>().join(", "),
            ip = node_ip(i),
            root = boot_root(dir, i).display(),
        ),
    )
    .expect("write a node's config");
    config
}

/// Node `i`'s boot root, with one boot file (the same bytes on every node).
fn boot_root(dir: &Path, i: u32) -> std::path::PathBuf {
    let root = dir.join(format!("boot{i}"));
    if !root.exists() {
        std::fs::create_dir_all(&root).expect("create a boot root");
        std::fs::write(root.join("snponly.efi"), b"the same boot file on every node").expect("write a boot file");
    }
    root
}

/// Each member's id, boot root digest and mismatch flag, as node `i`'s `/v1/cluster` lists them.
fn boot_roots_seen_by(segment: &Segment, i: u32) -> Vec<(u64, Option<String>, Option<bool>)> {
    let view = cluster_view(&segment.server(i)).unwrap_or_default();
    let members = view["members"].as_array().cloned().unwrap_or_default();
    members
        .iter()
        .map(|m| {
            let id = m["id"].as_u64().unwrap_or(0);
            (id, m["boot_root_digest"].as_str().map(str::to_owned), m["boot_root_mismatch"].as_bool())
        })
        .collect()
}

/// `boot_root_mismatch_members` of node `i`'s `/healthz`.
fn healthz_mismatches(segment: &Segment, i: u32) -> Option<Vec<u64>> {
    let body = http_get(&segment.server(i), ADMIN_PORT, "/healthz").ok()?.1;
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    json["boot_root_mismatch_members"].as_array().map(|ids| ids.iter().filter_map(|id| id.as_u64()).collect())
}

/// Cut node `i` off from etcd (`true`: its traffic to every member's client port, 2379, dropped in
/// its namespace, the member beside it included) or let it back.
fn cut_off_from_etcd(segment: &Segment, i: u32, cut: bool) {
    let mut cmd = in_ns(&segment.server(i), "iptables");
    cmd.args([if cut { "-I" } else { "-D" }, "OUTPUT", "-p", "tcp", "--dport", "2379", "-j", "DROP"]);
    let out = cmd.output().expect("run iptables");
    assert!(out.status.success(), "iptables in n{i}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Node `i`'s watch resumes and pool reloads, as its `/v1/cluster` counts them.
fn watch_counts(segment: &Segment, i: u32) -> (u64, u64) {
    let view = cluster_view(&segment.server(i)).unwrap_or_default();
    (view["etcd"]["watch_resumes"].as_u64().unwrap_or(0), view["etcd"]["resyncs"].as_u64().unwrap_or(0))
}

/// Cut node `i` off from etcd, wait until its watch has broken (it tried to resume), and bind a new
/// client (MAC ending in `n`) through the elected node meanwhile: its address. `i` stays cut off.
fn cut_off_and_bind_elsewhere(segment: &Segment, dir: &Path, i: u32, n: u8) -> Ipv4Addr {
    let (resumes, _) = watch_counts(segment, i);
    cut_off_from_etcd(segment, i, true);
    poll_until(
        Duration::from_secs(15),
        || watch_counts(segment, i),
        |(now, _)| *now > resumes,
        |counts| format!("n{i}'s watch never broke while cut off from etcd: {counts:?}"),
    );
    new_mac(&segment.client(1), n);
    udhcpc_once(&segment.client(1), dir, 10, &format!("while-n{i}-cut-off-{n}")).expect("bound by the elected node")
}

/// `etcdctl` against the three members, from server namespace `ns`: its output.
fn etcdctl(ns: &str, args: &[&str]) -> String {
    let mut cmd = in_ns(ns, require_tool("etcdctl"));
    cmd.env("ETCDCTL_API", "3").args(["--endpoints", &endpoints(), "--command-timeout=3s"]);
    let out = cmd.args(args).output().expect("run etcdctl");
    assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Node `i`'s shared config as `/v1/cluster` shows it: the revision in force and the refusal of
/// the latest stored one, if any.
fn shared_config_of(segment: &Segment, i: u32) -> (u64, Option<String>) {
    let view = cluster_view(&segment.server(i)).unwrap_or_default();
    (view["etcd"]["config_revision"].as_u64().unwrap_or(0), view["etcd"]["config_error"].as_str().map(str::to_owned))
}

/// Wait until every node in `nodes` runs the shared config of `revision` (or a later one) and
/// refused nothing since.
fn all_take_shared_config(segment: &Segment, nodes: &[u32], revision: u64, step: &str) {
    poll_until(
        Duration::from_secs(10),
        || nodes.iter().map(|i| shared_config_of(segment, *i)).collect::<Vec<_>>(),
        |seen| seen.iter().all(|(at, error)| *at >= revision && error.is_none()),
        |seen| format!("{step}: not every node took the shared config of revision {revision}: {seen:?}"),
    );
}

/// The revision `etcdctl put` wrote at.
fn put_revision(ns: &str, key: &str, value: &str) -> u64 {
    let out = etcdctl(ns, &["put", key, value, "-w", "json"]);
    let json: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("etcdctl put -w json: {e}: {out}"));
    json["header"]["revision"].as_u64().unwrap_or_else(|| panic!("no revision in {out}"))
}

fn start_node(segment: &Segment, dir: &Path, i: u32) -> Server {
    let ip = node_ip(i);
    let id = i.to_string();
    let config = write_node_config(dir, i, 600);
    let data = dir.join(format!("data{i}"));
    let log = dir.join(format!("node{i}.log"));
    let config = config.display().to_string();
    Server::start(&segment.server(i), &data, &log, &["--config", &config, "--server-ip", &ip, "--node-id", &id])
}

fn cluster_view(ns: &str) -> Option<serde_json::Value> {
    match http_get(ns, ADMIN_PORT, "/v1/cluster") {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// The node every live node names as elected, once they agree.
fn elected(segment: &Segment, live: &[u32], limit: Duration, step: &str) -> u32 {
    poll_until(
        limit,
        || {
            let seen: Vec<Option<u64>> =
                live.iter().map(|i| cluster_view(&segment.server(*i)).and_then(|v| v["leader_id"].as_u64())).collect();
            seen
        },
        |seen| seen[0].is_some() && seen.iter().all(|s| *s == seen[0]),
        |seen| format!("{step}: the nodes {live:?} never agreed on an elected node: {seen:?}"),
    )[0]
    .map(|id| id as u32)
    .expect("agreed on one")
}

/// `udhcpc` once in client namespace `ns`: the address bound, or `None` if none within `tries`.
fn udhcpc_once(ns: &str, dir: &Path, tries: u32, what: &str) -> Option<Ipv4Addr> {
    let events = Events::new(&subdir(dir, what));
    let hook = udhcpc_hook(&subdir(dir, what), &events);
    let mut cmd = in_ns(ns, require_tool("udhcpc"));
    cmd.args(["-i", "eth0", "-n", "-q", "-f", "-t", &tries.to_string(), "-T", "1", "-s"]).arg(&hook);
    let out = cmd.output().expect("run udhcpc");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return None;
    }
    let line = text.lines().find(|l| l.contains("lease of")).unwrap_or_else(|| panic!("{what}: {text}"));
    let ip = line.split_whitespace().skip_while(|w| *w != "of").nth(1).expect("an address");
    Some(ip.parse().unwrap_or_else(|_| panic!("{what}: {line}")))
}

/// Give client namespace `ns` a new MAC address: a new client for the server.
fn new_mac(ns: &str, n: u8) {
    let mac = format!("02:e7:cd:00:00:{n:02x}");
    let mut cmd = in_ns(ns, "ip");
    cmd.args(["link", "set", "dev", "eth0", "address", &mac]);
    assert!(cmd.status().expect("run ip").success(), "set {mac} in {ns}");
}

/// The state of `ip`'s record on node `i` (`None`: no record).
fn state_of(segment: &Segment, i: u32, ip: Ipv4Addr) -> Option<String> {
    record_of(segment, i, ip).map(|l| l.state)
}

/// `ip`'s record on node `i`, as `GET /v1/leases` has it (`None`: no record).
fn record_of(segment: &Segment, i: u32, ip: Ipv4Addr) -> Option<Lease> {
    let ns = segment.server(i);
    let leases = all_lease_pages(|path| match http_get(&ns, ADMIN_PORT, path) {
        Ok((200, body)) => Ok(body),
        other => Err(format!("GET {path} on n{i}: {other:?}")),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    leases.into_iter().find(|l| l.ip == ip)
}

/// dhcpcd in client namespace 3 (`netns_support::Dhcpcd`), bound; `renew` (`dhcpcd -n`),
/// `renew_unicast` (`dhcpcd -N`) and `release` (`dhcpcd -k`) drive it.
struct EtcdDhcpcd {
    client: Dhcpcd,
    ip: Ipv4Addr,
}

impl EtcdDhcpcd {
    /// Start it and wait for its binding, in every node's table.
    fn bind(segment: &Segment, dir: &Path, nodes: &[u32]) -> EtcdDhcpcd {
        EtcdDhcpcd::bind_in("dhcpcd", segment, dir, nodes)
    }

    /// The same, with its files in `dir/name` (one directory for each dhcpcd the test starts).
    fn bind_in(name: &str, segment: &Segment, dir: &Path, nodes: &[u32]) -> EtcdDhcpcd {
        let mut client = Dhcpcd::start(&segment.client(3), &subdir(dir, name));
        let bound = client.events.expect(&["BOUND"], Duration::from_secs(40), "dhcpcd bind");
        let ip = event_ip(&bound, "dhcpcd bind");
        for i in nodes {
            poll_until(
                Duration::from_secs(5),
                || state_of(segment, *i, ip),
                |state| state.as_deref() == Some("bound"),
                |state| format!("n{i}: dhcpcd's {ip} is {state:?}"),
            );
        }
        EtcdDhcpcd { client, ip }
    }

    /// `dhcpcd -n`: a REQUEST in RENEWING (RFC 2131 §4.3.2), unicast to the server. The lease time
    /// the ACK gave.
    fn renew(&mut self, step: &str) -> u64 {
        wait_for_next_second();
        self.client.control("dhcpcd -n (renew)", "-n");
        let renewed = self.client.events.expect(
            &["RENEW", "REBIND", "REBOOT", "BOUND", "NAK", "EXPIRE"],
            Duration::from_secs(30),
            step,
        );
        assert!(["RENEW", "REBIND", "REBOOT"].contains(&renewed[0].as_str()), "{step}: {renewed:?}");
        assert_eq!(event_ip(&renewed, step), self.ip, "{step}");
        renewed.get(2).and_then(|w| w.parse().ok()).unwrap_or_else(|| panic!("{step}: no lease time in {renewed:?}"))
    }

    /// `dhcpcd -N`: a REQUEST in RENEWING state (RFC 2131 §4.4.5), unicast to the server that gave
    /// the lease. (dhcpcd sends it on its raw socket and reads the answer on the UDP socket bound to
    /// its address that it keeps open all along; busybox udhcpc 1.35 sends its unicast renewal from a
    /// UDP socket bound to the address and connected to the server, which it then closes: an ACK that
    /// arrives before that close goes to that socket, the most specific match, and is lost with it.
    /// A node without a majority answers a renewal at once, in under a millisecond with no etcd write,
    /// and udhcpc lost that race in 1 run of 8 here.) The lease time the ACK gave.
    fn renew_unicast(&mut self, step: &str) -> u64 {
        self.client.control("dhcpcd -N (renew)", "-N");
        let renewed = self.client.events.expect(
            &["RENEW", "REBIND", "REBOOT", "BOUND", "NAK", "EXPIRE"],
            Duration::from_secs(30),
            step,
        );
        assert_eq!(renewed[0], "RENEW", "{step}: expected an ACK in RENEWING state: {renewed:?}");
        assert_eq!(event_ip(&renewed, step), self.ip, "{step}");
        renewed.get(2).and_then(|w| w.parse().ok()).unwrap_or_else(|| panic!("{step}: no lease time in {renewed:?}"))
    }

    /// `dhcpcd -k`: the RELEASE reaches every node's table.
    fn release(mut self, segment: &Segment, nodes: &[u32]) {
        self.client.control("dhcpcd -k (release)", "-k");
        self.client.daemon.expect_success(Duration::from_secs(15));
        let ip = self.ip;
        for i in nodes {
            poll_until(
                Duration::from_secs(5),
                || state_of(segment, *i, ip),
                |state| state.as_deref() == Some("released"),
                |state| format!("n{i}: dhcpcd's {ip} is {state:?} after -k"),
            );
        }
    }
}

/// The committed expiry (Unix ms) of `ip`'s binding in etcd, read from member `member` alone
/// (`--consistency=s`: a serializable read, which a member without a majority still answers).
fn committed_expiry_ms(segment: &Segment, member: u32, ip: Ipv4Addr) -> u64 {
    let mut cmd = in_ns(&segment.server(member), require_tool("etcdctl"));
    cmd.env("ETCDCTL_API", "3").args(["--endpoints", &format!("http://{}:2379", node_ip(member))]);
    cmd.args(["--command-timeout=2s", "get", "--consistency=s", "--print-value-only"]);
    let out = cmd.arg(format!("/leasehold-test/lease/{ip}")).output().expect("run etcdctl");
    let value = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "etcdctl get {ip}: {}", String::from_utf8_lossy(&out.stderr));
    let at = value.find("\"expires_at_ms\":").map(|at| at + "\"expires_at_ms\":".len());
    let digits: String =
        at.map(|at| value[at..].chars().take_while(char::is_ascii_digit).collect()).unwrap_or_default();
    digits.parse().unwrap_or_else(|_| panic!("no expires_at_ms in etcd's record of {ip}: {value}"))
}

/// A renewal as captured: the first reply to `mac` after `since` (Unix seconds) that answers a
/// REQUEST it sent in RENEWING state for `ip` (`ciaddr` set, no requested address or server
/// identifier, RFC 2131 §4.3.2), with the last such REQUEST before it (a retransmission keeps the
/// xid): both datagrams, and the reply's fields.
fn renewal_on_wire(
    capture: &capture::PcapCapture,
    mac: &Mac,
    ip: Ipv4Addr,
    since: f64,
) -> Option<(capture::Datagram, capture::Datagram, ReplyView)> {
    let datagrams: Vec<capture::Datagram> = capture.datagrams().into_iter().filter(|d| d.at >= since).collect();
    let renewing: Vec<(&capture::Datagram, u32)> = datagrams
        .iter()
        .filter(|d| d.to_port == 67)
        .filter_map(|d| capture::SeenRequest::parse(&d.payload, mac, d.at).map(|r| (d, r)))
        .filter(|(_, r)| {
            r.message_type == Some(3) && r.ciaddr == ip && !r.options.contains_key(&50) && !r.options.contains_key(&54)
        })
        .map(|(d, r)| (d, r.xid))
        .collect();
    datagrams.iter().filter(|d| d.from_port == 67 && d.to_port == 68).find_map(|d| {
        let reply = ReplyView::parse(&d.payload).ok().filter(|r| r.chaddr == *mac)?;
        let (request, _) = renewing.iter().rev().find(|(r, xid)| *xid == reply.xid && r.at <= d.at)?;
        Some(((*request).clone(), d.clone(), reply))
    })
}

/// Bound records by address, as node `i` has them.
fn bound(segment: &Segment, i: u32) -> BTreeMap<String, String> {
    let ns = segment.server(i);
    let leases = all_lease_pages(|path| match http_get(&ns, ADMIN_PORT, path) {
        Ok((200, body)) => Ok(body),
        other => Err(format!("GET {path} on n{i}: {other:?}")),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    leases.into_iter().filter(|l| l.state == "bound").map(|l| (l.ip.to_string(), l.mac)).collect()
}

#[test]
fn three_nodes_on_etcd_bind_fail_over_and_keep_the_minority_rules() {
    require_tool("etcd");
    require_tool("etcdctl");
    // Client namespaces: 1 dhclient (and new clients late on), 2 udhcpc, 3 dhcpcd (its own: dhcpcd
    // changes the interface it runs on).
    let segment = Segment::up(NODES, 3, 24);
    let dir = scratch_dir("etcd-store");
    let mut etcd: Vec<Option<Proc>> = (1..=NODES).map(|i| Some(start_etcd(&segment, dir.path(), i))).collect();
    poll_until(
        Duration::from_secs(30),
        || healthy(&segment.server(1), &[1, 2, 3]),
        |ok| *ok,
        |_| format!("etcd never became healthy:\n{}", tail_of(&dir.path().join("etcd1.log"))),
    );
    let mut nodes: BTreeMap<u32, Server> = (1..=NODES).map(|i| (i, start_node(&segment, dir.path(), i))).collect();
    let all: Vec<u32> = nodes.keys().copied().collect();
    let first = elected(&segment, &all, Duration::from_secs(15), "start");

    // 1. dhclient binds; the binding reaches every node's table through its watch.
    let mut client = Dhclient::new(&segment.client(1), &subdir(dir.path(), "dhclient"));
    client.run("-1", Duration::from_secs(40));
    let words = client.events.expect(&["BOUND"], Duration::from_secs(5), "dhclient bind");
    let ip1 = event_ip(&words, "dhclient bind");
    assert_eq!(words.get(2).map(String::as_str), Some(node_ip(first).as_str()), "the elected node answered");
    for i in &all {
        poll_until(
            Duration::from_secs(5),
            || bound(&segment, *i),
            |table| table.contains_key(&ip1.to_string()),
            |table| format!("n{i} never had dhclient's binding of {ip1}: {table:?}"),
        );
    }

    // dhclient -r: the RELEASE (RFC 2131 §4.4.6) reaches every table; dhclient -1 again: the client
    // returns to its address.
    client.run("-r", Duration::from_secs(20));
    client.events.expect(&["RELEASE"], Duration::from_secs(5), "dhclient release");
    for i in &all {
        poll_until(
            Duration::from_secs(5),
            || state_of(&segment, *i, ip1),
            |state| state.as_deref() == Some("released"),
            |state| format!("n{i}: {ip1} is {state:?} after dhclient -r"),
        );
    }
    client.run("-1", Duration::from_secs(40));
    let words = client.events.expect(&["BOUND"], Duration::from_secs(5), "dhclient bind again");
    assert_eq!(event_ip(&words, "dhclient bind again"), ip1, "a returning client gets its address back");

    // busybox udhcpc binds, renews (SIGUSR1: RENEWING, RFC 2131 §4.4.5) and releases (SIGUSR2,
    // §4.4.6) through the same nodes; each step reaches every node's table.
    let udhcpc_dir = subdir(dir.path(), "udhcpc-daemon");
    let mut events = Events::new(&udhcpc_dir);
    let hook = udhcpc_hook(&udhcpc_dir, &events);
    let mut cmd = in_ns(&segment.client(2), require_tool("udhcpc"));
    cmd.args(["-i", "eth0", "-f", "-t", "10", "-T", "1", "-s"]).arg(&hook);
    let udhcpc_log = udhcpc_dir.join("udhcpc.log");
    let mut udhcpc = Proc::spawn("udhcpc", cmd, &udhcpc_log);
    let bound_words = events.expect(&["bound", "leasefail"], Duration::from_secs(20), "udhcpc bind");
    assert_eq!(bound_words[0], "bound", "{bound_words:?}\n{}", tail_of(&udhcpc_log));
    let udhcpc_ip = event_ip(&bound_words, "udhcpc bind");
    let expiry_of = |i: u32| record_of(&segment, i, udhcpc_ip).map(|l| (l.state, l.expires_at));
    for i in &all {
        poll_until(
            Duration::from_secs(5),
            || expiry_of(*i),
            |record| record.as_ref().is_some_and(|(state, _)| state == "bound"),
            |record| format!("n{i}: udhcpc's {udhcpc_ip} is {record:?}"),
        );
    }
    let bound_until = expiry_of(first).map(|(_, expires)| expires).expect("bound");
    wait_for_next_second();
    signal(udhcpc.pid, libc::SIGUSR1);
    let renewed = events.expect(&["renew", "bound", "nak", "leasefail"], Duration::from_secs(15), "udhcpc renew");
    assert_eq!(renewed[0], "renew", "{renewed:?}\n{}", tail_of(&udhcpc_log));
    assert_eq!(event_ip(&renewed, "udhcpc renew"), udhcpc_ip);
    for i in &all {
        poll_until(
            Duration::from_secs(5),
            || expiry_of(*i),
            |record| record.as_ref().is_some_and(|(state, expires)| state == "bound" && *expires > bound_until),
            |record| format!("n{i}: udhcpc's renewal did not extend {udhcpc_ip} past {bound_until}: {record:?}"),
        );
    }
    signal(udhcpc.pid, libc::SIGUSR2);
    events.expect(&["deconfig"], Duration::from_secs(10), "udhcpc release");
    for i in &all {
        poll_until(
            Duration::from_secs(5),
            || state_of(&segment, *i, udhcpc_ip),
            |state| state.as_deref() == Some("released"),
            |state| format!("n{i}: udhcpc's {udhcpc_ip} is {state:?} after SIGUSR2"),
        );
    }
    udhcpc.stop(Duration::from_secs(5));

    // dhcpcd binds, renews (`-n`) and releases (`-k`) through the same nodes.
    let mut dhcpcd = EtcdDhcpcd::bind(&segment, dir.path(), &all);
    assert_ne!(dhcpcd.ip, ip1);
    assert_eq!(dhcpcd.renew("dhcpcd renew"), 600, "a renewal gets the whole lease time");

    // The shared config: the first node to start created CONFIG_KEY from its file.
    let ns1 = segment.server(1);
    let seeded = etcdctl(&ns1, &["get", CONFIG_KEY, "--print-value-only"]);
    assert!(seeded.contains("10.77.0.100") && seeded.contains("lease_time_secs = 600"), "seeded: {seeded}");
    // `leasehold reload` on a node that is not elected: its file's new lease time goes to etcd, and
    // the elected node, which answers dhcpcd's renewal, takes it through its watch.
    let other = *all.iter().find(|i| **i != first).expect("three nodes");
    write_node_config(dir.path(), other, 1200);
    let admin = format!("127.0.0.1:{ADMIN_PORT}");
    let out = leasehold_in(&segment.server(other), &["reload", "--admin", &admin]);
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.contains("written to etcd at revision"), "reload on n{other}: {said}");
    let written = etcdctl(&ns1, &["get", CONFIG_KEY, "-w", "json"]);
    let written: serde_json::Value = serde_json::from_str(&written).expect("etcdctl get -w json");
    let revision = written["kvs"][0]["mod_revision"].as_u64().expect("the key's revision");
    all_take_shared_config(&segment, &all, revision, "after the reload");
    assert_eq!(dhcpcd.renew("renew after a reload elsewhere"), 1200, "the elected n{first} took n{other}'s reload");

    // etcdctl: a document that does not check (the range leaves the subnet) is refused by every
    // node, naming the key, and changes nothing; check-config says the same.
    let bad = "[[pool]]\nname = \"segment\"\nsubnet = \"10.77.0.0/24\"\nrange_start = \"10.77.0.100\"\n\
               range_end = \"10.78.0.200\"\nlease_time_secs = 60\n";
    put_revision(&ns1, CONFIG_KEY, bad);
    for i in &all {
        poll_until(
            Duration::from_secs(10),
            || shared_config_of(&segment, *i),
            |(at, error)| *at == revision && error.as_deref().is_some_and(|e| e.contains("pool[0].range_end")),
            |seen| format!("n{i} did not refuse the bad shared config by key: {seen:?}"),
        );
        let metrics = http_get(&segment.server(*i), ADMIN_PORT, "/metrics").expect("GET /metrics").1;
        assert_eq!(metric(&metrics, "leasehold_etcd_config_rejected_total", ""), Some(1.0), "n{i}");
    }
    let node_file = dir.path().join(format!("node{first}.toml")).display().to_string();
    let out = leasehold_in(&segment.server(first), &["check-config", &node_file]);
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("pool[0].range_end"),
        "check-config with a bad stored config: {said}"
    );
    assert_eq!(dhcpcd.renew("renew after a refused config"), 1200, "a refused config changes nothing");
    // A good document put with etcdctl reaches every node.
    let good = bad.replace("10.78.0.200", "10.77.0.200").replace("= 60\n", "= 900\n");
    let revision = put_revision(&ns1, CONFIG_KEY, &good);
    all_take_shared_config(&segment, &all, revision, "after etcdctl put");
    let out = leasehold_in(&segment.server(first), &["check-config", &node_file]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success() && said.contains("checks with this file"), "check-config: {said}");
    assert_eq!(dhcpcd.renew("renew after etcdctl put"), 900, "the etcdctl config is in force");
    dhcpcd.release(&segment, &all);

    // Boot roots: each node's digest is in its member key, so every node lists every member's.
    // One byte changed in n{other}'s copy: the elected node flags it (/healthz, /metrics), every
    // node's /v1/cluster marks it, and the flag clears once the byte is put back.
    for i in &all {
        poll_until(
            Duration::from_secs(10),
            || boot_roots_seen_by(&segment, *i),
            |seen| {
                seen.len() == 3
                    && seen.iter().all(|(_, digest, mismatch)| {
                        digest.is_some() && *digest == seen[0].1 && *mismatch == Some(false)
                    })
            },
            |seen| format!("n{i} does not list three members with one boot root digest: {seen:?}"),
        );
    }
    let file = boot_root(dir.path(), other).join("snponly.efi");
    std::fs::write(&file, b"the same boot file on every node!").expect("change a boot file");
    poll_until(
        Duration::from_secs(10),
        || healthz_mismatches(&segment, first),
        |ids| ids.as_deref() == Some(&[u64::from(other)][..]),
        |ids| format!("the elected n{first} did not flag n{other}'s boot root: {ids:?}"),
    );
    let third = *all.iter().find(|i| **i != first && **i != other).expect("three nodes");
    let seen = boot_roots_seen_by(&segment, third);
    assert!(seen.iter().all(|(id, _, mismatch)| *mismatch == Some(*id == u64::from(other))), "n{third}: {seen:?}");
    let metrics = http_get(&segment.server(first), ADMIN_PORT, "/metrics").expect("GET /metrics").1;
    assert_eq!(metric(&metrics, "leasehold_boot_root_mismatch_members", ""), Some(1.0), "{metrics}");
    std::fs::write(&file, b"the same boot file on every node").expect("put the boot file back");
    poll_until(
        Duration::from_secs(10),
        || healthz_mismatches(&segment, first),
        |ids| ids.as_deref() == Some(&[][..]),
        |ids| format!("the flag did not clear once n{other}'s file was put back: {ids:?}"),
    );

    // A node cut off from etcd (its traffic to the client port dropped in its namespace) misses a
    // binding; once back, its watch resumes from its revision and brings it, with no reload of the
    // pool. Cut off again while etcd compacts past its revision: it loads the pool again.
    let resyncs = watch_counts(&segment, other).1;
    let missed = cut_off_and_bind_elsewhere(&segment, dir.path(), other, 0x10);
    cut_off_from_etcd(&segment, other, false);
    poll_until(
        Duration::from_secs(15),
        || bound(&segment, other),
        |table| table.contains_key(&missed.to_string()),
        |table| format!("n{other} never got {missed}, bound while it was cut off: {table:?}"),
    );
    assert_eq!(watch_counts(&segment, other).1, resyncs, "n{other} reloaded the pool where its watch could resume");
    let resyncs = watch_counts(&segment, other).1;
    let compacted = cut_off_and_bind_elsewhere(&segment, dir.path(), other, 0x11);
    // One more revision (a key outside the prefix), and compact up to it: the revision the node
    // resumes from, at most the binding's, is then gone. (Compacting at the binding's own revision
    // would keep it, and the watch could resume.)
    let now = put_revision(&ns1, "/compaction-marker", "1").to_string();
    etcdctl(&ns1, &["compact", &now]);
    cut_off_from_etcd(&segment, other, false);
    poll_until(
        Duration::from_secs(15),
        || (watch_counts(&segment, other).1, bound(&segment, other)),
        |(reloads, table)| *reloads > resyncs && table.contains_key(&compacted.to_string()),
        |seen| format!("n{other} did not reload the pool after etcd compacted past its watch: {seen:?}"),
    );
    poll_until(
        Duration::from_secs(10),
        || all.iter().map(|i| bound(&segment, *i)).collect::<Vec<_>>(),
        |tables| tables.windows(2).all(|w| w[0] == w[1]),
        |tables| format!("the tables differ after the reload: {tables:?}"),
    );

    // What operators see: /v1/cluster names the store, its endpoints, the elected node and the
    // watch revision; /metrics counts the elected node's transactions and the watch lag.
    let view = cluster_view(&segment.server(first)).expect("GET /v1/cluster");
    assert_eq!(view["store"], "etcd", "{view}");
    assert_eq!(view["etcd"]["endpoints"].as_array().map(Vec::len), Some(3), "{view}");
    assert!(view["etcd"]["watch_revision"].as_u64() > Some(0), "{view}");
    let metrics = http_get(&segment.server(first), ADMIN_PORT, "/metrics").expect("GET /metrics").1;
    assert!(metric(&metrics, "leasehold_etcd_transactions_total", "").is_some_and(|n| n >= 1.0), "{metrics}");
    assert!(metric(&metrics, "leasehold_etcd_watch_lag_revisions", "").is_some(), "{metrics}");

    // 2. kill -9 the elected node: another is elected once the dead node's etcd lease has expired
    //    (the TTL after its last keep-alive, plus up to 0.5 s for etcd's expiry check), and serves a
    //    new client at the client's next retransmission (udhcpc -T 1: one DISCOVER a second).
    new_mac(&segment.client(2), 1);
    let survivors: Vec<u32> = all.iter().copied().filter(|i| *i != first).collect();
    let killed_at = Instant::now();
    kill9(&mut nodes.get_mut(&first).expect("running").proc);
    nodes.remove(&first);
    let (ip2, gap, (second, elected_after)) = std::thread::scope(|scope| {
        let client = scope.spawn(|| {
            let ip = udhcpc_once(&segment.client(2), dir.path(), 15, "after-kill");
            (ip.expect("a new client bound after the kill"), killed_at.elapsed())
        });
        let seen = poll_until(
            Duration::from_secs(ELECTION_TTL_SECS + 8),
            || {
                survivors
                    .iter()
                    .map(|i| cluster_view(&segment.server(*i)).and_then(|v| v["leader_id"].as_u64()))
                    .collect::<Vec<_>>()
            },
            |seen| seen[0].is_some_and(|id| id != u64::from(first)) && seen.iter().all(|s| *s == seen[0]),
            |seen| format!("after the kill the survivors never agreed on a new elected node: {seen:?}"),
        );
        let elected = (seen[0].expect("agreed") as u32, killed_at.elapsed());
        let (ip, gap) = client.join().expect("the udhcpc thread panicked");
        (ip, gap, elected)
    });
    eprintln!(
        "etcd store: kill -9 of the elected node n{first} -> n{second} elected after {elected_after:?} (TTL \
         {ELECTION_TTL_SECS} s), a new client bound after {gap:?}"
    );
    assert!(
        elected_after < Duration::from_millis(ELECTION_TTL_SECS * 1000 + 1000),
        "elected {elected_after:?} after the kill: more than the TTL and etcd's expiry check"
    );
    assert!(
        gap < elected_after + Duration::from_secs(3),
        "served {gap:?} after the kill, elected at {elected_after:?}"
    );

    // 3. One etcd member down: service goes on. (If it was etcd's leader, etcd elects another
    //    first, and a REQUEST sent meanwhile goes unanswered: udhcpc -n exits after three of them,
    //    where a daemon would go back to DISCOVER, so it is run again, at most three times.)
    kill9(&mut etcd[2].take().expect("running"));
    new_mac(&segment.client(2), 2);
    let ip3 = (1..=3)
        .find_map(|attempt| udhcpc_once(&segment.client(2), dir.path(), 15, &format!("one-member-down-{attempt}")))
        .expect("bound with 2 of 3 members");

    // 4. A second member down: no majority. The nodes fall back to the minority rules within the
    //    TTL: /healthz says so, a renewal is confirmed only for the time that remains on the
    //    committed lease (DESIGN rule 5), and no new client is bound. The renewing client is dhcpcd
    //    (a new MAC in its namespace), bound while etcd still has its majority, its eth0 captured.
    let mac: Mac = [0x02, 0xe7, 0xcd, 0, 0, 0x06];
    new_mac(&segment.client(3), 6);
    let capture = capture::PcapCapture::start(
        &segment.client(3),
        &dir.path().join("minority.pcap"),
        &dir.path().join("minority-tcpdump.log"),
    );
    let mut renewer = EtcdDhcpcd::bind_in("dhcpcd-minority", &segment, dir.path(), &survivors);
    let server_id = poll_until(
        Duration::from_secs(5),
        || capture.replies_to(&mac).into_iter().rev().find(|(_, r)| r.message_type == Some(MessageType::Ack)),
        Option::is_some,
        |_| format!("no ACK to dhcpcd's binding of {} in the capture", renewer.ip),
    )
    .and_then(|(_, ack)| ack.server_id)
    .expect("the ACK that bound dhcpcd names its server");
    kill9(&mut etcd[1].take().expect("running"));
    for i in &survivors {
        poll_until(
            Duration::from_secs(ELECTION_TTL_SECS + 10),
            || http_get(&segment.server(*i), ADMIN_PORT, "/healthz").map(|(code, _)| code).unwrap_or(0),
            |code| *code == 503,
            |code| format!("n{i} still answered /healthz {code} without an etcd majority"),
        );
    }
    // The committed lease, as every survivor's table and etcd's last member have it; then the
    // renewal (RFC 2131 §4.4.5: RENEWING, unicast to the server that gave the lease).
    let member = etcd.iter().position(Option::is_some).expect("one member left") as u32 + 1;
    let expires_at_ms = committed_expiry_ms(&segment, member, renewer.ip);
    let renewed_ip = renewer.ip;
    let tables = || -> Vec<Option<(String, u64)>> {
        survivors.iter().map(|i| record_of(&segment, *i, renewed_ip).map(|l| (l.state, l.expires_at))).collect()
    };
    let committed = tables();
    assert!(
        committed.iter().all(|l| *l == Some(("bound".to_string(), expires_at_ms / 1000))),
        "the survivors' records of {} against etcd's expiry {expires_at_ms}: {committed:?}",
        renewer.ip
    );
    let asked_at = epoch_secs(std::time::SystemTime::now());
    let granted = renewer.renew_unicast("renewal without a majority");
    let (request, reply, ack) = poll_until(
        Duration::from_secs(5),
        || renewal_on_wire(&capture, &mac, renewer.ip, asked_at),
        Option::is_some,
        |_| format!("dhcpcd took a renewal of {} that is not in the capture", renewer.ip),
    )
    .expect("found");
    assert!(
        survivors.iter().any(|i| node_ip(*i) == server_id.to_string()),
        "dhcpcd's server {server_id} is not a surviving node {survivors:?}"
    );
    assert_eq!((request.from, request.to), (renewer.ip, server_id), "the REQUEST is unicast from ciaddr to the server");
    assert_eq!(ack.message_type, Some(MessageType::Ack), "{}", capture::describe_reply(&ack));
    assert_eq!((reply.from, ack.server_id, ack.yiaddr), (server_id, Some(server_id), renewer.ip), "the ACK");
    assert_eq!(ack.lease_time_secs.map(u64::from), Some(granted), "dhcpcd took the lease time on the wire");
    // What remained when the REQUEST was sent. The client counts its lease from then (RFC 2131
    // §4.4.1), so its expiry must not pass the committed one; the node rounds down to whole seconds
    // and answers a little later, so the lease is at most that much shorter.
    let remaining = expires_at_ms as f64 / 1000.0 - request.at;
    eprintln!(
        "etcd store: renewal without a majority: {server_id} ACKed {granted} s with {remaining:.3} s left on the \
         committed lease (answered in {:.1} ms)",
        (reply.at - request.at) * 1000.0
    );
    assert!(granted > 0, "a renewal confirmed for 0 s");
    assert!(granted as f64 <= remaining, "renewed for {granted} s, beyond the {remaining:.3} s left on the lease");
    assert!(granted as f64 > remaining - 2.0, "renewed for {granted} s, well short of the {remaining:.3} s left");
    // No write: etcd and every table keep the committed expiry.
    assert_eq!(committed_expiry_ms(&segment, member, renewer.ip), expires_at_ms, "etcd's record changed");
    assert_eq!(tables(), committed, "a table changed after a renewal without a majority");
    renewer.client.daemon.stop(Duration::from_secs(5));
    drop(capture);
    client.run("-x", Duration::from_secs(10));
    new_mac(&segment.client(1), 3);
    assert_eq!(udhcpc_once(&segment.client(1), dir.path(), 4, "no-majority"), None, "bound without a majority");

    // 5. Both members back: service resumes; the tables agree, no address has two clients, and
    //    every ACKed binding is there.
    etcd[1] = Some(start_etcd(&segment, dir.path(), 2));
    etcd[2] = Some(start_etcd(&segment, dir.path(), 3));
    poll_until(
        Duration::from_secs(30),
        || healthy(&segment.server(1), &[1, 2, 3]),
        |ok| *ok,
        |_| "etcd did not come back".to_string(),
    );
    new_mac(&segment.client(1), 4);
    let ip4 = udhcpc_once(&segment.client(1), dir.path(), 20, "members-back").expect("bound once etcd is back");
    let tables: Vec<BTreeMap<String, String>> = survivors.iter().map(|i| bound(&segment, *i)).collect();
    poll_until(
        Duration::from_secs(5),
        || survivors.iter().map(|i| bound(&segment, *i)).collect::<Vec<_>>(),
        |tables| tables.windows(2).all(|w| w[0] == w[1]),
        |tables| format!("the survivors' tables differ: {tables:?}"),
    );
    for ip in [ip1, ip2, ip3, ip4] {
        assert!(tables[0].contains_key(&ip.to_string()), "ACKed {ip} is missing: {:?}", tables[0]);
    }
    let macs: std::collections::BTreeSet<&String> = tables[0].values().collect();
    assert_eq!(macs.len(), tables[0].len(), "a client holds two addresses: {:?}", tables[0]);
    let distinct: std::collections::BTreeSet<Ipv4Addr> = [ip1, ip2, ip3, ip4].into_iter().collect();
    assert_eq!(distinct.len(), 4, "two clients got one address: {ip1} {ip2} {ip3} {ip4}");

    // 6. SIGTERM of the elected node: it resigns (revokes its etcd lease) before it exits, so the
    //    last node is elected at once rather than after the TTL, and binds a new client.
    let elected_now = elected(&segment, &survivors, Duration::from_secs(5), "before SIGTERM");
    let last = *survivors.iter().find(|i| **i != elected_now).expect("two survivors");
    let stopped_at = Instant::now();
    let status = nodes.get_mut(&elected_now).expect("running").proc.stop(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "n{elected_now} exits cleanly on SIGTERM: {status:?}");
    let took = poll_until(
        Duration::from_secs(ELECTION_TTL_SECS + 5),
        || cluster_view(&segment.server(last)).and_then(|v| v["leader_id"].as_u64()),
        |leader| *leader == Some(u64::from(last)),
        |leader| format!("n{last} was not elected after n{elected_now} resigned: {leader:?}"),
    );
    let handover = stopped_at.elapsed();
    eprintln!("etcd store: SIGTERM of the elected node n{elected_now} -> n{last} elected in {handover:?} ({took:?})");
    assert!(handover < Duration::from_secs(ELECTION_TTL_SECS), "the TTL was waited out: {handover:?}");
    nodes.remove(&elected_now);
    new_mac(&segment.client(1), 5);
    udhcpc_once(&segment.client(1), dir.path(), 10, "after-resign").expect("bound after the resignation");

    for (_, mut node) in nodes {
        node.proc.stop(Duration::from_secs(5));
    }
    for member in etcd.iter_mut().flatten() {
        member.stop(Duration::from_secs(5));
    }
}

/// `etcdctl` against the single TLS member of the second test (client certificate `node1`).
fn etcdctl_tls(ns: &str, certs: &Path, args: &[&str]) -> String {
    let mut cmd = in_ns(ns, require_tool("etcdctl"));
    cmd.env("ETCDCTL_API", "3").args(["--endpoints", "https://10.77.0.2:2379", "--command-timeout=3s"]);
    cmd.arg("--cacert").arg(certs.join("ca.pem"));
    cmd.arg("--cert").arg(certs.join("node-1.pem")).arg("--key").arg(certs.join("node-1.key"));
    let out = cmd.args(args).output().expect("run etcdctl");
    assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn leasehold_in(ns: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = in_ns(ns, leasehold_bin());
    cmd.args(args).output().expect("run leasehold")
}

/// One etcd member that speaks only TLS and asks for a client certificate, and one node that
/// reaches it with `[store] tls_ca`/`tls_cert`/`tls_key`: `check-config` connects and writes a probe
/// key; a reservation written with `etcdctl put` (JSON, as README shows) reaches the node through its
/// watch and a real client (udhcpc) gets the reserved address. Then the pool moves to the Raft store
/// and back with `leasehold export --kea-csv` and `leasehold import --kea-csv`: the client keeps its
/// address on each.
#[test]
fn a_tls_etcd_store_takes_etcdctl_reservations_and_leases_move_between_stores() {
    require_tool("etcd");
    let segment = Segment::up(2, 1, 24);
    let dir = scratch_dir("etcd-tls");
    let certs = dir.path().join("certs");
    let out = leasehold_in(
        &segment.server(1),
        &["cluster", "make-certs", "--dir", &certs.display().to_string(), "--nodes", "1", "--admin-name", "10.77.0.2"],
    );
    assert!(out.status.success(), "make-certs: {}", String::from_utf8_lossy(&out.stderr));

    // The member: TLS on the client port, client certificates required.
    let mut cmd = in_ns(&segment.server(2), require_tool("etcd"));
    cmd.args(["--name", "tls1"]).arg("--data-dir").arg(dir.path().join("etcd-tls"));
    cmd.args(["--listen-client-urls", "https://10.77.0.2:2379", "--advertise-client-urls", "https://10.77.0.2:2379"]);
    cmd.args(["--listen-peer-urls", "http://10.77.0.2:2380", "--initial-advertise-peer-urls", "http://10.77.0.2:2380"]);
    cmd.args(["--initial-cluster", "tls1=http://10.77.0.2:2380", "--initial-cluster-state", "new"]);
    cmd.arg("--cert-file").arg(certs.join("admin.pem")).arg("--key-file").arg(certs.join("admin.key"));
    cmd.arg("--client-cert-auth").arg("--trusted-ca-file").arg(certs.join("ca.pem"));
    let mut member = Proc::spawn("etcd tls1", cmd, &dir.path().join("etcd-tls.log"));
    poll_until(
        Duration::from_secs(30),
        || {
            let mut cmd = in_ns(&segment.server(1), require_tool("etcdctl"));
            cmd.env("ETCDCTL_API", "3").args(["--endpoints", "https://10.77.0.2:2379", "endpoint", "health"]);
            cmd.arg("--cacert").arg(certs.join("ca.pem"));
            cmd.arg("--cert").arg(certs.join("node-1.pem")).arg("--key").arg(certs.join("node-1.key"));
            cmd.output().is_ok_and(|o| o.status.success())
        },
        |ok| *ok,
        |_| format!("the TLS member never became healthy:\n{}", tail_of(&dir.path().join("etcd-tls.log"))),
    );

    let pool = "[[pool]]\nname = \"segment\"\nsubnet = \"10.77.0.0/24\"\nrange_start = \"10.77.0.100\"\n\
                range_end = \"10.77.0.200\"\nlease_time_secs = 600\n";
    let etcd_config = |prefix: &str| {
        let path = dir.path().join(format!("etcd{}.toml", prefix.replace('/', "-")));
        std::fs::write(
            &path,
            format!(
                "[server]\nserver_ip = \"10.77.0.1\"\n\n[store]\nkind = \"etcd\"\nendpoints = [\"https://10.77.0.2:2379\"]\nprefix = \"{prefix}\"\n\
                 tls_ca = \"{ca}\"\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"\n\n{pool}",
                ca = certs.join("ca.pem").display(),
                cert = certs.join("node-1.pem").display(),
                key = certs.join("node-1.key").display(),
            ),
        )
        .expect("write the config");
        path.display().to_string()
    };
    let config = etcd_config("/tls");

    // check-config reaches etcd over TLS and can write under the prefix.
    let out = leasehold_in(&segment.server(1), &["check-config", &config]);
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.contains("answers"), "check-config: {said}");

    let node_args = ["--config", &config, "--server-ip", "10.77.0.1", "--node-id", "1"];
    let mut node =
        Server::start(&segment.server(1), &dir.path().join("data1"), &dir.path().join("node1.log"), &node_args);

    // A reservation written by hand with etcdctl reaches the node's table through its watch.
    let reservation = r#"{"v":1,"reservation":{"mac":[2,231,205,0,0,66],"ip":"10.77.0.150","hostname":"by-etcdctl","boot_file":null}}"#;
    etcdctl_tls(&segment.server(1), &certs, &["put", "/tls/reservation/02:e7:cd:00:00:42", reservation]);
    poll_until(
        Duration::from_secs(5),
        || http_get(&segment.server(1), ADMIN_PORT, "/v1/reservations").map(|(_, body)| body).unwrap_or_default(),
        |body| body.contains("10.77.0.150") && body.contains("\"api\""),
        |body| format!("the etcdctl reservation never reached the node: {body}"),
    );
    new_mac(&segment.client(1), 0x42);
    let ip = udhcpc_once(&segment.client(1), dir.path(), 10, "reserved").expect("bound");
    assert_eq!(ip, Ipv4Addr::new(10, 77, 0, 150), "the reserved address");
    let stored = etcdctl_tls(&segment.server(1), &certs, &["get", "/tls/lease/10.77.0.150", "--print-value-only"]);
    assert!(stored.contains("\"mac\":[2,231,205,0,0,66]"), "the record in etcd: {stored}");

    // etcd -> Raft: export, stop the node, a Raft-store node on the same segment imports the file.
    let csv = dir.path().join("from-etcd.csv");
    let admin = format!("127.0.0.1:{ADMIN_PORT}");
    let out = leasehold_in(&segment.server(1), &["export", "--kea-csv", &csv.display().to_string(), "--admin", &admin]);
    assert!(out.status.success(), "export: {}", String::from_utf8_lossy(&out.stderr));
    node.proc.stop(Duration::from_secs(5));
    let raft_args = [
        "--server-ip",
        "10.77.0.1",
        "--subnet-mask",
        "255.255.255.0",
        "--ip-start",
        "10.77.0.100",
        "--ip-end",
        "10.77.0.200",
    ];
    let mut raft =
        Server::start(&segment.server(1), &dir.path().join("raft1"), &dir.path().join("raft1.log"), &raft_args);
    let out = leasehold_in(&segment.server(1), &["import", "--kea-csv", &csv.display().to_string(), "--admin", &admin]);
    assert!(out.status.success(), "import into Raft: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(raft.lease_of(ip).map(|l| l.mac), Some("02:e7:cd:00:00:42".to_string()), "the lease on the Raft store");
    let again = udhcpc_once(&segment.client(1), dir.path(), 10, "on-raft").expect("bound by the Raft node");
    assert_eq!(again, ip, "the client keeps its address on the Raft store");

    // Raft -> etcd: export from the Raft node, import into a fresh prefix.
    let csv = dir.path().join("from-raft.csv");
    let out = leasehold_in(&segment.server(1), &["export", "--kea-csv", &csv.display().to_string(), "--admin", &admin]);
    assert!(out.status.success(), "export: {}", String::from_utf8_lossy(&out.stderr));
    raft.proc.stop(Duration::from_secs(5));
    let config = etcd_config("/migrated");
    let node_args = ["--config", &config, "--server-ip", "10.77.0.1", "--node-id", "1"];
    let mut node =
        Server::start(&segment.server(1), &dir.path().join("data2"), &dir.path().join("node2.log"), &node_args);
    let out = leasehold_in(&segment.server(1), &["import", "--kea-csv", &csv.display().to_string(), "--admin", &admin]);
    assert!(out.status.success(), "import into etcd: {}", String::from_utf8_lossy(&out.stderr));
    let stored = etcdctl_tls(&segment.server(1), &certs, &["get", "/migrated/lease/10.77.0.150", "--print-value-only"]);
    assert!(stored.contains("\"mac\":[2,231,205,0,0,66]"), "the imported record in etcd: {stored}");
    let again = udhcpc_once(&segment.client(1), dir.path(), 10, "back-on-etcd").expect("bound by the etcd node");
    assert_eq!(again, ip, "the client keeps its address back on etcd");

    node.proc.stop(Duration::from_secs(5));
    member.stop(Duration::from_secs(5));
}
