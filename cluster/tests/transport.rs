//! The peer transport on loopback: real transports, real sockets, and raw TCP clients that play by
//! the protocol in `transport::wire` (or pretend to). Every wait is bounded; a test waits for the
//! event it checks (a delivered message, a closed connection, a counter), never for a fixed time,
//! except where it checks that nothing arrives — then it first waits for the evidence that the
//! attempt was made and refused.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use leasehold_cluster::transport::wire::{
    FrameSealer, Handshake, Hello, FRAME_HEADER_BYTES, HELLO_BYTES, MAC_BYTES, MAX_FRAME_BYTES,
};
use leasehold_cluster::transport::{
    self, GetStats, PeerMessage, SendMessages, SetPeer, Shutdown, Transport, TransportConfig, TransportStats,
};
use protobuf::Message as _;
use raft::eraftpb::{Message as RaftMessage, MessageType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Bound on waiting for something that should happen.
const WAIT: Duration = Duration::from_secs(10);
/// How long to listen for something that must not happen, after its cause was seen refused.
const SILENCE: Duration = Duration::from_millis(300);

const SECRET: &[u8] = b"correct horse battery staple";
const OTHER_SECRET: &[u8] = b"incorrect donkey battery staple";

// ===== helpers =====

/// The raft actor's stand-in: forwards what the transport delivers into a channel.
struct Inbox(mpsc::UnboundedSender<RaftMessage>);

impl Actor for Inbox {
    type Context = Context<Self>;
}

impl Handler<PeerMessage> for Inbox {
    type Result = ();

    fn handle(&mut self, PeerMessage(message): PeerMessage, _ctx: &mut Self::Context) {
        let _ = self.0.send(message);
    }
}

struct Node {
    id: u64,
    addr: SocketAddr,
    transport: Addr<Transport>,
    inbox: mpsc::UnboundedReceiver<RaftMessage>,
}

fn config(id: u64, listen: SocketAddr, peers: &[(u64, SocketAddr)], secret: &[u8]) -> TransportConfig {
    TransportConfig {
        node_id: id,
        listen,
        peers: peers.iter().copied().collect::<BTreeMap<_, _>>(),
        secret: Some(Arc::from(secret)),
        tls: None,
        queue_capacity: 4096,
    }
}

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

async fn start_node(config: TransportConfig) -> Node {
    let (sender, inbox) = mpsc::unbounded_channel();
    let recipient = Inbox(sender).start().recipient();
    let id = config.node_id;
    let transport = transport::start(config, recipient, logger()).expect("transport starts");
    let addr = stats(&transport).await.listen;
    Node { id, addr, transport, inbox }
}

async fn start_on_loopback(id: u64, peers: &[(u64, SocketAddr)], secret: &[u8]) -> Node {
    start_node(config(id, "127.0.0.1:0".parse().unwrap(), peers, secret)).await
}

async fn stats(transport: &Addr<Transport>) -> TransportStats {
    transport.send(GetStats).await.expect("transport answers GetStats")
}

/// Polls the counters until `ready` holds; panics with `what` after [`WAIT`].
async fn wait_for_stats(
    transport: &Addr<Transport>,
    what: &str,
    ready: impl Fn(&TransportStats) -> bool,
) -> TransportStats {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let current = stats(transport).await;
        if ready(&current) {
            return current;
        }
        assert!(tokio::time::Instant::now() < deadline, "waited {WAIT:?} for {what}; stats now {current:#?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A heartbeat whose `commit` field tags it, so a test can tell its messages apart.
fn tagged(from: u64, to: u64, tag: u64) -> RaftMessage {
    RaftMessage { msg_type: MessageType::MsgHeartbeat, from, to, term: 1, commit: tag, ..Default::default() }
}

async fn send(from: &Node, to: u64, tag: u64) {
    from.transport.send(SendMessages(vec![tagged(from.id, to, tag)])).await.expect("transport accepts messages");
}

/// Receives until the message tagged `tag` arrives (earlier retries may arrive first).
async fn expect_tag(node: &mut Node, from: u64, tag: u64) -> RaftMessage {
    let wanted = async {
        loop {
            let message = node.inbox.recv().await.expect("inbox open");
            if message.commit == tag {
                return message;
            }
        }
    };
    let message = timeout(WAIT, wanted)
        .await
        .unwrap_or_else(|_| panic!("node {} did not receive tag {tag} from node {from} within {WAIT:?}", node.id));
    assert_eq!((message.from, message.to), (from, node.id), "delivered with the sender's and receiver's ids");
    message
}

async fn expect_nothing(node: &mut Node) {
    if let Ok(Some(message)) = timeout(SILENCE, node.inbox.recv()).await {
        panic!("node {} must receive nothing, got {message:?}", node.id);
    }
}

/// A port that refuses connections: bound, so no one else gets it while the test runs, but not
/// listening.
struct DeadPort {
    _socket: tokio::net::TcpSocket,
    addr: SocketAddr,
}

fn dead_port() -> DeadPort {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    DeadPort { _socket: socket, addr }
}

/// Reads until the peer closes (end of stream or reset) and returns what it sent before.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match timeout(WAIT, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return received,
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => panic!("the server kept the connection open for {WAIT:?}"),
        }
    }
}

/// Completes the client side of the handshake as node `me`, knowing `secret`.
async fn handshake_as(server: SocketAddr, secret: &[u8], me: u64, them: u64) -> (TcpStream, FrameSealer) {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let client = Hello { from: me, to: them, nonce: rand::random() };
    stream.write_all(&client.encode()).await.unwrap();
    let mut hello = [0u8; HELLO_BYTES];
    stream.read_exact(&mut hello).await.expect("server hello");
    let handshake = Handshake { client, server: Hello::decode(&hello).expect("well-formed server hello") };
    stream.write_all(&handshake.client_proof(secret)).await.unwrap();
    let mut proof = [0u8; MAC_BYTES];
    stream.read_exact(&mut proof).await.expect("server proof");
    handshake.verify_server_proof(secret, &proof).expect("the server proves the secret");
    (stream, FrameSealer::new(&handshake.session_key(secret)))
}

fn frame(sealer: &mut FrameSealer, message: &RaftMessage) -> Vec<u8> {
    let mut bytes = Vec::new();
    sealer.seal(&message.write_to_bytes().unwrap(), &mut bytes);
    bytes
}

/// Two nodes that know each other.
async fn pair(secret_1: &[u8], secret_2: &[u8]) -> (Node, Node) {
    let one = start_on_loopback(1, &[], secret_1).await;
    let two = start_on_loopback(2, &[(1, one.addr)], secret_2).await;
    one.transport.send(SetPeer { id: 2, addr: Some(two.addr) }).await.unwrap();
    (one, two)
}

// ===== tests =====

#[actix_rt::test]
async fn two_nodes_exchange_messages_and_a_third_joins_through_set_peer() {
    let (mut one, mut two) = pair(SECRET, SECRET).await;
    send(&one, 2, 12).await;
    expect_tag(&mut two, 1, 12).await;
    send(&two, 1, 21).await;
    expect_tag(&mut one, 2, 21).await;

    // Node 3 knows the others, but they do not know it yet: its connections are refused and its
    // message waits in its queue.
    let mut three = start_on_loopback(3, &[(1, one.addr), (2, two.addr)], SECRET).await;
    send(&three, 1, 31).await;
    wait_for_stats(&one.transport, "node 1 to refuse unknown node 3", |s| s.inbound_auth_failures >= 1).await;
    assert!(timeout(SILENCE, one.inbox.recv()).await.is_err(), "nothing from an unlisted node");

    for node in [&one, &two] {
        node.transport.send(SetPeer { id: 3, addr: Some(three.addr) }).await.unwrap();
    }
    expect_tag(&mut one, 3, 31).await;
    send(&three, 2, 32).await;
    expect_tag(&mut two, 3, 32).await;
    send(&one, 3, 13).await;
    expect_tag(&mut three, 1, 13).await;
    send(&two, 3, 23).await;
    expect_tag(&mut three, 2, 23).await;

    let stats_one = stats(&one.transport).await;
    assert_eq!(stats_one.peers.keys().copied().collect::<Vec<_>>(), vec![2, 3]);
    assert!(stats_one.peers[&3].connected && stats_one.peers[&3].sent >= 1);
    assert_eq!(stats_one.peers[&3].delivered, 1);

    // Removing node 3 from node 1 closes both directions and routes nothing more to it.
    one.transport.send(SetPeer { id: 3, addr: None }).await.unwrap();
    send(&one, 3, 99).await;
    let after = stats(&one.transport).await;
    assert!(!after.peers.contains_key(&3));
    assert_eq!(after.unroutable, 1);
}

#[actix_rt::test]
async fn restarted_peer_receives_again_after_reconnect() {
    let (mut one, mut two) = pair(SECRET, SECRET).await;
    send(&one, 2, 1).await;
    expect_tag(&mut two, 1, 1).await;

    let two_addr = two.addr;
    two.transport.send(Shutdown).await.unwrap();
    let mut two = start_node(config(2, two_addr, &[(1, one.addr)], SECRET)).await;
    assert_eq!(two.addr, two_addr, "restarted on the same port");

    // A message written into the old, dead connection is lost (Raft would retransmit it); resend
    // on a timer, as Raft does, until the new process has one.
    let mut retransmit = tokio::time::interval(Duration::from_millis(100));
    let received = timeout(WAIT, async {
        loop {
            tokio::select! {
                _ = retransmit.tick() => send(&one, 2, 2).await,
                message = two.inbox.recv() => return message.expect("inbox open"),
            }
        }
    })
    .await
    .expect("the restarted node gets messages within the wait");
    assert_eq!((received.from, received.commit), (1, 2));

    send(&two, 1, 3).await;
    expect_tag(&mut one, 2, 3).await;
    let peer = &stats(&one.transport).await.peers[&2];
    assert!(peer.reconnects >= 1, "node 1 reconnected: {peer:?}");
    assert!(peer.connected);
}

#[actix_rt::test]
async fn wrong_secret_delivers_nothing_and_counts_auth_failures() {
    let (mut one, mut two) = pair(SECRET, OTHER_SECRET).await;
    send(&one, 2, 1).await;
    send(&two, 1, 2).await;
    wait_for_stats(&two.transport, "node 2 to refuse node 1's proof", |s| s.inbound_auth_failures >= 1).await;
    wait_for_stats(&one.transport, "node 1 to refuse node 2's proof", |s| s.inbound_auth_failures >= 1).await;
    expect_nothing(&mut two).await;
    expect_nothing(&mut one).await;

    let peer = &stats(&one.transport).await.peers[&2];
    assert!(!peer.connected, "never authenticated: {peer:?}");
    assert_eq!((peer.sent, peer.queued), (0, 1), "the message waits in the queue: {peer:?}");
}

#[actix_rt::test]
async fn client_without_the_secret_is_closed_and_delivers_nothing() {
    let dead = dead_port();
    let mut two = start_on_loopback(2, &[(9, dead.addr)], SECRET).await;
    let message = tagged(9, 2, 1);

    // Frames without any handshake: not even the magic matches.
    let mut stream = TcpStream::connect(two.addr).await.unwrap();
    let key = Handshake {
        client: Hello { from: 9, to: 2, nonce: [1; 32] },
        server: Hello { from: 2, to: 9, nonce: [2; 32] },
    }
    .session_key(OTHER_SECRET);
    let mut sealer = FrameSealer::new(&key);
    let mut frames = frame(&mut sealer, &message);
    frames.extend(frame(&mut sealer, &message));
    stream.write_all(&frames).await.unwrap();
    assert!(read_until_closed(&mut stream).await.is_empty(), "no server hello for bad magic");
    wait_for_stats(&two.transport, "a protocol error", |s| s.inbound_protocol_errors == 1).await;

    // A well-formed handshake and frames, made with the wrong secret.
    let mut stream = TcpStream::connect(two.addr).await.unwrap();
    let client = Hello { from: 9, to: 2, nonce: rand::random() };
    stream.write_all(&client.encode()).await.unwrap();
    let mut hello = [0u8; HELLO_BYTES];
    stream.read_exact(&mut hello).await.unwrap();
    let handshake = Handshake { client, server: Hello::decode(&hello).unwrap() };
    let mut bytes = handshake.client_proof(OTHER_SECRET).to_vec();
    let mut sealer = FrameSealer::new(&handshake.session_key(OTHER_SECRET));
    bytes.extend(frame(&mut sealer, &message));
    stream.write_all(&bytes).await.unwrap();
    assert!(read_until_closed(&mut stream).await.is_empty(), "the server never proves itself to a stranger");
    let after = wait_for_stats(&two.transport, "an auth failure", |s| s.inbound_auth_failures == 1).await;
    assert_eq!(after.peers[&9].delivered, 0);
    expect_nothing(&mut two).await;
}

#[actix_rt::test]
async fn unlisted_node_id_is_refused_even_with_the_secret() {
    let dead = dead_port();
    let mut two = start_on_loopback(2, &[(9, dead.addr)], SECRET).await;
    let mut stream = TcpStream::connect(two.addr).await.unwrap();
    stream.write_all(&Hello { from: 77, to: 2, nonce: rand::random() }.encode()).await.unwrap();
    assert!(read_until_closed(&mut stream).await.is_empty(), "closed before the server hello");
    wait_for_stats(&two.transport, "an auth failure", |s| s.inbound_auth_failures == 1).await;
    expect_nothing(&mut two).await;
}

/// Bytes recorded from one direction of one connection.
type Recording = Arc<Mutex<Vec<u8>>>;

/// A TCP proxy that records what flows through each connection it forwards.
#[derive(Clone, Default)]
struct Capture {
    /// Per connection: (client → server bytes, server → client bytes).
    connections: Arc<Mutex<Vec<(Recording, Recording)>>>,
}

async fn start_proxy(upstream: SocketAddr) -> (SocketAddr, Capture) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let capture = Capture::default();
    let recorded = capture.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(upstream).await else { continue };
            let up = Arc::new(Mutex::new(Vec::new()));
            let down = Arc::new(Mutex::new(Vec::new()));
            recorded.connections.lock().unwrap().push((up.clone(), down.clone()));
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(copy_recording(client_read, server_write, up));
            tokio::spawn(copy_recording(server_read, client_write, down));
        }
    });
    (addr, capture)
}

async fn copy_recording(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    record: Recording,
) {
    let mut buffer = [0u8; 4096];
    while let Ok(n @ 1..) = from.read(&mut buffer).await {
        record.lock().unwrap().extend_from_slice(&buffer[..n]);
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

#[actix_rt::test]
async fn replayed_capture_of_a_legitimate_connection_is_refused_both_ways() {
    let one = start_on_loopback(1, &[], SECRET).await;
    let mut two = start_on_loopback(2, &[(1, one.addr)], SECRET).await;
    let (proxy, capture) = start_proxy(two.addr).await;
    one.transport.send(SetPeer { id: 2, addr: Some(proxy) }).await.unwrap();
    send(&one, 2, 1).await;
    expect_tag(&mut two, 1, 1).await;

    let (up, down) = capture.connections.lock().unwrap()[0].clone();
    let up = up.lock().unwrap().clone();
    let down = down.lock().unwrap().clone();
    assert!(up.len() > HELLO_BYTES + MAC_BYTES + FRAME_HEADER_BYTES, "captured hello, proof and a frame");
    assert_eq!(down.len(), HELLO_BYTES + MAC_BYTES, "captured the server's hello and proof");

    // Node 1's recorded bytes, replayed to node 2: the proof was for another server nonce.
    let before = stats(&two.transport).await.inbound_auth_failures;
    let mut replay = TcpStream::connect(two.addr).await.unwrap();
    replay.write_all(&up).await.unwrap();
    let answered = read_until_closed(&mut replay).await;
    assert_eq!(answered.len(), HELLO_BYTES, "only a fresh server hello, no proof");
    assert_ne!(&answered[HELLO_BYTES - 32..], &down[HELLO_BYTES - 32..HELLO_BYTES], "a fresh nonce");
    wait_for_stats(&two.transport, "the replay refused", |s| s.inbound_auth_failures == before + 1).await;
    expect_nothing(&mut two).await;

    // Node 2's recorded bytes, played to node 1 by an impostor at node 2's address.
    let impostor = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let impostor_addr = impostor.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = impostor.accept().await {
            let mut hello = [0u8; HELLO_BYTES];
            if stream.read_exact(&mut hello).await.is_ok() {
                let _ = stream.write_all(&down).await;
                let _ = read_until_closed(&mut stream).await;
            }
        }
    });
    one.transport.send(SetPeer { id: 2, addr: Some(impostor_addr) }).await.unwrap();
    send(&one, 2, 2).await;
    let after =
        wait_for_stats(&one.transport, "node 1 to refuse the impostor", |s| s.peers[&2].auth_failures >= 1).await;
    assert_eq!(after.peers[&2].queued, 1, "nothing sent to the impostor");
}

#[actix_rt::test]
async fn frame_with_one_flipped_bit_is_refused() {
    let dead = dead_port();
    let mut two = start_on_loopback(2, &[(9, dead.addr)], SECRET).await;
    let body_start = FRAME_HEADER_BYTES;
    // (what, byte offset in the second frame): a sequence byte, the first and last payload bytes,
    // a MAC byte. The length field is left alone: a changed length is a different framing, covered
    // by the MAC or by the size limit.
    type Offset = fn(usize) -> usize;
    let positions: [(&str, Offset); 4] = [
        ("sequence", |_| 4 + 7),
        ("first payload byte", |_| FRAME_HEADER_BYTES),
        ("last payload byte", |len| len - MAC_BYTES - 1),
        ("MAC", |len| len - 1),
    ];
    for (round, (what, offset)) in positions.into_iter().enumerate() {
        let (mut stream, mut sealer) = handshake_as(two.addr, SECRET, 9, 2).await;
        stream.write_all(&frame(&mut sealer, &tagged(9, 2, 100))).await.unwrap();
        expect_tag(&mut two, 9, 100).await;

        let mut flipped = frame(&mut sealer, &tagged(9, 2, 200));
        assert!(flipped.len() > body_start + MAC_BYTES);
        let at = offset(flipped.len());
        flipped[at] ^= 0x10;
        let mut bytes = flipped;
        bytes.extend(frame(&mut sealer, &tagged(9, 2, 300)));
        stream.write_all(&bytes).await.unwrap();
        assert!(read_until_closed(&mut stream).await.is_empty(), "{what}: closed");
        let expected = round as u64 + 1;
        wait_for_stats(&two.transport, what, |s| s.inbound_auth_failures == expected).await;
        expect_nothing(&mut two).await;
    }
}

#[actix_rt::test]
async fn frame_replayed_within_its_connection_is_refused() {
    let dead = dead_port();
    let mut two = start_on_loopback(2, &[(9, dead.addr)], SECRET).await;
    let (mut stream, mut sealer) = handshake_as(two.addr, SECRET, 9, 2).await;
    let first = frame(&mut sealer, &tagged(9, 2, 1));
    stream.write_all(&first).await.unwrap();
    expect_tag(&mut two, 9, 1).await;
    stream.write_all(&first).await.unwrap();
    assert!(read_until_closed(&mut stream).await.is_empty());
    wait_for_stats(&two.transport, "sequence refused", |s| s.inbound_auth_failures == 1).await;
    expect_nothing(&mut two).await;
}

#[actix_rt::test]
async fn oversized_frame_length_closes_the_connection_before_the_body() {
    let dead = dead_port();
    let two = start_on_loopback(2, &[(9, dead.addr)], SECRET).await;
    for (round, len) in [MAX_FRAME_BYTES as u32 + 1, u32::MAX].into_iter().enumerate() {
        let (mut stream, _sealer) = handshake_as(two.addr, SECRET, 9, 2).await;
        let mut header = len.to_be_bytes().to_vec();
        header.extend_from_slice(&0u64.to_be_bytes());
        // Only the header is sent: a server that tried to read (or allocate) the body would wait.
        stream.write_all(&header).await.unwrap();
        assert!(read_until_closed(&mut stream).await.is_empty(), "length {len}: closed");
        let expected = round as u64 + 1;
        wait_for_stats(&two.transport, "a protocol error", |s| s.inbound_protocol_errors == expected).await;
    }
}

#[actix_rt::test]
async fn newest_connection_from_the_same_node_wins() {
    let dead = dead_port();
    let mut two = start_on_loopback(2, &[(9, dead.addr)], SECRET).await;
    let (mut older, mut older_sealer) = handshake_as(two.addr, SECRET, 9, 2).await;
    older.write_all(&frame(&mut older_sealer, &tagged(9, 2, 1))).await.unwrap();
    expect_tag(&mut two, 9, 1).await;

    let (mut newer, mut newer_sealer) = handshake_as(two.addr, SECRET, 9, 2).await;
    assert!(read_until_closed(&mut older).await.is_empty(), "the older connection is closed");
    newer.write_all(&frame(&mut newer_sealer, &tagged(9, 2, 2))).await.unwrap();
    expect_tag(&mut two, 9, 2).await;
    let peer = &stats(&two.transport).await.peers[&9];
    assert!(peer.inbound_connected);
    assert_eq!(peer.delivered, 2);
}

#[actix_rt::test]
async fn sends_to_a_down_peer_never_block_and_overflow_is_counted() {
    let dead = dead_port();
    let mut config = config(1, "127.0.0.1:0".parse().unwrap(), &[(2, dead.addr)], SECRET);
    config.queue_capacity = 8;
    let one = start_node(config).await;

    let batch: Vec<_> = (0..100).map(|tag| tagged(1, 2, tag)).collect();
    timeout(Duration::from_secs(1), one.transport.send(SendMessages(batch)))
        .await
        .expect("a batch to a down peer returns at once")
        .unwrap();
    for tag in 100..150 {
        timeout(Duration::from_secs(1), send(&one, 2, tag)).await.expect("a send to a down peer returns at once");
    }
    let peer = &stats(&one.transport).await.peers[&2];
    // The writer takes nothing from the queue until it has a link, so the count is exact.
    assert_eq!((peer.queued, peer.dropped_full, peer.sent), (8, 142, 0), "{peer:?}");
    assert!(!peer.connected);
}

#[actix_rt::test]
async fn start_refuses_a_bad_config_or_a_busy_address() {
    let recipient = || Inbox(mpsc::unbounded_channel().0).start().recipient();
    let refused = |config: TransportConfig| match transport::start(config, recipient(), logger()) {
        Ok(_) => panic!("start must refuse this config"),
        Err(error) => error.kind(),
    };
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();

    let short = config(1, loopback, &[], b"fifteen bytes!!");
    assert_eq!(refused(short), std::io::ErrorKind::InvalidInput, "a short secret");

    let to_self = config(1, loopback, &[(1, loopback)], SECRET);
    assert_eq!(refused(to_self), std::io::ErrorKind::InvalidInput, "this node as its own peer");

    let one = start_on_loopback(1, &[], SECRET).await;
    let busy = config(2, one.addr, &[], SECRET);
    assert_eq!(refused(busy), std::io::ErrorKind::AddrInUse, "an address another transport listens on");
}

/// A message longer than one frame (a snapshot of a table of millions of leases) goes as several
/// frames and arrives whole; what follows it on the link arrives after it (issue 10: snapshots have
/// no size cap; before, a message over MAX_FRAME_BYTES was dropped and catch-up never finished).
#[actix_rt::test]
async fn a_snapshot_larger_than_a_frame_arrives_whole() {
    let (one, mut two) = pair(SECRET, SECRET).await;
    let data: Vec<u8> =
        (0..leasehold_cluster::transport::MAX_FRAME_BYTES + 3_000_000).map(|i| (i % 251) as u8).collect();
    let mut snapshot = raft::eraftpb::Snapshot::default();
    snapshot.set_data(data.clone().into());
    snapshot.mut_metadata().index = 4242;
    let message = RaftMessage {
        msg_type: MessageType::MsgSnapshot,
        from: 1,
        to: 2,
        term: 1,
        snapshot: Some(snapshot).into(),
        ..Default::default()
    };
    one.transport.send(SendMessages(vec![message, tagged(1, 2, 77)])).await.expect("transport accepts messages");
    let received = timeout(Duration::from_secs(120), two.inbox.recv()).await.expect("the snapshot within 120 s");
    let received = received.expect("inbox open");
    assert_eq!(received.msg_type, MessageType::MsgSnapshot);
    assert_eq!(received.get_snapshot().get_metadata().index, 4242);
    assert!(received.get_snapshot().get_data() == data.as_slice(), "the snapshot's bytes, all of them, in order");
    expect_tag(&mut two, 1, 77).await;
}
