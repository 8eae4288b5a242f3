use std::net::Ipv4Addr;

use leasehold_cluster::lease::{Change, ClientKey, Command, LeaseTable, Proposal, ProposalTag, ReservedHost};

use super::{Event, Keys, Op, Watched};

const T0: u64 = 1_800_000_000_000;

fn bind(c: u8, last: u8, at: u64, decided_at_index: u64) -> Command {
    Command::Bind {
        client: ClientKey::Mac([2, 0, 0, 0, 0, c]),
        mac: [2, 0, 0, 0, 0, c],
        client_id: None,
        hostname: Some(format!("host-{c}")),
        ip: Ipv4Addr::new(10, 0, 0, last),
        expires_at_ms: at + 60_000,
        proposed_at_ms: at,
        decided_at_index,
    }
}

/// What every node does with a committed write: its puts and deletes, as watch events.
fn deliver(keys: &Keys, table: &mut LeaseTable, revision: u64, write: &super::Write) {
    let mut changes = Vec::new();
    for (key, op) in &write.ops {
        let event = match op {
            Op::Put(value) => Event::Put { key, value },
            Op::Delete => Event::Delete { key },
        };
        if let Watched::Table(change) = keys.watched(event).expect("decodes") {
            changes.push(change);
        }
    }
    table.apply_changes(revision, changes, &mut Vec::new());
}

/// A new binding compares the address's and the client's keys (and the parameters the grace came
/// from) at the revision it was decided on, and puts both; a move to another address deletes the
/// old record in the same transaction, and the client key follows it.
#[test]
fn a_binding_is_one_transaction_comparing_the_address_and_the_client() {
    let keys = Keys::new("/lh");
    let mut table = LeaseTable::new(10_000, 100);
    let decided = table.decide(0, 1, &bind(1, 5, T0, 0));
    let write = keys.plan(&table, &decided.changes);
    assert_eq!(write.decided_at, 0);
    let compares: Vec<&str> = write.compares.iter().map(String::as_str).collect();
    assert_eq!(compares, ["/lh/client/02:00:00:00:00:01", "/lh/lease/10.0.0.5", "/lh/parameters"]);
    assert_eq!(write.ops.get("/lh/client/02:00:00:00:00:01"), Some(&Op::Put(b"10.0.0.5".to_vec())));
    deliver(&keys, &mut table, 7, &write);
    let lease = table.by_ip(Ipv4Addr::new(10, 0, 0, 5)).expect("bound");
    assert_eq!((lease.changed_at_index, lease.hostname()), (7, Some("host-1")), "stamped with the revision");

    // The client moves to .6: the old record goes in the same write.
    let decided = table.decide(7, 1, &bind(1, 6, T0 + 1, 7));
    let write = keys.plan(&table, &decided.changes);
    assert_eq!(write.decided_at, 7);
    assert_eq!(write.ops.get("/lh/lease/10.0.0.5"), Some(&Op::Delete));
    assert_eq!(write.ops.get("/lh/client/02:00:00:00:00:01"), Some(&Op::Put(b"10.0.0.6".to_vec())));
    deliver(&keys, &mut table, 9, &write);
    assert!(table.by_ip(Ipv4Addr::new(10, 0, 0, 5)).is_none());
    assert_eq!(table.by_client(&ClientKey::Mac([2, 0, 0, 0, 0, 1])).map(|l| l.ip), Some(Ipv4Addr::new(10, 0, 0, 6)));
    assert!(table.check_invariants().is_ok());
}

/// Another client taking over a reusable record deletes the previous holder's client key: it holds
/// nothing any more.
#[test]
fn taking_over_an_expired_record_ends_the_previous_holders_client_key() {
    let keys = Keys::new("/lh");
    let mut table = LeaseTable::new(0, 100);
    let write = keys.plan(&table, &table.decide(0, 1, &bind(1, 5, T0, 0)).changes);
    deliver(&keys, &mut table, 3, &write);
    let decided = table.decide(3, 1, &bind(2, 5, T0 + 120_000, 3));
    let write = keys.plan(&table, &decided.changes);
    assert_eq!(write.ops.get("/lh/client/02:00:00:00:00:01"), Some(&Op::Delete));
    assert_eq!(write.ops.get("/lh/client/02:00:00:00:00:02"), Some(&Op::Put(b"10.0.0.5".to_vec())));
    assert!(write.compares.contains("/lh/client/02:00:00:00:00:01"));
}

/// Reservations are JSON an operator can write with etcdctl; a bad value is refused with its key.
#[test]
fn reservations_read_back_and_a_bad_value_names_its_key() {
    let keys = Keys::new("/lh");
    let table = LeaseTable::new(0, 100);
    let host =
        ReservedHost { mac: [2, 0, 0, 0, 0, 9], ip: Ipv4Addr::new(10, 0, 0, 9), hostname: None, boot_file: None };
    let proposal = Proposal {
        tag: ProposalTag { node_id: 1, incarnation: 1, seq: 1 },
        command: Command::Reserve { host: host.clone(), proposed_at_ms: T0 },
    };
    let write = keys.plan(&table, &table.decide(0, 1, &proposal.command).changes);
    let (key, Op::Put(value)) = write.ops.iter().next().expect("one put") else { panic!("a put") };
    assert_eq!(key, "/lh/reservation/02:00:00:00:00:09");
    let by_hand = r#"{"v":1,"reservation":{"mac":[2,0,0,0,0,9],"ip":"10.0.0.9","hostname":null,"boot_file":null}}"#;
    for value in [value.as_slice(), by_hand.as_bytes()] {
        assert_eq!(keys.watched(Event::Put { key, value }), Ok(Watched::Table(Change::Reserve(host.clone()))));
    }
    assert_eq!(keys.watched(Event::Delete { key }), Ok(Watched::Table(Change::Unreserve([2, 0, 0, 0, 0, 9]))));
    let err = keys.watched(Event::Put { key: "/lh/lease/10.0.0.1", value: b"{\"v\":2}" }).unwrap_err();
    assert!(err.to_string().contains("/lh/lease/10.0.0.1"), "{err}");
    assert_eq!(keys.watched(Event::Put { key: "/lh/leader", value: b"3" }), Ok(Watched::Leader(Some(3))));
    assert_eq!(keys.watched(Event::Put { key: "/lh/client/x", value: b"10.0.0.1" }), Ok(Watched::Other));
}

/// Member keys carry each node's addresses and digests; a member of an older build (addresses only)
/// reads with no digests.
#[test]
fn member_keys_read_back_with_their_id() {
    let keys = Keys::new("/lh");
    let older = br#"{"server_ip":"10.0.0.2","admin":"10.0.0.2:8067"}"#;
    let Ok(Watched::Member(2, Some(member))) = keys.watched(Event::Put { key: "/lh/member/2", value: older }) else {
        panic!("a member")
    };
    assert_eq!((member.id, member.admin.as_deref(), member.boot_root_digest), (2, Some("10.0.0.2:8067"), None));
    let value =
        serde_json::to_vec(&super::Member { id: 3, boot_root_digest: Some("00aa".into()), ..Default::default() })
            .expect("JSON");
    let Ok(Watched::Member(3, Some(member))) = keys.watched(Event::Put { key: "/lh/member/3", value: &value }) else {
        panic!("a member")
    };
    assert_eq!(member.boot_root_digest.as_deref(), Some("00aa"));
    assert_eq!(keys.watched(Event::Delete { key: "/lh/member/3" }), Ok(Watched::Member(3, None)));
    assert!(keys.watched(Event::Put { key: "/lh/member/x", value: b"{}" }).is_err());
}

/// The shared config is plain TOML text under `/config`, apart from `/config-digest`.
#[test]
fn the_shared_config_key_reads_as_text() {
    let keys = Keys::new("/lh/");
    assert_eq!(keys.config(), "/lh/config");
    let text = "[[pool]]\nname = \"a\"\n";
    assert_eq!(
        keys.watched(Event::Put { key: "/lh/config", value: text.as_bytes() }),
        Ok(Watched::Config(Some(text.to_string())))
    );
    assert_eq!(keys.watched(Event::Delete { key: "/lh/config" }), Ok(Watched::Config(None)));
    assert!(keys.watched(Event::Put { key: "/lh/config", value: &[0xff, 0xfe] }).is_err(), "not UTF-8");
    assert!(matches!(
        keys.watched(Event::Put { key: "/lh/config-digest", value: b"00ff" }),
        Ok(Watched::Table(Change::ConfigDigest(_)))
    ));
}
