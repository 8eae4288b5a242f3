//! Network boot policy: what an OFFER or ACK tells a BIOS PXE ROM, UEFI PXE firmware, UEFI HTTP boot
//! firmware, iPXE or a plain client that asks for boot settings. A pure function of the request,
//! the pool's `[pxe]` settings and the client's reservation.
//!
//! What firmware accepts decides, not a reading of the PXE spec:
//! - **No option 60 to PXE clients.** EDK2 (NetworkPkg/UefiPxeBcDxe, PxeBcDhcp4.c) sorts offers by
//!   what they carry: one with option 60 `PXEClient` but no PXE option 43 is a "BINL" offer, after
//!   which the firmware asks a boot server on udp/4011 for the boot file and gives up with
//!   `PXE-E16 No valid offer received` when none answers. An offer without option 60 that carries a
//!   boot file is a "DHCP only offer with a boot file", which it boots from `siaddr`/`file` directly.
//!   BIOS PXE ROMs and iPXE take such offers too (dnsmasq and ISC dhcpd have always sent them), so
//!   that is the one answer for every PXE client; option 43 and a udp/4011 boot server would be a
//!   second mechanism doing the same.
//! - **Option 60 `HTTPClient` to UEFI HTTP boot clients.** EDK2 HttpBootDxe (HttpBootDhcp4.c) takes
//!   an offer as an HTTP boot offer only when option 60 starts with `HTTPClient` and the boot file is
//!   a URL; without the echo it ignores the offer.
//! - **iPXE gets the script.** iPXE (user class `iPXE` or its option 175) would load a ROM image
//!   offered to it and chainload itself forever; it gets `ipxe_script_url` instead.

use std::net::Ipv4Addr;

use leasehold_config::{is_url, Class, Pxe, Reservation};

use crate::wire::{ClientMessageType, Request};

/// Option 60 sent back to UEFI HTTP boot clients (UEFI 2.5+ §24.7.2).
const HTTP_CLIENT_VENDOR_CLASS: &[u8] = b"HTTPClient";
/// Parameter request list codes (RFC 2132 §9.8) that make a plain client get boot settings.
const OPTION_TFTP_SERVER: u8 = 66;
const OPTION_BOOTFILE: u8 = 67;

/// What kind of network-boot client sent the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootClient {
    /// No PXE or HTTP vendor class and not iPXE.
    Plain,
    /// A PXE ROM or UEFI PXE: option 60 starts with `PXEClient`.
    Pxe,
    /// UEFI HTTP boot: option 60 starts with `HTTPClient`.
    Http,
    /// iPXE, on BIOS or UEFI (it also sends `PXEClient`).
    Ipxe,
}

impl BootClient {
    pub fn of(request: &Request) -> BootClient {
        if request.is_ipxe() {
            BootClient::Ipxe
        } else if request.is_http_boot_client() {
            BootClient::Http
        } else if request.is_pxe_client() {
            BootClient::Pxe
        } else {
            BootClient::Plain
        }
    }
}

/// The boot settings of one reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootReply {
    /// The header's `siaddr` (next server).
    pub siaddr: Option<Ipv4Addr>,
    /// Option 66.
    pub tftp_server_name: Option<String>,
    /// The header's `file` and option 67.
    pub file: Option<String>,
    /// Option 60.
    pub vendor_class: Option<&'static [u8]>,
    /// Echo option 97 (RFC 4578 §2.3) to a network-boot client that sent it.
    pub echo_client_uuid: bool,
}

/// The boot settings `request` gets under `pxe`, with `class` and `reservation` the client's own,
/// if any: the reservation's settings win over the class's, which win over `pxe`'s. `this_node`: the
/// answering node's address when it serves the boot files itself (`[boot] root`): the TFTP server
/// of replies whose config names none, so a machine boots from the node that gave it its lease.
pub fn boot_reply(
    pxe: &Pxe,
    class: Option<&Class>,
    reservation: Option<&Reservation>,
    request: &Request,
    this_node: Option<Ipv4Addr>,
) -> BootReply {
    let client = BootClient::of(request);
    let next_server = reservation.and_then(|r| r.next_server).or(class.and_then(|c| c.next_server));
    let mut reply = BootReply { siaddr: next_server.or(pxe.next_server), ..BootReply::default() };
    // A BOOTP client (RFC 951) always wants its boot file: that is what BOOTP is for.
    let asked = request.message_type == ClientMessageType::Bootp
        || request.parameter_request_list.iter().any(|&c| c == OPTION_TFTP_SERVER || c == OPTION_BOOTFILE);
    match client {
        BootClient::Plain if !asked => return reply,
        BootClient::Http => {
            // Only a URL boots over HTTP: without one the client gets an address and no boot
            // settings, so its firmware goes on to its next boot option.
            if let Some(url) = boot_files(pxe, class, reservation, request).find(|file| is_url(file)) {
                reply.file = Some(url.to_string());
                reply.vendor_class = Some(HTTP_CLIENT_VENDOR_CLASS);
            }
        }
        BootClient::Plain | BootClient::Pxe | BootClient::Ipxe => {
            if let Some(tftp) = pxe.tftp_server.or(this_node) {
                reply.siaddr = reply.siaddr.or(Some(tftp));
                reply.tftp_server_name = Some(tftp.to_string());
            }
            let script = class.and_then(|c| c.ipxe_script_url.as_deref()).or(pxe.ipxe_script_url.as_deref());
            let script = script.filter(|_| client == BootClient::Ipxe);
            reply.file = script.or_else(|| boot_files(pxe, class, reservation, request).next()).map(str::to_string);
        }
    }
    reply.echo_client_uuid = client != BootClient::Plain && request.client_uuid.is_some();
    reply
}

/// Boot files in order of preference: the reservation's, the class's, the one for the client's
/// architecture (option 93), the default.
fn boot_files<'a>(
    pxe: &'a Pxe,
    class: Option<&'a Class>,
    reservation: Option<&'a Reservation>,
    request: &Request,
) -> impl Iterator<Item = &'a str> + 'a {
    let by_arch = request.client_arch.and_then(|arch| pxe.arch_boot_files.get(&arch));
    let reserved = reservation.and_then(|r| r.boot_file.as_ref());
    let by_class = class.and_then(|c| c.boot_file.as_ref());
    reserved.into_iter().chain(by_class).chain(by_arch).chain(pxe.boot_file.as_ref()).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const TFTP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 9);
    const URL: &str = "http://10.0.0.9/snponly.efi";

    fn pxe() -> Pxe {
        Pxe {
            next_server: None,
            tftp_server: Some(TFTP),
            boot_file: Some("undionly.kpxe".into()),
            arch_boot_files: BTreeMap::from([(7, "snponly.efi".to_string()), (16, URL.to_string())]),
            ipxe_script_url: Some("http://10.0.0.9/boot.ipxe".into()),
        }
    }

    fn firmware(vendor_class: &str, arch: u16) -> Request {
        Request {
            broadcast: true,
            vendor_class: Some(vendor_class.as_bytes().to_vec()),
            client_arch: Some(arch),
            client_uuid: Some(vec![0; 17]),
            parameter_request_list: vec![1, 3, 6, 43, 60, 66, 67],
            ..Request::new(ClientMessageType::Discover, 1, [0x52, 0x54, 0, 0, 0, 1])
        }
    }

    #[test]
    fn uefi_pxe_gets_its_file_without_option_60() {
        // EDK2's own DISCOVER (OVMF, arch 7): a DHCP-only offer with a boot file, no 60 (PxeBcDhcp4.c).
        let reply = boot_reply(&pxe(), None, None, &firmware("PXEClient:Arch:00007:UNDI:003000", 7), None);
        assert_eq!(reply.file.as_deref(), Some("snponly.efi"));
        assert_eq!(reply.siaddr, Some(TFTP));
        assert_eq!(reply.tftp_server_name.as_deref(), Some("10.0.0.9"));
        assert_eq!(reply.vendor_class, None);
        assert!(reply.echo_client_uuid);
    }

    /// Issue 14: a node that serves the boot files names itself where the config names no TFTP
    /// server; a configured one still wins.
    #[test]
    fn a_node_serving_boot_files_names_itself_unless_the_config_names_a_server() {
        let node = Ipv4Addr::new(10, 0, 0, 2);
        let request = firmware("PXEClient:Arch:00007:UNDI:003000", 7);
        let own = Pxe { tftp_server: None, ..pxe() };
        let reply = boot_reply(&own, None, None, &request, Some(node));
        assert_eq!((reply.siaddr, reply.tftp_server_name.as_deref()), (Some(node), Some("10.0.0.2")));
        assert_eq!(reply.file.as_deref(), Some("snponly.efi"));
        let reply = boot_reply(&own, None, None, &request, None);
        assert_eq!((reply.siaddr, reply.tftp_server_name), (None, None), "no root, no server named");
        let reply = boot_reply(&pxe(), None, None, &request, Some(node));
        assert_eq!(reply.siaddr, Some(TFTP), "the configured TFTP server wins");
    }

    #[test]
    fn http_boot_gets_http_client_and_the_url() {
        let reply = boot_reply(&pxe(), None, None, &firmware("HTTPClient:Arch:00016:UNDI:003000", 16), None);
        assert_eq!(reply.file.as_deref(), Some(URL));
        assert_eq!(reply.vendor_class, Some(&b"HTTPClient"[..]));
        // No TFTP server for an HTTP client: its boot file names its server.
        assert_eq!((reply.siaddr, reply.tftp_server_name), (None, None));
        // Without a URL for its architecture (19) nor a URL default, no HTTP boot offer at all.
        let reply = boot_reply(&pxe(), None, None, &firmware("HTTPClient:Arch:00019:UNDI:003000", 19), None);
        assert_eq!((reply.file, reply.vendor_class), (None, None));
    }

    #[test]
    fn ipxe_gets_the_script_on_bios_and_uefi() {
        for (vendor_class, arch) in [("PXEClient:Arch:00000:UNDI:002001", 0), ("PXEClient:Arch:00007:UNDI:003010", 7)] {
            let request = Request { user_class: Some(b"iPXE".to_vec()), ..firmware(vendor_class, arch) };
            let reply = boot_reply(&pxe(), None, None, &request, None);
            assert_eq!(reply.file.as_deref(), Some("http://10.0.0.9/boot.ipxe"), "arch {arch}");
            assert_eq!(reply.vendor_class, None);
        }
    }

    #[test]
    fn the_reservation_file_comes_first_and_next_server_reaches_every_client() {
        let reservation = Reservation {
            mac: Some([0x52, 0x54, 0, 0, 0, 1]),
            client_id: None,
            ip: Ipv4Addr::new(10, 0, 0, 50),
            hostname: None,
            boot_file: Some("special.efi".into()),
            next_server: None,
            boot_script: None,
            options: Default::default(),
        };
        let reply =
            boot_reply(&pxe(), None, Some(&reservation), &firmware("PXEClient:Arch:00007:UNDI:003000", 7), None);
        assert_eq!(reply.file.as_deref(), Some("special.efi"));
        // A plain client that asks for nothing boot-related still gets next_server in siaddr.
        let next_server = Ipv4Addr::new(10, 0, 0, 7);
        let with_next = Pxe { next_server: Some(next_server), ..pxe() };
        let plain =
            Request { vendor_class: None, client_arch: None, parameter_request_list: vec![1, 3], ..firmware("", 0) };
        assert_eq!(
            boot_reply(&with_next, None, None, &plain, None),
            BootReply { siaddr: Some(next_server), ..BootReply::default() }
        );
        // A PXE client gets next_server in siaddr, and the TFTP server in option 66.
        let reply = boot_reply(&with_next, None, None, &firmware("PXEClient:Arch:00000:UNDI:002001", 0), None);
        assert_eq!((reply.siaddr, reply.tftp_server_name.as_deref()), (Some(next_server), Some("10.0.0.9")));
    }
}
