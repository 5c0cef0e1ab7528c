//! The compute market's signed documents (DESIGN.md §5): a client's [`JobRequest`] and a provider's
//! [`JobReceipt`], and what a provider publishes about itself ([`ProviderInfo`]).
//!
//! Each is signed over a domain tag and its borsh encoding, so a signature over one kind can never
//! pass for another kind or for a transaction.

use crate::{Address, Amount, Hash, Keypair, PublicKey, Result, Signature, serde_u128};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

const JOB_REQUEST_DOMAIN: &[u8] = b"agora/job-request/v1";
const JOB_RECEIPT_DOMAIN: &[u8] = b"agora/job-receipt/v1";

/// Most models one provider serves.
pub const MAX_PROVIDER_MODELS: usize = 16;
/// Longest provider endpoint URL, in bytes.
pub const MAX_ENDPOINT_BYTES: usize = 256;
/// Longest model name, in bytes.
pub const MAX_MODEL_NAME_BYTES: usize = 64;

/// Whether `name` may name a model: 1 to [`MAX_MODEL_NAME_BYTES`] bytes, not blank, and not a
/// string of 8 or more hex digits (which would read as, or shadow, another model's id).
pub fn check_model_name(name: &str) -> std::result::Result<(), String> {
    if name.trim().is_empty() || name.len() > MAX_MODEL_NAME_BYTES {
        return Err(format!(
            "the name must be 1 to {MAX_MODEL_NAME_BYTES} bytes"
        ));
    }
    if name.len() >= 8 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("a name of hex digits alone would read as a model id".into());
    }
    Ok(())
}
/// Most jobs in one `SettleJobs` message.
pub const MAX_SETTLE_JOBS: usize = 64;
/// Most verifiers that check one job at once (`Verification::Redundant`).
pub const MAX_REDUNDANCY: u8 = 7;
/// Most parts one reveal is split into ([`crate::Message::RevealJob`]).
pub const MAX_REVEAL_PARTS: u16 = 16;
/// Most bytes in one part of a reveal.
pub const MAX_REVEAL_PART_BYTES: usize = 24 * 1024;

/// How a job is checked (DESIGN.md §6), chosen by the client in its signed request; the price
/// follows.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Verification {
    /// Never checked; no protocol share is taken from the fee.
    None,
    /// Checked with the chain's probability for the model; the protocol share of the fee pays
    /// the verifiers.
    #[default]
    Sampled,
    /// Always checked, by this many verifiers at once (1 to [`MAX_REDUNDANCY`]), the majority
    /// deciding; the client pays each of them the job's fee on top.
    Redundant(u8),
    /// Settled only with a zero-knowledge proof the chain verifies (`SettleZkJob`), for provable
    /// models: never sampled, no challenge window.
    Zk,
}

/// Sampling parameters in integers (the state machine has no floats).
#[derive(
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    serde::Deserialize,
)]
pub struct JobParams {
    /// Most output tokens.
    pub max_tokens: u32,
    /// Temperature in thousandths (0 = greedy).
    pub temperature_milli: u32,
    /// Nucleus mass in thousandths (1000 = off).
    pub top_p_milli: u32,
    /// Candidates kept (0 = off).
    pub top_k: u32,
    /// Sampler seed.
    pub seed: u64,
    /// How the job is checked.
    pub verification: Verification,
    /// Log-probabilities with the answer: `Some(k)` gives each output token's and the `k` most
    /// likely tokens' at its position (at most [`MAX_TOP_LOGPROBS`]).
    #[serde(default)]
    pub logprobs: Option<u8>,
    /// With `logprobs`, the prompt's tokens' too (each given the tokens before it).
    #[serde(default)]
    pub prompt_logprobs: bool,
    /// Subtracted, in thousandths, from the logit of each token the answer already holds
    /// (OpenAI's `presence_penalty`; within ±[`MAX_PENALTY_MILLI`]).
    #[serde(default)]
    pub presence_penalty_milli: i32,
    /// Subtracted, in thousandths, from the logit of each token the answer already holds, once
    /// per time it holds it (OpenAI's `frequency_penalty`; within ±[`MAX_PENALTY_MILLI`]).
    #[serde(default)]
    pub frequency_penalty_milli: i32,
    /// Texts that end the answer where the first of them appears, without it (at most
    /// [`MAX_STOP_SEQUENCES`], each 1 to [`MAX_STOP_BYTES`] bytes).
    #[serde(default)]
    pub stop: Vec<String>,
}

impl JobParams {
    /// Whether the parameters are within their bounds (a provider serves, and a verifier
    /// judges, only such jobs).
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.logprobs.is_some_and(|k| k > MAX_TOP_LOGPROBS) {
            return Err(format!(
                "at most {MAX_TOP_LOGPROBS} alternatives per position"
            ));
        }
        if self.prompt_logprobs && self.logprobs.is_none() {
            return Err(
                "the prompt's log-probabilities come with the answer's: ask for logprobs".into(),
            );
        }
        for p in [self.presence_penalty_milli, self.frequency_penalty_milli] {
            if p.unsigned_abs() > MAX_PENALTY_MILLI {
                return Err(format!(
                    "a penalty of {} is beyond ±{}",
                    f64::from(p) / 1000.0,
                    f64::from(MAX_PENALTY_MILLI) / 1000.0
                ));
            }
        }
        if self.stop.len() > MAX_STOP_SEQUENCES {
            return Err(format!("at most {MAX_STOP_SEQUENCES} stop sequences"));
        }
        if self
            .stop
            .iter()
            .any(|s| s.is_empty() || s.len() > MAX_STOP_BYTES)
        {
            return Err(format!("a stop sequence is 1 to {MAX_STOP_BYTES} bytes"));
        }
        Ok(())
    }
}

/// Most stop sequences a job may name.
pub const MAX_STOP_SEQUENCES: usize = 4;
/// Longest stop sequence, in bytes.
pub const MAX_STOP_BYTES: usize = 64;
/// Largest presence or frequency penalty, in thousandths.
pub const MAX_PENALTY_MILLI: u32 = 2000;

/// Most alternatives a job's log-probabilities may list per position.
pub const MAX_TOP_LOGPROBS: u8 = 20;

/// What a client asks a provider to run, and the most it will pay.
#[derive(
    Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, serde::Deserialize,
)]
pub struct JobRequest {
    /// The chain whose escrow pays; stops replays across chains.
    pub chain_id: String,
    /// The paying client's key; its address owns the escrow.
    pub client: PublicKey,
    /// The only provider that may claim the fee.
    pub provider: Address,
    /// The model (SHA-256 of its weights file).
    pub model: Hash,
    /// blake3 of the input (the prompt as sent, or the texts to embed); the input itself never goes
    /// on-chain.
    pub input_hash: Hash,
    /// Generation parameters.
    pub params: JobParams,
    /// The most the client pays for this job, in base units.
    #[serde(with = "serde_u128")]
    pub max_fee: Amount,
    /// Chosen by the client so that each request it signs is unique (two requests that differ
    /// only here are two jobs). The job's id is [`JobRequest::id`], not this.
    pub nonce: Hash,
    /// The last height at which the job may be settled.
    pub expiry_height: u64,
}

impl JobRequest {
    /// The bytes the client signs.
    pub fn sign_bytes(&self) -> Vec<u8> {
        let mut out = JOB_REQUEST_DOMAIN.to_vec();
        BorshSerialize::serialize(self, &mut out).expect("borsh encoding into a Vec");
        out
    }

    /// blake3 of the signed bytes: what the provider's receipt names.
    pub fn hash(&self) -> Hash {
        Hash::digest(&self.sign_bytes())
    }

    /// The job's id on chain: the hash of everything the client signed ([`JobRequest::hash`]).
    /// Keyed by it, a job cannot be settled ahead of its provider under the same id by anyone
    /// else: another provider, another model or another fee cap is another id.
    pub fn id(&self) -> Hash {
        self.hash()
    }

    /// Signs with the client's key (which must be `self.client`).
    pub fn sign(self, key: &Keypair) -> SignedJobRequest {
        let signature = key.sign(&self.sign_bytes());
        SignedJobRequest {
            request: self,
            signature,
        }
    }
}

/// A job request with the client's signature.
#[derive(
    Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, serde::Deserialize,
)]
pub struct SignedJobRequest {
    /// The request.
    pub request: JobRequest,
    /// The client's signature over [`JobRequest::sign_bytes`].
    pub signature: Signature,
}

impl SignedJobRequest {
    /// Checks the client's signature.
    pub fn verify(&self) -> Result<()> {
        self.request
            .client
            .verify(&self.request.sign_bytes(), &self.signature)
    }
}

/// What a provider delivered for a request, and the fee it claims.
#[derive(
    Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, serde::Deserialize,
)]
pub struct JobReceipt {
    /// [`JobRequest::hash`] of the request served.
    pub request_hash: Hash,
    /// blake3 of the output delivered.
    pub output_hash: Hash,
    /// Tokens of input processed.
    pub input_tokens: u32,
    /// Tokens of output produced.
    pub output_tokens: u32,
    /// The fee claimed, in base units: the provider's prices times the tokens.
    #[serde(with = "serde_u128")]
    pub fee: Amount,
}

impl JobReceipt {
    /// The bytes the provider signs.
    pub fn sign_bytes(&self) -> Vec<u8> {
        let mut out = JOB_RECEIPT_DOMAIN.to_vec();
        BorshSerialize::serialize(self, &mut out).expect("borsh encoding into a Vec");
        out
    }

    /// Signs with the provider's key.
    pub fn sign(self, key: &Keypair) -> SignedJobReceipt {
        let signature = key.sign(&self.sign_bytes());
        SignedJobReceipt {
            receipt: self,
            provider: key.public(),
            signature,
        }
    }
}

/// A job receipt with the provider's key and signature.
#[derive(
    Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, serde::Deserialize,
)]
pub struct SignedJobReceipt {
    /// The receipt.
    pub receipt: JobReceipt,
    /// The provider's key; its address must be the request's provider.
    pub provider: PublicKey,
    /// The provider's signature over [`JobReceipt::sign_bytes`].
    pub signature: Signature,
}

impl SignedJobReceipt {
    /// Checks the provider's signature.
    pub fn verify(&self) -> Result<()> {
        self.provider
            .verify(&self.receipt.sign_bytes(), &self.signature)
    }
}

/// One job to settle: the client's request and the provider's receipt for it.
#[derive(
    Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, serde::Deserialize,
)]
pub struct SettledJob {
    /// Signed by the client.
    pub request: SignedJobRequest,
    /// Signed by the provider.
    pub receipt: SignedJobReceipt,
}

/// The fee for a job at the given prices (base units per 1,000 tokens): the exact sum, divided by
/// 1,000 and rounded up. `None` on overflow.
pub fn job_fee(
    price_input_per_1k: Amount,
    price_output_per_1k: Amount,
    input_tokens: u32,
    output_tokens: u32,
) -> Option<Amount> {
    let total = price_input_per_1k
        .checked_mul(Amount::from(input_tokens))?
        .checked_add(price_output_per_1k.checked_mul(Amount::from(output_tokens))?)?;
    Some(total.div_ceil(1000))
}

/// A verifier's judgement of one job, posted on-chain.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum Verdict {
    /// The output is what the pinned model gives for the input and parameters.
    Pass,
    /// It is not.
    Fail {
        /// Why.
        fault: Fault,
    },
}

/// What was wrong with a job's output (or its reveal).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case", tag = "fault")]
pub enum Fault {
    /// The reveal does not open with the verifier's key, or is not the job's request, input and
    /// output (their hashes differ from the settled ones).
    BadReveal,
    /// The claimed token at this position is not the model's choice.
    WrongToken {
        /// 0-based position in the output.
        position: u32,
    },
    /// The output stops where the model would not (or goes on where it would stop).
    WrongStop,
    /// The receipt's token counts are not the output's.
    WrongCount,
    /// The text is not the claimed tokens' text.
    WrongText,
    /// Embedding vectors differ from the model's beyond the tolerance.
    WrongEmbedding,
    /// The output is not of the kind the model gives.
    WrongKind,
    /// An audit report that is not the auditor's (findings added, dropped or changed).
    WrongReport,
    /// A query's or forecast's result that is not what re-running it at the job's height gives
    /// (rows added, dropped, reordered or changed).
    WrongResult,
    /// Log-probabilities that are not the model's (beyond the tolerance), list other tokens than
    /// the most likely, or were not asked for.
    WrongLogprobs {
        /// 0-based position in the output, or in the prompt when `prompt`.
        position: u32,
        prompt: bool,
    },
}

impl Fault {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Fault::BadReveal => "bad_reveal",
            Fault::WrongToken { .. } => "wrong_token",
            Fault::WrongStop => "wrong_stop",
            Fault::WrongCount => "wrong_count",
            Fault::WrongText => "wrong_text",
            Fault::WrongEmbedding => "wrong_embedding",
            Fault::WrongKind => "wrong_kind",
            Fault::WrongReport => "wrong_report",
            Fault::WrongResult => "wrong_result",
            Fault::WrongLogprobs { .. } => "wrong_logprobs",
        }
    }
}

/// What a verifier publishes: the models it can check and the key providers seal reveals to.
#[derive(
    Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, serde::Deserialize,
)]
pub struct VerifierInfo {
    /// Model ids it checks (at most [`MAX_PROVIDER_MODELS`], each registered, no repeats).
    pub models: Vec<Hash>,
    /// X25519 public key for sealed reveals.
    pub encryption_key: EncryptionKey,
}

impl VerifierInfo {
    /// Checks what needs no state. `Err` says why.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.models.is_empty() || self.models.len() > MAX_PROVIDER_MODELS {
            return Err(format!(
                "a verifier checks 1 to {MAX_PROVIDER_MODELS} models, not {}",
                self.models.len()
            ));
        }
        let mut sorted = self.models.clone();
        sorted.sort();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err("a model is listed twice".into());
        }
        Ok(())
    }
}

/// What kind of work a model does.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Text generation (chat and completions).
    Chat,
    /// Sentence embeddings.
    Embedding,
    /// Smart-contract auditing.
    Audit,
    /// Analytics: SQL queries and forecasts over the chain's history at a stated height.
    Analytics,
    /// A small fixed-point model whose jobs are proved in zero knowledge (`RegisterZkModel`).
    Provable,
}

/// A 32-byte X25519 public key, to which clients encrypt their inputs.
#[derive(Clone, Copy, PartialEq, Eq, Default, BorshSerialize, BorshDeserialize)]
pub struct EncryptionKey(pub [u8; 32]);

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EncryptionKey({})", hex::encode(self.0))
    }
}

impl Serialize for EncryptionKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for EncryptionKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        crate::keys::hex_array(d).map(EncryptionKey)
    }
}

/// What a provider publishes: the models it serves, its prices, where to reach it, and the key to
/// encrypt inputs to.
#[derive(
    Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, serde::Deserialize,
)]
pub struct ProviderInfo {
    /// Model ids served (at most [`MAX_PROVIDER_MODELS`], each registered, no repeats).
    pub models: Vec<Hash>,
    /// Base units per 1,000 input tokens.
    #[serde(with = "serde_u128")]
    pub price_input_per_1k: Amount,
    /// Base units per 1,000 output tokens.
    #[serde(with = "serde_u128")]
    pub price_output_per_1k: Amount,
    /// `http://` or `https://` URL of its API (at most [`MAX_ENDPOINT_BYTES`]).
    pub endpoint: String,
    /// X25519 public key for encrypted inputs.
    pub encryption_key: EncryptionKey,
}

impl ProviderInfo {
    /// Checks what needs no state: sizes, the URL scheme, repeated models. `Err` says why.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.models.is_empty() || self.models.len() > MAX_PROVIDER_MODELS {
            return Err(format!(
                "a provider serves 1 to {MAX_PROVIDER_MODELS} models, not {}",
                self.models.len()
            ));
        }
        let mut sorted = self.models.clone();
        sorted.sort();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err("a model is listed twice".into());
        }
        if self.endpoint.len() > MAX_ENDPOINT_BYTES {
            return Err(format!(
                "endpoint is {} bytes, at most {MAX_ENDPOINT_BYTES}",
                self.endpoint.len()
            ));
        }
        let rest = self
            .endpoint
            .strip_prefix("https://")
            .or_else(|| self.endpoint.strip_prefix("http://"));
        match rest {
            Some(host) if !host.is_empty() && !host.chars().any(char::is_whitespace) => Ok(()),
            _ => Err(format!(
                "endpoint {:?} is not an http(s) URL",
                self.endpoint
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(client: &Keypair, provider: &Keypair) -> JobRequest {
        JobRequest {
            chain_id: "agora-test".into(),
            client: client.public(),
            provider: provider.public().address(),
            model: Hash([7; 32]),
            input_hash: Hash::digest(b"hello"),
            params: JobParams {
                max_tokens: 16,
                ..JobParams::default()
            },
            max_fee: 1_000,
            nonce: Hash([1; 32]),
            expiry_height: 100,
        }
    }

    #[test]
    fn signatures_bind_every_field_and_their_kind() {
        let (client, provider) = (
            Keypair::from_seed_label("client"),
            Keypair::from_seed_label("provider"),
        );
        let signed = request(&client, &provider).sign(&client);
        signed.verify().unwrap();
        let mut tampered = signed.clone();
        tampered.request.max_fee += 1;
        assert!(tampered.verify().is_err());

        let receipt = JobReceipt {
            request_hash: signed.request.hash(),
            output_hash: Hash::digest(b"world"),
            input_tokens: 3,
            output_tokens: 5,
            fee: 10,
        }
        .sign(&provider);
        receipt.verify().unwrap();
        let mut tampered = receipt.clone();
        tampered.receipt.output_tokens += 1;
        assert!(tampered.verify().is_err());

        // A receipt signature is not a request signature, even over the same bytes after the tag.
        let forged = SignedJobRequest {
            request: signed.request.clone(),
            signature: provider.sign(&signed.request.sign_bytes()[JOB_REQUEST_DOMAIN.len()..]),
        };
        assert!(forged.verify().is_err());
    }

    #[test]
    fn fees_round_up_and_never_overflow_silently() {
        assert_eq!(job_fee(1000, 2000, 3, 4), Some(11));
        assert_eq!(job_fee(1, 1, 1, 0), Some(1));
        assert_eq!(job_fee(0, 0, 10, 10), Some(0));
        assert_eq!(job_fee(Amount::MAX, 0, 2, 0), None);
    }

    #[test]
    fn provider_info_is_checked() {
        let good = ProviderInfo {
            models: vec![Hash([1; 32])],
            price_input_per_1k: 1,
            price_output_per_1k: 2,
            endpoint: "http://127.0.0.1:8080".into(),
            encryption_key: EncryptionKey([9; 32]),
        };
        good.check().unwrap();
        let mut bad = good.clone();
        bad.models.push(Hash([1; 32]));
        assert!(bad.check().is_err());
        let mut bad = good.clone();
        bad.endpoint = "ftp://x".into();
        assert!(bad.check().is_err());
        let mut bad = good.clone();
        bad.models.clear();
        assert!(bad.check().is_err());
        let mut bad = good;
        bad.endpoint = format!("https://{}", "a".repeat(MAX_ENDPOINT_BYTES));
        assert!(bad.check().is_err());
    }
}
