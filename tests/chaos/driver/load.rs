//! The chaos clients: one `TestClient` socket in a client namespace standing in for many machines, each
//! an RFC 2131 client state machine driven by a seeded generator:
//!
//! - INIT → SELECTING: DISCOVER (broadcast), retransmitted every 500 ms with a growing `secs`;
//! - REQUESTING: REQUEST (SELECTING) to the offering server, broadcast; 4 unanswered sends → DISCOVER;
//! - BOUND: at a random point between 30% and 55% of the lease, RENEWING: REQUEST unicast to the server
//!   that ACKed last (ciaddr = the address), every second; after 3 s without an answer (the server is
//!   dead, frozen or cut off), REBINDING: REQUEST broadcast, every second, until the lease runs out
//!   (then back to INIT). A client with less than a quarter of a lease left rebinds at once.
//! - some clients RELEASE (unicast) now and then; "churn" machines release soon after every ACK and
//!   come back with a fresh MAC, so that there are always new bindings to ask for.
//!
//! Every accepted ACK, RELEASE and NAK goes into the shared `Ledger`. Replies are matched to a machine
//! by xid and chaddr; a reply to a transaction the machine has left is counted and ignored, as a real
//! client would. The thread stops when told to or at its own deadline; while paused it sends nothing
//! (checkpoints) but still reads replies.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use leasehold_tests::{
    format_mac, test_mac, ClientConfig, ClientMessage, ClientOptions, HarnessError, Mac, MessageType, ReplyView,
    RequestState, Target, TestClient,
};

use super::ledger::{Ack, Exchange, Ledger};
use super::rng::Rng;
use super::unix_ms;

const DISCOVER_RETRANSMIT: Duration = Duration::from_millis(500);
const REQUEST_RETRANSMIT: Duration = Duration::from_millis(500);
const REQUEST_SENDS: u32 = 4;
const EXTEND_RETRANSMIT: Duration = Duration::from_secs(1);
/// How long a RENEWING client waits for the server it addressed before it broadcasts (REBINDING).
const RENEW_PATIENCE: Duration = Duration::from_secs(3);
/// One receive call waits at most this long, so timers are looked at this often.
const POLL: Duration = Duration::from_millis(5);

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub namespace: String,
    /// Machines that keep their address (renew, rebind, sometimes release and come back).
    pub clients: usize,
    /// Machines that release soon after every ACK and return with a new MAC.
    pub churn: usize,
    pub lease_secs: u32,
    pub seed: u64,
    /// Hard stop for the thread, whatever the driver does.
    pub deadline: Instant,
    /// A line per client event (ACK, NAK, RELEASE sent, lease run out), for evidence.
    pub events: PathBuf,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    ip: Ipv4Addr,
    server_id: Ipv4Addr,
    expiry: Instant,
}

#[derive(Debug, Clone, Copy)]
enum Stage {
    Idle { until: Instant },
    Selecting { sent_at: Instant, sends: u32 },
    Requesting { offered: Ipv4Addr, server_id: Ipv4Addr, sent_at: Instant, sends: u32 },
    Bound { held: Held, act_at: Instant },
    Renewing { held: Held, started: Instant, sent_at: Instant },
    Rebinding { held: Held, sent_at: Instant },
}

struct Machine {
    mac: Mac,
    churn: bool,
    xid: u32,
    stage: Stage,
    /// When it began asking for an address (RFC 2131 `secs`; the DORA wait).
    began: Instant,
    /// When the current REQUEST transaction was first sent (Unix ms): the start of the lease it asks for
    /// (RFC 2131 §4.4.1).
    requested_unix_ms: u64,
}

struct Load {
    client: TestClient,
    machines: Vec<Machine>,
    by_xid: HashMap<u32, usize>,
    next_mac: u32,
    lease: Duration,
    rng: Rng,
    ledger: Arc<Mutex<Ledger>>,
    events: Option<BufWriter<File>>,
}

pub struct LoadHandle {
    stop: Arc<AtomicBool>,
    pause: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LoadHandle {
    pub fn set_paused(&self, paused: bool) {
        self.pause.store(paused, Ordering::SeqCst);
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for LoadHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub fn start(config: LoadConfig, ledger: Arc<Mutex<Ledger>>) -> Result<LoadHandle, String> {
    let client = TestClient::bind(ClientConfig::in_namespace(&config.namespace, "eth0"))
        .map_err(|e| format!("open the chaos clients' socket in {}: {e}", config.namespace))?
        .with_xid_seed(Rng::split(config.seed, "xids").next_u64() as u32);
    let stop = Arc::new(AtomicBool::new(false));
    let pause = Arc::new(AtomicBool::new(false));
    let (stop_flag, pause_flag) = (stop.clone(), pause.clone());
    let events = File::create(&config.events).map(BufWriter::new).ok();
    let thread = thread::Builder::new()
        .name("chaos-clients".into())
        .spawn(move || {
            let now = Instant::now();
            let mut rng = Rng::split(config.seed, "clients");
            let machines: Vec<Machine> = (0..config.clients + config.churn)
                .map(|i| Machine {
                    mac: [0; 6],
                    churn: i >= config.clients,
                    xid: 0,
                    // Staggered starts over the first two seconds.
                    stage: Stage::Idle { until: now + Duration::from_millis(rng.range(0, 2000)) },
                    began: now,
                    requested_unix_ms: 0,
                })
                .collect();
            let mut load = Load {
                client,
                machines,
                by_xid: HashMap::new(),
                next_mac: 0x00c0_0000,
                lease: Duration::from_secs(u64::from(config.lease_secs)),
                rng,
                ledger,
                events,
            };
            for index in 0..load.machines.len() {
                load.machines[index].mac = load.fresh_mac();
            }
            load.run(&stop_flag, &pause_flag, config.deadline);
            if let Some(events) = &mut load.events {
                let _ = events.flush();
            }
        })
        .map_err(|e| format!("spawn the client thread: {e}"))?;
    Ok(LoadHandle { stop, pause, thread: Some(thread) })
}

impl Load {
    fn fresh_mac(&mut self) -> Mac {
        let mac = test_mac(self.next_mac);
        self.next_mac += 1;
        self.ledger().stats.macs += 1;
        mac
    }

    /// One line of the client event log: Unix ms, then what happened.
    fn event(&mut self, text: std::fmt::Arguments<'_>) {
        if let Some(events) = &mut self.events {
            let _ = writeln!(events, "{} {text}", super::unix_ms());
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn run(&mut self, stop: &AtomicBool, pause: &AtomicBool, deadline: Instant) {
        let mut flushed = Instant::now();
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            if flushed.elapsed() >= Duration::from_secs(1) {
                if let Some(events) = &mut self.events {
                    let _ = events.flush();
                }
                flushed = Instant::now();
            }
            if !pause.load(Ordering::SeqCst) {
                for index in 0..self.machines.len() {
                    self.step(index, Instant::now());
                }
            }
            for _ in 0..256 {
                match self.client.recv_any(POLL) {
                    Ok(reply) => self.on_reply(reply),
                    Err(HarnessError::Timeout { .. }) => break,
                    Err(e) => {
                        eprintln!("chaos clients: receive: {e}");
                        thread::sleep(POLL);
                        break;
                    }
                }
            }
        }
    }

    fn options(&self, index: usize) -> ClientOptions {
        let secs = u16::try_from(self.machines[index].began.elapsed().as_secs()).unwrap_or(u16::MAX);
        ClientOptions { secs, hostname: Some(format!("chaos-{index}")), ..ClientOptions::default() }
    }

    fn new_xid(&mut self, index: usize) -> u32 {
        let xid = self.client.next_xid();
        self.by_xid.remove(&self.machines[index].xid);
        self.machines[index].xid = xid;
        self.by_xid.insert(xid, index);
        xid
    }

    fn send(&mut self, index: usize, message: ClientMessage, target: Target) {
        let (mac, xid) = (self.machines[index].mac, self.machines[index].xid);
        let options = self.options(index);
        if let Err(e) = self.client.send(mac, xid, &message, &options, target) {
            eprintln!("chaos clients: send {message:?}: {e}");
        }
    }

    /// INIT: a new DORA.
    fn begin_dora(&mut self, index: usize, now: Instant) {
        self.new_xid(index);
        self.machines[index].began = now;
        self.machines[index].stage = Stage::Selecting { sent_at: now, sends: 1 };
        self.ledger().attempt(Exchange::Dora);
        self.send(index, ClientMessage::Discover { requested_ip: None }, Target::Broadcast);
    }

    /// Back to DISCOVER within the same attempt (the REQUEST went unanswered or was NAKed).
    fn rediscover(&mut self, index: usize, now: Instant) {
        self.new_xid(index);
        self.machines[index].stage = Stage::Selecting { sent_at: now, sends: 1 };
        self.send(index, ClientMessage::Discover { requested_ip: None }, Target::Broadcast);
    }

    fn step(&mut self, index: usize, now: Instant) {
        match self.machines[index].stage {
            Stage::Idle { until } if now >= until => self.begin_dora(index, now),
            Stage::Idle { .. } => {}
            Stage::Selecting { sent_at, sends } if now - sent_at >= DISCOVER_RETRANSMIT => {
                self.machines[index].stage = Stage::Selecting { sent_at: now, sends: sends + 1 };
                self.send(index, ClientMessage::Discover { requested_ip: None }, Target::Broadcast);
            }
            Stage::Selecting { .. } => {}
            Stage::Requesting { offered, server_id, sent_at, sends } if now - sent_at >= REQUEST_RETRANSMIT => {
                if sends >= REQUEST_SENDS {
                    self.rediscover(index, now);
                } else {
                    self.machines[index].stage =
                        Stage::Requesting { offered, server_id, sent_at: now, sends: sends + 1 };
                    let request = RequestState::Selecting { requested_ip: offered, server_id };
                    self.send(index, ClientMessage::Request(request), Target::Broadcast);
                }
            }
            Stage::Requesting { .. } => {}
            Stage::Bound { held, act_at } if now >= act_at => self.act(index, held, now),
            Stage::Bound { .. } => {}
            Stage::Renewing { held, .. } | Stage::Rebinding { held, .. } if now >= held.expiry => {
                self.ledger().expired();
                let mac = format_mac(self.machines[index].mac);
                self.event(format_args!("expired {mac} {} (no answer to renew/rebind)", held.ip));
                self.begin_dora(index, now);
            }
            Stage::Renewing { held, started, .. } if now - started >= RENEW_PATIENCE => self.rebind(index, held, now),
            Stage::Renewing { held, started, sent_at } if now - sent_at >= EXTEND_RETRANSMIT => {
                self.machines[index].stage = Stage::Renewing { held, started, sent_at: now };
                self.send(
                    index,
                    ClientMessage::Request(RequestState::Renewing { ciaddr: held.ip }),
                    Target::Unicast(held.server_id),
                );
            }
            Stage::Renewing { .. } => {}
            Stage::Rebinding { held, sent_at } if now - sent_at >= EXTEND_RETRANSMIT => {
                self.machines[index].stage = Stage::Rebinding { held, sent_at: now };
                self.send(
                    index,
                    ClientMessage::Request(RequestState::Rebinding { ciaddr: held.ip }),
                    Target::Broadcast,
                );
            }
            Stage::Rebinding { .. } => {}
        }
    }

    /// A bound machine's timer: release (churn machines always, others sometimes), or extend.
    fn act(&mut self, index: usize, held: Held, now: Instant) {
        let churn = self.machines[index].churn;
        if churn || self.rng.chance(0.08) {
            self.new_xid(index);
            let mac = self.machines[index].mac;
            self.send(
                index,
                ClientMessage::Release { address: held.ip, server_id: held.server_id },
                Target::Unicast(held.server_id),
            );
            self.ledger().release(mac);
            let xid = self.machines[index].xid;
            self.event(format_args!("release {} {} to {} xid {xid:#010x}", format_mac(mac), held.ip, held.server_id));
            let pause = if churn { self.rng.range(200, 800) } else { self.rng.range(1000, 3000) };
            if churn || self.rng.chance(0.3) {
                self.machines[index].mac = self.fresh_mac();
            }
            self.machines[index].stage = Stage::Idle { until: now + Duration::from_millis(pause) };
        } else if held.expiry.saturating_duration_since(now) < self.lease / 4 {
            self.rebind(index, held, now);
        } else {
            self.new_xid(index);
            self.machines[index].requested_unix_ms = unix_ms();
            self.ledger().attempt(Exchange::Renew);
            self.machines[index].stage = Stage::Renewing { held, started: now, sent_at: now };
            self.send(
                index,
                ClientMessage::Request(RequestState::Renewing { ciaddr: held.ip }),
                Target::Unicast(held.server_id),
            );
        }
    }

    fn rebind(&mut self, index: usize, held: Held, now: Instant) {
        self.new_xid(index);
        self.machines[index].requested_unix_ms = unix_ms();
        self.ledger().attempt(Exchange::Rebind);
        self.machines[index].stage = Stage::Rebinding { held, sent_at: now };
        self.send(index, ClientMessage::Request(RequestState::Rebinding { ciaddr: held.ip }), Target::Broadcast);
    }

    /// BOUND after an ACK: the next action at 30–55% of the lease the ACK gave (at least 0.5 s away, and
    /// never after the lease ends).
    fn bound(&mut self, index: usize, held: Held, lease_secs: u32, now: Instant) {
        let lease = Duration::from_secs(u64::from(lease_secs));
        let fraction = 0.30 + 0.25 * self.rng.unit();
        let churn_wait = Duration::from_millis(self.rng.range(300, 1000));
        let wait = if self.machines[index].churn { churn_wait } else { lease.mul_f64(fraction) };
        let wait = wait.min(lease.saturating_sub(Duration::from_secs(1))).max(Duration::from_millis(500));
        self.machines[index].stage = Stage::Bound { held, act_at: now + wait };
    }

    fn on_reply(&mut self, reply: ReplyView) {
        let now = Instant::now();
        let Some(&index) = self.by_xid.get(&reply.xid) else {
            self.ledger().stats.other_replies += 1;
            return;
        };
        if reply.chaddr != self.machines[index].mac {
            self.ledger().stats.other_replies += 1;
            return;
        }
        let mac = self.machines[index].mac;
        let lease_secs = reply.lease_time_secs.unwrap_or(0);
        match (self.machines[index].stage, reply.message_type) {
            (Stage::Selecting { .. }, Some(MessageType::Offer)) => {
                let Some(server_id) = reply.server_id else { return };
                self.machines[index].stage =
                    Stage::Requesting { offered: reply.yiaddr, server_id, sent_at: now, sends: 1 };
                self.machines[index].requested_unix_ms = unix_ms();
                let request = RequestState::Selecting { requested_ip: reply.yiaddr, server_id };
                self.send(index, ClientMessage::Request(request), Target::Broadcast);
            }
            (Stage::Requesting { offered, server_id, .. }, Some(MessageType::Ack)) if reply.yiaddr == offered => {
                let server_id = reply.server_id.unwrap_or(server_id);
                let waited = now - self.machines[index].began;
                {
                    let mut ledger = self.ledger();
                    if waited > ledger.stats.longest_dora {
                        ledger.stats.longest_dora = waited;
                        ledger.stats.longest_dora_of = Some((mac, now));
                    }
                    let requested_unix_ms = self.machines[index].requested_unix_ms;
                    let ack = Ack { mac, ip: offered, server_id, lease_secs, kind: Exchange::Dora, requested_unix_ms };
                    ledger.ack(ack, now);
                }
                let xid = reply.xid;
                self.event(format_args!(
                    "ack dora {} {offered} from {server_id} lease {lease_secs} xid {xid:#010x}",
                    format_mac(mac)
                ));
                let held = Held { ip: offered, server_id, expiry: now + Duration::from_secs(u64::from(lease_secs)) };
                self.bound(index, held, lease_secs, now);
            }
            (Stage::Requesting { .. }, Some(MessageType::Nak)) => {
                self.ledger().nak(mac, None, reply.server_id, "", now);
                let (xid, from, text) = (reply.xid, reply.server_id, reply.option_text(56).unwrap_or_default());
                self.event(format_args!("nak selecting {} from {from:?} xid {xid:#010x}: {text}", format_mac(mac)));
                self.rediscover(index, now);
            }
            (Stage::Renewing { held, .. } | Stage::Rebinding { held, .. }, Some(MessageType::Ack))
                if reply.yiaddr == held.ip =>
            {
                let kind = if matches!(self.machines[index].stage, Stage::Renewing { .. }) {
                    Exchange::Renew
                } else {
                    Exchange::Rebind
                };
                let server_id = reply.server_id.unwrap_or(held.server_id);
                let requested_unix_ms = self.machines[index].requested_unix_ms;
                self.ledger().ack(Ack { mac, ip: held.ip, server_id, lease_secs, kind, requested_unix_ms }, now);
                let xid = reply.xid;
                self.event(format_args!(
                    "ack {} {} {} from {server_id} lease {lease_secs} xid {xid:#010x}",
                    if kind == Exchange::Renew { "renew" } else { "rebind" },
                    format_mac(mac),
                    held.ip
                ));
                let held = Held { ip: held.ip, server_id, expiry: now + Duration::from_secs(u64::from(lease_secs)) };
                self.bound(index, held, lease_secs, now);
            }
            (
                Stage::Renewing { held, .. } | Stage::Rebinding { held, .. },
                Some(MessageType::Nak | MessageType::Ack),
            ) => {
                // A NAK, or an ACK for an address other than ciaddr: the client must stop using its address.
                let message = if reply.is(MessageType::Nak) {
                    reply.option_text(56).unwrap_or_default()
                } else {
                    format!("an ACK for {} instead of {}", reply.yiaddr, held.ip)
                };
                self.ledger().nak(mac, Some(held.ip), reply.server_id, &message, now);
                let (xid, from) = (reply.xid, reply.server_id);
                self.event(format_args!(
                    "nak {} {} from {from:?} xid {xid:#010x}: {message}",
                    format_mac(mac),
                    held.ip
                ));
                self.begin_dora(index, now);
            }
            _ => self.ledger().stats.other_replies += 1,
        }
    }
}
