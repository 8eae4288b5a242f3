//! Mutual TLS on the peer links of a three-node cluster on a private segment (issue 11, item 4), with
//! certificates made at run time by `leasehold cluster make-certs` and a real DHCP client.
//!
//! 1. `a_tls_cluster_serves_a_real_client_and_its_peer_traffic_shows_no_lease_data`: nodes with TLS
//!    only (no shared secret) elect a leader and busybox udhcpc (sending a host name) gets a lease
//!    that all three nodes hold. A tcpdump (`--immediate-mode`) of the peer port on node 1's eth0,
//!    taken while that lease was replicated, holds neither the client's MAC bytes nor its host name.
//! 2. `without_tls_the_same_capture_shows_the_lease_data`: the same run with the shared secret only
//!    (authenticated, not encrypted): the same search finds the MAC and the host name, so the check
//!    of test 1 can fail.
//! 3. `nodes_with_a_foreign_certificate_or_without_tls_cannot_join`: nodes 1 and 2 run TLS plus the
//!    shared secret; node 3 first has a certificate from another CA (and the right secret), then the
//!    right secret and no TLS. Both times nodes 1 and 2 count its connections as refused for
//!    authentication (`/metrics`), node 3 never learns a leader and its lease table stays empty while
//!    a client gets a lease from the others. Started again with its proper certificate, node 3
//!    joins and its table converges.
//! 4. `certificate_problems_stop_the_node_at_start_naming_the_file`: a key of another node's
//!    certificate, a CA that did not sign it, a missing file: `leasehold serve` exits 1 at once, and
//!    its error names the file and the problem.
//!
//! Tests run one at a time (a lock). Every wait polls with a deadline or waits on a process or client
//! event; processes are ended by PID; the segments are removed at the end, also on failure.

mod netns_support;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use netns_support::cluster::*;
use netns_support::*;

const SETTLE: Duration = Duration::from_secs(20);
/// The host name udhcpc sends (option 12); it travels in the replicated binding.
const HOSTNAME: &str = "lh-peer-tls-probe-7f3a";

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `leasehold cluster make-certs --dir DIR --nodes LIST`, inside `ns` (it needs no network).
fn make_certs(ns: &str, dir: &Path, nodes: &str, log: &Path) {
    let mut cmd = in_ns(ns, leasehold_bin());
    cmd.args(["cluster", "make-certs", "--dir"]).arg(dir).args(["--nodes", nodes]);
    run_ok("leasehold cluster make-certs", cmd, log, Duration::from_secs(30));
    for id in nodes.split(',') {
        assert!(dir.join(format!("node-{id}.pem")).is_file(), "make-certs wrote node-{id}.pem\n{}", tail_of(log));
    }
}

/// A tcpdump of the peer traffic (tcp port 6768) on eth0 of a namespace, to a pcap file.
struct PeerCapture {
    proc: Proc,
    file: PathBuf,
}

impl PeerCapture {
    fn start(ns: &str, file: &Path, log: &Path) -> PeerCapture {
        let mut cmd = in_ns(ns, require_tool("tcpdump"));
        cmd.args(["-i", "eth0", "-n", "-U", "--immediate-mode", "-w"]).arg(file);
        cmd.arg(format!("tcp port {PEER_PORT}"));
        let proc = Proc::spawn("tcpdump -w", cmd, log);
        wait_tcpdump_listening(log);
        PeerCapture { proc, file: file.to_owned() }
    }

    /// Stops tcpdump (SIGINT: it writes what it has) and returns the pcap file's bytes.
    fn finish(mut self) -> Vec<u8> {
        signal(self.proc.pid, libc::SIGINT);
        let status = self.proc.wait_exit(Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "tcpdump did not stop cleanly: {status:?}\n{}",
            tail_of(&self.proc.log)
        );
        std::fs::read(&self.file).expect("read the capture")
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

fn mac_bytes(mac: &str) -> Vec<u8> {
    mac.split(':').map(|octet| u8::from_str_radix(octet, 16).expect("a hex octet")).collect()
}

/// udhcpc in `ns` sending `HOSTNAME`: one lease, then exit. Returns the address.
fn udhcpc_with_hostname(ns: &str, dir: &Path) -> Ipv4Addr {
    let udhcpc = require_tool("udhcpc");
    let mut events = Events::new(dir);
    let hook = udhcpc_hook(dir, &events);
    let mut cmd = in_ns(ns, udhcpc);
    cmd.args(["-i", "eth0", "-n", "-q", "-f", "-t", "10", "-T", "1", "-x"]).arg(format!("hostname:{HOSTNAME}"));
    cmd.arg("-s").arg(&hook);
    let mut proc = Proc::spawn("udhcpc", cmd, &dir.join("udhcpc.log"));
    let bound = events.expect(&["bound"], Duration::from_secs(30), "udhcpc");
    proc.expect_success(Duration::from_secs(10));
    event_ip(&bound, "udhcpc")
}

/// What crossed node 1's eth0 on the peer port while a client's lease was made and replicated.
struct PeerTraffic {
    pcap: Vec<u8>,
    mac: String,
}

/// Starts a cluster with `auth` on every node, captures the peer traffic on node 1 while udhcpc gets a
/// lease and all three nodes hold it (with its host name), and checks the cluster reports `tls`.
fn lease_under_capture(test: &str, auth: impl Fn(&Path) -> PeerAuth, tls: bool) -> PeerTraffic {
    let segment = Segment::up(NODES, 1, 24);
    let dir = scratch_dir(test);
    let certs = dir.path().join("tls");
    make_certs(&segment.server(1), &certs, "1,2,3", &dir.path().join("make-certs.log"));
    let capture =
        PeerCapture::start(&segment.server(1), &dir.path().join("peer.pcap"), &dir.path().join("tcpdump.log"));
    let options = NodeOptions { auth: (1..=NODES).map(|_| auth(&certs)).collect(), ..NodeOptions::default() };
    let cluster =
        Cluster::start_with_options(&segment, dir.path(), Pools::Segment { lease_secs: 600 }, options, &[1, 2, 3]);
    let (leader, _) = cluster.wait_for_leader(&[1, 2, 3], SETTLE, "start");
    for id in 1..=NODES {
        let metrics = cluster.server(id).metrics();
        assert_eq!(metric(&metrics, "leasehold_peer_tls", ""), Some(if tls { 1.0 } else { 0.0 }), "node {id}");
    }
    let client = segment.client(1);
    let ip = udhcpc_with_hostname(&client, &subdir(dir.path(), "udhcpc"));
    let mac = mac_of(&client, "eth0");
    cluster.wait_bound_everywhere(&[1, 2, 3], ip, &mac, "the client's lease");
    for id in 1..=NODES {
        let lease = cluster.server(id).lease_of(ip).expect("the lease");
        assert_eq!(lease.hostname.as_deref(), Some(HOSTNAME), "node {id} holds the host name the client sent");
    }
    println!("{test}: leader node {leader}, {ip} bound to {mac} ({HOSTNAME}) on all three nodes");
    let pcap = capture.finish();
    PeerTraffic { pcap, mac }
}

#[test]
fn a_tls_cluster_serves_a_real_client_and_its_peer_traffic_shows_no_lease_data() {
    let _serial = serial();
    let traffic = lease_under_capture("peer-tls", |certs| PeerAuth::Tls(certs.to_owned()), true);
    println!(
        "TLS capture: {} bytes; MAC found: {}, host name found: {}",
        traffic.pcap.len(),
        contains(&traffic.pcap, &mac_bytes(&traffic.mac)),
        contains(&traffic.pcap, HOSTNAME.as_bytes())
    );
    assert!(traffic.pcap.len() > 10_000, "the capture holds the peer traffic ({} bytes)", traffic.pcap.len());
    assert!(!contains(&traffic.pcap, &mac_bytes(&traffic.mac)), "the client's MAC crossed the peer link in clear text");
    assert!(
        !contains(&traffic.pcap, HOSTNAME.as_bytes()),
        "the client's host name crossed the peer link in clear text"
    );
    assert!(!contains(&traffic.pcap, b"LHPEER01"), "the peer protocol's hello is inside TLS too");
}

#[test]
fn without_tls_the_same_capture_shows_the_lease_data() {
    let _serial = serial();
    let traffic = lease_under_capture("peer-plain", |_| PeerAuth::Secret, false);
    println!(
        "plain capture: {} bytes; MAC found: {}, host name found: {}",
        traffic.pcap.len(),
        contains(&traffic.pcap, &mac_bytes(&traffic.mac)),
        contains(&traffic.pcap, HOSTNAME.as_bytes())
    );
    assert!(
        contains(&traffic.pcap, &mac_bytes(&traffic.mac)),
        "without TLS the MAC is on the wire: the check can fail"
    );
    assert!(contains(&traffic.pcap, HOSTNAME.as_bytes()), "without TLS the host name is on the wire");
}

/// A node's `leasehold_peer_inbound_refused_total{reason="auth"}`.
fn auth_refusals(cluster: &Cluster, id: u32) -> f64 {
    metric(&cluster.server(id).metrics(), "leasehold_peer_inbound_refused_total", "reason=\"auth\"").unwrap_or(0.0)
}

/// Node 3 is refused: nodes 1 and 2 count its attempts, it knows no leader, and its table is empty
/// while the others hold `holders`' lease.
fn assert_node_3_shut_out(cluster: &Cluster, before: [f64; 2], step: &str) {
    for (index, id) in [1u32, 2].into_iter().enumerate() {
        poll_until(
            SETTLE,
            || auth_refusals(cluster, id),
            |now| *now > before[index],
            |now| {
                format!(
                    "{step}: node {id} never refused node 3 (auth refusals {now}, before {})\n{}",
                    before[index],
                    cluster.logs()
                )
            },
        );
    }
    let (status, body) = http_get(cluster.ns(3), ADMIN_PORT, "/v1/cluster").expect("node 3's /v1/cluster");
    assert_eq!(status, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(view["leader_id"], serde_json::Value::Null, "{step}: node 3 learned a leader: {view}");
    assert_eq!(view["commit_index"], 0, "{step}: node 3 received committed entries: {view}");
    assert!(cluster.server(3).leases().is_empty(), "{step}: node 3 holds leases it must not have received");
    assert!(matches!(health(cluster.ns(3)), Health::NoQuorum { .. }), "{step}: node 3 must not serve");
}

#[test]
fn nodes_with_a_foreign_certificate_or_without_tls_cannot_join() {
    let _serial = serial();
    let segment = Segment::up(NODES, 2, 24);
    let dir = scratch_dir("peer-tls-strangers");
    let certs = dir.path().join("tls");
    let foreign = dir.path().join("foreign-tls");
    make_certs(&segment.server(1), &certs, "1,2,3", &dir.path().join("make-certs.log"));
    make_certs(&segment.server(1), &foreign, "3", &dir.path().join("make-certs-foreign.log"));

    // Node 3's certificate is from another CA (it even has the cluster's shared secret).
    let options = NodeOptions {
        auth: vec![
            PeerAuth::TlsAndSecret(certs.clone()),
            PeerAuth::TlsAndSecret(certs.clone()),
            PeerAuth::TlsAndSecret(foreign.clone()),
        ],
        ..NodeOptions::default()
    };
    let mut cluster =
        Cluster::start_with_options(&segment, dir.path(), Pools::Segment { lease_secs: 600 }, options, &[1, 2]);
    let (leader, _) = cluster.wait_for_leader(&[1, 2], SETTLE, "nodes 1 and 2");
    let ip = udhcpc_with_hostname(&segment.client(1), &subdir(dir.path(), "udhcpc-1"));
    let mac = mac_of(&segment.client(1), "eth0");
    cluster.wait_bound_everywhere(&[1, 2], ip, &mac, "a lease from nodes 1 and 2");
    assert_node_3_shut_out(&cluster, [0.0, 0.0], "a certificate from another CA");
    println!("node 3 with a foreign CA: refused; leader node {leader} served {ip}");

    // Node 3 with the right shared secret but no TLS.
    let before = [auth_refusals(&cluster, 1), auth_refusals(&cluster, 2)];
    cluster.restart_as(3, PeerAuth::Secret, false);
    assert_node_3_shut_out(&cluster, before, "no TLS, the cluster's secret");
    let second = udhcpc_with_hostname(&segment.client(2), &subdir(dir.path(), "udhcpc-2"));
    cluster.wait_bound_everywhere(&[1, 2], second, &mac_of(&segment.client(2), "eth0"), "a second lease");
    assert!(cluster.server(3).leases().is_empty(), "node 3 still holds nothing");

    // With its own certificate node 3 joins and catches up: the refusals were the certificate's.
    cluster.restart_as(3, PeerAuth::TlsAndSecret(certs.clone()), true);
    cluster.wait_for_leader(&[1, 2, 3], SETTLE, "node 3 with its certificate");
    let (set, _) = cluster.wait_converged(&[1, 2, 3], SETTLE, "node 3 caught up");
    assert!(
        set.iter().any(|(bound, _, _)| *bound == ip) && set.iter().any(|(bound, _, _)| *bound == second),
        "{set:?}"
    );
}

#[test]
fn certificate_problems_stop_the_node_at_start_naming_the_file() {
    let _serial = serial();
    let segment = Segment::up(1, 0, 24);
    let dir = scratch_dir("peer-tls-bad-files");
    let certs = dir.path().join("tls");
    let foreign = dir.path().join("foreign-tls");
    let ns = segment.server(1);
    make_certs(&ns, &certs, "1,2", &dir.path().join("make-certs.log"));
    make_certs(&ns, &foreign, "1", &dir.path().join("make-certs-foreign.log"));
    let path = |p: PathBuf| p.display().to_string();
    let cases: [(&str, [String; 3], String, &str); 3] = [
        (
            "another node's key",
            [path(certs.join("ca.pem")), path(certs.join("node-1.pem")), path(certs.join("node-2.key"))],
            path(certs.join("node-2.key")),
            "does not belong to the certificate",
        ),
        (
            "a CA that did not sign it",
            [path(foreign.join("ca.pem")), path(certs.join("node-1.pem")), path(certs.join("node-1.key"))],
            path(certs.join("node-1.pem")),
            "not signed by the cluster CA",
        ),
        (
            "a missing file",
            [path(certs.join("ca.pem")), path(certs.join("node-9.pem")), path(certs.join("node-1.key"))],
            path(certs.join("node-9.pem")),
            "cannot read",
        ),
    ];
    for (index, (what, [ca, cert, key], named, problem)) in cases.into_iter().enumerate() {
        let log = dir.path().join(format!("serve-{index}.log"));
        let mut cmd = in_ns(&ns, leasehold_bin());
        cmd.args(["serve", "--interface", "eth0", "--server-ip", "10.77.0.1", "--ip-start", "10.77.0.100"]);
        cmd.args(["--ip-end", "10.77.0.200", "--node-id", "1", "--peer", "1=10.77.0.1:6768", "--peer"]);
        cmd.args(["2=10.77.0.2:6768", "--cluster-listen", "10.77.0.1:6768", "--admin-listen", "127.0.0.1:6767"]);
        cmd.args(["--cluster-tls-ca", &ca, "--cluster-tls-cert", &cert, "--cluster-tls-key", &key, "--data-dir"]);
        cmd.arg(dir.path().join(format!("data-{index}")));
        let mut proc = Proc::spawn("leasehold serve", cmd, &log);
        let status = proc.wait_exit(Duration::from_secs(20)).unwrap_or_else(|| panic!("{what}: serve kept running"));
        assert_eq!(status.code(), Some(1), "{what}: serve must exit 1\n{}", tail_of(&log));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            text.contains(&named) && text.contains(problem),
            "{what}: the error must name {named} and say `{problem}`:\n{text}"
        );
        println!("{what}: {}", text.lines().rev().find(|l| l.contains("leasehold serve")).unwrap_or_default());
    }
}
