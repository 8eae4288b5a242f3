//! Fuzz target: the config file, from text to a checked `Config` (raw serde → checks), and what a
//! node does with one first. Any text must end in `Ok` or in errors that each say what is wrong,
//! never a panic; a config that passes must keep the promises the rest of the code relies on (its
//! durations convert to the units the engine counts in, its indexes point at what exists), and an
//! engine started on it must serve a client through DISCOVER, REQUEST, commit, DECLINE and
//! housekeeping, at today's clock and far in the future.
#![no_main]

use std::net::Ipv4Addr;
use std::sync::Arc;

use leasehold_cluster::{CommittedEntry, LeaseTable};
use leasehold_config::Config;
use leasehold_node::engine::{Action, Arrival, Engine};
use leasehold_node::wire::{self, ClientMessageType, Request};
use libfuzzer_sys::fuzz_target;

/// 2023-11-14, in microseconds, and a clock 200 years later.
const NOW_US: [u64; 2] = [1_700_000_000_000_000, 8_000_000_000_000_000];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::from_toml_str(text, "fuzz.toml") {
        Err(errors) => {
            assert!(!errors.is_empty(), "an error result without errors");
            for error in errors.iter() {
                assert!(!error.problem.is_empty(), "an error that says nothing: {error:?}");
                let _ = error.to_string();
            }
        }
        Ok(config) => {
            check_promises(&config);
            for now_us in NOW_US {
                serve_one_client(&config, now_us);
            }
        }
    }
});

/// What a checked config guarantees the code that uses it.
fn check_promises(config: &Config) {
    assert!(!config.interfaces.is_empty(), "no interface");
    assert!(config.is_own_address(config.server_ip), "server_ip is not an interface's");
    for pool in &config.pools {
        assert!(pool.range_start <= pool.range_end, "pool {} range reversed", pool.name);
        assert!(pool.subnet.contains(pool.range_start) && pool.subnet.contains(pool.range_end));
        assert!(!pool.contains(config.server_ip), "pool {} holds the server's own address", pool.name);
    }
    for class in &config.classes {
        let pools = class.pools.iter().flatten().chain(&class.forbid_pools);
        for &index in pools {
            assert!(index < config.pools.len(), "class {} names pool {index} of {}", class.name, config.pools.len());
        }
    }
    let limits = &config.limits;
    assert!(limits.max_frame_bytes >= 576, "max_frame_bytes {} under RFC 2131's 576", limits.max_frame_bytes);
    // The code counts seconds in milliseconds and milliseconds in microseconds (`Engine`, `serve`).
    for (key, value) in [
        ("expiry_grace_secs", limits.expiry_grace_secs),
        ("decline_probation_secs", limits.decline_probation_secs),
        ("record_retention_secs", limits.record_retention_secs),
        ("offer_hold_ms", limits.offer_hold_ms),
        ("proposal_timeout_ms", limits.proposal_timeout_ms),
    ] {
        assert!(value.checked_mul(1000).is_some(), "limits.{key} = {value} overflows in the next smaller unit");
    }
}

/// A client's first minutes against an engine on `config`: every step may be refused, none may
/// panic, and the engine's invariants hold after each.
fn serve_one_client(config: &Config, now_us: u64) {
    let limits = &config.limits;
    let table = LeaseTable::new(limits.expiry_grace_secs.saturating_mul(1000), limits.max_leases);
    let mut engine = Engine::new(Arc::new(config.clone()), table, 1, 1);
    engine.set_leader(true);
    let mut index = 0;
    let mut commit = |engine: &mut Engine, action: Action, now_us: u64| {
        if let Action::Propose(proposal) = action {
            index += 1;
            let entry = CommittedEntry { index, proposals: vec![proposal], changes_membership: false, membership: Vec::new() };
            for (outgoing, _) in engine.apply_committed(&[entry], now_us).replies {
                let _ = wire::emit(&outgoing.reply, outgoing.max_bytes);
            }
        }
    };

    let mac = [2, 0, 0, 0, 0, 1];
    // Broadcast on every interface, and relayed from the first address of every pool.
    let arrivals = (0..config.interfaces.len()).map(|i| (Arrival::BROADCAST.on(i), Ipv4Addr::UNSPECIFIED));
    let relays = config.pools.iter().map(|pool| (Arrival::BROADCAST, pool.range_start));
    for (arrival, giaddr) in arrivals.chain(relays).take(8) {
        let discover = Request { giaddr, ..Request::new(ClientMessageType::Discover, 1, mac) };
        let offered = match engine.handle_from(&discover, arrival, now_us) {
            Action::Send(outgoing) => {
                let _ = wire::emit(&outgoing.reply, outgoing.max_bytes);
                outgoing.reply.yiaddr
            }
            _ => continue,
        };
        let selecting = Request {
            requested_ip: Some(offered),
            server_id: Some(config.server_ip),
            ..Request { message_type: ClientMessageType::Request, ..discover.clone() }
        };
        let action = engine.handle_from(&selecting, arrival, now_us);
        commit(&mut engine, action, now_us);
        let decline = Request { message_type: ClientMessageType::Decline, ..selecting.clone() };
        let action = engine.handle_from(&decline, arrival, now_us);
        commit(&mut engine, action, now_us);
        engine.check_invariants().expect("engine invariants");
    }
    let later_us = now_us.saturating_add(3_600_000_000);
    engine.expire_pending(later_us);
    if let Some(proposal) = engine.propose_parameters() {
        commit(&mut engine, Action::Propose(proposal), later_us);
    }
    if let Some(proposal) = engine.propose_collection(later_us) {
        commit(&mut engine, Action::Propose(proposal), later_us);
    }
    let _ = engine.pool_usage(later_us / 1000);
    engine.check_invariants().expect("engine invariants");
}
