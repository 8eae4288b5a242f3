//! The socket actor: owns the DHCP server's UDP socket (port 67, bound to one interface with
//! SO_BINDTODEVICE, SO_BROADCAST on). It reads datagrams and hands them to the parser with
//! `try_send`; it writes the replies the parser encoded, to the address RFC 2131 §4.1 chose.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use actix::prelude::*;
use slog::{debug, warn, Logger};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::parser::{Datagram, ParserActor};
use crate::metrics::Metrics;
use crate::wire::{Destination, DropReason};

/// Kernel receive buffer: absorbs bursts while the actors catch up.
const RECV_BUFFER_BYTES: usize = 4 << 20;

/// Open the DHCP server socket.
pub fn open_socket(interface: Option<&str>, port: u16) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_broadcast(true)?;
    if let Some(name) = interface {
        socket.bind_device(Some(name.as_bytes())).map_err(|e| {
            io::Error::new(e.kind(), format!("SO_BINDTODEVICE {name}: {e} (does the interface exist?)"))
        })?;
    }
    // Best effort: a smaller buffer only means earlier drops under a burst.
    let _ = socket.set_recv_buffer_size(RECV_BUFFER_BYTES);
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).into())?;
    UdpSocket::from_std(socket.into())
}

/// A reply encoded and addressed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Transmit {
    pub bytes: Vec<u8>,
    pub destination: Destination,
}

pub struct SocketActor {
    socket: Arc<UdpSocket>,
    parser: Addr<ParserActor>,
    server_port: u16,
    client_port: u16,
    max_frame_bytes: usize,
    metrics: Arc<Metrics>,
    log: Logger,
}

impl SocketActor {
    pub fn new(
        socket: UdpSocket,
        parser: Addr<ParserActor>,
        server_port: u16,
        client_port: u16,
        max_frame_bytes: usize,
        metrics: Arc<Metrics>,
        log: Logger,
    ) -> Self {
        SocketActor { socket: Arc::new(socket), parser, server_port, client_port, max_frame_bytes, metrics, log }
    }
}

impl Actor for SocketActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let socket = self.socket.clone();
        let parser = self.parser.clone();
        let metrics = self.metrics.clone();
        let log = self.log.clone();
        // One byte more than the limit, so an oversized datagram is seen as such, not truncated.
        let buffer_len = self.max_frame_bytes + 1;
        let receive = async move {
            let mut buffer = vec![0u8; buffer_len];
            loop {
                match socket.recv_from(&mut buffer).await {
                    Ok((len, from)) => {
                        metrics.datagram();
                        let datagram = Datagram { bytes: buffer[..len].to_vec(), from };
                        if parser.try_send(datagram).is_err() {
                            metrics.dropped(DropReason::Overloaded);
                        }
                    }
                    Err(e) => warn!(log, "receive failed"; "error" => %e),
                }
            }
        };
        ctx.spawn(actix::fut::wrap_future(receive));
    }
}

impl Handler<Transmit> for SocketActor {
    type Result = ();

    fn handle(&mut self, msg: Transmit, _: &mut Self::Context) {
        let to = match msg.destination {
            Destination::Relay(giaddr) => SocketAddrV4::new(giaddr, self.server_port),
            Destination::Unicast(ciaddr) => SocketAddrV4::new(ciaddr, self.client_port),
            Destination::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, self.client_port),
        };
        if let Err(e) = self.socket.try_send_to(&msg.bytes, SocketAddr::V4(to)) {
            self.metrics.send_error();
            debug!(self.log, "send failed"; "to" => %to, "error" => %e);
        }
    }
}
