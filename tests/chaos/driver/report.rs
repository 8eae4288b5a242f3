//! The report of one chaos run: what was injected, what the clients attempted and got, what the checker
//! found, and how to replay the run.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::faults::{FaultKind, FaultRecord};
use super::ledger::{Exchange, GapTracker, LoadStats};
use super::{count_by_kind, format_seed, Options, Run, Store, Violation, ViolationKind};

#[derive(Debug, Clone)]
pub struct Report {
    pub options: Options,
    pub elapsed: Duration,
    pub faults: BTreeMap<FaultKind, u32>,
    pub rounds: Vec<String>,
    pub stats: LoadStats,
    pub perfdhcp: Option<(Option<u64>, Option<u64>)>,
    pub checkpoints: u32,
    pub slowest_convergence: Duration,
    pub slowest_recovery: Duration,
    pub majority_gap: (Duration, String),
    pub any_gap: (Duration, String),
    pub longest_dora_of: String,
    pub violations: Vec<Violation>,
    pub max_abs_offset_ms: u64,
    pub notes: Vec<String>,
    pub dir: PathBuf,
}

/// "REQUEST-ACK" sent and received from perfdhcp's final statistics.
fn perfdhcp_request_ack(text: &str) -> (Option<u64>, Option<u64>) {
    let mut in_section = false;
    let (mut sent, mut received) = (None, None);
    for line in text.lines().map(str::trim) {
        if line.starts_with("***") {
            in_section = line.contains("REQUEST-ACK");
            continue;
        }
        let (Some((key, value)), true) = (line.split_once(':'), in_section) else { continue };
        let value = value.trim().parse().ok();
        match key.trim() {
            "sent packets" => sent = value,
            "received packets" => received = value,
            _ => {}
        }
    }
    (sent, received)
}

/// What was going on during `window`: the faults that overlapped it.
fn attribute(gap: &GapTracker, faults: &[FaultRecord], started: Instant) -> (Duration, String) {
    (gap.longest, during(gap.longest_window, faults, started))
}

/// "from T s: the faults that overlapped the window" (or that none did).
fn during(window: Option<(Instant, Instant)>, faults: &[FaultRecord], started: Instant) -> String {
    let Some((from, to)) = window else { return "no ACK pairs".into() };
    let during: Vec<String> = faults
        .iter()
        .filter(|f| {
            let end = f.healed.unwrap_or(f.injected) + f.recovered_after.unwrap_or_default();
            f.injected <= to && end >= from
        })
        .map(|f| format!("round {} {}", f.round, f.describe()))
        .collect();
    let at = from.saturating_duration_since(started).as_secs_f64();
    let what = if during.is_empty() { "no fault active".to_owned() } else { during.join(", ") };
    format!("from {at:.1} s: {what}")
}

impl Report {
    pub fn build(run: &Run, perfdhcp: Option<&str>, dir: &Path) -> Report {
        let ledger = run.ledger();
        let mut violations = run.violations.clone();
        violations.extend(ledger.violations.iter().cloned());
        violations.sort_by(|a, b| a.at_secs.total_cmp(&b.at_secs));
        Report {
            options: run.options.clone(),
            elapsed: run.started.elapsed(),
            faults: count_by_kind(&run.faults),
            rounds: run
                .faults
                .iter()
                .map(|f| {
                    format!(
                        "round {:>2} at {:6.1} s: {} — recovered {}, converged {}{}",
                        f.round,
                        f.injected.saturating_duration_since(run.started).as_secs_f64(),
                        f.describe(),
                        f.recovered_after.map_or("NO".into(), |d| format!("{:.1} s", d.as_secs_f64())),
                        f.converged_after.map_or("NO".into(), |d| format!("{:.1} s", d.as_secs_f64())),
                        if f.note.is_empty() { String::new() } else { format!(" ({})", f.note) }
                    )
                })
                .collect(),
            stats: ledger.stats.clone(),
            perfdhcp: perfdhcp.map(perfdhcp_request_ack),
            checkpoints: run.checkpoints,
            slowest_convergence: run.slowest_convergence,
            slowest_recovery: run.slowest_recovery,
            majority_gap: attribute(&ledger.majority_gap, &run.faults, run.started),
            any_gap: attribute(&ledger.any_gap, &run.faults, run.started),
            longest_dora_of: match ledger.stats.longest_dora_of {
                Some((mac, at)) => {
                    let window = Some((at - ledger.stats.longest_dora, at));
                    format!("{}, {}", leasehold_tests::format_mac(mac), during(window, &run.faults, run.started))
                }
                None => "none".into(),
            },
            violations,
            max_abs_offset_ms: run.cluster.max_abs_offset_ms,
            notes: run.notes.clone(),
            dir: dir.to_owned(),
        }
    }

    pub fn count(&self, kind: ViolationKind) -> usize {
        self.violations.iter().filter(|v| v.kind == kind).count()
    }

    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn replay_command(&self) -> String {
        let minutes = self.options.duration.as_secs().div_ceil(60).max(1);
        let store = match self.options.store {
            Store::Raft => "",
            Store::Etcd => " --store etcd",
        };
        format!("sudo scripts/chaos/run.sh{store} --minutes {minutes} --seed {}", format_seed(self.options.seed))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        writeln!(f, "== leasehold chaos run ==")?;
        writeln!(
            f,
            "seed {} | store {} | {:.0} s planned, {:.0} s run | 3 nodes | lease {} s | {} clients + {} churning | perfdhcp {}/s | wipe {:?}",
            format_seed(o.seed),
            o.store.label(),
            o.duration.as_secs_f64(),
            self.elapsed.as_secs_f64(),
            o.lease_secs,
            o.clients,
            o.churn,
            o.perfdhcp_rate,
            o.wipe_mode
        )?;
        writeln!(f, "\nfaults injected                                      count")?;
        let mut total = 0;
        for kind in FaultKind::for_store(o.store) {
            let n = self.faults.get(&kind).copied().unwrap_or(0);
            total += n;
            writeln!(f, "  {:<50} {n:>5}", format!("{} ({})", kind.label(), kind.describe()))?;
        }
        writeln!(f, "  {:<50} {total:>5}", "total")?;
        writeln!(f, "\nDHCP exchanges (chaos clients)   attempted  completed")?;
        for kind in Exchange::ALL {
            let a = self.stats.attempted.get(&kind).copied().unwrap_or(0);
            let c = self.stats.completed.get(&kind).copied().unwrap_or(0);
            writeln!(f, "  {:<30} {a:>9} {c:>10}", kind.label())?;
        }
        let attempted: u64 = self.stats.attempted.values().sum();
        let completed: u64 = self.stats.completed.values().sum();
        writeln!(f, "  {:<30} {attempted:>9} {completed:>10}", "all")?;
        writeln!(
            f,
            "  releases sent {}, NAKs {}, leases expired while extending {}, client MACs {}, other replies {}",
            self.stats.releases,
            self.stats.naks,
            self.stats.expired_while_extending,
            self.stats.macs,
            self.stats.other_replies
        )?;
        match self.perfdhcp {
            Some((sent, received)) => writeln!(
                f,
                "  perfdhcp REQUEST-ACK: {} sent, {} ACKed (its own clients; checked only through the tables)",
                sent.map_or("?".into(), |n| n.to_string()),
                received.map_or("?".into(), |n| n.to_string())
            )?,
            None => writeln!(f, "  perfdhcp: not run")?,
        }
        writeln!(f, "\nchecks")?;
        writeln!(f, "  checkpoints (after each heal + at the end)  {}", self.checkpoints)?;
        writeln!(f, "  slowest recovery to one leader             {:.1} s", self.slowest_recovery.as_secs_f64())?;
        writeln!(f, "  slowest table convergence                  {:.1} s", self.slowest_convergence.as_secs_f64())?;
        writeln!(f, "  duplicates (must be 0)                     {}", self.count(ViolationKind::Duplicate))?;
        writeln!(f, "  lost ACKed leases (must be 0)              {}", self.count(ViolationKind::LostLease))?;
        writeln!(f, "  NAKs of live leases (must be 0)            {}", self.count(ViolationKind::NakOfLiveLease))?;
        for kind in [
            ViolationKind::NoConvergence,
            ViolationKind::NoRecovery,
            ViolationKind::NodeExited,
            ViolationKind::NodePanicked,
            ViolationKind::FaultFailed,
        ] {
            writeln!(f, "  {:<42} {}", format!("{} (must be 0)", kind.label()), self.count(kind))?;
        }
        writeln!(
            f,
            "  longest window without an ACK from the majority side   {:.2} s ({})",
            self.majority_gap.0.as_secs_f64(),
            self.majority_gap.1
        )?;
        writeln!(
            f,
            "  longest window without any ACK                         {:.2} s ({})",
            self.any_gap.0.as_secs_f64(),
            self.any_gap.1
        )?;
        writeln!(
            f,
            "  longest single DORA (first DISCOVER to ACK)            {:.2} s ({})",
            self.stats.longest_dora.as_secs_f64(),
            self.longest_dora_of
        )?;
        writeln!(f, "  largest clock offset used                              {} ms", self.max_abs_offset_ms)?;
        writeln!(f, "\nrounds")?;
        for round in &self.rounds {
            writeln!(f, "  {round}")?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        if self.passed() {
            writeln!(f, "\nRESULT: PASS (seed {})", format_seed(o.seed))?;
        } else {
            writeln!(f, "\nviolations ({}; the first 30):", self.violations.len())?;
            for v in self.violations.iter().take(30) {
                let detail: String = v.detail.chars().take(3000).collect();
                writeln!(f, "  [{:7.1} s] {}: {detail}", v.at_secs, v.kind.label())?;
            }
            writeln!(f, "\nRESULT: FAIL (seed {}); logs in {}", format_seed(o.seed), self.dir.display())?;
            writeln!(f, "replay: {}", self.replay_command())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfdhcp_request_ack_counts_are_read_from_their_section() {
        let text = "***Rate statistics***\nsent packets: 1\n***Statistics for: DISCOVER-OFFER***\nsent packets: 10\n\
                    received packets: 9\n***Statistics for: REQUEST-ACK***\nsent packets: 9\nreceived packets: 8\n";
        assert_eq!(perfdhcp_request_ack(text), (Some(9), Some(8)));
    }
}
