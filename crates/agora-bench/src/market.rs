//! `agora bench market`: jobs settled on chain per second, and (with `--gateway`) requests through
//! the gateway to a provider running the real chat model.

use agora_api::Limits;
use agora_chain::{Node, NodeConfig};
use agora_state::{Genesis, GenesisAccount, Params};
use agora_types::{AGR, Keypair, Message, Transaction};
use anyhow::{Result, bail};
use rayon::prelude::*;
use std::time::{Duration, Instant};

use crate::ledger::rate;

/// Settles `n_jobs` jobs from `n_clients` clients with one provider and reports jobs per second.
pub(crate) fn market(n_jobs: usize, n_clients: usize) -> Result<()> {
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

/// Node, provider (the real chat model, on `threads` threads) and gateway in this process, the
/// gateway's keys `bench-0` … `bench-{tenants - 1}` paying from one funded client.
pub(crate) struct GatewayFixture {
    pub(crate) rt: tokio::runtime::Runtime,
    stop_tx: tokio::sync::watch::Sender<bool>,
    /// The gateway's base URL.
    pub(crate) gw: String,
    pub(crate) model: std::sync::Arc<agora_infer::chat::ChatModel>,
    pub(crate) spec: agora_infer::models::ModelSpec,
    pub(crate) chain: std::sync::Arc<agora_market::HttpChain>,
    pub(crate) threads: usize,
    _dir: tempfile::TempDir,
}

impl GatewayFixture {
    pub(crate) fn stop(self) {
        let _ = self.stop_tx.send(true);
        drop(self.rt);
    }
}

pub(crate) fn gateway_fixture(
    models_dir: &std::path::Path,
    tenants: usize,
    threads: usize,
) -> Result<GatewayFixture> {
    use agora_infer::chat::ChatModel;
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
        (0..tenants)
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

    Ok(GatewayFixture {
        rt,
        stop_tx,
        gw,
        model,
        spec,
        chain,
        threads,
        _dir: dir,
    })
}

/// Node, provider (the real chat model) and gateway in this process; requests over HTTP.
pub(crate) fn market_gateway(
    models_dir: &std::path::Path,
    requests: usize,
    max_tokens: u32,
) -> Result<()> {
    use agora_infer::chat::{GenParams, Message as ChatMsg};
    let fixture = gateway_fixture(models_dir, 64, agora_infer::default_threads())?;
    let GatewayFixture {
        gw,
        model,
        spec,
        chain,
        threads,
        ..
    } = &fixture;
    let (gw, model, spec, chain, threads) =
        (gw.clone(), model.clone(), *spec, chain.clone(), *threads);
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
    fixture.stop();
    Ok(())
}
