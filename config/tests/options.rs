//! Option data, custom definitions and client classes in the config file: what they become, and
//! every bad value named by file, key path and reason.

use std::net::Ipv4Addr;

use leasehold_config::{Config, ConfigErrors, Subnet};

const BASE: &str = r#"
[server]
server_ip = "10.0.0.1"

[[pool]]
name = "lab"
subnet = "10.0.0.0/24"
range_start = "10.0.0.10"
range_end = "10.0.0.20"
routers = ["10.0.0.1"]
"#;

fn load(extra: &str) -> Config {
    Config::from_toml_str(&format!("{BASE}{extra}"), "options.toml").unwrap_or_else(|e| panic!("loads:\n{e}"))
}

fn rejected(extra: &str) -> ConfigErrors {
    match Config::from_toml_str(&format!("{BASE}{extra}"), "options.toml") {
        Ok(config) => panic!("expected errors, loaded {config:#?}"),
        Err(errors) => errors,
    }
}

fn expect(errors: &ConfigErrors, key: &str, words: &[&str]) {
    let found: Vec<_> = errors.for_key(key).collect();
    assert_eq!(found.len(), 1, "one error for `{key}`, got:\n{errors}");
    for word in words {
        assert!(found[0].problem.contains(word), "`{key}` error should mention `{word}`: {}", found[0]);
    }
    assert!(found[0].to_string().starts_with("options.toml: "), "names the file: {}", found[0]);
}

#[test]
fn options_by_name_and_code_in_every_scope() {
    let config = load(
        r#"
[[option]]
name = "ntp-servers"
data = "10.0.0.5, 10.0.0.6"
[[option]]
name = "domain-search"
data = ["eng.example.com", "example.com"]
always_send = true
[[option]]
code = 224
data = "de:ad:be:ef"
[[pool.option]]
name = "interface-mtu"
data = 9000
[[pool.option]]
name = "classless-static-route"
data = ["10.1.0.0/16 - 10.0.0.254", "0.0.0.0/0 - 10.0.0.1"]
[[reservation]]
mac = "02:00:00:00:00:01"
ip = "10.0.0.50"
next_server = "10.0.0.9"
[[reservation.option]]
name = "root-path"
data = "/srv/nfs/host50"
"#,
    );
    let ntp = config.options.get(42).expect("option 42");
    assert_eq!(ntp.data, [10, 0, 0, 5, 10, 0, 0, 6]);
    assert!(!ntp.always_send);
    let search = config.options.get(119).expect("option 119");
    assert!(search.always_send);
    assert_eq!(&search.data[..4], &[3, b'e', b'n', b'g']);
    assert_eq!(config.options.get(224).map(|o| o.data.clone()), Some(vec![0xde, 0xad, 0xbe, 0xef]));
    let pool = &config.pools[0];
    assert_eq!(pool.options.get(26).map(|o| o.data.clone()), Some(vec![0x23, 0x28]));
    assert_eq!(pool.options.get(121).map(|o| o.data[..3].to_vec()), Some(vec![16, 10, 1]));
    let reservation = &config.reservations[0];
    assert_eq!(reservation.next_server, Some(Ipv4Addr::new(10, 0, 0, 9)));
    assert_eq!(reservation.options.get(17).map(|o| o.data.clone()), Some(b"/srv/nfs/host50".to_vec()));
}

#[test]
fn custom_definitions_and_vendor_suboptions() {
    let config = load(
        r#"
[[option-def]]
name = "tftp-server-address"
code = 150
type = "ipv4-address-list"
[[option]]
name = "tftp-server-address"
data = "10.0.0.9"
[[option]]
name = "vendor-encapsulated-options"
[[option.suboption]]
code = 6
type = "uint8"
data = 8
[[option]]
name = "vivso-suboptions"
enterprise = 3561
[[option.suboption]]
code = 1
type = "string"
data = "abc"
[[option]]
name = "boot-size"
csv_format = false
data = "00:10"
"#,
    );
    assert_eq!(config.options.get(150).map(|o| o.data.clone()), Some(vec![10, 0, 0, 9]));
    assert_eq!(config.options.get(43).map(|o| o.data.clone()), Some(vec![6, 1, 8]));
    assert_eq!(
        config.options.get(125).map(|o| o.data.clone()),
        Some(vec![0, 0, 0x0d, 0xe9, 5, 1, 3, b'a', b'b', b'c'])
    );
    assert_eq!(config.options.get(13).map(|o| o.data.clone()), Some(vec![0, 0x10]));
}

#[test]
fn bad_options_are_named_by_key() {
    let errors = rejected(
        r#"
[[option]]
name = "ntp-server"
data = "10.0.0.5"
[[option]]
name = "ntp-servers"
data = "10.0.0.500"
[[option]]
code = 51
data = "00:00:0e:10"
[[option]]
code = 300
data = "00"
[[option]]
name = "interface-mtu"
data = 70000
[[option]]
name = "routers"
code = 6
data = "10.0.0.1"
[[option]]
name = "vendor-encapsulated-options"
data = "x"
[[option]]
name = "vivso-suboptions"
[[option.suboption]]
code = 1
data = "zz"
[[option]]
code = 200
data = "not hex"
[[pool.option]]
name = "routers"
data = "10.0.0.2"
[[option-def]]
name = "mine"
code = 42
type = "string"
[[option-def]]
name = "other"
code = 230
type = "float"
"#,
    );
    expect(&errors, "option[0].name", &["`ntp-server` is not a known option"]);
    expect(&errors, "option[1].data", &["`10.0.0.500` is not an IPv4 address"]);
    expect(&errors, "option[2].code", &["lease time", "lease_time_secs"]);
    expect(&errors, "option[3].code", &["300 is not an option code"]);
    expect(&errors, "option[4].data", &["0 to 65535"]);
    expect(&errors, "option[5].code", &["`routers` is option 3, not 6"]);
    expect(&errors, "option[6].data", &["suboption"]);
    expect(&errors, "option[7].suboption[0].data", &["not hex"]);
    expect(&errors, "option[7].enterprise", &["missing"]);
    expect(&errors, "option[8].data", &["not hex"]);
    expect(&errors, "pool[0].option", &["option 3 is set by pool[0].routers"]);
    expect(&errors, "option-def[0].code", &["standard `ntp-servers`"]);
    expect(&errors, "option-def[1].type", &["`float` is not an option type"]);
}

#[test]
fn classes_match_and_act() {
    let config = load(
        r#"
[[pool]]
name = "quarantine"
subnet = "10.0.0.0/24"
range_start = "10.0.0.200"
range_end = "10.0.0.210"

[[class]]
name = "uefi-http"
pools = ["lab"]
boot_file = "http://10.0.0.9/snponly.efi"
lease_time_secs = 600
[class.match]
vendor_class = "HTTPClient"
arch = ["http-x64", 19]
[[class.option]]
name = "ntp-servers"
data = "10.0.0.7"

[[class]]
name = "lab-switch"
forbid_pools = ["quarantine"]
[class.match]
circuit_id = "hex:00:04:00:0a"
remote_id = "sw-7"
giaddr = "10.9.0.0/16"
mac_prefix = "52:54:00"
client_interface = "01:03:10"
user_class = "iPXE"
"#,
    );
    let [http, switch] = &config.classes[..] else { panic!("two classes: {:?}", config.classes) };
    assert_eq!(http.name, "uefi-http");
    assert_eq!(http.matcher.vendor_class_prefix.as_deref(), Some(&b"HTTPClient"[..]));
    assert_eq!(http.matcher.arch, vec![16, 19]);
    assert_eq!(http.pools, Some(vec![0]));
    assert_eq!(http.lease_time_secs, Some(600));
    assert_eq!(http.options.get(42).map(|o| o.data.clone()), Some(vec![10, 0, 0, 7]));
    assert_eq!(switch.forbid_pools, vec![1]);
    assert_eq!(switch.matcher.circuit_id.as_deref(), Some(&[0, 4, 0, 10][..]));
    assert_eq!(switch.matcher.remote_id.as_deref(), Some(&b"sw-7"[..]));
    assert_eq!(switch.matcher.giaddr, Some(Subnet { network: Ipv4Addr::new(10, 9, 0, 0), prefix_len: 16 }));
    assert_eq!(switch.matcher.mac_prefix.as_deref(), Some(&[0x52, 0x54, 0][..]));
    assert_eq!(switch.matcher.client_interface_prefix.as_deref(), Some(&[1, 3, 0x10][..]));
    assert_eq!(switch.matcher.user_class.as_deref(), Some(&b"iPXE"[..]));
}

#[test]
fn bad_classes_are_named_by_key() {
    let errors = rejected(
        r#"
[[class]]
name = "a"
pools = ["nope"]
lease_time_secs = 0
[class.match]
arch = ["x64"]
giaddr = "10.9.0.1/16"
mac_prefix = "52:54:zz"
[[class]]
name = "a"
next_server = "boot"
[[class.option]]
name = "ntp-servers"
data = []
"#,
    );
    expect(&errors, "class[0].pools[0]", &["`nope` is not the name of a pool"]);
    expect(&errors, "class[0].lease_time_secs", &["greater than 0"]);
    expect(&errors, "class[0].match.arch[0]", &["not an architecture"]);
    expect(&errors, "class[0].match.giaddr", &["host bits"]);
    expect(&errors, "class[0].match.mac_prefix", &["not hex"]);
    expect(&errors, "class[1].name", &["already the name of class[0]"]);
    expect(&errors, "class[1].next_server", &["not an IPv4 address"]);
    expect(&errors, "class[1].option[0].data", &["at least one address"]);
}

/// The shipped mixed-fleet example loads, with what its comments say.
#[test]
fn the_mixed_fleet_example_loads() {
    let text = include_str!("../examples/mixed-fleet.toml");
    let config = Config::from_toml_str(text, "mixed-fleet.toml").unwrap_or_else(|e| panic!("loads:\n{e}"));
    let names: Vec<&str> = config.classes.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["bmc", "arm64", "rack-7", "servers"]);
    assert_eq!(config.classes[0].pools, Some(vec![1]), "bmc: only the bmc pool");
    assert_eq!(config.classes[3].forbid_pools, vec![1], "servers: never the bmc pool");
    assert!(config.pools[1].dynamic_bootp);
    assert_eq!(config.pxe.arch_boot_files.get(&16).map(String::as_str), Some("http://10.20.0.1/snponly.efi"));
    assert_eq!(config.options.get(42).map(|o| o.data.clone()), Some(vec![10, 20, 0, 5, 10, 20, 0, 6]));
    assert_eq!(config.classes[2].options.get(224).map(|o| o.data.clone()), Some(b"rack 7, row C".to_vec()));
    assert_eq!(config.reservations[1].next_server, Some(Ipv4Addr::new(10, 20, 0, 9)));
}
