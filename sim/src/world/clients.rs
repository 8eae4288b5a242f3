//! The clients' side: carrying out what a client's state machine asks for (datagrams, timers) and
//! telling the checker when a client starts or stops using an address.

use leasehold_cluster::{ClientKey, LeaseTable};

use crate::check::Belief;
use crate::client::Effect;
use crate::trace::Note;

use super::{Event, World, EPOCH_US};

impl World {
    /// Carry out a client's effects. `ack`: the node and log entry of the ACK being handled.
    pub(super) fn client_effects(
        &mut self,
        c: usize,
        effects: &mut Vec<Effect>,
        ack: Option<(u64, u64)>,
    ) -> Result<(), String> {
        for effect in effects.drain(..) {
            match effect {
                Effect::Send { request, destination } => self.send_request(c, request, destination),
                Effect::Timer { at_us, generation } => {
                    self.schedule(at_us.max(self.now_us), Event::ClientTimer { client: c, generation })
                }
                Effect::Holds { ip, end_us } => {
                    let Some((node, index)) = ack else {
                        return Err(format!("c{c} holds {ip} without an ACK"));
                    };
                    self.note(Note::Holds { client: c, ip, until_ms: (end_us - EPOCH_US) / 1000 });
                    let belief = Belief {
                        ip,
                        client: ClientKey::Mac(self.clients[c].mac),
                        end_us,
                        index,
                        node,
                        since_us: self.now_us,
                    };
                    let now_us = self.now_us;
                    let tables: Vec<(u64, &LeaseTable, i64)> = self
                        .nodes
                        .iter()
                        .filter_map(|n| n.live.as_ref().map(|l| (n.id, l.engine.table(), n.offset_us)))
                        .collect();
                    self.checker.holds(c, belief, now_us, &tables)?;
                }
                Effect::Drops { ip, why } => {
                    self.note(Note::Drops { client: c, ip, why });
                    self.checker.drops(c);
                }
            }
        }
        Ok(())
    }
}
