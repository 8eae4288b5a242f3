//! The docker compose setup (`scripts/compose/`): a 3-node cluster and udhcpc clients in containers on
//! one Docker bridge network, driven the way a user drives it.
//!
//! 1. `scripts/compose/build-image.sh --profile compose-test --features etcd --etcd-tag
//!    leasehold-etcd:compose-test` builds the image `leasehold:compose-test` from the `Dockerfile`
//!    (cargo inside the build, from this working tree's source) on local stand-ins for its base
//!    images, and the etcd image for the etcd variant: nothing pulled. It fails the test when it fails; its output streams to the
//!    terminal (a cold build takes minutes).
//! 2. `docker compose -p lhtest<pid> -f scripts/compose/docker-compose.yml up -d` on a /24 that no
//!    Docker network uses yet (10.67.X.0/24), admin ports published on free 127.0.0.1 ports.
//! 3. Every node's `/healthz` answers 200 (through the published ports), all three agree on a leader,
//!    the client container's udhcpc logs `bound ip=…` and that address is bound to its MAC in
//!    `GET /v1/leases`.
//! 4. Admin writes need the cluster's admin token (issue 11): from the host, a membership DELETE
//!    without `Authorization` gets 401 and with a wrong token 403, and the client container (on the
//!    same bridge as the admin API) is refused a membership POST with 401; the members stay three.
//!    With the token the entrypoint generated (read from a node's volume) a reservation is made and
//!    removed.
//! 5. `docker kill` of the leader's container (found with `GET /v1/cluster`); the two survivors elect a
//!    new leader.
//! 6. A new client container (`run -d --no-deps client`) gets a different address from a survivor.
//! 7. The old client, sent SIGUSR1 (udhcpc: renew now), renews the *same* address from a survivor (a
//!    unicast renew to the dead server goes unanswered; udhcpc then rebinds by broadcast), and keeps
//!    it on its interface. The survivors' lease tables agree: both clients bound, no address twice.
//!
//! The etcd variant (`scripts/compose/docker-compose.etcd.yml`: 3 etcd members, 3 nodes with
//! `--store etcd`, a client), run beside it on its own /24 and project, same image:
//!
//! 1. `up -d`; every node healthy, `/v1/cluster` says store etcd with three endpoints, all three name
//!    the same elected node; nodes and etcd members run unprivileged (uid 10001 with the two
//!    capabilities; uid 10002 with none). The client is bound by the elected node, and every node's
//!    table has the binding (through its watch).
//! 2. `docker kill` of the elected node's container: the survivors elect another; a new client is
//!    bound by a survivor, and the old client renews its address with a survivor.
//! 3. `docker kill` of etcd1 (the first endpoint of every node): the survivors stay healthy and a
//!    third client is bound by a survivor.
//! 4. The killed node started again loads the pool from etcd (two members left): every live node's
//!    table holds the three leases, the same in each, no address or client twice.
//!
//! Both scenarios share one image build: `leasehold:compose-test` has the etcd feature, and
//! `leasehold-etcd:compose-test` (scripts/compose/etcd/Dockerfile) is built with it.
//!
//! Every command and every wait is bounded. Each project is taken down (`down -v`, then anything left
//! with the project's label) in `Drop`, also when the test fails; with the logs of every container
//! printed first on failure. Nothing else on the Docker engine is touched; the images stay.
//!
//! Without a Docker engine (`docker info` fails) the test fails and says so: it cannot run its subject,
//! and a test that passes without running proves nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The image the tests build (it stays after the test; `build-image.sh` replaces it next time), with
/// the etcd feature so that both scenarios run it.
const IMAGE: &str = "leasehold:compose-test";
/// The etcd server image the etcd scenario runs (scripts/compose/etcd/Dockerfile).
const ETCD_IMAGE: &str = "leasehold-etcd:compose-test";
/// The image build's bound: a cold one (stand-in bases, every crate compiled) takes minutes.
const BUILD_LIMIT_SECS: u64 = 30 * 60;
const NODES: [u64; 3] = [1, 2, 3];

/// A line on stderr that `cargo test` does not capture (progress and the "Docker absent" notice).
fn say(start: Instant, message: &str) {
    let _ = writeln!(std::io::stderr(), "compose test [{:5.1}s] {message}", start.elapsed().as_secs_f64());
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent directory").to_path_buf()
}

/// Run a command to completion within `timeout`: its output, or why not (killed when too slow).
fn try_run(command: &mut Command, timeout: Duration) -> Result<Output, String> {
    let description = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{description}: cannot start: {e}"))?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err_reader = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        bytes
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{description}: still running after {timeout:?}, killed"));
            }
            Err(e) => return Err(format!("{description}: wait: {e}")),
        }
    };
    Ok(Output { status, stdout: out_reader.join().unwrap_or_default(), stderr: err_reader.join().unwrap_or_default() })
}

/// Run a command that must succeed within `timeout`; its stdout.
fn run_ok(command: &mut Command, timeout: Duration) -> String {
    let description = format!("{command:?}");
    let output = try_run(command, timeout).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        output.status.success(),
        "{description} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn docker(args: &[&str]) -> Command {
    let mut command = Command::new("docker");
    command.args(args);
    command
}

/// Poll `probe` every 250 ms until it gives a value; panic with `what` after `timeout`.
fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        thread::sleep(Duration::from_millis(250));
    }
}

/// `GET path` on 127.0.0.1:port (HTTP/1.0, 3 s timeouts): status code and body, or None when the
/// node does not answer.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    stream.set_write_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    Some((status, body))
}

/// `METHOD path` on 127.0.0.1:port with an optional JSON body and `Authorization` value: status and
/// body, or None when the node does not answer.
fn http_request(port: u16, method: &str, path: &str, body: Option<&str>, auth: Option<&str>) -> Option<(u16, String)> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    stream.set_write_timeout(Some(Duration::from_secs(3))).ok()?;
    let body = body.unwrap_or("");
    let mut request = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(auth) = auth {
        request.push_str(&format!("Authorization: {auth}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    Some((status, body))
}

fn member_ids(port: u16) -> Option<Vec<u64>> {
    let view = get_json(port, "/v1/cluster")?;
    Some(view["members"].as_array()?.iter().filter_map(|m| m["id"].as_u64()).collect())
}

fn get_json(port: u16, path: &str) -> Option<Value> {
    match http_get(port, path)? {
        (200, body) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// One `leasehold-client: EVENT key=value …` line of the udhcpc hook.
#[derive(Debug, Clone)]
struct ClientEvent {
    event: String,
    fields: BTreeMap<String, String>,
}

impl ClientEvent {
    fn ip(&self) -> Ipv4Addr {
        self.fields.get("ip").and_then(|ip| ip.parse().ok()).unwrap_or_else(|| panic!("no ip in {self:?}"))
    }
    fn server(&self) -> Ipv4Addr {
        self.fields.get("serverid").and_then(|ip| ip.parse().ok()).unwrap_or_else(|| panic!("no serverid in {self:?}"))
    }
}

fn client_events(logs: &str) -> Vec<ClientEvent> {
    logs.lines()
        .filter_map(|line| line.trim().strip_prefix("leasehold-client: "))
        .map(|rest| {
            let mut words = rest.split_whitespace();
            let event = words.next().unwrap_or_default().to_string();
            let fields = words
                .filter_map(|word| word.split_once('='))
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect();
            ClientEvent { event, fields }
        })
        .collect()
}

/// The compose project of this test; `Drop` takes it down.
struct Project {
    compose: Vec<String>,
    name: String,
    file: PathBuf,
    net: String,
    ports: BTreeMap<u64, u16>,
}

impl Project {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.compose[0]);
        command.args(&self.compose[1..]).arg("-p").arg(&self.name).arg("-f").arg(&self.file).args(args);
        command.env("LEASEHOLD_IMAGE", IMAGE).env("LEASEHOLD_ETCD_IMAGE", ETCD_IMAGE).env("LEASEHOLD_NET", &self.net);
        for (node, port) in &self.ports {
            command.env(format!("LEASEHOLD_ADMIN_PORT_{node}"), port.to_string());
        }
        command
    }

    fn node_ip(&self, node: u64) -> Ipv4Addr {
        format!("{}.{}", self.net, 10 + node).parse().expect("a node address")
    }

    fn node_of(&self, ip: Ipv4Addr) -> Option<u64> {
        NODES.into_iter().find(|&node| self.node_ip(node) == ip)
    }

    /// The containers of one service (several for `client` after `run`), by id.
    fn containers(&self, service: &str) -> BTreeSet<String> {
        let project = format!("label=com.docker.compose.project={}", self.name);
        let service = format!("label=com.docker.compose.service={service}");
        run_ok(&mut docker(&["ps", "-aq", "--no-trunc", "--filter", &project, "--filter", &service]), secs(30))
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn container(&self, service: &str) -> String {
        let ids = self.containers(service);
        assert_eq!(ids.len(), 1, "one container for {service}: {ids:?}");
        ids.into_iter().next().expect("one id")
    }

    /// Docker labels are the one thing every compose version puts on what it creates.
    fn leftovers(&self, kind: &[&str]) -> Vec<String> {
        let label = format!("label=com.docker.compose.project={}", self.name);
        let mut args = kind.to_vec();
        args.extend(["-q", "--filter", &label]);
        match try_run(&mut docker(&args), secs(30)) {
            Ok(output) => String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if thread::panicking() {
            if let Ok(output) = try_run(&mut self.command(&["logs", "--no-color", "--tail", "150"]), secs(30)) {
                let _ = writeln!(
                    std::io::stderr(),
                    "compose test failed; logs of {}:\n{}{}",
                    self.name,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
        let down = try_run(&mut self.command(&["down", "-v", "--remove-orphans", "-t", "2"]), secs(120));
        if let Err(e) = &down {
            let _ = writeln!(std::io::stderr(), "compose test: down: {e}");
        }
        // Whatever `down` missed or left when it failed: this project's containers, network, volumes.
        for id in self.leftovers(&["ps", "-a"]) {
            let _ = try_run(&mut docker(&["rm", "-f", "-v", &id]), secs(30));
        }
        for id in self.leftovers(&["network", "ls"]) {
            let _ = try_run(&mut docker(&["network", "rm", &id]), secs(30));
        }
        for name in self.leftovers(&["volume", "ls"]) {
            let _ = try_run(&mut docker(&["volume", "rm", "-f", &name]), secs(30));
        }
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `docker compose` (v2 plugin) when there is one, else `docker-compose` (v1).
fn compose_command() -> Vec<String> {
    let works = |program: &str, args: &[&str]| {
        try_run(Command::new(program).args(args), secs(30)).map(|o| o.status.success()).unwrap_or(false)
    };
    if works("docker", &["compose", "version"]) {
        vec!["docker".into(), "compose".into()]
    } else if works("docker-compose", &["version"]) {
        vec!["docker-compose".into()]
    } else {
        panic!("Docker is running but neither `docker compose` nor `docker-compose` is installed")
    }
}

/// Subnets and ports this process has handed out: the two scenarios run in parallel threads, and
/// neither's network exists yet when the other looks.
fn claimed() -> std::sync::MutexGuard<'static, (BTreeSet<String>, BTreeSet<u16>)> {
    static CLAIMED: Mutex<(BTreeSet<String>, BTreeSet<u16>)> = Mutex::new((BTreeSet::new(), BTreeSet::new()));
    CLAIMED.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The first three octets of a 10.67.X.0/24 that no Docker network's subnet mentions yet, and that
/// this process has not given to another scenario.
fn free_subnet() -> String {
    let mut claimed = claimed();
    let ids = run_ok(&mut docker(&["network", "ls", "-q"]), secs(30));
    let mut args = vec!["network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}"];
    args.extend(ids.lines());
    let used = run_ok(&mut docker(&args), secs(30));
    let first = 100 + std::process::id() % 150;
    let net = (0..150)
        .map(|i| format!("10.67.{}", 100 + (first - 100 + i) % 150))
        .find(|net| !used.contains(&format!("{net}.")) && !claimed.0.contains(net))
        .expect("a free 10.67.X.0/24 for the test network");
    claimed.0.insert(net.clone());
    net
}

/// Three ports on 127.0.0.1 that are free now (released just before compose binds them), and not
/// given to another scenario of this process.
fn free_ports() -> BTreeMap<u64, u16> {
    let mut claimed = claimed();
    let mut listeners = Vec::new();
    while listeners.len() < NODES.len() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free loopback port");
        let port = listener.local_addr().expect("local address").port();
        if claimed.1.insert(port) {
            listeners.push(listener);
        }
    }
    NODES.into_iter().zip(listeners.iter().map(|l| l.local_addr().expect("local address").port())).collect()
}

/// Each surviving node's idea of the leader, once they all name the same one that is in `among`.
fn agreed_leader(project: &Project, nodes: &[u64], among: &[u64]) -> Option<u64> {
    let mut leaders = BTreeSet::new();
    for node in nodes {
        let view = get_json(project.ports[node], "/v1/cluster")?;
        leaders.insert(view["leader_id"].as_u64()?);
    }
    let leader = *leaders.first()?;
    (leaders.len() == 1 && among.contains(&leader)).then_some(leader)
}

/// The bound leases in a node's table: ip -> mac.
fn bound_leases(port: u16) -> Option<BTreeMap<Ipv4Addr, String>> {
    let rows = get_json(port, "/v1/leases")?;
    let mut bound = BTreeMap::new();
    for row in rows.as_array()? {
        if row["state"] == "bound" {
            let ip: Ipv4Addr = row["ip"].as_str()?.parse().ok()?;
            assert!(bound.insert(ip, row["mac"].as_str()?.to_string()).is_none(), "{ip} bound twice: {rows}");
        }
    }
    Some(bound)
}

fn container_logs(id: &str) -> String {
    let output = try_run(&mut docker(&["logs", id]), secs(30)).unwrap_or_else(|e| panic!("{e}"));
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn container_mac(id: &str) -> String {
    let format = "{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}";
    run_ok(&mut docker(&["inspect", "-f", format, id]), secs(30)).trim().to_lowercase()
}

/// The first `bound` event in a client's log.
fn wait_bound(start: Instant, id: &str) -> ClientEvent {
    let event = wait_for(&format!("a lease in the logs of client {id}"), secs(45), || {
        client_events(&container_logs(id)).into_iter().find(|e| e.event == "bound")
    });
    say(start, &format!("client {} bound {} from {}", &id[..12], event.ip(), event.server()));
    event
}

/// A Docker engine with compose, or a loud failure: the `docker compose` command line to use.
fn require_docker() -> Vec<String> {
    match try_run(&mut docker(&["info"]), secs(60)) {
        Ok(output) if output.status.success() => {}
        other => {
            let why = match other {
                Ok(output) => String::from_utf8_lossy(&output.stderr).trim().to_string(),
                Err(e) => e,
            };
            panic!(
                "the compose test needs a Docker engine with compose, and `docker info` failed ({why}): install \
                 and start Docker (the rust-docker machine has it; see scripts/compose/README.md)"
            );
        }
    }
    compose_command()
}

/// The two images, built once for both scenarios (the second to ask waits for the first's build):
/// `leasehold:compose-test` with the etcd feature and `leasehold-etcd:compose-test`, neither with a
/// setuid or setgid file. The build's output goes straight to the terminal (cargo does not capture a
/// child's), so a slow or failing build shows where it is.
fn build_images(start: Instant) {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        say(start, "building the images from the Dockerfiles (scripts/compose/build-image.sh)");
        let root = workspace_root();
        let mut build = Command::new(root.join("scripts/compose/build-image.sh"));
        build
            .args(["--tag", IMAGE, "--profile", "compose-test", "--features", "etcd", "--etcd-tag", ETCD_IMAGE])
            .stdin(Stdio::null());
        let status = build
            .spawn()
            .and_then(|mut child| {
                let deadline = Instant::now() + secs(BUILD_LIMIT_SECS);
                loop {
                    if let Some(status) = child.try_wait()? {
                        return Ok(Some(status));
                    }
                    if Instant::now() >= deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Ok(None);
                    }
                    thread::sleep(Duration::from_millis(250));
                }
            })
            .map_err(|e| format!("scripts/compose/build-image.sh: cannot run: {e}"))?;
        match status {
            Some(status) if status.success() => {}
            Some(status) => {
                return Err(format!("scripts/compose/build-image.sh failed ({status}): see its output above"))
            }
            None => {
                return Err(format!("scripts/compose/build-image.sh: still running after {BUILD_LIMIT_SECS} s, killed"))
            }
        }
        say(start, &format!("images {IMAGE} and {ETCD_IMAGE} built"));
        // No setuid or setgid file in either image: nothing a node runs gains privileges by exec (the
        // nodes run without no-new-privileges, which would void their binary's file capabilities).
        for image in [IMAGE, ETCD_IMAGE] {
            let find = ["run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "find", image, "/", "-xdev"];
            let output = try_run(docker(&find).args(["-type", "f", "-perm", "/6000"]), secs(60))?;
            let setid = String::from_utf8_lossy(&output.stdout);
            if !output.status.success() || !setid.trim().is_empty() {
                return Err(format!("setuid or setgid files in {image} (or find failed: {}): {setid}", output.status));
            }
        }
        Ok(())
    });
    if let Err(e) = built {
        panic!("{e}");
    }
}

/// `/proc/1/status` of a container: the field `name` (without it).
fn process_one(id: &str) -> impl Fn(&str) -> String {
    let status = run_ok(&mut docker(&["exec", id, "cat", "/proc/1/status"]), secs(30));
    move |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string()).unwrap_or_default()
    }
}

/// Every node's process 1 is leasehold, as the image's user leasehold (10001), with exactly port
/// 67's and SO_BINDTODEVICE's capabilities (CAP_NET_BIND_SERVICE 10, CAP_NET_RAW 13) effective,
/// from its binary's file capabilities, and no other in reach (the bounding set).
fn check_node_processes(start: Instant, project: &Project) {
    let two = format!("{:016x}", (1u64 << 10) | (1u64 << 13));
    for node in NODES {
        let field = process_one(&project.container(&format!("node{node}")));
        assert_eq!(field("Name:"), "leasehold", "node{node}: process 1");
        assert!(field("Uid:").starts_with("10001"), "node{node} runs as 10001: Uid {}", field("Uid:"));
        for set in ["CapEff:", "CapPrm:", "CapBnd:"] {
            assert_eq!(field(set), two, "node{node}: {set} NET_BIND_SERVICE and NET_RAW only");
        }
        assert_eq!(field("CapInh:"), "0000000000000000", "node{node}: no inheritable capability");
        assert_eq!(field("CapAmb:"), "0000000000000000", "node{node}: no ambient capability");
    }
    say(start, "nodes run as uid 10001 with CAP_NET_BIND_SERVICE and CAP_NET_RAW effective, and no other");
}

#[test]
fn compose_cluster_survives_leader_kill() {
    let start = Instant::now();
    let compose = require_docker();
    let root = workspace_root();
    build_images(start);

    let project = Project {
        compose,
        name: format!("lhtest{}", std::process::id()),
        file: root.join("scripts/compose/docker-compose.yml"),
        net: free_subnet(),
        ports: free_ports(),
    };
    say(start, &format!("project {} on {}.0/24, admin ports {:?}", project.name, project.net, project.ports));
    // `up` waits for the nodes' health checks before it starts the client.
    run_ok(&mut project.command(&["up", "-d"]), secs(180));
    say(start, "up");

    for node in NODES {
        let port = project.ports[&node];
        wait_for(&format!("node {node}: /healthz 200 on 127.0.0.1:{port}"), secs(60), || {
            http_get(port, "/healthz").filter(|(status, _)| *status == 200)
        });
    }
    let leader = wait_for("the three nodes to agree on a leader", secs(30), || agreed_leader(&project, &NODES, &NODES));
    say(start, &format!("healthy; leader: node {leader}"));

    check_node_processes(start, &project);

    // Every node serves the boot-files volume over HTTP (port 80, apart from the admin API): the same
    // bytes from each, fetched from the DHCP client's container.
    let boot_file = std::fs::read_to_string(root.join("scripts/compose/boot/README.txt")).expect("the boot file");
    let client = project.container("client");
    for node in NODES {
        let url = format!("http://{}/README.txt", project.node_ip(node));
        let got = run_ok(&mut docker(&["exec", &client, "wget", "-q", "-O", "-", &url]), secs(30));
        assert_eq!(got, boot_file, "node{node} serves the boot files at {url}");
    }
    say(start, "every node serves the boot files over HTTP");

    // The first client's lease, in its log and in the replicated table.
    let old_client = project.container("client");
    let old_mac = container_mac(&old_client);
    let old_lease = wait_bound(start, &old_client);
    let old_ip = old_lease.ip();
    let pool = |ip: Ipv4Addr| {
        ip.to_string().starts_with(&format!("{}.", project.net)) && (100..=199).contains(&ip.octets()[3])
    };
    assert!(pool(old_ip), "{old_ip} is outside the pool {}.100-199", project.net);
    assert_eq!(old_lease.server(), project.node_ip(leader), "the leader answers broadcast DISCOVER/REQUEST");
    for node in NODES {
        let port = project.ports[&node];
        wait_for(&format!("node {node}: {old_ip} bound to {old_mac} in /v1/leases"), secs(20), || {
            bound_leases(port).filter(|leases| leases.get(&old_ip) == Some(&old_mac))
        });
    }

    // Admin writes need the token. From the host, without it and with a wrong one:
    let leader_port = project.ports[&leader];
    let answer = |method: &str, path: &str, body: Option<&str>, auth: Option<&str>| {
        http_request(leader_port, method, path, body, auth)
            .unwrap_or_else(|| panic!("node {leader} did not answer {method} {path}"))
    };
    let (status, body) = answer("DELETE", "/v1/cluster/nodes/3", None, None);
    assert_eq!(status, 401, "a membership write without a token: {body}");
    let (status, body) = answer("DELETE", "/v1/cluster/nodes/3", None, Some("Bearer not-the-admin-token-0123"));
    assert_eq!(status, 403, "a membership write with a wrong token: {body}");
    // From the DHCP client's container, on the bridge the admin API listens on:
    let node_url = format!("http://{}:6767/v1/cluster/nodes", project.node_ip(leader));
    let join = r#"{"id": 9, "addr": "10.67.0.99:6768"}"#;
    let from_client =
        try_run(&mut docker(&["exec", &old_client, "wget", "-q", "-O", "-", "--post-data", join, &node_url]), secs(30))
            .unwrap_or_else(|e| panic!("{e}"));
    let said = String::from_utf8_lossy(&from_client.stderr).into_owned();
    assert!(!from_client.status.success() && said.contains("401"), "the client container must get 401: {said}");
    assert_eq!(member_ids(leader_port), Some(vec![1, 2, 3]), "the refused writes changed nothing");
    say(start, "admin writes without the token: 401 from the host and from the client container, 403 with a wrong one");
    // With the token the nodes share (generated on their volume, which the client does not mount):
    let node_container = project.container(&format!("node{leader}"));
    let token = run_ok(&mut docker(&["exec", &node_container, "cat", "/secret/admin.token"]), secs(30));
    let bearer = format!("Bearer {}", token.trim());
    let reservation = "/v1/reservations/52:54:00:c0:ff:ee";
    let reserved = format!(r#"{{"ip": "{}.150"}}"#, project.net);
    let (status, body) = answer("PUT", reservation, Some(&reserved), Some(&bearer));
    assert_eq!(status, 200, "a reservation with the token: {body}");
    let (status, body) = answer("DELETE", reservation, None, Some(&bearer));
    assert_eq!(status, 200, "its removal with the token: {body}");

    // Kill the leader; the survivors elect another.
    let leader_container = project.container(&format!("node{leader}"));
    let killed_at = Instant::now();
    run_ok(&mut docker(&["kill", &leader_container]), secs(30));
    let survivors: Vec<u64> = NODES.into_iter().filter(|&node| node != leader).collect();
    let new_leader =
        wait_for("a new leader among the survivors", secs(30), || agreed_leader(&project, &survivors, &survivors));
    say(
        start,
        &format!("killed node {leader}; node {new_leader} leads after {:.1}s", killed_at.elapsed().as_secs_f64()),
    );

    // A new client after the failover.
    run_ok(&mut project.command(&["run", "-d", "--no-deps", "client"]), secs(120));
    let new_client = wait_for("the new client container", secs(30), || {
        project.containers("client").into_iter().find(|id| *id != old_client)
    });
    let new_mac = container_mac(&new_client);
    let new_lease = wait_bound(start, &new_client);
    let new_ip = new_lease.ip();
    assert!(pool(new_ip), "{new_ip} is outside the pool");
    assert_ne!(new_ip, old_ip, "the new client got the old client's address");
    assert!(
        survivors.contains(&project.node_of(new_lease.server()).unwrap_or(0)),
        "served by a survivor: {new_lease:?}"
    );

    // The old client renews now (SIGUSR1): same address, from a survivor.
    let seen = client_events(&container_logs(&old_client)).len();
    run_ok(&mut docker(&["kill", "-s", "USR1", &old_client]), secs(30));
    let renewed = wait_for("the old client's renewal after SIGUSR1", secs(45), || {
        client_events(&container_logs(&old_client)).into_iter().skip(seen).find(|e| e.event != "deconfig")
    });
    say(start, &format!("old client: {} {} from {}", renewed.event, renewed.ip(), renewed.server()));
    assert_eq!(renewed.event, "renew", "the old client renewed rather than starting over: {renewed:?}");
    assert_eq!(renewed.ip(), old_ip, "the old client keeps its address");
    assert!(survivors.contains(&project.node_of(renewed.server()).unwrap_or(0)), "renewed by a survivor: {renewed:?}");
    let after = client_events(&container_logs(&old_client));
    assert!(!after[seen..].iter().any(|e| e.event == "deconfig"), "the old client lost its address: {after:?}");
    let addresses = run_ok(&mut docker(&["exec", &old_client, "ip", "-4", "addr", "show", "eth0"]), secs(30));
    assert!(addresses.contains(&format!("inet {old_ip}/")), "{old_ip} is on the old client's eth0:\n{addresses}");

    // The survivors' tables agree: both clients bound, each to its own MAC.
    for node in &survivors {
        let port = project.ports[node];
        wait_for(&format!("node {node}: both leases in /v1/leases"), secs(20), || {
            bound_leases(port)
                .filter(|leases| leases.get(&old_ip) == Some(&old_mac) && leases.get(&new_ip) == Some(&new_mac))
        });
    }
    say(start, "both clients bound on every survivor; tearing down");
}

/// The etcd variant: 3 etcd members and 3 nodes with `--store etcd` (module documentation).
#[test]
fn compose_etcd_cluster_survives_node_and_member_kill() {
    let start = Instant::now();
    let compose = require_docker();
    let root = workspace_root();
    build_images(start);

    let project = Project {
        compose,
        name: format!("lhtest{}etcd", std::process::id()),
        file: root.join("scripts/compose/docker-compose.etcd.yml"),
        net: free_subnet(),
        ports: free_ports(),
    };
    say(start, &format!("etcd: project {} on {}.0/24, admin ports {:?}", project.name, project.net, project.ports));
    // `up` waits for the etcd members' health checks, then the nodes', before it starts the client.
    run_ok(&mut project.command(&["up", "-d"]), secs(240));
    say(start, "etcd: up");

    for node in NODES {
        let port = project.ports[&node];
        wait_for(&format!("node {node}: /healthz 200 on 127.0.0.1:{port}"), secs(60), || {
            http_get(port, "/healthz").filter(|(status, _)| *status == 200)
        });
    }
    let elected =
        wait_for("the three nodes to agree on the elected node", secs(30), || agreed_leader(&project, &NODES, &NODES));
    for node in NODES {
        let view = get_json(project.ports[&node], "/v1/cluster").expect("GET /v1/cluster");
        assert_eq!(view["store"], "etcd", "node {node}: {view}");
        assert_eq!(view["etcd"]["endpoints"].as_array().map(Vec::len), Some(3), "node {node}: {view}");
    }
    say(start, &format!("etcd: healthy, store etcd; elected: node {elected}"));

    check_node_processes(start, &project);
    // The etcd members: etcd as the image's user etcd (10002), with no capability at all.
    for member in NODES {
        let field = process_one(&project.container(&format!("etcd{member}")));
        assert_eq!(field("Name:"), "etcd", "etcd{member}: process 1");
        assert!(field("Uid:").starts_with("10002"), "etcd{member} runs as 10002: Uid {}", field("Uid:"));
        for set in ["CapEff:", "CapPrm:", "CapBnd:", "CapInh:", "CapAmb:"] {
            assert_eq!(field(set), "0000000000000000", "etcd{member}: no capability in {set}");
        }
        assert_eq!(field("NoNewPrivs:"), "1", "etcd{member}: no-new-privileges");
    }
    say(start, "etcd: members run as uid 10002 with no capability");

    let pool = |ip: Ipv4Addr| {
        ip.to_string().starts_with(&format!("{}.", project.net)) && (100..=199).contains(&ip.octets()[3])
    };
    // The first client: bound by the elected node, in every node's table (each follows a watch).
    let old_client = project.container("client");
    let old_mac = container_mac(&old_client);
    let old_lease = wait_bound(start, &old_client);
    let old_ip = old_lease.ip();
    assert!(pool(old_ip), "{old_ip} is outside the pool {}.100-199", project.net);
    assert_eq!(old_lease.server(), project.node_ip(elected), "the elected node answers broadcasts");
    for node in NODES {
        let port = project.ports[&node];
        wait_for(&format!("node {node}: {old_ip} bound to {old_mac} in /v1/leases"), secs(20), || {
            bound_leases(port).filter(|leases| leases.get(&old_ip) == Some(&old_mac))
        });
    }

    // Kill the elected node; once its etcd lease expires a survivor is elected.
    let elected_container = project.container(&format!("node{elected}"));
    let killed_at = Instant::now();
    run_ok(&mut docker(&["kill", &elected_container]), secs(30));
    let survivors: Vec<u64> = NODES.into_iter().filter(|&node| node != elected).collect();
    let second = wait_for("another elected node among the survivors", secs(30), || {
        agreed_leader(&project, &survivors, &survivors)
    });
    say(
        start,
        &format!("etcd: killed node {elected}; node {second} elected after {:.1}s", killed_at.elapsed().as_secs_f64()),
    );

    // A new client after the kill, bound by a survivor.
    let new_client = |known: &[&String]| -> (String, String, ClientEvent) {
        run_ok(&mut project.command(&["run", "-d", "--no-deps", "client"]), secs(120));
        let id = wait_for("the new client container", secs(30), || {
            project.containers("client").into_iter().find(|id| !known.contains(&id))
        });
        let mac = container_mac(&id);
        let lease = wait_bound(start, &id);
        assert!(pool(lease.ip()), "{} is outside the pool", lease.ip());
        assert!(survivors.contains(&project.node_of(lease.server()).unwrap_or(0)), "served by a survivor: {lease:?}");
        (id, mac, lease)
    };
    let (client2, mac2, lease2) = new_client(&[&old_client]);
    let ip2 = lease2.ip();
    assert_ne!(ip2, old_ip, "the second client got the first client's address");

    // The old client renews now (SIGUSR1): the same address, from a survivor.
    let seen = client_events(&container_logs(&old_client)).len();
    run_ok(&mut docker(&["kill", "-s", "USR1", &old_client]), secs(30));
    let renewed = wait_for("the old client's renewal after SIGUSR1", secs(45), || {
        client_events(&container_logs(&old_client)).into_iter().skip(seen).find(|e| e.event != "deconfig")
    });
    say(start, &format!("etcd: old client: {} {} from {}", renewed.event, renewed.ip(), renewed.server()));
    assert_eq!(renewed.event, "renew", "the old client renewed rather than starting over: {renewed:?}");
    assert_eq!(renewed.ip(), old_ip, "the old client keeps its address");
    assert!(survivors.contains(&project.node_of(renewed.server()).unwrap_or(0)), "renewed by a survivor: {renewed:?}");
    let after = client_events(&container_logs(&old_client));
    assert!(!after[seen..].iter().any(|e| e.event == "deconfig"), "the old client lost its address: {after:?}");

    // One etcd member down, the first endpoint of every node: etcd keeps a majority, the survivors
    // stay healthy and bind a third client.
    let member_killed_at = Instant::now();
    run_ok(&mut docker(&["kill", &project.container("etcd1")]), secs(30));
    say(start, "etcd: killed etcd1");
    for node in &survivors {
        let port = project.ports[node];
        wait_for(&format!("node {node}: /healthz 200 with etcd1 down"), secs(30), || {
            http_get(port, "/healthz").filter(|(status, _)| *status == 200)
        });
    }
    wait_for("the survivors to agree on the elected node with etcd1 down", secs(30), || {
        agreed_leader(&project, &survivors, &survivors)
    });
    let (_client3, mac3, lease3) = new_client(&[&old_client, &client2]);
    let ip3 = lease3.ip();
    assert!(ip3 != old_ip && ip3 != ip2, "the third client got an address in use: {ip3}");
    say(
        start,
        &format!("etcd: a client bound {:.1}s after etcd1 was killed", member_killed_at.elapsed().as_secs_f64()),
    );

    // The killed node again: it keeps nothing of its own and loads the pool from etcd. Then every
    // node's table holds the three leases, the same in each, no address and no client twice.
    run_ok(&mut docker(&["start", &elected_container]), secs(30));
    let port = project.ports[&elected];
    wait_for(&format!("node {elected}: /healthz 200 after its restart"), secs(60), || {
        http_get(port, "/healthz").filter(|(status, _)| *status == 200)
    });
    let expected: BTreeMap<Ipv4Addr, String> = [(old_ip, old_mac), (ip2, mac2), (ip3, mac3)].into_iter().collect();
    let mut tables = BTreeMap::new();
    for node in NODES {
        let port = project.ports[&node];
        let table = wait_for(&format!("node {node}: the three leases in /v1/leases"), secs(20), || {
            bound_leases(port).filter(|leases| expected.iter().all(|(ip, mac)| leases.get(ip) == Some(mac)))
        });
        let macs: BTreeSet<&String> = table.values().collect();
        assert_eq!(macs.len(), table.len(), "node {node}: a client bound twice: {table:?}");
        tables.insert(node, table);
    }
    let first = &tables[&NODES[0]];
    for (node, table) in &tables {
        assert_eq!(table, first, "node {node}'s bound leases differ from node {}'s", NODES[0]);
    }
    say(start, "etcd: the three leases on every node, the same everywhere; tearing down");
}
