//! The packets of the test client: client messages built byte by byte (so a test controls every
//! field and option, in order), and server replies read into a `ReplyView` (typed fields through
//! dhcproto, plus every option's raw bytes in wire order).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

pub use dhcproto::v4::MessageType;
use dhcproto::v4::{DhcpOption, Message, OptionCode};
use dhcproto::{Decodable, Decoder};

/// An Ethernet hardware address.
pub type Mac = [u8; 6];

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;
/// RFC 2131 §3: the first four bytes of the options field.
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// The fixed header plus the cookie (RFC 2131 §2).
pub const OPTIONS_OFFSET: usize = 240;
/// Clients pad their messages to the BOOTP size (RFC 951 §3), like dhclient does.
pub const MIN_MESSAGE_BYTES: usize = 300;
/// dhclient's parameter request list, plus 66/67 so boot options show up in replies.
pub const DEFAULT_PARAMETER_REQUEST_LIST: [u8; 14] = [1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 66, 67];

/// The message a test client sends (RFC 2131 §3, §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMessage {
    /// Option 50 optional (RFC 2131 §4.4.1: a client MAY ask for its previous address).
    Discover {
        requested_ip: Option<Ipv4Addr>,
    },
    Request(RequestState),
    /// RFC 2131 §4.4.1: `address` in option 50, the server's id in 54, ciaddr 0.
    Decline {
        address: Ipv4Addr,
        server_id: Ipv4Addr,
    },
    /// RFC 2131 §4.4.6: `address` in ciaddr, the server's id in 54.
    Release {
        address: Ipv4Addr,
        server_id: Ipv4Addr,
    },
    /// RFC 2131 §4.4.3: the configured address in ciaddr, no 50/54.
    Inform {
        address: Ipv4Addr,
    },
    /// RFC 951 / RFC 1542: a BOOTP request: no option 53 at all, vendor extensions (RFC 1497) only.
    Bootp,
}

/// The four REQUEST states of RFC 2131 §4.3.2 (table 4 and 5: which of ciaddr, 50, 54 are set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    /// After an OFFER: option 50 = offered address, option 54 = the offering server, ciaddr 0.
    Selecting { requested_ip: Ipv4Addr, server_id: Ipv4Addr },
    /// After a reboot: option 50 = the previous address, no 54, ciaddr 0 (broadcast).
    InitReboot { requested_ip: Ipv4Addr },
    /// At T1: ciaddr = the address, no 50/54, unicast to the server.
    Renewing { ciaddr: Ipv4Addr },
    /// At T2: ciaddr = the address, no 50/54, broadcast.
    Rebinding { ciaddr: Ipv4Addr },
}

/// Header fields and options a test adds to any message. Options are written in this order:
/// 53, 50, 54, 61, 12, 57, 60, 93, 97, 77, 55, then `extra` as given, then 82 (a relay appends
/// it, RFC 3046 §2.1), then end, then padding to 300 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// The BROADCAST flag (RFC 2131 §2). On by default: a test client impersonating many MACs
    /// cannot receive replies unicast to addresses it does not have.
    pub broadcast: bool,
    pub secs: u16,
    /// Set to act as a relay agent (RFC 3046): the server answers to `giaddr`, port 67.
    pub giaddr: Ipv4Addr,
    pub hops: u8,
    /// Option 61, raw: type byte then identifier (RFC 2132 §9.14).
    pub client_id: Option<Vec<u8>>,
    /// Option 12.
    pub hostname: Option<String>,
    /// Option 57.
    pub max_message_size: Option<u16>,
    /// Option 60, raw.
    pub vendor_class: Option<Vec<u8>>,
    /// Option 93, one architecture (RFC 4578 §2.1).
    pub client_arch: Option<u16>,
    /// Option 97, raw: type byte 0 then the 16-byte UUID (RFC 4578 §2.3).
    pub client_uuid: Option<Vec<u8>>,
    /// Option 77, raw (iPXE sends the bare string `iPXE`).
    pub user_class: Option<Vec<u8>>,
    /// Option 55; empty = not sent.
    pub parameter_request_list: Vec<u8>,
    /// Any other options, written as given (a value over 255 bytes is written as several
    /// instances, RFC 3396).
    pub extra: Vec<(u8, Vec<u8>)>,
    /// Option 82, raw sub-options, written last.
    pub relay_agent_info: Option<Vec<u8>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            broadcast: true,
            secs: 0,
            giaddr: Ipv4Addr::UNSPECIFIED,
            hops: 0,
            client_id: None,
            hostname: None,
            max_message_size: None,
            vendor_class: None,
            client_arch: None,
            client_uuid: None,
            user_class: None,
            parameter_request_list: DEFAULT_PARAMETER_REQUEST_LIST.to_vec(),
            extra: Vec::new(),
            relay_agent_info: None,
        }
    }
}

/// RFC 4578 §2.1 architecture types used by the PXE tests.
pub mod arch {
    pub const BIOS: u16 = 0;
    pub const EFI_IA32: u16 = 6;
    pub const EFI_X64: u16 = 7;
    pub const EFI_X64_HTTP: u16 = 16;
    pub const EFI_ARM64: u16 = 11;
}

impl ClientOptions {
    /// What a PXE ROM sends (PXE 2.1, RFC 4578): option 60 `PXEClient:Arch:NNNNN:UNDI:002001`,
    /// 93 = `arch`, 94 = UNDI 2.1, 97 = type 0 + `uuid`, 57 = 1472, client id = type 1 + MAC.
    pub fn pxe(mac: Mac, arch: u16, uuid: [u8; 16]) -> Self {
        let mut client_uuid = vec![0];
        client_uuid.extend_from_slice(&uuid);
        ClientOptions {
            client_id: Some(ethernet_client_id(mac)),
            max_message_size: Some(1472),
            vendor_class: Some(format!("PXEClient:Arch:{arch:05}:UNDI:002001").into_bytes()),
            client_arch: Some(arch),
            client_uuid: Some(client_uuid),
            parameter_request_list: vec![
                1, 3, 6, 7, 12, 15, 17, 26, 43, 60, 66, 67, 128, 129, 130, 131, 132, 133, 134, 135,
            ],
            extra: vec![(94, vec![1, 2, 1])],
            ..ClientOptions::default()
        }
    }

    /// iPXE after chainloading (qemu's iPXE ROM too): a PXE DISCOVER plus user class `iPXE` and
    /// iPXE's option 175 (encapsulated feature flags).
    pub fn ipxe(mac: Mac, arch: u16, uuid: [u8; 16]) -> Self {
        let mut options = ClientOptions::pxe(mac, arch, uuid);
        options.user_class = Some(b"iPXE".to_vec());
        options.parameter_request_list.push(175);
        options.extra.push((175, vec![0x13, 1, 1, 0x11, 1, 1, 0x15, 1, 1]));
        options
    }
}

/// Option 61 as most clients send it: hardware type 1, then the MAC (RFC 2132 §9.14).
pub fn ethernet_client_id(mac: Mac) -> Vec<u8> {
    let mut id = vec![1];
    id.extend_from_slice(&mac);
    id
}

/// Builds the BOOTREQUEST bytes of `message` from `mac` with transaction id `xid`.
pub fn build(mac: Mac, xid: u32, message: &ClientMessage, options: &ClientOptions) -> Vec<u8> {
    let (message_type, ciaddr, requested_ip, server_id) = match *message {
        ClientMessage::Bootp => (0, Ipv4Addr::UNSPECIFIED, None, None),
        ClientMessage::Discover { requested_ip } => (1, Ipv4Addr::UNSPECIFIED, requested_ip, None),
        ClientMessage::Request(RequestState::Selecting { requested_ip, server_id }) => {
            (3, Ipv4Addr::UNSPECIFIED, Some(requested_ip), Some(server_id))
        }
        ClientMessage::Request(RequestState::InitReboot { requested_ip }) => {
            (3, Ipv4Addr::UNSPECIFIED, Some(requested_ip), None)
        }
        ClientMessage::Request(RequestState::Renewing { ciaddr } | RequestState::Rebinding { ciaddr }) => {
            (3, ciaddr, None, None)
        }
        ClientMessage::Decline { address, server_id } => (4, Ipv4Addr::UNSPECIFIED, Some(address), Some(server_id)),
        ClientMessage::Release { address, server_id } => (7, address, None, Some(server_id)),
        ClientMessage::Inform { address } => (8, address, None, None),
    };

    let mut b = Vec::with_capacity(576);
    b.extend_from_slice(&[1, 1, 6, options.hops]); // BOOTREQUEST, Ethernet, hlen 6
    b.extend_from_slice(&xid.to_be_bytes());
    b.extend_from_slice(&options.secs.to_be_bytes());
    b.extend_from_slice(&(if options.broadcast { 0x8000u16 } else { 0 }).to_be_bytes());
    b.extend_from_slice(&ciaddr.octets());
    b.extend_from_slice(&[0; 8]); // yiaddr, siaddr
    b.extend_from_slice(&options.giaddr.octets());
    b.extend_from_slice(&mac);
    b.extend_from_slice(&[0; 10 + 64 + 128]); // rest of chaddr, sname, file
    b.extend_from_slice(&MAGIC_COOKIE);

    if message_type != 0 {
        put_option(&mut b, 53, &[message_type]);
    }
    if let Some(address) = requested_ip {
        put_option(&mut b, 50, &address.octets());
    }
    if let Some(address) = server_id {
        put_option(&mut b, 54, &address.octets());
    }
    if let Some(id) = &options.client_id {
        put_option(&mut b, 61, id);
    }
    if let Some(name) = &options.hostname {
        put_option(&mut b, 12, name.as_bytes());
    }
    if let Some(size) = options.max_message_size {
        put_option(&mut b, 57, &size.to_be_bytes());
    }
    if let Some(class) = &options.vendor_class {
        put_option(&mut b, 60, class);
    }
    if let Some(arch) = options.client_arch {
        put_option(&mut b, 93, &arch.to_be_bytes());
    }
    if let Some(uuid) = &options.client_uuid {
        put_option(&mut b, 97, uuid);
    }
    if let Some(class) = &options.user_class {
        put_option(&mut b, 77, class);
    }
    if !options.parameter_request_list.is_empty() {
        put_option(&mut b, 55, &options.parameter_request_list);
    }
    for (code, value) in &options.extra {
        put_option(&mut b, *code, value);
    }
    if let Some(info) = &options.relay_agent_info {
        put_option(&mut b, 82, info);
    }
    b.push(255);
    if b.len() < MIN_MESSAGE_BYTES {
        b.resize(MIN_MESSAGE_BYTES, 0);
    }
    b
}

/// Writes one option; values over 255 bytes become several instances (RFC 3396 §4), an empty
/// value is written with length 0.
fn put_option(b: &mut Vec<u8>, code: u8, value: &[u8]) {
    if value.is_empty() {
        b.extend_from_slice(&[code, 0]);
    }
    for chunk in value.chunks(255) {
        b.push(code);
        b.push(u8::try_from(chunk.len()).unwrap_or(u8::MAX));
        b.extend_from_slice(chunk);
    }
}

/// Why a received datagram is not a reply the client can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("datagram of {0} bytes is shorter than the 240-byte header and cookie")]
    TooShort(usize),
    #[error("op is {0}, not 2 (BOOTREPLY)")]
    NotBootReply(u8),
    #[error("magic cookie is {0:?}, not 99.130.83.99")]
    BadMagicCookie([u8; 4]),
    #[error("htype/hlen is {0}/{1}, not Ethernet 1/6")]
    NotEthernet(u8, u8),
    #[error("options are malformed: {0}")]
    MalformedOptions(String),
    #[error("dhcproto could not decode the reply: {0}")]
    Dhcproto(String),
}

/// A server reply as a test sees it. Typed fields come from dhcproto; `options` has every
/// option's raw bytes (instances of one code concatenated, RFC 3396) and `option_order` the codes
/// in wire order, so tests can check exact bytes and ordering (e.g. option 82 last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyView {
    /// Option 53; `None` if absent or not a known type.
    pub message_type: Option<MessageType>,
    pub xid: u32,
    pub broadcast: bool,
    pub hops: u8,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub chaddr: Mac,
    /// Header `sname`, up to its first NUL (lossy UTF-8), `None` when empty.
    pub sname: Option<String>,
    /// Header `file`, up to its first NUL (lossy UTF-8), `None` when empty.
    pub file: Option<String>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 51.
    pub lease_time_secs: Option<u32>,
    /// Option 58 (T1).
    pub renewal_time_secs: Option<u32>,
    /// Option 59 (T2).
    pub rebinding_time_secs: Option<u32>,
    /// Option 1.
    pub subnet_mask: Option<Ipv4Addr>,
    /// Option 3.
    pub routers: Vec<Ipv4Addr>,
    /// Option 6.
    pub dns_servers: Vec<Ipv4Addr>,
    /// Every option, raw.
    pub options: BTreeMap<u8, Vec<u8>>,
    /// Option codes in wire order (pad and end left out; a repeated code appears again).
    pub option_order: Vec<u8>,
    /// The datagram's size in bytes.
    pub len: usize,
    /// Who sent it, when it came from a socket.
    pub source: Option<SocketAddrV4>,
}

impl ReplyView {
    /// Reads a BOOTREPLY. Checks op, htype/hlen, cookie and option framing itself (dhcproto does
    /// not), then lets dhcproto decode the typed fields.
    pub fn parse(bytes: &[u8]) -> Result<Self, PacketError> {
        let Some(header) = bytes.first_chunk::<OPTIONS_OFFSET>() else {
            return Err(PacketError::TooShort(bytes.len()));
        };
        if header[0] != 2 {
            return Err(PacketError::NotBootReply(header[0]));
        }
        if header[1] != 1 || header[2] != 6 {
            return Err(PacketError::NotEthernet(header[1], header[2]));
        }
        let cookie = [header[236], header[237], header[238], header[239]];
        if cookie != MAGIC_COOKIE {
            return Err(PacketError::BadMagicCookie(cookie));
        }
        let (mut options, mut option_order) = walk_options(bytes.get(OPTIONS_OFFSET..).unwrap_or_default())?;
        // RFC 2131 §4.1 / RFC 2132 §9.3: option 52 says `file` (1), `sname` (2) or both (3) hold more
        // options, read after the options field, `file` first; RFC 3396 joins the instances.
        let overload = options.get(&52).and_then(|v| v.first().copied()).unwrap_or(0);
        for (bit, range) in [(1u8, 108..236), (2, 44..108)] {
            if overload & bit != 0 {
                let (more, more_order) = walk_options(&bytes[range])?;
                for (code, value) in more {
                    options.entry(code).or_default().extend_from_slice(&value);
                }
                option_order.extend(more_order);
            }
        }
        guard_dhcproto_assertions(&options)?;

        let message = Message::decode(&mut Decoder::new(bytes)).map_err(|e| PacketError::Dhcproto(e.to_string()))?;
        let opts = message.opts();
        let address = |code: OptionCode| match opts.get(code) {
            Some(DhcpOption::ServerIdentifier(a) | DhcpOption::SubnetMask(a)) => Some(*a),
            _ => None,
        };
        let seconds = |code: OptionCode| match opts.get(code) {
            Some(DhcpOption::AddressLeaseTime(s) | DhcpOption::Renewal(s) | DhcpOption::Rebinding(s)) => Some(*s),
            _ => None,
        };
        let list = |code: OptionCode| match opts.get(code) {
            Some(DhcpOption::Router(l) | DhcpOption::DomainNameServer(l)) => l.clone(),
            _ => Vec::new(),
        };
        let mut chaddr = [0u8; 6];
        if let Some(mac) = message.chaddr().get(..6) {
            chaddr.copy_from_slice(mac);
        }
        Ok(ReplyView {
            message_type: opts.msg_type().filter(|t| !matches!(t, MessageType::Unknown(_))),
            xid: message.xid(),
            broadcast: message.flags().broadcast(),
            hops: message.hops(),
            ciaddr: message.ciaddr(),
            yiaddr: message.yiaddr(),
            siaddr: message.siaddr(),
            giaddr: message.giaddr(),
            chaddr,
            // Fields that carry options (overload) are not names.
            sname: c_string(message.sname()).filter(|_| overload & 2 == 0),
            file: c_string(message.fname()).filter(|_| overload & 1 == 0),
            server_id: address(OptionCode::ServerIdentifier),
            lease_time_secs: seconds(OptionCode::AddressLeaseTime),
            renewal_time_secs: seconds(OptionCode::Renewal),
            rebinding_time_secs: seconds(OptionCode::Rebinding),
            subnet_mask: address(OptionCode::SubnetMask),
            routers: list(OptionCode::Router),
            dns_servers: list(OptionCode::DomainNameServer),
            options,
            option_order,
            len: bytes.len(),
            source: None,
        })
    }

    /// The raw bytes of option `code`.
    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options.get(&code).map(Vec::as_slice)
    }

    /// An option as text (lossy UTF-8), e.g. 66, 67, 12, 15, 56, 60.
    pub fn option_text(&self, code: u8) -> Option<String> {
        self.option(code).map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub fn is(&self, message_type: MessageType) -> bool {
        self.message_type == Some(message_type)
    }
}

/// dhcproto 0.15 names header strings with their NUL (`fname()` is `b"file\0"`): cut at the NUL.
fn c_string(field: Option<&[u8]>) -> Option<String> {
    let field = field?;
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let text = String::from_utf8_lossy(field.get(..end)?).into_owned();
    (!text.is_empty()).then_some(text)
}

/// Walks the options field (RFC 2132 §2); a missing end option is accepted.
type RawOptions = (BTreeMap<u8, Vec<u8>>, Vec<u8>);

fn walk_options(mut rest: &[u8]) -> Result<RawOptions, PacketError> {
    let mut options: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
    let mut order = Vec::new();
    while let Some((&code, after_code)) = rest.split_first() {
        match code {
            0 => rest = after_code,
            255 => break,
            _ => {
                let Some((&len, after_len)) = after_code.split_first() else {
                    return Err(PacketError::MalformedOptions(format!("option {code} has no length byte")));
                };
                let Some((value, after_value)) = after_len.split_at_checked(usize::from(len)) else {
                    return Err(PacketError::MalformedOptions(format!(
                        "option {code} of length {len} runs past the end ({} bytes left)",
                        after_len.len()
                    )));
                };
                options.entry(code).or_default().extend_from_slice(value);
                order.push(code);
                rest = after_value;
            }
        }
    }
    Ok((options, order))
}

/// dhcproto 0.15 has `debug_assert!`s on these option lengths: a reply that breaks them would
/// panic the test instead of failing it with a message.
fn guard_dhcproto_assertions(options: &BTreeMap<u8, Vec<u8>>) -> Result<(), PacketError> {
    for (&code, value) in options {
        let ok = match code {
            80 => value.is_empty(),
            81 => value.len() >= 3,
            94 => value.len() == 3,
            152..=155 => value.len() == 4,
            _ => true,
        };
        if !ok {
            return Err(PacketError::MalformedOptions(format!("option {code} has length {}", value.len())));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::{Flags, Opcode};
    use dhcproto::{Encodable, Encoder};

    const MAC: Mac = [0x02, 0, 0, 0, 0, 0x2a];
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 199, 0, 2);
    const ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 199, 0, 77);

    fn decode(bytes: &[u8]) -> Message {
        Message::decode(&mut Decoder::new(bytes)).expect("dhcproto decodes the client message")
    }

    fn option_codes(bytes: &[u8]) -> Vec<u8> {
        walk_options(&bytes[OPTIONS_OFFSET..]).expect("well formed").1
    }

    /// RFC 2131 §4.3.2 table 5 (and §4.4.1, §4.4.3, §4.4.6): what each message carries in ciaddr,
    /// option 50 and option 54, checked by decoding with dhcproto.
    #[test]
    fn every_message_kind_round_trips_through_dhcproto() {
        let cases = [
            (ClientMessage::Discover { requested_ip: None }, MessageType::Discover, None, None, None),
            (ClientMessage::Discover { requested_ip: Some(ADDRESS) }, MessageType::Discover, None, Some(ADDRESS), None),
            (
                ClientMessage::Request(RequestState::Selecting { requested_ip: ADDRESS, server_id: SERVER }),
                MessageType::Request,
                None,
                Some(ADDRESS),
                Some(SERVER),
            ),
            (
                ClientMessage::Request(RequestState::InitReboot { requested_ip: ADDRESS }),
                MessageType::Request,
                None,
                Some(ADDRESS),
                None,
            ),
            (
                ClientMessage::Request(RequestState::Renewing { ciaddr: ADDRESS }),
                MessageType::Request,
                Some(ADDRESS),
                None,
                None,
            ),
            (
                ClientMessage::Request(RequestState::Rebinding { ciaddr: ADDRESS }),
                MessageType::Request,
                Some(ADDRESS),
                None,
                None,
            ),
            (
                ClientMessage::Decline { address: ADDRESS, server_id: SERVER },
                MessageType::Decline,
                None,
                Some(ADDRESS),
                Some(SERVER),
            ),
            (
                ClientMessage::Release { address: ADDRESS, server_id: SERVER },
                MessageType::Release,
                Some(ADDRESS),
                None,
                Some(SERVER),
            ),
            (ClientMessage::Inform { address: ADDRESS }, MessageType::Inform, Some(ADDRESS), None, None),
        ];
        for (message, message_type, ciaddr, requested, server_id) in cases {
            let bytes = build(MAC, 0x1234_5678, &message, &ClientOptions::default());
            assert!(bytes.len() >= MIN_MESSAGE_BYTES, "{message:?}: {} bytes", bytes.len());
            let decoded = decode(&bytes);
            assert_eq!(decoded.opcode(), Opcode::BootRequest);
            assert_eq!(decoded.xid(), 0x1234_5678);
            assert_eq!(decoded.chaddr(), MAC);
            assert!(decoded.flags().broadcast());
            assert_eq!(decoded.opts().msg_type(), Some(message_type), "{message:?}");
            assert_eq!(decoded.ciaddr(), ciaddr.unwrap_or(Ipv4Addr::UNSPECIFIED), "{message:?} ciaddr");
            assert_eq!(
                decoded.opts().get(OptionCode::RequestedIpAddress),
                requested.map(DhcpOption::RequestedIpAddress).as_ref(),
                "{message:?} option 50"
            );
            assert_eq!(
                decoded.opts().get(OptionCode::ServerIdentifier),
                server_id.map(DhcpOption::ServerIdentifier).as_ref(),
                "{message:?} option 54"
            );
        }
    }

    /// A PXE DISCOVER (RFC 4578 §2.1–2.3) and iPXE's extras, relayed (RFC 3046): options in the
    /// documented order, 82 last, values exact.
    #[test]
    fn ipxe_discover_through_a_relay() {
        let uuid = [7u8; 16];
        let mut options = ClientOptions::ipxe(MAC, arch::EFI_X64, uuid);
        options.giaddr = Ipv4Addr::new(10, 199, 1, 1);
        options.hops = 1;
        options.hostname = Some("node-1".to_owned());
        options.relay_agent_info = Some(vec![1, 2, 0, 5]);
        let bytes = build(MAC, 9, &ClientMessage::Discover { requested_ip: None }, &options);
        assert_eq!(option_codes(&bytes), vec![53, 61, 12, 57, 60, 93, 97, 77, 55, 94, 175, 82]);
        let decoded = decode(&bytes);
        assert_eq!((decoded.giaddr(), decoded.hops()), (Ipv4Addr::new(10, 199, 1, 1), 1));
        let opts = decoded.opts();
        assert_eq!(
            opts.get(OptionCode::ClassIdentifier),
            Some(&DhcpOption::ClassIdentifier(b"PXEClient:Arch:00007:UNDI:002001".to_vec()))
        );
        assert_eq!(
            opts.get(OptionCode::ClientSystemArchitecture),
            Some(&DhcpOption::ClientSystemArchitecture(dhcproto::v4::Architecture(7)))
        );
        let mut expected_uuid = vec![0];
        expected_uuid.extend_from_slice(&uuid);
        assert_eq!(
            opts.get(OptionCode::ClientMachineIdentifier),
            Some(&DhcpOption::ClientMachineIdentifier(expected_uuid))
        );
        assert_eq!(opts.get(OptionCode::UserClass), Some(&DhcpOption::UserClass(b"iPXE".to_vec())));
        assert_eq!(opts.get(OptionCode::ClientNetworkInterface), Some(&DhcpOption::ClientNetworkInterface(1, 2, 1)));
        assert_eq!(opts.get(OptionCode::Hostname), Some(&DhcpOption::Hostname("node-1".to_owned())));
        assert_eq!(
            opts.get(OptionCode::ClientIdentifier),
            Some(&DhcpOption::ClientIdentifier(ethernet_client_id(MAC)))
        );
    }

    /// RFC 3396 §4: a value over 255 bytes goes out as consecutive instances of the option.
    #[test]
    fn long_extra_option_is_split() {
        let options = ClientOptions { extra: vec![(224, vec![0xab; 300])], ..ClientOptions::default() };
        let bytes = build(MAC, 1, &ClientMessage::Discover { requested_ip: None }, &options);
        let (raw, order) = walk_options(&bytes[OPTIONS_OFFSET..]).expect("well formed");
        assert_eq!(order.iter().filter(|&&c| c == 224).count(), 2);
        assert_eq!(raw.get(&224).map(Vec::len), Some(300));
    }

    fn offer_bytes() -> Vec<u8> {
        let mut message = Message::new_with_id(7, Ipv4Addr::UNSPECIFIED, ADDRESS, SERVER, Ipv4Addr::UNSPECIFIED, &MAC);
        message
            .set_opcode(Opcode::BootReply)
            .set_flags(Flags::default().set_broadcast())
            .set_fname_str("undionly.kpxe");
        let opts = message.opts_mut();
        opts.insert(DhcpOption::MessageType(MessageType::Offer));
        opts.insert(DhcpOption::ServerIdentifier(SERVER));
        opts.insert(DhcpOption::AddressLeaseTime(3600));
        opts.insert(DhcpOption::Renewal(1800));
        opts.insert(DhcpOption::Rebinding(3150));
        opts.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
        opts.insert(DhcpOption::Router(vec![Ipv4Addr::new(10, 199, 0, 1)]));
        opts.insert(DhcpOption::DomainNameServer(vec![Ipv4Addr::new(10, 199, 0, 53)]));
        opts.insert(DhcpOption::BootfileName(b"undionly.kpxe".to_vec()));
        let mut bytes = Vec::new();
        message.encode(&mut Encoder::new(&mut bytes)).expect("encode offer");
        bytes
    }

    #[test]
    fn reply_view_reads_an_offer() {
        let view = ReplyView::parse(&offer_bytes()).expect("valid offer");
        assert_eq!(view.message_type, Some(MessageType::Offer));
        assert!(view.is(MessageType::Offer));
        assert_eq!((view.xid, view.broadcast, view.chaddr), (7, true, MAC));
        assert_eq!((view.yiaddr, view.siaddr), (ADDRESS, SERVER));
        assert_eq!(view.file.as_deref(), Some("undionly.kpxe"));
        assert_eq!(view.sname, None);
        assert_eq!(view.server_id, Some(SERVER));
        assert_eq!(
            (view.lease_time_secs, view.renewal_time_secs, view.rebinding_time_secs),
            (Some(3600), Some(1800), Some(3150))
        );
        assert_eq!(view.subnet_mask, Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(view.routers, vec![Ipv4Addr::new(10, 199, 0, 1)]);
        assert_eq!(view.dns_servers, vec![Ipv4Addr::new(10, 199, 0, 53)]);
        assert_eq!(view.option_text(67).as_deref(), Some("undionly.kpxe"));
        assert_eq!(view.option(53), Some(&[2][..]));
        // dhcproto's encoder orders options by code.
        assert_eq!(view.option_order, vec![1, 3, 6, 51, 53, 54, 58, 59, 67]);
    }

    #[test]
    fn reply_view_rejects_what_is_not_a_reply() {
        let offer = offer_bytes();
        assert_eq!(ReplyView::parse(&offer[..239]), Err(PacketError::TooShort(239)));
        let request = build(MAC, 1, &ClientMessage::Discover { requested_ip: None }, &ClientOptions::default());
        assert_eq!(ReplyView::parse(&request), Err(PacketError::NotBootReply(1)));
        let mut bad = offer.clone();
        bad[236] = 0;
        assert_eq!(ReplyView::parse(&bad), Err(PacketError::BadMagicCookie([0, 130, 83, 99])));
        let mut bad = offer.clone();
        bad[2] = 16;
        assert_eq!(ReplyView::parse(&bad), Err(PacketError::NotEthernet(1, 16)));
        let mut bad = offer[..OPTIONS_OFFSET].to_vec();
        bad.extend_from_slice(&[53, 1, 2, 60, 9, b'x']);
        assert!(matches!(ReplyView::parse(&bad), Err(PacketError::MalformedOptions(_))));
        // Would trip dhcproto's debug assertion: reported, not a panic.
        let mut bad = offer[..OPTIONS_OFFSET].to_vec();
        bad.extend_from_slice(&[53, 1, 2, 94, 2, 1, 2, 255]);
        assert!(matches!(ReplyView::parse(&bad), Err(PacketError::MalformedOptions(_))));
    }
}
