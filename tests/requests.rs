//! Odd but real requests over the wire (issue 8, "Robustness"), from the harness's test client in a
//! client namespace against `leasehold serve`:
//!
//! 1. a SELECTING REQUEST without option 50 (RFC 2131 §4.3.2 requires it; some clients leave it out)
//!    is ACKed for the address offered to that client, as Kea does;
//! 2. DHCPINFORM (RFC 2131 §4.3.5) gets an ACK to ciaddr with the options (mask, routers, DNS) and no
//!    lease time, T1, T2 or yiaddr;
//! 3. the client identifier comes back in OFFER, ACK and NAK (RFC 6842 §3);
//! 4. `[pxe] next_server` is the `siaddr` of every reply, to a client that is not network booting too
//!    (RFC 2131 §2), without giving it a boot file.

mod netns_support;

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use leasehold_tests::{
    build, test_mac, ClientConfig, ClientMessage, ClientOptions, MessageType, RequestState, RetryPolicy, Target,
    TestClient,
};
use netns_support::*;

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const NEXT_SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 9);

fn start(segment: &Segment, dir: &std::path::Path) -> Server {
    let config = dir.join("leasehold.toml");
    std::fs::write(
        &config,
        format!(
            r#"# Written by tests/requests.rs.
[server]
server_ip = "{SERVER_IP}"

[pxe]
next_server = "{NEXT_SERVER}"

[[pool]]
name = "lab"
subnet = "10.77.0.0/24"
range_start = "10.77.0.100"
range_end = "10.77.0.150"
routers = ["10.77.0.1"]
dns_servers = ["10.77.0.53"]
"#
        ),
    )
    .expect("write the config file");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("create the data dir");
    Server::start(&segment.server(1), &data, &dir.join("leasehold.log"), &["--config", config.to_str().expect("UTF-8")])
}

/// A plain client's options: no 66/67 asked for, so no boot settings are due.
fn plain() -> ClientOptions {
    ClientOptions { parameter_request_list: vec![1, 3, 6, 51, 54], ..ClientOptions::default() }
}

#[test]
fn odd_but_real_requests_are_answered() {
    let segment = Segment::up(1, 1, 24);
    let dir = scratch_dir("requests");
    let server = start(&segment, dir.path());
    let ns = segment.client(1);
    let _capture = Capture::start(&ns, &dir.path().join("capture.txt"));
    let mut client = TestClient::bind(ClientConfig::in_namespace(&ns, "eth0")).expect("open the test client");
    let policy = RetryPolicy::default();
    let deadline = || Instant::now() + Duration::from_secs(10);

    // 1. DISCOVER → OFFER, then a SELECTING REQUEST with option 54 and no option 50.
    let mac = test_mac(0x50);
    let xid = client.next_xid();
    let discover = ClientMessage::Discover { requested_ip: None };
    let offer = client
        .exchange(mac, xid, &discover, &plain(), Target::Broadcast, &[MessageType::Offer], &policy, deadline())
        .expect("an OFFER");
    let with_50 = build(
        mac,
        xid,
        &ClientMessage::Request(RequestState::Selecting { requested_ip: offer.yiaddr, server_id: SERVER_IP }),
        &plain(),
    );
    let option_50 = [&[50u8, 4][..], &offer.yiaddr.octets()].concat();
    let at = with_50.windows(6).position(|w| w == option_50).expect("the harness writes option 50");
    let without_50 = [&with_50[..at], &with_50[at + 6..], &[0u8; 6][..]].concat();
    client.send_raw(&without_50, Target::Broadcast).expect("send the REQUEST");
    let ack = client.recv_reply(xid, Duration::from_secs(5)).expect("a reply to the REQUEST without option 50");
    assert!(ack.is(MessageType::Ack), "RFC 2131 §4.3.2 SELECTING without 50: ACK the held offer, got {ack:?}");
    assert_eq!(ack.yiaddr, offer.yiaddr, "the ACK is for the address offered to this client");
    server.wait_lease(offer.yiaddr, Duration::from_secs(5), "bound", |l| l.state == "bound");

    // 4. next_server in siaddr of that OFFER and ACK, and no boot file for a client not booting.
    for (stage, reply) in [("OFFER", &offer), ("ACK", &ack)] {
        assert_eq!(reply.siaddr, NEXT_SERVER, "{stage}: siaddr = next_server (RFC 2131 §2)");
        assert_eq!((reply.file.as_deref(), reply.option(67)), (None, None), "{stage}: no boot file asked, none given");
    }

    // 3. RFC 6842: option 61 echoed in OFFER, ACK and NAK.
    let id = vec![0xff, 0, 0, 0, 7, 0, 1, 0, 1];
    let with_id = ClientOptions { client_id: Some(id.clone()), ..plain() };
    let lease = client.dora_with(test_mac(0x61), &with_id, &policy, Duration::from_secs(10)).expect("a DORA");
    assert_eq!(lease.offer.option(61), Some(id.as_slice()), "OFFER echoes option 61");
    assert_eq!(lease.ack.option(61), Some(id.as_slice()), "ACK echoes option 61");
    let xid = client.next_xid();
    let wrong = ClientMessage::Request(RequestState::InitReboot { requested_ip: Ipv4Addr::new(10, 77, 0, 149) });
    let nak = client
        .exchange(test_mac(0x61), xid, &wrong, &with_id, Target::Broadcast, &[MessageType::Nak], &policy, deadline())
        .expect("a NAK for an INIT-REBOOT with another address");
    assert_eq!(nak.option(61), Some(id.as_slice()), "NAK echoes option 61");

    // 2. DHCPINFORM from a client with a configured address outside the pool: an ACK to ciaddr.
    let configured = Ipv4Addr::new(10, 77, 0, 60);
    let out = Command::new("ip").args(["-n", &ns, "addr", "add", "10.77.0.60/24", "dev", "eth0"]).output().expect("ip");
    assert!(out.status.success(), "ip addr add: {}", String::from_utf8_lossy(&out.stderr));
    let inform = ClientMessage::Inform { address: configured };
    let options = ClientOptions { broadcast: false, ..plain() };
    let xid = client.next_xid();
    let reply = client
        .exchange(test_mac(0x08), xid, &inform, &options, Target::Broadcast, &[MessageType::Ack], &policy, deadline())
        .expect("an ACK to the INFORM");
    assert_eq!(reply.yiaddr, Ipv4Addr::UNSPECIFIED, "§4.3.5: no yiaddr");
    assert_eq!(
        (reply.lease_time_secs, reply.renewal_time_secs, reply.rebinding_time_secs),
        (None, None, None),
        "§4.3.5: no lease time (nor T1/T2)"
    );
    assert_eq!(reply.subnet_mask, Some(Ipv4Addr::new(255, 255, 255, 0)));
    assert_eq!(reply.routers, vec![Ipv4Addr::new(10, 77, 0, 1)]);
    assert_eq!(reply.dns_servers, vec![Ipv4Addr::new(10, 77, 0, 53)]);
    assert_eq!(reply.source.map(|s| *s.ip()), Some(SERVER_IP));
    assert!(server.lease_of(configured).is_none(), "an INFORM binds nothing");
}

/// `GET /v1/leases` comes in pages (a million-lease table is never listed in one go on the DHCP
/// thread): `limit` rows at most, in address order, after `after`; a short page is the last one; a
/// bad `limit` or `after` is refused with 400.
#[test]
fn the_lease_list_comes_in_pages_in_address_order() {
    let segment = Segment::up(1, 1, 24);
    let dir = scratch_dir("lease-pages");
    let server = start(&segment, dir.path());
    let mut client =
        TestClient::bind(ClientConfig::in_namespace(&segment.client(1), "eth0")).expect("open the test client");
    let mut bound: Vec<Ipv4Addr> =
        (0..5).map(|i| client.dora(test_mac(0x60 + i), Duration::from_secs(10)).expect("DORA").address).collect();
    bound.sort();

    let page = |query: &str| -> Vec<Lease> {
        let path = format!("/v1/leases{query}");
        let (code, body) = http_get(&server.ns, ADMIN_PORT, &path).expect("GET /v1/leases");
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not a lease array ({e}): {body}"))
    };
    let ips = |rows: &[Lease]| rows.iter().map(|lease| lease.ip).collect::<Vec<_>>();
    let first = page("?limit=2");
    assert_eq!(ips(&first), bound[..2], "the first two addresses");
    let second = page(&format!("?limit=2&after={}", bound[1]));
    assert_eq!(ips(&second), bound[2..4]);
    let last = page(&format!("?after={}&limit=2", bound[3]));
    assert_eq!(ips(&last), bound[4..], "a short page: the end of the table");
    assert!(page(&format!("?after={}", bound[4])).is_empty(), "nothing after the last address");
    assert_eq!(ips(&page("")), bound, "without a limit: up to 1,000 rows");
    assert_eq!(ips(&server.leases()), bound, "all pages");

    for bad in ["?limit=0", "?limit=10001", "?after=10.77.0", "?after=banana"] {
        let (code, body) = http_get(&server.ns, ADMIN_PORT, &format!("/v1/leases{bad}")).expect("GET");
        assert_eq!(code, 400, "GET /v1/leases{bad} must be refused: {body}");
    }
}
