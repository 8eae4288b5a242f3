//! Delay and loss on the peer links. This machine's kernel has no `sch_netem` (nor `sch_prio`), so
//! `tc qdisc … netem` is not available: instead, iptables rules inside a node namespace send the
//! node's Raft packets (TCP port 6768) to an NFQUEUE, and a thread of the driver, bound to that queue
//! from inside the namespace (netlink, `NETLINK_NETFILTER`), holds each packet for the chosen delay and
//! then accepts it, or drops it with the chosen probability. DHCP traffic (UDP 67/68) is never queued.
//!
//! Safe by construction: the rules carry `--queue-bypass` (no listener: packets pass) and the queue is
//! configured fail-open (a full queue accepts rather than drops); every wait is bounded; stopping accepts
//! whatever is still held before the socket closes.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::rng::Rng;

const NETLINK_NETFILTER: libc::c_int = 12;
const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQA_CFG_MASK: u16 = 4;
const NFQA_CFG_FLAGS: u16 = 5;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_COPY_META: u8 = 1;
const NFQA_CFG_F_FAIL_OPEN: u32 = 1;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_NO_ENOBUFS: libc::c_int = 5;
/// Packets the kernel may hold for the queue (more are accepted: fail-open).
const QUEUE_MAXLEN: u32 = 8_192;
/// Packets held here at most; beyond that they are accepted at once.
const MAX_HELD: usize = 8_192;
/// Longest a stop waits for the queue to fall quiet.
const DRAIN_LIMIT: Duration = Duration::from_millis(500);

/// What one delayer did.
#[derive(Debug, Default, Clone, Copy)]
pub struct DelayerStats {
    pub queued: u64,
    pub dropped: u64,
    pub accepted: u64,
}

/// A running delayer for one namespace's queue; `stop` ends it.
pub struct Delayer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<DelayerStats>>,
}

impl Delayer {
    /// Binds queue `queue` inside namespace `ns` and starts holding its packets for `delay`, dropping
    /// each with probability `loss` (drawn from `seed`).
    pub fn start(ns: &str, queue: u16, delay: Duration, loss: f64, seed: u64) -> io::Result<Delayer> {
        let fd = leasehold_tests::in_netns(ns, || open_queue(queue)).map_err(io::Error::other)??;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::Builder::new()
            .name(format!("delayer-{ns}"))
            .spawn(move || run(fd, queue, delay, loss, Rng::new(seed), &flag))?;
        Ok(Delayer { stop, thread: Some(thread) })
    }

    /// Accepts everything still held, closes the queue, returns the counters.
    pub fn stop(mut self) -> DelayerStats {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

impl Drop for Delayer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One netlink message of the nfnetlink queue subsystem: header, nfgenmsg, attributes.
fn message(kind: u16, flags: u16, seq: u32, queue: u16, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut buf = vec![0u8; 16];
    buf.extend([libc::AF_UNSPEC as u8, 0]);
    buf.extend(queue.to_be_bytes());
    for (kind, payload) in attrs {
        let len = u16::try_from(4 + payload.len()).expect("a small attribute");
        buf.extend(len.to_ne_bytes());
        buf.extend(kind.to_ne_bytes());
        buf.extend(*payload);
        while !buf.len().is_multiple_of(4) {
            buf.push(0);
        }
    }
    let total = u32::try_from(buf.len()).expect("a small message");
    buf[0..4].copy_from_slice(&total.to_ne_bytes());
    buf[4..6].copy_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | kind).to_ne_bytes());
    buf[6..8].copy_from_slice(&flags.to_ne_bytes());
    buf[8..12].copy_from_slice(&seq.to_ne_bytes());
    buf
}

fn send_to_kernel(fd: &OwnedFd, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: a zeroed sockaddr_nl is valid; nl_pid 0 addresses the kernel.
    let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: sendto with a valid buffer and address of the right size.
    let rc = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            0,
            (&to as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives into `buf`, waiting at most `wait`; `Ok(0)` when nothing came.
fn receive(fd: &OwnedFd, buf: &mut [u8], wait: Duration) -> io::Result<usize> {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: poll on one valid pollfd.
    let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
    if ready < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok(0) } else { Err(e) };
    }
    if ready == 0 {
        return Ok(0);
    }
    // SAFETY: recv into a valid buffer of the given length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
            _ => Err(e),
        };
    }
    Ok(n as usize)
}

/// The netlink messages in `buf`: (type, payload after the 16-byte header).
fn messages(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("2 bytes"));
        if len < 16 || at + len > buf.len() {
            break;
        }
        out.push((kind, &buf[at + 16..at + len]));
        at += len.div_ceil(4) * 4;
    }
    out
}

/// The packet id of an NFQNL_MSG_PACKET payload (nfgenmsg, then attributes).
fn packet_id(payload: &[u8]) -> Option<u32> {
    let mut at = 4;
    while at + 4 <= payload.len() {
        let len = u16::from_ne_bytes(payload[at..at + 2].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(payload[at + 2..at + 4].try_into().ok()?) & 0x3fff;
        if len < 4 || at + len > payload.len() {
            return None;
        }
        if kind == NFQA_PACKET_HDR && len >= 8 {
            return Some(u32::from_be_bytes(payload[at + 4..at + 8].try_into().ok()?));
        }
        at += len.div_ceil(4) * 4;
    }
    None
}

/// Sends a config request and waits (bounded) for the kernel's acknowledgement.
fn configure(fd: &OwnedFd, seq: u32, queue: u16, attrs: &[(u16, &[u8])]) -> io::Result<()> {
    send_to_kernel(fd, &message(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq, queue, attrs))?;
    let mut buf = vec![0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let n = receive(fd, &mut buf, Duration::from_millis(100))?;
        for (kind, payload) in messages(&buf[..n]) {
            if kind == NLMSG_ERROR && payload.len() >= 4 {
                let code = i32::from_ne_bytes(payload[0..4].try_into().expect("4 bytes"));
                return if code == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(-code)) };
            }
        }
    }
    Err(io::Error::new(io::ErrorKind::TimedOut, "no netlink acknowledgement for the NFQUEUE config"))
}

/// A netlink socket bound to queue `queue` of the current network namespace, copying metadata only.
fn open_queue(queue: u16) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments.
    let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, NETLINK_NETFILTER) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: a zeroed sockaddr_nl is valid (nl_pid 0: the kernel picks our port id).
    let mut local: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    local.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: bind with a valid address of the right size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&local as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let one: libc::c_int = 1;
    let rcvbuf: libc::c_int = 4 << 20;
    // SAFETY: setsockopt with valid int options; failures only cost buffer space.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            SOL_NETLINK,
            NETLINK_NO_ENOBUFS,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&rcvbuf as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    configure(&fd, 1, queue, &[(NFQA_CFG_CMD, &[NFQNL_CFG_CMD_BIND, 0, 0, 0])])?;
    let mut params = 0u32.to_be_bytes().to_vec();
    params.push(NFQNL_COPY_META);
    configure(&fd, 2, queue, &[(NFQA_CFG_PARAMS, &params)])?;
    configure(&fd, 3, queue, &[(NFQA_CFG_QUEUE_MAXLEN, &QUEUE_MAXLEN.to_be_bytes())])?;
    configure(
        &fd,
        4,
        queue,
        &[(NFQA_CFG_FLAGS, &NFQA_CFG_F_FAIL_OPEN.to_be_bytes()), (NFQA_CFG_MASK, &NFQA_CFG_F_FAIL_OPEN.to_be_bytes())],
    )?;
    Ok(fd)
}

fn verdict(fd: &OwnedFd, queue: u16, id: u32, verdict: u32) {
    let mut body = verdict.to_be_bytes().to_vec();
    body.extend(id.to_be_bytes());
    // A lost verdict leaves the packet queued until the socket closes (then the kernel drops it): the
    // same as a lost packet, which TCP repairs.
    let _ = send_to_kernel(fd, &message(NFQNL_MSG_VERDICT, NLM_F_REQUEST, 0, queue, &[(NFQA_VERDICT_HDR, &body)]));
}

fn run(fd: OwnedFd, queue: u16, delay: Duration, loss: f64, mut rng: Rng, stop: &AtomicBool) -> DelayerStats {
    let mut stats = DelayerStats::default();
    let mut held: VecDeque<(Instant, u32)> = VecDeque::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut quiet_since: Option<Instant> = None;
    let mut stopping_since: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if stop.load(Ordering::SeqCst) && stopping_since.is_none() {
            stopping_since = Some(now);
        }
        if let Some(since) = stopping_since {
            // Release everything now; keep reading until the queue has been quiet a moment.
            while let Some((_, id)) = held.pop_front() {
                verdict(&fd, queue, id, NF_ACCEPT);
                stats.accepted += 1;
            }
            let quiet = quiet_since.is_some_and(|q| now.duration_since(q) >= Duration::from_millis(50));
            if quiet || now.duration_since(since) >= DRAIN_LIMIT {
                break;
            }
        }
        let wait = match (stopping_since, held.front()) {
            (Some(_), _) => Duration::from_millis(10),
            (None, Some((due, _))) => due.saturating_duration_since(now).min(Duration::from_millis(20)),
            (None, None) => Duration::from_millis(20),
        };
        let n = match receive(&fd, &mut buf, wait) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("chaos: NFQUEUE {queue}: receive: {e}");
                thread::sleep(Duration::from_millis(10));
                0
            }
        };
        if n == 0 {
            quiet_since.get_or_insert(Instant::now());
        } else {
            quiet_since = None;
        }
        for (kind, payload) in messages(&buf[..n]) {
            if kind != (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET {
                continue;
            }
            let Some(id) = packet_id(payload) else { continue };
            stats.queued += 1;
            if stopping_since.is_some() || held.len() >= MAX_HELD {
                verdict(&fd, queue, id, NF_ACCEPT);
                stats.accepted += 1;
            } else if rng.chance(loss) {
                verdict(&fd, queue, id, NF_DROP);
                stats.dropped += 1;
            } else {
                held.push_back((Instant::now() + delay, id));
            }
        }
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            let (_, id) = held.pop_front().expect("a held packet");
            verdict(&fd, queue, id, NF_ACCEPT);
            stats.accepted += 1;
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_the_parser() {
        let bytes =
            message(NFQNL_MSG_VERDICT, NLM_F_REQUEST, 9, 6768, &[(NFQA_VERDICT_HDR, &[0, 0, 0, 1, 0, 0, 0, 7])]);
        assert_eq!(bytes.len(), 16 + 4 + 12);
        let parsed = messages(&bytes);
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].0, (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_VERDICT);
        // The queue number travels big-endian in the nfgenmsg.
        assert_eq!(&parsed[0].1[2..4], &6768u16.to_be_bytes());
    }

    #[test]
    fn the_packet_id_is_read_from_the_packet_header_attribute() {
        let mut header = 0xdead_beefu32.to_be_bytes().to_vec();
        header.extend([0x08, 0x00, 3]); // hw_protocol, hook
        let bytes = message(NFQNL_MSG_PACKET, 0, 0, 1, &[(9, &[1, 2, 3]), (NFQA_PACKET_HDR, &header)]);
        let parsed = messages(&bytes);
        assert_eq!(packet_id(parsed[0].1), Some(0xdead_beef));
    }
}
