//! Which configuration options a reply carries: the pool's routers, DNS servers and domain name, a
//! reservation's host name, and the configured options of every scope. The most specific scope
//! wins for each code: reservation, then class, then pool, then global (`[[option]]`). A configured
//! option goes out when the client asks for it (option 55) or it is `always_send`; the pool's
//! routers, DNS servers and domain name and the reserved host name always do (Kea's "basic"
//! options). A pure function of the request and the scopes that apply to it.

use leasehold_config::{Class, Config, DhcpOption, OptionSet, Pool, Reservation};

use crate::wire::Request;

/// Options 3, 6, 15 and 12 as the pool's and reservation's own keys give them.
const ROUTERS: u8 = 3;
const DNS_SERVERS: u8 = 6;
const HOST_NAME: u8 = 12;
const DOMAIN_NAME: u8 = 15;

/// The scopes that apply to one request, most specific last to be consulted.
pub struct Scopes<'a> {
    pub config: &'a Config,
    pub pool: &'a Pool,
    pub class: Option<&'a Class>,
    pub reservation: Option<&'a Reservation>,
}

/// The options of one reply, as (code, data), in scope order (the encoder orders them by the
/// client's parameter request list).
pub fn reply_options(scopes: &Scopes<'_>, request: &Request) -> Vec<(u8, Vec<u8>)> {
    let requested = |option: &DhcpOption| option.always_send || request.parameter_request_list.contains(&option.code);
    fn configured<'s>(set: &'s OptionSet, requested: &dyn Fn(&DhcpOption) -> bool) -> Vec<(u8, &'s [u8], bool)> {
        set.iter().map(|o| (o.code, o.data.as_slice(), requested(o))).collect()
    }

    let reservation = scopes.reservation;
    let mut ordered: Vec<(u8, &[u8], bool)> = Vec::new();
    if let Some(reservation) = reservation {
        ordered.extend(configured(&reservation.options, &requested));
    }
    let host_name = reservation.and_then(|r| r.hostname.as_deref()).map(str::as_bytes);
    ordered.extend(host_name.map(|name| (HOST_NAME, name, true)));
    if let Some(class) = scopes.class {
        ordered.extend(configured(&class.options, &requested));
    }
    ordered.extend(configured(&scopes.pool.options, &requested));
    let routers: Vec<u8> = scopes.pool.routers.iter().flat_map(|ip| ip.octets()).collect();
    let dns_servers: Vec<u8> = scopes.pool.dns_servers.iter().flat_map(|ip| ip.octets()).collect();
    let basic = [
        (ROUTERS, routers.as_slice()),
        (DNS_SERVERS, dns_servers.as_slice()),
        (DOMAIN_NAME, scopes.pool.domain_name.as_deref().map_or(&[][..], str::as_bytes)),
    ];
    ordered.extend(basic.iter().filter(|(_, data)| !data.is_empty()).map(|&(code, data)| (code, data, true)));
    ordered.extend(configured(&scopes.config.options, &requested));
    // The first scope to name a code decides it, sent or not.
    let mut taken = [false; 256];
    let mut out = Vec::new();
    for (code, data, send) in ordered {
        let decided = std::mem::replace(&mut taken[usize::from(code)], true);
        if !decided && send {
            out.push((code, data.to_vec()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::wire::ClientMessageType;

    fn option(code: u8, data: &[u8], always_send: bool) -> DhcpOption {
        DhcpOption { code, data: data.to_vec(), always_send }
    }

    fn request(prl: &[u8]) -> Request {
        Request {
            parameter_request_list: prl.to_vec(),
            ..Request::new(ClientMessageType::Discover, 1, [2, 0, 0, 0, 0, 1])
        }
    }

    #[test]
    fn the_most_specific_scope_wins_and_only_requested_or_always_send_go_out() {
        let mut config = Config::demo();
        config.options =
            OptionSet(vec![option(42, &[1, 1, 1, 1], false), option(26, &[5, 220], false), option(119, &[0], true)]);
        let mut pool = config.pools[0].clone();
        pool.options = OptionSet(vec![option(42, &[2, 2, 2, 2], false), option(6, &[9, 9, 9, 9], false)]);
        pool.routers = vec![Ipv4Addr::new(10, 0, 0, 1)];
        pool.dns_servers = Vec::new();
        let class = Class {
            name: "c".into(),
            matcher: Default::default(),
            pools: None,
            forbid_pools: Vec::new(),
            boot_file: None,
            next_server: None,
            ipxe_script_url: None,
            boot_script: None,
            lease_time_secs: None,
            options: OptionSet(vec![option(42, &[3, 3, 3, 3], false)]),
        };
        let mut reservation = config.reservations[0].clone();
        reservation.options = OptionSet(vec![option(26, &[4, 0], false)]);
        let scopes = Scopes { config: &config, pool: &pool, class: Some(&class), reservation: Some(&reservation) };
        let got = reply_options(&scopes, &request(&[1, 3, 6, 42, 26]));
        let get = |code: u8| got.iter().find(|(c, _)| *c == code).map(|(_, d)| d.clone());
        assert_eq!(get(42), Some(vec![3, 3, 3, 3]), "class beats pool beats global");
        assert_eq!(get(26), Some(vec![4, 0]), "reservation beats global");
        assert_eq!(get(6), Some(vec![9, 9, 9, 9]), "requested pool option 6");
        assert_eq!(get(3), Some(vec![10, 0, 0, 1]), "the pool's routers always go");
        assert_eq!(get(119), Some(vec![0]), "always_send without being asked");
        assert_eq!(get(12), reservation.hostname.as_ref().map(|h| h.as_bytes().to_vec()));
        // Not asked for and not always_send: left out.
        let got = reply_options(&scopes, &request(&[1, 3]));
        assert!(!got.iter().any(|(c, _)| matches!(*c, 42 | 26 | 6)), "{got:?}");
    }
}
