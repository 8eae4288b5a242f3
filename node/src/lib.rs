//! One Leasehold node: the DHCP engine (sans-IO), the socket, parser and lease actors around it,
//! the admin HTTP API, logging and the `serve` startup.

pub mod actors;
pub mod admin;
pub mod boot_digest;
pub mod boot_http;
pub mod boot_script;
pub mod engine;
pub mod logging;
pub mod metrics;
pub mod reload;
pub mod serve;
pub mod store;
pub mod tftp;
pub mod wire;
