//! The membership guard: a change of voters that would leave the cluster without a quorum it can
//! reach, or without any voter, is refused before it is proposed. And learners: a node added through
//! the admin API joins as a raft-rs learner (it receives the log but neither votes nor counts for a
//! quorum, so the cluster keeps its whole fault margin while the newcomer catches up), and the leader
//! promotes it to voter once its log is within `PROMOTE_WITHIN_ENTRIES` of the leader's and it has
//! answered within an election timeout (`promote_caught_up_learners`), or when asked to.
//!
//! Owns when each follower last answered this leader (`note_heard`, from its append and heartbeat
//! responses, on the replica's clock) and the pure rule `check_membership_change`. A voter counts
//! as reachable when it answered within one election timeout (heartbeats go out every
//! `heartbeat_ticks`, so a live follower is never near that old) and its last report does not say
//! it is catching up: a node that started with an empty log (a new member, a lost disk) answers the
//! leader but votes for nobody until it has caught up, so counting it could leave voters that can
//! never elect a leader (remove the leader of [1, 2, 3] while 3 catches up: [2, 3] wait for each
//! other for good). raft-rs's own `recent_active` is not used: check-quorum clears it on every voter
//! once per election timeout, so a live follower would look gone just after each check, and a dead
//! one alive for up to a timeout after it died.
//!
//! The rule (sizes are voter counts, a quorum of n is n / 2 + 1):
//! - removing: the node must be a voter and not the last one; the voters left must include a quorum
//!   of themselves that is reachable now. Removing a live voter while another is down can leave the
//!   rest short of a majority: refused, with who is unreachable.
//! - adding: the node must not be a voter already; the current voters that are reachable must be a
//!   quorum of the new, larger set, because the new node counts for nothing until it has caught up.
//!   A cluster of one may always add a second voter (there is no other way to grow), although the
//!   two then need each other until the new one is up; the README says so.

use std::collections::{BTreeMap, BTreeSet};

use super::Replica;
use crate::storage::DurableLog;
use crate::ClusterError;

/// A change of the voter set, as asked for through the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    Add(u64),
    Remove(u64),
}

/// A learner this close to the leader's last log index (and heard from lately) is promoted.
pub const PROMOTE_WITHIN_ENTRIES: u64 = 100;

/// Votes that make a majority of `voters` voters.
fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

fn list(ids: &BTreeSet<u64>) -> String {
    let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
    format!("[{}]", ids.join(", "))
}

/// Whether `change` keeps a reachable quorum, given the current `voters` and which of them are
/// `reachable` (the leader included). `Err` is the reason, for an operator.
pub fn check_membership_change(
    voters: &BTreeSet<u64>,
    reachable: &BTreeSet<u64>,
    change: MembershipChange,
) -> Result<(), String> {
    match change {
        MembershipChange::Remove(id) => {
            if !voters.contains(&id) {
                return Err(format!("node {id} is not a voter (voters: {})", list(voters)));
            }
            if voters.len() == 1 {
                return Err(format!(
                    "node {id} is the last voter: removing it would leave a cluster that can never commit again"
                ));
            }
            let rest: BTreeSet<u64> = voters.iter().copied().filter(|v| *v != id).collect();
            let live: BTreeSet<u64> = rest.intersection(reachable).copied().collect();
            let need = quorum(rest.len());
            if live.len() < need {
                let down: BTreeSet<u64> = rest.difference(reachable).copied().collect();
                return Err(format!(
                    "removing node {id} would lose quorum: the voters left, {}, need {need} for a quorum but only {} \
                     {} reachable ({} not answering, or still catching up); bring them back first",
                    list(&rest),
                    live.len(),
                    if live.len() == 1 { "is" } else { "are" },
                    list(&down)
                ));
            }
            Ok(())
        }
        MembershipChange::Add(id) => {
            if voters.contains(&id) {
                return Err(format!("node {id} is already a voter (voters: {})", list(voters)));
            }
            if voters.len() == 1 {
                return Ok(());
            }
            let after = voters.len() + 1;
            let live: BTreeSet<u64> = voters.intersection(reachable).copied().collect();
            let need = quorum(after);
            if live.len() < need {
                let down: BTreeSet<u64> = voters.difference(reachable).copied().collect();
                return Err(format!(
                    "adding node {id} would lose quorum: {after} voters need {need} for a quorum, and only {} of the \
                     current voters {} {} reachable ({} not answering, or still catching up; the new node counts only \
                     once it has caught up); bring them back or remove them first",
                    live.len(),
                    list(voters),
                    if live.len() == 1 { "is" } else { "are" },
                    list(&down)
                ));
            }
            Ok(())
        }
    }
}

/// When each follower last answered the leader, on the replica's clock (`tick`'s `now_us`).
#[derive(Debug, Default)]
pub(super) struct HeardFrom {
    at_us: BTreeMap<u64, u64>,
}

impl<L: DurableLog> Replica<L> {
    /// A follower's append or heartbeat response arrived.
    pub(super) fn note_heard(&mut self, from: u64) {
        self.heard_from.at_us.insert(from, self.now_us);
    }

    /// The current voters (the last configuration applied).
    pub(super) fn voters(&self) -> BTreeSet<u64> {
        self.conf_history.last().map(|(_, conf)| conf.voters.iter().copied().collect()).unwrap_or_default()
    }

    /// The current learners (the last configuration applied).
    pub(super) fn learners(&self) -> BTreeSet<u64> {
        self.conf_history.last().map(|(_, conf)| conf.learners.iter().copied().collect()).unwrap_or_default()
    }

    /// Answered this leader within one election timeout.
    fn heard_lately(&self, id: u64) -> bool {
        self.heard_from.at_us.get(&id).is_some_and(|at| self.now_us.saturating_sub(*at) <= self.election_timeout_us)
    }

    /// Propose `id` as a learner reachable at `context` (its peer address: every node's transport
    /// learns it when the change commits). Leader only; refused for a current member or while another
    /// configuration change is uncommitted.
    pub fn propose_learner(&mut self, id: u64, context: Vec<u8>) -> Result<(), ClusterError> {
        self.ready_for_conf_change()?;
        if self.voters().contains(&id) || self.learners().contains(&id) {
            return Err(ClusterError::MembershipRefused(format!(
                "node {id} is already a member (voters: {}, learners: {})",
                list(&self.voters()),
                list(&self.learners())
            )));
        }
        self.propose_single(id, raft::eraftpb::ConfChangeType::AddLearnerNode, context)
    }

    /// Propose learner `id` as a voter (raft-rs: AddNode of a learner). Refused unless it is a learner
    /// that answered lately, and when the voters that are reachable, it included, would not be a
    /// quorum of the larger set.
    pub fn propose_promotion(&mut self, id: u64) -> Result<(), ClusterError> {
        self.ready_for_conf_change()?;
        if !self.learners().contains(&id) {
            return Err(ClusterError::MembershipRefused(format!(
                "node {id} is not a learner (learners: {})",
                list(&self.learners())
            )));
        }
        if !self.heard_lately(id) {
            return Err(ClusterError::MembershipRefused(format!(
                "learner {id} has not answered within an election timeout: it would vote without being there"
            )));
        }
        let mut reachable = self.reachable_voters();
        reachable.insert(id);
        let mut with = self.voters();
        with.insert(id);
        let need = quorum(with.len());
        if reachable.intersection(&with).count() < need {
            return Err(ClusterError::MembershipRefused(format!(
                "promoting node {id} would lose quorum: {} voters need {need}, {} reachable",
                with.len(),
                reachable.intersection(&with).count()
            )));
        }
        self.propose_single(id, raft::eraftpb::ConfChangeType::AddNode, Vec::new())
    }

    /// On the leader, at each tick: promote one learner that has caught up, when no configuration
    /// change is in flight. Returns the one proposed.
    pub(super) fn promote_caught_up_learners(&mut self) -> Option<u64> {
        if !self.is_leader() || self.node.raft.has_pending_conf() || self.pending.is_some() {
            return None;
        }
        let last = self.node.raft.raft_log.last_index();
        let ready = self.learners().into_iter().find(|id| {
            let matched = self.node.raft.prs().get(*id).map(|p| p.matched).unwrap_or(0);
            matched + PROMOTE_WITHIN_ENTRIES >= last && self.heard_lately(*id)
        })?;
        self.propose_promotion(ready).ok().map(|()| ready)
    }

    fn ready_for_conf_change(&self) -> Result<(), ClusterError> {
        if self.halted {
            return Err(ClusterError::Halted);
        }
        self.no_ready_pending("membership change between advance and persisted")?;
        if !self.is_leader() {
            return Err(ClusterError::NotLeader);
        }
        if self.node.raft.has_pending_conf() {
            return Err(ClusterError::MembershipRefused(
                "another membership change is not committed yet; try again in a moment".into(),
            ));
        }
        Ok(())
    }

    fn propose_single(
        &mut self,
        id: u64,
        kind: raft::eraftpb::ConfChangeType,
        context: Vec<u8>,
    ) -> Result<(), ClusterError> {
        let mut single = raft::eraftpb::ConfChangeSingle { node_id: id, ..Default::default() };
        single.set_change_type(kind);
        let mut change = raft::eraftpb::ConfChangeV2::default();
        change.set_changes(vec![single].into());
        change.context = context.into();
        self.node.propose_conf_change(Vec::new(), change)?;
        Ok(())
    }

    /// This node and the voters that answered it within one election timeout and vote: their last
    /// report says they have caught up (a follower of a version before that report says nothing
    /// of it, and is taken to have). A voter that crashed less than a timeout ago still counts; one
    /// that lost its disk too, until its first answer says it is catching up.
    pub fn reachable_voters(&self) -> BTreeSet<u64> {
        let window = self.election_timeout_us;
        let mut reachable: BTreeSet<u64> = self
            .voters()
            .into_iter()
            .filter(|id| self.heard_from.at_us.get(id).is_some_and(|at| self.now_us.saturating_sub(*at) <= window))
            .filter(|id| self.peer_reports.get(id).is_some_and(|report| report.caught_up))
            .collect();
        reachable.insert(self.node_id);
        reachable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn the_last_voter_is_never_removed() {
        let problem = check_membership_change(&set(&[1]), &set(&[1]), MembershipChange::Remove(1)).unwrap_err();
        assert!(problem.contains("last voter"), "{problem}");
    }

    #[test]
    fn removing_a_live_voter_while_another_is_down_loses_quorum() {
        // 3 voters, node 3 down: removing 2 leaves [1, 3] with only 1 reachable; 2 are needed.
        let problem =
            check_membership_change(&set(&[1, 2, 3]), &set(&[1, 2]), MembershipChange::Remove(2)).expect_err("refused");
        assert!(problem.contains("would lose quorum"), "{problem}");
        assert!(problem.contains("[3] not answering"), "{problem}");
        // Removing the one that is down is what the operator should do: [1, 2] both reachable.
        assert_eq!(check_membership_change(&set(&[1, 2, 3]), &set(&[1, 2]), MembershipChange::Remove(3)), Ok(()));
        // All up: removing any one (the leader too) keeps a quorum.
        for id in 1..=3 {
            assert_eq!(
                check_membership_change(&set(&[1, 2, 3]), &set(&[1, 2, 3]), MembershipChange::Remove(id)),
                Ok(())
            );
        }
        // 5 voters, 2 down: removing a live one leaves 4 with 2 reachable (3 needed).
        assert!(check_membership_change(&set(&[1, 2, 3, 4, 5]), &set(&[1, 2, 3]), MembershipChange::Remove(3)).is_err());
        // ...and removing a dead one leaves 4 with 3 reachable.
        assert_eq!(
            check_membership_change(&set(&[1, 2, 3, 4, 5]), &set(&[1, 2, 3]), MembershipChange::Remove(5)),
            Ok(())
        );
        // Two voters, the other down: removing it leaves the leader alone, a quorum of one.
        assert_eq!(check_membership_change(&set(&[1, 2]), &set(&[1]), MembershipChange::Remove(2)), Ok(()));
    }

    #[test]
    fn adding_needs_a_reachable_quorum_of_the_larger_set() {
        // 3 voters with one down, adding a 4th: 3 needed, 2 reachable.
        let problem =
            check_membership_change(&set(&[1, 2, 3]), &set(&[1, 2]), MembershipChange::Add(4)).expect_err("refused");
        assert!(problem.contains("adding node 4 would lose quorum"), "{problem}");
        assert_eq!(check_membership_change(&set(&[1, 2, 3]), &set(&[1, 2, 3]), MembershipChange::Add(4)), Ok(()));
        // Two voters, both up, adding a third: 2 of 3 reachable.
        assert_eq!(check_membership_change(&set(&[1, 2]), &set(&[1, 2]), MembershipChange::Add(3)), Ok(()));
        // A cluster of one may grow.
        assert_eq!(check_membership_change(&set(&[1]), &set(&[1]), MembershipChange::Add(2)), Ok(()));
    }

    #[test]
    fn unknown_or_duplicate_members_are_named() {
        let problem = check_membership_change(&set(&[1, 2, 3]), &set(&[1, 2, 3]), MembershipChange::Remove(9))
            .expect_err("refused");
        assert!(problem.contains("node 9 is not a voter"), "{problem}");
        let problem =
            check_membership_change(&set(&[1, 2, 3]), &set(&[1, 2, 3]), MembershipChange::Add(2)).expect_err("refused");
        assert!(problem.contains("already a voter"), "{problem}");
    }
}
