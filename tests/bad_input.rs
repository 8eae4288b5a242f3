//! Hostile input is dropped and counted, never a panic (DESIGN.md: "Bad input never crashes a node and
//! never corrupts the pool: malformed packets are dropped and counted").
//!
//! The transcript, on a private L2 segment (a /16; pool 10.77.1.0–10.77.255.254, so a flood of 10,000
//! clients fits):
//!
//! 1. `lh…-c1`, the hostile host (10.77.0.250, so it can also unicast), sends to the server's port 67,
//!    alternating broadcast (255.255.255.255) and unicast (10.77.0.1), one kind of damage at a time. After
//!    each kind the test waits until the server has read and handled every datagram and checks `/metrics`:
//!    the drop reason for that damage went up by exactly the number sent, no other reason moved, nothing
//!    was accepted, nothing was answered.
//!    - `truncated`: every length 0..240 of a valid DISCOVER (RFC 2131 §2: 236 header bytes, then the cookie);
//!    - `bad_magic_cookie`: the options field does not start with 99.130.83.99 (RFC 2131 §3);
//!    - `not_bootrequest`: op is not 1 (BOOTREQUEST, RFC 2131 §2); op 2 is a server's reply;
//!    - `unsupported_hardware`: htype/hlen other than Ethernet 1/6 (RFC 1700; InfiniBand, RFC 4390, has
//!      hlen 0);
//!    - `malformed_options`: option lengths that run past the end of the field, an option overload
//!      (RFC 2132 §9.3) into a `file` field whose option runs past it, values of impossible length;
//!    - no option 53: a BOOTP request (RFC 1542 §2), counted as received `bootp` and left unanswered:
//!      no client of the test has a reservation and no pool serves dynamic BOOTP;
//!    - `unexpected_message_type`: option 53 is a server's type (OFFER, ACK, NAK) or not a client's;
//!    - `no_pool`: a relayed DISCOVER (RFC 3046) from a giaddr in no configured subnet (accepted, then
//!      dropped by the engine);
//!    - `oversized`: datagrams of 1,501, 4,000 and 65,507 bytes (max_frame_bytes is 1,500; the kernel
//!      fragments them over the 1,500-byte MTU); a 1,500-byte DISCOVER is still accepted, 1,500 bytes of
//!      garbage are dropped but not as oversized;
//!    - seeded random input: 2,000 datagrams of random bytes (all dropped, whatever the reason), 1,000
//!      valid headers with random options and 1,000 PXE DISCOVERs with random bytes flipped (each one
//!      either dropped with a reason or accepted as a request and answered: every datagram is accounted
//!      for).
//! 2. A flood: DISCOVERs from 10,000 distinct MACs in bursts of 500 every 50 ms (about 8,000 a second),
//!    sent without waiting for answers. While it runs, a legitimate `TestClient` in `lh…-c2` does
//!    DISCOVER → OFFER → REQUEST → ACK, and a real busybox udhcpc in `lh…-c3` gets a lease. Every flood
//!    datagram the server read was a valid DISCOVER or counted as `overloaded`.
//! 3. A blast: the same 10,000 DISCOVERs back to back. Each one is read by the server or counted as
//!    dropped by its kernel (`RcvbufErrors`), and each one read is answered or counted.
//! 4. Afterwards the server is still running and healthy, and both clients get leases again.

mod netns_support;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use leasehold_tests::{
    build, test_mac, ClientConfig, ClientMessage, ClientOptions, Mac, RetryPolicy, Target, TestClient,
};
use netns_support::*;

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const HOSTILE_IP: &str = "10.77.0.250/16";
const POOL_START: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 0);
const POOL_END: Ipv4Addr = Ipv4Addr::new(10, 77, 255, 254);
/// `[limits] max_frame_bytes` default.
const MAX_FRAME_BYTES: usize = 1_500;
/// The largest UDP payload IPv4 can carry.
const MAX_UDP_PAYLOAD: usize = 65_507;
const FLOOD_CLIENTS: u32 = 10_000;
const FLOOD_BURST: u32 = 500;
const FLOOD_PAUSE: Duration = Duration::from_millis(50);
/// Every label of `leasehold_drops_total`.
const DROP_REASONS: [&str; 10] = [
    "truncated",
    "oversized",
    "not_bootrequest",
    "unsupported_hardware",
    "bad_magic_cookie",
    "malformed_options",
    "unexpected_message_type",
    "overloaded",
    "no_pool",
    "proposal_backlog",
];
const REQUEST_TYPES: [&str; 6] = ["discover", "request", "decline", "release", "inform", "bootp"];
const REPLY_TYPES: [&str; 4] = ["offer", "ack", "nak", "bootreply"];

// ---------------------------------------------------------------------------------------------------------
// Seeded random input

/// xorshift64 (Marsaglia): reproducible garbage without a new dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

// ---------------------------------------------------------------------------------------------------------
// Datagrams

/// A valid DISCOVER (300 bytes: header, cookie, 53, 55, end, padding) from a hostile-side MAC.
fn discover(index: u32) -> Vec<u8> {
    build(
        hostile_mac(index),
        0xbad0_0000 | index,
        &ClientMessage::Discover { requested_ip: None },
        &ClientOptions::default(),
    )
}

fn hostile_mac(index: u32) -> Mac {
    test_mac(0x00ba_0000 | index)
}

/// The 240 bytes of a valid BOOTREQUEST header plus the magic cookie, followed by `options`.
fn with_options(index: u32, options: &[u8]) -> Vec<u8> {
    let mut bytes = discover(index);
    bytes.truncate(240);
    bytes.extend_from_slice(options);
    bytes
}

// ---------------------------------------------------------------------------------------------------------
// The server's counters

#[derive(Debug, Clone, Default, PartialEq)]
struct Counters {
    datagrams: u64,
    drops: BTreeMap<&'static str, u64>,
    received: BTreeMap<&'static str, u64>,
    sent: BTreeMap<&'static str, u64>,
    /// `leasehold_silent_total` by reason: requests deliberately left unanswered (RFC 2131).
    silent: BTreeMap<String, u64>,
}

impl Counters {
    fn read(server: &Server) -> Counters {
        let text = server.metrics();
        let get = |name: &str, labels: &str| -> u64 {
            metric(&text, name, labels).unwrap_or_else(|| panic!("/metrics has no {name}{{{labels}}}:\n{text}")) as u64
        };
        Counters {
            datagrams: get("leasehold_datagrams_received_total", ""),
            drops: DROP_REASONS
                .iter()
                .map(|r| (*r, get("leasehold_drops_total", &format!("reason=\"{r}\""))))
                .collect(),
            received: REQUEST_TYPES
                .iter()
                .map(|t| (*t, get("leasehold_packets_received_total", &format!("type=\"{t}\""))))
                .collect(),
            sent: REPLY_TYPES
                .iter()
                .map(|t| (*t, get("leasehold_packets_sent_total", &format!("type=\"{t}\""))))
                .collect(),
            silent: text
                .lines()
                .filter_map(|line| {
                    let rest = line.strip_prefix("leasehold_silent_total{reason=\"")?;
                    let (reason, value) = rest.split_once("\"} ")?;
                    Some((reason.to_owned(), value.trim().parse::<f64>().ok()? as u64))
                })
                .collect(),
        }
    }

    /// `self - before`, counter by counter.
    fn since(&self, before: &Counters) -> Counters {
        let diff = |now: &BTreeMap<&'static str, u64>, then: &BTreeMap<&'static str, u64>| {
            now.iter().map(|(k, v)| (*k, v - then.get(k).copied().unwrap_or(0))).collect()
        };
        Counters {
            datagrams: self.datagrams - before.datagrams,
            drops: diff(&self.drops, &before.drops),
            received: diff(&self.received, &before.received),
            sent: diff(&self.sent, &before.sent),
            silent: self
                .silent
                .iter()
                .map(|(k, v)| (k.clone(), v - before.silent.get(k).copied().unwrap_or(0)))
                .collect(),
        }
    }

    fn total_drops(&self) -> u64 {
        self.drops.values().sum()
    }

    fn total_received(&self) -> u64 {
        self.received.values().sum()
    }

    /// Every datagram read was parsed (accepted or dropped) and every accepted request has an outcome: a
    /// reply, a silence with its reason, or an engine drop. `overloaded` may count a datagram before or after
    /// it was accepted, so both conditions allow for it; without overload they are equalities.
    fn all_handled(&self) -> bool {
        let overloaded = self.drops["overloaded"];
        let parsed =
            self.total_received() + self.total_drops() - self.drops["no_pool"] - self.drops["proposal_backlog"];
        let outcomes = self.sent.values().sum::<u64>()
            + self.silent.values().sum::<u64>()
            + self.drops["no_pool"]
            + self.drops["proposal_backlog"];
        parsed >= self.datagrams && outcomes + overloaded >= self.total_received()
    }

    /// Non-zero counters only, for messages.
    fn summary(&self) -> String {
        let mut parts = vec![format!("datagrams={}", self.datagrams)];
        for (kind, map) in [("drop", &self.drops), ("received", &self.received), ("sent", &self.sent)] {
            parts.extend(map.iter().filter(|(_, v)| **v > 0).map(|(k, v)| format!("{kind}:{k}={v}")));
        }
        parts.extend(self.silent.iter().filter(|(_, v)| **v > 0).map(|(k, v)| format!("silent:{k}={v}")));
        parts.join(" ")
    }
}

/// Polls `/metrics` (the server gives no event for "datagram handled") until `done(delta since before)`,
/// at most 10 s; returns the last delta.
fn wait_counters(server: &Server, before: &Counters, what: &str, done: impl Fn(&Counters) -> bool) -> Counters {
    poll_until(
        Duration::from_secs(10),
        || Counters::read(server).since(before),
        done,
        |delta| format!("{what}: the server's counters did not settle within 10 s: {}", delta.summary()),
    )
}

/// What one kind of damage must do to the counters.
enum Expect {
    /// Every datagram dropped with this reason; nothing else moves.
    Dropped(&'static str),
    /// Every datagram dropped, with any reason but these.
    DroppedNotAs(&'static [&'static str]),
    /// Every datagram either dropped or accepted as a request (random options may form a valid message).
    Accounted,
    /// Accepted as `type` and then dropped by the engine with `reason` (e.g. no_pool).
    AcceptedThenDropped(&'static str, &'static str),
    /// Accepted as requests of this type (the boundary cases that are not damage).
    Accepted(&'static str),
    /// Accepted as requests of this type and left unanswered for this reason.
    AcceptedUnanswered(&'static str, &'static str),
}

/// Sends `datagrams` from the hostile client, alternating broadcast and unicast, in batches the server's
/// socket buffer holds; waits until the server has read and accounted for every one; checks `expect`.
fn provoke(server: &Server, hostile: &mut TestClient, what: &str, datagrams: &[Vec<u8>], expect: Expect) -> Counters {
    let before = Counters::read(server);
    let n = datagrams.len() as u64;
    let mut sent = 0u64;
    for batch in datagrams.chunks(200) {
        for (i, bytes) in batch.iter().enumerate() {
            let target = if i % 2 == 0 { Target::Broadcast } else { Target::Unicast(SERVER_IP) };
            hostile
                .send_raw(bytes, target)
                .unwrap_or_else(|e| panic!("{what}: sending a {}-byte datagram: {e}", bytes.len()));
        }
        sent += batch.len() as u64;
        // Every datagram read and either dropped or handed on as a request.
        wait_counters(server, &before, what, |d| d.datagrams >= sent && d.all_handled());
    }
    let delta = Counters::read(server).since(&before);
    let summary = delta.summary();
    assert_eq!(delta.datagrams, n, "{what}: sent {n} datagrams, the server read {} ({summary})", delta.datagrams);
    match expect {
        Expect::Dropped(reason) => {
            for (label, count) in &delta.drops {
                let want = if *label == reason { n } else { 0 };
                assert_eq!(
                    *count, want,
                    "{what}: expected {want} drops with reason {label} (all {n} as {reason}), got {count} ({summary})"
                );
            }
            assert_eq!(delta.total_received(), 0, "{what}: no datagram may be accepted as a request ({summary})");
        }
        Expect::DroppedNotAs(not) => {
            assert_eq!(delta.total_drops(), n, "{what}: expected all {n} dropped ({summary})");
            assert_eq!(delta.total_received(), 0, "{what}: no datagram may be accepted as a request ({summary})");
            for reason in not {
                assert_eq!(delta.drops[reason], 0, "{what}: none may be dropped as {reason} ({summary})");
            }
        }
        Expect::Accounted => {
            assert_eq!(
                delta.total_drops() + delta.total_received(),
                n,
                "{what}: every datagram must be dropped with a reason or accepted ({summary})"
            );
        }
        Expect::AcceptedThenDropped(kind, reason) => {
            assert_eq!(delta.received[kind], n, "{what}: expected {n} accepted as {kind} ({summary})");
            assert_eq!(delta.drops[reason], n, "{what}: expected {n} then dropped as {reason} ({summary})");
            assert_eq!(delta.total_drops(), n, "{what}: no other drops ({summary})");
        }
        Expect::AcceptedUnanswered(kind, silence) => {
            assert_eq!(delta.received[kind], n, "{what}: expected {n} accepted as {kind} ({summary})");
            assert_eq!(delta.total_drops(), 0, "{what}: nothing dropped ({summary})");
            let silent = delta.silent.get(silence).copied().unwrap_or(0);
            assert_eq!(silent, n, "{what}: expected {n} left unanswered as {silence} ({summary})");
            assert_eq!(delta.sent.values().sum::<u64>(), 0, "{what}: nothing answered ({summary})");
        }
        Expect::Accepted(kind) => {
            assert_eq!(delta.received[kind], n, "{what}: expected {n} accepted as {kind} ({summary})");
            assert_eq!(delta.total_drops(), 0, "{what}: nothing dropped ({summary})");
            if kind == "discover" {
                assert_eq!(delta.sent["offer"], n, "{what}: expected an OFFER for each (RFC 2131 §4.3.1) ({summary})");
            }
        }
    }
    if !matches!(expect, Expect::Accepted(_) | Expect::Accounted) {
        assert_eq!(delta.sent.values().sum::<u64>(), 0, "{what}: the server must not answer dropped input ({summary})");
    }
    println!("{what}: {n} sent — {summary}");
    delta
}

// ---------------------------------------------------------------------------------------------------------
// Legitimate clients

/// busybox udhcpc, one lease then exit (`-n -q`), with `udhcpc_hook` (it only sets the address on its own
/// eth0 and reports each event on the test's pipe). Returns the address it was given.
fn udhcpc_lease(ns: &str, dir: &Path, events: &mut Events, run: &str) -> Ipv4Addr {
    let udhcpc = require_tool("udhcpc");
    let hook = udhcpc_hook(dir, events);
    let mut cmd = in_ns(ns, &udhcpc);
    cmd.args(["-i", "eth0", "-n", "-q", "-f", "-t", "5", "-T", "2", "-s"]).arg(&hook);
    let log = dir.join(format!("udhcpc-{run}.log"));
    let mut client = Proc::spawn(&format!("udhcpc ({run})"), cmd, &log);
    let bound = events.expect(&["bound", "leasefail"], Duration::from_secs(20), &format!("udhcpc {run}"));
    assert_eq!(bound[0], "bound", "udhcpc ({run}) expected a lease (event bound), got {bound:?}\n{}", tail_of(&log));
    client.expect_success(Duration::from_secs(10));
    let ip = event_ip(&bound, &format!("udhcpc {run}"));
    let in_pool = (u32::from(POOL_START)..=u32::from(POOL_END)).contains(&u32::from(ip));
    assert!(in_pool, "udhcpc ({run}) was given {ip}, expected an address in {POOL_START}–{POOL_END}");
    ip
}

/// The `TestClient` in the legitimate namespace: DORA for `mac` (RFC 2131 §3.1).
fn test_client_lease(ns: &str, mac: Mac, what: &str) -> Ipv4Addr {
    let mut client = TestClient::bind(ClientConfig::in_namespace(ns, "eth0")).expect("open the legitimate client");
    let policy = RetryPolicy::fixed(10, Duration::from_millis(500));
    match client.dora_with(mac, &ClientOptions::default(), &policy, Duration::from_secs(10)) {
        Ok(lease) => lease.address,
        Err(e) => panic!("{what}: the legitimate TestClient expected DISCOVER → OFFER → REQUEST → ACK, got: {e}"),
    }
}

/// The server namespace's UDP receive-buffer drops (`Udp: … RcvbufErrors` of /proc/net/snmp read inside it):
/// datagrams the kernel could not queue because the socket buffer was full.
fn kernel_udp_drops(ns: &str) -> u64 {
    let out = in_ns(ns, "cat").arg("/proc/net/snmp").output().expect("run cat /proc/net/snmp");
    let text = String::from_utf8_lossy(&out.stdout);
    let udp: Vec<Vec<&str>> =
        text.lines().filter(|l| l.starts_with("Udp:")).map(|l| l.split_whitespace().collect()).collect();
    let [names, values] = udp.as_slice() else { panic!("no Udp: lines in /proc/net/snmp of {ns}:\n{text}") };
    let at = names.iter().position(|n| *n == "RcvbufErrors").expect("Udp RcvbufErrors in /proc/net/snmp");
    values.get(at).and_then(|v| v.parse().ok()).expect("a RcvbufErrors value")
}

/// Bytes waiting on the server's port-67 socket, not yet read (`ss` Recv-Q inside the server namespace).
fn port67_queue(ns: &str) -> u64 {
    let out = in_ns(ns, "ss").args(["-H", "-u", "-a", "-n", "sport = :67"]).output().expect("run ss");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()).sum()
}

fn assert_alive(server: &mut Server, when: &str) {
    if let Some(status) = server.proc.try_status() {
        panic!("{when}: leasehold serve exited with {status}\n{}", tail_of(&server.proc.log));
    }
    let health = http_get(&server.ns, ADMIN_PORT, "/healthz");
    assert!(matches!(health, Ok((200, _))), "{when}: GET /healthz expected 200, got {health:?}");
}

#[test]
fn hostile_datagrams_are_dropped_and_counted_and_clients_still_get_leases() {
    let segment = Segment::up(1, 3, 16);
    let dir = scratch_dir("bad-input");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("create the data dir");
    let log = dir.path().join("leasehold.log");
    let mut server = Server::start(
        &segment.server(1),
        &data,
        &log,
        &[SERVER_16_ARGS.as_slice(), &["--log-level", "warning"]].concat(),
    );
    let (hostile_ns, legit_ns, udhcpc_ns) = (segment.client(1), segment.client(2), segment.client(3));
    let out = Command::new("ip").args(["-n", &hostile_ns, "addr", "add", HOSTILE_IP, "dev", "eth0"]).output();
    assert!(out.is_ok_and(|o| o.status.success()), "could not give the hostile host's eth0 {HOSTILE_IP}");
    let mut hostile =
        TestClient::bind(ClientConfig::in_namespace(&hostile_ns, "eth0")).expect("open the hostile client's socket");
    let mut rng = XorShift(0x1ea5_e401_d5ee_d001);

    // RFC 2131 §2: 236 bytes of header and the 4-byte cookie before any option.
    let template = discover(0);
    let truncated: Vec<Vec<u8>> = (0..240).map(|len| template[..len].to_vec()).collect();
    provoke(&server, &mut hostile, "every length 0..240 of a DISCOVER", &truncated, Expect::Dropped("truncated"));

    // RFC 2131 §3: the options field starts with 99.130.83.99.
    let cookies: [[u8; 4]; 6] = [
        [0, 0, 0, 0],
        [99, 130, 83, 98],
        [99, 83, 130, 99],
        [130, 99, 99, 83],
        [255, 255, 255, 255],
        [0x63, 0x82, 0x53, 0],
    ];
    let bad_cookies: Vec<Vec<u8>> = cookies
        .iter()
        .enumerate()
        .map(|(i, cookie)| {
            let mut bytes = discover(i as u32);
            bytes[236..240].copy_from_slice(cookie);
            bytes
        })
        .collect();
    provoke(&server, &mut hostile, "wrong magic cookie", &bad_cookies, Expect::Dropped("bad_magic_cookie"));

    // RFC 2131 §2: a server only reads op = 1 (BOOTREQUEST); op = 2 is another server's reply.
    let bad_ops: Vec<Vec<u8>> = [2u8, 0, 3, 255]
        .iter()
        .enumerate()
        .map(|(i, op)| {
            let mut bytes = discover(i as u32);
            bytes[0] = *op;
            bytes
        })
        .collect();
    provoke(&server, &mut hostile, "op 2 (BOOTREPLY), 0, 3, 255", &bad_ops, Expect::Dropped("not_bootrequest"));

    // Ethernet only: htype 1, hlen 6 (RFC 1700). 6 = IEEE 802, 32 = InfiniBand with hlen 0 (RFC 4390).
    let hardware = [(6u8, 6u8), (1, 16), (32, 0), (1, 0), (1, 7), (0, 6)];
    let bad_hardware: Vec<Vec<u8>> = hardware
        .iter()
        .enumerate()
        .map(|(i, (htype, hlen))| {
            let mut bytes = discover(i as u32);
            bytes[1] = *htype;
            bytes[2] = *hlen;
            bytes
        })
        .collect();
    provoke(
        &server,
        &mut hostile,
        "htype/hlen not Ethernet 1/6",
        &bad_hardware,
        Expect::Dropped("unsupported_hardware"),
    );

    // RFC 2132 §2: code, length, value — lengths that run past the end, and values of impossible size.
    let mut overload = with_options(0, &[53, 1, 1, 52, 1, 1, 255]);
    overload[108..111].copy_from_slice(&[60, 200, b'P']); // RFC 2132 §9.3: `file` holds options; 60 runs past it
    let malformed = vec![
        template[..250].to_vec(), // cut inside option 55's 14-byte value
        with_options(1, &[53, 1, 1, 60, 200, b'P', b'X', b'E']),
        with_options(2, &[53, 1, 1, 12]), // a code without its length byte
        with_options(3, &[53, 200, 1]),
        with_options(4, &[53, 1, 1, 55, 255, 1, 3, 6]),
        overload,
        with_options(5, &[53, 2, 1, 1, 255]), // option 53 is one byte (RFC 2132 §9.6)
        with_options(6, &[53, 1, 1, 50, 3, 10, 77, 1, 255]), // option 50 is an address (RFC 2132 §9.8)
        with_options(7, &[53, 1, 1, 61, 1, 1, 255]), // option 61 needs type and identifier (RFC 2132 §9.14)
        with_options(8, &[53, 1, 1, 93, 3, 0, 7, 0, 255]), // option 93 is 16-bit values (RFC 4578 §2.1)
        with_options(9, &[53, 1, 1, 52, 1, 9, 255]), // overload value must be 1, 2 or 3
    ];
    provoke(
        &server,
        &mut hostile,
        "option lengths past the end, impossible values",
        &malformed,
        Expect::Dropped("malformed_options"),
    );

    // RFC 2131 §3: every DHCP message carries option 53; a BOOTREQUEST without one is BOOTP (RFC 1542
    // §2), served only to reserved clients or from dynamic_bootp pools: none here.
    let mut bootp = template.clone();
    bootp[240..].fill(0);
    bootp[240] = 255;
    let no_type = vec![
        template[..240].to_vec(), // header and cookie, nothing else
        with_options(1, &[255]),
        with_options(2, &[0; 60]),
        with_options(3, &[55, 4, 1, 3, 6, 15, 61, 7, 1, 2, 0x4c, 0, 0xba, 0, 3, 255]),
        bootp,
    ];
    provoke(
        &server,
        &mut hostile,
        "no option 53 (BOOTP)",
        &no_type,
        Expect::AcceptedUnanswered("bootp", "bootp_not_served"),
    );

    // Option 53 values a server must not act on: its own OFFER/ACK/NAK, FORCERENEW (RFC 3203), the
    // LEASEQUERY family (RFC 4388), 0 and undefined ones.
    let server_types: Vec<Vec<u8>> = [2u8, 5, 6, 0, 9, 10, 13, 200]
        .iter()
        .enumerate()
        .map(|(i, t)| with_options(i as u32, &[53, 1, *t, 255]))
        .collect();
    provoke(
        &server,
        &mut hostile,
        "option 53 not a client's message",
        &server_types,
        Expect::Dropped("unexpected_message_type"),
    );

    // RFC 3046 / RFC 2131 §4.3.1: a relayed DISCOVER is served from the pool of giaddr's subnet; there is none.
    let relayed: Vec<Vec<u8>> = (0..5u32)
        .map(|i| {
            let options = ClientOptions { giaddr: Ipv4Addr::new(192, 0, 2, 1), hops: 1, ..ClientOptions::default() };
            build(hostile_mac(i), 0xbad1_0000 | i, &ClientMessage::Discover { requested_ip: None }, &options)
        })
        .collect();
    provoke(
        &server,
        &mut hostile,
        "relayed from a subnet with no pool",
        &relayed,
        Expect::AcceptedThenDropped("discover", "no_pool"),
    );

    // Size: max_frame_bytes = 1,500. A 1,500-byte DISCOVER (padded) is fine; anything longer is dropped.
    let mut padded = discover(0);
    padded.resize(MAX_FRAME_BYTES, 0);
    provoke(&server, &mut hostile, "a 1,500-byte DISCOVER", &[padded], Expect::Accepted("discover"));
    let garbage_1500 = vec![{
        let mut bytes = rng.bytes(MAX_FRAME_BYTES);
        bytes[0] = 0x7f; // not a BOOTREQUEST, whatever the seed
        bytes
    }];
    provoke(&server, &mut hostile, "1,500 bytes of garbage", &garbage_1500, Expect::DroppedNotAs(&["oversized"]));
    // Bigger than the veth MTU (1,500 for the whole IP packet): the kernel fragments the datagram and the
    // server's kernel reassembles it. If this kernel refused to send one, the case says so and leaves it out.
    let before = Counters::read(&server);
    let mut oversized = 0u64;
    for (i, size) in [MAX_FRAME_BYTES + 1, 4_000, MAX_UDP_PAYLOAD].into_iter().enumerate() {
        let mut bytes = discover(size as u32);
        bytes.resize(size, 0);
        let target = if i % 2 == 0 { Target::Broadcast } else { Target::Unicast(SERVER_IP) };
        match hostile.send_raw(&bytes, target) {
            Ok(()) => oversized += 1,
            Err(e) => println!("note: skipping the {size}-byte datagram, the segment would not carry it: {e}"),
        }
    }
    assert!(
        oversized > 0,
        "not one datagram over {MAX_FRAME_BYTES} bytes could be sent: the oversized case is untested"
    );
    let delta =
        wait_counters(&server, &before, "oversized", |d| d.datagrams >= oversized && d.total_drops() >= oversized);
    assert_eq!(
        (delta.datagrams, delta.drops["oversized"], delta.total_drops(), delta.total_received()),
        (oversized, oversized, oversized, 0),
        "datagrams over {MAX_FRAME_BYTES} bytes: expected {oversized} read and {oversized} dropped as oversized, \
         nothing else ({})",
        delta.summary()
    );
    println!("datagrams over 1,500 bytes: {oversized} sent — {}", delta.summary());

    // Seeded random input.
    let random: Vec<Vec<u8>> = (0..2_000)
        .map(|_| {
            let len = rng.below(MAX_FRAME_BYTES + 1);
            let mut bytes = rng.bytes(len);
            if let Some(op) = bytes.first_mut() {
                *op |= 0x80; // never 1: a random BOOTREQUEST with the right cookie is possible, only unlikely
            }
            bytes
        })
        .collect();
    provoke(&server, &mut hostile, "random bytes", &random, Expect::DroppedNotAs(&["oversized"]));
    let random_options: Vec<Vec<u8>> = (0..1_000u32)
        .map(|i| {
            let len = rng.below(MAX_FRAME_BYTES - 240 + 1);
            let mut options = rng.bytes(len);
            if i % 2 == 0 && options.len() >= 3 {
                options[..3].copy_from_slice(&[53, 1, 1]); // half of them start like a DISCOVER
            }
            with_options(i, &options)
        })
        .collect();
    provoke(&server, &mut hostile, "valid headers, random options", &random_options, Expect::Accounted);
    let flipped: Vec<Vec<u8>> = (0..1_000u32)
        .map(|i| {
            let mac = hostile_mac(i);
            let options = ClientOptions::pxe(mac, 7, [i as u8; 16]);
            let mut bytes = build(mac, 0xbad2_0000 | i, &ClientMessage::Discover { requested_ip: None }, &options);
            for _ in 0..1 + rng.below(4) {
                let at = 240 + rng.below(bytes.len() - 240);
                bytes[at] = rng.next() as u8;
            }
            bytes
        })
        .collect();
    provoke(&server, &mut hostile, "PXE DISCOVERs with random option bytes flipped", &flipped, Expect::Accounted);
    assert_alive(&mut server, "after the malformed input");

    // The flood: 10,000 distinct MACs, bursts of 500 every 100 ms, no waiting for answers. A legitimate
    // TestClient and a real udhcpc get leases while it runs.
    let before_flood = Counters::read(&server);
    let mut events = Events::new(dir.path());
    let (flood_started, flood_running) = mpsc::channel();
    let kernel_drops_before = kernel_udp_drops(&server.ns);
    let (flood_end, mut hostile, test_client_ip, test_client_done, udhcpc_ip, udhcpc_done) = thread::scope(|scope| {
        let flood = scope.spawn(move || {
            let options = ClientOptions::default();
            for burst in 0..FLOOD_CLIENTS / FLOOD_BURST {
                for i in 0..FLOOD_BURST {
                    let index = 0x0f_0000 | (burst * FLOOD_BURST + i);
                    let bytes =
                        build(test_mac(index), index, &ClientMessage::Discover { requested_ip: None }, &options);
                    hostile.send_raw(&bytes, Target::Broadcast).expect("send a flood DISCOVER");
                }
                if burst == 0 {
                    let _ = flood_started.send(Instant::now());
                }
                thread::sleep(FLOOD_PAUSE);
            }
            (Instant::now(), hostile)
        });
        let flood_start = flood_running.recv_timeout(Duration::from_secs(10)).expect("the flood did not start");
        let test_client_ip = test_client_lease(&legit_ns, test_mac(0x00c2_0001), "during the flood");
        let test_client_done = flood_start.elapsed();
        let udhcpc_ip = udhcpc_lease(&udhcpc_ns, dir.path(), &mut events, "during the flood");
        let udhcpc_done = flood_start.elapsed();
        let (flood_end, hostile) = flood.join().expect("the flood thread panicked");
        (flood_end.duration_since(flood_start), hostile, test_client_ip, test_client_done, udhcpc_ip, udhcpc_done)
    });
    println!(
        "flood: {FLOOD_CLIENTS} DISCOVERs in {flood_end:?} after the first burst of {FLOOD_BURST}; the TestClient had \
         {test_client_ip} {test_client_done:?} after it, udhcpc {udhcpc_ip} after {udhcpc_done:?} ({})",
        if udhcpc_done < flood_end { "during the flood" } else { "after the flood ended" }
    );
    // The TestClient reads every broadcast OFFER of the flood through a 4 MB buffer and matches its own by
    // xid, so it must finish while the flood runs. (udhcpc reads the flood's broadcast OFFERs through a small
    // packet-socket buffer and may lose its own and retransmit; it must get a lease, not necessarily in time.)
    assert!(
        test_client_done < flood_end,
        "the TestClient's DISCOVER → ACK was expected while the flood still ran (until {flood_end:?}), it finished \
         {test_client_done:?} after the first burst"
    );
    // Every flood datagram the server's kernel took was read (its socket queue is empty) and parsed as a
    // valid DISCOVER or counted as overloaded; none was mistaken for damage. What the kernel could not
    // queue is counted by it (Udp RcvbufErrors).
    let flood =
        wait_counters(&server, &before_flood, "the flood", |d| port67_queue(&server.ns) == 0 && d.all_handled());
    let kernel_drops = kernel_udp_drops(&server.ns) - kernel_drops_before;
    let summary = format!("{}, kernel drops={kernel_drops}", flood.summary());
    for reason in DROP_REASONS.iter().filter(|r| !["overloaded", "proposal_backlog"].contains(r)) {
        assert_eq!(flood.drops[reason], 0, "flood: valid DISCOVERs must not be dropped as {reason} ({summary})");
    }
    assert!(
        flood.datagrams + kernel_drops >= u64::from(FLOOD_CLIENTS),
        "flood: {FLOOD_CLIENTS} DISCOVERs sent; the server read and the kernel dropped fewer ({summary})"
    );
    assert!(
        flood.sent["offer"] >= u64::from(FLOOD_CLIENTS) / 2,
        "flood: a 65,000-address pool holds every flood client; expected an OFFER for at least half of the \
         {FLOOD_CLIENTS} DISCOVERs ({summary})"
    );
    println!("flood counters: {summary}");

    // The same 10,000 DISCOVERs again, back to back without a pause: more than the server's socket buffer
    // may hold. Whatever is lost must be counted, by the kernel (RcvbufErrors) or the server (overloaded).
    let before_blast = Counters::read(&server);
    let kernel_drops_before = kernel_udp_drops(&server.ns);
    let blast_started = Instant::now();
    for index in 0x0f_0000..0x0f_0000 + FLOOD_CLIENTS {
        let bytes =
            build(test_mac(index), index, &ClientMessage::Discover { requested_ip: None }, &ClientOptions::default());
        hostile.send_raw(&bytes, Target::Broadcast).expect("send a blast DISCOVER");
    }
    let blast_took = blast_started.elapsed();
    // Settled once every DISCOVER is accounted for: the last ones may still be on their way through the
    // bridge (a softirq backlog) when the socket's queue is first seen empty. A lost one times this out.
    let blast = wait_counters(&server, &before_blast, "the blast", |d| {
        let accounted = d.datagrams + kernel_udp_drops(&server.ns) - kernel_drops_before;
        port67_queue(&server.ns) == 0 && d.all_handled() && accounted >= u64::from(FLOOD_CLIENTS)
    });
    let kernel_drops = kernel_udp_drops(&server.ns) - kernel_drops_before;
    let summary = format!("{}, kernel drops={kernel_drops}", blast.summary());
    for reason in DROP_REASONS.iter().filter(|r| !["overloaded", "proposal_backlog"].contains(r)) {
        assert_eq!(blast.drops[reason], 0, "blast: valid DISCOVERs must not be dropped as {reason} ({summary})");
    }
    assert_eq!(
        blast.datagrams + kernel_drops,
        u64::from(FLOOD_CLIENTS),
        "blast: every one of the {FLOOD_CLIENTS} DISCOVERs is read by the server or counted as dropped by its \
         kernel ({summary})"
    );
    println!("blast: {FLOOD_CLIENTS} DISCOVERs sent in {blast_took:?} — {summary}");
    assert_alive(&mut server, "after the flood");

    // Afterwards: both kinds of client still get leases.
    let after_ip = test_client_lease(&legit_ns, test_mac(0x00c2_0002), "after the flood");
    let udhcpc_again = udhcpc_lease(&udhcpc_ns, dir.path(), &mut events, "after the flood");
    assert_eq!(udhcpc_again, udhcpc_ip, "udhcpc (same MAC) got {udhcpc_again} after the flood, {udhcpc_ip} during it");
    let lease = server.wait_lease(udhcpc_ip, Duration::from_secs(5), "bound to udhcpc's MAC", |lease| {
        lease.state == "bound" && lease.mac.eq_ignore_ascii_case(&mac_of(&udhcpc_ns, "eth0"))
    });
    println!("after the flood: TestClient got {after_ip}, udhcpc got {} again", lease.ip);
    assert_alive(&mut server, "at the end");
}
