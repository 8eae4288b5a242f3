//! Several subnets on one server (issue 8, "Relays done fully"): each interface with its own server
//! address, the client's subnet selection option, and a relay's server identifier override.
//!
//! 1. `each_interface_serves_its_subnet_under_its_own_server_identifier`: leasehold runs in the router
//!    namespace of `scripts/netns.sh router`, with two `[[interface]]` tables: eth0 = 10.77.0.254 on the
//!    segment and lan0 = 10.78.0.1 on the routed client subnet. A busybox udhcpc on each side gets an
//!    address of its own subnet's pool with that interface's address as server identifier (option 54)
//!    and router (option 3), and renews by unicast to it (RFC 2131 §4.3.2); the reply to each leaves
//!    by the interface its request came in on.
//! 2. `rfc3011_subnet_selection_chooses_the_pool_and_is_echoed`: ISC dhclient on the server's segment
//!    sends option 118 (`send subnet-selection 10.79.0.0;`) and is given an address of the 10.79.0.0/24
//!    pool, not of the segment's; the test client's OFFER and ACK carry option 118 back (RFC 3011 §3).
//! 3. `rfc5107_server_identifier_override_names_the_relay_and_renewals_go_through_it`: the test client
//!    acts as a relay agent (giaddr 10.88.0.1, port 67, on a second address of its namespace) that
//!    adds option 82 sub-option 11 = its own address; OFFER and ACK name the relay as server
//!    identifier (RFC 5107 §4), a SELECTING REQUEST naming the relay is taken, and the client's
//!    renewal, which the relay forwards with the sub-option again, is ACKed.
//!
//! Every wait is on an event (a client hook, a reply) or polls the admin API with a deadline; processes
//! are killed by PID; the namespaces are removed when a test ends.

mod netns_support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;
use std::time::Duration;

use leasehold_tests::{
    format_mac, test_mac, ClientConfig, ClientMessage, ClientOptions, MessageType, RequestState, RetryPolicy, Target,
    TestClient,
};
use netns_support::*;

fn in_range(ip: Ipv4Addr, first: Ipv4Addr, last: Ipv4Addr) -> bool {
    (u32::from(first)..=u32::from(last)).contains(&u32::from(ip))
}

fn ip_ok(ns: &str, args: &[&str]) {
    let out = Command::new("ip").arg("-n").arg(ns).args(args).output().expect("run ip");
    assert!(out.status.success(), "ip -n {ns} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn write_config(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the config file");
    path.to_str().expect("a UTF-8 temp path").to_owned()
}

/// udhcpc in `ns` until its first lease; returns (its process, the event words: event ip serverid).
fn udhcpc_bound(ns: &str, dir: &std::path::Path, name: &str) -> (Proc, Events, Vec<String>) {
    let udhcpc = require_tool("udhcpc");
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).expect("a directory per client");
    let mut events = Events::new(&sub);
    let hook = udhcpc_hook(&sub, &events);
    let mut cmd = in_ns(ns, &udhcpc);
    cmd.args(["-i", "eth0", "-f", "-t", "5", "-T", "2", "-s"]).arg(&hook);
    let client = Proc::spawn(&format!("udhcpc ({name})"), cmd, &sub.join("udhcpc.log"));
    let bound = events.expect(&["bound"], Duration::from_secs(30), &format!("udhcpc ({name}) bind"));
    (client, events, bound)
}

#[test]
fn each_interface_serves_its_subnet_under_its_own_server_identifier() {
    let segment = Segment::up(0, 1, 24);
    let router = segment.add_router(1, "10.77.0.254/24", "10.78.0.1/24");
    let dir = scratch_dir("interfaces");
    let config = write_config(
        dir.path(),
        "leasehold.toml",
        r#"# Written by tests/subnets.rs: one server, two interfaces, a subnet on each.
[[interface]]
name = "eth0"
server_ip = "10.77.0.254"

[[interface]]
name = "lan0"
server_ip = "10.78.0.1"

[[pool]]
name = "segment"
subnet = "10.77.0.0/24"
range_start = "10.77.0.100"
range_end = "10.77.0.150"
routers = ["10.77.0.254"]
lease_time_secs = 600

[[pool]]
name = "lan"
subnet = "10.78.0.0/24"
range_start = "10.78.0.100"
range_end = "10.78.0.150"
routers = ["10.78.0.1"]
lease_time_secs = 600
"#,
    );
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("create the data dir");
    let server = Server::start_on(&router.ns, None, &data, &dir.path().join("leasehold.log"), &["--config", &config]);
    let _capture = Capture::start(&router.client_ns, &dir.path().join("capture-lan.txt"));

    let sides = [
        (
            "segment",
            segment.client(1),
            Ipv4Addr::new(10, 77, 0, 254),
            (Ipv4Addr::new(10, 77, 0, 100), Ipv4Addr::new(10, 77, 0, 150)),
        ),
        (
            "lan",
            router.client_ns.clone(),
            Ipv4Addr::new(10, 78, 0, 1),
            (Ipv4Addr::new(10, 78, 0, 100), Ipv4Addr::new(10, 78, 0, 150)),
        ),
    ];
    let mut clients = Vec::new();
    for (name, ns, server_id, (first, last)) in &sides {
        let (client, events, bound) = udhcpc_bound(ns, dir.path(), name);
        let ip = event_ip(&bound, name);
        assert!(in_range(ip, *first, *last), "{name}: {ip} is not in its interface's pool {first}-{last}");
        assert_eq!(
            bound.get(2).map(String::as_str),
            Some(server_id.to_string().as_str()),
            "{name}: option 54 must be the address of the interface the client is on"
        );
        let lease = server.wait_lease(ip, Duration::from_secs(5), "bound", |l| l.state == "bound");
        assert_eq!(lease.mac, mac_of(ns, "eth0"), "{name}: the lease is the client's");
        println!("{name}: {ip} from server identifier {server_id}");
        clients.push((name, client, events, ip, lease));
    }
    // RFC 2131 §4.3.2 RENEWING: unicast to the server identifier, which only the interface of the
    // client's side can answer from; the ACK must come back the same way.
    wait_for_next_second();
    for (name, client, events, ip, before) in &mut clients {
        signal(client.pid, libc::SIGUSR1);
        let renewed = events.expect(&["renew", "bound", "nak", "leasefail"], Duration::from_secs(15), name);
        assert_eq!(renewed[0], "renew", "{name}: the unicast renewal should be ACKed, got {renewed:?}");
        assert_eq!(event_ip(&renewed, name), *ip, "{name}: same address after the renewal");
        server.wait_lease(*ip, Duration::from_secs(5), "renewed", |l| l.expires_at > before.expires_at);
    }
    for (_, mut client, ..) in clients {
        client.stop(Duration::from_secs(5));
    }
}

#[test]
fn rfc3011_subnet_selection_chooses_the_pool_and_is_echoed() {
    let dhclient = require_tool("dhclient");
    let segment = Segment::up(1, 1, 24);
    let dir = scratch_dir("subnet-selection");
    let config = write_config(
        dir.path(),
        "leasehold.toml",
        r#"# Written by tests/subnets.rs.
[server]
server_ip = "10.77.0.1"

[[pool]]
name = "segment"
subnet = "10.77.0.0/24"
range_start = "10.77.0.100"
range_end = "10.77.0.150"

[[pool]]
name = "selected"
subnet = "10.79.0.0/24"
range_start = "10.79.0.100"
range_end = "10.79.0.150"
routers = ["10.79.0.1"]
"#,
    );
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("create the data dir");
    let server = Server::start(&segment.server(1), &data, &dir.path().join("leasehold.log"), &["--config", &config]);
    let ns = segment.client(1);

    // The test client first: the exact bytes of 118 in the OFFER and ACK.
    {
        let mut client = TestClient::bind(ClientConfig::in_namespace(&ns, "eth0")).expect("open the test client");
        let options = ClientOptions { extra: vec![(118, vec![10, 79, 0, 0])], ..ClientOptions::default() };
        let lease = client
            .dora_with(test_mac(0x118), &options, &RetryPolicy::default(), Duration::from_secs(10))
            .expect("a DORA with option 118");
        assert!(in_range(lease.address, Ipv4Addr::new(10, 79, 0, 100), Ipv4Addr::new(10, 79, 0, 150)), "{lease:?}");
        for (stage, reply) in [("OFFER", &lease.offer), ("ACK", &lease.ack)] {
            assert_eq!(reply.option(118), Some(&[10, 79, 0, 0][..]), "{stage}: option 118 echoed (RFC 3011 §3)");
            assert_eq!(reply.routers, vec![Ipv4Addr::new(10, 79, 0, 1)], "{stage}: the selected pool's router");
        }
    }

    // A real client: ISC dhclient with `send subnet-selection`.
    let mut events = Events::new(dir.path());
    let hook = dir.path().join("dhclient-hook.sh");
    write_script(
        &hook,
        &format!(
            "#!/bin/sh\n# dhclient hook of tests/subnets.rs: reports \"<reason> <address> <routers>\".\n\
             echo \"$reason ${{new_ip_address:--}} ${{new_routers:--}}\" > {}\n",
            events.path.display()
        ),
    );
    let conf = dir.path().join("dhclient.conf");
    std::fs::write(
        &conf,
        "send subnet-selection 10.79.0.0;\nrequest subnet-mask, routers;\ntimeout 30;\ninitial-interval 1;\n",
    )
    .expect("write dhclient.conf");
    let mut cmd = in_ns(&ns, &dhclient);
    cmd.args(["-4", "-v", "-1", "-cf"]).arg(&conf).arg("-pf").arg(dir.path().join("dhclient.pid"));
    cmd.arg("-lf").arg(dir.path().join("dhclient.leases")).arg("-sf").arg(&hook).arg("eth0");
    run_ok("dhclient -1", cmd, &dir.path().join("dhclient.log"), Duration::from_secs(45));
    let bound = events.expect(&["BOUND"], Duration::from_secs(5), "dhclient bind");
    let ip = event_ip(&bound, "dhclient bind");
    assert!(in_range(ip, Ipv4Addr::new(10, 79, 0, 100), Ipv4Addr::new(10, 79, 0, 150)), "dhclient got {ip}");
    assert_eq!(bound.get(2).map(String::as_str), Some("10.79.0.1"), "the selected pool's router");
    let lease = server.wait_lease(ip, Duration::from_secs(5), "bound", |l| l.state == "bound");
    assert_eq!(lease.mac, mac_of(&ns, "eth0"));
    let mut stop = in_ns(&ns, &dhclient);
    stop.args(["-4", "-x", "-pf"]).arg(dir.path().join("dhclient.pid"));
    run_ok("dhclient -x", stop, &dir.path().join("dhclient.log"), Duration::from_secs(15));
}

#[test]
fn rfc5107_server_identifier_override_names_the_relay_and_renewals_go_through_it() {
    const RELAY: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);
    let segment = Segment::up(1, 1, 24);
    let dir = scratch_dir("server-id-override");
    let config = write_config(
        dir.path(),
        "leasehold.toml",
        r#"# Written by tests/subnets.rs.
[server]
server_ip = "10.77.0.1"

[[pool]]
name = "segment"
subnet = "10.77.0.0/24"
range_start = "10.77.0.100"
range_end = "10.77.0.150"

[[pool]]
name = "relayed"
subnet = "10.88.0.0/24"
range_start = "10.88.0.100"
range_end = "10.88.0.150"
routers = ["10.88.0.1"]
"#,
    );
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("create the data dir");
    let server = Server::start(&segment.server(1), &data, &dir.path().join("leasehold.log"), &["--config", &config]);
    // The relay: a second address in the client namespace, reachable from the server on the segment.
    let ns = segment.client(1);
    ip_ok(&ns, &["addr", "add", "10.88.0.1/24", "dev", "eth0"]);
    ip_ok(&ns, &["route", "add", "10.77.0.0/24", "dev", "eth0"]);
    ip_ok(&segment.server(1), &["route", "add", "10.88.0.0/24", "dev", "eth0"]);
    let _capture = Capture::start(&ns, &dir.path().join("capture.txt"));
    let relay_config = ClientConfig {
        bind: SocketAddrV4::new(RELAY, 67),
        server: SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 1), 67),
        ..ClientConfig::in_namespace(&ns, "eth0")
    };
    let mut relay = TestClient::bind(relay_config).expect("open the relay's socket");
    // RFC 5107 §4: sub-option 11 (length 4) = the relay's address; a circuit id beside it.
    let info = vec![1, 4, b'p', b'o', b'r', b't', 11, 4, 10, 88, 0, 1];
    let options = ClientOptions {
        giaddr: RELAY,
        hops: 1,
        broadcast: false,
        relay_agent_info: Some(info.clone()),
        ..ClientOptions::default()
    };
    let mac = test_mac(0x5107);
    let lease =
        relay.dora_with(mac, &options, &RetryPolicy::default(), Duration::from_secs(10)).expect("a relayed DORA");
    assert!(in_range(lease.address, Ipv4Addr::new(10, 88, 0, 100), Ipv4Addr::new(10, 88, 0, 150)), "{lease:?}");
    for (stage, reply) in [("OFFER", &lease.offer), ("ACK", &lease.ack)] {
        assert_eq!(reply.server_id, Some(RELAY), "{stage}: option 54 is the relay's override (RFC 5107 §4)");
        assert_eq!(reply.option(82), Some(info.as_slice()), "{stage}: option 82 echoed (RFC 3046 §2.2)");
        assert_eq!(reply.giaddr, RELAY);
    }
    // The client renews to the server it knows, the relay, which forwards the REQUEST (giaddr, 82
    // with the override again) to the server.
    wait_for_next_second();
    let before = server.wait_lease(lease.address, Duration::from_secs(5), "bound", |l| l.state == "bound");
    let xid = relay.next_xid();
    let renewal = ClientMessage::Request(RequestState::Renewing { ciaddr: lease.address });
    let ack = relay
        .exchange(
            mac,
            xid,
            &renewal,
            &options,
            Target::Broadcast,
            &[MessageType::Ack],
            &RetryPolicy::default(),
            std::time::Instant::now() + Duration::from_secs(10),
        )
        .expect("the relayed renewal is ACKed");
    assert_eq!((ack.yiaddr, ack.server_id), (lease.address, Some(RELAY)));
    let after =
        server.wait_lease(lease.address, Duration::from_secs(5), "renewed", |l| l.expires_at > before.expires_at);
    assert!(after.mac.eq_ignore_ascii_case(&format_mac(mac)));
}
