//! The driver's routing, as the raft actor and the simulation both rely on it: each `Ready`'s
//! write made durable before its acknowledgements leave, and every output routed to the shell in
//! the documented order.

mod common;

use common::{logger, proposal, seqs};
use leasehold_cluster::driver::{self, MembershipChange, RaftShell};
use leasehold_cluster::replica::{Replica, ReplicaConfig};
use leasehold_cluster::storage::{CatchUpMark, DurableLog, MemLog};
use leasehold_cluster::{ClusterError, RaftStatus, ToStateMachine};
use raft::eraftpb::{Message, MessageType};
use raft::Storage;

/// Every output, in the order the driver routed it.
#[derive(Debug, Default)]
struct Recorder(Vec<Routed>);

#[derive(Debug)]
enum Routed {
    Send(Vec<Message>),
    Mail(ToStateMachine),
    Status(RaftStatus),
    Membership(MembershipChange),
}

impl RaftShell for Recorder {
    fn send(&mut self, messages: Vec<Message>) {
        assert!(!messages.is_empty(), "never an empty send");
        self.0.push(Routed::Send(messages));
    }

    fn to_state_machine(&mut self, mail: ToStateMachine) {
        self.0.push(Routed::Mail(mail));
    }

    fn status(&mut self, status: RaftStatus) {
        self.0.push(Routed::Status(status));
    }

    fn membership(&mut self, change: MembershipChange) {
        self.0.push(Routed::Membership(change));
    }
}

#[test]
fn a_sole_voter_is_driven_to_leader_and_its_entries_reach_the_state_machine() {
    let log = MemLog::new();
    let mut replica = Replica::new(&ReplicaConfig::new(1), log.clone(), &logger()).unwrap();
    let mut shell = Recorder::default();
    driver::drive(&mut replica, &mut shell).unwrap();
    assert!(!replica.has_ready());
    match shell.0.as_slice() {
        [Routed::Mail(ToStateMachine::Entries(entries)), Routed::Status(status)] => {
            assert_eq!(entries.iter().map(|e| e.index).collect::<Vec<_>>(), vec![1]);
            assert!(status.is_leader);
        }
        other => panic!("the election's entry, then the status: {other:?}"),
    }

    let mut shell = Recorder::default();
    driver::propose(&mut replica, &mut shell, (0..3).map(|seq| proposal(1, seq)).collect()).unwrap();
    driver::drive(&mut replica, &mut shell).unwrap();
    let Some(Routed::Mail(ToStateMachine::Entries(entries))) = shell.0.first() else {
        panic!("the entry is handed out: {:?}", shell.0)
    };
    let tags: Vec<_> = entries.iter().flat_map(|e| e.proposals.iter().map(|p| p.tag)).collect();
    assert_eq!(seqs(&tags), vec![0, 1, 2]);
    assert_eq!(log.last_index().unwrap(), entries[0].index, "written to the log by the driver");
}

#[test]
fn a_refused_proposal_goes_back_to_the_state_machine_as_rejected() {
    let config = ReplicaConfig { voters: vec![1, 2, 3], ..ReplicaConfig::new(1) };
    let mut replica = Replica::new(&config, MemLog::new(), &logger()).unwrap();
    let mut shell = Recorder::default();
    let refused = driver::propose(&mut replica, &mut shell, vec![proposal(1, 9)]);
    assert!(matches!(refused, Err(ClusterError::NotLeader)), "no leader known: {refused:?}");
    match shell.0.as_slice() {
        [Routed::Mail(ToStateMachine::Rejected(tags))] => assert_eq!(seqs(tags), vec![9]),
        other => panic!("one Rejected mail: {other:?}"),
    }
}

/// The transport must know a new member's address before the first message for it.
#[test]
fn a_committed_membership_change_is_routed_before_the_messages_to_the_new_member() {
    let mut replica = Replica::new(&ReplicaConfig::new(1), MemLog::new(), &logger()).unwrap();
    driver::drive(&mut replica, &mut Recorder::default()).unwrap();
    replica.propose_membership(2, true, b"127.0.0.1:7002".to_vec()).unwrap();
    let mut shell = Recorder::default();
    driver::drive(&mut replica, &mut shell).unwrap();
    let membership = shell.0.iter().position(|r| matches!(r, Routed::Membership(_))).expect("the change commits");
    let Routed::Membership(change) = &shell.0[membership] else { unreachable!() };
    assert_eq!(*change, MembershipChange { id: 2, added: true, addr: Some("127.0.0.1:7002".parse().unwrap()) });
    let first_to_new = shell
        .0
        .iter()
        .position(|r| matches!(r, Routed::Send(messages) if messages.iter().any(|m| m.to == 2)))
        .expect("the leader talks to the new member");
    assert!(membership < first_to_new, "routed: {:?}", shell.0);
}

#[test]
fn a_heartbeat_beyond_a_log_that_did_not_start_empty_stops_the_node() {
    let config = ReplicaConfig { voters: vec![1, 2, 3], ..ReplicaConfig::new(2) };
    let log = MemLog::new();
    let mut replica = Replica::new(&config, log, &logger()).unwrap();
    // Mark the log as holding what it acknowledged: not a wiped one catching up.
    replica.log_mut().set_catch_up(CatchUpMark::Done).unwrap();
    let mut replica = Replica::new(&config, replica.log().clone(), &logger()).unwrap();
    let mut heartbeat = Message::default();
    heartbeat.set_msg_type(MessageType::MsgHeartbeat);
    heartbeat.from = 1;
    heartbeat.to = 2;
    heartbeat.term = 1;
    heartbeat.commit = 5;
    let stopped = driver::receive(&mut replica, heartbeat);
    assert!(matches!(stopped, Err(ClusterError::LogLost { commit: 5, .. })), "{stopped:?}");
    let mut stale = Message::default();
    stale.set_msg_type(MessageType::MsgHeartbeat);
    stale.from = 1;
    stale.to = 2;
    assert!(matches!(driver::receive(&mut replica, stale), Ok(driver::Received::Dropped(ClusterError::Halted))));
}
