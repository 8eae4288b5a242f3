//! failover_probe: DHCP clients that never stop asking, for measuring a server's failover time
//! (`scripts/bench-cluster.sh` runs it; root is needed for `--ns`).
//!
//!   failover_probe [--ns NAMESPACE] [--interface eth0] [--slots 16] [--interval-ms 100]
//!                  [--retransmit-ms 250] [--duration-s 120] [--mac-base N]
//!
//! `--slots` machines run DISCOVER → OFFER → REQUEST (SELECTING) → ACK over and over, each with a fresh
//! MAC after every ACK (and a pause of `--interval-ms`). Like real clients (RFC 2131 §4.1), a machine
//! that hears nothing retransmits every `--retransmit-ms` with the same xid and `secs` = seconds since it
//! began; a REQUEST unanswered 4 times sends it back to DISCOVER (keeping its MAC and its `secs`). So
//! when a server dies the machines keep retrying with a growing `secs`, which is what a Kea HA standby
//! watches for (`max-ack-delay`, `max-unacked-clients`) before it takes over.
//!
//! Output, one line per event, flushed at once (stdout):
//!   `ack UNIX_MS ADDRESS SERVER_ID DORA_MS` for every DHCPACK, `nak UNIX_MS SERVER_ID` for every DHCPNAK,
//!   and at the end `done sent=N acks=N naks=N`.
//! The failover gap is then: the first ACK from another server after the kill minus the last ACK before it.
//! Every loop is bounded by `--duration-s`.

use std::collections::HashMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use leasehold_tests::{
    build, test_mac, ClientConfig, ClientMessage, ClientOptions, HarnessError, Mac, MessageType, RequestState, Target,
    TestClient,
};

struct Args {
    ns: Option<String>,
    interface: String,
    slots: usize,
    interval: Duration,
    retransmit: Duration,
    duration: Duration,
    mac_base: u32,
}

fn usage(problem: &str) -> ! {
    eprintln!("failover_probe: {problem}");
    eprintln!(
        "usage: failover_probe [--ns NAMESPACE] [--interface IF] [--slots N] [--interval-ms MS] [--retransmit-ms MS] \
         [--duration-s S] [--mac-base N]"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut args = Args {
        ns: None,
        interface: "eth0".to_owned(),
        slots: 16,
        interval: Duration::from_millis(100),
        retransmit: Duration::from_millis(250),
        duration: Duration::from_secs(120),
        mac_base: 0x0100_0000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let number = || value.parse::<u64>().unwrap_or_else(|_| usage(&format!("{flag}: not a number: {value}")));
        match flag.as_str() {
            "--ns" => args.ns = Some(value.clone()),
            "--interface" => args.interface = value.clone(),
            "--slots" => args.slots = number().clamp(1, 1024) as usize,
            "--interval-ms" => args.interval = Duration::from_millis(number().min(60_000)),
            "--retransmit-ms" => args.retransmit = Duration::from_millis(number().clamp(10, 60_000)),
            "--duration-s" => args.duration = Duration::from_secs(number().clamp(1, 3_600)),
            "--mac-base" => args.mac_base = u32::try_from(number()).unwrap_or_else(|_| usage("--mac-base too big")),
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    args
}

fn unix_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

enum Stage {
    /// Waiting to start the next exchange.
    Idle {
        until: Instant,
    },
    Selecting,
    Requesting {
        offered: Ipv4Addr,
        server_id: Ipv4Addr,
    },
}

struct Slot {
    mac: Mac,
    xid: u32,
    stage: Stage,
    /// When this machine began asking for its current address (RFC 2131 `secs`).
    began: Instant,
    sent_at: Instant,
    sends: u32,
}

struct Probe {
    client: TestClient,
    slots: Vec<Slot>,
    by_xid: HashMap<u32, usize>,
    next_mac: u32,
    sent: u64,
    acks: u64,
    naks: u64,
    out: std::io::Stdout,
}

impl Probe {
    fn options(began: Instant) -> ClientOptions {
        let secs = u16::try_from(began.elapsed().as_secs()).unwrap_or(u16::MAX);
        ClientOptions { secs, ..ClientOptions::default() }
    }

    fn transmit(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        let message = match slot.stage {
            Stage::Idle { .. } => return,
            Stage::Selecting => ClientMessage::Discover { requested_ip: None },
            Stage::Requesting { offered, server_id } => {
                ClientMessage::Request(RequestState::Selecting { requested_ip: offered, server_id })
            }
        };
        let bytes = build(slot.mac, slot.xid, &message, &Self::options(slot.began));
        slot.sent_at = Instant::now();
        slot.sends += 1;
        self.sent += 1;
        if let Err(e) = self.client.send_raw(&bytes, Target::Broadcast) {
            eprintln!("failover_probe: send: {e}");
        }
    }

    /// A new machine (fresh MAC) starts DISCOVERing in slot `index`.
    fn begin(&mut self, index: usize) {
        let xid = self.client.next_xid();
        let mac = test_mac(self.next_mac);
        self.next_mac = self.next_mac.wrapping_add(1);
        let slot = &mut self.slots[index];
        self.by_xid.remove(&slot.xid);
        *slot = Slot { mac, xid, stage: Stage::Selecting, began: Instant::now(), sent_at: Instant::now(), sends: 0 };
        self.by_xid.insert(xid, index);
        self.transmit(index);
    }

    /// The same machine goes back to DISCOVER (a new xid, its `secs` keeps counting).
    fn restart(&mut self, index: usize) {
        let xid = self.client.next_xid();
        let slot = &mut self.slots[index];
        self.by_xid.remove(&slot.xid);
        slot.xid = xid;
        slot.stage = Stage::Selecting;
        slot.sends = 0;
        self.by_xid.insert(xid, index);
        self.transmit(index);
    }

    fn line(&mut self, text: std::fmt::Arguments<'_>) {
        let mut out = self.out.lock();
        let _ = out.write_fmt(text);
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    }

    fn on_reply(&mut self, reply: leasehold_tests::ReplyView, interval: Duration) {
        let Some(&index) = self.by_xid.get(&reply.xid) else { return };
        if reply.chaddr != self.slots[index].mac {
            return;
        }
        let server = reply.server_id.unwrap_or(Ipv4Addr::UNSPECIFIED);
        match (&self.slots[index].stage, reply.message_type) {
            (Stage::Selecting, Some(MessageType::Offer)) => {
                let Some(server_id) = reply.server_id else { return };
                let slot = &mut self.slots[index];
                slot.stage = Stage::Requesting { offered: reply.yiaddr, server_id };
                slot.sends = 0;
                self.transmit(index);
            }
            (Stage::Requesting { offered, .. }, Some(MessageType::Ack)) if reply.yiaddr == *offered => {
                self.acks += 1;
                let took = self.slots[index].began.elapsed().as_millis();
                self.line(format_args!("ack {} {} {server} {took}", unix_ms(), reply.yiaddr));
                self.by_xid.remove(&reply.xid);
                self.slots[index].stage = Stage::Idle { until: Instant::now() + interval };
            }
            (Stage::Requesting { .. }, Some(MessageType::Nak)) => {
                self.naks += 1;
                self.line(format_args!("nak {} {server}", unix_ms()));
                self.by_xid.remove(&reply.xid);
                self.slots[index].stage = Stage::Idle { until: Instant::now() };
            }
            _ => {}
        }
    }
}

fn main() {
    let args = parse_args();
    let config = match &args.ns {
        Some(ns) => ClientConfig::in_namespace(ns, &args.interface),
        None => ClientConfig { interface: Some(args.interface.clone()), ..ClientConfig::default() },
    };
    let client = TestClient::bind(config).unwrap_or_else(|e| {
        eprintln!("failover_probe: {e}");
        std::process::exit(1);
    });
    let now = Instant::now();
    let mut probe = Probe {
        client,
        slots: (0..args.slots)
            .map(|_| Slot {
                mac: [0; 6],
                xid: 0,
                stage: Stage::Idle { until: now },
                began: now,
                sent_at: now,
                sends: 0,
            })
            .collect(),
        by_xid: HashMap::new(),
        next_mac: args.mac_base,
        sent: 0,
        acks: 0,
        naks: 0,
        out: std::io::stdout(),
    };
    let deadline = Instant::now() + args.duration;
    let poll = Duration::from_millis(5);
    while Instant::now() < deadline {
        for index in 0..probe.slots.len() {
            match probe.slots[index].stage {
                Stage::Idle { until } if Instant::now() >= until => probe.begin(index),
                Stage::Idle { .. } => {}
                Stage::Selecting if probe.slots[index].sent_at.elapsed() >= args.retransmit => probe.transmit(index),
                Stage::Requesting { .. } if probe.slots[index].sent_at.elapsed() >= args.retransmit => {
                    if probe.slots[index].sends >= 4 {
                        probe.restart(index);
                    } else {
                        probe.transmit(index);
                    }
                }
                _ => {}
            }
        }
        // Read whatever has arrived (at most a few hundred replies per round), then look at the timers.
        for _ in 0..512 {
            match probe.client.recv_any(poll) {
                Ok(reply) => probe.on_reply(reply, args.interval),
                Err(HarnessError::Timeout { .. }) => break,
                Err(e) => {
                    eprintln!("failover_probe: receive: {e}");
                    break;
                }
            }
        }
    }
    let (sent, acks, naks) = (probe.sent, probe.acks, probe.naks);
    probe.line(format_args!("done sent={sent} acks={acks} naks={naks}"));
}
