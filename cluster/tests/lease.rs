//! The lease state machine, as transcripts of committed log entries (DESIGN rule 4: apply is a pure,
//! deterministic function of the log; the proposer decides address, expiry and time).

use std::net::Ipv4Addr;

use leasehold_cluster::lease::{
    decode_entry, encode_entry, Change, ClientKey, Command, Lease, LeaseState, LeaseTable, Outcome, Proposal,
    ProposalTag, ReservedHost,
};
use proptest::prelude::*;

const GRACE_MS: u64 = 30_000;
const T0: u64 = 1_700_000_000_000;

fn client(n: u8) -> ClientKey {
    ClientKey::Mac([2, 0, 0, 0, 0, n])
}

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

/// The commands below are decided on the table as of `SEEN`: after everything the tests apply unless
/// a test sets `decided_at_index` itself (a command held up behind a partition).
const SEEN: u64 = u64::MAX;

fn bind(c: u8, a: u8, at: u64, lease_ms: u64) -> Command {
    Command::Bind {
        client: client(c),
        mac: [2, 0, 0, 0, 0, c],
        client_id: None,
        hostname: None,
        ip: ip(a),
        expires_at_ms: at + lease_ms,
        proposed_at_ms: at,
        decided_at_index: SEEN,
    }
}

fn release(c: u8, a: u8, at: u64) -> Command {
    Command::Release { client: client(c), ip: ip(a), proposed_at_ms: at, decided_at_index: SEEN }
}

fn decline(c: u8, a: u8, at: u64) -> Command {
    Command::Decline {
        client: client(c),
        mac: [2, 0, 0, 0, 0, c],
        ip: ip(a),
        until_ms: at + 900_000,
        proposed_at_ms: at,
        decided_at_index: SEEN,
    }
}

/// Apply `commands` as one entry at `index`, proposed by node 1.
fn apply(table: &mut LeaseTable, index: u64, commands: Vec<Command>) -> Vec<Outcome> {
    apply_from(table, index, 1, commands)
}

/// Apply `commands` as one entry at `index`, proposed by node `node_id`.
fn apply_from(table: &mut LeaseTable, index: u64, node_id: u64, commands: Vec<Command>) -> Vec<Outcome> {
    let proposals: Vec<Proposal> = commands
        .into_iter()
        .enumerate()
        .map(|(seq, command)| Proposal { tag: ProposalTag { node_id, incarnation: 1, seq: seq as u64 }, command })
        .collect();
    table.apply(index, &proposals).expect("a new index is applied")
}

fn expiry(table: &LeaseTable, a: u8) -> u64 {
    match table.by_ip(ip(a)).map(|l| l.state) {
        Some(LeaseState::Bound { expires_at_ms }) => expires_at_ms,
        other => panic!("{} is not bound: {other:?}", ip(a)),
    }
}

#[test]
fn a_bound_address_is_refused_to_another_client_until_expiry_plus_grace() {
    let mut table = LeaseTable::new(GRACE_MS, 100);
    assert!(matches!(apply(&mut table, 1, vec![bind(1, 5, T0, 60_000)])[0], Outcome::Bound(_)));
    let refused = apply(&mut table, 2, vec![bind(2, 5, T0 + 60_000 + GRACE_MS - 1, 60_000)]);
    assert_eq!(refused, vec![Outcome::Conflict { holder: client(1) }], "inside the grace after expiry");
    let taken = apply(&mut table, 3, vec![bind(2, 5, T0 + 60_000 + GRACE_MS, 60_000)]);
    assert!(matches!(taken[0], Outcome::Bound(_)), "after expiry + grace the address is reusable");
    assert_eq!(table.by_client(&client(1)), None, "the old holder lost its claim");
}

#[test]
fn apply_is_idempotent_an_index_applies_once() {
    let mut table = LeaseTable::new(GRACE_MS, 100);
    apply(&mut table, 1, vec![bind(1, 5, T0, 60_000)]);
    let digest = table.digest();
    let proposals =
        vec![Proposal { tag: ProposalTag { node_id: 1, incarnation: 1, seq: 9 }, command: release(1, 5, T0 + 1) }];
    assert_eq!(table.apply(1, &proposals), None, "a replayed index changes nothing");
    assert_eq!(table.digest(), digest);
}

#[test]
fn one_address_per_client_a_new_binding_frees_the_old_one() {
    let mut table = LeaseTable::new(GRACE_MS, 100);
    apply(&mut table, 1, vec![bind(1, 5, T0, 60_000)]);
    apply(&mut table, 2, vec![bind(1, 6, T0 + 1, 60_000)]);
    assert_eq!(table.by_ip(ip(5)), None);
    assert_eq!(table.by_client(&client(1)).map(|l| l.ip), Some(ip(6)));
}

/// The same command, decided by a proposer whose table had applied up to `index`.
fn decided_at(index: u64, mut command: Command) -> Command {
    match &mut command {
        Command::Bind { decided_at_index, .. }
        | Command::Release { decided_at_index, .. }
        | Command::Decline { decided_at_index, .. }
        | Command::DeclineUnchecked { decided_at_index, .. } => *decided_at_index = index,
        Command::Collect { decided_at_index, .. } => *decided_at_index = index,
        // Reservations and parameters are ordered by the log alone: nothing was decided on a view.
        Command::Reserve { .. }
        | Command::Unreserve { .. }
        | Command::SetParameters(_)
        | Command::SetConfigDigest { .. } => {}
    }
    command
}

#[test]
fn the_config_digest_the_log_carries_is_the_last_one_applied_and_survives_a_snapshot() {
    let mut table = LeaseTable::new(GRACE_MS, 100);
    assert_eq!(table.config_digest(), None, "no digest before the log carries one");
    let set = |digest: &str| Command::SetConfigDigest { digest: digest.into() };
    assert_eq!(apply(&mut table, 1, vec![set("00112233aabbccdd")]), vec![Outcome::ConfigDigestSet]);
    apply(&mut table, 2, vec![bind(1, 5, T0, 60_000), set("ffeeddcc00000001")]);
    assert_eq!(table.config_digest(), Some("ffeeddcc00000001"), "a later digest replaces the earlier one");
    let restored = LeaseTable::from_snapshot(&table.to_snapshot(), GRACE_MS, 100).expect("own snapshot decodes");
    assert_eq!(restored.config_digest(), Some("ffeeddcc00000001"));
    assert_eq!(restored.digest(), table.digest(), "the restored table is the same table");
    let compressed = leasehold_cluster::lease::compress_snapshot(table.to_snapshot());
    let restored = LeaseTable::from_snapshot(&compressed, GRACE_MS, 100).expect("compressed snapshot decodes");
    assert_eq!(restored, table);
}

#[test]
fn rfc2131_4_3_4_a_release_decided_before_a_newer_binding_does_not_end_it_whatever_the_clocks_say() {
    // The client released while a cut-off node had applied index 1; that node's clock runs 4.5 s
    // ahead. The client then bound the address again through the majority (index 2), and only then
    // did the held-up RELEASE commit (index 3). Its later timestamp must not let it end the binding.
    let mut table = LeaseTable::new(GRACE_MS, 100);
    apply(&mut table, 1, vec![bind(1, 5, T0, 60_000)]);
    apply(&mut table, 2, vec![bind(1, 5, T0 + 20, 60_000)]);
    let late_release = decided_at(1, release(1, 5, T0 + 4_500));
    assert_eq!(apply(&mut table, 3, vec![late_release]), vec![Outcome::Stale { in_force: None }]);
    assert_eq!(expiry(&table, 5), T0 + 20 + 60_000, "the newer binding stands");
    let current_release = decided_at(3, release(1, 5, T0 + 30));
    assert_eq!(apply(&mut table, 4, vec![current_release]), vec![Outcome::Released], "a current RELEASE works");
}

#[test]
fn rfc2131_4_4_6_a_release_that_reached_the_server_of_an_earlier_binding_does_not_end_a_newer_one() {
    // `dhclient -r; dhclient`: the RELEASE went to node 2 (the server of the old binding), the new
    // DORA to the leader, node 1, whose binding committed first. Node 2 had applied it by the time it
    // decided, so only the server identifier tells the RELEASE is about the old binding.
    let mut table = LeaseTable::new(GRACE_MS, 100);
    apply_from(&mut table, 1, 2, vec![bind(1, 5, T0, 60_000)]);
    apply_from(&mut table, 2, 1, vec![bind(1, 5, T0 + 100, 60_000)]);
    assert_eq!(
        apply_from(&mut table, 3, 2, vec![decided_at(2, release(1, 5, T0 + 120))]),
        vec![Outcome::Stale { in_force: None }]
    );
    assert_eq!(expiry(&table, 5), T0 + 100 + 60_000);
    assert_eq!(apply_from(&mut table, 4, 1, vec![release(1, 5, T0 + 200)]), vec![Outcome::Released]);
}

#[test]
fn a_renewal_decided_before_a_newer_one_does_not_move_the_expiry_back() {
    // The late renewal carries the later clock (its proposer runs ahead) but the earlier view.
    let mut table = LeaseTable::new(GRACE_MS, 100);
    apply(&mut table, 1, vec![bind(1, 5, T0, 60_000)]);
    apply(&mut table, 2, vec![bind(1, 5, T0 + 20_000, 60_000)]);
    let stale = apply(&mut table, 3, vec![decided_at(1, bind(1, 5, T0 + 10_000, 60_000))]);
    assert!(
        matches!(&stale[0], Outcome::Stale { in_force: Some(l) } if l.updated_at_ms == T0 + 20_000 && l.changed_at_index == 2),
        "answered from the binding in force: {stale:?}"
    );
    assert_eq!(expiry(&table, 5), T0 + 80_000, "the stale renewal did not change the lease");
}

#[test]
fn rfc2131_4_4_5_a_late_renewal_does_not_revive_a_released_address() {
    let mut table = LeaseTable::new(GRACE_MS, 100);
    apply(&mut table, 1, vec![bind(1, 5, T0, 60_000)]);
    apply(&mut table, 2, vec![release(1, 5, T0 + 1_000)]);
    assert_eq!(
        apply(&mut table, 3, vec![decided_at(1, bind(1, 5, T0 + 5_000, 60_000))]),
        vec![Outcome::Stale { in_force: None }]
    );
    assert!(matches!(table.by_ip(ip(5)).map(|l| l.state), Some(LeaseState::Released { .. })));
}

#[test]
fn a_late_renewal_of_an_address_the_client_left_does_not_free_its_new_one() {
    // The client renewed .5 through a node that was then cut off; meanwhile it was moved to .6 (the
    // binding of .6 removes .5). When the renewal of .5 commits, .6 must stay bound to the client:
    // freeing it would let another client be given an address in use.
    let mut table = LeaseTable::new(GRACE_MS, 100);
    apply(&mut table, 1, vec![bind(1, 5, T0, 60_000)]);
    apply(&mut table, 2, vec![bind(1, 6, T0 + 1_000, 60_000)]);
    assert_eq!(
        apply(&mut table, 3, vec![decided_at(1, bind(1, 5, T0 + 2_000, 60_000))]),
        vec![Outcome::Stale { in_force: None }]
    );
    assert_eq!(table.by_client(&client(1)).map(|l| l.ip), Some(ip(6)));
    assert_eq!(table.by_ip(ip(5)), None);
}

#[test]
fn a_retransmitted_request_in_the_same_entry_gets_the_same_binding() {
    let mut table = LeaseTable::new(GRACE_MS, 100);
    let twice =
        apply(&mut table, 1, vec![decided_at(0, bind(1, 5, T0, 60_000)), decided_at(0, bind(1, 5, T0 + 3, 60_000))]);
    let Outcome::Bound(first) = &twice[0] else { panic!("the first copy binds: {twice:?}") };
    assert_eq!(
        twice[1],
        Outcome::Stale { in_force: Some(first.clone()) },
        "the second copy is refused as stale and answered from the first: {twice:?}"
    );
    assert_eq!(twice[1].label(), "stale");
}

#[test]
fn rfc2131_4_3_3_a_late_decline_does_not_quarantine_a_newer_binding() {
    let mut table = LeaseTable::new(GRACE_MS, 100);
    apply(&mut table, 1, vec![bind(1, 5, T0, 60_000)]);
    apply(&mut table, 2, vec![bind(1, 5, T0 + 1_000, 60_000)]);
    assert_eq!(
        apply(&mut table, 3, vec![decided_at(1, decline(1, 5, T0 + 9_000))]),
        vec![Outcome::Stale { in_force: None }]
    );
    assert_eq!(expiry(&table, 5), T0 + 61_000);
}

#[test]
fn rfc2131_4_3_3_decline_quarantines_but_never_takes_another_clients_lease() {
    let mut table = LeaseTable::new(GRACE_MS, 100);
    apply(&mut table, 1, vec![bind(1, 5, T0, 60_000)]);
    assert_eq!(apply(&mut table, 2, vec![decline(2, 5, T0 + 1)]), vec![Outcome::NotHeld]);
    assert_eq!(apply(&mut table, 3, vec![decline(1, 5, T0 + 2)]), vec![Outcome::Declined]);
    assert!(matches!(table.by_ip(ip(5)).map(|l| l.state), Some(LeaseState::Declined { .. })));
    assert_eq!(table.by_client(&client(1)), None, "a declined address is nobody's");
    assert_eq!(
        apply(&mut table, 4, vec![bind(3, 5, T0 + 3, 60_000)]),
        vec![Outcome::Conflict { holder: client(1) }],
        "quarantined during the probation"
    );
}

/// RFC 2131 §4.3.3: a DECLINE reports the client's own address in use. Apply reads only the command
/// and the table: a forged DECLINE — for a free address, one outside every pool, another client's, or
/// one its client released — changes nothing at all.
#[test]
fn rfc2131_4_3_3_a_decline_for_an_address_not_bound_to_its_client_changes_nothing() {
    let mut table = LeaseTable::new(GRACE_MS, 100);
    apply(&mut table, 1, vec![bind(1, 5, T0, 60_000), bind(2, 6, T0, 60_000)]);
    apply(&mut table, 2, vec![release(2, 6, T0 + 1)]);
    let before = table.digest();
    let forged = vec![
        decline(3, 7, T0 + 2),   // a free address
        decline(3, 250, T0 + 2), // an address no pool holds (apply knows no pools: it has no record)
        decline(3, 5, T0 + 2),   // bound to client 1
        decline(2, 6, T0 + 2),   // its own, but released
        decline(1, 6, T0 + 2),   // released by another client
    ];
    assert_eq!(apply(&mut table, 3, forged), vec![Outcome::NotHeld; 5]);
    assert_eq!(table.len(), 2, "no record was made");
    assert_eq!(table.by_client(&client(1)).map(|l| l.state), Some(LeaseState::Bound { expires_at_ms: T0 + 60_000 }));
    // The digest covers the records and the applied index; only the index moved.
    let mut unchanged = LeaseTable::new(GRACE_MS, 100);
    apply(&mut unchanged, 1, vec![bind(1, 5, T0, 60_000), bind(2, 6, T0, 60_000)]);
    apply(&mut unchanged, 2, vec![release(2, 6, T0 + 1)]);
    unchanged.skip(3);
    assert_eq!(table.digest(), unchanged.digest(), "forged DECLINEs left the table as it was ({before:x} before)");
}

/// A flood of forged DECLINEs (each one a committed log entry) cannot fill `max_leases`: once the
/// table is full, new bindings would fail with `TableFull`, so they must never make records.
#[test]
fn a_decline_flood_never_fills_the_table() {
    let mut table = LeaseTable::new(GRACE_MS, 3);
    apply(&mut table, 1, vec![bind(1, 5, T0, 60_000)]);
    for (i, a) in (10u8..=200).enumerate() {
        let outcomes = apply(&mut table, 2 + i as u64, vec![decline(100, a, T0 + i as u64)]);
        assert_eq!(outcomes, vec![Outcome::NotHeld], "DECLINE of the free {}", ip(a));
    }
    assert_eq!(table.len(), 1);
    let bound = apply(&mut table, 300, vec![bind(2, 6, T0 + 500, 60_000), bind(3, 7, T0 + 500, 60_000)]);
    assert!(bound.iter().all(|o| matches!(o, Outcome::Bound(_))), "new clients still bind: {bound:?}");
}

/// Log entries written before the DECLINE rules replay as they were applied then (DESIGN rule 4): the
/// old `Decline` (third in the encoding) decodes as `DeclineUnchecked`, which quarantines a free
/// address as it always did, so a replica replaying the old log and one restored from a snapshot taken
/// by the old version hold the same table.
#[test]
fn declines_in_entries_written_before_the_rules_replay_as_they_applied_then() {
    #[derive(serde::Serialize)]
    #[allow(dead_code)]
    enum CommandBefore {
        Bind,
        Release,
        Decline {
            client: ClientKey,
            mac: [u8; 6],
            ip: Ipv4Addr,
            until_ms: u64,
            proposed_at_ms: u64,
            decided_at_index: u64,
        },
    }
    #[derive(serde::Serialize)]
    struct ProposalBefore {
        tag: ProposalTag,
        command: CommandBefore,
    }
    let old = vec![ProposalBefore {
        tag: ProposalTag { node_id: 1, incarnation: 1, seq: 0 },
        command: CommandBefore::Decline {
            client: client(3),
            mac: [2, 0, 0, 0, 0, 3],
            ip: ip(7),
            until_ms: T0 + 900_000,
            proposed_at_ms: T0,
            decided_at_index: 0,
        },
    }];
    let mut data = vec![0xff, b'L', b'E', 1];
    data.extend(bincode::serde::encode_to_vec(&old, bincode::config::standard()).unwrap());
    let proposals = decode_entry(&data).expect("an entry of version 1 decodes");
    assert!(matches!(&proposals[0].command, Command::DeclineUnchecked { ip: a, .. } if *a == ip(7)), "{proposals:?}");
    let mut table = LeaseTable::new(GRACE_MS, 100);
    assert_eq!(table.apply(1, &proposals), Some(vec![Outcome::Declined]), "as the version that wrote it applied it");
    assert!(matches!(table.by_ip(ip(7)).map(|l| l.state), Some(LeaseState::Declined { .. })));
    // And this build's DECLINE round-trips as itself.
    let new = vec![Proposal { tag: ProposalTag { node_id: 1, incarnation: 1, seq: 1 }, command: decline(3, 7, T0) }];
    assert_eq!(decode_entry(&encode_entry(&new)).expect("decodes"), new);
}

#[test]
fn max_leases_is_a_hard_limit() {
    let mut table = LeaseTable::new(GRACE_MS, 2);
    apply(&mut table, 1, vec![bind(1, 5, T0, 60_000), bind(2, 6, T0, 60_000)]);
    assert_eq!(apply(&mut table, 2, vec![bind(3, 7, T0, 60_000)]), vec![Outcome::TableFull]);
    assert!(
        matches!(apply(&mut table, 3, vec![bind(1, 5, T0 + 1, 60_000)])[0], Outcome::Bound(_)),
        "renewals still work"
    );
}

fn reserve(c: u8, a: u8, at: u64) -> Command {
    let host =
        ReservedHost { mac: [2, 0, 0, 0, 0, c], ip: ip(a), hostname: Some(format!("host-{c}")), boot_file: None };
    Command::Reserve { host, proposed_at_ms: at }
}

fn collect(addresses: &[u8], reusable_before_ms: u64) -> Command {
    let ips = addresses.iter().map(|a| ip(*a)).collect();
    Command::Collect { ips, reusable_before_ms, decided_at_index: SEEN }
}

fn command() -> impl Strategy<Value = Command> {
    (0u8..6, 1u8..8, 1u8..8, 0u64..200_000, 0u64..45).prop_flat_map(|(kind, c, a, at, seen)| {
        let at = T0 + at;
        Just(decided_at(
            seen,
            match kind {
                0 => bind(c, a, at, 60_000),
                1 => release(c, a, at),
                2 => decline(c, a, at),
                3 => reserve(c, a, at),
                4 => collect(&[a, c], at),
                _ => Command::Unreserve { mac: [2, 0, 0, 0, 0, c] },
            },
        ))
    })
}

/// A reservation over the API is refused while another client holds an unexpired lease on the
/// address or another MAC has it reserved; it moves with a new one for the same MAC; it ends.
#[test]
fn reservations_are_refused_while_another_client_holds_the_address() {
    let mut table = LeaseTable::new(GRACE_MS, 100);
    apply(&mut table, 1, vec![bind(1, 5, T0, 60_000)]);
    let refused = apply(&mut table, 2, vec![reserve(2, 5, T0 + 1)]);
    assert!(matches!(&refused[0], Outcome::ReservationRefused(why) if why.contains("leased to")), "{refused:?}");
    assert_eq!(table.reserved_for(ip(5)), None);
    assert_eq!(apply(&mut table, 3, vec![reserve(1, 5, T0 + 2)]), vec![Outcome::Reserved], "the holder itself may");
    let taken = apply(&mut table, 4, vec![reserve(2, 5, T0 + 3)]);
    assert!(matches!(&taken[0], Outcome::ReservationRefused(why) if why.contains("already reserved")));
    // After the lease is over (expiry + grace), another MAC could reserve a free address.
    assert_eq!(apply(&mut table, 5, vec![reserve(1, 6, T0 + 4)]), vec![Outcome::Reserved], "moved to .6");
    assert_eq!((table.reserved_for(ip(5)), table.reserved_for(ip(6))), (None, Some([2, 0, 0, 0, 0, 1])));
    assert_eq!(apply(&mut table, 6, vec![reserve(2, 5, T0 + 60_000 + GRACE_MS)]), vec![Outcome::Reserved]);
    assert_eq!(apply(&mut table, 7, vec![Command::Unreserve { mac: [2, 0, 0, 0, 0, 1] }]), vec![Outcome::Unreserved]);
    assert_eq!(apply(&mut table, 8, vec![Command::Unreserve { mac: [2, 0, 0, 0, 0, 1] }]), vec![Outcome::NotHeld]);
    assert_eq!(table.reservations().count(), 1);
    let restored = LeaseTable::from_snapshot(&table.to_snapshot(), GRACE_MS, 100).expect("decodes");
    assert_eq!(
        restored.reservation(&[2, 0, 0, 0, 0, 2]).map(|h| h.ip),
        Some(ip(5)),
        "reservations are in the snapshot"
    );
}

/// A snapshot is rebuilt in bulk and checked as it is: a client holding two records, or records out
/// of address order, is refused as corrupt instead of becoming a table with two bindings per client.
#[test]
fn a_snapshot_with_a_client_in_two_records_or_out_of_order_is_refused() {
    #[derive(serde::Serialize)]
    struct SnapshotV1 {
        applied_index: u64,
        leases: Vec<leasehold_cluster::Lease>,
    }
    let mut table = LeaseTable::new(GRACE_MS, 100);
    apply(&mut table, 1, vec![bind(1, 5, T0, 60_000), bind(2, 6, T0, 60_000)]);
    let leases: Vec<_> = table.iter().cloned().collect();
    let encode = |leases: Vec<leasehold_cluster::Lease>| {
        bincode::serde::encode_to_vec(SnapshotV1 { applied_index: 1, leases }, bincode::config::standard()).unwrap()
    };

    let mut twice = leases.clone();
    twice[1].client = twice[0].client.clone();
    let err = LeaseTable::from_snapshot(&encode(twice), GRACE_MS, 100).unwrap_err().to_string();
    assert!(err.contains("holds two records"), "{err}");

    let reversed: Vec<_> = leases.iter().rev().cloned().collect();
    let err = LeaseTable::from_snapshot(&encode(reversed), GRACE_MS, 100).unwrap_err().to_string();
    assert!(err.contains("out of address order"), "{err}");

    let restored = LeaseTable::from_snapshot(&encode(leases), GRACE_MS, 100).expect("the table as written");
    assert_eq!(restored.digest(), table.digest());
}

/// Encodings carry a version (issue 10): a snapshot or entry written before versions existed (plain
/// bincode) still decodes, and an unknown future version is refused with a clear error.
#[test]
fn snapshots_and_entries_are_versioned_and_earlier_ones_still_read() {
    #[derive(serde::Serialize)]
    struct SnapshotV1 {
        applied_index: u64,
        leases: Vec<leasehold_cluster::Lease>,
    }
    let mut table = LeaseTable::new(GRACE_MS, 100);
    apply(&mut table, 1, vec![bind(1, 5, T0, 60_000)]);
    let v1 = SnapshotV1 { applied_index: 1, leases: table.iter().cloned().collect() };
    let legacy = bincode::serde::encode_to_vec(&v1, bincode::config::standard()).unwrap();
    let restored = LeaseTable::from_snapshot(&legacy, GRACE_MS, 100).expect("an unversioned snapshot still reads");
    assert_eq!(restored.digest(), table.digest());
    let mut future = table.to_snapshot();
    assert_eq!(future[0], 0xff, "versioned");
    future[3] = 9;
    let err = LeaseTable::from_snapshot(&future, GRACE_MS, 100).unwrap_err().to_string();
    assert!(err.contains("version 9"), "{err}");

    let proposals =
        vec![Proposal { tag: ProposalTag { node_id: 1, incarnation: 1, seq: 0 }, command: reserve(1, 5, T0) }];
    assert_eq!(decode_entry(&encode_entry(&proposals)).unwrap(), proposals);
    let unversioned =
        vec![Proposal { tag: ProposalTag { node_id: 1, incarnation: 1, seq: 1 }, command: bind(1, 5, T0, 1) }];
    let legacy = bincode::serde::encode_to_vec(&unversioned, bincode::config::standard()).unwrap();
    assert_eq!(decode_entry(&legacy).unwrap(), unversioned);
}

proptest! {
    /// Two replicas applying the same log end in the same table, a snapshot rebuilds it exactly, and
    /// no address is ever bound (unexpired) to two clients.
    #[test]
    fn replicas_that_apply_the_same_log_agree(entries in proptest::collection::vec(proptest::collection::vec(command(), 1..5), 1..40)) {
        let mut a = LeaseTable::new(GRACE_MS, 6);
        let mut b = LeaseTable::new(GRACE_MS, 6);
        for (i, entry) in entries.iter().enumerate() {
            let index = i as u64 + 1;
            let outcomes_a = apply(&mut a, index, entry.clone());
            let outcomes_b = apply(&mut b, index, entry.clone());
            prop_assert_eq!(outcomes_a, outcomes_b);
            prop_assert_eq!(a.digest(), b.digest());
            prop_assert!(a.check_invariants().is_ok(), "{:?}", a.check_invariants());
        }
        let restored = LeaseTable::from_snapshot(&a.to_snapshot(), GRACE_MS, 6).expect("snapshot decodes");
        prop_assert_eq!(restored.digest(), a.digest());
        prop_assert_eq!(restored.applied_index(), a.applied_index());
    }
}

proptest! {
    /// A snapshot written a slice at a time while entries go on applying is byte for byte the
    /// snapshot of the table as it was when it began (copy on write of the records it had not reached
    /// yet), whatever the slices and whatever the entries change in between; the table it leaves is the
    /// one a table that never snapshotted has.
    #[test]
    fn a_snapshot_written_in_slices_is_the_table_when_it_began(
        before in proptest::collection::vec(proptest::collection::vec(command(), 1..5), 1..30),
        during in proptest::collection::vec((proptest::collection::vec(command(), 1..5), 0usize..4), 1..30),
    ) {
        let mut table = LeaseTable::new(GRACE_MS, 6);
        let mut index = 0;
        for entry in before {
            index += 1;
            apply(&mut table, index, entry);
        }
        let expected = table.to_snapshot();
        let mut plain = table.clone();
        // The encoder is another value (it may run on another thread): the table hands it copies of
        // the records as they were, a slice at a time, between entries.
        let mut encoder = table.begin_snapshot();
        let mut records = Vec::new();
        let mut done = false;
        for (entry, slice) in during {
            if !done {
                records.clear();
                done = table.snapshot_records(slice, &mut records);
                prop_assert!(records.len() <= slice);
                encoder.encode(&records);
            }
            index += 1;
            let outcomes = apply(&mut table, index, entry.clone());
            prop_assert_eq!(outcomes, apply(&mut plain, index, entry));
            prop_assert_eq!(table.digest(), plain.digest());
        }
        if !done {
            records.clear();
            prop_assert!(table.snapshot_records(usize::MAX, &mut records), "a slice without limit completes it");
            encoder.encode(&records);
        }
        let (at, bytes) = encoder.finish();
        prop_assert!(!table.snapshot_in_progress());
        prop_assert_eq!(at, LeaseTable::from_snapshot(&expected, GRACE_MS, 6).unwrap().applied_index());
        prop_assert_eq!(bytes, expected);
        prop_assert_eq!(table.digest(), plain.digest());
    }
}

proptest! {
    /// Record collection, over random histories and random collections (any addresses named, any
    /// cut-off, decided at any index): a record that is still live at the cut-off (bound and not past
    /// expiry plus grace, declined and in probation) or that changed after the proposer decided is
    /// left exactly as it was; only old records the collection names are forgotten.
    #[test]
    fn collection_never_forgets_a_live_binding(
        history in proptest::collection::vec(proptest::collection::vec(command(), 1..5), 1..40),
        collections in proptest::collection::vec((proptest::collection::vec(1u8..8, 1..8), 0u64..300_000, 0u64..90), 1..20),
    ) {
        let mut table = LeaseTable::new(GRACE_MS, 6);
        let mut index = 0;
        let mut collections = collections.into_iter();
        for entry in history {
            index += 1;
            apply(&mut table, index, entry);
            let Some((addresses, cut, seen)) = collections.next() else { continue };
            let cut = T0 + cut;
            let before: Vec<Lease> = table.iter().cloned().collect();
            index += 1;
            apply(&mut table, index, vec![decided_at(seen, collect(&addresses, cut))]);
            for lease in &before {
                let named = addresses.iter().any(|a| ip(*a) == lease.ip);
                let old = lease.reusable_at_ms(GRACE_MS) <= cut && !lease.is_active(cut);
                if named && old && lease.changed_at_index <= seen {
                    prop_assert_eq!(table.by_ip(lease.ip), None, "an old record named by the collection stays");
                } else {
                    prop_assert_eq!(table.by_ip(lease.ip), Some(lease), "collection changed a record it must keep");
                }
            }
            prop_assert!(table.iter().count() <= before.len(), "collection added records");
            prop_assert!(table.check_invariants().is_ok(), "{:?}", table.check_invariants());
        }
    }
}

/// Record collection forgets records reusable since the cut-off, never a live binding, nor a record
/// that changed after the proposer decided (it may be bound again by then).
#[test]
fn collection_forgets_old_records_and_never_a_live_binding() {
    let mut table = LeaseTable::new(GRACE_MS, 100);
    apply(&mut table, 1, vec![bind(1, 5, T0, 60_000), bind(2, 6, T0, 60_000), bind(3, 7, T0, 600_000)]);
    apply(&mut table, 2, vec![release(2, 6, T0 + 1_000)]);
    // At T0 + 100 s: .5 expired at T0 + 60 s (reusable 30 s later), .6 released, .7 still bound.
    let cut = T0 + 100_000;
    assert_eq!(apply(&mut table, 3, vec![collect(&[5, 6, 7, 9], cut)]), vec![Outcome::Collected(2)]);
    assert_eq!((table.by_ip(ip(5)), table.by_ip(ip(6))), (None, None));
    assert_eq!(table.by_client(&client(1)), None, "the client's memory of its address goes too");
    assert!(table.by_ip(ip(7)).is_some_and(|l| l.is_active(cut)), "a live binding stays");
    // A record that changed after the proposer decided (index 3) stays: it was bound again.
    apply(&mut table, 4, vec![bind(4, 8, T0, 1_000)]);
    apply(&mut table, 5, vec![bind(4, 8, T0 + 200_000, 60_000)]);
    let late = decided_at(4, collect(&[8], T0 + 500_000));
    assert_eq!(apply(&mut table, 6, vec![late]), vec![Outcome::Collected(0)]);
    assert!(table.by_ip(ip(8)).is_some());
}

/// DESIGN rule 4: apply's parameters come from the log. Two tables made with different local
/// grace periods (two nodes with different config files) apply a `SetParameters` and from then on
/// decide alike; the parameters travel in the snapshot.
#[test]
fn parameters_from_the_log_make_replicas_with_different_files_agree() {
    use leasehold_cluster::lease::Parameters;
    let mut a = LeaseTable::new(GRACE_MS, 100);
    let mut b = LeaseTable::new(GRACE_MS * 10, 100);
    let set = Command::SetParameters(Parameters { grace_ms: 5_000, max_leases: 100 });
    for table in [&mut a, &mut b] {
        let outcomes = apply(table, 1, vec![set.clone(), bind(1, 5, T0, 60_000)]);
        assert!(matches!(outcomes[..], [Outcome::ParametersSet, Outcome::Bound(_)]), "{outcomes:?}");
    }
    // 6 s after expiry: past the log's grace (5 s), inside b's own (300 s).
    let take = vec![bind(2, 5, T0 + 66_000, 60_000)];
    let (outcome_a, outcome_b) = (apply(&mut a, 2, take.clone()), apply(&mut b, 2, take));
    assert!(matches!(outcome_a[0], Outcome::Bound(_)), "{outcome_a:?}");
    assert_eq!(outcome_a.len(), outcome_b.len());
    assert!(matches!(outcome_b[0], Outcome::Bound(_)), "b applies the log's grace, not its own: {outcome_b:?}");
    assert_eq!(a.digest(), b.digest());
    let restored = LeaseTable::from_snapshot(&b.to_snapshot(), 1, 1).expect("decodes");
    assert_eq!(restored.parameters(), (Parameters { grace_ms: 5_000, max_leases: 100 }, true));
}

/// Records stay compact (issue 10: RSS per lease): a client key is 16 bytes (a MAC, or a boxed
/// client identifier), a record 80 (client id and host name behind one pointer).
#[test]
fn records_stay_compact() {
    assert_eq!(std::mem::size_of::<ClientKey>(), 16);
    assert!(
        std::mem::size_of::<leasehold_cluster::Lease>() <= 80,
        "{} bytes",
        std::mem::size_of::<leasehold_cluster::Lease>()
    );
}

/// A record encodes field by field exactly as the derived encoding of earlier builds did (client id
/// and host name each an option, in their place), with or without the details behind the pointer:
/// snapshots and entries written before still read, and what is written now reads back.
#[test]
fn a_record_encodes_as_it_did_before_its_details_moved_behind_a_pointer() {
    #[derive(serde::Serialize)]
    struct Before {
        ip: Ipv4Addr,
        client: ClientKey,
        mac: [u8; 6],
        client_id: Option<Vec<u8>>,
        hostname: Option<String>,
        state: LeaseState,
        updated_at_ms: u64,
        changed_at_index: u64,
        bound_by: u64,
    }
    let mut table = LeaseTable::new(GRACE_MS, 100);
    let with_details = Command::Bind {
        client: ClientKey::ClientId(Box::from(&b"\x01xyz"[..])),
        mac: [2, 0, 0, 0, 0, 7],
        client_id: Some(b"\x01xyz".to_vec()),
        hostname: Some("rack4-node2".into()),
        ip: ip(7),
        expires_at_ms: T0 + 60_000,
        proposed_at_ms: T0,
        decided_at_index: SEEN,
    };
    // Option 61 in the hardware form (type 1 and the client's own MAC) is kept as a flag, not bytes;
    // type 1 with another MAC is kept as sent.
    let hardware_id = |mac: [u8; 6], id_mac: [u8; 6], a: u8, hostname: Option<&str>| {
        let mut client_id = vec![1];
        client_id.extend_from_slice(&id_mac);
        Command::Bind {
            client: ClientKey::Mac(mac),
            mac,
            client_id: Some(client_id),
            hostname: hostname.map(str::to_string),
            ip: ip(a),
            expires_at_ms: T0 + 60_000,
            proposed_at_ms: T0,
            decided_at_index: SEEN,
        }
    };
    apply(
        &mut table,
        1,
        vec![
            with_details,
            bind(3, 8, T0, 60_000),
            hardware_id([2, 0, 0, 0, 0, 9], [2, 0, 0, 0, 0, 9], 9, None),
            hardware_id([2, 0, 0, 0, 0, 10], [2, 0, 0, 0, 0, 10], 10, Some("pxe-10")),
            hardware_id([2, 0, 0, 0, 0, 11], [2, 0, 0, 0, 0, 99], 11, None),
        ],
    );
    assert_eq!(table.by_ip(ip(9)).unwrap().client_id().as_deref(), Some(&[1, 2, 0, 0, 0, 0, 9][..]));
    assert_eq!(table.by_ip(ip(10)).unwrap().client_id().as_deref(), Some(&[1, 2, 0, 0, 0, 0, 10][..]));
    assert_eq!(table.by_ip(ip(10)).unwrap().hostname(), Some("pxe-10"));
    assert_eq!(table.by_ip(ip(11)).unwrap().client_id().as_deref(), Some(&[1, 2, 0, 0, 0, 0, 99][..]));
    for lease in table.iter() {
        let before = Before {
            ip: lease.ip,
            client: lease.client.clone(),
            mac: lease.mac,
            client_id: lease.client_id().map(|id| id.to_vec()),
            hostname: lease.hostname().map(str::to_string),
            state: lease.state,
            updated_at_ms: lease.updated_at_ms,
            changed_at_index: lease.changed_at_index,
            bound_by: lease.bound_by,
        };
        let old = bincode::serde::encode_to_vec(&before, bincode::config::standard()).unwrap();
        assert_eq!(bincode::serde::encode_to_vec(lease, bincode::config::standard()).unwrap(), old);
        let (back, _): (leasehold_cluster::Lease, usize) =
            bincode::serde::decode_from_slice(&old, bincode::config::standard()).unwrap();
        assert_eq!(&back, lease);
    }
    let seven = table.by_ip(ip(7)).unwrap();
    assert_eq!((seven.client_id().as_deref(), seven.hostname()), (Some(&b"\x01xyz"[..]), Some("rack4-node2")));
    let eight = table.by_ip(ip(8)).unwrap();
    assert_eq!((eight.client_id(), eight.hostname()), (None, None));
}

proptest! {
    /// The etcd store's path gives the Raft store's table: a replica that only applies the changes
    /// the proposer decided (`decide`, then `apply_changes`, as a watch delivers them) ends every
    /// step with the same records, reservations and parameters as one that applies the commands,
    /// and with the same outcomes.
    #[test]
    fn applying_decided_changes_gives_the_table_applying_commands_gives(
        commands in proptest::collection::vec(command(), 1..60),
    ) {
        let mut by_commands = LeaseTable::new(GRACE_MS, 6);
        let mut by_changes = LeaseTable::new(GRACE_MS, 6);
        for (i, command) in commands.into_iter().enumerate() {
            let index = i as u64 + 1;
            let decided = by_changes.decide(index, 1, &command);
            let proposal = Proposal { tag: ProposalTag { node_id: 1, incarnation: 1, seq: index }, command };
            let outcomes = by_commands.apply(index, &[proposal]).expect("a new index");
            prop_assert_eq!(&outcomes[0], &decided.outcome);
            // What an etcd watch delivers: records without the index they carried when decided.
            let changes = decided.changes.into_iter().map(|change| match change {
                Change::Put(mut lease) => { lease.changed_at_index = 0; Change::Put(lease) }
                other => other,
            }).collect();
            by_changes.apply_changes(index, changes, &mut Vec::new());
            prop_assert_eq!(by_changes.digest(), by_commands.digest());
            prop_assert_eq!(by_changes.reservations().collect::<Vec<_>>(), by_commands.reservations().collect::<Vec<_>>());
            prop_assert_eq!(by_changes.applied_index(), index);
            prop_assert!(by_changes.check_invariants().is_ok());
        }
    }
}
