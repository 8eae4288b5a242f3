//! The actor shell around the sans-IO engine: socket (UDP datagrams in and out), parser (bytes ↔
//! validated requests and replies), lease (the engine and its Raft proposals). Packet-path mailboxes
//! are bounded: senders use `try_send` and count what does not fit. `state_machine` is the lease
//! actor's handling of the raft actor's mail without the actor, shared with the simulation.

pub mod lease;
pub mod parser;
pub mod socket;
pub mod state_machine;

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time in microseconds since the Unix epoch, shifted by a test offset. Only the actor
/// shell reads the clock; the engine gets `now` as an argument.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    pub offset_ms: i64,
}

impl Clock {
    pub fn now_us(&self) -> u64 {
        let real = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
        real.saturating_add_signed(self.offset_ms.saturating_mul(1000))
    }
}
