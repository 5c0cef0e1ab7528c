//! `agora bench search`: retrieval quality on the labelled set (nDCG@10 and recall@10 for BM25
//! alone, vectors alone and the hybrid), then speed at scale: documents indexed per second
//! (embeddings included), query latency p50/p99 (the query's embedding included) and memory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use agora_infer::models::{self, ModelCache};
use agora_search::eval::{self, Judged};
use agora_search::feed::{self, Prefs, PrefsUpdate};
use agora_search::{Doc, Embed, Filters, Kind, LocalEmbed, Mode, Query, SearchIndex};
use anyhow::{Context, Result, bail};
use clap::Args;

/// The labelled queries, kept in the repository.
pub const LABELLED: &str = include_str!("../../agora-search/eval/queries.json");
/// The OpenZeppelin Contracts release whose documentation is part of the corpus.
pub const OPENZEPPELIN: &str = "5.1.0";

#[derive(Debug, Args)]
pub struct SearchBenchArgs {
    /// Documents indexed for the speed figures (generated from the corpus's sentences; 0: skip).
    #[arg(long, default_value_t = 100_000)]
    docs: usize,
    /// Queries timed at that size.
    #[arg(long, default_value_t = 300)]
    queries: usize,
    /// A folder holding OpenZeppelin Contracts' sources (default: fetched with npm into
    /// `corpus/` beside the models folder).
    #[arg(long)]
    openzeppelin: Option<PathBuf>,
    /// The auditor's labelled suite, whose reports join the corpus (default: the source tree's).
    #[arg(long)]
    audit_suite: Option<PathBuf>,
    /// Embedding threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Print each labelled query's scores.
    #[arg(long)]
    verbose: bool,
}

/// The corpus of the labelled set: OpenZeppelin's documentation and the auditor's reports on
/// its suite.
pub fn corpus(openzeppelin: &Path, audit_suite: &Path) -> Result<Vec<Doc>> {
    let mut docs = agora_search::corpus::solidity_docs(openzeppelin, "openzeppelin")?;
    if docs.len() < 100 {
        bail!(
            "{}: {} Solidity files; expected OpenZeppelin Contracts {OPENZEPPELIN}",
            openzeppelin.display(),
            docs.len()
        );
    }
    docs.extend(audit_docs(audit_suite)?);
    Ok(docs)
}

/// One document per contract of the auditor's suite: its findings in words, then its own
/// documentation. Ids are `audit:suite/<file>`.
pub fn audit_docs(suite: &Path) -> Result<Vec<Doc>> {
    let files = agora_audit::solidity_files(&[suite.to_path_buf()])?;
    let mut out = Vec::new();
    for f in files {
        let name = f
            .strip_prefix(suite)
            .unwrap_or(&f)
            .to_string_lossy()
            .into_owned();
        let src = String::from_utf8_lossy(&std::fs::read(&f)?).into_owned();
        let findings = agora_audit::audit_source(&name, &src).unwrap_or_default();
        let mut body = String::new();
        if findings.is_empty() {
            body.push_str("No findings. ");
        }
        for x in &findings {
            body.push_str(&format!(
                "{:?} severity, {:?}, line {}: {} Fix: {} ({}, {}).\n",
                x.severity, x.category, x.line, x.message, x.hint, x.swc, x.detector
            ));
        }
        body.push_str(&agora_search::corpus::solidity_text(&src));
        out.push(Doc::new(
            format!("audit:suite/{name}"),
            Kind::Audit,
            format!("Audit of {name}: {} findings", findings.len()),
            body,
        ));
    }
    Ok(out)
}

/// OpenZeppelin Contracts' sources, fetched once with npm into `cache`.
pub fn fetch_openzeppelin(cache: &Path) -> Result<PathBuf> {
    let prefix = cache.join(format!("openzeppelin-contracts-{OPENZEPPELIN}"));
    let root = prefix.join("node_modules/@openzeppelin/contracts");
    let manifest = root.join("package.json");
    let version_ok = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .is_some_and(|v| v["version"] == OPENZEPPELIN);
    if !version_ok {
        std::fs::create_dir_all(&prefix)?;
        eprintln!(
            "fetching OpenZeppelin Contracts {OPENZEPPELIN} with npm into {}",
            prefix.display()
        );
        let status = std::process::Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(format!("@openzeppelin/contracts@{OPENZEPPELIN}"))
            .status()
            .context("running npm (is it installed?)")?;
        if !status.success() {
            bail!("npm could not fetch @openzeppelin/contracts@{OPENZEPPELIN}");
        }
    }
    Ok(root)
}

fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn run(args: SearchBenchArgs, models_dir: &Path) -> Result<()> {
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let cache = ModelCache::new(models_dir);
    let minilm = cache.ensure_reporting(&models::MINILM)?;
    let embed: Arc<dyn Embed> = Arc::new(LocalEmbed::load(&minilm, threads)?);
    let openzeppelin = match args.openzeppelin.clone() {
        Some(p) => p,
        None => fetch_openzeppelin(&models_dir.join("..").join("corpus"))?,
    };
    let suite = args.audit_suite.clone().unwrap_or_else(|| {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../agora-audit/suite"))
    });
    let docs = corpus(&openzeppelin, &suite)?;
    let ids: BTreeSet<String> = docs.iter().map(|d| d.id.clone()).collect();
    let judged = eval::load_judged(LABELLED, &ids)?;
    println!(
        "agora bench search: {} documents (OpenZeppelin Contracts {OPENZEPPELIN}, the auditor's suite), {} labelled queries, MiniLM on {threads} threads",
        docs.len(),
        judged.len()
    );
    let dir = tempfile::tempdir()?;
    let index = SearchIndex::open(dir.path(), embed.clone())?;
    index.upsert(docs.clone())?;
    println!("{:<8} {:>9} {:>11}", "ranking", "nDCG@10", "recall@10");
    let mut all = Vec::new();
    for mode in [Mode::Bm25, Mode::Vector, Mode::Hybrid] {
        let s = eval::evaluate(&index, &judged, mode)?;
        println!(
            "{:<8} {:>9.3} {:>11.3}",
            s.mode, s.ndcg_at_10, s.recall_at_10
        );
        all.push(s);
    }
    if args.verbose {
        for (i, j) in judged.iter().enumerate() {
            println!(
                "{:>3} bm25 {:.2} vector {:.2} hybrid {:.2}  {}",
                i + 1,
                all[0].per_query[i].0,
                all[1].per_query[i].0,
                all[2].per_query[i].0,
                j.query
            );
        }
    }
    drop(index);
    if args.docs > 0 {
        speed(&args, embed, &docs, &judged)?;
    }
    Ok(())
}

/// Indexes `args.docs` generated documents and times queries over them.
fn speed(
    args: &SearchBenchArgs,
    embed: Arc<dyn Embed>,
    corpus: &[Doc],
    judged: &[Judged],
) -> Result<()> {
    // Sentences of the corpus, recombined: text with the corpus's vocabulary and lengths.
    let sentences: Vec<&str> = corpus
        .iter()
        .flat_map(|d| d.body.split(['.', '\n']))
        .map(str::trim)
        .filter(|s| (20..=200).contains(&s.len()) && !s.starts_with("Declares"))
        .collect();
    if sentences.is_empty() || judged.is_empty() {
        bail!(
            "the corpus has no sentences or no labelled queries to build documents and queries from"
        );
    }
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // Accounts the documents concern (one or two each) and subnets (a sixth of them), so feeds
    // have activity to read: about 150 documents per account at 100,000.
    let accounts: Vec<agora_types::Keypair> = (0..ACCOUNTS)
        .map(|i| agora_types::Keypair::from_seed_label(&format!("bench-{i}")))
        .collect();
    let names: Vec<String> = accounts.iter().map(|k| k.address().to_string()).collect();
    let dir = tempfile::tempdir()?;
    let rss0 = rss();
    let index = SearchIndex::open(dir.path(), embed)?;
    let start = Instant::now();
    let batch = 2_000;
    let mut kinds: Vec<Kind> = Vec::with_capacity(args.docs);
    let mut made = 0;
    let mut chars = 0usize;
    while made < args.docs {
        let n = batch.min(args.docs - made);
        let docs: Vec<Doc> = (made..made + n)
            .map(|i| {
                let pick = |r: u64| sentences[(r % sentences.len() as u64) as usize];
                // One or two sentences: the length of a chain object's description
                // (transactions, accounts, jobs make most of a node's documents).
                let body = if next() % 2 == 0 {
                    format!("{}.", pick(next()))
                } else {
                    format!("{}. {}.", pick(next()), pick(next()))
                };
                chars += body.len();
                let title: String = pick(next())
                    .split_whitespace()
                    .take(6)
                    .collect::<Vec<_>>()
                    .join(" ");
                let kind = Kind::ALL[(next() % Kind::ALL.len() as u64) as usize];
                kinds.push(kind);
                let mut d = Doc::new(format!("{kind}:{i}"), kind, title, body);
                d.time_ms = i as i64;
                d.addresses = (0..1 + next() % 2)
                    .map(|_| names[(next() % ACCOUNTS as u64) as usize].clone())
                    .collect();
                if next() % 6 == 0 {
                    d.subnet = Some((next() % 16) as u16);
                }
                d
            })
            .collect();
        index.upsert(docs)?;
        made += n;
        if made % 20_000 == 0 || made == args.docs {
            eprintln!(
                "indexed {made} documents, {:.0}/s",
                made as f64 / start.elapsed().as_secs_f64()
            );
        }
    }
    let build = start.elapsed().as_secs_f64();
    let stats = index.stats()?;
    let grown = rss().saturating_sub(rss0);
    println!(
        "index: {} documents (bodies of {} characters on average) in {:.1} s = {:.0} documents/s (MiniLM embeddings included); memory +{:.0} MiB ({:.0} MiB per 100,000 documents), {:.0} MiB on disk",
        args.docs,
        chars / args.docs.max(1),
        build,
        args.docs as f64 / build,
        grown as f64 / (1 << 20) as f64,
        grown as f64 / (1 << 20) as f64 * 100_000.0 / args.docs as f64,
        stats.disk_bytes as f64 / (1 << 20) as f64
    );
    println!(
        "{:<16} {:>10} {:>10} {:>10}   (query's embedding included)",
        "query", "p50 ms", "p99 ms", "max ms"
    );
    // Each query text differs from the others (a labelled query, and after the first round a
    // word of another), and the index forgets its cached vectors before each ranking: every
    // vector search pays its model pass.
    let n = judged.len();
    let texts: Vec<String> = (0..args.queries)
        .map(|i| {
            let base = &judged[i % n].query;
            let round = i / n;
            if round == 0 {
                return base.clone();
            }
            let other = &judged[(i + round * 7) % n].query;
            let words: Vec<&str> = other.split_whitespace().collect();
            format!("{base} {}", words[round % words.len().max(1)])
        })
        .collect();
    let timed = |label: &str, make: &dyn Fn(usize) -> Query| -> Result<()> {
        index.clear_cache();
        let mut times = Vec::with_capacity(args.queries);
        for i in 0..args.queries {
            let q = make(i);
            let t = Instant::now();
            index.search(&q)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{label:<16} {:>10.2} {:>10.2} {:>10.2}",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times.last().copied().unwrap_or(0.0)
        );
        Ok(())
    };
    for mode in [Mode::Bm25, Mode::Vector, Mode::Hybrid] {
        timed(&format!("{mode:?}").to_lowercase(), &|i| {
            Query::new(texts[i].as_str()).mode(mode)
        })?;
    }
    timed("hybrid, account", &|i| {
        Query::new(texts[i].as_str()).filters(Filters {
            address: Some(names[(i * 13) % ACCOUNTS].clone()),
            ..Filters::default()
        })
    })?;
    timed("hybrid, kind", &|i| {
        Query::new(texts[i].as_str()).filters(Filters {
            kinds: vec![Kind::ALL[i % Kind::ALL.len()]],
            ..Filters::default()
        })
    })?;
    timed("hybrid, subnet", &|i| {
        Query::new(texts[i].as_str()).filters(Filters {
            subnet: Some((i % 16) as u16),
            ..Filters::default()
        })
    })?;
    timed("exact id", &|i| {
        let k = (i * 7919) % args.docs.max(1);
        Query::new(format!("{}:{k}", kinds[k]))
    })?;
    // A query asked again: its vector comes from the cache.
    let again = Query::new(texts[0].as_str());
    index.search(&again)?;
    let mut times = Vec::new();
    for _ in 0..args.queries {
        let t = Instant::now();
        index.search(&again)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{:<16} {:>10.2} {:>10.2} {:>10.2}",
        "hybrid, repeated",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().copied().unwrap_or(0.0)
    );
    // Feeds: accounts with their activity, half of them following two accounts, a subnet and
    // a topic (a labelled query).
    let mut times = Vec::new();
    let mut items = 0;
    for (i, key) in accounts.iter().take(args.queries.min(ACCOUNTS)).enumerate() {
        if i % 2 == 0 {
            let prefs = Prefs {
                accounts: vec![
                    names[(i + 1) % ACCOUNTS].clone(),
                    names[(i + 7) % ACCOUNTS].clone(),
                ],
                subnets: vec![(i % 16) as u16],
                topics: vec![judged[i % judged.len()].query.clone()],
                likes: Vec::new(),
            };
            let update = PrefsUpdate::sign("bench", key, 1, prefs);
            feed::set_prefs(&index, "bench", &update)?;
        }
        let t = Instant::now();
        let f = feed::feed(&index, &names[i], args.docs as i64, 20)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        items += f.items.len();
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{:<16} {:>10.2} {:>10.2} {:>10.2}   ({} accounts, {:.1} items each; half follow 2 accounts, a subnet and a topic)",
        "feed",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().copied().unwrap_or(0.0),
        times.len(),
        items as f64 / times.len().max(1) as f64
    );
    Ok(())
}

/// Accounts the benchmark's documents concern.
const ACCOUNTS: usize = 1_000;
