//! The node's own answers in process: the market's [`Chain`] over a [`Node`] this process runs,
//! reading the same views the HTTP API serves, with no HTTP in between (a devnet's provider and
//! verifier, and tests).

use crate::ApiError;
use crate::market::views;
use agora_chain::Node;
use agora_node_api::{
    Chain, ClientError, JobResponse, MetagraphResponse, ModelEntry, ProviderEntry, SubnetResponse,
};
use agora_state::{Check, Escrow};
use agora_store::Snapshot;
use agora_types::{Address, Hash, SignedTransaction};
use std::sync::Arc;

/// A node in this process, as a [`Chain`].
#[derive(Debug, Clone)]
pub struct LocalNode {
    node: Arc<Node>,
}

impl LocalNode {
    /// `node`'s answers.
    pub fn new(node: Arc<Node>) -> Self {
        LocalNode { node }
    }

    fn snapshot(&self) -> Result<Snapshot, ClientError> {
        self.node.snapshot().map_err(|e| refused(e.into()))
    }
}

/// An API error as a client would have seen it.
fn refused(e: ApiError) -> ClientError {
    ClientError::Refused {
        status: e.status.as_u16(),
        code: e.code,
        message: e.message,
    }
}

impl Chain for LocalNode {
    fn chain_id(&self) -> Result<String, ClientError> {
        Ok(self.node.chain_id().to_string())
    }

    fn height(&self) -> Result<u64, ClientError> {
        Ok(self
            .snapshot()?
            .height()
            .map_err(|e| refused(e.into()))?
            .unwrap_or(0))
    }

    fn escrow(&self, client: &Address) -> Result<Escrow, ClientError> {
        Ok(views::escrow(&self.snapshot()?, client)
            .map_err(refused)?
            .escrow)
    }

    fn nonce(&self, account: &Address) -> Result<u64, ClientError> {
        let snap = self.snapshot()?;
        let account = agora_state::read_account(&snap, account)
            .map_err(|e| refused(ApiError::internal(e)))?;
        Ok(account.map_or(0, |a| a.nonce))
    }

    fn submit(&self, tx: &SignedTransaction) -> Result<Hash, ClientError> {
        self.node
            .submit(&tx.encode())
            .map_err(|e| refused(e.into()))
    }

    fn providers(&self) -> Result<Vec<ProviderEntry>, ClientError> {
        Ok(views::providers(&self.snapshot()?)
            .map_err(refused)?
            .providers)
    }

    fn provider(&self, address: &Address) -> Result<Option<ProviderEntry>, ClientError> {
        Ok(views::provider(&self.snapshot()?, address)
            .map_err(refused)?
            .map(|p| p.provider))
    }

    fn models(&self) -> Result<Vec<ModelEntry>, ClientError> {
        Ok(views::models(&self.snapshot()?).map_err(refused)?.models)
    }

    fn model(&self, id: &Hash) -> Result<Option<ModelEntry>, ClientError> {
        views::model(&self.snapshot()?, id).map_err(refused)
    }

    fn job(&self, job_id: &Hash) -> Result<Option<JobResponse>, ClientError> {
        views::job(&self.snapshot()?, job_id).map_err(refused)
    }

    fn open_checks(&self, address: &Address) -> Result<Vec<Check>, ClientError> {
        Ok(views::open_checks(&self.snapshot()?, address)
            .map_err(refused)?
            .checks)
    }

    fn verifier_key(&self, verifier: &Address) -> Result<Option<[u8; 32]>, ClientError> {
        Ok(views::verifiers(&self.snapshot()?)
            .map_err(refused)?
            .verifiers
            .into_iter()
            .find(|v| v.address == *verifier)
            .map(|v| v.verifier.info.encryption_key.0))
    }

    fn reveal(&self, job_id: &Hash, verifier: &Address) -> Result<Option<Vec<u8>>, ClientError> {
        views::reveal(&self.snapshot()?, job_id, verifier).map_err(refused)
    }

    fn subnet(&self, netuid: u16) -> Result<Option<SubnetResponse>, ClientError> {
        crate::subnets::views::subnet(&self.snapshot()?, netuid).map_err(refused)
    }

    fn metagraph(&self, netuid: u16) -> Result<Option<MetagraphResponse>, ClientError> {
        crate::subnets::views::metagraph(&self.snapshot()?, netuid).map_err(refused)
    }

    fn block_hash(&self, height: u64) -> Result<Option<Hash>, ClientError> {
        match crate::views::block(&self.snapshot()?, &height.to_string()) {
            Ok(b) => Ok(Some(b.hash)),
            Err(e) if e.status.as_u16() == 404 => Ok(None),
            Err(e) => Err(refused(e)),
        }
    }

    fn zk_model(&self, id: &Hash) -> Result<Option<agora_node_api::ZkModelEntry>, ClientError> {
        crate::zk::views::zk_model(&self.snapshot()?, id).map_err(refused)
    }

    fn min_fee(&self) -> Result<agora_types::Amount, ClientError> {
        Ok(self.node.params().min_fee)
    }
}
