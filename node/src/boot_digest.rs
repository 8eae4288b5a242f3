//! The digest of the boot root: how a cluster tells whether its nodes serve the same boot files.
//!
//! Owns `BootRootDigest`, a scan of the files under `[boot] root` that the TFTP and HTTP servers
//! would serve, folded into one number (the first 8 bytes of a SHA-256 over every file's relative
//! path, length and content, in path order), with each file's content hash cached so a re-scan reads
//! only the files that changed; and `start`, the thread of its own (never a DHCP or actix thread)
//! that scans at start and then every `[boot] digest_interval_secs`, and hands each new digest to
//! the raft actor (which reports it to the leader with its progress) and to the admin API. Files
//! are deployed by the operator (rsync, a shared volume), never through Raft: this only says
//! whether they agree. Comparing digests is the admin API's business (`/v1/cluster`, `/healthz`,
//! `/metrics`).
//!
//! What is digested: every regular file reached through the root's own directories, and every
//! symbolic link that `tftp::resolve` would serve (it resolves to a regular file inside the root),
//! under the link's name. A link out of the root, to a directory, or to nothing is left out, as are
//! FIFOs, sockets and devices: none of them is served. A file that cannot be read counts as
//! unreadable (with its path), so a node that cannot serve it differs from one that can.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::Recipient;
use leasehold_cluster::actor::SetBootRootDigest;
use sha2::{Digest, Sha256};
use slog::{info, warn, Logger};

/// Files a scan digests at most; a root with more is not digested (the scan fails, and the node
/// reports no digest).
pub const MAX_FILES: usize = 100_000;
/// Directories deep a scan goes at most below the root; deeper is not digested (the scan fails).
pub const MAX_DEPTH: usize = 32;
/// A file changed this recently (its mtime or ctime within this of the scan's time) may change again
/// within the same timestamp: its content hash is not cached, and the next scan reads it again.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);
/// Bytes read at once while hashing a file.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Why a scan gave no digest.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("boot root {root}: {source}")]
    Root { root: String, source: io::Error },
    #[error("more than {limit} files under the boot root: not digested")]
    TooManyFiles { limit: usize },
    #[error("{path}: more than {limit} directories below the boot root: not digested")]
    TooDeep { path: String, limit: usize },
}

/// What one scan found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// The first 8 bytes of the digest, never 0 (0 means "no digest" wherever it is reported).
    pub digest: u64,
    /// Files digested.
    pub files: usize,
    /// Files whose content was read (the others' came from the cache).
    pub files_read: usize,
    pub bytes_read: u64,
}

/// What says a file is still the one whose content was hashed: its length, modification and
/// change times, and inode. Written files change mtime and ctime, replaced ones the inode too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    dev: u64,
    ino: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        let ns = |secs: i64, nsec: i64| i128::from(secs) * 1_000_000_000 + i128::from(nsec);
        Stamp {
            len: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// Changed within `RACY_WINDOW` of `now_ns` (or after it): not to be cached.
    fn racy(&self, now_ns: i128) -> bool {
        let window = RACY_WINDOW.as_nanos() as i128;
        self.mtime_ns.max(self.ctime_ns) > now_ns - window
    }
}

/// A file's content hash, and the file it was read from.
#[derive(Debug, Clone)]
struct Cached {
    /// What was opened: the file itself, or where a symbolic link resolved to.
    source: PathBuf,
    stamp: Stamp,
    content: [u8; 32],
}

/// One file as the digest takes it.
enum Content {
    Hash {
        len: u64,
        content: [u8; 32],
    },
    /// It could not be read (its listing or its bytes): a node that cannot serve it differs.
    Unreadable,
}

/// A file the listing found.
struct Entry {
    /// Its path relative to the root, `/` between components: what the digest is sorted by.
    relative: Vec<u8>,
    /// What to read: the file, or where a served link resolves to.
    source: PathBuf,
    /// Its metadata at the listing (`None`: gone since, or unreadable).
    meta: Option<std::fs::Metadata>,
    /// A directory that cannot be listed (so none of its files can be served).
    unlistable: bool,
}

/// The scanner of one boot root, with its cache of content hashes (by relative path).
pub struct BootRootDigest {
    root: PathBuf,
    max_files: usize,
    cache: HashMap<Vec<u8>, Cached>,
}

impl BootRootDigest {
    /// A scanner of `root` (made canonical at each scan, as the TFTP server takes it).
    pub fn new(root: &Path) -> BootRootDigest {
        BootRootDigest { root: root.to_owned(), max_files: MAX_FILES, cache: HashMap::new() }
    }

    /// Digest the root as it is now; `now` is the time the scan runs at (it decides which content
    /// hashes are old enough to cache, see `RACY_WINDOW`).
    pub fn scan(&mut self, now: SystemTime) -> Result<Scan, ScanError> {
        let root = self
            .root
            .canonicalize()
            .map_err(|source| ScanError::Root { root: self.root.display().to_string(), source })?;
        if !root.is_dir() {
            let source = io::Error::other("not a directory");
            return Err(ScanError::Root { root: root.display().to_string(), source });
        }
        let now_ns = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0);
        let mut entries: Vec<Entry> = Vec::new();
        list(&root, &root, 0, self.max_files, &mut entries)?;
        entries.sort_by(|a, b| a.relative.cmp(&b.relative));

        let mut cache = HashMap::with_capacity(entries.len());
        let mut scan = Scan { digest: 0, files: entries.len(), files_read: 0, bytes_read: 0 };
        let mut hasher = Sha256::new();
        for Entry { relative, source, meta, unlistable } in entries {
            let cached = self.cache.remove(&relative);
            let hit = match (&cached, &meta) {
                (Some(cached), Some(meta)) => cached.source == source && cached.stamp == Stamp::of(meta),
                _ => false,
            };
            let content = match cached {
                _ if unlistable => Content::Unreadable,
                Some(cached) if hit => {
                    let content = Content::Hash { len: cached.stamp.len, content: cached.content };
                    cache.insert(relative.clone(), cached);
                    content
                }
                _ => match hash_file(&source) {
                    Ok((stamp, content, read)) => {
                        scan.files_read += 1;
                        scan.bytes_read += read;
                        if !stamp.racy(now_ns) {
                            cache.insert(relative.clone(), Cached { source, stamp, content });
                        }
                        Content::Hash { len: stamp.len, content }
                    }
                    // Gone between the listing and the read (a deploy in progress): the next scan
                    // sees what stays.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(_) => Content::Unreadable,
                },
            };
            hasher.update((relative.len() as u64).to_be_bytes());
            hasher.update(&relative);
            match content {
                Content::Hash { len, content } => {
                    hasher.update([0]);
                    hasher.update(len.to_be_bytes());
                    hasher.update(content);
                }
                Content::Unreadable => hasher.update([1]),
            }
        }
        self.cache = cache;
        let digest = hasher.finalize();
        let first = u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8]));
        scan.digest = first.max(1);
        Ok(scan)
    }
}

/// Add the files under `dir` (`depth` below `root`) to `out`, at most `max_files` in all.
fn list(root: &Path, dir: &Path, depth: usize, max_files: usize, out: &mut Vec<Entry>) -> Result<(), ScanError> {
    let relative_of = |path: &Path| -> Vec<u8> {
        let relative = path.strip_prefix(root).unwrap_or(path);
        let parts: Vec<&[u8]> = relative.iter().map(OsStr::as_bytes).collect();
        parts.join(&b'/')
    };
    let listing = match std::fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == io::ErrorKind::NotFound && dir != root => return Ok(()),
        Err(source) if dir == root => {
            return Err(ScanError::Root { root: root.display().to_string(), source });
        }
        // A directory that cannot be listed: its files cannot be served either.
        Err(_) => {
            out.push(Entry { relative: relative_of(dir), source: dir.to_owned(), meta: None, unlistable: true });
            return Ok(());
        }
    };
    for entry in listing {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        // Not followed: a link's own type.
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            if depth + 1 > MAX_DEPTH {
                return Err(ScanError::TooDeep { path: path.display().to_string(), limit: MAX_DEPTH });
            }
            list(root, &path, depth + 1, max_files, out)?;
            continue;
        }
        let (source, meta) = if kind.is_file() {
            let meta = std::fs::symlink_metadata(&path).ok();
            (path.clone(), meta)
        } else if kind.is_symlink() {
            // Only what the TFTP server would serve: a regular file inside the root.
            let Ok(relative) = path.strip_prefix(root) else { continue };
            let Ok(target) = crate::tftp::resolve(root, relative) else { continue };
            let meta = std::fs::metadata(&target).ok();
            (target, meta)
        } else {
            continue;
        };
        if out.len() >= max_files {
            return Err(ScanError::TooManyFiles { limit: max_files });
        }
        out.push(Entry { relative: relative_of(&path), source, meta, unlistable: false });
    }
    Ok(())
}

/// Read `path` whole: its stamp (taken from the open file), the SHA-256 of its content and the
/// bytes read. Opened without following a link and without blocking (a FIFO swapped in since the
/// listing is refused, not waited on).
fn hash_file(path: &Path) -> io::Result<(Stamp, [u8; 32], u64)> {
    let mut file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; READ_CHUNK_BYTES];
    let mut read = 0u64;
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buffer[..n]);
                read += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((Stamp::of(&meta), hasher.finalize().into(), read))
}

/// The current digest of this node's boot root, for the admin API (0: none yet, or no root).
pub type SharedDigest = Arc<AtomicU64>;

/// Start the thread that digests `root` now and every `interval`: each new digest goes to `shared`
/// and to `raft` (`SetBootRootDigest`). A scan that fails (the root gone, too many files) reports
/// no digest (0) and logs why. The thread ends when the raft actor is gone.
pub fn start(
    root: &Path,
    interval: Duration,
    shared: SharedDigest,
    raft: Recipient<SetBootRootDigest>,
    log: Logger,
) -> io::Result<std::thread::JoinHandle<()>> {
    let mut scanner = BootRootDigest::new(root);
    let root = root.display().to_string();
    std::thread::Builder::new().name("boot-digest".into()).spawn(move || {
        let mut last: Option<u64> = None;
        let mut last_problem: Option<String> = None;
        while raft.connected() {
            let started = Instant::now();
            let digest = match scanner.scan(SystemTime::now()) {
                Ok(scan) => {
                    if last != Some(scan.digest) {
                        info!(log, "boot root digested"; "root" => &root, "digest" => format!("{:016x}", scan.digest),
                            "files" => scan.files, "files_read" => scan.files_read, "bytes_read" => scan.bytes_read,
                            "took_ms" => started.elapsed().as_millis() as u64);
                    }
                    last_problem = None;
                    scan.digest
                }
                Err(e) => {
                    let problem = e.to_string();
                    if last_problem.as_ref() != Some(&problem) {
                        warn!(log, "boot root not digested: this node reports no boot root digest"; "error" => &problem);
                    }
                    last_problem = Some(problem);
                    0
                }
            };
            if last != Some(digest) {
                shared.store(digest, Ordering::Relaxed);
                raft.do_send(SetBootRootDigest(digest));
                last = Some(digest);
            }
            std::thread::sleep(interval);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Long after every file of a test was written: every content hash may be cached.
    fn later() -> SystemTime {
        SystemTime::now() + Duration::from_secs(3_600)
    }

    fn root_with(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        dir
    }

    /// Replace `path` with a new file of `content`, as rsync does (a new inode): a change the stamp
    /// sees even within one timestamp tick.
    fn rewrite(path: &Path, content: &[u8]) {
        let temporary = path.with_extension("rsync-tmp");
        std::fs::write(&temporary, content).unwrap();
        std::fs::rename(&temporary, path).unwrap();
    }

    fn digest_of(root: &Path) -> u64 {
        BootRootDigest::new(root).scan(later()).unwrap().digest
    }

    const FILES: &[(&str, &[u8])] =
        &[("snponly.efi", b"efi image"), ("undionly.kpxe", b"pxe image"), ("debian/linux", b"kernel")];

    #[test]
    fn the_same_files_digest_the_same_and_any_change_differs() {
        let a = root_with(FILES);
        let b = root_with(FILES);
        let digest = digest_of(a.path());
        assert_ne!(digest, 0);
        assert_eq!(digest, digest_of(b.path()), "the same files in another directory");

        let changed = root_with(&[("snponly.efi", b"efi imagf"), FILES[1], FILES[2]]);
        assert_ne!(digest, digest_of(changed.path()), "one byte changed");
        let renamed = root_with(&[("snponly2.efi", b"efi image"), FILES[1], FILES[2]]);
        assert_ne!(digest, digest_of(renamed.path()), "a file renamed");
        let moved = root_with(&[FILES[0], FILES[1], ("debian2/linux", b"kernel")]);
        assert_ne!(digest, digest_of(moved.path()), "a directory renamed");
        let added = root_with(&[FILES[0], FILES[1], FILES[2], ("empty", b"")]);
        assert_ne!(digest, digest_of(added.path()), "an empty file added");
        let removed = root_with(&FILES[..2]);
        assert_ne!(digest, digest_of(removed.path()), "a file removed");
        // Lengths and paths are framed: moving bytes between a name and its content is seen.
        assert_ne!(digest_of(root_with(&[("ab", b"c")]).path()), digest_of(root_with(&[("a", b"bc")]).path()));
        // Empty directories are not served: they do not count.
        std::fs::create_dir(b.path().join("nothing-here")).unwrap();
        assert_eq!(digest, digest_of(b.path()));
        let empty = tempfile::tempdir().unwrap();
        assert_ne!(digest_of(empty.path()), 0, "an empty root has a digest too");
    }

    #[test]
    fn a_rescan_reads_only_the_files_that_changed() {
        let root = root_with(FILES);
        let mut scanner = BootRootDigest::new(root.path());
        let first = scanner.scan(later()).unwrap();
        assert_eq!((first.files, first.files_read, first.bytes_read), (3, 3, 9 + 9 + 6));
        let again = scanner.scan(later()).unwrap();
        assert_eq!((again.digest, again.files_read, again.bytes_read), (first.digest, 0, 0), "nothing changed");

        // The same length, one byte changed: the stamp (inode, mtime, ctime) says it changed.
        rewrite(&root.path().join("debian/linux"), b"kernes");
        let changed = scanner.scan(later()).unwrap();
        assert_eq!((changed.files_read, changed.bytes_read), (1, 6));
        assert_ne!(changed.digest, first.digest);
        assert_eq!(changed.digest, digest_of(root_with(&[FILES[0], FILES[1], ("debian/linux", b"kernes")]).path()));

        // Put back: the digest comes back.
        rewrite(&root.path().join("debian/linux"), b"kernel");
        assert_eq!(scanner.scan(later()).unwrap().digest, first.digest);
        // A removed file leaves the cache; one added is read.
        std::fs::remove_file(root.path().join("snponly.efi")).unwrap();
        std::fs::write(root.path().join("new.efi"), b"new").unwrap();
        let moved = scanner.scan(later()).unwrap();
        assert_eq!((moved.files, moved.files_read), (3, 1));
        assert_eq!(scanner.cache.len(), 3);
    }

    #[test]
    fn a_file_changed_within_the_racy_window_is_read_again() {
        let root = root_with(FILES);
        let mut scanner = BootRootDigest::new(root.path());
        // The files were written just now: each could change again within its timestamp.
        let now = SystemTime::now();
        assert_eq!(scanner.scan(now).unwrap().files_read, 3);
        assert_eq!(scanner.scan(now).unwrap().files_read, 3, "nothing cached");
        assert_eq!(scanner.scan(later()).unwrap().files_read, 3);
        assert_eq!(scanner.scan(later()).unwrap().files_read, 0, "cached once old enough");
    }

    #[test]
    fn links_count_only_when_they_would_be_served() {
        let outside = root_with(&[("secret.txt", b"outside the root")]);
        let root = root_with(FILES);
        let plain = digest_of(root.path());
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), root.path().join("escape")).unwrap();
        std::os::unix::fs::symlink("../..", root.path().join("debian/up")).unwrap();
        std::os::unix::fs::symlink("missing", root.path().join("dangling")).unwrap();
        std::os::unix::fs::symlink("debian", root.path().join("dir-link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("outside-dir")).unwrap();
        assert_eq!(digest_of(root.path()), plain, "links out of the root, to directories or to nothing");

        // A link to a file inside the root is served under its name: it counts, with the target's
        // content.
        std::os::unix::fs::symlink("snponly.efi", root.path().join("boot.efi")).unwrap();
        let linked = digest_of(root.path());
        assert_ne!(linked, plain);
        let copied = root_with(&[FILES[0], FILES[1], FILES[2], ("boot.efi", b"efi image")]);
        assert_eq!(linked, digest_of(copied.path()), "a link digests as a copy of what it points to");
    }

    #[test]
    fn fifos_are_skipped_not_waited_on() {
        let root = root_with(FILES);
        let plain = digest_of(root.path());
        let fifo = std::ffi::CString::new(root.path().join("pipe").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        assert_eq!(digest_of(root.path()), plain);
        let err = hash_file(&root.path().join("pipe")).expect_err("a FIFO is no file to hash");
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn roots_too_big_deep_or_missing_are_not_digested() {
        let root = root_with(&[("a", b"1"), ("b", b"2"), ("c/d", b"3"), ("c/e", b"4"), ("f", b"5")]);
        let mut scanner = BootRootDigest { max_files: 4, ..BootRootDigest::new(root.path()) };
        assert!(matches!(scanner.scan(later()), Err(ScanError::TooManyFiles { limit: 4 })));
        scanner.max_files = 5;
        assert_eq!(scanner.scan(later()).unwrap().files, 5);

        let deep = tempfile::tempdir().unwrap();
        let mut path = deep.path().to_owned();
        for _ in 0..=MAX_DEPTH {
            path.push("d");
        }
        std::fs::create_dir_all(&path).unwrap();
        assert!(matches!(BootRootDigest::new(deep.path()).scan(later()), Err(ScanError::TooDeep { .. })));

        let gone = deep.path().join("no-such-root");
        assert!(matches!(BootRootDigest::new(&gone).scan(later()), Err(ScanError::Root { .. })));
    }
}
