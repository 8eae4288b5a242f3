//! Shared harness for the integration tests: network namespaces (`netns`), the packets of a
//! programmable DHCP client (`packet`) and the client itself (`client`), which the crash,
//! bad-input, PXE and chaos tests drive byte by byte.

pub mod client;
pub mod netns;
pub mod packet;

pub use client::{
    format_mac, test_mac, ClientConfig, ClientStats, HarnessError, Lease, RetryPolicy, Target, TestClient,
};
pub use netns::{in_netns, netns_exists, netns_path, run_in, NetnsError};
pub use packet::{
    arch, build, ethernet_client_id, ClientMessage, ClientOptions, Mac, MessageType, PacketError, ReplyView,
    RequestState,
};
