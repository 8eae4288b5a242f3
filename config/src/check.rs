//! Raw config + overrides -> checked `Config`, every problem reported with its key path.
//!
//! `load` reads the file, lays the command-line flags over it and converts every value into its
//! checked type. It never stops at the first problem: each one becomes a `ConfigError` naming the
//! file, the key path (`pool[1].range_start`) or the flag (`--ip-start`), and what is wrong, and all
//! of them come back together in `ConfigErrors`. Only a file that cannot be read or parsed as TOML
//! stops early, because nothing after that could be trusted.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

mod scopes;

use crate::raw::{RawConfig, RawPool, RawPxe, RawReservation};
use crate::Boot;
use crate::{
    Admin, ArchCode, ClientIdentity, Cluster, Config, EtcdStore, Interface, Limits, LogFormat, LogLevel, Overrides,
    PeerTlsFiles, Pool, Pxe, RateLimits, Reservation, Store, Subnet, TlsFiles, TokenBucket,
};
use scopes::{check_classes, check_option_defs, check_options, Definitions};

/// One problem in the configuration: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file the value came from; `None` for a command-line flag or a built-in default.
    pub source: Option<PathBuf>,
    /// A key path (`server.server_ip`, `pool[1].range_start`), a flag (`--ip-start`), or for a TOML
    /// syntax error the position (`line 3, column 7`). Empty when the whole file is the problem.
    pub key: String,
    /// What is wrong, in words.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(source) = &self.source {
            write!(f, "{}: ", source.display())?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found, in the order the checks met them; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The errors whose key is exactly `key`.
    pub fn for_key<'a>(&'a self, key: &str) -> impl Iterator<Item = &'a ConfigError> + 'a {
        let key = key.to_string();
        self.0.iter().filter(move |e| e.key == key)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The command-line flag names that errors from `Overrides` are keyed by; `leasehold serve` should
/// spell its flags the same way.
pub mod flag {
    pub const INTERFACE: &str = "--interface";
    pub const SERVER_IP: &str = "--server-ip";
    pub const IP_START: &str = "--ip-start";
    pub const IP_END: &str = "--ip-end";
    pub const SUBNET_MASK: &str = "--subnet-mask";
    pub const ROUTER: &str = "--router";
    pub const DNS: &str = "--dns";
    pub const LEASE_TIME_SECS: &str = "--lease-time";
    pub const TFTP_SERVER: &str = "--tftp-server";
    pub const BOOTFILE: &str = "--bootfile";
    pub const DATA_DIR: &str = "--data-dir";
    pub const ADMIN_LISTEN: &str = "--admin-listen";
    pub const LOG_FORMAT: &str = "--log-format";
    pub const LOG_LEVEL: &str = "--log-level";
    pub const NO_FSYNC: &str = "--no-fsync";
    pub const NODE_ID: &str = "--node-id";
    pub const PEER: &str = "--peer";
    pub const CLUSTER_LISTEN: &str = "--cluster-listen";
    pub const CLUSTER_SECRET_FILE: &str = "--cluster-secret-file";
    pub const CLUSTER_TLS_CA: &str = "--cluster-tls-ca";
    pub const CLUSTER_TLS_CERT: &str = "--cluster-tls-cert";
    pub const CLUSTER_TLS_KEY: &str = "--cluster-tls-key";
    pub const ADMIN_TOKEN_FILE: &str = "--admin-token-file";
    pub const ADMIN_TLS_CERT: &str = "--admin-tls-cert";
    pub const ADMIN_TLS_KEY: &str = "--admin-tls-key";
    pub const BOOT_ROOT: &str = "--boot-root";
    pub const STORE: &str = "--store";
    pub const ETCD_ENDPOINTS: &str = "--etcd-endpoints";
}

/// Names accepted as `[pxe.arch]` keys, with their option-93 codes (RFC 4578 §2.1 and the IANA
/// "Processor Architecture Types" registry). A decimal code works as a key too.
pub const ARCH_NAMES: &[(&str, ArchCode)] = &[
    ("bios", 0),
    ("uefi-ia32", 6),
    ("uefi-x64", 7),
    ("uefi-x64-alt", 9),
    ("uefi-arm32", 10),
    ("uefi-arm64", 11),
    ("http-x86", 15),
    ("http-x64", 16),
    ("http-arm64", 19),
];

/// Option-93 codes of the UEFI HTTP boot architectures (IANA "Processor Architecture Types": x86,
/// x64, EBC, ARM 32, ARM 64 and PC/AT BIOS over HTTP, U-Boot ARM 32/64 over HTTP, RISC-V 32/64/128
/// UEFI over HTTP). Their clients send option 60 `HTTPClient` and need a URL as the boot file.
pub const HTTP_BOOT_ARCHES: &[ArchCode] = &[15, 16, 17, 18, 19, 20, 23, 24, 26, 28, 30];

/// Does a client of this architecture boot over HTTP?
pub fn is_http_boot_arch(code: ArchCode) -> bool {
    HTTP_BOOT_ARCHES.contains(&code)
}

/// An `http://` or `https://` URL (what UEFI HTTP boot takes as its boot file).
pub fn is_url(file: &str) -> bool {
    let lower = file.get(..8).unwrap_or(file).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// The option-93 code for an architecture name from `ARCH_NAMES` or a decimal code.
pub fn arch_code(key: &str) -> Option<ArchCode> {
    ARCH_NAMES.iter().find(|(name, _)| *name == key).map(|&(_, code)| code).or_else(|| {
        if key.bytes().all(|b| b.is_ascii_digit()) {
            key.parse().ok()
        } else {
            None
        }
    })
}

/// The `file` header field is 128 bytes and must end in a NUL (RFC 2131 §2).
pub const MAX_BOOT_FILE_BYTES: usize = 127;
/// RFC 2131 §2: every DHCP participant must accept messages of at least 576 bytes.
pub const MIN_FRAME_BYTES: usize = 576;
/// Linux IFNAMSIZ is 16 including the NUL.
const MAX_INTERFACE_NAME_BYTES: usize = 15;

const DEFAULT_ADMIN_PORT: u16 = 6767;
const DEFAULT_DATA_DIR: &str = "./leasehold-data";
const DEFAULT_LEASE_TIME_SECS: u32 = 3600;
const DEFAULT_FLAG_POOL_NAME: &str = "default";
const DEFAULT_FLAG_POOL_PREFIX_LEN: u8 = 24;

pub(crate) fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigErrors> {
    let Some(path) = file else {
        return check(RawConfig::default(), None, overrides);
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            source: Some(path.to_path_buf()),
            key: String::new(),
            problem: format!("cannot read the config file: {e}"),
        }])
    })?;
    load_str(&text, Some(path), overrides)
}

pub(crate) fn load_str(text: &str, source: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigErrors> {
    let raw = RawConfig::from_toml_str(text, source).map_err(|e| ConfigErrors(vec![e]))?;
    check(raw, source, overrides)
}

/// Where a value came from, which is where its errors are reported.
#[derive(Debug, Clone)]
enum Key {
    /// A key path in the file (or the file's key that a built-in default stands for).
    Path(String),
    /// A command-line flag.
    Flag(&'static str),
}

impl Key {
    fn path(path: impl Into<String>) -> Key {
        Key::Path(path.into())
    }
}

/// The flag's value when the flag is given, else the file's; with the key to blame.
fn overlay<T>(flag_value: Option<T>, flag_name: &'static str, file_value: Option<T>, path: String) -> Option<(T, Key)> {
    match flag_value {
        Some(value) => Some((value, Key::Flag(flag_name))),
        None => file_value.map(|value| (value, Key::Path(path))),
    }
}

/// Collects errors while the checks run.
struct Ctx<'a> {
    file: Option<&'a Path>,
    errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    fn error(&mut self, key: &Key, problem: impl Into<String>) {
        let (source, key) = match key {
            Key::Path(path) => (self.file.map(Path::to_path_buf), path.clone()),
            Key::Flag(flag) => (None, (*flag).to_string()),
        };
        self.errors.push(ConfigError { source, key, problem: problem.into() });
    }

    fn ipv4(&mut self, key: &Key, text: &str) -> Option<Ipv4Addr> {
        match text.parse::<Ipv4Addr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.error(key, format!("`{text}` is not an IPv4 address (like 192.168.77.1)"));
                None
            }
        }
    }

    fn socket_addr(&mut self, key: &Key, text: &str) -> Option<SocketAddr> {
        match text.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.error(key, format!("`{text}` is not an IP:PORT address (like 127.0.0.1:6767)"));
                None
            }
        }
    }

    fn subnet(&mut self, key: &Key, text: &str) -> Option<Subnet> {
        let parsed = text.split_once('/').and_then(|(network, prefix)| {
            let network = network.parse::<Ipv4Addr>().ok()?;
            let prefix_len = prefix.parse::<u8>().ok().filter(|p| *p <= 32)?;
            Some(Subnet { network, prefix_len })
        });
        let Some(subnet) = parsed else {
            self.error(key, format!("`{text}` is not a subnet: write ADDRESS/PREFIX, like 192.168.77.0/24"));
            return None;
        };
        let masked = Ipv4Addr::from(u32::from(subnet.network) & u32::from(subnet.mask()));
        if masked != subnet.network {
            self.error(key, format!("`{text}` has host bits set; the subnet is {masked}/{}", subnet.prefix_len));
            return None;
        }
        Some(subnet)
    }

    /// A netmask as `255.255.255.0` (or a prefix length as `24` or `/24`), as a prefix length.
    fn netmask(&mut self, key: &Key, text: &str) -> Option<u8> {
        let digits = text.strip_prefix('/').unwrap_or(text);
        if let Ok(prefix_len) = digits.parse::<u8>() {
            if prefix_len <= 32 {
                return Some(prefix_len);
            }
        }
        if let Ok(mask) = text.parse::<Ipv4Addr>() {
            let bits = u32::from(mask);
            // Contiguous ones from the top: the inverted mask plus one is a power of two (or zero).
            if (!bits).wrapping_add(1) & !bits == 0 {
                // At most 32 ones, so the cast cannot truncate.
                return Some(bits.leading_ones() as u8);
            }
        }
        self.error(key, format!("`{text}` is not a netmask (like 255.255.255.0)"));
        None
    }

    /// A file name for the BOOTP `file` field (or an iPXE script URL, which travels the same way).
    fn boot_file(&mut self, key: &Key, text: &str) -> Option<String> {
        if text.is_empty() {
            self.error(key, "is empty; give a boot file name or leave the key out");
            None
        } else if text.len() > MAX_BOOT_FILE_BYTES {
            self.error(
                key,
                format!(
                    "is {} bytes long; the BOOTP `file` field holds at most {MAX_BOOT_FILE_BYTES} (RFC 2131 §2)",
                    text.len()
                ),
            );
            None
        } else if text.contains('\0') {
            self.error(key, "contains a NUL byte");
            None
        } else {
            Some(text.to_string())
        }
    }

    /// Hex octets separated by `:` (or `-`), like `52:54:00:12:34:56`.
    fn hex_octets(&mut self, key: &Key, text: &str, what: &str) -> Option<Vec<u8>> {
        let octets: Option<Vec<u8>> = text
            .split([':', '-'])
            .map(|part| if part.len() == 2 { u8::from_str_radix(part, 16).ok() } else { None })
            .collect();
        if octets.is_none() {
            self.error(key, format!("`{text}` is not a {what}: write two-digit hex octets separated by colons"));
        }
        octets
    }

    fn positive<T: PartialEq + Default + Copy>(&mut self, key: &Key, value: T) -> Option<T> {
        if value == T::default() {
            self.error(key, "must be greater than 0");
            None
        } else {
            Some(value)
        }
    }

    /// One of `allowed` (compared exactly), else an error that lists them.
    fn one_of<T: Copy>(&mut self, key: &Key, text: &str, allowed: &[(&str, T)]) -> Option<T> {
        let found = allowed.iter().find(|(name, _)| *name == text).map(|&(_, value)| value);
        if found.is_none() {
            let names: Vec<String> = allowed.iter().map(|(name, _)| format!("`{name}`")).collect();
            self.error(key, format!("`{text}` is not allowed; use one of {}", names.join(", ")));
        }
        found
    }
}

/// Convert and check; every problem becomes one error.
pub(crate) fn check(raw: RawConfig, file: Option<&Path>, ov: &Overrides) -> Result<Config, ConfigErrors> {
    let mut ctx = Ctx { file, errors: Vec::new() };
    let cx = &mut ctx;

    // [server] interface + server_ip, or [[interface]] tables
    let server = raw.server;
    let (interfaces, server_ip, server_addresses) = check_interfaces(cx, &server, &raw.interfaces, ov);
    let server_port = server.server_port.map_or(Some(67), |p| cx.positive(&Key::path("server.server_port"), p));
    let client_port = server.client_port.map_or(Some(68), |p| cx.positive(&Key::path("server.client_port"), p));
    let admin_listen =
        match overlay(ov.admin_listen.clone(), flag::ADMIN_LISTEN, server.admin_listen, "server.admin_listen".into()) {
            Some((text, key)) => cx.socket_addr(&key, &text),
            None => Some(SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_ADMIN_PORT))),
        };
    let data_dir = match overlay(ov.data_dir.clone(), flag::DATA_DIR, server.data_dir, "server.data_dir".into()) {
        Some((text, key)) if text.is_empty() => {
            cx.error(&key, "is empty; give a directory for the Raft log and snapshots");
            None
        }
        Some((text, _)) => Some(PathBuf::from(text)),
        None => Some(PathBuf::from(DEFAULT_DATA_DIR)),
    };
    let fsync = !ov.no_fsync && server.fsync.unwrap_or(true);
    let identity = match server.identity {
        Some(text) => cx.one_of(
            &Key::path("server.identity"),
            &text,
            &[("mac", ClientIdentity::Mac), ("client-id", ClientIdentity::ClientId)],
        ),
        None => Some(ClientIdentity::Mac),
    };

    // [log]
    let log_format = match overlay(ov.log_format.clone(), flag::LOG_FORMAT, raw.log.format, "log.format".into()) {
        Some((text, key)) => cx.one_of(&key, &text, &[("term", LogFormat::Term), ("json", LogFormat::Json)]),
        None => Some(LogFormat::Term),
    };
    let log_level = match overlay(ov.log_level.clone(), flag::LOG_LEVEL, raw.log.level, "log.level".into()) {
        Some((text, key)) => cx.one_of(
            &key,
            &text,
            &[
                ("error", LogLevel::Error),
                ("warning", LogLevel::Warning),
                ("warn", LogLevel::Warning),
                ("info", LogLevel::Info),
                ("debug", LogLevel::Debug),
                ("trace", LogLevel::Trace),
            ],
        ),
        None => Some(LogLevel::Info),
    };

    let limits = check_limits(cx, &raw.limits);
    let pxe = check_pxe(cx, "pxe", &raw.pxe, ov.tftp_server.as_deref(), ov.bootfile.as_deref());

    // [[option-def]], then [[option]] (the global scope)
    let defs = check_option_defs(cx, &raw.option_defs);
    let options = check_options(cx, "option", &raw.options, &defs);

    // [[pool]]
    let checked_pools = check_pools(cx, &raw.pools, ov, &defs);
    for (ip, key) in &server_addresses {
        for (outline, _) in &checked_pools {
            if let Some((start, end)) = outline.range {
                if (start..=end).contains(ip) {
                    cx.error(
                        key,
                        format!(
                            "{ip} lies inside pool[{}] (`{}`) range {start}-{end}; the server identifier must not be \
                             leasable",
                            outline.index, outline.name
                        ),
                    );
                }
            }
        }
    }
    // Reservations are checked against every pool's subnet, known only if every subnet is.
    let subnets: Option<Vec<Subnet>> =
        if checked_pools.is_empty() { None } else { checked_pools.iter().map(|(outline, _)| outline.subnet).collect() };
    // Classes name pools; indexes count only the pools that checked out (any error fails the load).
    let pool_names: Vec<(usize, String)> = checked_pools
        .iter()
        .filter(|(_, pool)| pool.is_some())
        .enumerate()
        .map(|(i, (o, _))| (i, o.name.clone()))
        .collect();
    let pools: Vec<Pool> = checked_pools.into_iter().filter_map(|(_, pool)| pool).collect();

    // [[class]]
    let classes = check_classes(cx, &raw.classes, &pool_names, &defs);

    // [[reservation]]
    let mut reservations = Vec::new();
    let own_addresses: Vec<Ipv4Addr> = server_addresses.iter().map(|(ip, _)| *ip).collect();
    for (index, raw_reservation) in raw.reservations.iter().enumerate() {
        if let Some(reservation) =
            check_reservation(cx, index, raw_reservation, subnets.as_deref(), &own_addresses, &defs)
        {
            reservations.push((index, reservation));
        }
    }
    check_reservations_unique(cx, &reservations);

    let cluster = check_cluster(cx, &raw.cluster, ov);
    let admin = check_admin(cx, &raw.admin, ov);
    let boot = check_boot(cx, &raw.boot, ov);
    let store = check_store(cx, &raw.store, ov);
    // The default script, and every script a reservation or class chooses, exists.
    let chosen = std::iter::once(("boot.default_script".to_string(), &raw.boot.default_script));
    let chosen = chosen.chain(
        raw.reservations.iter().enumerate().map(|(i, r)| (format!("reservation[{i}].boot_script"), &r.boot_script)),
    );
    let chosen =
        chosen.chain(raw.classes.iter().enumerate().map(|(i, c)| (format!("class[{i}].boot_script"), &c.boot_script)));
    for (key, name) in chosen {
        match name {
            Some(name) if !boot.has_script(name) => cx.error(
                &Key::path(key),
                format!("`{name}` is neither a [[boot.script]] name nor `menu` with a [boot.menu]"),
            ),
            _ => {}
        }
    }

    let errors = ctx.errors;
    match (server_ip, server_port, client_port, admin_listen, data_dir, identity, log_format, log_level) {
        (
            Some(server_ip),
            Some(server_port),
            Some(client_port),
            Some(admin_listen),
            Some(data_dir),
            Some(identity),
            Some(log_format),
            Some(log_level),
        ) if errors.is_empty() => Ok(Config {
            interfaces,
            server_ip,
            server_port,
            client_port,
            admin_listen,
            data_dir,
            fsync,
            log_format,
            log_level,
            identity,
            pools,
            pxe,
            reservations: reservations.into_iter().map(|(_, reservation)| reservation).collect(),
            options,
            classes,
            limits,
            cluster,
            admin,
            boot,
            store: store.unwrap_or_default(),
        }),
        _ => {
            // Every `None` above was reported when it was made.
            assert!(!errors.is_empty(), "a config value was rejected without an error");
            Err(ConfigErrors(errors))
        }
    }
}

/// An interface name as Linux takes it (SO_BINDTODEVICE).
fn interface_name(cx: &mut Ctx<'_>, key: &Key, name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_INTERFACE_NAME_BYTES || name.contains(['/', ' ', '\0']) {
        cx.error(
            key,
            format!("`{name}` is not an interface name (1 to {MAX_INTERFACE_NAME_BYTES} bytes, no `/` or spaces)"),
        );
        None
    } else {
        Some(name.to_string())
    }
}

/// A server identifier: one of this server's own unicast addresses.
fn server_address(cx: &mut Ctx<'_>, key: &Key, text: &str) -> Option<Ipv4Addr> {
    let ip = cx.ipv4(key, text)?;
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        cx.error(key, format!("{ip} cannot be a server identifier; use this server's own unicast address"));
        return None;
    }
    Some(ip)
}

/// `[server] interface` + `server_ip` (one interface, or all), or the `[[interface]]` tables (each
/// named, with its own server identifier). Returns the interfaces (if all checked out), the main
/// server identifier, and every server address with its key, for the checks against pools.
#[allow(clippy::type_complexity)]
fn check_interfaces(
    cx: &mut Ctx<'_>,
    server: &crate::raw::RawServer,
    raw: &[crate::raw::RawInterface],
    ov: &Overrides,
) -> (Vec<Interface>, Option<Ipv4Addr>, Vec<(Ipv4Addr, Key)>) {
    let interface =
        overlay(ov.interface.as_deref(), flag::INTERFACE, server.interface.as_deref(), "server.interface".into());
    let server_ip =
        overlay(ov.server_ip.as_deref(), flag::SERVER_IP, server.server_ip.as_deref(), "server.server_ip".into());
    if raw.is_empty() {
        let name = interface.and_then(|(name, key)| interface_name(cx, &key, name));
        let Some((text, key)) = server_ip else {
            cx.error(
                &Key::path("server.server_ip"),
                format!(
                    "missing: set server_ip in [server] or give {} (the server identifier, option 54)",
                    flag::SERVER_IP
                ),
            );
            return (Vec::new(), None, Vec::new());
        };
        let Some(ip) = server_address(cx, &key, text) else {
            return (Vec::new(), None, Vec::new());
        };
        return (vec![Interface { name, server_ip: ip }], Some(ip), vec![(ip, key)]);
    }

    if let Some((_, key)) = &interface {
        cx.error(key, "the file has [[interface]] tables: name every interface there (name, server_ip), not here");
    }
    let errors_before = cx.errors.len();
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut names: Vec<(String, usize)> = Vec::new();
    let mut addresses: Vec<(Ipv4Addr, Key)> = Vec::new();
    for (index, entry) in raw.iter().enumerate() {
        let key = |field: &str| Key::path(format!("interface[{index}].{field}"));
        let name = match &entry.name {
            Some(name) => interface_name(cx, &key("name"), name),
            None => {
                cx.error(&key("name"), "missing: the interface to listen on, like eth0");
                None
            }
        };
        if let Some(name) = &name {
            if let Some((_, first)) = names.iter().find(|(other, _)| other == name) {
                cx.error(&key("name"), format!("`{name}` is already interface[{first}]"));
            }
            names.push((name.clone(), index));
        }
        let ip = match &entry.server_ip {
            Some(text) => server_address(cx, &key("server_ip"), text),
            None => {
                cx.error(&key("server_ip"), "missing: this node's own address on the interface (option 54)");
                None
            }
        };
        if let Some(ip) = ip {
            if let Some((_, Key::Path(first))) = addresses.iter().find(|(other, _)| *other == ip) {
                let first = first.trim_end_matches(".server_ip").to_string();
                cx.error(&key("server_ip"), format!("{ip} is already the server_ip of {first}"));
            }
            addresses.push((ip, key("server_ip")));
        }
        if let (Some(name), Some(ip)) = (name, ip) {
            interfaces.push(Interface { name: Some(name), server_ip: ip });
        }
    }
    if cx.errors.len() > errors_before {
        return (Vec::new(), None, addresses);
    }
    // The main server identifier: `server_ip` if given (one of the interfaces'), else the first's.
    let main = match server_ip {
        None => interfaces.first().map(|i| i.server_ip),
        Some((text, key)) => server_address(cx, &key, text).and_then(|ip| {
            if interfaces.iter().any(|i| i.server_ip == ip) {
                Some(ip)
            } else {
                cx.error(&key, format!("{ip} is not the server_ip of any [[interface]]"));
                None
            }
        }),
    };
    (interfaces, main, addresses)
}

fn check_limits(cx: &mut Ctx<'_>, raw: &crate::raw::RawLimits) -> Limits {
    let mut limits = Limits::default();
    macro_rules! limit {
        ($($field:ident),* $(,)?) => {$(
            if let Some(value) = raw.$field {
                if let Some(value) = cx.positive(&Key::path(concat!("limits.", stringify!($field))), value) {
                    limits.$field = value;
                }
            }
        )*};
    }
    limit!(
        offer_hold_ms,
        max_offers,
        decline_probation_secs,
        expiry_grace_secs,
        mailbox_capacity,
        max_inflight_proposals,
        proposal_timeout_ms,
        max_frame_bytes,
        max_leases,
        snapshot_every_entries,
        record_retention_secs,
    );
    // Ten years at most, so that every unit conversion stays exact (`MAX_LIMIT_SECS`).
    let durations = [
        ("offer_hold_ms", limits.offer_hold_ms, crate::MAX_LIMIT_SECS * 1000),
        ("proposal_timeout_ms", limits.proposal_timeout_ms, crate::MAX_LIMIT_SECS * 1000),
        ("decline_probation_secs", limits.decline_probation_secs, crate::MAX_LIMIT_SECS),
        ("expiry_grace_secs", limits.expiry_grace_secs, crate::MAX_LIMIT_SECS),
        ("record_retention_secs", limits.record_retention_secs, crate::MAX_LIMIT_SECS),
    ];
    for (field, value, max) in durations {
        if value > max {
            cx.error(&Key::path(format!("limits.{field}")), format!("{value} is more than {max} (ten years)"));
        }
    }
    match raw.group_commit_window_us {
        Some(window) if window > crate::MAX_GROUP_COMMIT_WINDOW_US => cx.error(
            &Key::path("limits.group_commit_window_us"),
            format!("{window} is more than {} (every ACK may wait this long)", crate::MAX_GROUP_COMMIT_WINDOW_US),
        ),
        Some(window) => limits.group_commit_window_us = window,
        None => {}
    }
    match raw.receive_window_us {
        Some(window) if window > crate::MAX_RECEIVE_WINDOW_US => cx.error(
            &Key::path("limits.receive_window_us"),
            format!("{window} is more than {} (every reply may wait this long)", crate::MAX_RECEIVE_WINDOW_US),
        ),
        Some(window) => limits.receive_window_us = window,
        None => {}
    }
    if raw.max_frame_bytes.is_some_and(|bytes| bytes > 0 && bytes < MIN_FRAME_BYTES) {
        cx.error(
            &Key::path("limits.max_frame_bytes"),
            format!("must be at least {MIN_FRAME_BYTES}: every DHCP participant must accept that much (RFC 2131 §2)"),
        );
    }
    if let Some(percent) = raw.max_offers_per_pool_percent {
        match u32::try_from(percent) {
            Ok(percent @ 1..=100) => limits.max_offers_per_pool_percent = percent,
            _ => cx.error(
                &Key::path("limits.max_offers_per_pool_percent"),
                format!("{percent} is not a percentage from 1 to 100 (of each pool's size)"),
            ),
        }
    }
    limits.rate = check_rate_limits(cx, &raw.rate);
    limits
}

/// `[limits.rate]`: every rate and burst within its range, each error under its own key.
fn check_rate_limits(cx: &mut Ctx<'_>, raw: &crate::raw::RawRateLimits) -> RateLimits {
    use crate::{MAX_BURST_MESSAGES, MAX_MESSAGES_PER_SEC, MAX_TRACKED_KEYS, MIN_MESSAGES_PER_SEC};
    let mut rate = RateLimits::default();
    let buckets: [(&str, Option<f64>, Option<u64>, &mut TokenBucket); 4] = [
        ("mac", raw.mac_messages_per_sec, raw.mac_burst_messages, &mut rate.mac),
        ("relay", raw.relay_messages_per_sec, raw.relay_burst_messages, &mut rate.relay),
        ("circuit", raw.circuit_messages_per_sec, raw.circuit_burst_messages, &mut rate.circuit),
        ("decline", raw.decline_messages_per_sec, raw.decline_burst_messages, &mut rate.decline),
    ];
    for (name, per_sec, burst, bucket) in buckets {
        if let Some(per_sec) = per_sec {
            if per_sec.is_finite() && (MIN_MESSAGES_PER_SEC..=MAX_MESSAGES_PER_SEC).contains(&per_sec) {
                bucket.per_sec = per_sec;
            } else {
                cx.error(
                    &Key::path(format!("limits.rate.{name}_messages_per_sec")),
                    format!("{per_sec} is not a rate from {MIN_MESSAGES_PER_SEC} to {MAX_MESSAGES_PER_SEC} messages a second"),
                );
            }
        }
        if let Some(burst) = burst {
            match u32::try_from(burst) {
                Ok(burst) if burst >= 1 && u64::from(burst) <= MAX_BURST_MESSAGES => bucket.burst = burst,
                _ => cx.error(
                    &Key::path(format!("limits.rate.{name}_burst_messages")),
                    format!("{burst} is not a burst from 1 to {MAX_BURST_MESSAGES} messages"),
                ),
            }
        }
    }
    if let Some(keys) = raw.max_tracked_keys {
        match usize::try_from(keys) {
            Ok(keys) if keys >= 1 && keys as u64 <= MAX_TRACKED_KEYS => rate.max_tracked_keys = keys,
            _ => cx.error(
                &Key::path("limits.rate.max_tracked_keys"),
                format!("{keys} is not a count from 1 to {MAX_TRACKED_KEYS} keys per kind of bucket"),
            ),
        }
    }
    rate
}

/// `[pxe]` (with its flags) or `[pool.pxe]` (without), keys under `prefix`.
fn check_pxe(
    cx: &mut Ctx<'_>,
    prefix: &str,
    raw: &RawPxe,
    tftp_flag: Option<&str>,
    bootfile_flag: Option<&str>,
) -> Pxe {
    let next_server =
        raw.next_server.as_deref().and_then(|text| cx.ipv4(&Key::path(format!("{prefix}.next_server")), text));
    let tftp_server =
        overlay(tftp_flag, flag::TFTP_SERVER, raw.tftp_server.as_deref(), format!("{prefix}.tftp_server"))
            .and_then(|(text, key)| cx.ipv4(&key, text));
    let boot_file = overlay(bootfile_flag, flag::BOOTFILE, raw.boot_file.as_deref(), format!("{prefix}.boot_file"))
        .and_then(|(text, key)| cx.boot_file(&key, text));
    let ipxe_script_url = raw
        .ipxe_script_url
        .as_deref()
        .and_then(|text| cx.boot_file(&Key::path(format!("{prefix}.ipxe_script_url")), text));
    let mut arch_boot_files = BTreeMap::new();
    let mut arch_keys: BTreeMap<ArchCode, &str> = BTreeMap::new();
    for (name, file) in &raw.arch {
        let key = Key::path(format!("{prefix}.arch.{name}"));
        let Some(code) = arch_code(name) else {
            let names: Vec<&str> = ARCH_NAMES.iter().map(|(name, _)| *name).collect();
            cx.error(
                &key,
                format!(
                    "`{name}` is not an architecture: use a decimal option-93 code (0-65535) or one of {}",
                    names.join(", ")
                ),
            );
            continue;
        };
        if let Some(other) = arch_keys.insert(code, name) {
            cx.error(&key, format!("architecture {code} is already given as `{prefix}.arch.{other}`"));
            continue;
        }
        let Some(file) = cx.boot_file(&key, file) else { continue };
        if is_http_boot_arch(code) && !is_url(&file) {
            cx.error(
                &key,
                format!(
                    "architecture {code} boots over HTTP (UEFI HTTP boot): give an http:// or https:// URL, not `{file}`"
                ),
            );
            continue;
        }
        arch_boot_files.insert(code, file);
    }
    Pxe { next_server, tftp_server, boot_file, arch_boot_files, ipxe_script_url }
}

/// The pool flags as they apply to one pool (all empty when they do not apply).
#[derive(Default)]
struct PoolFlags<'a> {
    /// The pool is made from the flags alone (the file has none).
    create: bool,
    ip_start: Option<&'a str>,
    ip_end: Option<&'a str>,
    subnet_mask: Option<&'a str>,
    router: Option<&'a str>,
    dns: &'a [String],
    lease_time_secs: Option<u32>,
}

/// What is known of a pool even when some of it is wrong, for the checks across pools.
struct PoolOutline {
    /// Position in the file (0 for the pool made from flags).
    index: usize,
    name: String,
    /// Start and end, if both parsed and `start <= end`.
    range: Option<(Ipv4Addr, Ipv4Addr)>,
    subnet: Option<Subnet>,
}

/// Every pool in file order: its outline, and the pool if all of it checked out.
fn check_pools(
    cx: &mut Ctx<'_>,
    raw_pools: &[RawPool],
    ov: &Overrides,
    defs: &Definitions,
) -> Vec<(PoolOutline, Option<Pool>)> {
    let flags = PoolFlags {
        create: false,
        ip_start: ov.ip_start.as_deref(),
        ip_end: ov.ip_end.as_deref(),
        subnet_mask: ov.subnet_mask.as_deref(),
        router: ov.router.as_deref(),
        dns: &ov.dns,
        lease_time_secs: ov.lease_time_secs,
    };
    let mut pools = Vec::new();
    match raw_pools.len() {
        0 => match (flags.ip_start, flags.ip_end) {
            (Some(_), Some(_)) => {
                let flags = PoolFlags { create: true, ..flags };
                pools.push(check_pool(cx, 0, &RawPool::default(), &flags, defs));
            }
            (Some(_), None) => cx.error(&Key::Flag(flag::IP_END), format!("missing: {} needs it", flag::IP_START)),
            (None, Some(_)) => cx.error(&Key::Flag(flag::IP_START), format!("missing: {} needs it", flag::IP_END)),
            (None, None) => cx.error(
                &Key::path("pool"),
                format!("no pool configured (give [[pool]] in the file or {}/{})", flag::IP_START, flag::IP_END),
            ),
        },
        1 => pools.push(check_pool(cx, 0, &raw_pools[0], &flags, defs)),
        count => {
            let given = [
                (flag::IP_START, flags.ip_start.is_some()),
                (flag::IP_END, flags.ip_end.is_some()),
                (flag::SUBNET_MASK, flags.subnet_mask.is_some()),
                (flag::ROUTER, flags.router.is_some()),
                (flag::DNS, !flags.dns.is_empty()),
                (flag::LEASE_TIME_SECS, flags.lease_time_secs.is_some()),
            ];
            for (name, _) in given.iter().filter(|(_, given)| *given) {
                cx.error(
                    &Key::Flag(name),
                    format!("the config file has {count} pools; pool flags apply only to a single pool"),
                );
            }
            for (index, raw) in raw_pools.iter().enumerate() {
                pools.push(check_pool(cx, index, raw, &PoolFlags::default(), defs));
            }
        }
    }

    // Across pools: unique names, disjoint ranges.
    for (j, (later, _)) in pools.iter().enumerate() {
        for (earlier, _) in &pools[..j] {
            if !later.name.is_empty() && earlier.name == later.name {
                cx.error(
                    &Key::path(format!("pool[{}].name", later.index)),
                    format!(
                        "`{}` is already the name of pool[{}]; pool names must be unique",
                        later.name, earlier.index
                    ),
                );
            }
            if let (Some((start_i, end_i)), Some((start_j, end_j))) = (earlier.range, later.range) {
                if start_i <= end_j && start_j <= end_i {
                    cx.error(
                        &Key::path(format!("pool[{}].range_start", later.index)),
                        format!(
                            "range {start_j}-{end_j} overlaps pool[{}] (`{}`) range {start_i}-{end_i}",
                            earlier.index, earlier.name
                        ),
                    );
                }
            }
        }
    }
    pools
}

/// One pool's outline, and the pool unless something in it is wrong (every problem reported).
fn check_pool(
    cx: &mut Ctx<'_>,
    index: usize,
    raw: &RawPool,
    flags: &PoolFlags<'_>,
    defs: &Definitions,
) -> (PoolOutline, Option<Pool>) {
    let errors_before = cx.errors.len();
    let prefix = format!("pool[{index}]");
    let path = |name: &str| format!("{prefix}.{name}");

    let name = if flags.create {
        DEFAULT_FLAG_POOL_NAME.to_string()
    } else {
        match &raw.name {
            Some(name) if name.is_empty() => {
                cx.error(&Key::path(path("name")), "is empty; give the pool a name or leave the key out");
                String::new()
            }
            Some(name) => name.clone(),
            None => format!("pool{index}"),
        }
    };

    let address =
        |cx: &mut Ctx<'_>, flag_value: Option<&str>, flag_name, file_value: Option<&str>, field: &str| match overlay(
            flag_value,
            flag_name,
            file_value,
            path(field),
        ) {
            Some((text, key)) => cx.ipv4(&key, text).map(|ip| (ip, key)),
            None => {
                cx.error(&Key::path(path(field)), "missing: give the first and last address the pool hands out");
                None
            }
        };
    let start = address(cx, flags.ip_start, flag::IP_START, raw.range_start.as_deref(), "range_start");
    let end = address(cx, flags.ip_end, flag::IP_END, raw.range_end.as_deref(), "range_end");

    let subnet: Option<Subnet> = match flags.subnet_mask {
        Some(mask) => cx.netmask(&Key::Flag(flag::SUBNET_MASK), mask).and_then(|prefix_len| {
            // The file's network (or the range's) cut to the new mask.
            let base = match raw.subnet.as_deref().and_then(|s| cx.subnet(&Key::path(path("subnet")), s)) {
                Some(subnet) => Some(subnet.network),
                None => start.as_ref().map(|(ip, _)| *ip),
            }?;
            Some(masked_subnet(base, prefix_len))
        }),
        None => match raw.subnet.as_deref() {
            Some(text) => cx.subnet(&Key::path(path("subnet")), text),
            None if flags.create => start.as_ref().map(|(ip, _)| masked_subnet(*ip, DEFAULT_FLAG_POOL_PREFIX_LEN)),
            None => {
                cx.error(&Key::path(path("subnet")), "missing: give the pool's subnet, like 192.168.77.0/24");
                None
            }
        },
    };

    if let (Some((start, start_key)), Some((end, end_key))) = (&start, &end) {
        if start > end {
            cx.error(end_key, format!("range_end {end} is below range_start {start}"));
        }
        let addresses = u64::from(u32::from(*end)).saturating_sub(u64::from(u32::from(*start))) + 1;
        if start <= end && addresses > crate::MAX_POOL_ADDRESSES {
            cx.error(
                end_key,
                format!(
                    "the range {start} to {end} holds {addresses} addresses; a pool holds at most {} (a /8): \
                     split it into several pools",
                    crate::MAX_POOL_ADDRESSES
                ),
            );
        }
        if let Some(subnet) = subnet {
            let net = format!("{}/{}", subnet.network, subnet.prefix_len);
            let start_inside = subnet.contains(*start);
            let end_inside = subnet.contains(*end);
            if !start_inside {
                cx.error(start_key, format!("{start} is outside the pool's subnet {net}"));
            }
            if !end_inside {
                cx.error(end_key, format!("{end} is outside the pool's subnet {net}"));
            }
            // A /31 (RFC 3021) or /32 has no network or broadcast address to avoid.
            if start_inside && end_inside && subnet.prefix_len <= 30 {
                if *start == subnet.network {
                    cx.error(start_key, format!("the range must not contain {start}, the network address of {net}"));
                }
                if *end == subnet.broadcast() {
                    cx.error(end_key, format!("the range must not contain {end}, the broadcast address of {net}"));
                }
            }
        }
    }

    let routers: Vec<(String, Key)> = match flags.router {
        Some(router) => vec![(router.to_string(), Key::Flag(flag::ROUTER))],
        None => raw
            .routers
            .iter()
            .enumerate()
            .map(|(i, r)| (r.clone(), Key::path(path(&format!("routers[{i}]")))))
            .collect(),
    };
    let routers: Vec<Ipv4Addr> = routers.iter().filter_map(|(text, key)| cx.ipv4(key, text)).collect();
    let dns: Vec<(String, Key)> = if flags.dns.is_empty() {
        raw.dns_servers
            .iter()
            .enumerate()
            .map(|(i, d)| (d.clone(), Key::path(path(&format!("dns_servers[{i}]")))))
            .collect()
    } else {
        flags.dns.iter().map(|d| (d.clone(), Key::Flag(flag::DNS))).collect()
    };
    let dns_servers: Vec<Ipv4Addr> = dns.iter().filter_map(|(text, key)| cx.ipv4(key, text)).collect();

    let domain_name = raw.domain_name.as_ref().and_then(|domain| {
        if domain.is_empty() || domain.len() > 255 {
            cx.error(&Key::path(path("domain_name")), "must be 1 to 255 bytes (option 15)");
            None
        } else {
            Some(domain.clone())
        }
    });

    let (lease_time_secs, renewal_time_secs, rebinding_time_secs) = check_lease_times(cx, &prefix, raw, flags);
    let pxe = raw.pxe.as_ref().map(|pxe| check_pxe(cx, &path("pxe"), pxe, None, None));
    let options = check_options(cx, &path("option"), &raw.options, defs);
    // routers, dns_servers and domain_name are options 3, 6 and 15 of this scope already.
    for (code, given, field) in [
        (3, !routers.is_empty(), "routers"),
        (6, !dns_servers.is_empty(), "dns_servers"),
        (15, domain_name.is_some(), "domain_name"),
    ] {
        if given && options.get(code).is_some() {
            cx.error(&Key::path(path("option")), format!("option {code} is set by {prefix}.{field} already"));
        }
    }
    let bootp_lease_time_secs = match raw.bootp_lease_time_secs {
        Some(secs) => cx.positive(&Key::path(path("bootp_lease_time_secs")), secs).unwrap_or(lease_time_secs),
        None => lease_time_secs,
    };

    let range = match (&start, &end) {
        (Some((start, _)), Some((end, _))) if start <= end => Some((*start, *end)),
        _ => None,
    };
    let outline = PoolOutline { index, name: name.clone(), range, subnet };
    let pool = match (subnet, range) {
        (Some(subnet), Some((range_start, range_end))) if cx.errors.len() == errors_before => Some(Pool {
            name,
            subnet,
            range_start,
            range_end,
            routers,
            dns_servers,
            domain_name,
            lease_time_secs,
            renewal_time_secs,
            rebinding_time_secs,
            pxe,
            dynamic_bootp: raw.dynamic_bootp.unwrap_or(false),
            bootp_lease_time_secs,
            options,
        }),
        _ => None,
    };
    (outline, pool)
}

fn masked_subnet(ip: Ipv4Addr, prefix_len: u8) -> Subnet {
    let mask = Subnet { network: Ipv4Addr::UNSPECIFIED, prefix_len }.mask();
    Subnet { network: Ipv4Addr::from(u32::from(ip) & u32::from(mask)), prefix_len }
}

/// Lease time, T1 and T2 (options 51, 58, 59): `0 < T1 < T2 < lease`. T1 defaults to half the lease
/// and T2 to 7/8 of it (RFC 2131 §4.4.5). `--lease-time` resets T1 and T2 to those defaults.
fn check_lease_times(cx: &mut Ctx<'_>, prefix: &str, raw: &RawPool, flags: &PoolFlags<'_>) -> (u32, u32, u32) {
    let path = |name: &str| Key::path(format!("{prefix}.{name}"));
    let (lease, lease_key, t1_given, t2_given) = match flags.lease_time_secs {
        Some(lease) => (lease, Key::Flag(flag::LEASE_TIME_SECS), None, None),
        None => (
            raw.lease_time_secs.unwrap_or(DEFAULT_LEASE_TIME_SECS),
            path("lease_time_secs"),
            raw.renewal_time_secs,
            raw.rebinding_time_secs,
        ),
    };
    if lease == 0 {
        cx.error(&lease_key, "must be greater than 0");
        return (lease, 0, 0);
    }
    // Both products fit: lease * 7 < 2^35.
    let t1 = t1_given.unwrap_or(lease / 2);
    let t2 = t2_given.unwrap_or((u64::from(lease) * 7 / 8) as u32);
    let t1_key = if t1_given.is_some() { path("renewal_time_secs") } else { lease_key.clone() };
    let t2_key = if t2_given.is_some() { path("rebinding_time_secs") } else { lease_key.clone() };
    let describe = |name: &str, value: u32, given: bool, default: &str| {
        if given {
            format!("{name} {value}")
        } else {
            format!("{name} (by default {default} = {value})")
        }
    };
    let t1_text = describe("renewal_time_secs", t1, t1_given.is_some(), "lease/2");
    let t2_text = describe("rebinding_time_secs", t2, t2_given.is_some(), "lease*7/8");
    if t1 == 0 {
        cx.error(&t1_key, format!("{t1_text} must be greater than 0"));
    }
    if t1 >= t2 {
        cx.error(&t2_key, format!("{t2_text} must be greater than {t1_text}"));
    }
    if t2 >= lease {
        cx.error(&t2_key, format!("{t2_text} must be less than lease_time_secs {lease}"));
    }
    (lease, t1, t2)
}

fn check_reservation(
    cx: &mut Ctx<'_>,
    index: usize,
    raw: &RawReservation,
    subnets: Option<&[Subnet]>,
    server_addresses: &[Ipv4Addr],
    defs: &Definitions,
) -> Option<Reservation> {
    let errors_before = cx.errors.len();
    let prefix = format!("reservation[{index}]");
    let key = |name: &str| Key::path(format!("{prefix}.{name}"));

    let mut mac = None;
    let mut client_id = None;
    match (&raw.mac, &raw.client_id) {
        (Some(_), Some(_)) => cx.error(&Key::path(&prefix), "give exactly one of mac or client_id, not both"),
        (None, None) => cx.error(&Key::path(&prefix), "give exactly one of mac or client_id"),
        (Some(text), None) => {
            mac =
                cx.hex_octets(&key("mac"), text, "MAC address").and_then(|octets| match <[u8; 6]>::try_from(octets) {
                    Ok(mac) => Some(mac),
                    Err(octets) => {
                        cx.error(&key("mac"), format!("`{text}` has {} octets; a MAC address has 6", octets.len()));
                        None
                    }
                });
        }
        (None, Some(text)) => {
            client_id = cx.hex_octets(&key("client_id"), text, "client identifier").and_then(|octets| {
                // RFC 2132 §9.14: a type octet and at least one more; the option holds at most 255.
                if (2..=255).contains(&octets.len()) {
                    Some(octets)
                } else {
                    cx.error(&key("client_id"), format!("has {} octets; option 61 holds 2 to 255", octets.len()));
                    None
                }
            });
        }
    }

    let ip = match &raw.ip {
        None => {
            cx.error(&key("ip"), "missing: give the address to reserve");
            None
        }
        Some(text) => cx.ipv4(&key("ip"), text),
    };
    if let Some(ip) = ip {
        if server_addresses.contains(&ip) {
            cx.error(&key("ip"), format!("{ip} is the server's own server_ip"));
        }
        match subnets.and_then(|subnets| subnets.iter().find(|subnet| subnet.contains(ip))) {
            None if subnets.is_some() => cx.error(&key("ip"), format!("{ip} is not inside any pool's subnet")),
            // A /31 or /32 (RFC 3021) has no network or broadcast address to avoid.
            Some(subnet) if subnet.prefix_len <= 30 && (ip == subnet.network || ip == subnet.broadcast()) => cx.error(
                &key("ip"),
                format!("{ip} is the network or broadcast address of {}/{}", subnet.network, subnet.prefix_len),
            ),
            _ => {}
        }
    }
    let hostname = raw.hostname.as_ref().and_then(|name| {
        if name.is_empty() || name.len() > 255 {
            cx.error(&key("hostname"), "must be 1 to 255 bytes (option 12)");
            None
        } else {
            Some(name.clone())
        }
    });
    let boot_file = raw.boot_file.as_ref().and_then(|file| cx.boot_file(&key("boot_file"), file));
    let next_server = raw.next_server.as_deref().and_then(|text| cx.ipv4(&key("next_server"), text));
    let options = check_options(cx, &format!("{prefix}.option"), &raw.options, defs);

    if cx.errors.len() > errors_before {
        return None;
    }
    let boot_script = raw.boot_script.clone();
    Some(Reservation { mac, client_id, ip: ip?, hostname, boot_file, next_server, boot_script, options })
}

fn check_reservations_unique(cx: &mut Ctx<'_>, reservations: &[(usize, Reservation)]) {
    let mut by_ip: HashMap<Ipv4Addr, usize> = HashMap::new();
    let mut by_mac: HashMap<[u8; 6], usize> = HashMap::new();
    let mut by_client_id: HashMap<&[u8], usize> = HashMap::new();
    for (index, reservation) in reservations {
        if let Some(first) = by_ip.insert(reservation.ip, *index) {
            by_ip.insert(reservation.ip, first);
            cx.error(
                &Key::path(format!("reservation[{index}].ip")),
                format!("{} is already reserved by reservation[{first}]", reservation.ip),
            );
        }
        if let Some(mac) = reservation.mac {
            if let Some(&first) = by_mac.get(&mac) {
                cx.error(
                    &Key::path(format!("reservation[{index}].mac")),
                    format!("this MAC already has a reservation, reservation[{first}]"),
                );
            } else {
                by_mac.insert(mac, *index);
            }
        }
        if let Some(client_id) = &reservation.client_id {
            if let Some(&first) = by_client_id.get(client_id.as_slice()) {
                cx.error(
                    &Key::path(format!("reservation[{index}].client_id")),
                    format!("this client identifier already has a reservation, reservation[{first}]"),
                );
            } else {
                by_client_id.insert(client_id, *index);
            }
        }
    }
}

fn check_cluster(cx: &mut Ctx<'_>, raw: &crate::raw::RawCluster, ov: &Overrides) -> Cluster {
    let defaults = Cluster::default();
    let node_id = match overlay(ov.node_id, flag::NODE_ID, raw.node_id, "cluster.node_id".into()) {
        Some((id, key)) => cx.positive(&key, id).unwrap_or(defaults.node_id),
        None => defaults.node_id,
    };
    let listen =
        overlay(ov.cluster_listen.as_deref(), flag::CLUSTER_LISTEN, raw.listen.as_deref(), "cluster.listen".into())
            .and_then(|(text, key)| cx.socket_addr(&key, text));

    let (peer_texts, peers_key): (Vec<(&str, Key)>, Key) = if ov.peers.is_empty() {
        let texts =
            raw.peers.iter().enumerate().map(|(i, p)| (p.as_str(), Key::path(format!("cluster.peers[{i}]")))).collect();
        (texts, Key::path("cluster.peers"))
    } else {
        (ov.peers.iter().map(|p| (p.as_str(), Key::Flag(flag::PEER))).collect(), Key::Flag(flag::PEER))
    };
    let mut peers = BTreeMap::new();
    let mut peer_errors = false;
    for (text, key) in &peer_texts {
        let parsed = text.split_once('=').and_then(|(id, addr)| Some((id.parse::<u64>().ok()?, addr)));
        let Some((id, addr)) = parsed else {
            cx.error(key, format!("`{text}` is not a peer: write ID=IP:PORT, like 2=192.168.77.2:6768"));
            peer_errors = true;
            continue;
        };
        if id == 0 {
            cx.error(key, format!("`{text}`: peer ids must be greater than 0"));
            peer_errors = true;
        }
        let Some(addr) = cx.socket_addr(key, addr) else {
            peer_errors = true;
            continue;
        };
        if peers.insert(id, addr).is_some() {
            cx.error(key, format!("`{text}`: peer id {id} is given twice"));
            peer_errors = true;
        }
    }
    if !peer_errors && !peers.is_empty() && !peers.contains_key(&node_id) {
        cx.error(
            &peers_key,
            format!("the peers must include this node (node_id {node_id}); they are the full initial voter set"),
        );
    }

    let tick_ms = raw.tick_ms.map_or(Some(defaults.tick_ms), |v| cx.positive(&Key::path("cluster.tick_ms"), v));
    let election_ticks = raw
        .election_ticks
        .map_or(Some(defaults.election_ticks), |v| cx.positive(&Key::path("cluster.election_ticks"), v));
    let heartbeat_ticks = raw
        .heartbeat_ticks
        .map_or(Some(defaults.heartbeat_ticks), |v| cx.positive(&Key::path("cluster.heartbeat_ticks"), v));
    let transfer_timeout_ms = raw
        .transfer_timeout_ms
        .map_or(Some(defaults.transfer_timeout_ms), |v| cx.positive(&Key::path("cluster.transfer_timeout_ms"), v));
    if let (Some(election), Some(heartbeat)) = (election_ticks, heartbeat_ticks) {
        if heartbeat >= election {
            cx.error(
                &Key::path("cluster.heartbeat_ticks"),
                format!("heartbeat_ticks {heartbeat} must be less than election_ticks {election}"),
            );
        }
    }
    let secret = overlay(
        ov.cluster_secret_file.as_deref(),
        flag::CLUSTER_SECRET_FILE,
        raw.secret_file.as_deref(),
        "cluster.secret_file".into(),
    );
    let secret_file = file_path(cx, secret, "secret file");
    let tls_ca = overlay(
        ov.cluster_tls_ca.as_deref(),
        flag::CLUSTER_TLS_CA,
        raw.tls_ca_file.as_deref(),
        "cluster.tls_ca_file".into(),
    );
    let tls_cert = overlay(
        ov.cluster_tls_cert.as_deref(),
        flag::CLUSTER_TLS_CERT,
        raw.tls_cert_file.as_deref(),
        "cluster.tls_cert_file".into(),
    );
    let tls_key = overlay(
        ov.cluster_tls_key.as_deref(),
        flag::CLUSTER_TLS_KEY,
        raw.tls_key_file.as_deref(),
        "cluster.tls_key_file".into(),
    );
    let tls = match [tls_ca, tls_cert, tls_key] {
        [None, None, None] => None,
        files => {
            let names = ["cluster.tls_ca_file", "cluster.tls_cert_file", "cluster.tls_key_file"];
            all_or_none(cx, files, names, "peer TLS").map(|[ca_file, cert_file, key_file]| PeerTlsFiles {
                ca_file,
                cert_file,
                key_file,
            })
        }
    };
    if !peer_errors && peers.len() > 1 && peers.contains_key(&node_id) {
        if listen.is_none() {
            cx.error(
                &Key::path("cluster.listen"),
                "several peers need a listen address for peer traffic (--cluster-listen)".to_string(),
            );
        }
        if secret_file.is_none() && tls.is_none() {
            cx.error(
                &Key::path("cluster.secret_file"),
                "several peers need a shared secret file (--cluster-secret-file) or mutual TLS (cluster.tls_ca_file, \
                 tls_cert_file, tls_key_file) to authenticate peer traffic"
                    .to_string(),
            );
        }
    }
    Cluster {
        node_id,
        peers,
        listen,
        secret_file,
        tls,
        join: ov.join || raw.join.unwrap_or(false),
        tick_ms: tick_ms.unwrap_or(defaults.tick_ms),
        election_ticks: election_ticks.unwrap_or(defaults.election_ticks),
        heartbeat_ticks: heartbeat_ticks.unwrap_or(defaults.heartbeat_ticks),
        transfer_timeout_ms: transfer_timeout_ms.unwrap_or(defaults.transfer_timeout_ms),
    }
}

/// A file name from the file or a flag: `None` (with an error) when it is empty.
fn file_path(cx: &mut Ctx<'_>, value: Option<(&str, Key)>, what: &str) -> Option<PathBuf> {
    match value {
        Some(("", key)) => {
            cx.error(&key, format!("the {what} path is empty"));
            None
        }
        Some((text, _)) => Some(PathBuf::from(text)),
        None => None,
    }
}

/// Files that only work together (a certificate and its key): all of them, or an error on each
/// one missing (named by its file key) and `None`.
fn all_or_none<const N: usize>(
    cx: &mut Ctx<'_>,
    values: [Option<(&str, Key)>; N],
    names: [&str; N],
    what: &str,
) -> Option<[PathBuf; N]> {
    let given: Vec<String> = values
        .iter()
        .zip(names)
        .filter_map(|(value, name)| value.as_ref().map(|(_, key)| key_name(key, name)))
        .collect();
    let mut paths = Vec::with_capacity(N);
    let mut complete = true;
    for (value, name) in values.into_iter().zip(names) {
        match value {
            Some(value) => match file_path(cx, Some(value), "file") {
                Some(path) => paths.push(path),
                None => complete = false,
            },
            None => {
                complete = false;
                cx.error(&Key::path(name), format!("{what} needs this file too (given: {})", given.join(", ")));
            }
        }
    }
    if complete {
        paths.try_into().ok()
    } else {
        None
    }
}

fn key_name(key: &Key, path: &str) -> String {
    match key {
        Key::Flag(flag) => (*flag).to_string(),
        Key::Path(_) => path.to_string(),
    }
}

/// `[admin]` and the `--admin-*` flags.
fn check_admin(cx: &mut Ctx<'_>, raw: &crate::raw::RawAdmin, ov: &Overrides) -> Admin {
    let token = overlay(
        ov.admin_token_file.as_deref(),
        flag::ADMIN_TOKEN_FILE,
        raw.token_file.as_deref(),
        "admin.token_file".into(),
    );
    let token_file = file_path(cx, token, "token file");
    let protect_reads = raw.protect_reads.unwrap_or(false);
    if protect_reads && token_file.is_none() {
        cx.error(
            &Key::path("admin.protect_reads"),
            "protecting reads needs a token: set admin.token_file (--admin-token-file)".to_string(),
        );
    }
    let cert = overlay(
        ov.admin_tls_cert.as_deref(),
        flag::ADMIN_TLS_CERT,
        raw.tls_cert_file.as_deref(),
        "admin.tls_cert_file".into(),
    );
    let key = overlay(
        ov.admin_tls_key.as_deref(),
        flag::ADMIN_TLS_KEY,
        raw.tls_key_file.as_deref(),
        "admin.tls_key_file".into(),
    );
    let tls = match [cert, key] {
        [None, None] => None,
        files => all_or_none(cx, files, ["admin.tls_cert_file", "admin.tls_key_file"], "admin TLS")
            .map(|[cert_file, key_file]| TlsFiles { cert_file, key_file }),
    };
    Admin { token_file, protect_reads, tls }
}

/// `[boot]` and `--boot-root`.
/// `[store]`, with `--store` and `--etcd-endpoints` over it.
fn check_store(cx: &mut Ctx<'_>, raw: &crate::raw::RawStore, ov: &Overrides) -> Option<Store> {
    let kind = overlay(ov.store.as_deref(), flag::STORE, raw.kind.as_deref(), "store.kind".into());
    let etcd_keys = [
        ("store.prefix", raw.prefix.is_some()),
        ("store.election_ttl_secs", raw.election_ttl_secs.is_some()),
        ("store.request_timeout_ms", raw.request_timeout_ms.is_some()),
        ("store.tls_ca", raw.tls_ca.is_some()),
        ("store.tls_cert", raw.tls_cert.is_some()),
        ("store.tls_key", raw.tls_key.is_some()),
    ];
    match kind {
        None | Some(("raft", _)) => {
            let endpoints = !raw.endpoints.is_empty() || !ov.etcd_endpoints.is_empty();
            let endpoints = endpoints.then_some("store.endpoints");
            for key in endpoints.into_iter().chain(etcd_keys.iter().filter(|(_, set)| *set).map(|(key, _)| *key)) {
                cx.error(&Key::path(key), "only for the etcd store (`[store] kind = \"etcd\"`, or --store etcd)");
            }
            Some(Store::Raft)
        }
        Some(("etcd", _)) => {
            let (endpoints, key) = if ov.etcd_endpoints.is_empty() {
                (raw.endpoints.clone(), Key::path("store.endpoints"))
            } else {
                let split = ov.etcd_endpoints.iter().flat_map(|list| list.split(',')).map(str::trim);
                (split.filter(|e| !e.is_empty()).map(str::to_string).collect(), Key::Flag(flag::ETCD_ENDPOINTS))
            };
            let mut ok = true;
            if endpoints.is_empty() {
                cx.error(&key, "the etcd store needs at least one endpoint (http://IP:2379)");
                ok = false;
            }
            let tls = raw.tls_ca.is_some() || raw.tls_cert.is_some();
            for endpoint in &endpoints {
                let scheme_ok = match endpoint.split_once("://") {
                    Some(("http", rest)) | Some(("https", rest)) => {
                        rest.parse::<SocketAddr>().is_ok() || rest.contains(':')
                    }
                    _ => false,
                };
                if !scheme_ok {
                    cx.error(&key, format!("`{endpoint}`: expected http://HOST:PORT or https://HOST:PORT"));
                    ok = false;
                } else if endpoint.starts_with("https://") != tls {
                    let problem =
                        if tls { "with TLS files every endpoint is https://" } else { "https:// needs [store] tls_ca" };
                    cx.error(&key, format!("`{endpoint}`: {problem}"));
                    ok = false;
                }
            }
            let prefix = raw.prefix.clone().unwrap_or_else(|| crate::DEFAULT_STORE_PREFIX.to_string());
            if !prefix.starts_with('/') || prefix.len() < 2 || prefix.ends_with('/') || prefix.contains("//") {
                cx.error(
                    &Key::path("store.prefix"),
                    format!("`{prefix}`: a path such as /leasehold (a leading slash, no trailing one)"),
                );
                ok = false;
            }
            let election_ttl_secs = match raw.election_ttl_secs {
                Some(secs) if !(1..=60).contains(&secs) => {
                    cx.error(&Key::path("store.election_ttl_secs"), format!("{secs}: from 1 to 60 seconds"));
                    ok = false;
                    0
                }
                Some(secs) => secs,
                None => crate::DEFAULT_ELECTION_TTL_SECS,
            };
            let request_timeout_ms = match raw.request_timeout_ms {
                Some(ms) if !(100..=60_000).contains(&ms) => {
                    cx.error(&Key::path("store.request_timeout_ms"), format!("{ms}: from 100 to 60000 ms"));
                    ok = false;
                    0
                }
                Some(ms) => ms,
                None => crate::DEFAULT_STORE_REQUEST_TIMEOUT_MS,
            };
            let ca = file_path(cx, raw.tls_ca.as_deref().map(|p| (p, Key::path("store.tls_ca"))), "etcd CA");
            let identity = (raw.tls_cert.is_some() || raw.tls_key.is_some())
                .then(|| {
                    all_or_none(
                        cx,
                        [
                            raw.tls_cert.as_deref().map(|p| (p, Key::path("store.tls_cert"))),
                            raw.tls_key.as_deref().map(|p| (p, Key::path("store.tls_key"))),
                        ],
                        ["store.tls_cert", "store.tls_key"],
                        "etcd client certificate",
                    )
                })
                .flatten();
            if identity.is_some() && ca.is_none() {
                cx.error(&Key::path("store.tls_ca"), "a client certificate needs the CA of the etcd servers too");
                ok = false;
            }
            ok.then(|| {
                Store::Etcd(EtcdStore {
                    endpoints,
                    prefix,
                    election_ttl_secs,
                    request_timeout_ms,
                    tls_ca: ca,
                    tls_identity: identity.map(|[cert, key]| (cert, key)),
                })
            })
        }
        Some((other, key)) => {
            cx.error(&key, format!("`{other}`: expected `raft` or `etcd`"));
            None
        }
    }
}

fn check_boot(cx: &mut Ctx<'_>, raw: &crate::raw::RawBoot, ov: &Overrides) -> Boot {
    let defaults = Boot::default();
    let root = overlay(ov.boot_root.as_deref(), flag::BOOT_ROOT, raw.root.as_deref(), "boot.root".into());
    let root = file_path(cx, root, "boot root");
    let tftp_listen = match &raw.tftp_listen {
        Some(text) => cx.socket_addr(&Key::path("boot.tftp_listen"), text),
        None => Some(defaults.tftp_listen),
    };
    let http_listen = match &raw.http_listen {
        Some(text) => cx.socket_addr(&Key::path("boot.http_listen"), text),
        None => Some(defaults.http_listen),
    };
    let max_tftp_transfers = match raw.max_tftp_transfers {
        Some(n) => cx.positive(&Key::path("boot.max_tftp_transfers"), n),
        None => Some(defaults.max_tftp_transfers),
    };
    let per_client = match raw.tftp_requests_per_client_per_sec {
        Some(n) => cx.positive(&Key::path("boot.tftp_requests_per_client_per_sec"), n),
        None => Some(defaults.tftp_requests_per_client_per_sec),
    };
    let digest_interval_secs = match raw.digest_interval_secs {
        Some(secs) if secs > crate::MAX_BOOT_DIGEST_INTERVAL_SECS => {
            let most = crate::MAX_BOOT_DIGEST_INTERVAL_SECS;
            cx.error(&Key::path("boot.digest_interval_secs"), format!("{secs}: at most {most} (an hour)"));
            None
        }
        Some(secs) => cx.positive(&Key::path("boot.digest_interval_secs"), secs),
        None => Some(defaults.digest_interval_secs),
    };
    let mut scripts = std::collections::BTreeMap::new();
    for (i, raw_script) in raw.script.iter().enumerate() {
        let key = |field: &str| Key::path(format!("boot.script[{i}].{field}"));
        let Some(name) = boot_name(cx, &key("name"), raw_script.name.as_deref()) else { continue };
        if name == crate::MENU_SCRIPT || scripts.contains_key(&name) {
            cx.error(&key("name"), format!("`{name}` is taken (by `menu`, or an earlier script)"));
            continue;
        }
        match raw_script.template.as_deref().map(crate::Template::parse) {
            Some(Ok(template)) => {
                scripts.insert(name, template);
            }
            Some(Err(problem)) => cx.error(&key("template"), problem),
            None => cx.error(&key("template"), "missing: the iPXE script"),
        }
    }
    let menu = raw.menu.as_ref().map(|raw_menu| {
        let mut entries: Vec<crate::MenuEntry> = Vec::new();
        for (i, entry) in raw_menu.entry.iter().enumerate() {
            let key = |field: &str| Key::path(format!("boot.menu.entry[{i}].{field}"));
            let name = boot_name(cx, &key("name"), entry.name.as_deref());
            if let Some(name) = &name {
                if entries.iter().any(|e| &e.name == name) {
                    cx.error(&key("name"), format!("`{name}` names an earlier entry too"));
                }
            }
            let script = match entry.script.as_deref().map(crate::Template::parse) {
                Some(Ok(template)) => Some(template),
                Some(Err(problem)) => {
                    cx.error(&key("script"), problem);
                    None
                }
                None => {
                    cx.error(&key("script"), "missing: the iPXE commands of this entry");
                    None
                }
            };
            if let (Some(name), Some(script)) = (name, script) {
                let label = entry.label.clone().unwrap_or_else(|| name.clone());
                entries.push(crate::MenuEntry { name, label, script });
            }
        }
        if raw_menu.entry.is_empty() {
            cx.error(&Key::path("boot.menu.entry"), "a menu needs at least one [[boot.menu.entry]]");
        }
        if let Some(default) = &raw_menu.default {
            if !entries.iter().any(|e| &e.name == default)
                && raw_menu.entry.iter().all(|e| e.name.as_ref() != Some(default))
            {
                cx.error(&Key::path("boot.menu.default"), format!("`{default}` is not the name of an entry"));
            }
        }
        crate::Menu {
            title: raw_menu.title.clone().unwrap_or_else(|| "Leasehold".into()),
            default: raw_menu.default.clone(),
            timeout_secs: raw_menu.timeout_secs.unwrap_or(10),
            entries,
        }
    });
    Boot {
        root,
        tftp_listen: tftp_listen.unwrap_or(defaults.tftp_listen),
        http_listen: http_listen.unwrap_or(defaults.http_listen),
        max_tftp_transfers: max_tftp_transfers.unwrap_or(defaults.max_tftp_transfers),
        tftp_requests_per_client_per_sec: per_client.unwrap_or(defaults.tftp_requests_per_client_per_sec),
        digest_interval_secs: digest_interval_secs.unwrap_or(defaults.digest_interval_secs),
        scripts,
        default_script: raw.default_script.clone(),
        menu,
    }
}

/// A script or menu entry name: letters, digits, `-` and `_` (it becomes an iPXE label and a query).
fn boot_name(cx: &mut Ctx<'_>, key: &Key, name: Option<&str>) -> Option<String> {
    match name {
        None => {
            cx.error(key, "missing");
            None
        }
        Some(name)
            if name.is_empty()
                || name.len() > 64
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            cx.error(key, format!("`{name}` is not a name: 1 to 64 letters, digits, `-` or `_`"));
            None
        }
        Some(name) => Some(name.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmask_accepts_dotted_and_prefix_forms() {
        let mut cx = Ctx { file: None, errors: Vec::new() };
        let key = Key::Flag(flag::SUBNET_MASK);
        assert_eq!(cx.netmask(&key, "255.255.255.0"), Some(24));
        assert_eq!(cx.netmask(&key, "255.255.0.0"), Some(16));
        assert_eq!(cx.netmask(&key, "255.255.255.255"), Some(32));
        assert_eq!(cx.netmask(&key, "0.0.0.0"), Some(0));
        assert_eq!(cx.netmask(&key, "/20"), Some(20));
        assert!(cx.errors.is_empty());
        assert_eq!(cx.netmask(&key, "255.0.255.0"), None);
        assert_eq!(cx.netmask(&key, "33"), None);
        assert_eq!(cx.errors.len(), 2);
        assert_eq!(cx.errors[0].key, "--subnet-mask");
    }

    #[test]
    fn arch_names_and_codes() {
        assert_eq!(arch_code("bios"), Some(0));
        assert_eq!(arch_code("uefi-x64"), Some(7));
        assert_eq!(arch_code("uefi-x64-alt"), Some(9));
        assert_eq!(arch_code("uefi-arm64"), Some(11));
        assert_eq!(arch_code("http-x64"), Some(16));
        assert_eq!(arch_code("16"), Some(16));
        assert_eq!(arch_code("+7"), None);
        assert_eq!(arch_code("70000"), None);
        assert_eq!(arch_code("x64"), None);
    }

    #[test]
    fn default_t1_t2_of_a_tiny_lease_are_reported_on_the_lease() {
        let mut cx = Ctx { file: None, errors: Vec::new() };
        let raw = RawPool { lease_time_secs: Some(1), ..RawPool::default() };
        check_lease_times(&mut cx, "pool[0]", &raw, &PoolFlags::default());
        assert!(!cx.errors.is_empty());
        assert!(cx.errors.iter().all(|e| e.key == "pool[0].lease_time_secs"), "{:?}", cx.errors);
        assert!(cx.errors[0].problem.contains("by default lease/2 = 0"), "{}", cx.errors[0].problem);
    }

    #[test]
    fn display_with_and_without_file() {
        let with_file = ConfigError {
            source: Some(PathBuf::from("/etc/l.toml")),
            key: "server.server_ip".into(),
            problem: "bad".into(),
        };
        assert_eq!(with_file.to_string(), "/etc/l.toml: server.server_ip: bad");
        let flag = ConfigError { source: None, key: "--ip-start".into(), problem: "bad".into() };
        assert_eq!(flag.to_string(), "--ip-start: bad");
        let whole_file =
            ConfigError { source: Some(PathBuf::from("x.toml")), key: String::new(), problem: "gone".into() };
        assert_eq!(whole_file.to_string(), "x.toml: gone");
        assert_eq!(
            ConfigErrors(vec![with_file, flag]).to_string(),
            "/etc/l.toml: server.server_ip: bad\n--ip-start: bad"
        );
    }
}
