//! `agora audit PATH…` and `agora bench audit`.

use agora_audit::{Finding, Label, ParseError, Severity, audit_source, output, score};
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Sarif,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Solidity files, or folders searched for `.sol` files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Report only findings at least this severe: info, low, medium, high.
    #[arg(long, default_value = "info")]
    min_severity: Severity,
}

/// Every `.sol` file under `paths`, sorted.
fn sol_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            while let Some(dir) = stack.pop() {
                for e in
                    std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
                {
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
            bail!("{} does not exist", p.display());
        }
    }
    out.sort();
    Ok(out)
}

/// Audits the files; unreadable or unparsable files are reported and the rest go on.
fn audit_files(
    files: &[PathBuf],
    name: &dyn Fn(&Path) -> String,
) -> (Vec<Finding>, Vec<ParseError>) {
    let mut findings = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        let file = name(f);
        let src = match std::fs::read(f) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                errors.push(ParseError {
                    file,
                    line: 0,
                    message: e.to_string(),
                });
                continue;
            }
        };
        match audit_source(&file, &src) {
            Ok(found) => findings.extend(found),
            Err(e) => errors.push(e),
        }
    }
    (findings, errors)
}

/// Runs `agora audit`; returns the exit code: 0 clean, 1 findings, 2 parse errors.
pub fn audit(args: AuditArgs) -> Result<i32> {
    let files = sol_files(&args.paths)?;
    if files.is_empty() {
        bail!("no .sol files under the given paths");
    }
    let (mut findings, errors) = audit_files(&files, &|p| p.display().to_string());
    findings.retain(|f| f.severity >= args.min_severity);
    match args.format {
        Format::Text => print!(
            "{}",
            output::text(&findings, &errors, &|f| std::fs::read_to_string(f).ok())
        ),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&output::json(&findings, &errors))?
        ),
        Format::Sarif => println!(
            "{}",
            serde_json::to_string_pretty(&output::sarif(&findings, &errors))?
        ),
    }
    Ok(if !errors.is_empty() {
        2
    } else if !findings.is_empty() {
        1
    } else {
        0
    })
}

#[derive(Debug, Args)]
pub struct AuditBenchArgs {
    /// The labels: a JSON list of `{"file", "lines", "category"}`, files relative to the folder.
    #[arg(long)]
    labels: PathBuf,
    /// The folder of contracts (default: the labels file's folder).
    dir: Option<PathBuf>,
    /// A finding matches a label within this many lines.
    #[arg(long, default_value_t = 2)]
    tolerance: usize,
}

/// Recall, precision and F1 per category on a labelled folder, and contracts audited per second.
pub fn bench(args: AuditBenchArgs) -> Result<()> {
    let dir = match args.dir {
        Some(d) => d,
        None => args
            .labels
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    let labels: Vec<Label> = serde_json::from_str(
        &std::fs::read_to_string(&args.labels)
            .with_context(|| format!("reading {}", args.labels.display()))?,
    )
    .with_context(|| {
        format!(
            "{}: expected [{{\"file\", \"lines\", \"category\"}}]",
            args.labels.display()
        )
    })?;
    let files = sol_files(std::slice::from_ref(&dir))?;
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
            Ok(f) => findings.extend(f),
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
        "agora bench audit: {} contracts ({} not parsed), {} labels, {} findings, match within ±{} lines",
        sources.len(),
        errors,
        labels.len(),
        findings.len(),
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
