//! The lease state machine, as transcripts of committed log entries (DESIGN rule 4: apply is a pure,
//! deterministic function of the log; the proposer decides address, expiry and time).

use std::net::Ipv4Addr;

use leasehold_cluster::lease::{ClientKey, Command, LeaseState, LeaseTable, Outcome, Proposal, ProposalTag};
use proptest::prelude::*;

const GRACE_MS: u64 = 30_000;
const T0: u64 = 1_700_000_000_000;

fn client(n: u8) -> ClientKey {
    ClientKey::Mac([2, 0, 0, 0, 0, n])
}

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

fn bind(c: u8, a: u8, at: u64, lease_ms: u64) -> Command {
    Command::Bind {
        client: client(c),
        mac: [2, 0, 0, 0, 0, c],
        client_id: None,
        hostname: None,
        ip: ip(a),
        expires_at_ms: at + lease_ms,
        proposed_at_ms: at,
    }
}

fn release(c: u8, a: u8, at: u64) -> Command {
    Command::Release { client: client(c), ip: ip(a), proposed_at_ms: at }
}

fn decline(c: u8, a: u8, at: u64) -> Command {
    Command::Decline {
        client: client(c),
        mac: [2, 0, 0, 0, 0, c],
        ip: ip(a),
        until_ms: at + 900_000,
        proposed_at_ms: at,
    }
}

/// Apply `commands` as one entry at `index`.
fn apply(table: &mut LeaseTable, index: u64, commands: Vec<Command>) -> Vec<Outcome> {
    let proposals: Vec<Proposal> = commands
        .into_iter()
        .enumerate()
        .map(|(seq, command)| Proposal { tag: ProposalTag { node_id: 1, incarnation: 1, seq: seq as u64 }, command })
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

#[test]
fn rfc2131_4_3_4_a_release_decided_before_a_newer_binding_does_not_end_it() {
    // The client released at T0+10 (the RELEASE was held up behind a partition), then bound again at
    // T0+20 on the majority side; the late RELEASE commits after that binding.
    let mut table = LeaseTable::new(GRACE_MS, 100);
    apply(&mut table, 1, vec![bind(1, 5, T0, 60_000)]);
    apply(&mut table, 2, vec![bind(1, 5, T0 + 20, 60_000)]);
    assert_eq!(apply(&mut table, 3, vec![release(1, 5, T0 + 10)]), vec![Outcome::NotHeld]);
    assert_eq!(expiry(&table, 5), T0 + 20 + 60_000, "the newer binding stands");
    assert_eq!(apply(&mut table, 4, vec![release(1, 5, T0 + 30)]), vec![Outcome::Released], "a current RELEASE works");
}

#[test]
fn a_renewal_decided_before_a_newer_one_does_not_move_the_expiry_back() {
    let mut table = LeaseTable::new(GRACE_MS, 100);
    apply(&mut table, 1, vec![bind(1, 5, T0, 60_000)]);
    apply(&mut table, 2, vec![bind(1, 5, T0 + 20_000, 60_000)]);
    let stale = apply(&mut table, 3, vec![bind(1, 5, T0 + 10_000, 60_000)]);
    assert!(
        matches!(&stale[0], Outcome::Bound(l) if l.updated_at_ms == T0 + 20_000),
        "answered from the binding in force: {stale:?}"
    );
    assert_eq!(expiry(&table, 5), T0 + 80_000, "the stale renewal did not shorten the lease");
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

fn command() -> impl Strategy<Value = Command> {
    (0u8..3, 1u8..8, 1u8..8, 0u64..200_000).prop_flat_map(|(kind, c, a, at)| {
        let at = T0 + at;
        Just(match kind {
            0 => bind(c, a, at, 60_000),
            1 => release(c, a, at),
            _ => decline(c, a, at),
        })
    })
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
