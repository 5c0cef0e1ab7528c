//! Audit reports as documents.
//!
//! An audit job's sources and report travel sealed between its client and its provider: the
//! chain holds only their hashes. A report becomes searchable when its **client** publishes it:
//! a [`PublishReport`] carries the job's input and output as the exact bytes the job committed,
//! signed by the client's key. The node checks everything against the chain before it indexes
//! anything:
//! - the key is the job's client's (a provider, who also holds the bytes, cannot publish a
//!   client's sources) and the signature is over this chain's id and the job;
//! - the job is settled and ran this node's own auditor (anyone may register a model of the
//!   auditor's kind and name, and serve it to itself);
//! - the input's and the output's blake3 hashes are the ones the job settled with;
//! - its verification is over and did not convict it (fraud or no reveal);
//! - the report is what the auditor finds in those sources when the node runs it again, so a
//!   provider and client acting together cannot publish a report the auditor does not give.
//!
//! A later conviction withdraws the report (the chain follower removes it).
//!
//! The document (`audit:<job id>`) lists the findings (severity, SWC, file and line, message,
//! fix) and then the contracts' own words (names, comments, strings), so a search finds a report
//! by the flaw or by what the contract does.

use crate::corpus::solidity_text;
use crate::{Batch, Doc, Error, Kind, SearchIndex};
use agora_api::LocalNode;
use agora_audit::{Finding, ParseError, Severity};
use agora_chain::Node;
use agora_node_api::Chain;
pub use agora_node_api::{PublishReport, PublishResponse};
use agora_types::{Hash, ModelKind};
use serde::Deserialize;
use std::sync::Arc;

/// Largest input accepted (a job's input is never larger).
pub const MAX_REPORT_INPUT: usize = 256 * 1024;
/// Largest report accepted.
pub const MAX_REPORT_OUTPUT: usize = 1 << 20;
/// Findings written into a document (the rest are counted).
const MAX_LISTED: usize = 200;

#[derive(Deserialize)]
struct SourceFile {
    name: String,
    source: String,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Input {
    Audit { files: Vec<SourceFile> },
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Output {
    Audit {
        findings: Vec<Finding>,
        errors: Vec<ParseError>,
    },
}

fn bad(why: impl Into<String>) -> Error {
    Error::BadReport(why.into())
}

fn node_err(e: impl std::fmt::Display) -> Error {
    Error::Store(e.to_string())
}

/// Checks `report` against `node`'s chain and indexes it; returns the document's id.
pub fn publish(
    index: &SearchIndex,
    node: &Arc<Node>,
    report: &PublishReport,
) -> Result<String, Error> {
    if report.input.len() > MAX_REPORT_INPUT || report.output.len() > MAX_REPORT_OUTPUT {
        return Err(bad(format!(
            "too large: the input may hold {MAX_REPORT_INPUT} bytes and the report {MAX_REPORT_OUTPUT}"
        )));
    }
    let local = LocalNode::new(node.clone());
    let id = report.job_id;
    let Some(job) = local.job(&id).map_err(node_err)? else {
        return Err(bad(format!(
            "job {id} is not settled on this chain (or its record was pruned)"
        )));
    };
    let record = &job.job;
    if report.public_key.address() != record.client {
        return Err(bad(
            "the key is not the job's client's: only the client publishes its report",
        ));
    }
    report
        .public_key
        .verify(
            &PublishReport::sign_bytes(node.chain_id(), &id),
            &report.signature,
        )
        .map_err(|_| bad("the signature does not hold for this chain and job"))?;
    // Only this node's auditor, whose report the node can compute again: a model anyone
    // registered under an auditor's name, served by its own client, proves nothing.
    let model = local.model(&record.model).map_err(node_err)?;
    let Some(model) = model.filter(|m| m.kind == ModelKind::Audit) else {
        return Err(bad(format!("job {id} is not an audit")));
    };
    if record.model != Hash(agora_audit::model_id()) {
        return Err(bad(format!(
            "job {id} ran {}, not this node's auditor {}: its report cannot be checked here",
            model.name,
            agora_audit::MODEL_NAME
        )));
    }
    if Hash::digest(report.input.as_bytes()) != record.input_hash {
        return Err(bad(
            "the input is not the job's: its hash is not the one settled",
        ));
    }
    if Hash::digest(report.output.as_bytes()) != record.output_hash {
        return Err(bad(
            "the report is not the job's: its hash is not the one settled",
        ));
    }
    if found_wrong(&job) {
        return Err(bad(format!("job {id}'s check found its report wrong")));
    }
    if !job.verification_over() {
        return Err(bad(format!(
            "job {id} may still be checked: publish it once its verification is over"
        )));
    }
    // Published before: the same bytes (bound by the job's hashes), checked then.
    let doc_id = format!("audit:{id}");
    if index.contains(&doc_id)? {
        return Ok(doc_id);
    }
    let Ok(Input::Audit { files }) = serde_json::from_str(&report.input) else {
        return Err(bad("the input is not an audit's"));
    };
    let Ok(Output::Audit { findings, errors }) = serde_json::from_str(&report.output) else {
        return Err(bad("the report is not an auditor's"));
    };
    // The report must be what the auditor finds in these sources (it is deterministic).
    let again =
        agora_audit::audit_files(files.iter().map(|f| (f.name.as_str(), f.source.as_str())));
    if findings != again.findings || errors != again.errors {
        return Err(bad(
            "the report is not what the auditor finds in these sources",
        ));
    }
    let time_ms = node
        .snapshot()
        .map_err(node_err)?
        .block(record.settled_height)
        .map_err(node_err)?
        .map_or(0, |b| i64::try_from(b.header.time_ms).unwrap_or(i64::MAX));
    let doc = report_doc(
        &id,
        &model.name,
        &files,
        &findings,
        &errors,
        time_ms,
        record,
    );
    let doc = doc.checked()?;
    index.apply(Batch {
        upsert: vec![doc],
        ..Batch::default()
    })?;
    // A challenge decided while this was written: the chain follower may have withdrawn the
    // report before it landed, so it is withdrawn here.
    if local
        .job(&id)
        .map_err(node_err)?
        .is_none_or(|j| found_wrong(&j))
    {
        index.apply(Batch {
            remove: vec![doc_id],
            ..Batch::default()
        })?;
        return Err(bad(format!("job {id}'s check found its report wrong")));
    }
    Ok(doc_id)
}

/// Whether the job's check convicted its provider (a wrong report, or none revealed).
pub fn found_wrong(job: &agora_node_api::JobResponse) -> bool {
    job.check.as_ref().is_some_and(|c| {
        matches!(
            c.outcome,
            agora_state::Outcome::Fraud | agora_state::Outcome::NoReveal
        )
    })
}

fn report_doc(
    id: &Hash,
    model: &str,
    files: &[SourceFile],
    findings: &[Finding],
    errors: &[ParseError],
    time_ms: i64,
    record: &agora_state::JobRecord,
) -> Doc {
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for f in findings {
        *counts.entry(severity(f.severity)).or_default() += 1;
    }
    let by_severity: Vec<String> = ["high", "medium", "low", "info"]
        .iter()
        .filter_map(|s| counts.get(s).map(|n| format!("{n} {s}")))
        .collect();
    let shown = if names.len() > 3 {
        format!("{} and {} more", names[..3].join(", "), names.len() - 3)
    } else {
        names.join(", ")
    };
    let title = if findings.is_empty() {
        format!("Audit of {shown}: no findings")
    } else {
        format!(
            "Audit of {shown}: {} findings ({})",
            findings.len(),
            by_severity.join(", ")
        )
    };
    let mut body = format!(
        "Audit report of job {id} by {model}, paid by {} and run by {}: {} files, {} findings.\n",
        record.client,
        record.provider,
        files.len(),
        findings.len()
    );
    for f in findings.iter().take(MAX_LISTED) {
        body.push_str(&format!(
            "{} severity, {} ({}), {} line {}: {} Fix: {}\n",
            severity(f.severity),
            f.swc,
            f.detector,
            f.file,
            f.line,
            f.message,
            f.hint
        ));
    }
    if findings.len() > MAX_LISTED {
        body.push_str(&format!(
            "… and {} more findings.\n",
            findings.len() - MAX_LISTED
        ));
    }
    for e in errors {
        body.push_str(&format!(
            "{} does not parse (line {}): {}\n",
            e.file, e.line, e.message
        ));
    }
    for f in files {
        body.push_str(&format!("\n{}: {}", f.name, solidity_text(&f.source)));
    }
    let mut detectors: Vec<&str> = findings.iter().map(|f| f.detector.as_str()).collect();
    detectors.sort_unstable();
    detectors.dedup();
    Doc {
        // The vector stays with what the report is about: the files and the kinds of flaw.
        about: Some(format!(
            "Smart-contract audit report of {} with findings: {}.",
            names.join(", "),
            if detectors.is_empty() {
                "none".to_string()
            } else {
                detectors.join(", ")
            }
        )),
        time_ms,
        addresses: vec![record.client.to_string(), record.provider.to_string()],
        keys: vec![id.to_hex()],
        url: Some(format!("/market/jobs/{id}")),
        ..Doc::new(format!("audit:{id}"), Kind::Audit, title, body)
    }
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::High => "high",
        Severity::Medium => "medium",
        Severity::Low => "low",
        Severity::Info => "info",
    }
}
