//! `leasehold cluster make-certs`: the certificates of peer TLS, and of an HTTPS admin API, made
//! with rcgen (no openssl needed). Writes into one directory:
//!
//! - `ca.pem`, `ca.key`: the cluster CA, made unless the directory already has both (then reused,
//!   so a node added later gets a certificate from the same CA). Keep `ca.key` off the nodes.
//! - `node-N.pem`, `node-N.key`: node N's peer certificate, naming `node-N.leasehold`.
//! - `admin.pem`, `admin.key` with `--admin-name`: a certificate for the admin listener, naming
//!   the addresses or DNS names the `leasehold` commands connect to.
//!
//! Existing node or admin files are never overwritten. Keys are written readable by their owner
//! only. Every certificate made is loaded back and checked as `leasehold serve` checks it.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Args;
use leasehold_cluster::transport::tls::{node_name, CertificateAuthority, PeerTls, PemPair};

/// Certificates start to be valid this long before they are made (clocks of nodes differ a little).
const BACKDATE: Duration = Duration::from_secs(3600);
const SECONDS_PER_DAY: u64 = 86_400;
/// The longest validity asked for (the CA's included).
const MAX_VALIDITY_DAYS: u64 = 36_500;

#[derive(Args, Debug, Clone)]
pub struct MakeCertsArgs {
    /// The directory to write into (created if missing).
    #[arg(long)]
    pub dir: PathBuf,
    /// Node ids to make peer certificates for, comma-separated: --nodes 1,2,3.
    #[arg(long, value_delimiter = ',')]
    pub nodes: Vec<u64>,
    /// Make admin.pem / admin.key for this name of the admin API (an IP address or DNS name the
    /// commands connect to); repeat for several.
    #[arg(long = "admin-name")]
    pub admin_names: Vec<String>,
    /// Days each new certificate (and a new CA) is valid.
    #[arg(long, default_value_t = 825)]
    pub days: u64,
}

fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), String> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("{}: {e} (existing files are never overwritten)", path.display()))?;
    file.write_all(contents.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}

fn write_pair(dir: &Path, name: &str, pair: &PemPair) -> Result<(PathBuf, PathBuf), String> {
    let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    for path in [&cert, &key] {
        if path.exists() {
            return Err(format!("{} exists; remove it first to make a new one", path.display()));
        }
    }
    write_new(&key, &pair.key_pem, 0o600)?;
    write_new(&cert, &pair.cert_pem, 0o644)?;
    Ok((cert, key))
}

fn make(args: &MakeCertsArgs) -> Result<(), String> {
    if args.nodes.is_empty() && args.admin_names.is_empty() {
        return Err("nothing to make: give --nodes 1,2,3 and/or --admin-name NAME".to_string());
    }
    if let Some(zero) = args.nodes.iter().find(|id| **id == 0) {
        return Err(format!("node id {zero} is not a Raft id (ids are greater than 0)"));
    }
    if args.days == 0 || args.days > MAX_VALIDITY_DAYS {
        return Err(format!("--days {}: give 1 to {MAX_VALIDITY_DAYS}", args.days));
    }
    std::fs::create_dir_all(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let now = SystemTime::now();
    let (not_before, not_after) = (now - BACKDATE, now + Duration::from_secs(args.days * SECONDS_PER_DAY));
    let (ca_cert, ca_key) = (args.dir.join("ca.pem"), args.dir.join("ca.key"));
    let ca = match (ca_cert.exists(), ca_key.exists()) {
        (true, true) => {
            let pem = std::fs::read_to_string(&ca_key).map_err(|e| format!("{}: {e}", ca_key.display()))?;
            println!("using the CA in {} (key {})", ca_cert.display(), ca_key.display());
            CertificateAuthority::from_key_pem(&pem, &ca_key).map_err(|e| e.to_string())?
        }
        (false, false) => {
            let ca = CertificateAuthority::new(not_before, not_after).map_err(|e| e.to_string())?;
            let pem = ca.pem();
            write_new(&ca_key, &pem.key_pem, 0o600)?;
            write_new(&ca_cert, &pem.cert_pem, 0o644)?;
            println!("made the cluster CA: {} (key {}: keep it off the nodes)", ca_cert.display(), ca_key.display());
            ca
        }
        (true, false) | (false, true) => {
            return Err(format!(
                "{} has one of ca.pem and ca.key but not both: restore the missing one, or use another --dir",
                args.dir.display()
            ))
        }
    };
    for &id in &args.nodes {
        let pair = ca.issue_node(id, &[], not_before, not_after).map_err(|e| e.to_string())?;
        let (cert, key) = write_pair(&args.dir, &format!("node-{id}"), &pair)?;
        PeerTls::load(&ca_cert, &cert, &key, id, rustls_pki_types::UnixTime::now())
            .map_err(|e| format!("the new certificate does not check out: {e}"))?;
        println!("node {id}: {} and {} (names {})", cert.display(), key.display(), node_name(id));
    }
    if !args.admin_names.is_empty() {
        let pair = ca.issue(&args.admin_names, not_before, not_after).map_err(|e| e.to_string())?;
        let (cert, key) = write_pair(&args.dir, "admin", &pair)?;
        leasehold_node::admin::tls_config(&cert, &key)
            .map_err(|e| format!("the new admin certificate does not check out: {e}"))?;
        println!("admin API: {} and {} (names {})", cert.display(), key.display(), args.admin_names.join(", "));
    }
    if !args.nodes.is_empty() {
        println!(
            "serve with: --cluster-tls-ca {ca} --cluster-tls-cert {dir}/node-ID.pem --cluster-tls-key {dir}/node-ID.key",
            ca = ca_cert.display(),
            dir = args.dir.display()
        );
    }
    Ok(())
}

pub fn run(args: &MakeCertsArgs) -> ExitCode {
    match make(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leasehold cluster make-certs: {e}");
            ExitCode::FAILURE
        }
    }
}
