//! Leasehold's deterministic cluster simulation (DESIGN: "How it is tested").
//!
//! N nodes — each a `Replica<MemLog>` driving raft-rs and the node's sans-IO DHCP `Engine`, run by
//! the same dispatch code as the raft and lease actors — and a crowd of simulated DHCP clients share
//! one virtual clock and one seeded fake network with loss, duplication, reordering and partitions. Nodes crash and restart from their durable log, clocks
//! are skewed, snapshots compact the log and lagging followers catch up from the leader's snapshot.
//! Some clients sit behind a relay (giaddr, option 82, a subnet of their own), some have
//! reservations (in the config file, and made and ended over the API during the run), and the
//! operator removes, adds back and adds members through the admin API's paths.
//! After every step the checkers (`check`) look for an address held by two clients, an ACKed lease
//! lost, replicas that disagree at the same index, or a broken table, and the world checks replies
//! (their path, pool and reservations) and the committed configurations. A run is a pure function of
//! its seed: the same seed replays the same events (`Report::trace_digest`).
//!
//! - `rng`: the seeded generator (the only randomness).
//! - `net`: partitions, client links and per-datagram fates.
//! - `client`: the RFC 2131 client state machine.
//! - `check`: the invariants.
//! - `trace`: event notes, the failure trace and the run digest.
//! - `world`: `run` and the event loop (`world/mod.rs`), and beside it, one concern each: `plan` (what
//!   the seed decides), `nodes` (start, crash, restart, the mail between a node's actors, and
//!   running them through the cluster's `driver` and the node's `state_machine`, the code the raft
//!   and lease actors run), `network` (peer and client datagrams, and the relay), `clients` (client
//!   effects), `faults` (the fault schedule), `operator` (membership changes and reservations),
//!   `checks` (the checks beyond `check`) and `report`.
//!
//! raft-rs draws election timeouts from a thread RNG; each node's timeout is pinned from the seed
//! (`ReplicaConfig::election_timeout_ticks`), which makes that draw always return the same value.
//! raft-rs's other maps hash with FxHash (no random state), so nothing else in it varies per run.

pub mod check;
pub mod client;
pub mod net;
pub mod rng;
pub mod trace;
pub mod world;

pub use world::{default_nodes, run, Failure, Report, SimConfig, DEFAULT_MAX_CLIENTS, DEFAULT_STEPS, MIN_CLIENTS};
