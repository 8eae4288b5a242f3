//! Moving from Kea or ISC dhcpd to Leasehold without renumbering (issue 12, "Migration"), on a
//! namespace segment with the real old server, the real lease file it wrote and ISC dhclient:
//!
//! 1. the old server (kea-dhcp4 with its memfile, or dhcpd) gives dhclient an address, with T1 10 s;
//! 2. it stops, and Leasehold starts on the same server address with a pool whose first free address
//!    is another one; a test client takes that first address;
//! 3. `leasehold import` reads the old server's file (plus a record that conflicts with the test
//!    client's binding): dhclient's lease is bound through the log with the file's expiry, the
//!    conflict is refused and listed, and the command exits 1;
//! 4. dhclient's next RENEW (RFC 2131 §4.3.2, unicast to the same server identifier) is ACKed by
//!    Leasehold for the same address, with Leasehold's lease time;
//! 5. (Kea) `leasehold export --kea-csv` writes a file kea-dhcp4 loads, and Kea offers dhclient's MAC
//!    the same address from it.

mod netns_support;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use leasehold_tests::{
    test_mac, ClientConfig, ClientMessage, ClientOptions, MessageType, RetryPolicy, Target, TestClient,
};
use netns_support::*;

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// Leasehold's pool starts below the old server's: a client it did not know would get .50.
const LEASEHOLD_FIRST: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 50);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Old {
    Kea,
    Dhcpd,
}

fn kea_config(dir: &Path, lease_file: &Path) -> PathBuf {
    let path = dir.join("kea.json");
    let text = format!(
        r#"{{ "Dhcp4": {{
  "interfaces-config": {{ "interfaces": ["eth0"], "dhcp-socket-type": "raw" }},
  "lease-database": {{ "type": "memfile", "persist": true, "name": "{}", "lfc-interval": 0 }},
  "valid-lifetime": 60, "renew-timer": 10, "rebind-timer": 40,
  "subnet4": [ {{ "id": 1, "subnet": "10.77.0.0/24", "pools": [ {{ "pool": "10.77.0.100 - 10.77.0.120" }} ] }} ],
  "loggers": [ {{ "name": "kea-dhcp4", "output_options": [ {{ "output": "stdout" }} ], "severity": "INFO" }} ]
}} }}"#,
        lease_file.display()
    );
    std::fs::write(&path, text).expect("write kea.json");
    path
}

/// Starts the old server in `ns`, writing its leases to `lease_file`; waits until it listens.
fn start_old(old: Old, ns: &str, dir: &Path, lease_file: &Path) -> Proc {
    match old {
        Old::Kea => {
            let config = kea_config(dir, lease_file);
            let mut cmd = in_ns(ns, require_tool("kea-dhcp4"));
            cmd.arg("-c").arg(config).env("KEA_PIDFILE_DIR", dir).env("KEA_LOCKFILE_DIR", dir);
            let log = dir.join("kea.log");
            let proc = Proc::spawn("kea-dhcp4", cmd, &log);
            wait_log_line(&log, "DHCP4_STARTED", "kea-dhcp4 started");
            proc
        }
        Old::Dhcpd => {
            let config = dir.join("dhcpd.conf");
            std::fs::write(
                &config,
                "authoritative;\ndefault-lease-time 60;\nmax-lease-time 60;\noption dhcp-renewal-time 10;\n\
                 option dhcp-rebinding-time 40;\nsubnet 10.77.0.0 netmask 255.255.255.0 {\n  range 10.77.0.100 10.77.0.120;\n}\n",
            )
            .expect("write dhcpd.conf");
            std::fs::write(lease_file, "").expect("create dhcpd.leases");
            let mut cmd = in_ns(ns, require_tool("dhcpd"));
            cmd.args(["-4", "-f", "-d", "-cf"]).arg(&config).arg("-lf").arg(lease_file);
            cmd.arg("-pf").arg(dir.join("dhcpd.pid")).arg("eth0");
            let log = dir.join("dhcpd.log");
            let proc = Proc::spawn("dhcpd", cmd, &log);
            wait_log_line(&log, "Sending on", "dhcpd listening");
            proc
        }
    }
}

/// Polls a log (no readiness event from the old servers) until it has `needle`, at most 20 s.
fn wait_log_line(log: &Path, needle: &str, what: &str) {
    poll_until(
        Duration::from_secs(20),
        || std::fs::read_to_string(log).unwrap_or_default(),
        |text| text.contains(needle),
        |text| format!("{what}: `{needle}` not in {} within 20 s:\n{text}", log.display()),
    );
}

/// A record for `ip`, leased to another MAC, in the old server's format.
fn conflicting_record(old: Old, ip: Ipv4Addr, mac: &str) -> String {
    let ends = unix_now() + 3600;
    match old {
        Old::Kea => format!("{ip},{mac},,3600,{ends},1,0,0,,0,\n"),
        Old::Dhcpd => {
            format!("lease {ip} {{\n  ends epoch {ends};\n  binding state active;\n  hardware ethernet {mac};\n}}\n")
        }
    }
}

fn migrate_from(old: Old) {
    let segment = Segment::up(1, 1, 24);
    let dir = scratch_dir(&format!("import-{old:?}").to_lowercase());
    let ns = segment.server(1);
    let client_ns = segment.client(1);
    let lease_file = dir.path().join(if old == Old::Kea { "kea-leases4.csv" } else { "dhcpd.leases" });

    // 1. The old server leases dhclient an address.
    let mut old_server = start_old(old, &ns, dir.path(), &lease_file);
    let mut dhclient = Dhclient::new(&client_ns, &subdir(dir.path(), "dhclient"));
    dhclient.run("-1", Duration::from_secs(40));
    let bound = dhclient.events.expect(&["BOUND"], Duration::from_secs(10), "dhclient from the old server");
    let address = event_ip(&bound, "dhclient");
    let mac = mac_of(&client_ns, "eth0");
    assert!((100..=120).contains(&address.octets()[3]), "{old:?} leased {address} from its pool");
    poll_until(
        Duration::from_secs(10),
        || std::fs::read_to_string(&lease_file).unwrap_or_default(),
        |text| text.contains(&address.to_string()),
        |text| format!("{old:?} did not write {address} to its lease file:\n{text}"),
    );

    // 2. The old server stops; Leasehold takes over its address, a test client its first address.
    old_server.stop(Duration::from_secs(10));
    let config = dir.path().join("leasehold.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nserver_ip = \"{SERVER_IP}\"\n\n[[pool]]\nname = \"lab\"\nsubnet = \"10.77.0.0/24\"\n\
             range_start = \"{LEASEHOLD_FIRST}\"\nrange_end = \"10.77.0.200\"\nlease_time_secs = 120\n"
        ),
    )
    .expect("write leasehold.toml");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("create the data dir");
    let server =
        Server::start(&ns, &data, &dir.path().join("leasehold.log"), &["--config", config.to_str().expect("UTF-8")]);
    let mut client = TestClient::bind(ClientConfig::in_namespace(&client_ns, "eth0")).expect("open the test client");
    let other = client
        .dora_with(test_mac(0x77), &ClientOptions::default(), &RetryPolicy::default(), Duration::from_secs(10))
        .expect("a DORA from Leasehold");
    assert_eq!(other.ack.yiaddr, LEASEHOLD_FIRST, "a client Leasehold did not know gets its pool's first address");

    // 3. Import the old file, plus a record for the test client's address under another MAC.
    let import_file = dir.path().join("to-import");
    let text = std::fs::read_to_string(&lease_file).expect("read the old lease file");
    std::fs::write(&import_file, text + &conflicting_record(old, LEASEHOLD_FIRST, "52:54:00:99:99:99"))
        .expect("write the file to import");
    let flag = if old == Old::Kea { "--kea-csv" } else { "--dhcpd-leases" };
    let out = in_ns(&ns, leasehold_bin())
        .args(["import", flag])
        .arg(&import_file)
        .args(["--admin", &format!("127.0.0.1:{ADMIN_PORT}")])
        .output()
        .expect("run leasehold import");
    let printed = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a refused lease makes the import exit 1:\n{printed}");
    assert!(printed.contains("imported 1 lease(s), refused 1"), "{printed}");
    assert!(
        printed.contains(&format!("refused {LEASEHOLD_FIRST} 52:54:00:99:99:99: the address is leased to")),
        "the conflict is listed with its reason:\n{printed}"
    );
    let imported = server.lease_of(address).unwrap_or_else(|| panic!("{address} is not in the table after import"));
    assert_eq!((imported.state.as_str(), imported.mac.as_str()), ("bound", mac.as_str()), "{imported:?}");
    let old_expiry = imported.expires_at;
    assert!(old_expiry > unix_now() && old_expiry <= unix_now() + 60, "the old server's expiry is kept: {imported:?}");

    // 4. dhclient renews by unicast to the same server identifier: Leasehold ACKs the same address.
    let renewed = dhclient.events.expect(&["RENEW", "REBIND"], Duration::from_secs(45), "dhclient's renewal");
    assert_eq!(renewed[0], "RENEW", "a unicast RENEW, not a rebind: {renewed:?}");
    assert_eq!(event_ip(&renewed, "dhclient"), address, "dhclient keeps its address");
    let after = server.wait_lease(address, Duration::from_secs(5), "renewed by Leasehold", |l| {
        l.expires_at > old_expiry && l.mac == mac
    });
    assert!(after.expires_at + 5 >= unix_now() + 120, "Leasehold's lease time now: {after:?}");

    // The CLI for people: human times and filters over the same table, and the cluster as a table.
    let cli = |args: &[&str]| {
        let out = in_ns(&ns, leasehold_bin())
            .args(args)
            .args(["--admin", &format!("127.0.0.1:{ADMIN_PORT}")])
            .output()
            .expect("run leasehold");
        assert!(out.status.success(), "leasehold {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = cli(&["leases", "--pool", "lab", "--state", "bound"]);
    println!("$ leasehold leases --pool lab --state bound\n{listed}");
    assert!(listed.contains("2 lease(s)") && listed.contains(&address.to_string()), "{listed}");
    let row = listed.lines().find(|l| l.starts_with(&address.to_string())).expect("dhclient's row");
    assert!(row.contains(" in 1m") || row.contains(" in 2m") || row.contains(" in 59s"), "a human expiry: {row}");
    let mine = cli(&["leases", "--mac", &mac.to_uppercase()]);
    assert!(mine.contains("1 lease(s)") && mine.contains(&address.to_string()), "--mac filters: {mine}");
    let json: serde_json::Value =
        serde_json::from_str(&cli(&["leases", "--state", "released", "--json"])).expect("JSON");
    assert_eq!(json, serde_json::json!([]), "nothing released");
    let status = cli(&["cluster", "status"]);
    println!("$ leasehold cluster status\n{status}");
    assert!(status.starts_with("node 1 sees leader 1") && status.contains("config digest"), "{status}");
    assert!(status.lines().any(|l| l.starts_with("1    leader")), "one row per member: {status}");
    dhclient.run("-x", Duration::from_secs(20));

    // 5. Back the other way: Kea loads Leasehold's export and offers dhclient's MAC the same address.
    if old == Old::Kea {
        let exported = dir.path().join("exported.csv");
        let out = in_ns(&ns, leasehold_bin())
            .args(["export", "--kea-csv"])
            .arg(&exported)
            .args(["--admin", &format!("127.0.0.1:{ADMIN_PORT}")])
            .output()
            .expect("run leasehold export");
        assert!(out.status.success(), "leasehold export: {}", String::from_utf8_lossy(&out.stderr));
        drop(server);
        let kea_dir = subdir(dir.path(), "kea-again");
        let _kea = start_old(Old::Kea, &ns, &kea_dir, &exported);
        let mac_bytes: Vec<u8> = mac.split(':').map(|b| u8::from_str_radix(b, 16).expect("hex")).collect();
        let xid = client.next_xid();
        let offer = client
            .exchange(
                mac_bytes.try_into().expect("6 bytes"),
                xid,
                &ClientMessage::Discover { requested_ip: None },
                &ClientOptions::default(),
                Target::Broadcast,
                &[MessageType::Offer],
                &RetryPolicy::default(),
                Instant::now() + Duration::from_secs(10),
            )
            .expect("an OFFER from Kea");
        assert_eq!(offer.yiaddr, address, "Kea offers the address of the lease Leasehold exported");
    }
}

#[test]
fn kea_memfile_leases_import_and_dhclient_renews_the_same_address_from_leasehold() {
    migrate_from(Old::Kea);
}

#[test]
fn isc_dhcpd_leases_import_and_dhclient_renews_the_same_address_from_leasehold() {
    migrate_from(Old::Dhcpd);
}
