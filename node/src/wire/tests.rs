//! Tests of the wire layer, written as transcripts: the bytes a real client sends, what `parse`
//! makes of them; the `Reply` the engine builds, what a client (dhcproto as the reference decoder)
//! reads back. Each cites the RFC section it checks.

use std::net::Ipv4Addr;

use dhcproto::v4::{self, DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use proptest::prelude::*;

use super::codec::{code, ReplyLayout, MIN_REPLY_BYTES, OPTIONS_OFFSET, REQUIRED};
use super::{emit, emit_request, parse, reply_options, ClientMessageType, DropReason, Reply, ReplyType, Request};

const MAX_FRAME: usize = 1500;
const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const XID: u32 = 0x3903_f326;

// ---------------------------------------------------------------------------------------------
// Building request datagrams byte by byte
// ---------------------------------------------------------------------------------------------

/// The 240 bytes before the options of a BOOTREQUEST from `MAC` (RFC 2131 §2, figure 1).
fn bootrequest_header() -> Vec<u8> {
    let mut b = Vec::with_capacity(548);
    b.extend_from_slice(&[1, 1, 6, 0]); // op BOOTREQUEST, htype Ethernet, hlen 6, hops 0
    b.extend_from_slice(&XID.to_be_bytes());
    b.extend_from_slice(&[0, 0]); // secs
    b.extend_from_slice(&[0, 0]); // flags
    b.extend_from_slice(&[0; 16]); // ciaddr, yiaddr, siaddr, giaddr
    b.extend_from_slice(&MAC);
    b.extend_from_slice(&[0; 10]); // rest of chaddr
    b.extend_from_slice(&[0; 64]); // sname
    b.extend_from_slice(&[0; 128]); // file
    b.extend_from_slice(&[99, 130, 83, 99]); // magic cookie (RFC 2131 §3)
    assert_eq!(b.len(), OPTIONS_OFFSET);
    b
}

/// A BOOTREQUEST with `options` (already TLV-encoded, end option included if wanted).
fn datagram(options: &[&[u8]]) -> Vec<u8> {
    let mut b = bootrequest_header();
    for option in options {
        b.extend_from_slice(option);
    }
    b
}

/// Pads with zeros to `len`, like clients that send a fixed-size datagram.
fn padded(mut b: Vec<u8>, len: usize) -> Vec<u8> {
    b.resize(len.max(b.len()), 0);
    b
}

fn tlv(option_code: u8, value: &[u8]) -> Vec<u8> {
    let mut b = vec![option_code, u8::try_from(value.len()).expect("test option value fits")];
    b.extend_from_slice(value);
    b
}

const DISCOVER: &[u8] = &[53, 1, 1];
const END: &[u8] = &[255];

/// What `parse` makes of a DISCOVER from `MAC` with no other options.
fn bare_discover() -> Request {
    Request::new(ClientMessageType::Discover, XID, MAC)
}

// ---------------------------------------------------------------------------------------------
// Requests from real clients
// ---------------------------------------------------------------------------------------------

/// ISC dhclient 4.4 DISCOVER after a reboot: it asks for its old address (option 50, RFC 2131
/// §3.1 step 1 "MAY include"), sends the hostname and a long parameter request list, pads to 300.
#[test]
fn dhclient_discover() {
    let prl = [1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42];
    let bytes =
        padded(datagram(&[DISCOVER, &tlv(50, &[10, 199, 0, 77]), &tlv(12, b"debian"), &tlv(55, &prl), END]), 300);
    let request = parse(&bytes, MAX_FRAME).expect("dhclient DISCOVER is valid");
    assert_eq!(
        request,
        Request {
            requested_ip: Some(Ipv4Addr::new(10, 199, 0, 77)),
            hostname: Some("debian".to_owned()),
            parameter_request_list: prl.to_vec(),
            ..bare_discover()
        }
    );
    assert!(!request.is_pxe_client());
    assert!(!request.is_ipxe());
}

/// busybox udhcpc 1.35 DISCOVER: client identifier type 1 + MAC (RFC 2132 §9.14), maximum message
/// size 576 (RFC 2132 §9.10), its own vendor class, the broadcast flag, secs counting up.
#[test]
fn udhcpc_discover() {
    let mut bytes = datagram(&[
        DISCOVER,
        &tlv(61, &[1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
        &tlv(57, &[0x02, 0x40]),
        &tlv(60, b"udhcp 1.35.0"),
        &tlv(55, &[1, 3, 6, 12, 15, 28, 42]),
        END,
    ]);
    bytes[8..10].copy_from_slice(&3u16.to_be_bytes()); // secs
    bytes[10..12].copy_from_slice(&0x8000u16.to_be_bytes()); // flags: BROADCAST
    let request = parse(&padded(bytes, 548), MAX_FRAME).expect("udhcpc DISCOVER is valid");
    assert_eq!(
        request,
        Request {
            secs: 3,
            broadcast: true,
            client_id: Some(vec![1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            max_message_size: Some(576),
            vendor_class: Some(b"udhcp 1.35.0".to_vec()),
            parameter_request_list: vec![1, 3, 6, 12, 15, 28, 42],
            ..bare_discover()
        }
    );
}

const UUID: [u8; 16] = [0x8c, 0x1f, 0x2b, 0x45, 0x7a, 0x11, 0x4e, 0x0c, 0x9d, 0x33, 0x01, 0x6e, 0x55, 0xa2, 0x00, 0x7f];

/// An iPXE ROM (qemu's NIC ROM): PXE vendor class (PXE 2.1 / RFC 4578), architecture 0 = BIOS
/// (RFC 4578 §2.1), network interface UNDI 2.1 (§2.2), machine UUID type 0 + 16 bytes (§2.3),
/// user class `iPXE` (RFC 3004, sent bare) and iPXE's encapsulated option 175.
#[test]
fn ipxe_discover() {
    let mut uuid = vec![0];
    uuid.extend_from_slice(&UUID);
    let ipxe_features = [0x13, 1, 1, 0x11, 1, 1, 0x15, 1, 1, 0x18, 1, 1];
    let prl = [1, 3, 6, 7, 12, 15, 17, 26, 43, 60, 66, 67, 119, 128, 129, 130, 131, 132, 133, 134, 135, 175, 203];
    let bytes = datagram(&[
        DISCOVER,
        &tlv(57, &1472u16.to_be_bytes()),
        &tlv(93, &[0, 0]),
        &tlv(94, &[1, 2, 1]),
        &tlv(97, &uuid),
        &tlv(60, b"PXEClient:Arch:00000:UNDI:002001"),
        &tlv(77, b"iPXE"),
        &tlv(55, &prl),
        &tlv(175, &ipxe_features),
        &tlv(61, &[1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
        END,
    ]);
    let request = parse(&bytes, MAX_FRAME).expect("iPXE DISCOVER is valid");
    assert_eq!(
        request,
        Request {
            max_message_size: Some(1472),
            client_arch: Some(0),
            client_uuid: Some(uuid.clone()),
            vendor_class: Some(b"PXEClient:Arch:00000:UNDI:002001".to_vec()),
            user_class: Some(b"iPXE".to_vec()),
            parameter_request_list: prl.to_vec(),
            has_ipxe_option: true,
            client_id: Some(vec![1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            // Option 94 is not one the engine reads: it is kept as data.
            other_options: vec![(94, vec![1, 2, 1])],
            ..bare_discover()
        }
    );
    assert!(request.is_pxe_client());
    assert!(request.is_ipxe());
}

/// A UEFI x64 PXE ROM lists more than one architecture in option 93; the first one counts
/// (RFC 4578 §2.1: "in order of preference").
#[test]
fn client_architecture_is_the_first_listed() {
    let bytes = datagram(&[DISCOVER, &tlv(93, &[0, 7, 0, 0]), END]);
    assert_eq!(parse(&bytes, MAX_FRAME).map(|r| r.client_arch), Ok(Some(7)));
}

/// RFC 2131 §4.3.2, REQUEST in SELECTING state through a relay (RFC 3046): option 50 and 54 set,
/// giaddr and hops set by the relay, option 82 appended by it and kept byte for byte.
#[test]
fn relayed_selecting_request() {
    let agent_info = [1, 4, 0, 0, 0, 7, 2, 6, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];
    let mut bytes =
        datagram(&[&[53, 1, 3], &tlv(50, &[10, 199, 0, 77]), &tlv(54, &[10, 199, 0, 2]), &tlv(82, &agent_info), END]);
    bytes[3] = 1; // hops
    bytes[24..28].copy_from_slice(&[10, 199, 1, 1]); // giaddr
    assert_eq!(
        parse(&bytes, MAX_FRAME),
        Ok(Request {
            message_type: ClientMessageType::Request,
            hops: 1,
            giaddr: Ipv4Addr::new(10, 199, 1, 1),
            requested_ip: Some(Ipv4Addr::new(10, 199, 0, 77)),
            server_id: Some(Ipv4Addr::new(10, 199, 0, 2)),
            relay_agent_info: Some(agent_info.to_vec()),
            ..bare_discover()
        })
    );
}

/// RFC 2131 §3.4 (INFORM), §3.1 step 4 (DECLINE), §4.4.6 (RELEASE): ciaddr and the message type.
#[test]
fn decline_release_inform_message_types() {
    for (value, expected) in
        [(4, ClientMessageType::Decline), (7, ClientMessageType::Release), (8, ClientMessageType::Inform)]
    {
        let mut bytes = datagram(&[&[53, 1, value], END]);
        bytes[12..16].copy_from_slice(&[10, 199, 0, 77]); // ciaddr
        let request = parse(&bytes, MAX_FRAME).expect("valid");
        assert_eq!((request.message_type, request.ciaddr), (expected, Ipv4Addr::new(10, 199, 0, 77)));
    }
}

// ---------------------------------------------------------------------------------------------
// Option framing: end, pad, unknown options, concatenation, overload
// ---------------------------------------------------------------------------------------------

/// RFC 2132 §3.2 says the options end with option 255, but some clients stop without it.
#[test]
fn missing_end_option_is_accepted() {
    assert_eq!(parse(&datagram(&[DISCOVER]), MAX_FRAME), Ok(bare_discover()));
    assert_eq!(parse(&padded(datagram(&[DISCOVER]), 300), MAX_FRAME), Ok(bare_discover()));
}

/// RFC 2132 §3.1: pad options may appear anywhere; after the end option nothing is read.
#[test]
fn pads_and_bytes_after_end_are_ignored() {
    let bytes = datagram(&[&[0, 0], DISCOVER, &[0], END, &[12, 200, 0xff]]);
    assert_eq!(parse(&bytes, MAX_FRAME), Ok(bare_discover()));
}

/// Options the engine does not read survive as data, in order, including ones dhcproto 0.15
/// would panic on in a debug build (80 with a value, 81 and 94 too short).
#[test]
fn unknown_options_survive_into_other_options() {
    let bytes = datagram(&[
        &tlv(224, b"site-local"),
        DISCOVER,
        &tlv(43, &[1, 4, 0, 0, 0, 1]),
        &tlv(80, &[0]),
        &tlv(81, &[]),
        &tlv(94, &[1, 2]),
        &tlv(250, &[]),
        END,
    ]);
    let request = parse(&bytes, MAX_FRAME).expect("valid");
    assert_eq!(
        request.other_options,
        vec![
            (224, b"site-local".to_vec()),
            (43, vec![1, 4, 0, 0, 0, 1]),
            (80, vec![0]),
            (81, vec![]),
            (94, vec![1, 2]),
            (250, vec![]),
        ]
    );
}

/// RFC 3396 §7: a receiver concatenates all instances of an option, wherever they are.
#[test]
fn split_options_are_concatenated() {
    let bytes = datagram(&[
        &tlv(60, b"PXEClient:"),
        DISCOVER,
        &tlv(60, b"Arch:00007"),
        &tlv(82, &[1, 2, 0, 1]),
        &tlv(82, &[2, 1, 9]),
        END,
    ]);
    let request = parse(&bytes, MAX_FRAME).expect("valid");
    assert_eq!(request.vendor_class.as_deref(), Some(&b"PXEClient:Arch:00007"[..]));
    assert_eq!(request.relay_agent_info.as_deref(), Some(&[1, 2, 0, 1, 2, 1, 9][..]));
}

/// RFC 2131 §4.1 / RFC 2132 §9.3: with option 52 the `file` (1), `sname` (2) or both (3) fields
/// carry more options, read after the options field, `file` first.
#[test]
fn option_overload_reads_file_then_sname() {
    let mut bytes = datagram(&[&tlv(52, &[3]), &tlv(60, b"from-options;"), END]);
    let file_options = [53, 1, 1, 60, 10, b'f', b'r', b'o', b'm', b'-', b'f', b'i', b'l', b'e', b';', 255];
    bytes[108..108 + file_options.len()].copy_from_slice(&file_options);
    let sname_options = [60, 10, b'f', b'r', b'o', b'm', b'-', b's', b'n', b'a', b'm', b'e', 12, 3, b'p', b'c', b'1'];
    bytes[44..44 + sname_options.len()].copy_from_slice(&sname_options);
    let request = parse(&bytes, MAX_FRAME).expect("overloaded DISCOVER is valid");
    assert_eq!(request.message_type, ClientMessageType::Discover);
    assert_eq!(request.vendor_class.as_deref(), Some(&b"from-options;from-file;from-sname"[..]));
    assert_eq!(request.hostname.as_deref(), Some("pc1"));
    assert_eq!(request.other_options, vec![]);
}

/// Without option 52 the `file` and `sname` fields are names, not options.
#[test]
fn file_field_is_not_read_without_overload() {
    let mut bytes = datagram(&[END]);
    bytes[108..111].copy_from_slice(&[53, 1, 1]);
    assert_eq!(parse(&bytes, MAX_FRAME).map(|r| r.message_type), Ok(ClientMessageType::Bootp));
}

/// Option 12 that is not UTF-8 is left out; the options after it are still read (dhcproto 0.15
/// stops decoding there and would lose option 53).
#[test]
fn hostname_that_is_not_utf8_is_none() {
    let bytes = datagram(&[&tlv(12, &[0xff, 0xfe, b'x']), DISCOVER, END]);
    assert_eq!(parse(&bytes, MAX_FRAME), Ok(bare_discover()));
}

/// Some clients send option 12 as a C string: the trailing NUL is not part of the name.
#[test]
fn hostname_trailing_nul_is_dropped() {
    let bytes = datagram(&[DISCOVER, &tlv(12, b"pc1\0"), END]);
    assert_eq!(parse(&bytes, MAX_FRAME).map(|r| r.hostname), Ok(Some("pc1".to_owned())));
}

// ---------------------------------------------------------------------------------------------
// Every drop reason the parser produces
// ---------------------------------------------------------------------------------------------

#[test]
fn drop_truncated_below_fixed_header_and_cookie() {
    let bytes = bootrequest_header();
    assert_eq!(parse(&[], MAX_FRAME), Err(DropReason::Truncated));
    assert_eq!(parse(&bytes[..OPTIONS_OFFSET - 1], MAX_FRAME), Err(DropReason::Truncated));
    // Exactly the header and cookie is long enough; without option 53 it is a BOOTP request.
    assert_eq!(parse(&bytes, MAX_FRAME).map(|r| r.message_type), Ok(ClientMessageType::Bootp));
}

#[test]
fn drop_oversized_above_max_frame() {
    let bytes = padded(datagram(&[DISCOVER, END]), 600);
    assert_eq!(parse(&bytes, 599), Err(DropReason::Oversized));
    assert!(parse(&bytes, 600).is_ok());
}

/// RFC 2131 §2: a server only reads `op` = 1 BOOTREQUEST (a BOOTREPLY from another server on the
/// segment, or garbage, is dropped).
#[test]
fn drop_not_bootrequest() {
    for op in [0, 2, 3, 255] {
        let mut bytes = datagram(&[DISCOVER, END]);
        bytes[0] = op;
        assert_eq!(parse(&bytes, MAX_FRAME), Err(DropReason::NotBootRequest), "op {op}");
    }
}

/// Only Ethernet (htype 1, hlen 6, RFC 1700) is served: chaddr is a 6-byte MAC.
#[test]
fn drop_unsupported_hardware() {
    for (htype, hlen) in [(6, 6), (32, 20), (1, 0), (1, 16), (0, 6)] {
        let mut bytes = datagram(&[DISCOVER, END]);
        bytes[1] = htype;
        bytes[2] = hlen;
        assert_eq!(parse(&bytes, MAX_FRAME), Err(DropReason::UnsupportedHardware), "htype {htype} hlen {hlen}");
    }
}

/// RFC 2131 §3: the options field starts with 99.130.83.99 (dhcproto does not check it).
#[test]
fn drop_bad_magic_cookie() {
    for cookie in [[0, 0, 0, 0], [99, 130, 83, 98], [99, 83, 130, 99]] {
        let mut bytes = datagram(&[DISCOVER, END]);
        bytes[236..240].copy_from_slice(&cookie);
        assert_eq!(parse(&bytes, MAX_FRAME), Err(DropReason::BadMagicCookie), "cookie {cookie:?}");
    }
}

#[test]
fn drop_malformed_options() {
    let cases: [(&str, Vec<u8>); 10] = [
        ("length past the end", datagram(&[DISCOVER, &[60, 10, b'a']])),
        ("code without a length", datagram(&[DISCOVER, &[60]])),
        ("option 50 not 4 bytes", datagram(&[DISCOVER, &tlv(50, &[10, 0, 0]), END])),
        ("option 54 not 4 bytes", datagram(&[DISCOVER, &tlv(54, &[10, 0, 0, 1, 0]), END])),
        ("option 53 empty", datagram(&[&[53, 0], END])),
        ("option 53 two bytes", datagram(&[&[53, 2, 1, 1], END])),
        ("option 57 not 2 bytes", datagram(&[DISCOVER, &tlv(57, &[2]), END])),
        ("option 61 without identifier (RFC 2132 §9.14)", datagram(&[DISCOVER, &tlv(61, &[1]), END])),
        ("option 93 odd length (RFC 4578 §2.1)", datagram(&[DISCOVER, &tlv(93, &[0, 0, 7]), END])),
        ("option 52 unknown value", datagram(&[DISCOVER, &tlv(52, &[4]), END])),
    ];
    for (what, bytes) in cases {
        assert_eq!(parse(&bytes, MAX_FRAME), Err(DropReason::MalformedOptions), "{what}");
    }
    // Overloaded fields are walked with the same rules.
    let mut bytes = datagram(&[DISCOVER, &tlv(52, &[1]), END]);
    bytes[108 + 126..108 + 128].copy_from_slice(&[60, 5]);
    assert_eq!(parse(&bytes, MAX_FRAME), Err(DropReason::MalformedOptions), "file option past its field");
}

/// RFC 1542 §2: a BOOTREQUEST without option 53 is BOOTP, with RFC 1497 vendor extensions.
#[test]
fn no_message_type_is_bootp() {
    let request = parse(&padded(datagram(&[&tlv(12, b"pc1"), END]), 300), MAX_FRAME).expect("a BOOTP request");
    assert_eq!((request.message_type, request.hostname.as_deref()), (ClientMessageType::Bootp, Some("pc1")));
}

/// RFC 2132 §9.6: 2 OFFER, 5 ACK, 6 NAK are server messages; 9.. are not for this server.
#[test]
fn drop_unexpected_message_type() {
    for value in [0, 2, 5, 6, 9, 13, 255] {
        let bytes = datagram(&[&[53, 1, value], END]);
        assert_eq!(parse(&bytes, MAX_FRAME), Err(DropReason::UnexpectedMessageType), "type {value}");
    }
}

/// The other reasons (Overloaded, NoPool, ProposalBacklog) belong to the actors and the engine:
/// the parser never returns them. Labels are distinct metric names and `index` finds each.
#[test]
fn drop_reasons_have_distinct_labels_and_indexes() {
    for (position, reason) in DropReason::ALL.iter().enumerate() {
        assert_eq!(reason.index(), position);
        assert_eq!(DropReason::ALL.iter().filter(|r| r.label() == reason.label()).count(), 1, "{reason:?}");
    }
}

fn is_parser_reason(reason: DropReason) -> bool {
    !matches!(reason, DropReason::Overloaded | DropReason::NoPool | DropReason::ProposalBacklog)
}

// ---------------------------------------------------------------------------------------------
// Emitting replies
// ---------------------------------------------------------------------------------------------

fn pxe_offer() -> Reply {
    let mut uuid = vec![0];
    uuid.extend_from_slice(&UUID);
    Reply {
        message_type: ReplyType::Offer,
        xid: XID,
        broadcast: true,
        ciaddr: Ipv4Addr::UNSPECIFIED,
        yiaddr: Ipv4Addr::new(10, 199, 0, 77),
        siaddr: Ipv4Addr::new(10, 199, 0, 2),
        giaddr: Ipv4Addr::new(10, 199, 1, 1),
        chaddr: MAC,
        file: Some("undionly.kpxe".to_owned()),
        server_id: Ipv4Addr::new(10, 199, 0, 2),
        lease_time_secs: Some(3600),
        renewal_time_secs: Some(1800),
        rebinding_time_secs: Some(3150),
        subnet_mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
        options: vec![
            (3, vec![10, 199, 0, 1]),
            (6, vec![10, 199, 0, 53, 10, 199, 0, 54]),
            (15, b"lab.example".to_vec()),
            (12, b"node-77".to_vec()),
        ],
        tftp_server_name: Some("10.199.0.2".to_owned()),
        bootfile_name: Some("undionly.kpxe".to_owned()),
        vendor_class: Some(b"PXEClient".to_vec()),
        client_uuid: Some(uuid),
        client_id: Some(vec![1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
        subnet_selection: Some(Ipv4Addr::new(10, 199, 0, 0)),
        relay_agent_info: Some(vec![1, 4, 0, 0, 0, 7, 2, 2, 0xaa, 0xbb]),
        message: Some("hello".to_owned()),
        // What a PXE ROM asks for (the tests' ClientOptions::pxe), 60 and 97 after the boot file.
        parameter_request_list: vec![1, 3, 6, 12, 15, 66, 67, 60, 97],
    }
}

fn minimal_nak() -> Reply {
    Reply {
        message_type: ReplyType::Nak,
        xid: XID,
        broadcast: true,
        ciaddr: Ipv4Addr::UNSPECIFIED,
        yiaddr: Ipv4Addr::UNSPECIFIED,
        siaddr: Ipv4Addr::UNSPECIFIED,
        giaddr: Ipv4Addr::UNSPECIFIED,
        chaddr: MAC,
        file: None,
        server_id: Ipv4Addr::new(10, 199, 0, 2),
        lease_time_secs: None,
        renewal_time_secs: None,
        rebinding_time_secs: None,
        subnet_mask: None,
        options: vec![],
        tftp_server_name: None,
        bootfile_name: None,
        vendor_class: None,
        client_uuid: None,
        client_id: None,
        subnet_selection: None,
        relay_agent_info: None,
        message: None,
        parameter_request_list: vec![],
    }
}

/// An OFFER with a mask and `options`, for the layout tests.
fn offer_with(options: Vec<(u8, Vec<u8>)>, parameter_request_list: Vec<u8>) -> Reply {
    Reply {
        message_type: ReplyType::Offer,
        yiaddr: Ipv4Addr::new(10, 199, 0, 77),
        lease_time_secs: Some(3600),
        subnet_mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
        options,
        parameter_request_list,
        ..minimal_nak()
    }
}

/// The options of one field, walked independently of the codec: (code, data) per instance.
fn field_options(field: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(&c) = field.get(at) {
        match c {
            0 => at += 1,
            255 => break,
            _ => {
                let len = usize::from(field[at + 1]);
                out.push((c, field[at + 2..at + 2 + len].to_vec()));
                at += 2 + len;
            }
        }
    }
    out
}

/// Every option instance of an emitted reply in the order a client reads them: the options field,
/// then, as option 52 says, `file` and `sname` (RFC 2131 §4.1, RFC 3396 §7).
fn wire_options(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = field_options(&bytes[OPTIONS_OFFSET..]);
    let overload = out.iter().find(|(c, _)| *c == 52).map_or(0, |(_, v)| v[0]);
    if overload & 1 != 0 {
        out.extend(field_options(&bytes[108..236]));
    }
    if overload & 2 != 0 {
        out.extend(field_options(&bytes[44..108]));
    }
    out
}

/// RFC 3396 §7: all instances of a code concatenated, in reading order.
fn joined(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
    for (c, data) in wire_options(bytes) {
        match out.iter_mut().find(|(seen, _)| *seen == c) {
            Some((_, all)) => all.extend(data),
            None => out.push((c, data)),
        }
    }
    out
}

/// The option codes of the options field in wire order.
fn option_codes(bytes: &[u8]) -> Vec<u8> {
    field_options(&bytes[OPTIONS_OFFSET..]).into_iter().map(|(c, _)| c).collect()
}

fn decode(bytes: &[u8]) -> Message {
    Message::decode(&mut Decoder::new(bytes)).expect("dhcproto decodes what emit wrote")
}

/// dhcproto returns `file` with its NUL terminator; the name is the part before it.
fn file_name(message: &Message) -> Option<Vec<u8>> {
    message.fname().map(|f| f.iter().copied().take_while(|&b| b != 0).collect())
}

/// The smoltcp check: emit into a buffer full of a marker byte, then compare every byte against
/// the expected layout (RFC 2131 §2, figure 1), so a byte emit forgot to write would show.
#[test]
fn emit_writes_every_header_byte() {
    let reply = pxe_offer();
    let layout = ReplyLayout::new(&reply, MAX_FRAME);
    let mut buf = vec![0xa5; layout.buffer_len()];
    layout.emit(&mut buf);

    let mut expected = vec![2, 1, 6, 0]; // op BOOTREPLY, htype, hlen, hops
    expected.extend_from_slice(&XID.to_be_bytes());
    expected.extend_from_slice(&[0, 0, 0x80, 0]); // secs, flags: BROADCAST
    expected.extend_from_slice(&[0, 0, 0, 0, 10, 199, 0, 77, 10, 199, 0, 2, 10, 199, 1, 1]);
    expected.extend_from_slice(&MAC);
    expected.extend_from_slice(&[0; 10 + 64]);
    expected.extend_from_slice(b"undionly.kpxe");
    expected.extend_from_slice(&[0; 128 - 13]);
    expected.extend_from_slice(&[99, 130, 83, 99]);
    assert_eq!(buf[..OPTIONS_OFFSET], expected[..]);

    // 53, 54, lease times and mask first; then the parameter request list's order (3, 6, 12, 15,
    // 66, 67, 60, 97); then the unrequested (61, 56) as given; then 118 and 82 last.
    let mut options = vec![53, 1, 2, 54, 4, 10, 199, 0, 2, 51, 4, 0, 0, 0x0e, 0x10, 58, 4, 0, 0, 0x07, 0x08];
    options.extend_from_slice(&[59, 4, 0, 0, 0x0c, 0x4e, 1, 4, 255, 255, 255, 0, 3, 4, 10, 199, 0, 1]);
    options.extend_from_slice(&[6, 8, 10, 199, 0, 53, 10, 199, 0, 54]);
    options.extend_from_slice(&tlv(12, b"node-77"));
    options.extend_from_slice(&tlv(15, b"lab.example"));
    options.extend_from_slice(&tlv(66, b"10.199.0.2"));
    options.extend_from_slice(&tlv(67, b"undionly.kpxe"));
    options.extend_from_slice(&tlv(60, b"PXEClient"));
    options.extend_from_slice(&tlv(97, reply.client_uuid.as_deref().unwrap_or_default()));
    options.extend_from_slice(&tlv(61, &[1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]));
    options.extend_from_slice(&tlv(56, b"hello"));
    options.extend_from_slice(&tlv(118, &[10, 199, 0, 0]));
    options.extend_from_slice(&tlv(82, &[1, 4, 0, 0, 0, 7, 2, 2, 0xaa, 0xbb]));
    options.push(255);
    assert_eq!(buf[OPTIONS_OFFSET..OPTIONS_OFFSET + options.len()], options[..]);
    assert!(buf[OPTIONS_OFFSET + options.len()..].iter().all(|&b| b == 0), "padding is zeros");
    assert_eq!(emit(&reply, MAX_FRAME).bytes, buf);
}

/// A PXE OFFER as a client reads it (dhcproto as the client's decoder): every field comes back.
#[test]
fn emitted_pxe_offer_decodes_to_every_field() {
    let reply = pxe_offer();
    let emitted = emit(&reply, MAX_FRAME);
    assert_eq!(emitted.dropped, Vec::<u8>::new());
    assert_reply_decodes_to(&reply, &emitted.bytes);
}

/// Everything of `reply` is in `bytes`: the header and named options as dhcproto reads them, and
/// the configuration options byte for byte (RFC 3396 concatenated).
fn assert_reply_decodes_to(reply: &Reply, bytes: &[u8]) {
    let message = decode(bytes);
    assert_eq!(message.opcode(), v4::Opcode::BootReply);
    assert_eq!(message.htype(), v4::HType::Eth);
    assert_eq!((message.hops(), message.secs()), (0, 0));
    assert_eq!(message.xid(), reply.xid);
    assert_eq!(message.flags().broadcast(), reply.broadcast);
    assert_eq!(
        [message.ciaddr(), message.yiaddr(), message.siaddr(), message.giaddr()],
        [reply.ciaddr, reply.yiaddr, reply.siaddr, reply.giaddr]
    );
    assert_eq!(message.chaddr(), reply.chaddr);
    assert_eq!(message.sname(), None);
    assert_eq!(file_name(&message), reply.file.as_ref().map(|f| f.as_bytes().to_vec()));

    let opts = message.opts();
    let expected_type = match reply.message_type {
        ReplyType::Offer => Some(MessageType::Offer),
        ReplyType::Ack => Some(MessageType::Ack),
        ReplyType::Nak => Some(MessageType::Nak),
        ReplyType::Bootp => None,
    };
    assert_eq!(opts.msg_type(), expected_type);
    let get = |c: OptionCode| opts.get(c).cloned();
    let dhcp = expected_type.is_some();
    assert_eq!(get(OptionCode::ServerIdentifier), Some(DhcpOption::ServerIdentifier(reply.server_id)).filter(|_| dhcp));
    let dhcp_only = |value: Option<u32>| value.filter(|_| dhcp);
    assert_eq!(get(OptionCode::AddressLeaseTime), dhcp_only(reply.lease_time_secs).map(DhcpOption::AddressLeaseTime));
    assert_eq!(get(OptionCode::Renewal), dhcp_only(reply.renewal_time_secs).map(DhcpOption::Renewal));
    assert_eq!(get(OptionCode::Rebinding), dhcp_only(reply.rebinding_time_secs).map(DhcpOption::Rebinding));
    assert_eq!(get(OptionCode::SubnetMask), reply.subnet_mask.map(DhcpOption::SubnetMask));
    // RFC 2132 §9: 50-61, 66 and 67 are DHCP extensions; a BOOTREPLY leaves them out.
    let dhcp_ext = |value: Option<DhcpOption>| value.filter(|_| dhcp);
    assert_eq!(
        get(OptionCode::TFTPServerName),
        dhcp_ext(reply.tftp_server_name.as_ref().map(|s| DhcpOption::TFTPServerName(s.clone().into_bytes())))
    );
    assert_eq!(
        get(OptionCode::BootfileName),
        dhcp_ext(reply.bootfile_name.as_ref().map(|s| DhcpOption::BootfileName(s.clone().into_bytes())))
    );
    assert_eq!(get(OptionCode::ClassIdentifier), dhcp_ext(reply.vendor_class.clone().map(DhcpOption::ClassIdentifier)));
    assert_eq!(
        get(OptionCode::ClientMachineIdentifier),
        reply.client_uuid.clone().map(DhcpOption::ClientMachineIdentifier)
    );
    assert_eq!(get(OptionCode::ClientIdentifier), dhcp_ext(reply.client_id.clone().map(DhcpOption::ClientIdentifier)));
    assert_eq!(get(OptionCode::Message), dhcp_ext(reply.message.clone().map(DhcpOption::Message)));
    assert_eq!(get(OptionCode::SubnetSelection), reply.subnet_selection.map(DhcpOption::SubnetSelection));
    // dhcproto parses option 82 into a map of sub-options; encoding it again gives the bytes.
    let relay_bytes = match get(OptionCode::RelayAgentInformation) {
        Some(DhcpOption::RelayAgentInformation(info)) => {
            let mut out = Vec::new();
            info.encode(&mut Encoder::new(&mut out)).expect("re-encode option 82");
            Some(out)
        }
        _ => None,
    };
    assert_eq!(relay_bytes, reply.relay_agent_info);
    let on_wire = joined(bytes);
    for (code, data) in &reply.options {
        assert_eq!(on_wire.iter().find(|(c, _)| c == code).map(|(_, d)| d), Some(data), "option {code}");
    }
    assert_eq!(opts.iter().count(), on_wire.len(), "no other options: {on_wire:?}");
}

/// RFC 951 §3: a BOOTP message is at least 300 bytes; a bare NAK is padded up to it.
#[test]
fn emitted_replies_are_at_least_300_bytes() {
    let bytes = emit(&minimal_nak(), MAX_FRAME).bytes;
    assert_eq!(bytes.len(), MIN_REPLY_BYTES);
    assert_eq!(option_codes(&bytes), vec![53, 54]);
    assert_reply_decodes_to(&minimal_nak(), &bytes);
}

/// RFC 3046 §2.1/§2.2: the server echoes option 82 unchanged, as the last option before end.
#[test]
fn relay_agent_information_is_last() {
    let bytes = emit(&pxe_offer(), MAX_FRAME).bytes;
    assert_eq!(option_codes(&bytes).last(), Some(&82));
}

/// RFC 2132 §9.8: the options go in the order of the client's parameter request list; options it
/// did not ask for follow, as the engine gave them.
#[test]
fn options_follow_the_parameter_request_list() {
    let options = vec![(42, vec![10, 0, 0, 7]), (3, vec![10, 0, 0, 1]), (6, vec![10, 0, 0, 53]), (119, vec![0])];
    let bytes = emit(&offer_with(options, vec![6, 119, 1, 3]), MAX_FRAME).bytes;
    assert_eq!(option_codes(&bytes), vec![53, 54, 51, 1, 6, 119, 3, 42]);
}

/// RFC 3396 §5: a value over 255 bytes goes as consecutive instances of the option, which the
/// client concatenates; dhcproto (a real decoder) reads the whole list back.
#[test]
fn rfc3396_long_options_are_split() {
    let servers: Vec<u8> = (0..150u8).flat_map(|i| [10, 1, i / 100, i]).collect();
    let reply = offer_with(vec![(42, servers.clone())], vec![42]);
    let emitted = emit(&reply, MAX_FRAME);
    let instances: Vec<usize> =
        wire_options(&emitted.bytes).iter().filter(|(c, _)| *c == 42).map(|(_, d)| d.len()).collect();
    assert_eq!(instances, vec![255, 255, 90]);
    assert_eq!(joined(&emitted.bytes).iter().find(|(c, _)| *c == 42).map(|(_, d)| d.clone()), Some(servers.clone()));
    let addresses: Vec<Ipv4Addr> = servers.chunks(4).map(|a| Ipv4Addr::new(a[0], a[1], a[2], a[3])).collect();
    assert_eq!(decode(&emitted.bytes).opts().get(OptionCode::NtpServers), Some(&DhcpOption::NtpServers(addresses)));
}

/// RFC 2131 §4.1 / RFC 2132 §9.3: options that do not fit a 576-byte client's options field go into
/// `file` and `sname`, with option 52 saying which; nothing is lost. A boot file keeps `file` its own.
#[test]
fn rfc2131_overload_carries_what_the_options_field_cannot() {
    let big = |code: u8, len: usize| (code, vec![code; len]);
    // 400 bytes of options: more than the 283 the options field has left, less than it and both fields.
    let options = vec![big(224, 150), big(225, 100), big(226, 80), big(227, 40), big(228, 20)];
    let reply = offer_with(options.clone(), vec![]);
    let emitted = emit(&reply, 548);
    assert!(emitted.bytes.len() <= 548, "{} bytes", emitted.bytes.len());
    assert_eq!(emitted.dropped, Vec::<u8>::new(), "everything fits with overload");
    let on_wire = joined(&emitted.bytes);
    assert_eq!(on_wire.iter().find(|(c, _)| *c == 52).map(|(_, v)| v.clone()), Some(vec![1]), "file carries the rest");
    for (code, data) in &options {
        assert_eq!(on_wire.iter().find(|(c, _)| c == code).map(|(_, d)| d), Some(data), "option {code}");
    }
    // With a boot file, `file` is the file name; only `sname` can carry options.
    let with_file = Reply { file: Some("boot.efi".into()), ..reply };
    let emitted = emit(&with_file, 548);
    let on_wire = joined(&emitted.bytes);
    assert_eq!(on_wire.iter().find(|(c, _)| *c == 52).map(|(_, v)| v.clone()), Some(vec![2]));
    assert_eq!(file_name(&decode(&emitted.bytes)), Some(b"boot.efi".to_vec()));
    assert!(!emitted.dropped.is_empty(), "less room: something is left out");
    for (code, data) in &options {
        let present = on_wire.iter().find(|(c, _)| c == code).map(|(_, d)| d);
        assert!(
            present == Some(data) || emitted.dropped.contains(code),
            "option {code} neither sent whole nor dropped"
        );
    }
}

/// An option that fits nowhere is left out and reported; 53, 54, 51 and 1 stay.
#[test]
fn options_that_fit_nowhere_are_dropped_and_reported() {
    let reply =
        offer_with(vec![(3, vec![10, 0, 0, 1]), (224, vec![7; 400]), (42, vec![10, 0, 0, 5])], vec![3, 224, 42]);
    let emitted = emit(&reply, 548);
    assert_eq!(emitted.dropped, vec![224]);
    let codes: Vec<u8> = joined(&emitted.bytes).into_iter().map(|(c, _)| c).collect();
    assert_eq!(codes, vec![53, 54, 51, 1, 3, 42]);
    let tiny = emit(&reply, 0);
    assert_eq!(tiny.bytes.len(), MIN_REPLY_BYTES, "300 bytes is the floor");
    for required in [53, 54, 51, 1] {
        assert!(option_codes(&tiny.bytes).contains(&required), "{required} kept");
    }
}

/// RFC 1542 / RFC 1497: a BOOTREPLY has the magic cookie and vendor extensions, but no DHCP
/// message type, server identifier or lease times.
#[test]
fn bootreply_carries_no_dhcp_options() {
    let reply = Reply {
        message_type: ReplyType::Bootp,
        renewal_time_secs: None,
        file: Some("pxelinux.0".into()),
        ..offer_with(vec![(3, vec![10, 199, 0, 1])], vec![])
    };
    let reply = Reply { lease_time_secs: None, ..reply };
    let bytes = emit(&reply, 300).bytes;
    assert_eq!(bytes.len(), 300);
    assert_eq!(&bytes[236..240], &[99, 130, 83, 99]);
    assert_eq!(option_codes(&bytes), vec![1, 3]);
    assert_reply_decodes_to(&reply, &bytes);
}

/// Empty named values are not written; an empty configured option is (code, length 0), like RFC
/// 4039's rapid commit. A boot file name that cannot fit `file` with its NUL leaves `file` empty.
#[test]
fn empty_values_and_overlong_file_names() {
    let mut reply = minimal_nak();
    reply.message = Some(String::new());
    reply.client_id = Some(vec![]);
    reply.options = vec![(80, vec![])];
    reply.file = Some("f".repeat(128));
    let bytes = emit(&reply, usize::MAX).bytes;
    assert_eq!(wire_options(&bytes), vec![(53, vec![6]), (54, vec![10, 199, 0, 2]), (80, vec![])]);
    assert_eq!(decode(&bytes).fname(), None);
}

/// A 127-byte boot file name is the longest that fits `file` with its NUL (RFC 2131 §2).
#[test]
fn longest_boot_file_name_fits() {
    let mut reply = minimal_nak();
    reply.file = Some("f".repeat(127));
    let bytes = emit(&reply, MAX_FRAME).bytes;
    assert_eq!(file_name(&decode(&bytes)), Some(vec![b'f'; 127]));
    assert_eq!(bytes[108 + 127], 0);
}

// ---------------------------------------------------------------------------------------------
// dhcproto as the reference encoder of requests
// ---------------------------------------------------------------------------------------------

/// A REQUEST encoded by dhcproto (ordered by option code, no padding) parses into the same values.
#[test]
fn request_encoded_by_dhcproto_parses() {
    let mut message = Message::new_with_id(
        XID,
        Ipv4Addr::new(10, 199, 0, 77),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &MAC,
    );
    message.set_flags(v4::Flags::default().set_broadcast());
    let opts = message.opts_mut();
    opts.insert(DhcpOption::MessageType(MessageType::Request));
    opts.insert(DhcpOption::Hostname("pc1".to_owned()));
    opts.insert(DhcpOption::ClientIdentifier(vec![0, b'i', b'd']));
    opts.insert(DhcpOption::MaxMessageSize(1500));
    opts.insert(DhcpOption::ParameterRequestList(vec![OptionCode::SubnetMask, OptionCode::Router]));
    let mut bytes = Vec::new();
    message.encode(&mut Encoder::new(&mut bytes)).expect("encode");
    assert_eq!(
        parse(&bytes, MAX_FRAME),
        Ok(Request {
            message_type: ClientMessageType::Request,
            broadcast: true,
            ciaddr: Ipv4Addr::new(10, 199, 0, 77),
            hostname: Some("pc1".to_owned()),
            client_id: Some(vec![0, b'i', b'd']),
            max_message_size: Some(1500),
            parameter_request_list: vec![1, 3],
            ..bare_discover()
        })
    );
}

// ---------------------------------------------------------------------------------------------
// emit_request and reply_options: the mirror images used by the checks
// ---------------------------------------------------------------------------------------------

/// A bare DISCOVER is the fixed header, option 53 and the end option, nothing else.
#[test]
fn emit_request_writes_a_bare_discover_as_a_client_would() {
    assert_eq!(emit_request(&bare_discover()), datagram(&[DISCOVER, END]));
}

/// Every field `parse` fills comes back from `emit_request`: named options, an empty option 175,
/// a value over 255 bytes (split, RFC 3396 §5, and joined again) and unknown options in order.
#[test]
fn emit_request_mirrors_parse() {
    let request = Request {
        message_type: ClientMessageType::Request,
        secs: 9,
        broadcast: true,
        hops: 2,
        ciaddr: Ipv4Addr::new(10, 199, 0, 77),
        giaddr: Ipv4Addr::new(10, 199, 1, 1),
        requested_ip: Some(Ipv4Addr::new(10, 199, 0, 78)),
        server_id: Some(Ipv4Addr::new(10, 199, 0, 2)),
        client_id: Some(vec![1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
        hostname: Some("pc1".to_owned()),
        vendor_class: Some(b"PXEClient:Arch:00007:UNDI:003016".to_vec()),
        user_class: Some(b"iPXE".to_vec()),
        client_arch: Some(7),
        client_uuid: Some(vec![]),
        parameter_request_list: vec![1, 3, 6, 66, 67],
        max_message_size: Some(1472),
        relay_agent_info: Some(vec![1, 2, 0, 1]),
        subnet_selection: Some(Ipv4Addr::new(10, 199, 0, 0)),
        has_ipxe_option: true,
        other_options: vec![(224, vec![7; 600]), (81, vec![]), (43, vec![1, 1, 0])],
        ..bare_discover()
    };
    let bytes = emit_request(&request);
    assert_eq!(parse(&bytes, usize::MAX), Ok(request));
}

/// `reply_options` reads what `emit` wrote, overloaded fields included, as the independent walker
/// of these tests does.
#[test]
fn reply_options_reads_an_overloaded_reply() {
    let mut reply = pxe_offer();
    reply.file = None;
    reply.options = vec![(224, vec![1; 200]), (225, vec![2; 100]), (226, vec![3; 50])];
    let emitted = emit(&reply, 576);
    assert!(emitted.dropped.is_empty());
    assert_ne!(wire_options(&emitted.bytes).iter().find(|(c, _)| *c == 52), None, "overloaded");
    assert_eq!(reply_options(&emitted.bytes), Some(joined(&emitted.bytes)));
    assert_eq!(reply_options(&bootrequest_header()), None, "a BOOTREQUEST is not a reply");
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// A well-formed option: any code but pad and end, any value up to 255 bytes.
fn any_option() -> impl Strategy<Value = (u8, Vec<u8>)> {
    (1u8..=254, prop::collection::vec(any::<u8>(), 0..=40))
}

fn text(max_chars: usize) -> impl Strategy<Value = String> {
    // At most 4 bytes per char: stays within one option.
    prop::string::string_regex(&format!("[a-zA-Z0-9._-]{{1,{max_chars}}}")).expect("regex")
}

fn bytes_value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..=255)
}

fn address() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

/// Option 82 as well-formed sub-options with distinct, increasing codes (RFC 3046 §2.0), so that
/// dhcproto's map representation encodes back to the same bytes.
fn relay_agent_info() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::option::of(prop::collection::vec(any::<u8>(), 1..=32)),
        prop::option::of(prop::collection::vec(any::<u8>(), 1..=32)),
        prop::option::of(prop::collection::vec(any::<u8>(), 1..=32)),
    )
        .prop_map(|(circuit, remote, subscriber)| {
            let mut out = Vec::new();
            for (sub_code, value) in [(1u8, circuit), (2, remote), (6, subscriber)] {
                if let Some(value) = value {
                    out.push(sub_code);
                    out.push(u8::try_from(value.len()).unwrap_or(u8::MAX));
                    out.extend_from_slice(&value);
                }
            }
            out
        })
        .prop_filter("not empty", |v| !v.is_empty())
}

prop_compose! {
    fn any_reply()(
        message_type in prop_oneof![Just(ReplyType::Offer), Just(ReplyType::Ack), Just(ReplyType::Nak), Just(ReplyType::Bootp)],
        xid in any::<u32>(),
        broadcast in any::<bool>(),
        header in (address(), address(), address(), address(), any::<[u8; 6]>()),
        file in prop::option::of(prop::string::string_regex("[ -~]{1,127}").expect("regex")),
        server_id in address(),
        times in (prop::option::of(any::<u32>()), prop::option::of(any::<u32>()), prop::option::of(any::<u32>())),
        subnet_mask in prop::option::of(address()),
        // Site-specific codes (RFC 3942): dhcproto keeps their bytes as they are, whatever they are.
        options in prop::collection::btree_map(224u8..=248, prop::collection::vec(any::<u8>(), 1..=255), 0..6),
        names in (prop::option::of(text(60)), prop::option::of(text(60))),
        echoes in (prop::option::of(bytes_value()), prop::option::of(bytes_value()), prop::option::of(bytes_value())),
        subnet_selection in prop::option::of(address()),
        relay_agent_info in prop::option::of(relay_agent_info()),
        message in prop::option::of(prop::string::string_regex("\\PC{1,60}").expect("regex")),
        parameter_request_list in prop::collection::vec(1u8..=254, 0..20),
    ) -> Reply {
        let (ciaddr, yiaddr, siaddr, giaddr, chaddr) = header;
        let (lease_time_secs, renewal_time_secs, rebinding_time_secs) = times;
        let (tftp_server_name, bootfile_name) = names;
        let (vendor_class, client_uuid, client_id) = echoes;
        let options = options.into_iter().collect();
        Reply {
            message_type, xid, broadcast, ciaddr, yiaddr, siaddr, giaddr, chaddr, file, server_id,
            lease_time_secs, renewal_time_secs, rebinding_time_secs, subnet_mask, options,
            tftp_server_name, bootfile_name, vendor_class, client_uuid, client_id,
            subnet_selection, relay_agent_info, message, parameter_request_list,
        }
    }
}

/// What the reply's head and named fields put on the wire when there is room, as (code, data).
fn expected_options(reply: &Reply) -> Vec<(u8, Vec<u8>)> {
    let full = emit(reply, usize::MAX);
    assert!(full.dropped.is_empty());
    joined(&full.bytes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Hostile input never panics and only yields parser drop reasons.
    #[test]
    fn parse_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..1600),
        max_frame in 0usize..2000,
    ) {
        if let Err(reason) = parse(&bytes, max_frame) {
            prop_assert!(is_parser_reason(reason));
        }
    }

    /// The same behind a valid fixed header, so the option walker sees the garbage.
    #[test]
    fn parse_never_panics_after_a_valid_header(
        tail in prop::collection::vec(any::<u8>(), 0..1300),
        overload in prop::option::of(1u8..=3),
        fields in prop::collection::vec(any::<u8>(), 192),
    ) {
        let mut bytes = bootrequest_header();
        bytes[44..236].copy_from_slice(&fields); // sname and file: garbage, read when overloaded
        if let Some(value) = overload {
            bytes.extend_from_slice(&[52, 1, value]);
        }
        bytes.extend_from_slice(&tail);
        if let Err(reason) = parse(&bytes, MAX_FRAME) {
            prop_assert!(is_parser_reason(reason));
        }
    }

    /// Whatever `parse` accepts, `emit_request` writes back into a datagram that parses to the
    /// same request (the property the `wire_round_trip` fuzz target checks on arbitrary bytes).
    #[test]
    fn emit_request_round_trips_what_parse_accepts(
        tail in prop::collection::vec(any::<u8>(), 0..600),
        overload in prop::option::of(1u8..=3),
        fields in prop::collection::vec(any::<u8>(), 192),
    ) {
        let mut bytes = bootrequest_header();
        bytes[44..236].copy_from_slice(&fields);
        if let Some(value) = overload {
            bytes.extend_from_slice(&[52, 1, value]);
        }
        bytes.extend_from_slice(&tail);
        if let Ok(request) = parse(&bytes, usize::MAX) {
            prop_assert_eq!(parse(&emit_request(&request), usize::MAX), Ok(request));
        }
    }

    /// Well-formed options with a DISCOVER type: every option the engine does not read comes back
    /// in `other_options`, concatenated per code (RFC 3396) in order of first appearance.
    #[test]
    fn parse_keeps_every_unread_option(options in prop::collection::vec(any_option(), 0..30)) {
        let read_by_engine = [50, 52, 53, 54, 61, 12, 60, 77, 93, 97, 55, 57, 82, 118, 175];
        let options: Vec<_> = options.into_iter().filter(|(c, _)| !read_by_engine.contains(c)).collect();
        let mut bytes = datagram(&[DISCOVER]);
        let mut expected: Vec<(u8, Vec<u8>)> = Vec::new();
        for (option_code, value) in &options {
            bytes.extend_from_slice(&tlv(*option_code, value));
            match expected.iter_mut().find(|(c, _)| c == option_code) {
                Some((_, existing)) => existing.extend_from_slice(value),
                None => expected.push((*option_code, value.clone())),
            }
        }
        bytes.push(255);
        let request = parse(&bytes, usize::MAX);
        prop_assert_eq!(request.map(|r| r.other_options), Ok(expected));
    }

    /// What `emit` writes with room to spare, a client (dhcproto) reads back field for field, at least
    /// 300 bytes, 82 last, the head first and the rest in the parameter request list's order.
    #[test]
    fn emit_round_trips_through_dhcproto(reply in any_reply()) {
        let emitted = emit(&reply, usize::MAX);
        prop_assert!(emitted.bytes.len() >= MIN_REPLY_BYTES);
        prop_assert!(emitted.dropped.is_empty());
        assert_reply_decodes_to(&reply, &emitted.bytes);
        let codes = option_codes(&emitted.bytes);
        if reply.relay_agent_info.is_some() {
            prop_assert_eq!(codes.last(), Some(&code::RELAY_AGENT_INFO));
        }
        let rank = |c: &u8| reply.parameter_request_list.iter().position(|p| p == c).unwrap_or(usize::MAX);
        let body: Vec<u8> = codes.iter().copied().filter(|c| ![53, 54, 51, 58, 59, 1, 118, 82].contains(c)).collect();
        let mut sorted = body.clone();
        sorted.sort_by_key(rank);
        prop_assert_eq!(body, sorted);
    }

    /// Whatever the limit, the reply fits it (or the 300-byte floor, or what the options that must
    /// stay take), and every option is either on the wire whole (maybe overloaded into `file`/
    /// `sname`, maybe split) or reported dropped — never cut, never lost silently.
    #[test]
    fn emit_fits_the_limit_and_loses_nothing_silently(
        reply in any_reply(),
        long in prop::option::of((249u8..=254, prop::collection::vec(any::<u8>(), 256..700))),
        max_bytes in 0usize..1200,
    ) {
        let mut reply = reply;
        reply.options.extend(long);
        let emitted = emit(&reply, max_bytes);
        let expected = expected_options(&reply);
        let required: usize = expected.iter().filter(|(c, _)| REQUIRED.contains(c)).map(|(_, d)| 2 + d.len()).sum();
        let floor = MIN_REPLY_BYTES.max(OPTIONS_OFFSET + required + 3 + 1);
        prop_assert!(emitted.bytes.len() <= max_bytes.max(floor), "{} > {max_bytes}", emitted.bytes.len());
        prop_assert!(emitted.bytes.len() >= MIN_REPLY_BYTES);
        let on_wire = joined(&emitted.bytes);
        for (code, data) in &expected {
            match on_wire.iter().find(|(c, _)| c == code) {
                Some((_, got)) => prop_assert_eq!(got, data, "option {}", code),
                None => {
                    prop_assert!(emitted.dropped.contains(code), "option {} lost", code);
                    prop_assert!(!REQUIRED.contains(code), "required option {} dropped", code);
                }
            }
        }
    }
}
