//! The peer transport: authenticated TCP links that carry raft-rs messages between the nodes of the
//! cluster. It owns the listening socket, one outbound link (and its bounded send queue) per peer,
//! the inbound connections, and the counters that tell an operator which link is unwell.
//!
//! - Each node dials every peer and sends only on the connection it dialled; it receives on the
//!   connections its peers dialled. A link carries frames one way, which keeps each side simple.
//! - Sending never blocks the raft actor: [`SendMessages`] puts each message on its peer's bounded
//!   queue with `try_send`; when the queue is full (the peer is slow or down) the message is dropped
//!   and counted, and Raft retransmits. A writer task per peer drains its queue, reconnecting with
//!   jittered, doubling backoff ([`link::RECONNECT_MIN`] to [`link::RECONNECT_MAX`]).
//! - Peers prove a shared secret of at least [`MIN_SECRET_BYTES`] both ways on every connection, and
//!   every frame carries a MAC under a key derived for that connection and a sequence number that
//!   rises by exactly one; see [`wire`] for the protocol. Any failure closes the connection and is
//!   counted. A node also accepts connections only from configured peer ids.
//! - With mutual TLS ([`tls`]), every connection is a TLS 1.3 session first: both ends show a
//!   certificate from the cluster CA naming their node id, so the links are encrypted as well, and a
//!   process without such a certificate can neither join nor read. The protocol above then runs
//!   inside the session, proving the shared secret bound to the session, or (without a shared
//!   secret) the session's own exporter value ([`wire::connection_secret`]).
//! - A frame's payload is at most [`MAX_FRAME_BYTES`]; a larger length closes the connection before
//!   anything of that size is allocated. A longer message (a large snapshot) goes as several frames
//!   and is joined on arrival, up to [`MAX_MESSAGE_BYTES`].
//!
//! Inbound messages go to the `Recipient<PeerMessage>` given to [`start`] (see `link::deliver` for
//! why delivery is `try_send` with a drop counter). The transport does not report snapshot delivery:
//! the raft actor should call `report_snapshot` / `report_unreachable` from what it learns itself.

pub mod link;
pub mod tls;
pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use raft::eraftpb::Message as RaftMessage;
use slog::{info, o, warn, Logger};
use tokio::net::TcpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use wire::{MAX_FRAME_BYTES, MAX_MESSAGE_BYTES, MIN_SECRET_BYTES};

/// Mailbox size of the transport actor: how many `SendMessages` batches may wait for it.
pub const TRANSPORT_MAILBOX_CAPACITY: usize = 1024;
/// Pending connections the kernel holds for the listener.
const LISTEN_BACKLOG: u32 = 128;

/// What one node's transport needs to know.
#[derive(Clone)]
pub struct TransportConfig {
    /// This node's Raft id (non-zero).
    pub node_id: u64,
    /// Where to listen for peers (port 0 picks a free port; see [`TransportStats::listen`]).
    pub listen: SocketAddr,
    /// The other members and where to reach them; never this node.
    pub peers: BTreeMap<u64, SocketAddr>,
    /// The cluster's shared secret, at least [`MIN_SECRET_BYTES`] long; optional with `tls`.
    pub secret: Option<Arc<[u8]>>,
    /// Mutual TLS on every link; optional with `secret`.
    pub tls: Option<tls::PeerTls>,
    /// Messages held per peer while its link is slow or down (for example 4096); more are dropped.
    pub queue_capacity: usize,
}

impl std::fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportConfig")
            .field("node_id", &self.node_id)
            .field("listen", &self.listen)
            .field("peers", &self.peers)
            .field("secret", &format_args!("<{} bytes>", self.secret.as_ref().map_or(0, |s| s.len())))
            .field("tls", &self.tls.is_some())
            .field("queue_capacity", &self.queue_capacity)
            .finish()
    }
}

impl TransportConfig {
    fn check(&self) -> io::Result<()> {
        let invalid = |what: String| Err(io::Error::new(io::ErrorKind::InvalidInput, what));
        if self.node_id == 0 {
            return invalid("transport: node id 0 is not a Raft id".into());
        }
        match (&self.secret, &self.tls) {
            (None, None) => return invalid("transport: needs a shared secret, mutual TLS, or both".into()),
            (Some(secret), _) if secret.len() < MIN_SECRET_BYTES => {
                return invalid(format!(
                    "transport: the shared secret has {} bytes, at least {MIN_SECRET_BYTES} are needed",
                    secret.len()
                ));
            }
            _ => {}
        }
        if self.queue_capacity == 0 {
            return invalid("transport: queue_capacity must be at least 1".into());
        }
        for &id in self.peers.keys() {
            check_peer_id(self.node_id, id)?;
        }
        Ok(())
    }
}

fn check_peer_id(node_id: u64, peer: u64) -> io::Result<()> {
    if peer == 0 || peer == node_id {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("transport: peer id {peer} is not another node's Raft id (this node is {node_id})"),
        ));
    }
    Ok(())
}

/// Raft messages to send, each to the peer in its `to` field. Never waits for the network.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SendMessages(pub Vec<RaftMessage>);

/// A Raft message received from an authenticated peer (its `from` is that peer, its `to` this node).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct PeerMessage(pub RaftMessage);

/// Adds a peer, changes its address (`Some`), or removes it (`None`): applied on membership changes.
/// Removing a peer drops its queue and closes its connections both ways.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct SetPeer {
    pub id: u64,
    pub addr: Option<SocketAddr>,
}

/// Asks for the transport's counters.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "TransportStats")]
pub struct GetStats;

/// Stops the transport: closes the listener, every link and every task; resolves when the listening
/// socket and the outbound connections are closed, so the address can be bound again at once.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// One peer's link, as seen from this node. Counters start at zero when the peer is added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    pub addr: SocketAddr,
    /// The outbound link is up (handshake done).
    pub connected: bool,
    /// An authenticated inbound connection from the peer is open.
    pub inbound_connected: bool,
    /// Messages waiting in the peer's send queue.
    pub queued: usize,
    /// Messages written to the peer's connection.
    pub sent: u64,
    /// Bytes written to the peer's connection (frames, with their MAC or TLS records' payload).
    pub sent_bytes: u64,
    /// Bytes of the messages received from the peer (decoded frames).
    pub received_bytes: u64,
    /// Messages dropped because the peer's send queue was full.
    pub dropped_full: u64,
    /// Messages dropped because they could not be framed (over [`MAX_MESSAGE_BYTES`] when encoded).
    pub dropped_unsendable: u64,
    /// Outbound connections closed because the peer failed to prove the shared secret.
    pub auth_failures: u64,
    /// Connection attempts after the first one (after a failure or a lost link).
    pub reconnects: u64,
    /// Messages from the peer handed to the raft actor.
    pub delivered: u64,
    /// Messages from the peer dropped because the raft actor's mailbox was full.
    pub dropped_inbound: u64,
}

/// The transport's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportStats {
    pub node_id: u64,
    /// The address the listener is bound to.
    pub listen: SocketAddr,
    pub peers: BTreeMap<u64, PeerStats>,
    /// Inbound connections closed for failing authentication: an id that is not a configured peer,
    /// a wrong handshake proof, a wrong frame MAC or sequence. Not attributed to a peer: a claimed id
    /// is unproven before the proof, and a bad MAC after it means the stream was changed in transit.
    pub inbound_auth_failures: u64,
    /// Inbound connections closed for malformed input: bad magic, a hello for another node, a frame
    /// over the size limit, an undecodable message, a handshake timeout.
    pub inbound_protocol_errors: u64,
    /// Inbound connections closed on accept because too many were open.
    pub inbound_refused: u64,
    /// Messages to send whose `to` is not a configured peer.
    pub unroutable: u64,
    /// The links run over mutual TLS.
    pub tls: bool,
}

/// Per-peer counters, shared between the actor and the peer's tasks.
#[derive(Debug, Default)]
pub(crate) struct PeerCounters {
    connected: AtomicBool,
    inbound_connected: AtomicBool,
    sent: AtomicU64,
    sent_bytes: AtomicU64,
    received_bytes: AtomicU64,
    dropped_full: AtomicU64,
    dropped_unsendable: AtomicU64,
    auth_failures: AtomicU64,
    reconnects: AtomicU64,
    delivered: AtomicU64,
    dropped_inbound: AtomicU64,
}

/// What the tasks share with the actor.
pub(crate) struct Shared {
    node_id: u64,
    secret: Option<Arc<[u8]>>,
    tls: Option<link::TlsEnds>,
    inbound: Recipient<PeerMessage>,
    log: Logger,
    /// Configured peers: who may connect in, and their counters. Lock before `inbound_links`.
    peers: Mutex<BTreeMap<u64, Arc<PeerCounters>>>,
    /// The authenticated inbound connection of each peer; dropping the sender closes it.
    inbound_links: Mutex<HashMap<u64, (u64, oneshot::Sender<()>)>>,
    next_connection: AtomicU64,
    inbound_auth_failures: AtomicU64,
    inbound_protocol_errors: AtomicU64,
    inbound_refused: AtomicU64,
}

/// The transport actor. Create it with [`start`].
pub struct Transport {
    shared: Arc<Shared>,
    listen: SocketAddr,
    queue_capacity: usize,
    links: BTreeMap<u64, OutboundLink>,
    listener: Option<JoinHandle<()>>,
    unroutable: u64,
}

struct OutboundLink {
    addr: SocketAddr,
    queue: mpsc::Sender<RaftMessage>,
    writer: JoinHandle<()>,
    counters: Arc<PeerCounters>,
}

/// Binds the listener (so a bad or busy address fails here), then starts the transport actor, its
/// listener task and one writer task per peer. Call from inside a running actix system.
pub fn start(config: TransportConfig, inbound: Recipient<PeerMessage>, log: Logger) -> io::Result<Addr<Transport>> {
    config.check()?;
    let socket = if config.listen.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(config.listen)?;
    let listener = socket.listen(LISTEN_BACKLOG)?;
    let listen = listener.local_addr()?;
    let log = log.new(o!("component" => "transport", "node" => config.node_id));
    info!(log, "listening for peers"; "addr" => %listen);

    let shared = Arc::new(Shared {
        node_id: config.node_id,
        secret: config.secret,
        tls: config.tls.map(link::TlsEnds::new),
        inbound,
        log,
        peers: Mutex::new(BTreeMap::new()),
        inbound_links: Mutex::new(HashMap::new()),
        next_connection: AtomicU64::new(0),
        inbound_auth_failures: AtomicU64::new(0),
        inbound_protocol_errors: AtomicU64::new(0),
        inbound_refused: AtomicU64::new(0),
    });
    let mut transport = Transport {
        listener: Some(tokio::spawn(link::run_listener(shared.clone(), listener))),
        shared,
        listen,
        queue_capacity: config.queue_capacity,
        links: BTreeMap::new(),
        unroutable: 0,
    };
    for (id, addr) in config.peers {
        transport.set_peer(id, Some(addr));
    }
    Ok(transport.start())
}

impl Transport {
    fn set_peer(&mut self, id: u64, addr: Option<SocketAddr>) {
        let counters = match (self.links.remove(&id), addr) {
            (Some(link), Some(addr)) if link.addr == addr => {
                self.links.insert(id, link);
                return;
            }
            (Some(link), _) => {
                link.writer.abort();
                link.counters
            }
            (None, _) => Arc::default(),
        };
        let Some(addr) = addr else {
            let mut peers = self.shared.peers.lock().expect("peer table lock");
            peers.remove(&id);
            // Dropping the entry's sender closes the peer's inbound connection.
            let closed = self.shared.inbound_links.lock().expect("inbound table lock").remove(&id);
            drop(peers);
            drop(closed);
            info!(self.shared.log, "peer removed"; "peer" => id);
            return;
        };
        self.shared.peers.lock().expect("peer table lock").insert(id, counters.clone());
        let (queue, receiver) = mpsc::channel(self.queue_capacity);
        let writer = tokio::spawn(link::run_outbound(self.shared.clone(), id, addr, receiver, counters.clone()));
        self.links.insert(id, OutboundLink { addr, queue, writer, counters });
        info!(self.shared.log, "peer set"; "peer" => id, "addr" => %addr);
    }

    /// Aborts every task and closes every link; returns the tasks to wait for.
    fn close_all(&mut self) -> Vec<JoinHandle<()>> {
        let mut tasks: Vec<JoinHandle<()>> = std::mem::take(&mut self.links)
            .into_values()
            .map(|link| {
                link.writer.abort();
                link.writer
            })
            .collect();
        if let Some(listener) = self.listener.take() {
            // The reader tasks belong to the listener task and end with it.
            listener.abort();
            tasks.push(listener);
        }
        self.shared.peers.lock().expect("peer table lock").clear();
        self.shared.inbound_links.lock().expect("inbound table lock").clear();
        tasks
    }

    fn stats(&self) -> TransportStats {
        let peers = self
            .links
            .iter()
            .map(|(&id, link)| {
                let counters = &link.counters;
                let stats = PeerStats {
                    addr: link.addr,
                    connected: counters.connected.load(Relaxed),
                    inbound_connected: counters.inbound_connected.load(Relaxed),
                    queued: link.queue.max_capacity() - link.queue.capacity(),
                    sent: counters.sent.load(Relaxed),
                    sent_bytes: counters.sent_bytes.load(Relaxed),
                    received_bytes: counters.received_bytes.load(Relaxed),
                    dropped_full: counters.dropped_full.load(Relaxed),
                    dropped_unsendable: counters.dropped_unsendable.load(Relaxed),
                    auth_failures: counters.auth_failures.load(Relaxed),
                    reconnects: counters.reconnects.load(Relaxed),
                    delivered: counters.delivered.load(Relaxed),
                    dropped_inbound: counters.dropped_inbound.load(Relaxed),
                };
                (id, stats)
            })
            .collect();
        TransportStats {
            node_id: self.shared.node_id,
            listen: self.listen,
            peers,
            inbound_auth_failures: self.shared.inbound_auth_failures.load(Relaxed),
            inbound_protocol_errors: self.shared.inbound_protocol_errors.load(Relaxed),
            inbound_refused: self.shared.inbound_refused.load(Relaxed),
            unroutable: self.unroutable,
            tls: self.shared.tls.is_some(),
        }
    }
}

impl Actor for Transport {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(TRANSPORT_MAILBOX_CAPACITY);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // Without a `Shutdown` first (the last address dropped): abort without waiting.
        drop(self.close_all());
        info!(self.shared.log, "transport stopped");
    }
}

impl Handler<SendMessages> for Transport {
    type Result = ();

    fn handle(&mut self, SendMessages(messages): SendMessages, _ctx: &mut Self::Context) {
        for message in messages {
            let Some(link) = self.links.get(&message.to) else {
                self.unroutable += 1;
                warn!(self.shared.log, "no link to the message's destination"; "to" => message.to);
                continue;
            };
            match link.queue.try_send(message) {
                Ok(()) => {}
                // Closed only if the writer task ended, which it does only when aborted.
                Err(mpsc::error::TrySendError::Full(_) | mpsc::error::TrySendError::Closed(_)) => {
                    link.counters.dropped_full.fetch_add(1, Relaxed);
                }
            }
        }
    }
}

impl Handler<SetPeer> for Transport {
    type Result = ();

    fn handle(&mut self, SetPeer { id, addr }: SetPeer, _ctx: &mut Self::Context) {
        if let Err(error) = check_peer_id(self.shared.node_id, id) {
            warn!(self.shared.log, "ignoring SetPeer"; "error" => %error);
            return;
        }
        self.set_peer(id, addr);
    }
}

impl Handler<GetStats> for Transport {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.stats())
    }
}

impl Handler<Shutdown> for Transport {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        let tasks = self.close_all();
        ctx.stop();
        Box::pin(async move {
            for task in tasks {
                // Aborted tasks end with a cancellation error; that is the expected outcome.
                let _ = task.await;
            }
        })
    }
}
