//! The lease actor's handling of Raft mail as transcripts: what each mail does to the engine and
//! what it asks the actor to do.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use leasehold_cluster::{CommittedEntry, LeaseTable, ProposalTag, RaftStatus, ToStateMachine};
use leasehold_config::{ClientIdentity, Cluster, Config, Interface, Limits, LogFormat, LogLevel, Pool, Pxe, Subnet};

use super::*;
use crate::engine::{Action, Engine, Role};
use crate::wire::{ClientMessageType, ReplyType, Request};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const NOW_US: u64 = 1_700_000_000_000_000;
const CHADDR: [u8; 6] = [2, 0, 0, 0, 0, 1];

fn config() -> Config {
    Config {
        interfaces: vec![Interface { name: None, server_ip: SERVER }],
        server_ip: SERVER,
        server_port: 67,
        client_port: 68,
        admin_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 6767)),
        data_dir: PathBuf::from("/nonexistent"),
        fsync: true,
        log_format: LogFormat::Term,
        log_level: LogLevel::Info,
        identity: ClientIdentity::Mac,
        pools: vec![Pool {
            name: "lab".into(),
            subnet: Subnet { network: Ipv4Addr::new(10, 0, 0, 0), prefix_len: 24 },
            range_start: Ipv4Addr::new(10, 0, 0, 100),
            range_end: Ipv4Addr::new(10, 0, 0, 110),
            routers: vec![SERVER],
            dns_servers: vec![SERVER],
            domain_name: None,
            lease_time_secs: 3600,
            renewal_time_secs: 1800,
            rebinding_time_secs: 3150,
            pxe: None,
            dynamic_bootp: false,
            bootp_lease_time_secs: 3600,
            options: Default::default(),
        }],
        pxe: Pxe::default(),
        reservations: Vec::new(),
        options: Default::default(),
        classes: Vec::new(),
        limits: Limits { snapshot_every_entries: 1, ..Limits::default() },
        cluster: Cluster::default(),
        admin: Default::default(),
        boot: Default::default(),
        store: Default::default(),
    }
}

fn engine() -> Engine {
    let config = config();
    let table = LeaseTable::new(config.limits.expiry_grace_secs * 1000, config.limits.max_leases);
    Engine::new(Arc::new(config), table, 1, 7)
}

fn leader(node_id: u64, term: u64) -> RaftStatus {
    RaftStatus {
        node_id,
        term,
        leader_id: Some(node_id),
        is_leader: true,
        lease_until_us: Some(u64::MAX),
        commit_index: 0,
    }
}

fn no_status() -> RaftStatus {
    RaftStatus { node_id: 1, term: 0, leader_id: None, is_leader: false, lease_until_us: None, commit_index: 0 }
}

fn nothing(_: &CommittedEntry, _: &Engine) {}

/// RFC 2131 §4.3.2: the leader's REQUEST for an offered address becomes a proposal; its entry,
/// committed and applied, becomes the ACK — tagged with the index it was built from.
#[test]
fn committed_entries_become_replies_tagged_with_their_index() {
    let mut engine = engine();
    let mut status = no_status();
    let change = on_status(&mut engine, &mut status, leader(1, 3), NOW_US);
    assert_eq!(change, StatusChange { elected: true, raft_role_changed: true, role: Some(Role::Leader) });
    let Action::Send(offer) = engine.handle(&Request::new(ClientMessageType::Discover, 1, CHADDR), NOW_US) else {
        panic!("the leader offers")
    };
    let request = Request {
        requested_ip: Some(offer.reply.yiaddr),
        server_id: Some(SERVER),
        ..Request::new(ClientMessageType::Request, 2, CHADDR)
    };
    let Action::Propose(proposal) = engine.handle(&request, NOW_US) else { panic!("a binding is proposed") };
    let entries = vec![
        CommittedEntry { index: 1, proposals: Vec::new(), changes_membership: false, membership: Vec::new() },
        CommittedEntry { index: 2, proposals: vec![proposal], changes_membership: false, membership: Vec::new() },
    ];
    let mut seen = Vec::new();
    let applied = on_raft_mail(&mut engine, ToStateMachine::Entries(entries), NOW_US, |entry, engine| {
        seen.push((entry.index, engine.table().applied_index()))
    })
    .expect("entries apply");
    assert_eq!(seen, vec![(1, 1), (2, 2)], "the observer sees the table after each entry");
    assert_eq!(applied.replies.len(), 1);
    assert_eq!(applied.replies[0].outgoing.reply.message_type, ReplyType::Ack);
    assert_eq!(applied.replies[0].index, 2);
    assert_eq!(applied.commit_latencies_us, vec![0]);
    assert!(applied.snapshot_due);
    // The snapshot is due: one slice copies the one record and carries the encoder; finished, it
    // is the table's snapshot at index 2, compressed (version 6), and none is due after it.
    let part = snapshot_slice(&mut engine, 1_000).expect("a snapshot is due");
    let (mut encoder, records) = (part.begun.expect("this slice began it"), part.records);
    assert!(part.last && records.len() == 1, "{} records, last {}", records.len(), part.last);
    encoder.encode(&records);
    let (index, written, data) = finish_snapshot(encoder);
    assert_eq!((index, written), (2, engine.table().to_snapshot().len()));
    assert_eq!(data[3], 6, "version 6: compressed");
    assert_eq!(LeaseTable::from_snapshot(&data, 60_000, 1_000).expect("decodes").digest(), engine.table().digest());
    assert!(snapshot_slice(&mut engine, 1_000).is_none());
}

#[test]
fn a_snapshot_from_the_leader_replaces_the_table() {
    let mut engine = engine();
    let mut table = LeaseTable::new(60_000, 1_000);
    table.skip(9);
    let data = table.to_snapshot();
    let applied = on_raft_mail(&mut engine, ToStateMachine::Restore { index: 9, data }, NOW_US, nothing).unwrap();
    assert_eq!(applied.restored, Some((9, 0)));
    assert_eq!(engine.table().applied_index(), 9);
}

/// An unusable snapshot is fatal: the node must not serve on from a table the log has moved past.
#[test]
fn a_snapshot_that_does_not_decode_or_is_at_another_index_is_unusable() {
    let mut engine = engine();
    let garbage = ToStateMachine::Restore { index: 9, data: vec![0xff; 16] };
    let unusable = on_raft_mail(&mut engine, garbage, NOW_US, nothing).expect_err("garbage is unusable");
    assert_eq!(unusable.index, 9);

    let mut table = LeaseTable::new(60_000, 1_000);
    table.skip(8);
    let elsewhere = ToStateMachine::Restore { index: 9, data: table.to_snapshot() };
    let unusable = on_raft_mail(&mut engine, elsewhere, NOW_US, nothing).expect_err("a table at 8 is not the one at 9");
    assert!(unusable.reason.contains("applied to 8"), "{unusable}");
    assert_eq!(engine.table().applied_index(), 0, "the table is left as it was");
}

#[test]
fn rejected_proposals_answer_their_admin_requests_as_unavailable() {
    let mut engine = engine();
    let tag = ProposalTag { node_id: 1, incarnation: 7, seq: 3 };
    let applied = on_raft_mail(&mut engine, ToStateMachine::Rejected(vec![tag]), NOW_US, nothing).unwrap();
    assert!(matches!(applied.admin.as_slice(), [(t, Err(AdminError::Unavailable(_)))] if *t == tag));
    assert!(!applied.snapshot_due);
}

/// DESIGN rule 2: a leader answers broadcasts only while its leader lease lasts.
#[test]
fn the_role_follows_the_status_and_the_leader_lease() {
    let mut engine = engine();
    let mut status = no_status();
    let leased = RaftStatus { lease_until_us: Some(NOW_US + 1_000), ..leader(1, 2) };
    assert_eq!(on_status(&mut engine, &mut status, leased, NOW_US).role, Some(Role::Leader));
    assert_eq!(refresh_role(&mut engine, &status, NOW_US + 999), None, "still leased");
    assert_eq!(refresh_role(&mut engine, &status, NOW_US + 1_000), Some(Role::NoQuorum), "the lease ran out");
    let follower = RaftStatus { is_leader: false, leader_id: Some(2), lease_until_us: None, term: 3, ..status };
    let change = on_status(&mut engine, &mut status, follower, NOW_US);
    assert_eq!(change, StatusChange { elected: false, raft_role_changed: true, role: Some(Role::Follower) });
    let again = on_status(&mut engine, &mut status, follower, NOW_US);
    assert_eq!(again, StatusChange { elected: false, raft_role_changed: false, role: None });
}
