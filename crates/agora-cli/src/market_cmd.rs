//! The compute market's daemons inside `agora devnet`: a provider serving both pinned models and
//! the OpenAI-compatible gateway, paid from the demo wallet's escrow.

use crate::infer_cmd::{default_threads, ensure};
use crate::keystore::{Keystore, write_private};
use crate::node_cmd::load_or_create_key;
use agora_infer::bert::Embedder;
use agora_infer::chat::ChatModel;
use agora_infer::models::{self, ModelCache};
use agora_market::{
    Chain, Gateway, HttpChain, InferBackend, OpenAiState, Provider, ProviderConfig, ProviderSecret,
    openai_router, provider_router, settle_loop,
};
use agora_types::{
    AGR, Address, Amount, EncryptionKey, Keypair, Message, ProviderInfo, Transaction,
};
use anyhow::{Context, Result, bail};
use rand_core::{OsRng, RngCore};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Stake the devnet provider registers with.
const PROVIDER_STAKE: Amount = 100 * AGR;
/// What the demo wallet keeps in its compute escrow.
const DEMO_ESCROW: Amount = 100 * AGR;
/// Devnet prices, base units per 1,000 tokens.
const PRICE_INPUT: Amount = 1_000;
const PRICE_OUTPUT: Amount = 3_000;

/// Where the devnet's market listens and finds its models.
#[derive(Debug, Clone)]
pub struct MarketSetup {
    pub provider_addr: SocketAddr,
    pub gateway_addr: SocketAddr,
    pub models_dir: PathBuf,
    pub threads: Option<usize>,
}

/// What the market tells the user.
#[derive(Debug, Clone)]
pub struct MarketStarted {
    pub gateway: String,
    pub api_key: String,
    pub provider: Address,
    pub provider_endpoint: String,
}

fn load_or_create_x25519(path: &Path) -> Result<ProviderSecret> {
    if path.exists() {
        let text = std::fs::read_to_string(path)?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes)
            .with_context(|| format!("corrupt encryption key {}", path.display()))?;
        return Ok(ProviderSecret::from_bytes(bytes));
    }
    let secret = ProviderSecret::generate();
    write_private(path, hex::encode(secret.to_bytes()).as_bytes())?;
    Ok(secret)
}

fn load_or_create_api_key(path: &Path) -> Result<String> {
    if path.exists() {
        return Ok(std::fs::read_to_string(path)?.trim().to_string());
    }
    let mut bytes = [0u8; 24];
    OsRng.fill_bytes(&mut bytes);
    let key = format!("sk-agora-{}", hex::encode(bytes));
    write_private(path, key.as_bytes())?;
    Ok(key)
}

fn demo_key(home: &Path) -> Result<Keypair> {
    let password = std::fs::read_to_string(home.join("demo.password"))
        .context("reading the demo wallet's password file")?;
    Keystore::new(home).unlock("demo", password.trim())
}

/// Waits (bounded) until `done` holds, checking every 200 ms.
fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if done()? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("timed out waiting for {what}")
}

fn submit(chain: &HttpChain, chain_id: &str, key: &Keypair, messages: Vec<Message>) -> Result<()> {
    let tx = Transaction {
        chain_id: chain_id.to_string(),
        sender: key.public(),
        nonce: chain.nonce(&key.address())?,
        fee: 1_000,
        messages,
    }
    .sign(key);
    chain.submit(&tx)?;
    Ok(())
}

/// Everything that blocks: models, keys, funding, registration. Returns the provider, ready.
fn prepare(
    home: &Path,
    api: &str,
    setup: &MarketSetup,
    endpoint: &str,
) -> Result<(Arc<Provider>, Keypair, Arc<HttpChain>)> {
    let chain = Arc::new(HttpChain::new(api));
    let chain_id = chain.chain_id()?;
    let threads = setup.threads.unwrap_or_else(default_threads);
    let cache = ModelCache::new(&setup.models_dir);
    let chat = ensure(&cache, &models::SMOLLM2)?;
    let embed = ensure(&cache, &models::MINILM)?;
    eprintln!("Loading the models…");
    let mut backend = InferBackend::default();
    backend.add_chat(
        models::SMOLLM2.id.parse()?,
        Arc::new(ChatModel::load(&chat.weights, threads)?),
    );
    backend.add_embedder(
        models::MINILM.id.parse()?,
        Arc::new(Embedder::load(&embed.dir, threads)?),
    );

    let provider_key = load_or_create_key(&home.join("config/provider_key.json"))?;
    let secret = load_or_create_x25519(&home.join("config/provider_x25519.key"))?;
    let demo = demo_key(home)?;

    // The provider's stake and the demo escrow come from the demo wallet, once.
    if !funded(api, &provider_key.address())? {
        submit(
            &chain,
            &chain_id,
            &demo,
            vec![Message::Transfer {
                to: provider_key.address(),
                amount: PROVIDER_STAKE + AGR,
            }],
        )?;
        wait_for("the provider's funds", Duration::from_secs(30), || {
            funded(api, &provider_key.address())
        })?;
    }
    if chain.escrow(&demo.address())?.claimable() < DEMO_ESCROW / 2 {
        submit(
            &chain,
            &chain_id,
            &demo,
            vec![Message::EscrowDeposit {
                amount: DEMO_ESCROW,
            }],
        )?;
        wait_for("the demo escrow", Duration::from_secs(30), || {
            Ok(chain.escrow(&demo.address())?.claimable() >= DEMO_ESCROW / 2)
        })?;
    }

    let models_served = backend.models();
    let info = ProviderInfo {
        models: models_served,
        price_input_per_1k: PRICE_INPUT,
        price_output_per_1k: PRICE_OUTPUT,
        endpoint: endpoint.to_string(),
        encryption_key: EncryptionKey(secret.public()),
    };
    let provider = Arc::new(Provider::new(
        provider_key,
        secret,
        info,
        chain.clone(),
        Arc::new(backend),
        ProviderConfig {
            jobs_dir: Some(home.join("data/jobs")),
            ..ProviderConfig::default()
        },
    )?);
    // Registered, or its endpoint and key refreshed (they may change between runs).
    let before = chain.nonce(&provider.address())?;
    provider.publish(PROVIDER_STAKE)?;
    wait_for(
        "the provider's registration",
        Duration::from_secs(30),
        || Ok(chain.nonce(&provider.address())? > before && chain.is_provider(&provider.address())?),
    )?;
    Ok((provider, demo, chain))
}

/// Whether `address` holds a balance (its account exists).
fn funded(api: &str, address: &Address) -> Result<bool> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let r = agent
        .get(&format!("{api}/v1/accounts/{address}"))
        .call()
        .context("node API")?;
    Ok(r.status().as_u16() == 200)
}

/// Starts the provider and the gateway; they stop when `stop` turns true.
pub async fn start(
    home: PathBuf,
    api: String,
    setup: MarketSetup,
    stop: watch::Receiver<bool>,
) -> Result<(MarketStarted, Vec<tokio::task::JoinHandle<()>>)> {
    let provider_listener = tokio::net::TcpListener::bind(setup.provider_addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (pass --provider-addr)",
                setup.provider_addr
            )
        })?;
    let gateway_listener = tokio::net::TcpListener::bind(setup.gateway_addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (pass --gateway-addr)",
                setup.gateway_addr
            )
        })?;
    let endpoint = format!("http://{}", provider_listener.local_addr()?);
    let gateway_url = format!("http://{}", gateway_listener.local_addr()?);
    let (provider, demo, chain) = {
        let (home, api, setup, endpoint) =
            (home.clone(), api.clone(), setup.clone(), endpoint.clone());
        tokio::task::spawn_blocking(move || prepare(&home, &api, &setup, &endpoint)).await??
    };
    let api_key = load_or_create_api_key(&home.join("config/gateway_api_key"))?;
    std::fs::write(home.join("gateway.addr"), &gateway_url)?;
    let gateway = Arc::new(Gateway::new(chain, &api));
    let keys = BTreeMap::from([(api_key.clone(), demo)]);
    let state = OpenAiState::new(gateway, &api, keys);

    let wait = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut tasks = Vec::new();
    let router = provider_router(provider.clone());
    let until = wait(stop.clone());
    tasks.push(tokio::spawn(async move {
        if let Err(e) = axum::serve(provider_listener, router)
            .with_graceful_shutdown(until)
            .await
        {
            tracing::warn!("provider endpoint stopped: {e}");
        }
    }));
    let router = openai_router(state);
    let until = wait(stop.clone());
    tasks.push(tokio::spawn(async move {
        if let Err(e) = axum::serve(gateway_listener, router)
            .with_graceful_shutdown(until)
            .await
        {
            tracing::warn!("gateway stopped: {e}");
        }
    }));
    tasks.push(tokio::spawn(settle_loop(
        provider.clone(),
        Duration::from_secs(2),
        stop,
    )));
    Ok((
        MarketStarted {
            gateway: gateway_url,
            api_key,
            provider: provider.address(),
            provider_endpoint: endpoint,
        },
        tasks,
    ))
}
