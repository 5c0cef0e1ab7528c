use crate::{
    Account, ConsensusParams, Error, MarketParams, ModelInfo, Params, Result, ValidatorSet,
    VerifyParams, WriteSet, account_key, consensus_params_key, market_params_key, model_key,
    params_key, supply_key, validator_candidates_key, validator_key_key, validator_set_key,
    verify_params_key,
};
use agora_types::{Address, Amount, Hash, MAX_MODEL_NAME_BYTES, ModelKind, PublicKey, serde_u128};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The chain's starting point, read from a JSON file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// Name of the chain; every transaction signs it.
    pub chain_id: String,
    /// Time of the genesis block, milliseconds since the Unix epoch.
    pub genesis_time_ms: u64,
    /// Chain parameters.
    pub params: Params,
    /// Funded accounts.
    pub accounts: Vec<GenesisAccount>,
    /// The compute market's parameters.
    #[serde(default)]
    pub market: MarketParams,
    /// Models registered from the start.
    #[serde(default)]
    pub models: Vec<GenesisModel>,
    /// Verification's parameters.
    #[serde(default)]
    pub verify: VerifyParams,
    /// Consensus parameters (epochs, validator seats).
    #[serde(default)]
    pub consensus: ConsensusParams,
    /// The validators of the first epoch: each must be an account above with at least
    /// `consensus.min_validator_stake` bonded. Empty for a dev chain (one block producer, no
    /// consensus set).
    #[serde(default)]
    pub validators: Vec<GenesisValidator>,
}

/// A validator at genesis: its consensus key, which is also its account's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisValidator {
    /// The ed25519 public key; the account is its address.
    pub public_key: PublicKey,
}

/// A model in the registry at genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisModel {
    /// SHA-256 of the weights file.
    pub id: Hash,
    /// Human name.
    pub name: String,
    /// What it does.
    pub kind: ModelKind,
}

/// A funded account at genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisAccount {
    /// Owner.
    pub address: Address,
    /// Liquid base units.
    #[serde(with = "serde_u128")]
    pub balance: Amount,
    /// Bonded base units.
    #[serde(with = "serde_u128", default)]
    pub bonded: Amount,
}

impl Genesis {
    /// Parses and checks a genesis JSON document.
    pub fn from_json(text: &str) -> Result<Self> {
        let genesis: Genesis =
            serde_json::from_str(text).map_err(|e| Error::InvalidGenesis(e.to_string()))?;
        genesis.initial_writes()?;
        Ok(genesis)
    }

    /// The JSON document.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("genesis serializes")
    }

    /// The state at height 0: accounts, parameters and total supply.
    pub fn initial_writes(&self) -> Result<WriteSet> {
        if self.chain_id.is_empty() || self.chain_id.len() > 64 {
            return Err(Error::InvalidGenesis(
                "chain_id must be 1 to 64 characters".into(),
            ));
        }
        if self.params.unbonding_period == 0 {
            return Err(Error::InvalidGenesis(
                "unbonding_period must be at least 1 block".into(),
            ));
        }
        self.market.check().map_err(Error::InvalidGenesis)?;
        self.verify.check().map_err(Error::InvalidGenesis)?;
        let mut writes = WriteSet::new();
        let mut models = BTreeSet::new();
        for m in &self.models {
            if !models.insert(m.id) {
                return Err(Error::InvalidGenesis(format!(
                    "model {} listed twice",
                    m.id
                )));
            }
            if m.name.trim().is_empty() || m.name.len() > MAX_MODEL_NAME_BYTES {
                return Err(Error::InvalidGenesis(format!(
                    "model {}: the name must be 1 to {MAX_MODEL_NAME_BYTES} bytes",
                    m.id
                )));
            }
            let info = ModelInfo {
                name: m.name.clone(),
                kind: m.kind,
            };
            writes.insert(
                model_key(&m.id),
                Some(borsh::to_vec(&info).expect("encode")),
            );
        }
        writes.insert(
            market_params_key(),
            Some(borsh::to_vec(&self.market).expect("encode")),
        );
        writes.insert(
            verify_params_key(),
            Some(borsh::to_vec(&self.verify).expect("encode")),
        );
        let mut seen = BTreeSet::new();
        let mut supply: Amount = 0;
        for acc in &self.accounts {
            if !seen.insert(acc.address) {
                return Err(Error::InvalidGenesis(format!(
                    "account {} listed twice",
                    acc.address
                )));
            }
            let account = Account {
                balance: acc.balance,
                bonded: acc.bonded,
                ..Account::default()
            };
            supply = account
                .total()
                .and_then(|t| supply.checked_add(t))
                .ok_or_else(|| Error::InvalidGenesis("total supply overflows u128".into()))?;
            writes.insert(
                account_key(&acc.address),
                Some(borsh::to_vec(&account).expect("encode")),
            );
        }
        writes.insert(
            params_key(),
            Some(borsh::to_vec(&self.params).expect("encode")),
        );
        writes.insert(supply_key(), Some(borsh::to_vec(&supply).expect("encode")));
        self.consensus.check().map_err(Error::InvalidGenesis)?;
        writes.insert(
            consensus_params_key(),
            Some(borsh::to_vec(&self.consensus).expect("encode")),
        );
        let mut candidates = Vec::new();
        for v in &self.validators {
            let address = v.public_key.address();
            let bonded = self
                .accounts
                .iter()
                .find(|a| a.address == address)
                .map(|a| a.bonded)
                .ok_or_else(|| {
                    Error::InvalidGenesis(format!(
                        "validator {address} has no account: list it under accounts with bonded stake"
                    ))
                })?;
            if bonded < self.consensus.min_validator_stake {
                return Err(Error::InvalidGenesis(format!(
                    "validator {address} has {bonded} bonded, less than consensus.min_validator_stake ({})",
                    self.consensus.min_validator_stake
                )));
            }
            if candidates.iter().any(|(a, _, _)| *a == address) {
                return Err(Error::InvalidGenesis(format!(
                    "validator {address} listed twice"
                )));
            }
            writes.insert(
                validator_key_key(&address),
                Some(borsh::to_vec(&v.public_key).expect("encode")),
            );
            candidates.push((address, v.public_key, bonded));
        }
        if !candidates.is_empty() {
            let mut addresses: Vec<Address> = candidates.iter().map(|c| c.0).collect();
            addresses.sort();
            writes.insert(
                validator_candidates_key(),
                Some(borsh::to_vec(&addresses).expect("encode")),
            );
            let set = ValidatorSet::from_bonds(&self.consensus, candidates);
            writes.insert(
                validator_set_key(),
                Some(borsh::to_vec(&set).expect("encode")),
            );
        }
        Ok(writes)
    }
}
