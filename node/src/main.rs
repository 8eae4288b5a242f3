//! The `leasehold` command: `serve`, `check-config`, `leases`, `reservations`, `cluster`.

mod client;
mod make_certs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use leasehold_config::{Config, Overrides};

use client::{AdminClient, AdminClientArgs};

#[derive(Parser)]
#[command(name = "leasehold", version, about = "Highly available DHCPv4 + PXE server, replicated through Raft")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node. With neither --config nor --server-ip, runs the embedded demo config.
    Serve(Box<ServeArgs>),
    /// Check a config file and exit: 0 when valid, 1 with every problem listed otherwise.
    CheckConfig { file: PathBuf },
    /// Cluster membership of a running node (status, add-node, remove-node, transfer-leader), and
    /// make-certs.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
        #[command(flatten)]
        client: AdminClientArgs,
    },
    /// Reservations of a running cluster: list, add, remove (replicated through the Raft log).
    Reservations {
        #[command(subcommand)]
        command: ReservationCommand,
        #[command(flatten)]
        client: AdminClientArgs,
    },
    /// Print the lease table of a running node.
    Leases {
        #[command(flatten)]
        client: AdminClientArgs,
        /// Print the raw JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Print GET /v1/cluster: members, roles, term, commit index, replication lag.
    Status,
    /// Add a voter: the new node must be started with the full new peer list (itself included).
    AddNode { id: u64, addr: SocketAddr },
    /// Remove a voter. Refused (409) when it would leave no voter or no reachable quorum.
    RemoveNode { id: u64 },
    /// Hand leadership to voter N (--to N), or to the most up-to-date follower; ask the leader. The
    /// leader stops answering first, so the new one answers at once (a zero-gap restart: then SIGTERM).
    TransferLeader {
        /// The voter to hand leadership to (default: the reachable one whose log matches furthest).
        #[arg(long)]
        to: Option<u64>,
    },
    /// Make the certificates of peer TLS (and optionally of the admin API) in DIR: a cluster CA
    /// (ca.pem, ca.key; reused when DIR has them) and node-N.pem / node-N.key per node id.
    MakeCerts(make_certs::MakeCertsArgs),
}

#[derive(Subcommand)]
enum ReservationCommand {
    /// Print every reservation: the node's config file's and the replicated ones.
    List {
        /// Print the raw JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Reserve IP for MAC (or change its reservation). Refused while another client holds IP.
    Add {
        mac: String,
        ip: std::net::Ipv4Addr,
        #[arg(long)]
        hostname: Option<String>,
        #[arg(long)]
        boot_file: Option<String>,
    },
    /// Remove MAC's reservation.
    Remove { mac: String },
}

#[derive(Args)]
struct ServeArgs {
    /// TOML config file; the flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Interface to serve on (SO_BINDTODEVICE).
    #[arg(long)]
    interface: Option<String>,
    /// This server's address: the server identifier (option 54).
    #[arg(long)]
    server_ip: Option<String>,
    /// First address of the pool.
    #[arg(long)]
    ip_start: Option<String>,
    /// Last address of the pool.
    #[arg(long)]
    ip_end: Option<String>,
    /// Subnet mask of the pool (default 255.255.255.0).
    #[arg(long)]
    subnet_mask: Option<String>,
    /// Default router (option 3).
    #[arg(long)]
    router: Option<String>,
    /// DNS server (option 6); repeat for several.
    #[arg(long)]
    dns: Vec<String>,
    /// Lease time in seconds (option 51).
    #[arg(long = "lease-time")]
    lease_time_secs: Option<u32>,
    /// TFTP server for PXE (siaddr and option 66).
    #[arg(long)]
    tftp_server: Option<String>,
    /// Boot file for PXE (file and option 67).
    #[arg(long)]
    bootfile: Option<String>,
    /// Directory of the Raft log and snapshots.
    #[arg(long)]
    data_dir: Option<String>,
    /// Admin HTTP listen address (default 127.0.0.1:6767).
    #[arg(long)]
    admin_listen: Option<String>,
    /// term or json.
    #[arg(long)]
    log_format: Option<String>,
    /// error, warning, info, debug or trace.
    #[arg(long)]
    log_level: Option<String>,
    /// Do not fsync the Raft log (benchmarks only: an ACKed lease can be lost in a crash).
    #[arg(long)]
    no_fsync: bool,
    /// This node's Raft id.
    #[arg(long)]
    node_id: Option<u64>,
    /// A voter of the initial cluster, ID=HOST:PORT; repeat for each (this node included).
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Address for peer (Raft) traffic.
    #[arg(long)]
    cluster_listen: Option<String>,
    /// File with the shared secret that authenticates peer traffic (required with several peers).
    #[arg(long)]
    cluster_secret_file: Option<String>,
    /// With an empty data directory, join a running cluster instead of bootstrapping one.
    #[arg(long)]
    join: bool,
    /// Peer TLS: the cluster CA's certificate (PEM); with --cluster-tls-cert and --cluster-tls-key.
    #[arg(long)]
    cluster_tls_ca: Option<String>,
    /// Peer TLS: this node's certificate (PEM), signed by the cluster CA, naming node-ID.leasehold.
    #[arg(long)]
    cluster_tls_cert: Option<String>,
    /// Peer TLS: the private key of --cluster-tls-cert (PEM).
    #[arg(long)]
    cluster_tls_key: Option<String>,
    /// File with the bearer token admin writes (and, with [admin] protect_reads, reads) need.
    #[arg(long)]
    admin_token_file: Option<String>,
    /// HTTPS on the admin API: its certificate (PEM); with --admin-tls-key.
    #[arg(long)]
    admin_tls_cert: Option<String>,
    /// HTTPS on the admin API: the private key of --admin-tls-cert (PEM).
    #[arg(long)]
    admin_tls_key: Option<String>,
    /// Testing only: shift this node's clock by this many milliseconds.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    clock_offset_ms: i64,
}

impl ServeArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            interface: self.interface.clone(),
            server_ip: self.server_ip.clone(),
            ip_start: self.ip_start.clone(),
            ip_end: self.ip_end.clone(),
            subnet_mask: self.subnet_mask.clone(),
            router: self.router.clone(),
            dns: self.dns.clone(),
            lease_time_secs: self.lease_time_secs,
            tftp_server: self.tftp_server.clone(),
            bootfile: self.bootfile.clone(),
            data_dir: self.data_dir.clone(),
            admin_listen: self.admin_listen.clone(),
            log_format: self.log_format.clone(),
            log_level: self.log_level.clone(),
            no_fsync: self.no_fsync,
            node_id: self.node_id,
            peers: self.peers.clone(),
            cluster_listen: self.cluster_listen.clone(),
            cluster_secret_file: self.cluster_secret_file.clone(),
            join: self.join,
            cluster_tls_ca: self.cluster_tls_ca.clone(),
            cluster_tls_cert: self.cluster_tls_cert.clone(),
            cluster_tls_key: self.cluster_tls_key.clone(),
            admin_token_file: self.admin_token_file.clone(),
            admin_tls_cert: self.admin_tls_cert.clone(),
            admin_tls_key: self.admin_tls_key.clone(),
        }
    }
}

fn main() -> ExitCode {
    // A panic on any thread (the raft actor's included) ends the process: a node whose Raft thread
    // died must not go on answering clients from a table that no longer follows the log.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        eprintln!("leasehold: a thread panicked; stopping the node");
        std::process::abort();
    }));
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::CheckConfig { file } => match Config::load(Some(&file), &Overrides::default()) {
            Ok(config) => {
                println!(
                    "{}: ok ({} pool(s), {} reservation(s))",
                    file.display(),
                    config.pools.len(),
                    config.reservations.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
        Command::Cluster { command: ClusterCommand::MakeCerts(args), .. } => make_certs::run(&args),
        Command::Cluster { command, client } => {
            let client = match AdminClient::new(&client) {
                Ok(client) => client,
                Err(e) => {
                    eprintln!("leasehold cluster: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let (method, path, body) = match command {
                ClusterCommand::Status => ("GET", "/v1/cluster".to_string(), None),
                ClusterCommand::AddNode { id, addr } => (
                    "POST",
                    "/v1/cluster/nodes".to_string(),
                    Some(serde_json::json!({"id": id, "addr": addr}).to_string()),
                ),
                ClusterCommand::RemoveNode { id } => ("DELETE", format!("/v1/cluster/nodes/{id}"), None),
                ClusterCommand::TransferLeader { to } => (
                    "POST",
                    "/v1/cluster/transfer-leader".to_string(),
                    Some(serde_json::json!({ "to": to }).to_string()),
                ),
                ClusterCommand::MakeCerts(_) => unreachable!("handled above"),
            };
            match client.request(method, &path, body.as_deref()) {
                Ok((status, body)) if (200..300).contains(&status) => {
                    println!("{body}");
                    ExitCode::SUCCESS
                }
                Ok((status, body)) => {
                    eprintln!("leasehold cluster: {}", client.refusal(status, &body));
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("leasehold cluster: {}: {e}", client.admin());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Reservations { command, client } => match AdminClient::new(&client) {
            Ok(client) => reservations(command, &client),
            Err(e) => {
                eprintln!("leasehold reservations: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Leases { client, json } => {
            let client = match AdminClient::new(&client) {
                Ok(client) => client,
                Err(e) => {
                    eprintln!("leasehold leases: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match fetch_leases(&client) {
                Ok(body) if json => {
                    println!("{body}");
                    ExitCode::SUCCESS
                }
                Ok(body) => print_leases(&body),
                Err(e) => {
                    eprintln!("leasehold leases: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn reservations(command: ReservationCommand, client: &AdminClient) -> ExitCode {
    let (method, path, body, table) = match command {
        ReservationCommand::List { json } => ("GET", "/v1/reservations".to_string(), None, !json),
        ReservationCommand::Add { mac, ip, hostname, boot_file } => {
            let body = serde_json::json!({"ip": ip, "hostname": hostname, "boot_file": boot_file});
            ("PUT", format!("/v1/reservations/{mac}"), Some(body.to_string()), false)
        }
        ReservationCommand::Remove { mac } => ("DELETE", format!("/v1/reservations/{mac}"), None, false),
    };
    match client.request(method, &path, body.as_deref()) {
        Ok((status, body)) if (200..300).contains(&status) && table => print_reservations(&body),
        Ok((status, body)) if (200..300).contains(&status) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!("leasehold reservations: {}", client.refusal(status, &body));
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("leasehold reservations: {}: {e}", client.admin());
            ExitCode::FAILURE
        }
    }
}

fn print_reservations(body: &str) -> ExitCode {
    let rows: Vec<serde_json::Value> = match serde_json::from_str(body) {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("leasehold reservations: the admin API answered something that is not a list: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{:<18} {:<16} {:<7} {:<20} BOOT_FILE", "MAC", "IP", "SOURCE", "HOSTNAME");
    for row in &rows {
        let text = |key: &str| row.get(key).and_then(|v| v.as_str()).unwrap_or("-").to_string();
        println!(
            "{:<18} {:<16} {:<7} {:<20} {}",
            text("mac"),
            text("ip"),
            text("source"),
            text("hostname"),
            text("boot_file")
        );
    }
    println!("{} reservation(s)", rows.len());
    ExitCode::SUCCESS
}

/// Buffers this size and up get pages of their own from the kernel, given back when freed.
const MALLOC_MMAP_THRESHOLD_BYTES: i32 = 1024 * 1024;

/// glibc raises its mmap threshold (up to 32 MiB) each time a large buffer is freed, after which
/// snapshot buffers of a few MiB to 32 MiB come from the heap and stay resident once freed, as
/// fragments: about 50 B per lease at a million. A fixed threshold keeps them out of the heap.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD_BYTES);
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    tune_allocator();
    let overrides = args.overrides();
    let demo = args.config.is_none() && args.server_ip.is_none();
    let loaded = if demo {
        Config::from_toml_str_with_overrides(leasehold_config::EXAMPLE_TOML, "<embedded demo config>", &overrides)
    } else {
        Config::load(args.config.as_deref(), &overrides)
    };
    let config = match loaded {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    if demo {
        eprintln!("leasehold: no --config and no --server-ip: running the embedded demo config");
    }
    match leasehold_node::serve::run(config, args.clock_offset_ms) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leasehold serve: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Every page of GET /v1/leases, as one JSON array (pages are read one after the other).
fn fetch_leases(client: &AdminClient) -> Result<String, String> {
    const PAGE: usize = 10_000;
    let mut rows: Vec<serde_json::Value> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            None => format!("/v1/leases?limit={PAGE}"),
            Some(ip) => format!("/v1/leases?limit={PAGE}&after={ip}"),
        };
        let page: Vec<serde_json::Value> =
            match client.request("GET", &path, None).map_err(|e| format!("{}: {e}", client.admin()))? {
                (200, body) => serde_json::from_str(&body).map_err(|e| format!("not a lease list: {e}"))?,
                (status, body) => return Err(client.refusal(status, &body)),
            };
        let full = page.len() == PAGE;
        after = page.last().and_then(|row| row.get("ip")).and_then(|ip| ip.as_str()).map(str::to_string);
        rows.extend(page);
        if !full || after.is_none() {
            return serde_json::to_string(&rows).map_err(|e| e.to_string());
        }
    }
}

fn print_leases(body: &str) -> ExitCode {
    let rows: Vec<serde_json::Value> = match serde_json::from_str(body) {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("leasehold leases: admin API answered something that is not a lease list: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{:<16} {:<18} {:<9} {:<20} HOSTNAME", "IP", "MAC", "STATE", "EXPIRES_AT");
    for row in &rows {
        let text = |key: &str| row.get(key).and_then(|v| v.as_str()).unwrap_or("-").to_string();
        let expires = row.get("expires_at").and_then(|v| v.as_u64()).unwrap_or(0);
        println!("{:<16} {:<18} {:<9} {:<20} {}", text("ip"), text("mac"), text("state"), expires, text("hostname"));
    }
    println!("{} lease(s)", rows.len());
    ExitCode::SUCCESS
}
