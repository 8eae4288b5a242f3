//! Network boot over the wire: the PXE policy of `leasehold serve` as PXE ROMs, UEFI firmware and iPXE see it.
//!
//! The server runs with a config file written by the test (`[pxe]` with a TFTP server, a default boot file
//! and an iPXE script URL, `[pxe.arch]` with a file for BIOS, x64 UEFI and ARM64 UEFI and a URL for x64 UEFI
//! HTTP boot). What a boot ROM needs from a DHCPOFFER and DHCPACK (PXE 2.1 §2.2, RFC 4578, RFC 2132
//! §9.4–9.5, DESIGN.md):
//!
//! - the TFTP server in the header's `siaddr` *and* in option 66, the boot file in the header's `file`
//!   *and* in option 67 (many ROMs read only the header);
//! - the boot file chosen by the client system architecture, option 93 (RFC 4578 §2.1): 0 = x86 BIOS,
//!   7 = x64 UEFI, 11 = ARM64 UEFI; an architecture without its own file gets the default;
//! - *no* option 60 to a PXE client (option 60 starting with `PXEClient`): EDK2 (NetworkPkg
//!   UefiPxeBcDxe/PxeBcDhcp4.c) takes an offer with 60 `PXEClient` and no PXE option 43 for a BINL offer and
//!   asks a boot server on udp/4011 ("PXE-E16 No valid offer received"); an offer without 60 that names a
//!   boot file is a "DhcpOnly offer with bootfile" and boots. The client's UUID, option 97 (RFC 4578 §2.3),
//!   is echoed byte for byte;
//! - option 60 `HTTPClient` and a URL as the boot file to a UEFI HTTP boot client (option 60 starting with
//!   `HTTPClient`, arch 16): EDK2's HttpBootDhcp4.c takes only such an offer for HTTP boot;
//! - a client already running iPXE (user class `iPXE`, option 77 — bare or in RFC 3004 form — or iPXE's
//!   option 175) gets the iPXE script URL instead of a ROM image, so it does not chainload itself forever;
//! - a plain DHCP client (no 60, no 77, no 66/67 in its parameter request list, RFC 2132 §9.8) gets no
//!   boot settings at all.
//!
//! Test 1 checks all of that with the harness's `TestClient` from a client namespace. Test 2 boots a real
//! PXE ROM — qemu's iPXE option ROM on an emulated e1000 (`-boot n`, TCG, no disk) — whose NIC is a tap
//! device on the segment's bridge, with a config *without* `ipxe_script_url`: the ROM is then served by its
//! architecture (the BIOS file). It reads the ROM's DHCP exchange from a packet capture in the server
//! namespace and the lease from `GET /v1/leases`, and stops qemu as soon as the lease is there (no TFTP
//! server is needed); every qemu run is bounded by `timeout`. The same ROM given the script URL and booted
//! through to the script's marker, like OVMF's UEFI PXE and HTTP boot, is in tests/firmware.rs.

mod netns_support;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use leasehold_tests::{
    arch, format_mac, test_mac, ClientConfig, ClientOptions, Mac, MessageType, ReplyView, RetryPolicy, TestClient,
};
use netns_support::capture::*;
use netns_support::*;

const TFTP_SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 9);
const DEFAULT_FILE: &str = "default/pxelinux.0";
const BIOS_FILE: &str = "bios/undionly.kpxe";
const UEFI_X64_FILE: &str = "efi64/ipxe.efi";
const UEFI_ARM64_FILE: &str = "arm64/ipxe-arm64.efi";
const HTTP_X64_URL: &str = "http://10.77.0.9/efi64/snponly.efi";
const IPXE_SCRIPT_URL: &str = "http://10.77.0.9/boot.ipxe";
const POOL_START: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
const POOL_END: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 200);
/// The qemu guest's NIC.
const QEMU_MAC: Mac = [0x52, 0x54, 0x00, 0x4c, 0x0b, 0x01];
/// The guest's SMBIOS UUID, which the ROM sends in option 97.
const QEMU_UUID: &str = "4c454153-4548-4f4c-4400-0000000000b1";

/// The config file of the test: `[pxe]` with or without `ipxe_script_url`.
fn write_config(dir: &Path, with_ipxe_url: bool) -> PathBuf {
    let ipxe = if with_ipxe_url { format!("ipxe_script_url = \"{IPXE_SCRIPT_URL}\"\n") } else { String::new() };
    let text = format!(
        r#"# Written by tests/pxe.rs.
[server]
server_ip = "10.77.0.1"

[pxe]
tftp_server = "{TFTP_SERVER}"
boot_file = "{DEFAULT_FILE}"
{ipxe}
[pxe.arch]
bios = "{BIOS_FILE}"
uefi-x64 = "{UEFI_X64_FILE}"
uefi-arm64 = "{UEFI_ARM64_FILE}"
http-x64 = "{HTTP_X64_URL}"

[[pool]]
name = "boot"
subnet = "10.77.0.0/24"
range_start = "{POOL_START}"
range_end = "{POOL_END}"
lease_time_secs = 600
"#
    );
    let path = dir.join(if with_ipxe_url { "leasehold.toml" } else { "leasehold-no-ipxe-url.toml" });
    std::fs::write(&path, text).expect("write the config file");
    path
}

fn start_server(ns: &str, dir: &Path, config: &Path, name: &str) -> Server {
    let data = dir.join(format!("data-{name}"));
    std::fs::create_dir_all(&data).expect("create the data dir");
    let config = config.to_str().expect("a UTF-8 temp path");
    Server::start(ns, &data, &dir.join(format!("leasehold-{name}.log")), &["--config", config])
}

// ---------------------------------------------------------------------------------------------------------
// What a reply must carry (`BootWant`, netns_support/capture.rs)

/// A PXE client's settings: siaddr/66 = the TFTP server, file/67 = `file`, no option 60, its 97 echoed.
fn pxe_want(file: &str, uuid: &[u8]) -> BootWant {
    BootWant {
        tftp_server: Expect::Is(TFTP_SERVER),
        boot_file: Expect::Is(file.to_owned()),
        vendor_class: Expect::Absent,
        uuid: Expect::Is(uuid.to_vec()),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Test 1: the TestClient as PXE ROMs, UEFI firmware, iPXE and a plain client

/// One client of test 1.
struct Case {
    what: &'static str,
    mac: Mac,
    options: ClientOptions,
    want: BootWant,
}

fn uuid_of(n: u8) -> [u8; 16] {
    let mut uuid = [0x11u8; 16];
    uuid[0] = 0x4c;
    uuid[15] = n;
    uuid
}

/// A PXE ROM's DISCOVER (options 60, 93, 94, 97, 61, 57) for `arch`, with the given vendor class.
fn pxe_case(what: &'static str, n: u8, arch_type: u16, vendor_class: &str, boot_file: &'static str) -> Case {
    let mac = test_mac(0x00b0_0000 | u32::from(n));
    let mut options = ClientOptions::pxe(mac, arch_type, uuid_of(n));
    options.vendor_class = Some(vendor_class.as_bytes().to_vec());
    let want = pxe_want(boot_file, options.client_uuid.as_deref().unwrap_or_default());
    Case { what, mac, options, want }
}

#[test]
fn pxe_boot_settings_over_the_wire() {
    let segment = Segment::up(1, 1, 24);
    let dir = scratch_dir("pxe-wire");
    let config = write_config(dir.path(), true);
    let server = start_server(&segment.server(1), dir.path(), &config, "wire");
    let client_ns = segment.client(1);
    let _capture = Capture::start(&client_ns, &dir.path().join("capture.txt"));
    let mut client =
        TestClient::bind(ClientConfig::in_namespace(&client_ns, "eth0")).expect("open the test client's socket");

    let mut cases = vec![
        // RFC 4578 §2.1 architecture types; the vendor class of an Intel-style UNDI 3.16 ROM.
        pxe_case("x64 UEFI (arch 7)", 1, arch::EFI_X64, "PXEClient:Arch:00007:UNDI:003016", UEFI_X64_FILE),
        pxe_case("x86 BIOS (arch 0)", 2, arch::BIOS, "PXEClient:Arch:00000:UNDI:002001", BIOS_FILE),
        pxe_case("ARM64 UEFI (arch 11)", 3, arch::EFI_ARM64, "PXEClient:Arch:00011:UNDI:003016", UEFI_ARM64_FILE),
        pxe_case(
            "IA32 UEFI (arch 6, no file of its own)",
            4,
            arch::EFI_IA32,
            "PXEClient:Arch:00006:UNDI:003016",
            DEFAULT_FILE,
        ),
        pxe_case("an unassigned arch (0x1234)", 5, 0x1234, "PXEClient:Arch:04660:UNDI:003016", DEFAULT_FILE),
        // iPXE (user class "iPXE", RFC 3004 option 77) gets the script, whatever its architecture.
        {
            let mut case = pxe_case(
                "iPXE, user class \"iPXE\" (bare, as iPXE sends it)",
                6,
                arch::EFI_X64,
                "PXEClient:Arch:00007:UNDI:003016",
                IPXE_SCRIPT_URL,
            );
            case.options.user_class = Some(b"iPXE".to_vec());
            case
        },
        {
            let mut case = pxe_case(
                "iPXE, user class in RFC 3004 form (length, \"iPXE\")",
                7,
                arch::BIOS,
                "PXEClient:Arch:00000:UNDI:002001",
                IPXE_SCRIPT_URL,
            );
            case.options.user_class = Some(b"\x04iPXE".to_vec());
            case
        },
    ];
    {
        // qemu's ROM: ClientOptions::ipxe sends user class "iPXE" and iPXE's option 175.
        let mac = test_mac(0x00b0_0008);
        let options = ClientOptions::ipxe(mac, arch::BIOS, uuid_of(8));
        let want = pxe_want(IPXE_SCRIPT_URL, options.client_uuid.as_deref().unwrap_or_default());
        cases.push(Case { what: "iPXE as qemu's ROM (77 and 175)", mac, options, want });
    }
    {
        // OVMF's UEFI HTTP boot DISCOVER (as captured in tests/firmware.rs): 60
        // `HTTPClient:Arch:00016:UNDI:003000`, 93 = 16, 94 = UNDI 3.0, 97. It is given option 60 `HTTPClient`
        // and the URL of `[pxe.arch] http-x64` in file and 67 (EDK2 HttpBootDhcp4.c reads the URI from
        // there). HttpBootDhcp4.c reads neither siaddr nor 66, and nothing asks a server to echo 97 to an
        // HTTP client: those are not checked.
        let mac = test_mac(0x00b0_000b);
        let mut options = ClientOptions::pxe(mac, arch::EFI_X64_HTTP, uuid_of(11));
        options.vendor_class = Some(b"HTTPClient:Arch:00016:UNDI:003000".to_vec());
        options.extra = vec![(94, vec![1, 3, 0])];
        let want = BootWant {
            tftp_server: Expect::Any,
            boot_file: Expect::Is(HTTP_X64_URL.to_owned()),
            vendor_class: Expect::Is("HTTPClient"),
            uuid: Expect::Any,
        };
        cases.push(Case { what: "x64 UEFI HTTP boot (arch 16, HTTPClient)", mac, options, want });
    }
    {
        // A plain client: no 60, 77, 93, 97; 66 and 67 not in its parameter request list.
        let options =
            ClientOptions { parameter_request_list: vec![1, 3, 6, 15, 28, 51, 54, 58, 59], ..ClientOptions::default() };
        cases.push(Case {
            what: "a plain DHCP client (no 60/77, no 66/67 requested)",
            mac: test_mac(0x00b0_0009),
            options,
            want: BootWant {
                tftp_server: Expect::Absent,
                boot_file: Expect::Absent,
                vendor_class: Expect::Absent,
                uuid: Expect::Absent,
            },
        });
    }
    {
        // A plain client that asks for 66 and 67 (RFC 2132 §9.8) gets the default boot settings, and
        // neither 60 nor 97: it sent neither.
        cases.push(Case {
            what: "a plain DHCP client asking for 66/67",
            mac: test_mac(0x00b0_000a),
            options: ClientOptions::default(),
            want: BootWant {
                tftp_server: Expect::Is(TFTP_SERVER),
                boot_file: Expect::Is(DEFAULT_FILE.to_owned()),
                vendor_class: Expect::Absent,
                uuid: Expect::Absent,
            },
        });
    }

    let policy = RetryPolicy::default();
    let mut failures = Vec::new();
    for case in &cases {
        let lease = match client.dora_with(case.mac, &case.options, &policy, Duration::from_secs(10)) {
            Ok(lease) => lease,
            Err(e) => {
                failures.push(format!(
                    "{} ({}): expected DISCOVER → OFFER → REQUEST → ACK, got: {e}",
                    case.what,
                    format_mac(case.mac)
                ));
                continue;
            }
        };
        for (stage, reply) in [("OFFER", &lease.offer), ("ACK", &lease.ack)] {
            for wrong in boot_mismatches(reply, &case.want) {
                failures.push(format!("{} — {stage}: {wrong}", case.what));
            }
        }
        let bound = server.lease_of(lease.address);
        if !bound.as_ref().is_some_and(|l| l.state == "bound" && l.mac.eq_ignore_ascii_case(&format_mac(case.mac))) {
            failures.push(format!("{}: ACKed {}, but /v1/leases has {bound:?}", case.what, lease.address));
        }
        println!(
            "{}: {} with file {:?}, siaddr {}, option 60 {:?}",
            case.what,
            lease.address,
            lease.ack.file,
            lease.ack.siaddr,
            lease.ack.option_text(60)
        );
    }
    assert!(failures.is_empty(), "{} mismatches:\n  {}", failures.len(), failures.join("\n  "));
}

// ---------------------------------------------------------------------------------------------------------
// Test 2: qemu's iPXE ROM without a script URL

/// Without `ipxe_script_url` there is no script to give iPXE, so the ROM (user class iPXE, arch 0) is served
/// like any BIOS PXE client: by its architecture, `[pxe.arch] bios`. (With the URL it gets the script and
/// boots to it: tests/firmware.rs, `bios_ipxe_rom_runs_the_ipxe_script`.)
#[test]
fn qemu_ipxe_rom_without_a_script_url_gets_the_bios_boot_file() {
    let segment = Segment::up(1, 0, 24);
    let dir = scratch_dir("pxe-qemu");
    let bridge_ns = add_guest_tap(&segment);
    let config = write_config(dir.path(), false);
    let server = start_server(&segment.server(1), dir.path(), &config, "qemu");
    let capture = PcapCapture::start(&server.ns, &dir.path().join("capture.pcap"), &dir.path().join("tcpdump.log"));
    let qemu_log = dir.path().join("qemu.log");
    let started = Instant::now();
    let mut guest = Proc::spawn(
        "qemu (PXE boot)",
        bios_ipxe_rom_guest(&bridge_ns, QEMU_MAC, QEMU_UUID, Duration::from_secs(60)),
        &qemu_log,
    );

    // The lease appears in /v1/leases once the ROM's REQUEST is committed (polled: no event to wait on).
    let mac = format_mac(QEMU_MAC);
    let deadline = Instant::now() + Duration::from_secs(50);
    let lease = loop {
        if let Some(lease) =
            server.leases().into_iter().find(|l| l.mac.eq_ignore_ascii_case(&mac) && l.state == "bound")
        {
            break lease;
        }
        if let Some(status) = guest.try_status() {
            panic!("qemu exited ({status}) before the ROM got a lease\n{}", tail_of(&qemu_log));
        }
        assert!(
            Instant::now() < deadline,
            "the ROM ({mac}) had no bound lease in /v1/leases 50 s after qemu started\n{}",
            tail_of(&qemu_log)
        );
        thread::sleep(Duration::from_millis(100));
    };
    let took = started.elapsed();
    // The ACK follows the commit within milliseconds: wait for it in the capture, then stop the guest.
    let deadline = Instant::now() + Duration::from_secs(5);
    let replies: Vec<ReplyView> = loop {
        let replies: Vec<ReplyView> = capture.replies_to(&QEMU_MAC).into_iter().map(|(_, reply)| reply).collect();
        if replies.iter().any(|r| r.is(MessageType::Ack)) || Instant::now() >= deadline {
            break replies;
        }
        thread::sleep(Duration::from_millis(50));
    };
    guest.stop(Duration::from_secs(5));
    let requests = capture.requests_from(&QEMU_MAC);
    for request in &requests {
        println!("  {}", request.describe());
    }
    for reply in &replies {
        println!("  {}", describe_reply(reply));
    }

    assert!(
        (u32::from(POOL_START)..=u32::from(POOL_END)).contains(&u32::from(lease.ip)),
        "the ROM was given {}, outside the pool",
        lease.ip
    );
    let discover = requests
        .iter()
        .find(|r| r.message_type == Some(1))
        .unwrap_or_else(|| panic!("no DHCPDISCOVER from the ROM in the capture (requests: {requests:?})"));
    let uuid = check_bios_ipxe_rom_discover(discover, "qemu's iPXE ROM");
    // A PXE client: siaddr/66, the BIOS file in file/67, no option 60, 97 echoed.
    let want = pxe_want(BIOS_FILE, &uuid);
    for stage in [MessageType::Offer, MessageType::Ack] {
        let reply = replies.iter().find(|r| r.is(stage)).unwrap_or_else(|| {
            panic!(
                "no {stage:?} to the ROM in the capture (replies: {:?})",
                replies.iter().map(|r| r.message_type).collect::<Vec<_>>()
            )
        });
        assert_eq!(reply.yiaddr, lease.ip, "the {stage:?} to the ROM names another address than /v1/leases");
        let wrong = boot_mismatches(reply, &want);
        assert!(wrong.is_empty(), "the {stage:?} to the ROM:\n  {}", wrong.join("\n  "));
    }
    println!("qemu's iPXE ROM: lease {} after {took:?} (qemu start to lease), boot file {BIOS_FILE}", lease.ip);
}
