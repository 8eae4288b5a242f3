//! A bounded chaos run as part of `cargo test` (needs root, like the other namespace tests): the chaos
//! driver (`tests/chaos/driver.rs`, also the `chaos` example behind `scripts/chaos/run.sh`) runs a
//! 3-node cluster under DHCP load for `CHAOS_SECONDS` (default 100) with every kind of fault at least
//! once, on a fixed seed so that a failure replays: kill -9, SIGSTOP, partitions of a follower and of
//! the leader, loss and delay on the peer links, a wiped data directory rejoined by membership change,
//! a clock step. Its checker must find no address bound to two clients, no ACKed lease lost, no NAK
//! of a live lease, and the tables must converge after every heal.
//!
//! `CHAOS_SEED` overrides the seed (decimal or 0x-hex). The driver's pure parts (the generator, the
//! ledger, the table checks, the netlink messages) have unit tests that run without root.

mod netns_support;

// The driver is tests/chaos/driver.rs with its modules in tests/chaos/driver/ (the example's layout).
// The command-line parts (interrupt handler, fault-kind names) are used only by the example.
#[path = "chaos"]
#[allow(dead_code)]
mod chaos_dir {
    pub mod driver;
}

use chaos_dir::driver;

use std::time::Duration;

/// The seed of the CI run; any other replays with CHAOS_SEED.
const CI_SEED: u64 = 0x1ea5_e401;

#[test]
fn chaos_bounded_run_finds_no_violation() {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .map(|s| driver::parse_seed(&s).unwrap_or_else(|| panic!("CHAOS_SEED={s} is not a number")))
        .unwrap_or(CI_SEED);
    let seconds: u64 = std::env::var("CHAOS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(100).clamp(30, 600);
    println!("chaos: seed {} for {seconds} s", driver::format_seed(seed));
    let report = driver::run(&driver::Options::new(Duration::from_secs(seconds), seed));
    println!("{report}");
    assert!(
        report.passed(),
        "the chaos run with seed {} found {} violation(s) (see the report above); replay: {}",
        driver::format_seed(seed),
        report.violations.len(),
        report.replay_command()
    );
}
