//! The gateway's OpenAI-compatible HTTP API, so the official client libraries work by changing
//! only the base URL and the API key:
//!
//! ```text
//!  GET  /v1/models                  models some provider serves
//!  POST /v1/chat/completions        chat (stream: true → server-sent chunks)
//!  POST /v1/completions             text completion
//!  POST /v1/embeddings              embeddings (float or base64)
//!  POST /v1/audits                 Solidity audit (Agora's own; see `audits`)
//!  POST /v1/zk/infer               a provable model, proved (Agora's own; see `zk`)
//!  GET  /v1/verify/{job_id}         the job's settlement on-chain
//! ```
//! Every response carries the job's receipt in an `agora` field (and the `x-agora-job-id` header).

// Handlers answer errors as ready responses, as axum handlers do.
#![allow(clippy::result_large_err)]

use crate::{ChatMessage, Completed, Error, Gateway, JobInput, JobOutput, Logprob, TokenLogprob};
use agora_grammar::{Tool, ToolChoice};
use agora_types::{Hash, JobParams, Keypair, Verification};
use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::{get, post},
};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Most choices one request may ask for (`n`): each is a job of its own.
const MAX_CHOICES: u32 = 8;

/// Most output tokens when the request names none (chat).
const DEFAULT_MAX_TOKENS: u32 = 256;

/// The gateway's HTTP state: the market, and API keys mapped to client wallets.
#[derive(Clone)]
pub struct OpenAiState {
    pub(crate) gateway: Arc<Gateway>,
    keys: Arc<BTreeMap<String, Arc<Keypair>>>,
    /// The node whose search index receives the audit reports clients publish.
    pub(crate) reports: Option<Arc<agora_node_api::NodeClient>>,
    /// Publications waiting for their jobs' verification.
    pub(crate) publishing: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for OpenAiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpenAiState({} keys)", self.keys.len())
    }
}

impl OpenAiState {
    /// A gateway whose API keys pay from the given client wallets.
    pub fn new(gateway: Arc<Gateway>, keys: BTreeMap<String, Keypair>) -> Self {
        OpenAiState {
            gateway,
            keys: Arc::new(keys.into_iter().map(|(k, v)| (k, Arc::new(v))).collect()),
            reports: None,
            publishing: Arc::default(),
        }
    }

    /// Publishes the audit reports that clients ask to publish (`"publish": true`) to the
    /// search index of the node at `node`, once their jobs' verification is over.
    pub fn publish_reports_to(mut self, node: &str) -> Self {
        self.reports = Some(Arc::new(agora_node_api::NodeClient::with_timeout(
            node,
            Duration::from_secs(30),
        )));
        self
    }
}

/// The OpenAI-compatible routes.
pub fn openai_router(state: OpenAiState) -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/verify/{job_id}", get(verify))
        .route("/v1/providers/stats", get(provider_stats))
        .route("/v1/audits", post(crate::audits::audit))
        .route("/v1/sql", post(crate::queries::sql))
        .route("/v1/forecasts", post(crate::queries::forecast))
        .route("/v1/zk/infer", post(crate::zk::infer))
        .with_state(state)
}

/// An error in OpenAI's shape: `{"error": {message, type, param, code}}`.
pub(crate) fn oai_error(status: u16, code: &str, message: impl Into<String>) -> Response {
    let kind = match status {
        401 => "authentication_error",
        402 | 429 => "insufficient_quota",
        400 | 404 | 413 => "invalid_request_error",
        _ => "api_error",
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        Json(json!({"error": {"message": message.into(), "type": kind, "param": null, "code": code}})),
    )
        .into_response()
}

/// A failure inside the gateway itself (a task that died): logged, and the caller told no
/// more than that.
pub(crate) fn internal(e: &dyn std::fmt::Display) -> Response {
    tracing::error!("gateway: {e}");
    oai_error(500, "internal", "the gateway failed to serve the request")
}

pub(crate) fn from_error(e: &Error) -> Response {
    let (status, code, message) = public_error(e);
    oai_error(status, code, message)
}

/// What a caller is told of `e`: its status, code and a plain message. Internal details (node
/// and provider addresses, I/O errors) go to the log, not to the caller.
fn public_error(e: &Error) -> (u16, &'static str, String) {
    match e {
        Error::Refused {
            status,
            code,
            message,
        } => (*status, code, message.clone()),
        Error::Provider(e) => {
            tracing::warn!("provider: {e}");
            (
                503,
                "chain_unavailable",
                "the chain or the providers cannot be reached now; try again".into(),
            )
        }
        Error::Node(e) => {
            tracing::warn!("node: {e}");
            (
                503,
                "chain_unavailable",
                "the chain or the providers cannot be reached now; try again".into(),
            )
        }
        Error::BadInput(m) => (400, "bad_input", m.clone()),
        other => {
            tracing::warn!("provider error: {other}");
            (
                502,
                "provider_error",
                "the provider failed to serve the job".into(),
            )
        }
    }
}

pub(crate) fn client(state: &OpenAiState, headers: &HeaderMap) -> Result<Arc<Keypair>, Response> {
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    // Compared with every key, in time that does not depend on where they differ: a lookup
    // would tell a timing attacker how much of a guess is right.
    let found = key.and_then(|k| {
        state.keys.iter().fold(None, |hit, (known, wallet)| {
            if constant_time_eq(known.as_bytes(), k.as_bytes()) {
                Some(wallet)
            } else {
                hit
            }
        })
    });
    match found {
        Some(k) => Ok(k.clone()),
        None => Err(oai_error(
            401,
            "invalid_api_key",
            "missing or unknown API key (Authorization: Bearer KEY)",
        )),
    }
}

/// Whether `a` and `b` are equal, looking at every byte whatever the differences.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

/// The wallet behind the request's API key, and the model it names.
fn caller(
    st: &OpenAiState,
    headers: &HeaderMap,
    body: &Value,
) -> Result<(Arc<Keypair>, String), Response> {
    let key = client(st, headers)?;
    let model = body["model"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| oai_error(400, "missing_model", "`model` is required"))?;
    Ok((key, model))
}

/// How a streamed answer ends: with a last chunk that carries only the usage
/// (`stream_options.include_usage`), or not.
#[derive(Clone, Copy, Debug, Default)]
struct StreamOptions {
    include_usage: bool,
}

/// A generation request's sampling fields as job parameters, and how to answer (streamed or not,
/// how a stream ends, how many choices).
fn generation_params(body: &Value, default_max: u32) -> Result<(JobParams, How), Response> {
    let sampling: Sampling = serde_json::from_value(body.clone())
        .map_err(|e| oai_error(400, "invalid_request", e.to_string()))?;
    let mut options = StreamOptions::default();
    match &body["stream_options"] {
        Value::Null => {}
        Value::Object(o) => {
            for (k, v) in o {
                match (k.as_str(), v) {
                    ("include_usage", Value::Bool(b)) => options.include_usage = *b,
                    ("include_usage", Value::Null) => {}
                    _ => {
                        return Err(unsupported(&format!("stream_options.{k}")));
                    }
                }
            }
        }
        _ => {
            return Err(oai_error(
                400,
                "invalid_request",
                "`stream_options` must be an object",
            ));
        }
    }
    let mut params = sampling.params(default_max)?;
    params.stop = match &body["stop"] {
        Value::Null => Vec::new(),
        Value::String(s) => vec![s.clone()],
        Value::Array(a) if a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => {
            return Err(oai_error(
                400,
                "invalid_value",
                "`stop` is a string or an array of strings",
            ));
        }
    };
    let penalty = |field: &str| -> Result<i32, Response> {
        match &body[field] {
            Value::Null => Ok(0),
            v => match v.as_f64() {
                Some(x) if (-2.0..=2.0).contains(&x) => Ok((x * 1000.0).round() as i32),
                _ => Err(oai_error(
                    400,
                    "invalid_value",
                    format!("`{field}` is a number from -2 to 2"),
                )),
            },
        }
    };
    params.presence_penalty_milli = penalty("presence_penalty")?;
    params.frequency_penalty_milli = penalty("frequency_penalty")?;
    params
        .check()
        .map_err(|why| oai_error(400, "invalid_value", why))?;
    let how = How {
        stream: sampling.stream,
        options,
        echo: None,
        n: sampling.n.unwrap_or(1),
        tools: None,
    };
    Ok((params, how))
}

/// How a generation is answered: streamed or whole, how a stream ends, and with `echo` the
/// prompt before the answer.
struct How {
    stream: bool,
    options: StreamOptions,
    echo: Option<String>,
    /// Choices (`n`): each a job of its own, seeded `seed + i`.
    n: u32,
    /// The tools offered: an answer that is a call to one comes back as `tool_calls`.
    tools: Option<Arc<[Tool]>>,
}

/// The fields a generation endpoint acts on.
const GENERATION_FIELDS: &[&str] = &[
    "model",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "seed",
    "n",
    "stream",
    "stream_options",
    "verification",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    // Identifies the end user to the API's owner; nothing here depends on it.
    "user",
];

/// Whether `value` of a field this gateway does not act on asks for nothing beyond the default
/// (`null`, `false`, zero, empty), so that serving the request as if it were absent is right.
fn asks_nothing(field: &str, value: &Value) -> bool {
    let empty = match value {
        Value::Null | Value::Bool(false) => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(_) | Value::Bool(true) => false,
    };
    empty
        || match field {
            "response_format" => value == &json!({"type": "text"}),
            "tool_choice" => value == "none" || value == "auto",
            "service_tier" => value == "auto" || value == "default",
            "best_of" => value == 1,
            // Without tools, whether they may be called in parallel changes nothing.
            "parallel_tool_calls" => value.is_boolean(),
            _ => false,
        }
}

/// Fields of OpenAI's API that this gateway does not serve yet: a request that sets one to
/// anything but its default is refused (`unsupported_parameter`), never answered as if the
/// field were absent.
const NOT_YET: &[&str] = &[
    "top_logprobs",
    "logit_bias",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "functions",
    "function_call",
    "store",
    "metadata",
    "service_tier",
    "modalities",
    "audio",
    "prediction",
    "reasoning_effort",
    "web_search_options",
    // Completions only.
    "best_of",
    "suffix",
];

fn unsupported(field: &str) -> Response {
    oai_error(
        400,
        "unsupported_parameter",
        format!("`{field}` is not supported by this gateway yet"),
    )
}

/// Refuses a request with a field no endpoint knows, or one set to something not served.
fn check_fields(body: &Value, own: &[&str]) -> Result<(), Response> {
    let Value::Object(fields) = body else {
        return Err(oai_error(
            400,
            "invalid_request",
            "the body must be a JSON object",
        ));
    };
    for (name, value) in fields {
        let name = name.as_str();
        if own.contains(&name) || GENERATION_FIELDS.contains(&name) {
            continue;
        }
        if NOT_YET.contains(&name) {
            if asks_nothing(name, value) {
                continue;
            }
            return Err(unsupported(name));
        }
        return Err(oai_error(
            400,
            "unknown_parameter",
            format!("unrecognized request argument supplied: {name}"),
        ));
    }
    Ok(())
}

/// Seconds since the epoch, for OpenAI's `created` field (the gateway is off-chain).
#[allow(clippy::disallowed_methods)]
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn models(State(st): State<OpenAiState>) -> Response {
    let gw = st.gateway.clone();
    match tokio::task::spawn_blocking(move || gw.models()).await {
        Ok(Ok(models)) => Json(json!({
            "object": "list",
            "data": models.iter().map(|m| json!({
                "id": m.name, "object": "model", "created": 0, "owned_by": "agora",
                "agora": {"model_id": m.id, "kind": m.kind},
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Ok(Err(e)) => from_error(&e),
        Err(e) => internal(&e),
    }
}

/// What this gateway has measured of each provider (no key: how providers perform is public).
async fn provider_stats(State(st): State<OpenAiState>) -> Response {
    Json(json!({ "object": "list", "data": st.gateway.provider_stats() })).into_response()
}

async fn verify(State(st): State<OpenAiState>, Path(job_id): Path<String>) -> Response {
    let Ok(id) = job_id.parse::<Hash>() else {
        return oai_error(400, "invalid_job_id", "a job id is 64 hex digits");
    };
    let gateway = st.gateway.clone();
    match tokio::task::spawn_blocking(move || gateway.chain().job(&id)).await {
        Ok(Ok(Some(body))) => {
            let check = body.check.as_ref();
            let verdicts: Vec<Value> = check
                .map(|c| c.seats.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|s| {
                    json!({
                        "verifier": s.verifier,
                        "role": s.role,
                        "revealed": s.revealed_height.is_some(),
                        "verdict": s.verdict,
                    })
                })
                .collect();
            Json(json!({
                "job_id": id,
                "settled": true,
                "state": body.state,
                "height": body.height,
                "job": body.job,
                "verification": {
                    "level": body.job.level,
                    "sampled": body.sampled,
                    "verifiers": verdicts,
                    "dispute": check.is_some_and(|c| c.dispute),
                    "outcome": check.map(|c| c.outcome),
                },
            }))
            .into_response()
        }
        Ok(Ok(None)) => Json(json!({
            "job_id": id,
            "settled": false,
            "state": "not_settled",
        }))
        .into_response(),
        Ok(Err(e)) => from_error(&e.into()),
        Err(e) => internal(&e),
    }
}

/// Longest error text of a refused grammar passed back to the client.
const GRAMMAR_ERROR_CHARS: usize = 600;

/// Refuses a grammar the job could not carry (its syntax, its schema, its size), before any job.
/// Compiling takes up to tens of milliseconds: off the async threads.
async fn check_grammar(grammar: &str, what: &str) -> Result<(), Response> {
    let grammar = grammar.to_string();
    match tokio::task::spawn_blocking(move || agora_grammar::check(&grammar)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            let why: String = e.to_string().chars().take(GRAMMAR_ERROR_CHARS).collect();
            Err(oai_error(
                400,
                "invalid_value",
                format!("`{what}` cannot be followed: {why}"),
            ))
        }
        Err(e) => Err(internal(&e)),
    }
}

/// The grammar `response_format` asks for: a JSON schema's (`json_schema`), any JSON object
/// (`json_object`), or none (`text`).
fn response_grammar(body: &Value) -> Result<Option<String>, Response> {
    let format = &body["response_format"];
    let grammar = match format["type"].as_str() {
        _ if format.is_null() => return Ok(None),
        Some("text") => return Ok(None),
        Some("json_object") => agora_grammar::json_schema(&json!({"type": "object"})),
        Some("json_schema") => match &format["json_schema"]["schema"] {
            schema @ (Value::Object(_) | Value::Bool(true)) => agora_grammar::json_schema(schema),
            _ => {
                return Err(oai_error(
                    400,
                    "invalid_value",
                    "`response_format.json_schema.schema` must be a JSON schema (an object)",
                ));
            }
        },
        _ => {
            return Err(oai_error(
                400,
                "invalid_value",
                "`response_format.type` is text, json_object or json_schema",
            ));
        }
    };
    Ok(Some(grammar))
}

/// Longest tool name (OpenAI's bound).
const MAX_TOOL_NAME_CHARS: usize = 64;

/// Tools offered, and how the answer may use them.
type Offered = (Arc<[Tool]>, ToolChoice);

/// The tools a chat offers and how the answer may use them (`tools`, `tool_choice`); `None` when
/// none may be called.
fn offered_tools(body: &Value) -> Result<Option<Offered>, Response> {
    let bad = |why: &str| oai_error(400, "invalid_value", why.to_string());
    let mut tools = Vec::new();
    match &body["tools"] {
        Value::Null => {}
        Value::Array(list) => {
            for t in list {
                let f = &t["function"];
                let name = f["name"].as_str().unwrap_or("");
                let named = !name.is_empty()
                    && name.chars().count() <= MAX_TOOL_NAME_CHARS
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if t["type"] != "function" || !named {
                    return Err(bad(
                        "each tool is {\"type\": \"function\", \"function\": {\"name\": …}} with a \
                         name of letters, digits, _ and -, at most 64",
                    ));
                }
                if tools.iter().any(|x: &Tool| x.name == name) {
                    return Err(bad("two tools have the same name"));
                }
                let parameters = match &f["parameters"] {
                    Value::Null => json!({"type": "object", "properties": {}}),
                    p @ Value::Object(_) => p.clone(),
                    _ => return Err(bad("a tool's `parameters` is a JSON schema (an object)")),
                };
                tools.push(Tool {
                    name: name.to_string(),
                    description: f["description"].as_str().unwrap_or("").to_string(),
                    parameters,
                });
            }
        }
        _ => return Err(bad("`tools` is an array")),
    }
    let choice = match &body["tool_choice"] {
        Value::Null => (!tools.is_empty()).then_some(ToolChoice::Auto),
        Value::String(s) if s == "none" => None,
        Value::String(s) if s == "auto" => (!tools.is_empty()).then_some(ToolChoice::Auto),
        Value::String(s) if s == "required" => Some(ToolChoice::Required),
        v if v["type"] == "function" && v["function"]["name"].is_string() => Some(
            ToolChoice::Named(v["function"]["name"].as_str().unwrap_or("").to_string()),
        ),
        _ => {
            return Err(bad(
                "`tool_choice` is none, auto, required or {\"type\": \"function\", \"function\": {\"name\": …}}",
            ));
        }
    };
    let Some(choice) = choice else {
        return Ok(None);
    };
    if tools.is_empty() {
        return Err(bad(
            "`tool_choice` asks for a call but no `tools` are given",
        ));
    }
    if let ToolChoice::Named(name) = &choice
        && !tools.iter().any(|t| t.name == *name)
    {
        return Err(bad(&format!(
            "`tool_choice` names {name:?}, which is not among `tools`"
        )));
    }
    Ok(Some((tools.into(), choice)))
}

/// A chat answer that is a call to one of the `tools`, as OpenAI gives it: the message's
/// `tool_calls` (its id from the job's), no content, and `finish_reason` `tool_calls`.
fn as_tool_call(choice: &mut Value, done: &Completed, tools: &[Tool]) {
    if let Some(call) = tool_call(done, tools) {
        choice["message"] = json!({"role": "assistant", "content": null, "tool_calls": [call]});
        choice["finish_reason"] = json!("tool_calls");
    }
}

/// The answer of `done` as a tool call (`{id, type, function: {name, arguments}}`), if it is one.
fn tool_call(done: &Completed, tools: &[Tool]) -> Option<Value> {
    if finish_reason(done) != "stop" {
        return None;
    }
    let (name, arguments) = agora_grammar::parse_tool_call(text_of(done), tools)?;
    let id = done.job_id.to_hex();
    Some(
        json!({"id": format!("call_{}", &id[..24.min(id.len())]), "type": "function",
                "function": {"name": name, "arguments": arguments}}),
    )
}

/// A message's content: a string, or an array of `{type: "text", text}` parts.
fn content_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(""),
        ),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

#[derive(Deserialize)]
struct Sampling {
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    seed: Option<u64>,
    n: Option<u32>,
    #[serde(default)]
    stream: bool,
    /// Agora's extension: how the job is checked (`"none"`, `"sampled"`, `{"redundant": k}`).
    #[serde(default)]
    verification: Option<Verification>,
}

impl Sampling {
    fn params(&self, default_max: u32) -> Result<JobParams, Response> {
        match self.n.unwrap_or(1) {
            1 => {}
            n if !(1..=MAX_CHOICES).contains(&n) => {
                return Err(oai_error(
                    400,
                    "invalid_value",
                    format!("n is from 1 to {MAX_CHOICES}"),
                ));
            }
            _ => {}
        }
        let milli = |v: Option<f64>, default: u32, what: &str| -> Result<u32, Response> {
            match v {
                None => Ok(default),
                Some(x) if x.is_finite() && (0.0..=100.0).contains(&x) => {
                    Ok((x * 1000.0).round() as u32)
                }
                Some(_) => Err(oai_error(
                    400,
                    "invalid_value",
                    format!("{what} is out of range"),
                )),
            }
        };
        Ok(JobParams {
            max_tokens: self
                .max_completion_tokens
                .or(self.max_tokens)
                .unwrap_or(default_max)
                .max(1),
            temperature_milli: milli(self.temperature, 0, "temperature")?,
            top_p_milli: milli(self.top_p, 1000, "top_p")?,
            top_k: 0,
            seed: self.seed.unwrap_or(0),
            verification: self.verification.unwrap_or_default(),
            ..JobParams::default()
        })
    }
}

pub(crate) fn receipt_json(done: &Completed) -> Value {
    json!({
        "job_id": done.job_id,
        "model_id": done.model,
        "provider": done.provider,
        "input_hash": done.input_hash,
        "output_hash": done.receipt.receipt.output_hash,
        "input_tokens": done.receipt.receipt.input_tokens,
        "output_tokens": done.receipt.receipt.output_tokens,
        "fee": done.receipt.receipt.fee.to_string(),
        "provider_key": done.receipt.provider.to_hex(),
        "provider_signature": hex::encode(done.receipt.signature.0),
        "receipt": hex::encode(borsh::to_vec(&done.receipt).expect("borsh encoding into a Vec")),
    })
}

pub(crate) fn with_job_header(mut response: Response, done: &Completed) -> Response {
    if let Ok(v) = HeaderValue::from_str(&done.job_id.to_hex()) {
        response.headers_mut().insert("x-agora-job-id", v);
    }
    response
}

enum Step {
    Text(String),
    Done(Box<Result<Completed, Error>>),
}

/// How an endpoint shapes its answer: streamed chunks (a piece of text, or the end with the
/// receipt) and the whole response.
struct Shape {
    chunk: fn(&str, &str, u64, Option<&str>, Option<&Completed>) -> Value,
    finish: fn(&str, &str, u64, &Completed) -> Value,
}

const CHAT: Shape = Shape {
    chunk: chat_chunk,
    finish: chat_finish,
};

const TEXT: Shape = Shape {
    chunk: text_chunk,
    finish: text_finish,
};

/// Runs a generation job and answers in `shape`, streamed or whole.
async fn generate(
    st: OpenAiState,
    key: Arc<Keypair>,
    model_name: String,
    input: JobInput,
    params: JobParams,
    how: How,
    shape: Shape,
) -> Response {
    let How {
        stream,
        options,
        echo,
        n,
        tools,
    } = how;
    let Shape { chunk, finish } = shape;
    let gw = st.gateway.clone();
    let name = model_name.clone();
    // A model's providers, or with `subnet:N` a subnet's miners by incentive.
    let (max_input, max_output) = crate::gateway::job_bounds(&input, &params);
    let found = tokio::task::spawn_blocking(move || {
        gw.targets(&name, agora_types::ModelKind::Chat, max_input, max_output)
    });
    let targets = match found.await {
        Ok(Ok(t)) if !t.is_empty() => t,
        Ok(Ok(_)) => {
            return oai_error(
                503,
                "no_provider",
                format!("no registered provider serves {model_name:?}"),
            );
        }
        Ok(Err(e)) => return from_error(&e),
        Err(e) => return internal(&e),
    };
    if n > 1 && !stream {
        return choices(
            st,
            key,
            (model_name, targets),
            input,
            params,
            (echo, tools),
            n,
            finish,
        )
        .await;
    }
    // One job per choice (choice `i` seeded `seed + i`), their steps merged as they come.
    let (tx, mut rx) = mpsc::channel::<(usize, Step)>(64);
    for i in 0..n as usize {
        let (gw, key, targets, input, tx) = (
            st.gateway.clone(),
            key.clone(),
            targets.clone(),
            input.clone(),
            tx.clone(),
        );
        let params = JobParams {
            seed: params.seed.wrapping_add(i as u64),
            ..params.clone()
        };
        tokio::task::spawn_blocking(move || {
            let result = gw.run_on(&key, &targets, &input, params, &mut |text| {
                if !stream {
                    return ControlFlow::Continue(());
                }
                match tx.blocking_send((i, Step::Text(text.to_string()))) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(_) => ControlFlow::Break(()),
                }
            });
            let _ = tx.blocking_send((i, Step::Done(Box::new(result))));
        });
    }
    drop(tx);
    let created = now();
    if !stream {
        while let Some((_, step)) = rx.recv().await {
            if let Step::Done(result) = step {
                return match *result {
                    Ok(done) => {
                        let id = done.job_id.to_hex();
                        let mut body = finish(&id, &model_name, created, &done);
                        if let Some(prompt) = &echo {
                            body["choices"][0]["text"] =
                                json!(format!("{prompt}{}", text_of(&done)));
                        }
                        if let Some(tools) = &tools {
                            as_tool_call(&mut body["choices"][0], &done, tools);
                        }
                        with_job_header(Json(body).into_response(), &done)
                    }
                    Err(e) => from_error(&e),
                };
            }
        }
        return oai_error(502, "provider_error", "the job ended without a result");
    }
    // Streamed: with one choice, the first step decides between an HTTP error and a stream.
    let first = match rx.recv().await {
        Some((_, Step::Done(result))) if n == 1 => match *result {
            Err(e) => return from_error(&e),
            Ok(done) => (0, Step::Done(Box::new(Ok(done)))),
        },
        Some(step) => step,
        None => return oai_error(502, "provider_error", "the job ended without a result"),
    };
    let rest = ReceiverStream::new(rx);
    // With `echo`, each choice's prompt comes first.
    let head: Vec<(usize, Step)> = echo
        .into_iter()
        .flat_map(|prompt| (0..n as usize).map(move |i| (i, Step::Text(prompt.clone()))))
        .chain([first])
        .collect();
    let steps = futures_util::StreamExt::chain(futures_util::stream::iter(head), rest);
    let id = format!("job-{created}");
    // With tools, an answer's first character tells a call (`{`, held back until it is whole)
    // from text (streamed as it comes).
    let mut leads: Vec<Lead> = (0..n)
        .map(|_| {
            if tools.is_some() {
                Lead::Undecided(String::new())
            } else {
                Lead::Text
            }
        })
        .collect();
    let mut running = n as usize;
    let (mut input_tokens, mut output_tokens) = (0u64, 0u64);
    let events = futures_util::StreamExt::flat_map(steps, move |(i, step)| {
        let at = |mut v: Value| {
            v["choices"][0]["index"] = json!(i);
            Event::default().data(v.to_string())
        };
        let text_event = |text: &str| at(chunk(&id, &model_name, created, Some(text), None));
        let mut events: Vec<Event> = match step {
            Step::Text(text) => match &mut leads[i] {
                Lead::Text => vec![text_event(&text)],
                Lead::Call(held) => {
                    held.push_str(&text);
                    vec![]
                }
                Lead::Undecided(held) => {
                    held.push_str(&text);
                    // A call starts with `{` itself (its grammar's first character).
                    if held.is_empty() {
                        vec![]
                    } else if held.starts_with('{') {
                        leads[i] = Lead::Call(std::mem::take(held));
                        vec![]
                    } else {
                        let event = text_event(held);
                        leads[i] = Lead::Text;
                        vec![event]
                    }
                }
            },
            Step::Done(result) => {
                running -= 1;
                match *result {
                    Ok(done) => {
                        let id = done.job_id.to_hex();
                        input_tokens += u64::from(done.receipt.receipt.input_tokens);
                        output_tokens += u64::from(done.receipt.receipt.output_tokens);
                        let mut last = chunk(&id, &model_name, created, None, Some(&done));
                        let mut events = Vec::new();
                        let call = tools.as_ref().and_then(|t| tool_call(&done, t));
                        match (&leads[i], call) {
                            (_, Some(mut call)) => {
                                call["index"] = json!(0);
                                let mut head = chunk(&id, &model_name, created, Some(""), None);
                                head["choices"][0]["delta"] = json!({"role": "assistant",
                                    "content": null, "tool_calls": [call]});
                                events.push(at(head));
                                last["choices"][0]["finish_reason"] = json!("tool_calls");
                            }
                            (Lead::Undecided(held) | Lead::Call(held), None)
                                if !held.is_empty() =>
                            {
                                // Not a call after all (cut short, say): the text as it is.
                                events.push(text_event(held));
                            }
                            _ => {}
                        }
                        events.push(at(last));
                        events
                    }
                    Err(e) => {
                        let (_, code, message) = public_error(&e);
                        vec![
                            Event::default().data(
                                json!({"error": {"message": message, "type": "api_error",
                                             "code": code, "choice": i}})
                                .to_string(),
                            ),
                        ]
                    }
                }
            }
        };
        if running == 0 {
            if options.include_usage {
                // OpenAI's last chunk: no choices, the whole request's usage.
                let mut last = chunk(&id, &model_name, created, None, None);
                last["choices"] = json!([]);
                last["usage"] = json!({"prompt_tokens": input_tokens,
                    "completion_tokens": output_tokens,
                    "total_tokens": input_tokens + output_tokens});
                events.push(Event::default().data(last.to_string()));
            }
            events.push(Event::default().data("[DONE]"));
        }
        futures_util::stream::iter(events.into_iter().map(Ok::<_, Infallible>))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response()
}

/// Where a streamed answer stands when tools are offered.
enum Lead {
    /// Only whitespace so far (held back).
    Undecided(String),
    /// Text: streamed as it comes.
    Text,
    /// A call: held back until the answer is whole.
    Call(String),
}

/// `n` choices, unstreamed: `n` jobs at once (choice `i` seeded `seed + i`), each choice with its
/// own receipt (`choices[i].agora`; the top-level `agora` is the first's). The usage is what the
/// jobs were charged for: each counts the prompt.
#[allow(clippy::too_many_arguments)]
async fn choices(
    st: OpenAiState,
    key: Arc<Keypair>,
    (model_name, targets): (String, Vec<(crate::ProviderListing, Hash)>),
    input: JobInput,
    params: JobParams,
    (echo, tools): (Option<String>, Option<Arc<[Tool]>>),
    n: u32,
    finish: fn(&str, &str, u64, &Completed) -> Value,
) -> Response {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (gw, key, targets, input) = (
                st.gateway.clone(),
                key.clone(),
                targets.clone(),
                input.clone(),
            );
            let params = JobParams {
                seed: params.seed.wrapping_add(u64::from(i)),
                ..params.clone()
            };
            tokio::task::spawn_blocking(move || {
                gw.run_on(&key, &targets, &input, params, &mut |_| {
                    ControlFlow::Continue(())
                })
            })
        })
        .collect();
    // Every choice is waited for: one that failed does not leave the others running unseen.
    let mut done = Vec::with_capacity(tasks.len());
    let mut failed = None;
    for task in tasks {
        match task.await {
            Ok(Ok(d)) => done.push(d),
            Ok(Err(e)) => failed = failed.or(Some(from_error(&e))),
            Err(e) => failed = failed.or(Some(internal(&e))),
        }
    }
    if let Some(response) = failed {
        if !done.is_empty() {
            // The served choices are charged: say which, so the client can find their receipts.
            let served: Vec<String> = done.iter().map(|d| d.job_id.to_hex()).collect();
            tracing::info!(
                "{} of {n} choices served before one failed: {served:?}",
                done.len()
            );
            let mut response = response;
            if let Ok(v) = HeaderValue::from_str(&served.join(",")) {
                response.headers_mut().insert("x-agora-served-jobs", v);
            }
            return response;
        }
        return response;
    }
    let created = now();
    let id = done[0].job_id.to_hex();
    let mut body = finish(&id, &model_name, created, &done[0]);
    let mut all = Vec::with_capacity(done.len());
    let (mut input_tokens, mut output_tokens) = (0u64, 0u64);
    for (i, d) in done.iter().enumerate() {
        let mut choice = finish(&id, &model_name, created, d)["choices"][0].clone();
        choice["index"] = i.into();
        if let Some(prompt) = &echo {
            choice["text"] = json!(format!("{prompt}{}", text_of(d)));
        }
        if let Some(tools) = &tools {
            as_tool_call(&mut choice, d, tools);
        }
        choice["agora"] = receipt_json(d);
        all.push(choice);
        input_tokens += u64::from(d.receipt.receipt.input_tokens);
        output_tokens += u64::from(d.receipt.receipt.output_tokens);
    }
    body["choices"] = Value::Array(all);
    body["usage"] = json!({"prompt_tokens": input_tokens, "completion_tokens": output_tokens,
                           "total_tokens": input_tokens + output_tokens});
    with_job_header(Json(body).into_response(), &done[0])
}

fn finish_reason(done: &Completed) -> &'static str {
    match &done.output {
        JobOutput::Text { finish, .. } if finish == "length" => "length",
        _ => "stop",
    }
}

fn usage(done: &Completed) -> Value {
    let (i, o) = (
        done.receipt.receipt.input_tokens,
        done.receipt.receipt.output_tokens,
    );
    json!({"prompt_tokens": i, "completion_tokens": o, "total_tokens": u64::from(i) + u64::from(o)})
}

fn text_of(done: &Completed) -> &str {
    match &done.output {
        JobOutput::Text { text, .. } => text,
        _ => "",
    }
}

/// A token's text as OpenAI shows it (bytes that are not whole characters become U+FFFD).
fn token_text(l: &Logprob) -> String {
    String::from_utf8_lossy(&l.bytes).into_owned()
}

/// The log-probabilities of the answer's tokens, less a final stop token (it is not content).
fn answer_logprobs(done: &Completed) -> Option<&[TokenLogprob]> {
    let JobOutput::Text {
        logprobs: Some(l),
        finish,
        ..
    } = &done.output
    else {
        return None;
    };
    let n = l.output.len();
    Some(
        &l.output[..if finish == "stop" {
            n.saturating_sub(1)
        } else {
            n
        }],
    )
}

/// Chat's `logprobs`: `{"content": [{token, bytes, logprob, top_logprobs}], "refusal": null}`.
fn chat_logprobs(done: &Completed) -> Value {
    let Some(entries) = answer_logprobs(done) else {
        return Value::Null;
    };
    let one = |l: &Logprob| json!({"token": token_text(l), "bytes": l.bytes, "logprob": l.logprob});
    let content: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut v = one(&e.chosen);
            v["top_logprobs"] = e.top.iter().map(one).collect();
            v
        })
        .collect();
    json!({"content": content, "refusal": null})
}

/// The legacy completions' `logprobs`: parallel arrays of tokens, their log-probabilities, the
/// alternatives (token → log-probability) and each token's offset in the text; with `echo`, the
/// prompt's tokens first (the very first with null).
fn text_logprobs(done: &Completed) -> Value {
    // The legacy API lists a generated stop token too: harnesses count on one entry per token.
    let JobOutput::Text {
        logprobs: Some(l), ..
    } = &done.output
    else {
        return Value::Null;
    };
    let answer = &l.output;
    let (mut tokens, mut values, mut tops, mut offsets) = (vec![], vec![], vec![], vec![]);
    let mut offset = 0usize;
    let mut push = |l: &Logprob, value: Value, top: Value| {
        let text = token_text(l);
        offsets.push(offset);
        offset += text.chars().count();
        tokens.push(text);
        values.push(value);
        tops.push(top);
    };
    if let Some(first) = &l.prompt_first {
        push(first, Value::Null, Value::Null);
    }
    for e in l.prompt.iter().chain(answer) {
        let top: serde_json::Map<String, Value> = e
            .top
            .iter()
            .map(|t| (token_text(t), json!(t.logprob)))
            .collect();
        push(&e.chosen, json!(e.chosen.logprob), Value::Object(top));
    }
    json!({"tokens": tokens, "token_logprobs": values, "top_logprobs": tops, "text_offset": offsets})
}

fn chat_chunk(
    id: &str,
    model: &str,
    created: u64,
    text: Option<&str>,
    done: Option<&Completed>,
) -> Value {
    match done {
        None => json!({
            "id": format!("chatcmpl-{id}"), "object": "chat.completion.chunk", "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": text.unwrap_or("")}, "finish_reason": null}],
        }),
        Some(done) => json!({
            "id": format!("chatcmpl-{id}"), "object": "chat.completion.chunk", "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason(done),
                         "logprobs": chat_logprobs(done)}],
            "usage": usage(done),
            "agora": receipt_json(done),
        }),
    }
}

fn chat_finish(id: &str, model: &str, created: u64, done: &Completed) -> Value {
    json!({
        "id": format!("chatcmpl-{id}"), "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text_of(done)},
                     "finish_reason": finish_reason(done), "logprobs": chat_logprobs(done)}],
        "usage": usage(done),
        "agora": receipt_json(done),
    })
}

fn text_chunk(
    id: &str,
    model: &str,
    created: u64,
    text: Option<&str>,
    done: Option<&Completed>,
) -> Value {
    json!({
        "id": format!("cmpl-{id}"), "object": "text_completion", "created": created, "model": model,
        "choices": [{"index": 0, "text": text.unwrap_or(""),
                     "logprobs": done.map_or(Value::Null, text_logprobs),
                     "finish_reason": done.map(finish_reason)}],
        "usage": done.map(usage),
        "agora": done.map(receipt_json),
    })
}

fn text_finish(id: &str, model: &str, created: u64, done: &Completed) -> Value {
    json!({
        "id": format!("cmpl-{id}"), "object": "text_completion", "created": created, "model": model,
        "choices": [{"index": 0, "text": text_of(done), "logprobs": text_logprobs(done),
                     "finish_reason": finish_reason(done)}],
        "usage": usage(done),
        "agora": receipt_json(done),
    })
}

async fn chat(
    State(st): State<OpenAiState>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let (key, model) = match caller(&st, &headers, &body) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = check_fields(
        &body,
        &[
            "messages",
            "logprobs",
            "top_logprobs",
            "response_format",
            "tools",
            "tool_choice",
            "parallel_tool_calls",
        ],
    ) {
        return r;
    }
    let Some(raw) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
        return oai_error(
            400,
            "missing_messages",
            "`messages` must be a non-empty array",
        );
    };
    let mut messages = Vec::new();
    for m in raw {
        let (Some(role), Some(mut content)) = (m["role"].as_str(), content_text(&m["content"]))
        else {
            return oai_error(
                400,
                "invalid_message",
                "each message needs a role and text content",
            );
        };
        // An earlier answer's tool calls, written as the model writes a call.
        if let Some(calls) = m["tool_calls"].as_array() {
            for c in calls {
                let f = &c["function"];
                let Some(arguments) = f["arguments"]
                    .as_str()
                    .and_then(|a| serde_json::from_str::<Value>(a).ok())
                else {
                    return oai_error(
                        400,
                        "invalid_message",
                        "a tool call's `function.arguments` must be JSON text",
                    );
                };
                // As the model writes a call under its grammar.
                let call =
                    agora_grammar::layout(&json!({"name": f["name"], "arguments": arguments}));
                if !content.is_empty() {
                    content.push('\n');
                }
                content.push_str(&call);
            }
        }
        let role = if role == "developer" { "system" } else { role };
        messages.push(ChatMessage {
            role: role.to_string(),
            content,
        });
    }
    let tools = match offered_tools(&body) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let format = match response_grammar(&body) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let grammar = match (&tools, format) {
        (None, format) => format,
        (Some(_), Some(_)) => {
            return oai_error(
                400,
                "invalid_value",
                "`response_format` and `tools` cannot both shape the answer: send one",
            );
        }
        (Some((tools, choice)), None) => {
            let grammar = match agora_grammar::tools_grammar(tools, choice) {
                Ok(g) => g,
                Err(why) => return oai_error(400, "invalid_value", format!("`tools`: {why}")),
            };
            // The model is told of the tools in the system message.
            let prompt = agora_grammar::tools_prompt(tools);
            match messages.first_mut() {
                Some(first) if first.role == "system" => {
                    first.content = format!("{}\n\n{prompt}", first.content);
                }
                _ => messages.insert(
                    0,
                    ChatMessage {
                        role: "system".into(),
                        content: prompt,
                    },
                ),
            }
            Some(grammar)
        }
    };
    if let Some(g) = &grammar {
        let what = if tools.is_some() {
            "tools"
        } else {
            "response_format"
        };
        if let Err(r) = check_grammar(g, what).await {
            return r;
        }
    }
    let (mut params, mut how) = match generation_params(&body, DEFAULT_MAX_TOKENS) {
        Ok(p) => p,
        Err(r) => return r,
    };
    how.tools = tools.map(|(t, _)| t);
    params.logprobs = match (&body["logprobs"], &body["top_logprobs"]) {
        (Value::Bool(true), Value::Null) => Some(0),
        (Value::Bool(true), top) => match top.as_u64() {
            Some(k) if k <= u64::from(agora_types::MAX_TOP_LOGPROBS) => Some(k as u8),
            _ => {
                return oai_error(
                    400,
                    "invalid_value",
                    format!(
                        "`top_logprobs` is an integer from 0 to {}",
                        agora_types::MAX_TOP_LOGPROBS
                    ),
                );
            }
        },
        (Value::Bool(false) | Value::Null, Value::Null) => None,
        (Value::Bool(false) | Value::Null, _) => {
            return oai_error(
                400,
                "invalid_value",
                "`top_logprobs` needs `logprobs` set to true",
            );
        }
        _ => return oai_error(400, "invalid_value", "`logprobs` is true or false"),
    };
    generate(
        st,
        key,
        model,
        JobInput::Chat { messages, grammar },
        params,
        how,
        CHAT,
    )
    .await
}

async fn completions(
    State(st): State<OpenAiState>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let (key, model) = match caller(&st, &headers, &body) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = check_fields(&body, &["prompt", "logprobs", "echo"]) {
        return r;
    }
    let prompt = match &body["prompt"] {
        Value::String(s) => s.clone(),
        Value::Array(a) if a.len() == 1 && a[0].is_string() => {
            a[0].as_str().unwrap_or("").to_string()
        }
        _ => return oai_error(400, "invalid_prompt", "`prompt` must be a string"),
    };
    // OpenAI's default for completions is 16 tokens.
    let (mut params, how) = match generation_params(&body, 16) {
        Ok(p) => p,
        Err(r) => return r,
    };
    // The legacy API: `logprobs` is how many alternatives (0 for the tokens' own only).
    params.logprobs = match &body["logprobs"] {
        Value::Null => None,
        v => match v.as_u64() {
            Some(k) if k <= u64::from(agora_types::MAX_TOP_LOGPROBS) => Some(k as u8),
            _ => {
                return oai_error(
                    400,
                    "invalid_value",
                    format!(
                        "`logprobs` is an integer from 0 to {}",
                        agora_types::MAX_TOP_LOGPROBS
                    ),
                );
            }
        },
    };
    let echo = match &body["echo"] {
        Value::Null | Value::Bool(false) => false,
        Value::Bool(true) => true,
        _ => return oai_error(400, "invalid_value", "`echo` is true or false"),
    };
    params.prompt_logprobs = echo && params.logprobs.is_some();
    // Scoring a text with no answer at all, as evaluation harnesses do.
    if echo && body["max_tokens"] == 0 {
        params.max_tokens = 0;
    }
    generate(
        st,
        key,
        model,
        JobInput::Completion {
            prompt: prompt.clone(),
            grammar: None,
        },
        params,
        How {
            echo: echo.then_some(prompt),
            ..how
        },
        TEXT,
    )
    .await
}

async fn embeddings(
    State(st): State<OpenAiState>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let (key, model_name) = match caller(&st, &headers, &body) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => {
            return oai_error(
                400,
                "invalid_input",
                "`input` must be a string or an array of strings",
            );
        }
    };
    let base64 = match body["encoding_format"].as_str() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return oai_error(
                400,
                "invalid_encoding_format",
                format!("unknown encoding_format {other:?}"),
            );
        }
    };
    let verification = match body.get("verification") {
        None => Verification::default(),
        Some(v) => match serde_json::from_value(v.clone()) {
            Ok(v) => v,
            Err(_) => {
                return oai_error(
                    400,
                    "invalid_verification",
                    "`verification` is \"none\", \"sampled\" or {\"redundant\": k}",
                );
            }
        },
    };
    let gw = st.gateway.clone();
    let name = model_name.clone();
    let result = tokio::task::spawn_blocking(move || {
        let model = gw.resolve_model(&name)?;
        gw.run(
            &key,
            model,
            &JobInput::Embedding { inputs },
            JobParams {
                verification,
                ..JobParams::default()
            },
            &mut |_| ControlFlow::Continue(()),
        )
    })
    .await;
    let done = match result {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return from_error(&e),
        Err(e) => return internal(&e),
    };
    let JobOutput::Embeddings { vectors } = &done.output else {
        return oai_error(
            400,
            "wrong_model_kind",
            format!("{model_name} is not an embedding model"),
        );
    };
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let tokens = done.receipt.receipt.input_tokens;
    let body = json!({
        "object": "list",
        "data": data,
        "model": model_name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        "agora": receipt_json(&done),
    });
    with_job_header(Json(body).into_response(), &done)
}
