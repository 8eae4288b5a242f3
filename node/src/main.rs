//! The `leasehold` command: `serve`, `check-config`, `leases`, `reservations`, `cluster`.

mod client;
mod make_certs;
mod migrate;
mod reload_all;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use leasehold_config::{Config, Overrides};

use client::{AdminClient, AdminClientArgs};

#[derive(Parser)]
#[command(
    name = "leasehold",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("LEASEHOLD_COMMIT"), ")"),
    about = "Highly available DHCPv4 + PXE server, replicated through Raft"
)]
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
    /// Make a running node re-read its --config file (as SIGHUP does); a file that does not check, or
    /// that changes a key only a restart can take, changes nothing. With --all, every member of the
    /// cluster (found through --admin), followers first and the leader last; or every address given.
    Reload {
        #[command(flatten)]
        client: AdminClientArgs,
        /// Reload every member too, one after the other, stopping at the first refusal (every node of
        /// a cluster must run the same lease config). Alone: the members are found through --admin's
        /// GET /v1/cluster (each reports its admin address) and reloaded followers first, the leader
        /// last. With addresses: --admin, then these, in the order given.
        #[arg(long = "all", value_name = "ADMIN_ADDR", num_args = 0..)]
        all: Option<Vec<SocketAddr>>,
    },
    /// Bring the active leases of a Kea memfile CSV or an ISC dhcpd.leases file into a running
    /// cluster, each bound through the Raft log with its expiry; conflicts are listed (exit 1).
    Import {
        #[command(flatten)]
        source: LeaseFileArgs,
        #[command(flatten)]
        client: AdminClientArgs,
    },
    /// Write the bound leases of a running cluster as a Kea memfile CSV or an ISC dhcpd.leases file.
    Export {
        #[command(flatten)]
        target: LeaseFileArgs,
        /// The `subnet_id` column of the Kea CSV (Kea matches it against its config).
        #[arg(long, default_value_t = 1)]
        kea_subnet_id: u32,
        #[command(flatten)]
        client: AdminClientArgs,
    },
    /// Print the lease table of a running node.
    Leases {
        #[command(flatten)]
        client: AdminClientArgs,
        #[command(flatten)]
        filter: LeaseFilter,
        /// Print the raw JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script: `leasehold completions bash > /etc/bash_completion.d/leasehold`.
    Completions { shell: clap_complete::Shell },
}

/// Which leases `leasehold leases` shows.
#[derive(Args, Debug, Default)]
struct LeaseFilter {
    /// Only leases in this state: bound, expired, released or declined.
    #[arg(long, value_parser = ["bound", "expired", "released", "declined"])]
    state: Option<String>,
    /// Only this client's (MAC, any case).
    #[arg(long)]
    mac: Option<String>,
    /// Only addresses of this pool (its `name`).
    #[arg(long)]
    pool: Option<String>,
}

impl LeaseFilter {
    fn keeps(&self, row: &serde_json::Value) -> bool {
        let text = |key: &str| row.get(key).and_then(|v| v.as_str()).unwrap_or("");
        self.state.as_deref().is_none_or(|s| text("state") == s)
            && self.mac.as_deref().is_none_or(|m| text("mac").eq_ignore_ascii_case(m))
            && self.pool.as_deref().is_none_or(|p| text("pool") == p)
    }
}

/// One lease file, in the format of the server it comes from or goes to.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct LeaseFileArgs {
    /// Kea's memfile lease file (kea-leases4.csv).
    #[arg(long, value_name = "FILE")]
    kea_csv: Option<PathBuf>,
    /// ISC dhcpd's lease file (dhcpd.leases).
    #[arg(long, value_name = "FILE")]
    dhcpd_leases: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Members, roles, term, commit and applied index, replication lag (GET /v1/cluster), as a table.
    Status {
        /// Print the raw JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add a node: it joins as a learner (it gets the log, does not vote) and the leader promotes it to
    /// voter once it has caught up; --voter makes it a voter at once. Start the new node with --join
    /// and the full new peer list (itself included).
    AddNode {
        id: u64,
        addr: SocketAddr,
        #[arg(long)]
        voter: bool,
    },
    /// Promote a learner to voter now, without waiting for it to catch up.
    PromoteNode { id: u64 },
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
    /// Serve the files of this directory over TFTP ([boot] root): replies that name no TFTP server
    /// then name this node.
    #[arg(long)]
    boot_root: Option<String>,
    /// Where the lease pool is kept ([store] kind): `raft` (the embedded log, the default) or `etcd`.
    #[arg(long, value_name = "KIND")]
    store: Option<String>,
    /// The etcd store's client URLs ([store] endpoints): http://IP:2379[,http://IP:2379…].
    #[arg(long, value_name = "URLS")]
    etcd_endpoints: Vec<String>,
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
            boot_root: self.boot_root.clone(),
            store: self.store.clone(),
            etcd_endpoints: self.etcd_endpoints.clone(),
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
                match leasehold_node::serve::check_store(&config, &file) {
                    Ok(Some(reachable)) => println!("{}: {reachable}", file.display()),
                    Ok(None) => {}
                    Err(problem) => {
                        eprintln!("{}: [store]: {problem}", file.display());
                        return ExitCode::FAILURE;
                    }
                }
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
            let table = matches!(command, ClusterCommand::Status { json: false });
            let (method, path, body) = match command {
                ClusterCommand::Status { .. } => ("GET", "/v1/cluster".to_string(), None),
                ClusterCommand::AddNode { id, addr, voter } => (
                    "POST",
                    "/v1/cluster/nodes".to_string(),
                    Some(serde_json::json!({"id": id, "addr": addr, "voter": voter}).to_string()),
                ),
                ClusterCommand::PromoteNode { id } => ("POST", format!("/v1/cluster/nodes/{id}/promote"), None),
                ClusterCommand::RemoveNode { id } => ("DELETE", format!("/v1/cluster/nodes/{id}"), None),
                ClusterCommand::TransferLeader { to } => (
                    "POST",
                    "/v1/cluster/transfer-leader".to_string(),
                    Some(serde_json::json!({ "to": to }).to_string()),
                ),
                ClusterCommand::MakeCerts(_) => unreachable!("handled above"),
            };
            match client.request(method, &path, body.as_deref()) {
                Ok((status, body)) if (200..300).contains(&status) && table => print_cluster(&body),
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
        Command::Reload { client, all: Some(all) } if all.is_empty() => reload_all::run(&client),
        Command::Reload { client, all } => reload(&client, &all.unwrap_or_default()),
        Command::Import { source, client } => import(&source, &client),
        Command::Export { target, kea_subnet_id, client } => export(&target, kea_subnet_id, &client),
        Command::Completions { shell } => {
            // Into a buffer first: clap_complete panics on a write error, such as a closed pipe.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "leasehold", &mut script);
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("leasehold completions: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Leases { client, filter, json } => {
            let client = match AdminClient::new(&client) {
                Ok(client) => client,
                Err(e) => {
                    eprintln!("leasehold leases: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let rows = fetch_leases(&client).and_then(|body| {
                serde_json::from_str::<Vec<serde_json::Value>>(&body)
                    .map_err(|e| format!("the admin API answered something that is not a lease list: {e}"))
            });
            match rows.map(|rows| rows.into_iter().filter(|row| filter.keeps(row)).collect::<Vec<_>>()) {
                Ok(rows) if json => {
                    println!("{}", serde_json::Value::Array(rows));
                    ExitCode::SUCCESS
                }
                Ok(rows) => print_leases(&rows, unix_now()),
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
    let source = leasehold_node::reload::ConfigSource { file: args.config.clone(), overrides };
    match leasehold_node::serve::run(config, source, args.clock_offset_ms) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leasehold serve: {e}");
            ExitCode::FAILURE
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `leasehold import`: read the file, send its active leases in requests of at most
/// `MAX_IMPORT_LEASES`, print what was imported and every refusal.
fn import(source: &LeaseFileArgs, args: &AdminClientArgs) -> ExitCode {
    use leasehold_node::engine::import::MAX_IMPORT_LEASES;
    let (path, parse): (&PathBuf, migrate::Parser) = match (&source.kea_csv, &source.dhcpd_leases) {
        (Some(path), _) => (path, migrate::parse_kea_csv),
        (None, Some(path)) => (path, migrate::parse_dhcpd_leases),
        (None, None) => unreachable!("clap requires one of --kea-csv, --dhcpd-leases"),
    };
    let parsed =
        match std::fs::read_to_string(path).map_err(|e| e.to_string()).and_then(|text| parse(&text, unix_now())) {
            Ok(parsed) => parsed,
            Err(e) => {
                eprintln!("leasehold import: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        };
    println!(
        "{}: {} active lease(s); {} address(es) whose last record is not an active lease, skipped",
        path.display(),
        parsed.active.len(),
        parsed.inactive
    );
    let client = match AdminClient::new(args) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("leasehold import: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut imported, mut refused) = (0u64, 0u64);
    for chunk in parsed.active.chunks(MAX_IMPORT_LEASES) {
        let body = serde_json::to_string(chunk).unwrap_or_default();
        let report: serde_json::Value = match client.request("POST", "/v1/leases/import", Some(&body)) {
            Ok((200, text)) => serde_json::from_str(&text).unwrap_or_default(),
            Ok((status, text)) => {
                eprintln!("leasehold import: {}", client.refusal(status, &text));
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("leasehold import: {}: {e}", client.admin());
                return ExitCode::FAILURE;
            }
        };
        imported += report["imported"].as_u64().unwrap_or(0);
        for refusal in report["refused"].as_array().into_iter().flatten() {
            refused += 1;
            let text = |key: &str| refusal[key].as_str().unwrap_or("-").to_string();
            println!("refused {} {}: {}", text("ip"), text("mac"), text("reason"));
        }
    }
    println!("imported {imported} lease(s), refused {refused}");
    if refused > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `leasehold export`: every bound lease of the node, in the file format asked for.
fn export(target: &LeaseFileArgs, kea_subnet_id: u32, args: &AdminClientArgs) -> ExitCode {
    let rows = match AdminClient::new(args).and_then(|client| fetch_leases(&client)) {
        Ok(body) => serde_json::from_str::<Vec<serde_json::Value>>(&body).unwrap_or_default(),
        Err(e) => {
            eprintln!("leasehold export: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now = unix_now();
    let bound: Vec<migrate::Bound> = rows
        .iter()
        .filter(|row| row["state"] == "bound" && row["expires_at"].as_u64().is_some_and(|e| e > now))
        .map(|row| {
            let text = |key: &str| row[key].as_str().map(str::to_string);
            migrate::Bound {
                ip: text("ip").unwrap_or_default(),
                mac: text("mac").unwrap_or_default(),
                client_id: text("client_id"),
                hostname: text("hostname"),
                expires_at: row["expires_at"].as_u64().unwrap_or(0),
            }
        })
        .collect();
    let (path, text) = match (&target.kea_csv, &target.dhcpd_leases) {
        (Some(path), _) => (path, migrate::write_kea_csv(&bound, kea_subnet_id, now)),
        (None, Some(path)) => (path, migrate::write_dhcpd_leases(&bound, now)),
        (None, None) => unreachable!("clap requires one of --kea-csv, --dhcpd-leases"),
    };
    if let Err(e) = std::fs::write(path, text) {
        eprintln!("leasehold export: {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    println!("{}: {} bound lease(s)", path.display(), bound.len());
    ExitCode::SUCCESS
}

/// `leasehold reload`: POST /v1/config/reload to --admin, then to each --all address in order.
fn reload(args: &AdminClientArgs, all: &[SocketAddr]) -> ExitCode {
    let mut targets = vec![args.admin];
    targets.extend(all.iter().copied().filter(|a| *a != args.admin));
    for admin in targets {
        let client = match AdminClient::new(&AdminClientArgs { admin, ..args.clone() }) {
            Ok(client) => client,
            Err(e) => {
                eprintln!("leasehold reload: {e}");
                return ExitCode::FAILURE;
            }
        };
        match client.request("POST", "/v1/config/reload", None) {
            Ok((200, body)) => println!("{admin}: reloaded {}", reload_all::describe(&body)),
            Ok((status, body)) => {
                eprintln!("leasehold reload: {}", client.refusal(status, &body));
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("leasehold reload: {admin}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
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

/// "in 52m", "expired 3m ago": how far `at` is from `now` (Unix seconds), in the largest unit.
fn human_time(at: u64, now: u64, past: &str) -> String {
    let span = |secs: u64| match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    };
    if at >= now {
        format!("in {}", span(at - now))
    } else {
        format!("{past} {} ago", span(now - at))
    }
}

fn print_leases(rows: &[serde_json::Value], now: u64) -> ExitCode {
    println!("{:<16} {:<18} {:<9} {:<22} {:<12} HOSTNAME", "IP", "MAC", "STATE", "WHEN", "POOL");
    for row in rows {
        let text = |key: &str| row.get(key).and_then(|v| v.as_str()).unwrap_or("-").to_string();
        let at = row.get("expires_at").and_then(|v| v.as_u64()).unwrap_or(0);
        let when = match text("state").as_str() {
            "bound" => human_time(at, now, "ended"),
            "expired" => human_time(at, now, "expired"),
            "released" => human_time(at, now, "released"),
            "declined" => format!("probation {}", human_time(at, now, "ended")),
            _ => at.to_string(),
        };
        println!(
            "{:<16} {:<18} {:<9} {:<22} {:<12} {}",
            text("ip"),
            text("mac"),
            text("state"),
            when,
            text("pool"),
            text("hostname")
        );
    }
    println!("{} lease(s)", rows.len());
    ExitCode::SUCCESS
}

/// `leasehold cluster status` as a table: one row per member, as this node sees them.
fn print_cluster(body: &str) -> ExitCode {
    let view: serde_json::Value = match serde_json::from_str(body) {
        Ok(view) => view,
        Err(e) => {
            eprintln!("leasehold cluster: the admin API answered something that is not a cluster view: {e}");
            return ExitCode::FAILURE;
        }
    };
    let number = |v: &serde_json::Value, key: &str| v.get(key).and_then(|n| n.as_u64()).map(|n| n.to_string());
    let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".into());
    let text_of = |v: &serde_json::Value, key: &str| v.get(key).and_then(|d| d.as_str()).unwrap_or("-").to_string();
    println!(
        "node {} sees leader {}, term {}, commit {}, applied {}, config digest {} (the log's: {})",
        or_dash(number(&view, "node_id")),
        or_dash(number(&view, "leader_id")),
        or_dash(number(&view, "term")),
        or_dash(number(&view, "commit_index")),
        or_dash(number(&view, "applied_index")),
        text_of(&view, "config_digest"),
        text_of(&view, "cluster_config_digest"),
    );
    if view.get("config_mismatch").and_then(|m| m.as_bool()) == Some(true) {
        println!(
            "warning: this node's config differs from the one the cluster's leader runs (reload it, or fix the file)"
        );
    }
    println!(
        "{:<4} {:<9} {:<6} {:<10} {:<10} {:<8} {:<10} {:<18} {:<18} {:<21} ADDRESS",
        "ID", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG", "REACHABLE", "CONFIG", "BOOT ROOT", "ADMIN"
    );
    for member in view.get("members").and_then(|m| m.as_array()).into_iter().flatten() {
        let text = |key: &str| member.get(key).and_then(|v| v.as_str()).unwrap_or("-").to_string();
        let reachable = match member.get("reachable").and_then(|r| r.as_bool()) {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        };
        // A digest the API flags is marked with `!`.
        let marked = |digest: &str, mismatch: &str| {
            let mut shown = text(digest);
            if member.get(mismatch).and_then(|m| m.as_bool()) == Some(true) {
                shown.push_str(" !");
            }
            shown
        };
        // A member whose config digest differs from the log's.
        let config = marked("config_digest", "config_mismatch");
        // A member whose boot files differ from the leader's is marked (known on the leader only).
        let boot_root = marked("boot_root_digest", "boot_root_mismatch");
        println!(
            "{:<4} {:<9} {:<6} {:<10} {:<10} {:<8} {:<10} {:<18} {:<18} {:<21} {}",
            or_dash(number(member, "id")),
            text("role"),
            or_dash(number(member, "term")),
            or_dash(number(member, "commit_index")),
            or_dash(number(member, "applied_index")),
            or_dash(number(member, "lag_entries")),
            reachable,
            config,
            boot_root,
            text("admin_addr"),
            text("address")
        );
    }
    ExitCode::SUCCESS
}
