//! Real firmware boots over the network, through `leasehold serve`, to a marker printed and fetched by an
//! iPXE script (issue 8; DESIGN.md "How it is tested": "qemu with the iPXE BIOS ROM and with OVMF (UEFI PXE
//! and UEFI HTTP boot), each booting to a marker printed by an iPXE script").
//!
//! The bed: a private segment (scripts/netns.sh) with two server namespaces. s1 runs leasehold at
//! 10.77.0.1 with the config of `leasehold_config` (`[pxe]` TFTP server 10.77.0.2, `[pxe.arch]` bios →
//! undionly.kpxe, uefi-x64 → snponly.efi, http-x64 → http://10.77.0.2/snponly.efi, `ipxe_script_url`
//! http://10.77.0.2/boot.ipxe). s2 runs the boot servers at 10.77.0.2: dnsmasq as a TFTP server only
//! (`--port=0`: no DNS; no dhcp-range: no DHCP) and busybox httpd, both serving one directory with
//! snponly.efi and undionly.kpxe from the ipxe package, the iPXE script and one marker file. The machine
//! is qemu under TCG (FIELD-NOTES: KVM resets the guest here) whose NIC is a tap port on the segment's
//! bridge; tcpdump in s1 records every DHCP message on the segment.
//!
//! The cases, one machine each, one at a time (`serial()`: 2 cores, ~30 s of TCG per UEFI boot):
//!
//! (a) OVMF, UEFI PXE: the firmware (EDK2 UefiPxeBcDxe) sends DISCOVER with option 60
//!     `PXEClient:Arch:00007:UNDI:003000`, 93 = 7 (x64 UEFI, RFC 4578 §2.1), 97; it must be offered an
//!     address, siaddr/66 = the TFTP server and file/67 = snponly.efi, and no option 60: EDK2's
//!     PxeBcDhcp4.c classifies an offer with 60 `PXEClient` and no PXE option 43 as a BINL offer and asks a
//!     boot server on udp/4011 ("PXE-E16 No valid offer received" when none answers), while an offer without
//!     60 that names a boot file is a "DhcpOnly offer with bootfile" and boots. It fetches snponly.efi over
//!     TFTP; iPXE then does DHCP again (60 `PXEClient:Arch:00007:UNDI:003010`, 93 = 7, user class `iPXE` in
//!     option 77, 175, the same 97) and must be given the script URL.
//! (b) OVMF, UEFI HTTP boot (PXE switched off with the fw_cfg knobs IPv4PXESupport/IPv6PXESupport = n, so
//!     the HTTPv4 boot option comes first): DISCOVER with 60 `HTTPClient:Arch:00016:UNDI:003000`, 93 = 16;
//!     EDK2's HttpBootDhcp4.c takes only an offer whose option 60 is `HTTPClient` as an HTTP boot offer and
//!     reads the URI from file/67. It GETs http://10.77.0.2/snponly.efi; then iPXE as in (a).
//! (c) qemu's BIOS iPXE ROM (e1000, package ipxe-qemu): it is iPXE already (60
//!     `PXEClient:Arch:00000:UNDI:002001`, 93 = 0, 77 `iPXE`, 175), so its one DHCP stage must be given the
//!     script URL (no chainload loop).
//!
//! (d) the three again with no boot server but Leasehold (`[boot] root`, issue 14; at the end): the
//!     boot file over Leasehold's own TFTP (UEFI PXE) or HTTP (UEFI HTTP boot), then the script
//!     Leasehold renders for the machine (`/boot/{mac}.ipxe`) and the marker over its HTTP, every URL
//!     naming the node that answered; and a boot-path failover: in a 3-node cluster the BIOS ROM
//!     boots from the leader, which is then killed, and boots again from the new leader with the same
//!     address.
//!
//! The script echoes the marker with iPXE's address (read from OVMF's serial console) and fetches a marker
//! file from the HTTP server (the BIOS ROM's console is VGA: the HTTP log is the proof there). For each case
//! the test then checks, and prints the exchange as a transcript:
//!
//! 1. each DHCP stage (firmware, then iPXE) identified itself as above (option 60, 93, 77) — the premise;
//! 2. each stage's OFFER and ACK carried what that firmware needs (above; `BootWant`), option 97 echoed byte
//!    for byte to PXE clients (RFC 4578 §2.3);
//! 3. one address: every OFFER and ACK to the machine's MAC, in every stage, has the same `yiaddr`, and
//!    there was no NAK (RFC 2131 §4.3.1: a returning client is offered its address again);
//! 4. `GET /v1/leases` has exactly one record for the MAC, state "bound", with that address;
//! 5. the boot servers saw that address fetch the boot file (TFTP or HTTP), the script and the marker.
//!
//! Control: with `LEASEHOLD_FIRMWARE_DHCP=dnsmasq` the same bed runs with dnsmasq as the DHCP server
//! (the FIELD-NOTES settings) instead of leasehold, to tell a broken bed from a broken server: checks 1, 3
//! and 5 as above, 4 against dnsmasq's lease file; 2 is leasehold's policy and is checked only for it.

mod netns_support;

use std::fs;
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use leasehold_tests::{format_mac, Mac, MessageType, ReplyView};
use netns_support::capture::*;
use netns_support::*;

/// leasehold's server identifier (namespace s1).
const LEASEHOLD_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The TFTP and HTTP servers (namespace s2).
const BOOT_SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const SCRIPT_URL: &str = "http://10.77.0.2/boot.ipxe";
const HTTP_BOOT_URL: &str = "http://10.77.0.2/snponly.efi";
const UEFI_FILE: &str = "snponly.efi";
const BIOS_FILE: &str = "undionly.kpxe";
const POOL_START: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
const POOL_END: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 200);

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
const IPXE_DIR: &str = "/usr/lib/ipxe";

/// From qemu's start to the marker: a UEFI boot takes ~30 s under TCG here, the BIOS ROM ~20 s.
const UEFI_LIMIT: Duration = Duration::from_secs(150);
const BIOS_LIMIT: Duration = Duration::from_secs(90);

static SERIAL: Mutex<()> = Mutex::new(());

/// One qemu at a time (2 cores; TCG is CPU-bound); a failed test does not block the others.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------------------------------------
// The cases

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Firmware {
    /// OVMF with EDK2's PXE and HTTP boot drivers; the PXEv4 boot option first.
    UefiPxe,
    /// OVMF with PXE switched off: the HTTPv4 boot option first.
    UefiHttp,
    /// SeaBIOS and the e1000's iPXE option ROM.
    BiosIpxeRom,
}

/// How the firmware fetches the iPXE binary.
#[derive(Debug, Clone, Copy)]
enum FirstFetch {
    /// TFTP from siaddr (the dnsmasq TFTP log names the file and the client).
    Tftp(&'static str),
    /// HTTP GET of this path (busybox httpd's log).
    Http(&'static str),
    /// The ROM is iPXE: no second binary.
    None,
}

/// One DHCP stage of a boot: what the client says it is, and what it must be given.
struct Stage {
    name: &'static str,
    /// Option 60 of its requests begins with this.
    vendor_class: &'static str,
    /// Option 93.
    arch: u16,
    /// User class `iPXE` (option 77): that is how the firmware's and iPXE's stages are told apart.
    ipxe: bool,
    tftp_server: Expect<Ipv4Addr>,
    boot_file: Expect<String>,
    vendor_class_reply: Expect<&'static str>,
    /// `true`: option 97 echoed (the client's own bytes); `false`: not checked.
    echo_uuid: bool,
}

impl Stage {
    fn want(&self, uuid: Option<&Vec<u8>>) -> BootWant {
        BootWant {
            tftp_server: self.tftp_server.clone(),
            boot_file: self.boot_file.clone(),
            vendor_class: self.vendor_class_reply.clone(),
            uuid: match (self.echo_uuid, uuid) {
                (true, Some(uuid)) => Expect::Is(uuid.clone()),
                (true, None) => Expect::Absent,
                (false, _) => Expect::Any,
            },
        }
    }
}

/// iPXE after the firmware (snponly.efi) or as the BIOS ROM: a PXE client with user class iPXE, given the
/// script URL (DESIGN.md: no chainload loop), the TFTP server in siaddr/66, no option 60, 97 echoed.
fn ipxe_stage(name: &'static str, vendor_class: &'static str, arch: u16) -> Stage {
    Stage {
        name,
        vendor_class,
        arch,
        ipxe: true,
        tftp_server: Expect::Is(BOOT_SERVER_IP),
        boot_file: Expect::Is(SCRIPT_URL.to_owned()),
        vendor_class_reply: Expect::Absent,
        echo_uuid: true,
    }
}

struct Case {
    name: &'static str,
    firmware: Firmware,
    mac: Mac,
    /// SMBIOS UUID (`-uuid`), sent in option 97.
    uuid: &'static str,
    stages: Vec<Stage>,
    first_fetch: FirstFetch,
    limit: Duration,
}

fn uefi_pxe_case() -> Case {
    Case {
        name: "uefi-pxe",
        firmware: Firmware::UefiPxe,
        mac: [0x52, 0x54, 0x00, 0x4c, 0x0f, 0x07],
        uuid: "4c454153-4548-4f4c-4400-00000000f007",
        stages: vec![
            Stage {
                name: "OVMF UEFI PXE (EDK2 UefiPxeBcDxe)",
                vendor_class: "PXEClient:Arch:00007:UNDI:",
                arch: 7,
                ipxe: false,
                // PxeBcDhcp4.c: no 60 + a boot file = "DhcpOnly offer with bootfile", fetched from siaddr.
                tftp_server: Expect::Is(BOOT_SERVER_IP),
                boot_file: Expect::Is(UEFI_FILE.to_owned()),
                vendor_class_reply: Expect::Absent,
                echo_uuid: true,
            },
            ipxe_stage("iPXE (snponly.efi)", "PXEClient:Arch:00007:UNDI:", 7),
        ],
        first_fetch: FirstFetch::Tftp(UEFI_FILE),
        limit: UEFI_LIMIT,
    }
}

fn uefi_http_case() -> Case {
    Case {
        name: "uefi-http",
        firmware: Firmware::UefiHttp,
        mac: [0x52, 0x54, 0x00, 0x4c, 0x0f, 0x16],
        uuid: "4c454153-4548-4f4c-4400-00000000f016",
        stages: vec![
            Stage {
                name: "OVMF UEFI HTTP boot (EDK2 HttpBootDxe)",
                vendor_class: "HTTPClient:Arch:00016:UNDI:",
                arch: 16,
                ipxe: false,
                // HttpBootDhcp4.c reads neither siaddr nor 66 (the URI names the server), and nothing says
                // a server echoes 97 to an HTTP client: not checked.
                tftp_server: Expect::Any,
                boot_file: Expect::Is(HTTP_BOOT_URL.to_owned()),
                vendor_class_reply: Expect::Is("HTTPClient"),
                echo_uuid: false,
            },
            ipxe_stage("iPXE (snponly.efi)", "PXEClient:Arch:00007:UNDI:", 7),
        ],
        first_fetch: FirstFetch::Http("/snponly.efi"),
        limit: UEFI_LIMIT,
    }
}

fn bios_case() -> Case {
    Case {
        name: "bios-ipxe-rom",
        firmware: Firmware::BiosIpxeRom,
        mac: [0x52, 0x54, 0x00, 0x4c, 0x0f, 0x00],
        uuid: "4c454153-4548-4f4c-4400-00000000f000",
        stages: vec![ipxe_stage("qemu's BIOS iPXE ROM (e1000)", "PXEClient:Arch:00000:UNDI:", 0)],
        first_fetch: FirstFetch::None,
        limit: BIOS_LIMIT,
    }
}

#[test]
fn uefi_pxe_boots_snponly_over_tftp_then_the_ipxe_script() {
    boot_to_marker(&uefi_pxe_case());
}

#[test]
fn uefi_http_boot_fetches_snponly_by_url_then_the_ipxe_script() {
    boot_to_marker(&uefi_http_case());
}

#[test]
fn bios_ipxe_rom_runs_the_ipxe_script() {
    boot_to_marker(&bios_case());
}

// ---------------------------------------------------------------------------------------------------------
// The bed

/// The DHCP server on s1.
enum Dhcp {
    Leasehold(Server),
    /// The control (LEASEHOLD_FIRMWARE_DHCP=dnsmasq).
    Dnsmasq {
        _proc: Proc,
        leases: PathBuf,
    },
}

impl Dhcp {
    fn start(ns: &str, dir: &Path) -> Dhcp {
        match std::env::var("LEASEHOLD_FIRMWARE_DHCP").as_deref() {
            Err(_) | Ok("" | "leasehold") => {
                let config = dir.join("leasehold.toml");
                fs::write(&config, leasehold_config()).expect("write the leasehold config");
                let data = dir.join("leasehold-data");
                fs::create_dir_all(&data).expect("create the data dir");
                let config = config.to_str().expect("a UTF-8 temp path");
                Dhcp::Leasehold(Server::start(ns, &data, &dir.join("leasehold.log"), &["--config", config]))
            }
            Ok("dnsmasq") => {
                let conf = dir.join("dnsmasq-dhcp.conf");
                let leases = dir.join("dnsmasq.leases");
                fs::write(&conf, dnsmasq_dhcp_config(&leases)).expect("write the dnsmasq config");
                let log = dir.join("dnsmasq-dhcp.log");
                let mut cmd = in_ns(ns, require_tool("dnsmasq"));
                cmd.args(["--keep-in-foreground", "--log-facility=-"]).arg(format!("--conf-file={}", conf.display()));
                cmd.arg(format!("--pid-file={}", dir.join("dnsmasq-dhcp.pid").display()));
                let proc = Proc::spawn("dnsmasq (control DHCP server)", cmd, &log);
                wait_log(&log, "DHCP, IP range", Duration::from_secs(10), "dnsmasq's DHCP service");
                Dhcp::Dnsmasq { _proc: proc, leases }
            }
            Ok(other) => panic!("LEASEHOLD_FIRMWARE_DHCP must be leasehold or dnsmasq, not {other:?}"),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Dhcp::Leasehold(_) => "leasehold",
            Dhcp::Dnsmasq { .. } => "dnsmasq (control)",
        }
    }

    /// The server's lease records for `mac`: (address, state).
    fn records_of(&self, mac: Mac) -> Vec<(Ipv4Addr, String)> {
        let mac = format_mac(mac);
        match self {
            Dhcp::Leasehold(server) => server
                .leases()
                .into_iter()
                .filter(|lease| lease.mac.eq_ignore_ascii_case(&mac))
                .map(|lease| (lease.ip, lease.state))
                .collect(),
            // dnsmasq's lease file: "expiry mac ip hostname client-id", active leases only.
            Dhcp::Dnsmasq { leases, .. } => fs::read_to_string(leases)
                .unwrap_or_default()
                .lines()
                .filter_map(|line| {
                    let words: Vec<&str> = line.split_whitespace().collect();
                    let ip = words.get(2)?.parse().ok()?;
                    words.get(1)?.eq_ignore_ascii_case(&mac).then(|| (ip, "bound".to_owned()))
                })
                .collect(),
        }
    }
}

/// The leasehold config of the bed (the issue's config).
fn leasehold_config() -> String {
    format!(
        r#"# Written by tests/firmware.rs.
[server]
server_ip = "{LEASEHOLD_IP}"

[pxe]
tftp_server = "{BOOT_SERVER_IP}"
boot_file = "{BIOS_FILE}"
ipxe_script_url = "{SCRIPT_URL}"

[pxe.arch]
bios = "{BIOS_FILE}"
uefi-x64 = "{UEFI_FILE}"
http-x64 = "{HTTP_BOOT_URL}"

[[pool]]
name = "boot"
subnet = "10.77.0.0/24"
range_start = "{POOL_START}"
range_end = "{POOL_END}"
lease_time_secs = 600
"#
    )
}

/// dnsmasq as the control DHCP server (FIELD-NOTES "UEFI firmware"): the same boot policy by tags.
fn dnsmasq_dhcp_config(leases: &Path) -> String {
    format!(
        r#"# Written by tests/firmware.rs: the control DHCP server.
port=0
interface=eth0
bind-interfaces
dhcp-range={POOL_START},{POOL_END},255.255.255.0,10m
dhcp-leasefile={leases}
log-dhcp
dhcp-match=set:efi64,option:client-arch,7
dhcp-match=set:http,option:client-arch,16
dhcp-userclass=set:ipxe,iPXE
dhcp-boot=tag:ipxe,{SCRIPT_URL}
dhcp-boot=tag:!ipxe,tag:efi64,{UEFI_FILE},,{BOOT_SERVER_IP}
dhcp-boot=tag:!ipxe,tag:http,{HTTP_BOOT_URL}
dhcp-boot=tag:!ipxe,tag:!efi64,tag:!http,{BIOS_FILE},,{BOOT_SERVER_IP}
dhcp-option-force=tag:http,60,HTTPClient
"#,
        leases = leases.display()
    )
}

/// The TFTP and HTTP servers on s2, serving `root`.
struct BootServers {
    _tftp: Proc,
    _http: Proc,
    tftp_log: PathBuf,
    http_log: PathBuf,
}

impl BootServers {
    fn start(ns: &str, dir: &Path, root: &Path) -> BootServers {
        let tftp_log = dir.join("tftp.log");
        let mut cmd = in_ns(ns, require_tool("dnsmasq"));
        cmd.args(["--keep-in-foreground", "--port=0", "--enable-tftp", "--bind-interfaces", "--log-facility=-"]);
        cmd.arg(format!("--tftp-root={}", root.display()));
        cmd.arg(format!("--listen-address={BOOT_SERVER_IP}"));
        cmd.args(["--conf-file=/dev/null"]).arg(format!("--pid-file={}", dir.join("tftp.pid").display()));
        let tftp = Proc::spawn("dnsmasq (TFTP only)", cmd, &tftp_log);
        wait_log(&tftp_log, "TFTP root is", Duration::from_secs(10), "dnsmasq's TFTP service");

        let http_log = dir.join("httpd.log");
        let mut cmd = in_ns(ns, require_tool("busybox"));
        cmd.args(["httpd", "-f", "-vv", "-p", &format!("{BOOT_SERVER_IP}:80"), "-h"]).arg(root);
        let mut http = Proc::spawn("busybox httpd", cmd, &http_log);
        // No readiness signal: poll until the script is served (which also proves the root is readable).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = in_netns(ns, || http_status(BOOT_SERVER_IP, "/boot.ipxe"));
            if matches!(got, Ok(200)) {
                break;
            }
            if let Some(status) = http.try_status() {
                panic!("busybox httpd exited ({status})\n{}", tail_of(&http_log));
            }
            assert!(Instant::now() < deadline, "busybox httpd did not serve /boot.ipxe within 10 s: {got:?}");
            thread::sleep(Duration::from_millis(50));
        }
        BootServers { _tftp: tftp, _http: http, tftp_log, http_log }
    }

    /// The files the TFTP server sent, and to whom (dnsmasq: "sent /root/FILE to 10.77.0.N").
    fn tftp_sent(&self) -> Vec<(String, Ipv4Addr)> {
        fs::read_to_string(&self.tftp_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (_, sent) = line.split_once(": sent ")?;
                let (path, to) = sent.rsplit_once(" to ")?;
                let file = Path::new(path).file_name()?.to_string_lossy().into_owned();
                Some((file, to.trim().parse().ok()?))
            })
            .collect()
    }

    /// The HTTP requests so far: (client, path, status). busybox httpd -vv logs "IP:PORT: url:PATH" and
    /// then "IP:PORT: response:CODE" per request.
    fn http_requests(&self) -> Vec<(Ipv4Addr, String, Option<u16>)> {
        let text = fs::read_to_string(&self.http_log).unwrap_or_default();
        let mut requests: Vec<(String, Ipv4Addr, String, Option<u16>)> = Vec::new();
        for line in text.lines() {
            let line = line.trim_matches(|c: char| c == '\0' || c.is_whitespace());
            let Some((peer, what)) = line.split_once(": ") else { continue };
            let Some((ip, _port)) = peer.rsplit_once(':') else { continue };
            let Ok(ip) = ip.parse::<Ipv4Addr>() else { continue };
            if let Some(path) = what.strip_prefix("url:") {
                requests.push((peer.to_owned(), ip, path.to_owned(), None));
            } else if let Some(code) = what.strip_prefix("response:") {
                if let Some(request) = requests.iter_mut().rev().find(|r| r.0 == peer && r.3.is_none()) {
                    request.3 = code.trim().parse().ok();
                }
            }
        }
        requests.into_iter().map(|(_, ip, path, status)| (ip, path, status)).collect()
    }
}

/// `GET path` over HTTP/1.0 to `ip`:80 from the calling thread's namespace: the status code.
fn http_status(ip: Ipv4Addr, path: &str) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect_timeout(&(ip, 80).into(), Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n")?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head)?;
    let text = String::from_utf8_lossy(&head[..n]);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(text.to_string()))
}

/// Polls `log` (a server's log file; there is no other readiness signal) until it contains `needle`.
fn wait_log(log: &Path, needle: &str, limit: Duration, what: &str) {
    poll_until(
        limit,
        || fs::read_to_string(log).unwrap_or_default().contains(needle),
        |found| *found,
        |_| format!("{what} did not log {needle:?} within {limit:?}\n{}", tail_of(log)),
    );
}

/// The boot directory: the iPXE binaries, the script and the marker file.
struct BootRoot {
    root: PathBuf,
    /// Printed by the script (with `mac … ip …`).
    marker: String,
    /// The path the script fetches.
    marker_path: String,
}

impl BootRoot {
    fn create(dir: &Path, case: &Case) -> BootRoot {
        let root = dir.join("root");
        fs::create_dir_all(&root).expect("create the boot root");
        for file in [UEFI_FILE, BIOS_FILE] {
            let from = Path::new(IPXE_DIR).join(file);
            assert!(from.is_file(), "{} is missing: install the Debian package ipxe", from.display());
            fs::copy(&from, root.join(file)).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
        }
        let token = format!("{}-{}", case.name, std::process::id());
        let marker = format!("LEASEHOLD-FIRMWARE-MARKER-{token}");
        // iPXE's ${net0/mac:hexhyp} is the MAC in lower case with hyphens.
        let marker_file = format!("booted-{token}-{}", format_mac(case.mac).replace(':', "-"));
        fs::write(root.join(&marker_file), format!("{marker}\n")).expect("write the marker file");
        let script = format!(
            "#!ipxe\n\
             # Written by tests/firmware.rs: proves that the script ran, on the console and on the HTTP server.\n\
             echo {marker} mac ${{net0/mac}} ip ${{net0/ip}}\n\
             imgfetch http://{BOOT_SERVER_IP}/booted-{token}-${{net0/mac:hexhyp}} || echo {marker}-FETCH-FAILED\n\
             # Debian's iPXE has no poweroff: idle (no more DHCP) until the test stops qemu.\n\
             sleep 600\n"
        );
        fs::write(root.join("boot.ipxe"), script).expect("write the iPXE script");
        BootRoot { root, marker, marker_path: format!("/{marker_file}") }
    }
}

/// The machine: `timeout LIMIT qemu-system-x86_64 …` in the bridge namespace.
fn guest_command(case: &Case, bridge_ns: &str, dir: &Path, serial_log: &Path) -> std::process::Command {
    // qemu's own `timeout` bound is a little longer than the test's wait, so the test reports first.
    let limit = case.limit + Duration::from_secs(30);
    if case.firmware == Firmware::BiosIpxeRom {
        return bios_ipxe_rom_guest(bridge_ns, case.mac, case.uuid, limit);
    }
    for file in [OVMF_CODE, OVMF_VARS] {
        assert!(Path::new(file).is_file(), "{file} is missing: install the Debian package ovmf");
    }
    // A fresh copy of the variable store per run: boot options and their order start from scratch.
    let vars = dir.join("OVMF_VARS_4M.fd");
    fs::copy(OVMF_VARS, &vars).expect("copy the OVMF variable store");
    let mut cmd = in_ns(bridge_ns, require_tool("timeout"));
    cmd.arg(limit.as_secs().to_string()).arg(require_tool("qemu-system-x86_64"));
    cmd.args(["-machine", "q35", "-accel", "tcg", "-m", "512"]);
    cmd.args(["-drive", &format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}")]);
    cmd.args(["-drive", &format!("if=pflash,format=raw,unit=1,file={}", vars.display())]);
    cmd.args(["-netdev", &format!("tap,id=n0,ifname={GUEST_TAP},script=no,downscript=no")]);
    // romfile= drops the NIC's iPXE ROM, so EDK2's own network stack boots; bootindex puts the NIC first.
    cmd.args(["-device", &format!("virtio-net-pci,netdev=n0,mac={},romfile=,bootindex=1", format_mac(case.mac))]);
    if case.firmware == Firmware::UefiHttp {
        cmd.args(["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n"]);
        cmd.args(["-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n"]);
    }
    cmd.args(["-uuid", case.uuid, "-display", "none", "-monitor", "none", "-no-reboot"]);
    cmd.arg("-serial").arg(format!("file:{}", serial_log.display()));
    cmd
}

/// Prints the tails of the bed's logs if the test fails.
struct LogsOnFailure(Vec<PathBuf>);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if thread::panicking() {
            for log in &self.0 {
                eprintln!("{}", tail_of(log));
            }
        }
    }
}

/// EDK2's serial lines that end a network boot attempt; the case fails at once with them.
const FIRMWARE_GAVE_UP: [&str; 3] = ["PXE-E", "BdsDxe: failed to load", "Error: "];

// ---------------------------------------------------------------------------------------------------------
// One boot

fn boot_to_marker(case: &Case) {
    let _serial = serial();
    require_root();
    for tool in ["qemu-system-x86_64", "timeout", "dnsmasq", "busybox", "tcpdump"] {
        require_tool(tool);
    }
    let dir = scratch_dir(&format!("firmware-{}", case.name));
    let segment = Segment::up(2, 0, 24);
    let bridge_ns = add_guest_tap(&segment);
    let boot_root = BootRoot::create(dir.path(), case);
    let servers = BootServers::start(&segment.server(2), dir.path(), &boot_root.root);
    let capture =
        PcapCapture::start(&segment.server(1), &dir.path().join("dhcp.pcap"), &dir.path().join("tcpdump.log"));
    let dhcp = Dhcp::start(&segment.server(1), dir.path());
    let serial_log = dir.path().join("serial.log");
    let qemu_log = dir.path().join("qemu.log");
    let _logs =
        LogsOnFailure(vec![servers.tftp_log.clone(), servers.http_log.clone(), qemu_log.clone(), serial_log.clone()]);

    println!("{}: {} boots from the network, DHCP from {}", case.name, format_mac(case.mac), dhcp.name());
    let cmd = guest_command(case, &bridge_ns, dir.path(), &serial_log);
    let started_at = SystemTime::now();
    let started = Instant::now();
    let mut guest = Proc::spawn("qemu", cmd, &qemu_log);

    // The marker: the script's fetch answered 200 (busybox httpd's log; polled, there is no other event).
    let deadline = started + case.limit;
    let marker_from = loop {
        let marker_fetch = servers
            .http_requests()
            .into_iter()
            .find(|(_, path, status)| *path == boot_root.marker_path && status.is_some());
        match marker_fetch {
            Some((client, _, Some(200))) => break client,
            Some((client, _, status)) => {
                guest.stop(Duration::from_secs(5));
                panic!("{}: the script ran on {client}, but its marker fetch was answered {status:?}", case.name);
            }
            None => {}
        }
        let console = fs::read_to_string(&serial_log).unwrap_or_default();
        let gave_up = |line: &&str| FIRMWARE_GAVE_UP.iter().any(|s| line.contains(s)) || line.contains("-FETCH-FAILED");
        if let Some(line) = console.lines().find(gave_up) {
            guest.stop(Duration::from_secs(5));
            print_transcript(case, &capture, started_at);
            panic!(
                "{}: the boot failed {:.1} s after qemu started; the console says {:?}\n(the DHCP transcript is above, the capture and the logs below)",
                case.name,
                started.elapsed().as_secs_f64(),
                line.trim()
            );
        }
        if let Some(status) = guest.try_status() {
            print_transcript(case, &capture, started_at);
            panic!("{}: qemu exited ({status}) before the marker", case.name);
        }
        if Instant::now() >= deadline {
            guest.stop(Duration::from_secs(5));
            print_transcript(case, &capture, started_at);
            panic!(
                "{}: no marker fetch ({}) within {:?} of qemu's start",
                case.name, boot_root.marker_path, case.limit
            );
        }
        thread::sleep(Duration::from_millis(100));
    };
    let took = started.elapsed();
    guest.stop(Duration::from_secs(5));
    println!("{}: marker fetched by {marker_from} {:.1} s after qemu started", case.name, took.as_secs_f64());

    let address = check_exchange(case, &capture, &dhcp, started_at);
    let mut failures = Vec::new();
    if marker_from != address {
        failures.push(format!("the marker was fetched from {marker_from}, not from the leased {address}"));
    }

    // 4. The lease table: one record for the MAC, bound, that address.
    let records = dhcp.records_of(case.mac);
    if records.len() != 1 || records[0] != (address, "bound".to_owned()) {
        failures.push(format!(
            "{}'s lease table should have exactly one record for {}, bound to {address}; it has {records:?}",
            dhcp.name(),
            format_mac(case.mac)
        ));
    }
    if !(u32::from(POOL_START)..=u32::from(POOL_END)).contains(&u32::from(address)) {
        failures.push(format!("{address} is outside the pool {POOL_START}–{POOL_END}"));
    }

    // 5. The boot servers: the iPXE binary, the script and the marker, all fetched from that address.
    let http = servers.http_requests();
    let fetched = |path: &str| http.iter().any(|(ip, p, status)| *ip == address && p == path && *status == Some(200));
    match case.first_fetch {
        FirstFetch::Tftp(file) => {
            let sent = servers.tftp_sent();
            if !sent.iter().any(|(f, ip)| f == file && *ip == address) {
                failures.push(format!("the TFTP server did not send {file} to {address}; it sent {sent:?}"));
            }
        }
        FirstFetch::Http(path) => {
            if !fetched(path) {
                failures.push(format!("no GET {path} → 200 from {address}; the HTTP server saw {http:?}"));
            }
        }
        FirstFetch::None => {}
    }
    if !fetched("/boot.ipxe") {
        failures.push(format!("no GET /boot.ipxe → 200 from {address}; the HTTP server saw {http:?}"));
    }

    // The console (OVMF's serial port): the boot option the firmware took, and the script's own line.
    if case.firmware != Firmware::BiosIpxeRom {
        let console = fs::read_to_string(&serial_log).unwrap_or_default();
        let (attempt, option) = match case.firmware {
            Firmware::UefiHttp => (">>Start HTTP Boot over IPv4", "\"UEFI HTTPv4 (MAC:"),
            _ => (">>Start PXE over IPv4", "\"UEFI PXEv4 (MAC:"),
        };
        if !console.contains(attempt)
            || !console.lines().any(|l| l.contains("BdsDxe: starting Boot") && l.contains(option))
        {
            failures.push(format!("OVMF's console should show {attempt:?} and \"BdsDxe: starting Boot…\" {option}…"));
        }
        let line = format!("{} mac {} ip {address}", boot_root.marker, format_mac(case.mac));
        if !console.contains(&line) {
            failures.push(format!("OVMF's console should show the script's line {line:?}"));
        }
    }
    assert!(failures.is_empty(), "{}: {} failures:\n  {}", case.name, failures.len(), failures.join("\n  "));
    println!(
        "{}: booted to the marker through {} with one address, {address}, in {:.1} s",
        case.name,
        dhcp.name(),
        took.as_secs_f64()
    );
}

/// The machine's DHCP messages in capture order, each with its stage and the time since qemu started.
fn print_transcript(case: &Case, capture: &PcapCapture, started_at: SystemTime) {
    let start = epoch_secs(started_at);
    let requests = capture.requests_from(&case.mac);
    let replies = capture.replies_to(&case.mac);
    let mut lines: Vec<(f64, String)> = Vec::new();
    for request in &requests {
        let stage = if request.says_ipxe() { "iPXE    " } else { "firmware" };
        lines.push((request.at, format!("{stage} {}", request.describe())));
    }
    for (at, reply) in &replies {
        let ipxe = requests.iter().any(|r| r.xid == reply.xid && r.says_ipxe());
        let stage = if ipxe { "iPXE    " } else { "firmware" };
        lines.push((*at, format!("{stage} {}", describe_reply(reply))));
    }
    lines.sort_by(|a, b| a.0.total_cmp(&b.0));
    println!("{}: the DHCP exchange of {} (seconds since qemu started):", case.name, format_mac(case.mac));
    for (at, line) in lines {
        println!("  {:>6.2}  {line}", at - start);
    }
}

/// Checks 1–3 on the capture; returns the one address.
fn check_exchange(case: &Case, capture: &PcapCapture, dhcp: &Dhcp, started_at: SystemTime) -> Ipv4Addr {
    print_transcript(case, capture, started_at);
    let start = epoch_secs(started_at);
    let requests = capture.requests_from(&case.mac);
    let replies = capture.replies_to(&case.mac);
    let mut failures = Vec::new();

    // Replies belong to the stage of the request with their xid (RFC 2131 §4.1: the server copies xid).
    let stage_of_reply = |reply: &ReplyView| requests.iter().find(|r| r.xid == reply.xid).map(SeenRequest::says_ipxe);
    for (_, reply) in &replies {
        if stage_of_reply(reply).is_none() {
            failures.push(format!("a reply to no captured request: {}", describe_reply(reply)));
        }
    }
    let mut previous_ack: Option<f64> = None;
    let mut addresses: Vec<Ipv4Addr> = Vec::new();
    for stage in &case.stages {
        let mine: Vec<&SeenRequest> = requests.iter().filter(|r| r.says_ipxe() == stage.ipxe).collect();
        let Some(first) = mine.iter().find(|r| r.message_type == Some(1)).or(mine.first()) else {
            failures.push(format!("{}: no DHCP request from it in the capture", stage.name));
            continue;
        };
        // 1. The stage is what the case assumes.
        let class = first.text(60).unwrap_or_default();
        if !class.starts_with(stage.vendor_class) || first.arch() != Some(stage.arch) {
            failures.push(format!(
                "{}: expected option 60 {}… and 93 = {}, the firmware sent 60 = {class:?}, 93 = {:?}",
                stage.name,
                stage.vendor_class,
                stage.arch,
                first.arch()
            ));
        }
        if case.firmware == Firmware::BiosIpxeRom {
            check_bios_ipxe_rom_discover(first, stage.name);
        }
        // The stages follow each other: this one starts after the previous one was ACKed.
        if let Some(acked) = previous_ack {
            if first.at < acked {
                failures.push(format!("{}: its first request came before the previous stage's ACK", stage.name));
            }
        }
        let want = stage.want(first.options.get(&97));
        let stage_replies: Vec<&(f64, ReplyView)> =
            replies.iter().filter(|(_, r)| stage_of_reply(r) == Some(stage.ipxe)).collect();
        for kind in [MessageType::Offer, MessageType::Ack] {
            let of_kind: Vec<&(f64, ReplyView)> = stage_replies.iter().copied().filter(|(_, r)| r.is(kind)).collect();
            if of_kind.is_empty() {
                failures.push(format!("{}: no {kind:?} to it in the capture", stage.name));
            }
            for (_, reply) in &of_kind {
                addresses.push(reply.yiaddr);
                // 2. What this firmware needs (leasehold's policy; dnsmasq is only the control).
                if matches!(dhcp, Dhcp::Leasehold(_)) {
                    for wrong in boot_mismatches(reply, &want) {
                        failures.push(format!("{} — {kind:?}: {wrong}", stage.name));
                    }
                }
            }
        }
        for (_, reply) in stage_replies.iter().filter(|(_, r)| r.is(MessageType::Nak)) {
            failures.push(format!("{}: NAKed: {}", stage.name, describe_reply(reply)));
        }
        let acked = stage_replies.iter().find(|(_, r)| r.is(MessageType::Ack)).map(|(at, _)| *at);
        if let Some(at) = acked {
            println!("{}: {} ACKed {:.1} s after qemu started", case.name, stage.name, at - start);
        }
        previous_ack = acked.or(previous_ack);
    }
    let unexpected: Vec<&SeenRequest> =
        requests.iter().filter(|r| !case.stages.iter().any(|s| s.ipxe == r.says_ipxe())).collect();
    if let Some(request) = unexpected.first() {
        failures.push(format!("a request from a stage this case does not have: {}", request.describe()));
    }

    // 3. One address for the machine, in every stage.
    addresses.sort();
    addresses.dedup();
    let address = addresses.first().copied();
    if addresses.len() > 1 {
        failures.push(format!("the machine was given more than one address across its DHCP stages: {addresses:?}"));
    }
    assert!(failures.is_empty(), "{}: {} failures:\n  {}", case.name, failures.len(), failures.join("\n  "));
    address.unwrap_or_else(|| panic!("{}: no address was offered", case.name))
}

// ---------------------------------------------------------------------------------------------------------
// Boot files from Leasehold itself (issue 14)

/// With no boot server but Leasehold (`[boot] root` on the one node, no `[pxe] tftp_server`, every URL
/// `http://{server}/…`): OVMF UEFI PXE fetches snponly.efi over Leasehold's TFTP, OVMF UEFI HTTP boot
/// over its HTTP, each from the node that answered; iPXE (theirs, and qemu's BIOS ROM) is sent to
/// `http://{server}/boot/{mac}.ipxe` and runs the script Leasehold renders for that machine (its
/// lease's address and MAC filled in), which fetches a marker over Leasehold's HTTP. Checked: on
/// OVMF's console the script's line with the leased address and the node; the node's `/metrics`
/// (the boot file's transfer, the rendered script, the marker); one bound record for the machine.
#[test]
fn uefi_pxe_boots_from_the_boot_files_leasehold_serves_itself() {
    boot_from_leasehold_alone(&uefi_pxe_case());
}

#[test]
fn uefi_http_boot_boots_from_the_boot_files_leasehold_serves_itself() {
    boot_from_leasehold_alone(&uefi_http_case());
}

#[test]
fn bios_ipxe_rom_runs_the_script_leasehold_renders_for_it() {
    boot_from_leasehold_alone(&bios_case());
}

fn boot_from_leasehold_alone(case: &Case) {
    let _serial = serial();
    require_root();
    for tool in ["qemu-system-x86_64", "timeout"] {
        require_tool(tool);
    }
    let dir = scratch_dir(&format!("firmware-own-{}", case.name));
    let segment = Segment::up(1, 0, 24);
    let bridge_ns = add_guest_tap(&segment);
    let root = dir.path().join("root");
    fs::create_dir_all(&root).expect("create the boot root");
    let efi = Path::new(IPXE_DIR).join(UEFI_FILE);
    assert!(efi.is_file(), "{} is missing: install the Debian package ipxe", efi.display());
    fs::copy(&efi, root.join(UEFI_FILE)).expect("copy snponly.efi");
    let efi_bytes = fs::metadata(&efi).expect("snponly.efi's size").len();
    let marker = format!("LEASEHOLD-OWN-BOOT-FILES-{}-{}", case.name, std::process::id());
    let marker_file = format!("booted-{}", format_mac(case.mac).replace(':', "-"));
    fs::write(root.join(&marker_file), format!("{marker}\n")).expect("write the marker file");
    // The script is rendered per machine (`GET /boot/{mac}.ipxe`): `{{ip}}` and `{{mac}}` are what
    // Leasehold knows of the machine, `${...}` what iPXE knows; the console line shows both.
    let script = format!(
        "#!ipxe\n\
         echo {marker} mac ${{net0/mac}} ip ${{net0/ip}} from ${{next-server}} leased {{{{ip}}}} to {{{{mac}}}}\n\
         imgfetch http://{{{{server}}}}/booted-${{net0/mac:hexhyp}} || echo {marker}-FETCH-FAILED\n\
         echo {marker}-FETCHED\n\
         sleep 600\n"
    );
    let config = format!(
        r#"# Written by tests/firmware.rs.
[server]
server_ip = "{LEASEHOLD_IP}"

[boot]
root = "{root}"
default_script = "marker"

[[boot.script]]
name = "marker"
template = """
{script}"""

[pxe]
boot_file = "{BIOS_FILE}"
ipxe_script_url = "http://{{server}}/boot/{{mac}}.ipxe"

[pxe.arch]
uefi-x64 = "{UEFI_FILE}"
http-x64 = "http://{{server}}/{UEFI_FILE}"

[[pool]]
name = "boot"
subnet = "10.77.0.0/24"
range_start = "{POOL_START}"
range_end = "{POOL_END}"
lease_time_secs = 600
"#,
        root = root.display(),
    );
    let config_file = dir.path().join("leasehold.toml");
    fs::write(&config_file, config).expect("write the config");
    let data = dir.path().join("data");
    fs::create_dir_all(&data).expect("create the data dir");
    let config_arg = config_file.display().to_string();
    let server =
        Server::start(&segment.server(1), &data, &dir.path().join("leasehold.log"), &["--config", &config_arg]);
    let serial_log = dir.path().join("serial.log");
    let qemu_log = dir.path().join("qemu.log");
    let _logs = LogsOnFailure(vec![qemu_log.clone(), serial_log.clone(), server.proc.log.clone()]);
    let counter = |name: &str, labels: &str| metric(&server.metrics(), name, labels).unwrap_or(0.0);
    let served = |c: &dyn Fn(&str, &str) -> f64| c("leasehold_http_boot_requests_total", "outcome=\"served\"");

    let started = Instant::now();
    let mut guest = Proc::spawn("qemu", guest_command(case, &bridge_ns, dir.path(), &serial_log), &qemu_log);
    let fetched = format!("{marker}-FETCHED");
    // The end: OVMF's console shows the script's last line; the BIOS ROM's console is VGA, so there the
    // marker's fetch (over HTTP, after the script's) is the sign.
    let bios = case.firmware == Firmware::BiosIpxeRom;
    let console = loop {
        let console = fs::read_to_string(&serial_log).unwrap_or_default();
        if console.contains(&fetched) || (bios && served(&counter) >= 1.0) {
            break console;
        }
        let gave_up = |line: &&str| FIRMWARE_GAVE_UP.iter().any(|s| line.contains(s)) || line.contains("-FETCH-FAILED");
        if let Some(line) = console.lines().find(gave_up) {
            guest.stop(Duration::from_secs(5));
            panic!(
                "{}: the boot failed after {:.1} s; the console says {:?}",
                case.name,
                started.elapsed().as_secs_f64(),
                line.trim()
            );
        }
        if let Some(status) = guest.try_status() {
            panic!("{}: qemu exited ({status}) before the script ran", case.name);
        }
        if started.elapsed() >= case.limit {
            guest.stop(Duration::from_secs(5));
            panic!("{}: the script did not run within {:?} of qemu's start", case.name, case.limit);
        }
        thread::sleep(Duration::from_millis(100));
    };
    let took = started.elapsed();
    guest.stop(Duration::from_secs(5));

    let leases: Vec<_> =
        server.leases().into_iter().filter(|l| l.mac.eq_ignore_ascii_case(&format_mac(case.mac))).collect();
    assert!(leases.len() == 1 && leases[0].state == "bound", "{}: one bound record: {leases:?}", case.name);
    let address = leases[0].ip;
    assert!((u32::from(POOL_START)..=u32::from(POOL_END)).contains(&u32::from(address)), "{address}");
    if !bios {
        // The script's line: iPXE's address and next-server, and what Leasehold filled in.
        let prefix = format!("{marker} mac {} ip {address} from ", format_mac(case.mac));
        let line = console.lines().find(|l| l.contains(&prefix)).unwrap_or_else(|| panic!("no line {prefix:?}"));
        let leased = format!("leased {address} to {}", format_mac(case.mac).to_ascii_lowercase());
        assert!(line.contains(&leased), "{}: the rendered script names the lease ({leased:?}): {line:?}", case.name);
    }
    let metrics = server.metrics();
    let value = |name: &str, labels: &str| metric(&metrics, name, labels).unwrap_or(0.0);
    assert!(value("leasehold_http_boot_requests_total", "outcome=\"script\"") >= 1.0, "the rendered script\n{metrics}");
    match case.first_fetch {
        FirstFetch::Tftp(_) => {
            assert!(value("leasehold_tftp_transfers_completed_total", "") >= 1.0, "snponly.efi over TFTP\n{metrics}");
            assert!(value("leasehold_tftp_sent_bytes_total", "") >= efi_bytes as f64, "the whole of snponly.efi");
            assert!(value("leasehold_http_boot_requests_total", "outcome=\"served\"") >= 1.0, "the marker\n{metrics}");
        }
        FirstFetch::Http(_) => {
            assert!(
                value("leasehold_http_boot_requests_total", "outcome=\"served\"") >= 2.0,
                "snponly.efi and the marker\n{metrics}"
            );
        }
        FirstFetch::None => {
            assert!(value("leasehold_http_boot_requests_total", "outcome=\"served\"") >= 1.0, "the marker\n{metrics}");
        }
    }
    println!(
        "{}: booted from Leasehold's own boot files to the marker in {:.1} s with {address}",
        case.name,
        took.as_secs_f64()
    );
}

/// The boot path fails over (issue 14): a 3-node cluster, every node serving the boot root; qemu's BIOS
/// iPXE ROM boots and runs the script rendered by the node that answered (the leader), which serves
/// the marker; that node is killed with SIGKILL; the same machine boots again and is served its lease
/// (the same address) and its script and marker by the new leader.
#[test]
fn after_the_node_that_booted_a_machine_is_killed_the_new_leader_boots_it_again() {
    use netns_support::cluster::{node_ip, Cluster, NodeOptions, Pools, NODES};
    let _serial = serial();
    require_root();
    for tool in ["qemu-system-x86_64", "timeout"] {
        require_tool(tool);
    }
    let case = bios_case();
    let dir = scratch_dir("firmware-failover");
    let segment = Segment::up(NODES, 0, 24);
    let bridge_ns = add_guest_tap(&segment);
    let root = dir.path().join("root");
    fs::create_dir_all(&root).expect("create the boot root");
    let marker_file = format!("booted-{}", format_mac(case.mac).replace(':', "-"));
    fs::write(root.join(&marker_file), "marker\n").expect("write the marker file");
    let pools = format!(
        r#"[boot]
default_script = "marker"

[[boot.script]]
name = "marker"
template = """
#!ipxe
imgfetch http://{{{{server}}}}/booted-${{net0/mac:hexhyp}}
sleep 600
"""

[pxe]
boot_file = "{BIOS_FILE}"
ipxe_script_url = "http://{{server}}/boot/{{mac}}.ipxe"

[[pool]]
name = "boot"
subnet = "10.77.0.0/24"
range_start = "{POOL_START}"
range_end = "{POOL_END}"
lease_time_secs = 600
"#
    );
    let root_arg = root.display().to_string();
    let options = NodeOptions {
        extra_args: (1..=NODES).map(|_| vec!["--boot-root".to_string(), root_arg.clone()]).collect(),
        ..NodeOptions::default()
    };
    let mut cluster = Cluster::start_with_options(&segment, dir.path(), Pools::Toml(pools), options, &[1, 2, 3]);
    let mac = format_mac(case.mac);
    // Polled (qemu's console is VGA; the marker's fetch is the end of a boot): the nodes' HTTP counters.
    let served = |cluster: &Cluster, id: u32| {
        metric(&cluster.server(id).metrics(), "leasehold_http_boot_requests_total", "outcome=\"served\"").unwrap_or(0.0)
    };
    let boot = |cluster: &Cluster, live: &[u32], run: &str| -> u32 {
        let serial_log = dir.path().join(format!("serial-{run}.log"));
        let qemu_log = dir.path().join(format!("qemu-{run}.log"));
        let before: Vec<f64> = live.iter().map(|&id| served(cluster, id)).collect();
        let started = Instant::now();
        let mut guest = Proc::spawn("qemu", guest_command(&case, &bridge_ns, dir.path(), &serial_log), &qemu_log);
        let by = loop {
            if let Some(i) = live.iter().enumerate().position(|(i, &id)| served(cluster, id) > before[i]) {
                break live[i];
            }
            if let Some(status) = guest.try_status() {
                panic!("{run}: qemu exited ({status}) before the marker\n{}", tail_of(&qemu_log));
            }
            assert!(started.elapsed() < case.limit, "{run}: no marker fetch within {:?}", case.limit);
            thread::sleep(Duration::from_millis(100));
        };
        guest.stop(Duration::from_secs(5));
        println!("{run}: booted to the marker served by node {by} in {:.1} s", started.elapsed().as_secs_f64());
        by
    };
    let address_on = |cluster: &Cluster, id: u32| {
        let leases = cluster.server(id).leases();
        let mine: Vec<_> =
            leases.into_iter().filter(|l| l.mac.eq_ignore_ascii_case(&mac) && l.state == "bound").collect();
        assert_eq!(mine.len(), 1, "node {id}: one bound record for {mac}: {mine:?}");
        mine[0].ip
    };

    let (leader, _) = cluster.wait_for_leader(&[1, 2, 3], Duration::from_secs(20), "a leader");
    let first = boot(&cluster, &[1, 2, 3], "first boot");
    assert_eq!(first, leader, "the leader answered, so it served the script and the marker");
    let address = address_on(&cluster, leader);
    cluster.kill(leader);
    let live: Vec<u32> = (1..=NODES).filter(|&id| id != leader).collect();
    let (new_leader, _) = cluster.wait_for_leader(&live, Duration::from_secs(20), "a new leader");
    let second = boot(&cluster, &live, "second boot");
    assert_eq!(second, new_leader, "the new leader served the script and the marker");
    assert_eq!(address_on(&cluster, new_leader), address, "the same address after the failover");
    let metrics = cluster.server(new_leader).metrics();
    assert!(
        metric(&metrics, "leasehold_http_boot_requests_total", "outcome=\"script\"").unwrap_or(0.0) >= 1.0,
        "node {new_leader} rendered the machine's script\n{metrics}"
    );
    println!(
        "{mac} booted from node {leader} ({}), then from node {new_leader} ({}), with {address} both times",
        node_ip(leader),
        node_ip(new_leader)
    );
}
