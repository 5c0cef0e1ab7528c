//! `agora bench web`: the web app's pages rendered by a node holding a devnet-sized chain
//! (latency of each page over HTTP on 127.0.0.1, which bounds the server's render time), and
//! the explorer's live stream while the chain makes 10 blocks a second (every block delivered,
//! and how long after its commit).

use agora_chain::{Node, NodeConfig};
use agora_state::{Genesis, GenesisAccount, Params};
use agora_types::{AGR, Address, Hash, Keypair, Message, Transaction};
use anyhow::{Context, Result, bail};
use clap::Args;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct WebArgs {
    /// Blocks in the chain the pages read.
    #[arg(long, default_value_t = 2_000)]
    blocks: u64,
    /// Transfers in them.
    #[arg(long, default_value_t = 5_000)]
    txs: usize,
    /// Requests per page.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Blocks per second while the live stream is measured.
    #[arg(long, default_value_t = 10)]
    rate: u64,
    /// Seconds of the live measurement.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

const CHAIN: &str = "agora-bench-web";
const ACCOUNTS: usize = 200;

fn transfer(keys: &[Keypair], n: usize) -> Vec<u8> {
    let from = n % keys.len();
    let to = (from * 7 + 1) % keys.len();
    Transaction {
        chain_id: CHAIN.into(),
        sender: keys[from].public(),
        nonce: (n / keys.len()) as u64,
        fee: 1_000,
        messages: vec![Message::Transfer {
            to: keys[to].address(),
            amount: 1 + (n % 1000) as u128,
        }],
    }
    .sign(&keys[from])
    .encode()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

pub fn run(args: WebArgs) -> Result<()> {
    if args.blocks == 0 || args.requests == 0 || args.rate == 0 {
        bail!("--blocks, --requests and --rate must be at least 1");
    }
    let dir = tempfile::tempdir()?;
    let keys: Vec<Keypair> = (0..ACCOUNTS)
        .map(|i| Keypair::from_seed_label(&format!("web-bench-{i}")))
        .collect();
    let genesis = Genesis::new(CHAIN)
        .with_params(Params {
            min_fee: 1_000,
            unbonding_period: 10,
        })
        .with_accounts(keys.iter().map(|k| GenesisAccount {
            address: k.address(),
            balance: 1_000_000 * AGR,
            bonded: 0,
        }));
    let node = Arc::new(Node::open(
        &dir.path().join("chain.redb"),
        &genesis,
        Keypair::from_seed_label("web-bench-validator"),
        NodeConfig::default(),
    )?);
    eprintln!(
        "building {} blocks with {} transfers…",
        args.blocks, args.txs
    );
    let per_block = args.txs.div_ceil(args.blocks as usize).max(1);
    let mut sent = 0;
    let mut last_tx = Hash::ZERO;
    for h in 1..=args.blocks {
        let batch: Vec<Vec<u8>> = (sent..(sent + per_block).min(args.txs))
            .map(|n| transfer(&keys, n))
            .collect();
        sent += batch.len();
        for r in node.submit_batch(batch) {
            last_tx = r.context("a benchmark transfer was refused")?;
        }
        node.produce_block(h * 1_000)?;
    }
    node.index_accounts_now()?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let base = format!("http://{}", listener.local_addr()?);
    rt.spawn(agora_api::serve_with_pages(
        node.clone(),
        listener,
        agora_web::router(node.clone()),
        std::future::pending(),
    ));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();

    let busy: Address = keys[1].address();
    let mid = args.blocks / 2;
    let pages = [
        ("explorer (head, live table, charts)", "/".to_string()),
        ("block", format!("/blocks/{mid}")),
        ("transaction", format!("/txs/{last_tx}")),
        ("account (proof, history)", format!("/accounts/{busy}")),
        ("market", "/market".to_string()),
        ("models", "/market/models".to_string()),
        ("verifiers", "/market/verifiers".to_string()),
        ("search → block", format!("/search?q={mid}")),
    ];
    println!(
        "agora bench web: {} blocks, {} transfers, {ACCOUNTS} accounts; {} requests per page",
        args.blocks, sent, args.requests
    );
    println!("| page | p50 ms | p99 ms | max ms | bytes |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, path) in &pages {
        let mut times = Vec::with_capacity(args.requests);
        let mut bytes = 0;
        for _ in 0..args.requests {
            let t0 = Instant::now();
            let mut r = agent.get(&format!("{base}{path}")).call()?;
            let body = r.body_mut().read_to_string()?;
            times.push(t0.elapsed().as_secs_f64() * 1e3);
            bytes = body.len();
        }
        times.sort_by(f64::total_cmp);
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {bytes} |",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times.last().copied().unwrap_or(0.0),
        );
    }

    // The live stream at `rate` blocks a second, each with a transfer.
    let commits: Arc<Mutex<BTreeMap<u64, Instant>>> = Arc::default();
    let received: Arc<Mutex<BTreeMap<u64, Instant>>> = Arc::default();
    let reader = {
        let (base, received) = (base.clone(), received.clone());
        let stream_agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(args.seconds + 30)))
            .build()
            .into();
        std::thread::spawn(move || -> Result<()> {
            let mut r = stream_agent
                .get(&format!("{base}/v1/events/blocks"))
                .call()?;
            let lines = std::io::BufReader::new(r.body_mut().as_reader()).lines();
            for line in lines {
                let line = line?;
                let Some(data) = line.strip_prefix("data:") else {
                    continue;
                };
                let v: serde_json::Value = serde_json::from_str(data.trim())?;
                let height = v["height"].as_u64().context("an event without a height")?;
                received
                    .lock()
                    .expect("not poisoned")
                    .insert(height, Instant::now());
            }
            Ok(())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let interval = Duration::from_nanos(1_000_000_000 / args.rate);
    let total = args.rate * args.seconds;
    let start = Instant::now();
    let first = args.blocks + 1;
    for i in 0..total {
        let due = start + interval * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        node.submit_batch(vec![transfer(&keys, sent)]);
        sent += 1;
        let b = node.produce_block((first + i) * 1_000)?;
        commits
            .lock()
            .expect("not poisoned")
            .insert(b.block.header.height, Instant::now());
    }
    let produced = start.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let commits = commits.lock().expect("not poisoned").clone();
    let received = received.lock().expect("not poisoned").clone();
    let mut delays: Vec<f64> = commits
        .iter()
        .filter_map(|(h, c)| {
            received
                .get(h)
                .map(|r| r.saturating_duration_since(*c).as_secs_f64() * 1e3)
        })
        .collect();
    delays.sort_by(f64::total_cmp);
    let missed = commits.len() - delays.len();
    println!();
    println!(
        "live stream: {} blocks in {:.1} s ({:.1} blocks/s), one transfer each",
        commits.len(),
        produced.as_secs_f64(),
        commits.len() as f64 / produced.as_secs_f64()
    );
    println!("| blocks delivered | missed | delay p50 ms | p99 ms | max ms |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| {} | {missed} | {:.2} | {:.2} | {:.2} |",
        delays.len(),
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        delays.last().copied().unwrap_or(0.0)
    );
    // The stream ends when the server does (the runtime, dropped on return); the reader with it.
    drop(reader);
    if missed > 0 {
        bail!("the live stream missed {missed} blocks");
    }
    Ok(())
}
