//! The admin HTTP API (actix-web, loopback by default): the lease table, node status, health and
//! Prometheus metrics. Read-only; every answer comes from the lease actor, which owns the table.

use std::net::SocketAddr;

use actix::Addr;
use actix_web::{get, web, App, HttpResponse, HttpServer};

use crate::actors::lease::{GetLeases, GetStatus, LeaseActor, RenderMetrics};

struct AdminState {
    lease: Addr<LeaseActor>,
}

fn unavailable(e: actix::MailboxError) -> HttpResponse {
    HttpResponse::ServiceUnavailable().body(format!("lease actor unavailable: {e}\n"))
}

#[get("/v1/leases")]
async fn get_leases(state: web::Data<AdminState>) -> HttpResponse {
    match state.lease.send(GetLeases).await {
        Ok(rows) => HttpResponse::Ok().json(rows),
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

/// 200 while the node can bind leases (a leader is known); 503 otherwise, with the reason.
#[get("/healthz")]
async fn get_healthz(state: web::Data<AdminState>) -> HttpResponse {
    match state.lease.send(GetStatus).await {
        Ok(status) if status.leader_id.is_some() => HttpResponse::Ok().json(serde_json::json!({
            "status": "ok", "leader": status.is_leader, "leader_id": status.leader_id, "term": status.term,
        })),
        Ok(status) => HttpResponse::ServiceUnavailable().json(serde_json::json!({
            "status": "no quorum", "leader": false, "term": status.term,
        })),
        Err(e) => unavailable(e),
    }
}

#[get("/metrics")]
async fn get_metrics(state: web::Data<AdminState>) -> HttpResponse {
    match state.lease.send(RenderMetrics).await {
        Ok(text) => HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(text),
        Err(e) => unavailable(e),
    }
}

/// Bind the admin listener and return the server future (spawn it on the actix system).
pub fn serve(listen: SocketAddr, lease: Addr<LeaseActor>) -> std::io::Result<actix_web::dev::Server> {
    let data = web::Data::new(AdminState { lease });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .service(get_leases)
            .service(get_status)
            .service(get_healthz)
            .service(get_metrics)
    })
    .workers(1)
    .disable_signals()
    .bind(listen)?
    .run();
    Ok(server)
}
