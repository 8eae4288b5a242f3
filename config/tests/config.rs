//! The config file and its flag overlay, end to end: the example loads with the values it documents,
//! and every check names the file, the key path (or flag) and the problem.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use leasehold_config::{
    ClientIdentity, Config, ConfigError, ConfigErrors, LogFormat, LogLevel, Overrides, Subnet, EXAMPLE_TOML,
};

const FILE: &str = "test.toml";

/// A minimal valid config; tests append to it or replace parts of it.
const BASE: &str = r#"
[server]
server_ip = "10.0.0.1"

[[pool]]
subnet = "10.0.0.0/24"
range_start = "10.0.0.10"
range_end = "10.0.0.20"
"#;

fn ip(text: &str) -> Ipv4Addr {
    text.parse().expect("test address")
}

fn load(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml_str(text, FILE)
}

fn load_with(text: &str, overrides: &Overrides) -> Result<Config, ConfigErrors> {
    Config::from_toml_str_with_overrides(text, FILE, overrides)
}

fn rejected(text: &str) -> ConfigErrors {
    match load(text) {
        Ok(config) => panic!("expected errors, the config loaded: {config:#?}"),
        Err(errors) => errors,
    }
}

fn rejected_with(text: &str, overrides: &Overrides) -> ConfigErrors {
    match load_with(text, overrides) {
        Ok(config) => panic!("expected errors, the config loaded: {config:#?}"),
        Err(errors) => errors,
    }
}

/// The one error with this key; its message must contain every `words`.
fn expect_error<'a>(errors: &'a ConfigErrors, key: &str, words: &[&str]) -> &'a ConfigError {
    let found: Vec<&ConfigError> = errors.for_key(key).collect();
    assert_eq!(found.len(), 1, "expected exactly one error for `{key}`, got:\n{errors}");
    let error = found[0];
    for word in words {
        assert!(error.problem.contains(word), "error for `{key}` should mention `{word}`: {error}");
    }
    error
}

/// The config has exactly one error, with this key.
fn only_error<'a>(errors: &'a ConfigErrors, key: &str, words: &[&str]) -> &'a ConfigError {
    assert_eq!(errors.len(), 1, "expected one error, got:\n{errors}");
    expect_error(errors, key, words)
}

#[test]
fn example_loads_with_the_documented_values() {
    let config = load(EXAMPLE_TOML).unwrap_or_else(|e| panic!("the example must load:\n{e}"));
    assert_eq!(config.interfaces[0].name.as_deref(), Some("eth0"));
    assert_eq!(config.server_ip, ip("192.168.77.1"));
    assert_eq!((config.server_port, config.client_port), (67, 68));
    assert_eq!(config.admin_listen, "127.0.0.1:6767".parse::<SocketAddr>().unwrap());
    assert_eq!(config.data_dir, PathBuf::from("./leasehold-data"));
    assert!(config.fsync);
    assert_eq!(config.identity, ClientIdentity::Mac);
    assert_eq!((config.log_format, config.log_level), (LogFormat::Term, LogLevel::Info));
    assert_eq!(config.limits, leasehold_config::Limits::default());

    assert_eq!(config.pools.len(), 1);
    let pool = &config.pools[0];
    assert_eq!(pool.name, "lab");
    assert_eq!(pool.subnet, Subnet { network: ip("192.168.77.0"), prefix_len: 24 });
    assert_eq!((pool.range_start, pool.range_end), (ip("192.168.77.100"), ip("192.168.77.200")));
    assert_eq!(pool.size(), 101);
    assert_eq!(pool.routers, vec![ip("192.168.77.1")]);
    assert_eq!(pool.dns_servers, vec![ip("192.168.77.1")]);
    assert_eq!(pool.domain_name.as_deref(), Some("lab.example"));
    assert_eq!((pool.lease_time_secs, pool.renewal_time_secs, pool.rebinding_time_secs), (3600, 1800, 3150));
    assert_eq!(pool.pxe, None);

    assert_eq!(config.pxe.tftp_server, Some(ip("192.168.77.1")));
    assert_eq!(config.pxe.next_server, None);
    assert_eq!(config.pxe.boot_file.as_deref(), Some("undionly.kpxe"));
    assert_eq!(config.pxe.ipxe_script_url.as_deref(), Some("http://192.168.77.1/boot.ipxe"));
    let arch: BTreeMap<u16, String> = [
        (0, "undionly.kpxe"),
        (7, "snponly.efi"),
        (9, "snponly.efi"),
        (11, "ipxe-arm64.efi"),
        (16, "http://192.168.77.1/snponly.efi"),
    ]
    .into_iter()
    .map(|(code, file)| (code, file.to_string()))
    .collect();
    assert_eq!(config.pxe.arch_boot_files, arch);

    assert_eq!(config.reservations.len(), 1);
    let reservation = &config.reservations[0];
    assert_eq!(reservation.mac, Some([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]));
    assert_eq!(reservation.client_id, None);
    assert_eq!(reservation.ip, ip("192.168.77.50"));
    assert_eq!(reservation.hostname.as_deref(), Some("node-50"));

    assert_eq!(config.cluster, leasehold_config::Cluster::default());
    assert_eq!(Config::demo(), config);
}

#[test]
fn example_loads_from_disk_through_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leasehold.toml");
    std::fs::write(&path, EXAMPLE_TOML).unwrap();
    let config = Config::load(Some(&path), &Overrides::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.pools[0].name, "lab");
}

#[test]
fn example_file_in_the_crate_is_the_const() {
    let on_disk = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("leasehold.example.toml"))
        .expect("config/leasehold.example.toml exists");
    assert_eq!(on_disk, EXAMPLE_TOML);
}

#[test]
fn minimal_config_gets_the_defaults() {
    let config = load(BASE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.interfaces[0].name, None);
    assert_eq!((config.server_port, config.client_port), (67, 68));
    assert_eq!(config.data_dir, PathBuf::from("./leasehold-data"));
    assert_eq!(config.admin_listen, "127.0.0.1:6767".parse::<SocketAddr>().unwrap());
    assert!(config.fsync);
    let pool = &config.pools[0];
    assert_eq!(pool.name, "pool0");
    // RFC 2131 §4.4.5: T1 defaults to half the lease, T2 to 7/8 of it.
    assert_eq!((pool.lease_time_secs, pool.renewal_time_secs, pool.rebinding_time_secs), (3600, 1800, 3150));
    assert_eq!(config.pxe, leasehold_config::Pxe::default());
    assert!(config.cluster.peers.is_empty());
    assert_eq!(config.cluster.transfer_timeout_ms, 2_000, "a few election timeouts");
}

// ---- Errors carry the file, the key and the problem ----

#[test]
fn no_file_and_no_flags_reports_server_ip_and_pool() {
    let errors = Config::load(None, &Overrides::default()).unwrap_err();
    assert_eq!(errors.len(), 2, "{errors}");
    let server_ip = expect_error(&errors, "server.server_ip", &["missing", "--server-ip"]);
    assert_eq!(server_ip.source, None);
    let pool = expect_error(&errors, "pool", &["no pool configured", "[[pool]]", "--ip-start"]);
    assert_eq!(pool.to_string(), "pool: no pool configured (give [[pool]] in the file or --ip-start/--ip-end)");
}

#[test]
fn unreadable_file_names_the_file_and_the_os_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.toml");
    let errors = Config::load(Some(&path), &Overrides::default()).unwrap_err();
    assert_eq!(errors.len(), 1);
    let error = &errors.0[0];
    assert_eq!(error.source.as_deref(), Some(path.as_path()));
    assert!(error.problem.contains("cannot read"), "{error}");
    let os_error = std::io::Error::from(std::io::ErrorKind::NotFound).to_string();
    assert!(error.to_string().starts_with(&path.display().to_string()), "{error}");
    assert!(error.problem.to_lowercase().contains("no such file") || error.problem.contains(&os_error), "{error}");
}

#[test]
fn syntax_error_names_the_file_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, "[server]\nserver_ip = \"10.0.0.1\n").unwrap();
    let errors = Config::load(Some(&path), &Overrides::default()).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors}");
    let error = &errors.0[0];
    assert_eq!(error.source.as_deref(), Some(path.as_path()));
    assert!(error.key.starts_with("line 2, column"), "{error}");
    assert!(!error.problem.is_empty());
    assert!(errors.to_string().starts_with(&format!("{}: line 2", path.display())), "{errors}");
}

#[test]
fn unknown_key_reports_its_path() {
    let errors = rejected(&format!("{BASE}lease_time = 60\n"));
    let error = only_error(&errors, "pool[0].lease_time", &["unknown field `lease_time`", "lease_time_secs", "line 9"]);
    assert_eq!(error.source.as_deref(), Some(Path::new(FILE)));
    assert!(error.to_string().starts_with("test.toml: pool[0].lease_time: unknown field"), "{error}");

    let errors = rejected(&format!("{BASE}[server.extra]\na = 1\n"));
    only_error(&errors, "server.extra", &["unknown field"]);

    let errors = rejected(&format!("{BASE}[pxe]\nboot_flie = \"x\"\n"));
    only_error(&errors, "pxe.boot_flie", &["unknown field"]);

    let errors = rejected(&format!("{BASE}[dhcp]\n"));
    only_error(&errors, "dhcp", &["unknown field"]);
}

#[test]
fn type_error_reports_its_path() {
    let errors = rejected(&format!("{BASE}lease_time_secs = \"an hour\"\n"));
    only_error(&errors, "pool[0].lease_time_secs", &["invalid type", "u32"]);
    let errors = rejected(&BASE.replace("server_ip = \"10.0.0.1\"", "server_ip = \"10.0.0.1\"\nserver_port = 70000"));
    only_error(&errors, "server.server_port", &["u16"]);
    let errors = rejected(&format!("{BASE}[cluster]\npeers = \"1=10.0.0.1:6768\"\n"));
    only_error(&errors, "cluster.peers", &["invalid type"]);
}

#[test]
fn several_errors_are_all_reported() {
    let text = r#"
[server]
server_ip = "10.0.0.300"
identity = "uuid"
[log]
level = "verbose"
[[pool]]
subnet = "10.0.0.1/24"
range_start = "10.0.0.20"
range_end = "10.0.0.10"
routers = ["gateway"]
[cluster]
heartbeat_ticks = 20
"#;
    let errors = rejected(text);
    for key in [
        "server.server_ip",
        "server.identity",
        "log.level",
        "pool[0].subnet",
        "pool[0].range_end",
        "pool[0].routers[0]",
        "cluster.heartbeat_ticks",
    ] {
        assert_eq!(errors.for_key(key).count(), 1, "expected an error for `{key}` in:\n{errors}");
    }
    assert_eq!(errors.len(), 7, "{errors}");
    // Display lists every error on its own line, each with the file.
    let shown = errors.to_string();
    assert_eq!(shown.lines().count(), 7, "{shown}");
    assert!(shown.lines().all(|line| line.starts_with("test.toml: ")), "{shown}");
}

// ---- [server] and [log] ----

#[test]
fn bad_addresses_are_named() {
    let errors = rejected(&BASE.replace("\"10.0.0.1\"", "\"10.0.0.1.5\""));
    only_error(&errors, "server.server_ip", &["`10.0.0.1.5` is not an IPv4 address"]);
    let errors = rejected(&format!("{BASE}dns_servers = [\"10.0.0.1\", \"dns.example\"]\n"));
    only_error(&errors, "pool[0].dns_servers[1]", &["`dns.example` is not an IPv4 address"]);
    let errors = rejected(&BASE.replace("[server]", "[server]\nadmin_listen = \"localhost\""));
    only_error(&errors, "server.admin_listen", &["IP:PORT"]);
}

#[test]
fn server_ip_must_not_be_leasable() {
    let errors = rejected(&BASE.replace("server_ip = \"10.0.0.1\"", "server_ip = \"10.0.0.15\""));
    only_error(&errors, "server.server_ip", &["10.0.0.15", "inside pool[0]", "10.0.0.10-10.0.0.20"]);
    let errors = rejected(&BASE.replace("server_ip = \"10.0.0.1\"", "server_ip = \"0.0.0.0\""));
    only_error(&errors, "server.server_ip", &["unicast"]);
}

#[test]
fn names_from_a_fixed_set_list_the_allowed_values() {
    let errors = rejected(&BASE.replace("[server]", "[log]\nformat = \"yaml\"\nlevel = \"loud\"\n[server]"));
    expect_error(&errors, "log.format", &["`yaml`", "`term`", "`json`"]);
    expect_error(&errors, "log.level", &["`loud`", "`error`", "`warning`", "`info`", "`debug`", "`trace`"]);
    let errors = rejected(&BASE.replace("[server]", "[server]\nidentity = \"client_id\""));
    only_error(&errors, "server.identity", &["`mac`", "`client-id`"]);
    let config = load(&BASE.replace("[server]", "[server]\nidentity = \"client-id\"")).unwrap();
    assert_eq!(config.identity, ClientIdentity::ClientId);
}

#[test]
fn ports_and_interface_are_checked() {
    let errors = rejected(&BASE.replace("[server]", "[server]\nserver_port = 0\ninterface = \"\""));
    expect_error(&errors, "server.server_port", &["greater than 0"]);
    expect_error(&errors, "server.interface", &["interface name"]);
    assert_eq!(errors.len(), 2, "{errors}");
}

#[test]
fn limits_must_be_positive() {
    let errors = rejected(&format!("{BASE}[limits]\nmax_offers = 0\noffer_hold_ms = 0\nmax_leases = 5\n"));
    expect_error(&errors, "limits.max_offers", &["greater than 0"]);
    expect_error(&errors, "limits.offer_hold_ms", &["greater than 0"]);
    assert_eq!(errors.len(), 2, "{errors}");
    let errors = rejected(&format!("{BASE}[limits]\nmax_frame_bytes = 300\n"));
    only_error(&errors, "limits.max_frame_bytes", &["576"]);
    let config = load(&format!("{BASE}[limits]\nmax_leases = 5\n")).unwrap();
    assert_eq!(config.limits.max_leases, 5);
    assert_eq!(config.limits.offer_hold_ms, leasehold_config::Limits::default().offer_hold_ms);
}

// ---- [[pool]] ----

fn two_pools(second: &str) -> String {
    format!("{BASE}\n[[pool]]\n{second}\n")
}

#[test]
fn subnet_must_have_zero_host_bits() {
    let errors = rejected(&BASE.replace("10.0.0.0/24", "10.0.0.5/24"));
    only_error(&errors, "pool[0].subnet", &["host bits", "10.0.0.0/24"]);
    let errors = rejected(&BASE.replace("10.0.0.0/24", "10.0.0.0"));
    only_error(&errors, "pool[0].subnet", &["ADDRESS/PREFIX"]);
    let errors = rejected(&BASE.replace("10.0.0.0/24", "10.0.0.0/33"));
    only_error(&errors, "pool[0].subnet", &["not a subnet"]);
}

#[test]
fn range_start_must_not_exceed_range_end() {
    let errors = rejected(&BASE.replace("10.0.0.10", "10.0.0.30"));
    only_error(&errors, "pool[0].range_end", &["below range_start"]);
}

#[test]
fn range_must_lie_inside_the_subnet() {
    let errors = rejected(&BASE.replace("10.0.0.20", "10.0.1.20"));
    only_error(&errors, "pool[0].range_end", &["10.0.1.20", "outside", "10.0.0.0/24"]);
    let errors = rejected(&BASE.replace("10.0.0.0/24", "10.0.0.16/28"));
    only_error(&errors, "pool[0].range_start", &["10.0.0.10", "outside", "10.0.0.16/28"]);
}

#[test]
fn range_must_not_contain_network_or_broadcast() {
    let text = BASE.replace("10.0.0.10", "10.0.0.0").replace("10.0.0.20", "10.0.0.255");
    let errors = rejected(&text.replace("\"10.0.0.1\"", "\"10.0.9.1\""));
    expect_error(&errors, "pool[0].range_start", &["network address"]);
    expect_error(&errors, "pool[0].range_end", &["broadcast address"]);
    assert_eq!(errors.len(), 2, "{errors}");
    // A /31 has neither (RFC 3021).
    let text = BASE.replace("10.0.0.0/24", "10.0.0.10/31").replace("10.0.0.20", "10.0.0.11");
    load(&text).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn problems_in_a_broken_pool_do_not_hide_the_checks_across_pools() {
    // pool[0]'s subnet is wrong, yet its range still counts for the server_ip, overlap and name checks,
    // and a reservation is not blamed for a subnet that could not be read.
    let text = r#"
[server]
server_ip = "10.0.0.15"
[[pool]]
name = "lab"
subnet = "10.0.0.1/24"
range_start = "10.0.0.10"
range_end = "10.0.0.20"
[[pool]]
name = "lab"
subnet = "10.0.0.0/24"
range_start = "10.0.0.20"
range_end = "10.0.0.30"
[[reservation]]
ip = "10.9.9.9"
mac = "52:54:00:00:00:01"
"#;
    let errors = rejected(text);
    expect_error(&errors, "pool[0].subnet", &["host bits"]);
    expect_error(&errors, "server.server_ip", &["inside pool[0]"]);
    expect_error(&errors, "pool[1].name", &["`lab`", "pool[0]"]);
    expect_error(&errors, "pool[1].range_start", &["overlaps pool[0]"]);
    assert_eq!(errors.len(), 4, "{errors}");
}

#[test]
fn missing_pool_fields_are_named() {
    let errors = rejected("[server]\nserver_ip = \"10.0.0.1\"\n[[pool]]\nname = \"x\"\n");
    expect_error(&errors, "pool[0].subnet", &["missing"]);
    expect_error(&errors, "pool[0].range_start", &["missing"]);
    expect_error(&errors, "pool[0].range_end", &["missing"]);
    assert_eq!(errors.len(), 3, "{errors}");
}

#[test]
fn pools_must_not_overlap() {
    let errors =
        rejected(&two_pools("subnet = \"10.0.0.0/24\"\nrange_start = \"10.0.0.20\"\nrange_end = \"10.0.0.30\""));
    only_error(&errors, "pool[1].range_start", &["overlaps pool[0]", "10.0.0.10-10.0.0.20"]);
    // Disjoint ranges in one subnet are fine.
    let config =
        load(&two_pools("subnet = \"10.0.0.0/24\"\nrange_start = \"10.0.0.21\"\nrange_end = \"10.0.0.30\"")).unwrap();
    assert_eq!(config.pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["pool0", "pool1"]);
}

#[test]
fn pool_names_must_be_unique() {
    let text = BASE.replace("[[pool]]", "[[pool]]\nname = \"lab\"");
    let text = format!(
        r#"{text}
[[pool]]
name = "lab"
subnet = "10.0.1.0/24"
range_start = "10.0.1.10"
range_end = "10.0.1.20"
"#
    );
    let errors = rejected(&text);
    only_error(&errors, "pool[1].name", &["`lab`", "pool[0]", "unique"]);
}

#[test]
fn lease_times_must_be_ordered() {
    let errors = rejected(&format!("{BASE}lease_time_secs = 0\n"));
    only_error(&errors, "pool[0].lease_time_secs", &["greater than 0"]);
    let errors =
        rejected(&format!("{BASE}lease_time_secs = 600\nrenewal_time_secs = 400\nrebinding_time_secs = 300\n"));
    only_error(&errors, "pool[0].rebinding_time_secs", &["greater than renewal_time_secs 400"]);
    let errors = rejected(&format!("{BASE}lease_time_secs = 600\nrebinding_time_secs = 600\n"));
    only_error(&errors, "pool[0].rebinding_time_secs", &["less than lease_time_secs 600"]);
    let errors = rejected(&format!("{BASE}renewal_time_secs = 0\n"));
    only_error(&errors, "pool[0].renewal_time_secs", &["greater than 0"]);
    // Defaults follow the lease time.
    let config = load(&format!("{BASE}lease_time_secs = 800\n")).unwrap();
    assert_eq!((config.pools[0].renewal_time_secs, config.pools[0].rebinding_time_secs), (400, 700));
}

// ---- PXE ----

#[test]
fn boot_files_fit_the_bootp_file_field() {
    let long = "x".repeat(128);
    let errors = rejected(&format!("{BASE}[pxe]\nboot_file = \"{long}\"\nipxe_script_url = \"\"\n"));
    expect_error(&errors, "pxe.boot_file", &["128 bytes", "127"]);
    expect_error(&errors, "pxe.ipxe_script_url", &["empty"]);
    assert_eq!(errors.len(), 2, "{errors}");
    let exactly = "y".repeat(127);
    let config = load(&format!("{BASE}[pxe]\nboot_file = \"{exactly}\"\n")).unwrap();
    assert_eq!(config.pxe.boot_file.as_deref(), Some(exactly.as_str()));
}

#[test]
fn arch_keys_are_names_or_codes() {
    let config = load(&format!("{BASE}[pxe.arch]\n16 = \"http://x/ipxe.efi\"\nuefi-arm64 = \"a.efi\"\n")).unwrap();
    assert_eq!(config.pxe.arch_boot_files.get(&16).map(String::as_str), Some("http://x/ipxe.efi"));
    assert_eq!(config.pxe.arch_boot_files.get(&11).map(String::as_str), Some("a.efi"));

    let errors = rejected(&format!("{BASE}[pxe.arch]\nx86 = \"a\"\n"));
    only_error(&errors, "pxe.arch.x86", &["not an architecture", "bios", "uefi-x64"]);
    let errors = rejected(&format!("{BASE}[pxe.arch]\n7 = \"a\"\nuefi-x64 = \"b\"\n"));
    only_error(&errors, "pxe.arch.uefi-x64", &["already given", "pxe.arch.7"]);
    let errors = rejected(&format!("{BASE}[pxe.arch]\nbios = \"{}\"\n", "z".repeat(200)));
    only_error(&errors, "pxe.arch.bios", &["127"]);
}

#[test]
fn pool_pxe_is_checked_under_its_own_path() {
    let config =
        load(&format!("{BASE}[pool.pxe]\nboot_file = \"pool.kpxe\"\n[pool.pxe.arch]\nbios = \"b.kpxe\"\n")).unwrap();
    let pxe = config.pools[0].pxe.as_ref().expect("the pool has its own PXE settings");
    assert_eq!(pxe.boot_file.as_deref(), Some("pool.kpxe"));
    assert_eq!(pxe.arch_boot_files.get(&0).map(String::as_str), Some("b.kpxe"));
    let errors = rejected(&format!("{BASE}[pool.pxe]\ntftp_server = \"tftp\"\n"));
    only_error(&errors, "pool[0].pxe.tftp_server", &["not an IPv4 address"]);
}

// ---- [[reservation]] ----

fn with_reservations(reservations: &[&str]) -> String {
    let mut text = BASE.to_string();
    for reservation in reservations {
        text.push_str("\n[[reservation]]\n");
        text.push_str(reservation);
        text.push('\n');
    }
    text
}

#[test]
fn reservation_needs_exactly_one_identity() {
    let errors = rejected(&with_reservations(&["ip = \"10.0.0.5\""]));
    only_error(&errors, "reservation[0]", &["exactly one of mac or client_id"]);
    let errors = rejected(&with_reservations(&[
        "ip = \"10.0.0.5\"\nmac = \"52:54:00:00:00:01\"\nclient_id = \"01:52:54:00:00:00:01\"",
    ]));
    only_error(&errors, "reservation[0]", &["not both"]);
}

#[test]
fn reservation_identities_are_parsed() {
    let errors = rejected(&with_reservations(&["ip = \"10.0.0.5\"\nmac = \"52:54:00:00:01\""]));
    only_error(&errors, "reservation[0].mac", &["5 octets", "6"]);
    let errors = rejected(&with_reservations(&["ip = \"10.0.0.5\"\nmac = \"52:54:00:00:01:zz\""]));
    only_error(&errors, "reservation[0].mac", &["not a MAC address"]);
    let errors = rejected(&with_reservations(&["ip = \"10.0.0.5\"\nclient_id = \"01\""]));
    only_error(&errors, "reservation[0].client_id", &["1 octets", "2 to 255"]);
    let config = load(&with_reservations(&["ip = \"10.0.0.5\"\nclient_id = \"01:52:54:00:00:00:01\""])).unwrap();
    assert_eq!(config.reservations[0].client_id, Some(vec![1, 0x52, 0x54, 0, 0, 0, 1]));
    assert_eq!(config.reservations[0].mac, None);
}

#[test]
fn reservation_ip_must_be_in_a_pool_subnet_and_not_the_server() {
    let errors = rejected(&with_reservations(&["ip = \"10.9.0.5\"\nmac = \"52:54:00:00:00:01\""]));
    only_error(&errors, "reservation[0].ip", &["10.9.0.5", "not inside any pool's subnet"]);
    let errors = rejected(&with_reservations(&["ip = \"10.0.0.1\"\nmac = \"52:54:00:00:00:01\""]));
    only_error(&errors, "reservation[0].ip", &["server_ip"]);
    let errors = rejected(&with_reservations(&["mac = \"52:54:00:00:00:01\""]));
    only_error(&errors, "reservation[0].ip", &["missing"]);
}

#[test]
fn reservations_are_unique() {
    let errors = rejected(&with_reservations(&[
        "ip = \"10.0.0.5\"\nmac = \"52:54:00:00:00:01\"",
        "ip = \"10.0.0.5\"\nmac = \"52:54:00:00:00:02\"",
        "ip = \"10.0.0.6\"\nmac = \"52:54:00:00:00:01\"",
        "ip = \"10.0.0.7\"\nclient_id = \"ff:00:01\"",
        "ip = \"10.0.0.8\"\nclient_id = \"FF:00:01\"",
    ]));
    expect_error(&errors, "reservation[1].ip", &["10.0.0.5", "reservation[0]"]);
    expect_error(&errors, "reservation[2].mac", &["reservation[0]"]);
    expect_error(&errors, "reservation[4].client_id", &["reservation[3]"]);
    assert_eq!(errors.len(), 3, "{errors}");
}

// ---- [cluster] ----

#[test]
fn peers_parse() {
    let text = format!(
        r#"{BASE}[cluster]
node_id = 2
listen = "0.0.0.0:6768"
peers = ["1=10.0.0.1:6768", "2=10.0.0.2:6768", "3=10.0.0.3:6768"]
secret_file = "/etc/leasehold/cluster.secret"
"#
    );
    let config = load(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.cluster.node_id, 2);
    assert_eq!(config.cluster.secret_file, Some(PathBuf::from("/etc/leasehold/cluster.secret")));
    assert_eq!(config.cluster.listen, Some("0.0.0.0:6768".parse().unwrap()));
    let peers: Vec<(u64, SocketAddr)> = config.cluster.peers.into_iter().collect();
    assert_eq!(
        peers,
        vec![
            (1, "10.0.0.1:6768".parse().unwrap()),
            (2, "10.0.0.2:6768".parse().unwrap()),
            (3, "10.0.0.3:6768".parse().unwrap())
        ]
    );
}

#[test]
fn bad_peers_are_named() {
    let text = format!(
        r#"{BASE}[cluster]
peers = ["1=10.0.0.1:6768", "0=10.0.0.2:6768", "10.0.0.3:6768", "1=10.0.0.4:6768", "4=host:1"]
"#
    );
    let errors = rejected(&text);
    expect_error(&errors, "cluster.peers[1]", &["greater than 0"]);
    expect_error(&errors, "cluster.peers[2]", &["ID=IP:PORT"]);
    expect_error(&errors, "cluster.peers[3]", &["id 1 is given twice"]);
    expect_error(&errors, "cluster.peers[4]", &["IP:PORT"]);
    assert_eq!(errors.len(), 4, "{errors}");
}

#[test]
fn several_peers_need_a_listen_address_and_a_secret() {
    let errors =
        rejected(&format!("{BASE}[cluster]\nnode_id = 1\npeers = [\"1=10.0.0.1:6768\", \"2=10.0.0.2:6768\"]\n"));
    expect_error(&errors, "cluster.listen", &["listen address"]);
    expect_error(&errors, "cluster.secret_file", &["shared secret"]);
    assert_eq!(errors.len(), 2, "{errors}");
}

#[test]
fn peer_tls_files_parse_and_replace_the_secret() {
    let text = format!(
        r#"{BASE}[cluster]
node_id = 1
listen = "10.0.0.1:6768"
peers = ["1=10.0.0.1:6768", "2=10.0.0.2:6768"]
tls_ca_file = "/etc/leasehold/ca.pem"
tls_cert_file = "/etc/leasehold/node-1.pem"
tls_key_file = "/etc/leasehold/node-1.key"
"#
    );
    let config = load(&text).unwrap_or_else(|e| panic!("{e}"));
    let tls = config.cluster.tls.expect("the TLS files");
    assert_eq!(tls.ca_file, PathBuf::from("/etc/leasehold/ca.pem"));
    assert_eq!(tls.cert_file, PathBuf::from("/etc/leasehold/node-1.pem"));
    assert_eq!(tls.key_file, PathBuf::from("/etc/leasehold/node-1.key"));
    assert_eq!(config.cluster.secret_file, None, "TLS alone authenticates the peers");

    // The flags override the file's keys.
    let overrides = Overrides {
        cluster_tls_ca: Some("/run/ca.pem".into()),
        cluster_tls_cert: Some("/run/n.pem".into()),
        cluster_tls_key: Some("/run/n.key".into()),
        ..Overrides::default()
    };
    let tls = load_with(&text, &overrides).unwrap_or_else(|e| panic!("{e}")).cluster.tls.expect("TLS");
    assert_eq!((tls.ca_file, tls.key_file), (PathBuf::from("/run/ca.pem"), PathBuf::from("/run/n.key")));
}

#[test]
fn peer_tls_needs_all_three_files() {
    let text = format!("{BASE}[cluster]\ntls_cert_file = \"/etc/n.pem\"\n");
    let errors = rejected(&text);
    expect_error(&errors, "cluster.tls_ca_file", &["peer TLS needs this file", "cluster.tls_cert_file"]);
    expect_error(&errors, "cluster.tls_key_file", &["peer TLS needs this file"]);
    assert_eq!(errors.len(), 2, "{errors}");
    assert_eq!(errors.iter().next().and_then(|e| e.source.clone()), Some(PathBuf::from(FILE)));

    let errors = rejected_with(BASE, &Overrides { cluster_tls_key: Some(String::new()), ..Overrides::default() });
    expect_error(&errors, "--cluster-tls-key", &["path is empty"]);
    expect_error(&errors, "cluster.tls_ca_file", &["given: --cluster-tls-key"]);
}

#[test]
fn admin_keys_parse() {
    let config = load(BASE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.admin.token_file, None, "no token by default");
    assert!(!config.admin.protect_reads, "reads are open by default");
    assert_eq!(config.admin.tls, None);

    let text = format!(
        "{BASE}[admin]\ntoken_file = \"/etc/leasehold/admin.token\"\nprotect_reads = true\n\
         tls_cert_file = \"/etc/leasehold/admin.pem\"\ntls_key_file = \"/etc/leasehold/admin.key\"\n"
    );
    let admin = load(&text).unwrap_or_else(|e| panic!("{e}")).admin;
    assert_eq!(admin.token_file, Some(PathBuf::from("/etc/leasehold/admin.token")));
    assert!(admin.protect_reads);
    let tls = admin.tls.expect("admin TLS");
    assert_eq!(tls.cert_file, PathBuf::from("/etc/leasehold/admin.pem"));
    assert_eq!(tls.key_file, PathBuf::from("/etc/leasehold/admin.key"));

    let overrides = Overrides {
        admin_token_file: Some("/run/token".into()),
        admin_tls_cert: Some("/run/a.pem".into()),
        admin_tls_key: Some("/run/a.key".into()),
        ..Overrides::default()
    };
    let admin = load_with(BASE, &overrides).unwrap_or_else(|e| panic!("{e}")).admin;
    assert_eq!(admin.token_file, Some(PathBuf::from("/run/token")));
    assert_eq!(admin.tls.map(|t| t.cert_file), Some(PathBuf::from("/run/a.pem")));
}

#[test]
fn admin_problems_are_named() {
    let errors = rejected(&format!("{BASE}[admin]\nprotect_reads = true\n"));
    only_error(&errors, "admin.protect_reads", &["needs a token", "admin.token_file"]);

    let errors = rejected(&format!("{BASE}[admin]\ntls_key_file = \"/etc/a.key\"\n"));
    only_error(&errors, "admin.tls_cert_file", &["admin TLS needs this file", "admin.tls_key_file"]);

    let errors = rejected(&format!("{BASE}[admin]\ntoken_file = \"\"\n"));
    only_error(&errors, "admin.token_file", &["path is empty"]);

    let errors = rejected(&format!("{BASE}[admin]\ntoken = \"x\"\n"));
    only_error(&errors, "admin.token", &["unknown field `token`"]);
}

#[test]
fn peers_must_include_this_node() {
    let errors =
        rejected(&format!("{BASE}[cluster]\nnode_id = 3\npeers = [\"1=10.0.0.1:6768\", \"2=10.0.0.2:6768\"]\n"));
    only_error(&errors, "cluster.peers", &["node_id 3"]);
}

#[test]
fn raft_timing_is_checked() {
    let errors = rejected(&format!(
        "{BASE}[cluster]\nnode_id = 0\ntick_ms = 0\nelection_ticks = 2\nheartbeat_ticks = 2\ntransfer_timeout_ms = 0\n"
    ));
    expect_error(&errors, "cluster.node_id", &["greater than 0"]);
    expect_error(&errors, "cluster.tick_ms", &["greater than 0"]);
    expect_error(&errors, "cluster.heartbeat_ticks", &["less than election_ticks 2"]);
    expect_error(&errors, "cluster.transfer_timeout_ms", &["greater than 0"]);
    assert_eq!(errors.len(), 4, "{errors}");
}

#[test]
fn the_group_commit_window_may_be_zero_and_is_bounded() {
    let config = load(&format!("{BASE}[limits]\ngroup_commit_window_us = 0\n")).expect("0 turns the window off");
    assert_eq!(config.limits.group_commit_window_us, 0);
    assert_eq!(load(BASE).expect("the base loads").limits.group_commit_window_us, 10_000, "the default");
    let errors = rejected(&format!("{BASE}[limits]\ngroup_commit_window_us = 100001\n"));
    only_error(&errors, "limits.group_commit_window_us", &["100001", "more than 100000"]);
}

#[test]
fn the_receive_window_may_be_zero_and_is_bounded() {
    let config = load(&format!("{BASE}[limits]\nreceive_window_us = 0\n")).expect("0 turns pacing off");
    assert_eq!(config.limits.receive_window_us, 0);
    assert_eq!(load(BASE).expect("the base loads").limits.receive_window_us, 1_000, "the default");
    let errors = rejected(&format!("{BASE}[limits]\nreceive_window_us = 10001\n"));
    only_error(&errors, "limits.receive_window_us", &["10001", "more than 10000"]);
}

/// Found with the `config_toml` fuzz target, which starts an engine on every config that checks: a
/// pool of 0.0.0.1 to 127.255.255.254 passed, and the engine's index of it asked for 17 GB (the
/// target ran out of memory). A pool holds at most a /8.
#[test]
fn a_pool_holds_at_most_a_slash_8() {
    let pool = |subnet: &str, start: &str, end: &str| {
        format!("[server]\nserver_ip = \"192.168.0.1\"\n[[pool]]\nsubnet = \"{subnet}\"\nrange_start = \"{start}\"\nrange_end = \"{end}\"\n")
    };
    let config = load(&pool("10.0.0.0/7", "10.0.0.1", "11.0.0.0")).expect("2^24 addresses are one pool");
    assert_eq!(config.pools[0].size(), 1 << 24);
    let errors = rejected(&pool("0.0.0.0/1", "0.0.0.1", "127.255.255.254"));
    only_error(&errors, "pool[0].range_end", &["2147483646 addresses", "at most 16777216"]);
    let errors = rejected(&pool("10.0.0.0/7", "10.0.0.1", "11.0.0.1"));
    only_error(&errors, "pool[0].range_end", &["16777217 addresses"]);
}

/// Found with the `config_toml` fuzz target's check that a checked config's durations convert to
/// the units the code counts in: `expiry_grace_secs` near `i64::MAX` passed, and `serve` multiplied
/// it by 1000 (an overflow: a panic in a debug build, a wrong grace in release); the engine does the
/// same with `proposal_timeout_ms` and `decline_probation_secs`.
#[test]
fn limit_durations_are_bounded_so_their_units_convert() {
    let at_most = |key: &str, max: u64| {
        load(&format!("{BASE}[limits]\n{key} = {max}\n")).expect("the bound itself is accepted");
        let errors = rejected(&format!("{BASE}[limits]\n{key} = {}\n", max + 1));
        only_error(&errors, &format!("limits.{key}"), &[&(max + 1).to_string(), "ten years"]);
        let errors = rejected(&format!("{BASE}[limits]\n{key} = 9223372036854775807\n"));
        only_error(&errors, &format!("limits.{key}"), &["9223372036854775807"]);
    };
    for key in ["decline_probation_secs", "expiry_grace_secs", "record_retention_secs"] {
        at_most(key, 315_360_000);
    }
    for key in ["offer_hold_ms", "proposal_timeout_ms"] {
        at_most(key, 315_360_000_000);
    }
}

#[test]
fn starvation_limits_have_defaults_and_are_read_from_limits_and_limits_rate() {
    let limits = load(BASE).expect("the base loads").limits;
    assert_eq!(limits.max_offers_per_pool_percent, 50);
    assert_eq!((limits.rate.mac.per_sec, limits.rate.mac.burst), (2.0, 20));
    assert_eq!((limits.rate.relay.per_sec, limits.rate.relay.burst), (1_000.0, 2_000));
    assert_eq!((limits.rate.circuit.per_sec, limits.rate.circuit.burst), (10.0, 30));
    assert_eq!((limits.rate.decline.per_sec, limits.rate.decline.burst), (0.1, 3), "RFC 2131 §3.1: 10 s apart");
    assert_eq!(limits.rate.max_tracked_keys, 65_536);
    let text = format!(
        "{BASE}[limits]\nmax_offers_per_pool_percent = 100\n[limits.rate]\nmac_messages_per_sec = 0.5\n\
         mac_burst_messages = 4\nrelay_messages_per_sec = 50\ncircuit_burst_messages = 1\n\
         decline_messages_per_sec = 0.01\nmax_tracked_keys = 16\n"
    );
    let limits = load(&text).unwrap_or_else(|e| panic!("{e}")).limits;
    assert_eq!(limits.max_offers_per_pool_percent, 100);
    assert_eq!((limits.rate.mac.per_sec, limits.rate.mac.burst), (0.5, 4));
    assert_eq!((limits.rate.relay.per_sec, limits.rate.relay.burst), (50.0, 2_000), "the burst stays the default");
    assert_eq!((limits.rate.circuit.per_sec, limits.rate.circuit.burst), (10.0, 1));
    assert_eq!(limits.rate.decline.per_sec, 0.01);
    assert_eq!(limits.rate.max_tracked_keys, 16);
}

#[test]
fn starvation_limits_out_of_range_are_named_by_key_path() {
    let text = format!(
        "{BASE}[limits]\nmax_offers_per_pool_percent = 0\n[limits.rate]\nmac_messages_per_sec = 0.0\n\
         relay_messages_per_sec = -5.0\ncircuit_messages_per_sec = nan\ndecline_burst_messages = 0\n\
         mac_burst_messages = 5000000000\nmax_tracked_keys = 0\n"
    );
    let errors = rejected(&text);
    let error = expect_error(&errors, "limits.max_offers_per_pool_percent", &["0", "percentage from 1 to 100"]);
    assert_eq!(error.source.as_deref(), Some(Path::new(FILE)), "the error names the file");
    expect_error(&errors, "limits.rate.mac_messages_per_sec", &["0 is not a rate from 0.001"]);
    expect_error(&errors, "limits.rate.relay_messages_per_sec", &["-5"]);
    expect_error(&errors, "limits.rate.circuit_messages_per_sec", &["NaN"]);
    expect_error(&errors, "limits.rate.decline_burst_messages", &["0 is not a burst from 1"]);
    expect_error(&errors, "limits.rate.mac_burst_messages", &["5000000000"]);
    expect_error(&errors, "limits.rate.max_tracked_keys", &["0 is not a count"]);
    assert_eq!(errors.len(), 7, "{errors}");
    let errors = rejected(&format!("{BASE}[limits]\nmax_offers_per_pool_percent = 101\n"));
    only_error(&errors, "limits.max_offers_per_pool_percent", &["101"]);
    let errors = rejected(&format!("{BASE}[limits.rate]\nmac_per_sec = 2.0\n"));
    only_error(&errors, "limits.rate.mac_per_sec", &["unknown field"]);
}

// ---- Command-line overrides ----

fn flags_pool() -> Overrides {
    Overrides {
        server_ip: Some("10.1.0.1".into()),
        ip_start: Some("10.1.0.100".into()),
        ip_end: Some("10.1.0.150".into()),
        ..Overrides::default()
    }
}

#[test]
fn flags_alone_create_a_default_pool() {
    let overrides = Overrides {
        router: Some("10.1.0.1".into()),
        dns: vec!["10.1.0.2".into(), "10.1.0.3".into()],
        lease_time_secs: Some(600),
        tftp_server: Some("10.1.0.1".into()),
        bootfile: Some("pxelinux.0".into()),
        ..flags_pool()
    };
    let config = Config::load(None, &overrides).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.server_ip, ip("10.1.0.1"));
    assert_eq!(config.pools.len(), 1);
    let pool = &config.pools[0];
    assert_eq!(pool.name, "default");
    assert_eq!(pool.subnet, Subnet { network: ip("10.1.0.0"), prefix_len: 24 });
    assert_eq!((pool.range_start, pool.range_end), (ip("10.1.0.100"), ip("10.1.0.150")));
    assert_eq!(pool.routers, vec![ip("10.1.0.1")]);
    assert_eq!(pool.dns_servers, vec![ip("10.1.0.2"), ip("10.1.0.3")]);
    assert_eq!((pool.lease_time_secs, pool.renewal_time_secs, pool.rebinding_time_secs), (600, 300, 525));
    assert_eq!(config.pxe.tftp_server, Some(ip("10.1.0.1")));
    assert_eq!(config.pxe.boot_file.as_deref(), Some("pxelinux.0"));
}

#[test]
fn subnet_mask_flag_widens_the_created_pool() {
    let overrides =
        Overrides { ip_end: Some("10.1.3.150".into()), subnet_mask: Some("255.255.252.0".into()), ..flags_pool() };
    let config = Config::load(None, &overrides).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.pools[0].subnet, Subnet { network: ip("10.1.0.0"), prefix_len: 22 });

    // Without the mask the default /24 does not hold the end.
    let overrides = Overrides { ip_end: Some("10.1.3.150".into()), ..flags_pool() };
    let errors = Config::load(None, &overrides).unwrap_err();
    let error = only_error(&errors, "--ip-end", &["outside", "10.1.0.0/24"]);
    assert_eq!(error.source, None);
    assert_eq!(error.to_string(), format!("--ip-end: {}", error.problem));
}

#[test]
fn flag_errors_are_keyed_by_the_flag() {
    let overrides = Overrides {
        server_ip: Some("10.1.0.254".into()),
        ip_start: Some("10.1.0.0".into()),
        subnet_mask: Some("255.0.255.0".into()),
        log_level: Some("loud".into()),
        admin_listen: Some("6767".into()),
        peers: vec!["x".into()],
        ..flags_pool()
    };
    let errors = Config::load(None, &overrides).unwrap_err();
    expect_error(&errors, "--subnet-mask", &["not a netmask"]);
    expect_error(&errors, "--log-level", &["`loud`"]);
    expect_error(&errors, "--admin-listen", &["IP:PORT"]);
    expect_error(&errors, "--peer", &["ID=IP:PORT"]);
    assert_eq!(errors.len(), 4, "{errors}");
    assert!(errors.iter().all(|e| e.source.is_none()), "{errors}");

    let errors = Config::load(
        None,
        &Overrides { server_ip: Some("10.1.0.254".into()), ip_start: Some("10.1.0.0".into()), ..flags_pool() },
    )
    .unwrap_err();
    only_error(&errors, "--ip-start", &["network address"]);
}

#[test]
fn ip_start_without_ip_end_is_an_error() {
    let overrides = Overrides { ip_end: None, ..flags_pool() };
    let errors = Config::load(None, &overrides).unwrap_err();
    only_error(&errors, "--ip-end", &["missing", "--ip-start"]);
}

#[test]
fn flags_modify_the_single_file_pool() {
    let overrides = Overrides {
        ip_start: Some("10.0.0.50".into()),
        ip_end: Some("10.0.0.60".into()),
        router: Some("10.0.0.254".into()),
        dns: vec!["1.1.1.1".into()],
        lease_time_secs: Some(120),
        ..Overrides::default()
    };
    let text = format!("{BASE}name = \"lab\"\nrenewal_time_secs = 1000\nrouters = [\"10.0.0.1\"]\n");
    let config = load_with(&text, &overrides).unwrap_or_else(|e| panic!("{e}"));
    let pool = &config.pools[0];
    assert_eq!(pool.name, "lab");
    assert_eq!(pool.subnet, Subnet { network: ip("10.0.0.0"), prefix_len: 24 });
    assert_eq!((pool.range_start, pool.range_end), (ip("10.0.0.50"), ip("10.0.0.60")));
    assert_eq!(pool.routers, vec![ip("10.0.0.254")]);
    assert_eq!(pool.dns_servers, vec![ip("1.1.1.1")]);
    // --lease-time resets T1 and T2 to their defaults.
    assert_eq!((pool.lease_time_secs, pool.renewal_time_secs, pool.rebinding_time_secs), (120, 60, 105));

    let overrides = Overrides { subnet_mask: Some("255.255.0.0".into()), ..Overrides::default() };
    let config = load_with(BASE, &overrides).unwrap();
    assert_eq!(config.pools[0].subnet, Subnet { network: ip("10.0.0.0"), prefix_len: 16 });

    let overrides = Overrides { ip_end: Some("10.0.1.5".into()), ..Overrides::default() };
    let errors = rejected_with(BASE, &overrides);
    only_error(&errors, "--ip-end", &["outside", "10.0.0.0/24"]);
}

#[test]
fn pool_flags_with_several_pools_are_errors() {
    let text = two_pools("subnet = \"10.0.1.0/24\"\nrange_start = \"10.0.1.10\"\nrange_end = \"10.0.1.20\"");
    let overrides = Overrides {
        ip_start: Some("10.0.0.50".into()),
        dns: vec!["1.1.1.1".into()],
        tftp_server: Some("10.0.0.1".into()),
        ..Overrides::default()
    };
    let errors = rejected_with(&text, &overrides);
    let error =
        expect_error(&errors, "--ip-start", &["the config file has 2 pools; pool flags apply only to a single pool"]);
    assert_eq!(error.source, None);
    expect_error(&errors, "--dns", &["2 pools"]);
    assert_eq!(errors.len(), 2, "tftp_server is not a pool flag:\n{errors}");
}

#[test]
fn no_fsync_turns_fsync_off() {
    assert!(load(BASE).unwrap().fsync);
    let config = load_with(BASE, &Overrides { no_fsync: true, ..Overrides::default() }).unwrap();
    assert!(!config.fsync);
    let config = load(&BASE.replace("[server]", "[server]\nfsync = false")).unwrap();
    assert!(!config.fsync);
}

#[test]
fn flags_override_the_file() {
    let text = format!(
        r#"{BASE}[log]
format = "term"
level = "info"
[pxe]
boot_file = "a"
tftp_server = "10.0.0.1"
[cluster]
node_id = 1
peers = ["1=10.0.0.1:6768"]
"#
    );
    let overrides = Overrides {
        interface: Some("br0".into()),
        server_ip: Some("10.0.0.2".into()),
        data_dir: Some("/tmp/lh".into()),
        admin_listen: Some("127.0.0.1:7000".into()),
        log_format: Some("json".into()),
        log_level: Some("debug".into()),
        tftp_server: Some("10.0.0.3".into()),
        bootfile: Some("b".into()),
        node_id: Some(2),
        peers: vec!["2=10.0.0.2:6768".into(), "3=10.0.0.3:6768".into()],
        cluster_listen: Some("10.0.0.2:6768".into()),
        cluster_secret_file: Some("/run/secret".into()),
        ..Overrides::default()
    };
    let config = load_with(&text, &overrides).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.cluster.secret_file, Some(PathBuf::from("/run/secret")));
    assert_eq!(config.interfaces[0].name.as_deref(), Some("br0"));
    assert_eq!(config.server_ip, ip("10.0.0.2"));
    assert_eq!(config.data_dir, PathBuf::from("/tmp/lh"));
    assert_eq!(config.admin_listen, "127.0.0.1:7000".parse::<SocketAddr>().unwrap());
    assert_eq!((config.log_format, config.log_level), (LogFormat::Json, LogLevel::Debug));
    assert_eq!(config.pxe.tftp_server, Some(ip("10.0.0.3")));
    assert_eq!(config.pxe.boot_file.as_deref(), Some("b"));
    assert_eq!(config.cluster.node_id, 2);
    assert_eq!(config.cluster.peers.keys().copied().collect::<Vec<_>>(), [2, 3]);
    assert_eq!(config.cluster.listen, Some("10.0.0.2:6768".parse().unwrap()));

    // The flag's peers replace the file's, and must include the flag's node id.
    let errors = rejected_with(&text, &Overrides { node_id: Some(5), ..Overrides::default() });
    only_error(&errors, "cluster.peers", &["node_id 5"]);
    let errors = rejected_with(&text, &Overrides { peers: vec!["2=10.0.0.2:6768".into()], ..Overrides::default() });
    let error = only_error(&errors, "--peer", &["node_id 1"]);
    assert_eq!(error.source, None);
}

/// Several interfaces, each with this node's own address on it (option 54 for its clients).
#[test]
fn interfaces_each_name_their_server_address() {
    let text = BASE.replace(
        "[server]\nserver_ip = \"10.0.0.1\"\n",
        "[[interface]]\nname = \"eth0\"\nserver_ip = \"10.0.0.1\"\n[[interface]]\nname = \"eth1\"\nserver_ip = \"10.1.0.1\"\n",
    );
    let config = load(&text).unwrap_or_else(|e| panic!("two interfaces load:\n{e}"));
    let names: Vec<_> = config.interfaces.iter().map(|i| (i.name.as_deref(), i.server_ip)).collect();
    assert_eq!(names, vec![(Some("eth0"), ip("10.0.0.1")), (Some("eth1"), ip("10.1.0.1"))]);
    assert_eq!(config.server_ip, ip("10.0.0.1"), "the main server identifier is the first interface's");
    assert!(config.is_own_address(ip("10.1.0.1")));

    // server_ip, when given, picks the main one among them; it must be one of them.
    let main = load(&format!("[server]\nserver_ip = \"10.1.0.1\"\n{text}")).expect("server_ip among the interfaces");
    assert_eq!(main.server_ip, ip("10.1.0.1"));
    let errors = rejected(&format!("[server]\nserver_ip = \"10.2.0.1\"\n{text}"));
    only_error(&errors, "server.server_ip", &["not the server_ip of any [[interface]]"]);
    // server.interface and [[interface]] together are ambiguous.
    let errors = rejected(&format!("[server]\ninterface = \"eth0\"\n{text}"));
    only_error(&errors, "server.interface", &["[[interface]]"]);
    let errors = rejected_with(&text, &Overrides { interface: Some("eth9".into()), ..Overrides::default() });
    only_error(&errors, "--interface", &["[[interface]]"]);
}

#[test]
fn interface_tables_are_checked() {
    let pool = "[[pool]]\nsubnet = \"10.0.0.0/24\"\nrange_start = \"10.0.0.10\"\nrange_end = \"10.0.0.20\"\n";
    let errors = rejected(&format!(
        "[[interface]]\nserver_ip = \"10.0.0.1\"\n[[interface]]\nname = \"eth1\"\n[[interface]]\nname = \"eth1\"\n\
         server_ip = \"10.0.0.1\"\n[[interface]]\nname = \"a/b\"\nserver_ip = \"10.0.0.15\"\n{pool}"
    ));
    expect_error(&errors, "interface[0].name", &["missing"]);
    expect_error(&errors, "interface[1].server_ip", &["missing"]);
    expect_error(&errors, "interface[2].name", &["already interface[1]"]);
    expect_error(&errors, "interface[2].server_ip", &["already the server_ip of interface[0]"]);
    expect_error(&errors, "interface[3].name", &["not an interface name"]);
    // Every server address is checked against the pools, not only the main one.
    expect_error(&errors, "interface[3].server_ip", &["inside pool[0]"]);
    // A reservation on any of the server's addresses is refused.
    let text = format!(
        "[[interface]]\nname = \"eth0\"\nserver_ip = \"10.0.0.1\"\n[[interface]]\nname = \"eth1\"\n\
         server_ip = \"10.0.0.2\"\n{pool}[[reservation]]\nmac = \"02:00:00:00:00:01\"\nip = \"10.0.0.2\"\n"
    );
    only_error(&rejected(&text), "reservation[0].ip", &["server_ip"]);
}

/// `next_server` (siaddr for every client) is an address; a UEFI HTTP boot architecture needs a URL.
#[test]
fn next_server_and_http_boot_urls_are_checked() {
    let text =
        format!("{BASE}[pxe]\nnext_server = \"10.0.0.9\"\n[pxe.arch]\nhttp-x64 = \"http://10.0.0.9/snponly.efi\"\n");
    let config = load(&text).unwrap_or_else(|e| panic!("loads:\n{e}"));
    assert_eq!(config.pxe.next_server, Some(ip("10.0.0.9")));
    assert_eq!(config.pxe.arch_boot_files.get(&16).map(String::as_str), Some("http://10.0.0.9/snponly.efi"));
    let errors = rejected(&format!(
        "{BASE}[pxe]\nnext_server = \"boot\"\n[pxe.arch]\nhttp-x64 = \"snponly.efi\"\n19 = \"tftp://x/y\"\n\
         uefi-x64 = \"snponly.efi\"\n"
    ));
    expect_error(&errors, "pxe.next_server", &["not an IPv4 address"]);
    expect_error(&errors, "pxe.arch.http-x64", &["HTTP", "http:// or https:// URL", "snponly.efi"]);
    expect_error(&errors, "pxe.arch.19", &["HTTP"]);
    assert_eq!(errors.len(), 3, "uefi-x64 takes a TFTP file name:\n{errors}");
    // The same in a pool's own [pool.pxe].
    let errors = rejected(&format!("{BASE}[pool.pxe.arch]\nhttp-arm64 = \"ipxe-arm64.efi\"\n"));
    only_error(&errors, "pool[0].pxe.arch.http-arm64", &["URL"]);
}

#[test]
fn boot_files_are_off_by_default_and_every_bad_boot_key_is_named() {
    let config = load(BASE).expect("the base config loads");
    assert_eq!(config.boot.root, None, "no TFTP server unless a root is given");
    let with_root =
        format!("{BASE}\n[boot]\nroot = \"/srv/boot\"\ntftp_listen = \"10.0.0.1:69\"\nmax_tftp_transfers = 8\n");
    let config = load(&with_root).expect("a boot root loads");
    assert_eq!(config.boot.root.as_deref(), Some(std::path::Path::new("/srv/boot")));
    assert_eq!((config.boot.tftp_listen.to_string(), config.boot.max_tftp_transfers), ("10.0.0.1:69".into(), 8));
    let bad = format!(
        "{BASE}\n[boot]\nroot = \"\"\ntftp_listen = \"nope\"\nmax_tftp_transfers = 0\ntftp_requests_per_client_per_sec = 0\n"
    );
    let errors = rejected(&bad);
    let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        ["boot.root", "boot.tftp_listen", "boot.max_tftp_transfers", "boot.tftp_requests_per_client_per_sec"],
        "{errors}"
    );
    let flag = Overrides { boot_root: Some("/srv/other".into()), ..Overrides::default() };
    let config = load_with(&with_root, &flag).expect("the flag overrides the file");
    assert_eq!(config.boot.root.as_deref(), Some(std::path::Path::new("/srv/other")));
}

#[test]
fn boot_scripts_and_the_menu_are_checked_and_name_their_keys() {
    let good = format!(
        "{BASE}\n[boot]\ndefault_script = \"menu\"\n[[boot.script]]\nname = \"install\"\ntemplate = \"kernel x ip={{{{ip}}}}\"\n\
         [boot.menu]\ndefault = \"local\"\n[[boot.menu.entry]]\nname = \"local\"\nscript = \"exit\"\n"
    );
    let config = load(&good).expect("scripts and a menu load");
    assert_eq!(config.boot.scripts.len(), 1);
    let menu = config.boot.menu.expect("a menu");
    assert_eq!((menu.entries[0].label.as_str(), menu.timeout_secs), ("local", 10), "label and timeout default");
    let bad = format!(
        "{BASE}\n[boot]\ndefault_script = \"nope\"\n[[boot.script]]\nname = \"menu\"\ntemplate = \"x\"\n\
         [[boot.script]]\nname = \"a b\"\ntemplate = \"x\"\n[[boot.script]]\nname = \"t\"\ntemplate = \"{{{{rack}}}}\"\n\
         [boot.menu]\ndefault = \"gone\"\n[[boot.menu.entry]]\nname = \"e\"\nscript = \"{{{{ip\"\n\
         [[class]]\nname = \"c\"\nboot_script = \"gone\"\n"
    );
    let errors = rejected(&bad);
    let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "boot.script[0].name",
            "boot.script[1].name",
            "boot.script[2].template",
            "boot.menu.entry[0].script",
            "boot.menu.default",
            "boot.default_script",
            "class[0].boot_script"
        ],
        "{errors}"
    );
    assert!(errors.to_string().contains("unknown variable `{{rack}}`"), "{errors}");
    assert!(errors.to_string().contains("class[0].boot_script: `gone` is neither"), "{errors}");
}

#[test]
fn the_boot_root_digest_interval_defaults_to_10_s_and_is_bounded() {
    let config = load(BASE).expect("the base config loads");
    assert_eq!(config.boot.digest_interval_secs, 10);
    let config = load(&format!("{BASE}\n[boot]\ndigest_interval_secs = 1\n")).expect("1 s loads");
    assert_eq!(config.boot.digest_interval_secs, 1);
    for bad in [0, 3_601] {
        let errors = rejected(&format!("{BASE}\n[boot]\ndigest_interval_secs = {bad}\n"));
        let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["boot.digest_interval_secs"], "{bad}: {errors}");
    }
}

/// `[store]`: the Raft log by default; etcd with its endpoints (the flags win over the file), and
/// every mistake named by its key.
#[test]
fn the_store_is_raft_by_default_and_etcd_needs_endpoints() {
    assert_eq!(load(BASE).expect("loads").store, leasehold_config::Store::Raft);
    let etcd = format!("{BASE}\n[store]\nkind = \"etcd\"\nendpoints = [\"http://10.0.0.5:2379\"]\n");
    let leasehold_config::Store::Etcd(store) = load(&etcd).expect("loads").store else { panic!("etcd") };
    assert_eq!(
        (store.endpoints.as_slice(), store.prefix.as_str()),
        (&["http://10.0.0.5:2379".to_string()][..], "/leasehold")
    );
    let flags = Overrides {
        store: Some("etcd".into()),
        etcd_endpoints: vec!["http://10.0.0.6:2379,http://10.0.0.7:2379".into()],
        ..Overrides::default()
    };
    let leasehold_config::Store::Etcd(store) = load_with(BASE, &flags).expect("loads").store else { panic!("etcd") };
    assert_eq!(store.endpoints, ["http://10.0.0.6:2379", "http://10.0.0.7:2379"]);

    let errors = rejected(&format!("{BASE}\n[store]\nkind = \"zookeeper\"\n"));
    expect_error(&errors, "store.kind", &["raft", "etcd"]);
    let errors = rejected(&format!("{BASE}\n[store]\nkind = \"etcd\"\nprefix = \"leasehold/\"\n"));
    expect_error(&errors, "store.endpoints", &["at least one endpoint"]);
    expect_error(&errors, "store.prefix", &["leading slash"]);
    let errors = rejected(&format!("{BASE}\n[store]\nendpoints = [\"http://10.0.0.5:2379\"]\n"));
    expect_error(&errors, "store.endpoints", &["only for the etcd store"]);
    let errors = rejected(&format!("{BASE}\n[store]\nkind = \"etcd\"\nendpoints = [\"10.0.0.5:2379\"]\n"));
    expect_error(&errors, "store.endpoints", &["http://HOST:PORT"]);
}
