//! Reports: text with the source lines, JSON, and SARIF 2.1.0.

use crate::{DETECTORS, Finding, ParseError};
use serde_json::{Value, json};

/// Human-readable findings, each with its source line(s). `source` gives a file's text.
pub fn text(
    findings: &[Finding],
    errors: &[ParseError],
    source: &dyn Fn(&str) -> Option<String>,
) -> String {
    let mut out = String::new();
    for f in findings {
        out.push_str(&format!(
            "{}:{}: {} [{} {} {:?}/{:?}] {}\n",
            f.file,
            f.line,
            f.detector,
            f.swc,
            f.category.name(),
            f.severity,
            f.confidence,
            f.message
        ));
        if let Some(src) = source(&f.file) {
            for (n, l) in src
                .lines()
                .enumerate()
                // Lines as given (a report from the network is not trusted to be well formed).
                .skip(f.line.saturating_sub(1))
                .take(f.end_line.saturating_sub(f.line).saturating_add(1).min(20))
            {
                out.push_str(&format!("  {:>5} | {}\n", n + 1, l));
            }
        }
        out.push_str(&format!("        fix: {}\n", f.hint));
    }
    for e in errors {
        out.push_str(&format!("{e} (not analysed)\n"));
    }
    out.push_str(&format!(
        "{} finding(s), {} file(s) not parsed\n",
        findings.len(),
        errors.len()
    ));
    out
}

/// `{"findings": [...], "errors": [...]}`.
pub fn json(findings: &[Finding], errors: &[ParseError]) -> Value {
    json!({ "findings": findings, "errors": errors })
}

/// A SARIF 2.1.0 log: one rule per detector, one result per finding, the DASP category in
/// `properties.category`.
pub fn sarif(findings: &[Finding], errors: &[ParseError]) -> Value {
    let rules: Vec<Value> = DETECTORS
        .iter()
        .map(|d| {
            json!({
                "id": d.id,
                "shortDescription": { "text": format!("{} ({})", d.id, d.swc) },
                "help": { "text": d.hint },
                "properties": { "category": d.category.name(), "swc": d.swc,
                                "severity": d.severity, "confidence": d.confidence },
            })
        })
        .collect();
    let level = |f: &Finding| match f.severity {
        crate::Severity::High => "error",
        crate::Severity::Medium => "warning",
        _ => "note",
    };
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            json!({
                "ruleId": f.detector,
                "level": level(f),
                "message": { "text": format!("{} Fix: {}", f.message, f.hint) },
                "locations": [{ "physicalLocation": {
                    "artifactLocation": { "uri": f.file },
                    "region": { "startLine": f.line, "endLine": f.end_line },
                }}],
                "properties": { "category": f.category.name(), "swc": f.swc,
                                "severity": f.severity, "confidence": f.confidence },
            })
        })
        .collect();
    let notifications: Vec<Value> = errors
        .iter()
        .map(|e| {
            json!({
                "level": "error",
                "message": { "text": e.message },
                "locations": [{ "physicalLocation": {
                    "artifactLocation": { "uri": e.file },
                    "region": { "startLine": e.line },
                }}],
            })
        })
        .collect();
    json!({
        "$schema": "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "agora-audit",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
            "invocations": [{
                "executionSuccessful": errors.is_empty(),
                "toolExecutionNotifications": notifications,
            }],
        }],
    })
}
