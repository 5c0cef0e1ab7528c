//! Constrained decoding for Agora's chat models: answers that follow a grammar, so that a JSON
//! schema's answer always parses and validates, and a tool call always names a tool and fits its
//! parameters.
//!
//! A grammar travels in the job's input as Lark text in llguidance's dialect (a JSON schema is
//! `start: %json {…}`); this crate builds those texts ([`json_schema`], [`tools_grammar`]) and
//! turns one into a [`Constraint`] for a model ([`Grammars::compile`]): before each token, the
//! set of tokens the grammar allows next ([`TokenConstraint::mask`]). The provider chooses among
//! them; a verifier computes the same masks along the claimed answer (they depend only on the
//! grammar and the tokens before), so a token outside the grammar fails its check like any other
//! wrong token.
//!
//! The work a grammar may cost is bounded by llguidance's limits, which count steps, not time:
//! a grammar too costly to follow fails at the same token on every machine.

#![forbid(unsafe_code)]

use std::sync::Arc;

use agora_infer::chat::ChatModel;
use agora_infer::sample::{TokenConstraint, TokenMask};
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};
use serde_json::{Value, json};

/// Longest grammar a job may carry, in bytes.
pub const MAX_GRAMMAR_BYTES: usize = 32 * 1024;

/// What can be wrong with a grammar.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the grammar is {size} bytes, more than the {MAX_GRAMMAR_BYTES} allowed")]
    TooLarge { size: usize },
    #[error("bad grammar: {0}")]
    Bad(String),
    #[error("the model's tokenizer cannot take grammars: {0}")]
    Model(String),
}

/// The grammar of answers that are JSON documents valid under `schema` (a JSON Schema).
///
/// The JSON is written in one line with `", "` and `": "` between items (as most text a model
/// learned from writes it): whitespace that could go on without end would let a model fill the
/// answer with it. `oneOf` is read as `anyOf`, as schemas that tools generate often use it for
/// alternatives that do not overlap.
pub fn json_schema(schema: &Value) -> String {
    format!("start: %json {}", with_layout(schema))
}

fn with_layout(schema: &Value) -> Value {
    let mut schema = schema.clone();
    if let Value::Object(o) = &mut schema {
        o.insert(
            "x-guidance".into(),
            json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": ",
                   "coerce_one_of": true}),
        );
    }
    schema
}

/// A tool the model may call: a function's name and the JSON schema of its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: String,
    /// A JSON schema (an object's, usually).
    pub parameters: Value,
}

/// Whether and which tool the answer calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// Text or a call, as the model decides.
    Auto,
    /// A call to any of the tools.
    Required,
    /// A call to this tool.
    Named(String),
}

/// The schema of one call: `{"name": <the tool's name>, "arguments": <its parameters>}`.
fn call_schema(tool: &Tool) -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"const": tool.name},
            "arguments": tool.parameters,
        },
        "required": ["name", "arguments"],
        "additionalProperties": false,
    })
}

/// The grammar of an answer under `choice` when `tools` are offered: a call is one JSON object
/// `{"name": …, "arguments": {…}}` naming one of them with arguments its schema accepts; with
/// [`ToolChoice::Auto`], the answer may instead be text that does not start with `{` (so that a
/// reader tells the two apart from the first character). `None` when `choice` names no tool
/// offered.
pub fn tools_grammar(tools: &[Tool], choice: &ToolChoice) -> Option<String> {
    let any_call = || json!({"anyOf": tools.iter().map(call_schema).collect::<Vec<_>>()});
    Some(match choice {
        ToolChoice::Auto => format!(
            "start: TEXT | call\nTEXT: /[^{{](.|\\n)*/\ncall: %json {}",
            with_layout(&any_call())
        ),
        ToolChoice::Required => json_schema(&any_call()),
        ToolChoice::Named(name) => {
            json_schema(&call_schema(tools.iter().find(|t| t.name == *name)?))
        }
    })
}

/// What the model is told of the tools (a system message), in the form [`tools_grammar`] holds
/// its calls to.
pub fn tools_prompt(tools: &[Tool]) -> String {
    let mut out = String::from(
        "You can call functions. To call one, answer with only a JSON object of the form \
         {\"name\": <the function's name>, \"arguments\": <its arguments>}. Otherwise answer in \
         text. The functions:\n",
    );
    for t in tools {
        let line =
            json!({"name": t.name, "description": t.description, "parameters": t.parameters});
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

/// The call an answer holds, if it is one: a JSON object naming one of `tools` and its
/// arguments (given back as JSON text, as OpenAI's `arguments` are).
pub fn parse_tool_call(text: &str, tools: &[Tool]) -> Option<(String, String)> {
    let trimmed = text.trim_start();
    if !trimmed.starts_with('{') {
        return None;
    }
    let Value::Object(call) = serde_json::from_str::<Value>(trimmed).ok()? else {
        return None;
    };
    let name = call.get("name")?.as_str()?;
    tools.iter().find(|t| t.name == name)?;
    let arguments = call.get("arguments")?;
    Some((name.to_string(), arguments.to_string()))
}

fn compile_on(factory: &ParserFactory, grammar: &str) -> Result<Matcher, Error> {
    if grammar.len() > MAX_GRAMMAR_BYTES {
        return Err(Error::TooLarge {
            size: grammar.len(),
        });
    }
    let parser = factory
        .create_parser(TopLevelGrammar::from_lark(grammar.to_string()))
        .map_err(|e| Error::Bad(e.to_string()))?;
    let mut matcher = Matcher::new(Ok(parser));
    // Errors of the lexer show at the first mask: surface them now.
    matcher
        .compute_mask()
        .map_err(|e| Error::Bad(e.to_string()))?;
    Ok(matcher)
}

/// Whether `grammar` is one a job may carry (its syntax and its schemas), without a model: what a
/// gateway checks before it signs a job.
pub fn check(grammar: &str) -> Result<(), Error> {
    let mut factory = ParserFactory::new_simple(&ApproximateTokEnv::single_byte_env())
        .map_err(|e| Error::Model(e.to_string()))?;
    factory.quiet();
    compile_on(&factory, grammar).map(drop)
}

/// One model's grammar compiler: its vocabulary as llguidance sees it, built once per model.
pub struct Grammars {
    factory: ParserFactory,
    /// The token the grammar's end is (the first of the model's stop tokens).
    eos: u32,
    /// Every stop token: each ends an answer where the grammar may end.
    stops: Arc<[u32]>,
    vocab: usize,
}

impl std::fmt::Debug for Grammars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grammars")
            .field("eos", &self.eos)
            .field("vocab", &self.vocab)
            .finish()
    }
}

impl Grammars {
    /// The compiler for `model`'s vocabulary: each token as its bytes, control tokens marked as
    /// such (a grammar's text never matches them).
    pub fn new(model: &ChatModel) -> Result<Self, Error> {
        let vocab = model.llama.config.vocab;
        let stops: Arc<[u32]> = model.stop_tokens().into();
        let eos = *stops
            .first()
            .ok_or_else(|| Error::Model("it has no stop token".into()))?;
        let words: Vec<Vec<u8>> = (0..vocab as u32)
            .map(|t| {
                let bytes = model.tokenizer.token_bytes(t);
                if model.tokenizer.is_control(t) {
                    [&[TokTrie::SPECIAL_TOKEN_MARKER], bytes].concat()
                } else {
                    bytes.to_vec()
                }
            })
            .collect();
        let info = TokRxInfo::new(vocab as u32, eos);
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(TokTrie::from(&info, &words)));
        let mut factory =
            ParserFactory::new_simple(&env).map_err(|e| Error::Model(e.to_string()))?;
        factory.quiet();
        Ok(Self {
            factory,
            eos,
            stops,
            vocab,
        })
    }

    /// The constraint of `grammar` for a new answer.
    pub fn compile(&self, grammar: &str) -> Result<Constraint, Error> {
        Ok(Constraint {
            matcher: compile_on(&self.factory, grammar)?,
            eos: self.eos,
            stops: self.stops.clone(),
            vocab: self.vocab,
        })
    }
}

/// A grammar followed along one answer.
pub struct Constraint {
    matcher: Matcher,
    eos: u32,
    stops: Arc<[u32]>,
    vocab: usize,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint")
            .field("stopped", &self.matcher.is_stopped())
            .finish()
    }
}

impl TokenConstraint for Constraint {
    fn mask(&mut self) -> Result<TokenMask, String> {
        // Where the grammar is complete and nothing may follow, only the end.
        let set = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| e.to_string())?;
        let mut words = set.as_slice().to_vec();
        words.resize(self.vocab.div_ceil(32), 0);
        // Bits past the vocabulary (the last word's) stay clear.
        if !self.vocab.is_multiple_of(32)
            && let Some(last) = words.last_mut()
        {
            *last &= (1u32 << (self.vocab % 32)) - 1;
        }
        let mut mask = TokenMask::from_words(words);
        if mask.allows(self.eos) {
            for &s in self.stops.iter() {
                mask.allow(s);
            }
        }
        Ok(mask)
    }

    fn commit(&mut self, token: u32) -> Result<(), String> {
        if self.stops.contains(&token) {
            // The answer ends here: allowed where the grammar may end.
            let may_end = self.matcher.is_stopped()
                || self.matcher.is_accepting().map_err(|e| e.to_string())?;
            return if may_end {
                Ok(())
            } else {
                Err("the answer ends before its grammar does".into())
            };
        }
        self.matcher.consume_token(token).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Vec<Tool> {
        vec![
            Tool {
                name: "get_weather".into(),
                description: "The weather in a city".into(),
                parameters: json!({"type": "object", "properties": {"city": {"type": "string"}},
                                   "required": ["city"]}),
            },
            Tool {
                name: "add".into(),
                description: "Adds two integers".into(),
                parameters: json!({"type": "object", "properties": {"a": {"type": "integer"},
                                   "b": {"type": "integer"}}, "required": ["a", "b"]}),
            },
        ]
    }

    #[test]
    fn grammars_are_checked_before_any_model() {
        check(&json_schema(&json!({"type": "object"}))).unwrap();
        for choice in [
            ToolChoice::Auto,
            ToolChoice::Required,
            ToolChoice::Named("add".into()),
        ] {
            check(&tools_grammar(&tools(), &choice).unwrap()).unwrap();
        }
        assert!(tools_grammar(&tools(), &ToolChoice::Named("nope".into())).is_none());
        assert!(matches!(check("start: ("), Err(Error::Bad(_))));
        assert!(matches!(
            check(&json_schema(&json!({"type": "no such type"}))),
            Err(Error::Bad(_))
        ));
        let huge = json_schema(&json!({"enum": vec!["x".repeat(64); 600]}));
        assert!(matches!(check(&huge), Err(Error::TooLarge { .. })));
    }

    #[test]
    fn a_call_is_read_back_only_when_it_names_an_offered_tool() {
        let t = tools();
        assert_eq!(
            parse_tool_call(r#"{"name": "add", "arguments": {"a": 1, "b": 2}}"#, &t),
            Some(("add".into(), r#"{"a":1,"b":2}"#.into()))
        );
        assert_eq!(
            parse_tool_call(r#"{"name": "sub", "arguments": {}}"#, &t),
            None
        );
        assert_eq!(parse_tool_call("It is sunny.", &t), None);
        assert_eq!(parse_tool_call(r#"{"name": "add""#, &t), None);
        let prompt = tools_prompt(&t);
        assert!(prompt.contains(r#""name":"get_weather""#) && prompt.contains("Adds two"));
    }
}
