//! Network boot over the wire: the PXE policy of `leasehold serve` as PXE ROMs, UEFI firmware and iPXE see it.
//!
//! The server runs with a config file written by the test (`[pxe]` with a TFTP server, a default boot file
//! and an iPXE script URL, `[pxe.arch]` with a file for BIOS, x64 UEFI and ARM64 UEFI). What a boot ROM
//! needs from a DHCPOFFER and DHCPACK (PXE 2.1 §2.2, RFC 4578, RFC 2132 §9.4–9.5, DESIGN.md):
//!
//! - the TFTP server in the header's `siaddr` *and* in option 66, the boot file in the header's `file`
//!   *and* in option 67 (many ROMs read only the header);
//! - the boot file chosen by the client system architecture, option 93 (RFC 4578 §2.1): 0 = x86 BIOS,
//!   7 = x64 UEFI, 11 = ARM64 UEFI; an architecture without its own file gets the default;
//! - option 60 `PXEClient` echoed to a client whose option 60 starts with `PXEClient` (PXE 2.1 §2.2), and
//!   the client's UUID, option 97 (RFC 4578 §2.3), echoed byte for byte;
//! - a client already running iPXE (user class `iPXE`, option 77 — bare or in RFC 3004 form — or iPXE's
//!   option 175) gets the iPXE script URL instead of a ROM image, so it does not chainload itself forever;
//! - a plain DHCP client (no 60, no 77, no 66/67 in its parameter request list, RFC 2132 §9.8) gets no
//!   boot settings at all.
//!
//! Test 1 checks all of that with the harness's `TestClient` from a client namespace. Test 2 boots a real
//! PXE ROM — qemu's iPXE option ROM on an emulated e1000 (`-boot n`, TCG, no disk) — whose NIC is a tap
//! device on the segment's bridge, and reads the ROM's DHCP exchange from a packet capture in the server
//! namespace and the lease from `GET /v1/leases`. qemu is stopped as soon as the lease is there (no TFTP
//! server is needed); every qemu run is bounded by `timeout`.

mod netns_support;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use leasehold_tests::{
    arch, format_mac, test_mac, ClientConfig, ClientOptions, Mac, MessageType, ReplyView, RetryPolicy, TestClient,
};
use netns_support::*;

const TFTP_SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 9);
const DEFAULT_FILE: &str = "default/pxelinux.0";
const BIOS_FILE: &str = "bios/undionly.kpxe";
const UEFI_X64_FILE: &str = "efi64/ipxe.efi";
const UEFI_ARM64_FILE: &str = "arm64/ipxe-arm64.efi";
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
// What a reply must carry

/// The boot settings a reply must (or must not) carry.
#[derive(Debug, Clone)]
struct Want {
    /// `Some(file)`: siaddr = TFTP server, `file` and option 67 = file, option 66 = TFTP server.
    /// `None`: none of them.
    boot_file: Option<&'static str>,
    /// Option 60 `PXEClient` and option 97 = this (the client's option 97) echoed; `None`: neither.
    pxe_echo: Option<Vec<u8>>,
}

/// Every way `reply` differs from `want` (empty if none).
fn boot_mismatches(reply: &ReplyView, want: &Want) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut check = |what: &str, got: String, expected: String| {
        if got != expected {
            wrong.push(format!("{what}: expected {expected}, got {got}"));
        }
    };
    match want.boot_file {
        Some(file) => {
            check("siaddr (next server, RFC 2131 §2)", reply.siaddr.to_string(), TFTP_SERVER.to_string());
            check("header `file`", format!("{:?}", reply.file.as_deref()), format!("{:?}", Some(file)));
            check(
                "option 66 (TFTP server)",
                format!("{:?}", reply.option_text(66)),
                format!("{:?}", Some(TFTP_SERVER.to_string())),
            );
            check("option 67 (boot file)", format!("{:?}", reply.option_text(67)), format!("{:?}", Some(file)));
        }
        None => {
            check("siaddr", reply.siaddr.to_string(), Ipv4Addr::UNSPECIFIED.to_string());
            check("header `file`", format!("{:?}", reply.file), "None".to_owned());
            check("option 66", format!("{:?}", reply.option(66)), "None".to_owned());
            check("option 67", format!("{:?}", reply.option(67)), "None".to_owned());
        }
    }
    match &want.pxe_echo {
        Some(uuid) => {
            check(
                "option 60 (PXE 2.1 §2.2: exactly \"PXEClient\")",
                format!("{:?}", reply.option_text(60)),
                format!("{:?}", Some("PXEClient")),
            );
            check(
                "option 97 (RFC 4578 §2.3, echoed byte for byte)",
                format!("{:?}", reply.option(97)),
                format!("{:?}", Some(uuid.as_slice())),
            );
        }
        None => {
            check("option 60", format!("{:?}", reply.option(60)), "None".to_owned());
            check("option 97", format!("{:?}", reply.option(97)), "None".to_owned());
        }
    }
    wrong
}

// ---------------------------------------------------------------------------------------------------------
// Test 1: the TestClient as PXE ROMs, UEFI firmware, iPXE and a plain client

/// One client of test 1.
struct Case {
    what: &'static str,
    mac: Mac,
    options: ClientOptions,
    want: Want,
}

fn uuid_of(n: u8) -> [u8; 16] {
    let mut uuid = [0x11u8; 16];
    uuid[0] = 0x4c;
    uuid[15] = n;
    uuid
}

/// A PXE ROM's DISCOVER (options 60, 93, 94, 97, 61, 57) for `arch`, with the brief's vendor class.
fn pxe_case(what: &'static str, n: u8, arch_type: u16, vendor_class: &str, boot_file: &'static str) -> Case {
    let mac = test_mac(0x00b0_0000 | u32::from(n));
    let mut options = ClientOptions::pxe(mac, arch_type, uuid_of(n));
    options.vendor_class = Some(vendor_class.as_bytes().to_vec());
    let pxe_echo = options.client_uuid.clone();
    Case { what, mac, options, want: Want { boot_file: Some(boot_file), pxe_echo } }
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
        let pxe_echo = options.client_uuid.clone();
        cases.push(Case {
            what: "iPXE as qemu's ROM (77 and 175)",
            mac,
            options,
            want: Want { boot_file: Some(IPXE_SCRIPT_URL), pxe_echo },
        });
    }
    {
        // A plain client: no 60, 77, 93, 97; 66 and 67 not in its parameter request list.
        let options =
            ClientOptions { parameter_request_list: vec![1, 3, 6, 15, 28, 51, 54, 58, 59], ..ClientOptions::default() };
        cases.push(Case {
            what: "a plain DHCP client (no 60/77, no 66/67 requested)",
            mac: test_mac(0x00b0_0009),
            options,
            want: Want { boot_file: None, pxe_echo: None },
        });
    }
    {
        // A plain client that asks for 66 and 67 (RFC 2132 §9.8) gets the default boot settings, but no
        // PXE echo: it did not say PXEClient.
        cases.push(Case {
            what: "a plain DHCP client asking for 66/67",
            mac: test_mac(0x00b0_000a),
            options: ClientOptions::default(),
            want: Want { boot_file: Some(DEFAULT_FILE), pxe_echo: None },
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
// Test 2: qemu's iPXE ROM

/// A tcpdump of the DHCP traffic on `eth0` of a namespace, written to a pcap file the test parses. Its
/// decoded text is printed when the test fails.
struct PcapCapture {
    proc: Proc,
    file: PathBuf,
}

impl PcapCapture {
    fn start(ns: &str, file: &Path, log: &Path) -> PcapCapture {
        let mut cmd = in_ns(ns, require_tool("tcpdump"));
        cmd.args(["-i", "eth0", "-n", "-U", "--immediate-mode", "-w"]).arg(file);
        cmd.args(["udp port 67 or udp port 68"]);
        let proc = Proc::spawn("tcpdump -w", cmd, log);
        wait_tcpdump_listening(log);
        PcapCapture { proc, file: file.to_owned() }
    }

    /// The UDP payloads captured so far: (source port, destination port, payload).
    fn datagrams(&self) -> Vec<(u16, u16, Vec<u8>)> {
        udp_payloads(&std::fs::read(&self.file).unwrap_or_default())
    }
}

impl Drop for PcapCapture {
    fn drop(&mut self) {
        if self.proc.try_status().is_none() {
            signal(self.proc.pid, libc::SIGINT);
            self.proc.wait_exit(Duration::from_secs(3));
        }
        if thread::panicking() {
            let out = Command::new("tcpdump").args(["-n", "-vvv", "-r"]).arg(&self.file).output();
            let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
            eprintln!("capture in the server namespace (the test failed):\n{text}");
        }
    }
}

/// The IPv4/UDP payloads of a pcap file of Ethernet frames (unfragmented datagrams only).
fn udp_payloads(pcap: &[u8]) -> Vec<(u16, u16, Vec<u8>)> {
    let u16_at = |b: &[u8], at: usize| b.get(at..at + 2).map_or(0, |v| u16::from_be_bytes([v[0], v[1]]));
    let le32_at = |b: &[u8], at: usize| b.get(at..at + 4).map_or(0, |v| u32::from_le_bytes([v[0], v[1], v[2], v[3]]));
    let mut out = Vec::new();
    // Little-endian pcap (microsecond or nanosecond), link type 1 (Ethernet): what tcpdump writes here.
    if !matches!(le32_at(pcap, 0), 0xa1b2_c3d4 | 0xa1b2_3c4d) || le32_at(pcap, 20) != 1 {
        return out;
    }
    let mut at = 24;
    while let Some(header) = pcap.get(at..at + 16) {
        let len = le32_at(header, 8) as usize;
        let Some(frame) = pcap.get(at + 16..at + 16 + len) else { break };
        at += 16 + len;
        if frame.len() < 14 + 20 || u16_at(frame, 12) != 0x0800 {
            continue;
        }
        let ip = &frame[14..];
        let header_len = usize::from(ip[0] & 0x0f) * 4;
        let total_len = usize::from(u16_at(ip, 2)).min(ip.len());
        let fragment = u16_at(ip, 6) & 0x3fff != 0;
        if ip[9] != 17 || fragment || total_len < header_len + 8 {
            continue;
        }
        let udp = &ip[header_len..total_len];
        out.push((u16_at(udp, 0), u16_at(udp, 2), udp[8..].to_vec()));
    }
    out
}

/// A client's BOOTREQUEST as captured: option 53 and every option's bytes (RFC 3396: instances joined).
#[derive(Debug)]
struct SeenRequest {
    message_type: Option<u8>,
    options: BTreeMap<u8, Vec<u8>>,
}

fn parse_request(payload: &[u8], mac: &Mac) -> Option<SeenRequest> {
    if payload.len() < 240 || payload[0] != 1 || payload.get(28..34)? != mac || payload[236..240] != [99, 130, 83, 99] {
        return None;
    }
    let mut options: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
    let mut rest = &payload[240..];
    while let Some((&code, after)) = rest.split_first() {
        match code {
            0 => rest = after,
            255 => break,
            _ => {
                let (&len, after) = after.split_first()?;
                let (value, after) = after.split_at_checked(usize::from(len))?;
                options.entry(code).or_default().extend_from_slice(value);
                rest = after;
            }
        }
    }
    Some(SeenRequest { message_type: options.get(&53).and_then(|v| v.first().copied()), options })
}

/// One boot of qemu's iPXE ROM against `server`: waits for the ROM's lease, stops qemu, and returns the
/// ROM's DHCP requests and the server's replies to it from the capture (and the capture, which prints
/// itself if the test then fails).
fn boot_qemu_rom(
    segment: &Segment,
    server: &Server,
    dir: &Path,
    name: &str,
) -> (Vec<SeenRequest>, Vec<ReplyView>, Lease, Duration, PcapCapture) {
    let qemu = require_tool("qemu-system-x86_64");
    let rom = ["/usr/lib/ipxe/qemu/pxe-e1000.rom", "/usr/share/qemu/pxe-e1000.rom"];
    assert!(
        rom.iter().any(|p| Path::new(p).exists()),
        "qemu's e1000 PXE ROM is missing ({rom:?}): install the Debian package ipxe-qemu"
    );
    let capture = PcapCapture::start(
        &server.ns,
        &dir.join(format!("capture-{name}.pcap")),
        &dir.join(format!("tcpdump-{name}.log")),
    );
    // The guest's NIC is a tap device on the segment's bridge, inside the bridge namespace; qemu runs in
    // that namespace to open it. TCG, no disk, no display: the BIOS goes straight to the NIC's ROM.
    let mut cmd = in_ns(&format!("{}-br", segment.name), "timeout");
    cmd.args(["60"]).arg(&qemu);
    cmd.args(["-accel", "tcg", "-m", "128", "-display", "none", "-monitor", "none", "-serial", "none"]);
    cmd.args(["-boot", "n", "-no-reboot", "-uuid", QEMU_UUID]);
    cmd.args(["-netdev", "tap,id=net0,ifname=lhtap0,script=no,downscript=no"]);
    cmd.args(["-device", &format!("e1000,netdev=net0,mac={}", format_mac(QEMU_MAC))]);
    let qemu_log = dir.join(format!("qemu-{name}.log"));
    let started = Instant::now();
    let mut guest = Proc::spawn("qemu (PXE boot)", cmd, &qemu_log);

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
    let replies = loop {
        let replies: Vec<ReplyView> = capture
            .datagrams()
            .iter()
            .filter(|(from, _, _)| *from == 67)
            .filter_map(|(_, _, payload)| ReplyView::parse(payload).ok())
            .filter(|reply| reply.chaddr == QEMU_MAC)
            .collect();
        if replies.iter().any(|r| r.is(MessageType::Ack)) || Instant::now() >= deadline {
            break replies;
        }
        thread::sleep(Duration::from_millis(50));
    };
    guest.stop(Duration::from_secs(5));
    let requests: Vec<SeenRequest> = capture
        .datagrams()
        .iter()
        .filter(|(_, to, _)| *to == 67)
        .filter_map(|(_, _, p)| parse_request(p, &QEMU_MAC))
        .collect();
    (requests, replies, lease, took, capture)
}

/// Checks the ROM's exchange: it identified itself as a BIOS PXE client running iPXE, and both the OFFER
/// and the ACK carried `want`.
fn check_rom_exchange(requests: &[SeenRequest], replies: &[ReplyView], want_file: &'static str, phase: &str) {
    let discover = requests
        .iter()
        .find(|r| r.message_type == Some(1))
        .unwrap_or_else(|| panic!("{phase}: no DHCPDISCOVER from the ROM in the capture (requests: {requests:?})"));
    let vendor_class =
        String::from_utf8_lossy(discover.options.get(&60).map(Vec::as_slice).unwrap_or_default()).into_owned();
    assert!(
        vendor_class.starts_with("PXEClient:Arch:00000:UNDI:"),
        "{phase}: the ROM's DISCOVER should carry option 60 PXEClient:Arch:00000:UNDI:… (PXE 2.1 §2.2, BIOS), got {vendor_class:?}"
    );
    assert_eq!(
        discover.options.get(&93).map(Vec::as_slice),
        Some(&[0u8, 0][..]),
        "{phase}: option 93 (RFC 4578 §2.1) should be 0, x86 BIOS"
    );
    let user_class = discover.options.get(&77).cloned().unwrap_or_default();
    assert!(
        user_class.windows(4).any(|w| w == b"iPXE"),
        "{phase}: qemu's ROM is iPXE and should send user class \"iPXE\" (option 77), got {user_class:?}"
    );
    let uuid = discover
        .options
        .get(&97)
        .cloned()
        .unwrap_or_else(|| panic!("{phase}: the ROM sent no option 97 (RFC 4578 §2.3)"));
    assert_eq!(uuid.len(), 17, "{phase}: option 97 is a type byte and a 16-byte UUID, got {uuid:?}");
    let want = Want { boot_file: Some(want_file), pxe_echo: Some(uuid) };
    for stage in [MessageType::Offer, MessageType::Ack] {
        let reply = replies.iter().find(|r| r.is(stage)).unwrap_or_else(|| {
            panic!(
                "{phase}: no {stage:?} to the ROM in the capture (replies: {:?})",
                replies.iter().map(|r| r.message_type).collect::<Vec<_>>()
            )
        });
        let wrong = boot_mismatches(reply, &want);
        assert!(wrong.is_empty(), "{phase}: the {stage:?} to the ROM:\n  {}", wrong.join("\n  "));
    }
}

#[test]
fn qemu_ipxe_rom_gets_a_lease_and_its_boot_file() {
    let segment = Segment::up(1, 0, 24);
    let dir = scratch_dir("pxe-qemu");
    let bridge_ns = format!("{}-br", segment.name);
    for args in [
        vec!["tuntap", "add", "dev", "lhtap0", "mode", "tap"],
        vec!["link", "set", "lhtap0", "master", "br0"],
        vec!["link", "set", "lhtap0", "up"],
    ] {
        let out = Command::new("ip").arg("-n").arg(&bridge_ns).args(&args).output().expect("run ip");
        assert!(out.status.success(), "ip -n {bridge_ns} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    // Phase A: the full config. The ROM is iPXE (user class "iPXE"), so it is given the script URL, not a
    // ROM image to chainload.
    let config = write_config(dir.path(), true);
    let server = start_server(&segment.server(1), dir.path(), &config, "qemu-a");
    let (requests, replies, lease, took, capture) = boot_qemu_rom(&segment, &server, dir.path(), "a");
    assert!(
        (u32::from(POOL_START)..=u32::from(POOL_END)).contains(&u32::from(lease.ip)),
        "the ROM was given {}, outside the pool",
        lease.ip
    );
    check_rom_exchange(&requests, &replies, IPXE_SCRIPT_URL, "with ipxe_script_url");
    println!("qemu's iPXE ROM: lease {} after {took:?} (qemu start to lease), boot file {IPXE_SCRIPT_URL}", lease.ip);
    drop((capture, server));

    // Phase B: no ipxe_script_url. The same ROM is then served by architecture: arch 0 → the BIOS file.
    let config = write_config(dir.path(), false);
    let server = start_server(&segment.server(1), dir.path(), &config, "qemu-b");
    let (requests, replies, lease, took, _capture) = boot_qemu_rom(&segment, &server, dir.path(), "b");
    check_rom_exchange(&requests, &replies, BIOS_FILE, "without ipxe_script_url");
    println!("qemu's iPXE ROM: lease {} after {took:?} (qemu start to lease), boot file {BIOS_FILE}", lease.ip);
}
