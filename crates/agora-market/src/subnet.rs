//! The model market's daemons (DESIGN.md §7): a chat subnet's validator, which scores the
//! subnet's miners through paid jobs and sets its weights by commit-reveal, and a forecast
//! subnet's miner.
//!
//! **Validator, each epoch window.** It reveals the weights it committed in the window before,
//! draws prompts from the published evaluation pool ([`EVAL_POOL`], agreed on by its content
//! hash) with the hash of the block that opened the window as the seed — so no miner knows them
//! before the window starts — asks every miner each prompt as a paid job on that miner alone
//! (greedy, receipted; unchecked, since the validator checks the answers itself), scores the
//! answers against the pool's references (exact match of the expected word for closed
//! questions, MiniLM similarity for open ones), with latency and price as secondary terms, and
//! commits to the scores as weights.
//!
//! **Forecast miner.** Commits in each window to its prediction of the next window's fees and
//! reveals it in that window; the chain scores it.

use crate::gateway::Listed;
use crate::{Chain, ChatMessage, Error, Gateway, JobInput, JobOutput, ProviderListing};
use agora_infer::bert::Embedder;
use agora_types::{
    Address, Amount, Hash, JobParams, Keypair, Message, ModelKind, Transaction, Verification,
};
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The chat evaluation pool, embedded.
pub const EVAL_POOL: &str = include_str!("../data/chat-eval.json");

/// The pool's content hash: what validators and miners agree on.
pub fn eval_pool_hash() -> Hash {
    Hash::digest(EVAL_POOL.as_bytes())
}

/// One question of the pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalItem {
    /// The prompt.
    pub q: String,
    /// The reference answer (for a closed question, the word expected).
    pub a: String,
    /// Closed question: scored by exact match of `a`.
    #[serde(default)]
    pub exact: bool,
}

#[derive(Deserialize)]
struct Pool {
    items: Vec<EvalItem>,
}

/// The pool's questions.
pub fn eval_pool() -> Result<Vec<EvalItem>, Error> {
    let pool: Pool = serde_json::from_str(EVAL_POOL).map_err(|e| Error::Malformed {
        what: "evaluation pool",
        reason: e.to_string(),
    })?;
    Ok(pool.items)
}

/// `k` distinct indices below `n`, drawn from `seed`.
pub fn draw(seed: &Hash, n: usize, k: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut i = 0u64;
    while out.len() < k.min(n) {
        let mut bytes = seed.0.to_vec();
        bytes.extend_from_slice(&i.to_le_bytes());
        let h = Hash::digest(&bytes);
        let x = u64::from_le_bytes(h.0[..8].try_into().expect("8 bytes")) as usize % n;
        if !out.contains(&x) {
            out.push(x);
        }
        i += 1;
    }
    out
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// A closed question's score: 1 when the answer says the expected word (or words), else 0.
pub fn exact_score(answer: &str, expected: &str) -> f32 {
    let (answer, expected) = (words(answer), words(expected));
    if expected.is_empty() {
        return 0.0;
    }
    let hit = answer
        .windows(expected.len())
        .any(|w| w == expected.as_slice());
    if hit { 1.0 } else { 0.0 }
}

/// Cosine similarity of two vectors, never below 0.
pub fn similarity(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    (dot / (na * nb)).max(0.0)
}

/// How the validator weighs quality, speed and price: a miner's score is its quality times
/// `QUALITY + SPEED × speed + PRICE × cheapness` (each of those in `[0, 1]`, relative to the best).
const QUALITY: f32 = 0.8;
const SPEED: f32 = 0.1;
const PRICE: f32 = 0.1;

/// One miner's result in a round.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MinerScore {
    /// Its UID.
    pub uid: u16,
    /// Its hotkey (a provider).
    pub hotkey: Address,
    /// Mean answer quality in `[0, 1]`.
    pub quality: f32,
    /// Mean latency of its answers, in milliseconds.
    pub latency_ms: f32,
    /// Its output price per 1,000 tokens.
    pub price: Amount,
    /// The combined score (0 without quality).
    pub score: f32,
    /// Prompts it answered.
    pub answered: usize,
}

/// What a round did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RoundReport {
    /// The subnet's epoch count the round scored in.
    pub epoch: u64,
    /// The pool's indices drawn.
    pub prompts: Vec<usize>,
    /// Each miner's result.
    pub miners: Vec<MinerScore>,
}

impl RoundReport {
    /// The scores as weights: `(uids, weights)`, the best `u16::MAX`, zero scores left out.
    pub fn weights(&self) -> (Vec<u16>, Vec<u16>) {
        let best = self.miners.iter().map(|m| m.score).fold(0.0f32, f32::max);
        if best <= 0.0 {
            return (Vec::new(), Vec::new());
        }
        self.miners
            .iter()
            .filter(|m| m.score > 0.0)
            .map(|m| {
                let w = (m.score / best * f32::from(u16::MAX)).round() as u16;
                (m.uid, w.max(1))
            })
            .unzip()
    }
}

/// A commitment this daemon made and must reveal: what the chain cannot tell it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Committed {
    commitment: Hash,
    uids: Vec<u16>,
    weights: Vec<u16>,
    salt: Hash,
}

/// Signs and submits transactions for one key, keeping its own next nonce so two in a row do
/// not collide.
struct Sender {
    chain: Arc<dyn Chain>,
    key: Keypair,
    fee_per_unit: Amount,
    next_nonce: Mutex<u64>,
}

impl Sender {
    /// A sender for `key`, paying `fee_per_unit` (the chain's minimum fee) per unit of work.
    fn new(chain: Arc<dyn Chain>, key: Keypair, fee_per_unit: Amount) -> Self {
        Sender {
            chain,
            key,
            fee_per_unit,
            next_nonce: Mutex::new(0),
        }
    }

    fn submit(&self, messages: Vec<Message>) -> Result<Hash, Error> {
        let on_chain = self.chain.nonce(&self.key.address())?;
        let nonce = {
            let mut next = self.next_nonce.lock().unwrap_or_else(|e| e.into_inner());
            let n = (*next).max(on_chain);
            *next = n + 1;
            n
        };
        let tx = Transaction {
            chain_id: self.chain.chain_id()?,
            sender: self.key.public(),
            nonce,
            fee: self
                .fee_per_unit
                .saturating_mul(Amount::from(agora_types::work_units(&messages))),
            messages,
        }
        .sign(&self.key);
        let sent = self.chain.submit(&tx);
        if sent.is_err() {
            *self.next_nonce.lock().unwrap_or_else(|e| e.into_inner()) = on_chain;
        }
        Ok(sent?)
    }
}

fn random_salt() -> Hash {
    let mut salt = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut salt);
    Hash(salt)
}

/// A chat subnet's validator (see the module's documentation).
pub struct ChatValidator {
    chain: Arc<dyn Chain>,
    gateway: Arc<Gateway>,
    sender: Sender,
    netuid: u16,
    embedder: Option<Arc<Embedder>>,
    /// Prompts per round.
    pub prompts: usize,
    /// Most output tokens per answer.
    pub max_tokens: u32,
    /// Where its commitment is kept across restarts.
    state_file: Option<PathBuf>,
    state: Mutex<ValidatorState>,
}

impl std::fmt::Debug for ChatValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatValidator")
            .field("netuid", &self.netuid)
            .field("hotkey", &self.sender.key.address())
            .finish()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ValidatorState {
    committed: Option<Committed>,
    scored_epoch: Option<u64>,
}

impl ChatValidator {
    /// A validator of subnet `netuid` signing with `key` (its hotkey, which must be registered
    /// on the subnet and hold escrow to pay for its jobs), paying `fee_per_unit` (the chain's
    /// minimum fee) per unit of work. Without `embedder`, open questions score by shared words
    /// instead of MiniLM similarity.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        chain: Arc<dyn Chain>,
        gateway: Arc<Gateway>,
        key: Keypair,
        netuid: u16,
        embedder: Option<Arc<Embedder>>,
        state_file: Option<PathBuf>,
        fee_per_unit: Amount,
    ) -> Self {
        let state = state_file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        ChatValidator {
            sender: Sender::new(chain.clone(), key, fee_per_unit),
            chain,
            gateway,
            netuid,
            embedder,
            prompts: 4,
            max_tokens: 24,
            state_file,
            state: Mutex::new(state),
        }
    }

    /// The validator's hotkey.
    pub fn address(&self) -> Address {
        self.sender.key.address()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ValidatorState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self) -> Result<(), Error> {
        let Some(file) = &self.state_file else {
            return Ok(());
        };
        let bytes = serde_json::to_vec(&*self.state()).map_err(|e| Error::Malformed {
            what: "validator state",
            reason: e.to_string(),
        })?;
        agora_types::durable::write(file, &bytes, agora_types::durable::Access::Private).map_err(
            |source| Error::Io {
                what: format!("keeping the validator's commitment in {}", file.display()),
                source,
            },
        )
    }

    /// One look at the chain: reveals a commitment whose window has come, and once per epoch
    /// window scores the miners and commits. Returns the round's report when it scored.
    pub fn step(&self) -> Result<Option<RoundReport>, Error> {
        let Some(subnet) = self.chain.subnet(self.netuid)? else {
            return Err(Error::Refused {
                status: 404,
                code: "unknown_subnet",
                message: format!("no subnet {}", self.netuid),
            });
        };
        let epochs = subnet.subnet.epochs;
        let me = self.address();
        // Reveal what is due now.
        let on_chain = subnet.commits.iter().find(|c| c.hotkey == me).cloned();
        let committed = self.state().committed.clone();
        match (&on_chain, &committed) {
            (Some(c), Some(k)) if c.commitment == k.commitment && c.reveal_epoch == epochs => {
                self.sender.submit(vec![Message::RevealWeights {
                    netuid: self.netuid,
                    uids: k.uids.clone(),
                    weights: k.weights.clone(),
                    salt: k.salt,
                }])?;
                self.state().committed = None;
                self.save()?;
                tracing::info!(netuid = self.netuid, epoch = epochs, "weights revealed");
            }
            // Gone from the chain (revealed, or expired): forget it.
            (None, Some(_)) => {
                self.state().committed = None;
                self.save()?;
            }
            _ => {}
        }
        if self.state().scored_epoch == Some(epochs) {
            return Ok(None);
        }
        // A commitment still waiting (made this window) blocks a new one until it is revealed.
        if on_chain.is_some_and(|c| c.reveal_epoch > epochs) {
            self.state().scored_epoch = Some(epochs);
            return Ok(None);
        }
        let seed = self
            .chain
            .block_hash(subnet.subnet.last_epoch)?
            .unwrap_or_else(|| Hash::digest(&subnet.subnet.last_epoch.to_le_bytes()));
        let report = self.score(epochs, &seed)?;
        let (uids, weights) = report.weights();
        if !uids.is_empty() {
            let salt = random_salt();
            let commitment =
                agora_types::weights_commitment(self.netuid, &me, &uids, &weights, &salt);
            self.state().committed = Some(Committed {
                commitment,
                uids,
                weights,
                salt,
            });
            // Kept before it is sent: a crash after sending must still be able to reveal.
            self.save()?;
            self.sender.submit(vec![Message::CommitWeights {
                netuid: self.netuid,
                commitment,
            }])?;
        }
        self.state().scored_epoch = Some(epochs);
        self.save()?;
        Ok(Some(report))
    }

    /// Asks every miner the prompts drawn from `seed` and scores the answers.
    pub fn score(&self, epoch: u64, seed: &Hash) -> Result<RoundReport, Error> {
        let pool = eval_pool()?;
        let prompts = draw(seed, pool.len(), self.prompts);
        let graph = self
            .chain
            .metagraph(self.netuid)?
            .ok_or_else(|| Error::Refused {
                status: 404,
                code: "unknown_subnet",
                message: format!("no subnet {}", self.netuid),
            })?;
        let chat_models: Vec<Hash> = self
            .chain
            .models()?
            .into_iter()
            .filter(|m| m.kind == ModelKind::Chat)
            .map(|m| m.id)
            .collect();
        let me = self.address();
        let mut miners = Vec::new();
        for n in graph.neurons.iter().filter(|n| n.hotkey != me) {
            let Some(listing) = self
                .chain
                .provider(&n.hotkey)?
                .filter(|p| p.provider.active())
            else {
                continue;
            };
            let Some(model) = listing.serves_one_of(&chat_models) else {
                continue;
            };
            miners.push(self.ask(n.uid, &listing, model, &pool, &prompts));
        }
        // Speed and price relative to the best that answered well.
        let answered: Vec<&MinerScore> = miners.iter().filter(|m| m.quality > 0.0).collect();
        let fastest = answered
            .iter()
            .map(|m| m.latency_ms)
            .fold(f32::INFINITY, f32::min);
        let cheapest = answered.iter().map(|m| m.price).min().unwrap_or(0);
        for m in &mut miners {
            if m.quality <= 0.0 {
                m.score = 0.0;
                continue;
            }
            let speed = (fastest / m.latency_ms.max(1.0)).min(1.0);
            let price = if m.price == 0 {
                1.0
            } else {
                (cheapest as f32 / m.price as f32).min(1.0)
            };
            // Speed and price weigh only what the answers are worth: fast garbage earns nothing.
            m.score = m.quality * (QUALITY + SPEED * speed + PRICE * price);
        }
        let report = RoundReport {
            epoch,
            prompts,
            miners,
        };
        tracing::info!(
            netuid = self.netuid,
            epoch,
            scores = ?report.miners.iter().map(|m| (m.uid, m.quality, m.score)).collect::<Vec<_>>(),
            "miners scored"
        );
        Ok(report)
    }

    /// One miner's answers to `prompts`, as paid jobs on it alone.
    fn ask(
        &self,
        uid: u16,
        listing: &ProviderListing,
        model: Hash,
        pool: &[EvalItem],
        prompts: &[usize],
    ) -> MinerScore {
        let mut quality = 0.0;
        let mut latency = 0.0;
        let mut answered = 0;
        for &i in prompts {
            let item = &pool[i];
            let input = JobInput::Chat {
                messages: vec![ChatMessage {
                    role: "user".into(),
                    content: item.q.clone(),
                }],
                grammar: None,
            };
            let params = JobParams {
                max_tokens: self.max_tokens,
                temperature_milli: 0,
                verification: Verification::None,
                ..JobParams::default()
            };
            let start = Instant::now();
            let done = self.gateway.run_on(
                &self.sender.key,
                &[(listing.clone(), model)],
                &input,
                params,
                &mut |_| ControlFlow::Continue(()),
            );
            let text = match done {
                Ok(c) => match c.output {
                    JobOutput::Text { text, .. } => text,
                    _ => continue,
                },
                Err(e) => {
                    tracing::debug!(uid, error = %e, "a miner did not answer");
                    continue;
                }
            };
            latency += start.elapsed().as_secs_f32() * 1e3;
            answered += 1;
            quality += self.quality(&text, item);
        }
        let n = prompts.len().max(1) as f32;
        MinerScore {
            uid,
            hotkey: listing.address,
            quality: quality / n,
            latency_ms: if answered > 0 {
                latency / answered as f32
            } else {
                f32::INFINITY
            },
            price: listing.provider.info.price_output_per_1k,
            score: 0.0,
            answered,
        }
    }

    /// An answer's quality against its item.
    fn quality(&self, answer: &str, item: &EvalItem) -> f32 {
        if item.exact {
            return exact_score(answer, &item.a);
        }
        if let Some(e) = &self.embedder
            && let Ok(v) = e.embed(&[answer, item.a.as_str()])
            && v.len() == 2
        {
            return similarity(&v[0], &v[1]);
        }
        // Without the embedding model: the share of the reference's words the answer uses.
        let reference = words(&item.a);
        let answer = words(answer);
        let hits = reference.iter().filter(|w| answer.contains(w)).count();
        hits as f32 / reference.len().max(1) as f32
    }
}

/// How a forecast miner predicts the next window's fees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForecastModel {
    /// The last window's value again: the baseline others should beat.
    Persistence,
    /// The mean of the last `n` windows.
    Mean(usize),
    /// Always the same value (a poor model).
    Constant(u64),
}

impl ForecastModel {
    /// The prediction, from the subnet's recorded windows (oldest first).
    pub fn predict(&self, history: &[Amount]) -> u64 {
        let clamp = |x: Amount| u64::try_from(x).unwrap_or(u64::MAX);
        match *self {
            ForecastModel::Persistence => history.last().map_or(0, |x| clamp(*x)),
            ForecastModel::Mean(n) => {
                let recent = &history[history.len().saturating_sub(n.max(1))..];
                if recent.is_empty() {
                    return 0;
                }
                clamp(recent.iter().sum::<Amount>() / recent.len() as Amount)
            }
            ForecastModel::Constant(v) => v,
        }
    }
}

/// What a forecast miner predicts the next window's fees with, from the subnet's recorded
/// windows (oldest first).
pub trait Predictor: Send + Sync {
    /// Its name, for people.
    fn name(&self) -> String;
    /// The prediction.
    fn predict(&self, history: &[Amount]) -> u64;
}

impl Predictor for ForecastModel {
    fn name(&self) -> String {
        format!("{self:?}")
    }

    fn predict(&self, history: &[Amount]) -> u64 {
        ForecastModel::predict(self, history)
    }
}

/// A forecast subnet's miner (see the module's documentation).
pub struct ForecastMiner {
    chain: Arc<dyn Chain>,
    sender: Sender,
    netuid: u16,
    model: Arc<dyn Predictor>,
    /// `(epoch committed at, value, salt)`.
    committed: Mutex<Option<(u64, u64, Hash)>>,
}

impl std::fmt::Debug for ForecastMiner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForecastMiner")
            .field("netuid", &self.netuid)
            .field("model", &self.model.name())
            .finish()
    }
}

impl ForecastMiner {
    /// A miner of forecast subnet `netuid` with hotkey `key` (registered on it).
    /// `fee_per_unit` is the chain's minimum fee (its transactions pay it per unit of work).
    pub fn new(
        chain: Arc<dyn Chain>,
        key: Keypair,
        netuid: u16,
        model: Arc<dyn Predictor>,
        fee_per_unit: Amount,
    ) -> Self {
        ForecastMiner {
            sender: Sender::new(chain.clone(), key, fee_per_unit),
            chain,
            netuid,
            model,
            committed: Mutex::new(None),
        }
    }

    /// One look at the chain: reveals last window's forecast, and commits this window's.
    pub fn step(&self) -> Result<(), Error> {
        let Some(subnet) = self.chain.subnet(self.netuid)? else {
            return Ok(());
        };
        let epochs = subnet.subnet.epochs;
        let me = self.sender.key.address();
        let mut committed = self.committed.lock().unwrap_or_else(|e| e.into_inner());
        let mut messages = Vec::new();
        if let Some((at, value, salt)) = *committed
            && at + 1 == epochs
            && subnet
                .predictions
                .iter()
                .any(|p| p.hotkey == me && p.epoch == at && p.value.is_none())
        {
            messages.push(Message::RevealPrediction {
                netuid: self.netuid,
                value,
                salt,
            });
        }
        let already = subnet
            .predictions
            .iter()
            .any(|p| p.hotkey == me && p.epoch == epochs);
        let mut next = None;
        if !already {
            let history: Vec<Amount> = subnet.history.iter().map(|e| e.observed).collect();
            let value = self.model.predict(&history);
            let salt = random_salt();
            messages.push(Message::CommitPrediction {
                netuid: self.netuid,
                commitment: agora_types::prediction_commitment(self.netuid, &me, value, &salt),
            });
            next = Some((epochs, value, salt));
        }
        if messages.is_empty() {
            return Ok(());
        }
        self.sender.submit(messages)?;
        if let Some(n) = next {
            *committed = Some(n);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_parses_and_draws_are_distinct_and_seeded() {
        let pool = eval_pool().unwrap();
        assert!(pool.len() >= 40);
        assert!(pool.iter().any(|i| i.exact) && pool.iter().any(|i| !i.exact));
        let a = draw(&Hash([1; 32]), pool.len(), 4);
        assert_eq!(a.len(), 4);
        assert!(a.iter().all(|i| *i < pool.len()));
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 4);
        assert_eq!(a, draw(&Hash([1; 32]), pool.len(), 4));
        assert_ne!(a, draw(&Hash([2; 32]), pool.len(), 4));
    }

    #[test]
    fn exact_answers_score_one_and_others_zero() {
        assert_eq!(exact_score("The capital of France is Paris.", "Paris"), 1.0);
        assert_eq!(exact_score("paris", "Paris"), 1.0);
        assert_eq!(exact_score("Parisian food", "Paris"), 0.0);
        assert_eq!(exact_score("It is H2O.", "H2O"), 1.0);
        assert_eq!(exact_score("", "Paris"), 0.0);
    }

    #[test]
    fn weights_follow_scores_and_leave_out_zeros() {
        let m = |uid, score| MinerScore {
            uid,
            hotkey: Address([uid as u8; 20]),
            quality: score,
            latency_ms: 1.0,
            price: 1,
            score,
            answered: 1,
        };
        let r = RoundReport {
            epoch: 0,
            prompts: vec![],
            miners: vec![m(1, 0.9), m(2, 0.3), m(3, 0.0)],
        };
        assert_eq!(r.weights(), (vec![1, 2], vec![65_535, 21_845]));
        let none = RoundReport::default();
        assert_eq!(none.weights(), (vec![], vec![]));
    }

    #[test]
    fn forecast_models_predict_from_history() {
        let h = [10u128, 20, 30];
        assert_eq!(ForecastModel::Persistence.predict(&h), 30);
        assert_eq!(ForecastModel::Mean(2).predict(&h), 25);
        assert_eq!(ForecastModel::Constant(7).predict(&h), 7);
        assert_eq!(ForecastModel::Persistence.predict(&[]), 0);
    }
}
