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
//! The work a grammar may cost is bounded by [`limits`], which count steps, not time: a grammar
//! too costly to follow stops at the same token on every machine running the same llguidance
//! (pinned exactly), and the answer ends there ([`TokenConstraint::mask`] fails; the generator
//! ends the answer as cut short, and a verifier expects it to end there).

#![forbid(unsafe_code)]

use std::sync::Arc;

use agora_infer::chat::ChatModel;
use agora_infer::sample::{TokenConstraint, TokenMask};
use llguidance::api::{ParserLimits, TopLevelGrammar};
use llguidance::toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};
use serde_json::{Value, json};

/// Longest grammar a job may carry, in bytes.
pub const MAX_GRAMMAR_BYTES: usize = 32 * 1024;

/// The work a grammar may cost: part of the protocol, since a provider and its verifiers must
/// stop at the same token. Per token, at most about 7 ms of lexer work and 1 ms of parser work
/// (llguidance's own figures); per answer, at most 50,000 lexer states (tens of MB).
pub fn limits() -> ParserLimits {
    ParserLimits {
        max_items_in_row: 2_000,
        initial_lexer_fuel: 1_000_000,
        step_lexer_fuel: 100_000,
        step_max_items: 20_000,
        max_lexer_states: 50_000,
        max_grammar_size: 200_000,
        precompute_large_lexemes: true,
        // Errors without the parser's state: it holds the answer so far.
        verbose_errors: false,
    }
}

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
    // `true` (anything) as the empty schema, which can carry the layout.
    let mut schema = if *schema == Value::Bool(true) {
        json!({})
    } else {
        schema.clone()
    };
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

/// The schema of one call: `{"name": <the tool's name>, "arguments": <its parameters>}`. The
/// parameters' definitions (`$defs`, `definitions`) move into `defs`: their references
/// (`#/$defs/…`) point at the root of the whole schema, where they are put back.
fn call_schema(tool: &Tool, defs: &mut serde_json::Map<String, Value>) -> Result<Value, String> {
    let mut parameters = tool.parameters.clone();
    if let Value::Object(p) = &mut parameters {
        for key in ["$defs", "definitions"] {
            let Some(Value::Object(found)) = p.remove(key) else {
                continue;
            };
            let Value::Object(into) = defs.entry(key).or_insert_with(|| json!({})) else {
                continue;
            };
            for (name, def) in found {
                match into.get(&name) {
                    Some(other) if *other != def => {
                        return Err(format!(
                            "two tools define {key}/{name} differently: rename one"
                        ));
                    }
                    _ => {
                        into.insert(name, def);
                    }
                }
            }
        }
    }
    Ok(json!({
        "type": "object",
        "properties": {
            "name": {"const": tool.name},
            "arguments": parameters,
        },
        "required": ["name", "arguments"],
        "additionalProperties": false,
    }))
}

/// `schema` with the definitions the calls' parameters had, at its root.
fn with_defs(mut schema: Value, defs: serde_json::Map<String, Value>) -> Value {
    if let Value::Object(o) = &mut schema {
        o.extend(defs);
    }
    schema
}

/// The grammar of an answer under `choice` when `tools` are offered: a call is one JSON object
/// `{"name": …, "arguments": {…}}` naming one of them with arguments its schema accepts; with
/// [`ToolChoice::Auto`], the answer may instead be text that does not start with `{` (so that a
/// reader tells the two apart from the first character). An error when `choice` names no tool
/// offered, or two tools' definitions clash.
pub fn tools_grammar(tools: &[Tool], choice: &ToolChoice) -> Result<String, String> {
    let mut defs = serde_json::Map::new();
    let calls = match choice {
        ToolChoice::Named(name) => {
            let tool = tools
                .iter()
                .find(|t| t.name == *name)
                .ok_or_else(|| format!("no tool is named {name:?}"))?;
            call_schema(tool, &mut defs)?
        }
        ToolChoice::Auto | ToolChoice::Required => {
            let calls = tools
                .iter()
                .map(|t| call_schema(t, &mut defs))
                .collect::<Result<Vec<_>, _>>()?;
            json!({"anyOf": calls})
        }
    };
    let calls = with_defs(calls, defs);
    Ok(match choice {
        ToolChoice::Auto => format!(
            "start: TEXT | call\nTEXT: /[^{{](.|\\n)*/\ncall: %json {}",
            with_layout(&calls)
        ),
        ToolChoice::Required | ToolChoice::Named(_) => json_schema(&calls),
    })
}

/// `value` as JSON in the layout [`json_schema`]'s grammars write (`", "` and `": "`, one line):
/// how an earlier answer's call is put back into a conversation.
pub fn layout(value: &Value) -> String {
    match value {
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(layout).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), layout(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        scalar => scalar.to_string(),
    }
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
    // A call's grammar starts it with `{`; text the model started otherwise (with a space, say)
    // was never held to the tools' schemas, so it is never read as a call.
    if !text.starts_with('{') {
        return None;
    }
    let Value::Object(call) = serde_json::from_str::<Value>(text).ok()? else {
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
/// gateway checks before it signs a job. The last [`CHECKED`] grammars that passed (by SHA-256)
/// pass again without compiling: clients tend to send the same schema with every request.
pub fn check(grammar: &str) -> Result<(), Error> {
    use sha2::{Digest, Sha256};
    use std::sync::{Mutex, OnceLock};
    static BYTES: OnceLock<Result<ParserFactory, String>> = OnceLock::new();
    static PASSED: Mutex<std::collections::VecDeque<[u8; 32]>> =
        Mutex::new(std::collections::VecDeque::new());
    let digest: [u8; 32] = Sha256::digest(grammar.as_bytes()).into();
    let passed = || PASSED.lock().unwrap_or_else(|e| e.into_inner());
    if passed().contains(&digest) {
        return Ok(());
    }
    let factory = BYTES
        .get_or_init(|| factory(&ApproximateTokEnv::single_byte_env()).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| Error::Model(e.clone()))?;
    compile_on(factory, grammar)?;
    let mut passed = passed();
    if passed.len() == CHECKED {
        passed.pop_front();
    }
    passed.push_back(digest);
    Ok(())
}

/// How many grammars that passed [`check`] are remembered.
pub const CHECKED: usize = 256;

/// A compiler for `env`'s vocabulary, quiet, under [`limits`].
fn factory(env: &TokEnv) -> Result<ParserFactory, Error> {
    let mut factory = ParserFactory::new_simple(env).map_err(|e| Error::Model(e.to_string()))?;
    factory.quiet();
    *factory.limits_mut() = limits();
    Ok(factory)
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
        let factory = factory(&env)?;
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
            may_end: false,
        })
    }
}

/// A grammar followed along one answer.
pub struct Constraint {
    matcher: Matcher,
    eos: u32,
    stops: Arc<[u32]>,
    vocab: usize,
    /// Whether the last mask allowed the end: a stop token commits exactly then.
    may_end: bool,
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
        self.may_end = mask.allows(self.eos);
        if self.may_end {
            for &s in self.stops.iter() {
                mask.allow(s);
            }
        }
        Ok(mask)
    }

    fn commit(&mut self, token: u32) -> Result<(), String> {
        if self.stops.contains(&token) {
            // The answer ends here: allowed exactly where the last mask allowed the end.
            return if self.may_end {
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
        assert!(tools_grammar(&tools(), &ToolChoice::Named("nope".into())).is_err());
        assert!(matches!(check("start: ("), Err(Error::Bad(_))));
        assert!(matches!(
            check(&json_schema(&json!({"type": "no such type"}))),
            Err(Error::Bad(_))
        ));
        let huge = json_schema(&json!({"enum": vec!["x".repeat(64); 600]}));
        assert!(matches!(check(&huge), Err(Error::TooLarge { .. })));
        // Checked again (a good one from memory): the same answers; a bad one is never
        // remembered as good.
        check(&json_schema(&json!({"type": "object"}))).unwrap();
        assert!(matches!(check("start: ("), Err(Error::Bad(_))));
        assert!(matches!(check(&huge), Err(Error::TooLarge { .. })));
    }

    /// Parameters with definitions (as pydantic writes nested models) keep their references
    /// working: the definitions move to the root; two tools that define a name differently are
    /// refused.
    #[test]
    fn tool_definitions_move_to_the_root() {
        let nested = |name: &str, inner: Value| Tool {
            name: name.into(),
            description: String::new(),
            parameters: json!({"type": "object", "properties": {"at": {"$ref": "#/$defs/Place"}},
                               "required": ["at"], "$defs": {"Place": inner}}),
        };
        let place = json!({"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]});
        let one = vec![nested("go", place.clone()), nested("stay", place.clone())];
        for choice in [
            ToolChoice::Auto,
            ToolChoice::Required,
            ToolChoice::Named("go".into()),
        ] {
            check(&tools_grammar(&one, &choice).unwrap()).unwrap();
        }
        let clash = vec![
            nested("go", place),
            nested("stay", json!({"type": "integer"})),
        ];
        assert!(tools_grammar(&clash, &ToolChoice::Required).is_err());
        assert_eq!(
            layout(&json!({"name": "go", "arguments": {"at": [1, {"x": null}]}})),
            r#"{"name": "go", "arguments": {"at": [1, {"x": null}]}}"#
        );
        // `true` as a schema gets the layout too.
        assert!(json_schema(&Value::Bool(true)).contains("whitespace_flexible"));
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
        // Text that starts otherwise was not held to the schemas: never a call.
        assert_eq!(
            parse_tool_call(r#" {"name": "add", "arguments": {"a": "x"}}"#, &t),
            None
        );
        assert_eq!(parse_tool_call(r#"{"name": "add""#, &t), None);
        let prompt = tools_prompt(&t);
        assert!(prompt.contains(r#""name":"get_weather""#) && prompt.contains("Adds two"));
    }
}
