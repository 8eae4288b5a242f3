//! Reloading the `--config` file of a running node (`SIGHUP`, `POST /v1/config/reload`,
//! `leasehold reload`): the file is read and checked exactly as at start, with the same command-line
//! flags laid over it; a file that does not check, or that changes a key only a restart can take,
//! changes nothing and the answer says why. Reloads run one at a time.
//!
//! With the etcd store, the shared tables (`leasehold_config::shared`) are the cluster's: a reload
//! writes the file's shared part to `<prefix>/config` before it takes the file, and every version
//! stored there (by any node's reload, or `etcdctl put`) is taken as this node's file with the
//! shared tables replaced by the stored ones (`SharedConfig`).

use std::path::{Path, PathBuf};
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
    /// The etcd store did not take the shared part; with it, nothing else was taken either.
    #[error("the shared config was not written to etcd, so nothing was reloaded: {0}")]
    Store(String),
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
    /// With the etcd store: the revision of `<prefix>/config` the shared part was written at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_revision: Option<u64>,
}

/// From the etcd store: the shared config document stored at `key`, as of `revision`. Answered with
/// the lease config digest then in force, or why the document was not taken (the node keeps running
/// what it ran).
#[derive(Debug, Message)]
#[rtype(result = "Result<String, String>")]
pub struct SharedConfig {
    pub key: String,
    pub revision: u64,
    pub text: String,
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
    /// The config file's text as last taken: what a stored shared config is laid into.
    file_text: String,
    /// The shared document in force (the file's own shared part until the store sends one).
    shared_in_force: String,
    /// With the etcd store: where a reload writes the file's shared part.
    publish: Option<Recipient<crate::store::PublishConfig>>,
    log: Logger,
}

impl ReloadActor {
    /// `current` was loaded from `source` at start; its file is read again here for its text (a
    /// file that cannot be read now reads as empty until the next reload).
    pub fn new(source: ConfigSource, current: Arc<Config>, lease: Addr<LeaseActor>, log: Logger) -> Self {
        let file_text = match &source.file {
            Some(file) => std::fs::read_to_string(file).unwrap_or_else(|e| {
                warn!(log, "cannot read the config file again for its text"; "file" => %file.display(), "error" => %e);
                String::new()
            }),
            None => String::new(),
        };
        let shared_in_force =
            leasehold_config::shared::shared_part(&file_text, source.file.as_deref()).unwrap_or_default();
        ReloadActor { source, current, lease, raft: None, file_text, shared_in_force, publish: None, log }
    }

    /// With the etcd store: reloads write the shared part to `<prefix>/config` first.
    pub fn with_store(mut self, publish: Recipient<crate::store::PublishConfig>) -> Self {
        self.publish = Some(publish);
        self
    }

    /// This node's shared part, which an etcd pool without `<prefix>/config` is seeded with
    /// (`None` when its file has no shared table: nothing to seed).
    pub fn shared_seed(&self) -> Option<String> {
        (!self.shared_in_force.trim().is_empty()).then(|| self.shared_in_force.clone())
    }

    /// Tell the raft actor (or the etcd store) the new digest after each change of config.
    pub fn with_raft(mut self, raft: Recipient<leasehold_cluster::actor::SetConfigDigest>) -> Self {
        self.raft = Some(raft);
        self
    }

    /// Read and check the file; the new config, and the file's text, if it can be taken live.
    fn load(&self) -> Result<(Arc<Config>, String), ReloadError> {
        let file = self.source.file.as_deref().ok_or(ReloadError::NoFile)?;
        let text = std::fs::read_to_string(file)
            .map_err(|e| ReloadError::Invalid(format!("{}: cannot read the config file: {e}", file.display())))?;
        let config = Config::from_toml_str_with_overrides(&text, file, &self.source.overrides)
            .map_err(|e| ReloadError::Invalid(e.to_string()))?;
        let keys = restart_only_changes(&self.current, &config);
        if !keys.is_empty() {
            return Err(ReloadError::RestartNeeded { file: file.display().to_string(), keys });
        }
        Ok((Arc::new(config), text))
    }

    /// This node's file with the shared tables of a stored document, checked, if it can be taken
    /// live.
    fn with_shared(&self, key: &str, text: &str) -> Result<Arc<Config>, String> {
        let stored = PathBuf::from(format!("etcd:{key}"));
        let file = self.source.file.as_deref();
        let merged =
            leasehold_config::shared::with_shared(&self.file_text, file, text, &stored).map_err(|e| e.to_string())?;
        let source: &Path = file.unwrap_or(&stored);
        let config = Config::from_toml_str_with_overrides(&merged, source, &self.source.overrides).map_err(|e| {
            // The keys at fault are the stored document's: name it, not the file.
            e.0.into_iter()
                .map(|mut error| {
                    error.source = Some(stored.clone());
                    error.to_string()
                })
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        let keys = restart_only_changes(&self.current, &config);
        if !keys.is_empty() {
            return Err(format!("{key}: these keys would need a restart: {}", keys.join(", ")));
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
        let loaded = self.load().and_then(|(config, text)| {
            let shared = leasehold_config::shared::shared_part(&text, self.source.file.as_deref())
                .map_err(|e| ReloadError::Invalid(e.to_string()))?;
            Ok((config, text, shared))
        });
        let (config, text, shared) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                warn!(self.log, "config reload refused; nothing changed"; "by" => msg.by, "problem" => %e);
                return AtomicResponse::new(Box::pin(fut::ready(Err(e))));
            }
        };
        // With the etcd store the shared part is written first: a reload that etcd did not take
        // changes nothing here either, so the nodes never run two versions longer than a watch.
        // A file with no shared table shares nothing (it must not empty the stored document).
        let publish = self.publish.clone().filter(|_| !shared.trim().is_empty());
        let shared_to_publish = shared.clone();
        let published = async move {
            match publish {
                Some(publish) => match publish.send(crate::store::PublishConfig(shared_to_publish)).await {
                    Ok(Ok(revision)) => Ok(Some(revision)),
                    Ok(Err(problem)) => Err(ReloadError::Store(problem)),
                    Err(e) => Err(ReloadError::Store(e.to_string())),
                },
                None => Ok(None),
            }
        };
        let lease = self.lease.clone();
        let work = published.into_actor(self).then(move |published, act, _| {
            let digest_before = lease_config_digest(&act.current);
            let digest = lease_config_digest(&config);
            let applied = async move {
                let published_revision = published?;
                let engine = lease
                    .send(Reconfigure(config.clone()))
                    .await
                    .map_err(|e| ReloadError::Unavailable(e.to_string()))?;
                Ok((config, published_revision, engine))
            };
            applied.into_actor(act).map(move |applied, act, _| {
                let (config, published_revision, engine) = applied.inspect_err(|e| {
                    warn!(act.log, "config reload refused; nothing changed"; "by" => msg.by, "problem" => %e);
                })?;
                act.current = config;
                act.file_text = text;
                act.shared_in_force = shared;
                if let Some(raft) = &act.raft {
                    raft.do_send(leasehold_cluster::actor::SetConfigDigest(digest_number(&digest)));
                }
                info!(act.log, "config reloaded"; "by" => msg.by, "file" => &file, "digest" => &digest,
                    "digest_before" => &digest_before, "published_revision" => ?published_revision);
                Ok(Reloaded { file, digest_before, digest, engine, published_revision })
            })
        });
        AtomicResponse::new(Box::pin(work))
    }
}

impl Handler<SharedConfig> for ReloadActor {
    // Atomic with reloads: a stored version is laid into the file text a finished reload left.
    type Result = AtomicResponse<Self, Result<String, String>>;

    fn handle(&mut self, msg: SharedConfig, _: &mut Self::Context) -> Self::Result {
        // This node's own reload, or its seed, coming back through the watch; or an empty document,
        // which shares nothing (read as a deleted key: every node keeps what it runs).
        if msg.text == self.shared_in_force || msg.text.trim().is_empty() {
            let digest = lease_config_digest(&self.current);
            return AtomicResponse::new(Box::pin(fut::ready(Ok(digest))));
        }
        let config = match self.with_shared(&msg.key, &msg.text) {
            Ok(config) => config,
            Err(problem) => return AtomicResponse::new(Box::pin(fut::ready(Err(problem)))),
        };
        let digest_before = lease_config_digest(&self.current);
        let digest = lease_config_digest(&config);
        let send = self.lease.send(Reconfigure(config.clone()));
        AtomicResponse::new(Box::pin(send.into_actor(self).map(move |answer, act, _| {
            answer.map_err(|e| format!("the lease actor did not answer: {e}"))?;
            act.current = config;
            act.shared_in_force = msg.text;
            if let Some(raft) = &act.raft {
                raft.do_send(leasehold_cluster::actor::SetConfigDigest(digest_number(&digest)));
            }
            info!(act.log, "config taken from the store"; "key" => &msg.key, "revision" => msg.revision,
                "digest" => &digest, "digest_before" => &digest_before);
            Ok(digest)
        })))
    }
}
