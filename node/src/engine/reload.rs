//! A new config file, taken live (`SIGHUP`, `POST /v1/config/reload`): which keys a running node
//! can take (pools, options, classes, reservations, boot policy, limits the engine reads) and which
//! need a restart (sockets, ports, data directory, cluster, admin listener), and how the engine moves
//! its derived state — pool indexes, offer caps, buckets, held offers — to the new config.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use leasehold_config::Config;
use sha2::{Digest, Sha256};

use super::{allocator, limits, offer_cap, reservations, Engine, Offers};

/// A digest of what decides how clients are served and how the table applies: pools, options,
/// classes, reservations, boot policy, identity and limits (not sockets, paths or the cluster's
/// own addresses). Every node of a cluster must run with the same one.
pub fn lease_config_digest(config: &Config) -> String {
    let mut hasher = Sha256::new();
    // The checked config's Debug form: every field, in declaration order.
    let relevant = (
        &config.identity,
        &config.pools,
        &config.pxe,
        &config.reservations,
        &config.options,
        &config.classes,
        &config.limits,
    );
    hasher.update(format!("{relevant:?}").as_bytes());
    let digest = hasher.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The first 8 bytes of a `lease_config_digest`, as a number (0 for anything else): what a member
/// reports to the leader with its progress.
pub fn digest_number(digest: &str) -> u64 {
    u64::from_str_radix(digest, 16).unwrap_or(0)
}

/// The keys of `new` that differ from `old` and that a running node cannot take: a reload that
/// changes any of them is refused whole, and the node keeps running on `old`.
pub fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |differs: bool, key: &'static str| {
        if differs {
            changed.push(key);
        }
    };
    check(old.interfaces != new.interfaces, "server.interface / server.server_ip / [[interface]]");
    check(old.server_port != new.server_port, "server.port");
    check(old.client_port != new.client_port, "server.client_port");
    check(old.admin_listen != new.admin_listen, "admin.listen");
    check(old.admin != new.admin, "[admin]");
    check(old.data_dir != new.data_dir, "server.data_dir");
    check(old.store != new.store, "store");
    check(old.fsync != new.fsync, "server.fsync");
    check(old.log_format != new.log_format, "log.format");
    check(old.log_level != new.log_level, "log.level");
    check(old.cluster != new.cluster, "[cluster]");
    check(old.boot != new.boot, "[boot]");
    let (a, b) = (&old.limits, &new.limits);
    check(a.mailbox_capacity != b.mailbox_capacity, "limits.mailbox_capacity");
    check(a.max_frame_bytes != b.max_frame_bytes, "limits.max_frame_bytes");
    check(a.group_commit_window_us != b.group_commit_window_us, "limits.group_commit_window_us");
    check(a.receive_window_us != b.receive_window_us, "limits.receive_window_us");
    changed
}

/// What a reload did to the engine's held state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reconfigured {
    pub pools: usize,
    pub classes: usize,
    pub config_reservations: usize,
    /// Offers still held: their address is in a pool of the new config and reserved for nobody.
    pub offers_kept: usize,
    /// Offers let go: their address left every pool or is now reserved. The client's REQUEST for it
    /// is NAKed and it starts over (RFC 2131 §4.3.2); a client that was offered a reserved address
    /// gets its reservation instead.
    pub offers_dropped: usize,
}

impl Engine {
    /// Serve by `config` from now on. The caller has checked it and that `restart_only_changes` is
    /// empty. The lease table is untouched: a binding outside the new pools stays until it ends
    /// (its client's renewal is then NAKed, RFC 2131 §4.3.2), and apply parameters change only
    /// through the log (`propose_parameters`, asked again by the lease actor after a reload).
    pub fn reconfigure(&mut self, config: Arc<Config>, now_us: u64) -> Reconfigured {
        let now_ms = now_us / 1000;
        self.offers.expire(now_ms);
        let reserved: std::collections::HashSet<Ipv4Addr> = config.reservations.iter().map(|r| r.ip).collect();
        let percent = config.limits.max_offers_per_pool_percent;
        let offer_caps: Vec<usize> = config.pools.iter().map(|pool| offer_cap(pool, percent)).collect();

        // Held offers in expiry order, re-held against the new pools: a capped offer counts against
        // the cap of the pool that now holds its address.
        let mut held: Vec<_> = self.offers.by_client.iter().map(|(client, offer)| (client.clone(), *offer)).collect();
        held.sort_by_key(|(_, offer)| (offer.until_ms, offer.ip));
        let api_reserved: std::collections::HashSet<Ipv4Addr> = self.table.reservations().map(|r| r.ip).collect();
        let mut offers = Offers::default();
        let mut dropped = 0;
        for (client, offer) in held {
            let pool = config.pools.iter().position(|p| p.contains(offer.ip));
            match pool {
                Some(pool) if !reserved.contains(&offer.ip) && !api_reserved.contains(&offer.ip) => {
                    let capped = offer.capped_pool.map(|_| (pool, offer_caps[pool]));
                    offers.hold(client, offer.ip, offer.until_ms, config.limits.max_offers, capped);
                }
                _ => dropped += 1,
            }
        }
        let offers_kept = offers.len();
        if self.config.classes != config.classes {
            self.boot_clients.forget_classes();
        }

        // Per-pool counters follow their pool by name; a new pool starts at zero.
        let by_name = |counts: &[u64]| -> Vec<u64> {
            let old: HashMap<&str, u64> =
                self.config.pools.iter().zip(counts).map(|(p, &n)| (p.name.as_str(), n)).collect();
            config.pools.iter().map(|p| old.get(p.name.as_str()).copied().unwrap_or(0)).collect()
        };
        let offers_displaced = by_name(&self.offers_displaced);
        let offers_reclaimed = by_name(&self.offers_reclaimed);

        // A pending proposal's class is an index into the classes: keep it only where the class at
        // that index is still the same one (the reply built at commit reads its options).
        let same_class = |index: usize| {
            let old = self.config.classes.get(index).map(|c| c.name.as_str());
            old.is_some() && old == config.classes.get(index).map(|c| c.name.as_str())
        };
        let moved: Vec<_> = self
            .pending
            .iter()
            .filter(|(_, p)| p.scope.class.is_some_and(|c| !same_class(c)))
            .map(|(t, _)| *t)
            .collect();
        for tag in moved {
            if let Some(pending) = self.pending.get_mut(&tag) {
                let name = pending.scope.class.and_then(|c| self.config.classes.get(c)).map(|c| c.name.clone());
                pending.scope.class = name.and_then(|name| config.classes.iter().position(|c| c.name == name));
            }
        }

        if self.config.limits.rate != config.limits.rate {
            self.admission = limits::Admission::new(&config.limits.rate);
        }
        self.indexes = config.pools.iter().map(|pool| allocator::PoolIndex::new(pool, &self.table)).collect();
        self.exhausted = vec![None; config.pools.len()];
        self.config_reserved_ips = reserved;
        self.api_reservations = reservations::reservation_view(&self.table);
        self.offer_caps = offer_caps;
        self.offers_displaced = offers_displaced;
        self.offers_reclaimed = offers_reclaimed;
        self.offers = offers;
        self.config_digest = lease_config_digest(&config);
        self.config = config;
        Reconfigured {
            pools: self.config.pools.len(),
            classes: self.config.classes.len(),
            config_reservations: self.config.reservations.len(),
            offers_kept,
            offers_dropped: dropped,
        }
    }
}
