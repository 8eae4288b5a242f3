//! What crosses the wire when a real boot ROM or firmware boots on a test segment, and what a reply to it
//! must carry. Shared by tests/pxe.rs and tests/firmware.rs:
//!
//! - `PcapCapture`: a `tcpdump -w` of the DHCP traffic in a namespace, read back as datagrams with their
//!   capture time (a small reader of the classic pcap format, Ethernet/IPv4/UDP);
//! - `SeenRequest` (a client's BOOTREQUEST as captured) next to the harness's `ReplyView` for the replies,
//!   and one-line renderings of both for transcripts;
//! - `BootWant` / `boot_mismatches`: the boot settings a reply must (or must not) carry;
//! - the guest's port on the segment (a tap device on the bridge) and qemu with its BIOS iPXE ROM.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use leasehold_tests::{format_mac, Mac, MessageType, ReplyView};

use super::{in_ns, require_tool, signal, wait_tcpdump_listening, Proc, Segment};

// ---------------------------------------------------------------------------------------------------------
// The capture

/// One captured IPv4/UDP datagram.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// Capture time, seconds since the Unix epoch.
    pub at: f64,
    /// The IPv4 source and destination addresses.
    pub from: Ipv4Addr,
    pub to: Ipv4Addr,
    pub from_port: u16,
    pub to_port: u16,
    pub payload: Vec<u8>,
}

/// The IPv4/UDP datagrams of a pcap file of Ethernet frames (unfragmented datagrams only; a record cut off
/// at the end of a file still being written is left out).
pub fn udp_datagrams(pcap: &[u8]) -> Vec<Datagram> {
    let u16_at = |b: &[u8], at: usize| b.get(at..at + 2).map_or(0, |v| u16::from_be_bytes([v[0], v[1]]));
    let le32_at = |b: &[u8], at: usize| b.get(at..at + 4).map_or(0, |v| u32::from_le_bytes([v[0], v[1], v[2], v[3]]));
    let mut out = Vec::new();
    // Little-endian pcap, microsecond (a1b2c3d4) or nanosecond (a1b23c4d) stamps, link type 1 (Ethernet):
    // what tcpdump writes here.
    let fraction = match le32_at(pcap, 0) {
        0xa1b2_c3d4 => 1e-6,
        0xa1b2_3c4d => 1e-9,
        _ => return out,
    };
    if le32_at(pcap, 20) != 1 {
        return out;
    }
    let mut at = 24;
    while let Some(header) = pcap.get(at..at + 16) {
        let stamp = f64::from(le32_at(header, 0)) + f64::from(le32_at(header, 4)) * fraction;
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
        if ip[9] != 17 || fragment || header_len < 20 || total_len < header_len + 8 {
            continue;
        }
        let udp = &ip[header_len..total_len];
        let address = |at: usize| Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]);
        out.push(Datagram {
            at: stamp,
            from: address(12),
            to: address(16),
            from_port: u16_at(udp, 0),
            to_port: u16_at(udp, 2),
            payload: udp[8..].to_vec(),
        });
    }
    out
}

/// A tcpdump of the DHCP traffic (udp/67, udp/68) on `eth0` of a namespace, written to a pcap file the test
/// reads while it runs. Its decoded text (`tcpdump -vvv -r`) is printed when the test fails.
pub struct PcapCapture {
    proc: Proc,
    pub file: PathBuf,
}

impl PcapCapture {
    /// Starts the capture and waits until tcpdump listens (no packet after that is missed).
    pub fn start(ns: &str, file: &Path, log: &Path) -> PcapCapture {
        let mut cmd = in_ns(ns, require_tool("tcpdump"));
        cmd.args(["-i", "eth0", "-n", "-U", "--immediate-mode", "-w"]).arg(file);
        cmd.args(["udp port 67 or udp port 68"]);
        let proc = Proc::spawn("tcpdump -w", cmd, log);
        wait_tcpdump_listening(log);
        PcapCapture { proc, file: file.to_owned() }
    }

    /// The datagrams captured so far.
    pub fn datagrams(&self) -> Vec<Datagram> {
        udp_datagrams(&fs::read(&self.file).unwrap_or_default())
    }

    /// The BOOTREQUESTs from `mac` to the server port captured so far, in capture order.
    pub fn requests_from(&self, mac: &Mac) -> Vec<SeenRequest> {
        self.datagrams()
            .iter()
            .filter(|d| d.to_port == 67)
            .filter_map(|d| SeenRequest::parse(&d.payload, mac, d.at))
            .collect()
    }

    /// The server's BOOTREPLYs to `mac` captured so far, with their capture time, in capture order.
    pub fn replies_to(&self, mac: &Mac) -> Vec<(f64, ReplyView)> {
        self.datagrams()
            .iter()
            .filter(|d| d.from_port == 67 && d.to_port == 68)
            .filter_map(|d| ReplyView::parse(&d.payload).ok().map(|reply| (d.at, reply)))
            .filter(|(_, reply)| reply.chaddr == *mac)
            .collect()
    }

    /// The capture decoded by tcpdump (`-n -vvv -r`), for a failure message.
    pub fn decoded(&self) -> String {
        let out = Command::new("tcpdump").args(["-n", "-vvv", "-r"]).arg(&self.file).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_else(|e| format!("<tcpdump -r: {e}>"))
    }
}

impl Drop for PcapCapture {
    fn drop(&mut self) {
        // SIGINT: tcpdump flushes what it has and exits.
        if self.proc.try_status().is_none() {
            signal(self.proc.pid, libc::SIGINT);
            self.proc.wait_exit(Duration::from_secs(3));
        }
        if thread::panicking() {
            eprintln!("capture of the DHCP traffic (the test failed):\n{}", self.decoded());
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// What the client sent, what it was given

/// A client's BOOTREQUEST as captured: xid, option 53 and every option's bytes (RFC 3396: the instances of
/// one code joined).
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// Capture time, seconds since the Unix epoch.
    pub at: f64,
    pub xid: u32,
    /// `ciaddr`: set by a client in BOUND, RENEWING or REBINDING state (RFC 2131 §4.3.2).
    pub ciaddr: Ipv4Addr,
    pub message_type: Option<u8>,
    pub options: BTreeMap<u8, Vec<u8>>,
}

impl SeenRequest {
    /// Reads a BOOTREQUEST from `mac` (op 1, chaddr = `mac`, RFC 2131 §2 magic cookie); `None` otherwise.
    pub fn parse(payload: &[u8], mac: &Mac, at: f64) -> Option<SeenRequest> {
        if payload.len() < 240
            || payload[0] != 1
            || payload.get(28..34)? != mac
            || payload[236..240] != [99, 130, 83, 99]
        {
            return None;
        }
        let xid = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
        let ciaddr = Ipv4Addr::new(payload[12], payload[13], payload[14], payload[15]);
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
        Some(SeenRequest { at, xid, ciaddr, message_type: options.get(&53).and_then(|v| v.first().copied()), options })
    }

    /// Option `code` as text (lossy UTF-8), e.g. 60.
    pub fn text(&self, code: u8) -> Option<String> {
        self.options.get(&code).map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Option 93, the client system architecture (RFC 4578 §2.1), when it names one.
    pub fn arch(&self) -> Option<u16> {
        match self.options.get(&93).map(Vec::as_slice) {
            Some([high, low, ..]) => Some(u16::from_be_bytes([*high, *low])),
            _ => None,
        }
    }

    /// Whether the user class (option 77, bare as iPXE sends it or in RFC 3004 form) names iPXE.
    pub fn says_ipxe(&self) -> bool {
        self.options.get(&77).is_some_and(|class| class.windows(4).any(|w| w == b"iPXE"))
    }

    /// The message as one transcript line.
    pub fn describe(&self) -> String {
        let name = match self.message_type {
            Some(1) => "DISCOVER",
            Some(3) => "REQUEST",
            Some(4) => "DECLINE",
            Some(7) => "RELEASE",
            Some(8) => "INFORM",
            _ => "BOOTREQUEST",
        };
        let mut line = format!("→ {name:<8} xid {:08x}", self.xid);
        if let Some(ip) = self.options.get(&50).and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok()) {
            line += &format!(" 50={}", Ipv4Addr::from(ip));
        }
        if let Some(class) = self.text(60) {
            line += &format!(" 60={class:?}");
        }
        if let Some(arch) = self.arch() {
            line += &format!(" 93={arch}");
        }
        if let Some(class) = self.options.get(&77) {
            line += &format!(" 77={:?}", String::from_utf8_lossy(class));
        }
        if let Some(uuid) = self.options.get(&97) {
            line += &format!(" 97={}", hex(uuid));
        }
        if let Some(features) = self.options.get(&175) {
            line += &format!(" 175={}", hex(features));
        }
        line
    }
}

/// A server reply as one transcript line: type, xid, yiaddr, siaddr, header `file`, 60, 66, 67, 97.
pub fn describe_reply(reply: &ReplyView) -> String {
    let name = match reply.message_type {
        Some(MessageType::Offer) => "OFFER".to_owned(),
        Some(MessageType::Ack) => "ACK".to_owned(),
        Some(MessageType::Nak) => "NAK".to_owned(),
        other => format!("{other:?}"),
    };
    let mut line = format!("← {name:<8} xid {:08x} yiaddr {} siaddr {}", reply.xid, reply.yiaddr, reply.siaddr);
    line += &format!(" file={:?}", reply.file.as_deref().unwrap_or(""));
    for code in [60, 66, 67] {
        match reply.option_text(code) {
            Some(text) => line += &format!(" {code}={text:?}"),
            None => line += &format!(" {code}=-"),
        }
    }
    match reply.option(97) {
        Some(uuid) => line += &format!(" 97={}", hex(uuid)),
        None => line += " 97=-",
    }
    line
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Seconds since the Unix epoch of a `SystemTime` (to compare with capture times).
pub fn epoch_secs(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs_f64()
}

// ---------------------------------------------------------------------------------------------------------
// What a reply must carry

/// One expectation about a field of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect<T> {
    /// Present with exactly this value.
    Is(T),
    /// Not present (an option absent, a header field empty or zero).
    Absent,
    /// Not checked: the firmware that receives it does not read it (the reason is at the use).
    Any,
}

/// The boot settings a DHCPOFFER or DHCPACK must (or must not) carry (PXE 2.1 §2.2, RFC 2132 §9.4–9.5,
/// RFC 4578, DESIGN.md "DHCP and PXE behaviour users expect").
#[derive(Debug, Clone)]
pub struct BootWant {
    /// The TFTP server: the header's `siaddr` (RFC 2131 §2, "next server") and option 66 (as text).
    pub tftp_server: Expect<Ipv4Addr>,
    /// The boot file: the header's `file` and option 67.
    pub boot_file: Expect<String>,
    /// Option 60, the vendor class, exactly.
    pub vendor_class: Expect<&'static str>,
    /// Option 97, the client UUID (RFC 4578 §2.3), byte for byte.
    pub uuid: Expect<Vec<u8>>,
}

/// Every way `reply` differs from `want` (empty if none).
pub fn boot_mismatches(reply: &ReplyView, want: &BootWant) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut check = |what: &str, got: String, expected: String| {
        if got != expected {
            wrong.push(format!("{what}: expected {expected}, got {got}"));
        }
    };
    match &want.tftp_server {
        Expect::Is(ip) => {
            check("siaddr (next server, RFC 2131 §2)", reply.siaddr.to_string(), ip.to_string());
            check(
                "option 66 (TFTP server)",
                format!("{:?}", reply.option_text(66)),
                format!("{:?}", Some(ip.to_string())),
            );
        }
        Expect::Absent => {
            check("siaddr", reply.siaddr.to_string(), Ipv4Addr::UNSPECIFIED.to_string());
            check("option 66", format!("{:?}", reply.option(66)), "None".to_owned());
        }
        Expect::Any => {}
    }
    match &want.boot_file {
        Expect::Is(file) => {
            check("header `file`", format!("{:?}", reply.file.as_deref()), format!("{:?}", Some(file)));
            check("option 67 (boot file)", format!("{:?}", reply.option_text(67)), format!("{:?}", Some(file)));
        }
        Expect::Absent => {
            check("header `file`", format!("{:?}", reply.file), "None".to_owned());
            check("option 67", format!("{:?}", reply.option(67)), "None".to_owned());
        }
        Expect::Any => {}
    }
    match &want.vendor_class {
        Expect::Is(class) => check(
            "option 60 (vendor class), exactly",
            format!("{:?}", reply.option_text(60)),
            format!("{:?}", Some(class)),
        ),
        Expect::Absent => check("option 60", format!("{:?}", reply.option_text(60)), "None".to_owned()),
        Expect::Any => {}
    }
    match &want.uuid {
        Expect::Is(uuid) => check(
            "option 97 (RFC 4578 §2.3, echoed byte for byte)",
            format!("{:?}", reply.option(97)),
            format!("{:?}", Some(uuid.as_slice())),
        ),
        Expect::Absent => check("option 97", format!("{:?}", reply.option(97)), "None".to_owned()),
        Expect::Any => {}
    }
    wrong
}

// ---------------------------------------------------------------------------------------------------------
// The guest on the segment

/// The name of the guest's tap device on the segment's bridge.
pub const GUEST_TAP: &str = "lhtap0";

/// Adds a tap device `GUEST_TAP` to the segment's bridge, inside the bridge namespace (deleted with that
/// namespace), and returns the bridge namespace: qemu runs there to open the tap.
pub fn add_guest_tap(segment: &Segment) -> String {
    let bridge_ns = format!("{}-br", segment.name);
    for args in [
        vec!["tuntap", "add", "dev", GUEST_TAP, "mode", "tap"],
        vec!["link", "set", GUEST_TAP, "master", "br0"],
        vec!["link", "set", GUEST_TAP, "up"],
    ] {
        let out = Command::new("ip").arg("-n").arg(&bridge_ns).args(&args).output().expect("run ip");
        assert!(out.status.success(), "ip -n {bridge_ns} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    bridge_ns
}

/// qemu's e1000 option ROM (package ipxe-qemu), which is iPXE.
pub fn require_bios_ipxe_rom() {
    let rom = ["/usr/lib/ipxe/qemu/pxe-e1000.rom", "/usr/share/qemu/pxe-e1000.rom"];
    assert!(
        rom.iter().any(|p| Path::new(p).exists()),
        "qemu's e1000 PXE ROM is missing ({rom:?}): install the Debian package ipxe-qemu"
    );
}

/// A BIOS machine that boots from its e1000 NIC's iPXE option ROM: `timeout LIMIT qemu-system-x86_64` in
/// the bridge namespace (see `add_guest_tap`), TCG (KVM resets the guest here, FIELD-NOTES), no disk, no
/// display, SMBIOS UUID `uuid` (the ROM sends it in option 97).
pub fn bios_ipxe_rom_guest(bridge_ns: &str, mac: Mac, uuid: &str, limit: Duration) -> Command {
    let qemu = require_tool("qemu-system-x86_64");
    require_bios_ipxe_rom();
    let mut cmd = in_ns(bridge_ns, require_tool("timeout"));
    cmd.arg(limit.as_secs().to_string()).arg(qemu);
    cmd.args(["-accel", "tcg", "-m", "128", "-display", "none", "-monitor", "none", "-serial", "none"]);
    cmd.args(["-boot", "n", "-no-reboot", "-uuid", uuid]);
    cmd.args(["-netdev", &format!("tap,id=net0,ifname={GUEST_TAP},script=no,downscript=no")]);
    cmd.args(["-device", &format!("e1000,netdev=net0,mac={}", format_mac(mac))]);
    cmd
}

/// Checks that `discover` is what qemu's BIOS iPXE ROM sends (FIELD-NOTES "PXE ROMs"): option 60
/// `PXEClient:Arch:00000:UNDI:…` (PXE 2.1 §2.2), option 93 = 0 (x86 BIOS, RFC 4578 §2.1), user class `iPXE`
/// (option 77), and option 97 (RFC 4578 §2.3: type 0 and a 16-byte UUID), which it returns.
pub fn check_bios_ipxe_rom_discover(discover: &SeenRequest, phase: &str) -> Vec<u8> {
    let vendor_class = discover.text(60).unwrap_or_default();
    assert!(
        vendor_class.starts_with("PXEClient:Arch:00000:UNDI:"),
        "{phase}: the ROM's DISCOVER should carry option 60 PXEClient:Arch:00000:UNDI:… (PXE 2.1 §2.2, BIOS), got {vendor_class:?}"
    );
    assert_eq!(discover.arch(), Some(0), "{phase}: option 93 (RFC 4578 §2.1) should be 0, x86 BIOS");
    assert!(
        discover.says_ipxe(),
        "{phase}: qemu's ROM is iPXE and should send user class \"iPXE\" (option 77), got {:?}",
        discover.options.get(&77)
    );
    let uuid = discover.options.get(&97).cloned().unwrap_or_else(|| panic!("{phase}: the ROM sent no option 97"));
    assert!(
        uuid.len() == 17 && uuid[0] == 0,
        "{phase}: option 97 is type 0 and a 16-byte UUID (RFC 4578 §2.3), got {uuid:?}"
    );
    uuid
}
