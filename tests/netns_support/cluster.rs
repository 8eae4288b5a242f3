//! A three-node Leasehold cluster in the server namespaces of a segment (`scripts/netns.sh up NAME 3 …`):
//! node N runs `leasehold serve` in `NAME-sN` (eth0 = 10.77.0.N) with its own data directory (fsync on),
//! `--node-id N`, the same three `--peer`s, `--cluster-listen 10.77.0.N:6768` and one shared secret file.
//! Used by tests/netns_cluster.rs and tests/relay.rs: starting, killing (SIGKILL by PID) and restarting
//! nodes, waiting for a leader (`GET /healthz`) and for lease tables to converge, and the check that no
//! address is bound to two clients.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{http_get, poll_until, signal, tail_of, Lease, Segment, Server, ADMIN_PORT};

/// Nodes in a cluster.
pub const NODES: u32 = 3;
/// The Raft peer port of every node.
pub const PEER_PORT: u16 = 6768;
/// The lease time of `Cluster::start`.
pub const CLUSTER_LEASE_SECS: u64 = 600;

/// Node `id`'s address (its server identifier): 10.77.0.`id`.
pub fn node_ip(id: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, u8::try_from(id).expect("a small node id"))
}

/// What a node's `GET /healthz` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// 200: a leader is known.
    Led { leader_id: u64, is_leader: bool, term: u64 },
    /// 503 "no quorum".
    NoQuorum { term: u64 },
    /// Anything else (not listening, another status).
    Other(String),
}

pub fn health(ns: &str) -> Health {
    match http_get(ns, ADMIN_PORT, "/healthz") {
        Ok((code, body)) => {
            let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let term = json["term"].as_u64().unwrap_or(0);
            match (code, json["leader_id"].as_u64(), json["status"].as_str()) {
                (200, Some(leader_id), _) => {
                    Health::Led { leader_id, is_leader: json["leader"].as_bool().unwrap_or(false), term }
                }
                (503, _, Some("no quorum")) => Health::NoQuorum { term },
                _ => Health::Other(format!("HTTP {code}: {body}")),
            }
        }
        Err(e) => Health::Other(e.to_string()),
    }
}

/// How a node authenticates (and, with TLS, encrypts) its peer links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAuth {
    /// `--cluster-secret-file` with the test's shared secret (the default).
    Secret,
    /// Mutual TLS with the files `leasehold cluster make-certs --dir DIR` wrote: `DIR/ca.pem`,
    /// `DIR/node-ID.pem`, `DIR/node-ID.key`; no shared secret.
    Tls(PathBuf),
    /// Both.
    TlsAndSecret(PathBuf),
}

/// How each node (index `id - 1`) is started: its peer authentication and any more flags.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub auth: Vec<PeerAuth>,
    pub extra_args: Vec<Vec<String>>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            auth: (1..=NODES).map(|_| PeerAuth::Secret).collect(),
            extra_args: (1..=NODES).map(|_| Vec::new()).collect(),
        }
    }
}

/// The 3 nodes of one test, without their processes (shared with watcher threads): node `id` runs in
/// the segment's server namespace `id`.
pub struct Nodes {
    dir: PathBuf,
    secret: PathBuf,
    namespaces: Vec<String>,
    /// How many times each node (index `id - 1`) has been started; names its log file.
    starts: Vec<AtomicU32>,
    pools: Pools,
    /// Per node; `set_options` changes them for later (re)starts.
    options: std::sync::Mutex<NodeOptions>,
}

/// The address pools every node serves.
#[derive(Debug, Clone)]
pub enum Pools {
    /// One pool by flags: 10.77.0.100–10.77.0.200 in the segment's /24, this lease time (option 51; T1 and
    /// T2 are 1/2 and 7/8 of it).
    Segment { lease_secs: u64 },
    /// `[[pool]]` tables (TOML) of a config file; each node's file adds its own `[server] server_ip`.
    Toml(String),
}

/// The nodes and their running `leasehold serve` processes.
pub struct Cluster {
    pub nodes: Nodes,
    /// Index `id - 1`; `None` while a node is down.
    servers: Vec<Option<Server>>,
}

impl std::ops::Deref for Cluster {
    type Target = Nodes;

    fn deref(&self) -> &Nodes {
        &self.nodes
    }
}

impl Cluster {
    /// Starts all nodes at once (none can be healthy before a quorum is up) and waits for each to see a
    /// leader. One pool (see `Pools::Segment`) with a `CLUSTER_LEASE_SECS` lease.
    pub fn start(segment: &Segment, dir: &Path) -> Cluster {
        Cluster::start_with(segment, dir, CLUSTER_LEASE_SECS)
    }

    /// `start` with another lease time (option 51; T1 and T2 are 1/2 and 7/8 of it).
    pub fn start_with(segment: &Segment, dir: &Path, lease_secs: u64) -> Cluster {
        Cluster::start_pools(segment, dir, Pools::Segment { lease_secs })
    }

    /// `start` with the given pools.
    pub fn start_pools(segment: &Segment, dir: &Path, pools: Pools) -> Cluster {
        Cluster::start_with_options(segment, dir, pools, NodeOptions::default(), &[1, 2, 3])
    }

    /// Starts all nodes at once with `options`; waits for `/healthz` 200 of the nodes in `healthy`
    /// only (the others may never find a leader: a node the cluster must refuse).
    pub fn start_with_options(
        segment: &Segment,
        dir: &Path,
        pools: Pools,
        options: NodeOptions,
        healthy: &[u32],
    ) -> Cluster {
        let secret = dir.join("cluster.secret");
        std::fs::write(&secret, "leasehold-netns-cluster-test-secret-0123456789\n").expect("write the secret");
        let nodes = Nodes {
            dir: dir.to_owned(),
            secret,
            namespaces: (1..=NODES).map(|id| segment.server(id)).collect(),
            starts: (1..=NODES).map(|_| AtomicU32::new(0)).collect(),
            pools,
            options: std::sync::Mutex::new(options),
        };
        let servers = thread::scope(|scope| {
            let nodes = &nodes;
            let handles: Vec<_> = (1..=NODES)
                .map(|id| scope.spawn(move || nodes.spawn_server_waiting(id, healthy.contains(&id))))
                .collect();
            handles.into_iter().map(|h| Some(h.join().expect("a node did not start"))).collect()
        });
        Cluster { nodes, servers }
    }

    /// Stops node `id` (SIGTERM, by PID) and starts it again with `auth` on the same data directory,
    /// waiting for its `/healthz` only if `wait_healthy`.
    pub fn restart_as(&mut self, id: u32, auth: PeerAuth, wait_healthy: bool) {
        if let Some(mut server) = self.servers[id as usize - 1].take() {
            server.proc.stop(Duration::from_secs(10));
        }
        self.nodes.options.lock().expect("options lock").auth[id as usize - 1] = auth;
        let server = self.nodes.spawn_server_waiting(id, wait_healthy);
        self.servers[id as usize - 1] = Some(server);
    }

    pub fn server(&self, id: u32) -> &Server {
        self.servers[id as usize - 1].as_ref().unwrap_or_else(|| panic!("node {id} is down"))
    }

    /// SIGKILL to node `id` (by PID); waits for its death.
    pub fn kill(&mut self, id: u32) -> Instant {
        let mut server = self.servers[id as usize - 1].take().unwrap_or_else(|| panic!("node {id} is already down"));
        let killed_at = Instant::now();
        signal(server.proc.pid, libc::SIGKILL);
        let status = server.proc.wait_exit(Duration::from_secs(10)).expect("leasehold serve outlived SIGKILL by 10 s");
        assert_eq!(status.signal(), Some(libc::SIGKILL), "node {id} ended with {status}, expected SIGKILL");
        killed_at
    }

    /// SIGTERM to node `id` (by PID): the clean stop of a rolling restart (a leader hands leadership
    /// over first). Waits at most `limit` for the exit; returns its status, when the signal went and
    /// the run's log file.
    pub fn terminate(&mut self, id: u32, limit: Duration) -> (std::process::ExitStatus, Instant, PathBuf) {
        let mut server = self.servers[id as usize - 1].take().unwrap_or_else(|| panic!("node {id} is already down"));
        let signalled_at = Instant::now();
        signal(server.proc.pid, libc::SIGTERM);
        let status = server.proc.wait_exit(limit).unwrap_or_else(|| {
            panic!("node {id} did not exit within {limit:?} of SIGTERM\n{}", tail_of(&server.proc.log))
        });
        (status, signalled_at, server.proc.log.clone())
    }

    /// Starts node `id` again on its data directory; returns once its /healthz answers 200.
    pub fn restart(&mut self, id: u32) {
        let server = self.nodes.spawn_server(id);
        self.servers[id as usize - 1] = Some(server);
    }

    /// Polls until every node in `nodes` has `ip` bound to `mac` in its /v1/leases.
    pub fn wait_bound_everywhere(&self, nodes: &[u32], ip: Ipv4Addr, mac: &str, step: &str) {
        for &id in nodes {
            let server = self.server(id);
            server.wait_lease(ip, Duration::from_secs(10), &format!("{step}: bound to {mac} on node {id}"), |l| {
                l.state == "bound" && l.mac.eq_ignore_ascii_case(mac)
            });
        }
    }

    pub fn tables(&self, nodes: &[u32]) -> Vec<(u32, Vec<Lease>)> {
        nodes.iter().map(|&id| (id, self.server(id).leases())).collect()
    }
}

impl Nodes {
    pub fn ns(&self, id: u32) -> &str {
        &self.namespaces[id as usize - 1]
    }

    pub fn data_dir(&self, id: u32) -> PathBuf {
        self.dir.join(format!("node{id}-data"))
    }

    /// The shared secret file every node authenticates peer traffic with.
    pub fn secret(&self) -> &Path {
        &self.secret
    }

    pub fn log(&self, id: u32, start: u32) -> PathBuf {
        self.dir.join(format!("node{id}-run{start}.log"))
    }

    /// `leasehold serve` for node `id` (waits until its /healthz answers 200, i.e. it knows a leader).
    pub fn spawn_server(&self, id: u32) -> Server {
        self.spawn_server_waiting(id, true)
    }

    /// `spawn_server`, waiting for `/healthz` 200 only if `wait_healthy`.
    pub fn spawn_server_waiting(&self, id: u32, wait_healthy: bool) -> Server {
        let start = self.starts[id as usize - 1].fetch_add(1, Ordering::SeqCst) + 1;
        let data = self.data_dir(id);
        std::fs::create_dir_all(&data).expect("create a data dir");
        let server_ip = node_ip(id).to_string();
        let node_id = id.to_string();
        let listen = format!("{server_ip}:{PEER_PORT}");
        let secret = self.secret.display().to_string();
        let peers: Vec<String> = (1..=NODES).map(|p| format!("{p}={}:{PEER_PORT}", node_ip(p))).collect();
        let (lease, config);
        let mut args: Vec<&str> = match &self.pools {
            Pools::Segment { lease_secs } => {
                lease = lease_secs.to_string();
                vec![
                    "--server-ip",
                    &server_ip,
                    "--ip-start",
                    "10.77.0.100",
                    "--ip-end",
                    "10.77.0.200",
                    "--subnet-mask",
                    "255.255.255.0",
                    "--lease-time",
                    &lease,
                ]
            }
            Pools::Toml(pools) => {
                let file = self.dir.join(format!("node{id}.toml"));
                std::fs::write(&file, format!("[server]\nserver_ip = \"{server_ip}\"\n\n{pools}"))
                    .expect("write a node's config file");
                config = file.display().to_string();
                vec!["--config", &config]
            }
        };
        args.extend(["--node-id", &node_id, "--cluster-listen", &listen]);
        let options = self.options.lock().expect("options lock").clone();
        let tls_args = |dir: &Path| -> Vec<String> {
            vec![
                "--cluster-tls-ca".into(),
                dir.join("ca.pem").display().to_string(),
                "--cluster-tls-cert".into(),
                dir.join(format!("node-{id}.pem")).display().to_string(),
                "--cluster-tls-key".into(),
                dir.join(format!("node-{id}.key")).display().to_string(),
            ]
        };
        let auth_args: Vec<String> = match &options.auth[id as usize - 1] {
            PeerAuth::Secret => vec!["--cluster-secret-file".into(), secret.clone()],
            PeerAuth::Tls(dir) => tls_args(dir),
            PeerAuth::TlsAndSecret(dir) => {
                let mut args = tls_args(dir);
                args.extend(["--cluster-secret-file".into(), secret.clone()]);
                args
            }
        };
        args.extend(auth_args.iter().map(String::as_str));
        args.extend(options.extra_args[id as usize - 1].iter().map(String::as_str));
        for peer in &peers {
            args.extend(["--peer", peer.as_str()]);
        }
        if wait_healthy {
            Server::start(self.ns(id), &data, &self.log(id, start), &args)
        } else {
            Server::spawn(self.ns(id), Some("eth0"), &data, &self.log(id, start), &args)
        }
    }

    pub fn logs(&self) -> String {
        (1..=NODES)
            .map(|id| tail_of(&self.log(id, self.starts[id as usize - 1].load(Ordering::SeqCst).max(1))))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Polls /healthz of `nodes` (every 20 ms, at most `limit`) until they all name the same leader, one of
    /// `nodes`, and that node says it is the leader. Returns the leader's id and when that was first seen.
    pub fn wait_for_leader(&self, nodes: &[u32], limit: Duration, step: &str) -> (u32, Instant) {
        let deadline = Instant::now() + limit;
        loop {
            let views: Vec<(u32, Health)> = nodes.iter().map(|&id| (id, health(self.ns(id)))).collect();
            let leaders: BTreeSet<u64> = views
                .iter()
                .filter_map(|(_, h)| match h {
                    Health::Led { leader_id, .. } => Some(*leader_id),
                    _ => None,
                })
                .collect();
            let all_led = views.iter().all(|(_, h)| matches!(h, Health::Led { .. }));
            if all_led && leaders.len() == 1 {
                let leader = leaders.into_iter().next().expect("one leader") as u32;
                let claims =
                    views.iter().any(|(id, h)| *id == leader && matches!(h, Health::Led { is_leader: true, .. }));
                if nodes.contains(&leader) && claims {
                    return (leader, Instant::now());
                }
            }
            assert!(
                Instant::now() < deadline,
                "{step}: nodes {nodes:?} did not agree on a leader among themselves within {limit:?}; /healthz: \
                 {views:?}\n{}",
                self.logs()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls node `id`'s /healthz until `want` holds.
    pub fn wait_health(
        &self,
        id: u32,
        limit: Duration,
        what: &str,
        want: impl Fn(&Health) -> bool,
    ) -> (Health, Instant) {
        let h = poll_until(
            limit,
            || health(self.ns(id)),
            &want,
            |h| format!("node {id}'s /healthz was not {what} within {limit:?} (last: {h:?})\n{}", self.logs()),
        );
        (h, Instant::now())
    }
}

impl Cluster {
    /// Polls until the lease tables of `nodes` are the same set of (ip, mac, state); returns the set and
    /// how long it took.
    pub fn wait_converged(&self, nodes: &[u32], limit: Duration, step: &str) -> (LeaseSet, Duration) {
        let started = Instant::now();
        let deadline = started + limit;
        loop {
            let sets: Vec<(u32, LeaseSet)> =
                self.tables(nodes).into_iter().map(|(id, t)| (id, lease_set(&t))).collect();
            if sets.windows(2).all(|w| w[0].1 == w[1].1) {
                return (sets[0].1.clone(), started.elapsed());
            }
            if Instant::now() >= deadline {
                let reference = &sets[0];
                let diffs: Vec<String> = sets[1..]
                    .iter()
                    .map(|(id, set)| {
                        format!(
                            "node {id} lacks {:?} and has extra {:?} (vs node {})",
                            reference.1.difference(set).collect::<Vec<_>>(),
                            set.difference(&reference.1).collect::<Vec<_>>(),
                            reference.0
                        )
                    })
                    .collect();
                panic!(
                    "{step}: the lease tables did not converge within {limit:?}:\n  {}\n{}",
                    diffs.join("\n  "),
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A lease table reduced to what must converge: (ip, mac, state).
pub type LeaseSet = BTreeSet<(Ipv4Addr, String, String)>;

pub fn lease_set(table: &[Lease]) -> LeaseSet {
    table.iter().map(|l| (l.ip, l.mac.to_ascii_lowercase(), l.state.clone())).collect()
}

/// DESIGN.md: no address is ever bound to two clients. Across every table given: each address appears
/// once per table, and every table that has it bound has it bound to the same MAC.
pub fn double_bindings(tables: &[(u32, Vec<Lease>)]) -> Vec<String> {
    let mut failures = Vec::new();
    let mut holder: HashMap<Ipv4Addr, (u32, String)> = HashMap::new();
    for (id, table) in tables {
        let mut seen = BTreeSet::new();
        for lease in table {
            if !seen.insert(lease.ip) {
                failures.push(format!("node {id} lists {} twice", lease.ip));
            }
            if lease.state != "bound" {
                continue;
            }
            let mac = lease.mac.to_ascii_lowercase();
            match holder.get(&lease.ip) {
                Some((other, other_mac)) if *other_mac != mac => failures
                    .push(format!("{} is bound to {other_mac} on node {other} and to {mac} on node {id}", lease.ip)),
                Some(_) => {}
                None => {
                    holder.insert(lease.ip, (*id, mac));
                }
            }
        }
    }
    failures
}

pub fn assert_no_double_binding(cluster: &Cluster, nodes: &[u32], step: &str) -> usize {
    let tables = cluster.tables(nodes);
    let failures = double_bindings(&tables);
    assert!(
        failures.is_empty(),
        "{step}: an address is held by two clients:\n  {}\n{}",
        failures.join("\n  "),
        cluster.logs()
    );
    tables.iter().map(|(_, t)| t.iter().filter(|l| l.state == "bound").count()).max().unwrap_or(0)
}
