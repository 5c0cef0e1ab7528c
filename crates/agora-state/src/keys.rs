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

/// `mnam/` + a model's name → its id: names are unique, so a name says which model it is.
pub fn model_name_key(name: &str) -> Vec<u8> {
    let mut key = b"mnam/".to_vec();
    key.extend_from_slice(name.as_bytes());
    key
}

/// `msrc/` + model id → [`agora_types::ModelSource`]: where its weights can be fetched.
pub fn model_source_key(id: &Hash) -> Vec<u8> {
    let mut key = b"msrc/".to_vec();
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

/// `pool/verifiers` → what checks left that belongs to no provider's fund (u128): slashed stakes
/// nobody won, verifiers' slashes, rounding, the funds of providers that left.
pub fn verifier_pool_key() -> Vec<u8> {
    b"pool/verifiers".to_vec()
}

/// `vfnd/` + provider address → the verification fund of a provider (u128): the protocol
/// shares and redundancy surcharges its own jobs paid, from which checks of its jobs are paid.
pub fn verification_fund_key(provider: &Address) -> Vec<u8> {
    let mut key = b"vfnd/".to_vec();
    key.extend_from_slice(&provider.0);
    key
}

/// `verify` → [`crate::VerifyParams`] (absent: defaults).
pub fn verify_params_key() -> Vec<u8> {
    b"verify".to_vec()
}

/// `vrfr/` + address → [`crate::Verifier`].
pub fn verifier_key(address: &Address) -> Vec<u8> {
    let mut key = b"vrfr/".to_vec();
    key.extend_from_slice(&address.0);
    key
}

/// `vset` → the registered verifiers' addresses, sorted (the set checks are drawn from).
pub fn verifier_set_key() -> Vec<u8> {
    b"vset".to_vec()
}

/// `chk/` + job id → [`crate::Check`].
pub fn check_key(job: &Hash) -> Vec<u8> {
    let mut key = b"chk/".to_vec();
    key.extend_from_slice(&job.0);
    key
}

/// `chko/` + address + job id → nothing: an open check in which the address (provider or seated
/// verifier) has something to do. Listed by prefix.
pub fn open_check_key(address: &Address, job: &Hash) -> Vec<u8> {
    let mut key = open_check_prefix(address);
    key.extend_from_slice(&job.0);
    key
}

/// The prefix of [`open_check_key`] for one address.
pub fn open_check_prefix(address: &Address) -> Vec<u8> {
    let mut key = b"chko/".to_vec();
    key.extend_from_slice(&address.0);
    key
}

/// `drw/` + big-endian height → job ids whose check is drawn at that height.
pub fn draw_queue_key(height: u64) -> Vec<u8> {
    let mut key = b"drw/".to_vec();
    key.extend_from_slice(&height.to_be_bytes());
    key
}

/// `prnq/` + big-endian height → job ids whose records are pruned at that height.
pub fn prune_queue_key(height: u64) -> Vec<u8> {
    let mut key = b"prnq/".to_vec();
    key.extend_from_slice(&height.to_be_bytes());
    key
}

/// `cmtq/` + big-endian height → job ids whose dispute committee is drawn at that height.
pub fn committee_queue_key(height: u64) -> Vec<u8> {
    let mut key = b"cmtq/".to_vec();
    key.extend_from_slice(&height.to_be_bytes());
    key
}

/// `ddl/` + big-endian height → job ids whose check has a deadline at that height.
pub fn deadline_queue_key(height: u64) -> Vec<u8> {
    let mut key = b"ddl/".to_vec();
    key.extend_from_slice(&height.to_be_bytes());
    key
}

/// `rvl/` + job id + verifier + big-endian part → one part of a sealed reveal.
pub fn reveal_key(job: &Hash, verifier: &Address, part: u16) -> Vec<u8> {
    let mut key = b"rvl/".to_vec();
    key.extend_from_slice(&job.0);
    key.extend_from_slice(&verifier.0);
    key.extend_from_slice(&part.to_be_bytes());
    key
}

/// `cons` → [`crate::ConsensusParams`] (absent: defaults).
pub fn consensus_params_key() -> Vec<u8> {
    b"cons".to_vec()
}

/// `valk/` + address → the consensus key ([`agora_types::PublicKey`]) of an account that bonded.
pub fn validator_key_key(address: &Address) -> Vec<u8> {
    let mut key = b"valk/".to_vec();
    key.extend_from_slice(&address.0);
    key
}

/// `valc` → every account that ever bonded with a recorded key, sorted: the epoch's candidates.
pub fn validator_candidates_key() -> Vec<u8> {
    b"valc".to_vec()
}

/// `vals` → the [`crate::ValidatorSet`] in force (absent: a dev chain, no consensus set).
pub fn validator_set_key() -> Vec<u8> {
    b"vals".to_vec()
}

/// `emip` → [`crate::EmissionParams`] (absent: defaults).
pub fn emission_params_key() -> Vec<u8> {
    b"emip".to_vec()
}

/// `snpm` → [`crate::SubnetParams`] (absent: defaults).
pub fn subnet_params_key() -> Vec<u8> {
    b"snpm".to_vec()
}

/// `emis` → [`crate::EmissionState`]: genesis supply, minted, burned.
pub fn emission_key() -> Vec<u8> {
    b"emis".to_vec()
}

/// `snet` → [`crate::SubnetIndex`].
pub fn subnet_index_key() -> Vec<u8> {
    b"snet".to_vec()
}

fn subnet_prefixed(prefix: &[u8], netuid: u16) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(&netuid.to_be_bytes());
    key
}

/// `sn/` + netuid → [`crate::Subnet`].
pub fn subnet_key(netuid: u16) -> Vec<u8> {
    subnet_prefixed(b"sn/", netuid)
}

/// `snn/` + netuid + uid → [`crate::Neuron`].
pub fn neuron_key(netuid: u16, uid: u16) -> Vec<u8> {
    let mut key = subnet_prefixed(b"snn/", netuid);
    key.extend_from_slice(&uid.to_be_bytes());
    key
}

/// `snu/` + netuid + hotkey → its UID (`u16`).
pub fn hotkey_uid_key(netuid: u16, hotkey: &Address) -> Vec<u8> {
    let mut key = subnet_prefixed(b"snu/", netuid);
    key.extend_from_slice(&hotkey.0);
    key
}

/// `snw/` + netuid + uid → [`crate::WeightRow`]: the weights the UID's validator revealed.
pub fn weights_key(netuid: u16, uid: u16) -> Vec<u8> {
    let mut key = subnet_prefixed(b"snw/", netuid);
    key.extend_from_slice(&uid.to_be_bytes());
    key
}

/// `snb/` + netuid + uid → the UID's bonds, `Vec<(u16, u64)>`.
pub fn bonds_key(netuid: u16, uid: u16) -> Vec<u8> {
    let mut key = subnet_prefixed(b"snb/", netuid);
    key.extend_from_slice(&uid.to_be_bytes());
    key
}

/// `snc/` + netuid → the [`crate::WeightCommit`]s waiting for their reveal.
pub fn commits_key(netuid: u16) -> Vec<u8> {
    subnet_prefixed(b"snc/", netuid)
}

/// `sns/` + netuid + hotkey → [`crate::HotkeyStake`].
pub fn hotkey_stake_key(netuid: u16, hotkey: &Address) -> Vec<u8> {
    let mut key = subnet_prefixed(b"sns/", netuid);
    key.extend_from_slice(&hotkey.0);
    key
}

/// `snh/` + netuid → the last [`crate::subnet::HISTORY_EPOCHS`] [`crate::EpochRecord`]s.
pub fn subnet_history_key(netuid: u16) -> Vec<u8> {
    subnet_prefixed(b"snh/", netuid)
}

/// `snp/` + netuid → the [`crate::Prediction`]s of a forecast subnet's open windows.
pub fn predictions_key(netuid: u16) -> Vec<u8> {
    subnet_prefixed(b"snp/", netuid)
}

/// `params/data` → [`crate::DataParams`] (absent in states made before the data market:
/// defaults).
pub fn data_params_key() -> Vec<u8> {
    b"params/data".to_vec()
}

/// `dmn` → the next bounty id (u64).
pub fn next_bounty_key() -> Vec<u8> {
    b"dmn".to_vec()
}

/// `dmb/` + big-endian bounty id → [`crate::Bounty`].
pub fn bounty_key(id: u64) -> Vec<u8> {
    let mut key = b"dmb/".to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// `dmi/` + big-endian bounty id + big-endian index → [`crate::Item`].
pub fn item_key(bounty: u64, item: u32) -> Vec<u8> {
    let mut key = b"dmi/".to_vec();
    key.extend_from_slice(&bounty.to_be_bytes());
    key.extend_from_slice(&item.to_be_bytes());
    key
}

/// `dmh/` + big-endian bounty id + item hash → the item's index (u32): one item per content.
pub fn item_hash_key(bounty: u64, hash: &Hash) -> Vec<u8> {
    let mut key = b"dmh/".to_vec();
    key.extend_from_slice(&bounty.to_be_bytes());
    key.extend_from_slice(&hash.0);
    key
}

/// `dms/` + big-endian bounty id → its [`crate::SettleProgress`], while it settles.
pub fn settle_progress_key(bounty: u64) -> Vec<u8> {
    let mut key = b"dms/".to_vec();
    key.extend_from_slice(&bounty.to_be_bytes());
    key
}

/// `dma/` + reviewer + big-endian bounty id + big-endian index → nothing: the reviewer holds an
/// open seat (a screening or panel votes) on the item, so its assignments are found without
/// reading every item.
pub fn seat_key(reviewer: &Address, bounty: u64, item: u32) -> Vec<u8> {
    let mut key = b"dma/".to_vec();
    key.extend_from_slice(&reviewer.0);
    key.extend_from_slice(&bounty.to_be_bytes());
    key.extend_from_slice(&item.to_be_bytes());
    key
}

/// `dmr/` + address → [`crate::Reviewer`].
pub fn reviewer_key(address: &Address) -> Vec<u8> {
    let mut key = b"dmr/".to_vec();
    key.extend_from_slice(&address.0);
    key
}

/// `dmrs` → the reviewers' addresses, sorted.
pub fn reviewer_set_key() -> Vec<u8> {
    b"dmrs".to_vec()
}

/// `dmq/` + big-endian height → the [`crate::DataTask`]s due at that height.
pub fn data_queue_key(height: u64) -> Vec<u8> {
    let mut key = b"dmq/".to_vec();
    key.extend_from_slice(&height.to_be_bytes());
    key
}

/// `dmd/` + root → [`crate::Dataset`].
pub fn dataset_key(root: &Hash) -> Vec<u8> {
    let mut key = b"dmd/".to_vec();
    key.extend_from_slice(&root.0);
    key
}

/// `dmc/` + root + address → royalties the contributor claimed from the dataset (u128).
pub fn royalty_claim_key(root: &Hash, address: &Address) -> Vec<u8> {
    let mut key = b"dmc/".to_vec();
    key.extend_from_slice(&root.0);
    key.extend_from_slice(&address.0);
    key
}

/// `dmo/` + model id → [`crate::ModelOwner`].
pub fn model_owner_key(id: &Hash) -> Vec<u8> {
    let mut key = b"dmo/".to_vec();
    key.extend_from_slice(&id.0);
    key
}

/// The key of what `target` cites (a list of dataset roots) when `sender` cites it: `dmt/m/` +
/// model id (its registrant's provenance), `dmt/n/` + big-endian netuid + hotkey, `dmt/j/` +
/// job id. A provider's citations for a model it serves are under
/// [`provider_citation_key`].
pub fn citation_key(target: &agora_types::CiteTarget, sender: &Address) -> Vec<u8> {
    match target {
        agora_types::CiteTarget::Model { id } => {
            let mut key = b"dmt/m/".to_vec();
            key.extend_from_slice(&id.0);
            key
        }
        agora_types::CiteTarget::Neuron { netuid } => neuron_citation_key(*netuid, sender),
        agora_types::CiteTarget::Job { id } => {
            let mut key = b"dmt/j/".to_vec();
            key.extend_from_slice(&id.0);
            key
        }
    }
}

/// `dmt/p/` + model id + provider: the datasets a provider cites for a model it serves, whose
/// royalties its fees on the model pay.
pub fn provider_citation_key(model: &Hash, provider: &Address) -> Vec<u8> {
    let mut key = b"dmt/p/".to_vec();
    key.extend_from_slice(&model.0);
    key.extend_from_slice(&provider.0);
    key
}

/// `dmk/` + root → a dataset's contributors and their accepted items, by address.
pub fn dataset_contributors_key(root: &Hash) -> Vec<u8> {
    let mut key = b"dmk/".to_vec();
    key.extend_from_slice(&root.0);
    key
}

/// `dmt/n/` + big-endian netuid + hotkey: what a neuron cites.
pub fn neuron_citation_key(netuid: u16, hotkey: &Address) -> Vec<u8> {
    let mut key = b"dmt/n/".to_vec();
    key.extend_from_slice(&netuid.to_be_bytes());
    key.extend_from_slice(&hotkey.0);
    key
}

/// `zkm/` + model id → [`crate::ZkModelRecord`].
pub fn zk_model_key(id: &Hash) -> Vec<u8> {
    let mut key = b"zkm/".to_vec();
    key.extend_from_slice(&id.0);
    key
}

/// `zkf/` + blake3 of a model file → the provable model's id registered from it (so that the same
/// file sent again is refused before the chain runs its setup).
pub fn zk_file_key(file_hash: &Hash) -> Vec<u8> {
    let mut key = b"zkf/".to_vec();
    key.extend_from_slice(&file_hash.0);
    key
}

/// `zkc/` + certifier + subject → [`crate::ZkCertification`] (the latest).
pub fn zk_certification_key(certifier: &Address, subject: &Address) -> Vec<u8> {
    let mut key = b"zkc/".to_vec();
    key.extend_from_slice(&certifier.0);
    key.extend_from_slice(&subject.0);
    key
}

/// `zks/` + address → the account's next attestation number (u64).
pub fn zk_seq_key(address: &Address) -> Vec<u8> {
    let mut key = b"zks/".to_vec();
    key.extend_from_slice(&address.0);
    key
}

/// `zka/` + address + model id → [`crate::ZkAttestation`] (the latest).
pub fn zk_attestation_key(address: &Address, model: &Hash) -> Vec<u8> {
    let mut key = b"zka/".to_vec();
    key.extend_from_slice(&address.0);
    key.extend_from_slice(&model.0);
    key
}

/// `zkj/` + job id → [`crate::ZkJobProof`]: what the chain verified when it settled a `zk` job.
pub fn zk_job_key(job: &Hash) -> Vec<u8> {
    let mut key = b"zkj/".to_vec();
    key.extend_from_slice(&job.0);
    key
}
