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
    #[serde(default)]
    pub cluster: RawCluster,
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
    pub pxe: Option<RawPxe>,
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
    /// File holding the shared secret that authenticates peer traffic.
    pub secret_file: Option<String>,
    /// Join a running cluster instead of bootstrapping one (fresh data directory only).
    pub join: Option<bool>,
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
            let problem = inner.message().trim_end().replace('\n', "; ");
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

    #[test]
    fn syntax_error_names_the_position() {
        let err = RawConfig::from_toml_str("[server]\nserver_ip = \n", None).unwrap_err();
        assert_eq!(err.key, "line 2, column 13");
        assert!(!err.problem.is_empty());
    }
}
