//! Chat and text generation on a llama GGUF: the model's chat template, streaming generation with
//! stop tokens and a token budget, and teacher-forced scoring of a claimed answer.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::batch::{BatchConfig, Batcher, Event, Job};
use crate::gguf::Gguf;
use crate::llama::{KvCache, Llama};
use crate::sample::{self, SamplingParams, TokenConstraint, TokenLogprobs, TokenMask};
use crate::tokenizer::{BpeTokenizer, TextStream};

/// Positions a session may hold unless told otherwise: bounds the KV cache to ~47 MB for SmolLM2.
pub const DEFAULT_CONTEXT: usize = 2048;
/// Answer tokens scored per forward pass, which bounds the logits held at once (25 MB for SmolLM2).
const SCORE_CHUNK: usize = 128;
/// Most bytes of keys and values kept for reuse by later requests (~2,000 positions of SmolLM2).
const PREFIX_BYTES: usize = 48 << 20;
/// Shortest common prefix worth reusing (reuse copies it).
const MIN_PREFIX: usize = 4;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GenParams {
    pub max_tokens: u32,
    #[serde(flatten)]
    pub sampling: SamplingParams,
    /// Log-probabilities of each output token and of the `k` most likely at its position.
    #[serde(default)]
    pub logprobs: Option<u8>,
}

impl Default for GenParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            sampling: SamplingParams::default(),
            logprobs: None,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Finish {
    /// The model emitted a stop token (included in `tokens`).
    Stop,
    /// `max_tokens` or the context was reached, or the answer's constraint could not go on (a
    /// grammar past its work limit: [`crate::sample::TokenConstraint::mask`] failed).
    Length,
    /// The caller stopped the stream.
    Cancelled,
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    pub prompt_tokens: usize,
    /// Output tokens, the stop token included when `finish` is `Stop`.
    pub tokens: Vec<u32>,
    /// Output text, without the stop token.
    pub text: String,
    pub finish: Finish,
    /// Prompt tokens whose keys and values came from an earlier request (not run again).
    pub cached_tokens: usize,
    pub prompt_time: Duration,
    pub generate_time: Duration,
    /// With [`GenParams::logprobs`]: one per output token.
    pub logprobs: Vec<TokenLogprobs>,
}

/// A streamed piece of output.
#[derive(Debug, Clone, Copy)]
pub struct Piece<'a> {
    pub token: u32,
    /// Text completed by this token (may be empty while a character is split across tokens).
    pub text: &'a str,
}

/// The verdict on one claimed output token.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TokenCheck {
    pub claimed: u32,
    /// The model's choice at this position (greedy: the top logit; sampled: the seeded sampler's).
    pub expected: u32,
    /// Best logit minus the claimed token's logit (0 when the claimed token is the top one).
    pub margin: f32,
    pub ok: bool,
}

/// The result of teacher-forced scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub checks: Vec<TokenCheck>,
    /// Index of the first failed position, if any.
    pub first_failure: Option<usize>,
    /// Largest margin over all positions.
    pub max_margin: f32,
    pub passed: bool,
    /// With [`ChatModel::score_with`]'s `logprobs`: one per claimed token.
    #[serde(default)]
    pub logprobs: Vec<TokenLogprobs>,
}

fn messages_value(messages: &[Message]) -> minijinja::Value {
    messages
        .iter()
        .map(|m| minijinja::context! { role => m.role.as_str(), content => m.content.as_str() })
        .collect()
}

/// Where the first of the `stop` texts starts in `text`, if any does, given that none appears in
/// its first `before` bytes: only the end, where the last token's text may have completed one, is
/// searched (each token's search is short, however long the answer).
fn first_stop(text: &str, stop: &[String], before: usize) -> Option<usize> {
    let longest = stop.iter().map(String::len).max()?;
    let mut from = before
        .saturating_sub(longest.saturating_sub(1))
        .min(text.len());
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    stop.iter()
        .filter_map(|s| text[from..].find(s.as_str()).map(|i| from + i))
        .min()
}

/// Bytes at the end of `text` that begin one of the `stop` texts (whole characters): held back
/// from the stream, since the next token may complete the stop text.
fn held_back(text: &str, stop: &[String]) -> usize {
    stop.iter()
        .filter_map(|s| {
            (1..s.len().min(text.len() + 1)).rev().find(|&k| {
                let at = text.len() - k;
                text.is_char_boundary(at) && s.as_bytes().starts_with(&text.as_bytes()[at..])
            })
        })
        .max()
        .unwrap_or(0)
}

/// A chat model: weights, tokenizer and template, loaded once and shared by many requests, which
/// it generates for together ([`crate::batch`]).
#[derive(Debug)]
pub struct ChatModel {
    pub llama: Arc<Llama>,
    pub tokenizer: BpeTokenizer,
    template: Option<String>,
    stop: Vec<u32>,
    context: usize,
    prefixes: Arc<Mutex<Prefixes>>,
    batching: BatchConfig,
    /// Started by the first generation.
    batcher: OnceLock<Result<Batcher, String>>,
    /// One prompt's log-probabilities at a time: each holds a whole prompt's keys and values and
    /// a chunk of logits outside the batch's budget.
    prompt_scoring: Mutex<()>,
    /// Bytes of the longest token.
    longest_token: usize,
}

/// Token sequences recently run, with their keys and values, least recently used first. A request
/// that starts with the same tokens (the system prompt every chat shares, a conversation's earlier
/// turns) skips them. Reuse gives the same bits as running them again: a position's keys and values
/// do not depend on how the positions were batched.
///
/// Each entry belongs to a scope (a client, for a provider), and only requests of the same scope
/// reuse it: otherwise the time to the first token would tell one client whether another had sent a
/// prompt that starts the same way.
#[derive(Debug, Default)]
pub(crate) struct Prefixes {
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    scope: Vec<u8>,
    tokens: Vec<u32>,
    cache: KvCache,
}

impl Prefixes {
    /// A cache holding the longest prefix of `seq` kept in `scope`, at most `most` tokens long, and
    /// its length (an empty cache and 0 when none is worth reusing).
    pub(crate) fn reuse(
        &mut self,
        llama: &Llama,
        scope: &[u8],
        seq: &[u32],
        most: usize,
    ) -> (KvCache, usize) {
        let best = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.scope == scope)
            .map(|(i, e)| {
                let common = e.tokens.iter().zip(seq).take_while(|(a, b)| a == b).count();
                (common.min(most).min(e.cache.len()), i)
            })
            .max();
        match best {
            Some((n, i)) if n >= MIN_PREFIX => {
                let entry = self.entries.remove(i);
                let cache = entry.cache.prefix(n);
                self.entries.push(entry);
                (cache, n)
            }
            _ => (llama.new_cache(), 0),
        }
    }

    /// Keeps `cache`, which holds the keys and values of `tokens`, for later requests of `scope`,
    /// dropping the least recently used beyond [`PREFIX_BYTES`].
    pub(crate) fn keep(&mut self, scope: &[u8], tokens: Vec<u32>, cache: KvCache) {
        if tokens.len() != cache.len() || tokens.len() < MIN_PREFIX || cache.bytes() > PREFIX_BYTES
        {
            return;
        }
        let mine = |e: &Entry| e.scope == scope;
        if let Some(i) = self
            .entries
            .iter()
            .position(|e| mine(e) && e.tokens.starts_with(&tokens))
        {
            // Already held, within a longer sequence.
            let entry = self.entries.remove(i);
            self.entries.push(entry);
            return;
        }
        // Entries this one extends are no longer needed.
        self.entries
            .retain(|e| !(mine(e) && tokens.starts_with(&e.tokens)));
        self.entries.push(Entry {
            scope: scope.to_vec(),
            tokens,
            cache,
        });
        let mut bytes: usize = self.entries.iter().map(|e| e.cache.bytes()).sum();
        while bytes > PREFIX_BYTES {
            let dropped = self.entries.remove(0);
            bytes -= dropped.cache.bytes();
        }
    }
}

impl ChatModel {
    /// Loads a GGUF chat model with `threads` compute threads and the default context bound.
    pub fn load(path: &Path, threads: usize) -> Result<Self, Error> {
        let g = Gguf::open(path)?;
        let tokenizer = BpeTokenizer::from_gguf(&g)?;
        let template = g
            .metadata
            .get("tokenizer.chat_template")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        drop(g);
        let llama = Arc::new(Llama::load(path, threads)?);
        if tokenizer.vocab_size() != llama.config.vocab {
            return Err(Error::BadModel(format!(
                "the tokenizer has {} tokens, the model {}",
                tokenizer.vocab_size(),
                llama.config.vocab
            )));
        }
        let mut stop: Vec<u32> = tokenizer.eos.into_iter().collect();
        for t in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>"] {
            if let Some(id) = tokenizer.token_id(t) {
                stop.push(id);
            }
        }
        stop.sort_unstable();
        stop.dedup();
        let context = llama.config.context.min(DEFAULT_CONTEXT);
        let longest_token = (0..tokenizer.vocab_size() as u32)
            .map(|t| tokenizer.token_bytes(t).len())
            .max()
            .unwrap_or(0);
        Ok(Self {
            llama,
            tokenizer,
            template,
            stop,
            context,
            prefixes: Arc::default(),
            batching: BatchConfig::default(),
            batcher: OnceLock::new(),
            prompt_scoring: Mutex::new(()),
            longest_token,
        })
    }

    /// Drops every kept prefix (see [`Self::generate`]): the next request runs its whole prompt.
    pub fn clear_prefixes(&self) {
        self.prefixes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .clear();
    }

    /// Keeps only the first `layers` transformer blocks ([`Llama::keep_layers`]); before the first
    /// generation only.
    pub fn keep_layers(&mut self, layers: usize) -> Result<(), Error> {
        Arc::get_mut(&mut self.llama)
            .ok_or_else(|| {
                Error::Runtime("the model is in use: cut its layers before serving".into())
            })?
            .keep_layers(layers);
        Ok(())
    }

    /// Sets how much the batch of concurrent generations may hold; before the first generation
    /// only (later it changes nothing).
    pub fn set_batching(&mut self, config: BatchConfig) {
        self.batching = config;
    }

    /// What the batch of concurrent generations has done (all zero before the first).
    pub fn batch_stats(&self) -> crate::batch::BatchStats {
        match self.batcher.get() {
            Some(Ok(b)) => *b.stats.lock().unwrap_or_else(|e| e.into_inner()),
            _ => Default::default(),
        }
    }

    fn batcher(&self) -> Result<&Batcher, Error> {
        self.batcher
            .get_or_init(|| {
                Batcher::start(
                    self.llama.clone(),
                    self.prefixes.clone(),
                    self.stop.clone(),
                    self.batching,
                )
                .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| Error::Runtime(e.clone()))
    }

    /// Sets how many positions (prompt + answer) a request may use, up to the model's own context.
    pub fn set_context(&mut self, positions: usize) {
        self.context = positions.clamp(1, self.llama.config.context);
    }

    pub fn context(&self) -> usize {
        self.context
    }

    /// Bytes of the model's longest token.
    pub fn longest_token(&self) -> usize {
        self.longest_token
    }

    pub fn stop_tokens(&self) -> &[u32] {
        &self.stop
    }

    /// The prompt text for `messages` under the model's chat template, ready for the assistant's turn.
    pub fn render(&self, messages: &[Message]) -> Result<String, Error> {
        if messages.is_empty() {
            return Err(Error::BadRequest(
                "a chat needs at least one message".into(),
            ));
        }
        match &self.template {
            Some(source) => {
                let mut env = minijinja::Environment::new();
                env.add_template("chat", source).map_err(|e| {
                    Error::BadModel(format!("the chat template does not parse: {e}"))
                })?;
                let tmpl = env
                    .get_template("chat")
                    .map_err(|e| Error::BadModel(e.to_string()))?;
                tmpl.render(minijinja::context! { messages => messages_value(messages), add_generation_prompt => true })
                    .map_err(|e| Error::BadRequest(format!("the chat template failed: {e}")))
            }
            // ChatML, the format of models that ship no template.
            None => {
                let mut out = String::new();
                for m in messages {
                    out.push_str(&format!(
                        "<|im_start|>{}\n{}<|im_end|>\n",
                        m.role, m.content
                    ));
                }
                out.push_str("<|im_start|>assistant\n");
                Ok(out)
            }
        }
    }

    /// Prompt tokens for a chat.
    pub fn encode_chat(&self, messages: &[Message]) -> Result<Vec<u32>, Error> {
        self.tokenizer.encode(&self.render(messages)?)
    }

    /// Refuses an empty prompt or one that leaves no room in the context for an answer.
    pub fn check_prompt(&self, prompt: &[u32]) -> Result<(), Error> {
        if prompt.is_empty() {
            return Err(Error::BadRequest("the prompt is empty".into()));
        }
        if prompt.len() >= self.context {
            return Err(Error::ContextOverflow {
                tokens: prompt.len() + 1,
                context: self.context,
            });
        }
        Ok(())
    }

    /// The text [`Self::generate`] gives for `tokens`: pieces decoded as they stream, the stop
    /// token (and anything after it) adding nothing.
    pub fn text_of(&self, tokens: &[u32]) -> String {
        let mut stream = TextStream::default();
        let mut text = String::new();
        for &t in tokens {
            if self.stop.contains(&t) {
                break;
            }
            text.push_str(&stream.push(self.tokenizer.token_bytes(t)));
        }
        text.push_str(&stream.finish());
        text
    }

    /// Generates after `prompt`, calling `on_piece` for every token; it may stop the stream. A prefix
    /// of the prompt kept from an earlier request is not run again ([`Generation::cached_tokens`]).
    pub fn generate(
        &self,
        prompt: &[u32],
        params: &GenParams,
        on_piece: &mut dyn FnMut(Piece<'_>) -> ControlFlow<()>,
    ) -> Result<Generation, Error> {
        self.generate_in(&[], prompt, params, on_piece)
    }

    /// [`Self::generate`] for a request of `scope` (a client): only prefixes kept for the same
    /// scope are reused.
    pub fn generate_in(
        &self,
        scope: &[u8],
        prompt: &[u32],
        params: &GenParams,
        on_piece: &mut dyn FnMut(Piece<'_>) -> ControlFlow<()>,
    ) -> Result<Generation, Error> {
        self.generate_until(scope, prompt, params, &[], None, on_piece)
    }

    /// [`Self::generate_in`], also ending the answer where the first of the `stop` texts appears
    /// ([`Self::stop_at`]): the text stops before it, the tokens with the one that completed it,
    /// and the finish is [`Finish::Stop`]. Text that could be the start of a stop text is held
    /// back from the stream until it is known not to be. With a `constraint`, each token is chosen
    /// among those it allows (constrained decoding).
    pub fn generate_until(
        &self,
        scope: &[u8],
        prompt: &[u32],
        params: &GenParams,
        stop: &[String],
        constraint: Option<Box<dyn TokenConstraint>>,
        on_piece: &mut dyn FnMut(Piece<'_>) -> ControlFlow<()>,
    ) -> Result<Generation, Error> {
        params.sampling.validate()?;
        self.check_prompt(prompt)?;
        // Checked here, not in the batch: a bad token would fail the pass it ran in, and so
        // every other sequence in it.
        let vocab = self.llama.config.vocab;
        if let Some(&t) = prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::BadRequest(format!(
                "token id {t} is outside the vocabulary ({vocab})"
            )));
        }
        let (events, received) = mpsc::channel();
        // Tells the batch to drop the sequence however this call ends (a stopped stream, a
        // panicking callback).
        struct CancelOnDrop(Arc<AtomicBool>);
        impl Drop for CancelOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
        self.batcher()?.submit(Job {
            scope: scope.to_vec(),
            prompt: prompt.to_vec(),
            params: *params,
            limit: self.context,
            events,
            cancel: cancel.0.clone(),
            constraint,
        })?;
        let mut start = Instant::now();
        let (mut cached, mut prompt_time) = (0, Duration::ZERO);
        let mut tokens = Vec::new();
        let mut logprobs = Vec::new();
        let mut text = String::new();
        // Bytes of `text` given to `on_piece` so far.
        let mut sent = 0;
        let mut stopped_by_text = false;
        let mut stream = TextStream::default();
        let finish = loop {
            let event = received
                .recv()
                .map_err(|_| Error::Runtime("the model's batch thread has stopped".into()))?;
            match event {
                Event::Started {
                    cached: c,
                    prompt_time: t,
                } => {
                    (cached, prompt_time) = (c, t);
                    start = Instant::now();
                }
                Event::Token(token, lp) => {
                    tokens.push(token);
                    logprobs.extend(lp);
                    if self.stop.contains(&token) {
                        continue;
                    }
                    let before = text.len();
                    text.push_str(&stream.push(self.tokenizer.token_bytes(token)));
                    let hit = first_stop(&text, stop, before);
                    let safe = hit.unwrap_or_else(|| text.len() - held_back(&text, stop));
                    let piece = &text[sent.min(safe)..safe];
                    let broke = on_piece(Piece { token, text: piece }).is_break();
                    sent = sent.max(safe);
                    if let Some(cut) = hit {
                        text.truncate(cut);
                        stopped_by_text = true;
                        break Finish::Stop;
                    }
                    if broke {
                        break Finish::Cancelled;
                    }
                }
                Event::Done(finish) => break finish,
                Event::Failed(e) => return Err(e),
            }
        };
        drop(cancel);
        if !stopped_by_text {
            // An unfinished character ends the answer; what was held back goes out with it.
            text.push_str(&stream.finish());
        }
        if sent < text.len() {
            let _ = on_piece(Piece {
                token: tokens.last().copied().unwrap_or(0),
                text: &text[sent..],
            });
        }
        Ok(Generation {
            prompt_tokens: prompt.len(),
            tokens,
            text,
            finish,
            cached_tokens: cached,
            prompt_time,
            generate_time: start.elapsed(),
            logprobs,
        })
    }

    /// Where the first of the `stop` texts appears in the answer `tokens` as it streams (each
    /// token's text added whole characters at a time, a stop token ending it): the index of the
    /// token that completes it and the answer's text before it. What
    /// [`Self::generate_until`] stops at, for a verifier to check.
    pub fn stop_at(&self, tokens: &[u32], stop: &[String]) -> Option<(usize, String)> {
        if stop.is_empty() {
            return None;
        }
        let mut stream = TextStream::default();
        let mut text = String::new();
        for (i, &t) in tokens.iter().enumerate() {
            if self.stop.contains(&t) {
                return None;
            }
            let before = text.len();
            text.push_str(&stream.push(self.tokenizer.token_bytes(t)));
            if let Some(cut) = first_stop(&text, stop, before) {
                text.truncate(cut);
                return Some((i, text));
            }
        }
        None
    }

    /// The log-probability of each prompt token after the ones before it (the first has none:
    /// `prompt.len() - 1` entries), with the `top` most likely at each position: what evaluation
    /// harnesses read to score a text. Runs the prompt on its own, in chunks.
    pub fn prompt_logprobs(&self, prompt: &[u32], top: usize) -> Result<Vec<TokenLogprobs>, Error> {
        self.check_prompt(prompt)?;
        let _one_at_a_time = self
            .prompt_scoring
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let vocab = self.llama.config.vocab;
        let mut cache = self.llama.new_cache();
        let mut logits = Vec::new();
        let mut out = Vec::with_capacity(prompt.len().saturating_sub(1));
        for (c, chunk) in prompt.chunks(SCORE_CHUNK).enumerate() {
            self.llama
                .forward_into(&mut cache, chunk, 0..chunk.len(), &mut logits)?;
            let start = c * SCORE_CHUNK;
            let rows: Vec<TokenLogprobs> = self.llama.install(|| {
                use rayon::prelude::*;
                (0..chunk.len())
                    .into_par_iter()
                    .filter(|r| start + r + 1 < prompt.len())
                    .map(|r| {
                        let row = &logits[r * vocab..(r + 1) * vocab];
                        sample::logprobs(row, prompt[start + r + 1], top)
                    })
                    .collect()
            });
            out.extend(rows);
        }
        Ok(out)
    }

    /// Teacher-forced scoring: runs `prompt` and the claimed `output` through the model in a few batched
    /// passes (less a prefix of the prompt kept from an earlier check) and checks every claimed
    /// token. Greedy: the claimed token's logit must be within `tolerance` of the best. Sampled: it
    /// must be the seeded sampler's choice.
    pub fn score(
        &self,
        prompt: &[u32],
        output: &[u32],
        params: &SamplingParams,
        tolerance: f32,
    ) -> Result<Score, Error> {
        self.score_with(prompt, output, params, tolerance, None, None)
    }

    /// [`Self::score`], also giving each claimed token's log-probabilities (and the `top` most
    /// likely tokens') when `logprobs` is `Some(top)`, and, with a `constraint`, checking each
    /// token among those it allows: a token it does not allow fails, and the greedy best and the
    /// seeded choice are taken among the allowed ones, as [`Self::generate_until`] takes them.
    pub fn score_with(
        &self,
        prompt: &[u32],
        output: &[u32],
        params: &SamplingParams,
        tolerance: f32,
        logprobs: Option<usize>,
        constraint: Option<&mut dyn TokenConstraint>,
    ) -> Result<Score, Error> {
        params.validate()?;
        self.check_prompt(prompt)?;
        if prompt.len() + output.len() > self.context + 1 {
            return Err(Error::ContextOverflow {
                tokens: prompt.len() + output.len(),
                context: self.context,
            });
        }
        let vocab = self.llama.config.vocab;
        if let Some(&t) = output.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::BadRequest(format!(
                "token id {t} is outside the vocabulary ({vocab})"
            )));
        }
        // The constraint's masks along the claimed answer, computed in order (each follows the
        // tokens before it). Where it cannot go on (an error, or a token it does not allow),
        // nothing is allowed: that position fails, as the generator could not have passed it.
        let masks: Option<Vec<TokenMask>> = constraint.map(|c| {
            let mut masks = Vec::with_capacity(output.len());
            let mut broken = false;
            for &t in output {
                let mut mask = if broken {
                    TokenMask::none(vocab)
                } else {
                    c.mask().unwrap_or_else(|_| TokenMask::none(vocab))
                };
                // A token the constraint will not take fails here, allowed by the mask or not.
                if !broken && (!mask.allows(t) || c.commit(t).is_err()) {
                    mask = TokenMask::none(vocab);
                    broken = true;
                }
                masks.push(mask);
            }
            masks
        });
        let mut checks = Vec::with_capacity(output.len());
        let mut lps = Vec::new();
        let mut counts = std::collections::BTreeMap::new();
        let mut penalized = Vec::new();
        let mut batch = Vec::new();
        // Logits before output token i come from the position of the prompt's last token (i = 0) or
        // of output[i-1]. The first pass takes the prompt and the first chunk of the answer together
        // (less a prefix of the prompt kept from an earlier request).
        let first = SCORE_CHUNK.min(output.len());
        let mut feed = Vec::with_capacity(prompt.len() + first);
        feed.extend_from_slice(prompt);
        feed.extend_from_slice(&output[..first.saturating_sub(1)]);
        let (mut cache, cached) = self
            .prefixes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reuse(&self.llama, &[], &feed, prompt.len() - 1);
        let at = prompt.len() - 1 - cached;
        let mut pending = self
            .llama
            .forward(&mut cache, &feed[cached..], at..at + first)?;
        let mut done = 0;
        while done < output.len() {
            let rows = pending.len() / vocab;
            // Each position is checked on its own (the sampler is seeded by position): in parallel.
            // Position `i`'s check on its logits (`raw`) and on them after the penalties
            // (`row`: the same unless the job has penalties).
            let check = |i: usize, row: &[f32], raw: &[f32]| {
                let claimed = output[i];
                let masked;
                let row = match &masks {
                    Some(masks) => {
                        let mut m = row.to_vec();
                        masks[i].apply(&mut m);
                        masked = m;
                        &masked[..]
                    }
                    None => row,
                };
                let best = sample::argmax(row);
                let margin = row[best as usize] - row[claimed as usize];
                let allowed = masks.as_ref().is_none_or(|m| m[i].allows(claimed));
                let (expected, ok) = if params.is_greedy() {
                    (best, allowed && margin <= tolerance)
                } else {
                    let choice = sample::sample(row, params, i as u64);
                    (choice, allowed && choice == claimed)
                };
                let lp = logprobs.map(|top| sample::logprobs(raw, claimed, top));
                (
                    TokenCheck {
                        claimed,
                        expected,
                        margin,
                        ok,
                    },
                    lp,
                )
            };
            if params.has_penalties() {
                // Each position's penalties depend on the answer before it: in order.
                for r in 0..rows {
                    let raw = &pending[r * vocab..(r + 1) * vocab];
                    penalized.clear();
                    penalized.extend_from_slice(raw);
                    params.penalize(&mut penalized, &counts);
                    batch.push(check(done + r, &penalized, raw));
                    *counts.entry(output[done + r]).or_default() += 1;
                }
            } else {
                self.llama.install(|| {
                    use rayon::prelude::*;
                    (0..rows)
                        .into_par_iter()
                        .map(|r| {
                            let row = &pending[r * vocab..(r + 1) * vocab];
                            check(done + r, row, row)
                        })
                        .collect_into_vec(&mut batch)
                });
            }
            for (check, lp) in batch.drain(..) {
                checks.push(check);
                lps.extend(lp);
            }
            done += rows;
            if done >= output.len() {
                break;
            }
            // Feed output[done-1 .. next-1] to get the logits before output[done .. next].
            let next = (done + SCORE_CHUNK).min(output.len());
            let feed = &output[done - 1..next - 1];
            self.llama
                .forward_into(&mut cache, feed, 0..feed.len(), &mut pending)?;
        }
        let fed = cache.len() - prompt.len();
        self.prefixes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keep(&[], [prompt, &output[..fed]].concat(), cache);
        let first_failure = checks.iter().position(|c| !c.ok);
        let max_margin = checks.iter().map(|c| c.margin).fold(0f32, f32::max);
        Ok(Score {
            passed: first_failure.is_none(),
            first_failure,
            max_margin,
            checks,
            logprobs: lps,
        })
    }
}

#[cfg(test)]
mod stop_tests {
    use super::*;

    /// Searching only the end finds what searching the whole text finds, as long as the text
    /// before `before` held no stop text: across the boundary, with several-byte characters.
    #[test]
    fn the_stop_search_of_the_end_finds_what_the_whole_search_finds() {
        let stop = vec!["é!".to_string(), "end of it".to_string()];
        let text = "déjà vu, the end of it";
        for before in 0..=text.len() {
            if !text.is_char_boundary(before) {
                continue;
            }
            let whole = stop.iter().filter_map(|s| text.find(s.as_str())).min();
            let expected = whole.filter(|&at| at + "end of it".len() > before);
            assert_eq!(first_stop(text, &stop, before), expected, "before {before}");
        }
        assert_eq!(first_stop("café!", &stop, 3), Some(3));
        assert_eq!(first_stop("anything", &[], 0), None);
        assert_eq!(held_back("the en", &stop), 2);
        assert_eq!(held_back("café", &stop), 2);
    }
}
