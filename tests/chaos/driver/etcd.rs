//! The etcd members of an etcd-mode chaos run (`Store::Etcd`): one `etcd` (Debian's `etcd-server`)
//! in each server namespace, beside that namespace's Leasehold node, clients on 10.77.0.N:2379 and
//! peers on 10.77.0.N:2380, each with its own data directory under the run's directory (fsync on, as
//! etcd always does). What the driver does to them: start, kill -9 and start again on the same data
//! directory, and ask `etcdctl endpoint health`.
//!
//! Processes are started here and signalled only by their PID; every member is stopped when the
//! `EtcdCluster` is dropped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::node::{node_ip, NODES};
use crate::netns_support::{in_ns, require_tool, Proc, Segment};

pub const CLIENT_PORT: u16 = 2379;
pub const PEER_PORT: u16 = 2380;
/// How long a member's restart (or the whole cluster's start) may take to be healthy again.
pub const HEALTH_LIMIT: Duration = Duration::from_secs(30);

pub struct Member {
    pub id: u32,
    pub ns: String,
    pub data_dir: PathBuf,
    pub proc: Option<Proc>,
    pub starts: u32,
}

pub struct EtcdCluster {
    dir: PathBuf,
    etcd: PathBuf,
    etcdctl: PathBuf,
    pub members: Vec<Member>,
    /// Members that exited without being told to: (member, status).
    pub crashes: Vec<(u32, String)>,
}

/// `http://10.77.0.1:2379,…` of every member: what the nodes are given.
pub fn endpoints() -> String {
    (1..=NODES).map(|id| format!("http://{}:{CLIENT_PORT}", node_ip(id))).collect::<Vec<_>>().join(",")
}

impl EtcdCluster {
    /// Fails loudly (like the other namespace tests) when etcd or etcdctl is not installed.
    pub fn new(segment: &Segment, dir: &Path) -> EtcdCluster {
        let members = (1..=NODES)
            .map(|id| Member {
                id,
                ns: segment.server(id),
                data_dir: dir.join(format!("etcd{id}-data")),
                proc: None,
                starts: 0,
            })
            .collect();
        EtcdCluster {
            dir: dir.to_owned(),
            etcd: require_tool("etcd"),
            etcdctl: require_tool("etcdctl"),
            members,
            crashes: Vec::new(),
        }
    }

    fn member_mut(&mut self, id: u32) -> &mut Member {
        &mut self.members[id as usize - 1]
    }

    pub fn log_path(&self, id: u32) -> PathBuf {
        self.dir.join(format!("etcd{id}-run{}.log", self.members[id as usize - 1].starts.max(1)))
    }

    /// Starts member `id` on its data directory (the first start makes the cluster; later ones find
    /// their WAL and ignore the `--initial-*` flags).
    pub fn start(&mut self, id: u32) {
        let (etcd, dir) = (self.etcd.clone(), self.dir.clone());
        let cluster: Vec<String> = (1..=NODES).map(|j| format!("e{j}=http://{}:{PEER_PORT}", node_ip(j))).collect();
        let member = self.member_mut(id);
        assert!(member.proc.is_none(), "etcd member {id} is already running");
        member.starts += 1;
        let ip = node_ip(id);
        let mut cmd = in_ns(&member.ns, etcd);
        cmd.args(["--name", &format!("e{id}")])
            .arg("--data-dir")
            .arg(&member.data_dir)
            .args(["--listen-client-urls", &format!("http://{ip}:{CLIENT_PORT}")])
            .args(["--advertise-client-urls", &format!("http://{ip}:{CLIENT_PORT}")])
            .args(["--listen-peer-urls", &format!("http://{ip}:{PEER_PORT}")])
            .args(["--initial-advertise-peer-urls", &format!("http://{ip}:{PEER_PORT}")])
            .args(["--initial-cluster", &cluster.join(",")])
            .args(["--initial-cluster-state", "new", "--initial-cluster-token", "leasehold-chaos"]);
        let log = dir.join(format!("etcd{id}-run{}.log", member.starts));
        member.proc = Some(Proc::spawn(&format!("etcd e{id}"), cmd, &log));
    }

    /// kill -9; waits for the process to end.
    pub fn kill(&mut self, id: u32) -> Result<(), String> {
        let member = self.member_mut(id);
        let mut proc = member.proc.take().ok_or_else(|| format!("etcd member {id} is not running"))?;
        crate::netns_support::signal(proc.pid, libc::SIGKILL);
        proc.wait_exit(Duration::from_secs(10))
            .map(|_| ())
            .ok_or_else(|| format!("etcd e{id} outlived SIGKILL by 10 s"))
    }

    /// Members whose process ended though the driver did not stop it (left down; the caller starts
    /// them again).
    pub fn reap_crashes(&mut self) -> Vec<u32> {
        let mut crashed = Vec::new();
        for member in &mut self.members {
            if let Some(status) = member.proc.as_mut().and_then(Proc::try_status) {
                member.proc = None;
                self.crashes.push((member.id, status.to_string()));
                crashed.push(member.id);
            }
        }
        crashed
    }

    /// `etcdctl endpoint health` of every member, run in server namespace `from`: `Ok` when all
    /// three answer, else what etcdctl said.
    pub fn health(&self, from: u32) -> Result<(), String> {
        let list: Vec<String> = (1..=NODES).map(|id| format!("http://{}:{CLIENT_PORT}", node_ip(id))).collect();
        let mut cmd = in_ns(&self.members[from as usize - 1].ns, &self.etcdctl);
        cmd.env("ETCDCTL_API", "3").args([
            "--endpoints",
            &list.join(","),
            "--dial-timeout=1s",
            "--command-timeout=2s",
            "endpoint",
            "health",
        ]);
        let out = cmd.output().map_err(|e| format!("etcdctl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
            Err(text.split_whitespace().collect::<Vec<_>>().join(" "))
        }
    }

    /// Polls `health` (from server namespace 1, every 200 ms) until all three members are healthy.
    pub fn wait_healthy(&self, limit: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            let seen = self.health(1);
            match seen {
                Ok(()) => return Ok(started.elapsed()),
                Err(e) if started.elapsed() >= limit => {
                    return Err(format!("etcd was not healthy within {limit:?}: {e}"));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(proc) = &mut member.proc {
                proc.stop(Duration::from_secs(5));
            }
        }
    }
}
