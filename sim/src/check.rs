//! The checkers, run after every step of a simulation.
//!
//! 1. No address is held by two clients at once: when a client starts using an address (an ACK it
//!    accepted), no other client may still be using it. Within one table an address has one record,
//!    and a client one bound address (`check_invariants`); across tables, see 3.
//! 2. No ACKed lease is lost: while a client uses an address, every node that has applied the log
//!    entry the ACK was built from must have it bound to that client, bound long enough that the
//!    node will not give it away (expiry plus grace on that node's clock) before the client stops.
//! 3. Replicas that applied the same index have the same table (`LeaseTable::digest`).
//! 4. Every table's own invariants (`LeaseTable::check_invariants`).
//!
//! The world checks two more rules itself, as it has the logs: an ACK built from a committed entry
//! is sent only while that entry is in a majority of logs (same index, same term) or behind their
//! snapshots (DESIGN rule 1), and an ACK sent without a proposal only confirms a committed lease of
//! that client for no longer than it has left (rule 5).
//!
//! The world calls these after every event with what that event changed; what did not change was
//! checked before and still holds (a belief only ever ends as time passes), so this equals a full
//! check after every step. `full_check` re-checks everything, to test that claim.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use leasehold_cluster::{ClientKey, LeaseState, LeaseTable};

/// A client's belief: it uses `ip` until `end_us`, per an ACK built from entry `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Belief {
    pub ip: Ipv4Addr,
    pub client: ClientKey,
    pub end_us: u64,
    /// The log index of the committed entry the ACK was built from.
    pub index: u64,
    /// The node that sent the ACK.
    pub node: u64,
    pub since_us: u64,
}

impl Belief {
    pub fn active(&self, now_us: u64) -> bool {
        self.end_us > now_us
    }
}

#[derive(Debug, Default)]
pub struct Checker {
    grace_us: u64,
    /// Virtual time zero, for messages.
    epoch_us: u64,
    /// The table digest first seen at each applied index, and the node that had it.
    digests: BTreeMap<u64, (u64, u64)>,
    /// Per client: the address it currently uses.
    beliefs: Vec<Option<Belief>>,
    /// The client that last started using each address.
    holders: BTreeMap<Ipv4Addr, usize>,
    pub digests_compared: u64,
    pub beliefs_checked: u64,
    /// Addresses a client started using that another client used before.
    pub reassigned: u64,
}

impl Checker {
    pub fn new(clients: usize, grace_us: u64, epoch_us: u64) -> Self {
        Checker { grace_us, epoch_us, beliefs: vec![None; clients], ..Checker::default() }
    }

    pub fn belief(&self, client: usize) -> Option<&Belief> {
        self.beliefs[client].as_ref()
    }

    /// Check 3: `node` reached `index` with a table of `digest`.
    pub fn applied(&mut self, node: u64, index: u64, digest: u64) -> Result<(), String> {
        self.digests_compared += 1;
        match self.digests.get(&index) {
            None => {
                self.digests.insert(index, (digest, node));
                Ok(())
            }
            Some(&(first, _)) if first == digest => Ok(()),
            Some(&(first, first_node)) => Err(format!(
                "check 3 (same index, same table): n{node} at index {index} has digest {digest:#018x}, \
                 n{first_node} had {first:#018x} at that index"
            )),
        }
    }

    /// The digest another node had at `index`, and which node (for reports).
    pub fn digest_at(&self, index: u64) -> Option<(u64, u64)> {
        self.digests.get(&index).copied()
    }

    /// Checks 2 and 4 on one node's table, after it changed. `offset_us` is the node's clock offset.
    pub fn table(&mut self, node: u64, table: &LeaseTable, offset_us: i64, now_us: u64) -> Result<(), String> {
        table.check_invariants().map_err(|e| format!("check 4 (table invariants) on n{node}: {e}"))?;
        for (client, belief) in self.beliefs.iter().enumerate() {
            let Some(belief) = belief else { continue };
            if belief.active(now_us) && table.applied_index() >= belief.index {
                self.beliefs_checked += 1;
                check_belief(client, belief, node, table, offset_us, self.grace_us, self.epoch_us)?;
            }
        }
        Ok(())
    }

    /// Check 1 and 2 when `client` starts using an address: nobody else uses it, and every node
    /// already past the entry has the binding. `tables`: (node, table, clock offset) of live nodes.
    pub fn holds(
        &mut self,
        client: usize,
        belief: Belief,
        now_us: u64,
        tables: &[(u64, &LeaseTable, i64)],
    ) -> Result<(), String> {
        if let Some(&other) = self.holders.get(&belief.ip) {
            if other != client {
                if let Some(theirs) = self.beliefs[other].as_ref().filter(|b| b.ip == belief.ip && b.active(now_us)) {
                    return Err(format!(
                        "check 1 (one client per address): c{client} got {} from n{} (entry {}) while c{other} \
                         still uses it until {:.3}s (ACKed by n{} from entry {})",
                        belief.ip,
                        belief.node,
                        belief.index,
                        seconds(theirs.end_us, self.epoch_us),
                        theirs.node,
                        theirs.index
                    ));
                }
            }
        }
        for &(node, table, offset_us) in tables {
            if table.applied_index() >= belief.index {
                self.beliefs_checked += 1;
                check_belief(client, &belief, node, table, offset_us, self.grace_us, self.epoch_us)?;
            }
        }
        if self.holders.insert(belief.ip, client).is_some_and(|previous| previous != client) {
            self.reassigned += 1;
        }
        self.beliefs[client] = Some(belief);
        Ok(())
    }

    /// `client` stopped using its address.
    pub fn drops(&mut self, client: usize) {
        self.beliefs[client] = None;
    }

    /// Everything again, from scratch (cross-checks the incremental checks).
    pub fn full_check(&mut self, tables: &[(u64, &LeaseTable, i64)], now_us: u64) -> Result<(), String> {
        let mut users: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
        for (client, belief) in self.beliefs.iter().enumerate() {
            let Some(belief) = belief.as_ref().filter(|b| b.active(now_us)) else { continue };
            if let Some(other) = users.insert(belief.ip, client) {
                return Err(format!("check 1 (full): c{client} and c{other} both use {}", belief.ip));
            }
        }
        for &(node, table, offset_us) in tables {
            self.table(node, table, offset_us, now_us)?;
            if let Some((digest, first_node)) = self.digests.get(&table.applied_index()) {
                if *digest != table.digest() {
                    return Err(format!(
                        "check 3 (full): n{node} at index {} differs from n{first_node}",
                        table.applied_index()
                    ));
                }
            }
        }
        Ok(())
    }
}

fn check_belief(
    client: usize,
    belief: &Belief,
    node: u64,
    table: &LeaseTable,
    offset_us: i64,
    grace_us: u64,
    epoch_us: u64,
) -> Result<(), String> {
    let lost = |what: String| {
        Err(format!(
            "check 2 (no ACKed lease lost): c{client} uses {} until {:.3}s (ACKed by n{} from entry {}), \
             but n{node} at index {} {what}",
            belief.ip,
            seconds(belief.end_us, epoch_us),
            belief.node,
            belief.index,
            table.applied_index()
        ))
    };
    let Some(lease) = table.by_ip(belief.ip) else {
        return lost("has no record of the address".into());
    };
    if lease.client != belief.client {
        return lost(format!("has it bound to {} ({:?})", lease.client, lease.state));
    }
    match lease.state {
        LeaseState::Bound { expires_at_ms } => {
            // The node's clock reads virtual time + offset; it gives the address away at
            // expires_at + grace on its clock.
            let reusable_at_us = (expires_at_ms * 1000 + grace_us) as i64 - offset_us;
            if reusable_at_us < belief.end_us as i64 {
                return lost(format!(
                    "would give it away at {:.3}s (expires at {expires_at_ms} ms on its clock, offset {} ms)",
                    seconds(reusable_at_us.max(0) as u64, epoch_us),
                    offset_us / 1000
                ));
            }
            Ok(())
        }
        other => lost(format!("has it {other:?}")),
    }
}

/// Virtual time in seconds since the start of the run.
fn seconds(time_us: u64, epoch_us: u64) -> f64 {
    time_us.saturating_sub(epoch_us) as f64 / 1e6
}
