//! Admin API security on a private segment, with real `leasehold serve` processes and the real
//! `leasehold` commands (issue 11, item 3). Every request goes from inside the server's namespace.
//!
//! 1. `admin_writes_need_the_token_over_raw_http_and_through_the_cli`: a node started with
//!    `--admin-token-file`. Raw HTTP: a reservation PUT, a DELETE and both membership writes get 401
//!    without `Authorization: Bearer`, 401 with another scheme, 403 with a wrong token, and the GETs
//!    show that nothing changed; the right token works. Reads stay open. The CLI: `reservations
//!    add` without a token exits 1 naming 401 and `--admin-token-file`, with a wrong token 403, with
//!    the right one (`LEASEHOLD_ADMIN_TOKEN_FILE`) it reserves; removing the last voter is a 409.
//! 2. `protected_reads_over_https_through_the_cli`: `[admin] protect_reads = true` and an HTTPS
//!    listener (certificates from `leasehold cluster make-certs --admin-name 127.0.0.1`): the CLI
//!    needs `--admin-ca`, reads need the token too (401 without), plain HTTP gets no answer.
//! 3. `tokenless_writes_are_refused_on_a_non_loopback_admin_address`: no token file and the admin API
//!    on the segment address: writes 403 with the reason, reads open, nothing changed.
//! 4. `a_membership_change_that_would_lose_quorum_is_refused`: 3 nodes with a token; a follower is
//!    killed; once the leader sees it unreachable, removing the other follower (raw HTTP and CLI) and
//!    adding a fourth node are refused with 409 and the reason, nothing changes and a real client
//!    still gets a lease; removing the dead node is accepted.
//!
//! Every wait polls with a deadline or waits on a process or client event; processes are ended by PID.

mod netns_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use netns_support::admin::{http_request_with, reservations};
use netns_support::cluster::*;
use netns_support::*;

const TOKEN: &str = "netns-admin-token-Vq3xM9pL2rT8wK4z";
const WRONG_TOKEN: &str = "netns-admin-token-not-the-right-one";
const MAC: &str = "52:54:00:aa:bb:01";
const RESERVED_IP: &str = "10.77.0.150";
const LIMIT: Duration = Duration::from_secs(15);
/// How long a command of the CLI may take.
const CLI_LIMIT: Duration = Duration::from_secs(30);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn loopback_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], ADMIN_PORT))
}

/// One request with optional `Authorization` header value: (status, header lines, body).
fn request(
    ns: &str,
    to: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    auth: Option<&str>,
) -> (u16, String, String) {
    let headers: Vec<(&str, &str)> = auth.map(|value| ("Authorization", value)).into_iter().collect();
    http_request_with(ns, to, method, path, body, &headers, LIMIT)
        .unwrap_or_else(|e| panic!("{method} {path} to {to} in {ns}: {e}"))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn write_token(dir: &Path, name: &str, token: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{token}\n")).expect("write a token file");
    path
}

/// What a `leasehold` command printed (stdout and stderr together) and whether it succeeded.
struct CliRun {
    success: bool,
    output: String,
}

/// Runs `leasehold ARGS` inside `ns` with extra environment, to completion (bounded).
fn cli(ns: &str, dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> CliRun {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let log = dir.join(format!("cli-{n}.log"));
    let mut cmd = in_ns(ns, leasehold_bin());
    cmd.args(args);
    cmd.env_remove("LEASEHOLD_ADMIN_TOKEN_FILE").env_remove("LEASEHOLD_ADMIN_CA");
    for (name, value) in env {
        cmd.env(name, value);
    }
    let mut proc = Proc::spawn(&format!("leasehold {}", args.join(" ")), cmd, &log);
    let status = proc.wait_exit(CLI_LIMIT).unwrap_or_else(|| panic!("leasehold {args:?} ran over {CLI_LIMIT:?}"));
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    println!("$ leasehold {} -> {status}\n{}", args.join(" "), output.trim_end());
    CliRun { success: status.success(), output }
}

fn reservation_macs(ns: &str) -> Vec<String> {
    reservations(ns).into_iter().map(|r| r.mac).collect()
}

fn members(ns: &str) -> Vec<u64> {
    let (code, body) = http_get(ns, ADMIN_PORT, "/v1/cluster").expect("GET /v1/cluster");
    assert_eq!(code, 200, "GET /v1/cluster: {body}");
    let view: serde_json::Value = serde_json::from_str(&body).expect("/v1/cluster is JSON");
    view["members"].as_array().map(|m| m.iter().filter_map(|m| m["id"].as_u64()).collect()).unwrap_or_default()
}

fn single_node_args(extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--server-ip",
        "10.77.0.1",
        "--ip-start",
        "10.77.0.100",
        "--ip-end",
        "10.77.0.200",
        "--subnet-mask",
        "255.255.255.0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

// ---------------------------------------------------------------------------------------------------------
// 1. The token, over raw HTTP and through the CLI

#[test]
fn admin_writes_need_the_token_over_raw_http_and_through_the_cli() {
    let _serial = serial();
    let segment = Segment::up(1, 0, 24);
    let dir = scratch_dir("admin-token");
    let token_file = write_token(dir.path(), "admin.token", TOKEN);
    let wrong_file = write_token(dir.path(), "wrong.token", WRONG_TOKEN);
    let args = single_node_args(&["--admin-token-file", &token_file.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&segment.server(1), &dir.path().join("data"), &dir.path().join("server.log"), &args);
    let ns = server.ns.clone();
    let admin = loopback_admin();
    let path = format!("/v1/reservations/{MAC}");
    let body = format!("{{\"ip\": \"{RESERVED_IP}\", \"hostname\": \"reserved-host\"}}");

    // A write without the header: 401, with the scheme the server expects named.
    let (code, head, answer) = request(&ns, admin, "PUT", &path, Some(&body), None);
    assert_eq!(code, 401, "PUT without Authorization: {answer}");
    assert!(head.to_ascii_lowercase().contains("www-authenticate: bearer"), "401 names the Bearer scheme: {head}");
    assert!(answer.contains("Authorization: Bearer"), "{answer}");
    // Another scheme is no bearer token: 401 too.
    let (code, _, answer) = request(&ns, admin, "PUT", &path, Some(&body), Some("Basic YWRtaW46YWRtaW4="));
    assert_eq!(code, 401, "PUT with Basic credentials: {answer}");
    // A wrong token: 403.
    let (code, _, answer) = request(&ns, admin, "PUT", &path, Some(&body), Some(&bearer(WRONG_TOKEN)));
    assert_eq!(code, 403, "PUT with a wrong token: {answer}");
    assert!(answer.contains("not this node's admin token"), "{answer}");
    assert_eq!(reservation_macs(&ns), Vec::<String>::new(), "refused writes changed nothing");

    // Membership writes: the same.
    let join = r#"{"id": 2, "addr": "10.77.0.2:6768"}"#;
    assert_eq!(request(&ns, admin, "POST", "/v1/cluster/nodes", Some(join), None).0, 401);
    assert_eq!(request(&ns, admin, "POST", "/v1/cluster/nodes", Some(join), Some(&bearer(WRONG_TOKEN))).0, 403);
    assert_eq!(request(&ns, admin, "DELETE", "/v1/cluster/nodes/1", None, None).0, 401);
    assert_eq!(request(&ns, admin, "DELETE", "/v1/cluster/nodes/1", None, Some(&bearer(WRONG_TOKEN))).0, 403);
    assert_eq!(members(&ns), vec![1], "refused membership writes changed nothing");

    // Reads stay open.
    for read in ["/v1/leases", "/v1/status", "/v1/reservations", "/v1/cluster", "/metrics", "/healthz"] {
        let (code, _, answer) = request(&ns, admin, "GET", read, None, None);
        assert_eq!(code, 200, "GET {read} without a token: {answer}");
    }

    // The right token.
    let (code, _, answer) = request(&ns, admin, "PUT", &path, Some(&body), Some(&bearer(TOKEN)));
    assert_eq!(code, 200, "PUT with the token: {answer}");
    assert_eq!(reservation_macs(&ns), vec![MAC.to_string()]);
    let (code, _, _) = request(&ns, admin, "DELETE", &path, None, None);
    assert_eq!(code, 401);
    let (code, _, _) = request(&ns, admin, "DELETE", &path, None, Some(&bearer(WRONG_TOKEN)));
    assert_eq!(code, 403);
    assert_eq!(reservation_macs(&ns), vec![MAC.to_string()], "the refused DELETEs removed nothing");
    // Removing the last voter, even with the token: 409 with the reason.
    let (code, _, answer) = request(&ns, admin, "DELETE", "/v1/cluster/nodes/1", None, Some(&bearer(TOKEN)));
    assert_eq!(code, 409, "removing the only voter: {answer}");
    assert!(answer.contains("last voter"), "{answer}");
    assert_eq!(members(&ns), vec![1]);
    let (code, _, answer) = request(&ns, admin, "DELETE", &path, None, Some(&bearer(TOKEN)));
    assert_eq!(code, 200, "DELETE with the token: {answer}");
    assert_eq!(reservation_macs(&ns), Vec::<String>::new());

    // The CLI: no token, a wrong one, the right one (from the environment).
    let scratch = dir.path();
    let add = ["reservations", "add", MAC, RESERVED_IP, "--hostname", "cli-host"];
    let run = cli(&ns, scratch, &add, &[]);
    assert!(!run.success, "a write without a token must fail");
    assert!(run.output.contains("401") && run.output.contains("--admin-token-file"), "{}", run.output);
    let wrong = wrong_file.display().to_string();
    let mut with_wrong: Vec<&str> = add.to_vec();
    with_wrong.extend(["--admin-token-file", &wrong]);
    let run = cli(&ns, scratch, &with_wrong, &[]);
    assert!(!run.success, "a write with a wrong token must fail");
    assert!(run.output.contains("403") && run.output.contains(&wrong), "{}", run.output);
    assert_eq!(reservation_macs(&ns), Vec::<String>::new(), "the refused commands changed nothing");
    let run = cli(&ns, scratch, &add, &[("LEASEHOLD_ADMIN_TOKEN_FILE", &token_file)]);
    assert!(run.success, "with the token: {}", run.output);
    assert_eq!(reservation_macs(&ns), vec![MAC.to_string()]);
    let listed = cli(&ns, scratch, &["reservations", "list"], &[]);
    assert!(listed.success && listed.output.contains(MAC), "reads need no token: {}", listed.output);
    let run = cli(&ns, scratch, &["cluster", "add-node", "2", "10.77.0.2:6768"], &[]);
    assert!(!run.success && run.output.contains("401"), "{}", run.output);
    let token = token_file.display().to_string();
    let run = cli(&ns, scratch, &["cluster", "remove-node", "1", "--admin-token-file", &token], &[]);
    assert!(!run.success && run.output.contains("409") && run.output.contains("last voter"), "{}", run.output);
    let run = cli(&ns, scratch, &["reservations", "remove", MAC, "--admin-token-file", &token], &[]);
    assert!(run.success, "{}", run.output);
    assert_eq!(reservation_macs(&ns), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------------------
// 2. protect_reads, over HTTPS

#[test]
fn protected_reads_over_https_through_the_cli() {
    let _serial = serial();
    let segment = Segment::up(1, 0, 24);
    let dir = scratch_dir("admin-https");
    let tls = dir.path().join("tls");
    let run = cli(
        &segment.server(1),
        dir.path(),
        &["cluster", "make-certs", "--dir", &tls.display().to_string(), "--admin-name", "127.0.0.1"],
        &[],
    );
    assert!(run.success, "make-certs: {}", run.output);
    let token_file = write_token(dir.path(), "admin.token", TOKEN);
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nserver_ip = \"10.77.0.1\"\n\n[[pool]]\nsubnet = \"10.77.0.0/24\"\nrange_start = \"10.77.0.100\"\n\
             range_end = \"10.77.0.200\"\n\n[admin]\ntoken_file = \"{}\"\nprotect_reads = true\ntls_cert_file = \"{}\"\n\
             tls_key_file = \"{}\"\n",
            token_file.display(),
            tls.join("admin.pem").display(),
            tls.join("admin.key").display()
        ),
    )
    .expect("write the config");
    let config_arg = config.display().to_string();
    let server = Server::spawn(
        &segment.server(1),
        Some("eth0"),
        &dir.path().join("data"),
        &dir.path().join("server.log"),
        &["--config", &config_arg],
    );
    let ns = server.ns.clone();
    let ca = tls.join("ca.pem").display().to_string();
    let token = token_file.display().to_string();

    // Up when the CLI, over HTTPS with the token, sees a leader.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = cli(
            &ns,
            dir.path(),
            &["cluster", "status", "--json", "--admin-ca", &ca, "--admin-token-file", &token],
            &[],
        );
        if status.success && status.output.contains("\"is_leader\":true") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the HTTPS admin API did not come up: {}\n{}",
            status.output,
            tail_of(&server.proc.log)
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Reads need the token: 401 without, and the CLI says how to give it.
    let run = cli(&ns, dir.path(), &["leases", "--admin-ca", &ca], &[]);
    assert!(!run.success && run.output.contains("401") && run.output.contains("protect_reads"), "{}", run.output);
    let run = cli(&ns, dir.path(), &["leases", "--admin-ca", &ca, "--admin-token-file", &token], &[]);
    assert!(run.success && run.output.contains("0 lease(s)"), "{}", run.output);
    // Writes over HTTPS with the token.
    let run = cli(
        &ns,
        dir.path(),
        &["reservations", "add", MAC, RESERVED_IP],
        &[("LEASEHOLD_ADMIN_CA", &tls.join("ca.pem")), ("LEASEHOLD_ADMIN_TOKEN_FILE", &token_file)],
    );
    assert!(run.success, "{}", run.output);
    let run = cli(&ns, dir.path(), &["reservations", "list", "--admin-ca", &ca, "--admin-token-file", &token], &[]);
    assert!(run.success && run.output.contains(MAC), "{}", run.output);
    // Without --admin-ca the CLI speaks plain HTTP to an HTTPS port and says so.
    let run = cli(&ns, dir.path(), &["leases", "--admin-token-file", &token], &[]);
    assert!(!run.success && run.output.contains("--admin-ca"), "{}", run.output);
    // A CA that did not sign the admin certificate is refused.
    let other = dir.path().join("other-tls");
    let made =
        cli(&ns, dir.path(), &["cluster", "make-certs", "--dir", &other.display().to_string(), "--nodes", "1"], &[]);
    assert!(made.success, "{}", made.output);
    let run = cli(
        &ns,
        dir.path(),
        &["leases", "--admin-ca", &other.join("ca.pem").display().to_string(), "--admin-token-file", &token],
        &[],
    );
    assert!(!run.success && run.output.contains("TLS"), "{}", run.output);
    // Raw plain HTTP to the HTTPS listener gets no HTTP answer.
    let plain = http_request_with(&ns, loopback_admin(), "GET", "/healthz", None, &[], LIMIT);
    assert!(plain.is_err(), "plain HTTP to the HTTPS listener must not be answered: {plain:?}");
}

// ---------------------------------------------------------------------------------------------------------
// 3. No token on a reachable address

#[test]
fn tokenless_writes_are_refused_on_a_non_loopback_admin_address() {
    let _serial = serial();
    let segment = Segment::up(1, 0, 24);
    let dir = scratch_dir("admin-exposed");
    let ns = segment.server(1);
    let exposed = SocketAddr::from(([10, 77, 0, 1], ADMIN_PORT));
    let data = dir.path().join("data").display().to_string();
    let args = single_node_args(&["--admin-listen", &exposed.to_string(), "--interface", "eth0", "--data-dir", &data]);
    let mut cmd = in_ns(&ns, leasehold_bin());
    cmd.arg("serve").args(&args);
    let log = dir.path().join("server.log");
    let _server = Proc::spawn("leasehold serve", cmd, &log);
    let health = poll_until(
        Duration::from_secs(20),
        || http_request_with(&ns, exposed, "GET", "/healthz", None, &[], LIMIT).map(|(code, _, _)| code).unwrap_or(0),
        |code| *code == 200,
        |code| format!("/healthz on {exposed} answered {code}\n{}", tail_of(&log)),
    );
    assert_eq!(health, 200);
    assert!(
        std::fs::read_to_string(&log).unwrap_or_default().contains("admin writes are refused"),
        "a warning at start"
    );

    let path = format!("/v1/reservations/{MAC}");
    let body = format!("{{\"ip\": \"{RESERVED_IP}\"}}");
    let (code, _, answer) = request(&ns, exposed, "PUT", &path, Some(&body), None);
    assert_eq!(code, 403, "{answer}");
    assert!(answer.contains("not a loopback address") && answer.contains("token_file"), "{answer}");
    let (code, _, answer) = request(&ns, exposed, "DELETE", "/v1/cluster/nodes/1", None, Some(&bearer(TOKEN)));
    assert_eq!(code, 403, "no token is configured, so none is right: {answer}");
    let (code, _, answer) = request(&ns, exposed, "GET", "/v1/reservations", None, None);
    assert_eq!((code, answer.trim()), (200, "[]"), "reads open, nothing reserved");
}

// ---------------------------------------------------------------------------------------------------------
// 4. Quorum

/// The leader's /v1/cluster member entry of `id`.
fn member_view(ns: &str, id: u64) -> serde_json::Value {
    let (code, body) = http_get(ns, ADMIN_PORT, "/v1/cluster").expect("GET /v1/cluster");
    assert_eq!(code, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    view["members"].as_array().and_then(|m| m.iter().find(|m| m["id"] == id).cloned()).unwrap_or_default()
}

#[test]
fn a_membership_change_that_would_lose_quorum_is_refused() {
    let _serial = serial();
    let segment = Segment::up(NODES, 1, 24);
    let dir = scratch_dir("admin-quorum");
    let token_file = write_token(dir.path(), "admin.token", TOKEN);
    let token = token_file.display().to_string();
    let options = NodeOptions {
        extra_args: (1..=NODES).map(|_| vec!["--admin-token-file".to_string(), token.clone()]).collect(),
        ..NodeOptions::default()
    };
    let mut cluster =
        Cluster::start_with_options(&segment, dir.path(), Pools::Segment { lease_secs: 600 }, options, &[1, 2, 3]);
    let (leader, _) = cluster.wait_for_leader(&[1, 2, 3], Duration::from_secs(20), "start");
    let followers: Vec<u32> = (1..=NODES).filter(|&id| id != leader).collect();
    let (down, other) = (followers[0], followers[1]);
    let leader_ns = cluster.ns(leader).to_string();
    // Reachable: answered within an election timeout, and reported that it has caught up.
    for id in 1..=NODES {
        poll_until(
            Duration::from_secs(10),
            || member_view(&leader_ns, u64::from(id)),
            |view| view["reachable"] == true && view["catching_up"] == false,
            |view| format!("node {id} not reachable at first: {view}"),
        );
    }

    cluster.kill(down);
    poll_until(
        Duration::from_secs(10),
        || member_view(&leader_ns, u64::from(down)),
        |view| view["reachable"] == false,
        |view| format!("the leader still sees node {down} reachable: {view}"),
    );
    let (leader_again, _) = cluster.wait_for_leader(&[leader, other], Duration::from_secs(10), "after the kill");
    assert_eq!(leader_again, leader, "a follower's death does not move the leader");

    // Removing the live follower would leave [leader, down]: one of two reachable.
    let remove = format!("/v1/cluster/nodes/{other}");
    let (code, _, answer) = request(&leader_ns, loopback_admin(), "DELETE", &remove, None, Some(&bearer(TOKEN)));
    assert_eq!(code, 409, "{answer}");
    assert!(answer.contains("would lose quorum") && answer.contains(&format!("[{down}] not answering")), "{answer}");
    let run =
        cli(&leader_ns, dir.path(), &["cluster", "remove-node", &other.to_string(), "--admin-token-file", &token], &[]);
    assert!(!run.success && run.output.contains("409") && run.output.contains("would lose quorum"), "{}", run.output);
    // Adding a fourth voter at once: 3 of 4 needed, 2 reachable.
    let join = r#"{"id": 4, "addr": "10.77.0.4:6768", "voter": true}"#;
    let (code, _, answer) =
        request(&leader_ns, loopback_admin(), "POST", "/v1/cluster/nodes", Some(join), Some(&bearer(TOKEN)));
    assert_eq!(code, 409, "{answer}");
    assert!(answer.contains("adding node 4 would lose quorum"), "{answer}");
    assert_eq!(members(&leader_ns), vec![1, 2, 3], "nothing changed");

    // The cluster still serves: a real client gets a lease from the leader.
    let udhcpc = require_tool("udhcpc");
    let client_dir = subdir(dir.path(), "udhcpc");
    let mut events = Events::new(&client_dir);
    let hook = udhcpc_hook(&client_dir, &events);
    let mut cmd = in_ns(&segment.client(1), udhcpc);
    cmd.args(["-i", "eth0", "-n", "-q", "-f", "-t", "10", "-T", "1", "-s"]).arg(&hook);
    let mut proc = Proc::spawn("udhcpc", cmd, &client_dir.join("udhcpc.log"));
    let bound = events.expect(&["bound"], Duration::from_secs(30), "udhcpc after the refused changes");
    proc.expect_success(Duration::from_secs(10));
    assert_eq!(bound.get(2).map(String::as_str), Some(node_ip(leader).to_string().as_str()), "{bound:?}");

    // Removing the dead node is what keeps a quorum: accepted, and it takes effect.
    let (code, _, answer) = request(
        &leader_ns,
        loopback_admin(),
        "DELETE",
        &format!("/v1/cluster/nodes/{down}"),
        None,
        Some(&bearer(TOKEN)),
    );
    assert_eq!(code, 202, "{answer}");
    let mut expected: Vec<u64> = vec![u64::from(leader), u64::from(other)];
    expected.sort_unstable();
    poll_until(
        Duration::from_secs(10),
        || members(&leader_ns),
        |now| *now == expected,
        |now| format!("members after removing node {down}: {now:?}, expected {expected:?}"),
    );
}
