//! The monitoring kit in packaging/monitoring (issue 12, "Observability") against a real 3-node
//! cluster on a namespace segment: every metric the Grafana dashboard and the Prometheus alert rules
//! name is one the nodes export, and the on-call metrics carry values that mean something — the
//! leader's fsync histogram counts the bindings a real client's DORA made durable, it sees both
//! followers reachable and their lag, its peer links count messages, and every node shows the same
//! config digest.

mod netns_support;

use std::collections::BTreeSet;
use std::time::Duration;

use leasehold_tests::{format_mac, test_mac, ClientConfig, ClientOptions, RetryPolicy, TestClient};
use netns_support::cluster::Cluster;
use netns_support::*;

/// `leasehold_…` names in `text`, without a histogram's `_bucket`/`_sum`/`_count`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(found) = text[at..].find("leasehold_") {
        let start = at + found;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let name = &text[start..end];
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        names.insert(base.to_string());
        at = end;
    }
    names
}

/// The families a node exports (`# TYPE name kind` lines).
fn exported(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn dashboard_and_alert_rules_name_only_exported_metrics_with_live_values() {
    let segment = Segment::up(3, 1, 24);
    let dir = scratch_dir("monitoring");
    let cluster = Cluster::start(&segment, dir.path());
    let (leader, _) = cluster.wait_for_leader(&[1, 2, 3], Duration::from_secs(20), "a leader");

    // A real exchange, so commit and fsync have something to count.
    let mut client =
        TestClient::bind(ClientConfig::in_namespace(&segment.client(1), "eth0")).expect("open the test client");
    let lease = client
        .dora_with(test_mac(0x42), &ClientOptions::default(), &RetryPolicy::default(), Duration::from_secs(10))
        .expect("a DORA");
    cluster.wait_bound_everywhere(&[1, 2, 3], lease.ack.yiaddr, &format_mac(test_mac(0x42)), "bound everywhere");

    let metrics = cluster.server(leader).metrics();
    let families = exported(&metrics);
    let root = workspace_root().join("packaging/monitoring");
    let dashboard = std::fs::read_to_string(root.join("leasehold-dashboard.json")).expect("read the dashboard");
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let exprs: Vec<String> = json["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect();
    assert!(exprs.len() >= 10, "the dashboard has its panels: {}", exprs.len());
    let alerts = std::fs::read_to_string(root.join("leasehold-alerts.yml")).expect("read the alert rules");
    let rules: Vec<&str> = alerts.lines().filter_map(|l| l.trim().strip_prefix("expr: ")).collect();
    let names: Vec<&str> = alerts.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert_eq!(rules.len(), names.len(), "one expr per alert");
    for (what, text) in [("dashboard", exprs.join("\n")), ("alert rules", rules.join("\n"))] {
        let missing: Vec<String> = metric_names(&text).difference(&families).cloned().collect();
        assert!(missing.is_empty(), "the {what} name metrics no node exports: {missing:?}");
    }

    let value = |name: &str, labels: &str| {
        metric(&metrics, name, labels).unwrap_or_else(|| panic!("{name}{{{labels}}} missing:\n{metrics}"))
    };
    assert!(value("leasehold_log_fsync_seconds_count", "") >= 1.0, "the leader's binding was fsynced");
    assert_eq!(value("leasehold_raft_is_leader", ""), 1.0);
    for member in [1, 2, 3].iter().filter(|&&m| m != leader) {
        let member = format!("member=\"{member}\"");
        assert_eq!(value("leasehold_member_reachable", &member), 1.0, "{member} answers the leader");
        assert!(value("leasehold_member_lag_entries", &member) >= 0.0);
        let peer = member.replace("member", "peer");
        assert!(value("leasehold_peer_messages_sent_total", &peer) > 0.0, "the leader sent to {peer}");
        assert!(value("leasehold_peer_sent_bytes_total", &peer) > 0.0, "the leader wrote bytes to {peer}");
        assert!(value("leasehold_peer_received_bytes_total", &peer) > 0.0, "the leader heard from {peer}");
    }
    assert_eq!(value("leasehold_members", "kind=\"voter\""), 3.0);
    assert!(value("leasehold_raft_leader_changes_total", "") >= 1.0, "it came to know a leader");
    let digests: BTreeSet<String> = (1..=3)
        .map(|id| {
            let text = cluster.server(id).metrics();
            let line = text.lines().find(|l| l.starts_with("leasehold_config_info{")).expect("config info").to_string();
            line
        })
        .collect();
    assert_eq!(digests.len(), 1, "every node runs the same lease config: {digests:?}");
    for id in 1..=3 {
        let text = cluster.server(id).metrics();
        assert_eq!(metric(&text, "leasehold_config_mismatch", ""), Some(0.0), "node {id}: the same file as the leader");
        // No boot root here: no digest to show, and none of the members differs.
        assert!(!text.contains("leasehold_boot_root_info{"), "node {id}: no boot root, no digest");
        assert_eq!(metric(&text, "leasehold_boot_root_mismatch_members", ""), Some(0.0), "node {id}");
    }
}
