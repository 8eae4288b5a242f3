//! What a run is: the `SimConfig` it was asked for, the `Plan` its seed draws (clients and where
//! they sit — on the nodes' segment or behind the relay —, pools, reservations, lease and grace
//! times, log and snapshot sizes, mail delays, clock skew, spare node slots), and each node's
//! `Config` and addresses.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use leasehold_config::{
    ClientIdentity, Cluster, Config, Interface, Limits, LogFormat, LogLevel, Pool, Pxe, Reservation, Subnet,
};

use crate::rng::Rng;

use super::{
    DEFAULT_MAX_CLIENTS, DEFAULT_STEPS, ELECTION_TICKS, HEARTBEAT_TICKS, MIN_CLIENTS, NETWORK, RECORD_RETENTION_SECS,
    RELAY_NETWORK, TICK_US,
};

/// Most node slots in a run: members at the start plus spares a membership change may add.
pub const MAX_SLOTS: usize = 5;
/// The relay's option 82 remote id (RFC 3046 §2.2): one relay agent.
const RELAY_REMOTE_ID: &[u8] = b"sim-relay";

/// Where a client sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Segment {
    /// On the nodes' own segment: its broadcasts reach every node, served from the first pool.
    Direct,
    /// Behind the relay, on its switch port `circuit`: its broadcasts reach the nodes only through
    /// the relay (giaddr and option 82), served from the relay's pool.
    Relayed { circuit: u8 },
}

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
    /// Where each client sits.
    pub(super) segments: Vec<Segment>,
    /// The clients' MACs share this prefix (and end with the client's index).
    pub(super) mac_prefix: [u8; 3],
    /// The nodes' segment's pool; the relay's (0 when the run has no relay).
    pub(super) pool_size: u32,
    pub(super) relay_pool_size: u32,
    /// Reservations in every node's config file: (client, address), inside or outside the range.
    pub(super) reservations: Vec<(usize, Ipv4Addr)>,
    /// Node slots: the members the cluster starts with, then spares (down, with empty logs) that a
    /// membership change may add (`--join`), up to `MAX_SLOTS`.
    pub(super) slots: usize,
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
        // Two runs in three have a relay with about a third of the clients behind it, a few to a
        // switch port (its circuit: the relay and circuit token buckets count per port).
        let relay = rng.chance(667_000);
        let mut segments = vec![Segment::Direct; clients];
        if relay {
            let behind: Vec<usize> = (0..clients).filter(|_| rng.chance(333_000)).collect();
            let circuits = (behind.len() as u64 / rng.between(1, 4)).clamp(1, 250);
            for c in behind {
                segments[c] = Segment::Relayed { circuit: rng.below(circuits) as u8 };
            }
        }
        let mut mac_prefix = [0; 3];
        mac_prefix.copy_from_slice(&rng.next_u64().to_be_bytes()[..3]);
        // Up to three clients have a reservation in the config file: half inside the dynamic range
        // (which grows by one each, so the others still fit), half outside it.
        let mut reservations: Vec<(usize, Ipv4Addr)> = Vec::new();
        let mut in_range = [0u32; 2];
        for _ in 0..rng.below(4) {
            let c = rng.index(clients);
            if reservations.iter().any(|(other, _)| *other == c) {
                continue;
            }
            let relayed = segments[c] != Segment::Direct;
            if rng.chance(500_000) {
                in_range[usize::from(relayed)] += 1;
                reservations.push((c, Ipv4Addr::UNSPECIFIED));
            } else {
                reservations.push((c, outside_range(relayed, 200, c)));
            }
        }
        let staying = |relayed: bool| {
            (departing as usize..clients).filter(|&c| (segments[c] != Segment::Direct) == relayed).count() as u64
        };
        let mut spare = || if rng.chance(500_000) { rng.between(1, 3) } else { rng.between(2, 4 + clients as u64 / 4) };
        let pool_size = (staying(false) + spare()) as u32 + in_range[0];
        let relay_pool_size = if relay { (staying(true) + spare()) as u32 + in_range[1] } else { 0 };
        // The in-range reservations take addresses of their pool, all different.
        for i in 0..reservations.len() {
            let (c, ip) = reservations[i];
            if !ip.is_unspecified() {
                continue;
            }
            let relayed = segments[c] != Segment::Direct;
            let (first, size) = if relayed { (relay_pool_start(), relay_pool_size) } else { (pool_start(), pool_size) };
            let ip = loop {
                let candidate = Ipv4Addr::from(u32::from(first) + rng.below(u64::from(size)) as u32);
                if reservations.iter().all(|(_, taken)| *taken != candidate) {
                    break candidate;
                }
            };
            reservations[i].1 = ip;
        }
        let grace_ms = rng.between(3, 8) * 1000;
        // An ACK's lease is rounded up to whole seconds: skew on both sides plus that second must
        // fit in the grace, or the checker finds (rightly) an address given away too early.
        let max_skew_us = rng.below((grace_ms - 1000) * 1000 / 2 - 100_000);
        Plan {
            clients,
            departing: departing as usize,
            segments,
            mac_prefix,
            pool_size,
            relay_pool_size,
            reservations,
            slots: if config.nodes < MAX_SLOTS { (config.nodes + 2).min(MAX_SLOTS) } else { config.nodes },
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

    /// Client `c`'s MAC: the run's prefix, then its index (how replies find their client).
    pub(super) fn mac(&self, c: usize) -> [u8; 6] {
        let [hi, lo] = (c as u16).to_be_bytes();
        let [a, b, d] = self.mac_prefix;
        [0x02, a, b, d, hi, lo]
    }

    /// The dynamic range of client `c`'s segment: (first address, size).
    pub(super) fn range_of(&self, c: usize) -> (Ipv4Addr, u32) {
        match self.segments[c] {
            Segment::Direct => (pool_start(), self.pool_size),
            Segment::Relayed { .. } => (relay_pool_start(), self.relay_pool_size),
        }
    }

    /// The option 82 the relay adds to client `c`'s requests: its circuit id (the switch port) and
    /// the relay's remote id (RFC 3046 §2.1, §2.2).
    pub(super) fn relay_agent_info(&self, c: usize) -> Option<Vec<u8>> {
        let Segment::Relayed { circuit } = self.segments[c] else { return None };
        let circuit_id = format!("port-{circuit}");
        let mut info = vec![1, circuit_id.len() as u8];
        info.extend_from_slice(circuit_id.as_bytes());
        info.extend_from_slice(&[2, RELAY_REMOTE_ID.len() as u8]);
        info.extend_from_slice(RELAY_REMOTE_ID);
        Some(info)
    }

    /// Node `node_id`'s config. `members`: the cluster's first members; a spare's peer list is
    /// those plus itself, as the README says to start a node that joins.
    pub(super) fn engine_config(&self, node_id: u64, members: usize) -> Config {
        let [a, b] = NETWORK;
        let pool = |name: &str, network: [u8; 2], first: Ipv4Addr, size: u32, router: Ipv4Addr| Pool {
            name: name.into(),
            subnet: Subnet { network: Ipv4Addr::new(network[0], network[1], 0, 0), prefix_len: 16 },
            range_start: first,
            range_end: Ipv4Addr::from(u32::from(first) + size - 1),
            routers: vec![router],
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
        let mut pools = vec![pool("sim", NETWORK, pool_start(), self.pool_size, Ipv4Addr::new(a, b, 0, 254))];
        if self.relay_pool_size > 0 {
            pools.push(pool("relayed", RELAY_NETWORK, relay_pool_start(), self.relay_pool_size, relay_ip()));
        }
        let reservations = self
            .reservations
            .iter()
            .map(|&(c, ip)| Reservation {
                mac: Some(self.mac(c)),
                client_id: None,
                ip,
                hostname: Some(format!("reserved-{c}")),
                boot_file: None,
                next_server: None,
                boot_script: None,
                options: Default::default(),
            })
            .collect();
        let peers = (1..=members as u64)
            .chain((node_id > members as u64).then_some(node_id))
            .map(|id| (id, peer_addr(id)))
            .collect();
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
            pools,
            pxe: Pxe::default(),
            reservations,
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
            boot: Default::default(),
            store: Default::default(),
        }
    }
}

/// The first address of the pool.
pub(super) fn pool_start() -> Ipv4Addr {
    let [a, b] = NETWORK;
    Ipv4Addr::new(a, b, 1, 0)
}

/// The first address of the relay's pool.
pub(super) fn relay_pool_start() -> Ipv4Addr {
    let [a, b] = RELAY_NETWORK;
    Ipv4Addr::new(a, b, 1, 0)
}

/// The relay's address on its clients' segment: the giaddr it puts in what it relays.
pub(super) fn relay_ip() -> Ipv4Addr {
    let [a, b] = RELAY_NETWORK;
    Ipv4Addr::new(a, b, 0, 1)
}

/// An address for client `c` outside the dynamic ranges, in its segment's subnet (`third`: the
/// third octet, one per kind of reservation).
pub(super) fn outside_range(relayed: bool, third: u8, c: usize) -> Ipv4Addr {
    let [a, b] = if relayed { RELAY_NETWORK } else { NETWORK };
    Ipv4Addr::from(u32::from(Ipv4Addr::new(a, b, third, 0)) + c as u32)
}

/// The subnet of client `c`'s segment holds `ip`.
pub(super) fn on_segment(segment: Segment, ip: Ipv4Addr) -> bool {
    let [a, b] = if segment == Segment::Direct { NETWORK } else { RELAY_NETWORK };
    ip.octets()[..2] == [a, b]
}

/// Node `id`'s peer address (what a membership change that adds it carries).
pub(super) fn peer_addr(id: u64) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + id as u16))
}

/// A node's server identifier (option 54).
pub fn server_ip(node_id: u64) -> Ipv4Addr {
    let [a, b] = NETWORK;
    Ipv4Addr::new(a, b, 0, node_id as u8)
}
