//! `TestClient`: a DHCP client the tests control byte by byte. One UDP socket (port 68 by default,
//! bound to an interface inside a network namespace) sends messages for any number of hardware
//! addresses and matches replies by `xid`, so one client can stand in for thousands of machines.
//!
//! Everything is blocking std I/O with a deadline: every wait is bounded in time, every loop in
//! iterations, and nothing panics — failures come back as `HarnessError`.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::netns::{self, NetnsError};
use crate::packet::{
    self, ClientMessage, ClientOptions, Mac, MessageType, PacketError, ReplyView, RequestState, CLIENT_PORT,
    SERVER_PORT,
};

/// Biggest datagram read (a UDP payload cannot be larger).
const RECEIVE_BUFFER_BYTES: usize = 65_536;
/// Socket receive buffer asked for, so bursts of replies to many impersonated clients are kept.
const SOCKET_RECEIVE_BUFFER_BYTES: usize = 4 << 20;
/// At most this many datagrams are read by one receive call, whatever the deadline.
const MAX_DATAGRAMS_PER_CALL: usize = 1_000_000;
/// The shortest socket read timeout (zero would mean "block forever").
const MIN_READ_TIMEOUT: Duration = Duration::from_millis(1);

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("no {what} after {after:?}")]
    Timeout { what: String, after: Duration },
    #[error("DHCPNAK for xid {xid:#010x}: {}", .reply.option_text(56).unwrap_or_default())]
    Nak { xid: u32, reply: Box<ReplyView> },
    #[error("expected {expected}, got {got:?}")]
    Unexpected { expected: String, got: Box<ReplyView> },
    #[error(transparent)]
    Packet(#[from] PacketError),
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> HarnessError {
    let context = context.into();
    move |source| HarnessError::Io { context, source }
}

pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

/// Where a test client socket lives and where it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Create the socket inside this `ip netns` namespace (None: the current one).
    pub namespace: Option<String>,
    /// SO_BINDTODEVICE: send and receive only on this interface (e.g. `eth0`).
    pub interface: Option<String>,
    /// Local address; `0.0.0.0:68` receives broadcast replies (RFC 2131 §4.1). A relay-style
    /// client binds port 67.
    pub bind: SocketAddrV4,
    /// Where broadcast messages go: `255.255.255.255:67` on a segment. Unicast messages go to
    /// the given address at this port.
    pub server: SocketAddrV4,
    /// Replies for other xids kept for later `recv_reply` calls; the oldest are dropped beyond this.
    pub max_stashed_replies: usize,
    /// Replies kept by `set_recording(true)`; later ones are counted, not kept.
    pub max_recorded_replies: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            namespace: None,
            interface: None,
            bind: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT),
            server: SocketAddrV4::new(Ipv4Addr::BROADCAST, SERVER_PORT),
            max_stashed_replies: 16_384,
            max_recorded_replies: 1_000_000,
        }
    }
}

impl ClientConfig {
    /// A client on `interface` inside namespace `namespace`, port 68, broadcasting to port 67.
    pub fn in_namespace(namespace: &str, interface: &str) -> Self {
        ClientConfig {
            namespace: Some(namespace.to_owned()),
            interface: Some(interface.to_owned()),
            ..ClientConfig::default()
        }
    }
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `ClientConfig::server` (255.255.255.255:67 on a segment).
    Broadcast,
    /// This address, at the server port.
    Unicast(Ipv4Addr),
}

/// Retransmission (RFC 2131 §4.1: the client retransmits with exponential backoff), kept short for
/// tests: `attempts` sends per message, waiting `first_wait`, doubling up to `max_wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_wait: Duration,
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    /// 4 tries: waits of 0.5, 1, 2, 2 s.
    fn default() -> Self {
        RetryPolicy { attempts: 4, first_wait: Duration::from_millis(500), max_wait: Duration::from_secs(2) }
    }
}

impl RetryPolicy {
    /// `attempts` tries at a fixed `wait`.
    pub fn fixed(attempts: u32, wait: Duration) -> Self {
        RetryPolicy { attempts, first_wait: wait, max_wait: wait }
    }

    fn wait(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
        self.first_wait.saturating_mul(factor).min(self.max_wait.max(self.first_wait))
    }
}

/// An address bound by DISCOVER → OFFER → REQUEST → ACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub mac: Mac,
    pub xid: u32,
    pub address: Ipv4Addr,
    /// Option 54 of the ACK (of the OFFER if the ACK lacks it).
    pub server_id: Ipv4Addr,
    pub lease_time_secs: Option<u32>,
    pub offer: ReplyView,
    pub ack: ReplyView,
    /// From the first DISCOVER to the ACK.
    pub elapsed: Duration,
}

/// Counters of one client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub sent: u64,
    pub received: u64,
    /// Datagrams that were not a readable BOOTREPLY (e.g. our own broadcasts on port 67).
    pub unreadable: u64,
    /// Stashed replies dropped because the stash was full.
    pub stash_overflow: u64,
    /// Replies not recorded because the record was full.
    pub record_overflow: u64,
}

/// A DHCP test client; see the module documentation.
pub struct TestClient {
    socket: UdpSocket,
    config: ClientConfig,
    buffer: Box<[u8]>,
    /// Replies read while waiting for another xid, by xid, plus their arrival order for eviction.
    stash: HashMap<u32, VecDeque<ReplyView>>,
    stash_order: VecDeque<u32>,
    recording: bool,
    recorded: Vec<(Instant, ReplyView)>,
    xid_base: u32,
    xid_counter: u32,
    stats: ClientStats,
}

impl std::fmt::Debug for TestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestClient").field("config", &self.config).field("stats", &self.stats).finish()
    }
}

fn open_socket(config: &ClientConfig) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_broadcast(true)?;
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(SOCKET_RECEIVE_BUFFER_BYTES);
    if let Some(interface) = &config.interface {
        socket.bind_device(Some(interface.as_bytes()))?;
    }
    socket.bind(&SocketAddr::V4(config.bind).into())?;
    Ok(socket)
}

impl TestClient {
    /// Opens the socket (inside `config.namespace` if set): SO_REUSEADDR (several clients and a
    /// real one may share port 68), SO_BROADCAST, SO_BINDTODEVICE on `config.interface`.
    pub fn bind(config: ClientConfig) -> Result<Self> {
        let opened = match &config.namespace {
            Some(namespace) => netns::in_netns(namespace, || open_socket(&config))?,
            None => open_socket(&config),
        };
        let socket = opened.map_err(io_error(format!(
            "open client socket {} on {:?} in namespace {:?}",
            config.bind, config.interface, config.namespace
        )))?;
        let seed = std::process::id().rotate_left(16)
            ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        Ok(TestClient {
            socket: socket.into(),
            config,
            buffer: vec![0; RECEIVE_BUFFER_BYTES].into_boxed_slice(),
            stash: HashMap::new(),
            stash_order: VecDeque::new(),
            recording: false,
            recorded: Vec::new(),
            xid_base: seed,
            xid_counter: 0,
            stats: ClientStats::default(),
        })
    }

    /// Makes the xid sequence reproducible.
    pub fn with_xid_seed(mut self, seed: u32) -> Self {
        self.xid_base = seed;
        self.xid_counter = 0;
        self
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.socket.local_addr().map_err(io_error("local_addr"))
    }

    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// A fresh transaction id: distinct for 2^32 calls (an odd multiplier is a bijection).
    pub fn next_xid(&mut self) -> u32 {
        self.xid_counter = self.xid_counter.wrapping_add(1);
        self.xid_base.wrapping_add(self.xid_counter.wrapping_mul(0x9e37_79b9))
    }

    fn destination(&self, target: Target) -> SocketAddrV4 {
        match target {
            Target::Broadcast => self.config.server,
            Target::Unicast(address) => SocketAddrV4::new(address, self.config.server.port()),
        }
    }

    /// Sends any bytes (garbage for the bad-input test).
    pub fn send_raw(&mut self, bytes: &[u8], target: Target) -> Result<()> {
        let to = self.destination(target);
        self.socket.send_to(bytes, to).map_err(io_error(format!("send {} bytes to {to}", bytes.len())))?;
        self.stats.sent += 1;
        Ok(())
    }

    /// Builds and sends one message (see `packet::build`).
    pub fn send(
        &mut self,
        mac: Mac,
        xid: u32,
        message: &ClientMessage,
        options: &ClientOptions,
        target: Target,
    ) -> Result<()> {
        let bytes = packet::build(mac, xid, message, options);
        self.send_raw(&bytes, target)
    }

    /// DISCOVER (broadcast); returns its xid.
    pub fn send_discover(&mut self, mac: Mac, options: &ClientOptions) -> Result<u32> {
        let xid = self.next_xid();
        self.send(mac, xid, &ClientMessage::Discover { requested_ip: None }, options, Target::Broadcast)?;
        Ok(xid)
    }

    /// REQUEST in `state` with `xid` (the DISCOVER's for SELECTING, RFC 2131 §4.4.1). RENEWING is
    /// unicast to `server_id` when given, everything else broadcast (RFC 2131 §4.3.2).
    pub fn send_request(
        &mut self,
        mac: Mac,
        xid: u32,
        state: RequestState,
        server_id: Option<Ipv4Addr>,
        options: &ClientOptions,
    ) -> Result<()> {
        let target = match (state, server_id) {
            (RequestState::Renewing { .. }, Some(server)) => Target::Unicast(server),
            _ => Target::Broadcast,
        };
        self.send(mac, xid, &ClientMessage::Request(state), options, target)
    }

    /// RELEASE, unicast to the server (RFC 2131 §4.4.6); no reply is expected. Returns the xid.
    pub fn send_release(
        &mut self,
        mac: Mac,
        address: Ipv4Addr,
        server_id: Ipv4Addr,
        options: &ClientOptions,
    ) -> Result<u32> {
        let xid = self.next_xid();
        let message = ClientMessage::Release { address, server_id };
        self.send(mac, xid, &message, options, Target::Unicast(server_id))?;
        Ok(xid)
    }

    /// DECLINE, broadcast (RFC 2131 §4.4.1); no reply is expected. Returns the xid.
    pub fn send_decline(
        &mut self,
        mac: Mac,
        address: Ipv4Addr,
        server_id: Ipv4Addr,
        options: &ClientOptions,
    ) -> Result<u32> {
        let xid = self.next_xid();
        self.send(mac, xid, &ClientMessage::Decline { address, server_id }, options, Target::Broadcast)?;
        Ok(xid)
    }

    /// INFORM with `address` in ciaddr (RFC 2131 §4.4.3); the ACK goes to `address` unless the
    /// broadcast flag is set, so keep `options.broadcast` on. Returns the xid.
    pub fn send_inform(&mut self, mac: Mac, address: Ipv4Addr, options: &ClientOptions, target: Target) -> Result<u32> {
        let xid = self.next_xid();
        self.send(mac, xid, &ClientMessage::Inform { address }, options, target)?;
        Ok(xid)
    }

    /// Keep (or stop keeping) every reply read, with its arrival time: the chaos checker's view.
    pub fn set_recording(&mut self, on: bool) {
        self.recording = on;
    }

    /// The replies recorded so far (emptied).
    pub fn take_recorded(&mut self) -> Vec<(Instant, ReplyView)> {
        std::mem::take(&mut self.recorded)
    }

    /// Reads one datagram until `deadline`. `Ok(None)` on timeout; unreadable datagrams are
    /// counted and skipped.
    fn read_one(&mut self, deadline: Instant) -> Result<Option<ReplyView>> {
        for _ in 0..MAX_DATAGRAMS_PER_CALL {
            let Some(remaining) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
                return Ok(None);
            };
            self.socket
                .set_read_timeout(Some(remaining.max(MIN_READ_TIMEOUT)))
                .map_err(io_error("set_read_timeout"))?;
            let (len, from) = match self.socket.recv_from(&mut self.buffer) {
                Ok(received) => received,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error("recv_from")(e)),
            };
            self.stats.received += 1;
            let Some(datagram) = self.buffer.get(..len) else { continue };
            match ReplyView::parse(datagram) {
                Ok(mut reply) => {
                    if let SocketAddr::V4(from) = from {
                        reply.source = Some(from);
                    }
                    if self.recording {
                        if self.recorded.len() < self.config.max_recorded_replies {
                            self.recorded.push((Instant::now(), reply.clone()));
                        } else {
                            self.stats.record_overflow += 1;
                        }
                    }
                    return Ok(Some(reply));
                }
                Err(_) => self.stats.unreadable += 1,
            }
        }
        Ok(None)
    }

    fn stash_reply(&mut self, reply: ReplyView) {
        while self.stash_order.len() >= self.config.max_stashed_replies.max(1) {
            let Some(oldest) = self.stash_order.pop_front() else { break };
            if let Some(queue) = self.stash.get_mut(&oldest) {
                queue.pop_front();
                if queue.is_empty() {
                    self.stash.remove(&oldest);
                }
            }
            self.stats.stash_overflow += 1;
        }
        self.stash_order.push_back(reply.xid);
        self.stash.entry(reply.xid).or_default().push_back(reply);
    }

    fn take_stashed(&mut self, xid: u32) -> Option<ReplyView> {
        let queue = self.stash.get_mut(&xid)?;
        let reply = queue.pop_front();
        if queue.is_empty() {
            self.stash.remove(&xid);
        }
        if reply.is_some() {
            if let Some(at) = self.stash_order.iter().position(|&x| x == xid) {
                self.stash_order.remove(at);
            }
        }
        reply
    }

    /// The next reply of any xid (stashed ones first), waiting at most `timeout`.
    pub fn recv_any(&mut self, timeout: Duration) -> Result<ReplyView> {
        if let Some(xid) = self.stash_order.front().copied() {
            if let Some(reply) = self.take_stashed(xid) {
                return Ok(reply);
            }
        }
        let deadline = Instant::now() + timeout;
        self.read_one(deadline)?
            .ok_or_else(|| HarnessError::Timeout { what: "reply of any xid".to_owned(), after: timeout })
    }

    /// The next reply with `xid`, waiting at most `timeout`; replies for other xids are stashed.
    pub fn recv_reply(&mut self, xid: u32, timeout: Duration) -> Result<ReplyView> {
        self.recv_reply_until(xid, Instant::now() + timeout)?
            .ok_or_else(|| HarnessError::Timeout { what: format!("reply for xid {xid:#010x}"), after: timeout })
    }

    fn recv_reply_until(&mut self, xid: u32, deadline: Instant) -> Result<Option<ReplyView>> {
        if let Some(reply) = self.take_stashed(xid) {
            return Ok(Some(reply));
        }
        for _ in 0..MAX_DATAGRAMS_PER_CALL {
            match self.read_one(deadline)? {
                None => return Ok(None),
                Some(reply) if reply.xid == xid => return Ok(Some(reply)),
                Some(other) => self.stash_reply(other),
            }
        }
        Ok(None)
    }

    /// Every reply with `xid` that arrives within `window` (e.g. to check that exactly one
    /// server answered). Replies for other xids are stashed.
    pub fn collect_replies(&mut self, xid: u32, window: Duration) -> Result<Vec<ReplyView>> {
        let deadline = Instant::now() + window;
        let mut replies = Vec::new();
        for _ in 0..MAX_DATAGRAMS_PER_CALL {
            match self.recv_reply_until(xid, deadline)? {
                Some(reply) => replies.push(reply),
                None => break,
            }
        }
        Ok(replies)
    }

    /// Sends `message` and waits for a reply with the same xid and chaddr whose type is in
    /// `expected`, retransmitting per `policy` and giving up at `deadline`. A NAK is returned as
    /// `HarnessError::Nak` unless NAK is expected. Other replies with this xid are skipped.
    #[allow(clippy::too_many_arguments)]
    pub fn exchange(
        &mut self,
        mac: Mac,
        xid: u32,
        message: &ClientMessage,
        options: &ClientOptions,
        target: Target,
        expected: &[MessageType],
        policy: &RetryPolicy,
        deadline: Instant,
    ) -> Result<ReplyView> {
        let bytes = packet::build(mac, xid, message, options);
        let started = Instant::now();
        for attempt in 0..policy.attempts.max(1) {
            if Instant::now() >= deadline {
                break;
            }
            self.send_raw(&bytes, target)?;
            let attempt_deadline = (Instant::now() + policy.wait(attempt)).min(deadline);
            for _ in 0..MAX_DATAGRAMS_PER_CALL {
                let Some(reply) = self.recv_reply_until(xid, attempt_deadline)? else { break };
                if reply.chaddr != mac {
                    continue;
                }
                match reply.message_type {
                    Some(t) if expected.contains(&t) => return Ok(reply),
                    Some(MessageType::Nak) => return Err(HarnessError::Nak { xid, reply: Box::new(reply) }),
                    _ => {}
                }
            }
        }
        Err(HarnessError::Timeout {
            what: format!("{expected:?} for {message:?} from {} (xid {xid:#010x})", format_mac(mac)),
            after: started.elapsed(),
        })
    }

    /// RFC 951 §3 / RFC 1542: a BOOTREQUEST without option 53 (`ClientMessage::Bootp`) and its
    /// BOOTREPLY, retransmitted per `policy` within `timeout`. The answer is the first reply with
    /// this xid and chaddr; one that carries option 53 (DHCP-only, RFC 2132 §1 and §9.6) is a DHCP
    /// answer to a BOOTP client and comes back as `HarnessError::Unexpected`.
    pub fn bootp(
        &mut self,
        mac: Mac,
        options: &ClientOptions,
        policy: &RetryPolicy,
        timeout: Duration,
    ) -> Result<ReplyView> {
        let xid = self.next_xid();
        let started = Instant::now();
        let deadline = started + timeout;
        let bytes = packet::build(mac, xid, &ClientMessage::Bootp, options);
        for attempt in 0..policy.attempts.max(1) {
            if Instant::now() >= deadline {
                break;
            }
            self.send_raw(&bytes, Target::Broadcast)?;
            let attempt_deadline = (Instant::now() + policy.wait(attempt)).min(deadline);
            for _ in 0..MAX_DATAGRAMS_PER_CALL {
                let Some(reply) = self.recv_reply_until(xid, attempt_deadline)? else { break };
                if reply.chaddr != mac {
                    continue;
                }
                if reply.option(53).is_some() {
                    return Err(HarnessError::Unexpected {
                        expected: "a BOOTREPLY without option 53 (RFC 2132 §9.6)".to_owned(),
                        got: Box::new(reply),
                    });
                }
                return Ok(reply);
            }
        }
        Err(HarnessError::Timeout {
            what: format!("a BOOTREPLY for {} (xid {xid:#010x})", format_mac(mac)),
            after: started.elapsed(),
        })
    }

    /// DISCOVER → OFFER → REQUEST (SELECTING) → ACK for `mac` with default options and retries,
    /// within `timeout`.
    pub fn dora(&mut self, mac: Mac, timeout: Duration) -> Result<Lease> {
        self.dora_with(mac, &ClientOptions::default(), &RetryPolicy::default(), timeout)
    }

    /// `dora` with chosen options (e.g. `ClientOptions::pxe`) and retransmission policy.
    pub fn dora_with(
        &mut self,
        mac: Mac,
        options: &ClientOptions,
        policy: &RetryPolicy,
        timeout: Duration,
    ) -> Result<Lease> {
        let started = Instant::now();
        let deadline = started + timeout;
        let xid = self.next_xid();
        let discover = ClientMessage::Discover { requested_ip: None };
        let offer =
            self.exchange(mac, xid, &discover, options, Target::Broadcast, &[MessageType::Offer], policy, deadline)?;
        let Some(server_id) = offer.server_id else {
            return Err(HarnessError::Unexpected {
                expected: "an OFFER with option 54 (RFC 2131 §4.3.1)".to_owned(),
                got: Box::new(offer),
            });
        };
        let request = ClientMessage::Request(RequestState::Selecting { requested_ip: offer.yiaddr, server_id });
        let ack =
            self.exchange(mac, xid, &request, options, Target::Broadcast, &[MessageType::Ack], policy, deadline)?;
        if ack.yiaddr != offer.yiaddr {
            return Err(HarnessError::Unexpected {
                expected: format!("an ACK for the offered {}", offer.yiaddr),
                got: Box::new(ack),
            });
        }
        Ok(Lease {
            mac,
            xid,
            address: ack.yiaddr,
            server_id: ack.server_id.unwrap_or(server_id),
            lease_time_secs: ack.lease_time_secs,
            offer,
            ack,
            elapsed: started.elapsed(),
        })
    }

    /// INIT-REBOOT (RFC 2131 §4.4.2): asks for `address` again after a restart; returns the ACK,
    /// or `HarnessError::Nak`.
    pub fn init_reboot(
        &mut self,
        mac: Mac,
        address: Ipv4Addr,
        options: &ClientOptions,
        policy: &RetryPolicy,
        timeout: Duration,
    ) -> Result<ReplyView> {
        let xid = self.next_xid();
        let message = ClientMessage::Request(RequestState::InitReboot { requested_ip: address });
        let deadline = Instant::now() + timeout;
        self.exchange(mac, xid, &message, options, Target::Broadcast, &[MessageType::Ack], policy, deadline)
    }

    /// RENEWING (unicast to the lease's server) or REBINDING (broadcast) for `lease`
    /// (RFC 2131 §4.4.5). The ACK comes to `ciaddr` unless the broadcast flag is set
    /// (`ClientOptions::broadcast`, on by default).
    pub fn extend(
        &mut self,
        lease: &Lease,
        rebinding: bool,
        options: &ClientOptions,
        policy: &RetryPolicy,
        timeout: Duration,
    ) -> Result<ReplyView> {
        let xid = self.next_xid();
        let (state, target) = if rebinding {
            (RequestState::Rebinding { ciaddr: lease.address }, Target::Broadcast)
        } else {
            (RequestState::Renewing { ciaddr: lease.address }, Target::Unicast(lease.server_id))
        };
        let deadline = Instant::now() + timeout;
        let message = ClientMessage::Request(state);
        self.exchange(lease.mac, xid, &message, options, target, &[MessageType::Ack], policy, deadline)
    }

    /// RELEASE of `lease`, unicast to its server. No reply is expected.
    pub fn release(&mut self, lease: &Lease, options: &ClientOptions) -> Result<()> {
        self.send_release(lease.mac, lease.address, lease.server_id, options).map(|_| ())
    }
}

/// `52:54:00:12:34:56`.
pub fn format_mac(mac: Mac) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The `index`-th of many test MACs: locally administered unicast (02:...), distinct per `index`.
pub fn test_mac(index: u32) -> Mac {
    let [a, b, c, d] = index.to_be_bytes();
    [0x02, 0x4c, a, b, c, d]
}

#[cfg(test)]
mod tests {
    //! The client against a scripted fake server on loopback (no namespaces, no root).

    use super::*;
    use dhcproto::v4::{DhcpOption, Message, Opcode, OptionCode};
    use dhcproto::{Decodable, Decoder, Encodable, Encoder};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    const SERVER_ID: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

    /// What the fake server does with one client message.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Script {
        /// OFFER 10.0.0.<last MAC byte> / ACK it.
        Serve,
        /// Say nothing to the first message of each kind, then serve (retransmission).
        DropFirst,
        /// NAK every REQUEST.
        NakRequests,
        /// Before each answer, send a reply with another xid and one for another MAC.
        Noisy,
    }

    fn reply_to(request: &Message, message_type: MessageType, xid: u32, chaddr: &[u8]) -> Vec<u8> {
        let yiaddr = Ipv4Addr::new(10, 0, 0, chaddr.get(5).copied().unwrap_or(0));
        let mut reply =
            Message::new_with_id(xid, Ipv4Addr::UNSPECIFIED, yiaddr, Ipv4Addr::UNSPECIFIED, request.giaddr(), chaddr);
        reply.set_opcode(Opcode::BootReply);
        let opts = reply.opts_mut();
        opts.insert(DhcpOption::MessageType(message_type));
        opts.insert(DhcpOption::ServerIdentifier(SERVER_ID));
        if message_type != MessageType::Nak {
            opts.insert(DhcpOption::AddressLeaseTime(600));
        } else {
            opts.insert(DhcpOption::Message("no such lease".to_owned()));
        }
        let mut bytes = Vec::new();
        reply.encode(&mut Encoder::new(&mut bytes)).expect("encode fake reply");
        bytes
    }

    /// A fake server on 127.0.0.1 answering per `script` until `stop`.
    fn fake_server(script: Script) -> (SocketAddrV4, Arc<AtomicBool>, std::thread::JoinHandle<Vec<Message>>) {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind fake server");
        socket.set_read_timeout(Some(Duration::from_millis(20))).expect("timeout");
        let SocketAddr::V4(address) = socket.local_addr().expect("addr") else { unreachable!("bound IPv4") };
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut dropped = Vec::new();
            let mut buf = [0u8; 1500];
            while !stop_flag.load(Ordering::Relaxed) {
                let Ok((len, from)) = socket.recv_from(&mut buf) else { continue };
                let Ok(request) = Message::decode(&mut Decoder::new(&buf[..len])) else {
                    continue; // garbage
                };
                seen.push(request.clone());
                let Some(kind) = request.opts().msg_type() else { continue };
                if script == Script::DropFirst && !dropped.contains(&kind) {
                    dropped.push(kind);
                    continue;
                }
                let answer = match (kind, script) {
                    (MessageType::Discover, _) => MessageType::Offer,
                    (MessageType::Request, Script::NakRequests) => MessageType::Nak,
                    (MessageType::Request, _) => MessageType::Ack,
                    _ => continue,
                };
                if script == Script::Noisy {
                    let _ = socket.send_to(&reply_to(&request, answer, request.xid() ^ 1, request.chaddr()), from);
                    let _ = socket.send_to(&reply_to(&request, answer, request.xid(), &[9; 6]), from);
                    let _ = socket.send_to(b"not dhcp at all", from);
                }
                let _ = socket.send_to(&reply_to(&request, answer, request.xid(), request.chaddr()), from);
            }
            seen
        });
        (address, stop, handle)
    }

    fn loopback_client(server: SocketAddrV4) -> TestClient {
        TestClient::bind(ClientConfig {
            bind: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
            server,
            ..ClientConfig::default()
        })
        .expect("bind loopback client")
        .with_xid_seed(42)
    }

    fn finish(stop: Arc<AtomicBool>, handle: std::thread::JoinHandle<Vec<Message>>) -> Vec<Message> {
        stop.store(true, Ordering::Relaxed);
        handle.join().expect("fake server thread")
    }

    /// RFC 2131 §3.1: DISCOVER, OFFER, REQUEST (SELECTING, same xid, 50 + 54), ACK.
    #[test]
    fn dora_against_a_fake_server() {
        let (server, stop, handle) = fake_server(Script::Serve);
        let mut client = loopback_client(server);
        let mac = test_mac(7);
        let lease = client.dora(mac, Duration::from_secs(5)).expect("lease");
        assert_eq!(lease.address, Ipv4Addr::new(10, 0, 0, 7));
        assert_eq!(lease.server_id, SERVER_ID);
        assert_eq!(lease.lease_time_secs, Some(600));
        assert!(lease.offer.is(MessageType::Offer) && lease.ack.is(MessageType::Ack));
        let seen = finish(stop, handle);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].opts().msg_type(), Some(MessageType::Discover));
        assert_eq!(seen[1].opts().msg_type(), Some(MessageType::Request));
        assert_eq!(seen[0].xid(), seen[1].xid(), "RFC 2131 §4.4.1: the REQUEST keeps the xid");
        assert_eq!(
            seen[1].opts().get(OptionCode::RequestedIpAddress),
            Some(&DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 7)))
        );
        assert_eq!(seen[1].opts().get(OptionCode::ServerIdentifier), Some(&DhcpOption::ServerIdentifier(SERVER_ID)));
    }

    /// RFC 2131 §4.1: no answer → retransmit (same bytes, same xid).
    #[test]
    fn lost_messages_are_retransmitted() {
        let (server, stop, handle) = fake_server(Script::DropFirst);
        let mut client = loopback_client(server);
        let policy = RetryPolicy::fixed(3, Duration::from_millis(100));
        let lease = client.dora_with(test_mac(3), &ClientOptions::default(), &policy, Duration::from_secs(5));
        assert_eq!(lease.map(|l| l.address).ok(), Some(Ipv4Addr::new(10, 0, 0, 3)));
        let seen = finish(stop, handle);
        let kinds: Vec<_> = seen.iter().map(|m| m.opts().msg_type()).collect();
        assert_eq!(
            kinds,
            [MessageType::Discover, MessageType::Discover, MessageType::Request, MessageType::Request].map(Some)
        );
        assert!(seen.iter().all(|m| m.xid() == seen[0].xid()));
        assert_eq!(client.stats().sent, 4);
    }

    #[test]
    fn nak_is_an_error_with_the_reply() {
        let (server, stop, handle) = fake_server(Script::NakRequests);
        let mut client = loopback_client(server);
        match client.dora(test_mac(1), Duration::from_secs(5)) {
            Err(HarnessError::Nak { reply, .. }) => {
                assert_eq!(reply.option_text(56).as_deref(), Some("no such lease"));
            }
            other => panic!("expected a NAK, got {other:?}"),
        }
        finish(stop, handle);
    }

    /// One socket, many MACs: replies for other xids or other hardware addresses, and garbage,
    /// do not confuse the exchange; other xids are stashed for later.
    #[test]
    fn replies_are_matched_by_xid_and_chaddr() {
        let (server, stop, handle) = fake_server(Script::Noisy);
        let mut client = loopback_client(server);
        for index in 1..=20 {
            let lease = client.dora(test_mac(index), Duration::from_secs(5)).expect("lease");
            assert_eq!(lease.address, Ipv4Addr::new(10, 0, 0, u8::try_from(index).unwrap_or(0)));
        }
        assert!(client.stats().unreadable >= 20, "{:?}", client.stats());
        assert!(!client.stash.is_empty(), "replies to xid ^ 1 were stashed");
        finish(stop, handle);
    }

    /// Pipelining: send many DISCOVERs first, then collect each OFFER by xid.
    #[test]
    fn many_discovers_then_collect_by_xid() {
        let (server, stop, handle) = fake_server(Script::Serve);
        let mut client = loopback_client(server);
        client.set_recording(true);
        let xids: Vec<_> =
            (1..=50).map(|i| client.send_discover(test_mac(i), &ClientOptions::default()).expect("send")).collect();
        for (i, xid) in xids.iter().enumerate().rev() {
            let offer = client.recv_reply(*xid, Duration::from_secs(5)).expect("offer");
            assert_eq!(offer.yiaddr, Ipv4Addr::new(10, 0, 0, u8::try_from(i + 1).unwrap_or(0)));
        }
        assert_eq!(client.take_recorded().len(), 50);
        finish(stop, handle);
    }

    #[test]
    fn silence_is_a_timeout_within_the_bound() {
        let mut client = loopback_client(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9)); // discard port: no server
        let started = Instant::now();
        let policy = RetryPolicy::fixed(10, Duration::from_millis(100));
        let result = client.dora_with(test_mac(1), &ClientOptions::default(), &policy, Duration::from_millis(350));
        assert!(matches!(result, Err(HarnessError::Timeout { .. })), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(matches!(client.recv_any(Duration::from_millis(10)), Err(HarnessError::Timeout { .. })));
    }

    /// The bad-input test's tool: arbitrary bytes go out as they are.
    #[test]
    fn send_raw_sends_garbage_verbatim() {
        let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
        receiver.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        let SocketAddr::V4(address) = receiver.local_addr().expect("addr") else { unreachable!("bound IPv4") };
        let mut client = loopback_client(address);
        client.send_raw(&[0xff; 17], Target::Broadcast).expect("send");
        client.send_raw(&[], Target::Unicast(Ipv4Addr::LOCALHOST)).expect("send empty");
        let mut buf = [0u8; 64];
        assert_eq!(receiver.recv(&mut buf).ok(), Some(17));
        assert_eq!(buf[..17], [0xff; 17]);
        assert_eq!(receiver.recv(&mut buf).ok(), Some(0));
    }

    #[test]
    fn xids_are_distinct_and_reproducible() {
        let (server, stop, handle) = fake_server(Script::Serve);
        let mut a = loopback_client(server);
        let mut b = loopback_client(server);
        let xa: Vec<_> = (0..1000).map(|_| a.next_xid()).collect();
        let xb: Vec<_> = (0..1000).map(|_| b.next_xid()).collect();
        assert_eq!(xa, xb);
        let distinct: std::collections::HashSet<_> = xa.iter().collect();
        assert_eq!(distinct.len(), 1000);
        finish(stop, handle);
    }

    #[test]
    fn retry_policy_backs_off_to_its_cap() {
        let policy = RetryPolicy::default();
        let waits: Vec<_> = (0..5).map(|a| policy.wait(a).as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 2000, 2000]);
        assert_eq!(RetryPolicy::fixed(4, Duration::from_millis(500)).wait(3), Duration::from_millis(500));
    }

    #[test]
    fn test_macs_are_distinct_and_locally_administered() {
        assert_eq!(format_mac(test_mac(0x0102_0304)), "02:4c:01:02:03:04");
        assert_ne!(test_mac(1), test_mac(2));
        assert_eq!(test_mac(5)[0] & 0b11, 0b10, "locally administered unicast");
    }
}
