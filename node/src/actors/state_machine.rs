//! The lease actor's side of the raft actor's mail, without the actor: what the engine does with
//! `ToStateMachine` and `RaftStatus`, and what the actor must then do.
//!
//! Owns the one path from committed entries, snapshots, rejections and Raft status to the engine,
//! shared by the lease actor (`lease`) and the simulation: `on_raft_mail` applies committed entries
//! (`Engine::apply_committed`), replaces the table with a snapshot from the leader, or forgets
//! rejected proposals, and returns `Applied` — the replies to send, the decisions to log, the admin
//! requests to answer, whether a snapshot slice is due. A snapshot that does not decode to the table
//! at its index is fatal (`UnusableSnapshot`): the raft layer has moved past that index, so serving
//! on from the old table would answer clients from a state the log no longer describes; the node
//! stops (the simulation fails the seed). `snapshot_slice` copies out the next slice of a snapshot in
//! progress and `finish_snapshot` turns its encoder into the bytes to store; `on_status` and `refresh_role` keep the engine's role in step with Raft's status and
//! the leader lease. Nothing here does I/O or reads a clock: the caller passes `now_us`.

use leasehold_cluster::driver::table_at;
use leasehold_cluster::lease::SnapshotEncoder;
use leasehold_cluster::{CommittedEntry, ProposalTag, RaftStatus, ToStateMachine};

use super::lease::AdminError;
use crate::engine::{AdminOutcome, Decision, Engine, Outgoing, ReservationError, Role, SnapshotPart};

/// What the lease actor does after one mail from the raft actor, in this order: log and send the
/// replies, log the silent decisions, answer the admin requests, write a snapshot slice if due.
#[derive(Debug, Default)]
pub struct Applied {
    /// Replies built from committed entries.
    pub replies: Vec<Reply>,
    /// Outcomes of this node's proposals that send nothing (RELEASE, DECLINE, refused binds).
    pub silent: Vec<Decision>,
    /// Propose-to-apply latency of each of this node's proposals, in microseconds.
    pub commit_latencies_us: Vec<u64>,
    /// Answers for the admin requests waiting on these tags (if any still waits).
    pub admin: Vec<(ProposalTag, Result<(), AdminError>)>,
    /// The table was replaced by a snapshot from the leader: its index and how many leases it holds.
    pub restored: Option<(u64, usize)>,
    /// Entries were applied: a snapshot may be due (`snapshot_slice`).
    pub snapshot_due: bool,
}

/// A reply to a client, built from the committed entry at `index`.
#[derive(Debug)]
pub struct Reply {
    pub outgoing: Outgoing,
    pub decision: Decision,
    pub index: u64,
}

/// A snapshot from the leader that does not give the table at its index: the node must stop.
#[derive(Debug, thiserror::Error)]
#[error("the snapshot at index {index} from the leader is unusable: {reason}")]
pub struct UnusableSnapshot {
    pub index: u64,
    pub reason: String,
}

/// Carry out one mail from the raft actor on `engine`. `after_entry` sees the engine after each
/// committed entry is applied (the simulation checks the table there; the lease actor passes a
/// closure that does nothing).
pub fn on_raft_mail(
    engine: &mut Engine,
    mail: ToStateMachine,
    now_us: u64,
    mut after_entry: impl FnMut(&CommittedEntry, &Engine),
) -> Result<Applied, UnusableSnapshot> {
    let mut applied = Applied::default();
    match mail {
        ToStateMachine::Entries(entries) => {
            // One at a time (as `apply_committed` does), so each reply knows its entry.
            for entry in &entries {
                let answers = engine.apply_committed(std::slice::from_ref(entry), now_us);
                after_entry(entry, engine);
                applied.replies.extend(answers.replies.into_iter().map(|(outgoing, decision)| Reply {
                    outgoing,
                    decision,
                    index: entry.index,
                }));
                applied.silent.extend(answers.silent);
                applied.commit_latencies_us.extend(answers.commit_latencies_us);
                applied.admin.extend(answers.admin.into_iter().map(|(tag, outcome)| (tag, admin_result(outcome))));
            }
            applied.snapshot_due = true;
        }
        ToStateMachine::Restore { index, data } => {
            let limits = &engine.config().limits;
            let table = table_at(index, &data, limits.expiry_grace_secs * 1000, limits.max_leases)
                .map_err(|e| UnusableSnapshot { index, reason: e.to_string() })?;
            applied.restored = Some((index, table.len()));
            engine.restore(table);
        }
        ToStateMachine::Rejected(tags) => {
            engine.rejected(&tags);
            applied.admin = tags
                .into_iter()
                .map(|tag| (tag, Err(AdminError::Unavailable("no Raft leader: try again".into()))))
                .collect();
        }
    }
    Ok(applied)
}

/// The answers of proposals a store decided, committed at `index`, as the lease actor sends them.
pub fn applied_of(answers: crate::engine::Answers, index: u64) -> Applied {
    Applied {
        replies: answers.replies.into_iter().map(|(outgoing, decision)| Reply { outgoing, decision, index }).collect(),
        silent: answers.silent,
        commit_latencies_us: answers.commit_latencies_us,
        admin: answers.admin.into_iter().map(|(tag, outcome)| (tag, admin_result(outcome))).collect(),
        restored: None,
        snapshot_due: false,
    }
}

fn admin_result(outcome: AdminOutcome) -> Result<(), AdminError> {
    match outcome {
        AdminOutcome::Done => Ok(()),
        AdminOutcome::Refused(why) => Err(AdminError::Refused(ReservationError::Conflict(why))),
        AdminOutcome::NotFound => Err(AdminError::Refused(ReservationError::NotFound("no such reservation".into()))),
    }
}

/// The next slice of the snapshot that is due or in progress: copies of up to `max_records` records
/// (about 10 ns each on this thread). Their encoding (`SnapshotEncoder::encode`, then
/// `finish_snapshot`) happens wherever the encoder of `SnapshotPart::begun` went: the lease actor's
/// snapshot thread, or inline in the simulation.
pub fn snapshot_slice(engine: &mut Engine, max_records: usize) -> Option<SnapshotPart> {
    engine.snapshot_step(max_records)
}

/// A snapshot whose every record was encoded: its index, its size before compression, and its bytes
/// as stored and sent (version 6, compressed).
pub fn finish_snapshot(encoder: SnapshotEncoder) -> (u64, usize, Vec<u8>) {
    let (applied_index, data) = encoder.finish();
    let written = data.len();
    (applied_index, written, leasehold_cluster::lease::compress_snapshot(data))
}

/// What a new Raft status changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusChange {
    /// This node became leader (of a new term, or again).
    pub elected: bool,
    /// Raft's leader flag or term changed.
    pub raft_role_changed: bool,
    /// The engine's answering role changed to this.
    pub role: Option<Role>,
}

/// A status from the raft actor: remember it in `current` and set the engine's role from it.
pub fn on_status(engine: &mut Engine, current: &mut RaftStatus, status: RaftStatus, now_us: u64) -> StatusChange {
    let elected = status.is_leader && (!current.is_leader || current.term != status.term);
    let raft_role_changed = status.is_leader != current.is_leader || status.term != current.term;
    *current = status;
    StatusChange { elected, raft_role_changed, role: refresh_role(engine, current, now_us) }
}

/// Set the engine's role from the last status at `now_us` (the leader lease's clock): the lease
/// runs out with time, not with a message, so this is checked again before every request.
/// Returns the new role when it changed.
pub fn refresh_role(engine: &mut Engine, status: &RaftStatus, now_us: u64) -> Option<Role> {
    let role = Role::from_status(status, now_us);
    if role == engine.role() {
        return None;
    }
    engine.set_role(role);
    Some(role)
}

#[cfg(test)]
mod tests;
