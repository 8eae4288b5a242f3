//! Checks over the nodes' own lease tables (`GET /v1/leases`), held against the clients' ledger:
//!
//! - duplicates: no table lists an address twice, and no address is bound (state `bound`, i.e. not
//!   expired by that node's clock) to two different MACs across the tables of all nodes read together,
//!   unless a lagging node explains it (see `duplicates`);
//! - lost leases: every holding a client still claims (ACKed, unexpired, not released, not NAKed) is in
//!   the table, bound to that client's MAC, with `expires_at` no earlier than what the latest ACK
//!   promised (see `ledger`) minus a second of rounding; when the ACKing node ran with a negative clock
//!   offset, its lease time was computed by a clock that far behind, and that much more is allowed;
//! - convergence: after healing, every node lists the same (ip, mac, state, expires_at) — with `bound`
//!   and `expired` counted as one state, since which of the two a node shows depends on its clock.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use leasehold_tests::format_mac;

use super::ledger::Promise;
use crate::netns_support::Lease;

/// A promise closer than this to its expiry is not checked: the client may be about to lose it.
pub const EXPIRY_MARGIN_MS: u64 = 2_000;
/// Rounding of option 51 to whole seconds (`expires_at`'s truncation to seconds is added separately).
pub const ROUNDING_MS: u64 = 1_000;

/// One node's table as read at one moment.
pub type Tables = [(u32, Vec<Lease>)];

/// What must be equal on every node once healed.
pub type Key = (Ipv4Addr, String, &'static str, u64);

fn class(state: &str) -> &'static str {
    match state {
        "bound" | "expired" => "held",
        "released" => "released",
        "declined" => "declined",
        _ => "unknown",
    }
}

pub fn key_set(table: &[Lease]) -> BTreeSet<Key> {
    table.iter().map(|l| (l.ip, l.mac.to_ascii_lowercase(), class(&l.state), l.expires_at)).collect()
}

/// Every address listed twice in one table, or bound to two MACs across tables when it cannot be
/// explained by a lagging node. A node that has not applied the latest entries still shows what the
/// majority has since replaced: a client's binding it has since RELEASEd (and the address bound again to
/// someone else). So across tables, a conflict counts only if at least two of its MACs still claim the
/// address: `claims(mac, ip)` says whether a client does (the clients' ledger; MACs it does not know,
/// e.g. perfdhcp's, are taken to claim what they hold).
pub fn duplicates(tables: &Tables, claims: impl Fn(&str, Ipv4Addr) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    let mut bound: BTreeMap<Ipv4Addr, BTreeMap<String, Vec<u32>>> = BTreeMap::new();
    for (node, table) in tables {
        let mut seen = BTreeSet::new();
        for lease in table {
            if !seen.insert(lease.ip) {
                found.push(format!("node {node} lists {} more than once", lease.ip));
            }
            if lease.state == "bound" {
                bound.entry(lease.ip).or_default().entry(lease.mac.to_ascii_lowercase()).or_default().push(*node);
            }
        }
    }
    for (ip, holders) in bound {
        let claimed = holders.keys().filter(|mac| claims(mac, ip)).count();
        if holders.len() > 1 && claimed > 1 {
            let who: Vec<String> = holders.iter().map(|(mac, nodes)| format!("{mac} on nodes {nodes:?}")).collect();
            found.push(format!("{ip} is bound to {} clients at once: {}", holders.len(), who.join(", ")));
        }
    }
    found
}

/// None when all tables have the same key set; otherwise what differs (bounded).
pub fn divergence(tables: &Tables) -> Option<String> {
    let (first_node, first) = tables.first()?;
    let reference = key_set(first);
    let mut differences = Vec::new();
    for (node, table) in &tables[1..] {
        let keys = key_set(table);
        if keys != reference {
            let missing: Vec<_> = reference.difference(&keys).take(5).collect();
            let extra: Vec<_> = keys.difference(&reference).take(5).collect();
            differences.push(format!(
                "node {node} vs node {first_node}: {} missing (e.g. {missing:?}), {} extra (e.g. {extra:?})",
                reference.difference(&keys).count(),
                keys.difference(&reference).count()
            ));
        }
    }
    (!differences.is_empty()).then(|| differences.join("; "))
}

/// The promises `table` (node `node`'s, read at `now_unix_ms`) does not keep: (client and address, what
/// is wrong).
pub fn lost(promises: &[Promise], node: u32, table: &[Lease], now_unix_ms: u64) -> Vec<(String, String)> {
    let by_ip: BTreeMap<Ipv4Addr, &Lease> = table.iter().map(|l| (l.ip, l)).collect();
    let mut found = Vec::new();
    for p in promises {
        if p.promised_until_unix_ms <= now_unix_ms + EXPIRY_MARGIN_MS || p.released || p.abandoned {
            continue;
        }
        let mac = format_mac(p.mac);
        let left_s = (p.promised_until_unix_ms - now_unix_ms) as f64 / 1000.0;
        let tolerance_ms = ROUNDING_MS + (-p.acked_by_offset_ms).max(0) as u64;
        let problem = match by_ip.get(&p.ip) {
            None => Some("no record of the address".to_owned()),
            Some(lease) if !lease.mac.eq_ignore_ascii_case(&mac) => {
                Some(format!("the address is {} to {}", lease.state, lease.mac))
            }
            Some(lease) if class(&lease.state) != "held" => Some(format!("the lease is {}", lease.state)),
            Some(lease) if lease.expires_at * 1000 + 999 + tolerance_ms < p.promised_until_unix_ms => Some(format!(
                "expires_at {} is {:.1} s before the ACKed expiry",
                lease.expires_at,
                (p.promised_until_unix_ms - lease.expires_at * 1000) as f64 / 1000.0
            )),
            Some(_) => None,
        };
        if let Some(problem) = problem {
            found.push((
                format!("{mac} {}", p.ip),
                format!(
                    "node {node}: {mac} holds {} (last ACKed by {}, {left_s:.1} s left, {} ACKs): {problem}",
                    p.ip, p.server_id, p.acks
                ),
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(ip: u8, mac: &str, state: &str, expires_at: u64) -> Lease {
        Lease {
            ip: Ipv4Addr::new(10, 77, 1, ip),
            mac: mac.to_owned(),
            client_id: None,
            hostname: None,
            state: state.to_owned(),
            expires_at,
        }
    }

    fn promise(ip: u8, mac_byte: u8, expiry_unix_ms: u64) -> Promise {
        Promise {
            mac: [2, 0x4c, 0, 0, 0, mac_byte],
            ip: Ipv4Addr::new(10, 77, 1, ip),
            server_id: Ipv4Addr::new(10, 77, 0, 1),
            claim_until_unix_ms: expiry_unix_ms,
            promised_until_unix_ms: expiry_unix_ms,
            acked_by_offset_ms: 0,
            first_ack_unix_ms: 0,
            last_ack_unix_ms: 0,
            acks: 1,
            released: false,
            abandoned: false,
        }
    }

    #[test]
    fn one_address_bound_to_two_macs_across_nodes_is_a_duplicate() {
        let tables = vec![
            (1, vec![lease(1, "02:4c:00:00:00:01", "bound", 100)]),
            (2, vec![lease(1, "02:4c:00:00:00:02", "bound", 100)]),
            (3, vec![lease(1, "02:4c:00:00:00:01", "expired", 100)]),
        ];
        let found = duplicates(&tables, |_, _| true);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("10.77.1.1"));
        // Node 1 lags: client ...:01 has released the address since (it no longer claims it).
        assert!(duplicates(&tables, |mac, _| mac != "02:4c:00:00:00:01").is_empty());
        let released = vec![
            (1, vec![lease(1, "02:4c:00:00:00:01", "released", 100)]),
            (2, vec![lease(1, "02:4c:00:00:00:02", "bound", 100)]),
        ];
        assert!(duplicates(&released, |_, _| true).is_empty());
        let twice = vec![(1, vec![lease(1, "a", "bound", 1), lease(1, "a", "bound", 1)])];
        assert_eq!(duplicates(&twice, |_, _| false).len(), 1);
    }

    #[test]
    fn bound_and_expired_converge_as_one_state_but_expiries_must_match() {
        let a = vec![(1, vec![lease(1, "m", "bound", 100)]), (2, vec![lease(1, "M", "expired", 100)])];
        assert_eq!(divergence(&a), None);
        let b = vec![(1, vec![lease(1, "m", "bound", 100)]), (2, vec![lease(1, "m", "bound", 101)])];
        assert!(divergence(&b).is_some());
    }

    #[test]
    fn a_promise_is_kept_only_by_the_same_mac_with_a_late_enough_expiry() {
        let now = 1_000_000;
        let p = promise(1, 1, now + 60_000);
        let kept = vec![lease(1, "02:4c:00:00:00:01", "bound", (now + 59_000) / 1000)];
        // 2 s short: a stale renewal moved the expiry back.
        let short = vec![lease(1, "02:4c:00:00:00:01", "bound", (now + 58_000) / 1000)];
        assert_eq!(lost(std::slice::from_ref(&p), 1, &short, now).len(), 1);
        // ... unless the ACKing node's clock was 3 s behind.
        let behind = Promise { acked_by_offset_ms: -3_000, ..p.clone() };
        assert!(lost(std::slice::from_ref(&behind), 1, &short, now).is_empty());
        assert!(lost(std::slice::from_ref(&p), 1, &kept, now).is_empty());
        let shortened = vec![lease(1, "02:4c:00:00:00:01", "bound", (now + 50_000) / 1000)];
        assert_eq!(lost(std::slice::from_ref(&p), 1, &shortened, now).len(), 1);
        let other = vec![lease(1, "02:4c:00:00:00:09", "bound", (now + 60_000) / 1000)];
        assert_eq!(lost(std::slice::from_ref(&p), 1, &other, now).len(), 1);
        let released = vec![lease(1, "02:4c:00:00:00:01", "released", now / 1000)];
        assert_eq!(lost(std::slice::from_ref(&p), 1, &released, now).len(), 1);
        assert_eq!(lost(std::slice::from_ref(&p), 1, &[], now).len(), 1);
        // About to expire: not checked.
        let ending = promise(1, 1, now + 1_000);
        assert!(lost(&[ending], 1, &[], now).is_empty());
    }
}
