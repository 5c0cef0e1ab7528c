//! `agora bench …`: whole-system figures, printed as tables. The benchmarks live here, not in
//! the binary: each is a library function over the crates it measures (ledger, market and
//! gateway, inference, verification, the auditor, a network of validators, the state machine's
//! adversarial runs), and `agora` only parses their arguments.

#![forbid(unsafe_code)]

pub mod audit;
pub mod infer;
pub mod network;
pub mod verify;

use agora_api::Limits;
use agora_chain::{MempoolConfig, Node, NodeConfig};
use agora_state::{Genesis, GenesisAccount, Params};
use agora_types::{AGR, Address, Keypair, Message, Transaction};
use anyhow::{Result, bail};
use clap::Subcommand;
use rayon::prelude::*;
use std::time::{Duration, Instant};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Signed transfers admitted (decode, signature check, mempool), executed and committed per
    /// second on a single node with on-disk storage.
    Ledger {
        /// Transfers to run.
        #[arg(long, default_value_t = 200_000)]
        txs: usize,
        /// Distinct sending accounts.
        #[arg(long, default_value_t = 10_000)]
        accounts: usize,
        /// Transactions per block.
        #[arg(long, default_value_t = 10_000)]
        block_txs: usize,
        /// Admit a block's worth, then build the block, in turn, so that each stage's time is
        /// its own (by default they overlap, as in a running node).
        #[arg(long)]
        sequential: bool,
    },
    /// Inference: prompt processing and generation speed of the chat model, time to first token,
    /// teacher-forced scoring against generation, embeddings per second, and peak memory.
    Infer(crate::infer::InferBenchArgs),
    /// The Solidity auditor on a labelled folder: recall, precision and F1 per category (a finding
    /// counts if it names a labelled line ±2 in the label's category), and contracts per second.
    Audit(crate::audit::AuditBenchArgs),
    /// A local multi-validator network (Malachite) under a stream of transfers: time to finality
    /// (mean, p50, p99) and committed transfers per second.
    Network(crate::network::NetworkBenchArgs),
    /// Verification: how often one check catches each cheating strategy, a cheater's chance of
    /// escaping after n jobs at the sampling rate, and a check's cost against generation.
    Verify(crate::verify::VerifyBenchArgs),
    /// Adversarial runs of the state machine: random blocks of every message type from actors
    /// playing every role, honest and not; every invariant (supply, escrow, stake and pool
    /// conservation, counters, windows) checked after every block, each run twice for
    /// determinism. Prints runs, blocks and blocks/s; fails with the shrunk failing run.
    Invariants {
        /// How long to run, in seconds.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Seed of the first batch of runs (each batch of 64 takes the next).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// The compute market on-chain: client-signed jobs with provider-signed receipts settled
    /// (`SettleJobs`, every signature checked) and committed per second.
    Market {
        /// Jobs to settle.
        #[arg(long, default_value_t = 20_000)]
        jobs: usize,
        /// Distinct clients.
        #[arg(long, default_value_t = 1_000)]
        clients: usize,
        /// Also measure the gateway with the real chat model: overhead over calling the runtime
        /// directly, and requests/s with p50/p99 latency and failures at 1, 4, 16 and 64
        /// concurrent clients; then check that the chain charged the client exactly its answers'
        /// receipts.
        #[arg(long)]
        gateway: bool,
        /// Requests per client in the gateway measurement.
        #[arg(long, default_value_t = 8)]
        requests: usize,
        /// Output tokens per request in the gateway measurement.
        #[arg(long, default_value_t = 16)]
        max_tokens: u32,
    },
}

fn invariants(seconds: u64, seed: u64) -> Result<()> {
    println!("adversarial state-machine runs for {seconds} s from seed {seed}…");
    let start = Instant::now();
    let stats = match agora_state::sim::campaign(seconds, seed) {
        Ok(stats) => stats,
        Err(failure) => bail!("an invariant broke: {failure}"),
    };
    let secs = start.elapsed().as_secs_f64();
    println!("| runs | blocks | seconds | blocks/s | invariants broken |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| {} | {} | {secs:.1} | {:.0} | 0 |",
        stats.cases,
        stats.blocks,
        stats.blocks as f64 / secs
    );
    Ok(())
}

pub fn run(cmd: BenchCommand, models: &std::path::Path) -> Result<()> {
    match cmd {
        BenchCommand::Infer(args) => crate::infer::run(args, models),
        BenchCommand::Verify(args) => crate::verify::run(args, models),
        BenchCommand::Network(args) => crate::network::run(args),
        BenchCommand::Audit(args) => crate::audit::bench(args),
        BenchCommand::Invariants { seconds, seed } => invariants(seconds, seed),
        BenchCommand::Market {
            jobs,
            clients,
            gateway,
            requests,
            max_tokens,
        } => {
            market(jobs, clients)?;
            if gateway {
                market_gateway(models, requests, max_tokens)?;
            }
            Ok(())
        }
        BenchCommand::Ledger {
            txs,
            accounts,
            block_txs,
            sequential,
        } => ledger(txs, accounts, block_txs, sequential),
    }
}

/// What the block-building side of the benchmark did.
#[derive(Default)]
struct Tally {
    produce: Duration,
    committed: usize,
    blocks: u64,
}

impl Tally {
    fn build_block(&mut self, node: &Node) -> Result<()> {
        let t0 = Instant::now();
        let block = node.produce_block(1_000 + self.blocks)?;
        self.produce += t0.elapsed();
        self.blocks += 1;
        self.committed += block.block.txs.len();
        if let Some(r) = block.results.receipts.iter().find(|r| !r.success) {
            bail!("benchmark transfer failed: {:?}", r.failure);
        }
        Ok(())
    }
}

fn rate(n: usize, d: Duration) -> String {
    format!("{:>10.0}", n as f64 / d.as_secs_f64().max(1e-9))
}

fn ledger(n_txs: usize, n_accounts: usize, block_txs: usize, sequential: bool) -> Result<()> {
    if n_accounts < 2 || block_txs == 0 || n_txs == 0 {
        bail!("need --accounts ≥ 2, --block-txs ≥ 1 and --txs ≥ 1");
    }
    let chain_id = "agora-bench";
    let keys: Vec<Keypair> = (0..n_accounts)
        .into_par_iter()
        .map(|i| Keypair::from_seed_label(&format!("bench-{i}")))
        .collect();
    let addresses: Vec<Address> = keys.iter().map(Keypair::address).collect();
    let genesis = Genesis::new(chain_id)
        .with_params(Params {
            min_fee: 1_000,
            unbonding_period: 10,
        })
        .with_accounts(addresses.iter().map(|a| GenesisAccount {
            address: *a,
            balance: 1_000_000 * AGR,
            bonded: 0,
        }));
    eprintln!("signing {n_txs} transfers from {n_accounts} accounts…");
    let encoded: Vec<Vec<u8>> = (0..n_txs)
        .into_par_iter()
        .map(|n| {
            let from = n % n_accounts;
            let to = (from * 7 + 1 + n / n_accounts) % n_accounts;
            Transaction {
                chain_id: chain_id.into(),
                sender: keys[from].public(),
                nonce: (n / n_accounts) as u64,
                fee: 1_000,
                messages: vec![Message::Transfer {
                    to: addresses[to],
                    amount: 1 + (n % 1000) as u128,
                }],
            }
            .sign(&keys[from])
            .encode()
        })
        .collect();

    let dir = tempfile::tempdir()?;
    let config = NodeConfig {
        max_block_txs: block_txs,
        mempool: MempoolConfig {
            capacity: block_txs * 2,
            per_sender: n_txs,
        },
        ..NodeConfig::default()
    };
    let node = Node::open(
        &dir.path().join("bench.redb"),
        &genesis,
        Keypair::from_seed_label("bench-validator"),
        config,
    )?;

    let node = std::sync::Arc::new(node);
    let mut tally = Tally::default();
    let submit = |node: &Node, chunk: &[Vec<u8>]| -> Result<Duration> {
        let t0 = Instant::now();
        let results = node.submit_batch(chunk.to_vec());
        let took = t0.elapsed();
        if let Some(e) = results.iter().find_map(|r| r.as_ref().err()) {
            bail!("benchmark transaction refused: {e}");
        }
        Ok(took)
    };
    let start = Instant::now();
    let admit = if sequential {
        let mut admit = Duration::ZERO;
        for chunk in encoded.chunks(block_txs) {
            admit += submit(&node, chunk)?;
            tally.build_block(&node)?;
        }
        admit
    } else {
        // As in a running node, the API admits transactions while the engine builds blocks: a
        // submitter thread feeds the mempool (keeping at most two blocks' worth waiting) and
        // this thread commits blocks until every transfer is in.
        let submitter = {
            let node = node.clone();
            std::thread::spawn(move || -> Result<Duration> {
                let mut admit = Duration::ZERO;
                for chunk in encoded.chunks(block_txs) {
                    while node.mempool_len() > block_txs {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    admit += submit(&node, chunk)?;
                }
                Ok(admit)
            })
        };
        while tally.committed < n_txs {
            if node.mempool_len() == 0 {
                if submitter.is_finished() {
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            tally.build_block(&node)?;
        }
        submitter
            .join()
            .map_err(|_| anyhow::anyhow!("submitter panicked"))??
    };
    let total = start.elapsed();
    let Tally {
        produce,
        committed,
        blocks,
    } = tally;
    if committed != n_txs {
        bail!("only {committed} of {n_txs} transfers were committed");
    }

    // A second node replays the chain as a validator that did not build the blocks: it checks
    // every signature (batched, on all cores), executes, recomputes the state root and commits.
    let import_dir = tempfile::tempdir()?;
    let follower = Node::open(
        &import_dir.path().join("follower.redb"),
        &genesis,
        Keypair::from_seed_label("bench-follower"),
        NodeConfig::default(),
    )?;
    let snap = node.snapshot()?;
    let chain: Vec<agora_types::Block> = (1..=blocks)
        .map(|h| {
            snap.block(h)?
                .ok_or_else(|| anyhow::anyhow!("block {h} missing"))
        })
        .collect::<Result<_>>()?;
    drop(snap);
    let t0 = Instant::now();
    for block in chain {
        follower.import_block(block)?;
    }
    let import = t0.elapsed();
    if follower.snapshot()?.state_root()? != node.snapshot()?.state_root()? {
        bail!("the follower's state root differs from the producer's");
    }
    println!(
        "agora bench ledger: {n_txs} signed transfers, {n_accounts} accounts, {blocks} blocks of up to {block_txs}, {} threads",
        rayon::current_num_threads()
    );
    println!(
        "{:<52} {:>9} {:>10}",
        if sequential {
            "stage (one after the other)"
        } else {
            "stage (admission and blocks overlap)"
        },
        "busy s",
        "tx/s"
    );
    println!(
        "{:<52} {:>9.3} {}",
        "admission: decode, ed25519 batch verify, mempool",
        admit.as_secs_f64(),
        rate(n_txs, admit)
    );
    println!(
        "{:<52} {:>9.3} {}",
        "blocks: execute, state root, atomic commit",
        produce.as_secs_f64(),
        rate(n_txs, produce)
    );
    println!(
        "{:<52} {:>9.3} {}",
        "end to end: signed transfers committed",
        total.as_secs_f64(),
        rate(n_txs, total)
    );
    println!(
        "{:<52} {:>9.3} {}",
        "validator import: batch verify, execute, root, commit",
        import.as_secs_f64(),
        rate(n_txs, import)
    );
    Ok(())
}

/// Settles `n_jobs` jobs from `n_clients` clients with one provider and reports jobs per second.
fn market(n_jobs: usize, n_clients: usize) -> Result<()> {
    use agora_state::GenesisModel;
    use agora_types::{
        EncryptionKey, Hash, JobParams, JobReceipt, JobRequest, MAX_SETTLE_JOBS, ModelKind,
        ProviderInfo, SettledJob, job_fee,
    };
    if n_jobs == 0 || n_clients == 0 {
        bail!("need --jobs ≥ 1 and --clients ≥ 1");
    }
    let chain_id = "agora-bench";
    let model = Hash([0x42; 32]);
    let provider = Keypair::from_seed_label("bench-provider");
    let clients: Vec<Keypair> = (0..n_clients)
        .into_par_iter()
        .map(|i| Keypair::from_seed_label(&format!("bench-client-{i}")))
        .collect();
    let genesis = Genesis::new(chain_id)
        .with_params(Params {
            min_fee: 1_000,
            unbonding_period: 10,
        })
        .with_accounts(clients.iter().chain([&provider]).map(|k| GenesisAccount {
            address: k.address(),
            balance: 1_000_000 * AGR,
            bonded: 0,
        }))
        .with_models(vec![GenesisModel {
            id: model,
            name: "bench-model".into(),
            kind: ModelKind::Chat,
        }]);
    let dir = tempfile::tempdir()?;
    let node = Node::open(
        &dir.path().join("bench.redb"),
        &genesis,
        Keypair::from_seed_label("bench-validator"),
        NodeConfig::default(),
    )?;
    let (price_in, price_out) = (1_000, 3_000);
    let tx = |key: &Keypair, nonce: u64, messages: Vec<Message>| {
        Transaction {
            chain_id: chain_id.into(),
            sender: key.public(),
            nonce,
            fee: 1_000 * u128::from(agora_types::work_units(&messages)),
            messages,
        }
        .sign(key)
        .encode()
    };
    // Block 1: the provider registers and every client funds its escrow.
    let mut setup = vec![tx(
        &provider,
        0,
        vec![Message::RegisterProvider {
            stake: 100 * AGR,
            info: ProviderInfo {
                models: vec![model],
                price_input_per_1k: price_in,
                price_output_per_1k: price_out,
                endpoint: "http://127.0.0.1:1".into(),
                encryption_key: EncryptionKey([1; 32]),
            },
        }],
    )];
    setup.extend(
        clients
            .par_iter()
            .map(|c| {
                tx(
                    c,
                    0,
                    vec![Message::EscrowDeposit {
                        amount: 1_000 * AGR,
                    }],
                )
            })
            .collect::<Vec<_>>(),
    );
    if let Some(e) = node.submit_batch(setup).into_iter().find_map(Result::err) {
        bail!("setup refused: {e}");
    }
    node.produce_block(1_000)?;

    eprintln!("signing {n_jobs} requests and receipts…");
    let jobs: Vec<SettledJob> = (0..n_jobs)
        .into_par_iter()
        .map(|i| {
            let client = &clients[i % n_clients];
            let request = JobRequest {
                chain_id: chain_id.into(),
                client: client.public(),
                provider: provider.address(),
                model,
                input_hash: Hash::digest(&i.to_le_bytes()),
                params: JobParams {
                    max_tokens: 128,
                    ..JobParams::default()
                },
                max_fee: 1_000_000,
                nonce: Hash::digest(&[b"job".as_slice(), &i.to_le_bytes()].concat()),
                expiry_height: 100_000,
            };
            let (input_tokens, output_tokens) = (100 + (i % 50) as u32, 128);
            let receipt = JobReceipt {
                request_hash: request.hash(),
                output_hash: Hash::digest(&(i as u64 * 7).to_le_bytes()),
                input_tokens,
                output_tokens,
                fee: job_fee(price_in, price_out, input_tokens, output_tokens).unwrap_or(0),
            };
            SettledJob {
                request: request.sign(client),
                receipt: receipt.sign(&provider),
            }
        })
        .collect();
    let settles: Vec<Vec<u8>> = jobs
        .chunks(MAX_SETTLE_JOBS)
        .enumerate()
        .map(|(i, chunk)| {
            tx(
                &provider,
                1 + i as u64,
                vec![Message::SettleJobs {
                    jobs: chunk.to_vec(),
                }],
            )
        })
        .collect();

    let start = Instant::now();
    let mut admit = Duration::ZERO;
    let mut produce = Duration::ZERO;
    let (mut settled, mut blocks) = (0usize, 0u64);
    // Blocks of 16 settlement transactions (1,024 jobs), as a provider would send them.
    for chunk in settles.chunks(16) {
        let t0 = Instant::now();
        if let Some(e) = node
            .submit_batch(chunk.to_vec())
            .into_iter()
            .find_map(Result::err)
        {
            bail!("settlement refused: {e}");
        }
        admit += t0.elapsed();
        let t0 = Instant::now();
        let block = node.produce_block(2_000 + blocks)?;
        produce += t0.elapsed();
        blocks += 1;
        for r in &block.results.receipts {
            if !r.success {
                bail!("settlement failed: {:?}", r.failure);
            }
            settled += r.events.iter().filter(|e| e.kind == "job_settled").count();
            if let Some(e) = r.events.iter().find(|e| e.kind == "job_rejected") {
                bail!("a job was rejected: {:?}", e.attributes);
            }
        }
    }
    let total = start.elapsed();
    if settled != n_jobs {
        bail!("only {settled} of {n_jobs} jobs were settled");
    }
    println!(
        "agora bench market: {n_jobs} jobs from {n_clients} clients, {} settlement transactions of {MAX_SETTLE_JOBS} jobs, {blocks} blocks, {} threads",
        settles.len(),
        rayon::current_num_threads()
    );
    println!("{:<52} {:>9} {:>10}", "stage", "seconds", "jobs/s");
    println!(
        "{:<52} {:>9.3} {}",
        "admission (decode, tx signature, mempool)",
        admit.as_secs_f64(),
        rate(n_jobs, admit)
    );
    println!(
        "{:<52} {:>9.3} {}",
        "blocks (2 signatures per job, execute, commit)",
        produce.as_secs_f64(),
        rate(n_jobs, produce)
    );
    println!(
        "{:<52} {:>9.3} {}",
        "settled and committed, end to end",
        total.as_secs_f64(),
        rate(n_jobs, total)
    );
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Node, provider (the real chat model) and gateway in this process; requests over HTTP.
fn market_gateway(models_dir: &std::path::Path, requests: usize, max_tokens: u32) -> Result<()> {
    use agora_infer::chat::{ChatModel, GenParams, Message as ChatMsg};
    use agora_infer::models::{self, ModelCache};
    use agora_market::{
        Gateway, HttpChain, InferBackend, OpenAiState, Provider, ProviderConfig, ProviderSecret,
        openai_router, provider_router, settle_loop,
    };
    use agora_state::GenesisModel;
    use agora_types::{EncryptionKey, Hash, ModelKind, ProviderInfo};
    use std::sync::Arc;

    let spec = models::SMOLLM2;
    let installed = ModelCache::new(models_dir).ensure_reporting(&spec)?;
    let threads = agora_infer::default_threads();
    let model = Arc::new(ChatModel::load(&installed.weights, threads)?);
    let model_id: Hash = spec.id.parse()?;
    let (provider_key, client) = (
        Keypair::from_seed_label("bench-gw-provider"),
        Keypair::from_seed_label("bench-gw-client"),
    );
    let genesis = Genesis::new("agora-bench-gw")
        .with_params(Params {
            min_fee: 1_000,
            unbonding_period: 10,
        })
        .with_accounts([&provider_key, &client].iter().map(|k| GenesisAccount {
            address: k.address(),
            balance: 1_000_000 * AGR,
            bonded: 0,
        }))
        .with_models(vec![GenesisModel {
            id: model_id,
            name: spec.name.into(),
            kind: ModelKind::Chat,
        }]);
    let dir = tempfile::tempdir()?;
    let node = Arc::new(Node::open(
        &dir.path().join("bench.redb"),
        &genesis,
        Keypair::from_seed_label("bench-validator"),
        NodeConfig {
            block_time: Duration::from_millis(100),
            ..NodeConfig::default()
        },
    )?);
    let rt = tokio::runtime::Runtime::new()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let bind =
        |rt: &tokio::runtime::Runtime| rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"));
    let (api_l, prov_l, gw_l) = (bind(&rt)?, bind(&rt)?, bind(&rt)?);
    let api = format!("http://{}", api_l.local_addr()?);
    let endpoint = format!("http://{}", prov_l.local_addr()?);
    let gw = format!("http://{}", gw_l.local_addr()?);
    rt.spawn(agora_api::serve(node.clone(), api_l, wait(stop_rx.clone())));
    rt.spawn(agora_chain::run_dev_engine(
        node.clone(),
        wait(stop_rx.clone()),
    ));

    let chain = Arc::new(HttpChain::new(&api));
    let deposit = Transaction {
        chain_id: "agora-bench-gw".into(),
        sender: client.public(),
        nonce: 0,
        fee: 1_000,
        messages: vec![Message::EscrowDeposit {
            amount: 1_000 * AGR,
        }],
    }
    .sign(&client);
    agora_market::Chain::submit(chain.as_ref(), &deposit)?;
    let mut backend = InferBackend::default();
    backend.add_chat(model_id, model.clone());
    let secret = ProviderSecret::generate();
    let info = ProviderInfo {
        models: vec![model_id],
        price_input_per_1k: 1_000,
        price_output_per_1k: 3_000,
        endpoint,
        encryption_key: EncryptionKey(secret.public()),
    };
    let provider = Arc::new(Provider::new(
        provider_key,
        secret,
        info,
        chain.clone(),
        Arc::new(backend),
        ProviderConfig::default(),
    )?);
    provider.publish(100 * AGR)?;
    let start = Instant::now();
    while !agora_market::Chain::is_provider(chain.as_ref(), &provider.address())? {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the provider did not get registered");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    rt.spawn({
        let router = agora_api::limit(provider_router(provider.clone()), Limits::PROVIDER);
        let until = wait(stop_rx.clone());
        async move {
            let _ = agora_api::limits::serve_within(
                prov_l,
                router,
                agora_api::limits::ConnectionLimits::MARKET,
                until,
            )
            .await;
        }
    });
    rt.spawn(settle_loop(
        provider.clone(),
        Duration::from_secs(1),
        stop_rx.clone(),
    ));
    let state = OpenAiState::new(
        Arc::new(Gateway::new(chain.clone())), // A key per load client: one tenant's requests in flight are limited
        // (`Limits::GATEWAY_PER_KEY`), and each client here stands for a tenant.
        (0..64)
            .map(|i| (format!("bench-{i}"), client.clone()))
            .collect(),
    );
    rt.spawn({
        let router = agora_api::limits::gateway(openai_router(state));
        let until = wait(stop_rx.clone());
        async move {
            let _ = agora_api::limits::serve_within(
                gw_l,
                router,
                agora_api::limits::ConnectionLimits::MARKET,
                until,
            )
            .await;
        }
    });

    let question = "Explain in one sentence what a blockchain is.";
    let body = serde_json::json!({
        "model": spec.name,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
    });
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    // Every answer's receipt fee, to compare with what the chain charges the client.
    let receipted = std::sync::atomic::AtomicU64::new(0);
    let answered = std::sync::atomic::AtomicU64::new(0);
    let call = |agent: &ureq::Agent, tenant: usize| -> Result<f64> {
        let t0 = Instant::now();
        let mut r = agent
            .post(&format!("{gw}/v1/chat/completions"))
            .header("Authorization", &format!("Bearer bench-{tenant}"))
            .send_json(&body)?;
        let v: serde_json::Value = r.body_mut().read_json()?;
        if v["choices"][0]["message"]["content"].as_str().is_none() {
            bail!("gateway answer without content: {v}");
        }
        let fee: u64 = v["agora"]["fee"]
            .as_str()
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("gateway answer without a receipt fee: {v}"))?;
        receipted.fetch_add(fee, std::sync::atomic::Ordering::Relaxed);
        answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(t0.elapsed().as_secs_f64() * 1e3)
    };
    // Direct: the same generation on the runtime, no network, no chain.
    let prompt = model.encode_chat(&[ChatMsg::new("user", question)])?;
    let params = GenParams {
        max_tokens,
        ..GenParams::default()
    };
    call(&agent, 0)?; // warm up
    let runs = requests.max(3);
    let mut direct = Vec::new();
    let mut via = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        model.generate(&prompt, &params, &mut |_| {
            std::ops::ControlFlow::Continue(())
        })?;
        direct.push(t0.elapsed().as_secs_f64() * 1e3);
        via.push(call(&agent, 0)?);
    }
    direct.sort_by(f64::total_cmp);
    via.sort_by(f64::total_cmp);
    let (d, g) = (percentile(&direct, 0.5), percentile(&via, 0.5));
    println!();
    println!(
        "agora bench market --gateway: {} ({max_tokens} output tokens, greedy), {threads} threads, medians of {runs}",
        spec.display
    );
    println!("  runtime directly          {d:>8.1} ms");
    println!(
        "  through the gateway       {g:>8.1} ms   overhead {:+.1} ms = {:+.1} %  (goal ≤ 5 % + 20 ms)",
        g - d,
        (g - d) / d * 100.0
    );
    println!(
        "  {:<10} {:>10} {:>10} {:>10} {:>10}",
        "clients", "req/s", "p50 ms", "p99 ms", "failed"
    );
    for clients in [1usize, 4, 16, 64] {
        let t0 = Instant::now();
        let (lat, failed) = std::thread::scope(|scope| -> Result<(Vec<f64>, usize)> {
            let handles: Vec<_> = (0..clients)
                .map(|tenant| {
                    scope.spawn(move || -> Vec<Result<f64>> {
                        let agent: ureq::Agent = ureq::Agent::config_builder()
                            .timeout_global(Some(Duration::from_secs(600)))
                            .build()
                            .into();
                        (0..requests).map(|_| call(&agent, tenant)).collect()
                    })
                })
                .collect();
            let (mut all, mut failed) = (Vec::new(), 0);
            for h in handles {
                for r in h.join().map_err(|_| anyhow::anyhow!("client panicked"))? {
                    match r {
                        Ok(ms) => all.push(ms),
                        Err(e) => {
                            failed += 1;
                            tracing::warn!("a request failed under load: {e:#}");
                        }
                    }
                }
            }
            Ok((all, failed))
        })?;
        let took = t0.elapsed().as_secs_f64();
        let mut lat = lat;
        lat.sort_by(f64::total_cmp);
        println!(
            "  {:<10} {:>10.2} {:>10.1} {:>10.1} {:>10}",
            clients,
            lat.len() as f64 / took,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            failed
        );
    }
    // Every answer is charged, once, for its receipt's fee, and nothing else is: the client's
    // escrow falls by exactly the receipts' fees once the provider has settled them.
    let (answers, fees) = (
        answered.load(std::sync::atomic::Ordering::Relaxed),
        u128::from(receipted.load(std::sync::atomic::Ordering::Relaxed)),
    );
    let client_address = Keypair::from_seed_label("bench-gw-client").address();
    let deadline = Instant::now() + Duration::from_secs(120);
    let charged = loop {
        let escrow = agora_market::Chain::escrow(chain.as_ref(), &client_address)?;
        let charged = (1_000 * AGR).saturating_sub(escrow.balance);
        if charged >= fees || Instant::now() > deadline {
            break charged;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    println!(
        "  {answers} answers with receipts for {fees} base units; the chain charged the client {charged}"
    );
    if charged != fees {
        bail!("the client was charged {charged}, its answers' receipts say {fees}");
    }
    let _ = stop_tx.send(true);
    drop(rt);
    Ok(())
}
