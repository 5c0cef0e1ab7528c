//! Reports: text with the source lines, JSON, SARIF 2.1.0, and Slither's JSON.

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

/// Slither's JSON report (`slither --json`), for tools that read it: `success`, `error`, and
/// `results.detectors`, one per finding, with Slither's keys: `check` (the detector id),
/// `impact` (High, Medium, Low, Informational), `confidence`, `description`, `markdown`,
/// `first_markdown_element`, `id` (SHA-256 of check, file and lines), and one `elements` entry
/// whose `source_mapping` names the file and lines. The SWC id, DASP category and fix are in
/// `additional_fields`. Files that do not parse make `error`.
pub fn slither(findings: &[Finding], errors: &[ParseError]) -> Value {
    use sha2::Digest as _;
    let impact = |f: &Finding| match f.severity {
        crate::Severity::High => "High",
        crate::Severity::Medium => "Medium",
        crate::Severity::Low => "Low",
        crate::Severity::Info => "Informational",
    };
    let confidence = |f: &Finding| match f.confidence {
        crate::Confidence::High => "High",
        crate::Confidence::Medium => "Medium",
        crate::Confidence::Low => "Low",
    };
    let detectors: Vec<Value> = findings
        .iter()
        .map(|f| {
            let end = f.end_line.max(f.line);
            // A report from the network is not trusted to be well formed: at most 1,000 lines.
            let lines: Vec<usize> = (f.line..=end).take(1000).collect();
            let place = format!("{}#L{}-L{}", f.file, f.line, end);
            let id =
                sha2::Sha256::digest(format!("{}\n{}\n{}\n{}", f.detector, f.file, f.line, end));
            let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
            json!({
                "check": f.detector,
                "impact": impact(f),
                "confidence": confidence(f),
                "description": format!("{} ({}:{})\n", f.message, f.file, f.line),
                "markdown": format!("{} ([{}]({}))\n", f.message, place, place),
                "first_markdown_element": place,
                "id": id,
                "elements": [{
                    "type": "node",
                    "name": f.detector,
                    "source_mapping": {
                        "filename_relative": f.file,
                        "filename_short": f.file,
                        "lines": lines,
                        "is_dependency": false,
                    },
                }],
                "additional_fields": { "swc": f.swc, "category": f.category.name(), "fix": f.hint },
            })
        })
        .collect();
    let error = (!errors.is_empty()).then(|| {
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    });
    json!({
        "success": true,
        "error": error,
        "results": { "detectors": detectors },
    })
}
