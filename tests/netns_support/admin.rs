//! Admin API requests beyond `http_get`: any method with an optional JSON body (`PUT`, `DELETE`), run
//! inside a server's namespace like `http_get`, and the reservations as `GET /v1/reservations` lists them.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use serde::Deserialize;

use super::{in_netns, ADMIN_PORT};

/// `METHOD path` over HTTP/1.0 to 127.0.0.1:`port` inside namespace `ns`, with `body` as
/// `application/json` when given: (status, body). Reads and writes time out after `limit`.
pub fn http_request(
    ns: &str,
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    limit: Duration,
) -> io::Result<(u16, String)> {
    let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    http_request_with(ns, to, method, path, body, &[], limit).map(|(status, _, body)| (status, body))
}

/// `http_request` to any address `to` inside `ns`, with extra `headers` (name, value): (status, the
/// response's header lines, body).
pub fn http_request_with(
    ns: &str,
    to: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
    limit: Duration,
) -> io::Result<(u16, String, String)> {
    let mut stream = in_netns(ns, || TcpStream::connect_timeout(&to, limit))?;
    stream.set_read_timeout(Some(limit))?;
    stream.set_write_timeout(Some(limit))?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {to}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    } else {
        request.push_str("Content-Length: 0\r\n");
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or_default());
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("not an HTTP response: {head:?}")))?;
    Ok((status, head.to_owned(), body.to_owned()))
}

/// `http_request` to the admin port with a 15 s bound (a PUT waits for a Raft commit); fails the test
/// when the node does not answer at all.
pub fn admin(ns: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    http_request(ns, ADMIN_PORT, method, path, body, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{method} {path} in {ns}: {e}"))
}

/// One reservation as `GET /v1/reservations` reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub struct Reservation {
    pub mac: String,
    pub ip: Ipv4Addr,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub boot_file: Option<String>,
    /// "config" (the node's config file) or "api" (replicated through the Raft log).
    pub source: String,
}

/// `GET /v1/reservations` of the node in `ns`, sorted (by MAC first).
pub fn reservations(ns: &str) -> Vec<Reservation> {
    let (code, body) = admin(ns, "GET", "/v1/reservations", None);
    assert_eq!(code, 200, "GET /v1/reservations in {ns} answered HTTP {code}: {body}");
    let mut rows: Vec<Reservation> = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("GET /v1/reservations in {ns} is not a reservation array ({e}): {body}"));
    rows.sort();
    rows
}
