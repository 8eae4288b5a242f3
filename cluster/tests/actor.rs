//! The raft actor on its own Arbiter, as the node runs it: proposals sent from another actor come
//! back as committed entries, in order, through the state machine recipient.

mod common;

use std::time::Duration;

use actix::prelude::*;
use common::{logger, proposal, seqs, Applier, GRACE_MS, MAX_LEASES};
use leasehold_cluster::actor::{self, RaftActor};
use leasehold_cluster::replica::{Replica, ReplicaConfig};
use leasehold_cluster::{Propose, RaftStatus, ToStateMachine};
use tokio::sync::mpsc;

/// Stands in for the node's lease actor: forwards what the raft actor sends into channels the
/// test awaits.
struct Owner {
    to_state_machine: mpsc::UnboundedSender<ToStateMachine>,
    status: mpsc::UnboundedSender<RaftStatus>,
}

impl Actor for Owner {
    type Context = Context<Self>;
}

impl Handler<ToStateMachine> for Owner {
    type Result = ();

    fn handle(&mut self, message: ToStateMachine, _: &mut Context<Self>) {
        let _ = self.to_state_machine.send(message);
    }
}

impl Handler<RaftStatus> for Owner {
    type Result = ();

    fn handle(&mut self, status: RaftStatus, _: &mut Context<Self>) {
        let _ = self.status.send(status);
    }
}

/// Sends its proposals, one `Propose` message each, as soon as it starts.
struct Proposer {
    raft: Addr<RaftActor>,
    seqs: std::ops::Range<u64>,
}

impl Actor for Proposer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for seq in self.seqs.clone() {
            self.raft.try_send(Propose(vec![proposal(1, seq)])).expect("the raft mailbox has room");
        }
        ctx.stop();
    }
}

/// A guard against a hung test, not a synchronisation: every wait below ends on a message.
const WAIT: Duration = Duration::from_secs(30);

async fn next<T>(receiver: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(WAIT, receiver.recv()).await.expect("timed out waiting").expect("channel open")
}

#[actix_rt::test]
async fn proposals_from_another_actor_come_back_committed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (log, table) = actor::open(dir.path(), true, GRACE_MS, MAX_LEASES, &logger()).unwrap();
    assert_eq!(table.applied_index(), 0);
    let config = ReplicaConfig { applied: table.applied_index(), ..ReplicaConfig::new(1) };
    let replica = Replica::new(&config, log, &logger()).unwrap();

    let (entries_tx, mut entries_rx) = mpsc::unbounded_channel();
    let (status_tx, mut status_rx) = mpsc::unbounded_channel();
    let owner = Owner { to_state_machine: entries_tx, status: status_tx }.start();

    let arbiter = Arbiter::new();
    let (state_machine, status) = (owner.clone().recipient(), owner.recipient());
    let raft = RaftActor::start_in_arbiter(&arbiter.handle(), move |_| {
        RaftActor::new(replica, state_machine, status, Duration::from_millis(50), logger())
    });

    loop {
        let status = next(&mut status_rx).await;
        if status.is_leader {
            assert_eq!(status.leader_id, Some(1));
            break;
        }
    }

    const COUNT: u64 = 500;
    Proposer { raft: raft.clone(), seqs: 0..COUNT }.start();
    let mut applier = Applier::new(table);
    let mut batches = 0;
    while applier.tags.len() < COUNT as usize {
        match next(&mut entries_rx).await {
            ToStateMachine::Entries(entries) => {
                applier.apply(&entries);
                batches += 1;
            }
            ToStateMachine::Rejected(tags) => panic!("the leader rejected {tags:?}"),
            ToStateMachine::Restore { index, .. } => panic!("unexpected restore at {index}"),
        }
    }
    assert_eq!(seqs(&applier.tags), (0..COUNT).collect::<Vec<_>>(), "every proposal, in order");
    assert!(batches < COUNT, "proposals were group-committed ({batches} batches for {COUNT})");
    assert_eq!(applier.table.len(), COUNT as usize);

    arbiter.stop();
}
