//! `agora bench audit`: recall, precision and F1 per category on a labelled folder of
//! contracts, and contracts audited per second.

use agora_audit::{Label, Severity, audit_source, score};
use anyhow::{Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Args)]
pub struct AuditBenchArgs {
    /// The labels: a JSON list of `{"file", "lines", "category"}`, files relative to the folder.
    #[arg(long, required_unless_present = "inject")]
    labels: Option<PathBuf>,
    /// Measure recall by bug injection instead: clean contracts (OpenZeppelin Contracts,
    /// three major versions, fetched with npm into this folder on first use) get one snippet
    /// of a bug class at a time at every place between their members.
    #[arg(long, conflicts_with = "labels")]
    inject: Option<PathBuf>,
    /// With --inject: at most this many injections per file (a quick run).
    #[arg(long, requires = "inject")]
    limit: Option<usize>,
    /// The folder of contracts (default: the labels file's folder).
    dir: Option<PathBuf>,
    /// A finding matches a label within this many lines.
    #[arg(long, default_value_t = 2)]
    tolerance: usize,
    /// Score only findings at least this severe, as `agora audit` reports them by default.
    #[arg(long, default_value = "low")]
    min_severity: Severity,
}

/// Recall, precision and F1 per category on a labelled folder, and contracts audited per second.
pub fn bench(args: AuditBenchArgs) -> Result<()> {
    if let Some(dir) = &args.inject {
        return crate::inject::bench(dir, args.tolerance, args.limit);
    }
    let labels_file = args.labels.context("--labels (or --inject) is needed")?;
    let dir = match args.dir {
        Some(d) => d,
        None => labels_file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    let labels: Vec<Label> = serde_json::from_str(
        &std::fs::read_to_string(&labels_file)
            .with_context(|| format!("reading {}", labels_file.display()))?,
    )
    .with_context(|| {
        format!(
            "{}: expected [{{\"file\", \"lines\", \"category\"}}]",
            labels_file.display()
        )
    })?;
    let files = agora_audit::solidity_files(std::slice::from_ref(&dir))?;
    let sources: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            let name = f
                .strip_prefix(&dir)
                .unwrap_or(f)
                .to_string_lossy()
                .into_owned();
            let src = String::from_utf8_lossy(&std::fs::read(f)?).into_owned();
            Ok((name, src))
        })
        .collect::<Result<_>>()?;
    let mut findings = Vec::new();
    let mut errors = 0;
    for (name, src) in &sources {
        match audit_source(name, src) {
            Ok(f) => findings.extend(f.into_iter().filter(|f| f.severity >= args.min_severity)),
            Err(e) => {
                errors += 1;
                eprintln!("not parsed: {e}");
            }
        }
    }
    // Speed: the whole folder audited again and again for at least a second, on one thread.
    let start = Instant::now();
    let mut rounds = 0usize;
    while start.elapsed().as_secs_f64() < 1.0 || rounds == 0 {
        for (name, src) in &sources {
            let _ = audit_source(name, src);
        }
        rounds += 1;
    }
    let per_sec = (rounds * sources.len()) as f64 / start.elapsed().as_secs_f64();
    let scores = score(&findings, &labels, args.tolerance);
    println!(
        "agora bench audit: {} contracts ({} not parsed), {} labels, {} findings at severity {} and up, match within ±{} lines",
        sources.len(),
        errors,
        labels.len(),
        findings.len(),
        format!("{:?}", args.min_severity).to_lowercase(),
        args.tolerance
    );
    println!(
        "  {:<28} {:>7} {:>9} {:>10} {:>7}",
        "category", "labels", "recall", "precision", "F1"
    );
    for (cat, s) in &scores {
        if cat == "overall" {
            continue;
        }
        println!(
            "  {:<28} {:>7} {:>8.1}% {:>9.1}% {:>6.1}%",
            cat,
            s.labels,
            100.0 * s.recall(),
            100.0 * s.precision(),
            100.0 * s.f1()
        );
    }
    if let Some(s) = scores.get("overall") {
        println!(
            "  {:<28} {:>7} {:>8.1}% {:>9.1}% {:>6.1}%",
            "overall",
            s.labels,
            100.0 * s.recall(),
            100.0 * s.precision(),
            100.0 * s.f1()
        );
    }
    println!("  speed                        {per_sec:.0} contracts/s (one thread)");
    Ok(())
}
