//! The nodes: what a node is (`SimNode`, and `Live`, what a crash loses), starting, restarting and
//! crashing one, the mail between its raft and lease actors, and running them; and the Raft
//! group's committed configurations as the nodes apply them (`note_conf_changes`).
//!
//! The raft actor's side runs the replica through the cluster's `driver`, the same code as the
//! raft actor: `drive` begins each `Ready`, puts the messages that may leave before the write on the
//! network, finishes it (the write to the `MemLog`, `persisted`) and carries out what the driver
//! routed to `RaftOutputs`, this simulation's `RaftShell`. The lease actor's side hands the raft
//! actor's mail to the node's `state_machine`, the same code as the lease actor, and only observes
//! around it: the checks after each applied entry and restored snapshot, on each ACK, the notes
//! and the counts.

use std::net::Ipv4Addr;
use std::sync::Arc;

use leasehold_cluster::driver::{self, MembershipChange, RaftShell};
use leasehold_cluster::lease::SnapshotEncoder;
use leasehold_cluster::replica::{Replica, ReplicaConfig};
use leasehold_cluster::storage::DurableLog;
use leasehold_cluster::storage::MemLog;
use leasehold_cluster::{ClusterError, Command, CommittedEntry, Proposal, RaftStatus, ToStateMachine};
use leasehold_config::Config;
use leasehold_node::actors::state_machine;
use leasehold_node::engine::{Engine, Role};
use leasehold_node::wire::ReplyType;
use raft::eraftpb::{EntryType, Message};
use raft::Storage;

use crate::trace::Note;

use super::checks::reserved_in;
use super::plan::peer_addr;
use super::{Event, World, ELECTION_TICKS, HEARTBEAT_TICKS, SWEEP_US, TICK_US};

/// A running node: what a crash loses. The replica is the raft actor's, the engine (and the
/// proposals it gathers for the next flush) the lease actor's; they talk through mail (`Event::
/// EngineMail`, `Event::RaftMail`) that takes `Plan::hop_us` to arrive, in order, as actix mailboxes
/// do — so the engine acts on a role the replica may already have left, as in the real node.
pub(super) struct Live {
    pub(super) replica: Replica<MemLog>,
    pub(super) engine: Engine,
    pub(super) batch: Vec<Proposal>,
    /// The encoder of the snapshot in progress (the lease actor's snapshot thread, inline).
    pub(super) snapshot: Option<SnapshotEncoder>,
}

/// From the raft actor to the lease actor (`ToStateMachine` and `RaftStatus` in the node).
#[derive(Debug)]
pub(super) enum EngineMail {
    /// With the term of each committed entry it carries, read from the log when it was handed out:
    /// (index, term).
    StateMachine {
        mail: ToStateMachine,
        terms: Vec<(u64, Option<u64>)>,
    },
    Status(RaftStatus),
    /// The lease actor's own `SnapshotSlice`: write more of the snapshot in progress.
    SnapshotSlice,
}

/// What the driver routes for one node (the simulation's `RaftShell`), in order; the world carries
/// it out after each driver call: messages onto the network, mail to the lease actor.
#[derive(Debug, Default)]
struct RaftOutputs(Vec<RaftOutput>);

#[derive(Debug)]
enum RaftOutput {
    Send(Vec<Message>),
    Mail(ToStateMachine),
    Status(RaftStatus),
    Membership(MembershipChange),
}

impl RaftShell for RaftOutputs {
    fn send(&mut self, messages: Vec<Message>) {
        self.0.push(RaftOutput::Send(messages));
    }

    fn to_state_machine(&mut self, mail: ToStateMachine) {
        self.0.push(RaftOutput::Mail(mail));
    }

    fn status(&mut self, status: RaftStatus) {
        self.0.push(RaftOutput::Status(status));
    }

    fn membership(&mut self, change: MembershipChange) {
        self.0.push(RaftOutput::Membership(change));
    }
}

/// To the raft actor: from the lease actor (`Propose` and `SnapshotTaken` in the node), and from
/// the operator through the admin API (`ChangeMembership`).
#[derive(Debug)]
pub(super) enum RaftMail {
    Propose(Vec<Proposal>),
    SnapshotTaken {
        index: u64,
        data: Vec<u8>,
    },
    /// The lease actor has the status without the leader lease: hand leadership over
    /// (`TransferLeader` in the node).
    HandOver,
    /// Add node `id` as a voter, or remove it (`leasehold cluster add-node` / `remove-node`).
    ChangeMembership {
        id: u64,
        add: bool,
    },
}

/// Whether the operator runs a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seat {
    /// Runs (restarted after every crash): a member, or a node started to join.
    Member,
    /// Stopped for good after its removal committed, or a spare never started: nothing restarts
    /// it but a membership change that adds it (`faults`).
    Out,
}

pub(super) struct SimNode {
    pub(super) id: u64,
    pub(super) server_ip: Ipv4Addr,
    pub(super) config: Arc<Config>,
    /// The durable log: survives crashes.
    pub(super) log: MemLog,
    /// The log this node had before its disk was lost (`--wipe-disks`): what it acknowledged then
    /// still counts for rule 1 (an entry was committed when a majority held it).
    pub(super) lost_log: Option<MemLog>,
    pub(super) live: Option<Live>,
    pub(super) incarnation: u64,
    /// This node's clock reads virtual time plus this.
    pub(super) offset_us: i64,
    pub(super) election_timeout_ticks: usize,
    /// The lease actor's `FlushProposals` is scheduled.
    pub(super) flush_scheduled: bool,
    /// The lease actor's `SnapshotSlice` is scheduled.
    pub(super) slice_scheduled: bool,
    /// Crash at the next write of entries as leader, once its appends have left (`faults`).
    pub(super) crash_before_write: bool,
    /// When the last mail to each actor arrives (mail is delivered in order).
    pub(super) engine_mail_at_us: u64,
    pub(super) raft_mail_at_us: u64,
    pub(super) restart_scheduled: bool,
    /// The last Raft status the lease actor got (the role also depends on the time: the leader lease).
    pub(super) status: RaftStatus,
    pub(super) seat: Seat,
    /// Started with `--join` (it joined with an empty log): every restart keeps the flag, as a
    /// service's command line does.
    pub(super) join: bool,
    /// Its ticks and sweeps are scheduled (from its first start on).
    pub(super) ticking: bool,
    /// Its removal committed and the operator will stop it (`Event::Decommission`), unless asked
    /// to add it again first.
    pub(super) leaving: bool,
}

impl World {
    pub(super) fn start_node(&mut self, n: usize) -> Result<(), String> {
        self.nodes[n].incarnation += 1;
        let node = &self.nodes[n];
        let limits = &node.config.limits;
        let grace_ms = limits.expiry_grace_secs * 1000;
        let table = driver::open_table(&node.log, grace_ms, limits.max_leases)
            .map_err(|e| format!("n{}: the table from its own log: {e}", node.id))?;
        // Its peer list: the first members, and itself when it joined later (as the README says).
        let members = self.config.nodes as u64;
        let voters = (1..=members).chain((node.id > members).then_some(node.id)).collect();
        let replica_config = ReplicaConfig {
            voters,
            join: node.join,
            applied: table.applied_index(),
            heartbeat_ticks: HEARTBEAT_TICKS,
            election_ticks: ELECTION_TICKS,
            election_timeout_ticks: Some(node.election_timeout_ticks),
            tick_us: TICK_US,
            ..ReplicaConfig::new(node.id)
        };
        let replica = Replica::new(&replica_config, node.log.clone(), &self.logger)
            .map_err(|e| format!("n{}: restart failed: {e}", node.id))?;
        let applied = table.applied_index();
        let digest = table.digest();
        let engine = Engine::new(node.config.clone(), table, node.id, node.incarnation)
            .with_replay_until(node.log.committed_index());
        let (id, incarnation, timeout) = (node.id, node.incarnation, node.election_timeout_ticks);
        let node = &mut self.nodes[n];
        node.live = Some(Live { replica, engine, batch: Vec::new(), snapshot: None });
        node.flush_scheduled = false;
        node.slice_scheduled = false;
        node.crash_before_write = false;
        node.status = no_status(id);
        self.note(Note::Restart { node: id, incarnation, applied, election_timeout_ticks: timeout });
        if !self.nodes[n].ticking {
            self.nodes[n].ticking = true;
            let phase_us = self.net_rng.below(TICK_US);
            self.schedule(self.now_us + phase_us, Event::Tick(n));
            self.schedule(self.now_us + phase_us + SWEEP_US, Event::Sweep(n));
        }
        if applied > 0 {
            self.checker.applied(id, applied, digest)?;
            self.check_table(n)?;
        }
        self.drive(n)
    }

    pub(super) fn restart_node(&mut self, n: usize) -> Result<(), String> {
        // A new election timeout, different from every other node's, drawn from the seed.
        let taken: Vec<usize> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != n)
            .map(|(_, node)| node.election_timeout_ticks)
            .collect();
        let free: Vec<usize> = (ELECTION_TICKS..2 * ELECTION_TICKS).filter(|t| !taken.contains(t)).collect();
        self.nodes[n].election_timeout_ticks = free[self.fault_rng.index(free.len())];
        self.start_node(n)
    }

    /// Drop the replica, the engine and every mail in flight between them; keep the log.
    pub(super) fn crash(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        if node.live.take().is_some() {
            node.status = no_status(node.id);
            node.flush_scheduled = false;
            node.slice_scheduled = false;
            node.crash_before_write = false;
            self.report.crashes += 1;
            let id = node.id;
            self.note(Note::Crash { node: id });
        }
    }

    fn mail_engine(&mut self, n: usize, mail: EngineMail) {
        let node = &mut self.nodes[n];
        let at_us = (self.now_us + self.plan.hop_us).max(node.engine_mail_at_us);
        node.engine_mail_at_us = at_us;
        let incarnation = node.incarnation;
        self.schedule(at_us, Event::EngineMail { node: n, incarnation, mail: Box::new(mail) });
    }

    pub(super) fn mail_raft(&mut self, n: usize, mail: RaftMail) {
        let node = &mut self.nodes[n];
        let at_us = (self.now_us + self.plan.hop_us).max(node.raft_mail_at_us);
        node.raft_mail_at_us = at_us;
        let incarnation = node.incarnation;
        self.schedule(at_us, Event::RaftMail { node: n, incarnation, mail: Box::new(mail) });
    }

    /// The raft actor's side: proposals from the lease actor, and its snapshots.
    pub(super) fn raft_mail(&mut self, n: usize, mail: RaftMail) -> Result<(), String> {
        let Some(live) = self.nodes[n].live.as_mut() else { return Ok(()) };
        match mail {
            RaftMail::Propose(proposals) => {
                let count = proposals.len() as u64;
                let mut outputs = RaftOutputs::default();
                if driver::propose(&mut live.replica, &mut outputs, proposals).is_err() {
                    self.report.refused_proposals += count;
                }
                self.carry_out(n, outputs)?;
                self.drive(n)
            }
            RaftMail::SnapshotTaken { index, data } => {
                let stored = live
                    .replica
                    .take_snapshot(index, data)
                    .map_err(|e| format!("n{}: snapshot at {index}: {e}", n + 1))?;
                if stored {
                    self.report.snapshots_taken += 1;
                    self.note(Note::SnapshotTaken { node: n as u64 + 1, index });
                }
                Ok(())
            }
            RaftMail::HandOver => {
                let (to, what) = match live.replica.hand_over() {
                    Ok(to) => (to, "handed over"),
                    Err(_) => (0, "nothing to hand over"),
                };
                self.note(Note::Transfer { node: n as u64 + 1, to, what });
                self.drive(n)
            }
            RaftMail::ChangeMembership { id, add } => {
                // The raft actor's `ChangeMembership`: the new member's peer address as context.
                let context = if add { peer_addr(id).to_string().into_bytes() } else { Vec::new() };
                let outcome = match live.replica.propose_membership(id, add, context) {
                    Ok(()) => {
                        self.report.membership_proposed += 1;
                        "proposed"
                    }
                    Err(ClusterError::MembershipRefused(_)) => {
                        self.report.membership_refused += 1;
                        "refused: would lose quorum"
                    }
                    Err(ClusterError::NotLeader) => {
                        self.report.membership_not_leader += 1;
                        "refused: not the leader"
                    }
                    // raft-rs drops a configuration change proposed while a leadership transfer is
                    // under way; the operator is told and asks again.
                    Err(ClusterError::Raft(raft::Error::ProposalDropped)) => {
                        self.report.membership_not_leader += 1;
                        "refused: dropped during a leadership transfer"
                    }
                    Err(e) => return Err(format!("n{}: membership change of n{id}: {e}", n + 1)),
                };
                self.note(Note::MembershipChange { node: n as u64 + 1, id, add, outcome });
                self.drive(n)
            }
        }
    }

    pub(super) fn schedule_flush(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        if !node.flush_scheduled {
            node.flush_scheduled = true;
            let incarnation = node.incarnation;
            self.schedule(self.now_us + self.plan.flush_delay_us, Event::FlushProposals { node: n, incarnation });
        }
    }

    /// Run the replica while it has a `Ready`, through the raft actor's driver: what may leave
    /// before the write goes first, then the write to the `MemLog`, then the rest.
    pub(super) fn drive(&mut self, n: usize) -> Result<(), String> {
        let halted = |e| format!("n{}: replica halted: {e}", n + 1);
        loop {
            let Some(live) = self.nodes[n].live.as_mut() else { return Ok(()) };
            if !live.replica.has_ready() {
                return Ok(());
            }
            let mut outputs = RaftOutputs::default();
            let begun = driver::begin(&mut live.replica, &mut outputs).map_err(halted)?;
            let leader = live.replica.is_leader();
            self.carry_out(n, outputs)?;
            // The armed crash: the leader's appends are on the network, its own write is not made.
            let unwritten = begun.write().and_then(|write| Some((write.entries.first()?, write.entries.last()?)));
            if let Some((first, last)) = unwritten.filter(|_| leader && self.nodes[n].crash_before_write) {
                let (first, last) = (first.index, last.index);
                drop(begun);
                self.crash_before_write(n, first, last);
                return Ok(());
            }
            let Some(live) = self.nodes[n].live.as_mut() else { return Ok(()) };
            let mut outputs = RaftOutputs::default();
            driver::finish(&mut live.replica, &mut outputs, begun).map_err(halted)?;
            self.carry_out(n, outputs)?;
        }
    }

    /// Carry out what the driver routed, in order: messages onto the network, mail to the lease
    /// actor (committed entries with their terms as the log has them now, for check 5).
    fn carry_out(&mut self, n: usize, outputs: RaftOutputs) -> Result<(), String> {
        // Membership changes come before the committed entries that carry them (`driver`).
        let mut changes = Vec::new();
        for output in outputs.0 {
            match output {
                RaftOutput::Send(messages) => {
                    for message in messages {
                        self.send_peer(n, message);
                    }
                }
                RaftOutput::Mail(mail) => {
                    let terms = match &mail {
                        ToStateMachine::Entries(entries) => {
                            if !changes.is_empty() {
                                self.note_conf_changes(n, entries, std::mem::take(&mut changes))?;
                            }
                            let log = &self.nodes[n].log;
                            entries.iter().map(|entry| (entry.index, log.term(entry.index).ok())).collect()
                        }
                        _ => Vec::new(),
                    };
                    self.mail_engine(n, EngineMail::StateMachine { mail, terms });
                }
                RaftOutput::Status(status) => self.mail_engine(n, EngineMail::Status(status)),
                RaftOutput::Membership(change) => changes.push(change),
            }
        }
        if !changes.is_empty() {
            return Err(format!("n{}: membership changes {changes:?} without the entries that carry them", n + 1));
        }
        Ok(())
    }

    /// Node `n` applied the membership `changes` carried by conf-change entries among `entries`, in
    /// order. The first node to apply one records the configuration it makes (the one before, with
    /// that change); every other node must apply the same change at the same index, and its log
    /// must then hold the same voters. A committed removal has the operator stop that node.
    fn note_conf_changes(
        &mut self,
        n: usize,
        entries: &[CommittedEntry],
        changes: Vec<MembershipChange>,
    ) -> Result<(), String> {
        let id = n as u64 + 1;
        let log = &self.nodes[n].log;
        let indexes: Vec<u64> = entries
            .iter()
            .filter(|entry| {
                log.entries(entry.index, entry.index + 1, None, raft::GetEntriesContext::empty(false)).is_ok_and(
                    |found| found.first().is_some_and(|e| e.get_entry_type() == EntryType::EntryConfChangeV2),
                )
            })
            .map(|entry| entry.index)
            .collect();
        if indexes.len() != changes.len() {
            return Err(format!("n{id}: membership changes {changes:?} but conf-change entries at {indexes:?}"));
        }
        for (index, change) in indexes.into_iter().zip(changes) {
            let (&before_index, before) = self.configs.range(..index).next_back().expect("the first configuration");
            let mut voters = before.clone();
            voters.retain(|voter| *voter != change.id);
            if change.added {
                voters.push(change.id);
                voters.sort_unstable();
            }
            match self.configs.get(&index) {
                Some(known) if *known != voters => {
                    return Err(format!(
                        "n{id}: the change at {index} ({change:?}) makes voters {voters:?}, another node made {known:?}"
                    ))
                }
                Some(_) => {}
                None => {
                    if let Some((&later, _)) = self.configs.range(index..).next() {
                        return Err(format!(
                            "n{id}: a configuration change at {index}, after one at {later} was known"
                        ));
                    }
                    self.note(Note::Configuration { index, voters: voter_bits(&voters), after: before_index });
                    let slot = change.id as usize - 1;
                    if change.added {
                        self.report.members_added += 1;
                        if self.nodes[slot].seat == Seat::Out {
                            return Err(format!(
                                "n{} was added at {index}, but the operator had stopped it",
                                change.id
                            ));
                        }
                    } else {
                        self.report.members_removed += 1;
                        // The operator sees the removal in `cluster status` and stops the node.
                        self.nodes[slot].leaving = true;
                        let at_us = self.now_us + self.fault_rng.between(0, 3_000_000);
                        self.schedule(at_us, Event::Decommission(slot));
                    }
                    self.configs.insert(index, voters);
                }
            }
        }
        let log = &self.nodes[n].log;
        let conf_index = log.conf_index();
        let stored = log.initial_state().map(|state| state.conf_state.voters).unwrap_or_default();
        if let Some((_, expected)) = self.configs.range(..=conf_index).next_back() {
            let mut stored = stored;
            stored.sort_unstable();
            if stored != *expected {
                return Err(format!(
                    "n{id}: its log holds voters {stored:?} at {conf_index}, the change made {expected:?}"
                ));
            }
        }
        Ok(())
    }

    /// The voters of the latest committed configuration.
    pub(super) fn voters(&self) -> &[u64] {
        self.configs.values().next_back().map_or(&[], Vec::as_slice)
    }

    /// The lease actor's `snapshot_slice`: a few records of the snapshot (a seeded number, so entries
    /// and packets apply while it is half-written), the rest by mail to itself. The lease actor's
    /// snapshot thread is inline here: each slice is encoded at once, and the finished snapshot is
    /// mailed to the raft actor.
    fn snapshot_slice(&mut self, n: usize) {
        let records = self.slice_rng.between(1, 8) as usize;
        let Some(live) = self.nodes[n].live.as_mut() else { return };
        let Some(part) = state_machine::snapshot_slice(&mut live.engine, records) else { return };
        if let Some(encoder) = part.begun {
            live.snapshot = Some(encoder);
        }
        let Some(encoder) = live.snapshot.as_mut() else { return };
        encoder.encode(&part.records);
        if part.last {
            if let Some(encoder) = live.snapshot.take() {
                let (index, _, data) = state_machine::finish_snapshot(encoder);
                self.mail_raft(n, RaftMail::SnapshotTaken { index, data });
            }
        } else if !self.nodes[n].slice_scheduled {
            // A notified item, as in actix: it runs once the mailbox is drained, so it never holds
            // up the mail behind it (it does not advance `engine_mail_at_us`). One at a time.
            self.nodes[n].slice_scheduled = true;
            let incarnation = self.nodes[n].incarnation;
            let at_us = self.now_us + self.plan.hop_us;
            let mail = Box::new(EngineMail::SnapshotSlice);
            self.schedule(at_us, Event::EngineMail { node: n, incarnation, mail });
        }
    }

    /// The lease actor's side of the raft actor's mail.
    pub(super) fn engine_mail(&mut self, n: usize, mail: EngineMail) -> Result<(), String> {
        match mail {
            EngineMail::StateMachine { mail, terms } => self.state_machine_mail(n, mail, &terms),
            EngineMail::SnapshotSlice => {
                self.nodes[n].slice_scheduled = false;
                self.snapshot_slice(n);
                Ok(())
            }
            EngineMail::Status(status) => {
                let now_us = self.now_us;
                let node = &mut self.nodes[n];
                let Some(live) = node.live.as_mut() else { return Ok(()) };
                let change = state_machine::on_status(&mut live.engine, &mut node.status, status, now_us);
                self.report.leader_elections += u64::from(change.elected);
                if let Some(role) = change.role {
                    self.note_role(n, role);
                }
                Ok(())
            }
        }
    }

    /// The lease actor's role from its last status at this moment: the leader lease runs out with
    /// time, so it is checked again before every request.
    pub(super) fn refresh_role(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        let Some(live) = node.live.as_mut() else { return };
        if let Some(role) = state_machine::refresh_role(&mut live.engine, &node.status, self.now_us) {
            self.note_role(n, role);
        }
    }

    fn note_role(&mut self, n: usize, role: Role) {
        let node = &self.nodes[n];
        let (id, term, commit) = (node.id, node.status.term, node.status.commit_index);
        self.note(Note::Role { node: id, term, role: role_name(role), commit });
    }

    /// The role the node's engine answers in (no quorum when down).
    pub(super) fn role(&self, n: usize) -> Role {
        self.nodes[n].live.as_ref().map_or(Role::NoQuorum, |live| live.engine.role())
    }

    /// The lease actor's handling of `ToStateMachine`, with the checks after every applied entry
    /// and restored snapshot, and on every ACK (`terms`: the entries' terms when handed out).
    fn state_machine_mail(
        &mut self,
        n: usize,
        mail: ToStateMachine,
        terms: &[(u64, Option<u64>)],
    ) -> Result<(), String> {
        let id = self.nodes[n].id;
        let now_us = self.node_now_us(n);
        if let ToStateMachine::Entries(entries) = &mail {
            let (first, last) = (entries[0].index, entries[entries.len() - 1].index);
            self.note(Note::Applied { node: id, first, last });
        }
        let (offset_us, world_now_us) = (self.nodes[n].offset_us, self.now_us);
        // The replicated reservations as they stood after each entry that changed them, so each
        // ACK is checked against what its own entry's table knew.
        let changes_reservations = |entry: &CommittedEntry| {
            entry.proposals.iter().any(|p| matches!(p.command, Command::Reserve { .. } | Command::Unreserve { .. }))
        };
        let mut reserved_at = match &mail {
            ToStateMachine::Entries(entries) if entries.iter().any(changes_reservations) => {
                vec![(0, self.reserved_on(n, None))]
            }
            _ => Vec::new(),
        };
        let Some(live) = self.nodes[n].live.as_mut() else { return Ok(()) };
        // After each entry that moved the table: the same index gives the same digest on every node
        // (check 3), and a table that bound something keeps its invariants (check 4).
        let checker = &mut self.checker;
        let mut applied_index = live.engine.table().applied_index();
        let mut failure = None;
        let applied = state_machine::on_raft_mail(&mut live.engine, mail, now_us, |entry, engine| {
            let table = engine.table();
            if !reserved_at.is_empty() && changes_reservations(entry) {
                reserved_at.push((entry.index, reserved_in(table)));
            }
            if failure.is_some() || table.applied_index() == applied_index {
                return;
            }
            applied_index = table.applied_index();
            let checked = if applied_index != entry.index {
                Err(format!("n{id}: applied entry {} but the table says {applied_index}", entry.index))
            } else {
                checker.applied(id, entry.index, table.digest()).and_then(|()| {
                    if entry.proposals.is_empty() {
                        Ok(())
                    } else {
                        checker.table(id, table, offset_us, world_now_us)
                    }
                })
            };
            failure = checked.err();
        });
        // An unusable snapshot stops a real node; here it fails the seed.
        let applied = applied.map_err(|e| format!("n{id}: {e}"))?;
        if let Some(failure) = failure {
            return Err(failure);
        }
        if let Some((index, _)) = applied.restored {
            // As the lease actor drops its snapshot thread: the table it was of is gone.
            if let Some(live) = self.nodes[n].live.as_mut() {
                live.snapshot = None;
            }
            self.report.snapshots_restored += 1;
            self.note(Note::Restored { node: id, index });
            let digest = self.nodes[n].live.as_ref().map_or(0, |live| live.engine.table().digest());
            self.checker.applied(id, index, digest)?;
            self.check_table(n)?;
        }
        for (_, result) in &applied.admin {
            self.report.admin_done += u64::from(result.is_ok());
            self.report.reservations_refused += u64::from(result.is_err());
            self.note(Note::AdminOutcome { node: id, done: result.is_ok() });
        }
        for reply in applied.replies {
            let (index, destination, reply) = (reply.index, reply.outgoing.destination, reply.outgoing.reply);
            let client = usize::from(u16::from_be_bytes([reply.chaddr[4], reply.chaddr[5]]));
            if self.clients.get(client).is_some_and(|c| c.mac == reply.chaddr) {
                let reserved = self.reserved_on(n, Some((&reserved_at, index)));
                self.check_reply(n, client, &reply, destination, &reserved)?;
            }
            if reply.message_type == ReplyType::Ack {
                let term = terms.iter().find(|(at, _)| *at == index).and_then(|(_, term)| *term);
                self.check_durable(n, index, term)?;
                self.report.acks += 1;
                if self.role(n) != Role::Leader {
                    self.report.follower_acks += 1;
                }
            } else if reply.message_type == ReplyType::Nak {
                self.report.naks += 1;
            }
            self.send_reply(n, reply, destination, index);
        }
        if applied.snapshot_due {
            self.snapshot_slice(n);
        }
        Ok(())
    }
}

/// What the lease actor knows of Raft before the first status (as `LeaseActor::new` starts).
pub(super) fn no_status(node_id: u64) -> RaftStatus {
    RaftStatus { node_id, term: 0, leader_id: None, is_leader: false, lease_until_us: None, commit_index: 0 }
}

/// Voter ids as bits (bit `id - 1`), for notes.
pub(super) fn voter_bits(voters: &[u64]) -> u8 {
    voters.iter().fold(0, |bits, id| bits | 1 << (id - 1))
}

pub(super) fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::NoQuorum => "no quorum",
    }
}
