//! The provider's side of a job: admission (who asks, for what, who pays), running it, sealing the
//! output, signing the receipt, and settling receipts on-chain in batches.

use crate::verify::{RevealDoc, open_reveal, seal_reveal};
use crate::{
    Backend, Chain, Envelope, Error, JobInput, JobOutput, OutputWriter, ProviderSecret, open,
};
use agora_types::{
    Address, Amount, Hash, JobReceipt, Keypair, MAX_REVEAL_PART_BYTES, MAX_REVEAL_PARTS,
    MAX_SETTLE_JOBS, Message, ProviderInfo, SettledJob, SignedJobReceipt, SignedJobRequest,
    Transaction, job_fee,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

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

/// How often kept jobs are swept for deletion.
/// Blocks after which a reveal the chain has not seen whole is sent again.
const REVEAL_RESEND_BLOCKS: u64 = 4;

/// The largest sealed reveal the chain takes: a job whose reveal would be larger is refused
/// before its receipt is signed, so a provider never settles a job it could not reveal.
const REVEAL_CAPACITY: usize = MAX_REVEAL_PARTS as usize * MAX_REVEAL_PART_BYTES;

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

/// Local bookkeeping: what each client owes that the chain does not show yet.
#[derive(Debug, Default)]
struct Books {
    /// Worst-case fees of jobs running now, per client.
    running: BTreeMap<Address, Amount>,
    /// Fees of receipts not yet settled, per client.
    unsettled_fees: BTreeMap<Address, Amount>,
    /// Receipts waiting for settlement.
    unsettled: Vec<SettledJob>,
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
        let provider = Provider {
            key,
            secret,
            info,
            chain_id,
            chain,
            backend,
            config,
            books: Mutex::new(Books::default()),
        };
        provider.recover()?;
        Ok(provider)
    }

    /// The file that keeps job `id`'s receipt until the chain has settled it.
    /// The one-time key seed for sealing job `id` to `recipient`: the same every time (the same
    /// document gives the same bytes), different for every job and recipient, secret.
    fn reveal_seed(&self, id: &Hash, recipient: &[u8; 32]) -> [u8; 32] {
        let mut material = self.secret.to_bytes().to_vec();
        material.extend_from_slice(&id.0);
        material.extend_from_slice(recipient);
        blake3::derive_key("agora/market/reveal-seed/v1", &material)
    }

    fn kept_path(&self, id: &Hash) -> Option<PathBuf> {
        self.config
            .jobs_dir
            .as_ref()
            .map(|dir| dir.join(format!("{id}.job")))
    }

    /// Job `id` as kept for the verification window (its request, input and output), opened
    /// with the provider's key and checked against the request's input hash; `None` if none is
    /// kept.
    pub fn kept_job(&self, id: &Hash) -> Result<Option<RevealDoc>, Error> {
        let Some(path) = self.kept_path(id) else {
            return Ok(None);
        };
        let sealed = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::Io(format!("{}: {e}", path.display()))),
        };
        let doc = open_reveal(&self.secret, id, &sealed)?;
        if Hash::digest(&doc.input) != doc.request.request.input_hash {
            return Err(Error::Malformed {
                what: "kept job",
                reason: "its input is not the request's".into(),
            });
        }
        Ok(Some(doc))
    }

    /// The input of job `id` as the client sent it (see [`Self::kept_job`]).
    pub fn kept_input(&self, id: &Hash) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.kept_job(id)?.map(|doc| doc.input))
    }

    /// Reveals, through the chain, every job of this provider drawn for checking to each seated
    /// verifier that has not received it: sealed to the verifier's key, in parts. Returns the
    /// reveals sent.
    pub fn reveal_pending(&self) -> Result<usize, Error> {
        let me = self.address();
        let mut sent = 0;
        let open = self.chain.open_checks(&me)?;
        let height = self.chain.height()?;
        // Remember only reveals to checks still open (the set stays small).
        self.books()
            .revealed
            .retain(|(job, _), _| open.iter().any(|c| c.job_id == *job));
        for check in open {
            if check.provider != me || check.outcome != "open" {
                continue;
            }
            for seat in &check.seats {
                // Not yet (or only partly, e.g. before a crash) revealed: the parts are sealed
                // the same way every time, so a resend completes a partial reveal.
                let due = seat.verdict.is_none() && seat.revealed_height.is_none();
                let pair = (check.job_id, seat.verifier);
                let sent_at = self.books().revealed.get(&pair).copied();
                if !due || sent_at.is_some_and(|h| height < h + REVEAL_RESEND_BLOCKS) {
                    continue;
                }
                let Some(doc) = self.kept_job(&check.job_id)? else {
                    tracing::warn!(
                        "job {} is drawn for checking but not kept here",
                        check.job_id
                    );
                    continue;
                };
                let Some(key) = self.chain.verifier_key(&seat.verifier)? else {
                    continue;
                };
                let seed = self.reveal_seed(&check.job_id, &key);
                let sealed = seal_reveal(&key, &check.job_id, &doc, seed);
                let parts: Vec<&[u8]> = sealed.chunks(MAX_REVEAL_PART_BYTES).collect();
                let Ok(n) = u16::try_from(parts.len()) else {
                    continue;
                };
                if n > MAX_REVEAL_PARTS {
                    tracing::warn!(
                        "job {} is too large to reveal ({} bytes)",
                        check.job_id,
                        sealed.len()
                    );
                    continue;
                }
                for (i, data) in parts.iter().enumerate() {
                    self.submit(vec![Message::RevealJob {
                        job_id: check.job_id,
                        verifier: seat.verifier,
                        part: i as u16,
                        parts: n,
                        data: data.to_vec(),
                    }])?;
                }
                self.books().revealed.insert(pair, height);
                tracing::info!(
                    "revealed job {} to verifier {}",
                    check.job_id,
                    seat.verifier
                );
                sent += 1;
            }
        }
        let due = self
            .books()
            .last_sweep
            .is_none_or(|t| t.elapsed() >= KEPT_SWEEP_INTERVAL);
        if due {
            self.books().last_sweep = Some(std::time::Instant::now());
            self.sweep_kept()?;
        }
        Ok(sent)
    }

    /// Deletes kept jobs that can no longer be checked (their check decided, or not drawn) or
    /// settled (expired unsettled). Looks at [`KEPT_SWEEP_LIMIT`] files at most; returns how many
    /// it deleted.
    pub fn sweep_kept(&self) -> Result<usize, Error> {
        let Some(dir) = &self.config.jobs_dir else {
            return Ok(0);
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(0);
        };
        let height = self.chain.height()?;
        let mut deleted = 0;
        let kept = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "job"))
            .take(KEPT_SWEEP_LIMIT);
        for path in kept {
            let Some(id) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<Hash>().ok())
            else {
                continue;
            };
            let done = match self.chain.verification_over(&id)? {
                Some(over) => over,
                // Not settled: done once the request can no longer be settled.
                None => self
                    .kept_job(&id)
                    .ok()
                    .flatten()
                    .is_none_or(|doc| height > doc.request.request.expiry_height),
            };
            if done && std::fs::remove_file(&path).is_ok() {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Whether job `id` was served by this provider before (by a run that may have ended since):
    /// its receipt or kept copy is on disk, or the chain has settled it.
    fn served_before(&self, id: &Hash) -> Result<bool, Error> {
        let on_disk = [self.receipt_path(id), self.kept_path(id)]
            .into_iter()
            .flatten()
            .any(|p| p.exists());
        Ok(on_disk || self.chain.is_settled(id)?)
    }

    fn receipt_path(&self, id: &Hash) -> Option<PathBuf> {
        self.config
            .jobs_dir
            .as_ref()
            .map(|dir| dir.join(format!("{id}.receipt")))
    }

    /// Takes back the receipts a previous run left unsettled (a crash, a failed settlement), and
    /// forgets those the chain has settled since.
    fn recover(&self) -> Result<(), Error> {
        let Some(dir) = &self.config.jobs_dir else {
            return Ok(());
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "receipt"))
            .collect();
        paths.sort();
        for path in paths {
            let job: SettledJob = match std::fs::read(&path)
                .ok()
                .and_then(|b| borsh::from_slice(&b).ok())
            {
                Some(job) => job,
                None => {
                    tracing::warn!("ignoring unreadable receipt file {}", path.display());
                    continue;
                }
            };
            let id = job.request.request.id();
            if job.receipt.provider != self.key.public() {
                continue;
            }
            // Settled since, or too late to settle: nothing left to claim.
            if self.chain.is_settled(&id)?
                || self.chain.height()? > job.request.request.expiry_height
            {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let mut books = self.books();
            books.seen.insert(id);
            *books
                .unsettled_fees
                .entry(job.request.request.client.address())
                .or_default() += job.receipt.receipt.fee;
            books.unsettled.push(job);
        }
        Ok(())
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

    /// Builds, signs and submits a transaction with the provider's next nonce.
    fn submit(&self, messages: Vec<Message>) -> Result<Hash, Error> {
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
            fee: self
                .config
                .settle_tx_fee
                .saturating_mul(Amount::from(agora_types::work_units(&messages))),
            messages,
        }
        .sign(&self.key);
        let result = self.chain.submit(&tx);
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
        let (input_bytes, writer) = open(&self.secret, &req.hash(), &submission.input)
            .map_err(|e| refuse(400, "undecryptable_input", e.to_string()))?;
        if Hash::digest(&input_bytes) != req.input_hash {
            return Err(refuse(
                400,
                "input_hash_mismatch",
                "the input is not the one the request names",
            ));
        }
        let input = JobInput::from_bytes(&input_bytes).map_err(|e| {
            let status = if matches!(e, Error::TooLarge { .. }) {
                413
            } else {
                400
            };
            refuse(status, "bad_input", e.to_string())
        })?;
        let input_tokens = self
            .backend
            .input_tokens(&req.model, &input)
            .map_err(|e| match e {
                Error::Infer(agora_infer::Error::ContextOverflow { .. }) => {
                    refuse(400, "context_length_exceeded", e.to_string())
                }
                other => refuse(400, "bad_input", other.to_string()),
            })?;
        let max_output = match input {
            JobInput::Embedding { .. } | JobInput::Audit { .. } => 0,
            _ => req.params.max_tokens,
        };
        let worst = job_fee(
            self.info.price_input_per_1k,
            self.info.price_output_per_1k,
            input_tokens,
            max_output,
        )
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
        let client = req.client.address();
        let escrow = self.chain.escrow(&client)?;
        let mut books = self.books();
        if books.seen.contains(&req.id()) {
            return Err(refuse(
                409,
                "duplicate_job",
                format!("job {} was taken already", req.id()),
            ));
        }
        let owed = books.running.get(&client).copied().unwrap_or(0)
            + books.unsettled_fees.get(&client).copied().unwrap_or(0);
        // What is being withdrawn leaves the escrow when its unlock period ends, perhaps before
        // this job's settlement lands: only the balance counts.
        let free = escrow.balance.saturating_sub(owed);
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
        let result = self.backend.run_for(
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
        );
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
        // The job must be revealable before it is claimed: a reveal sealed to a verifier is the
        // size of this copy sealed to the provider's own key, kept for the verification window.
        let doc = RevealDoc {
            request: job.request.clone(),
            input: job.input_bytes.clone(),
            output: served.output.to_bytes(),
        };
        let own = self.secret.public();
        let kept = seal_reveal(&own, &req.id(), &doc, self.reveal_seed(&req.id(), &own));
        let unclaimable = if kept.len() > REVEAL_CAPACITY {
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
                Error::Io(format!("cannot keep the job for verification: {e}"))
            })
        } else {
            None
        };
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
        *books.unsettled_fees.entry(job.client).or_default() += fee;
        let settled = SettledJob {
            request: job.request.clone(),
            receipt: receipt.clone(),
        };
        books.unsettled.push(settled.clone());
        drop(books);
        // The receipt is the provider's claim: kept on disk until the chain has settled it.
        if let Some(path) = self.receipt_path(&req.id()) {
            let kept = write_synced(&path, &borsh::to_vec(&settled).expect("encode"));
            if let Err(e) = kept {
                tracing::warn!("cannot keep the receipt of job {}: {e}", req.id());
            }
        }
        let (n, sealed) = job.writer.seal(&served.output.to_bytes());
        Ok(Delivery {
            output: SealedPiece { n, sealed },
            receipt: hex::encode(borsh::to_vec(&receipt).expect("borsh encoding into a Vec")),
        })
    }

    /// Receipts waiting for settlement.
    pub fn unsettled(&self) -> usize {
        self.books().unsettled.len()
    }

    /// Submits up to [`MAX_SETTLE_JOBS`] waiting receipts in one `SettleJobs`. Returns the
    /// transaction hash and the number of jobs, or `None` when nothing waits. On failure the
    /// receipts stay queued.
    pub fn settle(&self) -> Result<Option<(Hash, usize)>, Error> {
        self.forget_settled()?;
        let jobs: Vec<SettledJob> = {
            let mut books = self.books();
            let n = books.unsettled.len().min(MAX_SETTLE_JOBS);
            books.unsettled.drain(..n).collect()
        };
        if jobs.is_empty() {
            return Ok(None);
        }
        let n = jobs.len();
        match self.submit(vec![Message::SettleJobs { jobs: jobs.clone() }]) {
            Ok(hash) => {
                let mut books = self.books();
                for job in &jobs {
                    let client = job.request.request.client.address();
                    if let Some(f) = books.unsettled_fees.get_mut(&client) {
                        *f = f.saturating_sub(job.receipt.receipt.fee);
                    }
                    let req = &job.request.request;
                    books.submitted.push((req.id(), req.expiry_height));
                }
                Ok(Some((hash, n)))
            }
            Err(e) => {
                let mut books = self.books();
                let rest = std::mem::take(&mut books.unsettled);
                books.unsettled = jobs;
                books.unsettled.extend(rest);
                Err(e)
            }
        }
    }
}

impl Provider {
    /// Deletes the receipt files of submitted jobs the chain has settled (or that can no longer
    /// be settled).
    fn forget_settled(&self) -> Result<(), Error> {
        let submitted = std::mem::take(&mut self.books().submitted);
        if submitted.is_empty() {
            return Ok(());
        }
        let height = self.chain.height()?;
        let mut waiting = Vec::new();
        for (id, expiry) in submitted {
            if self.chain.is_settled(&id)? || height > expiry {
                if let Some(path) = self.receipt_path(&id) {
                    let _ = std::fs::remove_file(path);
                }
            } else {
                waiting.push((id, expiry));
            }
        }
        self.books().submitted.extend(waiting);
        Ok(())
    }

    /// Receipt files still waiting for the chain (for tests and status).
    pub fn receipts_kept(&self) -> usize {
        let Some(dir) = &self.config.jobs_dir else {
            return 0;
        };
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "receipt"))
                .count()
        })
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
