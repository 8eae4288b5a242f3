//! Raw config + overrides -> checked `Config`, every problem reported with its key path.

use std::path::Path;

use crate::{Config, Overrides};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration")]
pub struct ConfigErrors(pub Vec<ConfigError>);

pub(crate) fn load(_file: Option<&Path>, _overrides: &Overrides) -> Result<Config, ConfigErrors> {
    Err(ConfigErrors(vec![]))
}
