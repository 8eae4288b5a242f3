//! The socket actor: owns the receive side of one of the DHCP server's UDP sockets (port 67, bound to
//! one interface with SO_BINDTODEVICE, or to all when there is only one, SO_BROADCAST on). It reads
//! datagrams and hands them to the parser with `try_send`, tagged with its interface. The parser sends
//! the replies it encoded itself, through a `Transmitter` on the same socket, to the address RFC 2131
//! §4.1 chose: no mailbox hop on the way out. There is one socket actor per interface.
//!
//! Receive pacing (`limits.receive_window_us`): each datagram that wakes the DHCP thread costs a
//! context switch, which on a virtual machine is the largest single cost of an exchange. So under load
//! the socket leaves the reactor and is read once per window, every datagram that came meanwhile in
//! one wake-up; a read that finds nothing puts it back. After a quiet spell the first datagram is read
//! at once. Under load a datagram waits about one window longer (1 ms by default; the timer ticks in
//! milliseconds) than it would otherwise.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use slog::{debug, warn, Logger};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::parser::{Datagram, ParserActor};
use crate::metrics::Metrics;
use crate::wire::{Destination, DropReason};

/// Kernel receive buffer: absorbs bursts while the actors catch up, and what comes in a receive window.
const RECV_BUFFER_BYTES: usize = 4 << 20;

/// Datagrams one read takes at most before the parser and lease actors get to run.
const RECEIVE_BURST_DATAGRAMS: usize = 1_024;

/// How long to wait before trying again when the socket cannot be put back in the reactor.
const REARM_RETRY: Duration = Duration::from_millis(100);

/// Open the DHCP server socket (non-blocking).
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
    Ok(socket.into())
}

fn set_int_option(socket: &Socket, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
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

/// The send side of a DHCP socket (a duplicate descriptor of the socket actor's), used by the parser.
pub struct Transmitter {
    socket: UdpSocket,
    server_port: u16,
    client_port: u16,
    metrics: Arc<Metrics>,
    log: Logger,
}

impl Transmitter {
    pub fn new(
        socket: &UdpSocket,
        server_port: u16,
        client_port: u16,
        metrics: Arc<Metrics>,
        log: Logger,
    ) -> io::Result<Self> {
        Ok(Transmitter { socket: socket.try_clone()?, server_port, client_port, metrics, log })
    }

    /// Send one encoded reply; a full send buffer or an unreachable address is counted, not retried
    /// (the client retransmits).
    pub fn transmit(&self, bytes: &[u8], destination: Destination) {
        let to = match destination {
            Destination::Relay(giaddr) => SocketAddrV4::new(giaddr, self.server_port),
            Destination::Unicast(ciaddr) => SocketAddrV4::new(ciaddr, self.client_port),
            Destination::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, self.client_port),
        };
        if let Err(e) = self.socket.send_to(bytes, SocketAddr::V4(to)) {
            self.metrics.send_error();
            debug!(self.log, "send failed"; "to" => %to, "error" => %e);
        }
    }
}

pub struct SocketActor {
    /// Taken by the receive task when the actor starts.
    socket: Option<UdpSocket>,
    /// This socket's interface: an index into `Config::interfaces`.
    interface: usize,
    parser: Addr<ParserActor>,
    max_frame_bytes: usize,
    /// `limits.receive_window_us`: zero reads every datagram as it comes.
    receive_window: Duration,
    metrics: Arc<Metrics>,
    log: Logger,
}

impl SocketActor {
    pub fn new(
        socket: UdpSocket,
        interface: usize,
        parser: Addr<ParserActor>,
        max_frame_bytes: usize,
        receive_window: Duration,
        metrics: Arc<Metrics>,
        log: Logger,
    ) -> Self {
        SocketActor { socket: Some(socket), interface, parser, max_frame_bytes, receive_window, metrics, log }
    }
}

/// The receive side: reads datagrams and hands them to the parser.
struct Receiver {
    interface: usize,
    parser: Addr<ParserActor>,
    buffer: Vec<u8>,
    metrics: Arc<Metrics>,
    log: Logger,
}

/// What one read of the socket found.
struct Read {
    datagrams: usize,
    /// The socket's queue was emptied (the last `recvmsg` would have blocked).
    emptied: bool,
}

impl Receiver {
    /// Read what is queued, at most `RECEIVE_BURST_DATAGRAMS`.
    fn read(&mut self, socket: &UdpSocket) -> Read {
        let mut datagrams = 0;
        while datagrams < RECEIVE_BURST_DATAGRAMS {
            match recv_with_destination(socket, &mut self.buffer) {
                Ok((len, from, destination)) => {
                    datagrams += 1;
                    self.metrics.datagram();
                    let datagram =
                        Datagram { bytes: self.buffer[..len].to_vec(), from, destination, interface: self.interface };
                    if self.parser.try_send(datagram).is_err() {
                        self.metrics.dropped(DropReason::Overloaded);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!(self.log, "receive failed"; "error" => %e);
                    break;
                }
            }
        }
        if datagrams > 0 {
            self.metrics.socket_read();
        }
        Read { datagrams, emptied: datagrams < RECEIVE_BURST_DATAGRAMS }
    }

    /// Read forever: in the reactor while datagrams come slower than one a window, out of it (one read
    /// per window) while they come faster.
    async fn run(mut self, mut socket: UdpSocket, window: Duration) {
        let mut last_read: Option<Instant> = None;
        loop {
            // SAFETY: the AsyncFd owns the socket, and so its descriptor, until `into_inner` below
            // takes it out of the reactor; nothing else can close it while it is registered.
            let armed = match unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) } {
                Ok(armed) => armed,
                Err(e) => {
                    let (unarmed, error) = e.into_parts();
                    warn!(self.log, "cannot watch the socket, retrying"; "error" => %error);
                    socket = unarmed;
                    tokio::time::sleep(REARM_RETRY).await;
                    continue;
                }
            };
            // Armed: wait for a datagram.
            loop {
                let mut ready = match armed.readable().await {
                    Ok(ready) => ready,
                    Err(e) => {
                        warn!(self.log, "receive failed"; "error" => %e);
                        continue;
                    }
                };
                let now = Instant::now();
                let read = self.read(armed.get_ref());
                if read.emptied {
                    ready.clear_ready();
                } else {
                    tokio::task::yield_now().await;
                }
                if read.datagrams == 0 {
                    continue;
                }
                let busy = last_read.is_some_and(|last| now.duration_since(last) < window);
                last_read = Some(now);
                if busy {
                    break;
                }
            }
            // Paced: out of the reactor, one read per window until one finds nothing.
            socket = armed.into_inner();
            loop {
                if let Some(due) = last_read.map(|last| last + window).filter(|due| *due > Instant::now()) {
                    tokio::time::sleep_until(due.into()).await;
                }
                let now = Instant::now();
                let read = self.read(&socket);
                if read.datagrams == 0 {
                    break;
                }
                last_read = Some(now);
                if !read.emptied {
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

impl Actor for SocketActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let Some(socket) = self.socket.take() else { return };
        let receiver = Receiver {
            interface: self.interface,
            parser: self.parser.clone(),
            // One byte more than the limit, so an oversized datagram is seen as such, not truncated.
            buffer: vec![0u8; self.max_frame_bytes + 1],
            metrics: self.metrics.clone(),
            log: self.log.clone(),
        };
        ctx.spawn(actix::fut::wrap_future(receiver.run(socket, self.receive_window)));
    }
}
