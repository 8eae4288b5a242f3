//! Status reports: what each member says about itself, and the leader's view of the members.
//!
//! Owns the report a follower puts on its append and heartbeat responses (its own term, commit and
//! applied index, whether it is still catching up and so votes for nobody, and the digest of its
//! lease-relevant config: `stamp_reports`),
//! the leader's record of the last one from each follower
//! (`take_report`, `PeerReport`), and `members`, the `MemberProgress` list that
//! `GET /v1/cluster` shows. Nothing here changes what Raft decides: raft-rs does not read the
//! context of those responses, and the leader strips the report before stepping one.

use raft::eraftpb::{Message, MessageType};

use super::Replica;
use crate::storage::DurableLog;

/// Marks a follower's report of its own term, commit and applied index, then 1 while it catches up
/// after starting with an empty log (0 otherwise), then its config digest (0: none), in the context
/// of its append and heartbeat responses (raft-rs does not read that context; the leader strips it).
/// A report of three values (from a version before the fourth) says nothing of catching up: the
/// follower is taken to have caught up, as those versions' leaders took it. One without the fifth
/// says nothing of its config.
const STATUS_REPORT_MAGIC: &[u8; 4] = b"LHsr";

/// What a follower last reported about itself (see `STATUS_REPORT_MAGIC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PeerReport {
    term: u64,
    commit: u64,
    applied: u64,
    /// Not catching up after starting with an empty log (so it votes).
    pub(super) caught_up: bool,
    /// The first 8 bytes of its lease-relevant config digest (0: it did not say).
    config_digest: u64,
}

/// One member as the leader sees it (`matched`, `lag` and `state` only on the leader).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemberProgress {
    pub id: u64,
    pub voter: bool,
    pub matched: Option<u64>,
    /// Entries the member is behind the leader's last index.
    pub lag: Option<u64>,
    pub state: Option<String>,
    pub recent_active: Option<bool>,
    /// Answered this leader within an election timeout and votes (the membership guard's view;
    /// leader only).
    pub reachable: Option<bool>,
    /// Still catching up after starting with an empty log, and so voting for nobody (as it last
    /// reported; this node's own always, a follower's on the leader).
    pub catching_up: Option<bool>,
    /// The member's own term, commit and applied index: this node's own always, a follower's as
    /// it last reported them to the leader (so only on the leader).
    pub term: Option<u64>,
    pub commit: Option<u64>,
    /// Entries handed to the member's state machine.
    pub applied: Option<u64>,
    /// The digest of the member's lease-relevant config, in hex: this node's own always, a
    /// follower's as it last reported it (so only on the leader).
    pub config_digest: Option<String>,
}

fn carries_report(message: &Message) -> bool {
    matches!(message.get_msg_type(), MessageType::MsgAppendResponse | MessageType::MsgHeartbeatResponse)
}

impl<L: DurableLog> Replica<L> {
    /// This node's config changed (a reload): report the new digest from now on.
    pub fn set_config_digest(&mut self, digest: u64) {
        self.config_digest = digest;
    }

    /// Put this node's own term, commit and applied index on its responses to the leader.
    pub(super) fn stamp_reports(&self, messages: &mut [Message]) {
        let hs = self.node.raft.hard_state();
        let applied = self.node.raft.raft_log.applied;
        let catching_up = u64::from(!self.catch_up.caught_up());
        for message in messages.iter_mut().filter(|m| carries_report(m) && m.context.is_empty()) {
            let mut context = STATUS_REPORT_MAGIC.to_vec();
            for value in [hs.term, hs.commit, applied, catching_up, self.config_digest] {
                context.extend_from_slice(&value.to_be_bytes());
            }
            message.context = context.into();
        }
    }

    /// Take a follower's report off its response (raft-rs must not see it as a read-index ack).
    pub(super) fn take_report(&mut self, message: &mut Message) {
        if !carries_report(message) {
            return;
        }
        let Some(body) = message.context.strip_prefix(STATUS_REPORT_MAGIC.as_slice()) else { return };
        let mut values = body.chunks_exact(8).filter_map(|c| <[u8; 8]>::try_from(c).ok().map(u64::from_be_bytes));
        if let (Some(term), Some(commit), Some(applied)) = (values.next(), values.next(), values.next()) {
            let caught_up = values.next() != Some(1);
            let config_digest = values.next().unwrap_or(0);
            self.peer_reports.insert(message.from, PeerReport { term, commit, applied, caught_up, config_digest });
        }
        message.context = Default::default();
    }

    /// Members and, on the leader, how far each has replicated (for `GET /v1/cluster`).
    pub fn members(&self) -> Vec<MemberProgress> {
        let status = self.node.status();
        let last_index = raft::Storage::last_index(self.node.store()).unwrap_or(0);
        let voters: Vec<u64> = self.conf_history.last().map(|(_, c)| c.voters.clone()).unwrap_or_default();
        let learners: Vec<u64> = self.conf_history.last().map(|(_, c)| c.learners.clone()).unwrap_or_default();
        let reachable = self.is_leader().then(|| self.reachable_voters());
        let mut members: Vec<(u64, bool)> =
            voters.iter().map(|id| (*id, true)).chain(learners.iter().map(|id| (*id, false))).collect();
        members.sort_unstable();
        members
            .into_iter()
            .map(|(id, voter)| {
                let progress = status.progress.and_then(|p| p.get(id));
                let report = if id == self.node_id {
                    Some(PeerReport {
                        term: status.hs.term,
                        commit: status.hs.commit,
                        applied: status.applied,
                        caught_up: self.catch_up.caught_up(),
                        config_digest: self.config_digest,
                    })
                } else {
                    self.peer_reports.get(&id).copied().filter(|_| progress.is_some())
                };
                MemberProgress {
                    id,
                    voter,
                    matched: progress.map(|p| p.matched),
                    lag: progress.map(|p| last_index.saturating_sub(p.matched)),
                    state: progress.map(|p| format!("{:?}", p.state)),
                    recent_active: progress.map(|p| p.recent_active),
                    reachable: reachable.as_ref().map(|set| set.contains(&id)),
                    term: report.map(|r| r.term),
                    commit: report.map(|r| r.commit),
                    applied: report.map(|r| r.applied),
                    catching_up: report.map(|r| !r.caught_up),
                    config_digest: report.filter(|r| r.config_digest != 0).map(|r| format!("{:016x}", r.config_digest)),
                }
            })
            .collect()
    }
}
