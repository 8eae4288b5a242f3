//! Leasehold's configuration: the TOML schema (`raw`), the command-line overlay (`Overrides`) and the
//! checked `Config` every other crate reads. Parse, don't validate: nothing outside this crate ever
//! sees an unchecked value, and every problem is reported with the file and the key path it came from.

mod check;
pub mod options;
mod raw;
pub mod shared;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

pub use check::{
    arch_code, flag, is_http_boot_arch, is_url, ConfigError, ConfigErrors, ARCH_NAMES, MAX_BOOT_FILE_BYTES,
    MIN_FRAME_BYTES,
};
pub use options::{DhcpOption, OptionSet};
pub use raw::RawConfig;

/// The commented example config file: every key documented, and a working single-node demo.
pub const EXAMPLE_TOML: &str = include_str!("../leasehold.example.toml");

/// Which bytes identify a client in the lease table (RFC 2131 §4.2 allows either).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIdentity {
    /// `chaddr`: the default. A PXE ROM, iPXE and the installed OS send different client
    /// identifiers (option 61), so keying on option 61 hands one machine several addresses.
    Mac,
    /// Option 61 when the client sends it, `chaddr` otherwise.
    ClientId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Term,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warning,
    Info,
    Debug,
    Trace,
}

/// An IPv4 subnet: a network address and a prefix length, host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix_len: u8,
}

impl Subnet {
    pub fn mask(&self) -> Ipv4Addr {
        let bits = if self.prefix_len == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix_len)) };
        Ipv4Addr::from(bits)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & u32::from(self.mask()) == u32::from(self.network)
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !u32::from(self.mask()))
    }
}

/// One address pool on one subnet, with the options handed to its clients.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// Unique name, used in metrics labels and logs.
    pub name: String,
    pub subnet: Subnet,
    /// First and last address handed out, inclusive; both inside `subnet`, `range_start <= range_end`.
    pub range_start: Ipv4Addr,
    pub range_end: Ipv4Addr,
    /// Option 3.
    pub routers: Vec<Ipv4Addr>,
    /// Option 6.
    pub dns_servers: Vec<Ipv4Addr>,
    /// Option 15.
    pub domain_name: Option<String>,
    /// Option 51.
    pub lease_time_secs: u32,
    /// Option 58; defaults to half the lease time (RFC 2131 §4.4.5).
    pub renewal_time_secs: u32,
    /// Option 59; defaults to 7/8 of the lease time.
    pub rebinding_time_secs: u32,
    /// PXE settings for this pool; `None` uses the top-level `[pxe]`.
    pub pxe: Option<Pxe>,
    /// BOOTP clients without a reservation get an address from this pool (RFC 1542).
    pub dynamic_bootp: bool,
    /// Lease time of BOOTP bindings.
    pub bootp_lease_time_secs: u32,
    /// `[[pool.option]]`: options for this pool's clients.
    pub options: OptionSet,
}

impl Pool {
    pub fn size(&self) -> u32 {
        u32::from(self.range_end) - u32::from(self.range_start) + 1
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(self.range_start)..=u32::from(self.range_end)).contains(&u32::from(ip))
    }
}

/// Client system architecture, option 93 (RFC 4578 §2.1, IANA "Processor Architecture Types").
pub type ArchCode = u16;

/// Network boot settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pxe {
    /// `siaddr` (the "next server", RFC 2131 §2) in every OFFER and ACK, whatever the client; without
    /// it, `tftp_server` is the `siaddr` of network-boot clients only.
    pub next_server: Option<Ipv4Addr>,
    /// Option 66, and `siaddr` of network-boot clients when `next_server` is not set.
    pub tftp_server: Option<Ipv4Addr>,
    /// `file` and option 67 when no architecture entry matches.
    pub boot_file: Option<String>,
    /// Boot file per option-93 architecture code (0 BIOS, 7/9 x64 UEFI, 11 ARM64 UEFI, 16 x64 HTTP …);
    /// for the UEFI HTTP boot architectures (`is_http_boot_arch`) it is an `http://` or `https://` URL.
    pub arch_boot_files: BTreeMap<ArchCode, String>,
    /// Handed (as boot file) to clients whose user class (option 77) is `iPXE`, so iPXE does not
    /// chainload itself forever: usually an `http://…` script URL.
    pub ipxe_script_url: Option<String>,
}

/// A fixed address for one client, by MAC or client identifier (exactly one of them).
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    pub mac: Option<[u8; 6]>,
    pub client_id: Option<Vec<u8>>,
    pub ip: Ipv4Addr,
    pub hostname: Option<String>,
    pub boot_file: Option<String>,
    /// `siaddr` for this client (BOOTP hosts read only the header).
    pub next_server: Option<Ipv4Addr>,
    /// The `[[boot.script]]` (or `menu`) `GET /boot/{mac}.ipxe` renders for this client.
    pub boot_script: Option<String>,
    /// `[[reservation.option]]`: this client's own options, which win over every other scope.
    pub options: OptionSet,
}

/// What a `[[class]]` matches on; every field given must match (RFC numbers per field).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClassMatch {
    /// Option 60 starts with these bytes.
    pub vendor_class_prefix: Option<Vec<u8>>,
    /// Option 77 is this user class (bare, or as one RFC 3004 class).
    pub user_class: Option<Vec<u8>>,
    /// Option 93 is one of these (empty: any).
    pub arch: Vec<ArchCode>,
    /// Option 94 starts with these bytes.
    pub client_interface_prefix: Option<Vec<u8>>,
    /// Option 82 sub-option 1 is these bytes.
    pub circuit_id: Option<Vec<u8>>,
    /// Option 82 sub-option 2 is these bytes.
    pub remote_id: Option<Vec<u8>>,
    /// giaddr lies in this subnet (a /32 for one relay address).
    pub giaddr: Option<Subnet>,
    /// chaddr starts with these bytes.
    pub mac_prefix: Option<Vec<u8>>,
}

/// A client class: who belongs to it, and what its members get. The first class in config order
/// whose `matcher` matches a request is the client's class.
#[derive(Debug, Clone, PartialEq)]
pub struct Class {
    pub name: String,
    pub matcher: ClassMatch,
    /// Members are served only from these pools (indexes into `Config::pools`); `None`: any.
    pub pools: Option<Vec<usize>>,
    /// Members are never served from these pools.
    pub forbid_pools: Vec<usize>,
    /// Boot file for members, in place of the one chosen by architecture (a reservation's still wins).
    pub boot_file: Option<String>,
    pub next_server: Option<Ipv4Addr>,
    pub ipxe_script_url: Option<String>,
    /// The `[[boot.script]]` (or `menu`) `GET /boot/{mac}.ipxe` renders for members (a
    /// reservation's wins).
    pub boot_script: Option<String>,
    /// Lease time for members; T1 and T2 are then half and 7/8 of it.
    pub lease_time_secs: Option<u32>,
    /// `[[class.option]]`: win over pool and global options.
    pub options: OptionSet,
}

/// Named limits: every queue, table and hold time is bounded.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// How long an OFFER holds its address for the client in memory (no Raft write).
    pub offer_hold_ms: u64,
    /// At most this many outstanding offers; the oldest is dropped first.
    pub max_offers: usize,
    /// How long a DECLINEd address stays out of the pool.
    pub decline_probation_secs: u64,
    /// An expired lease is reusable only this long after its expiry (covers clock skew between nodes).
    pub expiry_grace_secs: u64,
    /// Capacity of each actor mailbox on the packet path; overflow is dropped and counted.
    pub mailbox_capacity: usize,
    /// Proposals waiting for commit at most; more are dropped (the client retransmits).
    pub max_inflight_proposals: usize,
    /// A proposal not committed within this time is forgotten (no ACK is sent for it).
    pub proposal_timeout_ms: u64,
    /// Largest datagram accepted or sent.
    pub max_frame_bytes: usize,
    /// Leases (bound, released or declined records) the table may hold.
    pub max_leases: usize,
    /// Take a snapshot and compact the Raft log after this many applied entries.
    pub snapshot_every_entries: u64,
    /// An expired, released or declined record is forgotten this long after it became reusable
    /// (until then a returning client gets its old address back first).
    pub record_retention_secs: u64,
    /// Group commit: proposals go to the Raft log at most once per this window (the first after a
    /// quiet spell at once), so under load one log write and one fsync carry more bindings. 0: every
    /// mailbox drain flushes.
    pub group_commit_window_us: u64,
    /// Receive pacing: while datagrams come faster than one per this window, each DHCP socket is read
    /// once per window (everything that came meanwhile in one wake-up of the DHCP thread) instead of
    /// at each datagram; after a quiet spell the first is read at once. 0: read every datagram as it
    /// comes.
    pub receive_window_us: u64,
    /// Offers to new clients (no record in the table, no reservation) a pool holds at once, as a
    /// percentage of its size; a new client's offer beyond it displaces the pool's oldest such offer,
    /// so a DISCOVER flood never holds more of the pool than this.
    pub max_offers_per_pool_percent: u32,
    /// `[limits.rate]`: token buckets against starvation and DECLINE floods.
    pub rate: RateLimits,
}

/// A token bucket: it refills `per_sec` tokens a second up to `burst`; each message spends one, and a
/// message that finds it empty is left unanswered (and counted).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    pub per_sec: f64,
    pub burst: u32,
}

/// Token buckets of the answering node, in memory (never replicated): who may make the pool hand out
/// an address (DISCOVERs, and REQUESTs or BOOTREQUESTs for an address neither offered to nor bound to
/// the client), and who may quarantine one (DECLINEs). A renewal of the client's own binding spends
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Per client hardware address (`chaddr`).
    pub mac: TokenBucket,
    /// Per relay agent (`giaddr`), for clients without a record in the table.
    pub relay: TokenBucket,
    /// Per relay circuit: `giaddr` with option 82's circuit id and remote id (RFC 3046 §2.1, §2.2),
    /// for clients without a record in the table.
    pub circuit: TokenBucket,
    /// DECLINEs per client hardware address.
    pub decline: TokenBucket,
    /// Keys each kind of bucket tracks at most; the least recently used is forgotten first.
    pub max_tracked_keys: usize,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            mac: TokenBucket { per_sec: 2.0, burst: 20 },
            relay: TokenBucket { per_sec: 1_000.0, burst: 2_000 },
            circuit: TokenBucket { per_sec: 10.0, burst: 30 },
            // RFC 2131 §3.1 step 5: a client waits at least 10 s after a DECLINE before it asks again.
            decline: TokenBucket { per_sec: 0.1, burst: 3 },
            max_tracked_keys: 65_536,
        }
    }
}

/// The range of a token bucket's `*_messages_per_sec`.
pub const MIN_MESSAGES_PER_SEC: f64 = 0.001;
pub const MAX_MESSAGES_PER_SEC: f64 = 1_000_000.0;
/// The largest `*_burst_messages`.
pub const MAX_BURST_MESSAGES: u64 = 1_000_000;
/// The largest `limits.rate.max_tracked_keys`.
pub const MAX_TRACKED_KEYS: u64 = 10_000_000;

/// The longest group commit window a config may ask for (it delays ACKs by up to that much).
pub const MAX_GROUP_COMMIT_WINDOW_US: u64 = 100_000;

/// The longest receive window (`limits.receive_window_us`): every reply may wait this long.
pub const MAX_RECEIVE_WINDOW_US: u64 = 10_000;

/// The most addresses one pool's range holds, a /8: the engine indexes every address of a pool (9
/// bytes each) when it starts, so a larger range would cost gigabytes before the first packet.
pub const MAX_POOL_ADDRESSES: u64 = 1 << 24;

/// The longest duration a `[limits]` key may give, ten years: the code counts seconds in
/// milliseconds and milliseconds in microseconds, and within this bound every conversion is exact.
pub const MAX_LIMIT_SECS: u64 = 10 * 365 * 24 * 3600;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            offer_hold_ms: 10_000,
            max_offers: 65_536,
            decline_probation_secs: 15 * 60,
            expiry_grace_secs: 30,
            mailbox_capacity: 4_096,
            max_inflight_proposals: 16_384,
            proposal_timeout_ms: 5_000,
            max_frame_bytes: 1_500,
            max_leases: 1_000_000,
            snapshot_every_entries: 100_000,
            record_retention_secs: 86_400,
            group_commit_window_us: 10_000,
            receive_window_us: 1_000,
            max_offers_per_pool_percent: 50,
            rate: RateLimits::default(),
        }
    }
}

/// One interface the DHCP server listens on, with this node's own address there: the server
/// identifier (option 54) of the clients it serves directly, and of relayed clients whose requests
/// arrive through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Bound with SO_BINDTODEVICE; `None` (one interface only) listens on all.
    pub name: Option<String>,
    pub server_ip: Ipv4Addr,
}

/// Raft membership of this node (a single node is a cluster of one).
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub node_id: u64,
    /// The initial voters, this node included; empty means a cluster of one.
    pub peers: BTreeMap<u64, SocketAddr>,
    pub listen: Option<SocketAddr>,
    /// Raft tick interval; election timeout is `election_ticks` of these.
    pub tick_ms: u64,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// How long a leadership transfer (SIGTERM on the leader, `cluster transfer-leader`) waits for
    /// another leader to take over before it gives up (and, on SIGTERM, the node exits anyway).
    pub transfer_timeout_ms: u64,
    /// File with the shared secret (at least 16 bytes) that authenticates every peer frame; required
    /// when there is more than one voter. Read at start, not while checking the config.
    pub secret_file: Option<PathBuf>,
    /// With an empty data directory, join a running cluster (added with `cluster add-node`) instead
    /// of bootstrapping a new one from `peers`.
    pub join: bool,
    /// Mutual TLS on the peer links: `None` without it. With it and no `secret_file`, TLS alone
    /// authenticates the peers (each certificate names its node id).
    pub tls: Option<PeerTlsFiles>,
}

/// The files of mutual TLS between peers, read (and their certificates checked) at start, not while
/// checking the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTlsFiles {
    /// The cluster CA's certificate (PEM): the only issuer a peer's certificate is accepted from.
    pub ca_file: PathBuf,
    /// This node's certificate (PEM), signed by the CA, naming this node's id.
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
}

/// A certificate and its key (PEM files), read at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// `[admin]`: access to the admin API.
///
/// Writes (every method but GET and HEAD) need `Authorization: Bearer <token>` with the token of
/// `token_file`: without the header 401, with another token 403. Without a token file, writes are
/// accepted only when the admin API listens on a loopback address (where only this host's users
/// reach it) and refused with 403 and the reason otherwise. Reads need the token only with
/// `protect_reads` (which needs a token file); `GET /healthz` never does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Admin {
    /// The bearer token's file; read at start.
    pub token_file: Option<PathBuf>,
    pub protect_reads: bool,
    /// HTTPS on the admin listener.
    pub tls: Option<TlsFiles>,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            node_id: 1,
            peers: BTreeMap::new(),
            listen: None,
            tick_ms: 50,
            election_ticks: 10,
            heartbeat_ticks: 2,
            transfer_timeout_ms: 2_000,
            secret_file: None,
            join: false,
            tls: None,
        }
    }
}

/// The checked configuration of one node.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The interfaces port 67 is opened on, never empty: `[server] interface` and `server_ip`, or
    /// the `[[interface]]` tables. Several interfaces all have names.
    pub interfaces: Vec<Interface>,
    /// This node's main server identifier (option 54): the first interface's; never inside a pool.
    pub server_ip: Ipv4Addr,
    /// UDP port for DHCP server traffic; 67 except in tests.
    pub server_port: u16,
    /// UDP port replies go to; 68 except in tests.
    pub client_port: u16,
    pub admin_listen: SocketAddr,
    pub data_dir: PathBuf,
    /// fsync every Raft log write (on by default; off only for benchmarks).
    pub fsync: bool,
    pub log_format: LogFormat,
    pub log_level: LogLevel,
    pub identity: ClientIdentity,
    pub pools: Vec<Pool>,
    pub pxe: Pxe,
    pub reservations: Vec<Reservation>,
    /// `[[option]]`: options for every client (the least specific scope).
    pub options: OptionSet,
    pub classes: Vec<Class>,
    pub limits: Limits,
    pub cluster: Cluster,
    pub admin: Admin,
    pub boot: Boot,
    pub store: Store,
}

/// `[store]`: where the lease pool is kept (a restart-only setting).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Store {
    /// The embedded Raft log in `data_dir`, replicated to `[cluster]` peers.
    #[default]
    Raft,
    /// An external etcd cluster: every binding is one etcd transaction.
    Etcd(EtcdStore),
}

/// `[store] kind = "etcd"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdStore {
    /// Client URLs, never empty.
    pub endpoints: Vec<String>,
    /// Key prefix without a trailing slash, e.g. `/leasehold`.
    pub prefix: String,
    pub election_ttl_secs: u32,
    pub request_timeout_ms: u32,
    /// CA, certificate and key: the CA alone checks the server; with the pair the client proves itself.
    pub tls_ca: Option<PathBuf>,
    pub tls_identity: Option<(PathBuf, PathBuf)>,
}

/// `[store] election_ttl_secs` when unset: a dead answering node is replaced within about this.
pub const DEFAULT_ELECTION_TTL_SECS: u32 = 2;
/// `[store] request_timeout_ms` when unset.
pub const DEFAULT_STORE_REQUEST_TIMEOUT_MS: u32 = 2_000;
/// `[store] prefix` when unset.
pub const DEFAULT_STORE_PREFIX: &str = "/leasehold";

/// `[boot]`: the boot files this node serves itself. With a `root`, every node serves it read-only
/// over TFTP and HTTP, and replies that name no TFTP server (`[pxe] tftp_server`, `next_server`) name the
/// answering node's own address, so a machine boots from the node that gave it its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boot {
    pub root: Option<PathBuf>,
    pub tftp_listen: SocketAddr,
    /// The same files over HTTP (UEFI HTTP boot, iPXE), apart from the admin API.
    pub http_listen: SocketAddr,
    pub max_tftp_transfers: u32,
    pub tftp_requests_per_client_per_sec: u32,
    /// Seconds between two digests of the root: each node reports its digest to the leader, which
    /// flags a member whose files differ from its own.
    pub digest_interval_secs: u32,
    /// Named iPXE script templates (`GET /boot/{mac}.ipxe?script=NAME`).
    pub scripts: BTreeMap<String, Template>,
    /// What `GET /boot/{mac}.ipxe` renders without `?script=`: a script name or `menu`.
    pub default_script: Option<String>,
    pub menu: Option<Menu>,
}

/// The name that renders `[boot.menu]` (not a `[[boot.script]]` name).
pub const MENU_SCRIPT: &str = "menu";

/// An iPXE script template: text with `{{mac}}`, `{{ip}}`, `{{hostname}}`, `{{server}}`, `{{arch}}`,
/// `{{class}}` and `{{boot_file}}`, the machine's values when rendered (iPXE's own `${...}` settings
/// pass through untouched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(pub Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Var(TemplateVar),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateVar {
    Mac,
    Ip,
    Hostname,
    Server,
    /// RFC 4578 option 93 of the machine's last boot request, in decimal.
    Arch,
    /// The name of the machine's class (the first `[[class]]` its last boot request matched).
    Class,
    /// Its reservation's boot file, else its class's.
    BootFile,
}

impl TemplateVar {
    pub const ALL: [(&'static str, TemplateVar); 7] = [
        ("mac", TemplateVar::Mac),
        ("ip", TemplateVar::Ip),
        ("hostname", TemplateVar::Hostname),
        ("server", TemplateVar::Server),
        ("arch", TemplateVar::Arch),
        ("class", TemplateVar::Class),
        ("boot_file", TemplateVar::BootFile),
    ];
}

impl Template {
    /// Parse `text`: an error names the first `{{...}}` that is not a known variable, or an
    /// unclosed `{{`.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("`{{{{` at byte {} is never closed", text.len() - rest.len() + open))?;
            let name = after[..close].trim();
            let var = TemplateVar::ALL.iter().find(|(n, _)| *n == name).map(|(_, v)| *v).ok_or_else(|| {
                let known: Vec<String> = TemplateVar::ALL.iter().map(|(n, _)| format!("{{{{{n}}}}}")).collect();
                format!("unknown variable `{{{{{name}}}}}`; known: {}", known.join(", "))
            })?;
            pieces.push(Piece::Var(var));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Template(pieces))
    }
}

/// `[boot.menu]`, rendered as an iPXE `menu` / `item` / `choose`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Menu {
    pub title: String,
    /// The entry chosen when the timeout passes (the first entry when not given).
    pub default: Option<String>,
    pub timeout_secs: u32,
    pub entries: Vec<MenuEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuEntry {
    pub name: String,
    pub label: String,
    pub script: Template,
}

/// Seconds between two digests of the boot root, by default.
pub const DEFAULT_BOOT_DIGEST_INTERVAL_SECS: u32 = 10;
/// At most this many seconds between two digests of the boot root (an hour).
pub const MAX_BOOT_DIGEST_INTERVAL_SECS: u32 = 3_600;

/// The standard TFTP port (RFC 1350).
pub const DEFAULT_TFTP_PORT: u16 = 69;

impl Boot {
    /// Is `name` a script `boot/{mac}.ipxe` can render: a `[[boot.script]]`, or `menu` with a menu?
    pub fn has_script(&self, name: &str) -> bool {
        self.scripts.contains_key(name) || (name == MENU_SCRIPT && self.menu.is_some())
    }
}

impl Default for Boot {
    fn default() -> Self {
        Boot {
            root: None,
            tftp_listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_TFTP_PORT)),
            http_listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 80)),
            max_tftp_transfers: 64,
            tftp_requests_per_client_per_sec: 20,
            digest_interval_secs: DEFAULT_BOOT_DIGEST_INTERVAL_SECS,
            scripts: BTreeMap::new(),
            default_script: None,
            menu: None,
        }
    }
}

/// Command-line flags that override the file (every field optional; `None` keeps the file's value).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub interface: Option<String>,
    pub server_ip: Option<String>,
    pub ip_start: Option<String>,
    pub ip_end: Option<String>,
    pub subnet_mask: Option<String>,
    pub router: Option<String>,
    pub dns: Vec<String>,
    pub lease_time_secs: Option<u32>,
    pub tftp_server: Option<String>,
    pub bootfile: Option<String>,
    pub data_dir: Option<String>,
    pub admin_listen: Option<String>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
    pub no_fsync: bool,
    pub node_id: Option<u64>,
    pub peers: Vec<String>,
    pub cluster_listen: Option<String>,
    pub cluster_secret_file: Option<String>,
    pub join: bool,
    pub cluster_tls_ca: Option<String>,
    pub cluster_tls_cert: Option<String>,
    pub cluster_tls_key: Option<String>,
    pub admin_token_file: Option<String>,
    pub admin_tls_cert: Option<String>,
    pub admin_tls_key: Option<String>,
    pub boot_root: Option<String>,
    pub store: Option<String>,
    pub etcd_endpoints: Vec<String>,
}

impl Config {
    /// Read `file` (if any), lay `overrides` over it and check the result.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigErrors> {
        check::load(file, overrides)
    }

    /// Check TOML text as if read from the file `source_name` (used in error messages), no flags.
    pub fn from_toml_str(text: &str, source_name: impl AsRef<Path>) -> Result<Config, ConfigErrors> {
        check::load_str(text, Some(source_name.as_ref()), &Overrides::default())
    }

    /// Check TOML text as if read from `source_name`, with `overrides` laid over it.
    pub fn from_toml_str_with_overrides(
        text: &str,
        source_name: impl AsRef<Path>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigErrors> {
        check::load_str(text, Some(source_name.as_ref()), overrides)
    }

    /// The configuration of `EXAMPLE_TOML`: a single-node demo on 192.168.77.0/24.
    pub fn demo() -> Config {
        Config::from_toml_str(EXAMPLE_TOML, "leasehold.example.toml")
            .expect("the bundled example config loads cleanly (checked by the config crate's tests)")
    }

    /// Is `ip` one of this node's own server addresses (an interface's `server_ip`)?
    pub fn is_own_address(&self, ip: Ipv4Addr) -> bool {
        self.interfaces.iter().any(|interface| interface.server_ip == ip)
    }

    /// The pool that serves a client on `network_hint` (the relay's giaddr, or this server's own
    /// address for directly attached clients): the first pool whose subnet contains it.
    pub fn pool_for(&self, network_hint: Ipv4Addr) -> Option<&Pool> {
        self.pools.iter().find(|p| p.subnet.contains(network_hint))
    }
}
