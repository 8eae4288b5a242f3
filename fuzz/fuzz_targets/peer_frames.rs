//! Fuzz target: the peer protocol's bytes (`leasehold_cluster::transport::wire`) as an untrusted
//! peer sends them. A hello decodes only with the magic and encodes back to its bytes; a proof
//! verifies only if it is the one the secret makes; and a stream of frames, sealed by a sender then
//! tampered with (bits flipped, bytes cut or inserted, frames replayed, garbage appended), is read
//! the way an inbound link reads it: header, length check, MAC and sequence, then the joiner. Every
//! frame that opens must be the sender's frame at that position, every message that comes out one
//! the sender sent, and each goes through the raft message decoder as the link's `deliver` does.
#![no_main]

use arbitrary::Arbitrary;
use leasehold_cluster::transport::wire::{
    connection_secret, FrameOpener, FrameSealer, Handshake, Hello, MessageJoiner, WireError, FRAME_HEADER_BYTES,
    HELLO_BYTES, HELLO_MAGIC, MAC_BYTES, MAX_FRAME_BYTES, MORE_FOLLOWS, NONCE_BYTES, TLS_EXPORTER_BYTES,
};
use libfuzzer_sys::fuzz_target;
use protobuf::Message as _;
use raft::eraftpb::Message as RaftMessage;

#[derive(Arbitrary, Debug)]
struct Input {
    /// The client's hello as it arrives.
    client_hello: [u8; HELLO_BYTES],
    server_hello: (u64, u64, [u8; NONCE_BYTES]),
    secret: Vec<u8>,
    /// The session's TLS exporter value, when the link runs over TLS.
    exporter: Option<[u8; TLS_EXPORTER_BYTES]>,
    /// A proof as an attacker sends it.
    proof: [u8; MAC_BYTES],
    /// The frames the sender seals: payload, and whether more frames of its message follow.
    frames: Vec<(Vec<u8>, bool)>,
    tampering: Vec<Tamper>,
    /// Bytes after the sealed frames (all of the stream when there are none).
    garbage: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
enum Tamper {
    Flip {
        at: u16,
        bit: u8,
    },
    Cut {
        at: u16,
        len: u8,
    },
    Insert {
        at: u16,
        bytes: Vec<u8>,
    },
    /// Append a copy of the sealed frame of this number.
    Replay {
        frame: u8,
    },
}

fuzz_target!(|input: Input| {
    let client = match Hello::decode(&input.client_hello) {
        Ok(hello) => {
            assert_eq!(hello.encode(), input.client_hello, "a hello encodes back to its bytes");
            hello
        }
        Err(error) => {
            assert_eq!(error, WireError::BadMagic);
            assert_ne!(input.client_hello[..HELLO_MAGIC.len()], HELLO_MAGIC);
            // Go on with the rest of the bytes behind the magic, so every input reaches the frames.
            let mut fixed = input.client_hello;
            fixed[..HELLO_MAGIC.len()].copy_from_slice(&HELLO_MAGIC);
            Hello::decode(&fixed).expect("only the magic is checked")
        }
    };
    let (from, to, nonce) = input.server_hello;
    let server = Hello { from, to, nonce };
    assert_eq!(Hello::decode(&server.encode()), Ok(server));

    let Some(secret) = connection_secret(Some(&input.secret), input.exporter.as_ref()) else {
        unreachable!("a shared secret was given");
    };
    let handshake = Handshake { client, server };
    let client_proof = handshake.client_proof(&secret);
    let server_proof = handshake.server_proof(&secret);
    assert_ne!(client_proof, server_proof, "a proof cannot be reflected");
    assert_eq!(handshake.verify_client_proof(&secret, &client_proof), Ok(()));
    assert_eq!(handshake.verify_server_proof(&secret, &server_proof), Ok(()));
    let forged = handshake.verify_client_proof(&secret, &input.proof);
    assert_eq!(forged.is_ok(), input.proof == client_proof, "only the secret's proof verifies");
    assert_eq!(handshake.verify_server_proof(&secret, &input.proof[..MAC_BYTES - 1]), Err(WireError::BadProof));

    let key = handshake.session_key(&secret);
    let mut sealer = FrameSealer::new(&key);
    let mut stream = Vec::new();
    let mut sealed_at = Vec::new();
    for (payload, more) in &input.frames {
        let start = stream.len();
        sealer.seal_frame(payload, *more, &mut stream);
        sealed_at.push(start..stream.len());
    }
    let sealed = stream.clone();
    let untampered = input.tampering.is_empty() && input.garbage.is_empty();
    for tamper in &input.tampering {
        let at = |at: u16| usize::from(at) % (stream.len() + 1);
        match tamper {
            Tamper::Flip { at: position, bit } => {
                if !stream.is_empty() {
                    let position = usize::from(*position) % stream.len();
                    stream[position] ^= 1 << (bit % 8);
                }
            }
            Tamper::Cut { at: position, len } => {
                let start = at(*position);
                let end = (start + usize::from(*len)).min(stream.len());
                stream.drain(start..end);
            }
            Tamper::Insert { at: position, bytes } => {
                let start = at(*position);
                stream.splice(start..start, bytes.iter().copied());
            }
            Tamper::Replay { frame } => {
                if let Some(range) = sealed_at.get(usize::from(*frame)) {
                    stream.extend_from_slice(&sealed[range.clone()]);
                }
            }
        }
    }
    stream.extend_from_slice(&input.garbage);

    let opened = read_stream(&key, &stream, &input.frames);
    if untampered {
        assert_eq!(opened, input.frames.len(), "every untampered frame opens");
    }
});

/// Reads `stream` as an inbound link does, until the stream ends or a check closes the connection;
/// returns how many frames opened. `sent` are the frames the sender sealed, in order.
fn read_stream(key: &leasehold_cluster::transport::wire::SessionKey, stream: &[u8], sent: &[(Vec<u8>, bool)]) -> usize {
    let messages = sent_messages(sent);
    let mut opener = FrameOpener::new(key);
    let mut joiner = MessageJoiner::default();
    let mut rest = stream;
    let mut opened = 0;
    let mut delivered = 0;
    while let Some((head, after)) = rest.split_first_chunk::<FRAME_HEADER_BYTES>() {
        let header = match FrameOpener::header(head) {
            Ok(header) => header,
            Err(error) => {
                let field = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
                assert!((field & !MORE_FOLLOWS) as usize > MAX_FRAME_BYTES, "{error} for a length in bounds");
                break;
            }
        };
        assert!(header.payload_len <= MAX_FRAME_BYTES);
        // A stream that ends inside a frame: the link waits for the rest, then sees the close.
        let Some((body, after)) = after.split_at_checked(header.body_len()) else { break };
        let payload = match opener.open(header, body) {
            Ok(payload) => payload,
            Err(error) => {
                assert!(error.is_auth_failure(), "{error}: opening fails only on the MAC or the sequence");
                break;
            }
        };
        // Authentic: the sender's frame at this position, its flag included.
        let Some((sent_payload, sent_more)) = sent.get(opened) else {
            panic!("frame {opened} opened, but only {} were sealed", sent.len());
        };
        assert_eq!(header.sequence, opened as u64);
        assert_eq!((payload, header.more), (sent_payload.as_slice(), *sent_more), "frame {opened} changed");
        opened += 1;
        match joiner.push(payload.to_vec(), header.more) {
            Ok(Some(message)) => {
                assert_eq!(Some(&message), messages.get(delivered), "message {delivered} is not what was sent");
                delivered += 1;
                // What the link's `deliver` does next. A refusal closes the link; reading on here
                // checks the frames after it too.
                let _ = RaftMessage::parse_from_bytes(&message);
            }
            Ok(None) => {}
            Err(error) => panic!("{error} for messages of a few kilobytes"),
        }
        rest = after;
    }
    opened
}

/// The messages `sent` frames make, joined as the sender meant them; a trailing continued frame
/// makes no message.
fn sent_messages(sent: &[(Vec<u8>, bool)]) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut partial = Vec::new();
    for (payload, more) in sent {
        partial.extend_from_slice(payload);
        if !more {
            messages.push(std::mem::take(&mut partial));
        }
    }
    messages
}
