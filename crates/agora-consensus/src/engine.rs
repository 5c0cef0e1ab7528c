//! Starting Malachite for a node: network identity, configuration, WAL, and the application loop.

use crate::{
    app::{AppConfig, ConsensusApp},
    codec::AgoraCodec,
    context::{AgoraContext, ValidatorAddress},
    signing::{Ed25519Signer, Ed25519Verifier},
};
use agora_chain::Node;
use agora_types::Keypair;
use malachitebft_app::{
    config::{
        ConsensusConfig, DiscoveryConfig, P2pConfig, PubSubProtocol, ValuePayload, ValueSyncConfig,
    },
    net::Multiaddr,
    types::codec::Codec,
};
use malachitebft_app_channel::{
    ConsensusContext, EngineBuilder, NetworkContext, NetworkIdentity, RequestContext, Signer,
    SyncContext, WalContext,
};
use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// How a validator joins its network.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// A name for logs.
    pub moniker: String,
    /// Where this node listens for its peers (TCP).
    pub listen: SocketAddr,
    /// The other validators' listen addresses.
    pub peers: Vec<SocketAddr>,
    /// Directory of the consensus write-ahead log.
    pub wal_dir: PathBuf,
    /// Round timeouts and pacing.
    pub app: AppConfig,
    /// Test support: this validator's network misbehaves as configured (equivocates, drops…).
    #[cfg(feature = "byzantine")]
    byzantine: Option<malachitebft_engine_byzantine::ByzantineConfig>,
}

impl NetworkConfig {
    /// A validator named `moniker` listening on `listen` for `peers`, its WAL in `wal_dir`.
    pub fn new(
        moniker: String,
        listen: SocketAddr,
        peers: Vec<SocketAddr>,
        wal_dir: PathBuf,
        app: AppConfig,
    ) -> Self {
        NetworkConfig {
            moniker,
            listen,
            peers,
            wal_dir,
            app,
            #[cfg(feature = "byzantine")]
            byzantine: None,
        }
    }

    /// Test support: makes this validator's network misbehave.
    #[cfg(feature = "byzantine")]
    #[doc(hidden)]
    pub fn byzantine(mut self, config: malachitebft_engine_byzantine::ByzantineConfig) -> Self {
        self.byzantine = Some(config);
        self
    }
}

fn multiaddr(addr: &SocketAddr) -> Multiaddr {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) => format!("/ip4/{ip}"),
        std::net::IpAddr::V6(ip) => format!("/ip6/{ip}"),
    };
    format!("{ip}/tcp/{}", addr.port())
        .parse()
        .expect("an ip and a port make a multiaddr")
}

/// Malachite's node configuration, built from [`NetworkConfig`].
#[derive(Clone, Debug)]
struct EngineConfig {
    moniker: String,
    consensus: ConsensusConfig,
    value_sync: ValueSyncConfig,
}

impl malachitebft_app::config::NodeConfig for EngineConfig {
    fn moniker(&self) -> &str {
        &self.moniker
    }

    fn consensus(&self) -> &ConsensusConfig {
        &self.consensus
    }

    fn consensus_mut(&mut self) -> &mut ConsensusConfig {
        &mut self.consensus
    }

    fn value_sync(&self) -> &ValueSyncConfig {
        &self.value_sync
    }

    fn value_sync_mut(&mut self) -> &mut ValueSyncConfig {
        &mut self.value_sync
    }
}

/// A running consensus engine and its application loop.
pub struct ConsensusHandle {
    app: JoinHandle<Result<(), crate::AppError>>,
    engine: malachitebft_app_channel::EngineHandle,
}

impl std::fmt::Debug for ConsensusHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsensusHandle").finish_non_exhaustive()
    }
}

impl ConsensusHandle {
    /// Waits until the application stops by itself (it never does while it can commit), and
    /// says why. Call at most once; [`Self::stop`] afterwards still stops the engine.
    pub async fn stopped(&mut self) -> String {
        match (&mut self.app).await {
            Ok(Ok(())) => "the consensus engine closed".to_string(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("the consensus application failed: {e}"),
        }
    }

    /// Stops the engine and the application loop.
    pub async fn stop(self) {
        if let Err(e) = self.engine.actor.kill_and_wait(None).await {
            warn!(error = %e, "consensus engine did not stop cleanly");
        }
        self.app.abort();
        self.engine.handle.abort();
    }

    /// Whether the application loop has ended (the engine stopped).
    pub fn is_finished(&self) -> bool {
        self.app.is_finished()
    }
}

/// Why consensus did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The node and consensus would sign with different keys.
    #[error(
        "the node builds blocks as {node} but consensus signs as {key}: open the node with the validator key"
    )]
    WrongKey {
        /// The node's block producer.
        node: agora_types::Address,
        /// Consensus's key.
        key: agora_types::Address,
    },
    /// The folder of the write-ahead log and kept blocks cannot be made.
    #[error("the consensus folder {path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The engine (its network, log or actors) failed to start.
    #[error("the consensus engine did not start: {0}")]
    Engine(String),
}

/// Starts consensus for validator `key` over `node`.
pub async fn start(
    node: Arc<Node>,
    key: Arc<Keypair>,
    config: NetworkConfig,
) -> Result<ConsensusHandle, StartError> {
    if node.proposer() != key.address() {
        return Err(StartError::WrongKey {
            node: node.proposer(),
            key: key.address(),
        });
    }
    for path in [config.wal_dir.clone(), config.wal_dir.join("blocks")] {
        std::fs::create_dir_all(&path).map_err(|source| StartError::Folder { path, source })?;
    }
    start_engine(node, key, config)
        .await
        .map_err(|e| StartError::Engine(format!("{e:#}")))
}

/// [`start`] past its checks; Malachite's builders report with `eyre`.
async fn start_engine(
    node: Arc<Node>,
    key: Arc<Keypair>,
    config: NetworkConfig,
) -> eyre::Result<ConsensusHandle> {
    let chain_id = node.chain_id().to_string();
    let address = ValidatorAddress(key.address());
    let signer = Ed25519Signer::new(key.clone(), &chain_id);
    // The network identity is its own key, derived from the validator's secret.
    let mut net_secret =
        *blake3::keyed_hash(&key.secret(), b"agora/consensus/p2p-identity/v1").as_bytes();
    let keypair = malachitebft_app::types::Keypair::ed25519_from_bytes(&mut net_secret)?;
    let peer_id = keypair.public().to_peer_id();
    let proof = signer
        .sign_validator_proof(key.public().0.to_vec(), peer_id.to_bytes())
        .await
        .map_err(|e| eyre::eyre!("signing the validator proof: {e}"))?;
    let proof_bytes = AgoraCodec.encode(&proof)?;
    let identity = NetworkIdentity::new_validator(
        config.moniker.clone(),
        keypair,
        address.to_string(),
        proof_bytes,
    );
    let engine_config = EngineConfig {
        moniker: config.moniker.clone(),
        consensus: ConsensusConfig {
            enabled: true,
            p2p: P2pConfig {
                listen_addr: multiaddr(&config.listen),
                persistent_peers: config.peers.iter().map(multiaddr).collect(),
                // Inbound connections come from ephemeral ports, which this mode cannot match to a
                // configured peer until the outbound dial identifies it: it drops good links.
                // Consensus messages are signed, so an unknown peer can do no more than relay.
                persistent_peers_only: false,
                discovery: DiscoveryConfig {
                    enabled: false,
                    ..Default::default()
                },
                protocol: PubSubProtocol::Broadcast,
                ..Default::default()
            },
            value_payload: ValuePayload::ProposalAndParts,
            ..Default::default()
        },
        value_sync: ValueSyncConfig {
            enabled: true,
            status_update_interval: Duration::from_millis(500),
            request_timeout: Duration::from_secs(5),
            ..Default::default()
        },
    };
    let builder = EngineBuilder::new(AgoraContext, engine_config).with_default_wal(
        WalContext::new(config.wal_dir.join("consensus.wal"), AgoraCodec),
    );
    let consensus = || {
        ConsensusContext::new_validator(
            address,
            Box::new(Ed25519Verifier::new(&chain_id)),
            Box::new(signer.clone()),
        )
    };
    #[cfg(feature = "byzantine")]
    let (mut channels, engine) = match config.byzantine.clone() {
        Some(byz) => {
            warn!(moniker = %config.moniker, ?byz, "BYZANTINE test validator");
            builder
                .with_byzantine_network(malachitebft_app_channel::ByzantineContext {
                    identity,
                    codec: AgoraCodec,
                    config: byz,
                    signer: Box::new(signer.clone()),
                    address,
                    conflicting_value_fn: None,
                    conflicting_vote_value_fn: None,
                })
                .await?
                .with_default_consensus(consensus())
                .with_default_sync(SyncContext::new(AgoraCodec))
                .with_default_request(RequestContext::new(100))
                .build()
                .await?
        }
        None => {
            builder
                .with_default_network(NetworkContext::new(identity, AgoraCodec))
                .with_default_consensus(consensus())
                .with_default_sync(SyncContext::new(AgoraCodec))
                .with_default_request(RequestContext::new(100))
                .build()
                .await?
        }
    };
    #[cfg(not(feature = "byzantine"))]
    let (mut channels, engine) = builder
        .with_default_network(NetworkContext::new(identity, AgoraCodec))
        .with_default_consensus(consensus())
        .with_default_sync(SyncContext::new(AgoraCodec))
        .with_default_request(RequestContext::new(100))
        .build()
        .await?;
    info!(moniker = %config.moniker, %address, listen = %config.listen, peers = config.peers.len(), "consensus started");
    let app = ConsensusApp::new(node, signer, address, config.app)
        .with_block_dir(config.wal_dir.join("blocks"))?;
    let app = tokio::spawn(async move {
        let result = app.run(&mut channels).await;
        if let Err(e) = &result {
            warn!(error = %e, "consensus application stopped");
        }
        result
    });
    Ok(ConsensusHandle { app, engine })
}
