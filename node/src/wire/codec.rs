//! (being written)
use super::{DropReason, Reply, Request};

pub(super) fn parse(_bytes: &[u8], _max: usize) -> Result<Request, DropReason> {
    Err(DropReason::Truncated)
}

pub(super) fn emit(_reply: &Reply, _max: usize) -> Vec<u8> {
    Vec::new()
}
