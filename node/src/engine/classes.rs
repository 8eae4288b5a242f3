//! Client classes: which `[[class]]` a request belongs to. The first class in config order whose
//! every match key holds wins. A pure function of the request and the classes.

use leasehold_config::{Class, ClassMatch};

use super::relay::{relay_suboption, suboption};
use crate::wire::Request;

/// Option 94, client network interface identifier (RFC 4578 §2.2).
const CLIENT_INTERFACE: u8 = 94;

/// The index of the first class in `classes` that `request` matches.
pub fn classify(classes: &[Class], request: &Request) -> Option<usize> {
    classes.iter().position(|class| matches(&class.matcher, request))
}

/// Does `request` satisfy every key of `matcher`? (No keys: every request does.)
pub fn matches(matcher: &ClassMatch, request: &Request) -> bool {
    let starts = |value: Option<&[u8]>, prefix: &Option<Vec<u8>>| match prefix {
        None => true,
        Some(prefix) => value.is_some_and(|v| v.starts_with(prefix)),
    };
    let relay = |code: u8, wanted: &Option<Vec<u8>>| match wanted {
        None => true,
        Some(wanted) => request
            .relay_agent_info
            .as_deref()
            .and_then(|info| relay_suboption(info, code))
            .is_some_and(|value| value == wanted.as_slice()),
    };
    let client_interface =
        request.other_options.iter().find(|(code, _)| *code == CLIENT_INTERFACE).map(|(_, v)| v.as_slice());
    starts(request.vendor_class.as_deref(), &matcher.vendor_class_prefix)
        && matcher.user_class.as_deref().is_none_or(|wanted| has_user_class(request.user_class.as_deref(), wanted))
        && (matcher.arch.is_empty() || request.client_arch.is_some_and(|arch| matcher.arch.contains(&arch)))
        && starts(client_interface, &matcher.client_interface_prefix)
        && relay(suboption::CIRCUIT_ID, &matcher.circuit_id)
        && relay(suboption::REMOTE_ID, &matcher.remote_id)
        && matcher.giaddr.is_none_or(|subnet| !request.giaddr.is_unspecified() && subnet.contains(request.giaddr))
        && starts(Some(&request.chaddr), &matcher.mac_prefix)
}

/// Option 77 holds `wanted`: as the whole value (iPXE sends the bare string) or as one of its RFC
/// 3004 §4 entries (length, class).
fn has_user_class(raw: Option<&[u8]>, wanted: &[u8]) -> bool {
    let Some(raw) = raw else { return false };
    if raw == wanted {
        return true;
    }
    let mut rest = raw;
    while let Some((&len, after)) = rest.split_first() {
        let Some((class, after)) = after.split_at_checked(usize::from(len)) else { return false };
        if class == wanted {
            return true;
        }
        rest = after;
    }
    false
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use leasehold_config::{OptionSet, Subnet};

    use super::*;
    use crate::wire::ClientMessageType;

    fn class(name: &str, matcher: ClassMatch) -> Class {
        Class {
            name: name.into(),
            matcher,
            pools: None,
            forbid_pools: Vec::new(),
            boot_file: None,
            next_server: None,
            ipxe_script_url: None,
            boot_script: None,
            lease_time_secs: None,
            options: OptionSet::default(),
        }
    }

    fn request() -> Request {
        Request {
            broadcast: true,
            vendor_class: Some(b"PXEClient:Arch:00007:UNDI:003016".to_vec()),
            client_arch: Some(7),
            other_options: vec![(94, vec![1, 3, 16])],
            ..Request::new(ClientMessageType::Discover, 1, [0x52, 0x54, 0, 1, 2, 3])
        }
    }

    #[test]
    fn the_first_matching_class_in_order_wins() {
        let classes = [
            class("http", ClassMatch { vendor_class_prefix: Some(b"HTTPClient".to_vec()), ..ClassMatch::default() }),
            class("uefi", ClassMatch { arch: vec![7, 9], ..ClassMatch::default() }),
            class("pxe", ClassMatch { vendor_class_prefix: Some(b"PXEClient".to_vec()), ..ClassMatch::default() }),
        ];
        assert_eq!(classify(&classes, &request()), Some(1));
        let bios = Request { client_arch: Some(0), ..request() };
        assert_eq!(classify(&classes, &bios), Some(2));
        let plain = Request { vendor_class: None, client_arch: None, ..request() };
        assert_eq!(classify(&classes, &plain), None);
    }

    #[test]
    fn every_key_must_hold_and_each_kind_can_fail() {
        let relayed = Request {
            giaddr: Ipv4Addr::new(10, 9, 0, 1),
            relay_agent_info: Some(vec![1, 4, b'e', b't', b'h', b'1', 2, 2, 0xaa, 0xbb]),
            user_class: Some(b"\x04iPXE\x03foo".to_vec()),
            ..request()
        };
        let all = ClassMatch {
            vendor_class_prefix: Some(b"PXEClient".to_vec()),
            user_class: Some(b"iPXE".to_vec()),
            arch: vec![7],
            client_interface_prefix: Some(vec![1, 3]),
            circuit_id: Some(b"eth1".to_vec()),
            remote_id: Some(vec![0xaa, 0xbb]),
            giaddr: Some(Subnet { network: Ipv4Addr::new(10, 9, 0, 0), prefix_len: 16 }),
            mac_prefix: Some(vec![0x52, 0x54, 0]),
        };
        assert!(matches(&all, &relayed));
        let misses = [
            ClassMatch { vendor_class_prefix: Some(b"HTTPClient".to_vec()), ..all.clone() },
            ClassMatch { user_class: Some(b"gPXE".to_vec()), ..all.clone() },
            ClassMatch { arch: vec![11], ..all.clone() },
            ClassMatch { client_interface_prefix: Some(vec![1, 2]), ..all.clone() },
            ClassMatch { circuit_id: Some(b"eth2".to_vec()), ..all.clone() },
            ClassMatch { remote_id: Some(vec![0xaa]), ..all.clone() },
            ClassMatch { giaddr: Some(Subnet { network: Ipv4Addr::new(10, 8, 0, 0), prefix_len: 16 }), ..all.clone() },
            ClassMatch { mac_prefix: Some(vec![0x52, 0x54, 1]), ..all.clone() },
        ];
        for (i, miss) in misses.iter().enumerate() {
            assert!(!matches(miss, &relayed), "match key {i} should fail");
        }
        // A giaddr key never matches a request that was not relayed.
        let direct = Request { giaddr: Ipv4Addr::UNSPECIFIED, ..relayed };
        let by_relay = ClassMatch {
            giaddr: Some(Subnet { network: Ipv4Addr::UNSPECIFIED, prefix_len: 0 }),
            ..ClassMatch::default()
        };
        assert!(!matches(&by_relay, &direct));
    }

    #[test]
    fn user_class_is_bare_or_rfc3004() {
        assert!(has_user_class(Some(b"iPXE"), b"iPXE"));
        assert!(has_user_class(Some(b"\x03abc\x04iPXE"), b"iPXE"));
        assert!(!has_user_class(Some(b"\x09iPXE"), b"iPXE"));
        assert!(!has_user_class(None, b"iPXE"));
    }
}
