//! Continuous batching: one thread per chat model runs every active sequence together, one
//! batched pass per token ([`Llama::forward_batch`]: the weights read once per pass for the whole
//! batch), admitting new requests between passes and retiring finished ones. A prompt is run in
//! chunks beside the others' next tokens, so a long prompt does not stall anyone's stream.
//!
//! Batching changes no bit: each sequence's logits are those it gets alone (rows of a matmul never
//! mix, attention runs over the sequence's own cache), and its token at output position `i` is
//! sampled from them with its own parameters, as [`crate::chat::ChatModel::generate`] always did.
//! A verifier's teacher-forced check of a batched answer therefore still finds margin 0.
//!
//! Abuse: a client cannot hold the batch: sequences beyond [`BatchConfig::max_seqs`], or whose
//! keys and values would pass [`BatchConfig::kv_bytes`], wait in arrival order; a caller that
//! goes away is dropped at the next pass.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Error;
use crate::chat::{Finish, GenParams, Prefixes};
use crate::llama::{KvCache, Llama, Step};
use crate::sample::{self, TokenConstraint, TokenLogprobs};

/// How much a model's batch may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most sequences decoded together.
    pub max_seqs: usize,
    /// Most bytes of keys and values the active sequences may reserve (each reserves its prompt
    /// and its largest answer, within the context).
    pub kv_bytes: usize,
    /// Prompt tokens run per pass beside the sequences that are generating (four times as many
    /// when none is).
    pub chunk: usize,
    /// Most requests waiting for a place; more are refused at once ([`Error::Busy`]), so that
    /// waiting callers cannot pile up without bound.
    pub max_waiting: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_seqs: 64,
            kv_bytes: 1 << 30,
            chunk: 64,
            max_waiting: 256,
        }
    }
}

/// What a model's batch has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Batched passes run.
    pub passes: u64,
    /// Sequences run, summed over the passes (divided by `passes`: the mean batch).
    pub seq_steps: u64,
    /// The most sequences one pass ran.
    pub widest: u64,
    /// Prompt tokens run (kept prefixes not counted).
    pub prompt_tokens: u64,
    /// Output tokens chosen.
    pub output_tokens: u64,
}

/// What the batch thread tells a request's caller.
#[derive(Debug)]
pub(crate) enum Event {
    /// The prompt has run: how many of its tokens came from a kept prefix, and how long it took
    /// from admission (the wait for a place in the batch not included).
    Started {
        cached: usize,
        prompt_time: Duration,
    },
    /// The next output token (a stop token too: it ends the answer), with its log-probabilities
    /// when they were asked for.
    Token(u32, Option<TokenLogprobs>),
    Done(Finish),
    Failed(Error),
}

/// A request for the batch.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) scope: Vec<u8>,
    pub(crate) prompt: Vec<u32>,
    pub(crate) params: GenParams,
    /// Positions the sequence may use in all (prompt and answer).
    pub(crate) limit: usize,
    pub(crate) events: Sender<Event>,
    /// Set by a caller that stops reading.
    pub(crate) cancel: Arc<AtomicBool>,
    /// What the answer must follow, if anything.
    pub(crate) constraint: Option<Box<dyn TokenConstraint>>,
}

/// The batch thread of one model: requests go in through [`Batcher::submit`]. Dropping it ends
/// the thread once the sequences it holds are done.
#[derive(Debug)]
pub(crate) struct Batcher {
    pub(crate) stats: Arc<Mutex<BatchStats>>,
    jobs: Option<Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Batcher {
    pub(crate) fn start(
        llama: Arc<Llama>,
        prefixes: Arc<Mutex<Prefixes>>,
        stop: Vec<u32>,
        mut config: BatchConfig,
    ) -> Result<Self, Error> {
        config.max_seqs = config.max_seqs.max(1);
        config.max_waiting = config.max_waiting.max(1);
        config.chunk = config.chunk.max(1);
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(Mutex::new(BatchStats::default()));
        let counted = stats.clone();
        let thread = std::thread::Builder::new()
            .name("agora-batch".into())
            .spawn(move || {
                Batch {
                    llama,
                    prefixes,
                    stop,
                    config,
                    active: Vec::new(),
                    waiting: VecDeque::new(),
                    reserved: 0,
                    stats: counted,
                    penalized: Vec::new(),
                }
                .run(rx)
            })
            .map_err(|e| Error::Runtime(format!("cannot start the batch thread: {e}")))?;
        Ok(Self {
            stats,
            jobs: Some(tx),
            thread: Some(thread),
        })
    }

    pub(crate) fn submit(&self, job: Job) -> Result<(), Error> {
        self.jobs
            .as_ref()
            .and_then(|tx| tx.send(job).ok())
            .ok_or_else(|| Error::Runtime("the model's batch thread has stopped".into()))
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Fails sequence `seq` because its constraint refused the token its own mask allowed (an
/// inconsistency, not a request's doing): its caller gets the error, and the sequence ends.
fn fail(seq: &Seq, reason: String) -> Finish {
    let _ = seq.job.events.send(Event::Failed(Error::Runtime(format!(
        "the answer's format checker refused a token its own mask allowed (a fault of this \
         runtime, not of the request): {reason}"
    ))));
    Finish::Cancelled
}

/// One active sequence.
struct Seq {
    job: Job,
    cache: KvCache,
    /// Prompt tokens whose keys and values came from a kept prefix.
    cached: usize,
    /// Prompt tokens in the cache.
    fed: usize,
    /// Output tokens so far.
    tokens: Vec<u32>,
    /// The last output token, to run in the next pass.
    next: [u32; 1],
    /// How often each token appears in the answer so far (for the penalties).
    counts: std::collections::BTreeMap<u32, u32>,
    decoding: bool,
    admitted: Instant,
    /// Bytes of keys and values reserved for it.
    reserved: usize,
}

struct Batch {
    llama: Arc<Llama>,
    prefixes: Arc<Mutex<Prefixes>>,
    stop: Vec<u32>,
    config: BatchConfig,
    active: Vec<Seq>,
    waiting: VecDeque<Job>,
    reserved: usize,
    stats: Arc<Mutex<BatchStats>>,
    /// Logits with a sequence's penalties applied.
    penalized: Vec<f32>,
}

impl Batch {
    fn run(mut self, jobs: Receiver<Job>) {
        let mut logits = Vec::new();
        loop {
            if self.active.is_empty() && self.waiting.is_empty() {
                match jobs.recv() {
                    Ok(job) => self.enqueue(job),
                    Err(_) => return,
                }
            }
            while let Ok(job) = jobs.try_recv() {
                self.enqueue(job);
            }
            self.admit();
            let pass =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.pass(&mut logits)));
            if pass.is_err() {
                // A bug, not a request: the sequences in the batch fail, the thread goes on
                // serving the next ones.
                tracing::error!("a batched pass panicked; its sequences fail");
                for seq in self.active.drain(..) {
                    let _ = seq.job.events.send(Event::Failed(Error::Runtime(
                        "the model failed on this request".into(),
                    )));
                }
                self.reserved = 0;
            }
        }
    }

    /// Queues a request, or refuses it when the queue is full.
    fn enqueue(&mut self, job: Job) {
        if self.waiting.len() >= self.config.max_waiting {
            let _ = job.events.send(Event::Failed(Error::Busy(format!(
                "{} requests wait for this model: try again shortly",
                self.waiting.len()
            ))));
        } else {
            self.waiting.push_back(job);
        }
    }

    fn bytes_per_position(&self) -> usize {
        let c = &self.llama.config;
        // Keys and values, f16 each.
        c.n_layer * c.kv_dim() * 2 * std::mem::size_of::<u16>()
    }

    /// Moves waiting requests into the batch, in arrival order, while there is room.
    fn admit(&mut self) {
        while let Some(job) = self.waiting.front() {
            if job.cancel.load(Ordering::Relaxed) {
                // Its caller has gone: it holds no place in the queue.
                self.waiting.pop_front();
                continue;
            }
            let positions = (job.prompt.len() + job.params.max_tokens as usize).min(job.limit);
            let bytes = positions * self.bytes_per_position();
            let full = self.active.len() >= self.config.max_seqs
                || (!self.active.is_empty() && self.reserved + bytes > self.config.kv_bytes);
            if full {
                return;
            }
            let Some(job) = self.waiting.pop_front() else {
                return;
            };
            let (mut cache, cached) = self
                .prefixes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .reuse(&self.llama, &job.scope, &job.prompt, job.prompt.len() - 1);
            self.llama.reserve_exact(&mut cache, positions);
            self.reserved += bytes;
            self.active.push(Seq {
                job,
                cache,
                cached,
                fed: cached,
                tokens: Vec::new(),
                next: [0],
                counts: Default::default(),
                decoding: false,
                admitted: Instant::now(),
                reserved: bytes,
            });
        }
    }

    /// One batched pass: every generating sequence's next token, and prompt chunks within the
    /// budget; then each sequence whose logits came back picks its token.
    fn pass(&mut self, logits: &mut Vec<f32>) {
        // Sequences whose caller has gone are dropped before any work is spent on them.
        let mut i = 0;
        while i < self.active.len() {
            if self.active[i].job.cancel.load(Ordering::Relaxed) {
                self.retire(i, Finish::Cancelled);
            } else {
                i += 1;
            }
        }
        if self.active.is_empty() {
            return;
        }
        let generating = self.active.iter().any(|s| s.decoding);
        let mut budget = if generating {
            self.config.chunk
        } else {
            self.config.chunk * 4
        }
        .max(1);
        // (sequence, whether its logits come back)
        let mut ran: Vec<(usize, bool)> = Vec::new();
        let mut prompt_run = 0;
        let mut steps: Vec<Step<'_>> = Vec::new();
        for (i, seq) in self.active.iter_mut().enumerate() {
            let Seq {
                job,
                cache,
                fed,
                next,
                decoding,
                ..
            } = seq;
            if *decoding {
                steps.push(Step {
                    cache,
                    tokens: &next[..],
                    logits_for: 0..1,
                });
                ran.push((i, true));
            } else if budget > 0 {
                let take = (job.prompt.len() - *fed).min(budget);
                budget -= take;
                prompt_run += take;
                let last = *fed + take == job.prompt.len();
                steps.push(Step {
                    cache,
                    tokens: &job.prompt[*fed..*fed + take],
                    logits_for: if last { take - 1..take } else { take..take },
                });
                ran.push((i, last));
            }
        }
        let result = self.llama.forward_batch(&mut steps, logits);
        {
            let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            stats.passes += 1;
            stats.seq_steps += steps.len() as u64;
            stats.widest = stats.widest.max(steps.len() as u64);
            stats.prompt_tokens += prompt_run as u64;
        }
        drop(steps);
        if let Err(e) = result {
            // Cannot happen for requests checked on submission; if it does, those sequences
            // fail with it and the others go on.
            let message = e.to_string();
            for &(i, _) in ran.iter().rev() {
                let seq = self.active.swap_remove(i);
                self.reserved -= seq.reserved;
                let _ = seq
                    .job
                    .events
                    .send(Event::Failed(Error::Runtime(message.clone())));
            }
            return;
        }
        let vocab = self.llama.config.vocab;
        let mut row = 0;
        let mut finished = Vec::new();
        for &(i, has_logits) in &ran {
            let seq = &mut self.active[i];
            if !seq.decoding {
                let take = seq.cache.len() - seq.fed - seq.tokens.len();
                seq.fed += take;
            }
            if !has_logits {
                continue;
            }
            let logits = &logits[row * vocab..(row + 1) * vocab];
            row += 1;
            if !seq.decoding {
                seq.decoding = true;
                let _ = seq.job.events.send(Event::Started {
                    cached: seq.cached,
                    prompt_time: seq.admitted.elapsed(),
                });
            }
            if let Some(finish) = self.choose(i, logits) {
                finished.push((i, finish));
            }
        }
        // Highest index first: `retire` swaps the last sequence into the freed place.
        finished.sort_unstable_by_key(|&(i, _)| std::cmp::Reverse(i));
        for (i, finish) in finished {
            self.retire(i, finish);
        }
    }

    /// Sequence `i` picks its next token from `logits`; `Some` when that ends it.
    fn choose(&mut self, i: usize, logits: &[f32]) -> Option<Finish> {
        let seq = &mut self.active[i];
        let params = &seq.job.params;
        if seq.tokens.len() >= params.max_tokens as usize {
            return Some(Finish::Length);
        }
        let choose_from = if params.sampling.has_penalties() || seq.job.constraint.is_some() {
            self.penalized.clear();
            self.penalized.extend_from_slice(logits);
            if params.sampling.has_penalties() {
                params.sampling.penalize(&mut self.penalized, &seq.counts);
            }
            if let Some(constraint) = seq.job.constraint.as_mut() {
                match constraint.mask() {
                    Ok(mask) if !mask.is_empty() => mask.apply(&mut self.penalized),
                    // The grammar cannot go on (past its work limit): the answer is cut here,
                    // where a verifier's replay stops too.
                    _ => return Some(Finish::Length),
                }
            }
            &self.penalized[..]
        } else {
            logits
        };
        let token = sample::sample(choose_from, &params.sampling, seq.tokens.len() as u64);
        if let Some(constraint) = seq.job.constraint.as_mut()
            && let Err(e) = constraint.commit(token)
        {
            return Some(fail(seq, e));
        }
        seq.tokens.push(token);
        *seq.counts.entry(token).or_default() += 1;
        self.stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .output_tokens += 1;
        let lp = params
            .logprobs
            .map(|top| sample::logprobs(logits, token, usize::from(top)));
        if seq.job.events.send(Event::Token(token, lp)).is_err() {
            return Some(Finish::Cancelled);
        }
        if self.stop.contains(&token) {
            return Some(Finish::Stop);
        }
        if seq.cache.len() + 1 > seq.job.limit || seq.tokens.len() >= params.max_tokens as usize {
            return Some(Finish::Length);
        }
        seq.next = [token];
        None
    }

    /// Ends sequence `i`: its keys and values are kept for later requests of its scope.
    fn retire(&mut self, i: usize, finish: Finish) {
        let seq = self.active.swap_remove(i);
        self.reserved -= seq.reserved;
        let prompt = &seq.job.prompt;
        // The cache holds what ran of the prompt and every output token but the last (never fed
        // back).
        let tokens = if seq.fed == prompt.len() {
            let out = seq.cache.len() - prompt.len();
            [prompt.as_slice(), &seq.tokens[..out]].concat()
        } else {
            prompt[..seq.fed].to_vec()
        };
        // Kept at its length, not at what was reserved for the longest answer.
        let cache = if seq.cache.bytes() > 2 * seq.cache.len().max(64) * self.bytes_per_position() {
            seq.cache.prefix(seq.cache.len())
        } else {
            seq.cache
        };
        self.prefixes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keep(&seq.job.scope, tokens, cache);
        let _ = seq.job.events.send(Event::Done(finish));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests beyond the queue's bound are refused at once (busy), not queued without end.
    #[test]
    fn a_full_queue_refuses_more_requests_as_busy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        crate::testing::write_tiny_chat_model(&path, Default::default()).unwrap();
        let mut batch = Batch {
            llama: Arc::new(Llama::load(&path, 1).unwrap()),
            prefixes: Arc::default(),
            stop: vec![],
            config: BatchConfig {
                max_waiting: 2,
                ..BatchConfig::default()
            },
            active: Vec::new(),
            waiting: VecDeque::new(),
            reserved: 0,
            stats: Arc::default(),
            penalized: Vec::new(),
        };
        let mut receivers = Vec::new();
        for _ in 0..3 {
            let (events, received) = mpsc::channel();
            batch.enqueue(Job {
                scope: vec![],
                prompt: vec![1, 2, 3],
                params: Default::default(),
                limit: 64,
                events,
                cancel: Arc::default(),
                constraint: None,
            });
            receivers.push(received);
        }
        assert_eq!(batch.waiting.len(), 2);
        assert!(receivers[0].try_recv().is_err() && receivers[1].try_recv().is_err());
        assert!(matches!(
            receivers[2].try_recv(),
            Ok(Event::Failed(Error::Busy(_)))
        ));
    }
}
