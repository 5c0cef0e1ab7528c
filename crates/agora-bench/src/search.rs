//! `agora bench search`: retrieval quality on the labelled set (nDCG@10 and recall@10 for BM25
//! alone, vectors alone and the hybrid), then speed at scale: documents indexed per second
//! (embeddings included), query latency p50/p99 (the query's embedding included) and memory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use agora_chain::{Node, NodeConfig};
use agora_infer::models::{self, ModelCache};
use agora_search::HashEmbed;
use agora_search::eval::{self, Judged};
use agora_search::feed::{self, Prefs, PrefsUpdate};
use agora_search::{Doc, Embed, Filters, Kind, LocalEmbed, Mode, Query, SearchIndex};
use agora_state::{Genesis, GenesisAccount, GenesisModel};
use agora_types::{
    AGR, Amount, EncryptionKey, Hash, JobParams, JobReceipt, JobRequest, Keypair, Message,
    ModelKind, ProviderInfo, SettledJob, SubnetTask, Transaction, VerifierInfo, job_fee,
};
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

/// The corpus of the labelled set: OpenZeppelin's documentation, the auditor's reports on its
/// suite, and the objects of a chain.
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
    docs.extend(chain_docs()?);
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

/// OpenZeppelin Contracts' sources ([`OPENZEPPELIN`]), fetched once with npm into `cache`.
pub fn fetch_openzeppelin(cache: &Path) -> Result<PathBuf> {
    fetch_openzeppelin_version(cache, OPENZEPPELIN)
}

/// OpenZeppelin Contracts `version`'s sources, fetched once with npm into `cache`.
pub fn fetch_openzeppelin_version(cache: &Path, version: &str) -> Result<PathBuf> {
    let prefix = cache.join(format!("openzeppelin-contracts-{version}"));
    let root = prefix.join("node_modules/@openzeppelin/contracts");
    let manifest = root.join("package.json");
    let version_ok = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .is_some_and(|v| v["version"] == version);
    if !version_ok {
        std::fs::create_dir_all(&prefix)?;
        eprintln!(
            "fetching OpenZeppelin Contracts {version} with npm into {}",
            prefix.display()
        );
        let status = std::process::Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(format!("@openzeppelin/contracts@{version}"))
            .status()
            .context("running npm (is it installed?)")?;
        if !status.success() {
            bail!("npm could not fetch @openzeppelin/contracts@{version}");
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
        "agora bench search: {} documents (OpenZeppelin Contracts {OPENZEPPELIN}, the auditor's suite, a chain's objects), {} labelled queries, MiniLM on {threads} threads",
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

/// The chain's part of the corpus: a small economy run on a real node (transfers, a failed
/// one, staking, providers, escrow, settled jobs of three models, a verifier, a subnet with a
/// neuron and its delegators), indexed by the node's own chain follower. Ids are renamed
/// `chain:<what>` so that the labels do not depend on hashes.
pub fn chain_docs() -> Result<Vec<Doc>> {
    let dir = tempfile::tempdir()?;
    let key = |n: &str| Keypair::from_seed_label(&format!("corpus-{n}"));
    let people = [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
    ];
    let models = [
        ("chat", "smollm2-135m-instruct", ModelKind::Chat),
        ("embedding", "all-minilm-l6-v2", ModelKind::Embedding),
        ("audit", "agora-audit@1", ModelKind::Audit),
    ];
    let model_id = |m: &str| Hash::digest(format!("corpus/{m}").as_bytes());
    let genesis = Genesis::new(CORPUS_CHAIN)
        .with_accounts(people.iter().map(|n| GenesisAccount {
            address: key(n).address(),
            balance: 10_000 * AGR,
            bonded: 0,
        }))
        .with_models(models.iter().map(|(m, name, kind)| GenesisModel {
            id: model_id(m),
            name: (*name).into(),
            kind: *kind,
        }));
    let node = Arc::new(Node::open(
        &dir.path().join("db.redb"),
        &genesis,
        key("validator"),
        NodeConfig::default(),
    )?);
    let mut run = Script {
        node: node.clone(),
        nonces: BTreeMap::new(),
        names: BTreeMap::new(),
        height: 0,
    };
    run.names
        .insert("subnet:0".into(), "chain:subnet/translation".into());
    run.names
        .insert("neuron:0/0".into(), "chain:neuron/heidi".into());
    for n in people.iter().chain(&["ivan", "validator"]) {
        run.names.insert(
            format!("account:{}", key(n).address()),
            format!("chain:account/{n}"),
        );
        run.names.insert(
            format!("provider:{}", key(n).address()),
            format!("chain:provider/{n}"),
        );
    }
    for (m, _, _) in &models {
        run.names.insert(
            format!("model:{}", model_id(m).to_hex()),
            format!("chain:model/{m}"),
        );
    }
    let provider = |models: Vec<Hash>, price: Amount, endpoint: &str| ProviderInfo {
        models,
        price_input_per_1k: price,
        price_output_per_1k: 3 * price,
        endpoint: endpoint.into(),
        encryption_key: EncryptionKey([7; 32]),
    };
    let (bob, carol, heidi, ivan) = (
        key("bob").address(),
        key("carol").address(),
        key("heidi").address(),
        key("ivan").address(),
    );
    run.send(
        "alice",
        "transfer-alice-bob",
        vec![Message::Transfer {
            to: bob,
            amount: 25 * AGR,
        }],
    )?;
    run.send(
        "bob",
        "transfer-bob-carol",
        vec![Message::Transfer {
            to: carol,
            amount: 3 * AGR,
        }],
    )?;
    run.send(
        "carol",
        "transfer-carol-ivan",
        vec![Message::Transfer {
            to: ivan,
            amount: AGR,
        }],
    )?;
    run.send(
        "dave",
        "bond-dave",
        vec![Message::Bond { amount: 500 * AGR }],
    )?;
    run.send(
        "erin",
        "register-provider-erin",
        vec![Message::RegisterProvider {
            stake: 200 * AGR,
            info: provider(
                vec![model_id("chat"), model_id("embedding")],
                1_000,
                "https://erin-gpu.example:7420",
            ),
        }],
    )?;
    run.send(
        "frank",
        "register-provider-frank",
        vec![Message::RegisterProvider {
            stake: 150 * AGR,
            info: provider(
                vec![model_id("audit")],
                4_000,
                "https://frank-audits.example:7420",
            ),
        }],
    )?;
    run.send(
        "bob",
        "escrow-bob",
        vec![Message::EscrowDeposit { amount: 20 * AGR }],
    )?;
    run.send(
        "grace",
        "register-verifier-grace",
        vec![Message::RegisterVerifier {
            stake: 80 * AGR,
            info: VerifierInfo {
                models: vec![model_id("chat"), model_id("audit")],
                encryption_key: EncryptionKey([9; 32]),
            },
        }],
    )?;
    run.send(
        "alice",
        "create-subnet-translation",
        vec![Message::CreateSubnet {
            name: "translation".into(),
            task: SubnetTask::Chat,
            max_lock: 1_000 * AGR,
        }],
    )?;
    run.block()?;
    // Jobs the providers served bob, settled by them.
    let mut jobs = Vec::new();
    for (i, (provider, model, tokens)) in [
        ("erin", "chat", (120, 80)),
        ("erin", "chat", (40, 200)),
        ("erin", "embedding", (300, 0)),
        ("frank", "audit", (2_400, 0)),
    ]
    .iter()
    .enumerate()
    {
        let request = JobRequest {
            chain_id: CORPUS_CHAIN.into(),
            client: key("bob").public(),
            provider: key(provider).address(),
            model: model_id(model),
            input_hash: Hash::digest(format!("input {i}").as_bytes()),
            params: JobParams::default(),
            max_fee: 100 * AGR,
            nonce: Hash::digest(format!("nonce {i}").as_bytes()),
            expiry_height: 1_000,
        };
        let price = if *provider == "erin" { 1_000 } else { 4_000 };
        let receipt = JobReceipt {
            request_hash: request.hash(),
            output_hash: Hash::digest(format!("output {i}").as_bytes()),
            input_tokens: tokens.0,
            output_tokens: tokens.1,
            fee: job_fee(price, 3 * price, tokens.0, tokens.1)
                .context("a corpus job's fee overflows")?,
        };
        run.names.insert(
            format!("job:{}", request.id()),
            format!("chain:job/{model}-{i}"),
        );
        jobs.push((
            *provider,
            SettledJob {
                request: request.sign(&key("bob")),
                receipt: receipt.sign(&key(provider)),
            },
        ));
    }
    let (erin_jobs, frank_jobs): (Vec<_>, Vec<_>) =
        jobs.into_iter().partition(|(p, _)| *p == "erin");
    run.send(
        "erin",
        "settle-erin",
        vec![Message::SettleJobs {
            jobs: erin_jobs.into_iter().map(|(_, j)| j).collect(),
        }],
    )?;
    run.send(
        "frank",
        "settle-frank",
        vec![Message::SettleJobs {
            jobs: frank_jobs.into_iter().map(|(_, j)| j).collect(),
        }],
    )?;
    run.send(
        "heidi",
        "register-neuron-heidi",
        vec![Message::RegisterNeuron {
            netuid: 0,
            endpoint: "https://heidi-translate.example:8000".into(),
            max_burn: 100 * AGR,
        }],
    )?;
    // A model id already registered: it fails in its block, and says why.
    run.send(
        "carol",
        "register-model-taken",
        vec![Message::RegisterModel {
            id: model_id("chat"),
            name: "smollm2-finetune".into(),
            kind: ModelKind::Chat,
        }],
    )?;
    run.send(
        "erin",
        "update-provider-erin",
        vec![Message::UpdateProvider {
            info: provider(
                vec![model_id("chat"), model_id("embedding")],
                800,
                "https://erin-gpu.example:7420",
            ),
        }],
    )?;
    run.block()?;
    run.send(
        "dave",
        "stake-dave-heidi",
        vec![Message::AddSubnetStake {
            netuid: 0,
            hotkey: heidi,
            amount: 40 * AGR,
        }],
    )?;
    run.send(
        "dave",
        "unbond-dave",
        vec![Message::Unbond { amount: 100 * AGR }],
    )?;
    run.send(
        "bob",
        "escrow-withdraw-bob",
        vec![Message::EscrowWithdraw { amount: 5 * AGR }],
    )?;
    run.block()?;
    let index_dir = tempfile::tempdir()?;
    let index = SearchIndex::open(index_dir.path(), Arc::new(HashEmbed::new(64)))?;
    agora_search::chain::catch_up(&node, &index)?;
    let mut docs = index.recent(&Filters::default(), 100_000)?;
    for d in &mut docs {
        d.id = run
            .names
            .get(&d.id)
            .cloned()
            .unwrap_or_else(|| format!("chain:{}", d.id));
    }
    docs.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(docs)
}

const CORPUS_CHAIN: &str = "corpus-chain";

/// Sends transactions to the corpus's node and names what they become.
struct Script {
    node: Arc<Node>,
    nonces: BTreeMap<String, u64>,
    /// Document ids, renamed.
    names: BTreeMap<String, String>,
    height: u64,
}

impl Script {
    fn send(&mut self, who: &str, alias: &str, messages: Vec<Message>) -> Result<()> {
        let key = Keypair::from_seed_label(&format!("corpus-{who}"));
        let nonce = self.nonces.entry(who.to_string()).or_default();
        let tx = Transaction {
            chain_id: CORPUS_CHAIN.into(),
            sender: key.public(),
            nonce: *nonce,
            fee: 1_000_000,
            messages,
        }
        .sign(&key);
        *nonce += 1;
        let hash = self
            .node
            .submit(&tx.encode())
            .map_err(|e| anyhow::anyhow!("the corpus's transaction {alias}: {e}"))?;
        self.names
            .insert(format!("tx:{hash}"), format!("chain:tx/{alias}"));
        Ok(())
    }

    fn block(&mut self) -> Result<()> {
        self.height += 1;
        // A minute a block, from 1 December 2026.
        self.node
            .produce_block(1_796_083_200_000 + self.height * 60_000)
            .map_err(|e| anyhow::anyhow!("the corpus's block {}: {e}", self.height))?;
        Ok(())
    }
}
