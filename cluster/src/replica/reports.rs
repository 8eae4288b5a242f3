//! Status reports: what each member says about itself, and the leader's view of the members.
//!
//! Owns the report a follower puts on its append and heartbeat responses (its own term, commit and
//! applied index, whether it is still catching up and so votes for nobody, the digest of its
//! lease-relevant config, the digest of its boot root and its admin API address: `stamp_reports`),
//! the leader's record of the last one from each follower
//! (`take_report`, `PeerReport`), the leader's own admin address on its appends and heartbeats to the
//! followers (`LEADER_REPORT_MAGIC`), and `members`, the `MemberProgress` list that
//! `GET /v1/cluster` shows. Nothing here changes what Raft decides: raft-rs does not read the
//! context of those responses nor of appends, the leader strips the report before stepping a
//! response and a follower strips the leader's before stepping a heartbeat. The digests and
//! addresses are only carried and shown here; comparing and using them is the node's business.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use raft::eraftpb::{Message, MessageType};

use super::Replica;
use crate::storage::DurableLog;

/// Marks a follower's report of its own term, commit and applied index, then 1 while it catches up
/// after starting with an empty log (0 otherwise), then its config digest (0: none), then its boot
/// root digest (0: no root, or not digested yet), then its admin API address (`admin_addr_number`;
/// 0: not known), each a big-endian u64, in the context of its append and heartbeat responses
/// (raft-rs does not read that context; the leader strips it).
/// A report of three values (from a version before the fourth) says nothing of catching up: the
/// follower is taken to have caught up, as those versions' leaders took it. One without the fifth
/// says nothing of its config, one without the sixth nothing of its boot root, one without the
/// seventh nothing of its admin address. Values after the seventh (from a later version) are ignored.
const STATUS_REPORT_MAGIC: &[u8; 4] = b"LHsr";

/// Marks the leader's report of itself to its followers: its admin API address
/// (`admin_addr_number`; 0: not known), a big-endian u64, in the context of its appends (raft-rs
/// does not read it) and of its heartbeats that carry no read-index context (raft-rs echoes a
/// heartbeat's context in the response: the follower strips this one before stepping the heartbeat,
/// and the leader strips one an older follower echoes). Values after the first are ignored. A
/// follower thus knows the leader's admin address, so that `leasehold reload --all` given any
/// member finds the leader, whose view names every member's.
const LEADER_REPORT_MAGIC: &[u8; 4] = b"LHlr";

/// An IPv4 socket address as one report value: the address in the upper 32 of the lower 48 bits,
/// the port in the lower 16. 0 for what another member cannot reach by it: an IPv6 address, the
/// unspecified address, port 0.
pub fn admin_addr_number(addr: SocketAddr) -> u64 {
    match addr {
        SocketAddr::V4(v4) if !v4.ip().is_unspecified() && v4.port() != 0 => {
            (u64::from(v4.ip().to_bits()) << 16) | u64::from(v4.port())
        }
        _ => 0,
    }
}

/// The address `admin_addr_number` packed (`None`: 0, or a value no version packs).
pub fn admin_addr_from_number(number: u64) -> Option<SocketAddrV4> {
    if number >> 48 != 0 {
        return None;
    }
    let ip = Ipv4Addr::from_bits(u32::try_from(number >> 16).ok()?);
    let port = (number & 0xffff) as u16;
    (!ip.is_unspecified() && port != 0).then(|| SocketAddrV4::new(ip, port))
}

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
    /// Its admin API address (`admin_addr_number`; 0: not known, or it did not say).
    admin_addr: u64,
}

impl PeerReport {
    /// The report's values, in the order they travel (see `STATUS_REPORT_MAGIC`).
    fn values(&self) -> [u64; 7] {
        let catching_up = u64::from(!self.caught_up);
        [self.term, self.commit, self.applied, catching_up, self.config_digest, self.boot_root_digest, self.admin_addr]
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
            admin_addr: values.next().unwrap_or(0),
        })
    }
}

/// What the leader says of itself to its followers (see `LEADER_REPORT_MAGIC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LeaderReport {
    /// Its admin API address (`admin_addr_number`; 0: not known).
    admin_addr: u64,
}

impl LeaderReport {
    fn encode(&self) -> Vec<u8> {
        let mut context = LEADER_REPORT_MAGIC.to_vec();
        context.extend_from_slice(&self.admin_addr.to_be_bytes());
        context
    }

    fn decode(context: &[u8]) -> Option<LeaderReport> {
        let body = context.strip_prefix(LEADER_REPORT_MAGIC.as_slice())?;
        let admin_addr = u64::from_be_bytes(body.get(..8)?.try_into().ok()?);
        Some(LeaderReport { admin_addr })
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
    /// Where the member's admin API listens, as other members reach it (`None`: not known here, an
    /// IPv6 listener, or a version that does not say): this node's own always, a follower's as it
    /// last reported it (so only on the leader), and on a follower the leader's, as the leader
    /// tells its followers.
    pub admin_addr: Option<SocketAddrV4>,
}

fn carries_report(message: &Message) -> bool {
    matches!(message.get_msg_type(), MessageType::MsgAppendResponse | MessageType::MsgHeartbeatResponse)
}

fn carries_leader_report(message: &Message) -> bool {
    matches!(message.get_msg_type(), MessageType::MsgAppend | MessageType::MsgHeartbeat)
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

    /// Where this node's admin API listens, as other members reach it (`admin_addr_number`; 0: not
    /// known): report it from now on.
    pub fn set_admin_addr(&mut self, addr: u64) {
        self.admin_addr = addr;
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
            admin_addr: self.admin_addr,
        }
    }

    /// Put this node's own report on its responses to the leader, and the leader's on its appends
    /// and on its heartbeats without a read-index context.
    pub(super) fn stamp_reports(&self, messages: &mut [Message]) {
        let context = self.own_report().encode();
        let leader = LeaderReport { admin_addr: self.admin_addr }.encode();
        for message in messages.iter_mut().filter(|m| m.context.is_empty()) {
            if carries_report(message) {
                message.context = context.clone().into();
            } else if carries_leader_report(message) && message.from == self.node_id && self.is_leader() {
                message.context = leader.clone().into();
            }
        }
    }

    /// Take a follower's report off its response (raft-rs must not see it as a read-index ack), and
    /// the leader's off its append or heartbeat (a heartbeat's context goes back in the response).
    pub(super) fn take_report(&mut self, message: &mut Message) {
        if carries_leader_report(message) {
            if let Some(report) = LeaderReport::decode(&message.context) {
                self.leader_report = Some((message.from, report));
                message.context = Default::default();
            }
            return;
        }
        if !carries_report(message) {
            return;
        }
        if message.context.starts_with(LEADER_REPORT_MAGIC.as_slice()) {
            // The leader's own report, echoed by a follower of a version that does not take it off.
            message.context = Default::default();
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
                        admin_addr: self.admin_addr,
                    })
                } else {
                    self.peer_reports.get(&id).copied().filter(|_| progress.is_some())
                };
                // On a follower: the current leader's address, as it told us.
                let leader_admin_addr = self
                    .leader_report
                    .filter(|(from, _)| *from == id && status.ss.leader_id == id && id != self.node_id)
                    .map(|(_, r)| r.admin_addr);
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
                    admin_addr: report.map(|r| r.admin_addr).or(leader_admin_addr).and_then(admin_addr_from_number),
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
            admin_addr: admin_addr_number("10.77.0.2:6767".parse().expect("an address")),
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
    fn reports_carry_seven_values_and_read_back_whole() {
        let sent = report();
        let context = sent.encode();
        assert_eq!(context.len(), 4 + 7 * 8, "the magic and seven values");
        assert_eq!(PeerReport::decode(&context), Some(sent));
        let catching_up = PeerReport { caught_up: false, ..sent };
        assert_eq!(PeerReport::decode(&catching_up.encode()), Some(catching_up));
        // The seventh value, as it travels: 10.77.0.2 << 16 | 6767.
        assert_eq!(&context[4 + 6 * 8..], &((0x0a4d_0002u64 << 16) | 6767).to_be_bytes());
    }

    #[test]
    fn a_report_from_an_older_version_says_nothing_of_what_it_leaves_out() {
        let sent = report();
        let six = PeerReport::decode(&first_values(&sent, 6)).expect("a report of six values");
        assert_eq!(six, PeerReport { admin_addr: 0, ..sent }, "no seventh value: no admin address");
        let five = PeerReport::decode(&first_values(&sent, 5)).expect("a report of five values");
        assert_eq!(five, PeerReport { boot_root_digest: 0, admin_addr: 0, ..sent }, "no sixth value: no boot root");
        let four = PeerReport::decode(&first_values(&sent, 4)).expect("a report of four values");
        assert_eq!(four, PeerReport { config_digest: 0, boot_root_digest: 0, admin_addr: 0, ..sent });
        let three = PeerReport::decode(&first_values(&sent, 3)).expect("a report of three values");
        assert_eq!(three, PeerReport { caught_up: true, config_digest: 0, boot_root_digest: 0, admin_addr: 0, ..sent });
        // A later version's eighth value is not read.
        let mut eight = sent.encode();
        eight.extend_from_slice(&42u64.to_be_bytes());
        assert_eq!(PeerReport::decode(&eight), Some(sent));
    }

    #[test]
    fn what_is_not_a_report_is_not_read_as_one() {
        assert_eq!(PeerReport::decode(&first_values(&report(), 2)), None, "fewer than three values");
        assert_eq!(PeerReport::decode(b""), None);
        let mut other = report().encode();
        other[0] = b'X';
        assert_eq!(PeerReport::decode(&other), None, "another magic");
        assert_eq!(PeerReport::decode(&LeaderReport { admin_addr: 1 }.encode()), None, "the leader's report");
        assert_eq!(LeaderReport::decode(&report().encode()), None, "a follower's report is not the leader's");
    }

    #[test]
    fn admin_addresses_pack_into_one_value_and_back() {
        for text in ["10.77.0.1:6767", "192.168.1.254:443", "255.255.255.255:65535", "1.0.0.0:1"] {
            let addr: SocketAddr = text.parse().expect("an address");
            let number = admin_addr_number(addr);
            assert!(number != 0 && number >> 48 == 0, "{text} packs into 48 bits: {number:#x}");
            assert_eq!(admin_addr_from_number(number).map(SocketAddr::V4), Some(addr), "{text}");
        }
        // What another member cannot reach it by is not packed.
        for text in ["0.0.0.0:6767", "10.77.0.1:0", "[::1]:6767", "[fd00::1]:6767"] {
            assert_eq!(admin_addr_number(text.parse().expect("an address")), 0, "{text}");
        }
        assert_eq!(admin_addr_from_number(0), None, "0: not known");
        assert_eq!(admin_addr_from_number(1 << 48), None, "beyond 48 bits: not an address");
        assert_eq!(admin_addr_from_number(6767), None, "the unspecified address");
    }

    #[test]
    fn the_leaders_report_reads_back_and_ignores_later_values() {
        let sent = LeaderReport { admin_addr: report().admin_addr };
        let context = sent.encode();
        assert_eq!(context.len(), 4 + 8);
        assert_eq!(LeaderReport::decode(&context), Some(sent));
        let mut later = context.clone();
        later.extend_from_slice(&7u64.to_be_bytes());
        assert_eq!(LeaderReport::decode(&later), Some(sent), "a later version's second value is not read");
        assert_eq!(LeaderReport::decode(&context[..10]), None, "a cut value");
        assert_eq!(LeaderReport::decode(LEADER_REPORT_MAGIC), None, "no value");
    }
}
