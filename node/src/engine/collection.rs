//! Record collection, the proposing side: which records the leader asks every replica to forget.
//! A record reusable (expired, released or declined) for longer than `record_retention_secs` is
//! named in a `Command::Collect`, found through the pools' reusable-since order (`allocator`), not
//! by a scan; apply (`leasehold_cluster::lease`) forgets only those still past retention and
//! unchanged since, so a returning client keeps getting its old address back until then.

use std::net::Ipv4Addr;

use leasehold_cluster::{Command, Proposal};

use super::{Engine, Role};

/// Records one collection command forgets at most (it is one log entry, replicated and fsynced).
pub const MAX_COLLECT_PER_COMMAND: usize = 4_096;

impl Engine {
    /// On the leader: a command that forgets records reusable for longer than
    /// `record_retention_secs` (at most `MAX_COLLECT_PER_COMMAND` of them), if there are any. It
    /// waits for no answer; apply decides for every replica alike which records go.
    pub fn propose_collection(&mut self, now_us: u64) -> Option<Proposal> {
        if self.role != Role::Leader {
            return None;
        }
        let retention_ms = self.config.limits.record_retention_secs.saturating_mul(1000);
        let reusable_before_ms = (now_us / 1000).checked_sub(retention_ms)?;
        let ips: Vec<Ipv4Addr> = self
            .indexes
            .iter()
            .flat_map(|index| index.reusable_by(reusable_before_ms))
            .take(MAX_COLLECT_PER_COMMAND)
            .collect();
        if ips.is_empty() {
            return None;
        }
        let tag = self.next_tag();
        let command = Command::Collect { ips, reusable_before_ms, decided_at_index: self.table.applied_index() };
        Some(Proposal { tag, command })
    }
}
