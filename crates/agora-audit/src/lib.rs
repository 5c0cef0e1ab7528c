//! Agora's Solidity auditor (DESIGN.md §10): no compiler, Solidity 0.4 through 0.8.
//!
//! ```text
//!  source ─▶ prepass (old syntax, same lines) ─▶ solang-parser ─▶ Unit (contracts, functions,
//!  modifiers, state variables) ─▶ detectors ─▶ findings (line, category, severity) ─▶ text/JSON/SARIF
//! ```
//!
//! Every finding names its line, a detector id, the SWC id and the DASP category, so results can
//! be scored against labelled contracts.

#![forbid(unsafe_code)]

mod detectors;
pub mod inject;
mod model;
pub mod output;
mod prepass;
mod project;

pub use detectors::DETECTORS;
pub use prepass::{Rewrite, prepass};
pub use project::{Layout, Project, ProjectError, ProjectReport, Unresolved, joined};
use serde::{Deserialize, Serialize};

/// The DASP 10 category of a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Access control.
    AccessControl,
    /// Integer overflow and underflow.
    Arithmetic,
    /// Predictable randomness.
    BadRandomness,
    /// Denial of service.
    DenialOfService,
    /// Transaction-order dependence.
    FrontRunning,
    /// Reentrancy.
    Reentrancy,
    /// Short address attack.
    ShortAddresses,
    /// Timestamp dependence.
    TimeManipulation,
    /// Unchecked return values of low-level calls.
    UncheckedLowLevelCalls,
    /// Everything else (deprecated constructs, uninitialized storage, locked ether).
    Other,
}

impl Category {
    /// The name used in JSON, SARIF and label files.
    pub fn name(self) -> &'static str {
        match self {
            Category::AccessControl => "access_control",
            Category::Arithmetic => "arithmetic",
            Category::BadRandomness => "bad_randomness",
            Category::DenialOfService => "denial_of_service",
            Category::FrontRunning => "front_running",
            Category::Reentrancy => "reentrancy",
            Category::ShortAddresses => "short_addresses",
            Category::TimeManipulation => "time_manipulation",
            Category::UncheckedLowLevelCalls => "unchecked_low_level_calls",
            Category::Other => "other",
        }
    }
}

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Style or deprecation.
    Info,
    /// Rarely exploitable.
    Low,
    /// Exploitable in some conditions.
    Medium,
    /// Funds at risk.
    High,
}

impl std::str::FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "info" => Ok(Severity::Info),
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            other => Err(format!(
                "severity {other:?}: one of info, low, medium, high"
            )),
        }
    }
}

/// How sure the detector is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// A pattern that is often benign.
    Low,
    /// Usually a bug.
    Medium,
    /// Almost always a bug.
    High,
}

/// A detector's fixed description.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Detector {
    /// Stable id, e.g. `tx-origin`.
    pub id: &'static str,
    /// SWC registry id, e.g. `SWC-115`.
    pub swc: &'static str,
    /// DASP category.
    pub category: Category,
    /// Severity.
    pub severity: Severity,
    /// Confidence.
    pub confidence: Confidence,
    /// What to do about it.
    pub hint: &'static str,
}

/// One problem at one place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The file, as given.
    pub file: String,
    /// First line (1-based).
    pub line: usize,
    /// Last line.
    pub end_line: usize,
    /// Detector id.
    pub detector: String,
    /// SWC id.
    pub swc: String,
    /// DASP category.
    pub category: Category,
    /// Severity.
    pub severity: Severity,
    /// Confidence.
    pub confidence: Confidence,
    /// What is wrong, in one line.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

/// Why a file could not be audited.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// It is not Solidity the parser reads.
    #[error("{file}:{line}: {message}")]
    Syntax {
        /// The file.
        file: String,
        /// Line of the first error.
        line: usize,
        /// The parser's message.
        message: String,
    },
    /// It nests deeper than [`MAX_DEPTH`] levels (or than a stack can hold).
    #[error("{file}:{line}: too deeply nested to audit: {why}")]
    TooDeep {
        /// The file.
        file: String,
        /// Where the nesting goes too deep.
        line: usize,
        /// How deep.
        why: String,
    },
    /// The thread that audits deep sources could not start.
    #[error("{file}: cannot start the audit: {reason}")]
    Thread {
        /// The file.
        file: String,
        /// The system's reason.
        reason: String,
    },
}

impl Error {
    /// The file.
    pub fn file(&self) -> &str {
        match self {
            Error::Syntax { file, .. }
            | Error::TooDeep { file, .. }
            | Error::Thread { file, .. } => file,
        }
    }

    /// As a report lists it.
    pub fn report(&self) -> ParseError {
        let (line, message) = match self {
            Error::Syntax { line, message, .. } => (*line, message.clone()),
            Error::TooDeep { line, why, .. } => {
                (*line, format!("too deeply nested to audit: {why}"))
            }
            Error::Thread { reason, .. } => (1, format!("cannot start the audit: {reason}")),
        };
        ParseError {
            file: self.file().to_string(),
            line,
            message,
        }
    }
}

impl From<Error> for ParseError {
    fn from(e: Error) -> Self {
        e.report()
    }
}

/// A file that could not be analysed, as reports (JSON, SARIF, the gateway's answers) list it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ParseError {
    /// The file.
    pub file: String,
    /// Line of the first error.
    pub line: usize,
    /// The parser's message.
    pub message: String,
}

/// Deepest syntax tree, estimated from the tokens, that a source may have: far beyond real
/// contracts (a few dozen levels), and well inside what [`AUDIT_STACK_BYTES`] holds (about 5 KiB
/// a level in an unoptimized build, far less optimized).
pub const MAX_DEPTH: usize = 1_000;

/// The stack the parser and detectors run on for a source deeper than [`SHALLOW_DEPTH`]: their
/// walks recurse once per level of the tree.
const AUDIT_STACK_BYTES: usize = 64 << 20;
/// Sources at most this deep (nearly all) are audited on the caller's thread: at about 5 KiB a
/// level unoptimized, any thread's stack (tokio's are 2 MiB) holds them.
pub(crate) const SHALLOW_DEPTH: usize = 100;

/// Refuses, before parsing, a source whose syntax tree would nest deeper than [`MAX_DEPTH`]
/// (a crafted `((((…))))` otherwise overflows the stack and aborts the process). The estimate
/// counts, along the path to each token: enclosing blocks, `else` links before it in each
/// block (an `else if` chain nests one level per link), and within its statement every
/// operator, call, index, member access and control keyword (each can nest one level with no
/// bracket to show it: `a+a+…`, `!!…x`, `a.b.c…`, `if (x) if (x) …`). Returns the deepest
/// estimate; `Err` is the byte offset and why.
pub(crate) fn check_depth(text: &str) -> Result<usize, (usize, String)> {
    use solang_parser::lexer::{Lexer, Token};
    /// What a `{` opened.
    struct Open {
        /// Inside an expression (`f({a: 1})`): the statement goes on after it.
        in_expression: bool,
        /// The statement's count and open parentheses when it opened.
        saved: (usize, usize),
        /// Depth at the block's first token, and its `else` links so far.
        base: usize,
        elses: usize,
    }
    let (mut comments, mut errors) = (Vec::new(), Vec::new());
    let mut opens: Vec<Open> = Vec::new();
    let (mut base, mut elses) = (0usize, 0usize);
    // Within the current statement: operators and the like, and open parentheses/brackets.
    let (mut ops, mut parens) = (0usize, 0usize);
    let mut deepest = 0;
    for (start, token, _) in Lexer::new(text, 0, &mut comments, &mut errors) {
        match token {
            Token::OpenParenthesis | Token::OpenBracket => {
                parens += 1;
                ops += 1;
            }
            Token::CloseParenthesis | Token::CloseBracket => parens = parens.saturating_sub(1),
            Token::OpenCurlyBrace => {
                let in_expression = parens > 0;
                opens.push(Open {
                    in_expression,
                    saved: (ops, parens),
                    base,
                    elses,
                });
                if !in_expression {
                    base += elses + ops + 1;
                    (elses, ops, parens) = (0, 0, 0);
                }
            }
            Token::CloseCurlyBrace => match opens.pop() {
                Some(open) if open.in_expression => (ops, parens) = open.saved,
                Some(open) => {
                    (base, elses) = (open.base, open.elses);
                    (ops, parens) = (0, 0);
                }
                None => (ops, parens) = (0, 0),
            },
            Token::Semicolon if parens == 0 => ops = 0,
            Token::Else => elses += 1,
            Token::Identifier(_)
            | Token::StringLiteral(..)
            | Token::AddressLiteral(_)
            | Token::HexLiteral(_)
            | Token::Number(..)
            | Token::RationalNumber(..)
            | Token::HexNumber(_)
            | Token::Comma
            | Token::Semicolon => {}
            _ => ops += 1,
        }
        let depth = base + elses + ops;
        if depth > MAX_DEPTH {
            return Err((start, format!("it nests deeper than {MAX_DEPTH} levels")));
        }
        deepest = deepest.max(depth);
    }
    Ok(deepest)
}

/// Audits one Solidity source. `file` names it in the findings.
pub fn audit_source(file: &str, src: &str) -> Result<Vec<Finding>, Error> {
    let prepared = prepare(file, src, true)?;
    let (findings, mut errors) = audit_prepared(vec![prepared], vec![Vec::new()]);
    match errors.pop() {
        Some(e) => Err(e),
        None => Ok(findings),
    }
}

/// A source rewritten for the parser ([`prepass`]), checked for depth, with the paths its
/// import directives name.
struct Prepared {
    name: String,
    text: String,
    rewrites: Vec<prepass::Rewrite>,
    lines: model::LineIndex,
    depth: usize,
    /// Import paths as written, in order.
    imports: Vec<String>,
    /// Contracts, libraries and interfaces defined.
    contracts: usize,
    /// Findings in it are reported.
    reported: bool,
}

/// Rewrites a source, checks its depth and reads its imports (with the lexer: no recursion).
fn prepare(name: &str, src: &str, reported: bool) -> Result<Prepared, Error> {
    let (text, rewrites) = prepass(src);
    let lines = model::LineIndex::new(&text);
    let depth = check_depth(&text).map_err(|(offset, why)| Error::TooDeep {
        file: name.to_string(),
        line: lines.line(offset),
        why,
    })?;
    let (imports, contracts) = scan(&text);
    Ok(Prepared {
        name: name.to_string(),
        text,
        rewrites,
        lines,
        depth,
        imports,
        contracts,
        reported,
    })
}

/// The paths a source's import directives name, in order, as written.
pub fn import_paths(src: &str) -> Vec<String> {
    scan(&prepass(src).0).0
}

/// The paths named by a source's import directives, in order (the first string of each
/// `import … ;`), and how many contracts, libraries and interfaces it defines.
fn scan(text: &str) -> (Vec<String>, usize) {
    use solang_parser::lexer::{Lexer, Token};
    let (mut comments, mut errors) = (Vec::new(), Vec::new());
    let mut out = Vec::new();
    let mut in_import = false;
    let mut contracts = 0;
    for (_, token, _) in Lexer::new(text, 0, &mut comments, &mut errors) {
        match token {
            Token::Contract | Token::Library | Token::Interface => contracts += 1,
            Token::Import => in_import = true,
            Token::Semicolon => in_import = false,
            Token::StringLiteral(_, path) if in_import => {
                out.push(path.to_string());
                in_import = false;
            }
            _ => {}
        }
    }
    (out, contracts)
}

/// Parses prepared files and runs the detectors over all of them together: `imports[i]` are the
/// files that file `i` imports (indexes into `files`). A file that does not parse is reported and
/// left out; the rest are audited. Findings come file by file in the order given, by line.
fn audit_prepared(files: Vec<Prepared>, imports: Vec<Vec<usize>>) -> (Vec<Finding>, Vec<Error>) {
    let deep = files.iter().any(|f| f.depth > SHALLOW_DEPTH);
    let run = move || parse_and_detect(files, imports);
    if !deep {
        return run();
    }
    // Deep: on a stack of its own, whatever thread calls.
    std::thread::scope(|scope| {
        match std::thread::Builder::new()
            .name("audit".into())
            .stack_size(AUDIT_STACK_BYTES)
            .spawn_scoped(scope, run)
        {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(e) => (
                Vec::new(),
                vec![Error::Thread {
                    file: String::new(),
                    reason: e.to_string(),
                }],
            ),
        }
    })
}

/// [`audit_prepared`]'s work, on the audit's own stack.
fn parse_and_detect(files: Vec<Prepared>, imports: Vec<Vec<usize>>) -> (Vec<Finding>, Vec<Error>) {
    let mut errors = Vec::new();
    // Each file's place among those that parse.
    let mut parsed = Vec::with_capacity(files.len());
    let mut place = vec![None; files.len()];
    for (i, f) in files.into_iter().enumerate() {
        match solang_parser::parse(&f.text, parsed.len()) {
            Ok((tree, _comments)) => {
                place[i] = Some(parsed.len());
                parsed.push((
                    i,
                    model::ParsedFile {
                        name: f.name,
                        tree,
                        lines: f.lines,
                        rewrites: f.rewrites,
                        reported: f.reported,
                        imports: Vec::new(),
                    },
                ));
            }
            Err(errs) => {
                let first = errs.first();
                errors.push(Error::Syntax {
                    line: first.map_or(1, |e| f.lines.line(e.loc.start())),
                    message: first.map_or_else(|| "does not parse".into(), |e| e.message.clone()),
                    file: f.name,
                });
            }
        }
    }
    let parsed: Vec<model::ParsedFile> = parsed
        .into_iter()
        .map(|(i, mut p)| {
            p.imports = imports[i].iter().filter_map(|&j| place[j]).collect();
            p
        })
        .collect();
    let unit = model::Unit::build(&parsed);
    let mut findings = detectors::run(&unit);
    findings.sort_by(|(fa, a), (fb, b)| (fa, a.line, &a.detector).cmp(&(fb, b.line, &b.detector)));
    findings.dedup_by(|(fa, a), (fb, b)| fa == fb && a.line == b.line && a.detector == b.detector);
    (findings.into_iter().map(|(_, f)| f).collect(), errors)
}

/// The auditor's name as a network model (DESIGN.md §10): providers serve it and verifiers
/// re-run it like any model. A verifier compares a provider's report with its own exactly, so any
/// change to what the detectors report must change this version (a test pins the labelled
/// suite's report to it).
pub const MODEL_NAME: &str = "agora-audit@0.5.0";

/// The auditor's model id: SHA-256 of its name and its detector table (a weights file's hash
/// is the id of a neural model; the auditor's "weights" are its detectors).
pub fn model_id() -> [u8; 32] {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(b"agora auditor\n");
    h.update(MODEL_NAME.as_bytes());
    for d in DETECTORS {
        h.update(
            format!(
                "\n{} {} {} {:?} {:?}",
                d.id,
                d.swc,
                d.category.name(),
                d.severity,
                d.confidence
            )
            .as_bytes(),
        );
    }
    h.finalize().into()
}

/// Billable size of a source, in Solidity tokens: what the lexer reads (comments count one
/// each). Never more than the source's bytes.
pub fn count_tokens(src: &str) -> usize {
    let (text, _) = prepass(src);
    let mut comments = Vec::new();
    let mut errors = Vec::new();
    let tokens = solang_parser::lexer::Lexer::new(&text, 0, &mut comments, &mut errors).count();
    (tokens + comments.len()).min(src.len())
}

/// What auditing a set of files gives.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Findings, file by file in the order given, by line within a file.
    pub findings: Vec<Finding>,
    /// Files that do not parse.
    pub errors: Vec<ParseError>,
}

/// Every `.sol` file under `paths` (files, or folders searched recursively), sorted.
pub fn solidity_files(paths: &[std::path::PathBuf]) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            while let Some(dir) = stack.pop() {
                let entries = std::fs::read_dir(&dir).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("reading {}: {e}", dir.display()))
                })?;
                for e in entries {
                    let path = e?.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else if path.extension().is_some_and(|x| x == "sol") {
                        out.push(path);
                    }
                }
            }
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} does not exist", p.display()),
            ));
        }
    }
    out.sort();
    Ok(out)
}

/// Audits `(name, source)` files as one project: an import names another of the files by its
/// path relative to the importing file (`./`, `../`) or by its name as given. A contract is
/// analysed with what it inherits from the files it imports. One that does not parse is
/// reported and the rest go on.
pub fn audit_files<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Report {
    let mut report = Report::default();
    let mut prepared = Vec::new();
    for (name, src) in files {
        match prepare(name, src, true) {
            Ok(p) => prepared.push(p),
            Err(e) => report.errors.push(e.report()),
        }
    }
    let names: Vec<String> = prepared.iter().map(|p| p.name.clone()).collect();
    let imports = prepared
        .iter()
        .map(|p| {
            p.imports
                .iter()
                .filter_map(|path| {
                    let wanted = project::joined(&p.name, path);
                    names.iter().position(|n| *n == wanted || n == path)
                })
                .collect()
        })
        .collect();
    let (findings, errors) = audit_prepared(prepared, imports);
    report.findings = findings;
    report.errors.extend(errors.iter().map(Error::report));
    report
}

/// Lines of source shown to a chat model around a finding it explains.
const EXPLAIN_CONTEXT_LINES: usize = 3;

/// The chat (`(role, content)` messages) that asks a chat model to explain `finding` of
/// `source`: what the detector found, the numbered lines around it, and the detector's fix. What
/// the model answers is generated text: show it marked as such, beside the finding, never instead
/// of it.
pub fn explain_prompt(finding: &Finding, source: &str) -> [(&'static str, String); 2] {
    let f = finding;
    let lines: Vec<&str> = source.lines().collect();
    let first = f.line.saturating_sub(EXPLAIN_CONTEXT_LINES).max(1);
    let last = (f.end_line.max(f.line) + EXPLAIN_CONTEXT_LINES).min(lines.len());
    let snippet: String = (first..=last)
        .filter_map(|n| lines.get(n - 1).map(|l| format!("{n:>4} | {l}\n")))
        .collect();
    [
        (
            "system",
            "You are a smart-contract security auditor. Explain findings to a Solidity developer \
             in two or three plain sentences: what can go wrong and how to fix it."
                .to_string(),
        ),
        (
            "user",
            format!(
                "Finding {} ({}, {}, severity {:?}) at line {} of {}: {}\n\nCode:\n{}\nSuggested fix: {}\n\nExplain this finding.",
                f.detector,
                f.swc,
                f.category.name(),
                f.severity,
                f.line,
                f.file,
                f.message,
                snippet,
                f.hint
            ),
        ),
    ]
}

/// A labelled vulnerability: a file, its lines, its category.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, Serialize)]
pub struct Label {
    /// File name, relative to the labelled folder.
    pub file: String,
    /// The vulnerable lines (any of them names the bug).
    pub lines: Vec<usize>,
    /// DASP category name (`reentrancy`, `access_control`, …).
    pub category: String,
}

/// Recall and precision counts of one category (or all).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Score {
    /// Labels found.
    pub found: usize,
    /// Labels.
    pub labels: usize,
    /// Findings that match a label.
    pub true_findings: usize,
    /// Findings.
    pub findings: usize,
}

impl Score {
    /// Found labels / labels (1 when there are none).
    pub fn recall(&self) -> f64 {
        ratio(self.found, self.labels)
    }

    /// Findings matching a label / findings (1 when there are none).
    pub fn precision(&self) -> f64 {
        ratio(self.true_findings, self.findings)
    }

    /// Harmonic mean of recall and precision.
    pub fn f1(&self) -> f64 {
        let (r, p) = (self.recall(), self.precision());
        if r + p == 0.0 {
            0.0
        } else {
            2.0 * r * p / (r + p)
        }
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// Scores findings against labels at line level: a finding matches a label of its file and
/// category whose lines include one within `tolerance` of the finding's line range. Returns the
/// score per category name and overall (`"overall"`).
pub fn score(
    findings: &[Finding],
    labels: &[Label],
    tolerance: usize,
) -> std::collections::BTreeMap<String, Score> {
    let matches = |f: &Finding, l: &Label| {
        f.file == l.file
            && f.category.name() == l.category
            && l.lines
                .iter()
                .any(|&line| line + tolerance >= f.line && line <= f.end_line + tolerance)
    };
    let mut out: std::collections::BTreeMap<String, Score> = Default::default();
    for l in labels {
        let found = findings.iter().any(|f| matches(f, l));
        for key in [l.category.clone(), "overall".to_string()] {
            let s = out.entry(key).or_default();
            s.labels += 1;
            s.found += usize::from(found);
        }
    }
    for f in findings {
        let good = labels.iter().any(|l| matches(f, l));
        for key in [f.category.name().to_string(), "overall".to_string()] {
            let s = out.entry(key).or_default();
            s.findings += 1;
            s.true_findings += usize::from(good);
        }
    }
    out
}
