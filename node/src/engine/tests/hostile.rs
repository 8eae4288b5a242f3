//! Hostile clients against the engine: forged DECLINEs (RFC 2131 §4.3.3), DISCOVER floods from spoofed
//! MACs, directly and through relays (RFC 2131 §4.3.1, RFC 3046), with the starvation limits
//! (`max_offers_per_pool_percent`, `[limits.rate]`) at their defaults unless a test says otherwise.
//! The "lab" pool has 11 addresses (10.0.0.100–110), so its cap is 6 new-client offers.

use leasehold_cluster::ClientKey;
use leasehold_config::TokenBucket;

use super::*;

/// Someone who was never offered nor given anything.
const STRANGER: u8 = 0x66;

fn lab(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, host)
}

fn key(n: u8) -> ClientKey {
    ClientKey::Mac(mac(n))
}

/// RFC 2131 §4.4.1: DECLINE carries the address in option 50 and the server's identifier in 54.
fn decline(chaddr: [u8; 6], ip: Ipv4Addr) -> Request {
    Request { requested_ip: Some(ip), server_id: Some(SERVER), ..request(ClientMessageType::Decline, chaddr) }
}

/// The n-th spoofed MAC of a flood.
fn flood_mac(n: u32) -> [u8; 6] {
    let [_, a, b, c] = n.to_be_bytes();
    [0x0e, 0xf1, 0x00, a, b, c]
}

/// What a DHCP client would see: the offered address, or the engine's silence.
fn offered(action: Action) -> Result<Ipv4Addr, Box<Action>> {
    match action {
        Action::Send(outgoing) if outgoing.reply.message_type == ReplyType::Offer => Ok(outgoing.reply.yiaddr),
        other => Err(Box::new(other)),
    }
}

fn silent(silence: Silence) -> Result<Ipv4Addr, Box<Action>> {
    Err(Box::new(Action::Silent(silence)))
}

#[test]
fn rfc2131_4_3_3_declines_from_a_stranger_change_nothing() {
    let mut engine = engine();
    let mut log = Log::new();
    let bound = dora(&mut engine, &mut log, mac(1), T0_US).reply.yiaddr;
    let held = offered(engine.handle(&discover(mac(2)), T0_US)).expect("an OFFER for client 2");
    let records = engine.table().len();
    let digest = engine.table().digest();
    let cases = [
        (bound, Silence::DeclineNotHeld, "bound to client 1"),
        (held, Silence::DeclineNotHeld, "offered to client 2"),
        (lab(105), Silence::DeclineNotHeld, "free, in the pool"),
        (lab(250), Silence::DeclineNotInPool, "in the subnet, outside every range"),
        (lab(50), Silence::DeclineNotInPool, "reserved for another client, outside the range"),
        (Ipv4Addr::new(192, 168, 1, 1), Silence::DeclineNotInPool, "on no network of ours"),
    ];
    for (ip, silence, what) in cases {
        let action = engine.handle(&decline(mac(STRANGER), ip), T0_US + SECOND_US);
        assert_eq!(action, Action::Silent(silence), "a stranger's DECLINE of {ip} ({what})");
        // Unicast to this server (a follower would answer that too, DESIGN rule 2): the same.
        let action = engine.handle_from(&decline(mac(STRANGER), ip), Arrival::unicast(SERVER), T0_US + SECOND_US);
        assert_eq!(action, Action::Silent(silence), "unicast: {ip} ({what})");
    }
    assert_eq!(engine.proposals_pending(), 0, "nothing was proposed: no log entry, no fsync");
    assert_eq!((engine.table().len(), engine.table().digest()), (records, digest), "the table is as it was");
    assert_eq!(engine.offers.of(&key(2), T0_US / 1000 + 1_000), Some(held), "client 2's offer is intact");
    // Client 2 goes on to bind what it was offered (RFC 2131 §4.3.2, SELECTING).
    let proposal = expect_propose(engine.handle(&selecting(mac(2), held, SERVER), T0_US + SECOND_US));
    let ack = log.commit_one(&mut engine, proposal, T0_US + SECOND_US);
    assert_eq!((ack.reply.message_type, ack.reply.yiaddr), (ReplyType::Ack, held));
    assert!(engine.table().by_ip(bound).is_some_and(|lease| lease.client == key(1) && lease.is_active(T0_US / 1000)));
}

#[test]
fn rfc2131_4_3_3_a_client_declines_its_own_binding_no_faster_than_its_bucket() {
    // limits.rate.decline: 0.1 a second, a burst of 3 (RFC 2131 §3.1 step 5: 10 s after a DECLINE).
    let mut engine = engine();
    let mut log = Log::new();
    let mut now = T0_US;
    for round in 1..=3 {
        let ip = dora(&mut engine, &mut log, mac(1), now).reply.yiaddr;
        let proposal = expect_propose(engine.handle(&decline(mac(1), ip), now));
        let answers = log.commit(&mut engine, vec![proposal], now);
        assert!(answers.replies.is_empty(), "§4.3.3: a DECLINE is not answered");
        let state = engine.table().by_ip(ip).map(|lease| lease.state);
        assert!(matches!(state, Some(LeaseState::Declined { .. })), "round {round}: {ip} quarantined, is {state:?}");
        now += SECOND_US;
    }
    let ip = dora(&mut engine, &mut log, mac(1), now).reply.yiaddr;
    assert_eq!(engine.handle(&decline(mac(1), ip), now), Action::Silent(Silence::DeclineRateLimited));
    assert!(engine.table().by_ip(ip).is_some_and(|lease| lease.is_active(now / 1000)), "{ip} stays bound");
    expect_propose(engine.handle(&decline(mac(1), ip), now + 10 * SECOND_US));
}

#[test]
fn rfc2131_4_3_3_a_decline_of_the_offered_address_withdraws_that_offer_only() {
    let mut engine = engine();
    let first = offered(engine.handle(&discover(mac(1)), T0_US)).expect("an OFFER for client 1");
    let second = offered(engine.handle(&discover(mac(2)), T0_US)).expect("an OFFER for client 2");
    let action = engine.handle(&decline(mac(1), first), T0_US);
    assert_eq!(action, Action::Silent(Silence::DeclineOfferWithdrawn));
    let now_ms = T0_US / 1000;
    assert_eq!((engine.offers.of(&key(1), now_ms), engine.offers.of(&key(2), now_ms)), (None, Some(second)));
    assert_eq!(engine.proposals_pending(), 0, "apply quarantines only bound addresses: nothing to propose");
    assert!(engine.table().is_empty());
}

#[test]
fn rfc2131_4_3_1_a_spoofed_mac_flood_holds_at_most_the_cap_and_new_clients_still_get_offers() {
    let mut engine = engine();
    let mut log = Log::new();
    assert_eq!(engine.offer_caps[0], 6, "50% of the 11-address pool, rounded up");
    // A returning client: bound and released. RFC 2131 §4.3.1: it gets its previous address back.
    let previous = dora(&mut engine, &mut log, mac(1), T0_US).reply.yiaddr;
    let release = Request { ciaddr: previous, server_id: Some(SERVER), ..request(ClientMessageType::Release, mac(1)) };
    let proposal = expect_propose(engine.handle(&release, T0_US));
    log.commit(&mut engine, vec![proposal], T0_US);
    let at = T0_US + SECOND_US;
    assert_eq!(offered(engine.handle(&discover(mac(1)), at)), Ok(previous));
    // 2,000 spoofed MACs, one DISCOVER each, all within one second.
    let mut flood_offers = 0;
    for n in 0..2_000 {
        let now = at + u64::from(n) * 400;
        if offered(engine.handle(&discover(flood_mac(n)), now)).is_ok() {
            flood_offers += 1;
        }
        assert!(engine.offers.capped_held(0) <= 6, "after {n}: {} new-client offers", engine.offers.capped_held(0));
        engine.offers.check().expect("offer bookkeeping");
        if n == 1_000 {
            // A new, legitimate client in the middle of the flood: offered, and it binds at once.
            let ack = dora(&mut engine, &mut log, mac(2), now);
            assert_eq!(ack.reply.message_type, ReplyType::Ack);
        }
    }
    assert_eq!(flood_offers, 2_000, "every DISCOVER is offered an address: the flood displaces its own offers");
    // 2,001 new-client offers (the flood's and client 2's, which ended in its binding): all but the
    // cap's worth of the flood's were displaced.
    assert_eq!(engine.offers_displaced[0], 2_000 - 6);
    // The returning client's offer counts against no cap and was never displaced.
    let now = at + 2_000 * 400;
    assert_eq!(engine.offers.of(&key(1), now / 1000), Some(previous));
    let proposal = expect_propose(engine.handle(&selecting(mac(1), previous, SERVER), now));
    assert_eq!(log.commit_one(&mut engine, proposal, now).reply.yiaddr, previous);
    let bound: Vec<_> =
        engine.table().iter().filter(|lease| lease.is_active(now / 1000)).map(|l| l.client.clone()).collect();
    assert_eq!(bound, vec![key(1), key(2)], "the flood bound nothing");
}

/// Floods client `mine`'s offer of `ip` out (displaced at the cap) until the pool, coming round,
/// offers `ip` to a spoofed MAC; that MAC, and the time.
fn flood_until_reoffered(engine: &mut Engine, ip: Ipv4Addr, from_us: u64) -> ([u8; 6], u64) {
    // New MACs each time: the MAC numbers carry on from the time.
    let first = (from_us / 100 % 1_000_000) as u32;
    for n in first..first + 1_000 {
        let now = from_us + u64::from(n - first) * 100;
        if offered(engine.handle(&discover(flood_mac(n)), now)) == Ok(ip) {
            return (flood_mac(n), now);
        }
    }
    panic!("{ip} never came round to the flood in 1,000 DISCOVERs");
}

#[test]
fn rfc2131_4_3_2_a_client_whose_offer_was_displaced_binds_it_by_requesting_first() {
    let mut engine = engine();
    let mut log = Log::new();
    let mine = offered(engine.handle(&discover(mac(2)), T0_US)).expect("an OFFER for client 2");
    let (spoofed, now) = flood_until_reoffered(&mut engine, mine, T0_US);
    let now_ms = now / 1000;
    assert_eq!(engine.offers.of(&key(2), now_ms), None, "client 2's offer was displaced");
    // Client 2's SELECTING REQUEST comes before the spoofed MAC's (which never comes): it binds.
    let proposal = expect_propose(engine.handle(&selecting(mac(2), mine, SERVER), now));
    assert_eq!(engine.offers.of(&ClientKey::Mac(spoofed), now_ms), None, "the later offer is withdrawn");
    assert_eq!(engine.offers_reclaimed[0], 1);
    engine.offers.check().expect("offer bookkeeping");
    let ack = log.commit_one(&mut engine, proposal, now);
    assert_eq!((ack.reply.message_type, ack.reply.yiaddr), (ReplyType::Ack, mine));
}

#[test]
fn rfc2131_4_3_2_a_displaced_claim_ends_with_the_offer_hold() {
    let mut engine = engine();
    let mine = offered(engine.handle(&discover(mac(2)), T0_US)).expect("an OFFER for client 2");
    let hold_us = engine.config().limits.offer_hold_ms * 1000;
    // Displaced at once; after the hold the flood goes on and offers the address to a spoofed MAC.
    flood_until_reoffered(&mut engine, mine, T0_US + 1_000);
    let (_, now) = flood_until_reoffered(&mut engine, mine, T0_US + hold_us);
    let nak = expect_send(engine.handle(&selecting(mac(2), mine, SERVER), now));
    assert_eq!(nak.reply.message_type, ReplyType::Nak, "RFC 2131 §4.3.2: the address is offered to another");
    assert_eq!(engine.offers_reclaimed[0], 0);
}

#[test]
fn rfc2131_4_3_1_one_mac_is_held_to_its_bucket_and_renewals_never_are() {
    // limits.rate.mac: 2 a second, a burst of 20.
    let mut engine = engine();
    let mut log = Log::new();
    let ip = dora(&mut engine, &mut log, mac(1), T0_US).reply.yiaddr;
    for _ in 0..19 {
        assert_eq!(offered(engine.handle(&discover(mac(1)), T0_US)), Ok(ip), "RFC 2131 §4.3.1: its own address");
    }
    assert_eq!(engine.handle(&discover(mac(1)), T0_US), Action::Silent(Silence::RateLimitedMac));
    // RFC 2131 §4.3.2: RENEWING (unicast), REBINDING (broadcast) and INIT-REBOOT of its own binding.
    expect_propose(engine.handle_from(&renewing(mac(1), ip), Arrival::unicast(SERVER), T0_US));
    let rebinding = Request { broadcast: true, ..renewing(mac(1), ip) };
    expect_propose(engine.handle_from(&rebinding, Arrival::BROADCAST, T0_US));
    expect_propose(engine.handle(&init_reboot(mac(1), ip), T0_US));
    // A REQUEST for an address it was never offered would take one from the pool: like a DISCOVER.
    assert_eq!(engine.handle(&selecting(mac(1), lab(105), SERVER), T0_US), Action::Silent(Silence::RateLimitedMac));
    let elsewhere = renewing(mac(1), lab(106));
    for arrival in [Arrival::unicast(SERVER), Arrival::BROADCAST] {
        assert_eq!(
            engine.handle_from(&elsewhere, arrival, T0_US),
            Action::Silent(Silence::RateLimitedMac),
            "RENEWING or REBINDING an address that is not its binding ({arrival:?})"
        );
    }
    // Two a second: 500 ms later one more DISCOVER goes through; another client was never limited.
    assert_eq!(offered(engine.handle(&discover(mac(1)), T0_US + 500_000)), Ok(ip));
    assert!(offered(engine.handle(&discover(mac(2)), T0_US)).is_ok());
}

/// Option 82 as a relay writes it (RFC 3046 §2.1): circuit id `c`, remote id `rel1`.
fn circuit(c: u8) -> Vec<u8> {
    vec![1, 2, b'p', c, 2, 4, b'r', b'e', b'l', b'1']
}

fn relayed(chaddr: [u8; 6], info: Option<Vec<u8>>) -> Request {
    Request { giaddr: RELAY, hops: 1, relay_agent_info: info, ..discover(chaddr) }
}

#[test]
fn rfc3046_a_relayed_flood_is_held_to_its_circuit_then_its_relay_and_known_clients_pass() {
    let mut config = config();
    config.limits.rate.relay = TokenBucket { per_sec: 1.0, burst: 50 };
    let mut engine = engine_with(config);
    let mut log = Log::new();
    // A client of the relayed pool that the table knows (bound before the flood): 1 of the relay's 50.
    let known = relayed_dora(&mut engine, &mut log, mac(1), None, T0_US).reply.yiaddr;
    // Circuit 1 floods with a new MAC per DISCOVER: its burst of 30 pass, the rest stop at the circuit
    // and do not spend the relay's tokens.
    let outcomes: Vec<Result<Ipv4Addr, Box<Action>>> =
        (0..200).map(|n| offered(engine.handle(&relayed(flood_mac(n), Some(circuit(1))), T0_US))).collect();
    assert!(outcomes[..30].iter().all(Result::is_ok), "the circuit's burst: {:?}", &outcomes[..30]);
    assert!(outcomes[30..].iter().all(|o| *o == silent(Silence::RateLimitedCircuit)));
    // Other circuits of the relay share what is left of its 50: 50 - 1 - 30 = 19.
    let mut passed = 0;
    let mut relay_limited = 0;
    for c in 2..=5u8 {
        for n in 0..10 {
            match offered(engine.handle(&relayed(flood_mac(1_000 + u32::from(c) * 100 + n), Some(circuit(c))), T0_US)) {
                Ok(_) => passed += 1,
                Err(other) if *other == Action::Silent(Silence::RateLimitedRelay) => relay_limited += 1,
                Err(other) => panic!("circuit {c}: {other:?}"),
            }
        }
    }
    assert_eq!((passed, relay_limited), (19, 21));
    // The client the table knows is not held to the relay's or the circuit's bucket.
    assert_eq!(offered(engine.handle(&relayed(mac(1), Some(circuit(1))), T0_US)), Ok(known));
    // Directly attached clients have no relay: untouched.
    assert!(offered(engine.handle(&discover(mac(2)), T0_US)).is_ok());
    assert!(engine.offers.capped_held(1) <= engine.offer_caps[1]);
}

proptest! {
    /// Whatever honest clients do, a stranger's DECLINE of any address (in the pool, outside it, bound,
    /// offered or free) proposes nothing and changes neither the table nor any client's offer; and
    /// the pool never holds more new-client offers than its cap.
    #[test]
    fn forged_declines_never_propose_nor_touch_offers_or_leases(
        steps in proptest::collection::vec((0u8..4, 1u8..=8, 90u8..=120), 1..150),
    ) {
        let mut engine = engine();
        let mut log = Log::new();
        let mut now = T0_US;
        for (kind, c, host) in steps {
            now += 150_000;
            match kind {
                0 => {
                    if let Ok(ip) = offered(engine.handle(&discover(mac(c)), now)) {
                        if let Action::Propose(p) = engine.handle(&selecting(mac(c), ip, SERVER), now) {
                            log.commit(&mut engine, vec![p], now);
                        }
                    }
                }
                1 => {
                    let _ = engine.handle(&discover(mac(c)), now);
                }
                _ => {
                    let now_ms = now / 1000;
                    let offers: Vec<_> = (1..=8).map(|k| engine.offers.of(&key(k), now_ms)).collect();
                    let digest = engine.table().digest();
                    let action = engine.handle(&decline(mac(0x40 + c), lab(host)), now);
                    let expected = if (100..=110).contains(&host) { Silence::DeclineNotHeld } else { Silence::DeclineNotInPool };
                    prop_assert_eq!(action, Action::Silent(expected), "DECLINE of {}", lab(host));
                    let after: Vec<_> = (1..=8).map(|k| engine.offers.of(&key(k), now_ms)).collect();
                    prop_assert_eq!(after, offers, "every client's offer is intact");
                    prop_assert_eq!(engine.table().digest(), digest);
                }
            }
            prop_assert!(engine.offers.check().is_ok(), "{:?}", engine.offers.check());
            prop_assert!(engine.offers.capped_held(0) <= engine.offer_caps[0]);
        }
    }

    /// New clients' offers never exceed the cap, every DISCOVER from a new client is offered an address
    /// while the pool has one that is neither bound nor offered (it displaces the oldest new-client offer
    /// when the cap is reached), and a known client's offer is never displaced.
    #[test]
    fn the_cap_holds_and_starves_no_one_while_an_address_is_free(
        steps in proptest::collection::vec((0u8..4, 0u16..600, 0u64..3_000), 1..300),
        percent in 10u32..=100,
    ) {
        let mut config = unlimited_config();
        config.limits.max_offers_per_pool_percent = percent;
        let mut engine = engine_with(config);
        let mut log = Log::new();
        let mut now = T0_US;
        // Three clients the table knows: bound, then released.
        for k in 1..=3 {
            let ip = dora(&mut engine, &mut log, mac(k), now).reply.yiaddr;
            let release = Request { ciaddr: ip, server_id: Some(SERVER), ..request(ClientMessageType::Release, mac(k)) };
            let proposal = expect_propose(engine.handle(&release, now));
            log.commit(&mut engine, vec![proposal], now);
        }
        for (kind, n, advance_ms) in steps {
            now += advance_ms * 1000;
            let now_ms = now / 1000;
            match kind {
                0 | 1 => {
                    let chaddr = flood_mac(u32::from(n));
                    let client = ClientKey::Mac(chaddr);
                    let pool = &engine.config().pools[0];
                    let free = (u32::from(pool.range_start)..=u32::from(pool.range_end)).map(Ipv4Addr::from).any(|ip| {
                        engine.table().is_available_to(ip, &client, now_ms) && !engine.offers.held_by_other(ip, &client, now_ms)
                    });
                    let known_offers: Vec<_> = (1..=3).map(|k| engine.offers.of(&key(k), now_ms)).collect();
                    let action = engine.handle(&discover(chaddr), now);
                    if free {
                        prop_assert!(offered(action.clone()).is_ok(), "a free address, and {:?}", action);
                    }
                    for (k, before) in known_offers.iter().enumerate() {
                        if before.is_some() {
                            prop_assert_eq!(&engine.offers.of(&key(k as u8 + 1), now_ms), before, "known client {}", k + 1);
                        }
                    }
                }
                2 => {
                    let k = (n % 3) as u8 + 1;
                    let _ = offered(engine.handle(&discover(mac(k)), now));
                }
                _ => {
                    // A SELECTING REQUEST from a flood MAC: for its displaced offer, or any address.
                    let chaddr = flood_mac(u32::from(n));
                    let claim = engine.offers.displaced_claim(&ClientKey::Mac(chaddr), now_ms);
                    let ip = claim.unwrap_or(lab(100 + (n % 11) as u8));
                    let _ = engine.handle(&selecting(chaddr, ip, SERVER), now);
                }
            }
            prop_assert!(engine.offers.check().is_ok(), "{:?}", engine.offers.check());
            prop_assert!(engine.offers.capped_held(0) <= engine.offer_caps[0]);
        }
    }
}
