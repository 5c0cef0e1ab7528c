//! The provider's side of a job: admission (who asks, for what, who pays), running it, sealing the
//! output, signing the receipt, and settling receipts on-chain in batches.

use crate::verify::{RevealDoc, open_reveal, seal_reveal};
use crate::{
    Backend, Chain, Envelope, Error, JobInput, JobOutput, OutputWriter, ProviderSecret, open,
};
use agora_types::{
    Address, Amount, Hash, JobReceipt, Keypair, MAX_REVEAL_PART_BYTES, MAX_REVEAL_PARTS,
    MAX_SETTLE_JOBS, Message, ProviderInfo, SettledJob, SignedJobReceipt, SignedJobRequest,
    Transaction, Verification, ZkClaim, job_fee,
};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

mod kept;
mod settlement;

/// What a gateway posts to a provider.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobSubmission {
    /// Hex of the borsh-encoded client-signed request.
    pub request: String,
    /// The input, sealed to the provider's key.
    pub input: Envelope,
    /// Stream the output piece by piece (server-sent events).
    #[serde(default)]
    pub stream: bool,
}

/// A sealed piece of output: its number and hex ciphertext.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPiece {
    /// Position in the output stream.
    pub n: u64,
    /// Hex of the ciphertext.
    pub sealed: String,
}

/// What a provider returns at the end of a job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Delivery {
    /// The whole output document ([`JobOutput`] JSON), sealed: the last piece of the stream.
    pub output: SealedPiece,
    /// Hex of the borsh-encoded provider-signed receipt.
    pub receipt: String,
}

/// How a provider runs.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Blocks a request must stay settle-able after it arrives.
    pub min_expiry_margin: u64,
    /// Most blocks ahead a request may expire: the chain's `max_request_lifetime` (a request
    /// valid for longer could never be settled, so serving it would be work for nothing).
    pub max_expiry_ahead: u64,
    /// Fee paid per unit of work of each transaction it sends (settlements, reveals), in base
    /// units: the chain's minimum fee per unit ([`agora_types::work_units`]).
    pub settle_tx_fee: Amount,
    /// Where job inputs are kept for the verification window (none: not kept).
    pub jobs_dir: Option<PathBuf>,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            min_expiry_margin: 20,
            // The chain's default (`MarketParams::max_request_lifetime`), less a block of slack.
            max_expiry_ahead: 172_800 - 1,
            settle_tx_fee: 1_000,
            jobs_dir: None,
        }
    }
}

/// Blocks after which a reveal the chain has not seen whole is sent again.
const REVEAL_RESEND_BLOCKS: u64 = 4;

/// The largest sealed reveal the chain takes: a job whose reveal would be larger is refused
/// before its receipt is signed, so a provider never settles a job it could not reveal.
pub(crate) const REVEAL_CAPACITY: usize = MAX_REVEAL_PARTS as usize * MAX_REVEAL_PART_BYTES;

/// How often kept jobs are swept for deletion.
const KEPT_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
/// Most kept files one sweep looks at.
pub const KEPT_SWEEP_LIMIT: usize = 256;

/// A job that passed admission, ready to run.
#[derive(Debug)]
pub struct Admitted {
    request: SignedJobRequest,
    input: JobInput,
    writer: OutputWriter,
    client: Address,
    worst_fee: Amount,
    input_bytes: Vec<u8>,
}

impl Admitted {
    /// The job id.
    pub fn job_id(&self) -> Hash {
        self.request.request.id()
    }
}

/// A proved job waiting for its settlement (`SettleZkJob`, one per transaction): kept on disk
/// like a receipt until the chain has settled it.
#[derive(Clone, Debug, BorshSerialize, BorshDeserialize)]
pub(crate) struct ZkSettlement {
    job: SettledJob,
    claim: ZkClaim,
    proof: Vec<u8>,
}

/// A proved job's settlement sent to the chain.
#[derive(Debug)]
struct InFlight {
    pending: ZkSettlement,
    /// The height it was (last) sent at.
    sent: u64,
    /// How often it was sent.
    tries: u8,
}

/// Most proved jobs a provider has waiting in the chain's mempool at once: the mempool keeps 4
/// proof transactions per sender.
const ZK_IN_FLIGHT: usize = 4;
/// Blocks after which a proved job's settlement the chain has not applied is sent again (a
/// mempool may have dropped it), and how often it is sent at most (a settlement the chain
/// refuses would otherwise hold a place until the job expires).
const ZK_RESEND_BLOCKS: u64 = 10;
const ZK_MAX_TRIES: u8 = 3;
/// Most proved jobs waiting for settlement (queued or in flight) before new ones are refused:
/// settlement goes one proof per transaction, a few per block, so a burst of jobs must not
/// outrun it (each waits on disk, and expires unpaid if it waits too long).
pub(crate) const ZK_BACKLOG: usize = 32;

/// Local bookkeeping: what each client owes that the chain does not show yet.
#[derive(Debug, Default)]
struct Books {
    /// Worst-case fees of jobs running now, per client.
    running: BTreeMap<Address, Amount>,
    /// Fees of receipts not yet settled, per client.
    unsettled_fees: BTreeMap<Address, Amount>,
    /// Receipts waiting for settlement.
    unsettled: Vec<SettledJob>,
    /// Proved jobs waiting for settlement, with how often each was sent already.
    unsettled_zk: Vec<(ZkSettlement, u8)>,
    /// Proved jobs submitted and not yet settled.
    submitted_zk: Vec<InFlight>,
    /// Job ids taken (never served twice).
    seen: BTreeSet<Hash>,
    /// The next nonce this provider's transactions use.
    next_nonce: u64,
    /// Jobs submitted for settlement whose receipt files wait for the chain to confirm them:
    /// `(job id, expiry height)`.
    submitted: Vec<(Hash, u64)>,
    /// Reveals submitted: `(job id, verifier)` → the height they were sent at (sent again if the
    /// chain has not seen them whole [`REVEAL_RESEND_BLOCKS`] later: a transaction evicted from a
    /// mempool must not cost the provider its stake).
    revealed: BTreeMap<(Hash, Address), u64>,
    /// When kept jobs were last swept.
    last_sweep: Option<std::time::Instant>,
}

/// A compute provider: one key, one set of models, one chain.
pub struct Provider {
    key: Keypair,
    secret: ProviderSecret,
    info: ProviderInfo,
    chain_id: String,
    /// The chain's minimum fee per unit of work (what a proved job's settlement costs).
    min_fee: Amount,
    chain: Arc<dyn Chain>,
    backend: Arc<dyn Backend>,
    config: ProviderConfig,
    books: Mutex<Books>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("address", &self.address())
            .field("info", &self.info)
            .finish()
    }
}

fn refuse(status: u16, code: &'static str, message: impl Into<String>) -> Error {
    Error::Refused {
        status,
        code,
        message: message.into(),
    }
}

impl Provider {
    /// A provider for `chain`, serving what `backend` runs at the prices in `info` (whose models
    /// and key must match `backend` and `secret`).
    pub fn new(
        key: Keypair,
        secret: ProviderSecret,
        info: ProviderInfo,
        chain: Arc<dyn Chain>,
        backend: Arc<dyn Backend>,
        config: ProviderConfig,
    ) -> Result<Self, Error> {
        if info.encryption_key.0 != secret.public() {
            return Err(Error::BadInput(
                "the published encryption key is not the secret's".into(),
            ));
        }
        if let Some(m) = info.models.iter().find(|m| !backend.serves(m)) {
            return Err(Error::UnknownModel(*m));
        }
        let chain_id = chain.chain_id()?;
        let min_fee = chain.min_fee()?;
        // Below the chain's minimum its transactions would be refused.
        let mut config = config;
        config.settle_tx_fee = config.settle_tx_fee.max(min_fee);
        let provider = Provider {
            key,
            secret,
            info,
            chain_id,
            min_fee,
            chain,
            backend,
            config,
            books: Mutex::new(Books::default()),
        };
        provider.recover()?;
        Ok(provider)
    }

    /// What a job adds to its tokens' price: for a proved job, its settlement's chain fee
    /// ([`agora_types::zk_proof_fee`]).
    fn proof_fee(&self, zk: bool) -> Amount {
        if zk {
            agora_types::zk_proof_fee(self.min_fee)
        } else {
            0
        }
    }

    /// The provider's account.
    pub fn address(&self) -> Address {
        self.key.address()
    }

    /// What it publishes.
    pub fn info(&self) -> &ProviderInfo {
        &self.info
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What `client`'s escrow `balance` has left after its running jobs and unsettled fees.
    /// What is being withdrawn leaves the escrow when its unlock period ends, perhaps before a
    /// new job's settlement lands: only the balance counts.
    fn free_escrow(books: &Books, client: &Address, balance: Amount) -> Amount {
        let owed = books.running.get(client).copied().unwrap_or(0)
            + books.unsettled_fees.get(client).copied().unwrap_or(0);
        balance.saturating_sub(owed)
    }

    /// Refuses `client` unless its free escrow covers `fee`.
    fn check_escrow(&self, client: &Address, fee: Amount) -> Result<(), Error> {
        let escrow = self.chain.escrow(client)?;
        let free = Self::free_escrow(&self.books(), client, escrow.balance);
        if free < fee {
            return Err(refuse(
                402,
                "insufficient_escrow",
                format!("the client's escrow has {free} free, this job costs at least {fee}"),
            ));
        }
        Ok(())
    }

    /// Builds, signs and submits a transaction with the provider's next nonce.
    fn submit(&self, messages: Vec<Message>) -> Result<Hash, Error> {
        self.submit_at(messages, self.config.settle_tx_fee)
    }

    /// [`Self::submit`] paying `per_unit` per unit of work.
    fn submit_at(&self, messages: Vec<Message>, per_unit: Amount) -> Result<Hash, Error> {
        let on_chain = self.chain.nonce(&self.address())?;
        let nonce = {
            let mut books = self.books();
            let nonce = books.next_nonce.max(on_chain);
            books.next_nonce = nonce + 1;
            nonce
        };
        let tx = Transaction {
            chain_id: self.chain_id.clone(),
            sender: self.key.public(),
            nonce,
            fee: per_unit.saturating_mul(Amount::from(agora_types::work_units(&messages))),
            messages,
        }
        .sign(&self.key);
        let result = self.chain.submit(&tx).map_err(Error::from);
        if result.is_err() {
            // The nonce was not used: the next transaction takes the chain's view again.
            self.books().next_nonce = on_chain;
        }
        result
    }

    /// Registers on-chain with `stake` unless registered already. Returns the transaction hash
    /// when it submitted one.
    pub fn ensure_registered(&self, stake: Amount) -> Result<Option<Hash>, Error> {
        if self.chain.is_provider(&self.address())? {
            return Ok(None);
        }
        self.submit(vec![Message::RegisterProvider {
            stake,
            info: self.info.clone(),
        }])
        .map(Some)
    }

    /// Publishes the provider's current description: registers with `stake` when new, or
    /// replaces its models, prices, endpoint and key. Returns the transaction hash.
    pub fn publish(&self, stake: Amount) -> Result<Hash, Error> {
        if self.chain.is_provider(&self.address())? {
            self.submit(vec![Message::UpdateProvider {
                info: self.info.clone(),
            }])
        } else {
            self.submit(vec![Message::RegisterProvider {
                stake,
                info: self.info.clone(),
            }])
        }
    }

    /// Every check before running a job: the request (chain, provider, model, signature, expiry,
    /// job id), the input (decrypts, matches its hash, parses), the price (the worst case fits the
    /// max fee) and the client's escrow (covers it, with what it owes already).
    pub fn admit(&self, submission: &JobSubmission) -> Result<Admitted, Error> {
        let bytes = hex::decode(&submission.request)
            .map_err(|_| refuse(400, "malformed_request", "the request is not hex"))?;
        let request: SignedJobRequest = borsh::from_slice(&bytes)
            .map_err(|e| refuse(400, "malformed_request", format!("the request: {e}")))?;
        let req = &request.request;
        if req.chain_id != self.chain_id {
            return Err(refuse(
                400,
                "wrong_chain_id",
                format!("this provider is on chain {}", self.chain_id),
            ));
        }
        if req.provider != self.address() {
            return Err(refuse(
                400,
                "wrong_provider",
                format!(
                    "the request names {}, this is {}",
                    req.provider,
                    self.address()
                ),
            ));
        }
        if !self.info.models.contains(&req.model) {
            return Err(refuse(
                404,
                "unknown_model",
                format!("model {} is not served here", req.model),
            ));
        }
        if request.verify().is_err() {
            return Err(refuse(
                401,
                "invalid_signature",
                "the client's signature over the request does not verify",
            ));
        }
        // A replay is refused before any decryption (and again, atomically, below), also after a
        // restart: a job served before has its receipt or its kept copy on disk, or is settled.
        if self.books().seen.contains(&req.id()) || self.served_before(&req.id())? {
            return Err(refuse(
                409,
                "duplicate_job",
                format!("job {} was taken already", req.id()),
            ));
        }
        let height = self.chain.height()?;
        if req.expiry_height < height.saturating_add(self.config.min_expiry_margin) {
            return Err(refuse(
                400,
                "expired",
                format!(
                    "the request expires at height {}; at least {} is needed",
                    req.expiry_height,
                    height + self.config.min_expiry_margin
                ),
            ));
        }
        if req.expiry_height > height.saturating_add(self.config.max_expiry_ahead) {
            return Err(refuse(
                400,
                "expiry_too_far",
                format!(
                    "the request expires at height {}; the chain settles requests expiring by {} at most",
                    req.expiry_height,
                    height.saturating_add(self.config.max_expiry_ahead)
                ),
            ));
        }
        // A provable model's jobs are proved, and only they are: a proof is what settles them.
        let zk = req.params.verification == Verification::Zk;
        if zk != self.backend.provable(&req.model) {
            return Err(refuse(
                400,
                "zk_mismatch",
                if zk {
                    format!("model {} is not provable: ask without \"zk\"", req.model)
                } else {
                    format!(
                        "model {} is provable: its jobs are proved, ask with verification \"zk\"",
                        req.model
                    )
                },
            ));
        }
        let (input_bytes, writer) = open(&self.secret, &req.hash(), &submission.input)
            .map_err(|e| refuse(400, "undecryptable_input", e.to_string()))?;
        let mismatch = || {
            refuse(
                400,
                "input_hash_mismatch",
                "the input is not the one the request names",
            )
        };
        if !zk && Hash::digest(&input_bytes) != req.input_hash {
            return Err(mismatch());
        }
        let input = JobInput::from_bytes(&input_bytes).map_err(|e| {
            let status = if matches!(e, Error::TooLarge { .. }) {
                413
            } else {
                400
            };
            refuse(status, "bad_input", e.to_string())
        })?;
        if zk {
            // A proved job's input hash is its commitment, which the proof's public values
            // carry: computed once the input's size is known to be a model's.
            match &input {
                JobInput::Zk { input: values, .. }
                    if values.len() <= agora_zk::model::MAX_FAN_IN as usize => {}
                _ => {
                    return Err(refuse(
                        400,
                        "bad_input",
                        "a proved job's input is a provable model's: at most 4096 integers",
                    ));
                }
            }
            if input.input_hash() != req.input_hash {
                return Err(mismatch());
            }
            let books = self.books();
            if books.unsettled_zk.len() + books.submitted_zk.len() >= ZK_BACKLOG {
                return Err(refuse(
                    503,
                    "busy",
                    format!("{ZK_BACKLOG} proved jobs wait for settlement here; try again shortly"),
                ));
            }
        }
        // The same bound the gateway priced the request with.
        let max_output = crate::gateway::job_bounds(&input, &req.params).1;
        let client = req.client.address();
        // Counting the input is work (an analytics query is planned and its tables counted):
        // a client whose escrow cannot pay even for the output alone gets none of it.
        let least = job_fee(
            self.info.price_input_per_1k,
            self.info.price_output_per_1k,
            0,
            max_output,
        )
        .ok_or_else(|| refuse(400, "fee_overflow", "the price overflows"))?;
        self.check_escrow(&client, least)?;
        let input_tokens = self
            .backend
            .input_tokens(&req.model, &input)
            .map_err(|e| match e {
                Error::Infer(agora_infer::Error::ContextOverflow { .. }) => {
                    refuse(400, "context_length_exceeded", e.to_string())
                }
                // A refusal with its own code (the analytics model's: a query that does not
                // plan, a height not indexed yet…) keeps it.
                refused @ Error::Refused { .. } => refused,
                other => refuse(400, "bad_input", other.to_string()),
            })?;
        let worst = job_fee(
            self.info.price_input_per_1k,
            self.info.price_output_per_1k,
            input_tokens,
            max_output,
        )
        .and_then(|f| f.checked_add(self.proof_fee(zk)))
        .ok_or_else(|| refuse(400, "fee_overflow", "the price overflows"))?;
        if worst > req.max_fee {
            return Err(refuse(
                402,
                "max_fee_too_low",
                format!(
                    "{input_tokens} input and up to {max_output} output tokens cost up to {worst}; the max fee is {}",
                    req.max_fee
                ),
            ));
        }
        let escrow = self.chain.escrow(&client)?;
        let mut books = self.books();
        if books.seen.contains(&req.id()) {
            return Err(refuse(
                409,
                "duplicate_job",
                format!("job {} was taken already", req.id()),
            ));
        }
        let free = Self::free_escrow(&books, &client, escrow.balance);
        if free < worst {
            return Err(refuse(
                402,
                "insufficient_escrow",
                format!("the client's escrow has {free} free, this job may cost {worst}"),
            ));
        }
        books.seen.insert(req.id());
        *books.running.entry(client).or_default() += worst;
        drop(books);
        Ok(Admitted {
            request,
            input,
            writer,
            client,
            worst_fee: worst,
            input_bytes,
        })
    }

    /// Runs an admitted job: `on_piece` gets each sealed piece of text as it is generated (and
    /// may stop the stream). Returns the sealed output document and the signed receipt, which is
    /// queued for settlement.
    pub fn execute(
        &self,
        mut job: Admitted,
        on_piece: &mut dyn FnMut(SealedPiece) -> ControlFlow<()>,
    ) -> Result<Delivery, Error> {
        let req = job.request.request.clone();
        let zk = req.params.verification == Verification::Zk;
        let result = if zk {
            // Bound to this chain and this job: the proof settles this job and no other.
            let context = agora_state::zk_job_context(&self.chain_id, &req.id());
            self.backend.prove(&req.model, &job.input, &context)
        } else {
            self.backend.run_for(
                &req.client.0,
                &req.model,
                &job.input,
                &req.params,
                &mut |text| {
                    if text.is_empty() {
                        return ControlFlow::Continue(());
                    }
                    let (n, sealed) = job.writer.seal(text.as_bytes());
                    on_piece(SealedPiece { n, sealed })
                },
            )
        };
        let mut books = self.books();
        if let Some(r) = books.running.get_mut(&job.client) {
            *r = r.saturating_sub(job.worst_fee);
        }
        let served = match result {
            Ok(served) => served,
            Err(e) => {
                // Nothing delivered, nothing charged; the job id may be tried again.
                books.seen.remove(&req.id());
                return Err(e);
            }
        };
        drop(books);
        // A proved job is never drawn for a check: nothing to keep. Any other must be
        // revealable before it is claimed.
        let unclaimable = if zk { None } else { self.keep(&job, &served) };
        if let Some(e) = unclaimable {
            self.books().seen.remove(&req.id());
            return Err(e);
        }
        let mut books = self.books();
        let fee = job_fee(
            self.info.price_input_per_1k,
            self.info.price_output_per_1k,
            served.input_tokens,
            served.output_tokens,
        )
        .and_then(|f| f.checked_add(self.proof_fee(zk)))
        .unwrap_or(job.worst_fee)
        .min(job.worst_fee);
        let receipt: SignedJobReceipt = JobReceipt {
            request_hash: req.hash(),
            output_hash: served.output.hash(),
            input_tokens: served.input_tokens,
            output_tokens: served.output_tokens,
            fee,
        }
        .sign(&self.key);
        let settled = SettledJob {
            request: job.request.clone(),
            receipt: receipt.clone(),
        };
        // The receipt is the provider's claim: kept on disk until the chain has settled it.
        let (path, kept) = match &served.output {
            JobOutput::Zk { claim, .. } => {
                let proof = served.output.zk_proof().unwrap_or_else(|| Ok(Vec::new()))?;
                let pending = ZkSettlement {
                    job: settled,
                    claim: claim.clone(),
                    proof,
                };
                let bytes = borsh::to_vec(&pending).expect("borsh encoding into a Vec");
                books.unsettled_zk.push((pending, 0));
                (self.zk_path(&req.id()), bytes)
            }
            _ => {
                let bytes = borsh::to_vec(&settled).expect("borsh encoding into a Vec");
                books.unsettled.push(settled);
                (self.receipt_path(&req.id()), bytes)
            }
        };
        *books.unsettled_fees.entry(job.client).or_default() += fee;
        drop(books);
        if let Some(path) = path
            && let Err(e) = write_synced(&path, &kept)
        {
            tracing::warn!("cannot keep the receipt of job {}: {e}", req.id());
        }
        let (n, sealed) = job.writer.seal(&served.output.to_bytes());
        Ok(Delivery {
            output: SealedPiece { n, sealed },
            receipt: hex::encode(borsh::to_vec(&receipt).expect("borsh encoding into a Vec")),
        })
    }
}

impl Provider {
    /// Keeps job's copy, sealed to the provider's own key, for the verification window: a
    /// reveal sealed to a verifier is the size of this copy. An error when the job could not be
    /// revealed (too large) or kept.
    fn keep(&self, job: &Admitted, served: &crate::backend::Served) -> Option<Error> {
        let req = &job.request.request;
        let doc = RevealDoc {
            request: job.request.clone(),
            input: job.input_bytes.clone(),
            output: served.output.to_bytes(),
        };
        let own = self.secret.public();
        let kept = seal_reveal(&own, &req.id(), &doc, self.reveal_seed(&req.id(), &own));
        if kept.len() > REVEAL_CAPACITY {
            Some(refuse(
                413,
                "too_large_to_verify",
                format!(
                    "the job's reveal would be {} bytes, more than the {REVEAL_CAPACITY} a check \
                 can carry: send less input or ask for less output",
                    kept.len()
                ),
            ))
        } else if let Some(path) = self.kept_path(&req.id()) {
            // Sealed to this provider's own key: nothing on its disk holds a prompt or an
            // answer in plain text. Without this copy a drawn check could not be answered.
            write_synced(&path, &kept).err().map(|e| {
                tracing::warn!("cannot keep job {} for verification: {e}", req.id());
                Error::Io {
                    what: "keeping the job for verification".into(),
                    source: e,
                }
            })
        } else {
            None
        }
    }
}

/// The output document a client gets back, opened.
pub fn open_delivery(
    reader: &mut crate::OutputReader,
    delivery: &Delivery,
) -> Result<(JobOutput, SignedJobReceipt), Error> {
    let bytes = reader.open(delivery.output.n, &delivery.output.sealed)?;
    let output = JobOutput::from_bytes(&bytes)?;
    let receipt_bytes = hex::decode(&delivery.receipt).map_err(|_| Error::Malformed {
        what: "receipt",
        reason: "not hex".into(),
    })?;
    let receipt: SignedJobReceipt =
        borsh::from_slice(&receipt_bytes).map_err(|e| Error::Malformed {
            what: "receipt",
            reason: e.to_string(),
        })?;
    Ok((output, receipt))
}

/// Writes `bytes` to `path` durably, readable by its owner only (receipts are claims; kept jobs
/// are sealed but private).
fn write_synced(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    agora_types::durable::write(path, bytes, agora_types::durable::Access::Private)
}
