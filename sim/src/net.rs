//! The fake network: who can reach whom, and what happens to each datagram on the way.
//!
//! Two kinds of links share one model. Peer links carry Raft messages between nodes and obey the
//! partition (nodes talk only inside their group). Client links are the DHCP segment: a node whose
//! client link is down neither hears clients nor reaches them, whatever its peer partition — so a
//! node cut off from its peers but still on the segment is the "minority side" of DESIGN rule 5.
//! Every datagram independently may be lost, delayed (which reorders) or duplicated.

use crate::rng::Rng;

/// Per-datagram fault rates and delays, changed over a run by the fault schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Weather {
    pub loss_ppm: u32,
    pub duplicate_ppm: u32,
    pub min_delay_us: u64,
    pub max_delay_us: u64,
}

impl Weather {
    /// A healthy LAN: no loss, sub-millisecond to a few milliseconds of delay.
    pub const CALM: Weather = Weather { loss_ppm: 0, duplicate_ppm: 0, min_delay_us: 100, max_delay_us: 2_000 };
}

/// Most deliveries of one datagram: the original and one duplicate.
pub const MAX_COPIES: usize = 2;

#[derive(Debug, Clone)]
pub struct Network {
    /// Partition group of each node (index = node id - 1); peers talk only within a group.
    groups: Vec<u8>,
    /// Whether each node is on the clients' segment.
    client_links: Vec<bool>,
    pub weather: Weather,
    /// Bumped by every partition change, so a scheduled heal only undoes its own partition.
    pub partition_generation: u64,
}

impl Network {
    pub fn new(nodes: usize) -> Self {
        Network {
            groups: vec![0; nodes],
            client_links: vec![true; nodes],
            weather: Weather::CALM,
            partition_generation: 0,
        }
    }

    pub fn peers_connected(&self, a: usize, b: usize) -> bool {
        self.groups[a] == self.groups[b]
    }

    pub fn client_link(&self, node: usize) -> bool {
        self.client_links[node]
    }

    pub fn set_client_link(&mut self, node: usize, up: bool) {
        self.client_links[node] = up;
    }

    /// Put the nodes in `minority` (indexes) in a group of their own; returns the new generation.
    pub fn partition(&mut self, isolated: &[usize]) -> u64 {
        self.groups.iter_mut().for_each(|g| *g = 0);
        for &node in isolated {
            self.groups[node] = 1;
        }
        self.partition_generation += 1;
        self.partition_generation
    }

    /// Cut every peer link: each node alone.
    pub fn scatter(&mut self) -> u64 {
        for (i, g) in self.groups.iter_mut().enumerate() {
            *g = i as u8;
        }
        self.partition_generation += 1;
        self.partition_generation
    }

    pub fn heal_partition(&mut self) {
        self.groups.iter_mut().for_each(|g| *g = 0);
        self.partition_generation += 1;
    }

    pub fn is_partitioned(&self) -> bool {
        self.groups.iter().any(|&g| g != self.groups[0])
    }

    pub fn groups(&self) -> &[u8] {
        &self.groups
    }

    /// Heal everything: one group, every node on the segment, calm weather.
    pub fn heal_all(&mut self) {
        self.heal_partition();
        self.client_links.iter_mut().for_each(|l| *l = true);
        self.weather = Weather::CALM;
    }

    /// The delays after which copies of one datagram arrive; empty when it is lost.
    pub fn fates(&self, rng: &mut Rng) -> Fates {
        let mut fates = Fates { delays_us: [0; MAX_COPIES], len: 0 };
        let w = self.weather;
        if rng.chance(w.loss_ppm) {
            return fates;
        }
        fates.push(rng.between(w.min_delay_us, w.max_delay_us));
        if rng.chance(w.duplicate_ppm) {
            fates.push(rng.between(w.min_delay_us, w.max_delay_us));
        }
        fates
    }
}

/// Arrival delays of the copies of one datagram.
#[derive(Debug, Clone, Copy)]
pub struct Fates {
    delays_us: [u64; MAX_COPIES],
    len: usize,
}

impl Fates {
    /// Every copy lost.
    pub const LOST: Fates = Fates { delays_us: [0; MAX_COPIES], len: 0 };

    fn push(&mut self, delay_us: u64) {
        self.delays_us[self.len] = delay_us;
        self.len += 1;
    }

    pub fn delays_us(&self) -> &[u64] {
        &self.delays_us[..self.len]
    }
}
