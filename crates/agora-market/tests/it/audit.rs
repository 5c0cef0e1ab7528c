//! The Solidity auditor as a network job: served, receipted and priced by its tokens, settled,
//! and re-run by a verifier that catches a doctored report.

use super::verify::{
    checked_net, job_state, judge_until_decided, provider_with, serve_and_settle_input,
    tiny_backend, verifier, verifier_named,
};
use super::*;
use agora_market::{Backend, Served, SourceFile, auditor_id};
use agora_types::{Fault, Verdict};

const BANK: &str = "pragma solidity ^0.4.24;
contract Bank {
    mapping(address => uint) public balances;
    function withdraw() public {
        uint amount = balances[msg.sender];
        msg.sender.call.value(amount)();
        balances[msg.sender] = 0;
    }
    function kill() public {
        selfdestruct(msg.sender);
    }
}
";

fn audit_input() -> JobInput {
    JobInput::Audit {
        files: vec![
            SourceFile {
                name: "Bank.sol".into(),
                source: BANK.into(),
            },
            SourceFile {
                name: "broken.sol".into(),
                source: "contract {".into(),
            },
        ],
    }
}

/// A provider that drops the first finding of every report it delivers.
struct Doctored(InferBackend);

impl Backend for Doctored {
    fn serves(&self, model: &Hash) -> bool {
        self.0.serves(model)
    }

    fn input_tokens(&self, model: &Hash, input: &JobInput) -> Result<u32, Error> {
        self.0.input_tokens(model, input)
    }

    fn run(
        &self,
        model: &Hash,
        input: &JobInput,
        params: &JobParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Served, Error> {
        let mut served = self.0.run(model, input, params, on_text)?;
        if let JobOutput::Audit { findings, .. } = &mut served.output {
            findings.remove(0);
        }
        Ok(served)
    }
}

/// A job whose reveal would not fit what a check carries is refused before its receipt is
/// signed: the provider never claims a fee it could be slashed for failing to reveal.
#[test]
fn a_job_too_large_to_reveal_is_refused_and_never_claimed() {
    let net = start();
    // Thousands of findings: a report far larger than a reveal can carry.
    let body = "function k() public { selfdestruct(msg.sender); }\n".repeat(3_000);
    let input = JobInput::Audit {
        files: vec![SourceFile {
            name: "Many.sol".into(),
            source: format!("pragma solidity ^0.4.24;\ncontract Many {{\n{body}}}\n"),
        }],
    };
    let bytes = input.to_bytes();
    let request = JobRequest {
        chain_id: CHAIN_ID.into(),
        client: net.client.public(),
        provider: net.provider.address(),
        model: auditor_id(),
        input_hash: Hash::digest(&bytes),
        params: JobParams::default(),
        max_fee: 100_000_000,
        nonce: Hash([8; 32]),
        expiry_height: 100,
    };
    let (envelope, _reader) = seal(
        &net.provider.info().encryption_key.0,
        &request.hash(),
        &bytes,
    );
    let submission = JobSubmission {
        request: hex::encode(borsh::to_vec(&request.clone().sign(&net.client)).unwrap()),
        input: envelope,
        stream: false,
    };
    let job = net.provider.admit(&submission).unwrap();
    let err = net
        .provider
        .execute(job, &mut |_| ControlFlow::Continue(()))
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Refused {
                code: "too_large_to_verify",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(net.provider.unsettled(), 0, "nothing to claim");
    assert!(net.provider.kept_input(&request.id()).unwrap().is_none());
}

#[test]
fn an_audit_is_served_receipted_and_priced_by_its_solidity_tokens() {
    let net = start();
    let input = audit_input();
    let bytes = input.to_bytes();
    let request = JobRequest {
        chain_id: CHAIN_ID.into(),
        client: net.client.public(),
        provider: net.provider.address(),
        model: auditor_id(),
        input_hash: Hash::digest(&bytes),
        params: JobParams::default(),
        max_fee: 1_000_000,
        nonce: Hash([9; 32]),
        expiry_height: 100,
    };
    let (envelope, mut reader) = seal(
        &net.provider.info().encryption_key.0,
        &request.hash(),
        &bytes,
    );
    let submission = JobSubmission {
        request: hex::encode(borsh::to_vec(&request.clone().sign(&net.client)).unwrap()),
        input: envelope,
        stream: false,
    };
    let job = net.provider.admit(&submission).unwrap();
    let delivery = net
        .provider
        .execute(job, &mut |_| ControlFlow::Continue(()))
        .unwrap();
    let (output, receipt) = open_delivery(&mut reader, &delivery).unwrap();
    receipt.verify().unwrap();
    assert_eq!(receipt.receipt.output_hash, output.hash());
    let expected = agora_audit::audit_files([("Bank.sol", BANK), ("broken.sol", "contract {")]);
    let JobOutput::Audit { findings, errors } = &output else {
        panic!("an audit report expected, got {output:?}");
    };
    assert_eq!(findings, &expected.findings);
    assert_eq!(errors, &expected.errors);
    let detectors: Vec<(&str, usize)> = findings
        .iter()
        .map(|f| (f.detector.as_str(), f.line))
        .collect();
    assert!(detectors.contains(&("reentrancy", 6)), "{detectors:?}");
    assert!(
        detectors.contains(&("unprotected-selfdestruct", 10)),
        "{detectors:?}"
    );
    assert_eq!(
        errors.len(),
        1,
        "the broken file is reported, the rest audited"
    );
    // Billed by the lexer's tokens, nothing for output.
    let tokens = agora_audit::count_tokens(BANK) + agora_audit::count_tokens("contract {");
    assert_eq!(receipt.receipt.input_tokens as usize, tokens);
    assert_eq!(receipt.receipt.output_tokens, 0);
    assert_eq!(
        receipt.receipt.fee,
        job_fee(10_000, 30_000, tokens as u32, 0).unwrap()
    );
    // It settles like any job.
    assert_eq!(net.provider.settle().unwrap().unwrap().1, 1);
    net.block();
    assert!(net.chain.job(&request.id()).unwrap().is_some());
}

#[test]
fn the_wrong_input_for_a_model_is_refused_before_any_work() {
    let net = start();
    let chat = JobInput::Completion {
        prompt: "pragma solidity".into(),
        grammar: None,
    };
    let mut backend = InferBackend::default();
    backend.add_auditor();
    let err = backend.input_tokens(&auditor_id(), &chat).unwrap_err();
    assert!(matches!(err, Error::BadInput(_)), "{err:?}");
    for files in [
        vec![],
        vec![SourceFile {
            name: " ".into(),
            source: BANK.into(),
        }],
    ] {
        let err = backend
            .input_tokens(&auditor_id(), &JobInput::Audit { files })
            .unwrap_err();
        assert!(matches!(err, Error::BadInput(_)), "{err:?}");
    }
    // An audit sent to the chat model is refused at admission, with the code a client sees.
    let (submission, _) = net.submission(3, &audit_input(), 1_000_000, 100);
    assert_eq!(
        code(net.provider.admit(&submission).unwrap_err()),
        "bad_input"
    );
}

#[test]
fn a_verifier_passes_an_honest_audit_and_convicts_a_doctored_report() {
    let net = checked_net();
    let v = verifier(&net, 1);
    let v2 = verifier_named(&net, 2, "verifier-2");

    // Honest.
    let job = serve_and_settle_input(&net, &net.provider, 1, auditor_id(), &audit_input());
    assert_eq!(job_state(&net, &job)["sampled"], true);
    assert_eq!(
        judge_until_decided(&net, &net.provider, &[&v, &v2], &job),
        vec![(job, Verdict::Pass)]
    );
    assert_eq!(job_state(&net, &job)["check"]["outcome"], "passed");
    let escrow_before = net.chain.escrow(&net.client.address()).unwrap();

    // A provider that hides a finding (the reentrancy here) is caught and slashed: accused by
    // the verifier drawn, confirmed by the other.
    let (inner, _) = tiny_backend(&net, "doctor");
    let cheater = provider_with(&net, "doctor", 3, Arc::new(Doctored(inner)));
    let job = serve_and_settle_input(&net, &cheater, 2, auditor_id(), &audit_input());
    let wrong = (
        job,
        Verdict::Fail {
            fault: Fault::WrongReport,
        },
    );
    assert_eq!(
        judge_until_decided(&net, &cheater, &[&v, &v2], &job),
        vec![wrong, wrong]
    );
    let state = job_state(&net, &job);
    assert_eq!(state["check"]["outcome"], "fraud", "{state}");
    assert_eq!(state["state"], "refunded");
    assert!(!net.chain.is_provider(&cheater.address()).unwrap());
    assert_eq!(
        net.chain.escrow(&net.client.address()).unwrap(),
        escrow_before,
        "the doctored report's fee came back"
    );
}

#[test]
fn judging_an_audit_checks_the_counts_the_kind_and_every_finding() {
    let mut backend = InferBackend::default();
    backend.add_auditor();
    let input = audit_input();
    let params = JobParams::default();
    let served = backend
        .run(&auditor_id(), &input, &params, &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
    let counts = (served.input_tokens, 0);
    let judge = |output: &JobOutput, counts: (u32, u32)| {
        backend
            .judge(&auditor_id(), &input, &params, output, counts, 0.0)
            .unwrap()
    };
    assert_eq!(judge(&served.output, counts), Verdict::Pass);
    assert_eq!(
        judge(&served.output, (counts.0 + 1, 0)),
        Verdict::Fail {
            fault: Fault::WrongCount
        }
    );
    let JobOutput::Audit { findings, errors } = served.output.clone() else {
        panic!("audit expected");
    };
    let mut moved = findings.clone();
    moved[0].line += 1;
    let mut softened = findings.clone();
    softened[0].severity = agora_audit::Severity::Info;
    for bad in [
        JobOutput::Audit {
            findings: moved,
            errors: errors.clone(),
        },
        JobOutput::Audit {
            findings: softened,
            errors: errors.clone(),
        },
        JobOutput::Audit {
            findings: findings.clone(),
            errors: vec![],
        },
    ] {
        assert_eq!(
            judge(&bad, counts),
            Verdict::Fail {
                fault: Fault::WrongReport
            }
        );
    }
    let text = JobOutput::Text {
        text: String::new(),
        tokens: vec![],
        finish: "stop".into(),
        logprobs: None,
    };
    assert_eq!(
        judge(&text, counts),
        Verdict::Fail {
            fault: Fault::WrongKind
        }
    );
}

#[test]
fn the_gateway_audits_over_http_filters_exports_sarif_and_explains_each_finding() {
    let net = start();
    let (provider, _) = serve_provider(&net, "audit-provider", 5_000, 1);
    let base = serve_gateway(&net);
    let one = serde_json::json!({ "source": BANK });

    let (status, body, _) = post(&base, "/v1/audits", None, one.clone());
    assert_eq!(status, 401, "{body}");
    for (bad, code) in [
        (
            serde_json::json!({"source": BANK, "files": [{"name": "a.sol", "source": BANK}]}),
            "invalid_input",
        ),
        (serde_json::json!({"files": []}), "invalid_input"),
        (
            serde_json::json!({"source": BANK, "min_severity": "urgent"}),
            "invalid_min_severity",
        ),
        (
            serde_json::json!({"source": BANK, "format": "pdf"}),
            "invalid_format",
        ),
        (
            serde_json::json!({"source": BANK, "sourec": 1}),
            "invalid_request",
        ),
        (
            serde_json::json!({"source": BANK, "model": "tiny-chat"}),
            "bad_input",
        ),
        // This gateway has no node to publish to: refused before anything is paid.
        (
            serde_json::json!({"source": BANK, "publish": true}),
            "publishing_unavailable",
        ),
    ] {
        let (status, body, _) = post(&base, "/v1/audits", Some("test-key"), bad);
        assert_eq!(status, 400, "{code}: {body}");
        assert!(body.contains(code), "{code}: {body}");
    }

    let (status, body, job) = post(&base, "/v1/audits", Some("test-key"), one);
    assert_eq!(status, 200, "{body}");
    let whole: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(whole["object"], "audit");
    assert_eq!(whole["model"], agora_audit::MODEL_NAME);
    assert_eq!(job.as_deref(), whole["agora"]["job_id"].as_str());
    let expected = agora_audit::audit_files([("contract.sol", BANK)]);
    let findings: Vec<agora_audit::Finding> =
        serde_json::from_value(whole["findings"].clone()).unwrap();
    assert_eq!(findings, expected.findings);
    assert_eq!(whole["summary"]["findings"], findings.len());
    assert_eq!(whole["summary"]["high"], 2, "{}", whole["summary"]);
    assert_eq!(
        whole["agora"]["input_tokens"],
        agora_audit::count_tokens(BANK)
    );
    assert_eq!(whole["agora"]["output_tokens"], 0);
    // The receipt's output hash is the report's.
    let report = JobOutput::Audit {
        findings: expected.findings.clone(),
        errors: vec![],
    };
    assert_eq!(whole["agora"]["output_hash"], report.hash().to_hex());

    // Only what is high, also as SARIF.
    let (status, body, _) = post(
        &base,
        "/v1/audits",
        Some("test-key"),
        serde_json::json!({"files": [{"name": "Bank.sol", "source": BANK}], "min_severity": "high", "format": "sarif"}),
    );
    assert_eq!(status, 200, "{body}");
    let whole: serde_json::Value = serde_json::from_str(&body).unwrap();
    let high: Vec<&serde_json::Value> = whole["findings"].as_array().unwrap().iter().collect();
    assert!(!high.is_empty() && high.iter().all(|f| f["severity"] == "high"));
    assert!(
        high.len() < findings.len(),
        "the medium finding is filtered"
    );
    let results = whole["sarif"]["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), high.len());
    assert_eq!(
        results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "Bank.sol"
    );

    // Explained: each finding by its own chat job, marked generated, with its own receipt.
    let settled_before = provider.unsettled();
    let (status, body, _) = post(
        &base,
        "/v1/audits",
        Some("test-key"),
        serde_json::json!({"source": BANK, "explain": true}),
    );
    assert_eq!(status, 200, "{body}");
    let whole: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(whole.get("explain_error").is_none(), "{whole}");
    let listed = whole["findings"].as_array().unwrap();
    let mut jobs = vec![whole["agora"]["job_id"].clone()];
    for f in listed {
        let e = &f["explanation"];
        assert_eq!(e["generated"], true, "{f}");
        assert_eq!(e["model"], "tiny-chat");
        assert!(e["text"].is_string());
        assert!(e["agora"]["output_tokens"].as_u64().unwrap() > 0);
        jobs.push(e["agora"]["job_id"].clone());
    }
    jobs.sort_by_key(|j| j.to_string());
    jobs.dedup();
    assert_eq!(jobs.len(), 1 + listed.len(), "one job per explanation");
    // Jobs served by this provider or the other one the market lists; all were receipted.
    assert!(provider.unsettled() > settled_before);
}
