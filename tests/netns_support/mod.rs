//! Support for the network-namespace tests: a private L2 segment made by `scripts/netns.sh`, the
//! `leasehold serve` process under test, real DHCP clients' event pipes, bounded waits, and a tiny
//! HTTP/1.0 GET that runs inside the server's namespace to read its admin API.
//!
//! Safety rules kept here for every test: all traffic stays in namespaces this module creates (names
//! `lh<pid><n>-…`, unique per test run), every wait has a deadline, only processes started by the test
//! (or living in its own namespaces) are killed, by PID, and the segment is removed in `Drop`, also when
//! the test fails.
#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
pub mod admin;
pub mod capture;
pub mod cluster;

/// The admin API port `leasehold serve` listens on (loopback of the server's namespace).
pub const ADMIN_PORT: u16 = 6767;

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent directory").to_path_buf()
}

/// The binary under test: `$LEASEHOLD_BIN`, else `<workspace>/target/debug/leasehold`.
pub fn leasehold_bin() -> PathBuf {
    match std::env::var_os("LEASEHOLD_BIN") {
        Some(path) => PathBuf::from(path),
        None => workspace_root().join("target/debug/leasehold"),
    }
}

/// Network namespaces need root. The tests fail loudly rather than skip silently without it.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "the network-namespace tests must run as root (they create namespaces, veths and a bridge)");
}

/// A binary the test needs, looked up on PATH; a clear failure when it is missing.
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("{name} is not installed (scripts/test.sh installs the packages the tests need)");
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// Blocks until the wall clock has entered the next whole second, so that anything the server stamps
/// "now + lease time" afterwards is strictly later than what it stamped before. (The only wait in the
/// tests that is on the clock itself; at most one second.)
pub fn wait_for_next_second() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
    let into_second = Duration::from_nanos(u64::from(now.subsec_nanos()));
    thread::sleep(Duration::from_secs(1) - into_second + Duration::from_millis(20));
}

/// Polls `probe` every 20 ms (for state with no event to wait on) until `done` holds for what it returned,
/// and returns that; panics with `timed_out(last value)` if that has not happened within `limit`.
pub fn poll_until<T>(
    limit: Duration,
    mut probe: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
    timed_out: impl Fn(&T) -> String,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let value = probe();
        if done(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{}", timed_out(&value));
        thread::sleep(Duration::from_millis(20));
    }
}

/// A scratch directory for one test: server data, hook scripts, client lease files, logs.
/// World-readable (0755) because dhcpcd's privilege-separated processes re-read their config from it.
pub fn scratch_dir(test: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix(&format!("leasehold-{test}-")).tempdir().expect("create a temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod the temp dir");
    dir
}

/// Writes an executable shell script.
pub fn write_script(path: &Path, body: &str) {
    fs::write(path, body).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod a script");
}

/// The contents of a log file for a failure message (the last 4000 bytes).
pub fn tail_of(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()));
    let start = text.len().saturating_sub(4000);
    let start = (start..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
    format!("--- {} ---\n{}", path.display(), &text[start..])
}

// ---------------------------------------------------------------------------------------------------------
// Processes

/// Sends `signal` to a process this test started.
pub fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) on a PID we own; an error (already gone) is harmless here.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// A child process that is killed (by its PID) and reaped when dropped. Its exit is awaited on a
/// thread that blocks in wait(2), so `wait_exit` returns as soon as the process ends.
pub struct Proc {
    pub what: String,
    pub pid: u32,
    pub log: PathBuf,
    exited: Receiver<io::Result<ExitStatus>>,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd` with stdin closed and stdout + stderr appended to `log` (a file, never a pipe: daemons
    /// such as dhclient keep their inherited descriptors open after the foreground process exits).
    pub fn spawn(what: &str, mut cmd: Command, log: &Path) -> Proc {
        let out = OpenOptions::new().create(true).append(true).open(log).expect("open a log file");
        let err = out.try_clone().expect("dup a log file");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let mut child: Child = cmd.spawn().unwrap_or_else(|e| panic!("start {what} ({cmd:?}): {e}"));
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        Proc { what: what.to_owned(), pid, log: log.to_owned(), exited: rx, status: None }
    }

    /// The exit status if the process has ended, without blocking.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(result) = self.exited.try_recv() {
                self.status = Some(result.expect("wait(2) on a child"));
            }
        }
        self.status
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            match self.exited.recv_timeout(limit) {
                Ok(result) => self.status = Some(result.expect("wait(2) on a child")),
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => panic!("the waiter thread of {} vanished", self.what),
            }
        }
        self.status
    }

    /// Waits for a successful exit within `limit`; otherwise fails with the process's log.
    pub fn expect_success(&mut self, limit: Duration) {
        match self.wait_exit(limit) {
            Some(status) if status.success() => {}
            Some(status) => panic!("{} exited with {status}, expected success\n{}", self.what, tail_of(&self.log)),
            None => panic!("{} did not finish within {limit:?}\n{}", self.what, tail_of(&self.log)),
        }
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.try_status().is_none() {
            signal(self.pid, libc::SIGTERM);
            if self.wait_exit(grace).is_none() {
                signal(self.pid, libc::SIGKILL);
                self.wait_exit(Duration::from_secs(5));
            }
        }
        self.status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// Runs a short command to completion (bounded by `limit`), output to `log`; fails unless it succeeds.
pub fn run_ok(what: &str, cmd: Command, log: &Path, limit: Duration) {
    let mut proc = Proc::spawn(what, cmd, log);
    proc.expect_success(limit);
}

/// `ip netns exec NS program args…`
pub fn in_ns(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.arg("netns").arg("exec").arg(ns).arg(program);
    cmd
}

// ---------------------------------------------------------------------------------------------------------
// The segment

static SEGMENTS: AtomicUsize = AtomicUsize::new(0);

/// A private L2 segment from `scripts/netns.sh up`: `NAME-br` (bridge), `NAME-s1..` (servers, eth0 =
/// 10.77.0.N/prefix), `NAME-c1..` (clients, eth0 without an address), and any routers added with
/// `add_router` (`NAME-rK`, `NAME-rKc1`). `scripts/netns.sh down` in Drop.
pub struct Segment {
    pub name: String,
}

impl Segment {
    pub fn up(servers: u32, clients: u32, prefix_len: u8) -> Segment {
        require_root();
        let n = SEGMENTS.fetch_add(1, Ordering::SeqCst);
        let name = format!("lh{}n{n}", std::process::id());
        let script = workspace_root().join("scripts/netns.sh");
        // A segment left by an earlier run with the same PID would make `up` refuse: clear it first.
        let _ = Command::new(&script).arg("down").arg(&name).status();
        let out = Command::new(&script)
            .args(["up", &name, &servers.to_string(), &clients.to_string(), &prefix_len.to_string()])
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        let segment = Segment { name };
        assert!(
            out.status.success(),
            "scripts/netns.sh up {} failed ({}): {}",
            segment.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        segment
    }

    pub fn server(&self, i: u32) -> String {
        format!("{}-s{i}", self.name)
    }

    pub fn client(&self, i: u32) -> String {
        format!("{}-c{i}", self.name)
    }

    /// `scripts/netns.sh router NAME K UPSTREAM DOWNSTREAM`: router namespace `NAME-rK` between the segment
    /// (its eth0 = `upstream`, e.g. "10.77.0.254/24") and a routed client subnet (its lan0 = `downstream`,
    /// e.g. "10.78.0.1/24", and relay0, the macvlan a relay agent listens on), with one client namespace
    /// `NAME-rKc1` on that subnet, IP forwarding on inside the router, and a route to the client subnet via
    /// the router in every server namespace. Removed with the segment.
    pub fn add_router(&self, k: u32, upstream: &str, downstream: &str) -> Router {
        let script = workspace_root().join("scripts/netns.sh");
        let out = Command::new(&script)
            .args(["router", &self.name, &k.to_string(), upstream, downstream])
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "scripts/netns.sh router {} {k} {upstream} {downstream} failed ({}): {}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let address = |cidr: &str| -> Ipv4Addr {
            let ip = cidr.split_once('/').map_or(cidr, |(ip, _)| ip);
            ip.parse().unwrap_or_else(|_| panic!("not an IPv4 address/prefix: {cidr}"))
        };
        Router {
            ns: format!("{}-r{k}", self.name),
            client_ns: format!("{}-r{k}c1", self.name),
            upstream: address(upstream),
            downstream: address(downstream),
        }
    }
}

/// A router of a segment (`Segment::add_router`) and the client namespace behind it.
#[derive(Debug, Clone)]
pub struct Router {
    /// `NAME-rK`: eth0 on the segment, lan0 and relay0 on the client subnet.
    pub ns: String,
    /// `NAME-rKc1`: the client on the routed subnet (eth0, no address until a client configures one).
    pub client_ns: String,
    /// The router's address on the segment (eth0).
    pub upstream: Ipv4Addr,
    /// The router's address on the client subnet (lan0 and relay0): the clients' gateway.
    pub downstream: Ipv4Addr,
}

impl Drop for Segment {
    fn drop(&mut self) {
        let script = workspace_root().join("scripts/netns.sh");
        match Command::new(&script).arg("down").arg(&self.name).status() {
            Ok(status) if status.success() => {}
            other => eprintln!("warning: scripts/netns.sh down {} did not succeed: {other:?}", self.name),
        }
    }
}

/// The IPv4 addresses (with prefix length) on `dev` in namespace `ns`, from `ip -4 -o addr show`.
pub fn ipv4_addrs(ns: &str, dev: &str) -> Vec<(Ipv4Addr, u8)> {
    let out = Command::new("ip").args(["-n", ns, "-4", "-o", "addr", "show", "dev", dev]).output().expect("run ip");
    assert!(out.status.success(), "ip -n {ns} addr show {dev}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut addrs = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        while let Some(word) = words.next() {
            if word == "inet" {
                let cidr = words.next().unwrap_or_default();
                let (ip, len) = cidr.split_once('/').unwrap_or((cidr, "32"));
                addrs.push((ip.parse().expect("an IPv4 address from ip(8)"), len.parse().expect("a prefix length")));
            }
        }
    }
    addrs
}

/// The MAC address of `dev` in namespace `ns`, lower case `aa:bb:…`.
pub fn mac_of(ns: &str, dev: &str) -> String {
    let out = Command::new("ip").args(["-n", ns, "-o", "link", "show", "dev", dev]).output().expect("run ip");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    while let Some(word) = words.next() {
        if word == "link/ether" {
            return words.next().expect("a MAC after link/ether").to_ascii_lowercase();
        }
    }
    panic!("no link/ether in `ip -n {ns} link show {dev}`: {text}");
}

// ---------------------------------------------------------------------------------------------------------
// HTTP inside a namespace

/// Runs `f` on a thread that has entered network namespace `ns` (setns(2) changes only that thread).
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/var/run/netns/{ns}");
    let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns with an open network-namespace descriptor; affects this thread only.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns into {ns}: {}", io::Error::last_os_error());
                f()
            })
            .join()
            .expect("the thread inside the namespace panicked")
    })
}

/// `GET path` over HTTP/1.0 to 127.0.0.1:`port` inside namespace `ns`: (status, body).
pub fn http_get(ns: &str, port: u16, path: &str) -> io::Result<(u16, String)> {
    let mut stream = in_netns(ns, || TcpStream::connect(("127.0.0.1", port)))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("not an HTTP response: {head:?}")))?;
    Ok((status, body.to_owned()))
}

// ---------------------------------------------------------------------------------------------------------
// The server under test

/// One lease as `GET /v1/leases` reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub mac: String,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    pub state: String,
    pub expires_at: u64,
}

/// Rows `all_lease_pages` asks for at a time (the server's most).
pub const LEASE_PAGE: usize = 10_000;

/// Read `GET /v1/leases` page by page with `get` (path -> body) until a page comes back short.
pub fn all_lease_pages(mut get: impl FnMut(&str) -> Result<String, String>) -> Result<Vec<Lease>, String> {
    let mut leases: Vec<Lease> = Vec::new();
    loop {
        let path = match leases.last() {
            None => format!("/v1/leases?limit={LEASE_PAGE}"),
            Some(last) => format!("/v1/leases?limit={LEASE_PAGE}&after={}", last.ip),
        };
        let body = get(&path)?;
        let page: Vec<Lease> =
            serde_json::from_str(&body).map_err(|e| format!("GET {path} is not a JSON lease array ({e}): {body}"))?;
        let full = page.len() == LEASE_PAGE;
        leases.extend(page);
        if !full {
            return Ok(leases);
        }
    }
}

/// The arguments of a single `leasehold serve` on a /16 segment: server 10.77.0.1, pool 10.77.1.0–10.77.255.254.
pub const SERVER_16_ARGS: [&str; 8] = [
    "--server-ip",
    "10.77.0.1",
    "--subnet-mask",
    "255.255.0.0",
    "--ip-start",
    "10.77.1.0",
    "--ip-end",
    "10.77.255.254",
];

/// `leasehold serve` running in a server namespace, with a fresh data directory (fsync on).
pub struct Server {
    pub ns: String,
    pub proc: Proc,
}

impl Server {
    /// Starts `leasehold serve --interface eth0 --data-dir DIR --admin-listen 127.0.0.1:6767 ARGS…` (no
    /// `--admin-listen` when ARGS has one, and `--log-level info` unless ARGS has a level) in namespace `ns`; waits until `GET /healthz` answers 200.
    pub fn start(ns: &str, data_dir: &Path, log: &Path, args: &[&str]) -> Server {
        Server::start_on(ns, Some("eth0"), data_dir, log, args)
    }

    /// `start` with `--interface IF`, or none (the config file's `[[interface]]` tables name them).
    pub fn start_on(ns: &str, interface: Option<&str>, data_dir: &Path, log: &Path, args: &[&str]) -> Server {
        let mut server = Server::spawn(ns, interface, data_dir, log, args);
        server.wait_healthy(Duration::from_secs(20));
        server
    }

    /// `start_on` without waiting for `/healthz` (a node that is not expected to find a leader, or
    /// whose admin API speaks HTTPS).
    pub fn spawn(ns: &str, interface: Option<&str>, data_dir: &Path, log: &Path, args: &[&str]) -> Server {
        let bin = leasehold_bin();
        assert!(
            bin.is_file(),
            "the server binary {} does not exist: build it first (cargo build --bin leasehold) or set LEASEHOLD_BIN",
            bin.display()
        );
        let mut cmd = in_ns(ns, &bin);
        cmd.arg("serve");
        if let Some(interface) = interface {
            cmd.args(["--interface", interface]);
        }
        cmd.arg("--data-dir").arg(data_dir);
        // ARGS may name another admin listener (on the port `http_get` reaches, e.g. 0.0.0.0).
        if !args.contains(&"--admin-listen") {
            cmd.args(["--admin-listen", &format!("127.0.0.1:{ADMIN_PORT}")]);
        }
        if !args.contains(&"--log-level") {
            cmd.args(["--log-level", "info"]);
        }
        cmd.args(args);
        let proc = Proc::spawn("leasehold serve", cmd, log);
        Server { ns: ns.to_owned(), proc }
    }

    /// Polls `GET /healthz` (no event to wait on: the server gives no readiness signal) every 50 ms,
    /// failing fast if the process exits.
    fn wait_healthy(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.proc.try_status() {
                panic!("leasehold serve exited with {status} before it was healthy");
            }
            let last = match http_get(&self.ns, ADMIN_PORT, "/healthz") {
                Ok((200, _)) => return,
                Ok((code, body)) => format!("HTTP {code}: {body}"),
                Err(e) => e.to_string(),
            };
            assert!(Instant::now() < deadline, "GET /healthz did not answer 200 within {limit:?} (last: {last})");
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every page of `GET /v1/leases`.
    pub fn leases(&self) -> Vec<Lease> {
        all_lease_pages(|path| {
            let (code, body) = http_get(&self.ns, ADMIN_PORT, path).map_err(|e| format!("GET {path}: {e}"))?;
            if code != 200 {
                return Err(format!("GET {path} answered HTTP {code}: {body}"));
            }
            Ok(body)
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The lease record for `ip`, if the server has one.
    pub fn lease_of(&self, ip: Ipv4Addr) -> Option<Lease> {
        self.leases().into_iter().find(|lease| lease.ip == ip)
    }

    /// Polls `GET /v1/leases` every 50 ms until the record for `ip` satisfies `want` (the server's
    /// state changes after it has answered the client; there is no event to wait on).
    pub fn wait_lease(&self, ip: Ipv4Addr, limit: Duration, what: &str, want: impl Fn(&Lease) -> bool) -> Lease {
        let deadline = Instant::now() + limit;
        loop {
            let lease = self.lease_of(ip);
            if let Some(lease) = &lease {
                if want(lease) {
                    return lease.clone();
                }
            }
            if Instant::now() >= deadline {
                panic!("expected the server's lease for {ip} to be {what} within {limit:?}; /v1/leases has {lease:?}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET /metrics` as text.
    pub fn metrics(&self) -> String {
        let (code, body) = http_get(&self.ns, ADMIN_PORT, "/metrics").expect("GET /metrics");
        assert_eq!(code, 200, "GET /metrics answered HTTP {code}: {body}");
        body
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.proc.stop(Duration::from_secs(5));
        if thread::panicking() {
            eprintln!("leasehold serve's log (the test failed):\n{}", tail_of(&self.proc.log));
        }
    }
}

/// A packet capture of the DHCP traffic on `eth0` of a namespace (`tcpdump -n -vvv --immediate-mode`, decoded
/// to a text file); printed when the test fails, so the failure shows what was on the wire.
pub struct Capture {
    proc: Proc,
}

impl Capture {
    pub fn start(ns: &str, file: &Path) -> Capture {
        let tcpdump = require_tool("tcpdump");
        let mut cmd = in_ns(ns, tcpdump);
        cmd.args(["-i", "eth0", "-n", "-vvv", "--immediate-mode", "-l", "udp port 67 or udp port 68"]);
        let proc = Proc::spawn("tcpdump", cmd, file);
        wait_tcpdump_listening(file);
        Capture { proc }
    }
}

/// Waits (at most 10 s) until the tcpdump writing to `log` says "listening on eth0": its socket is then open
/// and no packet is missed after that.
pub fn wait_tcpdump_listening(log: &Path) {
    poll_until(
        Duration::from_secs(10),
        || fs::read_to_string(log).unwrap_or_default().contains("listening on"),
        |listening| *listening,
        |_| format!("tcpdump did not start within 10 s\n{}", tail_of(log)),
    );
}

impl Drop for Capture {
    fn drop(&mut self) {
        // SIGINT: tcpdump writes what it has and exits.
        if self.proc.try_status().is_none() {
            signal(self.proc.pid, libc::SIGINT);
            self.proc.wait_exit(Duration::from_secs(3));
        }
        if thread::panicking() {
            let text = fs::read_to_string(&self.proc.log).unwrap_or_default();
            let start = text.len().saturating_sub(20_000);
            let start = (start..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
            eprintln!("capture on the client's eth0 (the test failed):\n{}", &text[start..]);
        }
    }
}

/// The value of the Prometheus sample `name{labels}` (labels exactly as written, e.g. `type="ack"`),
/// or of the unlabelled `name` when `labels` is empty.
pub fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    let key = if labels.is_empty() { name.to_owned() } else { format!("{name}{{{labels}}}") };
    text.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        (series.trim() == key).then(|| value.trim().parse().ok()).flatten()
    })
}

// ---------------------------------------------------------------------------------------------------------
// Client events

/// A named pipe the clients' hook scripts write one line per event to (`<reason> <address>`); a reader
/// thread forwards the lines, so the test waits on the event itself.
pub struct Events {
    pub path: PathBuf,
    lines: Receiver<String>,
    pub seen: Vec<String>,
}

impl Events {
    pub fn new(dir: &Path) -> Events {
        let path = dir.join("events.fifo");
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("a path without NUL");
        // SAFETY: mkfifo with a valid NUL-terminated path.
        let rc = unsafe { libc::mkfifo(c_path.as_ptr(), 0o666) };
        assert_eq!(rc, 0, "mkfifo {}: {}", path.display(), io::Error::last_os_error());
        // Opened read-write so that hooks never block in open(2) and the reader never sees end-of-file
        // between two writers. (std opens with O_CLOEXEC: the clients do not inherit it.)
        let fifo = OpenOptions::new().read(true).write(true).open(&path).expect("open the event fifo");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(fifo).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Events { path, lines: rx, seen: Vec::new() }
    }

    /// Waits (at most `limit`) for the next event whose first word is one of `reasons`; returns its
    /// words. Events in between are kept in `seen` for failure messages.
    pub fn expect(&mut self, reasons: &[&str], limit: Duration, step: &str) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
                    if words.first().is_some_and(|reason| reasons.contains(&reason.as_str())) {
                        return words;
                    }
                }
                Err(_) => panic!(
                    "{step}: expected a client event {reasons:?} within {limit:?}; events so far: {:?}",
                    self.seen
                ),
            }
        }
    }
}

/// Writes `DIR/udhcpc-hook.sh`, the hook script of busybox udhcpc: it configures only $interface (the client
/// namespace's eth0) and reports "<event> <address> <server id>" on the pipe of `events`. Returns its path.
pub fn udhcpc_hook(dir: &Path, events: &Events) -> PathBuf {
    let hook = dir.join("udhcpc-hook.sh");
    write_script(
        &hook,
        &format!(
            r#"#!/bin/sh
# udhcpc hook of the Leasehold tests: configures only $interface (the client namespace's eth0) and
# reports "<event> <address> <server id>" on the test's pipe.
case "$1" in
bound|renew)
    ip -4 addr flush dev "$interface"
    ip -4 addr replace "$ip/$mask" dev "$interface"
    ;;
deconfig)
    ip -4 addr flush dev "$interface"
    ;;
esac
echo "$1 ${{ip:--}} ${{serverid:--}}" > {fifo}
"#,
            fifo = events.path.display()
        ),
    );
    hook
}

/// A subdirectory of a test's scratch directory (one per real client, for its event pipe).
pub fn subdir(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    fs::create_dir_all(&path).expect("create a subdirectory");
    path
}

/// ISC dhclient in a client namespace, with a hook that configures only eth0 (its address and, when the
/// server sent routers, the default route via the first) and reports
/// "<reason> <address> <server id> <routers…>" on the pipe ("-" for what is missing).
pub struct Dhclient {
    pub ns: String,
    pub dir: PathBuf,
    pub events: Events,
    pub hook: PathBuf,
    pub conf: PathBuf,
}

impl Dhclient {
    pub fn new(ns: &str, dir: &Path) -> Dhclient {
        let events = Events::new(dir);
        let hook = dir.join("dhclient-hook.sh");
        write_script(
            &hook,
            &format!(
                r#"#!/bin/sh
case "$reason" in
BOUND|RENEW|REBIND|REBOOT)
    ip -4 addr replace "$new_ip_address/$new_subnet_mask" dev "$interface"
    if [ -n "$new_routers" ]; then
        set -- $new_routers
        ip -4 route replace default via "$1" dev "$interface"
    fi
    ;;
RELEASE|EXPIRE|FAIL|STOP)
    ip -4 addr flush dev "$interface"
    ;;
esac
echo "$reason ${{new_ip_address:-${{old_ip_address:--}}}} ${{new_dhcp_server_identifier:--}} ${{new_routers:--}}" > {fifo}
"#,
                fifo = events.path.display()
            ),
        );
        let conf = dir.join("dhclient.conf");
        // backoff-cutoff 2: retransmit at least every 2-3 s, so that with a short lease a broadcast REQUEST
        // goes out between T2 and the expiry (dhclient's random exponential backoff could skip that window).
        fs::write(&conf, "timeout 30;\ninitial-interval 1;\nbackoff-cutoff 2;\nrequest subnet-mask, routers;\n")
            .expect("write dhclient.conf");
        Dhclient { ns: ns.to_owned(), dir: dir.to_owned(), events, hook, conf }
    }

    /// `dhclient -4 -v FLAG …` to completion (`-1`: bind and daemonise; `-x`: stop the daemon).
    pub fn run(&self, flag: &str, limit: Duration) {
        let mut cmd = in_ns(&self.ns, require_tool("dhclient"));
        cmd.args(["-4", "-v", flag]).arg("-cf").arg(&self.conf);
        cmd.arg("-pf").arg(self.dir.join("dhclient.pid")).arg("-lf").arg(self.dir.join("dhclient.leases"));
        cmd.arg("-sf").arg(&self.hook).arg("eth0");
        run_ok(&format!("dhclient {flag}"), cmd, &self.dir.join("dhclient.log"), limit);
    }
}

/// Parses the address an event reported.
pub fn event_ip(words: &[String], step: &str) -> Ipv4Addr {
    let text = words.get(1).map(String::as_str).unwrap_or_default();
    text.parse().unwrap_or_else(|_| panic!("{step}: the client reported {words:?}, expected an IPv4 address"))
}

/// dhcpcd running on `eth0` of a client namespace, in a private mount namespace with tmpfs over
/// /run and /var/lib/dhcpcd (which all namespaces share), reporting "<reason> <address> <lease
/// time>" on `events`. `control` runs `dhcpcd -4 FLAG eth0` inside that mount namespace (nsenter)
/// to reach the daemon's control socket: `-n` renews, `-k` releases and stops it.
pub struct Dhcpcd {
    pub daemon: Proc,
    pub events: Events,
    pub log: PathBuf,
    bin: PathBuf,
}

impl Dhcpcd {
    pub fn start(ns: &str, dir: &Path) -> Dhcpcd {
        let bin = require_tool("dhcpcd");
        let events = Events::new(dir);
        let hook = dir.join("dhcpcd-hook.sh");
        write_script(
            &hook,
            &format!(
                r#"#!/bin/sh
# dhcpcd script of the Leasehold tests: dhcpcd configures eth0 itself; this only reports
# "<reason> <address> <lease time>" on the test's pipe.
case "$reason" in
BOUND|RENEW|REBIND|REBOOT) echo "$reason $new_ip_address $new_dhcp_lease_time" > {fifo} ;;
*) echo "$reason ${{old_ip_address:--}}" > {fifo} ;;
esac
"#,
                fifo = events.path.display()
            ),
        );
        let conf = dir.join("dhcpcd.conf");
        fs::write(
            &conf,
            format!(
                "# Leasehold test: IPv4 only, no link-local fallback, no system file touched.\n\
                 ipv4only\nnoipv4ll\n\
                 nohook resolv.conf, hostname, ntp.conf, timesyncd, yp.conf, wpa_supplicant, mtu\n\
                 script {}\n",
                hook.display()
            ),
        )
        .expect("write dhcpcd.conf");
        let mut cmd = in_ns(ns, "unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c"]).arg(format!(
            "mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/lib/dhcpcd && exec {} -f {} -4 -B -t 30 eth0",
            bin.display(),
            conf.display()
        ));
        let log = dir.join("dhcpcd.log");
        let daemon = Proc::spawn("dhcpcd", cmd, &log);
        Dhcpcd { daemon, events, log, bin }
    }

    pub fn control(&self, what: &str, flag: &str) {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.daemon.pid.to_string(), "-m", "-n"]).arg(&self.bin).args(["-4", flag, "eth0"]);
        run_ok(what, cmd, &self.log, Duration::from_secs(30));
    }
}
