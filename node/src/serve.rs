//! `leasehold serve`: open the durable Raft log, rebuild the lease table from its snapshot, start the
//! raft actor on its own thread (fsync never blocks the packet path), then the lease, parser and
//! socket actors and the admin API on the main thread, and run until SIGINT/SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use leasehold_cluster::actor::RaftActor;
use leasehold_cluster::replica::{Replica, ReplicaConfig};
use leasehold_config::Config;
use slog::{error, info, o};

use crate::actors::lease::{ConnectParser, LeaseActor};
use crate::actors::parser::{Connect, ParserActor};
use crate::actors::socket::{open_socket, SocketActor};
use crate::actors::Clock;
use crate::engine::Engine;
use crate::logging;
use crate::metrics::Metrics;

/// Why `serve` could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Cluster(#[from] leasehold_cluster::ClusterError),
    #[error("DHCP socket on port {port}: {source}")]
    Socket { port: u16, source: std::io::Error },
    #[error("admin API on {listen}: {source}")]
    Admin { listen: std::net::SocketAddr, source: std::io::Error },
    #[error("actix runtime: {0}")]
    Runtime(std::io::Error),
}

pub fn run(config: Config, clock_offset_ms: i64) -> Result<(), ServeError> {
    let log = logging::logger(config.log_format, config.log_level);
    let config = Arc::new(config);
    let clock = Clock { offset_ms: clock_offset_ms };
    let limits = config.limits.clone();
    let grace_ms = limits.expiry_grace_secs * 1000;

    let (store, table) =
        leasehold_cluster::actor::open(&config.data_dir, config.fsync, grace_ms, limits.max_leases, &log)?;
    let replica_config = ReplicaConfig {
        voters: config.cluster.peers.keys().copied().collect(),
        applied: table.applied_index(),
        heartbeat_ticks: config.cluster.heartbeat_ticks,
        election_ticks: config.cluster.election_ticks,
        ..ReplicaConfig::new(config.cluster.node_id)
    };
    let replica = Replica::new(&replica_config, store, &log.new(o!("actor" => "raft")))?;
    info!(log, "lease table loaded"; "leases" => table.len(), "applied_index" => table.applied_index(),
        "data_dir" => %config.data_dir.display(), "fsync" => config.fsync);

    let system = System::new();
    let result: Result<(), ServeError> = system.block_on(async {
        let metrics = Arc::new(Metrics::default());
        let node_id = config.cluster.node_id;
        let incarnation = clock.now_us();
        let socket = open_socket(config.interface.as_deref(), config.server_port)
            .map_err(|source| ServeError::Socket { port: config.server_port, source })?;

        let raft_arbiter = Arbiter::new();
        let lease_log = log.new(o!("actor" => "lease"));
        let raft_log = log.new(o!("actor" => "raft"));
        let tick = Duration::from_millis(config.cluster.tick_ms);
        let engine = Engine::new(config.clone(), table, node_id, incarnation);
        let lease = LeaseActor::create(|ctx| {
            let me = ctx.address();
            let (state_machine, status) = (me.clone().recipient(), me.recipient());
            let raft = RaftActor::start_in_arbiter(&raft_arbiter.handle(), move |_| {
                RaftActor::new(replica, state_machine, status, tick, raft_log)
            });
            LeaseActor::new(
                engine,
                raft.clone().recipient(),
                raft.recipient(),
                node_id,
                clock,
                limits.mailbox_capacity,
                metrics.clone(),
                lease_log,
            )
        });
        let parser =
            ParserActor::new(lease.clone(), limits.max_frame_bytes, limits.mailbox_capacity, metrics.clone()).start();
        let socket = SocketActor::new(
            socket,
            parser.clone(),
            config.server_port,
            config.client_port,
            limits.max_frame_bytes,
            metrics.clone(),
            log.new(o!("actor" => "socket")),
        )
        .start();
        parser.do_send(Connect(socket));
        lease.do_send(ConnectParser(parser));

        let admin = crate::admin::serve(config.admin_listen, lease.clone())
            .map_err(|source| ServeError::Admin { listen: config.admin_listen, source })?;
        let admin_handle = admin.handle();
        actix::spawn(admin);
        info!(log, "serving"; "interface" => config.interface.as_deref().unwrap_or("*"),
            "server_ip" => %config.server_ip, "port" => config.server_port, "admin" => %config.admin_listen,
            "pools" => config.pools.len(), "node_id" => node_id);

        wait_for_shutdown_signal().await.map_err(ServeError::Runtime)?;
        info!(log, "shutting down");
        admin_handle.stop(true).await;
        raft_arbiter.stop();
        Ok(())
    });
    if let Err(e) = &result {
        error!(log, "serve failed"; "error" => %e);
    }
    result
}

async fn wait_for_shutdown_signal() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = terminate.recv() => Ok(()),
    }
}
