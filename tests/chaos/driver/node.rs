//! The three `leasehold serve` processes of a chaos run and what the driver does to them: start (with
//! a clock offset, or `--join` after a wipe), kill -9, SIGTERM, SIGSTOP/SIGCONT, wipe the data
//! directory; read each node's admin API (`/healthz`, `/v1/leases`, `/v1/cluster`) from inside its
//! namespace with short timeouts; run `leasehold cluster add-node|remove-node` on the leader.
//!
//! In etcd mode (`use_etcd`) a node is started with `--store etcd --etcd-endpoints` and a config file
//! holding the run's `[store] prefix`, and without `--peer`/`--cluster-*`: there are no peer links.
//! `/healthz`, `/v1/leases` and `/v1/status` are the same API; the "leader" is the elected node.
//!
//! Processes are started by this module and signalled only by their PID; a frozen node is thawed before
//! it is stopped, and every process is stopped when the cluster is dropped.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::netns_support::{all_lease_pages, in_ns, leasehold_bin, signal, tail_of, Lease, Proc, Segment};

pub const NODES: u32 = 3;
pub const PEER_PORT: u16 = 6768;
pub const ADMIN_PORT: u16 = 6767;
/// The admin API must answer within this (a node under load still does, a frozen one does not).
const HTTP_TIMEOUT: Duration = Duration::from_secs(3);

pub fn node_ip(id: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, u8::try_from(id).expect("a small node id"))
}

/// The pool and options every node serves.
#[derive(Debug, Clone)]
pub struct Pool {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
    pub mask: Ipv4Addr,
    pub lease_secs: u32,
}

/// What a node's `GET /healthz` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Led { leader_id: u32, is_leader: bool },
    NoQuorum,
    Unreachable(String),
}

/// `METHOD path` over HTTP/1.0 to the admin API inside namespace `ns`: (status, body).
pub fn http(ns: &str, method: &str, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let address = SocketAddr::from(([127, 0, 0, 1], ADMIN_PORT));
    let connected =
        leasehold_tests::in_netns(ns, || TcpStream::connect_timeout(&address, timeout)).map_err(|e| e.to_string())?;
    let mut stream = connected.map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    stream.take(64 << 20).read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).ok_or("not an HTTP response")?;
    Ok((status, body.to_owned()))
}

pub struct Node {
    pub id: u32,
    pub ns: String,
    pub data_dir: PathBuf,
    /// `--clock-offset-ms` of the running process (kept across restarts until changed).
    pub offset_ms: i64,
    pub proc: Option<Proc>,
    pub frozen: bool,
    pub starts: u32,
}

pub struct Cluster {
    pub dir: PathBuf,
    secret: PathBuf,
    pool: Pool,
    log_level: String,
    /// In etcd mode (`use_etcd`): the config file holding `[store] prefix` and `election_ttl_secs`.
    etcd_config: Option<PathBuf>,
    pub nodes: Vec<Node>,
    /// The largest |clock offset| any node has run with in this run.
    pub max_abs_offset_ms: u64,
    /// Nodes that exited without being told to: (node, status, log tail).
    pub crashes: Vec<(u32, String, String)>,
}

impl Cluster {
    pub fn new(segment: &Segment, dir: &Path, pool: Pool, log_level: &str) -> Cluster {
        let secret = dir.join("cluster.secret");
        std::fs::write(&secret, "leasehold-chaos-run-secret-0123456789abcdef\n").expect("write the cluster secret");
        let nodes = (1..=NODES)
            .map(|id| Node {
                id,
                ns: segment.server(id),
                data_dir: dir.join(format!("node{id}-data")),
                offset_ms: 0,
                proc: None,
                frozen: false,
                starts: 0,
            })
            .collect();
        Cluster {
            dir: dir.to_owned(),
            secret,
            pool,
            log_level: log_level.to_owned(),
            etcd_config: None,
            nodes,
            max_abs_offset_ms: 0,
            crashes: Vec::new(),
        }
    }

    /// The nodes keep the pool in etcd (`--store etcd --etcd-endpoints` of the members in
    /// `driver/etcd.rs`) under `prefix`, with an election TTL of `ttl_secs`, instead of their own Raft
    /// log: no `--peer`, `--cluster-*` or `--join` (they do not talk to each other).
    pub fn use_etcd(&mut self, prefix: &str, ttl_secs: u32) {
        let path = self.dir.join("etcd-store.toml");
        let text = format!("[store]\nprefix = \"{prefix}\"\nelection_ttl_secs = {ttl_secs}\n");
        std::fs::write(&path, text).expect("write the etcd store's config file");
        self.etcd_config = Some(path);
    }

    pub fn is_etcd(&self) -> bool {
        self.etcd_config.is_some()
    }

    pub fn node(&self, id: u32) -> &Node {
        &self.nodes[id as usize - 1]
    }

    fn node_mut(&mut self, id: u32) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    pub fn log_path(&self, id: u32) -> PathBuf {
        self.dir.join(format!("node{id}-run{}.log", self.node(id).starts.max(1)))
    }

    /// Starts node `id` (not waiting for it to be healthy). `join`: a fresh data directory joins the
    /// running cluster instead of bootstrapping.
    pub fn start(&mut self, id: u32, join: bool) {
        let bin = leasehold_bin();
        let (secret, pool, level, dir, etcd_config) = (
            self.secret.clone(),
            self.pool.clone(),
            self.log_level.clone(),
            self.dir.clone(),
            self.etcd_config.clone(),
        );
        let node = self.node_mut(id);
        assert!(node.proc.is_none(), "node {id} is already running");
        std::fs::create_dir_all(&node.data_dir).expect("create a data dir");
        node.starts += 1;
        let log = dir.join(format!("node{id}-run{}.log", node.starts));
        let mut cmd = in_ns(&node.ns, &bin);
        cmd.arg("serve").args(["--interface", "eth0"]).arg("--data-dir").arg(&node.data_dir);
        cmd.args(["--admin-listen", &format!("127.0.0.1:{ADMIN_PORT}"), "--log-level", &level]);
        cmd.args(["--server-ip", &node_ip(id).to_string()]);
        cmd.args(["--ip-start", &pool.start.to_string(), "--ip-end", &pool.end.to_string()]);
        cmd.args(["--subnet-mask", &pool.mask.to_string(), "--lease-time", &pool.lease_secs.to_string()]);
        cmd.args(["--node-id", &id.to_string()]);
        match &etcd_config {
            Some(config) => {
                assert!(!join, "--join is for the Raft store only");
                cmd.arg("--config").arg(config);
                cmd.args(["--store", "etcd", "--etcd-endpoints", &super::etcd::endpoints()]);
            }
            None => {
                cmd.args(["--cluster-listen", &format!("{}:{PEER_PORT}", node_ip(id))]);
                cmd.arg("--cluster-secret-file").arg(&secret);
                for peer in 1..=NODES {
                    cmd.args(["--peer", &format!("{peer}={}:{PEER_PORT}", node_ip(peer))]);
                }
            }
        }
        if node.offset_ms != 0 {
            cmd.arg(format!("--clock-offset-ms={}", node.offset_ms));
        }
        if join {
            cmd.arg("--join");
        }
        node.proc = Some(Proc::spawn(&format!("leasehold serve (node {id})"), cmd, &log));
        node.frozen = false;
    }

    pub fn set_offset(&mut self, id: u32, offset_ms: i64) {
        self.node_mut(id).offset_ms = offset_ms;
        self.max_abs_offset_ms = self.max_abs_offset_ms.max(offset_ms.unsigned_abs());
    }

    pub fn is_running(&self, id: u32) -> bool {
        self.node(id).proc.is_some()
    }

    /// Running and not frozen: its admin API can answer.
    pub fn is_live(&self, id: u32) -> bool {
        self.is_running(id) && !self.node(id).frozen
    }

    pub fn live_ids(&self) -> Vec<u32> {
        (1..=NODES).filter(|&id| self.is_live(id)).collect()
    }

    /// kill -9 (thawed first so the kill is not held up); waits for the process to end.
    pub fn kill(&mut self, id: u32) -> Result<(), String> {
        self.end(id, libc::SIGKILL)
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn terminate(&mut self, id: u32) -> Result<(), String> {
        self.end(id, libc::SIGTERM)
    }

    fn end(&mut self, id: u32, sig: libc::c_int) -> Result<(), String> {
        let node = self.node_mut(id);
        let mut proc = node.proc.take().ok_or_else(|| format!("node {id} is not running"))?;
        signal(proc.pid, sig);
        if node.frozen {
            signal(proc.pid, libc::SIGCONT);
            node.frozen = false;
        }
        if proc.wait_exit(Duration::from_secs(10)).is_none() {
            signal(proc.pid, libc::SIGKILL);
            proc.wait_exit(Duration::from_secs(5)).ok_or_else(|| format!("node {id} outlived SIGKILL by 5 s"))?;
        }
        Ok(())
    }

    pub fn freeze(&mut self, id: u32) -> Result<(), String> {
        let node = self.node_mut(id);
        let proc = node.proc.as_ref().ok_or_else(|| format!("node {id} is not running"))?;
        signal(proc.pid, libc::SIGSTOP);
        node.frozen = true;
        Ok(())
    }

    pub fn thaw(&mut self, id: u32) {
        let node = self.node_mut(id);
        if let Some(proc) = &node.proc {
            signal(proc.pid, libc::SIGCONT);
        }
        node.frozen = false;
    }

    /// Removes node `id`'s data directory (the node must be down).
    pub fn wipe(&mut self, id: u32) -> Result<(), String> {
        let node = self.node(id);
        if node.proc.is_some() {
            return Err(format!("node {id} must be down to wipe its data directory"));
        }
        if node.data_dir.exists() {
            std::fs::remove_dir_all(&node.data_dir).map_err(|e| format!("wipe {}: {e}", node.data_dir.display()))?;
        }
        std::fs::create_dir_all(&node.data_dir).map_err(|e| e.to_string())
    }

    /// Nodes whose process ended though the driver did not stop it: recorded as crashes (with the log
    /// tail) and left down; the caller restarts them.
    pub fn reap_crashes(&mut self) -> Vec<u32> {
        let mut crashed = Vec::new();
        for index in 0..self.nodes.len() {
            let id = self.nodes[index].id;
            let status = self.nodes[index].proc.as_mut().and_then(Proc::try_status);
            if let Some(status) = status {
                let log = tail_of(&self.log_path(id));
                self.nodes[index].proc = None;
                self.nodes[index].frozen = false;
                self.crashes.push((id, status.to_string(), log));
                crashed.push(id);
            }
        }
        crashed
    }

    pub fn health(&self, id: u32) -> Health {
        if !self.is_live(id) {
            return Health::Unreachable("down or frozen".into());
        }
        match http(&self.node(id).ns, "GET", "/healthz", HTTP_TIMEOUT) {
            Ok((code, body)) => {
                let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                match (code, json["leader_id"].as_u64()) {
                    (200, Some(leader)) => Health::Led {
                        leader_id: u32::try_from(leader).unwrap_or(0),
                        is_leader: json["leader"].as_bool().unwrap_or(false),
                    },
                    (503, _) if json["status"] == "no quorum" => Health::NoQuorum,
                    _ => Health::Unreachable(format!("HTTP {code}: {body}")),
                }
            }
            Err(e) => Health::Unreachable(e),
        }
    }

    pub fn leases(&self, id: u32) -> Result<Vec<Lease>, String> {
        if !self.is_live(id) {
            return Err(format!("node {id} is down or frozen"));
        }
        all_lease_pages(|path| {
            let (code, body) = http(&self.node(id).ns, "GET", path, HTTP_TIMEOUT)?;
            if code != 200 {
                return Err(format!("node {id}: GET {path} answered HTTP {code}: {body}"));
            }
            Ok(body)
        })
        .map_err(|e| format!("node {id}: {e}"))
    }

    /// Node `id`'s `GET /metrics` (Prometheus text).
    pub fn metrics(&self, id: u32) -> Result<String, String> {
        if !self.is_live(id) {
            return Err(format!("node {id} is down or frozen"));
        }
        let (code, body) = http(&self.node(id).ns, "GET", "/metrics", HTTP_TIMEOUT)?;
        if code != 200 {
            return Err(format!("node {id}: GET /metrics answered HTTP {code}: {body}"));
        }
        Ok(body)
    }

    /// One series of node `id`'s `/metrics`, e.g. `("leasehold_proposals_total", "")`. A labelled
    /// counter appears at its first count, so a series the node does not list is 0.
    pub fn counter(&self, id: u32, name: &str, labels: &str) -> Result<u64, String> {
        let text = self.metrics(id)?;
        Ok(crate::netns_support::metric(&text, name, labels).map_or(0, |value| value as u64))
    }

    /// Node `id`'s `GET /v1/status` (its lease table's view: applied index, proposals pending, …).
    pub fn status(&self, id: u32) -> Result<serde_json::Value, String> {
        if !self.is_live(id) {
            return Err(format!("node {id} is down or frozen"));
        }
        let (code, body) = http(&self.node(id).ns, "GET", "/v1/status", HTTP_TIMEOUT)?;
        if code != 200 {
            return Err(format!("node {id}: GET /v1/status answered HTTP {code}: {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("node {id}: /v1/status: {e}: {body}"))
    }

    /// The member ids in node `id`'s `GET /v1/cluster`.
    pub fn members(&self, id: u32) -> Result<BTreeSet<u32>, String> {
        let (code, body) = http(&self.node(id).ns, "GET", "/v1/cluster", HTTP_TIMEOUT)?;
        if code != 200 {
            return Err(format!("node {id}: GET /v1/cluster answered HTTP {code}: {body}"));
        }
        let json: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        let members = json["members"].as_array().ok_or("no members in /v1/cluster")?;
        Ok(members.iter().filter_map(|m| m["id"].as_u64()).filter_map(|id| u32::try_from(id).ok()).collect())
    }

    /// The leader all of `nodes` name, if they agree and it says it leads.
    pub fn agreed_leader(&self, nodes: &[u32]) -> Option<u32> {
        let mut leader = None;
        let mut claimed = false;
        for &id in nodes {
            let Health::Led { leader_id, is_leader } = self.health(id) else { return None };
            if leader.is_some_and(|l| l != leader_id) {
                return None;
            }
            leader = Some(leader_id);
            claimed |= is_leader && leader_id == id;
        }
        leader.filter(|_| claimed)
    }

    /// Polls (every 100 ms, at most `limit`) until `nodes` agree on a leader among themselves.
    pub fn wait_leader(&self, nodes: &[u32], limit: Duration) -> Result<(u32, Duration), String> {
        let started = Instant::now();
        loop {
            if let Some(leader) = self.agreed_leader(nodes).filter(|l| nodes.contains(l)) {
                return Ok((leader, started.elapsed()));
            }
            if started.elapsed() >= limit {
                let views: Vec<String> = nodes.iter().map(|&id| format!("node {id}: {:?}", self.health(id))).collect();
                return Err(format!(
                    "nodes {nodes:?} did not agree on a leader within {limit:?}: {}",
                    views.join("; ")
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `leasehold cluster ARGS… --admin 127.0.0.1:6767` inside node `id`'s namespace.
    pub fn ctl(&self, id: u32, args: &[&str]) -> Result<String, String> {
        let mut cmd: Command = in_ns(&self.node(id).ns, leasehold_bin());
        cmd.arg("cluster").args(args).args(["--admin", &format!("127.0.0.1:{ADMIN_PORT}")]);
        let log = self.dir.join("membership.log");
        let mut proc = Proc::spawn(&format!("leasehold cluster {args:?} on node {id}"), cmd, &log);
        match proc.wait_exit(Duration::from_secs(15)) {
            Some(status) if status.success() => Ok(tail_of(&log)),
            Some(status) => Err(format!("leasehold cluster {args:?} on node {id}: {status}\n{}", tail_of(&log))),
            None => Err(format!("leasehold cluster {args:?} on node {id} did not finish within 15 s")),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(proc) = &mut node.proc {
                if node.frozen {
                    signal(proc.pid, libc::SIGCONT);
                }
                proc.stop(Duration::from_secs(5));
            }
        }
    }
}
