//! `leasehold serve`: open the durable Raft log, rebuild the lease table from its snapshot, start the
//! raft actor on its own thread (fsync never blocks the packet path) and the peer transport on another,
//! then the lease, parser and socket actors and the admin API on the main thread, and run until
//! SIGINT/SIGTERM. On the signal a leader first hands leadership to the most up-to-date follower and
//! waits (at most `cluster.transfer_timeout_ms`) for it to take over; a follower just exits. SIGHUP
//! reloads the config file (`reload`).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use leasehold_cluster::actor::{ConnectPeers, RaftActor, TransferLeader};
use leasehold_cluster::replica::{Replica, ReplicaConfig, TransferError};
use leasehold_cluster::storage::DurableLog;
use leasehold_cluster::transport::tls::PeerTls;
use leasehold_cluster::transport::{self, TransportConfig, MIN_SECRET_BYTES};
use leasehold_config::Config;
use slog::{error, info, o, warn, Logger};

use crate::actors::lease::{ConnectParser, LeaseActor, Replication};
use crate::actors::parser::{Connect, ParserActor};
use crate::actors::socket::{open_socket, SocketActor, Transmitter};
use crate::actors::Clock;
use crate::admin::auth::{AccessPolicy, AdminToken};
use crate::admin::AdminOptions;
use crate::engine::Engine;
use crate::logging;
use crate::metrics::Metrics;
use crate::reload::{ConfigSource, Reload, ReloadActor};

/// Why `serve` could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Cluster(#[from] leasehold_cluster::ClusterError),
    #[error("DHCP socket on port {port}: {source}")]
    Socket { port: u16, source: std::io::Error },
    #[error("admin API on {listen}: {source}")]
    Admin { listen: std::net::SocketAddr, source: std::io::Error },
    #[error("boot files over HTTP on {listen}: {source}")]
    HttpBoot { listen: std::net::SocketAddr, source: std::io::Error },
    #[error("boot files over TFTP on {listen}: {source}")]
    Tftp { listen: std::net::SocketAddr, source: std::io::Error },
    #[error("actix runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cluster secret file {path}: {problem}")]
    Secret { path: String, problem: String },
    #[error("peer transport on {listen}: {source}")]
    Transport { listen: std::net::SocketAddr, source: std::io::Error },
    #[error("{what}: {source}")]
    Tls { what: &'static str, source: leasehold_cluster::ClusterError },
    #[error("admin token file {path}: {problem}")]
    AdminToken { path: String, problem: String },
    #[error("[store] kind = \"etcd\": {0}")]
    Store(String),
}

/// Peer messages queued per peer at most; more are dropped (Raft retransmits).
const PEER_QUEUE_CAPACITY: usize = 4_096;

/// Read the shared secret that authenticates peer traffic (surrounding whitespace is not part of it).
fn read_secret(path: &std::path::Path) -> Result<Arc<[u8]>, ServeError> {
    let problem = |problem: String| ServeError::Secret { path: path.display().to_string(), problem };
    let bytes = std::fs::read(path).map_err(|e| problem(e.to_string()))?;
    let secret = bytes.trim_ascii();
    if secret.len() < MIN_SECRET_BYTES {
        return Err(problem(format!("{} bytes; at least {MIN_SECRET_BYTES} are needed", secret.len())));
    }
    Ok(Arc::from(secret))
}

pub fn run(config: Config, source: ConfigSource, clock_offset_ms: i64) -> Result<(), ServeError> {
    // Dropped when `run` returns: what is still queued is written out before the process exits.
    let (log, _flush_on_exit) = logging::logger(config.log_format, config.log_level);
    let config = Arc::new(config);
    let clock = Clock { offset_ms: clock_offset_ms };
    let limits = config.limits.clone();
    let grace_ms = limits.expiry_grace_secs * 1000;

    if let leasehold_config::Store::Etcd(_) = &config.store {
        if !cfg!(feature = "etcd") {
            return Err(ServeError::Store("this build has no etcd store (build with --features etcd)".into()));
        }
    }
    let raft_parts = match &config.store {
        leasehold_config::Store::Raft => Some(open_raft(&config, grace_ms, &log)?),
        leasehold_config::Store::Etcd(_) => None,
    };
    let table = match &raft_parts {
        Some(parts) => parts.table.clone(),
        None => leasehold_cluster::LeaseTable::new(grace_ms, limits.max_leases),
    };
    // The admin API's token and certificate, read before anything listens.
    let token = match &config.admin.token_file {
        Some(path) => Some(
            AdminToken::read(path)
                .map_err(|problem| ServeError::AdminToken { path: path.display().to_string(), problem })?,
        ),
        None => None,
    };
    let access = AccessPolicy::new(token, config.admin.protect_reads, config.admin_listen);
    if access.refuses_tokenless_writes() {
        warn!(log, "the admin API listens on a non-loopback address without a token: admin writes are refused";
            "admin" => %config.admin_listen, "fix" => "[admin] token_file or --admin-token-file");
    }
    let admin_tls = match &config.admin.tls {
        Some(files) => Some(
            crate::admin::tls_config(&files.cert_file, &files.key_file)
                .map_err(|source| ServeError::Tls { what: "admin TLS (admin.tls_*)", source })?,
        ),
        None => None,
    };
    // The boot files this node serves (TFTP), started before anything answers clients: a root that
    // cannot be served stops the node here, with the reason.
    // The lease actor, once it runs, for the TFTP server's per-machine scripts.
    let tftp_lease = Arc::new(std::sync::OnceLock::new());
    // `[boot]` as both boot file servers read it (scripts, menu).
    let boot = Arc::new(config.boot.clone());
    let tftp_metrics = match &config.boot.root {
        Some(root) => {
            let metrics = Arc::new(crate::tftp::TftpMetrics::default());
            let scripts =
                crate::tftp::Scripts { boot: boot.clone(), lease: tftp_lease.clone(), server: config.server_ip };
            crate::tftp::start(&config.boot, root, scripts, metrics.clone(), log.new(o!("actor" => "tftp")))
                .map_err(|source| ServeError::Tftp { listen: config.boot.tftp_listen, source })?;
            Some(metrics)
        }
        None => None,
    };
    info!(log, "lease table loaded"; "leases" => table.len(), "applied_index" => table.applied_index(),
        "data_dir" => %config.data_dir.display(), "fsync" => config.fsync);

    let system = System::new();
    let result: Result<(), ServeError> = system.block_on(async {
        let metrics = Arc::new(Metrics::default());
        let node_id = config.cluster.node_id;
        let incarnation = clock.now_us();
        let mut sockets = Vec::with_capacity(config.interfaces.len());
        for interface in &config.interfaces {
            let socket = open_socket(interface.name.as_deref(), config.server_port)
                .map_err(|source| ServeError::Socket { port: config.server_port, source })?;
            sockets.push(socket);
        }

        let raft_arbiter = Arbiter::new();
        let lease_log = log.new(o!("actor" => "lease"));
        let raft_log = log.new(o!("actor" => "raft"));
        let tick = Duration::from_millis(config.cluster.tick_ms);
        let replay_until = raft_parts.as_ref().map_or(0, |parts| parts.replay_until);
        let engine = Engine::new(config.clone(), table, node_id, incarnation).with_replay_until(replay_until);
        let mut raft_addr = None;
        let mut store_view: Option<Recipient<crate::store::GetStoreView>> = None;
        let mut store_links: Option<StoreLinks> = None;
        let (replica, addresses, peer_links) = match raft_parts {
            Some(parts) => (Some(parts.replica), parts.known_peers, parts.peer_links),
            None => (None, Default::default(), None),
        };
        let lease = LeaseActor::create(|ctx| {
            let me = ctx.address();
            let (state_machine, status) = (me.clone().recipient(), me.clone().recipient());
            let replication = match replica {
                Some(replica) => {
                    let raft = RaftActor::start_in_arbiter(&raft_arbiter.handle(), move |_| {
                        RaftActor::new(replica, state_machine, status, tick, raft_log).with_addresses(addresses)
                    });
                    raft_addr = Some(raft.clone());
                    Replication::Raft { propose: raft.clone().recipient(), snapshot: raft.recipient() }
                }
                None => {
                    let links = start_store(&config, node_id, me.clone(), &raft_arbiter, &log);
                    store_view = Some(links.view.clone());
                    let transact = links.transact.clone();
                    store_links = Some(links);
                    Replication::Store(transact)
                }
            };
            LeaseActor::new(
                engine,
                replication,
                node_id,
                clock,
                limits.mailbox_capacity,
                metrics.clone(),
                lease_log,
            )
        });
        let _ = tftp_lease.set(lease.clone());
        let parser =
            ParserActor::new(lease.clone(), limits.max_frame_bytes, limits.mailbox_capacity, metrics.clone()).start();
        let receive_window = Duration::from_micros(limits.receive_window_us);
        let mut transmitters = Vec::with_capacity(sockets.len());
        for (index, socket) in sockets.into_iter().enumerate() {
            let name = config.interfaces[index].name.clone().unwrap_or_else(|| "*".into());
            let socket_log = log.new(o!("actor" => "socket", "interface" => name));
            let transmitter =
                Transmitter::new(&socket, config.server_port, config.client_port, metrics.clone(), socket_log.clone())
                    .map_err(|source| ServeError::Socket { port: config.server_port, source })?;
            transmitters.push(transmitter);
            SocketActor::new(socket, index, parser.clone(), limits.max_frame_bytes, receive_window, metrics.clone(), socket_log)
                .start();
        }
        parser.do_send(Connect(transmitters));
        lease.do_send(ConnectParser(parser));
        let raft = raft_addr;
        // The digest of the boot root, on a thread of its own: reported to the leader through the
        // raft actor, or to every node in the etcd store's member key, and shown by the admin API.
        let digest_to = match (&raft, &store_links) {
            (Some(raft), _) => Some(raft.clone().recipient()),
            (None, Some(links)) => Some(links.boot_root_digest.clone()),
            (None, None) => None,
        };
        let boot_root_digest = match (&config.boot.root, digest_to) {
            (Some(root), Some(digest_to)) => {
                let shared = crate::boot_digest::SharedDigest::default();
                let interval = Duration::from_secs(config.boot.digest_interval_secs.into());
                let digest_log = log.new(o!("actor" => "boot-digest"));
                crate::boot_digest::start(root, interval, shared.clone(), digest_to, digest_log)
                    .map_err(ServeError::Runtime)?;
                Some(shared)
            }
            _ => None,
        };
        // The peer transport (TCP, HMAC, frame coding) runs on a thread of its own, off the DHCP
        // actors' thread: appends and their responses never wait behind packets.
        let transport_arbiter = Arbiter::new();
        let mut transport_addr = None;
        if let (Some(links), Some(raft)) = (peer_links, &raft) {
            let listen = links.listen;
            let (started, result) = tokio::sync::oneshot::channel();
            let (inbound, transport_log) = (raft.clone().recipient(), log.clone());
            transport_arbiter.spawn(async move {
                let _ = started.send(transport::start(links, inbound, transport_log));
            });
            let transport = result
                .await
                .map_err(|_| ServeError::Runtime(std::io::Error::other("peer transport thread did not start")))?
                .map_err(|source| ServeError::Transport { listen, source })?;
            raft.do_send(ConnectPeers(transport.clone().recipient(), transport.clone().recipient()));
            transport_addr = Some(transport);
        }

        let mut reload = ReloadActor::new(source, config.clone(), lease.clone(), log.new(o!("actor" => "reload")));
        if let Some(raft) = &raft {
            reload = reload.with_raft(raft.clone().recipient());
        }
        if let Some(links) = &store_links {
            reload = reload.with_store(links.publish.clone()).with_raft(links.config_digest.clone());
        }
        let seed = reload.shared_seed();
        let reload = reload.start();
        // The etcd store hands every stored shared config to the reload actor.
        if let Some(links) = &store_links {
            links.connect_config.do_send(crate::store::ConnectConfig { sink: reload.clone().recipient(), seed });
        }
        // SIGHUP re-reads the config file (as dnsmasq and most daemons do); its outcome is logged.
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(ServeError::Runtime)?;
        let on_hangup = reload.clone();
        actix::spawn(async move {
            while hangup.recv().await.is_some() {
                let _ = on_hangup.send(Reload { by: "SIGHUP" }).await;
            }
        });
        let admin_https = admin_tls.is_some();
        let transfer_timeout = Duration::from_millis(config.cluster.transfer_timeout_ms);
        // The same boot files over HTTP, on a listener of their own.
        let http_boot_metrics = match &config.boot.root {
            Some(root) => {
                let metrics = Arc::new(crate::boot_http::HttpBootMetrics::default());
                let server = crate::boot_http::serve(
                    boot.clone(),
                    root,
                    lease.clone(),
                    metrics.clone(),
                    log.new(o!("actor" => "http-boot")),
                )
                .map_err(|source| ServeError::HttpBoot { listen: config.boot.http_listen, source })?;
                actix::spawn(server);
                Some(metrics)
            }
            None => None,
        };
        let options = AdminOptions {
            listen: config.admin_listen,
            access,
            tls: admin_tls,
            transport: transport_addr,
            reload,
            transfer_timeout,
            tftp: tftp_metrics,
            http_boot: http_boot_metrics,
            boot_root_digest,
        };
        let admin = crate::admin::serve(options, lease.clone(), raft.clone(), store_view)
            .map_err(|source| ServeError::Admin { listen: config.admin_listen, source })?;
        let admin_handle = admin.handle();
        actix::spawn(admin);
        let interfaces: Vec<String> =
            config.interfaces.iter().map(|i| format!("{}={}", i.name.as_deref().unwrap_or("*"), i.server_ip)).collect();
        info!(log, "serving"; "interfaces" => interfaces.join(","),
            "server_ip" => %config.server_ip, "port" => config.server_port, "admin" => %config.admin_listen, "admin_https" => admin_https,
            "pools" => config.pools.len(), "node_id" => node_id);

        wait_for_shutdown_signal().await.map_err(ServeError::Runtime)?;
        if let Some(raft) = &raft {
            hand_over_before_exit(raft, transfer_timeout, &log).await;
        }
        // The etcd store resigns: another node is elected at once instead of after the TTL.
        #[cfg(feature = "etcd")]
        if let Some(links) = &store_links {
            let _ = tokio::time::timeout(transfer_timeout, links.resign.send(crate::store::etcd::Resign)).await;
        }
        drop(store_links);
        // One round trip through the lease actor's mailbox: the bindings committed before the handover
        // are applied and their ACKs handed to the parser before the actors stop.
        let _ = lease.send(crate::actors::lease::GetStatus).await;
        info!(log, "shutting down");
        admin_handle.stop(true).await;
        raft_arbiter.stop();
        transport_arbiter.stop();
        Ok(())
    });
    if let Err(e) = &result {
        error!(log, "serve failed"; "error" => %e);
    }
    result
}

/// Start the etcd store on `arbiter`'s thread: where the lease actor's decided writes go, and its
/// view for the admin API.
#[cfg(feature = "etcd")]
fn start_store(config: &Config, node_id: u64, lease: Addr<LeaseActor>, arbiter: &Arbiter, log: &Logger) -> StoreLinks {
    let leasehold_config::Store::Etcd(etcd) = config.store.clone() else {
        unreachable!("start_store is called for the etcd store only")
    };
    let member = crate::store::etcd_keys::Member {
        server_ip: Some(config.server_ip.to_string()),
        // Where other hosts reach it: a wildcard listener is reached at the server address.
        admin: Some(if config.admin_listen.ip().is_unspecified() {
            std::net::SocketAddr::new(config.server_ip.into(), config.admin_listen.port()).to_string()
        } else {
            config.admin_listen.to_string()
        }),
        config_digest: Some(crate::reload::lease_config_digest(config)),
        ..Default::default()
    };
    let log = log.new(o!("actor" => "etcd"));
    let (grace_ms, max_leases) = (config.limits.expiry_grace_secs * 1000, config.limits.max_leases);
    let store = crate::store::etcd::EtcdStore::start_in_arbiter(&arbiter.handle(), move |_| {
        crate::store::etcd::EtcdStore::new(etcd, node_id, member, lease.clone().recipient(), lease.recipient(), log)
            .with_defaults(grace_ms, max_leases)
    });
    StoreLinks {
        transact: store.clone().recipient(),
        view: store.clone().recipient(),
        publish: store.clone().recipient(),
        connect_config: store.clone().recipient(),
        config_digest: store.clone().recipient(),
        boot_root_digest: store.clone().recipient(),
        resign: store.recipient(),
    }
}

/// Where the lease actor, the admin API and the shutdown reach the store.
#[cfg(feature = "etcd")]
struct StoreLinks {
    transact: Recipient<crate::store::Transact>,
    view: Recipient<crate::store::GetStoreView>,
    publish: Recipient<crate::store::PublishConfig>,
    connect_config: Recipient<crate::store::ConnectConfig>,
    config_digest: Recipient<leasehold_cluster::actor::SetConfigDigest>,
    boot_root_digest: Recipient<leasehold_cluster::actor::SetBootRootDigest>,
    resign: Recipient<crate::store::etcd::Resign>,
}

#[cfg(not(feature = "etcd"))]
struct StoreLinks {
    transact: Recipient<crate::store::Transact>,
    view: Recipient<crate::store::GetStoreView>,
    publish: Recipient<crate::store::PublishConfig>,
    connect_config: Recipient<crate::store::ConnectConfig>,
    config_digest: Recipient<leasehold_cluster::actor::SetConfigDigest>,
    boot_root_digest: Recipient<leasehold_cluster::actor::SetBootRootDigest>,
}

#[cfg(not(feature = "etcd"))]
fn start_store(_: &Config, _: u64, _: Addr<LeaseActor>, _: &Arbiter, _: &Logger) -> StoreLinks {
    unreachable!("run refuses the etcd store in a build without it")
}

/// `check-config` with the etcd store: are the endpoints reachable and the prefix usable? `None`
/// with the Raft store.
/// The shared config stored there, if any, must check when laid into `file` (as the node would
/// run it).
pub fn check_store(config: &Config, file: &std::path::Path) -> Result<Option<String>, String> {
    let leasehold_config::Store::Etcd(etcd) = &config.store else { return Ok(None) };
    #[cfg(feature = "etcd")]
    {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        let (mut summary, stored) = runtime.block_on(crate::store::etcd::check_reachable(etcd))?;
        if let Some((key, revision, text)) = stored {
            let node_text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
            let source = std::path::PathBuf::from(format!("etcd:{key}"));
            leasehold_config::shared::with_shared(&node_text, Some(file), &text, &source)
                .and_then(|merged| Config::from_toml_str(&merged, &source))
                .map_err(|e| {
                    format!(
                        "the shared config stored at {key} (revision {revision}) does not check with this file:\n{e}"
                    )
                })?;
            summary.push_str(&format!("; the shared config at {key} (revision {revision}) checks with this file"));
        }
        Ok(Some(summary))
    }
    #[cfg(not(feature = "etcd"))]
    {
        let _ = (etcd, file);
        Err("this build has no etcd store (build with --features etcd)".into())
    }
}

/// The Raft store, opened before anything listens: the durable log, the table its snapshot and
/// log give, the replica, and the peer links.
struct RaftParts {
    table: leasehold_cluster::LeaseTable,
    replica: Replica<leasehold_cluster::storage::LogStore>,
    replay_until: u64,
    known_peers: std::collections::BTreeMap<u64, std::net::SocketAddr>,
    peer_links: Option<TransportConfig>,
}

fn open_raft(config: &Config, grace_ms: u64, log: &Logger) -> Result<RaftParts, ServeError> {
    let limits = &config.limits;
    let (store, table) =
        leasehold_cluster::actor::open(&config.data_dir, config.fsync, grace_ms, limits.max_leases, log)?;
    // Members added through the log since this node was configured: their addresses come from the
    // table (replicated with the membership change), so the `--peer` list need not name them. An
    // address the config gives wins.
    let mut known_peers = config.cluster.peers.clone();
    for (id, addr) in table.member_addresses() {
        if !known_peers.contains_key(id) {
            info!(log, "peer address from the replicated membership"; "id" => id, "addr" => %addr);
            known_peers.insert(*id, *addr);
        }
    }
    let replica_config = ReplicaConfig {
        voters: config.cluster.peers.keys().copied().collect(),
        applied: table.applied_index(),
        heartbeat_ticks: config.cluster.heartbeat_ticks,
        election_ticks: config.cluster.election_ticks,
        join: config.cluster.join,
        tick_us: config.cluster.tick_ms.saturating_mul(1000),
        config_digest: crate::reload::digest_number(&crate::reload::lease_config_digest(config)),
        admin_addr: crate::admin::reported_admin_addr(config.admin_listen, &config.cluster),
        ..ReplicaConfig::new(config.cluster.node_id)
    };
    // A restart replays the log after the snapshot before the node answers anyone (see `Engine`).
    let replay_until = store.committed_index();
    let replica = Replica::new(&replica_config, store, &log.new(o!("actor" => "raft")))?;
    // A cluster of several nodes: peers (this one excluded), where to listen, the secret and/or TLS.
    let peer_links = if known_peers.len() > 1 {
        let secret = config.cluster.secret_file.as_deref().map(read_secret).transpose()?;
        let tls = match &config.cluster.tls {
            Some(files) => Some(
                PeerTls::load(
                    &files.ca_file,
                    &files.cert_file,
                    &files.key_file,
                    config.cluster.node_id,
                    rustls_pki_types::UnixTime::now(),
                )
                .map_err(|source| ServeError::Tls { what: "peer TLS (cluster.tls_*)", source })?,
            ),
            None => None,
        };
        if secret.is_none() && tls.is_none() {
            return Err(ServeError::Secret {
                path: "(none)".into(),
                problem: "several peers need cluster.secret_file or the cluster.tls_* files".into(),
            });
        }
        let listen = config.cluster.listen.ok_or_else(|| ServeError::Transport {
            listen: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
            source: std::io::Error::other("several peers need cluster.listen"),
        })?;
        let mut peers = known_peers.clone();
        peers.remove(&config.cluster.node_id);
        Some(TransportConfig {
            node_id: config.cluster.node_id,
            listen,
            peers,
            secret,
            tls,
            queue_capacity: PEER_QUEUE_CAPACITY,
        })
    } else {
        None
    };
    Ok(RaftParts { table, replica, replay_until, known_peers, peer_links })
}

/// SIGTERM/SIGINT on the leader: hand leadership to the most up-to-date follower (the lease given up
/// first, so exactly one node answers) and wait, at most `timeout`, until it has taken over; clients
/// then see no election gap. A follower (or a cluster of one) has nothing to hand over. A second
/// signal stops the wait.
async fn hand_over_before_exit(raft: &Addr<RaftActor>, timeout: Duration, log: &Logger) {
    let transfer = raft.send(TransferLeader { to: None, timeout });
    let result = tokio::select! {
        result = transfer => result,
        _ = wait_for_shutdown_signal() => {
            warn!(log, "second signal: exiting without waiting for the leadership transfer");
            return;
        }
    };
    match result {
        Ok(Ok(leader)) => info!(log, "leadership handed over before exit"; "leader_id" => leader),
        Ok(Err(TransferError::NotLeader { .. })) => {}
        Ok(Err(TransferError::NoVoterReachable)) => info!(log, "no other voter to hand leadership over to"),
        Ok(Err(e)) => warn!(log, "exiting without handing leadership over"; "error" => %e),
        Err(e) => warn!(log, "exiting without handing leadership over"; "error" => %e),
    }
}

async fn wait_for_shutdown_signal() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = terminate.recv() => Ok(()),
    }
}
