//! The part of a config file that every node of an etcd-store cluster shares through the
//! `<prefix>/config` key: the top-level tables that decide how clients are served and that a running
//! node can take live (pools, reservations, options, option definitions, classes, PXE). Each node's
//! own file keeps the rest (sockets, admin, cluster, store, boot files, limits, log). The config a
//! node runs is its file with the shared tables replaced by the stored document's.

use std::path::Path;

use crate::check::{ConfigError, ConfigErrors};
use crate::raw::RawConfig;

/// The top-level keys of the shared document, as they are spelled in a config file.
pub const SHARED_TABLES: [&str; 6] = ["pool", "reservation", "option", "option-def", "class", "pxe"];

/// Parse `text` as a TOML table, with the schema's error message for a syntax error.
fn table(text: &str, source: Option<&Path>) -> Result<toml::Table, ConfigErrors> {
    text.parse::<toml::Table>().map_err(|syntax| {
        // The schema parser names the line and column; fall back to toml's words.
        let error = RawConfig::from_toml_str(text, source).err().unwrap_or(ConfigError {
            source: source.map(Path::to_path_buf),
            key: String::new(),
            problem: syntax.message().replace('\n', "; "),
        });
        ConfigErrors(vec![error])
    })
}

fn render(table: &toml::Table, source: Option<&Path>) -> Result<String, ConfigErrors> {
    toml::to_string(table).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            source: source.map(Path::to_path_buf),
            key: String::new(),
            problem: format!("cannot write the shared tables as TOML: {e}"),
        }])
    })
}

/// The shared tables of a whole config file `text`, as a TOML document (empty when it has none).
pub fn shared_part(text: &str, source: Option<&Path>) -> Result<String, ConfigErrors> {
    let mut whole = table(text, source)?;
    whole.retain(|key, _| SHARED_TABLES.contains(&key));
    render(&whole, source)
}

/// `node_text` (a node's file, `node_source`) with its shared tables replaced by those of the shared
/// document `shared_text` (`shared_source`, e.g. `etcd:/leasehold/config`). A shared document with
/// any other top-level key is refused, by key: what is not shared belongs in each node's file.
pub fn with_shared(
    node_text: &str,
    node_source: Option<&Path>,
    shared_text: &str,
    shared_source: &Path,
) -> Result<String, ConfigErrors> {
    let shared = table(shared_text, Some(shared_source))?;
    let foreign: Vec<ConfigError> = shared
        .keys()
        .filter(|key| !SHARED_TABLES.contains(&key.as_str()))
        .map(|key| ConfigError {
            source: Some(shared_source.to_path_buf()),
            key: key.clone(),
            problem: format!(
                "not a shared key: the shared config holds only {}; this one belongs in each node's file",
                SHARED_TABLES.join(", ")
            ),
        })
        .collect();
    if !foreign.is_empty() {
        return Err(ConfigErrors(foreign));
    }
    let mut merged = table(node_text, node_source)?;
    merged.retain(|key, _| !SHARED_TABLES.contains(&key));
    merged.extend(shared);
    render(&merged, node_source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    const NODE: &str = r#"
[server]
server_ip = "10.0.0.2"

[store]
kind = "etcd"
endpoints = ["http://10.0.0.1:2379"]

[[pool]]
name = "old"
subnet = "10.0.0.0/24"
range_start = "10.0.0.10"
range_end = "10.0.0.20"
"#;

    const SHARED: &str = r#"
[[pool]]
name = "new"
subnet = "10.0.0.0/24"
range_start = "10.0.0.100"
range_end = "10.0.0.200"
lease_time_secs = 900

[[option]]
name = "domain-name"
data = "shared.example"
"#;

    #[test]
    fn the_shared_part_keeps_only_the_shared_tables() {
        let part = shared_part(NODE, None).expect("a file's shared part");
        let table: toml::Table = part.parse().expect("TOML");
        assert_eq!(table.keys().collect::<Vec<_>>(), ["pool"], "{part}");
    }

    #[test]
    fn a_node_runs_its_own_file_with_the_shared_tables_of_the_store() {
        let merged = with_shared(NODE, None, SHARED, Path::new("etcd:/lh/config")).expect("merged");
        let config = Config::from_toml_str(&merged, "node.toml").expect("the merged config checks");
        assert_eq!(config.server_ip.to_string(), "10.0.0.2", "the node's own keys stay");
        assert_eq!(config.pools.len(), 1);
        assert_eq!(config.pools[0].name, "new", "the stored pools replace the file's");
        assert_eq!(config.pools[0].lease_time_secs, 900);
        // A node's own shared part merged back gives the file's config.
        let own = shared_part(NODE, None).expect("shared part");
        let again = with_shared(NODE, None, &own, Path::new("etcd:/lh/config")).expect("merged");
        let config = Config::from_toml_str(&again, "node.toml").expect("checks");
        assert_eq!(config.pools[0].name, "old");
    }

    #[test]
    fn a_shared_document_with_a_node_key_is_refused_by_key() {
        let bad = format!("{SHARED}\n[server]\nserver_ip = \"10.0.0.9\"\n");
        let errors = with_shared(NODE, None, &bad, Path::new("etcd:/lh/config")).expect_err("refused");
        let text = errors.to_string();
        assert!(
            text.contains("etcd:/lh/config") && text.contains("server") && text.contains("not a shared key"),
            "{text}"
        );
    }

    #[test]
    fn a_shared_document_that_is_not_toml_names_its_source() {
        let errors = with_shared(NODE, None, "[[pool]\nname =", Path::new("etcd:/lh/config")).expect_err("refused");
        assert!(errors.to_string().starts_with("etcd:/lh/config"), "{errors}");
    }
}
