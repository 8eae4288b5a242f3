//! The boot files a node serves itself: a read-only TFTP server (RFC 1350, with the blksize,
//! timeout, tsize and windowsize options of RFC 2347/2348/2349/7440, from the `async-tftp` crate) of
//! the `[boot] root` directory, on a thread of its own so a transfer never delays a DHCP reply.
//!
//! Owns what may be read and how much at once: a name is a relative path of normal components
//! inside the root (no `..`, no absolute path, no symbolic link out of the root); at most
//! `max_tftp_transfers` transfers at once; at most `tftp_requests_per_client_per_sec` read requests a
//! second from one client address. Every request is counted by outcome, and the bytes served.
//! `boot/{mac}.ipxe` is no file: the machine's iPXE script (`boot_script`), rendered as over HTTP.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use actix::Addr;
use async_tftp::packet;
use async_tftp::server::{Handler, TftpServerBuilder};
use futures_lite::AsyncRead;
use leasehold_config::Boot;
use slog::{debug, info, warn, Logger};

use crate::actors::lease::{GetMachine, LeaseActor};

/// Client addresses whose request counts are kept at most (beyond, the oldest second's are dropped).
const MAX_TRACKED_CLIENTS: usize = 4_096;
/// How far a transfer reads ahead of the blocks sent: one `read` of the file per this many bytes.
/// The read runs on the TFTP thread itself (a page-cache copy, or a disk read of this size when the
/// file is cold): handing it to a thread pool cost a futex wake-up between two threads per block.
const READ_AHEAD_BYTES: usize = 256 * 1024;

/// Why a read request was answered as it was (the `outcome` label of `leasehold_tftp_requests_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Served,
    /// A machine's iPXE script (`boot/{mac}.ipxe`), rendered.
    Script,
    NotFound,
    /// `..`, an absolute path, a link out of the root, or not a plain file.
    Refused,
    RateLimited,
    Busy,
    /// A write request: the server is read-only.
    WriteRefused,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Served,
        Outcome::Script,
        Outcome::NotFound,
        Outcome::Refused,
        Outcome::RateLimited,
        Outcome::Busy,
        Outcome::WriteRefused,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Served => "served",
            Outcome::Script => "script",
            Outcome::NotFound => "not_found",
            Outcome::Refused => "refused",
            Outcome::RateLimited => "rate_limited",
            Outcome::Busy => "busy",
            Outcome::WriteRefused => "write_refused",
        }
    }
}

/// The TFTP server's counters, read by `/metrics`.
#[derive(Debug, Default)]
pub struct TftpMetrics {
    requests: [AtomicU64; Outcome::ALL.len()],
    bytes: AtomicU64,
    active: AtomicU64,
    completed: AtomicU64,
}

impl TftpMetrics {
    fn count(&self, outcome: Outcome) {
        self.requests[outcome as usize].fetch_add(1, Relaxed);
    }

    /// Prometheus text of the counters.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(out, "# HELP leasehold_tftp_requests_total TFTP requests, by how they were answered.");
        let _ = writeln!(out, "# TYPE leasehold_tftp_requests_total counter");
        for outcome in Outcome::ALL {
            let value = self.requests[outcome as usize].load(Relaxed);
            let _ = writeln!(out, "leasehold_tftp_requests_total{{outcome=\"{}\"}} {value}", outcome.label());
        }
        let _ = writeln!(out, "# HELP leasehold_tftp_sent_bytes_total Bytes of boot files read for TFTP transfers.");
        let _ = writeln!(out, "# TYPE leasehold_tftp_sent_bytes_total counter");
        let _ = writeln!(out, "leasehold_tftp_sent_bytes_total {}", self.bytes.load(Relaxed));
        let _ = writeln!(out, "# HELP leasehold_tftp_transfers_active TFTP transfers in progress.");
        let _ = writeln!(out, "# TYPE leasehold_tftp_transfers_active gauge");
        let _ = writeln!(out, "leasehold_tftp_transfers_active {}", self.active.load(Relaxed));
        let _ = writeln!(
            out,
            "# HELP leasehold_tftp_transfers_completed_total TFTP transfers whose file was read to its end."
        );
        let _ = writeln!(out, "# TYPE leasehold_tftp_transfers_completed_total counter");
        let _ = writeln!(out, "leasehold_tftp_transfers_completed_total {}", self.completed.load(Relaxed));
    }
}

/// The file `name` asks for under `root` (already canonical), if it may be served.
pub fn resolve(root: &Path, name: &Path) -> Result<PathBuf, Outcome> {
    let mut relative = PathBuf::new();
    for component in name.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return Err(Outcome::Refused),
        }
    }
    if relative.as_os_str().is_empty() {
        return Err(Outcome::Refused);
    }
    let path = root.join(relative).canonicalize().map_err(|_| Outcome::NotFound)?;
    // A symbolic link inside the root may point anywhere: what it resolves to must be inside too.
    if !path.starts_with(root) {
        return Err(Outcome::Refused);
    }
    if !path.is_file() {
        return Err(Outcome::Refused);
    }
    Ok(path)
}

/// Read requests per client address in the current second.
#[derive(Debug, Default)]
struct PerClient {
    second: u64,
    counts: HashMap<IpAddr, u32>,
}

/// Where a node's TFTP server finds what a machine's script may say about it: the lease actor,
/// set once it runs (the TFTP port is bound before, so a node that cannot bind it fails at once),
/// and the address scripts name as `{{server}}`.
#[derive(Clone)]
pub struct Scripts {
    pub boot: Arc<Boot>,
    pub lease: Arc<OnceLock<Addr<LeaseActor>>>,
    pub server: Ipv4Addr,
}

struct BootFiles {
    root: PathBuf,
    scripts: Scripts,
    max_transfers: u64,
    per_client_per_sec: u32,
    per_client: Mutex<PerClient>,
    started: Instant,
    metrics: Arc<TftpMetrics>,
    log: Logger,
}

impl BootFiles {
    fn admit(&self, client: IpAddr) -> bool {
        let second = self.started.elapsed().as_secs();
        let mut per_client = self.per_client.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if per_client.second != second || per_client.counts.len() >= MAX_TRACKED_CLIENTS {
            per_client.second = second;
            per_client.counts.clear();
        }
        let count = per_client.counts.entry(client).or_insert(0);
        *count += 1;
        *count <= self.per_client_per_sec
    }

    async fn open(&self, client: &SocketAddr, name: &Path) -> Result<(Transfer, Option<u64>), Outcome> {
        if !self.admit(client.ip()) {
            return Err(Outcome::RateLimited);
        }
        let script_mac = name.to_str().and_then(crate::boot_script::script_mac);
        let (source, size, outcome) = match script_mac {
            Some(mac) => {
                let script = self.script(mac).await.ok_or(Outcome::NotFound)?.into_bytes();
                let size = script.len() as u64;
                (Source::Script(futures_lite::io::Cursor::new(script)), size, Outcome::Script)
            }
            None => {
                let path = resolve(&self.root, name)?;
                let file = std::fs::File::open(&path).map_err(|_| Outcome::NotFound)?;
                let size = file.metadata().map_err(|_| Outcome::NotFound)?.len();
                (Source::File(std::io::BufReader::with_capacity(READ_AHEAD_BYTES, file)), size, Outcome::Served)
            }
        };
        // Taken only for a transfer that starts; given back when it ends (`Transfer`'s drop).
        if self.metrics.active.fetch_add(1, Relaxed) >= self.max_transfers {
            self.metrics.active.fetch_sub(1, Relaxed);
            return Err(Outcome::Busy);
        }
        Ok((Transfer { source, metrics: self.metrics.clone(), done: false, outcome }, Some(size)))
    }

    /// The iPXE script of the machine with `mac`, as `GET /boot/{mac}.ipxe` renders it.
    async fn script(&self, mac: [u8; 6]) -> Option<String> {
        let lease = self.scripts.lease.get()?;
        let machine = lease.send(GetMachine { mac, server: self.scripts.server }).await.ok()?;
        crate::boot_script::render(&self.scripts.boot, None, &machine)
    }
}

impl Handler for BootFiles {
    type Reader = Transfer;
    type Writer = futures_lite::io::Sink;

    async fn read_req_open(
        &mut self,
        client: &SocketAddr,
        path: &Path,
    ) -> Result<(Transfer, Option<u64>), packet::Error> {
        let result = self.open(client, path).await;
        let outcome = match &result {
            Ok((transfer, _)) => transfer.outcome,
            Err(outcome) => *outcome,
        };
        self.metrics.count(outcome);
        debug!(self.log, "tftp read request"; "client" => %client, "file" => %path.display(), "outcome" => outcome.label());
        result.map_err(|outcome| match outcome {
            Outcome::NotFound => packet::Error::FileNotFound,
            Outcome::Refused => packet::Error::PermissionDenied,
            Outcome::RateLimited => packet::Error::Msg("too many requests from this client".into()),
            _ => packet::Error::Msg("server busy, try again".into()),
        })
    }

    async fn write_req_open(
        &mut self,
        client: &SocketAddr,
        path: &Path,
        _size: Option<u64>,
    ) -> Result<Self::Writer, packet::Error> {
        self.metrics.count(Outcome::WriteRefused);
        debug!(self.log, "tftp write refused"; "client" => %client, "file" => %path.display());
        Err(packet::Error::IllegalOperation)
    }
}

/// What one transfer reads: a file of the root, or a script rendered for the machine.
enum Source {
    File(std::io::BufReader<std::fs::File>),
    Script(futures_lite::io::Cursor<Vec<u8>>),
}

/// One transfer's file: counts the bytes read, and the transfer as completed at the file's end; its
/// place among `max_tftp_transfers` is given back when the transfer ends, however it ends.
pub struct Transfer {
    source: Source,
    metrics: Arc<TftpMetrics>,
    done: bool,
    outcome: Outcome,
}

impl AsyncRead for Transfer {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let poll = match &mut self.source {
            Source::File(file) => Poll::Ready(io::Read::read(file, buf)),
            Source::Script(script) => Pin::new(script).poll_read(cx, buf),
        };
        if let Poll::Ready(Ok(read)) = &poll {
            self.metrics.bytes.fetch_add(*read as u64, Relaxed);
            if *read == 0 && !buf.is_empty() && !self.done {
                self.done = true;
                self.metrics.completed.fetch_add(1, Relaxed);
            }
        }
        poll
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.metrics.active.fetch_sub(1, Relaxed);
    }
}

/// Start the TFTP server of `boot` (which has a root) on a thread of its own. Fails at once if the
/// root is not a directory or the port cannot be bound (the node must not start half-configured).
pub fn start(
    boot: &Boot,
    root: &Path,
    scripts: Scripts,
    metrics: Arc<TftpMetrics>,
    log: Logger,
) -> io::Result<SocketAddr> {
    let root =
        root.canonicalize().map_err(|e| io::Error::new(e.kind(), format!("boot root {}: {e}", root.display())))?;
    if !root.is_dir() {
        return Err(io::Error::other(format!("boot root {} is not a directory", root.display())));
    }
    let socket = std::net::UdpSocket::bind(boot.tftp_listen)?;
    let handler = BootFiles {
        root: root.clone(),
        scripts,
        max_transfers: u64::from(boot.max_tftp_transfers),
        per_client_per_sec: boot.tftp_requests_per_client_per_sec,
        per_client: Mutex::new(PerClient::default()),
        started: Instant::now(),
        metrics,
        log: log.clone(),
    };
    let server = futures_lite::future::block_on(
        TftpServerBuilder::with_handler(handler).std_socket(socket).map_err(io::Error::other)?.build(),
    )
    .map_err(io::Error::other)?;
    let listen = server.listen_addr().map_err(io::Error::other)?;
    info!(log, "serving boot files over TFTP"; "root" => %root.display(), "listen" => %listen);
    std::thread::Builder::new().name("tftp".into()).spawn(move || {
        // async-io's own `block_on`: this thread then waits on the socket itself, where
        // futures-lite's would park it and have async-io's reactor thread wake it for every
        // packet (a futex wake-up and a context switch per block).
        if let Err(e) = async_io::block_on(server.serve()) {
            warn!(log, "the TFTP server stopped"; "error" => %e);
        }
    })?;
    Ok(listen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_the_root() {
        let dir = tempfile::tempdir().expect("a scratch dir");
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("efi")).unwrap();
        std::fs::write(root.join("efi/snponly.efi"), b"efi").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("escape")).unwrap();
        assert_eq!(resolve(&root, Path::new("efi/snponly.efi")), Ok(root.join("efi/snponly.efi")));
        assert_eq!(resolve(&root, Path::new("./efi/snponly.efi")), Ok(root.join("efi/snponly.efi")));
        assert_eq!(resolve(&root, Path::new("../etc/passwd")), Err(Outcome::Refused));
        assert_eq!(resolve(&root, Path::new("efi/../../etc/passwd")), Err(Outcome::Refused));
        assert_eq!(resolve(&root, Path::new("/etc/passwd")), Err(Outcome::Refused));
        assert_eq!(resolve(&root, Path::new("escape")), Err(Outcome::Refused), "a link out of the root");
        assert_eq!(resolve(&root, Path::new("efi")), Err(Outcome::Refused), "a directory");
        assert_eq!(resolve(&root, Path::new("missing.efi")), Err(Outcome::NotFound));
        assert_eq!(resolve(&root, Path::new("")), Err(Outcome::Refused));
    }
}
