//! The peer transport with mutual TLS, on loopback: certificates made at run time by the same code
//! as `leasehold cluster make-certs`, real transports, and a recording TCP proxy between two nodes
//! to see what crosses the wire. Every wait is bounded and waits for the event it checks (a delivered
//! message, a counter); a check that nothing arrives first waits for the refusal it follows from.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use leasehold_cluster::transport::tls::{node_name, CertificateAuthority, PeerTls, PemPair};
use leasehold_cluster::transport::{
    self, GetStats, PeerMessage, SendMessages, SetPeer, Transport, TransportConfig, TransportStats,
};
use leasehold_cluster::ClusterError;
use raft::eraftpb::{Message as RaftMessage, MessageType};
use rustls_pki_types::UnixTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);
const SILENCE: Duration = Duration::from_millis(300);
const SECRET: &[u8] = b"correct horse battery staple";
const DAY: Duration = Duration::from_secs(86_400);
/// Bytes that stand for lease data (a client's MAC and host name) in a message's payload.
const MARKER: &[u8] = b"\x52\x54\x00\xab\xcd\xef lease-data-marker-host";

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

/// A CA and the PEM files of its node certificates, in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateAuthority,
}

impl Pki {
    fn new() -> Pki {
        let now = SystemTime::now();
        let ca = CertificateAuthority::new(now - DAY, now + 30 * DAY).expect("a CA");
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join("ca.pem"), ca.pem().cert_pem).expect("write ca.pem");
        Pki { dir, ca }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Writes `name.pem` and `name.key`; returns their paths.
    fn write(&self, name: &str, pair: &PemPair) -> (PathBuf, PathBuf) {
        let (cert, key) = (self.dir.path().join(format!("{name}.pem")), self.dir.path().join(format!("{name}.key")));
        std::fs::write(&cert, &pair.cert_pem).expect("write a certificate");
        std::fs::write(&key, &pair.key_pem).expect("write a key");
        (cert, key)
    }

    fn node_files(&self, id: u64, not_before: SystemTime, not_after: SystemTime) -> (PathBuf, PathBuf) {
        let pair = self.ca.issue_node(id, &[], not_before, not_after).expect("a node certificate");
        let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_secs();
        self.write(&format!("node-{id}-{}-{}", secs(not_before), secs(not_after)), &pair)
    }

    /// Node `id`'s TLS settings, its certificate valid from yesterday for 30 days.
    fn node(&self, id: u64) -> PeerTls {
        let now = SystemTime::now();
        let (cert, key) = self.node_files(id, now - DAY, now + 30 * DAY);
        PeerTls::load(&self.ca_file(), &cert, &key, id, UnixTime::now()).expect("node TLS loads")
    }
}

fn config(id: u64, peers: &[(u64, SocketAddr)], secret: Option<&[u8]>, tls: Option<PeerTls>) -> TransportConfig {
    TransportConfig {
        node_id: id,
        listen: "127.0.0.1:0".parse().unwrap(),
        peers: peers.iter().copied().collect::<BTreeMap<_, _>>(),
        secret: secret.map(Arc::from),
        tls,
        queue_capacity: 4096,
    }
}

async fn start_node(config: TransportConfig) -> Node {
    let (sender, inbox) = mpsc::unbounded_channel();
    let recipient = Inbox(sender).start().recipient();
    let id = config.node_id;
    let transport =
        transport::start(config, recipient, slog::Logger::root(slog::Discard, slog::o!())).expect("transport starts");
    let addr = stats(&transport).await.listen;
    Node { id, addr, transport, inbox }
}

async fn stats(transport: &Addr<Transport>) -> TransportStats {
    transport.send(GetStats).await.expect("transport answers GetStats")
}

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

/// A snapshot message whose data carries `MARKER`, tagged by its index.
fn marked(from: u64, to: u64, tag: u64) -> RaftMessage {
    let mut snapshot = raft::eraftpb::Snapshot::default();
    snapshot.set_data(MARKER.to_vec().into());
    snapshot.mut_metadata().index = tag;
    RaftMessage {
        msg_type: MessageType::MsgSnapshot,
        from,
        to,
        term: 1,
        snapshot: Some(snapshot).into(),
        ..Default::default()
    }
}

async fn expect_marked(node: &mut Node, from: u64, tag: u64) {
    let wanted = async {
        loop {
            let message = node.inbox.recv().await.expect("inbox open");
            if message.get_snapshot().get_metadata().index == tag {
                return message;
            }
        }
    };
    let message = timeout(WAIT, wanted)
        .await
        .unwrap_or_else(|_| panic!("node {} did not receive tag {tag} from node {from} within {WAIT:?}", node.id));
    assert_eq!((message.from, message.to), (from, node.id));
    assert_eq!(message.get_snapshot().get_data(), MARKER, "the payload arrives as sent");
}

async fn expect_nothing(node: &mut Node) {
    if let Ok(Some(message)) = timeout(SILENCE, node.inbox.recv()).await {
        panic!("node {} must receive nothing, got {message:?}", node.id);
    }
}

/// A TCP proxy to `upstream` that records every byte flowing client -> server.
async fn recording_proxy(upstream: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let record = recorded.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(upstream).await else { continue };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            let record = record.clone();
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                while let Ok(n @ 1..) = client_read.read(&mut buffer).await {
                    record.lock().unwrap().extend_from_slice(&buffer[..n]);
                    if server_write.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
            });
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                while let Ok(n @ 1..) = server_read.read(&mut buffer).await {
                    if client_write.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, recorded)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// Node 1 sends a marked message to node 2 through a recording proxy; returns what crossed the wire.
async fn exchange_through_proxy(secret: Option<&[u8]>, tls: Option<(PeerTls, PeerTls)>) -> Vec<u8> {
    let (tls_1, tls_2) = match tls {
        Some((one, two)) => (Some(one), Some(two)),
        None => (None, None),
    };
    let one = start_node(config(1, &[], secret, tls_1)).await;
    let mut two = start_node(config(2, &[(1, one.addr)], secret, tls_2)).await;
    let (proxy, recorded) = recording_proxy(two.addr).await;
    one.transport.send(SetPeer { id: 2, addr: Some(proxy) }).await.unwrap();
    one.transport.send(SendMessages(vec![marked(1, 2, 7)])).await.unwrap();
    expect_marked(&mut two, 1, 7).await;
    let bytes = recorded.lock().unwrap().clone();
    bytes
}

#[actix_rt::test]
async fn tls_links_deliver_and_the_wire_shows_no_payload_while_plain_links_do() {
    let pki = Pki::new();
    let plain = exchange_through_proxy(Some(SECRET), None).await;
    assert!(contains(&plain, MARKER), "the check can fail: without TLS the payload crosses in the clear");

    let over_tls = exchange_through_proxy(None, Some((pki.node(1), pki.node(2)))).await;
    assert!(over_tls.len() > MARKER.len(), "the TLS connection carried the message");
    assert!(!contains(&over_tls, MARKER), "with TLS the payload must not cross in the clear");
    assert!(!contains(&over_tls, b"LHPEER01"), "with TLS even the peer protocol's hello is encrypted");

    let both = exchange_through_proxy(Some(SECRET), Some((pki.node(1), pki.node(2)))).await;
    assert!(!contains(&both, MARKER), "TLS with the shared secret: encrypted too");
}

#[actix_rt::test]
async fn a_snapshot_larger_than_a_frame_arrives_whole_over_tls() {
    let pki = Pki::new();
    let one = start_node(config(1, &[], None, Some(pki.node(1)))).await;
    let mut two = start_node(config(2, &[(1, one.addr)], None, Some(pki.node(2)))).await;
    one.transport.send(SetPeer { id: 2, addr: Some(two.addr) }).await.unwrap();
    let data: Vec<u8> = (0..transport::MAX_FRAME_BYTES + 3_000_000).map(|i| (i % 251) as u8).collect();
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
    one.transport.send(SendMessages(vec![message, marked(1, 2, 77)])).await.unwrap();
    let received = timeout(Duration::from_secs(180), two.inbox.recv()).await.expect("the snapshot within 180 s");
    let received = received.expect("inbox open");
    assert_eq!(received.get_snapshot().get_metadata().index, 4242);
    assert!(received.get_snapshot().get_data() == data.as_slice(), "the snapshot's bytes, all of them, in order");
    expect_marked(&mut two, 1, 77).await;
    assert!(stats(&one.transport).await.tls);
}

#[actix_rt::test]
async fn a_node_with_a_certificate_from_another_ca_is_refused_both_ways() {
    let (ours, theirs) = (Pki::new(), Pki::new());
    let mut one = start_node(config(1, &[], None, Some(ours.node(1)))).await;
    let mut stranger = start_node(config(2, &[(1, one.addr)], None, Some(theirs.node(2)))).await;
    one.transport.send(SetPeer { id: 2, addr: Some(stranger.addr) }).await.unwrap();
    stranger.transport.send(SendMessages(vec![marked(2, 1, 1)])).await.unwrap();
    one.transport.send(SendMessages(vec![marked(1, 2, 2)])).await.unwrap();
    wait_for_stats(&one.transport, "node 1 to refuse the stranger's connection", |s| s.inbound_auth_failures >= 1)
        .await;
    let refused = wait_for_stats(&one.transport, "node 1 to refuse the stranger's certificate", |s| {
        s.peers[&2].auth_failures >= 1
    })
    .await;
    assert!(!refused.peers[&2].connected && !refused.peers[&2].inbound_connected);
    wait_for_stats(&stranger.transport, "the stranger refused too", |s| s.inbound_auth_failures >= 1).await;
    expect_nothing(&mut one).await;
    expect_nothing(&mut stranger).await;
}

#[actix_rt::test]
async fn a_certificate_naming_another_node_id_is_refused() {
    let pki = Pki::new();
    let mut one = start_node(config(1, &[], None, Some(pki.node(1)))).await;
    // A real node's certificate (node 3's), used by a process that claims to be node 2.
    let mut impostor = start_node(config(2, &[(1, one.addr)], None, Some(pki.node(3)))).await;
    impostor.transport.send(SendMessages(vec![marked(2, 1, 1)])).await.unwrap();
    wait_for_stats(&one.transport, "node 1 to refuse a certificate for node 3 claiming node 2", |s| {
        s.inbound_auth_failures >= 1
    })
    .await;
    // And node 1 dialling "node 2" finds a server whose certificate names node 3.
    one.transport.send(SetPeer { id: 2, addr: Some(impostor.addr) }).await.unwrap();
    one.transport.send(SendMessages(vec![marked(1, 2, 2)])).await.unwrap();
    wait_for_stats(&one.transport, "node 1 to refuse the server certificate", |s| s.peers[&2].auth_failures >= 1).await;
    expect_nothing(&mut one).await;
    expect_nothing(&mut impostor).await;
}

#[actix_rt::test]
async fn plain_and_tls_nodes_cannot_talk() {
    let pki = Pki::new();
    let mut tls_node = start_node(config(1, &[], Some(SECRET), Some(pki.node(1)))).await;
    let mut plain = start_node(config(2, &[(1, tls_node.addr)], Some(SECRET), None)).await;
    tls_node.transport.send(SetPeer { id: 2, addr: Some(plain.addr) }).await.unwrap();
    plain.transport.send(SendMessages(vec![marked(2, 1, 1)])).await.unwrap();
    tls_node.transport.send(SendMessages(vec![marked(1, 2, 2)])).await.unwrap();
    // The plain node's hello is not a TLS ClientHello; the TLS node's ClientHello is not a hello.
    wait_for_stats(&tls_node.transport, "the TLS node to refuse plain TCP", |s| s.inbound_auth_failures >= 1).await;
    wait_for_stats(&plain.transport, "the plain node to refuse a TLS ClientHello", |s| s.inbound_protocol_errors >= 1)
        .await;
    expect_nothing(&mut tls_node).await;
    expect_nothing(&mut plain).await;
}

#[actix_rt::test]
async fn with_tls_and_a_secret_both_must_match() {
    let pki = Pki::new();
    let mut one = start_node(config(1, &[], Some(SECRET), Some(pki.node(1)))).await;
    let two = start_node(config(2, &[(1, one.addr)], Some(b"another secret of enough bytes"), Some(pki.node(2)))).await;
    two.transport.send(SendMessages(vec![marked(2, 1, 1)])).await.unwrap();
    wait_for_stats(&one.transport, "node 1 to refuse the wrong secret inside TLS", |s| s.inbound_auth_failures >= 1)
        .await;
    expect_nothing(&mut one).await;
}

/// The error of loading these files as node `id`, as text (panics if they load).
fn load_error(ca: &Path, cert: &Path, key: &Path, id: u64) -> (String, String) {
    match PeerTls::load(ca, cert, key, id, UnixTime::now()) {
        Ok(_) => panic!("{} must not load as node {id}", cert.display()),
        Err(ClusterError::Tls { path, problem }) => (path, problem),
        Err(other) => panic!("expected a TLS error, got {other}"),
    }
}

#[test]
fn every_certificate_problem_is_named_with_its_file_at_load() {
    let pki = Pki::new();
    let now = SystemTime::now();
    let ca = pki.ca_file();
    let (cert, key) = pki.node_files(1, now - DAY, now + 30 * DAY);
    PeerTls::load(&ca, &cert, &key, 1, UnixTime::now()).expect("the good files load");
    let show = |p: &Path| p.display().to_string();

    let missing = pki.dir.path().join("missing.pem");
    let (path, problem) = load_error(&missing, &cert, &key, 1);
    assert_eq!(path, show(&missing));
    assert!(problem.contains("cannot read"), "{problem}");

    let garbage = pki.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not PEM\n").unwrap();
    let (path, problem) = load_error(&ca, &garbage, &key, 1);
    assert_eq!(path, show(&garbage));
    assert!(problem.contains("no PEM certificate"), "{problem}");
    let (path, problem) = load_error(&ca, &cert, &garbage, 1);
    assert_eq!(path, show(&garbage));
    assert!(problem.contains("no usable PEM private key"), "{problem}");

    let (old_cert, old_key) = pki.node_files(1, now - 30 * DAY, now - DAY);
    let (path, problem) = load_error(&ca, &old_cert, &old_key, 1);
    assert_eq!(path, show(&old_cert));
    assert!(problem.contains("expired"), "{problem}");

    let (future_cert, future_key) = pki.node_files(1, now + DAY, now + 30 * DAY);
    let (_, problem) = load_error(&ca, &future_cert, &future_key, 1);
    assert!(problem.contains("not valid yet"), "{problem}");

    let other = Pki::new();
    let (path, problem) = load_error(&other.ca_file(), &cert, &key, 1);
    assert_eq!(path, show(&cert));
    assert!(problem.contains("not signed by the cluster CA") && problem.contains(&show(&other.ca_file())), "{problem}");

    let (path, problem) = load_error(&ca, &cert, &key, 2);
    assert_eq!(path, show(&cert));
    assert!(problem.contains("does not name node 2") && problem.contains(&node_name(2)), "{problem}");

    let (_, other_key) = pki.node_files(2, now - DAY, now + 30 * DAY);
    let (path, problem) = load_error(&ca, &cert, &other_key, 1);
    assert_eq!(path, show(&other_key));
    assert!(problem.contains("does not belong to the certificate"), "{problem}");
}

#[test]
fn a_ca_rebuilt_from_its_key_signs_certificates_the_original_verifies() {
    let pki = Pki::new();
    let key_file = pki.dir.path().join("ca.key");
    std::fs::write(&key_file, pki.ca.pem().key_pem).unwrap();
    let rebuilt = CertificateAuthority::from_key_pem(&std::fs::read_to_string(&key_file).unwrap(), &key_file)
        .expect("the CA from its key");
    let now = SystemTime::now();
    let pair = rebuilt.issue_node(4, &[], now - DAY, now + DAY).expect("a certificate");
    let (cert, key) = pki.write("node-4-later", &pair);
    PeerTls::load(&pki.ca_file(), &cert, &key, 4, UnixTime::now()).expect("verifies under the original CA file");
}
