//! DHCPv4 on the wire, in two layers (the codec module): a checked view of the bytes (op,
//! htype/hlen, magic cookie, frame size, option framing) turned into a narrow, validated `Request`,
//! and a `Reply` laid out and written back into bytes. The codec walks the options itself;
//! dhcproto is the reference decoder its tests check against (see the codec module for why).
//! Hostile input never panics: it becomes a `DropReason`, which the parser actor counts.

use std::net::Ipv4Addr;

/// A client message type the server acts on (RFC 2131 §3, option 53), or a BOOTP request: a
/// BOOTREQUEST without option 53 (RFC 951, RFC 1542).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientMessageType {
    Discover,
    Request,
    Decline,
    Release,
    Inform,
    Bootp,
}

/// A validated client request: only what the engine needs, every field checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub message_type: ClientMessageType,
    pub xid: u32,
    pub secs: u16,
    /// The BROADCAST flag (RFC 2131 §2, figure 2).
    pub broadcast: bool,
    pub hops: u8,
    pub ciaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    /// Ethernet hardware address (htype 1, hlen 6 are checked).
    pub chaddr: [u8; 6],
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 61, raw (type byte included).
    pub client_id: Option<Vec<u8>>,
    /// Option 12, when valid UTF-8.
    pub hostname: Option<String>,
    /// Option 60, raw.
    pub vendor_class: Option<Vec<u8>>,
    /// Option 77, raw.
    pub user_class: Option<Vec<u8>>,
    /// Option 93: the first architecture the client lists (RFC 4578 §2.1).
    pub client_arch: Option<u16>,
    /// Option 97, raw (RFC 4578 §2.3).
    pub client_uuid: Option<Vec<u8>>,
    /// Option 55.
    pub parameter_request_list: Vec<u8>,
    /// Option 57.
    pub max_message_size: Option<u16>,
    /// Option 82 (RFC 3046), raw: echoed back to the relay.
    pub relay_agent_info: Option<Vec<u8>>,
    /// Option 118 (RFC 3011): the subnet the client asks to be served from.
    pub subnet_selection: Option<Ipv4Addr>,
    /// iPXE's own option 175 was present.
    pub has_ipxe_option: bool,
    /// Every option not named above, kept as data (code, bytes).
    pub other_options: Vec<(u8, Vec<u8>)>,
}

impl Request {
    /// A request of `message_type` from `chaddr` with transaction `xid` and nothing else: every
    /// address zero, no flags, no options. Tests and the simulation build theirs from it.
    pub fn new(message_type: ClientMessageType, xid: u32, chaddr: [u8; 6]) -> Request {
        Request {
            message_type,
            xid,
            secs: 0,
            broadcast: false,
            hops: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
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
        }
    }

    /// A PXE ROM: option 60 starts with `PXEClient` (PXE spec 2.1, RFC 4578).
    pub fn is_pxe_client(&self) -> bool {
        self.vendor_class.as_deref().is_some_and(|v| v.starts_with(b"PXEClient"))
    }

    /// UEFI HTTP boot firmware: option 60 starts with `HTTPClient` (UEFI 2.5+ §24.7).
    pub fn is_http_boot_client(&self) -> bool {
        self.vendor_class.as_deref().is_some_and(|v| v.starts_with(b"HTTPClient"))
    }

    /// Already running iPXE: user class `iPXE` or option 175. Such a client gets the iPXE script
    /// instead of a ROM image, so it does not chainload itself forever.
    pub fn is_ipxe(&self) -> bool {
        self.has_ipxe_option || self.user_class.as_deref().is_some_and(user_class_is_ipxe)
    }
}

/// RFC 3004 user class data is `len, bytes` runs; iPXE sends the bare string `iPXE`. Accept both.
fn user_class_is_ipxe(raw: &[u8]) -> bool {
    raw == b"iPXE" || (raw.len() > 1 && usize::from(raw[0]) == raw.len() - 1 && &raw[1..] == b"iPXE")
}

/// Why a datagram was dropped. `label()` is the metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Shorter than the fixed header plus the magic cookie.
    Truncated,
    /// Longer than `max_frame_bytes`.
    Oversized,
    /// `op` is not BOOTREQUEST.
    NotBootRequest,
    /// `htype`/`hlen` is not Ethernet (1/6).
    UnsupportedHardware,
    /// The magic cookie is not 99.130.83.99.
    BadMagicCookie,
    /// The options could not be decoded (lengths past the end, bad contents).
    MalformedOptions,
    /// Option 53 is a server's message type or unknown.
    UnexpectedMessageType,
    /// The parser's mailbox was full.
    Overloaded,
    /// Well formed but the engine has no pool / nothing to say (counted separately by the engine).
    NoPool,
    /// Too many proposals waiting for commit.
    ProposalBacklog,
}

impl DropReason {
    pub const ALL: [DropReason; 10] = [
        DropReason::Truncated,
        DropReason::Oversized,
        DropReason::NotBootRequest,
        DropReason::UnsupportedHardware,
        DropReason::BadMagicCookie,
        DropReason::MalformedOptions,
        DropReason::UnexpectedMessageType,
        DropReason::Overloaded,
        DropReason::NoPool,
        DropReason::ProposalBacklog,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::Oversized => "oversized",
            DropReason::NotBootRequest => "not_bootrequest",
            DropReason::UnsupportedHardware => "unsupported_hardware",
            DropReason::BadMagicCookie => "bad_magic_cookie",
            DropReason::MalformedOptions => "malformed_options",
            DropReason::UnexpectedMessageType => "unexpected_message_type",
            DropReason::Overloaded => "overloaded",
            DropReason::NoPool => "no_pool",
            DropReason::ProposalBacklog => "proposal_backlog",
        }
    }

    pub fn index(self) -> usize {
        DropReason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// A server message type (option 53), or a BOOTREPLY to a BOOTP client (no option 53, RFC 1542).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyType {
    Offer,
    Ack,
    Nak,
    Bootp,
}

/// A reply to encode. The engine fills it; `emit` turns it into bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub message_type: ReplyType,
    pub xid: u32,
    pub broadcast: bool,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    /// Next server (TFTP) for PXE ROMs that read only the header.
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub chaddr: [u8; 6],
    /// The header's `file` field (boot file), at most 127 bytes.
    pub file: Option<String>,
    /// Option 54.
    pub server_id: Ipv4Addr,
    /// Option 51.
    pub lease_time_secs: Option<u32>,
    /// Option 58.
    pub renewal_time_secs: Option<u32>,
    /// Option 59.
    pub rebinding_time_secs: Option<u32>,
    /// Option 1.
    pub subnet_mask: Option<Ipv4Addr>,
    /// The configuration options the client gets (routers, DNS servers, domain name, host name and
    /// every configured option the engine chose), as (code, data), in no particular order: `emit`
    /// sends them in the order of the client's parameter request list. Data over 255 bytes is split
    /// into several instances (RFC 3396).
    pub options: Vec<(u8, Vec<u8>)>,
    /// Option 66.
    pub tftp_server_name: Option<String>,
    /// Option 67.
    pub bootfile_name: Option<String>,
    /// Option 60: `HTTPClient` to UEFI HTTP boot clients (see the engine's boot module).
    pub vendor_class: Option<Vec<u8>>,
    /// Option 97, echoed to network-boot clients.
    pub client_uuid: Option<Vec<u8>>,
    /// Option 61, echoed (RFC 6842).
    pub client_id: Option<Vec<u8>>,
    /// Option 118, echoed to a client that sent it and was served by it (RFC 3011 §3).
    pub subnet_selection: Option<Ipv4Addr>,
    /// Option 82, echoed to the relay (RFC 3046 §2.2).
    pub relay_agent_info: Option<Vec<u8>>,
    /// Option 56, mostly for NAKs.
    pub message: Option<String>,
    /// The request's option 55: options go out in this order (RFC 2132 §9.8).
    pub parameter_request_list: Vec<u8>,
}

impl Reply {
    /// A reply of `message_type` to `request` from `server_id` with nothing but what every reply
    /// carries: the request's xid, flags, giaddr and chaddr, and options 61 and 82 echoed (RFC 6842,
    /// RFC 3046 §2.2). The engine fills in the rest.
    pub fn answering(request: &Request, message_type: ReplyType, server_id: Ipv4Addr) -> Reply {
        Reply {
            message_type,
            xid: request.xid,
            broadcast: request.broadcast,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: request.giaddr,
            chaddr: request.chaddr,
            file: None,
            server_id,
            lease_time_secs: None,
            renewal_time_secs: None,
            rebinding_time_secs: None,
            subnet_mask: None,
            options: Vec::new(),
            tftp_server_name: None,
            bootfile_name: None,
            vendor_class: None,
            client_uuid: None,
            client_id: request.client_id.clone(),
            subnet_selection: None,
            relay_agent_info: request.relay_agent_info.clone(),
            message: None,
            parameter_request_list: request.parameter_request_list.clone(),
        }
    }

    /// The data of configuration option `code`, if the reply carries it.
    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options.iter().find(|(c, _)| *c == code).map(|(_, data)| data.as_slice())
    }
}

/// Where a reply goes (RFC 2131 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// To the relay at `giaddr`, server port 67.
    Relay(Ipv4Addr),
    /// To the client's configured address `ciaddr`, client port 68.
    Unicast(Ipv4Addr),
    /// To 255.255.255.255, client port 68, on the interface the request came in on.
    Broadcast,
}

impl Destination {
    /// RFC 2131 §4.1: giaddr set → relay; else NAK → broadcast; else ciaddr set → unicast; else
    /// broadcast (the unicast-to-chaddr case is also broadcast: clients accept both, and it needs no
    /// ARP table writes).
    pub fn for_reply(request: &Request, reply_type: ReplyType) -> Destination {
        if request.giaddr != Ipv4Addr::UNSPECIFIED {
            Destination::Relay(request.giaddr)
        } else if reply_type == ReplyType::Nak {
            Destination::Broadcast
        } else if request.ciaddr != Ipv4Addr::UNSPECIFIED {
            Destination::Unicast(request.ciaddr)
        } else {
            Destination::Broadcast
        }
    }
}

/// Parse a datagram into a validated request.
pub fn parse(bytes: &[u8], max_frame_bytes: usize) -> Result<Request, DropReason> {
    codec::parse(bytes, max_frame_bytes)
}

/// An encoded reply, and the options that did not fit it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emitted {
    pub bytes: Vec<u8>,
    /// Codes of the options left out, for the drop counter.
    pub dropped: Vec<u8>,
}

/// Encode a reply. The result is at least 300 bytes (the BOOTP minimum, RFC 951 §3: padded) and at
/// most `max_bytes` (a `max_bytes` under 300 counts as 300). Options go in the order of the client's
/// parameter request list; when they do not fit the options field, the `file` (if no boot file
/// uses it) and `sname` fields carry the rest (option overload, RFC 2131 §4.1, RFC 2132 §9.3); an
/// option that fits nowhere is left out and reported. 53, 54, 51, 1, 118 and 82 always stay.
pub fn emit(reply: &Reply, max_bytes: usize) -> Emitted {
    codec::emit(reply, max_bytes)
}

/// Encode a request as a client would send it: the mirror image of `parse`, so that
/// `parse(&emit_request(&r), usize::MAX) == Ok(r)` for every `r` that `parse` returns (the
/// `wire_round_trip` fuzz target checks it). Everything goes in the options field, values over 255
/// bytes as several instances (RFC 3396), unpadded. The server never sends a request; tests and
/// the fuzz targets do.
pub fn emit_request(request: &Request) -> Vec<u8> {
    codec::emit_request(request)
}

/// The options of a reply that `emit` wrote, as a client reads them: every instance of a code
/// joined (RFC 3396), `file` and `sname` read when option 52 says so, in order of first
/// appearance. `None` if the bytes are not a well-formed BOOTREPLY. For the checks of `emit` only.
#[doc(hidden)]
pub fn reply_options(bytes: &[u8]) -> Option<Vec<(u8, Vec<u8>)>> {
    codec::reply_options(bytes)
}

mod codec;

#[cfg(test)]
mod tests;
