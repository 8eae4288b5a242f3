//! Growing a cluster through a learner (issue 12, "Learners"; Raft thesis §4.2.1), on a namespace
//! segment with real processes:
//!
//! 1. a 3-node cluster serves a client; `POST /v1/cluster/nodes` adds node 4, which joins as a
//!    learner: `/v1/cluster` shows it as one, `/metrics` counts 3 voters and 1 learner, and while it
//!    is not even running the cluster still binds leases (a learner is not part of any quorum);
//! 2. node 4 starts with `--join` and the full new peer list; it catches up from the leader and is
//!    promoted to voter by the leader without a command: `/v1/cluster` shows it as a follower, its
//!    lease table equals the leader's, and a binding made after the promotion reaches it;
//! 3. promoting it again is refused (409, not a learner);
//! 4. node 1 restarts with the `--peer` list it was first given (nodes 1–3 only): node 4's address
//!    comes from the replicated membership (the lease table keeps what the membership change
//!    carried), so once node 1 leads, a binding it commits reaches node 4.

mod netns_support;

use std::time::Duration;

use leasehold_tests::{format_mac, test_mac, ClientConfig, ClientOptions, RetryPolicy, TestClient};
use netns_support::cluster::{self, lease_set, node_ip, Cluster, PEER_PORT};
use netns_support::*;

fn role_of(ns: &str, id: u64) -> Option<String> {
    let (code, body) = http_get(ns, ADMIN_PORT, "/v1/cluster").ok()?;
    (code == 200).then_some(())?;
    let view: serde_json::Value = serde_json::from_str(&body).ok()?;
    view["members"].as_array()?.iter().find(|m| m["id"].as_u64() == Some(id))?["role"].as_str().map(str::to_string)
}

#[test]
fn a_node_added_joins_as_a_learner_and_is_promoted_once_caught_up() {
    let segment = Segment::up(4, 1, 24);
    let dir = scratch_dir("learners");
    let mut cluster = Cluster::start(&segment, dir.path());
    let (leader, _) = cluster.wait_for_leader(&[1, 2, 3], Duration::from_secs(20), "a leader");
    let leader_ns = cluster.ns(leader).to_string();
    let mut client =
        TestClient::bind(ClientConfig::in_namespace(&segment.client(1), "eth0")).expect("open the test client");
    let policy = RetryPolicy::default();
    let dora = |client: &mut TestClient, n: u32| {
        let lease = client.dora_with(test_mac(n), &ClientOptions::default(), &policy, Duration::from_secs(10));
        lease.unwrap_or_else(|e| panic!("client {n}: {e:?}")).ack.yiaddr
    };
    for n in 1..=3 {
        dora(&mut client, n);
    }

    // 1. Added as a learner; it is not running yet, and the cluster still binds.
    let body = format!(r#"{{"id": 4, "addr": "{}:{PEER_PORT}"}}"#, node_ip(4));
    let (code, answer) = admin::admin(&leader_ns, "POST", "/v1/cluster/nodes", Some(&body));
    assert_eq!(code, 202, "{answer}");
    poll_until(
        Duration::from_secs(10),
        || role_of(&leader_ns, 4),
        |role| role.as_deref() == Some("learner"),
        |role| format!("node 4 should show as a learner, shows {role:?}"),
    );
    let metrics = cluster.server(leader).metrics();
    assert_eq!(metric(&metrics, "leasehold_members", "kind=\"voter\""), Some(3.0), "{metrics}");
    assert_eq!(metric(&metrics, "leasehold_members", "kind=\"learner\""), Some(1.0));
    let ip = dora(&mut client, 4);
    cluster.wait_bound_everywhere(&[1, 2, 3], ip, &format_mac(test_mac(4)), "bound with a learner down");
    assert_eq!(role_of(&leader_ns, 4).as_deref(), Some("learner"), "not promoted while it has not answered");

    // 2. Node 4 joins, catches up and is promoted by the leader.
    let data = dir.path().join("node4-data");
    std::fs::create_dir_all(&data).expect("create node 4's data dir");
    let secret = cluster.secret().display().to_string();
    let listen = format!("{}:{PEER_PORT}", node_ip(4));
    let server_ip = node_ip(4).to_string();
    let peers: Vec<String> = (1..=4).map(|p| format!("{p}={}:{PEER_PORT}", node_ip(p))).collect();
    let mut args = vec![
        "--server-ip",
        &server_ip,
        "--ip-start",
        "10.77.0.100",
        "--ip-end",
        "10.77.0.200",
        "--subnet-mask",
        "255.255.255.0",
        "--node-id",
        "4",
        "--cluster-listen",
        &listen,
        "--cluster-secret-file",
        &secret,
        "--join",
    ];
    for peer in &peers {
        args.extend(["--peer", peer.as_str()]);
    }
    let node4 = Server::start(&segment.server(4), &data, &dir.path().join("node4.log"), &args);
    poll_until(
        Duration::from_secs(20),
        || role_of(&leader_ns, 4),
        |role| role.as_deref() == Some("follower"),
        |role| format!("node 4 was not promoted within 20 s (role {role:?})\n{}", tail_of(&node4.proc.log)),
    );
    let leader_leases = lease_set(&cluster.server(leader).leases());
    poll_until(
        Duration::from_secs(10),
        || lease_set(&node4.leases()),
        |leases| *leases == leader_leases,
        |leases| format!("node 4's table {leases:?} is not the leader's {leader_leases:?}"),
    );
    let metrics = cluster.server(leader).metrics();
    assert_eq!(metric(&metrics, "leasehold_members", "kind=\"voter\""), Some(4.0), "{metrics}");
    // The promotion keeps the links the addition opened (it once closed them): a new binding reaches
    // node 4 too.
    let ip = dora(&mut client, 5);
    let mac = format_mac(test_mac(5));
    poll_until(
        Duration::from_secs(10),
        || node4.lease_of(ip),
        |lease| lease.as_ref().is_some_and(|l| l.state == "bound" && l.mac == mac),
        |lease| format!("node 4 did not apply the binding of {ip} made after its promotion: {lease:?}"),
    );

    // 3. Not a learner any more.
    let (code, answer) = admin::admin(&leader_ns, "POST", "/v1/cluster/nodes/4/promote", None);
    assert_eq!(code, 409, "{answer}");
    assert!(answer.contains("not a learner"), "{answer}");

    // 4. Node 1 restarts with its first `--peer` list (1–3), then leads: it reaches node 4 all the
    //    same, from the address the membership change put in the replicated table.
    cluster.terminate(1, Duration::from_secs(15));
    cluster.restart(1);
    let node1_ns = cluster.ns(1).to_string();
    let addresses = |ns: &str| -> serde_json::Value {
        let (code, body) = admin::admin(ns, "GET", "/v1/cluster", None);
        assert_eq!(code, 200, "{body}");
        let view: serde_json::Value = serde_json::from_str(&body).expect("/v1/cluster is JSON");
        view["members"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["id"].as_u64() == Some(4)).cloned())
            .unwrap_or_default()
    };
    let node4_addr = format!("{}:{PEER_PORT}", node_ip(4));
    assert_eq!(addresses(&node1_ns)["address"].as_str(), Some(node4_addr.as_str()), "node 1 knows node 4's address");
    let leader_now = |ns: &str| match cluster::health(ns) {
        cluster::Health::Led { leader_id, .. } => Some(leader_id),
        _ => None,
    };
    let current = poll_until(
        Duration::from_secs(20),
        || leader_now(&node1_ns),
        Option::is_some,
        |leader| format!("node 1 sees no leader after its restart: {leader:?}"),
    );
    if current != Some(1) {
        let leader_id = current.expect("a leader");
        let ns = if leader_id == 4 { segment.server(4) } else { cluster.ns(leader_id as u32).to_string() };
        let (code, answer) = admin::admin(&ns, "POST", "/v1/cluster/transfer-leader", Some(r#"{"to": 1}"#));
        assert_eq!(code, 200, "transfer to node 1: {answer}");
    }
    poll_until(
        Duration::from_secs(20),
        || cluster::health(&node1_ns),
        |health| matches!(health, cluster::Health::Led { leader_id: 1, is_leader: true, .. }),
        |health| format!("node 1 does not lead: {health:?}"),
    );
    let term_before = match cluster::health(&node1_ns) {
        cluster::Health::Led { term, .. } => term,
        other => panic!("{other:?}"),
    };
    let ip = dora(&mut client, 6);
    let mac = format_mac(test_mac(6));
    poll_until(
        Duration::from_secs(10),
        || node4.lease_of(ip),
        |lease| lease.as_ref().is_some_and(|l| l.state == "bound" && l.mac == mac),
        |lease| format!("node 4 did not apply the binding node 1 committed: {lease:?}\n{}", tail_of(&node4.proc.log)),
    );
    assert_eq!(
        cluster::health(&node1_ns),
        cluster::Health::Led { leader_id: 1, is_leader: true, term: term_before },
        "node 1 led throughout"
    );
}
