//! Option data, client classes and BOOTP on the wire (issue 9): what `leasehold serve` puts in its replies
//! as real clients and the harness's `TestClient` see it.
//!
//! 1. `isc_dhclient_hook_sees_every_configured_option`, `busybox_udhcpc_hook_sees_every_configured_option`:
//!    a real client asks for NTP servers (option 42, RFC 2132 §8.3), a domain search list (119, RFC 3397),
//!    classless static routes (121, RFC 3442), the interface MTU (26, RFC 2132 §5.1) and a custom text
//!    option 224 declared with `[[option-def]]`; its hook script's environment holds the exact values.
//! 2. Wire tests with the `TestClient`:
//!    - `replies_follow_option_55_order_and_carry_exact_bytes`: options in the order of the client's
//!      parameter request list (RFC 2132 §9.8), every option type (custom and standard, hex and typed,
//!      43 and 125 with sub-options) byte for byte, `always_send` without being asked, nothing unasked;
//!    - `overload_splitting_and_options_that_fit_nowhere`: without option 57 a reply stays within 576
//!      bytes (RFC 2131 §2): what does not fit the options field goes into `file` and `sname` with option 52
//!      (RFC 2131 §4.1, RFC 2132 §9.3), `file` only when no boot file uses it; a value over 255 bytes goes
//!      as several instances and arrives whole (RFC 3396 §5); an option that fits nowhere is left out,
//!      counted in /metrics, and the reply still goes out;
//!    - `client_classes_match_on_every_key_and_the_first_match_wins`: vendor class (60), user class (77,
//!      bare and RFC 3004), architecture (93, RFC 4578 §2.1), client interface (94, RFC 4578 §2.2), relay
//!      circuit id and remote id (82.1, 82.2, RFC 3046 §3), giaddr, MAC prefix, all at once, class order,
//!      the class's pools (selected and forbidden), lease time, boot file and next server;
//!    - `the_most_specific_scope_wins_for_each_option`: reservation beats class beats pool beats global,
//!      code by code; the pool's routers, DNS servers and domain name and the reserved host name are sent
//!      unasked.
//! 3. `bootp_clients_get_a_bootreply_after_the_binding_is_committed`: RFC 951 / RFC 1542 BOOTREQUESTs (no
//!    option 53): a reserved MAC gets a 300-byte BOOTREPLY with its address, next server and boot file and
//!    none of the DHCP-only options 51/53/54/58/59 (RFC 2132 §1, §9), and the binding is already in
//!    `/v1/leases`; an unreserved MAC is not answered and the silence is counted; a `dynamic_bootp` pool
//!    behind a relay serves one. `a_full_bootreply_carries_no_dhcp_only_options_and_never_overloads`: a
//!    BOOTREPLY with more data than its 64-byte vend field holds leaves options out (counted); it carries
//!    none of RFC 2132 §9's DHCP-only options, so neither option 52 with options in `sname` nor 66/67.
//! 4. `check_config_names_file_key_and_reason_of_bad_option_and_class_values`: the real binary.
//!
//! Relayed requests come from the test client acting as a relay agent (RFC 3046, RFC 1542 §4): a socket on
//! port 67 of a second address (10.88.0.1) of the last client namespace, with routes between it and the
//! server's segment. Every wait is on a reply, a client event or an exit, or polls with a deadline; a capture
//! of the server's eth0 and the server's log are printed when a test fails.

mod netns_support;

use std::collections::BTreeMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use leasehold_tests::{
    format_mac, ClientConfig, ClientMessage, ClientOptions, Lease as WireLease, Mac, MessageType, ReplyView,
    RetryPolicy, Target, TestClient,
};
use netns_support::*;

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The relay agent's address (giaddr), on the last client namespace.
const RELAY: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);
/// How long one exchange may take.
const EXCHANGE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------------------
// The bed: a segment, `leasehold serve --config`, a capture, test clients

/// A segment with `leasehold serve` on its first server namespace (10.77.0.1) running `config`. Fields drop
/// in order: the capture, the server, the namespaces, the scratch directory.
struct Bed {
    _capture: Capture,
    server: Server,
    segment: Segment,
    clients: u32,
    dir: tempfile::TempDir,
    started: Instant,
}

impl Bed {
    fn start(test: &str, clients: u32, config: &str) -> Bed {
        let started = Instant::now();
        let segment = Segment::up(1, clients, 24);
        let dir = scratch_dir(test);
        let path = write_file(dir.path(), "leasehold.toml", config);
        let data = dir.path().join("data");
        fs::create_dir_all(&data).expect("create the data dir");
        let log = dir.path().join("leasehold.log");
        let server = Server::start(&segment.server(1), &data, &log, &["--config", path_str(&path)]);
        let capture = Capture::start(&segment.server(1), &dir.path().join("capture.txt"));
        Bed { _capture: capture, server, segment, clients, dir, started }
    }

    /// A test client on client namespace `i`'s eth0, port 68.
    fn client(&self, i: u32) -> TestClient {
        TestClient::bind(ClientConfig::in_namespace(&self.segment.client(i), "eth0")).expect("open a test client")
    }

    /// A relay agent (RFC 1542 §4) on the last client namespace: 10.88.0.1 on its eth0, port 67, forwarding
    /// to the server by unicast; the server reaches 10.88.0.0/24 over the segment.
    fn relay(&self) -> TestClient {
        let ns = self.segment.client(self.clients);
        ip_ok(&ns, &["addr", "add", &format!("{RELAY}/24"), "dev", "eth0"]);
        ip_ok(&ns, &["route", "add", "10.77.0.0/24", "dev", "eth0"]);
        ip_ok(&self.segment.server(1), &["route", "add", "10.88.0.0/24", "dev", "eth0"]);
        let config = ClientConfig {
            bind: SocketAddrV4::new(RELAY, 67),
            server: SocketAddrV4::new(SERVER_IP, 67),
            ..ClientConfig::in_namespace(&ns, "eth0")
        };
        TestClient::bind(config).expect("open the relay's socket")
    }

    /// A counter of `/metrics`; a labelled series the server has not written yet is 0.
    fn counter(&self, name: &str, labels: &str) -> f64 {
        metric(&self.server.metrics(), name, labels).unwrap_or(0.0)
    }

    fn done(&self, test: &str) {
        println!("{test}: {:.1} s", self.started.elapsed().as_secs_f64());
    }
}

fn ip_ok(ns: &str, args: &[&str]) {
    let out = Command::new("ip").arg("-n").arg(ns).args(args).output().expect("run ip");
    assert!(out.status.success(), "ip -n {ns} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

fn in_range(ip: Ipv4Addr, first: Ipv4Addr, last: Ipv4Addr) -> bool {
    (u32::from(first)..=u32::from(last)).contains(&u32::from(ip))
}

/// DISCOVER → OFFER (RFC 2131 §4.3.1), retransmitted per the default policy.
fn offer(client: &mut TestClient, mac: Mac, options: &ClientOptions, what: &str) -> ReplyView {
    let xid = client.next_xid();
    let discover = ClientMessage::Discover { requested_ip: None };
    let deadline = Instant::now() + EXCHANGE;
    client
        .exchange(
            mac,
            xid,
            &discover,
            options,
            Target::Broadcast,
            &[MessageType::Offer],
            &RetryPolicy::default(),
            deadline,
        )
        .unwrap_or_else(|e| panic!("{what}: DISCOVER from {} → OFFER: {e}", format_mac(mac)))
}

/// DISCOVER → OFFER → REQUEST → ACK (RFC 2131 §3.1).
fn dora(client: &mut TestClient, mac: Mac, options: &ClientOptions, what: &str) -> WireLease {
    client
        .dora_with(mac, options, &RetryPolicy::default(), EXCHANGE)
        .unwrap_or_else(|e| panic!("{what}: DORA for {}: {e}", format_mac(mac)))
}

/// What a relay agent adds (RFC 3046 §2.1, RFC 1542 §4.1.1): giaddr, a hop, option 82 (raw sub-options).
/// Its clients' replies come back by unicast to the relay, so no broadcast flag.
fn relayed(info: Option<Vec<u8>>) -> ClientOptions {
    ClientOptions { giaddr: RELAY, hops: 1, broadcast: false, relay_agent_info: info, ..ClientOptions::default() }
}

/// One option 82 sub-option (RFC 3046 §2.0): code, length, value.
fn suboption(code: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![code, u8::try_from(value.len()).expect("a sub-option under 256 bytes")];
    out.extend_from_slice(value);
    out
}

/// Each `(code, bytes)` is in `reply` exactly; `None` means the option must be absent.
fn assert_options(reply: &ReplyView, expected: &[(u8, Option<&[u8]>)], what: &str) {
    for (code, want) in expected {
        assert_eq!(
            reply.option(*code),
            *want,
            "{what}: option {code} (wire order {:?}, reply of {} bytes)",
            reply.option_order,
            reply.len
        );
    }
}

fn mac(prefix: [u8; 3], n: u8) -> Mac {
    [prefix[0], prefix[1], prefix[2], 0, 0, n]
}

// ---------------------------------------------------------------------------------------------------------
// 1. Real clients: ISC dhclient and busybox udhcpc

/// Options for every client (`[[option]]`), the pool's MTU and routes (`[[pool.option]]`), and a custom text
/// option 224 (`[[option-def]]`). Real clients ask for each with option 55.
const REAL_CLIENT_CONFIG: &str = r#"# Written by tests/options.rs.
[server]
server_ip = "10.77.0.1"

[[option-def]]
name = "site-motd"
code = 224
type = "string"

[[pool]]
name = "segment"
subnet = "10.77.0.0/24"
range_start = "10.77.0.100"
range_end = "10.77.0.150"
routers = ["10.77.0.1"]
lease_time_secs = 600

[[pool.option]]
name = "interface-mtu"
data = 1400

[[pool.option]]
name = "classless-static-route"
data = ["10.99.0.0/16 10.77.0.254", "0.0.0.0/0 10.77.0.1"]

[[option]]
name = "ntp-servers"
data = "10.77.0.5, 10.77.0.6"

[[option]]
name = "domain-search"
data = ["eng.example.com", "example.com"]

[[option]]
name = "site-motd"
data = "welcome to the lab"
"#;

/// The motd of option 224, as configured.
const MOTD: &str = "welcome to the lab";

/// Writes `hook`, a script for either client: it keeps the environment the client gave it in
/// `DIR/<event>.env` (dhclient's `$reason`, udhcpc's `$1`), then reports `<event>` on the pipe of `events`.
fn write_env_hook(hook: &Path, dir: &Path, events: &Events) {
    write_script(
        hook,
        &format!(
            "#!/bin/sh\n\
             # Hook of tests/options.rs: keeps the environment the DHCP client gave its script, then reports.\n\
             event=\"${{reason:-$1}}\"\n\
             env > \"{dir}/$event.env.tmp\" && mv \"{dir}/$event.env.tmp\" \"{dir}/$event.env\"\n\
             echo \"$event\" > {fifo}\n",
            dir = dir.display(),
            fifo = events.path.display()
        ),
    );
}

/// `NAME=value` lines of a hook's environment file.
fn hook_env(path: &Path) -> BTreeMap<String, String> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines().filter_map(|line| line.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// Each `(variable, value)` of `expected` is in `env` exactly.
fn assert_env(env: &BTreeMap<String, String>, expected: &[(&str, &str)], client: &str) {
    let got: Vec<(&str, Option<&str>)> = expected.iter().map(|(k, _)| (*k, env.get(*k).map(String::as_str))).collect();
    let want: Vec<(&str, Option<&str>)> = expected.iter().map(|(k, v)| (*k, Some(*v))).collect();
    assert_eq!(got, want, "{client}'s hook environment (all of it: {env:?})");
}

#[test]
fn isc_dhclient_hook_sees_every_configured_option() {
    let bed = Bed::start("options-dhclient", 1, REAL_CLIENT_CONFIG);
    let ns = bed.segment.client(1);
    let mut dhclient = Dhclient::new(&ns, &subdir(bed.dir.path(), "dhclient"));
    // Our own hook and conf in place of the helper's: the hook keeps the environment; the conf declares
    // options 121 and 224, which ISC dhclient does not know by itself, and asks for all five.
    write_env_hook(&dhclient.hook, &dhclient.dir, &dhclient.events);
    fs::write(
        &dhclient.conf,
        "option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;\n\
         option site-motd code 224 = text;\n\
         request subnet-mask, routers, ntp-servers, domain-search, rfc3442-classless-static-routes,\n\
         \x20       interface-mtu, site-motd;\n\
         timeout 30;\ninitial-interval 1;\n",
    )
    .expect("write dhclient.conf");

    // DISCOVER → OFFER → REQUEST → ACK; dhclient runs its script with reason BOUND and the ACK's options
    // as new_* variables, then daemonises.
    dhclient.run("-1", Duration::from_secs(45));
    dhclient.events.expect(&["BOUND"], Duration::from_secs(5), "dhclient bind");
    let env = hook_env(&dhclient.dir.join("BOUND.env"));
    assert_env(
        &env,
        &[
            // RFC 2132 §8.3: a list of addresses.
            ("new_ntp_servers", "10.77.0.5 10.77.0.6"),
            // RFC 3397 §2: the compressed names, decompressed by dhclient (which writes them as FQDNs).
            ("new_domain_search", "eng.example.com. example.com."),
            // RFC 3442 §3: width, significant destination octets, router: 16 10.99 → 10.77.0.254,
            // 0 → 10.77.0.1 (the default route).
            ("new_rfc3442_classless_static_routes", "16 10 99 10 77 0 254 0 10 77 0 1"),
            // RFC 2132 §5.1: a 16-bit MTU.
            ("new_interface_mtu", "1400"),
            // The custom option, as dhclient.conf declares it (text).
            ("new_site_motd", MOTD),
        ],
        "dhclient",
    );
    assert!(
        in_range(env["new_ip_address"].parse().expect("an address"), [10, 77, 0, 100].into(), [10, 77, 0, 150].into()),
        "{env:?}"
    );
    dhclient.run("-x", Duration::from_secs(15));
    dhclient.events.expect(&["STOP"], Duration::from_secs(5), "dhclient -x");
    bed.done("dhclient");
}

#[test]
fn busybox_udhcpc_hook_sees_every_configured_option() {
    let udhcpc = require_tool("udhcpc");
    let bed = Bed::start("options-udhcpc", 1, REAL_CLIENT_CONFIG);
    let dir = subdir(bed.dir.path(), "udhcpc");
    let mut events = Events::new(&dir);
    let hook = dir.join("env-hook.sh");
    write_env_hook(&hook, &dir, &events);
    // -O adds each option to option 55; -q: exit once bound.
    let mut cmd = in_ns(&bed.segment.client(1), &udhcpc);
    cmd.args(["-i", "eth0", "-f", "-q", "-n", "-t", "5", "-T", "2", "-s"]).arg(&hook);
    cmd.args(["-O", "ntpsrv", "-O", "search", "-O", "mtu", "-O", "staticroutes", "-O", "224"]);
    let mut client = Proc::spawn("udhcpc", cmd, &dir.join("udhcpc.log"));
    events.expect(&["bound"], Duration::from_secs(30), "udhcpc bind");
    client.expect_success(Duration::from_secs(10));
    let env = hook_env(&dir.join("bound.env"));
    let motd_hex: String = MOTD.bytes().map(|b| format!("{b:02x}")).collect();
    assert_env(
        &env,
        &[
            ("ntpsrv", "10.77.0.5 10.77.0.6"),
            // RFC 3397: busybox decompresses the names and writes them space-separated.
            ("search", "eng.example.com example.com"),
            ("mtu", "1400"),
            // RFC 3442: busybox writes each route as DEST/LEN ROUTER.
            ("staticroutes", "10.99.0.0/16 10.77.0.254 0.0.0.0/0 10.77.0.1"),
            // An option busybox has no name for comes as opt<code>, in hex.
            ("opt224", &motd_hex),
        ],
        "udhcpc",
    );
    assert!(in_range(env["ip"].parse().expect("an address"), [10, 77, 0, 100].into(), [10, 77, 0, 150].into()));
    bed.done("udhcpc");
}

// ---------------------------------------------------------------------------------------------------------
// 2a. Option 55 order, every type byte for byte

/// Every option type, by standard name, by custom definition and by bare code (hex), plus 43 and 125 with
/// sub-options, an unrequested `always_send` option and one that is never asked for.
const TYPES_CONFIG: &str = r#"# Written by tests/options.rs.
[server]
server_ip = "10.77.0.1"

[[option-def]]
name = "site-motd"
code = 224
type = "string"
[[option-def]]
name = "lab-servers"
code = 226
type = "ip-list"
[[option-def]]
name = "lab-port"
code = 227
type = "u16"
[[option-def]]
name = "lab-flag"
code = 228
type = "bool"
[[option-def]]
name = "lab-ports"
code = 229
type = "u16-list"
[[option-def]]
name = "lab-blob"
code = 230
type = "hex"
[[option-def]]
name = "lab-offset"
code = 232
type = "i32"
[[option-def]]
name = "lab-count"
code = 235
type = "u32"
[[option-def]]
name = "lab-level"
code = 236
type = "uint8"
[[option-def]]
name = "lab-pairs"
code = 237
type = "ip-pairs"
[[option-def]]
name = "lab-gateway"
code = 238
type = "ipv4-address"
[[option-def]]
name = "lab-domains"
code = 239
type = "fqdn-list"

[[pool]]
name = "segment"
subnet = "10.77.0.0/24"
range_start = "10.77.0.100"
range_end = "10.77.0.150"
routers = ["10.77.0.1"]
dns_servers = ["10.77.0.53"]
domain_name = "lab.example"

[[option]]
name = "site-motd"
data = "welcome to the lab"
[[option]]
name = "lab-servers"
data = ["10.77.0.7", "10.77.0.8"]
[[option]]
name = "lab-port"
data = 8080
[[option]]
name = "lab-flag"
data = true
[[option]]
name = "lab-ports"
data = [69, 4011]
[[option]]
name = "lab-blob"
data = "de:ad:be:ef:00:01"
[[option]]
code = 231
data = "01 02 03"
[[option]]
name = "lab-offset"
data = -3600
[[option]]
name = "lab-count"
data = 4000000000
[[option]]
name = "lab-level"
data = 7
[[option]]
name = "lab-pairs"
data = "10.99.0.0 255.255.0.0"
[[option]]
name = "lab-gateway"
data = "10.77.0.254"
[[option]]
name = "lab-domains"
data = "a.example, b.example"
[[option]]
name = "ntp-servers"
csv_format = false
data = "0a:4d:00:05"
[[option]]
name = "time-offset"
data = -7200
[[option]]
name = "domain-search"
data = ["eng.example.com", "example.com"]
[[option]]
name = "classless-static-route"
data = ["10.99.0.0/16 10.77.0.254", "0.0.0.0/0 10.77.0.1"]
[[option]]
name = "vendor-encapsulated-options"
[[option.suboption]]
code = 6
type = "u8"
data = 8
[[option.suboption]]
code = 10
type = "string"
data = "lab"
[[option]]
name = "vivso-suboptions"
enterprise = 3561
[[option.suboption]]
code = 1
type = "string"
data = "abc"
[[option.suboption]]
code = 2
type = "ip"
data = "10.77.0.9"
[[option]]
name = "interface-mtu"
data = 1400
always_send = true
[[option]]
name = "root-path"
data = "/srv/never-asked"
"#;

/// The bytes each option of `TYPES_CONFIG` must have on the wire.
fn typed_option_bytes() -> Vec<(u8, Vec<u8>)> {
    vec![
        (224, b"welcome to the lab".to_vec()),          // string: as given, no NUL
        (226, vec![10, 77, 0, 7, 10, 77, 0, 8]),        // ip-list
        (227, 8080u16.to_be_bytes().to_vec()),          // u16, network order
        (228, vec![1]),                                 // bool
        (229, vec![0, 69, 0x0f, 0xab]),                 // u16-list: 69, 4011
        (230, vec![0xde, 0xad, 0xbe, 0xef, 0, 1]),      // hex
        (231, vec![1, 2, 3]),                           // no definition: hex
        (232, (-3600i32).to_be_bytes().to_vec()),       // i32, two's complement
        (235, 4_000_000_000u32.to_be_bytes().to_vec()), // u32
        (236, vec![7]),                                 // u8
        (237, vec![10, 99, 0, 0, 255, 255, 0, 0]),      // ip-pairs
        (238, vec![10, 77, 0, 254]),                    // ip
        // fqdn-list: RFC 1035 §3.1 labels; the second name's "example" points at offset 2 (§4.1.4).
        (239, [&[1][..], b"a", &[7], b"example", &[0, 1], b"b", &[0xc0, 2]].concat()),
        (42, vec![10, 77, 0, 5]),               // csv_format = false: hex whatever the type
        (2, (-7200i32).to_be_bytes().to_vec()), // RFC 2132 §3.4
        // RFC 3397 §2: "example.com" is a pointer to offset 4 of the first name.
        (119, [&[3][..], b"eng", &[7], b"example", &[3], b"com", &[0, 0xc0, 4]].concat()),
        (121, vec![16, 10, 99, 10, 77, 0, 254, 0, 10, 77, 0, 1]), // RFC 3442 §3
        (43, vec![6, 1, 8, 10, 3, b'l', b'a', b'b']),             // RFC 2132 §8.4
        // RFC 3925 §4: enterprise 3561, data length 11, sub-options 1 "abc" and 2 10.77.0.9.
        (125, vec![0, 0, 0x0d, 0xe9, 11, 1, 3, b'a', b'b', b'c', 2, 4, 10, 77, 0, 9]),
        (3, vec![10, 77, 0, 1]),
        (6, vec![10, 77, 0, 53]),
        (15, b"lab.example".to_vec()),
    ]
}

#[test]
fn replies_follow_option_55_order_and_carry_exact_bytes() {
    let bed = Bed::start("options-types", 1, TYPES_CONFIG);
    let mut client = bed.client(1);
    let expected = typed_option_bytes();
    let requested: Vec<u8> = expected.iter().map(|(code, _)| *code).collect();
    // The head of every reply (53, 54, 51, 58, 59, 1), then the requested options in the client's order
    // (RFC 2132 §9.8: "in order of preference"), then what goes unasked: the always_send MTU (26).
    let head = [53, 54, 51, 58, 59, 1];
    // Option 57 = 1500 (RFC 2132 §9.10): room for all of it in the options field, no overload.
    for (what, prl) in [("forward", requested.clone()), ("reversed", requested.iter().rev().copied().collect())] {
        let options = ClientOptions {
            parameter_request_list: prl.clone(),
            max_message_size: Some(1500),
            ..ClientOptions::default()
        };
        let m = mac([0x02, 0x55, 0x01], if what == "forward" { 1 } else { 2 });
        let lease = dora(&mut client, m, &options, what);
        for (stage, reply) in [("OFFER", &lease.offer), ("ACK", &lease.ack)] {
            let what = format!("{what} option 55, {stage}");
            let mut order: Vec<u8> = head.to_vec();
            order.extend(&prl);
            order.push(26);
            assert_eq!(reply.option_order, order, "{what}: wire order follows option 55 (RFC 2132 §9.8)");
            for (code, bytes) in &expected {
                assert_eq!(reply.option(*code), Some(bytes.as_slice()), "{what}: option {code} byte for byte");
            }
            // always_send: MTU 1400 although not asked; root-path (17) configured but never asked: absent.
            assert_options(reply, &[(26, Some(&[0x05, 0x78])), (17, None), (52, None)], &what);
        }
    }
    // A client that asks for nothing configured gets the head, the pool's basic options (always sent)
    // and the always_send MTU, nothing else (RFC 2131 §4.3.1: options the client did not ask for are
    // the server's choice; here only those configured to go unasked).
    let options = ClientOptions { parameter_request_list: vec![1, 28], ..ClientOptions::default() };
    let reply = offer(&mut client, mac([0x02, 0x55, 0x01], 3), &options, "asks for nothing configured");
    assert_eq!(reply.option_order, [53, 54, 51, 58, 59, 1, 3, 6, 15, 26], "unasked: only the basic options and 26");
    bed.done("types");
}

// ---------------------------------------------------------------------------------------------------------
// 2b. Overload, RFC 3396 splitting, options that fit nowhere

/// The options of `overload_config()`, by code and data length, chosen against the 576-byte default (548
/// bytes of DHCP message, 307 of them for options after the 240-byte header and cookie and the end option),
/// the 127 option bytes of `file` and the 63 of `sname` (RFC 2131 §4.1).
const BIG_OPTIONS: [(u8, usize); 7] =
    [(240, 200), (241, 100), (242, 50), (243, 40), (244, 260), (245, 600), (246, 700)];
/// The reservation whose boot file takes the `file` field.
const BOOT_FILE_MAC: Mac = [0x02, 0x0f, 0, 0, 0, 1];
const BOOT_FILE: &str = "lab/boot.img";

/// Distinct bytes per option, so a value cut short or joined wrongly shows.
fn pattern(code: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(code)).collect()
}

fn overload_config() -> String {
    let mut text = format!(
        r#"# Written by tests/options.rs.
[server]
server_ip = "10.77.0.1"

[[pool]]
name = "segment"
subnet = "10.77.0.0/24"
range_start = "10.77.0.100"
range_end = "10.77.0.150"
lease_time_secs = 600

[[reservation]]
mac = "{}"
ip = "10.77.0.20"
boot_file = "{BOOT_FILE}"
"#,
        format_mac(BOOT_FILE_MAC)
    );
    for (code, len) in BIG_OPTIONS {
        let hex: Vec<String> = pattern(code, len).iter().map(|b| format!("{b:02x}")).collect();
        text.push_str(&format!("\n[[option]]\ncode = {code}\ndata = \"{}\"\n", hex.join(":")));
    }
    text
}

/// Every requested option of `reply` is there with its full configured value.
fn assert_whole(reply: &ReplyView, codes: &[u8], what: &str) {
    for &code in codes {
        let len = BIG_OPTIONS.iter().find(|(c, _)| *c == code).map(|(_, len)| *len).expect("a big option");
        let got = reply.option(code);
        assert_eq!(
            got.map(<[u8]>::len),
            Some(len),
            "{what}: option {code} of {len} bytes (order {:?})",
            reply.option_order
        );
        assert_eq!(got, Some(pattern(code, len).as_slice()), "{what}: option {code} byte for byte");
    }
}

/// How many instances of `code` the reply carried (RFC 3396 §5: a value over 255 bytes is split).
fn instances(reply: &ReplyView, code: u8) -> usize {
    reply.option_order.iter().filter(|&&c| c == code).count()
}

#[test]
fn overload_splitting_and_options_that_fit_nowhere() {
    let bed = Bed::start("options-overload", 1, &overload_config());
    let mut client = bed.client(1);
    let asking = |prl: &[u8], max: Option<u16>| ClientOptions {
        parameter_request_list: prl.to_vec(),
        max_message_size: max,
        ..ClientOptions::default()
    };

    // 1. No option 57: at most 576 bytes of IP datagram, 548 of DHCP message (RFC 2131 §2). 240, 241, 242
    //    and 243 need 396 option bytes, the options field has 307: the server overloads (RFC 2131 §4.1).
    //    Options field: the head, 52 = 3 (file and sname), 240, 242; then `file`: 241; then `sname`: 243.
    let prl = [240, 241, 242, 243];
    let lease = dora(&mut client, mac([0x02, 0x0e, 0x01], 1), &asking(&prl, None), "overload");
    for (stage, reply) in [("OFFER", &lease.offer), ("ACK", &lease.ack)] {
        let what = format!("overloaded {stage}");
        assert!(reply.len <= 548, "{what}: {} bytes, more than 576 - 28 (RFC 2131 §2)", reply.len);
        assert_eq!(reply.option(52), Some(&[3][..]), "{what}: option 52 says file and sname (RFC 2132 §9.3)");
        assert_eq!(
            reply.option_order,
            [53, 52, 54, 51, 58, 59, 1, 240, 242, 241, 243],
            "{what}: options field, then file (241), then sname (243), each in option 55 order"
        );
        assert_whole(reply, &prl, &what);
        assert_eq!((reply.file.as_deref(), reply.sname.as_deref()), (None, None), "{what}: the fields hold options");
    }

    // 2. The same with option 57 = 1500 (RFC 2132 §9.10): everything in the options field, no 52.
    let reply = offer(&mut client, mac([0x02, 0x0e, 0x01], 2), &asking(&prl, Some(1500)), "room");
    assert_eq!(reply.option_order, [53, 54, 51, 58, 59, 1, 240, 241, 242, 243], "option 57 = 1500: no overload");
    assert_whole(&reply, &prl, "option 57 = 1500");

    // 3. A client with a boot file: `file` holds its name (RFC 2131 §2), so only `sname` takes options
    //    (52 = 2): 243 goes there, 240 and 242 stay in the options field with the boot file's option 67.
    let prl = [67, 240, 242, 243];
    let reply = offer(&mut client, BOOT_FILE_MAC, &asking(&prl, None), "boot file");
    assert_eq!(reply.file.as_deref(), Some(BOOT_FILE), "boot file: `file` is the name, not options");
    assert_eq!(reply.option(52), Some(&[2][..]), "boot file: option 52 = 2 (sname only)");
    assert_eq!(reply.option_order, [53, 52, 54, 51, 58, 59, 1, 67, 240, 242, 243], "boot file: 243 in sname");
    assert_eq!(reply.option_text(67).as_deref(), Some(BOOT_FILE));
    assert_whole(&reply, &prl[1..], "boot file");
    assert!(reply.len <= 548, "boot file: {} bytes", reply.len);

    // 4. RFC 3396 §5: a 260-byte value goes as two instances (255 + 5) in the options field, no 57
    //    needed; a 600-byte one, with option 57 = 1500, as three (255 + 255 + 90). Both arrive whole.
    let reply = offer(&mut client, mac([0x02, 0x0e, 0x01], 4), &asking(&[244], None), "260 bytes");
    assert_eq!((instances(&reply, 244), reply.option(52)), (2, None), "260 bytes: two instances, no overload");
    assert_whole(&reply, &[244], "260 bytes");
    let reply = offer(&mut client, mac([0x02, 0x0e, 0x01], 5), &asking(&[245], Some(1500)), "600 bytes");
    assert_eq!(instances(&reply, 245), 3, "600 bytes: three instances");
    assert_whole(&reply, &[245], "600 bytes");
    assert!(reply.len <= 1500 - 28, "option 57 = 1500: {} bytes", reply.len);

    // Nothing so far was left out of a reply.
    let dropped = "leasehold_reply_options_dropped_total";
    for (code, _) in BIG_OPTIONS {
        assert_eq!(bed.counter(dropped, &format!("code=\"{code}\"")), 0.0, "option {code} was never dropped");
    }

    // 5. 700 bytes fit nowhere in 548 (not even overloaded): left out, counted, and the reply still goes
    //    out with the rest. One DISCOVER, one OFFER: the counter is exactly 1.
    let m = mac([0x02, 0x0e, 0x01], 6);
    let xid = client.send_discover(m, &asking(&[246, 242], None)).expect("send the DISCOVER");
    let reply = client.recv_reply(xid, EXCHANGE).expect("the OFFER goes out without the option that does not fit");
    assert!(reply.is(MessageType::Offer), "{reply:?}");
    assert_eq!(reply.option(246), None, "700 bytes do not fit 548");
    assert_eq!(reply.option_order, [53, 54, 51, 58, 59, 1, 242], "the rest of the reply, no overload");
    assert_whole(&reply, &[242], "with a dropped option");
    assert_eq!(bed.counter(dropped, "code=\"246\""), 1.0, "the dropped option is counted once, by code");
    assert_eq!(bed.counter(dropped, "code=\"242\""), 0.0);
    bed.done("overload");
}

// ---------------------------------------------------------------------------------------------------------
// 2c. Client classes

/// One class per match key, one with four keys at once, and classes that pick pools, set a lease time, a
/// boot file and a next server. Each class sends its name as option 225 (always), so every reply says which
/// class the server put the client in. Order matters: the first class that matches wins.
const CLASSES_CONFIG: &str = r#"# Written by tests/options.rs.
[server]
server_ip = "10.77.0.1"

[[option-def]]
name = "class-tag"
code = 225
type = "string"

[[pool]]
name = "segment"
subnet = "10.77.0.0/24"
range_start = "10.77.0.100"
range_end = "10.77.0.150"
lease_time_secs = 600

[[pool]]
name = "lab"
subnet = "10.77.0.0/24"
range_start = "10.77.0.200"
range_end = "10.77.0.210"
lease_time_secs = 600

[[pool]]
name = "relayed"
subnet = "10.88.0.0/24"
range_start = "10.88.0.100"
range_end = "10.88.0.150"
lease_time_secs = 600

[[class]]
name = "combo"
[class.match]
mac_prefix = "02:c0"
vendor_class = "LHCombo"
giaddr = "10.88.0.0/24"
circuit_id = "port-7"
[[class.option]]
name = "class-tag"
data = "combo"
always_send = true

[[class]]
name = "vendor"
boot_file = "vendor/boot.img"
next_server = "10.77.0.9"
[class.match]
vendor_class = "LHVendor"
[[class.option]]
name = "class-tag"
data = "vendor"
always_send = true

[[class]]
name = "user"
[class.match]
user_class = "lh-user"
[[class.option]]
name = "class-tag"
data = "user"
always_send = true

[[class]]
name = "arch"
[class.match]
arch = ["uefi-arm64", 19]
[[class.option]]
name = "class-tag"
data = "arch"
always_send = true

[[class]]
name = "nic"
[class.match]
client_interface = "01:03:10"
[[class.option]]
name = "class-tag"
data = "nic"
always_send = true

[[class]]
name = "circuit"
[class.match]
circuit_id = "eth1/7"
[[class.option]]
name = "class-tag"
data = "circuit"
always_send = true

[[class]]
name = "remote"
[class.match]
remote_id = "hex:de:ad:be:ef"
[[class.option]]
name = "class-tag"
data = "remote"
always_send = true

[[class]]
name = "relay-net"
[class.match]
giaddr = "10.88.0.0/24"
[[class.option]]
name = "class-tag"
data = "relay-net"
always_send = true

[[class]]
name = "http-lab"
pools = ["lab"]
boot_file = "http://10.77.0.9/lab.efi"
lease_time_secs = 120
[class.match]
vendor_class = "HTTPClient"
[[class.option]]
name = "class-tag"
data = "http-lab"
always_send = true

[[class]]
name = "qemu"
forbid_pools = ["segment"]
[class.match]
mac_prefix = "52:54:00"
[[class.option]]
name = "class-tag"
data = "qemu"
always_send = true
"#;

/// One request of the class test and the class it must land in (`None`: no class, no option 225).
struct ClassCase {
    what: &'static str,
    relayed: bool,
    mac: Mac,
    options: ClientOptions,
    class: Option<&'static str>,
}

fn class_cases() -> Vec<ClassCase> {
    let plain = ClientOptions::default;
    let with_60 = |text: &str| ClientOptions { vendor_class: Some(text.as_bytes().to_vec()), ..plain() };
    let with_77 = |raw: &[u8]| ClientOptions { user_class: Some(raw.to_vec()), ..plain() };
    let with_93 = |arch: u16| ClientOptions { client_arch: Some(arch), ..plain() };
    let with_94 = |nic: [u8; 3]| ClientOptions { extra: vec![(94, nic.to_vec())], ..plain() };
    let agent = |subs: &[(u8, &[u8])]| relayed(Some(subs.iter().flat_map(|(c, v)| suboption(*c, v)).collect()));
    let combo = |circuit: &[u8], vendor: Option<&str>| ClientOptions {
        vendor_class: vendor.map(|v| v.as_bytes().to_vec()),
        ..agent(&[(1, circuit)])
    };
    let m = |n: u8| mac([0x02, 0xc1, 0x00], n);
    let direct = |what, mac, options, class| ClassCase { what, relayed: false, mac, options, class };
    let via_relay = |what, mac, options, class| ClassCase { what, relayed: true, mac, options, class };
    vec![
        direct("no option any class matches", m(1), plain(), None),
        // Option 60 (RFC 2132 §9.13) starts with the configured text.
        direct("vendor class, prefix", m(2), with_60("LHVendor:x86:v2"), Some("vendor")),
        direct("vendor class, not at the start", m(3), with_60("XLHVendor"), None),
        // RFC 3396 §7: 300 bytes arrive as two instances of 60, which the server joins before matching.
        direct(
            "vendor class in two instances",
            m(25),
            with_60(&format!("LHVendor{}", "x".repeat(292))),
            Some("vendor"),
        ),
        // Option 77 (RFC 3004 §4): bare (as iPXE sends it) or one entry of the list; not a longer name.
        direct("user class, bare", m(4), with_77(b"lh-user"), Some("user")),
        direct("user class, RFC 3004 list", m(5), with_77(b"\x03abc\x07lh-user"), Some("user")),
        direct("user class, longer name", m(6), with_77(b"lh-users"), None),
        // First match wins: "vendor" comes before "user" in the file.
        direct(
            "vendor and user class",
            m(7),
            ClientOptions { user_class: Some(b"lh-user".to_vec()), ..with_60("LHVendor") },
            Some("vendor"),
        ),
        // Option 93 (RFC 4578 §2.1): one of the listed architectures, by name (uefi-arm64 = 11) or code.
        direct("arch by name", m(8), with_93(11), Some("arch")),
        direct("arch by code", m(9), with_93(19), Some("arch")),
        direct("arch not listed", m(10), with_93(7), None),
        // Option 94 (RFC 4578 §2.2): type 1, UNDI 3.16 starts with 01:03:10; UNDI 2.1 does not.
        direct("client interface", m(11), with_94([1, 3, 16]), Some("nic")),
        direct("client interface, other", m(12), with_94([1, 2, 1]), None),
        // chaddr prefix.
        direct("MAC prefix", mac([0x52, 0x54, 0x00], 13), plain(), Some("qemu")),
        direct("MAC prefix, one octet off", mac([0x52, 0x54, 0x01], 14), plain(), None),
        // Relayed (RFC 3046 §3.1 circuit id, §3.2 remote id): exact values; else the giaddr class.
        via_relay("relayed, no option 82", m(15), relayed(None), Some("relay-net")),
        via_relay("circuit id", m(16), agent(&[(1, b"eth1/7")]), Some("circuit")),
        via_relay("circuit id, other port", m(17), agent(&[(1, b"eth1/8")]), Some("relay-net")),
        via_relay("remote id", m(18), agent(&[(1, b"x"), (2, &[0xde, 0xad, 0xbe, 0xef])]), Some("remote")),
        via_relay("remote id, shorter", m(19), agent(&[(2, &[0xde, 0xad, 0xbe])]), Some("relay-net")),
        // Every key of "combo" (MAC prefix, vendor class, giaddr, circuit id) must hold.
        via_relay("combination", mac([0x02, 0xc0, 0x00], 20), combo(b"port-7", Some("LHCombo")), Some("combo")),
        via_relay("combination, other MAC", m(21), combo(b"port-7", Some("LHCombo")), Some("relay-net")),
        via_relay("combination, no vendor", mac([0x02, 0xc0, 0x00], 22), combo(b"port-7", None), Some("relay-net")),
        via_relay(
            "combination, other circuit",
            mac([0x02, 0xc0, 0x00], 23),
            combo(b"port-8", Some("LHCombo")),
            Some("relay-net"),
        ),
        direct("combination, not relayed", mac([0x02, 0xc0, 0x00], 24), with_60("LHCombo"), None),
    ]
}

#[test]
fn client_classes_match_on_every_key_and_the_first_match_wins() {
    let bed = Bed::start("options-classes", 2, CLASSES_CONFIG);
    let mut direct = bed.client(1);
    let mut relay = bed.relay();
    let segment_pool = (Ipv4Addr::new(10, 77, 0, 100), Ipv4Addr::new(10, 77, 0, 150));
    let lab_pool = (Ipv4Addr::new(10, 77, 0, 200), Ipv4Addr::new(10, 77, 0, 210));
    let relayed_pool = (Ipv4Addr::new(10, 88, 0, 100), Ipv4Addr::new(10, 88, 0, 150));

    let mut wrong = Vec::new();
    for case in class_cases() {
        let client = if case.relayed { &mut relay } else { &mut direct };
        let reply = offer(client, case.mac, &case.options, case.what);
        let got = reply.option_text(225);
        if got.as_deref() != case.class {
            wrong.push(format!("{}: class {:?}, expected {:?}", case.what, got, case.class));
        }
        // The class changes options, not the link: relayed clients get the relay's subnet.
        let (first, last) = match case.class {
            _ if case.relayed => relayed_pool,
            Some("qemu") => lab_pool,
            _ => segment_pool,
        };
        assert!(in_range(reply.yiaddr, first, last), "{}: {} not in {first}–{last}", case.what, reply.yiaddr);
    }
    assert!(wrong.is_empty(), "requests in the wrong class:\n{}", wrong.join("\n"));

    // The class's pools, lease time and boot file: UEFI HTTP boot firmware (60 HTTPClient, 93 = 16) is in
    // "http-lab": an address of "lab", 120 s with T1/T2 at 1/2 and 7/8 of it (RFC 2131 §4.4.5), option 60
    // HTTPClient and the class's URL as boot file (UEFI 2.5+ §24.7.2).
    let http = ClientOptions {
        vendor_class: Some(b"HTTPClient:Arch:00016:UNDI:003000".to_vec()),
        client_arch: Some(16),
        ..ClientOptions::default()
    };
    let lease = dora(&mut direct, mac([0x02, 0xc2, 0x00], 1), &http, "http-lab");
    assert!(in_range(lease.address, lab_pool.0, lab_pool.1), "http-lab: {} is not from pool lab", lease.address);
    for (stage, reply) in [("OFFER", &lease.offer), ("ACK", &lease.ack)] {
        assert_eq!(reply.option_text(225).as_deref(), Some("http-lab"), "{stage}");
        assert_eq!(
            (reply.lease_time_secs, reply.renewal_time_secs, reply.rebinding_time_secs),
            (Some(120), Some(60), Some(105)),
            "{stage}: the class's lease time"
        );
        assert_eq!(reply.file.as_deref(), Some("http://10.77.0.9/lab.efi"), "{stage}: the class's boot file");
        assert_eq!(reply.option_text(60).as_deref(), Some("HTTPClient"), "{stage}: option 60 for HTTP boot");
    }
    let record = bed.server.wait_lease(lease.address, Duration::from_secs(5), "bound", |l| l.state == "bound");
    let now = unix_now();
    assert!(
        (now + 115..=now + 121).contains(&record.expires_at),
        "http-lab: the server's lease expires at {}, expected now ({now}) + 120",
        record.expires_at
    );
    // The class "vendor": its boot file in `file` and option 67 (asked for, RFC 2132 §9.5), its next
    // server in siaddr (RFC 2131 §2).
    let vendor = ClientOptions { vendor_class: Some(b"LHVendor:x86:v2".to_vec()), ..ClientOptions::default() };
    let reply = offer(&mut direct, mac([0x02, 0xc2, 0x00], 2), &vendor, "vendor boot file");
    let file = Some("vendor/boot.img".to_owned());
    assert_eq!(
        (reply.file.clone(), reply.option_text(67), reply.siaddr),
        (file.clone(), file, Ipv4Addr::new(10, 77, 0, 9)),
        "vendor: the class's boot file and next server"
    );
    // Without a class: the pool's 600 s and no boot settings.
    let reply = offer(&mut direct, mac([0x02, 0xc2, 0x00], 3), &ClientOptions::default(), "no class");
    assert_eq!((reply.lease_time_secs, reply.file.as_deref(), reply.siaddr), (Some(600), None, Ipv4Addr::UNSPECIFIED));
    bed.done("classes");
}

// ---------------------------------------------------------------------------------------------------------
// 2d. Scopes

/// Option 42 at every scope, 4 at class, pool and global, 7 at pool and global, 9 global only. A value
/// names its scope: 10.S.0.CODE with S = 1 reservation, 2 class, 3 pool, 4 global.
const SCOPES_CONFIG: &str = r#"# Written by tests/options.rs.
[server]
server_ip = "10.77.0.1"

[[pool]]
name = "segment"
subnet = "10.77.0.0/24"
range_start = "10.77.0.100"
range_end = "10.77.0.150"
routers = ["10.77.0.1"]
dns_servers = ["10.77.0.53"]
domain_name = "lab.example"
[[pool.option]]
name = "ntp-servers"
data = "10.3.0.42"
[[pool.option]]
name = "time-servers"
data = "10.3.0.4"
[[pool.option]]
name = "log-servers"
data = "10.3.0.7"

[[pool]]
name = "relayed"
subnet = "10.88.0.0/24"
range_start = "10.88.0.100"
range_end = "10.88.0.150"

[[class]]
name = "racks"
[class.match]
mac_prefix = "02:5c"
[[class.option]]
name = "ntp-servers"
data = "10.2.0.42"
[[class.option]]
name = "time-servers"
data = "10.2.0.4"

[[reservation]]
mac = "02:5c:00:00:00:01"
ip = "10.77.0.21"
hostname = "rack1-node1"
[[reservation.option]]
name = "ntp-servers"
data = "10.1.0.42"

[[option]]
name = "ntp-servers"
data = "10.4.0.42"
[[option]]
name = "time-servers"
data = "10.4.0.4"
[[option]]
name = "log-servers"
data = "10.4.0.7"
[[option]]
name = "lpr-servers"
data = "10.4.0.9"
[[option]]
name = "interface-mtu"
data = 1400
"#;

#[test]
fn the_most_specific_scope_wins_for_each_option() {
    let bed = Bed::start("options-scopes", 2, SCOPES_CONFIG);
    let mut direct = bed.client(1);
    let mut relay = bed.relay();
    // Asks for 42, 4, 7, 9 only: not for 3, 6, 15, 12 (sent anyway) nor 26 (configured, not sent).
    let asks = |options: ClientOptions| ClientOptions { parameter_request_list: vec![42, 4, 7, 9], ..options };
    let value = |scope: u8, code: u8| vec![10, scope, 0, code];
    let (reservation, class, pool, global) = (1, 2, 3, 4);
    let segment_basics: [(u8, Option<Vec<u8>>); 3] =
        [(3, Some(vec![10, 77, 0, 1])), (6, Some(vec![10, 77, 0, 53])), (15, Some(b"lab.example".to_vec()))];
    let cases = [
        ("reserved, in the class, on the segment", false, [0x02, 0x5c, 0, 0, 0, 1], [reservation, class, pool, global]),
        ("in the class, on the segment", false, [0x02, 0x5c, 0, 0, 0, 2], [class, class, pool, global]),
        ("on the segment", false, [0x02, 0x5d, 0, 0, 0, 3], [pool, pool, pool, global]),
        (
            "in the class, relayed (a pool without options)",
            true,
            [0x02, 0x5c, 0, 0, 0, 4],
            [class, class, global, global],
        ),
        ("relayed", true, [0x02, 0x5d, 0, 0, 0, 5], [global, global, global, global]),
    ];
    for (what, via_relay, m, scopes) in cases {
        let (client, options) =
            if via_relay { (&mut relay, asks(relayed(None))) } else { (&mut direct, asks(ClientOptions::default())) };
        let lease = dora(client, m, &options, what);
        let reserved = m == [0x02, 0x5c, 0, 0, 0, 1];
        if reserved {
            assert_eq!(lease.address, Ipv4Addr::new(10, 77, 0, 21), "{what}: the reserved address");
        }
        for (stage, reply) in [("OFFER", &lease.offer), ("ACK", &lease.ack)] {
            let what = format!("{what}, {stage}");
            let mut expected: Vec<(u8, Option<Vec<u8>>)> =
                [42, 4, 7, 9].into_iter().zip(scopes).map(|(code, scope)| (code, Some(value(scope, code)))).collect();
            // The pool's own keys and the reserved host name go unasked; a configured option does not.
            expected.extend(if via_relay { [(3, None), (6, None), (15, None)] } else { segment_basics.clone() });
            expected.push((12, reserved.then(|| b"rack1-node1".to_vec())));
            expected.push((26, None));
            let got: Vec<(u8, Option<Vec<u8>>)> =
                expected.iter().map(|(code, _)| (*code, reply.option(*code).map(<[u8]>::to_vec))).collect();
            assert_eq!(got, expected, "{what}: (code, value) per option; 10.S.0.CODE names the scope S");
        }
    }
    bed.done("scopes");
}

// ---------------------------------------------------------------------------------------------------------
// 3. BOOTP

/// The segment's pool answers BOOTP only for reservations; the relayed subnet's pool has `dynamic_bootp`.
const BOOTP_CONFIG: &str = r#"# Written by tests/options.rs.
[server]
server_ip = "10.77.0.1"

[[pool]]
name = "segment"
subnet = "10.77.0.0/24"
range_start = "10.77.0.100"
range_end = "10.77.0.150"
routers = ["10.77.0.1"]
lease_time_secs = 600

[[pool]]
name = "bootp-lab"
subnet = "10.88.0.0/24"
range_start = "10.88.0.100"
range_end = "10.88.0.150"
routers = ["10.88.0.1"]
dynamic_bootp = true
bootp_lease_time_secs = 86400
[pool.pxe]
next_server = "10.77.0.2"
boot_file = "bootp/lab.img"

[[reservation]]
mac = "02:b0:07:00:00:01"
ip = "10.77.0.20"
hostname = "bootp-host"
boot_file = "boot/host1.img"
next_server = "10.77.0.9"
"#;

const BOOTP_RESERVED: Mac = [0x02, 0xb0, 0x07, 0, 0, 1];

/// A BOOTP client (RFC 951): no option 53, no parameter request list; the broadcast flag (RFC 1542
/// §3.1.1), since it cannot take a unicast before it has an address.
fn bootp_client() -> ClientOptions {
    ClientOptions { parameter_request_list: Vec::new(), ..ClientOptions::default() }
}

/// What a BOOTREPLY is (RFC 951 §3): 300 bytes; `yiaddr`, `siaddr` (next server) and `file` set; none of
/// the DHCP-only options (RFC 2132 §1, §9): no message type, server identifier, lease time or T1/T2.
fn assert_bootreply(reply: &ReplyView, yiaddr: Ipv4Addr, siaddr: Ipv4Addr, file: &str, what: &str) {
    assert_eq!(reply.len, 300, "{what}: a BOOTREPLY is 300 bytes (RFC 951 §3: a 64-byte vend field)");
    assert_eq!(
        (reply.yiaddr, reply.siaddr, reply.file.as_deref()),
        (yiaddr, siaddr, Some(file)),
        "{what}: yiaddr, siaddr (next server) and file"
    );
    assert_options(reply, &[(53, None), (54, None), (51, None), (58, None), (59, None)], what);
    assert_eq!(reply.subnet_mask, Some(Ipv4Addr::new(255, 255, 255, 0)), "{what}: RFC 1497 subnet mask");
}

/// The server's lease for `ip`, read at once (no polling): the BOOTREPLY goes out only after the binding
/// is committed and applied (DESIGN rule 1), so it must be there already.
fn committed(bed: &Bed, ip: Ipv4Addr, mac: Mac, lease_secs: u64, sent_at: u64, what: &str) -> Lease {
    let lease = bed.server.lease_of(ip).unwrap_or_else(|| {
        panic!("{what}: /v1/leases has no lease for {ip} right after the BOOTREPLY: {:?}", bed.server.leases())
    });
    assert_eq!((lease.state.as_str(), lease.mac.as_str()), ("bound", format_mac(mac).as_str()), "{what}: {lease:?}");
    assert!(
        (sent_at + lease_secs..=unix_now() + lease_secs).contains(&lease.expires_at),
        "{what}: expires at {}, expected {lease_secs} s after the request ({sent_at})",
        lease.expires_at
    );
    lease
}

#[test]
fn bootp_clients_get_a_bootreply_after_the_binding_is_committed() {
    let bed = Bed::start("options-bootp", 2, BOOTP_CONFIG);
    let mut direct = bed.client(1);
    let mut relay = bed.relay();
    // One try each, so the counters below are exact.
    let bootp = bootp_client();
    let once = RetryPolicy::fixed(1, EXCHANGE);

    // 1. The reserved MAC: its address, its next server and boot file, its host name (RFC 1497).
    let sent_at = unix_now();
    let reply = direct.bootp(BOOTP_RESERVED, &bootp, &once, EXCHANGE).expect("a BOOTREPLY for the reserved MAC");
    let what = "reserved MAC";
    assert_bootreply(&reply, Ipv4Addr::new(10, 77, 0, 20), Ipv4Addr::new(10, 77, 0, 9), "boot/host1.img", what);
    assert_eq!(reply.option_text(12).as_deref(), Some("bootp-host"), "{what}: the reserved host name");
    assert_eq!(reply.routers, vec![Ipv4Addr::new(10, 77, 0, 1)], "{what}: the pool's router");
    // The pool's lease time (600 s) as BOOTP lease, recorded though the client is never told.
    let lease = committed(&bed, reply.yiaddr, BOOTP_RESERVED, 600, sent_at, what);
    assert_eq!(lease.hostname.as_deref(), Some("bootp-host"), "{what}: the lease has the reserved host name");

    // 2. An unreserved MAC on the segment, whose pool has no dynamic_bootp: no answer (RFC 1542 has no
    //    negative reply), counted as bootp_not_served once the server has decided.
    let silent = ("leasehold_silent_total", "reason=\"bootp_not_served\"");
    let unreserved = [0x02, 0xb0, 0x07, 0, 0, 2];
    let xid = direct.next_xid();
    direct.send(unreserved, xid, &ClientMessage::Bootp, &bootp, Target::Broadcast).expect("send the BOOTREQUEST");
    poll_until(
        Duration::from_secs(5),
        || bed.counter(silent.0, silent.1),
        |n| *n == 1.0,
        |n| format!("unreserved MAC: leasehold_silent_total{{reason=\"bootp_not_served\"}} is {n}, expected 1"),
    );
    let answers = direct.collect_replies(xid, Duration::from_millis(300)).expect("read the socket");
    assert!(answers.is_empty(), "unreserved MAC: the server answered a BOOTP client it must not serve: {answers:?}");
    assert!(bed.server.leases().iter().all(|l| l.mac != format_mac(unreserved)), "no lease for the unreserved MAC");

    // 3. An unreserved MAC behind a relay (giaddr 10.88.0.1, RFC 1542 §4): the dynamic_bootp pool gives
    //    it an address, the pool's next server and boot file, and 86400 s in the server's table. Asking
    //    again gets the same binding back.
    let dynamic = [0x02, 0xb0, 0x07, 0, 0, 3];
    let via_relay = ClientOptions { parameter_request_list: Vec::new(), ..relayed(None) };
    let sent_at = unix_now();
    let reply = relay.bootp(dynamic, &via_relay, &once, EXCHANGE).expect("a BOOTREPLY from the dynamic_bootp pool");
    let what = "dynamic_bootp";
    let address = reply.yiaddr;
    assert!(in_range(address, [10, 88, 0, 100].into(), [10, 88, 0, 150].into()), "{what}: {address}");
    assert_bootreply(&reply, address, Ipv4Addr::new(10, 77, 0, 2), "bootp/lab.img", what);
    assert_eq!((reply.giaddr, reply.routers.clone()), (RELAY, vec![RELAY]), "{what}: to the relay, its router");
    committed(&bed, address, dynamic, 86_400, sent_at, what);
    let again = relay.bootp(dynamic, &via_relay, &once, EXCHANGE).expect("a second BOOTREPLY");
    assert_eq!(again.yiaddr, address, "{what}: the same client gets the same address again");

    // Three BOOTREQUESTs answered, one not (RFC 951 messages in their own counters).
    let counts = [
        bed.counter("leasehold_packets_received_total", "type=\"bootp\""),
        bed.counter("leasehold_packets_sent_total", "type=\"bootreply\""),
        bed.counter(silent.0, silent.1),
    ];
    assert_eq!(counts, [4.0, 3.0, 1.0], "BOOTP received, BOOTREPLY sent, not served");
    bed.done("bootp");
}

/// A reservation with more RFC 1497 data than the 64-byte `vend` field of a BOOTREPLY holds (59 bytes
/// after the cookie and the end option).
const BOOTP_FULL_CONFIG: &str = r#"# Written by tests/options.rs.
[server]
server_ip = "10.77.0.1"

[[pool]]
name = "segment"
subnet = "10.77.0.0/24"
range_start = "10.77.0.100"
range_end = "10.77.0.150"
routers = ["10.77.0.1"]
dns_servers = ["10.77.0.53", "10.77.0.54"]
domain_name = "a-rather-long-domain-name.example.org"

[[reservation]]
mac = "02:b0:07:00:00:01"
ip = "10.77.0.20"
hostname = "a-very-long-host-name-for-bootp-tests-0123456789"
boot_file = "boot/host1.img"
[[reservation.option]]
name = "ntp-servers"
data = "10.77.0.5, 10.77.0.6"
always_send = true
[[reservation.option]]
name = "root-path"
data = "/srv/nfs/a/long/root/path/for/this/host"
always_send = true
"#;

/// RFC 2132 §9.1–9.14: the DHCP-only options, which RFC 2132 §1 excludes from BOOTP vendor extensions.
const DHCP_ONLY: [u8; 14] = [50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 66, 67];

/// RFC 2132 §1: every option except the DHCP-only ones of its section 9 may be a BOOTP vendor extension.
/// Among those are 52 (overload, §9.3): a BOOTP client reads `sname` as the server's host name (RFC 951
/// §3) and never finds options there; and 66/67 (§9.4, §9.5), which stand in for `sname`/`file` when
/// those are overloaded, while a BOOTP client reads the header's `file`. What does not fit the 300-byte
/// BOOTREPLY is left out and counted, as for DHCP.
#[test]
fn a_full_bootreply_carries_no_dhcp_only_options_and_never_overloads() {
    let bed = Bed::start("options-bootp-full", 1, BOOTP_FULL_CONFIG);
    let mut direct = bed.client(1);
    let once = RetryPolicy::fixed(1, EXCHANGE);
    let reply = direct.bootp(BOOTP_RESERVED, &bootp_client(), &once, EXCHANGE).expect("a BOOTREPLY");
    assert_bootreply(&reply, Ipv4Addr::new(10, 77, 0, 20), Ipv4Addr::UNSPECIFIED, "boot/host1.img", "full");
    let dhcp_only: Vec<u8> = reply.option_order.iter().copied().filter(|code| DHCP_ONLY.contains(code)).collect();
    assert_eq!(
        (dhcp_only, reply.sname.as_deref()),
        (vec![], None),
        "a BOOTREPLY carries no DHCP-only option (RFC 2132 §1, §9) and no options in sname; wire order {:?}",
        reply.option_order
    );
    // Each configured value is in the reply whole, or left out and counted.
    let configured: [(u8, &[u8]); 6] = [
        (3, &[10, 77, 0, 1]),
        (6, &[10, 77, 0, 53, 10, 77, 0, 54]),
        (12, b"a-very-long-host-name-for-bootp-tests-0123456789"),
        (15, b"a-rather-long-domain-name.example.org"),
        (17, b"/srv/nfs/a/long/root/path/for/this/host"),
        (42, &[10, 77, 0, 5, 10, 77, 0, 6]),
    ];
    let metrics = bed.server.metrics();
    for (code, value) in configured {
        let dropped = metric(&metrics, "leasehold_reply_options_dropped_total", &format!("code=\"{code}\""));
        match reply.option(code) {
            Some(got) => assert_eq!((got, dropped), (value, None), "option {code}: sent whole, not counted"),
            None => assert_eq!(dropped, Some(1.0), "option {code} left out: counted once"),
        }
    }
    bed.done("bootp-full");
}

// ---------------------------------------------------------------------------------------------------------
// 4. check-config

/// A config whose option and class values are all wrong (the pool itself is fine).
const BAD_CONFIG: &str = r#"# Written by tests/options.rs: every option, option-def, class and reservation value is wrong.
[server]
server_ip = "10.77.0.1"

[[pool]]
name = "segment"
subnet = "10.77.0.0/24"
range_start = "10.77.0.100"
range_end = "10.77.0.150"
[[pool.option]]
name = "domain-search"
data = ["eng..example.com"]

[[option-def]]
name = "site-motd"
code = 224
type = "text"
[[option-def]]
name = "my-ntp"
code = 42
type = "ip-list"

[[option]]
name = "ntp-servers"
data = "10.77.0.500"
[[option]]
name = "interface-mtu"
data = 70000
[[option]]
code = 53
data = "01"
[[option]]
name = "classless-static-route"
data = ["10.99.0.1/16 10.77.0.254"]
[[option]]
code = 231
data = "not hex"
[[option]]
name = "vendor-encapsulated-options"
[[option.suboption]]
code = 6
type = "u8"
data = 300

[[class]]
name = "lab"
pools = ["nope"]
next_server = "boot-server"
[class.match]
arch = ["x64"]
mac_prefix = "52:54:zz"
circuit_id = "hex:zz"
giaddr = "10.88.0.1/24"
[[class.option]]
name = "ntp-servers"
data = []

[[reservation]]
mac = "02:00:00:00:00:01"
ip = "10.77.0.20"
next_server = "boot"
[[reservation.option]]
name = "no-such-option"
data = "x"
"#;

/// Every error `check-config` must print for `BAD_CONFIG`: the key path and words of the reason.
const BAD_CONFIG_ERRORS: [(&str, &str); 18] = [
    ("option-def[0].type", "`text` is not an option type"),
    ("option-def[1].code", "option 42 is the standard `ntp-servers`"),
    ("option[0].data", "`10.77.0.500` is not an IPv4 address"),
    ("option[1].data", "must be 0 to 65535"),
    ("option[2].code", "option 53 is the message type"),
    ("option[3].data", "`10.99.0.1/16` has host bits set"),
    ("option[4].data", "`not hex` is not hex octets"),
    ("option[5].suboption[0].data", "must be 0 to 255"),
    ("pool[0].option[0].data", "must be 1 to 63 characters"),
    ("class[0].match.circuit_id", "`zz` is not hex octets"),
    ("class[0].match.mac_prefix", "`52:54:zz` is not hex octets"),
    ("class[0].match.giaddr", "has host bits set"),
    ("class[0].match.arch[0]", "is not an architecture"),
    ("class[0].pools[0]", "`nope` is not the name of a pool"),
    ("class[0].next_server", "`boot-server` is not an IPv4 address"),
    ("class[0].option[0].data", "needs at least one address"),
    ("reservation[0].next_server", "`boot` is not an IPv4 address"),
    ("reservation[0].option[0].name", "`no-such-option` is not a known option"),
];

/// `leasehold check-config FILE` to its exit (at most 10 s): its exit code and output.
fn check_config(dir: &Path, name: &str, text: &str) -> (PathBuf, Option<i32>, String) {
    let file = write_file(dir, name, text);
    let log = dir.join(format!("{name}.out"));
    let mut cmd = Command::new(leasehold_bin());
    cmd.arg("check-config").arg(&file);
    let mut proc = Proc::spawn("leasehold check-config", cmd, &log);
    let status = proc.wait_exit(Duration::from_secs(10)).expect("check-config exits within 10 s");
    (file, status.code(), fs::read_to_string(&log).expect("read check-config's output"))
}

#[test]
fn check_config_names_file_key_and_reason_of_bad_option_and_class_values() {
    let dir = scratch_dir("options-check-config");
    let (file, code, output) = check_config(dir.path(), "bad.toml", BAD_CONFIG);
    assert_eq!(code, Some(1), "check-config of a bad file exits 1; it printed:\n{output}");
    let lines: Vec<&str> = output.lines().collect();
    let mut missing = Vec::new();
    for (key, reason) in BAD_CONFIG_ERRORS {
        let prefix = format!("{}: {key}: ", file.display());
        if !lines.iter().any(|line| line.strip_prefix(&prefix).is_some_and(|rest| rest.contains(reason))) {
            missing.push(format!("{prefix}…{reason}…"));
        }
    }
    assert!(missing.is_empty(), "check-config did not print:\n{}\nIt printed:\n{output}", missing.join("\n"));
    assert_eq!(lines.len(), BAD_CONFIG_ERRORS.len(), "one line per bad value, nothing else:\n{output}");

    // The configs of the other tests pass.
    let good = [
        ("real-clients.toml", REAL_CLIENT_CONFIG.to_owned(), 1, 0),
        ("types.toml", TYPES_CONFIG.to_owned(), 1, 0),
        ("overload.toml", overload_config(), 1, 1),
        ("classes.toml", CLASSES_CONFIG.to_owned(), 3, 0),
        ("scopes.toml", SCOPES_CONFIG.to_owned(), 2, 1),
        ("bootp.toml", BOOTP_CONFIG.to_owned(), 2, 1),
    ];
    for (name, text, pools, reservations) in good {
        let (file, code, output) = check_config(dir.path(), name, &text);
        let ok = format!("{}: ok ({pools} pool(s), {reservations} reservation(s))", file.display());
        assert_eq!((code, output.trim_end()), (Some(0), ok.as_str()), "check-config {name}");
    }
}
