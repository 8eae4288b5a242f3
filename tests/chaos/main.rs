//! chaos: a 3-node Leasehold cluster in network namespaces under DHCP load, with seeded faults and an
//! independent checker (see `driver.rs`). Needs root. `scripts/chaos/run.sh` builds and runs it.
//!
//!   chaos [--minutes N | --seconds N] [--seed S] [--store raft|etcd] [--clients N] [--churn N]
//!         [--lease-time SECS] [--perfdhcp-rate R] [--wipe rejoin|plain] [--faults kill,freeze,...]
//!         [--log-level L] [--keep]
//!
//! `--store etcd`: the nodes keep the pool in three etcd members started in the server namespaces
//! (needs etcd and etcdctl); the fault kinds default to those valid there.
//!
//! Exit status: 0 when the checker found nothing, 1 on any violation (the seed to replay is printed),
//! 2 on a usage error.

#[path = "../netns_support/mod.rs"]
mod netns_support;

mod driver;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use driver::faults::FaultKind;
use driver::{format_seed, parse_seed, Options, Store, WipeMode};

fn usage(problem: &str) -> ! {
    eprintln!("chaos: {problem}");
    eprintln!(
        "usage: chaos [--minutes N | --seconds N] [--seed S] [--store raft|etcd] [--clients N] [--churn N] \
         [--lease-time SECS] [--perfdhcp-rate R] [--wipe rejoin|plain] [--faults KINDS] [--log-level L] [--keep]\n\
         fault kinds with --store raft (the default): {}\nfault kinds with --store etcd: {}",
        FaultKind::for_store(Store::Raft).into_iter().map(FaultKind::label).collect::<Vec<_>>().join(","),
        FaultKind::for_store(Store::Etcd).into_iter().map(FaultKind::label).collect::<Vec<_>>().join(",")
    );
    std::process::exit(2);
}

fn parse_args() -> Options {
    let mut options = Options::new(Duration::from_secs(120), 0);
    let mut seed = None;
    let mut store = Store::Raft;
    let mut kinds: Option<Vec<FaultKind>> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--keep" {
            options.keep = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            usage("help");
        }
        let value = args.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let number = |max: u64| -> u64 {
            value
                .parse::<u64>()
                .ok()
                .filter(|n| *n <= max)
                .unwrap_or_else(|| usage(&format!("{flag}: expected a number up to {max}, got {value}")))
        };
        match flag.as_str() {
            "--minutes" => options.duration = Duration::from_secs(60 * number(24 * 60).max(1)),
            "--seconds" => options.duration = Duration::from_secs(number(24 * 3600).max(20)),
            "--seed" => seed = Some(parse_seed(&value).unwrap_or_else(|| usage(&format!("bad seed {value}")))),
            "--clients" => options.clients = number(500) as usize,
            "--churn" => options.churn = number(100) as usize,
            "--lease-time" => options.lease_secs = number(86_400).max(8) as u32,
            "--perfdhcp-rate" => options.perfdhcp_rate = number(1000) as u32,
            "--wipe" => {
                options.wipe_mode = match value.as_str() {
                    "rejoin" => WipeMode::Rejoin,
                    "plain" => WipeMode::Plain,
                    _ => usage("--wipe is rejoin or plain"),
                }
            }
            "--store" => {
                store = Store::parse(&value).unwrap_or_else(|| usage(&format!("--store is raft or etcd, not {value}")))
            }
            "--faults" => {
                kinds = Some(
                    value
                        .split(',')
                        .map(|k| {
                            FaultKind::parse(k.trim()).unwrap_or_else(|| usage(&format!("unknown fault kind {k}")))
                        })
                        .collect(),
                )
            }
            "--log-level" => options.log_level = value.clone(),
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    let mut options = options.with_store(store);
    if let Some(kinds) = kinds {
        options.kinds = kinds;
    }
    if let Some(kind) = options.kinds.iter().find(|k| !k.valid_in(options.store)) {
        usage(&format!("fault kind {} means nothing with --store {}", kind.label(), options.store.label()));
    }
    options.seed = seed.unwrap_or_else(|| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        now.as_secs() ^ u64::from(now.subsec_nanos()) << 20
    });
    options
}

/// `chaos --scenario NAME`: a directed reproduction (see `driver/scenario.rs`); exit 1 if it failed
/// (the problem showed, or the held-up command was never refused at apply).
fn scenario(name: &str) -> ! {
    let Some(ending) = driver::scenario::by_name(name) else {
        usage(&format!("unknown scenario {name} (known: {})", driver::scenario::NAMES.join(", ")))
    };
    println!("scenario {name}:");
    for line in &ending.transcript {
        println!("  {line}");
    }
    match &ending.failure {
        None => println!("passed"),
        Some(failure) => println!("FAILED: {failure}"),
    }
    std::process::exit(i32::from(!ending.passed()));
}

fn main() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--scenario") {
        scenario(&args.next().unwrap_or_else(|| usage("--scenario needs a name")));
    }
    let options = parse_args();
    eprintln!("chaos: seed {} (replay with --seed {})", format_seed(options.seed), format_seed(options.seed));
    driver::install_interrupt_handler();
    let report = driver::run(&options);
    println!("{report}");
    std::process::exit(if report.passed() { 0 } else { 1 });
}
