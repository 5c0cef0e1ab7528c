//! The gateway's core: picks a provider for a model, signs the client's job request, seals the
//! input to the provider, follows the sealed output and checks the receipt — failing over to the
//! next provider when one refuses or fails before its first piece of output.
//!
//! Choosing a provider. A price alone cannot be trusted: a provider that asks nothing and answers
//! garbage would get every job until a check convicts it (about 1/p jobs). So the first provider
//! tried is drawn at random, weighted by its bonded stake, among the providers whose fee for the
//! request is at most the stake-weighted median fee of those not cooling down (the *price band*).
//! A provider's share of first tries is then bounded by its share of the band's stake, whatever
//! its price, and splitting a stake across many providers gains nothing. Within the band a slow
//! provider weighs a sixteenth ([`SLOW_DIVISOR`]): one whose time to its first output, as this
//! gateway measured it, is more than twice the band's stake-weighted median plus
//! [`LATENCY_CLASS_MS`] (one never measured counts as typical, so each gets tried). Being fast
//! earns nothing over being typical, so a provider that answers garbage at once cannot outweigh
//! honest ones by its speed. After the band come the dearer providers, cheapest first (then
//! faster, in classes of [`LATENCY_CLASS_MS`], then more jobs settled on-chain), then those
//! cooling down. A provider that failed
//! cools down for a while, doubling with each failure in a row ([`COOLDOWN_FIRST`] up to
//! [`COOLDOWN_MAX`]), and is back in place after a success.

use crate::{
    Chain, Delivery, Error, JobInput, JobOutput, JobSubmission, OutputReader, ProviderFailure,
    SealedPiece, open_delivery, seal,
};
use agora_types::{
    Address, Amount, Hash, JobParams, JobRequest, Keypair, SignedJobReceipt, job_fee,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod endpoints;
mod routing;
pub use endpoints::public_endpoint;
use endpoints::*;
use routing::*;

/// Blocks a request stays valid for settlement.
const EXPIRY_BLOCKS: u64 = 1_200;
/// Latencies closer than this count as equal (then reputation decides).
pub const LATENCY_CLASS_MS: u64 = 100;
/// What a slow provider's stake is divided by in the draw.
pub const SLOW_DIVISOR: u128 = 16;
/// How long a provider stays behind the others after one failure.
pub const COOLDOWN_FIRST: Duration = Duration::from_secs(5);
/// The longest it stays behind, after failures in a row.
pub const COOLDOWN_MAX: Duration = Duration::from_secs(300);

/// Latency samples a gateway keeps per provider and model, for people to look at (routing reads
/// only the smoothed value).
pub const LATENCY_SAMPLES: usize = 32;

/// What this gateway has seen of one provider.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    /// Smoothed time to the first output (ms); `None` before the first job.
    latency_ms: Option<u64>,
    /// Failures in a row.
    failures: u32,
    /// Put behind the others until then.
    cool_until: Option<Instant>,
    /// The latest times to first output (ms), a ring of [`LATENCY_SAMPLES`].
    samples: [u32; LATENCY_SAMPLES],
    /// Samples taken in all (the ring's next slot is this modulo its size).
    taken: u64,
}

/// What a gateway has measured of a provider serving a model (`GET /v1/providers/stats`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProviderStats {
    pub provider: Address,
    pub model: Hash,
    /// Smoothed time to the first output, ms.
    pub latency_ms: Option<u64>,
    /// The latest times to first output, ms, oldest first (at most [`LATENCY_SAMPLES`]).
    pub recent_ms: Vec<u32>,
    /// Jobs answered in all.
    pub answered: u64,
    /// Failures in a row now.
    pub failures: u32,
}

/// A provider as the chain lists it ([`agora_node_api::ProviderEntry`]).
pub type ProviderListing = agora_node_api::ProviderEntry;

/// What routing reads of a listed provider.
pub(crate) trait Listed {
    /// Its prices per 1,000 input and output tokens.
    fn prices(&self) -> (Amount, Amount);
    /// Its bonded stake.
    fn stake(&self) -> Amount;
    /// Its X25519 key.
    fn key(&self) -> [u8; 32];
    /// The first model it serves among `models`.
    fn serves_one_of(&self, models: &[Hash]) -> Option<Hash>;
}

impl Listed for ProviderListing {
    fn prices(&self) -> (Amount, Amount) {
        let info = &self.provider.info;
        (info.price_input_per_1k, info.price_output_per_1k)
    }

    fn stake(&self) -> Amount {
        self.provider.stake
    }

    fn key(&self) -> [u8; 32] {
        self.provider.info.encryption_key.0
    }

    fn serves_one_of(&self, models: &[Hash]) -> Option<Hash> {
        self.provider
            .info
            .models
            .iter()
            .find(|m| models.contains(m))
            .copied()
    }
}

/// A finished job, opened and checked.
#[derive(Clone, Debug)]
pub struct Completed {
    /// What the provider delivered.
    pub output: JobOutput,
    /// Its signed receipt (checked: signature, request, output hash).
    pub receipt: SignedJobReceipt,
    /// The job id.
    pub job_id: Hash,
    /// The model id.
    pub model: Hash,
    /// The provider that served it.
    pub provider: Address,
    /// blake3 of the input.
    pub input_hash: Hash,
}

/// The most input and output tokens a job can count: tokens never outnumber the input's bytes
/// (plus a chat template's), and embeddings and audits generate none; a query or forecast
/// counts the rows it reads, at most `max_tokens` (its read budget), and the rows or steps it
/// gives. What bounds its fee.
pub(crate) fn job_bounds(input: &JobInput, params: &JobParams) -> (u32, u32) {
    let max_input = u32::try_from(input.to_bytes().len() + 256).unwrap_or(u32::MAX);
    match input {
        JobInput::Embedding { .. } | JobInput::Audit { .. } => (max_input, 0),
        JobInput::Sql { .. } => (params.max_tokens, MAX_QUERY_ROWS),
        JobInput::Forecast { horizon, .. } => (params.max_tokens, *horizon),
        JobInput::Chat { .. } | JobInput::Completion { .. } => (max_input, params.max_tokens),
        // A proved run counts the model's inputs and outputs.
        JobInput::Zk { input, .. } => (
            u32::try_from(input.len()).unwrap_or(u32::MAX),
            agora_types::MAX_ZK_OUTPUTS as u32,
        ),
    }
}

/// Most rows a query job returns (the analytics engine's cap: a result is revealed whole).
pub(crate) const MAX_QUERY_ROWS: u32 = 1_000;

/// A gateway: reads the market from the chain, and sends jobs to its providers.
pub struct Gateway {
    chain: Arc<dyn Chain>,
    /// For providers: where only public endpoints may be reached, it connects only to public
    /// addresses.
    providers_agent: ureq::Agent,
    /// By provider and model: a provider's speed and failures on one model say little about
    /// another (and a client cannot slow an honest provider's name down for every model by
    /// sending one model long inputs).
    seen: Mutex<BTreeMap<(Address, Hash), Seen>>,
    /// Whether providers may be reached on loopback, private or link-local addresses (a local
    /// network, the devnet); otherwise an endpoint registered on chain cannot turn the gateway
    /// against the machines around it.
    private_endpoints: bool,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("private_endpoints", &self.private_endpoints)
            .finish_non_exhaustive()
    }
}

/// The most a provider's answer stream may carry: a job's sealed pieces and its delivery, each
/// at most a reveal's size (what a provider may deliver at all), hex-encoded, with room to spare.
const MAX_STREAM_BYTES: u64 = 16 << 20;

/// A refusal status that blames the request, not the provider or the escrow.
fn request_fault(status: u16) -> bool {
    status < 500 && status != 402
}

fn is_request_fault(e: Option<&Error>) -> bool {
    matches!(e, Some(Error::Refused { status, .. }) if request_fault(*status))
}

/// How the gateway's client of providers is set. A provider has no reason to redirect the
/// gateway, so it follows no redirect; with `public_only`, it also uses no proxy (a proxy would
/// resolve the provider's name itself, past the public-address check of [`PublicOnly`]).
fn agent_config(public_only: bool) -> ureq::config::Config {
    let builder = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(3)))
        .timeout_global(Some(Duration::from_secs(600)))
        .max_redirects(0);
    match public_only {
        true => builder.proxy(None).build(),
        false => builder.build(),
    }
}

impl Gateway {
    /// A gateway over `chain`.
    pub fn new(chain: Arc<dyn Chain>) -> Self {
        Gateway {
            chain,
            providers_agent: agent_config(false).into(),
            seen: Mutex::new(BTreeMap::new()),
            private_endpoints: true,
        }
    }

    /// The chain it reads.
    pub fn chain(&self) -> &Arc<dyn Chain> {
        &self.chain
    }

    /// Reaches providers only at public addresses: endpoints on loopback, private, link-local,
    /// shared or unspecified addresses (or names that resolve to one) are skipped.
    pub fn public_endpoints_only(mut self) -> Self {
        self.private_endpoints = false;
        self.providers_agent = ureq::Agent::with_parts(
            agent_config(true),
            ureq::unversioned::transport::DefaultConnector::default(),
            PublicOnly::default(),
        );
        self
    }

    /// The models registered on-chain that some provider serves.
    pub fn models(&self) -> Result<Vec<agora_node_api::ModelEntry>, Error> {
        let providers = self.providers()?;
        Ok(self
            .chain
            .models()?
            .into_iter()
            .filter(|m| {
                providers
                    .iter()
                    .any(|p| p.provider.info.models.contains(&m.id))
            })
            .collect())
    }

    /// A model id from a name or an id (hex, or a unique prefix of at least 8 digits).
    pub fn resolve_model(&self, name: &str) -> Result<Hash, Error> {
        let models = self.models()?;
        let found: Vec<Hash> = models
            .iter()
            .filter(|m| {
                m.name == name
                    || (name.len() >= 8 && m.id.to_hex().starts_with(&name.to_lowercase()))
            })
            .map(|m| m.id)
            .collect();
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(Error::Refused {
                status: 404,
                code: "model_not_found",
                message: format!(
                    "no provider serves a model named {name:?}; GET /v1/models lists them"
                ),
            }),
            _ => Err(Error::Refused {
                status: 400,
                code: "ambiguous_model",
                message: format!("{name:?} names more than one model"),
            }),
        }
    }

    /// Registered providers.
    pub fn providers(&self) -> Result<Vec<ProviderListing>, Error> {
        Ok(self.chain.providers()?)
    }

    /// Providers of `model` in the order a job would try them (see the module's documentation),
    /// priced for `input_tokens` and `output_tokens` at most.
    pub fn candidates_for(
        &self,
        model: &Hash,
        input_tokens: u32,
        output_tokens: u32,
    ) -> Result<Vec<ProviderListing>, Error> {
        let list: Vec<ProviderListing> = self
            .providers()?
            .into_iter()
            .filter(|p| {
                p.provider.active()
                    && p.provider.info.models.contains(model)
                    && (self.private_endpoints || maybe_public_endpoint(&p.provider.info.endpoint))
            })
            .collect();
        let seen: BTreeMap<Address, Seen> = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|((_, m), _)| m == model)
            .map(|((a, _), s)| (*a, *s))
            .collect();
        Ok(order_candidates(
            list,
            &seen,
            Instant::now(),
            (input_tokens, output_tokens),
            &mut |below| {
                let mut r = [0u8; 16];
                rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut r);
                u128::from_le_bytes(r) % below
            },
        ))
    }

    /// [`Self::candidates_for`] a request of 1,000 input and 1,000 output tokens.
    pub fn candidates(&self, model: &Hash) -> Result<Vec<ProviderListing>, Error> {
        self.candidates_for(model, 1_000, 1_000)
    }

    /// The smoothed time to first output this gateway measured for `provider` on `model`, if any.
    pub fn latency_ms(&self, provider: &Address, model: &Hash) -> Option<u64> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(*provider, *model))?
            .latency_ms
    }

    /// What this gateway has measured of each provider and model, in address order.
    pub fn provider_stats(&self) -> Vec<ProviderStats> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .map(|((provider, model), s)| {
                let kept = s.taken.min(LATENCY_SAMPLES as u64) as usize;
                let start = (s.taken as usize).wrapping_sub(kept) % LATENCY_SAMPLES;
                ProviderStats {
                    provider: *provider,
                    model: *model,
                    latency_ms: s.latency_ms,
                    recent_ms: (0..kept)
                        .map(|i| s.samples[(start + i) % LATENCY_SAMPLES])
                        .collect(),
                    answered: s.taken,
                    failures: s.failures,
                }
            })
            .collect()
    }

    fn record_success(&self, provider: Address, model: Hash, first_output: Duration) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let s = seen.entry((provider, model)).or_default();
        let sample = u64::try_from(first_output.as_millis()).unwrap_or(u64::MAX);
        s.samples[(s.taken % LATENCY_SAMPLES as u64) as usize] =
            u32::try_from(sample).unwrap_or(u32::MAX);
        s.taken += 1;
        // Exponential smoothing, a quarter weight to the newest sample.
        s.latency_ms = Some(s.latency_ms.map_or(sample, |old| {
            old.saturating_mul(3).saturating_add(sample) / 4
        }));
        s.failures = 0;
        s.cool_until = None;
    }

    fn record_failure(&self, provider: Address, model: Hash) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let s = seen.entry((provider, model)).or_default();
        s.failures = s.failures.saturating_add(1);
        let cooldown = COOLDOWN_FIRST
            .saturating_mul(1u32 << s.failures.saturating_sub(1).min(16))
            .min(COOLDOWN_MAX);
        s.cool_until = Some(Instant::now() + cooldown);
    }

    /// Runs a job for `client` on a provider of `model` that takes it, trying them in the order
    /// of [`Self::candidates_for`], calling `on_text` with each piece of output text as it arrives.
    pub fn run(
        &self,
        client: &Keypair,
        model: Hash,
        input: &JobInput,
        params: JobParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Completed, Error> {
        let (max_input, max_output) = job_bounds(input, &params);
        let candidates = self.candidates_for(&model, max_input, max_output)?;
        if candidates.is_empty() {
            return Err(Error::Refused {
                status: 503,
                code: "no_provider",
                message: format!("no registered provider serves model {model}"),
            });
        }
        let targets: Vec<(ProviderListing, Hash)> =
            candidates.into_iter().map(|p| (p, model)).collect();
        self.run_on(client, &targets, input, params, on_text)
    }

    /// Where a request's `model` sends it: `subnet:N` to subnet N's miners by incentive, any
    /// other name to the providers of that model (see [`Self::resolve_model`]).
    pub fn targets(
        &self,
        name: &str,
        kind: agora_types::ModelKind,
        max_input: u32,
        max_output: u32,
    ) -> Result<Vec<(ProviderListing, Hash)>, Error> {
        if let Some(n) = name.strip_prefix("subnet:") {
            let netuid: u16 = n.parse().map_err(|_| Error::Refused {
                status: 400,
                code: "model_not_found",
                message: format!("{name:?}: a subnet is subnet:N with N a subnet id"),
            })?;
            return self.subnet_candidates(netuid, kind);
        }
        let model = self.resolve_model(name)?;
        Ok(self
            .candidates_for(&model, max_input, max_output)?
            .into_iter()
            .map(|p| (p, model))
            .collect())
    }

    /// Subnet `netuid`'s miners that serve a model of `kind`, the highest incentive first (the
    /// lower UID on a tie), those cooling down after failures last; each with the model it
    /// serves. The model market's consensus is what routes the traffic.
    pub fn subnet_candidates(
        &self,
        netuid: u16,
        kind: agora_types::ModelKind,
    ) -> Result<Vec<(ProviderListing, Hash)>, Error> {
        let graph = self
            .chain
            .metagraph(netuid)?
            .ok_or_else(|| Error::Refused {
                status: 404,
                code: "model_not_found",
                message: format!("no subnet {netuid}; GET /v1/subnets on the node lists them"),
            })?;
        let of_kind: Vec<Hash> = self
            .chain
            .models()?
            .into_iter()
            .filter(|m| m.kind == kind)
            .map(|m| m.id)
            .collect();
        let mut neurons = graph.neurons;
        neurons.sort_by(|a, b| b.incentive.total_cmp(&a.incentive).then(a.uid.cmp(&b.uid)));
        let now = Instant::now();
        let cooling = |a: &Address| {
            self.seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|((p, _), s)| p == a && s.cool_until.is_some_and(|t| t > now))
        };
        let (mut ready, mut later) = (Vec::new(), Vec::new());
        for n in neurons {
            let Some(listing) = self.chain.provider(&n.hotkey)? else {
                continue;
            };
            if !listing.provider.active()
                || !(self.private_endpoints
                    || maybe_public_endpoint(&listing.provider.info.endpoint))
            {
                continue;
            }
            let Some(model) = listing.serves_one_of(&of_kind) else {
                continue;
            };
            if cooling(&listing.address) {
                later.push((listing, model));
            } else {
                ready.push((listing, model));
            }
        }
        ready.extend(later);
        if ready.is_empty() {
            return Err(Error::Refused {
                status: 503,
                code: "no_provider",
                message: format!("no miner of subnet {netuid} serves a {kind:?} model"),
            });
        }
        Ok(ready)
    }

    /// [`Self::run`] on `targets` (a provider, and the model to ask it for), tried in their
    /// order: a subnet's miners by incentive, or the one provider a validator scores.
    pub fn run_on(
        &self,
        client: &Keypair,
        targets: &[(ProviderListing, Hash)],
        input: &JobInput,
        params: JobParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Completed, Error> {
        let bytes = input.to_bytes();
        let input_hash = input.input_hash();
        // A proved job pays for its settlement too.
        let proof_fee = if params.verification == agora_types::Verification::Zk {
            agora_types::zk_proof_fee(self.chain.min_fee()?)
        } else {
            0
        };
        let (max_input, max_output) = job_bounds(input, &params);
        let chain_id = self.chain.chain_id()?;
        let height = self.chain.height()?;
        let mut last = None;
        for (provider, model) in targets {
            let model = *model;
            let ((p_in, p_out), key) = (provider.prices(), provider.key());
            let Some(max_fee) =
                job_fee(p_in, p_out, max_input, max_output).and_then(|f| f.checked_add(proof_fee))
            else {
                continue;
            };
            let mut nonce = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
            let request = JobRequest {
                chain_id: chain_id.clone(),
                client: client.public(),
                provider: provider.address,
                model,
                input_hash,
                params: params.clone(),
                max_fee,
                nonce: Hash(nonce),
                expiry_height: height + EXPIRY_BLOCKS,
            };
            let (envelope, reader) = seal(&key, &request.hash(), &bytes);
            let signed = request.clone().sign(client);
            let submission = JobSubmission {
                request: hex::encode(borsh::to_vec(&signed).expect("borsh encoding into a Vec")),
                input: envelope,
                stream: true,
            };
            let sent = Instant::now();
            let mut first_output = None;
            let mut stopped = false;
            let mut timed = |text: &str| {
                first_output.get_or_insert_with(|| sent.elapsed());
                let flow = on_text(text);
                stopped |= flow.is_break();
                flow
            };
            match self.call(provider, &submission, reader, &mut timed) {
                Ok((output, receipt)) => {
                    if let Err(e) = check_receipt(&request, &output, &receipt, provider.address)
                        .and_then(|()| self.check_proof(&request, input, &output))
                        .and_then(|()| check_not_cut(&output, stopped))
                    {
                        // The gateway's own node failing is not the provider's fault.
                        if !matches!(e, Error::Node(_)) {
                            self.record_failure(provider.address, model);
                        }
                        return Err(e);
                    }
                    // An embedding has no pieces: its first output is the whole answer.
                    self.record_success(
                        provider.address,
                        model,
                        first_output.unwrap_or_else(|| sent.elapsed()),
                    );
                    return Ok(Completed {
                        output,
                        receipt,
                        job_id: request.id(),
                        model,
                        provider: provider.address,
                        input_hash: request.input_hash,
                    });
                }
                // Before the first piece: try the next provider.
                Err(CallError::BeforeOutput(e)) => {
                    tracing::info!("provider {} did not take the job: {e}", provider.address);
                    if provider_at_fault(&e) {
                        self.record_failure(provider.address, model);
                    }
                    // A refusal that blames the request says more than a dead provider after it.
                    if !is_request_fault(last.as_ref()) || is_request_fault(Some(&e)) {
                        last = Some(e);
                    }
                }
                Err(CallError::RequestFault(e)) => return Err(e),
                Err(CallError::AfterOutput(e)) => {
                    if provider_at_fault(&e) {
                        self.record_failure(provider.address, model);
                    }
                    // Output already went to the client, so no failover can hide the cut.
                    return Err(match e {
                        Error::Provider(why) => {
                            tracing::warn!("provider {} broke off: {why}", provider.address);
                            Error::Refused {
                                status: 502,
                                code: "provider_broke_off",
                                message: "the provider stopped before its answer was complete: \
                                          what arrived is not a whole answer (a provider cut off \
                                          may still be paid for what it generated); try again"
                                    .into(),
                            }
                        }
                        other => other,
                    });
                }
            }
        }
        Err(match last {
            // A refusal that is the request's fault is the client's answer.
            Some(Error::Refused {
                status,
                code,
                message,
            }) if request_fault(status) => Error::Refused {
                status,
                code,
                message,
            },
            Some(e) => Error::Refused {
                status: 503,
                code: "no_provider_available",
                message: format!("every provider of the model failed or refused; the last: {e}"),
            },
            None => Error::Refused {
                status: 503,
                code: "no_provider_available",
                message: "no usable provider".into(),
            },
        })
    }

    /// A proved result must prove what the client asked, on its input, for this job: the
    /// gateway verifies the proof itself before answering (the chain verifies it again at
    /// settlement), so a client never takes a provider's word for a proved output.
    fn check_proof(
        &self,
        request: &JobRequest,
        input: &JobInput,
        output: &JobOutput,
    ) -> Result<(), Error> {
        let bad = |why: String| Error::Refused {
            status: 502,
            code: "bad_proof",
            message: format!("the provider's proof {why}"),
        };
        let (JobInput::Zk { threshold, .. }, JobOutput::Zk { claim, .. }) = (input, output) else {
            return match output {
                JobOutput::Zk { .. } => Err(bad("answers a job that asked for none".into())),
                _ if request.params.verification == agora_types::Verification::Zk => {
                    Err(bad("is missing".into()))
                }
                _ => Ok(()),
            };
        };
        if claim.model != request.model
            || claim.input_commitment != request.input_hash
            || claim.threshold != *threshold
            || claim.outputs.is_none()
        {
            return Err(bad(
                "claims another model, input or predicate, or hides the outputs".into(),
            ));
        }
        let proof = output
            .zk_proof()
            .unwrap_or_else(|| Ok(Vec::new()))
            .map_err(|e| bad(e.to_string()))?;
        let entry = self.chain.zk_model(&request.model)?.ok_or_else(|| {
            bad(format!(
                "is for model {}, which is not provable",
                request.model
            ))
        })?;
        let context = agora_state::zk_job_context(&request.chain_id, &request.id());
        agora_state::verify_claim(&entry.record.key, claim, &context, &proof)
            .map_err(|e| bad(format!("does not verify: {e}")))
    }

    /// Posts the job to one provider and follows its event stream.
    fn call(
        &self,
        provider: &ProviderListing,
        submission: &JobSubmission,
        mut reader: OutputReader,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<(JobOutput, SignedJobReceipt), CallError> {
        let before = |e: Error| CallError::BeforeOutput(e);
        let url = format!(
            "{}/v1/jobs",
            provider.provider.info.endpoint.trim_end_matches('/')
        );
        let response = self
            .providers_agent
            .post(&url)
            .send_json(submission)
            .map_err(|e| {
                before(Error::Provider(ProviderFailure::Unreachable {
                    url: url.clone(),
                    reason: e.to_string(),
                }))
            })?;
        let status = response.status().as_u16();
        if status != 200 {
            let body: Value = response.into_body().read_json().unwrap_or(Value::Null);
            return Err(before(Error::Refused {
                status,
                code: known_code(body["code"].as_str().unwrap_or("provider_error")),
                message: body["message"].as_str().unwrap_or("refused").to_string(),
            }));
        }
        // A provider cannot make the gateway buffer without bound (one endless line, an endless
        // stream): past the limit the stream ends, as if the provider had closed it.
        let body = std::io::Read::take(response.into_body().into_reader(), MAX_STREAM_BYTES);
        let lines = BufReader::new(body).lines();
        let mut event = String::new();
        let mut started = false;
        for line in lines {
            let line = line.map_err(|e| {
                let e = Error::Provider(ProviderFailure::StreamBroken(e.to_string()));
                if started {
                    CallError::AfterOutput(e)
                } else {
                    before(e)
                }
            })?;
            if let Some(name) = line.strip_prefix("event:") {
                event = name.trim().to_string();
                continue;
            }
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            match event.as_str() {
                "piece" => {
                    let piece: SealedPiece = serde_json::from_str(data.trim())
                        .map_err(|e| CallError::AfterOutput(malformed("piece", e)))?;
                    let text = reader
                        .open(piece.n, &piece.sealed)
                        .map_err(CallError::AfterOutput)?;
                    started = true;
                    if on_text(&String::from_utf8_lossy(&text)).is_break() {
                        return Err(CallError::AfterOutput(Error::BadInput(
                            "the client went away".into(),
                        )));
                    }
                }
                "done" => {
                    let delivery: Delivery = serde_json::from_str(data.trim())
                        .map_err(|e| CallError::AfterOutput(malformed("delivery", e)))?;
                    return open_delivery(&mut reader, &delivery).map_err(CallError::AfterOutput);
                }
                "error" => {
                    #[derive(serde::Deserialize)]
                    struct Failed {
                        #[serde(default)]
                        status: u16,
                        code: String,
                        message: String,
                    }
                    let e = match serde_json::from_str::<Failed>(data.trim()) {
                        // The request's fault, found after the provider worked on it: every
                        // provider would do the same, so no other is tried, and this one is not
                        // blamed for it.
                        Ok(f) if request_fault(f.status) => {
                            return Err(CallError::RequestFault(Error::Refused {
                                status: f.status,
                                code: known_code(&f.code),
                                message: f.message,
                            }));
                        }
                        Ok(f) if f.code == "busy" => Error::Refused {
                            status: f.status,
                            code: "busy",
                            message: f.message,
                        },
                        Ok(f) => Error::Provider(ProviderFailure::Reported(f.message)),
                        Err(_) => Error::Provider(ProviderFailure::Reported(data.trim().into())),
                    };
                    return Err(if started {
                        CallError::AfterOutput(e)
                    } else {
                        before(e)
                    });
                }
                _ => {}
            }
        }
        let e = Error::Provider(ProviderFailure::ClosedEarly);
        Err(if started {
            CallError::AfterOutput(e)
        } else {
            before(e)
        })
    }
}

/// A provider's answer that does not read as `what`.
fn malformed(what: &'static str, e: serde_json::Error) -> Error {
    Error::Provider(ProviderFailure::Malformed {
        what,
        reason: e.to_string(),
    })
}

enum CallError {
    BeforeOutput(Error),
    AfterOutput(Error),
    /// The request's fault, reported after the provider ran it: answer it as it is.
    RequestFault(Error),
}

/// Whether a failure counts against the provider (not a refusal of a bad request, an unpaid one,
/// or a client that went away).
fn provider_at_fault(e: &Error) -> bool {
    match e {
        // A provider at capacity is not failing: the next one is tried, and this one is not
        // benched for it.
        Error::Refused { code: "busy", .. } => false,
        Error::Refused { status, .. } => *status >= 500,
        Error::BadInput(_) => false,
        _ => true,
    }
}

/// A provider's error code, if it is one this protocol defines; otherwise "provider_error".
fn known_code(code: &str) -> &'static str {
    const KNOWN: [&str; 30] = [
        "malformed_request",
        "too_large_to_verify",
        "expiry_too_far",
        "duplicate_job",
        "fee_overflow",
        "wrong_chain_id",
        "wrong_provider",
        "unknown_model",
        "invalid_signature",
        "expired",
        "undecryptable_input",
        "input_hash_mismatch",
        "bad_input",
        "context_length_exceeded",
        "max_fee_too_low",
        "insufficient_escrow",
        // The analytics model's (queries and forecasts).
        "sql_syntax",
        "read_only",
        "unknown_table",
        "sql_plan",
        "sql_execution",
        "query_timeout",
        "row_cap",
        "memory_cap",
        "busy",
        "height_not_indexed",
        "forecast",
        "cooling_down",
        // Provable models'.
        "zk_mismatch",
        "prover_failed",
    ];
    KNOWN
        .iter()
        .find(|k| **k == code)
        .copied()
        .unwrap_or("provider_error")
}

/// The receipt must be the provider's, for this request, over this output, within the max fee.
/// An answer the provider says was stopped (`cancelled`) must have been stopped by this gateway:
/// otherwise the provider cut it short, which a verifier cannot tell from a stop.
fn check_not_cut(output: &JobOutput, stopped: bool) -> Result<(), Error> {
    match output {
        JobOutput::Text { finish, .. } if finish == "cancelled" && !stopped => {
            Err(Error::Refused {
                status: 502,
                code: "bad_receipt",
                message: "the provider ended the answer as stopped, and nobody stopped it".into(),
            })
        }
        _ => Ok(()),
    }
}

fn check_receipt(
    request: &JobRequest,
    output: &JobOutput,
    receipt: &SignedJobReceipt,
    provider: Address,
) -> Result<(), Error> {
    let bad = |why: &str| Error::Refused {
        status: 502,
        code: "bad_receipt",
        message: format!("the provider's receipt {why}"),
    };
    if receipt.verify().is_err() || receipt.provider.address() != provider {
        return Err(bad("is not signed by the provider"));
    }
    if receipt.receipt.request_hash != request.hash() {
        return Err(bad("names another request"));
    }
    if receipt.receipt.output_hash != output.hash() {
        return Err(bad("does not match the output delivered"));
    }
    if receipt.receipt.fee > request.max_fee {
        return Err(bad("claims more than the max fee"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_types::JobReceipt;

    fn job() -> (JobRequest, JobOutput, Keypair) {
        let client = Keypair::from_seed_label("client");
        let provider = Keypair::from_seed_label("provider");
        let request = JobRequest {
            chain_id: "t".into(),
            client: client.public(),
            provider: provider.address(),
            model: Hash([1; 32]),
            input_hash: Hash([2; 32]),
            params: JobParams::default(),
            max_fee: 500,
            nonce: Hash([3; 32]),
            expiry_height: 10,
        };
        let output = JobOutput::Text {
            text: "hi".into(),
            tokens: vec![1, 2],
            finish: "stop".into(),
            logprobs: None,
        };
        (request, output, provider)
    }

    fn receipt(request: &JobRequest, output: &JobOutput, fee: Amount) -> JobReceipt {
        JobReceipt {
            request_hash: request.hash(),
            output_hash: output.hash(),
            input_tokens: 5,
            output_tokens: 2,
            fee,
        }
    }

    fn listing(n: u8, price_out: Amount, stake: Amount) -> ProviderListing {
        ProviderListing {
            address: Address([n; 20]),
            provider: agora_state::Provider {
                info: agora_types::ProviderInfo {
                    models: vec![Hash([1; 32])],
                    price_input_per_1k: 0,
                    price_output_per_1k: price_out,
                    endpoint: "http://192.0.2.1".into(),
                    encryption_key: agora_types::EncryptionKey([n; 32]),
                },
                stake,
                registered_height: 0,
                jobs_settled: 0,
                fees_settled: 0,
                held_until: 0,
                open_checks: 0,
                frauds: 0,
                retired_height: None,
            },
        }
    }

    /// How often each provider comes first over `rounds` orderings, from a fixed random stream.
    fn firsts(
        list: &[ProviderListing],
        seen: &BTreeMap<Address, Seen>,
        rounds: u32,
    ) -> BTreeMap<Address, u32> {
        let mut counter = 0u64;
        let mut below = |n: u128| {
            counter += 1;
            let h = Hash::digest(&counter.to_le_bytes());
            u128::from_le_bytes(h.0[..16].try_into().unwrap()) % n
        };
        let mut out = BTreeMap::new();
        for _ in 0..rounds {
            let order =
                order_candidates(list.to_vec(), seen, Instant::now(), (0, 1_000), &mut below);
            assert_eq!(order.len(), list.len(), "every provider stays a candidate");
            *out.entry(order[0].address).or_default() += 1;
        }
        out
    }

    #[test]
    fn provider_stats_keep_the_latest_samples_oldest_first() {
        let gateway = Gateway::new(Arc::new(crate::HttpChain::new("http://127.0.0.1:1")));
        let (p, m) = (Address([1; 20]), Hash([2; 32]));
        assert!(gateway.provider_stats().is_empty());
        for ms in 0..40u64 {
            gateway.record_success(p, m, Duration::from_millis(100 + ms));
        }
        gateway.record_failure(p, m);
        let stats = gateway.provider_stats();
        assert_eq!(stats.len(), 1);
        let s = &stats[0];
        assert_eq!((s.provider, s.model, s.answered, s.failures), (p, m, 40, 1));
        let want: Vec<u32> = (108..140).collect();
        assert_eq!(s.recent_ms, want, "the last 32, oldest first");
        assert_eq!(s.latency_ms, gateway.latency_ms(&p, &m));
        // Fewer samples than the ring holds: all of them.
        let q = Address([3; 20]);
        gateway.record_success(q, m, Duration::from_millis(7));
        let stats = gateway.provider_stats();
        assert_eq!(
            stats.iter().find(|s| s.provider == q).unwrap().recent_ms,
            vec![7]
        );
    }

    #[test]
    fn a_public_only_gateway_never_connects_to_a_private_address() {
        let gateway = Gateway::new(Arc::new(crate::HttpChain::new("http://127.0.0.1:1")))
            .public_endpoints_only();
        // A provider may not send the gateway to loopback, whether by its address or by a name
        // that resolves to it (checked when it is used, not only when the list was filtered):
        // refused before any connection (nothing listens there, so a connection would fail
        // otherwise, with an I/O error).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        for url in [
            format!("http://127.0.0.1:{port}/v1/jobs"),
            format!("http://localhost:{port}/v1/jobs"),
            format!("http://[::ffff:127.0.0.1]:{port}/v1/jobs"),
        ] {
            let err = gateway.providers_agent.post(&url).send_json(1).unwrap_err();
            assert!(matches!(err, ureq::Error::HostNotFound), "{url}: {err}");
        }
    }

    #[test]
    fn a_free_provider_gets_its_share_of_stake_not_every_job() {
        // Nine honest providers at 1,000 with 10 each; an attacker asking nothing with 10.
        let mut list: Vec<_> = (1..=9).map(|n| listing(n, 1_000, 10)).collect();
        list.push(listing(66, 0, 10));
        let seen = BTreeMap::new();
        let got = firsts(&list, &seen, 10_000);
        let attacker = got.get(&Address([66; 20])).copied().unwrap_or(0);
        assert!((800..1_200).contains(&attacker), "{attacker} of 10,000");
        // Split across ten providers of 1 each, the same stake wins no more.
        let mut list: Vec<_> = (1..=9).map(|n| listing(n, 1_000, 10)).collect();
        list.extend((100..110).map(|n| listing(n, 0, 1)));
        let got = firsts(&list, &seen, 10_000);
        let sybils: u32 = (100..110)
            .map(|n| got.get(&Address([n; 20])).copied().unwrap_or(0))
            .sum();
        assert!((800..1_200).contains(&sybils), "{sybils} of 10,000");
    }

    #[test]
    fn providers_dearer_than_the_median_come_after_the_band_cheapest_first() {
        let list = vec![
            listing(1, 9_000, 10),
            listing(2, 1_000, 10),
            listing(3, 5_000, 10),
            listing(4, 2_000, 10),
            listing(5, 7_000, 10),
        ];
        let seen = BTreeMap::new();
        let got = firsts(&list, &seen, 3_000);
        // The median fee is 5,000: the band is {1,000, 2,000, 5,000}, a third each.
        assert_eq!(
            got.keys().copied().collect::<Vec<_>>(),
            [2, 3, 4].map(|n| Address([n; 20]))
        );
        assert!(got.values().all(|c| (850..1_150).contains(c)), "{got:?}");
        let mut below = |n: u128| n - 1;
        let order = order_candidates(list, &seen, Instant::now(), (0, 1_000), &mut below);
        let tail: Vec<Address> = order[3..].iter().map(|p| p.address).collect();
        assert_eq!(tail, [Address([5; 20]), Address([1; 20])]);
    }

    #[test]
    fn answering_at_once_earns_no_more_than_answering_in_typical_time() {
        // Nine honest providers take 500 ms to their first output; an attacker with a tenth of
        // the stake answers garbage in 1 ms.
        let mut list: Vec<_> = (1..=9).map(|n| listing(n, 1_000, 1_000)).collect();
        list.push(listing(66, 1_000, 1_000));
        let mut seen: BTreeMap<Address, Seen> = (1..=9)
            .map(|n| {
                (
                    Address([n; 20]),
                    Seen {
                        latency_ms: Some(500),
                        ..Seen::default()
                    },
                )
            })
            .collect();
        seen.insert(
            Address([66; 20]),
            Seen {
                latency_ms: Some(1),
                ..Seen::default()
            },
        );
        let got = firsts(&list, &seen, 10_000);
        let attacker = got.get(&Address([66; 20])).copied().unwrap_or(0);
        assert!((800..1_200).contains(&attacker), "{attacker} of 10,000");
    }

    #[test]
    fn slower_providers_weigh_less_and_cooling_ones_come_last() {
        let list = vec![
            listing(1, 1_000, 10_000),
            listing(2, 1_000, 10_000),
            listing(3, 1, 10_000),
        ];
        let now = Instant::now();
        let seen: BTreeMap<Address, Seen> = [
            (
                Address([1; 20]),
                Seen {
                    latency_ms: Some(350),
                    ..Seen::default()
                },
            ),
            (
                Address([2; 20]),
                Seen {
                    latency_ms: Some(20),
                    ..Seen::default()
                },
            ),
            (
                Address([3; 20]),
                Seen {
                    failures: 1,
                    cool_until: Some(now + COOLDOWN_FIRST),
                    ..Seen::default()
                },
            ),
        ]
        .into();
        let got = firsts(&list, &seen, 3_400);
        // Slower than twice the median (20 ms) and 100 ms more: a sixteenth of its stake; the
        // cooling one, though cheapest, is never first.
        let slow = got.get(&Address([1; 20])).copied().unwrap_or(0);
        assert!((120..300).contains(&slow), "{got:?}");
        assert!(!got.contains_key(&Address([3; 20])), "{got:?}");
        let mut below = |_| 0;
        let order = order_candidates(list, &seen, now, (0, 1_000), &mut below);
        assert_eq!(order[2].address, Address([3; 20]));
    }

    #[test]
    fn only_public_addresses_pass_for_a_public_gateway() {
        for private in [
            "http://127.0.0.1:9000",
            "http://localhost:9000/v1",
            "https://10.1.2.3",
            "http://192.168.0.7:80",
            "http://172.16.0.1",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1",
            "http://0.0.0.0:1",
            "http://[::1]:9000",
            "http://[fd00::1]",
            "http://[fe80::1]",
            "http://[::ffff:127.0.0.1]",
            "http://user@127.0.0.1:9000",
            "ftp://8.8.8.8",
            "http://8.8.8.8:notaport",
            "http://",
            // IPv4 carried in IPv6: NAT64, 6to4, IPv4-compatible; and site-local.
            "http://[64:ff9b::a00:1]",
            "http://[2002:a00:1::1]",
            "http://[::10.0.0.1]",
            "http://[fec0::1]",
            // Benchmarking, IETF protocol assignments, reserved.
            "http://198.18.0.1",
            "http://192.0.0.8",
            "http://240.0.0.1",
        ] {
            assert!(!public_endpoint(private), "{private}");
            assert!(!maybe_public_endpoint(private), "{private}");
        }
        for public in [
            "http://8.8.8.8:9000",
            "https://1.1.1.1/v1",
            "http://[2606:4700::1111]:443",
            "http://[64:ff9b::808:808]",
            "http://[2002:808:808::1]",
        ] {
            assert!(public_endpoint(public), "{public}");
            assert!(maybe_public_endpoint(public), "{public}");
        }
        // A name passes the list without a lookup; its addresses are checked on connecting.
        assert!(maybe_public_endpoint("https://provider.example:8443/v1"));
    }

    #[test]
    fn only_the_providers_receipt_for_this_request_and_output_passes() {
        let (request, output, provider) = job();
        let code = |r: Result<(), Error>| match r {
            Ok(()) => "ok",
            Err(Error::Refused { code, .. }) => code,
            Err(e) => panic!("{e}"),
        };
        let honest = receipt(&request, &output, 100).sign(&provider);
        assert_eq!(
            code(check_receipt(
                &request,
                &output,
                &honest,
                provider.address()
            )),
            "ok"
        );
        // Another output than the one delivered.
        let other = JobOutput::Text {
            text: "ho".into(),
            tokens: vec![1, 3],
            finish: "stop".into(),
            logprobs: None,
        };
        assert_eq!(
            code(check_receipt(&request, &other, &honest, provider.address())),
            "bad_receipt"
        );
        // Signed by someone else, or altered after signing.
        let stranger = Keypair::from_seed_label("stranger");
        let forged = receipt(&request, &output, 100).sign(&stranger);
        assert_eq!(
            code(check_receipt(
                &request,
                &output,
                &forged,
                provider.address()
            )),
            "bad_receipt"
        );
        let mut altered = honest.clone();
        altered.receipt.fee = 99;
        assert_eq!(
            code(check_receipt(
                &request,
                &output,
                &altered,
                provider.address()
            )),
            "bad_receipt"
        );
        // For another request, or over the max fee.
        let mut other_request = request.clone();
        other_request.nonce = Hash([4; 32]);
        let for_other = receipt(&other_request, &output, 100).sign(&provider);
        assert_eq!(
            code(check_receipt(
                &request,
                &output,
                &for_other,
                provider.address()
            )),
            "bad_receipt"
        );
        let greedy = receipt(&request, &output, 501).sign(&provider);
        assert_eq!(
            code(check_receipt(
                &request,
                &output,
                &greedy,
                provider.address()
            )),
            "bad_receipt"
        );
    }

    #[test]
    fn only_provider_faults_put_a_provider_behind_the_others() {
        let refused = |status| Error::Refused {
            status,
            code: "x",
            message: String::new(),
        };
        assert!(provider_at_fault(&refused(503)));
        assert!(provider_at_fault(&Error::Provider(
            ProviderFailure::Unreachable {
                url: "http://192.0.2.1".into(),
                reason: "connection refused".into(),
            }
        )));
        assert!(!provider_at_fault(&refused(400)));
        assert!(!provider_at_fault(&refused(402)));
        // At capacity is not at fault: the next provider is tried, this one not benched.
        assert!(!provider_at_fault(&Error::Refused {
            status: 503,
            code: "busy",
            message: "256 requests wait".into(),
        }));
        assert!(!provider_at_fault(&Error::BadInput(
            "client went away".into()
        )));
    }
}
