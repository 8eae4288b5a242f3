//! The raft actor's dispatch, without the actor: what to do with everything a `Replica` decides.
//!
//! Owns the one path from a `Ready` to the world, shared by the raft actor (`actor`) and the
//! simulation: `begin` advances the replica and sends what may leave before the write (a leader's
//! messages, Raft thesis §10.2.1); `finish` makes the write durable on the replica's `DurableLog`,
//! hands it back (`Replica::persisted`), reports snapshots sent and routes the `Actions` to a
//! `RaftShell` — membership first, then peers, then the state machine owner's mail in log order
//! (the snapshot to restore, committed entries, rejected proposals), then the status. `step` is one
//! `Ready` (`begin` and `finish`), `drive` runs the replica while it has one. The driver performs
//! the write and nothing else: where messages, mail and status go is the shell's business (actix
//! recipients in the actor, an event queue in the simulation). `propose` and `receive` are the
//! other two inputs with something to route or to decide: a refusal goes back as `Rejected`, and a
//! peer message's error says whether the node must stop. `open_table` is where both start: the
//! table rebuilt from the log's latest snapshot.

use raft::eraftpb::{Message, MessageType};

use crate::replica::{Actions, LogWrite, Persist, Replica};
use crate::storage::DurableLog;
use crate::{ClusterError, LeaseTable, Proposal, RaftStatus, ToStateMachine};

/// Where the driver sends what the replica decides.
pub trait RaftShell {
    /// Raft messages for peers, each with its `to` (never empty).
    fn send(&mut self, messages: Vec<Message>);
    /// Mail for the state machine owner, in log order.
    fn to_state_machine(&mut self, mail: ToStateMachine);
    /// This node's role, term, leader, commit index or leader lease changed.
    fn status(&mut self, status: RaftStatus);
    /// A membership change committed (before the messages of the same `Ready`, so the transport
    /// knows a new peer's address when the first message for it comes).
    fn membership(&mut self, change: MembershipChange);
}

pub use crate::MembershipChange;

/// A `Ready` begun by `begin`: its write, to make durable in `finish`.
#[derive(Debug)]
#[must_use = "a begun Ready must be finished (or the node crashed)"]
pub struct Begun {
    write: Option<LogWrite>,
    /// Followers sent a snapshot before the write: reported once the `Ready` is finished, since
    /// raft-rs takes no input between `ready` and `advance`.
    snapshots_sent: Vec<u64>,
}

impl Begun {
    /// The write `finish` will make (`None`: the replica had no `Ready`, only proposals or status).
    pub fn write(&self) -> Option<&LogWrite> {
        self.write.as_ref()
    }
}

/// The lease table a replica on `log` starts from: the log's latest snapshot (an empty table when
/// there is none). Start the replica with `applied = table.applied_index()`; raft-rs hands out the
/// committed entries after it again.
pub fn open_table<L: DurableLog>(log: &L, grace_ms: u64, max_leases: usize) -> Result<LeaseTable, ClusterError> {
    match log.latest_snapshot()? {
        None => Ok(LeaseTable::new(grace_ms, max_leases)),
        Some(snapshot) => table_at(snapshot.get_metadata().index, &snapshot.data, grace_ms, max_leases),
    }
}

/// The table in a snapshot taken at `index` (this log's own, or one from the leader), checked to be
/// the table at that index.
pub fn table_at(index: u64, data: &[u8], grace_ms: u64, max_leases: usize) -> Result<LeaseTable, ClusterError> {
    let table = LeaseTable::from_snapshot(data, grace_ms, max_leases)?;
    if table.applied_index() != index {
        return Err(ClusterError::Corrupt(format!(
            "snapshot at index {index} holds a table applied to {}",
            table.applied_index()
        )));
    }
    Ok(table)
}

/// Begin one `Ready`: advance the replica and send the messages that may leave before its write.
pub fn begin<L: DurableLog>(replica: &mut Replica<L>, shell: &mut impl RaftShell) -> Result<Begun, ClusterError> {
    let Persist { messages, write } = replica.advance()?;
    let snapshots_sent = snapshot_receivers(&messages);
    if !messages.is_empty() {
        shell.send(messages);
    }
    Ok(Begun { write, snapshots_sent })
}

/// Make the begun `Ready`'s write durable on the replica's log, finish the `Ready` and route what it
/// gives. An `Err` is a storage failure: the replica has halted and the node must stop serving.
pub fn finish<L: DurableLog>(
    replica: &mut Replica<L>,
    shell: &mut impl RaftShell,
    begun: Begun,
) -> Result<(), ClusterError> {
    let Begun { write, snapshots_sent } = begun;
    let written = match write {
        Some(write) => replica.log_mut().write_ready(write.as_ready_write()).map(|()| Some(write)),
        None => Ok(None),
    };
    let actions = replica.persisted(written)?;
    for to in snapshots_sent {
        replica.report_snapshot_sent(to);
    }
    dispatch(replica, shell, actions);
    Ok(())
}

/// One `Ready`, begun and finished.
pub fn step<L: DurableLog>(replica: &mut Replica<L>, shell: &mut impl RaftShell) -> Result<(), ClusterError> {
    let begun = begin(replica, shell)?;
    finish(replica, shell, begun)
}

/// Run the replica while it has a `Ready`.
pub fn drive<L: DurableLog>(replica: &mut Replica<L>, shell: &mut impl RaftShell) -> Result<(), ClusterError> {
    while replica.has_ready() {
        step(replica, shell)?;
    }
    Ok(())
}

/// Hand proposals to the replica for its next `Ready`. A refusal goes back to the state machine
/// owner as `Rejected` (so the proposers are told at once) and its reason is returned.
pub fn propose<L: DurableLog>(
    replica: &mut Replica<L>,
    shell: &mut impl RaftShell,
    proposals: Vec<Proposal>,
) -> Result<(), ClusterError> {
    replica.propose(proposals).map_err(|refused| {
        shell.to_state_machine(ToStateMachine::Rejected(refused.proposals.iter().map(|p| p.tag).collect()));
        refused.reason
    })
}

/// What became of a peer message.
#[derive(Debug)]
pub enum Received {
    /// Stepped: the replica may have a `Ready`.
    Stepped,
    /// Dropped, and why: stale, misaddressed, or at a halted replica (Raft retries what matters).
    Dropped(ClusterError),
}

/// Feed a message from a peer. An `Err` is a reason to stop the node: this log lost entries it
/// had acknowledged (`ClusterError::LogLost`), and the replica has halted.
pub fn receive<L: DurableLog>(replica: &mut Replica<L>, message: Message) -> Result<Received, ClusterError> {
    match replica.step(message) {
        Ok(()) => Ok(Received::Stepped),
        Err(e @ ClusterError::LogLost { .. }) => Err(e),
        Err(e) => Ok(Received::Dropped(e)),
    }
}

/// Route one `Actions` to the shell, in its documented order.
fn dispatch<L: DurableLog>(replica: &mut Replica<L>, shell: &mut impl RaftShell, actions: Actions) {
    let Actions { messages, restore, committed, status, rejected, membership } = actions;
    for change in membership {
        shell.membership(change);
    }
    // The transport queues and may drop; a snapshot is reported sent at once, so a lost one is
    // retried from the probe state instead of pausing the follower for good.
    for to in snapshot_receivers(&messages) {
        replica.report_snapshot_sent(to);
    }
    if !messages.is_empty() {
        shell.send(messages);
    }
    if let Some((index, data)) = restore {
        shell.to_state_machine(ToStateMachine::Restore { index, data });
    }
    if !committed.is_empty() {
        shell.to_state_machine(ToStateMachine::Entries(committed));
    }
    if !rejected.is_empty() {
        shell.to_state_machine(ToStateMachine::Rejected(rejected));
    }
    if let Some(status) = status {
        shell.status(status);
    }
}

/// The followers these messages send a snapshot to.
fn snapshot_receivers(messages: &[Message]) -> Vec<u64> {
    messages.iter().filter(|m| m.get_msg_type() == MessageType::MsgSnapshot).map(|m| m.to).collect()
}
