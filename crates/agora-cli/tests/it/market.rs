//! `agora devnet` end to end with the real models: the official `openai` Python package talks to
//! the gateway (chat, streamed chat, embeddings, refusals), and the chain settles every job for
//! exactly its fee.
//!
//! Needs the models (see `infer`) and a Python with `openai`: `AGORA_OPENAI_PYTHON` names it
//! (`.ci/run` makes one); without it, `python3` is tried, and the test is skipped (with a line
//! saying so) when that has no `openai` — unless `AGORA_REQUIRE_MODELS=1`.

use crate::infer::{models_available, models_dir};
use crate::{get, sigterm};
use agora_types::AGR;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CLIENT: &str = r#"
import json, os, sys
import openai
from openai import OpenAI

c = OpenAI(base_url=os.environ["GATEWAY"] + "/v1", api_key=os.environ["KEY"])
out = {"jobs": []}

models = [m.id for m in c.models.list()]
out["models"] = models

# "In one sentence": asked bare, SmolLM2-135M's first answer token is a near-tie ("L" against
# "The", 0.07 apart), which any change in the last bits of the arithmetic may flip.
r = c.chat.completions.create(
    model="smollm2-135m-instruct",
    messages=[{"role": "user", "content": "What is the capital of France? Answer in one sentence."}],
    max_tokens=24,
)
out["chat"] = r.choices[0].message.content
out["jobs"].append(r.model_extra["agora"])

parts, last = [], None
for chunk in c.chat.completions.create(
    model="smollm2-135m-instruct",
    messages=[{"role": "user", "content": "What is the capital of France? Answer in one sentence."}],
    max_tokens=24,
    stream=True,
):
    last = chunk
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
out["streamed"] = "".join(parts)
out["jobs"].append(last.model_extra["agora"])

# Log-probabilities, as evaluation harnesses read them.
r = c.chat.completions.create(
    model="smollm2-135m-instruct",
    messages=[{"role": "user", "content": "What is the capital of France?"}],
    max_tokens=8,
    logprobs=True,
    top_logprobs=2,
)
out["logprobs"] = [[t.token, t.logprob, len(t.top_logprobs)] for t in r.choices[0].logprobs.content]
out["jobs"].append(r.model_extra["agora"])
r = c.completions.create(
    model="smollm2-135m-instruct", prompt="The capital of France is", max_tokens=1, echo=True, logprobs=1
)
lp = r.choices[0].logprobs
out["echo"] = {"text": r.choices[0].text, "tokens": lp.tokens, "values": lp.token_logprobs}
out["jobs"].append(r.model_extra["agora"])
stream = c.chat.completions.create(
    model="smollm2-135m-instruct",
    messages=[{"role": "user", "content": "Say hi."}],
    max_tokens=4,
    stream=True,
    stream_options={"include_usage": True},
)
chunks = list(stream)
out["usage_chunk"] = [len(chunks[-1].choices), chunks[-1].usage.completion_tokens]
out["jobs"].append(chunks[-2].model_extra["agora"])

# Structured outputs through the client's own helper: a pydantic model becomes a strict JSON
# schema, and the answer is parsed back into it.
from pydantic import BaseModel, Field


class Capital(BaseModel):
    country: str = Field(max_length=40)
    city: str = Field(max_length=40)
    population_millions: int


r = c.chat.completions.parse(
    model="smollm2-135m-instruct",
    messages=[{"role": "user", "content": "What is the capital of France? Answer in JSON."}],
    response_format=Capital,
    max_tokens=64,
)
out["parsed"] = r.choices[0].message.parsed.model_dump()
out["jobs"].append(r.model_extra["agora"])
# A tool the answer must call, with the client's helper for tool schemas.


class GetWeather(BaseModel):
    city: str = Field(max_length=40)
    unit: str = Field(pattern="^(celsius|fahrenheit)$")


r = c.chat.completions.create(
    model="smollm2-135m-instruct",
    messages=[{"role": "user", "content": "What is the weather in Paris?"}],
    tools=[openai.pydantic_function_tool(GetWeather)],
    tool_choice="required",
    max_tokens=64,
)
call = r.choices[0].message.tool_calls[0]
out["tool_call"] = {"name": call.function.name, "arguments": json.loads(call.function.arguments),
                    "finish": r.choices[0].finish_reason}
out["jobs"].append(r.model_extra["agora"])

# A private prompt: nothing on the chain, on disk or in the logs may show it, or its answer.
r = c.chat.completions.create(
    model="smollm2-135m-instruct",
    messages=[
        {"role": "system", "content": "The code word is " + os.environ["MARKER"] + "."},
        {"role": "user", "content": "Write two sentences about the sea."},
    ],
    max_tokens=32,
)
out["private_answer"] = r.choices[0].message.content
out["jobs"].append(r.model_extra["agora"])
e = c.embeddings.create(model="all-minilm-l6-v2", input=[os.environ["MARKER"] + " ledger"])
out["jobs"].append(e.model_extra["agora"])

e = c.embeddings.create(model="all-minilm-l6-v2", input=["a cat", "a kitten", "a tax form"])
v = [d.embedding for d in e.data]
dot = lambda a, b: sum(x * y for x, y in zip(a, b))
out["embedding_dims"] = len(v[0])
out["cat_kitten"] = dot(v[0], v[1])
out["cat_tax"] = dot(v[0], v[2])
out["jobs"].append(e.model_extra["agora"])

try:
    c.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    out["unknown_model"] = "accepted"
except openai.NotFoundError as err:
    out["unknown_model"] = err.code
try:
    c.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=[{"role": "user", "content": "word " * 5000}],
    )
    out["too_long"] = "accepted"
except openai.BadRequestError as err:
    out["too_long"] = err.code
try:
    OpenAI(base_url=os.environ["GATEWAY"] + "/v1", api_key="wrong").models.list()
    bad = OpenAI(base_url=os.environ["GATEWAY"] + "/v1", api_key="wrong")
    bad.chat.completions.create(model="smollm2-135m-instruct", messages=[{"role": "user", "content": "hi"}])
    out["bad_key"] = "accepted"
except openai.AuthenticationError as err:
    out["bad_key"] = err.code
print(json.dumps(out))
"#;

/// The same gateway through OpenAI's JavaScript client (another implementation of the API's
/// client side): chat with log-probabilities and a stop text, a stream ending with its usage,
/// embeddings (which it asks for in base64), and a refused parameter.
const JS_CLIENT: &str = r#"
const OpenAI = require("openai");
const c = new OpenAI({ baseURL: process.env.GATEWAY + "/v1", apiKey: process.env.KEY });
const model = "smollm2-135m-instruct";
const ask = [{ role: "user", content: "What is the capital of France? Answer in one sentence." }];
(async () => {
  const out = { jobs: [] };
  const r = await c.chat.completions.create({
    model, messages: ask, max_tokens: 24, logprobs: true, top_logprobs: 2, stop: ["\n"], seed: 7,
  });
  out.chat = r.choices[0].message.content;
  out.finish = r.choices[0].finish_reason;
  out.logprobs = r.choices[0].logprobs.content.length;
  out.jobs.push(r.agora);
  const stream = await c.chat.completions.create({
    model, messages: ask, max_tokens: 24, stream: true, stream_options: { include_usage: true },
  });
  let text = "", receipt = null, usage = null;
  for await (const chunk of stream) {
    const delta = chunk.choices[0] && chunk.choices[0].delta;
    if (delta && delta.content) text += delta.content;
    if (chunk.agora) receipt = chunk.agora;
    if (chunk.usage && chunk.choices.length === 0) usage = chunk.usage.completion_tokens;
  }
  out.streamed = text;
  out.usage = usage;
  out.jobs.push(receipt);
  const e = await c.embeddings.create({ model: "all-minilm-l6-v2", input: ["a cat", "a kitten"] });
  out.dims = e.data[0].embedding.length;
  out.jobs.push(e.agora);
  const j = await c.chat.completions.create({
    model, messages: ask, max_tokens: 48,
    response_format: { type: "json_schema", json_schema: { name: "answer", strict: true, schema: {
      type: "object", properties: { city: { type: "string", maxLength: 40 } }, required: ["city"],
      additionalProperties: false } } },
  });
  out.json = JSON.parse(j.choices[0].message.content);
  out.jobs.push(j.agora);
  const t = await c.chat.completions.create({
    model, messages: [{ role: "user", content: "Add 2 and 3." }], max_tokens: 48,
    tools: [{ type: "function", function: { name: "add", description: "Adds two integers",
      parameters: { type: "object", properties: { a: { type: "integer" }, b: { type: "integer" } },
        required: ["a", "b"], additionalProperties: false } } }],
    tool_choice: { type: "function", function: { name: "add" } },
  });
  const call = t.choices[0].message.tool_calls[0];
  out.tool = { name: call.function.name, arguments: JSON.parse(call.function.arguments),
               finish: t.choices[0].finish_reason };
  out.jobs.push(t.agora);
  try {
    await c.chat.completions.create({ model, messages: ask, logit_bias: { "42": -100 } });
    out.refused = "accepted";
  } catch (err) {
    out.refused = `${err.status} ${err.code}`;
  }
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"#;

/// Node and a `node_modules` folder that has `openai`, or `None` (skip).
fn openai_node() -> Option<String> {
    let required = std::env::var_os("AGORA_REQUIRE_MODELS").is_some();
    let modules = std::env::var("AGORA_OPENAI_NODE_MODULES").unwrap_or_default();
    let ok = !modules.is_empty()
        && Command::new("node")
            .args(["-e", "require('openai')"])
            .env("NODE_PATH", &modules)
            .status()
            .is_ok_and(|s| s.success());
    match (ok, required) {
        (true, _) => Some(modules),
        (false, true) => panic!(
            "node cannot load `openai` from AGORA_OPENAI_NODE_MODULES={modules:?} (.ci/run installs it)"
        ),
        (false, false) => {
            eprintln!("SKIPPED: OpenAI's JavaScript client (set AGORA_OPENAI_NODE_MODULES)");
            None
        }
    }
}

/// A Python that has `openai`, or `None` (skip).
fn openai_python() -> Option<String> {
    let required = std::env::var_os("AGORA_REQUIRE_MODELS").is_some();
    let python = std::env::var("AGORA_OPENAI_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import openai"])
        .status()
        .is_ok_and(|s| s.success());
    match (ok, required) {
        (true, _) => Some(python),
        (false, true) => panic!("{python} has no `openai` package (set AGORA_OPENAI_PYTHON)"),
        (false, false) => {
            eprintln!("SKIPPED: {python} has no `openai` package (set AGORA_OPENAI_PYTHON)");
            None
        }
    }
}

fn read_addr(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().filter(|s| !s.is_empty())
}

#[test]
fn openai_clients_use_the_devnet_and_every_job_is_settled_for_exactly_its_fee() {
    if !models_available() {
        return;
    }
    let Some(python) = openai_python() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("devnet.log");
    let _show = ShowLogOnFailure(log_path.clone());
    // Everything the node, provider and gateway log, to be searched for private text below.
    let (mut child, api, gateway) = start_devnet(home.path(), &log_path, "debug", &[]);
    let key = std::fs::read_to_string(home.path().join("config/gateway_api_key")).unwrap();

    let out = Command::new(&python)
        .args(["-c", CLIENT])
        .env("GATEWAY", &gateway)
        .env("KEY", key.trim())
        .env("MARKER", MARKER)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the openai client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let js = openai_node().map(|modules| {
        let out = Command::new("node")
            .args(["-e", JS_CLIENT])
            .env("NODE_PATH", modules)
            .env("GATEWAY", &gateway)
            .env("KEY", key.trim())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the JavaScript client failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    });
    let audit_jobs = audit_through_the_gateway(&gateway, key.trim());
    let audit_id = audit_jobs[0]["job_id"].as_str().unwrap().to_string();
    let query_jobs = query_through_the_gateway(&gateway, key.trim());
    let zk_jobs = zk_through_the_gateway(&gateway, key.trim());
    let models: Vec<&str> = r["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(models.contains(&"smollm2-135m-instruct") && models.contains(&"all-minilm-l6-v2"));
    assert!(models.contains(&agora_audit::MODEL_NAME), "{models:?}");
    let chat = r["chat"].as_str().unwrap();
    assert!(chat.contains("Paris"), "{chat}");
    assert_eq!(
        r["streamed"], r["chat"],
        "greedy: streamed and whole answers agree"
    );
    assert_eq!(r["embedding_dims"], 384);
    assert!(r["cat_kitten"].as_f64().unwrap() > r["cat_tax"].as_f64().unwrap());
    assert_eq!(r["unknown_model"], "model_not_found");
    assert_eq!(r["too_long"], "context_length_exceeded");
    assert_eq!(r["bad_key"], "invalid_api_key");
    // Log-probabilities through the official client: each answer token with two alternatives,
    // and with echo the prompt's tokens first (the first without a value).
    let lps = r["logprobs"].as_array().unwrap();
    assert!(!lps.is_empty(), "{r}");
    for e in lps {
        assert!(e[1].as_f64().unwrap() <= 0.0 && e[2] == 2, "{e}");
    }
    let echo = &r["echo"];
    assert!(
        echo["text"]
            .as_str()
            .unwrap()
            .starts_with("The capital of France is"),
        "{echo}"
    );
    let values = echo["values"].as_array().unwrap();
    assert!(values[0].is_null() && values.len() >= 6, "{echo}");
    assert!(
        values[1..]
            .iter()
            .all(|v| v.as_f64().is_some_and(|x| x <= 0.0)),
        "{echo}"
    );
    let usage = &r["usage_chunk"];
    assert!(usage[0] == 0 && usage[1].as_u64().unwrap() >= 1, "{usage}");
    // Structured outputs: the client's parse helper got its model back; the tool call names the
    // tool with arguments that fit it.
    let parsed = &r["parsed"];
    assert!(
        parsed["country"].is_string()
            && parsed["city"].is_string()
            && parsed["population_millions"].is_i64(),
        "{parsed}"
    );
    let call = &r["tool_call"];
    assert_eq!(call["name"], "GetWeather", "{call}");
    assert_eq!(call["finish"], "tool_calls", "{call}");
    assert!(call["arguments"]["city"].is_string(), "{call}");
    assert!(
        ["celsius", "fahrenheit"].contains(&call["arguments"]["unit"].as_str().unwrap()),
        "{call}"
    );

    if let Some(js) = &js {
        // The same greedy answer as Python's, cut at its first line break by the stop text.
        let chat = r["chat"].as_str().unwrap();
        let first_line = chat.split('\n').next().unwrap();
        assert_eq!(js["chat"], first_line, "{js}");
        assert_eq!(js["streamed"], r["streamed"], "{js}");
        assert!(js["logprobs"].as_u64().unwrap() >= 1, "{js}");
        assert!(js["usage"].as_u64().unwrap() >= 1, "{js}");
        assert_eq!(js["dims"], 384, "{js}");
        assert_eq!(js["refused"], "400 unsupported_parameter", "{js}");
        assert!(js["json"]["city"].is_string(), "{js}");
        let tool = &js["tool"];
        assert_eq!(tool["name"], "add", "{js}");
        assert_eq!(tool["finish"], "tool_calls", "{js}");
        assert!(
            tool["arguments"]["a"].is_i64() && tool["arguments"]["b"].is_i64(),
            "{js}"
        );
    }

    // Every job is settled on-chain; the demo escrow (100 AGR deposited) pays exactly the fees.
    let mut jobs = r["jobs"].as_array().unwrap().clone();
    if let Some(js) = &js {
        jobs.extend(js["jobs"].as_array().unwrap().iter().cloned());
    }
    jobs.extend(audit_jobs);
    jobs.extend(query_jobs);
    jobs.extend(zk_jobs.clone());
    let mut fees = 0u128;
    let mut client = String::new();
    for job in &jobs {
        let id = job["job_id"].as_str().unwrap();
        let settled = wait_settled(&api, id);
        assert_eq!(settled["job"]["fee"], job["fee"]);
        assert_eq!(settled["job"]["output_hash"], job["output_hash"]);
        fees += job["fee"].as_str().unwrap().parse::<u128>().unwrap();
        client = settled["job"]["client"].as_str().unwrap().to_string();
    }
    assert!(fees > 0);
    // The proved jobs were settled with their proofs, which the chain verified.
    for job in &zk_jobs[..2] {
        let zk = wait_settled(&api, job["job_id"].as_str().unwrap());
        assert_eq!(zk["job"]["level"], "zk", "{zk}");
        assert!(zk["zk"]["proof_bytes"].as_u64().unwrap() > 10_000, "{zk}");
    }
    let escrow = get(&api, &format!("/v1/market/escrow/{client}")).unwrap();
    assert_eq!(
        escrow["escrow"]["balance"],
        (100 * AGR - fees).to_string(),
        "escrow after {} jobs",
        jobs.len()
    );

    // Search and feeds over the devnet's chain with the real MiniLM: a settled job is found by
    // its id and by words, and the paying client's feed says why each item is there.
    let last = jobs.last().unwrap()["job_id"].as_str().unwrap().to_string();
    let start = Instant::now();
    while get(&api, &format!("/v1/search?q={last}"))
        .is_none_or(|v| v["hits"][0]["id"] != format!("job:{last}"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the search index never held job {last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let node = ["--json", "--node", api.as_str()];
    let search = |args: &[&str]| -> Value {
        let args: Vec<&str> = args.iter().chain(&node).copied().collect();
        serde_json::from_str(&crate::agora_ok(home.path(), &args)).unwrap()
    };
    // The audit published with `--publish` is found by its flaw once its job settled.
    let start = Instant::now();
    let audit_doc = format!("audit:{audit_id}");
    let audit_hit = loop {
        let v = get(&api, "/v1/search?q=tx.origin%20authorization&kind=audit").unwrap_or_default();
        if v["hits"][0]["id"] == audit_doc.as_str() {
            break v["hits"][0].clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the published audit never arrived: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        audit_hit["title"].as_str().unwrap().contains("Wallet.sol"),
        "{audit_hit}"
    );
    let v = search(&["search", "inference job on smollm2", "--kind", "job"]);
    let hits = v["hits"].as_array().unwrap();
    assert!(!hits.is_empty(), "{v}");
    assert!(hits.iter().all(|h| h["kind"] == "job"), "{v}");
    let password = home.path().join("demo.password");
    crate::agora_ok(
        home.path(),
        &[
            "feed",
            "prefs",
            "--from",
            "demo",
            "--topic",
            "smart contract audit",
            "--password-file",
            password.to_str().unwrap(),
            "--node",
            &api,
        ],
    );
    let demo: Value = serde_json::from_str(&crate::agora_ok(
        home.path(),
        &["wallet", "show", "demo", "--json"],
    ))
    .unwrap();
    assert_eq!(
        demo["address"],
        client.as_str(),
        "the demo wallet pays the jobs"
    );
    let f = search(&["feed", &client]);
    assert!(f["activity"].as_u64().unwrap() > 0, "{f}");
    let items = f["items"].as_array().unwrap();
    assert!(!items.is_empty(), "{f}");
    for item in items {
        assert!(!item["reasons"].as_array().unwrap().is_empty(), "{item}");
    }
    assert!(
        f["following"].to_string().contains("smart contract audit"),
        "{f}"
    );

    // Embeddings through the market: a node without the model gets MiniLM's vectors as paid
    // jobs through the gateway, the vectors its own copy of the model would give.
    use agora_search::Embed as _;
    let minilm = agora_infer::models::MINILM;
    let remote = agora_search::GatewayEmbed::new(&gateway, key.trim(), minilm.name, 384);
    let texts = ["staking rewards for validators", "a smart contract audit"];
    let got = remote.embed(&texts).unwrap();
    let installed = agora_infer::models::ModelCache::new(models_dir())
        .installed(&minilm)
        .unwrap()
        .unwrap();
    let want = agora_search::LocalEmbed::load(&installed, 1)
        .unwrap()
        .embed(&texts)
        .unwrap();
    assert_eq!(got.len(), 2);
    for (g, w) in got.iter().zip(&want) {
        let cos: f32 = g.iter().zip(w).map(|(a, b)| a * b).sum();
        assert!(
            cos > 0.999,
            "cosine {cos} between the gateway's and the local vector"
        );
    }
    assert!(
        agora_search::GatewayEmbed::new(&gateway, "wrong-key", minilm.name, 384)
            .embed(&texts)
            .is_err()
    );

    // The data market works out of the box: the devnet's reviewers screen and accept an item
    // the demo wallet submits to its own bounty.
    let h = home.path();
    let pw = h.join("demo.password");
    let pw = pw.to_str().unwrap();
    let data = |args: &[&str]| {
        let mut all = vec!["data"];
        all.extend(args);
        all.extend(["--from", "demo", "--password-file", pw, "--node", &api]);
        crate::agora_ok(h, &all)
    };
    data(&[
        "bounty",
        "create",
        "--description",
        "One fact about staking",
        "--schema",
        r#"{"type":"object","required":["fact"]}"#,
        "--reward",
        "1AGR",
        "--budget",
        "5AGR",
        "--quorum",
        "1",
        "--deadline-blocks",
        "300",
    ]);
    let item = h.join("fact.json");
    std::fs::write(
        &item,
        r#"{"fact":"Stake that unbonds stays slashable until its unbonding period ends."}"#,
    )
    .unwrap();
    data(&["submit", "--bounty", "0", item.to_str().unwrap()]);
    let start = Instant::now();
    loop {
        let b = get(&api, "/v1/data/bounties/0").unwrap();
        let stage = b["items"][0]["item"]["stage"]["stage"]
            .as_str()
            .unwrap()
            .to_string();
        if stage == "accepted" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60) && stage != "rejected",
            "the devnet's reviewers did not accept the item: {b}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    sigterm(child.id());
    let status = child.wait().unwrap();
    assert!(status.success(), "the devnet did not stop cleanly");

    // Privacy: the prompt's code word and the answer appear nowhere in the chain's storage, the
    // provider's and gateway's files, or the logs (the provider keeps the input sealed).
    let answer = r["private_answer"].as_str().unwrap().trim();
    assert!(answer.len() >= 16, "{answer:?}");
    let secrets = [MARKER.as_bytes(), answer.as_bytes()];
    let mut files = vec![log_path.clone()];
    let mut dirs = vec![home.path().to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    let log_len = std::fs::metadata(&log_path).unwrap().len();
    assert!(log_len > 10_000, "the devnet logged only {log_len} bytes");
    assert!(files.len() > 5, "{files:?}");
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        for secret in secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret),
                "{} holds private text {:?}",
                file.display(),
                String::from_utf8_lossy(secret)
            );
        }
    }
}

/// The node's answer for job `id` once it is settled (within 30 s).
pub(crate) fn wait_settled(api: &str, id: &str) -> Value {
    let start = Instant::now();
    loop {
        if let Some(v) = get(api, &format!("/v1/market/jobs/{id}")) {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "job {id} was not settled"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `agora devnet` in `home` (with `extra` arguments), logging at `log` level to
/// `log_path` (appended); returns it with its API's and gateway's URLs once the gateway lists
/// models.
pub(crate) fn start_devnet(
    home: &Path,
    log_path: &Path,
    log: &str,
    extra: &[&str],
) -> (std::process::Child, String, String) {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .unwrap();
    // Addresses of an earlier run must not be mistaken for this one's.
    let _ = std::fs::remove_file(home.join("api.addr"));
    let _ = std::fs::remove_file(home.join("gateway.addr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_agora"))
        .arg("--home")
        .arg(home)
        .arg("--models-dir")
        .arg(models_dir())
        .args([
            "devnet",
            "--api-addr",
            "127.0.0.1:0",
            "--gateway-addr",
            "127.0.0.1:0",
            "--provider-addr",
            "127.0.0.1:0",
        ])
        // Blocks every 200 ms unless `extra` says otherwise.
        .args(
            (!extra.contains(&"--block-time-ms"))
                .then_some(["--block-time-ms", "200"])
                .into_iter()
                .flatten(),
        )
        .args(extra)
        .env("RUST_LOG", log)
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let (Some(api), Some(gw)) = (
            read_addr(&home.join("api.addr")),
            read_addr(&home.join("gateway.addr")),
        ) && get(&gw, "/v1/models").is_some()
        {
            return (child, api, gw);
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "the devnet's gateway did not come up"
        );
        assert!(child.try_wait().unwrap().is_none(), "the devnet exited");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A provider killed (SIGKILL) after it answered but before it settled: its receipt, its claim
/// to the fee, was synced to disk before the answer left, so once restarted it settles the job,
/// once, for exactly its fee.
#[test]
fn a_provider_killed_before_it_settles_claims_its_fee_after_a_restart() {
    if !models_available() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("devnet.log");
    let _show = ShowLogOnFailure(log_path.clone());
    // Settlements an hour apart: the job below waits unsettled.
    let (mut child, api, gateway) =
        start_devnet(home.path(), &log_path, "info", &["--settle-every", "3600"]);
    let key = std::fs::read_to_string(home.path().join("config/gateway_api_key")).unwrap();
    let mut r = ureq::post(&format!("{gateway}/v1/chat/completions"))
        .header("Authorization", &format!("Bearer {}", key.trim()))
        .send_json(serde_json::json!({
            "model": "smollm2-135m-instruct",
            "messages": [{"role": "user", "content": "Name a colour."}],
            "max_tokens": 4,
        }))
        .unwrap();
    let answer: Value = r.body_mut().read_json().unwrap();
    let id = answer["agora"]["job_id"].as_str().unwrap().to_string();
    let fee: u128 = answer["agora"]["fee"].as_str().unwrap().parse().unwrap();
    assert!(fee > 0);
    // Unsettled, and the escrow whole, when the devnet dies with no chance to clean up.
    std::thread::sleep(Duration::from_millis(600));
    assert!(get(&api, &format!("/v1/market/jobs/{id}")).is_none());
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, api, _) = start_devnet(home.path(), &log_path, "info", &[]);
    let settled = wait_settled(&api, &id);
    assert_eq!(settled["job"]["fee"], fee.to_string());
    let client = settled["job"]["client"].as_str().unwrap().to_string();
    let escrow = get(&api, &format!("/v1/market/escrow/{client}")).unwrap();
    assert_eq!(escrow["escrow"]["balance"], (100 * AGR - fee).to_string());
    sigterm(child.id());
    assert!(child.wait().unwrap().success());
}

/// `agora audit --gateway … --explain`: the contract is audited as a paid job, each finding
/// explained by the chat model in a job of its own. Returns the jobs' receipts.
fn audit_through_the_gateway(gateway: &str, key: &str) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Wallet.sol");
    std::fs::write(
        &file,
        "pragma solidity ^0.4.24;\n\
         contract Wallet {\n\
         \x20   address owner;\n\
         \x20   function Wallet() public { owner = msg.sender; }\n\
         \x20   function withdraw(uint amount) public {\n\
         \x20       require(tx.origin == owner);\n\
         \x20       msg.sender.transfer(amount);\n\
         \x20   }\n\
         }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args([
            "audit",
            "--format",
            "json",
            "--explain",
            "--publish",
            "--gateway",
            gateway,
        ])
        .arg("--api-key")
        .arg(key)
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "findings expected: {stderr}");
    assert!(stderr.contains("published as audit:"), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The report is exactly what the auditor gives here.
    let name = file.display().to_string();
    let src = std::fs::read_to_string(&file).unwrap();
    let local = agora_audit::audit_files([(name.as_str(), src.as_str())]);
    let findings: Vec<agora_audit::Finding> =
        serde_json::from_value(v["findings"].clone()).unwrap_or_else(|e| panic!("{e}: {v}"));
    assert_eq!(findings, local.findings);
    assert!(
        findings
            .iter()
            .any(|f| f.detector == "tx-origin" && f.line == 6)
    );
    let mut jobs = vec![v["agora"].clone()];
    for f in v["findings"].as_array().unwrap() {
        let e = &f["explanation"];
        assert_eq!(e["generated"], true, "{f}");
        assert_eq!(e["model"], "smollm2-135m-instruct");
        assert!(e["text"].as_str().unwrap().len() > 20, "{e}");
        jobs.push(e["agora"].clone());
    }
    assert_eq!(jobs.len(), 1 + findings.len());
    assert!(jobs.iter().all(|j| j["job_id"].is_string()), "{jobs:?}");
    jobs
}

/// `POST /v1/zk/infer` on the gateway: the devnet's provider proves the risk scorer's run, and
/// the topic classifier's on a text (embedded by a MiniLM job first); the gateway verifies the
/// proofs. Returns the jobs' receipts: the two proved jobs, then the embedding job.
fn zk_through_the_gateway(gateway: &str, key: &str) -> Vec<Value> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let infer = |body: Value| -> Value {
        let mut r = agent
            .post(&format!("{gateway}/v1/zk/infer"))
            .header("Authorization", &format!("Bearer {key}"))
            .send_json(body)
            .unwrap();
        let v: Value = r.body_mut().read_json().unwrap();
        assert_eq!(r.status().as_u16(), 200, "{v}");
        assert_eq!(v["verified"], true, "{v}");
        v
    };
    let input = [40i8, 0, 3, 0, 0, 0, 0, 0];
    let v = infer(serde_json::json!({
        "model": agora_zk::risk::RISK_MODEL_NAME,
        "input": input,
        "threshold": 100,
    }));
    let score = agora_zk::risk::risk_model().forward(&input).unwrap()[0];
    assert_eq!(v["outputs"], serde_json::json!([score]), "{v}");
    assert_eq!(v["below"], score < 100, "{v}");
    let t = infer(serde_json::json!({
        "model": agora_zk::topic::TOPIC_MODEL_NAME,
        "input": "Moves an amount of tokens from the sender to the recipient and lowers the \
                  allowance the owner gave the spender. Emits a Transfer event.",
    }));
    assert_eq!(t["topic"], "token", "{t}");
    assert_eq!(t["outputs"].as_array().unwrap().len(), 8, "{t}");
    vec![
        v["agora"].clone(),
        t["agora"].clone(),
        t["embedding_job"].clone(),
    ]
}

/// `POST /v1/sql` and `POST /v1/forecasts` on the gateway: the analytics model answers at the
/// chain's height as a paid job, billed by the rows it reads; bad queries get their own errors.
/// Returns the jobs' receipts.
fn query_through_the_gateway(gateway: &str, key: &str) -> Vec<Value> {
    let call = |path: &str, body: Value| -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut r = agent
            .post(&format!("{gateway}{path}"))
            .header("Authorization", &format!("Bearer {key}"))
            .send_json(body)
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_json().unwrap())
    };
    let (status, v) = call(
        "/v1/sql",
        serde_json::json!({"sql": "SELECT count(*) AS n, max(height) AS top FROM blocks"}),
    );
    assert_eq!(status, 200, "{v}");
    let height = v["height"].as_u64().unwrap();
    assert_eq!(v["rows"], serde_json::json!([[height + 1, height]]), "{v}");
    assert_eq!(
        v["usage"]["rows_read"],
        height + 1,
        "every block up to the height"
    );
    let mut jobs = vec![v["agora"].clone()];

    let (status, v) = call(
        "/v1/forecasts",
        serde_json::json!({
            "sql": "SELECT height, CAST(txs AS DOUBLE) FROM blocks ORDER BY height",
            "height": height,
            "horizon": 4,
        }),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["forecast"]["points"].as_array().unwrap().len(), 4, "{v}");
    jobs.push(v["agora"].clone());

    for (path, body, code) in [
        (
            "/v1/sql",
            serde_json::json!({"sql": "DELETE FROM blocks"}),
            "read_only",
        ),
        (
            "/v1/sql",
            serde_json::json!({"sql": "SELECT now()"}),
            "sql_plan",
        ),
        (
            "/v1/sql",
            serde_json::json!({"sql": "SELECT * FROM nope"}),
            "unknown_table",
        ),
        (
            "/v1/sql",
            serde_json::json!({"sql": "SELECT 1", "horizon": 3}),
            "invalid_request",
        ),
        (
            "/v1/sql",
            serde_json::json!({"sql": "SELECT 1", "height": 1_000_000_000}),
            "height_not_committed",
        ),
        (
            "/v1/forecasts",
            serde_json::json!({"sql": "SELECT 1, 2.0", "horizon": 0}),
            "invalid_horizon",
        ),
    ] {
        let (status, v) = call(path, body.clone());
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
    }
    assert!(jobs.iter().all(|j| j["job_id"].is_string()), "{jobs:?}");
    jobs
}

/// A code word in a private prompt (see the privacy check).
const MARKER: &str = "quetzal-marmot-7781";

/// Prints the end of the devnet's log if the test fails.
pub(crate) struct ShowLogOnFailure(pub(crate) std::path::PathBuf);

impl Drop for ShowLogOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("--- devnet log (last 60 lines) ---");
            for line in &lines[lines.len().saturating_sub(60)..] {
                eprintln!("{line}");
            }
        }
    }
}
