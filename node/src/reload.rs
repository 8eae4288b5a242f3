//! Reloading the `--config` file of a running node (`SIGHUP`, `POST /v1/config/reload`,
//! `leasehold reload`): the file is read and checked exactly as at start, with the same command-line
//! flags laid over it; a file that does not check, or that changes a key only a restart can take,
//! changes nothing and the answer says why. Reloads run one at a time.

use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use leasehold_config::{Config, Overrides};
use serde::Serialize;
use slog::{info, warn, Logger};

use crate::actors::lease::{LeaseActor, Reconfigure};
pub use crate::engine::reload::{digest_number, lease_config_digest};
use crate::engine::reload::{restart_only_changes, Reconfigured};

/// Where the running config came from, so that a reload builds the new one the same way.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// `None`: the embedded demo config or flags only; there is nothing to re-read.
    pub file: Option<PathBuf>,
    pub overrides: Overrides,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("this node was started without --config: there is no file to reload")]
    NoFile,
    /// Every problem `check-config` would print (file, key path, reason).
    #[error("{0}")]
    Invalid(String),
    #[error("{file}: these keys changed and need a restart of the node: {}; nothing was reloaded", keys.join(", "))]
    RestartNeeded { file: String, keys: Vec<&'static str> },
    #[error("the lease actor did not answer: {0}")]
    Unavailable(String),
}

/// What a reload did.
#[derive(Debug, Clone, Serialize)]
pub struct Reloaded {
    pub file: String,
    /// The lease-relevant config digest before and after (see `lease_config_digest`).
    pub digest_before: String,
    pub digest: String,
    #[serde(flatten)]
    pub engine: Reconfigured,
}

/// Reload now (answered with what happened).
#[derive(Message)]
#[rtype(result = "Result<Reloaded, ReloadError>")]
pub struct Reload {
    /// What asked for it, for the log: "SIGHUP" or "admin API".
    pub by: &'static str,
}

pub struct ReloadActor {
    source: ConfigSource,
    current: Arc<Config>,
    lease: Addr<LeaseActor>,
    /// Where the new digest goes after a reload (the raft actor reports it to the leader).
    raft: Option<Recipient<leasehold_cluster::actor::SetConfigDigest>>,
    log: Logger,
}

impl ReloadActor {
    pub fn new(source: ConfigSource, current: Arc<Config>, lease: Addr<LeaseActor>, log: Logger) -> Self {
        ReloadActor { source, current, lease, raft: None, log }
    }

    /// Tell the raft actor the new digest after each reload.
    pub fn with_raft(mut self, raft: Recipient<leasehold_cluster::actor::SetConfigDigest>) -> Self {
        self.raft = Some(raft);
        self
    }

    /// Read and check the file; the new config if it can be taken live.
    fn load(&self) -> Result<Arc<Config>, ReloadError> {
        let file = self.source.file.as_deref().ok_or(ReloadError::NoFile)?;
        let config =
            Config::load(Some(file), &self.source.overrides).map_err(|e| ReloadError::Invalid(e.to_string()))?;
        let keys = restart_only_changes(&self.current, &config);
        if !keys.is_empty() {
            return Err(ReloadError::RestartNeeded { file: file.display().to_string(), keys });
        }
        Ok(Arc::new(config))
    }
}

impl Actor for ReloadActor {
    type Context = Context<Self>;
}

impl Handler<Reload> for ReloadActor {
    // Atomic: a second reload waits until the first has reached the lease actor and come back.
    type Result = AtomicResponse<Self, Result<Reloaded, ReloadError>>;

    fn handle(&mut self, msg: Reload, _: &mut Self::Context) -> Self::Result {
        let file = self.source.file.as_ref().map(|f| f.display().to_string()).unwrap_or_default();
        let config = match self.load() {
            Ok(config) => config,
            Err(e) => {
                warn!(self.log, "config reload refused; nothing changed"; "by" => msg.by, "problem" => %e);
                return AtomicResponse::new(Box::pin(fut::ready(Err(e))));
            }
        };
        let digest_before = lease_config_digest(&self.current);
        let digest = lease_config_digest(&config);
        let send = self.lease.send(Reconfigure(config.clone()));
        AtomicResponse::new(Box::pin(send.into_actor(self).map(move |answer, act, _| {
            let engine = answer.map_err(|e| ReloadError::Unavailable(e.to_string()))?;
            act.current = config;
            if let Some(raft) = &act.raft {
                raft.do_send(leasehold_cluster::actor::SetConfigDigest(digest_number(&digest)));
            }
            info!(act.log, "config reloaded"; "by" => msg.by, "file" => &file, "digest" => &digest,
                "digest_before" => &digest_before);
            Ok(Reloaded { file, digest_before, digest, engine })
        })))
    }
}
