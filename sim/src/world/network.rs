//! Datagrams: Raft messages between peers, client requests to nodes and replies to clients, each
//! through the network's fates (partitions, cut client links, loss, duplicates, delays), and what a
//! node does with a client request (`Engine::handle_from`, as the lease actor does).
//!
//! Clients behind the relay: their broadcasts reach the nodes only through the relay, which sets
//! giaddr, adds option 82 (its circuit and remote id) and unicasts a copy to every server it is
//! configured with (every node the operator runs, as dhcrelay does with its list); replies to the relay
//! reach the client through it. What they unicast (RENEWING, RELEASE) is routed straight to the
//! server, giaddr 0. A reply broadcast on the nodes' segment (RFC 2131 §4.1: a NAK without giaddr)
//! does not reach them.

use std::net::Ipv4Addr;

use leasehold_cluster::driver;
use leasehold_cluster::Command;
use leasehold_node::engine::{Action, Arrival, Silence};
use leasehold_node::wire::{Destination as WireDestination, Reply, ReplyType, Request};
use raft::eraftpb::Message;

use crate::client::Destination;
use crate::net::Fates;
use crate::trace::Note;

use super::nodes::Seat;
use super::plan::{relay_ip, Segment};
use super::{Event, World};

impl World {
    pub(super) fn send_peer(&mut self, from: usize, message: Message) {
        self.report.peer_messages += 1;
        let to = message.to as usize - 1;
        if !self.net.peers_connected(from, to) {
            let note = peer_note(&message, false);
            self.note(note);
            return;
        }
        let fates = self.net.fates(&mut self.net_rng);
        let delays = fates.delays_us();
        if delays.is_empty() {
            let note = peer_note(&message, false);
            self.note(note);
        }
        let Some((&first, duplicates)) = delays.split_first() else { return };
        for &delay in duplicates {
            self.schedule(self.now_us + delay, Event::Peer { from, to, message: Box::new(message.clone()) });
        }
        self.schedule(self.now_us + first, Event::Peer { from, to, message: Box::new(message) });
    }

    pub(super) fn deliver_peer(&mut self, from: usize, to: usize, message: Message) -> Result<(), String> {
        let delivered = self.net.peers_connected(from, to) && self.nodes[to].live.is_some();
        let note = peer_note(&message, delivered);
        self.note(note);
        if !delivered {
            return Ok(());
        }
        let Some(live) = self.nodes[to].live.as_mut() else { return Ok(()) };
        // A stale or unexpected message is dropped, as the raft actor does; Raft retries what matters.
        // A log that lost acknowledged entries stops a real node: here it fails the seed.
        driver::receive(&mut live.replica, message).map_err(|e| format!("n{}: stopped: {e}", to + 1))?;
        self.drive(to)
    }

    pub(super) fn send_request(&mut self, client: usize, mut request: Box<Request>, destination: Destination) {
        self.report.client_messages += 1;
        let datagram = self.report.client_messages;
        let relayed = destination == Destination::Broadcast && self.plan.segments[client] != Segment::Direct;
        if relayed {
            // RFC 3046 §2.1 / RFC 2131 §4.1: the relay's address on the client's link, one hop more,
            // and the agent information it keeps the client's circuit by.
            request.giaddr = relay_ip();
            request.hops += 1;
            request.relay_agent_info = self.plan.relay_agent_info(client);
        }
        // Nodes the operator does not run (spares, removed ones) are off the network.
        let targets: Vec<usize> = match destination {
            Destination::Broadcast => (0..self.nodes.len()).filter(|&n| self.nodes[n].seat == Seat::Member).collect(),
            Destination::Unicast(ip) => self.nodes.iter().position(|node| node.server_ip == ip).into_iter().collect(),
        };
        for node in targets {
            // The relay sends each server its own unicast copy.
            let destination = if relayed { Destination::Unicast(self.nodes[node].server_ip) } else { destination };
            let fates = self.net.fates(&mut self.net_rng);
            for &delay in fates.delays_us() {
                let path = self.client_path_at_us.entry((client, node)).or_insert(0);
                let at_us = (self.now_us + delay).max(*path);
                *path = at_us;
                self.schedule(at_us, Event::ToNode { client, node, request: request.clone(), destination, datagram });
            }
        }
    }

    pub(super) fn deliver_request(
        &mut self,
        client: usize,
        n: usize,
        request: &Request,
        destination: Destination,
        datagram: u64,
    ) -> Result<(), String> {
        let delivered = self.net.client_link(n) && self.nodes[n].live.is_some();
        let id = self.nodes[n].id;
        self.note(Note::ToNode {
            client,
            node: id,
            kind: request.message_type,
            xid: request.xid,
            destination,
            relayed: !request.giaddr.is_unspecified(),
            delivered,
        });
        if !delivered {
            return Ok(());
        }
        self.refresh_role(n);
        let now_us = self.node_now_us(n);
        let Some(live) = self.nodes[n].live.as_mut() else { return Ok(()) };
        let arrival = match destination {
            Destination::Broadcast => Arrival::BROADCAST,
            Destination::Unicast(ip) => Arrival::unicast(ip),
        };
        let action = live.engine.handle_from(request, arrival, now_us);
        if matches!(action, Action::Send(_) | Action::Propose(_)) {
            self.note_answer(datagram, n)?;
        }
        match &action {
            Action::Send(outgoing) => {
                let reserved = self.reserved_on(n, None);
                self.check_reply(n, client, &outgoing.reply, outgoing.destination, &reserved)?;
            }
            Action::Propose(proposal) => {
                if let Command::Bind { mac, ip, .. } = &proposal.command {
                    // The engine decides no binding against a reservation it knows.
                    let reserved = self.reserved_on(n, None);
                    self.check_reservations(n, client, *mac, *ip, &reserved).map_err(|e| format!("{e} (proposed)"))?;
                }
            }
            Action::Silent(
                silence @ (Silence::RateLimitedMac | Silence::RateLimitedRelay | Silence::RateLimitedCircuit),
            ) => {
                // The clients send at the pace of RFC 2131's retransmissions, a few to a relay port:
                // far below every bucket (`limits.rate`, the defaults). Throttling one starves an
                // honest client: either a bucket is too small or a client is looping.
                return Err(format!(
                    "limits: n{id} throttles c{client}'s {:?}{}: {}",
                    request.message_type,
                    if request.giaddr.is_unspecified() { "" } else { " through the relay" },
                    silence.label()
                ));
            }
            _ => {}
        }
        let Some(live) = self.nodes[n].live.as_mut() else { return Ok(()) };
        match action {
            Action::Send(outgoing) => {
                let (reply, reply_destination) = (outgoing.reply, outgoing.destination);
                let index = match reply.message_type {
                    ReplyType::Ack if reply.yiaddr != Ipv4Addr::UNSPECIFIED => {
                        let index = self.check_confirmation(n, client, &reply)?;
                        self.report.acks += 1;
                        self.report.confirmations += 1;
                        index
                    }
                    ReplyType::Offer => {
                        self.report.offers += 1;
                        0
                    }
                    ReplyType::Nak => {
                        self.report.naks += 1;
                        0
                    }
                    // The simulated clients send no BOOTP.
                    ReplyType::Ack | ReplyType::Bootp => 0,
                };
                self.send_reply(n, reply, reply_destination, index);
            }
            Action::Propose(proposal) => {
                self.report.proposals += 1;
                live.batch.push(proposal);
                self.note(Note::Proposed { node: id, client, kind: request.message_type });
                self.schedule_flush(n);
            }
            Action::Silent(silence) => self.note(Note::Decided { node: id, client, what: silence.label() }),
            Action::Drop(reason) => self.note(Note::Decided { node: id, client, what: reason.label() }),
        }
        Ok(())
    }

    /// DESIGN rule 2: exactly one node answers each client message (a reply, or a proposal that will
    /// be one). The leader lease makes a deposed leader fall silent before a new one is elected.
    fn note_answer(&mut self, datagram: u64, n: usize) -> Result<(), String> {
        match self.answered.get(&datagram).copied() {
            None => {
                self.answered.insert(datagram, (n, false));
                Ok(())
            }
            Some((first, false)) if first != n => {
                self.answered.insert(datagram, (first, true));
                self.report.answered_twice += 1;
                Err(format!(
                    "rule 2 (exactly one node answers): n{} and n{} both answered datagram {datagram}",
                    self.nodes[first].id, self.nodes[n].id
                ))
            }
            Some(_) => Ok(()),
        }
    }

    /// A reply leaves node `n` for `destination`: it reaches the client when the client is where
    /// that goes (the relay forwards to its segment, a broadcast stays on the nodes' segment, a
    /// unicast to ciaddr is routed) and the network does not lose it.
    pub(super) fn send_reply(&mut self, n: usize, reply: Reply, destination: WireDestination, index: u64) {
        let [.., hi, lo] = reply.chaddr;
        let client = usize::from(u16::from_be_bytes([hi, lo]));
        if self.clients.get(client).is_none_or(|c| c.mac != reply.chaddr) {
            return;
        }
        let segment = self.plan.segments[client];
        let reaches = match destination {
            WireDestination::Relay(_) => segment != Segment::Direct,
            WireDestination::Unicast(_) => true,
            WireDestination::Broadcast => segment == Segment::Direct,
        };
        if reaches && segment != Segment::Direct {
            match (destination, reply.message_type) {
                (WireDestination::Relay(_), _) => self.report.relayed_replies += 1,
                (WireDestination::Unicast(_), ReplyType::Ack) => self.report.relayed_renewals += 1,
                _ => {}
            }
        }
        let fates = if reaches { self.net.fates(&mut self.net_rng) } else { Fates::LOST };
        if fates.delays_us().is_empty() {
            let note = Note::ToClient {
                node: self.nodes[n].id,
                client,
                kind: reply.message_type,
                ip: reply.yiaddr,
                index,
                delivered: false,
            };
            self.note(note);
        }
        let reply = Box::new(reply);
        for &delay in fates.delays_us() {
            self.schedule(self.now_us + delay, Event::ToClient { node: n, client, reply: reply.clone(), index });
        }
    }

    pub(super) fn deliver_reply(&mut self, n: usize, client: usize, reply: &Reply, index: u64) -> Result<(), String> {
        let delivered = self.net.client_link(n);
        let id = self.nodes[n].id;
        self.note(Note::ToClient { node: id, client, kind: reply.message_type, ip: reply.yiaddr, index, delivered });
        if !delivered {
            return Ok(());
        }
        let mut effects = Vec::new();
        self.clients[client]
            .on_reply(reply, self.now_us, &mut effects)
            .map_err(|e| format!("c{client} from n{id}: {e}"))?;
        self.client_effects(client, &mut effects, Some((id, index)))
    }
}

fn peer_note(message: &Message, delivered: bool) -> Note {
    Note::Peer {
        from: message.from,
        to: message.to,
        kind: message.get_msg_type(),
        term: message.term,
        index: message.index,
        delivered,
    }
}
