//! Fuzz target: the DHCP wire layer in both directions. Arbitrary bytes go through `wire::parse`;
//! whatever it accepts must come back unchanged through `wire::emit_request` and `parse` (unknown
//! options included), and a reply built from it must come out of `wire::emit` as its contract says:
//! 300 bytes at least, within the size limit, every option on the wire byte for byte or reported
//! dropped, the ones that must stay never dropped.
#![no_main]

use std::net::Ipv4Addr;

use leasehold_node::wire::{self, DropReason, Reply, ReplyType, Request};
use libfuzzer_sys::fuzz_target;

/// The fixed header and the magic cookie (RFC 2131 §2).
const OPTIONS_OFFSET: usize = 240;
/// RFC 951 §3: every reply is padded to this.
const MIN_REPLY_BYTES: usize = 300;
/// A typical `max_frame_bytes`.
const MAX_FRAME: usize = 1500;

fuzz_target!(|data: &[u8]| {
    let parsed = wire::parse(data, usize::MAX);
    // The frame limit refuses by size alone, before anything else is looked at.
    match wire::parse(data, MAX_FRAME) {
        Err(DropReason::Oversized) => assert!(data.len() > MAX_FRAME),
        limited => assert_eq!(limited, parsed),
    }
    let request = match parsed {
        Ok(request) => request,
        Err(reason) => {
            assert!(
                !matches!(reason, DropReason::Overloaded | DropReason::NoPool | DropReason::ProposalBacklog),
                "{reason:?} is not the parser's to give"
            );
            return;
        }
    };

    let bytes = wire::emit_request(&request);
    assert_eq!(wire::parse(&bytes, usize::MAX).as_ref(), Ok(&request), "emit_request then parse changed it");

    let (reply, max_bytes) = reply_to(&request);
    check_emit(&reply, max_bytes);
});

/// Codes a `Reply` carries in fields of its own; `Reply::options` never holds them (the config
/// refuses them as options, the engine fills the fields).
const NAMED: [u8; 14] = [1, 51, 52, 53, 54, 56, 58, 59, 60, 61, 66, 67, 82, 97];

/// A reply that echoes everything of the request somewhere, so the fuzzer steers every part of it.
fn reply_to(request: &Request) -> (Reply, usize) {
    let message_type = match request.xid % 4 {
        0 => ReplyType::Offer,
        1 => ReplyType::Ack,
        2 => ReplyType::Nak,
        _ => ReplyType::Bootp,
    };
    let server_id = request.server_id.unwrap_or(request.giaddr);
    let text = |bytes: &Option<Vec<u8>>| bytes.as_deref().map(|b| String::from_utf8_lossy(b).into_owned());
    let secs = u32::from(request.secs) * 97;
    let reply = Reply {
        ciaddr: request.ciaddr,
        yiaddr: request.requested_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
        siaddr: request.subnet_selection.unwrap_or(Ipv4Addr::UNSPECIFIED),
        file: request.hostname.clone(),
        lease_time_secs: (request.hops & 1 != 0).then_some(secs),
        renewal_time_secs: (request.hops & 2 != 0).then_some(secs / 2),
        rebinding_time_secs: (request.hops & 4 != 0).then_some(secs / 8 * 7),
        subnet_mask: request.subnet_selection,
        options: request.other_options.iter().filter(|(code, _)| !NAMED.contains(code)).cloned().collect(),
        tftp_server_name: text(&request.user_class),
        bootfile_name: request.hostname.clone(),
        vendor_class: request.vendor_class.clone(),
        client_uuid: request.client_uuid.clone(),
        subnet_selection: request.subnet_selection,
        message: text(&request.relay_agent_info),
        ..Reply::answering(request, message_type, server_id)
    };
    let max_bytes = request.max_message_size.map_or(MAX_FRAME, usize::from);
    (reply, max_bytes)
}

/// What `emit` must write for `reply` when it has room: (code, data) in no particular order.
fn expected_options(reply: &Reply) -> Vec<(u8, Vec<u8>)> {
    let dhcp_type = match reply.message_type {
        ReplyType::Offer => Some(2),
        ReplyType::Ack => Some(5),
        ReplyType::Nak => Some(6),
        ReplyType::Bootp => None,
    };
    let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
    if let Some(dhcp_type) = dhcp_type {
        out.push((53, vec![dhcp_type]));
        out.push((54, reply.server_id.octets().to_vec()));
        for (code, secs) in
            [(51, reply.lease_time_secs), (58, reply.renewal_time_secs), (59, reply.rebinding_time_secs)]
        {
            out.extend(secs.map(|secs| (code, secs.to_be_bytes().to_vec())));
        }
    }
    out.extend(reply.subnet_mask.map(|mask| (1, mask.octets().to_vec())));
    // Empty named values are not written.
    let named = [
        (66, reply.tftp_server_name.as_ref().map(|t| t.as_bytes().to_vec())),
        (67, reply.bootfile_name.as_ref().map(|t| t.as_bytes().to_vec())),
        (60, reply.vendor_class.clone()),
        (97, reply.client_uuid.clone()),
        (61, reply.client_id.clone()),
        (56, reply.message.as_ref().map(|t| t.as_bytes().to_vec())),
        (82, reply.relay_agent_info.clone()),
    ];
    out.extend(named.into_iter().filter_map(|(code, data)| Some((code, data.filter(|d| !d.is_empty())?))));
    out.extend(reply.options.iter().cloned());
    out.extend(reply.subnet_selection.map(|ip| (118, ip.octets().to_vec())));
    if dhcp_type.is_none() {
        // A BOOTREPLY carries RFC 1497 vendor extensions only (RFC 2132 §9: 50-61, 66, 67 are DHCP's).
        out.retain(|(code, _)| !matches!(code, 50..=61 | 66 | 67));
    }
    out
}

/// Options that stay whatever the size limit (see `wire::emit`).
fn required(code: u8) -> bool {
    matches!(code, 53 | 54 | 51 | 1 | 118 | 82)
}

/// Bytes an option takes on the wire: code and length per instance of at most 255 bytes.
fn wire_len(data: &[u8]) -> usize {
    data.len() + 2 * data.len().div_ceil(255).max(1)
}

fn check_emit(reply: &Reply, max_bytes: usize) {
    let emitted = wire::emit(reply, max_bytes);
    let bytes = &emitted.bytes;
    let expected = expected_options(reply);

    // Size: the BOOTP minimum, and the limit unless the options that must stay need more (plus
    // option 52 and the end option).
    let required_bytes: usize = expected.iter().filter(|(c, _)| required(*c)).map(|(_, d)| wire_len(d)).sum();
    let ceiling = max_bytes.max(MIN_REPLY_BYTES).max(OPTIONS_OFFSET + required_bytes + 3 + 1);
    assert!(bytes.len() >= MIN_REPLY_BYTES, "{} bytes, under the BOOTP minimum", bytes.len());
    assert!(bytes.len() <= ceiling, "{} bytes, over the limit of {ceiling}", bytes.len());

    // The header (RFC 2131 §2, figure 1).
    assert_eq!(bytes[0], 2, "op BOOTREPLY");
    assert_eq!(&bytes[1..3], &[1, 6], "Ethernet");
    assert_eq!(bytes[4..8], reply.xid.to_be_bytes());
    assert_eq!(bytes[10] & 0x80 != 0, reply.broadcast);
    assert_eq!(bytes[16..20], reply.yiaddr.octets());
    assert_eq!(bytes[28..34], reply.chaddr);
    assert_eq!(bytes[236..240], [99, 130, 83, 99], "magic cookie");

    // Every option on the wire whole, or reported dropped; nothing else on the wire but option 52.
    let on_wire = wire::reply_options(bytes).expect("emit writes a well-formed BOOTREPLY");
    for (code, data) in &expected {
        match on_wire.iter().find(|(c, _)| c == code) {
            Some((_, got)) => assert_eq!(got, data, "option {code} changed on the wire"),
            None => {
                assert!(emitted.dropped.contains(code), "option {code} lost without being reported");
                assert!(!required(*code), "option {code} must stay, but was dropped");
            }
        }
    }
    for (code, _) in &on_wire {
        assert!(*code == 52 || expected.iter().any(|(c, _)| c == code), "option {code} on the wire from nowhere");
    }
    for code in &emitted.dropped {
        assert!(!on_wire.iter().any(|(c, _)| c == code), "option {code} reported dropped but sent");
    }

    // The boot file in `file` when it fits with its NUL and `file` carries no options.
    let overload = on_wire.iter().find(|(c, _)| *c == 52).map_or(0, |(_, v)| v.first().copied().unwrap_or(0));
    if let Some(file) = reply.file.as_deref().filter(|f| f.len() < 128) {
        if overload & 1 == 0 {
            assert_eq!(&bytes[108..108 + file.len()], file.as_bytes());
            assert_eq!(bytes[108 + file.len()], 0);
        }
    }
    if reply.message_type == ReplyType::Bootp {
        assert_eq!(overload, 0, "no option overload for a BOOTP client");
    }
}
