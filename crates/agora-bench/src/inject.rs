//! `agora bench audit --inject DIR`: recall measured by bug injection. Clean, real contracts
//! (OpenZeppelin Contracts' npm packages, three major versions, fetched into DIR on first use)
//! get one snippet of a bug class at a time, at every place between the members of each
//! contract; the auditor must report the class at the snippet's flawed lines and nothing new
//! elsewhere in the file.
//!
//! The snippets below were written for this benchmark from the classes' definitions (SWC
//! registry, DASP): they are no public labelled set.

use std::collections::BTreeMap;
use std::path::Path;

use agora_audit::inject::{has_function, insertion_points};
use agora_audit::{Finding, Severity, audit_files, import_paths, joined};
use anyhow::Result;
use rayon::prelude::*;

/// OpenZeppelin Contracts versions fetched as clean contracts: one per major version that
/// Solidity still compiles (0.6/0.7, 0.8, 0.8.20+).
pub const CLEAN_VERSIONS: [&str; 3] = ["3.4.2", "4.9.6", "5.1.0"];

/// One bug of a class, as contract members. `{N}` becomes a number unique to the injection;
/// lines ending in `//@bug` are where the flaw is. `old` is the text for compilers before 0.8
/// (arithmetic wraps without `unchecked`, `msg.sender` is payable).
#[derive(Debug)]
pub struct Snippet {
    pub class: &'static str,
    /// The detector that must report it (an injection counts as found only by it).
    pub detector: &'static str,
    pub function: &'static str,
    pub new: &'static str,
    pub old: &'static str,
    /// Contracts the snippet needs, appended to the file (`{N}` as above).
    pub appendix: &'static str,
}

/// The snippet library.
pub const SNIPPETS: &[Snippet] = &[
    // Anyone can withdraw: the contract's ether to the caller or to an address the caller
    // names, with no check of who calls and no deposit of theirs.
    Snippet {
        class: "anyone-can-withdraw",
        detector: "anyone-can-withdraw",
        function: "sweep{N}",
        new: "    function sweep{N}() public {\n        payable(msg.sender).transfer(address(this).balance); //@bug\n    }\n",
        old: "    function sweep{N}() public {\n        msg.sender.transfer(address(this).balance); //@bug\n    }\n",
        appendix: "",
    },
    Snippet {
        class: "anyone-can-withdraw",
        detector: "anyone-can-withdraw",
        function: "payOut{N}",
        new: "    function payOut{N}(address payable to, uint256 amount) external {\n        to.transfer(amount); //@bug\n    }\n",
        old: "    function payOut{N}(address payable to, uint256 amount) external {\n        to.transfer(amount); //@bug\n    }\n",
        appendix: "",
    },
    Snippet {
        class: "anyone-can-withdraw",
        detector: "anyone-can-withdraw",
        function: "claim{N}",
        new: "    function claim{N}() external {\n        (bool ok, ) = payable(msg.sender).call{value: 1 ether}(\"\"); //@bug\n        require(ok, \"failed\");\n    }\n",
        old: "    function claim{N}() external {\n        (bool ok, ) = msg.sender.call{value: 1 ether}(\"\"); //@bug\n        require(ok, \"failed\");\n    }\n",
        appendix: "",
    },
    Snippet {
        class: "anyone-can-withdraw",
        detector: "anyone-can-withdraw",
        function: "drain{N}",
        new: "    function drain{N}(address payable to) external {\n        require(to != address(0), \"zero\");\n        uint256 all = address(this).balance;\n        to.transfer(all); //@bug\n    }\n",
        old: "    function drain{N}(address payable to) external {\n        require(to != address(0), \"zero\");\n        uint256 all = address(this).balance;\n        to.transfer(all); //@bug\n    }\n",
        appendix: "",
    },
    // State written after `send`/`transfer`: safe only while the gas stipend stays too small
    // to re-enter.
    Snippet {
        class: "state-after-transfer",
        detector: "state-after-transfer",
        function: "withdrawCredit{N}",
        new: "    mapping(address => uint256) private credit{N};\n    function withdrawCredit{N}() external {\n        uint256 amount = credit{N}[msg.sender];\n        payable(msg.sender).transfer(amount); //@bug\n        credit{N}[msg.sender] = 0; //@bug\n    }\n",
        old: "    mapping(address => uint256) private credit{N};\n    function withdrawCredit{N}() external {\n        uint256 amount = credit{N}[msg.sender];\n        msg.sender.transfer(amount); //@bug\n        credit{N}[msg.sender] = 0; //@bug\n    }\n",
        appendix: "",
    },
    Snippet {
        class: "state-after-transfer",
        detector: "state-after-transfer",
        function: "settle{N}",
        new: "    mapping(address => uint256) private owed{N};\n    function settle{N}() external {\n        if (payable(msg.sender).send(owed{N}[msg.sender])) { //@bug\n            owed{N}[msg.sender] = 0; //@bug\n        }\n    }\n",
        old: "    mapping(address => uint256) private owed{N};\n    function settle{N}() external {\n        if (msg.sender.send(owed{N}[msg.sender])) { //@bug\n            owed{N}[msg.sender] = 0; //@bug\n        }\n    }\n",
        appendix: "",
    },
    Snippet {
        class: "state-after-transfer",
        detector: "state-after-transfer",
        function: "take{N}",
        new: "    mapping(address => uint256) private held{N};\n    function take{N}(uint256 amount) external {\n        require(held{N}[msg.sender] >= amount, \"too much\");\n        payable(msg.sender).transfer(amount); //@bug\n        held{N}[msg.sender] -= amount; //@bug\n    }\n",
        old: "    mapping(address => uint256) private held{N};\n    function take{N}(uint256 amount) external {\n        require(held{N}[msg.sender] >= amount, \"too much\");\n        msg.sender.transfer(amount); //@bug\n        held{N}[msg.sender] -= amount; //@bug\n    }\n",
        appendix: "",
    },
    // Arithmetic that wraps: constants on narrow types, and caller-chosen values added to
    // narrow state.
    Snippet {
        class: "narrow-wrap",
        detector: "integer-overflow",
        function: "lower{N}",
        new: "    uint8 private floor{N};\n    function lower{N}() external {\n        uint8 x = 0;\n        unchecked { x = x - 10; } //@bug\n        floor{N} = x;\n    }\n",
        old: "    uint8 private floor{N};\n    function lower{N}() external {\n        uint8 x = 0;\n        x = x - 10; //@bug\n        floor{N} = x;\n    }\n",
        appendix: "",
    },
    Snippet {
        class: "narrow-wrap",
        detector: "integer-overflow",
        function: "step{N}",
        new: "    uint8 private count{N};\n    function step{N}(uint8 by) external {\n        unchecked { count{N} += by; } //@bug\n    }\n",
        old: "    uint8 private count{N};\n    function step{N}(uint8 by) external {\n        count{N} += by; //@bug\n    }\n",
        appendix: "",
    },
    Snippet {
        class: "narrow-wrap",
        detector: "integer-overflow",
        function: "scale{N}",
        new: "    uint16 private total{N};\n    function scale{N}(uint16 factor) external {\n        unchecked { total{N} = total{N} * factor; } //@bug\n    }\n",
        old: "    uint16 private total{N};\n    function scale{N}(uint16 factor) external {\n        total{N} = total{N} * factor; //@bug\n    }\n",
        appendix: "",
    },
    // Reentrancy: state read before an external call and written after it, in the function,
    // with the call in a modifier that runs after another read the state, or through a token
    // appended to the file whose transfer calls the receiver.
    Snippet {
        class: "reentrancy",
        detector: "reentrancy",
        function: "exit{N}",
        new: "    mapping(address => uint256) private vault{N};\n    function exit{N}() external {\n        uint256 amount = vault{N}[msg.sender];\n        (bool ok, ) = payable(msg.sender).call{value: amount}(\"\"); //@bug\n        require(ok, \"send\");\n        vault{N}[msg.sender] = 0; //@bug\n    }\n",
        old: "    mapping(address => uint256) private vault{N};\n    function exit{N}() external {\n        uint256 amount = vault{N}[msg.sender];\n        (bool ok, ) = msg.sender.call{value: amount}(\"\"); //@bug\n        require(ok, \"send\");\n        vault{N}[msg.sender] = 0; //@bug\n    }\n",
        appendix: "",
    },
    Snippet {
        class: "reentrancy",
        detector: "reentrancy",
        function: "collect{N}",
        new: "    mapping(address => uint256) private paid{N};\n    modifier unpaid{N}() {\n        require(paid{N}[msg.sender] == 0, \"paid\");\n        _;\n    }\n    modifier ping{N}(address hook) {\n        (bool ok, ) = hook.call(\"\");\n        require(ok, \"ping\");\n        _;\n    }\n    function collect{N}(address hook) external unpaid{N} ping{N}(hook) {\n        paid{N}[msg.sender] = 1; //@bug\n    }\n",
        old: "    mapping(address => uint256) private paid{N};\n    modifier unpaid{N}() {\n        require(paid{N}[msg.sender] == 0, \"paid\");\n        _;\n    }\n    modifier ping{N}(address hook) {\n        (bool ok, ) = hook.call(\"\");\n        require(ok, \"ping\");\n        _;\n    }\n    function collect{N}(address hook) external unpaid{N} ping{N}(hook) {\n        paid{N}[msg.sender] = 1; //@bug\n    }\n",
        appendix: "",
    },
    Snippet {
        class: "reentrancy",
        detector: "reentrancy",
        function: "claimTokens{N}",
        new: "    HookToken{N} private hookToken{N};\n    mapping(address => uint256) private owedTokens{N};\n    function claimTokens{N}() external {\n        uint256 amount = owedTokens{N}[msg.sender];\n        hookToken{N}.pay{N}(msg.sender, amount); //@bug\n        owedTokens{N}[msg.sender] = 0; //@bug\n    }\n",
        old: "    HookToken{N} private hookToken{N};\n    mapping(address => uint256) private owedTokens{N};\n    function claimTokens{N}() external {\n        uint256 amount = owedTokens{N}[msg.sender];\n        hookToken{N}.pay{N}(msg.sender, amount); //@bug\n        owedTokens{N}[msg.sender] = 0; //@bug\n    }\n",
        appendix: "\ninterface IHook{N} {\n    function onPaid{N}(uint256 amount) external;\n}\n\ncontract HookToken{N} {\n    mapping(address => uint256) public paid{N};\n    function pay{N}(address to, uint256 amount) external {\n        paid{N}[to] = amount;\n        IHook{N}(to).onPaid{N}(amount);\n    }\n}\n",
    },
    // A delegatecall into a contract whose storage differs: the library keeps a `bytes7` in
    // the first slot, where the caller keeps whatever it declares first.
    Snippet {
        class: "delegatecall-layout",
        detector: "delegatecall-layout",
        function: "tag{N}",
        new: "    address private tagger{N};\n    function tag{N}(bytes7 t) external {\n        (bool ok, ) = tagger{N}.delegatecall(abi.encodeWithSelector(Tagger{N}.setTag{N}.selector, t)); //@bug\n        require(ok, \"tag\");\n    }\n",
        old: "    address private tagger{N};\n    function tag{N}(bytes7 t) external {\n        (bool ok, ) = tagger{N}.delegatecall(abi.encodeWithSignature(\"setTag{N}(bytes7)\", t)); //@bug\n        require(ok, \"tag\");\n    }\n",
        appendix: "\ncontract Tagger{N} {\n    bytes7 private tag{N};\n    function setTag{N}(bytes7 t) public {\n        tag{N} = t;\n    }\n}\n",
    },
    // The block time in an equality test, and deciding a payout.
    Snippet {
        class: "block-time",
        detector: "timestamp-dependence",
        function: "opening{N}",
        new: "    uint256 private openAt{N};\n    function opening{N}() external view returns (bool) {\n        return block.timestamp == openAt{N}; //@bug\n    }\n",
        old: "    uint256 private openAt{N};\n    function opening{N}() external view returns (bool) {\n        return block.timestamp == openAt{N}; //@bug\n    }\n",
        appendix: "",
    },
    Snippet {
        class: "block-time",
        detector: "timestamp-dependence",
        function: "bid{N}",
        new: "    address payable private leader{N};\n    uint256 private lastBid{N};\n    function bid{N}() external payable {\n        require(msg.value > 1 ether, \"low\");\n        if (block.timestamp > lastBid{N} + 1 hours && leader{N} != address(0)) { //@bug\n            leader{N}.transfer(address(this).balance);\n        }\n        leader{N} = payable(msg.sender);\n        lastBid{N} = block.timestamp;\n    }\n",
        old: "    address payable private leader{N};\n    uint256 private lastBid{N};\n    function bid{N}() external payable {\n        require(msg.value > 1 ether, \"low\");\n        if (block.timestamp > lastBid{N} + 1 hours && leader{N} != address(0)) { //@bug\n            leader{N}.transfer(address(this).balance);\n        }\n        leader{N} = msg.sender;\n        lastBid{N} = block.timestamp;\n    }\n",
        appendix: "",
    },
];

/// A tree of clean sources: each file's text, and the files each one's imports reach.
struct Tree {
    texts: BTreeMap<String, String>,
}

impl Tree {
    fn read(root: &Path) -> Result<Tree> {
        let mut texts = BTreeMap::new();
        for f in agora_audit::solidity_files(&[root.to_path_buf()])? {
            let name = f
                .strip_prefix(root)
                .unwrap_or(&f)
                .to_string_lossy()
                .replace('\\', "/");
            // Mocks and test helpers are not production code: left out, as auditors do.
            if name.starts_with("mocks/") || name.contains("/mocks/") {
                continue;
            }
            texts.insert(
                name,
                String::from_utf8_lossy(&std::fs::read(&f)?).into_owned(),
            );
        }
        Ok(Tree { texts })
    }

    /// `name` and every file its imports reach (by relative path or from the package root).
    fn closure(&self, name: &str) -> Vec<String> {
        let mut out = vec![name.to_string()];
        let mut i = 0;
        while i < out.len() {
            let file = out[i].clone();
            for import in import_paths(&self.texts[&file]) {
                let mut target = joined(&file, &import);
                if let Some(rest) = target.strip_prefix("@openzeppelin/contracts/") {
                    target = rest.to_string();
                }
                if self.texts.contains_key(&target) && !out.contains(&target) {
                    out.push(target);
                }
            }
            i += 1;
        }
        out
    }

    /// Audits `name` (its text replaced by `text`) with its closure; its findings at the
    /// default severity.
    fn audit(&self, closure: &[String], text: &str) -> Vec<Finding> {
        let files = closure.iter().enumerate().map(|(i, n)| {
            let t = if i == 0 { text } else { self.texts[n].as_str() };
            (n.as_str(), t)
        });
        audit_files(files)
            .findings
            .into_iter()
            .filter(|f| f.file == closure[0] && f.severity >= Severity::Low)
            .collect()
    }
}

/// A clean file: its findings, the injections to try (line, snippet, contract), the files
/// its imports reach (itself first), and whether its compiler is older than 0.8.
struct PerFile<'s> {
    clean: Vec<Finding>,
    jobs: Vec<(usize, &'s Snippet, String)>,
    closure: Vec<String>,
    before_08: bool,
}

/// Per class: injections, those found at their lines, and new findings elsewhere.
#[derive(Default, Clone)]
struct Tally {
    injected: usize,
    found: usize,
    elsewhere: usize,
    not_members: usize,
}

/// A clean file with one snippet in it.
struct Injected {
    text: String,
    /// The snippet's first line, and how many lines it adds there.
    first: usize,
    added: usize,
    /// The lines marked `//@bug`.
    bugs: Vec<usize>,
}

/// `text` with `snippet` (number `n`, for compilers before 0.8 when `before_08`) inserted before
/// `line` (1-based; `starts` are where lines start) and its appendix at the end; None when the
/// snippet's function does not land in `contract` (the place was not between its members).
fn inject(
    text: &str,
    starts: &[usize],
    line: usize,
    snippet: &Snippet,
    contract: &str,
    n: usize,
    before_08: bool,
) -> Option<Injected> {
    let tag = format!("_agora{n}");
    let body = if before_08 { snippet.old } else { snippet.new }.replace("{N}", &tag);
    let offset = *starts.get(line.checked_sub(1)?)?;
    let mut mutated = text.to_string();
    mutated.insert_str(offset, &body);
    mutated.push_str(&snippet.appendix.replace("{N}", &tag));
    if !has_function(&mutated, contract, &snippet.function.replace("{N}", &tag)) {
        return None;
    }
    let bugs = body
        .lines()
        .enumerate()
        .filter(|(_, l)| l.ends_with("//@bug"))
        .map(|(i, _)| line + i)
        .collect();
    Some(Injected {
        text: mutated,
        first: line,
        added: body.matches('\n').count(),
        bugs,
    })
}

/// Whether the snippet's detector reports it at its lines (within `tolerance`), and how many
/// findings the clean file did not have appear outside the snippet.
fn judge(
    inj: &Injected,
    snippet: &Snippet,
    findings: &[Finding],
    clean: &[Finding],
    tolerance: usize,
) -> (bool, usize) {
    // A clean finding, its lines moved by the snippet's.
    let was_clean = |f: &Finding| {
        let line = if f.line >= inj.first + inj.added {
            f.line - inj.added
        } else {
            f.line
        };
        clean
            .iter()
            .any(|c| c.detector == f.detector && c.line == line)
    };
    let found = findings.iter().any(|f| {
        f.detector == snippet.detector
            && !was_clean(f)
            && inj
                .bugs
                .iter()
                .any(|&b| b + tolerance >= f.line && b <= f.end_line.max(f.line) + tolerance)
    });
    let elsewhere = findings
        .iter()
        .filter(|f| f.line < inj.first || f.line >= inj.first + inj.added)
        .filter(|f| !was_clean(f))
        .count();
    (found, elsewhere)
}

/// Runs the injection benchmark over `dir` (fetching the clean contracts into it first).
pub fn bench(dir: &Path, tolerance: usize, limit: Option<usize>) -> Result<()> {
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut clean_findings = Vec::new();
    let mut contracts_audited = 0usize;
    // Per version: contracts in the package, and contracts audited per second as a project.
    let mut projects: Vec<(&str, usize, f64)> = Vec::new();
    let start = std::time::Instant::now();
    for version in CLEAN_VERSIONS {
        let root = crate::search::fetch_openzeppelin_version(dir, version)?;
        let tree = Tree::read(&root)?;
        let names: Vec<&String> = tree.texts.keys().collect();
        // Each file's clean findings, and the injections to try in it.
        let per_file: Vec<PerFile<'_>> = names
            .par_iter()
            .map(|name| {
                let text = &tree.texts[*name];
                let closure = tree.closure(name);
                let clean = tree.audit(&closure, text);
                let (points, before_08) = insertion_points(text).unwrap_or_default();
                let mut jobs = Vec::new();
                for p in &points {
                    for s in SNIPPETS {
                        jobs.push((p.line, s, p.contract.clone()));
                    }
                }
                PerFile {
                    clean,
                    jobs,
                    closure,
                    before_08,
                }
            })
            .collect();
        for (name, file) in names.iter().zip(&per_file) {
            let text = &tree.texts[*name];
            let PerFile {
                clean,
                jobs,
                closure,
                before_08,
            } = file;
            let before_08 = *before_08;
            clean_findings.extend(clean.iter().cloned().map(|mut f| {
                f.file = format!("{version}/{}", f.file);
                f
            }));
            // A quick run samples the file's places evenly, and takes the next snippet at each
            // (jobs come place after place, every snippet at each place).
            let jobs: Vec<_> = match limit {
                Some(n) if n < jobs.len() => {
                    let step = jobs.len() / n.max(1);
                    (0..n.max(1))
                        .map(|i| {
                            &jobs[(i * step / SNIPPETS.len() * SNIPPETS.len() + i % SNIPPETS.len())
                                .min(jobs.len() - 1)]
                        })
                        .collect()
                }
                _ => jobs.iter().collect(),
            };
            // Where each line starts.
            let starts: Vec<usize> = std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect();
            let results: Vec<(&Snippet, bool, usize, bool)> = jobs
                .par_iter()
                .enumerate()
                .map(|(n, (line, snippet, contract))| {
                    let Some(inj) = inject(text, &starts, *line, snippet, contract, n, before_08)
                    else {
                        return (*snippet, false, 0, false);
                    };
                    let findings = tree.audit(closure, &inj.text);
                    let (found, elsewhere) = judge(&inj, snippet, &findings, clean, tolerance);
                    (*snippet, true, elsewhere, found)
                })
                .collect();
            for (snippet, member, elsewhere, found) in results {
                for key in [snippet.class, snippet.function] {
                    let t = tallies.entry(key).or_default();
                    if !member {
                        t.not_members += 1;
                        continue;
                    }
                    t.injected += 1;
                    t.found += usize::from(found);
                    t.elsewhere += elsewhere;
                }
                contracts_audited += usize::from(member);
            }
        }
        eprintln!(
            "  OpenZeppelin Contracts {version}: {} files, done in {:.1} s",
            names.len(),
            start.elapsed().as_secs_f64()
        );
        // The whole package as a project (imports resolved from disk), again and again for at
        // least a second, on one thread.
        let project = agora_audit::Project::open(&root)?;
        let t = std::time::Instant::now();
        let (mut rounds, mut contracts) = (0usize, 0usize);
        while t.elapsed().as_secs_f64() < 1.0 || rounds == 0 {
            contracts += project.audit(false)?.contracts;
            rounds += 1;
        }
        projects.push((
            version,
            contracts / rounds,
            contracts as f64 / t.elapsed().as_secs_f64(),
        ));
    }
    println!(
        "agora bench audit --inject: OpenZeppelin Contracts {} (mocks left out), {} snippets, match within ±{tolerance} lines",
        CLEAN_VERSIONS.join(", "),
        SNIPPETS.len()
    );
    println!(
        "  {:<22} {:>9} {:>7} {:>8} {:>22}",
        "class", "injected", "found", "recall", "new findings elsewhere"
    );
    let mut classes: Vec<&str> = SNIPPETS.iter().map(|s| s.class).collect();
    classes.dedup();
    let row = |name: &str, indent: &str, t: &Tally| {
        println!(
            "  {indent}{:<w$} {:>9} {:>7} {:>7.1}% {:>22}",
            name,
            t.injected,
            t.found,
            100.0 * t.found as f64 / t.injected.max(1) as f64,
            t.elsewhere,
            w = 22 - indent.len()
        );
        if t.not_members > 0 {
            println!(
                "  {indent}  ({} places where the snippet did not land as a member: skipped)",
                t.not_members
            );
        }
    };
    for class in classes {
        row(class, "", &tallies.get(class).cloned().unwrap_or_default());
        for s in SNIPPETS.iter().filter(|s| s.class == class) {
            let name = s.function.replace("{N}", "");
            let t = tallies.get(s.function).cloned().unwrap_or_default();
            row(&name, "  ", &t);
        }
    }
    println!(
        "  findings on the clean contracts at severity low and up: {}",
        clean_findings.len()
    );
    for f in &clean_findings {
        println!("    {}:{}: {} {}", f.file, f.line, f.detector, f.message);
    }
    for (version, contracts, per_s) in &projects {
        println!(
            "  OpenZeppelin Contracts {version} as a project: {contracts} contracts, libraries and interfaces, {per_s:.0} a second (one thread, imports read from disk)"
        );
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "  {contracts_audited} injected files audited with their imports in {secs:.1} s ({:.0} files/s, {} threads)",
        contracts_audited as f64 / secs,
        rayon::current_num_threads()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The benchmark in small: every snippet, in a clean contract for each compiler family, is
    /// found by its detector at its lines, with nothing new elsewhere.
    #[test]
    fn every_snippet_is_found_where_it_is_and_nowhere_else() {
        for (pragma, before_08) in [
            ("pragma solidity ^0.7.6;", true),
            ("pragma solidity ^0.8.20;", false),
        ] {
            let text = format!(
                "{pragma}\n\ncontract Clean {{\n    uint256 private total;\n\n    function add(uint256 x) external {{\n        total = x;\n    }}\n}}\n"
            );
            let (points, old) = insertion_points(&text).expect("parses");
            assert_eq!(old, before_08, "{pragma}");
            assert!(!points.is_empty());
            let starts: Vec<usize> = std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect();
            let clean = audit_files([("c.sol", text.as_str())]).findings;
            for (n, snippet) in SNIPPETS.iter().enumerate() {
                for p in &points {
                    let inj = inject(&text, &starts, p.line, snippet, &p.contract, n, before_08)
                        .unwrap_or_else(|| panic!("{} at {}", snippet.function, p.line));
                    let findings = audit_files([("c.sol", inj.text.as_str())]).findings;
                    let (found, elsewhere) = judge(&inj, snippet, &findings, &clean, 2);
                    assert!(
                        found,
                        "{pragma} {} at {}: {findings:?}",
                        snippet.function, p.line
                    );
                    assert_eq!(elsewhere, 0, "{pragma} {}: {findings:?}", snippet.function);
                }
            }
        }
    }
}
