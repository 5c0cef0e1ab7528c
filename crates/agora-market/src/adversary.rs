//! Cheating providers, for tests and `agora bench verify`: each strategy of DESIGN.md §6 turns an
//! honest answer into the dishonest one such a provider would deliver (and claim a fee for).

use crate::{Backend, Error, JobInput, JobOutput};
use agora_infer::chat::ChatModel;
use agora_types::{Hash, JobParams};
use std::ops::ControlFlow;

/// How a provider cheats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cheat {
    /// One token in the middle replaced (the text made to match).
    OneTokenChanged,
    /// The first half of the answer, claimed as a natural stop.
    TruncatedStop,
    /// The first half of the answer, claimed as the length limit.
    TruncatedLength,
    /// Tokens that do not come from the model at all.
    RandomTokens,
    /// A correct first half, then garbage.
    PrefixThenGarbage,
    /// The answer to another prompt, served again.
    CachedFromOtherPrompt,
    /// Another model's choices: here, the same model sampled hot, claimed as greedy.
    OtherModel,
}

impl Cheat {
    /// Every strategy.
    pub const ALL: [Cheat; 7] = [
        Cheat::OneTokenChanged,
        Cheat::TruncatedStop,
        Cheat::TruncatedLength,
        Cheat::RandomTokens,
        Cheat::PrefixThenGarbage,
        Cheat::CachedFromOtherPrompt,
        Cheat::OtherModel,
    ];

    /// A short name.
    pub fn name(&self) -> &'static str {
        match self {
            Cheat::OneTokenChanged => "one token changed",
            Cheat::TruncatedStop => "truncated, claimed stop",
            Cheat::TruncatedLength => "truncated, claimed length",
            Cheat::RandomTokens => "random tokens",
            Cheat::PrefixThenGarbage => "correct prefix, then garbage",
            Cheat::CachedFromOtherPrompt => "cached from another prompt",
            Cheat::OtherModel => "another model's answer",
        }
    }

    /// The dishonest output for `input`, given the `honest` one (text with at least two tokens)
    /// and the backend that serves `model` (to produce other answers).
    pub fn apply(
        &self,
        chat: &ChatModel,
        backend: &dyn Backend,
        model: &Hash,
        input: &JobInput,
        params: &JobParams,
        honest: &JobOutput,
    ) -> Result<JobOutput, Error> {
        let JobOutput::Text { tokens, finish, .. } = honest else {
            return Err(Error::BadInput("cheats apply to text answers".into()));
        };
        let vocab = chat.llama.config.vocab as u32;
        let mid = tokens.len() / 2;
        let text = |tokens: Vec<u32>, finish: &str| JobOutput::Text {
            text: chat.text_of(&tokens),
            tokens,
            finish: finish.into(),
            logprobs: None,
        };
        let serve = |input: &JobInput, params: &JobParams| {
            backend
                .run(model, input, params, &mut |_| ControlFlow::Continue(()))
                .map(|s| s.output)
        };
        Ok(match self {
            Cheat::OneTokenChanged => {
                let mut t = tokens.clone();
                t[mid] = (t[mid] + 1 + vocab / 2) % vocab;
                text(t, finish)
            }
            Cheat::TruncatedStop => text(tokens[..mid].to_vec(), "stop"),
            Cheat::TruncatedLength => text(tokens[..mid].to_vec(), "length"),
            Cheat::RandomTokens => text(
                (0..tokens.len() as u32)
                    .map(|i| (i * 7_919 + 104_729) % vocab)
                    .collect(),
                "length",
            ),
            Cheat::PrefixThenGarbage => {
                let mut t = tokens[..mid].to_vec();
                t.extend((0..(tokens.len() - mid) as u32).map(|i| (i * 31 + 5) % vocab));
                text(t, "length")
            }
            Cheat::CachedFromOtherPrompt => {
                let other = JobInput::Chat {
                    messages: vec![crate::ChatMessage {
                        role: "user".into(),
                        content: "Tell me about volcanoes.".into(),
                    }],
                    grammar: None,
                };
                serve(&other, params)?
            }
            Cheat::OtherModel => {
                let hot = JobParams {
                    temperature_milli: 1_200,
                    seed: 7,
                    ..params.clone()
                };
                serve(input, &hot)?
            }
        })
    }
}

/// A backend that serves honest answers turned dishonest by `cheat` (text jobs only).
#[allow(missing_debug_implementations)]
pub struct CheatingBackend {
    /// The honest backend.
    pub inner: crate::InferBackend,
    /// Its chat model (for the cheats that need the tokenizer).
    pub chat: std::sync::Arc<ChatModel>,
    /// How it cheats.
    pub cheat: Cheat,
}

impl Backend for CheatingBackend {
    fn serves(&self, model: &Hash) -> bool {
        self.inner.serves(model)
    }

    fn input_tokens(&self, model: &Hash, input: &JobInput) -> Result<u32, Error> {
        self.inner.input_tokens(model, input)
    }

    fn run(
        &self,
        model: &Hash,
        input: &JobInput,
        params: &JobParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<crate::Served, Error> {
        let mut served =
            self.inner
                .run(model, input, params, &mut |_| ControlFlow::Continue(()))?;
        served.output = self.cheat.apply(
            &self.chat,
            &self.inner,
            model,
            input,
            params,
            &served.output,
        )?;
        if let JobOutput::Text { text, tokens, .. } = &served.output {
            served.output_tokens = u32::try_from(tokens.len()).unwrap_or(u32::MAX);
            let _ = on_text(text);
        }
        Ok(served)
    }
}
