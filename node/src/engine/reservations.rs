//! Reservations made over the admin API: checked here, replicated through the Raft log as
//! `Command::Reserve`/`Unreserve`, applied by the lease table, and looked up beside the config
//! file's own. An `impl Engine` block: the engine owns the table and the pending proposals.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use leasehold_cluster::{ClientKey, Command, Outcome, Proposal, ProposalTag, ReservedHost};
use leasehold_config::{OptionSet, Reservation, MAX_BOOT_FILE_BYTES};

use super::Engine;

/// What an admin change to the replicated reservations came to, once committed and applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminOutcome {
    Done,
    /// Refused at apply (the address was leased or reserved meanwhile): why.
    Refused(String),
    /// DELETE of a MAC without a replicated reservation.
    NotFound,
}

/// Why an admin change was refused before it was proposed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReservationError {
    /// The request itself is wrong (400).
    #[error("{0}")]
    Invalid(String),
    /// It conflicts with the state of the pool or the config file (409).
    #[error("{0}")]
    Conflict(String),
    /// Nothing to remove (404).
    #[error("{0}")]
    NotFound(String),
}

/// The replicated reservations as the engine uses reservations: by MAC, in config form.
pub(super) fn reservation_view(table: &leasehold_cluster::LeaseTable) -> HashMap<[u8; 6], Reservation> {
    table
        .reservations()
        .map(|host| {
            let reservation = Reservation {
                mac: Some(host.mac),
                client_id: None,
                ip: host.ip,
                hostname: host.hostname.clone(),
                boot_file: host.boot_file.clone(),
                next_server: None,
                // API reservations carry ip, host name and boot file (`PUT /v1/reservations`).
                boot_script: None,
                options: OptionSet::default(),
            };
            (host.mac, reservation)
        })
        .collect()
}

impl Engine {
    /// Propose reserving `host.ip` for `host.mac` (replacing that MAC's replicated reservation).
    /// Checked against the config (the address is in a pool's subnet, not a server address, not
    /// reserved in the config file) and against the table as this node sees it; the apply checks
    /// the table again, since it may change before the command commits.
    pub fn propose_reservation(&mut self, host: ReservedHost, now_us: u64) -> Result<Proposal, ReservationError> {
        let mac = ClientKey::Mac(host.mac);
        if !self.config.pools.iter().any(|pool| pool.subnet.contains(host.ip)) {
            return Err(ReservationError::Invalid(format!("{} is not inside any pool's subnet", host.ip)));
        }
        if self.config.is_own_address(host.ip) {
            return Err(ReservationError::Invalid(format!("{} is this server's own address", host.ip)));
        }
        if let Some(pool) = self.config.pools.iter().find(|pool| pool.subnet.contains(host.ip)) {
            let (network, broadcast) = (pool.subnet.network, pool.subnet.broadcast());
            if pool.subnet.prefix_len <= 30 && (host.ip == network || host.ip == broadcast) {
                return Err(ReservationError::Invalid(format!(
                    "{} is the network or broadcast address of {network}/{}",
                    host.ip, pool.subnet.prefix_len
                )));
            }
        }
        // Every node's config names the others by their peer addresses: none may be reserved.
        if self.config.cluster.peers.values().any(|peer| peer.ip() == std::net::IpAddr::V4(host.ip)) {
            return Err(ReservationError::Invalid(format!("{} is the address of a cluster member", host.ip)));
        }
        if let Some(hostname) = &host.hostname {
            if hostname.is_empty() || hostname.len() > 255 || hostname.contains('\0') {
                return Err(ReservationError::Invalid("hostname must be 1 to 255 bytes, no NUL (option 12)".into()));
            }
        }
        if let Some(file) = &host.boot_file {
            if file.is_empty() || file.len() > MAX_BOOT_FILE_BYTES || file.contains('\0') {
                return Err(ReservationError::Invalid(format!(
                    "boot_file must be 1 to {MAX_BOOT_FILE_BYTES} bytes, no NUL (the BOOTP file field)"
                )));
            }
        }
        for (index, reservation) in self.config.reservations.iter().enumerate() {
            if reservation.mac == Some(host.mac) || reservation.ip == host.ip {
                return Err(ReservationError::Conflict(format!(
                    "{mac} or {} is reserved in the config file (reservation[{index}]); change it there",
                    host.ip
                )));
            }
        }
        if let Some(other) = self.table.reserved_for(host.ip).filter(|other| *other != host.mac) {
            return Err(ReservationError::Conflict(format!(
                "{} is already reserved for {}",
                host.ip,
                ClientKey::Mac(other)
            )));
        }
        let now_ms = now_us / 1000;
        if let Some(lease) = self.table.by_ip(host.ip) {
            if lease.mac != host.mac && !lease.is_reusable(now_ms, self.table.grace_ms()) && lease.is_active(now_ms) {
                return Err(ReservationError::Conflict(format!(
                    "{} is leased to {}; release it or wait until its lease ends",
                    host.ip, lease.client
                )));
            }
        }
        Ok(self.propose_admin(Command::Reserve { host, proposed_at_ms: now_ms }, now_us))
    }

    /// Propose ending the replicated reservation of `mac`.
    pub fn propose_unreservation(&mut self, mac: [u8; 6], now_us: u64) -> Result<Proposal, ReservationError> {
        if let Some(index) = self.config.reservations.iter().position(|r| r.mac == Some(mac)) {
            return Err(ReservationError::Conflict(format!(
                "{} is reserved in the config file (reservation[{index}]); remove it there",
                ClientKey::Mac(mac)
            )));
        }
        if self.table.reservation(&mac).is_none() {
            return Err(ReservationError::NotFound(format!("{} has no reservation", ClientKey::Mac(mac))));
        }
        Ok(self.propose_admin(Command::Unreserve { mac }, now_us))
    }

    fn propose_admin(&mut self, command: Command, now_us: u64) -> Proposal {
        let tag = self.next_tag();
        self.pending_admin.insert(tag, now_us);
        Proposal { tag, command }
    }

    /// After an entry applied (and the lookup view was refreshed, if reservations changed): the admin
    /// answer for one of this node's reservation commands.
    pub(super) fn applied_admin(
        &mut self,
        tag: &ProposalTag,
        command: &Command,
        outcome: &Outcome,
    ) -> Option<(ProposalTag, AdminOutcome)> {
        if let (Command::Reserve { host, .. }, Outcome::Reserved) = (command, outcome) {
            // An offer held for the address now goes to nobody but the reserved client.
            if self.offers.by_ip.get(&host.ip).is_some_and(|holder| *holder != ClientKey::Mac(host.mac)) {
                self.offers.remove_ip(host.ip);
            }
        }
        self.pending_admin.remove(tag)?;
        let answer = match outcome {
            Outcome::Reserved | Outcome::Unreserved | Outcome::Bound(_) => AdminOutcome::Done,
            // An imported lease (`import`) the table gave away, or changed, between decide and apply.
            Outcome::Conflict { holder } => {
                AdminOutcome::Refused(format!("the address was leased to {holder} meanwhile"))
            }
            Outcome::Stale { .. } => AdminOutcome::Refused("the client's record changed meanwhile".into()),
            Outcome::ReservationRefused(why) => AdminOutcome::Refused(why.clone()),
            Outcome::TableFull => AdminOutcome::Refused("the table holds its maximum of reservations".into()),
            _ => AdminOutcome::NotFound,
        };
        Some((*tag, answer))
    }

    /// Is `ip` reserved, in the config file or over the API?
    pub(super) fn is_reserved(&self, ip: Ipv4Addr) -> bool {
        self.config_reserved_ips.contains(&ip) || self.table.reserved_for(ip).is_some()
    }

    /// The client's reservation: the config file's (by MAC or client identifier) first, then the
    /// replicated one for its MAC.
    pub(super) fn reservation_of(&self, chaddr: [u8; 6], client_id: Option<&[u8]>) -> Option<&Reservation> {
        self.config
            .reservations
            .iter()
            .find(|r| r.mac == Some(chaddr) || (r.client_id.is_some() && r.client_id.as_deref() == client_id))
            .or_else(|| self.api_reservations.get(&chaddr))
    }
}
