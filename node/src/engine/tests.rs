//! Engine transcripts: each test plays a client conversation against the sans-IO engine, committing
//! proposals the way the Raft layer would, and checks the replies against RFC 2131.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use leasehold_cluster::{CommittedEntry, LeaseState, LeaseTable, Proposal, ReservedHost};
use leasehold_config::{
    ClientIdentity, Cluster, Config, Interface, Limits, LogFormat, LogLevel, OptionSet, Pool, Pxe, Reservation, Subnet,
};
use proptest::prelude::*;

use super::*;
use crate::wire::{ClientMessageType, Destination, ReplyType, Request};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const T0_US: u64 = 1_700_000_000_000_000;
const SECOND_US: u64 = 1_000_000;

fn pool(name: &str, network: [u8; 3], first: u8, last: u8) -> Pool {
    let [a, b, c] = network;
    Pool {
        name: name.into(),
        subnet: Subnet { network: Ipv4Addr::new(a, b, c, 0), prefix_len: 24 },
        range_start: Ipv4Addr::new(a, b, c, first),
        range_end: Ipv4Addr::new(a, b, c, last),
        routers: vec![Ipv4Addr::new(a, b, c, 1)],
        dns_servers: vec![Ipv4Addr::new(a, b, c, 1)],
        domain_name: Some("lab.example".into()),
        lease_time_secs: 3600,
        renewal_time_secs: 1800,
        rebinding_time_secs: 3150,
        pxe: None,
        dynamic_bootp: false,
        bootp_lease_time_secs: 3600,
        options: OptionSet::default(),
    }
}

fn config() -> Config {
    let mut arch_boot_files = BTreeMap::new();
    arch_boot_files.insert(0, "undionly.kpxe".to_string());
    arch_boot_files.insert(7, "ipxe.efi".to_string());
    arch_boot_files.insert(11, "ipxe-arm64.efi".to_string());
    Config {
        interfaces: vec![Interface { name: None, server_ip: SERVER }],
        server_ip: SERVER,
        server_port: 67,
        client_port: 68,
        admin_listen: "127.0.0.1:6767".parse().unwrap(),
        data_dir: PathBuf::from("/nonexistent"),
        fsync: true,
        log_format: LogFormat::Term,
        log_level: LogLevel::Info,
        identity: ClientIdentity::Mac,
        pools: vec![pool("lab", [10, 0, 0], 100, 110), pool("relayed", [10, 9, 9], 10, 20)],
        pxe: Pxe {
            next_server: None,
            tftp_server: Some(SERVER),
            boot_file: Some("pxelinux.0".into()),
            arch_boot_files,
            ipxe_script_url: Some("http://10.0.0.1/boot.ipxe".into()),
        },
        reservations: vec![Reservation {
            mac: Some([2, 0, 0, 0, 0, 0x99]),
            client_id: None,
            ip: Ipv4Addr::new(10, 0, 0, 50),
            hostname: Some("reserved-host".into()),
            boot_file: None,
            next_server: None,
            boot_script: None,
            options: OptionSet::default(),
        }],
        options: OptionSet::default(),
        classes: Vec::new(),
        limits: Limits::default(),
        cluster: Cluster::default(),
        admin: Default::default(),
        boot: Default::default(),
        store: Default::default(),
    }
}

fn engine_with(config: Config) -> Engine {
    let limits = &config.limits;
    let table = LeaseTable::new(limits.expiry_grace_secs * 1000, limits.max_leases);
    let mut engine = Engine::new(Arc::new(config), table, 1, 7);
    engine.set_leader(true);
    engine
}

fn engine() -> Engine {
    engine_with(config())
}

/// `config()` with no cap on new clients' offers and buckets too large to matter: for the tests of
/// what the starvation limits leave alone (allocation, hold times, probation).
fn unlimited_config() -> Config {
    let mut config = config();
    config.limits.max_offers_per_pool_percent = 100;
    let unlimited = leasehold_config::TokenBucket { per_sec: 1_000_000.0, burst: 1_000_000 };
    config.limits.rate.mac = unlimited;
    config.limits.rate.relay = unlimited;
    config.limits.rate.circuit = unlimited;
    config.limits.rate.decline = unlimited;
    config
}

fn mac(n: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, n]
}

fn request(message_type: ClientMessageType, chaddr: [u8; 6]) -> Request {
    Request {
        parameter_request_list: vec![1, 3, 6, 15, 51, 54],
        ..Request::new(message_type, u32::from(chaddr[5]) << 8 | 0x42, chaddr)
    }
}

fn discover(chaddr: [u8; 6]) -> Request {
    request(ClientMessageType::Discover, chaddr)
}

fn selecting(chaddr: [u8; 6], ip: Ipv4Addr, server: Ipv4Addr) -> Request {
    Request { requested_ip: Some(ip), server_id: Some(server), ..request(ClientMessageType::Request, chaddr) }
}

fn init_reboot(chaddr: [u8; 6], ip: Ipv4Addr) -> Request {
    Request { requested_ip: Some(ip), ..request(ClientMessageType::Request, chaddr) }
}

fn renewing(chaddr: [u8; 6], ip: Ipv4Addr) -> Request {
    Request { ciaddr: ip, ..request(ClientMessageType::Request, chaddr) }
}

fn expect_send(action: Action) -> Outgoing {
    match action {
        Action::Send(outgoing) => *outgoing,
        other => panic!("expected a reply to send, got {other:?}"),
    }
}

fn expect_propose(action: Action) -> Proposal {
    match action {
        Action::Propose(proposal) => proposal,
        other => panic!("expected a proposal, got {other:?}"),
    }
}

/// The Raft layer's part: commit `proposals` as the next log entry and apply it.
struct Log {
    next_index: u64,
}

impl Log {
    fn new() -> Self {
        Log { next_index: 1 }
    }

    fn commit(&mut self, engine: &mut Engine, proposals: Vec<Proposal>, now_us: u64) -> Answers {
        let entry =
            CommittedEntry { index: self.next_index, proposals, changes_membership: false, membership: Vec::new() };
        self.next_index += 1;
        engine.apply_committed(&[entry], now_us)
    }

    fn commit_one(&mut self, engine: &mut Engine, proposal: Proposal, now_us: u64) -> Outgoing {
        let mut answers = self.commit(engine, vec![proposal], now_us);
        assert_eq!(answers.replies.len(), 1, "one committed proposal, one reply: {answers:?}");
        answers.replies.remove(0).0
    }
}

/// DISCOVER, OFFER, REQUEST, ACK for one client; returns the ACK.
fn dora(engine: &mut Engine, log: &mut Log, chaddr: [u8; 6], now_us: u64) -> Outgoing {
    let offer = expect_send(engine.handle(&discover(chaddr), now_us));
    assert_eq!(offer.reply.message_type, ReplyType::Offer);
    let proposal = expect_propose(engine.handle(&selecting(chaddr, offer.reply.yiaddr, SERVER), now_us));
    let ack = log.commit_one(engine, proposal, now_us);
    assert_eq!(ack.reply.message_type, ReplyType::Ack);
    assert_eq!(ack.reply.yiaddr, offer.reply.yiaddr, "RFC 2131 §4.3.2: ACK confirms the offered address");
    ack
}

#[test]
fn rfc2131_4_3_1_discover_gets_an_offer_from_the_pool_with_its_options() {
    let mut engine = engine();
    let offer = expect_send(engine.handle(&discover(mac(1)), T0_US));
    let reply = &offer.reply;
    assert_eq!(reply.message_type, ReplyType::Offer);
    assert_eq!(reply.yiaddr, Ipv4Addr::new(10, 0, 0, 100));
    assert_eq!(reply.server_id, SERVER);
    assert_eq!(reply.lease_time_secs, Some(3600));
    assert_eq!(reply.renewal_time_secs, Some(1800));
    assert_eq!(reply.rebinding_time_secs, Some(3150));
    assert_eq!(reply.subnet_mask, Some(Ipv4Addr::new(255, 255, 255, 0)));
    assert_eq!(reply.option(3), Some(&[10, 0, 0, 1][..]), "routers (option 3)");
    assert_eq!(reply.option(6), Some(&[10, 0, 0, 1][..]), "DNS servers (option 6)");
    assert_eq!(reply.option(15), Some(&b"lab.example"[..]));
    assert_eq!(reply.file, None, "a client that is not network booting gets no boot file");
    assert_eq!(offer.destination, Destination::Broadcast, "§4.1: no ciaddr, no giaddr: broadcast");
    assert_eq!(engine.proposals_pending(), 0, "an OFFER costs no Raft write (DESIGN rule 3)");
}

#[test]
fn rfc2131_4_3_1_an_offered_address_is_held_and_not_offered_to_another_client() {
    let mut engine = engine();
    let first = expect_send(engine.handle(&discover(mac(1)), T0_US)).reply.yiaddr;
    let second = expect_send(engine.handle(&discover(mac(2)), T0_US)).reply.yiaddr;
    assert_ne!(first, second);
    let again = expect_send(engine.handle(&discover(mac(1)), T0_US + SECOND_US)).reply.yiaddr;
    assert_eq!(again, first, "a retransmitted DISCOVER gets the same offer");
}

/// DISCOVERs from clients `first..=last` at `now_us`; the offered addresses.
fn offers_to(engine: &mut Engine, clients: std::ops::RangeInclusive<u8>, now_us: u64) -> Vec<Ipv4Addr> {
    clients
        .filter_map(|n| match engine.handle(&discover(mac(n)), now_us) {
            Action::Send(outgoing) => Some(outgoing.reply.yiaddr),
            _ => None,
        })
        .collect()
}

#[test]
fn offer_hold_expires_after_offer_hold_ms() {
    let mut engine = engine_with(unlimited_config());
    // The pool has 11 addresses: 11 clients hold every one of them.
    assert_eq!(offers_to(&mut engine, 1..=11, T0_US).len(), 11);
    assert_eq!(engine.handle(&discover(mac(12)), T0_US), Action::Silent(Silence::PoolExhausted));
    let hold_us = engine.config().limits.offer_hold_ms * 1000;
    assert_eq!(engine.handle(&discover(mac(12)), T0_US + hold_us - 1), Action::Silent(Silence::PoolExhausted));
    assert_eq!(
        offers_to(&mut engine, 12..=12, T0_US + hold_us).len(),
        1,
        "after the hold time addresses are free again"
    );
}

#[test]
fn rfc2131_4_3_2_selecting_request_is_acked_only_after_commit() {
    let mut engine = engine();
    let mut log = Log::new();
    let offer = expect_send(engine.handle(&discover(mac(1)), T0_US));
    let proposal = expect_propose(engine.handle(&selecting(mac(1), offer.reply.yiaddr, SERVER), T0_US));
    assert!(
        matches!(proposal.command, leasehold_cluster::Command::Bind { ip, expires_at_ms, .. }
            if ip == offer.reply.yiaddr && expires_at_ms == T0_US / 1000 + 3_600_000),
        "the proposer decides address and absolute expiry: {proposal:?}"
    );
    assert_eq!(engine.proposals_pending(), 1);
    assert!(engine.table().is_empty(), "nothing is bound before the commit");
    let ack = log.commit_one(&mut engine, proposal, T0_US + 500);
    assert_eq!(ack.reply.message_type, ReplyType::Ack);
    assert_eq!(ack.reply.lease_time_secs, Some(3600));
    let lease = engine.table().by_ip(offer.reply.yiaddr).expect("bound after apply");
    assert_eq!(lease.mac, mac(1));
}

#[test]
fn rfc2131_4_3_2_selecting_another_server_withdraws_our_offer_silently() {
    let mut engine = engine();
    let offered = offers_to(&mut engine, 1..=11, T0_US);
    let action = engine.handle(&selecting(mac(1), offered[0], Ipv4Addr::new(10, 0, 0, 2)), T0_US);
    assert_eq!(action, Action::Silent(Silence::OtherServerChosen));
    let next = offers_to(&mut engine, 12..=12, T0_US);
    assert_eq!(next, vec![offered[0]], "the withdrawn offer's address is the one free address");
}

#[test]
fn rfc2131_4_3_2_selecting_an_address_held_by_another_client_is_naked() {
    let mut engine = engine();
    let mut log = Log::new();
    let ack = dora(&mut engine, &mut log, mac(1), T0_US);
    let action = engine.handle(&selecting(mac(2), ack.reply.yiaddr, SERVER), T0_US);
    let nak = expect_send(action);
    assert_eq!(nak.reply.message_type, ReplyType::Nak);
    assert_eq!(nak.reply.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(nak.destination, Destination::Broadcast, "§4.1: NAKs without giaddr are broadcast");
}

#[test]
fn two_proposals_for_one_address_in_one_entry_give_one_ack_and_one_nak() {
    // A leader change can leave two proposals for one address in the log (DESIGN rule 3): apply is
    // the judge, the first wins, the second is NAKed.
    let mut engine = engine();
    let ip = Ipv4Addr::new(10, 0, 0, 105);
    let first = expect_propose(engine.handle(&init_reboot_free(mac(1), ip), T0_US));
    engine.set_leader(false);
    engine.set_leader(true);
    let second = expect_propose(engine.handle(&selecting(mac(2), ip, SERVER), T0_US));
    let answers = Log::new().commit(&mut engine, vec![first, second], T0_US);
    let kinds: Vec<ReplyType> = answers.replies.iter().map(|(o, _)| o.reply.message_type).collect();
    assert_eq!(kinds, vec![ReplyType::Ack, ReplyType::Nak]);
    assert_eq!(engine.table().by_ip(ip).unwrap().mac, mac(1));
}

/// A SELECTING request for an address nobody offered (a client that chose us after our restart).
fn init_reboot_free(chaddr: [u8; 6], ip: Ipv4Addr) -> Request {
    selecting(chaddr, ip, SERVER)
}

#[test]
fn rfc2131_4_3_2_init_reboot_unknown_client_is_silent_known_wrong_address_is_naked() {
    let mut engine = engine();
    let mut log = Log::new();
    let action = engine.handle(&init_reboot(mac(1), Ipv4Addr::new(10, 0, 0, 103)), T0_US);
    assert_eq!(action, Action::Silent(Silence::UnknownClient), "§4.3.2: no record of the client: remain silent");
    let ack = dora(&mut engine, &mut log, mac(1), T0_US);
    let wrong = Ipv4Addr::new(10, 0, 0, 109);
    assert_ne!(wrong, ack.reply.yiaddr);
    let nak = expect_send(engine.handle(&init_reboot(mac(1), wrong), T0_US));
    assert_eq!(nak.reply.message_type, ReplyType::Nak);
    let off_network = expect_send(engine.handle(&init_reboot(mac(1), Ipv4Addr::new(192, 168, 5, 5)), T0_US));
    assert_eq!(off_network.reply.message_type, ReplyType::Nak, "§4.3.2: address on the wrong network: NAK");
    let proposal = expect_propose(engine.handle(&init_reboot(mac(1), ack.reply.yiaddr), T0_US + SECOND_US));
    let again = log.commit_one(&mut engine, proposal, T0_US + SECOND_US);
    assert_eq!(again.reply.message_type, ReplyType::Ack);
    assert_eq!(again.reply.yiaddr, ack.reply.yiaddr);
}

#[test]
fn rfc2131_4_3_2_renewing_extends_the_lease_and_answers_unicast() {
    let mut engine = engine();
    let mut log = Log::new();
    let ack = dora(&mut engine, &mut log, mac(1), T0_US);
    let ip = ack.reply.yiaddr;
    let later = T0_US + 1800 * SECOND_US;
    let proposal = expect_propose(engine.handle(&renewing(mac(1), ip), later));
    let renewed = log.commit_one(&mut engine, proposal, later);
    assert_eq!(renewed.reply.message_type, ReplyType::Ack);
    assert_eq!(renewed.reply.yiaddr, ip);
    assert_eq!(renewed.reply.ciaddr, ip);
    assert_eq!(renewed.destination, Destination::Unicast(ip), "§4.1: ciaddr set: unicast to ciaddr");
    match engine.table().by_ip(ip).unwrap().state {
        LeaseState::Bound { expires_at_ms } => assert_eq!(expires_at_ms, later / 1000 + 3_600_000),
        other => panic!("expected bound, got {other:?}"),
    }
}

#[test]
fn rfc2131_4_3_2_renewing_an_address_bound_to_another_client_is_naked_at_apply_or_before() {
    let mut engine = engine();
    let mut log = Log::new();
    let ack = dora(&mut engine, &mut log, mac(1), T0_US);
    let nak = expect_send(engine.handle(&renewing(mac(2), ack.reply.yiaddr), T0_US));
    assert_eq!(nak.reply.message_type, ReplyType::Nak);
}

#[test]
fn rfc2131_4_3_3_declined_address_is_quarantined_for_the_probation() {
    let mut engine = engine_with(unlimited_config());
    let mut log = Log::new();
    let ack = dora(&mut engine, &mut log, mac(1), T0_US);
    let ip = ack.reply.yiaddr;
    let decline =
        Request { requested_ip: Some(ip), server_id: Some(SERVER), ..request(ClientMessageType::Decline, mac(1)) };
    let proposal = expect_propose(engine.handle(&decline, T0_US));
    let answers = log.commit(&mut engine, vec![proposal], T0_US);
    assert!(answers.replies.is_empty(), "§4.3.3: no reply to DECLINE");
    assert!(matches!(engine.table().by_ip(ip).unwrap().state, LeaseState::Declined { .. }));
    let probation_us = engine.config().limits.decline_probation_secs * SECOND_US;
    for n in 2..=11 {
        let offered = expect_send(engine.handle(&discover(mac(n)), T0_US + SECOND_US)).reply.yiaddr;
        assert_ne!(offered, ip, "a declined address is not offered during probation");
    }
    assert_eq!(
        engine.handle(&discover(mac(12)), T0_US + SECOND_US),
        Action::Silent(Silence::PoolExhausted),
        "the 11-address pool holds 10 offers and one declined address"
    );
    let after = T0_US + probation_us + SECOND_US + engine.config().limits.offer_hold_ms * 1000;
    let offered = offers_to(&mut engine, 12..=22, after);
    assert!(offered.contains(&ip), "after probation the address returns to the pool: {offered:?}");
}

#[test]
fn rfc2131_4_3_4_released_address_goes_back_and_the_client_gets_it_again() {
    let mut engine = engine();
    let mut log = Log::new();
    let ack = dora(&mut engine, &mut log, mac(1), T0_US);
    let ip = ack.reply.yiaddr;
    let release = Request { ciaddr: ip, server_id: Some(SERVER), ..request(ClientMessageType::Release, mac(1)) };
    let proposal = expect_propose(engine.handle(&release, T0_US));
    let answers = log.commit(&mut engine, vec![proposal], T0_US);
    assert!(answers.replies.is_empty(), "§4.3.4: no reply to RELEASE");
    assert!(matches!(engine.table().by_ip(ip).unwrap().state, LeaseState::Released { .. }));
    let again = dora(&mut engine, &mut log, mac(1), T0_US + SECOND_US);
    assert_eq!(again.reply.yiaddr, ip, "a returning client gets its previous address back");
}

#[test]
fn returning_client_gets_its_previous_address_even_after_expiry() {
    let mut engine = engine();
    let mut log = Log::new();
    let ip = dora(&mut engine, &mut log, mac(1), T0_US).reply.yiaddr;
    dora(&mut engine, &mut log, mac(2), T0_US);
    let much_later = T0_US + 10 * 3600 * SECOND_US;
    let again = dora(&mut engine, &mut log, mac(1), much_later);
    assert_eq!(again.reply.yiaddr, ip);
}

#[test]
fn rfc2131_4_3_5_inform_gets_options_and_no_lease() {
    let mut engine = engine();
    let ciaddr = Ipv4Addr::new(10, 0, 0, 7);
    let inform = Request { ciaddr, ..request(ClientMessageType::Inform, mac(1)) };
    let ack = expect_send(engine.handle(&inform, T0_US));
    assert_eq!(ack.reply.message_type, ReplyType::Ack);
    assert_eq!(ack.reply.yiaddr, Ipv4Addr::UNSPECIFIED, "§4.3.5: no yiaddr");
    assert_eq!(ack.reply.lease_time_secs, None, "§4.3.5: MUST NOT send a lease time");
    assert_eq!(ack.destination, Destination::Unicast(ciaddr));
    assert_eq!(engine.proposals_pending(), 0);
}

#[test]
fn reservation_gets_its_fixed_address_and_hostname_and_nobody_else_gets_it() {
    let mut engine = engine();
    let mut log = Log::new();
    let reserved = Ipv4Addr::new(10, 0, 0, 50);
    let ack = dora(&mut engine, &mut log, mac(0x99), T0_US);
    assert_eq!(ack.reply.yiaddr, reserved);
    assert_eq!(ack.reply.option(12), Some(&b"reserved-host"[..]));
    let nak = expect_send(engine.handle(&selecting(mac(3), reserved, SERVER), T0_US));
    assert_eq!(nak.reply.message_type, ReplyType::Nak);
}

/// A PXE ROM gets its boot file in the header and options 66/67, its UUID back, and no option 60:
/// an offer with 60 `PXEClient` and no option 43 sends EDK2 to a udp/4011 boot server (see `boot`).
#[test]
fn pxe_rom_gets_siaddr_file_66_67_for_its_architecture_and_97_but_no_60() {
    let mut engine = engine();
    let uuid = [0u8; 17].iter().enumerate().map(|(i, _)| i as u8).collect::<Vec<u8>>();
    let pxe = |arch: u16| Request {
        vendor_class: Some(b"PXEClient:Arch:00007:UNDI:003016".to_vec()),
        client_arch: Some(arch),
        client_uuid: Some(uuid.clone()),
        ..discover(mac(1))
    };
    let reply = expect_send(engine.handle(&pxe(7), T0_US)).reply;
    assert_eq!(reply.siaddr, SERVER, "next-server in the header: many ROMs read only that");
    assert_eq!(reply.file.as_deref(), Some("ipxe.efi"));
    assert_eq!(reply.tftp_server_name.as_deref(), Some("10.0.0.1"));
    assert_eq!(reply.bootfile_name.as_deref(), Some("ipxe.efi"));
    assert_eq!(reply.vendor_class, None, "no option 60: EDK2 would take the offer for a BINL (proxy) offer");
    assert_eq!(reply.client_uuid.as_deref(), Some(&uuid[..]));
    assert_eq!(expect_send(engine.handle(&pxe(0), T0_US)).reply.file.as_deref(), Some("undionly.kpxe"));
    assert_eq!(expect_send(engine.handle(&pxe(11), T0_US)).reply.file.as_deref(), Some("ipxe-arm64.efi"));
    assert_eq!(
        expect_send(engine.handle(&pxe(99), T0_US)).reply.file.as_deref(),
        Some("pxelinux.0"),
        "an unknown architecture falls back to the default boot file"
    );
}

/// Found by the `engine_sequence` fuzz target: the wall clock stepped back (an NTP correction) while
/// an offer was held, so the offer queue was no longer in expiry order and an offer that had run out
/// stayed in the offer maps. Another client offered that address left the first one's entry behind:
/// two clients with offers for one address, and the pool's count of new clients' offers one too high
/// for as long as the stale entry lived.
#[test]
fn an_offer_left_behind_by_a_clock_step_goes_when_its_address_is_offered_again() {
    let mut engine = engine();
    let address = expect_send(engine.handle(&discover(mac(1)), T0_US)).reply.yiaddr;
    // The clock steps back 98 s; the client asks again and is offered the same address, now held
    // until 88 s before the first offer would have ended.
    let stepped_back_us = T0_US - 98 * SECOND_US;
    assert_eq!(expect_send(engine.handle(&discover(mac(1)), stepped_back_us)).reply.yiaddr, address);
    // 65 s on, that offer has run out, though the first queue entry (the first offer) has not.
    let later_us = stepped_back_us + 65 * SECOND_US;
    let another = Request { requested_ip: Some(address), ..discover(mac(2)) };
    assert_eq!(expect_send(engine.handle(&another, later_us)).reply.yiaddr, address);
    engine.offers.check().expect("one client per offered address");
    assert_eq!(engine.offers_held(), 1);
}

/// Found by the `engine_sequence` fuzz target: a client's REQUEST was decided after its lease would
/// have run out, then the wall clock stepped back before the entry holding it (and an earlier REQUEST
/// that made the binding) was applied. The binding in force ends before the time the client counts
/// its lease from (when it sent the REQUEST), yet it was "active" on the stepped-back clock: the ACK
/// carried a lease of 0 s, promising the address until past the committed end (RFC 2131 §4.4.1).
/// Such a late commit is now silence, as one applied after the lease ran out always was.
#[test]
fn no_ack_for_a_binding_that_ends_before_the_client_counts_from() {
    let mut engine = engine();
    let mut log = Log::new();
    let address = expect_send(engine.handle(&discover(mac(1)), T0_US)).reply.yiaddr;
    let first = expect_propose(engine.handle(&selecting(mac(1), address, SERVER), T0_US));
    // The client renews an hour and a minute later, its lease (an hour) over by then, before the
    // first REQUEST is committed: decided on the same table, it will find that binding in force.
    let renewed_at_us = T0_US + 3_660 * SECOND_US;
    let second = expect_propose(engine.handle(&renewing(mac(1), address), renewed_at_us));
    // The clock steps back to 100 s after the first REQUEST; both commit in one entry.
    let answers = log.commit(&mut engine, vec![first, second], T0_US + 100 * SECOND_US);
    let acks: Vec<_> = answers.replies.iter().map(|(outgoing, _)| outgoing.reply.lease_time_secs).collect();
    assert_eq!(acks, vec![Some(3600)], "the first REQUEST's ACK only: {answers:?}");
    assert_eq!(answers.silent.iter().map(|d| d.outcome).collect::<Vec<_>>(), vec!["expired_before_commit"]);
}

/// Found by the `engine_sequence` fuzz target: after the wall clock stepped back, offers made since
/// ended before the ones made before the step. The queue of offers was in the order they were made,
/// so `expire` stopped at an earlier offer that had not run out, while each pool's queue of new
/// clients' offers dropped the later ones that had: the pool still counted them, and the next new
/// client found its cap reached and nothing to displace (a debug assertion; in release, offers over
/// the cap). The queues are now ordered by when offers end.
#[test]
fn offers_made_after_a_clock_step_back_expire_in_the_order_they_end() {
    let mut config = config();
    config.limits.max_offers_per_pool_percent = 10; // 2 of the first pool's 11 addresses
    let mut engine = engine_with(config);
    let relayed = Request { giaddr: Ipv4Addr::new(10, 9, 9, 1), ..discover(mac(1)) };
    expect_send(engine.handle(&relayed, T0_US));
    // 80 s back: two new clients fill the first pool's cap, their offers ending 70 s before the
    // relayed one's.
    let stepped_back_us = T0_US - 80 * SECOND_US;
    expect_send(engine.handle(&discover(mac(2)), stepped_back_us));
    expect_send(engine.handle(&discover(mac(3)), stepped_back_us));
    // 65 s on, both have run out; the relayed one has not.
    let later_us = stepped_back_us + 65 * SECOND_US;
    expect_send(engine.handle(&discover(mac(4)), later_us));
    engine.offers.check().expect("offer bookkeeping");
    assert_eq!(engine.offers_held(), 2, "the relayed client's offer and the new one");
    assert_eq!(engine.offers.capped_held(0), 1, "the first pool counts only the new one");
}

/// Found by the `engine_sequence` fuzz target: with option 97 configured (an `[[option-def]]` for
/// code 97) and asked for, a PXE client got 97 twice, its own UUID echoed and the configured one,
/// which it joins into one value (RFC 3396 §7). The configured option wins, as for 60, 66 and 67.
#[test]
fn a_configured_option_97_replaces_the_echoed_uuid() {
    let mut config = config();
    config.options = OptionSet(vec![option(97, &[0, 0x52, 0x41, 0x43, 0x4b])]);
    let mut engine = engine_with(config);
    let pxe = Request {
        vendor_class: Some(b"PXEClient:Arch:00007:UNDI:003016".to_vec()),
        client_arch: Some(7),
        client_uuid: Some(vec![0; 17]),
        parameter_request_list: vec![1, 3, 66, 67, 97],
        ..discover(mac(1))
    };
    let reply = expect_send(engine.handle(&pxe, T0_US)).reply;
    assert_eq!(reply.client_uuid, None, "no echo beside the configured option");
    assert_eq!(reply.option(97), Some(&[0, 0x52, 0x41, 0x43, 0x4b][..]));
    let on_wire = crate::wire::reply_options(&crate::wire::emit(&reply, 1500).bytes).expect("a reply");
    let instances: Vec<_> = on_wire.iter().filter(|(code, _)| *code == 97).collect();
    assert_eq!(instances, vec![&(97, vec![0, 0x52, 0x41, 0x43, 0x4b])], "one option 97, the configured one");
}

#[test]
fn ipxe_gets_the_script_url_instead_of_the_rom_so_it_does_not_loop() {
    let mut engine = engine();
    let ipxe = Request {
        vendor_class: Some(b"PXEClient:Arch:00000:UNDI:002001".to_vec()),
        client_arch: Some(0),
        user_class: Some(b"iPXE".to_vec()),
        ..discover(mac(1))
    };
    let reply = expect_send(engine.handle(&ipxe, T0_US)).reply;
    assert_eq!(reply.file.as_deref(), Some("http://10.0.0.1/boot.ipxe"));
}

/// A class chooses iPXE's script too: an iPXE client in rack 7 gets the class's script, one
/// elsewhere the `[pxe]` one.
#[test]
fn a_class_chooses_the_ipxe_script() {
    let mut config = config();
    let mut rack =
        class("rack-7", leasehold_config::ClassMatch { circuit_id: Some(b"rack7".to_vec()), ..Default::default() });
    rack.ipxe_script_url = Some("http://10.9.9.5/rack7.ipxe".into());
    config.classes = vec![rack];
    let mut engine = engine_with(config);
    let ipxe = |chaddr, circuit: &[u8]| Request {
        vendor_class: Some(b"PXEClient:Arch:00007:UNDI:003016".to_vec()),
        client_arch: Some(7),
        user_class: Some(b"iPXE".to_vec()),
        giaddr: RELAY,
        relay_agent_info: Some([&[1, circuit.len() as u8][..], circuit].concat()),
        ..discover(chaddr)
    };
    let in_rack = expect_send(engine.handle(&ipxe(mac(1), b"rack7"), T0_US)).reply;
    assert_eq!(in_rack.file.as_deref(), Some("http://10.9.9.5/rack7.ipxe"));
    let elsewhere = expect_send(engine.handle(&ipxe(mac(2), b"rack8"), T0_US)).reply;
    assert_eq!(elsewhere.file.as_deref(), Some("http://10.0.0.1/boot.ipxe"));
}

#[test]
fn rfc3046_relayed_discover_uses_the_relay_subnet_and_goes_back_to_the_relay() {
    let mut engine = engine();
    let giaddr = Ipv4Addr::new(10, 9, 9, 1);
    let relayed = Request { giaddr, hops: 1, relay_agent_info: Some(vec![1, 3, b'p', b'1', b'2']), ..discover(mac(1)) };
    let offer = expect_send(engine.handle(&relayed, T0_US));
    assert_eq!(offer.reply.yiaddr, Ipv4Addr::new(10, 9, 9, 10));
    assert_eq!(offer.reply.giaddr, giaddr);
    assert_eq!(offer.destination, Destination::Relay(giaddr));
    assert_eq!(offer.reply.relay_agent_info, relayed.relay_agent_info, "RFC 3046 §2.2: option 82 echoed");
}

#[test]
fn relay_from_an_unknown_network_is_dropped_as_no_pool() {
    let mut engine = engine();
    let relayed = Request { giaddr: Ipv4Addr::new(172, 16, 0, 1), ..discover(mac(1)) };
    assert_eq!(engine.handle(&relayed, T0_US), Action::Drop(DropReason::NoPool));
}

#[test]
fn a_follower_stays_silent_design_rule_2() {
    let mut engine = engine();
    engine.set_leader(false);
    assert_eq!(engine.handle(&discover(mac(1)), T0_US), Action::Silent(Silence::NotLeader));
}

#[test]
fn client_identity_client_id_keys_leases_on_option_61() {
    let mut config = config();
    config.identity = ClientIdentity::ClientId;
    let mut engine = engine_with(config);
    let mut log = Log::new();
    let with_id = |chaddr| Request { client_id: Some(vec![0xff, 1, 2, 3]), ..discover(chaddr) };
    let offer = expect_send(engine.handle(&with_id(mac(1)), T0_US));
    let proposal = expect_propose(engine.handle(
        &Request { client_id: Some(vec![0xff, 1, 2, 3]), ..selecting(mac(1), offer.reply.yiaddr, SERVER) },
        T0_US,
    ));
    log.commit_one(&mut engine, proposal, T0_US);
    let same_id_new_nic = expect_send(engine.handle(&with_id(mac(2)), T0_US));
    assert_eq!(same_id_new_nic.reply.yiaddr, offer.reply.yiaddr, "same client id, same address");
    assert_eq!(same_id_new_nic.reply.client_id, Some(vec![0xff, 1, 2, 3]), "RFC 6842: option 61 echoed");
}

#[test]
fn proposals_in_flight_are_bounded_and_expire() {
    let mut config = config();
    config.limits.max_inflight_proposals = 2;
    let mut engine = engine_with(config);
    for n in 0..2 {
        expect_propose(engine.handle(&selecting(mac(n), Ipv4Addr::new(10, 0, 0, 100 + n), SERVER), T0_US));
    }
    assert_eq!(
        engine.handle(&selecting(mac(5), Ipv4Addr::new(10, 0, 0, 105), SERVER), T0_US),
        Action::Drop(DropReason::ProposalBacklog)
    );
    let timeout_us = engine.config().limits.proposal_timeout_ms * 1000;
    assert_eq!(engine.expire_pending(T0_US + timeout_us), 2);
    expect_propose(engine.handle(&selecting(mac(5), Ipv4Addr::new(10, 0, 0, 105), SERVER), T0_US + timeout_us));
}

#[test]
fn replayed_entries_after_restart_answer_nobody() {
    // Tags carry the incarnation: a restarted node (new incarnation) replaying its log must not
    // mistake an old proposal for one of its new waiters.
    let mut engine = engine();
    let proposal = expect_propose(engine.handle(&selecting(mac(1), Ipv4Addr::new(10, 0, 0, 100), SERVER), T0_US));
    let table = LeaseTable::new(30_000, 1000);
    let mut restarted = Engine::new(Arc::new(config()), table, 1, 8);
    restarted.set_leader(true);
    let waiting = expect_propose(restarted.handle(&selecting(mac(2), Ipv4Addr::new(10, 0, 0, 101), SERVER), T0_US));
    assert_eq!(waiting.tag.seq, proposal.tag.seq, "same sequence number, different incarnation");
    let answers = Log::new().commit(&mut restarted, vec![proposal], T0_US);
    assert!(answers.replies.is_empty(), "nobody waits for a replayed proposal: {answers:?}");
    assert_eq!(restarted.proposals_pending(), 1);
}

#[derive(Debug, Clone)]
enum Step {
    Discover(u8),
    Select(u8),
    Renew(u8),
    Release(u8),
    Decline(u8),
    Commit,
    Advance(u16),
    LeaderChange,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..16).prop_map(Step::Discover),
        (0u8..16).prop_map(Step::Select),
        (0u8..16).prop_map(Step::Renew),
        (0u8..16).prop_map(Step::Release),
        (0u8..16).prop_map(Step::Decline),
        Just(Step::Commit),
        (1u16..2000).prop_map(Step::Advance),
        Just(Step::LeaderChange),
    ]
}

/// DESIGN rule 6 (restart is recovery): a node restarted on its data answers nobody until its table
/// has applied the log it had committed before — its table may say an address is free, or a client's,
/// when a later entry says otherwise (the log after a snapshot replays in batches after start).
#[test]
fn a_restarted_node_answers_nobody_until_it_has_replayed_its_log() {
    let mut log = Log::new();
    let mut engine = engine().with_replay_until(2);
    assert!(engine.is_replaying());
    assert_eq!(engine.handle(&discover(mac(1)), T0_US), Action::Silent(Silence::Replaying));
    let renewal = renewing(mac(1), Ipv4Addr::new(10, 0, 0, 100));
    assert_eq!(engine.handle(&renewal, T0_US), Action::Silent(Silence::Replaying));
    log.commit(&mut engine, Vec::new(), T0_US);
    assert_eq!(engine.handle(&discover(mac(1)), T0_US), Action::Silent(Silence::Replaying), "index 1 of 2");
    log.commit(&mut engine, Vec::new(), T0_US);
    assert!(!engine.is_replaying());
    assert!(matches!(engine.handle(&discover(mac(1)), T0_US), Action::Send(_)), "replayed: it answers");
}

/// A snapshot is due after `snapshot_every_entries` entries, or sooner once the entries since the last
/// hold more commands than the table has records (at least 100,000): a restart then reads a snapshot
/// instead of replaying a log longer than the table.
#[test]
fn a_snapshot_is_due_when_the_log_since_the_last_outgrows_the_table() {
    let mut config = config();
    config.limits.snapshot_every_entries = 1_000_000;
    let mut engine = engine_with(config);
    let mut log = Log::new();
    let offered = engine.handle(&discover(mac(1)), T0_US);
    let Action::Send(offer) = offered else { panic!("DISCOVER answered {offered:?}") };
    let ip = offer.reply.yiaddr;
    let bind = expect_propose(engine.handle(&selecting(mac(1), ip, SERVER), T0_US));
    log.commit_one(&mut engine, bind.clone(), T0_US);
    // One client renewing 99,999 more times: one record, a log of 100,000 commands.
    log.commit(&mut engine, vec![bind.clone(); 99_998], T0_US);
    assert!(engine.snapshot_step(1_000).is_none(), "99,999 commands, 2 entries: not due yet");
    log.commit(&mut engine, vec![bind], T0_US);
    let part = engine.snapshot_step(1_000).expect("100,000 commands for one record: due");
    assert!(part.begun.is_some() && part.last && part.records.len() == 1);
    assert!(engine.snapshot_step(1_000).is_none(), "and not again right after");
}

fn reserve(engine: &mut Engine, chaddr: [u8; 6], ip: Ipv4Addr) -> Proposal {
    let host = ReservedHost { mac: chaddr, ip, hostname: None, boot_file: None };
    engine.propose_reservation(host, T0_US).expect("the reservation is proposed")
}

/// A reservation made over the admin API while a client's REQUEST is on its way to commit (the two
/// in one entry, or the reservation first): the binding commits, but the client is NAKed rather than
/// told to use an address the reservations now give to someone else, or not to it; it starts over
/// and is offered its reserved address. Found by the simulation.
#[test]
fn a_reservation_committed_while_a_request_was_in_flight_turns_its_ack_into_a_nak() {
    let mut engine = engine();
    let mut log = Log::new();
    let own = Ipv4Addr::new(10, 0, 0, 60);
    let offer = expect_send(engine.handle(&discover(mac(1)), T0_US));
    let bind = expect_propose(engine.handle(&selecting(mac(1), offer.reply.yiaddr, SERVER), T0_US));
    let reservation = reserve(&mut engine, mac(1), own);
    let answers = log.commit(&mut engine, vec![bind, reservation], T0_US);
    assert_eq!(answers.replies.len(), 1);
    let (nak, decision) = &answers.replies[0];
    assert_eq!((nak.reply.message_type, decision.outcome), (ReplyType::Nak, "nak_reserved"));
    let offer = expect_send(engine.handle(&discover(mac(1)), T0_US));
    assert_eq!(offer.reply.yiaddr, own, "back in INIT, the client is offered its reservation");

    // The address being bound is reserved for another client first.
    let offer = expect_send(engine.handle(&discover(mac(2)), T0_US));
    let taken = offer.reply.yiaddr;
    let bind = expect_propose(engine.handle(&selecting(mac(2), taken, SERVER), T0_US));
    let reservation = reserve(&mut engine, mac(3), taken);
    let answers = log.commit(&mut engine, vec![reservation, bind], T0_US);
    assert_eq!(answers.replies.len(), 1);
    assert_eq!(answers.replies[0].0.reply.message_type, ReplyType::Nak, "{taken} is mac 3's now");
}

/// DESIGN rule 5 with reservations: a node without a quorum does not confirm a lease the
/// reservations it knows now forbid (the leader would NAK that renewal); the client keeps it until
/// it rebinds, and the leader sends it to its reserved address.
#[test]
fn the_minority_side_confirms_no_lease_a_reservation_forbids() {
    let mut engine = engine();
    let mut log = Log::new();
    let ip = dora(&mut engine, &mut log, mac(1), T0_US).reply.yiaddr;
    let reservation = reserve(&mut engine, mac(1), Ipv4Addr::new(10, 0, 0, 60));
    log.commit(&mut engine, vec![reservation], T0_US);
    engine.set_role(Role::NoQuorum);
    let later = T0_US + 1800 * SECOND_US;
    assert_eq!(
        engine.handle_from(&renewing(mac(1), ip), Arrival::unicast(SERVER), later),
        Action::Silent(Silence::NoQuorum)
    );
    engine.set_role(Role::Leader);
    let nak = expect_send(engine.handle_from(&renewing(mac(1), ip), Arrival::unicast(SERVER), later));
    assert_eq!(nak.reply.message_type, ReplyType::Nak, "as the leader answers it");
}

/// A membership change makes a snapshot due at once: a node it adds can be sent only a snapshot
/// whose configuration names it (raft-rs refuses any other), and every older one does not; with
/// `snapshot_every_entries` entries to wait, the new node would not catch up until then.
#[test]
fn a_membership_change_makes_a_snapshot_due() {
    let mut config = config();
    config.limits.snapshot_every_entries = 1_000_000;
    let mut engine = engine_with(config);
    let mut log = Log::new();
    dora(&mut engine, &mut log, mac(1), T0_US);
    assert!(engine.snapshot_step(1_000).is_none(), "one entry: not due");
    // The next entry: a membership change (no proposals).
    let change = CommittedEntry {
        index: log.next_index,
        proposals: Vec::new(),
        changes_membership: true,
        membership: Vec::new(),
    };
    engine.apply_committed(&[change], T0_US);
    let part = engine.snapshot_step(1_000).expect("due after the membership change");
    assert!(part.begun.is_some(), "a new snapshot begins, at the change's index");
    assert_eq!(engine.table().applied_index(), 2);
    assert!(engine.snapshot_step(1_000).is_none(), "and not again right after");
}

proptest! {
    /// Whatever 16 clients do, in any order, with commits at any point and leader changes that
    /// forget offers: no address is bound to two clients, and every ACK names an address the
    /// committed table gives to that very client.
    #[test]
    fn no_address_is_ever_bound_to_two_clients(steps in proptest::collection::vec(step(), 1..200)) {
        let mut engine = engine_with(unlimited_config());
        let mut log = Log::new();
        let mut now = T0_US;
        let mut offered: BTreeMap<u8, Ipv4Addr> = BTreeMap::new();
        // Client -> (address, expiry in ms) of its last ACK.
        let mut acked: BTreeMap<u8, (Ipv4Addr, u64)> = BTreeMap::new();
        let mut queue = Vec::new();
        for step in steps {
            match step {
                Step::Discover(c) => {
                    let client = leasehold_cluster::ClientKey::Mac(mac(c));
                    let now_ms = now / 1000;
                    // Free for this client: no other client's live record, no other client's
                    // offer, not reserved for someone else, not this node's own address.
                    let free_for = |engine: &Engine, ip: Ipv4Addr| {
                        engine.table().is_available_to(ip, &client, now_ms)
                            && !engine.offers.held_by_other(ip, &client, now_ms)
                            && !engine.is_reserved(ip)
                            && ip != SERVER
                    };
                    match engine.handle(&discover(mac(c)), now) {
                        Action::Send(o) => {
                            let ip = o.reply.yiaddr;
                            // The allocator's pick: never bound to, offered to or reserved for
                            // another client, never declined and still in probation.
                            prop_assert!(engine.table().is_available_to(ip, &client, now_ms), "offered {} in use", ip);
                            prop_assert!(!engine.is_reserved(ip), "offered the reserved {}", ip);
                            prop_assert_eq!(engine.offers.of(&client, now_ms), Some(ip), "the offer is held for the client");
                            offered.insert(c, ip);
                        }
                        Action::Silent(Silence::PoolExhausted) => {
                            // Only when no address of the pool is free for the client.
                            let pool = &engine.config().pools[0];
                            let free = (u32::from(pool.range_start)..=u32::from(pool.range_end))
                                .map(Ipv4Addr::from)
                                .find(|ip| free_for(&engine, *ip));
                            prop_assert_eq!(free, None, "pool exhausted with an address free");
                        }
                        other => return Err(TestCaseError::fail(format!("DISCOVER answered {other:?}"))),
                    }
                }
                Step::Select(c) => {
                    if let Some(ip) = offered.get(&c) {
                        if let Action::Propose(p) = engine.handle(&selecting(mac(c), *ip, SERVER), now) {
                            queue.push(p);
                        }
                    }
                }
                Step::Renew(c) => {
                    if let Some((ip, _)) = acked.get(&c) {
                        if let Action::Propose(p) = engine.handle(&renewing(mac(c), *ip), now) {
                            queue.push(p);
                        }
                    }
                }
                Step::Release(c) => {
                    if let Some(&(ip, _)) = acked.get(&c) {
                        let r = Request { ciaddr: ip, server_id: Some(SERVER), ..request(ClientMessageType::Release, mac(c)) };
                        if let Action::Propose(p) = engine.handle(&r, now) {
                            queue.push(p);
                        }
                    }
                }
                Step::Decline(c) => {
                    if let Some(&(ip, _)) = acked.get(&c) {
                        let r = Request { requested_ip: Some(ip), server_id: Some(SERVER), ..request(ClientMessageType::Decline, mac(c)) };
                        if let Action::Propose(p) = engine.handle(&r, now) {
                            queue.push(p);
                        }
                    }
                }
                Step::Commit => {
                    // One entry per proposal, so each ACK is checked against the table right after
                    // its own apply (a RELEASE later in the same entry would hide it).
                    for proposal in std::mem::take(&mut queue) {
                    // A committed RELEASE or DECLINE ends the client's claim from that entry on.
                    let gives_up = match &proposal.command {
                        leasehold_cluster::Command::Release { client: leasehold_cluster::ClientKey::Mac(m), ip, .. }
                        | leasehold_cluster::Command::Decline { client: leasehold_cluster::ClientKey::Mac(m), ip, .. } => Some((m[5], *ip)),
                        _ => None,
                    };
                    let replies = log.commit(&mut engine, vec![proposal], now).replies;
                    if let Some((c, ip)) = gives_up {
                        if acked.get(&c).is_some_and(|(held, _)| *held == ip) {
                            acked.remove(&c);
                        }
                    }
                    for (outgoing, _) in replies {
                        if outgoing.reply.message_type == ReplyType::Ack {
                            let client = outgoing.reply.chaddr[5];
                            let lease = engine.table().by_ip(outgoing.reply.yiaddr).expect("ACKed address is in the table");
                            prop_assert_eq!(lease.mac, outgoing.reply.chaddr, "ACK for an address bound to another client");
                            let LeaseState::Bound { expires_at_ms } = lease.state else {
                                return Err(TestCaseError::fail(format!("ACK for a lease that is not bound: {lease:?}")));
                            };
                            prop_assert!(expires_at_ms > now / 1000, "ACK for an expired lease");
                            // A client holds one address: an ACK for a new one replaces the old.
                            acked.insert(client, (outgoing.reply.yiaddr, expires_at_ms));
                        }
                    }
                    }
                }
                Step::Advance(secs) => now += u64::from(secs) * SECOND_US,
                Step::LeaderChange => {
                    engine.set_leader(false);
                    engine.set_leader(true);
                }
            }
            prop_assert!(engine.table().check_invariants().is_ok());
            let now_ms = now / 1000;
            let mut holders: BTreeMap<Ipv4Addr, [u8; 6]> = BTreeMap::new();
            for lease in engine.table().iter().filter(|l| l.is_active(now_ms)) {
                prop_assert!(holders.insert(lease.ip, lease.mac).is_none(), "{} bound twice", lease.ip);
            }
            // Every ACKed, unexpired, unreleased binding is still held by its client.
            for (c, (ip, expires_at_ms)) in &acked {
                if *expires_at_ms > now_ms {
                    let lease = engine.table().by_ip(*ip);
                    prop_assert_eq!(lease.map(|l| l.mac), Some(mac(*c)), "ACKed lease {} taken from its client", ip);
                }
            }
        }
    }
}

/// DESIGN rule 2: a follower stays silent on broadcast traffic but answers a RENEW unicast to its
/// own server identifier; its proposal goes to the leader through Raft and it ACKs on apply.
#[test]
fn design_rule_2_follower_answers_only_renewals_addressed_to_it() {
    let mut engine = engine();
    let mut log = Log::new();
    let ip = dora(&mut engine, &mut log, mac(1), T0_US).reply.yiaddr;
    engine.set_role(Role::Follower);
    assert_eq!(engine.handle(&discover(mac(2)), T0_US), Action::Silent(Silence::NotLeader));
    assert_eq!(
        engine.handle_from(&renewing(mac(1), ip), Arrival::BROADCAST, T0_US),
        Action::Silent(Silence::NotLeader),
        "REBINDING (broadcast) is the leader's"
    );
    assert_eq!(
        engine.handle_from(&renewing(mac(1), ip), Arrival::unicast(Ipv4Addr::new(10, 0, 0, 2)), T0_US),
        Action::Silent(Silence::NotLeader),
        "a RENEW addressed to another node's server identifier is that node's"
    );
    let later = T0_US + 1800 * SECOND_US;
    let proposal = expect_propose(engine.handle_from(&renewing(mac(1), ip), Arrival::unicast(SERVER), later));
    let ack = log.commit_one(&mut engine, proposal, later);
    assert_eq!(ack.reply.message_type, ReplyType::Ack);
    assert_eq!(ack.reply.server_id, SERVER, "the follower answers with its own server identifier");
    assert_eq!(ack.reply.lease_time_secs, Some(3600));
}

/// RFC 2131 §4.3.2: the server a SELECTING client names answers it. A leader that made an OFFER and
/// then lost leadership (a hand-over, or an election) still answers the REQUEST naming it, binding
/// through the log, so the client is not left repeating it to a silent server; a REQUEST naming
/// another server stays that server's.
#[test]
fn a_former_leader_answers_the_selecting_request_for_its_own_offer() {
    let mut engine = engine();
    let mut log = Log::new();
    let offer = expect_send(engine.handle(&discover(mac(1)), T0_US));
    engine.set_role(Role::Follower);
    let other = selecting(mac(1), offer.reply.yiaddr, Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(engine.handle(&other, T0_US), Action::Silent(Silence::NotLeader), "another server was chosen");
    let proposal = expect_propose(engine.handle(&selecting(mac(1), offer.reply.yiaddr, SERVER), T0_US));
    let ack = log.commit_one(&mut engine, proposal, T0_US);
    assert_eq!((ack.reply.message_type, ack.reply.yiaddr), (ReplyType::Ack, offer.reply.yiaddr));
    assert_eq!(ack.reply.server_id, SERVER);
}

/// DESIGN rule 5: without a quorum a node binds nothing new, but confirms a committed, unexpired
/// lease for the time that remains on it, never beyond — and proposes nothing.
#[test]
fn design_rule_5_minority_side_renews_only_for_the_remaining_time() {
    let mut engine = engine();
    let mut log = Log::new();
    let ip = dora(&mut engine, &mut log, mac(1), T0_US).reply.yiaddr;
    engine.set_role(Role::NoQuorum);
    let later = T0_US + 3000 * SECOND_US;
    let ack = expect_send(engine.handle_from(&renewing(mac(1), ip), Arrival::unicast(SERVER), later));
    assert_eq!(ack.reply.message_type, ReplyType::Ack);
    assert_eq!(ack.reply.lease_time_secs, Some(600), "3600 s lease, 3000 s gone: 600 s remain, not more");
    assert_eq!(ack.reply.renewal_time_secs, Some(300));
    assert_eq!(engine.proposals_pending(), 0, "nothing proposed without a quorum");
    match engine.table().by_ip(ip).unwrap().state {
        LeaseState::Bound { expires_at_ms } => assert_eq!(expires_at_ms, T0_US / 1000 + 3_600_000, "table unchanged"),
        other => panic!("expected bound, got {other:?}"),
    }
    assert_eq!(
        engine.handle_from(&renewing(mac(2), Ipv4Addr::new(10, 0, 0, 104)), Arrival::unicast(SERVER), later),
        Action::Silent(Silence::NoQuorum),
        "no committed lease to confirm: silence"
    );
    let expired = T0_US + 3601 * SECOND_US;
    assert_eq!(
        engine.handle_from(&renewing(mac(1), ip), Arrival::unicast(SERVER), expired),
        Action::Silent(Silence::NoQuorum),
        "an expired lease is not confirmed"
    );
    assert_eq!(engine.handle(&discover(mac(3)), later), Action::Silent(Silence::NotLeader), "no OFFERs either");
    let release = Request { ciaddr: ip, server_id: Some(SERVER), ..request(ClientMessageType::Release, mac(1)) };
    assert_eq!(engine.handle_from(&release, Arrival::unicast(SERVER), later), Action::Silent(Silence::NotLeader));
}

/// DESIGN rule 2 across a leader change: a leader answers broadcasts only while its lease lasts,
/// checked against the time of each request, so one that was paused (SIGSTOP, a VM pause) past its
/// lease falls silent before it hears of the new leader.
#[test]
fn a_leader_whose_lease_ran_out_answers_like_the_minority_side() {
    let status = leasehold_cluster::RaftStatus {
        node_id: 1,
        term: 3,
        leader_id: Some(1),
        is_leader: true,
        lease_until_us: Some(5_000_000),
        commit_index: 10,
    };
    assert_eq!(Role::from_status(&status, 4_999_999), Role::Leader);
    assert_eq!(Role::from_status(&status, 5_000_000), Role::NoQuorum, "the lease ran out");
    let unconfirmed = leasehold_cluster::RaftStatus { lease_until_us: None, ..status };
    assert_eq!(Role::from_status(&unconfirmed, 0), Role::NoQuorum, "not yet confirmed in this term");
    let follower =
        leasehold_cluster::RaftStatus { is_leader: false, leader_id: Some(2), lease_until_us: None, ..status };
    assert_eq!(Role::from_status(&follower, 0), Role::Follower);
    let alone = leasehold_cluster::RaftStatus { is_leader: false, leader_id: None, lease_until_us: None, ..status };
    assert_eq!(Role::from_status(&alone, 0), Role::NoQuorum);
}

// ---------------------------------------------------------------------------------------------
// Relays (RFC 3046, 3527, 3011, 5107), several interfaces, and requests real clients send
// ---------------------------------------------------------------------------------------------

const RELAY: Ipv4Addr = Ipv4Addr::new(10, 9, 9, 1);

/// DORA through the relay at `RELAY` (giaddr set, option 82 `info`); returns the ACK.
fn relayed_dora(engine: &mut Engine, log: &mut Log, chaddr: [u8; 6], info: Option<Vec<u8>>, now_us: u64) -> Outgoing {
    let relayed = |request: Request| Request { giaddr: RELAY, hops: 1, relay_agent_info: info.clone(), ..request };
    let offer = expect_send(engine.handle(&relayed(discover(chaddr)), now_us));
    let server_id = offer.reply.server_id;
    let proposal = expect_propose(engine.handle(&relayed(selecting(chaddr, offer.reply.yiaddr, server_id)), now_us));
    let ack = log.commit_one(engine, proposal, now_us);
    assert_eq!((ack.reply.message_type, ack.reply.yiaddr), (ReplyType::Ack, offer.reply.yiaddr));
    assert_eq!(ack.destination, Destination::Relay(RELAY), "RFC 2131 §4.1: giaddr set, reply to the relay");
    ack
}

/// RFC 2131 §4.3.2 RENEWING: the client behind a relay unicasts its renewal straight to the server,
/// giaddr 0 and ciaddr in the relayed subnet. The subnet comes from ciaddr (not from the server's own
/// segment), the lease is extended at commit, the ACK goes to ciaddr — on a follower too (rule 2).
#[test]
fn relayed_client_renews_by_unicast_without_the_relay() {
    let mut engine = engine();
    let mut log = Log::new();
    let ip = relayed_dora(&mut engine, &mut log, mac(1), None, T0_US).reply.yiaddr;
    assert_eq!(ip, Ipv4Addr::new(10, 9, 9, 10), "the relayed pool");
    for (role, at_secs) in [(Role::Leader, 1800), (Role::Follower, 3600)] {
        engine.set_role(role);
        let later = T0_US + at_secs * SECOND_US;
        let renewal = renewing(mac(1), ip);
        let proposal = expect_propose(engine.handle_from(&renewal, Arrival::unicast(SERVER), later));
        let ack = log.commit_one(&mut engine, proposal, later);
        assert_eq!((ack.reply.message_type, ack.reply.yiaddr), (ReplyType::Ack, ip), "{role:?}");
        assert_eq!(ack.reply.option(3), Some(&[10, 9, 9, 1][..]), "the relayed pool's options");
        assert_eq!(ack.destination, Destination::Unicast(ip));
        assert_eq!(ack.reply.relay_agent_info, None, "RFC 3046 §2.2: no 82 in, none out");
        match engine.table().by_ip(ip).unwrap().state {
            LeaseState::Bound { expires_at_ms } => assert_eq!(expires_at_ms, later / 1000 + 3_600_000),
            other => panic!("expected bound, got {other:?}"),
        }
    }
    // Broadcast with that ciaddr and no relay is a client on the server's own segment: not its subnet.
    engine.set_role(Role::Leader);
    assert_eq!(engine.handle(&renewing(mac(1), ip), T0_US), Action::Silent(Silence::NotOurs));
}

/// RFC 3046 §2.2: option 82 comes back unchanged in every reply to a request that carried it.
#[test]
fn rfc3046_option_82_is_echoed_in_offer_ack_and_nak() {
    let mut engine = engine();
    let mut log = Log::new();
    let info = vec![1, 4, b'e', b't', b'h', b'1', 2, 2, 0xaa, 0xbb];
    let ack = relayed_dora(&mut engine, &mut log, mac(1), Some(info.clone()), T0_US);
    assert_eq!(ack.reply.relay_agent_info.as_ref(), Some(&info));
    let wrong = Request {
        giaddr: RELAY,
        relay_agent_info: Some(info.clone()),
        ..init_reboot(mac(1), Ipv4Addr::new(10, 9, 9, 11))
    };
    let nak = expect_send(engine.handle(&wrong, T0_US));
    assert_eq!(nak.reply.message_type, ReplyType::Nak);
    assert_eq!(nak.reply.relay_agent_info, Some(info));
}

/// RFC 3527 §3: with the link selection sub-option, giaddr is only where the reply goes; the subnet
/// is the sub-option's. Here giaddr lies in the server's own subnet, the link in the relayed one.
#[test]
fn rfc3527_link_selection_chooses_the_subnet_giaddr_gets_the_reply() {
    let mut engine = engine();
    let giaddr = Ipv4Addr::new(10, 0, 0, 254);
    let info = vec![5, 4, 10, 9, 9, 1];
    let relayed = Request { giaddr, relay_agent_info: Some(info.clone()), ..discover(mac(1)) };
    let offer = expect_send(engine.handle(&relayed, T0_US));
    assert_eq!(offer.reply.yiaddr, Ipv4Addr::new(10, 9, 9, 10), "the link-selected pool, not giaddr's");
    assert_eq!(offer.destination, Destination::Relay(giaddr));
    assert_eq!(offer.reply.relay_agent_info, Some(info));
}

/// RFC 3011 §3: option 118 picks the subnet and is echoed (a client that sent it drops replies
/// without it).
#[test]
fn rfc3011_subnet_selection_chooses_the_subnet_and_is_echoed() {
    let mut engine = engine();
    let subnet = Ipv4Addr::new(10, 9, 9, 0);
    let offer = expect_send(engine.handle(&Request { subnet_selection: Some(subnet), ..discover(mac(1)) }, T0_US));
    assert_eq!(offer.reply.yiaddr, Ipv4Addr::new(10, 9, 9, 10));
    assert_eq!(offer.reply.subnet_selection, Some(subnet));
    let plain = expect_send(engine.handle(&discover(mac(2)), T0_US));
    assert_eq!(plain.reply.subnet_selection, None);
    let unknown = Request { subnet_selection: Some(Ipv4Addr::new(172, 16, 0, 0)), ..discover(mac(3)) };
    assert_eq!(engine.handle(&unknown, T0_US), Action::Drop(DropReason::NoPool));
}

/// RFC 5107 §4: with the server identifier override sub-option, replies name the relay's address
/// as the server, and a REQUEST naming that address is meant for us.
#[test]
fn rfc5107_server_identifier_override_is_the_servers_name_for_the_client() {
    let mut engine = engine();
    let mut log = Log::new();
    let info = vec![11, 4, 10, 9, 9, 1];
    let ack = relayed_dora(&mut engine, &mut log, mac(1), Some(info.clone()), T0_US);
    assert_eq!(ack.reply.server_id, RELAY);
    // The client renews to the relay, which relays the REQUEST with the override again.
    let later = T0_US + 1800 * SECOND_US;
    let renewal = Request { giaddr: RELAY, relay_agent_info: Some(info), ..renewing(mac(1), ack.reply.yiaddr) };
    let proposal = expect_propose(engine.handle_from(&renewal, Arrival::unicast(SERVER), later));
    assert_eq!(log.commit_one(&mut engine, proposal, later).reply.server_id, RELAY);
    // Without the sub-option, a SELECTING REQUEST naming the relay is for another server.
    let other = Request { giaddr: RELAY, ..selecting(mac(2), Ipv4Addr::new(10, 9, 9, 11), RELAY) };
    assert_eq!(engine.handle(&other, T0_US), Action::Silent(Silence::OtherServerChosen));
}

/// A SELECTING REQUEST without option 50 (which §4.3.2 requires, and some clients leave out) is
/// answered for the address held for that client, as Kea does; with nothing held it is NAKed.
#[test]
fn selecting_without_requested_address_binds_the_held_offer() {
    let mut engine = engine();
    let mut log = Log::new();
    let offer = expect_send(engine.handle(&discover(mac(1)), T0_US));
    let bare = Request { server_id: Some(SERVER), ..request(ClientMessageType::Request, mac(1)) };
    let proposal = expect_propose(engine.handle(&bare, T0_US));
    let ack = log.commit_one(&mut engine, proposal, T0_US);
    assert_eq!((ack.reply.message_type, ack.reply.yiaddr), (ReplyType::Ack, offer.reply.yiaddr));
    let stranger = Request { server_id: Some(SERVER), ..request(ClientMessageType::Request, mac(2)) };
    assert_eq!(expect_send(engine.handle(&stranger, T0_US)).reply.message_type, ReplyType::Nak);
}

/// RFC 6842: the client identifier comes back in OFFER, ACK and NAK.
#[test]
fn rfc6842_client_identifier_is_echoed() {
    let mut engine = engine();
    let mut log = Log::new();
    let id = vec![0xff, 0, 0, 0, 1, 0, 1, 2];
    let with_id = |request: Request| Request { client_id: Some(id.clone()), ..request };
    let offer = expect_send(engine.handle(&with_id(discover(mac(1))), T0_US));
    assert_eq!(offer.reply.client_id.as_ref(), Some(&id));
    let proposal = expect_propose(engine.handle(&with_id(selecting(mac(1), offer.reply.yiaddr, SERVER)), T0_US));
    assert_eq!(log.commit_one(&mut engine, proposal, T0_US).reply.client_id.as_ref(), Some(&id));
    let nak = expect_send(engine.handle(&with_id(init_reboot(mac(1), Ipv4Addr::new(10, 0, 0, 109))), T0_US));
    assert_eq!((nak.reply.message_type, nak.reply.client_id.as_ref()), (ReplyType::Nak, Some(&id)));
}

/// RFC 2131 §4.3.5: an INFORM ACK carries the options (mask, routers, DNS) and no lease times.
#[test]
fn rfc2131_4_3_5_inform_carries_options_without_lease_times() {
    let mut engine = engine();
    let inform = Request { ciaddr: Ipv4Addr::new(10, 0, 0, 7), ..request(ClientMessageType::Inform, mac(1)) };
    let reply = expect_send(engine.handle(&inform, T0_US)).reply;
    assert_eq!(reply.subnet_mask, Some(Ipv4Addr::new(255, 255, 255, 0)));
    assert_eq!(reply.option(3), Some(&[10, 0, 0, 1][..]));
    assert_eq!(reply.option(6), Some(&[10, 0, 0, 1][..]));
    assert_eq!((reply.lease_time_secs, reply.renewal_time_secs, reply.rebinding_time_secs), (None, None, None));
}

/// `next_server` is the header's siaddr for every client, PXE or not (RFC 2131 §2).
#[test]
fn next_server_reaches_plain_clients_too() {
    let next_server = Ipv4Addr::new(10, 0, 0, 9);
    let mut config = config();
    config.pxe.next_server = Some(next_server);
    let mut engine = engine_with(config);
    let plain = Request { parameter_request_list: vec![1, 3, 6], ..discover(mac(1)) };
    let reply = expect_send(engine.handle(&plain, T0_US)).reply;
    assert_eq!(reply.siaddr, next_server);
    assert_eq!((reply.file, reply.tftp_server_name), (None, None), "no boot file to a client not booting");
}

/// UEFI HTTP boot (EDK2 HttpBootDxe): option 60 `HTTPClient` comes back with the URL in `file` and
/// option 67, chosen by `[pxe.arch]` for architecture 16.
#[test]
fn uefi_http_boot_gets_http_client_and_a_url() {
    let url = "http://10.0.0.9/snponly.efi";
    let mut config = config();
    config.pxe.arch_boot_files.insert(16, url.to_string());
    let mut engine = engine_with(config);
    let http = Request {
        vendor_class: Some(b"HTTPClient:Arch:00016:UNDI:003000".to_vec()),
        client_arch: Some(16),
        ..discover(mac(1))
    };
    let reply = expect_send(engine.handle(&http, T0_US)).reply;
    assert_eq!(reply.vendor_class.as_deref(), Some(&b"HTTPClient"[..]));
    assert_eq!((reply.file.as_deref(), reply.bootfile_name.as_deref()), (Some(url), Some(url)));
}

/// Several interfaces: each is its own directly attached subnet with its own server identifier,
/// and replies leave by the interface the request came in on.
#[test]
fn each_interface_serves_its_subnet_under_its_own_server_identifier() {
    let second = Ipv4Addr::new(10, 9, 9, 254);
    let mut config = config();
    config.interfaces = vec![
        Interface { name: Some("eth0".into()), server_ip: SERVER },
        Interface { name: Some("eth1".into()), server_ip: second },
    ];
    let mut engine = engine_with(config);
    let mut log = Log::new();
    let offer = expect_send(engine.handle_from(&discover(mac(1)), Arrival::BROADCAST.on(1), T0_US));
    assert_eq!((offer.reply.yiaddr, offer.reply.server_id, offer.interface), (Ipv4Addr::new(10, 9, 9, 10), second, 1));
    let first = expect_send(engine.handle_from(&discover(mac(2)), Arrival::BROADCAST, T0_US));
    assert_eq!((first.reply.yiaddr, first.reply.server_id, first.interface), (Ipv4Addr::new(10, 0, 0, 100), SERVER, 0));
    let select = selecting(mac(1), offer.reply.yiaddr, second);
    let proposal = expect_propose(engine.handle_from(&select, Arrival::BROADCAST.on(1), T0_US));
    let ack = log.commit_one(&mut engine, proposal, T0_US);
    assert_eq!((ack.reply.server_id, ack.interface), (second, 1));
    // A follower answers a renewal unicast to either of its addresses (DESIGN rule 2).
    engine.set_role(Role::Follower);
    let renewal = renewing(mac(1), offer.reply.yiaddr);
    assert!(matches!(engine.handle_from(&renewal, Arrival::unicast(second).on(1), T0_US), Action::Propose(_)));
}

// ---------------------------------------------------------------------------------------------
// Option data, client classes and BOOTP (issue 9)
// ---------------------------------------------------------------------------------------------

fn option(code: u8, data: &[u8]) -> leasehold_config::DhcpOption {
    leasehold_config::DhcpOption { code, data: data.to_vec(), always_send: false }
}

fn class(name: &str, matcher: leasehold_config::ClassMatch) -> leasehold_config::Class {
    leasehold_config::Class {
        name: name.into(),
        matcher,
        pools: None,
        forbid_pools: Vec::new(),
        boot_file: None,
        next_server: None,
        ipxe_script_url: None,
        boot_script: None,
        lease_time_secs: None,
        options: OptionSet::default(),
    }
}

/// RFC 2132 §9.8: configured options go to clients that ask for them in option 55.
#[test]
fn configured_options_follow_the_parameter_request_list() {
    let mut config = config();
    config.options = OptionSet(vec![option(42, &[10, 0, 0, 5]), option(26, &[0x23, 0x28])]);
    let mut engine = engine_with(config);
    let asking = Request { parameter_request_list: vec![1, 3, 42], ..discover(mac(1)) };
    let reply = expect_send(engine.handle(&asking, T0_US)).reply;
    assert_eq!(reply.option(42), Some(&[10, 0, 0, 5][..]));
    assert_eq!(reply.option(26), None, "interface-mtu was not asked for");
    assert_eq!(reply.parameter_request_list, vec![1, 3, 42], "the encoder orders by it");
}

/// A class selects pools, sets the lease time (T1/T2 follow it) and adds options; the first
/// matching class wins; a class may forbid the pool everyone else uses.
#[test]
fn a_class_chooses_the_pool_the_lease_time_and_options() {
    let mut config = config();
    config.pools.push(pool("lab2", [10, 0, 0], 150, 160));
    let mut special = class(
        "special",
        leasehold_config::ClassMatch { mac_prefix: Some(vec![2, 0, 0, 0, 0xaa]), ..Default::default() },
    );
    special.pools = Some(vec![2]);
    special.lease_time_secs = Some(600);
    special.options = OptionSet(vec![option(42, &[10, 0, 0, 6])]);
    let mut never_lab = class(
        "never-lab",
        leasehold_config::ClassMatch { vendor_class_prefix: Some(b"MSFT".to_vec()), ..Default::default() },
    );
    never_lab.forbid_pools = vec![0];
    // Listed after `special`: a client matching both is `special`'s.
    let shadowed = class("shadowed", leasehold_config::ClassMatch { mac_prefix: Some(vec![2]), ..Default::default() });
    config.classes = vec![special, never_lab, shadowed];
    let mut engine = engine_with(config);

    let member = Request { parameter_request_list: vec![1, 3, 42], ..discover([2, 0, 0, 0, 0xaa, 1]) };
    let reply = expect_send(engine.handle(&member, T0_US)).reply;
    assert_eq!(reply.yiaddr, Ipv4Addr::new(10, 0, 0, 150), "the class's pool");
    assert_eq!(
        (reply.lease_time_secs, reply.renewal_time_secs, reply.rebinding_time_secs),
        (Some(600), Some(300), Some(525))
    );
    assert_eq!(reply.option(42), Some(&[10, 0, 0, 6][..]));

    let windows = Request { vendor_class: Some(b"MSFT 5.0".to_vec()), ..discover([4, 0, 0, 0, 0, 1]) };
    assert_eq!(expect_send(engine.handle(&windows, T0_US)).reply.yiaddr, Ipv4Addr::new(10, 0, 0, 151));
    let anyone = discover([4, 0, 0, 0, 0, 2]);
    assert_eq!(expect_send(engine.handle(&anyone, T0_US)).reply.yiaddr, Ipv4Addr::new(10, 0, 0, 100));
}

/// A class's boot file and next server replace the architecture's; a reservation's still win.
#[test]
fn a_class_sets_the_boot_file_below_a_reservation() {
    let mut config = config();
    let mut rack =
        class("rack-7", leasehold_config::ClassMatch { circuit_id: Some(b"rack7".to_vec()), ..Default::default() });
    rack.boot_file = Some("rack7/snponly.efi".into());
    rack.next_server = Some(Ipv4Addr::new(10, 9, 9, 5));
    config.classes = vec![rack];
    config.reservations[0].boot_file = Some("special.efi".into());
    let mut engine = engine_with(config);
    let pxe = |chaddr| Request {
        vendor_class: Some(b"PXEClient:Arch:00007:UNDI:003016".to_vec()),
        client_arch: Some(7),
        giaddr: RELAY,
        relay_agent_info: Some(vec![1, 5, b'r', b'a', b'c', b'k', b'7']),
        ..discover(chaddr)
    };
    let reply = expect_send(engine.handle(&pxe(mac(1)), T0_US)).reply;
    assert_eq!((reply.file.as_deref(), reply.siaddr), (Some("rack7/snponly.efi"), Ipv4Addr::new(10, 9, 9, 5)));
    let elsewhere = Request { relay_agent_info: Some(vec![1, 5, b'r', b'a', b'c', b'k', b'8']), ..pxe(mac(2)) };
    assert_eq!(expect_send(engine.handle(&elsewhere, T0_US)).reply.file.as_deref(), Some("ipxe.efi"));
}

fn bootp(chaddr: [u8; 6]) -> Request {
    Request { parameter_request_list: vec![], ..request(ClientMessageType::Bootp, chaddr) }
}

/// RFC 951 / RFC 1542: a reserved BOOTP client gets a BOOTREPLY with its address, boot file and
/// next server once the binding is committed; no lease times, no DHCP message type.
#[test]
fn rfc1542_reserved_bootp_client_gets_a_bootreply_after_commit() {
    let mut config = config();
    config.reservations[0].boot_file = Some("bmc/firmware.bin".into());
    config.reservations[0].next_server = Some(Ipv4Addr::new(10, 0, 0, 9));
    let mut engine = engine_with(config);
    let mut log = Log::new();
    let proposal = expect_propose(engine.handle(&bootp(mac(0x99)), T0_US));
    let reply = log.commit_one(&mut engine, proposal, T0_US);
    assert_eq!(reply.reply.message_type, ReplyType::Bootp);
    assert_eq!(reply.reply.yiaddr, Ipv4Addr::new(10, 0, 0, 50));
    assert_eq!(
        (reply.reply.file.as_deref(), reply.reply.siaddr),
        (Some("bmc/firmware.bin"), Ipv4Addr::new(10, 0, 0, 9))
    );
    assert_eq!((reply.reply.lease_time_secs, reply.reply.renewal_time_secs), (None, None));
    assert_eq!(reply.max_bytes, 300, "RFC 951: a 64-byte vendor area");
    assert!(engine.table().by_ip(Ipv4Addr::new(10, 0, 0, 50)).is_some_and(|l| l.is_active(T0_US / 1000)));
    // Without a reservation and without a dynamic BOOTP pool: no answer.
    assert_eq!(engine.handle(&bootp(mac(1)), T0_US), Action::Silent(Silence::BootpNotServed));
}

/// A pool with `dynamic_bootp` serves BOOTP clients without a reservation, for its BOOTP lease time.
#[test]
fn dynamic_bootp_pool_serves_unreserved_clients() {
    let mut config = config();
    config.pools[0].dynamic_bootp = true;
    config.pools[0].bootp_lease_time_secs = 86_400;
    let mut engine = engine_with(config);
    let mut log = Log::new();
    let proposal = expect_propose(engine.handle(&bootp(mac(1)), T0_US));
    let reply = log.commit_one(&mut engine, proposal, T0_US).reply;
    assert_eq!((reply.message_type, reply.yiaddr), (ReplyType::Bootp, Ipv4Addr::new(10, 0, 0, 100)));
    match engine.table().by_ip(reply.yiaddr).map(|l| l.state) {
        Some(LeaseState::Bound { expires_at_ms }) => assert_eq!(expires_at_ms, T0_US / 1000 + 86_400_000),
        other => panic!("expected a bound lease, got {other:?}"),
    }
}

/// Pool usage for `/metrics` comes from the pools' indexes, not a walk of the table: two bound, then
/// one released, then the other expired (RFC 2131 §4.3.4, lease expiry); the relayed pool untouched.
#[test]
fn pool_usage_counts_bound_leases_as_they_are_released_and_expire() {
    let mut engine = engine();
    let mut log = Log::new();
    let bound = |engine: &Engine, now_us: u64| -> Vec<(String, u32, u32)> {
        engine.pool_usage(now_us / 1000).iter().map(|p| (p.name.to_string(), p.size, p.bound)).collect()
    };
    assert_eq!(bound(&engine, T0_US), vec![("lab".into(), 11, 0), ("relayed".into(), 11, 0)]);
    let first = dora(&mut engine, &mut log, mac(1), T0_US).reply.yiaddr;
    dora(&mut engine, &mut log, mac(2), T0_US);
    assert_eq!(bound(&engine, T0_US)[0], ("lab".into(), 11, 2));
    let release = Request { ciaddr: first, server_id: Some(SERVER), ..request(ClientMessageType::Release, mac(1)) };
    let proposal = expect_propose(engine.handle(&release, T0_US));
    log.commit(&mut engine, vec![proposal], T0_US);
    assert_eq!(bound(&engine, T0_US)[0], ("lab".into(), 11, 1), "the released lease is no longer bound");
    let lease_us = u64::from(engine.config().pools[0].lease_time_secs) * SECOND_US;
    assert_eq!(bound(&engine, T0_US + lease_us - SECOND_US)[0].2, 1, "a second before it ends");
    assert_eq!(bound(&engine, T0_US + lease_us + SECOND_US)[0].2, 0, "expired");
    assert_eq!(bound(&engine, T0_US + lease_us + SECOND_US)[1].2, 0);
}

mod hostile;

/// A reload (`Engine::reconfigure`) while offers are held: an offer whose address stays in a pool is
/// kept (the client's SELECTING REQUEST is proposed, RFC 2131 §4.3.2); one whose address left every
/// pool is let go and that REQUEST is NAKed; a new pool serves at once; bindings stay in the table.
#[test]
fn reload_keeps_offers_still_in_a_pool_drops_the_others_and_serves_new_pools() {
    let mut engine = engine_with(unlimited_config());
    let mut log = Log::new();
    let bound = dora(&mut engine, &mut log, mac(1), T0_US).reply.yiaddr;
    let offer_a = expect_send(engine.handle(&discover(mac(2)), T0_US)).reply.yiaddr;
    let offer_b = expect_send(engine.handle(&discover(mac(3)), T0_US)).reply.yiaddr;
    assert_eq!(
        (bound, offer_a, offer_b),
        (Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(10, 0, 0, 101), Ipv4Addr::new(10, 0, 0, 102))
    );

    // The new config: "lab" shrinks to .100-.101 (offer_b leaves it) and "third" is new.
    let mut new = unlimited_config();
    new.pools[0].range_end = Ipv4Addr::new(10, 0, 0, 101);
    new.pools.push(pool("third", [10, 0, 0], 200, 210));
    let done = engine.reconfigure(Arc::new(new), T0_US + SECOND_US);
    assert_eq!((done.pools, done.offers_kept, done.offers_dropped), (3, 1, 1), "{done:?}");

    let now = T0_US + SECOND_US;
    expect_propose(engine.handle(&selecting(mac(2), offer_a, SERVER), now));
    let nak = expect_send(engine.handle(&selecting(mac(3), offer_b, SERVER), now));
    assert_eq!(nak.reply.message_type, ReplyType::Nak, "an offer that left the pools: NAK, the client starts over");
    let from_third = expect_send(engine.handle(&discover(mac(4)), now)).reply.yiaddr;
    assert_eq!(from_third, Ipv4Addr::new(10, 0, 0, 200), "the full pool sends the next client to the new one");
    let kept = engine.table().by_ip(bound).map(|l| l.state);
    assert!(matches!(kept, Some(LeaseState::Bound { .. })), "bindings are not touched: {kept:?}");
}

/// Which keys a running node can take and which need a restart.
#[test]
fn restart_only_keys_are_named_and_the_rest_reload() {
    let old = config();
    let mut new = config();
    new.pools.push(pool("third", [10, 0, 1], 10, 20));
    new.limits.offer_hold_ms = 5_000;
    assert!(reload::restart_only_changes(&old, &new).is_empty());
    new.data_dir = PathBuf::from("/elsewhere");
    new.limits.max_frame_bytes = 2048;
    assert_eq!(reload::restart_only_changes(&old, &new), vec!["server.data_dir", "limits.max_frame_bytes"]);
}

/// RFC 2131 §4.3.4 and §4.3.2 (RENEWING) across a partition: a RELEASE and a renewal decided before
/// the client's binding changed are refused at apply (`stale`, the Raft log orders them after the
/// newer renewal), the binding stands, the late renewal is answered from it, and every node counts
/// the refusals by command (`leasehold_apply_outcomes_total`).
#[test]
fn a_release_and_a_renewal_decided_before_a_newer_binding_are_refused_and_counted_stale() {
    let mut engine = engine();
    let mut log = Log::new();
    let ip = dora(&mut engine, &mut log, mac(1), T0_US).reply.yiaddr;
    let release = Request { ciaddr: ip, server_id: Some(SERVER), ..request(ClientMessageType::Release, mac(1)) };
    let late_release = expect_propose(engine.handle(&release, T0_US));
    let late_renewal = expect_propose(engine.handle(&renewing(mac(1), ip), T0_US));
    let renewal = expect_propose(engine.handle(&renewing(mac(1), ip), T0_US + SECOND_US));
    let ack = log.commit_one(&mut engine, renewal, T0_US + SECOND_US);
    assert_eq!(ack.reply.message_type, ReplyType::Ack, "the renewal that commits first binds");
    let expiry = |engine: &Engine| match engine.table().by_ip(ip).map(|l| l.state) {
        Some(LeaseState::Bound { expires_at_ms }) => expires_at_ms,
        other => panic!("{ip} must stay bound, is {other:?}"),
    };
    let renewed_until = expiry(&engine);
    let answers = log.commit(&mut engine, vec![late_release], T0_US + 2 * SECOND_US);
    assert!(answers.replies.is_empty(), "§4.3.4: no reply to RELEASE");
    assert_eq!(expiry(&engine), renewed_until, "the late RELEASE did not end the newer binding");
    let late_ack = log.commit_one(&mut engine, late_renewal, T0_US + 2 * SECOND_US);
    assert_eq!(late_ack.reply.message_type, ReplyType::Ack, "the late renewal is answered from the binding");
    assert_eq!(expiry(&engine), renewed_until, "the late renewal did not move the expiry back");
    let counts: Vec<(&str, &str, u64)> = engine.applied_outcomes().collect();
    assert_eq!(counts, [("bind", "bound", 2), ("bind", "stale", 1), ("release", "stale", 1)]);
}

/// Issue 12: the leader puts its config digest in the log; a node compares its own file with it.
#[test]
fn the_leader_proposes_its_config_digest_once_and_a_node_with_another_file_sees_the_mismatch() {
    let mut leader = engine();
    let mut other_config = config();
    other_config.pools[0].lease_time_secs += 1;
    let mut follower = engine_with(other_config);
    follower.set_leader(false);
    assert_eq!(leader.config_mismatch(), None, "no digest in the log yet");
    assert!(follower.propose_config_digest().is_none(), "only the leader proposes it");

    let proposal = leader.propose_config_digest().expect("a new leader proposes its digest");
    let mut leader_log = Log::new();
    let mut follower_log = Log::new();
    leader_log.commit(&mut leader, vec![proposal.clone()], 0);
    follower_log.commit(&mut follower, vec![proposal], 0);
    assert_eq!(leader.table().config_digest(), Some(leader.config_digest()));
    assert_eq!(leader.config_mismatch(), Some(false));
    assert!(leader.propose_config_digest().is_none(), "the log carries it: nothing more to propose");
    assert_ne!(follower.config_digest(), leader.config_digest(), "a lease time is lease-relevant");
    assert_eq!(follower.config_mismatch(), Some(true), "the follower's file differs from the leader's");

    // The follower takes the leader's file: it agrees again, and the digest stays what the log says.
    follower.reconfigure(Arc::new(config()), 0);
    assert_eq!(follower.config_mismatch(), Some(false));
}
