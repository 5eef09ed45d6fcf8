//! What the helper takes from the system configuration.

use std::path::PathBuf;

use tupper_config::system::SystemConfig;

use crate::error::Result;
use crate::ipam::Subnet;

#[derive(Debug, Clone)]
pub struct Settings {
    pub bridge: String,
    pub subnet: Subnet,
    pub state_dir: PathBuf,
    /// The store, where container roots are (`containers/<uid>/<id>`).
    pub store: PathBuf,
    /// Issue 11: masquerade the subnet to the uplinks.
    pub outbound: bool,
}

impl Settings {
    /// From the compiled-in configuration path only.
    pub fn load() -> Result<Settings> {
        let cfg = SystemConfig::load()?;
        Ok(Settings {
            subnet: Subnet::from_config(&cfg.network)?,
            outbound: cfg.network.outbound,
            bridge: cfg.network.bridge,
            state_dir: cfg.runtime.state_dir,
            store: cfg.store.path,
        })
    }
}
