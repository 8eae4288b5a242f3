//! The async side of the transport: the listener and one reader task per inbound connection, and one
//! writer task per peer that dials, authenticates, reconnects with backoff and drains the peer's
//! bounded queue. These tasks only move bytes; what the bytes mean is in `wire`. With mutual TLS,
//! each connection is wrapped in a TLS session (`TlsEnds`) before the first byte of `wire`, and the
//! peer's certificate must name the id its hello claims.

use std::collections::hash_map::Entry;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use actix::dev::SendError;
use protobuf::Message as ProtobufMessage;
use raft::eraftpb::{Message as RaftMessage, MessageType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rustls_pki_types::{CertificateDer, ServerName};
use slog::{debug, info, warn};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::tls::{self, PeerTls};
use super::wire::{
    connection_secret, FrameHeader, FrameOpener, FrameSealer, Handshake, Hello, MessageJoiner, WireError,
    FRAME_HEADER_BYTES, HELLO_BYTES, MAC_BYTES, MAX_MESSAGE_BYTES, TLS_EXPORTER_BYTES, TLS_EXPORTER_LABEL,
};
use super::{PeerCounters, PeerMessage, Shared};

/// Both TLS ends of this node's links: the acceptor for inbound connections, the connector for the
/// ones it dials.
pub(super) struct TlsEnds {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl TlsEnds {
    pub(super) fn new(tls: PeerTls) -> TlsEnds {
        TlsEnds { acceptor: TlsAcceptor::from(tls.server), connector: TlsConnector::from(tls.client) }
    }
}

/// A connection's byte stream: plain TCP, or TLS over it.
pub(super) trait PeerIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> PeerIo for T {}
type PeerStream = Box<dyn PeerIo>;

/// This connection's TLS exporter value (see `wire::connection_secret`).
fn exporter<D>(connection: &rustls::ConnectionCommon<D>) -> Result<[u8; TLS_EXPORTER_BYTES], LinkError> {
    connection
        .export_keying_material([0u8; TLS_EXPORTER_BYTES], TLS_EXPORTER_LABEL, None)
        .map_err(|e| LinkError::Tls(e.to_string()))
}

/// A TLS handshake that failed: a refused certificate (or none, or a peer that does not speak TLS)
/// is the peer's failure to authenticate; a reset or a close is the network's.
fn tls_failure(error: io::Error) -> LinkError {
    match error.kind() {
        io::ErrorKind::InvalidData => LinkError::Tls(error.to_string()),
        io::ErrorKind::UnexpectedEof => LinkError::Closed,
        _ => LinkError::Io(error),
    }
}

fn secret_for(shared: &Shared, exporter: Option<&[u8; TLS_EXPORTER_BYTES]>) -> Result<Vec<u8>, LinkError> {
    connection_secret(shared.secret.as_deref(), exporter).ok_or(LinkError::NoCredentials)
}

/// How long a TCP connect to a peer may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long either side may take to complete the handshake; a connection that has not
/// authenticated by then is closed, so strangers cannot hold connections open.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one batch of frames may take to write (a full-size snapshot frame included) before the
/// connection counts as dead.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// First reconnect delay after a failure; it doubles per consecutive failure up to
/// [`RECONNECT_MAX`], and each delay is drawn uniformly from its upper half (jitter).
pub const RECONNECT_MIN: Duration = Duration::from_millis(50);
/// Longest reconnect delay.
pub const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// Inbound connections (authenticated or still in the handshake) served at once; more are closed
/// on accept.
pub const MAX_INBOUND_CONNECTIONS: usize = 64;
/// A writer gathers queued messages into one write until the batch has this many bytes...
const BATCH_MAX_BYTES: usize = 1024 * 1024;
/// A message longer than this goes as frames of this size, each written on its own (a large
/// snapshot neither waits for one huge write nor needs a second copy in the batch buffer).
const CHUNK_BYTES: usize = 8 * 1024 * 1024;
/// ...or this many messages.
const BATCH_MAX_MESSAGES: usize = 256;
/// Pause after a failed accept (for example out of file descriptors) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The delay before reconnect attempt number `failures + 1`; `jitter` is uniform in `[0, 1)`.
pub fn reconnect_delay(failures: u32, jitter: f64) -> Duration {
    let ceiling = RECONNECT_MIN.saturating_mul(1u32 << failures.min(16)).min(RECONNECT_MAX);
    ceiling.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// Why a connection ended or could not be set up.
#[derive(Debug, thiserror::Error)]
pub(super) enum LinkError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("node {0} is not a configured peer")]
    UnknownPeer(u64),
    #[error("hello from node {from} is addressed to node {to}")]
    Misaddressed { from: u64, to: u64 },
    #[error("expected node {expected} at this address, node {found} answered (addressed to node {to})")]
    WrongNode { expected: u64, found: u64, to: u64 },
    #[error("undecodable raft message: {0}")]
    Decode(#[from] protobuf::ProtobufError),
    #[error("raft message from node {from} to node {to} on the link of node {peer}")]
    WrongEndpoints { peer: u64, from: u64, to: u64 },
    #[error("peer sent data on a send-only link")]
    UnexpectedData,
    #[error("peer closed the connection")]
    Closed,
    #[error("the raft actor's mailbox is closed")]
    InboxClosed,
    #[error("the peer's queue is closed (peer removed or transport stopped)")]
    QueueClosed,
    #[error("superseded by a newer connection from the same node, or the peer was removed")]
    Superseded,
    #[error("TLS: {0}")]
    Tls(String),
    #[error("the peer's certificate does not name node {claimed}, the id it claims")]
    CertificateNotForNode { claimed: u64 },
    #[error("neither a shared secret nor TLS is configured")]
    NoCredentials,
}

impl LinkError {
    /// Failures that only a holder of the secret avoids, or a claim to be a node we do not know.
    fn is_auth_failure(&self) -> bool {
        match self {
            LinkError::Wire(error) => error.is_auth_failure(),
            LinkError::UnknownPeer(_) | LinkError::Tls(_) | LinkError::CertificateNotForNode { .. } => true,
            _ => false,
        }
    }

    /// Input that breaks the protocol without failing authentication. (The other errors are the
    /// network's or ours: a reset, a close, a replacement, a shutdown.)
    fn is_protocol_error(&self) -> bool {
        match self {
            LinkError::Wire(error) => !error.is_auth_failure(),
            LinkError::Timeout(_)
            | LinkError::Misaddressed { .. }
            | LinkError::WrongNode { .. }
            | LinkError::Decode(_)
            | LinkError::WrongEndpoints { .. }
            | LinkError::UnexpectedData
            | LinkError::NoCredentials => true,
            LinkError::Io(_)
            | LinkError::UnknownPeer(_)
            | LinkError::Tls(_)
            | LinkError::CertificateNotForNode { .. }
            | LinkError::Closed
            | LinkError::InboxClosed
            | LinkError::QueueClosed
            | LinkError::Superseded => false,
        }
    }
}

// ===== inbound =====

/// Accepts connections until the task is aborted. The reader tasks live in a `JoinSet` owned here,
/// so aborting this task ends them too.
pub(super) async fn run_listener(shared: Arc<Shared>, listener: TcpListener) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    if connections.len() >= MAX_INBOUND_CONNECTIONS {
                        shared.inbound_refused.fetch_add(1, Relaxed);
                        warn!(shared.log, "refusing inbound connection: too many open";
                            "remote" => %remote, "limit" => MAX_INBOUND_CONNECTIONS);
                        continue;
                    }
                    connections.spawn(serve_inbound(shared.clone(), stream, remote));
                }
                Err(error) => {
                    warn!(shared.log, "accept failed"; "error" => %error);
                    sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_inbound(shared: Arc<Shared>, stream: TcpStream, remote: SocketAddr) {
    let accepted = match timeout(HANDSHAKE_TIMEOUT, accept_handshake(&shared, stream)).await {
        Ok(result) => result,
        Err(_) => Err(LinkError::Timeout("handshake")),
    };
    let (peer, mut opener, mut stream) = match accepted {
        Ok(accepted) => accepted,
        Err(error) => {
            if error.is_auth_failure() {
                shared.inbound_auth_failures.fetch_add(1, Relaxed);
                warn!(shared.log, "inbound connection failed authentication"; "remote" => %remote, "error" => %error);
            } else if error.is_protocol_error() {
                shared.inbound_protocol_errors.fetch_add(1, Relaxed);
                warn!(shared.log, "inbound handshake broke the protocol"; "remote" => %remote, "error" => %error);
            } else {
                debug!(shared.log, "inbound handshake ended"; "remote" => %remote, "error" => %error);
            }
            return;
        }
    };
    let Some((connection, counters, mut superseded)) = shared.register_inbound(peer) else {
        debug!(shared.log, "peer removed during its handshake"; "peer" => peer);
        return;
    };
    info!(shared.log, "inbound link up"; "peer" => peer, "remote" => %remote);

    // The frames of a message that came in several (see `wire`).
    let mut joiner = MessageJoiner::default();
    let ended = loop {
        tokio::select! {
            _ = &mut superseded => break LinkError::Superseded,
            frame = read_frame(&mut stream, &mut opener) => {
                let delivered = frame.and_then(|(payload, more)| match joiner.push(payload, more)? {
                    Some(message) => deliver(&shared, peer, &counters, &message),
                    None => Ok(()),
                });
                if let Err(error) = delivered {
                    break error;
                }
            }
        }
    };
    shared.unregister_inbound(peer, connection, &counters);
    if ended.is_auth_failure() {
        shared.inbound_auth_failures.fetch_add(1, Relaxed);
        warn!(shared.log, "inbound link failed authentication"; "peer" => peer, "error" => %ended);
    } else if ended.is_protocol_error() {
        shared.inbound_protocol_errors.fetch_add(1, Relaxed);
        warn!(shared.log, "inbound link closed on error"; "peer" => peer, "error" => %ended);
    } else {
        info!(shared.log, "inbound link down"; "peer" => peer, "reason" => %ended);
    }
}

/// The server's half of the handshake (see `wire`): TLS first when configured (the client's
/// certificate checked against the cluster CA), then who are you (a certificate must name that id),
/// prove it, here is my proof.
async fn accept_handshake(shared: &Shared, stream: TcpStream) -> Result<(u64, FrameOpener, PeerStream), LinkError> {
    stream.set_nodelay(true)?;
    let (mut stream, exporter, certificate): (PeerStream, _, Option<CertificateDer<'static>>) = match &shared.tls {
        None => (Box::new(stream), None, None),
        Some(tls) => {
            let session = tls.acceptor.accept(stream).await.map_err(tls_failure)?;
            let connection = session.get_ref().1;
            let exporter = exporter(connection)?;
            let certificate =
                connection.peer_certificates().and_then(|chain| chain.first()).map(|c| c.clone().into_owned());
            (Box::new(session), Some(exporter), certificate)
        }
    };
    let client = Hello::decode(&read_array::<HELLO_BYTES, _>(&mut stream).await?)?;
    if client.to != shared.node_id {
        return Err(LinkError::Misaddressed { from: client.from, to: client.to });
    }
    if !shared.is_peer(client.from) {
        return Err(LinkError::UnknownPeer(client.from));
    }
    if shared.tls.is_some() && !certificate.as_ref().is_some_and(|c| tls::names_node(c, client.from)) {
        return Err(LinkError::CertificateNotForNode { claimed: client.from });
    }
    let secret = secret_for(shared, exporter.as_ref())?;
    let server = Hello { from: shared.node_id, to: client.from, nonce: rand::random() };
    stream.write_all(&server.encode()).await?;
    stream.flush().await?;
    let handshake = Handshake { client, server };
    let proof = read_array::<MAC_BYTES, _>(&mut stream).await?;
    handshake.verify_client_proof(&secret, &proof)?;
    stream.write_all(&handshake.server_proof(&secret)).await?;
    stream.flush().await?;
    Ok((client.from, FrameOpener::new(&handshake.session_key(&secret)), stream))
}

/// Reads one frame and returns its checked payload, and whether more frames of its message follow.
/// The header's length is checked before the body is allocated, so a hostile length costs nothing.
async fn read_frame<S: AsyncRead + Unpin + ?Sized>(
    stream: &mut S,
    opener: &mut FrameOpener,
) -> Result<(Vec<u8>, bool), LinkError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    match stream.read_exact(&mut header).await {
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Err(LinkError::Closed),
        Err(error) => return Err(error.into()),
    }
    let header: FrameHeader = FrameOpener::header(&header)?;
    let mut body = vec![0u8; header.body_len()];
    stream.read_exact(&mut body).await?;
    let payload_len = opener.open(header, &body)?.len();
    body.truncate(payload_len);
    Ok((body, header.more))
}

/// Hands one authenticated frame to the raft actor.
///
/// Delivery uses `try_send` and counts what the mailbox refuses, so a slow raft actor costs dropped
/// messages (Raft retransmits them) rather than an unbounded mailbox. `Recipient::send(..).await`
/// would give backpressure instead, but actix 0.13 does not wake a request that found the mailbox
/// full, so a reader could hang for good. The exception is `MsgSnapshot`: a raft-rs leader pauses a
/// follower in snapshot state until the snapshot is answered, so dropping one would stall that
/// follower; snapshots are rare (one in flight per follower), so queueing them unconditionally with
/// `do_send` cannot grow the mailbox without bound.
fn deliver(shared: &Shared, peer: u64, counters: &PeerCounters, payload: &[u8]) -> Result<(), LinkError> {
    counters.received_bytes.fetch_add(payload.len() as u64, Relaxed);
    let message = RaftMessage::parse_from_bytes(payload)?;
    if message.from != peer || message.to != shared.node_id {
        return Err(LinkError::WrongEndpoints { peer, from: message.from, to: message.to });
    }
    if message.msg_type == MessageType::MsgSnapshot {
        shared.inbound.do_send(PeerMessage(message));
        counters.delivered.fetch_add(1, Relaxed);
        return Ok(());
    }
    match shared.inbound.try_send(PeerMessage(message)) {
        Ok(()) => {
            counters.delivered.fetch_add(1, Relaxed);
            Ok(())
        }
        Err(SendError::Full(_)) => {
            counters.dropped_inbound.fetch_add(1, Relaxed);
            Ok(())
        }
        Err(SendError::Closed(_)) => Err(LinkError::InboxClosed),
    }
}

// ===== outbound =====

/// Keeps a connection to `peer` and writes its queue into it, until the queue's sender is dropped
/// or the task is aborted. Messages wait in the queue while the peer is unreachable.
pub(super) async fn run_outbound(
    shared: Arc<Shared>,
    peer: u64,
    addr: SocketAddr,
    mut queue: mpsc::Receiver<RaftMessage>,
    counters: Arc<PeerCounters>,
) {
    let mut rng = StdRng::from_entropy();
    let mut failures: u32 = 0;
    loop {
        match dial(&shared, peer, addr, &mut rng).await {
            Ok((mut stream, sealer)) => {
                failures = 0;
                counters.connected.store(true, Relaxed);
                info!(shared.log, "outbound link up"; "peer" => peer, "addr" => %addr);
                let ended = pump(&shared, peer, &mut stream, sealer, &mut queue, &counters).await;
                counters.connected.store(false, Relaxed);
                if let LinkError::QueueClosed = ended {
                    return;
                }
                info!(shared.log, "outbound link down"; "peer" => peer, "addr" => %addr, "reason" => %ended);
            }
            Err(error) if error.is_auth_failure() => {
                counters.auth_failures.fetch_add(1, Relaxed);
                warn!(shared.log, "peer failed authentication"; "peer" => peer, "addr" => %addr, "error" => %error);
            }
            Err(error @ LinkError::WrongNode { .. }) => {
                warn!(shared.log, "another node answers at the peer's address"; "peer" => peer, "addr" => %addr, "error" => %error);
            }
            Err(error) => {
                debug!(shared.log, "cannot connect to peer"; "peer" => peer, "addr" => %addr, "error" => %error);
            }
        }
        sleep(reconnect_delay(failures, rng.gen())).await;
        failures = failures.saturating_add(1);
        counters.reconnects.fetch_add(1, Relaxed);
    }
}

async fn dial(
    shared: &Shared,
    peer: u64,
    addr: SocketAddr,
    rng: &mut StdRng,
) -> Result<(PeerStream, FrameSealer), LinkError> {
    let stream = match timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(connected) => connected?,
        Err(_) => return Err(LinkError::Timeout("connect")),
    };
    stream.set_nodelay(true)?;
    let nonce = rng.gen();
    match timeout(HANDSHAKE_TIMEOUT, dial_handshake(shared, peer, stream, nonce)).await {
        Ok(dialled) => dialled,
        Err(_) => Err(LinkError::Timeout("handshake")),
    }
}

/// The client's half of the handshake (see `wire`): with TLS, the session first, in which the peer's
/// certificate must name the node dialled (`tls::node_name`).
async fn dial_handshake(
    shared: &Shared,
    peer: u64,
    stream: TcpStream,
    nonce: [u8; 32],
) -> Result<(PeerStream, FrameSealer), LinkError> {
    let (mut stream, exporter): (PeerStream, _) = match &shared.tls {
        None => (Box::new(stream), None),
        Some(tls) => {
            let name = ServerName::try_from(tls::node_name(peer)).map_err(|e| LinkError::Tls(e.to_string()))?;
            let session = tls.connector.connect(name, stream).await.map_err(tls_failure)?;
            let exporter = exporter(session.get_ref().1)?;
            (Box::new(session), Some(exporter))
        }
    };
    let secret = secret_for(shared, exporter.as_ref())?;
    let client = Hello { from: shared.node_id, to: peer, nonce };
    stream.write_all(&client.encode()).await?;
    stream.flush().await?;
    let server = Hello::decode(&read_array::<HELLO_BYTES, _>(&mut stream).await?)?;
    if server.from != peer || server.to != shared.node_id {
        return Err(LinkError::WrongNode { expected: peer, found: server.from, to: server.to });
    }
    let handshake = Handshake { client, server };
    stream.write_all(&handshake.client_proof(&secret)).await?;
    stream.flush().await?;
    let proof = read_array::<MAC_BYTES, _>(&mut stream).await?;
    handshake.verify_server_proof(&secret, &proof)?;
    Ok((stream, FrameSealer::new(&handshake.session_key(&secret))))
}

/// Writes queued messages as frames until the connection or the queue ends. The server never sends
/// after the handshake, so anything readable (end of stream included) means the link is gone; watching
/// for it notices a restarted peer before the next write is lost into a dead socket.
async fn pump(
    shared: &Shared,
    peer: u64,
    stream: &mut PeerStream,
    mut sealer: FrameSealer,
    queue: &mut mpsc::Receiver<RaftMessage>,
    counters: &PeerCounters,
) -> LinkError {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut probe = [0u8; 1];
    let mut batch = Vec::new();
    loop {
        let first = tokio::select! {
            message = queue.recv() => match message {
                Some(message) => message,
                None => return LinkError::QueueClosed,
            },
            read = reader.read(&mut probe) => return match read {
                Ok(0) => LinkError::Closed,
                Ok(_) => LinkError::UnexpectedData,
                Err(error) => LinkError::Io(error),
            },
        };
        batch.clear();
        let mut framed: u64 = 0;
        let mut next = Some(first);
        while let Some(message) = next {
            // A message too large for any peer to accept would only close the connection.
            match message.write_to_bytes() {
                Ok(payload) if payload.len() <= CHUNK_BYTES => {
                    sealer.seal(&payload, &mut batch);
                    framed += 1;
                }
                Ok(payload) if payload.len() <= MAX_MESSAGE_BYTES => {
                    // What is batched goes first, then the message frame by frame, in order.
                    let mut chunks = payload.chunks(CHUNK_BYTES).peekable();
                    while let Some(chunk) = chunks.next() {
                        sealer.seal_frame(chunk, chunks.peek().is_some(), &mut batch);
                        match timeout(WRITE_TIMEOUT, write_flushed(&mut writer, &batch)).await {
                            Ok(Ok(())) => {
                                counters.sent_bytes.fetch_add(batch.len() as u64, Relaxed);
                                batch.clear();
                            }
                            Ok(Err(error)) => return LinkError::Io(error),
                            Err(_) => return LinkError::Timeout("write"),
                        }
                    }
                    counters.sent.fetch_add(framed + 1, Relaxed);
                    framed = 0;
                }
                Ok(payload) => {
                    counters.dropped_unsendable.fetch_add(1, Relaxed);
                    slog::error!(shared.log, "dropping a message over the message limit";
                        "peer" => peer, "type" => ?message.msg_type, "bytes" => payload.len(), "limit" => MAX_MESSAGE_BYTES);
                }
                Err(error) => {
                    counters.dropped_unsendable.fetch_add(1, Relaxed);
                    slog::error!(shared.log, "dropping an unencodable message"; "peer" => peer, "error" => %error);
                }
            }
            next = if batch.len() < BATCH_MAX_BYTES && framed < BATCH_MAX_MESSAGES as u64 {
                queue.try_recv().ok()
            } else {
                None
            };
        }
        if batch.is_empty() {
            continue;
        }
        match timeout(WRITE_TIMEOUT, write_flushed(&mut writer, &batch)).await {
            Ok(Ok(())) => {
                counters.sent.fetch_add(framed, Relaxed);
                counters.sent_bytes.fetch_add(batch.len() as u64, Relaxed);
            }
            Ok(Err(error)) => return LinkError::Io(error),
            Err(_) => return LinkError::Timeout("write"),
        }
    }
}

/// Writes `bytes` and flushes them: a TLS session holds written bytes until flushed (plain TCP's
/// flush does nothing).
async fn write_flushed<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}

async fn read_array<const N: usize, S: AsyncRead + Unpin + ?Sized>(stream: &mut S) -> Result<[u8; N], LinkError> {
    let mut bytes = [0u8; N];
    match stream.read_exact(&mut bytes).await {
        Ok(_) => Ok(bytes),
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Err(LinkError::Closed),
        Err(error) => Err(error.into()),
    }
}

// ===== the inbound registry =====

impl Shared {
    fn is_peer(&self, id: u64) -> bool {
        self.peers.lock().expect("peer table lock").contains_key(&id)
    }

    /// Records an authenticated inbound connection from `peer`, replacing (and so closing) an older
    /// one from the same node: a restarted peer's new connection wins over its half-dead old one.
    /// Returns the connection's number, the peer's counters and the signal that closes it; `None`
    /// if the peer is no longer configured.
    fn register_inbound(&self, peer: u64) -> Option<(u64, Arc<PeerCounters>, oneshot::Receiver<()>)> {
        // Lock order everywhere: `peers`, then `inbound_links`. Holding both here means a peer
        // removed concurrently either is not found or has its new entry removed with it.
        let peers = self.peers.lock().expect("peer table lock");
        let counters = peers.get(&peer)?.clone();
        let connection = self.next_connection.fetch_add(1, Relaxed);
        let (close, closed) = oneshot::channel();
        let replaced = self.inbound_links.lock().expect("inbound table lock").insert(peer, (connection, close));
        drop(peers);
        // Dropping the old sender wakes the old reader, which then ends.
        drop(replaced);
        counters.inbound_connected.store(true, Relaxed);
        Some((connection, counters, closed))
    }

    fn unregister_inbound(&self, peer: u64, connection: u64, counters: &PeerCounters) {
        let mut links = self.inbound_links.lock().expect("inbound table lock");
        if let Entry::Occupied(entry) = links.entry(peer) {
            if entry.get().0 == connection {
                entry.remove();
                counters.inbound_connected.store(false, Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delay_doubles_from_the_minimum_to_the_cap_with_jitter_in_the_upper_half() {
        assert_eq!(reconnect_delay(0, 0.999_999).as_millis(), 49);
        assert_eq!(reconnect_delay(0, 0.0), RECONNECT_MIN / 2);
        assert_eq!(reconnect_delay(1, 0.0), RECONNECT_MIN);
        assert_eq!(reconnect_delay(2, 0.0), RECONNECT_MIN * 2);
        for failures in [6, 7, 31, u32::MAX] {
            assert_eq!(reconnect_delay(failures, 0.0), RECONNECT_MAX / 2);
            assert!(reconnect_delay(failures, 0.999) <= RECONNECT_MAX);
        }
    }
}
