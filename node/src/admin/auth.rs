//! Who may use the admin API: the bearer token, and the decision for each request.
//!
//! A request is a read (GET, HEAD) or a write (any other method: membership, reservations, and any
//! endpoint added later, so a new write is protected without anyone remembering to). Writes need
//! `Authorization: Bearer <token>`: no such header is 401, another token 403, checked before the
//! handler runs, so a refused request changes nothing. Reads need it only with `protect_reads`,
//! except `GET /healthz` (health checks carry no credentials). Without a token file, writes are
//! allowed when the admin API listens on loopback only, and refused otherwise, with the reason.
//!
//! The token is compared in constant time: both sides are MACed under a key drawn at start and the
//! MACs compared with `hmac`'s constant-time check, so neither the token's bytes nor its length
//! show in the time a refusal takes.

use std::net::SocketAddr;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The shortest admin token accepted.
pub const MIN_ADMIN_TOKEN_BYTES: usize = 16;
/// The longest admin token accepted (it travels in a header).
pub const MAX_ADMIN_TOKEN_BYTES: usize = 4096;
/// The one read that never needs the token.
const HEALTH_PATH: &str = "/healthz";

/// The admin token, kept only as a MAC under a per-process key.
pub struct AdminToken {
    key: [u8; 32],
    expected: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

fn mac_of(key: &[u8; 32], bytes: &[u8]) -> HmacSha256 {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(bytes);
    mac
}

impl AdminToken {
    /// The token in `text` (surrounding whitespace is not part of it): 16 to 4096 visible ASCII
    /// characters, as an HTTP header carries them.
    pub fn parse(text: &[u8]) -> Result<AdminToken, String> {
        let token = text.trim_ascii();
        if token.len() < MIN_ADMIN_TOKEN_BYTES {
            return Err(format!("the token has {} bytes; at least {MIN_ADMIN_TOKEN_BYTES} are needed", token.len()));
        }
        if token.len() > MAX_ADMIN_TOKEN_BYTES {
            return Err(format!("the token has {} bytes; at most {MAX_ADMIN_TOKEN_BYTES} fit a header", token.len()));
        }
        if let Some(position) = token.iter().position(|b| !b.is_ascii_graphic()) {
            return Err(format!(
                "byte {position} of the token is not visible ASCII (a header carries only those; try \
                 `head -c 32 /dev/urandom | base64`)"
            ));
        }
        let key: [u8; 32] = rand::random();
        let expected = mac_of(&key, token).finalize().into_bytes().into();
        Ok(AdminToken { key, expected })
    }

    /// Reads the token file.
    pub fn read(path: &Path) -> Result<AdminToken, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read the token file: {e}"))?;
        AdminToken::parse(&bytes)
    }

    /// Is `presented` the token? Constant time in its contents and length.
    pub fn matches(&self, presented: &[u8]) -> bool {
        mac_of(&self.key, presented).verify_slice(&self.expected).is_ok()
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// 401: no bearer token where one is needed.
    Unauthorized(String),
    /// 403: a wrong token, or writes that this listener never accepts.
    Forbidden(String),
}

/// Who may do what on this admin listener.
#[derive(Debug)]
pub struct AccessPolicy {
    token: Option<AdminToken>,
    protect_reads: bool,
    listen: SocketAddr,
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive, RFC 7235 §2.1).
fn bearer(header: &[u8]) -> Option<&[u8]> {
    let header = header.trim_ascii();
    let scheme = header.get(..6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || header.get(6) != Some(&b' ') {
        return None;
    }
    Some(header[7..].trim_ascii())
}

impl AccessPolicy {
    pub fn new(token: Option<AdminToken>, protect_reads: bool, listen: SocketAddr) -> AccessPolicy {
        AccessPolicy { token, protect_reads, listen }
    }

    /// Without a token, are writes refused here (a listener others can reach)?
    pub fn refuses_tokenless_writes(&self) -> bool {
        self.token.is_none() && !self.listen.ip().is_loopback()
    }

    /// May a request with this method, path and `Authorization` header go on?
    pub fn check(&self, method: &str, path: &str, authorization: Option<&[u8]>) -> Result<(), Denied> {
        let write = !matches!(method, "GET" | "HEAD");
        let needs_token = write || (self.protect_reads && path != HEALTH_PATH);
        if !needs_token {
            return Ok(());
        }
        let Some(token) = &self.token else {
            if self.refuses_tokenless_writes() {
                return Err(Denied::Forbidden(format!(
                    "admin writes are refused: this admin API listens on {}, which is not a loopback address, and \
                     no admin token is set ([admin] token_file or --admin-token-file)",
                    self.listen
                )));
            }
            return Ok(());
        };
        let what = if write { "admin writes" } else { "admin reads (protect_reads)" };
        match authorization.and_then(bearer) {
            None => Err(Denied::Unauthorized(format!(
                "{what} need `Authorization: Bearer <token>` with the admin token (leasehold: --admin-token-file)"
            ))),
            Some(presented) if token.matches(presented) => Ok(()),
            Some(_) => Err(Denied::Forbidden("the bearer token is not this node's admin token".to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &[u8] = b"s3cret-admin-token-0123456789";

    fn policy(protect_reads: bool, listen: &str) -> AccessPolicy {
        AccessPolicy::new(Some(AdminToken::parse(TOKEN).unwrap()), protect_reads, listen.parse().unwrap())
    }

    fn header(token: &[u8]) -> Vec<u8> {
        [b"Bearer ".as_slice(), token].concat()
    }

    #[test]
    fn the_token_matches_only_itself() {
        let token = AdminToken::parse(b"  s3cret-admin-token-0123456789\n").expect("whitespace around is dropped");
        assert!(token.matches(TOKEN));
        assert!(!token.matches(b"s3cret-admin-token-012345678"), "a prefix");
        assert!(!token.matches(b"s3cret-admin-token-01234567890"), "a longer one");
        assert!(!token.matches(b"S3cret-admin-token-0123456789"), "another case");
        assert!(!token.matches(b""));
        let mut flipped = TOKEN.to_vec();
        flipped[TOKEN.len() - 1] ^= 1;
        assert!(!token.matches(&flipped), "one bit");
    }

    #[test]
    fn bad_tokens_are_refused_with_the_reason() {
        assert!(AdminToken::parse(b"short").unwrap_err().contains("at least 16"));
        assert!(AdminToken::parse(b"has a space in the middle").unwrap_err().contains("not visible ASCII"));
        assert!(AdminToken::parse(&vec![b'a'; MAX_ADMIN_TOKEN_BYTES + 1]).unwrap_err().contains("at most"));
        assert!(AdminToken::parse(&vec![b'a'; MAX_ADMIN_TOKEN_BYTES]).is_ok());
        assert!(AdminToken::read(Path::new("/nonexistent/token")).unwrap_err().contains("cannot read"));
    }

    #[test]
    fn writes_need_the_bearer_token_401_without_403_wrong() {
        let policy = policy(false, "0.0.0.0:6767");
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            assert!(
                matches!(policy.check(method, "/v1/cluster/nodes", None), Err(Denied::Unauthorized(_))),
                "{method}"
            );
            assert!(matches!(
                policy.check(method, "/v1/reservations/x", Some(b"Basic dXNlcjpwYXNz")),
                Err(Denied::Unauthorized(_))
            ));
            assert!(matches!(
                policy.check(method, "/x", Some(&header(b"wrong-token-wrong-token"))),
                Err(Denied::Forbidden(_))
            ));
            assert_eq!(policy.check(method, "/x", Some(&header(TOKEN))), Ok(()));
        }
        assert_eq!(policy.check("POST", "/x", Some(b"bearer s3cret-admin-token-0123456789  ")), Ok(()), "scheme case");
        assert!(matches!(policy.check("POST", "/x", Some(b"Bearer")), Err(Denied::Unauthorized(_))));
        assert!(matches!(policy.check("POST", "/x", Some(b"Bearers3cret")), Err(Denied::Unauthorized(_))));
    }

    #[test]
    fn reads_are_open_unless_protected_and_health_always_is() {
        let open = policy(false, "0.0.0.0:6767");
        assert_eq!(open.check("GET", "/v1/leases", None), Ok(()));
        assert_eq!(open.check("HEAD", "/metrics", None), Ok(()));
        let protected = policy(true, "0.0.0.0:6767");
        assert!(matches!(protected.check("GET", "/v1/leases", None), Err(Denied::Unauthorized(_))));
        assert!(matches!(
            protected.check("GET", "/v1/leases", Some(&header(b"0123456789abcdefgh"))),
            Err(Denied::Forbidden(_))
        ));
        assert_eq!(protected.check("GET", "/v1/leases", Some(&header(TOKEN))), Ok(()));
        assert_eq!(protected.check("GET", "/healthz", None), Ok(()));
    }

    #[test]
    fn without_a_token_writes_are_for_loopback_listeners_only() {
        let loopback = AccessPolicy::new(None, false, "127.0.0.1:6767".parse().unwrap());
        assert!(!loopback.refuses_tokenless_writes());
        assert_eq!(loopback.check("DELETE", "/v1/cluster/nodes/2", None), Ok(()));
        let v6 = AccessPolicy::new(None, false, "[::1]:6767".parse().unwrap());
        assert_eq!(v6.check("PUT", "/v1/reservations/x", None), Ok(()));
        let exposed = AccessPolicy::new(None, false, "0.0.0.0:6767".parse().unwrap());
        assert!(exposed.refuses_tokenless_writes());
        match exposed.check("DELETE", "/v1/cluster/nodes/2", None) {
            Err(Denied::Forbidden(why)) => assert!(why.contains("not a loopback address"), "{why}"),
            other => panic!("expected 403, got {other:?}"),
        }
        assert_eq!(exposed.check("GET", "/v1/cluster", None), Ok(()), "reads stay open");
    }
}
