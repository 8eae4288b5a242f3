//! Fuzz target: the sans-IO DHCP engine fed a sequence of steps — client messages (raw datagrams
//! through the parser, or built from parts so that a handful of clients meet over a handful of
//! addresses), Raft commits and refusals of its proposals, role changes, housekeeping, a restore
//! from its own snapshot, and a clock that waits, jumps ahead and steps back. Nothing may panic, and
//! after every step:
//!
//! - the engine's own invariants hold (one client per offered address, the table's indexes);
//! - no address is ACKed to a client while another client still holds it: each client believes in
//!   the address of its last ACK until the lease it was given runs out (counted from when it sent
//!   the REQUEST, RFC 2131 §4.4.1), and gives it up when it sends anything but a renewal of it;
//! - an ACK promises no longer than the committed binding lasts (DESIGN rules 1 and 5);
//! - an OFFER is of an address the committed table lets that client have, no other client
//!   holds, that is not the server's own, and not reserved for someone else;
//! - only the leader offers; a node without a quorum proposes nothing (DESIGN rules 2 and 5);
//! - every reply carries each option once and encodes within its limit.
#![no_main]

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use leasehold_cluster::{ClientKey, CommittedEntry, LeaseState, LeaseTable, Proposal};
use leasehold_config::Config;
use leasehold_node::engine::{Action, Arrival, Engine, Outgoing, Role};
use leasehold_node::wire::{self, ClientMessageType, Reply, ReplyType, Request};
use libfuzzer_sys::fuzz_target;

const CONFIG_TOML: &str = include_str!("../engine_sequence.toml");
/// 2023-11-14 in microseconds: the clock starts here.
const T0_US: u64 = 1_700_000_000_000_000;
/// Distinct client hardware addresses: 02:00:00:00:00:01 to :06 (01 and 03 are reserved by MAC).
const CLIENTS: u8 = 6;
/// Steps per input, so that one input cannot run for long.
const MAX_STEPS: usize = 256;

/// The target's node, with MAC identity and with client-id identity.
fn configs() -> &'static [Arc<Config>; 2] {
    static CONFIGS: OnceLock<[Arc<Config>; 2]> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        ["mac", "client-id"].map(|identity| {
            let text = CONFIG_TOML.replace("IDENTITY", identity);
            Arc::new(Config::from_toml_str(&text, "engine_sequence.toml").expect("the target's config loads"))
        })
    })
}

#[derive(Arbitrary, Debug)]
struct Input {
    client_id_identity: bool,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// Bytes from the wire, through the parser (a datagram it refuses changes nothing).
    Datagram {
        bytes: Vec<u8>,
        via: Via,
    },
    Message(Message),
    /// Raft commits the oldest `count` waiting proposals as one entry.
    Commit {
        count: u8,
    },
    /// Raft refuses the oldest `count` (leadership lost before they were appended).
    Reject {
        count: u8,
    },
    /// An entry without commands: a new leader's empty entry, or a membership change.
    EmptyEntry {
        changes_membership: bool,
    },
    Role(RoleChoice),
    Wait {
        ms: u16,
    },
    Jump {
        minutes: u16,
    },
    /// The wall clock steps back (an NTP correction).
    StepBack {
        ms: u16,
    },
    /// The lease actor's timers: proposal timeouts, apply parameters, record collection.
    Housekeeping,
    /// The table replaced by a decoded snapshot of itself, as a follower catching up gets it.
    Restore,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum RoleChoice {
    Leader,
    Follower,
    NoQuorum,
}

/// How a message arrives: broadcast or unicast to one of the node's addresses, on either interface,
/// or unicast to an address that is not the node's.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Via {
    Broadcast { second_interface: bool },
    ToServer { second_interface: bool },
    ToOther,
}

#[derive(Arbitrary, Debug)]
struct Message {
    kind: Kind,
    client: u8,
    /// Option 61: `Some(n)` is the hardware form (type 1 and a MAC of the clients' range) for even
    /// `n`, an opaque id shared by whoever sends the same odd `n`.
    client_id: Option<u8>,
    ciaddr: Option<Addr>,
    requested: Option<Addr>,
    server_id: Option<Addr>,
    relay: Option<Relay>,
    boot: Boot,
    max_message_size: Option<u16>,
    parameter_request_list: Vec<u8>,
    subnet_selection: Option<Addr>,
    hostname: bool,
    broadcast: bool,
    via: Via,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Kind {
    Discover,
    Request,
    Decline,
    Release,
    Inform,
    Bootp,
}

/// An address as a client would use one: what it was offered or holds, the server's, one from a
/// pool or a reservation, or anything.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    Offered,
    Held,
    Server,
    Pool { pool: u8, offset: u8 },
    Reserved(u8),
    Any(u32),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Relay {
    /// The relayed pool's router, the first pool's, or anything.
    giaddr: Addr,
    to_rack: bool,
    circuit: Option<bool>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Boot {
    Plain,
    PxeBios,
    PxeUefi,
    PxeArm64,
    HttpBoot,
    Ipxe,
}

/// What a client believes after an ACK: `ip` is its until `end_ms`.
#[derive(Debug, Clone, Copy)]
struct Belief {
    ip: Ipv4Addr,
    end_ms: u64,
}

struct Harness {
    config: Arc<Config>,
    engine: Engine,
    now_us: u64,
    role: Role,
    /// Proposals handed to "Raft", oldest first.
    waiting: VecDeque<Proposal>,
    next_index: u64,
    next_xid: u32,
    /// When each request (by its xid, unique per step) was sent, in milliseconds.
    sent_ms: HashMap<u32, u64>,
    /// The last address offered to, and ACKed to, each hardware address.
    offered: HashMap<[u8; 6], Ipv4Addr>,
    held: HashMap<[u8; 6], Ipv4Addr>,
    beliefs: HashMap<ClientKey, Belief>,
    /// Each client's current transaction: it takes an ACK only for that one (RFC 2131 §4.4.1).
    transaction: HashMap<ClientKey, u32>,
}

fuzz_target!(|input: Input| {
    let config = configs()[usize::from(input.client_id_identity)].clone();
    let limits = &config.limits;
    let table = LeaseTable::new(limits.expiry_grace_secs * 1000, limits.max_leases);
    let mut harness = Harness {
        engine: Engine::new(config.clone(), table, 1, 1),
        config,
        now_us: T0_US,
        role: Role::Leader,
        waiting: VecDeque::new(),
        next_index: 1,
        next_xid: 1,
        sent_ms: HashMap::new(),
        offered: HashMap::new(),
        held: HashMap::new(),
        beliefs: HashMap::new(),
        transaction: HashMap::new(),
    };
    harness.engine.set_role(Role::Leader);
    for step in input.steps.iter().take(MAX_STEPS) {
        harness.step(step);
        if let Err(broken) = harness.engine.check_invariants() {
            panic!("after {step:?}: {broken}");
        }
    }
});

impl Harness {
    fn now_ms(&self) -> u64 {
        self.now_us / 1000
    }

    fn step(&mut self, step: &Step) {
        match step {
            Step::Datagram { bytes, via } => {
                if let Ok(request) = wire::parse(bytes, self.config.limits.max_frame_bytes) {
                    self.handle(request, *via);
                }
            }
            Step::Message(message) => {
                let request = self.build(message);
                self.handle(request, message.via);
            }
            Step::Commit { count } => {
                let count = usize::from(*count).min(self.waiting.len());
                if count > 0 {
                    let proposals = self.waiting.drain(..count).collect();
                    self.apply(CommittedEntry { index: self.next_index, proposals, changes_membership: false, membership: Vec::new() });
                }
            }
            Step::Reject { count } => {
                let count = usize::from(*count).min(self.waiting.len());
                let tags: Vec<_> = self.waiting.drain(..count).map(|p| p.tag).collect();
                self.engine.rejected(&tags);
            }
            Step::EmptyEntry { changes_membership } => self.apply(CommittedEntry {
                index: self.next_index,
                proposals: Vec::new(),
                changes_membership: *changes_membership,
                membership: Vec::new(),
            }),
            Step::Role(choice) => {
                self.role = match choice {
                    RoleChoice::Leader => Role::Leader,
                    RoleChoice::Follower => Role::Follower,
                    RoleChoice::NoQuorum => Role::NoQuorum,
                };
                self.engine.set_role(self.role);
            }
            Step::Wait { ms } => self.now_us += u64::from(*ms) * 1000,
            Step::Jump { minutes } => self.now_us += u64::from(*minutes) * 60_000_000,
            Step::StepBack { ms } => self.now_us = self.now_us.saturating_sub(u64::from(*ms) * 1000),
            Step::Housekeeping => {
                self.engine.expire_pending(self.now_us);
                let parameters = self.engine.propose_parameters();
                let collection = self.engine.propose_collection(self.now_us);
                self.waiting.extend(parameters.into_iter().chain(collection));
            }
            Step::Restore => {
                let table = self.engine.table();
                let (snapshot, digest) = (table.to_snapshot(), table.digest());
                let limits = &self.config.limits;
                let restored = LeaseTable::from_snapshot(&snapshot, limits.expiry_grace_secs * 1000, limits.max_leases)
                    .expect("a table's own snapshot decodes");
                assert_eq!(restored.digest(), digest, "a snapshot restores the same table");
                self.engine.restore(restored);
            }
        }
    }

    fn apply(&mut self, entry: CommittedEntry) {
        self.next_index += 1;
        let answers = self.engine.apply_committed(&[entry], self.now_us);
        for (outgoing, _) in answers.replies {
            let sent_ms = self.sent_ms.get(&outgoing.reply.xid).copied().expect("a reply to a request we sent");
            self.check_outgoing(&outgoing, sent_ms);
        }
    }

    fn handle(&mut self, mut request: Request, via: Via) {
        request.xid = self.next_xid;
        self.next_xid += 1;
        let now_ms = self.now_ms();
        self.sent_ms.insert(request.xid, now_ms);

        // A client keeps its address only while it renews it (RENEWING/REBINDING, or INIT-REBOOT
        // with it) or asks for configuration; anything else means it gave it up.
        let client = self.engine.client_key(&request);
        self.transaction.insert(client.clone(), request.xid);
        if let Some(belief) = self.beliefs.get(&client) {
            let keeps = match request.message_type {
                ClientMessageType::Inform => true,
                ClientMessageType::Request if request.server_id.is_none() => {
                    (request.ciaddr == belief.ip && request.requested_ip.is_none())
                        || (request.ciaddr.is_unspecified() && request.requested_ip == Some(belief.ip))
                }
                _ => false,
            };
            if !keeps {
                self.beliefs.remove(&client);
            }
        }

        let arrival = self.arrival(via);
        match self.engine.handle_from(&request, arrival, self.now_us) {
            Action::Send(outgoing) => {
                assert!(
                    outgoing.reply.message_type != ReplyType::Offer || self.role == Role::Leader,
                    "an OFFER from a {:?} node",
                    self.role
                );
                self.check_outgoing(&outgoing, now_ms);
            }
            Action::Propose(proposal) => {
                assert_ne!(self.role, Role::NoQuorum, "a proposal without a quorum: {proposal:?}");
                self.waiting.push_back(proposal);
            }
            Action::Silent(_) | Action::Drop(_) => {}
        }
    }

    fn arrival(&self, via: Via) -> Arrival {
        let interface = |second: bool| usize::from(second).min(self.config.interfaces.len() - 1);
        match via {
            Via::Broadcast { second_interface } => Arrival::BROADCAST.on(interface(second_interface)),
            Via::ToServer { second_interface } => {
                let i = interface(second_interface);
                Arrival::unicast(self.config.interfaces[i].server_ip).on(i)
            }
            Via::ToOther => Arrival::unicast(Ipv4Addr::new(10, 0, 0, 99)),
        }
    }

    fn address(&self, addr: Addr, chaddr: [u8; 6]) -> Ipv4Addr {
        let pools = &self.config.pools;
        match addr {
            Addr::Offered => self.offered.get(&chaddr).copied().unwrap_or(Ipv4Addr::UNSPECIFIED),
            Addr::Held => self.held.get(&chaddr).copied().unwrap_or(Ipv4Addr::UNSPECIFIED),
            Addr::Server => self.config.server_ip,
            Addr::Pool { pool, offset } => {
                let pool = &pools[usize::from(pool) % pools.len()];
                // One past either end too.
                let start = u32::from(pool.range_start).wrapping_sub(1);
                Ipv4Addr::from(start.wrapping_add(u32::from(offset) % (pool.size() + 2)))
            }
            Addr::Reserved(n) => {
                let reservations = &self.config.reservations;
                reservations[usize::from(n) % reservations.len()].ip
            }
            Addr::Any(raw) => Ipv4Addr::from(raw),
        }
    }

    fn build(&self, message: &Message) -> Request {
        let chaddr = [2, 0, 0, 0, 0, message.client % CLIENTS + 1];
        let message_type = match message.kind {
            Kind::Discover => ClientMessageType::Discover,
            Kind::Request => ClientMessageType::Request,
            Kind::Decline => ClientMessageType::Decline,
            Kind::Release => ClientMessageType::Release,
            Kind::Inform => ClientMessageType::Inform,
            Kind::Bootp => ClientMessageType::Bootp,
        };
        let address = |addr: Option<Addr>| addr.map(|a| self.address(a, chaddr));
        let mut request = Request {
            broadcast: message.broadcast,
            ciaddr: address(message.ciaddr).unwrap_or(Ipv4Addr::UNSPECIFIED),
            requested_ip: address(message.requested),
            server_id: address(message.server_id),
            client_id: message.client_id.map(|n| match n % 2 {
                0 => vec![1, 2, 0, 0, 0, 0, n / 2 % CLIENTS + 1],
                _ => vec![0, b'c', n / 2 % 3],
            }),
            hostname: message.hostname.then(|| format!("host-{}", chaddr[5])),
            max_message_size: message.max_message_size,
            parameter_request_list: message.parameter_request_list.clone(),
            subnet_selection: address(message.subnet_selection),
            ..Request::new(message_type, 0, chaddr)
        };
        if let Some(relay) = message.relay {
            request.giaddr = match relay.giaddr {
                Addr::Any(raw) if relay.to_rack => Ipv4Addr::from(raw),
                _ if relay.to_rack => Ipv4Addr::new(10, 9, 9, 1),
                other => self.address(other, chaddr),
            };
            request.hops = 1;
            request.relay_agent_info = relay.circuit.map(|rack| {
                let circuit: &[u8] = if rack { b"rack7" } else { b"rack8" };
                let mut info = vec![1, circuit.len() as u8];
                info.extend_from_slice(circuit);
                info.extend_from_slice(&[2, 2, 0xab, chaddr[5]]);
                info
            });
        }
        let (vendor_class, arch, ipxe): (Option<&[u8]>, Option<u16>, bool) = match message.boot {
            Boot::Plain => (None, None, false),
            Boot::PxeBios => (Some(b"PXEClient:Arch:00000:UNDI:002001"), Some(0), false),
            Boot::PxeUefi => (Some(b"PXEClient:Arch:00007:UNDI:003016"), Some(7), false),
            Boot::PxeArm64 => (Some(b"PXEClient:Arch:00011:UNDI:003016"), Some(11), false),
            Boot::HttpBoot => (Some(b"HTTPClient:Arch:00016:UNDI:003001"), Some(16), false),
            Boot::Ipxe => (Some(b"PXEClient:Arch:00000:UNDI:002001"), Some(0), true),
        };
        request.vendor_class = vendor_class.map(<[u8]>::to_vec);
        request.client_arch = arch;
        if arch.is_some() {
            request.client_uuid = Some([0].into_iter().chain([chaddr[5]; 16]).collect());
        }
        if ipxe {
            request.user_class = Some(b"iPXE".to_vec());
            request.has_ipxe_option = true;
        }
        request
    }

    /// Checks one reply, sent now or from a commit, for a request sent at `sent_ms`.
    fn check_outgoing(&mut self, outgoing: &Outgoing, sent_ms: u64) {
        let reply = &outgoing.reply;
        assert!(outgoing.interface < self.config.interfaces.len(), "interface {} of none", outgoing.interface);
        check_options_once(reply);
        let emitted = wire::emit(reply, outgoing.max_bytes);
        assert!(wire::reply_options(&emitted.bytes).is_some(), "an undecodable reply: {reply:?}");

        let ip = reply.yiaddr;
        if ip.is_unspecified() {
            return; // a NAK, or INFORM's ACK
        }
        let Some(client) = self.client_of(reply) else { panic!("a reply to a client that sent nothing: {reply:?}") };
        let now_ms = self.now_ms();
        if let Some((other, belief)) =
            self.beliefs.iter().find(|(c, b)| **c != client && b.ip == ip && b.end_ms > now_ms)
        {
            panic!(
                "{:?} of {ip} to {client} while {other} holds it until {} ms from now",
                reply.message_type,
                belief.end_ms - now_ms
            );
        }
        assert!(!self.config.is_own_address(ip), "{:?} of the server's own address {ip}", reply.message_type);
        match reply.message_type {
            ReplyType::Offer => {
                let table = self.engine.table();
                assert!(table.is_available_to(ip, &client, now_ms), "OFFER of {ip} to {client}: {:?}", table.by_ip(ip));
                for reservation in self.config.reservations.iter().filter(|r| r.ip == ip) {
                    let theirs = reservation.mac == Some(reply.chaddr)
                        || (reservation.client_id.is_some() && reservation.client_id == reply.client_id);
                    assert!(theirs, "OFFER of {ip}, reserved for {reservation:?}, to {client}");
                }
                self.offered.insert(reply.chaddr, ip);
            }
            ReplyType::Ack | ReplyType::Bootp => {
                let lease = self.engine.table().by_ip(ip).cloned();
                let Some(lease) = lease.as_ref().filter(|l| l.client == client) else {
                    panic!("ACK of {ip} to {client}, committed to {lease:?}");
                };
                let LeaseState::Bound { expires_at_ms } = lease.state else {
                    panic!("ACK of {ip} to {client}, whose record is {:?}", lease.state);
                };
                let end_ms = match reply.lease_time_secs {
                    Some(secs) => sent_ms + u64::from(secs) * 1000,
                    // A BOOTP client is given no lease time: it holds the address while it is bound.
                    None => expires_at_ms,
                };
                assert!(
                    end_ms <= expires_at_ms,
                    "ACK of {ip} to {client} until {end_ms}, committed until {expires_at_ms}"
                );
                // An ACK for an earlier transaction is ignored by the client (but checked above).
                if self.transaction.get(&client) == Some(&reply.xid) {
                    self.beliefs.insert(client, Belief { ip, end_ms });
                    self.held.insert(reply.chaddr, ip);
                }
            }
            ReplyType::Nak => panic!("a NAK with yiaddr {ip}"),
        }
    }

    /// The client a reply goes to, as the table knows it (options 61 echoed, RFC 6842).
    fn client_of(&self, reply: &Reply) -> Option<ClientKey> {
        let request = Request {
            client_id: reply.client_id.clone(),
            ..Request::new(ClientMessageType::Discover, 0, reply.chaddr)
        };
        Some(self.engine.client_key(&request))
    }
}

/// RFC 3396: a receiver joins every instance of a code, so each goes out once.
fn check_options_once(reply: &Reply) {
    let named = [
        (60, reply.vendor_class.as_ref().is_some_and(|v| !v.is_empty())),
        (61, reply.client_id.as_ref().is_some_and(|v| !v.is_empty())),
        (66, reply.tftp_server_name.as_ref().is_some_and(|v| !v.is_empty())),
        (67, reply.bootfile_name.as_ref().is_some_and(|v| !v.is_empty())),
        (97, reply.client_uuid.as_ref().is_some_and(|v| !v.is_empty())),
        (56, reply.message.as_ref().is_some_and(|v| !v.is_empty())),
        (82, reply.relay_agent_info.as_ref().is_some_and(|v| !v.is_empty())),
        (118, reply.subnet_selection.is_some()),
        (1, reply.subnet_mask.is_some()),
        (51, reply.lease_time_secs.is_some()),
        (58, reply.renewal_time_secs.is_some()),
        (59, reply.rebinding_time_secs.is_some()),
        (53, true),
        (54, true),
    ];
    let mut codes: Vec<u8> = named.iter().filter(|(_, present)| *present).map(|(code, _)| *code).collect();
    codes.extend(reply.options.iter().map(|(code, _)| *code));
    let mut sorted = codes.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), codes.len(), "an option code twice in {codes:?}");
}
