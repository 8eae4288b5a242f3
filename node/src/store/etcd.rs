//! The etcd store actor: the shell around `etcd_keys` that talks to an etcd cluster. It owns the
//! connection, the watch that keeps every node's table current, the transactions that write what
//! the lease actor decided, and the election of the node that answers broadcasts.
//!
//! - **Load and watch.** The pool's keys are read at one revision and become the table (`Reset`);
//!   a watch from the next revision delivers every change in revision order (`Changes`). A watch
//!   that breaks (a member down, the node cut off) resumes from the revision after the table's,
//!   so a blip costs no reload of the pool; one that etcd has compacted past loads the pool again.
//! - **Writes.** Each decided proposal is one transaction comparing the keys its decision read
//!   (`etcd_keys::Keys::plan`). Its answer (`Committed`) is held until the watch has delivered its
//!   revision, so the table the answer is built from includes it; a failed compare or an etcd that
//!   does not answer is `Rejected` (nothing is answered; the client asks again).
//! - **Election and liveness.** Every node keeps an etcd lease alive (TTL `election_ttl_secs`) and
//!   a member key on it. The node whose lease holds `/leader` answers broadcasts, and only while
//!   its last keep-alive, counted from when it was sent, is younger than the TTL less a margin:
//!   etcd starts the TTL later than that, so a node that is cut off falls silent before its key
//!   expires and another can win. A node whose keep-alive is stale knows no leader (the minority
//!   rules: no new bindings, renewals only for the time that remains).
//! - **Shared config.** `<prefix>/config` holds the config tables every node shares: each version the
//!   watch brings goes to the reload actor once (`ConnectConfig`); a reload on any node writes its
//!   file's shared part there (`PublishConfig`); the first node of an empty prefix seeds it.

use std::collections::BTreeMap;
use std::time::Duration;

use actix::prelude::*;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity, PutOptions, TlsOptions,
    Txn, TxnOp, WatchOptions,
};
use leasehold_cluster::lease::{Change, LeaseTable, Outcome, Proposal};
use leasehold_cluster::{monotonic_us, RaftStatus};
use slog::{error, info, warn, Logger};

use super::etcd_keys::{Event, Keys, Member, Op, Watched, Write};
use super::{ConnectConfig, Decided, GetStoreView, PublishConfig, StoreMail, StoreView, Transact};
use crate::reload::SharedConfig;

/// Keys one range read returns at most while loading the pool.
const LOAD_PAGE_KEYS: i64 = 5_000;
/// How often the node looks at its liveness and the election.
const TICK: Duration = Duration::from_millis(100);
/// How long before the etcd lease's TTL runs out (counted from the keep-alive's sending) a leader
/// stops answering: covers the clock rate difference between this node and etcd's leader.
const LEADER_MARGIN_US: u64 = 300_000;
/// How many times a lost lease's revocation is tried (each within the request timeout).
const REVOKE_ATTEMPTS: u32 = 10;
/// Attempts of one transaction whose request fails (not a failed compare), each with a share of
/// `request_timeout_ms`.
const TXN_ATTEMPTS: u32 = 4;

pub struct EtcdStore {
    config: leasehold_config::EtcdStore,
    /// One client per endpoint, all lazy; requests go to `current` and move to the next endpoint
    /// when one fails there (one client balancing over all endpoints kept sending some requests to
    /// a member that was down).
    clients: Vec<Client>,
    current: usize,
    keys: Keys,
    node_id: u64,
    /// What this node says of itself in its member key.
    member: Member,
    /// Every live node's member key.
    members: BTreeMap<u64, Member>,
    mail: Recipient<StoreMail>,
    status: Recipient<RaftStatus>,
    /// The last revision the lease actor's table has (from the load or the watch).
    revision: u64,
    /// Watches and loads started; messages of an older one are ignored.
    generation: u64,
    /// Committed proposals whose revision the watch has not delivered yet.
    waiting: BTreeMap<u64, Vec<(Proposal, Outcome)>>,
    /// `/leader`: the node, the etcd lease it is on, and the revision it was created at (the term).
    leader: Option<(u64, i64, u64)>,
    /// This node's etcd lease and until when (monotonic µs) it is known to be alive.
    lease_id: Option<i64>,
    alive_until_us: u64,
    granting: bool,
    campaigning: bool,
    last_status: Option<RaftStatus>,
    /// The earlier process's lease whose `/leader` claim this one deleted (once per lease).
    cleared_claim: Option<i64>,
    /// The pool was loaded at least once: before that this node neither campaigns nor knows a
    /// leader (it would answer from an empty table).
    loaded: bool,
    /// What apply uses until the pool's `/parameters` says otherwise (this node's config).
    defaults: (u64, usize),
    /// Where stored shared configs go, and this node's shared part to seed an empty prefix with.
    config_sink: Option<(Recipient<SharedConfig>, Option<String>)>,
    /// The latest `<prefix>/config` seen (revision, text), and the revision last handed on.
    stored_config: Option<(u64, String)>,
    config_offered: u64,
    /// `<prefix>/config` was found missing and this node tried to create it.
    config_seeded: bool,
    view: StoreView,
    log: Logger,
}

impl EtcdStore {
    pub fn new(
        config: leasehold_config::EtcdStore,
        node_id: u64,
        member: Member,
        mail: Recipient<StoreMail>,
        status: Recipient<RaftStatus>,
        log: Logger,
    ) -> Self {
        let view =
            StoreView { endpoints: config.endpoints.clone(), prefix: config.prefix.clone(), ..Default::default() };
        EtcdStore {
            keys: Keys::new(&config.prefix),
            config,
            clients: Vec::new(),
            current: 0,
            node_id,
            member: Member { id: node_id, ..member },
            members: BTreeMap::new(),
            mail,
            status,
            revision: 0,
            generation: 0,
            waiting: BTreeMap::new(),
            leader: None,
            lease_id: None,
            alive_until_us: 0,
            granting: false,
            campaigning: false,
            last_status: None,
            cleared_claim: None,
            loaded: false,
            defaults: (0, usize::MAX),
            config_sink: None,
            stored_config: None,
            config_offered: 0,
            config_seeded: false,
            view,
            log,
        }
    }

    /// The client of the current endpoint, and which it is.
    fn client(&self) -> Option<(usize, Client)> {
        self.clients.get(self.current).map(|client| (self.current, client.clone()))
    }

    /// A request to `endpoint` failed: later ones go to the next endpoint (unless another failure
    /// moved on already).
    fn failed(&mut self, endpoint: usize) {
        if endpoint == self.current && self.clients.len() > 1 {
            self.current = (self.current + 1) % self.clients.len();
            warn!(self.log, "etcd: moving to another endpoint"; "from" => &self.config.endpoints[endpoint],
                "to" => &self.config.endpoints[self.current]);
        }
    }

    /// Apply with this grace and limit until the pool's `/parameters` key sets them.
    pub fn with_defaults(mut self, grace_ms: u64, max_leases: usize) -> Self {
        self.defaults = (grace_ms, max_leases);
        self
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.request_timeout_ms.into())
    }

    /// Read the whole pool at one revision, then watch from the next.
    fn load(&mut self, ctx: &mut Context<Self>) {
        let Some((endpoint, client)) = self.client() else { return };
        self.generation += 1;
        let generation = self.generation;
        let keys = self.keys.clone();
        let timeout = self.timeout();
        let me = ctx.address();
        let log = self.log.clone();
        let defaults = self.defaults;
        actix::spawn(async move {
            match load_pool(client, &keys, defaults, timeout, &log).await {
                Ok(pool) => me.do_send(Loaded { generation, pool }),
                Err(e) => {
                    warn!(log, "etcd: loading the pool failed; trying again"; "error" => %e);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    me.do_send(Reload { generation, endpoint });
                }
            }
        });
    }

    fn watch(&mut self, ctx: &mut Context<Self>) {
        let Some((endpoint, mut client)) = self.client() else { return };
        let (generation, start) = (self.generation, self.revision + 1);
        let (begin, end) = self.keys.range();
        let me = ctx.address();
        let keys = self.keys.clone();
        let log = self.log.clone();
        actix::spawn(async move {
            let options = WatchOptions::new().with_range(end).with_start_revision(start as i64).with_progress_notify();
            let mut stream = match client.watch(begin, Some(options)).await {
                Ok(stream) => stream,
                Err(e) => {
                    warn!(log, "etcd: watch failed; trying again"; "error" => %e, "from_revision" => start);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    me.do_send(Rewatch { generation, endpoint });
                    return;
                }
            };
            let resume = loop {
                let response = match stream.message().await {
                    Ok(Some(response)) => response,
                    Ok(None) => break true,
                    Err(e) => {
                        warn!(log, "etcd: watch broke; resuming"; "error" => %e);
                        break true;
                    }
                };
                if response.compact_revision() > 0 || response.canceled() {
                    // The revisions it missed are gone: only a load of the whole pool catches up.
                    warn!(log, "etcd: watch cancelled (compacted past it?); loading again";
                        "compact_revision" => response.compact_revision(), "reason" => response.cancel_reason());
                    break false;
                }
                let mut batches: Vec<WatchedRevision> = Vec::new();
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    let revision = kv.mod_revision() as u64;
                    let Ok(key) = std::str::from_utf8(kv.key()) else { continue };
                    let event_ = match event.event_type() {
                        EventType::Put => Event::Put { key, value: kv.value() },
                        EventType::Delete => Event::Delete { key },
                    };
                    if batches.last().is_none_or(|b| b.revision != revision) {
                        batches.push(WatchedRevision {
                            revision,
                            changes: Vec::new(),
                            leader: None,
                            config: None,
                            members: Vec::new(),
                        });
                    }
                    let batch = batches.last_mut().expect("pushed above");
                    match keys.watched(event_) {
                        Ok(Watched::Table(change)) => batch.changes.push(change),
                        Ok(Watched::Leader(node)) => {
                            batch.leader = Some(node.map(|node| (node, kv.lease(), kv.create_revision() as u64)))
                        }
                        Ok(Watched::Config(text)) => batch.config = Some(text),
                        Ok(Watched::Member(id, member)) => batch.members.push((id, member)),
                        Ok(Watched::Other) => {}
                        Err(e) => error!(log, "etcd: a value under the prefix does not decode; skipped"; "error" => %e),
                    }
                }
                let store_revision = response.header().map_or(0, |h| h.revision() as u64);
                me.do_send(WatchBatch { generation, batches, store_revision });
            };
            tokio::time::sleep(Duration::from_millis(200)).await;
            if resume {
                me.do_send(Rewatch { generation, endpoint });
            } else {
                me.do_send(Reload { generation, endpoint });
            }
        });
    }

    /// Deliver the answers of committed proposals the table now includes.
    fn release_waiting(&mut self) {
        while let Some(entry) = self.waiting.first_entry() {
            if *entry.key() > self.revision {
                break;
            }
            let (revision, committed) = entry.remove_entry();
            for (proposal, outcome) in committed {
                self.mail.do_send(StoreMail::Committed { revision, proposal: Box::new(proposal), outcome });
            }
        }
    }

    fn grant(&mut self, ctx: &mut Context<Self>) {
        let Some((endpoint, mut client)) = self.client() else { return };
        if self.granting {
            return;
        }
        self.granting = true;
        let ttl = i64::from(self.config.election_ttl_secs);
        let (member_key, member_value) = (self.keys.member(self.node_id), self.member_value());
        let timeout = self.timeout();
        let me = ctx.address();
        actix::spawn(async move {
            let granted = tokio::time::timeout(timeout, async {
                let sent_at = monotonic_us();
                let lease = client.lease_grant(ttl, None).await?;
                client.put(member_key, member_value, Some(PutOptions::new().with_lease(lease.id()))).await?;
                Ok::<_, etcd_client::Error>((lease.id(), sent_at, lease.ttl()))
            })
            .await;
            match granted {
                Ok(Ok((id, sent_at, ttl))) => me.do_send(LeaseGranted { id, sent_at, ttl }),
                _ => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    me.do_send(LeaseGrantFailed { endpoint });
                }
            }
        });
    }

    /// Keep `id` alive for as long as etcd confirms it, reporting each confirmation.
    fn keep_alive(&mut self, id: i64, ctx: &mut Context<Self>) {
        let Some((endpoint, mut client)) = self.client() else { return };
        let interval = Duration::from_millis(u64::from(self.config.election_ttl_secs) * 1000 / 4);
        let timeout = self.timeout().min(Duration::from_secs(self.config.election_ttl_secs.into()));
        let me = ctx.address();
        let probe = self.keys.leader();
        actix::spawn(async move {
            let Ok(Ok((mut keeper, mut stream))) = tokio::time::timeout(timeout, client.lease_keep_alive(id)).await
            else {
                me.do_send(LeaseLost { id, endpoint });
                return;
            };
            loop {
                let sent_at = monotonic_us();
                let answer = tokio::time::timeout(timeout, async {
                    keeper.keep_alive().await?;
                    stream.message().await
                })
                .await;
                match answer {
                    Ok(Ok(Some(response))) if response.ttl() > 0 => {
                        // etcd's leader renews leases on its own, without its followers: for about an
                        // election timeout after it lost its majority it still answers keep-alives.
                        // A linearizable read needs the majority, so only a keep-alive followed by
                        // one counts; otherwise the node stays "alive" (and binding nothing) while it
                        // should be confirming renewals as a minority.
                        let read = tokio::time::timeout(timeout, client.get(probe.as_str(), None)).await;
                        if matches!(read, Ok(Ok(_))) {
                            me.do_send(LeaseKept { id, sent_at, ttl: response.ttl() })
                        }
                    }
                    _ => {
                        me.do_send(LeaseLost { id, endpoint });
                        return;
                    }
                }
                tokio::time::sleep(interval).await;
            }
        });
    }

    /// Revoke lease `id`, which this node no longer counts on (its keep-alive failed), so that the keys
    /// on it go at once: its member key, and `/leader` if it is there. Without this a campaign whose
    /// transaction timed out here but that etcd applied later (it was queued while etcd had no leader)
    /// left `/leader` naming this node on a lease nobody keeps alive: no node answered broadcasts until
    /// it expired, 3 s after etcd's leader change in a chaos run. Best effort, retried a few times;
    /// a campaign that lands after the revoke fails (its lease is gone).
    fn revoke(&self, id: i64) {
        if self.clients.is_empty() {
            return;
        }
        // Each attempt through the next endpoint: the one in use may be the one that failed.
        let (clients, first) = (self.clients.clone(), self.current);
        let timeout = self.timeout();
        let log = self.log.clone();
        actix::spawn(async move {
            for attempt in 1..=REVOKE_ATTEMPTS {
                let mut client = clients[(first + attempt as usize - 1) % clients.len()].clone();
                match tokio::time::timeout(timeout, client.lease_revoke(id)).await {
                    Ok(Ok(_)) => return,
                    // Expired meanwhile: nothing left on it.
                    Ok(Err(e)) if e.to_string().contains("lease not found") => return,
                    Ok(Err(e)) if attempt == REVOKE_ATTEMPTS => {
                        warn!(log, "etcd: could not revoke a lost lease; it expires by itself"; "error" => %e)
                    }
                    _ => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        });
    }

    /// `/leader` names this node on an etcd lease that is not this process's (an earlier process of
    /// this node, killed): nobody keeps it alive and nobody answers until it expires. Delete it,
    /// only while it is still on that lease, so the election runs now.
    fn clear_stale_claim(&mut self) {
        let Some((node, lease, _)) = self.leader else { return };
        if node != self.node_id || self.lease_id.is_none() || Some(lease) == self.lease_id {
            return;
        }
        if self.cleared_claim == Some(lease) {
            return;
        }
        let Some((_, mut client)) = self.client() else { return };
        self.cleared_claim = Some(lease);
        info!(self.log, "etcd: the election key names this node on an earlier process's lease; deleting it");
        let key = self.keys.leader();
        let timeout = self.timeout();
        actix::spawn(async move {
            let txn = Txn::new()
                .when([Compare::lease(key.clone(), CompareOp::Equal, lease)])
                .and_then([TxnOp::delete(key, None)]);
            let _ = tokio::time::timeout(timeout, client.txn(txn)).await;
        });
    }

    /// Try to become the elected node: create `/leader` on this node's lease unless it exists.
    fn campaign(&mut self, ctx: &mut Context<Self>) {
        let (Some((_, mut client)), Some(lease)) = (self.client(), self.lease_id) else { return };
        if !self.loaded || self.campaigning || self.leader.is_some() || monotonic_us() >= self.alive_until_us {
            return;
        }
        self.campaigning = true;
        let key = self.keys.leader();
        let value = self.node_id.to_string();
        let timeout = self.timeout();
        let me = ctx.address();
        actix::spawn(async move {
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, value, Some(PutOptions::new().with_lease(lease)))]);
            let _ = tokio::time::timeout(timeout, client.txn(txn)).await;
            // Who won arrives through the watch.
            me.do_send(CampaignDone);
        });
    }

    fn report_status(&mut self) {
        let now = monotonic_us();
        let alive = self.loaded && now < self.alive_until_us;
        let is_leader =
            alive && self.leader.is_some_and(|(node, lease, _)| node == self.node_id && Some(lease) == self.lease_id);
        let status = RaftStatus {
            node_id: self.node_id,
            term: self.leader.map_or(0, |(_, _, term)| term),
            leader_id: if alive { self.leader.map(|(node, _, _)| node) } else { None },
            is_leader,
            lease_until_us: is_leader.then(|| self.alive_until_us.saturating_sub(LEADER_MARGIN_US)),
            commit_index: self.revision,
        };
        self.view.elected = self.leader.map(|(node, _, _)| node);
        self.view.connected = alive;
        if self.last_status != Some(status) {
            if self.last_status.map(|s| (s.is_leader, s.leader_id)) != Some((status.is_leader, status.leader_id)) {
                info!(self.log, "etcd store role"; "elected" => ?status.leader_id, "is_leader" => status.is_leader,
                    "revision" => self.revision);
            }
            self.last_status = Some(status);
            self.status.do_send(status);
        }
    }
}

/// Read every key of the pool at one revision: the table, and `/leader`.
async fn load_pool(
    mut client: Client,
    keys: &Keys,
    (grace_ms, max_leases): (u64, usize),
    timeout: Duration,
    log: &Logger,
) -> Result<LoadedPool, String> {
    let (begin, end) = keys.range();
    let mut changes = Vec::new();
    let mut leader = None;
    let mut config = None;
    let mut members = BTreeMap::new();
    let mut revision = 0i64;
    let mut from = begin.into_bytes();
    loop {
        let mut options = GetOptions::new().with_range(end.clone()).with_limit(LOAD_PAGE_KEYS);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let page = tokio::time::timeout(timeout, client.get(from.clone(), Some(options)))
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
            .map_err(|e| e.to_string())?;
        if revision == 0 {
            revision = page.header().map_or(0, |h| h.revision());
        }
        for kv in page.kvs() {
            let Ok(key) = std::str::from_utf8(kv.key()) else { continue };
            match keys.watched(Event::Put { key, value: kv.value() }) {
                Ok(Watched::Table(change)) => changes.push((kv.mod_revision() as u64, change)),
                Ok(Watched::Leader(Some(node))) => leader = Some((node, kv.lease(), kv.create_revision() as u64)),
                Ok(Watched::Config(Some(text))) => config = Some((kv.mod_revision() as u64, text)),
                Ok(Watched::Member(id, Some(member))) => {
                    members.insert(id, member);
                }
                Ok(_) => {}
                Err(e) => error!(log, "etcd: a value under the prefix does not decode; skipped"; "error" => %e),
            }
        }
        match page.kvs().last() {
            Some(last) if page.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => break,
        }
    }
    // Parameters first: they are what every record is read with. Records by their own revision,
    // so each carries the `changed_at_index` etcd gives it.
    changes.sort_by_key(|(revision, change)| (!matches!(change, Change::Parameters(_)), *revision));
    let mut table = LeaseTable::new(grace_ms, max_leases);
    for (at, change) in changes {
        table.apply_change(at, change);
    }
    table.apply_changes(revision as u64, Vec::new(), &mut Vec::new());
    Ok(LoadedPool { revision: revision as u64, table, leader, config, members })
}

/// The pool as one range read found it.
struct LoadedPool {
    revision: u64,
    table: LeaseTable,
    leader: Option<(u64, i64, u64)>,
    /// `<prefix>/config` and its revision, if there is one.
    config: Option<(u64, String)>,
    members: BTreeMap<u64, Member>,
}

/// Connect to the endpoints (with TLS when configured).
/// Connect to the endpoints (with TLS when configured): one lazy client per endpoint.
pub async fn connect_each(config: &leasehold_config::EtcdStore) -> Result<Vec<Client>, String> {
    let mut clients = Vec::with_capacity(config.endpoints.len());
    for endpoint in &config.endpoints {
        let one = leasehold_config::EtcdStore { endpoints: vec![endpoint.clone()], ..config.clone() };
        clients.push(connect(&one).await?);
    }
    Ok(clients)
}

/// One client balancing over every endpoint (`check-config`).
pub async fn connect(config: &leasehold_config::EtcdStore) -> Result<Client, String> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_millis(config.request_timeout_ms.into()))
        .with_timeout(Duration::from_millis(config.request_timeout_ms.into()))
        .with_keep_alive(Duration::from_secs(1), Duration::from_millis(config.request_timeout_ms.into()));
    if let Some(ca) = &config.tls_ca {
        let read = |path: &std::path::Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
        let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read(ca)?));
        if let Some((cert, key)) = &config.tls_identity {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        options = options.with_tls(tls);
    }
    Client::connect(&config.endpoints, Some(options)).await.map_err(|e| e.to_string())
}

impl Actor for EtcdStore {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let config = self.config.clone();
        let log = self.log.clone();
        ctx.wait(
            async move {
                loop {
                    match connect_each(&config).await {
                        Ok(clients) => return clients,
                        Err(e) => {
                            warn!(log, "etcd: cannot connect yet"; "endpoints" => config.endpoints.join(","), "error" => %e);
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
            .into_actor(self)
            .map(|clients, act, ctx| {
                info!(act.log, "etcd: connected"; "endpoints" => act.config.endpoints.join(","),
                    "prefix" => &act.config.prefix);
                act.clients = clients;
                act.load(ctx);
                act.grant(ctx);
            }),
        );
        ctx.run_interval(TICK, |act, ctx| {
            act.report_status();
            act.clear_stale_claim();
            act.campaign(ctx);
        });
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Loaded {
    generation: u64,
    pool: LoadedPool,
}

impl Handler<Loaded> for EtcdStore {
    type Result = ();

    fn handle(&mut self, msg: Loaded, ctx: &mut Self::Context) {
        if msg.generation != self.generation {
            return;
        }
        let pool = msg.pool;
        info!(self.log, "etcd: pool loaded"; "revision" => pool.revision, "leases" => pool.table.len(),
            "elected" => ?pool.leader.map(|l| l.0), "config_revision" => pool.config.as_ref().map(|c| c.0));
        self.revision = pool.revision;
        self.loaded = true;
        self.view.watch_revision = pool.revision;
        self.leader = pool.leader;
        self.stored_config = pool.config;
        self.members = pool.members;
        self.view.members = self.members.values().cloned().collect();
        self.mail.do_send(StoreMail::Reset(Box::new(pool.table)));
        self.release_waiting();
        self.watch(ctx);
        self.report_status();
        self.offer_config(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Reload {
    generation: u64,
    /// The endpoint the failed load or watch used.
    endpoint: usize,
}

impl Handler<Reload> for EtcdStore {
    type Result = ();

    fn handle(&mut self, msg: Reload, ctx: &mut Self::Context) {
        if msg.generation == self.generation {
            self.failed(msg.endpoint);
            self.view.resyncs += 1;
            self.load(ctx);
        }
    }
}

/// A watch broke: watch again from the revision after the table's (through the next endpoint).
#[derive(Message)]
#[rtype(result = "()")]
struct Rewatch {
    generation: u64,
    endpoint: usize,
}

impl Handler<Rewatch> for EtcdStore {
    type Result = ();

    fn handle(&mut self, msg: Rewatch, ctx: &mut Self::Context) {
        // Every batch the broken watch sent is handled by now (one mailbox): `revision` is current.
        if msg.generation == self.generation {
            self.failed(msg.endpoint);
            self.view.watch_resumes += 1;
            self.watch(ctx);
        }
    }
}

struct WatchedRevision {
    revision: u64,
    changes: Vec<Change>,
    leader: Option<Option<(u64, i64, u64)>>,
    /// `<prefix>/config` changed (`None` inside: deleted).
    config: Option<Option<String>>,
    /// Member keys put (`Some`) or gone.
    members: Vec<(u64, Option<Member>)>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct WatchBatch {
    generation: u64,
    batches: Vec<WatchedRevision>,
    /// etcd's revision when it sent the batch.
    store_revision: u64,
}

impl Handler<WatchBatch> for EtcdStore {
    type Result = ();

    fn handle(&mut self, msg: WatchBatch, ctx: &mut Self::Context) {
        if msg.generation != self.generation {
            return;
        }
        for batch in msg.batches {
            if batch.revision <= self.revision {
                continue;
            }
            if let Some(leader) = batch.leader {
                self.leader = leader;
            }
            match batch.config {
                Some(Some(text)) => self.stored_config = Some((batch.revision, text)),
                // Deleted: every node keeps the config it runs; the next reload writes one again.
                Some(None) => warn!(self.log, "etcd: the shared config key was deleted; keeping the config in force";
                    "key" => self.keys.config()),
                None => {}
            }
            for (id, member) in batch.members {
                match member {
                    Some(member) => self.members.insert(id, member),
                    None => self.members.remove(&id),
                };
            }
            self.revision = batch.revision;
            // Also a revision that changes no record (the election or member keys): every node's
            // applied index is then the watch's revision.
            self.mail.do_send(StoreMail::Changes { revision: batch.revision, changes: batch.changes });
        }
        self.view.watch_revision = self.revision;
        self.view.store_revision = self.view.store_revision.max(msg.store_revision).max(self.revision);
        self.view.members = self.members.values().cloned().collect();
        self.release_waiting();
        self.report_status();
        self.offer_config(ctx);
        if self.leader.is_none() {
            self.campaign(ctx);
        }
    }
}

impl Handler<Transact> for EtcdStore {
    type Result = ();

    fn handle(&mut self, Transact(decided): Transact, ctx: &mut Self::Context) {
        for decided in decided {
            self.send_txn(decided, 1, ctx);
        }
    }
}

impl EtcdStore {
    /// Send one decided write as a transaction (attempt `attempt`) to the current endpoint.
    fn send_txn(&mut self, decided: Decided, attempt: u32, ctx: &mut Context<Self>) {
        let Some((endpoint, mut client)) = self.client() else {
            self.mail.do_send(StoreMail::Rejected(vec![decided.proposal.tag]));
            return;
        };
        // Short attempts: while etcd elects a leader (a member died) requests hang; the next
        // attempt, on the next endpoint, lands once it has one, within the client's retransmissions.
        let timeout = self.timeout() / TXN_ATTEMPTS;
        let me = ctx.address();
        actix::spawn(async move {
            let started = monotonic_us();
            let result = match tokio::time::timeout(timeout, client.txn(transaction(&decided.write))).await {
                Ok(Ok(response)) if response.succeeded() => Ok(response.header().map_or(0, |h| h.revision() as u64)),
                Ok(Ok(_)) => Err(TxnFailure::Conflict),
                Ok(Err(e)) => Err(TxnFailure::Error(e.to_string())),
                Err(_) => Err(TxnFailure::Error(format!("no answer within {timeout:?}"))),
            };
            let latency_us = monotonic_us().saturating_sub(started);
            me.do_send(TxnDone { decided, result, latency_us, endpoint, attempt });
        });
    }
}

/// The etcd transaction of a write.
fn transaction(write: &Write) -> Txn {
    let compares: Vec<Compare> = write
        .compares
        .iter()
        .map(|key| Compare::mod_revision(key.as_str(), CompareOp::Less, write.decided_at as i64 + 1))
        .collect();
    let ops: Vec<TxnOp> = write
        .ops
        .iter()
        .map(|(key, op)| match op {
            Op::Put(value) => TxnOp::put(key.as_str(), value.clone(), None),
            Op::Delete => TxnOp::delete(key.as_str(), None),
        })
        .collect();
    Txn::new().when(compares).and_then(ops)
}

#[derive(Debug)]
enum TxnFailure {
    /// A key the decision read changed since: decided on a view that no longer holds.
    Conflict,
    Error(String),
}

#[derive(Message)]
#[rtype(result = "()")]
struct TxnDone {
    decided: Decided,
    attempt: u32,
    result: Result<u64, TxnFailure>,
    latency_us: u64,
    endpoint: usize,
}

impl Handler<TxnDone> for EtcdStore {
    type Result = ();

    fn handle(&mut self, msg: TxnDone, ctx: &mut Self::Context) {
        self.view.transactions += 1;
        self.view.txn_latency_us_sum += msg.latency_us;
        match msg.result {
            Ok(revision) => {
                self.view.store_revision = self.view.store_revision.max(revision);
                let Decided { proposal, outcome, .. } = msg.decided;
                self.waiting.entry(revision).or_default().push((proposal, outcome));
                self.release_waiting();
            }
            Err(TxnFailure::Conflict) => {
                self.view.conflicts += 1;
                self.mail.do_send(StoreMail::Rejected(vec![msg.decided.proposal.tag]));
            }
            Err(TxnFailure::Error(e)) => {
                self.view.failures += 1;
                self.failed(msg.endpoint);
                let command = msg.decided.proposal.command.label();
                if msg.attempt < TXN_ATTEMPTS {
                    // Again, through the next endpoint. Had this attempt landed after all, the next
                    // fails its compares (the keys moved past `decided_at`): the client, unanswered,
                    // asks again and is answered from the binding the watch brings.
                    warn!(self.log, "etcd: transaction failed; trying again"; "error" => %e, "command" => command,
                        "attempt" => msg.attempt);
                    self.send_txn(msg.decided, msg.attempt + 1, ctx);
                } else {
                    warn!(self.log, "etcd: transaction failed"; "error" => %e, "command" => command);
                    self.mail.do_send(StoreMail::Rejected(vec![msg.decided.proposal.tag]));
                }
            }
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct LeaseGranted {
    id: i64,
    sent_at: u64,
    ttl: i64,
}

impl Handler<LeaseGranted> for EtcdStore {
    type Result = ();

    fn handle(&mut self, msg: LeaseGranted, ctx: &mut Self::Context) {
        self.granting = false;
        self.lease_id = Some(msg.id);
        self.alive_until_us = msg.sent_at + msg.ttl.max(0) as u64 * 1_000_000;
        self.keep_alive(msg.id, ctx);
        self.report_status();
        self.campaign(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct LeaseGrantFailed {
    endpoint: usize,
}

impl Handler<LeaseGrantFailed> for EtcdStore {
    type Result = ();

    fn handle(&mut self, msg: LeaseGrantFailed, ctx: &mut Self::Context) {
        self.granting = false;
        self.failed(msg.endpoint);
        self.grant(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct LeaseKept {
    id: i64,
    sent_at: u64,
    ttl: i64,
}

impl Handler<LeaseKept> for EtcdStore {
    type Result = ();

    fn handle(&mut self, msg: LeaseKept, _: &mut Self::Context) {
        if Some(msg.id) == self.lease_id {
            self.alive_until_us = self.alive_until_us.max(msg.sent_at + msg.ttl.max(0) as u64 * 1_000_000);
            self.report_status();
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct LeaseLost {
    id: i64,
    endpoint: usize,
}

impl Handler<LeaseLost> for EtcdStore {
    type Result = ();

    fn handle(&mut self, msg: LeaseLost, ctx: &mut Self::Context) {
        if Some(msg.id) != self.lease_id {
            return;
        }
        self.failed(msg.endpoint);
        warn!(self.log, "etcd: keep-alive failed; this node answers as a minority until a new lease is granted");
        // The old lease may live on in etcd until its TTL runs out: this node counts on it no longer,
        // and revokes it so that what is on it goes now rather than when it expires.
        self.lease_id = None;
        self.alive_until_us = 0;
        self.report_status();
        self.revoke(msg.id);
        self.grant(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct CampaignDone;

impl Handler<CampaignDone> for EtcdStore {
    type Result = ();

    fn handle(&mut self, _: CampaignDone, _: &mut Self::Context) {
        self.campaigning = false;
    }
}

impl EtcdStore {
    /// Hand the latest stored shared config to the reload actor, once per revision; or, when the
    /// pool has none, create `<prefix>/config` from this node's file (only while it is still
    /// missing: of nodes starting together, the first one's is kept, and the watch brings it).
    fn offer_config(&mut self, ctx: &mut Context<Self>) {
        let Some((sink, seed)) = &self.config_sink else { return };
        if !self.loaded {
            return;
        }
        match &self.stored_config {
            Some((revision, text)) if *revision > self.config_offered => {
                let revision = *revision;
                self.config_offered = revision;
                let shared = SharedConfig { key: self.keys.config(), revision, text: text.clone() };
                ctx.spawn(sink.send(shared).into_actor(self).map(move |answer, act, _| match answer {
                    Ok(Ok(digest)) => {
                        act.view.config_revision = revision;
                        act.view.config_error = None;
                        info!(act.log, "etcd: shared config in force"; "revision" => revision, "digest" => digest);
                    }
                    Ok(Err(problem)) => {
                        act.view.config_rejected += 1;
                        error!(act.log, "etcd: the stored shared config was refused; keeping the config in force";
                            "revision" => revision, "problem" => &problem);
                        act.view.config_error = Some(problem);
                    }
                    Err(e) => warn!(act.log, "etcd: the reload actor did not answer"; "error" => %e),
                }));
            }
            Some(_) => {}
            None if !self.config_seeded => {
                let Some(seed) = seed else { return };
                let Some((endpoint, mut client)) = self.client() else { return };
                self.config_seeded = true;
                let key = self.keys.config();
                let create = Txn::new()
                    .when(vec![Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                    .and_then(vec![TxnOp::put(key.as_str(), seed.clone(), None)]);
                let timeout = self.timeout();
                let work = async move { tokio::time::timeout(timeout, client.txn(create)).await };
                ctx.spawn(work.into_actor(self).map(move |answer, act, _| match answer {
                    Ok(Ok(response)) if response.succeeded() => {
                        info!(act.log, "etcd: created the shared config from this node's file"; "key" => act.keys.config())
                    }
                    // Another node created it first: the watch brings its version.
                    Ok(Ok(_)) => {}
                    failed => {
                        warn!(act.log, "etcd: could not create the shared config; trying again later";
                            "error" => ?failed.map(|r| r.map(|_| ())));
                        act.failed(endpoint);
                        act.config_seeded = false;
                    }
                }));
            }
            None => {}
        }
    }
}

impl EtcdStore {
    fn member_value(&self) -> String {
        serde_json::to_string(&self.member).unwrap_or_default()
    }

    /// Write this node's member key again (its digests changed), on the etcd lease it holds.
    fn put_member(&mut self, ctx: &mut Context<Self>) {
        let (Some(lease), Some((endpoint, mut client))) = (self.lease_id, self.client()) else { return };
        let (key, value) = (self.keys.member(self.node_id), self.member_value());
        let timeout = self.timeout();
        let put = async move {
            tokio::time::timeout(timeout, client.put(key, value, Some(PutOptions::new().with_lease(lease)))).await
        };
        ctx.spawn(put.into_actor(self).map(move |written, act, _| {
            if !matches!(written, Ok(Ok(_))) {
                // The next grant writes the key anew with what `member` says by then.
                warn!(act.log, "etcd: could not update this node's member key"; "error" => ?written.map(|r| r.map(|_| ())));
                act.failed(endpoint);
            }
        }));
    }
}

/// The lease-relevant config digest changed (a reload): every node sees it in the member key.
impl Handler<leasehold_cluster::actor::SetConfigDigest> for EtcdStore {
    type Result = ();

    fn handle(&mut self, msg: leasehold_cluster::actor::SetConfigDigest, ctx: &mut Self::Context) {
        let digest = Some(format!("{:016x}", msg.0));
        if self.member.config_digest != digest {
            self.member.config_digest = digest;
            self.put_member(ctx);
        }
    }
}

/// The boot root digest changed (the digest thread): the elected node compares it with its own.
impl Handler<leasehold_cluster::actor::SetBootRootDigest> for EtcdStore {
    type Result = ();

    fn handle(&mut self, msg: leasehold_cluster::actor::SetBootRootDigest, ctx: &mut Self::Context) {
        let digest = (msg.0 != 0).then(|| format!("{:016x}", msg.0));
        if self.member.boot_root_digest != digest {
            self.member.boot_root_digest = digest;
            self.put_member(ctx);
        }
    }
}

impl Handler<ConnectConfig> for EtcdStore {
    type Result = ();

    fn handle(&mut self, msg: ConnectConfig, ctx: &mut Self::Context) {
        self.config_sink = Some((msg.sink, msg.seed));
        self.offer_config(ctx);
    }
}

impl Handler<PublishConfig> for EtcdStore {
    type Result = ResponseActFuture<Self, Result<u64, String>>;

    fn handle(&mut self, PublishConfig(text): PublishConfig, _: &mut Self::Context) -> Self::Result {
        let Some((endpoint, mut client)) = self.client() else {
            return Box::pin(fut::ready(Err("not connected to etcd yet".to_string())));
        };
        let key = self.keys.config();
        let timeout = self.timeout();
        let work = async move {
            match tokio::time::timeout(timeout, client.put(key.as_str(), text, None)).await {
                Ok(Ok(put)) => Ok(put.header().map_or(0, |h| h.revision() as u64)),
                Ok(Err(e)) => Err(format!("writing {key}: {e}")),
                Err(_) => Err(format!("writing {key}: no answer within {timeout:?}")),
            }
        };
        Box::pin(work.into_actor(self).map(move |written, act, _| {
            if written.is_err() {
                act.failed(endpoint);
            }
            written
        }))
    }
}

impl Handler<GetStoreView> for EtcdStore {
    type Result = MessageResult<GetStoreView>;

    fn handle(&mut self, _: GetStoreView, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.view.clone())
    }
}

/// `leasehold check-config` with the etcd store: the endpoints answer and the prefix can be read
/// and written (a key under it is put and deleted). Also the shared config stored under the prefix
/// (key, revision, text), for the caller to check with the node's file.
pub async fn check_reachable(
    config: &leasehold_config::EtcdStore,
) -> Result<(String, Option<(String, u64, String)>), String> {
    let mut client = connect(config).await?;
    let probe = format!("{}/check-config-probe", config.prefix);
    let timeout = Duration::from_millis(config.request_timeout_ms.into());
    let work = async {
        let put = client.put(probe.clone(), "1", None).await.map_err(|e| format!("writing {probe}: {e}"))?;
        client.delete(probe.clone(), None).await.map_err(|e| format!("deleting {probe}: {e}"))?;
        let (begin, end) = Keys::new(&config.prefix).range();
        let count = client
            .get(begin, Some(GetOptions::new().with_range(end).with_count_only()))
            .await
            .map_err(|e| format!("reading {}: {e}", config.prefix))?
            .count();
        let key = Keys::new(&config.prefix).config();
        let stored = client.get(key.clone(), None).await.map_err(|e| format!("reading {key}: {e}"))?;
        let shared = match stored.kvs().first() {
            Some(kv) => Some((
                key.clone(),
                kv.mod_revision() as u64,
                String::from_utf8(kv.value().to_vec()).map_err(|_| format!("{key}: not UTF-8 text"))?,
            )),
            None => None,
        };
        let summary = format!(
            "etcd at {} answers (revision {}); {} keys under {}",
            config.endpoints.join(","),
            put.header().map_or(0, |h| h.revision()),
            count,
            config.prefix
        );
        Ok((summary, shared))
    };
    tokio::time::timeout(timeout * 3, work).await.map_err(|_| format!("no answer within {:?}", timeout * 3))?
}

/// Stop answering and give up the election key at once (the process is stopping): revoke this
/// node's etcd lease, so `/leader` and the member key go now and another node is elected without
/// waiting out the TTL. Answered when etcd confirmed it, or gave up.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Resign;

impl Handler<Resign> for EtcdStore {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Resign, _: &mut Self::Context) -> Self::Result {
        let (Some(id), Some((_, mut client))) = (self.lease_id.take(), self.client()) else {
            return Box::pin(async {});
        };
        self.alive_until_us = 0;
        self.loaded = false;
        self.report_status();
        let timeout = self.timeout();
        let log = self.log.clone();
        Box::pin(async move {
            match tokio::time::timeout(timeout, client.lease_revoke(id)).await {
                Ok(Ok(_)) => info!(log, "etcd: resigned (lease revoked) before exit"),
                _ => warn!(log, "etcd: could not revoke the lease before exit; it expires by itself"),
            }
        })
    }
}
