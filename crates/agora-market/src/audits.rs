//! `POST /v1/audits`: the Solidity auditor as a paid, verifiable job through the gateway
//! (DESIGN.md §10), with optional explanations of the findings by a chat model.
//!
//! ```text
//! {"files": [{"name": "Bank.sol", "source": "…"}]   (or "source": "…" for one file)
//!  "model": "agora-audit@…"                          (default: this build's auditor)
//!  "min_severity": "low", "format": "json"|"sarif",
//!  "explain": true, "explain_model": "…",            (a chat job per finding, marked generated)
//!  "verification": "sampled",
//!  "publish": true}                                   (the report goes to the node's search)
//! ```
//! The answer carries the findings, the files that did not parse, a summary, the job's receipt in
//! `agora` (its output hash covers the whole report, as returned when no `min_severity` filters
//! it), and with `format: "sarif"` the SARIF 2.1.0 log as well.

// Handlers answer errors as ready responses, as axum handlers do.
#![allow(clippy::result_large_err)]

use crate::openai::{client, from_error, internal, oai_error, receipt_json, with_job_header};
use crate::{ChatMessage, Completed, Error, Gateway, JobInput, JobOutput, OpenAiState, SourceFile};
use agora_audit::{Finding, Severity};
use agora_node_api::{NodeClient, PublishReport};
use agora_types::{Hash, JobParams, Keypair, Verification};
use axum::{Json, extract::State, http::HeaderMap, response::IntoResponse, response::Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Most findings explained in one request (each explanation is a chat job of its own).
pub const MAX_EXPLAINED: usize = 8;
/// Most tokens of one explanation.
const EXPLAIN_MAX_TOKENS: u32 = 96;

/// The name a single `source` gets.
const DEFAULT_FILE: &str = "contract.sol";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditRequest {
    model: Option<String>,
    files: Option<Vec<SourceFile>>,
    source: Option<String>,
    min_severity: Option<String>,
    format: Option<String>,
    #[serde(default)]
    explain: bool,
    explain_model: Option<String>,
    verification: Option<Verification>,
    #[serde(default)]
    publish: bool,
}

/// What the blocking part produces.
struct Audited {
    done: Completed,
    explanations: Vec<Option<Value>>,
    explain_error: Option<String>,
}

pub(crate) async fn audit(
    State(st): State<OpenAiState>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let key = match client(&st, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let req: AuditRequest = match serde_json::from_value(body) {
        Ok(r) => r,
        Err(e) => return oai_error(400, "invalid_request", e.to_string()),
    };
    let files = match (req.files, req.source) {
        (Some(files), None) if !files.is_empty() => files,
        (None, Some(source)) => vec![SourceFile {
            name: DEFAULT_FILE.into(),
            source,
        }],
        _ => {
            return oai_error(
                400,
                "invalid_input",
                "send `files` (a non-empty array of {name, source}) or `source`, not both",
            );
        }
    };
    let min_severity = match req.min_severity.as_deref().map(str::parse::<Severity>) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => return oai_error(400, "invalid_min_severity", e),
    };
    let sarif = match req.format.as_deref() {
        None | Some("json") => false,
        Some("sarif") => true,
        Some(other) => {
            return oai_error(
                400,
                "invalid_format",
                format!("format {other:?}: json or sarif"),
            );
        }
    };
    let publisher = if req.publish {
        match publisher(&st).await {
            Ok(p) => Some(p),
            Err(r) => return r,
        }
    } else {
        None
    };
    // The exact input the job commits to, for the publication.
    let input_text = publisher.is_some().then(|| {
        String::from_utf8_lossy(
            &JobInput::Audit {
                files: files.clone(),
            }
            .to_bytes(),
        )
        .into_owned()
    });
    let model_name = req
        .model
        .unwrap_or_else(|| agora_audit::MODEL_NAME.to_string());
    // The node takes only reports of its own auditor, which it can run again: another auditor's
    // job would be paid for and its report refused.
    if publisher.is_some() {
        let (gw, name) = (st.gateway.clone(), model_name.clone());
        match tokio::task::spawn_blocking(move || gw.resolve_model(&name)).await {
            Ok(Ok(id)) if id == crate::backend::auditor_id() => {}
            Ok(Ok(_)) => {
                return oai_error(
                    400,
                    "publishing_unavailable",
                    format!(
                        "only reports of {} can be published (the node runs it again to check them)",
                        agora_audit::MODEL_NAME
                    ),
                );
            }
            Ok(Err(e)) => return from_error(&e),
            Err(e) => return internal(&e),
        }
    }
    let gw = st.gateway.clone();
    let name = model_name.clone();
    let params = JobParams {
        verification: req.verification.unwrap_or_default(),
        ..JobParams::default()
    };
    let explain = req.explain.then_some(req.explain_model);
    let payer = key.clone();
    let result = tokio::task::spawn_blocking(move || {
        run_audit(&gw, &payer, &name, files, params, min_severity, explain)
    })
    .await;
    let audited = match result {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => return e,
        Err(e) => return internal(&e),
    };
    let JobOutput::Audit { findings, errors } = &audited.done.output else {
        return oai_error(500, "internal", "the auditor's output is not a report");
    };
    let shown: Vec<&Finding> = shown(findings, min_severity);
    let mut summary = json!({
        "findings": shown.len(),
        "unparsed_files": errors.len(),
    });
    for sev in ["high", "medium", "low", "info"] {
        let n = shown
            .iter()
            .filter(|f| f.severity == sev.parse().expect("a severity name"))
            .count();
        summary[sev] = json!(n);
    }
    let listed: Vec<Value> = shown
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut v = json!(f);
            if let Some(Some(e)) = audited.explanations.get(i) {
                v["explanation"] = e.clone();
            }
            v
        })
        .collect();
    let mut out = json!({
        "object": "audit",
        "model": model_name,
        "findings": listed,
        "errors": errors,
        "summary": summary,
        "usage": {"input_tokens": audited.done.receipt.receipt.input_tokens},
        "agora": receipt_json(&audited.done),
    });
    if let (Some((node, pending)), Some(input)) = (publisher, input_text) {
        let output = String::from_utf8_lossy(&audited.done.output.to_bytes()).into_owned();
        let job_id = audited.done.job_id;
        publish_when_verified(
            st.gateway.clone(),
            node,
            key.clone(),
            job_id,
            (input, output),
            pending,
        );
        out["published"] = json!({
            "id": format!("audit:{job_id}"),
            "when": "the job's verification is over",
        });
    }
    if let Some(e) = &audited.explain_error {
        out["explain_error"] = json!(e);
    }
    if sarif {
        let owned: Vec<Finding> = shown.iter().map(|f| (*f).clone()).collect();
        out["sarif"] = agora_audit::output::sarif(&owned, errors);
    }
    with_job_header(Json(out).into_response(), &audited.done)
}

fn shown(findings: &[Finding], min: Option<Severity>) -> Vec<&Finding> {
    findings
        .iter()
        .filter(|f| min.is_none_or(|m| f.severity >= m))
        .collect()
}

/// The audit job, then (when asked) one chat job per finding shown.
fn run_audit(
    gw: &Gateway,
    key: &Keypair,
    name: &str,
    files: Vec<SourceFile>,
    params: JobParams,
    min_severity: Option<Severity>,
    explain: Option<Option<String>>,
) -> Result<Audited, Response> {
    let model = gw.resolve_model(name).map_err(|e| from_error(&e))?;
    let input = JobInput::Audit { files };
    let done = gw
        .run(key, model, &input, params, &mut |_| {
            ControlFlow::Continue(())
        })
        .map_err(|e| from_error(&e))?;
    let JobOutput::Audit { findings, .. } = &done.output else {
        return Err(oai_error(
            400,
            "wrong_model_kind",
            format!("{name} is not an auditor"),
        ));
    };
    let (mut explanations, mut explain_error) = (Vec::new(), None);
    if let (Some(explain_model), JobInput::Audit { files }) = (explain, &input) {
        let shown = shown(findings, min_severity);
        match explain_all(gw, key, explain_model.as_deref(), &shown, files) {
            Ok(e) => explanations = e,
            Err(e) => explain_error = Some(e.to_string()),
        }
    }
    Ok(Audited {
        done,
        explanations,
        explain_error,
    })
}

/// Explains up to [`MAX_EXPLAINED`] findings, each by its own greedy chat job.
fn explain_all(
    gw: &Gateway,
    key: &Keypair,
    model: Option<&str>,
    findings: &[&Finding],
    files: &[SourceFile],
) -> Result<Vec<Option<Value>>, Error> {
    let models = gw.models()?;
    let (id, name) = match model {
        Some(name) => (gw.resolve_model(name)?, name.to_string()),
        // A pinned chat model (DESIGN.md §11) when one is served, else any chat model.
        None => models
            .iter()
            .filter(|m| m.kind == agora_types::ModelKind::Chat)
            .min_by_key(|m| {
                let pinned = agora_infer::models::CATALOG
                    .iter()
                    .any(|spec| spec.id.eq_ignore_ascii_case(&m.id.to_hex()));
                !pinned
            })
            .map(|m| (m.id, m.name.clone()))
            .ok_or_else(|| Error::Refused {
                status: 503,
                code: "no_chat_model",
                message: "no provider serves a chat model to explain findings".into(),
            })?,
    };
    let mut out = Vec::new();
    for f in findings.iter().take(MAX_EXPLAINED) {
        let source = files
            .iter()
            .find(|s| s.name == f.file)
            .map_or("", |s| s.source.as_str());
        let input = JobInput::Chat {
            messages: explain_prompt(f, source),
            grammar: None,
        };
        let params = JobParams {
            max_tokens: EXPLAIN_MAX_TOKENS,
            ..JobParams::default()
        };
        let done = gw.run(key, id, &input, params, &mut |_| ControlFlow::Continue(()))?;
        let JobOutput::Text { text, .. } = &done.output else {
            return Err(Error::BadInput(format!("{name} is not a chat model")));
        };
        out.push(Some(json!({
            "generated": true,
            "model": name,
            "text": text.trim(),
            "agora": receipt_json(&done),
        })));
    }
    Ok(out)
}

/// The chat that asks for one finding's explanation (see [`agora_audit::explain_prompt`]).
fn explain_prompt(f: &Finding, source: &str) -> Vec<ChatMessage> {
    agora_audit::explain_prompt(f, source)
        .into_iter()
        .map(|(role, content)| ChatMessage {
            role: role.into(),
            content,
        })
        .collect()
}

/// How long a publication waits for its job's verification to be over: a drawn check, a
/// dispute and its committee take a few hundred blocks.
const PUBLISH_WAIT: Duration = Duration::from_secs(3 * 3600);
/// Publications a gateway keeps waiting at once; more are refused before their jobs run.
const MAX_PENDING_PUBLICATIONS: usize = 256;

/// One publication waiting, counted while it lives.
struct Pending(Arc<AtomicUsize>);

impl Pending {
    /// A place among the [`MAX_PENDING_PUBLICATIONS`], if one is free.
    fn reserve(count: &Arc<AtomicUsize>) -> Option<Pending> {
        count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_PENDING_PUBLICATIONS).then_some(n + 1)
            })
            .ok()?;
        Some(Pending(count.clone()))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The node that takes publications, if this gateway has one and that node keeps a search
/// index (asked before the job runs, so a publication that cannot happen costs nothing).
async fn publisher(st: &OpenAiState) -> Result<(Arc<NodeClient>, Pending), Response> {
    let Some(node) = st.reports.clone() else {
        return Err(oai_error(
            400,
            "publishing_unavailable",
            "this gateway has no node to publish reports to",
        ));
    };
    // Reserved now, before the job runs: a request that fails gives its place back.
    let Some(pending) = Pending::reserve(&st.publishing) else {
        return Err(oai_error(
            503,
            "publishing_busy",
            format!(
                "{MAX_PENDING_PUBLICATIONS} reports wait for their jobs' verification: try again later"
            ),
        ));
    };
    let probe = node.clone();
    match tokio::task::spawn_blocking(move || probe.get::<Value>("/v1/search/stats")).await {
        Ok(Ok(_)) => Ok((node, pending)),
        Ok(Err(e)) => Err(oai_error(
            400,
            "publishing_unavailable",
            format!(
                "the node at {} keeps no search index to publish to ({e})",
                node.base()
            ),
        )),
        Err(e) => Err(internal(&e)),
    }
}

/// Waits (bounded) until job `job_id` is settled on chain and its verification is over (the
/// node takes no report that may still be found wrong), then publishes its report, signed with
/// its client's key, to `node`'s search index.
fn publish_when_verified(
    gw: Arc<Gateway>,
    node: Arc<NodeClient>,
    key: Arc<Keypair>,
    job_id: Hash,
    (input, output): (String, String),
    pending: Pending,
) {
    tokio::spawn(async move {
        let _pending = pending;
        let started = Instant::now();
        loop {
            let chain = gw.clone();
            let over =
                tokio::task::spawn_blocking(move || chain.chain().verification_over(&job_id)).await;
            if matches!(over, Ok(Ok(Some(true)))) {
                break;
            }
            if started.elapsed() > PUBLISH_WAIT {
                tracing::warn!(%job_id, "audit report not published: its job's verification did not end in time");
                return;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let published = tokio::task::spawn_blocking(move || {
            let chain_id = gw.chain().chain_id()?;
            node.publish_report(&PublishReport::sign(&chain_id, &key, job_id, input, output))
        })
        .await;
        match published {
            Ok(Ok(r)) => tracing::info!(id = %r.id, "audit report published"),
            Ok(Err(e)) => tracing::warn!(%job_id, "audit report not published: {e}"),
            Err(e) => tracing::warn!(%job_id, "audit report not published: {e}"),
        }
    });
}
