//! The config file as written: serde types mirroring the TOML, unchecked.
//!
//! Every table denies unknown keys, and every value that needs more than a type check (addresses,
//! subnets, names from a fixed set) stays a string here, so that `check` can report *all* of those
//! problems at once, each with its key path. Only TOML syntax errors, unknown keys and plain type
//! errors (a string where a number belongs) stop at the first one, because serde stops there.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;

use crate::check::ConfigError;

/// The whole file. Every section is optional; `check` fills in the defaults.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    /// `[[interface]]` tables, in file order: one per interface the server listens on.
    #[serde(default, rename = "interface")]
    pub interfaces: Vec<RawInterface>,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub pxe: RawPxe,
    /// `[[pool]]` tables, in file order.
    #[serde(default, rename = "pool")]
    pub pools: Vec<RawPool>,
    /// `[[reservation]]` tables, in file order.
    #[serde(default, rename = "reservation")]
    pub reservations: Vec<RawReservation>,
    /// `[[option]]`: options for every client.
    #[serde(default, rename = "option")]
    pub options: Vec<RawOption>,
    /// `[[option-def]]`: options beyond the standard ones, by code, name and type.
    #[serde(default, rename = "option-def")]
    pub option_defs: Vec<RawOptionDef>,
    /// `[[class]]` tables, in file order (the first that matches a client wins).
    #[serde(default, rename = "class")]
    pub classes: Vec<RawClass>,
    #[serde(default)]
    pub cluster: RawCluster,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub boot: RawBoot,
    #[serde(default)]
    pub store: RawStore,
}

/// `[boot]`: boot files this node serves itself over TFTP.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBoot {
    /// Directory whose files are served (read-only); without it, no TFTP server runs.
    pub root: Option<String>,
    /// Where the TFTP server listens (default 0.0.0.0:69).
    pub tftp_listen: Option<String>,
    /// Where the HTTP server of the same files listens (default 0.0.0.0:80).
    pub http_listen: Option<String>,
    /// Transfers at once, across all clients.
    pub max_tftp_transfers: Option<u32>,
    /// Read requests one client address may start per second.
    pub tftp_requests_per_client_per_sec: Option<u32>,
    /// Seconds between two digests of the root (files changed since are seen at the next one).
    pub digest_interval_secs: Option<u32>,
    /// The script `GET /boot/{mac}.ipxe` renders when the request names none: a `[[boot.script]]`
    /// name, or `menu`.
    pub default_script: Option<String>,
    /// `[[boot.script]]`: named iPXE script templates.
    #[serde(default)]
    pub script: Vec<RawBootScript>,
    /// `[boot.menu]`: an iPXE menu.
    pub menu: Option<RawMenu>,
}

/// `[store]`: where the lease pool is kept.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `raft` (the embedded Raft log, the default) or `etcd`.
    pub kind: Option<String>,
    /// etcd client URLs (`http://IP:2379`, or `https://` with the TLS files).
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// The key prefix everything of this pool lives under.
    pub prefix: Option<String>,
    /// TTL of the election lease: the longest a dead answering node goes unnoticed.
    pub election_ttl_secs: Option<u32>,
    /// The longest one etcd request (a transaction, a range read) may take.
    pub request_timeout_ms: Option<u32>,
    pub tls_ca: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
}

/// `[[boot.script]]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBootScript {
    pub name: Option<String>,
    pub template: Option<String>,
}

/// `[boot.menu]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMenu {
    pub title: Option<String>,
    pub default: Option<String>,
    pub timeout_secs: Option<u32>,
    #[serde(default)]
    pub entry: Vec<RawMenuEntry>,
}

/// `[[boot.menu.entry]]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMenuEntry {
    pub name: Option<String>,
    pub label: Option<String>,
    /// iPXE commands (a template, as `[[boot.script]]`).
    pub script: Option<String>,
}

/// `[server]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub interface: Option<String>,
    pub server_ip: Option<String>,
    pub server_port: Option<u16>,
    pub client_port: Option<u16>,
    pub admin_listen: Option<String>,
    pub data_dir: Option<String>,
    pub fsync: Option<bool>,
    pub identity: Option<String>,
}

/// `[[interface]]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInterface {
    pub name: Option<String>,
    pub server_ip: Option<String>,
}

/// `[log]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
}

/// `[limits]`: the fields of `Limits`, each optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub offer_hold_ms: Option<u64>,
    pub max_offers: Option<usize>,
    pub decline_probation_secs: Option<u64>,
    pub expiry_grace_secs: Option<u64>,
    pub mailbox_capacity: Option<usize>,
    pub max_inflight_proposals: Option<usize>,
    pub proposal_timeout_ms: Option<u64>,
    pub max_frame_bytes: Option<usize>,
    pub max_leases: Option<usize>,
    pub snapshot_every_entries: Option<u64>,
    pub record_retention_secs: Option<u64>,
    pub group_commit_window_us: Option<u64>,
    pub receive_window_us: Option<u64>,
    /// Kept wide so an out-of-range percentage is reported by the checks.
    pub max_offers_per_pool_percent: Option<u64>,
    /// `[limits.rate]`
    #[serde(default)]
    pub rate: RawRateLimits,
}

/// `[limits.rate]`: token buckets against starvation and DECLINE floods. Rates are floats (a DECLINE
/// bucket refills slower than one a second); bursts and the key count are kept wide so an out-of-range
/// value is reported by the checks.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimits {
    pub mac_messages_per_sec: Option<f64>,
    pub mac_burst_messages: Option<u64>,
    pub relay_messages_per_sec: Option<f64>,
    pub relay_burst_messages: Option<u64>,
    pub circuit_messages_per_sec: Option<f64>,
    pub circuit_burst_messages: Option<u64>,
    pub decline_messages_per_sec: Option<f64>,
    pub decline_burst_messages: Option<u64>,
    pub max_tracked_keys: Option<u64>,
}

/// `[pxe]` and `[pool.pxe]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPxe {
    pub next_server: Option<String>,
    pub tftp_server: Option<String>,
    pub boot_file: Option<String>,
    pub ipxe_script_url: Option<String>,
    /// Architecture name or decimal option-93 code -> boot file.
    #[serde(default)]
    pub arch: BTreeMap<String, String>,
}

/// `[[pool]]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub name: Option<String>,
    pub subnet: Option<String>,
    pub range_start: Option<String>,
    pub range_end: Option<String>,
    #[serde(default)]
    pub routers: Vec<String>,
    #[serde(default)]
    pub dns_servers: Vec<String>,
    pub domain_name: Option<String>,
    pub lease_time_secs: Option<u32>,
    pub renewal_time_secs: Option<u32>,
    pub rebinding_time_secs: Option<u32>,
    /// Answer BOOTP clients without a reservation from this pool (RFC 1542).
    pub dynamic_bootp: Option<bool>,
    /// Lease time of a BOOTP binding; default `lease_time_secs`.
    pub bootp_lease_time_secs: Option<u32>,
    pub pxe: Option<RawPxe>,
    #[serde(default, rename = "option")]
    pub options: Vec<RawOption>,
}

/// `[[reservation]]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReservation {
    pub mac: Option<String>,
    pub client_id: Option<String>,
    pub ip: Option<String>,
    pub hostname: Option<String>,
    pub boot_file: Option<String>,
    pub next_server: Option<String>,
    pub boot_script: Option<String>,
    #[serde(default, rename = "option")]
    pub options: Vec<RawOption>,
}

/// `[[option]]`, `[[pool.option]]`, `[[class.option]]` and `[[reservation.option]]`: one option by
/// `name` or `code`, with its `data` (typed by the option's definition) or, for vendor options, its
/// `[[...suboption]]` tables.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOption {
    pub name: Option<String>,
    /// Kept wide so an out-of-range code is reported by the checks, with the others.
    pub code: Option<i64>,
    pub data: Option<toml::Value>,
    /// `false`: `data` is hex octets whatever the option's type (Kea's `csv-format`).
    pub csv_format: Option<bool>,
    /// Send even when the client's parameter request list does not ask for it.
    pub always_send: Option<bool>,
    /// Option 125: the vendor's IANA enterprise number.
    pub enterprise: Option<i64>,
    #[serde(default, rename = "suboption")]
    pub suboptions: Vec<RawSuboption>,
}

/// `[[option.suboption]]` of option 43 or 125.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSuboption {
    pub code: Option<i64>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub data: Option<toml::Value>,
}

/// `[[option-def]]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOptionDef {
    pub name: Option<String>,
    pub code: Option<i64>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// `[[class]]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClass {
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matcher: Option<RawClassMatch>,
    /// Members are served only from these pools (by name).
    pub pools: Option<Vec<String>>,
    /// Members are never served from these pools.
    #[serde(default)]
    pub forbid_pools: Vec<String>,
    pub boot_file: Option<String>,
    pub next_server: Option<String>,
    pub ipxe_script_url: Option<String>,
    pub boot_script: Option<String>,
    pub lease_time_secs: Option<u32>,
    #[serde(default, rename = "option")]
    pub options: Vec<RawOption>,
}

/// `[class.match]`: every key given must match.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClassMatch {
    /// Option 60 starts with this.
    pub vendor_class: Option<String>,
    /// Option 77 is this (bare, or one RFC 3004 user class).
    pub user_class: Option<String>,
    /// Option 93 is one of these: names (`uefi-x64`) or codes.
    pub arch: Option<toml::Value>,
    /// Option 94 (client network interface identifier, RFC 4578 §2.2) starts with these hex octets.
    pub client_interface: Option<String>,
    /// Option 82 sub-option 1; text, or `hex:` and octets.
    pub circuit_id: Option<String>,
    /// Option 82 sub-option 2; text, or `hex:` and octets.
    pub remote_id: Option<String>,
    /// giaddr is this address or inside this subnet.
    pub giaddr: Option<String>,
    /// chaddr starts with these octets (`52:54:00`).
    pub mac_prefix: Option<String>,
}

/// `[cluster]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub node_id: Option<u64>,
    pub listen: Option<String>,
    /// `"ID=HOST:PORT"` strings.
    #[serde(default)]
    pub peers: Vec<String>,
    pub tick_ms: Option<u64>,
    pub election_ticks: Option<usize>,
    pub heartbeat_ticks: Option<usize>,
    pub transfer_timeout_ms: Option<u64>,
    /// File holding the shared secret that authenticates peer traffic.
    pub secret_file: Option<String>,
    /// Join a running cluster instead of bootstrapping one (fresh data directory only).
    pub join: Option<bool>,
    /// PEM file of the cluster CA that signs every node's peer certificate (mutual TLS).
    pub tls_ca_file: Option<String>,
    /// PEM file of this node's peer certificate (signed by the cluster CA, naming this node's id).
    pub tls_cert_file: Option<String>,
    /// PEM file of the private key of `tls_cert_file`.
    pub tls_key_file: Option<String>,
}

/// `[admin]`: who may use the admin API, and whether it speaks TLS.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// File holding the bearer token that admin writes (and protected reads) must present.
    pub token_file: Option<String>,
    /// Reads need the token too.
    pub protect_reads: Option<bool>,
    /// PEM certificate (chain) of the admin listener; with `tls_key_file`, the admin API speaks HTTPS.
    pub tls_cert_file: Option<String>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<String>,
}

impl RawConfig {
    /// Parse TOML text. `source` names the file in the error; a syntax error, an unknown key or a
    /// type error comes back with the key path (`pool[1].lease_time_secs`) and the line and column.
    pub fn from_toml_str(text: &str, source: Option<&Path>) -> Result<RawConfig, ConfigError> {
        serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|err| {
            let path = err.path().to_string();
            let inner = err.into_inner();
            let position = inner.span().map(|span| line_column(text, span));
            // One error per line: fold toml's multi-line messages ("invalid table header\nexpected ...").
            let problem = match inner.message().trim_end() {
                "" => unexplained_syntax_error(text, inner.span()),
                message => message.replace('\n', "; "),
            };
            // A syntax error happens before any key is entered: name the position instead.
            let (key, problem) = match (path.as_str(), position) {
                (".", Some((line, column))) => (format!("line {line}, column {column}"), problem),
                (".", None) => (String::new(), problem),
                (_, Some((line, column))) => (path, format!("{problem} (line {line}, column {column})")),
                (_, None) => (path, problem),
            };
            ConfigError { source: source.map(Path::to_path_buf), key, problem }
        })
    }
}

/// toml 0.8 leaves some syntax errors without a message (a control character in a comment, for
/// one): say what is at the position instead, so no error reads as nothing.
fn unexplained_syntax_error(text: &str, span: Option<Range<usize>>) -> String {
    let Some(start) = span.map(|span| span.start) else {
        return "not valid TOML".to_string();
    };
    match text.get(start..).map(|rest| rest.chars().next()) {
        Some(Some(c)) if c.is_control() => format!("the control character U+{:04X} is not allowed here", u32::from(c)),
        Some(Some(c)) => format!("`{}` is not valid TOML here", c.escape_debug()),
        Some(None) => "the file ends where TOML expects more".to_string(),
        None => "not valid TOML".to_string(),
    }
}

/// 1-based line and column (in characters) of the start of `span` in `text`.
fn line_column(text: &str, span: Range<usize>) -> (usize, usize) {
    let start = span.start.min(text.len());
    let before = text.get(..start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_text_is_an_empty_config() {
        let raw = RawConfig::from_toml_str("", None).expect("empty TOML is a valid, empty config");
        assert!(raw.pools.is_empty());
        assert!(raw.server.server_ip.is_none());
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("abc", 0..1), (1, 1));
        assert_eq!(line_column("a\nbc", 3..4), (2, 2));
        assert_eq!(line_column("a\n", 99..100), (2, 1));
    }

    #[test]
    fn unknown_key_in_array_table_has_indexed_path() {
        let text = "[[pool]]\nname = \"a\"\n[[pool]]\nnmae = \"b\"\n";
        let err = RawConfig::from_toml_str(text, Some(Path::new("x.toml"))).unwrap_err();
        assert_eq!(err.key, "pool[1].nmae");
        assert!(err.problem.contains("unknown field `nmae`"), "{}", err.problem);
        assert!(err.problem.contains("line 4, column 1"), "{}", err.problem);
        assert_eq!(err.source.as_deref(), Some(Path::new("x.toml")));
    }

    #[test]
    fn type_error_names_the_key() {
        let err = RawConfig::from_toml_str("[server]\nserver_port = \"67\"\n", None).unwrap_err();
        assert_eq!(err.key, "server.server_port");
        assert!(err.problem.contains("expected u16"), "{}", err.problem);
        assert!(err.problem.contains("line 2"), "{}", err.problem);
    }

    /// Found by the `config_toml` fuzz target: toml gives this error an empty message, and the
    /// config error said nothing but its position.
    #[test]
    fn a_control_character_in_a_comment_is_named() {
        let err =
            RawConfig::from_toml_str("[server]\n# a comment \u{17} with a control character\n", None).unwrap_err();
        assert_eq!(err.key, "line 2, column 13");
        assert_eq!(err.problem, "the control character U+0017 is not allowed here");
    }

    #[test]
    fn syntax_error_names_the_position() {
        let err = RawConfig::from_toml_str("[server]\nserver_ip = \n", None).unwrap_err();
        assert_eq!(err.key, "line 2, column 13");
        assert!(!err.problem.is_empty());
    }
}
