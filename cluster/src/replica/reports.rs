//! Status reports: what each member says about itself, and the leader's view of the members.
//!
//! Owns the report a follower puts on its append and heartbeat responses (its own term, commit and
//! applied index, whether it is still catching up and so votes for nobody, the digest of its
//! lease-relevant config and the digest of its boot root: `stamp_reports`),
//! the leader's record of the last one from each follower
//! (`take_report`, `PeerReport`), and `members`, the `MemberProgress` list that
//! `GET /v1/cluster` shows. Nothing here changes what Raft decides: raft-rs does not read the
//! context of those responses, and the leader strips the report before stepping one. The digests
//! are only carried and shown here; comparing them is the node's business.

use raft::eraftpb::{Message, MessageType};

use super::Replica;
use crate::storage::DurableLog;

/// Marks a follower's report of its own term, commit and applied index, then 1 while it catches up
/// after starting with an empty log (0 otherwise), then its config digest (0: none), then its boot
/// root digest (0: no root, or not digested yet), each a big-endian u64, in the context of its
/// append and heartbeat responses (raft-rs does not read that context; the leader strips it).
/// A report of three values (from a version before the fourth) says nothing of catching up: the
/// follower is taken to have caught up, as those versions' leaders took it. One without the fifth
/// says nothing of its config, one without the sixth nothing of its boot root. Values after the
/// sixth (from a later version) are ignored.
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
    /// The first 8 bytes of its boot-root digest (0: no root, not digested yet, or it did not say).
    boot_root_digest: u64,
}

impl PeerReport {
    /// The report's values, in the order they travel (see `STATUS_REPORT_MAGIC`).
    fn values(&self) -> [u64; 6] {
        let catching_up = u64::from(!self.caught_up);
        [self.term, self.commit, self.applied, catching_up, self.config_digest, self.boot_root_digest]
    }

    /// The context of a response carrying this report.
    fn encode(&self) -> Vec<u8> {
        let mut context = STATUS_REPORT_MAGIC.to_vec();
        for value in self.values() {
            context.extend_from_slice(&value.to_be_bytes());
        }
        context
    }

    /// A report from the context of a response, if it carries one with at least term, commit and
    /// applied index; what an older version leaves out reads as "did not say".
    fn decode(context: &[u8]) -> Option<PeerReport> {
        let body = context.strip_prefix(STATUS_REPORT_MAGIC.as_slice())?;
        let mut values = body.chunks_exact(8).filter_map(|c| <[u8; 8]>::try_from(c).ok().map(u64::from_be_bytes));
        let (term, commit, applied) = (values.next()?, values.next()?, values.next()?);
        Some(PeerReport {
            term,
            commit,
            applied,
            caught_up: values.next() != Some(1),
            config_digest: values.next().unwrap_or(0),
            boot_root_digest: values.next().unwrap_or(0),
        })
    }
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
    /// The digest of the files under the member's boot root, in hex (`None`: no root, not digested
    /// yet, or not known here): this node's own always, a follower's as it last reported it (so
    /// only on the leader).
    pub boot_root_digest: Option<String>,
}

fn carries_report(message: &Message) -> bool {
    matches!(message.get_msg_type(), MessageType::MsgAppendResponse | MessageType::MsgHeartbeatResponse)
}

impl<L: DurableLog> Replica<L> {
    /// This node's config changed (a reload): report the new digest from now on.
    pub fn set_config_digest(&mut self, digest: u64) {
        self.config_digest = digest;
    }

    /// The files under this node's boot root digest to this (0: no root): report it from now on.
    pub fn set_boot_root_digest(&mut self, digest: u64) {
        self.boot_root_digest = digest;
    }

    /// This node's own report, as it stands now.
    fn own_report(&self) -> PeerReport {
        let hs = self.node.raft.hard_state();
        PeerReport {
            term: hs.term,
            commit: hs.commit,
            applied: self.node.raft.raft_log.applied,
            caught_up: self.catch_up.caught_up(),
            config_digest: self.config_digest,
            boot_root_digest: self.boot_root_digest,
        }
    }

    /// Put this node's own term, commit and applied index on its responses to the leader.
    pub(super) fn stamp_reports(&self, messages: &mut [Message]) {
        let context = self.own_report().encode();
        for message in messages.iter_mut().filter(|m| carries_report(m) && m.context.is_empty()) {
            message.context = context.clone().into();
        }
    }

    /// Take a follower's report off its response (raft-rs must not see it as a read-index ack).
    pub(super) fn take_report(&mut self, message: &mut Message) {
        if !carries_report(message) {
            return;
        }
        if !message.context.starts_with(STATUS_REPORT_MAGIC.as_slice()) {
            return;
        }
        if let Some(report) = PeerReport::decode(&message.context) {
            self.peer_reports.insert(message.from, report);
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
                        boot_root_digest: self.boot_root_digest,
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
                    boot_root_digest: report
                        .filter(|r| r.boot_root_digest != 0)
                        .map(|r| format!("{:016x}", r.boot_root_digest)),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> PeerReport {
        PeerReport {
            term: 7,
            commit: 120,
            applied: 118,
            caught_up: true,
            config_digest: 0xc0f1_9001,
            boot_root_digest: 0xb007_0001,
        }
    }

    /// The context as a version that sent only the first `n` values wrote it.
    fn first_values(report: &PeerReport, n: usize) -> Vec<u8> {
        let mut context = STATUS_REPORT_MAGIC.to_vec();
        for value in &report.values()[..n] {
            context.extend_from_slice(&value.to_be_bytes());
        }
        context
    }

    #[test]
    fn reports_carry_six_values_and_read_back_whole() {
        let sent = report();
        let context = sent.encode();
        assert_eq!(context.len(), 4 + 6 * 8, "the magic and six values");
        assert_eq!(PeerReport::decode(&context), Some(sent));
        let catching_up = PeerReport { caught_up: false, ..sent };
        assert_eq!(PeerReport::decode(&catching_up.encode()), Some(catching_up));
    }

    #[test]
    fn a_report_from_an_older_version_says_nothing_of_what_it_leaves_out() {
        let sent = report();
        let five = PeerReport::decode(&first_values(&sent, 5)).expect("a report of five values");
        assert_eq!(five, PeerReport { boot_root_digest: 0, ..sent }, "no sixth value: no boot root digest");
        let four = PeerReport::decode(&first_values(&sent, 4)).expect("a report of four values");
        assert_eq!(four, PeerReport { config_digest: 0, boot_root_digest: 0, ..sent });
        let three = PeerReport::decode(&first_values(&sent, 3)).expect("a report of three values");
        assert_eq!(three, PeerReport { caught_up: true, config_digest: 0, boot_root_digest: 0, ..sent });
        // A later version's seventh value is not read.
        let mut seven = sent.encode();
        seven.extend_from_slice(&42u64.to_be_bytes());
        assert_eq!(PeerReport::decode(&seven), Some(sent));
    }

    #[test]
    fn what_is_not_a_report_is_not_read_as_one() {
        assert_eq!(PeerReport::decode(&first_values(&report(), 2)), None, "fewer than three values");
        assert_eq!(PeerReport::decode(b""), None);
        let mut other = report().encode();
        other[0] = b'X';
        assert_eq!(PeerReport::decode(&other), None, "another magic");
    }
}
