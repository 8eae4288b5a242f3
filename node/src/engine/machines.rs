//! What this node remembers of network-boot clients for their iPXE scripts (`boot_script`): the
//! architecture (option 93) and class of each boot client's last request it answered. The lease
//! table knows neither, and iPXE fetches its script from the node that answered its DHCP, so a
//! node-local memory is enough. Bounded by `MAX_BOOT_CLIENTS`; plain clients are never recorded.

use std::collections::{HashMap, VecDeque};

/// Boot clients remembered at most; past it the one first recorded is forgotten.
pub const MAX_BOOT_CLIENTS: usize = 65_536;

/// What a boot client's last request said about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BootFacts {
    /// RFC 4578 option 93.
    pub arch: Option<u16>,
    /// Index of its class in `Config::classes`.
    pub class: Option<usize>,
}

#[derive(Debug, Default)]
pub struct BootClients {
    facts: HashMap<[u8; 6], BootFacts>,
    /// MACs in the order they were first recorded, for eviction.
    order: VecDeque<[u8; 6]>,
}

impl BootClients {
    pub fn note(&mut self, mac: [u8; 6], facts: BootFacts) {
        if let Some(known) = self.facts.get_mut(&mac) {
            *known = facts;
            return;
        }
        if self.facts.len() >= MAX_BOOT_CLIENTS {
            if let Some(oldest) = self.order.pop_front() {
                self.facts.remove(&oldest);
            }
        }
        self.facts.insert(mac, facts);
        self.order.push_back(mac);
    }

    pub fn get(&self, mac: [u8; 6]) -> Option<BootFacts> {
        self.facts.get(&mac).copied()
    }

    /// A reload may renumber the classes: what was recorded no longer names the right one.
    pub fn forget_classes(&mut self) {
        self.facts.values_mut().for_each(|facts| facts.class = None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_request_wins_and_the_memory_is_bounded() {
        let mut clients = BootClients::default();
        clients.note([0; 6], BootFacts { arch: Some(0), class: None });
        clients.note([0; 6], BootFacts { arch: Some(7), class: Some(1) });
        assert_eq!(clients.get([0; 6]), Some(BootFacts { arch: Some(7), class: Some(1) }));
        for i in 1..=MAX_BOOT_CLIENTS as u32 {
            let [a, b, c, d] = i.to_be_bytes();
            clients.note([1, 0, a, b, c, d], BootFacts::default());
        }
        assert_eq!(clients.facts.len(), MAX_BOOT_CLIENTS);
        assert_eq!(clients.get([0; 6]), None, "the first recorded went first");
        assert!(clients.get([1, 0, 0, 0, 0, 1]).is_some());
        clients.forget_classes();
        assert!(clients.facts.values().all(|f| f.class.is_none()));
    }
}
