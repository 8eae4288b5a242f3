//! One Leasehold node: the DHCP engine (sans-IO), the socket, parser and lease actors around it,
//! the admin HTTP API and the command line.

pub mod wire;
