//! `agora audit PATH…` and `agora bench audit`.

use agora_audit::{Finding, Layout, ParseError, Project, Severity, output};
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Sarif,
    /// Slither's JSON report (`slither --json`), for tools that read it.
    Slither,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Solidity files, or folders searched for `.sol` files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Output format: text, json, sarif, or slither (Slither's JSON report).
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Report only findings at least this severe: info, low, medium, high. The default leaves
    /// out `info` (deprecated syntax, not a vulnerability).
    #[arg(long, default_value = "low")]
    min_severity: Severity,
    /// Explain each finding with the chat model (fetched on first use; through a gateway, a paid
    /// chat job per finding). Explanations are generated text and are marked so.
    #[arg(long)]
    explain: bool,
    /// Run the audit as a paid, verifiable job through an Agora gateway at this URL (e.g. the
    /// devnet's `http://127.0.0.1:7421`) instead of on this machine.
    #[arg(long, env = "AGORA_GATEWAY")]
    gateway: Option<String>,
    /// Through a gateway: publish the report (sources and findings) to the node's search once
    /// the job's verification is over, signed with the paying wallet's key; the node checks it
    /// against the job on chain and the auditor, and anyone can then find it.
    #[arg(long, requires = "gateway")]
    publish: bool,
    /// The gateway's API key (`agora devnet` prints one).
    #[arg(long, env = "AGORA_API_KEY")]
    api_key: Option<String>,
    /// Threads for the local chat model (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// For a project folder: report findings in its dependencies too (`lib/`, `node_modules/`),
    /// not only in its own sources.
    #[arg(long)]
    include_deps: bool,
}

/// Most findings explained locally in one run.
const MAX_EXPLAINED_LOCALLY: usize = 20;

/// Generated explanations: the model's name, and one text (or none) per finding shown, with
/// the receipt of the job that generated it when it ran on the network.
struct Explained {
    model: String,
    texts: Vec<Option<String>>,
    receipts: Vec<Option<serde_json::Value>>,
}

/// What the audit gave.
struct Outcome {
    findings: Vec<Finding>,
    errors: Vec<ParseError>,
    explained: Option<Explained>,
    /// The audit job's receipt, when it ran on the network.
    receipt: Option<serde_json::Value>,
    /// For a project folder: its layout, files and unresolved imports.
    project: Option<serde_json::Value>,
}

/// Every `.sol` file under `paths`, sorted.
fn sol_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    Ok(agora_audit::solidity_files(paths)?)
}

/// Audits the files together (an import of one by another resolves, so contracts are analysed
/// with what they inherit); unreadable or unparsable files are reported and the rest go on.
fn audit_files(
    files: &[PathBuf],
    name: &dyn Fn(&Path) -> String,
) -> (Vec<Finding>, Vec<ParseError>) {
    let mut errors = Vec::new();
    let mut sources = Vec::new();
    for f in files {
        let file = name(f);
        match std::fs::read(f) {
            Ok(bytes) => sources.push((file, String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) => errors.push(ParseError {
                file,
                line: 0,
                message: e.to_string(),
            }),
        }
    }
    let report = agora_audit::audit_files(sources.iter().map(|(n, s)| (n.as_str(), s.as_str())));
    errors.extend(report.errors);
    (report.findings, errors)
}

/// Audits a project folder (Foundry, Hardhat/npm, or plain): its own sources with every file
/// their imports reach. Files are named by their path as given on the command line.
fn audit_project(dir: &Path, include_deps: bool) -> Result<Outcome> {
    let project = Project::open(dir)?;
    let mut r = project.audit(include_deps)?;
    let shown = |name: &str| dir.join(name).display().to_string();
    for f in &mut r.report.findings {
        f.file = shown(&f.file);
    }
    for e in &mut r.report.errors {
        e.file = shown(&e.file);
    }
    for u in &mut r.unresolved {
        u.file = shown(&u.file);
    }
    for e in &mut r.dependency_errors {
        e.file = shown(&e.file);
    }
    eprintln!(
        "{} project: {} own files, {} dependency files reached by imports, {} contracts",
        match project.layout {
            Layout::Foundry => "Foundry",
            Layout::Hardhat => "Hardhat/npm",
            Layout::Plain => "plain",
        },
        r.own_files,
        r.dependency_files,
        r.contracts
    );
    for u in &r.unresolved {
        eprintln!(
            "{}: import \"{}\" names no file (its contracts are left out of the analysis)",
            u.file, u.import
        );
    }
    for e in &r.dependency_errors {
        eprintln!("{e} (a dependency: its contracts are left out of the analysis)");
    }
    let project_json = serde_json::json!({
        "layout": project.layout,
        "own_files": r.own_files,
        "dependency_files": r.dependency_files,
        "contracts": r.contracts,
        "unresolved": r.unresolved,
        "dependency_errors": r.dependency_errors,
    });
    Ok(Outcome {
        findings: r.report.findings,
        errors: r.report.errors,
        explained: None,
        receipt: None,
        project: Some(project_json),
    })
}

/// Runs `agora audit`; returns the exit code: 0 clean, 1 findings, 2 parse errors.
pub fn audit(args: AuditArgs, models_dir: &Path) -> Result<i32> {
    let project = match (&args.gateway, &args.paths[..]) {
        (None, [dir]) if dir.is_dir() => Some(dir),
        _ => None,
    };
    // A project folder is walked by the project's rules (its sources, not all of node_modules).
    let files = match project {
        Some(_) => Vec::new(),
        None => sol_files(&args.paths)?,
    };
    if project.is_none() && files.is_empty() {
        bail!("no .sol files under the given paths");
    }
    let outcome = match (&args.gateway, project) {
        (Some(url), _) => remote(&args, url, &files)?,
        (None, Some(dir)) => {
            let mut outcome = audit_project(dir, args.include_deps)?;
            if outcome
                .project
                .as_ref()
                .is_some_and(|p| p["own_files"] == 0)
            {
                bail!("no .sol files in {}'s sources", dir.display());
            }
            outcome.findings.retain(|f| f.severity >= args.min_severity);
            if args.explain {
                outcome.explained = Some(explain_locally(
                    &outcome.findings,
                    models_dir,
                    args.threads,
                )?);
            }
            outcome
        }
        (None, None) => {
            let (mut findings, errors) = audit_files(&files, &|p| p.display().to_string());
            findings.retain(|f| f.severity >= args.min_severity);
            let explained = if args.explain {
                Some(explain_locally(&findings, models_dir, args.threads)?)
            } else {
                None
            };
            Outcome {
                findings,
                errors,
                explained,
                receipt: None,
                project: None,
            }
        }
    };
    print_report(args.format, &outcome)?;
    Ok(if !outcome.errors.is_empty() {
        2
    } else if !outcome.findings.is_empty() {
        1
    } else {
        0
    })
}

fn print_report(format: Format, outcome: &Outcome) -> Result<()> {
    let (findings, errors) = (&outcome.findings, &outcome.errors);
    let explained = outcome.explained.as_ref();
    let explanation = |i: usize| {
        explained.and_then(|e| {
            e.texts.get(i).cloned().flatten().map(|text| {
                let mut v = serde_json::json!({"generated": true, "model": e.model, "text": text});
                if let Some(Some(r)) = e.receipts.get(i) {
                    v["agora"] = r.clone();
                }
                v
            })
        })
    };
    match format {
        Format::Text => {
            print!(
                "{}",
                output::text(findings, errors, &|f| std::fs::read_to_string(f).ok())
            );
            if let Some(e) = explained {
                println!();
                println!(
                    "Explanations generated by {} (a small language model: read them as hints, the findings above are the auditor's):",
                    e.model
                );
                for (f, text) in findings.iter().zip(&e.texts) {
                    if let Some(text) = text {
                        // The first paragraph: a small model tends to repeat itself after it
                        // (`--format json` has the whole text).
                        let first = text.trim().split("\n\n").next().unwrap_or_default();
                        println!("{}:{}: {}\n    {}", f.file, f.line, f.detector, first);
                    }
                }
            }
        }
        Format::Json => {
            let mut v = output::json(findings, errors);
            if let Some(r) = &outcome.receipt {
                v["agora"] = r.clone();
            }
            if let Some(p) = &outcome.project {
                v["project"] = p.clone();
            }
            if let Some(list) = v["findings"].as_array_mut() {
                for (i, f) in list.iter_mut().enumerate() {
                    if let Some(e) = explanation(i) {
                        f["explanation"] = e;
                    }
                }
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Slither => {
            println!(
                "{}",
                serde_json::to_string_pretty(&output::slither(findings, errors))?
            );
        }
        Format::Sarif => {
            let mut v = output::sarif(findings, errors);
            if let Some(list) = v["runs"][0]["results"].as_array_mut() {
                for (i, r) in list.iter_mut().enumerate() {
                    if let Some(e) = explanation(i) {
                        r["properties"]["explanation"] = e;
                    }
                }
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(())
}

/// One greedy answer of the chat model per finding (the first [`MAX_EXPLAINED_LOCALLY`]).
fn explain_locally(
    findings: &[Finding],
    models_dir: &Path,
    threads: Option<usize>,
) -> Result<Explained> {
    use agora_infer::chat::{ChatModel, GenParams, Message};
    let spec = agora_infer::models::SMOLLM2;
    let cache = agora_infer::models::ModelCache::new(models_dir);
    let installed = cache.ensure_reporting(&spec)?;
    let model = ChatModel::load(
        &installed.weights,
        threads.unwrap_or_else(agora_infer::default_threads),
    )?;
    let params = GenParams {
        max_tokens: 96,
        ..GenParams::default()
    };
    let mut texts = Vec::new();
    for (i, f) in findings.iter().enumerate() {
        if i >= MAX_EXPLAINED_LOCALLY {
            texts.push(None);
            continue;
        }
        let source = std::fs::read_to_string(&f.file).unwrap_or_default();
        let messages: Vec<Message> = agora_audit::explain_prompt(f, &source)
            .iter()
            .map(|(role, content)| Message::new(role, content))
            .collect();
        let prompt = model.encode_chat(&messages)?;
        let g = model.generate(&prompt, &params, &mut |_| {
            std::ops::ControlFlow::Continue(())
        })?;
        texts.push(Some(g.text.trim().to_string()));
    }
    Ok(Explained {
        model: spec.name.to_string(),
        receipts: vec![None; texts.len()],
        texts,
    })
}

/// The audit as a job through a gateway: the files travel (encrypted to the provider), the
/// report comes back with its receipt.
fn remote(args: &AuditArgs, url: &str, files: &[PathBuf]) -> Result<Outcome> {
    let key = args
        .api_key
        .as_deref()
        .context("--gateway needs --api-key (or AGORA_API_KEY); `agora devnet` prints one")?;
    let mut sources = Vec::new();
    for f in files {
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        sources.push(serde_json::json!({
            "name": f.display().to_string(),
            "source": String::from_utf8_lossy(&bytes),
        }));
    }
    let mut body = serde_json::json!({ "files": sources, "explain": args.explain });
    if args.publish {
        body["publish"] = serde_json::json!(true);
    }
    if args.min_severity > Severity::Info {
        body["min_severity"] = serde_json::to_value(args.min_severity)?;
    }
    let base = url.trim_end_matches('/');
    let base = base.strip_suffix("/v1").unwrap_or(base);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(600)))
        .build()
        .into();
    let mut resp = agent
        .post(&format!("{base}/v1/audits"))
        .header("Authorization", &format!("Bearer {key}"))
        .send_json(&body)
        .with_context(|| format!("cannot reach the gateway at {base}"))?;
    let status = resp.status().as_u16();
    let v: serde_json::Value = resp
        .body_mut()
        .read_json()
        .with_context(|| format!("the gateway answered {status} with a body that is not JSON"))?;
    if status != 200 {
        bail!(
            "the gateway refused the audit ({status}): {}",
            v["error"]["message"].as_str().unwrap_or("no message")
        );
    }
    let findings: Vec<Finding> = serde_json::from_value(v["findings"].clone())
        .context("the gateway's findings are not the auditor's format")?;
    let errors: Vec<ParseError> = serde_json::from_value(v["errors"].clone())
        .context("the gateway's errors are not the auditor's format")?;
    let receipt = &v["agora"];
    eprintln!(
        "audited by provider {} as job {} for {} base units ({} tokens); its check: GET {base}/v1/verify/{}",
        receipt["provider"].as_str().unwrap_or("?"),
        receipt["job_id"].as_str().unwrap_or("?"),
        receipt["fee"].as_str().unwrap_or("?"),
        receipt["input_tokens"],
        receipt["job_id"].as_str().unwrap_or("?"),
    );
    if let Some(id) = v["published"]["id"].as_str() {
        eprintln!("to be published as {id} once the job's verification is over: agora search {id}");
    }
    if let Some(e) = v["explain_error"].as_str() {
        eprintln!("no explanations: {e}");
    }
    let explained = args.explain.then(|| {
        let list = v["findings"].as_array().cloned().unwrap_or_default();
        Explained {
            model: list
                .iter()
                .find_map(|f| f["explanation"]["model"].as_str())
                .unwrap_or("the chat model")
                .to_string(),
            texts: list
                .iter()
                .map(|f| f["explanation"]["text"].as_str().map(str::to_string))
                .collect(),
            receipts: list
                .iter()
                .map(|f| Some(f["explanation"]["agora"].clone()).filter(|r| !r.is_null()))
                .collect(),
        }
    });
    Ok(Outcome {
        findings,
        errors,
        explained,
        receipt: Some(v["agora"].clone()),
        project: None,
    })
}
