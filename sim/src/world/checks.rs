//! The checks the world makes beyond the `Checker`'s: rule 1 on every ACK built from an entry,
//! rules 1 and 5 on every ACK without one, the table after each change, and the end of the settle
//! and quiet phases (every client holds an address; every node has the same table).

use std::collections::BTreeMap;

use leasehold_cluster::storage::{DurableLog, MemLog};
use leasehold_cluster::{ClientKey, LeaseTable};
use leasehold_node::engine::Role;
use raft::Storage;

use crate::client::State as ClientState;

use super::nodes::role_name;
use super::World;

impl World {
    pub(super) fn full_check(&mut self) -> Result<(), String> {
        let now_us = self.now_us;
        let tables: Vec<(u64, &LeaseTable, i64)> =
            self.nodes.iter().filter_map(|n| n.live.as_ref().map(|l| (n.id, l.engine.table(), n.offset_us))).collect();
        self.checker.full_check(&tables, now_us)
    }

    /// DESIGN rule 1: the entry an ACK is built from is durable on a majority — in their logs with
    /// the same term, or behind their snapshots. `term`: the entry's term when it was handed out.
    pub(super) fn check_durable(&self, n: usize, index: u64, term: Option<u64>) -> Result<(), String> {
        let holds = |log: &MemLog| match (log.term(index), term) {
            (Ok(theirs), Some(ours)) => theirs == ours,
            _ => log.snapshot_index() >= index,
        };
        let holders =
            self.nodes.iter().filter(|node| holds(&node.log) || node.lost_log.as_ref().is_some_and(holds)).count();
        if holders * 2 <= self.nodes.len() {
            return Err(format!(
                "rule 1 (ACK only after commit): n{} ACKs from entry {index} (term {term:?}), which only {holders} of {} \
                 logs hold",
                n + 1,
                self.nodes.len()
            ));
        }
        Ok(())
    }

    /// An ACK straight from a request (no proposal): only a renewal confirmed from the committed
    /// table, for no longer than the committed lease has left (DESIGN rule 5). Returns the applied
    /// index the confirmation was read at (every node past it must have the binding).
    pub(super) fn check_confirmation(
        &self,
        n: usize,
        client: usize,
        reply: &leasehold_node::wire::Reply,
    ) -> Result<u64, String> {
        let node = &self.nodes[n];
        let now_ms = self.node_now_us(n) / 1000;
        let Some(live) = node.live.as_ref() else { return Ok(0) };
        let table = live.engine.table();
        let broken = |why: String| {
            Err(format!(
                "rules 1 and 5 (an ACK without a commit only confirms a committed lease, for its remaining time): \
                 n{} ({}) ACKs {} to c{client} for {:?} s at index {}, but {why}",
                node.id,
                role_name(self.role(n)),
                reply.yiaddr,
                reply.lease_time_secs,
                table.applied_index()
            ))
        };
        let Some(lease) = table.by_ip(reply.yiaddr) else { return broken("its table has no such lease".into()) };
        if lease.client != ClientKey::Mac(reply.chaddr) {
            return broken(format!("its table binds the address to {}", lease.client));
        }
        let leasehold_cluster::LeaseState::Bound { expires_at_ms } = lease.state else {
            return broken(format!("its table has it {:?}", lease.state));
        };
        if expires_at_ms <= now_ms {
            return broken(format!("the committed lease expired at {expires_at_ms} ms (now {now_ms} ms)"));
        }
        let remaining_secs = (expires_at_ms - now_ms).div_ceil(1000);
        if reply.lease_time_secs.is_none_or(|secs| u64::from(secs) > remaining_secs) {
            return broken(format!("only {remaining_secs} s remain on the committed lease"));
        }
        Ok(table.applied_index())
    }

    pub(super) fn check_table(&mut self, n: usize) -> Result<(), String> {
        let node = &self.nodes[n];
        let Some(live) = node.live.as_ref() else { return Ok(()) };
        self.checker.table(node.id, live.engine.table(), node.offset_us, self.now_us)
    }

    pub(super) fn clients_without_address(&self) -> Vec<String> {
        self.clients
            .iter()
            .filter(|c| c.state() != ClientState::Gone)
            .filter(|c| self.checker.belief(c.index).is_none_or(|b| !b.active(self.now_us)))
            .map(|c| format!("c{} ({:?})", c.index, c.state()))
            .collect()
    }

    pub(super) fn check_every_client_holds(&mut self) -> Result<(), String> {
        let without = self.clients_without_address();
        if without.is_empty() {
            return Ok(());
        }
        let leaders: Vec<u64> =
            (0..self.nodes.len()).filter(|&n| self.role(n) == Role::Leader).map(|n| self.nodes[n].id).collect();
        Err(format!(
            "liveness: {} of {} clients have no address {:.1}s after everything healed (leaders {leaders:?}): {}",
            without.len(),
            self.clients.len(),
            self.report.settle_us as f64 / 1e6,
            without.join(", ")
        ))
    }

    /// Every live node has applied the same index.
    pub(super) fn applied_alike(&self) -> bool {
        let mut applied = self.nodes.iter().filter_map(|n| n.live.as_ref()).map(|l| l.engine.table().applied_index());
        let first = applied.next();
        applied.all(|index| Some(index) == first)
    }

    pub(super) fn check_converged(&mut self) -> Result<(), String> {
        let mut states: BTreeMap<(u64, u64), Vec<u64>> = BTreeMap::new();
        for node in &self.nodes {
            let Some(live) = node.live.as_ref() else {
                return Err(format!("n{} is down at the end", node.id));
            };
            let table = live.engine.table();
            states.entry((table.applied_index(), table.digest())).or_default().push(node.id);
        }
        if states.len() != 1 {
            let states: Vec<String> = states
                .iter()
                .map(|((index, digest), nodes)| format!("{nodes:?} at index {index} digest {digest:#018x}"))
                .collect();
            return Err(format!("convergence: the nodes did not end with the same table: {}", states.join("; ")));
        }
        let (&(index, digest), _) = states.iter().next().expect("one state");
        self.report.final_applied_index = index;
        self.trace.mix(digest);
        Ok(())
    }
}
