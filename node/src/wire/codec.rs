//! The DHCPv4 byte layout (RFC 2131 §2, RFC 2132): a checked view of a received datagram turned
//! into a `Request`, and a `Reply` turned into bytes. This module owns the 236-byte fixed header,
//! the magic cookie, the option TLVs (pad, end, RFC 3396 concatenation and splitting, RFC 2131 §4.1
//! option overload) and the order and size budget of the options we send.
//!
//! Why the options are walked here and not by `dhcproto` 0.15 (which the tests use as the reference
//! decoder of everything `emit` writes):
//! - its option decoder has `debug_assert!`s on option lengths (80 rapid commit, 81 client FQDN,
//!   94 client NDI, 152–155): a hostile datagram panics a debug build;
//! - it never reports a malformed option: it stops at the first option it cannot decode and keeps
//!   the ones before, so a bad option 12 (non-UTF-8) silently hides the option 53 behind it;
//! - it keeps one value per code (a later duplicate replaces an earlier one; only adjacent
//!   duplicates are concatenated), ignores option overload, and re-encodes option 82 from a map of
//!   sub-options (sorted, malformed ones dropped) where RFC 3046 §2.2 wants it echoed unchanged;
//! - its encoder orders options by code, does not pad to the BOOTP minimum, and neither splits long
//!   options nor overloads `file`/`sname`.
//!
//! The walk below is a few dozen lines, allocates one small vector per datagram, and keeps every
//! option's bytes exactly as received.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use super::{ClientMessageType, DropReason, Reply, ReplyType, Request};

/// The fixed BOOTP header, `op` through `file` (RFC 2131 §2, figure 1).
pub(super) const HEADER_LEN: usize = 236;
/// RFC 2131 §3: the first four octets of the options field.
pub(super) const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Where the options start: the fixed header plus the magic cookie.
pub(super) const OPTIONS_OFFSET: usize = HEADER_LEN + MAGIC_COOKIE.len();
/// RFC 951 §3: the 64-byte `vend` field makes a BOOTP message 300 bytes; some boot ROMs drop
/// shorter replies, so every reply is padded to at least this size.
pub(super) const MIN_REPLY_BYTES: usize = 300;
/// RFC 2132 §2: an option value is at most 255 bytes; longer ones go as several instances of the
/// option, which the receiver concatenates (RFC 3396).
pub(super) const MAX_OPTION_VALUE_BYTES: usize = 255;

// Field offsets in the fixed header (RFC 2131 §2, figure 1).
const OP: usize = 0;
const HTYPE: usize = 1;
const HLEN: usize = 2;
const HOPS: usize = 3;
const XID: usize = 4;
const SECS: usize = 8;
const FLAGS: usize = 10;
const CIADDR: usize = 12;
const YIADDR: usize = 16;
const SIADDR: usize = 20;
const GIADDR: usize = 24;
const CHADDR: usize = 28;
const CHADDR_LEN: usize = 16;
const SNAME: usize = 44;
const SNAME_LEN: usize = 64;
const FILE: usize = 108;
const FILE_LEN: usize = 128;
const COOKIE: usize = HEADER_LEN;

const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
/// RFC 1700 hardware type 1 (Ethernet) with its 6-byte address.
const HTYPE_ETHERNET: u8 = 1;
const HLEN_ETHERNET: u8 = 6;
/// RFC 2131 §2, figure 2: the leftmost bit of `flags`.
const FLAG_BROADCAST: u16 = 0x8000;

// Option codes (RFC 2132 unless noted).
pub(super) mod code {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const HOSTNAME: u8 = 12;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    pub const MESSAGE: u8 = 56;
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const VENDOR_CLASS: u8 = 60;
    pub const CLIENT_ID: u8 = 61;
    pub const TFTP_SERVER_NAME: u8 = 66;
    pub const BOOTFILE_NAME: u8 = 67;
    /// RFC 3004.
    pub const USER_CLASS: u8 = 77;
    /// RFC 3046.
    pub const RELAY_AGENT_INFO: u8 = 82;
    /// RFC 3011.
    pub const SUBNET_SELECTION: u8 = 118;
    /// RFC 4578 §2.1.
    pub const CLIENT_ARCH: u8 = 93;
    /// RFC 4578 §2.3.
    pub const CLIENT_UUID: u8 = 97;
    /// iPXE's encapsulated options.
    pub const IPXE: u8 = 175;
    pub const END: u8 = 255;
}

/// RFC 2132 §9.6 message type values.
mod message_type {
    pub const DISCOVER: u8 = 1;
    pub const OFFER: u8 = 2;
    pub const REQUEST: u8 = 3;
    pub const DECLINE: u8 = 4;
    pub const ACK: u8 = 5;
    pub const NAK: u8 = 6;
    pub const RELEASE: u8 = 7;
    pub const INFORM: u8 = 8;
}

// ---------------------------------------------------------------------------------------------
// Receive: bytes → checked view → Request
// ---------------------------------------------------------------------------------------------

/// A received datagram whose fixed header has been checked: long enough, not too long, a
/// BOOTREQUEST for Ethernet, with the magic cookie. Accessors read fixed offsets of `header`.
struct Packet<'a> {
    header: &'a [u8; OPTIONS_OFFSET],
    options: &'a [u8],
}

impl<'a> Packet<'a> {
    /// `op` is BOOTREQUEST for what the server receives; BOOTREPLY only where the checks of `emit`
    /// read back what it wrote.
    fn new_checked(bytes: &'a [u8], max_frame_bytes: usize, op: u8) -> Result<Self, DropReason> {
        let Some((header, options)) = bytes.split_first_chunk::<OPTIONS_OFFSET>() else {
            return Err(DropReason::Truncated);
        };
        if bytes.len() > max_frame_bytes {
            return Err(DropReason::Oversized);
        }
        if header[OP] != op {
            return Err(DropReason::NotBootRequest);
        }
        if header[HTYPE] != HTYPE_ETHERNET || header[HLEN] != HLEN_ETHERNET {
            return Err(DropReason::UnsupportedHardware);
        }
        if array_at::<4>(header, COOKIE) != MAGIC_COOKIE {
            return Err(DropReason::BadMagicCookie);
        }
        Ok(Packet { header, options })
    }

    fn hops(&self) -> u8 {
        self.header[HOPS]
    }
    fn xid(&self) -> u32 {
        u32::from_be_bytes(array_at(self.header, XID))
    }
    fn secs(&self) -> u16 {
        u16::from_be_bytes(array_at(self.header, SECS))
    }
    fn broadcast(&self) -> bool {
        u16::from_be_bytes(array_at(self.header, FLAGS)) & FLAG_BROADCAST != 0
    }
    fn ciaddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array_at::<4>(self.header, CIADDR))
    }
    fn giaddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array_at::<4>(self.header, GIADDR))
    }
    fn chaddr(&self) -> [u8; 6] {
        array_at(self.header, CHADDR)
    }
    fn sname(&self) -> &'a [u8] {
        self.header.get(SNAME..SNAME + SNAME_LEN).unwrap_or(&[])
    }
    fn file(&self) -> &'a [u8] {
        self.header.get(FILE..FILE + FILE_LEN).unwrap_or(&[])
    }
}

/// `N` bytes of `header` from `at`; the offsets are constants inside the header, so the zero
/// fallback is never taken, but nothing here can panic.
fn array_at<const N: usize>(header: &[u8; OPTIONS_OFFSET], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = header.get(at..at.saturating_add(N)) {
        out.copy_from_slice(src);
    }
    out
}

/// An option's length runs past the end of its field, or a code byte has no length byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Malformed;

/// Walks one option field (RFC 2132 §2): pad is a single byte, end stops the walk, every other
/// option is code, length, value. A field that ends without an end option is accepted (many
/// clients fill the rest of the datagram with pads, some send no end at all).
struct OptionWalker<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for OptionWalker<'a> {
    type Item = Result<(u8, &'a [u8]), Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (&option_code, after_code) = self.rest.split_first()?;
            match option_code {
                code::PAD => self.rest = after_code,
                code::END => {
                    self.rest = &[];
                    return None;
                }
                _ => {
                    let value_and_rest = after_code
                        .split_first()
                        .and_then(|(&len, after_len)| after_len.split_at_checked(usize::from(len)));
                    let Some((value, rest)) = value_and_rest else {
                        self.rest = &[];
                        return Some(Err(Malformed));
                    };
                    self.rest = rest;
                    return Some(Ok((option_code, value)));
                }
            }
        }
    }
}

/// The options of one message, each code once, in order of first appearance. RFC 3396 §7: all
/// instances of a code are concatenated, in the order options field, `file`, `sname`.
struct GatheredOptions<'a> {
    entries: Vec<(u8, Cow<'a, [u8]>)>,
    /// Option code → 1 + its position in `entries`; 0 means absent. There are at most 254
    /// distinct codes (pad and end are never stored), so a `u8` holds every position.
    position: [u8; 256],
}

impl<'a> GatheredOptions<'a> {
    fn new() -> Self {
        GatheredOptions { entries: Vec::with_capacity(16), position: [0; 256] }
    }

    fn gather(&mut self, field: &'a [u8], skip_code: Option<u8>) -> Result<(), Malformed> {
        for option in (OptionWalker { rest: field }) {
            let (option_code, value) = option?;
            if Some(option_code) == skip_code {
                continue;
            }
            let slot = &mut self.position[usize::from(option_code)];
            match (*slot).checked_sub(1).and_then(|at| self.entries.get_mut(usize::from(at))) {
                Some((_, existing)) => existing.to_mut().extend_from_slice(value),
                None => {
                    // pad and end never reach here, so at most 254 entries: the cast cannot fail.
                    *slot = u8::try_from(self.entries.len() + 1).map_err(|_| Malformed)?;
                    self.entries.push((option_code, Cow::Borrowed(value)));
                }
            }
        }
        Ok(())
    }

    fn get(&self, option_code: u8) -> Option<&[u8]> {
        let at = self.position[usize::from(option_code)].checked_sub(1)?;
        self.entries.get(usize::from(at)).map(|(_, value)| value.as_ref())
    }
}

/// The checked header of a datagram whose `op` is `op`, and its options gathered from every field
/// they are in.
fn read(bytes: &[u8], max_frame_bytes: usize, op: u8) -> Result<(Packet<'_>, GatheredOptions<'_>), DropReason> {
    let packet = Packet::new_checked(bytes, max_frame_bytes, op)?;
    let mut options = GatheredOptions::new();
    options.gather(packet.options, None).map_err(|Malformed| DropReason::MalformedOptions)?;
    // RFC 2131 §4.1 / RFC 2132 §9.3: option 52 in the options field says that `file` (1),
    // `sname` (2) or both (3) hold more options, read in that order.
    if let Some(overload) = options.get(code::OVERLOAD) {
        let (use_file, use_sname) = match overload {
            [1] => (true, false),
            [2] => (false, true),
            [3] => (true, true),
            _ => return Err(DropReason::MalformedOptions),
        };
        if use_file {
            options.gather(packet.file(), Some(code::OVERLOAD)).map_err(|Malformed| DropReason::MalformedOptions)?;
        }
        if use_sname {
            options.gather(packet.sname(), Some(code::OVERLOAD)).map_err(|Malformed| DropReason::MalformedOptions)?;
        }
    }
    Ok((packet, options))
}

pub(super) fn parse(bytes: &[u8], max_frame_bytes: usize) -> Result<Request, DropReason> {
    let (packet, options) = read(bytes, max_frame_bytes, BOOTREQUEST)?;

    let message_type = match options.get(code::MESSAGE_TYPE) {
        // RFC 1542 §2: a BOOTREQUEST without option 53 comes from a BOOTP client.
        None => ClientMessageType::Bootp,
        Some([message_type::DISCOVER]) => ClientMessageType::Discover,
        Some([message_type::REQUEST]) => ClientMessageType::Request,
        Some([message_type::DECLINE]) => ClientMessageType::Decline,
        Some([message_type::RELEASE]) => ClientMessageType::Release,
        Some([message_type::INFORM]) => ClientMessageType::Inform,
        Some([_]) => return Err(DropReason::UnexpectedMessageType),
        Some(_) => return Err(DropReason::MalformedOptions),
    };

    let mut request = Request {
        message_type,
        xid: packet.xid(),
        secs: packet.secs(),
        broadcast: packet.broadcast(),
        hops: packet.hops(),
        ciaddr: packet.ciaddr(),
        giaddr: packet.giaddr(),
        chaddr: packet.chaddr(),
        requested_ip: None,
        server_id: None,
        client_id: None,
        hostname: None,
        vendor_class: None,
        user_class: None,
        client_arch: None,
        client_uuid: None,
        parameter_request_list: Vec::new(),
        max_message_size: None,
        relay_agent_info: None,
        subnet_selection: None,
        has_ipxe_option: false,
        other_options: Vec::new(),
    };
    for (option_code, value) in options.entries {
        match option_code {
            code::MESSAGE_TYPE | code::OVERLOAD => {}
            code::REQUESTED_IP => request.requested_ip = Some(address(&value)?),
            code::SERVER_ID => request.server_id = Some(address(&value)?),
            // RFC 2132 §9.14: type byte plus at least one byte of identifier. An empty identifier
            // would make every such client the same client.
            code::CLIENT_ID if value.len() < 2 => return Err(DropReason::MalformedOptions),
            code::CLIENT_ID => request.client_id = Some(value.into_owned()),
            code::HOSTNAME => request.hostname = hostname(&value),
            code::VENDOR_CLASS => request.vendor_class = Some(value.into_owned()),
            code::USER_CLASS => request.user_class = Some(value.into_owned()),
            // RFC 4578 §2.1: a list of 16-bit architecture types, at least one.
            code::CLIENT_ARCH => match value.as_ref() {
                [high, low, rest @ ..] if rest.len() % 2 == 0 => {
                    request.client_arch = Some(u16::from_be_bytes([*high, *low]));
                }
                _ => return Err(DropReason::MalformedOptions),
            },
            code::CLIENT_UUID => request.client_uuid = Some(value.into_owned()),
            code::PARAMETER_REQUEST_LIST => request.parameter_request_list = value.into_owned(),
            code::MAX_MESSAGE_SIZE => match value.as_ref() {
                [high, low] => request.max_message_size = Some(u16::from_be_bytes([*high, *low])),
                _ => return Err(DropReason::MalformedOptions),
            },
            code::RELAY_AGENT_INFO => request.relay_agent_info = Some(value.into_owned()),
            code::SUBNET_SELECTION => request.subnet_selection = Some(address(&value)?),
            code::IPXE => request.has_ipxe_option = true,
            _ => request.other_options.push((option_code, value.into_owned())),
        }
    }
    Ok(request)
}

fn address(value: &[u8]) -> Result<Ipv4Addr, DropReason> {
    <[u8; 4]>::try_from(value).map(Ipv4Addr::from).map_err(|_| DropReason::MalformedOptions)
}

/// Option 12 as text: valid UTF-8, trailing NULs dropped (some clients send a C string), not empty.
fn hostname(value: &[u8]) -> Option<String> {
    let end = value.iter().rposition(|&b| b != 0).map_or(0, |last| last + 1);
    let text = std::str::from_utf8(value.get(..end)?).ok()?;
    (!text.is_empty()).then(|| text.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Send: Reply → layout → bytes
// ---------------------------------------------------------------------------------------------

/// Options written first, in this order, before the client's requested ones.
const HEAD: [u8; 6] = [
    code::MESSAGE_TYPE,
    code::SERVER_ID,
    code::LEASE_TIME,
    code::RENEWAL_TIME,
    code::REBINDING_TIME,
    code::SUBNET_MASK,
];

/// Options every reply keeps, whatever the size limit: without them the reply means nothing (53,
/// 54, 51, 1) or the client or relay must discard it (118: RFC 3011 §3; 82: RFC 3046 §2.2).
pub(super) const REQUIRED: [u8; 6] = [
    code::MESSAGE_TYPE,
    code::SERVER_ID,
    code::LEASE_TIME,
    code::SUBNET_MASK,
    code::SUBNET_SELECTION,
    code::RELAY_AGENT_INFO,
];

/// The `file` field minus its end option, when it carries options (RFC 2131 §4.1).
const FILE_OPTION_BYTES: usize = FILE_LEN - 1;
/// The `sname` field minus its end option.
const SNAME_OPTION_BYTES: usize = SNAME_LEN - 1;
/// Option 52 itself: code, length, value.
const OVERLOAD_OPTION_BYTES: usize = 3;

/// One option value to write, borrowed from the reply.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Byte(u8),
    U32(u32),
    Address(Ipv4Addr),
    Bytes(&'a [u8]),
}

impl Value<'_> {
    fn len(&self) -> usize {
        match self {
            Value::Byte(_) => 1,
            Value::U32(_) | Value::Address(_) => 4,
            Value::Bytes(bytes) => bytes.len(),
        }
    }

    /// Bytes on the wire: a code and length byte per instance of at most 255 bytes (RFC 3396 §5).
    fn wire_len(&self) -> usize {
        let len = self.len();
        len + 2 * len.div_ceil(MAX_OPTION_VALUE_BYTES).max(1)
    }
}

/// An option of the reply, in the order it is sent.
#[derive(Debug, Clone, Copy)]
struct Item<'a> {
    code: u8,
    value: Value<'a>,
}

impl Item<'_> {
    fn required(&self) -> bool {
        REQUIRED.contains(&self.code)
    }
}

fn text(value: &Option<String>) -> Option<Value<'_>> {
    value.as_deref().filter(|v| !v.is_empty()).map(|v| Value::Bytes(v.as_bytes()))
}

fn bytes(value: &Option<Vec<u8>>) -> Option<Value<'_>> {
    value.as_deref().filter(|v| !v.is_empty()).map(Value::Bytes)
}

/// Every option of `reply` in sending order: the head (53, 54, lease times, mask), then the rest in
/// the order of the client's parameter request list (unrequested ones after, as given), then 118
/// and 82, which a relay appends and expects last (RFC 3046 §2.1).
fn items(reply: &Reply) -> Vec<Item<'_>> {
    // A BOOTREPLY carries RFC 1497 vendor extensions only: no message type, server id or lease.
    let message_type = match reply.message_type {
        ReplyType::Offer => Some(message_type::OFFER),
        ReplyType::Ack => Some(message_type::ACK),
        ReplyType::Nak => Some(message_type::NAK),
        ReplyType::Bootp => None,
    };
    let dhcp = message_type.is_some();
    let head = [
        message_type.map(Value::Byte),
        dhcp.then_some(Value::Address(reply.server_id)),
        reply.lease_time_secs.filter(|_| dhcp).map(Value::U32),
        reply.renewal_time_secs.filter(|_| dhcp).map(Value::U32),
        reply.rebinding_time_secs.filter(|_| dhcp).map(Value::U32),
        reply.subnet_mask.map(Value::Address),
    ];
    let mut items: Vec<Item<'_>> =
        HEAD.iter().zip(head).filter_map(|(&code, value)| Some(Item { code, value: value? })).collect();
    let named = [
        (code::TFTP_SERVER_NAME, text(&reply.tftp_server_name)),
        (code::BOOTFILE_NAME, text(&reply.bootfile_name)),
        (code::VENDOR_CLASS, bytes(&reply.vendor_class)),
        (code::CLIENT_UUID, bytes(&reply.client_uuid)),
        (code::CLIENT_ID, bytes(&reply.client_id)),
        (code::MESSAGE, text(&reply.message)),
    ];
    let mut body: Vec<Item<'_>> =
        named.into_iter().filter_map(|(code, value)| Some(Item { code, value: value? })).collect();
    body.extend(reply.options.iter().map(|(code, data)| Item { code: *code, value: Value::Bytes(data) }));
    // Stable: requested options in the client's order, then the others as they came.
    let rank = |code: u8| reply.parameter_request_list.iter().position(|&c| c == code).unwrap_or(usize::MAX);
    body.sort_by_key(|item| rank(item.code));
    items.extend(body);
    if let Some(ip) = reply.subnet_selection {
        items.push(Item { code: code::SUBNET_SELECTION, value: Value::Address(ip) });
    }
    if let Some(info) = bytes(&reply.relay_agent_info) {
        items.push(Item { code: code::RELAY_AGENT_INFO, value: info });
    }
    if !dhcp {
        // RFC 2132 §9: options 50-61, 66 and 67 are DHCP extensions, not BOOTP vendor extensions
        // (a BOOTREPLY's boot file is the `file` field).
        items.retain(|item| !matches!(item.code, 50..=61 | 66 | 67));
    }
    items
}

/// Where an option goes: the options field, or (option overload) the `file` or `sname` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Options,
    File,
    Sname,
}

/// What a reply will look like on the wire: each option's field, and how many bytes in all. `emit`
/// mirrors `parse`: the layout is decided first (`buffer_len`), then every byte is written.
pub(super) struct ReplyLayout<'a> {
    reply: &'a Reply,
    /// Options and the field each goes in, in sending order; dropped ones are not here.
    placed: Vec<(Item<'a>, Field)>,
    dropped: Vec<u8>,
    /// Option 52's value: 1 `file`, 2 `sname`, 3 both; 0 when not overloaded.
    overload: u8,
    /// Fixed header + cookie + options field + end option, before padding.
    unpadded_len: usize,
}

impl<'a> ReplyLayout<'a> {
    /// Lays out `reply` to fit `max_bytes` (raised to `MIN_REPLY_BYTES` if lower).
    pub(super) fn new(reply: &'a Reply, max_bytes: usize) -> Self {
        let items = items(reply);
        let limit = max_bytes.max(MIN_REPLY_BYTES);
        let options_room = limit.saturating_sub(OPTIONS_OFFSET + 1);
        // First try the options field alone; overload only when something would not fit.
        let plain = Self::place(reply, &items, options_room, false);
        // A BOOTP client reads `sname` and `file` as names: no overload for it (option 52 is DHCP's).
        if plain.dropped.is_empty() || reply.message_type == ReplyType::Bootp {
            return plain;
        }
        let overloaded = Self::place(reply, &items, options_room.saturating_sub(OVERLOAD_OPTION_BYTES), true);
        if overloaded.overload == 0 {
            plain
        } else {
            overloaded
        }
    }

    /// First fit, in sending order: required options always go in the options field; the others
    /// where they fit, the options field first, then (`overload`) `file` if no boot file uses it,
    /// then `sname`.
    fn place(reply: &'a Reply, items: &[Item<'a>], options_room: usize, overload: bool) -> Self {
        let required_bytes: usize = items.iter().filter(|i| i.required()).map(|i| i.value.wire_len()).sum();
        let mut room = [
            (Field::Options, options_room.saturating_sub(required_bytes)),
            (Field::File, if overload && reply.file.is_none() { FILE_OPTION_BYTES } else { 0 }),
            (Field::Sname, if overload { SNAME_OPTION_BYTES } else { 0 }),
        ];
        let mut placed = Vec::with_capacity(items.len());
        let mut dropped = Vec::new();
        let mut used_options = required_bytes;
        for item in items {
            let len = item.value.wire_len();
            if item.required() {
                placed.push((*item, Field::Options));
                continue;
            }
            match room.iter_mut().find(|(_, left)| *left >= len) {
                Some((field, left)) => {
                    *left -= len;
                    if *field == Field::Options {
                        used_options += len;
                    }
                    placed.push((*item, *field));
                }
                None => dropped.push(item.code),
            }
        }
        let in_file = placed.iter().any(|(_, f)| *f == Field::File);
        let in_sname = placed.iter().any(|(_, f)| *f == Field::Sname);
        let overload = u8::from(in_file) | (u8::from(in_sname) << 1);
        let overload_bytes = if overload == 0 { 0 } else { OVERLOAD_OPTION_BYTES };
        let unpadded_len = OPTIONS_OFFSET + used_options + overload_bytes + 1;
        ReplyLayout { reply, placed, dropped, overload, unpadded_len }
    }

    /// The datagram size: the laid-out bytes, padded to the BOOTP minimum.
    pub(super) fn buffer_len(&self) -> usize {
        self.unpadded_len.max(MIN_REPLY_BYTES)
    }

    /// Writes every byte of `buf`, which must be `buffer_len()` long (a shorter buffer gets a
    /// truncated datagram, never a panic).
    pub(super) fn emit(&self, buf: &mut [u8]) {
        debug_assert_eq!(buf.len(), self.buffer_len(), "emit buffer not sized by buffer_len()");
        let reply = self.reply;
        let mut w = Writer { buf, at: 0 };
        w.put(&[BOOTREPLY, HTYPE_ETHERNET, HLEN_ETHERNET, 0]);
        w.put(&reply.xid.to_be_bytes());
        debug_assert_eq!(w.at, SECS);
        w.put(&[0, 0]);
        debug_assert_eq!(w.at, FLAGS);
        w.put(&(if reply.broadcast { FLAG_BROADCAST } else { 0 }).to_be_bytes());
        for (offset, address) in
            [(CIADDR, reply.ciaddr), (YIADDR, reply.yiaddr), (SIADDR, reply.siaddr), (GIADDR, reply.giaddr)]
        {
            debug_assert_eq!(w.at, offset);
            w.put(&address.octets());
        }
        debug_assert_eq!(w.at, CHADDR);
        w.put(&reply.chaddr);
        w.zeros(CHADDR_LEN - reply.chaddr.len());
        debug_assert_eq!(w.at, SNAME);
        self.put_field(&mut w, Field::Sname, SNAME_LEN, self.overload & 2 != 0);
        debug_assert_eq!(w.at, FILE);
        if self.overload & 1 != 0 {
            self.put_field(&mut w, Field::File, FILE_LEN, true);
        } else {
            // The boot file name is a NUL-terminated string (RFC 2131 §2): at most 127 bytes. The
            // config guarantees it fits; a longer one is left out (option 67 may still carry it).
            let file = reply.file.as_deref().map(str::as_bytes).filter(|f| f.len() < FILE_LEN).unwrap_or(&[]);
            w.put(file);
            w.zeros(FILE_LEN - file.len());
        }
        debug_assert_eq!(w.at, COOKIE);
        w.put(&MAGIC_COOKIE);
        let mut wrote_overload = self.overload == 0;
        for (item, field) in &self.placed {
            if *field != Field::Options {
                continue;
            }
            put_option(&mut w, item);
            // Option 52 right after the head's message type (RFC 2131 §4.1: in the options field).
            if !wrote_overload && item.code == code::MESSAGE_TYPE {
                w.put(&[code::OVERLOAD, 1, self.overload]);
                wrote_overload = true;
            }
        }
        if !wrote_overload {
            // A BOOTREPLY has no option 53.
            w.put(&[code::OVERLOAD, 1, self.overload]);
        }
        w.put(&[code::END]);
        let padding = w.buf.len().saturating_sub(w.at);
        w.zeros(padding);
        debug_assert_eq!(w.at, self.buffer_len(), "emit wrote a different length than laid out");
    }

    /// `len` bytes of the `file` or `sname` field: its options and an end option when `used`,
    /// zeros otherwise.
    fn put_field(&self, w: &mut Writer<'_>, field: Field, len: usize, used: bool) {
        let start = w.at;
        if used {
            for (item, _) in self.placed.iter().filter(|(_, f)| *f == field) {
                put_option(w, item);
            }
            w.put(&[code::END]);
        }
        let written = w.at - start;
        w.zeros(len.saturating_sub(written));
    }

    pub(super) fn dropped(&self) -> &[u8] {
        &self.dropped
    }
}

/// One option: code, length, value; a value over 255 bytes as several instances (RFC 3396 §5).
fn put_option(w: &mut Writer<'_>, item: &Item<'_>) {
    let (scalar, data): ([u8; 4], &[u8]) = match item.value {
        Value::Byte(b) => ([b, 0, 0, 0], &[]),
        Value::U32(n) => (n.to_be_bytes(), &[]),
        Value::Address(address) => (address.octets(), &[]),
        Value::Bytes(bytes) => ([0; 4], bytes),
    };
    let data = match item.value {
        Value::Bytes(_) => data,
        _ => &scalar[..item.value.len()],
    };
    for instance in instances(data) {
        w.put(&[item.code, instance_len(instance)]);
        w.put(instance);
    }
}

/// The instances an option's `data` goes out as: at most 255 bytes each (RFC 3396 §5), and one
/// empty instance for empty data.
fn instances(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let empty: Option<&[u8]> = data.is_empty().then_some(&[]);
    data.chunks(MAX_OPTION_VALUE_BYTES).chain(empty)
}

/// The length byte of one instance (`instances` makes none longer than 255 bytes).
fn instance_len(instance: &[u8]) -> u8 {
    u8::try_from(instance.len()).unwrap_or(u8::MAX)
}

/// A cursor that writes into a fixed buffer and never panics: bytes past the end are dropped
/// (the layout sizes the buffer, so that only happens on a bug, which the debug assertion shows).
struct Writer<'b> {
    buf: &'b mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.at.saturating_add(bytes.len());
        let slot = self.buf.get_mut(self.at..end);
        debug_assert!(slot.is_some(), "reply layout smaller than what emit writes");
        if let Some(slot) = slot {
            slot.copy_from_slice(bytes);
        }
        self.at = end;
    }

    fn zeros(&mut self, count: usize) {
        let end = self.at.saturating_add(count);
        let slot = self.buf.get_mut(self.at..end);
        debug_assert!(slot.is_some(), "reply layout smaller than what emit writes");
        if let Some(slot) = slot {
            slot.fill(0);
        }
        self.at = end;
    }
}

pub(super) fn emit(reply: &Reply, max_bytes: usize) -> super::Emitted {
    let layout = ReplyLayout::new(reply, max_bytes);
    let mut bytes = vec![0u8; layout.buffer_len()];
    layout.emit(&mut bytes);
    super::Emitted { bytes, dropped: layout.dropped().to_vec() }
}

// ---------------------------------------------------------------------------------------------
// The mirror images, for checks: Request → bytes, and a reply's bytes → its options
// ---------------------------------------------------------------------------------------------

pub(super) fn emit_request(request: &Request) -> Vec<u8> {
    let mut out = Vec::with_capacity(MIN_REPLY_BYTES);
    out.extend_from_slice(&[BOOTREQUEST, HTYPE_ETHERNET, HLEN_ETHERNET, request.hops]);
    out.extend_from_slice(&request.xid.to_be_bytes());
    out.extend_from_slice(&request.secs.to_be_bytes());
    out.extend_from_slice(&(if request.broadcast { FLAG_BROADCAST } else { 0 }).to_be_bytes());
    for address in [request.ciaddr, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, request.giaddr] {
        out.extend_from_slice(&address.octets());
    }
    out.extend_from_slice(&request.chaddr);
    out.resize(HEADER_LEN, 0); // the rest of chaddr, sname and file
    out.extend_from_slice(&MAGIC_COOKIE);

    let message_type = match request.message_type {
        ClientMessageType::Discover => Some(message_type::DISCOVER),
        ClientMessageType::Request => Some(message_type::REQUEST),
        ClientMessageType::Decline => Some(message_type::DECLINE),
        ClientMessageType::Release => Some(message_type::RELEASE),
        ClientMessageType::Inform => Some(message_type::INFORM),
        ClientMessageType::Bootp => None,
    };
    let address = |ip: Option<Ipv4Addr>| ip.map(|ip| ip.octets().to_vec());
    let named: [(u8, Option<Vec<u8>>); 14] = [
        (code::MESSAGE_TYPE, message_type.map(|t| vec![t])),
        (code::REQUESTED_IP, address(request.requested_ip)),
        (code::SERVER_ID, address(request.server_id)),
        (code::CLIENT_ID, request.client_id.clone()),
        (code::HOSTNAME, request.hostname.as_ref().map(|h| h.as_bytes().to_vec())),
        (code::VENDOR_CLASS, request.vendor_class.clone()),
        (code::USER_CLASS, request.user_class.clone()),
        (code::CLIENT_ARCH, request.client_arch.map(|arch| arch.to_be_bytes().to_vec())),
        (code::CLIENT_UUID, request.client_uuid.clone()),
        // Absent and empty read the same (an empty list asks for nothing).
        (code::PARAMETER_REQUEST_LIST, Some(request.parameter_request_list.clone()).filter(|l| !l.is_empty())),
        (code::MAX_MESSAGE_SIZE, request.max_message_size.map(|size| size.to_be_bytes().to_vec())),
        (code::RELAY_AGENT_INFO, request.relay_agent_info.clone()),
        (code::SUBNET_SELECTION, address(request.subnet_selection)),
        (code::IPXE, request.has_ipxe_option.then(Vec::new)),
    ];
    let present = named.iter().filter_map(|(option_code, value)| Some((*option_code, value.as_deref()?)));
    let others = request.other_options.iter().map(|(option_code, value)| (*option_code, value.as_slice()));
    for (option_code, value) in present.chain(others) {
        for instance in instances(value) {
            out.extend_from_slice(&[option_code, instance_len(instance)]);
            out.extend_from_slice(instance);
        }
    }
    out.push(code::END);
    out
}

pub(super) fn reply_options(bytes: &[u8]) -> Option<Vec<(u8, Vec<u8>)>> {
    let (_, options) = read(bytes, usize::MAX, BOOTREPLY).ok()?;
    Some(options.entries.into_iter().map(|(option_code, value)| (option_code, value.into_owned())).collect())
}
