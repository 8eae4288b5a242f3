//! A crash never loses an ACKed lease (DESIGN.md, rule 1: "ACK only after commit").
//!
//! The transcript:
//!
//! 1. `leasehold serve` starts on a private L2 segment (one server namespace, one client namespace, a /16)
//!    with a fresh data directory and fsync on (the default).
//! 2. One `TestClient` in the client namespace plays up to 5,000 machines with distinct MACs, each doing
//!    DISCOVER → OFFER → REQUEST (SELECTING) → ACK (RFC 2131 §3.1, §4.3.1, §4.3.2), with 128 exchanges in
//!    flight at any time and retransmission on silence (RFC 2131 §4.1). Every ACK is recorded: MAC,
//!    address, and the earliest expiry the server can have stamped (the second the REQUEST was first sent
//!    plus the lease time of option 51).
//! 3. After 3,000 ACKs, with REQUESTs still in flight, the server gets SIGKILL — no shutdown path runs.
//! 4. It is restarted on the same data directory. Right after `GET /healthz` answers 200:
//!    - every recorded ACK is in `GET /v1/leases`: the same address, bound to the same MAC, expiring no
//!      earlier than the ACK promised; no address appears twice, no MAC holds two bound addresses;
//!    - every recorded client that DISCOVERs again is offered the address it holds (RFC 2131 §4.3.1: the
//!      client's current binding comes first);
//!    - every recorded client in INIT-REBOOT asking for its address (option 50, no server identifier,
//!      RFC 2131 §4.3.2) gets a DHCPACK for it, not a NAK and not silence.
//!
//! Every wait is on an event (the N-th ACK, the process's exit, `/healthz` answering, a reply) with a
//! deadline; the load is bounded in clients and in time. All traffic stays in the test's namespaces.

mod netns_support;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use leasehold_tests::{
    build, format_mac, test_mac, ClientConfig, ClientMessage, ClientOptions, HarnessError, Mac, MessageType, ReplyView,
    RequestState, Target, TestClient,
};
use netns_support::*;

const LEASE_SECS: u64 = 3_600;
/// Distinct machines the load may start, at most.
const CLIENTS: u32 = 5_000;
/// Exchanges in flight at once.
const WINDOW: usize = 128;
/// The server is killed once this many ACKs have been recorded.
const KILL_AFTER_ACKS: usize = 3_000;
/// The load (and the wait for the kill point) ends after this, whatever happens.
const LOAD_LIMIT: Duration = Duration::from_secs(60);
/// RFC 2131 §4.1 retransmission, kept short: resend after this much silence, at most this many sends.
const RETRANSMIT_AFTER: Duration = Duration::from_secs(1);
const ATTEMPTS: u32 = 4;
/// One reply read waits at most this long, so the loop notices the stop flag and retransmits on time.
const POLL: Duration = Duration::from_millis(20);

/// An ACK the test received before the kill: the server promised `mac` the address `ip` until at
/// least `expires_at_min` (Unix seconds).
#[derive(Debug, Clone)]
struct Acked {
    mac: Mac,
    ip: Ipv4Addr,
    expires_at_min: u64,
}

#[derive(Debug, Default)]
struct LoadReport {
    acked: Vec<Acked>,
    /// Machines that sent a DISCOVER.
    started: u32,
    naks: Vec<String>,
    /// Exchanges still waiting for an OFFER / an ACK when the load stopped.
    waiting_for_offer: usize,
    waiting_for_ack: usize,
    /// Exchanges abandoned after `ATTEMPTS` unanswered sends (before the kill).
    gave_up: usize,
    /// Replies that break RFC 2131 (e.g. an ACK for another address than the one offered).
    violations: Vec<String>,
}

enum Stage {
    /// DISCOVER sent, waiting for an OFFER.
    Selecting,
    /// REQUEST (SELECTING) for `offered` sent, first at Unix second `first_sent`.
    Requesting { offered: Ipv4Addr, first_sent: u64 },
}

struct InFlight {
    mac: Mac,
    stage: Stage,
    bytes: Vec<u8>,
    sent_at: Instant,
    sends: u32,
}

/// The load: DORA for `CLIENTS` machines, `WINDOW` at a time, until `stop` (or the bounds). Sends `()` on
/// `kill_point` when the `KILL_AFTER_ACKS`-th ACK arrives. After `stop`, replies already queued on the
/// socket are read (they were sent before the kill), then the report is returned.
fn run_load(mut client: TestClient, stop: &AtomicBool, kill_point: mpsc::Sender<()>) -> LoadReport {
    let mut report = LoadReport::default();
    let mut in_flight: HashMap<u32, InFlight> = HashMap::new();
    let options = ClientOptions::default();
    let deadline = Instant::now() + LOAD_LIMIT;
    let mut last_scan = Instant::now();

    let handle = |reply: ReplyView,
                  in_flight: &mut HashMap<u32, InFlight>,
                  report: &mut LoadReport,
                  client: &mut TestClient| {
        let Some(flight) = in_flight.get_mut(&reply.xid) else { return };
        if reply.chaddr != flight.mac {
            return;
        }
        match (&flight.stage, reply.message_type) {
            (Stage::Selecting, Some(MessageType::Offer)) => {
                let Some(server_id) = reply.server_id else {
                    report.violations.push(format!("OFFER without option 54 (RFC 2131 §4.3.1): {reply:?}"));
                    in_flight.remove(&reply.xid);
                    return;
                };
                let request = ClientMessage::Request(RequestState::Selecting { requested_ip: reply.yiaddr, server_id });
                flight.bytes = build(flight.mac, reply.xid, &request, &options);
                flight.stage = Stage::Requesting { offered: reply.yiaddr, first_sent: unix_now() };
                flight.sent_at = Instant::now();
                flight.sends = 1;
                client.send_raw(&flight.bytes, Target::Broadcast).expect("send a REQUEST");
            }
            (Stage::Requesting { offered, first_sent }, Some(MessageType::Ack)) => {
                if reply.yiaddr != *offered {
                    report.violations.push(format!(
                        "{} was offered {offered} but ACKed {} (RFC 2131 §4.3.2: the ACK is for the requested address)",
                        format_mac(flight.mac),
                        reply.yiaddr
                    ));
                } else if let Some(lease_secs) = reply.lease_time_secs {
                    report.acked.push(Acked {
                        mac: flight.mac,
                        ip: reply.yiaddr,
                        expires_at_min: first_sent + u64::from(lease_secs),
                    });
                } else {
                    report.violations.push(format!("ACK without option 51 (RFC 2131 §4.3.1 table 3): {reply:?}"));
                }
                in_flight.remove(&reply.xid);
            }
            (Stage::Requesting { .. }, Some(MessageType::Nak)) => {
                report.naks.push(format!("{}: {}", format_mac(flight.mac), reply.option_text(56).unwrap_or_default()));
                in_flight.remove(&reply.xid);
            }
            _ => {}
        }
    };

    let mut kill_sent = false;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        if report.started == CLIENTS && in_flight.is_empty() {
            break;
        }
        while in_flight.len() < WINDOW && report.started < CLIENTS {
            let mac = test_mac(report.started);
            report.started += 1;
            let xid = client.next_xid();
            let bytes = build(mac, xid, &ClientMessage::Discover { requested_ip: None }, &options);
            client.send_raw(&bytes, Target::Broadcast).expect("send a DISCOVER");
            in_flight.insert(xid, InFlight { mac, stage: Stage::Selecting, bytes, sent_at: Instant::now(), sends: 1 });
        }
        match client.recv_any(POLL) {
            Ok(reply) => handle(reply, &mut in_flight, &mut report, &mut client),
            Err(HarnessError::Timeout { .. }) => {}
            Err(e) => panic!("the load's client socket failed: {e}"),
        }
        if !kill_sent && report.acked.len() >= KILL_AFTER_ACKS {
            kill_sent = true;
            let _ = kill_point.send(());
        }
        if last_scan.elapsed() >= POLL {
            last_scan = Instant::now();
            let mut abandoned = Vec::new();
            for (xid, flight) in in_flight.iter_mut() {
                if flight.sent_at.elapsed() < RETRANSMIT_AFTER {
                    continue;
                }
                if flight.sends >= ATTEMPTS {
                    abandoned.push(*xid);
                } else {
                    flight.sends += 1;
                    flight.sent_at = Instant::now();
                    client.send_raw(&flight.bytes, Target::Broadcast).expect("retransmit");
                }
            }
            report.gave_up += abandoned.len();
            for xid in abandoned {
                in_flight.remove(&xid);
            }
        }
    }
    // The server is dead: whatever it sent before dying is already queued on our socket. Read until the
    // socket has been quiet for 300 ms (bounded in reads).
    for _ in 0..(CLIENTS * 4) {
        match client.recv_any(Duration::from_millis(300)) {
            Ok(reply) => handle(reply, &mut in_flight, &mut report, &mut client),
            Err(HarnessError::Timeout { .. }) => break,
            Err(e) => panic!("the load's client socket failed: {e}"),
        }
    }
    for flight in in_flight.values() {
        match flight.stage {
            Stage::Selecting => report.waiting_for_offer += 1,
            Stage::Requesting { .. } => report.waiting_for_ack += 1,
        }
    }
    report
}

/// Sends `message(mac, address)` for every recorded client, `WINDOW` in flight, retransmitting on silence,
/// and returns each client's reply of type `want` (or why there is none), in the order of `clients`.
fn ask_all(
    client: &mut TestClient,
    clients: &[Acked],
    want: MessageType,
    message: impl Fn(&Acked) -> ClientMessage,
    limit: Duration,
) -> Vec<Result<ReplyView, String>> {
    let options = ClientOptions::default();
    let mut results: Vec<Option<Result<ReplyView, String>>> = vec![None; clients.len()];
    // xid → (index into clients, bytes, last send, sends)
    let mut in_flight: HashMap<u32, (usize, Vec<u8>, Instant, u32)> = HashMap::new();
    let mut next = 0;
    let deadline = Instant::now() + limit;
    while (next < clients.len() || !in_flight.is_empty()) && Instant::now() < deadline {
        while in_flight.len() < WINDOW && next < clients.len() {
            let xid = client.next_xid();
            let bytes = build(clients[next].mac, xid, &message(&clients[next]), &options);
            client.send_raw(&bytes, Target::Broadcast).expect("send");
            in_flight.insert(xid, (next, bytes, Instant::now(), 1));
            next += 1;
        }
        match client.recv_any(POLL) {
            Ok(reply) => {
                if let Some((index, ..)) = in_flight.get(&reply.xid) {
                    let index = *index;
                    if reply.chaddr == clients[index].mac {
                        if reply.message_type == Some(want) {
                            in_flight.remove(&reply.xid);
                            results[index] = Some(Ok(reply));
                        } else if reply.is(MessageType::Nak) {
                            let why = reply.option_text(56).unwrap_or_default();
                            results[index] = Some(Err(format!("DHCPNAK ({why})")));
                            in_flight.remove(&reply.xid);
                        }
                    }
                }
            }
            Err(HarnessError::Timeout { .. }) => {}
            Err(e) => panic!("client socket failed: {e}"),
        }
        let mut abandoned = Vec::new();
        for (xid, (index, bytes, sent_at, sends)) in in_flight.iter_mut() {
            if sent_at.elapsed() >= RETRANSMIT_AFTER {
                if *sends >= ATTEMPTS {
                    abandoned.push((*xid, *index));
                } else {
                    *sends += 1;
                    *sent_at = Instant::now();
                    client.send_raw(bytes, Target::Broadcast).expect("retransmit");
                }
            }
        }
        for (xid, index) in abandoned {
            in_flight.remove(&xid);
            results[index] = Some(Err(format!("no reply to {ATTEMPTS} sends")));
        }
    }
    results.into_iter().map(|r| r.unwrap_or_else(|| Err(format!("not answered within {limit:?}")))).collect()
}

/// Fails with the first few of `failures` (and how many there are) unless it is empty.
fn assert_none(failures: &[String], what: &str, server_log: &Path) {
    if !failures.is_empty() {
        let shown: Vec<&str> = failures.iter().take(20).map(String::as_str).collect();
        panic!(
            "{what}: {} failures, the first {}:\n  {}\n{}",
            failures.len(),
            shown.len(),
            shown.join("\n  "),
            tail_of(server_log)
        );
    }
}

fn start_server(ns: &str, data: &Path, log: &Path) -> Server {
    let lease = LEASE_SECS.to_string();
    let args = [SERVER_16_ARGS.as_slice(), &["--lease-time", &lease, "--log-level", "warning"]].concat();
    Server::start(ns, data, log, &args)
}

#[test]
fn sigkill_during_load_loses_no_acked_lease() {
    let segment = Segment::up(1, 1, 16);
    let dir = scratch_dir("crash");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("create the data dir");
    let server_ns = segment.server(1);
    let first_log = dir.path().join("leasehold-1.log");
    let restart_log = dir.path().join("leasehold-2.log");
    let mut server = start_server(&server_ns, &data, &first_log);
    let client = TestClient::bind(ClientConfig::in_namespace(&segment.client(1), "eth0"))
        .expect("open the test client's socket in the client namespace");

    // 1–3: load, and SIGKILL at the 3,000th ACK.
    let stop = AtomicBool::new(false);
    let (kill_point, at_kill_point) = mpsc::channel();
    let load_started = Instant::now();
    let (report, killed_after) = thread::scope(|scope| {
        let load = scope.spawn(|| run_load(client, &stop, kill_point));
        let reached = at_kill_point.recv_timeout(LOAD_LIMIT);
        let killed_after = load_started.elapsed();
        if reached.is_ok() {
            signal(server.proc.pid, libc::SIGKILL);
        }
        let exited = server.proc.wait_exit(Duration::from_secs(10));
        stop.store(true, Ordering::SeqCst);
        let report = load.join().expect("the load thread panicked");
        assert!(
            reached.is_ok(),
            "expected {KILL_AFTER_ACKS} ACKs within {LOAD_LIMIT:?} before the kill; the load got {} ACKs from {} \
             clients ({} NAKs, {} abandoned, server exited: {exited:?})\n{}",
            report.acked.len(),
            report.started,
            report.naks.len(),
            report.gave_up,
            tail_of(&first_log)
        );
        let status = exited.expect("leasehold serve did not exit within 10 s of SIGKILL");
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "leasehold serve ended with {status}, expected death by SIGKILL"
        );
        (report, killed_after)
    });
    println!(
        "load: {} clients started, {} ACKs recorded, SIGKILL after {killed_after:?}; at the kill {} REQUESTs and {} \
         DISCOVERs were unanswered; {} NAKs, {} abandoned",
        report.started,
        report.acked.len(),
        report.waiting_for_ack,
        report.waiting_for_offer,
        report.naks.len(),
        report.gave_up
    );
    assert_none(&report.violations, "replies that break RFC 2131 during the load", &first_log);
    assert_none(&report.naks, "NAKs to SELECTING REQUESTs for freshly offered addresses during the load", &first_log);
    drop(server);

    // 4. Restart on the same data directory.
    let restarted_at = Instant::now();
    let server = start_server(&server_ns, &data, &restart_log);
    println!("restart: healthy after {:?}", restarted_at.elapsed());
    let leases = server.leases();

    // No address twice, no MAC with two bound addresses (DESIGN.md: no address is ever bound to two clients).
    let mut failures = Vec::new();
    let mut by_ip: HashMap<Ipv4Addr, &Lease> = HashMap::new();
    let mut bound_by_mac: HashMap<String, Ipv4Addr> = HashMap::new();
    for lease in &leases {
        if let Some(other) = by_ip.insert(lease.ip, lease) {
            failures.push(format!("{} appears twice in /v1/leases: {other:?} and {lease:?}", lease.ip));
        }
        if lease.state == "bound" {
            if let Some(other) = bound_by_mac.insert(lease.mac.to_ascii_lowercase(), lease.ip) {
                failures.push(format!("{} holds both {other} and {} after the restart", lease.mac, lease.ip));
            }
        }
    }
    assert_none(&failures, "the lease table after the restart", &restart_log);

    // Every ACK is in the table, as the ACK said.
    for acked in &report.acked {
        let mac = format_mac(acked.mac);
        match by_ip.get(&acked.ip) {
            None => {
                failures.push(format!("{mac} was ACKed {} before the crash; /v1/leases has no record of it", acked.ip))
            }
            Some(lease) if lease.state != "bound" || !lease.mac.eq_ignore_ascii_case(&mac) => failures.push(format!(
                "{mac} was ACKed {}; after the restart the record is {} to {}",
                acked.ip, lease.state, lease.mac
            )),
            Some(lease) if lease.expires_at < acked.expires_at_min => failures.push(format!(
                "{mac} was ACKed {} until at least {}; after the restart it expires at {}",
                acked.ip, acked.expires_at_min, lease.expires_at
            )),
            Some(_) => {}
        }
    }
    assert_none(&failures, "ACKed leases lost or changed by the crash", &restart_log);
    let acked_ips: HashSet<Ipv4Addr> = report.acked.iter().map(|a| a.ip).collect();
    let committed_unacked = leases.iter().filter(|l| l.state == "bound" && !acked_ips.contains(&l.ip)).count();
    println!(
        "table: {} ACKed leases found intact; {committed_unacked} more bound leases were committed but their ACK \
         never reached the client (allowed)",
        report.acked.len()
    );

    // Asking again: DISCOVER → the same address offered (RFC 2131 §4.3.1).
    let mut client = TestClient::bind(ClientConfig::in_namespace(&segment.client(1), "eth0"))
        .expect("open the test client's socket again");
    let asked = Instant::now();
    let offers = ask_all(
        &mut client,
        &report.acked,
        MessageType::Offer,
        |_| ClientMessage::Discover { requested_ip: None },
        Duration::from_secs(60),
    );
    for (acked, offer) in report.acked.iter().zip(&offers) {
        match offer {
            Ok(offer) if offer.yiaddr == acked.ip => {}
            Ok(offer) => failures.push(format!(
                "{} holds {} but a new DISCOVER was offered {} (RFC 2131 §4.3.1: the current binding comes first)",
                format_mac(acked.mac),
                acked.ip,
                offer.yiaddr
            )),
            Err(why) => failures.push(format!("{} DISCOVERed again: {why}", format_mac(acked.mac))),
        }
    }
    assert_none(&failures, "DISCOVER after the restart", &restart_log);
    println!("DISCOVER: {} clients offered their ACKed address again in {:?}", offers.len(), asked.elapsed());

    // INIT-REBOOT with the recorded address → DHCPACK for it (RFC 2131 §4.3.2).
    let asked = Instant::now();
    let acks = ask_all(
        &mut client,
        &report.acked,
        MessageType::Ack,
        |acked| ClientMessage::Request(RequestState::InitReboot { requested_ip: acked.ip }),
        Duration::from_secs(60),
    );
    for (acked, ack) in report.acked.iter().zip(&acks) {
        match ack {
            Ok(ack) if ack.yiaddr == acked.ip => {}
            Ok(ack) => failures.push(format!(
                "{} INIT-REBOOT for {} was ACKed with {}",
                format_mac(acked.mac),
                acked.ip,
                ack.yiaddr
            )),
            Err(why) => failures.push(format!("{} INIT-REBOOT for {}: {why}", format_mac(acked.mac), acked.ip)),
        }
    }
    assert_none(&failures, "INIT-REBOOT after the restart", &restart_log);
    println!(
        "INIT-REBOOT: {} clients ACKed for their address in {:?}; verified {} of {} ACKs recorded before the kill",
        acks.len(),
        asked.elapsed(),
        report.acked.len(),
        report.acked.len()
    );
}
