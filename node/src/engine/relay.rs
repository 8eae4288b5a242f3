//! Which link a request comes from, and which server identifier its replies carry: relay agents
//! (RFC 3046 option 82 with RFC 3527 link selection and RFC 5107 server-identifier override), the
//! client's subnet selection option (RFC 3011), `giaddr`, and the renewing client's own address. A
//! pure function of the request, how it arrived and the receiving interface's address.

use std::net::Ipv4Addr;

use super::Arrival;
use crate::wire::Request;

/// Option 82 sub-option codes (RFC 3046 §2.0 and the sub-option registry).
pub mod suboption {
    /// RFC 3046 §2.1.
    pub const CIRCUIT_ID: u8 = 1;
    /// RFC 3046 §2.2.
    pub const REMOTE_ID: u8 = 2;
    /// RFC 3527: the subnet the client is on, when `giaddr` is only where to send the reply.
    pub const LINK_SELECTION: u8 = 5;
    /// RFC 5107: the address the client should take for the server (the relay's own).
    pub const SERVER_ID_OVERRIDE: u8 = 11;
}

/// The value of sub-option `code` in the raw option 82 value `info`: the first instance, or `None`
/// when it is absent or the sub-options are not well framed (code, length, value; RFC 3046 §2.0).
pub fn relay_suboption(info: &[u8], code: u8) -> Option<&[u8]> {
    let mut rest = info;
    let mut found = None;
    while let Some((&this_code, after)) = rest.split_first() {
        let (&len, after) = after.split_first()?;
        let (value, after) = after.split_at_checked(usize::from(len))?;
        if this_code == code && found.is_none() {
            found = Some(value);
        }
        rest = after;
    }
    found
}

fn address_suboption(request: &Request, code: u8) -> Option<Ipv4Addr> {
    let value = relay_suboption(request.relay_agent_info.as_deref()?, code)?;
    let octets = <[u8; 4]>::try_from(value).ok()?;
    Some(Ipv4Addr::from(octets)).filter(|ip| !ip.is_unspecified())
}

/// What chose the client's subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkSource {
    /// Option 82 sub-option 5 (RFC 3527): the relay names the client's link apart from `giaddr`.
    LinkSelection,
    /// Option 118 (RFC 3011), which the reply must echo.
    SubnetSelection,
    /// `giaddr` (RFC 2131 §4.3.1): the relay's address on the client's link.
    RelayAddress,
    /// `ciaddr` of a request unicast to us with `giaddr` 0: a RENEWING client (RFC 2131 §4.3.2)
    /// talks to the server directly, also when a relay stood between them at binding time.
    ClientAddress,
    /// The address of the interface the request came in on: a directly attached client.
    Interface,
}

/// The client's link as the engine serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// An address on the client's subnet: pools whose subnet contains it serve the client.
    pub selector: Ipv4Addr,
    pub source: LinkSource,
    /// Option 54 of every reply: the relay's override (RFC 5107), else the receiving interface's
    /// address.
    pub server_id: Ipv4Addr,
    /// The interface the request came in on (an index into `Config::interfaces`): its replies go
    /// out there.
    pub interface: usize,
}

impl Link {
    /// The link of `request`, which arrived as `arrival` on the interface whose server address is
    /// `interface_ip`. The order follows what the sources mean: the relay's explicit link
    /// selection, then the client's own subnet selection, then the relay address, then (unicast
    /// only) the client's address, then the interface.
    pub fn of(request: &Request, arrival: Arrival, interface_ip: Ipv4Addr) -> Link {
        let unicast = arrival.to.is_some();
        let relayed = !request.giaddr.is_unspecified();
        let (selector, source) = if let Some(ip) = address_suboption(request, suboption::LINK_SELECTION) {
            (ip, LinkSource::LinkSelection)
        } else if let Some(ip) = request.subnet_selection.filter(|ip| !ip.is_unspecified()) {
            (ip, LinkSource::SubnetSelection)
        } else if relayed {
            (request.giaddr, LinkSource::RelayAddress)
        } else if unicast && !request.ciaddr.is_unspecified() {
            (request.ciaddr, LinkSource::ClientAddress)
        } else {
            (interface_ip, LinkSource::Interface)
        };
        let server_id = address_suboption(request, suboption::SERVER_ID_OVERRIDE).unwrap_or(interface_ip);
        Link { selector, source, server_id, interface: arrival.interface }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ClientMessageType;

    const INTERFACE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const RELAY: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
    const BROADCAST: Arrival = Arrival::BROADCAST;

    fn unicast() -> Arrival {
        Arrival::unicast(INTERFACE)
    }

    fn request() -> Request {
        Request::new(ClientMessageType::Request, 1, [2, 0, 0, 0, 0, 1])
    }

    #[test]
    fn suboptions_are_found_by_code_and_bad_framing_finds_nothing() {
        let info = [1, 3, b'e', b't', b'h', 5, 4, 10, 7, 0, 1];
        assert_eq!(relay_suboption(&info, suboption::CIRCUIT_ID), Some(&b"eth"[..]));
        assert_eq!(relay_suboption(&info, suboption::LINK_SELECTION), Some(&[10, 7, 0, 1][..]));
        assert_eq!(relay_suboption(&info, suboption::REMOTE_ID), None);
        // The last sub-option claims 4 bytes and has 3: the whole option is untrusted.
        assert_eq!(relay_suboption(&[1, 1, b'x', 5, 4, 10, 7, 0], suboption::CIRCUIT_ID), None);
        assert_eq!(relay_suboption(&[], suboption::CIRCUIT_ID), None);
    }

    #[test]
    fn a_directly_attached_broadcast_is_on_the_interface_link() {
        let link = Link::of(&request(), BROADCAST.on(1), INTERFACE);
        let expected = Link { selector: INTERFACE, source: LinkSource::Interface, server_id: INTERFACE, interface: 1 };
        assert_eq!(link, expected);
        // RFC 2131 §4.4.5: a REBINDING client broadcasts with ciaddr; it is still on our segment.
        let rebinding = Request { ciaddr: Ipv4Addr::new(10, 9, 0, 50), broadcast: true, ..request() };
        assert_eq!(Link::of(&rebinding, BROADCAST, INTERFACE).source, LinkSource::Interface);
    }

    #[test]
    fn a_unicast_renewal_without_giaddr_is_on_the_clients_own_link() {
        // RFC 2131 §4.3.2 RENEWING: unicast straight to the server, giaddr 0, ciaddr set — from a
        // client behind a relay too, so the subnet comes from ciaddr, not from our own interface.
        let renewing = Request { ciaddr: Ipv4Addr::new(10, 9, 0, 50), ..request() };
        let link = Link::of(&renewing, unicast(), INTERFACE);
        assert_eq!(link.selector, Ipv4Addr::new(10, 9, 0, 50));
        assert_eq!(link.source, LinkSource::ClientAddress);
        assert_eq!(link.server_id, INTERFACE);
    }

    #[test]
    fn giaddr_then_subnet_selection_then_link_selection_take_precedence() {
        let relayed = Request { giaddr: RELAY, ciaddr: Ipv4Addr::new(10, 9, 0, 50), ..request() };
        assert_eq!(Link::of(&relayed, unicast(), INTERFACE).selector, RELAY);
        assert_eq!(Link::of(&relayed, unicast(), INTERFACE).source, LinkSource::RelayAddress);
        // RFC 3011 §2: option 118 names the subnet to allocate on, overriding giaddr.
        let selected = Request { subnet_selection: Some(Ipv4Addr::new(10, 8, 0, 0)), ..relayed.clone() };
        assert_eq!(Link::of(&selected, unicast(), INTERFACE).source, LinkSource::SubnetSelection);
        assert_eq!(Link::of(&selected, unicast(), INTERFACE).selector, Ipv4Addr::new(10, 8, 0, 0));
        // RFC 3527 §3: the relay's link selection sub-option wins over giaddr.
        let linked = Request { relay_agent_info: Some(vec![1, 1, b'x', 5, 4, 10, 7, 0, 1]), ..selected };
        let link = Link::of(&linked, BROADCAST, INTERFACE);
        assert_eq!((link.selector, link.source), (Ipv4Addr::new(10, 7, 0, 1), LinkSource::LinkSelection));
    }

    #[test]
    fn server_identifier_override_names_the_relay() {
        // RFC 5107 §4: option 54 of the replies is the sub-option's address.
        let relayed = Request { giaddr: RELAY, relay_agent_info: Some(vec![11, 4, 10, 9, 0, 1]), ..request() };
        assert_eq!(Link::of(&relayed, BROADCAST, INTERFACE).server_id, RELAY);
        // A malformed override (3 bytes) or 0.0.0.0 is ignored.
        let short = Request { relay_agent_info: Some(vec![11, 3, 10, 9, 0]), ..relayed.clone() };
        assert_eq!(Link::of(&short, BROADCAST, INTERFACE).server_id, INTERFACE);
        let zero = Request { relay_agent_info: Some(vec![11, 4, 0, 0, 0, 0]), ..relayed };
        assert_eq!(Link::of(&zero, BROADCAST, INTERFACE).server_id, INTERFACE);
    }
}
