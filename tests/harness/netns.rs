//! Network namespaces created by `ip netns add NAME` (a bind mount under /var/run/netns): run a
//! closure inside one, or build a command that runs inside one.
//!
//! `in_netns` enters the namespace with `setns(2)` on a dedicated thread. A socket created on
//! that thread belongs to the namespace for its whole life and can then be used from any thread
//! (the namespace is fixed when the socket is created), so tests create their sockets there and
//! keep running in the host namespace.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;

/// Where `ip netns add` keeps the namespaces it names.
pub const NETNS_RUN_DIR: &str = "/var/run/netns";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("{0:?} is not a namespace name (empty, '.', '..' or contains '/')")]
    BadName(String),
    #[error("cannot open network namespace {namespace:?} ({path}): {source}")]
    Open { namespace: String, path: String, source: io::Error },
    #[error("setns into network namespace {namespace:?} failed: {source}")]
    Setns { namespace: String, source: io::Error },
    #[error("the thread running in network namespace {0:?} panicked")]
    Panicked(String),
}

/// The file `ip netns` mounts for `name`. A name must not be empty, `.`, `..` or contain `/`.
pub fn netns_path(name: &str) -> Result<PathBuf, NetnsError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(NetnsError::BadName(name.to_owned()));
    }
    Ok(PathBuf::from(NETNS_RUN_DIR).join(name))
}

/// True if `ip netns` has a namespace called `name`.
pub fn netns_exists(name: &str) -> bool {
    netns_path(name).is_ok_and(|path| path.exists())
}

/// Runs `f` on a new thread that has entered network namespace `name`, and returns its result.
/// The calling thread's namespace does not change. Sockets `f` creates stay in `name`.
pub fn in_netns<T, F>(name: &str, f: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let path = netns_path(name)?;
    let namespace = File::open(&path).map_err(|source| NetnsError::Open {
        namespace: name.to_owned(),
        path: path.display().to_string(),
        source,
    })?;
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            // SAFETY: setns(2) with a valid open namespace file descriptor; it only changes the
            // network namespace of this thread, which exits when `f` returns.
            let rc = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(NetnsError::Setns { namespace: name.to_owned(), source: io::Error::last_os_error() });
            }
            Ok(f())
        });
        worker.join().map_err(|_| NetnsError::Panicked(name.to_owned()))?
    })
}

/// `ip netns exec NAME PROGRAM ARGS...`: a command that runs `program` inside namespace `name`.
/// (`ip netns exec` also bind-mounts /etc/netns/NAME/* over /etc, see FIELD-NOTES.md.)
pub fn run_in<I, S>(name: &str, program: impl AsRef<OsStr>, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new("ip");
    command.args(["netns", "exec", name]).arg(program).args(args);
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_escape_the_netns_directory_are_refused() {
        for bad in ["", ".", "..", "a/b", "../etc", "x\0y"] {
            assert!(matches!(netns_path(bad), Err(NetnsError::BadName(_))), "{bad:?}");
        }
        assert_eq!(netns_path("lh-client-1").ok(), Some(PathBuf::from("/var/run/netns/lh-client-1")));
    }

    #[test]
    fn a_missing_namespace_is_an_error_not_a_panic() {
        let name = "leasehold-harness-no-such-namespace";
        assert!(!netns_exists(name));
        assert!(matches!(in_netns(name, || 1), Err(NetnsError::Open { .. })));
    }

    #[test]
    fn run_in_wraps_ip_netns_exec() {
        let command = run_in("lh-c1", "udhcpc", ["-i", "eth0", "-n"]);
        assert_eq!(command.get_program(), "ip");
        let args: Vec<_> = command.get_args().collect();
        assert_eq!(args, ["netns", "exec", "lh-c1", "udhcpc", "-i", "eth0", "-n"]);
    }
}
