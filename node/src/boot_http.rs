//! The boot files over HTTP, for UEFI HTTP boot firmware and iPXE: the `[boot] root` served
//! read-only on `[boot] http_listen`, a listener of its own apart from the admin API (boot clients
//! never reach the admin routes). GET and HEAD only; byte ranges and `Content-Length` from
//! actix-files. Names are confined to the root exactly as over TFTP (`tftp::resolve`); each request
//! is counted by outcome. `boot/{mac}.ipxe` is no file: the machine's iPXE script (`boot_script`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use slog::{debug, info, Logger};

use crate::actors::lease::{GetMachine, LeaseActor};
use crate::tftp::{resolve, Outcome};
use actix::Addr;

/// Connections the boot listener serves at once (firmware fetches one file at a time).
const MAX_CONNECTIONS: usize = 1_024;
/// Worker threads of the boot listener: file reads run on actix-files' blocking pool.
const WORKERS: usize = 1;

/// Counters of the HTTP boot listener, read by `/metrics`.
#[derive(Debug, Default)]
pub struct HttpBootMetrics {
    served: AtomicU64,
    not_found: AtomicU64,
    refused: AtomicU64,
    scripts: AtomicU64,
}

impl HttpBootMetrics {
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP leasehold_http_boot_requests_total HTTP requests for boot files, by how they were answered."
        );
        let _ = writeln!(out, "# TYPE leasehold_http_boot_requests_total counter");
        for (outcome, counter) in [
            (Outcome::Served.label(), &self.served),
            (Outcome::NotFound.label(), &self.not_found),
            (Outcome::Refused.label(), &self.refused),
            ("script", &self.scripts),
        ] {
            let _ = writeln!(
                out,
                "leasehold_http_boot_requests_total{{outcome=\"{}\"}} {}",
                outcome,
                counter.load(Relaxed)
            );
        }
    }
}

struct State {
    root: PathBuf,
    boot: Arc<leasehold_config::Boot>,
    lease: Addr<LeaseActor>,
    metrics: Arc<HttpBootMetrics>,
    log: Logger,
}

/// `GET /boot/{mac}.ipxe[?script=NAME]`: the machine's iPXE script (`boot_script`), the node it
/// asked (the `Host` it named) as `{{server}}`.
async fn machine_script(request: &HttpRequest, state: &State, mac: [u8; 6]) -> HttpResponse {
    let name = request.query_string().split('&').find_map(|pair| pair.strip_prefix("script="));
    let host = request.connection_info().host().to_owned();
    let server = host.split(':').next().and_then(|h| h.parse().ok());
    let server = server.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
    let Ok(machine) = state.lease.send(GetMachine { mac, server }).await else {
        return HttpResponse::ServiceUnavailable().body("the lease actor is not running\n");
    };
    match crate::boot_script::render(&state.boot, name, &machine) {
        Some(script) => {
            state.metrics.scripts.fetch_add(1, Relaxed);
            HttpResponse::Ok().content_type("text/plain; charset=utf-8").body(script)
        }
        None => {
            state.metrics.not_found.fetch_add(1, Relaxed);
            HttpResponse::NotFound().body("no such script: name one with ?script=, or set [boot] default_script\n")
        }
    }
}

async fn boot_file(request: HttpRequest, state: web::Data<State>) -> HttpResponse {
    // The raw path, decoded once here (not the router's partly decoded match).
    let name = request.uri().path().trim_start_matches('/');
    let decoded = percent_decode(name);
    if let Some(mac) = decoded.as_deref().and_then(crate::boot_script::script_mac) {
        return machine_script(&request, &state, mac).await;
    }
    let result = match decoded {
        Some(name) => resolve(&state.root, Path::new(&name)),
        None => Err(Outcome::Refused),
    };
    debug!(state.log, "http boot request"; "peer" => ?request.peer_addr(), "path" => name,
        "outcome" => result.as_ref().map_or_else(|o| o.label(), |_| Outcome::Served.label()));
    match result {
        Ok(path) => match actix_files::NamedFile::open_async(&path).await {
            Ok(file) => {
                state.metrics.served.fetch_add(1, Relaxed);
                file.use_etag(true).use_last_modified(true).disable_content_disposition().into_response(&request)
            }
            Err(_) => {
                state.metrics.not_found.fetch_add(1, Relaxed);
                HttpResponse::NotFound().body("not found\n")
            }
        },
        Err(Outcome::NotFound) => {
            state.metrics.not_found.fetch_add(1, Relaxed);
            HttpResponse::NotFound().body("not found\n")
        }
        Err(_) => {
            state.metrics.refused.fetch_add(1, Relaxed);
            HttpResponse::Forbidden().body("refused: names stay inside the boot root\n")
        }
    }
}

/// `%XX` escapes decoded (a path names files by bytes; one that is not UTF-8 is refused).
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Bind the boot listener on `listen` for the files of `root` (canonical); the server future is
/// spawned by the caller on the actix system.
pub fn serve(
    boot: Arc<leasehold_config::Boot>,
    root: &Path,
    lease: Addr<LeaseActor>,
    metrics: Arc<HttpBootMetrics>,
    log: Logger,
) -> std::io::Result<actix_web::dev::Server> {
    let listen = boot.http_listen;
    let root = root.canonicalize()?;
    info!(log, "serving boot files over HTTP"; "root" => %root.display(), "listen" => %listen);
    let state = web::Data::new(State { root, boot, lease, metrics, log });
    let server = HttpServer::new(move || {
        App::new().app_data(state.clone()).route(
            "/{name:.*}",
            web::route()
                .guard(actix_web::guard::Any(actix_web::guard::Get()).or(actix_web::guard::Head()))
                .to(boot_file),
        )
    })
    .workers(WORKERS)
    .max_connections(MAX_CONNECTIONS)
    .disable_signals()
    .bind(listen)?
    .run();
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn escapes_decode_and_broken_ones_are_refused() {
        assert_eq!(percent_decode("efi/snp%20only.efi").as_deref(), Some("efi/snp only.efi"));
        assert_eq!(percent_decode("%2e%2e/secret").as_deref(), Some("../secret"), "then refused by resolve");
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%ff"), None, "not UTF-8");
    }
}
