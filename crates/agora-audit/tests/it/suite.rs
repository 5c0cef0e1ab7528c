//! The labelled suite in `suite/`: every label found; fixed twins clean in their category.

use agora_audit::{Label, audit_source, score};
use std::path::Path;

fn suite() -> (Vec<agora_audit::Finding>, Vec<Label>, Vec<String>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("suite");
    let labels: Vec<Label> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("labels.json")).expect("labels"))
            .expect("labels parse");
    let mut findings = Vec::new();
    let mut files = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir).expect("suite").flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.ends_with(".sol") {
            continue;
        }
        let src = std::fs::read_to_string(e.path()).expect("read");
        match audit_source(&name, &src) {
            // Scored as reported by default: deprecated syntax (info) is not a vulnerability.
            Ok(f) => findings.extend(
                f.into_iter()
                    .filter(|f| f.severity >= agora_audit::Severity::Low),
            ),
            Err(err) => panic!("{err}"),
        }
        files.push(name);
    }
    (findings, labels, files)
}

#[test]
fn every_labelled_bug_is_found_and_fixed_twins_are_clean() {
    let (findings, labels, files) = suite();
    let scores = score(&findings, &labels, 2);
    for l in &labels {
        let one = score(&findings, std::slice::from_ref(l), 2);
        assert_eq!(one["overall"].found, 1, "missed {l:?}");
    }
    for f in &files {
        if let Some(base) = f.strip_suffix("_fixed.sol") {
            let vulnerable = format!("{base}.sol");
            let cats: Vec<&str> = labels
                .iter()
                .filter(|l| l.file == vulnerable)
                .map(|l| l.category.as_str())
                .collect();
            // What the twin fixed is gone (a bug it still has on purpose is labelled in it).
            let twin_labels: Vec<Label> = labels.iter().filter(|l| &l.file == f).cloned().collect();
            let left: Vec<_> = findings
                .iter()
                .filter(|x| &x.file == f && cats.contains(&x.category.name()))
                .filter(|x| {
                    score(std::slice::from_ref(*x), &twin_labels, 2)["overall"].true_findings == 0
                })
                .collect();
            assert!(left.is_empty(), "{f} still has {left:?}");
        }
    }
    let overall = &scores["overall"];
    assert_eq!(overall.recall(), 1.0);
    // Every finding in the suite is a labelled bug (the floor is 60 %).
    assert!(overall.precision() >= 0.95, "{scores:?}");
}

#[test]
fn the_front_end_never_panics_on_mangled_input() {
    let (_, _, files) = suite();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("suite");
    for f in files {
        let src = std::fs::read_to_string(dir.join(&f)).unwrap();
        // Every prefix, and every text with one byte range removed: errors, never panics.
        let chars: Vec<char> = src.chars().collect();
        for cut in (0..chars.len()).step_by(7) {
            let prefix: String = chars[..cut].iter().collect();
            let _ = audit_source(&f, &prefix);
            let holed: String = chars[..cut]
                .iter()
                .chain(chars[(cut + 5).min(chars.len())..].iter())
                .collect();
            let _ = audit_source(&f, &holed);
        }
    }
}

/// Deprecated syntax is not a vulnerability (the labels leave it out) but is reported, as info,
/// on every line that has it.
#[test]
fn deprecated_syntax_is_reported_as_info_line_by_line() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("suite");
    let src = std::fs::read_to_string(dir.join("deprecated.sol")).expect("read");
    let found = audit_source("deprecated.sol", &src).expect("parses");
    let lines: Vec<usize> = found
        .iter()
        .filter(|f| f.detector == "deprecated")
        .inspect(|f| assert_eq!(f.severity, agora_audit::Severity::Info))
        .map(|f| f.line)
        .collect();
    for line in [12, 13, 14, 18, 19] {
        assert!(lines.contains(&line), "line {line}: {lines:?}");
    }
}
