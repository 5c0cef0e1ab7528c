//! `agora node`, `agora devnet`, `agora genesis`.

use crate::home::{NetworkFile, network_path, read_network};
use crate::keystore::{Keystore, write_private};
use crate::market::{MarketSetup, MarketStarted};
use agora_chain::{Node, NodeConfig, now_ms, run_dev_engine};
use agora_state::{Genesis, GenesisAccount, GenesisModel, Params};
use agora_types::{AGR, Address, Keypair, format_amount, parse_amount};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};
use tokio::sync::watch;

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Run as the single validator of a dev chain (block every --block-time-ms, final at once).
    /// Without it the node is one validator of a network (Malachite BFT), as described by
    /// HOME/config/network.json (see `agora testnet init`).
    #[arg(long)]
    dev: bool,
    /// Address of the HTTP API (port 0 picks a free port; the address is written to HOME/api.addr).
    /// Default: 127.0.0.1:7420 with --dev, the network file's otherwise.
    #[arg(long, env = "AGORA_API_ADDR")]
    api_addr: Option<SocketAddr>,
    /// Milliseconds between blocks.
    #[arg(long, default_value_t = 500)]
    block_time_ms: u64,
    /// Seconds between the provider's settlements (see `agora provider --help`).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    settle_every: u64,
    /// Keep no index of accounts' histories: the explorer's account histories and a provider's
    /// jobs stay empty, and a validator that serves no pages saves the index's cost (about a
    /// sixth of the ledger's throughput on two busy cores).
    #[arg(long)]
    no_account_index: bool,
    /// Keep no analytics tables: `POST /v1/sql` and the web app's SQL page are not served (the
    /// tables cost a copy of the chain's history in Parquet under HOME/data/analytics).
    #[arg(long)]
    no_analytics: bool,
    /// Serve search and feeds (`GET /v1/search`, `GET /v1/feed/…`, the web app's search page)
    /// over the chain's objects, embedding them with the local MiniLM (fetched on first use)
    /// or, with `--embed-gateway`, through the market.
    #[arg(long)]
    search: bool,
    /// Compute the search's embeddings as paid jobs through this gateway (`http://host:port`)
    /// instead of a local model.
    #[arg(long, requires = "search", requires = "embed_key")]
    embed_gateway: Option<String>,
    /// The gateway's API key for `--embed-gateway`.
    #[arg(long, env = "AGORA_EMBED_KEY", requires = "embed_gateway")]
    embed_key: Option<String>,
    #[command(flatten)]
    content: ContentArgs,
}

/// Content from outside the chain for the search index.
#[derive(Debug, Args)]
pub struct ContentArgs {
    /// An RSS, Atom or JSON feed to index (read now and every `--feed-every` seconds).
    /// Repeatable.
    #[arg(long = "feed", value_name = "URL")]
    feeds: Vec<String>,
    /// A folder of Markdown or text files to index (read like a feed). Repeatable.
    #[arg(long = "feed-dir", value_name = "DIR")]
    feed_dirs: Vec<PathBuf>,
    /// Seconds between two readings of the feeds and folders.
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u64).range(10..))]
    feed_every: u64,
}

impl ContentArgs {
    fn sources(&self) -> Vec<agora_search::ingest::Source> {
        self.feeds
            .iter()
            .map(|u| agora_search::ingest::Source::Feed(u.clone()))
            .chain(
                self.feed_dirs
                    .iter()
                    .map(|d| agora_search::ingest::Source::Folder(d.clone())),
            )
            .collect()
    }
}

#[derive(Debug, Args)]
pub struct DevnetArgs {
    /// Address of the HTTP API.
    #[arg(long, env = "AGORA_API_ADDR", default_value = "127.0.0.1:7420")]
    api_addr: SocketAddr,
    /// Address of the OpenAI-compatible gateway.
    #[arg(long, env = "AGORA_GATEWAY_ADDR", default_value = "127.0.0.1:7421")]
    gateway_addr: SocketAddr,
    /// Address of the provider's endpoint.
    #[arg(long, env = "AGORA_PROVIDER_ADDR", default_value = "127.0.0.1:7422")]
    provider_addr: SocketAddr,
    /// Run only the chain and its API (no provider, no gateway, no models).
    #[arg(long)]
    chain_only: bool,
    /// Inference threads of the provider (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Milliseconds between blocks.
    #[arg(long, default_value_t = 500)]
    block_time_ms: u64,
    /// Seconds between the provider's settlements (see `agora provider --help`).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    settle_every: u64,
    /// Serve no search or feeds (with the models, a devnet indexes the chain's objects with
    /// MiniLM; with `--chain-only` it never does).
    #[arg(long)]
    no_search: bool,
    #[command(flatten)]
    content: ContentArgs,
}

#[derive(Debug, Subcommand)]
pub enum GenesisCommand {
    /// Write HOME/config/genesis.json with funded accounts.
    Init {
        /// Chain id; every transaction signs it.
        #[arg(long, default_value = "agora-devnet")]
        chain_id: String,
        /// A funded account: `ADDRESS=AMOUNT` or `WALLET=AMOUNT` (e.g. `alice=1000AGR`). Repeatable.
        #[arg(long = "account", value_name = "WHO=AMOUNT")]
        accounts: Vec<String>,
        /// Minimum transaction fee.
        #[arg(long, default_value = "0.000001AGR")]
        min_fee: String,
        /// Blocks before unbonded stake is released.
        #[arg(long, default_value_t = 100)]
        unbonding_period: u64,
        /// Replace an existing genesis file.
        #[arg(long)]
        force: bool,
    },
}

pub fn genesis_path(home: &Path) -> PathBuf {
    home.join("config/genesis.json")
}

pub fn node_key_path(home: &Path) -> PathBuf {
    home.join("config/node_key.json")
}

fn db_path(home: &Path) -> PathBuf {
    home.join("data/chain.redb")
}

#[derive(Serialize, Deserialize)]
struct NodeKeyFile {
    address: Address,
    secret: String,
}

/// The validator key (created on first use). Kept unencrypted so the node can restart unattended;
/// the file is readable by its owner only.
fn load_or_create_node_key(home: &Path) -> Result<Keypair> {
    load_or_create_key(&node_key_path(home))
}

/// A key kept in a plain file readable by its owner only (created on first use).
pub fn load_or_create_key(path: &Path) -> Result<Keypair> {
    let path = path.to_path_buf();
    if path.exists() {
        let file: NodeKeyFile = serde_json::from_str(&std::fs::read_to_string(&path)?)
            .with_context(|| format!("corrupt node key {}", path.display()))?;
        let mut secret = [0u8; 32];
        hex::decode_to_slice(&file.secret, &mut secret)
            .with_context(|| format!("corrupt node key {}", path.display()))?;
        let key = Keypair::from_secret(secret);
        if key.address() != file.address {
            bail!("node key {} does not match its address", path.display());
        }
        return Ok(key);
    }
    let key = Keypair::generate();
    let file = NodeKeyFile {
        address: key.address(),
        secret: hex::encode(key.secret()),
    };
    write_private(&path, serde_json::to_string_pretty(&file)?.as_bytes())?;
    Ok(key)
}

fn read_genesis(home: &Path) -> Result<Genesis> {
    let path = genesis_path(home);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no genesis at {} (make one with `agora genesis init --home {}`)",
            path.display(),
            home.display()
        )
    })?;
    Genesis::from_json(&text).with_context(|| format!("reading {}", path.display()))
}

pub fn genesis(home: PathBuf, cmd: GenesisCommand) -> Result<()> {
    let GenesisCommand::Init {
        chain_id,
        accounts,
        min_fee,
        unbonding_period,
        force,
    } = cmd;
    let path = genesis_path(&home);
    if path.exists() && !force {
        bail!("{} exists; pass --force to replace it", path.display());
    }
    let list = parse_accounts(&home, &accounts)?;
    let node_key = load_or_create_node_key(&home)?;
    let genesis = Genesis::new(&chain_id)
        .with_time(now_ms())
        .with_params(Params {
            min_fee: parse_amount(&min_fee)?,
            unbonding_period,
        })
        .with_accounts(list)
        .with_models(pinned_models())
        .with_model_sources(pinned_sources());
    genesis.initial_writes()?;
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    crate::keystore::write_shared(&path, genesis.to_json().as_bytes())?;
    println!(
        "Wrote {} (chain {}, {} accounts)",
        path.display(),
        genesis.chain_id,
        genesis.accounts.len()
    );
    println!("Validator: {}", node_key.address());
    Ok(())
}

/// `--account WHO=AMOUNT` specs: WHO is an address or a wallet under `home`.
pub fn parse_accounts(home: &Path, specs: &[String]) -> Result<Vec<GenesisAccount>> {
    let keystore = Keystore::new(home);
    let mut list = Vec::new();
    for spec in specs {
        let (who, amount) = spec.split_once('=').with_context(|| {
            format!("--account {spec:?}: expected WHO=AMOUNT, e.g. alice=1000AGR")
        })?;
        let address = match who.parse::<Address>() {
            Ok(a) => a,
            Err(_) => {
                keystore
                    .load(who)
                    .with_context(|| format!("--account {spec:?}"))?
                    .address
            }
        };
        list.push(GenesisAccount {
            address,
            balance: parse_amount(amount)?,
            bonded: 0,
        });
    }
    Ok(list)
}

/// How blocks are made.
enum Engine {
    /// The single validator of a dev chain: a block every interval, final at once.
    Dev(Duration),
    /// One validator of a network running Malachite.
    Network(NetworkFile),
}

pub fn node(home: PathBuf, models_dir: PathBuf, args: NodeArgs) -> Result<()> {
    let genesis = read_genesis(&home)?;
    let (engine, api_addr) = if args.dev {
        if args.block_time_ms == 0 {
            bail!("--block-time-ms must be at least 1");
        }
        let api = args
            .api_addr
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7420)));
        (Engine::Dev(Duration::from_millis(args.block_time_ms)), api)
    } else {
        let net = read_network(&home)?.with_context(|| {
            format!(
                "{} has no network file ({}): make a network with `agora testnet init -n 4 --out DIR`, or run a single-validator chain with `agora node --dev`",
                home.display(),
                network_path(&home).display()
            )
        })?;
        if genesis.validators.is_empty() {
            bail!(
                "the genesis names no validators: a network needs them (a dev chain runs with --dev)"
            );
        }
        let api = args.api_addr.unwrap_or(net.api_addr);
        (Engine::Network(net), api)
    };
    run_node(
        &home,
        &genesis,
        api_addr,
        engine,
        None,
        Serving {
            demo: None,
            account_index: !args.no_account_index,
            analytics: !args.no_analytics,
            search: match (args.search, args.embed_gateway, args.embed_key) {
                (false, _, _) => None,
                (true, Some(gateway), Some(key)) => Some(SearchSetup {
                    embed: Embeddings::Gateway { gateway, key },
                    sources: args.content.sources(),
                    every: Duration::from_secs(args.content.feed_every),
                }),
                (true, _, _) => Some(SearchSetup {
                    embed: Embeddings::Local(models_dir),
                    sources: args.content.sources(),
                    every: Duration::from_secs(args.content.feed_every),
                }),
            },
        },
        |api, node, _| {
            println!("Web app: {api}/");
            println!("API: {api}");
            println!("Chain {} at height {}", node.chain_id(), height(node));
        },
    )
}

fn height(node: &Node) -> u64 {
    node.snapshot()
        .ok()
        .and_then(|s| s.height().ok().flatten())
        .unwrap_or(0)
}

/// What a node serves beyond the chain and its API.
struct Serving {
    /// A devnet's demo wallet, which the explorer's page may send transfers from.
    demo: Option<Keypair>,
    /// Whether it keeps accounts' histories ([`NodeConfig::account_index`]).
    account_index: bool,
    /// Whether it keeps the analytics tables and serves SQL over them.
    analytics: bool,
    /// Whether it serves search and feeds, and where its embeddings come from.
    search: Option<SearchSetup>,
}

/// A node's search: where its embeddings come from, and the content it ingests.
struct SearchSetup {
    embed: Embeddings,
    sources: Vec<agora_search::ingest::Source>,
    every: Duration,
}

/// Where a node's search embeddings come from.
enum Embeddings {
    /// The local MiniLM, from this model cache (fetched on first use).
    Local(PathBuf),
    /// Paid jobs through a gateway.
    Gateway { gateway: String, key: String },
}

/// Opens the search index under `home` and starts following the chain.
fn start_search(
    home: &Path,
    node: &Arc<Node>,
    setup: SearchSetup,
) -> Result<(
    agora_search::http::SearchService,
    Option<agora_search::ingest::Ingester>,
)> {
    let spec = agora_infer::models::MINILM;
    let embed: Arc<dyn agora_search::Embed> = match setup.embed {
        Embeddings::Local(models) => {
            let installed =
                agora_infer::models::ModelCache::new(&models).ensure_reporting(&spec)?;
            // One thread: the index keeps up in the background, the cores stay the provider's.
            Arc::new(agora_search::LocalEmbed::load(&installed, 1)?)
        }
        Embeddings::Gateway { gateway, key } => Arc::new(agora_search::GatewayEmbed::new(
            &gateway, &key, spec.name, 384,
        )),
    };
    let dir = home.join("data/search");
    let index = Arc::new(
        agora_search::SearchIndex::open(&dir, embed)
            .with_context(|| format!("opening the search index in {}", dir.display()))?,
    );
    let follower = agora_search::chain::ChainIndexer::start(node.clone(), index.clone())?;
    let ingester = if setup.sources.is_empty() {
        None
    } else {
        Some(agora_search::ingest::Ingester::start(
            index.clone(),
            setup.sources,
            setup.every,
        )?)
    };
    Ok((
        agora_search::http::SearchService::new(index, node.clone(), Some(Arc::new(follower))),
        ingester,
    ))
}

/// Opens the node, serves the API and runs the dev engine until Ctrl-C or SIGTERM.
fn run_node(
    home: &Path,
    genesis: &Genesis,
    api_addr: SocketAddr,
    engine: Engine,
    market: Option<MarketSetup>,
    serving: Serving,
    on_ready: impl FnOnce(&str, &Node, Option<&MarketStarted>),
) -> Result<()> {
    let Serving {
        demo,
        account_index,
        analytics,
        search,
    } = serving;
    let key = load_or_create_node_key(home)?;
    let db = db_path(home);
    std::fs::create_dir_all(db.parent().expect("has a parent"))?;
    let config = NodeConfig {
        account_index,
        block_time: match &engine {
            Engine::Dev(t) => *t,
            Engine::Network(_) => NodeConfig::default().block_time,
        },
        ..NodeConfig::default()
    };
    let node = Arc::new(
        Node::open(&db, genesis, key.clone(), config)
            .with_context(|| format!("opening the chain database {}", db.display()))?,
    );
    // The analytics tables catch up with the store in the background: a node with a long
    // history starts serving at once, its SQL answering from the blocks indexed so far.
    let analytics = if analytics {
        let dir = home.join("data/analytics");
        Some(
            agora_analytics::Analytics::start(node.clone(), &dir)
                .with_context(|| format!("opening the analytics tables in {}", dir.display()))?,
        )
    } else {
        None
    };
    // Every node keeps the bytes of the data market's items submitted to it, and drops those
    // of items no longer on chain.
    let blobs_dir = home.join("data/blobs");
    let blobs = Arc::new(
        agora_data::BlobStore::open(&blobs_dir, agora_data::Limits::default())
            .with_context(|| format!("opening the blob store in {}", blobs_dir.display()))?,
    );
    // Bytes a node lacks are fetched from the other validators' APIs (and checked).
    let data_peers = match &engine {
        Engine::Network(net) => net.peer_apis.clone(),
        Engine::Dev(_) => Vec::new(),
    };
    let data = agora_data::http::DataService::new(node.clone(), blobs).with_peers(data_peers);
    let collector_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _collector = StopOnDrop(
        collector_stop.clone(),
        Some(data.spawn_collector(std::time::Duration::from_secs(60), collector_stop)),
    );
    let (search, _ingester) = match search {
        Some(setup) => {
            let (service, ingester) = start_search(home, &node, setup)?;
            (Some(service), ingester)
        }
        None => (None, None),
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(api_addr)
            .await
            .with_context(|| {
                format!("cannot listen on {api_addr} (port in use? pass --api-addr)")
            })?;
        let local = listener.local_addr()?;
        let api = format!("http://{local}");
        std::fs::write(home.join("api.addr"), &api)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let wait = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        // The web app answers on the API's address: its pages at `/`, beside `/v1/…`; its
        // playground learns the gateway's address once the market has started.
        let links = agora_web::Links {
            demo: demo.map(|key| Arc::new(agora_web::DemoWallet::new(key))),
            ..agora_web::Links::default()
        };
        let server = tokio::spawn(agora_api::serve_with_pages(
            node.clone(),
            listener,
            {
                let mut pages = agora_web::router_with(node.clone(), links.clone());
                if let Some(a) = analytics.clone() {
                    pages = pages.merge(agora_analytics::http::router(a));
                }
                if let Some(s) = search.clone() {
                    pages = pages.merge(agora_search::http::router(s));
                }
                pages = pages.merge(agora_data::http::router(data.clone()));
                pages
            },
            wait(stop_rx.clone()),
        ));
        let mut engine = match engine {
            Engine::Dev(_) => Running::Dev(tokio::spawn(run_dev_engine(
                node.clone(),
                wait(stop_rx.clone()),
            ))),
            Engine::Network(net) => {
                let config = agora_consensus::NetworkConfig::new(
                    net.moniker.clone(),
                    net.p2p_addr,
                    net.peers.clone(),
                    home.join("data/wal"),
                    agora_consensus::AppConfig {
                        target_time: Some(Duration::from_millis(net.block_time_ms)),
                        ..agora_consensus::AppConfig::default()
                    },
                );
                let consensus = agora_consensus::start(node.clone(), Arc::new(key), config)
                    .await
                    .map_err(|e| anyhow::anyhow!("starting consensus: {e:#}"))?;
                let relay = agora_api::spawn_relay(&node, net.peer_apis.clone());
                Running::Network(consensus, relay)
            }
        };
        // The market stops first: its final settlement still reaches a running chain.
        let (market_stop_tx, market_stop_rx) = watch::channel(false);
        let (started, tasks) = match market {
            Some(mut setup) => {
                // The provider serves queries and forecasts over this node's tables.
                setup.analytics = analytics.clone();
                let market = crate::market::start(
                    home.to_path_buf(),
                    api.clone(),
                    setup,
                    market_stop_rx,
                );
                let (started, tasks) = tokio::select! {
                    r = market => r?,
                    () = shutdown_signal() => {
                        let _ = market_stop_tx.send(true);
                        let _ = stop_tx.send(true);
                        bail!("stopped while starting the market");
                    }
                };
                let _ = links.gateway.set(started.gateway.clone());
                (Some(started), tasks)
            }
            None => (None, Vec::new()),
        };
        on_ready(&api, &node, started.as_ref());
        // Until Ctrl-C or SIGTERM, or until the dev engine cannot go on (a store that cannot be
        // written: the node stops, and a restart continues from what was committed).
        let failed = match &mut engine {
            Running::Dev(task) => tokio::select! {
                () = shutdown_signal() => None,
                done = task => Some(match done {
                    Ok(Ok(())) => "the block engine stopped".to_string(),
                    Ok(Err(e)) => format!("{e:#}"),
                    Err(e) => format!("the block engine failed: {e}"),
                }),
            },
            Running::Network(consensus, _) => tokio::select! {
                () = shutdown_signal() => None,
                why = consensus.stopped() => Some(why),
            },
        };
        if let Some(why) = failed {
            let _ = market_stop_tx.send(true);
            for task in tasks {
                let _ = task.await;
            }
            let _ = stop_tx.send(true);
            let _ = server.await;
            if let Running::Network(consensus, relay) = engine {
                relay.stop();
                consensus.stop().await;
            }
            bail!(
                "block production stopped at height {}: {why}. Nothing committed is lost: free disk space (or fix the store's disk) and start the node again",
                height(&node)
            );
        }
        eprintln!("Stopping…");
        let _ = market_stop_tx.send(true);
        for task in tasks {
            let _ = task.await;
        }
        let _ = stop_tx.send(true);
        match engine {
            Running::Dev(task) => task.await??,
            Running::Network(consensus, relay) => {
                relay.stop();
                consensus.stop().await;
            }
        }
        server.await??;
        println!("Stopped at height {}.", height(&node));
        anyhow::Ok(())
    })
}

/// The engine while the node runs.
enum Running {
    Dev(tokio::task::JoinHandle<agora_chain::Result<()>>),
    Network(agora_consensus::ConsensusHandle, agora_api::Relay),
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

/// Creates the devnet home on first use: validator key, a `demo` wallet with a random password in
/// HOME/demo.password, and a genesis that funds it.
fn init_devnet(home: &Path) -> Result<Genesis> {
    let path = genesis_path(home);
    if path.exists() {
        return read_genesis(home);
    }
    std::fs::create_dir_all(home)?;
    let validator = load_or_create_node_key(home)?;
    let keystore = Keystore::new(home);
    let password_file = home.join("demo.password");
    let demo = match keystore.load("demo") {
        Ok(file) => file.address,
        Err(_) => {
            let mut pw = [0u8; 16];
            OsRng.fill_bytes(&mut pw);
            let password = hex::encode(pw);
            write_private(&password_file, password.as_bytes())?;
            keystore
                .save("demo", &Keypair::generate(), &password)?
                .address
        }
    };
    let genesis = Genesis::new("agora-devnet")
        .with_time(now_ms())
        .with_params(Params {
            min_fee: 1_000,
            unbonding_period: 20,
        })
        .with_accounts(vec![
            GenesisAccount {
                address: demo,
                balance: 1_000_000 * AGR,
                bonded: 0,
            },
            GenesisAccount {
                address: validator.address(),
                balance: 1_000 * AGR,
                bonded: 10_000 * AGR,
            },
        ])
        .with_models(pinned_models())
        .with_model_sources(pinned_sources());
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    crate::keystore::write_shared(&path, genesis.to_json().as_bytes())?;
    Ok(genesis)
}

pub fn devnet(home: PathBuf, models_dir: PathBuf, args: DevnetArgs) -> Result<()> {
    let genesis = init_devnet(&home)?;
    let demo = Keystore::new(&home).load("demo")?.address;
    let validator = load_or_create_node_key(&home)?.address();
    let exe = std::env::args().next().unwrap_or_else(|| "agora".into());
    let h = home.display().to_string();
    let models = models_dir.clone();
    let market = (!args.chain_only).then_some(MarketSetup {
        analytics: None,
        provider_addr: args.provider_addr,
        gateway_addr: args.gateway_addr,
        models_dir,
        threads: args.threads,
        settle_every: Duration::from_secs(args.settle_every),
    });
    if args.block_time_ms == 0 {
        bail!("--block-time-ms must be at least 1");
    }
    run_node(
        &home,
        &genesis,
        args.api_addr,
        Engine::Dev(Duration::from_millis(args.block_time_ms)),
        market,
        Serving {
            // The explorer's page may send transfers from the demo wallet (a devnet's only).
            demo: Some(crate::market::demo_key(&home)?),
            account_index: true,
            analytics: true,
            search: (!args.chain_only && !args.no_search).then(|| SearchSetup {
                embed: Embeddings::Local(models),
                sources: args.content.sources(),
                every: Duration::from_secs(args.content.feed_every),
            }),
        },
        |api, node, market| {
            println!("Web app: {api}/");
            println!(
                "Agora devnet is running (chain {}, height {}).",
                node.chain_id(),
                height(node)
            );
            println!();
            println!("API: {api}");
            println!("Home: {h}");
            println!("Demo wallet: demo = {demo} (password in {h}/demo.password)");
            println!("Validator: {validator}");
            println!("Minimum fee: {}", format_amount(node.params().min_fee));
            println!();
            println!("Try, in another terminal:");
            println!("  curl {api}/v1/status");
            println!(
                "  {exe} --home {h} tx transfer --from demo --to {validator} --amount 1.5AGR --password-file {h}/demo.password --node {api}"
            );
            println!("  {exe} --home {h} query account {validator} --prove --node {api}");
            println!();
            if let Some(m) = market {
                let gw = &m.gateway;
                let key = &m.api_key;
                println!("Gateway: {gw}/v1");
                println!("API key: {key}");
                println!("Provider: {} at {}", m.provider, m.provider_endpoint);
                println!("Verifier: {} (checks the jobs the chain draws)", m.verifier);
                println!();
                println!("  curl {gw}/v1/chat/completions -H 'Authorization: Bearer {key}' \\");
                println!("    -H 'Content-Type: application/json' \\");
                println!(
                    "    -d '{{\"model\": \"{}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}]}}'",
                    agora_infer::models::SMOLLM2.name
                );
                println!();
                println!("  python3 -c 'from openai import OpenAI");
                println!("  c = OpenAI(base_url=\"{gw}/v1\", api_key=\"{key}\")");
                println!(
                    "  print(c.chat.completions.create(model=\"{}\", messages=[{{\"role\": \"user\", \"content\": \"Hello!\"}}]).choices[0].message.content)'",
                    agora_infer::models::SMOLLM2.name
                );
                println!();
                println!("  {exe} audit --gateway {gw} --api-key {key} --explain CONTRACT.sol");
                println!();
                println!(
                    "Model market: subnet {} (chat: the provider and a weaker miner, {}, scored by a validator) and subnet {} (forecast: two miners predict the chain's fees, the chain scores them); an epoch every {} blocks:",
                    m.chat_subnet,
                    m.weak_miner,
                    m.forecast_subnet,
                    crate::subnets::DEVNET_TEMPO
                );
                println!("  {exe} subnet metagraph {} --node {api}", m.chat_subnet);
                println!(
                    "  {exe} subnet metagraph {} --node {api}",
                    m.forecast_subnet
                );
                println!("  (or {api}/subnets)");
                println!();
                println!(
                    "Data market: {} reviewers screen items and vote on them (MiniLM pre-screen, commit-reveal):",
                    m.reviewers.len()
                );
                println!(
                    "  {exe} --home {h} data bounty create --description 'Q&A about Solidity' --schema '{{\"type\":\"object\"}}' --reward 1AGR --budget 20AGR --quorum 1 --deadline-blocks 200 --from demo --password-file {h}/demo.password --node {api}"
                );
                println!(
                    "  {exe} --home {h} data submit --bounty 0 item.json --from demo --password-file {h}/demo.password --node {api}"
                );
                println!("  (or {api}/data)");
                println!();
                println!(
                    "Zero-knowledge proofs: the account risk scorer is registered; prove that the demo wallet's score is below 100 without showing it:"
                );
                println!("  {exe} zk model risk --out {h}/risk.zkm");
                println!("  {exe} zk features {demo} --node {api}");
                println!(
                    "  {exe} zk prove {h}/risk.zkm --input F1,…,F8 --threshold 100 --hide --attester {demo} --node {api} --out {h}/proof.json"
                );
                println!(
                    "  {exe} --home {h} zk attest {h}/proof.json --from demo --password-file {h}/demo.password --node {api}"
                );
                println!(
                    "  or run it as a proved job: the provider proves it, the gateway and the chain verify the proof:"
                );
                println!("  curl {gw}/v1/zk/infer -H 'Authorization: Bearer {key}' \\");
                println!(
                    "    -H 'Content-Type: application/json' -d '{{\"model\": \"{}\", \"input\": [10, 0, 3, 0, 0, 0, 0, 0], \"threshold\": 100}}'",
                    agora_zk::risk::RISK_MODEL_NAME
                );
                println!("  (or {api}/zk)");
                println!();
            }
            println!(
                "Ctrl-C stops the devnet; run the same command again to continue where it stopped."
            );
        },
    )
}

/// The models of the runtime's catalog and the auditor, registered at genesis so providers can
/// serve them at once.
pub fn pinned_models() -> Vec<GenesisModel> {
    agora_infer::models::CATALOG
        .iter()
        .map(|spec| GenesisModel {
            id: spec.id.parse().expect("catalog ids are 64 hex digits"),
            name: spec.name.to_string(),
            kind: match spec.kind {
                agora_infer::models::ModelKind::Chat => agora_types::ModelKind::Chat,
                agora_infer::models::ModelKind::Embedding => agora_types::ModelKind::Embedding,
            },
        })
        .chain([auditor_model(), crate::analytics_jobs::analytics_model()])
        .collect()
}

/// Where the catalog's models are (DESIGN.md §11), on chain from genesis as later models'
/// `PublishModelSource` entries are.
pub fn pinned_sources() -> Vec<(agora_types::Hash, agora_types::ModelSource)> {
    agora_infer::models::CATALOG
        .iter()
        .map(|spec| {
            (
                spec.id.parse().expect("catalog ids are 64 hex digits"),
                agora_types::ModelSource {
                    package: spec.package.to_string(),
                    version: spec.version.to_string(),
                    wheel_sha256: spec
                        .wheel_sha256
                        .parse()
                        .expect("catalog wheel hashes are 64 hex digits"),
                    file: spec.source.to_string(),
                    quantization: spec
                        .display
                        .rsplit(' ')
                        .next()
                        .filter(|q| q.starts_with('Q') || q.starts_with('F'))
                        .unwrap_or("F32")
                        .to_string(),
                },
            )
        })
        .collect()
}

/// The Solidity auditor as a registered model.
pub fn auditor_model() -> GenesisModel {
    GenesisModel {
        id: agora_market::auditor_id(),
        name: agora_audit::MODEL_NAME.to_string(),
        kind: agora_types::ModelKind::Audit,
    }
}

/// Stops a background thread when dropped (sets its flag, then joins it).
struct StopOnDrop(
    Arc<std::sync::atomic::AtomicBool>,
    Option<std::thread::JoinHandle<()>>,
);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.1.take() {
            let _ = t.join();
        }
    }
}
