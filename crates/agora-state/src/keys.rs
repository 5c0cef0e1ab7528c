//! The key layout of the state. Every key starts with a short module prefix.

use agora_types::{Address, Hash};

/// `acct/` + address → [`crate::Account`].
pub fn account_key(address: &Address) -> Vec<u8> {
    let mut key = b"acct/".to_vec();
    key.extend_from_slice(&address.0);
    key
}

/// `params` → [`crate::Params`].
pub fn params_key() -> Vec<u8> {
    b"params".to_vec()
}

/// `supply` → total supply (u128): conserved by every transaction.
pub fn supply_key() -> Vec<u8> {
    b"supply".to_vec()
}

/// `unbq/` + big-endian height → the unbonding entries released at that height.
pub fn unbonding_key(height: u64) -> Vec<u8> {
    let mut key = b"unbq/".to_vec();
    key.extend_from_slice(&height.to_be_bytes());
    key
}

/// `market` → [`crate::MarketParams`] (absent in states made before the market existed: defaults).
pub fn market_params_key() -> Vec<u8> {
    b"market".to_vec()
}

/// `prov/` + address → [`crate::Provider`].
pub fn provider_key(address: &Address) -> Vec<u8> {
    let mut key = b"prov/".to_vec();
    key.extend_from_slice(&address.0);
    key
}

/// `modl/` + model id → [`crate::ModelInfo`].
pub fn model_key(id: &Hash) -> Vec<u8> {
    let mut key = b"modl/".to_vec();
    key.extend_from_slice(&id.0);
    key
}

/// `escr/` + address → [`crate::Escrow`].
pub fn escrow_key(address: &Address) -> Vec<u8> {
    let mut key = b"escr/".to_vec();
    key.extend_from_slice(&address.0);
    key
}

/// `escq/` + big-endian height → the escrow withdrawals that unlock at that height.
pub fn escrow_queue_key(height: u64) -> Vec<u8> {
    let mut key = b"escq/".to_vec();
    key.extend_from_slice(&height.to_be_bytes());
    key
}

/// `job/` + job id → [`crate::JobRecord`]: a job settled once, never again.
pub fn job_key(id: &Hash) -> Vec<u8> {
    let mut key = b"job/".to_vec();
    key.extend_from_slice(&id.0);
    key
}

/// `pend/` + big-endian height → the providers' fees released at that height.
pub fn pending_key(height: u64) -> Vec<u8> {
    let mut key = b"pend/".to_vec();
    key.extend_from_slice(&height.to_be_bytes());
    key
}

/// `pool/verifiers` → the protocol's share of fees (u128), which pays verifiers.
pub fn verifier_pool_key() -> Vec<u8> {
    b"pool/verifiers".to_vec()
}
