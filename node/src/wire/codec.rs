//! The DHCPv4 byte layout (RFC 2131 §2, RFC 2132): a checked view of a received datagram turned
//! into a `Request`, and a `Reply` turned into bytes. This module owns the 236-byte fixed header,
//! the magic cookie, the option TLVs (pad, end, RFC 3396 concatenation, RFC 2131 §4.1 option
//! overload) and the order and size budget of the options we send.
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
//! - its encoder orders options by code and does not pad to the BOOTP minimum.
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
/// RFC 2132 §2: an option value is at most 255 bytes (longer values would need RFC 3396 splitting,
/// which no reply of ours needs).
pub(super) const MAX_OPTION_VALUE_BYTES: usize = 255;
/// The most addresses that fit one option value (63 × 4 = 252 bytes).
const MAX_ADDRESSES_PER_OPTION: usize = MAX_OPTION_VALUE_BYTES / 4;

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
    pub const ROUTER: u8 = 3;
    pub const DNS_SERVERS: u8 = 6;
    pub const HOSTNAME: u8 = 12;
    pub const DOMAIN_NAME: u8 = 15;
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
    fn new_checked(bytes: &'a [u8], max_frame_bytes: usize) -> Result<Self, DropReason> {
        let Some((header, options)) = bytes.split_first_chunk::<OPTIONS_OFFSET>() else {
            return Err(DropReason::Truncated);
        };
        if bytes.len() > max_frame_bytes {
            return Err(DropReason::Oversized);
        }
        if header[OP] != BOOTREQUEST {
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

pub(super) fn parse(bytes: &[u8], max_frame_bytes: usize) -> Result<Request, DropReason> {
    let packet = Packet::new_checked(bytes, max_frame_bytes)?;

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

    let message_type = match options.get(code::MESSAGE_TYPE) {
        None => return Err(DropReason::NoMessageType),
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

/// A byte value that can be one option: not empty, at most 255 bytes.
fn bytes_value(value: Option<&[u8]>) -> Option<Value<'_>> {
    value.filter(|v| !v.is_empty() && v.len() <= MAX_OPTION_VALUE_BYTES).map(Value::Bytes)
}

/// An address list as one option: not empty, at most 63 addresses.
fn addresses_value(list: &[Ipv4Addr]) -> Option<Value<'_>> {
    let list = list.get(..list.len().min(MAX_ADDRESSES_PER_OPTION)).unwrap_or(&[]);
    (!list.is_empty()).then_some(Value::Addresses(list))
}

/// The options a reply may carry, in the order they are written. Option 82 is last
/// (RFC 3046 §2.1: the relay agent information option follows all other options).
pub(super) const EMIT_ORDER: [u8; 18] = [
    code::MESSAGE_TYPE,
    code::SERVER_ID,
    code::LEASE_TIME,
    code::RENEWAL_TIME,
    code::REBINDING_TIME,
    code::SUBNET_MASK,
    code::ROUTER,
    code::DNS_SERVERS,
    code::DOMAIN_NAME,
    code::HOSTNAME,
    code::TFTP_SERVER_NAME,
    code::BOOTFILE_NAME,
    code::VENDOR_CLASS,
    code::CLIENT_UUID,
    code::CLIENT_ID,
    code::MESSAGE,
    code::SUBNET_SELECTION,
    code::RELAY_AGENT_INFO,
];

/// When a reply would exceed its size limit, optional options are left out in this order until it
/// fits. 53, 54, 51 and 1 are never left out (with the 300-byte floor they always fit). T1/T2 go
/// early because RFC 2131 §4.4.5 gives defaults; the PXE options and the relay's option 82 go last
/// (ROMs also read `siaddr`/`file` from the header, so 66/67 go before 60), and 118 just before 82: a
/// client that sent 118 discards a reply without it (RFC 3011 §3).
pub(super) const SHED_ORDER: [u8; 14] = [
    code::MESSAGE,
    code::DOMAIN_NAME,
    code::HOSTNAME,
    code::DNS_SERVERS,
    code::CLIENT_ID,
    code::REBINDING_TIME,
    code::RENEWAL_TIME,
    code::CLIENT_UUID,
    code::TFTP_SERVER_NAME,
    code::BOOTFILE_NAME,
    code::ROUTER,
    code::VENDOR_CLASS,
    code::SUBNET_SELECTION,
    code::RELAY_AGENT_INFO,
];

/// One option value to write, borrowed from the reply.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Byte(u8),
    U32(u32),
    Address(Ipv4Addr),
    Addresses(&'a [Ipv4Addr]),
    Bytes(&'a [u8]),
}

impl Value<'_> {
    fn len(&self) -> usize {
        match self {
            Value::Byte(_) => 1,
            Value::U32(_) | Value::Address(_) => 4,
            Value::Addresses(addresses) => 4 * addresses.len(),
            Value::Bytes(bytes) => bytes.len(),
        }
    }
}

/// Bytes for `option_code` from `reply`, if it has a value that can be written. Empty values are
/// not written (RFC 2132 gives every option we send a minimum length of 1), byte values longer than
/// 255 are not written (they cannot be one option), address lists are cut to 63 addresses.
fn value_for(reply: &Reply, option_code: u8) -> Option<Value<'_>> {
    match option_code {
        code::MESSAGE_TYPE => Some(Value::Byte(match reply.message_type {
            ReplyType::Offer => message_type::OFFER,
            ReplyType::Ack => message_type::ACK,
            ReplyType::Nak => message_type::NAK,
        })),
        code::SERVER_ID => Some(Value::Address(reply.server_id)),
        code::LEASE_TIME => reply.lease_time_secs.map(Value::U32),
        code::RENEWAL_TIME => reply.renewal_time_secs.map(Value::U32),
        code::REBINDING_TIME => reply.rebinding_time_secs.map(Value::U32),
        code::SUBNET_MASK => reply.subnet_mask.map(Value::Address),
        code::ROUTER => addresses_value(&reply.routers),
        code::DNS_SERVERS => addresses_value(&reply.dns_servers),
        code::DOMAIN_NAME => bytes_value(reply.domain_name.as_deref().map(str::as_bytes)),
        code::HOSTNAME => bytes_value(reply.hostname.as_deref().map(str::as_bytes)),
        code::TFTP_SERVER_NAME => bytes_value(reply.tftp_server_name.as_deref().map(str::as_bytes)),
        code::BOOTFILE_NAME => bytes_value(reply.bootfile_name.as_deref().map(str::as_bytes)),
        code::VENDOR_CLASS => bytes_value(reply.vendor_class.as_deref()),
        code::CLIENT_UUID => bytes_value(reply.client_uuid.as_deref()),
        code::CLIENT_ID => bytes_value(reply.client_id.as_deref()),
        code::MESSAGE => bytes_value(reply.message.as_deref().map(str::as_bytes)),
        code::SUBNET_SELECTION => reply.subnet_selection.map(Value::Address),
        code::RELAY_AGENT_INFO => bytes_value(reply.relay_agent_info.as_deref()),
        _ => None,
    }
}

/// What a reply will look like on the wire: which options, and how many bytes in all. `emit`
/// mirrors `parse`: the layout is decided first (`buffer_len`), then every byte is written.
pub(super) struct ReplyLayout<'a> {
    reply: &'a Reply,
    /// `options[i]` is the value of `EMIT_ORDER[i]`, or `None` when it is not written.
    options: [Option<Value<'a>>; EMIT_ORDER.len()],
    /// Fixed header + cookie + options + end option, before padding.
    unpadded_len: usize,
}

impl<'a> ReplyLayout<'a> {
    /// Lays out `reply` to fit `max_bytes` (raised to `MIN_REPLY_BYTES` if lower).
    pub(super) fn new(reply: &'a Reply, max_bytes: usize) -> Self {
        let mut options = EMIT_ORDER.map(|option_code| value_for(reply, option_code));
        let option_bytes: usize = options.iter().flatten().map(|value| 2 + value.len()).sum();
        let mut unpadded_len = OPTIONS_OFFSET + option_bytes + 1;
        let limit = max_bytes.max(MIN_REPLY_BYTES);
        for shed in SHED_ORDER {
            if unpadded_len <= limit {
                break;
            }
            let slot = EMIT_ORDER.iter().position(|&c| c == shed).and_then(|at| options.get_mut(at));
            if let Some(value) = slot.and_then(Option::take) {
                unpadded_len -= 2 + value.len();
            }
        }
        ReplyLayout { reply, options, unpadded_len }
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
        w.zeros(SNAME_LEN);
        debug_assert_eq!(w.at, FILE);
        // The boot file name is a NUL-terminated string (RFC 2131 §2): at most 127 bytes. The config
        // guarantees it fits; a longer one is left out (option 67 may still carry it), never cut.
        let file = reply.file.as_deref().map(str::as_bytes).filter(|f| f.len() < FILE_LEN).unwrap_or(&[]);
        w.put(file);
        w.zeros(FILE_LEN - file.len());
        debug_assert_eq!(w.at, COOKIE);
        w.put(&MAGIC_COOKIE);
        for (&option_code, value) in EMIT_ORDER.iter().zip(&self.options) {
            let Some(value) = value else { continue };
            // value_for() keeps every value at most 255 bytes.
            w.put(&[option_code, u8::try_from(value.len()).unwrap_or(u8::MAX)]);
            match value {
                Value::Byte(b) => w.put(&[*b]),
                Value::U32(n) => w.put(&n.to_be_bytes()),
                Value::Address(address) => w.put(&address.octets()),
                Value::Addresses(addresses) => addresses.iter().for_each(|a| w.put(&a.octets())),
                Value::Bytes(bytes) => w.put(bytes),
            }
        }
        w.put(&[code::END]);
        let padding = w.buf.len().saturating_sub(w.at);
        w.zeros(padding);
        debug_assert_eq!(w.at, self.buffer_len(), "emit wrote a different length than laid out");
    }
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

pub(super) fn emit(reply: &Reply, max_bytes: usize) -> Vec<u8> {
    let layout = ReplyLayout::new(reply, max_bytes);
    let mut buf = vec![0u8; layout.buffer_len()];
    layout.emit(&mut buf);
    buf
}
