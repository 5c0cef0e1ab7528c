use crate::{
    Account, ConsensusParams, Error, MarketParams, ModelInfo, Params, Result, ValidatorSet,
    VerifyParams, WriteSet, account_key, consensus_params_key, market_params_key, model_key,
    model_name_key, model_source_key, params_key, supply_key, validator_candidates_key,
    validator_key_key, validator_set_key, verify_params_key,
};
use agora_types::{Address, Amount, Hash, ModelKind, PublicKey, serde_u128};
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
    /// Where some of them can be fetched (as `PublishModelSource` says for later ones).
    #[serde(default)]
    pub model_sources: Vec<(Hash, agora_types::ModelSource)>,
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
    /// The emission schedule (DESIGN.md §7).
    #[serde(default)]
    pub emission: crate::EmissionParams,
    /// Subnet creation and the owners' share.
    #[serde(default)]
    pub subnets: crate::SubnetParams,
    /// The data market's parameters.
    #[serde(default)]
    pub data: crate::DataParams,
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
    /// A genesis for `chain_id` at time 0 with the default parameters and nothing in it: add
    /// accounts, models, validators and parameters with the `with_*` methods.
    ///
    /// ```
    /// # use agora_state::Genesis;
    /// # use agora_types::{AGR, Keypair, ModelKind, Hash};
    /// let alice = Keypair::from_seed_label("alice");
    /// let genesis = Genesis::new("dev")
    ///     .with_account(alice.address(), 1_000 * AGR)
    ///     .with_model(Hash([1; 32]), "tiny", ModelKind::Chat);
    /// assert!(genesis.initial_writes().is_ok());
    /// ```
    pub fn new(chain_id: &str) -> Genesis {
        Genesis {
            chain_id: chain_id.to_string(),
            genesis_time_ms: 0,
            params: Params::default(),
            accounts: Vec::new(),
            market: MarketParams::default(),
            models: Vec::new(),
            model_sources: Vec::new(),
            verify: VerifyParams::default(),
            consensus: ConsensusParams::default(),
            validators: Vec::new(),
            emission: crate::EmissionParams::default(),
            subnets: crate::SubnetParams::default(),
            data: crate::DataParams::default(),
        }
    }

    /// With these data-market parameters.
    pub fn with_data(mut self, data: crate::DataParams) -> Genesis {
        self.data = data;
        self
    }

    /// With this emission schedule.
    pub fn with_emission(mut self, emission: crate::EmissionParams) -> Genesis {
        self.emission = emission;
        self
    }

    /// With these subnet parameters.
    pub fn with_subnets(mut self, subnets: crate::SubnetParams) -> Genesis {
        self.subnets = subnets;
        self
    }

    /// With an account holding `balance`.
    pub fn with_account(self, address: Address, balance: Amount) -> Genesis {
        self.with_bonded_account(address, balance, 0)
    }

    /// With an account holding `balance` and `bonded` stake.
    pub fn with_bonded_account(
        mut self,
        address: Address,
        balance: Amount,
        bonded: Amount,
    ) -> Genesis {
        self.accounts.push(GenesisAccount {
            address,
            balance,
            bonded,
        });
        self
    }

    /// With these accounts too.
    pub fn with_accounts(mut self, accounts: impl IntoIterator<Item = GenesisAccount>) -> Genesis {
        self.accounts.extend(accounts);
        self
    }

    /// With these models in the registry too.
    pub fn with_models(mut self, models: impl IntoIterator<Item = GenesisModel>) -> Genesis {
        self.models.extend(models);
        self
    }

    /// With these validators too.
    pub fn with_validators(
        mut self,
        validators: impl IntoIterator<Item = GenesisValidator>,
    ) -> Genesis {
        self.validators.extend(validators);
        self
    }

    /// With a model in the registry.
    pub fn with_model(mut self, id: Hash, name: &str, kind: ModelKind) -> Genesis {
        self.models.push(GenesisModel {
            id,
            name: name.to_string(),
            kind,
        });
        self
    }

    /// With where these models can be fetched.
    pub fn with_model_sources(
        mut self,
        sources: impl IntoIterator<Item = (Hash, agora_types::ModelSource)>,
    ) -> Genesis {
        self.model_sources.extend(sources);
        self
    }

    /// With where model `id` can be fetched.
    pub fn with_model_source(mut self, id: Hash, source: agora_types::ModelSource) -> Genesis {
        self.model_sources.push((id, source));
        self
    }

    /// With a validator (its account must be bonded).
    pub fn with_validator(mut self, public_key: PublicKey) -> Genesis {
        self.validators.push(GenesisValidator { public_key });
        self
    }

    /// With these chain parameters.
    pub fn with_params(mut self, params: Params) -> Genesis {
        self.params = params;
        self
    }

    /// With these market parameters.
    pub fn with_market(mut self, market: MarketParams) -> Genesis {
        self.market = market;
        self
    }

    /// With these verification parameters.
    pub fn with_verify(mut self, verify: VerifyParams) -> Genesis {
        self.verify = verify;
        self
    }

    /// With these consensus parameters.
    pub fn with_consensus(mut self, consensus: ConsensusParams) -> Genesis {
        self.consensus = consensus;
        self
    }

    /// Starting at `time_ms`.
    pub fn with_time(mut self, time_ms: u64) -> Genesis {
        self.genesis_time_ms = time_ms;
        self
    }

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
            agora_types::check_model_name(&m.name)
                .map_err(|why| Error::InvalidGenesis(format!("model {}: {why}", m.id)))?;
            let info = ModelInfo {
                name: m.name.clone(),
                kind: m.kind,
            };
            writes.insert(
                model_key(&m.id),
                Some(borsh::to_vec(&info).expect("encode")),
            );
            let name = model_name_key(&m.name);
            if writes.contains_key(&name) {
                return Err(Error::InvalidGenesis(format!(
                    "two models are named {:?}",
                    m.name
                )));
            }
            writes.insert(name, Some(borsh::to_vec(&m.id).expect("encode")));
        }
        let mut sourced = BTreeSet::new();
        for (id, source) in &self.model_sources {
            let Some(model) = self.models.iter().find(|m| m.id == *id) else {
                return Err(Error::InvalidGenesis(format!(
                    "a source for model {id}, which is not listed"
                )));
            };
            if model.kind == ModelKind::Provable || !sourced.insert(*id) {
                return Err(Error::InvalidGenesis(format!(
                    "model {id}: one source, for a model that is not provable"
                )));
            }
            source
                .check()
                .map_err(|why| Error::InvalidGenesis(format!("model {id}'s source: {why}")))?;
            writes.insert(
                model_source_key(id),
                Some(borsh::to_vec(source).expect("encode")),
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
        self.emission.check().map_err(Error::InvalidGenesis)?;
        self.subnets.check().map_err(Error::InvalidGenesis)?;
        crate::executor::genesis_writes(&mut writes, &self.emission, &self.subnets, supply);
        self.data.check().map_err(Error::InvalidGenesis)?;
        writes.insert(
            crate::data_params_key(),
            Some(borsh::to_vec(&self.data).expect("encode")),
        );
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
