//! The config file as written: serde types mirroring the TOML, unchecked.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {}
