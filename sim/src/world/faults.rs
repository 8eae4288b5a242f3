//! The fault schedule: crashes (some losing the disk, some of a leader between sending its appends
//! and writing them itself), partitions, cut client links, bad weather, forced snapshots, voluntary
//! leadership transfers and the operator's membership changes and reservations (`operator`), one
//! random decision every 0.5–5 s of the chaos phase.

use leasehold_cluster::storage::{CatchUpMark, DurableLog, MemLog};
use leasehold_node::engine::Role;
use raft::Storage;

use crate::net::Weather;
use crate::trace::Note;

use super::nodes::{RaftMail, Seat};
use super::{Event, Phase, World};

/// A leadership transfer names a random node (sometimes a wrong one) one time in this many ppm;
/// otherwise the leader picks the most up-to-date voter.
const TRANSFER_NAMES_NODE_PPM: u32 = 300_000;

impl World {
    pub(super) fn set_weather(&mut self, weather: Weather) {
        self.net.weather = weather;
        self.note(Note::Weather {
            loss_ppm: weather.loss_ppm,
            duplicate_ppm: weather.duplicate_ppm,
            max_delay_us: weather.max_delay_us,
        });
    }

    fn leader(&self) -> Option<usize> {
        (0..self.nodes.len()).find(|&n| self.role(n) == Role::Leader)
    }

    fn note_partition(&mut self) {
        let mut groups = [0u8; 5];
        groups[..self.nodes.len()].copy_from_slice(self.net.groups());
        self.note(Note::Partition { groups });
        self.report.partitions += 1;
    }

    /// The crash `fault` armed, at the moment it waited for: leader `n` has sent its appends of
    /// entries `first..=last` and not yet written them itself. Its unwritten entries are lost with
    /// it (the `MemLog` never saw them); what its followers made durable of them is theirs.
    pub(super) fn crash_before_write(&mut self, n: usize, first: u64, last: u64) {
        self.report.crashes_before_write += 1;
        self.note(Note::CrashBeforeWrite { node: n as u64 + 1, first, last });
        self.crash(n);
        self.schedule_restart(n);
    }

    /// Restart a crashed node 0.2–20 s from now.
    fn schedule_restart(&mut self, n: usize) {
        if !self.nodes[n].restart_scheduled {
            self.nodes[n].restart_scheduled = true;
            let at_us = self.now_us + self.fault_rng.between(200_000, 20_000_000);
            self.schedule(at_us, Event::Restart(n));
        }
    }

    /// The fault schedule: one random decision every 0.5–5 s of the chaos phase.
    pub(super) fn fault(&mut self) -> Result<(), String> {
        if self.phase != Phase::Chaos {
            return Ok(());
        }
        let next_us = self.now_us + self.fault_rng.between(500_000, 5_000_000);
        self.schedule(next_us, Event::Fault);
        let count = self.nodes.len();
        // The nodes the operator runs (spares and removed nodes are not on the network).
        let running: Vec<usize> = (0..count).filter(|&n| self.nodes[n].seat == Seat::Member).collect();
        let random_node = running[self.fault_rng.index(running.len())];
        match self.fault_rng.below(13) {
            // Crash a node (the leader half the time), restart it later.
            0..=2 => {
                let n = match self.leader() {
                    Some(leader) if self.fault_rng.chance(500_000) => leader,
                    _ => random_node,
                };
                if self.nodes[n].live.is_some() && self.role(n) == Role::Leader && self.fault_rng.chance(250_000) {
                    // Not now: at its next write of entries, between sending its appends and
                    // making its own copy durable (see `nodes::drive`).
                    self.nodes[n].crash_before_write = true;
                    self.note(Note::CrashArmed { node: n as u64 + 1 });
                } else if self.nodes[n].live.is_some() {
                    self.crash(n);
                    if self.config.wipe_disks && self.fault_rng.chance(250_000) && self.may_lose_a_disk(n) {
                        // DESIGN rule 6: "a node with an empty directory catches up from a leader
                        // snapshot" — the same id, the same peers, a fresh log.
                        let lost = std::mem::replace(
                            &mut self.nodes[n].log,
                            MemLog::with_keep_entries(self.plan.keep_entries),
                        );
                        self.nodes[n].lost_log = Some(lost);
                        self.report.disks_wiped += 1;
                        self.note(Note::DiskWiped { node: n as u64 + 1 });
                    }
                    self.schedule_restart(n);
                }
            }
            // Cut one node off from its peers (the leader half the time), or a minority, or all.
            3..=5 => {
                let isolated: Vec<usize> = match self.fault_rng.below(4) {
                    0 => self.leader().into_iter().collect(),
                    1 => {
                        let mut all = running.clone();
                        self.fault_rng.shuffle(&mut all);
                        let size = self.fault_rng.between(1, (all.len() as u64 / 2).max(1)) as usize;
                        all.truncate(size);
                        all
                    }
                    _ => vec![random_node],
                };
                let generation = if self.fault_rng.chance(100_000) {
                    self.net.scatter()
                } else if isolated.is_empty() {
                    return Ok(());
                } else {
                    self.net.partition(&isolated)
                };
                self.note_partition();
                let at_us = self.now_us + self.fault_rng.between(1_000_000, 15_000_000);
                self.schedule(at_us, Event::HealPartition { generation });
            }
            // Take a node off the clients' segment for a while.
            6 => {
                let n = if self.fault_rng.chance(300_000) { self.leader().unwrap_or(random_node) } else { random_node };
                if self.net.client_link(n) {
                    self.net.set_client_link(n, false);
                    self.report.client_link_cuts += 1;
                    self.note(Note::ClientLink { node: self.nodes[n].id, up: false });
                    let at_us = self.now_us + self.fault_rng.between(1_000_000, 10_000_000);
                    self.schedule(at_us, Event::ClientLinkUp(n));
                }
            }
            // Bad weather: loss, duplicates, long delays (reordering) for a while.
            7 | 8 => {
                let loss_ppm = [0, 10_000, 50_000, 200_000][self.fault_rng.index(4)];
                let duplicate_ppm = [0, 10_000, 100_000][self.fault_rng.index(3)];
                let max_delay_us = [2_000, 20_000, 200_000][self.fault_rng.index(3)];
                self.weather_generation += 1;
                self.report.weather_changes += 1;
                self.set_weather(Weather { loss_ppm, duplicate_ppm, min_delay_us: 100, max_delay_us });
                let at_us = self.now_us + self.fault_rng.between(2_000_000, 20_000_000);
                self.schedule(at_us, Event::CalmWeather { generation: self.weather_generation });
            }
            // A snapshot now, whatever `snapshot_every_entries` says.
            9 => {
                if let Some(live) = self.nodes[random_node].live.as_ref() {
                    let table = live.engine.table();
                    let (index, data) = (table.applied_index(), table.to_snapshot());
                    self.mail_raft(random_node, RaftMail::SnapshotTaken { index, data });
                }
            }
            // The operator: a membership change, a leadership hand-over (SIGTERM on the leader,
            // `cluster transfer-leader`), or a reservation made or ended.
            10 => self.membership_fault()?,
            11 => self.transfer_leadership()?,
            _ => self.reservation_fault(),
        }
        Ok(())
    }

    /// The raft actor's `TransferLeader`: the leader gives up its lease, the status saying so goes to
    /// the lease actor, and the raft actor hands over once the lease actor has answered it (a hop
    /// after the status arrives), as the node does.
    fn transfer_leadership(&mut self) -> Result<(), String> {
        let leading = |n: &usize| self.nodes[*n].live.as_ref().is_some_and(|live| live.replica.is_leader());
        let Some(n) = (0..self.nodes.len()).find(leading) else { return Ok(()) };
        let count = self.nodes.len() as u64;
        let to = self.fault_rng.chance(TRANSFER_NAMES_NODE_PPM).then(|| self.fault_rng.below(count) + 1);
        let id = self.nodes[n].id;
        let Some(live) = self.nodes[n].live.as_mut() else { return Ok(()) };
        match live.replica.yield_leadership(to) {
            Ok(to) => {
                self.report.leader_transfers += 1;
                self.note(Note::Transfer { node: id, to, what: "leader lease given up" });
                self.drive(n)?;
                let node = &mut self.nodes[n];
                let at_us = (node.engine_mail_at_us.max(self.now_us) + self.plan.hop_us).max(node.raft_mail_at_us);
                node.raft_mail_at_us = at_us;
                let incarnation = node.incarnation;
                self.schedule(at_us, Event::RaftMail { node: n, incarnation, mail: Box::new(RaftMail::HandOver) });
            }
            Err(_) => self.note(Note::Transfer { node: id, to: to.unwrap_or(0), what: "refused" }),
        }
        Ok(())
    }

    /// Raft survives the loss of a minority's disks, not more: node `n` may lose its disk only while
    /// the voters that cannot vote — still catching up after an earlier loss, or stopped for good after
    /// their removal — with `n`, stay a minority of the voters (of the last two configurations: the
    /// one before may still be the one in force where the removal's commit has not reached; seed
    /// 1000008 removed the leader, whose commit of it reached nobody before it was stopped).
    pub(super) fn may_lose_a_disk(&self, n: usize) -> bool {
        let cannot_vote = |i: usize| i == n || self.catching_up(i) || self.nodes[i].seat == Seat::Out;
        let behind = |voters: &[u64]| voters.iter().map(|id| *id as usize - 1).filter(|&i| cannot_vote(i)).count();
        self.configs.values().rev().take(2).all(|voters| behind(voters) * 2 < voters.len())
    }

    /// Node `i` lost its disk (or started empty) and has not caught up yet: it votes for nobody.
    pub(super) fn catching_up(&self, i: usize) -> bool {
        let node = &self.nodes[i];
        let wiped_not_restarted = node.lost_log.is_some() && node.log.last_index().unwrap_or(0) == 0;
        node.log.catch_up() != CatchUpMark::Done || wiped_not_restarted
    }
}
