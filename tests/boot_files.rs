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
//! 5. a PXE client's OFFER and ACK name the node that answers (the leader) in `siaddr` and option 66,
//!    and a UEFI HTTP boot client's URL (`http://{server}/snponly.efi` in the config) names it too;
//!    after that node is killed, the new leader's replies name the new leader, and it serves the file.
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
