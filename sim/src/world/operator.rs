//! The operator: membership changes and reservations, made the way an operator makes them on a
//! running cluster — through the paths the admin API takes in the node.
//!
//! Membership (README "Adding a node"): a node is added by starting it with `--join` (an empty data
//! directory, or the one it had when it was removed) and then asking the leader to add it; a node is
//! removed by asking the leader, and stopped once the removal has committed. The request goes to
//! the raft actor (`RaftMail::ChangeMembership`), whose replica's membership guard refuses a change
//! that would lose quorum; the world learns the outcome from the committed configuration
//! (`nodes::note_conf_changes`). Reservations (`leasehold reservations add|remove`): a node's
//! engine checks and proposes `Reserve`/`Unreserve` as its lease actor does, and the proposal goes
//! to the raft actor with the next flush.

use leasehold_cluster::storage::{DurableLog, MemLog};
use leasehold_cluster::ReservedHost;
use raft::Storage;

use crate::trace::Note;

use super::nodes::{RaftMail, Seat};
use super::plan::{outside_range, Segment};
use super::{Event, Phase, World};

impl World {
    /// The nodes the operator runs.
    fn running(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&n| self.nodes[n].seat == Seat::Member).collect()
    }

    /// The node the operator sends an admin request to: the leader as `cluster status` shows it, or
    /// (one time in ten, or with no leader) any node that runs, which may refuse.
    fn admin_node(&mut self) -> Option<usize> {
        let live: Vec<usize> = self.running().into_iter().filter(|&n| self.nodes[n].live.is_some()).collect();
        let leader = live.iter().copied().find(|&n| self.nodes[n].status.is_leader);
        match leader {
            Some(leader) if !self.fault_rng.chance(100_000) => Some(leader),
            _ if live.is_empty() => None,
            _ => Some(live[self.fault_rng.index(live.len())]),
        }
    }

    /// Add a node that is not a voter, or remove a voter, keeping between two (or the cluster's size
    /// less two) and five voters. Targets are drawn to exercise the membership guard too: a voter
    /// that is down, the leader itself, or a live voter while another is down (refused).
    pub(super) fn membership_fault(&mut self) -> Result<(), String> {
        let voters = self.voters().to_vec();
        let outside: Vec<usize> = (0..self.nodes.len()).filter(|&n| !voters.contains(&(n as u64 + 1))).collect();
        let fewest = self.config.nodes.saturating_sub(2).max(2).min(self.config.nodes);
        let add = !outside.is_empty() && (voters.len() <= fewest || self.fault_rng.chance(500_000));
        if add {
            let n = outside[self.fault_rng.index(outside.len())];
            self.add_node(n)?;
        } else if voters.len() > fewest || (voters.len() > 1 && self.fault_rng.chance(100_000)) {
            // Now and then below the floor: the guard refuses what would lose quorum.
            let down: Vec<u64> =
                voters.iter().copied().filter(|id| self.nodes[*id as usize - 1].live.is_none()).collect();
            let leader = (0..self.nodes.len()).find(|&n| self.nodes[n].status.is_leader).map(|n| n as u64 + 1);
            let id = match self.fault_rng.below(4) {
                0 if !down.is_empty() => down[self.fault_rng.index(down.len())],
                1 => leader.unwrap_or(voters[0]),
                _ => voters[self.fault_rng.index(voters.len())],
            };
            // Within the disks Raft survives losing (`may_lose_a_disk`): the voters left that lost
            // theirs and have not caught up stay a minority. The guard cannot tell a voter that
            // crashed less than an election timeout ago and comes back with an empty log.
            let rest: Vec<usize> = voters.iter().filter(|v| **v != id).map(|v| *v as usize - 1).collect();
            if rest.iter().filter(|&&i| self.catching_up(i)).count() * 2 >= rest.len() {
                return Ok(());
            }
            self.report.removals_asked += 1;
            self.schedule(self.now_us, Event::ChangeMembership { id, add: false });
        }
        Ok(())
    }

    /// Start node `n` to join (if the operator does not run it yet), then ask for its addition. A
    /// node that was removed keeps its data directory half the time; otherwise, as a spare does, it
    /// starts from an empty one with `--join`.
    fn add_node(&mut self, n: usize) -> Result<(), String> {
        self.report.additions_asked += 1;
        let id = n as u64 + 1;
        // Not to be stopped now, even if its removal has just committed.
        self.nodes[n].leaving = false;
        if self.nodes[n].seat == Seat::Out {
            let node = &mut self.nodes[n];
            let empty = node.log.last_index().unwrap_or(0) == 0 && node.log.snapshot_index() == 0;
            if !empty && self.fault_rng.chance(500_000) {
                let lost = std::mem::replace(&mut node.log, MemLog::with_keep_entries(self.plan.keep_entries));
                node.lost_log = Some(lost);
                node.join = true;
                self.report.joins_empty += 1;
                self.note(Note::DiskWiped { node: id });
            } else if empty {
                node.join = true;
                self.report.joins_empty += 1;
            } else {
                self.report.joins_kept += 1;
            }
            self.nodes[n].seat = Seat::Member;
            self.restart_node(n)?;
            // The operator runs `cluster add-node` once the node is up.
            let at_us = self.now_us + self.fault_rng.between(200_000, 3_000_000);
            self.schedule(at_us, Event::ChangeMembership { id, add: true });
        } else {
            self.schedule(self.now_us, Event::ChangeMembership { id, add: true });
        }
        Ok(())
    }

    /// The admin request reaches a node's raft actor.
    pub(super) fn ask_membership_change(&mut self, id: u64, add: bool) {
        if self.phase != Phase::Chaos {
            // The settle phase only heals.
            return;
        }
        if let Some(n) = self.admin_node() {
            self.mail_raft(n, RaftMail::ChangeMembership { id, add });
        }
    }

    /// Stop node `n` for good, if its removal is still the last word on it (not added again, and
    /// the operator has not asked to).
    pub(super) fn decommission(&mut self, n: usize) {
        let id = n as u64 + 1;
        if !std::mem::take(&mut self.nodes[n].leaving) || self.voters().contains(&id) {
            return;
        }
        self.crash(n);
        self.nodes[n].seat = Seat::Out;
        self.report.decommissioned += 1;
        self.note(Note::Decommissioned { node: id });
    }

    /// Reserve an address for a client that stays (its current one, a free-looking one in its
    /// range, or one outside the range), or end a reservation made before, on any running node.
    pub(super) fn reservation_fault(&mut self) {
        let live: Vec<usize> = self.running().into_iter().filter(|&n| self.nodes[n].live.is_some()).collect();
        if live.is_empty() {
            return;
        }
        let n = live[self.fault_rng.index(live.len())];
        let now_us = self.node_now_us(n);
        let Some(engine) = self.nodes[n].live.as_ref().map(|l| &l.engine) else { return };
        let made: Vec<[u8; 6]> = engine.table().reservations().map(|host| host.mac).collect();
        let proposal = if !made.is_empty() && self.fault_rng.chance(333_000) {
            let mac = made[self.fault_rng.index(made.len())];
            self.report.unreservations_asked += 1;
            self.nodes[n].live.as_mut().map(|l| l.engine.propose_unreservation(mac, now_us))
        } else {
            let c = self.plan.departing + self.fault_rng.index(self.plan.clients - self.plan.departing);
            let relayed = self.plan.segments[c] != Segment::Direct;
            let (first, size) = self.plan.range_of(c);
            let current = self.checker.belief(c).map(|belief| belief.ip);
            let ip = match self.fault_rng.below(3) {
                0 if current.is_some() => current.unwrap_or(first),
                1 => std::net::Ipv4Addr::from(u32::from(first) + self.fault_rng.below(u64::from(size)) as u32),
                _ => outside_range(relayed, 220, c),
            };
            let host = ReservedHost { mac: self.plan.mac(c), ip, hostname: Some(format!("api-{c}")), boot_file: None };
            self.report.reservations_asked += 1;
            self.nodes[n].live.as_mut().map(|l| l.engine.propose_reservation(host, now_us))
        };
        match proposal {
            Some(Ok(proposal)) => {
                self.note(Note::AdminProposed { node: n as u64 + 1 });
                if let Some(live) = self.nodes[n].live.as_mut() {
                    live.batch.push(proposal);
                }
                self.schedule_flush(n);
            }
            Some(Err(_)) => self.report.reservations_refused += 1,
            None => {}
        }
    }
}
