//! The models a provider runs, behind one trait so the service does not care which engine.

use crate::{Error, JobInput, JobOutput, Logprob, SourceFile, TextLogprobs, TokenLogprob};
use agora_grammar::{Constraint, Grammars};
use agora_infer::bert::Embedder;
use agora_infer::chat::{ChatModel, Finish, GenParams, Message};
use agora_infer::sample::{SamplingParams, TokenConstraint, TokenLogprobs};
use agora_types::{Fault, Hash, JobParams, Verdict};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

/// A model's grammar compiler, built at most once.
type GrammarsCell = Arc<std::sync::OnceLock<Result<Grammars, String>>>;

/// A finished job.
#[derive(Clone, Debug, PartialEq)]
pub struct Served {
    /// What to deliver.
    pub output: JobOutput,
    /// Tokens of input processed.
    pub input_tokens: u32,
    /// Tokens of output produced.
    pub output_tokens: u32,
}

/// Runs jobs. Blocking (CPU work); call it off async executors.
pub trait Backend: Send + Sync {
    /// Whether this backend serves `model`.
    fn serves(&self, model: &Hash) -> bool;
    /// Tokens the input will count (for pricing before running).
    fn input_tokens(&self, model: &Hash, input: &JobInput) -> Result<u32, Error>;
    /// Runs the job, calling `on_text` with each piece of generated text (it may stop the stream).
    fn run(
        &self,
        model: &Hash,
        input: &JobInput,
        params: &JobParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Served, Error>;

    /// [`Self::run`] for a job of `client`: work kept from earlier jobs (a chat model's prompt
    /// prefixes) is reused only for the same client, so that one client's timings reveal nothing
    /// of another's prompts.
    fn run_for(
        &self,
        client: &[u8],
        model: &Hash,
        input: &JobInput,
        params: &JobParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Served, Error> {
        let _ = client;
        self.run(model, input, params, on_text)
    }

    /// Whether `model` is a provable model served here: its jobs are proved (level `zk`), and
    /// only such jobs run on it.
    fn provable(&self, model: &Hash) -> bool {
        let _ = model;
        false
    }

    /// Runs a provable model's job and proves it (DESIGN.md §9), bound to `context` (the chain
    /// and the job): the output is the claim and its proof, the tokens the model's inputs and
    /// outputs.
    fn prove(
        &self,
        model: &Hash,
        input: &JobInput,
        context: &agora_zk::Context,
    ) -> Result<Served, Error> {
        let _ = (input, context);
        Err(Error::UnknownModel(*model))
    }

    /// A verifier's judgement (DESIGN.md §6): is `output`, with the receipt's token counts
    /// `(input_tokens, output_tokens)`, what `model` gives for `input` and `params`? Text is
    /// scored teacher-forced (greedy: each claimed token within `tolerance` logits of the best;
    /// sampled: exactly the seeded sampler's choice); embeddings are recomputed. `Err` only when
    /// this backend cannot judge (it does not have the model).
    fn judge(
        &self,
        model: &Hash,
        input: &JobInput,
        params: &JobParams,
        output: &JobOutput,
        counts: (u32, u32),
        tolerance: f32,
    ) -> Result<Verdict, Error> {
        let _ = (input, params, output, counts, tolerance);
        Err(Error::UnknownModel(*model))
    }
}

/// Least cosine similarity between a claimed embedding and the recomputed one.
pub const EMBEDDING_MIN_COSINE: f32 = 0.9999;

fn fail(fault: Fault) -> Verdict {
    Verdict::Fail { fault }
}

/// The models a node runs, by model id: those of the inference runtime, and the Solidity
/// auditor (a deterministic model: a verifier re-runs it and compares reports exactly).
#[derive(Default)]
pub struct InferBackend {
    chat: BTreeMap<Hash, Arc<ChatModel>>,
    embed: BTreeMap<Hash, Arc<Embedder>>,
    auditor: Option<Hash>,
    /// Models run by engines outside this crate (the analytics service's, for one).
    engines: BTreeMap<Hash, Arc<dyn Backend>>,
    /// Provable models, by id (the hash of their verifying key).
    provable: BTreeMap<Hash, Arc<agora_zk::ProvingKey>>,
    /// One proof at a time: proving takes every core and memory that grows with the model, so
    /// concurrent jobs queue here instead of competing.
    proving: std::sync::Mutex<()>,
    /// Each chat model's grammar compiler, built once by the first job with a grammar (others
    /// wait for that model's only; a failure is kept).
    grammars: std::sync::Mutex<BTreeMap<Hash, GrammarsCell>>,
}

impl std::fmt::Debug for InferBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InferBackend")
            .field("chat", &self.chat.keys().collect::<Vec<_>>())
            .field("embed", &self.embed.keys().collect::<Vec<_>>())
            .field("auditor", &self.auditor)
            .field("engines", &self.engines.keys().collect::<Vec<_>>())
            .field("provable", &self.provable.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl InferBackend {
    /// Serves `model` under `id`.
    pub fn add_chat(&mut self, id: Hash, model: Arc<ChatModel>) {
        self.chat.insert(id, model);
    }

    /// Serves `model` under `id`.
    pub fn add_embedder(&mut self, id: Hash, model: Arc<Embedder>) {
        self.embed.insert(id, model);
    }

    /// Serves the Solidity auditor, under its id ([`auditor_id`]).
    pub fn add_auditor(&mut self) {
        self.auditor = Some(auditor_id());
    }

    /// Serves model `id` with `engine` (which must serve it).
    pub fn add_engine(&mut self, id: Hash, engine: Arc<dyn Backend>) {
        self.engines.insert(id, engine);
    }

    /// Serves the provable model `key` proves; returns its id (the model must be registered on
    /// chain under it: `RegisterZkModel`).
    pub fn add_provable(&mut self, key: agora_zk::ProvingKey) -> Hash {
        let id = Hash(key.verifying_key().model_id());
        self.provable.insert(id, Arc::new(key));
        id
    }

    /// A provable model's input, checked against the model: as many values as it takes, salt
    /// words in the field, the threshold within ±2^27.
    fn zk_input<'a>(
        key: &agora_zk::ProvingKey,
        input: &'a JobInput,
    ) -> Result<(&'a [i8], &'a [u32; 8], i64), Error> {
        let JobInput::Zk {
            input,
            salt,
            threshold,
        } = input
        else {
            return Err(Error::BadInput(
                "this is a provable model: send its input as integers, with a salt".into(),
            ));
        };
        let want = key.verifying_key().arch.inputs();
        if input.len() != want {
            return Err(Error::BadInput(format!(
                "the model takes {want} inputs, the job has {}",
                input.len()
            )));
        }
        if let Some(w) = salt.iter().find(|&&w| w >= agora_zk::FIELD_ORDER) {
            return Err(Error::BadInput(format!(
                "salt word {w} is not below the field's order {}",
                agora_zk::FIELD_ORDER
            )));
        }
        if threshold.unsigned_abs() > agora_types::MAX_ZK_VALUE as u64 {
            return Err(Error::BadInput(format!(
                "the threshold {threshold} is beyond ±{}",
                agora_types::MAX_ZK_VALUE
            )));
        }
        Ok((input, salt, *threshold))
    }

    /// An embedding model it serves, if any (a validator scores answers with it).
    pub fn embedder(&self) -> Option<Arc<Embedder>> {
        self.embed.values().next().cloned()
    }

    /// The model ids served.
    pub fn models(&self) -> Vec<Hash> {
        self.chat
            .keys()
            .chain(self.embed.keys())
            .chain(&self.auditor)
            .chain(self.engines.keys())
            .chain(self.provable.keys())
            .copied()
            .collect()
    }

    /// An audit's files, checked: at least one, each named.
    fn audit_files(input: &JobInput) -> Result<&[SourceFile], Error> {
        match input {
            JobInput::Audit { files } if !files.is_empty() => {
                if let Some(f) = files
                    .iter()
                    .find(|f| f.name.trim().is_empty() || f.name.len() > MAX_FILE_NAME_BYTES)
                {
                    return Err(Error::BadInput(format!(
                        "file name {:?}: 1 to {MAX_FILE_NAME_BYTES} bytes",
                        f.name
                    )));
                }
                Ok(files)
            }
            _ => Err(Error::BadInput(
                "this is the Solidity auditor: send one or more files".into(),
            )),
        }
    }

    fn audit_tokens(files: &[SourceFile]) -> u32 {
        count(
            files
                .iter()
                .map(|f| agora_audit::count_tokens(&f.source))
                .sum(),
        )
    }

    fn audit(files: &[SourceFile]) -> JobOutput {
        let report =
            agora_audit::audit_files(files.iter().map(|f| (f.name.as_str(), f.source.as_str())));
        JobOutput::Audit {
            findings: report.findings,
            errors: report.errors,
        }
    }

    fn chat_prompt(model: &ChatModel, input: &JobInput) -> Result<Vec<u32>, Error> {
        let tokens = match input {
            JobInput::Chat { messages, .. } => {
                let messages: Vec<Message> = messages
                    .iter()
                    .map(|m| Message::new(&m.role, &m.content))
                    .collect();
                model.encode_chat(&messages)?
            }
            JobInput::Completion { prompt, .. } => model.tokenizer.encode(prompt)?,
            JobInput::Embedding { .. }
            | JobInput::Audit { .. }
            | JobInput::Sql { .. }
            | JobInput::Forecast { .. }
            | JobInput::Zk { .. } => {
                return Err(Error::BadInput(
                    "this is a chat model: send messages or a prompt".into(),
                ));
            }
        };
        if tokens.is_empty() {
            return Err(Error::BadInput("the input is empty".into()));
        }
        Ok(tokens)
    }

    /// The constraint of the job's grammar for chat model `id`, if the input has one; an error
    /// if it does not compile.
    fn constraint(
        &self,
        id: &Hash,
        model: &ChatModel,
        input: &JobInput,
    ) -> Result<Option<Constraint>, Error> {
        let (JobInput::Chat {
            grammar: Some(grammar),
            ..
        }
        | JobInput::Completion {
            grammar: Some(grammar),
            ..
        }) = input
        else {
            return Ok(None);
        };
        let cell = self
            .grammars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(*id)
            .or_default()
            .clone();
        let grammars = cell
            .get_or_init(|| Grammars::new(model).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::BadInput(e.clone()))?;
        grammars
            .compile(grammar)
            .map(Some)
            .map_err(|e| Error::BadInput(e.to_string()))
    }

    fn texts(input: &JobInput) -> Result<Vec<&str>, Error> {
        match input {
            JobInput::Embedding { inputs } if !inputs.is_empty() => {
                Ok(inputs.iter().map(String::as_str).collect())
            }
            _ => Err(Error::BadInput(
                "this is an embedding model: send one or more texts".into(),
            )),
        }
    }
}

/// Longest file name in an audit.
pub const MAX_FILE_NAME_BYTES: usize = 256;

/// The auditor's model id.
pub fn auditor_id() -> Hash {
    Hash(agora_audit::model_id())
}

/// How many alternatives the job's log-probabilities list, if it asks for them.
/// Refuses parameters beyond their bounds ([`JobParams::check`]).
fn logprobs_top(params: &JobParams) -> Result<Option<usize>, Error> {
    params.check().map_err(Error::BadInput)?;
    Ok(params.logprobs.map(usize::from))
}

/// The prompt's first token, which has no log-probability.
fn first_token(m: &ChatModel, prompt: &[u32]) -> Logprob {
    let token = prompt.first().copied().unwrap_or(0);
    Logprob {
        token,
        bytes: m.tokenizer.token_bytes(token).to_vec(),
        logprob: 0.0,
    }
}

/// The runtime's log-probabilities with each token's bytes.
fn with_bytes(m: &ChatModel, lps: &[TokenLogprobs]) -> Vec<TokenLogprob> {
    let entry = |token: u32, logprob: f32| Logprob {
        token,
        bytes: m.tokenizer.token_bytes(token).to_vec(),
        logprob,
    };
    lps.iter()
        .map(|lp| TokenLogprob {
            chosen: entry(lp.token, lp.logprob),
            top: lp.top.iter().map(|&(t, l)| entry(t, l)).collect(),
        })
        .collect()
}

/// How far a claimed log-probability may be from the verifier's: the runtime gives the same bits
/// on every machine, so this only absorbs a decimal round trip, not a cheat's nudge.
const LOGPROB_TOLERANCE: f32 = 1e-4;

/// Alternatives a verifier computes beyond those claimed: a near tie at the edge of the list may
/// be ordered otherwise on other hardware, and the claimed values must still be found.
const LOGPROBS_SLACK: usize = 4;

/// Whether claimed log-probabilities are the model's (`expected`, computed by the verifier with
/// [`LOGPROBS_SLACK`] more alternatives) within `tolerance`: the same tokens and bytes, each value
/// within the tolerance of the model's, and as many alternatives as asked, none of them less
/// likely (beyond the tolerance) than the `top`-th most likely. Returns the first position that
/// is not.
fn logprobs_differ(
    m: &ChatModel,
    claimed: &[TokenLogprob],
    expected: &[TokenLogprobs],
    top: usize,
) -> Option<usize> {
    let tolerance = LOGPROB_TOLERANCE;
    if claimed.len() != expected.len() {
        return Some(claimed.len().min(expected.len()));
    }
    let close = |a: f32, b: f32| a.is_finite() && (a - b).abs() <= tolerance;
    let bytes_ok = |l: &Logprob| l.bytes == m.tokenizer.token_bytes(l.token);
    claimed.iter().zip(expected).position(|(c, e)| {
        let value_of = |token: u32| -> Option<f32> {
            e.top.iter().find(|(t, _)| *t == token).map(|&(_, l)| l)
        };
        let chosen_ok =
            c.chosen.token == e.token && bytes_ok(&c.chosen) && close(c.chosen.logprob, e.logprob);
        // A listed alternative is among the verifier's, with its value, and no less likely
        // (beyond the tolerance) than the `top`-th most likely.
        let kth = e
            .top
            .get(top.saturating_sub(1))
            .map_or(f32::NEG_INFINITY, |&(_, l)| l);
        let mut seen = Vec::with_capacity(c.top.len());
        let top_ok = c.top.len() == e.top.len().min(top)
            && c.top.windows(2).all(|w| w[0].logprob >= w[1].logprob)
            && c.top.iter().all(|l| {
                let fresh = !seen.contains(&l.token);
                seen.push(l.token);
                fresh
                    && bytes_ok(l)
                    && l.logprob >= kth - tolerance
                    && value_of(l.token).is_some_and(|v| close(l.logprob, v))
            });
        !(chosen_ok && top_ok)
    })
}

/// Sampling parameters from the request's integers.
pub fn sampling(params: &JobParams) -> SamplingParams {
    SamplingParams {
        temperature: params.temperature_milli as f32 / 1000.0,
        top_p: if params.top_p_milli == 0 {
            1.0
        } else {
            params.top_p_milli as f32 / 1000.0
        },
        top_k: params.top_k,
        seed: params.seed,
        presence_penalty: params.presence_penalty_milli as f32 / 1000.0,
        frequency_penalty: params.frequency_penalty_milli as f32 / 1000.0,
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Backend for InferBackend {
    fn serves(&self, model: &Hash) -> bool {
        self.chat.contains_key(model)
            || self.embed.contains_key(model)
            || self.auditor.as_ref() == Some(model)
            || self.engines.contains_key(model)
            || self.provable.contains_key(model)
    }

    fn provable(&self, model: &Hash) -> bool {
        self.provable.contains_key(model)
    }

    fn prove(
        &self,
        model: &Hash,
        input: &JobInput,
        context: &agora_zk::Context,
    ) -> Result<Served, Error> {
        let key = self
            .provable
            .get(model)
            .ok_or(Error::UnknownModel(*model))?;
        let (values, salt, threshold) = Self::zk_input(key, input)?;
        let _one_at_a_time = self.proving.lock().unwrap_or_else(|e| e.into_inner());
        let (statement, proof) =
            key.prove(values, salt, threshold, false, context)
                .map_err(|e| match e {
                    agora_zk::Error::Input(why) => Error::BadInput(why.to_string()),
                    other => Error::Refused {
                        status: 500,
                        code: "prover_failed",
                        message: other.to_string(),
                    },
                })?;
        let arch = &key.verifying_key().arch;
        use base64::Engine as _;
        Ok(Served {
            input_tokens: count(arch.inputs()),
            output_tokens: count(arch.outputs()),
            output: JobOutput::Zk {
                claim: agora_types::ZkClaim {
                    model: *model,
                    input_commitment: agora_types::commitment_hash(&statement.input_commitment),
                    threshold: statement.t,
                    below: statement.below,
                    outputs: statement.outputs,
                },
                proof: base64::engine::general_purpose::STANDARD.encode(proof),
            },
        })
    }

    fn input_tokens(&self, model: &Hash, input: &JobInput) -> Result<u32, Error> {
        if let Some(m) = self.chat.get(model) {
            let prompt = Self::chat_prompt(m, input)?;
            m.check_prompt(&prompt)?;
            return Ok(count(prompt.len()));
        }
        if let Some(m) = self.embed.get(model) {
            let ids = m.tokenize(&Self::texts(input)?)?;
            return Ok(count(ids.iter().map(Vec::len).sum()));
        }
        if self.auditor.as_ref() == Some(model) {
            return Ok(Self::audit_tokens(Self::audit_files(input)?));
        }
        if let Some(e) = self.engines.get(model) {
            return e.input_tokens(model, input);
        }
        if let Some(key) = self.provable.get(model) {
            Self::zk_input(key, input)?;
            return Ok(count(key.verifying_key().arch.inputs()));
        }
        Err(Error::UnknownModel(*model))
    }

    fn run(
        &self,
        model: &Hash,
        input: &JobInput,
        params: &JobParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Served, Error> {
        self.run_for(&[], model, input, params, on_text)
    }

    fn run_for(
        &self,
        client: &[u8],
        model: &Hash,
        input: &JobInput,
        params: &JobParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Served, Error> {
        if let Some(m) = self.chat.get(model) {
            let prompt = Self::chat_prompt(m, input)?;
            let top = logprobs_top(params)?;
            if let Some(top) = top {
                // Refused before any work when the log-probabilities alone could outgrow what
                // a check can carry (the job could not be claimed after it ran).
                let positions = params.max_tokens as usize
                    + if params.prompt_logprobs {
                        prompt.len()
                    } else {
                        0
                    };
                let worst = positions
                    .saturating_mul(crate::input::logprob_bytes_bound(top, m.longest_token()));
                let budget = crate::provider::REVEAL_CAPACITY / 2;
                if worst > budget {
                    return Err(Error::Refused {
                        status: 413,
                        code: "too_large_to_verify",
                        message: format!(
                            "log-probabilities for up to {positions} positions with {top} alternatives \
                             may take {worst} bytes, more than the {budget} a check can carry: ask \
                             for fewer tokens or alternatives"
                        ),
                    });
                }
            }
            let constraint = self.constraint(model, m, input)?;
            let prompt_logprobs = match (top, params.prompt_logprobs) {
                (Some(top), true) => m.prompt_logprobs(&prompt, top)?,
                _ => Vec::new(),
            };
            let generation = m.generate_until(
                client,
                &prompt,
                &GenParams {
                    max_tokens: params.max_tokens,
                    sampling: sampling(params),
                    logprobs: params.logprobs,
                },
                &params.stop,
                constraint.map(|c| Box::new(c) as Box<dyn TokenConstraint>),
                &mut |piece| on_text(piece.text),
            )?;
            let finish = match generation.finish {
                Finish::Stop => "stop",
                Finish::Length => "length",
                Finish::Cancelled => "cancelled",
            };
            return Ok(Served {
                input_tokens: count(prompt.len()),
                output_tokens: count(generation.tokens.len()),
                output: JobOutput::Text {
                    text: generation.text,
                    tokens: generation.tokens,
                    finish: finish.into(),
                    logprobs: top.map(|_| TextLogprobs {
                        prompt_first: params.prompt_logprobs.then(|| first_token(m, &prompt)),
                        prompt: with_bytes(m, &prompt_logprobs),
                        output: with_bytes(m, &generation.logprobs),
                    }),
                },
            });
        }
        if let Some(m) = self.embed.get(model) {
            let texts = Self::texts(input)?;
            let tokens: usize = m.tokenize(&texts)?.iter().map(Vec::len).sum();
            let vectors = m.embed(&texts)?;
            return Ok(Served {
                input_tokens: count(tokens),
                output_tokens: 0,
                output: JobOutput::Embeddings { vectors },
            });
        }
        if self.auditor.as_ref() == Some(model) {
            let files = Self::audit_files(input)?;
            return Ok(Served {
                input_tokens: Self::audit_tokens(files),
                output_tokens: 0,
                output: Self::audit(files),
            });
        }
        if let Some(e) = self.engines.get(model) {
            return e.run_for(client, model, input, params, on_text);
        }
        if self.provable.contains_key(model) {
            return Err(Error::BadInput(
                "a provable model's jobs are proved: ask with verification \"zk\"".into(),
            ));
        }
        Err(Error::UnknownModel(*model))
    }

    fn judge(
        &self,
        model: &Hash,
        input: &JobInput,
        params: &JobParams,
        output: &JobOutput,
        counts: (u32, u32),
        tolerance: f32,
    ) -> Result<Verdict, Error> {
        if let Some(m) = self.chat.get(model) {
            // A grammar that does not compile: an honest provider refuses the job.
            let Ok(constraint) = self.constraint(model, m, input) else {
                return Ok(fail(Fault::WrongKind));
            };
            return Ok(judge_text(
                m,
                (input, constraint),
                params,
                output,
                counts,
                tolerance,
            ));
        }
        if let Some(m) = self.embed.get(model) {
            let Ok(texts) = Self::texts(input) else {
                return Ok(fail(Fault::WrongKind));
            };
            let JobOutput::Embeddings { vectors } = output else {
                return Ok(fail(Fault::WrongKind));
            };
            let Ok(ids) = m.tokenize(&texts) else {
                return Ok(fail(Fault::WrongKind));
            };
            if counts != (count(ids.iter().map(Vec::len).sum()), 0) {
                return Ok(fail(Fault::WrongCount));
            }
            let expected = m.embed(&texts)?;
            let close = |a: &[f32], b: &[f32]| {
                let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
                let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
                a.len() == b.len() && dot >= EMBEDDING_MIN_COSINE * na * nb && nb > 0.0
            };
            let ok = vectors.len() == expected.len()
                && vectors.iter().zip(&expected).all(|(v, e)| close(v, e));
            return Ok(if ok {
                Verdict::Pass
            } else {
                fail(Fault::WrongEmbedding)
            });
        }
        if self.auditor.as_ref() == Some(model) {
            let Ok(files) = Self::audit_files(input) else {
                return Ok(fail(Fault::WrongKind));
            };
            if !matches!(output, JobOutput::Audit { .. }) {
                return Ok(fail(Fault::WrongKind));
            }
            if counts != (Self::audit_tokens(files), 0) {
                return Ok(fail(Fault::WrongCount));
            }
            // The auditor is deterministic: the report must be exactly its own.
            return Ok(if *output == Self::audit(files) {
                Verdict::Pass
            } else {
                fail(Fault::WrongReport)
            });
        }
        if let Some(e) = self.engines.get(model) {
            return e.judge(model, input, params, output, counts, tolerance);
        }
        Err(Error::UnknownModel(*model))
    }
}

/// A text output against the chat model: counts, text, every token teacher-forced, the finish.
fn judge_text(
    m: &ChatModel,
    (input, mut constraint): (&JobInput, Option<Constraint>),
    params: &JobParams,
    output: &JobOutput,
    counts: (u32, u32),
    tolerance: f32,
) -> Verdict {
    let Ok(prompt) = InferBackend::chat_prompt(m, input) else {
        return fail(Fault::WrongKind);
    };
    let JobOutput::Text {
        text,
        tokens,
        finish,
        logprobs,
    } = output
    else {
        return fail(Fault::WrongKind);
    };
    let Ok(top) = logprobs_top(params) else {
        return fail(Fault::WrongKind);
    };
    let lp_fault = |position: usize, prompt: bool| {
        fail(Fault::WrongLogprobs {
            position: count(position),
            prompt,
        })
    };
    if top.is_some() != logprobs.is_some() {
        return lp_fault(0, false);
    }
    if counts != (count(prompt.len()), count(tokens.len())) {
        return fail(Fault::WrongCount);
    }
    if tokens.len() > params.max_tokens as usize {
        return fail(Fault::WrongStop);
    }
    let vocab = m.llama.config.vocab;
    if let Some(p) = tokens.iter().position(|&t| t as usize >= vocab) {
        return fail(Fault::WrongToken { position: count(p) });
    }
    // Generation ends at the first stop token.
    let stops = m.stop_tokens();
    if let Some(p) = tokens.iter().position(|t| stops.contains(t))
        && p + 1 != tokens.len()
    {
        return fail(Fault::WrongStop);
    }
    // A stop text ends the answer at the token that completes it, the text before it.
    let hit = m.stop_at(tokens, &params.stop);
    if let Some((i, _)) = &hit
        && (i + 1 != tokens.len() || finish != "stop")
    {
        return fail(Fault::WrongStop);
    }
    let expected = match &hit {
        Some((_, before)) => before.clone(),
        None => m.text_of(tokens),
    };
    if *text != expected {
        return fail(Fault::WrongText);
    }
    if !tokens.is_empty() {
        let wider = top.map(|k| k + LOGPROBS_SLACK);
        let constraint = constraint.as_mut().map(|c| c as &mut dyn TokenConstraint);
        match m.score_with(
            &prompt,
            tokens,
            &sampling(params),
            tolerance,
            wider,
            constraint,
        ) {
            Ok(score) => {
                if let Some(p) = score.first_failure {
                    return fail(Fault::WrongToken { position: count(p) });
                }
                if let (Some(top), Some(claimed)) = (top, logprobs)
                    && let Some(p) = logprobs_differ(m, &claimed.output, &score.logprobs, top)
                {
                    return lp_fault(p, false);
                }
            }
            // Past the context: the model could not have produced it.
            Err(_) => return fail(Fault::WrongStop),
        }
    }
    if let (Some(top), Some(claimed)) = (top, logprobs) {
        if tokens.is_empty() && !claimed.output.is_empty() {
            return lp_fault(0, false);
        }
        let expected = if params.prompt_logprobs {
            match m.prompt_logprobs(&prompt, top + LOGPROBS_SLACK) {
                Ok(e) => e,
                Err(_) => return lp_fault(0, true),
            }
        } else {
            Vec::new()
        };
        if let Some(p) = logprobs_differ(m, &claimed.prompt, &expected, top) {
            return lp_fault(p + 1, true);
        }
        let first = params.prompt_logprobs.then(|| first_token(m, &prompt));
        if claimed.prompt_first != first {
            return lp_fault(0, true);
        }
    }
    let ended_on_stop = tokens.last().is_some_and(|t| stops.contains(t));
    // A grammar past its work limit after the answer's tokens cuts it there, as a length does.
    // (The constraint has taken every token above; with none, its first mask is the one.)
    let mut grammar_exhausted = || {
        constraint
            .as_mut()
            .is_some_and(|c| !c.mask().is_ok_and(|m| !m.is_empty()))
    };
    let at_limit = tokens.len() == params.max_tokens as usize
        || prompt.len() + tokens.len() >= m.context()
        || (finish == "length" && grammar_exhausted());
    let finish_holds = match finish.as_str() {
        "stop" => ended_on_stop || hit.is_some(),
        "length" => !ended_on_stop && at_limit,
        // The client went away: what was delivered is checked above, token by token.
        "cancelled" => !ended_on_stop,
        _ => false,
    };
    if finish_holds {
        Verdict::Pass
    } else {
        fail(Fault::WrongStop)
    }
}
