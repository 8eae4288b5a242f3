//! Leases brought over from another DHCP server (`leasehold import`): each one the engine can take
//! becomes a `Bind` through the Raft log with the source's absolute expiry, so the client renews the
//! same address from Leasehold; the others are refused, one reason each.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use leasehold_cluster::{ClientKey, Command, Proposal};
use leasehold_config::ClientIdentity;
use serde::{Deserialize, Serialize};

use super::Engine;

/// Leases one import request carries at most (a bigger file goes in several requests).
pub const MAX_IMPORT_LEASES: usize = 10_000;

/// One active lease of the old server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedLease {
    pub ip: Ipv4Addr,
    /// "aa:bb:cc:dd:ee:ff".
    pub mac: String,
    /// Option 61 as hex bytes ("01:aa:bb:..."), when the old server recorded one.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Unix seconds.
    pub expires_at: u64,
    #[serde(default)]
    pub hostname: Option<String>,
}

/// A lease the engine would not take, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportRefusal {
    pub ip: Ipv4Addr,
    pub mac: String,
    pub reason: String,
}

fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    text.split(':').map(|byte| u8::from_str_radix(byte, 16).ok()).collect()
}

impl Engine {
    /// Bind commands for the leases of `leases` this node can take, with the refusals of the rest.
    /// A lease is refused when it has ended by `now_us`, its address is outside every pool's range,
    /// is a server's own or is reserved for another client, when another client holds the address or
    /// this client holds another one (live, in the committed table), or when the file names the
    /// address or the client twice. Apply can still refuse one the table gave away meanwhile.
    pub fn propose_import(&mut self, leases: &[ImportedLease], now_us: u64) -> (Vec<Proposal>, Vec<ImportRefusal>) {
        let now_ms = now_us / 1000;
        let mut proposals = Vec::new();
        let mut refused = Vec::new();
        let (mut ips, mut clients) = (HashSet::new(), HashSet::new());
        for lease in leases {
            let refuse = |reason: String| ImportRefusal { ip: lease.ip, mac: lease.mac.clone(), reason };
            let mac: Option<[u8; 6]> = hex_bytes(&lease.mac).and_then(|bytes| bytes.try_into().ok());
            let Some(mac) = mac else {
                refused.push(refuse(format!("`{}` is not a MAC address", lease.mac)));
                continue;
            };
            let client_id = match lease.client_id.as_deref().filter(|id| !id.is_empty()) {
                None => None,
                Some(text) => match hex_bytes(text) {
                    Some(bytes) if (2..=255).contains(&bytes.len()) => Some(bytes),
                    _ => {
                        refused.push(refuse(format!("client_id `{text}` is not 2 to 255 hex bytes")));
                        continue;
                    }
                },
            };
            let client = match (self.config.identity, &client_id) {
                (ClientIdentity::ClientId, Some(id)) => ClientKey::ClientId(id.as_slice().into()),
                _ => ClientKey::Mac(mac),
            };
            let expires_at_ms = lease.expires_at.saturating_mul(1000);
            let reservation = self.reservation_of(mac, client_id.as_deref()).map(|r| r.ip);
            let holder = self.table.by_ip(lease.ip).filter(|l| l.is_active(now_ms) && l.client != client);
            let holds_other =
                self.table.by_client(&client).filter(|l| l.ip != lease.ip && l.is_active(now_ms)).map(|l| l.ip);
            let problem = if expires_at_ms <= now_ms {
                Some("the lease has ended".to_string())
            } else if !self.config.pools.iter().any(|pool| pool.contains(lease.ip)) {
                Some("the address is outside every pool's range".to_string())
            } else if self.config.is_own_address(lease.ip) {
                Some("the address is this server's own".to_string())
            } else if self.is_reserved(lease.ip) && reservation != Some(lease.ip) {
                Some("the address is reserved for another client".to_string())
            } else if reservation.is_some_and(|ip| ip != lease.ip) {
                Some(format!("the client is reserved {}", reservation.unwrap_or(Ipv4Addr::UNSPECIFIED)))
            } else if let Some(holder) = holder {
                Some(format!("the address is leased to {}", holder.client))
            } else if let Some(ip) = holds_other {
                Some(format!("the client holds {ip}"))
            } else if !ips.insert(lease.ip) {
                Some("the file names the address twice".to_string())
            } else if !clients.insert(client.clone()) {
                Some("the file names the client twice".to_string())
            } else {
                None
            };
            if let Some(reason) = problem {
                refused.push(refuse(reason));
                continue;
            }
            let hostname = lease.hostname.clone().filter(|h| !h.is_empty() && h.len() <= 255 && !h.contains('\0'));
            let command = Command::Bind {
                client,
                mac,
                client_id,
                hostname,
                ip: lease.ip,
                expires_at_ms,
                proposed_at_ms: now_ms,
                decided_at_index: self.table.applied_index(),
            };
            let tag = self.next_tag();
            self.pending_admin.insert(tag, now_us);
            proposals.push(Proposal { tag, command });
        }
        (proposals, refused)
    }
}
