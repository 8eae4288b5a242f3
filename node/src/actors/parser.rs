//! The parser actor: datagrams → validated requests for the lease actor (malformed ones dropped and
//! counted, never a panic), and replies → bytes, which it sends on the socket they belong to.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use actix::prelude::*;

use super::lease::{Incoming, LeaseActor};
use super::socket::Transmitter;
use crate::engine::{Arrival, Outgoing};
use crate::metrics::Metrics;
use crate::wire::{self, DropReason};

#[derive(Message)]
#[rtype(result = "()")]
pub struct Datagram {
    pub bytes: Vec<u8>,
    pub from: SocketAddr,
    /// The IP destination address (IP_PKTINFO), when the kernel told it.
    pub destination: Option<Ipv4Addr>,
    /// The interface (an index into `Config::interfaces`) whose socket received it.
    pub interface: usize,
}

/// A reply to encode and send.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Encode(pub Outgoing);

pub struct ParserActor {
    lease: Addr<LeaseActor>,
    /// The send side of each interface's socket, in `Config::interfaces` order.
    sockets: Vec<Transmitter>,
    max_frame_bytes: usize,
    mailbox_capacity: usize,
    metrics: Arc<Metrics>,
}

impl ParserActor {
    pub fn new(
        lease: Addr<LeaseActor>,
        max_frame_bytes: usize,
        mailbox_capacity: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        ParserActor { lease, sockets: Vec::new(), max_frame_bytes, mailbox_capacity, metrics }
    }
}

/// Tells the parser where to send encoded replies: the socket of each interface, in
/// `Config::interfaces` order (the socket actors are started after the parser).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect(pub Vec<Transmitter>);

impl Actor for ParserActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }
}

impl Handler<Connect> for ParserActor {
    type Result = ();

    fn handle(&mut self, msg: Connect, _: &mut Self::Context) {
        self.sockets = msg.0;
    }
}

impl Handler<Datagram> for ParserActor {
    type Result = ();

    fn handle(&mut self, msg: Datagram, _: &mut Self::Context) {
        match wire::parse(&msg.bytes, self.max_frame_bytes) {
            Ok(request) => {
                self.metrics.received(request.message_type);
                let to = msg.destination.filter(|ip| !ip.is_broadcast());
                let arrival = Arrival { interface: msg.interface, to };
                if self.lease.try_send(Incoming(request, arrival)).is_err() {
                    self.metrics.dropped(DropReason::Overloaded);
                }
            }
            Err(reason) => self.metrics.dropped(reason),
        }
    }
}

impl Handler<Encode> for ParserActor {
    type Result = ();

    fn handle(&mut self, msg: Encode, _: &mut Self::Context) {
        let Outgoing { reply, destination, interface, max_bytes } = msg.0;
        let wire::Emitted { bytes, dropped } = wire::emit(&reply, max_bytes);
        for code in dropped {
            self.metrics.option_dropped(code);
        }
        self.metrics.sent(reply.message_type);
        // A reply leaves by the interface its request came in on (a broadcast reply must reach
        // that segment); an unknown index, which a peer's replica cannot produce, uses the first.
        if let Some(socket) = self.sockets.get(interface).or(self.sockets.first()) {
            socket.transmit(&bytes, destination);
        }
    }
}
