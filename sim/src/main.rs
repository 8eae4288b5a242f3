//! `leasehold-sim`: run the deterministic cluster simulation.
//!
//! One seed, verbosely (the event trace on stdout):  leasehold-sim --seed 42
//! Many seeds, a summary line each failure:          leasehold-sim --seeds 500
//!                                                    leasehold-sim --from 1000 --count 200 --jobs 2
//! Without `--nodes`, even seeds run three nodes and odd seeds five (as the integration test does).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use clap::Parser;
use leasehold_sim::{default_nodes, run, Report, SimConfig, DEFAULT_MAX_CLIENTS, DEFAULT_STEPS};

#[derive(Debug, Parser)]
#[command(name = "leasehold-sim", about = "Deterministic simulation of a Leasehold cluster")]
struct Args {
    /// Run this one seed and print its event trace.
    #[arg(long, conflicts_with_all = ["seeds", "from"])]
    seed: Option<u64>,
    /// Run seeds 0..N.
    #[arg(long)]
    seeds: Option<u64>,
    /// Run seeds FROM..FROM+COUNT.
    #[arg(long, requires = "count")]
    from: Option<u64>,
    #[arg(long)]
    count: Option<u64>,
    /// Cluster size (1 to 5); default: 3 for even seeds, 5 for odd ones.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=5))]
    nodes: Option<u64>,
    /// Events in the chaos phase.
    #[arg(long, default_value_t = DEFAULT_STEPS)]
    steps: u64,
    /// DHCP clients; default: 20 to --max-clients, from the seed.
    #[arg(long)]
    clients: Option<usize>,
    #[arg(long, default_value_t = DEFAULT_MAX_CLIENTS)]
    max_clients: usize,
    /// With --seed: print only the summary, not the trace.
    #[arg(long)]
    quiet: bool,
    /// Also re-check every invariant from scratch after every step (slow).
    #[arg(long)]
    full_check: bool,
    /// Some crashes also lose the node's disk (restart with an empty log, DESIGN rule 6).
    #[arg(long)]
    wipe_disks: bool,
    /// Threads for many seeds; default: the available cores.
    #[arg(long)]
    jobs: Option<usize>,
}

impl Args {
    fn config(&self, seed: u64) -> SimConfig {
        SimConfig {
            seed,
            nodes: self.nodes.map_or(default_nodes(seed), |n| n as usize),
            clients: self.clients,
            max_clients: self.max_clients,
            steps: self.steps,
            verbose: false,
            full_check: self.full_check,
            wipe_disks: self.wipe_disks,
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(seed) = args.seed {
        let config = SimConfig { verbose: !args.quiet, ..args.config(seed) };
        return match run(&config) {
            Ok(report) => {
                println!("ok: {report}");
                ExitCode::SUCCESS
            }
            Err(failure) => {
                eprintln!("{failure}");
                ExitCode::FAILURE
            }
        };
    }
    let (from, count) = match (args.seeds, args.from, args.count) {
        (Some(n), None, _) => (0, n),
        (None, Some(from), Some(count)) => (from, count),
        _ => (0, 100),
    };
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let started = Instant::now();
    let next = AtomicU64::new(from);
    let reports: Mutex<Vec<Report>> = Mutex::new(Vec::new());
    let failures: Mutex<Vec<u64>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= from + count {
                    break;
                }
                let config = args.config(seed);
                match std::panic::catch_unwind(|| run(&config)) {
                    Ok(Ok(report)) => reports.lock().expect("no panics while holding the lock").push(report),
                    Ok(Err(failure)) => {
                        eprintln!("{failure}");
                        failures.lock().expect("no panics while holding the lock").push(seed);
                    }
                    Err(_) => {
                        eprintln!("seed {seed} PANICKED; replay: {}", config.replay_command());
                        failures.lock().expect("no panics while holding the lock").push(seed);
                    }
                }
            });
        }
    });
    let reports = reports.into_inner().expect("threads joined");
    let mut failures = failures.into_inner().expect("threads joined");
    failures.sort_unstable();
    let sum = |f: fn(&Report) -> u64| reports.iter().map(f).sum::<u64>();
    println!(
        "{} seeds passed, {} failed {failures:?} in {:.1}s: {} steps, {:.0}s virtual, {} ACKs, {} faults \
         ({} crashes, {} of them losing the disk, {} before a leader's own write, {} partitions), {} snapshots restored, {} addresses passed between clients, {} NAKs, \
         {} proposals refused, {} client datagrams answered by two nodes; relay: {} clients behind it, {} replies relayed, \
         {} direct renewals ACKed; reservations: {} in configs, {} ACKs to reserved clients, {} made and {} ended over \
         the API ({} applied, {} refused); membership: {} changes committed ({} added, {} removed), {} asked \
         ({} refused by the quorum guard, {} by a follower), {} nodes stopped, {} joined empty, {} with their data",
        reports.len(),
        failures.len(),
        started.elapsed().as_secs_f64(),
        sum(|r| r.steps),
        sum(|r| r.virtual_us) as f64 / 1e6,
        sum(|r| r.acks),
        sum(Report::faults),
        sum(|r| r.crashes),
        sum(|r| r.disks_wiped),
        sum(|r| r.crashes_before_write),
        sum(|r| r.partitions),
        sum(|r| r.snapshots_restored),
        sum(|r| r.reassigned),
        sum(|r| r.naks),
        sum(|r| r.refused_proposals),
        sum(|r| r.answered_twice),
        sum(|r| r.relayed_clients),
        sum(|r| r.relayed_replies),
        sum(|r| r.relayed_renewals),
        sum(|r| r.config_reservations),
        sum(|r| r.reserved_acks),
        sum(|r| r.reservations_asked),
        sum(|r| r.unreservations_asked),
        sum(|r| r.admin_done),
        sum(|r| r.reservations_refused),
        sum(Report::membership_changes),
        sum(|r| r.members_added),
        sum(|r| r.members_removed),
        sum(|r| r.additions_asked + r.removals_asked),
        sum(|r| r.membership_refused),
        sum(|r| r.membership_not_leader),
        sum(|r| r.decommissioned),
        sum(|r| r.joins_empty),
        sum(|r| r.joins_kept),
    );
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
