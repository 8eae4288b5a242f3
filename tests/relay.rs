//! A real relay agent, ISC `dhcrelay`, between a routed client subnet and the server segment, with ISC
//! dhclient behind it (issue 8). What is checked, each on the wire as well as at the client and in the
//! server's `GET /v1/leases`:
//!
//! 1. `dhclient_behind_dhcrelay_binds_renews_by_unicast_and_rebinds_through_the_relay` (one server):
//!    - bind: DISCOVER/REQUEST broadcast by the client, relayed with giaddr = the relay's client-side
//!      address; the server answers the relay (RFC 2131 §4.1) from the pool whose subnet holds giaddr
//!      (address in 10.78.0.100–200, router option 3 = 10.78.0.1, server identifier 54 = the server);
//!    - renew: at T1 the client unicasts a RENEWING REQUEST straight to the server (RFC 2131 §4.3.2,
//!      §4.4.5: giaddr 0, ciaddr set, no option 54/50), routed, not relayed; the server ACKs it to ciaddr
//!      with the same address and a later expiry; dhclient's hook says RENEW;
//!    - rebind: with that unicast path dropped (iptables in the server namespace, source = the client
//!      subnet), the client's unicast REQUESTs go unanswered until T2, then it broadcasts the REQUEST
//!      (REBINDING), the relay forwards it and the server ACKs the same address through the relay;
//!    - option 82 (RFC 3046 §2.2): dhcrelay `-a` adds a circuit id; every reply to the relay carries
//!      exactly the option-82 bytes of the request it answers, and replies to requests without 82 (the
//!      direct unicast renewals) carry none.
//! 2. `link_selection_suboption_chooses_the_subnet_not_giaddr` (RFC 3527): `dhcrelay -U eth0` sets giaddr
//!    to its server-side address 10.77.0.254 (inside the server's own subnet) and adds 82 sub-option 5 =
//!    10.78.0.1; the client still gets an address of the 10.78.0.0/24 pool, and 82 is echoed.
//! 3. `relayed_client_keeps_its_address_and_renews_across_a_leader_kill` (3-node cluster, dhcrelay
//!    forwarding to all three): bound by the leader, renewed by unicast to the leader; the leader is
//!    killed (SIGKILL by PID); the client's unicast renewals to the dead node go unanswered, it rebinds
//!    through the relay and the new leader ACKs the same address; its next renewal goes by unicast to the
//!    new leader's address and is ACKed by it; no address is bound to two clients on the survivors.
//! 4. `relay_on_the_routed_interface_copies_renewals_and_the_client_keeps_one_address`: dhcrelay run as
//!    FIELD-NOTES shows it (`-i lan0 -i eth0`, listening on the routed interfaces themselves) relays two
//!    copies of each unicast renewal besides the routed original (giaddr 10.78.0.1 and 10.77.0.254);
//!    whatever the server answers to them, the client sees only ACKs of its address and no NAK, and the
//!    server holds one lease for it.
//!
//! The bed: `scripts/netns.sh up NAME N 0` (server namespaces, eth0 = 10.77.0.N/24) plus `scripts/netns.sh
//! router NAME 1 10.77.0.254/24 10.78.0.1/24`: a router namespace with eth0 on the segment, lan0 on the
//! client subnet (the client's gateway, IP forwarding on inside that namespace only) and relay0, a macvlan
//! on lan0 with the same address, where dhcrelay listens (`-id relay0 -iu eth0`): ISC dhcrelay reads every
//! UDP/67 frame of its interfaces with packet sockets, so listening on lan0 and eth0 it also relays
//! copies of each unicast renewal the router forwards (test 4), and the unicast path could neither be
//! checked nor blocked on its own. The server namespaces route 10.78.0.0/24 via 10.77.0.254.
//!
//! The pools (a config file): "local" 10.77.0.100–200 in 10.77.0.0/24, the server's own subnet, and
//! "relayed" 10.78.0.100–200 in 10.78.0.0/24, router 10.78.0.1, a 20 s lease (T1 10 s, T2 17 s), so
//! renewals and rebinds happen within the test.
//!
//! Evidence: tcpdump writes a pcap on the router's eth0 (everything between the client subnet and the
//! servers: relayed requests, replies to the relay, routed unicast renewals and their ACKs) and one on the
//! client's eth0; the tests read them back and print the transcript. Every wait is on an event (the
//! client's hook, a process exit) or polls a capture or the admin API with a deadline. Processes are
//! killed by PID; the namespaces (and the iptables rules inside them) are removed when a test ends.
//!
//! ISC dhclient 4.4 never enters its REBINDING state (client/dhclient.c only tests `S_REBINDING`): after
//! T2 it stays in RENEWING and just broadcasts the REQUEST, so its hook reports RENEW for a rebind. The
//! tests therefore tell a rebind from a renewal on the wire (broadcast by the client, relayed, after T2),
//! and accept either hook reason for it.

mod netns_support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use netns_support::cluster::*;
use netns_support::*;

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The router's eth0 on the server segment, and its lan0/relay0 on the client subnet.
const ROUTER_UPSTREAM: &str = "10.77.0.254/24";
const ROUTER_DOWNSTREAM: &str = "10.78.0.1/24";
const RELAY_UPSTREAM: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 254);
const RELAY_DOWNSTREAM: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
const LOCAL_START: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
const LOCAL_END: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 200);
const RELAYED_START: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 100);
const RELAYED_END: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 200);
/// The relayed pool's lease: T1 = 10 s, T2 = 17 s (7/8, whole seconds).
const LEASE_SECS: u64 = 20;
const SETTLE_LIMIT: Duration = Duration::from_secs(20);

/// The two pools, as `[[pool]]` tables.
fn pools_toml() -> String {
    format!(
        r#"[[pool]]
name = "local"
subnet = "10.77.0.0/24"
range_start = "{LOCAL_START}"
range_end = "{LOCAL_END}"

[[pool]]
name = "relayed"
subnet = "10.78.0.0/24"
range_start = "{RELAYED_START}"
range_end = "{RELAYED_END}"
routers = ["{RELAY_DOWNSTREAM}"]
lease_time_secs = {LEASE_SECS}
"#
    )
}

fn in_range(ip: Ipv4Addr, start: Ipv4Addr, end: Ipv4Addr) -> bool {
    (u32::from(start)..=u32::from(end)).contains(&u32::from(ip))
}

static SERIAL: Mutex<()> = Mutex::new(());

/// One test at a time: each depends on T1/T2 timers of a few seconds and one runs three servers on a
/// 2-core machine.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------------------------------------
// DHCP on the wire

/// DHCP message types (option 53, RFC 2132 §9.6).
const DISCOVER: u8 = 1;
const OFFER: u8 = 2;
const REQUEST: u8 = 3;
const ACK: u8 = 5;
const NAK: u8 = 6;
const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
/// Options: server identifier, requested address, relay agent information.
const OPT_SERVER_ID: u8 = 54;
const OPT_REQUESTED_IP: u8 = 50;
const OPT_AGENT_INFO: u8 = 82;

/// One captured DHCP datagram (Ethernet / IPv4 / UDP ports 67-68 / BOOTP with the DHCP cookie).
#[derive(Debug, Clone)]
struct Dhcp {
    /// Capture time, seconds since the Unix epoch.
    at: f64,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    op: u8,
    hops: u8,
    xid: u32,
    ciaddr: Ipv4Addr,
    yiaddr: Ipv4Addr,
    giaddr: Ipv4Addr,
    chaddr: [u8; 6],
    /// Options in wire order (pad and end left out).
    options: Vec<(u8, Vec<u8>)>,
}

impl Dhcp {
    fn from_frame(at: f64, frame: &[u8]) -> Option<Dhcp> {
        let be16 = |b: &[u8], i: usize| -> Option<u16> { Some(u16::from_be_bytes(b.get(i..i + 2)?.try_into().ok()?)) };
        let ip4 = |b: &[u8], i: usize| -> Option<Ipv4Addr> {
            let o: [u8; 4] = b.get(i..i + 4)?.try_into().ok()?;
            Some(Ipv4Addr::from(o))
        };
        if be16(frame, 12)? != 0x0800 {
            return None;
        }
        let ip = frame.get(14..)?;
        let ihl = usize::from(ip.first()? & 0x0f) * 4;
        // UDP, not a fragment.
        if *ip.get(9)? != 17 || be16(ip, 6)? & 0x3fff != 0 {
            return None;
        }
        let udp = ip.get(ihl..)?;
        let udp_len = usize::from(be16(udp, 4)?);
        let p = udp.get(8..udp_len.min(udp.len()))?;
        let src = SocketAddrV4::new(ip4(ip, 12)?, be16(udp, 0)?);
        let dst = SocketAddrV4::new(ip4(ip, 16)?, be16(udp, 2)?);
        if p.len() < 240 || p.get(236..240)? != [99, 130, 83, 99] {
            return None;
        }
        let mut options = Vec::new();
        let mut i = 240;
        while let Some(&code) = p.get(i) {
            match code {
                0 => i += 1,
                255 => break,
                _ => {
                    let len = usize::from(*p.get(i + 1)?);
                    options.push((code, p.get(i + 2..i + 2 + len)?.to_vec()));
                    i += 2 + len;
                }
            }
        }
        Some(Dhcp {
            at,
            src,
            dst,
            op: p[0],
            hops: p[3],
            xid: u32::from_be_bytes(p.get(4..8)?.try_into().ok()?),
            ciaddr: ip4(p, 12)?,
            yiaddr: ip4(p, 16)?,
            giaddr: ip4(p, 24)?,
            chaddr: p.get(28..34)?.try_into().ok()?,
            options,
        })
    }

    /// Option `code` (every instance concatenated, RFC 3396).
    fn option(&self, code: u8) -> Option<Vec<u8>> {
        let parts: Vec<&[u8]> = self.options.iter().filter(|(c, _)| *c == code).map(|(_, v)| v.as_slice()).collect();
        (!parts.is_empty()).then(|| parts.concat())
    }

    fn kind(&self) -> Option<u8> {
        self.option(53).and_then(|v| v.first().copied())
    }

    fn is(&self, kind: u8) -> bool {
        self.kind() == Some(kind)
    }

    fn address_option(&self, code: u8) -> Option<Ipv4Addr> {
        let v = self.option(code)?;
        let o: [u8; 4] = v.as_slice().try_into().ok()?;
        Some(Ipv4Addr::from(o))
    }

    fn server_id(&self) -> Option<Ipv4Addr> {
        self.address_option(OPT_SERVER_ID)
    }

    fn agent_info(&self) -> Option<Vec<u8>> {
        self.option(OPT_AGENT_INFO)
    }

    /// Sub-option `code` of option 82 (RFC 3046 §2.0).
    fn agent_suboption(&self, code: u8) -> Option<Vec<u8>> {
        let info = self.agent_info()?;
        let mut i = 0;
        while i + 1 < info.len() {
            let len = usize::from(info[i + 1]);
            let value = info.get(i + 2..i + 2 + len)?;
            if info[i] == code {
                return Some(value.to_vec());
            }
            i += 2 + len;
        }
        None
    }

    /// One transcript line.
    fn describe(&self) -> String {
        let kind = match self.kind() {
            Some(DISCOVER) => "DISCOVER".to_owned(),
            Some(OFFER) => "OFFER".to_owned(),
            Some(REQUEST) => "REQUEST".to_owned(),
            Some(ACK) => "ACK".to_owned(),
            Some(NAK) => "NAK".to_owned(),
            Some(other) => format!("type {other}"),
            None => "BOOTP".to_owned(),
        };
        let mut line = format!("{:.3} {} > {} {kind} xid {:08x}", self.at, self.src, self.dst, self.xid);
        for (name, ip) in [("ciaddr", self.ciaddr), ("yiaddr", self.yiaddr), ("giaddr", self.giaddr)] {
            if !ip.is_unspecified() {
                line.push_str(&format!(" {name} {ip}"));
            }
        }
        if self.hops > 0 {
            line.push_str(&format!(" hops {}", self.hops));
        }
        if let Some(id) = self.server_id() {
            line.push_str(&format!(" 54={id}"));
        }
        if let Some(ip) = self.address_option(OPT_REQUESTED_IP) {
            line.push_str(&format!(" 50={ip}"));
        }
        if let Some(info) = self.agent_info() {
            line.push_str(&format!(" 82={}", hex(&info)));
        }
        line
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join("")
}

fn parse_mac(text: &str) -> [u8; 6] {
    let octets: Vec<u8> = text.split(':').map(|o| u8::from_str_radix(o, 16).expect("a hex octet")).collect();
    octets.try_into().unwrap_or_else(|_| panic!("not a MAC address: {text}"))
}

/// The DHCP datagrams of a classic pcap file of Ethernet frames (what tcpdump -w writes here); a record
/// cut off at the end of a file still being written is left out.
fn read_pcap(bytes: &[u8]) -> Vec<Dhcp> {
    let le32 = |at: usize| bytes.get(at..at + 4).map_or(0, |v| u32::from_le_bytes([v[0], v[1], v[2], v[3]]));
    let fraction = match le32(0) {
        0xa1b2_c3d4 => 1e-6,
        0xa1b2_3c4d => 1e-9,
        _ => return Vec::new(),
    };
    assert_eq!(le32(20), 1, "the capture's link type is not Ethernet");
    let mut packets = Vec::new();
    let mut at = 24;
    while bytes.len() >= at + 16 {
        let stamp = f64::from(le32(at)) + f64::from(le32(at + 4)) * fraction;
        let len = le32(at + 8) as usize;
        let Some(frame) = bytes.get(at + 16..at + 16 + len) else { break };
        at += 16 + len;
        packets.extend(Dhcp::from_frame(stamp, frame));
    }
    packets
}

/// The request a server's reply answers: the last BOOTREQUEST before it with the same xid and chaddr,
/// addressed to the replying server, that came by the way the reply goes back: through the relay
/// (giaddr set, the same giaddr as the reply) or straight from the client (giaddr 0, from the address the
/// reply goes to).
fn answered_request<'a>(packets: &'a [Dhcp], reply: &Dhcp) -> Option<&'a Dhcp> {
    packets.iter().rfind(|p| {
        let way_back = if reply.giaddr.is_unspecified() {
            p.giaddr.is_unspecified() && p.src.ip() == reply.dst.ip()
        } else {
            p.giaddr == reply.giaddr
        };
        p.op == BOOTREQUEST
            && p.at <= reply.at
            && p.xid == reply.xid
            && p.chaddr == reply.chaddr
            && p.dst.ip() == reply.src.ip()
            && way_back
    })
}

/// Replies from a server (source port 67 and a server address) to `mac`.
fn server_replies<'a>(packets: &'a [Dhcp], mac: &'a [u8; 6]) -> impl Iterator<Item = &'a Dhcp> + 'a {
    packets.iter().filter(move |p| {
        p.op == BOOTREPLY && p.src.port() == 67 && &p.chaddr == mac && in_range(*p.src.ip(), SERVER_IP, node_ip(NODES))
    })
}

/// The first ACK from a server to `mac` captured after `after`, with the request it answers.
fn ack_after(packets: &[Dhcp], mac: &[u8; 6], after: f64) -> Option<(Dhcp, Dhcp)> {
    let ack = server_replies(packets, mac).find(|p| p.is(ACK) && p.at > after)?;
    let request = answered_request(packets, ack)?;
    Some((request.clone(), ack.clone()))
}

/// RFC 3046 §2.2: "The DHCP server ... MUST copy the Relay Agent Information option received in the
/// DHCPREQUEST or DHCPDISCOVER into the DHCPOFFER, DHCPACK or DHCPNAK" it sends back to the relay agent,
/// and a server adds none on its own. Checks every server reply in `packets`: one to the relay (giaddr
/// set) carries exactly the option-82 bytes of the request it answers (which must have 82: dhcrelay -a
/// added it); one to a client directly (giaddr 0) answers a request without 82 and carries none.
/// Returns (replies to the relay, replies to clients) checked.
fn check_agent_info_echo(packets: &[Dhcp], step: &str) -> (usize, usize) {
    let (mut relayed, mut direct) = (0, 0);
    let mut failures = Vec::new();
    for reply in packets.iter().filter(|p| p.op == BOOTREPLY && p.src.port() == 67) {
        let Some(request) = answered_request(packets, reply) else {
            failures.push(format!("no captured request for the reply {}", reply.describe()));
            continue;
        };
        if reply.giaddr.is_unspecified() {
            direct += 1;
            if request.agent_info().is_some() || reply.agent_info().is_some() {
                failures.push(format!(
                    "a direct reply must carry no 82 and answer a request without it:\n    {}\n    {}",
                    request.describe(),
                    reply.describe()
                ));
            }
        } else {
            relayed += 1;
            if request.agent_info().is_none() || reply.agent_info() != request.agent_info() {
                failures.push(format!(
                    "a reply to the relay must carry the request's 82 exactly:\n    {}\n    {}",
                    request.describe(),
                    reply.describe()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{step}: RFC 3046 §2.2 echo of option 82:\n  {}", failures.join("\n  "));
    (relayed, direct)
}

fn transcript(packets: &[Dhcp]) -> String {
    packets.iter().map(|p| format!("    {}", p.describe())).collect::<Vec<_>>().join("\n")
}

// ---------------------------------------------------------------------------------------------------------
// Processes: tcpdump to a pcap, dhcrelay

/// `tcpdump -w` of the DHCP traffic on eth0 of a namespace, packet-buffered so that it can be read while
/// it runs. Printed (decoded by tcpdump -r) when the test fails.
struct Pcap {
    what: String,
    file: PathBuf,
    proc: Proc,
}

impl Pcap {
    fn start(ns: &str, what: &str, file: &Path) -> Pcap {
        let tcpdump = require_tool("tcpdump");
        let mut cmd = in_ns(ns, &tcpdump);
        cmd.args(["-Z", "root", "-i", "eth0", "-n", "-U", "--immediate-mode", "-w"]).arg(file);
        cmd.arg("udp port 67 or udp port 68");
        let log = file.with_extension("log");
        let proc = Proc::spawn(&format!("tcpdump ({what})"), cmd, &log);
        wait_tcpdump_listening(&log);
        Pcap { what: what.to_owned(), file: file.to_owned(), proc }
    }

    fn packets(&self) -> Vec<Dhcp> {
        read_pcap(&std::fs::read(&self.file).unwrap_or_default())
    }

    /// Polls the capture (tcpdump writes a packet some moments after the kernel saw it; there is no event
    /// to wait on) until `find` returns something, at most 5 s.
    fn wait_for<T>(&self, step: &str, find: impl Fn(&[Dhcp]) -> Option<T>) -> T {
        let limit = Duration::from_secs(5);
        let deadline = Instant::now() + limit;
        loop {
            let packets = self.packets();
            if let Some(found) = find(&packets) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{step}: not in the capture on the {} within {limit:?}:\n{}",
                self.what,
                transcript(&packets)
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGINT (tcpdump flushes and exits); the packets captured.
    fn stop(&mut self) -> Vec<Dhcp> {
        if self.proc.try_status().is_none() {
            signal(self.proc.pid, libc::SIGINT);
            self.proc.wait_exit(Duration::from_secs(5));
        }
        self.packets()
    }
}

impl Drop for Pcap {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            let out = Command::new("tcpdump").args(["-n", "-vvv", "-r"]).arg(&self.file).output();
            let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
            let start = text.len().saturating_sub(30_000);
            let start = (start..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
            eprintln!("capture on the {} (the test failed):\n{}", self.what, &text[start..]);
        }
    }
}

/// ISC dhcrelay in the foreground (`-d`, no pid file) in the router namespace.
struct Dhcrelay {
    proc: Proc,
}

impl Dhcrelay {
    /// `dhcrelay -4 -d --no-pid FLAGS… SERVERS…`; returns once it has opened its sockets (its start-up
    /// ends with the "Sending on Socket/fallback" line).
    fn start(router: &Router, flags: &[&str], servers: &[Ipv4Addr], log: &Path) -> Dhcrelay {
        let mut cmd = in_ns(&router.ns, require_tool("dhcrelay"));
        cmd.args(["-4", "-d", "--no-pid"]).args(flags).args(servers.iter().map(Ipv4Addr::to_string));
        let mut proc = Proc::spawn("dhcrelay", cmd, log);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(log).unwrap_or_default().contains("Socket/fallback") {
            if let Some(status) = proc.try_status() {
                panic!("dhcrelay exited with {status} at start\n{}", tail_of(log));
            }
            assert!(Instant::now() < deadline, "dhcrelay did not open its sockets within 10 s\n{}", tail_of(log));
            thread::sleep(Duration::from_millis(20));
        }
        Dhcrelay { proc }
    }
}

impl Drop for Dhcrelay {
    fn drop(&mut self) {
        self.proc.stop(Duration::from_secs(3));
        if thread::panicking() {
            eprintln!("dhcrelay's log (the test failed):\n{}", tail_of(&self.proc.log));
        }
    }
}

/// Prints these logs if the test fails.
struct LogsOnFailure(Vec<PathBuf>);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if thread::panicking() {
            for log in &self.0 {
                eprintln!("{}", tail_of(log));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The bed

/// A segment with `servers` server namespaces, the router and its client, and the two captures. Fields
/// drop in order: the captures stop before the namespaces go, the scratch directory goes last.
struct Bed {
    router: Router,
    segment_pcap: Pcap,
    client_pcap: Pcap,
    segment: Segment,
    dir: tempfile::TempDir,
}

impl Bed {
    fn new(test: &str, servers: u32) -> Bed {
        for tool in ["dhcrelay", "dhclient", "tcpdump", "iptables"] {
            require_tool(tool);
        }
        let segment = Segment::up(servers, 0, 24);
        let router = segment.add_router(1, ROUTER_UPSTREAM, ROUTER_DOWNSTREAM);
        assert_eq!((router.upstream, router.downstream), (RELAY_UPSTREAM, RELAY_DOWNSTREAM));
        let dir = scratch_dir(test);
        let segment_pcap = Pcap::start(&router.ns, "server segment (router's eth0)", &dir.path().join("segment.pcap"));
        let client_pcap = Pcap::start(&router.client_ns, "client's eth0", &dir.path().join("client.pcap"));
        Bed { router, segment_pcap, client_pcap, segment, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// One `leasehold serve` (10.77.0.1) in server namespace 1 with the two pools.
    fn start_server(&self) -> Server {
        let config = self.path("leasehold.toml");
        std::fs::write(&config, format!("[server]\nserver_ip = \"{SERVER_IP}\"\n\n{}", pools_toml()))
            .expect("write the config file");
        let data = self.path("data");
        std::fs::create_dir_all(&data).expect("create the data dir");
        let config = config.display().to_string();
        Server::start(&self.segment.server(1), &data, &self.path("leasehold.log"), &["--config", &config])
    }

    /// dhcrelay as a router's relay agent: listening for clients on relay0 only, for servers on eth0 only.
    fn relay(&self, extra: &[&str], servers: &[Ipv4Addr]) -> Dhcrelay {
        let mut flags = vec!["-id", "relay0", "-iu", "eth0"];
        flags.extend(extra);
        Dhcrelay::start(&self.router, &flags, servers, &self.path("dhcrelay.log"))
    }

    fn dhclient(&self) -> Dhclient {
        Dhclient::new(&self.router.client_ns, &subdir(self.dir.path(), "dhclient"))
    }

    fn client_mac(&self) -> [u8; 6] {
        parse_mac(&mac_of(&self.router.client_ns, "eth0"))
    }

    /// iptables DROP inside server namespace `i`: UDP to port 67 from the client subnet, i.e. the client's
    /// unicast REQUESTs (relayed ones come from the relay's address 10.77.0.254).
    fn drop_unicast_from_clients(&self, i: u32) {
        let mut cmd = in_ns(&self.segment.server(i), "iptables");
        cmd.args(["-w", "-I", "INPUT", "-p", "udp", "--dport", "67", "-s", "10.78.0.0/24", "-j", "DROP"]);
        run_ok("iptables -I INPUT … DROP", cmd, &self.path("iptables.log"), Duration::from_secs(10));
    }
}

/// What dhclient's hook reported: reason, address, server identifier, routers.
struct Event {
    reason: String,
    ip: Ipv4Addr,
    server_id: String,
    routers: Vec<String>,
}

fn next_event(dhclient: &mut Dhclient, reasons: &[&str], limit: Duration, step: &str) -> Event {
    let words = dhclient.events.expect(reasons, limit, step);
    Event {
        reason: words[0].clone(),
        ip: event_ip(&words, step),
        server_id: words.get(2).cloned().unwrap_or_default(),
        routers: words.get(3..).map(<[String]>::to_vec).unwrap_or_default(),
    }
}

/// Every hook reason dhclient can report after a lease: waiting for one of them fails fast on the wrong one.
const ANY_REASON: [&str; 7] = ["BOUND", "RENEW", "REBIND", "REBOOT", "EXPIRE", "FAIL", "RELEASE"];

/// The RENEWING/REBINDING REQUEST of RFC 2131 §4.3.2: ciaddr = the client's address, neither a server
/// identifier nor a requested address.
fn assert_extends(request: &Dhcp, ip: Ipv4Addr, step: &str) {
    assert!(
        request.is(REQUEST)
            && request.ciaddr == ip
            && request.server_id().is_none()
            && request.address_option(OPT_REQUESTED_IP).is_none(),
        "{step}: RFC 2131 §4.3.2: a RENEWING/REBINDING REQUEST has ciaddr {ip} and no options 54/50; got {}",
        request.describe()
    );
}

/// The T1 and T2 an ACK gave (options 58, 59), in seconds.
fn t1_t2(ack: &Dhcp) -> (f64, f64) {
    let secs = |code| {
        let v = ack.option(code).unwrap_or_else(|| panic!("option {code} missing in {}", ack.describe()));
        f64::from(u32::from_be_bytes(v.as_slice().try_into().expect("a 4-byte time")))
    };
    (secs(58), secs(59))
}

// ---------------------------------------------------------------------------------------------------------
// 1. Bind, renew by unicast, rebind through the relay; option 82 echoed

#[test]
fn dhclient_behind_dhcrelay_binds_renews_by_unicast_and_rebinds_through_the_relay() {
    let _serial = serial();
    let started = Instant::now();
    let mut bed = Bed::new("relay-dhclient", 1);
    let server = bed.start_server();
    let _relay = bed.relay(&["-a"], &[SERVER_IP]);
    let mut dhclient = bed.dhclient();
    let _logs = LogsOnFailure(vec![dhclient.dir.join("dhclient.log")]);
    let mac = bed.client_mac();

    // Bind. The client broadcasts; the relay forwards with giaddr = 10.78.0.1 and 82; the server answers
    // the relay (RFC 2131 §4.1) from the pool of giaddr's subnet.
    dhclient.run("-1", Duration::from_secs(45));
    let bound = next_event(&mut dhclient, &["BOUND"], Duration::from_secs(5), "bind");
    let ip = bound.ip;
    println!(
        "bind: dhclient BOUND {ip}, server {}, routers {:?} after {:?}",
        bound.server_id,
        bound.routers,
        started.elapsed()
    );
    assert!(
        in_range(ip, RELAYED_START, RELAYED_END),
        "bind: {ip} is not in the relayed pool {RELAYED_START}–{RELAYED_END}"
    );
    assert_eq!(bound.server_id, SERVER_IP.to_string(), "bind: server identifier (option 54)");
    assert_eq!(bound.routers, [RELAY_DOWNSTREAM.to_string()], "bind: routers (option 3) of the relayed pool");
    assert!(
        ipv4_addrs(&bed.router.client_ns, "eth0").contains(&(ip, 24)),
        "bind: {ip}/24 not configured on the client"
    );
    let (request, bind_ack) = bed.segment_pcap.wait_for("bind", |p| ack_after(p, &mac, 0.0));
    assert!(
        request.giaddr == RELAY_DOWNSTREAM
            && request.hops == 1
            && request.server_id() == Some(SERVER_IP)
            && request.address_option(OPT_REQUESTED_IP) == Some(ip)
            && bind_ack.dst == SocketAddrV4::new(RELAY_DOWNSTREAM, 67)
            && bind_ack.yiaddr == ip,
        "bind: expected the SELECTING REQUEST relayed (giaddr {RELAY_DOWNSTREAM}, hops 1) and the ACK sent to the \
         relay at {RELAY_DOWNSTREAM}:67:\n    {}\n    {}",
        request.describe(),
        bind_ack.describe()
    );
    let mac_text = mac_of(&bed.router.client_ns, "eth0");
    let leased = server.wait_lease(ip, Duration::from_secs(5), "bound to the client", |l| {
        l.state == "bound" && l.mac.eq_ignore_ascii_case(&mac_text)
    });
    let (t1, t2) = t1_t2(&bind_ack);

    // Renew. At T1 the client unicasts a RENEWING REQUEST to the server (RFC 2131 §4.4.5), routed by the
    // router, not relayed; the server ACKs it to ciaddr (RFC 2131 §4.1), the same address, a later expiry.
    let renewed = next_event(&mut dhclient, &ANY_REASON, Duration::from_secs(LEASE_SECS), "renewal");
    let (request, renew_ack) = bed.segment_pcap.wait_for("renewal", |p| ack_after(p, &mac, bind_ack.at));
    println!(
        "renew: dhclient {} {} after {:.1} s\n    {}\n    {}",
        renewed.reason,
        renewed.ip,
        renew_ack.at - bind_ack.at,
        request.describe(),
        renew_ack.describe()
    );
    assert_eq!((renewed.reason.as_str(), renewed.ip), ("RENEW", ip), "renewal: dhclient must RENEW {ip}");
    assert_extends(&request, ip, "renewal");
    assert!(
        request.src == SocketAddrV4::new(ip, 68)
            && request.dst == SocketAddrV4::new(SERVER_IP, 67)
            && request.giaddr.is_unspecified()
            && renew_ack.dst == SocketAddrV4::new(ip, 68)
            && renew_ack.yiaddr == ip
            && renew_ack.giaddr.is_unspecified(),
        "renewal: RFC 2131 §4.4.5/§4.1: the REQUEST goes by unicast from {ip}:68 to {SERVER_IP}:67 with giaddr 0 and \
         the ACK to {ip}:68:\n    {}\n    {}",
        request.describe(),
        renew_ack.describe()
    );
    // ISC dhclient draws its renewal time between 3/4 T1 and T1 (client/dhclient.c, "introduce some
    // randomness to the renewal time"); it keeps T2 as given.
    assert!(
        request.at - bind_ack.at >= 0.75 * t1 - 0.5,
        "renewal: the REQUEST went out {:.1} s after the ACK, before 3/4 of T1 ({t1} s)",
        request.at - bind_ack.at
    );
    let extended = server.wait_lease(ip, Duration::from_secs(5), "extended by the renewal", |l| {
        l.state == "bound" && l.expires_at > leased.expires_at
    });

    // Rebind. Drop the client subnet's unicast in the server's namespace: the RENEWING REQUESTs after the
    // next T1 go unanswered; after T2 the client broadcasts (REBINDING, RFC 2131 §4.4.5), the relay
    // forwards it and the server ACKs the same address through the relay.
    bed.drop_unicast_from_clients(1);
    let rebound = next_event(&mut dhclient, &ANY_REASON, Duration::from_secs(LEASE_SECS + 10), "rebind");
    let (request, rebind_ack) = bed.segment_pcap.wait_for("rebind", |p| ack_after(p, &mac, renew_ack.at));
    let client_side = bed.client_pcap.packets();
    let unanswered: Vec<&Dhcp> = client_side
        .iter()
        .filter(|p| p.op == BOOTREQUEST && p.at > renew_ack.at && p.dst == SocketAddrV4::new(SERVER_IP, 67))
        .collect();
    let first_broadcast = client_side
        .iter()
        .find(|p| p.op == BOOTREQUEST && p.at > renew_ack.at && p.dst.ip().is_broadcast())
        .unwrap_or_else(|| panic!("rebind: the client broadcast no REQUEST:\n{}", transcript(&client_side)));
    println!(
        "rebind: dhclient {} {} after {:.1} s; {} unicast REQUESTs dropped, then broadcast {:.1} s after the renewal \
         (T2 = {t2} s)\n    {}\n    {}",
        rebound.reason,
        rebound.ip,
        rebind_ack.at - renew_ack.at,
        unanswered.len(),
        first_broadcast.at - renew_ack.at,
        request.describe(),
        rebind_ack.describe()
    );
    // ISC dhclient reports a rebind as RENEW (module documentation); the wire shows which it was.
    assert!(
        ["REBIND", "RENEW"].contains(&rebound.reason.as_str()) && rebound.ip == ip,
        "rebind: dhclient must keep {ip}; its hook said {} {}",
        rebound.reason,
        rebound.ip
    );
    assert!(!unanswered.is_empty(), "rebind: no unicast REQUEST was sent (and dropped) between T1 and T2");
    assert!(
        server_replies(&bed.segment_pcap.packets(), &mac)
            .all(|r| !(r.at > renew_ack.at && r.at < rebind_ack.at && r.dst.port() == 68)),
        "rebind: a unicast REQUEST was answered although the server's namespace drops it"
    );
    assert!(
        first_broadcast.at - renew_ack.at >= t2 - 0.5,
        "rebind: the client broadcast its REQUEST {:.1} s after the renewal, before T2 ({t2} s)",
        first_broadcast.at - renew_ack.at
    );
    assert_extends(&request, ip, "rebind");
    assert!(
        request.giaddr == RELAY_DOWNSTREAM
            && request.src == SocketAddrV4::new(RELAY_UPSTREAM, 67)
            && client_side.iter().any(|p| p.xid == request.xid && p.dst == SocketAddrV4::new(Ipv4Addr::BROADCAST, 67))
            && rebind_ack.dst == SocketAddrV4::new(RELAY_DOWNSTREAM, 67)
            && rebind_ack.yiaddr == ip,
        "rebind: the client's broadcast REQUEST must reach the server through the relay (giaddr {RELAY_DOWNSTREAM}) and \
         the ACK go back to the relay:\n    {}\n    {}",
        request.describe(),
        rebind_ack.describe()
    );
    server.wait_lease(ip, Duration::from_secs(5), "extended by the rebind", |l| {
        l.state == "bound" && l.expires_at > extended.expires_at && l.mac.eq_ignore_ascii_case(&mac_text)
    });

    // Option 82 over the whole exchange.
    // The capture ends before dhclient -x, which sends an INIT-REBOOT REQUEST on its way out (client/
    // dhclient.c: exit mode still calls state_reboot before finish).
    let packets = bed.segment_pcap.stop();
    dhclient.run("-x", Duration::from_secs(15));
    println!("transcript on the server segment:\n{}", transcript(&packets));
    let (relayed, direct) = check_agent_info_echo(&packets, "whole run");
    let circuit = request.agent_suboption(1);
    println!(
        "option 82: {relayed} replies to the relay echoed the request's 82 ({}; circuit id {:?}), {direct} direct \
         replies carried none; {:?} in all",
        hex(&request.agent_info().unwrap_or_default()),
        circuit.as_deref().map(String::from_utf8_lossy),
        started.elapsed()
    );
    assert!(relayed >= 3 && direct >= 1, "the run must include relayed OFFER/ACKs and a direct renewal ACK");
    assert!(circuit.is_some(), "dhcrelay -a must add a circuit id (82 sub-option 1): {}", request.describe());
}

// ---------------------------------------------------------------------------------------------------------
// 2. RFC 3527 link selection

#[test]
fn link_selection_suboption_chooses_the_subnet_not_giaddr() {
    let _serial = serial();
    let started = Instant::now();
    let mut bed = Bed::new("relay-link-selection", 1);
    let server = bed.start_server();
    // -U eth0: giaddr = the relay's eth0 address (10.77.0.254, inside the server's own subnet and so the
    // "local" pool's), 82 sub-option 5 = the address of the interface the request came in on (10.78.0.1).
    // (dhcrelay 4.4.3 crashes when -U is combined with -iu for the same interface, so -U alone here.)
    let _relay =
        Dhcrelay::start(&bed.router, &["-U", "eth0", "-id", "relay0"], &[SERVER_IP], &bed.path("dhcrelay.log"));
    let mut dhclient = bed.dhclient();
    let _logs = LogsOnFailure(vec![dhclient.dir.join("dhclient.log")]);
    let mac = bed.client_mac();

    dhclient.run("-1", Duration::from_secs(45));
    let bound = next_event(&mut dhclient, &["BOUND"], Duration::from_secs(5), "bind");
    let ip = bound.ip;
    let (request, ack) = bed.segment_pcap.wait_for("bind", |p| ack_after(p, &mac, 0.0));
    let offer = server_replies(&bed.segment_pcap.packets(), &mac)
        .find(|p| p.is(OFFER))
        .cloned()
        .expect("the OFFER is captured before the ACK");
    println!(
        "link selection: dhclient BOUND {ip}, server {}, routers {:?}\n    {}\n    {}\n    {}",
        bound.server_id,
        bound.routers,
        offer.describe(),
        request.describe(),
        ack.describe()
    );
    // What the relay sent: giaddr = its upstream address, sub-option 5 = the client-side address.
    assert_eq!(request.giaddr, RELAY_UPSTREAM, "dhcrelay -U sets giaddr to its upstream address");
    assert_eq!(
        request.agent_suboption(5),
        Some(RELAY_DOWNSTREAM.octets().to_vec()),
        "RFC 3527 §3: sub-option 5 carries the client's subnet address: {}",
        request.describe()
    );
    // RFC 3527 §3: the server uses sub-option 5, not giaddr, to choose the subnet, and replies to giaddr.
    assert!(
        in_range(ip, RELAYED_START, RELAYED_END) && in_range(offer.yiaddr, RELAYED_START, RELAYED_END),
        "RFC 3527: the client got {ip} (offered {}); it must come from the link-selection subnet's pool \
         {RELAYED_START}–{RELAYED_END}, not from the pool of giaddr {RELAY_UPSTREAM} ({LOCAL_START}–{LOCAL_END})",
        offer.yiaddr
    );
    assert_eq!(bound.routers, [RELAY_DOWNSTREAM.to_string()], "routers (option 3) of the relayed pool");
    assert_eq!(bound.server_id, SERVER_IP.to_string(), "server identifier (option 54)");
    assert_eq!(ack.dst, SocketAddrV4::new(RELAY_UPSTREAM, 67), "the ACK goes to giaddr, port 67 (RFC 2131 §4.1)");
    let mac_text = mac_of(&bed.router.client_ns, "eth0");
    server.wait_lease(ip, Duration::from_secs(5), "bound to the client", |l| {
        l.state == "bound" && l.mac.eq_ignore_ascii_case(&mac_text)
    });

    // The capture ends before dhclient -x, which sends an INIT-REBOOT REQUEST on its way out (client/
    // dhclient.c: exit mode still calls state_reboot before finish).
    let packets = bed.segment_pcap.stop();
    dhclient.run("-x", Duration::from_secs(15));
    println!("transcript on the server segment:\n{}", transcript(&packets));
    let (relayed, _) = check_agent_info_echo(&packets, "link selection");
    println!("option 82 with sub-option 5 echoed in {relayed} replies ({:?} in all)", started.elapsed());
    assert!(relayed >= 2, "the OFFER and the ACK went to the relay");
}

// ---------------------------------------------------------------------------------------------------------
// 3. A relayed client across a leader kill

#[test]
fn relayed_client_keeps_its_address_and_renews_across_a_leader_kill() {
    let _serial = serial();
    let started = Instant::now();
    let mut bed = Bed::new("relay-cluster", NODES);
    let mut cluster = Cluster::start_pools(&bed.segment, bed.dir.path(), Pools::Toml(pools_toml()));
    let (leader, _) = cluster.wait_for_leader(&[1, 2, 3], SETTLE_LIMIT, "start");
    let servers: Vec<Ipv4Addr> = (1..=NODES).map(node_ip).collect();
    let _relay = bed.relay(&["-a"], &servers);
    let mut dhclient = bed.dhclient();
    let _logs = LogsOnFailure(vec![dhclient.dir.join("dhclient.log")]);
    let mac = bed.client_mac();
    let mac_text = mac_of(&bed.router.client_ns, "eth0");
    println!("cluster: leader node {leader} after {:?}", started.elapsed());

    // Bind: the relay forwards to all three; the leader answers.
    dhclient.run("-1", Duration::from_secs(45));
    let bound = next_event(&mut dhclient, &["BOUND"], Duration::from_secs(5), "bind");
    let ip = bound.ip;
    let (_, bind_ack) = bed.segment_pcap.wait_for("bind", |p| ack_after(p, &mac, 0.0));
    println!("bind: dhclient BOUND {ip} from {}\n    {}", bound.server_id, bind_ack.describe());
    assert!(in_range(ip, RELAYED_START, RELAYED_END), "bind: {ip} is not in the relayed pool");
    assert_eq!(bound.server_id, node_ip(leader).to_string(), "bind: the leader answers relayed requests");
    assert_eq!(bind_ack.dst, SocketAddrV4::new(RELAY_DOWNSTREAM, 67), "bind: the ACK goes to the relay");
    cluster.wait_bound_everywhere(&[1, 2, 3], ip, &mac_text, "bind");

    // Renew by unicast to the leader.
    let renewed = next_event(&mut dhclient, &ANY_REASON, Duration::from_secs(LEASE_SECS), "renewal");
    let (request, renew_ack) = bed.segment_pcap.wait_for("renewal", |p| ack_after(p, &mac, bind_ack.at));
    println!(
        "renew: dhclient {} {}\n    {}\n    {}",
        renewed.reason,
        renewed.ip,
        request.describe(),
        renew_ack.describe()
    );
    assert_eq!((renewed.reason.as_str(), renewed.ip), ("RENEW", ip), "renewal: dhclient must RENEW {ip}");
    assert_extends(&request, ip, "renewal");
    assert!(
        request.dst == SocketAddrV4::new(node_ip(leader), 67)
            && request.giaddr.is_unspecified()
            && renew_ack.src.ip() == &node_ip(leader)
            && renew_ack.dst == SocketAddrV4::new(ip, 68),
        "renewal: unicast to the leader {} and ACKed by it to {ip}:68:\n    {}\n    {}",
        node_ip(leader),
        request.describe(),
        renew_ack.describe()
    );
    let before_kill = cluster.server(leader).lease_of(ip).expect("the lease on the leader");

    // Kill the leader. The next renewals (unicast to the dead node) go unanswered; after T2 the client
    // broadcasts, the relay forwards to all three and the new leader ACKs the same address (RFC 2131 §4.4.5).
    let killed_at = cluster.kill(leader);
    let survivors: Vec<u32> = (1..=NODES).filter(|&id| id != leader).collect();
    let (new_leader, elected_at) = cluster.wait_for_leader(&survivors, SETTLE_LIMIT, "after the kill");
    println!("kill: node {leader} killed; node {new_leader} leads after {:?}", elected_at.duration_since(killed_at));
    let rebound = next_event(&mut dhclient, &ANY_REASON, Duration::from_secs(LEASE_SECS + 10), "rebind");
    let (request, rebind_ack) = bed.segment_pcap.wait_for("rebind", |p| ack_after(p, &mac, renew_ack.at));
    let (_, t2) = t1_t2(&renew_ack);
    let client_side = bed.client_pcap.packets();
    let to_dead = client_side
        .iter()
        .filter(|p| p.op == BOOTREQUEST && p.at > renew_ack.at && p.dst == SocketAddrV4::new(node_ip(leader), 67))
        .count();
    println!(
        "rebind: dhclient {} {} from {}, {:.1} s after the renewal ({to_dead} unicast REQUESTs to the dead node)\n    \
         {}\n    {}",
        rebound.reason,
        rebound.ip,
        rebound.server_id,
        rebind_ack.at - renew_ack.at,
        request.describe(),
        rebind_ack.describe()
    );
    assert!(
        ["REBIND", "RENEW"].contains(&rebound.reason.as_str()) && rebound.ip == ip,
        "rebind: dhclient must keep {ip} across the leader's death; its hook said {} {}",
        rebound.reason,
        rebound.ip
    );
    assert_eq!(rebound.server_id, node_ip(new_leader).to_string(), "rebind: the new leader's server identifier");
    assert!(to_dead >= 1, "rebind: the client sent no unicast renewal to the dead leader before rebinding");
    assert_extends(&request, ip, "rebind");
    assert!(
        request.giaddr == RELAY_DOWNSTREAM
            && request.at - renew_ack.at >= t2 - 0.5
            && rebind_ack.src.ip() == &node_ip(new_leader)
            && rebind_ack.dst == SocketAddrV4::new(RELAY_DOWNSTREAM, 67)
            && rebind_ack.yiaddr == ip,
        "rebind: after T2 ({t2} s) the REQUEST comes through the relay and the new leader {} ACKs {ip} to it:\n    {}\n    {}",
        node_ip(new_leader),
        request.describe(),
        rebind_ack.describe()
    );

    // The next renewal goes by unicast straight to the new leader, which ACKs it.
    let renewed = next_event(&mut dhclient, &ANY_REASON, Duration::from_secs(LEASE_SECS), "renewal to the new leader");
    let (request, ack) = bed.segment_pcap.wait_for("renewal to the new leader", |p| ack_after(p, &mac, rebind_ack.at));
    println!(
        "renew: dhclient {} {} from {}\n    {}\n    {}",
        renewed.reason,
        renewed.ip,
        renewed.server_id,
        request.describe(),
        ack.describe()
    );
    assert_eq!(
        (renewed.reason.as_str(), renewed.ip),
        ("RENEW", ip),
        "renewal to the new leader: dhclient must RENEW {ip}"
    );
    assert_eq!(renewed.server_id, node_ip(new_leader).to_string());
    assert_extends(&request, ip, "renewal to the new leader");
    assert!(
        request.dst == SocketAddrV4::new(node_ip(new_leader), 67)
            && request.giaddr.is_unspecified()
            && ack.src.ip() == &node_ip(new_leader)
            && ack.dst == SocketAddrV4::new(ip, 68),
        "renewal to the new leader: unicast to {} and ACKed by it to {ip}:68:\n    {}\n    {}",
        node_ip(new_leader),
        request.describe(),
        ack.describe()
    );
    for &id in &survivors {
        cluster.server(id).wait_lease(ip, Duration::from_secs(5), "bound to the client, extended", |l| {
            l.state == "bound" && l.mac.eq_ignore_ascii_case(&mac_text) && l.expires_at > before_kill.expires_at
        });
    }
    assert_no_double_binding(&cluster, &survivors, "after the leader change");

    // The capture ends before dhclient -x, which sends an INIT-REBOOT REQUEST on its way out (client/
    // dhclient.c: exit mode still calls state_reboot before finish).
    let packets = bed.segment_pcap.stop();
    dhclient.run("-x", Duration::from_secs(15));
    println!("transcript on the server segment:\n{}", transcript(&packets));
    let (relayed, direct) = check_agent_info_echo(&packets, "cluster");
    println!(
        "option 82: {relayed} relayed replies echoed it, {direct} direct replies carried none; {:?} in all",
        started.elapsed()
    );
    assert!(relayed >= 3 && direct >= 2, "the run must include relayed OFFER/ACKs and two direct renewal ACKs");
}

// ---------------------------------------------------------------------------------------------------------
// 4. dhcrelay on the routed interface itself: copies of the unicast renewal

#[test]
fn relay_on_the_routed_interface_copies_renewals_and_the_client_keeps_one_address() {
    let _serial = serial();
    let started = Instant::now();
    let mut bed = Bed::new("relay-copies", 1);
    let server = bed.start_server();
    // As FIELD-NOTES runs it: `-i lan0 -i eth0`, both interfaces up- and downstream. Its packet sockets see
    // the client's unicast renewal arrive on lan0 and leave on eth0, and it relays both sightings.
    let _relay =
        Dhcrelay::start(&bed.router, &["-a", "-i", "lan0", "-i", "eth0"], &[SERVER_IP], &bed.path("dhcrelay.log"));
    let mut dhclient = bed.dhclient();
    let _logs = LogsOnFailure(vec![dhclient.dir.join("dhclient.log")]);
    let mac = bed.client_mac();
    let mac_text = mac_of(&bed.router.client_ns, "eth0");

    dhclient.run("-1", Duration::from_secs(45));
    let bound = next_event(&mut dhclient, &["BOUND"], Duration::from_secs(5), "bind");
    let ip = bound.ip;
    assert!(in_range(ip, RELAYED_START, RELAYED_END), "bind: {ip} is not in the relayed pool");
    let (_, bind_ack) = bed.segment_pcap.wait_for("bind", |p| ack_after(p, &mac, 0.0));
    let leased = server.wait_lease(ip, Duration::from_secs(5), "bound", |l| l.state == "bound");

    let renewed = next_event(&mut dhclient, &ANY_REASON, Duration::from_secs(LEASE_SECS), "renewal");
    let (_, renew_ack) = bed.segment_pcap.wait_for("renewal", |p| ack_after(p, &mac, bind_ack.at));
    assert_eq!((renewed.reason.as_str(), renewed.ip), ("RENEW", ip), "renewal: dhclient must RENEW {ip}");
    // What reached the servers for that renewal: the client's own unicast and the relay's copies of it
    // (same xid, ciaddr set, giaddr = the address of the interface dhcrelay saw it on).
    let packets = bed.segment_pcap.packets();
    let direct = packets
        .iter()
        .rfind(|p| p.op == BOOTREQUEST && p.at <= renew_ack.at + 1.0 && p.giaddr.is_unspecified() && p.ciaddr == ip)
        .cloned()
        .unwrap_or_else(|| panic!("renewal: no unicast REQUEST from {ip}:\n{}", transcript(&packets)));
    let copies: Vec<&Dhcp> = packets
        .iter()
        .filter(|p| p.op == BOOTREQUEST && p.xid == direct.xid && !p.giaddr.is_unspecified())
        .filter(|p| p.ciaddr == ip && (p.at - direct.at).abs() < 1.0)
        .collect();
    let answers: Vec<&Dhcp> = server_replies(&packets, &mac).filter(|r| r.at >= direct.at).collect();
    println!(
        "renewal: {} relayed copies of the unicast REQUEST, {} answers:\n    {}\n{}\n{}",
        copies.len(),
        answers.len(),
        direct.describe(),
        copies.iter().map(|p| format!("    {}", p.describe())).collect::<Vec<_>>().join("\n"),
        answers.iter().map(|p| format!("    {}", p.describe())).collect::<Vec<_>>().join("\n")
    );
    assert!(!copies.is_empty(), "renewal: dhcrelay relayed no copy of the unicast REQUEST (the case under test)");
    // Whatever the server made of the copies, the client saw only ACKs for its address, no NAK, and the
    // server holds one lease for it, extended (RFC 2131 §4.3.2: same address).
    let client_side = bed.client_pcap.packets();
    let to_client: Vec<&Dhcp> = client_side.iter().filter(|p| p.op == BOOTREPLY && p.chaddr == mac).collect();
    assert!(
        to_client.iter().all(|r| !r.is(NAK) && r.yiaddr == ip),
        "the client must see only offers/ACKs of {ip} and no NAK:\n{}",
        transcript(&client_side)
    );
    server.wait_lease(ip, Duration::from_secs(5), "extended by the renewal", |l| {
        l.state == "bound" && l.mac.eq_ignore_ascii_case(&mac_text) && l.expires_at > leased.expires_at
    });
    let held: Vec<Ipv4Addr> = server
        .leases()
        .iter()
        .filter(|l| l.state == "bound" && l.mac.eq_ignore_ascii_case(&mac_text))
        .map(|l| l.ip)
        .collect();
    assert_eq!(held, [ip], "the server must hold exactly one bound lease for {mac_text}");

    let packets = bed.segment_pcap.stop();
    dhclient.run("-x", Duration::from_secs(15));
    let (relayed, direct) = check_agent_info_echo(&packets, "copies");
    println!(
        "option 82: {relayed} relayed replies echoed it, {direct} direct ones carried none; {:?} in all",
        started.elapsed()
    );
}
