//! `leasehold reload --all` with no list: find every member's admin API through `GET /v1/cluster`
//! (each member reports its admin address to the leader, and the leader tells the followers its own),
//! then reload the members one after the other, followers and learners first and the leader last, so
//! that a file that does not check is found before the leader's config changes. Every member is asked
//! who it is before anything is reloaded (a member's reported address that reaches another node, such
//! as a loopback one, is refused); the first refusal stops the run, naming the node and the reason.
//! Every request goes the way `--admin`'s does: the same token and TLS options.

use std::net::SocketAddr;
use std::process::ExitCode;

use crate::client::{AdminClient, AdminClientArgs};

/// One member of the cluster as the leader's `GET /v1/cluster` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    /// "leader", "follower" or "learner".
    pub role: String,
    /// Where its admin API is reached (`None`: not reported).
    pub admin: Option<SocketAddr>,
}

/// What a node's `GET /v1/cluster` says that the plan needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub node_id: u64,
    pub leader_id: Option<u64>,
    pub is_leader: bool,
    pub members: Vec<Member>,
}

impl View {
    pub fn parse(body: &str) -> Result<View, String> {
        let json: serde_json::Value =
            serde_json::from_str(body).map_err(|e| format!("GET /v1/cluster is not a cluster view: {e}"))?;
        let node_id = json["node_id"].as_u64().ok_or("GET /v1/cluster names no node_id")?;
        let members = json["members"]
            .as_array()
            .ok_or("GET /v1/cluster lists no members")?
            .iter()
            .map(|m| {
                Ok(Member {
                    id: m["id"].as_u64().ok_or("a member without an id")?,
                    role: m["role"].as_str().unwrap_or("-").to_string(),
                    admin: m["admin_addr"].as_str().and_then(|a| a.parse().ok()),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(View {
            node_id,
            leader_id: json["leader_id"].as_u64(),
            is_leader: json["is_leader"].as_bool().unwrap_or(false),
            members,
        })
    }

    fn member(&self, id: u64) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }
}

/// The order to reload the members of the leader's `view` in: followers and learners by id, the
/// leader last. `given` is the address the operator gave for node `given_id` (used for that node
/// instead of the one it reports: it is known to reach it). Refused, with every member at fault
/// named, when a member's admin address is not known.
pub fn plan(view: &View, given_id: u64, given: SocketAddr) -> Result<Vec<Member>, String> {
    if !view.is_leader {
        return Err(format!("node {} is not the leader: only the leader's view names every member", view.node_id));
    }
    let mut order: Vec<Member> = view
        .members
        .iter()
        .map(|m| Member { admin: if m.id == given_id { Some(given) } else { m.admin }, ..m.clone() })
        .collect();
    order.sort_by_key(|m| (m.id == view.node_id, m.id));
    let unknown: Vec<String> = order.iter().filter(|m| m.admin.is_none()).map(|m| format!("node {}", m.id)).collect();
    if !unknown.is_empty() {
        return Err(format!(
            "the leader (node {}) does not know the admin address of {} (not reported yet, an IPv6 admin listener, \
             or an older version); nothing was reloaded: list every member's with --all ADDR…",
            view.node_id,
            unknown.join(", ")
        ));
    }
    Ok(order)
}

/// A client for `admin`, with `args`' token and TLS options.
fn client_for(args: &AdminClientArgs, admin: SocketAddr) -> Result<AdminClient, String> {
    AdminClient::new(&AdminClientArgs { admin, ..args.clone() })
}

/// `GET /v1/cluster` of the node at `admin`.
fn view_of(args: &AdminClientArgs, admin: SocketAddr) -> Result<View, String> {
    let client = client_for(args, admin)?;
    match client.request("GET", "/v1/cluster", None).map_err(|e| format!("{admin}: {e}"))? {
        (200, body) => View::parse(&body).map_err(|e| format!("{admin}: {e}")),
        (status, body) => Err(client.refusal(status, &body)),
    }
}

/// The leader's view, asked of `--admin` and, when that is a follower, of the leader it names.
fn leader_view(args: &AdminClientArgs, first: &View) -> Result<View, String> {
    if first.is_leader {
        return Ok(first.clone());
    }
    let leader = first.leader_id.ok_or_else(|| {
        format!("node {} at {} knows no leader (no quorum?): nothing was reloaded", first.node_id, args.admin)
    })?;
    let at = first.member(leader).and_then(|m| m.admin).ok_or_else(|| {
        format!(
            "node {} at {} does not know the admin address of the leader, node {leader} (not told yet, an IPv6 \
             admin listener, or an older version); give the leader's with --admin, or list every member's with \
             --all ADDR…; nothing was reloaded",
            first.node_id, args.admin
        )
    })?;
    let view = view_of(args, at).map_err(|e| format!("the leader, node {leader}: {e}"))?;
    if view.node_id != leader || !view.is_leader {
        return Err(format!(
            "{at}, the leader's admin address as node {} knows it, answers as node {}{}; nothing was reloaded",
            first.node_id,
            view.node_id,
            if view.is_leader { "" } else { ", not the leader (an election?)" }
        ));
    }
    Ok(view)
}

/// What a successful `POST /v1/config/reload` answered, in a line.
pub fn describe(body: &str) -> String {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(body) else {
        return body.trim().to_string();
    };
    let text = |key: &str| json[key].as_str().unwrap_or("-").to_string();
    let number = |key: &str| json[key].as_u64().unwrap_or(0);
    let digest = if json["digest"] == json["digest_before"] {
        format!("config digest {} (lease-relevant config unchanged)", text("digest"))
    } else {
        format!("config digest {} -> {}", text("digest_before"), text("digest"))
    };
    let published = match json["published_revision"].as_u64() {
        Some(revision) => format!("; shared part written to etcd at revision {revision} (every node takes it)"),
        None => String::new(),
    };
    format!(
        "{}: {digest}; {} pool(s), {} class(es), {} reservation(s) in the file; offers kept {}, dropped {}{published}",
        text("file"),
        number("pools"),
        number("classes"),
        number("config_reservations"),
        number("offers_kept"),
        number("offers_dropped")
    )
}

/// Find every member and reload each in `plan`'s order; stops at the first refusal.
pub fn run(args: &AdminClientArgs) -> ExitCode {
    match discover(args) {
        Ok(order) => reload_in_order(args, &order),
        Err(e) => {
            eprintln!("leasehold reload: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The members in reload order, each checked to answer as itself at its address.
fn discover(args: &AdminClientArgs) -> Result<Vec<Member>, String> {
    let first = view_of(args, args.admin)?;
    let leader = leader_view(args, &first)?;
    let order = plan(&leader, first.node_id, args.admin)?;
    for member in &order {
        let at = member.admin.expect("plan gives every member an address");
        let answered = view_of(args, at)
            .map_err(|e| format!("node {} ({}) at {at}: {e}; nothing was reloaded", member.id, member.role))?;
        if answered.node_id != member.id {
            return Err(format!(
                "node {}'s admin address {at} (as the leader knows it) answers as node {} (a loopback address?); \
                 nothing was reloaded: list every member's with --all ADDR…",
                member.id, answered.node_id
            ));
        }
    }
    let names: Vec<String> =
        order.iter().map(|m| format!("node {} ({}) at {}", m.id, m.role, m.admin.expect("an address"))).collect();
    println!("reloading {} member(s) in order: {}", order.len(), names.join(", "));
    Ok(order)
}

fn reload_in_order(args: &AdminClientArgs, order: &[Member]) -> ExitCode {
    for (done, member) in order.iter().enumerate() {
        let at = member.admin.expect("plan gives every member an address");
        let name = format!("node {} ({}) at {at}", member.id, member.role);
        let outcome = client_for(args, at).and_then(|client| {
            match client.request("POST", "/v1/config/reload", None).map_err(|e| format!("{at}: {e}"))? {
                (200, body) => Ok(body),
                (status, body) => Err(client.refusal(status, &body)),
            }
        });
        match outcome {
            Ok(body) => println!("{name}: reloaded {}", describe(&body)),
            Err(e) => {
                let untouched: Vec<String> = order[done + 1..].iter().map(|m| format!("node {}", m.id)).collect();
                let reloaded: Vec<String> = order[..done].iter().map(|m| format!("node {}", m.id)).collect();
                eprintln!(
                    "leasehold reload: {name} failed: {e}; reloaded before it: {}; not reloaded: {}",
                    if reloaded.is_empty() { "none".to_string() } else { reloaded.join(", ") },
                    if untouched.is_empty() { "none".to_string() } else { untouched.join(", ") },
                );
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, role: &str, admin: Option<&str>) -> Member {
        Member { id, role: role.into(), admin: admin.map(|a| a.parse().expect("an address")) }
    }

    #[test]
    fn the_leaders_view_is_read_from_get_v1_cluster() {
        let body = r#"{"node_id": 2, "leader_id": 2, "is_leader": true, "members": [
            {"id": 1, "role": "follower", "admin_addr": "10.77.0.1:6767"},
            {"id": 2, "role": "leader", "admin_addr": "10.77.0.2:6767"},
            {"id": 3, "role": "learner", "admin_addr": null}]}"#;
        let view = View::parse(body).expect("a view");
        assert_eq!((view.node_id, view.leader_id, view.is_leader), (2, Some(2), true));
        assert_eq!(
            view.members,
            vec![
                member(1, "follower", Some("10.77.0.1:6767")),
                member(2, "leader", Some("10.77.0.2:6767")),
                member(3, "learner", None)
            ]
        );
        assert!(View::parse("[]").is_err());
    }

    #[test]
    fn followers_and_learners_are_reloaded_first_and_the_leader_last() {
        let view = View {
            node_id: 1,
            leader_id: Some(1),
            is_leader: true,
            members: vec![
                member(1, "leader", Some("10.77.0.1:6767")),
                member(2, "follower", Some("10.77.0.2:6767")),
                member(3, "learner", Some("10.77.0.3:6767")),
            ],
        };
        // The operator gave node 3's as 127.0.0.1:6767 (it runs there): that address is used for it.
        let given: SocketAddr = "127.0.0.1:6767".parse().expect("an address");
        let order = plan(&view, 3, given).expect("a plan");
        let ids: Vec<u64> = order.iter().map(|m| m.id).collect();
        assert_eq!(ids, vec![2, 3, 1], "the leader last");
        assert_eq!(order[1].admin, Some(given));
    }

    #[test]
    fn a_member_without_a_known_address_stops_the_plan_naming_it() {
        let mut view = View {
            node_id: 2,
            leader_id: Some(2),
            is_leader: true,
            members: vec![
                member(1, "follower", None),
                member(2, "leader", Some("10.77.0.2:6767")),
                member(3, "follower", None),
            ],
        };
        let given: SocketAddr = "10.77.0.2:6767".parse().expect("an address");
        let refusal = plan(&view, 2, given).expect_err("two members without an address");
        assert!(refusal.contains("node 1, node 3") && refusal.contains("nothing was reloaded"), "{refusal}");
        view.is_leader = false;
        assert!(plan(&view, 2, given).expect_err("a follower's view").contains("not the leader"));
    }

    #[test]
    fn a_reload_answer_is_told_in_a_line() {
        let body = r#"{"file": "/etc/leasehold.toml", "digest_before": "aa", "digest": "bb", "pools": 2,
            "classes": 0, "config_reservations": 1, "offers_kept": 3, "offers_dropped": 0}"#;
        assert_eq!(
            describe(body),
            "/etc/leasehold.toml: config digest aa -> bb; 2 pool(s), 0 class(es), 1 reservation(s) in the file; \
             offers kept 3, dropped 0"
        );
        let same = body.replace("\"bb\"", "\"aa\"");
        assert!(describe(&same).contains("config digest aa (lease-relevant config unchanged)"), "{}", describe(&same));
    }
}
