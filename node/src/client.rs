//! The admin API client of the `leasehold` commands: one HTTP/1.0 request per call (no client
//! library), plain or over TLS (`--admin-ca`), with the bearer token (`--admin-token-file`), and
//! refusals explained in words an operator can act on.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use leasehold_cluster::transport::tls as peer_tls;
use rustls_pki_types::ServerName;

/// How long a command waits for the admin API (connect, and each read or write).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest admin answer read.
const ADMIN_MAX_RESPONSE_BYTES: usize = 256 << 20;
/// Largest token file read.
const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

/// How to reach a node's admin API.
#[derive(Args, Debug, Clone)]
pub struct AdminClientArgs {
    /// The node's admin address (membership changes must go to the leader's).
    #[arg(long, global = true, default_value = "127.0.0.1:6767")]
    pub admin: SocketAddr,
    /// File with the admin token, sent as `Authorization: Bearer <token>` (writes need it, and reads
    /// on a node with [admin] protect_reads).
    #[arg(long, global = true, env = "LEASEHOLD_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Talk HTTPS, trusting the admin API's certificate when this CA (PEM) signed it.
    #[arg(long, global = true, env = "LEASEHOLD_ADMIN_CA")]
    pub admin_ca: Option<PathBuf>,
    /// The name the admin API's certificate must carry (default: the IP address of --admin).
    #[arg(long, global = true)]
    pub admin_server_name: Option<String>,
}

/// A ready admin client: the token read, the TLS settings built.
pub struct AdminClient {
    admin: SocketAddr,
    token: Option<(String, PathBuf)>,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

fn read_token(path: &PathBuf) -> Result<String, String> {
    let problem = |what: String| format!("admin token file {}: {what}", path.display());
    let length = std::fs::metadata(path).map_err(|e| problem(format!("cannot read it: {e}")))?.len();
    if length > MAX_TOKEN_FILE_BYTES {
        return Err(problem(format!("{length} bytes; a token file has at most {MAX_TOKEN_FILE_BYTES}")));
    }
    let bytes = std::fs::read(path).map_err(|e| problem(format!("cannot read it: {e}")))?;
    let token = bytes.trim_ascii();
    if token.is_empty() || !token.iter().all(u8::is_ascii_graphic) {
        return Err(problem("the token must be visible ASCII characters, without spaces".to_string()));
    }
    Ok(String::from_utf8_lossy(token).into_owned())
}

impl AdminClient {
    pub fn new(args: &AdminClientArgs) -> Result<AdminClient, String> {
        let token = match &args.admin_token_file {
            Some(path) => Some((read_token(path)?, path.clone())),
            None => None,
        };
        let tls = match &args.admin_ca {
            None => None,
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for certificate in peer_tls::read_certificates(ca).map_err(|e| e.to_string())? {
                    roots
                        .add(certificate)
                        .map_err(|e| format!("{}: not a usable CA certificate: {e}", ca.display()))?;
                }
                let config = rustls::ClientConfig::builder_with_provider(peer_tls::provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                let name = match &args.admin_server_name {
                    Some(name) => ServerName::try_from(name.clone())
                        .map_err(|e| format!("--admin-server-name {name}: not a DNS name or address: {e}"))?,
                    None => ServerName::IpAddress(args.admin.ip().into()),
                };
                Some((Arc::new(config), name))
            }
        };
        Ok(AdminClient { admin: args.admin, token, tls })
    }

    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// One request: (status, body).
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
        let stream = TcpStream::connect_timeout(&self.admin, ADMIN_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
        stream.set_read_timeout(Some(ADMIN_TIMEOUT)).map_err(|e| e.to_string())?;
        stream.set_write_timeout(Some(ADMIN_TIMEOUT)).map_err(|e| e.to_string())?;
        let body = body.unwrap_or("");
        let mut request = format!(
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n",
            self.admin,
            body.len()
        );
        if let Some((token, _)) = &self.token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        let raw = match &self.tls {
            None => exchange(stream, request.as_bytes()).map_err(|e| format!("{e}"))?,
            Some((config, name)) => {
                let connection =
                    rustls::ClientConnection::new(config.clone(), name.clone()).map_err(|e| format!("TLS: {e}"))?;
                let session = rustls::StreamOwned::new(connection, stream);
                exchange(session, request.as_bytes()).map_err(|e| {
                    format!(
                        "TLS: {e} (is the admin API plain HTTP? then leave out --admin-ca; is its certificate for \
                             another name? see --admin-server-name)"
                    )
                })?
            }
        };
        let text = String::from_utf8_lossy(&raw).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return Err(if self.tls.is_none() {
                "no HTTP answer (does the admin API speak HTTPS? then give --admin-ca CA.pem)".to_string()
            } else {
                "malformed HTTP response".to_string()
            });
        };
        let status =
            head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).ok_or("malformed status line")?;
        Ok((status, body.to_string()))
    }

    /// What to tell the operator about a non-2xx answer.
    pub fn refusal(&self, status: u16, body: &str) -> String {
        let problem = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| body.trim().to_string());
        let admin = self.admin;
        match (status, &self.token) {
            (401, None) => format!(
                "{admin} answered 401 Unauthorized: {problem}; give the admin token with --admin-token-file FILE \
                 (or LEASEHOLD_ADMIN_TOKEN_FILE)"
            ),
            (401, Some(_)) => format!("{admin} answered 401 Unauthorized: {problem}"),
            (403, Some((_, file))) => format!(
                "{admin} answered 403 Forbidden: {problem} (the token in {} is not the one this node was started with)",
                file.display()
            ),
            (403, None) => format!("{admin} answered 403 Forbidden: {problem}"),
            (409, _) => format!("{admin} answered 409 Conflict: {problem}"),
            _ => format!("{admin} answered {status}: {problem}"),
        }
    }
}

/// Writes the request, then reads the whole answer (the server closes after it). A TLS peer that
/// closes without close_notify ends the answer too, once something was read.
fn exchange(mut stream: impl Read + Write, request: &[u8]) -> io::Result<Vec<u8>> {
    stream.write_all(request)?;
    stream.flush()?;
    let mut raw = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Ok(raw),
            Ok(n) => {
                if raw.len() + n > ADMIN_MAX_RESPONSE_BYTES {
                    return Err(io::Error::other(format!("answer over {ADMIN_MAX_RESPONSE_BYTES} bytes")));
                }
                raw.extend_from_slice(&buffer[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !raw.is_empty() => return Ok(raw),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
