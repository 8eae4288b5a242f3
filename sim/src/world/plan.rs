//! What a run is: the `SimConfig` it was asked for, the `Plan` its seed draws (clients, pool, lease
//! and grace times, log and snapshot sizes, mail delays, clock skew), and each node's `Config` and
//! addresses.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use leasehold_config::{ClientIdentity, Cluster, Config, Interface, Limits, LogFormat, LogLevel, Pool, Pxe, Subnet};

use crate::rng::Rng;

use super::{
    DEFAULT_MAX_CLIENTS, DEFAULT_STEPS, ELECTION_TICKS, HEARTBEAT_TICKS, MIN_CLIENTS, NETWORK, RECORD_RETENTION_SECS,
    TICK_US,
};

/// One simulation run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    pub seed: u64,
    /// Cluster size, 1 to 5.
    pub nodes: usize,
    /// DHCP clients; `None` draws `MIN_CLIENTS..=max_clients` from the seed.
    pub clients: Option<usize>,
    pub max_clients: usize,
    /// Events delivered in the chaos phase.
    pub steps: u64,
    /// Print every event as it happens.
    pub verbose: bool,
    /// Also re-check everything from scratch after every step (slow; cross-checks the checkers).
    pub full_check: bool,
    /// Some crashes also lose the node's disk; it restarts with an empty log (DESIGN rule 6).
    pub wipe_disks: bool,
}

impl SimConfig {
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            nodes: default_nodes(seed),
            clients: None,
            max_clients: DEFAULT_MAX_CLIENTS,
            steps: DEFAULT_STEPS,
            verbose: false,
            full_check: false,
            wipe_disks: false,
        }
    }

    /// The command line that replays this run.
    pub fn replay_command(&self) -> String {
        let mut command =
            format!("cargo run -p leasehold-sim -- --seed {} --nodes {} --steps {}", self.seed, self.nodes, self.steps);
        if let Some(clients) = self.clients {
            command.push_str(&format!(" --clients {clients}"));
        } else if self.max_clients != DEFAULT_MAX_CLIENTS {
            command.push_str(&format!(" --max-clients {}", self.max_clients));
        }
        if self.wipe_disks {
            command.push_str(" --wipe-disks");
        }
        command
    }
}

/// Odd seeds run five nodes, even seeds three.
pub fn default_nodes(seed: u64) -> usize {
    if seed % 2 == 1 {
        5
    } else {
        3
    }
}

/// What the seed decides about a run besides the events.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) clients: usize,
    /// Clients that leave for good during the run (the first ones).
    pub(super) departing: usize,
    pub(super) pool_size: u32,
    pub(super) lease_secs: u32,
    pub(super) grace_ms: u64,
    pub(super) max_leases: usize,
    /// Entries a log keeps behind its snapshot (small, so followers fall behind the log).
    pub(super) keep_entries: u64,
    pub(super) snapshot_every_entries: u64,
    /// How long proposals gather before a flush (the lease actor's mailbox drain).
    pub(super) flush_delay_us: u64,
    /// How long mail between a node's raft actor and lease actor takes.
    pub(super) hop_us: u64,
    /// Largest clock offset of a node from virtual time (well inside the grace).
    pub(super) max_skew_us: u64,
}

impl Plan {
    pub(super) fn draw(config: &SimConfig, rng: &mut Rng) -> Plan {
        let max_clients = config.max_clients.max(MIN_CLIENTS) as u64;
        let clients = config.clients.unwrap_or_else(|| rng.between(MIN_CLIENTS as u64, max_clients) as usize);
        // Half the runs have barely more addresses than clients, so addresses pass from client to
        // client (after a release, or an expiry plus the grace) and check 1 has something to check.
        // A third of the clients leave for good at some point, and a quarter join late: the pool is
        // sized for the ones that stay, so the late ones need the leavers' addresses.
        let departing = (clients as u64 * rng.between(0, 333)) / 1000;
        let spare = if rng.chance(500_000) { rng.between(1, 3) } else { rng.between(2, 4 + clients as u64 / 4) };
        let pool_size = (clients as u64 - departing + spare) as u32;
        let grace_ms = rng.between(3, 8) * 1000;
        // An ACK's lease is rounded up to whole seconds: skew on both sides plus that second must
        // fit in the grace, or the checker finds (rightly) an address given away too early.
        let max_skew_us = rng.below((grace_ms - 1000) * 1000 / 2 - 100_000);
        Plan {
            clients,
            departing: departing as usize,
            pool_size,
            lease_secs: rng.between(20, 90) as u32,
            grace_ms,
            max_leases: 1_000_000,
            keep_entries: rng.between(1, 20),
            snapshot_every_entries: rng.between(5, 60),
            flush_delay_us: rng.below(3_000),
            hop_us: rng.below(2_000),
            max_skew_us,
        }
    }

    pub(super) fn engine_config(&self, node_id: u64, nodes: usize) -> Config {
        let [a, b] = NETWORK;
        let pool_start = u32::from(pool_start());
        let pool = Pool {
            name: "sim".into(),
            subnet: Subnet { network: Ipv4Addr::new(a, b, 0, 0), prefix_len: 16 },
            range_start: Ipv4Addr::from(pool_start),
            range_end: Ipv4Addr::from(pool_start + self.pool_size - 1),
            routers: vec![Ipv4Addr::new(a, b, 0, 254)],
            dns_servers: vec![Ipv4Addr::new(a, b, 0, 254)],
            domain_name: None,
            lease_time_secs: self.lease_secs,
            renewal_time_secs: self.lease_secs / 2,
            rebinding_time_secs: self.lease_secs / 8 * 7,
            pxe: None,
            dynamic_bootp: false,
            bootp_lease_time_secs: self.lease_secs,
            options: Default::default(),
        };
        let peers = (1..=nodes as u64).map(|id| (id, SocketAddr::from(([127, 0, 0, 1], 7000 + id as u16)))).collect();
        Config {
            interfaces: vec![Interface { name: None, server_ip: server_ip(node_id) }],
            server_ip: server_ip(node_id),
            server_port: 67,
            client_port: 68,
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 6767)),
            data_dir: PathBuf::from("/nonexistent/leasehold-sim"),
            fsync: true,
            log_format: LogFormat::Term,
            log_level: LogLevel::Info,
            identity: ClientIdentity::Mac,
            pools: vec![pool],
            pxe: Pxe::default(),
            reservations: Vec::new(),
            options: Default::default(),
            classes: Vec::new(),
            limits: Limits {
                offer_hold_ms: 10_000,
                decline_probation_secs: 20,
                expiry_grace_secs: self.grace_ms / 1000,
                proposal_timeout_ms: 5_000,
                max_leases: self.max_leases,
                snapshot_every_entries: self.snapshot_every_entries,
                // Short, so that records are collected within a run (and clients come back to
                // addresses whose records are gone).
                record_retention_secs: RECORD_RETENTION_SECS,
                ..Limits::default()
            },
            cluster: Cluster {
                node_id,
                peers,
                listen: None,
                tick_ms: TICK_US / 1000,
                election_ticks: ELECTION_TICKS,
                heartbeat_ticks: HEARTBEAT_TICKS,
                ..Cluster::default()
            },
            admin: Default::default(),
        }
    }
}

/// The first address of the pool.
pub(super) fn pool_start() -> Ipv4Addr {
    let [a, b] = NETWORK;
    Ipv4Addr::new(a, b, 1, 0)
}

/// A node's server identifier (option 54).
pub fn server_ip(node_id: u64) -> Ipv4Addr {
    let [a, b] = NETWORK;
    Ipv4Addr::new(a, b, 0, node_id as u8)
}
