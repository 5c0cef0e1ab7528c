//! The model market inside `agora devnet` (DESIGN.md §7): a chat subnet where two miners of
//! different quality compete — the devnet's provider with the pinned chat model, and a second
//! provider serving the same model cut to its first layers — scored by a validator through paid
//! jobs; and a forecast subnet where two miners predict the chain's fees (the baseline,
//! `agora predict`'s model, and a constant) and the chain scores them. Every step is idempotent: a devnet started again
//! finds its subnets, registrations and stake in place.

use crate::market::{funded, submit, wait_for};
use crate::node::load_or_create_key;
use agora_infer::chat::ChatModel;
use agora_infer::models::{self, ModelCache};
use agora_market::subnet::{ChatValidator, ForecastMiner, ForecastModel, Predictor};
use agora_market::{Chain, Gateway, HttpChain, InferBackend};
use agora_types::{
    AGR, Address, Amount, Hash, Keypair, Message, ModelKind, SubnetParam, SubnetTask,
};
use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Blocks between a devnet subnet's epochs (20 s at 500 ms blocks).
pub const DEVNET_TEMPO: u64 = 40;
/// The chat subnet's name.
pub const CHAT_SUBNET: &str = "chat-arena";
/// The forecast subnet's name.
pub const FORECAST_SUBNET: &str = "fee-forecast";
/// Layers the weaker chat miner keeps of the pinned model's 30.
pub const WEAK_LAYERS: usize = 4;
/// What the validator stakes on itself, and keeps in escrow to pay its jobs.
const VALIDATOR_STAKE: Amount = 100 * AGR;
const VALIDATOR_ESCROW: Amount = 50 * AGR;
/// What the validator stakes on the forecast subnet (so it draws emission).
const FORECAST_STAKE: Amount = 50 * AGR;

/// The id of the pinned chat model cut to its first `layers`: the base id and the cut, hashed.
pub fn cut_model_id(base: &Hash, layers: usize) -> Hash {
    let mut bytes = base.0.to_vec();
    bytes.extend_from_slice(format!("agora/keep-layers/{layers}").as_bytes());
    Hash::digest(&bytes)
}

/// The weaker miner's backend: the pinned chat model cut to [`WEAK_LAYERS`] layers, and its id.
pub fn weak_backend(models_dir: &Path, threads: usize) -> Result<(Hash, InferBackend)> {
    let spec = models::CATALOG
        .iter()
        .find(|s| s.kind == models::ModelKind::Chat)
        .context("no chat model in the catalog")?;
    let installed = ModelCache::new(models_dir).ensure_reporting(spec)?;
    let mut model = ChatModel::load(&installed.weights, threads)?;
    model.keep_layers(WEAK_LAYERS)?;
    let id = cut_model_id(&spec.id.parse()?, WEAK_LAYERS);
    let mut backend = InferBackend::default();
    backend.add_chat(id, Arc::new(model));
    Ok((id, backend))
}

/// The model market's daemons of a devnet, ready to run.
pub struct SubnetParts {
    /// The chat subnet.
    pub chat: u16,
    /// The forecast subnet.
    pub forecast: u16,
    /// The chat validator.
    pub validator: Arc<ChatValidator>,
    /// The forecast miners.
    pub forecasters: Vec<Arc<ForecastMiner>>,
}

impl std::fmt::Debug for SubnetParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubnetParts")
            .field("chat", &self.chat)
            .field("forecast", &self.forecast)
            .finish()
    }
}

fn netuid_named(chain: &HttpChain, name: &str) -> Result<Option<u16>> {
    Ok(chain
        .subnets()?
        .subnets
        .into_iter()
        .find(|s| s.name == name)
        .map(|s| s.netuid))
}

fn registered(chain: &HttpChain, netuid: u16, hotkey: &Address) -> Result<bool> {
    Ok(chain
        .metagraph(netuid)?
        .is_some_and(|m| m.neurons.iter().any(|n| n.hotkey == *hotkey)))
}

/// The devnet hyperparameters, set while the subnet has no neuron (so they apply at once).
fn devnet_params(netuid: u16) -> Vec<Message> {
    [
        SubnetParam::Tempo(DEVNET_TEMPO),
        SubnetParam::ImmunityPeriod(4 * DEVNET_TEMPO),
        SubnetParam::WeightsRateLimit(0),
        SubnetParam::ActivityCutoff(6 * DEVNET_TEMPO),
    ]
    .into_iter()
    .map(|param| Message::SetSubnetParam { netuid, param })
    .collect()
}

/// Creates the subnet `name` from the demo wallet unless it exists; returns its netuid.
fn ensure_subnet(
    chain: &HttpChain,
    chain_id: &str,
    demo: &Keypair,
    name: &str,
    task: SubnetTask,
) -> Result<u16> {
    if let Some(n) = netuid_named(chain, name)? {
        return Ok(n);
    }
    let all = chain.subnets()?;
    let netuid = all.subnets.iter().map(|s| s.netuid + 1).max().unwrap_or(0);
    let mut messages = vec![Message::CreateSubnet {
        name: name.to_string(),
        task,
        max_lock: all.lock_cost,
    }];
    messages.extend(devnet_params(netuid));
    submit(chain, chain_id, demo, messages)?;
    wait_for(&format!("subnet {name}"), Duration::from_secs(30), || {
        Ok(netuid_named(chain, name)?.is_some())
    })?;
    netuid_named(chain, name)?.context("the subnet was not created")
}

/// Funds `key` from the demo wallet with `amount` unless its account exists.
fn fund(
    chain: &HttpChain,
    chain_id: &str,
    demo: &Keypair,
    to: &Address,
    amount: Amount,
) -> Result<()> {
    if funded(chain, to)? {
        return Ok(());
    }
    submit(
        chain,
        chain_id,
        demo,
        vec![Message::Transfer { to: *to, amount }],
    )?;
    wait_for("funds", Duration::from_secs(30), || funded(chain, to))
}

/// Registers `key` on `netuid` (and sends `then` in the same transaction) unless it is.
fn register(
    chain: &HttpChain,
    chain_id: &str,
    key: &Keypair,
    netuid: u16,
    endpoint: &str,
    then: Vec<Message>,
) -> Result<()> {
    if registered(chain, netuid, &key.address())? {
        return Ok(());
    }
    let burn = chain
        .subnet(netuid)?
        .context("the subnet vanished")?
        .summary
        .burn;
    let mut messages = vec![Message::RegisterNeuron {
        netuid,
        endpoint: endpoint.to_string(),
        max_burn: burn,
    }];
    messages.extend(then);
    submit(chain, chain_id, key, messages)?;
    wait_for("a neuron's registration", Duration::from_secs(30), || {
        registered(chain, netuid, &key.address())
    })
}

/// Sets up the devnet's subnets: both created, the two chat miners (`miners`: hotkey and
/// endpoint of each, already registered providers) and the validator registered, the forecast
/// miners registered, stake in place. `embedder` scores open answers.
pub fn prepare(
    home: &Path,
    chain: Arc<HttpChain>,
    demo: &Keypair,
    miners: &[(Keypair, String)],
    embedder: Option<Arc<agora_infer::bert::Embedder>>,
) -> Result<SubnetParts> {
    let chain_id = chain.chain_id()?;
    let chat = ensure_subnet(&chain, &chain_id, demo, CHAT_SUBNET, SubnetTask::Chat)?;
    let forecast = ensure_subnet(
        &chain,
        &chain_id,
        demo,
        FORECAST_SUBNET,
        SubnetTask::Forecast,
    )?;
    let validator = load_or_create_key(&home.join("config/subnet_validator_key.json"))?;
    let forecasters = [
        load_or_create_key(&home.join("config/forecast_baseline_key.json"))?,
        load_or_create_key(&home.join("config/forecast_constant_key.json"))?,
    ];
    fund(
        &chain,
        &chain_id,
        demo,
        &validator.address(),
        VALIDATOR_STAKE + VALIDATOR_ESCROW + FORECAST_STAKE + 5 * AGR,
    )?;
    for f in &forecasters {
        fund(&chain, &chain_id, demo, &f.address(), 5 * AGR)?;
    }
    for (key, endpoint) in miners {
        // A provider keeps little beside its stake: top it up for the registration burn.
        let balance = chain
            .account(&key.address())?
            .map_or(0, |a| a.account.balance);
        if balance < 2 * AGR && !registered(&chain, chat, &key.address())? {
            submit(
                &chain,
                &chain_id,
                demo,
                vec![Message::Transfer {
                    to: key.address(),
                    amount: 2 * AGR,
                }],
            )?;
            wait_for("a miner's funds", Duration::from_secs(30), || {
                Ok(chain
                    .account(&key.address())?
                    .is_some_and(|a| a.account.balance >= 2 * AGR))
            })?;
        }
        register(&chain, &chain_id, key, chat, endpoint, Vec::new())?;
    }
    let v = validator.address();
    register(
        &chain,
        &chain_id,
        &validator,
        chat,
        "http://127.0.0.1:1/validator",
        vec![
            Message::AddSubnetStake {
                netuid: chat,
                hotkey: v,
                amount: VALIDATOR_STAKE,
            },
            Message::EscrowDeposit {
                amount: VALIDATOR_ESCROW,
            },
        ],
    )?;
    for f in &forecasters {
        register(
            &chain,
            &chain_id,
            f,
            forecast,
            "http://127.0.0.1:1/forecast",
            Vec::new(),
        )?;
    }
    // The validator's stake on the forecast subnet makes it draw emission.
    let staked = chain
        .metagraph(forecast)?
        .is_some_and(|m| m.neurons.iter().any(|n| n.stake > 0));
    if !staked {
        submit(
            &chain,
            &chain_id,
            &validator,
            vec![Message::AddSubnetStake {
                netuid: forecast,
                hotkey: forecasters[0].address(),
                amount: FORECAST_STAKE,
            }],
        )?;
    }
    let min_fee = chain.status()?.min_fee;
    let as_chain: Arc<dyn Chain> = chain.clone();
    let gateway = Arc::new(Gateway::new(chain.clone()));
    let validator = Arc::new(ChatValidator::new(
        as_chain.clone(),
        gateway,
        validator,
        chat,
        embedder,
        Some(home.join("data/subnet-validator.json")),
        min_fee,
    ));
    let [baseline, constant] = forecasters;
    let forecasters = vec![
        Arc::new(ForecastMiner::new(
            as_chain.clone(),
            baseline,
            forecast,
            Arc::new(PredictBaseline),
            min_fee,
        )),
        Arc::new(ForecastMiner::new(
            as_chain,
            constant,
            forecast,
            Arc::new(ForecastModel::Constant(1_000)),
            min_fee,
        )),
    ];
    Ok(SubnetParts {
        chat,
        forecast,
        validator,
        forecasters,
    })
}

/// Registers the weaker miner's model on chain (any account may) unless it is.
pub fn register_model(chain: &HttpChain, demo: &Keypair, id: Hash) -> Result<()> {
    if chain.model_registered(&id)? {
        return Ok(());
    }
    submit(
        chain,
        &chain.chain_id()?,
        demo,
        vec![Message::RegisterModel {
            id,
            name: format!("SmolLM2-135M, first {WEAK_LAYERS} of 30 layers"),
            kind: ModelKind::Chat,
        }],
    )?;
    wait_for(
        "the weak model's registration",
        Duration::from_secs(30),
        || Ok(chain.model_registered(&id)?),
    )
}

/// Runs the validator and the forecast miners until `stop` turns true: each looks at the chain
/// every second.
pub fn run(parts: &SubnetParts, stop: &tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow() {
        if let Err(e) = parts.validator.step() {
            tracing::warn!(error = %e, "subnet validator");
        }
        for f in &parts.forecasters {
            if let Err(e) = f.step() {
                tracing::warn!(error = %e, "forecast miner");
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Registers `key` on `netuid` with `endpoint` unless it is, saying what is missing if it
/// cannot pay the burn.
fn ensure_neuron(chain: &HttpChain, key: &Keypair, netuid: u16, endpoint: &str) -> Result<()> {
    if registered(chain, netuid, &key.address())? {
        return Ok(());
    }
    let summary = chain
        .subnet(netuid)?
        .with_context(|| format!("no subnet {netuid} (agora subnet list shows them)"))?
        .summary;
    let balance = chain
        .account(&key.address())?
        .map_or(0, |a| a.account.balance);
    if balance <= summary.burn {
        anyhow::bail!(
            "{} holds {}, not enough for the registration burn ({}): send it some AGR first",
            key.address(),
            agora_types::format_amount(balance),
            agora_types::format_amount(summary.burn)
        );
    }
    register(chain, &chain.chain_id()?, key, netuid, endpoint, Vec::new())
}

/// `agora subnet mine` on a chat or embeddings subnet: registers the provider's key as a neuron
/// at the provider's endpoint, then serves the market as `agora provider` does (validators
/// score it through paid jobs; the gateway routes `subnet:N` to it by incentive).
pub fn mine_serving(
    home: std::path::PathBuf,
    models_dir: std::path::PathBuf,
    netuid: u16,
    args: crate::market::ProviderArgs,
) -> Result<()> {
    let chain = HttpChain::new(args.node());
    let key = load_or_create_key(&home.join("config/provider_key.json"))?;
    ensure_neuron(&chain, &key, netuid, &args.endpoint_url())?;
    println!("{} mines subnet {netuid} as a provider", key.address());
    crate::market::provider(home, models_dir, args)
}

/// The forecast subnet's baseline miner: `agora predict`'s model (AutoETS, as
/// [`agora_analytics::predict::forecast`] fits it) over the windows' observed fees, one window
/// ahead; the last window again while there are fewer than
/// [`agora_analytics::predict::MIN_POINTS`] windows or the model does not fit.
#[derive(Clone, Copy, Debug, Default)]
pub struct PredictBaseline;

/// Windows the baseline fits on, at most (the most recent).
const BASELINE_WINDOWS: usize = 500;

impl Predictor for PredictBaseline {
    fn name(&self) -> String {
        "agora predict (AutoETS)".into()
    }

    fn predict(&self, history: &[Amount]) -> u64 {
        use agora_analytics::predict::{ForecastOptions, MIN_POINTS, Series, forecast};
        let persistence = ForecastModel::Persistence.predict(history);
        if history.len() < MIN_POINTS {
            return persistence;
        }
        let recent = &history[history.len().saturating_sub(BASELINE_WINDOWS)..];
        let points = recent
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64, *v as f64))
            .collect();
        let options = ForecastOptions {
            horizon: 1,
            season: None,
            level: 0.9,
            backtest_windows: 0,
        };
        let Ok(f) = Series::from_points(points).and_then(|s| forecast(&s, options)) else {
            return persistence;
        };
        match f.points.first().map(|p| p.value) {
            // Fees are never negative; a float past u64's range saturates.
            Some(v) if v.is_finite() => v.max(0.0).round() as u64,
            _ => persistence,
        }
    }
}

/// `agora subnet mine` on a forecast subnet: registers `key`, then commits a forecast each
/// epoch window and reveals it in the next, until the process is stopped.
pub fn mine_forecast(
    node: &str,
    key: Keypair,
    netuid: u16,
    model: Arc<dyn Predictor>,
) -> Result<()> {
    let chain = Arc::new(HttpChain::new(node));
    ensure_neuron(&chain, &key, netuid, "http://127.0.0.1:1/forecast")?;
    println!(
        "{} forecasts on subnet {netuid} with {}",
        key.address(),
        model.name()
    );
    let min_fee = chain.status()?.min_fee;
    let miner = ForecastMiner::new(chain, key, netuid, model, min_fee);
    loop {
        if let Err(e) = miner.step() {
            tracing::warn!(error = %e, "forecast miner");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `agora subnet validate`: scores subnet `netuid`'s miners every epoch window and sets weights
/// by commit-reveal, with `key` (a registered hotkey holding stake and compute escrow), until the
/// process is stopped. Prints each round (JSON lines with `json`).
#[allow(clippy::too_many_arguments)]
pub fn validate(
    home: &Path,
    models_dir: &Path,
    node: &str,
    key: Keypair,
    netuid: u16,
    prompts: usize,
    max_tokens: u32,
    json: bool,
) -> Result<()> {
    let chain = Arc::new(HttpChain::new(node));
    if !registered(&chain, netuid, &key.address())? {
        anyhow::bail!(
            "{} is not registered on subnet {netuid}: agora subnet register {netuid} --from WALLET --endpoint URL, then stake on it and deposit escrow to pay the jobs",
            key.address()
        );
    }
    let spec = models::CATALOG
        .iter()
        .find(|s| s.kind == models::ModelKind::Embedding)
        .context("no embedding model in the catalog")?;
    let installed = ModelCache::new(models_dir).ensure_reporting(spec)?;
    let embedder = Arc::new(agora_infer::bert::Embedder::load(
        &installed.dir,
        agora_infer::default_threads(),
    )?);
    let min_fee = chain.status()?.min_fee;
    let as_chain: Arc<dyn Chain> = chain.clone();
    let gateway = Arc::new(Gateway::new(chain));
    let mut validator = ChatValidator::new(
        as_chain,
        gateway,
        key,
        netuid,
        Some(embedder),
        Some(home.join(format!("data/subnet-{netuid}-validator.json"))),
        min_fee,
    );
    validator.prompts = prompts;
    validator.max_tokens = max_tokens;
    eprintln!(
        "validating subnet {netuid} as {} (evaluation pool {})",
        validator.address(),
        agora_market::subnet::eval_pool_hash()
    );
    loop {
        match validator.step() {
            Ok(Some(report)) if json => println!("{}", serde_json::to_string(&report)?),
            Ok(Some(report)) => {
                for m in &report.miners {
                    println!(
                        "epoch {} uid {:>3} quality {:.3} latency {:.0} ms score {:.3}",
                        report.epoch, m.uid, m.quality, m.latency_ms, m.score
                    );
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "subnet validator"),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_baseline_follows_a_trend_and_falls_back_to_the_last_window() {
        assert_eq!(PredictBaseline.predict(&[]), 0);
        assert_eq!(
            PredictBaseline.predict(&[5, 9]),
            9,
            "too few windows: the last"
        );
        let rising: Vec<Amount> = (0..20).map(|i| 1_000 + 100 * i).collect();
        let p = PredictBaseline.predict(&rising);
        // The next window of a steady rise is near 3,000, past the last window's 2,900.
        assert!((2_900..=3_100).contains(&p), "{p}");
        let flat = vec![700; 12];
        assert_eq!(PredictBaseline.predict(&flat), 700);
    }
}
