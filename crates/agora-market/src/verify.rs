//! The verifier's side of DESIGN.md §6, and the reveal a provider sends it through the chain.
//!
//! ```text
//!  chain: job settled ─▶ check drawn, verifier seated
//!  provider ── RevealJob parts: seal(verifier key, job id, {request, input, output}) ──▶ chain
//!  verifier ◀── reveal ── opens it, checks it against the settled hashes, re-runs the model
//!           ── PostVerdict(pass | fail: fault) ──▶ chain
//! ```

use crate::envelope::seal_seeded;
use crate::{Backend, Chain, Envelope, Error, JobInput, JobOutput, ProviderSecret, open};
use agora_types::{
    Address, Amount, Fault, Hash, Keypair, Message, SignedJobRequest, Transaction, Verdict,
    VerifierInfo,
};
use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest logit gap between a claimed greedy token and the model's best that still passes: it
/// absorbs float differences between machines (this runtime gives the same bits everywhere).
pub const GREEDY_TOLERANCE: f32 = 0.25;

/// What a provider reveals to a verifier: the client's signed request, the input and the output,
/// exactly as they were hashed.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct RevealDoc {
    /// The request the client signed.
    pub request: SignedJobRequest,
    /// The input bytes (their blake3 is the request's input hash).
    pub input: Vec<u8>,
    /// The output bytes delivered (their blake3 is the receipt's output hash).
    pub output: Vec<u8>,
}

/// Seals `doc` to `recipient` for job `job_id`: the one-time public key (32 bytes) then the
/// ciphertext. The one-time key comes from `seed`, so sealing again gives the same bytes (a
/// provider that crashed between the parts of a reveal resends parts that match).
pub fn seal_reveal(
    recipient: &[u8; 32],
    job_id: &Hash,
    doc: &RevealDoc,
    seed: [u8; 32],
) -> Vec<u8> {
    let bytes = borsh::to_vec(doc).expect("borsh encoding into a Vec");
    let envelope = seal_seeded(seed, recipient, job_id, &bytes);
    let mut out = hex::decode(&envelope.ephemeral).expect("hex we wrote");
    out.extend(hex::decode(&envelope.ciphertext).expect("hex we wrote"));
    out
}

/// Opens what [`seal_reveal`] sealed.
pub fn open_reveal(
    secret: &ProviderSecret,
    job_id: &Hash,
    bytes: &[u8],
) -> Result<RevealDoc, Error> {
    if bytes.len() < 32 {
        return Err(Error::Malformed {
            what: "reveal",
            reason: "shorter than a key".into(),
        });
    }
    let envelope = Envelope {
        ephemeral: hex::encode(&bytes[..32]),
        ciphertext: hex::encode(&bytes[32..]),
    };
    let (plain, _) = open(secret, job_id, &envelope)?;
    borsh::from_slice(&plain).map_err(|e| Error::Malformed {
        what: "reveal",
        reason: e.to_string(),
    })
}

/// A verifier: one key, the models it can run, one chain.
pub struct Verifier {
    key: Keypair,
    secret: ProviderSecret,
    info: VerifierInfo,
    chain_id: String,
    chain: Arc<dyn Chain>,
    backend: Arc<dyn Backend>,
    tolerance: f32,
    next_nonce: Mutex<u64>,
    /// Jobs whose verdict this process submitted (not judged twice while the block is pending).
    judged: Mutex<BTreeSet<Hash>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Verifier({})", self.key.address())
    }
}

impl Verifier {
    /// A verifier of `backend`'s models on `chain`.
    pub fn new(
        key: Keypair,
        secret: ProviderSecret,
        models: Vec<Hash>,
        chain: Arc<dyn Chain>,
        backend: Arc<dyn Backend>,
    ) -> Result<Self, Error> {
        let info = VerifierInfo {
            models,
            encryption_key: agora_types::EncryptionKey(secret.public()),
        };
        info.check().map_err(Error::BadInput)?;
        Ok(Verifier {
            chain_id: chain.chain_id()?,
            key,
            secret,
            info,
            chain,
            backend,
            tolerance: GREEDY_TOLERANCE,
            next_nonce: Mutex::new(0),
            judged: Mutex::new(BTreeSet::new()),
        })
    }

    /// Uses another greedy tolerance (logits) than [`GREEDY_TOLERANCE`].
    pub fn with_tolerance(mut self, tolerance: f32) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Its account.
    pub fn address(&self) -> Address {
        self.key.address()
    }

    fn submit(&self, messages: Vec<Message>) -> Result<Hash, Error> {
        let on_chain = self.chain.nonce(&self.address())?;
        let nonce = {
            let mut next = self.next_nonce.lock().unwrap_or_else(|e| e.into_inner());
            let nonce = (*next).max(on_chain);
            *next = nonce + 1;
            nonce
        };
        let tx = Transaction {
            chain_id: self.chain_id.clone(),
            sender: self.key.public(),
            nonce,
            // The devnet's minimum fee per unit of work.
            fee: 1_000 * u128::from(agora_types::work_units(&messages)),
            messages,
        }
        .sign(&self.key);
        let result = self.chain.submit(&tx).map_err(Error::from);
        if result.is_err() {
            *self.next_nonce.lock().unwrap_or_else(|e| e.into_inner()) = on_chain;
        }
        result
    }

    /// Registers with `stake` unless registered already; returns the transaction hash when it
    /// submitted one.
    pub fn ensure_registered(&self, stake: Amount) -> Result<Option<Hash>, Error> {
        if self.chain.verifier_key(&self.address())?.is_some() {
            return Ok(None);
        }
        self.submit(vec![Message::RegisterVerifier {
            stake,
            info: self.info.clone(),
        }])
        .map(Some)
    }

    /// Judges job `job_id` from its reveal to this verifier.
    pub fn judge(&self, job_id: &Hash) -> Result<Verdict, Error> {
        let job = self
            .chain
            .job(job_id)?
            .ok_or(Error::NotSettled(*job_id))?
            .job;
        let bytes = self
            .chain
            .reveal(job_id, &self.address())?
            .ok_or(Error::NoReveal(*job_id))?;
        let bad = Verdict::Fail {
            fault: Fault::BadReveal,
        };
        let Ok(doc) = open_reveal(&self.secret, job_id, &bytes) else {
            return Ok(bad);
        };
        let request = &doc.request.request;
        let output = JobOutput::from_bytes(&doc.output);
        let holds = request.hash() == job.request_hash
            && request.id() == *job_id
            && request.model == job.model
            && Hash::digest(&doc.input) == job.input_hash
            && Hash::digest(&doc.output) == job.output_hash;
        let (true, Ok(output)) = (holds, output) else {
            return Ok(bad);
        };
        let Ok(input) = JobInput::from_bytes(&doc.input) else {
            return Ok(Verdict::Fail {
                fault: Fault::WrongKind,
            });
        };
        self.backend.judge(
            &job.model,
            &input,
            &request.params,
            &output,
            (job.input_tokens, job.output_tokens),
            self.tolerance,
        )
    }

    /// Judges every job revealed to this verifier that awaits its verdict, and posts the
    /// verdicts. Returns them.
    pub fn step(&self) -> Result<Vec<(Hash, Verdict)>, Error> {
        let me = self.address();
        let mut done = Vec::new();
        let open = self.chain.open_checks(&me)?;
        // Remember only verdicts on checks still open (the set stays small).
        self.judged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|job| open.iter().any(|c| c.job_id == *job));
        for check in open {
            let waiting = check
                .seats
                .iter()
                .any(|s| s.verifier == me && s.verdict.is_none() && s.revealed_height.is_some());
            if !waiting
                || self
                    .judged
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(&check.job_id)
            {
                continue;
            }
            // A job this verifier cannot judge now (its model's engine busy, its tables behind)
            // is asked again at the next step; the others are judged meanwhile.
            let verdict = match self.judge(&check.job_id) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!("job {}: no verdict yet: {e}", check.job_id);
                    continue;
                }
            };
            self.submit(vec![Message::PostVerdict {
                job_id: check.job_id,
                verdict,
            }])?;
            self.judged
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(check.job_id);
            tracing::info!("job {}: verdict {verdict:?}", check.job_id);
            done.push((check.job_id, verdict));
        }
        Ok(done)
    }
}

/// Runs [`Verifier::step`] every `interval` until `shutdown` turns true.
pub async fn verify_loop(
    verifier: Arc<Verifier>,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        let v = verifier.clone();
        match tokio::task::spawn_blocking(move || v.step()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("verifier step failed, will retry: {e}"),
            Err(e) => tracing::warn!("verifier task failed: {e}"),
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_types::{JobParams, JobRequest};

    fn doc() -> RevealDoc {
        let client = Keypair::from_seed_label("client");
        let request = JobRequest {
            chain_id: "t".into(),
            client: client.public(),
            provider: Keypair::from_seed_label("provider").address(),
            model: Hash([1; 32]),
            input_hash: Hash::digest(b"input"),
            params: JobParams::default(),
            max_fee: 10,
            nonce: Hash([2; 32]),
            expiry_height: 5,
        };
        RevealDoc {
            request: request.sign(&client),
            input: b"input".to_vec(),
            output: b"output".to_vec(),
        }
    }

    #[test]
    fn a_reveal_seals_the_same_way_every_time_and_opens_only_for_its_verifier_and_job() {
        let verifier = ProviderSecret::generate();
        let job = Hash([2; 32]);
        let a = seal_reveal(&verifier.public(), &job, &doc(), [7; 32]);
        // Resent after a crash: the same bytes, so parts already on-chain still fit.
        assert_eq!(a, seal_reveal(&verifier.public(), &job, &doc(), [7; 32]));
        assert_ne!(a, seal_reveal(&verifier.public(), &job, &doc(), [8; 32]));
        assert_eq!(open_reveal(&verifier, &job, &a).unwrap(), doc());
        assert!(open_reveal(&ProviderSecret::generate(), &job, &a).is_err());
        assert!(open_reveal(&verifier, &Hash([3; 32]), &a).is_err());
        let mut tampered = a.clone();
        tampered[40] ^= 1;
        assert!(open_reveal(&verifier, &job, &tampered).is_err());
        assert!(open_reveal(&verifier, &job, &a[..20]).is_err());
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            /// A lying provider can seal anything to its verifier: whatever the plaintext
            /// (random, or a real reveal with bytes changed or cut), opening it gives a reveal
            /// or an error, never a panic; and unsealed bytes never open.
            #[test]
            fn whatever_a_provider_seals_opens_or_is_refused(
                random in proptest::collection::vec(any::<u8>(), 0..400),
                flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
                cut in any::<usize>(),
            ) {
                let verifier = ProviderSecret::from_bytes([9; 32]);
                let job = Hash([2; 32]);
                let mut plain = borsh::to_vec(&doc()).unwrap();
                for (at, byte) in flips {
                    let i = at % plain.len();
                    plain[i] ^= byte;
                }
                plain.truncate(cut % (plain.len() + 1));
                for bytes in [plain, random.clone()] {
                    let envelope = crate::envelope::seal_seeded([4; 32], &verifier.public(), &job, &bytes);
                    let mut sealed = hex::decode(&envelope.ephemeral).unwrap();
                    sealed.extend(hex::decode(&envelope.ciphertext).unwrap());
                    if let Ok(doc) = open_reveal(&verifier, &job, &sealed) {
                        prop_assert_eq!(borsh::to_vec(&doc).unwrap(), bytes);
                    }
                }
                prop_assert!(open_reveal(&verifier, &job, &random).is_err());
            }
        }
    }
}
