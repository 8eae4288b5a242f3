//! The socket actor: owns one of the DHCP server's UDP sockets (port 67, bound to one interface
//! with SO_BINDTODEVICE, or to all when there is only one, SO_BROADCAST on). It reads datagrams and
//! hands them to the parser with `try_send`, tagged with its interface; it writes the replies the
//! parser encoded, to the address RFC 2131 §4.1 chose. There is one socket actor per interface.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use actix::prelude::*;
use slog::{debug, warn, Logger};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
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
    // Best effort: a smaller buffer only means earlier drops under a burst. SO_RCVBUFFORCE (root)
    // goes past net.core.rmem_max; plain SO_RCVBUF is the fallback.
    if set_int_option(&socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RECV_BUFFER_BYTES as libc::c_int).is_err() {
        let _ = socket.set_recv_buffer_size(RECV_BUFFER_BYTES);
    }
    // IP_PKTINFO: learn each datagram's destination address, so a unicast RENEW addressed to this
    // node's server identifier can be told from a broadcast (DESIGN rule 2).
    set_int_option(&socket, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).into())?;
    UdpSocket::from_std(socket.into())
}

fn set_int_option(socket: &Socket, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket fd and a pointer to a c_int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One `recvmsg(2)`: the datagram's length, source and (from IP_PKTINFO) destination address.
fn recv_with_destination(socket: &UdpSocket, buffer: &mut [u8]) -> io::Result<(usize, SocketAddr, Option<Ipv4Addr>)> {
    use std::os::fd::AsRawFd;
    // SAFETY: all-zero is a valid value for these plain C structs.
    let mut source: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec { iov_base: buffer.as_mut_ptr().cast(), iov_len: buffer.len() };
    // Room for one in_pktinfo control message, aligned as cmsghdr wants.
    let mut control = [0u64; 8];
    // SAFETY: as above.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_name = (&mut source as *mut libc::sockaddr_in).cast();
    header.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: every pointer in `header` points into locals that outlive the call.
    let len = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut header, libc::MSG_DONTWAIT) };
    if len < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut destination = None;
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled, within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&header);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::IPPROTO_IP && (*cmsg).cmsg_type == libc::IP_PKTINFO {
                let info = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::in_pktinfo);
                destination = Some(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)));
            }
            cmsg = libc::CMSG_NXTHDR(&header, cmsg);
        }
    }
    let from = SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(source.sin_addr.s_addr)),
        u16::from_be(source.sin_port),
    ));
    Ok((len as usize, from, destination))
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
    /// This socket's interface: an index into `Config::interfaces`.
    interface: usize,
    parser: Addr<ParserActor>,
    server_port: u16,
    client_port: u16,
    max_frame_bytes: usize,
    metrics: Arc<Metrics>,
    log: Logger,
}

impl SocketActor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        socket: UdpSocket,
        interface: usize,
        parser: Addr<ParserActor>,
        server_port: u16,
        client_port: u16,
        max_frame_bytes: usize,
        metrics: Arc<Metrics>,
        log: Logger,
    ) -> Self {
        SocketActor {
            socket: Arc::new(socket),
            interface,
            parser,
            server_port,
            client_port,
            max_frame_bytes,
            metrics,
            log,
        }
    }
}

impl Actor for SocketActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let socket = self.socket.clone();
        let parser = self.parser.clone();
        let metrics = self.metrics.clone();
        let log = self.log.clone();
        let interface = self.interface;
        // One byte more than the limit, so an oversized datagram is seen as such, not truncated.
        let buffer_len = self.max_frame_bytes + 1;
        let receive = async move {
            let mut buffer = vec![0u8; buffer_len];
            loop {
                let received =
                    socket.async_io(Interest::READABLE, || recv_with_destination(&socket, &mut buffer)).await;
                match received {
                    Ok((len, from, destination)) => {
                        metrics.datagram();
                        let datagram = Datagram { bytes: buffer[..len].to_vec(), from, destination, interface };
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
