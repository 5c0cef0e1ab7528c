//! The auditor as a network model: a stable id, a billable size, a report over many files, and an
//! output pinned to its version (verifiers compare reports exactly).

use agora_audit::{MODEL_NAME, audit_files, count_tokens, model_id};
use sha2::Digest as _;
use std::path::Path;

/// The model name, id and the SHA-256 of the labelled suite's JSON report that this version
/// gives. When a detector's output changes, this test fails: bump `MODEL_NAME` (providers and
/// verifiers of different versions would otherwise disagree) and update the pins.
const PINNED: (&str, &str, &str) = (
    "agora-audit@0.5.0",
    "ff1eeab648a93c2f3577986cb8aaf5abaf05690c212a9c9c76caa09723efa023",
    "3df5a9a8f18174e411722cc5cf8ad5394ff87b729a47680e0841a01fc69fabe8",
);

fn suite_files() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("suite");
    let mut entries: Vec<_> = std::fs::read_dir(&dir).expect("suite").flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    entries
        .into_iter()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".sol"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read_to_string(e.path()).expect("read"),
            )
        })
        .collect()
}

#[test]
fn the_output_is_pinned_to_the_version() {
    let files = suite_files();
    let report = audit_files(files.iter().map(|(n, s)| (n.as_str(), s.as_str())));
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let digest = hex(&sha2::Sha256::digest(
        serde_json::to_vec(&report).expect("serializes"),
    ));
    let id = hex(&model_id());
    assert_eq!(
        (MODEL_NAME, id.as_str(), digest.as_str()),
        PINNED,
        "the auditor's output or detector table changed: bump MODEL_NAME and update PINNED"
    );
    // Same input, same bytes.
    let again = audit_files(files.iter().map(|(n, s)| (n.as_str(), s.as_str())));
    assert_eq!(again, report);
}

/// Audits `src` on a thread with a 2 MiB stack (what tokio's and the test harness's threads
/// have), so that a stack overflow shows as a failure here, not as an abort elsewhere.
fn audit_on_small_stack(src: String) -> Result<usize, String> {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            agora_audit::audit_source("deep.sol", &src)
                .map(|f| f.len())
                .map_err(|e| e.report().message)
        })
        .expect("a thread starts")
        .join()
        .expect("the audit thread survives")
}

fn in_function(body: &str) -> String {
    format!("contract C {{\n  function f(uint a) public returns (uint) {{\n{body}\n  }}\n}}\n")
}

#[test]
fn crafted_nesting_is_refused_before_it_can_overflow_the_stack() {
    use agora_audit::MAX_DEPTH;
    let parens = |n: usize| format!("return {}a{};", "(".repeat(n), ")".repeat(n));
    let sums = |n: usize| format!("return a{};", "+a".repeat(n));
    let nots = |n: usize| format!("bool b = {}true; return a;", "!".repeat(n));
    let ifs = |n: usize| format!("{}return a;", "if (a > 1) ".repeat(n));
    let chain = |n: usize| {
        let mut s = "if (a == 0) { return 0; }".to_string();
        for i in 1..=n {
            s += &format!(" else if (a == {i}) {{ return {i}; }}");
        }
        s + " return a;"
    };
    let blocks = |n: usize| format!("{}return a;{}", "{ ".repeat(n), " }".repeat(n));
    // A struct literal cannot reset the count of the expression around it.
    let literals = |n: usize| format!("return a{};", "+f({x: 1})".repeat(n));
    // Just under the limit: audited, called from a thread with a 2 MiB stack, in this
    // (unoptimized) build.
    let n = MAX_DEPTH - 20;
    for body in [
        parens(n / 2),
        sums(n),
        nots(n),
        ifs(n / 4),
        chain(n / 3),
        blocks(n),
        literals(n / 6),
    ] {
        let head: String = body.chars().take(40).collect();
        assert!(audit_on_small_stack(in_function(&body)).is_ok(), "{head}");
    }
    // Far past it (the attack: 60,000 parentheses): a clear error, no crash.
    for body in [
        parens(60_000),
        sums(60_000),
        nots(60_000),
        ifs(60_000),
        chain(5_000),
        blocks(60_000),
        literals(60_000),
    ] {
        let err = audit_on_small_stack(in_function(&body)).unwrap_err();
        assert!(err.starts_with("too deeply nested to audit"), "{err}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Random soups of Solidity's nesting and operator tokens, inside a function: audited or
    /// refused with an error, on a 2 MiB stack, never a crash.
    #[test]
    fn random_token_soups_never_crash_the_auditor(
        tokens in proptest::collection::vec(0usize..22, 0..4_000),
    ) {
        const VOCABULARY: [&str; 22] = [
            "(", ")", "{", "}", "[", "]", "if (a)", "else", "a", "+", "!", ";", ".b", ",", "1",
            "\"s\"", "return", "new", "delete", "f({x: 1})", "while (a)", "? a :",
        ];
        let body: Vec<&str> = tokens.iter().map(|&t| VOCABULARY[t]).collect();
        let _ = audit_on_small_stack(in_function(&body.join(" ")));
    }
}

#[test]
fn a_report_goes_on_past_a_file_that_does_not_parse() {
    let good = "pragma solidity ^0.4.24;\ncontract A {\n  function f() public {\n    selfdestruct(msg.sender);\n  }\n}\n";
    let report = audit_files([("bad.sol", "contract {"), ("good.sol", good)]);
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].file, "bad.sol");
    assert!(
        report.findings.iter().any(|f| f.file == "good.sol"
            && f.detector == "unprotected-selfdestruct"
            && f.line == 4),
        "{:?}",
        report.findings
    );
    // Round trip through JSON, as it travels on the network.
    let back: agora_audit::Report =
        serde_json::from_slice(&serde_json::to_vec(&report).unwrap()).unwrap();
    assert_eq!(back, report);
}

#[test]
fn tokens_are_counted_as_the_lexer_reads_them() {
    assert_eq!(count_tokens("contract A { uint x; }"), 7);
    // A comment counts one; whitespace nothing.
    assert_eq!(count_tokens("contract A { uint x; } // the end\n\n\n"), 8);
    assert_eq!(count_tokens(""), 0);
    // Old syntax is counted after the same rewrites the parser sees; garbage never panics and
    // never counts more than its bytes.
    assert!(count_tokens("function f() { throw; }") > 0);
    for junk in [
        "\"unterminated",
        "/* open",
        "0x",
        "\u{0}\u{1}ü",
        "hex\"zz\"",
    ] {
        assert!(count_tokens(junk) <= junk.len(), "{junk:?}");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
