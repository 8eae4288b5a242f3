//! The checks the world makes beyond the `Checker`'s: rule 1 on every ACK built from an entry (a
//! majority of the configuration that committed it holds it), rules 1 and 5 on every ACK without
//! one, every reply's path and pool (a relayed request is answered to the relay with its option 82;
//! an address comes from the client's own subnet), reservations (an OFFER, ACK or proposed binding
//! gives a reserved client its address and nobody else that one, as the answering node knows them),
//! the table after each change, and the end of the settle and quiet phases (every client holds an
//! address; every member has the same table).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use leasehold_cluster::storage::{DurableLog, MemLog};
use leasehold_cluster::{ClientKey, LeaseTable};
use leasehold_node::engine::Role;
use leasehold_node::wire::{Destination as WireDestination, Reply, ReplyType};
use raft::Storage;

use crate::client::State as ClientState;

use super::nodes::role_name;
use super::plan::{on_segment, Segment};
use super::World;

/// Replicated reservations as a table holds them: (MAC, address).
pub(super) type Reserved = Vec<([u8; 6], Ipv4Addr)>;

pub(super) fn reserved_in(table: &LeaseTable) -> Reserved {
    table.reservations().map(|host| (host.mac, host.ip)).collect()
}

impl World {
    pub(super) fn full_check(&mut self) -> Result<(), String> {
        let now_us = self.now_us;
        let tables: Vec<(u64, &LeaseTable, i64)> =
            self.nodes.iter().filter_map(|n| n.live.as_ref().map(|l| (n.id, l.engine.table(), n.offset_us))).collect();
        self.checker.full_check(&tables, now_us)
    }

    /// DESIGN rule 1: the entry an ACK is built from is durable on a majority — in their logs with
    /// the same term, or behind their snapshots. `term`: the entry's term when it was handed out.
    /// The majority is of the configuration the leader committed it with: the last one before the
    /// entry, or the one before that (raft-rs uses a configuration once applied, and proposes the
    /// next change only after that).
    pub(super) fn check_durable(&self, n: usize, index: u64, term: Option<u64>) -> Result<(), String> {
        let holds = |log: &MemLog| match (log.term(index), term) {
            (Ok(theirs), Some(ours)) => theirs == ours,
            _ => log.snapshot_index() >= index,
        };
        let holders = |voters: &[u64]| {
            voters
                .iter()
                .map(|id| &self.nodes[*id as usize - 1])
                .filter(|node| holds(&node.log) || node.lost_log.as_ref().is_some_and(holds))
                .count()
        };
        let mut counts = Vec::new();
        for voters in self.configs.range(..index).rev().take(2).map(|(_, voters)| voters) {
            let count = holders(voters);
            if count * 2 > voters.len() {
                return Ok(());
            }
            counts.push(format!("{count} of voters {voters:?}"));
        }
        Err(format!(
            "rule 1 (ACK only after commit): n{} ACKs from entry {index} (term {term:?}), which only {} hold",
            n + 1,
            counts.join(", or ")
        ))
    }

    /// The replicated reservations node `n` knows: its table's now, or (`at`: the views a mail's
    /// entries left, from before the first, and an entry's index) as they stood after that entry.
    pub(super) fn reserved_on(&self, n: usize, at: Option<(&[(u64, Reserved)], u64)>) -> Reserved {
        if let Some((_, view)) = at.and_then(|(views, index)| views.iter().rev().find(|(at, _)| *at <= index)) {
            return view.clone();
        }
        self.nodes[n].live.as_ref().map(|live| reserved_in(live.engine.table())).unwrap_or_default()
    }

    /// A reply node `n` sends to `client`: RFC 2131 §4.1 and RFC 3046 §2.2 for a relayed request (to
    /// the relay, with the relay's option 82 back), an address from the client's own subnet (a
    /// renewal straight from a relayed client included), and the reservations (`reserved`: the
    /// replicated ones as the reply's table had them).
    pub(super) fn check_reply(
        &mut self,
        n: usize,
        client: usize,
        reply: &Reply,
        destination: WireDestination,
        reserved: &Reserved,
    ) -> Result<(), String> {
        let id = n as u64 + 1;
        if !reply.giaddr.is_unspecified() {
            if destination != WireDestination::Relay(reply.giaddr) {
                return Err(format!("n{id}'s {:?} to relayed c{client} goes to {destination:?}", reply.message_type));
            }
            if reply.relay_agent_info != self.plan.relay_agent_info(client) {
                return Err(format!(
                    "n{id}'s {:?} to relayed c{client} carries option 82 {:?}, not the relay's",
                    reply.message_type, reply.relay_agent_info
                ));
            }
        }
        if !matches!(reply.message_type, ReplyType::Offer | ReplyType::Ack) || reply.yiaddr.is_unspecified() {
            return Ok(());
        }
        let segment = self.plan.segments[client];
        if !on_segment(segment, reply.yiaddr) {
            return Err(format!(
                "wrong pool: n{id} {:?}s {} to c{client}, which is {}",
                reply.message_type,
                reply.yiaddr,
                if segment == Segment::Direct { "on the nodes' segment" } else { "behind the relay" }
            ));
        }
        let reserved_client = self.check_reservations(n, client, reply.chaddr, reply.yiaddr, reserved)?;
        if reserved_client && reply.message_type == ReplyType::Ack {
            self.report.reserved_acks += 1;
        }
        Ok(())
    }

    /// Reservations, as node `n` knows them (its config file's, and `reserved`): a client with one
    /// is given its address and no other, and nobody else is given a reserved address. Returns
    /// whether the client has a reservation.
    pub(super) fn check_reservations(
        &self,
        n: usize,
        client: usize,
        mac: [u8; 6],
        ip: Ipv4Addr,
        reserved: &Reserved,
    ) -> Result<bool, String> {
        let config = &self.nodes[n].config.reservations;
        let own = config
            .iter()
            .find(|r| r.mac == Some(mac))
            .map(|r| r.ip)
            .or_else(|| reserved.iter().find(|(m, _)| *m == mac).map(|(_, ip)| *ip));
        let holder = config
            .iter()
            .find(|r| r.ip == ip)
            .and_then(|r| r.mac)
            .or_else(|| reserved.iter().find(|(_, r)| *r == ip).map(|(m, _)| *m));
        match (own, holder) {
            (Some(own), _) if own != ip => {
                Err(format!("reservations: n{} gives c{client} {ip}, but its reservation is {own}", n + 1))
            }
            (None, Some(holder)) if holder != mac => Err(format!(
                "reservations: n{} gives c{client} {ip}, which is reserved for {}",
                n + 1,
                ClientKey::Mac(holder)
            )),
            _ => Ok(own.is_some()),
        }
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

    /// Every live member has applied the same index.
    pub(super) fn applied_alike(&self) -> bool {
        let voters = self.voters();
        let mut applied = self
            .nodes
            .iter()
            .filter(|n| voters.contains(&n.id))
            .filter_map(|n| n.live.as_ref())
            .map(|l| l.engine.table().applied_index());
        let first = applied.next();
        applied.all(|index| Some(index) == first)
    }

    pub(super) fn check_converged(&mut self) -> Result<(), String> {
        let mut states: BTreeMap<(u64, u64), Vec<u64>> = BTreeMap::new();
        let voters = self.voters().to_vec();
        // Nodes that are not members (removed, or never added) may lag for good.
        for node in self.nodes.iter().filter(|node| voters.contains(&node.id)) {
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
