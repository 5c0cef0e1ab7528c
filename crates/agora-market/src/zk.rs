//! `POST /v1/zk/infer`: a provable model run as a job of verification level `zk` (DESIGN.md §9).
//! The provider proves the run; the gateway verifies the proof before it answers, and the chain
//! verifies it again when the provider settles, so no one takes the provider's word.
//!
//! ```text
//! {"model": "agora-risk-v1",          (a provable model's name or id)
//!  "input": [12, 0, 3, …],            (its 8-bit integer inputs, or for a classifier over
//!                                      embeddings a text: embedded first by a job on
//!                                      "embedding_model", MiniLM by default, and quantized)
//!  "threshold": 100,                  (optional: the proof's predicate "output 0 < threshold")
//!  "salt": [w0, …, w7],               (optional: the commitment's salt; random by default)
//!  "verification": "zk"}             (optional: a provable model's jobs are always "zk")
//! ```
//! A text's proof covers the classifier's run on the vector the embedding job returned; that job
//! is checked as any embedding is (sampled), not proved.
//!
//! The answer carries the outputs, the claim the proof shows (with the input commitment, which the
//! request signed), the salt that opens the commitment, the proof (base64), and the job's receipt
//! in `agora`.

// Handlers answer errors as ready responses, as axum handlers do.
#![allow(clippy::result_large_err)]

use crate::openai::{client, from_error, internal, oai_error, receipt_json, with_job_header};
use crate::{JobInput, JobOutput, OpenAiState};
use agora_types::{JobParams, MAX_ZK_VALUE, Verification};
use axum::{Json, extract::State, http::HeaderMap, response::IntoResponse, response::Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::ops::ControlFlow;

/// A model's input: its integers, or a text that an embedding job turns into them (for a
/// classifier over embeddings).
#[derive(Deserialize)]
#[serde(untagged)]
enum ZkInput {
    Values(Vec<i64>),
    Text(String),
}

/// The embedding model a text input goes through by default, and its vectors' size.
const DEFAULT_EMBEDDING_MODEL: &str = "all-minilm-l6-v2";
const MINILM_DIMS: usize = 384;

/// The topic classifier's id (computed once): its answers name the topic.
fn topic_id() -> Option<agora_types::Hash> {
    static ID: std::sync::OnceLock<Option<agora_types::Hash>> = std::sync::OnceLock::new();
    *ID.get_or_init(|| {
        let model = agora_zk::topic::topic_model().ok()?;
        let key = agora_zk::ProvingKey::new(model).ok()?;
        Some(agora_types::Hash(key.verifying_key().model_id()))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ZkRequest {
    model: String,
    input: ZkInput,
    embedding_model: Option<String>,
    threshold: Option<i64>,
    salt: Option<[u32; 8]>,
    verification: Option<Verification>,
}

pub(crate) async fn infer(
    State(st): State<OpenAiState>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let key = match client(&st, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let req: ZkRequest = match serde_json::from_value(body) {
        Ok(r) => r,
        Err(e) => return oai_error(400, "invalid_request", e.to_string()),
    };
    if req.verification.is_some_and(|v| v != Verification::Zk) {
        return oai_error(
            400,
            "invalid_verification",
            "a provable model's jobs are proved: `verification` is \"zk\"",
        );
    }
    let text = match &req.input {
        ZkInput::Text(text) if text.trim().is_empty() => {
            return oai_error(400, "invalid_input", "`input` is an empty text");
        }
        ZkInput::Text(text) => Some(text.clone()),
        ZkInput::Values(_) => None,
    };
    let values = match &req.input {
        ZkInput::Values(values) => values.clone(),
        ZkInput::Text(_) => Vec::new(),
    };
    let Ok(input) = values
        .iter()
        .map(|&v| i8::try_from(v))
        .collect::<Result<Vec<i8>, _>>()
    else {
        return oai_error(
            400,
            "invalid_input",
            "`input` is an array of integers from -128 to 127, or a text",
        );
    };
    // Without a predicate, one that always holds: the outputs are what the client wants.
    let threshold = req.threshold.unwrap_or(MAX_ZK_VALUE);
    if threshold.unsigned_abs() > MAX_ZK_VALUE as u64 {
        return oai_error(
            400,
            "invalid_threshold",
            format!("`threshold` is within ±{MAX_ZK_VALUE}"),
        );
    }
    let salt = match req.salt {
        Some(salt) => salt,
        None => match agora_zk::random_salt() {
            Ok(salt) => salt,
            Err(e) => return internal(&e),
        },
    };
    if let Some(w) = salt.iter().find(|&&w| w >= agora_zk::FIELD_ORDER) {
        return oai_error(
            400,
            "invalid_salt",
            format!("salt word {w} is not below {}", agora_zk::FIELD_ORDER),
        );
    }
    let gw = st.gateway.clone();
    let name = req.model.clone();
    let embedding_model = req
        .embedding_model
        .clone()
        .unwrap_or_else(|| DEFAULT_EMBEDDING_MODEL.into());
    let result = tokio::task::spawn_blocking(move || {
        let model = gw.resolve_model(&name)?;
        let Some(entry) = gw.chain().zk_model(&model)? else {
            return Err(crate::Error::Refused {
                status: 400,
                code: "not_provable",
                message: format!(
                    "{name} is not a provable model; GET /v1/zk/models on a node lists them"
                ),
            });
        };
        let inputs = entry.layers.first().map_or(0, |l| l.0 as usize);
        // A text is for a classifier over embeddings: checked before the embedding is paid.
        if text.is_some() && inputs != MINILM_DIMS {
            return Err(crate::Error::Refused {
                status: 400,
                code: "invalid_input",
                message: format!(
                    "{name} takes {inputs} integers, not a text (a text is embedded into {MINILM_DIMS} values)"
                ),
            });
        }
        let is_topic = Some(model) == topic_id();
        // A text is embedded first, by a job of its own (checked by sampling, as any
        // embedding), and quantized as the classifier was trained.
        let (input, embedded) = match text {
            None => (input, None),
            Some(text) => {
                let embedder = gw.resolve_model(&embedding_model)?;
                let done = gw.run(
                    &key,
                    embedder,
                    &JobInput::Embedding { inputs: vec![text] },
                    JobParams::default(),
                    &mut |_| ControlFlow::Continue(()),
                )?;
                let JobOutput::Embeddings { vectors } = &done.output else {
                    return Err(crate::Error::Refused {
                        status: 400,
                        code: "wrong_model_kind",
                        message: format!("{embedding_model} is not an embedding model"),
                    });
                };
                let [vector] = vectors.as_slice() else {
                    return Err(crate::Error::Refused {
                        status: 502,
                        code: "embedding_mismatch",
                        message: format!("{embedding_model} did not return one vector"),
                    });
                };
                if vector.len() != inputs {
                    return Err(crate::Error::Refused {
                        status: 400,
                        code: "embedding_mismatch",
                        message: format!(
                            "{embedding_model} gives {} values, {name} takes {inputs}",
                            vector.len()
                        ),
                    });
                }
                (agora_zk::train::quantize_input(vector), Some(done))
            }
        };
        let job = JobInput::Zk {
            input,
            salt,
            threshold,
        };
        let params = JobParams {
            max_tokens: 1,
            verification: Verification::Zk,
            ..JobParams::default()
        };
        let done = gw.run(
            &key,
            model,
            &job,
            params,
            &mut |_| ControlFlow::Continue(()),
        )?;
        Ok((done, embedded, is_topic))
    })
    .await;
    let (done, embedded, is_topic) = match result {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return from_error(&e),
        Err(e) => return internal(&e),
    };
    let JobOutput::Zk { claim, proof } = &done.output else {
        return oai_error(
            400,
            "wrong_model_kind",
            format!("{} is not a provable model", req.model),
        );
    };
    let topic = is_topic
        .then_some(claim.outputs.as_deref())
        .flatten()
        .and_then(|scores| agora_zk::topic::TOPICS.get(agora_zk::train::argmax(scores)));
    let mut body = json!({
        "object": "zk.inference",
        "model": req.model,
        "model_id": claim.model,
        "outputs": claim.outputs,
        "threshold": claim.threshold,
        "below": claim.below,
        "input_commitment": claim.input_commitment,
        "salt": salt,
        "output_hash": done.output.hash(),
        "proof": proof,
        "proof_bytes": done.output.zk_proof().and_then(Result::ok).map_or(0, |p| p.len()),
        "verified": true,
        "usage": {
            "prompt_tokens": done.receipt.receipt.input_tokens,
            "completion_tokens": done.receipt.receipt.output_tokens,
        },
        "agora": receipt_json(&done),
    });
    if let Some(embedded) = &embedded {
        body["embedding_job"] = receipt_json(embedded);
    }
    if let Some(topic) = topic {
        body["topic"] = json!(topic);
    }
    with_job_header(Json(body).into_response(), &done)
}
