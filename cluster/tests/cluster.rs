//! Three replicas in one process over `MemLog`, messages delivered by a loop: the seed of the
//! deterministic simulation. Election timeouts are pinned per node, so every run is the same.
//! Checks Raft's guarantees as Leasehold relies on them: a leader is elected, a proposal commits on
//! every member in the same order, a restarted member replays, a member far behind catches up from a
//! snapshot, and a deposed leader's proposals are reported rejected instead of being left waiting.

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use common::{logger, proposal, seqs, Applier};
use leasehold_cluster::replica::{admin_addr_number, Actions, Persist, Replica, ReplicaConfig};
use leasehold_cluster::storage::{CatchUpMark, DurableLog, MemLog};
use leasehold_cluster::{ClusterError, ProposalTag};
use raft::eraftpb::{Message, MessageType};

const ELECTION_TICKS: usize = 10;
const MAX_ROUNDS: usize = 500;
const TICK_US: u64 = 100_000;

struct Member {
    replica: Replica<MemLog>,
    /// What survives a crash: the simulation keeps it and drops the replica.
    log: MemLog,
    applier: Applier,
    rejected: Vec<ProposalTag>,
}

struct Cluster {
    members: BTreeMap<u64, Member>,
    voters: Vec<u64>,
    in_flight: VecDeque<Message>,
    /// Members cut off from everyone else: their messages in both directions are lost.
    isolated: BTreeSet<u64>,
    /// Members that get no entries (appends and snapshots to them are lost), only heartbeats.
    starved: BTreeSet<u64>,
    /// Ticks so far: the time given to the replicas is `ticks * TICK_US`.
    ticks: u64,
}

impl Cluster {
    fn new(size: u64, keep_entries: u64) -> Self {
        let voters: Vec<u64> = (1..=size).collect();
        let mut cluster = Cluster {
            members: BTreeMap::new(),
            voters,
            in_flight: VecDeque::new(),
            isolated: BTreeSet::new(),
            starved: BTreeSet::new(),
            ticks: 0,
        };
        for id in 1..=size {
            let log = MemLog::with_keep_entries(keep_entries);
            cluster.start(id, log, Applier::empty());
        }
        cluster
    }

    fn config(&self, id: u64, applied: u64) -> ReplicaConfig {
        ReplicaConfig {
            voters: self.voters.clone(),
            applied,
            election_ticks: ELECTION_TICKS,
            // Distinct pinned timeouts: node 1 times out first, no split votes, same run every time.
            election_timeout_ticks: Some(ELECTION_TICKS + 4 * (id as usize - 1)),
            config_digest: 0xc0f1_9000 + id,
            admin_addr: admin_addr_number(admin_addr(id).into()),
            ..ReplicaConfig::new(id)
        }
    }

    fn start(&mut self, id: u64, log: MemLog, applier: Applier) {
        let config = self.config(id, applier.table.applied_index());
        let replica = Replica::new(&config, log.clone(), &logger()).expect("replica starts");
        self.members.insert(id, Member { replica, log, applier, rejected: Vec::new() });
    }

    /// Crash `id` (keeping only its log) and start it again with its table rebuilt from the log's
    /// snapshot, as the node does on restart.
    fn restart(&mut self, id: u64) {
        let member = self.members.remove(&id).expect("member exists");
        let log = member.log;
        drop(member.replica);
        let mut applier = Applier::empty();
        if let Some(snapshot) = log.latest_snapshot().unwrap() {
            applier.restore(snapshot.get_metadata().index, &snapshot.data);
        }
        self.start(id, log, applier);
    }

    /// Crash `id` and start it again with an empty log: its disk was lost (same id, same peers).
    fn wipe(&mut self, id: u64) {
        self.members.remove(&id).expect("member exists");
        self.start(id, MemLog::with_keep_entries(1_000), Applier::empty());
    }

    fn take(&mut self, id: u64, actions: Actions) {
        let member = self.members.get_mut(&id).expect("member exists");
        member.applier.take(&actions);
        member.rejected.extend(actions.rejected);
        self.in_flight.extend(actions.messages);
    }

    /// Advance every member and deliver messages until nothing moves.
    fn settle(&mut self) {
        for _ in 0..MAX_ROUNDS {
            let ids: Vec<u64> = self.members.keys().copied().collect();
            for id in ids {
                while self.members[&id].replica.has_ready() {
                    let actions = common::advance(&mut self.members.get_mut(&id).unwrap().replica).expect("advance");
                    self.take(id, actions);
                }
            }
            if self.in_flight.is_empty() {
                return;
            }
            for message in std::mem::take(&mut self.in_flight) {
                if self.isolated.contains(&message.from) || self.isolated.contains(&message.to) {
                    continue;
                }
                let entries = matches!(message.get_msg_type(), MessageType::MsgAppend | MessageType::MsgSnapshot);
                if entries && self.starved.contains(&message.to) {
                    continue;
                }
                if let Some(member) = self.members.get_mut(&message.to) {
                    // Stale responses from removed peers and the like are dropped, as on the wire.
                    let _ = member.replica.step(message);
                }
            }
        }
        panic!("messages still flowing after {MAX_ROUNDS} rounds");
    }

    fn tick(&mut self) {
        self.ticks += 1;
        let now_us = self.ticks * TICK_US;
        for member in self.members.values_mut() {
            member.replica.tick(now_us);
        }
        self.settle();
    }

    /// Tick until `done` holds; false if it never does within `MAX_ROUNDS` ticks.
    fn run_until(&mut self, mut done: impl FnMut(&Cluster) -> bool) -> bool {
        for _ in 0..MAX_ROUNDS {
            self.settle();
            if done(self) {
                return true;
            }
            self.tick();
        }
        done(self)
    }

    fn leader_among(&self, ids: &[u64]) -> Option<u64> {
        ids.iter().copied().find(|id| self.members[id].replica.is_leader())
    }

    fn leader(&self) -> Option<u64> {
        self.leader_among(&self.voters)
    }

    fn member(&self, id: u64) -> &Member {
        &self.members[&id]
    }

    fn propose(&mut self, id: u64, seqs: std::ops::Range<u64>) {
        let proposals = seqs.map(|seq| proposal(id, seq)).collect();
        self.members.get_mut(&id).unwrap().replica.propose(proposals).expect("the leader accepts");
    }
}

fn elect(cluster: &mut Cluster) -> u64 {
    assert!(cluster.run_until(|c| c.leader().is_some()), "no leader elected");
    cluster.leader().unwrap()
}

/// Three members with `count` bindings committed and applied on all; returns the leader.
fn committed_on_all(count: u64) -> (Cluster, u64) {
    let mut cluster = Cluster::new(3, 1_000);
    let leader = elect(&mut cluster);
    cluster.propose(leader, 0..count);
    assert!(cluster.run_until(|c| c.members.values().all(|m| m.applier.tags.len() as u64 == count)));
    (cluster, leader)
}

#[test]
fn three_members_elect_a_leader_and_commit_on_all() {
    let mut cluster = Cluster::new(3, 1_000);
    let leader = elect(&mut cluster);
    assert_eq!(leader, 1, "node 1 has the shortest pinned timeout");
    for id in 1..=3 {
        let status = cluster.member(id).replica.status();
        assert_eq!(status.leader_id, Some(leader), "node {id} knows the leader: {status:?}");
    }

    cluster.propose(leader, 0..10);
    assert!(cluster.run_until(|c| c.members.values().all(|m| m.applier.tags.len() == 10)), "commits everywhere");
    cluster.propose(leader, 10..25);
    assert!(cluster.run_until(|c| c.members.values().all(|m| m.applier.tags.len() == 25)));
    let digest = cluster.member(1).applier.table.digest();
    for (id, member) in &cluster.members {
        assert_eq!(seqs(&member.applier.tags), (0..25).collect::<Vec<_>>(), "node {id} applied all, in order");
        assert_eq!(member.applier.table.digest(), digest, "node {id} has the leader's table");
        assert!(member.rejected.is_empty());
    }

    // A follower crashes and restarts with an empty table: it replays the log and converges.
    let follower = if leader == 2 { 3 } else { 2 };
    cluster.restart(follower);
    assert!(cluster.member(follower).applier.tags.is_empty());
    assert!(cluster.run_until(|c| c.member(follower).applier.tags.len() == 25), "the restarted member replays");
    assert_eq!(cluster.member(follower).applier.table.digest(), digest);
}

/// `leasehold cluster remove-node` of the leader itself: once it applies its removal it steps down
/// (raft-rs would keep it leading and panic at its next commit), and the two voters left elect a
/// leader and commit without it.
#[test]
fn a_leader_that_removes_itself_steps_down_and_the_rest_go_on() {
    let (mut cluster, leader) = committed_on_all(5);
    cluster.members.get_mut(&leader).unwrap().replica.propose_membership(leader, false, Vec::new()).expect("proposed");
    cluster.propose(leader, 5..8);
    let rest: Vec<u64> = cluster.voters.iter().copied().filter(|id| *id != leader).collect();
    assert!(
        cluster.run_until(|c| !c.member(leader).replica.is_leader() && c.leader_among(&rest).is_some()),
        "the removed leader stepped down and the rest elected one"
    );
    let next = cluster.leader_among(&rest).unwrap();
    cluster.propose(next, 8..10);
    assert!(cluster.run_until(|c| rest.iter().all(|id| c.member(*id).applier.tags.len() >= 7)), "the rest commit");
    assert!(!cluster.member(leader).replica.is_leader(), "the removed node never leads again");
}

#[test]
fn a_member_far_behind_catches_up_from_a_snapshot() {
    let mut cluster = Cluster::new(3, 0);
    let leader = elect(&mut cluster);
    let lagging = 3;
    assert_ne!(leader, lagging);
    cluster.isolated.insert(lagging);
    cluster.propose(leader, 0..50);
    assert!(cluster.run_until(|c| c.member(leader).applier.tags.len() == 50));
    // The leader's table is snapshotted and the log compacted with no entries kept.
    let (index, data) = {
        let table = &cluster.member(leader).applier.table;
        (table.applied_index(), table.to_snapshot())
    };
    assert!(cluster.members.get_mut(&leader).unwrap().replica.take_snapshot(index, data).unwrap());
    assert_eq!(cluster.member(leader).log.snapshot_index(), index);

    cluster.isolated.clear();
    assert!(cluster.run_until(|c| c.member(lagging).applier.table.applied_index() >= index), "catches up");
    let member = cluster.member(lagging);
    assert!(member.applier.tags.is_empty(), "nothing replayed entry by entry: it came in the snapshot");
    assert_eq!(member.applier.table.digest(), cluster.member(leader).applier.table.digest());
    assert_eq!(member.log.snapshot_index(), index, "the restored snapshot is durable on the member");

    // And it keeps following after the snapshot.
    cluster.propose(leader, 50..60);
    assert!(cluster.run_until(|c| c.member(lagging).applier.tags.len() == 10));
    assert_eq!(seqs(&cluster.member(lagging).applier.tags), (50..60).collect::<Vec<_>>());

    // Restarting the member brings its table back from its own snapshot plus the log.
    let digest = cluster.member(lagging).applier.table.digest();
    cluster.restart(lagging);
    assert!(cluster.run_until(|c| c.member(lagging).applier.table.digest() == digest), "restart converges");
}

#[test]
fn proposals_buffered_on_a_deposed_leader_go_to_the_new_leader() {
    let mut cluster = Cluster::new(3, 1_000);
    let leader = elect(&mut cluster);
    cluster.propose(leader, 0..5);
    // Before the leader advances, a heartbeat of a higher term from another member deposes it.
    let term = cluster.member(leader).replica.status().term;
    let other = if leader == 1 { 2 } else { 1 };
    let mut heartbeat = Message::default();
    heartbeat.set_msg_type(MessageType::MsgHeartbeat);
    heartbeat.from = other;
    heartbeat.to = leader;
    heartbeat.term = term + 1;
    let member = cluster.members.get_mut(&leader).unwrap();
    member.replica.step(heartbeat).unwrap();
    let actions = common::advance(&mut member.replica).unwrap();
    assert!(!member.replica.is_leader());
    assert!(actions.rejected.is_empty(), "a follower that knows the leader forwards: {:?}", actions.rejected);
    let forwarded: Vec<&Message> =
        actions.messages.iter().filter(|m| m.get_msg_type() == MessageType::MsgPropose).collect();
    assert_eq!(forwarded.len(), 1, "one MsgPropose with the buffered entry");
    assert_eq!(forwarded[0].to, other, "forwarded to the member that deposed it");
    let proposals = leasehold_cluster::lease::decode_entry(&forwarded[0].entries[0].data).unwrap();
    assert_eq!(proposals.iter().map(|p| p.tag.seq).collect::<Vec<_>>(), (0..5).collect::<Vec<_>>());
}

#[test]
fn an_isolated_leaders_uncommitted_proposals_are_rejected_when_overwritten() {
    let mut cluster = Cluster::new(3, 1_000);
    let old = elect(&mut cluster);
    cluster.isolated.insert(old);
    // The old leader still believes it leads: it appends, but can never commit.
    cluster.propose(old, 0..3);
    cluster.settle();
    assert!(cluster.member(old).rejected.is_empty(), "not known lost yet");

    let rest: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    assert!(cluster.run_until(|c| c.leader_among(&rest).is_some()), "the majority elects a new leader");
    let new = cluster.leader_among(&rest).unwrap();
    cluster.propose(new, 100..102);
    assert!(cluster.run_until(|c| rest.iter().all(|id| c.member(*id).applier.tags.len() == 2)));

    cluster.isolated.clear();
    assert!(cluster.run_until(|c| c.member(old).applier.tags.len() == 2), "the old leader follows again");
    let old_member = cluster.member(old);
    assert_eq!(seqs(&old_member.applier.tags), vec![100, 101], "its own proposals never committed");
    assert_eq!(seqs(&old_member.rejected), vec![0, 1, 2], "and they are reported rejected");
    for member in cluster.members.values() {
        assert_eq!(member.applier.table.digest(), old_member.applier.table.digest());
    }
}

/// DESIGN rule 6: a member restarted with an empty data directory and the same flags catches up from
/// the leader (raft-rs would otherwise ignore its rejections as stale: the leader remembers what it
/// acknowledged before) and then takes part in elections again.
#[test]
fn a_member_whose_disk_was_lost_catches_up_with_the_same_flags() {
    let (mut cluster, leader) = committed_on_all(20);
    let follower = 3;
    cluster.wipe(follower);
    assert_eq!(cluster.member(follower).log.catch_up(), CatchUpMark::Fresh, "an empty log starts fresh");

    let digest = cluster.member(leader).applier.table.digest();
    assert!(
        cluster.run_until(|c| c.member(follower).applier.table.digest() == digest
            && c.member(follower).log.catch_up() == CatchUpMark::Done),
        "the wiped member caught up: mark {:?}, applied {}",
        cluster.member(follower).log.catch_up(),
        cluster.member(follower).applier.table.applied_index()
    );
    assert_eq!(seqs(&cluster.member(follower).applier.tags), (0..20).collect::<Vec<_>>(), "replayed from the log");
    cluster.propose(leader, 20..25);
    assert!(cluster.run_until(|c| c.member(follower).applier.tags.len() == 25), "and follows after");
}

/// Every member reports the digest of its lease-relevant config with its progress, so the leader's
/// view (`GET /v1/cluster`) names a member whose file differs; a reload's new digest follows.
#[test]
fn the_leader_sees_every_members_config_digest_and_a_changed_one() {
    let (mut cluster, leader) = committed_on_all(3);
    let digests = |c: &Cluster| -> Vec<(u64, Option<String>)> {
        c.member(leader).replica.members().into_iter().map(|m| (m.id, m.config_digest)).collect()
    };
    let expected: Vec<(u64, Option<String>)> =
        (1..=3).map(|id| (id, Some(format!("{:016x}", 0xc0f1_9000 + id)))).collect();
    assert!(cluster.run_until(|c| digests(c) == expected), "{:?}", digests(&cluster));
    let follower = if leader == 1 { 2 } else { 1 };
    cluster.members.get_mut(&follower).unwrap().replica.set_config_digest(0x5eed);
    assert!(
        cluster.run_until(|c| digests(c).contains(&(follower, Some(format!("{:016x}", 0x5eed))))),
        "the leader learns n{follower}'s new digest: {:?}",
        digests(&cluster)
    );
}

/// The boot-root digest travels the same way: none before a member says it has one, then each
/// member's own, and a changed one follows.
#[test]
fn the_leader_sees_every_members_boot_root_digest_and_a_changed_one() {
    let (mut cluster, leader) = committed_on_all(3);
    let digests = |c: &Cluster| -> Vec<(u64, Option<String>)> {
        c.member(leader).replica.members().into_iter().map(|m| (m.id, m.boot_root_digest)).collect()
    };
    assert!(digests(&cluster).iter().all(|(_, d)| d.is_none()), "no root digested yet: {:?}", digests(&cluster));
    for id in 1..=3 {
        cluster.members.get_mut(&id).unwrap().replica.set_boot_root_digest(0xb007_0000 + id);
    }
    let expected: Vec<(u64, Option<String>)> =
        (1..=3).map(|id| (id, Some(format!("{:016x}", 0xb007_0000 + id)))).collect();
    assert!(cluster.run_until(|c| digests(c) == expected), "{:?}", digests(&cluster));
    let follower = if leader == 1 { 2 } else { 1 };
    cluster.members.get_mut(&follower).unwrap().replica.set_boot_root_digest(0);
    assert!(
        cluster.run_until(|c| digests(c).contains(&(follower, None))),
        "a member that stops reporting one shows none: {:?}",
        digests(&cluster)
    );
}

/// Node `id`'s admin API address in these tests.
fn admin_addr(id: u64) -> std::net::SocketAddrV4 {
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(10, 77, 0, u8::try_from(id).expect("a small id")), 6767)
}

/// Each member's admin address travels with its report: the leader's view names every member's; a
/// follower's names its own and the leader's (the leader tells its followers), and follows a new
/// leader after a handover. `leasehold reload --all` finds every member that way.
#[test]
fn the_leader_knows_every_members_admin_address_and_followers_know_the_leaders() {
    let (mut cluster, leader) = committed_on_all(3);
    let addresses = |c: &Cluster, on: u64| -> Vec<(u64, Option<std::net::SocketAddrV4>)> {
        c.member(on).replica.members().into_iter().map(|m| (m.id, m.admin_addr)).collect()
    };
    let everyone: Vec<_> = (1..=3).map(|id| (id, Some(admin_addr(id)))).collect();
    assert!(cluster.run_until(|c| addresses(c, leader) == everyone), "{:?}", addresses(&cluster, leader));
    let on_follower = |leader: u64, follower: u64| -> Vec<(u64, Option<std::net::SocketAddrV4>)> {
        (1..=3).map(|id| (id, (id == leader || id == follower).then(|| admin_addr(id)))).collect()
    };
    for follower in (1..=3).filter(|&id| id != leader) {
        let want = on_follower(leader, follower);
        assert!(
            cluster.run_until(|c| addresses(c, follower) == want),
            "n{follower}: {:?}",
            addresses(&cluster, follower)
        );
    }
    // Another leader: the followers learn its address, and it learns every member's.
    let to = cluster.members.get_mut(&leader).unwrap().replica.yield_leadership(None).expect("the leader hands over");
    assert_eq!(cluster.members.get_mut(&leader).unwrap().replica.hand_over(), Ok(to));
    cluster.settle();
    assert_eq!(cluster.leader(), Some(to));
    assert!(cluster.run_until(|c| addresses(c, to) == everyone), "{:?}", addresses(&cluster, to));
    let want = on_follower(to, leader);
    assert!(cluster.run_until(|c| addresses(c, leader) == want), "n{leader}: {:?}", addresses(&cluster, leader));
}

/// The danger of a lost disk: entries committed by the leader and the member that lost them are on
/// no other disk. With the leader down, a stale member must not be elected with the wiped member's
/// vote — that would lose committed entries (ACKed leases). Raft only asks the wiped member to sit
/// out until a leader that holds them is back.
#[test]
fn a_member_whose_disk_was_lost_does_not_elect_a_stale_leader() {
    let mut cluster = Cluster::new(3, 1_000);
    let leader = elect(&mut cluster);
    assert_eq!(leader, 1, "pinned timeouts: node 1 leads");
    let (wiped, stale) = (2, 3);
    cluster.isolated.insert(stale);
    cluster.propose(leader, 0..10);
    assert!(cluster.run_until(|c| c.member(wiped).applier.tags.len() == 10), "committed on the leader and 2");

    cluster.wipe(wiped);
    cluster.isolated = BTreeSet::from([leader]);
    let elected = cluster.run_until(|c| c.leader_among(&[wiped, stale]).is_some());
    assert!(!elected, "{:?} was elected without the committed entries", cluster.leader_among(&[wiped, stale]));
    assert_eq!(cluster.member(wiped).log.catch_up(), CatchUpMark::Behind, "the stale member showed a history");

    cluster.isolated.clear();
    let converged = |c: &Cluster| {
        let digest = c.member(leader).applier.table.digest();
        c.members.values().all(|m| m.applier.table.digest() == digest && m.applier.table.len() == 10)
    };
    assert!(cluster.run_until(converged), "every member holds the 10 committed bindings");
    assert_eq!(cluster.member(wiped).log.catch_up(), CatchUpMark::Done);
}

/// The membership guard counts a voter towards a quorum only once it votes: one that lost its disk
/// answers the leader while it catches up, but votes for nobody until it has. Removing another voter
/// then (the leader itself here, as in the simulation seed that found it) would leave two voters of
/// which one waits for the other to lead and the other for its vote: refused until it has caught up.
#[test]
fn a_voter_still_catching_up_does_not_count_for_the_membership_guard() {
    let (mut cluster, leader) = committed_on_all(10);
    let others: Vec<u64> = cluster.voters.iter().copied().filter(|id| *id != leader).collect();
    let (wiped, other) = (others[0], others[1]);
    cluster.starved.insert(wiped);
    cluster.wipe(wiped);
    for _ in 0..3 {
        cluster.tick();
    }
    assert_eq!(cluster.member(wiped).log.catch_up(), CatchUpMark::Behind, "it saw the history and waits");
    let replica = &cluster.member(leader).replica;
    assert!(replica.reachable_voters().contains(&other) && !replica.reachable_voters().contains(&wiped));
    let view = replica.members().into_iter().find(|m| m.id == wiped).expect("a member");
    assert_eq!((view.catching_up, view.reachable), (Some(true), Some(false)), "{view:?}");
    for id in [leader, other] {
        let refused = cluster.members.get_mut(&leader).unwrap().replica.propose_membership(id, false, Vec::new());
        match refused {
            Err(ClusterError::MembershipRefused(why)) => assert!(why.contains("still catching up"), "{why}"),
            other => panic!("removing n{id} while n{wiped} catches up: {other:?}"),
        }
    }

    cluster.starved.clear();
    assert!(cluster.run_until(|c| c.member(wiped).log.catch_up() == CatchUpMark::Done), "it catches up");
    assert!(cluster.run_until(|c| c.member(leader).replica.reachable_voters().contains(&wiped)), "and says so");
    cluster
        .members
        .get_mut(&leader)
        .unwrap()
        .replica
        .propose_membership(other, false, Vec::new())
        .expect("now allowed");
}

/// DESIGN rule 2 across a leader change: a leader cut off from the others loses its lease (and so
/// stops answering broadcasts) before the others can elect a new leader, tick by tick.
#[test]
fn a_cut_off_leader_loses_its_lease_before_another_is_elected() {
    let mut cluster = Cluster::new(3, 1_000);
    let old = elect(&mut cluster);
    assert!(cluster.run_until(|c| c.member(old).replica.has_lease()), "a leader with a quorum holds the lease");
    cluster.isolated.insert(old);
    let others: Vec<u64> = cluster.voters.iter().copied().filter(|id| *id != old).collect();
    let mut lease_lost_at = None;
    for tick in 0..MAX_ROUNDS {
        cluster.tick();
        let old_answers = cluster.member(old).replica.has_lease();
        if !old_answers && lease_lost_at.is_none() {
            lease_lost_at = Some(tick);
        }
        if let Some(new) = cluster.leader_among(&others) {
            assert!(!old_answers, "n{old} still holds its lease at tick {tick} while n{new} leads");
            let lost = lease_lost_at.expect("lost before");
            assert!(lost < tick, "the lease ended at tick {lost}, the new leader came at {tick}");
            assert!(cluster.run_until(|c| c.member(new).replica.has_lease()), "the new leader gets the lease");
            return;
        }
    }
    panic!("no new leader among {others:?}");
}

/// `GET /v1/cluster` on the leader: every member's own term, commit and applied index, as the
/// followers report them on their responses.
#[test]
fn the_leader_knows_each_members_term_commit_and_applied_index() {
    let (mut cluster, leader) = committed_on_all(5);
    cluster.tick();
    let status = cluster.member(leader).replica.status();
    let members = cluster.member(leader).replica.members();
    assert_eq!(members.len(), 3);
    for member in &members {
        assert_eq!(member.term, Some(status.term), "n{}: {member:?}", member.id);
        assert_eq!(member.commit, Some(status.commit_index), "n{}: {member:?}", member.id);
        assert_eq!(member.applied, Some(status.commit_index), "n{}: {member:?}", member.id);
    }
    let follower = members.iter().find(|m| m.id != leader).expect("a follower").id;
    assert!(cluster.member(follower).replica.members().iter().all(|m| m.id == follower || m.applied.is_none()));
}

/// Raft thesis §10.2.1: a leader sends its appends before its own write, which counts towards the
/// commit only once durable; a follower acknowledges only after its write.
#[test]
fn a_leader_sends_before_its_write_and_a_follower_acknowledges_after_it() {
    let mut cluster = Cluster::new(3, 1_000);
    let leader = elect(&mut cluster);
    cluster.propose(leader, 0..3);
    let member = cluster.members.get_mut(&leader).unwrap();
    let Persist { messages, write } = member.replica.advance().unwrap();
    let write = write.expect("the leader's new entry is to be written");
    assert_eq!(write.entries.len(), 1, "the three proposals in one entry");
    let appends: Vec<&Message> = messages.iter().filter(|m| m.get_msg_type() == MessageType::MsgAppend).collect();
    assert_eq!(appends.len(), 2, "both followers get the entry before the leader's write: {messages:?}");
    assert!(appends.iter().all(|m| m.entries.len() == 1 && m.entries[0].index == write.entries[0].index));
    let index = write.entries[0].index;
    assert!(raft::Storage::last_index(&member.log).unwrap() < index, "not on the leader's disk yet");
    member.replica.log_mut().write_ready(write.as_ready_write()).unwrap();
    let actions = member.replica.persisted(Ok(Some(write))).unwrap();
    assert!(actions.committed.is_empty(), "one durable copy of three is no commit");

    let follower = if leader == 1 { 2 } else { 1 };
    let member = cluster.members.get_mut(&follower).unwrap();
    let append = appends.iter().find(|m| m.to == follower).expect("an append for the follower");
    member.replica.step((*append).clone()).unwrap();
    let Persist { messages, write } = member.replica.advance().unwrap();
    assert!(messages.is_empty(), "a follower sends nothing before its write: {messages:?}");
    let write = write.expect("the entry is to be written");
    member.replica.log_mut().write_ready(write.as_ready_write()).unwrap();
    let actions = member.replica.persisted(Ok(Some(write))).unwrap();
    let acks: Vec<&Message> =
        actions.messages.iter().filter(|m| m.get_msg_type() == MessageType::MsgAppendResponse).collect();
    assert_eq!(acks.len(), 1);
    assert_eq!((acks[0].to, acks[0].index, acks[0].reject), (leader, index, false));
}

/// Raft thesis §3.10 with the leader lease: a leader that hands over gives its lease up before the
/// voter is told to campaign, the voter wins at once (no election timeout) and takes the lease with
/// its first commit, and the two never hold the lease together.
#[test]
fn a_leader_hands_over_to_the_most_up_to_date_voter_without_waiting_an_election_timeout() {
    let (mut cluster, old) = committed_on_all(5);
    assert!(cluster.run_until(|c| c.member(old).replica.has_lease()));
    let to = cluster.members.get_mut(&old).unwrap().replica.yield_leadership(None).expect("the leader hands over");
    assert_ne!(to, old);
    assert!(!cluster.member(old).replica.has_lease(), "the lease is given up at once, before anyone is told");
    assert_eq!(cluster.member(old).replica.status().lease_until_us, None);
    // The shell's state machine owner has taken the status in: hand over.
    assert_eq!(cluster.members.get_mut(&old).unwrap().replica.hand_over(), Ok(to));
    let ticks_before = cluster.ticks;
    cluster.settle();
    assert_eq!(cluster.leader(), Some(to), "n{to} leads after one round of messages, no tick needed");
    assert_eq!(cluster.ticks, ticks_before);
    assert!(cluster.member(to).replica.has_lease(), "the new leader holds the lease with its first commit");
    assert!(!cluster.member(old).replica.is_leader() && !cluster.member(old).replica.has_lease());
    assert_eq!(cluster.member(old).replica.status().leader_id, Some(to));
    // The cluster goes on committing under the new leader, on every member.
    cluster.propose(to, 100..110);
    assert!(cluster.run_until(|c| c.members.values().all(|m| m.applier.tags.len() == 15)));
}

#[test]
fn a_transfer_is_refused_with_the_reason() {
    use leasehold_cluster::replica::TransferError;
    let (mut cluster, leader) = committed_on_all(1);
    let follower = cluster.voters.iter().copied().find(|id| *id != leader).unwrap();
    let refused = cluster.members.get_mut(&follower).unwrap().replica.yield_leadership(None);
    assert_eq!(refused, Err(TransferError::NotLeader { leader: Some(leader) }));
    let message = refused.unwrap_err().to_string();
    assert!(message.contains(&format!("node {leader} is")), "{message}");
    let replica = &mut cluster.members.get_mut(&leader).unwrap().replica;
    assert_eq!(replica.yield_leadership(Some(leader)), Err(TransferError::AlreadyLeader(leader)));
    assert_eq!(replica.yield_leadership(Some(9)), Err(TransferError::UnknownNode { id: 9, members: vec![1, 2, 3] }));
    assert!(replica.has_lease(), "a refused transfer keeps the lease");
    // A voter that has not answered within an election timeout cannot take over.
    cluster.isolated.insert(follower);
    for _ in 0..2 * ELECTION_TICKS {
        cluster.tick();
    }
    let replica = &mut cluster.members.get_mut(&leader).unwrap().replica;
    assert_eq!(replica.yield_leadership(Some(follower)), Err(TransferError::Unreachable(follower)));
    assert!(replica.has_lease());
}

/// A voter told to campaign may win whenever the message arrives: the leader never takes its lease
/// back in that term. When the voter is lost, the leader hands over again to another.
#[test]
fn a_lost_transfer_is_handed_to_another_voter_and_the_lease_never_comes_back() {
    let (mut cluster, old) = committed_on_all(3);
    let lost = cluster.voters.iter().copied().find(|id| *id != old).unwrap();
    let other = cluster.voters.iter().copied().find(|id| *id != old && *id != lost).unwrap();
    let replica = &mut cluster.members.get_mut(&old).unwrap().replica;
    assert_eq!(replica.yield_leadership(Some(lost)), Ok(lost));
    cluster.isolated.insert(lost);
    assert_eq!(cluster.members.get_mut(&old).unwrap().replica.hand_over(), Ok(lost));
    cluster.settle();
    assert!(cluster.member(old).replica.told_to_campaign(), "MsgTimeoutNow left (and was lost)");
    for tick in 0..MAX_ROUNDS {
        if cluster.leader_among(&[other]).is_some() {
            assert!(!cluster.member(old).replica.has_lease());
            assert!(cluster.run_until(|c| c.member(other).replica.has_lease()));
            return;
        }
        assert!(!cluster.member(old).replica.has_lease(), "n{old} took its lease back at tick {tick}");
        cluster.tick();
    }
    panic!("n{other} never took over");
}

/// A transfer raft-rs gives up before the voter was told to campaign (its log never caught up) hands
/// the lease back: nobody else can win in this term.
#[test]
fn a_transfer_given_up_before_the_voter_was_told_gives_the_lease_back() {
    let (mut cluster, leader) = committed_on_all(3);
    let behind = cluster.voters.iter().copied().find(|id| *id != leader).unwrap();
    cluster.isolated.insert(behind);
    cluster.propose(leader, 10..12);
    cluster.settle();
    let replica = &mut cluster.members.get_mut(&leader).unwrap().replica;
    assert_eq!(replica.yield_leadership(Some(behind)), Ok(behind), "answered within an election timeout");
    assert_eq!(replica.hand_over(), Ok(behind));
    assert!(!replica.has_lease());
    assert!(cluster.run_until(|c| c.member(leader).replica.has_lease()), "the lease comes back");
    assert_eq!(cluster.leader(), Some(leader));
    assert!(!cluster.member(leader).replica.told_to_campaign());
}
