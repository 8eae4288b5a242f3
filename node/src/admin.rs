//! The admin HTTP API (actix-web, loopback by default): the lease table, reservations, node status,
//! cluster membership and leadership transfer, health and Prometheus metrics. Every answer comes from the lease actor
//! (which owns the table) or the raft actor; changes go through the Raft log. Who may read and
//! write is decided before any handler runs (`auth`); the listener speaks HTTPS when given a
//! certificate (`tls_config`).

pub mod auth;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use actix::Addr;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Next};
use actix_web::{delete, get, post, put, web, App, HttpResponse, HttpServer};
use leasehold_cluster::actor::{
    ChangeMembership, ClusterView, GetClusterView, PromoteLearner, RaftActor, TransferLeader,
};
use leasehold_cluster::replica::TransferError;
use leasehold_cluster::transport::{self, tls as peer_tls, Transport};
use serde::Deserialize;

use auth::{AccessPolicy, Denied};

use crate::actors::lease::{
    AdminError, DeleteReservation, GetLeases, GetReservations, GetStatus, LeaseActor, PutReservation, RenderMetrics,
    LEASES_PAGE_DEFAULT, LEASES_PAGE_MAX,
};
use crate::engine::ReservationError;
use crate::reload::{Reload, ReloadActor, ReloadError};

struct AdminState {
    lease: Addr<LeaseActor>,
    /// The raft actor; `None` with the etcd store, which has no Raft group.
    raft: Option<Addr<RaftActor>>,
    /// The etcd store's view, with the etcd store.
    store: Option<actix::Recipient<crate::store::GetStoreView>>,
    /// The peer transport, when this node has peers (its counters go into /metrics).
    transport: Option<Addr<Transport>>,
    reload: Addr<ReloadActor>,
    /// How long `POST /v1/cluster/transfer-leader` waits for the new leader.
    transfer_timeout: std::time::Duration,
    /// The TFTP server's counters, when this node serves boot files.
    tftp: Option<Arc<crate::tftp::TftpMetrics>>,
    http_boot: Option<Arc<crate::boot_http::HttpBootMetrics>>,
    /// The digest of this node's boot root, when it has one (`boot_digest`).
    boot_root_digest: Option<crate::boot_digest::SharedDigest>,
}

impl AdminState {
    /// This node's boot root digest in hex: `None` without a root, or before its first digest.
    fn own_boot_root_digest(&self) -> Option<String> {
        let digest = self.boot_root_digest.as_ref()?.load(std::sync::atomic::Ordering::Relaxed);
        (digest != 0).then(|| format!("{digest:016x}"))
    }
}

/// The leader's own boot root digest, as `view` shows it: `None` on a follower, or when the leader
/// has no root (or has not digested it yet). A member's files are compared with the leader's, and
/// only the leader can: the files are not replicated, so a follower never learns the leader's
/// digest (and hears no other member's report).
fn leader_boot_root_digest(view: &ClusterView) -> Option<&str> {
    if !view.is_leader {
        return None;
    }
    view.members.iter().find(|m| m.id == view.node_id)?.boot_root_digest.as_deref()
}

/// On the leader with a boot root digest: the members whose last reported digest differs from it
/// (a member that reported none is not counted: no root, not digested yet, or an older version).
/// `None` where that cannot be told (see `leader_boot_root_digest`).
fn boot_root_mismatches(view: &ClusterView) -> Option<Vec<u64>> {
    let leader = leader_boot_root_digest(view)?;
    let differs = |digest: &Option<String>| digest.as_deref().is_some_and(|d| d != leader);
    Some(view.members.iter().filter(|m| differs(&m.boot_root_digest)).map(|m| m.id).collect())
}

/// Where the other members (and `leasehold reload --all`) reach this node's admin API, as it reports
/// it (`leasehold_cluster::replica::admin_addr_number`; 0: not known): the listen address, or, when
/// that is the unspecified address (`0.0.0.0`), this node's peer address's IP (`cluster.listen`, else
/// its own `--peer` entry) with the admin port. An IPv6 listener, or an unspecified one on a node
/// whose peer address is unspecified or IPv6 too, is not reported.
pub fn reported_admin_addr(listen: SocketAddr, cluster: &leasehold_config::Cluster) -> u64 {
    use leasehold_cluster::replica::admin_addr_number;
    if !listen.ip().is_unspecified() {
        return admin_addr_number(listen);
    }
    let peer_ip = [cluster.listen, cluster.peers.get(&cluster.node_id).copied()]
        .into_iter()
        .flatten()
        .map(|addr| addr.ip())
        .find(|ip| ip.is_ipv4() && !ip.is_unspecified());
    peer_ip.map_or(0, |ip| admin_addr_number(SocketAddr::new(ip, listen.port())))
}

/// Refuses what `AccessPolicy` refuses (401 with `WWW-Authenticate: Bearer`, or 403), before the
/// handler runs and before the body is read: a refused request changes nothing.
async fn access_guard(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let decision = match request.app_data::<web::Data<AccessPolicy>>() {
        Some(policy) => policy.check(
            request.method().as_str(),
            request.path(),
            request.headers().get(actix_web::http::header::AUTHORIZATION).map(|value| value.as_bytes()),
        ),
        None => Err(Denied::Forbidden("the admin API has no access policy".to_string())),
    };
    let refusal = match decision {
        Ok(()) => return Ok(next.call(request).await?.map_into_boxed_body()),
        Err(Denied::Unauthorized(why)) => HttpResponse::Unauthorized()
            .insert_header((actix_web::http::header::WWW_AUTHENTICATE, "Bearer realm=\"leasehold-admin\""))
            .json(serde_json::json!({"error": why})),
        Err(Denied::Forbidden(why)) => HttpResponse::Forbidden().json(serde_json::json!({"error": why})),
    };
    Ok(request.into_response(refusal))
}

/// `GET /v1/cluster`: this node's view of the Raft group. Replication progress (`matched`, `lag`)
/// and the other members' own term, commit and applied index (reported on their responses to the
/// leader) are known only on the leader; so are their boot root digests, and `boot_root_mismatch`
/// (the member's digest differs from the leader's own; `null` where either is unknown).
#[get("/v1/cluster")]
async fn get_cluster(state: web::Data<AdminState>) -> HttpResponse {
    let Some(raft) = &state.raft else { return get_store_cluster(&state).await };
    let (view, status) = match (raft.send(GetClusterView).await, state.lease.send(GetStatus).await) {
        (Ok(view), Ok(status)) => (view, status),
        (Err(e), _) | (_, Err(e)) => return unavailable(e),
    };
    let leader_boot_root = leader_boot_root_digest(&view);
    let members: Vec<serde_json::Value> = view
        .members
        .iter()
        .map(|m| {
            let role = if Some(m.id) == view.leader_id {
                "leader"
            } else if m.voter {
                "follower"
            } else {
                "learner"
            };
            serde_json::json!({
                "id": m.id,
                "address": view.addresses.get(&m.id).map(|a| a.to_string()),
                "role": role,
                "matched_index": m.matched,
                "lag_entries": m.lag,
                "progress": m.state,
                "recently_active": m.recent_active,
                "reachable": m.reachable,
                "catching_up": m.catching_up,
                "config_digest": m.config_digest,
                // Against the digest the log carries (the leader's config): `None` where either is unknown.
                "config_mismatch": m.config_digest.as_deref().zip(status.cluster_config_digest.as_deref())
                    .map(|(own, cluster)| own != cluster),
                "boot_root_digest": m.boot_root_digest,
                "admin_addr": m.admin_addr,
                "boot_root_mismatch": m.boot_root_digest.as_deref().zip(leader_boot_root)
                    .map(|(member, leader)| member != leader),
                "term": m.term,
                "commit_index": m.commit,
                // This node's own: what its lease table applied; another's: what its raft layer
                // handed to its table.
                "applied_index": if m.id == view.node_id { Some(status.applied_index) } else { m.applied },
                "applied_behind_entries": m.applied.map(|a| view.commit_index.saturating_sub(a)),
            })
        })
        .collect();
    HttpResponse::Ok().json(serde_json::json!({
        "node_id": view.node_id,
        "term": view.term,
        "leader_id": view.leader_id,
        "is_leader": view.is_leader,
        "commit_index": view.commit_index,
        "applied_index": status.applied_index,
        "snapshot_index": view.snapshot_index,
        "config_digest": status.config_digest,
        "cluster_config_digest": status.cluster_config_digest,
        "config_mismatch": status.config_mismatch,
        "boot_root_digest": state.own_boot_root_digest(),
        "members": members,
    }))
}

#[derive(Deserialize)]
struct AddNode {
    id: u64,
    addr: SocketAddr,
    /// Join as a voter at once instead of as a learner promoted once caught up.
    #[serde(default)]
    voter: bool,
}

/// `POST /v1/cluster/nodes {"id": 4, "addr": "10.0.0.4:6768"}`: add a learner, promoted to voter by
/// the leader once caught up (`"voter": true`: a voter at once). Leader only.
#[post("/v1/cluster/nodes")]
async fn add_node(state: web::Data<AdminState>, body: web::Json<AddNode>) -> HttpResponse {
    let change = ChangeMembership { id: body.id, add: Some(body.addr), as_voter: body.voter };
    let Some(raft) = &state.raft else { return no_raft_group() };
    membership(body.id, raft.send(change)).await
}

/// `DELETE /v1/cluster/nodes/{id}`: remove a voter or learner (leader only).
#[delete("/v1/cluster/nodes/{id}")]
async fn remove_node(state: web::Data<AdminState>, id: web::Path<u64>) -> HttpResponse {
    let id = id.into_inner();
    let Some(raft) = &state.raft else { return no_raft_group() };
    membership(id, raft.send(ChangeMembership { id, add: None, as_voter: false })).await
}

/// `POST /v1/cluster/nodes/{id}/promote`: make learner `id` a voter now (leader only).
#[post("/v1/cluster/nodes/{id}/promote")]
async fn promote_node(state: web::Data<AdminState>, id: web::Path<u64>) -> HttpResponse {
    let id = id.into_inner();
    let Some(raft) = &state.raft else { return no_raft_group() };
    membership(id, raft.send(PromoteLearner { id })).await
}

async fn membership(
    id: u64,
    sent: impl std::future::Future<Output = Result<Result<(), String>, actix::MailboxError>>,
) -> HttpResponse {
    if id == 0 {
        return HttpResponse::BadRequest().json(serde_json::json!({"error": "node ids are greater than 0"}));
    }
    match sent.await {
        Ok(Ok(())) => HttpResponse::Accepted().json(serde_json::json!({"status": "proposed"})),
        Ok(Err(problem)) => HttpResponse::Conflict().json(serde_json::json!({"error": problem})),
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferLeaderBody {
    to: Option<u64>,
}

/// `POST /v1/cluster/transfer-leader [{"to": 2}]` (leader only): hand leadership to voter `to`, or
/// without it to the reachable voter whose log matches furthest. This node gives up its leader lease
/// first, so only the new leader answers broadcasts once it has won (at once: no election timeout).
/// 200 with the new leader once this node has learned of it; 409 not the leader (naming it), a
/// learner, this node itself or an unreachable voter; 404 an unknown node; 504 no new leader within
/// `cluster.transfer_timeout_ms`.
#[post("/v1/cluster/transfer-leader")]
async fn transfer_leader(state: web::Data<AdminState>, body: web::Bytes) -> HttpResponse {
    use actix_web::http::StatusCode;
    let to = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<TransferLeaderBody>(&body) {
            Ok(body) => body.to,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("the request body: {e}")),
        }
    };
    if to == Some(0) {
        return error(StatusCode::BAD_REQUEST, "node ids are greater than 0");
    }
    let started = std::time::Instant::now();
    let Some(raft) = &state.raft else { return no_raft_group() };
    let from = match raft.send(GetClusterView).await {
        Ok(view) => view.node_id,
        Err(e) => return unavailable(e),
    };
    match raft.send(TransferLeader { to, timeout: state.transfer_timeout }).await {
        Ok(Ok(leader)) => HttpResponse::Ok().json(serde_json::json!({
            "status": "transferred", "leader_id": leader, "previous_leader_id": from,
            "took_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })),
        Ok(Err(e)) => {
            let status = match &e {
                TransferError::UnknownNode { .. } => StatusCode::NOT_FOUND,
                TransferError::TimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
                TransferError::Abandoned(_) | TransferError::Halted => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::CONFLICT,
            };
            let mut body = serde_json::json!({"error": e.to_string()});
            if let TransferError::NotLeader { leader } = e {
                body["leader_id"] = serde_json::json!(leader);
            }
            HttpResponse::build(status).json(body)
        }
        Err(e) => unavailable(e),
    }
}

fn unavailable(e: actix::MailboxError) -> HttpResponse {
    HttpResponse::ServiceUnavailable().body(format!("lease actor unavailable: {e}\n"))
}

#[derive(Deserialize)]
struct LeasesQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/leases[?after=IP][&limit=N]`: a JSON array of up to `limit` records (default 1,000, at
/// most 10,000) with addresses above `after`, in address order. Fewer rows than asked for means the
/// table ends there; otherwise a `Link: <...>; rel="next"` header names the next page. Each page is
/// read at once; pages read one after the other are not one view (`X-Applied-Index` says which
/// index each was read at).
#[get("/v1/leases")]
async fn get_leases(state: web::Data<AdminState>, query: web::Query<LeasesQuery>) -> HttpResponse {
    let after = match query.after.as_deref().map(str::parse::<std::net::Ipv4Addr>) {
        None => None,
        Some(Ok(ip)) => Some(ip),
        Some(Err(_)) => {
            return error(actix_web::http::StatusCode::BAD_REQUEST, "after: not an IPv4 address");
        }
    };
    let limit = query.limit.unwrap_or(LEASES_PAGE_DEFAULT);
    if limit == 0 || limit > LEASES_PAGE_MAX {
        return error(actix_web::http::StatusCode::BAD_REQUEST, format!("limit: 1 to {LEASES_PAGE_MAX}"));
    }
    match state.lease.send(GetLeases { after, limit }).await {
        Ok(page) => {
            let mut response = HttpResponse::Ok();
            response.insert_header(("X-Applied-Index", page.applied_index.to_string()));
            if let Some(next) = page.next_after {
                response.insert_header(("Link", format!("</v1/leases?after={next}&limit={limit}>; rel=\"next\"")));
            }
            response.json(page.rows)
        }
        Err(e) => unavailable(e),
    }
}

/// A MAC address as `52:54:00:12:34:56` (or with `-`), any case.
fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let octets: Vec<u8> = text
        .split([':', '-'])
        .map(|part| if part.len() == 2 { u8::from_str_radix(part, 16).ok() } else { None })
        .collect::<Option<_>>()?;
    octets.try_into().ok()
}

fn error(status: actix_web::http::StatusCode, problem: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({"error": problem.to_string()}))
}

fn admin_error(e: AdminError) -> HttpResponse {
    use actix_web::http::StatusCode;
    match e {
        AdminError::Refused(ReservationError::Invalid(why)) => error(StatusCode::BAD_REQUEST, why),
        AdminError::Refused(ReservationError::Conflict(why)) => error(StatusCode::CONFLICT, why),
        AdminError::Refused(ReservationError::NotFound(why)) => error(StatusCode::NOT_FOUND, why),
        AdminError::Unavailable(why) => error(StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

/// `GET /v1/reservations`: the config file's reservations (`"source": "config"`) and the
/// replicated ones (`"source": "api"`).
#[get("/v1/reservations")]
async fn get_reservations(state: web::Data<AdminState>) -> HttpResponse {
    match state.lease.send(GetReservations).await {
        Ok(rows) => HttpResponse::Ok().json(rows),
        Err(e) => unavailable(e),
    }
}

#[get("/v1/reservations/{mac}")]
async fn get_reservation(state: web::Data<AdminState>, mac: web::Path<String>) -> HttpResponse {
    let Some(wanted) = parse_mac(&mac) else {
        return error(actix_web::http::StatusCode::BAD_REQUEST, format!("`{mac}` is not a MAC address"));
    };
    let wanted = leasehold_cluster::ClientKey::Mac(wanted).to_string();
    match state.lease.send(GetReservations).await {
        Ok(rows) => match rows.into_iter().find(|r| r.mac == wanted) {
            Some(row) => HttpResponse::Ok().json(row),
            None => error(actix_web::http::StatusCode::NOT_FOUND, format!("{wanted} has no reservation")),
        },
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReservationBody {
    ip: std::net::Ipv4Addr,
    hostname: Option<String>,
    boot_file: Option<String>,
}

/// `PUT /v1/reservations/{mac} {"ip": "10.0.0.50", "hostname": "node-50", "boot_file": "x.efi"}`:
/// reserve (or change) the MAC's address, replicated through the Raft log; 200 once committed on
/// a majority and applied here, 409 when another client holds the address.
#[put("/v1/reservations/{mac}")]
async fn put_reservation(
    state: web::Data<AdminState>,
    mac: web::Path<String>,
    body: web::Json<ReservationBody>,
) -> HttpResponse {
    let Some(parsed) = parse_mac(&mac) else {
        return error(actix_web::http::StatusCode::BAD_REQUEST, format!("`{mac}` is not a MAC address"));
    };
    let body = body.into_inner();
    let host = leasehold_cluster::ReservedHost {
        mac: parsed,
        ip: body.ip,
        hostname: body.hostname.clone(),
        boot_file: body.boot_file.clone(),
    };
    match state.lease.send(PutReservation(host)).await {
        Ok(Ok(())) => HttpResponse::Ok().json(serde_json::json!({
            "mac": leasehold_cluster::ClientKey::Mac(parsed).to_string(), "ip": body.ip.to_string(),
            "hostname": body.hostname, "boot_file": body.boot_file, "source": "api",
        })),
        Ok(Err(e)) => admin_error(e),
        Err(e) => unavailable(e),
    }
}

#[delete("/v1/reservations/{mac}")]
async fn delete_reservation(state: web::Data<AdminState>, mac: web::Path<String>) -> HttpResponse {
    let Some(parsed) = parse_mac(&mac) else {
        return error(actix_web::http::StatusCode::BAD_REQUEST, format!("`{mac}` is not a MAC address"));
    };
    match state.lease.send(DeleteReservation(parsed)).await {
        Ok(Ok(())) => HttpResponse::Ok().json(serde_json::json!({"status": "removed"})),
        Ok(Err(e)) => admin_error(e),
        Err(e) => unavailable(e),
    }
}

#[get("/v1/status")]
async fn get_status(state: web::Data<AdminState>) -> HttpResponse {
    match state.lease.send(GetStatus).await {
        Ok(status) => HttpResponse::Ok().json(status),
        Err(e) => unavailable(e),
    }
}

/// `POST /v1/leases/import`: a JSON array of leases from another server (`leasehold import`), at most
/// `MAX_IMPORT_LEASES`; answered once each is bound through the log or refused, with the reasons.
#[post("/v1/leases/import")]
async fn import_leases(
    state: web::Data<AdminState>,
    body: web::Json<Vec<crate::engine::import::ImportedLease>>,
) -> HttpResponse {
    use crate::engine::import::MAX_IMPORT_LEASES;
    let leases = body.into_inner();
    if leases.len() > MAX_IMPORT_LEASES {
        return error(
            actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("{} leases; one request carries at most {MAX_IMPORT_LEASES}", leases.len()),
        );
    }
    match state.lease.send(crate::actors::lease::ImportLeases(leases)).await {
        Ok(report) => HttpResponse::Ok().json(report),
        Err(e) => unavailable(e),
    }
}

/// `POST /v1/config/reload`: re-read this node's `--config` file (as SIGHUP does). 200 with what
/// changed; 400 when the file does not check (every problem, with file and key), 409 when it changes
/// a key only a restart can take, 503 when the etcd store did not take the shared part. A refused
/// reload changes nothing.
#[post("/v1/config/reload")]
async fn reload_config(state: web::Data<AdminState>) -> HttpResponse {
    use actix_web::http::StatusCode;
    match state.reload.send(Reload { by: "admin API" }).await {
        Ok(Ok(reloaded)) => HttpResponse::Ok().json(reloaded),
        Ok(Err(e @ (ReloadError::Invalid(_) | ReloadError::NoFile))) => error(StatusCode::BAD_REQUEST, e),
        Ok(Err(e @ ReloadError::RestartNeeded { .. })) => error(StatusCode::CONFLICT, e),
        Ok(Err(e @ (ReloadError::Unavailable(_) | ReloadError::Store(_)))) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e) => unavailable(e),
    }
}

/// 200 while the node can bind leases (a leader is known); 503 otherwise, with the reason.
/// `boot_root_digest` is this node's (`null` without a boot root or before its first digest);
/// `boot_root_mismatch_members`, on the Raft leader with a boot root, lists the members whose files
/// differ from its own. It is `null` on a follower: the boot files are not replicated, so a follower
/// never learns the leader's digest and cannot tell whether its own files differ — only the leader
/// flags (here, in `GET /v1/cluster` and in `/metrics`).
#[get("/healthz")]
async fn get_healthz(state: web::Data<AdminState>) -> HttpResponse {
    match state.lease.send(GetStatus).await {
        // `leader`: this node answers broadcasts (Raft leader holding its leader lease); `raft_leader`:
        // Raft's view alone (a new leader's first milliseconds, or a cut-off one before it steps down).
        // Restarted and still replaying its log: it answers no client yet, so it is not ready.
        Ok(status) if status.replaying => HttpResponse::ServiceUnavailable().json(serde_json::json!({
            "status": "replaying", "leader": false, "term": status.term, "applied_index": status.applied_index,
        })),
        Ok(status) if status.leader_id.is_some() => {
            // Asked of the raft actor (or the etcd store) only where there is something to compare.
            let mismatches = match (status.is_leader && state.boot_root_digest.is_some(), &state.raft, &state.store) {
                (false, _, _) => None,
                (true, Some(raft), _) => {
                    raft.send(GetClusterView).await.ok().and_then(|view| boot_root_mismatches(&view))
                }
                (true, None, Some(store)) => store
                    .send(crate::store::GetStoreView)
                    .await
                    .ok()
                    .and_then(|view| view.boot_root_mismatches(status.node_id)),
                (true, None, None) => None,
            };
            HttpResponse::Ok().json(serde_json::json!({
                "status": "ok", "leader": status.answers_as_leader, "raft_leader": status.is_leader,
                "leader_id": status.leader_id, "term": status.term, "config_digest": status.config_digest,
                "cluster_config_digest": status.cluster_config_digest, "config_mismatch": status.config_mismatch,
                "boot_root_digest": state.own_boot_root_digest(), "boot_root_mismatch_members": mismatches,
            }))
        }
        Ok(status) => HttpResponse::ServiceUnavailable().json(serde_json::json!({
            "status": "no quorum", "leader": false, "term": status.term,
        })),
        Err(e) => unavailable(e),
    }
}

#[get("/metrics")]
async fn get_metrics(state: web::Data<AdminState>) -> HttpResponse {
    match state.lease.send(RenderMetrics).await {
        Ok(mut text) => {
            if let Some(transport) = &state.transport {
                if let Ok(stats) = transport.send(transport::GetStats).await {
                    render_peer_metrics(&stats, &mut text);
                }
            }
            let view = match &state.raft {
                Some(raft) => raft.send(GetClusterView).await.ok(),
                None => None,
            };
            let mut mismatches = view.as_ref().and_then(boot_root_mismatches);
            if let Some(store) = &state.store {
                if let Ok(view) = store.send(crate::store::GetStoreView).await {
                    view.render(&mut text);
                    if let Ok(status) = state.lease.send(GetStatus).await {
                        mismatches = view.boot_root_mismatches(status.node_id);
                    }
                }
            }
            if let Some(view) = &view {
                render_member_metrics(view, &mut text);
            }
            render_boot_root_metrics(state.own_boot_root_digest().as_deref(), mismatches, &mut text);
            if let Some(tftp) = &state.tftp {
                tftp.render(&mut text);
            }
            if let Some(http_boot) = &state.http_boot {
                http_boot.render(&mut text);
            }
            HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(text)
        }
        Err(e) => unavailable(e),
    }
}

/// Replication as this node sees it: on the leader, each member's lag and whether it answers.
fn render_member_metrics(view: &leasehold_cluster::actor::ClusterView, out: &mut String) {
    use std::fmt::Write;
    let _ =
        writeln!(out, "# HELP leasehold_member_lag_entries Log entries a member is behind the leader (on the leader).");
    let _ = writeln!(out, "# TYPE leasehold_member_lag_entries gauge");
    for member in &view.members {
        if let Some(lag) = member.lag {
            let _ = writeln!(out, "leasehold_member_lag_entries{{member=\"{}\"}} {lag}", member.id);
        }
    }
    let _ = writeln!(
        out,
        "# HELP leasehold_member_reachable 1 when the member answered within an election timeout (on the leader)."
    );
    let _ = writeln!(out, "# TYPE leasehold_member_reachable gauge");
    for member in &view.members {
        if let Some(reachable) = member.reachable {
            let _ = writeln!(out, "leasehold_member_reachable{{member=\"{}\"}} {}", member.id, u8::from(reachable));
        }
    }
    let _ = writeln!(out, "# HELP leasehold_members Members of the Raft group, by kind.");
    let _ = writeln!(out, "# TYPE leasehold_members gauge");
    let voters = view.members.iter().filter(|m| m.voter).count();
    let _ = writeln!(out, "leasehold_members{{kind=\"voter\"}} {voters}");
    let _ = writeln!(out, "leasehold_members{{kind=\"learner\"}} {}", view.members.len() - voters);
}

/// This node's boot root digest, and on the leader how many members' differ from its own.
fn render_boot_root_metrics(own: Option<&str>, mismatches: Option<Vec<u64>>, out: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "# HELP leasehold_boot_root_info The digest of the files under this node's boot root (none without a root, or before the first digest)."
    );
    let _ = writeln!(out, "# TYPE leasehold_boot_root_info gauge");
    if let Some(digest) = own {
        let _ = writeln!(out, "leasehold_boot_root_info{{digest=\"{digest}\"}} 1");
    }
    let _ = writeln!(
        out,
        "# HELP leasehold_boot_root_mismatch_members Members whose boot root digest differs from the leader's (on the leader; 0 elsewhere)."
    );
    let _ = writeln!(out, "# TYPE leasehold_boot_root_mismatch_members gauge");
    let count = mismatches.map_or(0, |ids| ids.len());
    let _ = writeln!(out, "leasehold_boot_root_mismatch_members {count}");
}

/// The peer transport's counters in Prometheus text.
fn render_peer_metrics(stats: &transport::TransportStats, out: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(out, "# HELP leasehold_peer_tls 1 when peer links run over mutual TLS");
    let _ = writeln!(out, "# TYPE leasehold_peer_tls gauge");
    let _ = writeln!(out, "leasehold_peer_tls {}", u8::from(stats.tls));
    let _ = writeln!(
        out,
        "# HELP leasehold_peer_inbound_refused_total inbound peer connections closed, by reason (auth: a \
         certificate, secret or id that does not check out; protocol: malformed input; limit: too many open)"
    );
    let _ = writeln!(out, "# TYPE leasehold_peer_inbound_refused_total counter");
    for (reason, value) in [
        ("auth", stats.inbound_auth_failures),
        ("protocol", stats.inbound_protocol_errors),
        ("limit", stats.inbound_refused),
    ] {
        let _ = writeln!(out, "leasehold_peer_inbound_refused_total{{reason=\"{reason}\"}} {value}");
    }
    let _ = writeln!(out, "# HELP leasehold_peer_connected 1 while the link to or from the peer is up");
    let _ = writeln!(out, "# TYPE leasehold_peer_connected gauge");
    let _ = writeln!(
        out,
        "# HELP leasehold_peer_auth_failures_total outbound connections to the peer refused for authentication"
    );
    let _ = writeln!(out, "# TYPE leasehold_peer_auth_failures_total counter");
    for (id, peer) in &stats.peers {
        let _ = writeln!(
            out,
            "leasehold_peer_connected{{peer=\"{id}\",direction=\"outbound\"}} {}",
            u8::from(peer.connected)
        );
        let _ = writeln!(
            out,
            "leasehold_peer_connected{{peer=\"{id}\",direction=\"inbound\"}} {}",
            u8::from(peer.inbound_connected)
        );
        let _ = writeln!(out, "leasehold_peer_auth_failures_total{{peer=\"{id}\"}} {}", peer.auth_failures);
    }
    let _ = writeln!(out, "# HELP leasehold_peer_messages_sent_total Raft messages written to the peer's link.");
    let _ = writeln!(out, "# TYPE leasehold_peer_messages_sent_total counter");
    for (id, peer) in &stats.peers {
        let _ = writeln!(out, "leasehold_peer_messages_sent_total{{peer=\"{id}\"}} {}", peer.sent);
    }
    let _ = writeln!(out, "# HELP leasehold_peer_sent_bytes_total Bytes written to the peer's link (framing and authentication included).");
    let _ = writeln!(out, "# TYPE leasehold_peer_sent_bytes_total counter");
    for (id, peer) in &stats.peers {
        let _ = writeln!(out, "leasehold_peer_sent_bytes_total{{peer=\"{id}\"}} {}", peer.sent_bytes);
    }
    let _ =
        writeln!(out, "# HELP leasehold_peer_received_bytes_total Bytes of the Raft messages received from the peer.");
    let _ = writeln!(out, "# TYPE leasehold_peer_received_bytes_total counter");
    for (id, peer) in &stats.peers {
        let _ = writeln!(out, "leasehold_peer_received_bytes_total{{peer=\"{id}\"}} {}", peer.received_bytes);
    }
    let _ = writeln!(out, "# HELP leasehold_peer_queued_messages Raft messages waiting in the peer's send queue.");
    let _ = writeln!(out, "# TYPE leasehold_peer_queued_messages gauge");
    for (id, peer) in &stats.peers {
        let _ = writeln!(out, "leasehold_peer_queued_messages{{peer=\"{id}\"}} {}", peer.queued);
    }
    let _ = writeln!(out, "# HELP leasehold_peer_messages_dropped_total Raft messages not sent (full: the queue was full; unsendable: over the frame limit).");
    let _ = writeln!(out, "# TYPE leasehold_peer_messages_dropped_total counter");
    for (id, peer) in &stats.peers {
        let _ = writeln!(
            out,
            "leasehold_peer_messages_dropped_total{{peer=\"{id}\",reason=\"full\"}} {}",
            peer.dropped_full
        );
        let _ = writeln!(
            out,
            "leasehold_peer_messages_dropped_total{{peer=\"{id}\",reason=\"unsendable\"}} {}",
            peer.dropped_unsendable
        );
    }
}

/// The rustls settings of an HTTPS admin listener: the certificate chain and key from these files,
/// checked to belong together; errors name the file.
pub fn tls_config(cert_file: &Path, key_file: &Path) -> Result<rustls::ServerConfig, leasehold_cluster::ClusterError> {
    let chain = peer_tls::read_certificates(cert_file)?;
    let key = peer_tls::read_private_key(key_file)?;
    rustls::ServerConfig::builder_with_provider(peer_tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| leasehold_cluster::ClusterError::Tls {
            path: cert_file.display().to_string(),
            problem: e.to_string(),
        })?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| leasehold_cluster::ClusterError::Tls {
            path: key_file.display().to_string(),
            problem: match e {
                rustls::Error::InconsistentKeys(_) => {
                    format!("this key does not belong to the certificate in {}", cert_file.display())
                }
                other => format!("cannot use this key: {other}"),
            },
        })
}

/// Largest JSON body the admin API reads.
const ADMIN_MAX_BODY_BYTES: usize = 4 << 20;

/// What the admin listener needs besides the actors.
pub struct AdminOptions {
    pub listen: SocketAddr,
    pub access: AccessPolicy,
    /// HTTPS with these settings; plain HTTP without.
    pub tls: Option<rustls::ServerConfig>,
    pub transport: Option<Addr<Transport>>,
    pub reload: Addr<ReloadActor>,
    /// How long a leadership transfer asked through the API waits for the new leader.
    pub transfer_timeout: std::time::Duration,
    pub tftp: Option<Arc<crate::tftp::TftpMetrics>>,
    pub http_boot: Option<Arc<crate::boot_http::HttpBootMetrics>>,
    /// The boot root digest the digest thread keeps, when this node has a boot root.
    pub boot_root_digest: Option<crate::boot_digest::SharedDigest>,
}

/// 409 for the Raft membership endpoints with the etcd store.
fn no_raft_group() -> HttpResponse {
    error(
        actix_web::http::StatusCode::CONFLICT,
        "this node keeps its pool in etcd ([store] kind = \"etcd\"): there is no Raft group; nodes join by \
         starting with the same [store], and the elected node changes when it stops",
    )
}

/// `GET /v1/cluster` with the etcd store: the endpoints, the elected node, the watch revision and
/// the transaction counters.
async fn get_store_cluster(state: &AdminState) -> HttpResponse {
    let Some(store) = &state.store else { return no_raft_group() };
    match (store.send(crate::store::GetStoreView).await, state.lease.send(GetStatus).await) {
        (Ok(view), Ok(status)) => {
            // Every node sees every member key: each member is compared with the elected one.
            let elected = view.elected_member();
            let members: Vec<serde_json::Value> = view
                .members
                .iter()
                .map(|m| {
                    let against = |own: &Option<String>, theirs: Option<&Option<String>>| {
                        own.as_deref().zip(theirs.and_then(|d| d.as_deref())).map(|(a, b)| a != b)
                    };
                    serde_json::json!({
                        "id": m.id,
                        "role": if view.elected == Some(m.id) { "elected" } else { "member" },
                        "server_ip": m.server_ip,
                        "admin_addr": m.admin,
                        "config_digest": m.config_digest,
                        "config_mismatch": against(&m.config_digest, elected.map(|e| &e.config_digest)),
                        "boot_root_digest": m.boot_root_digest,
                        "boot_root_mismatch": against(&m.boot_root_digest, elected.map(|e| &e.boot_root_digest)),
                    })
                })
                .collect();
            HttpResponse::Ok().json(serde_json::json!({
                "store": "etcd",
                "node_id": status.node_id,
                "leader_id": view.elected,
                // The elected node (as `leasehold reload --all` asks of the Raft leader).
                "is_leader": status.is_leader,
                "answers_as_leader": status.answers_as_leader,
                "etcd": view,
                "applied_index": status.applied_index,
                "leases": status.leases,
                "config_digest": status.config_digest,
                "cluster_config_digest": status.cluster_config_digest,
                "config_mismatch": status.config_mismatch,
                "boot_root_digest": state.own_boot_root_digest(),
                "members": members,
            }))
        }
        (Err(e), _) | (_, Err(e)) => unavailable(e),
    }
}

/// Bind the admin listener and return the server future (spawn it on the actix system).
pub fn serve(
    options: AdminOptions,
    lease: Addr<LeaseActor>,
    raft: Option<Addr<RaftActor>>,
    store: Option<actix::Recipient<crate::store::GetStoreView>>,
) -> std::io::Result<actix_web::dev::Server> {
    let AdminOptions { listen, access, tls, transport, reload, transfer_timeout, tftp, http_boot, boot_root_digest } =
        options;
    let data = web::Data::new(AdminState {
        lease,
        raft,
        store,
        transport,
        reload,
        transfer_timeout,
        tftp,
        http_boot,
        boot_root_digest,
    });
    let access = web::Data::from(Arc::new(access));
    let server = HttpServer::new(move || {
        // A body that does not parse is answered like every other error: {"error": "..."}.
        // The largest body is an import of `MAX_IMPORT_LEASES` leases (about 200 bytes each).
        let json = web::JsonConfig::default().limit(ADMIN_MAX_BODY_BYTES).error_handler(|problem, _| {
            let answer = error(actix_web::http::StatusCode::BAD_REQUEST, format!("the request body: {problem}"));
            actix_web::error::InternalError::from_response(problem, answer).into()
        });
        App::new()
            .wrap(from_fn(access_guard))
            .app_data(access.clone())
            .app_data(data.clone())
            .app_data(json)
            .service(get_leases)
            .service(get_reservations)
            .service(get_reservation)
            .service(put_reservation)
            .service(delete_reservation)
            .service(get_status)
            .service(get_healthz)
            .service(get_metrics)
            .service(get_cluster)
            .service(add_node)
            .service(remove_node)
            .service(promote_node)
            .service(reload_config)
            .service(import_leases)
            .service(transfer_leader)
    })
    .workers(1)
    .disable_signals();
    let server = match tls {
        Some(tls) => server.bind_rustls_0_23(listen, tls)?,
        None => server.bind(listen)?,
    };
    Ok(server.run())
}

#[cfg(test)]
mod tests {
    use leasehold_cluster::replica::MemberProgress;

    use super::*;

    fn member(id: u64, boot_root_digest: Option<&str>) -> MemberProgress {
        MemberProgress {
            id,
            voter: true,
            matched: None,
            lag: None,
            state: None,
            recent_active: None,
            reachable: None,
            catching_up: None,
            term: None,
            commit: None,
            applied: None,
            config_digest: None,
            boot_root_digest: boot_root_digest.map(str::to_owned),
            admin_addr: None,
        }
    }

    fn view(node_id: u64, is_leader: bool, digests: [Option<&str>; 4]) -> ClusterView {
        ClusterView {
            node_id,
            term: 3,
            leader_id: Some(1),
            is_leader,
            commit_index: 10,
            snapshot_index: 0,
            members: digests.iter().enumerate().map(|(i, d)| member(i as u64 + 1, *d)).collect(),
            addresses: Default::default(),
        }
    }

    #[test]
    fn only_the_leader_flags_members_whose_boot_root_differs_from_its_own() {
        let (a, b) = (Some("00000000000000aa"), Some("00000000000000bb"));
        // Node 3 differs; node 4 has not said (no root, or an older version): not counted.
        let leader = view(1, true, [a, a, b, None]);
        assert_eq!(leader_boot_root_digest(&leader), a);
        assert_eq!(boot_root_mismatches(&leader), Some(vec![3]));
        let mut text = String::new();
        render_boot_root_metrics(a, boot_root_mismatches(&leader), &mut text);
        assert!(text.contains("leasehold_boot_root_info{digest=\"00000000000000aa\"} 1\n"), "{text}");
        assert!(text.contains("leasehold_boot_root_mismatch_members 1\n"), "{text}");
        assert!(text.contains("# TYPE leasehold_boot_root_mismatch_members gauge\n"), "{text}");

        // A leader without a root of its own cannot compare; nor can a follower.
        assert_eq!(boot_root_mismatches(&view(1, true, [None, a, b, None])), None);
        let follower = view(2, false, [None, b, None, None]);
        assert_eq!((leader_boot_root_digest(&follower), boot_root_mismatches(&follower)), (None, None));
        let mut text = String::new();
        render_boot_root_metrics(None, boot_root_mismatches(&follower), &mut text);
        assert!(!text.contains("leasehold_boot_root_info{"), "no digest, no sample: {text}");
        assert!(text.contains("# TYPE leasehold_boot_root_info gauge\n"), "the family is always named: {text}");
        assert!(text.contains("leasehold_boot_root_mismatch_members 0\n"), "{text}");
    }

    #[test]
    fn the_reported_admin_address_is_one_other_members_reach() {
        use leasehold_cluster::replica::admin_addr_from_number;
        let reported = |listen: &str, peer_listen: Option<&str>, own_peer: Option<&str>| {
            let mut cluster = leasehold_config::Cluster { node_id: 2, ..leasehold_config::Cluster::default() };
            cluster.listen = peer_listen.map(|a| a.parse().expect("an address"));
            if let Some(own) = own_peer {
                cluster.peers.insert(2, own.parse().expect("an address"));
            }
            admin_addr_from_number(reported_admin_addr(listen.parse().expect("an address"), &cluster))
                .map(|a| a.to_string())
        };
        let some = |text: &str| Some(text.to_string());
        assert_eq!(reported("10.77.0.2:6767", Some("10.77.0.2:6768"), None), some("10.77.0.2:6767"), "as bound");
        assert_eq!(reported("127.0.0.1:6767", None, None), some("127.0.0.1:6767"), "loopback, as bound");
        // 0.0.0.0: the peer address's IP with the admin port.
        assert_eq!(reported("0.0.0.0:6767", Some("10.77.0.2:6768"), None), some("10.77.0.2:6767"));
        assert_eq!(reported("0.0.0.0:6767", Some("0.0.0.0:6768"), Some("10.77.0.2:6768")), some("10.77.0.2:6767"));
        assert_eq!(reported("0.0.0.0:6767", None, Some("10.77.0.2:6768")), some("10.77.0.2:6767"));
        // Not known: nothing to tell another member.
        assert_eq!(reported("0.0.0.0:6767", None, None), None, "no peer address");
        assert_eq!(reported("0.0.0.0:6767", Some("[fd00::2]:6768"), None), None, "an IPv6 peer address");
        assert_eq!(reported("[::1]:6767", Some("10.77.0.2:6768"), None), None, "an IPv6 listener");
    }
}
