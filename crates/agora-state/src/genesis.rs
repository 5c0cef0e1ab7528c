use crate::{
    Account, Error, MarketParams, ModelInfo, Params, Result, VerifyParams, WriteSet, account_key,
    market_params_key, model_key, params_key, supply_key, verify_params_key,
};
use agora_types::{Address, Amount, Hash, MAX_MODEL_NAME_BYTES, ModelKind, serde_u128};
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
        Ok(writes)
    }
}
