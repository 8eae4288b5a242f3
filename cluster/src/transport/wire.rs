//! The peer protocol's bytes, without I/O: the handshake messages, the proofs of the shared secret,
//! the per-connection key, and sealing and opening of frames. Nonces come in as arguments, so every
//! function here is deterministic and testable without sockets.
//!
//! A connection carries frames one way, from the node that dialled (the client) to the node that
//! accepted (the server). The handshake, in order:
//!
//! 1. client → server: `Hello { from: client id, to: server id, nonce: client nonce }`
//! 2. server → client: `Hello { from: server id, to: client id, nonce: server nonce }`
//! 3. client → server: client proof = HMAC(secret, CONTEXT || CLIENT_PROOF || transcript)
//! 4. server → client: server proof = HMAC(secret, CONTEXT || SERVER_PROOF || transcript)
//!
//! where transcript = client nonce || server nonce || client id || server id. Each side proves the
//! secret over the other side's fresh nonce, so recorded proofs are worthless on a new connection.
//! The client proves first, so a server never computes anything with the secret for a stranger.
//! Both sides then derive key = HMAC(secret, CONTEXT || SESSION_KEY || transcript), and every frame
//! is `u32 payload length || u64 sequence || payload || HMAC(key, sequence || payload)`, with the
//! sequence starting at 0 and rising by exactly one per frame. The length is checked against
//! [`MAX_FRAME_BYTES`] before anything of that size is allocated.
//!
//! A message longer than one frame (a Raft snapshot of a large table) goes as several: every frame
//! but the last has the top bit of its length field set ([`MORE_FOLLOWS`]) and its MAC taken over
//! `sequence || payload || 0x01`, so the flag can be neither set nor cleared on the way; the
//! receiver joins the payloads, up to [`MAX_MESSAGE_BYTES`]. A message that fits one frame is
//! framed as before this existed.
//!
//! This authenticates peers and protects frames against change, replay and reordering; it does not
//! encrypt them. With mutual TLS configured (`tls`), all of the above runs inside a TLS 1.3 session,
//! which encrypts it, and the secret the handshake proves comes from the session
//! ([`connection_secret`]).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// First bytes of every hello; the trailing digits are the protocol version.
pub const HELLO_MAGIC: [u8; 8] = *b"LHPEER01";
/// Bytes in a handshake nonce.
pub const NONCE_BYTES: usize = 32;
/// Bytes in a proof, a session key and a frame MAC (HMAC-SHA256 output).
pub const MAC_BYTES: usize = 32;
/// Bytes in an encoded [`Hello`]: magic, sender id, receiver id, nonce.
pub const HELLO_BYTES: usize = HELLO_MAGIC.len() + 8 + 8 + NONCE_BYTES;
/// Bytes in a frame header: payload length (u32) and sequence number (u64), both big-endian.
pub const FRAME_HEADER_BYTES: usize = 4 + 8;
/// The largest payload one frame carries; longer messages are split over several frames. A longer
/// length field closes the connection before any of it is read.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;
/// The largest message several frames may join into (a snapshot of millions of leases fits); more
/// closes the connection.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024 * 1024;
/// Set in a frame's length field: another frame of the same message follows.
pub const MORE_FOLLOWS: u32 = 1 << 31;
/// The shortest shared secret a transport accepts.
pub const MIN_SECRET_BYTES: usize = 16;

/// Domain separation: every HMAC input starts with this, then one purpose byte.
const CONTEXT: &[u8] = b"leasehold-v1";
const PURPOSE_SESSION_KEY: u8 = 1;
const PURPOSE_CLIENT_PROOF: u8 = 2;
const PURPOSE_SERVER_PROOF: u8 = 3;
const PURPOSE_TLS_BINDING: u8 = 4;
/// The TLS exporter label of the peer protocol (RFC 5705 / RFC 8446 §7.5).
pub const TLS_EXPORTER_LABEL: &[u8] = b"EXPERIMENTAL-leasehold-peer-v1";
/// Bytes taken from the TLS exporter per connection.
pub const TLS_EXPORTER_BYTES: usize = 32;

/// The secret one connection's handshake proves, given the cluster's shared secret (if any) and the
/// connection's TLS exporter value (if it runs over TLS):
/// - shared secret only: the secret itself (plain TCP, as before TLS existed);
/// - TLS only: the exporter value. Both ends of this TLS session, and nobody else, know it; the
///   certificates already proved who they are, so the proofs only confirm the session;
/// - both: HMAC(secret, CONTEXT || TLS_BINDING || exporter), so the proofs show the secret *and*
///   are bound to this TLS session (channel binding: they cannot be relayed into another one).
///
/// `None` when neither is given (a transport is never configured so).
pub fn connection_secret(shared: Option<&[u8]>, exporter: Option<&[u8; TLS_EXPORTER_BYTES]>) -> Option<Vec<u8>> {
    match (shared, exporter) {
        (Some(secret), None) => Some(secret.to_vec()),
        (None, Some(exporter)) => Some(exporter.to_vec()),
        (Some(secret), Some(exporter)) => {
            let mut mac = hmac_with(secret);
            mac.update(CONTEXT);
            mac.update(&[PURPOSE_TLS_BINDING]);
            mac.update(exporter);
            Some(mac.finalize().into_bytes().to_vec())
        }
        (None, None) => None,
    }
}

/// Why bytes from a peer were refused. Each one closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("handshake does not start with the protocol magic")]
    BadMagic,
    #[error("handshake proof does not match the shared secret")]
    BadProof,
    #[error("frame of {len} bytes is over the limit of {MAX_FRAME_BYTES}")]
    FrameTooLarge { len: u64 },
    #[error("message of more than {MAX_MESSAGE_BYTES} bytes")]
    MessageTooLarge,
    #[error("frame MAC does not match")]
    BadMac,
    #[error("frame sequence {got}, expected {expected}")]
    BadSequence { expected: u64, got: u64 },
}

impl WireError {
    /// True when the bytes failed a check that only the holder of the secret can pass (as opposed
    /// to being malformed).
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, WireError::BadProof | WireError::BadMac | WireError::BadSequence { .. })
    }
}

/// One side's opening message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// The sender's node id (unproven until the proof checks out).
    pub from: u64,
    /// The node id the sender means to talk to.
    pub to: u64,
    /// Fresh random bytes for this connection.
    pub nonce: [u8; NONCE_BYTES],
}

impl Hello {
    pub fn encode(&self) -> [u8; HELLO_BYTES] {
        let mut out = [0u8; HELLO_BYTES];
        let (magic, rest) = out.split_at_mut(HELLO_MAGIC.len());
        magic.copy_from_slice(&HELLO_MAGIC);
        let (from, rest) = rest.split_at_mut(8);
        from.copy_from_slice(&self.from.to_be_bytes());
        let (to, nonce) = rest.split_at_mut(8);
        to.copy_from_slice(&self.to.to_be_bytes());
        nonce.copy_from_slice(&self.nonce);
        out
    }

    pub fn decode(bytes: &[u8; HELLO_BYTES]) -> Result<Hello, WireError> {
        let (magic, rest) = bytes.split_at(HELLO_MAGIC.len());
        if magic != HELLO_MAGIC {
            return Err(WireError::BadMagic);
        }
        let (from, rest) = rest.split_at(8);
        let (to, nonce_bytes) = rest.split_at(8);
        let mut nonce = [0u8; NONCE_BYTES];
        nonce.copy_from_slice(nonce_bytes);
        Ok(Hello { from: u64_be(from), to: u64_be(to), nonce })
    }
}

/// Both hellos of one connection: everything the proofs and the session key are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    pub client: Hello,
    pub server: Hello,
}

impl Handshake {
    /// What the client sends to prove it holds `secret`.
    pub fn client_proof(&self, secret: &[u8]) -> [u8; MAC_BYTES] {
        self.keyed(secret, PURPOSE_CLIENT_PROOF).finalize().into_bytes().into()
    }

    /// What the server sends to prove it holds `secret`.
    pub fn server_proof(&self, secret: &[u8]) -> [u8; MAC_BYTES] {
        self.keyed(secret, PURPOSE_SERVER_PROOF).finalize().into_bytes().into()
    }

    /// Checks the client's proof in constant time.
    pub fn verify_client_proof(&self, secret: &[u8], proof: &[u8]) -> Result<(), WireError> {
        self.keyed(secret, PURPOSE_CLIENT_PROOF).verify_slice(proof).map_err(|_| WireError::BadProof)
    }

    /// Checks the server's proof in constant time.
    pub fn verify_server_proof(&self, secret: &[u8], proof: &[u8]) -> Result<(), WireError> {
        self.keyed(secret, PURPOSE_SERVER_PROOF).verify_slice(proof).map_err(|_| WireError::BadProof)
    }

    /// The key that MACs this connection's frames. Never sent.
    pub fn session_key(&self, secret: &[u8]) -> SessionKey {
        SessionKey(self.keyed(secret, PURPOSE_SESSION_KEY).finalize().into_bytes().into())
    }

    fn keyed(&self, secret: &[u8], purpose: u8) -> HmacSha256 {
        let mut mac = hmac_with(secret);
        mac.update(CONTEXT);
        mac.update(&[purpose]);
        mac.update(&self.client.nonce);
        mac.update(&self.server.nonce);
        mac.update(&self.client.from.to_be_bytes());
        mac.update(&self.server.from.to_be_bytes());
        mac
    }
}

/// A per-connection frame key (see [`Handshake::session_key`]).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey([u8; MAC_BYTES]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

/// The sending half of a connection's frame stream.
pub struct FrameSealer {
    mac: HmacSha256,
    next_sequence: u64,
}

impl FrameSealer {
    pub fn new(key: &SessionKey) -> FrameSealer {
        FrameSealer { mac: hmac_with(&key.0), next_sequence: 0 }
    }

    /// Appends one frame carrying `payload` to `out`, the last (or only) frame of its message.
    ///
    /// Panics if `payload` is over [`MAX_FRAME_BYTES`]; callers check first (the receiver would
    /// close the connection).
    pub fn seal(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        self.seal_frame(payload, false, out);
    }

    /// Appends one frame of a message: `more` when another frame of it follows.
    pub fn seal_frame(&mut self, payload: &[u8], more: bool, out: &mut Vec<u8>) {
        assert!(payload.len() <= MAX_FRAME_BYTES, "frame payload of {} bytes over the limit", payload.len());
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let mut mac = self.mac.clone();
        mac.update(&sequence.to_be_bytes());
        mac.update(payload);
        if more {
            mac.update(&[1]);
        }
        out.reserve(FRAME_HEADER_BYTES + payload.len() + MAC_BYTES);
        // The assert above keeps the length within 31 bits.
        let len = payload.len() as u32 | if more { MORE_FOLLOWS } else { 0 };
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&sequence.to_be_bytes());
        out.extend_from_slice(payload);
        out.extend_from_slice(&mac.finalize().into_bytes());
    }
}

/// A frame header whose length has been checked against [`MAX_FRAME_BYTES`]; the sequence is
/// checked only with the MAC, in [`FrameOpener::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub payload_len: usize,
    pub sequence: u64,
    /// Another frame of the same message follows.
    pub more: bool,
}

impl FrameHeader {
    /// Bytes that follow the header: the payload and the MAC.
    pub fn body_len(&self) -> usize {
        self.payload_len + MAC_BYTES
    }
}

/// The receiving half of a connection's frame stream.
pub struct FrameOpener {
    mac: HmacSha256,
    next_sequence: u64,
}

impl FrameOpener {
    pub fn new(key: &SessionKey) -> FrameOpener {
        FrameOpener { mac: hmac_with(&key.0), next_sequence: 0 }
    }

    /// Reads a header; refuses a length over the limit before the body is read or allocated.
    pub fn header(bytes: &[u8; FRAME_HEADER_BYTES]) -> Result<FrameHeader, WireError> {
        let (len, sequence) = bytes.split_at(4);
        let field = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        let len = field & !MORE_FOLLOWS;
        if len as usize > MAX_FRAME_BYTES {
            return Err(WireError::FrameTooLarge { len: len.into() });
        }
        Ok(FrameHeader { payload_len: len as usize, sequence: u64_be(sequence), more: field & MORE_FOLLOWS != 0 })
    }

    /// Checks the body (`payload || MAC`) that followed `header` and returns the payload. The MAC is
    /// compared in constant time; then the sequence must be the next one.
    pub fn open<'a>(&mut self, header: FrameHeader, body: &'a [u8]) -> Result<&'a [u8], WireError> {
        assert_eq!(body.len(), header.body_len(), "caller reads exactly the body the header announced");
        let (payload, tag) = body.split_at(header.payload_len);
        let mut mac = self.mac.clone();
        mac.update(&header.sequence.to_be_bytes());
        mac.update(payload);
        if header.more {
            mac.update(&[1]);
        }
        mac.verify_slice(tag).map_err(|_| WireError::BadMac)?;
        if header.sequence != self.next_sequence {
            return Err(WireError::BadSequence { expected: self.next_sequence, got: header.sequence });
        }
        self.next_sequence += 1;
        Ok(payload)
    }
}

/// Joins the payloads of one connection's opened frames into messages (see [`MORE_FOLLOWS`]): a
/// message in one frame passes through without a copy; a longer one is gathered up to
/// [`MAX_MESSAGE_BYTES`].
#[derive(Debug, Default)]
pub struct MessageJoiner {
    partial: Vec<u8>,
}

impl MessageJoiner {
    /// Takes the payload of the next frame, and whether more frames of its message follow; returns
    /// the whole message once its last frame is in.
    pub fn push(&mut self, payload: Vec<u8>, more: bool) -> Result<Option<Vec<u8>>, WireError> {
        if !more && self.partial.is_empty() {
            return Ok(Some(payload));
        }
        if self.partial.len() + payload.len() > MAX_MESSAGE_BYTES {
            return Err(WireError::MessageTooLarge);
        }
        self.partial.extend_from_slice(&payload);
        if more {
            return Ok(None);
        }
        Ok(Some(std::mem::take(&mut self.partial)))
    }
}

fn hmac_with(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

fn u64_be(bytes: &[u8]) -> u64 {
    let mut array = [0u8; 8];
    array.copy_from_slice(bytes);
    u64::from_be_bytes(array)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"sixteen byte key and then some";

    fn handshake() -> Handshake {
        Handshake {
            client: Hello { from: 1, to: 2, nonce: [0x11; NONCE_BYTES] },
            server: Hello { from: 2, to: 1, nonce: [0x22; NONCE_BYTES] },
        }
    }

    #[test]
    fn hello_round_trips_and_checks_magic() {
        let hello = Hello { from: 7, to: u64::MAX, nonce: [0xa5; NONCE_BYTES] };
        let bytes = hello.encode();
        assert_eq!(&bytes[..8], b"LHPEER01");
        assert_eq!(Hello::decode(&bytes), Ok(hello));
        let mut bad = bytes;
        bad[7] ^= 1;
        assert_eq!(Hello::decode(&bad), Err(WireError::BadMagic));
    }

    #[test]
    fn proofs_need_the_secret_and_the_nonces() {
        let hs = handshake();
        let client = hs.client_proof(SECRET);
        let server = hs.server_proof(SECRET);
        assert_ne!(client, server, "the roles are separated: a proof cannot be reflected");
        assert_eq!(hs.verify_client_proof(SECRET, &client), Ok(()));
        assert_eq!(hs.verify_server_proof(SECRET, &server), Ok(()));
        assert_eq!(hs.verify_client_proof(SECRET, &server), Err(WireError::BadProof));
        assert_eq!(hs.verify_client_proof(b"another sixteen byte key", &client), Err(WireError::BadProof));
        let mut fresh = hs;
        fresh.server.nonce[31] ^= 1;
        assert_eq!(fresh.verify_client_proof(SECRET, &client), Err(WireError::BadProof), "a replayed proof fails");
        assert_ne!(fresh.session_key(SECRET), hs.session_key(SECRET));
    }

    #[test]
    fn frames_open_in_order_and_refuse_changes() {
        let key = handshake().session_key(SECRET);
        let mut sealer = FrameSealer::new(&key);
        let mut wire = Vec::new();
        sealer.seal(b"first", &mut wire);
        sealer.seal(b"", &mut wire);
        assert_eq!(wire.len(), 2 * (FRAME_HEADER_BYTES + MAC_BYTES) + 5);

        let mut opener = FrameOpener::new(&key);
        let mut rest = &wire[..];
        for expected in [&b"first"[..], &b""[..]] {
            let header = FrameOpener::header(rest[..FRAME_HEADER_BYTES].try_into().unwrap()).unwrap();
            let body = &rest[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + header.body_len()];
            assert_eq!(opener.open(header, body), Ok(expected));
            rest = &rest[FRAME_HEADER_BYTES + header.body_len()..];
        }
        assert!(rest.is_empty());

        // Every single-bit change after the length field is caught by the MAC.
        let mut one = Vec::new();
        FrameSealer::new(&key).seal(b"payload", &mut one);
        for bit in 4 * 8..one.len() * 8 {
            let mut flipped = one.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let header = FrameOpener::header(flipped[..FRAME_HEADER_BYTES].try_into().unwrap()).unwrap();
            let result = FrameOpener::new(&key).open(header, &flipped[FRAME_HEADER_BYTES..]);
            assert_eq!(result, Err(WireError::BadMac), "bit {bit} flipped");
        }
    }

    #[test]
    fn replayed_or_skipped_sequence_is_refused() {
        let key = handshake().session_key(SECRET);
        let mut sealer = FrameSealer::new(&key);
        let mut first = Vec::new();
        sealer.seal(b"a", &mut first);
        let mut opener = FrameOpener::new(&key);
        let header = FrameOpener::header(first[..FRAME_HEADER_BYTES].try_into().unwrap()).unwrap();
        assert!(opener.open(header, &first[FRAME_HEADER_BYTES..]).is_ok());
        assert_eq!(
            opener.open(header, &first[FRAME_HEADER_BYTES..]),
            Err(WireError::BadSequence { expected: 1, got: 0 })
        );
    }

    #[test]
    fn the_connection_secret_binds_the_tls_session_when_both_are_given() {
        let exporter = [0x5a; TLS_EXPORTER_BYTES];
        let other_session = [0x5b; TLS_EXPORTER_BYTES];
        assert_eq!(connection_secret(Some(SECRET), None).as_deref(), Some(SECRET));
        assert_eq!(connection_secret(None, Some(&exporter)).as_deref(), Some(&exporter[..]));
        assert_eq!(connection_secret(None, None), None);
        let bound = connection_secret(Some(SECRET), Some(&exporter)).expect("a secret");
        assert_ne!(bound, SECRET, "not the bare shared secret");
        assert_ne!(bound, exporter.to_vec(), "not the bare exporter value");
        assert_ne!(connection_secret(Some(SECRET), Some(&other_session)), Some(bound.clone()), "per session");
        assert_ne!(connection_secret(Some(b"another sixteen byte key"), Some(&exporter)), Some(bound), "per secret");
    }

    #[test]
    fn oversized_length_is_refused_from_the_header_alone() {
        let mut header = [0u8; FRAME_HEADER_BYTES];
        header[..4].copy_from_slice(&(MAX_FRAME_BYTES as u32 + 1).to_be_bytes());
        assert_eq!(FrameOpener::header(&header), Err(WireError::FrameTooLarge { len: MAX_FRAME_BYTES as u64 + 1 }));
        header[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(FrameOpener::header(&header).is_err());
        header[..4].copy_from_slice(&(MAX_FRAME_BYTES as u32).to_be_bytes());
        assert_eq!(FrameOpener::header(&header).unwrap().payload_len, MAX_FRAME_BYTES);
    }
}

#[cfg(test)]
mod message_tests {
    use super::*;

    fn pair() -> (FrameSealer, FrameOpener) {
        let key = SessionKey([7; MAC_BYTES]);
        (FrameSealer::new(&key), FrameOpener::new(&key))
    }

    /// Walks `bytes` frame by frame as a receiver does: (payload, more) each.
    fn open_all(opener: &mut FrameOpener, mut bytes: &[u8]) -> Result<Vec<(Vec<u8>, bool)>, WireError> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let (head, rest) = bytes.split_at(FRAME_HEADER_BYTES);
            let header = FrameOpener::header(head.try_into().expect("a header"))?;
            let (body, rest) = rest.split_at(header.body_len());
            frames.push((opener.open(header, body)?.to_vec(), header.more));
            bytes = rest;
        }
        Ok(frames)
    }

    #[test]
    fn the_joiner_passes_single_frames_and_joins_continued_ones() {
        let mut joiner = MessageJoiner::default();
        assert_eq!(joiner.push(b"whole".to_vec(), false), Ok(Some(b"whole".to_vec())));
        assert_eq!(joiner.push(b"first ".to_vec(), true), Ok(None));
        assert_eq!(joiner.push(b"".to_vec(), true), Ok(None));
        assert_eq!(joiner.push(b"last".to_vec(), false), Ok(Some(b"first last".to_vec())));
        assert_eq!(joiner.push(b"next".to_vec(), false), Ok(Some(b"next".to_vec())), "nothing left over");
    }

    #[test]
    fn a_continued_frame_is_flagged_and_its_flag_is_authenticated() {
        let (mut sealer, mut opener) = pair();
        let mut out = Vec::new();
        sealer.seal_frame(b"first half", true, &mut out);
        sealer.seal_frame(b"second half", false, &mut out);
        let frames = open_all(&mut opener, &out).expect("both frames open");
        assert_eq!(frames, vec![(b"first half".to_vec(), true), (b"second half".to_vec(), false)]);

        // Clearing the flag of the first frame (to cut the message short) breaks its MAC.
        let (mut sealer, mut opener) = pair();
        let mut out = Vec::new();
        sealer.seal_frame(b"first half", true, &mut out);
        out[0] &= 0x7f;
        assert_eq!(open_all(&mut opener, &out), Err(WireError::BadMac));
        // Setting it on a last frame (to splice another message on) does too.
        let (mut sealer, mut opener) = pair();
        let mut out = Vec::new();
        sealer.seal(b"whole", &mut out);
        out[0] |= 0x80;
        assert_eq!(open_all(&mut opener, &out), Err(WireError::BadMac));
    }
}
