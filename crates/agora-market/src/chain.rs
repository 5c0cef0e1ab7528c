//! What the market's daemons need from the chain, and its implementation over a node's HTTP API.

use crate::Error;
use agora_node_api::{JobResponse, ModelEntry, NodeClient, ProviderEntry};
use agora_state::{Check, Outcome};
use agora_types::{Address, Amount, Hash, SignedTransaction};
use std::time::Duration;

/// A client's escrow as the chain reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EscrowView {
    /// Available to pay jobs.
    pub balance: Amount,
    /// Being withdrawn, still claimable until it unlocks.
    pub unlocking: Amount,
}

impl EscrowView {
    /// What settlements can still draw on.
    pub fn claimable(&self) -> Amount {
        self.balance.saturating_add(self.unlocking)
    }
}

/// The chain, as the provider and gateway see it. Calls block; run them off async executors.
pub trait Chain: Send + Sync {
    /// The chain id requests must carry.
    fn chain_id(&self) -> Result<String, Error>;
    /// The latest committed height.
    fn height(&self) -> Result<u64, Error>;
    /// A client's escrow (zero when it never deposited).
    fn escrow(&self, client: &Address) -> Result<EscrowView, Error>;
    /// The nonce the account's next transaction must carry (0 for a new account).
    fn nonce(&self, account: &Address) -> Result<u64, Error>;
    /// Submits a signed transaction; returns its hash.
    fn submit(&self, tx: &SignedTransaction) -> Result<Hash, Error>;
    /// Whether `provider` is registered and serving (not convicted).
    fn is_provider(&self, provider: &Address) -> Result<bool, Error>;
    /// The registered providers (up to a thousand), convicted ones included.
    fn providers(&self) -> Result<Vec<ProviderEntry>, Error>;
    /// The model registry (up to a thousand).
    fn models(&self) -> Result<Vec<ModelEntry>, Error>;
    /// A settled job: its record, fee state, whether it is checked, and its check.
    fn job(&self, job_id: &Hash) -> Result<Option<JobResponse>, Error>;
    /// Whether the job `job_id` is settled.
    fn is_settled(&self, job_id: &Hash) -> Result<bool, Error> {
        Ok(self.job(job_id)?.is_some())
    }
    /// The open checks in which `address` (a provider or a seated verifier) has something to do.
    fn open_checks(&self, address: &Address) -> Result<Vec<Check>, Error>;
    /// A registered verifier's X25519 key, if registered.
    fn verifier_key(&self, verifier: &Address) -> Result<Option<[u8; 32]>, Error>;
    /// The complete reveal of `job_id` to `verifier`, if the chain holds one.
    fn reveal(&self, job_id: &Hash, verifier: &Address) -> Result<Option<Vec<u8>>, Error>;
    /// Whether a settled job can no longer be checked (not drawn, or its check decided); `None`
    /// when the job is not settled.
    fn verification_over(&self, job_id: &Hash) -> Result<Option<bool>, Error> {
        Ok(self.job(job_id)?.map(|j| {
            j.sampled == Some(false) || j.check.is_some_and(|c| c.outcome != Outcome::Open)
        }))
    }
}

/// A node's HTTP API (`/v1/...`), through [`NodeClient`].
#[derive(Debug, Clone)]
pub struct HttpChain {
    client: NodeClient,
}

impl HttpChain {
    /// A client of the node API at `base` (e.g. `http://127.0.0.1:7420`).
    pub fn new(base: &str) -> Self {
        HttpChain {
            client: NodeClient::with_timeout(base, Duration::from_secs(10)),
        }
    }

    /// The client underneath.
    pub fn client(&self) -> &NodeClient {
        &self.client
    }

    /// Whether `model` is in the chain's model registry.
    pub fn model_registered(&self, model: &Hash) -> Result<bool, Error> {
        Ok(self.client.model(model)?.is_some())
    }
}

impl Chain for HttpChain {
    fn chain_id(&self) -> Result<String, Error> {
        Ok(self.client.status()?.chain_id)
    }

    fn height(&self) -> Result<u64, Error> {
        Ok(self.client.height()?)
    }

    fn escrow(&self, client: &Address) -> Result<EscrowView, Error> {
        let escrow = self.client.escrow(client)?.escrow;
        Ok(EscrowView {
            balance: escrow.balance,
            unlocking: escrow.unlocking,
        })
    }

    fn nonce(&self, account: &Address) -> Result<u64, Error> {
        Ok(self.client.nonce(account)?)
    }

    fn submit(&self, tx: &SignedTransaction) -> Result<Hash, Error> {
        Ok(self.client.submit(tx)?)
    }

    fn is_provider(&self, provider: &Address) -> Result<bool, Error> {
        // A convicted provider keeps its record (and stake) but serves no more.
        Ok(self
            .client
            .provider(provider)?
            .is_some_and(|p| p.provider.provider.active()))
    }

    fn providers(&self) -> Result<Vec<ProviderEntry>, Error> {
        Ok(self.client.providers()?.providers)
    }

    fn models(&self) -> Result<Vec<ModelEntry>, Error> {
        Ok(self.client.models()?.models)
    }

    fn job(&self, job_id: &Hash) -> Result<Option<JobResponse>, Error> {
        Ok(self.client.job(job_id)?)
    }

    fn open_checks(&self, address: &Address) -> Result<Vec<Check>, Error> {
        Ok(self.client.open_checks(address)?.checks)
    }

    fn verifier_key(&self, verifier: &Address) -> Result<Option<[u8; 32]>, Error> {
        Ok(self
            .client
            .verifiers()?
            .verifiers
            .into_iter()
            .find(|v| v.address == *verifier)
            .map(|v| v.verifier.info.encryption_key.0))
    }

    fn reveal(&self, job_id: &Hash, verifier: &Address) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.client.reveal(job_id, verifier)?)
    }
}
