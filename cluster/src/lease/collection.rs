//! Record collection, the apply side: a `Command::Collect` names records its leader found reusable
//! for longer than `record_retention_secs`; apply forgets those still past it and unchanged since
//! the leader looked, so every replica forgets exactly the same records and never a live binding.
//! (Which records to name is the engine's `propose_collection`.)

use std::net::Ipv4Addr;

use super::{Lease, LeaseTable};

/// May `lease` be forgotten by a collection decided at `decided_at_index` for records reusable
/// before `reusable_before_ms`? Not a live binding, nor a record changed after the decision.
pub(super) fn collectable(lease: &Lease, grace_ms: u64, reusable_before_ms: u64, decided_at_index: u64) -> bool {
    lease.reusable_at_ms(grace_ms) <= reusable_before_ms
        && !lease.is_active(reusable_before_ms)
        && lease.changed_at_index <= decided_at_index
}

impl LeaseTable {
    /// Those of `ips` whose records are still collectable.
    pub(super) fn collectable<'a>(
        &'a self,
        ips: &'a [Ipv4Addr],
        reusable_before_ms: u64,
        decided_at_index: u64,
    ) -> impl Iterator<Item = Ipv4Addr> + 'a {
        ips.iter().copied().filter(move |ip| {
            self.by_ip
                .get(ip)
                .is_some_and(|lease| collectable(lease, self.params.grace_ms, reusable_before_ms, decided_at_index))
        })
    }
}
