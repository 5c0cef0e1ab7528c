//! The models a provider runs, behind one trait so the service does not care which engine.

use crate::{Error, JobInput, JobOutput};
use agora_infer::bert::Embedder;
use agora_infer::chat::{ChatModel, Finish, GenParams, Message};
use agora_infer::sample::SamplingParams;
use agora_types::{Hash, JobParams};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

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
}

/// Models of the inference runtime, by model id.
#[derive(Default)]
pub struct InferBackend {
    chat: BTreeMap<Hash, Arc<ChatModel>>,
    embed: BTreeMap<Hash, Arc<Embedder>>,
}

impl std::fmt::Debug for InferBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InferBackend")
            .field("chat", &self.chat.keys().collect::<Vec<_>>())
            .field("embed", &self.embed.keys().collect::<Vec<_>>())
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

    /// The model ids served.
    pub fn models(&self) -> Vec<Hash> {
        self.chat.keys().chain(self.embed.keys()).copied().collect()
    }

    fn chat_prompt(model: &ChatModel, input: &JobInput) -> Result<Vec<u32>, Error> {
        let tokens = match input {
            JobInput::Chat { messages } => {
                let messages: Vec<Message> = messages
                    .iter()
                    .map(|m| Message::new(&m.role, &m.content))
                    .collect();
                model.encode_chat(&messages)?
            }
            JobInput::Completion { prompt } => model.tokenizer.encode(prompt)?,
            JobInput::Embedding { .. } => {
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
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Backend for InferBackend {
    fn serves(&self, model: &Hash) -> bool {
        self.chat.contains_key(model) || self.embed.contains_key(model)
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
        Err(Error::UnknownModel(*model))
    }

    fn run(
        &self,
        model: &Hash,
        input: &JobInput,
        params: &JobParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Served, Error> {
        if let Some(m) = self.chat.get(model) {
            let prompt = Self::chat_prompt(m, input)?;
            let generation = m.generate(
                &prompt,
                &GenParams {
                    max_tokens: params.max_tokens,
                    sampling: sampling(params),
                },
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
        Err(Error::UnknownModel(*model))
    }
}
