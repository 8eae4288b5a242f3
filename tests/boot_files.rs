//! Every node serves the boot files itself (issue 14, "TFTP on every node" and "Replies name the node
//! that answers"), on a namespace segment with a 3-node cluster started with `--boot-root DIR` and a
//! `[pxe]` that names a boot file but no TFTP server:
//!
//! 1. the real tftp-hpa client fetches the boot file from each of the three nodes, byte for byte
//!    (RFC 1350 read request, octet mode);
//! 2. `..`, an absolute name and a symbolic link out of the root are refused (TFTP error 2), a
//!    missing file is "not found" (error 1), a write request is refused; `/metrics` counts each;
//! 3. the same files over HTTP (curl, the real client here): whole, a byte range (206 with exactly
//!    those bytes), and the same refusals (403) and 404;
//! 4. iPXE is sent to `http://{server}/boot/{mac}.ipxe` on the node that answers, which renders the
//!    `[boot.menu]` (an iPXE menu) and, by `?script=`, a template with the machine's lease filled in;
//!    a class and a reservation choose their own script, filled in with the arch and class of the
//!    machine's boot request and the reservation's fields, and TFTP serves `boot/{mac}.ipxe` too;
//! 5. a PXE client's OFFER and ACK name the node that answers (the leader) in `siaddr` and option 66,
//!    and a UEFI HTTP boot client's URL (`http://{server}/snponly.efi` in the config) names it too;
//!    after that node is killed, the new leader's replies name the new leader, and it serves the file.
//!
//! And: every node reports a digest of its boot root, and the leader flags a member whose files
//! differ from its own until they are the same again.
//!
//! And on one node: a 33 MiB file (67,585 blocks of 512 bytes) arrives whole, the block number rolling
//! over past 65,535; curl's TFTP client fetches with options (blksize, tsize) and without, and 100
//! transfers at once all complete.

mod netns_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use leasehold_tests::{format_mac, test_mac, ClientConfig, ClientOptions, RetryPolicy, TestClient};
use netns_support::cluster::{node_ip, Cluster, NodeOptions, Pools, NODES};
use netns_support::*;

const BOOT_FILE: &str = "snponly.efi";

fn pools() -> String {
    r#"[boot]
default_script = "menu"

[[boot.script]]
name = "install"
template = "kernel http://{{server}}/vmlinuz ip={{ip}} hostname={{hostname}} mac={{mac}}\nboot\n"

[[boot.script]]
name = "facts"
template = "echo arch={{arch}} class={{class}} boot_file={{boot_file}} host={{hostname}} ip={{ip}}"

[[class]]
name = "arm"
boot_file = "arm.efi"
boot_script = "facts"
[class.match]
arch = ["uefi-arm64"]

[[reservation]]
mac = "02:4c:00:00:00:05"
ip = "10.77.0.60"
hostname = "reserved-5"
boot_file = "res.efi"
boot_script = "facts"

[boot.menu]
title = "Leasehold test menu"
default = "local"
timeout_secs = 3

[[boot.menu.entry]]
name = "install"
label = "Install an OS"
script = "chain http://{{server}}/boot/{{mac}}.ipxe?script=install"

[[boot.menu.entry]]
name = "local"
label = "Boot from the local disk"
script = "exit"

[pxe]
boot_file = "snponly.efi"
ipxe_script_url = "http://{server}/boot/{mac}.ipxe"

[pxe.arch]
http-x64 = "http://{server}/snponly.efi"

[[pool]]
name = "segment"
subnet = "10.77.0.0/24"
range_start = "10.77.0.100"
range_end = "10.77.0.200"
lease_time_secs = 600
"#
    .to_string()
}

/// `tftp SERVER -m binary -c get NAME LOCAL` in `ns`: its exit status and what it printed (tftp-hpa
/// prints a TFTP error and leaves no file, whatever its exit status).
fn tftp_get(ns: &str, tftp: &Path, server: std::net::Ipv4Addr, name: &str, local: &Path) -> (bool, String) {
    let mut cmd = in_ns(ns, tftp);
    cmd.args([&server.to_string(), "-m", "binary", "-c", "get", name, &local.display().to_string()]);
    let out = cmd.output().expect("run tftp");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success() && !text.contains("Error code") && !text.contains("tftp:"), text)
}

fn tftp_put(ns: &str, tftp: &Path, server: std::net::Ipv4Addr, local: &Path, name: &str) -> String {
    let mut cmd = in_ns(ns, tftp);
    cmd.args([&server.to_string(), "-m", "binary", "-c", "put", &local.display().to_string(), name]);
    let out = cmd.output().expect("run tftp");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `curl ARGS URL` in `ns`: the HTTP status and the body.
fn curl(ns: &str, url: &str, args: &[&str]) -> (u16, Vec<u8>) {
    let mut cmd = in_ns(ns, "curl");
    cmd.args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"]).args(args).arg(url);
    let out = cmd.output().expect("run curl");
    assert!(out.status.success(), "curl {url}: {}", String::from_utf8_lossy(&out.stderr));
    let split = out.stdout.iter().rposition(|&b| b == b'\n').expect("curl's status line");
    let code = String::from_utf8_lossy(&out.stdout[split + 1..]).trim().parse().expect("an HTTP status");
    (code, out.stdout[..split].to_vec())
}

#[test]
fn every_node_serves_the_boot_files_and_replies_name_the_node_that_answers() {
    let tftp = require_tool("tftp");
    let segment = Segment::up(NODES, 1, 24);
    let dir = scratch_dir("boot-files");
    let root = dir.path().join("boot-root");
    std::fs::create_dir_all(root.join("images")).expect("create the boot root");
    let efi: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(root.join(BOOT_FILE), &efi).expect("write the boot file");
    std::fs::write(dir.path().join("secret.txt"), b"outside the root").expect("write a file outside the root");
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("escape")).expect("make a symlink");
    let root_arg = root.display().to_string();
    let options = NodeOptions {
        extra_args: (1..=NODES).map(|_| vec!["--boot-root".to_string(), root_arg.clone()]).collect(),
        ..NodeOptions::default()
    };
    let mut cluster = Cluster::start_with_options(&segment, dir.path(), Pools::Toml(pools()), options, &[1, 2, 3]);
    let client_ns = segment.client(1);
    // tftp-hpa needs an address of its own: one outside the pool.
    let out = Command::new("ip").args(["-n", &client_ns, "addr", "add", "10.77.0.250/24", "dev", "eth0"]).output();
    assert!(out.is_ok_and(|o| o.status.success()), "could not give the client's eth0 10.77.0.250/24");
    let fetched = dir.path().join("fetched");
    std::fs::create_dir_all(&fetched).expect("create the download dir");

    // 1. The boot file from every node.
    for id in 1..=NODES {
        let local = fetched.join(format!("{BOOT_FILE}.{id}"));
        let (ok, text) = tftp_get(&client_ns, &tftp, node_ip(id), BOOT_FILE, &local);
        assert!(ok, "tftp get {BOOT_FILE} from node {id} failed: {text}");
        let got = std::fs::read(&local).expect("the fetched file");
        assert!(
            got == efi,
            "node {id} sent {} bytes, not the {} of the file (or other bytes): {text}",
            got.len(),
            efi.len()
        );
    }

    // 2. Refused and missing names, and a write.
    for name in ["../secret.txt", "/etc/hostname", "escape", "images"] {
        let local = fetched.join("refused");
        let (ok, text) = tftp_get(&client_ns, &tftp, node_ip(1), name, &local);
        assert!(!ok && text.contains("Error code 2"), "get {name} should be refused (error 2): {text}");
    }
    let (ok, text) = tftp_get(&client_ns, &tftp, node_ip(1), "missing.efi", &fetched.join("missing"));
    assert!(!ok && text.contains("Error code 1"), "get missing.efi should be 'not found' (error 1): {text}");
    let text = tftp_put(&client_ns, &tftp, node_ip(1), &fetched.join(format!("{BOOT_FILE}.1")), "uploaded.efi");
    assert!(text.contains("Error code"), "a write request should be refused: {text}");
    assert!(!root.join("uploaded.efi").exists(), "nothing was written to the boot root");
    let metrics = cluster.server(1).metrics();
    let count = |outcome: &str| metric(&metrics, "leasehold_tftp_requests_total", &format!("outcome=\"{outcome}\""));
    assert_eq!(count("served"), Some(1.0), "node 1 served the boot file once\n{metrics}");
    assert_eq!(count("refused"), Some(4.0));
    assert_eq!(count("not_found"), Some(1.0));
    assert_eq!(count("write_refused"), Some(1.0));
    assert_eq!(metric(&metrics, "leasehold_tftp_transfers_completed_total", ""), Some(1.0));
    assert_eq!(metric(&metrics, "leasehold_tftp_sent_bytes_total", ""), Some(efi.len() as f64));
    let metrics = cluster.server(2).metrics();
    assert_eq!(metric(&metrics, "leasehold_tftp_sent_bytes_total", ""), Some(efi.len() as f64), "node 2's count");

    // 3. Over HTTP, from another node.
    let node3 = node_ip(3);
    let (code, body) = curl(&client_ns, &format!("http://{node3}/{BOOT_FILE}"), &[]);
    assert!(code == 200 && body == efi, "GET /{BOOT_FILE}: HTTP {code}, {} bytes", body.len());
    let (code, body) = curl(&client_ns, &format!("http://{node3}/{BOOT_FILE}"), &["-r", "100-199"]);
    assert!(code == 206 && body == efi[100..200], "a range: HTTP {code}, {} bytes", body.len());
    for path in ["../secret.txt", "escape", "images", "%2e%2e/secret.txt"] {
        let (code, _) = curl(&client_ns, &format!("http://{node3}/{path}"), &["--path-as-is"]);
        assert_eq!(code, 403, "GET /{path} must be refused");
    }
    let (code, _) = curl(&client_ns, &format!("http://{node3}/missing.efi"), &[]);
    assert_eq!(code, 404);
    let metrics = cluster.server(3).metrics();
    let count =
        |outcome: &str| metric(&metrics, "leasehold_http_boot_requests_total", &format!("outcome=\"{outcome}\""));
    assert_eq!((count("served"), count("refused"), count("not_found")), (Some(2.0), Some(4.0), Some(1.0)), "{metrics}");

    // 4. A PXE client is told to boot from the node that answered it, before and after a failover.
    let (leader, _) = cluster.wait_for_leader(&[1, 2, 3], Duration::from_secs(20), "a leader");
    let mut client = TestClient::bind(ClientConfig::in_namespace(&client_ns, "eth0")).expect("open the test client");
    let policy = RetryPolicy::default();
    let boot_from = |client: &mut TestClient, n: u32| {
        let mac = test_mac(n);
        let options = ClientOptions::pxe(mac, 7, [n as u8; 16]);
        let lease = client.dora_with(mac, &options, &policy, Duration::from_secs(20));
        let lease = lease.unwrap_or_else(|e| panic!("PXE client {n}: {e:?}"));
        for reply in [&lease.offer, &lease.ack] {
            assert_eq!(reply.file.as_deref(), Some(BOOT_FILE), "{reply:?}");
            assert_eq!(reply.siaddr, lease.server_id, "siaddr names the answering node: {reply:?}");
            assert_eq!(reply.option_text(66), Some(lease.server_id.to_string()), "option 66: {reply:?}");
        }
        lease.server_id
    };
    assert_eq!(boot_from(&mut client, 1), node_ip(leader), "the leader answers and names itself");
    let http_url = |client: &mut TestClient, n: u32| {
        let mac = test_mac(n);
        let options = ClientOptions {
            vendor_class: Some(b"HTTPClient:Arch:00016:UNDI:003000".to_vec()),
            client_arch: Some(16),
            parameter_request_list: vec![1, 3, 6, 60, 67],
            ..ClientOptions::default()
        };
        let lease = client.dora_with(mac, &options, &policy, Duration::from_secs(20));
        let lease = lease.unwrap_or_else(|e| panic!("HTTP boot client {n}: {e:?}"));
        (lease.server_id, lease.ack.file.clone().unwrap_or_default())
    };
    // iPXE (user class `iPXE`) is sent to its own script on the answering node; the script is the
    // menu (`default_script`), and the menu's entry chains to the template with the lease filled in.
    let mac = test_mac(3);
    let options = ClientOptions { user_class: Some(b"iPXE".to_vec()), ..ClientOptions::pxe(mac, 7, [3; 16]) };
    let lease = client.dora_with(mac, &options, &policy, Duration::from_secs(20)).expect("iPXE's DORA");
    let hyphens = format_mac(mac).replace(':', "-").to_ascii_lowercase();
    let script_url = format!("http://{}/boot/{hyphens}.ipxe", lease.server_id);
    assert_eq!(lease.ack.file.as_deref(), Some(script_url.as_str()), "iPXE's script URL names the node and the MAC");
    let (code, menu) = curl(&client_ns, &script_url, &[]);
    let menu = String::from_utf8_lossy(&menu).into_owned();
    let expected_menu =
        "#!ipxe\nmenu Leasehold test menu\nitem install Install an OS\nitem local Boot from the local disk\n\
                         choose --timeout 3000 --default local selected || goto local\ngoto ${selected}\n";
    assert!(code == 200 && menu.starts_with(expected_menu), "the menu: HTTP {code}\n{menu}");
    let chain =
        format!("chain http://{}/boot/{}.ipxe?script=install", lease.server_id, format_mac(mac).to_ascii_lowercase());
    assert!(menu.contains(&format!(":install\n{chain}\n:local\nexit\n")), "the entries: {menu}");
    let (code, script) = curl(&client_ns, &format!("{script_url}?script=install"), &[]);
    let script = String::from_utf8_lossy(&script).into_owned();
    let kernel = format!(
        "kernel http://{}/vmlinuz ip={} hostname= mac={}",
        lease.server_id,
        lease.address,
        format_mac(mac).to_ascii_lowercase()
    );
    assert!(code == 200 && script == format!("#!ipxe\n{kernel}\nboot\n"), "the install script: HTTP {code}\n{script}");
    let (code, _) = curl(&client_ns, &format!("{script_url}?script=nope"), &[]);
    assert_eq!(code, 404, "an unknown script");
    // A class chooses the script, and the script sees the arch and class of the machine's boot
    // request; over TFTP, `boot/{mac}.ipxe` is the same script.
    let arm = test_mac(4);
    let options = ClientOptions { user_class: Some(b"iPXE".to_vec()), ..ClientOptions::pxe(arm, 11, [4; 16]) };
    let lease = client.dora_with(arm, &options, &policy, Duration::from_secs(20)).expect("ARM iPXE's DORA");
    let arm_name = format!("boot/{}.ipxe", format_mac(arm).replace(':', "-").to_ascii_lowercase());
    let (code, script) = curl(&client_ns, &format!("http://{}/{arm_name}", lease.server_id), &[]);
    let expected = format!("#!ipxe\necho arch=11 class=arm boot_file=arm.efi host= ip={}\n", lease.address);
    assert_eq!((code, String::from_utf8_lossy(&script).into_owned()), (200, expected.clone()), "the class's script");
    let local = fetched.join("arm.ipxe");
    let (ok, text) = tftp_get(&client_ns, &tftp, lease.server_id, &arm_name, &local);
    assert!(ok, "the script over TFTP: {text}");
    assert_eq!(std::fs::read_to_string(&local).expect("the script fetched"), expected, "the same script over TFTP");
    // A reservation chooses its script too, and fills in its own address, host name and boot file
    // before the machine has asked for anything.
    let reserved = format!("boot/{}.ipxe", format_mac(test_mac(5)).replace(':', "-"));
    let local = fetched.join("reserved.ipxe");
    let (ok, text) = tftp_get(&client_ns, &tftp, node_ip(leader), &reserved, &local);
    assert!(ok, "the reserved machine's script over TFTP: {text}");
    assert_eq!(
        std::fs::read_to_string(&local).expect("the script fetched"),
        "#!ipxe\necho arch= class= boot_file=res.efi host=reserved-5 ip=10.77.0.60\n"
    );
    let metrics = cluster.server(leader).metrics();
    let scripts = metric(&metrics, "leasehold_tftp_requests_total", "outcome=\"script\"");
    assert_eq!(scripts, Some(2.0), "two scripts over TFTP, counted\n{metrics}");

    let (server, url) = http_url(&mut client, 11);
    assert_eq!(url, format!("http://{server}/{BOOT_FILE}"), "the URL names the answering node");
    cluster.kill(leader);
    let others: Vec<u32> = (1..=NODES).filter(|&id| id != leader).collect();
    let (new_leader, _) = cluster.wait_for_leader(&others, Duration::from_secs(20), "a new leader");
    assert_eq!(boot_from(&mut client, 2), node_ip(new_leader), "the new leader answers and names itself");
    let local = fetched.join("after-failover.efi");
    let (ok, text) = tftp_get(&client_ns, &tftp, node_ip(new_leader), BOOT_FILE, &local);
    assert!(ok && std::fs::read(&local).ok().as_ref() == Some(&efi), "the new leader serves the boot file: {text}");
    let (server, url) = http_url(&mut client, 12);
    assert_eq!(server, node_ip(new_leader));
    assert_eq!(url, format!("http://{server}/{BOOT_FILE}"), "the URL names the new leader");
    let (code, body) = curl(&client_ns, &url, &[]);
    assert!(code == 200 && body == efi, "the new leader serves {url}: HTTP {code}, {} bytes", body.len());
}

/// RFC 1350 numbers blocks in 16 bits: a file of more than 65,535 blocks of 512 bytes (the size a
/// client gets without the blksize option, as tftp-hpa's) makes the block number roll over, and the
/// file must still arrive whole.
#[test]
fn a_file_of_more_than_65535_blocks_arrives_whole() {
    const BYTES: usize = 33 * 1024 * 1024 + 123;
    let tftp = require_tool("tftp");
    let segment = Segment::up(1, 1, 16);
    let dir = scratch_dir("boot-files-big");
    let root = dir.path().join("boot-root");
    std::fs::create_dir_all(&root).expect("create the boot root");
    let big: Vec<u8> = (0..BYTES).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("big.img"), &big).expect("write the big file");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("create the data dir");
    let root_arg = root.display().to_string();
    let server = Server::start(
        &segment.server(1),
        &data,
        &dir.path().join("leasehold.log"),
        &[SERVER_16_ARGS.as_slice(), &["--boot-root", &root_arg]].concat(),
    );
    let client_ns = segment.client(1);
    let out = Command::new("ip").args(["-n", &client_ns, "addr", "add", "10.77.0.250/16", "dev", "eth0"]).output();
    assert!(out.is_ok_and(|o| o.status.success()), "could not give the client's eth0 10.77.0.250/16");
    let local = dir.path().join("big.img");
    let started = std::time::Instant::now();
    let (ok, text) = tftp_get(&client_ns, &tftp, std::net::Ipv4Addr::new(10, 77, 0, 1), "big.img", &local);
    let took = started.elapsed();
    assert!(ok, "tftp get big.img failed after {took:?}: {text}");
    let got = std::fs::read(&local).expect("the fetched file");
    assert!(got == big, "the file arrived as {} bytes, not the {BYTES} written (or other bytes)", got.len());
    let metrics = server.metrics();
    assert_eq!(metric(&metrics, "leasehold_tftp_transfers_completed_total", ""), Some(1.0));
    eprintln!("{BYTES} bytes in {} blocks of 512 in {took:?}", BYTES.div_ceil(512));
}

/// curl's TFTP client, with the options (RFC 2348 blksize, RFC 2349 tsize, which curl sends) and
/// without any (`--tftp-no-options`), atftp with windowsize (RFC 7440) as well, then 100 transfers at once from one client address (limits
/// raised in the config to let them in): every file arrives whole.
#[test]
fn curl_and_atftp_fetch_with_and_without_options_and_100_transfers_at_once_complete() {
    const CONCURRENT: usize = 100;
    require_tool("curl");
    let segment = Segment::up(1, 1, 24);
    let dir = scratch_dir("boot-files-curl");
    let root = dir.path().join("boot-root");
    std::fs::create_dir_all(&root).expect("create the boot root");
    let file: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(7_919) >> 3) as u8).collect();
    std::fs::write(root.join("kernel.img"), &file).expect("write the file");
    let config = format!(
        "[server]\nserver_ip = \"10.77.0.1\"\n\n[boot]\nroot = \"{}\"\nmax_tftp_transfers = 128\n\
         tftp_requests_per_client_per_sec = 500\n\n[[pool]]\nname = \"segment\"\nsubnet = \"10.77.0.0/24\"\n\
         range_start = \"10.77.0.100\"\nrange_end = \"10.77.0.200\"\n",
        root.display()
    );
    let config_file = dir.path().join("leasehold.toml");
    std::fs::write(&config_file, config).expect("write the config");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("create the data dir");
    let config_arg = config_file.display().to_string();
    let server =
        Server::start(&segment.server(1), &data, &dir.path().join("leasehold.log"), &["--config", &config_arg]);
    let client_ns = segment.client(1);
    let out = Command::new("ip").args(["-n", &client_ns, "addr", "add", "10.77.0.250/24", "dev", "eth0"]).output();
    assert!(out.is_ok_and(|o| o.status.success()), "could not give the client's eth0 10.77.0.250/24");
    let url = "tftp://10.77.0.1/kernel.img";
    let fetch = |args: &[&str], to: &Path| {
        let mut cmd = in_ns(&client_ns, "curl");
        cmd.args(["-sS", "--max-time", "60", "-o"]).arg(to).args(args).arg(url);
        cmd
    };
    for (what, args) in
        [("blksize 1468 and tsize", &["--tftp-blksize", "1468"][..]), ("no options", &["--tftp-no-options"][..])]
    {
        let local = dir.path().join("one.img");
        let out = fetch(args, &local).output().expect("run curl");
        assert!(out.status.success(), "curl ({what}): {}", String::from_utf8_lossy(&out.stderr));
        assert!(std::fs::read(&local).ok() == Some(file.clone()), "curl ({what}) got another file");
    }

    // atftp asks for windowsize (RFC 7440) too: the OACK must grant all three and the file arrive whole.
    let atftp = require_tool("atftp");
    let local = dir.path().join("windowed.img");
    let mut cmd = in_ns(&client_ns, &atftp);
    cmd.args(["--option", "windowsize 8", "--option", "blksize 1468", "--option", "tsize 0", "--trace", "-g", "-r"]);
    cmd.arg("kernel.img").arg("-l").arg(&local).args(["10.77.0.1", "69"]);
    let out = cmd.output().expect("run atftp");
    let trace = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let oack = trace.lines().find(|l| l.contains("received OACK")).unwrap_or_else(|| panic!("no OACK: {trace}"));
    for option in ["windowsize: 8", "blksize: 1468", &format!("tsize: {}", file.len())] {
        assert!(oack.contains(option), "the OACK should grant {option}: {oack}");
    }
    assert!(std::fs::read(&local).ok() == Some(file.clone()), "atftp (windowsize 8) got another file");

    let mut transfers: Vec<(std::process::Child, std::path::PathBuf)> = (0..CONCURRENT)
        .map(|i| {
            let local = dir.path().join(format!("many-{i}.img"));
            let mut cmd = fetch(&["--tftp-blksize", "1468"], &local);
            cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
            (cmd.spawn().expect("start curl"), local)
        })
        .collect();
    let mut failed = Vec::new();
    for (i, (child, local)) in transfers.iter_mut().enumerate() {
        let status = child.wait().expect("wait for curl");
        if !status.success() || std::fs::read(&*local).ok().as_ref() != Some(&file) {
            failed.push(format!("transfer {i}: {status}"));
        }
    }
    assert!(failed.is_empty(), "{} of {CONCURRENT} concurrent transfers failed: {failed:?}", failed.len());
    let metrics = server.metrics();
    let completed = metric(&metrics, "leasehold_tftp_transfers_completed_total", "");
    assert_eq!(completed, Some((CONCURRENT + 3) as f64), "{metrics}");
    assert_eq!(
        metric(&metrics, "leasehold_tftp_transfers_active", ""),
        Some(0.0),
        "every transfer gave its place back"
    );
}

/// `GET /v1/cluster` of the node in `ns`: its members.
fn cluster_members(ns: &str) -> Vec<serde_json::Value> {
    let (code, body) = admin::admin(ns, "GET", "/v1/cluster", None);
    assert_eq!(code, 200, "GET /v1/cluster: {body}");
    let view: serde_json::Value = serde_json::from_str(&body).expect("/v1/cluster is JSON");
    view["members"].as_array().cloned().unwrap_or_default()
}

/// `/healthz` of the node in `ns`, as JSON.
fn healthz(ns: &str) -> serde_json::Value {
    let (code, body) = admin::admin(ns, "GET", "/healthz", None);
    assert_eq!(code, 200, "GET /healthz: {body}");
    serde_json::from_str(&body).expect("/healthz is JSON")
}

/// Issue 14, "Consistency across nodes": every node digests its own boot root (deployed by the
/// operator, one copy per node here, as rsync leaves them) and reports the digest to the leader.
/// With the same files everywhere the leader's `GET /v1/cluster` shows three equal digests and no
/// mismatch; one byte changed in one follower's copy and the leader flags that member in
/// `/v1/cluster`, its `/healthz` (`boot_root_mismatch_members`), `/metrics`
/// (`leasehold_boot_root_mismatch_members`) and `leasehold cluster status`; the byte put back, the
/// flag goes. `[boot] digest_interval_secs = 1` keeps the waits short; every wait is a bounded poll.
#[test]
fn the_leader_flags_a_member_whose_boot_files_differ_until_they_are_the_same_again() {
    let segment = Segment::up(NODES, 0, 24);
    let dir = scratch_dir("boot-digest");
    let efi: Vec<u8> = (0..50_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let roots: Vec<std::path::PathBuf> = (1..=NODES)
        .map(|id| {
            let root = dir.path().join(format!("boot-root-{id}"));
            std::fs::create_dir_all(root.join("debian")).expect("create a boot root");
            std::fs::write(root.join(BOOT_FILE), &efi).expect("write the boot file");
            std::fs::write(root.join("debian/linux"), b"a kernel").expect("write a kernel");
            root
        })
        .collect();
    let options = NodeOptions {
        extra_args: roots.iter().map(|root| vec!["--boot-root".to_string(), root.display().to_string()]).collect(),
        ..NodeOptions::default()
    };
    let pools = "[boot]\ndigest_interval_secs = 1\n\n[[pool]]\nname = \"segment\"\nsubnet = \"10.77.0.0/24\"\n\
                 range_start = \"10.77.0.100\"\nrange_end = \"10.77.0.200\"\nlease_time_secs = 600\n";
    let cluster = Cluster::start_with_options(&segment, dir.path(), Pools::Toml(pools.into()), options, &[1, 2, 3]);
    let nodes = [1, 2, 3];
    let (leader, _) = cluster.wait_for_leader(&nodes, Duration::from_secs(20), "a leader");
    let odd = if leader == 3 { 2 } else { 3 };
    let limit = Duration::from_secs(15);
    // (id, digest, mismatch) of each member, as the leader shows them.
    let rows = |members: &Vec<serde_json::Value>| -> Vec<(u64, Option<String>, Option<bool>)> {
        members
            .iter()
            .map(|m| {
                let digest = m["boot_root_digest"].as_str().map(str::to_owned);
                (m["id"].as_u64().unwrap_or(0), digest, m["boot_root_mismatch"].as_bool())
            })
            .collect()
    };
    let agreed = |step: &str| -> String {
        let members = poll_until(
            limit,
            || cluster_members(cluster.ns(leader)),
            |members| {
                let rows = rows(members);
                rows.len() == 3
                    && rows[0].1.is_some()
                    && rows.iter().all(|(_, digest, mismatch)| digest == &rows[0].1 && *mismatch == Some(false))
            },
            |members| format!("{step}: the leader never saw three equal boot root digests: {:?}", rows(members)),
        );
        let digest = rows(&members)[0].1.clone().expect("a digest");
        for id in nodes {
            let own = healthz(cluster.ns(id));
            assert_eq!(own["boot_root_digest"].as_str(), Some(digest.as_str()), "{step}: n{id}'s /healthz: {own}");
            let metrics = cluster.server(id).metrics();
            let info = metric(&metrics, "leasehold_boot_root_info", &format!("digest=\"{digest}\""));
            assert_eq!(info, Some(1.0), "{step}: n{id}'s leasehold_boot_root_info");
            assert_eq!(metric(&metrics, "leasehold_boot_root_mismatch_members", ""), Some(0.0), "{step}: n{id}");
        }
        let view = healthz(cluster.ns(leader));
        assert_eq!(view["boot_root_mismatch_members"], serde_json::json!([]), "{step}: the leader's /healthz: {view}");
        digest
    };

    // 1. The same files everywhere.
    let first = agreed("the same files on every node");

    // 2. One byte changed in place in the odd follower's copy (same length, same name).
    let odd_file = roots[odd as usize - 1].join(BOOT_FILE);
    let mut changed = efi.clone();
    changed[12_345] ^= 0x5a;
    std::fs::write(&odd_file, &changed).expect("change the odd node's boot file");
    let want: Vec<(u64, Option<bool>)> = nodes.iter().map(|&id| (u64::from(id), Some(id == odd))).collect();
    let members = poll_until(
        limit,
        || cluster_members(cluster.ns(leader)),
        |members| rows(members).into_iter().map(|(id, _, mismatch)| (id, mismatch)).collect::<Vec<_>>() == want,
        |members| format!("the leader never flagged only n{odd}: {:?}", rows(members)),
    );
    let odd_row = rows(&members).into_iter().find(|(id, _, _)| *id == u64::from(odd)).expect("the odd member");
    let odd_digest = odd_row.1.expect("the odd member's digest");
    assert_ne!(odd_digest, first, "one byte changes the digest");
    let view = healthz(cluster.ns(leader));
    assert_eq!(view["boot_root_mismatch_members"], serde_json::json!([odd]), "the leader's /healthz: {view}");
    let metrics = cluster.server(leader).metrics();
    assert_eq!(metric(&metrics, "leasehold_boot_root_mismatch_members", ""), Some(1.0), "the leader's count");
    assert_eq!(metric(&metrics, "leasehold_boot_root_info", &format!("digest=\"{first}\"")), Some(1.0));
    // The odd node knows its own digest, but not the leader's: only the leader flags.
    let own = healthz(cluster.ns(odd));
    assert_eq!(own["boot_root_digest"].as_str(), Some(odd_digest.as_str()), "n{odd}'s /healthz: {own}");
    assert_eq!(own["boot_root_mismatch_members"], serde_json::Value::Null, "a follower cannot tell: {own}");
    let metrics = cluster.server(odd).metrics();
    assert_eq!(metric(&metrics, "leasehold_boot_root_mismatch_members", ""), Some(0.0), "0 off the leader");
    let mut status = in_ns(cluster.ns(leader), leasehold_bin());
    status.args(["cluster", "status", "--admin", &format!("127.0.0.1:{ADMIN_PORT}")]);
    let out = status.output().expect("run leasehold cluster status");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "leasehold cluster status failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(table.contains("BOOT ROOT"), "{table}");
    let odd_line = table.lines().find(|l| l.starts_with(&format!("{odd} "))).unwrap_or_else(|| panic!("{table}"));
    assert!(odd_line.contains(&format!("{odd_digest} !")), "n{odd}'s row is not marked:\n{table}");
    let leader_line = table.lines().find(|l| l.starts_with(&format!("{leader} "))).unwrap_or_else(|| panic!("{table}"));
    assert!(leader_line.contains(&first) && !leader_line.contains(" !"), "the leader's row:\n{table}");

    // 3. The byte put back: the flag goes, and the digest is the first one again.
    std::fs::write(&odd_file, &efi).expect("put the odd node's boot file back");
    let last = agreed("the file put back");
    assert_eq!(last, first, "the same files, the same digest");
}
