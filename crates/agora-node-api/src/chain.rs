//! What the market's daemons (provider, verifier, gateway) need from a node, as one trait: over
//! HTTP ([`crate::NodeClient`]) or in the node's own process (`agora_api::LocalNode`), so the
//! market's code and tests need not know which.

use crate::{
    ClientError, JobResponse, MetagraphResponse, ModelEntry, NodeClient, ProviderEntry,
    SubnetResponse,
};
use agora_state::{Check, Escrow};
use agora_types::{Address, Hash, SignedTransaction};

/// The chain, as the provider, verifier and gateway see it. Calls block; run them off async
/// executors.
pub trait Chain: Send + Sync {
    /// The chain id requests must carry.
    fn chain_id(&self) -> Result<String, ClientError>;
    /// The latest committed height.
    fn height(&self) -> Result<u64, ClientError>;
    /// A client's escrow (zero when it never deposited).
    fn escrow(&self, client: &Address) -> Result<Escrow, ClientError>;
    /// The nonce the account's next transaction must carry (0 for a new account).
    fn nonce(&self, account: &Address) -> Result<u64, ClientError>;
    /// Submits a signed transaction; returns its hash.
    fn submit(&self, tx: &SignedTransaction) -> Result<Hash, ClientError>;
    /// The registered providers (up to a thousand), convicted ones included.
    fn providers(&self) -> Result<Vec<ProviderEntry>, ClientError>;
    /// A registered provider, if it is one.
    fn provider(&self, address: &Address) -> Result<Option<ProviderEntry>, ClientError>;
    /// The model registry (up to a thousand).
    fn models(&self) -> Result<Vec<ModelEntry>, ClientError>;
    /// A registered model, if it is one.
    fn model(&self, id: &Hash) -> Result<Option<ModelEntry>, ClientError>;
    /// A settled job: its record, fee state, whether it is checked, and its check.
    fn job(&self, job_id: &Hash) -> Result<Option<JobResponse>, ClientError>;
    /// The open checks in which `address` (a provider or a seated verifier) has something to do.
    fn open_checks(&self, address: &Address) -> Result<Vec<Check>, ClientError>;
    /// A registered verifier's X25519 key, if registered.
    fn verifier_key(&self, verifier: &Address) -> Result<Option<[u8; 32]>, ClientError>;
    /// The complete reveal of `job_id` to `verifier`, if the chain holds one.
    fn reveal(&self, job_id: &Hash, verifier: &Address) -> Result<Option<Vec<u8>>, ClientError>;
    /// A subnet, if it exists.
    fn subnet(&self, netuid: u16) -> Result<Option<SubnetResponse>, ClientError>;
    /// A subnet's metagraph, if it exists.
    fn metagraph(&self, netuid: u16) -> Result<Option<MetagraphResponse>, ClientError>;
    /// The hash of the committed block at `height`, if there is one (chain randomness).
    fn block_hash(&self, height: u64) -> Result<Option<Hash>, ClientError>;
    /// A provable model (its verifying key), if registered.
    fn zk_model(&self, id: &Hash) -> Result<Option<crate::ZkModelEntry>, ClientError>;
    /// The chain's minimum fee per unit of work.
    fn min_fee(&self) -> Result<agora_types::Amount, ClientError>;

    /// Whether `provider` is registered and serving (a convicted one keeps its record and
    /// stake, but serves no more).
    fn is_provider(&self, provider: &Address) -> Result<bool, ClientError> {
        Ok(self
            .provider(provider)?
            .is_some_and(|p| p.provider.active()))
    }

    /// Whether `model` is in the chain's model registry.
    fn model_registered(&self, model: &Hash) -> Result<bool, ClientError> {
        Ok(self.model(model)?.is_some())
    }

    /// Whether the job `job_id` is settled.
    fn is_settled(&self, job_id: &Hash) -> Result<bool, ClientError> {
        Ok(self.job(job_id)?.is_some())
    }

    /// Whether a settled job can no longer be checked (not drawn, or its check decided); `None`
    /// when the job is not settled.
    fn verification_over(&self, job_id: &Hash) -> Result<Option<bool>, ClientError> {
        Ok(self.job(job_id)?.map(|j| j.verification_over()))
    }
}

impl Chain for NodeClient {
    fn chain_id(&self) -> Result<String, ClientError> {
        Ok(self.status()?.chain_id)
    }

    fn height(&self) -> Result<u64, ClientError> {
        NodeClient::height(self)
    }

    fn escrow(&self, client: &Address) -> Result<Escrow, ClientError> {
        NodeClient::escrow(self, client)
    }

    fn nonce(&self, account: &Address) -> Result<u64, ClientError> {
        NodeClient::nonce(self, account)
    }

    fn submit(&self, tx: &SignedTransaction) -> Result<Hash, ClientError> {
        NodeClient::submit(self, tx)
    }

    fn providers(&self) -> Result<Vec<ProviderEntry>, ClientError> {
        NodeClient::providers(self)
    }

    fn provider(&self, address: &Address) -> Result<Option<ProviderEntry>, ClientError> {
        NodeClient::provider(self, address)
    }

    fn models(&self) -> Result<Vec<ModelEntry>, ClientError> {
        NodeClient::models(self)
    }

    fn model(&self, id: &Hash) -> Result<Option<ModelEntry>, ClientError> {
        NodeClient::model(self, id)
    }

    fn job(&self, job_id: &Hash) -> Result<Option<JobResponse>, ClientError> {
        NodeClient::job(self, job_id)
    }

    fn open_checks(&self, address: &Address) -> Result<Vec<Check>, ClientError> {
        NodeClient::open_checks(self, address)
    }

    fn verifier_key(&self, verifier: &Address) -> Result<Option<[u8; 32]>, ClientError> {
        Ok(self
            .verifiers()?
            .into_iter()
            .find(|v| v.address == *verifier)
            .map(|v| v.verifier.info.encryption_key.0))
    }

    fn reveal(&self, job_id: &Hash, verifier: &Address) -> Result<Option<Vec<u8>>, ClientError> {
        NodeClient::reveal(self, job_id, verifier)
    }

    fn subnet(&self, netuid: u16) -> Result<Option<SubnetResponse>, ClientError> {
        NodeClient::subnet(self, netuid)
    }

    fn metagraph(&self, netuid: u16) -> Result<Option<MetagraphResponse>, ClientError> {
        NodeClient::metagraph(self, netuid)
    }

    fn block_hash(&self, height: u64) -> Result<Option<Hash>, ClientError> {
        Ok(self.block(crate::BlockId::Height(height))?.map(|b| b.hash))
    }

    fn zk_model(&self, id: &Hash) -> Result<Option<crate::ZkModelEntry>, ClientError> {
        NodeClient::zk_model(self, id)
    }

    fn min_fee(&self) -> Result<agora_types::Amount, ClientError> {
        Ok(self.status()?.min_fee)
    }
}
