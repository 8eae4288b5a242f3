//! A simulated DHCP client: the RFC 2131 §4.4 state machine, with bounded retransmissions.
//!
//! INIT → DISCOVER, collect OFFERs for a short window → REQUEST (SELECTING, server identifier of the
//! chosen offer) → ACK: BOUND (or DECLINE, as if ARP found the address in use) / NAK: INIT. At T1
//! RENEWING: REQUEST unicast to the server that ACKed; at T2 REBINDING: broadcast; at the end of the
//! lease the address is dropped. While bound the client may RELEASE, reboot (INIT-REBOOT with the
//! remembered address) or power off and come back later. Lease times count from the moment the
//! REQUEST was first sent (RFC 2131 §4.4.1), so a late ACK never stretches what the client believes.
//!
//! The client is sans-IO like the engine: inputs are timer firings and replies, outputs are
//! `Effect`s the world carries out. `Effect::Holds`/`Effect::Drops` tell the checker when the client
//! starts and stops using an address.

use std::net::Ipv4Addr;

use leasehold_node::wire::{ClientMessageType, Reply, ReplyType, Request};

use crate::rng::Rng;

/// First retransmission timeout; doubled per attempt up to `MAX_RETRANSMIT_US` (RFC 2131 §4.1 says
/// 4 s up to 64 s; shorter here so a run covers many exchanges).
const RETRANSMIT_BASE_US: u64 = 1_000_000;
const MAX_RETRANSMIT_US: u64 = 8_000_000;
/// Random spread added to every retransmission timeout (RFC 2131 §4.1: ±1 s).
const RETRANSMIT_JITTER_US: u64 = 500_000;
/// Transmissions of a DISCOVER, SELECTING REQUEST or INIT-REBOOT REQUEST before starting over.
const MAX_ATTEMPTS: u32 = 5;
/// How long the client collects OFFERs after the first one.
const OFFER_WAIT_US: u64 = 200_000;
/// RFC 2131 §3.1 step 5: wait at least 10 s after a DECLINE before starting over.
const DECLINE_WAIT_US: u64 = 10_000_000;

/// How a client message travels: to every node on the segment, or to one server identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    Broadcast,
    Unicast(Ipv4Addr),
}

/// What the client asks the world to do.
#[derive(Debug, Clone)]
pub enum Effect {
    Send {
        request: Box<Request>,
        destination: Destination,
    },
    /// Arm the client's one timer at `at_us`; it replaces the previous one, so a firing timer whose
    /// `generation` is not the client's `timer_generation` is stale.
    Timer {
        at_us: u64,
        generation: u64,
    },
    /// From now on the client uses `ip`, believing it is its own until `end_us`.
    Holds {
        ip: Ipv4Addr,
        end_us: u64,
    },
    /// The client stopped using `ip`.
    Drops {
        ip: Ipv4Addr,
        why: &'static str,
    },
}

/// The lease the client holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub ip: Ipv4Addr,
    pub server_id: Ipv4Addr,
    pub end_us: u64,
    t1_us: u64,
    t2_us: u64,
    /// When the client will release, reboot or power off while bound (chaos mode only).
    whim_at_us: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    pub server_id: Ipv4Addr,
    pub ip: Ipv4Addr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not configured (powered off, or waiting before starting over).
    Idle,
    Selecting {
        offer: Option<Offer>,
    },
    Requesting {
        offer: Offer,
    },
    InitReboot {
        ip: Ipv4Addr,
    },
    Bound,
    Renewing,
    Rebinding,
    /// Left the network for good (decommissioned); its lease runs out or was released.
    Gone,
}

/// What the client does besides keeping its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Releases, reboots, power-offs and declines happen.
    Chaos,
    /// Only trying to get and keep an address (the liveness phase).
    Settle,
    /// Sends nothing more; keeps its address until it runs out (the convergence phase).
    Quiet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientStats {
    pub sent: u64,
    pub acks: u64,
    pub naks: u64,
    pub releases: u64,
    pub declines: u64,
}

pub struct Client {
    pub index: usize,
    pub mac: [u8; 6],
    /// Leaves for good at its first release or power-off in the chaos phase (or when it ends), so
    /// its address passes to a client that joins later.
    pub departs: bool,
    /// The pool's addresses (first, count): a client sometimes remembers a wrong one.
    pool: (u32, u32),
    rng: Rng,
    state: State,
    mode: Mode,
    held: Option<Held>,
    /// The address to ask for in INIT-REBOOT (and as option 50 in DISCOVER).
    remembered: Option<Ipv4Addr>,
    xid: u32,
    /// When the current transaction's first message went out: the lease counts from here.
    xid_started_us: u64,
    attempts: u32,
    /// Bumped at every `Effect::Timer`; a firing timer of an older generation is stale.
    pub timer_generation: u64,
    pub stats: ClientStats,
}

impl Client {
    pub fn new(index: usize, mac: [u8; 6], departs: bool, pool: (Ipv4Addr, u32), rng: Rng) -> Self {
        Client {
            index,
            mac,
            departs,
            pool: (u32::from(pool.0), pool.1),
            rng,
            state: State::Idle,
            mode: Mode::Chaos,
            held: None,
            remembered: None,
            xid: 0,
            xid_started_us: 0,
            attempts: 0,
            timer_generation: 0,
            stats: ClientStats::default(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn held(&self) -> Option<Held> {
        self.held
    }

    /// Power on at a random moment within `spread_us`.
    pub fn start(&mut self, now_us: u64, spread_us: u64, out: &mut Vec<Effect>) {
        let at_us = now_us + self.rng.below(spread_us.max(1));
        self.arm(at_us, out);
    }

    pub fn set_mode(&mut self, mode: Mode, now_us: u64, out: &mut Vec<Effect>) {
        self.mode = mode;
        if self.state == State::Gone {
            return;
        }
        match mode {
            Mode::Chaos => {}
            Mode::Settle if self.departs => self.depart(out),
            Mode::Settle => {
                if let Some(held) = &mut self.held {
                    held.whim_at_us = u64::MAX;
                }
                if self.state == State::Idle {
                    let at_us = now_us + self.rng.below(1_000_000);
                    self.arm(at_us, out);
                }
            }
            Mode::Quiet => {
                // Only the end of the lease is still an event.
                if let Some(held) = self.held {
                    self.state = State::Bound;
                    self.arm(held.end_us, out);
                } else {
                    self.state = State::Idle;
                    self.timer_generation += 1;
                }
            }
        }
    }

    /// Leave for good without a word (a decommissioned machine).
    fn depart(&mut self, out: &mut Vec<Effect>) {
        if self.state != State::Gone {
            self.drop_lease("left for good", out);
            self.state = State::Gone;
            self.timer_generation += 1;
        }
    }

    fn arm(&mut self, at_us: u64, out: &mut Vec<Effect>) {
        self.timer_generation += 1;
        out.push(Effect::Timer { at_us, generation: self.timer_generation });
    }

    fn backoff_us(&mut self) -> u64 {
        let base = (RETRANSMIT_BASE_US << self.attempts.saturating_sub(1).min(8)).min(MAX_RETRANSMIT_US);
        base + self.rng.below(RETRANSMIT_JITTER_US)
    }

    fn new_xid(&mut self, now_us: u64) {
        self.xid = self.rng.next_u64() as u32;
        self.xid_started_us = now_us;
        self.attempts = 0;
    }

    fn request(&self, message_type: ClientMessageType) -> Request {
        Request {
            parameter_request_list: vec![1, 3, 6, 15, 51, 54, 58, 59],
            ..Request::new(message_type, self.xid, self.mac)
        }
    }

    fn send(&mut self, request: Request, destination: Destination, out: &mut Vec<Effect>) {
        self.stats.sent += 1;
        self.attempts += 1;
        out.push(Effect::Send { request: Box::new(request), destination });
    }

    fn drop_lease(&mut self, why: &'static str, out: &mut Vec<Effect>) {
        if let Some(held) = self.held.take() {
            out.push(Effect::Drops { ip: held.ip, why });
        }
    }

    fn go_idle(&mut self, wake_at_us: u64, out: &mut Vec<Effect>) {
        self.state = State::Idle;
        self.arm(wake_at_us, out);
    }

    /// INIT: a new DISCOVER transaction.
    fn discover(&mut self, now_us: u64, out: &mut Vec<Effect>) {
        self.new_xid(now_us);
        self.state = State::Selecting { offer: None };
        self.send_discover(now_us, out);
    }

    fn send_discover(&mut self, now_us: u64, out: &mut Vec<Effect>) {
        let mut request = self.request(ClientMessageType::Discover);
        request.requested_ip = self.remembered;
        self.send(request, Destination::Broadcast, out);
        let at_us = now_us + self.backoff_us();
        self.arm(at_us, out);
    }

    fn send_selecting(&mut self, offer: Offer, now_us: u64, out: &mut Vec<Effect>) {
        let mut request = self.request(ClientMessageType::Request);
        request.requested_ip = Some(offer.ip);
        request.server_id = Some(offer.server_id);
        self.send(request, Destination::Broadcast, out);
        let at_us = now_us + self.backoff_us();
        self.arm(at_us, out);
    }

    fn init_reboot(&mut self, ip: Ipv4Addr, now_us: u64, out: &mut Vec<Effect>) {
        self.new_xid(now_us);
        self.state = State::InitReboot { ip };
        self.send_init_reboot(ip, now_us, out);
    }

    fn send_init_reboot(&mut self, ip: Ipv4Addr, now_us: u64, out: &mut Vec<Effect>) {
        let mut request = self.request(ClientMessageType::Request);
        request.requested_ip = Some(ip);
        self.send(request, Destination::Broadcast, out);
        let at_us = now_us + self.backoff_us();
        self.arm(at_us, out);
    }

    /// RENEWING (unicast to the server) or REBINDING (broadcast): REQUEST with ciaddr.
    fn send_extend(&mut self, held: Held, now_us: u64, out: &mut Vec<Effect>) {
        let mut request = self.request(ClientMessageType::Request);
        request.ciaddr = held.ip;
        let (destination, deadline_us) = match self.state {
            State::Renewing => (Destination::Unicast(held.server_id), held.t2_us),
            _ => (Destination::Broadcast, held.end_us),
        };
        self.send(request, destination, out);
        let at_us = (now_us + self.backoff_us()).min(deadline_us);
        self.arm(at_us, out);
    }

    /// Wake (INIT or INIT-REBOOT) after being idle.
    fn wake(&mut self, now_us: u64, out: &mut Vec<Effect>) {
        if self.mode == Mode::Chaos && self.rng.chance(100_000) {
            // A stale lease file, or a machine moved between ports: INIT-REBOOT with an address
            // that is not (or no longer) this client's; the server NAKs or stays silent.
            let (first, count) = self.pool;
            self.remembered = Some(Ipv4Addr::from(first + self.rng.below(u64::from(count)) as u32));
        }
        match self.remembered {
            Some(ip) if self.rng.chance(600_000) => self.init_reboot(ip, now_us, out),
            _ => self.discover(now_us, out),
        }
    }

    pub fn on_timer(&mut self, now_us: u64, out: &mut Vec<Effect>) {
        if let Some(held) = self.held {
            if now_us >= held.end_us {
                // RFC 2131 §4.4.5: the lease ran out; back to INIT.
                self.drop_lease("expired", out);
                if self.mode == Mode::Quiet {
                    self.state = State::Idle;
                } else {
                    self.discover(now_us, out);
                }
                return;
            }
        }
        if self.mode == Mode::Quiet {
            return;
        }
        match self.state {
            State::Gone => {}
            State::Idle => self.wake(now_us, out),
            State::Selecting { offer: Some(offer) } => {
                self.state = State::Requesting { offer };
                self.attempts = 0;
                self.send_selecting(offer, now_us, out);
            }
            State::Selecting { offer: None } if self.attempts < MAX_ATTEMPTS => self.send_discover(now_us, out),
            State::Selecting { offer: None } => {
                let at_us = now_us + self.rng.between(500_000, 3_000_000);
                self.go_idle(at_us, out);
            }
            State::Requesting { offer } if self.attempts < MAX_ATTEMPTS => self.send_selecting(offer, now_us, out),
            State::InitReboot { ip } if self.attempts < MAX_ATTEMPTS => self.send_init_reboot(ip, now_us, out),
            State::Requesting { .. } | State::InitReboot { .. } => self.discover(now_us, out),
            State::Bound => {
                let Some(held) = self.held else { return self.discover(now_us, out) };
                if now_us >= held.t1_us {
                    self.state = State::Renewing;
                    self.new_xid(now_us);
                    self.send_extend(held, now_us, out);
                } else if now_us >= held.whim_at_us {
                    self.whim(held, now_us, out);
                } else {
                    self.arm(held.t1_us.min(held.whim_at_us), out);
                }
            }
            State::Renewing | State::Rebinding => {
                let Some(held) = self.held else { return self.discover(now_us, out) };
                if self.state == State::Renewing && now_us >= held.t2_us {
                    self.state = State::Rebinding;
                    self.new_xid(now_us);
                }
                self.send_extend(held, now_us, out);
            }
        }
    }

    /// A bound client's own decision: release, reboot or power off.
    fn whim(&mut self, held: Held, now_us: u64, out: &mut Vec<Effect>) {
        self.remembered = Some(held.ip);
        match self.rng.below(3) {
            0 => {
                // RFC 2131 §4.4.6: unicast to the server, no retransmission, then forget the lease.
                self.stats.releases += 1;
                self.new_xid(now_us);
                let mut request = self.request(ClientMessageType::Release);
                request.ciaddr = held.ip;
                request.server_id = Some(held.server_id);
                self.drop_lease("released", out);
                self.send(request, Destination::Unicast(held.server_id), out);
                if self.departs {
                    self.state = State::Gone;
                    self.timer_generation += 1;
                } else {
                    let at_us = now_us + self.rng.between(1_000_000, 20_000_000);
                    self.go_idle(at_us, out);
                }
            }
            _ if self.departs => self.depart(out),
            1 => {
                self.drop_lease("rebooted", out);
                self.init_reboot(held.ip, now_us, out);
            }
            _ => {
                self.drop_lease("powered off", out);
                let at_us = now_us + self.rng.between(2_000_000, 60_000_000);
                self.go_idle(at_us, out);
            }
        }
    }

    /// A reply from the segment. `Err` is a protocol violation by the server.
    pub fn on_reply(&mut self, reply: &Reply, now_us: u64, out: &mut Vec<Effect>) -> Result<(), String> {
        if reply.chaddr != self.mac || reply.xid != self.xid || self.mode == Mode::Quiet || self.state == State::Gone {
            return Ok(());
        }
        match (reply.message_type, self.state) {
            (ReplyType::Offer, State::Selecting { offer: None }) => {
                self.state = State::Selecting { offer: Some(Offer { server_id: reply.server_id, ip: reply.yiaddr }) };
                self.arm(now_us + OFFER_WAIT_US, out);
            }
            // Keep one of the offers at random (any server may be chosen, RFC 2131 §4.4.1).
            (ReplyType::Offer, State::Selecting { offer: Some(_) }) if self.rng.chance(500_000) => {
                self.state = State::Selecting { offer: Some(Offer { server_id: reply.server_id, ip: reply.yiaddr }) };
            }
            (ReplyType::Ack, State::Requesting { offer }) => {
                expect_address(reply, offer.ip)?;
                if self.mode == Mode::Chaos && self.rng.chance(20_000) {
                    // As if ARP found the address in use (RFC 2131 §4.4.1): DECLINE, wait, start over.
                    self.stats.declines += 1;
                    let mut request = self.request(ClientMessageType::Decline);
                    request.requested_ip = Some(offer.ip);
                    request.server_id = Some(reply.server_id);
                    self.send(request, Destination::Broadcast, out);
                    self.remembered = None;
                    self.go_idle(now_us + DECLINE_WAIT_US, out);
                    return Ok(());
                }
                self.bind(reply, now_us, out)?;
            }
            (ReplyType::Ack, State::InitReboot { ip }) => {
                expect_address(reply, ip)?;
                self.bind(reply, now_us, out)?;
            }
            (ReplyType::Ack, State::Renewing | State::Rebinding) => {
                let ip = self.held.map(|h| h.ip).unwrap_or(Ipv4Addr::UNSPECIFIED);
                expect_address(reply, ip)?;
                self.bind(reply, now_us, out)?;
            }
            (
                ReplyType::Nak,
                State::Requesting { .. } | State::InitReboot { .. } | State::Renewing | State::Rebinding,
            ) => {
                // RFC 2131 §4.4.3/§4.4.5: stop using the address, back to INIT.
                self.stats.naks += 1;
                self.drop_lease("nak", out);
                if matches!(self.state, State::InitReboot { .. }) {
                    self.remembered = None;
                }
                self.discover(now_us, out);
            }
            _ => {}
        }
        Ok(())
    }

    fn bind(&mut self, reply: &Reply, now_us: u64, out: &mut Vec<Effect>) -> Result<(), String> {
        let Some(lease_secs) = reply.lease_time_secs else {
            return Err(format!("ACK for {} without a lease time", reply.yiaddr));
        };
        let lease_us = u64::from(lease_secs) * 1_000_000;
        let start_us = self.xid_started_us;
        let t1_us = start_us + reply.renewal_time_secs.map_or(lease_us / 2, |s| u64::from(s) * 1_000_000);
        let t2_us = start_us + reply.rebinding_time_secs.map_or(lease_us / 8 * 7, |s| u64::from(s) * 1_000_000);
        let end_us = start_us + lease_us;
        self.stats.acks += 1;
        if end_us <= now_us {
            // Useless: the lease counted from the first REQUEST is already over.
            self.drop_lease("ack too late", out);
            self.discover(now_us, out);
            return Ok(());
        }
        let whim_at_us = match self.mode {
            Mode::Chaos => now_us + self.rng.between(lease_us / 8, lease_us * 3),
            _ => u64::MAX,
        };
        if let Some(previous) = self.held {
            if previous.ip != reply.yiaddr {
                self.drop_lease("moved", out);
            }
        }
        let held = Held { ip: reply.yiaddr, server_id: reply.server_id, end_us, t1_us, t2_us, whim_at_us };
        self.held = Some(held);
        self.remembered = Some(held.ip);
        self.state = State::Bound;
        out.push(Effect::Holds { ip: held.ip, end_us });
        self.arm(t1_us.min(whim_at_us).max(now_us + 1), out);
        Ok(())
    }
}

fn expect_address(reply: &Reply, ip: Ipv4Addr) -> Result<(), String> {
    if reply.yiaddr == ip {
        Ok(())
    } else {
        Err(format!("ACK (xid {:#x}) for {} but the client asked for {ip}", reply.xid, reply.yiaddr))
    }
}
