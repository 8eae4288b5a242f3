//! Real DHCP clients against `leasehold serve` on a private L2 segment (network namespaces).
//!
//! Each test builds its own segment (`scripts/netns.sh up`: one server namespace with eth0 = 10.77.0.1/24,
//! one client namespace), starts `leasehold serve` there with a fresh data directory (fsync on), and then
//! drives one real client — ISC dhclient, busybox udhcpc, dhcpcd — through the life of a lease:
//!
//! 1. bind: DISCOVER → OFFER → REQUEST (SELECTING) → ACK (RFC 2131 §3.1, §4.3.1, §4.3.2); the address is
//!    from the pool, the client configures it with the offered mask, the server records it as bound to
//!    the client's MAC;
//! 2. renew: the client's own renewal mechanism (RFC 2131 §4.3.2 INIT-REBOOT or RENEWING, §4.4.5); the
//!    client keeps the same address and the server's expiry moves forward;
//! 3. release: DHCPRELEASE (RFC 2131 §4.4.6, §4.3.4); the server marks the lease released.
//!
//! The clients run with hook scripts of the test's own that only set the address on the client's own
//! eth0 and report each event on a pipe; the test waits on those events and on process exits. A capture of
//! the client's DHCP traffic and the server's log are printed when a test fails.
//! Everything runs inside the test's namespaces; they are removed when the test ends, also on failure.

mod netns_support;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use netns_support::*;

const SERVER_IP: &str = "10.77.0.1";
const POOL_START: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
const POOL_END: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 200);
const LEASE_SECS: u64 = 600;

/// `leasehold serve` on the segment's first server namespace, pool 10.77.0.100–10.77.0.200 in a /24.
fn start_server(segment: &Segment, dir: &Path) -> Server {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("create the data dir");
    let lease = LEASE_SECS.to_string();
    let args = [
        "--server-ip",
        SERVER_IP,
        "--ip-start",
        "10.77.0.100",
        "--ip-end",
        "10.77.0.200",
        "--subnet-mask",
        "255.255.255.0",
        "--router",
        SERVER_IP,
        "--lease-time",
        &lease,
    ];
    Server::start(&segment.server(1), &data, &dir.join("leasehold.log"), &args)
}

fn in_pool(ip: Ipv4Addr) -> bool {
    (u32::from(POOL_START)..=u32::from(POOL_END)).contains(&u32::from(ip))
}

/// Step 1 checks, shared by every client: the address is from the pool, configured on the client's eth0
/// with the /24 mask the server sent (option 1), and bound to the client's MAC in the server's table.
fn check_bound(server: &Server, client_ns: &str, ip: Ipv4Addr, client: &str) -> Lease {
    assert!(in_pool(ip), "{client} was given {ip}, expected an address in the pool {POOL_START}–{POOL_END}");
    let addrs = ipv4_addrs(client_ns, "eth0");
    assert!(
        addrs.contains(&(ip, 24)),
        "{client} reported {ip}, expected {ip}/24 on its eth0 (subnet mask option 1), `ip -4 addr` shows {addrs:?}"
    );
    let mac = mac_of(client_ns, "eth0");
    let lease = server.wait_lease(ip, Duration::from_secs(5), "bound to the client's MAC", |lease| {
        lease.state == "bound" && lease.mac.eq_ignore_ascii_case(&mac)
    });
    let now = unix_now();
    assert!(
        lease.expires_at > now && lease.expires_at <= now + LEASE_SECS + 5,
        "the lease for {ip} expires at {}, expected now ({now}) + at most the {LEASE_SECS} s lease time",
        lease.expires_at
    );
    lease
}

/// Step 2 checks: the same address, still configured, and the server extended the lease (RFC 2131
/// §4.3.2: the server "SHOULD" extend the lease of a client whose REQUEST it ACKs; `expires_at` was
/// stamped at least one second earlier, so a new ACK gives a strictly later expiry).
fn check_renewed(server: &Server, client_ns: &str, before: &Lease, renewed: Ipv4Addr, client: &str) {
    assert_eq!(renewed, before.ip, "{client} renewed with {renewed}, expected to keep {}", before.ip);
    assert!(ipv4_addrs(client_ns, "eth0").contains(&(renewed, 24)), "{client}'s eth0 lost {renewed} after renewing");
    let old = before.expires_at;
    server.wait_lease(renewed, Duration::from_secs(5), &format!("bound with an expiry later than {old}"), |lease| {
        lease.state == "bound" && lease.mac.eq_ignore_ascii_case(&before.mac) && lease.expires_at > old
    });
}

/// Step 3 checks: the server marked the lease released (RFC 2131 §4.3.4) and the client let go of it.
fn check_released(server: &Server, client_ns: &str, ip: Ipv4Addr, client: &str) {
    server.wait_lease(ip, Duration::from_secs(5), "released", |lease| lease.state == "released");
    let addrs = ipv4_addrs(client_ns, "eth0");
    assert!(!addrs.iter().any(|(a, _)| *a == ip), "{client} released {ip} but its eth0 still has it: {addrs:?}");
}

#[test]
fn isc_dhclient_binds_renews_and_releases() {
    let dhclient = require_tool("dhclient");
    let segment = Segment::up(1, 1, 24);
    let dir = scratch_dir("dhclient");
    let server = start_server(&segment, dir.path());
    let ns = segment.client(1);
    let _capture = Capture::start(&ns, &dir.path().join("capture.txt"));
    let mut events = Events::new(dir.path());

    let hook = dir.path().join("dhclient-hook.sh");
    write_script(
        &hook,
        &format!(
            r#"#!/bin/sh
# dhclient hook of the Leasehold tests: configures only $interface (the client namespace's eth0) and
# reports "<reason> <address>" on the test's pipe.
case "$reason" in
BOUND|RENEW|REBIND|REBOOT)
    if [ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ]; then
        ip -4 addr flush dev "$interface"
    fi
    ip -4 addr replace "$new_ip_address/$new_subnet_mask" dev "$interface"
    ;;
RELEASE|EXPIRE|FAIL)
    ip -4 addr flush dev "$interface"
    ;;
esac
echo "$reason ${{new_ip_address:-${{old_ip_address:--}}}}" > {fifo}
"#,
            fifo = events.path.display()
        ),
    );
    let conf = dir.path().join("dhclient.conf");
    std::fs::write(
        &conf,
        "send host-name = \"lh-dhclient-test\";\n\
         request subnet-mask, broadcast-address, time-offset, routers, domain-name-servers, host-name;\n\
         timeout 30;\n\
         initial-interval 1;\n",
    )
    .expect("write dhclient.conf");
    let log = dir.path().join("dhclient.log");
    let dhclient_cmd = |extra: &[&str]| {
        let mut cmd = in_ns(&ns, &dhclient);
        cmd.args(["-4", "-v"]).args(extra);
        cmd.arg("-cf").arg(&conf).arg("-pf").arg(dir.path().join("dhclient.pid"));
        cmd.arg("-lf").arg(dir.path().join("dhclient.leases")).arg("-sf").arg(&hook).arg("eth0");
        cmd
    };

    // 1. INIT → SELECTING → REQUESTING → BOUND (RFC 2131 §4.4.1). `-1`: one try; the foreground process
    //    exits 0 once bound and leaves the daemon running.
    run_ok("dhclient -1 (bind)", dhclient_cmd(&["-1"]), &log, Duration::from_secs(45));
    let bound = events.expect(&["BOUND"], Duration::from_secs(5), "dhclient bind");
    let ip = event_ip(&bound, "dhclient bind");
    let lease = check_bound(&server, &ns, ip, "dhclient");
    assert_eq!(
        lease.hostname.as_deref(),
        Some("lh-dhclient-test"),
        "dhclient sent host name option 12 \"lh-dhclient-test\" (RFC 2132 §3.14); the server's lease record has {:?}",
        lease.hostname
    );

    // 2. Renew by reboot: stop the daemon without releasing (-x), start again with the same lease file.
    //    The client is then in INIT-REBOOT and REQUESTs its address with option 50 and no server
    //    identifier (RFC 2131 §3.2, §4.3.2); the server must ACK it, not NAK.
    wait_for_next_second();
    run_ok("dhclient -x (stop)", dhclient_cmd(&["-x"]), &log, Duration::from_secs(15));
    events.expect(&["STOP"], Duration::from_secs(5), "dhclient -x");
    run_ok("dhclient -1 (reboot)", dhclient_cmd(&["-1"]), &log, Duration::from_secs(45));
    let rebooted = events.expect(&["REBOOT", "BOUND"], Duration::from_secs(5), "dhclient reboot");
    assert_eq!(
        rebooted[0],
        "REBOOT",
        "dhclient restarted with its lease should have got its INIT-REBOOT REQUEST ACKed (reason REBOOT); \
         it fell back to DISCOVER instead (reason BOUND) — the server NAKed or ignored the INIT-REBOOT REQUEST\n{}",
        tail_of(&log)
    );
    check_renewed(&server, &ns, &lease, event_ip(&rebooted, "dhclient reboot"), "dhclient");

    // 3. dhclient -r: DHCPRELEASE unicast to the server identifier (RFC 2131 §4.4.6), then deconfigure.
    run_ok("dhclient -r (release)", dhclient_cmd(&["-r"]), &log, Duration::from_secs(15));
    events.expect(&["RELEASE"], Duration::from_secs(5), "dhclient -r");
    check_released(&server, &ns, ip, "dhclient");
}

#[test]
fn busybox_udhcpc_binds_renews_and_releases() {
    let udhcpc = require_tool("udhcpc");
    let segment = Segment::up(1, 1, 24);
    let dir = scratch_dir("udhcpc");
    let server = start_server(&segment, dir.path());
    let ns = segment.client(1);
    let _capture = Capture::start(&ns, &dir.path().join("capture.txt"));
    let mut events = Events::new(dir.path());

    let hook = udhcpc_hook(dir.path(), &events);

    // Long-running udhcpc (-f foreground, -R release on exit), so that SIGUSR1/SIGUSR2 can drive it.
    let mut cmd = in_ns(&ns, &udhcpc);
    cmd.args(["-i", "eth0", "-f", "-R", "-t", "5", "-T", "2", "-s"]).arg(&hook);
    let log = dir.path().join("udhcpc.log");
    let mut client = Proc::spawn("udhcpc", cmd, &log);

    // 1. DISCOVER → OFFER → REQUEST (SELECTING, with server identifier) → ACK (RFC 2131 §4.4.1).
    let bound = events.expect(&["bound"], Duration::from_secs(30), "udhcpc bind");
    let ip = event_ip(&bound, "udhcpc bind");
    let lease = check_bound(&server, &ns, ip, "udhcpc");

    // 2. SIGUSR1: renew now — a REQUEST in RENEWING state, unicast with ciaddr set and no server
    //    identifier or requested address (RFC 2131 §4.3.2, §4.4.5).
    wait_for_next_second();
    signal(client.pid, libc::SIGUSR1);
    let renewed = events.expect(&["renew", "bound", "nak", "leasefail"], Duration::from_secs(15), "udhcpc renew");
    assert_eq!(
        renewed[0],
        "renew",
        "udhcpc's RENEWING REQUEST should have been ACKed (event renew); got {renewed:?}\n{}",
        tail_of(&log)
    );
    check_renewed(&server, &ns, &lease, event_ip(&renewed, "udhcpc renew"), "udhcpc");

    // 3. SIGUSR2: DHCPRELEASE unicast to the server (RFC 2131 §4.4.6), then deconfig.
    signal(client.pid, libc::SIGUSR2);
    events.expect(&["deconfig"], Duration::from_secs(10), "udhcpc release");
    check_released(&server, &ns, ip, "udhcpc");

    client.stop(Duration::from_secs(5));
}

#[test]
fn dhcpcd_binds_renews_and_releases() {
    let segment = Segment::up(1, 1, 24);
    let dir = scratch_dir("dhcpcd");
    let server = start_server(&segment, dir.path());
    let ns = segment.client(1);
    let _capture = Capture::start(&ns, &dir.path().join("capture.txt"));
    let mut dhcpcd = Dhcpcd::start(&ns, dir.path());

    // 1. DISCOVER → OFFER → (ARP probe, RFC 2131 §2.2) REQUEST → ACK (RFC 2131 §4.4.1).
    let bound = dhcpcd.events.expect(&["BOUND"], Duration::from_secs(40), "dhcpcd bind");
    let ip = event_ip(&bound, "dhcpcd bind");
    let lease = check_bound(&server, &ns, ip, "dhcpcd");

    // 2. `dhcpcd -n`: the running daemon renews its lease (REQUEST in RENEWING, RFC 2131 §4.3.2).
    wait_for_next_second();
    dhcpcd.control("dhcpcd -n (renew)", "-n");
    let renewed = dhcpcd.events.expect(
        &["RENEW", "REBIND", "REBOOT", "BOUND", "NAK", "EXPIRE"],
        Duration::from_secs(30),
        "dhcpcd renew",
    );
    assert!(
        ["RENEW", "REBIND", "REBOOT"].contains(&renewed[0].as_str()),
        "dhcpcd -n should have renewed its lease (RENEW/REBIND/REBOOT); got {renewed:?}\n{}",
        tail_of(&dhcpcd.log)
    );
    check_renewed(&server, &ns, &lease, event_ip(&renewed, "dhcpcd renew"), "dhcpcd");

    // 3. `dhcpcd -k`: DHCPRELEASE (RFC 2131 §4.4.6), deconfigure, and the daemon exits.
    dhcpcd.control("dhcpcd -k (release)", "-k");
    dhcpcd.daemon.expect_success(Duration::from_secs(15));
    check_released(&server, &ns, ip, "dhcpcd");
}
