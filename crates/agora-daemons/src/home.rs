//! A node's home folder: its network file (`config/network.json`, how it joins its network).

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

/// How a node joins its network: `HOME/config/network.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkFile {
    /// A name for logs.
    pub moniker: String,
    /// Where this node listens for the other validators (TCP).
    pub p2p_addr: SocketAddr,
    /// Where this node serves its HTTP API.
    pub api_addr: SocketAddr,
    /// The other validators' p2p addresses.
    pub peers: Vec<SocketAddr>,
    /// The other validators' API base URLs: client transactions are relayed there.
    pub peer_apis: Vec<String>,
    /// Least milliseconds per height: a new block this often when idle, sooner never.
    #[serde(default = "default_block_time_ms")]
    pub block_time_ms: u64,
}

/// Half a second.
pub fn default_block_time_ms() -> u64 {
    500
}

pub fn network_path(home: &Path) -> PathBuf {
    home.join("config/network.json")
}

/// The network file of `home`, if it has one.
pub fn read_network(home: &Path) -> Result<Option<NetworkFile>> {
    let path = network_path(home);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)?;
    let file =
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(file))
}
