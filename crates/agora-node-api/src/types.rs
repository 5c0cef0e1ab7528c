//! Request and response bodies of the node API, as JSON. Amounts are decimal strings (they do
//! not fit a JSON number), hashes, keys and signatures hex, addresses bech32.

use agora_state::{Account, Check, Escrow, JobRecord, Provider, ValidatorEntry, Verifier};
use agora_types::proof::Proof;
use agora_types::{
    Address, Amount, BlockHeader, Event, Hash, Keypair, ModelKind, PublicKey, Receipt, Signature,
    SignedTransaction, serde_u128,
};
use serde::{Deserialize, Serialize};

/// An error's body: `{code, message}` (a stable machine-readable code, and an explanation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable code, e.g. `unknown_account`.
    pub code: String,
    /// For people.
    pub message: String,
}

/// `POST /v1/txs`: one transaction (`tx`) or a batch (`txs`), each hex of its encoding.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// One transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx: Option<String>,
    /// A batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txs: Option<Vec<String>>,
    /// Set by a validator relaying transactions its clients sent: not relayed again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub relayed: bool,
}

/// The answer to one submitted transaction (202).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    /// Its hash.
    pub hash: Hash,
}

/// One transaction of a batch: accepted, or refused with why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SubmitOutcome {
    /// In the mempool.
    Accepted {
        /// Its hash.
        hash: Hash,
    },
    /// Not admitted.
    Refused {
        /// Stable code.
        code: String,
        /// Why.
        message: String,
    },
}

/// The answer to a batch (202): one outcome per transaction, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmittedBatch {
    /// In the order sent.
    pub results: Vec<SubmitOutcome>,
}

/// A transaction with its hash and, once committed, its receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxEntry {
    /// Its hash.
    pub hash: Hash,
    /// The signed transaction.
    pub tx: SignedTransaction,
    /// Its receipt; `None` while pending.
    pub receipt: Option<Receipt>,
}

/// Where a transaction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxStatus {
    /// In a block.
    Committed,
    /// In the mempool.
    Pending,
}

/// `GET /v1/txs/{hash}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxResponse {
    /// The transaction.
    #[serde(flatten)]
    pub entry: TxEntry,
    /// Committed or pending.
    pub status: TxStatus,
    /// The block's height, once committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    /// Its position in the block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// The block's hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_hash: Option<Hash>,
}

/// `GET /v1/blocks/{height|hash|latest}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockResponse {
    /// The block's hash.
    pub hash: Hash,
    /// Its header.
    pub header: BlockHeader,
    /// Its transactions with their receipts.
    pub txs: Vec<TxEntry>,
    /// Events of the block itself (releases, draws, slashes…).
    pub block_events: Vec<Event>,
}

/// `GET /v1/accounts/{address}[?prove=true]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountResponse {
    /// The account's address.
    pub address: Address,
    /// Its state.
    #[serde(flatten)]
    pub account: Account,
    /// The height it was read at.
    pub height: u64,
    /// A Merkle proof of it, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<AccountProof>,
}

/// `GET /v1/accounts/{address}/txs[?limit=N&before=HEIGHT.INDEX]`: the transactions that concern
/// an account (it sent them, or they name it: a transfer's recipient, a settled job's client, a
/// reveal's verifier), newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountTxsResponse {
    /// The account.
    pub address: Address,
    /// The height it was read at.
    pub height: u64,
    /// The height through which histories are indexed: later blocks are not listed yet (the
    /// node indexes them off the commit's path, within moments).
    pub indexed_to: Option<u64>,
    /// The transactions, newest first.
    pub txs: Vec<AccountTxEntry>,
    /// `before` for the next page (`HEIGHT.INDEX`), when there may be more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A transaction in an account's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountTxEntry {
    /// Its hash.
    pub hash: Hash,
    /// Its block.
    pub height: u64,
    /// Its position in the block.
    pub index: u32,
    /// Its first message's type (`transfer`, `settle_jobs`, …), with `+n` for more.
    pub kind: String,
    /// Who signed it.
    pub sender: Address,
    /// Whether it succeeded.
    pub success: bool,
    /// The fee it paid, in base units.
    #[serde(with = "agora_types::serde_u128")]
    pub fee_paid: u128,
}

/// An account's proof against the state root of block `height`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountProof {
    /// The block whose state root it is checked against.
    pub height: u64,
    /// That root.
    pub state_root: Hash,
    /// The state key, hex.
    pub key: String,
    /// The proven value (the account's encoding), hex.
    pub value: String,
    /// The proof.
    #[serde(flatten)]
    pub proof: Proof,
}

/// `GET /v1/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// The chain id transactions must carry.
    pub chain_id: String,
    /// The latest height.
    pub height: u64,
    /// The latest block's hash.
    pub latest_block_hash: Hash,
    /// Its time.
    pub latest_block_time_ms: u64,
    /// Its state root.
    pub state_root: Hash,
    /// Connected peers (reported by the consensus engine; empty here).
    pub peers: Vec<String>,
    /// Transactions waiting.
    pub mempool_size: usize,
    /// The minimum fee per unit of work.
    #[serde(with = "serde_u128")]
    pub min_fee: Amount,
    /// The validator this node runs as.
    pub validator: Address,
}

/// How a chain makes blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainMode {
    /// One block producer, no consensus.
    Dev,
    /// A validator set running Malachite.
    Network,
}

/// `GET /v1/validators`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorsResponse {
    /// The height it was read at.
    pub height: u64,
    /// Dev or network.
    pub mode: ChainMode,
    /// The validators in force (none on a dev chain).
    pub validators: Vec<ValidatorEntry>,
    /// Their power together.
    pub total_power: u64,
    /// Blocks per epoch.
    pub epoch_length: u64,
    /// The height at which the current epoch ends (network only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_epoch_end: Option<u64>,
}

/// `GET /health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResponse {
    /// `ok`.
    pub status: String,
    /// The latest height, if any block.
    pub height: Option<u64>,
}

/// One `block` event of `GET /v1/events/blocks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockEvent {
    /// Height.
    pub height: u64,
    /// Hash.
    pub hash: Hash,
    /// Time.
    pub time_ms: u64,
    /// Transactions in it.
    pub txs: usize,
    /// Who proposed it.
    pub proposer: Address,
    /// The state root after it.
    pub state_root: Hash,
}

/// A registered provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderEntry {
    /// Its account.
    pub address: Address,
    /// Its record.
    #[serde(flatten)]
    pub provider: Provider,
}

/// `GET /v1/market/providers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvidersResponse {
    /// The height it was read at.
    pub height: u64,
    /// Up to a thousand.
    pub providers: Vec<ProviderEntry>,
}

/// `GET /v1/market/providers/{address}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderResponse {
    /// The height it was read at.
    pub height: u64,
    /// The provider.
    pub provider: ProviderEntry,
}

/// A registered model (`GET /v1/market/models/{id}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// Its id (the hash of its weights' manifest).
    pub id: Hash,
    /// Its name.
    pub name: String,
    /// What it does.
    pub kind: ModelKind,
    /// Where its weights can be fetched, once its registrant published it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<agora_types::ModelSource>,
}

/// `GET /v1/market/models`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelsResponse {
    /// The height it was read at.
    pub height: u64,
    /// Up to a thousand.
    pub models: Vec<ModelEntry>,
}

/// `GET /v1/market/escrow/{address}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscrowResponse {
    /// The height it was read at.
    pub height: u64,
    /// The client.
    pub address: Address,
    /// Its escrow (zero when it never deposited).
    pub escrow: Escrow,
}

/// `GET /v1/market/jobs/{id}`: a settled job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResponse {
    /// The height it was read at.
    pub height: u64,
    /// The job.
    pub job_id: Hash,
    /// Its fee: `pending`, `held`, `released` or `refunded`.
    pub state: String,
    /// Its record.
    pub job: JobRecord,
    /// Whether it is checked; `None` until the draw (the block after its settlement).
    pub sampled: Option<bool>,
    /// Its check, if one opened.
    pub check: Option<Check>,
    /// For a job of level `zk`: what the chain verified when it settled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zk: Option<agora_state::ZkJobProof>,
}

/// A registered verifier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifierEntry {
    /// Its account.
    pub address: Address,
    /// Its record.
    #[serde(flatten)]
    pub verifier: Verifier,
}

/// `GET /v1/market/verifiers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiersResponse {
    /// The height it was read at.
    pub height: u64,
    /// Up to a thousand.
    pub verifiers: Vec<VerifierEntry>,
}

/// `GET /v1/market/checks/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResponse {
    /// The height it was read at.
    pub height: u64,
    /// The check.
    pub check: Check,
}

/// `GET /v1/market/open-checks/{address}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenChecksResponse {
    /// The height it was read at.
    pub height: u64,
    /// The provider or verifier.
    pub address: Address,
    /// The open checks it has something to do in.
    pub checks: Vec<Check>,
}

/// `GET /v1/market/checks/{id}/reveal/{verifier}`: a complete reveal, its parts joined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevealResponse {
    /// The job.
    pub job_id: Hash,
    /// The verifier it is sealed to.
    pub verifier: Address,
    /// The sealed bytes, hex.
    pub data: String,
}

/// A subnet in a listing (`GET /v1/subnets`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetSummary {
    /// Its id.
    pub netuid: u16,
    /// Its name.
    pub name: String,
    /// Its owner.
    pub owner: Address,
    /// What its miners do.
    pub task: agora_types::SubnetTask,
    /// Blocks between epochs.
    pub tempo: u64,
    /// UIDs in use.
    pub n: u16,
    /// Most UIDs.
    pub max_uids: u16,
    /// The registration burn now.
    #[serde(with = "serde_u128")]
    pub burn: Amount,
    /// Stake delegated on it: its share of each block's emission.
    #[serde(with = "serde_u128")]
    pub stake: Amount,
    /// Emission accrued since its last epoch.
    #[serde(with = "serde_u128")]
    pub pending_emission: Amount,
    /// Epochs run.
    pub epochs: u64,
    /// The block its next epoch runs at.
    pub next_epoch: u64,
}

/// `GET /v1/subnets`: every subnet, and what creating one costs now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetsResponse {
    /// The height it was read at.
    pub height: u64,
    /// What creating a subnet burns now.
    #[serde(with = "serde_u128")]
    pub lock_cost: Amount,
    /// Minted and burned so far, and the supply at genesis.
    pub emission: agora_state::EmissionState,
    /// Every subnet.
    pub subnets: Vec<SubnetSummary>,
}

/// `GET /v1/subnets/{netuid}`: a subnet, its hyperparameters and its last epochs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetResponse {
    /// The height it was read at.
    pub height: u64,
    /// Its summary.
    pub summary: SubnetSummary,
    /// The whole record (hyperparameters included).
    pub subnet: agora_state::Subnet,
    /// Its last epochs, oldest first.
    pub history: Vec<agora_state::EpochRecord>,
    /// Weight commitments waiting for their reveal.
    pub commits: Vec<agora_state::WeightCommit>,
    /// Forecasts of the open windows (a forecast subnet).
    pub predictions: Vec<agora_state::Prediction>,
}

/// One UID of a metagraph. Fractions are the chain's fixed-point values as decimals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetagraphEntry {
    /// The UID.
    pub uid: u16,
    /// Its hotkey.
    pub hotkey: Address,
    /// Where it serves.
    pub endpoint: String,
    /// When it got this UID.
    pub registered_at: u64,
    /// Stake delegated to its hotkey on this subnet (fresh included).
    #[serde(with = "serde_u128")]
    pub stake: Amount,
    /// Stake that counted in the last epoch.
    #[serde(with = "serde_u128")]
    pub stake_counted: Amount,
    /// Delegators of its hotkey.
    pub delegators: u32,
    /// Held a validator permit in the last epoch.
    pub validator_permit: bool,
    /// Last epoch's rank.
    pub rank: f64,
    /// Last epoch's trust.
    pub trust: f64,
    /// Last epoch's consensus weight.
    pub consensus: f64,
    /// Last epoch's incentive.
    pub incentive: f64,
    /// Last epoch's dividends.
    pub dividends: f64,
    /// Last epoch's validator trust.
    pub validator_trust: f64,
    /// What it earned in the last epoch (base units).
    #[serde(with = "serde_u128")]
    pub emission: Amount,
    /// The height of the commitment its weights were revealed from (0: none).
    pub last_update: u64,
    /// Its weights, `(uid, weight)`.
    pub weights: Vec<(u16, u16)>,
    /// Its bonds, `(uid, bond)`.
    pub bonds: Vec<(u16, f64)>,
}

/// `GET /v1/subnets/{netuid}/metagraph`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetagraphResponse {
    /// The height it was read at.
    pub height: u64,
    /// The subnet.
    pub netuid: u16,
    /// Every UID.
    pub neurons: Vec<MetagraphEntry>,
}

impl JobResponse {
    /// Whether the job can no longer be checked: not drawn, or its check decided.
    pub fn verification_over(&self) -> bool {
        self.sampled == Some(false)
            || self
                .check
                .as_ref()
                .is_some_and(|c| c.outcome != agora_state::Outcome::Open)
    }
}

/// The domain of a report publication's signature.
const REPORT_DOMAIN: &[u8] = b"agora/publish-report/v1";

/// `POST /v1/search/reports`: a client publishes its settled audit job's report. The job's
/// input and output travel as the exact JSON text whose blake3 hashes the job settled with;
/// the client signs the chain and the job (the contents are bound by those hashes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishReport {
    /// The settled job.
    pub job_id: Hash,
    /// The job's input.
    pub input: String,
    /// The job's output (the auditor's report).
    pub output: String,
    /// The client's public key.
    pub public_key: PublicKey,
    /// Over [`PublishReport::sign_bytes`].
    pub signature: Signature,
}

impl PublishReport {
    /// What the client signs: the domain, the chain's id and the job.
    pub fn sign_bytes(chain_id: &str, job_id: &Hash) -> Vec<u8> {
        let mut out = REPORT_DOMAIN.to_vec();
        out.extend_from_slice(&(chain_id.len() as u64).to_le_bytes());
        out.extend_from_slice(chain_id.as_bytes());
        out.extend_from_slice(&job_id.0);
        out
    }

    /// The client's publication of `job_id`, whose input and output are these texts.
    pub fn sign(
        chain_id: &str,
        key: &Keypair,
        job_id: Hash,
        input: String,
        output: String,
    ) -> PublishReport {
        PublishReport {
            job_id,
            input,
            output,
            public_key: key.public(),
            signature: key.sign(&Self::sign_bytes(chain_id, &job_id)),
        }
    }
}

/// `POST /v1/search/reports`'s answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishResponse {
    /// The report's document in the search index (`audit:<job id>`).
    pub id: String,
}

/// A registered provable model (`GET /v1/zk/models/{id}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZkModelEntry {
    /// Its id: the hash of its verifying key.
    pub id: Hash,
    /// The registration: name, key bytes (hex), registrant, height.
    #[serde(flatten)]
    pub record: agora_state::ZkModelRecord,
    /// `(inputs, neurons, shift)` of each layer, read from the key.
    pub layers: Vec<(u32, u32, u8)>,
    /// Its number of weights.
    pub weights: u64,
}

/// `GET /v1/zk/models`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZkModelsResponse {
    /// The height it was read at.
    pub height: u64,
    /// Up to a thousand.
    pub models: Vec<ZkModelEntry>,
}

/// One attestation of an account (`GET /v1/zk/attestations/{address}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZkAttestationEntry {
    /// The model's id.
    pub model: Hash,
    /// The claim, its certifier, its number and height.
    #[serde(flatten)]
    pub attestation: agora_state::ZkAttestation,
}

/// `GET /v1/zk/attestations/{address}`: an account's latest attestation per model, and the number
/// its next proof must be bound to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZkAttestationsResponse {
    /// The height it was read at.
    pub height: u64,
    /// The account.
    pub address: Address,
    /// The attestation number the account's next proof is bound to.
    pub next_seq: u64,
    /// Its attestations, one per model (the latest).
    pub attestations: Vec<ZkAttestationEntry>,
}
